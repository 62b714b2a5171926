/*
 * dleft.c - left side of the diamond; needs dbase.
 */
#include "llext.h"

extern long db_value(void);
extern long db_calls;

/* dl_left() = db_value() + 1 = 101. */
long dl_left(void)
{
	return db_value() + 1;
}

/* dl_calls() = dbase's db_calls: how often db_value() ran since dbase loaded. */
long dl_calls(void)
{
	return db_calls;
}

LLEXT_EXPORT(dl_left);
LLEXT_EXPORT(dl_calls);
