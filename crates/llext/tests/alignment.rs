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

/// A section's ALIGN relocations split over two relocation tables (malformed, but parsed) are trimmed as
/// one set: a review found `line` misaligned and holding other bytes.
#[test]
fn align_relocations_split_over_two_tables_agree() {
    use object::{Object, ObjectSection, ObjectSymbol};
    let source = "__attribute__((noinline, aligned(4))) long vector(long c) { return c - 1; }\n\
                  __attribute__((noinline, aligned(64))) long line(long c, long d) { return c * d; }\n\
                  void *table[] = { vector, line };\n";
    let elf =
        common::compile_riscv_gcc(source, &["-march=rv64gc", "-mabi=lp64d", "-mcmodel=medany"]);
    let file = object::File::parse(&*elf).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let line = file.symbols().find(|s| s.name() == Ok("line")).unwrap();
    let code = text.data().unwrap()[line.address() as usize..][..6].to_vec();
    let aligns: Vec<usize> = text
        .relocations()
        .enumerate()
        .filter(|(_, (_, r))| {
            matches!(r.flags(), object::RelocationFlags::Elf { r_type } if r_type.0 == 43)
        })
        .map(|(k, _)| k)
        .collect();
    assert!(aligns.len() >= 2, "{aligns:?}");
    let rela = file.section_by_name(".rela.text").unwrap();
    let rela_index = rela.index().0;
    let (rela_off, rela_size) = rela.file_range().unwrap();
    let count = (rela_size / 24) as usize;
    drop(file);

    let u16_at =
        |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize;
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let mut bad = elf.clone();
    // The second ALIGN moves to the end of the entries, where the new table takes it alone.
    let entries = rela_off as usize..(rela_off + rela_size) as usize;
    let mut moved: Vec<[u8; 24]> = elf[entries.clone()]
        .chunks(24)
        .map(|c| c.try_into().unwrap())
        .collect();
    let last = moved.remove(aligns[1]);
    moved.push(last);
    bad[entries].copy_from_slice(&moved.concat());
    let split = (count as u64 - 1) * 24;
    let (shoff, shnum) = (u64_at(&bad, 0x28), u16_at(&bad, 0x3c));
    let mut headers = bad[shoff..shoff + 64 * shnum].to_vec();
    // The first table keeps the entries before the second ALIGN, a new one takes the rest.
    let mut second = headers[64 * rela_index..64 * rela_index + 64].to_vec();
    headers[64 * rela_index + 32..64 * rela_index + 40].copy_from_slice(&split.to_le_bytes());
    second[24..32].copy_from_slice(&(rela_off + split).to_le_bytes());
    second[32..40].copy_from_slice(&(rela_size - split).to_le_bytes());
    headers.extend_from_slice(&second);
    while bad.len() % 8 != 0 {
        bad.push(0);
    }
    let new_shoff = bad.len() as u64;
    bad.extend_from_slice(&headers);
    bad[0x28..0x30].copy_from_slice(&new_shoff.to_le_bytes());
    bad[0x3c..0x3e].copy_from_slice(&((shnum + 1) as u16).to_le_bytes());

    let mut arena = common::ExecArena::new(1 << 20);
    let r = registry(&mut arena);
    let whole = r.load("whole", &elf).unwrap();
    let at = r.extension_symbol(whole, "line").unwrap().unwrap() as *const u8;
    // SAFETY: the extension's code, loaded in the arena.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(at, 6) },
        &code[..],
        "one table"
    );
    let id = r.load("split", &bad).unwrap();
    let at = r.extension_symbol(id, "line").unwrap().unwrap() as *const u8;
    assert_eq!(at as usize % 64, 0, "line misaligned");
    // SAFETY: as above.
    let found = unsafe { std::slice::from_raw_parts(at, 6) };
    assert_eq!(found, &code[..], "two tables: `line` holds other bytes");
}
