//! The assembly fixtures (`fixtures/relocs-*.S`, assembled by GNU as and by clang): the relocation types no
//! compiler emits for the C fixtures.
//!
//! - Each object must hold every type it is meant to exercise, so a fixture cannot silently stop
//!   covering one.
//! - Linked by llext into memory at a fixed address and by GNU `ld` at the same addresses (the machinery
//!   of `cross_link.rs`), the bytes of every loaded section must match. The few places GNU ld 2.40 cannot
//!   link as the ABI documents say (see [`ld_cannot`]) are checked against the ABI formula instead.
//! - Every `edge_*` relocation is linked with its symbol at both ends of its type's reach and at values
//!   with alternating bits inside it (compared the same way), and one step beyond each end, where llext
//!   must refuse it with a `BadRelocation` naming the type and the place, and GNU ld must refuse it too
//!   (where it checks the range at all).
//! - A RISC-V `jal` to a firmware function beyond its reach goes through a veneer.

use std::collections::{BTreeMap, BTreeSet};

use llext::ExtensionInfo;
use object::{Object, ObjectSection, SectionKind};

use llext_cross::{objects, Fixture, Target, ASM_STEM};

mod common;
use common::asm::{
    baseline_addresses, edge_address, edge_relocations, fixture_exports, reach, relocations,
    required_types, retype, End, Reloc, RETYPED_SECTION, RISCV_RETYPED,
};
use common::{
    have_ld, is_data, linked_bytes, llext_load, section_addresses, target, try_gnu_link, Mapping,
    WorkDir, ARENA,
};

const EM_ARM: u16 = 40;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;

/// The assembly fixture's objects for `target` (one per assembler).
fn asm_fixtures(target: &Target) -> Vec<Fixture> {
    let fixtures: Vec<Fixture> = objects(target.name)
        .into_iter()
        .filter(|f| f.stem == ASM_STEM)
        .collect();
    assert_eq!(
        fixtures.len(),
        2,
        "{}: the assembly fixture must be built by GNU as and by clang",
        target.name
    );
    fixtures
}

/// The object llext loads: the fixture, with the placeholders of RISC-V's `.rodata.retyped` given the
/// types they stand for.
fn for_llext(target: &Target, elf: &[u8]) -> Vec<u8> {
    if target.machine != EM_RISCV {
        return elf.to_vec();
    }
    retype(elf, |section, _, _, r_type| {
        (section == RETYPED_SECTION)
            .then(|| RISCV_RETYPED.iter().find(|r| r.0 == r_type).map(|r| r.1))
            .flatten()
    })
}

/// The relocation types of an object.
fn types(elf: &[u8]) -> BTreeSet<u32> {
    relocations(elf).iter().map(|r| r.r_type).collect()
}

/// Up to 8 bytes of the object's own contents at a relocation's place.
fn original_place(elf: &[u8], r: &Reloc) -> Vec<u8> {
    let file = object::File::parse(elf).expect("fixture parses");
    let data = file
        .section_by_name(&r.section)
        .and_then(|s| s.data().ok())
        .expect("a relocated section has contents");
    let at = r.offset as usize;
    data[at..(at + 8).min(data.len())].to_vec()
}

fn half(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// The REL addend of a Thumb `LDR.W` (literal): AAELF32 "Addends and PC-bias compensation" (the immediate,
/// negated when the U bit is clear).
fn thumb_pc12_addend(place: &[u8]) -> i128 {
    let imm = i128::from(half(place, 2) & 0xfff);
    if half(place, 0) & 0x80 != 0 {
        imm
    } else {
        -imm
    }
}

/// The REL addend of a CBZ/CBNZ: AAELF32 "Addends and PC-bias compensation", ((imm + 4) & 0x7f) - 4.
fn thumb_jump6_addend(place: &[u8]) -> i128 {
    let hw = half(place, 0);
    let imm = i128::from((((hw >> 9) & 1) << 6) | (((hw >> 3) & 0x1f) << 1));
    ((imm + 4) & 0x7f) - 4
}

/// S with the Thumb bit of a Thumb function removed: AAELF32 keeps it in T, apart from S.
fn s_without_t(target: &Target, r: &Reloc, s: u64) -> i128 {
    let thumb_function = target.thumb
        && match &r.defined {
            Some(_) => s & 1 == 1,
            None => !is_data(&r.symbol),
        };
    i128::from(s & !u64::from(thumb_function))
}

/// Why GNU ld 2.40 cannot link a relocation as the ABI documents say, if it cannot. Such places are
/// checked against the ABI formula ([`formula`]) instead of against ld.
fn ld_cannot(target: &Target, r: &Reloc, s: u64, p: u64, place: &[u8]) -> Option<&'static str> {
    let a = r.addend.map(i128::from).unwrap_or(0);
    // On 64-bit machines S + A is a signed 64-bit value (an address near the top is a negative one).
    let s_signed = if target.is_64 {
        i128::from(s as i64)
    } else {
        i128::from(s)
    };
    let x = i128::from(s) + a - i128::from(p);
    match (target.machine, r.r_type) {
        (EM_ARM, 52) => Some(
            "GNU ld takes a CBZ's immediate itself as the REL addend, not ((imm + 4) & 0x7f) - 4, so the \
             usual addend -4 (the PC bias) reads as +124",
        ),
        (EM_ARM, 54)
            if s_without_t(target, r, s) + thumb_pc12_addend(place) - i128::from(p & !3) < 0 =>
        {
            Some("GNU ld refuses a negative THM_PC12 offset, which AAELF32 encodes with the U bit clear")
        }
        (EM_AARCH64, 259) if s_signed + a < 0 => {
            Some("GNU ld checks ABS16 as unsigned; AAELF64 allows -2^15 <= X < 2^16")
        }
        (EM_AARCH64, 258) if s_signed + a < 0 => {
            Some("GNU ld checks ABS32 as unsigned; AAELF64 allows -2^31 <= X < 2^32")
        }
        (EM_AARCH64, 262) if x > i128::from(i16::MAX) => {
            Some("GNU ld checks PREL16 as signed; AAELF64 allows -2^15 <= X < 2^16")
        }
        (EM_AARCH64, 261) if x > i128::from(i32::MAX) => {
            Some("GNU ld checks PREL32 as signed; AAELF64 allows -2^31 <= X < 2^32")
        }
        (EM_RISCV, 41 | 59..=61) => Some("GNU ld 2.40 does not know the type"),
        (EM_ARM, 24 | 31 | 96) | (EM_AARCH64, 309 | 313) => {
            Some("GOT-relative: GNU ld lays out a GOT of its own, so llext's is used")
        }
        _ => None,
    }
}

/// Writes `v` as a ULEB128 of exactly `len` bytes.
fn uleb(v: u128, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| {
            let more = if k + 1 < len { 0x80 } else { 0 };
            ((v >> (7 * k)) & 0x7f) as u8 | more
        })
        .collect()
}

/// llext's GOT: where it starts, and the address each of its slots holds.
struct Got {
    base: u64,
    slots: Vec<u64>,
}

impl Got {
    fn read(target: &Target, info: &ExtensionInfo, mapping: &Mapping) -> Got {
        let ptr = if target.is_64 { 8 } else { 4 };
        let Some(region) = info
            .regions
            .iter()
            .find(|r| r.kind == llext::RegionKind::Got)
        else {
            return Got {
                base: 0,
                slots: Vec::new(),
            };
        };
        let bytes = mapping.bytes(region.addr as u64, region.size);
        Got {
            base: region.addr as u64,
            slots: bytes
                .chunks_exact(ptr)
                .map(|w| common::word(w, 0, ptr))
                .collect(),
        }
    }

    /// G: the address of the slot holding `s`.
    fn slot(&self, target: &Target, s: u64) -> i128 {
        let ptr = if target.is_64 { 8 } else { 4 };
        let k = self
            .slots
            .iter()
            .position(|&v| v == s)
            .unwrap_or_else(|| panic!("no GOT slot holds {s:#x}"));
        i128::from(self.base + (k * ptr) as u64)
    }
}

/// The bytes the ABI formula puts at one place (all the relocations at it, in file order), from the
/// place's original bytes `place`, with `s` giving each relocation's symbol address and `got` llext's
/// GOT (for the GOT-relative types, whose slot is llext's choice).
fn formula(
    target: &Target,
    at_place: &[&Reloc],
    s: &dyn Fn(&Reloc) -> u64,
    p: u64,
    place: &[u8],
    got: &Got,
) -> Vec<u8> {
    let first = at_place[0];
    let a = |r: &Reloc| i128::from(r.addend.unwrap_or(0));
    // An Arm data word's REL addend: the word, sign-extended.
    let word_addend = || i128::from(i32::from_le_bytes(place[..4].try_into().expect("4 bytes")));
    let word32 = |x: i128| (x as u32).to_le_bytes().to_vec();
    let insn = || u32::from_le_bytes(place[..4].try_into().expect("4 bytes"));
    let types: Vec<u32> = at_place.iter().map(|r| r.r_type).collect();
    let uleb_len = || place.iter().position(|b| b & 0x80 == 0).expect("a ULEB128") + 1;
    match (target.machine, types.as_slice()) {
        (EM_ARM, [52]) => {
            // AAELF32: THM_JUMP6 is S + A - P, into CBZ's i:imm5 (bits 9 and 7:3).
            let x =
                s_without_t(target, first, s(first)) + thumb_jump6_addend(place) - i128::from(p);
            assert!((0..=126).contains(&x), "THM_JUMP6 value {x} out of reach");
            let hw = half(place, 0) & 0xfd07;
            let hw = hw | ((((x >> 6) & 1) as u16) << 9) | ((((x >> 1) & 0x1f) as u16) << 3);
            hw.to_le_bytes().to_vec()
        }
        (EM_ARM, [54]) => {
            // AAELF32: THM_PC12 is S + A - Pa, its magnitude in imm12 and its sign in the U bit.
            let x = s_without_t(target, first, s(first)) + thumb_pc12_addend(place)
                - i128::from(p & !3);
            assert!(x.unsigned_abs() <= 0xfff, "THM_PC12 value {x} out of reach");
            let hw1 = (half(place, 0) & !0x80) | if x >= 0 { 0x80 } else { 0 };
            let hw2 = (half(place, 2) & 0xf000) | x.unsigned_abs() as u16;
            [hw1.to_le_bytes(), hw2.to_le_bytes()].concat()
        }
        // AAELF32: GOTOFF32 is ((S + A) | T) - GOT_ORG (a data symbol: T = 0), BASE_ABS is B(S) + A with
        // the GOT as the base, GOT_PREL is GOT(S) + A - P.
        (EM_ARM, [24]) => word32(i128::from(s(first)) + word_addend() - i128::from(got.base)),
        (EM_ARM, [31]) => word32(i128::from(got.base) + word_addend()),
        (EM_ARM, [96]) => word32(got.slot(target, s(first)) + word_addend() - i128::from(p)),
        // AAELF64: GOT_LD_PREL19 is G(GDAT(S + A)) - P into an LDR (literal)'s imm19;
        // LD64_GOTPAGE_LO15 is G(GDAT(S + A)) - Page(GOT) into an LDR's imm12, scaled by 8.
        (EM_AARCH64, [309]) => {
            let x = got.slot(target, s(first)) - i128::from(p);
            let w = (insn() & !(0x7ffff << 5)) | ((((x >> 2) as u32) & 0x7ffff) << 5);
            w.to_le_bytes().to_vec()
        }
        (EM_AARCH64, [313]) => {
            let x = got.slot(target, s(first)) - i128::from(got.base & !0xfff);
            assert!(
                (0..1 << 15).contains(&x),
                "LD64_GOTPAGE_LO15 value {x} out of reach"
            );
            let w = (insn() & !(0xfff << 10)) | (((x >> 3) as u32) << 10);
            w.to_le_bytes().to_vec()
        }
        // RISC-V psABI: GOT32_PCREL is G + GOT + A - P (the slot's address).
        (EM_RISCV, [41]) => word32(got.slot(target, s(first)) + a(first) - i128::from(p)),
        // AAELF64: ABS16/ABS32 write bits [15:0]/[31:0] of S + A (S read as signed 64 bits), PREL16 and
        // PREL32 those of S + A - P.
        (EM_AARCH64, [259]) => (((s(first) as i64) as i128 + a(first)) as u16)
            .to_le_bytes()
            .to_vec(),
        (EM_AARCH64, [258]) => (((s(first) as i64) as i128 + a(first)) as u32)
            .to_le_bytes()
            .to_vec(),
        (EM_AARCH64, [262]) => {
            let x = i128::from(s(first)) + a(first) - i128::from(p);
            (x as u16).to_le_bytes().to_vec()
        }
        (EM_AARCH64, [261]) => {
            let x = i128::from(s(first)) + a(first) - i128::from(p);
            (x as u32).to_le_bytes().to_vec()
        }
        // RISC-V psABI: PLT32 is S + A - P, a 32-bit word (modulo 2^32 on RV32).
        (EM_RISCV, [59]) => {
            let x = i128::from(s(first)) + a(first) - i128::from(p);
            if target.is_64 {
                assert!(i32::try_from(x).is_ok(), "PLT32 value {x} out of reach");
            }
            (x as u32).to_le_bytes().to_vec()
        }
        // RISC-V psABI: SET_ULEB128 is S + A and SUB_ULEB128 subtracts its S + A, in the ULEB128's own
        // length.
        (EM_RISCV, [60]) => uleb((i128::from(s(first)) + a(first)) as u128, uleb_len()),
        (EM_RISCV, [60, 61]) => {
            let sub = at_place[1];
            let v = i128::from(s(first)) + a(first) - (i128::from(s(sub)) + a(sub));
            assert!(v >= 0, "negative ULEB128 difference");
            uleb(v as u128, uleb_len())
        }
        _ => panic!(
            "no formula for relocation types {types:?} on {}",
            target.name
        ),
    }
}

/// A place (section, offset) and why GNU ld cannot link the relocations at it.
type Places = BTreeMap<(String, u64), &'static str>;

/// The places of `elf` that GNU ld cannot link as the ABI documents say, with these addresses.
fn ld_cannot_places(
    target: &Target,
    elf: &[u8],
    addrs: &BTreeMap<String, u64>,
    exports: &[(String, u64)],
) -> Places {
    relocations(elf)
        .iter()
        .filter_map(|r| {
            let (s, p) = (r.s(addrs, exports), r.p(addrs));
            let why = ld_cannot(target, r, s, p, &original_place(elf, r))?;
            Some(((r.section.clone(), r.offset), why))
        })
        .collect()
}

/// Links `elf` with GNU ld with the relocations at `places` made `R_*_NONE`.
fn link_without(
    target: &Target,
    elf: &[u8],
    places: &Places,
    addrs: &BTreeMap<String, u64>,
    exports: &[(String, u64)],
    work: &WorkDir,
) -> Result<Vec<u8>, String> {
    let for_ld = retype(elf, |section, offset, _, _| {
        places
            .contains_key(&(section.to_owned(), offset))
            .then_some(0)
    });
    let input = work.0.join("ld-input.o");
    std::fs::write(&input, &for_ld).expect("write ld's input");
    let got_at = target.load_base + ARENA as u64 - 0x1_0000;
    try_gnu_link(target, &input, addrs, exports, got_at, &work.0)
}

/// Links `elf` (which llext loaded as `info`) with GNU ld at the same addresses and compares every
/// loaded section; the places GNU ld cannot link are made `R_*_NONE` for it and checked against the ABI
/// formula instead. Returns the failures and, for each reason GNU ld could not be used, how many places
/// were checked by formula.
fn link_and_compare(
    target: &Target,
    case: &str,
    mapping: &Mapping,
    info: &ExtensionInfo,
    elf: &[u8],
    exports: &[(String, u64)],
    work: &WorkDir,
) -> (Vec<String>, BTreeMap<&'static str, usize>) {
    let mut failures = Vec::new();
    let addrs = section_addresses(info);
    let relocs = relocations(elf);
    let s = |r: &Reloc| r.s(&addrs, exports);
    let got = Got::read(target, info, mapping);
    let places = ld_cannot_places(target, elf, &addrs, exports);
    let linked = match link_without(target, elf, &places, &addrs, exports, work) {
        Ok(linked) => linked,
        Err(e) => {
            failures.push(format!("{case}: {} failed: {e}", target.ld.command));
            return (failures, BTreeMap::new());
        }
    };
    // The places checked by formula, and the bytes each must hold.
    let mut masks: BTreeMap<&str, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    for ((section, offset), why) in &places {
        *reasons.entry(why).or_default() += 1;
        let at_place: Vec<&Reloc> = relocs
            .iter()
            .filter(|r| r.section == *section && r.offset == *offset)
            .collect();
        let p = addrs[section] + offset;
        let expected = formula(
            target,
            &at_place,
            &s,
            p,
            &original_place(elf, at_place[0]),
            &got,
        );
        masks
            .entry(section.as_str())
            .or_default()
            .push((*offset as usize, expected));
    }
    let file = object::File::parse(elf).expect("fixture parses");
    for section in &info.sections {
        let Some(original) = file.section_by_name(&section.name) else {
            continue;
        };
        if original.kind() == SectionKind::UninitializedData || section.size == 0 {
            continue;
        }
        let ours = mapping.bytes(section.addr as u64, section.size);
        let Some(theirs) = linked_bytes(&linked, section.addr as u64, section.size) else {
            failures.push(format!("{case}: {} missing from ld's output", section.name));
            continue;
        };
        let masked = masks
            .get(section.name.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (at, expected) in masked {
            let found = &ours[*at..*at + expected.len()];
            if found != expected.as_slice() {
                failures.push(format!(
                    "{case}: {}+{at:#x} holds {found:02x?}, the ABI formula gives {expected:02x?}",
                    section.name
                ));
            }
        }
        let differences: Vec<usize> = (0..section.size)
            .filter(|&k| ours[k] != theirs[k])
            .filter(|&k| {
                !masked
                    .iter()
                    .any(|(at, expected)| (*at..at + expected.len()).contains(&k))
            })
            .collect();
        if let Some(&first) = differences.first() {
            let end = (first + 4).min(section.size);
            failures.push(format!(
                "{case}: {} differs from GNU ld at {} bytes, first at +{first:#x} (llext {:02x?}, ld {:02x?})",
                section.name,
                differences.len(),
                &ours[first..end],
                &theirs[first..end],
            ));
        }
    }
    (failures, reasons)
}

/// Every relocation type the fixture object is meant to exercise is in it (checked with the object
/// crate, as `readelf -r` would show them).
fn check_types(target: &Target, fixture: &Fixture, raw: &[u8], failures: &mut Vec<String>) {
    let relocs = relocations(raw);
    // clang 14 turns the symbol of a `.reloc` naming an otherwise unused symbol into nothing (*ABS*):
    // only the types that need no symbol may lack one.
    for r in &relocs {
        let symbol_less = matches!(
            (target.machine, r.r_type),
            (EM_ARM, 40) | (EM_RISCV, 43 | 51)
        );
        if r.symbol.is_empty() && r.defined.is_none() && !symbol_less {
            failures.push(format!(
                "{}: the relocation of type {} at {}+{:#x} has lost its symbol",
                fixture.name, r.r_type, r.section, r.offset
            ));
        }
    }
    let found: BTreeSet<u32> = relocs.iter().map(|r| r.r_type).collect();
    for (r_type, name) in required_types(target) {
        if !found.contains(r_type) {
            failures.push(format!("{}: no {name} relocation", fixture.name));
        }
    }
    if target.machine == EM_RISCV {
        let retyped = types(&for_llext(target, raw));
        for (_, r_type, name) in RISCV_RETYPED {
            if !retyped.contains(r_type) {
                failures.push(format!(
                    "{}: no {name} relocation after retyping",
                    fixture.name
                ));
            }
        }
    }
}

/// Each `edge_*` relocation at both ends of its reach and at bit patterns inside it (compared with GNU ld
/// or the formula), and one step beyond each end (refused by llext with the type's name, and by GNU ld).
/// Returns how many cases ran.
fn check_edges(
    target: &Target,
    fixture: &Fixture,
    elf: &[u8],
    mapping: &Mapping,
    work: &WorkDir,
    failures: &mut Vec<String>,
) -> usize {
    let edges = edge_relocations(elf);
    assert!(!edges.is_empty(), "{}: no edge relocations", fixture.name);
    let addrs = baseline_addresses(target, mapping, &fixture.name, elf);
    let in_reach = fixture_exports(target, mapping, &fixture.name, elf);
    let mut cases = 0;
    for edge in &edges {
        let reach = reach(target, edge.r_type).expect("every edge type has a reach");
        let near = in_reach
            .iter()
            .find(|(n, _)| *n == edge.symbol)
            .expect("an edge symbol is a firmware symbol")
            .1;
        for end in End::ALL {
            let Some(at) = edge_address(target, &reach, edge, &addrs, near, end) else {
                continue;
            };
            cases += 1;
            let exports: Vec<(String, u64)> = in_reach
                .iter()
                .map(|(n, a)| (n.clone(), if *n == edge.symbol { at } else { *a }))
                .collect();
            let case = format!(
                "{}: {} at {}+{:#x} with {} = {at:#x} ({end:?})",
                fixture.name, reach.name, edge.section, edge.offset, edge.symbol
            );
            match llext_load(target, mapping, &fixture.name, elf, &exports) {
                Ok(info) if end.in_reach() => {
                    if section_addresses(&info) != addrs {
                        failures.push(format!("{case}: laid out differently"));
                        continue;
                    }
                    let (found, _) =
                        link_and_compare(target, &case, mapping, &info, elf, &exports, work);
                    failures.extend(found);
                }
                Ok(_) => failures.push(format!("{case}: llext accepted a value out of reach")),
                Err(e) if end.in_reach() => failures.push(format!("{case}: llext refused: {e}")),
                Err(e) => {
                    let named = e.problems().iter().any(|problem| {
                        matches!(problem, llext::Error::BadRelocation { kind, section, offset, .. }
                            if *kind == reach.name && *section == edge.section && *offset == edge.offset)
                    });
                    if !named {
                        failures.push(format!(
                            "{case}: no BadRelocation naming the type and place, but: {e}"
                        ));
                    }
                    // GNU ld must refuse it too, unless it reads this type's addend differently
                    // (THM_JUMP6) or does not check its range: ld 2.40 silently truncates THM_PC8 and
                    // RISC-V 32_PCREL.
                    let ld_checks = !matches!(
                        (target.machine, edge.r_type),
                        (EM_ARM, 52 | 11) | (EM_RISCV, 57)
                    );
                    if ld_checks {
                        let mut others = ld_cannot_places(target, elf, &addrs, &exports);
                        others.remove(&(edge.section.clone(), edge.offset));
                        if link_without(target, elf, &others, &addrs, &exports, work).is_ok() {
                            failures.push(format!("{case}: GNU ld accepted it"));
                        }
                    }
                }
            }
        }
    }
    cases
}

fn check_target(target: &Target) {
    if !have_ld(target) {
        return;
    }
    let fixtures = asm_fixtures(target);
    let work = WorkDir::new(&format!("{}-types", target.name));
    let mapping = Mapping::at(target.load_base, ARENA);
    let mut failures = Vec::new();
    let mut by_formula: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut edge_cases = 0;
    for fixture in &fixtures {
        let raw = std::fs::read(&fixture.path).expect("read fixture");
        check_types(target, fixture, &raw, &mut failures);
        let elf = for_llext(target, &raw);
        let exports = fixture_exports(target, &mapping, &fixture.name, &elf);
        match llext_load(target, &mapping, &fixture.name, &elf, &exports) {
            Ok(info) => {
                let (found, formula) = link_and_compare(
                    target,
                    &fixture.name,
                    &mapping,
                    &info,
                    &elf,
                    &exports,
                    &work,
                );
                failures.extend(found);
                for (why, n) in formula {
                    *by_formula.entry(why).or_default() += n;
                }
            }
            Err(e) => failures.push(format!("{}: load failed: {e}", fixture.name)),
        }
        edge_cases += check_edges(target, fixture, &elf, &mapping, &work, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{}: {} failures:\n{}",
        target.name,
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{}: {} assembly fixtures match GNU ld; {edge_cases} reach cases checked",
        target.name,
        fixtures.len()
    );
    for (why, n) in by_formula {
        eprintln!("  {n} places checked by the ABI formula instead: {why}");
    }
}

#[test]
fn cortex_m_relocation_types() {
    check_target(target("cortex-m"));
}

#[test]
fn riscv32_relocation_types() {
    check_target(target("riscv32"));
}

#[test]
fn riscv64_relocation_types() {
    check_target(target("riscv64"));
}

#[test]
fn aarch64_relocation_types() {
    check_target(target("aarch64"));
}

/// A `jal` to a firmware function beyond its ±1 MiB goes through a veneer that loads the full address
/// (GNU ld has no such veneers, so this is checked by decoding the code).
fn check_jal_veneer(target: &Target) {
    if !have_ld(target) {
        return;
    }
    // Away from the mapping of the comparison test, which may run at the same time.
    let base = target.load_base + 0x100_0000;
    let mapping = Mapping::at(base, 1 << 20);
    for fixture in asm_fixtures(target) {
        let elf = for_llext(target, &std::fs::read(&fixture.path).expect("read fixture"));
        let mut exports = fixture_exports(target, &mapping, &fixture.name, &elf);
        let far = base - 0x20_0000;
        exports
            .iter_mut()
            .find(|(n, _)| n == "near_fn")
            .expect("the fixture calls near_fn")
            .1 = far;
        let info = llext_load(target, &mapping, &fixture.name, &elf, &exports)
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
        let addrs = section_addresses(&info);
        let stubs = info
            .regions
            .iter()
            .find(|r| r.kind == llext::RegionKind::Stubs)
            .expect("a veneer region");
        let jal = relocations(&elf)
            .into_iter()
            .find(|r| r.r_type == 17 && r.symbol == "near_fn")
            .expect("a JAL to near_fn");
        let p = jal.p(&addrs);
        let w = u32::from_le_bytes(mapping.bytes(p, 4).try_into().expect("4 bytes"));
        // J-type: imm[20|10:1|11|19:12].
        let imm = ((w >> 31) << 20)
            | (((w >> 21) & 0x3ff) << 1)
            | (((w >> 20) & 1) << 11)
            | (((w >> 12) & 0xff) << 12);
        let dest = p.wrapping_add((((imm << 11) as i32) >> 11) as i64 as u64);
        assert!(
            (stubs.addr as u64..(stubs.addr + stubs.size) as u64).contains(&dest),
            "{}: the jal lands at {dest:#x}, outside the veneers",
            fixture.name
        );
        let (at, len) = if target.is_64 { (16, 8) } else { (12, 4) };
        let literal = common::word(&mapping.bytes(dest + at, len), 0, len);
        assert_eq!(literal, far, "{}: veneer target", fixture.name);
    }
}

#[test]
fn riscv32_jal_beyond_1_mib_goes_through_a_veneer() {
    check_jal_veneer(target("riscv32"));
}

#[test]
fn riscv64_jal_beyond_1_mib_goes_through_a_veneer() {
    check_jal_veneer(target("riscv64"));
}
