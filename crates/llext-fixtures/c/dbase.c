/*
 * dbase.c - bottom of the diamond dbase <- {dleft, dright} <- dtop.
 */
#include "llext.h"

/* Number of db_value() calls since loading (a .bss export). */
long db_calls;

/* db_value() = 100, counting the call in db_calls. */
long db_value(void)
{
	db_calls++;
	return 100;
}

LLEXT_EXPORT(db_value);
LLEXT_EXPORT(db_calls);
