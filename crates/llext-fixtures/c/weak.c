/*
 * weak.c - a weak undefined reference: the extension loads whether or not
 * the symbol exists, and the address reads as null when it does not.
 */
extern long maybe_missing(long x) __attribute__((weak));

/*
 * weak_probe() = -7 when maybe_missing is undefined, and
 * maybe_missing(1) = 42 when weakdef is loaded first.
 */
long weak_probe(void)
{
	return maybe_missing ? maybe_missing(1) : -7;
}
