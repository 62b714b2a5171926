/*
 * farcall.c - many calls into the host, whose code is usually much further
 * than +-2 GiB from wherever the extension is placed.
 */
#include "host.h"

/*
 * far_calls() prints "far: 1 2 three 4 5a 6" (printf returns 22 with the
 * newline), then returns 22 * 100 + strlen("far away") * 10 + 1 = 2281;
 * the final 1 says strncpy padded and memcmp compared as expected.
 */
long far_calls(void)
{
	char buf[16];
	int n = printf("far: %d %ld %s %c %x %lu\n", 1, 2L, "three", '4', 0x5a, 6UL);
	long len = (long)strlen("far away");
	int same;

	strncpy(buf, "farcall", sizeof buf);
	same = memcmp(buf, "farcall\0\0", 9) == 0;
	return n * 100L + len * 10 + same;
}

/*
 * far_format(a, b, c, d, e, f) = length of "a,b,c,d,e,f" formatted by
 * sprintf: far_format(1, 2, 3, 4, 5, 6) = 11,
 * far_format(-1, 10, 100, 1000, 10000, 100000) = 27.
 */
long far_format(long a, long b, long c, long d, long e, long f)
{
	char buf[160];

	sprintf(buf, "%ld,%ld,%ld,%ld,%ld,%ld", a, b, c, d, e, f);
	return (long)strlen(buf);
}

/*
 * far_strings() = 10: strcpy, memmove and memset turn "0123456789" into
 * "01012347xx", which strncmp confirms; -1 otherwise.
 */
long far_strings(void)
{
	char buf[32];

	strcpy(buf, "0123456789");
	memmove(buf + 2, buf, 5);
	memset(buf + 8, 'x', 2);
	if (strncmp(buf, "01012347xx", sizeof buf) != 0)
		return -1;
	return (long)strlen(buf);
}

/* far_putchar(c) writes the byte c to stdout and returns it: far_putchar(120) = 120. */
long far_putchar(long c)
{
	return putchar((int)c);
}
