//! In-place storage (`Storage::InPlace` with `Registry::load_static`): read-only sections that no relocation
//! patches stay where they lie in the input, cost no block memory, still work, survive an in-place restore,
//! and keep the extension out of portable contexts.

mod common;

use std::ops::Range;

use llext::{
    BlockRequest, Context, Error, ExportTable, HostMemory, LoadOptions, Memory, Permission,
    RegionKind, Registry, RestoreOptions, SaveOptions, Storage, Unloaded,
};

const IN_PLACE: LoadOptions = LoadOptions {
    bring_up: true,
    keep_eh_frame: false,
    // Fixup records too, where llext has its `portable` feature.
    portable: cfg!(feature = "portable"),
    storage: Storage::InPlace,
};

/// Constants reached only through 64-bit absolute addresses (`-mcmodel=large`), so they stay in place
/// wherever the heap put the input; `.rodata` tables and string literals, read by the functions.
const LARGE_MODEL: &str = r#"
typedef unsigned long size_t;
size_t strlen(const char *s);
static const long primes[16] = { 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53 };
static const char *const words[] = { "zero", "one", "two", "three" };
long counter;
/* ip_prime(i) = the i-th prime (0-based), -1 out of range. */
long ip_prime(long i) { return i >= 0 && i < 16 ? primes[i] : -1; }
/* ip_word(i) = strlen of words[i & 3]: 4, 3, 3, 5. */
long ip_word(long i) { counter++; return (long)strlen(words[i & 3]); }
/* ip_sum() = the sum of the 16 primes = 381. */
long ip_sum(void) { long s = 0; for (int k = 0; k < 16; k++) s += primes[k]; return s; }
"#;

fn large_model_object() -> Vec<u8> {
    common::compile_c(LARGE_MODEL, &["-mcmodel=large", "-fno-pic"])
}

fn range(bytes: &'static [u8]) -> Range<usize> {
    let r = bytes.as_ptr_range();
    r.start as usize..r.end as usize
}

fn registry() -> Registry<HostMemory> {
    common::registry()
}

/// Saves `registry` in place with content hashes and forgets its `count` extensions; checks that a plain
/// `restore` refuses the context (its extensions use their storage in place) and leaves the memory as it
/// was; then restores it with `storage`.
fn suspend_with_storage(
    registry: &Registry<HostMemory>,
    count: usize,
    storage: &[&'static [u8]],
) -> (Vec<u8>, Vec<llext::ExtId>) {
    let hashes = SaveOptions {
        content_hashes: true,
        ..SaveOptions::default()
    };
    let bytes = registry.save(&hashes).unwrap();
    assert_eq!(registry.forget_all(), Ok(count));
    let context = Context::from_bytes(&bytes).unwrap();
    let err = registry
        .restore(&context, &RestoreOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::InPlace { .. }), "{err:?}");
    assert!(err.to_string().contains("restore_static"), "{err}");
    assert!(registry.extensions().is_empty());
    let ids = registry
        .restore_static(&context, &RestoreOptions::default(), storage)
        .unwrap();
    assert_eq!(ids.len(), count);
    (bytes, ids)
}

#[test]
fn constants_stay_in_the_input_and_still_work() {
    let bytes = common::leak(large_model_object());
    let registry = registry();
    let id = registry.load_static("ip", bytes, &IN_PLACE).unwrap();
    let info = registry.info(id).unwrap();
    let input = range(bytes);
    let in_place: Vec<_> = info.sections.iter().filter(|s| s.in_place).collect();
    assert!(
        in_place.iter().any(|s| s.name.starts_with(".rodata")),
        "{:#?}",
        info.sections
    );
    for s in &info.sections {
        let inside = input.contains(&s.addr) && s.addr + s.size <= input.end;
        assert_eq!(inside, s.in_place, "{s:?}");
        if s.in_place {
            assert_eq!(s.region, RegionKind::Rodata, "{s:?}");
            // The in-place region of its kind is reported, and holds it.
            let region = info
                .regions
                .iter()
                .find(|r| r.in_place && r.kind == s.region)
                .unwrap();
            assert!(region.addr <= s.addr && s.addr + s.size <= region.addr + region.size);
            assert_eq!(s.addr, region.addr + s.offset);
            assert_eq!(region.addr % region.align, 0, "{region:?}");
        }
    }
    // No code in place on the host: the heap is not executable.
    assert!(info
        .sections
        .iter()
        .all(|s| !s.in_place || s.region != RegionKind::Text));
    assert_eq!(common::call(&registry, "ip_prime", &[0]), 2);
    assert_eq!(common::call(&registry, "ip_prime", &[15]), 53);
    assert_eq!(common::call(&registry, "ip_prime", &[16]), -1);
    assert_eq!(common::call(&registry, "ip_sum", &[]), 381);
    let words: Vec<i64> = (0..4)
        .map(|i| common::call(&registry, "ip_word", &[i]))
        .collect();
    assert_eq!(words, [4, 3, 3, 5]);

    // The same object copied takes more block memory, by at least the bytes left in place.
    let copied = registry
        .load_with("ip_copy", &large_model_object(), &LoadOptions::default())
        .err();
    // `ip_copy` exports the same globals as `ip`: loading it beside is refused; compare in a fresh registry.
    assert!(copied.is_none() || matches!(copied, Some(Error::DuplicateExport { .. })));
    let other = common::registry();
    let copy_id = other.load("ip", &large_model_object()).unwrap();
    let copy_info = other.info(copy_id).unwrap();
    let in_place_bytes: usize = in_place.iter().map(|s| s.size).sum();
    assert!(copy_info.sections.iter().all(|s| !s.in_place));
    assert!(
        info.memory + in_place_bytes <= copy_info.memory,
        "in place {} + {in_place_bytes}, copied {}",
        info.memory,
        copy_info.memory
    );
}

#[test]
fn references_out_of_reach_are_served_by_a_copy() {
    // gcc's default objects reach their constants PC-relatively (±2 GiB) or by 32-bit absolute addresses;
    // the heap holding the input is far from the loader's pool, so those sections are copied instead, and
    // every function still returns what the fixture documents.
    let mut copied_strings = 0;
    for variant in llext_fixtures::variants() {
        let bytes = common::leak(variant.bytes("basic"));
        let registry = registry();
        let id = registry.load_static("basic", bytes, &IN_PLACE).unwrap();
        let info = registry.info(id).unwrap();
        let input = range(bytes);
        for s in &info.sections {
            assert_eq!(input.contains(&s.addr), s.in_place, "{variant}: {s:?}");
            // String literals: unpatched and aligned, so candidates; copied when code cannot reach them.
            if s.name.starts_with(".rodata.str") && !s.in_place {
                copied_strings += 1;
            }
        }
        assert_eq!(
            common::call(&registry, "basic_add", &[2, 3]),
            5,
            "{variant}"
        );
        assert_eq!(
            common::call(&registry, "basic_switch", &[8, 10]),
            266,
            "{variant}"
        );
        assert_eq!(
            common::call(&registry, "basic_counter", &[]),
            1,
            "{variant}"
        );
        assert_eq!(registry.unload(id).unwrap(), Unloaded::Freed);
    }
    assert!(copied_strings > 0);
}

#[test]
fn borrowed_bytes_are_refused_for_in_place_storage() {
    let registry = registry();
    let bytes = large_model_object();
    let err = registry.load_with("ip", &bytes, &IN_PLACE).unwrap_err();
    assert!(matches!(err, Error::InPlace { ref extension, .. } if extension == "ip"));
    assert!(err.to_string().contains("load_static"), "{err}");
    assert_eq!(registry.len(), 0);
    // `load_static` with copying storage copies everything, like `load`.
    let id = registry
        .load_static("ip", common::leak(bytes), &LoadOptions::default())
        .unwrap();
    let info = registry.info(id).unwrap();
    assert!(info.sections.iter().all(|s| !s.in_place));
    assert!(info.regions.iter().all(|r| !r.in_place));
}

#[test]
fn unload_frees_only_the_blocks() {
    let original = large_model_object();
    let bytes = common::leak(original.clone());
    let (registry, memory) = common::counting_registry();
    let id = registry.load_static("ip", bytes, &IN_PLACE).unwrap();
    let info = registry.info(id).unwrap();
    assert!(info.sections.iter().any(|s| s.in_place));
    assert!(memory.live() > 0);
    assert_eq!(registry.unload(id).unwrap(), Unloaded::Freed);
    assert_eq!(memory.live(), 0);
    // The input is untouched: nothing was written into it, nothing freed.
    assert_eq!(bytes, &original[..]);
    // And it can be loaded in place again.
    let id = registry.load_static("ip", bytes, &IN_PLACE).unwrap();
    assert_eq!(common::call(&registry, "ip_sum", &[]), 381);
    registry.unload(id).unwrap();
}

#[test]
fn in_place_restore_keeps_in_place_sections() {
    let bytes = common::leak(large_model_object());
    let registry = registry();
    registry.load_static("ip", bytes, &IN_PLACE).unwrap();
    assert_eq!(common::call(&registry, "ip_word", &[3]), 5);
    let before = registry.extensions();
    let (context, _) = suspend_with_storage(&registry, 1, &[bytes]);
    let after = registry.extensions();
    assert_eq!(before[0].sections, after[0].sections);
    assert_eq!(before[0].regions, after[0].regions);
    assert!(after[0].sections.iter().any(|s| s.in_place));
    assert_eq!(common::call(&registry, "ip_prime", &[4]), 11);
    assert_eq!(common::call(&registry, "ip_sum", &[]), 381);
    // The context's in-place marks survive a second save.
    let again = registry.save(&SaveOptions::default()).unwrap();
    assert_eq!(
        Context::from_bytes(&again).unwrap().len(),
        Context::from_bytes(&context).unwrap().len()
    );
}

#[test]
#[cfg(feature = "portable")]
fn portable_contexts_refuse_in_place_sections() {
    let bytes = common::leak(large_model_object());
    let registry = registry();
    registry.load_static("ip", bytes, &IN_PLACE).unwrap();
    let portable = SaveOptions {
        portable: true,
        ..SaveOptions::default()
    };
    let err = registry.save(&portable).unwrap_err();
    assert!(matches!(err, Error::InPlace { ref extension, .. } if extension == "ip"));
    assert!(err.to_string().contains("Storage::Copy"), "{err}");
    assert!(registry.context_size(&portable).is_err());
    // Loaded in place, but with every section copied (its code reaches its constants PC-relatively, too
    // far from the heap): it saves portably as usual.
    let other = common::registry();
    let far = common::leak(llext_fixtures::bytes("basic-gcc-O2-pic.o"));
    let id = other.load_static("basic", far, &IN_PLACE).unwrap();
    assert!(other.info(id).unwrap().sections.iter().all(|s| !s.in_place));
    let context = other.save(&portable).unwrap();
    assert!(Context::from_bytes(&context).unwrap().is_portable());
}

/// A firmware's extension partition rewritten by an update between suspend and resume: the context's
/// retained data and links belong to the old extension, so a restore given the rewritten storage is
/// refused and changes nothing; given storage the extension was not loaded from, too. With the old bytes
/// back, the same context restores and works.
#[test]
fn restore_refuses_storage_rewritten_since_saving() {
    let object = large_model_object();
    let partition: *mut [u8] = pool_bytes(object.len());
    // SAFETY: `partition` is `object.len()` bytes that only this test uses; no reference to them is live.
    unsafe { (*partition).copy_from_slice(&object) };
    // SAFETY: the bytes are never freed; they are written below only through `partition`, after the
    // registry dropped everything it knew of them (`forget_all`), and read again only through fresh
    // references.
    let storage = || -> &'static [u8] { unsafe { &*partition } };
    let registry = registry();
    let id = registry.load_static("ip", storage(), &IN_PLACE).unwrap();
    let rodata = registry
        .info(id)
        .unwrap()
        .regions
        .into_iter()
        .find(|r| r.in_place && r.kind == RegionKind::Rodata)
        .expect("the constants stay in the partition");
    assert_eq!(common::call(&registry, "ip_sum", &[]), 381);
    let save = SaveOptions {
        content_hashes: true,
        ..SaveOptions::default()
    };
    let bytes = registry.save(&save).unwrap();
    assert_eq!(registry.forget_all(), Ok(1));
    let context = Context::from_bytes(&bytes).unwrap();
    let restore = |storage: &[&'static [u8]]| {
        registry.restore_static(&context, &RestoreOptions::default(), storage)
    };

    // Storage other than the one it was loaded from: a copy elsewhere, or none.
    let copy = common::leak(object.clone());
    for given in [&[copy][..], &[]] {
        match restore(given) {
            Err(Error::InPlace { extension, reason }) => {
                assert_eq!(extension, "ip");
                assert!(reason.contains("not among those given"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(registry.extensions().is_empty());
    }

    // The update: one byte of the constants changes.
    let offset = rodata.addr - partition.cast::<u8>() as usize;
    let flip = |bit: u8| {
        // SAFETY: `offset` lies inside the partition (the region does); no reference to it is live.
        unsafe { *partition.cast::<u8>().add(offset) ^= bit };
    };
    flip(1);
    match restore(&[copy, storage()]) {
        Err(Error::StorageChanged {
            extension,
            kind,
            addr,
        }) => {
            assert_eq!((extension.as_str(), kind), ("ip", RegionKind::Rodata));
            assert_eq!(addr, rodata.addr as u64);
        }
        other => panic!("{other:?}"),
    }
    assert!(registry.extensions().is_empty());

    // The old bytes back: the retained blocks are still there to take over, and everything works.
    flip(1);
    let ids = restore(&[copy, storage()]).unwrap();
    assert_eq!(common::call(&registry, "ip_sum", &[]), 381);
    assert_eq!(common::call(&registry, "ip_word", &[1]), 3);
    assert_eq!(registry.unload(ids[0]), Ok(Unloaded::Freed));
}

/// `len` writable bytes from the host pool (below 4 GiB where the pool gets its preferred place), never
/// freed: a stand-in for a microcontroller's flash or RAM, within reach of 32-bit Arm relocations. Taken
/// from the pool rather than a separate low mapping, which could keep the pool itself out of the low 2 GiB.
fn pool_bytes(len: usize) -> &'static mut [u8] {
    let mut host = HostMemory::new();
    let block = host
        .allocate(&BlockRequest {
            size: len,
            align: 4096,
            permission: Permission::ReadWrite,
        })
        .unwrap();
    // SAFETY: the block is `len` writable bytes that nothing else aliases; it is never freed or finalised
    // (dropping the handle without `Memory::free` leaves the memory allocated).
    unsafe { std::slice::from_raw_parts_mut(block.as_ptr(), len) }
}

/// Cross-built Thumb code with no relocations at all: a provider that runs code outside its blocks (a
/// microcontroller's flash) gets the code in place; the default provider copies it. Linked on the host
/// into an arena below 4 GiB, with the input in "flash" below 4 GiB too; not run.
#[test]
fn code_goes_in_place_only_where_the_provider_runs_it() {
    const LEAF: &str = "long leaf(long a, long b) { return a * 3 + (b ^ 5); }\n\
                        static const int table[4] = { 7, 1, 8, 2 };\n\
                        const int *leaf_table(void) { return table; }\n";
    let object = common::compile_for(
        "thumbv7em-none-eabi",
        LEAF,
        &["-mthumb", "-mcpu=cortex-m4", "-ffunction-sections"],
    );
    for code in [false, true] {
        let flash = pool_bytes(object.len());
        flash.copy_from_slice(&object);
        let bytes: &'static [u8] = flash;
        let memory = llext::ArenaMemory::new(pool_bytes(64 * 1024));
        let memory = if code {
            memory.with_code_in_place()
        } else {
            memory
        };
        let registry = Registry::for_machine(memory, ExportTable::default(), 40);
        let options = LoadOptions {
            bring_up: false,
            ..IN_PLACE
        };
        let id = registry.load_static("leaf", bytes, &options).unwrap();
        let info = registry.info(id).unwrap();
        let leaf = info
            .sections
            .iter()
            .find(|s| s.name == ".text.leaf")
            .unwrap();
        // `.text.leaf_table` loads the table's address: patched, so always copied.
        let table_fn = info
            .sections
            .iter()
            .find(|s| s.name == ".text.leaf_table")
            .unwrap();
        assert_eq!(leaf.in_place, code, "{leaf:?}");
        assert!(!table_fn.in_place);
        assert_eq!(range(bytes).contains(&leaf.addr), code);
        let symbol = info.symbols.iter().find(|s| s.name == "leaf").unwrap();
        // The Thumb bit rides on the address of the in-place code.
        assert_eq!(symbol.addr, leaf.addr | 1);
    }
}

/// An extension loaded in place exports a constant that stays in its storage; another extension, loaded
/// with fixups recorded, links against it. (Recording that fixup failed with
/// `Internal("export outside its extension")`: the target lies in no block of the exporter. It is now a
/// fixed address, as the exporter's storage never moves.)
#[test]
fn linking_against_an_export_kept_in_place() {
    const EXPORTER: &str = r#"
struct llext_symbol { const char *name; const void *addr; };
const long ip_table[3] = { 10, 20, 30 };
static const struct llext_symbol __llext_sym_ip_table
    __attribute__((section(".exported_sym"), used)) = { "ip_table", &ip_table };
"#;
    const USER: &str = r#"
extern const long ip_table[3];
long ip_use(long i) { return ip_table[i % 3]; }
"#;
    let r = registry();
    let exporter = common::leak(common::compile_c(EXPORTER, &["-mcmodel=large", "-fno-pic"]));
    r.load_static("exporter", exporter, &IN_PLACE).unwrap();
    let table = r.find_symbol("ip_table").unwrap();
    assert!(
        range(exporter).contains(&table),
        "ip_table stays in the input"
    );
    let user = common::compile_c(USER, &["-mcmodel=large", "-fno-pic"]);
    r.load("user", &user).unwrap();
    // SAFETY: `ip_use` is `long ip_use(long)`.
    assert_eq!(unsafe { r.call("ip_use", &[2]) }.unwrap(), 30);
    // A portable context of the user takes its dependency along, which is kept in place: refused.
    #[cfg(feature = "portable")]
    {
        let portable = SaveOptions {
            names: Some(&["user"]),
            portable: true,
            content_hashes: false,
        };
        assert!(matches!(r.save(&portable), Err(Error::InPlace { .. })));
    }
    // In place, both come back and still work.
    let (_, ids) = suspend_with_storage(&r, 2, &[exporter]);
    // SAFETY: as above.
    assert_eq!(unsafe { r.call("ip_use", &[1]) }.unwrap(), 20);
    for id in ids.into_iter().rev() {
        assert_eq!(r.unload(id).unwrap(), Unloaded::Freed);
    }
}

/// Review of format 8: the fixtures' context helpers must step over the hashes of in-place regions that
/// follow a record in an in-place context saved with content hashes. `set_fixups` found the record it
/// rewrites by adding up the earlier records without them, so it patched a count elsewhere (or panicked).
#[test]
#[cfg(feature = "portable")]
fn fixture_helpers_step_over_in_place_hashes() {
    use llext_fixtures::context;
    let r = registry();
    r.load_static("ip", common::leak(large_model_object()), &IN_PLACE)
        .unwrap();
    let record_fixups = LoadOptions {
        storage: Storage::Copy,
        ..IN_PLACE
    };
    r.load_with(
        "basic",
        &llext_fixtures::bytes("basic-gcc-O2-pic.o"),
        &record_fixups,
    )
    .unwrap();
    let save = SaveOptions {
        content_hashes: true,
        ..SaveOptions::default()
    };
    let ctx = r.save(&save).unwrap();
    let fixups = context::fixups(&ctx, 1);
    assert!(!fixups.is_empty());
    // Rewriting record 1's fixup table with itself changes nothing.
    let mut same = ctx.clone();
    context::set_fixups(&mut same, 1, &fixups);
    assert_eq!(same, ctx);
    // One fixup fewer: the context stays well-formed but for its checksum.
    let mut fewer = ctx.clone();
    context::set_fixups(&mut fewer, 1, &fixups[1..]);
    let n = fewer.len() - 8;
    let sum = Context::checksum(&fewer[..n]);
    fewer[n..].copy_from_slice(&sum.to_le_bytes());
    assert_eq!(context::fixups(&fewer, 1), fixups[1..]);
    Context::from_bytes(&fewer).unwrap();
}

/// Review: a constant used in place lies in no block of the extension's, and `call` on it jumped into it
/// (SIGSEGV). The region holding it says it is data.
#[test]
fn calling_a_constant_used_in_place_is_refused() {
    let source = "const long limit = 9;\nlong ip_limit(void) { return limit; }\n";
    let bytes = common::leak(common::compile_c(source, &["-mcmodel=large", "-fno-pic"]));
    let registry = registry();
    let id = registry.load_static("limit", bytes, &IN_PLACE).unwrap();
    let info = registry.info(id).unwrap();
    assert!(
        info.sections
            .iter()
            .any(|s| s.in_place && s.name.starts_with(".rodata")),
        "{:#?}",
        info.sections
    );
    // SAFETY: `limit` is refused before anything is called; `ip_limit` is `long ip_limit(void)`.
    match unsafe { registry.call("limit", &[]) } {
        Err(llext::Error::NotCode { symbol }) => assert_eq!(symbol, "limit"),
        other => panic!("{other:?}"),
    }
    assert_eq!(unsafe { registry.call("ip_limit", &[]) }.unwrap(), 9);
}
