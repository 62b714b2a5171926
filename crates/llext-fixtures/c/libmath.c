/*
 * libmath.c - exports a function and a data object for usemath.c.
 */
#include "llext.h"

/* Exported data, 3 at load; usemath's use_math() increments it. */
long lm_scale = 3;

/* lm_mul(a, b) = a * b.  lm_mul(6, 7) = 42. */
long lm_mul(long a, long b)
{
	return a * b;
}

/*
 * lm_scaled(x) = x * lm_scale: 5 * 3 = 15 after loading; it sees the
 * writes usemath makes to lm_scale (20 after one use_math call).
 */
long lm_scaled(long x)
{
	return lm_mul(x, lm_scale);
}

LLEXT_EXPORT(lm_mul);
LLEXT_EXPORT(lm_scale);
LLEXT_EXPORT(lm_scaled);
