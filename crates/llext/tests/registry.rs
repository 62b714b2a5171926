//! Registry behaviour: names, use counts, handles, teardown order, threads, the no_std arena.

mod common;

use common::{call, counting_registry, registry};
use llext::{ArenaMemory, Error, ExportTable, LoadOptions, Registry, Unloaded};
use llext_fixtures::bytes;

const LIB: &str = "libmath-gcc-O2-pic.o";
const USER: &str = "usemath-gcc-O2-nopic.o";

#[test]
fn duplicate_load_raises_the_use_count() {
    let (r, memory) = counting_registry();
    let a = r.load("libmath", &bytes(LIB)).unwrap();
    let live = memory.live();
    let b = r.load("libmath", &bytes(LIB)).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        memory.live(),
        live,
        "a second load of a loaded name allocates nothing"
    );
    assert_eq!(r.info(a).unwrap().use_count, 2);
    assert_eq!(r.unload(a).unwrap(), Unloaded::StillInUse(1));
    assert_eq!(call(&r, "lm_mul", &[3, 3]), 9);
    assert_eq!(r.unload(a).unwrap(), Unloaded::Freed);
    assert_eq!(memory.live(), 0);
    assert!(r.is_empty());
}

#[test]
fn stale_handles_are_refused() {
    let r = registry();
    let a = r.load("libmath", &bytes(LIB)).unwrap();
    r.unload(a).unwrap();
    let b = r.load("other", &bytes(LIB)).unwrap();
    assert_ne!(a, b);
    assert!(matches!(r.unload(a), Err(Error::NotLoaded { .. })));
    assert!(matches!(r.info(a), Err(Error::NotLoaded { .. })));
    assert_eq!(r.info(b).unwrap().name, "other");
    assert!(matches!(
        r.unload_name("nope"),
        Err(Error::NotLoaded { .. })
    ));
}

#[test]
fn duplicate_exports_are_refused_without_side_effects() {
    let (r, memory) = counting_registry();
    r.load("libmath", &bytes(LIB)).unwrap();
    let live = memory.live();
    // Every clash is reported, not only the first (user review: `llext check` showed one of four).
    let e = r.load("libmath2", &bytes(LIB)).unwrap_err();
    let mut clashes: Vec<&str> = e
        .problems()
        .iter()
        .map(|p| match p {
            Error::DuplicateExport { symbol, owner, .. } => {
                assert!(owner.contains("libmath"), "{owner}");
                symbol.as_str()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    clashes.sort_unstable();
    assert_eq!(clashes, ["lm_mul", "lm_scale", "lm_scaled"]);
    assert_eq!(r.len(), 1);
    assert_eq!(memory.live(), live);
}

#[test]
fn failed_loads_leave_the_registry_as_it_was() {
    let (r, memory) = counting_registry();
    // usemath needs libmath: fails, naming the first missing symbol, and nothing stays.
    match r.load("usemath", &bytes(USER)) {
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("lm_"), "{text}");
            assert!(text.contains("usemath"), "{text}");
        }
        Ok(_) => panic!("usemath loaded without libmath"),
    }
    assert!(r.is_empty());
    assert_eq!(memory.live(), 0);
    r.load("libmath", &bytes(LIB)).unwrap();
    r.load("usemath", &bytes(USER)).unwrap();
    assert_eq!(call(&r, "use_math", &[5]), 15);
}

#[test]
fn unload_runs_destructors_in_reverse_and_only_when_brought_up() {
    let r = registry();
    let id = r
        .load_with(
            "ctors",
            &bytes("ctors-gcc-O2-pic.o"),
            &LoadOptions {
                bring_up: false,
                ..Default::default()
            },
        )
        .unwrap();
    // Constructors did not run.
    assert_eq!(call(&r, "ctors_state", &[]), 0);
    r.unload(id).unwrap();
}

#[test]
fn iteration_is_in_load_order_and_symbols_are_found() {
    let r = registry();
    for stem in ["dbase", "dleft", "dright", "dtop"] {
        r.load(stem, &bytes(&format!("{stem}-clang-O2-pic.o")))
            .unwrap();
    }
    let names: Vec<String> = r.extensions().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["dbase", "dleft", "dright", "dtop"]);
    assert!(r.find_symbol("db_value").is_some());
    assert!(
        r.find_symbol("dtop_total").is_some(),
        "plain globals are found too"
    );
    assert!(
        r.find_symbol("printf").is_none(),
        "built-ins are not extension symbols"
    );
    let info = r.info(r.get("dbase").unwrap()).unwrap();
    assert!(info
        .symbols
        .iter()
        .any(|s| s.exported && s.name == "db_value"));
    assert!(info.sections.iter().any(|s| s.name.starts_with(".text")));
    for s in &info.sections {
        let region = info.regions.iter().find(|g| g.kind == s.region).unwrap();
        assert!(
            s.addr >= region.addr && s.addr + s.size <= region.addr + region.size,
            "{s:?} in {region:?}"
        );
    }
    assert!(matches!(
        unsafe { r.call("dtop_total", &[1, 2, 3, 4, 5, 6, 7]) },
        Err(Error::TooManyArguments { given: 7, max: 6 })
    ));
    assert!(matches!(
        unsafe { r.call("nothing", &[]) },
        Err(Error::NoSuchSymbol { .. })
    ));
}

#[test]
fn load_from_reader_and_file() {
    let r = registry();
    let id = r
        .load_file(llext_fixtures::path("basic-gcc-O0-pic.o"))
        .unwrap();
    assert_eq!(r.info(id).unwrap().name, "basic-gcc-O0-pic");
    let id2 = r
        .load_reader("again", std::io::Cursor::new(bytes("rsext.o")))
        .unwrap();
    assert_eq!(call(&r, "rs_sum_to", &[10]), 55);
    r.unload(id2).unwrap();
    r.unload(id).unwrap();
    assert!(matches!(
        r.load_file("/nonexistent/x.o"),
        Err(Error::Io { .. })
    ));
}

#[test]
fn threads_load_call_and_unload_concurrently() {
    let r = std::sync::Arc::new(registry());
    r.load("libmath", &bytes(LIB)).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let name = format!("basic-{t}-{}", i % 3);
                    let id = r.load(&name, &bytes("basic-gcc-O2-nopic.o")).unwrap();
                    assert_eq!(call(&r, "lm_mul", &[t, i]), t * i);
                    assert_eq!(r.info(id).unwrap().name, name);
                    r.unload(id).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(r.len(), 1);
    assert_eq!(r.info(r.get("libmath").unwrap()).unwrap().use_count, 1);
}

#[test]
fn arena_memory_links_without_mmap_and_frees_everything() {
    let mut arena = vec![0u8; 64 * 1024];
    let capacity = arena.len();
    let memory = ArenaMemory::new(&mut arena);
    let r = Registry::new(memory, ExportTable::new(llext::LIBC_EXPORTS));
    let no_run = LoadOptions {
        bring_up: false,
        ..Default::default()
    };
    let lib = r.load_with("libmath", &bytes(LIB), &no_run).unwrap();
    let user = r
        .load_with("usemath", &bytes("usemath-gcc-O2-pic.o"), &no_run)
        .unwrap();
    let info = r.info(lib).unwrap();
    for region in &info.regions {
        assert_eq!(region.addr % region.align, 0);
    }
    assert_eq!(r.info(user).unwrap().dependencies, ["libmath"]);
    r.unload(user).unwrap();
    r.unload(lib).unwrap();
    // Everything went back: the space is reusable.
    let id = r
        .load_with("basic", &bytes("basic-gcc-O0-pic.o"), &no_run)
        .unwrap();
    r.unload(id).unwrap();
    // A heap arena lies above 4 GiB: objects built without -fPIC get a clear error, not a broken load.
    match r.load_with("basic", &bytes("basic-gcc-O0-nopic.o"), &no_run) {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("R_X86_64_32") && text.contains("-fPIC"),
                "{text}"
            );
        }
        Ok(_) => panic!("a non-PIC object linked at a high address"),
    }
    assert!(r.is_empty());
    drop(r);
    assert_eq!(capacity, 64 * 1024);
}

#[test]
fn arena_exhaustion_is_an_error() {
    let mut arena = vec![0u8; 256];
    let r = Registry::new(
        ArenaMemory::new(&mut arena),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    let no_run = LoadOptions {
        bring_up: false,
        ..Default::default()
    };
    assert!(matches!(
        r.load_with("basic", &bytes("basic-gcc-O0-nopic.o"), &no_run),
        Err(Error::OutOfMemory { .. })
    ));
    assert!(r.is_empty());
}

/// An embedded user's trial: Arm objects built with `-funwind-tables` (or `-fexceptions`) were refused,
/// because `.ARM.exidx` names `__aeabi_unwind_cpp_pr0` through an `R_ARM_NONE` relocation, which only
/// marks a dependency for a static link. Relocations that patch nothing no longer need their symbol.
#[test]
fn relocations_that_patch_nothing_need_no_symbol() {
    let elf = common::compile_for(
        "thumbv7m-none-eabi",
        "long thrice(long x) { return 3 * x; }\n",
        &["-O2", "-funwind-tables"],
    );
    let mut arena = common::ExecArena::new(1 << 20);
    let r = Registry::for_machine(
        ArenaMemory::new(arena.bytes()),
        ExportTable::default(),
        40, // EM_ARM
    );
    let id = r.load("unwind", &elf).unwrap();
    assert!(r
        .info(id)
        .unwrap()
        .sections
        .iter()
        .any(|s| s.name == ".ARM.exidx"));
}

/// A registry for another machine never runs its extensions' code: an Arm object with a constructor and a
/// destructor loads with the default options (which run constructors on a native registry), a call is
/// refused, and unload runs no destructors — also after an in-place restore of a context that says the
/// extension was initialised, as one saved on the device would. Before, the host ran the Thumb code and
/// crashed.
#[test]
fn a_registry_for_another_machine_never_runs_extension_code() {
    const SOURCE: &str = r#"
static volatile long state;
__attribute__((constructor)) static void up(void) { state = state + 1; }
__attribute__((destructor)) static void down(void) { state = state + 2; }
long get_state(void) { return state; }
"#;
    let elf = common::compile_for("thumbv7m-none-eabi", SOURCE, &["-O2"]);
    let mut arena = common::ExecArena::new(1 << 20);
    let r = Registry::for_machine(
        ArenaMemory::new(arena.bytes()),
        ExportTable::default(),
        40, // EM_ARM
    );
    let id = r.load("foreign", &elf).unwrap();
    let info = r.info(id).unwrap();
    assert!(info.init_count > 0 && info.fini_count > 0, "{info:?}");
    // SAFETY: refused before anything runs.
    let refused = unsafe { r.call("get_state", &[]) };
    assert_eq!(refused, Err(Error::ForeignCode { machine: 40 }));
    assert!(refused.unwrap_err().to_string().contains("never runs them"));

    let mut ctx = r.save(&llext::SaveOptions::default()).unwrap();
    // The first record follows the 56-byte context header: use count (u32), then the initialised flag.
    assert_eq!(ctx[56 + 4], 0, "constructors did not run");
    ctx[56 + 4] = 1;
    let n = ctx.len() - 8;
    let sum = llext::Context::checksum(&ctx[..n]);
    ctx[n..].copy_from_slice(&sum.to_le_bytes());
    assert_eq!(r.forget_all(), Ok(1));
    let context = llext::Context::from_bytes(&ctx).unwrap();
    let ids = r
        .restore(&context, &llext::RestoreOptions::default())
        .unwrap();
    assert_eq!(r.unload(ids[0]).unwrap(), Unloaded::Freed);
}

/// Cortex-M user trial: a firmware that restores an in-place context into an arena other than the one it
/// was saved with (a firmware update moved the arena's static) was told "range is not free in the arena",
/// as if something had taken the retained blocks since. The two refusals now say which it is, and the
/// registry and both arenas are left as they were.
#[test]
fn adopting_outside_the_arena_says_so() {
    let elf = common::compile_for(
        "thumbv7m-none-eabi",
        "long seven(void) { return 7; }\n",
        &["-O2"],
    );
    let mut saved_in = common::ExecArena::new(1 << 20);
    let mut moved = common::ExecArena::new(1 << 20);
    let r = Registry::for_machine(
        ArenaMemory::new(saved_in.bytes()),
        ExportTable::default(),
        40,
    );
    r.load("seven", &elf).unwrap();
    let ctx = r.save(&llext::SaveOptions::default()).unwrap();
    assert_eq!(r.forget_all(), Ok(1));
    let context = llext::Context::from_bytes(&ctx).unwrap();
    let restore =
        |r: &Registry<ArenaMemory<'_>>| r.restore(&context, &llext::RestoreOptions::default());

    let elsewhere =
        Registry::for_machine(ArenaMemory::new(moved.bytes()), ExportTable::default(), 40);
    match restore(&elsewhere) {
        Err(e @ Error::Memory { .. }) => {
            assert!(e.to_string().contains("outside the arena"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(elsewhere.is_empty());
    assert_eq!(elsewhere.with_memory(|m| m.free_bytes()), 1 << 20);
}

/// Cortex-M user trial: following the README, a firmware called `forget_all`, loaded and unloaded another
/// extension (as a boot path loading a default one would), then restored: the load had taken the retained
/// blocks, the restore adopted them all the same, and the next call died of a HardFault at pc 0. The arena
/// now keeps disowned blocks apart: such a load takes other memory, and one that can only fit in them
/// makes the restore a typed refusal. A new arena over the same bytes (a warm reboot) adopts the blocks,
/// unless something it handed out since reached them.
#[test]
fn loads_before_an_in_place_restore_leave_the_kept_blocks_alone() {
    let seven = common::compile_c("long seven(void) { return 7; }", &["-O2", "-fPIC"]);
    let eight = common::compile_c("long eight(void) { return 8; }", &["-O2", "-fPIC"]);
    let mut arena = common::ExecArena::new(1 << 20);
    let bytes = arena.bytes();
    let libc = || ExportTable::new(llext::LIBC_EXPORTS);
    let call = |r: &Registry<ArenaMemory<'_>>, name: &str| {
        // SAFETY: both fixtures are `long f(void)`.
        unsafe { r.call(name, &[]) }
    };

    // What one extension takes: the last arena below has room for one and a half.
    let used = {
        let r = Registry::new(ArenaMemory::new(&mut bytes[..]), libc());
        r.load("seven", &seven).unwrap();
        r.with_memory(|m| m.capacity() - m.free_bytes())
    };

    let ctx = {
        let r = Registry::new(ArenaMemory::new(&mut bytes[..]), libc());
        r.load("seven", &seven).unwrap();
        let ctx = r.save(&llext::SaveOptions::default()).unwrap();
        assert_eq!(r.forget_all(), Ok(1));
        // A load too large for the arena even with the kept blocks leaves them kept.
        let huge = common::compile_c(
            "char big[2 << 20]; long huge(void) { return big[7]; }",
            &["-O2", "-fPIC"],
        );
        assert!(matches!(
            r.load("huge", &huge),
            Err(Error::OutOfMemory { .. })
        ));
        // A load and unload between: other memory, and the restored code still runs.
        let other = r.load("eight", &eight).unwrap();
        assert_eq!(call(&r, "eight"), Ok(8));
        assert_eq!(r.unload(other), Ok(Unloaded::Freed));
        let context = llext::Context::from_bytes(&ctx).unwrap();
        r.restore(&context, &llext::RestoreOptions::default())
            .unwrap();
        assert_eq!(call(&r, "seven"), Ok(7));
        assert_eq!(r.forget_all(), Ok(1));
        ctx
    };
    let context = llext::Context::from_bytes(&ctx).unwrap();

    // A warm reboot: a new arena over the same bytes adopts what nothing handed out since.
    {
        let r = Registry::new(ArenaMemory::new(&mut bytes[..]), libc());
        r.restore(&context, &llext::RestoreOptions::default())
            .unwrap();
        assert_eq!(call(&r, "seven"), Ok(7));
        assert_eq!(r.forget_all(), Ok(1));
    }
    // A warm reboot whose boot path loads first, over the saved blocks: refused, nothing changed.
    {
        let r = Registry::new(ArenaMemory::new(&mut bytes[..]), libc());
        r.load("eight", &eight).unwrap();
        let free = r.with_memory(|m| m.free_bytes());
        match r.restore(&context, &llext::RestoreOptions::default()) {
            Err(e @ Error::Memory { .. }) => {
                assert!(e.to_string().contains("handed the range out"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.len(), 1);
        assert_eq!(r.with_memory(|m| m.free_bytes()), free);
        assert_eq!(call(&r, "eight"), Ok(8));
    }
    // In process, a load that only fits in the kept blocks takes them, and the restore is refused.
    let r = Registry::new(ArenaMemory::new(&mut bytes[..used + used / 2]), libc());
    r.load("seven", &seven).unwrap();
    let ctx = r.save(&llext::SaveOptions::default()).unwrap();
    assert_eq!(r.forget_all(), Ok(1));
    r.load("eight", &eight).unwrap();
    match r.restore(
        &llext::Context::from_bytes(&ctx).unwrap(),
        &llext::RestoreOptions::default(),
    ) {
        Err(e @ Error::Memory { .. }) => {
            assert!(e.to_string().contains("handed the range out"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.len(), 1);
    assert_eq!(call(&r, "eight"), Ok(8));
}

/// After a warm reboot a new arena adopts the blocks nothing handed out since it was made. An extension
/// restored there and then unloaded (its destructors ran, its memory went back) has had its blocks
/// handed out: restoring the same context again must be refused, as it is in the arena the context was
/// saved in, instead of bringing back an extension whose destructors already ran.
#[test]
fn an_extension_unloaded_after_a_warm_reboot_is_not_restored_in_place_again() {
    let ctors = bytes("ctors-gcc-O2-pic.o");
    let mut arena = common::ExecArena::new(1 << 20);
    let bytes = arena.bytes();
    let libc = || ExportTable::new(llext::LIBC_EXPORTS);
    let ctx = {
        let r = Registry::new(ArenaMemory::new(&mut bytes[..]), libc());
        r.load("ctors", &ctors).unwrap();
        let ctx = r.save(&llext::SaveOptions::default()).unwrap();
        assert_eq!(r.forget_all(), Ok(1));
        ctx
    };
    let context = llext::Context::from_bytes(&ctx).unwrap();
    let restore =
        |r: &Registry<ArenaMemory<'_>>| r.restore(&context, &llext::RestoreOptions::default());
    {
        let r = Registry::new(ArenaMemory::new(&mut bytes[..]), libc());
        let ids = restore(&r).unwrap();
        assert_eq!(call(&r, "ctors_state", &[]), 12);
        assert_eq!(r.unload(ids[0]), Ok(Unloaded::Freed)); // "ctors: destructor ran"
        assert!(
            matches!(restore(&r), Err(Error::Memory { .. })),
            "an extension whose destructors ran came back"
        );
        assert!(r.is_empty());
    }
    // The in-process counterpart, for comparison: refused.
    let r = Registry::new(ArenaMemory::new(&mut bytes[..]), libc());
    let id = r.load("ctors", &ctors).unwrap();
    let ctx = r.save(&llext::SaveOptions::default()).unwrap();
    assert_eq!(r.unload(id), Ok(Unloaded::Freed));
    assert!(matches!(
        r.restore(
            &llext::Context::from_bytes(&ctx).unwrap(),
            &llext::RestoreOptions::default()
        ),
        Err(Error::Memory { .. })
    ));
}

/// User review: `llext run --call counter` on an exported `long counter` jumped into the data and died of
/// SIGSEGV. A symbol in a block without execute permission is refused, exported or only global, also after
/// a restore; a function is still called.
#[test]
fn calling_data_is_a_typed_error() {
    let source = "#include \"llext.h\"\n\
                  long counter = 5;\n\
                  const long limit = 9;\n\
                  long zeroed;\n\
                  long bump(long by) { return counter += by; }\n\
                  LLEXT_EXPORT(counter);\n\
                  LLEXT_EXPORT(limit);\n\
                  LLEXT_EXPORT(bump);\n";
    let r = registry();
    r.load("data", &common::compile_c(source, &[])).unwrap();
    let refused = |r: &llext::Registry<llext::HostMemory>| {
        for symbol in ["counter", "limit", "zeroed"] {
            // SAFETY: refused before anything is called.
            match unsafe { r.call(symbol, &[]) } {
                Err(e @ Error::NotCode { .. }) => {
                    assert!(
                        e.to_string().contains(&format!("`{symbol}` is data")),
                        "{e}"
                    )
                }
                other => panic!("{symbol}: {other:?}"),
            }
        }
        // SAFETY: `bump` is `long bump(long)`.
        unsafe { r.call("bump", &[1]) }.unwrap()
    };
    assert_eq!(refused(&r), 6);
    // Review: an export of another extension's data has no block of its own extension; the region that
    // holds it says it is data.
    let alias = "#include \"llext.h\"\n\
                 extern long counter;\n\
                 static const struct llext_symbol e __attribute__((section(\".exported_sym\"), used)) =\n\
                     { \"counter_alias\", &counter };\n";
    r.load("alias", &common::compile_c(alias, &[])).unwrap();
    // SAFETY: refused before anything is called.
    match unsafe { r.call("counter_alias", &[]) } {
        Err(Error::NotCode { symbol }) => assert_eq!(symbol, "counter_alias"),
        other => panic!("{other:?}"),
    }
    r.unload_name("alias").unwrap();
    #[cfg(feature = "portable")]
    {
        let other = common::restored_elsewhere(&r);
        assert_eq!(refused(&other), 7);
    }
}

/// Review of the load path: calling an exported symbol at address 0 (an extension exporting a weak symbol
/// nothing defines) was reported as an internal error of llext; it is the typed `NullSymbol`.
#[test]
fn calling_a_null_export_is_a_typed_error() {
    let source = "#include \"llext.h\"\n\
                  extern long maybe_missing(long) __attribute__((weak));\n\
                  LLEXT_EXPORT(maybe_missing);\n";
    let r = registry();
    r.load("weakexp", &common::compile_c(source, &["-fPIC"]))
        .unwrap();
    assert_eq!(r.find_symbol("maybe_missing"), Some(0));
    // SAFETY: refused before anything is called.
    match unsafe { r.call("maybe_missing", &[1]) } {
        Err(Error::NullSymbol { symbol }) => assert_eq!(symbol, "maybe_missing"),
        other => panic!("{other:?}"),
    }
}

/// A user's trial: extension B's weak definitions were used even though extension A, loaded first, exports
/// strong ones of the same names; a static link (and `dlopen`) would use A's. A weak definition of default
/// visibility now gives way to an export of a loaded extension, and B depends on A. Hidden ones, those
/// nothing else defines, and those a built-in of the same name has (a static C library provides only
/// what is undefined: review found `long clock` data rebound to libc's `clock` code) are used as
/// defined. Also after a restore.
#[test]
fn weak_definitions_give_way_to_exports_of_loaded_extensions() {
    let strong = "#include \"llext.h\"\n\
                  long tunable(long x) { return x * 1000; }\n\
                  long weak_data = 7;\n\
                  long hidden_hook(void) { return 8; }\n\
                  LLEXT_EXPORT(tunable);\n\
                  LLEXT_EXPORT(weak_data);\n\
                  LLEXT_EXPORT(hidden_hook);\n";
    let weak = "typedef unsigned long size_t;\n\
                __attribute__((weak)) long tunable(long x) { return x * 7; }\n\
                __attribute__((weak)) long weak_data = 42;\n\
                __attribute__((weak)) size_t strlen(const char *s) { (void)s; return 99; }\n\
                __attribute__((weak)) long clock = 5;\n\
                __attribute__((weak, visibility(\"hidden\"))) long hidden_hook(void) { return 5; }\n\
                __attribute__((weak)) long only_here(void) { return 3; }\n\
                long weak_main(long x) {\n\
                    return tunable(x) + weak_data + (long)strlen(\"abcd\") * 100000 + hidden_hook() * 10\n\
                        + only_here() + ++clock * 1000000;\n\
                }\n";
    for flags in [&["-fno-builtin"][..], &["-fno-builtin", "-fPIC"][..]] {
        let r = registry();
        let a = r.load("strong", &common::compile_c(strong, &[])).unwrap();
        let b = r.load("weak", &common::compile_c(weak, flags)).unwrap();
        // A's tunable and weak_data, B's strlen (99), hidden_hook (5), only_here and clock (5, then 6).
        let expected = |clock: i64| 3000 + 7 + 9_900_000 + 50 + 3 + clock * 1_000_000;
        // SAFETY: `weak_main` is `long weak_main(long)`.
        assert_eq!(
            unsafe { r.call("weak_main", &[3]) }.unwrap(),
            expected(6),
            "{flags:?}"
        );
        assert_eq!(r.info(b).unwrap().dependencies, ["strong"]);
        assert!(matches!(r.unload(a), Err(Error::InUse { .. })));
        #[cfg(feature = "portable")]
        {
            let other = common::restored_elsewhere(&r);
            // SAFETY: as above.
            assert_eq!(
                unsafe { other.call("weak_main", &[3]) }.unwrap(),
                expected(7),
                "{flags:?}"
            );
        }
        // Alone, B's weak definitions are its own.
        let alone = registry();
        alone.load("weak", &common::compile_c(weak, flags)).unwrap();
        assert_eq!(
            unsafe { alone.call("weak_main", &[3]) }.unwrap(),
            21 + 42 + 9_900_000 + 50 + 3 + 6_000_000,
            "{flags:?}"
        );
    }
}

/// An object built for another floating-point calling convention than the registry's code is refused,
/// as GNU `ld` refuses to link the two: an embedded user's trial loaded `-mfloat-abi=soft` objects into a
/// hard-float Cortex-M firmware without a word, where a `float` argument goes unseen.
#[test]
fn objects_of_another_float_abi_are_refused() {
    use llext::arch::FloatAbi;
    const SOURCE: &str = "float pick(float a, float b, int first) { return first ? a : b; }\n";
    let cases: [(&str, &[&str], u16, FloatAbi); 6] = [
        ("thumbv7m-none-eabi", &[], 40, FloatAbi::Soft),
        (
            "thumbv7em-none-eabihf",
            &["-mfloat-abi=hard"],
            40,
            FloatAbi::Vfp,
        ),
        (
            "riscv32-unknown-elf",
            &["-march=rv32imac", "-mabi=ilp32"],
            243,
            FloatAbi::Soft,
        ),
        (
            "riscv32-unknown-elf",
            &["-march=rv32imafc", "-mabi=ilp32f"],
            243,
            FloatAbi::Single,
        ),
        (
            "riscv64-unknown-elf",
            &["-march=rv64gc", "-mabi=lp64d"],
            243,
            FloatAbi::Double,
        ),
        (
            "riscv64-unknown-elf",
            &["-march=rv64imac", "-mabi=lp64"],
            243,
            FloatAbi::Soft,
        ),
    ];
    let mut arena = common::ExecArena::new(1 << 20);
    for (triple, flags, machine, abi) in cases {
        let elf = common::compile_for(triple, SOURCE, flags);
        // The registry's own convention from the object's `e_flags`: it loads.
        {
            let r = Registry::for_machine(
                ArenaMemory::new(arena.bytes()),
                ExportTable::default(),
                machine,
            );
            r.set_float_abi(Some(abi));
            r.load("same", &elf)
                .unwrap_or_else(|e| panic!("{triple} {flags:?}: {e}"));
        }
        // Any other: refused, nothing loaded; with none set, anything loads.
        let others = [
            FloatAbi::Soft,
            FloatAbi::Vfp,
            FloatAbi::Single,
            FloatAbi::Double,
        ];
        for other in others.into_iter().filter(|o| *o != abi) {
            let r = Registry::for_machine(
                ArenaMemory::new(arena.bytes()),
                ExportTable::default(),
                machine,
            );
            r.set_float_abi(Some(other));
            let e = r.load("other", &elf).unwrap_err();
            let bits = if triple.starts_with("riscv64") {
                64
            } else {
                32
            };
            assert_eq!(
                e,
                Error::FloatAbi {
                    machine,
                    bits,
                    expected: other,
                    found: abi
                },
                "{triple} {flags:?}"
            );
            // The flag to rebuild with, for the object's width alone.
            let flag = other.flag(machine, bits);
            assert!(e.to_string().contains(flag), "{e}");
            assert!(!e.to_string().contains(" / "), "{e}");
            assert!(r.is_empty());
            r.set_float_abi(None);
            r.load("any", &elf).unwrap();
        }
    }
    // A registry for another machine knows no convention until told.
    let elf = common::compile_for("thumbv7m-none-eabi", SOURCE, &[]);
    let r = Registry::for_machine(ArenaMemory::new(arena.bytes()), ExportTable::default(), 40);
    r.load("foreign", &elf).unwrap();
}

/// Hand-written assembly built for a hard-float target carries `.ARM.attributes` without
/// `Tag_ABI_VFP_args` (and without `Tag_ABI_FP_number_model`: it uses no floating point). GNU `ld` links it
/// with hard-float objects (`ld -r hard.o asm.o` succeeds); the registry must not refuse it as soft-float.
#[test]
fn hard_float_assembly_without_vfp_args_is_not_refused() {
    use llext::arch::FloatAbi;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("review-float-asm");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("add.S");
    std::fs::write(
        &src,
        ".syntax unified\n.thumb\n.text\n.globl asm_add\n.type asm_add, %function\nasm_add:\n\tadds r0, r0, r1\n\tbx lr\n",
    )
    .unwrap();
    let obj = dir.join("add.o");
    let out = std::process::Command::new("clang")
        .args([
            "--target=thumbv7em-none-eabihf",
            "-mcpu=cortex-m4",
            "-mfloat-abi=hard",
            "-c",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("clang");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elf = std::fs::read(&obj).unwrap();
    let mut arena = common::ExecArena::new(1 << 20);
    let r = Registry::for_machine(ArenaMemory::new(arena.bytes()), ExportTable::default(), 40);
    r.set_float_abi(Some(FloatAbi::Vfp));
    r.load("asm", &elf).unwrap_or_else(|e| panic!("{e}"));
}

/// A call from 32-bit code to a built-in above 4 GiB needs a veneer that cannot hold its address: a typed
/// error naming the symbol, not an internal one (a user's trial of `llext check` found "internal error in
/// llext (please report): stub does not fit" for a Thumb object and an export list with such an address).
#[test]
fn a_32_bit_call_to_a_builtin_above_4_gib_is_a_typed_error() {
    const SOURCE: &str = "long far_away(long);\nlong near(long x) { return far_away(x) + 1; }\n";
    let elf = common::compile_for("thumbv7m-none-eabi", SOURCE, &["-O2"]);
    static FAR: &[llext::Export] = &[llext::Export::function(
        "far_away",
        0x1_0000_0001usize as *const (),
    )];
    let mut arena = common::ExecArena::new(1 << 20);
    let r = Registry::for_machine(ArenaMemory::new(arena.bytes()), ExportTable::new(FAR), 40);
    let e = r.load("near", &elf).unwrap_err();
    assert!(
        matches!(&e, Error::BadSymbol { name, reason, .. } if name == "far_away" && reason.contains("call stubs")),
        "{e}"
    );
    assert!(r.is_empty());
}

/// A32 (Arm-state) code cannot run on a Cortex-M. `arm-none-eabi-gcc -c` without `-mthumb -mcpu=...` makes
/// it, and on a soft-float Cortex-M (whose float ABI such an object matches) it loaded and faulted when
/// called. A registry that runs Thumb code only refuses it, naming the section; Thumb objects load.
#[test]
fn a32_code_is_refused_where_only_thumb_runs() {
    const SOURCE: &str = "long triple(long x) { return 3 * x; }\n";
    let a32 = common::compile_for("armv7a-none-eabi", SOURCE, &["-marm"]);
    let thumb = common::compile_for("thumbv7m-none-eabi", SOURCE, &[]);
    assert_eq!(llext::arch::arm_profile(&a32), Some('A'));
    assert_eq!(llext::arch::arm_profile(&thumb), Some('M'));
    let mut arena = common::ExecArena::new(1 << 20);
    let r = Registry::for_machine(ArenaMemory::new(arena.bytes()), ExportTable::default(), 40);
    // A registry for another machine runs nothing, and takes both until told.
    r.load("a32", &a32).unwrap();
    r.unload(r.get("a32").unwrap()).unwrap();
    r.set_thumb_only(true);
    let e = r.load("a32", &a32).unwrap_err();
    assert_eq!(
        e,
        Error::ArmState {
            section: ".text".into()
        }
    );
    assert!(e.to_string().contains("-mthumb"), "{e}");
    assert!(r.is_empty());
    r.load("thumb", &thumb).unwrap();
    // Thumb code built for a Cortex-A may use instructions a Cortex-M lacks: refused for its profile.
    let a_thumb = common::compile_for("armv7a-none-eabi", SOURCE, &["-mthumb", "-mcpu=cortex-a7"]);
    assert_eq!(llext::arch::arm_profile(&a_thumb), Some('A'));
    let e = r.load("a-thumb", &a_thumb).unwrap_err();
    assert_eq!(e, Error::ArmProfile { found: 'A' });
    assert!(e.to_string().contains("-mcpu"), "{e}");
    assert_eq!(r.len(), 1);
}

/// An object whose build attributes say it may use instructions the core lacks is refused, naming what is
/// missing: it would fault at the first such instruction. Objects from GNU and LLVM compilers, for Cortex-M
/// cores and RISC-V ones.
#[test]
fn objects_built_for_more_than_the_core_are_refused() {
    use llext::arch::Isa;
    // What the attributes say follows the flags, not the code: an object built for a double-precision FPU
    // may use it anywhere.
    const SOURCE: &str = "int add(int a, int b) { return a + b; }\n";
    enum Cc {
        Arm,
        Riscv,
        Clang(&'static str),
    }
    // (compiler, flags, core, what is missing or `None` if it loads)
    let cases: [(Cc, &[&str], &str, Option<&str>); 18] = [
        (
            Cc::Arm,
            &[
                "-mthumb",
                "-mcpu=cortex-m4",
                "-mfpu=fpv4-sp-d16",
                "-mfloat-abi=hard",
            ],
            "armv7e-m+fp",
            None,
        ),
        (
            Cc::Arm,
            &["-mthumb", "-mcpu=cortex-m3"],
            "armv7e-m+fp",
            None,
        ),
        (Cc::Arm, &["-mthumb", "-mcpu=cortex-m0"], "armv6-m", None),
        (
            Cc::Arm,
            &[
                "-mthumb",
                "-mcpu=cortex-m7",
                "-mfpu=fpv5-d16",
                "-mfloat-abi=hard",
            ],
            "armv7e-m+fp",
            Some("a double-precision FPU"),
        ),
        (
            Cc::Arm,
            &[
                "-mthumb",
                "-mcpu=cortex-m7",
                "-mfpu=fpv5-d16",
                "-mfloat-abi=hard",
            ],
            "armv7e-m+fp.dp",
            None,
        ),
        (
            Cc::Arm,
            &["-mthumb", "-march=armv8.1-m.main+mve", "-mfloat-abi=hard"],
            "armv7e-m+fp",
            Some("instructions of armv8.1-m.main"),
        ),
        (
            Cc::Arm,
            &["-mthumb", "-mcpu=cortex-m4", "-mfloat-abi=soft"],
            "armv7-m",
            Some("the DSP extension"),
        ),
        (
            Cc::Arm,
            &[
                "-mthumb",
                "-mcpu=cortex-m4",
                "-mfpu=fpv4-sp-d16",
                "-mfloat-abi=softfp",
            ],
            "armv7e-m",
            Some("an FPU"),
        ),
        (
            Cc::Arm,
            &["-mthumb", "-mcpu=cortex-m3"],
            "armv6-m",
            Some("instructions of armv7-m"),
        ),
        (
            Cc::Clang("thumbv7em-none-eabihf"),
            &["-mcpu=cortex-m7", "-mfloat-abi=hard"],
            "armv7e-m+fp",
            Some("a double-precision FPU"),
        ),
        // A single-precision FPv5 (VRINT, VMAXNM): more than a Cortex-M4F's FPv4, within a Cortex-M33's.
        (
            Cc::Arm,
            &[
                "-mthumb",
                "-mcpu=cortex-m7",
                "-mfpu=fpv5-sp-d16",
                "-mfloat-abi=hard",
            ],
            "armv7e-m+fp",
            Some("an FPv5 FPU (VRINT, VSEL, VMAXNM), as a Cortex-M7's"),
        ),
        (
            Cc::Clang("thumbv7em-none-eabihf"),
            &["-mcpu=cortex-m7", "-mfpu=fpv5-sp-d16"],
            "armv8-m.main+dsp+fp",
            None,
        ),
        (
            Cc::Riscv,
            &["-march=rv32imac", "-mabi=ilp32"],
            "rv32imac",
            None,
        ),
        (
            Cc::Riscv,
            &["-march=rv32imafc", "-mabi=ilp32"],
            "rv32imac",
            Some("the F extension"),
        ),
        (
            Cc::Riscv,
            &["-march=rv32e", "-mabi=ilp32e"],
            "rv32imac",
            Some("the E base and its ilp32e calling convention"),
        ),
        (
            Cc::Riscv,
            &["-march=rv64gc_zba", "-mabi=lp64d"],
            "rv64gc",
            Some("the Zba extension"),
        ),
        (
            Cc::Riscv,
            &["-march=rv64gc_zba", "-mabi=lp64d"],
            "rv64gc_zba_zbb",
            None,
        ),
        (
            Cc::Clang("riscv32-unknown-elf"),
            &["-march=rv32imac_zbb", "-mabi=ilp32"],
            "rv32imac",
            Some("the Zbb extension"),
        ),
    ];
    let mut arena = common::ExecArena::new(1 << 20);
    for (cc, flags, core, missing) in cases {
        let elf = match cc {
            Cc::Arm => common::compile_arm_gcc(SOURCE, flags),
            Cc::Riscv => common::compile_riscv_gcc(SOURCE, flags),
            Cc::Clang(triple) => common::compile_for(triple, SOURCE, flags),
        };
        let core = Isa::from_key(core).unwrap();
        let needs = Isa::of_elf(&elf).unwrap_or_else(|| panic!("{flags:?}: no ISA"));
        let r = Registry::for_machine(
            ArenaMemory::new(arena.bytes()),
            ExportTable::default(),
            core.machine(),
        );
        // Until the registry knows its core, anything of its machine loads.
        r.load("any", &elf)
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        r.unload(r.get("any").unwrap()).unwrap();
        r.set_isa(Some(core));
        match missing {
            None => {
                r.load("fits", &elf)
                    .unwrap_or_else(|e| panic!("{flags:?} on {core}: {e}"));
            }
            Some(missing) => {
                let e = r.load("more", &elf).unwrap_err();
                assert_eq!(
                    e,
                    Error::Isa {
                        object: needs.key(),
                        core: core.key(),
                        missing: missing.into(),
                    },
                    "{flags:?} on {core}"
                );
                assert!(e.to_string().contains(&format!("-march={core}")), "{e}");
                // RISC-V compilers have no -mcpu/-mfpu pair to suggest (a trial saw it suggested).
                let arm = core.machine() == 40;
                assert_eq!(e.to_string().contains("-mfpu"), arm, "{e}");
                assert!(r.is_empty());
            }
        }
    }
    // The host's own registry knows no ISA to compare with: x86-64 objects say none.
    #[cfg(target_arch = "x86_64")]
    assert_eq!(Isa::native(), None);
}

/// Plugins that each define a function of one name (`plugin_main`) are called one by one with `call_in`;
/// `call` takes the first one loaded. A user trial found no way to call the second one.
#[test]
fn call_in_calls_one_extensions_function() {
    let a = common::compile_c(
        "long plugin_main(long x) { return x + 1; }\nlong table[2] = {1, 2};\n",
        &["-fPIC"],
    );
    let b = common::compile_c("long plugin_main(long x) { return x * 10; }\n", &["-fPIC"]);
    let r = registry();
    let ia = r.load("a", &a).unwrap();
    let ib = r.load("b", &b).unwrap();
    // SAFETY: `plugin_main` is `long plugin_main(long)` in both.
    unsafe {
        assert_eq!(r.call("plugin_main", &[4]).unwrap(), 5);
        assert_eq!(r.call_in(ia, "plugin_main", &[4]).unwrap(), 5);
        assert_eq!(r.call_in(ib, "plugin_main", &[4]).unwrap(), 40);
        assert_eq!(
            r.call_in(ib, "table", &[]),
            Err(Error::NoSuchSymbol {
                symbol: "table".into()
            })
        );
        assert_eq!(
            r.call_in(ia, "table", &[]),
            Err(Error::NotCode {
                symbol: "table".into()
            })
        );
    }
    r.unload(ib).unwrap();
    // SAFETY: as above; the handle is stale.
    let stale = unsafe { r.call_in(ib, "plugin_main", &[4]) };
    assert!(matches!(stale, Err(Error::NotLoaded { .. })), "{stale:?}");
}

/// A handle is refused by every registry but the one that gave it: a user trial unloaded registry 2's
/// extension with registry 1's handle of the same slot.
#[test]
fn handles_belong_to_their_registry() {
    let (one, two) = (registry(), registry());
    let a = one.load("libmath", &bytes(LIB)).unwrap();
    let b = two.load("libmath", &bytes(LIB)).unwrap();
    assert_ne!(a, b);
    for e in [
        two.unload(a).unwrap_err(),
        two.info(a).unwrap_err(),
        two.extension_symbol(a, "lm_mul").unwrap_err(),
    ] {
        assert!(matches!(e, Error::NotLoaded { .. }), "{e:?}");
    }
    assert_eq!(two.len(), 1);
    assert_eq!(two.info(b).unwrap().use_count, 1);
    one.unload(a).unwrap();
    two.unload(b).unwrap();
}

/// A firmware image without build attributes (stripped, or from a compiler that writes none) does not say
/// what its core runs: its RISC-V `e_flags` name only C and E, so reading the core from them would refuse
/// every object using M or A (`llext check --exports image.elf` refused `-march=rv32imac` objects against
/// an `rv32imac` image so).
#[test]
fn an_image_without_attributes_names_no_core() {
    use llext::arch::Isa;
    let elf = common::compile_riscv_gcc(
        "int add(int a, int b) { return a * b; }\n",
        &["-march=rv32imac", "-mabi=ilp32"],
    );
    assert_eq!(Isa::of_elf(&elf), Isa::from_key("rv32imac"));
    // Make `.riscv.attributes` (SHT_RISCV_ATTRIBUTES) a plain PROGBITS section (ELF32 little-endian).
    let mut bare = elf.clone();
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let shoff = u32_at(&bare, 0x20) as usize;
    let entsize = u16::from_le_bytes([bare[0x2e], bare[0x2f]]) as usize;
    let count = u16::from_le_bytes([bare[0x30], bare[0x31]]) as usize;
    let mut found = false;
    for k in 0..count {
        let at = shoff + k * entsize + 4;
        if u32_at(&bare, at) == 0x7000_0003 {
            bare[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
            found = true;
        }
    }
    assert!(found);
    assert_eq!(Isa::of_elf(&bare), None);
}

/// A registry told its core's M-profile instruction set (`set_isa`, a list's `# isa: armv7e-m`) but not
/// `set_thumb_only` refuses what no Cortex-M runs: Armv7-A Thumb code (Tag_CPU_arch v7, as Armv7-M's) and
/// A32 code, which were accepted as `armv7-m`.
#[test]
fn an_m_profile_isa_refuses_a_profile_code() {
    use llext::arch::Isa;
    const SOURCE: &str = "long triple(long x) { return 3 * x; }\n";
    let a_thumb = common::compile_for("armv7a-none-eabi", SOURCE, &["-mthumb", "-mcpu=cortex-a7"]);
    let a32 = common::compile_for("armv7a-none-eabi", SOURCE, &["-marm"]);
    let thumb = common::compile_for("thumbv7m-none-eabi", SOURCE, &[]);
    // Not an M-profile architecture: `llext inspect` named it `armv7-m`.
    assert_eq!(Isa::of_elf(&a_thumb), None);
    assert_eq!(Isa::of_elf(&thumb), Isa::from_key("armv7-m"));
    let mut arena = common::ExecArena::new(1 << 20);
    let r = Registry::for_machine(ArenaMemory::new(arena.bytes()), ExportTable::default(), 40);
    r.set_isa(Isa::from_key("armv7e-m+fp"));
    assert_eq!(
        r.load("a-thumb", &a_thumb).unwrap_err(),
        Error::ArmProfile { found: 'A' }
    );
    assert!(matches!(
        r.load("a32", &a32).unwrap_err(),
        Error::ArmState { .. }
    ));
    r.load("thumb", &thumb).unwrap();
}

/// A RISC-V core's ISA names its width: a registry for another machine, which learns no pointer width
/// otherwise, refuses objects of the other one (`llext check` with a list's `# isa: rv32imac` said `ok` for
/// an `rv64gc` object).
#[test]
fn a_core_of_one_width_refuses_objects_of_the_other() {
    use llext::arch::Isa;
    const SOURCE: &str = "long add(long a, long b) { return a + b; }\n";
    let rv64 = common::compile_riscv_gcc(SOURCE, &["-march=rv64gc", "-mabi=lp64d"]);
    let rv32 = common::compile_riscv_gcc(SOURCE, &["-march=rv32imac", "-mabi=ilp32"]);
    let mut arena = common::ExecArena::new(1 << 20);
    let r = Registry::for_machine(ArenaMemory::new(arena.bytes()), ExportTable::default(), 243);
    r.set_isa(Isa::from_key("rv32imac"));
    assert_eq!(
        r.load("rv64", &rv64).unwrap_err(),
        Error::WrongClass {
            expected: 32,
            found: 64
        }
    );
    r.load("rv32", &rv32).unwrap();
}

/// `locate` names the extension, region and nearest symbol of an address, as a fault handler reports it;
/// on Arm from the code's address, without the Thumb bit its function symbols carry.
#[test]
fn locate_names_where_an_address_lies() {
    const SOURCE: &str =
        "long first(long x) { return x + 1; }\nlong second(long x) { return x * 3; }\n";
    let r = registry();
    let id = r
        .load("two", &common::compile_c(SOURCE, &["-fPIC"]))
        .unwrap();
    let second = r.extension_symbol(id, "second").unwrap().unwrap();
    let at = r.locate(second + 3).unwrap();
    assert_eq!(
        (
            at.id,
            at.extension.as_str(),
            at.symbol.as_deref(),
            at.offset
        ),
        (id, "two", Some("second"), 3)
    );
    assert_eq!(at.region, llext::RegionKind::Text);
    assert_eq!(r.locate(0x10), None);

    let thumb = common::compile_for("thumbv7m-none-eabi", SOURCE, &[]);
    let mut arena = common::ExecArena::new(1 << 20);
    let arm = Registry::for_machine(ArenaMemory::new(arena.bytes()), ExportTable::default(), 40);
    let id = arm.load("thumb", &thumb).unwrap();
    let second = arm.extension_symbol(id, "second").unwrap().unwrap();
    assert_eq!(second & 1, 1, "a Thumb function's symbol");
    let at = arm.locate((second & !1) + 2).unwrap();
    assert_eq!((at.symbol.as_deref(), at.offset), (Some("second"), 2));
    assert_eq!(at.to_string(), "`second`+0x2 in extension `thumb`");
}

/// A restore reads no ELF file, so each record carries what its load read from the object: a restore
/// refuses an extension whose object needs instructions this core lacks (`Error::SnapshotCore`), passes
/// floats another way, holds A32 code or was built for the A-profile where only Thumb code of the M-profile
/// runs — whatever the saving registry knew of its core (a build host that was told nothing) — and takes
/// one whose object needs no more than this core has, even if the saving core had more.
#[test]
#[cfg(feature = "portable")]
fn a_restore_refuses_code_for_more_than_its_core_runs() {
    use llext::arch::{FloatAbi, Isa};
    use llext::{Context, RestoreOptions};
    const SOURCE: &str = "long triple(long x) { return 3 * x; }\n";
    let portable = common::portable();
    let mut arena = common::ExecArena::new(1 << 20);
    let mut arena2 = common::ExecArena::new(1 << 20);
    // (machine, object, saving core and convention, restoring cores and conventions with what is refused)
    type Setup = (Option<&'static str>, Option<FloatAbi>, bool);
    type Case = (u16, Vec<u8>, Setup, Vec<(Setup, Option<&'static str>)>);
    let rv32imafc = common::compile_riscv_gcc(SOURCE, &["-march=rv32imafc", "-mabi=ilp32f"]);
    let refused_rv32imafc = || {
        vec![
            ((Some("rv32imafc"), Some(FloatAbi::Single), false), None),
            ((Some("rv32gc"), Some(FloatAbi::Single), false), None),
            ((None, None, false), None),
            (
                (Some("rv32imac"), Some(FloatAbi::Single), false),
                Some("instruction set is rv32imafc, and here it is rv32imac, without the F extension"),
            ),
            (
                (Some("rv32imafc"), Some(FloatAbi::Soft), false),
                Some("floating-point calling convention is single, and here it is soft"),
            ),
        ]
    };
    let cases: [Case; 4] = [
        (
            243,
            rv32imafc.clone(),
            (Some("rv32imafc"), Some(FloatAbi::Single), false),
            refused_rv32imafc(),
        ),
        // Saved by a registry told nothing of its core, as a build host may be: the same refusals.
        (243, rv32imafc, (None, None, false), refused_rv32imafc()),
        // Code for a lesser core, saved by a registry of a larger one: restores on the lesser one.
        (
            243,
            common::compile_riscv_gcc(SOURCE, &["-march=rv32imac", "-mabi=ilp32"]),
            (Some("rv32imafc"), None, false),
            vec![
                ((Some("rv32imac"), Some(FloatAbi::Soft), false), None),
                (
                    (Some("rv32ic"), None, false),
                    Some("instruction set is rv32imac, and here it is rv32ic, without the M and A extensions"),
                ),
            ],
        ),
        (
            40,
            common::compile_for("thumbv7em-none-eabihf", SOURCE, &["-mcpu=cortex-m4"]),
            (Some("armv7e-m+fp"), Some(FloatAbi::Vfp), true),
            vec![
                ((Some("armv7e-m+fpv5"), Some(FloatAbi::Vfp), true), None),
                (
                    (Some("armv7-m"), Some(FloatAbi::Vfp), true),
                    Some("instruction set is armv7e-m+fp, and here it is armv7-m, without"),
                ),
            ],
        ),
    ];
    let setup = |r: &Registry<ArenaMemory<'_>>, (isa, abi, thumb): Setup| {
        r.set_isa(isa.map(|k| Isa::from_key(k).unwrap()));
        r.set_float_abi(abi);
        r.set_thumb_only(thumb);
    };
    for (machine, elf, saving, restoring) in cases {
        let r = Registry::for_machine(
            ArenaMemory::new(arena.bytes()),
            ExportTable::default(),
            machine,
        );
        setup(&r, saving);
        r.load("ext", &elf).unwrap();
        let ctx = r.save(&portable).unwrap();
        // An Arm ISA is an M-profile one: Thumb code only.
        let thumb_only = saving.2 || (machine == 40 && saving.0.is_some());
        assert_eq!(
            Context::from_bytes(&ctx).unwrap().saved_core(),
            llext::SavedCore {
                isa: saving.0.map(|k| Isa::from_key(k).unwrap()),
                float_abi: saving.1,
                thumb_only,
            }
        );
        for (core, refused) in restoring {
            let r2 = Registry::for_machine(
                ArenaMemory::new(arena2.bytes()),
                ExportTable::default(),
                machine,
            );
            setup(&r2, core);
            let result = r2.restore(
                &Context::from_bytes(&ctx).unwrap(),
                &RestoreOptions::default(),
            );
            match refused {
                None => assert_eq!(result.unwrap_or_else(|e| panic!("{core:?}: {e}")).len(), 1),
                Some(text) => {
                    let e = result.unwrap_err();
                    assert!(matches!(e, Error::SnapshotCore { .. }), "{core:?}: {e:?}");
                    assert!(e.to_string().contains(text), "{core:?}: {e}");
                    assert!(r2.is_empty());
                }
            }
        }
    }

    // A32 code saved where it ran is refused on a Cortex-M, whose registry knows no ISA but Thumb only, and
    // so is Thumb code built for the A-profile (a load there refuses both); M-profile Thumb code saved by the
    // same registry (not told it holds Thumb code only) restores there.
    let a32 = common::compile_for("armv7a-none-eabi", SOURCE, &["-marm"]);
    let a_thumb = common::compile_for("armv7a-none-eabi", SOURCE, &["-mthumb"]);
    let thumb = common::compile_for("thumbv7m-none-eabi", SOURCE, &[]);
    let a32_refused =
        "extension `arm` was built for a core whose Arm code is A32 (Arm state), and here \
                       it is Thumb only";
    let a_refused =
        "extension `arm` was built for a core whose Arm profile is A-profile, and here it \
                     is Thumb only";
    for (elf, refused, built_for) in [
        (a32, Some(a32_refused), (true, Some('A'))),
        (a_thumb, Some(a_refused), (false, Some('A'))),
        (thumb, None, (false, None)),
    ] {
        let r = Registry::for_machine(ArenaMemory::new(arena.bytes()), ExportTable::default(), 40);
        r.load("arm", &elf).unwrap();
        let ctx = r.save(&portable).unwrap();
        let context = Context::from_bytes(&ctx).unwrap();
        assert!(!context.saved_core().thumb_only);
        let saved = context.extensions().next().unwrap();
        assert_eq!((saved.holds_a32(), saved.arm_profile()), built_for);
        let r2 =
            Registry::for_machine(ArenaMemory::new(arena2.bytes()), ExportTable::default(), 40);
        r2.set_thumb_only(true);
        let result = r2.restore(
            &Context::from_bytes(&ctx).unwrap(),
            &RestoreOptions::default(),
        );
        if let Some(text) = refused {
            let e = result.unwrap_err();
            assert!(e.to_string().contains(text), "{e}");
            assert!(r2.is_empty());
        } else {
            assert_eq!(result.unwrap().len(), 1);
        }
    }
}

/// A RISC-V core's ISA has a width (`rv32imac`): a load refuses RV64 code on an RV32 core
/// (`Error::WrongClass`) even in a registry for another machine, which knows no width until something is
/// loaded. A restore into such a registry made no such check (`Isa::missing` compares ISAs of one width
/// only), and took an RV64 context on an `rv32imac` registry — then refused the RV32 objects it was told
/// its core runs.
#[test]
#[cfg(feature = "portable")]
fn a_restore_refuses_code_of_the_other_width_than_its_core() {
    use llext::arch::Isa;
    use llext::{Context, RestoreOptions};
    const SOURCE: &str = "long triple(long x) { return 3 * x; }\n";
    let portable = common::portable();
    let mut arena = common::ExecArena::new(1 << 20);
    let mut arena2 = common::ExecArena::new(1 << 20);
    let rv64 = common::compile_riscv_gcc(SOURCE, &["-march=rv64imac", "-mabi=lp64"]);
    let rv32 = common::compile_riscv_gcc(SOURCE, &["-march=rv32imac", "-mabi=ilp32"]);
    for (elf, other_core, (here, there)) in
        [(&rv64, "rv32imac", (4, 8)), (&rv32, "rv64imac", (8, 4))]
    {
        let r = Registry::for_machine(ArenaMemory::new(arena.bytes()), ExportTable::default(), 243);
        r.load("ext", elf).unwrap();
        let ctx = r.save(&portable).unwrap();
        let r2 = Registry::for_machine(
            ArenaMemory::new(arena2.bytes()),
            ExportTable::default(),
            243,
        );
        r2.set_isa(Isa::from_key(other_core));
        // What a load of the object refuses...
        assert!(
            matches!(r2.load("ext", elf), Err(Error::WrongClass { .. })),
            "{other_core}"
        );
        // ...a restore of the context refuses too, changing nothing.
        match r2.restore(
            &Context::from_bytes(&ctx).unwrap(),
            &RestoreOptions::default(),
        ) {
            Err(Error::SnapshotMismatch {
                what: "pointer width",
                expected,
                found,
            }) => assert_eq!((expected, found), (here, there), "{other_core}"),
            other => panic!("{other_core}: {other:?}"),
        }
        assert!(r2.is_empty());
        // An empty context holds no code of either width.
        let mut none = [0u8; 64];
        let empty = Registry::for_machine(ArenaMemory::new(&mut none), ExportTable::default(), 243);
        let ctx = empty.save(&portable).unwrap();
        assert!(r2
            .restore(
                &Context::from_bytes(&ctx).unwrap(),
                &RestoreOptions::default()
            )
            .unwrap()
            .is_empty());
    }
}

/// What a record says its object needs of the core (a needs byte, an ISA's width and feature bits) is what
/// a restore checks: a context whose record says what no load records — a width no ISA of its machine
/// has, or not its context's, feature bits no feature stands for — is refused as inconsistent, as every
/// other malformed record field is, instead of being read as needing less (a width this build reads as no
/// ISA, features dropped) and restored where a load of the object would be refused.
#[test]
#[cfg(feature = "portable")]
fn a_record_saying_needs_no_load_records_is_refused() {
    use llext::Context;
    use llext_fixtures::context::HEADER;
    const SOURCE: &str = "long triple(long x) { return 3 * x; }\n";
    // The record's needs byte, then its ISA's width (u8) and feature bits (u128) after the eleven counts.
    const NEEDS: usize = HEADER + 7;
    const WIDTH: usize = HEADER + 8 + 4 * 11;
    let portable = common::portable();
    let mut arena = common::ExecArena::new(1 << 20);
    let reseal = |mut ctx: Vec<u8>| {
        let n = ctx.len() - 8;
        let sum = Context::checksum(&ctx[..n]);
        ctx[n..].copy_from_slice(&sum.to_le_bytes());
        ctx
    };
    let rv32 = common::compile_riscv_gcc(SOURCE, &["-march=rv32imafc", "-mabi=ilp32f"]);
    let thumb = common::compile_for("thumbv7em-none-eabihf", SOURCE, &["-mcpu=cortex-m4"]);
    for (machine, elf) in [(243, rv32), (40, thumb)] {
        let r = Registry::for_machine(
            ArenaMemory::new(arena.bytes()),
            ExportTable::default(),
            machine,
        );
        r.load("ext", &elf).unwrap();
        let good = r.save(&portable).unwrap();
        drop(r);
        let saved = Context::from_bytes(&good).unwrap();
        let isa = saved.extensions().next().unwrap().isa().unwrap();
        assert_eq!(good[WIDTH], 32, "{isa}");
        type Edit = fn(&mut [u8]);
        let edits: [(&str, Edit); 6] = [
            ("an Arm profile no code stands for", |c| c[NEEDS] |= 4),
            ("a float ABI no code stands for", |c| c[NEEDS] |= 6 << 4),
            ("features without a width", |c| c[WIDTH] = 0),
            ("a width no ISA has", |c| c[WIDTH] = 16),
            ("the other width", |c| c[WIDTH] = 64),
            ("a feature bit no feature stands for", |c| {
                c[WIDTH + 16] |= 0x80
            }),
        ];
        for (what, edit) in edits {
            let mut bad = good.clone();
            edit(&mut bad);
            let bad = reseal(bad);
            match Context::from_bytes(&bad) {
                Err(Error::Snapshot { .. }) => {}
                other => panic!(
                    "{isa}: {what}: {:?}",
                    other.map(|c| c.extensions().next().unwrap().isa())
                ),
            }
        }
    }
}

/// `inspect` names what `.exported_sym` exports. Arm objects use REL relocations, whose addend — the
/// name's offset in a merged string section — is stored in the name field itself; it was ignored, so the
/// report named the section's first string (here "first string") instead of the export.
#[test]
fn inspect_names_exports_of_rel_objects() {
    const SOURCE: &str = r#"
struct llext_symbol { const char *name; const void *addr; };
extern void log_it(const char *);
int first(void) { log_it("first string"); return 1; }
int second(int x) { return x + 2; }
static const struct llext_symbol __llext_sym_second
    __attribute__((section(".exported_sym"), used)) = { "second", (const void *)&second };
"#;
    let arm = common::compile_arm_gcc(
        SOURCE,
        &["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-O2"],
    );
    let host = common::compile_c(SOURCE, &["-O2"]);
    for elf in [arm, host] {
        let report = llext::inspect::inspect(&elf).unwrap();
        assert_eq!(report.exported, ["second"]);
    }
}

/// A user trial: C built with `-ffreestanding` (as the fixtures are) calls `abs` and `labs` out of line,
/// and aligned allocation goes through `aligned_alloc` or `posix_memalign`; none of them was in
/// `LIBC_EXPORTS`, so such objects did not load.
#[test]
fn freestanding_c_finds_abs_and_aligned_allocation() {
    let object = common::compile_c(
        "#include <stddef.h>\n\
         int abs(int); long labs(long); long long llabs(long long);\n\
         void *aligned_alloc(size_t, size_t); int posix_memalign(void **, size_t, size_t);\n\
         void free(void *);\n\
         long sum(long a) {\n\
           void *p = aligned_alloc(64, 64), *q = 0;\n\
           int bad = posix_memalign(&q, 128, 32);\n\
           long aligned = ((unsigned long)p % 64 == 0) + (!bad && (unsigned long)q % 128 == 0);\n\
           free(p); free(q);\n\
           return abs((int)a) + labs(a) + llabs(a) + aligned;\n\
         }\n",
        &["-O2", "-fPIC", "-ffreestanding"],
    );
    let r = common::registry();
    r.load("freestanding", &object).unwrap();
    // SAFETY: `long sum(long)`.
    assert_eq!(unsafe { r.call("sum", &[-5]) }, Ok(17));
}
