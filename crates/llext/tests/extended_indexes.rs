//! An object with more sections than a symbol's `st_shndx` can number (past `SHN_LORESERVE`, 0xff00): the
//! sections of its later symbols are in the extended index table (`SHT_SYMTAB_SHNDX`), which the loader
//! reads for them.

mod common;

use std::fmt::Write as _;

use common::elf::{u32_at, u64_at};
use common::{call, compile_c, registry};

/// Functions, each in a section of its own: with the object's few other sections, past `SHN_LORESERVE`
/// and within the default section limit (65,536).
const FUNCTIONS: usize = 65_300;

#[test]
fn symbols_in_sections_past_shn_loreserve() {
    // Assembly, not C: gcc takes about 40 s to compile as many C functions, its assembler under a second.
    let mut source = String::new();
    for i in 0..FUNCTIONS {
        writeln!(
            source,
            ".section .text.f{i},\"ax\",@progbits\n.globl f{i}\n.type f{i},@function\nf{i}: mov ${i}, %eax\nret"
        )
        .unwrap();
    }
    let object = compile_c(&source, &["-x", "assembler"]);
    // Extended numbering: the section count is section 0's `sh_size`, and an extended index table exists.
    let shoff = u64_at(&object, 0x28) as usize;
    let count = u64_at(&object, shoff + 0x20) as usize;
    assert!(count > 0xff00, "{count} sections");
    let shndx_tables = (0..count)
        .filter(|i| u32_at(&object, shoff + i * 64 + 4) == 18)
        .count();
    assert_eq!(shndx_tables, 1, "one SHT_SYMTAB_SHNDX section");

    let r = registry();
    r.load("many-sections", &object).unwrap();
    assert_eq!(call(&r, "f0", &[]), 0);
    for i in [0xfeff, 0xff00, 0xff01, FUNCTIONS - 1] {
        assert_eq!(call(&r, &format!("f{i}"), &[]), i as i64);
    }
}
