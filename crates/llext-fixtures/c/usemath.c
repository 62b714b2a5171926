/*
 * usemath.c - links against libmath's exports; load libmath first.
 */
extern long lm_mul(long a, long b);
extern long lm_scale;

/*
 * use_math(x) = lm_mul(x, lm_scale), then increments lm_scale.
 * With libmath freshly loaded (lm_scale = 3): use_math(5) = 15, a second
 * use_math(5) = 20, a third 25.
 */
long use_math(long x)
{
	long r = lm_mul(x, lm_scale);

	lm_scale += 1;
	return r;
}

/* use_scale() = current lm_scale: 3 after loading libmath, +1 per use_math. */
long use_scale(void)
{
	return lm_scale;
}
