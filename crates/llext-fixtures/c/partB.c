/*
 * partB.c - second half of partial.o; see partA.c.
 */

/* Initialised data merged into partial.o's .data after partA's. */
long part_b_bias = 10;

/* part_b_helper(x) = x + part_b_bias = x + 10. */
long part_b_helper(long x)
{
	return x + part_b_bias;
}
