//! Portable contexts (the `portable` feature): what a save adds to carry an extension's blocks to new
//! addresses, and the restore that moves them there — allocating, copying, re-applying the fixup table
//! through the architecture backend and rebinding built-ins by name. A build without the feature has none
//! of this code: the saves and [`Registry::restore`](crate::Registry::restore) refuse portable contexts
//! before they would get here.

use alloc::string::String;
use alloc::vec::Vec;

use super::{
    checksum, hook_block, hook_outside_code, le64, Context, Out, Rec, RestoreOptions, Short, Taken,
};
use crate::arch::{with_backend, Inputs, Pairing, Problem, Relocator};
use crate::error::{Error, Result};
use crate::fallible;
use crate::layout::RegionKind;
use crate::link::fixups::{Fixup, FixupKind, Target};
use crate::link::{Str, NO_SLOT};
use crate::memory::{BlockList, BlockRequest, Memory, Permission};
use crate::pairs::HiValues;
use crate::record::{self, BlockRec, Home, Record, Table};
use crate::registry::{Ext, ExtId, Inner};
use crate::symbols::ExportTable;

/// Refuses to save `ext` portably: it recorded no fixups ([`Error::NotPortable`]), or it uses sections in
/// place from its storage ([`Error::InPlace`]).
pub(super) fn check_movable(ext: &Ext) -> Result<()> {
    let l = ext.linked.view();
    if !l.has_fixups() {
        return Err(Error::NotPortable {
            extension: String::from(ext.name()),
        });
    }
    if l.sections().any(|s| s.in_place) {
        return Err(Error::InPlace {
            extension: String::from(ext.name()),
            reason:
                "a portable context cannot restore sections used in place from storage it does \
                     not carry (load it with `Storage::Copy` to save it portably)",
        });
    }
    Ok(())
}

/// Writes what follows `ext`'s record (written from `at`) in a portable context: the address each built-in
/// its fixups name has here, then its blocks' bytes, whose hashes go into the record.
pub(super) fn write_carried(
    builtins: &ExportTable,
    ext: &Ext,
    out: &mut Out<'_>,
    at: usize,
) -> Result<()> {
    let l = ext.linked.view();
    let layout = l.layout;
    // The address of each built-in a fixup names, in fixup order: a restore compares the
    // words built-ins were linked into with them (an extension may have changed a word).
    let count_at = out.pos;
    out.u32(0)?;
    let mut count = 0u32;
    for f in l.fixups().flatten() {
        if let Target::Builtin { name } = f.target {
            out.u64(builtins.get_bytes(l.str(name)).unwrap_or(0) as u64)?;
            count = count
                .checked_add(1)
                .ok_or_else(|| Error::Internal("fixup count"))?;
        }
    }
    if let Some(at) = out.written(count_at).get_mut(..4) {
        at.copy_from_slice(&count.to_le_bytes());
    }
    for (i, (block, _)) in ext.linked.blocks.iter().enumerate() {
        let from = out.pos;
        // SAFETY: finalised blocks stay readable; the registry's lock, which the caller holds, keeps them
        // from being freed.
        out.bytes(unsafe { block.bytes() })?;
        // The hash of the very bytes the context carries: the extension's own threads may write
        // its data meanwhile, and a second read could differ. (Sizing passes write nothing.)
        let carried = out.buf.as_deref().and_then(|b| b.get(from..out.pos));
        if let Some(hash) = carried.map(checksum) {
            record::set_block_hash(out.written(at), &layout, i, hash);
        }
    }
    Ok(())
}

/// Allocates, fills, relocates and seals new blocks for every record of a portable context, into `taken`.
pub(super) fn take_memory<M: Memory>(
    inner: &mut Inner<M>,
    context: &Context<'_>,
    records: &[Rec<'_>],
    taken: &mut Taken,
    options: &RestoreOptions,
) -> Result<()> {
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
                if context.hashes && options.verify_content {
                    super::check_content(rec, bi, src)?;
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
    let stored = options.move_stored_pointers;
    with_backend!(machine, context.pointer_size == 8, A => apply_fixups::<A>(records, taken, &inner.builtins, stored)?,
        _ => return Err(Error::NoBackend { machine, bits: context.pointer_size.saturating_mul(8) }));
    let mut all = taken
        .blocks
        .iter()
        .flat_map(BlockList::iter)
        .map(|(b, p)| (b, *p));
    inner.memory.finalize_all(&mut all)
}

/// Moves every address of record `ri`'s copy `record` with the blocks a portable restore put it in
/// (`blocks`); `ids` are the extensions registered for the records before it.
pub(super) fn move_record<M: Memory>(
    inner: &Inner<M>,
    records: &[Rec<'_>],
    ri: usize,
    blocks: &BlockList,
    ids: &[ExtId],
    ptr: usize,
    record: &mut Record,
) -> Result<()> {
    let rec = records
        .get(ri)
        .ok_or_else(|| Error::Internal("record index"))?;
    let v = &rec.view;
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
    record.map_addresses(|addr, home| {
        if let Home::Entry(i) = home {
            // What the export table says now: the extension's own fixups rewrote it.
            let (block, offset) = export_field(records, ri, i, ptr)?;
            let (b, _) = blocks.get(usize::from(block)).ok_or(Short)?;
            // SAFETY: the restore's own finalised block, readable; nothing writes it meanwhile.
            let bytes = unsafe { b.bytes() };
            return Ok(word_at(bytes, offset as usize, ptr)?);
        }
        if home != Home::Hook {
            return Ok(translate(moved, addr, home));
        }
        match hook_block(records, ri, addr)? {
            Some((r, _, _)) if r == ri => Ok(translate(moved, addr, Home::Unknown)),
            Some((dep, block, offset)) => {
                let id = ids
                    .get(dep)
                    .ok_or_else(|| Error::Internal("dependency order"))?;
                let base = inner
                    .ext(*id)
                    .and_then(|e| e.linked.blocks.get(block))
                    .map(|(b, _)| b.addr() as u64)
                    .ok_or_else(|| Error::Internal("dependency block"))?;
                Ok(base + offset)
            }
            // Else at the saved address of a built-in a fixup of the extension names: rebound by name.
            // Not a variable (a copyable export is one): unload would call it.
            None => {
                let name = hook_builtin(rec, addr)?.ok_or_else(hook_outside_code)?;
                match inner.builtins.entry(v.str(name)) {
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
    Ok(())
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

impl Rec<'_> {
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

    /// The bytes of block `block` of record `rec`, to read.
    fn bytes_at(&self, rec: usize, block: u8) -> Result<&[u8], Short> {
        let (block, _) = self
            .blocks
            .get(rec)
            .and_then(|l| l.get(usize::from(block)))
            .ok_or(Short)?;
        // SAFETY: the blocks a restore took are its own; while this shared borrow of `taken` lasts
        // nothing writes them.
        Ok(unsafe { block.bytes() })
    }

    fn base(&self, rec: usize, block: usize) -> Result<u64, Short> {
        self.blocks
            .get(rec)
            .and_then(|l| l.get(block))
            .map(|(b, _)| b.addr() as u64)
            .ok_or(Short)
    }
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
        // (The export's index is checked against the dependency's export table as it is read.)
        Target::Export { dep, .. } => {
            if dep as usize >= v.count(Table::Deps) {
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

/// Where a saved address is now: moved with the block holding it — only block `i` or a block of the
/// permission if `home` says so — and a block holding it wins over one that ends there (blocks may be
/// adjacent); addresses outside every block (absolute symbols) stay.
fn translate(moved: &[(u64, u64, u64, Permission)], addr: u64, home: Home) -> u64 {
    for inclusive in [false, true] {
        for (i, &(old, size, new, p)) in moved.iter().enumerate() {
            let wanted = match home {
                Home::Block(b) => usize::from(b) == i,
                Home::Permission(want) => want == p,
                Home::Unknown | Home::Hook | Home::Entry(_) => true,
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
///
/// With `move_stored`, the words of writable data that no fixup wrote are then looked at too
/// ([`move_stored_pointers`]).
fn apply_fixups<A: Relocator>(
    records: &[Rec<'_>],
    taken: &mut Taken,
    builtins: &crate::symbols::ExportTable,
    move_stored: bool,
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
        // Every byte a fixup writes in this extension's blocks, when its writable data is to be looked at
        // for pointers its code stored there.
        let writable = rec
            .blocks()
            .iter()
            .any(|b| b.permission == Permission::ReadWrite);
        let mut covered = if move_stored && writable {
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
            let s = fixup_symbol(records, ri, &f, taken, builtins, A::POINTER_SIZE)?;
            let p = taken.base(ri, f.block as usize)? + u64::from(f.offset);
            let in_writable = rec
                .blocks()
                .get(f.block as usize)
                .is_some_and(|b| b.permission == Permission::ReadWrite);
            // A pointer in writable data, which the extension may have changed since it was loaded.
            let data_pointer =
                in_writable && matches!(f.kind, FixupKind::Relocation(t) if A::writes_pointer(t));
            // (A ULEB128 padded past 16 bytes counts as 16: only crafted objects have one.)
            let width = match f.kind {
                FixupKind::Stub => A::STUB_SIZE,
                FixupKind::Relocation(t) => A::max_write(t).min(16),
                FixupKind::GotSlot | FixupKind::CopySlot => A::POINTER_SIZE,
            };
            // Only writable data is looked at for stored pointers.
            if in_writable && !covered.bits.is_empty() {
                covered.mark(f.block, f.offset, width);
            }
            // Neither the place nor the target moved: the copied bytes are already right, and the place
            // is not touched. (Built-ins may have moved; HI/LO parts take values from a partner.)
            if self_still {
                let target_still = match f.target {
                    Target::Own { .. } | Target::Absolute(_) => true,
                    Target::Extension { dep, .. } => v
                        .dep(dep as usize)
                        .is_some_and(|d| unmoved(records, taken, d as usize)),
                    // A re-export may name a built-in, which may have moved.
                    Target::Builtin { .. } | Target::Export { .. } => false,
                };
                let alone = match f.kind {
                    FixupKind::Relocation(r_type) => A::pairing(r_type) == Pairing::Alone,
                    FixupKind::GotSlot | FixupKind::Stub | FixupKind::CopySlot => true,
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
                    put_word(place, new, ptr)?;
                }
                continue;
            }
            // Out of reach only where something moved: with the place and its target where they were
            // saved, a field that does not fit is a damaged context.
            let moved =
                !self_still || !matches!(f.target, Target::Own { .. } | Target::Absolute(_));
            let bad = |problem: Problem| match problem {
                Problem::Overflow { reason, .. } if moved => Error::SnapshotReach {
                    extension: String::from(v.name()),
                    reason,
                },
                _ => Error::Snapshot {
                    reason: "a fixup does not fit at the new addresses",
                },
            };
            match f.kind {
                FixupKind::GotSlot => put_word(place, s, ptr)?,
                FixupKind::Stub => A::write_stub(place, p, s).map_err(bad)?,
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
                    put_word(place, u64::from_le_bytes(value), ptr)?;
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
                    A::apply(&inputs, place).map_err(bad)?;
                }
            }
        }
        // One saved address per built-in a fixup names, no more.
        if builtins_named.checked_mul(8) != Some(rec.builtin_addrs.len()) {
            return Err(Short.into());
        }
        if !covered.bits.is_empty() {
            move_stored_pointers::<A>(records, ri, taken, &covered, &mut saved, builtins)?;
        }
    }
    Ok(())
}

/// A pointer in `rec`'s data that would point above 4 GiB, where its 32-bit word cannot.
fn pointer_beyond_32_bits(rec: &Rec<'_>) -> Error {
    Error::SnapshotReach {
        extension: String::from(rec.view.name()),
        reason: "a pointer in its data would point above 4 GiB, which its 32-bit word cannot hold",
    }
}

/// Moves the words of record `ri`'s writable blocks that no fixup wrote (`covered` marks what the fixups
/// write) but that hold an address inside a saved block of the context: pointers the extension's code
/// stored at run time — a constructor's `p = &x`, a C++ object's vtable pointer, a plugin registering
/// itself with a library. Each moves with the block it points into; one holding the saved address of a
/// built-in some fixup of the context names is rebound to it by name. Only aligned pointer-sized words
/// are looked at, and anything else (NULL, integers, pointers to heap memory) stays as saved. A word that
/// only looks like such an address — an integer that happens to equal one — is moved all the same; a
/// restore with [`RestoreOptions::move_stored_pointers`] off leaves every such word alone.
fn move_stored_pointers<A: Relocator>(
    records: &[Rec<'_>],
    ri: usize,
    taken: &mut Taken,
    covered: &Written,
    saved: &mut Saved,
    builtins: &ExportTable,
) -> Result<()> {
    let ptr = A::POINTER_SIZE;
    let rec = records
        .get(ri)
        .ok_or_else(|| Error::Internal("record index"))?;
    for (bi, b) in rec.blocks().iter().enumerate() {
        if b.permission != Permission::ReadWrite {
            continue;
        }
        let block = u8::try_from(bi).map_err(|_| Short)?;
        let words = u32::try_from(b.size).map_err(|_| Short)? / ptr as u32;
        for offset in (0..words).map(|w| w * ptr as u32) {
            if covered.any(block, offset, ptr) {
                continue;
            }
            let value = word_at(taken.bytes_at(ri, block)?, offset as usize, ptr)?;
            if value == 0 {
                continue;
            }
            let new = match saved.blocks.find(records, value)? {
                Some((r, b, within)) => taken.base(r, b)?.wrapping_add(within),
                None => match saved.builtins.find(records, value)? {
                    Some((r, name)) => records
                        .get(r)
                        .and_then(|owner| builtins.get_bytes(owner.view.str(name)))
                        .map_or(value, |addr| addr as u64),
                    None => continue,
                },
            };
            if new == value {
                continue;
            }
            if ptr < 8 && new > u64::from(u32::MAX) {
                return Err(pointer_beyond_32_bits(rec));
            }
            put_word(taken.bytes_from(ri, block, offset)?, new, ptr)?;
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

    /// The words of `bits` that the bit positions `range` lie in, each with the mask of those bits: a
    /// whole word at a time, as restores mark and look up every fixup's bytes.
    fn words(range: core::ops::Range<usize>) -> impl Iterator<Item = (usize, u64)> {
        let mut at = range.start;
        core::iter::from_fn(move || {
            let bit = at % 64;
            let n = range.end.checked_sub(at).filter(|&n| n > 0)?.min(64 - bit);
            let mask = u64::MAX.checked_shr(64 - n as u32).unwrap_or(0) << bit;
            let word = at / 64;
            at += n;
            Some((word, mask))
        })
    }

    fn any(&self, block: u8, offset: u32, width: usize) -> bool {
        Written::words(self.range(block, offset, width))
            .any(|(w, mask)| self.bits.get(w).is_some_and(|b| b & mask != 0))
    }

    fn mark(&mut self, block: u8, offset: u32, width: usize) {
        for (w, mask) in Written::words(self.range(block, offset, width)) {
            if let Some(b) = self.bits.get_mut(w) {
                *b |= mask;
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
    let rec = records
        .get(ri)
        .ok_or_else(|| Error::Internal("record index"))?;
    let old_block = rec.blocks().get(f.block as usize).ok_or(Short)?;
    // The word as saved: the restore copied the saved bytes into the new block.
    let value = word_at(taken.bytes_at(ri, f.block)?, f.offset as usize, ptr)?;
    // What the link wrote there, at the saved addresses.
    let s = saved_symbol(records, ri, f, saved_builtin)?;
    let p = old_block.addr.wrapping_add(u64::from(f.offset));
    let mut linked = [0u8; 8];
    let inputs = slots.inputs::<A>(f, r_type, s, p);
    let written = linked
        .get_mut(..ptr)
        .is_some_and(|field| A::apply(&inputs, field).is_ok());
    if written && u64::from_le_bytes(linked) == value {
        return Ok(None);
    }
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
        Some(new) if ptr < 8 && new > u64::from(u32::MAX) => Err(pointer_beyond_32_bits(rec)),
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
/// in a saved block of the context; `None` elsewhere. The block of the fixup's own target is looked at
/// first, then a block holding the address, then one ending there (even if a built-in happens to lie right
/// there: the block is looked up first). A block's very end is not its own here: loads that record fixups
/// leave a byte of slack after each block's content, so a pointer walked to the end of an array lies inside
/// its block, and a block's end can only be where another one starts (an arena packs them back to back).
fn moved_with_blocks(
    records: &[Rec<'_>],
    ri: usize,
    f: &Fixup,
    taken: &Taken,
    index: &mut SavedBlocks,
    addr: u64,
) -> Result<Option<u64>> {
    let rec = records
        .get(ri)
        .ok_or_else(|| Error::Internal("record index"))?;
    let home = match f.target {
        Target::Own { block, .. } => Some((ri, block)),
        Target::Extension { dep, block, .. } => {
            rec.view.dep(dep as usize).map(|d| (d as usize, block))
        }
        _ => None,
    };
    let within = |b: &BlockRec| {
        let offset = addr.wrapping_sub(b.addr);
        (addr >= b.addr && offset < b.size).then_some(offset)
    };
    if let Some((index, block)) = home {
        let b = records
            .get(index)
            .and_then(|r| r.blocks().get(usize::from(block)));
        if let Some(offset) = b.and_then(within) {
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
    ptr: usize,
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
        // The dependency came before this extension, so its own fixups rewrote its export table already.
        Target::Export { dep, index } => {
            let d = v.dep(dep as usize).ok_or(Short)? as usize;
            let (block, offset) = export_field(records, d, index, ptr)?;
            word_at(taken.bytes_at(d, block)?, offset as usize, ptr)?
        }
        Target::Absolute(v) => v,
    })
}

/// Where the address of export `index` of record `r` lies: the block and offset of its export-table
/// entry's address field (the table is a region, so it lies in the block of its permission).
fn export_field(records: &[Rec<'_>], r: usize, index: u32, ptr: usize) -> Result<(u8, u32)> {
    let missing = || Error::Snapshot {
        reason: "an export that moves with no block has no entry in its extension's export table",
    };
    let rec = records
        .get(r)
        .ok_or_else(|| Error::Internal("record index"))?;
    let table = rec
        .view
        .regions()
        .find(|t| t.kind == RegionKind::Exports && !t.in_place)
        .ok_or_else(missing)?;
    let stride = 2 * ptr as u64;
    if u64::from(index) >= table.size as u64 / stride.max(1) {
        return Err(missing());
    }
    let field = table.addr as u64 + u64::from(index) * stride + ptr as u64;
    for (bi, b) in rec.blocks().iter().enumerate() {
        let offset = field.wrapping_sub(b.addr);
        if b.permission == RegionKind::Exports.permission()
            && field >= b.addr
            && offset + ptr as u64 <= b.size
        {
            let block = u8::try_from(bi).map_err(|_| Short)?;
            return Ok((block, u32::try_from(offset).map_err(|_| Short)?));
        }
    }
    Err(missing())
}

/// The little-endian `ptr`-byte word at `offset` of `bytes`.
fn word_at(bytes: &[u8], offset: usize, ptr: usize) -> Result<u64, Short> {
    let mut word = [0u8; 8];
    let end = offset.checked_add(ptr).ok_or(Short)?;
    word.get_mut(..ptr)
        .ok_or(Short)?
        .copy_from_slice(bytes.get(offset..end).ok_or(Short)?);
    Ok(u64::from_le_bytes(word))
}

/// Writes `value` as the little-endian `ptr`-byte word at the start of `place`.
fn put_word(place: &mut [u8], value: u64, ptr: usize) -> Result<(), Short> {
    place
        .get_mut(..ptr)
        .ok_or(Short)?
        .copy_from_slice(value.to_le_bytes().get(..ptr).ok_or(Short)?);
    Ok(())
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
        Target::Export { dep, index } => {
            let d = records
                .get(v.dep(dep as usize).ok_or(Short)? as usize)
                .ok_or(Short)?;
            d.view.export(index as usize).ok_or(Short)?.addr as u64
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
    let rec = records
        .get(ri)
        .ok_or_else(|| Error::Internal("record index"))?;
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
                let s = fixup_symbol(records, ri, &f, taken, builtins, A::POINTER_SIZE)?;
                his.add_hi::<A>(&slots.inputs::<A>(&f, r_type, s, p))?;
            }
            Pairing::LoAtPlace => his.add_lo_place(p)?,
            Pairing::LoAtSymbol | Pairing::Alone => {}
        }
    }
    his.sort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Written;
    use alloc::vec::Vec;

    #[test]
    fn written_ranges_become_word_masks() {
        let words = |r: core::ops::Range<usize>| Written::words(r).collect::<Vec<_>>();
        assert_eq!(words(0..1), [(0, 1)]);
        assert_eq!(words(3..3), []);
        assert_eq!(words(usize::MAX..usize::MAX), []);
        assert_eq!(words(60..70), [(0, 0xf << 60), (1, 0x3f)]);
        assert_eq!(words(64..128), [(1, u64::MAX)]);
        assert_eq!(words(8..16), [(0, 0xff00)]);
        let mut w = Written {
            bits: alloc::vec![0; 3],
            starts: [0, 100, 0],
        };
        w.mark(1, 20, 8);
        assert!(w.any(1, 27, 1) && w.any(0, 120, 16) && !w.any(1, 28, 4) && !w.any(1, 12, 8));
        assert!(!w.any(7, 0, 8), "a block the record does not have");
    }
}
