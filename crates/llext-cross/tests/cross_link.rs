//! Every C fixture object of every firmware target, linked by llext into memory at a fixed address and by
//! GNU `ld` (with a linker script placing each section at the same address, and the firmware's symbols by
//! `--defsym` or, on Arm, from an object typing its functions): the bytes of every loaded section must
//! match. The assembly fixtures have their own test, `relocation_types.rs`.
//!
//! The GOT is the one thing the two linkers lay out differently, so places that address a GOT slot are
//! compared by meaning instead: the slot each image points to must hold the same symbol address.

use std::collections::{BTreeMap, BTreeSet};

use llext::{ArenaMemory, Export, ExportTable, LoadOptions, Registry};
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionKind};

use llext_cross::{objects, Target, ASM_STEM};

mod common;
use common::asm::{relocations, Reloc};
use common::{
    fake_exports, gnu_link, have_ld, linked_bytes, llext_load, read_u32, section_addresses, target,
    word, Mapping, WorkDir, ARENA,
};

/// Section name → (file offset of each relocation needing a GOT-aware comparison).
type Masks = BTreeMap<String, BTreeSet<u64>>;

/// Relocations that address the GOT: the two linkers place GOT slots differently.
fn got_places(target: &Target, elf: &[u8]) -> Masks {
    let relocs = relocations(elf);
    let mut masks = Masks::new();
    // RISC-V: the `GOT_HI20` places, and the `PCREL_LO12_I/S` whose label is one of them.
    let got_hi: BTreeSet<(&str, u64)> = relocs
        .iter()
        .filter(|r| target.machine == 243 && r.r_type == 20)
        .map(|r| (r.section.as_str(), r.offset))
        .collect();
    for r in &relocs {
        let got = match target.machine {
            40 => matches!(r.r_type, 26 | 96) || r.symbol == "_GLOBAL_OFFSET_TABLE_",
            183 => matches!(r.r_type, 309 | 311 | 312 | 313),
            _ => {
                r.r_type == 20
                    || (matches!(r.r_type, 24 | 25)
                        && got_hi.contains(&(r.section.as_str(), label(r))))
            }
        };
        if got {
            masks.entry(r.section.clone()).or_default().insert(r.offset);
        }
    }
    masks
}

/// The value of a relocation's symbol in its own section (a label's offset), or `u64::MAX` if undefined.
fn label(r: &Reloc) -> u64 {
    r.defined.as_ref().map(|d| d.1).unwrap_or(u64::MAX)
}

/// Section name → (offset of a HI instruction, offset of its LO instruction) for two-instruction GOT loads:
/// RISC-V `GOT_HI20` + `PCREL_LO12_I`, AArch64 `ADR_GOT_PAGE` + `LD64_GOT_LO12_NC` of the same symbol.
fn got_pairs(target: &Target, elf: &[u8]) -> BTreeMap<String, Vec<(u64, u64)>> {
    let relocs = relocations(elf);
    let mut pairs: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let is = |r: &Reloc, riscv: u32, aarch64: u32| {
        (target.machine, r.r_type) == (243, riscv) || (target.machine, r.r_type) == (183, aarch64)
    };
    let same_symbol = |a: &Reloc, b: &Reloc| a.symbol == b.symbol && a.defined == b.defined;
    for lo in relocs.iter().filter(|r| is(r, 24, 312)) {
        let his = relocs
            .iter()
            .filter(|h| h.section == lo.section && is(h, 20, 311));
        let hi = if target.machine == 243 {
            his.clone()
                .find(|h| h.offset == label(lo))
                .map(|h| h.offset)
        } else {
            his.clone()
                .filter(|h| same_symbol(h, lo) && h.offset <= lo.offset)
                .map(|h| h.offset)
                .max()
                .or_else(|| his.clone().find(|h| same_symbol(h, lo)).map(|h| h.offset))
        };
        if let Some(hi) = hi {
            pairs
                .entry(lo.section.clone())
                .or_default()
                .push((hi, lo.offset));
        }
    }
    pairs
}

/// The GOT slot a two-instruction GOT load addresses, decoded from linked code.
fn paired_slot(target: &Target, bytes: &[u8], hi: usize, lo: usize, p_hi: u64) -> u64 {
    let (h, l) = (read_u32(bytes, hi), read_u32(bytes, lo));
    if target.machine == 243 {
        let upper = i64::from((h & 0xffff_f000) as i32);
        let lower = i64::from((l as i32) >> 20);
        p_hi.wrapping_add(upper.wrapping_add(lower) as u64)
    } else {
        let imm = (((h >> 5) & 0x7ffff) << 2) | ((h >> 29) & 3);
        let pages = i64::from(((imm << 11) as i32) >> 11);
        let page = (p_hi & !0xfff).wrapping_add((pages << 12) as u64);
        page + u64::from((l >> 10) & 0xfff) * 8
    }
}

/// The GOT slot address a GOT-relative place computes, decoded from the linked word; `a` is the addend the
/// object stored there.
fn slot_address(
    target: &Target,
    bytes: &[u8],
    at: usize,
    p: u64,
    got_base: u64,
    r_type: u32,
    a: i64,
) -> Option<u64> {
    let w = u64::from(read_u32(bytes, at));
    match (target.machine, r_type) {
        // GOT_PREL is GOT(S) + A - P; GOT_BREL is GOT(S) + A - GOT_ORG.
        (40, 96) => Some(p.wrapping_add(w).wrapping_sub(a as u64) & 0xffff_ffff),
        (40, 26) => Some(got_base.wrapping_add(w).wrapping_sub(a as u64) & 0xffff_ffff),
        _ => None,
    }
}

/// `_GLOBAL_OFFSET_TABLE_` in the GNU ld output.
fn ld_got_origin(elf: &[u8]) -> Option<u64> {
    let file = object::File::parse(elf).ok()?;
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok("_GLOBAL_OFFSET_TABLE_"))?;
    Some(sym.address())
}

fn sext31(w: u32) -> i64 {
    i64::from(((w << 1) as i32) >> 1)
}

/// Checks an `.ARM.exidx` section of ours word by word; returns how many PREL31 words were checked.
fn check_exidx(
    file: &object::File<'_>,
    section: &object::Section<'_, '_>,
    addrs: &BTreeMap<String, u64>,
    base: u64,
    ours: &[u8],
    fixture: &str,
    failures: &mut Vec<String>,
) -> usize {
    let original = section.data().unwrap_or(&[]);
    let mut prel31 = BTreeMap::new();
    for (off, rel) in section.relocations() {
        if let (
            RelocationFlags::Elf {
                r_type: object::elf::RelocationType(42),
            },
            RelocationTarget::Symbol(i),
        ) = (rel.flags(), rel.target())
        {
            prel31.insert(off as usize, i);
        }
    }
    let mut checked = 0;
    for at in (0..ours.len().min(original.len())).step_by(4) {
        let Some(&sym) = prel31.get(&at) else {
            if ours[at..at + 4] != original[at..at + 4] {
                failures.push(format!(
                    "{fixture}: .ARM.exidx+{at:#x} changed although not relocated"
                ));
            }
            continue;
        };
        let Ok(symbol) = file.symbol_by_index(sym) else {
            continue;
        };
        let Some(section_addr) = symbol
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
            .and_then(|s| s.name().ok().and_then(|n| addrs.get(n)).copied())
        else {
            continue;
        };
        let p = base + at as u64;
        let a = sext31(read_u32(original, at));
        let expected = (section_addr + symbol.address()).wrapping_add(a as u64);
        let found = p.wrapping_add(sext31(read_u32(ours, at)) as u64);
        checked += 1;
        if expected & 0xffff_ffff != found & 0xffff_ffff
            || ours[at + 3] & 0x80 != original[at + 3] & 0x80
        {
            failures.push(format!(
                "{fixture}: .ARM.exidx+{at:#x} points at {found:#x}, expected {expected:#x}"
            ));
        }
    }
    checked
}

fn check_target(target: &Target) {
    if !have_ld(target) {
        return;
    }
    // The assembly fixtures have their own test (tests/relocation_types.rs).
    let fixtures: Vec<_> = objects(target.name)
        .into_iter()
        .filter(|f| f.stem != ASM_STEM)
        .collect();
    assert!(
        !fixtures.is_empty(),
        "no {} fixtures were built",
        target.name
    );
    let work = WorkDir::new(target.name);
    let mapping = Mapping::at(target.load_base, ARENA);
    let ptr = if target.is_64 { 8 } else { 4 };
    let mut failures = Vec::new();
    let mut checked_words = 0usize;
    for fixture in &fixtures {
        let elf = std::fs::read(&fixture.path).expect("read fixture");
        let exports = fake_exports(target, &elf);
        let info = match llext_load(target, &mapping, &fixture.name, &elf, &exports) {
            Ok(info) => info,
            Err(e) => {
                failures.push(format!("{}: load failed: {e}", fixture.name));
                continue;
            }
        };
        let got = info
            .regions
            .iter()
            .find(|r| r.kind == llext::RegionKind::Got)
            .map(|r| (r.addr as u64, r.size));
        let addrs = section_addresses(&info);
        let linked = gnu_link(
            target,
            &fixture.path,
            &addrs,
            &exports,
            target.load_base + ARENA as u64 - 0x1_0000,
            &work.0,
        );
        let masks = got_places(target, &elf);
        let pairs = got_pairs(target, &elf);
        let file = object::File::parse(&*elf).expect("fixture parses");
        let relocs: BTreeMap<(String, u64), u32> = file
            .sections()
            .flat_map(|s| {
                let name = s.name().unwrap_or("").to_owned();
                s.relocations()
                    .filter_map(move |(off, r)| match r.flags() {
                        RelocationFlags::Elf {
                            r_type: object::elf::RelocationType(r_type),
                        } => Some(((name.clone(), off), r_type)),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for s in &info.sections {
            let Some(section) = file.section_by_name(&s.name) else {
                continue;
            };
            if section.kind() == SectionKind::UninitializedData || s.size == 0 {
                continue;
            }
            let ours = mapping.bytes(s.addr as u64, s.size);
            if s.name.starts_with(".ARM.exidx") {
                // GNU ld edits unwind index tables (drops redundant entries), so check each entry against
                // the formula instead: a PREL31 word points at its symbol plus the stored addend; other
                // words keep the object's bytes.
                checked_words += check_exidx(
                    &file,
                    &section,
                    &addrs,
                    s.addr as u64,
                    &ours,
                    &fixture.name,
                    &mut failures,
                );
                continue;
            }
            let Some(theirs) = linked_bytes(&linked, s.addr as u64, s.size) else {
                failures.push(format!(
                    "{}: {} missing from the ld output",
                    fixture.name, s.name
                ));
                continue;
            };
            let masked = masks.get(&s.name);
            let mut differences = Vec::new();
            for at in (0..s.size).step_by(2) {
                let end = (at + 2).min(s.size);
                if ours[at..end] == theirs[at..end] {
                    continue;
                }
                let in_mask = masked.is_some_and(|m| {
                    m.iter()
                        .any(|&o| (o as usize..o as usize + 4).contains(&at))
                });
                if !in_mask {
                    differences.push(at);
                }
            }
            // GOT-relative words: the slot each image addresses must hold the same value.
            if let (Some(masked), Some((got_base, got_size))) = (masked, got) {
                for &off in masked {
                    let r_type = relocs.get(&(s.name.clone(), off)).copied().unwrap_or(0);
                    let p = s.addr as u64 + off;
                    let ld_got = ld_got_origin(&linked)
                        .unwrap_or(target.load_base + ARENA as u64 - 0x1_0000);
                    let original = section.data().unwrap_or(&[]);
                    let a = original
                        .get(off as usize..off as usize + 4)
                        .map(|b| i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes"))))
                        .unwrap_or(0);
                    let (Some(our_slot), Some(their_slot)) = (
                        slot_address(target, &ours, off as usize, p, got_base, r_type, a),
                        slot_address(target, &theirs, off as usize, p, ld_got, r_type, a),
                    ) else {
                        continue;
                    };
                    let ours_ok =
                        our_slot >= got_base && our_slot + ptr as u64 <= got_base + got_size as u64;
                    let our_value = ours_ok.then(|| word(&mapping.bytes(our_slot, ptr), 0, ptr));
                    let their_value =
                        linked_bytes(&linked, their_slot, ptr).map(|b| word(&b, 0, ptr));
                    checked_words += 1;
                    if our_value.is_none() || our_value != their_value {
                        failures.push(format!(
                            "{}: {}+{off:#x}: GOT slot holds {our_value:x?}, ld's holds {their_value:x?}",
                            fixture.name, s.name
                        ));
                    }
                }
            }
            for &(hi, lo) in pairs.get(&s.name).map(Vec::as_slice).unwrap_or(&[]) {
                let p_hi = s.addr as u64 + hi;
                let ours_slot = paired_slot(target, &ours, hi as usize, lo as usize, p_hi);
                let theirs_slot = paired_slot(target, &theirs, hi as usize, lo as usize, p_hi);
                let our_value = got
                    .filter(|&(b, n)| ours_slot >= b && ours_slot + ptr as u64 <= b + n as u64)
                    .map(|_| word(&mapping.bytes(ours_slot, ptr), 0, ptr));
                let their_value = linked_bytes(&linked, theirs_slot, ptr).map(|b| word(&b, 0, ptr));
                checked_words += 1;
                if our_value.is_none() || our_value != their_value {
                    failures.push(format!(
                        "{}: {}+{hi:#x}/+{lo:#x}: GOT slot holds {our_value:x?}, ld's holds {their_value:x?}",
                        fixture.name, s.name
                    ));
                }
            }
            if let Some(&first) = differences.first() {
                failures.push(format!(
                    "{}: {} differs at {} places, first at +{first:#x} (llext {:02x?}, ld {:02x?})",
                    fixture.name,
                    s.name,
                    differences.len(),
                    &ours[first..(first + 4).min(s.size)],
                    &theirs[first..(first + 4).min(s.size)],
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}: {} of {} objects differ from GNU ld:\n{}",
        target.name,
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{}: {} objects match GNU ld byte for byte ({checked_words} GOT references compared by slot)",
        target.name,
        fixtures.len()
    );
}

#[test]
fn cortex_m_objects_match_gnu_ld() {
    check_target(target("cortex-m"));
}

#[test]
fn riscv32_objects_match_gnu_ld() {
    check_target(target("riscv32"));
}

#[test]
fn riscv64_objects_match_gnu_ld() {
    check_target(target("riscv64"));
}

#[test]
fn aarch64_objects_match_gnu_ld() {
    check_target(target("aarch64"));
}

/// The `basic-gcc-O2-nopic` object of `target`; `None` only when its cross compiler is missing and
/// `LLEXT_ALLOW_MISSING_CROSS` allows that (otherwise the missing package fails the test).
fn gcc_basic(target: &str) -> Option<llext_cross::Fixture> {
    let found = objects(target)
        .into_iter()
        .find(|f| f.name == "basic-gcc-O2-nopic");
    if found.is_none() {
        common::not_built(&format!("basic-gcc-O2-nopic for {target}"));
    }
    found
}

/// Calls from RAM at 0x2000_0000 to firmware functions in flash near 0x0 (512 MiB away, beyond a Thumb BL's
/// ±16 MiB): every such BL must reach a veneer that loads the function's address, Thumb bit included.
#[test]
fn cortex_m_calls_into_flash_go_through_veneers() {
    let target = target("cortex-m");
    let Some(fixture) = gcc_basic(target.name) else {
        return;
    };
    let elf = std::fs::read(&fixture.path).expect("read fixture");
    let far = Target {
        exports_base: 0x1000,
        ..*target
    };
    let exports = fake_exports(&far, &elf);
    let table: Vec<Export> = exports
        .iter()
        .map(|(n, a)| Export::new(Box::leak(n.clone().into_boxed_str()), *a as *const ()))
        .collect();
    let table = ExportTable::new(Box::leak(table.into_boxed_slice()));
    let mapping = Mapping::at(0x2100_0000, 1 << 20);
    // SAFETY: the mapping is only used through this arena until the registry is dropped.
    let arena = unsafe { std::slice::from_raw_parts_mut(mapping.ptr, mapping.len) };
    let registry = Registry::for_machine(ArenaMemory::new(arena), table, target.machine);
    let options = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let id = registry
        .load_with("far", &elf, &options)
        .expect("load with veneers");
    let info = registry.info(id).expect("info");
    drop(registry);
    let stubs = info
        .regions
        .iter()
        .find(|r| r.kind == llext::RegionKind::Stubs)
        .expect("a veneer region");
    let text = info
        .sections
        .iter()
        .find(|s| s.name == ".text")
        .expect(".text");
    let file = object::File::parse(&*elf).expect("fixture parses");
    let section = file.section_by_name(".text").expect(".text");
    let code = mapping.bytes(text.addr as u64, text.size);
    let mut calls = 0;
    for (off, rel) in section.relocations() {
        let (
            RelocationFlags::Elf {
                r_type: object::elf::RelocationType(10),
            },
            RelocationTarget::Symbol(i),
        ) = (rel.flags(), rel.target())
        else {
            continue;
        };
        let name = file
            .symbol_by_index(i)
            .and_then(|s| s.name().map(String::from))
            .expect("name");
        let Some(&(_, want)) = exports.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let at = off as usize;
        let hw1 = u32::from(u16::from_le_bytes([code[at], code[at + 1]]));
        let hw2 = u32::from(u16::from_le_bytes([code[at + 2], code[at + 3]]));
        assert_eq!(hw2 & 0xd000, 0xd000, "{name}: still a BL");
        let s = (hw1 >> 10) & 1;
        let i1 = !((hw2 >> 13) ^ s) & 1;
        let i2 = !((hw2 >> 11) ^ s) & 1;
        let imm =
            (s << 24) | (i1 << 23) | (i2 << 22) | ((hw1 & 0x3ff) << 12) | ((hw2 & 0x7ff) << 1);
        let offset = i64::from(((imm << 7) as i32) >> 7);
        let dest = (text.addr as u64 + off + 4).wrapping_add(offset as u64);
        assert!(
            dest >= stubs.addr as u64 && dest < (stubs.addr + stubs.size) as u64,
            "{name}: BL lands at {dest:#x}, outside the veneers"
        );
        let literal = mapping.bytes(dest + 8, 4);
        assert_eq!(
            u64::from(read_u32(&literal, 0)),
            want,
            "{name}: veneer target"
        );
        calls += 1;
    }
    assert!(calls >= 3, "only {calls} calls into the firmware checked");
}

/// A `PCREL_LO12_I` whose `PCREL_HI20` was removed (turned into `R_RISCV_NONE`) is a typed error naming the
/// LO12 relocation, never a silently wrong instruction.
#[test]
fn riscv_lo12_without_its_hi20_is_refused() {
    let target = target("riscv64");
    let Some(fixture) = gcc_basic(target.name) else {
        return;
    };
    let mut elf = std::fs::read(&fixture.path).expect("read fixture");
    let range = {
        let file = object::File::parse(&*elf).expect("fixture parses");
        let rela = file.section_by_name(".rela.text").expect(".rela.text");
        rela.file_range().expect("in the file")
    };
    let mut removed = 0;
    for entry in elf[range.0 as usize..(range.0 + range.1) as usize].chunks_exact_mut(24) {
        // Elf64_Rela: r_offset, r_info (type in the low 32 bits), r_addend.
        if entry[8] == 23 && entry[9..12] == [0, 0, 0] {
            entry[8] = 0;
            removed += 1;
        }
    }
    assert!(removed > 0, "no PCREL_HI20 in the fixture");
    let exports = fake_exports(target, &elf);
    let table: Vec<Export> = exports
        .iter()
        .map(|(n, a)| Export::new(Box::leak(n.clone().into_boxed_str()), *a as *const ()))
        .collect();
    let mut arena = vec![0u8; 1 << 16];
    let registry = Registry::for_machine(
        ArenaMemory::new(&mut arena),
        ExportTable::new(&table),
        target.machine,
    );
    let options = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let error = registry
        .load_with("unpaired", &elf, &options)
        .expect_err("an unpaired LO12 must not load");
    let text = error.to_string();
    assert!(
        text.contains("R_RISCV_PCREL_LO12_I") && text.contains("without a PCREL_HI20"),
        "{text}"
    );
}

/// A registry for objects of `target`, in `mapping`, with the firmware symbols `elf` imports.
fn registry_for<'a>(
    target: &Target,
    mapping: &'a Mapping,
    elf: &[u8],
) -> Registry<ArenaMemory<'a>> {
    let table: Vec<Export> = fake_exports(target, elf)
        .into_iter()
        .map(|(n, a)| Export::new(Box::leak(n.into_boxed_str()), a as *const ()))
        .collect();
    // SAFETY: the mapping outlives the registry (the borrow says so) and is used through it alone.
    let arena = unsafe { std::slice::from_raw_parts_mut(mapping.ptr, mapping.len) };
    Registry::for_machine(
        ArenaMemory::new(arena),
        ExportTable::new(&table),
        target.machine,
    )
}

/// One registry holds extensions of one pointer width. A RISC-V registry on this host takes the class of
/// its first object and refuses the other with a typed error, unchanged; an Arm registry saves 32-bit
/// contexts (its extensions' width, not the host's), which another Arm registry restores.
#[test]
fn a_registry_keeps_one_pointer_width() {
    let (Some(rv32), Some(rv64), Some(arm)) = (
        gcc_basic("riscv32"),
        gcc_basic("riscv64"),
        gcc_basic("cortex-m"),
    ) else {
        return;
    };
    let read = |f: &llext_cross::Fixture| std::fs::read(&f.path).expect("read fixture");
    let (rv32, rv64, arm) = (read(&rv32), read(&rv64), read(&arm));
    let options = LoadOptions {
        bring_up: false,
        portable: true,
        ..LoadOptions::default()
    };

    let mapping = Mapping::at(0x2300_0000, 1 << 20);
    let riscv = registry_for(target("riscv32"), &mapping, &rv32);
    riscv
        .load_with("rv32", &rv32, &options)
        .expect("an RV32 object loads");
    let error = riscv
        .load_with("rv64", &rv64, &options)
        .expect_err("an RV64 object after an RV32 one");
    assert_eq!(
        error,
        llext::Error::WrongClass {
            expected: 32,
            found: 64
        }
    );
    assert!(error.to_string().contains("64-bit"), "{error}");
    assert_eq!(riscv.extensions().len(), 1);

    let saved_at = Mapping::at(0x2400_0000, 1 << 20);
    let restored_at = Mapping::at(0x2500_0000, 1 << 20);
    let source = registry_for(target("cortex-m"), &saved_at, &arm);
    source.load_with("arm", &arm, &options).expect("Arm load");
    let bytes = source
        .save(&llext::SaveOptions {
            portable: true,
            ..llext::SaveOptions::default()
        })
        .expect("portable save");
    assert_eq!(bytes[14], 4, "pointer width byte of an Arm context");
    let context = llext::Context::from_bytes(&bytes).expect("context");
    let target_registry = registry_for(target("cortex-m"), &restored_at, &arm);
    let ids = target_registry
        .restore(&context, &llext::RestoreOptions::default())
        .expect("portable restore of an Arm context");
    assert_eq!(ids.len(), 1);
    let moved = target_registry.info(ids[0]).expect("info").regions[0].addr as u64;
    assert!((0x2500_0000..0x2510_0000).contains(&moved), "{moved:#x}");
}
