/*
 * demo_greet.c - the smallest useful extension, used by the CLI demo.
 */
#include "host.h"
#include "llext.h"

/*
 * greet(name) prints "Hello, <name>!" and returns strlen(name):
 * greet("llext") prints "Hello, llext!" and returns 5.
 */
long greet(const char *name)
{
	printf("Hello, %s!\n", name);
	return (long)strlen(name);
}

LLEXT_EXPORT(greet);
