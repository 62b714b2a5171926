/*
 * libc.c - the small C library the test firmware exports to extensions.
 *
 * Output goes through fw_write() (semihosting, provided by the firmware's
 * Rust side); memory through fw_alloc()/fw_free() (the Rust heap).  Built
 * with -ffreestanding -fno-builtin so that the string functions are not
 * turned into calls to themselves.
 */
typedef __SIZE_TYPE__ size_t;
typedef __builtin_va_list va_list;
#define va_start(ap, last) __builtin_va_start(ap, last)
#define va_arg(ap, type) __builtin_va_arg(ap, type)
#define va_end(ap) __builtin_va_end(ap)

void fw_write(const char *bytes, size_t len);
void *fw_alloc(size_t size, size_t align);
void fw_free(void *ptr, size_t size, size_t align);

void *memcpy(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	if (d < s) {
		while (n--)
			*d++ = *s++;
	} else {
		while (n--)
			d[n] = s[n];
	}
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	unsigned char *d = dst;
	while (n--)
		*d++ = (unsigned char)c;
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

/* bcmp is what compilers call for equality-only memcmp. */
int bcmp(const void *a, const void *b, size_t n)
{
	return memcmp(a, b, n);
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b || !*a)
			return (unsigned char)*a - (unsigned char)*b;
	}
	return 0;
}

char *strcpy(char *dst, const char *src)
{
	char *d = dst;
	while ((*d++ = *src++))
		;
	return dst;
}

/* malloc keeps the block size in front of the block, 16 bytes to keep alignment. */
#define HEADER 16

void *malloc(size_t size)
{
	unsigned char *p = fw_alloc(size + HEADER, HEADER);
	if (!p)
		return 0;
	*(size_t *)p = size;
	return p + HEADER;
}

void free(void *ptr)
{
	if (!ptr)
		return;
	unsigned char *p = (unsigned char *)ptr - HEADER;
	fw_free(p, *(size_t *)p + HEADER, HEADER);
}

void *calloc(size_t count, size_t size)
{
	if (size && count > (size_t)-1 / size)
		return 0;
	void *p = malloc(count * size);
	if (p)
		memset(p, 0, count * size);
	return p;
}

void *realloc(void *ptr, size_t size)
{
	if (!ptr)
		return malloc(size);
	size_t old = *(size_t *)((unsigned char *)ptr - HEADER);
	void *p = malloc(size);
	if (p) {
		memcpy(p, ptr, old < size ? old : size);
		free(ptr);
	}
	return p;
}

int putchar(int c)
{
	char ch = (char)c;
	fw_write(&ch, 1);
	return (unsigned char)c;
}

int puts(const char *s)
{
	fw_write(s, strlen(s));
	fw_write("\n", 1);
	return 0;
}

/* printf: %d %i %u %x %X %o %s %c %p %% with the l, ll, z and h modifiers, a
 * width, zero padding and '-' (left-justify). */
struct out {
	char buf[128];
	size_t len;
	int total;
};

static void flush(struct out *o)
{
	if (o->len)
		fw_write(o->buf, o->len);
	o->len = 0;
}

static void put(struct out *o, char c)
{
	if (o->len == sizeof o->buf)
		flush(o);
	o->buf[o->len++] = c;
	o->total++;
}

static void pad(struct out *o, int n, char c)
{
	while (n-- > 0)
		put(o, c);
}

static void number(struct out *o, unsigned long long v, int negative, unsigned base, int upper,
		   int width, int zero, int left)
{
	char digits[24];
	int n = 0;
	const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	do {
		digits[n++] = set[v % base];
		v /= base;
	} while (v);
	int len = n + negative;
	if (!left && !zero)
		pad(o, width - len, ' ');
	if (negative)
		put(o, '-');
	if (!left && zero)
		pad(o, width - len, '0');
	while (n)
		put(o, digits[--n]);
	if (left)
		pad(o, width - len, ' ');
}

int vprintf(const char *fmt, va_list ap)
{
	struct out o = { .len = 0, .total = 0 };
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		int left = 0, zero = 0, width = 0, size = 0;
		for (;; fmt++) {
			if (*fmt == '-')
				left = 1;
			else if (*fmt == '0')
				zero = 1;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		for (;; fmt++) {
			if (*fmt == 'l')
				size++;
			else if (*fmt == 'z')
				size = sizeof(size_t) == sizeof(long long) ? 2 : 1;
			else if (*fmt != 'h')
				break;
		}
		switch (*fmt) {
		case 'd':
		case 'i': {
			long long v = size >= 2 ? va_arg(ap, long long) : size == 1 ? va_arg(ap, long) : va_arg(ap, int);
			unsigned long long m = v < 0 ? -(unsigned long long)v : (unsigned long long)v;
			number(&o, m, v < 0, 10, 0, width, zero, left);
			break;
		}
		case 'u':
		case 'x':
		case 'X':
		case 'o': {
			unsigned long long v = size >= 2 ? va_arg(ap, unsigned long long)
				: size == 1 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
			unsigned base = *fmt == 'u' ? 10 : *fmt == 'o' ? 8 : 16;
			number(&o, v, 0, base, *fmt == 'X', width, zero, left);
			break;
		}
		case 'p':
			put(&o, '0');
			put(&o, 'x');
			number(&o, (unsigned long long)(size_t)va_arg(ap, void *), 0, 16, 0, width, zero, left);
			break;
		case 'c':
			pad(&o, left ? 0 : width - 1, ' ');
			put(&o, (char)va_arg(ap, int));
			pad(&o, left ? width - 1 : 0, ' ');
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			int len = (int)strlen(s);
			pad(&o, left ? 0 : width - len, ' ');
			while (*s)
				put(&o, *s++);
			pad(&o, left ? width - len : 0, ' ');
			break;
		}
		case '%':
			put(&o, '%');
			break;
		case 0:
			fmt--;
			break;
		default:
			put(&o, '%');
			put(&o, *fmt);
		}
	}
	flush(&o);
	return o.total;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

/* The lowest set bit, from 1 (0 if none): gcc calls it for __builtin_ffs on some targets. */
int ffs(int i)
{
	unsigned v = (unsigned)i;
	int n = 1;

	if (!v)
		return 0;
	while (!(v & 1)) {
		v >>= 1;
		n++;
	}
	return n;
}

/* The firmware's own exports. */
long fw_value = 1000;

long fw_twice(long x)
{
	return 2 * x;
}
