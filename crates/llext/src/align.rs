//! RISC-V alignment: the padding an assembler leaves at `R_RISCV_ALIGN`, trimmed as a linker must.
//!
//! A RISC-V assembler that allows linker relaxation cannot know how far code will move, so at each
//! alignment directive in code (`.p2align`, an `aligned(N)` function) it emits as many bytes of NOPs as
//! the alignment could ever need — the addend of an `R_RISCV_ALIGN` relocation at their start — and leaves
//! it to the linker to delete the ones not needed ("RISC-V ELF psABI", "Relocations", `R_RISCV_ALIGN`: the
//! alignment is the addend rounded up to the next power of two). Keeping them all puts the aligned code
//! off its alignment, which matters where hardware depends on it (a trap vector's low address bits are
//! its mode).
//!
//! This loader does no other relaxation, and places every section at a multiple of its alignment, which the
//! assembler made at least that of its most aligned directive (and this module raises to it otherwise): so
//! which bytes go depends on the section alone, and is decided here, right after parsing, before anything
//! is laid out. Each section with such padding gets compacted contents; symbol values and sizes, the
//! offsets of relocations in it and the addends of relocations that point into it shift by the bytes
//! deleted before them, as GNU `ld` shifts them. Label differences are relocations (`ADD32`/`SUB32`, ...)
//! because of relaxation, so they follow.

use alloc::vec::Vec;

use crate::elf::{Entries, Object, Reloc, SymbolPlace};
use crate::error::{Error, Result};
use crate::fallible;
use crate::limits::Limits;

/// `R_RISCV_ALIGN`.
const ALIGN: u32 = 43;
/// `nop` (`addi zero, zero, 0`) and `c.nop`, little-endian.
const NOP: [u8; 4] = [0x13, 0, 0, 0];
const C_NOP: [u8; 2] = [0x01, 0];

/// What alignment rewrote: compacted section contents and decoded relocations, borrowed by the object.
#[derive(Debug, Default)]
pub(crate) struct Relaxed {
    bytes: Vec<u8>,
    relocs: Vec<Reloc>,
}

/// The byte ranges deleted from one section, in old offsets, sorted and disjoint, each with the start of
/// its padding (the kept part runs from there to the cut).
#[derive(Debug)]
struct Cuts {
    section: usize,
    ranges: Vec<(u64, u64)>,
    padding: Vec<u64>,
}

impl Cuts {
    /// Where old offset `x` of the section lies after the cuts (an offset inside a cut goes to its start).
    fn map(&self, x: u64) -> u64 {
        let mut gone = 0;
        for &(start, end) in &self.ranges {
            if x >= end {
                gone += end - start;
            } else if x > start {
                gone += x - start;
            } else {
                break;
            }
        }
        x - gone
    }

    fn inside(&self, x: u64) -> bool {
        self.ranges.iter().any(|&(start, end)| x > start && x < end)
    }

    fn deleted(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }
}

/// Trims the padding of every `R_RISCV_ALIGN` of `obj` (a RISC-V object), keeping the rewritten parts in
/// `storage`. Does nothing, and allocates nothing, for an object without such padding to trim.
pub(crate) fn relax<'a>(
    mut obj: Object<'a>,
    storage: &'a mut Relaxed,
    limits: &Limits,
) -> Result<Object<'a>> {
    let bad =
        |obj: &Object<'_>, section: usize, offset: u64, value: i64, reason| Error::BadRelocation {
            kind: "R_RISCV_ALIGN",
            section: obj.section_name(section),
            offset,
            symbol: alloc::string::String::new(),
            value,
            reason,
        };
    // The cuts of each section, from its ALIGN relocations in offset order.
    let mut all: Vec<Cuts> = Vec::new();
    for table in &obj.relocs {
        let mut aligns: Vec<(u64, u64)> = Vec::new();
        for r in table.iter(obj.endian).filter(|r| r.r_type == ALIGN) {
            let pad = r.addend.unwrap_or(0);
            let pad = u64::try_from(pad)
                .map_err(|_| bad(&obj, table.target, r.offset, pad, "negative padding"))?;
            if pad > 0 {
                fallible::push(&mut aligns, (r.offset, pad))?;
            }
        }
        if aligns.is_empty() {
            continue;
        }
        fallible::sort_by(&mut aligns, |a, b| a.0 < b.0);
        let Some(section) = obj.sections.get(table.target) else {
            continue;
        };
        let size = section.size;
        let mut align = section.align;
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut padding: Vec<u64> = Vec::new();
        let mut gone = 0u64;
        let mut prev_end = 0u64;
        for (offset, pad) in aligns {
            let end = offset
                .checked_add(pad)
                .filter(|&e| e <= size && (section.data.len() as u64) >= e)
                .ok_or_else(|| {
                    bad(
                        &obj,
                        table.target,
                        offset,
                        pad as i64,
                        "padding runs past its section",
                    )
                })?;
            if offset < prev_end {
                return Err(bad(
                    &obj,
                    table.target,
                    offset,
                    pad as i64,
                    "padding overlaps the previous one",
                ));
            }
            prev_end = end;
            // The alignment: the padding rounded up to the next power of two.
            let boundary = (pad + 1).next_power_of_two();
            if boundary > limits.max_alignment {
                return Err(bad(
                    &obj,
                    table.target,
                    offset,
                    pad as i64,
                    "alignment is larger than the loader accepts",
                ));
            }
            align = align.max(boundary);
            let at = offset - gone;
            let need = (boundary - at % boundary) % boundary;
            if need > pad || need % 2 != 0 {
                return Err(bad(
                    &obj,
                    table.target,
                    offset,
                    pad as i64,
                    "too little padding for its alignment",
                ));
            }
            if need < pad {
                fallible::push(&mut ranges, (offset + need, end))?;
                fallible::push(&mut padding, offset)?;
                gone += pad - need;
            }
        }
        if let Some(s) = obj.sections.get_mut(table.target) {
            s.align = align;
        }
        if !ranges.is_empty() {
            fallible::push(
                &mut all,
                Cuts {
                    section: table.target,
                    ranges,
                    padding,
                },
            )?;
        }
    }
    if all.is_empty() {
        return Ok(obj);
    }
    let cuts_of = |section: usize| all.iter().find(|c| c.section == section);

    // Compacted contents: what is kept of each padding is NOPs again (it may end inside a NOP).
    let total: u64 = all
        .iter()
        .filter_map(|c| obj.sections.get(c.section).map(|s| s.size - c.deleted()))
        .sum();
    let total = usize::try_from(total).map_err(|_| Error::OutOfMemory {
        size: usize::MAX,
        align: 1,
    })?;
    fallible::reserve(&mut storage.bytes, total)?;
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    for cuts in &all {
        let Some(section) = obj.sections.get(cuts.section) else {
            continue;
        };
        let start = storage.bytes.len();
        let mut from = 0u64;
        for (&(cut, end), &kept_from) in cuts.ranges.iter().zip(&cuts.padding) {
            let before = section.data.get(from as usize..kept_from as usize);
            fallible::extend(&mut storage.bytes, before.unwrap_or(&[]))?;
            let mut left = cut - kept_from;
            while left >= 4 {
                fallible::extend(&mut storage.bytes, &NOP)?;
                left -= 4;
            }
            if left == 2 {
                fallible::extend(&mut storage.bytes, &C_NOP)?;
            }
            from = end;
        }
        let size = section.size as usize;
        fallible::extend(
            &mut storage.bytes,
            section.data.get(from as usize..size).unwrap_or(&[]),
        )?;
        fallible::push(
            &mut spans,
            (cuts.section, start, storage.bytes.len() - start),
        )?;
    }

    // Relocations, decoded: offsets in a trimmed section and addends pointing into one shift.
    let count: usize = obj.relocs.iter().map(|t| t.len()).sum();
    fallible::reserve(&mut storage.relocs, count)?;
    let mut tables: Vec<(usize, usize)> = Vec::new();
    for table in &obj.relocs {
        let start = storage.relocs.len();
        let here = cuts_of(table.target);
        for mut r in table.iter(obj.endian) {
            if let Some(cuts) = here {
                if cuts.inside(r.offset) && r.r_type != ALIGN {
                    return Err(bad(
                        &obj,
                        table.target,
                        r.offset,
                        0,
                        "a relocation patches alignment padding",
                    ));
                }
                r.offset = cuts.map(r.offset);
            }
            if let (Some(a), Some(sym)) = (r.addend, obj.symbols.get(r.symbol as usize)) {
                if let SymbolPlace::Section(s) = sym.place {
                    if let Some(cuts) = cuts_of(s) {
                        let target = sym.value.wrapping_add(a as u64);
                        if (target as i64) >= 0 && (sym.value as i64) >= 0 {
                            let moved = cuts.map(target) as i64 - cuts.map(sym.value) as i64;
                            r.addend = Some(moved);
                        }
                    }
                }
            }
            fallible::push(&mut storage.relocs, r)?;
        }
        fallible::push(&mut tables, (start, storage.relocs.len() - start))?;
    }

    // Symbols in a trimmed section.
    for sym in &mut obj.symbols {
        if let SymbolPlace::Section(s) = sym.place {
            if let Some(cuts) = cuts_of(s) {
                let end = cuts.map(sym.value.saturating_add(sym.size));
                sym.value = cuts.map(sym.value);
                sym.size = end.saturating_sub(sym.value);
            }
        }
    }

    // The object now reads the rewritten parts.
    let storage: &'a Relaxed = storage;
    for (section, start, len) in spans {
        if let (Some(s), Some(bytes)) = (
            obj.sections.get_mut(section),
            storage.bytes.get(start..start + len),
        ) {
            s.size = len as u64;
            s.data = bytes;
        }
    }
    for (table, (start, len)) in obj.relocs.iter_mut().zip(tables) {
        if let Some(relocs) = storage.relocs.get(start..start + len) {
            table.entries = Entries::Decoded(relocs);
        }
    }
    Ok(obj)
}
