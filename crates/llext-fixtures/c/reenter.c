/*
 * reenter.c - constructors and destructors that call back into the loader.
 *
 * The host provides host_reenter(); the test's version of it uses the
 * registry that is loading or unloading this extension (looks symbols up,
 * calls them, loads and unloads other extensions, tries to unload and save
 * this one). It returns 1 when everything it tried behaved as expected.
 * Without host_reenter the extension does not load.
 */
extern long host_reenter(const char *phase);

static long reenter_seen;

__attribute__((constructor)) static void reenter_init(void)
{
	reenter_seen = host_reenter("init");
}

__attribute__((destructor)) static void reenter_fini(void)
{
	host_reenter("fini");
}

/* A function for the constructor to find and call through the registry. */
long reenter_value(void)
{
	return 42;
}

/* What host_reenter returned to the constructor. */
long reenter_seen_by_init(void)
{
	return reenter_seen;
}
