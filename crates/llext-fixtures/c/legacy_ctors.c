/*
 * legacy_ctors.c - constructor lists written by hand in the legacy .ctors/.dtors sections and in
 * .init_array/.fini_array, to check the order the loader runs them in.
 *
 * .init_array runs first to last, .ctors last to first (as a final link would lay them out), so loading
 * leaves init_order = 12 (init_array: 1 then 2) followed by ctors: 4 then 3, i.e. legacy_order() == 1243.
 * At unload, teardown is the reverse of construction: the .dtors list first to last, then .fini_array last
 * to first, printing "legacy: dtor 7", "legacy: dtor 8", "legacy: fini 6", "legacy: fini 5" in that order.
 */
#include "host.h"

static long init_order;

static void step1(void) { init_order = init_order * 10 + 1; }
static void step2(void) { init_order = init_order * 10 + 2; }
static void step3(void) { init_order = init_order * 10 + 3; }
static void step4(void) { init_order = init_order * 10 + 4; }
static void fini5(void) { puts("legacy: fini 5"); }
static void fini6(void) { puts("legacy: fini 6"); }
static void dtor7(void) { puts("legacy: dtor 7"); }
static void dtor8(void) { puts("legacy: dtor 8"); }

static void (*const init_list[])(void) __attribute__((section(".init_array"), used)) = { step1, step2 };
static void (*const ctor_list[])(void) __attribute__((section(".ctors"), used)) = { step3, step4 };
static void (*const fini_list[])(void) __attribute__((section(".fini_array"), used)) = { fini5, fini6 };
static void (*const dtor_list[])(void) __attribute__((section(".dtors"), used)) = { dtor7, dtor8 };

/* legacy_order() = 1243: .init_array in order (1, 2), then .ctors backwards (4, 3). */
long legacy_order(void)
{
	return init_order;
}
