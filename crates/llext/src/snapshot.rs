//! Context save and restore: bring loaded extensions back after a suspend without parsing, symbol lookup or
//! relocation (in place), or at new addresses in a new process (portable).
//!
//! # Format (version 6, little-endian)
//! A 56-byte header — magic `LLEXTCTX`, version, flags (portable, content hashes), `e_machine`, pointer
//! size, a fingerprint of the built-in export table, the extension count, the total length, and what the
//! saving registry's core runs as far as it knew (Thumb code only, the floating-point calling convention,
//! the instruction set's width and feature bits) — then one
//! record per extension in load order, then a 64-bit checksum of everything before it. A record is the
//! very encoding the registry keeps for a loaded extension (see the `record` module: name, use count,
//! dependencies, strings, blocks with address, size, alignment, provider token, permission and content
//! hash, regions, section map, exports and global symbols each with the block it moves with,
//! constructor/destructor addresses and the fixup table, LEB128-packed: a few bytes per fixup), so saving
//! copies it and an in-place restore copies it back. Records refer to each other by index (a dependency
//! always has a smaller index), never by pointer. Portable contexts follow each record with the addresses
//! the built-ins its fixups name had when saved (a u32 count, then a u64 per such fixup, in fixup order)
//! and with its blocks' bytes. Bit 7 of a region's or section's kind byte marks it as used in place from the
//! extension's storage ([`Storage::InPlace`](crate::Storage::InPlace)): such a region lies in no block, and
//! only in-place contexts hold them.

use alloc::string::String;
use alloc::vec::Vec;

use crate::arch::{with_backend, FloatAbi, Inputs, Isa, Pairing, Relocator};
use crate::error::{Error, Result};
use crate::fallible;
use crate::layout::RegionKind;
use crate::link::{Fixup, FixupKind, Linked, Str, SymRec, Target, NO_BLOCK, NO_SLOT};
use crate::memory::{BlockList, BlockRequest, Memory, Permission};
use crate::pairs::HiValues;
use crate::record::{self, BlockRec, Home, Record, Table};
use crate::registry::{ext_at, ExtId, Inner, Phase, Registry};

const MAGIC: &[u8; 8] = b"LLEXTCTX";
/// The format version this build writes and reads.
pub const CONTEXT_VERSION: u16 = 6;
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
    /// restore checks the retained block, a portable one the bytes the context carries.
    pub content_hashes: bool,
}

/// How to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Check each block against its saved content hash, when the context has them (default `true`).
    pub verify_content: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            verify_content: true,
        }
    }
}

/// What a registry's core runs, as far as the registry knows: what its loads checked objects against
/// ([`Registry::set_isa`], [`Registry::set_float_abi`], [`Registry::set_thumb_only`]). A context carries
/// the saving registry's ([`Context::saved_core`]), and a restore, which makes none of a load's checks,
/// refuses one saved where the core ran more, or passed floats another way, than here
/// ([`Error::SnapshotCore`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedCore {
    /// The instructions the core runs, if known.
    pub isa: Option<Isa>,
    /// The floating-point calling convention of its code, if known.
    pub float_abi: Option<FloatAbi>,
    /// It runs Thumb code of the M-profile only (a Cortex-M). Not compared: each extension's record says
    /// whether it holds A32 code, which a restore into a registry of Thumb code only refuses.
    pub thumb_only: bool,
}

/// Float-ABI codes in a context's header: the position here plus one (0: not known).
const FLOAT_ABIS: [FloatAbi; 5] = [
    FloatAbi::Soft,
    FloatAbi::Vfp,
    FloatAbi::Single,
    FloatAbi::Double,
    FloatAbi::Quad,
];

impl SavedCore {
    fn of<M>(inner: &Inner<M>) -> SavedCore {
        SavedCore {
            thumb_only: inner.thumb_code_only(),
            float_abi: inner.float_abi,
            isa: inner.isa.filter(|isa| isa.machine() == inner.machine),
        }
    }

    /// Header byte 15: bit 0 Thumb only, bits 4 to 7 the float ABI's code.
    fn flags(&self) -> u8 {
        let abi = self
            .float_abi
            .and_then(|abi| FLOAT_ABIS.iter().position(|&a| a == abi))
            .map_or(0, |i| i as u8 + 1);
        u8::from(self.thumb_only) | abi << 4
    }

    /// The core a header says (`flags` byte, ISA width and feature bits); an ISA this build does not know
    /// counts as unknown.
    fn read(machine: u16, flags: u8, bits: u8, features: u128) -> Result<SavedCore, Short> {
        let float_abi = match flags >> 4 {
            0 => None,
            code => Some(*FLOAT_ABIS.get(usize::from(code) - 1).ok_or(Short)?),
        };
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

    /// Why code a load on the `saved` core accepted may not run on this one, if it may not.
    fn refuses(&self, saved: &SavedCore) -> Option<Error> {
        if let (Some(here), Some(there)) = (self.isa, saved.isa) {
            if let Some(missing) = here.missing(&there) {
                return Some(Error::SnapshotCore {
                    what: "instruction set",
                    saved: there.key(),
                    here: alloc::format!("{here}, without {missing}"),
                });
            }
        }
        if let (Some(here), Some(there)) = (self.float_abi, saved.float_abi) {
            if here != there {
                return Some(Error::SnapshotCore {
                    what: "floating-point calling convention",
                    saved: String::from(there.key()),
                    here: String::from(here.key()),
                });
            }
        }
        None
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

impl Out<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<()> {
        let end = self
            .pos
            .checked_add(b.len())
            .ok_or(Error::Internal("context size"))?;
        if let Some(buf) = self.buf.as_deref_mut() {
            buf.get_mut(self.pos..end)
                .ok_or(Error::Snapshot {
                    reason: "buffer too small for the context (see `context_size`)",
                })?
                .copy_from_slice(b);
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
    builtin_addrs: &'b [u8],
    contents: &'b [u8],
    blocks: [BlockRec; 3],
    block_count: usize,
}

impl Rec<'_> {
    fn blocks(&self) -> &[BlockRec] {
        self.blocks.get(..self.block_count).unwrap_or(&[])
    }

    /// The saved address of the `n`th built-in a fixup names.
    fn builtin_addr(&self, n: usize) -> Result<u64, Short> {
        let at = n.checked_mul(8).ok_or(Short)?;
        Ok(le64(
            self.builtin_addrs
                .get(at..at.checked_add(8).ok_or(Short)?)
                .ok_or(Short)?,
            0,
        ))
    }
}

/// The record at the start of `rest` and the bytes that follow it (block contents in portable contexts).
fn split_record(rest: &[u8], portable: bool) -> Result<(Rec<'_>, usize), Short> {
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
    Ok((
        Rec {
            view,
            builtin_addrs,
            contents,
            blocks,
            block_count,
        },
        len,
    ))
}

/// Checks every cross-reference of record `index` once, so that restore can trust it.
fn validate(rec: &Rec<'_>, index: usize, portable: bool) -> Result<()> {
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
        || v.bytes.get(7) != Some(&0)
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
    // it ([`check_fixup`]): one pass over the table instead of two.
    Ok(())
}

/// Checks one fixup of `rec` against its record: its place inside a block, its target inside a block, the
/// strings or the dependency list. A portable restore calls it for every fixup before using it — in the
/// apply pass, also for those it then skips, and when it gathers HI parts — so a portably restored
/// registry never holds a fixup a later restore would refuse. (An in-place restore carries the table
/// without reading it; a portable restore of a context saved from it checks it then.)
fn check_fixup(rec: &Rec<'_>, f: &Fixup) -> Result<()> {
    let v = &rec.view;
    let blocks = rec.blocks();
    let block_size = |i: usize| blocks.get(i).map_or(0, |b| b.size);
    if u64::from(f.offset) >= block_size(f.block as usize) {
        return Err(Short.into());
    }
    // A copy slot holds a copy of a built-in's value, and only of a built-in's.
    if f.kind == FixupKind::CopySlot && !matches!(f.target, Target::Builtin { .. }) {
        return Err(Short.into());
    }
    match f.target {
        Target::Own { block, offset } => {
            if block as usize >= blocks.len() || offset > block_size(block as usize) {
                return Err(Short.into());
            }
        }
        Target::Builtin { name } => {
            let strings = v.count(Table::Strings) as u64;
            if u64::from(name.start) + u64::from(name.len) > strings {
                return Err(Short.into());
            }
        }
        Target::Extension { dep, block, .. } => {
            if dep as usize >= v.count(Table::Deps) || block as usize >= Permission::ALL.len() {
                return Err(Error::SnapshotDependency {
                    extension: String::from_utf8_lossy(v.name_bytes()).into_owned(),
                    index: dep,
                });
            }
        }
        Target::Absolute(_) => {}
    }
    Ok(())
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

    /// Checks the header, the checksum and every record of `bytes` (a portable context's fixups, and
    /// every context's constructor and destructor addresses, which may lie in a dependency or a built-in,
    /// are checked as [`Registry::restore`] uses them).
    pub fn from_bytes(bytes: &'b [u8]) -> Result<Context<'b>> {
        let header = bytes.get(..HEADER).ok_or(Error::Snapshot {
            reason: "shorter than a context header",
        })?;
        if header.get(..8) != Some(&MAGIC[..]) {
            return Err(Error::Snapshot {
                reason: "bad magic (not an llext context)",
            });
        }
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
            let (rec, len) = split_record(body.get(pos..).ok_or(Short)?, ctx.portable)?;
            validate(&rec, i, ctx.portable)?;
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

    /// What the saving registry knew of its core: a restore refuses the context where this registry's
    /// core lacks part of it ([`Error::SnapshotCore`]).
    pub fn saved_core(&self) -> SavedCore {
        self.core
    }

    /// The saved extensions' names, in load order.
    pub fn names(&self) -> impl Iterator<Item = &'b str> + '_ {
        self.records().map(|r| r.view.name())
    }

    /// The records of a validated context, in order.
    fn records(&self) -> impl Iterator<Item = Rec<'b>> + '_ {
        let body = self
            .bytes
            .get(..self.bytes.len().saturating_sub(8))
            .unwrap_or(&[]);
        let mut pos = HEADER;
        let portable = self.portable;
        (0..self.count as usize).map_while(move |_| {
            let (rec, len) = split_record(body.get(pos..)?, portable).ok()?;
            pos += len;
            Some(rec)
        })
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
            if opts.portable && !l.has_fixups() {
                return Err(Error::NotPortable {
                    extension: String::from(ext.name()),
                });
            }
            if opts.portable && l.sections().any(|s| s.in_place) {
                return Err(Error::InPlace {
                    extension: String::from(ext.name()),
                    reason:
                        "a portable context cannot restore sections used in place from storage it \
                             does not carry (load it with `Storage::Copy` to save it portably)",
                });
            }
            // An export outside the extension's blocks whose value was computed from an address that moves (a
            // built-in's or another extension's symbol re-exported under a name of its own, or its own
            // memory plus a far addend) would keep the saving process's address, and so would everything
            // linked against it. Constants (absolute symbols, 0 for a missing weak one) stay right anywhere.
            if opts.portable {
                let ptr = self.pointer_size.ok_or(Error::Internal("pointer width"))?;
                if let Some(e) = export_that_cannot_move(&l, &ext.linked.blocks, u64::from(ptr)) {
                    return Err(Error::ForeignExport {
                        extension: String::from(ext.name()),
                        symbol: String::from_utf8_lossy(l.str(e.name)).into_owned(),
                    });
                }
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
                    .ok_or(Error::Internal("dependency outside the saved closure"))?;
                if let Some(dst) = record::dep_offset(&layout, k)
                    .and_then(|o| out.written(at).get_mut(o..o.checked_add(4)?))
                {
                    dst.copy_from_slice(&rank.to_le_bytes());
                }
            }
            if opts.portable {
                // The address of each built-in a fixup names, in fixup order: a restore compares the
                // words built-ins were linked into with them (an extension may have changed a word).
                let count_at = out.pos;
                out.u32(0)?;
                let mut count = 0u32;
                for f in l.fixups().flatten() {
                    if let Target::Builtin { name } = f.target {
                        out.u64(self.builtins.get_bytes(l.str(name)).unwrap_or(0) as u64)?;
                        count = count.checked_add(1).ok_or(Error::Internal("fixup count"))?;
                    }
                }
                if let Some(at) = out.written(count_at).get_mut(..4) {
                    at.copy_from_slice(&count.to_le_bytes());
                }
                for (i, (block, _)) in ext.linked.blocks.iter().enumerate() {
                    let from = out.pos;
                    // SAFETY: finalised blocks stay readable; the lock keeps the registry from freeing them.
                    out.bytes(unsafe { block.bytes() })?;
                    // The hash of the very bytes the context carries: the extension's own threads may write
                    // its data meanwhile, and a second read could differ. (Sizing passes write nothing.)
                    let carried = out.buf.as_deref().and_then(|b| b.get(from..out.pos));
                    if let Some(hash) = carried.map(checksum) {
                        record::set_block_hash(out.written(at), &layout, i, hash);
                    }
                }
            } else if hashes {
                for (i, (block, _)) in ext.linked.blocks.iter().enumerate() {
                    // SAFETY: as above.
                    let hash = checksum(unsafe { block.bytes() });
                    record::set_block_hash(out.written(at), &layout, i, hash);
                }
            }
        }
        let total = (out.pos - start + 8) as u64;
        if let Some(buf) = out.buf.as_deref_mut() {
            buf.get_mut(total_at..total_at + 8)
                .ok_or(Error::Internal("context header"))?
                .copy_from_slice(&total.to_le_bytes());
            let sum = checksum(
                buf.get(start..out.pos)
                    .ok_or(Error::Internal("context body"))?,
            );
            out.u64(sum)?;
        } else {
            out.u64(0)?;
        }
        Ok(())
    }
}

/// The first export that moves with none of the extension's blocks although a fixup that does not hold a
/// fixed value wrote its entry in the export table (a portable restore moves only addresses of the
/// blocks). A fixup may write up to 8 bytes from its offset: any overlap with an entry's address field
/// counts, so a misaligned relocation cannot slip by. (An export with a block had its address field
/// written whole by the relocation against that block's symbol and by nothing else: the link makes sure.)
/// One pass over the fixups, and only when some export lies outside; nothing is allocated (`save_into`
/// must not).
fn export_that_cannot_move(l: &record::View<'_>, blocks: &BlockList, ptr: u64) -> Option<SymRec> {
    let outside = |e: &SymRec| e.block == NO_BLOCK;
    if !l.exports().flatten().any(|e| outside(&e)) || ptr == 0 {
        return None;
    }
    let table = l
        .regions()
        .find(|r| r.kind == RegionKind::Exports && !r.in_place)?;
    let (block, base) = crate::link::block_offset(blocks, table.addr as u64)?;
    let (base, stride) = (u64::from(base), 2 * ptr);
    for f in l.fixups().flatten() {
        if f.block != block || matches!(f.target, Target::Absolute(_)) {
            continue;
        }
        let (start, end) = (u64::from(f.offset), u64::from(f.offset) + 8);
        if end <= base {
            continue;
        }
        // The entries whose bytes [start, end) may touch: at most two.
        let first = start.saturating_sub(base) / stride;
        for k in first..=(end - 1 - base) / stride {
            let field = base + k * stride + ptr;
            if start < field + ptr && end > field {
                let e = usize::try_from(k).ok().and_then(|k| l.export(k));
                if let Some(e) = e.filter(outside) {
                    return Some(e);
                }
            }
        }
    }
    None
}

/// The blocks a restore took, per record, until they belong to restored extensions.
struct Taken {
    blocks: Vec<BlockList>,
}

impl Taken {
    /// The bytes of block `block` of record `rec`, from `offset` on.
    fn bytes_from(&mut self, rec: usize, block: u8, offset: u32) -> Result<&mut [u8], Short> {
        let (block, _) = self
            .blocks
            .get_mut(rec)
            .and_then(|l| l.get_mut(usize::from(block)))
            .ok_or(Short)?;
        // SAFETY: the blocks a restore took are its own and not finalised until every fixup is applied.
        let bytes = unsafe { block.bytes_mut() };
        bytes.get_mut(offset as usize..).ok_or(Short)
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

    fn base(&self, rec: usize, block: usize) -> Result<u64, Short> {
        self.blocks
            .get(rec)
            .and_then(|l| l.get(block))
            .map(|(b, _)| b.addr() as u64)
            .ok_or(Short)
    }
}

impl<M: Memory> Registry<M> {
    /// The exact size of the context [`Registry::save_into`] would write.
    pub fn context_size(&self, options: &SaveOptions<'_>) -> Result<usize> {
        let mut inner = self.inner.lock();
        let mut out = Out { buf: None, pos: 0 };
        inner.write_context(options, &mut out)?;
        Ok(out.pos)
    }

    /// Saves a context into `buf` without allocating (e.g. straight into retained RAM before power-down)
    /// and returns its length.
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
        let mut out = Out {
            buf: Some(buf),
            pos: 0,
        };
        inner.write_context(options, &mut out)?;
        Ok(out.pos)
    }

    /// Saves a context into a new vector.
    ///
    /// Like [`Registry::save_into`] and [`Registry::context_size`], it is refused with [`Error::Busy`] while
    /// an extension it would save runs its constructors (they run outside the registry's lock); an
    /// extension whose destructors run is already on its way out and is left out.
    pub fn save(&self, options: &SaveOptions<'_>) -> Result<Vec<u8>> {
        let mut inner = self.inner.lock();
        let mut measure = Out { buf: None, pos: 0 };
        inner.write_context(options, &mut measure)?;
        let mut bytes = fallible::vec(measure.pos)?;
        bytes.resize(measure.pos, 0);
        let mut out = Out {
            buf: Some(&mut bytes),
            pos: 0,
        };
        inner.write_context(options, &mut out)?;
        Ok(bytes)
    }

    /// Drops the registry's bookkeeping of every extension while keeping their memory as it is (each
    /// block is handed back with [`Memory::disown`]); destructors do not run. Use it after saving an
    /// in-place context, before the suspend. Returns how many extensions were forgotten. It forgets every
    /// extension, also those a context of [`SaveOptions::names`] left out: their memory stays retained,
    /// and only unloading them before is what frees it.
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
    /// Pointers the extension's code stored at run time (a heap buffer its constructor allocated, a
    /// pointer to its own static data) are not rewritten at all. Such an extension's portable context
    /// must not be restored after the extensions it was saved from were unloaded, in this process either:
    /// their destructors have freed what the restored copy still points to, so its destructor frees it
    /// again on unload (a double free). Nor into a process where its blocks land elsewhere: a pointer to
    /// its own data then points into whatever now lies at the old address.
    ///
    /// A build without the `portable` feature restores in-place contexts as described and refuses a
    /// portable one ([`Context::is_portable`]) with [`Error::FeatureDisabled`], changing nothing.
    pub fn restore(&self, context: &Context<'_>, options: &RestoreOptions) -> Result<Vec<ExtId>> {
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
        if let Some(own) = inner
            .pointer_size
            .filter(|&own| own != context.pointer_size)
        {
            return Err(Error::SnapshotMismatch {
                what: "pointer width",
                expected: u64::from(own),
                found: u64::from(context.pointer_size),
            });
        }
        let here = SavedCore::of(inner);
        if let Some(e) = here.refuses(&context.core) {
            return Err(e);
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
        // A32 code, which a Cortex-M cannot run: each record says whether its object held some.
        if here.thumb_only {
            if let Some(rec) = records.iter().find(|r| r.view.a32_byte() == 1) {
                return Err(Error::SnapshotCore {
                    what: "Arm code",
                    saved: alloc::format!("A32 (extension `{}` holds some)", rec.view.name()),
                    here: String::from("Thumb only (a Cortex-M)"),
                });
            }
        }
        let mut ids: Vec<ExtId> = fallible::vec(records.len())?;
        let mut taken = Taken {
            blocks: fallible::vec(records.len())?,
        };
        for _ in &records {
            // Empty lists hold nothing to give back if a later one cannot be made.
            taken.blocks.push(BlockList::default());
        }
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
            match register(inner, &records, i, list, &ids, context.portable) {
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
                    if bytes.is_some_and(|bytes| checksum(bytes) != b.hash) {
                        return Err(Error::ContentChanged {
                            extension: String::from(rec.view.name()),
                            block: bi,
                        });
                    }
                }
            }
        }
        return Ok(());
    }
    // Permission-major order: blocks of equal permission come out adjacent, so the provider can seal each
    // run with one protection change (`finalize_all`).
    for permission in Permission::ALL {
        for (ri, rec) in records.iter().enumerate() {
            let mut contents = rec.contents;
            for (bi, b) in rec.blocks().iter().enumerate() {
                let size = usize::try_from(b.size).map_err(|_| Short)?;
                let (src, rest) = contents.split_at_checked(size).ok_or(Short)?;
                contents = rest;
                if b.permission != permission {
                    continue;
                }
                // The carried bytes against the hash taken from the block when it was saved (before
                // anything is allocated for it).
                if context.hashes && options.verify_content && checksum(src) != b.hash {
                    return Err(Error::ContentChanged {
                        extension: String::from(rec.view.name()),
                        block: bi,
                    });
                }
                let Some(list) = taken.blocks.get_mut(ri) else {
                    return Err(Error::Internal("block list"));
                };
                let block = inner.memory.allocate(&BlockRequest {
                    size,
                    align: usize::try_from(b.align).map_err(|_| Short)?,
                    permission: b.permission,
                })?;
                // Each block joins `taken` as soon as it exists, so any early return gives it back. Blocks
                // are kept in the record's order: fixups and the record name them by index.
                let at = list.len();
                if let Err((block, _)) = list.push((block, b.permission)) {
                    inner.memory.free(block);
                    return Err(Short.into());
                }
                let Some((block, _)) = list.get_mut(at) else {
                    return Err(Error::Internal("block list"));
                };
                // SAFETY: a fresh block, not finalised, not aliased.
                unsafe { block.bytes_mut() }.copy_from_slice(src);
            }
        }
    }
    // Permission-major allocation pushed each record's blocks out of order: put them back in record order.
    for (rec, list) in records.iter().zip(taken.blocks.iter_mut()) {
        let order = |p: Permission| rec.blocks().iter().position(|b| b.permission == p);
        list.sort_by_key(|(_, p)| order(*p));
    }
    let machine = context.machine;
    with_backend!(machine, context.pointer_size == 8, A => apply_fixups::<A>(records, taken, &inner.builtins)?,
        _ => return Err(Error::NoBackend { machine, bits: context.pointer_size.saturating_mul(8) }));
    let mut all = taken
        .blocks
        .iter()
        .flat_map(BlockList::iter)
        .map(|(b, p)| (b, *p));
    inner.memory.finalize_all(&mut all)
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
    portable: bool,
) -> Result<ExtId> {
    let rec = records.get(ri).ok_or(Error::Internal("record index"))?;
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
    if portable {
        // Every address the record holds moves with the block that holds it (a region with the block of
        // its own permission); a constructor or destructor in a dependency's code moves with that block,
        // and one that is a built-in is rebound by name.
        let mut moved = [(0u64, 0u64, 0u64, Permission::ReadWrite); 3];
        for (i, ((old, (new, _)), m)) in rec
            .blocks()
            .iter()
            .zip(blocks.iter())
            .zip(moved.iter_mut())
            .enumerate()
        {
            *m = (old.addr, old.size, new.addr() as u64, old.permission);
            record.set_block(i, new.addr() as u64, new.token() as u64);
        }
        let moved = moved.get(..rec.blocks().len()).unwrap_or(&[]);
        let inner_ref: &Inner<M> = inner;
        record.map_addresses(|addr, home| {
            if home != Home::Hook {
                return Ok(translate(moved, addr, home));
            }
            match hook_block(records, ri, addr)? {
                Some((r, _, _)) if r == ri => Ok(translate(moved, addr, Home::Unknown)),
                Some((dep, block, offset)) => {
                    let id = ids.get(dep).ok_or(Error::Internal("dependency order"))?;
                    let base = inner_ref
                        .ext(*id)
                        .and_then(|e| e.linked.blocks.get(block))
                        .map(|(b, _)| b.addr() as u64)
                        .ok_or(Error::Internal("dependency block"))?;
                    Ok(base + offset)
                }
                // Else at the saved address of a built-in a fixup of the extension names: rebound by name.
                // Not a variable (a copyable export is one): unload would call it.
                None => {
                    let name = hook_builtin(rec, addr)?.ok_or_else(hook_outside_code)?;
                    match inner_ref.builtins.entry(v.str(name)) {
                        Some(e) if !e.is_copyable() => Ok(e.addr() as u64),
                        Some(_) => Err(hook_outside_code()),
                        None => Err(Error::MissingBuiltin {
                            extension: String::from(v.name()),
                            symbol: String::from_utf8_lossy(v.str(name)).into_owned(),
                        }),
                    }
                }
            }
        })?;
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
    let rec = records.get(ri).ok_or(Error::Internal("record index"))?;
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

/// The built-in one of `rec`'s fixups names whose saved address is `addr`, if any.
fn hook_builtin(rec: &Rec<'_>, addr: u64) -> Result<Option<Str>, Short> {
    let mut n = 0;
    for f in rec.view.fixups() {
        if let Target::Builtin { name } = f.ok_or(Short)?.target {
            if rec.builtin_addr(n)? == addr {
                return Ok(Some(name));
            }
            n += 1;
        }
    }
    Ok(None)
}

/// A constructor or destructor where no code of the extension's, its dependencies' or the built-ins' lies.
fn hook_outside_code() -> Error {
    Error::Snapshot {
        reason: "a constructor or destructor lies outside the code of its extension, of its \
                 dependencies and of the built-ins",
    }
}

/// Where a saved address is now: moved with the block holding it — only block `i` or a block of the
/// permission if `home` says so — and a block holding it wins over one that ends there (blocks may be
/// adjacent); addresses outside every block (absolute symbols) stay.
fn translate(moved: &[(u64, u64, u64, Permission)], addr: u64, home: Home) -> u64 {
    for inclusive in [false, true] {
        for (i, &(old, size, new, p)) in moved.iter().enumerate() {
            let wanted = match home {
                Home::Block(b) => usize::from(b) == i,
                Home::Permission(want) => want == p,
                Home::Unknown | Home::Hook => true,
            };
            if !wanted {
                continue;
            }
            if size > 0 && addr >= old && (addr - old < size || (inclusive && addr - old == size)) {
                return new + (addr - old);
            }
        }
    }
    addr
}

/// Portable restore: rewrites every recorded location for the new block addresses and built-ins.
///
/// HI/LO pairs (RISC-V `PCREL_HI20` with `PCREL_LO12_I/S`, `SET_ULEB128` with `SUB_ULEB128`) are replayed
/// as the linker applies them: the first paired fixup of an extension computes every HI part's value at the
/// new addresses into the linker's own table ([`HiValues`]), whatever the order of the fixups, and each LO
/// part then takes its partner's value from it.
fn apply_fixups<A: Relocator>(
    records: &[Rec<'_>],
    taken: &mut Taken,
    builtins: &crate::symbols::ExportTable,
) -> Result<()> {
    let ptr = A::POINTER_SIZE;
    // One table for every extension, emptied between them; it allocates only for extensions with pairs.
    let mut his = HiValues::default();
    let mut saved = Saved::default();
    for (ri, rec) in records.iter().enumerate() {
        let v = &rec.view;
        // Every block back at its saved address (a firmware restoring into a cleared heap of the same
        // layout gets this): the extension's places and its own targets did not move.
        let self_still = unmoved(records, taken, ri);
        // The bytes written so far, when some fixups are skipped: a skipped fixup's bytes are right only
        // until a fixup that is applied writes over them, and then it must be applied again after it (as
        // the link applied them in this order).
        let mut written = if self_still {
            Written::new(rec.blocks())?
        } else {
            Written::default()
        };
        // New GOT and stub positions: the same offsets inside the extension's blocks as before.
        let region_new = |kind: RegionKind| -> Result<u64> {
            let Some(r) = v.regions().find(|r| r.kind == kind && !r.in_place) else {
                return Ok(0);
            };
            let addr = r.addr as u64;
            for (bi, b) in rec.blocks().iter().enumerate() {
                // The block of the region's own permission: another may end where it starts.
                if b.permission == kind.permission() && addr >= b.addr && addr - b.addr <= b.size {
                    return Ok(taken.base(ri, bi)? + (addr - b.addr));
                }
            }
            Ok(0)
        };
        let slots = Slots {
            got: region_new(RegionKind::Got)?,
            stubs: region_new(RegionKind::Stubs)?,
        };
        let mut paired = false;
        // The places written afresh for the differences that follow them (SETn), made on first use.
        let mut fresh = Written::default();
        let mut builtins_named = 0usize;
        for f in v.fixups() {
            let f = f.ok_or(Short)?;
            check_fixup(rec, &f)?;
            // The address a built-in the fixup names had when saved (one per such fixup, in order).
            let saved_builtin = match f.target {
                Target::Builtin { .. } => {
                    builtins_named += 1;
                    rec.builtin_addr(builtins_named - 1)?
                }
                _ => 0,
            };
            let s = fixup_symbol(records, ri, &f, taken, builtins)?;
            let p = taken.base(ri, f.block as usize)? + u64::from(f.offset);
            // Neither the place nor the target moved: the copied bytes are already right, and the place
            // is not touched. (Built-ins may have moved; HI/LO parts take values from a partner.)
            // A pointer in writable data, which the extension may have changed since it was loaded.
            let data_pointer = matches!(f.kind, FixupKind::Relocation(t) if A::writes_pointer(t))
                && rec
                    .blocks()
                    .get(f.block as usize)
                    .is_some_and(|b| b.permission == Permission::ReadWrite);
            if self_still {
                let target_still = match f.target {
                    Target::Own { .. } | Target::Absolute(_) => true,
                    Target::Extension { dep, .. } => v
                        .dep(dep as usize)
                        .is_some_and(|d| unmoved(records, taken, d as usize)),
                    Target::Builtin { .. } => false,
                };
                let alone = match f.kind {
                    FixupKind::Relocation(r_type) => A::pairing(r_type) == Pairing::Alone,
                    FixupKind::GotSlot | FixupKind::Stub | FixupKind::CopySlot => true,
                };
                // (A ULEB128 padded past 16 bytes counts as 16: only crafted objects have one.)
                let width = match f.kind {
                    FixupKind::Stub => A::STUB_SIZE,
                    FixupKind::Relocation(t) => A::max_write(t).min(16),
                    FixupKind::GotSlot | FixupKind::CopySlot => A::POINTER_SIZE,
                };
                // (A changed pointer may now point into a dependency that moved: always looked at.)
                if target_still && alone && !data_pointer && !written.any(f.block, f.offset, width)
                {
                    continue;
                }
                written.mark(f.block, f.offset, width);
            }
            // A paired relocation's partner value, before the place is borrowed from `taken`.
            let hi = match f.kind {
                FixupKind::Relocation(r_type) if A::pairing(r_type) != Pairing::Alone => {
                    if !paired {
                        collect_his::<A>(records, ri, taken, builtins, &slots, &mut his)?;
                        paired = true;
                    }
                    let hi = his.partner::<A>(&slots.inputs::<A>(&f, r_type, s, p));
                    if hi.is_none() && A::pairing(r_type) != Pairing::Hi {
                        return Err(Error::Snapshot {
                            reason: "a LO relocation's HI partner (the PCREL_HI20 or GOT_HI20 at its \
                                     symbol, or the SET_ULEB128 at its place) is missing from the fixup table",
                        });
                    }
                    hi
                }
                _ => None,
            };
            // A pointer in writable data that the extension changed since it was loaded keeps what the
            // extension made of it.
            let changed = match f.kind {
                FixupKind::Relocation(r_type) if data_pointer => changed_pointer::<A>(
                    records,
                    ri,
                    &f,
                    saved_builtin,
                    taken,
                    &mut saved,
                    builtins,
                    &slots,
                    r_type,
                )?,
                _ => None,
            };
            let place = taken.bytes_from(ri, f.block, f.offset)?;
            if let Some(moved) = changed {
                if let Some(new) = moved {
                    place
                        .get_mut(..ptr)
                        .ok_or(Short)?
                        .copy_from_slice(new.to_le_bytes().get(..ptr).ok_or(Short)?);
                }
                continue;
            }
            let bad = || Error::Snapshot {
                reason: "a fixup does not fit at the new addresses",
            };
            match f.kind {
                FixupKind::GotSlot => {
                    let v = s.to_le_bytes();
                    place
                        .get_mut(..ptr)
                        .ok_or(Short)?
                        .copy_from_slice(v.get(..ptr).ok_or(Short)?);
                }
                FixupKind::Stub => A::write_stub(place, p, s).map_err(|_| bad())?,
                // A machine whose linker takes no copies has no copy slots to restore.
                FixupKind::CopySlot if !A::COPIES => return Err(Short.into()),
                FixupKind::CopySlot => {
                    // Only a built-in the restoring table still offers as copyable is read
                    // (`check_fixup` made sure the target is a built-in).
                    let Target::Builtin { name } = f.target else {
                        return Err(Short.into());
                    };
                    let name = v.str(name);
                    if !builtins.entry(name).is_some_and(|e| e.is_copyable()) {
                        return Err(Error::Snapshot {
                            reason: "a direct data reference reads a copy of a built-in that this \
                                     program's export table does not offer as copyable (`Export::copyable`)",
                        });
                    }
                    let value = crate::link::builtin_value(s, ptr)?;
                    place
                        .get_mut(..ptr)
                        .ok_or(Short)?
                        .copy_from_slice(value.get(..ptr).ok_or(Short)?);
                }
                FixupKind::Relocation(r_type) => {
                    let mut inputs = Inputs {
                        hi,
                        ..slots.inputs::<A>(&f, r_type, s, p)
                    };
                    if A::starts_difference(r_type) {
                        if fresh.bits.is_empty() {
                            fresh = Written::new(rec.blocks())?;
                        }
                        fresh.mark(f.block, f.offset, 1);
                    }
                    // The place holds what the linker added at the old addresses (e.g. the two halves of
                    // an ADD32/SUB32 label difference): add only how far S moved — unless a SETn was
                    // written afresh at the same place before, which this one subtracts from in full.
                    if A::accumulates(r_type) && !fresh.any(f.block, f.offset, 1) {
                        let old = saved_symbol(records, ri, &f, saved_builtin)?;
                        inputs.s = 0;
                        inputs.a = s.wrapping_sub(old) as i64;
                    }
                    A::apply(&inputs, place).map_err(|_| bad())?;
                }
            }
        }
        // One saved address per built-in a fixup names, no more.
        if builtins_named.checked_mul(8) != Some(rec.builtin_addrs.len()) {
            return Err(Short.into());
        }
    }
    Ok(())
}

/// One bit per byte of an extension's blocks: which bytes the fixups applied so far may have written
/// (each counted with the most its kind writes: [`Relocator::max_write`], a stub's or a slot's size).
#[derive(Default)]
struct Written {
    bits: Vec<u64>,
    /// The first bit of each block.
    starts: [usize; 3],
}

impl Written {
    fn new(blocks: &[BlockRec]) -> Result<Written> {
        let mut starts = [0usize; 3];
        let mut total = 0usize;
        for (start, b) in starts.iter_mut().zip(blocks) {
            *start = total;
            // Room past the end for a write that starts near it.
            total = total.saturating_add(b.size as usize).saturating_add(64);
        }
        let words = total / 64 + 1;
        let mut bits = fallible::vec(words)?;
        bits.resize(words, 0);
        Ok(Written { bits, starts })
    }

    /// The bit positions of `[offset, offset + width)` in `block`.
    fn range(&self, block: u8, offset: u32, width: usize) -> core::ops::Range<usize> {
        let start = self
            .starts
            .get(usize::from(block))
            .map_or(usize::MAX, |s| s.saturating_add(offset as usize));
        start..start.saturating_add(width)
    }

    fn any(&self, block: u8, offset: u32, width: usize) -> bool {
        self.range(block, offset, width).any(|i| {
            self.bits
                .get(i / 64)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
        })
    }

    fn mark(&mut self, block: u8, offset: u32, width: usize) {
        for i in self.range(block, offset, width) {
            if let Some(w) = self.bits.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
    }
}

/// True if every block of record `ri` came back at its saved address.
fn unmoved(records: &[Rec<'_>], taken: &Taken, ri: usize) -> bool {
    records.get(ri).is_some_and(|rec| {
        rec.blocks()
            .iter()
            .enumerate()
            .all(|(bi, b)| taken.base(ri, bi).is_ok_and(|new| new == b.addr))
    })
}

/// Where one extension's GOT and stubs are at the new addresses.
struct Slots {
    got: u64,
    stubs: u64,
}

impl Slots {
    /// The inputs of a relocation fixup whose symbol is now at `s` and whose place is now at `p`.
    fn inputs<A: Relocator>(&self, f: &Fixup, r_type: u32, s: u64, p: u64) -> Inputs {
        Inputs {
            r_type,
            s,
            a: f.addend,
            p,
            z: f.size,
            got_slot: (f.got_slot != NO_SLOT)
                .then(|| self.got + u64::from(f.got_slot) * A::POINTER_SIZE as u64),
            got: self.got,
            stub: (f.stub != NO_SLOT).then(|| self.stubs + u64::from(f.stub) * A::STUB_SIZE as u64),
            func: f.func,
            hi: None,
            absent: f.target == Target::Absolute(0),
            relink: true,
        }
    }
}

/// What became of the word a pointer-writing fixup (`Relocator::writes_pointer`) of record `ri` wrote in
/// writable data, when the extension changed it since it was loaded (the saved word is not what the link
/// wrote there at the saved addresses): `Some(Some(new))` if it points into a block of an extension of the
/// context, which it moves with, or if it holds the saved address of a built-in some fixup of the context
/// names, which it is rebound to by name; `Some(None)` if it stays as saved (NULL, or a pointer elsewhere,
/// such as to heap memory). `None` if it is unchanged: the fixup is applied as usual.
#[allow(clippy::too_many_arguments)]
fn changed_pointer<A: Relocator>(
    records: &[Rec<'_>],
    ri: usize,
    f: &Fixup,
    saved_builtin: u64,
    taken: &mut Taken,
    saved: &mut Saved,
    builtins: &crate::symbols::ExportTable,
    slots: &Slots,
    r_type: u32,
) -> Result<Option<Option<u64>>> {
    let ptr = A::POINTER_SIZE;
    let rec = records.get(ri).ok_or(Error::Internal("record index"))?;
    let old_block = rec.blocks().get(f.block as usize).ok_or(Short)?;
    // The word as saved: the restore copied the saved bytes into the new block.
    let mut word = [0u8; 8];
    let place = taken.bytes_from(ri, f.block, f.offset)?;
    word.get_mut(..ptr)
        .ok_or(Short)?
        .copy_from_slice(place.get(..ptr).ok_or(Short)?);
    // What the link wrote there, at the saved addresses.
    let s = saved_symbol(records, ri, f, saved_builtin)?;
    let p = old_block.addr.wrapping_add(u64::from(f.offset));
    let mut linked = [0u8; 8];
    let inputs = slots.inputs::<A>(f, r_type, s, p);
    let written = linked
        .get_mut(..ptr)
        .is_some_and(|field| A::apply(&inputs, field).is_ok());
    if written && linked == word {
        return Ok(None);
    }
    let value = u64::from_le_bytes(word);
    let new = match moved_with_blocks(records, ri, f, taken, &mut saved.blocks, value)? {
        Some(new) => Some(new),
        None if value != 0 => saved
            .builtins
            .find(records, value)?
            .and_then(|(r, name)| builtins.get_bytes(records.get(r)?.view.str(name)))
            .map(|addr| addr as u64),
        None => None,
    };
    match new {
        // A 32-bit word cannot hold an address above 4 GiB: refused, as the linker would.
        Some(new) if ptr < 8 && new > u64::from(u32::MAX) => Err(Error::Snapshot {
            reason: "a fixup does not fit at the new addresses",
        }),
        new => Ok(Some(new)),
    }
}

/// What a restore looks up by saved address, each index made on first use.
#[derive(Default)]
struct Saved {
    blocks: SavedBlocks,
    builtins: SavedBuiltins,
}

/// The saved address of every built-in the context's fixups name, sorted: a word an extension switched to
/// another built-in is found by its saved address in O(log n).
#[derive(Default)]
struct SavedBuiltins {
    /// (saved address, record, name in the record's strings, shared with a built-in of another name),
    /// sorted by address.
    sorted: Option<Vec<(u64, usize, Str, bool)>>,
}

impl SavedBuiltins {
    /// The record and name of the built-in whose saved address is `addr`; `None` if none, or if built-ins
    /// of different names had that address (aliases, one shared stub): which one the word meant is unknown.
    fn find(&mut self, records: &[Rec<'_>], addr: u64) -> Result<Option<(usize, Str)>> {
        if self.sorted.is_none() {
            let total = records.iter().map(|r| r.builtin_addrs.len() / 8).sum();
            let mut all = fallible::vec(total)?;
            for (ri, r) in records.iter().enumerate() {
                let mut n = 0;
                for f in r.view.fixups() {
                    if let Target::Builtin { name } = f.ok_or(Short)?.target {
                        let entry = (r.builtin_addr(n)?, ri, name, false);
                        fallible::push(&mut all, entry)?;
                        n += 1;
                    }
                }
            }
            fallible::sort_by(&mut all, |a, b| a.0 < b.0);
            // Mark every run of one address that holds more than one name, in one pass.
            let name_of =
                |e: &(u64, usize, Str, bool)| records.get(e.1).map_or(&[][..], |r| r.view.str(e.2));
            let mut start = 0;
            while let Some(&first) = all.get(start) {
                let run = all.get(start..).unwrap_or(&[]);
                let end = start + run.iter().take_while(|e| e.0 == first.0).count();
                let run = all.get(start..end).unwrap_or(&[]);
                let shared = run.iter().any(|e| name_of(e) != name_of(&first));
                for e in all.get_mut(start..end).unwrap_or(&mut []) {
                    e.3 = shared;
                }
                start = end;
            }
            self.sorted = Some(all);
        }
        let sorted = self.sorted.as_deref().unwrap_or(&[]);
        let at = sorted.partition_point(|b| b.0 < addr);
        Ok(sorted
            .get(at)
            .filter(|b| b.0 == addr && !b.3)
            .map(|&(_, r, name, _)| (r, name)))
    }
}

/// Where `addr`, a pointer the extension stored in the word of fixup `f` of record `ri`, is now if it lies
/// in a saved block of the context; `None` elsewhere. An address at the end of one block and the start of
/// the next is ambiguous: the block of the fixup's own target wins (a pointer walked to the end of the
/// array it was linked to), then a block holding the address, then one ending there (even if a built-in
/// happens to lie right there: the block is looked up first).
fn moved_with_blocks(
    records: &[Rec<'_>],
    ri: usize,
    f: &Fixup,
    taken: &Taken,
    index: &mut SavedBlocks,
    addr: u64,
) -> Result<Option<u64>> {
    let rec = records.get(ri).ok_or(Error::Internal("record index"))?;
    let home = match f.target {
        Target::Own { block, .. } => Some((ri, block)),
        Target::Extension { dep, block, .. } => {
            rec.view.dep(dep as usize).map(|d| (d as usize, block))
        }
        _ => None,
    };
    let within = |b: &BlockRec, end_too: bool| {
        let offset = addr.wrapping_sub(b.addr);
        (addr >= b.addr && (offset < b.size || (end_too && offset == b.size))).then_some(offset)
    };
    if let Some((index, block)) = home {
        let b = records
            .get(index)
            .and_then(|r| r.blocks().get(usize::from(block)));
        if let Some(offset) = b.and_then(|b| within(b, true)) {
            return Ok(Some(
                taken.base(index, usize::from(block))?.wrapping_add(offset),
            ));
        }
    }
    match index.find(records, addr)? {
        Some((r, b, offset)) => Ok(Some(taken.base(r, b)?.wrapping_add(offset))),
        None => Ok(None),
    }
}

/// Every saved block of a context by saved address, made on first use: finding where a changed pointer
/// points costs O(log n), however many records and changed words a context has.
#[derive(Default)]
struct SavedBlocks {
    /// (saved address, size, record, block), sorted by address.
    sorted: Option<Vec<(u64, u64, usize, usize)>>,
}

impl SavedBlocks {
    /// The record, block and offset of the saved block holding `addr` (the one starting last at or before
    /// it), or else of the one ending there.
    fn find(&mut self, records: &[Rec<'_>], addr: u64) -> Result<Option<(usize, usize, u64)>> {
        if self.sorted.is_none() {
            let total = records.iter().map(|r| r.blocks().len()).sum();
            let mut all = fallible::vec(total)?;
            for (ri, r) in records.iter().enumerate() {
                for (bi, b) in r.blocks().iter().enumerate() {
                    all.push((b.addr, b.size, ri, bi));
                }
            }
            fallible::sort_by(&mut all, |a, b| a.0 < b.0);
            self.sorted = Some(all);
        }
        let sorted = self.sorted.as_deref().unwrap_or(&[]);
        let at = sorted.partition_point(|b| b.0 <= addr);
        let Some(&(start, size, r, b)) = at.checked_sub(1).and_then(|i| sorted.get(i)) else {
            return Ok(None);
        };
        let offset = addr - start;
        Ok((offset <= size).then_some((r, b, offset)))
    }
}

/// Where the target of fixup `f` of record `ri` is now: moved with its block, rebound by name (built-ins),
/// or fixed.
fn fixup_symbol(
    records: &[Rec<'_>],
    ri: usize,
    f: &Fixup,
    taken: &Taken,
    builtins: &crate::symbols::ExportTable,
) -> Result<u64> {
    let Some(Rec { view: v, .. }) = records.get(ri) else {
        return Err(Error::Internal("record index"));
    };
    Ok(match f.target {
        Target::Own { block, offset } => taken
            .base(ri, block as usize)?
            .checked_add(offset)
            .ok_or(Short)?,
        Target::Builtin { name } => match builtins.get_bytes(v.str(name)) {
            Some(addr) => addr as u64,
            None => {
                return Err(Error::MissingBuiltin {
                    extension: String::from(v.name()),
                    symbol: String::from_utf8_lossy(v.str(name)).into_owned(),
                })
            }
        },
        Target::Extension { dep, block, offset } => {
            let index = v.dep(dep as usize).ok_or(Short)? as usize;
            // The target must lie inside the dependency's saved block.
            let size = records
                .get(index)
                .and_then(|d| d.blocks().get(block as usize))
                .map(|b| b.size);
            if size.is_none_or(|size| u64::from(offset) > size) {
                return Err(Error::Snapshot {
                    reason: "a fixup targets a place outside another extension's block",
                });
            }
            taken.base(index, block as usize)? + u64::from(offset)
        }
        Target::Absolute(v) => v,
    })
}

/// Where the target of fixup `f` of record `ri` was when the context was saved (the saved block addresses
/// are those its bytes were linked at; `saved_builtin` is a built-in's, from the context).
fn saved_symbol(records: &[Rec<'_>], ri: usize, f: &Fixup, saved_builtin: u64) -> Result<u64> {
    let Some(rec) = records.get(ri) else {
        return Err(Error::Internal("record index"));
    };
    let v = &rec.view;
    let block_addr = |rec: &Rec<'_>, block: u8| -> Result<u64, Short> {
        Ok(rec.blocks().get(block as usize).ok_or(Short)?.addr)
    };
    Ok(match f.target {
        Target::Own { block, offset } => block_addr(rec, block)?.wrapping_add(offset),
        Target::Extension { dep, block, offset } => {
            let index = v.dep(dep as usize).ok_or(Short)? as usize;
            let d = records.get(index).ok_or(Short)?;
            block_addr(d, block)?.wrapping_add(u64::from(offset))
        }
        Target::Absolute(v) => v,
        Target::Builtin { .. } => saved_builtin,
    })
}

/// Fills `his` (emptied first) with the HI parts of record `ri`'s fixups at the new addresses, and the
/// places of its LO parts that pair by place, as the linker's [`HiValues::collect`] does from the object.
fn collect_his<A: Relocator>(
    records: &[Rec<'_>],
    ri: usize,
    taken: &Taken,
    builtins: &crate::symbols::ExportTable,
    slots: &Slots,
    his: &mut HiValues,
) -> Result<()> {
    his.clear();
    let rec = records.get(ri).ok_or(Error::Internal("record index"))?;
    for f in rec.view.fixups() {
        let f = f.ok_or(Short)?;
        // This walk runs ahead of the apply pass: every fixup it uses is checked here first.
        check_fixup(rec, &f)?;
        let FixupKind::Relocation(r_type) = f.kind else {
            continue;
        };
        let p = taken.base(ri, f.block as usize)? + u64::from(f.offset);
        match A::pairing(r_type) {
            Pairing::Hi => {
                let s = fixup_symbol(records, ri, &f, taken, builtins)?;
                his.add_hi::<A>(&slots.inputs::<A>(&f, r_type, s, p))?;
            }
            Pairing::LoAtPlace => his.add_lo_place(p)?,
            Pairing::LoAtSymbol | Pairing::Alone => {}
        }
    }
    his.sort();
    Ok(())
}
