//! Inputs that once broke `llext`, found by the fuzz targets (`fuzz/`) or the mutation tests, each kept as a
//! file under `tests/regressions/` with the outcome it must have now. Damaged contexts are remade from a
//! fresh context of today's encoding, with the same damage, so they keep testing the checks behind the
//! checksum when the format changes.
// Saves or restores portable contexts throughout: llext's `portable` feature (on by default).
#![cfg(feature = "portable")]

mod common;

use common::portable;

use common::{call, restore_all, CountingArena, ExecArena};
use llext::{Context, Error, ExportTable, LoadOptions, Registry, RestoreOptions, SaveOptions};
use llext_fixtures::context::{self, Table};

const NO_RUN: LoadOptions = LoadOptions {
    bring_up: false,
    keep_eh_frame: false,
    portable: true,
    storage: llext::Storage::Copy,
};

fn input(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Recomputes the checksum of a context after a test changed it, so that it reaches the record checks.
fn reseal(ctx: &mut [u8]) {
    let n = ctx.len() - 8;
    let sum = Context::checksum(&ctx[..n]);
    ctx[n..].copy_from_slice(&sum.to_le_bytes());
}

/// Reseals a deliberately damaged context and checks that decoding refuses it as `Error::Snapshot`.
fn assert_resealed_refused(mut ctx: Vec<u8>, what: &str) {
    reseal(&mut ctx);
    match Context::from_bytes(&ctx) {
        Err(Error::Snapshot { .. }) => {}
        Err(e) => panic!("{what}: {e}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

/// The tests on adjacent blocks were about an address at the very end of one block's content, which was
/// also the start of the next block when an arena put them back to back. Loads that record fixups now
/// leave a byte of slack after each block, so no block starts there any more: `addr`, the end of some
/// content, is not where a region of `permission` starts. (The restores these tests make still check that
/// such an address moves with its own block.)
fn assert_no_region_starts_at(
    info: &llext::ExtensionInfo,
    permission: llext::Permission,
    addr: usize,
) {
    assert!(
        !info
            .regions
            .iter()
            .any(|g| g.permission == permission && g.addr == addr),
        "a {permission:?} region starts at {addr:#x}, where another block's content ends: {:?}",
        info.regions
    );
}

/// A portable context of `libmath` and `usemath` (which links against it).
fn pair_context() -> Vec<u8> {
    let (r, _memory) = common::counting_registry();
    for stem in ["libmath", "usemath"] {
        r.load_with(
            stem,
            &llext_fixtures::bytes(&format!("{stem}-gcc-O2-pic.o")),
            &NO_RUN,
        )
        .unwrap();
    }
    r.save(&portable()).unwrap()
}

/// fuzz/load_link: in an arena the GOT (the first bytes of the read-only block) can start exactly where the
/// code block ends. Its fixup was filed as "code block, offset = its size", so the portable context of a
/// cleanly loaded extension failed to decode (`Snapshot: truncated or inconsistent record`); a place or
/// target at the start of a block now belongs to that block.
#[test]
fn fuzz_load_link_got_right_after_code_saves_and_restores() {
    let elf = input("load_link-got-after-code.o");
    let mut first = vec![0u8; 1 << 16];
    let mut second = vec![0u8; 1 << 16];
    let (memory, live) = CountingArena::new(&mut first);
    let r = Registry::new(memory, ExportTable::new(llext::LIBC_EXPORTS));
    let id = r.load_with("fuzzed", &elf, &NO_RUN).unwrap();
    let ctx = r.save(&portable()).unwrap();
    let context = Context::from_bytes(&ctx).expect("a fresh context decodes");
    let (memory2, live2) = CountingArena::new(&mut second);
    let r2 = Registry::new(memory2, ExportTable::new(llext::LIBC_EXPORTS));
    r2.restore(&context, &RestoreOptions::default()).unwrap();
    // Every region still lies inside the block of its permission.
    let info = r2.info(r2.get("fuzzed").unwrap()).unwrap();
    for region in &info.regions {
        let same = info
            .regions
            .iter()
            .filter(|o| o.permission == region.permission);
        let start = same.clone().map(|o| o.addr).min().unwrap();
        let others: Vec<_> = info
            .regions
            .iter()
            .filter(|o| o.permission != region.permission)
            .collect();
        assert!(
            others
                .iter()
                .all(|o| o.addr < start || o.addr >= region.addr + region.size),
            "{info:#?}"
        );
    }
    r2.unload(r2.get("fuzzed").unwrap()).unwrap();
    r.unload(id).unwrap();
    assert_eq!(live.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(live2.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// The same boundary on real objects, end to end: extensions loaded into one executable arena, saved
/// portably and restored into another keep working — so every place and target next to a block boundary
/// moved with the right block.
#[test]
fn portable_restore_from_arena_to_arena_keeps_code_working() {
    for v in llext_fixtures::variants() {
        let mut a = ExecArena::new(1 << 20);
        let mut b = ExecArena::new(1 << 20);
        let r = Registry::new(
            llext::ArenaMemory::new(a.bytes()),
            ExportTable::new(llext::LIBC_EXPORTS),
        );
        for stem in ["basic", "libmath", "usemath", "farcall"] {
            r.load(stem, &v.bytes(stem))
                .unwrap_or_else(|e| panic!("{v} {stem}: {e}"));
        }
        assert_eq!(call(&r, "use_math", &[5]), 15, "{v}");
        assert_eq!(call(&r, "basic_counter", &[]), 1, "{v}");
        let ctx = r.save(&portable()).unwrap();
        let context = Context::from_bytes(&ctx).unwrap_or_else(|e| panic!("{v}: {e}"));
        let r2 = Registry::new(
            llext::ArenaMemory::new(b.bytes()),
            ExportTable::new(llext::LIBC_EXPORTS),
        );
        r2.restore(&context, &RestoreOptions::default())
            .unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(call(&r2, "use_math", &[5]), 20, "{v}");
        assert_eq!(call(&r2, "basic_counter", &[]), 2, "{v}");
        assert_eq!(call(&r2, "basic_switch", &[4, 10]), 95, "{v}");
        assert_eq!(call(&r2, "basic_strings", &[]), 8, "{v}");
        assert_eq!(call(&r2, "far_format", &[1, 2, 3, 4, 5, 6]), 11, "{v}");
        drop(r2);
        drop(r);
    }
}

/// fuzz/snapshot_restore: a resealed context whose section record says offset 0xffffffffff000000 was
/// accepted, and describing the restored extension overflowed (`attempt to add with overflow` in
/// `Registry::info`). Sections must lie inside their region, regions inside their block. (The fuzzer's
/// input was in the first context encoding; the same damage is made here to a context of today's.)
#[test]
fn fuzz_snapshot_section_offset_overflow_is_refused() {
    let mut ctx = pair_context();
    let (at, count) = context::entry(&ctx, 0, Table::Sections, 0);
    assert!(count > 0);
    let offset = at + context::SECTION_OFFSET;
    ctx[offset..offset + 4].copy_from_slice(&0xff00_0000u32.to_le_bytes());
    assert_resealed_refused(ctx, "section offset 0xff000000");
}

/// Loads a RISC-V (RV64) object into a low arena, with `host_log` as the only built-in.
fn load_riscv64(elf: &[u8]) -> Result<(), Error> {
    let mut arena = ExecArena::new(1 << 20);
    let mut host = ExecArena::new(4096);
    let builtins = ExportTable::new(&[llext::Export::new(
        "host_log",
        host.bytes().as_ptr() as *const (),
    )]);
    let (memory, live) = CountingArena::new(arena.bytes());
    let r = Registry::for_machine(memory, builtins, 243);
    let result = r.load_with("damaged", elf, &NO_RUN).map(|id| {
        r.unload(id).unwrap();
    });
    assert!(r.is_empty());
    assert_eq!(live.load(std::sync::atomic::Ordering::SeqCst), 0);
    result
}

/// tests/mutation.rs (class "huge"): a `R_RISCV_PCREL_HI20` with addend `i64::MAX` overflowed computing
/// `S + A - P` (`attempt to add with overflow` in the RISC-V backend). The psABI computes modulo 2^64; the
/// wrapped value is out of the instruction's reach, a typed relocation error.
#[test]
fn mutation_riscv64_addend_i64_max_is_out_of_reach() {
    let err = load_riscv64(&input("riscv64-pcrel-hi20-addend-i64-max.o")).unwrap_err();
    assert!(
        err.problems().iter().any(|p| matches!(
            p,
            Error::BadRelocation {
                kind: "R_RISCV_PCREL_HI20",
                ..
            }
        )),
        "{err}"
    );
}

/// tests/mutation.rs (class "reloc-offset"): the same relocation placed at offset 2^63 overflowed
/// computing `S + A - P` for its LO partners before the place was checked. It is a place outside its
/// section now.
#[test]
fn mutation_riscv64_place_at_2_63_is_outside_its_section() {
    let err = load_riscv64(&input("riscv64-pcrel-hi20-offset-2-63.o")).unwrap_err();
    assert!(
        err.problems().iter().any(|p| matches!(
            p,
            Error::BadRelocation { kind: "R_RISCV_PCREL_HI20", offset: 0x8000_0000_0000_0000, reason, .. }
                if reason.contains("outside")
        )),
        "{err}"
    );
}

/// fuzz/snapshot_restore: a context whose fixup targets another extension at an offset past that
/// extension's block was restored, and saving the registry afterwards failed with
/// `Internal("fixup target outside its extension")`. Contexts now name such targets by their index in the
/// extension's own dependency list (this input, in the earlier encoding, names one the list does not have)
/// and a portable restore checks the offset against the dependency's block; either way the context is
/// refused with a typed error and every block is given back.
#[test]
fn fuzz_snapshot_extension_target_outside_its_block_is_refused() {
    let mut ctx = pair_context();
    // The first fixup of `usemath` that targets `libmath` now points far past libmath's block.
    let mut fixups = context::fixups(&ctx, 1);
    let into_libmath = fixups
        .iter_mut()
        .find_map(|f| match &mut f.target {
            context::Target::Extension { offset, .. } => Some(offset),
            _ => None,
        })
        .expect("usemath has a fixup into libmath");
    *into_libmath = 0xffff_0000;
    context::set_fixups(&mut ctx, 1, &fixups);
    reseal(&mut ctx);
    let (r, memory) = common::counting_registry();
    let refused = match Context::from_bytes(&ctx) {
        Err(e) => e,
        Ok(context) => match r.restore(&context, &RestoreOptions::default()) {
            Err(e) => e,
            Ok(_) => panic!("restored"),
        },
    };
    assert!(
        matches!(
            refused,
            Error::Snapshot { .. } | Error::SnapshotDependency { .. }
        ),
        "{refused}"
    );
    assert!(r.is_empty());
    assert_eq!(memory.live(), 0);
}

/// fuzz/snapshot_restore: a context whose region alignment was 2^63 + 8 restored, and the context saved
/// from the restored registry no longer decoded (its block alignment, derived from the regions, was not a
/// power of two). Alignments are now kept as their log2, so every one is a power of two; what is left to
/// refuse is a log2 of 64 or more, and a region aligned more strictly than its block.
#[test]
fn fuzz_snapshot_region_alignment_out_of_range_is_refused() {
    let clean = pair_context();
    let (at, count) = context::entry(&clean, 0, Table::Regions, 0);
    assert!(count > 0);
    for log2 in [64u8, 200, 63, 40] {
        let mut ctx = clean.clone();
        ctx[at + context::REGION_ALIGN] = log2;
        assert_resealed_refused(ctx, &format!("region alignment log2 {log2}"));
    }
}

/// Review of the restore path: `validate` checked each section against the *last* region of its kind,
/// while `Registry::info` placed it in the *first*. A forged record with two regions of one kind (the first
/// at the top of the address space) restored, and `info` then overflowed computing the section's address
/// (a panic in debug builds, a wrong address in release). A load makes one region per kind, copied or in
/// place, so a second one is refused.
#[test]
fn two_regions_of_one_kind_are_refused() {
    let clean = pair_context();
    let (first, count) = context::entry(&clean, 0, Table::Regions, 0);
    assert!(count >= 2, "libmath has {count} regions");
    for other in 1..count {
        let (at, _) = context::entry(&clean, 0, Table::Regions, other);
        let mut ctx = clean.clone();
        ctx.copy_within(first..first + context::ENTRY[Table::Regions as usize], at);
        assert_resealed_refused(ctx, &format!("region 0 copied over region {other}"));
    }
}

/// fuzz/snapshot_restore, once registries restore contexts of their own pointer width (so Arm contexts
/// reach the Arm backend on a host): a damaged Arm context whose fixup addend did not fit 32 bits overflowed
/// `(S + A) | T` in the backend (`attempt to add with overflow`). Arm addends are 32-bit; a larger one is
/// now a typed error, and the restore leaves nothing behind. `arm-thumb-cross.o` is the fuzz seeds' cross
/// source built by `clang --target=thumbv7m-none-eabi -O2`.
#[test]
fn fuzz_snapshot_restore_arm_addend_beyond_32_bits_is_refused() {
    let elf = input("arm-thumb-cross.o");
    let mut first = ExecArena::new(1 << 20);
    let mut second = ExecArena::new(1 << 20);
    let mut host = ExecArena::new(4096);
    let host_log = host.bytes().as_ptr() as *const ();
    let builtins = || ExportTable::new(&[llext::Export::new("host_log", host_log)]);
    let table = builtins();
    let (memory, _) = CountingArena::new(first.bytes());
    let r = Registry::for_machine(memory, table, 40);
    r.load_with("cross", &elf, &NO_RUN).unwrap();
    let clean = r.save(&portable()).unwrap();
    let fixups = context::fixups(&clean, 0);
    assert!(!fixups.is_empty());
    let (memory2, live2) = CountingArena::new(second.bytes());
    let r2 = Registry::for_machine(memory2, builtins(), 40);
    for f in 0..fixups.len() {
        let mut ctx = clean.clone();
        let mut damaged = fixups.clone();
        damaged[f].addend = i64::MAX;
        context::set_fixups(&mut ctx, 0, &damaged);
        reseal(&mut ctx);
        let context = Context::from_bytes(&ctx).expect("the checks before restore pass");
        match r2.restore(&context, &RestoreOptions::default()) {
            // A fixup whose type ignores the addend (a GOT slot, a stub) restores; undo it.
            Ok(ids) => {
                for id in ids {
                    r2.unload(id).unwrap();
                }
            }
            Err(e) => assert!(!matches!(e, Error::Internal(_)), "fixup {f}: {e}"),
        }
        assert!(r2.is_empty());
        assert_eq!(live2.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}

/// fuzz/snapshot_restore: a portable context whose read-only block had grown one byte into the read-write
/// block after it restored, and the data region starting where both met moved with the read-only block;
/// the context saved from the restored registry no longer decoded. Blocks must not overlap (nor share a
/// permission). Damaged here in an in-place context, where nothing else about it is wrong.
#[test]
fn fuzz_snapshot_overlapping_blocks_are_refused() {
    let (r, _memory) = common::counting_registry();
    r.load_with(
        "basic",
        &llext_fixtures::bytes("basic-gcc-O2-pic.o"),
        &NO_RUN,
    )
    .unwrap();
    let mut ctx = r.save(&SaveOptions::default()).unwrap();
    let blocks = context::blocks(&ctx, 0);
    let (first, second) = (blocks[0], blocks[1]);
    let (low, high) = if first.addr < second.addr {
        (first, second)
    } else {
        (second, first)
    };
    let grown = high.addr - low.addr + 1; // one byte into the next block
    let size = low.entry + context::BLOCK_SIZE;
    ctx[size..size + 4].copy_from_slice(&(grown as u32).to_le_bytes());
    assert_resealed_refused(ctx, "overlapping blocks");
}

/// The other half of the finding above: a region that is empty and lies where its block ends (where
/// another block could start: blocks were adjacent in an arena before loads left a byte of slack) must move
/// with the block of its own permission, so that what a portable restore produces saves and decodes again.
#[test]
fn empty_region_where_blocks_meet_moves_with_its_own_block() {
    let mut first = vec![0u8; 1 << 20];
    let mut second = vec![0u8; 1 << 20];
    let (memory, _) = CountingArena::new(&mut first);
    let r = Registry::new(memory, ExportTable::new(llext::LIBC_EXPORTS));
    r.load_with(
        "basic",
        &llext_fixtures::bytes("basic-gcc-O2-pic.o"),
        &NO_RUN,
    )
    .unwrap();
    let mut ctx = r.save(&portable()).unwrap();
    let blocks = context::blocks(&ctx, 0);
    // A block, and a region of its permission that holds no section (stubs or GOT), made empty and moved
    // to the end of the block.
    let kinds_with_sections: Vec<u8> = {
        let (_, n) = context::entry(&ctx, 0, Table::Sections, 0);
        (0..n)
            .map(|i| {
                ctx[context::entry(&ctx, 0, Table::Sections, i).0 + context::SECTION_KIND] & 0x7f
            })
            .collect()
    };
    let (_, regions) = context::entry(&ctx, 0, Table::Regions, 0);
    let permission_of = |kind: u8| llext::RegionKind::ALL[kind as usize].permission();
    let perm_byte =
        |p: llext::Permission| llext::Permission::ALL.iter().position(|&q| q == p).unwrap() as u8;
    let (region_at, end) = blocks
        .iter()
        .find_map(|a| {
            (0..regions).find_map(|i| {
                let at = context::entry(&ctx, 0, Table::Regions, i).0;
                let kind = ctx[at] & 0x7f;
                (perm_byte(permission_of(kind)) == a.permission
                    && !kinds_with_sections.contains(&kind))
                .then_some((at, a.addr + a.size))
            })
        })
        .expect("an arena load of basic has a section-less region");
    let (addr, size) = (
        region_at + context::REGION_ADDR,
        region_at + context::REGION_SIZE,
    );
    ctx[addr..addr + 8].copy_from_slice(&end.to_le_bytes());
    ctx[size..size + 4].copy_from_slice(&0u32.to_le_bytes());
    reseal(&mut ctx);
    let context = Context::from_bytes(&ctx).expect("an empty region at its block's end is valid");
    // Restored blocks lie apart, so the block that followed no longer starts where the region's ends.
    let r2 = Registry::new(
        Gapped(llext::ArenaMemory::new(&mut second)),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    r2.restore(&context, &RestoreOptions::default()).unwrap();
    let again = r2.save(&SaveOptions::default()).unwrap();
    Context::from_bytes(&again).expect("the restored registry's context decodes");
}

/// An arena that leaves 64 unused bytes before every block it hands out.
struct Gapped<'a>(llext::ArenaMemory<'a>);

// SAFETY: every block comes from the wrapped arena; the gaps are allocated and never handed out.
unsafe impl llext::Memory for Gapped<'_> {
    fn allocate(&mut self, request: &llext::BlockRequest) -> llext::Result<llext::Block> {
        // The gap stays allocated in the arena's books (never freed, never handed out).
        self.0.allocate(&llext::BlockRequest {
            size: 64,
            align: 1,
            permission: llext::Permission::ReadWrite,
        })?;
        self.0.allocate(request)
    }

    fn finalize(
        &mut self,
        block: &llext::Block,
        permission: llext::Permission,
    ) -> llext::Result<()> {
        self.0.finalize(block, permission)
    }

    fn free(&mut self, block: llext::Block) {
        self.0.free(block)
    }
}

/// Review of the single-pass fixup checks: a portable RISC-V restore gathers every HI part of an extension
/// before the apply pass reaches it, and used HI fixups not yet checked. A HI part whose target offset was
/// `u64::MAX` overflowed (`attempt to add with overflow` computing its target). Every fixup that walk uses
/// is now checked first; the restore is refused and leaves nothing behind.
#[test]
fn unchecked_hi_part_ahead_of_the_apply_pass_is_refused() {
    const SOURCE: &str = r#"
long table[4];
long counter;
void host_log(long v);
long use_both(long i) { counter += i; host_log(counter); return table[i & 3]; }
"#;
    let elf = common::compile_for("riscv64-unknown-elf", SOURCE, &["-O2", "-mcmodel=medany"]);
    let mut first = ExecArena::new(1 << 20);
    let mut second = ExecArena::new(1 << 20);
    let mut host = ExecArena::new(4096);
    let host_log = host.bytes().as_ptr() as *const ();
    let builtins = || ExportTable::new(&[llext::Export::new("host_log", host_log)]);
    let (memory, _) = CountingArena::new(first.bytes());
    let r = Registry::for_machine(memory, builtins(), 243);
    r.load_with("pairs", &elf, &NO_RUN).unwrap();
    let clean = r.save(&portable()).unwrap();
    const R_RISCV_PCREL_HI20: u32 = 23;
    let fixups = context::fixups(&clean, 0);
    let last_hi = fixups
        .iter()
        .rposition(|f| {
            f.kind == 0
                && f.r_type == R_RISCV_PCREL_HI20
                && matches!(f.target, context::Target::Own { .. })
        })
        .expect("a PCREL_HI20 into the extension's own blocks");
    let mut damaged = fixups.clone();
    damaged[last_hi].target = context::Target::Own {
        block: 0,
        offset: u64::MAX,
    };
    let mut ctx = clean.clone();
    context::set_fixups(&mut ctx, 0, &damaged);
    reseal(&mut ctx);
    let context = Context::from_bytes(&ctx).expect("fixups are checked by the restore");
    let (memory2, live2) = CountingArena::new(second.bytes());
    let r2 = Registry::for_machine(memory2, builtins(), 243);
    match r2.restore(&context, &RestoreOptions::default()) {
        Err(Error::Snapshot { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(r2.is_empty());
    assert_eq!(live2.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Review of the restore path: `HostMemory::adopt` ignored the permission it adopted a block with. A
/// forged in-place context that called a code block read-write (its regions and sections turned from
/// text to data to stay consistent) restored; unloading it then gave the still read-execute pages to the
/// read-write zone, and the next load crashed writing to them. A block is now adopted only with the
/// permission of the zone it lies in.
#[test]
fn adopting_code_pages_as_data_is_refused() {
    let r = Registry::new(
        llext::HostMemory::new(),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    r.load_with(
        "weak",
        &llext_fixtures::bytes("weak-gcc-O2-nopic.o"),
        &NO_RUN,
    )
    .unwrap();
    let genuine = r.save(&SaveOptions::default()).unwrap();
    assert_eq!(r.forget_all(), Ok(1));
    let position =
        |p: llext::Permission| llext::Permission::ALL.iter().position(|&q| q == p).unwrap() as u8;
    let kind =
        |k: llext::RegionKind| llext::RegionKind::ALL.iter().position(|&q| q == k).unwrap() as u8;
    let blocks = context::blocks(&genuine, 0);
    assert_eq!(blocks.len(), 1, "the fixture loads into one block");
    assert_eq!(
        blocks[0].permission,
        position(llext::Permission::ReadExecute)
    );

    let mut forged = genuine.clone();
    forged[blocks[0].entry + context::BLOCK_PERMISSION] = position(llext::Permission::ReadWrite);
    // Code becomes data, stubs zero-filled data: the two read-write kinds (the fixture's empty `.data` and
    // `.bss` sections stay as they are).
    let as_data = [
        (llext::RegionKind::Text, llext::RegionKind::Data),
        (llext::RegionKind::Stubs, llext::RegionKind::Bss),
        (llext::RegionKind::Data, llext::RegionKind::Data),
        (llext::RegionKind::Bss, llext::RegionKind::Bss),
    ]
    .map(|(from, to)| (kind(from), kind(to)));
    for (table, kind_at) in [
        (Table::Regions, 0),
        (Table::Sections, context::SECTION_KIND),
    ] {
        let (_, n) = context::entry(&forged, 0, table, 0);
        for i in 0..n {
            let at = context::entry(&forged, 0, table, i).0 + kind_at;
            let (_, to) = as_data
                .iter()
                .find(|(from, _)| *from == forged[at] & 0x7f)
                .unwrap_or_else(|| {
                    panic!("kind {} in {table:?}: not in the one block", forged[at])
                });
            forged[at] = (forged[at] & 0x80) | to;
        }
    }
    reseal(&mut forged);
    let context = Context::from_bytes(&forged).expect("the forged record is consistent");
    match r.restore(&context, &RestoreOptions::default()) {
        Err(Error::Memory { .. }) => {}
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("code pages adopted as read-write data"),
    }
    assert!(r.is_empty());
    // Nothing was taken: the genuine context still gets the pages back, and a new load works beside them.
    let ids = r
        .restore(
            &Context::from_bytes(&genuine).unwrap(),
            &RestoreOptions::default(),
        )
        .unwrap();
    let other = r
        .load_with(
            "libmath",
            &llext_fixtures::bytes("libmath-gcc-O2-nopic.o"),
            &NO_RUN,
        )
        .unwrap();
    assert_eq!(r.unload(other), Ok(llext::Unloaded::Freed));
    assert_eq!(r.unload(ids[0]), Ok(llext::Unloaded::Freed));
}

/// Review of the load path: a fixup target of the extension's own was found by address alone, and an
/// address at the very end of one block is also the start of the next when the provider put them back to
/// back. A label at the end of `.text` (padded to 16 bytes, so the arena puts `.rodata` right after it)
/// was recorded as offset 0 of the read-only block; a portable restore that moved the blocks apart then
/// moved the label with the wrong block. A symbol is now placed in the block of its own section.
#[test]
fn a_label_at_the_end_of_a_block_stays_with_its_section() {
    let source = "static const char ro_data[16] __attribute__((used)) = \"0123456789abcdef\";\n\
                  extern const char text_end[];\n\
                  long span(void) { return (long)(text_end - (const char *)span) + ro_data[0] - '0'; }\n\
                  __asm__(\".text\\n.p2align 4\\n.globl text_end\\ntext_end:\\n\");\n";
    let elf = common::compile_c(
        source,
        &[
            "-fno-pic",
            "-fno-toplevel-reorder",
            "-fno-asynchronous-unwind-tables",
        ],
    );
    let mut first = ExecArena::new(1 << 20);
    let mut second = ExecArena::new(1 << 20);
    let r = Registry::new(
        llext::ArenaMemory::new(first.bytes()),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    let id = r.load_with("span", &elf, &NO_RUN).unwrap();
    let expected = call(&r, "span", &[]);
    assert!(expected > 0 && expected % 16 == 0, "{expected}");
    // The label ends the code; the read-only block no longer starts there.
    let end = r.find_symbol("text_end").unwrap();
    let info = r.info(id).unwrap();
    assert_no_region_starts_at(&info, llext::Permission::ReadOnly, end);
    let ctx = r.save(&portable()).unwrap();
    let r2 = Registry::new(
        Gapped(llext::ArenaMemory::new(second.bytes())),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    restore_all(&r2, &ctx);
    assert_eq!(call(&r2, "span", &[]), expected);
}

/// The two places a label at the very end of a block was still placed by address after stop 11's fix of
/// the fixups: a portable restore moved the record's globals and exports with the block that starts where
/// the label's block ends, and an extension linking against such an exported label recorded it in the
/// exporter's next block. Each symbol record now carries the block of its own section (context format 4).
#[test]
fn exported_and_global_labels_at_the_end_of_a_block_stay_with_their_section() {
    let exporter = "struct llext_symbol { const char *name; const void *addr; };\n\
                    static const char ro_data[16] __attribute__((used)) = \"0123456789abcdef\";\n\
                    extern const char text_end[];\n\
                    long span(void) { return (long)(text_end - (const char *)span) + ro_data[0] - '0'; }\n\
                    static const struct llext_symbol end_export __attribute__((section(\".exported_sym\"), used)) =\n\
                        { \"the_end\", text_end };\n\
                    __asm__(\".text\\n.p2align 4\\n.globl text_end\\ntext_end:\\n\");\n";
    let user = "extern const char the_end[];\n\
                long where_end(void) { return (long)the_end; }\n";
    let flags = [
        "-fno-pic",
        "-fno-toplevel-reorder",
        "-fno-asynchronous-unwind-tables",
    ];
    let exporter = common::compile_c(exporter, &flags);
    let user = common::compile_c(user, &flags);
    let mut first = ExecArena::new(1 << 20);
    let mut second = ExecArena::new(1 << 20);
    let r = Registry::new(
        llext::ArenaMemory::new(first.bytes()),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    let id = r.load_with("ends", &exporter, &NO_RUN).unwrap();
    r.load_with("user", &user, &NO_RUN).unwrap();
    let span = call(&r, "span", &[]);
    let end = r.find_symbol("text_end").unwrap();
    assert_eq!(end, r.find_symbol("span").unwrap() + span as usize);
    assert_eq!(r.find_symbol("the_end"), Some(end));
    assert_eq!(call(&r, "where_end", &[]), end as i64);
    // The label ends the code; the read-only block no longer starts there.
    let info = r.info(id).unwrap();
    assert_no_region_starts_at(&info, llext::Permission::ReadOnly, end);
    let ctx = r.save(&portable()).unwrap();
    let r2 = Registry::new(
        Gapped(llext::ArenaMemory::new(second.bytes())),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    restore_all(&r2, &ctx);
    let end = r2.find_symbol("span").unwrap() + call(&r2, "span", &[]) as usize;
    assert_eq!(r2.find_symbol("text_end"), Some(end), "global");
    assert_eq!(r2.find_symbol("the_end"), Some(end), "export");
    assert_eq!(call(&r2, "where_end", &[]), end as i64, "user's reference");
}

/// A context's symbol names the block it moves with; a block that does not hold the symbol's address (or
/// end there), or that the record does not have, is refused before anything is restored.
#[test]
fn a_symbol_outside_its_block_is_refused() {
    let ctx = pair_context();
    for table in [Table::Exports, Table::Globals] {
        let (at, n) = context::entry(&ctx, 0, table, 0);
        assert!(n > 0, "libmath has {table:?}");
        let (blocks_at, blocks) = context::entry(&ctx, 0, Table::Blocks, 0);
        let block = ctx[at + context::SYM_BLOCK] as usize;
        assert!(block < blocks, "{table:?} 0 lies in a block");
        let size = u32::from_le_bytes(
            ctx[blocks_at + block * context::ENTRY[Table::Blocks as usize] + context::BLOCK_SIZE..]
                [..4]
                .try_into()
                .unwrap(),
        );
        let mut damaged = ctx.clone();
        damaged[at + context::SYM_BLOCK] = blocks as u8;
        assert_resealed_refused(damaged, "a block the record does not have");
        let mut damaged = ctx.clone();
        let addr = u64::from_le_bytes(ctx[at + context::SYM_ADDR..][..8].try_into().unwrap());
        damaged[at + context::SYM_ADDR..][..8]
            .copy_from_slice(&(addr + u64::from(size) + 1).to_le_bytes());
        assert_resealed_refused(damaged, "an address past its block's end");
    }
}

/// The address field of one export, read from the extension's memory.
fn export_field<M: llext::Memory>(r: &Registry<M>, name: &str, entry: usize) -> u64 {
    let info = r.info(r.get(name).unwrap()).unwrap();
    let table = info
        .regions
        .iter()
        .find(|g| g.kind == llext::RegionKind::Exports)
        .unwrap();
    // SAFETY: reading an entry of the loaded extension's export table ({name, address} pairs).
    unsafe { ((table.addr + 16 * entry + 8) as *const u64).read_unaligned() }
}

/// Review of the portable restore: when an extension's blocks come back at their saved addresses, the
/// fixups among them are skipped. With two relocations at one place — a built-in's first, then the
/// extension's own (the last one wins) — the restore applied the first (the built-in may have moved)
/// and skipped the second, so the place held the built-in. A skipped fixup is now applied after all
/// when an applied one wrote over its bytes.
#[test]
fn a_skipped_fixup_under_an_applied_one_is_applied_again() {
    let source = "__asm__(\".section .rodata.str1.1,\\\"aMS\\\",@progbits,1\\nname: .asciz \\\"cell\\\"\\n\
                  .data\\n.p2align 3\\n.globl own\\nown: .quad 42\\n\
                  .section .exported_sym,\\\"a\\\"\\n.p2align 3\\nentry: .quad name\\nfield: .quad 0\\n\
                  .reloc field, R_X86_64_64, puts\\n.reloc field, R_X86_64_64, own\\n\");\n";
    let object = common::compile_c(source, &["-fPIC"]);
    let mut arena = ExecArena::new(1 << 20);
    let ctx = {
        let r = Registry::new(
            llext::ArenaMemory::new(arena.bytes()),
            ExportTable::new(llext::LIBC_EXPORTS),
        );
        let id = r.load_with("cell", &object, &NO_RUN).unwrap();
        let own = r.find_symbol("own").unwrap();
        assert_eq!(export_field(&r, "cell", 0), own as u64, "the last one wins");
        assert_eq!(r.find_symbol("cell"), Some(own));
        let ctx = r.save(&portable()).unwrap();
        r.unload(id).unwrap();
        ctx
    };
    // The same names, `puts` elsewhere; the same arena, so the blocks come back where they were.
    let moved = common::libc_exports_moving("puts", libc::fputs as *const ());
    let r = Registry::new(
        llext::ArenaMemory::new(arena.bytes()),
        ExportTable::new(&moved),
    );
    restore_all(&r, &ctx);
    let own = r.find_symbol("own").unwrap();
    assert_eq!(r.find_symbol("cell"), Some(own));
    assert_eq!(
        export_field(&r, "cell", 0),
        own as u64,
        "the place after the restore"
    );
}

/// Review of the export blocks: an export's address field written whole by one relocation and in part
/// by another (here its upper half, by a missing weak symbol) took the first one's block. Saved from low
/// memory and restored high, the record's address moved with that block while the table held what the
/// two relocations make at the new address. Such an export moves with no block: a portable save first
/// refused it, and now the restored export takes what its table entry holds.
#[test]
fn an_export_written_in_part_by_another_relocation_is_what_its_entry_holds() {
    let source = "__asm__(\".section .rodata.str1.1,\\\"aMS\\\",@progbits,1\\nname: .asciz \\\"half\\\"\\n\
                  .data\\n.p2align 3\\n.globl own\\nown: .quad 42\\n.weak nothing\\n\
                  .section .exported_sym,\\\"a\\\"\\n.p2align 3\\nentry: .quad name\\nfield: .quad 0\\n\
                  .reloc field, R_X86_64_64, own\\n.reloc field+4, R_X86_64_32, nothing\\n\");\n";
    let object = common::compile_c(source, &["-fPIC"]);
    let mut low = ExecArena::new(1 << 20);
    let r = Registry::new(
        llext::ArenaMemory::new(low.bytes()),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    r.load_with("half", &object, &NO_RUN).unwrap();
    assert_eq!(r.find_symbol("half"), r.find_symbol("own"));
    let ctx = r.save(&portable()).unwrap();
    let mut high = vec![0u8; 1 << 20];
    assert!(
        high.as_ptr() as u64 > u64::from(u32::MAX),
        "the heap lies above 4 GiB"
    );
    let r2 = Registry::new(
        llext::ArenaMemory::new(&mut high),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    restore_all(&r2, &ctx);
    let own = r2.find_symbol("own").unwrap() as u64;
    assert_eq!(
        export_field(&r2, "half", 0),
        own & 0xffff_ffff,
        "the upper half is the weak 0"
    );
    assert_eq!(
        r2.find_symbol("half").map(|a| a as u64),
        Some(export_field(&r2, "half", 0)),
        "the export is what its entry holds"
    );
}

/// Review of the changed pointers of a portable restore: a pointer walked to one past the end of the array
/// it was linked to is also the start of the next block when the provider put the blocks back to back, and
/// it moved with that block. The block of the pointer's own link-time target now wins.
#[test]
fn a_pointer_walked_to_the_end_of_its_array_stays_with_it() {
    let source = "static const long table[4] = {1, 2, 3, 4};\n\
                  static long buf[4];\n\
                  static long *wp = buf;\n\
                  long fill(void) { long i = 0; while (wp != buf + 4) *wp++ = table[i++]; return i; }\n\
                  long wp_at_end(void) { return wp == buf + 4; }\n\
                  static const long *rp = table;\n\
                  long sum(void) { long s = 0; while (rp != table + 4) s += *rp++; return s; }\n\
                  long rp_at_end(void) { return rp == table + 4; }\n\
                  long table_end(void) { return (long)(table + 4); }\n";
    let object = common::compile_c(source, &["-O2", "-fPIC", "-fno-asynchronous-unwind-tables"]);
    let mut arena = ExecArena::new(1 << 20);
    let r = Registry::new(
        llext::ArenaMemory::new(arena.bytes()),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    let id = r.load("walk", &object).unwrap();
    assert_eq!(call(&r, "fill", &[]), 4);
    assert_eq!(call(&r, "sum", &[]), 10);
    assert_eq!(call(&r, "rp_at_end", &[]), 1);
    // The table ends the read-only block; the read-write block no longer starts there.
    let end = call(&r, "table_end", &[]) as usize;
    let info = r.info(id).unwrap();
    assert_no_region_starts_at(&info, llext::Permission::ReadWrite, end);
    let ctx = r.save(&portable()).unwrap();
    let elsewhere = common::registry();
    restore_all(&elsewhere, &ctx);
    assert_eq!(call(&elsewhere, "rp_at_end", &[]), 1);
    assert_eq!(call(&elsewhere, "wp_at_end", &[]), 1);
    assert_eq!(call(&elsewhere, "sum", &[]), 0, "nothing left to add");
}

/// Review of the portable restore on RISC-V: a `SETn`/`SUBn` pair (a label difference, as in every
/// `DW_CFA_advance_loc` of a kept `.eh_frame`) was replayed as `SETn` at the new addresses followed by
/// `SUBn` by how far its label moved, which lost the difference. A `SUBn` after a `SETn` written afresh
/// is now applied in full: only the PC-relative fields of the `.eh_frame` change.
#[test]
fn riscv_label_differences_survive_a_portable_restore() {
    let source = "extern long g(long);\n\
                  long f(long x) { long a = g(x); long b = g(a + 1); return a * b + g(b); }\n\
                  long h(long x) { return g(x) + 3; }\n";
    let object = common::compile_for(
        "riscv64-unknown-elf",
        source,
        &["-O2", "-mrelax", "-fasynchronous-unwind-tables"],
    );
    let options = LoadOptions {
        keep_eh_frame: true,
        ..LoadOptions::default()
    };
    fn eh_frame<M: llext::Memory>(r: &Registry<M>, id: llext::ExtId) -> Vec<u8> {
        let info = r.info(id).unwrap();
        let s = info
            .sections
            .iter()
            .find(|s| s.name == ".eh_frame")
            .unwrap();
        // SAFETY: the section lies in a live block of the registry.
        unsafe { std::slice::from_raw_parts(s.addr as *const u8, s.size) }.to_vec()
    }
    let mut first = ExecArena::new(1 << 20);
    let mut second = ExecArena::new(1 << 20);
    // Within reach of the calls (never called: the code is RISC-V).
    let g = first.bytes().as_ptr() as usize + (1 << 19);
    let table = [llext::Export::new("g", g as *const ())];
    let a = Registry::for_machine(
        llext::ArenaMemory::new(&mut first.bytes()[4..]),
        ExportTable::new(&table),
        243,
    );
    let id = a.load_with("eh", &object, &options).unwrap();
    let before = eh_frame(&a, id);
    let ctx = a.save(&portable()).unwrap();
    let b = Registry::for_machine(
        llext::ArenaMemory::new(&mut second.bytes()[64..]),
        ExportTable::new(&table),
        243,
    );
    let ids = restore_all(&b, &ctx);
    let after = eh_frame(&b, ids[0]);
    assert_eq!(before.len(), after.len());
    // The pc_begin field of each FDE (PC-relative, R_RISCV_32_PCREL) is all that may change.
    let mut pc_begin = Vec::new();
    let mut at = 0;
    while at + 8 <= before.len() {
        let word = |i: usize| u32::from_le_bytes(before[i..i + 4].try_into().unwrap()) as usize;
        let (len, id) = (word(at), word(at + 4));
        if len == 0 {
            break;
        }
        if id != 0 {
            pc_begin.push(at + 8..at + 12);
        }
        at += 4 + len;
    }
    assert!(pc_begin.len() >= 2, "one FDE per function");
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i] && !pc_begin.iter().any(|r| r.contains(&i)))
        .collect();
    assert!(
        changed.is_empty(),
        "bytes changed outside pc_begin: {changed:x?}"
    );
}

/// Review of the changed pointers: on a 32-bit target a changed pointer moved above 4 GiB was cut to its
/// low 32 bits, where the linker and every other fixup refuse an address that does not fit. An RV32
/// context restored into memory above 4 GiB is now refused whether its pointer changed or not, as a
/// context that cannot go there (`SnapshotReach`), not a broken one. So is a `-fPIC` one, which reaches its
/// data through GOT slots only (a review's check: they must not be cut to their low 32 bits either).
#[test]
fn a_changed_32_bit_pointer_that_does_not_fit_is_refused() {
    let object = common::compile_for(
        "riscv32-unknown-elf",
        "int a[2] = {1, 2};\nint *p = &a[0];\n",
        &["-O2"],
    );
    let pic = common::compile_for(
        "riscv32-unknown-elf",
        "int x = 7;\nint *where(void) { return &x; }\n",
        &["-O2", "-fPIC"],
    );
    let mut low = ExecArena::new(1 << 20);
    let mut high = vec![0u8; 1 << 20];
    assert!(
        high.as_ptr() as u64 > u64::from(u32::MAX),
        "the heap lies above 4 GiB"
    );
    for (object, change) in [(&object, false), (&object, true), (&pic, false)] {
        let ctx = {
            let r = Registry::for_machine(
                llext::ArenaMemory::new(low.bytes()),
                ExportTable::default(),
                243,
            );
            let id = r.load("d", object).unwrap();
            if change {
                let p = r.extension_symbol(id, "p").unwrap().unwrap();
                let a = r.extension_symbol(id, "a").unwrap().unwrap();
                // SAFETY: `p` is a 4-byte word in the extension's live read-write block: `p = &a[1]`.
                unsafe { (p as *mut u32).write_unaligned(a as u32 + 4) };
            }
            r.save(&portable()).unwrap()
        };
        let r = Registry::for_machine(
            llext::ArenaMemory::new(&mut high),
            ExportTable::default(),
            243,
        );
        match r.restore(
            &Context::from_bytes(&ctx).unwrap(),
            &RestoreOptions::default(),
        ) {
            Err(Error::SnapshotReach { extension, .. }) => assert_eq!(extension, "d"),
            other => panic!("changed {change}: {other:?}"),
        }
        assert!(r.is_empty());
    }
}

/// Review of the `SETn`/`SUBn` replay: only the last `SETn` was remembered, so with the pairs interleaved
/// (`SET6 d`, `SET6 d+1`, `SUB6 d`, `SUB6 d+1`, as `.reloc` can write them) the first `SUB6` was applied by
/// how far its label moved on top of a field written afresh. Every place written afresh counts now.
#[test]
fn interleaved_riscv_label_differences_survive_a_portable_restore() {
    let source = "__asm__(\".option norvc\\n.text\\n.globl pad\\npad: .skip 12, 0\\n\
                  l1: addi x0,x0,0\\naddi x0,x0,0\\nl2: addi x0,x0,0\\n\"\n\
                  \".section .rodata.d,\\\"a\\\"\\n.globl d\\nd: .byte 0, 0\\n\"\n\
                  \".reloc d, R_RISCV_SET6, l2\\n.reloc d+1, R_RISCV_SET6, l2\\n\"\n\
                  \".reloc d, R_RISCV_SUB6, l1\\n.reloc d+1, R_RISCV_SUB6, l1\\n\");\n";
    let object = common::compile_for("riscv64-unknown-elf", source, &[]);
    let mut first = ExecArena::new(1 << 20);
    let mut second = ExecArena::new(1 << 20);
    let a = Registry::for_machine(
        llext::ArenaMemory::new(&mut first.bytes()[4..]),
        ExportTable::default(),
        243,
    );
    let id = a.load("d", &object).unwrap();
    let d = a.extension_symbol(id, "d").unwrap().unwrap();
    // SAFETY: `d` is two bytes in a live block.
    let linked = unsafe { std::slice::from_raw_parts(d as *const u8, 2) }.to_vec();
    assert_eq!(linked, [8, 8], "l2 - l1 = 8");
    let ctx = a.save(&portable()).unwrap();
    let b = Registry::for_machine(
        llext::ArenaMemory::new(&mut second.bytes()[100..]),
        ExportTable::default(),
        243,
    );
    let ids = restore_all(&b, &ctx);
    let d = b.extension_symbol(ids[0], "d").unwrap().unwrap();
    // SAFETY: as above, in the restored block.
    let restored = unsafe { std::slice::from_raw_parts(d as *const u8, 2) }.to_vec();
    assert_eq!(restored, linked);
}

/// Review of the rebinding of switched built-in words: two built-ins that share an address when saved
/// (aliases, or hooks sharing one default stub) were told apart by whichever came first in an unstable
/// sort, so a word set to one of them could come back bound to the other. A word holding such a shared
/// address now stays as saved: which built-in it meant is unknown.
#[test]
fn a_word_holding_an_address_two_built_ins_shared_is_left_as_saved() {
    fn table(entries: &[(&'static str, usize)]) -> ExportTable {
        let v: Vec<llext::Export> = entries
            .iter()
            .map(|&(n, a)| llext::Export::new(n, a as *const ()))
            .collect();
        ExportTable::new(&v)
    }
    for refs in [
        "long ref_a(void) { return (long)hook_a; }\nlong ref_b(void) { return (long)hook_b; }\n",
        "long ref_b(void) { return (long)hook_b; }\nlong ref_a(void) { return (long)hook_a; }\n",
    ] {
        let source = format!(
            "extern void hook_a(void), hook_b(void), init_fn(void);\n\
             static void (*h)(void) = init_fn;\n{refs}\
             long set(long v) {{ h = (void (*)(void))v; return 0; }}\n\
             long get(void) {{ return (long)h; }}\n"
        );
        let object = common::compile_c(&source, &["-O2", "-fPIC"]);
        for pick in ["ref_a", "ref_b"] {
            let r = Registry::new(
                llext::HostMemory::new(),
                table(&[("hook_a", 0x1000), ("hook_b", 0x1000), ("init_fn", 0x3000)]),
            );
            r.load_with("x", &object, &NO_RUN).unwrap();
            let hook = call(&r, pick, &[]);
            call(&r, "set", &[hook]);
            let ctx = r.save(&portable()).unwrap();
            let apart = Registry::new(
                llext::HostMemory::new(),
                table(&[("hook_a", 0x5000), ("hook_b", 0x6000), ("init_fn", 0x7000)]),
            );
            restore_all(&apart, &ctx);
            assert_eq!(call(&apart, "get", &[]), 0x1000, "{pick}, {refs}");
        }
    }
}

/// fuzz/load_link, once portable saves refused every export outside the extension's memory: a damaged
/// `dbase` whose `db_calls` symbol lies past the end of its `.bss`, so its address is outside every block
/// and the link records it as a fixed value (no block to move it with). The harness took every loaded
/// extension to save portably and was refused. Exports written by fixups that hold fixed values are saved
/// portably now (the address of a damaged symbol like this one stays as it was, as anything would be
/// wrong); the others outside the blocks are still refused.
#[test]
fn fuzz_load_link_constant_export_outside_the_extension_is_saved_portably() {
    let elf = input("fuzz-load-link-foreign-export.o");
    let mut first = ExecArena::new(1 << 20);
    let mut second = ExecArena::new(1 << 20);
    let (memory, live) = CountingArena::new(first.bytes());
    let r = Registry::new(memory, ExportTable::new(llext::LIBC_EXPORTS));
    let id = r.load_with("fuzzed", &elf, &NO_RUN).unwrap();
    let addr = r.find_symbol("db_calls").unwrap();
    let ctx = r.save(&portable()).unwrap();
    let (memory2, live2) = CountingArena::new(second.bytes());
    let r2 = Registry::new(memory2, ExportTable::new(llext::LIBC_EXPORTS));
    let ids = restore_all(&r2, &ctx);
    assert_eq!(r2.find_symbol("db_calls"), Some(addr));
    r2.unload(ids[0]).unwrap();
    r.unload(id).unwrap();
    for live in [live, live2] {
        assert_eq!(live.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}

/// Review of format 7 on 32-bit targets: an alias of a dependency's function, re-exported by a second
/// extension and used by a third (a call and a pointer in `.data`), restored portably at new addresses on
/// Arm (Thumb: bit 0 set) and RV32, whole and as a subset naming only the user. The alias, the pointer
/// and the dependency's function agree after the move.
#[test]
fn an_alias_of_a_dependencys_function_moves_on_32_bit_targets() {
    let base = "#include \"llext.h\"\nint afn(int x) { return x + 40; }\nLLEXT_EXPORT(afn);\n";
    let alias = "#include \"llext.h\"\nextern int afn(int);\n\
                 static const struct llext_symbol alias_export __attribute__((section(\".exported_sym\"), used)) =\n\
                     { \"afn_alias\", (const void *)&afn };\n";
    let user = "extern int afn_alias(int);\nint (*p)(int) = afn_alias;\n\
                int use_alias(int x) { return afn_alias(x) * 2; }\n";
    for (triple, machine, flags) in [
        ("thumbv7em-none-eabi", 40u16, &["-O2", "-mthumb"][..]),
        (
            "riscv32-unknown-elf",
            243,
            &["-O2", "-march=rv32imac", "-mabi=ilp32"][..],
        ),
        (
            "riscv32-unknown-elf",
            243,
            &["-O2", "-fPIC", "-march=rv32imac", "-mabi=ilp32"][..],
        ),
    ] {
        let objects = [base, alias, user].map(|s| {
            let include = format!("-I{}/../../include", env!("CARGO_MANIFEST_DIR"));
            let mut all = flags.to_vec();
            all.push(&include);
            common::compile_for(triple, s, &all)
        });
        let mut first = ExecArena::new(1 << 20);
        let mut second = ExecArena::new(1 << 20);
        let r = Registry::for_machine(
            llext::ArenaMemory::new(first.bytes()),
            ExportTable::default(),
            machine,
        );
        for (name, object) in ["base", "alias", "user"].iter().zip(&objects) {
            r.load_with(name, object, &NO_RUN).unwrap();
        }
        let word_at = |addr: usize| unsafe { (addr as *const u32).read_unaligned() } as usize;
        let afn = r.find_symbol("afn").unwrap();
        assert_eq!(r.find_symbol("afn_alias"), Some(afn), "{triple}");
        assert_eq!(word_at(r.find_symbol("p").unwrap()), afn, "{triple}");
        for names in [None, Some(&["user"][..])] {
            let ctx = r
                .save(&SaveOptions {
                    names,
                    ..portable()
                })
                .unwrap();
            let r2 = Registry::for_machine(
                llext::ArenaMemory::new(&mut second.bytes()[4096..]),
                ExportTable::default(),
                machine,
            );
            restore_all(&r2, &ctx);
            let moved = r2.find_symbol("afn").unwrap();
            assert_ne!(moved, afn, "{triple}");
            assert_eq!(
                r2.find_symbol("afn_alias"),
                Some(moved),
                "{triple} {names:?}"
            );
            assert_eq!(
                word_at(r2.find_symbol("p").unwrap()),
                moved,
                "{triple} {names:?}"
            );
        }
    }
}

/// Review of format 7: a crafted `Target::Export` naming an export index past its dependency's table, or
/// a dependency the record does not have, is a typed refusal, and the registry is left empty.
#[test]
fn a_crafted_export_target_out_of_range_is_refused() {
    let include = format!("-I{}/../../include", env!("CARGO_MANIFEST_DIR"));
    let flags = ["-O2", "-fPIC", include.as_str()];
    let base = common::compile_c(
        "#include \"llext.h\"\nlong afn(long x) { return x + 40; }\nLLEXT_EXPORT(afn);\n",
        &flags,
    );
    let alias = common::compile_c(
        "#include \"llext.h\"\nextern long afn(long);\n\
         static const struct llext_symbol alias_export __attribute__((section(\".exported_sym\"), used)) =\n\
             { \"afn_alias\", (const void *)&afn };\n",
        &flags,
    );
    let user = common::compile_c(
        "extern long afn_alias(long);\nlong (*p)(long) = afn_alias;\n\
         long use_alias(long x) { return afn_alias(x) * 2; }\n",
        &flags,
    );
    let r = Registry::new(
        llext::HostMemory::new(),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    for (name, object) in [("base", &base), ("alias", &alias), ("user", &user)] {
        r.load_with(name, object, &NO_RUN).unwrap();
    }
    let ctx = r.save(&portable()).unwrap();
    let fixups = context::fixups(&ctx, 2);
    let exports: Vec<usize> = fixups
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f.target, context::Target::Extension { block: 0xff, .. }))
        .map(|(i, _)| i)
        .collect();
    assert!(!exports.is_empty(), "{fixups:?}");
    for (what, dep, index) in [
        ("index u32::MAX", 0, u32::MAX),
        ("index one past the table", 0, 1),
        ("a dependency the record lacks", 1, 0),
        ("a dependency far out", u32::MAX, 0),
    ] {
        let mut bad = ctx.clone();
        let mut f = fixups.clone();
        f[exports[0]].target = context::Target::Extension {
            dep,
            block: 0xff,
            offset: index,
        };
        context::set_fixups(&mut bad, 2, &f);
        reseal(&mut bad);
        let r2 = Registry::new(
            llext::HostMemory::new(),
            ExportTable::new(llext::LIBC_EXPORTS),
        );
        match Context::from_bytes(&bad).and_then(|c| r2.restore(&c, &RestoreOptions::default())) {
            Err(Error::Snapshot { .. } | Error::SnapshotDependency { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert!(r2.is_empty(), "{what}");
    }
}
