//! The fixup table (the `portable` feature): the locations of a loaded extension whose contents depend on
//! where its blocks, its dependencies' blocks and the built-ins are, recorded while linking
//! ([`LoadOptions::portable`](crate::LoadOptions::portable)) and carried by portable contexts, whose
//! restore re-applies them at the new addresses. A build without the feature records nothing and has none
//! of this code.

use alloc::vec::Vec;

use super::{block_offset, own_place, Owner, Resolver, Str, SymState, NO_SLOT};
use crate::arch::{Inputs, Pairing, Relocator};
use crate::elf::{Object, SymbolPlace};
use crate::error::{Error, Result};
use crate::fallible;
use crate::layout::RegionKind;
use crate::memory::{BlockList, Permission};
use crate::record::{Table, View};

/// Where a recorded relocation's target lives, so that a portable snapshot can recompute it at new addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// In this extension: block index and offset from the block's start.
    Own { block: u8, offset: u64 },
    /// A built-in symbol, by name (in the extension's string buffer).
    Builtin { name: Str },
    /// In another extension: its index in this extension's dependency list, its block and the offset.
    Extension { dep: u32, block: u8, offset: u32 },
    /// Whatever export `index` of another extension (by its index in the dependency list) holds, for an
    /// export that moves with none of that extension's blocks: a built-in or another extension's symbol
    /// it re-exports under a name of its own, its own memory plus a far addend, a constant. A portable
    /// restore reads it from the exporter's export table, which the exporter's own fixups rewrote.
    Export { dep: u32, index: u32 },
    /// A fixed value (`SHN_ABS` symbols, 0 for a missing weak symbol).
    Absolute(u64),
}

/// What a fixup rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FixupKind {
    /// A relocation of this type, re-applied through the architecture backend.
    Relocation(u32),
    /// A GOT slot: the target's address.
    GotSlot,
    /// A call stub jumping to the target.
    Stub,
    /// A slot holding a copy of the value of the target, a copyable built-in (in the extension's bss).
    CopySlot,
}

/// One location whose contents depend on where blocks or built-ins are: the compact table a portable
/// snapshot carries instead of the ELF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fixup {
    pub kind: FixupKind,
    /// Block holding the place, and the place's offset in it.
    pub block: u8,
    pub offset: u32,
    pub target: Target,
    pub addend: i64,
    /// The symbol's size (for size relocations).
    pub size: u64,
    /// GOT slot / stub index of the symbol, or `NO_SLOT`.
    pub got_slot: u32,
    pub stub: u32,
    /// The target is a function (its address may carry a mode bit, e.g. Arm's Thumb bit).
    pub func: bool,
}

/// Most bytes one encoded fixup takes: two bytes; the type and the place's offset (u32 varints, 5 each);
/// the target (at most a block byte and a u64 varint: 11); the addend and the size (u64 varints, 10
/// each); the GOT slot and the stub (5 each).
pub(crate) const MAX_FIXUP_BYTES: usize = 2 + 5 + 5 + 11 + 10 + 10 + 5 + 5;

/// The block byte of an extension target that names one of its exports instead ([`Target::Export`]).
const EXPORT_BLOCK: u8 = 0xff;

/// Bits of an encoded fixup's first byte.
const KIND_MASK: u8 = 0b11;
const TAG_SHIFT: u8 = 2;
const FUNC: u8 = 0x10;
const HAS_ADDEND: u8 = 0x20;
const HAS_SIZE: u8 = 0x40;
const HAS_SLOTS: u8 = 0x80;

/// Appends `v` as an unsigned LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Takes an unsigned LEB128 varint off the front of `b`; `None` if it is cut short or exceeds 64 bits.
#[inline(always)]
fn take_varint(b: &mut &[u8]) -> Option<u64> {
    // Most fields fit one byte.
    match b.split_first() {
        Some((&byte, rest)) if byte < 0x80 => {
            *b = rest;
            Some(u64::from(byte))
        }
        _ => take_long_varint(b),
    }
}

/// [`take_varint`] for varints of more than one byte.
#[cold]
fn take_long_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return None;
        }
        v |= bits << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

#[inline(always)]
fn take_u32(b: &mut &[u8]) -> Option<u32> {
    u32::try_from(take_varint(b)?).ok()
}

#[inline(always)]
fn take_byte(b: &mut &[u8]) -> Option<u8> {
    let (&byte, rest) = b.split_first()?;
    *b = rest;
    Some(byte)
}

impl Fixup {
    /// Appends the encoded fixup (at most [`MAX_FIXUP_BYTES`]). The encoding refers to nothing outside the
    /// extension but its dependency list, so a table can be saved and restored as it is.
    ///
    /// One byte holds the kind (bits 0–1: relocation, GOT slot, stub, copy slot), the target tag (bits 2–3: own block,
    /// built-in, other extension or one of its exports, absolute), a function-target flag (bit 4) and which optional fields
    /// follow (bit 5: addend, bit 6: symbol size, bit 7: GOT slot and stub); a second byte the place's
    /// block. Then LEB128 varints: the relocation type (relocations only), the place's offset, the target
    /// (own: block byte and offset; built-in: name start and length; extension: dependency index, block
    /// byte, offset — or 0xff and the export's index; absolute: the value), the addend (zigzag), the size, and the GOT slot and stub plus one
    /// (0 for none).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, r_type) = match self.kind {
            FixupKind::Relocation(t) => (0u8, Some(t)),
            FixupKind::GotSlot => (1, None),
            FixupKind::Stub => (2, None),
            FixupKind::CopySlot => (3, None),
        };
        let tag = match self.target {
            Target::Own { .. } => 0u8,
            Target::Builtin { .. } => 1,
            Target::Extension { .. } | Target::Export { .. } => 2,
            Target::Absolute(_) => 3,
        };
        let slots = self.got_slot != NO_SLOT || self.stub != NO_SLOT;
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        out.push(
            kind | tag << TAG_SHIFT
                | flag(self.func, FUNC)
                | flag(self.addend != 0, HAS_ADDEND)
                | flag(self.size != 0, HAS_SIZE)
                | flag(slots, HAS_SLOTS),
        );
        out.push(self.block);
        if let Some(t) = r_type {
            put_varint(out, u64::from(t));
        }
        put_varint(out, u64::from(self.offset));
        match self.target {
            Target::Own { block, offset } => {
                out.push(block);
                put_varint(out, offset);
            }
            Target::Builtin { name } => {
                put_varint(out, u64::from(name.start));
                put_varint(out, u64::from(name.len));
            }
            Target::Extension { dep, block, offset } => {
                put_varint(out, u64::from(dep));
                out.push(block);
                put_varint(out, u64::from(offset));
            }
            Target::Export { dep, index } => {
                put_varint(out, u64::from(dep));
                out.push(EXPORT_BLOCK);
                put_varint(out, u64::from(index));
            }
            Target::Absolute(v) => put_varint(out, v),
        }
        if self.addend != 0 {
            put_varint(out, ((self.addend << 1) ^ (self.addend >> 63)) as u64);
        }
        if self.size != 0 {
            put_varint(out, self.size);
        }
        if slots {
            put_varint(out, u64::from(self.got_slot.wrapping_add(1)));
            put_varint(out, u64::from(self.stub.wrapping_add(1)));
        }
    }

    /// Decodes the fixup at the front of `b` and advances past it; `None` if the bytes are not a valid
    /// encoding.
    #[inline]
    pub fn decode_from(b: &mut &[u8]) -> Option<Fixup> {
        let head = take_byte(b)?;
        let block = take_byte(b)?;
        let kind = match head & KIND_MASK {
            0 => FixupKind::Relocation(take_u32(b)?),
            1 => FixupKind::GotSlot,
            2 => FixupKind::Stub,
            _ => FixupKind::CopySlot,
        };
        let offset = take_u32(b)?;
        let target = match (head >> TAG_SHIFT) & 0b11 {
            0 => Target::Own {
                block: take_byte(b)?,
                offset: take_varint(b)?,
            },
            1 => Target::Builtin {
                name: Str {
                    start: take_u32(b)?,
                    len: take_u32(b)?,
                },
            },
            2 => {
                let (dep, block, offset) = (take_u32(b)?, take_byte(b)?, take_u32(b)?);
                match block {
                    EXPORT_BLOCK => Target::Export { dep, index: offset },
                    block => Target::Extension { dep, block, offset },
                }
            }
            _ => Target::Absolute(take_varint(b)?),
        };
        let addend = if head & HAS_ADDEND != 0 {
            let z = take_varint(b)?;
            ((z >> 1) as i64) ^ -((z & 1) as i64)
        } else {
            0
        };
        let size = if head & HAS_SIZE != 0 {
            take_varint(b)?
        } else {
            0
        };
        let (got_slot, stub) = if head & HAS_SLOTS != 0 {
            (take_u32(b)?.wrapping_sub(1), take_u32(b)?.wrapping_sub(1))
        } else {
            (NO_SLOT, NO_SLOT)
        };
        Some(Fixup {
            kind,
            block,
            offset,
            target,
            addend,
            size,
            got_slot,
            stub,
            func: head & FUNC != 0,
        })
    }
}

/// The fixups of an encoded table, in order; after one that does not decode, a single `None` ends it.
#[derive(Debug, Clone)]
pub(crate) struct Fixups<'b> {
    rest: &'b [u8],
}

impl<'b> Fixups<'b> {
    pub fn new(table: &'b [u8]) -> Self {
        Fixups { rest: table }
    }
}

impl Iterator for Fixups<'_> {
    type Item = Option<Fixup>;

    fn next(&mut self) -> Option<Option<Fixup>> {
        if self.rest.is_empty() {
            return None;
        }
        let fixup = Fixup::decode_from(&mut self.rest);
        if fixup.is_none() {
            self.rest = &[];
        }
        Some(fixup)
    }
}

/// The fixup table of one object, as the linker records it.
pub(super) struct Recorder {
    /// The encoded table.
    table: Vec<u8>,
}

// `link`, the one caller, inlines these, as it held their code before it moved here: out of line they
// cost the Cortex-M4F loader image 600 bytes of flash.
impl Recorder {
    /// Starts the table of `obj`, whose relocations and the `slots` GOT slots, stubs and copies the linker
    /// made take at most one fixup each: room for all of them (so recording never allocates), and the
    /// target of every symbol a relocation refers to (`syms`), whose section has the permission `home`
    /// gives by symbol index. Built-ins are named in `strings`, the record's string buffer.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new<R: Resolver>(
        obj: &Object<'_>,
        syms: &mut [SymState],
        slots: usize,
        deps: &[u32],
        resolver: &R,
        blocks: &BlockList,
        home: impl Fn(usize) -> Option<Permission>,
        strings: &mut Vec<u8>,
    ) -> Result<Recorder> {
        let count = obj.relocs.iter().map(|t| t.len()).sum::<usize>() + slots;
        let bytes = count.saturating_mul(MAX_FIXUP_BYTES);
        let mut table = Vec::new();
        table
            .try_reserve_exact(bytes)
            .map_err(|_| Error::OutOfMemory {
                size: bytes,
                align: 1,
            })?;
        for (index, state) in syms.iter_mut().enumerate() {
            if state.referenced {
                state.target = fixup_target(
                    obj,
                    index,
                    state,
                    deps,
                    resolver,
                    blocks,
                    home(index),
                    strings,
                )?;
            }
        }
        Ok(Recorder { table })
    }

    /// Records the GOT slot, stub and copy slot the linker made for a symbol (`state`), at `bases` (where
    /// the GOT, the stubs and the copies start). A GOT slot holding the symbol's `canonical` stub moves with
    /// that stub.
    #[inline(always)]
    pub(super) fn slots<A: Relocator>(
        &mut self,
        state: &SymState,
        canonical: Option<u64>,
        bases: [u64; 3],
        blocks: &BlockList,
    ) -> Result<()> {
        if state.got == NO_SLOT && state.stub == NO_SLOT && state.copy == NO_SLOT {
            return Ok(());
        }
        let target = state.target;
        let got_target = match canonical {
            Some(at) => own_target(blocks, RegionKind::Text, at)?,
            None => target,
        };
        let [got_base, stub_base, copy_base] = bases;
        for (slot, kind, base, size) in [
            (state.got, FixupKind::GotSlot, got_base, A::POINTER_SIZE),
            (state.stub, FixupKind::Stub, stub_base, A::STUB_SIZE),
            (state.copy, FixupKind::CopySlot, copy_base, A::POINTER_SIZE),
        ] {
            if slot == NO_SLOT {
                continue;
            }
            let at = base + u64::from(slot) * size as u64;
            let (block, offset) =
                block_offset(blocks, at).ok_or_else(|| Error::Internal("slot outside blocks"))?;
            Fixup {
                kind,
                block,
                offset,
                target: if kind == FixupKind::GotSlot {
                    got_target
                } else {
                    target
                },
                addend: 0,
                size: 0,
                got_slot: NO_SLOT,
                stub: NO_SLOT,
                func: false,
            }
            .encode_into(&mut self.table);
        }
        Ok(())
    }

    /// Records the relocation of `inputs` against a symbol (`state`), unless moving its block leaves it
    /// right. A direct reference that reads the `copy_slot` of a copyable built-in, or reaches
    /// the `canonical` stub of a built-in function, moves with that slot or stub.
    #[inline(always)]
    pub(super) fn relocation<A: Relocator>(
        &mut self,
        state: &SymState,
        inputs: &Inputs,
        copy_slot: Option<u64>,
        canonical: Option<u64>,
        blocks: &BlockList,
    ) -> Result<()> {
        let (block, offset) = block_offset(blocks, inputs.p)
            .ok_or_else(|| Error::Internal("place outside blocks"))?;
        let target = match (copy_slot, canonical) {
            (Some(at), _) => own_target(blocks, RegionKind::Bss, at)?,
            (None, Some(at)) => own_target(blocks, RegionKind::Text, at)?,
            (None, None) => state.target,
        };
        let local = matches!(target, Target::Own { block: b, .. } if b == block);
        let via_table = state.got != NO_SLOT || state.stub != NO_SLOT;
        // Relative references inside one block keep their bits when the block moves. Parts of HI/LO
        // pairs are always recorded: a LO part's own target (e.g. the `auipc` label of a
        // `PCREL_LO12`) may lie in its block while its value comes from a HI partner whose target
        // moves elsewhere, and a restore can only pair the parts its table holds.
        let paired = A::pairing(inputs.r_type) != Pairing::Alone;
        if paired || !(local && !via_table && A::is_pc_relative(inputs.r_type)) {
            Fixup {
                kind: FixupKind::Relocation(inputs.r_type),
                block,
                offset,
                target,
                addend: inputs.a,
                size: inputs.z,
                got_slot: state.got,
                stub: state.stub,
                func: inputs.func,
            }
            .encode_into(&mut self.table);
        }
        Ok(())
    }

    /// The encoded table, for the extension's record.
    pub(super) fn table(&self) -> &[u8] {
        &self.table
    }
}

impl<'b> View<'b> {
    /// The record's fixup table, decoded as it is read.
    pub fn fixups(&self) -> Fixups<'b> {
        Fixups::new(self.table(Table::Fixups))
    }
}

/// How a symbol's address is found again after moving: in this extension, in a built-in, in another
/// extension, or fixed. A symbol of this extension is placed in the block of its own section when it lies
/// there, its end included: a label at the very end of one block is also the start of the next one when
/// the provider put them back to back, and a restore that moves them apart must keep it with its section.
#[allow(clippy::too_many_arguments)]
fn fixup_target<R: Resolver>(
    obj: &Object<'_>,
    index: usize,
    state: &SymState,
    deps: &[u32],
    resolver: &R,
    blocks: &BlockList,
    home: Option<Permission>,
    strings: &mut Vec<u8>,
) -> Result<Target> {
    let Some(sym) = obj.symbols.get(index) else {
        return Ok(Target::Absolute(0));
    };
    Ok(match (sym.place, state.owner) {
        (SymbolPlace::Absolute, _) => Target::Absolute(state.addr),
        (SymbolPlace::Undefined, Some(Owner::Builtin { .. })) => {
            let start =
                u32::try_from(strings.len()).map_err(|_| Error::Internal("string table size"))?;
            let len = u32::try_from(sym.name.len()).map_err(|_| Error::Internal("string size"))?;
            fallible::extend(strings, sym.name)?;
            Target::Builtin {
                name: Str { start, len },
            }
        }
        (SymbolPlace::Undefined, Some(Owner::Extension(slot, block))) => {
            let dep = deps
                .iter()
                .position(|&d| d == slot)
                .ok_or_else(|| Error::Internal("dependency not recorded"))?;
            match resolver.locate(slot, block, state.addr) {
                Some(offset) => Target::Extension {
                    dep: u32::try_from(dep).map_err(|_| Error::Internal("dependency count"))?,
                    block,
                    offset,
                },
                // Outside the exporter's blocks: an export that moves with none of them (a built-in or
                // far address it re-exports, a constant), whatever its export table holds after a
                // restore. (Or kept in place in its storage ([`Storage::InPlace`]), which a portable
                // save refuses.) An absent one, 0, stays absent (`is_absent`).
                None if state.addr == 0 => Target::Absolute(0),
                None => Target::Export {
                    dep: u32::try_from(dep).map_err(|_| Error::Internal("dependency count"))?,
                    index: resolver
                        .export_index(slot, sym.name)
                        .ok_or_else(|| Error::Internal("an export's index"))?,
                },
            }
        }
        (SymbolPlace::Undefined, None) if index != 0 && sym.name != b"_GLOBAL_OFFSET_TABLE_" => {
            Target::Absolute(0)
        }
        _ => match own_place(blocks, home, state.addr) {
            Some((block, offset)) => Target::Own {
                block,
                offset: u64::from(offset),
            },
            None => Target::Absolute(state.addr),
        },
    })
}

/// The fixup target of `addr`, a slot or stub the linker made in the extension's `kind` block.
fn own_target(blocks: &BlockList, kind: RegionKind, addr: u64) -> Result<Target> {
    let (block, offset) = own_place(blocks, Some(kind.permission()), addr)
        .ok_or_else(|| Error::Internal("slot or stub outside blocks"))?;
    Ok(Target::Own {
        block,
        offset: u64::from(offset),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn samples() -> Vec<Fixup> {
        let base = Fixup {
            kind: FixupKind::Relocation(2),
            block: 0,
            offset: 0x10,
            target: Target::Own {
                block: 1,
                offset: 0x20,
            },
            addend: -4,
            size: 0,
            got_slot: NO_SLOT,
            stub: NO_SLOT,
            func: true,
        };
        let targets = [
            Target::Own {
                block: 2,
                offset: u64::MAX,
            },
            Target::Builtin {
                name: Str {
                    start: u32::MAX,
                    len: 7,
                },
            },
            Target::Extension {
                dep: 300,
                block: 2,
                offset: u32::MAX,
            },
            Target::Export {
                dep: u32::MAX,
                index: u32::MAX,
            },
            Target::Absolute(0),
            Target::Absolute(u64::MAX),
        ];
        let mut out = vec![base];
        for (i, target) in targets.into_iter().enumerate() {
            out.push(Fixup {
                kind: [
                    FixupKind::Relocation(u32::MAX),
                    FixupKind::GotSlot,
                    FixupKind::Stub,
                    FixupKind::CopySlot,
                ][i % 4],
                block: i as u8,
                offset: [0, 127, 128, u32::MAX, 1 << 21, 3][i],
                target,
                addend: [0, i64::MIN, i64::MAX, -1, 1, -2][i],
                size: [0, 1, u64::MAX, 64, 0, 8][i],
                got_slot: [NO_SLOT, 0, 5, NO_SLOT, u32::MAX - 1, 2][i],
                stub: [0, NO_SLOT, 9, NO_SLOT, 1, NO_SLOT][i],
                func: i % 2 == 0,
            });
        }
        out
    }

    #[test]
    fn fixups_round_trip_at_the_extremes_of_every_field() {
        let mut table = Vec::new();
        for f in samples() {
            let before = table.len();
            f.encode_into(&mut table);
            assert!(table.len() - before <= MAX_FIXUP_BYTES, "{f:?}");
        }
        let decoded: Vec<Option<Fixup>> = Fixups::new(&table).collect();
        let expected: Vec<Option<Fixup>> = samples().into_iter().map(Some).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn the_longest_fixup_takes_max_fixup_bytes() {
        let longest = Fixup {
            kind: FixupKind::Relocation(u32::MAX),
            block: 255,
            offset: u32::MAX,
            target: Target::Own {
                block: 255,
                offset: u64::MAX,
            },
            addend: i64::MIN,
            size: u64::MAX,
            got_slot: u32::MAX - 1,
            stub: u32::MAX - 1,
            func: true,
        };
        let mut table = Vec::new();
        longest.encode_into(&mut table);
        assert_eq!(table.len(), MAX_FIXUP_BYTES);
        assert_eq!(Fixup::decode_from(&mut &table[..]), Some(longest));
    }

    #[test]
    fn a_typical_fixup_takes_a_few_bytes() {
        let mut table = Vec::new();
        samples()[0].encode_into(&mut table);
        // Two bytes, then type, offset, target block, target offset and addend, one byte each.
        assert_eq!(table.len(), 7);
    }

    #[test]
    fn cut_or_overlong_fixups_do_not_decode() {
        for f in samples() {
            let mut one = Vec::new();
            f.encode_into(&mut one);
            for cut in 0..one.len() {
                let mut rest = &one[..cut];
                assert_eq!(Fixup::decode_from(&mut rest), None, "{f:?} cut at {cut}");
            }
        }
        // A varint of eleven bytes, or of ten whose last carries bits past 64.
        let mut rest: &[u8] = &[0xff; 11];
        assert_eq!(take_varint(&mut rest), None);
        let mut rest: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(take_varint(&mut rest), None);
        let mut rest: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(take_varint(&mut rest), Some(u64::MAX));
        // A relocation without its type; after a bad fixup the table ends.
        let table = [0u8, 0];
        assert_eq!(Fixups::new(&table).collect::<Vec<_>>(), vec![None]);
    }
}
