//! Portable contexts of RISC-V (RV64 and RV32), AArch64 and Arm (Thumb, Cortex-M) extensions: every C
//! fixture object is loaded into one arena, saved portably and restored into another arena whose blocks lie
//! at other distances from each other, so every reference between blocks (RISC-V `PCREL_HI20`/`GOT_HI20` +
//! `PCREL_LO12_I/S` pairs, AArch64 `ADRP` + `:lo12:` pairs, Arm `PREL31` unwind entries and `REL32` literals)
//! must be recomputed, and every reference the linker left out of the fixup table (PC-relative ones inside
//! one block) must still hold. Each restored block must equal, byte for byte, what the linker writes when it
//! loads the same object fresh at the very addresses the restore used. RISC-V objects are also tried with
//! their `.rela.text` entries in reverse order, so that every LO part comes before its HI part in the fixup
//! table. No C fixture has every PC-relative type (or an AArch64 `ADRP`) inside one block, so small AArch64
//! and Arm assembly sources add them, and their contexts must record exactly the references that change
//! when their blocks move; a Thumb-only one is also restored 2 bytes off a multiple of 4, which changes the
//! Arm references computed from P & ~3.
//!
//! RV32 and Arm extensions are 32-bit: a registry for their machine holds them on this 64-bit host, and
//! their arenas lie below 4 GiB, where their addresses fit.

use std::collections::{BTreeMap, BTreeSet};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use llext::{
    ArenaMemory, Block, BlockRequest, Context, Error, Export, ExportTable, LoadOptions, Memory,
    Permission, Registry, RestoreOptions, SaveOptions,
};
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget};

use llext_cross::{objects, Fixture, Target, ASM_STEM};
use llext_fixtures::context;

mod common;
use common::{export_address, target, Mapping, ARENA};

/// Where the RISC-V fixtures are loaded, and where their contexts are restored: both within ±2 GiB of the
/// firmware symbols at `exports_base` (0x8040_0000), as `-mcmodel=medany` code needs.
const LOAD_BASE: u64 = 0x9000_0000;
const RESTORE_BASE: u64 = 0x9800_0000;

/// The same for AArch64: within ±4 GiB of its `exports_base` (0x4040_0000), the reach of `ADRP`, and apart
/// from every other mapping of this test binary (its tests run at the same time).
const AARCH64_LOAD_BASE: u64 = 0xb000_0000;
const AARCH64_RESTORE_BASE: u64 = 0xb800_0000;

/// The same for RV32, whose address arithmetic wraps at 2^32, so any 32-bit address reaches its firmware
/// (0x3040_0000); apart from the other mappings.
const RISCV32_LOAD_BASE: u64 = 0x7000_0000;
const RISCV32_RESTORE_BASE: u64 = 0x7800_0000;

/// The same for Cortex-M: below 4 GiB, beyond the ±16 MiB reach of a Thumb `BL` from its firmware
/// (0x2040_0000), so calls to the firmware go through veneers; apart from the other mappings.
const CORTEX_M_LOAD_BASE: u64 = 0x6000_0000;
const CORTEX_M_RESTORE_BASE: u64 = 0x6800_0000;

const R_RISCV_HI20: u32 = 26;
const R_RISCV_GOT_HI20: u32 = 20;
const R_RISCV_PCREL_HI20: u32 = 23;
const R_ARM_REL32: u32 = 3;
const R_ARM_PREL31: u32 = 42;
const R_AARCH64_ADR_PREL_PG_HI21: u32 = 275;

const LOAD: LoadOptions = LoadOptions {
    bring_up: false,
    keep_eh_frame: false,
    portable: true,
    storage: llext::Storage::Copy,
};

/// A block handed out during a restore: address, size, permission.
type Logged = (usize, usize, Permission);

/// An arena that puts a gap of a different size before every block and logs the blocks it hands out, so
/// that restored blocks lie at other distances from each other than the saved ones.
struct Spread<'a> {
    arena: ArenaMemory<'a>,
    gaps: Vec<Block>,
    log: Arc<Mutex<Vec<Logged>>>,
    /// Bytes added to every gap: 2 puts a block that asks only for halfword alignment at an address 2 off a
    /// multiple of 4.
    skew: usize,
}

// SAFETY: every block comes from the wrapped arena, which upholds the contract; the gap blocks are kept
// (never handed out) until the provider is dropped.
unsafe impl Memory for Spread<'_> {
    fn allocate(&mut self, request: &BlockRequest) -> llext::Result<Block> {
        let gap = 0x340 + self.skew + 0x1130 * self.gaps.len();
        let gap = self.arena.allocate(&BlockRequest {
            size: gap,
            align: 16,
            permission: Permission::ReadWrite,
        })?;
        self.gaps.push(gap);
        let block = self.arena.allocate(request)?;
        self.log
            .lock()
            .unwrap()
            .push((block.addr(), block.size(), request.permission));
        Ok(block)
    }

    fn finalize(&mut self, block: &Block, permission: Permission) -> llext::Result<()> {
        self.arena.finalize(block, permission)
    }

    fn free(&mut self, block: Block) {
        self.arena.free(block);
    }
}

/// Hands out exactly the blocks a restore used: for each request the first unused logged block of the
/// same permission that is large enough. A fresh load of the same extensions in the same order requests
/// the same blocks in the same order per permission, so it lands where the restore did.
struct Replay {
    blocks: Vec<(Logged, bool)>,
}

// SAFETY: the logged blocks lie in a mapping that outlives the registry, are disjoint (they were live
// together in one arena), and each is handed out at most once.
unsafe impl Memory for Replay {
    fn allocate(&mut self, request: &BlockRequest) -> llext::Result<Block> {
        let found = self
            .blocks
            .iter_mut()
            .find(|((addr, size, permission), used)| {
                !*used
                    && *permission == request.permission
                    && *size >= request.size
                    && addr % request.align == 0
            });
        let Some(((addr, size, _), used)) = found else {
            return Err(Error::OutOfMemory {
                size: request.size,
                align: request.align,
            });
        };
        *used = true;
        let ptr = NonNull::new(*addr as *mut u8).expect("logged blocks are not null");
        // SAFETY: see the `Memory` impl.
        Ok(unsafe { Block::new(ptr, *size, 0) })
    }

    fn finalize(&mut self, _block: &Block, _permission: Permission) -> llext::Result<()> {
        Ok(())
    }

    fn free(&mut self, _block: Block) {}
}

/// The firmware symbols a group of objects imports: its undefined names, less what the group defines.
fn exports(target: &Target, group: &[(String, Vec<u8>)]) -> ExportTable {
    let mut undefined = BTreeSet::new();
    let mut defined = BTreeSet::new();
    for (_, elf) in group {
        let file = object::File::parse(&**elf).expect("fixture parses");
        for s in file.symbols() {
            let name = s.name().unwrap_or("").to_owned();
            if name.is_empty() || name == "_GLOBAL_OFFSET_TABLE_" {
                continue;
            }
            if s.is_undefined() && s.is_weak() {
                // An undefined weak reference: the firmware does not have it, and it is 0.
                continue;
            } else if s.is_undefined() {
                undefined.insert(name);
            } else if s.is_global() {
                defined.insert(name);
            }
        }
    }
    let table: Vec<Export> = undefined
        .difference(&defined)
        .enumerate()
        .map(|(i, name)| {
            let addr = export_address(target, name, i);
            Export::new(Box::leak(name.clone().into_boxed_str()), addr as *const ())
        })
        .collect();
    ExportTable::new(&table)
}

/// The object with the entries of each relocation section named `prefix...` in reverse order (the same
/// relocations, every LO part now before its HI part).
fn reversed(elf: &[u8], prefix: &str) -> Vec<u8> {
    let mut out = elf.to_vec();
    let file = object::File::parse(elf).expect("fixture parses");
    // `Elf64_Rela` or `Elf32_Rela`.
    let entry = if file.is_64() { 24 } else { 12 };
    for s in file.sections() {
        if !s.name().unwrap_or("").starts_with(prefix) {
            continue;
        }
        let (start, len) = s.file_range().expect("relocations lie in the file");
        let (start, len) = (start as usize, len as usize);
        let entries: Vec<&[u8]> = elf[start..start + len].chunks_exact(entry).collect();
        let flipped: Vec<u8> = entries
            .iter()
            .rev()
            .flat_map(|e| e.iter().copied())
            .collect();
        out[start..start + flipped.len()].copy_from_slice(&flipped);
    }
    out
}

/// Relocations of the types `r_types` whose symbol lies in another section than their place (for RISC-V
/// `PCREL_HI20`, for AArch64 `ADR_PREL_PG_HI21`: code reaching data, constants or bss), whose value changes
/// when blocks move apart.
fn cross_section(elf: &[u8], r_types: &[u32]) -> usize {
    let file = object::File::parse(elf).expect("fixture parses");
    let mut n = 0;
    for s in file.sections() {
        for (_, r) in s.relocations() {
            let (
                RelocationFlags::Elf {
                    r_type: object::elf::RelocationType(found),
                },
                RelocationTarget::Symbol(i),
            ) = (r.flags(), r.target())
            else {
                continue;
            };
            if !r_types.contains(&found) {
                continue;
            }
            let home = file
                .symbol_by_index(i)
                .ok()
                .and_then(|sym| sym.section_index());
            if home.is_some_and(|h| h != s.index()) {
                n += 1;
            }
        }
    }
    n
}

/// The `target` object of `stem` built like `fixture` (same compiler, level and flavour).
fn sibling(target: &Target, fixture: &Fixture, stem: &str) -> Fixture {
    let name = fixture.name.replacen(&fixture.stem, stem, 1);
    objects(target.name)
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} was not built"))
}

/// A registry over `memory` for `target`'s objects.
fn registry<M: Memory>(memory: M, table: &ExportTable, target: &Target) -> Registry<M> {
    Registry::for_machine(memory, table.clone(), target.machine)
}

/// Loads `group` into `load`, restores its portable context into spread-out blocks of `restore`, loads it
/// fresh into the same blocks, and compares. Returns the saved context, or a failure description.
fn check_group(
    target: &Target,
    load: &Mapping,
    restore: &Mapping,
    label: &str,
    group: &[(String, Vec<u8>)],
) -> Result<Vec<u8>, String> {
    check_skewed_group(target, load, restore, label, group, 0).map(|(ctx, _)| ctx)
}

/// [`check_group`] with `skew` bytes added to every gap in front of a restored block. Returns the saved
/// context and the restored blocks.
fn check_skewed_group(
    target: &Target,
    load: &Mapping,
    restore: &Mapping,
    label: &str,
    group: &[(String, Vec<u8>)],
    skew: usize,
) -> Result<(Vec<u8>, Vec<Logged>), String> {
    let table = exports(target, group);
    let arena = |m: &Mapping| {
        // SAFETY: the mapping is used only through this arena until the registry over it is dropped.
        unsafe { std::slice::from_raw_parts_mut(m.ptr, m.len) }
    };
    let ctx = {
        let r = registry(ArenaMemory::new(arena(load)), &table, target);
        for (name, elf) in group {
            r.load_with(name, elf, &LOAD)
                .map_err(|e| format!("{label}: load failed: {e}"))?;
        }
        let options = SaveOptions {
            portable: true,
            ..SaveOptions::default()
        };
        r.save(&options)
            .map_err(|e| format!("{label}: save failed: {e}"))?
    };

    let log = Arc::new(Mutex::new(Vec::new()));
    let restored_sections = {
        let memory = Spread {
            arena: ArenaMemory::new(arena(restore)),
            gaps: Vec::new(),
            log: Arc::clone(&log),
            skew,
        };
        let r = registry(memory, &table, target);
        let context = Context::from_bytes(&ctx).expect("a valid context");
        let ids = r
            .restore(&context, &RestoreOptions::default())
            .map_err(|e| format!("{label}: portable restore failed: {e}"))?;
        ids.iter()
            .map(|&id| r.info(id).expect("info").sections)
            .collect::<Vec<_>>()
    };
    let blocks = log.lock().unwrap().clone();
    assert!(
        blocks
            .iter()
            .all(|&(addr, _, _)| addr >= restore.ptr as usize),
        "{label}: restored outside the restore arena"
    );
    let restored: Vec<Vec<u8>> = blocks
        .iter()
        .map(|&(addr, size, _)| restore.bytes(addr as u64, size))
        .collect();

    let fresh_sections = {
        let memory = Replay {
            blocks: blocks.iter().map(|&b| (b, false)).collect(),
        };
        let r = registry(memory, &table, target);
        let mut sections = Vec::new();
        for (name, elf) in group {
            let id = r.load_with(name, elf, &LOAD).map_err(|e| {
                format!("{label}: fresh load at the restored addresses failed: {e}")
            })?;
            sections.push(r.info(id).expect("info").sections);
        }
        sections
    };
    if fresh_sections != restored_sections {
        return Err(format!(
            "{label}: the fresh load did not land where the restore did"
        ));
    }
    for ((addr, size, permission), saved) in blocks.iter().zip(&restored) {
        let linked = restore.bytes(*addr as u64, *size);
        if let Some(at) = (0..*size).find(|&i| linked[i] != saved[i]) {
            let section = fresh_sections
                .iter()
                .flatten()
                .find(|s| (s.addr..s.addr + s.size.max(1)).contains(&(addr + at)))
                .map_or_else(|| "no section".to_owned(), |s| s.name.clone());
            return Err(format!(
                "{label}: {} block at {addr:#x}, offset {at:#x} ({section}): restored {:02x?}, linked {:02x?}",
                permission.as_str(),
                &saved[at..(at + 8).min(*size)],
                &linked[at..(at + 8).min(*size)],
            ));
        }
    }
    Ok((ctx, blocks))
}

/// How one target's C fixtures are tried.
struct Run {
    /// The target's name in [`llext_cross::TARGETS`].
    target: &'static str,
    /// Where the fixtures are loaded and where their contexts are restored ([`ARENA`] bytes each).
    load_base: u64,
    restore_base: u64,
    /// Also try each group with its `.rela.text` entries in reverse order (RISC-V: every LO part before its
    /// HI part).
    reversed: bool,
    /// Relocation types whose references from one section to another show that the fixtures exercise
    /// blocks moving apart, and their names for the failure message.
    cross_types: &'static [u32],
    cross_name: &'static str,
}

/// Every C fixture of `run.target` (with `libsum` beside `useslib`, which imports from it) restores as a
/// fresh load at the restored addresses links it.
fn every_fixture_restores_like_a_fresh_load(run: &Run) {
    let target = target(run.target);
    let fixtures: Vec<Fixture> = objects(target.name)
        .into_iter()
        .filter(|f| f.stem != ASM_STEM)
        .collect();
    if fixtures.is_empty() {
        common::not_built(&format!("every {} fixture", target.name));
        return;
    }
    let load = Mapping::at(run.load_base, ARENA);
    let restore = Mapping::at(run.restore_base, ARENA);
    let mut failures = Vec::new();
    let (mut groups, mut crossing) = (0, 0);
    for fixture in &fixtures {
        // useslib imports from libsum: the two are saved and restored together.
        let mut members = Vec::new();
        if fixture.stem == "useslib" {
            members.push(sibling(target, fixture, "libsum"));
        }
        members.push(fixture.clone());
        let group: Vec<(String, Vec<u8>)> = members
            .iter()
            .map(|f| {
                (
                    f.stem.clone(),
                    std::fs::read(&f.path).expect("read fixture"),
                )
            })
            .collect();
        crossing += group
            .iter()
            .map(|(_, elf)| cross_section(elf, run.cross_types))
            .sum::<usize>();
        let flipped: Option<Vec<(String, Vec<u8>)>> = run.reversed.then(|| {
            group
                .iter()
                .map(|(name, elf)| (name.clone(), reversed(elf, ".rela.text")))
                .collect()
        });
        let tries = std::iter::once((fixture.name.clone(), group))
            .chain(flipped.map(|flipped| (format!("{} (LO before HI)", fixture.name), flipped)));
        for (label, group) in tries {
            groups += 1;
            if let Err(e) = check_group(target, &load, &restore, &label, &group) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {groups} restores differ from a fresh load:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        crossing >= fixtures.len(),
        "only {crossing} cross-section {} relocations in {} fixtures",
        run.cross_name,
        fixtures.len()
    );
}

#[test]
fn riscv64_portable_restore_matches_a_fresh_load_at_the_new_addresses() {
    every_fixture_restores_like_a_fresh_load(&Run {
        target: "riscv64",
        load_base: LOAD_BASE,
        restore_base: RESTORE_BASE,
        reversed: true,
        cross_types: &[R_RISCV_PCREL_HI20],
        cross_name: "PCREL_HI20",
    });
}

/// RV32 code (`-mcmodel=medlow`) reaches data mostly through absolute `HI20` + `LO12` pairs, and through
/// `PCREL_HI20`/`GOT_HI20` pairs when built as PIC.
#[test]
fn riscv32_portable_restore_matches_a_fresh_load_at_the_new_addresses() {
    every_fixture_restores_like_a_fresh_load(&Run {
        target: "riscv32",
        load_base: RISCV32_LOAD_BASE,
        restore_base: RISCV32_RESTORE_BASE,
        reversed: true,
        cross_types: &[R_RISCV_PCREL_HI20, R_RISCV_GOT_HI20, R_RISCV_HI20],
        cross_name: "PCREL_HI20, GOT_HI20 or HI20",
    });
}

/// AArch64 code reaches other blocks through `ADRP` + `:lo12:` pairs (recorded), and its own block through
/// branches, calls and PC-relative data that the linker leaves out of the fixup table.
#[test]
fn aarch64_portable_restore_matches_a_fresh_load_at_the_new_addresses() {
    every_fixture_restores_like_a_fresh_load(&Run {
        target: "aarch64",
        load_base: AARCH64_LOAD_BASE,
        restore_base: AARCH64_RESTORE_BASE,
        reversed: false,
        cross_types: &[R_AARCH64_ADR_PREL_PG_HI21],
        cross_name: "ADR_PREL_PG_HI21",
    });
}

/// Thumb code calls functions of its own block (`THM_CALL`, left out of the fixup table) and, through
/// veneers, the firmware (`THM_CALL`, `THM_JUMP24`); the unwind table (`.ARM.exidx`, constants) reaches the
/// code through `PREL31`, and PIC literals reach data through `REL32`.
#[test]
fn cortex_m_portable_restore_matches_a_fresh_load_at_the_new_addresses() {
    every_fixture_restores_like_a_fresh_load(&Run {
        target: "cortex-m",
        load_base: CORTEX_M_LOAD_BASE,
        restore_base: CORTEX_M_RESTORE_BASE,
        reversed: false,
        cross_types: &[R_ARM_PREL31, R_ARM_REL32],
        cross_name: "PREL31 or REL32",
    });
}

/// A LO part whose HI partner is gone from the fixup table (the `PCREL_HI20` fixups turned into
/// `R_RISCV_NONE`, the checksum made to match) is refused with a typed error naming the missing partner.
#[test]
fn riscv64_restore_refuses_a_lo_part_without_its_hi_partner() {
    let target = target("riscv64");
    let Some(fixture) = objects(target.name)
        .into_iter()
        .find(|f| f.name == "basic-gcc-O2-nopic")
    else {
        common::not_built("basic-gcc-O2-nopic for riscv64");
        return;
    };
    let elf = std::fs::read(&fixture.path).expect("read fixture");
    let table = exports(target, &[("basic".to_owned(), elf.clone())]);
    let mapping = Mapping::at(LOAD_BASE + 0x1000_0000, 1 << 20);
    // SAFETY: the mapping is used only through this arena until the registry is dropped.
    let arena = unsafe { std::slice::from_raw_parts_mut(mapping.ptr, mapping.len) };
    let r = registry(ArenaMemory::new(arena), &table, target);
    let id = r.load_with("basic", &elf, &LOAD).expect("load");
    let memory = r.info(id).expect("info").memory;
    let mut ctx = r
        .save(&SaveOptions {
            portable: true,
            ..SaveOptions::default()
        })
        .expect("save");

    // The record's fixup table.
    let mut fixups = context::fixups(&ctx, 0);
    let mut removed = 0;
    for f in &mut fixups {
        if f.kind == 0 && f.r_type == R_RISCV_PCREL_HI20 {
            f.r_type = 0;
            removed += 1;
        }
    }
    context::set_fixups(&mut ctx, 0, &fixups);
    // The blocks' bytes and the checksum follow the record: a changed record layout shows here.
    assert_eq!(
        context::blocks_at(&ctx, 0),
        ctx.len() - 8 - memory,
        "the record layout is not the one this test knows (llext_fixtures::context)"
    );
    assert!(removed > 0, "no PCREL_HI20 fixup in the context");
    let n = ctx.len() - 8;
    let sum = Context::checksum(&ctx[..n]);
    ctx[n..].copy_from_slice(&sum.to_le_bytes());

    let context = Context::from_bytes(&ctx).expect("still a valid context");
    let elsewhere = Mapping::at(LOAD_BASE + 0x1010_0000, 1 << 20);
    // SAFETY: as above.
    let arena = unsafe { std::slice::from_raw_parts_mut(elsewhere.ptr, elsewhere.len) };
    let r2 = registry(ArenaMemory::new(arena), &table, target);
    match r2.restore(&context, &RestoreOptions::default()) {
        Err(Error::Snapshot { reason }) => {
            assert!(reason.contains("HI partner"), "{reason}")
        }
        other => panic!("expected a refusal naming the missing HI partner, got {other:?}"),
    }
    assert!(r2.is_empty(), "a refused restore leaves the registry empty");
}

/// `source` assembled by `target`'s GNU compiler driver with `flags`, or `None` when that compiler is missing
/// and its absence is allowed.
fn assemble(target: &Target, flags: &[&str], name: &str, source: &str) -> Option<Vec<u8>> {
    // One directory per target and name: tests run in parallel, and a directory goes when its test ends.
    let work = common::WorkDir::new(&format!("portable-{}-{name}", target.name));
    let source_path = work.0.join(format!("{name}.S"));
    let object = work.0.join(format!("{name}.o"));
    std::fs::write(&source_path, source).expect("write the source");
    let built = std::process::Command::new(target.gcc.command)
        .args(flags)
        .arg("-c")
        .arg(&source_path)
        .arg("-o")
        .arg(&object)
        .output();
    let Ok(built) = built else {
        let missing = vec![format!(
            "{} (package {})",
            target.gcc.command, target.gcc.package
        )];
        assert!(!llext_cross::require(&missing));
        return None;
    };
    assert!(
        built.status.success(),
        "assembling {name} failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    Some(std::fs::read(&object).expect("read the object"))
}

/// Code reaching constants and data through `PCREL_HI20` + `PCREL_LO12_I/S`, and in the data a ULEB128
/// holding the distance from the code to the constants: `SET8` and `SUB8` placeholders that the test turns
/// into `SET_ULEB128` and `SUB_ULEB128` (binutils 2.40 cannot emit them). Three bytes hold less than 2^21,
/// so the `SET_ULEB128` alone (an address) never fits and its `SUB_ULEB128` writes the difference.
const ULEB_SOURCE: &str = r#"
	.text
	.globl	uleb_fn
uleb_fn:
1:	auipc	a0, %pcrel_hi(konst)
	ld	a0, %pcrel_lo(1b)(a0)
2:	auipc	a1, %pcrel_hi(counter)
	sd	a0, %pcrel_lo(2b)(a1)
	ret

	.section .rodata
	.p2align 3
konst:	.8byte	7
spot:	.8byte	0

	.data
	.p2align 3
counter:
	.8byte	0
	.reloc	., R_RISCV_SET8, spot
	.reloc	., R_RISCV_SUB8, uleb_fn
	.byte	0x80, 0x80, 0x00
"#;

/// `SET_ULEB128`/`SUB_ULEB128` pairs (which pair by place) between blocks, in both orders, restore as a
/// fresh load links them at the new addresses.
#[test]
fn riscv64_uleb128_pairs_restore_like_a_fresh_load() {
    let target = target("riscv64");
    let Some(mut elf) = assemble(
        target,
        &["-march=rv64gc", "-mabi=lp64d"],
        "uleb",
        ULEB_SOURCE,
    ) else {
        return;
    };
    // SET8 (54) -> SET_ULEB128 (60), SUB8 (37) -> SUB_ULEB128 (61), in `.rela.data`.
    let (start, len) = {
        let file = object::File::parse(&*elf).expect("object parses");
        let rela = file.section_by_name(".rela.data").expect(".rela.data");
        let (start, len) = rela.file_range().expect("in the file");
        (start as usize, len as usize)
    };
    let mut retyped = 0;
    for entry in elf[start..start + len].chunks_exact_mut(24) {
        let r_type = u32::from_le_bytes(entry[8..12].try_into().unwrap());
        let new = match r_type {
            54 => 60,
            37 => 61,
            _ => continue,
        };
        entry[8..12].copy_from_slice(&u32::to_le_bytes(new));
        retyped += 1;
    }
    assert_eq!(retyped, 2, "the SET8/SUB8 placeholders");
    let load = Mapping::at(LOAD_BASE + 0x1800_0000, 1 << 20);
    let restore = Mapping::at(LOAD_BASE + 0x1810_0000, 1 << 20);
    let mut flipped = reversed(&elf, ".rela.text");
    flipped = reversed(&flipped, ".rela.data");
    for (label, elf) in [("uleb", elf), ("uleb (LO before HI)", flipped)] {
        let group = [("uleb".to_owned(), elf)];
        if let Err(e) = check_group(target, &load, &restore, label, &group) {
            panic!("{e}");
        }
    }
}

/// Code that checks for an undefined weak function before calling it: the address 0 comes from a
/// `PCREL_HI20` + `PCREL_LO12_I` pair and the call is a `CALL_PLT`.
const WEAK_SOURCE: &str = r#"
	.weak	maybe
	.text
	.globl	call_maybe
call_maybe:
1:	auipc	a5, %pcrel_hi(maybe)
	addi	a5, a5, %pcrel_lo(1b)
	beqz	a5, 2f
	tail	maybe
2:	li	a0, -5
	ret
"#;

/// An extension referring to an undefined weak symbol, saved where 0 is beyond an `auipc`'s reach (its
/// `auipc` linked as a `lui`) and restored where it is within it, and the other way round: each restore is
/// what a fresh load links at the new addresses, `auipc` or `lui` as the place needs.
#[test]
fn riscv64_undefined_weak_references_restore_in_and_out_of_auipc_reach() {
    let target = target("riscv64");
    let flags = ["-march=rv64gc", "-mabi=lp64d"];
    let Some(elf) = assemble(target, &flags, "weak", WEAK_SOURCE) else {
        return;
    };
    let far = Mapping::at(LOAD_BASE + 0x1820_0000, 1 << 20);
    let near = Mapping::at(0x4800_0000, 1 << 20);
    let group = [("weak".to_owned(), elf)];
    for (label, load, restore, opcode) in [
        ("far to near", &far, &near, 0x17), // auipc
        ("near to far", &near, &far, 0x37), // lui
    ] {
        let (_, blocks) = check_skewed_group(target, load, restore, label, &group, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        let code = blocks
            .iter()
            .find(|b| b.2 == Permission::ReadExecute)
            .expect("a code block");
        let first = u32::from_le_bytes(restore.bytes(code.0 as u64, 4).try_into().unwrap());
        assert_eq!(first & 0x7f, opcode, "{label}: {first:#010x}");
    }
}

/// AArch64 code, constants and data that reach their own block with every type the backend calls
/// PC-relative (`is_pc_relative`), and with `ADRP` + `:lo12:` and `ABS64`, which change when a block moves by
/// less than a page; plus references between blocks and to the firmware. The targets lie in other sections
/// of the same block (`.text.far`, `.rodata.far`), which the assembler cannot resolve. The `ADRP`s reach
/// targets 0x100 apart across more than a page, so a move that is at least 0x100 off a whole number of
/// pages (the restore here moves the code by 0x340 past one) adds or removes a page boundary between some
/// `ADRP` and its target.
const AARCH64_IN_BLOCK_SOURCE: &str = r#"
	.text
	.globl	inblock_entry
	.type	inblock_entry, %function
inblock_entry:
	bl	inblock_far			// CALL26
	b.eq	inblock_far			// CONDBR19
	cbz	x0, inblock_far
	tbz	x0, #1, inblock_far		// TSTBR14
	adr	x1, inblock_far			// ADR_PREL_LO21
	ldr	x2, inblock_literal		// LD_PREL_LO19
	movz	x3, #:prel_g3:inblock_far	// MOVW_PREL_G3, G2_NC, G1_NC, G0_NC
	movk	x3, #:prel_g2_nc:inblock_far
	movk	x3, #:prel_g1_nc:inblock_far
	movk	x3, #:prel_g0_nc:inblock_far
	movz	x3, #:prel_g0:inblock_back	// MOVW_PREL_G0, G1, G2 (negative: MOVN)
	movz	x3, #:prel_g1:inblock_far
	movz	x3, #:prel_g2:inblock_back
	.irp	n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	adrp	x4, inblock_page\n
	add	x4, x4, #:lo12:inblock_page\n
	.endr
	adrp	x5, inblock_counter		// other blocks
	ldr	x6, [x5, #:lo12:inblock_counter]
	adrp	x5, inblock_konst
	add	x5, x5, #:lo12:inblock_konst
	bl	fw_twice			// the firmware, through a veneer
	b	inblock_far			// JUMP26

	.section .text.back, "ax", %progbits
inblock_back:
	ret

	.section .text.far, "ax", %progbits
	.p2align 3
inblock_literal:
	.quad	0x1122334455667788
	.irp	n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
inblock_page\n:
	.space	0x100
	.endr
inblock_far:
	ret

	.section .rodata
	.p2align 3
inblock_konst:
	.quad	inblock_konst + 8		// ABS64 in the block
	.quad	inblock_target - .		// PREL64, PREL32, PREL16 in the block
	.4byte	inblock_target - .
	.2byte	inblock_target - .
	.p2align 3
	.quad	inblock_entry - .		// to the code
	.quad	inblock_entry
	.4byte	inblock_counter - .		// to the data

	.section .rodata.far, "a", %progbits
inblock_target:
	.byte	1

	.data
	.p2align 3
inblock_counter:
	.quad	inblock_counter			// ABS64 in the block
	.quad	inblock_konst
	.quad	fw_value
"#;

/// The relocation types of record `record`'s fixups in the portable context `ctx`.
fn fixup_types(ctx: &[u8], record: usize) -> Vec<u32> {
    context::fixups(ctx, record)
        .iter()
        .filter(|f| f.kind == 0)
        .map(|f| f.r_type)
        .collect()
}

/// References inside one block restore as a fresh load links them: the PC-relative ones, left out of the
/// fixup table, keep their bits; `ADRP`s and absolute addresses inside a block, recorded, are recomputed.
#[test]
fn aarch64_in_block_references_restore_like_a_fresh_load() {
    let target = target("aarch64");
    let Some(elf) = assemble(target, &[], "inblock", AARCH64_IN_BLOCK_SOURCE) else {
        return;
    };
    let load = Mapping::at(AARCH64_LOAD_BASE + 0x1000_0000, 1 << 20);
    let restore = Mapping::at(AARCH64_LOAD_BASE + 0x1010_0000, 1 << 20);
    let group = [("inblock".to_owned(), elf)];
    let ctx =
        check_group(target, &load, &restore, "inblock", &group).unwrap_or_else(|e| panic!("{e}"));

    // The fixups: every ADRP (16 inside the code block, 2 to other blocks), and of the PC-relative
    // references only the three that leave their block.
    let name = |t: u32| llext::arch::relocation_name(target.machine, t).unwrap_or("?");
    let mut recorded = BTreeMap::new();
    for t in fixup_types(&ctx, 0) {
        // PREL64/32/16, LD_PREL_LO19, ADR_PREL_LO21, ADR_PREL_PG_HI21, TSTBR14, CONDBR19, JUMP26, CALL26,
        // MOVW_PREL_*.
        if matches!(t, 260..=262 | 273..=275 | 279 | 280 | 282 | 283 | 287..=293) {
            *recorded.entry(name(t)).or_insert(0) += 1;
        }
    }
    let expected = BTreeMap::from([
        ("R_AARCH64_ADR_PREL_PG_HI21", 18),
        ("R_AARCH64_CALL26", 1),
        ("R_AARCH64_PREL32", 1),
        ("R_AARCH64_PREL64", 1),
    ]);
    assert_eq!(recorded, expected, "PC-relative fixups in the context");
}

/// Thumb and A32 code, constants and data that reach their own block with every type the Arm backend
/// calls PC-relative (`is_pc_relative`), and with the types it leaves out: `THM_PC8`, `THM_PC12` and
/// `THM_ALU_PREL_11_0` (from Pa = P & ~3) and `ABS32`; plus references between blocks and to the firmware
/// (a call through a veneer). The targets lie in other sections of the same block (`.text.far`,
/// `.text.arm`, `.rodata.far`), which the assembler cannot resolve. Where it emits no such relocation
/// (`PC24`, `PLT32` and `REL32_NOI`, which it no longer emits; `CBZ` and literal loads to another section,
/// which it refuses; `ADR.W`, which it resolves wrongly), `.reloc` puts the relocation on a hand-encoded
/// instruction or word. The A32 sections make the code block word-aligned, so the Thumb `BL` to A32 code
/// (a `BLX`) keeps its bits; see [`THUMB_HALFWORD_SOURCE`] for moves by a halfword.
const ARM_IN_BLOCK_SOURCE: &str = r#"
	.syntax	unified
	.thumb
	.text
	.globl	inblock_entry
	.type	inblock_entry, %function
	.thumb_func
inblock_entry:
	bl	inblock_far				@ THM_CALL
	bl	inblock_arm				@ THM_CALL to A32 code: BLX
	beq.w	inblock_far				@ THM_JUMP19
	b.n	inblock_far				@ THM_JUMP11
	beq.n	inblock_far				@ THM_JUMP8
	movw	r1, #:lower16:(inblock_far - .)		@ THM_MOVW_PREL_NC
	movt	r1, #:upper16:(inblock_far - .)		@ THM_MOVT_PREL
	.reloc	., R_ARM_THM_PC12, inblock_literal	@ ldr.w r2, inblock_literal
	.inst.w	0xf8df2000
	.reloc	., R_ARM_THM_ALU_PREL_11_0, inblock_far	@ adr.w r3, inblock_far
	.inst.w	0xf20f0300
	.reloc	., R_ARM_THM_PC8, inblock_literal	@ ldr r2, inblock_literal
	.inst.n	0x4aff
	bl	fw_twice				@ the firmware, through a veneer
	b.w	inblock_far				@ THM_JUMP24

	.section .text.far, "ax", %progbits
	.p2align 2
inblock_literal:
	.word	0x11223344
	.reloc	., R_ARM_THM_JUMP6, inblock_far		@ cbz r0, inblock_far
	.inst.n	0xb3f0
	nop
	.type	inblock_far, %function
	.thumb_func
inblock_far:
	bx	lr

	.section .text.arm, "ax", %progbits
	.arm
	.p2align 2
	.type	inblock_arm, %function
inblock_arm:
	bl	inblock_far				@ CALL to Thumb code: BLX
	b	inblock_arm_back			@ JUMP24
	movw	r1, #:lower16:(inblock_far - .)		@ MOVW_PREL_NC
	movt	r1, #:upper16:(inblock_far - .)		@ MOVT_PREL
	.reloc	., R_ARM_PC24, inblock_far		@ bl inblock_far
	.inst	0xebfffffe
	.reloc	., R_ARM_PLT32, inblock_arm_back	@ bl inblock_arm_back
	.inst	0xebfffffe

	.section .text.arm.back, "ax", %progbits
	.p2align 2
inblock_arm_back:
	bx	lr

	.section .rodata
	.p2align 2
inblock_konst:
	.word	inblock_konst + 4			@ ABS32 in the block
	.word	inblock_target - .			@ REL32 in the block
	.reloc	., R_ARM_PREL31, inblock_target		@ PREL31 in the block
	.word	0
	.reloc	., R_ARM_REL32_NOI, inblock_target	@ REL32_NOI in the block
	.word	0
	.word	inblock_entry - .			@ to the code
	.word	inblock_counter - .			@ to the data

	.section .rodata.far, "a", %progbits
inblock_target:
	.byte	1

	.data
	.p2align 2
inblock_counter:
	.word	inblock_counter				@ ABS32 in the block
	.word	fw_value
"#;

/// Thumb code in halfword-aligned sections only, so its block may land 2 off a multiple of 4: a `BL` and a
/// `B.W` within the block keep their bits, a `THM_PC12` byte load and an `ADR.W` (`THM_ALU_PREL_11_0`),
/// computed from Pa = P & ~3, do not.
const THUMB_HALFWORD_SOURCE: &str = r#"
	.syntax	unified
	.thumb
	.text
	.p2align 1
	.globl	half_entry
	.type	half_entry, %function
	.thumb_func
half_entry:
	bl	half_far				@ THM_CALL
	b.w	half_far				@ THM_JUMP24
	.reloc	., R_ARM_THM_PC12, half_byte		@ ldrb.w r2, half_byte
	.inst.w	0xf89f2000
	.reloc	., R_ARM_THM_ALU_PREL_11_0, half_far	@ adr.w r3, half_far
	.inst.w	0xf20f0300
	bx	lr

	.section .text.far, "ax", %progbits
	.p2align 1
half_byte:
	.byte	7
	.byte	0
	.type	half_far, %function
	.thumb_func
half_far:
	bx	lr
"#;

/// How many fixups of each Arm relocation type that `is_pc_relative` may classify, or that it leaves out
/// for their Pa, record `ctx` holds.
fn arm_pc_relative_fixups(target: &Target, ctx: &[u8]) -> BTreeMap<&'static str, usize> {
    let name = |t: u32| llext::arch::relocation_name(target.machine, t).unwrap_or("?");
    let mut recorded = BTreeMap::new();
    for t in fixup_types(ctx, 0) {
        // REL32, THM_CALL, THM_PC8, PLT32, CALL, JUMP24, THM_JUMP24, PREL31, MOVW/MOVT_PREL,
        // THM_MOVW/MOVT_PREL, THM_JUMP19, THM_JUMP6, THM_ALU_PREL_11_0, THM_PC12, REL32_NOI, THM_JUMP11,
        // THM_JUMP8.
        if matches!(t, 1 | 3 | 10 | 11 | 27..=30 | 42 | 45 | 46 | 49..=54 | 56 | 102 | 103) {
            *recorded.entry(name(t)).or_insert(0) += 1;
        }
    }
    recorded
}

/// References inside one block restore as a fresh load links them: the PC-relative ones, left out of the
/// fixup table, keep their bits; the Pa-relative and absolute ones, recorded, are recomputed.
#[test]
fn cortex_m_in_block_references_restore_like_a_fresh_load() {
    let target = target("cortex-m");
    let Some(elf) = assemble(target, &["-march=armv7-a"], "inblock", ARM_IN_BLOCK_SOURCE) else {
        return;
    };
    let load = Mapping::at(CORTEX_M_LOAD_BASE + 0x0100_0000, 1 << 20);
    let restore = Mapping::at(CORTEX_M_LOAD_BASE + 0x0110_0000, 1 << 20);
    let group = [("inblock".to_owned(), elf)];
    let ctx =
        check_group(target, &load, &restore, "inblock", &group).unwrap_or_else(|e| panic!("{e}"));

    // Of the PC-relative references only the call through the veneer and the two REL32s that leave their
    // block are recorded, and every Pa-relative one.
    let expected = BTreeMap::from([
        ("R_ARM_REL32", 2),
        ("R_ARM_THM_ALU_PREL_11_0", 1),
        ("R_ARM_THM_CALL", 1),
        ("R_ARM_THM_PC12", 1),
        ("R_ARM_THM_PC8", 1),
    ]);
    assert_eq!(
        arm_pc_relative_fixups(target, &ctx),
        expected,
        "PC-relative fixups in the context"
    );
}

/// A halfword-aligned Thumb block restored 2 off its load address modulo 4: the `BL` and `B.W` left out of
/// the fixup table still match a fresh load, and the recorded Pa-relative references are recomputed.
#[test]
fn cortex_m_halfword_moves_restore_like_a_fresh_load() {
    let target = target("cortex-m");
    let Some(elf) = assemble(target, &["-march=armv7-a"], "half", THUMB_HALFWORD_SOURCE) else {
        return;
    };
    let load = Mapping::at(CORTEX_M_LOAD_BASE + 0x0120_0000, 1 << 20);
    let restore = Mapping::at(CORTEX_M_LOAD_BASE + 0x0130_0000, 1 << 20);
    let group = [("half".to_owned(), elf)];
    let (ctx, blocks) = check_skewed_group(target, &load, &restore, "half", &group, 2)
        .unwrap_or_else(|e| panic!("{e}"));
    // The code block, halfword-aligned, was saved at a multiple of 4 and restored 2 off one.
    // The saved code block (permission index 0 in `Permission::ALL`).
    let code = context::blocks(&ctx, 0)
        .into_iter()
        .find(|b| b.permission == 0)
        .expect("a saved code block");
    let (saved, align) = (code.addr, code.align);
    let restored = blocks
        .iter()
        .find(|&&(_, _, permission)| permission == Permission::ReadExecute)
        .expect("a restored code block")
        .0;
    assert_eq!(
        (align, saved % 4, restored % 4),
        (2, 0, 2),
        "code block alignment, saved and restored address modulo 4"
    );
    let expected = BTreeMap::from([("R_ARM_THM_ALU_PREL_11_0", 1), ("R_ARM_THM_PC12", 1)]);
    assert_eq!(
        arm_pc_relative_fixups(target, &ctx),
        expected,
        "PC-relative fixups in the context"
    );
}

/// Extension A re-exports an undefined weak function it does not have (`LLEXT_EXPORT(hook)`: the entry's
/// address is 0), and B calls it after checking it, as C code does. B's `hook` is absent at load as on a
/// restore, whose fixup says `Target::Absolute(0)`. A review found the two disagreeing: riscv64 code at
/// 0x9000_0000 then could not reach 0 PC-relative and the load failed, and AArch64 branched through a
/// veneer to 0 on load but wrote a NOP on restore.
const REEXPORTER: &str = r#"
#include "llext.h"
extern void hook(void) __attribute__((weak));
LLEXT_EXPORT(hook);
int reexporter_entry(void) { return 0; }
"#;
const HOOK_CALLER: &str = r#"
extern void hook(void) __attribute__((weak));
int call_hook(void) { if (hook) { hook(); return 1; } return 0; }
"#;

fn weak_reexport(target_name: &str, flags: &[&str], base: u64) {
    let target = target(target_name);
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include");
    let mut all = vec!["-x", "c", "-O2", "-fno-pic", "-I", include];
    all.extend_from_slice(flags);
    let Some(a) = assemble(target, &all, "reexp", REEXPORTER) else {
        return;
    };
    let Some(b) = assemble(target, &all, "hookcall", HOOK_CALLER) else {
        return;
    };
    let load = Mapping::at(base, 1 << 20);
    let restore = Mapping::at(base + 0x10_0000, 1 << 20);
    let group = [("reexp".to_owned(), a), ("hookcall".to_owned(), b)];
    check_group(target, &load, &restore, "weak re-export", &group)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn riscv64_reexported_absent_weak_function_loads_and_restores() {
    weak_reexport(
        "riscv64",
        &["-march=rv64gc", "-mabi=lp64d", "-mcmodel=medany"],
        LOAD_BASE + 0x1840_0000,
    );
}

#[test]
fn aarch64_reexported_absent_weak_function_restores_like_a_fresh_load() {
    weak_reexport(
        "aarch64",
        &["-mno-outline-atomics"],
        AARCH64_LOAD_BASE + 0x1060_0000,
    );
}
