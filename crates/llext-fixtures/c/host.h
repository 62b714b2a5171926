/*
 * host.h - the host functions a fixture may call, and nothing else.
 *
 * Declared here rather than taken from the libc headers so that no header
 * can redirect a call to a fortified or versioned variant (__printf_chk,
 * __isoc99_*, ...) that the loader's host symbol table does not provide.
 * Every fixture must link against exactly this list when loaded.
 */
#ifndef FIXTURE_HOST_H
#define FIXTURE_HOST_H

#include <stddef.h> /* freestanding header: size_t, NULL */

int puts(const char *s);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int sprintf(char *buf, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int putchar(int c);

void *malloc(size_t size);
void *calloc(size_t count, size_t size);
void *realloc(void *ptr, size_t size);
void free(void *ptr);

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strcpy(char *dst, const char *src);
char *strncpy(char *dst, const char *src, size_t n);

void abort(void) __attribute__((noreturn));

#endif /* FIXTURE_HOST_H */
