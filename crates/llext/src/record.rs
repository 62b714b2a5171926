//! The extension record: everything the registry keeps about one linked extension, encoded once into one
//! allocation. A saved context is a header followed by these same records (and, in portable contexts, the
//! blocks' bytes), so saving copies each record out and an in-place restore copies it back: no table is
//! rebuilt, no allocation is made per symbol, section or constructor.
//!
//! # Layout (little-endian)
//! A 69-byte header — use count (u32), initialised (u8), fixups recorded (u8), holds A32 (Arm-state) code
//! (u8), a needs byte (bits 0 to 3: the Arm profile other than M the object was built for, 1 A, 2 R, 3 S;
//! bits 4 to 7: its floating-point calling convention's code, 0 if it says none), then the
//! entry count (u32) of each of the eleven tables, then the instruction set the object's attributes say it
//! needs (width u8, 0 for none; feature bits u128) — followed by the tables back to back, in this order:
//!
//! | table    | entry                                                                  |
//! |----------|------------------------------------------------------------------------|
//! | name     | one byte of the extension's UTF-8 name                                 |
//! | deps     | u32: the extension it depends on (a registry slot; a record index in contexts) |
//! | strings  | one byte of the names below (`Str` ranges point into it)                |
//! | blocks   | address (u64), size (u32), log2 of the alignment (u8), provider token (u64), permission (u8), content hash (u64) |
//! | regions  | kind (u8, bit 7: in place), address (u64), size (u32), log2 of the alignment (u8) |
//! | sections | name (`Str`: two u32), kind (u8), offset, size (u32 each)               |
//! | exports  | name (`Str`), address (u64), block (u8: index, or 255 for none)        |
//! | globals  | name (`Str`), address (u64), block (u8), sorted by name                |
//! | init     | u64 constructor address, in execution order                            |
//! | fini     | u64 destructor address, in execution order                             |
//! | fixups   | one byte of the encoded fixups (see `Fixup::encode_into` in `link/fixups.rs`) |
//!
//! The registry's copy keeps the use count and initialised flag of the header stale (the live values are
//! in the registry); saving writes the current ones.

use alloc::vec::Vec;

use crate::arch::{FloatAbi, Isa};
use crate::error::{Error, Result};
use crate::fallible;
use crate::layout::RegionKind;
use crate::link::{RegionRec, SectionRec, Str, SymRec};
use crate::memory::Permission;
use crate::snapshot::SavedCore;

/// The tables of a record, in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Name,
    Deps,
    Strings,
    Blocks,
    Regions,
    Sections,
    Exports,
    Globals,
    Init,
    Fini,
    Fixups,
}

const TABLES: usize = 11;
const ALL_TABLES: [Table; TABLES] = [
    Table::Name,
    Table::Deps,
    Table::Strings,
    Table::Blocks,
    Table::Regions,
    Table::Sections,
    Table::Exports,
    Table::Globals,
    Table::Init,
    Table::Fini,
    Table::Fixups,
];

/// Bytes of one saved block.
pub(crate) const BLOCK_REC: usize = 8 + 4 + 1 + 8 + 1 + 8;
/// Bytes of one region.
pub(crate) const REGION_REC: usize = 1 + 8 + 4 + 1;
/// Bytes of one section.
pub(crate) const SECTION_REC: usize = 4 + 4 + 1 + 4 + 4;
/// Bytes of one symbol.
pub(crate) const SYM_REC: usize = 4 + 4 + 8 + 1;
/// Where the table counts start in a record's header.
const COUNTS_AT: usize = 8;
/// Where the instruction set the object needs is in a record's header: width (u8), feature bits (u128).
const ISA_AT: usize = COUNTS_AT + 4 * TABLES;
/// Bytes of a record's header.
pub(crate) const HEADER: usize = ISA_AT + 1 + 16;
/// Arm profiles other than M, by their code in a record's needs byte (the position plus one).
const PROFILES: [char; 3] = ['A', 'R', 'S'];

/// Offsets of the fields of a block entry.
const BLOCK_SIZE_AT: usize = 8;
const BLOCK_ALIGN_AT: usize = 12;
const BLOCK_TOKEN_AT: usize = 13;
const BLOCK_PERMISSION_AT: usize = 21;
const BLOCK_HASH_AT: usize = 22;
/// Offsets of the fields of a region entry (its kind byte comes first).
pub(crate) const REGION_ADDR_AT: usize = 1;
pub(crate) const REGION_SIZE_AT: usize = 9;
pub(crate) const REGION_ALIGN_AT: usize = 13;
/// Offsets of the fields of a section entry (its name comes first).
pub(crate) const SECTION_KIND_AT: usize = 8;
pub(crate) const SECTION_OFFSET_AT: usize = 9;
pub(crate) const SECTION_SIZE_AT: usize = 13;
/// Offsets of the address and the block in a symbol entry.
pub(crate) const SYM_ADDR_AT: usize = 8;
pub(crate) const SYM_BLOCK_AT: usize = 16;

impl Table {
    fn entry_size(self) -> usize {
        match self {
            Table::Name | Table::Strings | Table::Fixups => 1,
            Table::Deps => 4,
            Table::Blocks => BLOCK_REC,
            Table::Regions => REGION_REC,
            Table::Sections => SECTION_REC,
            Table::Exports | Table::Globals => SYM_REC,
            Table::Init | Table::Fini => 8,
        }
    }
}

/// Bit 7 of a region's or section's kind byte: used in place.
pub(crate) const IN_PLACE: u8 = 0x80;

/// A kind byte: the region kind, and whether it is used in place.
pub(crate) fn region_kind(byte: u8) -> Option<(RegionKind, bool)> {
    let kind = *RegionKind::ALL.get((byte & !IN_PLACE) as usize)?;
    Some((kind, byte & IN_PLACE != 0))
}

fn kind_byte(kind: RegionKind, in_place: bool) -> u8 {
    kind.index() as u8 | if in_place { IN_PLACE } else { 0 }
}

/// Index of a permission in [`Permission::ALL`].
pub(crate) fn perm_index(p: Permission) -> u8 {
    Permission::ALL.iter().position(|&q| q == p).unwrap_or(0) as u8
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let mut w = [0u8; 4];
    w.copy_from_slice(b.get(at..at.checked_add(4)?)?);
    Some(u32::from_le_bytes(w))
}

/// The alignment whose log2 is `byte`; `None` from 64 up.
pub(crate) fn align_from_log2(byte: u8) -> Option<u64> {
    1u64.checked_shl(u32::from(byte))
}

/// The log2 of an alignment (a power of two).
fn log2_of(align: u64) -> Result<u8> {
    if !align.is_power_of_two() {
        return Err(Error::Internal("alignment not a power of two"));
    }
    Ok(align.trailing_zeros() as u8)
}

/// A size or offset as the 32-bit field a record keeps it in.
fn field32(v: u64, what: &'static str) -> Result<[u8; 4]> {
    u32::try_from(v)
        .map(u32::to_le_bytes)
        .map_err(|_| Error::Limit {
            what,
            limit: u64::from(u32::MAX),
            value: v,
        })
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let mut w = [0u8; 8];
    w.copy_from_slice(b.get(at..at.checked_add(8)?)?);
    Some(u64::from_le_bytes(w))
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    if let Some(dst) = at.checked_add(8).and_then(|end| b.get_mut(at..end)) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// One saved block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockRec {
    pub addr: u64,
    pub size: u64,
    pub align: u64,
    pub token: u64,
    pub permission: Permission,
    pub hash: u64,
}

impl BlockRec {
    /// A placeholder for fixed arrays of blocks, before the real ones are filled in.
    pub const EMPTY: BlockRec = BlockRec {
        addr: 0,
        size: 0,
        align: 1,
        token: 0,
        permission: Permission::ReadWrite,
        hash: 0,
    };
}

fn block_rec(e: &[u8]) -> Option<BlockRec> {
    Some(BlockRec {
        addr: u64_at(e, 0)?,
        size: u64::from(u32_at(e, BLOCK_SIZE_AT)?),
        align: align_from_log2(*e.get(BLOCK_ALIGN_AT)?)?,
        token: u64_at(e, BLOCK_TOKEN_AT)?,
        permission: *Permission::ALL.get(*e.get(BLOCK_PERMISSION_AT)? as usize)?,
        hash: u64_at(e, BLOCK_HASH_AT)?,
    })
}

fn sym_rec(e: &[u8]) -> Option<SymRec> {
    Some(SymRec {
        name: Str {
            start: u32_at(e, 0)?,
            len: u32_at(e, 4)?,
        },
        addr: u64_at(e, SYM_ADDR_AT)? as usize,
        block: *e.get(SYM_BLOCK_AT)?,
    })
}

/// Where each table of a record starts and how many entries it has, read from the record's header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    at: [u32; TABLES],
    count: [u32; TABLES],
    /// Bytes of the whole record.
    pub len: usize,
}

impl Layout {
    /// Reads the header at the start of `bytes`; `None` unless every table lies inside `bytes`.
    pub fn read(bytes: &[u8]) -> Option<Layout> {
        let counts = bytes.get(COUNTS_AT..COUNTS_AT + 4 * TABLES)?;
        let mut l = Layout::default();
        // In 64 bits no sum overflows (eleven u32 counts times entries of at most 30 bytes), so one check
        // at the end covers every table: each starts at or before the end.
        let mut pos = HEADER as u64;
        for (((c, table), at), count) in counts
            .chunks_exact(4)
            .zip(ALL_TABLES)
            .zip(l.at.iter_mut())
            .zip(l.count.iter_mut())
        {
            *count = u32::from_le_bytes(c.try_into().ok()?);
            *at = pos as u32;
            pos += u64::from(*count) * table.entry_size() as u64;
        }
        if pos > bytes.len() as u64 || pos > u64::from(u32::MAX) {
            return None;
        }
        l.len = pos as usize;
        Some(l)
    }

    pub fn count(&self, t: Table) -> usize {
        self.count.get(t as usize).map_or(0, |&c| c as usize)
    }

    fn at(&self, t: Table) -> usize {
        self.at.get(t as usize).map_or(0, |&a| a as usize)
    }

    /// The bytes of table `t` inside `record`.
    pub fn table<'b>(&self, record: &'b [u8], t: Table) -> &'b [u8] {
        let at = self.at(t);
        let len = self.count(t).saturating_mul(t.entry_size());
        at.checked_add(len)
            .and_then(|end| record.get(at..end))
            .unwrap_or(&[])
    }
}

/// A record's tables, read-only, over any bytes (the registry's copy, or a record inside a context).
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'b> {
    pub bytes: &'b [u8],
    pub layout: Layout,
}

impl<'b> View<'b> {
    /// A view of the record at the start of `bytes`, if its tables fit.
    pub fn new(bytes: &'b [u8]) -> Option<View<'b>> {
        let layout = Layout::read(bytes)?;
        Some(View {
            bytes: bytes.get(..layout.len)?,
            layout,
        })
    }

    /// The raw bytes of table `t`.
    pub fn table(&self, t: Table) -> &'b [u8] {
        self.layout.table(self.bytes, t)
    }

    fn entries(&self, t: Table) -> core::slice::ChunksExact<'b, u8> {
        self.layout
            .table(self.bytes, t)
            .chunks_exact(t.entry_size())
    }

    pub fn count(&self, t: Table) -> usize {
        self.layout.count(t)
    }

    pub fn use_count(&self) -> u32 {
        u32_at(self.bytes, 0).unwrap_or(0)
    }

    pub fn initialised_byte(&self) -> u8 {
        self.bytes.get(4).copied().unwrap_or(0)
    }

    pub fn fixups_byte(&self) -> u8 {
        self.bytes.get(5).copied().unwrap_or(0)
    }

    pub fn has_fixups(&self) -> bool {
        self.fixups_byte() == 1
    }

    /// 1 if the extension holds A32 (Arm-state) code, which no Cortex-M runs.
    pub fn a32_byte(&self) -> u8 {
        self.bytes.get(6).copied().unwrap_or(0)
    }

    /// What the extension's object needs of a core of `machine`, as its load read it; `None` if the
    /// record's needs are malformed: an ISA width none of the machine's ISAs has, or feature bits no feature
    /// stands for. An instruction set of a machine whose ISAs this build does not know counts as none.
    pub fn needs(&self, machine: u16) -> Option<Needs> {
        let byte = *self.bytes.get(7)?;
        let profile = match byte & 0x0f {
            0 => None,
            code => Some(*PROFILES.get(usize::from(code) - 1)?),
        };
        let float_abi = FloatAbi::from_code(byte >> 4).ok()?;
        let bits = *self.bytes.get(ISA_AT)?;
        let features = self
            .bytes
            .get(ISA_AT + 1..ISA_AT + 17)
            .and_then(|f| f.try_into().ok())
            .map(u128::from_le_bytes)?;
        let known = |bits| Isa::from_parts(machine, bits, 0).is_some();
        let isa = match bits {
            0 if features != 0 => return None,
            0 => None,
            // What a load records, or it would be read as needing less than it says.
            bits => match Isa::from_parts(machine, bits, features) {
                Some(isa) if isa.features() == features => Some(isa),
                None if matches!(bits, 32 | 64) && !known(32) && !known(64) => None,
                _ => return None,
            },
        };
        Some(Needs {
            a32: self.a32_byte() == 1,
            profile,
            float_abi,
            isa,
        })
    }

    pub fn name_bytes(&self) -> &'b [u8] {
        self.layout.table(self.bytes, Table::Name)
    }

    /// The name (validated as UTF-8 when the record was made or read).
    pub fn name(&self) -> &'b str {
        core::str::from_utf8(self.name_bytes()).unwrap_or("")
    }

    pub fn str(&self, s: Str) -> &'b [u8] {
        let strings = self.layout.table(self.bytes, Table::Strings);
        (s.start as usize)
            .checked_add(s.len as usize)
            .and_then(|end| strings.get(s.start as usize..end))
            .unwrap_or(&[])
    }

    pub fn deps(&self) -> impl ExactSizeIterator<Item = u32> + 'b {
        self.entries(Table::Deps)
            .map(|c| u32_at(c, 0).unwrap_or(u32::MAX))
    }

    pub fn dep(&self, i: usize) -> Option<u32> {
        self.entries(Table::Deps).nth(i).and_then(|c| u32_at(c, 0))
    }

    pub fn blocks(&self) -> impl ExactSizeIterator<Item = Option<BlockRec>> + 'b {
        self.entries(Table::Blocks).map(block_rec)
    }

    pub fn regions(&self) -> impl Iterator<Item = RegionRec> + 'b {
        self.entries(Table::Regions).filter_map(|e| {
            let (kind, in_place) = region_kind(*e.first()?)?;
            Some(RegionRec {
                kind,
                addr: u64_at(e, REGION_ADDR_AT)? as usize,
                size: u32_at(e, REGION_SIZE_AT)? as usize,
                align: usize::try_from(align_from_log2(*e.get(REGION_ALIGN_AT)?)?).ok()?,
                in_place,
            })
        })
    }

    /// The region holding `addr`, if any.
    pub fn region_holding(&self, addr: usize) -> Option<RegionRec> {
        self.regions()
            .find(|r| addr.checked_sub(r.addr).is_some_and(|o| o < r.size))
    }

    pub fn sections(&self) -> impl Iterator<Item = SectionRec> + 'b {
        self.entries(Table::Sections).filter_map(|e| {
            let (kind, in_place) = region_kind(*e.get(SECTION_KIND_AT)?)?;
            Some(SectionRec {
                name: Str {
                    start: u32_at(e, 0)?,
                    len: u32_at(e, 4)?,
                },
                kind,
                offset: u32_at(e, SECTION_OFFSET_AT)? as usize,
                size: u32_at(e, SECTION_SIZE_AT)? as usize,
                in_place,
            })
        })
    }

    pub fn exports(&self) -> impl ExactSizeIterator<Item = Option<SymRec>> + 'b {
        self.entries(Table::Exports).map(sym_rec)
    }

    /// Export `i`, by index (O(1)).
    pub fn export(&self, i: usize) -> Option<SymRec> {
        let at = i.checked_mul(SYM_REC)?;
        sym_rec(
            self.layout
                .table(self.bytes, Table::Exports)
                .get(at..at.checked_add(SYM_REC)?)?,
        )
    }

    pub fn globals(&self) -> impl ExactSizeIterator<Item = Option<SymRec>> + 'b {
        self.entries(Table::Globals).map(sym_rec)
    }

    /// The global symbol `name` (binary search: the table is sorted by name).
    pub fn global_rec(&self, name: &[u8]) -> Option<SymRec> {
        let table = self.layout.table(self.bytes, Table::Globals);
        let (mut lo, mut hi) = (0usize, table.len() / SYM_REC);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let g = sym_rec(table.get(mid * SYM_REC..(mid + 1) * SYM_REC)?)?;
            match self.str(g.name).cmp(name) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => return Some(g),
            }
        }
        None
    }

    pub fn addrs(&self, t: Table) -> impl ExactSizeIterator<Item = usize> + 'b {
        self.entries(t).map(|c| u64_at(c, 0).unwrap_or(0) as usize)
    }
}

/// The registry's copy of one extension's record.
#[derive(Debug)]
pub(crate) struct Record {
    bytes: Vec<u8>,
    layout: Layout,
}

impl Record {
    /// A copy of the record `view` shows (one allocation; its layout is not read again).
    pub fn copy_of(view: &View<'_>) -> Result<Record> {
        let Some(src) = view.bytes.get(..view.layout.len) else {
            return Err(Error::Internal("record layout"));
        };
        Ok(Record {
            bytes: fallible::to_vec(src)?,
            layout: view.layout,
        })
    }

    pub fn view(&self) -> View<'_> {
        View {
            bytes: &self.bytes,
            layout: self.layout,
        }
    }

    /// The encoded record (its header's use count and initialised flag are stale).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn table_mut(&mut self, t: Table) -> &mut [u8] {
        let at = self.layout.at(t);
        let len = self.layout.count(t).saturating_mul(t.entry_size());
        match at.checked_add(len) {
            Some(end) => self.bytes.get_mut(at..end).unwrap_or(&mut []),
            None => &mut [],
        }
    }

    /// Replaces dependency `i`.
    pub fn set_dep(&mut self, i: usize, value: u32) {
        let deps = self.table_mut(Table::Deps);
        if let Some(dst) = i
            .checked_mul(4)
            .and_then(|at| deps.get_mut(at..at.checked_add(4)?))
        {
            dst.copy_from_slice(&value.to_le_bytes());
        }
    }
}

// Moving a record to new addresses: only a portable restore does it (the `portable` feature).

/// What a record knows of the block an address moves with.
#[cfg(feature = "portable")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Home {
    /// Block `i` of the record: the symbol's own section's, even where the address is also the start of
    /// the next block.
    Block(u8),
    /// The block of this permission (a region's).
    Permission(Permission),
    /// Whichever block holds the address.
    Unknown,
    /// A constructor or destructor: a function in the extension's code, in a dependency's code, or a
    /// built-in (never at a block's end).
    Hook,
    /// Export `i`, which moves with none of the extension's blocks (a re-exported built-in or another
    /// extension's symbol, a far address, a constant): whatever its export-table entry holds.
    Entry(u32),
}

#[cfg(feature = "portable")]
impl Record {
    /// Records block `i`'s new address and provider token (a portable restore).
    pub fn set_block(&mut self, i: usize, addr: u64, token: u64) {
        let blocks = self.table_mut(Table::Blocks);
        if let Some(e) = i
            .checked_mul(BLOCK_REC)
            .and_then(|at| blocks.get_mut(at..at.checked_add(BLOCK_REC)?))
        {
            put_u64(e, 0, addr);
            put_u64(e, BLOCK_TOKEN_AT, token);
        }
    }

    /// Rewrites every address the record holds (regions, exports, globals, constructors, destructors)
    /// with `map`, for a restore at new addresses, telling it what is known of the address's block: a
    /// region's permission, a symbol's own block. A symbol outside every block keeps its address. Block
    /// entries are set with [`Record::set_block`]. Stops at the first error `map` returns.
    pub fn map_addresses(&mut self, mut map: impl FnMut(u64, Home) -> Result<u64>) -> Result<()> {
        for e in self.table_mut(Table::Regions).chunks_exact_mut(REGION_REC) {
            let home = match e.first().and_then(|&k| region_kind(k)) {
                Some((kind, _)) => Home::Permission(kind.permission()),
                None => Home::Unknown,
            };
            if let Some(v) = u64_at(e, REGION_ADDR_AT) {
                put_u64(e, REGION_ADDR_AT, map(v, home)?);
            }
        }
        for t in [Table::Exports, Table::Globals] {
            for (i, e) in self.table_mut(t).chunks_exact_mut(SYM_REC).enumerate() {
                let block = e
                    .get(SYM_BLOCK_AT)
                    .copied()
                    .unwrap_or(crate::link::NO_BLOCK);
                // A global symbol outside every block is absolute: it stays.
                let home = match (block, t) {
                    (crate::link::NO_BLOCK, Table::Exports) => match u32::try_from(i) {
                        Ok(i) => Home::Entry(i),
                        Err(_) => continue,
                    },
                    (crate::link::NO_BLOCK, _) => continue,
                    (block, _) => Home::Block(block),
                };
                if let Some(v) = u64_at(e, SYM_ADDR_AT) {
                    put_u64(e, SYM_ADDR_AT, map(v, home)?);
                }
            }
        }
        for t in [Table::Init, Table::Fini] {
            for e in self.table_mut(t).chunks_exact_mut(8) {
                if let Some(v) = u64_at(e, 0) {
                    put_u64(e, 0, map(v, Home::Hook)?);
                }
            }
        }
        Ok(())
    }
}

/// Sets the content hash of block `i` in an encoded record (used on the copy a save writes).
pub(crate) fn set_block_hash(record: &mut [u8], layout: &Layout, i: usize, hash: u64) {
    let at = layout.at(Table::Blocks);
    if let Some(at) = i
        .checked_mul(BLOCK_REC)
        .and_then(|o| o.checked_add(at))
        .and_then(|o| o.checked_add(BLOCK_HASH_AT))
    {
        put_u64(record, at, hash);
    }
}

/// Offset of dependency `i` in an encoded record.
pub(crate) fn dep_offset(layout: &Layout, i: usize) -> Option<usize> {
    layout.at(Table::Deps).checked_add(i.checked_mul(4)?)
}

/// What an extension's object needs of the core, as its load read it from the object (and checked where
/// the registry knew its core): its record keeps it, so that a restore, which reads no ELF file, makes the
/// same checks on the core it restores for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    /// The object holds A32 (Arm-state) code.
    pub a32: bool,
    /// The Arm profile other than M (`'A'`, `'R'` or `'S'`) its attributes say it was built for.
    pub profile: Option<char>,
    /// Its floating-point calling convention, if it says.
    pub float_abi: Option<FloatAbi>,
    /// The instruction set its attributes (or RISC-V `e_flags`) say it may use.
    pub isa: Option<Isa>,
}

/// The first check a core fails for code with some [`Needs`] ([`Needs::refusal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Floats are passed another way: the core's convention, the object's.
    FloatAbi(FloatAbi, FloatAbi),
    /// A32 code where only Thumb code runs.
    ArmState,
    /// Built for this Arm profile where only the M-profile runs.
    ArmProfile(char),
    /// Instructions the core lacks: the core's ISA, the object's, what it lacks.
    Isa(Isa, Isa, alloc::string::String),
}

impl Needs {
    /// The first check of a load (and of a restore, from the record) that `core` fails for this code, if
    /// any: its calling convention, A32 code or another Arm profile where only Thumb code of the M-profile
    /// runs, instructions the core lacks. What the core does not say is not compared.
    pub fn refusal(&self, core: &SavedCore) -> Option<Refusal> {
        if let (Some(here), Some(found)) = (core.float_abi, self.float_abi) {
            if here != found {
                return Some(Refusal::FloatAbi(here, found));
            }
        }
        if core.thumb_only && self.a32 {
            return Some(Refusal::ArmState);
        }
        if let Some(found) = self.profile.filter(|_| core.thumb_only) {
            return Some(Refusal::ArmProfile(found));
        }
        let (here, needs) = (core.isa?, self.isa?);
        here.missing(&needs)
            .map(|missing| Refusal::Isa(here, needs, missing))
    }
}

/// The parts a record is made of, as the linker produced them.
pub(crate) struct Parts<'a> {
    pub name: &'a str,
    pub deps: &'a [u32],
    pub strings: &'a [u8],
    pub blocks: &'a [BlockRec],
    pub regions: &'a [RegionRec],
    pub sections: &'a [SectionRec],
    pub exports: &'a [SymRec],
    pub globals: &'a [SymRec],
    pub init: &'a [usize],
    pub fini: &'a [usize],
    pub fixups: Option<&'a [u8]>,
    /// What the object needs of the core.
    pub needs: Needs,
}

impl Parts<'_> {
    /// Encodes the record in one allocation of its exact size.
    pub fn encode(&self) -> Result<Record> {
        let fixups = self.fixups.unwrap_or(&[]);
        let counts = [
            self.name.len(),
            self.deps.len(),
            self.strings.len(),
            self.blocks.len(),
            self.regions.len(),
            self.sections.len(),
            self.exports.len(),
            self.globals.len(),
            self.init.len(),
            self.fini.len(),
            fixups.len(),
        ];
        let mut len = HEADER;
        for (count, table) in counts.iter().zip(ALL_TABLES) {
            len = count
                .checked_mul(table.entry_size())
                .and_then(|n| len.checked_add(n))
                .ok_or_else(|| Error::Internal("record size"))?;
        }
        let mut b = fallible::vec::<u8>(len)?;
        let u32v = |v: usize| u32::try_from(v).map_err(|_| Error::Internal("record count"));
        b.extend_from_slice(&1u32.to_le_bytes());
        let needs = &self.needs;
        let profile = needs
            .profile
            .and_then(|p| PROFILES.iter().position(|&q| q == p))
            .map_or(0, |i| i as u8 + 1);
        b.extend_from_slice(&[
            0,
            u8::from(self.fixups.is_some()),
            u8::from(needs.a32),
            profile | FloatAbi::code(needs.float_abi) << 4,
        ]);
        for count in counts {
            b.extend_from_slice(&u32v(count)?.to_le_bytes());
        }
        b.push(needs.isa.map_or(0, |isa| isa.bits()));
        b.extend_from_slice(&needs.isa.map_or(0, |isa| isa.features()).to_le_bytes());
        b.extend_from_slice(self.name.as_bytes());
        for d in self.deps {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(self.strings);
        const BLOCK_BYTES: &str = "bytes in one block (a record keeps 32 bits)";
        for k in self.blocks {
            b.extend_from_slice(&k.addr.to_le_bytes());
            b.extend_from_slice(&field32(k.size, BLOCK_BYTES)?);
            b.push(log2_of(k.align)?);
            b.extend_from_slice(&k.token.to_le_bytes());
            b.push(perm_index(k.permission));
            b.extend_from_slice(&k.hash.to_le_bytes());
        }
        for r in self.regions {
            b.push(kind_byte(r.kind, r.in_place));
            b.extend_from_slice(&(r.addr as u64).to_le_bytes());
            b.extend_from_slice(&field32(r.size as u64, BLOCK_BYTES)?);
            b.push(log2_of(r.align as u64)?);
        }
        for s in self.sections {
            b.extend_from_slice(&s.name.start.to_le_bytes());
            b.extend_from_slice(&s.name.len.to_le_bytes());
            b.push(kind_byte(s.kind, s.in_place));
            b.extend_from_slice(&field32(s.offset as u64, BLOCK_BYTES)?);
            b.extend_from_slice(&field32(s.size as u64, BLOCK_BYTES)?);
        }
        for s in self.exports.iter().chain(self.globals) {
            b.extend_from_slice(&s.name.start.to_le_bytes());
            b.extend_from_slice(&s.name.len.to_le_bytes());
            b.extend_from_slice(&(s.addr as u64).to_le_bytes());
            b.push(s.block);
        }
        for &a in self.init.iter().chain(self.fini) {
            b.extend_from_slice(&(a as u64).to_le_bytes());
        }
        b.extend_from_slice(fixups);
        let layout = Layout::read(&b).ok_or_else(|| Error::Internal("record layout"))?;
        if layout.len != b.len() {
            return Err(Error::Internal("record size"));
        }
        Ok(Record { bytes: b, layout })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::NO_BLOCK;

    #[test]
    fn encode_then_read_back() {
        let strings = b"textfoobarabs";
        let parts = Parts {
            name: "ext",
            deps: &[4, 7],
            strings,
            blocks: &[BlockRec {
                addr: 0x1000,
                size: 64,
                align: 16,
                token: 4096,
                permission: Permission::ReadExecute,
                hash: 9,
            }],
            regions: &[RegionRec {
                kind: RegionKind::Text,
                addr: 0x1000,
                size: 64,
                align: 16,
                in_place: false,
            }],
            sections: &[SectionRec {
                name: Str { start: 0, len: 4 },
                kind: RegionKind::Text,
                offset: 0,
                size: 64,
                in_place: false,
            }],
            exports: &[SymRec {
                name: Str { start: 4, len: 3 },
                addr: 0x1010,
                block: 0,
            }],
            globals: &[
                SymRec {
                    name: Str { start: 10, len: 3 },
                    addr: 0x10,
                    block: NO_BLOCK,
                },
                SymRec {
                    name: Str { start: 7, len: 3 },
                    addr: 0x1020,
                    block: 0,
                },
                SymRec {
                    name: Str { start: 4, len: 3 },
                    addr: 0x1010,
                    block: 0,
                },
            ],
            init: &[0x1000],
            fini: &[0x1004, 0x1008],
            fixups: None,
            needs: Needs {
                a32: true,
                profile: Some('R'),
                float_abi: Some(FloatAbi::Vfp),
                isa: None,
            },
        };
        let mut rec = parts.encode().unwrap();
        let v = rec.view();
        assert_eq!(v.name(), "ext");
        assert_eq!(v.deps().collect::<Vec<_>>(), [4, 7]);
        assert_eq!(v.blocks().next().flatten().unwrap().token, 4096);
        assert_eq!(v.regions().next().unwrap().kind, RegionKind::Text);
        assert_eq!(v.str(v.sections().next().unwrap().name), b"text");
        assert_eq!(v.export(0).unwrap().addr, 0x1010);
        assert_eq!(v.global_rec(b"bar").map(|g| g.addr), Some(0x1020));
        assert_eq!(v.global_rec(b"foo").map(|g| g.addr), Some(0x1010));
        assert_eq!(v.global_rec(b"baz").map(|g| g.addr), None);
        assert_eq!(v.addrs(Table::Fini).collect::<Vec<_>>(), [0x1004, 0x1008]);
        assert!(!v.has_fixups());
        assert_eq!(v.a32_byte(), 1);
        assert_eq!(v.needs(40), Some(parts.needs));
        rec.set_dep(1, 2);
        assert_eq!(rec.view().deps().collect::<Vec<_>>(), [4, 2]);
        #[cfg(feature = "portable")]
        {
            rec.map_addresses(|a, _| Ok(a + 0x100)).unwrap();
            assert_eq!(
                rec.view().global_rec(b"abs").map(|g| g.addr),
                Some(0x10),
                "outside every block: stays"
            );
            rec.set_block(0, 0x2000, 8192);
            let v = rec.view();
            assert_eq!(v.export(0).unwrap().addr, 0x1110);
            assert_eq!(v.addrs(Table::Init).collect::<Vec<_>>(), [0x1100]);
            assert_eq!(v.blocks().next().flatten().unwrap().addr, 0x2000);
        }
        assert_eq!(View::new(rec.bytes()).unwrap().layout, rec.layout);
        assert!(View::new(&rec.bytes()[..rec.bytes().len() - 1]).is_none());
    }
}
