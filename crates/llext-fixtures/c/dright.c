/*
 * dright.c - right side of the diamond; needs dbase.
 */
#include "llext.h"

extern long db_value(void);

/* dr_right() = db_value() * 2 = 200. */
long dr_right(void)
{
	return db_value() * 2;
}

LLEXT_EXPORT(dr_right);
