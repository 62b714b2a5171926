/*
 * basic.c - one extension exercising every kind of section and reference a
 * plain C file produces: initialised data, .bss, rodata strings, a pointer
 * table that needs data relocations, a jump table, calls into the host, and
 * an over-aligned object.
 *
 * All results below are for a freshly loaded copy of the extension; the
 * stateful functions say how their result changes on later calls.
 */
#include "host.h"

/* Lives in .data, not .bss, because one member is non-zero. */
static struct {
	long calls;
	long magic;
} basic_state = { 0, 0x11e7 };

/* Initialised global with external linkage (a .data symbol). */
long basic_total = 42;

/* A pointer stored in .data that needs a relocation to reach its string. */
const char *basic_name = "basic";

/* Zeroed by the loader: lives in .bss. */
static long basic_bss[64];

/* Over-aligned objects: the loader must honour sh_addralign of their
 * sections (64 for .data here, 128 for .bss). */
long basic_aligned_data[8] __attribute__((aligned(64))) = { 1, 2, 3, 4, 5, 6, 7, 8 };
long basic_aligned_bss[4] __attribute__((aligned(128)));

/* basic_add(a, b) = a + b.  basic_add(2, 3) = 5, basic_add(-10, 4) = -6. */
long basic_add(long a, long b)
{
	return a + b;
}

/*
 * basic_sum6(a, b, c, d, e, f) = a + 2b + 3c + 4d + 5e + 6f, so every
 * argument register is checked.  basic_sum6(1, 2, 3, 4, 5, 6) = 91,
 * basic_sum6(1, 1, 1, 1, 1, 1) = 21.
 */
long basic_sum6(long a, long b, long c, long d, long e, long f)
{
	return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f;
}

/*
 * basic_counter() = 1 on the first call, then 2, 3, ...
 * -1 if the initial contents of .data were not loaded.
 */
long basic_counter(void)
{
	if (basic_state.magic != 0x11e7)
		return -1;
	return ++basic_state.calls;
}

/*
 * basic_accumulate(x) adds x to basic_total (42 at load) and returns the new
 * total: basic_accumulate(8) = 50 on the first call, then 58 for another 8.
 */
long basic_accumulate(long x)
{
	basic_total += x;
	return basic_total;
}

/*
 * basic_switch(sel, x): ten dense cases computing different things from x,
 * so gcc -O2 emits a jump table rather than a table of constants.
 * With x = 10: sel 0 -> 11, 1 -> 30, 2 -> 3, 3 -> 40, 4 -> 95, 5 -> -10,
 * 6 -> 100, 7 -> 10, 8 -> 266, 9 -> 990; any other sel -> -1.
 */
long basic_switch(long sel, long x)
{
	switch (sel) {
	case 0:
		return x + 1;
	case 1:
		return x * 3;
	case 2:
		return x - 7;
	case 3:
		return x << 2;
	case 4:
		return x ^ 0x55;
	case 5:
		return -x;
	case 6:
		return x * x;
	case 7:
		return x & 0xff;
	case 8:
		return x | 0x100;
	case 9:
		return 1000 - x;
	default:
		return -1;
	}
}

static long op_add7(long x)
{
	return x + 7;
}

static long op_sub7(long x)
{
	return x - 7;
}

static long op_mul7(long x)
{
	return x * 7;
}

static long op_neg(long x)
{
	return -x;
}

/* Function pointers: one absolute data relocation per entry. */
static long (*const basic_ops[4])(long) = { op_add7, op_sub7, op_mul7, op_neg };

/*
 * basic_table(i, x) = basic_ops[i](x).  With x = 10: i 0 -> 17, 1 -> 3,
 * 2 -> 70, 3 -> -10; i outside 0..3 -> -1.
 */
long basic_table(long i, long x)
{
	if (i < 0 || i > 3)
		return -1;
	return basic_ops[i](x);
}

static const char basic_greeting[] = "llext";

/*
 * basic_strings() formats "llext-42" with snprintf, prints it with printf
 * ("basic: llext-42 (8 chars)") and returns its length, 8.
 * -1 if the formatted text is wrong, -2 if basic_name does not read "basic".
 */
long basic_strings(void)
{
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%s-%d", basic_greeting, 42);

	if (strcmp(buf, "llext-42") != 0)
		return -1;
	if (strcmp(basic_name, "basic") != 0)
		return -2;
	printf("basic: %s (%d chars)\n", buf, n);
	return n;
}

/*
 * basic_heap(n) builds an array 0, 1, ..., 2n-1 with malloc and realloc,
 * checks a calloc'd copy, frees both and returns the sum, n * (2n - 1):
 * basic_heap(10) = 190, basic_heap(1) = 1.
 * -1 if n is outside 1..1000000, -2 on allocation failure,
 * -3 if calloc memory was not zeroed, -4 if the copy differs.
 */
long basic_heap(long n)
{
	long *a, *grown, *z;
	long i, sum = 0;

	if (n < 1 || n > 1000000)
		return -1;
	a = malloc(n * sizeof *a);
	if (!a)
		return -2;
	for (i = 0; i < n; i++)
		a[i] = i;
	grown = realloc(a, 2 * n * sizeof *a);
	if (!grown) {
		free(a);
		return -2;
	}
	a = grown;
	for (i = n; i < 2 * n; i++)
		a[i] = i;
	z = calloc(2 * n, sizeof *z);
	if (!z) {
		free(a);
		return -2;
	}
	for (i = 0; i < 2 * n; i++) {
		if (z[i] != 0) {
			sum = -3;
			goto out;
		}
	}
	memcpy(z, a, 2 * n * sizeof *a);
	if (memcmp(z, a, 2 * n * sizeof *a) != 0) {
		sum = -4;
		goto out;
	}
	for (i = 0; i < 2 * n; i++)
		sum += z[i];
out:
	free(z);
	free(a);
	return sum;
}

/*
 * basic_align() = (address of basic_aligned_data mod 64)
 *               + (address of basic_aligned_bss mod 128), expected 0.
 * The empty asm hides the address from the compiler, which would otherwise
 * fold the test to 0 from the declared alignment.
 */
long basic_align(void)
{
	unsigned long data = (unsigned long)&basic_aligned_data;
	unsigned long bss = (unsigned long)&basic_aligned_bss;

	__asm__("" : "+r"(data));
	__asm__("" : "+r"(bss));
	return (long)((data & 63) + (bss & 127));
}

/*
 * basic_aligned_first() = basic_aligned_data[0] + basic_aligned_data[7] = 9,
 * proving the over-aligned data was copied, not just placed.
 */
long basic_aligned_first(void)
{
	return basic_aligned_data[0] + basic_aligned_data[7];
}

/* basic_bss_sum() = sum of the 64-entry .bss array: 0 after loading. */
long basic_bss_sum(void)
{
	long i, sum = 0;

	for (i = 0; i < 64; i++)
		sum += basic_bss[i];
	return sum;
}

/*
 * basic_bss_fill(v) sets entry i of the .bss array to v + i and returns the
 * new sum, 64v + 2016 (basic_bss_fill(1) = 2080, basic_bss_fill(0) = 2016);
 * basic_bss_sum() then returns the same value.
 */
long basic_bss_fill(long v)
{
	long i;

	for (i = 0; i < 64; i++)
		basic_bss[i] = v + i;
	return basic_bss_sum();
}
