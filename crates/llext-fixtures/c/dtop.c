/*
 * dtop.c - top of the diamond; needs dleft and dright (and through them
 * dbase, which it does not name itself).
 */
extern long dl_left(void);
extern long dl_calls(void);
extern long dr_right(void);

/* dtop_total() = dl_left() + dr_right() = 101 + 200 = 301. */
long dtop_total(void)
{
	return dl_left() + dr_right();
}

/*
 * dtop_calls() = db_calls as seen through dleft: 2 after one dtop_total()
 * call on a fresh diamond, 4 after two.
 */
long dtop_calls(void)
{
	return dl_calls();
}
