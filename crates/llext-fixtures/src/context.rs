//! Where things lie in a saved llext context (format 8, see `crates/llext/src/snapshot.rs` and `record.rs`), for tests that
//! damage one field of a real context on purpose: a 56-byte header, then per extension a record — a
//! 69-byte header whose eleven `u32` table counts start at byte 8, then the tables — followed, in portable
//! contexts, by the saved addresses of the built-ins its fixups name and the record's block bytes, and in
//! in-place contexts with content hashes by a u64 hash per region used in place from storage; a 64-bit
//! checksum ends the context.

/// The length of a context's header: the first record starts here.
pub const HEADER: usize = 56;

/// The length of a record's header: its first table starts here.
pub const RECORD_HEADER: usize = 69;

/// The tables of a record, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The extension's name.
    Name,
    /// Dependencies (record indexes).
    Deps,
    /// Names of sections and symbols.
    Strings,
    /// Blocks: address (u64), size (u32), log2 of the alignment (u8), token (u64), permission (u8), hash
    /// (u64).
    Blocks,
    /// Regions: kind (u8), address (u64), size (u32), log2 of the alignment (u8).
    Regions,
    /// Sections: name (two u32), kind (u8), offset, size (u32 each).
    Sections,
    /// Exported symbols: name (two u32), address (u64), block (u8: 255 for none).
    Exports,
    /// Global symbols, like exports.
    Globals,
    /// Constructors.
    Init,
    /// Destructors.
    Fini,
    /// The fixup table.
    Fixups,
}

/// Bytes of one entry of each table, in table order.
/// The fixup table's entries are its bytes: fixups are varint-packed ([`fixups`] reads them).
pub const ENTRY: [usize; 11] = [1, 4, 1, 30, 14, 17, 17, 17, 8, 8, 1];

/// Offset of a block entry's size (u32).
pub const BLOCK_SIZE: usize = 8;
/// Offset of a block entry's alignment, as its log2 (u8).
pub const BLOCK_ALIGN: usize = 12;
/// Offset of a block entry's permission (u8: an index into `llext::Permission::ALL`).
pub const BLOCK_PERMISSION: usize = 21;
/// Offset of a region entry's address (u64).
pub const REGION_ADDR: usize = 1;
/// Offset of a region entry's size (u32).
pub const REGION_SIZE: usize = 9;
/// Offset of a region entry's alignment, as its log2 (u8).
pub const REGION_ALIGN: usize = 13;
/// Offset of a symbol entry's (exports, globals) address (u64).
pub const SYM_ADDR: usize = 8;
/// Offset of a symbol entry's block (u8: an index into the record's blocks, 255 for none).
pub const SYM_BLOCK: usize = 16;
/// Offset of a section entry's kind (u8).
pub const SECTION_KIND: usize = 8;
/// Offset of a section entry's offset in its region (u32).
pub const SECTION_OFFSET: usize = 9;

fn u32_at(ctx: &[u8], at: usize) -> usize {
    u32::from_le_bytes(ctx[at..at + 4].try_into().unwrap()) as usize
}

/// The offset of entry `entry` of `table` of record `record` in `ctx`, and how many entries that table has.
pub fn entry(ctx: &[u8], record: usize, table: Table, entry: usize) -> (usize, usize) {
    let portable = ctx[10] & 1 != 0;
    let hashes = ctx[10] & 2 != 0;
    let mut pos = HEADER;
    for r in 0..=record {
        let mut at = pos + RECORD_HEADER;
        let mut offsets = [0usize; 11];
        for (i, size) in ENTRY.iter().enumerate() {
            offsets[i] = at;
            at += u32_at(ctx, pos + 8 + 4 * i) * size;
        }
        let t = table as usize;
        if r == record {
            return (offsets[t] + entry * ENTRY[t], u32_at(ctx, pos + 8 + 4 * t));
        }
        if portable {
            // The saved addresses of the built-ins the fixups name: a count, then a u64 each.
            at += 4 + 8 * u32_at(ctx, at);
            let blocks = Table::Blocks as usize;
            for b in 0..u32_at(ctx, pos + 8 + 4 * blocks) {
                let size_at = offsets[blocks] + b * ENTRY[blocks] + BLOCK_SIZE;
                at += u32_at(ctx, size_at);
            }
        } else if hashes {
            // A hash per region used in place (bit 7 of its kind byte).
            let regions = Table::Regions as usize;
            for g in 0..u32_at(ctx, pos + 8 + 4 * regions) {
                if ctx[offsets[regions] + g * ENTRY[regions]] & 0x80 != 0 {
                    at += 8;
                }
            }
        }
        pos = at;
    }
    unreachable!()
}

/// Where record `record` ends (in a portable context, the saved addresses of the built-ins its fixups name
/// come next, then its block bytes; in an in-place context with content hashes, the hashes of its in-place
/// regions).
pub fn record_end(ctx: &[u8], record: usize) -> usize {
    let (at, count) = entry(ctx, record, Table::Fixups, 0);
    at + count * ENTRY[Table::Fixups as usize]
}

/// Where the block bytes of record `record` of a portable context start: after the record, a u32 count
/// and that many u64 built-in addresses.
pub fn blocks_at(ctx: &[u8], record: usize) -> usize {
    let end = record_end(ctx, record);
    end + 4 + 8 * u32_at(ctx, end)
}

/// One saved block of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Offset of the block's entry in the context.
    pub entry: usize,
    /// Address when saved.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Alignment.
    pub align: u64,
    /// Index into `llext::Permission::ALL`.
    pub permission: u8,
}

/// The blocks of record `record` of `ctx`.
pub fn blocks(ctx: &[u8], record: usize) -> Vec<Block> {
    let (_, count) = entry(ctx, record, Table::Blocks, 0);
    (0..count)
        .map(|i| {
            let at = entry(ctx, record, Table::Blocks, i).0;
            Block {
                entry: at,
                addr: u64::from_le_bytes(ctx[at..at + 8].try_into().unwrap()),
                size: u32_at(ctx, at + BLOCK_SIZE) as u64,
                align: 1 << ctx[at + BLOCK_ALIGN],
                permission: ctx[at + BLOCK_PERMISSION],
            }
        })
        .collect()
}

/// Where a fixup's target lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A block of the same extension, at an offset.
    Own {
        /// Block index.
        block: u8,
        /// Offset in the block.
        offset: u64,
    },
    /// A built-in symbol, named by a range of the record's strings.
    Builtin {
        /// Start in the strings.
        start: u32,
        /// Length.
        len: u32,
    },
    /// A block of a dependency.
    Extension {
        /// Index in the record's dependencies.
        dep: u32,
        /// Block index.
        block: u8,
        /// Offset in the block.
        offset: u32,
    },
    /// A fixed value.
    Absolute(u64),
}

/// One fixup as a context encodes it: read here independently of the library (the format is documented
/// at `Fixup::encode_into` in `crates/llext/src/link.rs`), so tests can damage one field of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixup {
    /// 0: a relocation, 1: a GOT slot, 2: a call stub.
    pub kind: u8,
    /// The relocation type (relocations only).
    pub r_type: u32,
    /// The target is a function.
    pub func: bool,
    /// The block holding the place.
    pub block: u8,
    /// The place's offset in it.
    pub offset: u32,
    /// What the place refers to.
    pub target: Target,
    /// The addend.
    pub addend: i64,
    /// The symbol's size.
    pub size: u64,
    /// GOT slot and stub indexes (`u32::MAX`: none).
    pub got_slot: u32,
    /// See `got_slot`.
    pub stub: u32,
}

fn varint(ctx: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = ctx[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The fixups of record `record` of the portable context `ctx`.
pub fn fixups(ctx: &[u8], record: usize) -> Vec<Fixup> {
    let (mut at, len) = entry(ctx, record, Table::Fixups, 0);
    let end = at + len;
    let mut out = Vec::new();
    while at < end {
        let head = ctx[at];
        let block = ctx[at + 1];
        at += 2;
        let kind = head & 3;
        let r_type = if kind == 0 {
            varint(ctx, &mut at) as u32
        } else {
            0
        };
        let offset = varint(ctx, &mut at) as u32;
        let target = match (head >> 2) & 3 {
            0 => {
                let block = ctx[at];
                at += 1;
                Target::Own {
                    block,
                    offset: varint(ctx, &mut at),
                }
            }
            1 => Target::Builtin {
                start: varint(ctx, &mut at) as u32,
                len: varint(ctx, &mut at) as u32,
            },
            2 => {
                let dep = varint(ctx, &mut at) as u32;
                let block = ctx[at];
                at += 1;
                Target::Extension {
                    dep,
                    block,
                    offset: varint(ctx, &mut at) as u32,
                }
            }
            _ => Target::Absolute(varint(ctx, &mut at)),
        };
        let addend = if head & 0x20 != 0 {
            let z = varint(ctx, &mut at);
            ((z >> 1) as i64) ^ -((z & 1) as i64)
        } else {
            0
        };
        let size = if head & 0x40 != 0 {
            varint(ctx, &mut at)
        } else {
            0
        };
        let (got_slot, stub) = if head & 0x80 != 0 {
            let g = (varint(ctx, &mut at) as u32).wrapping_sub(1);
            (g, (varint(ctx, &mut at) as u32).wrapping_sub(1))
        } else {
            (u32::MAX, u32::MAX)
        };
        out.push(Fixup {
            kind,
            r_type,
            func: head & 0x10 != 0,
            block,
            offset,
            target,
            addend,
            size,
            got_slot,
            stub,
        });
    }
    assert_eq!(
        at, end,
        "the fixup table of record {record} ends inside a fixup"
    );
    out
}

/// Replaces the fixup table of record `record` of `ctx` with `fixups`, encoded as the library does, and
/// updates the table's length and the context's total length. The checksum is left for the caller, and
/// so is the table of built-in addresses of a portable context (one per fixup that names a built-in): a
/// test that changes how many fixups name built-ins gets a context the restore refuses for that alone.
pub fn set_fixups(ctx: &mut Vec<u8>, record: usize, fixups: &[Fixup]) {
    let mut table = Vec::new();
    for f in fixups {
        let tag = match f.target {
            Target::Own { .. } => 0,
            Target::Builtin { .. } => 1,
            Target::Extension { .. } => 2,
            Target::Absolute(_) => 3,
        };
        let slots = f.got_slot != u32::MAX || f.stub != u32::MAX;
        table.push(
            f.kind
                | tag << 2
                | u8::from(f.func) << 4
                | u8::from(f.addend != 0) << 5
                | u8::from(f.size != 0) << 6
                | u8::from(slots) << 7,
        );
        table.push(f.block);
        if f.kind == 0 {
            put_varint(&mut table, u64::from(f.r_type));
        }
        put_varint(&mut table, u64::from(f.offset));
        match f.target {
            Target::Own { block, offset } => {
                table.push(block);
                put_varint(&mut table, offset);
            }
            Target::Builtin { start, len } => {
                put_varint(&mut table, u64::from(start));
                put_varint(&mut table, u64::from(len));
            }
            Target::Extension { dep, block, offset } => {
                put_varint(&mut table, u64::from(dep));
                table.push(block);
                put_varint(&mut table, u64::from(offset));
            }
            Target::Absolute(v) => put_varint(&mut table, v),
        }
        if f.addend != 0 {
            put_varint(&mut table, ((f.addend << 1) ^ (f.addend >> 63)) as u64);
        }
        if f.size != 0 {
            put_varint(&mut table, f.size);
        }
        if slots {
            put_varint(&mut table, u64::from(f.got_slot.wrapping_add(1)));
            put_varint(&mut table, u64::from(f.stub.wrapping_add(1)));
        }
    }
    let (at, len) = entry(ctx, record, Table::Fixups, 0);
    // The record starts a header before its first table (`entry` steps over what follows each earlier
    // record: a portable context's carried bytes, an in-place one's hashes of in-place regions).
    let record_at = entry(ctx, record, Table::Name, 0).0 - RECORD_HEADER;
    ctx.splice(at..at + len, table.iter().copied());
    // The table's length is the record header's last count.
    let count_at = record_at + 8 + 4 * Table::Fixups as usize;
    assert_eq!(
        u32_at(ctx, count_at),
        len,
        "record {record}: fixup count where expected"
    );
    ctx[count_at..count_at + 4].copy_from_slice(&(table.len() as u32).to_le_bytes());
    let total = u64::from_le_bytes(ctx[32..40].try_into().unwrap()) as usize;
    let total = total + table.len() - len;
    ctx[32..40].copy_from_slice(&(total as u64).to_le_bytes());
}
