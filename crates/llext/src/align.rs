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
//! is laid out. Each section with such padding gets compacted contents; symbol values and sizes and the
//! offsets of relocations in it shift by the bytes deleted before them, as GNU `ld` shifts them. Label
//! differences are relocations (`ADD32`/`SUB32`, ...) because of relaxation, so they follow.

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
/// its padding (the kept part runs from there to the cut) and the bytes deleted before it.
#[derive(Debug)]
struct Cuts {
    section: usize,
    ranges: Vec<(u64, u64)>,
    padding: Vec<u64>,
    before: Vec<u64>,
}

impl Cuts {
    /// The first cut that does not end at or before `x`.
    fn after(&self, x: u64) -> usize {
        self.ranges.partition_point(|&(_, end)| end <= x)
    }

    /// Where old offset `x` of the section lies after the cuts (an offset inside a cut goes to its start).
    fn map(&self, x: u64) -> u64 {
        let i = self.after(x);
        let mut gone = self
            .before
            .get(i)
            .copied()
            .unwrap_or_else(|| self.deleted());
        if let Some(&(start, _)) = self.ranges.get(i) {
            gone += x.saturating_sub(start);
        }
        x - gone
    }

    fn inside(&self, x: u64) -> bool {
        self.ranges
            .get(self.after(x))
            .is_some_and(|&(start, end)| x > start && x < end)
    }

    fn deleted(&self) -> u64 {
        match (self.ranges.last(), self.before.last()) {
            (Some((start, end)), Some(before)) => before + (end - start),
            _ => 0,
        }
    }
}

/// Trims the padding of every `R_RISCV_ALIGN` of `obj` (a RISC-V object), keeping the rewritten parts in
/// `storage`. Does nothing, and allocates nothing, for an object without such padding to trim. Linear in
/// the number of relocations and symbols, up to a logarithmic factor.
///
/// Like GNU `ld` (and lld), it moves symbols and the places relocations patch, not relocation addends:
/// assemblers that allow relaxation refer to code by labels, not by a section and an offset.
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
    // Every ALIGN with padding, of every table (a section may have more than one), by section and offset.
    let mut aligns: Vec<(usize, u64, u64)> = Vec::new();
    for table in &obj.relocs {
        for r in table.iter(obj.endian).filter(|r| r.r_type == ALIGN) {
            let pad = r.addend.unwrap_or(0);
            let pad = u64::try_from(pad)
                .map_err(|_| bad(&obj, table.target, r.offset, pad, "negative padding"))?;
            if pad > 0 {
                fallible::push(&mut aligns, (table.target, r.offset, pad))?;
            }
        }
    }
    if aligns.is_empty() {
        return Ok(obj);
    }
    fallible::sort_by(&mut aligns, |a, b| (a.0, a.1) < (b.0, b.1));

    // The cuts of each section, in offset order.
    let mut all: Vec<Cuts> = Vec::new();
    let mut rest = &aligns[..];
    while let Some(&(section_index, _, _)) = rest.first() {
        let n = rest.partition_point(|a| a.0 == section_index);
        let (these, others) = rest.split_at(n);
        rest = others;
        let Some(section) = obj.sections.get(section_index) else {
            continue;
        };
        let size = section.size;
        let mut align = section.align;
        let mut cuts = Cuts {
            section: section_index,
            ranges: Vec::new(),
            padding: Vec::new(),
            before: Vec::new(),
        };
        let mut gone = 0u64;
        let mut prev_end = 0u64;
        for &(_, offset, pad) in these {
            let fail = |reason| bad(&obj, section_index, offset, pad as i64, reason);
            let end = offset
                .checked_add(pad)
                .filter(|&e| e <= size && (section.data.len() as u64) >= e)
                .ok_or_else(|| fail("padding runs past its section"))?;
            if offset < prev_end {
                return Err(fail("padding overlaps the previous one"));
            }
            prev_end = end;
            // The alignment: the padding rounded up to the next power of two.
            let boundary = (pad + 1).next_power_of_two();
            if boundary > limits.max_alignment {
                return Err(fail("alignment is larger than the loader accepts"));
            }
            align = align.max(boundary);
            let at = offset - gone;
            let need = (boundary - at % boundary) % boundary;
            if need > pad || need % 2 != 0 {
                return Err(fail("too little padding for its alignment"));
            }
            if need < pad {
                fallible::push(&mut cuts.ranges, (offset + need, end))?;
                fallible::push(&mut cuts.padding, offset)?;
                fallible::push(&mut cuts.before, gone)?;
                gone += pad - need;
            }
        }
        if let Some(s) = obj.sections.get_mut(section_index) {
            s.align = align;
        }
        if !cuts.ranges.is_empty() {
            fallible::push(&mut all, cuts)?;
        }
    }
    if all.is_empty() {
        return Ok(obj);
    }
    // The cuts of a section, by section index.
    let mut index: Vec<Option<u32>> = fallible::vec(obj.sections.len())?;
    index.resize(obj.sections.len(), None);
    for (k, cuts) in all.iter().enumerate() {
        if let Some(slot) = index.get_mut(cuts.section) {
            *slot = u32::try_from(k).ok();
        }
    }
    let cuts_of = |section: usize| -> Option<&Cuts> {
        all.get(index.get(section).copied().flatten()? as usize)
    };

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

    // Relocations, decoded, with their places in a trimmed section moved.
    let count: usize = obj.relocs.iter().map(|t| t.len()).sum();
    fallible::reserve(&mut storage.relocs, count)?;
    let mut tables: Vec<(usize, usize)> = Vec::new();
    for table in &obj.relocs {
        let start = storage.relocs.len();
        let here = cuts_of(table.target);
        for mut r in table.iter(obj.endian) {
            if let Some(cuts) = here {
                if r.r_type != ALIGN && cuts.inside(r.offset) {
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
