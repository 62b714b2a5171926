/*
 * undef.c - refers to a function nobody defines or exports: loading it must
 * fail with an error naming no_such_function.
 */
extern long no_such_function(long x);

/* Never callable: the extension does not load. */
long undef_entry(long x)
{
	return no_such_function(x) + 1;
}
