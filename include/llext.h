/*
 * llext.h - declarations for authors of llext extensions.
 *
 * An extension is an ELF relocatable object (the output of `gcc -c` or
 * `ld -r`) that the llext loader places into the memory of a running
 * process, links against the host's symbols and against the symbols
 * exported by extensions loaded before it, and then calls into.
 *
 * Exporting symbols
 * -----------------
 * A function or object marked with LLEXT_EXPORT(sym) is listed in the
 * extension's `.exported_sym` section.  When the extension is loaded, the
 * loader reads that table, relocates it like any other data, and adds every
 * entry to its registry of global names.  Extensions loaded afterwards may
 * then refer to the name as an ordinary `extern` symbol and the loader links
 * them against the exporting extension; the exporter cannot be unloaded while
 * such a dependent remains loaded.
 *
 * Symbols that are not exported stay private to their extension, even when
 * they have external linkage inside the object file.
 *
 * The table entry layout is the same as Zephyr's `struct llext_const_symbol`
 * (two pointer-sized fields), so extensions written for Zephyr's LLEXT build
 * unchanged with the compatibility macros below.
 */
#ifndef LLEXT_H
#define LLEXT_H

/*
 * One entry of the `.exported_sym` table: the symbol's name and its address.
 * Both fields are pointers, so an entry is two machine words with no
 * padding and the section size divided by the entry size is the number of
 * exports.
 */
struct llext_symbol {
	/* NUL-terminated name other extensions use to refer to the symbol. */
	const char *name;
	/* Address of the exported function or object. */
	const void *addr;
};

/*
 * LLEXT_EXPORT(sym) - publish `sym` (a function or object with external or
 * internal linkage, declared before this line) to extensions loaded later.
 *
 * `used` keeps the entry although nothing in the extension refers to it, and
 * the dedicated section lets the loader find all entries without a symbol
 * table walk.
 */
#define LLEXT_EXPORT(sym)                                                      \
	static const struct llext_symbol __llext_sym_##sym                     \
		__attribute__((section(".exported_sym"), used)) = {            \
			#sym, (const void *)&sym }

/* Zephyr compatibility: both names Zephyr uses for the same export. */
#define LL_EXTENSION_SYMBOL(x) LLEXT_EXPORT(x)
#define EXPORT_SYMBOL(x) LLEXT_EXPORT(x)

#endif /* LLEXT_H */
