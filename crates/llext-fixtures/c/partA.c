/*
 * partA.c - first half of partial.o (ld -r partA.o partB.o): calls a
 * function defined in partB.c, so in partial.o the call is a relocation
 * against a symbol defined in the same object.
 */
extern long part_b_helper(long x);

/* partial_entry(x) = 2 * (x + 10): partial_entry(1) = 22, partial_entry(5) = 30. */
long partial_entry(long x)
{
	return 2 * part_b_helper(x);
}
