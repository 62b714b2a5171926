//! Context save and restore: bring loaded extensions back after a suspend without parsing, symbol lookup or
//! relocation (in place), or at new addresses in a new process (portable).
//!
//! # Format (version 1, little-endian)
//! A 40-byte header — magic `LLEXTCTX`, version, flags (portable, content hashes), `e_machine`, pointer
//! size, a fingerprint of the built-in export table, the extension count and the total length — then one
//! record per extension in load order, then a 64-bit checksum of everything before it. Records refer to
//! each other by index (a dependency always has a smaller index), never by pointer. A record holds the
//! name, use count, dependencies, the extension's string buffer, its blocks (address, size, alignment,
//! provider token, permission, content hash), regions, section map, exports, global symbols and
//! constructor/destructor addresses and the fixup table (empty if not recorded at load); portable contexts
//! add the blocks' bytes. Bit 7 of a region's or section's kind byte marks it as used in place from the
//! extension's storage ([`Storage::InPlace`](crate::Storage::InPlace)): such a region lies in no block, and
//! only in-place contexts hold them.

use alloc::string::String;
use alloc::vec::Vec;

use crate::arch::{with_backend, Inputs, Pairing, Relocator};
use hashbrown::HashTable;

use crate::error::{Error, Result};
use crate::fallible;
use crate::layout::RegionKind;
use crate::link::{
    Fixup, FixupKind, Linked, RegionRec, SectionRec, Str, SymRec, Target, FIXUP_REC, NO_SLOT,
};
use crate::memory::{Block, BlockRequest, Memory, Permission};
use crate::registry::{ext_at, ExtId, Inner, Registry, View};
use crate::symbols::hash_name;

const MAGIC: &[u8; 8] = b"LLEXTCTX";
/// The format version this build writes and reads.
pub const CONTEXT_VERSION: u16 = 1;
const HEADER: usize = 40;
const FLAG_PORTABLE: u16 = 1;
const FLAG_HASHES: u16 = 2;
const BLOCK_REC: usize = 8 + 8 + 8 + 8 + 1 + 8;
const REGION_REC: usize = 1 + 8 + 8 + 8;
const SECTION_REC: usize = 4 + 4 + 1 + 8 + 8;
const SYM_REC: usize = 4 + 4 + 8;

/// What to save.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaveOptions<'a> {
    /// Save these extensions and everything they depend on; `None` saves every loaded extension.
    pub names: Option<&'a [&'a str]>,
    /// Carry the blocks' bytes and fixups, so the context restores at any address (e.g. in a new process).
    pub portable: bool,
    /// Record a content hash per block, checked on restore (always on for portable contexts).
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

/// The checksum of contexts and the content hash of blocks: four independent multiply-rotate chains over
/// interleaved 8-byte words (so the CPU runs them in parallel), combined at the end. Every step is a
/// bijection of its chain's state, and the final combination is a bijection of each chain's state when the
/// others are fixed, so any change confined to one 8-byte word (in particular any single-bit flip) always
/// changes the result.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let step = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(31);
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        if let Some(dst) = w.get_mut(..c.len()) {
            dst.copy_from_slice(c);
        }
        u64::from_le_bytes(w)
    };
    let seed = 0x243f_6a88_85a3_08d3 ^ bytes.len() as u64;
    let mut lanes = [
        seed,
        seed.rotate_left(16),
        seed.rotate_left(32),
        seed.rotate_left(48),
    ];
    let mut blocks = bytes.chunks_exact(32);
    for b in &mut blocks {
        for (lane, c) in lanes.iter_mut().zip(b.chunks_exact(8)) {
            *lane = step(*lane, word(c));
        }
    }
    for (lane, c) in lanes.iter_mut().zip(blocks.remainder().chunks(8)) {
        *lane = step(*lane, word(c));
    }
    let [a, b, c, d] = lanes.map(|h| h ^ (h >> 32));
    a ^ b.rotate_left(16) ^ c.rotate_left(32) ^ d.rotate_left(48)
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
    fn len32(&mut self, n: usize) -> Result<()> {
        self.u32(u32::try_from(n).map_err(|_| Error::Internal("count too large"))?)
    }
}

/// A bounds-checked reader over context bytes.
#[derive(Clone)]
struct In<'b> {
    data: &'b [u8],
    pos: usize,
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

impl<'b> In<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short)?;
        let s = self.data.get(self.pos..end).ok_or(Short)?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, Short> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// `count` entries of `size` bytes each.
    fn table(&mut self, size: usize) -> Result<(usize, &'b [u8]), Short> {
        let count = self.u32()? as usize;
        let bytes = count.checked_mul(size).ok_or(Short)?;
        Ok((count, self.take(bytes)?))
    }
}

fn entries(table: &[u8], size: usize) -> impl Iterator<Item = In<'_>> {
    table.chunks_exact(size).map(|data| In { data, pos: 0 })
}

/// One saved block.
#[derive(Debug, Clone, Copy)]
struct BlockRec {
    addr: u64,
    size: u64,
    align: u64,
    token: u64,
    permission: Permission,
    hash: u64,
}

fn block_rec(mut r: In<'_>) -> Result<BlockRec, Short> {
    let addr = r.u64()?;
    let size = r.u64()?;
    let align = r.u64()?;
    let token = r.u64()?;
    let permission = *Permission::ALL.get(r.u8()? as usize).ok_or(Short)?;
    let hash = r.u64()?;
    if size == 0
        || !align.is_power_of_two()
        || addr % align != 0
        || addr.checked_add(size).is_none()
    {
        return Err(Short);
    }
    Ok(BlockRec {
        addr,
        size,
        align,
        token,
        permission,
        hash,
    })
}

/// One extension's record, validated, still borrowing the context bytes.
#[derive(Debug, Clone, Copy)]
struct Rec<'b> {
    name: &'b str,
    use_count: u32,
    initialised: bool,
    deps: &'b [u8],
    strings: &'b [u8],
    blocks: &'b [u8],
    regions: &'b [u8],
    sections: &'b [u8],
    exports: &'b [u8],
    globals: &'b [u8],
    init: &'b [u8],
    fini: &'b [u8],
    /// The fixup table was recorded at load (the extension can be saved portably).
    has_fixups: bool,
    fixups: &'b [u8],
    contents: &'b [u8],
}

impl<'b> Rec<'b> {
    fn blocks(&self) -> impl Iterator<Item = Result<BlockRec, Short>> + 'b {
        entries(self.blocks, BLOCK_REC).map(block_rec)
    }
    fn deps(&self) -> impl Iterator<Item = u32> + 'b {
        self.deps
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
    fn str(&self, s: Str) -> &'b [u8] {
        self.strings
            .get(s.start as usize..(s.start as usize).saturating_add(s.len as usize))
            .unwrap_or(&[])
    }
    fn syms(table: &'b [u8]) -> impl Iterator<Item = Result<(Str, u64), Short>> + 'b {
        entries(table, SYM_REC).map(|mut r| {
            Ok((
                Str {
                    start: r.u32()?,
                    len: r.u32()?,
                },
                r.u64()?,
            ))
        })
    }
    fn addrs(table: &'b [u8]) -> impl Iterator<Item = u64> + 'b {
        table.chunks_exact(8).map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        })
    }
}

fn check_str(strings: &[u8], s: Str) -> Result<()> {
    let end = (s.start as usize)
        .checked_add(s.len as usize)
        .ok_or(Short)?;
    if end > strings.len() {
        return Err(Short.into());
    }
    Ok(())
}

fn fixup_rec(r: In<'_>) -> Result<Fixup, Short> {
    Fixup::decode(r.data).ok_or(Short)
}

/// Splits one record off `r`. With `validate`, also checks every cross-reference (done once, by
/// [`Context::from_bytes`]); later walks over a validated context skip that.
fn parse_record<'b>(
    r: &mut In<'b>,
    index: usize,
    portable: bool,
    validate: bool,
) -> Result<Rec<'b>> {
    let name_len = r.u16()? as usize;
    let name = core::str::from_utf8(r.take(name_len)?).map_err(|_| Short)?;
    if name.is_empty() || name.contains('\0') {
        return Err(Short.into());
    }
    let use_count = r.u32()?;
    let initialised = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(Short.into()),
    };
    let (_, deps) = r.table(4)?;
    let strings_len = r.u32()? as usize;
    let strings = r.take(strings_len)?;
    let block_count = r.u8()? as usize;
    if block_count > Permission::ALL.len() {
        return Err(Short.into());
    }
    let blocks = r.take(block_count * BLOCK_REC)?;
    let (_, regions) = r.table(REGION_REC)?;
    let (_, sections) = r.table(SECTION_REC)?;
    let (_, exports) = r.table(SYM_REC)?;
    let (_, globals) = r.table(SYM_REC)?;
    let (_, init) = r.table(8)?;
    let (_, fini) = r.table(8)?;
    let has_fixups = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(Short.into()),
    };
    let (_, fixups) = r.table(FIXUP_REC)?;
    if portable && !has_fixups {
        return Err(Short.into());
    }
    let contents = if portable {
        let total = entries(blocks, BLOCK_REC)
            .map(block_rec)
            .try_fold(0usize, |acc, b| {
                acc.checked_add(usize::try_from(b?.size).map_err(|_| Short)?)
                    .ok_or(Short)
            })?;
        r.take(total)?
    } else {
        &[][..]
    };
    let rec = Rec {
        name,
        use_count,
        initialised,
        deps,
        strings,
        blocks,
        regions,
        sections,
        exports,
        globals,
        init,
        fini,
        has_fixups,
        fixups,
        contents,
    };
    if !validate {
        return Ok(rec);
    }
    // Validate every cross-reference once, here, so restore can trust the record.
    if use_count == 0 {
        return Err(Short.into());
    }
    for d in rec.deps() {
        if d as usize >= index {
            return Err(Error::SnapshotDependency {
                extension: String::from(name),
                index: d,
            });
        }
    }
    let mut block_sizes = [0u64; 3];
    for (i, b) in rec.blocks().enumerate() {
        if let Some(s) = block_sizes.get_mut(i) {
            *s = b?.size;
        }
    }
    // Regions lie inside the block of their permission, sections inside their region (a missing region
    // holds only empty sections), so every address derived from them stays in range.
    // In-place regions lie in the extension's storage, outside every block; portable contexts have none.
    let mut region_sizes = [[0u64; 2]; RegionKind::ALL.len()];
    for mut e in entries(regions, REGION_REC) {
        let (kind, in_place) = region_kind(e.u8()?)?;
        let (addr, size, align) = (e.u64()?, e.u64()?, e.u64()?);
        // A region's alignment is a power of two no stricter than its block's: saving derives the block
        // alignment from its regions, and it must still hold for the block's address.
        let inside = if in_place {
            !portable && addr.checked_add(size).is_some() && align.is_power_of_two()
        } else {
            rec.blocks().any(|b| {
                b.is_ok_and(|b| {
                    b.permission == kind.permission()
                        && align.is_power_of_two()
                        && align <= b.align
                        && addr >= b.addr
                        && (addr - b.addr)
                            .checked_add(size)
                            .is_some_and(|end| end <= b.size)
                })
            })
        };
        if !inside {
            return Err(Short.into());
        }
        if let Some(s) = region_sizes
            .get_mut(kind.index())
            .and_then(|s| s.get_mut(usize::from(in_place)))
        {
            *s = size;
        }
    }
    for mut e in entries(sections, SECTION_REC) {
        check_str(
            strings,
            Str {
                start: e.u32()?,
                len: e.u32()?,
            },
        )?;
        let (kind, in_place) = region_kind(e.u8()?)?;
        let (offset, size) = (e.u64()?, e.u64()?);
        let region = region_sizes
            .get(kind.index())
            .and_then(|s| s.get(usize::from(in_place)))
            .copied()
            .unwrap_or(0);
        if offset.checked_add(size).is_none_or(|end| end > region) {
            return Err(Short.into());
        }
    }
    for s in Rec::syms(exports).chain(Rec::syms(globals)) {
        check_str(strings, s?.0)?;
    }
    let dep_count = rec.deps().count();
    for f in entries(fixups, FIXUP_REC) {
        let f = fixup_rec(f)?;
        let size = block_sizes.get(f.block as usize).copied().unwrap_or(0);
        if u64::from(f.offset) >= size {
            return Err(Short.into());
        }
        match f.target {
            Target::Own { block, offset } => {
                if offset > block_sizes.get(block as usize).copied().unwrap_or(0)
                    || block as usize >= block_count
                {
                    return Err(Short.into());
                }
            }
            Target::Builtin { name } => check_str(strings, name)?,
            Target::Extension { dep, block, .. } => {
                if dep as usize >= dep_count || block as usize >= Permission::ALL.len() {
                    return Err(Error::SnapshotDependency {
                        extension: String::from(name),
                        index: dep,
                    });
                }
            }
            Target::Absolute(_) => {}
        }
    }
    Ok(rec)
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
}

impl<'b> Context<'b> {
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

    /// Checks the header, the checksum and every record of `bytes`.
    pub fn from_bytes(bytes: &'b [u8]) -> Result<Context<'b>> {
        let mut r = In {
            data: bytes,
            pos: 0,
        };
        let header = r.take(HEADER).map_err(|_| Error::Snapshot {
            reason: "shorter than a context header",
        })?;
        let mut h = In {
            data: header,
            pos: 0,
        };
        if h.take(8)? != MAGIC {
            return Err(Error::Snapshot {
                reason: "bad magic (not an llext context)",
            });
        }
        let version = h.u16()?;
        let flags = h.u16()?;
        let machine = h.u16()?;
        let pointer_size = h.u8()?;
        let _reserved = h.u8()?;
        let fingerprint = h.u64()?;
        let count = h.u32()?;
        let _reserved = h.u32()?;
        let total = h.u64()?;
        if total != bytes.len() as u64 {
            return Err(Error::Snapshot {
                reason: "length does not match the header (truncated or padded)",
            });
        }
        let body_end = bytes.len().checked_sub(8).ok_or(Short)?;
        let (body, sum) = bytes.split_at(body_end);
        let mut s = [0u8; 8];
        s.copy_from_slice(sum);
        if checksum(body) != u64::from_le_bytes(s) {
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
        if flags & !(FLAG_PORTABLE | FLAG_HASHES) != 0 || !matches!(pointer_size, 4 | 8) {
            return Err(Short.into());
        }
        let ctx = Context {
            bytes,
            machine,
            pointer_size,
            portable: flags & FLAG_PORTABLE != 0,
            hashes: flags & FLAG_HASHES != 0,
            fingerprint,
            count,
        };
        let mut r = In {
            data: body,
            pos: HEADER,
        };
        for i in 0..count as usize {
            parse_record(&mut r, i, ctx.portable, true)?;
        }
        if r.pos != body.len() {
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

    /// The saved extensions' names, in load order.
    pub fn names(&self) -> impl Iterator<Item = &'b str> + '_ {
        self.records().filter_map(|r| r.ok()).map(|r| r.name)
    }

    fn records(&self) -> impl Iterator<Item = Result<Rec<'b>>> + '_ {
        let body = self
            .bytes
            .get(..self.bytes.len().saturating_sub(8))
            .unwrap_or(&[]);
        let mut r = In {
            data: body,
            pos: HEADER,
        };
        let portable = self.portable;
        (0..self.count as usize).map(move |i| parse_record(&mut r, i, portable, false))
    }
}

/// Bit 7 of a region's or section's kind byte: used in place.
const IN_PLACE: u8 = 0x80;

fn region_index(kind: RegionKind, in_place: bool) -> u8 {
    kind.index() as u8 | if in_place { IN_PLACE } else { 0 }
}

/// A kind byte: the region kind, and whether it is used in place.
fn region_kind(byte: u8) -> Result<(RegionKind, bool), Short> {
    let kind = *RegionKind::ALL
        .get((byte & !IN_PLACE) as usize)
        .ok_or(Short)?;
    Ok((kind, byte & IN_PLACE != 0))
}

fn perm_index(p: Permission) -> u8 {
    Permission::ALL.iter().position(|&q| q == p).unwrap_or(0) as u8
}

impl<M: Memory> Inner<M> {
    /// Marks the extensions to save: `names` and their dependency closure, or all.
    fn mark(&mut self, names: Option<&[&str]>) -> Result<usize> {
        let all = names.is_none();
        for s in self.slots.iter_mut() {
            if let Some(e) = s.ext.as_mut() {
                e.mark = all;
            }
        }
        if let Some(names) = names {
            for name in names {
                let id = self.find(name).ok_or_else(|| Error::NotLoaded {
                    name: String::from(*name),
                })?;
                if let Some(e) = self
                    .slots
                    .get_mut(id.index as usize)
                    .and_then(|s| s.ext.as_mut())
                {
                    e.mark = true;
                }
            }
            // Close over dependencies until nothing changes (no allocation; a handful of passes).
            loop {
                let mut changed = false;
                for i in 0..self.slots.len() {
                    let deps_marked = match self.slots.get(i).and_then(|s| s.ext.as_ref()) {
                        Some(e) if e.mark => e.linked.deps.len(),
                        _ => continue,
                    };
                    for k in 0..deps_marked {
                        let Some(&d) = self
                            .slots
                            .get(i)
                            .and_then(|s| s.ext.as_ref())
                            .and_then(|e| e.linked.deps.get(k))
                        else {
                            continue;
                        };
                        if let Some(dep) =
                            self.slots.get_mut(d as usize).and_then(|s| s.ext.as_mut())
                        {
                            if !dep.mark {
                                dep.mark = true;
                                changed = true;
                            }
                        }
                    }
                }
                if !changed {
                    break;
                }
            }
        }
        Ok(self
            .slots
            .iter()
            .filter_map(|s| s.ext.as_ref())
            .filter(|e| e.mark)
            .count())
    }

    /// Context index of a marked slot: its rank by load order among the marked ones.
    fn rank(&self, slot: u32) -> Option<u32> {
        let seq = ext_at(&self.slots, slot).filter(|e| e.mark)?.seq;
        Some(
            self.slots
                .iter()
                .filter_map(|s| s.ext.as_ref())
                .filter(|e| e.mark && e.seq < seq)
                .count() as u32,
        )
    }

    /// Marked extensions in load order, without allocating.
    fn marked_in_order(&self) -> impl Iterator<Item = (u32, &crate::registry::Ext)> + '_ {
        let mut last: Option<u64> = None;
        core::iter::from_fn(move || {
            let next = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.ext.as_ref().map(|e| (i as u32, e)))
                .filter(|(_, e)| e.mark && last.is_none_or(|l| e.seq > l))
                .min_by_key(|(_, e)| e.seq)?;
            last = Some(next.1.seq);
            Some(next)
        })
    }

    fn write_context(
        &mut self,
        opts: &SaveOptions<'_>,
        out: &mut Out<'_>,
        pointer_size: u8,
    ) -> Result<()> {
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
        out.u8(0)?;
        out.u64(fingerprint)?;
        out.len32(count)?;
        out.u32(0)?;
        let total_at = out.pos;
        out.u64(0)?; // total length, patched below
        for (_, ext) in self.marked_in_order() {
            let l = &ext.linked;
            if opts.portable && !l.portable {
                return Err(Error::NotPortable {
                    extension: ext.name.clone(),
                });
            }
            if opts.portable && l.sections.iter().any(|s| s.in_place) {
                return Err(Error::InPlace {
                    extension: ext.name.clone(),
                    reason:
                        "a portable context cannot restore sections used in place from storage it \
                             does not carry (load it with `Storage::Copy` to save it portably)",
                });
            }
            let name = ext.name.as_bytes();
            out.u16(u16::try_from(name.len()).map_err(|_| Error::Internal("name length"))?)?;
            out.bytes(name)?;
            out.u32(ext.use_count)?;
            out.u8(u8::from(ext.initialised))?;
            out.len32(l.deps.len())?;
            for &d in &l.deps {
                out.u32(
                    self.rank(d)
                        .ok_or(Error::Internal("dependency outside the saved closure"))?,
                )?;
            }
            out.len32(l.strings.len())?;
            out.bytes(&l.strings)?;
            out.u8(l.blocks.len() as u8)?;
            for (block, permission) in &l.blocks {
                let align = l
                    .regions
                    .iter()
                    .filter(|r| r.kind.permission() == *permission)
                    .map(|r| r.align)
                    .max()
                    .unwrap_or(1);
                out.u64(block.addr() as u64)?;
                out.u64(block.size() as u64)?;
                out.u64(align as u64)?;
                out.u64(block.token() as u64)?;
                out.u8(perm_index(*permission))?;
                // SAFETY: finalised blocks stay readable and nothing writes them while the lock is held.
                let hash = if hashes {
                    checksum(unsafe { block.bytes() })
                } else {
                    0
                };
                out.u64(hash)?;
            }
            out.len32(l.regions.len())?;
            for r in &l.regions {
                out.u8(region_index(r.kind, r.in_place))?;
                out.u64(r.addr as u64)?;
                out.u64(r.size as u64)?;
                out.u64(r.align as u64)?;
            }
            out.len32(l.sections.len())?;
            for s in &l.sections {
                out.u32(s.name.start)?;
                out.u32(s.name.len)?;
                out.u8(region_index(s.kind, s.in_place))?;
                out.u64(s.offset as u64)?;
                out.u64(s.size as u64)?;
            }
            for table in [&l.exports, &l.globals] {
                out.len32(table.len())?;
                for s in table.iter() {
                    out.u32(s.name.start)?;
                    out.u32(s.name.len)?;
                    out.u64(s.addr as u64)?;
                }
            }
            for table in [&l.init, &l.fini] {
                out.len32(table.len())?;
                for &a in table.iter() {
                    out.u64(a as u64)?;
                }
            }
            // The fixup table travels in every context, so an extension restored in place can still be
            // saved portably later; only portable contexts carry the blocks' bytes.
            out.u8(u8::from(l.portable))?;
            {
                out.len32(l.fixups.len() / FIXUP_REC)?;
                out.bytes(&l.fixups)?;
            }
            if opts.portable {
                for (block, _) in &l.blocks {
                    // SAFETY: as above.
                    out.bytes(unsafe { block.bytes() })?;
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

/// Rolls back a restore's memory on any early return.
struct Taken<'m, M: Memory> {
    memory: &'m mut M,
    blocks: Vec<Vec<(Block, Permission)>>,
    adopted: bool,
}

impl<M: Memory> Drop for Taken<'_, M> {
    fn drop(&mut self) {
        for list in self.blocks.drain(..) {
            for (block, _) in list {
                if self.adopted {
                    self.memory.disown(block);
                } else {
                    self.memory.free(block);
                }
            }
        }
    }
}

impl<M: Memory> Registry<M> {
    /// Pointer width of saved contexts: the running program's own (contexts are restored where their code
    /// runs; the RISC-V backends share one `e_machine` for RV32 and RV64, so the machine alone cannot tell).
    const POINTER_SIZE: u8 = core::mem::size_of::<usize>() as u8;

    /// The exact size of the context [`Registry::save_into`] would write.
    pub fn context_size(&self, options: &SaveOptions<'_>) -> Result<usize> {
        let mut inner = self.inner.lock();
        let ptr = Self::POINTER_SIZE;
        let mut out = Out { buf: None, pos: 0 };
        inner.write_context(options, &mut out, ptr)?;
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
        let ptr = Self::POINTER_SIZE;
        let mut out = Out {
            buf: Some(buf),
            pos: 0,
        };
        inner.write_context(options, &mut out, ptr)?;
        Ok(out.pos)
    }

    /// Saves a context into a new vector.
    pub fn save(&self, options: &SaveOptions<'_>) -> Result<Vec<u8>> {
        let mut inner = self.inner.lock();
        let ptr = Self::POINTER_SIZE;
        let mut measure = Out { buf: None, pos: 0 };
        inner.write_context(options, &mut measure, ptr)?;
        let mut bytes = fallible::vec(measure.pos)?;
        bytes.resize(measure.pos, 0);
        let mut out = Out {
            buf: Some(&mut bytes),
            pos: 0,
        };
        inner.write_context(options, &mut out, ptr)?;
        Ok(bytes)
    }

    /// Drops the registry's bookkeeping of every extension while keeping their memory as it is (each
    /// block is handed back with [`Memory::disown`]); destructors do not run. Use it after saving an
    /// in-place context, before the suspend. Returns how many extensions were forgotten.
    pub fn forget_all(&self) -> usize {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let mut n = 0;
        for slot in inner.slots.iter_mut() {
            if let Some(ext) = slot.ext.take() {
                slot.generation = slot.generation.wrapping_add(1);
                for (block, _) in ext.linked.blocks {
                    inner.memory.disown(block);
                }
                n += 1;
            }
        }
        inner.names.clear();
        inner.exports.clear();
        n
    }

    /// Restores a saved context: no ELF parsing, no symbol lookup (but rebinding built-ins by name in
    /// portable contexts), no relocation. All or nothing: on any error the registry and memory are exactly
    /// as before. Restored extensions are not re-initialised; use counts and dependencies are as saved.
    pub fn restore(&self, context: &Context<'_>, options: &RestoreOptions) -> Result<Vec<ExtId>> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if context.machine != inner.machine {
            return Err(Error::SnapshotMismatch {
                what: "machine",
                expected: u64::from(inner.machine),
                found: u64::from(context.machine),
            });
        }
        let ptr = Self::POINTER_SIZE;
        if context.pointer_size != ptr {
            return Err(Error::SnapshotMismatch {
                what: "pointer width",
                expected: u64::from(ptr),
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
        let records: Vec<Rec<'_>> = fallible::collect(context.records())?;

        // Checks that need the registry, before touching memory. Names and exports new in this context are
        // indexed once (by record, entry), so the duplicate checks stay linear in the context's size.
        // Both tables get all their room up front, so they never grow (nor rehash) while filled.
        let mut seen_names: HashTable<u32> = HashTable::new();
        seen_names
            .try_reserve(records.len(), |_| 0)
            .map_err(|_| fallible::oom::<u32>(records.len()))?;
        let export_total: usize = records.iter().map(|r| r.exports.len() / SYM_REC).sum();
        let mut seen_exports: HashTable<(u32, u32)> = HashTable::new();
        seen_exports
            .try_reserve(export_total, |_| 0)
            .map_err(|_| fallible::oom::<(u32, u32)>(export_total))?;
        let export_name = |(r, e): (u32, u32)| -> &[u8] {
            records
                .get(r as usize)
                .and_then(|rec| {
                    Rec::syms(rec.exports)
                        .nth(e as usize)
                        .and_then(|x| x.ok())
                        .map(|x| rec.str(x.0))
                })
                .unwrap_or(&[])
        };
        for (i, rec) in records.iter().enumerate() {
            let h = hash_name(rec.name.as_bytes());
            let repeated = seen_names
                .find(h, |&r| {
                    records.get(r as usize).is_some_and(|x| x.name == rec.name)
                })
                .is_some();
            if repeated || inner.find(rec.name).is_some() {
                return Err(Error::AlreadyLoaded {
                    name: String::from(rec.name),
                });
            }
            seen_names.insert_unique(h, i as u32, |&r| {
                records
                    .get(r as usize)
                    .map_or(0, |x| hash_name(x.name.as_bytes()))
            });
            let view = View {
                builtins: &inner.builtins,
                slots: &inner.slots,
                exports: &inner.exports,
            };
            for (k, e) in Rec::syms(rec.exports).enumerate() {
                let name = rec.str(e?.0);
                let h = hash_name(name);
                let earlier = seen_exports
                    .find(h, |&key| export_name(key) == name)
                    .copied();
                let owner = crate::link::Resolver::exporter(&view, name).or_else(|| {
                    earlier
                        .and_then(|(r, _)| records.get(r as usize))
                        .map(|r| alloc::format!("extension `{}`", r.name))
                });
                if let Some(owner) = owner {
                    return Err(Error::DuplicateExport {
                        extension: String::from(rec.name),
                        symbol: String::from_utf8_lossy(name).into_owned(),
                        owner,
                    });
                }
                seen_exports
                    .insert_unique(h, (i as u32, k as u32), |&key| hash_name(export_name(key)));
            }
            if !context.portable {
                // In place nothing is rewritten: built-ins are checked as a whole by the fingerprint, and
                // the table is kept for a later portable save, which checks it again.
                continue;
            }
            for f in entries(rec.fixups, FIXUP_REC) {
                match fixup_rec(f)?.target {
                    Target::Builtin { name }
                        if inner.builtins.get_bytes(rec.str(name)).is_none() =>
                    {
                        return Err(Error::MissingBuiltin {
                            extension: String::from(rec.name),
                            symbol: String::from_utf8_lossy(rec.str(name)).into_owned(),
                        });
                    }
                    Target::Extension { dep, block, offset } => {
                        // The target must lie inside the dependency's saved block.
                        let size = rec
                            .deps()
                            .nth(dep as usize)
                            .and_then(|d| records.get(d as usize))
                            .and_then(|d| d.blocks().nth(block as usize))
                            .and_then(|b| b.ok())
                            .map(|b| b.size);
                        if size.is_none_or(|size| u64::from(offset) > size) {
                            return Err(Error::Snapshot {
                                reason: "a fixup targets a place outside another extension's block",
                            });
                        }
                    }
                    _ => {}
                }
            }
        }

        // Memory: adopt the retained blocks, or allocate and fill new ones.
        let mut taken = Taken {
            memory: &mut inner.memory,
            blocks: fallible::vec(records.len())?,
            adopted: !context.portable,
        };
        for _ in &records {
            taken.blocks.push(fallible::vec(Permission::ALL.len())?);
        }
        // Permission-major order: blocks of equal permission tend to come out adjacent, so the provider can
        // seal each run with one protection change (`finalize_all`).
        for permission in Permission::ALL {
            for (ri, rec) in records.iter().enumerate() {
                let mut contents = rec.contents;
                for (bi, b) in rec.blocks().enumerate() {
                    let b = b?;
                    let size = usize::try_from(b.size).map_err(|_| Short)?;
                    let src = if context.portable {
                        let (src, rest) = contents.split_at_checked(size).ok_or(Short)?;
                        contents = rest;
                        src
                    } else {
                        &[][..]
                    };
                    if b.permission != permission {
                        continue;
                    }
                    let block = if context.portable {
                        taken.memory.allocate(&BlockRequest {
                            size,
                            align: usize::try_from(b.align).map_err(|_| Short)?,
                            permission: b.permission,
                        })?
                    } else {
                        taken.memory.adopt(
                            usize::try_from(b.addr).map_err(|_| Short)?,
                            size,
                            usize::try_from(b.token).map_err(|_| Short)?,
                            b.permission,
                        )?
                    };
                    // Each block joins `taken` as soon as it exists, so any early return gives it back.
                    let list = taken
                        .blocks
                        .get_mut(ri)
                        .ok_or(Error::Internal("block list"))?;
                    list.push((block, b.permission));
                    let (block, _) = list.last_mut().ok_or(Error::Internal("block list"))?;
                    if context.portable {
                        // SAFETY: a fresh block, not finalised, not aliased.
                        unsafe { block.bytes_mut() }.copy_from_slice(src);
                    } else if context.hashes && options.verify_content {
                        // SAFETY: the adopted block holds a sealed extension; nothing writes it meanwhile.
                        if checksum(unsafe { block.bytes() }) != b.hash {
                            return Err(Error::ContentChanged {
                                extension: String::from(rec.name),
                                block: bi,
                            });
                        }
                    }
                }
            }
        }

        if context.portable {
            let machine = context.machine;
            with_backend!(machine, context.pointer_size == 8, A => apply_fixups::<A, M>(&records, &mut taken, &inner.builtins)?,
                _ => return Err(Error::Unsupported { what: "machine: no relocation backend in this build", value: u64::from(machine) }));
            let mut all = taken.blocks.iter().flatten().map(|(b, p)| (b, *p));
            taken.memory.finalize_all(&mut all)?;
        }

        // Bookkeeping: build every record's state, translating addresses when the blocks moved.
        // The blocks stay in `taken` until nothing can fail any more, so an inconsistent record found
        // here still gives every block back.
        let mut linked_all = fallible::vec(records.len())?;
        let mut old_new: Vec<Vec<(u64, u64, u64)>> = fallible::vec(records.len())?;
        for (rec, list) in records.iter().zip(&taken.blocks) {
            let moved = rec
                .blocks()
                .zip(list)
                .filter_map(|(b, (nb, _))| b.ok().map(|b| Ok((b.addr, b.size, nb.addr() as u64))));
            fallible::push(&mut old_new, fallible::collect(moved)?)?;
        }
        let portable = context.portable;
        // Where an address saved in record `own` is now. Its own blocks are searched first (they hold
        // nearly every address a record has), the others only for the rare address into another extension.
        let translate = |own: usize, addr: u64| -> u64 {
            if !portable {
                return addr; // in place nothing moved
            }
            // A block holding the address wins over one that ends there: blocks may be adjacent.
            for inclusive in [false, true] {
                let first = old_new.get(own).into_iter();
                let rest = old_new
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != own)
                    .map(|(_, l)| l);
                for list in first.chain(rest) {
                    for &(old, size, new) in list {
                        if addr >= old && (addr - old < size || (inclusive && addr - old == size)) {
                            return new + (addr - old);
                        }
                    }
                }
            }
            addr
        };
        for (ri, rec) in records.iter().enumerate() {
            let translate = |addr: u64| translate(ri, addr);
            let mut regions = fallible::vec(rec.regions.len() / REGION_REC)?;
            for mut e in entries(rec.regions, REGION_REC) {
                let (kind, in_place) = region_kind(e.u8()?)?;
                regions.push(RegionRec {
                    kind,
                    addr: translate(e.u64()?) as usize,
                    size: e.u64()? as usize,
                    align: e.u64()? as usize,
                    in_place,
                });
            }
            let mut sections = fallible::vec(rec.sections.len() / SECTION_REC)?;
            for mut e in entries(rec.sections, SECTION_REC) {
                let name = Str {
                    start: e.u32()?,
                    len: e.u32()?,
                };
                let (kind, in_place) = region_kind(e.u8()?)?;
                sections.push(SectionRec {
                    name,
                    kind,
                    offset: e.u64()? as usize,
                    size: e.u64()? as usize,
                    in_place,
                });
            }
            let syms = |table| -> Result<Vec<SymRec>> {
                fallible::collect(Rec::syms(table).map(|s| {
                    let (name, addr) = s?;
                    Ok(SymRec {
                        name,
                        addr: translate(addr) as usize,
                    })
                }))
            };
            let addrs =
                |table| fallible::collect(Rec::addrs(table).map(|a| Ok(translate(a) as usize)));
            linked_all.push(Linked {
                blocks: Vec::new(),
                strings: fallible::to_vec(rec.strings)?,
                regions,
                sections,
                exports: syms(rec.exports)?,
                globals: syms(rec.globals)?,
                init: addrs(rec.init)?,
                fini: addrs(rec.fini)?,
                deps: fallible::collect(rec.deps().map(Ok))?,
                // Self-contained (other extensions by dependency index): kept as saved.
                fixups: fallible::to_vec(rec.fixups)?,
                portable: rec.has_fixups,
            });
        }
        // The names, the handle list and room in the registry's tables: the last allocations. After them
        // nothing can fail, so the blocks leave `taken` for good.
        let names = fallible::collect(records.iter().map(|r| fallible::string(r.name)))?;
        let mut ids: Vec<ExtId> = fallible::vec(records.len())?;
        crate::registry::reserve_tables(
            &mut inner.slots,
            &mut inner.names,
            &mut inner.exports,
            records.len(),
            export_total,
        )?;
        for (linked, blocks) in linked_all
            .iter_mut()
            .zip(core::mem::take(&mut taken.blocks))
        {
            linked.blocks = blocks;
        }
        drop(taken);

        // Insert in order: dependencies come first, so their new slots are known. Room for all of it was
        // made before any memory was taken, so nothing here allocates or fails for want of memory.
        for ((rec, mut linked), name) in records.iter().zip(linked_all).zip(names) {
            for d in linked.deps.iter_mut() {
                *d = ids
                    .get(*d as usize)
                    .map(|id| id.index)
                    .ok_or(Error::Internal("dependency order"))?;
            }
            let id = inner.insert(name, linked)?;
            if let Some(ext) = inner
                .slots
                .get_mut(id.index as usize)
                .and_then(|s| s.ext.as_mut())
            {
                ext.use_count = rec.use_count;
                ext.initialised = rec.initialised;
            }
            ids.push(id);
        }
        Ok(ids)
    }
}

/// Portable restore: rewrites every recorded location for the new block addresses and built-ins.
fn apply_fixups<A: Relocator, M: Memory>(
    records: &[Rec<'_>],
    taken: &mut Taken<'_, M>,
    builtins: &crate::symbols::ExportTable,
) -> Result<()> {
    let ptr = A::POINTER_SIZE;
    let new_base = |taken: &Taken<'_, M>, rec: usize, block: usize| -> Result<u64> {
        taken
            .blocks
            .get(rec)
            .and_then(|l| l.get(block))
            .map(|(b, _)| b.addr() as u64)
            .ok_or_else(|| Short.into())
    };
    for (ri, rec) in records.iter().enumerate() {
        // New GOT and stub positions: the same offsets inside the extension's blocks as before.
        let region_new = |kind: RegionKind| -> Result<u64> {
            for mut e in entries(rec.regions, REGION_REC) {
                let k = RegionKind::ALL.get(e.u8()? as usize).copied();
                let addr = e.u64()?;
                if k == Some(kind) {
                    for (bi, b) in rec.blocks().enumerate() {
                        let b = b?;
                        // The block of the region's own permission: another may end where it starts.
                        if b.permission == kind.permission()
                            && addr >= b.addr
                            && addr - b.addr <= b.size
                        {
                            return Ok(new_base(taken, ri, bi)? + (addr - b.addr));
                        }
                    }
                }
            }
            Ok(0)
        };
        let got = region_new(RegionKind::Got)?;
        let stubs = region_new(RegionKind::Stubs)?;
        for f in entries(rec.fixups, FIXUP_REC) {
            let f = fixup_rec(f)?;
            let s = match f.target {
                Target::Own { block, offset } => new_base(taken, ri, block as usize)? + offset,
                Target::Builtin { name } => builtins.get_bytes(rec.str(name)).ok_or(Short)? as u64,
                Target::Extension { dep, block, offset } => {
                    let index = rec.deps().nth(dep as usize).ok_or(Short)?;
                    new_base(taken, index as usize, block as usize)? + u64::from(offset)
                }
                Target::Absolute(v) => v,
            };
            let p = new_base(taken, ri, f.block as usize)? + u64::from(f.offset);
            let block = taken
                .blocks
                .get_mut(ri)
                .and_then(|l| l.get_mut(f.block as usize))
                .ok_or(Short)?;
            // SAFETY: the block was allocated by this restore and is not finalised yet.
            let bytes = unsafe { block.0.bytes_mut() };
            let place = bytes.get_mut(f.offset as usize..).ok_or(Short)?;
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
                FixupKind::Relocation(r_type) if A::pairing(r_type) != Pairing::Alone => {
                    // A LO part needs its HI partner's value at the new addresses; replaying pairs is not
                    // implemented yet, so such contexts are refused rather than restored wrongly.
                    return Err(Error::Snapshot {
                        reason: "portable restore of HI/LO relocation pairs (RISC-V) is not supported yet",
                    });
                }
                FixupKind::Relocation(r_type) => {
                    let inputs = Inputs {
                        r_type,
                        s,
                        a: f.addend,
                        p,
                        z: f.size,
                        got_slot: (f.got_slot != NO_SLOT)
                            .then(|| got + u64::from(f.got_slot) * ptr as u64),
                        got,
                        stub: (f.stub != NO_SLOT)
                            .then(|| stubs + u64::from(f.stub) * A::STUB_SIZE as u64),
                        func: f.func,
                        hi: None,
                    };
                    A::apply(&inputs, place).map_err(|_| bad())?;
                }
            }
        }
    }
    Ok(())
}
