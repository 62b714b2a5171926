//! Where things lie in a saved llext context (format 2, see `crates/llext/src/record.rs`), for tests that
//! damage one field of a real context on purpose: a 40-byte header, then per extension a record — a
//! 52-byte header whose eleven `u32` table counts start at byte 8, then the tables — followed, in portable
//! contexts, by the record's block bytes; a 64-bit checksum ends the context.

/// The tables of a record, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The extension's name.
    Name,
    /// Dependencies (record indexes).
    Deps,
    /// Names of sections and symbols.
    Strings,
    /// Blocks: address, size, alignment, token, permission, hash.
    Blocks,
    /// Regions: kind, address, size, alignment.
    Regions,
    /// Sections: name, kind, offset, size.
    Sections,
    /// Exported symbols.
    Exports,
    /// Other global symbols.
    Globals,
    /// Constructors.
    Init,
    /// Destructors.
    Fini,
    /// The fixup table.
    Fixups,
}

/// Bytes of one entry of each table, in table order.
pub const ENTRY: [usize; 11] = [1, 4, 1, 41, 25, 25, 16, 16, 8, 8, 51];

fn u32_at(ctx: &[u8], at: usize) -> usize {
    u32::from_le_bytes(ctx[at..at + 4].try_into().unwrap()) as usize
}

/// The offset of entry `entry` of `table` of record `record` in `ctx`, and how many entries that table has.
pub fn entry(ctx: &[u8], record: usize, table: Table, entry: usize) -> (usize, usize) {
    let portable = ctx[10] & 1 != 0;
    let mut pos = 40;
    for r in 0..=record {
        let mut at = pos + 52;
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
            let blocks = Table::Blocks as usize;
            for b in 0..u32_at(ctx, pos + 8 + 4 * blocks) {
                let size_at = offsets[blocks] + b * ENTRY[blocks] + 8;
                at += u64::from_le_bytes(ctx[size_at..size_at + 8].try_into().unwrap()) as usize;
            }
        }
        pos = at;
    }
    unreachable!()
}

/// Where record `record` ends (its block bytes, in a portable context, come next).
pub fn record_end(ctx: &[u8], record: usize) -> usize {
    let (at, count) = entry(ctx, record, Table::Fixups, 0);
    at + count * ENTRY[Table::Fixups as usize]
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
    /// Index into `llext::Permission::ALL`.
    pub permission: u8,
}

/// The blocks of record `record` of `ctx`.
pub fn blocks(ctx: &[u8], record: usize) -> Vec<Block> {
    let (_, count) = entry(ctx, record, Table::Blocks, 0);
    (0..count)
        .map(|i| {
            let at = entry(ctx, record, Table::Blocks, i).0;
            let word = |o: usize| u64::from_le_bytes(ctx[at + o..at + o + 8].try_into().unwrap());
            Block {
                entry: at,
                addr: word(0),
                size: word(8),
                permission: ctx[at + 32],
            }
        })
        .collect()
}
