/*
 * ctors.c - constructors and destructors the loader must run.
 *
 * gcc places constructor(101) in .init_array.00101 and the default-priority
 * one in .init_array; the loader must run lower priorities first, so the
 * digits recorded in ctors_log read 1 then 2.
 */
#include "host.h"

static long ctors_log;

__attribute__((constructor(101))) static void ctors_early(void)
{
	ctors_log = ctors_log * 10 + 1;
}

__attribute__((constructor)) static void ctors_late(void)
{
	ctors_log = ctors_log * 10 + 2;
}

/* Prints "ctors: destructor ran" when the extension is unloaded. */
__attribute__((destructor)) static void ctors_bye(void)
{
	puts("ctors: destructor ran");
}

/*
 * ctors_state() = 12 when both constructors ran once, priority 101 first.
 * 21 means the order was wrong, 0 that none ran, 1212 that they ran twice.
 */
long ctors_state(void)
{
	return ctors_log;
}
