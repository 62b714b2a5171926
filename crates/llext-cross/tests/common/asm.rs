//! The assembly fixtures (`crates/llext-cross/fixtures/relocs-*.S`): the relocation types each must hold,
//! how far the types of its `edge_*` relocations reach, and where those symbols go.
//!
//! The reach of each type is written down here from the ABI documents, independently of the backends:
//! the tests check llext against it and GNU `ld` at both ends of every range.

use std::collections::BTreeMap;

use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget};

use llext_cross::Target;

use super::{fake_exports, llext_load, section_addresses, Mapping};

/// The relocation types an assembly fixture must hold (checked on every assembler's object, so that a
/// fixture cannot silently stop exercising one), as (number, ABI name).
pub fn required_types(target: &Target) -> &'static [(u32, &'static str)] {
    match target.machine {
        40 => &[
            (1, "R_ARM_PC24"),
            (5, "R_ARM_ABS16"),
            (8, "R_ARM_ABS8"),
            (10, "R_ARM_THM_CALL"),
            (11, "R_ARM_THM_PC8"),
            (24, "R_ARM_GOTOFF32"),
            (27, "R_ARM_PLT32"),
            (28, "R_ARM_CALL"),
            (29, "R_ARM_JUMP24"),
            (31, "R_ARM_BASE_ABS"),
            (40, "R_ARM_V4BX"),
            (43, "R_ARM_MOVW_ABS_NC"),
            (44, "R_ARM_MOVT_ABS"),
            (45, "R_ARM_MOVW_PREL_NC"),
            (46, "R_ARM_MOVT_PREL"),
            (49, "R_ARM_THM_MOVW_PREL_NC"),
            (50, "R_ARM_THM_MOVT_PREL"),
            (51, "R_ARM_THM_JUMP19"),
            (52, "R_ARM_THM_JUMP6"),
            (53, "R_ARM_THM_ALU_PREL_11_0"),
            (54, "R_ARM_THM_PC12"),
            (55, "R_ARM_ABS32_NOI"),
            (56, "R_ARM_REL32_NOI"),
            (96, "R_ARM_GOT_PREL"),
            (102, "R_ARM_THM_JUMP11"),
            (103, "R_ARM_THM_JUMP8"),
        ],
        243 => &[
            (16, "R_RISCV_BRANCH"),
            (17, "R_RISCV_JAL"),
            (33, "R_RISCV_ADD8"),
            (34, "R_RISCV_ADD16"),
            (35, "R_RISCV_ADD32"),
            (36, "R_RISCV_ADD64"),
            (37, "R_RISCV_SUB8"),
            (38, "R_RISCV_SUB16"),
            (39, "R_RISCV_SUB32"),
            (40, "R_RISCV_SUB64"),
            (44, "R_RISCV_RVC_BRANCH"),
            (45, "R_RISCV_RVC_JUMP"),
            (52, "R_RISCV_SUB6"),
            (53, "R_RISCV_SET6"),
            (54, "R_RISCV_SET8"),
            (55, "R_RISCV_SET16"),
            (56, "R_RISCV_SET32"),
            (57, "R_RISCV_32_PCREL"),
        ],
        183 => &[
            (258, "R_AARCH64_ABS32"),
            (259, "R_AARCH64_ABS16"),
            (260, "R_AARCH64_PREL64"),
            (261, "R_AARCH64_PREL32"),
            (262, "R_AARCH64_PREL16"),
            (263, "R_AARCH64_MOVW_UABS_G0"),
            (264, "R_AARCH64_MOVW_UABS_G0_NC"),
            (265, "R_AARCH64_MOVW_UABS_G1"),
            (266, "R_AARCH64_MOVW_UABS_G1_NC"),
            (267, "R_AARCH64_MOVW_UABS_G2"),
            (268, "R_AARCH64_MOVW_UABS_G2_NC"),
            (269, "R_AARCH64_MOVW_UABS_G3"),
            (270, "R_AARCH64_MOVW_SABS_G0"),
            (271, "R_AARCH64_MOVW_SABS_G1"),
            (272, "R_AARCH64_MOVW_SABS_G2"),
            (273, "R_AARCH64_LD_PREL_LO19"),
            (274, "R_AARCH64_ADR_PREL_LO21"),
            (275, "R_AARCH64_ADR_PREL_PG_HI21"),
            (276, "R_AARCH64_ADR_PREL_PG_HI21_NC"),
            (278, "R_AARCH64_LDST8_ABS_LO12_NC"),
            (279, "R_AARCH64_TSTBR14"),
            (280, "R_AARCH64_CONDBR19"),
            (284, "R_AARCH64_LDST16_ABS_LO12_NC"),
            (285, "R_AARCH64_LDST32_ABS_LO12_NC"),
            (286, "R_AARCH64_LDST64_ABS_LO12_NC"),
            (287, "R_AARCH64_MOVW_PREL_G0"),
            (288, "R_AARCH64_MOVW_PREL_G0_NC"),
            (289, "R_AARCH64_MOVW_PREL_G1"),
            (290, "R_AARCH64_MOVW_PREL_G1_NC"),
            (291, "R_AARCH64_MOVW_PREL_G2"),
            (292, "R_AARCH64_MOVW_PREL_G2_NC"),
            (293, "R_AARCH64_MOVW_PREL_G3"),
            (299, "R_AARCH64_LDST128_ABS_LO12_NC"),
            (309, "R_AARCH64_GOT_LD_PREL19"),
            (313, "R_AARCH64_LD64_GOTPAGE_LO15"),
        ],
        _ => &[],
    }
}

/// RISC-V types no Debian 12 assembler emits and GNU ld 2.40 cannot link: the fixture's section
/// `.rodata.retyped` holds placeholders of the nearest type, rewritten before loading as
/// (placeholder, type, ABI name). The result is checked against the psABI formulas.
pub const RISCV_RETYPED: &[(u32, u32, &str)] = &[
    (57, 59, "R_RISCV_PLT32"),
    (54, 60, "R_RISCV_SET_ULEB128"),
    (37, 61, "R_RISCV_SUB_ULEB128"),
    (56, 41, "R_RISCV_GOT32_PCREL"),
];

/// The section of the RISC-V fixture whose relocation types [`RISCV_RETYPED`] rewrites.
pub const RETYPED_SECTION: &str = ".rodata.retyped";

/// What a PC-relative value counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// Absolute: `S + A`.
    Zero,
    /// `S + A - P`.
    P,
    /// `S + A - Pa`, `Pa` being `P` rounded down to a word (Thumb literal loads and ADR).
    Pa,
}

/// How far a relocation type reaches: the value it computes (`S + A - from`) may run from `min` to `max`
/// in steps of `step`. A load/store offset instead needs its target aligned to `align` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reach {
    /// The ABI name, as llext's errors give it.
    pub name: &'static str,
    pub from: From,
    pub min: i64,
    pub max: i64,
    pub step: i64,
    /// For a load/store offset: the alignment its target needs (then `min`..`max` is not checked).
    pub align: u64,
    /// The REL addend the fixture encodes in the instruction (RELA addends come from the object).
    pub rel_addend: i64,
}

const fn span(name: &'static str, from: From, min: i64, max: i64, step: i64) -> Reach {
    Reach {
        name,
        from,
        min,
        max,
        step,
        align: 0,
        rel_addend: 0,
    }
}

/// A Thumb form whose fixture instruction holds the addend -4 (the PC reads 4 bytes ahead).
const fn thumb(name: &'static str, from: From, min: i64, max: i64, step: i64) -> Reach {
    Reach {
        rel_addend: -4,
        ..span(name, from, min, max, step)
    }
}

const fn aligned(name: &'static str, align: u64) -> Reach {
    Reach {
        align,
        ..span(name, From::Zero, 0, 0, 1)
    }
}

/// The reach of an `edge_*` relocation's type, from the overflow checks of AAELF32 section 5.6.1, AAELF64
/// section 5.7 and the RISC-V psABI's instruction fields.
pub fn reach(target: &Target, r_type: u32) -> Option<Reach> {
    const MIB: i64 = 1 << 20;
    Some(match (target.machine, r_type) {
        // Firmware exports carry no type, so llext reads bit 0 of an Arm firmware symbol as the Thumb
        // bit, which formulas without T (S + A ...) drop: the data symbols of the types below stay at even
        // addresses, and their ends are the extreme even values (the first value out is even too).
        (40, 54) => thumb("R_ARM_THM_PC12", From::Pa, -0xffe, 0xffe, 2),
        // S is an unsigned 32-bit address and the fixture's addend 0: X cannot be negative (GNU ld and
        // llext both refuse an address in the top 32 KiB).
        (40, 5) => span("R_ARM_ABS16", From::Zero, 0, 0xfffe, 2),
        (40, 8) => span("R_ARM_ABS8", From::Zero, 0, 0xfe, 2),
        (40, 11) => thumb("R_ARM_THM_PC8", From::Pa, 0, 0x3fc, 4),
        // (S + A) | T keeps bit 0 either way.
        (40, 53) => thumb("R_ARM_THM_ALU_PREL_11_0", From::Pa, -0xfff, 0xfff, 1),
        (40, 51) => thumb("R_ARM_THM_JUMP19", From::P, -MIB, MIB - 2, 2),
        (40, 102) => thumb("R_ARM_THM_JUMP11", From::P, -0x800, 0x7fe, 2),
        (40, 103) => thumb("R_ARM_THM_JUMP8", From::P, -0x100, 0xfe, 2),
        (40, 52) => thumb("R_ARM_THM_JUMP6", From::P, 0, 0x7e, 2),
        (243, 16) => span("R_RISCV_BRANCH", From::P, -0x1000, 0xffe, 2),
        (243, 44) => span("R_RISCV_RVC_BRANCH", From::P, -0x100, 0xfe, 2),
        (243, 45) => span("R_RISCV_RVC_JUMP", From::P, -0x800, 0x7fe, 2),
        // RV32 computes modulo 2^32: a 32-bit PC-relative word reaches everything.
        (243, 57) if target.is_64 => {
            span("R_RISCV_32_PCREL", From::P, -(1 << 31), (1 << 31) - 1, 1)
        }
        (183, 274) => span("R_AARCH64_ADR_PREL_LO21", From::P, -MIB, MIB - 1, 1),
        (183, 273) => span("R_AARCH64_LD_PREL_LO19", From::P, -MIB, MIB - 4, 4),
        (183, 280) => span("R_AARCH64_CONDBR19", From::P, -MIB, MIB - 4, 4),
        (183, 279) => span("R_AARCH64_TSTBR14", From::P, -0x8000, 0x7ffc, 4),
        (183, 262) => span("R_AARCH64_PREL16", From::P, -0x8000, 0xffff, 1),
        (183, 261) => span("R_AARCH64_PREL32", From::P, -(1 << 31), (1 << 32) - 1, 1),
        (183, 259) => span("R_AARCH64_ABS16", From::Zero, -0x8000, 0xffff, 1),
        (183, 258) => span("R_AARCH64_ABS32", From::Zero, -(1 << 31), (1 << 32) - 1, 1),
        (183, 263) => span("R_AARCH64_MOVW_UABS_G0", From::Zero, 0, 0xffff, 1),
        (183, 265) => span("R_AARCH64_MOVW_UABS_G1", From::Zero, 0, 0xffff_ffff, 1),
        (183, 270) => span("R_AARCH64_MOVW_SABS_G0", From::Zero, -0x1_0000, 0xffff, 1),
        (183, 287) => span("R_AARCH64_MOVW_PREL_G0", From::P, -0x1_0000, 0xffff, 1),
        (183, 284) => aligned("R_AARCH64_LDST16_ABS_LO12_NC", 2),
        (183, 285) => aligned("R_AARCH64_LDST32_ABS_LO12_NC", 4),
        (183, 286) => aligned("R_AARCH64_LDST64_ABS_LO12_NC", 8),
        (183, 299) => aligned("R_AARCH64_LDST128_ABS_LO12_NC", 16),
        _ => return None,
    })
}

/// A symbol the test moves to the ends of its relocation's reach.
pub fn is_edge(name: &str) -> bool {
    name.contains("edge_")
}

/// One relocation of an object, with what the tests need of it.
#[derive(Debug, Clone)]
pub struct Reloc {
    /// The section it patches.
    pub section: String,
    pub offset: u64,
    pub r_type: u32,
    /// The symbol's name (empty for a section symbol).
    pub symbol: String,
    /// Where a defined symbol lies: its section and its value there (`None` for a firmware symbol).
    pub defined: Option<(String, u64)>,
    /// RELA addend; `None` for REL (the addend is in the place).
    pub addend: Option<i64>,
    /// The symbol is an undefined weak reference: the firmware does not have it, and it is 0.
    pub weak_undefined: bool,
}

impl Reloc {
    /// S: the symbol's address, Thumb bit included, given the section addresses and the firmware's
    /// symbols (0 without a symbol, as for `R_ARM_V4BX`).
    pub fn s(&self, addrs: &BTreeMap<String, u64>, exports: &[(String, u64)]) -> u64 {
        match &self.defined {
            Some((section, value)) => addrs[section] + value,
            None if self.symbol.is_empty() || self.weak_undefined => 0,
            None => {
                exports
                    .iter()
                    .find(|(n, _)| *n == self.symbol)
                    .unwrap_or_else(|| panic!("no firmware symbol {}", self.symbol))
                    .1
            }
        }
    }

    /// P: the place's address.
    pub fn p(&self, addrs: &BTreeMap<String, u64>) -> u64 {
        addrs[&self.section] + self.offset
    }
}

/// Every relocation of an object, in file order.
pub fn relocations(elf: &[u8]) -> Vec<Reloc> {
    let file = object::File::parse(elf).expect("fixture parses");
    let mut out = Vec::new();
    for section in file.sections() {
        let name = section.name().unwrap_or("").to_owned();
        for (offset, rel) in section.relocations() {
            let RelocationFlags::Elf {
                r_type: object::elf::RelocationType(r_type),
            } = rel.flags()
            else {
                continue;
            };
            let symbol = match rel.target() {
                RelocationTarget::Symbol(i) => file.symbol_by_index(i).ok(),
                _ => None,
            };
            let weak_undefined = symbol
                .as_ref()
                .is_some_and(|s| s.is_undefined() && s.is_weak());
            let defined = symbol.as_ref().and_then(|s| {
                let section = file.section_by_index(s.section_index()?).ok()?;
                Some((section.name().ok()?.to_owned(), s.address()))
            });
            out.push(Reloc {
                section: name.clone(),
                offset,
                r_type,
                symbol: symbol
                    .and_then(|s| s.name().ok().map(String::from))
                    .unwrap_or_default(),
                defined,
                addend: (!rel.has_implicit_addend()).then(|| rel.addend()),
                weak_undefined,
            });
        }
    }
    out
}

/// The `edge_*` relocations of an object; each edge symbol is used exactly once.
pub fn edge_relocations(elf: &[u8]) -> Vec<Reloc> {
    let edges: Vec<Reloc> = relocations(elf)
        .into_iter()
        .filter(|r| is_edge(&r.symbol))
        .collect();
    for r in &edges {
        assert_eq!(
            edges.iter().filter(|o| o.symbol == r.symbol).count(),
            1,
            "{} is used by more than one relocation",
            r.symbol
        );
    }
    edges
}

/// A copy of `elf` in which each relocation gets the type `new(section, offset, symbol, type)` picks, if
/// any (the section being the one the relocation patches).
pub fn retype(elf: &[u8], new: impl Fn(&str, u64, &str, u32) -> Option<u32>) -> Vec<u8> {
    let file = object::File::parse(elf).expect("fixture parses");
    let is_64 = file.is_64();
    let mut out = elf.to_vec();
    for section in file.sections() {
        let name = section.name().unwrap_or("");
        let Some((table, rela)) = file
            .section_by_name(&format!(".rela{name}"))
            .map(|t| (t, true))
            .or_else(|| {
                file.section_by_name(&format!(".rel{name}"))
                    .map(|t| (t, false))
            })
        else {
            continue;
        };
        let (start, _) = table.file_range().expect("relocations lie in the file");
        let entry = match (is_64, rela) {
            (true, _) => 24,
            (false, true) => 12,
            (false, false) => 8,
        };
        for (k, (offset, rel)) in section.relocations().enumerate() {
            let at = (start + k as u64 * entry) as usize;
            // Elf32_Rel[a]: r_offset, r_info (type in the low byte); Elf64_Rela: r_offset, r_info (type in
            // the low 32 bits).
            let r_offset = if is_64 {
                u64::from_le_bytes(out[at..at + 8].try_into().expect("8 bytes"))
            } else {
                u64::from(u32::from_le_bytes(
                    out[at..at + 4].try_into().expect("4 bytes"),
                ))
            };
            assert_eq!(
                r_offset, offset,
                "{name}: relocation {k} is not where expected"
            );
            let RelocationFlags::Elf {
                r_type: object::elf::RelocationType(r_type),
            } = rel.flags()
            else {
                continue;
            };
            let symbol = match rel.target() {
                RelocationTarget::Symbol(i) => file
                    .symbol_by_index(i)
                    .ok()
                    .and_then(|s| s.name().ok())
                    .unwrap_or(""),
                _ => "",
            };
            let Some(new_type) = new(name, offset, symbol, r_type) else {
                continue;
            };
            if is_64 {
                out[at + 8..at + 12].copy_from_slice(&new_type.to_le_bytes());
            } else {
                out[at + 4] = u8::try_from(new_type).expect("a 32-bit ELF relocation type");
            }
        }
    }
    out
}

/// The section addresses llext gives `elf`, found by loading it with its `edge_*` relocations made
/// `R_*_NONE` (none of their types needs a stub or GOT slot, so the layout is the same).
pub fn baseline_addresses(
    target: &Target,
    mapping: &Mapping,
    name: &str,
    elf: &[u8],
) -> BTreeMap<String, u64> {
    let neutral = retype(elf, |_, _, symbol, _| is_edge(symbol).then_some(0));
    let exports = fake_exports(target, &neutral);
    let info = llext_load(target, mapping, name, &neutral, &exports)
        .unwrap_or_else(|e| panic!("{name} without its edge relocations: {e}"));
    section_addresses(&info)
}

/// A value of a reach to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The lowest value in reach.
    Min,
    /// The highest value in reach.
    Max,
    /// One step below the lowest.
    Below,
    /// One step above the highest.
    Above,
    /// A value in reach with alternating bits (`0b0101...` when `true`, `0b1010...` otherwise, negated
    /// when `negative`), so that every bit of the field is seen both set and clear next to its
    /// neighbours: a swapped or shifted bit in an encoding shows.
    Pattern { ones_first: bool, negative: bool },
}

impl End {
    /// Every value to try.
    pub const ALL: [End; 8] = [
        End::Min,
        End::Max,
        End::Below,
        End::Above,
        End::Pattern {
            ones_first: true,
            negative: false,
        },
        End::Pattern {
            ones_first: false,
            negative: false,
        },
        End::Pattern {
            ones_first: true,
            negative: true,
        },
        End::Pattern {
            ones_first: false,
            negative: true,
        },
    ];

    pub fn in_reach(self) -> bool {
        !matches!(self, End::Below | End::Above)
    }
}

/// Where `edge`'s symbol must lie for its value to be at `end` of `reach` (`None` when that value is no
/// address of the target). For a load/store offset, `Min`/`Max` are `near` (an address close by) aligned
/// and `Below`/`Above` one byte off.
pub fn edge_address(
    target: &Target,
    reach: &Reach,
    edge: &Reloc,
    addrs: &BTreeMap<String, u64>,
    near: u64,
    end: End,
) -> Option<u64> {
    if reach.align != 0 {
        if matches!(end, End::Pattern { .. }) {
            return None;
        }
        let aligned = near & !(reach.align - 1);
        return Some(if end.in_reach() { aligned } else { aligned + 1 });
    }
    let p = addrs[&edge.section] + edge.offset;
    let from = match reach.from {
        From::Zero => 0,
        From::P => p as i64,
        From::Pa => (p & !3) as i64,
    };
    let value = match end {
        End::Min => reach.min,
        End::Max => reach.max,
        End::Below => reach.min - reach.step,
        End::Above => reach.max + reach.step,
        End::Pattern {
            ones_first,
            negative,
        } => {
            let bits = if ones_first {
                0x5555_5555_5555_5555u64
            } else {
                0xaaaa_aaaa_aaaa_aaaa
            };
            let top = if negative { -reach.min } else { reach.max };
            // The pattern below the field's top bit, on the step's grid.
            let width = 64 - (top.max(1) as u64).leading_zeros();
            let magnitude = (bits & ((1u64 << width) - 1)) as i64 & !(reach.step - 1);
            let v = if negative { -magnitude } else { magnitude };
            if !(reach.min..=reach.max).contains(&v) || v == 0 {
                return None;
            }
            v
        }
    };
    let a = edge.addend.unwrap_or(reach.rel_addend);
    let s = i128::from(value) - i128::from(a) + i128::from(from);
    let top: i128 = if target.is_64 { 1 << 64 } else { 1 << 32 };
    // A negative absolute value is an address near the top of the address space.
    let s = if reach.from == From::Zero && s < 0 {
        s + top
    } else {
        s
    };
    if !(0..top).contains(&s) {
        return None;
    }
    let thumb_function = target.thumb && !super::is_data(&edge.symbol);
    Some(s as u64 | u64::from(thumb_function))
}

/// The firmware symbols of an object, as [`fake_exports`] places them, but every `edge_*` symbol at the
/// far end of its relocation's reach (so that the plain comparison with GNU ld covers it too).
pub fn fixture_exports(
    target: &Target,
    mapping: &Mapping,
    name: &str,
    elf: &[u8],
) -> Vec<(String, u64)> {
    let mut exports = fake_exports(target, elf);
    let edges = edge_relocations(elf);
    if !edges.is_empty() {
        let addrs = baseline_addresses(target, mapping, name, elf);
        for edge in &edges {
            let reach = reach(target, edge.r_type).unwrap_or_else(|| {
                panic!(
                    "{name}: no reach known for type {} of {}",
                    edge.r_type, edge.symbol
                )
            });
            let e = exports
                .iter_mut()
                .find(|(n, _)| *n == edge.symbol)
                .expect("an edge symbol is a firmware symbol");
            e.1 = edge_address(target, &reach, edge, &addrs, e.1, End::Max)
                .expect("the far end of a reach is an address");
        }
    }
    exports
}
