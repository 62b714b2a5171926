/*
 * The driver of the zlib fixture: zlib's deflate and inflate (built with -DZ_SOLO from the sources of the
 * `libz-sys` crate, never copied here) linked with this file by `ld -r` into one extension.
 *
 * zlib_main(seed) generates text from `seed`, deflates it at levels 1 (deflate_fast), 6 and 9
 * (deflate_slow), inflates each stream again, compares, and returns a checksum of the compressed sizes,
 * Adler-32 and CRC-32 below 2^31, so a 32-bit `long` holds it; a negative value says which step
 * failed. The expected value is not written down anywhere: the build compiles this file natively with
 * -DLLEXT_ZLIB_NATIVE, whose main() prints zlib_main(argv[1]), and the tests compare with that.
 */
#include <stddef.h>

#include "zlib.h"

void *malloc(size_t size);
void free(void *ptr);

static voidpf zlib_alloc(voidpf opaque, uInt items, uInt size)
{
	(void)opaque;
	return malloc((size_t)items * size);
}

static void zlib_free(voidpf opaque, voidpf ptr)
{
	(void)opaque;
	free(ptr);
}

#define TEXT_LEN 6000

static unsigned char text[TEXT_LEN], packed[TEXT_LEN + 1024], unpacked[TEXT_LEN];
static const char *const words[] = { "alpha ", "beta ", "gamma ", "delta ", "epsilon\n", "zeta, ", "eta; " };

static void generate(unsigned int x)
{
	for (int i = 0; i < TEXT_LEN;) {
		x = x * 1103515245u + 12345u;
		const char *w = words[(x >> 16) % 7];
		while (*w && i < TEXT_LEN)
			text[i++] = (unsigned char)*w++;
		/* An odd byte now and then, so that not everything is a match. */
		if (((x >> 8) & 15) == 0 && i < TEXT_LEN)
			text[i++] = (unsigned char)(x >> 20);
	}
}

/* The compressed size of `text` at `level`, checked by inflating it again; negative on failure. */
static long round_trip(int level)
{
	z_stream s = { 0 };
	s.zalloc = zlib_alloc;
	s.zfree = zlib_free;
	/* A 1 KiB window and small hash tables: a few tens of KiB of heap, which a firmware has. */
	if (deflateInit2(&s, level, Z_DEFLATED, 10, 4, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	s.next_in = text;
	s.avail_in = TEXT_LEN;
	s.next_out = packed;
	s.avail_out = sizeof packed;
	int r = deflate(&s, Z_FINISH);
	unsigned long packed_len = s.total_out;
	if (deflateEnd(&s) != Z_OK || r != Z_STREAM_END)
		return -2;

	z_stream d = { 0 };
	d.zalloc = zlib_alloc;
	d.zfree = zlib_free;
	if (inflateInit2(&d, 10) != Z_OK)
		return -3;
	d.next_in = packed;
	d.avail_in = (uInt)packed_len;
	d.next_out = unpacked;
	d.avail_out = TEXT_LEN;
	r = inflate(&d, Z_FINISH);
	unsigned long unpacked_len = d.total_out;
	if (inflateEnd(&d) != Z_OK || r != Z_STREAM_END || unpacked_len != TEXT_LEN)
		return -4;
	for (int i = 0; i < TEXT_LEN; i++)
		if (unpacked[i] != text[i])
			return -5;
	return (long)packed_len;
}

long zlib_main(long seed)
{
	generate(12345u + (unsigned int)seed);
	unsigned long sum = adler32(1, text, TEXT_LEN) ^ crc32(0, text, TEXT_LEN);
	static const int levels[] = { 1, 6, 9 };
	for (unsigned int i = 0; i < sizeof levels / sizeof levels[0]; i++) {
		long packed_len = round_trip(levels[i]);
		if (packed_len < 0)
			return packed_len - 10 * (long)i;
		sum = sum * 31u + (unsigned long)packed_len;
	}
	return (long)(sum & 0x7fffffff);
}

#ifdef LLEXT_ZLIB_NATIVE
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	printf("%ld\n", zlib_main(argc > 1 ? atol(argv[1]) : 0));
	return 0;
}
#endif
