//! RISC-V alignment padding (`R_RISCV_ALIGN`): gcc's assembler pads each alignment directive in code
//! with the most NOPs it could need and leaves the linker to trim them. An embedded user's trial found
//! functions `aligned(4)` and `aligned(64)` misaligned at run time (a trap vector's mode bits wrong), as
//! llext kept every NOP. The bytes must match GNU `ld` (the host cross-check, `llext-cross`, compares them
//! for the firmware fixture `aligned.c`); here: the addresses, and malformed padding refused as a typed
//! error that leaves the registry as it was.

use llext::{ArenaMemory, Error, ExportTable, Registry};
use object::{Object, ObjectSection, RelocationFlags};

mod common;

const EM_RISCV: u16 = 243;
const R_RISCV_ALIGN: u32 = 43;

const SOURCE: &str = r#"
__attribute__((noinline)) static long triple(long x) { return x * 3; }
__attribute__((noinline, aligned(4))) void vector(void) { }
__attribute__((noinline)) static long add(long x, long y) { return x + y; }
__attribute__((noinline, aligned(64))) long line(long c, long d) { return c * d; }
__attribute__((aligned(16))) long after = 7;
long entry(long a, long b) { return add(triple(a), b) + line(a, b) + after; }
"#;

fn object(rv64: bool) -> Vec<u8> {
    let flags: &[&str] = if rv64 {
        &["-march=rv64gc", "-mabi=lp64d", "-mcmodel=medany"]
    } else {
        &["-march=rv32imac", "-mabi=ilp32"]
    };
    let elf = common::compile_riscv_gcc(SOURCE, flags);
    assert!(
        !align_relocations(&elf).is_empty(),
        "gcc left the alignment to the linker"
    );
    elf
}

/// (file offset of the entry's r_offset, file offset of its r_addend, the relocation's offset in .text) for
/// every R_RISCV_ALIGN of `.text`.
fn align_relocations(elf: &[u8]) -> Vec<(usize, usize, u64)> {
    let file = object::File::parse(elf).unwrap();
    let is_64 = file.is_64();
    let rela = file.section_by_name(".rela.text").expect(".rela.text");
    let (start, _) = rela.file_range().unwrap();
    let text = file.section_by_name(".text").unwrap();
    let entry = if is_64 { 24 } else { 12 };
    text.relocations()
        .enumerate()
        .filter(|(_, (_, r))| {
            matches!(r.flags(), RelocationFlags::Elf { r_type } if r_type.0 == R_RISCV_ALIGN)
        })
        .map(|(k, (offset, _))| {
            let at = start as usize + k * entry;
            (at, at + if is_64 { 16 } else { 8 }, offset)
        })
        .collect()
}

fn registry(arena: &mut common::ExecArena) -> Registry<ArenaMemory<'_>> {
    Registry::for_machine(
        ArenaMemory::new(arena.bytes()),
        ExportTable::default(),
        EM_RISCV,
    )
}

#[test]
fn aligned_code_lands_aligned() {
    let mut arena = common::ExecArena::new(1 << 20);
    for rv64 in [true, false] {
        let elf = object(rv64);
        let size = object::File::parse(&*elf)
            .unwrap()
            .section_by_name(".text")
            .unwrap()
            .size();
        let r = registry(&mut arena);
        let id = r.load("aligned", &elf).unwrap();
        let at = |name: &str| r.extension_symbol(id, name).unwrap().unwrap();
        assert_eq!(at("vector") % 4, 0, "rv64 {rv64}");
        assert_eq!(at("line") % 64, 0, "rv64 {rv64}");
        assert_eq!(at("after") % 16, 0, "rv64 {rv64}");
        // The padding was trimmed, not grown: the code is smaller than the object's section.
        let info = r.info(id).unwrap();
        let text = info.sections.iter().find(|s| s.name == ".text").unwrap();
        assert!((text.size as u64) < size, "{} of {size}", text.size);
        // `entry` still lies after `line` (the object's order), past its code.
        assert!(at("entry") > at("line") + 4);
    }
}

#[test]
fn malformed_alignment_padding_is_a_typed_error() {
    let mut arena = common::ExecArena::new(1 << 20);
    let elf = object(true);
    let aligns = align_relocations(&elf);
    let (offset_at, addend_at, _) = aligns[0];
    let patch = |at: usize, value: u64| {
        let mut bad = elf.clone();
        bad[at..at + 8].copy_from_slice(&value.to_le_bytes());
        bad
    };
    for (bad, reason) in [
        (patch(addend_at, 1 << 20), "padding runs past its section"),
        (patch(addend_at, (-2i64) as u64), "negative padding"),
        (
            patch(offset_at, aligns[0].2 + 1),
            "too little padding for its alignment",
        ),
    ] {
        let r = registry(&mut arena);
        let e = r.load("bad", &bad).unwrap_err();
        assert!(
            matches!(&e, Error::BadRelocation { kind: "R_RISCV_ALIGN", reason: found, .. } if *found == reason),
            "{e}"
        );
        assert!(r.is_empty());
    }
}
