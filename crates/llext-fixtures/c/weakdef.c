/*
 * weakdef.c - provides the symbol weak.c refers to weakly.
 */
#include "llext.h"

/* maybe_missing(x) = x + 41, so weak_probe() = 42 once this is loaded. */
long maybe_missing(long x)
{
	return x + 41;
}

LLEXT_EXPORT(maybe_missing);
