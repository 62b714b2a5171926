//! Context save and restore: bring loaded extensions back after a suspend without parsing, symbol lookup or
//! relocation (in place), or at new addresses in a new process (portable).
//!
//! # Format (version 8, little-endian)
//! A 56-byte header — magic `LLEXTCTX`, version, flags (portable, content hashes), `e_machine`, pointer
//! size, a fingerprint of the built-in export table, the extension count, the total length, and what the
//! saving registry's core runs as far as it knew (Thumb code only, the floating-point calling convention,
//! the instruction set's width and feature bits) — then one
//! record per extension in load order, then a 64-bit checksum of everything before it. A record is the
//! very encoding the registry keeps for a loaded extension (see the `record` module: name, use count,
//! dependencies, strings, blocks with address, size, alignment, provider token, permission and content
//! hash, regions, section map, exports and global symbols each with the block it moves with,
//! constructor/destructor addresses and the fixup table, LEB128-packed: a few bytes per fixup; since
//! version 7 a fixup may name a dependency's export instead of a place in its blocks; since version 8 what
//! its object needs of the core, which a restore checks against its own), so saving
//! copies it and an in-place restore copies it back. Records refer to each other by index (a dependency
//! always has a smaller index), never by pointer. Portable contexts follow each record with the addresses
//! the built-ins its fixups name had when saved (a u32 count, then a u64 per such fixup, in fixup order)
//! and with its blocks' bytes. Bit 7 of a region's or section's kind byte marks it as used in place from the
//! extension's storage ([`Storage::InPlace`](crate::Storage::InPlace)): such a region lies in no block, and
//! only in-place contexts hold them. In-place contexts with content hashes follow each record with the hash
//! of each such region's bytes (a u64 per in-place region, in region order; since version 8), which
//! [`Registry::restore_static`] checks against the storage it is given.

use alloc::string::String;
use alloc::vec::Vec;

use crate::arch::{FloatAbi, Isa};
use crate::error::{Error, Result};
use crate::fallible;
use crate::layout::RegionKind;
use crate::link::{Linked, Str, NO_BLOCK};
use crate::memory::{BlockList, Memory, Permission};
use crate::record::{self, BlockRec, Record, Refusal, Table};
use crate::registry::{ext_at, ExtId, Inner, Phase, Registry};

// The portable half of saving and restoring is compiled with the `portable` feature only. Without it the
// entry points refuse portable contexts (`Error::FeatureDisabled`) before anything changes, and these
// stand-ins, which they then never reach, take the module's place.
#[cfg(feature = "portable")]
mod portable;
#[cfg(not(feature = "portable"))]
mod portable {
    use super::{Context, Out, Rec, RestoreOptions, Taken};
    use crate::error::{Error, Result};
    use crate::memory::{BlockList, Memory};
    use crate::record::Record;
    use crate::registry::{Ext, ExtId, Inner};
    use crate::symbols::ExportTable;

    const DISABLED: Error = Error::FeatureDisabled {
        feature: "portable",
        what: "a portable context",
    };

    pub(super) fn check_movable(_: &Ext) -> Result<()> {
        Err(DISABLED)
    }

    pub(super) fn write_carried(_: &ExportTable, _: &Ext, _: &mut Out<'_>, _: usize) -> Result<()> {
        Err(DISABLED)
    }

    pub(super) fn take_memory<M: Memory>(
        _: &mut Inner<M>,
        _: &Context<'_>,
        _: &[Rec<'_>],
        _: &mut Taken,
        _: &RestoreOptions,
    ) -> Result<()> {
        Err(DISABLED)
    }

    pub(super) fn move_record<M: Memory>(
        _: &Inner<M>,
        _: &[Rec<'_>],
        _: usize,
        _: &BlockList,
        _: &[ExtId],
        _: usize,
        _: &mut Record,
    ) -> Result<()> {
        Err(DISABLED)
    }
}

const MAGIC: &[u8; 8] = b"LLEXTCTX";
/// The format version this build writes and reads.
pub const CONTEXT_VERSION: u16 = 8;
const HEADER: usize = 56;
const FLAG_PORTABLE: u16 = 1;
const FLAG_HASHES: u16 = 2;

/// What to save.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaveOptions<'a> {
    /// Save these extensions and everything they depend on; `None` saves every loaded extension.
    pub names: Option<&'a [&'a str]>,
    /// Carry the blocks' bytes and fixups, so the context restores at any address (e.g. in a new process).
    /// A build without the `portable` feature refuses it ([`Error::FeatureDisabled`]).
    pub portable: bool,
    /// Record a content hash per block, checked on restore (always on for portable contexts): an in-place
    /// restore checks the retained block, a portable one the bytes the context carries. An in-place context
    /// also records one per region used in place from an extension's storage
    /// ([`Storage::InPlace`](crate::Storage::InPlace)), which [`Registry::restore_static`] checks against
    /// the storage it is given: a context saved before an update rewrote that storage is then refused
    /// ([`Error::StorageChanged`]) instead of mixing the new code or constants there with the old
    /// extension's retained blocks.
    pub content_hashes: bool,
}

/// How to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Check each block against its saved content hash, when the context has them (default `true`), and,
    /// in [`Registry::restore_static`], each region used in place from storage against its own.
    pub verify_content: bool,
    /// Portable restores: move the pointers an extension's code stored at run time in its writable data
    /// with the saved block they point into, and rebind those holding a built-in's saved address by name
    /// (default `true`). Such a word is known only by its value: an aligned pointer-sized word no fixup
    /// wrote that holds an address inside a saved block (or a built-in's saved address). An integer that
    /// happens to equal such an address is moved too; turn this off for data that holds such integers,
    /// which leaves every stored pointer as saved (stale once its block moved).
    pub move_stored_pointers: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            verify_content: true,
            move_stored_pointers: true,
        }
    }
}

/// What a registry's core runs, as far as the registry knows: what its loads check objects against
/// ([`Registry::set_isa`], [`Registry::set_float_abi`], [`Registry::set_thumb_only`]). A context carries
/// the saving registry's ([`Context::saved_core`]), for inspection. A restore reads no ELF file, so each
/// extension's record keeps what its load read from the object (its instruction set, calling convention,
/// A32 code, Arm profile), and the restore makes a load's checks with it against the restoring registry's
/// core ([`Error::SnapshotCore`]): a context a host saved without knowing the device's core is checked all
/// the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedCore {
    /// The instructions the core runs, if known.
    pub isa: Option<Isa>,
    /// The floating-point calling convention of its code, if known.
    pub float_abi: Option<FloatAbi>,
    /// It runs Thumb code of the M-profile only (a Cortex-M).
    pub thumb_only: bool,
}

impl SavedCore {
    /// What `inner`'s loads check objects against.
    pub(crate) fn of<M>(inner: &Inner<M>) -> SavedCore {
        SavedCore {
            thumb_only: inner.thumb_code_only(),
            float_abi: inner.float_abi,
            isa: inner.isa.filter(|isa| isa.machine() == inner.machine),
        }
    }

    /// Header byte 15: bit 0 Thumb only, bits 4 to 7 the float ABI's code.
    fn flags(&self) -> u8 {
        u8::from(self.thumb_only) | FloatAbi::code(self.float_abi) << 4
    }

    /// The core a header says (`flags` byte, ISA width and feature bits); an ISA this build does not know
    /// counts as unknown.
    fn read(machine: u16, flags: u8, bits: u8, features: u128) -> Result<SavedCore, Short> {
        let float_abi = FloatAbi::from_code(flags >> 4).map_err(|()| Short)?;
        if flags & 0x0e != 0 || (bits == 0 && features != 0) {
            return Err(Short);
        }
        Ok(SavedCore {
            thumb_only: flags & 1 != 0,
            float_abi,
            isa: if bits == 0 {
                None
            } else {
                Isa::from_parts(machine, bits, features)
            },
        })
    }

    /// Why the saved extension `v` (of `machine`) may not run on this core, if it may not: the checks a
    /// load makes of its object, against what the record says the object needs.
    fn refuses(&self, v: &record::View<'_>, machine: u16) -> Option<Error> {
        let m_profile = || String::from("Thumb only (a Cortex-M)");
        let (what, needs, here) = match v.needs(machine)?.refusal(self)? {
            Refusal::FloatAbi(here, found) => (
                "floating-point calling convention",
                String::from(found.key()),
                String::from(here.key()),
            ),
            Refusal::ArmState => ("Arm code", String::from("A32 (Arm state)"), m_profile()),
            Refusal::ArmProfile(p) => ("Arm profile", alloc::format!("{p}-profile"), m_profile()),
            Refusal::Isa(here, needs, missing) => (
                "instruction set",
                needs.key(),
                alloc::format!("{here}, without {missing}"),
            ),
        };
        Some(Error::SnapshotCore {
            extension: String::from(v.name()),
            what,
            needs,
            here,
        })
    }
}

/// The checksum of contexts and the content hash of blocks: eight independent multiply-rotate chains over
/// interleaved 8-byte words (so the CPU runs them in parallel), combined at the end. Every step is a
/// bijection of its chain's state, and the final combination is a bijection of each chain's state when the
/// others are fixed, so any change confined to one 8-byte word (in particular any single-bit flip) always
/// changes the result.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    const LANES: usize = 8;
    let step = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(31);
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        if let Some(dst) = w.get_mut(..c.len()) {
            dst.copy_from_slice(c);
        }
        u64::from_le_bytes(w)
    };
    let seed = 0x243f_6a88_85a3_08d3 ^ bytes.len() as u64;
    let mut lanes = [0u64; LANES];
    for (i, lane) in lanes.iter_mut().enumerate() {
        *lane = seed.rotate_left(8 * i as u32);
    }
    let mut blocks = bytes.chunks_exact(8 * LANES);
    for b in &mut blocks {
        for (lane, c) in lanes.iter_mut().zip(b.chunks_exact(8)) {
            *lane = step(*lane, word(c));
        }
    }
    for (lane, c) in lanes.iter_mut().zip(blocks.remainder().chunks(8)) {
        *lane = step(*lane, word(c));
    }
    lanes.iter().enumerate().fold(0, |acc, (i, &h)| {
        acc ^ (h ^ (h >> 32)).rotate_left(8 * i as u32)
    })
}

/// A writer that either measures (no buffer) or fills a caller-given buffer; it never allocates.
struct Out<'b> {
    buf: Option<&'b mut [u8]>,
    pos: usize,
}

impl<'b> Out<'b> {
    /// A writer that only measures.
    fn measure() -> Self {
        Out { buf: None, pos: 0 }
    }

    /// A writer into `buf`; past its end it only measures (see [`Out::short_of`]).
    fn filling(buf: &'b mut [u8]) -> Self {
        Out {
            buf: Some(buf),
            pos: 0,
        }
    }

    /// After writing into a buffer of `size` bytes: the refusal if the context did not fit.
    fn short_of(&self, size: usize) -> Result<usize> {
        if self.pos > size {
            return Err(Error::BufferTooSmall {
                needed: self.pos,
                size,
            });
        }
        Ok(self.pos)
    }

    fn bytes(&mut self, b: &[u8]) -> Result<()> {
        let end = self
            .pos
            .checked_add(b.len())
            .ok_or_else(|| Error::Internal("context size"))?;
        if let Some(buf) = self.buf.as_deref_mut() {
            match buf.get_mut(self.pos..end) {
                Some(dst) => dst.copy_from_slice(b),
                // Too small: go on measuring, so the refusal can say how much is needed.
                None => self.buf = None,
            }
        }
        self.pos = end;
        Ok(())
    }
    fn u8(&mut self, v: u8) -> Result<()> {
        self.bytes(&[v])
    }
    fn u16(&mut self, v: u16) -> Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    /// The bytes written since `start` (empty while measuring).
    fn written(&mut self, start: usize) -> &mut [u8] {
        let end = self.pos;
        self.buf
            .as_deref_mut()
            .and_then(|b| b.get_mut(start..end))
            .unwrap_or(&mut [])
    }
}

/// A record is shorter than its counts say, or inconsistent. A zero-sized error on the hot decoding path,
/// turned into [`Error::Snapshot`] at the API boundary.
#[derive(Debug, Clone, Copy)]
struct Short;

impl From<Short> for Error {
    fn from(_: Short) -> Error {
        Error::Snapshot {
            reason: "truncated or inconsistent record",
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, Short> {
    let mut w = [0u8; 2];
    w.copy_from_slice(b.get(at..at + 2).ok_or(Short)?);
    Ok(u16::from_le_bytes(w))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, Short> {
    let mut w = [0u8; 4];
    w.copy_from_slice(b.get(at..at + 4).ok_or(Short)?);
    Ok(u32::from_le_bytes(w))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, Short> {
    let mut w = [0u8; 8];
    w.copy_from_slice(b.get(at..at + 8).ok_or(Short)?);
    Ok(u64::from_le_bytes(w))
}

/// Little-endian fields of a table entry whose size the caller checked (0 past its end).
fn le8(e: &[u8], at: usize) -> u8 {
    e.get(at).copied().unwrap_or(0)
}

fn le32(e: &[u8], at: usize) -> u32 {
    e.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn le64(e: &[u8], at: usize) -> u64 {
    e.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// One extension in a context: its record, its blocks decoded once (every step of a restore reads them)
/// and, in portable contexts, their bytes.
#[derive(Debug, Clone, Copy)]
struct Rec<'b> {
    view: record::View<'b>,
    /// Portable contexts: the address each built-in a fixup names had when saved, in fixup order (u64s).
    #[cfg_attr(
        not(feature = "portable"),
        expect(dead_code, reason = "only a portable restore reads it")
    )]
    builtin_addrs: &'b [u8],
    /// Portable contexts: the blocks' bytes, one after the other.
    #[cfg_attr(
        not(feature = "portable"),
        expect(dead_code, reason = "only a portable restore reads it")
    )]
    contents: &'b [u8],
    /// In-place contexts with content hashes: the hash of each in-place region's bytes (u64s, in region
    /// order).
    storage_hashes: &'b [u8],
    blocks: [BlockRec; 3],
    block_count: usize,
}

impl Rec<'_> {
    fn blocks(&self) -> &[BlockRec] {
        self.blocks.get(..self.block_count).unwrap_or(&[])
    }
}

/// The record at the start of `rest` and the bytes that follow it (block contents in portable contexts,
/// the hashes of in-place regions in in-place contexts with content hashes).
fn split_record(rest: &[u8], portable: bool, hashes: bool) -> Result<(Rec<'_>, usize), Short> {
    let view = record::View::new(rest).ok_or(Short)?;
    let mut len = view.layout.len;
    let mut blocks = [BlockRec::EMPTY; 3];
    let block_count = view.count(Table::Blocks);
    if block_count > blocks.len() {
        return Err(Short);
    }
    let mut total = 0usize;
    for (slot, b) in blocks.iter_mut().zip(view.blocks()) {
        *slot = b.ok_or(Short)?;
        let size = usize::try_from(slot.size).map_err(|_| Short)?;
        total = total.checked_add(size).ok_or(Short)?;
    }
    let (builtin_addrs, contents) = if portable {
        let count = record::u32_at(rest, len).ok_or(Short)? as usize;
        let start = len + 4;
        let end = count
            .checked_mul(8)
            .and_then(|n| n.checked_add(start))
            .ok_or(Short)?;
        let builtin_addrs = rest.get(start..end).ok_or(Short)?;
        let contents = rest
            .get(end..end.checked_add(total).ok_or(Short)?)
            .ok_or(Short)?;
        len = end + total;
        (builtin_addrs, contents)
    } else {
        (&[][..], &[][..])
    };
    let storage_hashes = if hashes && !portable {
        let count = in_place_regions(&view).count();
        let end = len.checked_add(count * 8).ok_or(Short)?;
        let hashes = rest.get(len..end).ok_or(Short)?;
        len = end;
        hashes
    } else {
        &[][..]
    };
    Ok((
        Rec {
            view,
            builtin_addrs,
            contents,
            storage_hashes,
            blocks,
            block_count,
        },
        len,
    ))
}

/// Checks every cross-reference of record `index` once, so that restore can trust it.
fn validate(
    rec: &Rec<'_>,
    index: usize,
    portable: bool,
    machine: u16,
    pointer_size: u8,
) -> Result<()> {
    let v = &rec.view;
    let name = v.name_bytes();
    let name = core::str::from_utf8(name).map_err(|_| Short)?;
    if name.is_empty() || name.len() > 255 || name.contains('\0') {
        return Err(Short.into());
    }
    if v.use_count() == 0
        || v.initialised_byte() > 1
        || v.fixups_byte() > 1
        || v.a32_byte() > 1
        // An ISA a load read from the object is of the object's width: one of another is compared with
        // no core's.
        || v.needs(machine).is_none_or(|n| {
            n.isa
                .is_some_and(|isa| u16::from(isa.bits()) != 8 * u16::from(pointer_size))
        })
    {
        return Err(Short.into());
    }
    if portable && !v.has_fixups() {
        return Err(Short.into());
    }
    for d in v.deps() {
        if d as usize >= index {
            return Err(Error::SnapshotDependency {
                extension: String::from(name),
                index: d,
            });
        }
    }
    // Tight loops over the raw tables: this runs for every record of every context restored.
    let blocks = rec.blocks();
    for (i, b) in blocks.iter().enumerate() {
        // At most one block per permission (the linker makes one per group), so a region's block is
        // its permission's: restore moves the region with it. Blocks never overlap.
        let clash = |o: &BlockRec| {
            o.permission == b.permission
                || (o.addr < b.addr.saturating_add(b.size)
                    && b.addr < o.addr.saturating_add(o.size))
        };
        if b.size == 0
            || !b.align.is_power_of_two()
            || b.addr % b.align != 0
            || b.addr.checked_add(b.size).is_none()
            || blocks
                .get(i + 1..)
                .is_some_and(|rest| rest.iter().any(clash))
        {
            return Err(Short.into());
        }
    }
    // Regions lie inside the block of their permission, sections inside their region (a missing region
    // holds only empty sections), so every address derived from them stays in range. In-place regions lie
    // in the extension's storage, outside every block; portable contexts have none. A load makes at most
    // one region of each kind copied and one kept in place, and sections are placed by that pair: a second
    // one would leave the section's address ambiguous.
    let mut region_sizes = [[None::<u64>; 2]; RegionKind::ALL.len()];
    for e in v.table(Table::Regions).chunks_exact(record::REGION_REC) {
        let (kind, in_place) = record::region_kind(le8(e, 0)).ok_or(Short)?;
        let addr = le64(e, record::REGION_ADDR_AT);
        let size = u64::from(le32(e, record::REGION_SIZE_AT));
        let align = record::align_from_log2(le8(e, record::REGION_ALIGN_AT)).ok_or(Short)?;
        if addr.checked_add(size).is_none() {
            return Err(Short.into());
        }
        let inside = if in_place {
            !portable
        } else {
            blocks.iter().any(|b| {
                b.permission == kind.permission()
                    && align <= b.align
                    && addr >= b.addr
                    && addr - b.addr + size <= b.size
            })
        };
        if !inside {
            return Err(Short.into());
        }
        match region_sizes
            .get_mut(kind.index())
            .and_then(|s| s.get_mut(usize::from(in_place)))
        {
            Some(slot @ None) => *slot = Some(size),
            _ => return Err(Short.into()),
        }
    }
    let strings = v.count(Table::Strings) as u64;
    let str_in = |s: Str| u64::from(s.start) + u64::from(s.len) <= strings;
    // A name at the start of an entry: (start, length) into the strings.
    let str_ok = |e: &[u8]| {
        str_in(Str {
            start: le32(e, 0),
            len: le32(e, 4),
        })
    };
    for e in v.table(Table::Sections).chunks_exact(record::SECTION_REC) {
        let (kind, in_place) = record::region_kind(le8(e, record::SECTION_KIND_AT)).ok_or(Short)?;
        let region = region_sizes
            .get(kind.index())
            .and_then(|r| r.get(usize::from(in_place)))
            .copied()
            .flatten()
            .unwrap_or(0);
        let offset = u64::from(le32(e, record::SECTION_OFFSET_AT));
        let size = u64::from(le32(e, record::SECTION_SIZE_AT));
        if !str_ok(e) || offset.checked_add(size).is_none_or(|end| end > region) {
            return Err(Short.into());
        }
    }
    // A symbol's block holds its address (or ends there), so a restore moves it with that block.
    let sym_ok = |e: &[u8]| {
        let (addr, block) = (le64(e, record::SYM_ADDR_AT), le8(e, record::SYM_BLOCK_AT));
        str_ok(e)
            && (block == NO_BLOCK
                || blocks.get(usize::from(block)).is_some_and(|b| {
                    addr.checked_sub(b.addr)
                        .is_some_and(|offset| offset <= b.size)
                }))
    };
    for table in [Table::Exports, Table::Globals] {
        if !v.table(table).chunks_exact(record::SYM_REC).all(sym_ok) {
            return Err(Short.into());
        }
    }
    // The fixup table is only ever applied by a portable restore, which checks each fixup as it decodes
    // it (`portable::check_fixup`): one pass over the table instead of two.
    Ok(())
}

/// The header at the start of `bytes`, if it is one's length and starts with the magic.
fn header(bytes: &[u8]) -> Result<&[u8]> {
    let header = bytes.get(..HEADER).ok_or_else(|| Error::Snapshot {
        reason: "shorter than a context header",
    })?;
    if header.get(..8) != Some(&MAGIC[..]) {
        return Err(Error::Snapshot {
            reason: "bad magic (not an llext context)",
        });
    }
    Ok(header)
}

/// A validated saved context, borrowing its bytes (no allocation).
///
/// ```
/// assert!(matches!(llext::Context::from_bytes(b"garbage"), Err(llext::Error::Snapshot { .. })));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Context<'b> {
    bytes: &'b [u8],
    machine: u16,
    pointer_size: u8,
    portable: bool,
    hashes: bool,
    fingerprint: u64,
    count: u32,
    core: SavedCore,
}

impl<'b> Context<'b> {
    /// The eight bytes every context starts with (a file starting with them and failing
    /// [`Context::from_bytes`] is a damaged context).
    pub const MAGIC: [u8; 8] = *MAGIC;

    /// The checksum a context ends with, computed over `body` (everything before the last 8 bytes). It
    /// detects corruption (every single-bit flip, truncation, stray writes); it does not authenticate: anyone
    /// can recompute it, so a context is only as trustworthy as the memory or file it was kept in.
    ///
    /// ```
    /// let a = llext::Context::checksum(b"abcdefgh");
    /// assert_ne!(a, llext::Context::checksum(b"abcdefgi"));
    /// ```
    pub fn checksum(body: &[u8]) -> u64 {
        checksum(body)
    }

    /// [`Context::from_bytes`] for the context at the start of `region` — retained RAM or a flash page
    /// kept whole across a warm reboot, where the length [`Registry::save_into`] returned was not kept —
    /// taking its length from its header (which the checksum then covers).
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::default());
    /// let mut retained = [0xa5u8; 256];
    /// registry.save_into(&llext::SaveOptions::default(), &mut retained).unwrap();
    /// assert!(llext::Context::from_bytes(&retained).is_err()); // the region is longer than the context
    /// assert_eq!(llext::Context::from_prefix(&retained).unwrap().len(), 0);
    /// # }
    /// ```
    pub fn from_prefix(region: &'b [u8]) -> Result<Context<'b>> {
        let len = usize::try_from(u64_at(header(region)?, 32)?).map_err(|_| Short)?;
        let bytes = region.get(..len).ok_or_else(|| Error::Snapshot {
            reason: "shorter than the length its header gives (truncated)",
        })?;
        Context::from_bytes(bytes)
    }

    /// Checks the header, the checksum and every record of `bytes` (a portable context's fixups, and
    /// every context's constructor and destructor addresses, which may lie in a dependency or a built-in,
    /// are checked as [`Registry::restore`] uses them).
    ///
    /// `bytes` must be the context exactly, as long as [`Registry::save_into`] said: a longer slice is
    /// refused as padded (use [`Context::from_prefix`] for a context at the start of a larger region).
    pub fn from_bytes(bytes: &'b [u8]) -> Result<Context<'b>> {
        let header = header(bytes)?;
        let version = u16_at(header, 8)?;
        let flags = u16_at(header, 10)?;
        let machine = u16_at(header, 12)?;
        let pointer_size = *header.get(14).ok_or(Short)?;
        let fingerprint = u64_at(header, 16)?;
        let count = u32_at(header, 24)?;
        let total = u64_at(header, 32)?;
        let core_flags = *header.get(15).ok_or(Short)?;
        let isa_bits = *header.get(28).ok_or(Short)?;
        let isa_features = u64_at(header, 40)? as u128 | (u64_at(header, 48)? as u128) << 64;
        if total != bytes.len() as u64 {
            return Err(Error::Snapshot {
                reason: "length does not match the header (truncated or padded)",
            });
        }
        let body_end = bytes.len().checked_sub(8).ok_or(Short)?;
        let (body, sum) = bytes.split_at(body_end);
        if checksum(body) != u64_at(sum, 0)? {
            return Err(Error::Snapshot {
                reason: "checksum mismatch (the context is corrupt)",
            });
        }
        if version != CONTEXT_VERSION {
            return Err(Error::SnapshotVersion {
                found: version,
                supported: CONTEXT_VERSION,
            });
        }
        if flags & !(FLAG_PORTABLE | FLAG_HASHES) != 0
            || !matches!(pointer_size, 4 | 8)
            || header.get(29..32) != Some(&[0; 3][..])
        {
            return Err(Short.into());
        }
        let core = SavedCore::read(machine, core_flags, isa_bits, isa_features)?;
        let ctx = Context {
            bytes,
            machine,
            pointer_size,
            portable: flags & FLAG_PORTABLE != 0,
            hashes: flags & FLAG_HASHES != 0,
            fingerprint,
            count,
            core,
        };
        let mut pos = HEADER;
        for i in 0..count as usize {
            let (rec, len) = split_record(body.get(pos..).ok_or(Short)?, ctx.portable, ctx.hashes)?;
            validate(&rec, i, ctx.portable, machine, pointer_size)?;
            pos += len;
        }
        if pos != body.len() {
            return Err(Short.into());
        }
        Ok(ctx)
    }

    /// Number of extensions in the context.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True if the context holds no extension.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True if the context carries bytes and fixups (restorable at any address).
    pub fn is_portable(&self) -> bool {
        self.portable
    }

    /// `e_machine` of the saved extensions.
    pub fn machine(&self) -> u16 {
        self.machine
    }

    /// What the saving registry knew of its core, for inspection: a restore does not compare it, but checks
    /// what each extension's object needs ([`SavedExtension::isa`], [`SavedExtension::float_abi`],
    /// [`SavedExtension::holds_a32`], [`SavedExtension::arm_profile`]).
    pub fn saved_core(&self) -> SavedCore {
        self.core
    }

    /// The saved extensions' names, in load order.
    pub fn names(&self) -> impl Iterator<Item = &'b str> + '_ {
        self.records().map(|r| r.view.name())
    }

    /// The saved extensions, in load order: what each one's record says (for inspection; nothing is
    /// allocated).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::new(llext::LIBC_EXPORTS));
    /// # registry.load_file(llext_fixtures::path("basic-gcc-O2-pic.o"))?;
    /// let bytes = registry.save(&llext::SaveOptions::default())?;
    /// let context = llext::Context::from_bytes(&bytes)?;
    /// for e in context.extensions() {
    ///     println!("{}: use count {}, {} exports", e.name(), e.use_count(), e.exports().count());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn extensions(&self) -> impl Iterator<Item = SavedExtension<'b>> + '_ {
        let machine = self.machine;
        self.records()
            .map(move |rec| SavedExtension { rec, machine })
    }

    /// The records of a validated context, in order.
    fn records(&self) -> impl Iterator<Item = Rec<'b>> + '_ {
        let body = self
            .bytes
            .get(..self.bytes.len().saturating_sub(8))
            .unwrap_or(&[]);
        let mut pos = HEADER;
        let (portable, hashes) = (self.portable, self.hashes);
        (0..self.count as usize).map_while(move |_| {
            let (rec, len) = split_record(body.get(pos..)?, portable, hashes).ok()?;
            pos += len;
            Some(rec)
        })
    }
}

/// One extension of a saved context, as its record says ([`Context::extensions`]).
#[derive(Debug, Clone, Copy)]
pub struct SavedExtension<'b> {
    rec: Rec<'b>,
    machine: u16,
}

impl<'b> SavedExtension<'b> {
    /// Its name.
    pub fn name(&self) -> &'b str {
        self.rec.view.name()
    }

    /// The extensions it depends on, as indexes into [`Context::extensions`] (always earlier ones).
    pub fn dependencies(&self) -> impl Iterator<Item = usize> + 'b {
        self.rec.view.deps().map(|d| d as usize)
    }

    /// Its use count when saved.
    pub fn use_count(&self) -> u32 {
        self.rec.view.use_count()
    }

    /// Whether its constructors had run when it was saved (a restore runs none; [`Registry::bring_up`]
    /// runs them for an extension saved before they had).
    pub fn initialised(&self) -> bool {
        self.rec.view.initialised_byte() == 1
    }

    /// Its memory blocks when saved: address, size and permission. A load that recorded fixups made each
    /// block a byte longer than its content.
    pub fn blocks(&self) -> impl Iterator<Item = (u64, u64, Permission)> + '_ {
        self.rec
            .blocks()
            .iter()
            .map(|b| (b.addr, b.size, b.permission))
    }

    /// Its exports when saved: name and address.
    pub fn exports(&self) -> impl Iterator<Item = (&'b [u8], u64)> + 'b {
        let view = self.rec.view;
        view.exports()
            .flatten()
            .map(move |e| (view.str(e.name), e.addr as u64))
    }

    /// How many constructors and destructors it has.
    pub fn hooks(&self) -> (usize, usize) {
        let v = &self.rec.view;
        (v.count(Table::Init), v.count(Table::Fini))
    }

    /// The size of its fixup table in bytes: the places a portable restore rewrites, a few bytes each (0 if
    /// it was loaded without recording them).
    pub fn fixup_bytes(&self) -> usize {
        self.rec.view.count(Table::Fixups)
    }

    /// The instruction set its object's attributes (or RISC-V `e_flags`) say it may use, as its load read
    /// them: a restore refuses it on a core that lacks part of it ([`Error::SnapshotCore`]).
    pub fn isa(&self) -> Option<Isa> {
        self.rec.view.needs(self.machine).and_then(|n| n.isa)
    }

    /// Its object's floating-point calling convention, if the object says: a restore refuses it on a core
    /// whose convention differs ([`Error::SnapshotCore`]).
    pub fn float_abi(&self) -> Option<FloatAbi> {
        self.rec.view.needs(self.machine).and_then(|n| n.float_abi)
    }

    /// Whether its object holds A32 (Arm-state) code, which a restore refuses where only Thumb code runs
    /// ([`Error::SnapshotCore`]).
    pub fn holds_a32(&self) -> bool {
        self.rec.view.a32_byte() == 1
    }

    /// The Arm profile other than M (`'A'`, `'R'` or `'S'`) its object's attributes say it was built for,
    /// which a restore refuses where only Thumb code of the M-profile runs ([`Error::SnapshotCore`]).
    pub fn arm_profile(&self) -> Option<char> {
        self.rec.view.needs(self.machine).and_then(|n| n.profile)
    }
}

impl<M: Memory> Inner<M> {
    /// Marks the extensions to save: `names` and their dependency closure, or all.
    fn mark(&mut self, names: Option<&[&str]>) -> Result<usize> {
        let all = names.is_none();
        for s in self.slots.iter_mut() {
            if let Some(e) = s.ext.as_mut() {
                // One whose destructors run is already on its way out: not saved.
                e.mark = all && e.phase != Phase::Destructing;
            }
        }
        if let Some(names) = names {
            for name in names {
                let id = self.find(name).ok_or_else(|| Error::NotLoaded {
                    name: String::from(*name),
                })?;
                if let Some(e) = self.slot_mut(id.index) {
                    e.mark = true;
                }
            }
            // Close over dependencies in one walk from the newest extension back: a dependency is
            // always loaded (or restored) before what depends on it, so it is reached after every
            // extension that can mark it.
            let mut at = self.last;
            while let Some(ext) = ext_at(&self.slots, at) {
                let (prev, mark, dep_count) =
                    (ext.prev, ext.mark, ext.linked.view().count(Table::Deps));
                if mark {
                    for k in 0..dep_count {
                        let dep = ext_at(&self.slots, at).and_then(|e| e.linked.view().dep(k));
                        if let Some(d) = dep.and_then(|d| self.slot_mut(d)) {
                            d.mark = true;
                        }
                    }
                }
                at = prev;
            }
        }
        let mut count = 0;
        for e in self.slots.iter().filter_map(|s| s.ext.as_ref()) {
            if e.mark {
                e.check_ready()?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Context index of a marked slot: its rank by load order among the marked ones (set by
    /// [`Inner::rank_marked`]).
    fn rank(&self, slot: u32) -> Option<u32> {
        ext_at(&self.slots, slot).filter(|e| e.mark).map(|e| e.rank)
    }

    /// Numbers the marked extensions in load order (one walk of the load-order list, no allocation).
    fn rank_marked(&mut self) {
        let mut at = self.first;
        let mut rank = 0;
        while let Some(ext) = self.slot_mut(at) {
            if ext.mark {
                ext.rank = rank;
                rank += 1;
            }
            at = ext.next;
        }
    }

    fn write_context(&mut self, opts: &SaveOptions<'_>, out: &mut Out<'_>) -> Result<()> {
        if opts.portable && !cfg!(feature = "portable") {
            return Err(Error::FeatureDisabled {
                feature: "portable",
                what: "saving a portable context (`SaveOptions::portable`)",
            });
        }
        // The width of the extensions held; an empty registry of undecided width saves the running
        // program's own.
        let pointer_size = self
            .pointer_size
            .unwrap_or(core::mem::size_of::<usize>() as u8);
        let count = self.mark(opts.names)?;
        let hashes = opts.content_hashes || opts.portable;
        let fingerprint = if opts.portable {
            self.builtins.fingerprint()
        } else {
            self.builtins.fingerprint_with_addresses()
        };
        let flags =
            if opts.portable { FLAG_PORTABLE } else { 0 } | if hashes { FLAG_HASHES } else { 0 };
        let start = out.pos;
        out.bytes(MAGIC)?;
        out.u16(CONTEXT_VERSION)?;
        out.u16(flags)?;
        out.u16(self.machine)?;
        out.u8(pointer_size)?;
        let core = SavedCore::of(self);
        out.u8(core.flags())?;
        out.u64(fingerprint)?;
        out.u32(u32::try_from(count).map_err(|_| Error::Internal("count too large"))?)?;
        out.u32(u32::from(core.isa.map_or(0, |isa| isa.bits())))?;
        let total_at = out.pos;
        out.u64(0)?; // total length, patched below
        let features = core.isa.map_or(0, |isa| isa.features());
        out.u64(features as u64)?;
        out.u64((features >> 64) as u64)?;
        self.rank_marked();
        for ext in self.in_load_order().map(|(_, e)| e).filter(|e| e.mark) {
            let l = ext.linked.view();
            if opts.portable {
                portable::check_movable(ext)?;
            }
            // The record as the registry keeps it, then what changes at save time: use count, initialised
            // flag, dependencies as context indexes, content hashes. The fixup table travels in every
            // context, so an extension restored in place can still be saved portably later.
            let at = out.pos;
            out.bytes(ext.linked.record.bytes())?;
            if let Some(h) = out.written(at).get_mut(..5) {
                h.copy_from_slice(&[0, 0, 0, 0, u8::from(ext.initialised)]);
                if let Some(count) = h.get_mut(..4) {
                    count.copy_from_slice(&ext.use_count.to_le_bytes());
                }
            }
            let layout = l.layout;
            for (k, slot) in l.deps().enumerate() {
                let rank = self
                    .rank(slot)
                    .ok_or_else(|| Error::Internal("dependency outside the saved closure"))?;
                if let Some(dst) = record::dep_offset(&layout, k)
                    .and_then(|o| out.written(at).get_mut(o..o.checked_add(4)?))
                {
                    dst.copy_from_slice(&rank.to_le_bytes());
                }
            }
            if opts.portable {
                portable::write_carried(&self.builtins, ext, out, at)?;
            } else if hashes {
                for (i, (block, _)) in ext.linked.blocks.iter().enumerate() {
                    // SAFETY: finalised blocks stay readable; the lock keeps the registry from freeing them.
                    let hash = checksum(unsafe { block.bytes() });
                    record::set_block_hash(out.written(at), &layout, i, hash);
                }
                for (_, addr, size) in in_place_regions(&l) {
                    // SAFETY: an in-place region lies in storage that lives as long as the program: the
                    // `&'static` bytes `load_static` loaded it from, or that `restore_static` was given and
                    // checked it against (a plain `restore` refuses in-place regions).
                    let bytes =
                        unsafe { core::slice::from_raw_parts(addr as usize as *const u8, size) };
                    out.u64(checksum(bytes))?;
                }
            }
        }
        let total = (out.pos - start + 8) as u64;
        if let Some(buf) = out.buf.as_deref_mut() {
            buf.get_mut(total_at..total_at + 8)
                .ok_or_else(|| Error::Internal("context header"))?
                .copy_from_slice(&total.to_le_bytes());
            let sum = checksum(
                buf.get(start..out.pos)
                    .ok_or_else(|| Error::Internal("context body"))?,
            );
            out.u64(sum)?;
        } else {
            out.u64(0)?;
        }
        Ok(())
    }
}

/// The blocks a restore took, per record, until they belong to restored extensions.
struct Taken {
    blocks: Vec<BlockList>,
}

impl Taken {
    /// One empty block list per record: empty lists hold nothing to give back if a later step fails.
    fn for_records(count: usize) -> Result<Taken> {
        let mut blocks: Vec<BlockList> = fallible::vec(count)?;
        blocks.resize_with(count, BlockList::default); // room made above
        Ok(Taken { blocks })
    }

    /// Gives every block back: adopted ones are disowned (their memory stays as it was), allocated ones freed.
    fn release<M: Memory>(self, memory: &mut M, adopted: bool) {
        for mut list in self.blocks {
            for (block, _) in list.take_all() {
                if adopted {
                    memory.disown(block);
                } else {
                    memory.free(block);
                }
            }
        }
    }
}

impl<M: Memory> Registry<M> {
    /// The exact size of the context [`Registry::save_into`] would write.
    pub fn context_size(&self, options: &SaveOptions<'_>) -> Result<usize> {
        let mut inner = self.inner.lock();
        let mut out = Out::measure();
        inner.write_context(options, &mut out)?;
        Ok(out.pos)
    }

    /// Saves a context into `buf` without allocating (e.g. straight into retained RAM before power-down)
    /// and returns its length, which [`Context::from_bytes`] needs too (or read it back from the bytes with
    /// [`Context::from_prefix`]).
    ///
    /// A buffer shorter than [`Registry::context_size`] is refused with [`Error::BufferTooSmall`], which
    /// says how much is needed. What was written into it by then never reads back as a context: the
    /// header's length or the checksum does not match, so a context kept there before is refused too.
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::default());
    /// let options = llext::SaveOptions::default();
    /// let mut retained = [0u8; 256];
    /// let len = registry.save_into(&options, &mut retained).unwrap();
    /// assert_eq!(len, registry.context_size(&options).unwrap());
    /// assert_eq!(llext::Context::from_bytes(&retained[..len]).unwrap().len(), 0);
    /// # }
    /// ```
    pub fn save_into(&self, options: &SaveOptions<'_>, buf: &mut [u8]) -> Result<usize> {
        let mut inner = self.inner.lock();
        let size = buf.len();
        let mut out = Out::filling(buf);
        inner.write_context(options, &mut out)?;
        out.short_of(size)
    }

    /// Saves a context into a new vector.
    ///
    /// Like [`Registry::save_into`] and [`Registry::context_size`], it is refused with [`Error::Busy`] while
    /// an extension it would save runs its constructors (they run outside the registry's lock); an
    /// extension whose destructors run is already on its way out and is left out.
    pub fn save(&self, options: &SaveOptions<'_>) -> Result<Vec<u8>> {
        let mut inner = self.inner.lock();
        let mut measure = Out::measure();
        inner.write_context(options, &mut measure)?;
        let mut bytes = fallible::vec(measure.pos)?;
        bytes.resize(measure.pos, 0);
        let size = bytes.len();
        let mut out = Out::filling(&mut bytes);
        inner.write_context(options, &mut out)?;
        // Measured under the same lock: it fits.
        out.short_of(size)
            .map_err(|_| Error::Internal("context size changed"))?;
        Ok(bytes)
    }

    /// Drops the registry's bookkeeping of every extension while keeping their memory as it is (each
    /// block is handed back with [`Memory::disown`]); destructors do not run. Use it after saving an
    /// in-place context, before the suspend. Returns how many extensions were forgotten. It forgets every
    /// extension, also those a context of [`SaveOptions::names`] left out: their memory stays retained
    /// too, so unload them first to free it.
    ///
    /// Handles of the forgotten extensions are stale from then on (a restore hands out new ones).
    /// Dropping the registry is not the same: it frees every block in its provider's books (bytes are
    /// not cleared, but the provider may hand them out again). A warm reboot, which loses the registry and
    /// its provider, restores through a new registry whose provider manages the same retained memory (an
    /// [`ArenaMemory`](crate::ArenaMemory) over the same bytes adopts what it has not handed out since it
    /// was made).
    ///
    /// Refused with [`Error::Busy`], changing nothing, while any extension runs its constructors or
    /// destructors: their code (or code they call in the extensions they depend on) may still run, and a
    /// provider may reuse disowned memory at once.
    pub fn forget_all(&self) -> Result<usize> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        for ext in inner.slots.iter().filter_map(|s| s.ext.as_ref()) {
            ext.check_ready()?;
        }
        let mut n = 0;
        for slot in inner.slots.iter_mut() {
            if let Some(mut ext) = slot.ext.take() {
                slot.generation = slot.generation.wrapping_add(1);
                for (block, _) in ext.linked.blocks.take_all() {
                    inner.memory.disown(block);
                }
                n += 1;
            }
        }
        inner.names.clear();
        inner.exports.clear();
        inner.free_from = 0;
        inner.first = crate::registry::NO_EXT;
        inner.last = crate::registry::NO_EXT;
        Ok(n)
    }

    /// Restores a saved context: no ELF parsing, no symbol lookup (but rebinding built-ins by name in
    /// portable contexts), no relocation. All or nothing: on any error the registry and memory are exactly
    /// as before. Restored extensions are not re-initialised; use counts and dependencies are as saved.
    /// One saved before its constructors ran ([`SavedExtension::initialised`] false: loaded with
    /// [`LoadOptions::bring_up`](crate::LoadOptions::bring_up) `false`, or by a registry for another
    /// machine, as a build host that links a device's extensions and ships the portable context does)
    /// comes back so: [`Registry::bring_up`] runs its constructors. Returns the new handles in the context's order (the order they were loaded in, which
    /// [`Context::names`] lists).
    ///
    /// A portable restore carries the extensions' memory as it was saved and rewrites only what the link
    /// wrote: addresses into the extensions move with their blocks and built-ins are rebound by name. A
    /// pointer-sized data word the link wrote an address into that the extension has changed since keeps
    /// what the extension made of it: moved with the saved block it now points into, rebound by name if
    /// it holds the saved address of a built-in the context names, or left as it was (NULL, or anything
    /// else: in a new process such a pointer is stale).
    /// Constructor and destructor addresses move with the code they lie in (the extension's own or a
    /// dependency's) or are rebound by name (a built-in); one in data, or anywhere else, is refused with
    /// [`Error::Snapshot`], in place too, as unload would call it.
    ///
    /// Words of writable data the link did not write, where the extension's code stored pointers at run
    /// time (a constructor's `p = &x`, a C++ object's vtable pointer, a plugin registering itself with a
    /// library), are known only by their values: with [`RestoreOptions::move_stored_pointers`] (the
    /// default), an aligned pointer-sized one holding an address inside a saved block moves with that
    /// block, and one holding the saved address of a built-in the context names is rebound by name. Other
    /// pointers the code stored — to heap memory its constructor allocated, say — are not rewritten. Such
    /// an extension's portable context must not be restored after the extensions it was saved from were
    /// unloaded, in this process either: their destructors have freed what the restored copy still points
    /// to, so its destructor frees it again on unload (a double free); nor into another process, where
    /// such a pointer is stale.
    ///
    /// Each record says what its extension's object needs of the core, as its load read it: an extension
    /// this registry's core cannot run is refused with [`Error::SnapshotCore`], as a load of its object
    /// would be, whatever the saving registry knew of its core.
    ///
    /// A build without the `portable` feature restores in-place contexts as described and refuses a
    /// portable one ([`Context::is_portable`]) with [`Error::FeatureDisabled`], changing nothing.
    ///
    /// An in-place context holding extensions that use sections in place from their storage
    /// ([`Storage::InPlace`](crate::Storage::InPlace)) is refused with [`Error::InPlace`]: nothing here says
    /// that storage is still there. Restore it with [`Registry::restore_static`], given that storage.
    pub fn restore(&self, context: &Context<'_>, options: &RestoreOptions) -> Result<Vec<ExtId>> {
        self.restore_impl(context, options, None)
    }

    /// [`Registry::restore`] for an in-place context whose extensions use sections in place from their
    /// storage ([`Storage::InPlace`](crate::Storage::InPlace) with [`Registry::load_static`]): `storage`
    /// holds the bytes they were loaded from, where they were — a firmware's extension partition, say. Each
    /// in-place region must lie inside one of them ([`Error::InPlace`] otherwise), and, if the context was
    /// saved with [`SaveOptions::content_hashes`] and [`RestoreOptions::verify_content`] is on, still hold
    /// the bytes it held when saved ([`Error::StorageChanged`] otherwise: an update rewrote the extension
    /// there, and its retained data and links belong to the old one). Other contexts restore as with
    /// [`Registry::restore`].
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// use llext::{Context, LoadOptions, RestoreOptions, SaveOptions, Storage};
    /// let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::new(llext::LIBC_EXPORTS));
    /// let storage: &'static [u8] = llext_fixtures::bytes("basic-gcc-O2-pic.o").leak();
    /// let load = LoadOptions { storage: Storage::InPlace, ..LoadOptions::default() };
    /// registry.load_static("basic", storage, &load).unwrap();
    /// let save = SaveOptions { content_hashes: true, ..SaveOptions::default() };
    /// let context = registry.save(&save).unwrap();
    /// registry.forget_all().unwrap();
    /// let context = Context::from_bytes(&context).unwrap();
    /// let ids = registry.restore_static(&context, &RestoreOptions::default(), &[storage]).unwrap();
    /// assert_eq!(registry.info(ids[0]).unwrap().name, "basic");
    /// # }
    /// ```
    pub fn restore_static(
        &self,
        context: &Context<'_>,
        options: &RestoreOptions,
        storage: &[&'static [u8]],
    ) -> Result<Vec<ExtId>> {
        self.restore_impl(context, options, Some(storage))
    }

    /// Frees the memory an in-place context's extensions kept across a suspend, without restoring them.
    /// Use it for a context that will never be restored — one refused with [`Error::ContentChanged`] or
    /// [`Error::StorageChanged`] after an update, say. Otherwise a provider keeps those blocks for a
    /// restore: the host pool for the rest of the process, an [`ArenaMemory`](crate::ArenaMemory) until a
    /// load finds nothing else that fits.
    ///
    /// Each block is taken back as a restore would take it ([`Memory::adopt`]), then freed
    /// ([`Memory::free_adopted`]). Destructors do not run, as the extensions are not loaded; to run them,
    /// restore the context and unload. All or nothing: a block the provider does not keep for a restore
    /// (the context was restored or discarded already, or belongs to other memory) is refused with the
    /// provider's error, and nothing is freed. Returns how many blocks were freed; a portable context
    /// keeps none, so it frees nothing. An [`ArenaMemory`](crate::ArenaMemory) made after a warm reboot
    /// adopts any range it has not handed out yet, and a discard leaves the ranges it frees so (the
    /// contexts of other extensions there, below or above them, still restore).
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// use llext::{Context, RestoreOptions, SaveOptions};
    /// let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::new(llext::LIBC_EXPORTS));
    /// registry.load("basic", &llext_fixtures::bytes("basic-gcc-O2-pic.o")).unwrap();
    /// let bytes = registry.save(&SaveOptions::default()).unwrap();
    /// registry.forget_all().unwrap();
    /// let context = Context::from_bytes(&bytes).unwrap();
    /// assert!(registry.discard(&context).unwrap() > 0);
    /// // Its memory is gone: the context restores no more.
    /// assert!(registry.restore(&context, &RestoreOptions::default()).is_err());
    /// # }
    /// ```
    pub fn discard(&self, context: &Context<'_>) -> Result<usize> {
        if context.portable {
            return Ok(0);
        }
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let mut records: Vec<Rec<'_>> = fallible::vec(context.len())?;
        // At most `len` records: room made above.
        records.extend(context.records());
        let mut taken = Taken::for_records(records.len())?;
        let options = RestoreOptions {
            verify_content: false,
            ..RestoreOptions::default()
        };
        if let Err(e) = take_memory(inner, context, &records, &mut taken, &options) {
            taken.release(&mut inner.memory, true);
            return Err(e);
        }
        let mut freed = 0;
        for mut list in taken.blocks {
            for (block, permission) in list.take_all() {
                inner.memory.free_adopted(block, permission);
                freed += 1;
            }
        }
        Ok(freed)
    }

    fn restore_impl(
        &self,
        context: &Context<'_>,
        options: &RestoreOptions,
        storage: Option<&[&'static [u8]]>,
    ) -> Result<Vec<ExtId>> {
        if context.portable && !cfg!(feature = "portable") {
            return Err(Error::FeatureDisabled {
                feature: "portable",
                what: "restoring a portable context",
            });
        }
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if context.machine != inner.machine {
            return Err(Error::SnapshotMismatch {
                what: "machine",
                expected: u64::from(inner.machine),
                found: u64::from(context.machine),
            });
        }
        let here = SavedCore::of(inner);
        // A core's ISA has a width too (`rv32imac`), which a registry for another machine knows no other
        // way before its first load: a load refuses RV64 code on an RV32 core, and so does a restore (an
        // empty context holds no code of either width).
        let isa_width = here
            .isa
            .map(|isa| isa.bits() / 8)
            .filter(|_| !context.is_empty());
        if let Some(own) = [inner.pointer_size, isa_width]
            .into_iter()
            .flatten()
            .find(|&own| own != context.pointer_size)
        {
            return Err(Error::SnapshotMismatch {
                what: "pointer width",
                expected: u64::from(own),
                found: u64::from(context.pointer_size),
            });
        }
        if !context.portable && context.fingerprint != inner.builtins.fingerprint_with_addresses() {
            return Err(Error::SnapshotMismatch {
                what: "set of built-in symbols (names or addresses changed)",
                expected: inner.builtins.fingerprint_with_addresses(),
                found: context.fingerprint,
            });
        }
        let mut records: Vec<Rec<'_>> = fallible::vec(context.len())?;
        // At most `len` records: room made above.
        records.extend(context.records());
        // A load's checks of each object against this core, as its record says what it needs, and the
        // storage its in-place sections lie in.
        for rec in &records {
            if let Some(e) = here.refuses(&rec.view, context.machine) {
                return Err(e);
            }
            check_storage(rec, storage, context.hashes && options.verify_content)?;
        }
        let mut ids: Vec<ExtId> = fallible::vec(records.len())?;
        let mut taken = Taken::for_records(records.len())?;
        // Room in the registry's tables (all or nothing), so inserting below never allocates; any later
        // failure shrinks them back.
        let export_total: usize = records.iter().map(|r| r.view.count(Table::Exports)).sum();
        let capacities = inner.capacities();
        inner.reserve_for(records.len(), export_total)?;
        let adopted = !context.portable;
        if let Err(e) = take_memory(inner, context, &records, &mut taken, options) {
            taken.release(&mut inner.memory, adopted);
            inner.shrink_back(capacities);
            // An in-place context restored while its extensions are still loaded fails on their retained
            // blocks, which the registry still owns: say why (only on this path, so a restore looks names up
            // once).
            for rec in &records {
                check_free(inner, &rec.view)?;
            }
            return Err(e);
        }
        // Records and registration. On failure every extension registered so far leaves the registry again
        // and every block goes back to its place in `taken` (nothing grows on the way out).
        let mut failed = None;
        for i in 0..records.len() {
            let Some(list) = taken.blocks.get_mut(i) else {
                failed = Some(Error::Internal("block list"));
                break;
            };
            match register(inner, &records, i, list, &ids, context) {
                Ok(id) => ids.push(id), // room for every record was made above
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            for (i, &id) in ids.iter().enumerate().rev() {
                if let (Some(ext), Some(list)) = (inner.remove(id), taken.blocks.get_mut(i)) {
                    *list = ext.linked.blocks;
                }
            }
            taken.release(&mut inner.memory, adopted);
            inner.shrink_back(capacities);
            return Err(e);
        }
        if !ids.is_empty() {
            inner.pointer_size = Some(context.pointer_size);
        }
        Ok(ids)
    }
}

/// The regions of a record used in place from storage: kind, address and size.
fn in_place_regions<'a>(
    v: &record::View<'a>,
) -> impl Iterator<Item = (RegionKind, u64, usize)> + 'a {
    v.table(Table::Regions)
        .chunks_exact(record::REGION_REC)
        .filter_map(|e| match record::region_kind(le8(e, 0)) {
            Some((kind, true)) => Some((
                kind,
                le64(e, record::REGION_ADDR_AT),
                le32(e, record::REGION_SIZE_AT) as usize,
            )),
            _ => None,
        })
}

/// Refuses `rec` if it uses sections in place from storage that is not among `storage` (`None`: a plain
/// restore, given none), or, with `verify`, whose bytes there changed since saving.
fn check_storage(rec: &Rec<'_>, storage: Option<&[&'static [u8]]>, verify: bool) -> Result<()> {
    let mut hashes = rec.storage_hashes.chunks_exact(8);
    for (kind, addr, size) in in_place_regions(&rec.view) {
        let refuse = |reason| Error::InPlace {
            extension: String::from(rec.view.name()),
            reason,
        };
        let Some(storage) = storage else {
            return Err(refuse(
                "its context holds sections used in place from its storage: restore it with \
                 `Registry::restore_static`, given that storage",
            ));
        };
        let bytes = storage.iter().find_map(|s| {
            let start = usize::try_from(addr.checked_sub(s.as_ptr() as u64)?).ok()?;
            s.get(start..start.checked_add(size)?)
        });
        let Some(bytes) = bytes else {
            return Err(refuse(
                "the storage it used sections from in place is not among those given to \
                 `Registry::restore_static` (it must be where the extension was loaded from)",
            ));
        };
        let saved = hashes.next().map(|h| le64(h, 0));
        if verify && saved.is_some_and(|h| h != checksum(bytes)) {
            return Err(Error::StorageChanged {
                extension: String::from(rec.view.name()),
                kind,
                addr,
            });
        }
    }
    Ok(())
}

/// Refuses block `bi` of `rec` if `bytes`, its content now, do not have the hash it was saved with.
fn check_content(rec: &Rec<'_>, bi: usize, bytes: &[u8]) -> Result<()> {
    match rec.blocks().get(bi) {
        Some(b) if checksum(bytes) != b.hash => Err(Error::ContentChanged {
            extension: String::from(rec.view.name()),
            block: bi,
            permission: b.permission,
            addr: b.addr,
        }),
        _ => Ok(()),
    }
}

/// Adopts the retained blocks of every record (in place) or allocates, fills, relocates and seals new
/// ones (portable), into `taken`.
fn take_memory<M: Memory>(
    inner: &mut Inner<M>,
    context: &Context<'_>,
    records: &[Rec<'_>],
    taken: &mut Taken,
    options: &RestoreOptions,
) -> Result<()> {
    if !context.portable {
        // In place: take over each retained block as it is, in the record's order.
        for (rec, list) in records.iter().zip(taken.blocks.iter_mut()) {
            for (bi, b) in rec.blocks().iter().enumerate() {
                let block = inner.memory.adopt(
                    usize::try_from(b.addr).map_err(|_| Short)?,
                    usize::try_from(b.size).map_err(|_| Short)?,
                    usize::try_from(b.token).map_err(|_| Short)?,
                    b.permission,
                )?;
                if let Err((block, _)) = list.push((block, b.permission)) {
                    inner.memory.disown(block);
                    return Err(Short.into());
                }
                if context.hashes && options.verify_content {
                    // SAFETY: the adopted block holds a sealed extension; nothing writes it meanwhile.
                    let bytes = list.last().map(|(block, _)| unsafe { block.bytes() });
                    if let Some(bytes) = bytes {
                        check_content(rec, bi, bytes)?;
                    }
                }
            }
        }
        return Ok(());
    }
    portable::take_memory(inner, context, records, taken, options)
}

/// Refuses a saved extension whose name the registry already has.
fn check_name_free<M: Memory>(inner: &Inner<M>, v: &record::View<'_>) -> Result<()> {
    match inner.find_bytes(v.name_bytes()) {
        Some(_) => Err(Error::AlreadyLoaded {
            name: String::from(v.name()),
        }),
        None => Ok(()),
    }
}

/// Refuses a saved extension whose name or one of whose exports the registry already has.
fn check_free<M: Memory>(inner: &Inner<M>, v: &record::View<'_>) -> Result<()> {
    check_name_free(inner, v)?;
    for e in v.exports() {
        let Some(e) = e else {
            return Err(Short.into());
        };
        let symbol = v.str(e.name);
        if let Some(owner) = inner.exporter_hashed(symbol, crate::symbols::hash_name(symbol)) {
            return Err(Error::DuplicateExport {
                extension: String::from(v.name()),
                symbol: String::from_utf8_lossy(symbol).into_owned(),
                owner,
            });
        }
    }
    Ok(())
}

/// Registers one restored extension (record `ri` of `records`): duplicate checks, its record (the one
/// allocation), registry entry. The blocks move from `blocks` into the registry only on success.
fn register<M: Memory>(
    inner: &mut Inner<M>,
    records: &[Rec<'_>],
    ri: usize,
    blocks: &mut BlockList,
    ids: &[ExtId],
    context: &Context<'_>,
) -> Result<ExtId> {
    let rec = records
        .get(ri)
        .ok_or_else(|| Error::Internal("record index"))?;
    let v = &rec.view;
    check_name_free(inner, v)?;
    let mut record = Record::copy_of(v)?;
    // Dependencies: context indexes become the slots the earlier records got.
    for (i, d) in v.deps().enumerate() {
        match ids.get(d as usize) {
            Some(id) => record.set_dep(i, id.index),
            None => return Err(Error::Internal("dependency order")),
        }
    }
    if context.portable {
        let ptr = usize::from(context.pointer_size);
        portable::move_record(inner, records, ri, blocks, ids, ptr, &mut record)?;
    } else {
        // In place nothing moves, but what unload will call is checked all the same.
        for t in [Table::Init, Table::Fini] {
            for addr in v.addrs(t).map(|a| a as u64) {
                if hook_block(records, ri, addr)?.is_none()
                    && !hook_stays(records, ri, addr, &inner.builtins)
                {
                    return Err(hook_outside_code());
                }
            }
        }
    }
    let (use_count, initialised) = (v.use_count(), v.initialised_byte() == 1);
    let linked = Linked {
        blocks: core::mem::take(blocks),
        record,
    };
    // Its exports against the built-ins', the other extensions' and each other's, as they go in.
    match inner.insert(linked, true) {
        Ok((id, Some(clash))) => {
            let (symbol, owner) = inner.clash_text(id.index, &clash);
            if let Some(ext) = inner.remove(id) {
                *blocks = ext.linked.blocks;
            }
            Err(Error::DuplicateExport {
                extension: String::from(v.name()),
                symbol,
                owner,
            })
        }
        Ok((id, None)) => {
            if let Some(ext) = inner
                .slots
                .get_mut(id.index as usize)
                .and_then(|s| s.ext.as_mut())
            {
                ext.use_count = use_count;
                ext.initialised = initialised;
            }
            Ok(id)
        }
        Err((e, linked)) => {
            *blocks = linked.blocks;
            Err(e)
        }
    }
}

/// The code block constructor or destructor `addr` of record `ri` lay in when saved, as `(record, block,
/// offset)`: the extension's own (record `ri`) or a dependency's; `None` if it lay in no block of theirs
/// (what a link puts in `.init_array` and `.fini_array` may also be a built-in function, or code used in
/// place from storage). One in a block of data is refused: an unload would call it.
fn hook_block(records: &[Rec<'_>], ri: usize, addr: u64) -> Result<Option<(usize, usize, u64)>> {
    let rec = records
        .get(ri)
        .ok_or_else(|| Error::Internal("record index"))?;
    let offset_in = |b: &BlockRec| addr.checked_sub(b.addr).filter(|&o| o < b.size);
    let deps = rec.view.deps().map(|d| d as usize);
    for r in core::iter::once(ri).chain(deps) {
        let Some(owner) = records.get(r) else {
            continue;
        };
        for (block, b) in owner.blocks().iter().enumerate() {
            if let Some(offset) = offset_in(b) {
                return match b.permission {
                    Permission::ReadExecute => Ok(Some((r, block, offset))),
                    _ => Err(hook_outside_code()),
                };
            }
        }
    }
    Ok(None)
}

/// True if constructor or destructor `addr` of record `ri`, which lay in no block of the extension or its
/// dependencies, stays valid in place: code of either used in place from storage, or a built-in function
/// of this program.
fn hook_stays(
    records: &[Rec<'_>],
    ri: usize,
    addr: u64,
    builtins: &crate::symbols::ExportTable,
) -> bool {
    let Some(rec) = records.get(ri) else {
        return false;
    };
    let in_place_code = |r: &Rec<'_>| {
        r.view.regions().any(|g| {
            g.in_place
                && g.kind == RegionKind::Text
                && usize::try_from(addr)
                    .ok()
                    .and_then(|a| a.checked_sub(g.addr))
                    .is_some_and(|o| o < g.size)
        })
    };
    let dep_in_place = || {
        rec.view
            .deps()
            .any(|d| records.get(d as usize).is_some_and(in_place_code))
    };
    // Any built-in but a variable: `Export::new` makes functions too (`Export::function` only adds call
    // stubs for code that cannot reach them), and a load takes a constructor naming either.
    let builtin = || {
        builtins
            .iter()
            .any(|e| !e.is_copyable() && e.addr() as u64 == addr)
    };
    in_place_code(rec) || dep_in_place() || builtin()
}

/// A constructor or destructor where no code of the extension's, its dependencies' or the built-ins' lies.
fn hook_outside_code() -> Error {
    Error::Snapshot {
        reason: "a constructor or destructor lies outside the code of its extension, of its \
                 dependencies and of the built-ins",
    }
}
