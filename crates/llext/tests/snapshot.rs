//! Context save/restore: in place and portable, every refusal, dependency shapes, corruption, allocation
//! failure, and a randomised round-trip property.
// Saves or restores portable contexts throughout: llext's `portable` feature (on by default).
#![cfg(feature = "portable")]

mod common;

use common::portable;

use common::{
    call, compile_c, counting_registry, registry, restore_all, Counting, CountingArena, Rng,
};
use llext::{
    Context, Error, ExportTable, HostMemory, LoadOptions, Registry, RestoreOptions, SaveOptions,
};
use llext_fixtures::bytes;
use llext_fixtures::graph_node_source as graph_node;

const LIB: &str = "libmath-gcc-O2-pic.o";
const USER: &str = "usemath-gcc-O2-nopic.o";

fn in_place() -> SaveOptions<'static> {
    SaveOptions::default()
}

fn load_pair<M: llext::Memory>(r: &Registry<M>) {
    r.load("libmath", &bytes(LIB)).unwrap();
    r.load("usemath", &bytes(USER)).unwrap();
}

/// Re-encodes the checksum after a deliberate edit, so a test reaches the check behind it.
fn reseal(ctx: &mut [u8]) {
    let n = ctx.len() - 8;
    let sum = Context::checksum(&ctx[..n]);
    ctx[n..].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn in_place_round_trip_keeps_state_use_counts_and_links() {
    let (r, memory) = counting_registry();
    load_pair(&r);
    r.load("libmath", &[]).unwrap(); // use count 2
    assert_eq!(call(&r, "use_math", &[5]), 15);
    let before = r.extensions();
    let ctx = r.save(&in_place()).unwrap();
    let live = memory.live();
    assert_eq!(r.forget_all(), Ok(2));
    assert!(r.is_empty());
    assert_eq!(
        memory.live(),
        0,
        "forgetting hands every block back to its owner"
    );
    let ids = restore_all(&r, &ctx);
    assert_eq!(ids.len(), 2);
    assert_eq!(
        memory.live(),
        live,
        "restore adopts exactly the saved blocks"
    );
    let after = r.extensions();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (b.name.as_str(), b.use_count, &b.dependencies, &b.regions),
            (a.name.as_str(), a.use_count, &a.dependencies, &a.regions)
        );
    }
    // Not re-initialised: the data is as it was, and the links still work.
    assert_eq!(call(&r, "use_math", &[5]), 20);
    assert_eq!(call(&r, "lm_scaled", &[1]), 5);
    assert!(r.unload_name("libmath").is_ok()); // use count 2 -> 1
    assert!(matches!(r.unload_name("libmath"), Err(Error::InUse { .. })));
    r.unload_name("usemath").unwrap();
    r.unload_name("libmath").unwrap();
    assert_eq!(memory.live(), 0, "unload after restore frees every block");
}

#[test]
fn save_into_a_fixed_buffer_matches_save() {
    let r = registry();
    load_pair(&r);
    let size = r.context_size(&in_place()).unwrap();
    let mut retained = vec![0u8; size + 16];
    let n = r.save_into(&in_place(), &mut retained).unwrap();
    assert_eq!(n, size);
    assert_eq!(&retained[..n], &r.save(&in_place()).unwrap()[..]);
    // Too small: the refusal says how much is needed, and what was written does not read back as a
    // context, nor does the one kept there before.
    let names = ["libmath"];
    let older = r
        .save(&SaveOptions {
            names: Some(&names),
            ..in_place()
        })
        .unwrap();
    assert!(older.len() < size - 1);
    for short in [size - 1, older.len(), 10, 0] {
        let mut small = vec![0u8; short];
        let kept = short.min(older.len());
        small[..kept].copy_from_slice(&older[..kept]);
        assert_eq!(
            r.save_into(&in_place(), &mut small),
            Err(Error::BufferTooSmall {
                needed: size,
                size: short
            })
        );
        assert!(Context::from_prefix(&small).is_err());
    }
    let err = r.save_into(&in_place(), &mut [0u8; 10]).unwrap_err();
    assert!(
        err.to_string().contains(&format!("it needs {size}")),
        "{err}"
    );
}

/// Cortex-M user trial: the length `save_into` returns did not survive a warm reboot, and `from_bytes` of
/// the whole retained region was refused as padded. `from_prefix` takes the length from the header.
#[test]
fn a_context_at_the_start_of_a_larger_region_reads_back_from_its_prefix() {
    let r = registry();
    load_pair(&r);
    let mut region = vec![0xa5u8; 1 << 16];
    let n = r.save_into(&in_place(), &mut region).unwrap();
    assert!(matches!(
        Context::from_bytes(&region),
        Err(Error::Snapshot { .. })
    ));
    let context = Context::from_prefix(&region).unwrap();
    assert_eq!(context.len(), 2);
    assert_eq!(
        context.names().collect::<Vec<_>>(),
        Context::from_bytes(&region[..n])
            .unwrap()
            .names()
            .collect::<Vec<_>>()
    );
    // A region cut inside the context, or one that holds none, is refused.
    for cut in [n - 1, 40, 0] {
        assert!(matches!(
            Context::from_prefix(&region[..cut]),
            Err(Error::Snapshot { .. })
        ));
    }
    assert!(Context::from_prefix(&[0u8; 4096]).is_err());
    r.forget_all().unwrap();
    r.restore(&context, &RestoreOptions::default()).unwrap();
    assert_eq!(call(&r, "use_math", &[5]), 15);
}

#[test]
fn portable_restore_moves_the_extensions_and_keeps_them_working() {
    let r = registry();
    load_pair(&r);
    r.load("basic", &bytes("basic-gcc-O0-nopic.o")).unwrap();
    assert_eq!(call(&r, "use_math", &[5]), 15);
    assert_eq!(call(&r, "basic_counter", &[]), 1);
    let ctx = r.save(&portable()).unwrap();
    // A second registry restores the same context while the first still holds its memory, so every block
    // must move.
    let r2 = registry();
    let ids = restore_all(&r2, &ctx);
    assert_eq!(ids.len(), 3);
    let old = r.info(r.get("libmath").unwrap()).unwrap();
    let new = r2.info(r2.get("libmath").unwrap()).unwrap();
    assert_ne!(old.regions[0].addr, new.regions[0].addr);
    assert_eq!(
        call(&r2, "use_math", &[5]),
        20,
        "state as saved, links rebased"
    );
    assert_eq!(call(&r2, "basic_counter", &[]), 2);
    assert_eq!(call(&r2, "basic_switch", &[8, 10]), 266);
    assert_eq!(call(&r2, "basic_strings", &[]), 8);
    assert_eq!(call(&r2, "basic_align", &[]), 0);
    assert_eq!(call(&r, "use_math", &[5]), 20, "the original is untouched");
    // W^X holds after restore.
    for region in &new.regions {
        let want = match region.kind.permission() {
            llext::Permission::ReadExecute => "r-x",
            llext::Permission::ReadOnly => "r--",
            llext::Permission::ReadWrite => "rw-",
        };
        assert_eq!(&common::protection_of(region.addr)[..3], want, "{region:?}");
    }
    // A portable context of the restored set restores again (fixups were carried over).
    let ctx2 = r2.save(&portable()).unwrap();
    let r3 = registry();
    r3.restore(
        &Context::from_bytes(&ctx2).unwrap(),
        &RestoreOptions::default(),
    )
    .unwrap();
    assert_eq!(call(&r3, "use_math", &[5]), 25);
}

#[test]
fn every_variant_survives_a_portable_round_trip() {
    for v in llext_fixtures::variants() {
        let r = registry();
        for stem in ["basic", "farcall", "libmath", "usemath", "ctors"] {
            r.load(stem, &v.bytes(stem))
                .unwrap_or_else(|e| panic!("{v} {stem}: {e}"));
        }
        let ctx = r.save(&portable()).unwrap();
        let r2 = registry();
        r2.restore(
            &Context::from_bytes(&ctx).unwrap(),
            &RestoreOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(call(&r2, "basic_switch", &[4, 10]), 95, "{v}");
        assert_eq!(call(&r2, "basic_table", &[2, 10]), 70, "{v}");
        assert_eq!(call(&r2, "far_format", &[1, 2, 3, 4, 5, 6]), 11, "{v}");
        assert_eq!(call(&r2, "use_math", &[5]), 15, "{v}");
        assert_eq!(call(&r2, "ctors_state", &[]), 12, "{v}");
        drop(r2);
    }
}

#[test]
fn subset_saves_bring_their_dependencies() {
    let r = registry();
    for stem in ["dbase", "dleft", "dright", "dtop"] {
        r.load(stem, &bytes(&format!("{stem}-gcc-O2-pic.o")))
            .unwrap();
    }
    r.load("basic", &bytes("basic-gcc-O2-pic.o")).unwrap();
    let names = ["dtop"];
    let ctx = r
        .save(&SaveOptions {
            names: Some(&names),
            portable: true,
            ..Default::default()
        })
        .unwrap();
    let c = Context::from_bytes(&ctx).unwrap();
    assert_eq!(
        c.names().collect::<Vec<_>>(),
        ["dbase", "dleft", "dright", "dtop"]
    );
    // Restore beside unrelated extensions already loaded.
    let r2 = registry();
    r2.load("basic", &bytes("basic-gcc-O2-pic.o")).unwrap();
    r2.restore(&c, &RestoreOptions::default()).unwrap();
    assert_eq!(call(&r2, "dtop_total", &[]), 301);
    let top = r2.info(r2.get("dtop").unwrap()).unwrap();
    let mut deps = top.dependencies.clone();
    deps.sort();
    assert_eq!(deps, ["dleft", "dright"]);
    assert!(matches!(
        r.save(&SaveOptions {
            names: Some(&["nope"]),
            ..Default::default()
        }),
        Err(Error::NotLoaded { .. })
    ));
}

#[test]
fn refusals_are_typed_and_leave_everything_as_before() {
    let r = registry();
    load_pair(&r);
    let good = r.save(&portable()).unwrap();

    // Name already loaded.
    let c = Context::from_bytes(&good).unwrap();
    assert!(matches!(
        r.restore(&c, &RestoreOptions::default()),
        Err(Error::AlreadyLoaded { .. })
    ));
    assert_eq!(r.len(), 2);

    // Version, machine, pointer width: header fields, resealed so the check behind the checksum is reached.
    let mut b = good.clone();
    b[8] = 9;
    reseal(&mut b);
    assert!(matches!(
        Context::from_bytes(&b),
        Err(Error::SnapshotVersion {
            found: 9,
            supported: llext::CONTEXT_VERSION
        })
    ));
    let mut b = good.clone();
    b[12] = 40;
    reseal(&mut b);
    let r2 = registry();
    let e = r2
        .restore(
            &Context::from_bytes(&b).unwrap(),
            &RestoreOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(
        e,
        Error::SnapshotMismatch {
            what: "machine",
            ..
        }
    ));
    // Named, not as `e_machine` numbers in hexadecimal (`context 0x28, here 0x3e`).
    assert_eq!(
        e.to_string(),
        "saved context is for another machine: ARM (40), and this registry holds x86_64 (62) extensions"
    );
    let mut b = good.clone();
    b[14] = 4;
    reseal(&mut b);
    let e = r2
        .restore(
            &Context::from_bytes(&b).unwrap(),
            &RestoreOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(
        e,
        Error::SnapshotMismatch {
            what: "pointer width",
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "saved context is for another pointer width: 32-bit extensions, and this registry holds 64-bit ones"
    );

    // Checksum, truncation, magic.
    let mut b = good.clone();
    b[100] ^= 1;
    assert!(matches!(
        Context::from_bytes(&b),
        Err(Error::Snapshot { .. })
    ));
    assert!(matches!(
        Context::from_bytes(&good[..good.len() - 1]),
        Err(Error::Snapshot { .. })
    ));
    assert!(matches!(
        Context::from_bytes(&good[..20]),
        Err(Error::Snapshot { .. })
    ));

    // A needed built-in is gone (portable) / the built-in table changed (in place).
    static FEW: &[llext::Export] = llext::exports!["puts" => libc::puts];
    let bare = Registry::new(HostMemory::new(), ExportTable::new(FEW));
    let rf = registry();
    rf.load("farcall", &bytes("farcall-gcc-O2-nopic.o"))
        .unwrap();
    let far = rf.save(&portable()).unwrap();
    match bare.restore(
        &Context::from_bytes(&far).unwrap(),
        &RestoreOptions::default(),
    ) {
        Err(Error::MissingBuiltin { symbol, .. }) => assert!(!symbol.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(bare.is_empty());
    let inplace = r.save(&in_place()).unwrap();
    assert!(matches!(
        bare.restore(
            &Context::from_bytes(&inplace).unwrap(),
            &RestoreOptions::default()
        ),
        Err(Error::SnapshotMismatch { .. })
    ));

    // A dependency that is not in the context: point usemath's dependency at itself.
    let mut b = good.clone();
    let c = Context::from_bytes(&b).unwrap();
    assert_eq!(c.len(), 2);
    let (pos, _) = llext_fixtures::context::entry(&b, 1, llext_fixtures::context::Table::Deps, 0);
    b[pos] = 1; // usemath is entry 1; a dependency on itself (or later) is not in what came before it
    reseal(&mut b);
    assert!(matches!(
        Context::from_bytes(&b),
        Err(Error::SnapshotDependency { index: 1, .. })
    ));
    assert_eq!(r2.len(), 0);
}

/// The host pool lets an in-place restore take over only pages a registry gave up with `forget_all`
/// (`Memory::disown`), and each only once: a context naming pages that another extension still owns, or
/// restored a second time, is refused before anything is registered.
#[test]
fn in_place_restore_takes_only_memory_given_up_and_only_once() {
    let r = registry();
    load_pair(&r);
    let ctx = r.save(&in_place()).unwrap();
    let c = Context::from_bytes(&ctx).unwrap();
    let r2 = registry();
    match r2.restore(&c, &RestoreOptions::default()) {
        // No OS call failed: the message names no OS error (there is none, code 0).
        Err(e @ Error::Memory { code: 0, .. }) => {
            assert!(!e.to_string().contains("os error"), "{e}")
        }
        other => panic!("pages still owned by `r` were taken over: {other:?}"),
    }
    assert!(r2.is_empty());
    assert_eq!(call(&r, "use_math", &[5]), 15);

    r.forget_all().unwrap();
    r2.restore(&c, &RestoreOptions::default()).unwrap();
    let r3 = registry();
    match r3.restore(&c, &RestoreOptions::default()) {
        Err(Error::Memory { .. }) => {}
        other => panic!("the same pages were taken over twice: {other:?}"),
    }
    assert!(r3.is_empty());
    assert_eq!(call(&r2, "use_math", &[5]), 20);
}

/// An in-place context restored into the registry that still holds its extensions (restored twice, or
/// saved without `forget_all`) is refused as `AlreadyLoaded`, as a portable one is, before its retained
/// pages — still the registry's own — are asked for.
#[test]
fn in_place_restore_of_loaded_extensions_is_already_loaded() {
    let (r, memory) = counting_registry();
    load_pair(&r);
    let ctx = r.save(&in_place()).unwrap();
    let (before, live) = (r.extensions(), memory.live());
    match r.restore(
        &Context::from_bytes(&ctx).unwrap(),
        &RestoreOptions::default(),
    ) {
        Err(Error::AlreadyLoaded { name }) => assert_eq!(name, "libmath"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.extensions(), before);
    assert_eq!(memory.live(), live);

    r.forget_all().unwrap();
    restore_all(&r, &ctx);
    match r.restore(
        &Context::from_bytes(&ctx).unwrap(),
        &RestoreOptions::default(),
    ) {
        Err(Error::AlreadyLoaded { name }) => assert_eq!(name, "libmath"),
        other => panic!("restored twice: {other:?}"),
    }
    assert_eq!(call(&r, "use_math", &[5]), 15);
}

/// Restore registers extensions one by one: a refusal at the second one must take the first one out of
/// the registry again and give its blocks back, in place and portably.
#[test]
fn a_refusal_after_some_extensions_were_registered_unwinds_them() {
    let (r, memory) = counting_registry();
    load_pair(&r);
    let portable_ctx = r.save(&portable()).unwrap();
    let in_place_ctx = r.save(&in_place()).unwrap();

    // Portable: another extension is already loaded under the second record's name.
    let (r2, memory2) = counting_registry();
    r2.load("usemath", &bytes("basic-gcc-O2-pic.o")).unwrap();
    let (before, live) = (r2.extensions(), memory2.live());
    match r2.restore(
        &Context::from_bytes(&portable_ctx).unwrap(),
        &RestoreOptions::default(),
    ) {
        Err(Error::AlreadyLoaded { name }) => assert_eq!(name, "usemath"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r2.extensions(), before);
    assert_eq!(memory2.live(), live);
    assert!(r2.get("libmath").is_none());

    // In place (both extensions' memory retained): the first record is taken over, the second refused;
    // the first goes back untouched.
    r.forget_all().unwrap();
    r.load("usemath", &bytes("basic-gcc-O2-pic.o")).unwrap();
    let (before, live) = (r.extensions(), memory.live());
    match r.restore(
        &Context::from_bytes(&in_place_ctx).unwrap(),
        &RestoreOptions::default(),
    ) {
        Err(Error::AlreadyLoaded { name }) => assert_eq!(name, "usemath"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.extensions(), before);
    assert_eq!(memory.live(), live);
    assert!(r.get("libmath").is_none());
}

#[test]
fn changed_retained_memory_is_refused() {
    let (r, memory) = counting_registry();
    load_pair(&r);
    let ctx = r
        .save(&SaveOptions {
            content_hashes: true,
            ..Default::default()
        })
        .unwrap();
    // The data changes after saving (as if memory were lost or overwritten during the suspend).
    call(&r, "use_math", &[1]);
    r.forget_all().unwrap();
    let live = memory.live();
    assert_eq!(live, 0);
    match r.restore(
        &Context::from_bytes(&ctx).unwrap(),
        &RestoreOptions::default(),
    ) {
        Err(Error::ContentChanged { extension, .. }) => assert_eq!(extension, "libmath"),
        other => panic!("{other:?}"),
    }
    assert!(r.is_empty());
    assert_eq!(memory.live(), live);
    // Opting out of the check restores it as it now is.
    r.restore(
        &Context::from_bytes(&ctx).unwrap(),
        &RestoreOptions {
            verify_content: false,
            ..RestoreOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.len(), 2);
}

/// A portable context's carried bytes are checked against the hash each block had when saved: a byte
/// changed behind a recomputed checksum is refused, before anything is allocated.
#[test]
fn changed_carried_bytes_are_refused() {
    let (r, memory) = counting_registry();
    load_pair(&r);
    let mut ctx = r.save(&portable()).unwrap();
    r.unload_name("usemath").unwrap();
    r.unload_name("libmath").unwrap();
    // libmath's first block follows its record (and its built-ins' addresses).
    let at = llext_fixtures::context::blocks_at(&ctx, 0);
    ctx[at] ^= 0x40;
    reseal(&mut ctx);
    let context = Context::from_bytes(&ctx).unwrap();
    let (addr, _, permission) = context
        .extensions()
        .next()
        .and_then(|e| e.blocks().next())
        .unwrap();
    let err = r.restore(&context, &RestoreOptions::default()).unwrap_err();
    assert_eq!(
        err,
        Error::ContentChanged {
            extension: "libmath".into(),
            block: 0,
            permission,
            addr
        }
    );
    let says = format!("block 0: {}, saved at {addr:#x}", permission.as_str());
    assert!(err.to_string().contains(&says), "{err}");
    assert!(r.is_empty());
    assert_eq!(memory.live(), 0);
}

/// Review of the load path: an extension that re-exports a built-in under a name of its own (`say` for
/// `puts`) exports an address outside its memory, and a user of it links to that address. A portable
/// context kept the saving process's address for both, and the restored user crashed calling the old
/// `puts` in a process where it lay elsewhere; such saves were refused then. Now the user's fixup names the
/// re-export and both take what the re-exporter's export table holds after the restore: `puts` where the
/// restoring program has it.
#[test]
fn reexported_built_ins_follow_the_built_in() {
    extern "C" fn other_puts(_: *const std::ffi::c_char) -> std::ffi::c_int {
        70
    }
    let reexp = compile_c(
        "#include \"llext.h\"\n\
         extern int puts(const char *);\n\
         static const struct llext_symbol say_export __attribute__((section(\".exported_sym\"), used)) =\n\
             { \"say\", (const void *)&puts };\n",
        &["-fPIC"],
    );
    let user = compile_c(
        "extern int say(const char *);\n\
         long greet(void) { return say(\"\") == 70 ? 7 : 1; }\n",
        &["-fPIC"],
    );
    let (r, _) = counting_registry();
    r.load("reexp", &reexp).unwrap();
    r.load("sayuser", &user).unwrap();
    assert_eq!(call(&r, "greet", &[]), 1, "the C library's puts");
    // The same names, `puts` elsewhere (as in a new process).
    let moved = common::libc_exports_moving("puts", other_puts as *const ());
    for names in [None, Some(&["sayuser"][..])] {
        let ctx = r
            .save(&SaveOptions {
                names,
                ..portable()
            })
            .unwrap();
        let elsewhere = Registry::new(HostMemory::new(), ExportTable::new(&moved));
        restore_all(&elsewhere, &ctx);
        assert_eq!(
            elsewhere.find_symbol("say"),
            Some(other_puts as *const () as usize),
            "{names:?}"
        );
        assert_eq!(call(&elsewhere, "greet", &[]), 7, "{names:?}");
    }
    // In place nothing moves, so the address stays right.
    let ctx = r.save(&in_place()).unwrap();
    r.forget_all().unwrap();
    restore_all(&r, &ctx);
    assert_eq!(call(&r, "greet", &[]), 1);
}

/// A user trial: an extension re-exporting a dependency's function under another name (an alias) was
/// refused by a portable save. Both the alias and what links to it now follow the dependency's block.
#[test]
fn an_alias_of_a_dependencys_function_moves_with_it() {
    let base = compile_c(
        "#include \"llext.h\"\nlong afn(long x) { return x + 40; }\nLLEXT_EXPORT(afn);\n",
        &["-O2", "-fPIC"],
    );
    let alias = compile_c(
        "#include \"llext.h\"\n\
         extern long afn(long);\n\
         static const struct llext_symbol alias_export __attribute__((section(\".exported_sym\"), used)) =\n\
             { \"afn_alias\", (const void *)&afn };\n",
        &["-O2", "-fPIC"],
    );
    let user = compile_c(
        "extern long afn_alias(long);\nlong use_alias(long x) { return afn_alias(x) * 2; }\n",
        &["-O2", "-fno-pic"],
    );
    let r = registry();
    r.load("base", &base).unwrap();
    r.load("alias", &alias).unwrap();
    r.load("user", &user).unwrap();
    assert_eq!(call(&r, "use_alias", &[2]), 84);
    let ctx = r.save(&portable()).unwrap();
    let elsewhere = registry();
    restore_all(&elsewhere, &ctx);
    assert_eq!(
        elsewhere.find_symbol("afn_alias"),
        elsewhere.find_symbol("afn")
    );
    assert_ne!(elsewhere.find_symbol("afn"), r.find_symbol("afn"));
    drop(r);
    assert_eq!(call(&elsewhere, "use_alias", &[2]), 84);
}

/// Review of the refusal that was: an export of the extension's own memory plus a far addend also lies
/// outside its blocks, but moves with them. Its export table entry moves with them (the extension's fixup
/// rewrites it), and the restored export takes what the entry holds.
#[test]
fn exports_of_own_memory_with_a_far_addend_move_with_it() {
    let source = "#include \"llext.h\"\n\
                  char buf[16];\n\
                  long buf_address(void) { return (long)buf; }\n\
                  static const struct llext_symbol far_export\n\
                      __attribute__((section(\".exported_sym\"), used)) = { \"far\", buf + 0x10000000 };\n";
    let (r, _) = counting_registry();
    r.load("far", &compile_c(source, &["-fPIC"])).unwrap();
    let far = |r: &Registry<Counting>| r.find_symbol("far").unwrap() as i64;
    assert_eq!(far(&r), call(&r, "buf_address", &[]) + 0x10000000);
    let ctx = r.save(&portable()).unwrap();
    let (elsewhere, _) = counting_registry();
    restore_all(&elsewhere, &ctx);
    assert_ne!(far(&elsewhere), far(&r));
    assert_eq!(
        far(&elsewhere),
        call(&elsewhere, "buf_address", &[]) + 0x10000000
    );
}

/// An export of an absolute symbol also lies outside the extension's memory, but it is a constant, right
/// in any process: it saves and restores portably.
#[test]
fn absolute_exports_are_saved_portably() {
    let source = "#include \"llext.h\"\n\
                  extern const char abs_sym[];\n\
                  __asm__(\".globl abs_sym\\n.set abs_sym, 0x1234\\n\");\n\
                  static const struct llext_symbol abs_export\n\
                      __attribute__((section(\".exported_sym\"), used)) = { \"abs_sym\", abs_sym };\n\
                  long one(void) { return 1; }\n";
    let (r, _) = counting_registry();
    r.load("absx", &compile_c(source, &["-fPIC"])).unwrap();
    let ctx = r.save(&portable()).unwrap();
    let (r2, _) = counting_registry();
    restore_all(&r2, &ctx);
    assert_eq!(r2.find_symbol("abs_sym"), Some(0x1234));
    assert_eq!(call(&r2, "one", &[]), 1);
}

#[test]
fn every_single_bit_flip_is_refused() {
    let r = registry();
    r.load("libmath", &bytes(LIB)).unwrap();
    for options in [in_place(), portable()] {
        let ctx = r.save(&options).unwrap();
        assert!(Context::from_bytes(&ctx).is_ok());
        let mut b = ctx.clone();
        for bit in 0..ctx.len() * 8 {
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Context::from_bytes(&b).is_err(),
                "flip of bit {bit} accepted"
            );
            b[bit / 8] ^= 1 << (bit % 8);
        }
    }
}

#[test]
fn allocation_failure_at_every_point_of_restore_changes_nothing() {
    let r = registry();
    load_pair(&r);
    let ctx = r.save(&portable()).unwrap();
    let c = Context::from_bytes(&ctx).unwrap();
    let mut failures = 0;
    for n in 0.. {
        let memory = Counting::default();
        let r2 = Registry::new(memory.clone(), ExportTable::new(llext::LIBC_EXPORTS));
        r2.load("basic", &bytes("basic-gcc-O2-pic.o")).unwrap();
        memory.fail_after(n);
        let before = (memory.live(), r2.len());
        match r2.restore(&c, &RestoreOptions::default()) {
            Err(Error::OutOfMemory { .. }) => {
                failures += 1;
                assert_eq!(
                    (memory.live(), r2.len()),
                    before,
                    "failure at allocation {n}"
                );
            }
            Ok(_) => break,
            Err(e) => panic!("allocation {n}: {e}"),
        }
    }
    assert!(failures >= 4, "{failures}");
}

#[test]
fn extensions_with_many_dependencies() {
    // One extension resolving symbols from 12 others.
    let r = registry();
    let n = 12;
    for i in 0..n {
        r.load(
            &format!("node{i}"),
            &compile_c(&graph_node(i, &[]), &["-fPIC"]),
        )
        .unwrap();
    }
    let deps: Vec<usize> = (0..n).collect();
    r.load("top", &compile_c(&graph_node(n, &deps), &["-fPIC"]))
        .unwrap();
    let want: i64 = (0..=n as i64).map(|i| 1000 * i).sum();
    assert_eq!(call(&r, &format!("node_{n}"), &[]), want);
    assert_eq!(r.info(r.get("top").unwrap()).unwrap().dependencies.len(), n);
    for options in [in_place(), portable()] {
        let ctx = r.save(&options).unwrap();
        let r2 = registry();
        if options.portable {
            restore_all(&r2, &ctx);
            assert_eq!(call(&r2, &format!("node_{n}"), &[]), want);
            assert_eq!(
                r2.info(r2.get("top").unwrap()).unwrap().dependencies.len(),
                n
            );
        }
    }
}

#[test]
fn random_dependency_graphs_round_trip() {
    for seed in 1..=24u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let n = 2 + rng.below(9) as usize;
        let graph: Vec<Vec<usize>> = (0..n)
            .map(|i| (0..i).filter(|_| rng.below(3) == 0).collect())
            .collect();
        let portable_ctx = rng.below(2) == 0;
        let flags: &[&str] = if rng.below(2) == 0 {
            &["-fPIC"]
        } else {
            &["-fno-pic"]
        };
        let r = registry();
        for (i, deps) in graph.iter().enumerate() {
            r.load(&format!("n{i}"), &compile_c(&graph_node(i, deps), flags))
                .unwrap();
            for _ in 0..rng.below(3) {
                r.load(&format!("n{i}"), &[]).unwrap(); // raise the use count
            }
        }
        for i in 0..n {
            for _ in 0..rng.below(3) {
                call(&r, &format!("node_{i}"), &[]);
            }
        }
        // A random subset (its closure is added) or everything.
        let pick: Vec<String> = (0..n)
            .filter(|_| rng.below(2) == 0)
            .map(|i| format!("n{i}"))
            .collect();
        let pick_refs: Vec<&str> = pick.iter().map(String::as_str).collect();
        let names = if pick.is_empty() {
            None
        } else {
            Some(&pick_refs[..])
        };
        let options = SaveOptions {
            names,
            portable: portable_ctx,
            content_hashes: true,
        };
        let ctx = r.save(&options).unwrap();
        let c = Context::from_bytes(&ctx).unwrap();
        let saved: Vec<String> = c.names().map(String::from).collect();
        let expected: Vec<(String, u32, Vec<String>, i64, i64)> = saved
            .iter()
            .map(|name| {
                let info = r.info(r.get(name).unwrap()).unwrap();
                let i: usize = name[1..].parse().unwrap();
                let calls = call(&r, &format!("node_{i}_calls"), &[]);
                (
                    name.clone(),
                    info.use_count,
                    info.dependencies.clone(),
                    calls,
                    i as i64,
                )
            })
            .collect();
        let target = if portable_ctx {
            let fresh = registry();
            fresh
                .restore(&c, &RestoreOptions::default())
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            fresh
        } else {
            // In place: tear the whole registry's bookkeeping down, then restore.
            r.forget_all().unwrap();
            r.restore(&c, &RestoreOptions::default())
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            r
        };
        for (name, use_count, deps, calls, i) in expected {
            let info = target.info(target.get(&name).unwrap()).unwrap();
            assert_eq!(info.use_count, use_count, "seed {seed} {name}");
            assert_eq!(info.dependencies, deps, "seed {seed} {name}");
            assert_eq!(
                call(&target, &format!("node_{i}_calls"), &[]),
                calls,
                "seed {seed} {name}: data as saved"
            );
            let want: i64 = value(&graph, i as usize);
            assert_eq!(
                call(&target, &format!("node_{i}"), &[]),
                want,
                "seed {seed} {name}"
            );
        }
    }
}

fn value(graph: &[Vec<usize>], i: usize) -> i64 {
    1000 * i as i64 + graph[i].iter().map(|&d| value(graph, d)).sum::<i64>()
}

/// A portable restore whose blocks come back at their saved addresses (a firmware restoring into a cleared
/// heap of the same layout) does not touch the places whose target did not move either. Shown with a
/// damaged addend on such a fixup: applying it would change the bytes, and they stay as saved.
#[test]
fn places_that_did_not_move_are_not_touched() {
    use llext_fixtures::context::{self, blocks, blocks_at};
    let mut arena = vec![0u8; 1 << 20];
    let base = arena.as_ptr() as u64;
    let no_run = llext::LoadOptions {
        bring_up: false,
        portable: true,
        ..llext::LoadOptions::default()
    };
    let mut ctx = {
        let r = Registry::new(
            llext::ArenaMemory::new(&mut arena),
            ExportTable::new(llext::LIBC_EXPORTS),
        );
        let id = r
            .load_with("basic", &bytes("basic-gcc-O2-pic.o"), &no_run)
            .unwrap();
        let ctx = r.save(&portable()).unwrap();
        r.unload(id).unwrap();
        ctx
    };
    // The saved blocks (address, size) and their bytes, which follow the record.
    let blocks = blocks(&ctx, 0);
    let saved: Vec<u8> = ctx[blocks_at(&ctx, 0)..ctx.len() - 8].to_vec();
    // Damage the addend of a relocation between the extension's own blocks (target tag 0).
    let mut fixups = context::fixups(&ctx, 0);
    let own = fixups
        .iter_mut()
        .find(|f| f.kind == 0 && matches!(f.target, context::Target::Own { .. }))
        .expect("basic has a relocation between its own blocks");
    own.addend += 0x10;
    context::set_fixups(&mut ctx, 0, &fixups);
    reseal(&mut ctx);

    let context = Context::from_bytes(&ctx).unwrap();
    let r = Registry::new(
        llext::ArenaMemory::new(&mut arena),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    r.restore(&context, &RestoreOptions::default()).unwrap();
    drop(r);
    let mut restored = Vec::new();
    for b in &blocks {
        let off = (b.addr - base) as usize;
        restored.extend_from_slice(&arena[off..off + b.size as usize]);
    }
    assert_eq!(
        restored, saved,
        "the blocks came back at their addresses, untouched"
    );
}

/// Code built without `-fPIC` reads `stderr` through a copy of its value (`Export::copyable`). A portable
/// restore takes the copy again from the restoring program, so it refuses a table that offers the name
/// but not as copyable (its address is all it says); with the copyable export the copy comes back.
#[test]
fn copies_of_built_ins_are_taken_again_only_from_copyable_exports() {
    let object = compile_c(
        "#include <stdio.h>\nlong err(void) { return (long)stderr; }\n",
        &["-fhosted", "-O2", "-fPIE"],
    );
    let (r, memory) = counting_registry();
    r.load("err", &object).unwrap();
    let value = call(&r, "err", &[]);
    let ctx = r.save(&portable()).unwrap();
    let context = Context::from_bytes(&ctx).unwrap();
    let plain: Vec<llext::Export> = llext::LIBC_EXPORTS
        .iter()
        .map(|e| llext::Export::new(e.name(), e.addr()))
        .collect();
    let other = Counting::default();
    let r2 = Registry::new(other.clone(), ExportTable::new(&plain));
    match r2.restore(&context, &RestoreOptions::default()) {
        Err(Error::Snapshot { reason }) if reason.contains("copyable") => {}
        other => panic!("{other:?}"),
    }
    assert!(r2.is_empty());
    assert_eq!(other.live(), 0, "nothing kept");
    let r3 = Registry::new(other.clone(), ExportTable::new(llext::LIBC_EXPORTS));
    r3.restore(&context, &RestoreOptions::default()).unwrap();
    assert_eq!(call(&r3, "err", &[]), value);
    drop(r3);
    drop(r);
    assert_eq!(other.live() + memory.live(), 0);
}

/// Pointers in an extension's data that the linker wrote and the extension changed since: a portable
/// restore keeps what the extension made of them — a pointer into its own memory (or a dependency's) moves
/// with the block it now points into, anything else (NULL, a pointer elsewhere) stays — instead of
/// writing the link-time target again. Unchanged ones are relocated as ever. Checked at new addresses and
/// at the saved ones (blocks back where they were, fixups skipped).
#[test]
fn pointers_the_extension_changed_keep_their_new_targets() {
    let source = "#include <stdio.h>\n#include <stdlib.h>\n\
                  static int a = 1, b = 2;\n\
                  static int *current = &a;\n\
                  static int *cleared = &a;\n\
                  static int (*out)(const char *) = puts;\n\
                  static void *(*alloc)(size_t) = malloc;\n\
                  static void *(*grow)(void *, size_t) = realloc;\n\
                  static int quiet(const char *s) { (void)s; return 7; }\n\
                  void change(void) { current = &b; cleared = 0; out = quiet; grow = 0;\n\
                                      alloc = (void *(*)(size_t))calloc; }\n\
                  long allocator(void) { return (long)alloc; }\n\
                  long grower(void) { return (long)grow; }\n\
                  long value(void) { return *current; }\n\
                  long is_null(void) { return cleared == 0; }\n\
                  long say(void) { return out(\"\"); }\n";
    let object = compile_c(source, &["-fhosted", "-O2", "-fPIC"]);
    let check = |call_it: &dyn Fn(&str) -> i64, when: &str| {
        assert_eq!(
            call_it("value"),
            2,
            "{when}: moved with the block it points into"
        );
        assert_eq!(call_it("is_null"), 1, "{when}: NULL stays NULL");
        assert_eq!(
            call_it("say"),
            7,
            "{when}: an own function instead of the built-in"
        );
        assert_eq!(
            call_it("grower"),
            0,
            "{when}: a built-in's word set to NULL"
        );
        // A word linked to a built-in and switched to another built-in (named by a fixup: the code takes
        // its address) is rebound to that one (here in the same process: the same address).
        assert_eq!(
            call_it("allocator"),
            libc::calloc as *const () as usize as i64,
            "{when}: switched to another built-in"
        );
    };
    // At new addresses: a second registry restores while the first still holds the extension.
    let r = registry();
    r.load("ptrs", &object).unwrap();
    call(&r, "change", &[]);
    check(&|f| call(&r, f, &[]), "saved");
    let ctx = r.save(&portable()).unwrap();
    let elsewhere = registry();
    restore_all(&elsewhere, &ctx);
    check(&|f| call(&elsewhere, f, &[]), "new addresses");
    // At the saved addresses: the same arena, emptied first.
    let mut arena = common::ExecArena::new(1 << 20);
    let ctx = {
        let r = Registry::new(
            llext::ArenaMemory::new(arena.bytes()),
            ExportTable::new(llext::LIBC_EXPORTS),
        );
        let id = r.load("ptrs", &object).unwrap();
        call(&r, "change", &[]);
        let ctx = r.save(&portable()).unwrap();
        r.unload(id).unwrap();
        ctx
    };
    let same = Registry::new(
        llext::ArenaMemory::new(arena.bytes()),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    restore_all(&same, &ctx);
    check(&|f| call(&same, f, &[]), "saved addresses");
}

/// A library keeps a callback that an extension depending on it registered, in a word the linker wrote
/// (`handler = dflt`). The changed pointer points into another extension of the context, not into the
/// library or its dependencies: it moves with that extension's block.
#[test]
fn a_callback_into_a_dependent_moves_with_it() {
    let lib = "#include \"llext.h\"\n\
               static long dflt(void) { return 1; }\n\
               static long (*handler)(void) = dflt;\n\
               void set_handler(long (*h)(void)) { handler = h; }\n\
               long run(void) { return handler(); }\n\
               LLEXT_EXPORT(set_handler);\n";
    let user = "extern void set_handler(long (*h)(void));\n\
                static long mine(void) { return 42; }\n\
                long install(void) { set_handler(mine); return 0; }\n";
    let r = registry();
    r.load("lib", &compile_c(lib, &["-O2", "-fPIC"])).unwrap();
    r.load("user", &compile_c(user, &["-O2", "-fPIC"])).unwrap();
    call(&r, "install", &[]);
    assert_eq!(call(&r, "run", &[]), 42);
    let ctx = r.save(&portable()).unwrap();
    let elsewhere = registry();
    restore_all(&elsewhere, &ctx);
    // Unloading the saved ones first: a stale pointer would now reach freed pages.
    drop(r);
    assert_eq!(call(&elsewhere, "run", &[]), 42);
}

/// A data word linked to one built-in and switched by the extension to another: a portable restore
/// rebinds it to that other built-in by name when the context holds its saved address (some fixup of the
/// context names it, as taking its address in C does), as in a new process where the built-ins moved.
#[test]
fn a_word_switched_to_another_built_in_is_rebound_by_name() {
    extern "C" fn other_calloc(n: usize, size: usize) -> *mut std::ffi::c_void {
        // SAFETY: forwards to the C library.
        unsafe { libc::calloc(n, size) }
    }
    let source = "#include <stdlib.h>\n\
                  static void *(*alloc)(size_t) = malloc;\n\
                  void change(void) { alloc = (void *(*)(size_t))calloc; }\n\
                  long allocator(void) { return (long)alloc; }\n";
    let object = compile_c(source, &["-fhosted", "-O2", "-fPIC"]);
    let r = registry();
    r.load("switch", &object).unwrap();
    call(&r, "change", &[]);
    assert_eq!(call(&r, "allocator", &[]), libc::calloc as *const () as i64);
    let ctx = r.save(&portable()).unwrap();
    // The same names, `calloc` elsewhere (as in a new process).
    let moved = common::libc_exports_moving("calloc", other_calloc as *const ());
    let elsewhere = Registry::new(HostMemory::new(), ExportTable::new(&moved));
    restore_all(&elsewhere, &ctx);
    assert_eq!(
        call(&elsewhere, "allocator", &[]),
        other_calloc as *const () as i64
    );
}

/// Review 8: the addresses a destructor list holds were moved only when they lay in the extension's own
/// blocks. A `.fini_array` entry naming a dependency's function kept the saved address, so the restored
/// copy's destructor ran the original dependency's code (freed memory once that was unloaded); one naming
/// a built-in kept the saving process's address, and `llext snapshot restore` crashed on teardown in its
/// new process. Both now move as the fixups of the word they were read from do.
#[test]
fn destructors_in_a_dependency_or_a_built_in_move_with_it() {
    const DEP: &str = "#include \"llext.h\"\n\
                       long dep_hits;\n\
                       void dep_hit(void) { dep_hits++; }\n\
                       long dep_count(void) { return dep_hits; }\n\
                       LLEXT_EXPORT(dep_hit);\n\
                       LLEXT_EXPORT(dep_count);\n";
    const USER: &str = "extern void dep_hit(void);\n\
                        extern int rand(void);\n\
                        static void (*const bye[])(void) __attribute__((section(\".fini_array\"), used)) =\n\
                        { dep_hit, (void (*)(void))rand };\n\
                        long user_nop(void) { return 7; }\n";
    static RAND_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    extern "C" fn other_rand() -> libc::c_int {
        RAND_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        4
    }
    let r = registry();
    r.load("dep", &compile_c(DEP, &["-fPIC"])).unwrap();
    r.load("user", &compile_c(USER, &["-fPIC"])).unwrap();
    let ctx = r.save(&portable()).unwrap();
    // The same names, `rand` elsewhere (as in a new process).
    let moved = common::libc_exports_moving("rand", other_rand as *const ());
    let elsewhere = Registry::new(HostMemory::new(), ExportTable::new(&moved));
    restore_all(&elsewhere, &ctx);
    assert_eq!(call(&elsewhere, "user_nop", &[]), 7);
    elsewhere.unload_name("user").unwrap();
    assert_eq!(
        call(&elsewhere, "dep_count", &[]),
        1,
        "the restored dependency's"
    );
    assert_eq!(call(&r, "dep_count", &[]), 0, "not the original's");
    assert_eq!(RAND_CALLS.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Review 8: a context's constructor and destructor lists were not checked at all: a destructor in the
/// extension's data (or anywhere) restored, in place or portably, and unloading the extension called it.
#[test]
fn a_destructor_outside_code_is_refused() {
    use llext_fixtures::context::{self as cx, Table};
    for options in [in_place(), portable()] {
        for bad in [0, 8, 0x1000] {
            let r = registry();
            r.load("ctors", &bytes("ctors-gcc-O2-pic.o")).unwrap();
            let genuine = r.save(&options).unwrap();
            if !options.portable {
                r.forget_all().unwrap();
            }
            let data = cx::blocks(&genuine, 0)
                .into_iter()
                .find(|b| {
                    llext::Permission::ALL[b.permission as usize] == llext::Permission::ReadWrite
                })
                .unwrap();
            // In the data block, or at a low address nothing is mapped at.
            let bad = if bad == 0x1000 { bad } else { data.addr + bad };
            let (at, count) = cx::entry(&genuine, 0, Table::Fini, 0);
            assert_eq!(count, 1);
            let mut ctx = genuine.clone();
            ctx[at..at + 8].copy_from_slice(&bad.to_le_bytes());
            reseal(&mut ctx);
            let target = if options.portable { registry() } else { r };
            let context = Context::from_bytes(&ctx).unwrap();
            match target.restore(&context, &RestoreOptions::default()) {
                Err(Error::Snapshot { reason }) => {
                    assert!(reason.contains("destructor"), "{reason}")
                }
                other => {
                    target.forget_all().unwrap(); // never call it
                    panic!("{bad:#x}: {other:?}");
                }
            }
            assert!(target.is_empty());
            // Nothing was kept: the genuine context still restores (in place: the same pages) and unloads.
            restore_all(&target, &genuine);
            target.unload_name("ctors").unwrap();
        }
    }
}

/// Review 8: a record whose two exports had one name restored (a link refuses such an object): the
/// registry then held two exports `db_calls`, one at `db_value`'s code, and a later load linking against
/// `db_calls` got whichever the index found first.
#[test]
fn a_record_exporting_one_name_twice_is_refused() {
    use llext_fixtures::context::{self as cx, Table};
    let r = registry();
    r.load("dbase", &bytes("dbase-gcc-O2-pic.o")).unwrap();
    let genuine = r.save(&portable()).unwrap();
    let mut ctx = genuine.clone();
    let (first, count) = cx::entry(&ctx, 0, Table::Exports, 0);
    let (second, _) = cx::entry(&ctx, 0, Table::Exports, 1);
    assert_eq!(count, 2);
    let name = ctx[first..first + 8].to_vec();
    ctx[second..second + 8].copy_from_slice(&name);
    reseal(&mut ctx);
    let (r2, memory) = counting_registry();
    r2.load("basic", &bytes("basic-gcc-O2-pic.o")).unwrap();
    let (before, live) = (r2.extensions(), memory.live());
    match r2.restore(
        &Context::from_bytes(&ctx).unwrap(),
        &RestoreOptions::default(),
    ) {
        Err(Error::DuplicateExport {
            extension, owner, ..
        }) => assert_eq!(
            (extension.as_str(), owner.as_str()),
            ("dbase", "the same extension (`dbase`)")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!((r2.extensions(), memory.live()), (before, live));
    restore_all(&r2, &genuine);
    assert_eq!(call(&r2, "db_value", &[]), 100);
}

/// Review 10: an in-place restore accepted a destructor naming a built-in only if the table made it with
/// `Export::function`, but `Export::new` exports functions too (tables of `Export::new` are common, and a
/// load takes such a destructor): the same program restoring its own context was refused with
/// `Error::Snapshot`, while a portable restore of it passed.
#[test]
fn a_destructor_naming_a_built_in_of_export_new_restores_in_place() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static BYES: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn host_bye() {
        BYES.fetch_add(1, Ordering::SeqCst);
    }
    const SRC: &str = "extern void host_bye(void);\n\
                       static void (*const bye[])(void) __attribute__((section(\".fini_array\"), used)) =\n\
                       { host_bye };\n\
                       long bye_nop(void) { return 7; }\n";
    let table = [llext::Export::new("host_bye", host_bye as *const ())];
    let r = Registry::new(HostMemory::new(), ExportTable::new(&table));
    r.load("bye", &compile_c(SRC, &["-fPIC"])).unwrap();
    let ctx = r.save(&in_place()).unwrap();
    r.forget_all().unwrap();
    restore_all(&r, &ctx);
    assert_eq!(call(&r, "bye_nop", &[]), 7);
    r.unload_name("bye").unwrap();
    assert_eq!(BYES.load(Ordering::SeqCst), 1);
}

/// Review 10: a portable restore rebound a destructor naming a built-in to whatever the new table exports
/// under that name, even a variable (`Export::copyable`), which unload would then call; an in-place
/// restore refuses a destructor at a variable's address alike.
#[test]
fn a_destructor_rebound_to_a_built_in_variable_is_refused() {
    extern "C" fn host_bye() {}
    static NOT_CODE: usize = 0;
    const SRC: &str = "extern void host_bye(void);\n\
                       static void (*const bye[])(void) __attribute__((section(\".fini_array\"), used)) =\n\
                       { host_bye };\n\
                       long bye_nop(void) { return 7; }\n";
    let code = [llext::Export::new("host_bye", host_bye as *const ())];
    let r = Registry::new(HostMemory::new(), ExportTable::new(&code));
    r.load("bye", &compile_c(SRC, &["-fPIC"])).unwrap();
    let ctx = r.save(&portable()).unwrap();
    // SAFETY: a pointer-sized static nothing writes.
    let data =
        [unsafe { llext::Export::copyable("host_bye", &NOT_CODE as *const usize as *const ()) }];
    let memory = Counting::default();
    let target = Registry::new(memory.clone(), ExportTable::new(&data));
    match target.restore(
        &Context::from_bytes(&ctx).unwrap(),
        &RestoreOptions::default(),
    ) {
        Err(Error::Snapshot { reason }) => assert!(reason.contains("destructor"), "{reason}"),
        other => {
            target.forget_all().unwrap(); // never call it
            panic!("{other:?}");
        }
    }
    assert!(target.is_empty());
    assert_eq!(memory.live(), 0);
    r.unload_name("bye").unwrap();
}

/// Review 10: an in-place restore whose record clashes with an export loaded meanwhile leaves through the
/// registry's insert and remove: the retained blocks go back to the provider's keeping (disowned, not
/// freed), and the same context restores once the clash is gone.
#[test]
fn an_in_place_export_clash_gives_the_retained_blocks_back() {
    const A: &str =
        "#include \"llext.h\"\nlong clash_fn(long x) { return x + 1; }\nLLEXT_EXPORT(clash_fn);\n";
    const B: &str =
        "#include \"llext.h\"\nlong clash_fn(long x) { return x + 2; }\nLLEXT_EXPORT(clash_fn);\n";
    let (r, memory) = counting_registry();
    r.load("a", &compile_c(A, &["-fPIC"])).unwrap();
    let ctx = r.save(&in_place()).unwrap();
    r.forget_all().unwrap();
    r.load("b", &compile_c(B, &["-fPIC"])).unwrap();
    let (before, live) = (r.extensions(), memory.live());
    match r.restore(
        &Context::from_bytes(&ctx).unwrap(),
        &RestoreOptions::default(),
    ) {
        Err(Error::DuplicateExport {
            extension, owner, ..
        }) => {
            assert_eq!((extension.as_str(), owner.as_str()), ("a", "extension `b`"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((r.extensions(), memory.live()), (before, live));
    r.unload_name("b").unwrap();
    restore_all(&r, &ctx);
    assert_eq!(call(&r, "clash_fn", &[1]), 2);
    r.unload_name("a").unwrap();
    assert_eq!(memory.live(), 0);
}

/// A registry over `arena` that counts its live blocks (the count is returned too).
fn arena_registry(
    arena: &mut [u8],
) -> (
    Registry<CountingArena<'_>>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let (memory, live) = CountingArena::new(arena);
    (
        Registry::new(memory, ExportTable::new(llext::LIBC_EXPORTS)),
        live,
    )
}

/// Loads that run nothing: arena memory on the host is not executable.
fn no_run() -> LoadOptions {
    LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    }
}

/// `discard` gives back at once what an in-place context kept for a restore, exactly once, all or nothing.
/// In an arena a load takes kept blocks only when nothing else fits, so where a new load lands shows
/// whether they were given back.
#[test]
fn discarding_a_context_frees_what_it_kept() {
    const A: &str = "long discard_a(long x) { return x + 1; }\n";
    const B: &str = "long discard_b(long x) { return x + 2; }\n";
    let (a, b) = (compile_c(A, &["-fPIC"]), compile_c(B, &["-fPIC"]));
    let no_run = no_run();
    let mut arena = vec![0u8; 1 << 16];
    let (r, live) = arena_registry(&mut arena);
    let live = || live.load(std::sync::atomic::Ordering::SeqCst);
    r.load_with("a", &a, &no_run).unwrap();
    r.load_with("b", &b, &no_run).unwrap();
    let (at_a, blocks) = (r.find_symbol("discard_a").unwrap(), live());
    let all = r.save(&in_place()).unwrap();
    let only_b = r
        .save(&SaveOptions {
            names: Some(&["b"]),
            ..in_place()
        })
        .unwrap();
    let (all, only_b) = (
        Context::from_bytes(&all).unwrap(),
        Context::from_bytes(&only_b).unwrap(),
    );
    assert_eq!(r.forget_all(), Ok(2));

    // `b` restored: its blocks are the registry's again, so discarding everything is refused, and the
    // blocks of `a` taken back before the refusal are kept for a restore again.
    r.restore(&only_b, &RestoreOptions::default()).unwrap();
    assert!(matches!(r.discard(&all), Err(Error::Memory { .. })));
    assert_eq!(r.forget_all(), Ok(1));
    r.restore(&all, &RestoreOptions::default()).unwrap();
    assert_eq!(live(), blocks);
    assert_eq!(r.find_symbol("discard_a"), Some(at_a));

    // Kept: a new load does not take the blocks of `a`.
    assert_eq!(r.forget_all(), Ok(2));
    let other = r.load_with("a", &a, &no_run).unwrap();
    assert_ne!(r.find_symbol("discard_a"), Some(at_a));
    r.unload(other).unwrap();
    assert_eq!(live(), 0);

    // Discarded: every kept block is freed, and a load takes the first of them again.
    assert_eq!(r.discard(&all), Ok(blocks));
    assert_eq!(live(), 0);
    assert!(matches!(r.discard(&all), Err(Error::Memory { .. })));
    assert!(matches!(
        r.restore(&all, &RestoreOptions::default()),
        Err(Error::Memory { .. })
    ));
    assert!(r.is_empty());
    r.load_with("a", &a, &no_run).unwrap();
    assert_eq!(r.find_symbol("discard_a"), Some(at_a));

    // A portable context keeps nothing.
    let portable = r.save(&portable()).unwrap();
    assert_eq!(r.discard(&Context::from_bytes(&portable).unwrap()), Ok(0));
    assert_eq!(r.extensions().len(), 1);
}

/// After a warm reboot a new arena adopts any range it has not handed out. Discarding one context there
/// must not make another one's blocks unrestorable: freeing never-used blocks used to raise the arena's
/// mark of what it handed out past them, which refused every block below it (here, those of `a`).
#[test]
fn discarding_after_a_warm_reboot_leaves_other_contexts_restorable() {
    const A: &str = "long warm_a(long x) { return x + 1; }\nlong warm_a_data = 5;\n";
    const B: &str = "long warm_b(long x) { return x + 2; }\nlong warm_b_data = 7;\n";
    let (a, b) = (compile_c(A, &["-fPIC"]), compile_c(B, &["-fPIC"]));
    let no_run = no_run();
    let mut arena = vec![0u8; 1 << 16];
    let (only_a, only_b, at_a) = {
        let (r, _) = arena_registry(&mut arena);
        r.load_with("a", &a, &no_run).unwrap();
        r.load_with("b", &b, &no_run).unwrap();
        let save = |name: &'static [&'static str]| {
            r.save(&SaveOptions {
                names: Some(name),
                ..in_place()
            })
            .unwrap()
        };
        let (only_a, only_b) = (save(&["a"]), save(&["b"]));
        let at_a = r.find_symbol("warm_a").unwrap();
        assert_eq!(r.forget_all(), Ok(2));
        (only_a, only_b, at_a)
    };
    // A warm reboot: a new arena over the same bytes.
    let (r, live) = arena_registry(&mut arena);
    let only_b = Context::from_bytes(&only_b).unwrap();
    assert!(r.discard(&only_b).unwrap() > 0);
    assert_eq!(live.load(std::sync::atomic::Ordering::SeqCst), 0);
    let only_a = Context::from_bytes(&only_a).unwrap();
    r.restore(&only_a, &RestoreOptions::default()).unwrap();
    assert_eq!(r.find_symbol("warm_a"), Some(at_a));
    assert_eq!(r.find_symbol("warm_b"), None);
}

/// A context whose second record names the first one's blocks (each record is valid on its own) is
/// refused by `discard` when the second adoption fails, and the blocks taken before go back to be kept:
/// the genuine context still restores.
#[test]
fn discarding_a_context_that_names_a_block_twice_frees_nothing() {
    let r = registry();
    for (name, source) in [
        (
            "a",
            "long twice_a(long x) { return x + 1; }\nlong twice_a_data = 5;\n",
        ),
        (
            "b",
            "long twice_b(long x) { return x + 2; }\nlong twice_b_data = 7;\n",
        ),
    ] {
        r.load(name, &compile_c(source, &["-fPIC"])).unwrap();
    }
    let saved = r.save(&in_place()).unwrap();
    let ctx = Context::from_bytes(&saved).unwrap();
    let records: Vec<_> = ctx.extensions().collect();
    let mut forged = saved.clone();
    for ((from, _, p), (to, _, q)) in records[1].blocks().zip(records[0].blocks()) {
        assert_eq!(p, q);
        let (from, to) = (from.to_le_bytes(), to.to_le_bytes());
        let mut i = 0;
        while i + 8 <= forged.len() {
            if forged[i..i + 8] == from {
                forged[i..i + 8].copy_from_slice(&to);
            }
            i += 1;
        }
    }
    reseal(&mut forged);
    let forged = Context::from_bytes(&forged).unwrap();
    assert_eq!(r.forget_all(), Ok(2));
    assert!(matches!(r.discard(&forged), Err(Error::Memory { .. })));
    assert_eq!(
        r.restore(&ctx, &RestoreOptions::default()).unwrap().len(),
        2
    );
}

/// `Context::extensions` shows each saved record as it is: dependencies as indexes, use counts, blocks
/// where they were, exports, constructors and destructors, and the fixup table's size.
#[test]
fn a_context_shows_its_extensions() {
    let r = registry();
    load_pair(&r);
    r.load("ctors", &bytes("ctors-clang-O2-pic.o")).unwrap();
    r.load("libmath", &bytes(LIB)).unwrap(); // a second user of it
    for options in [in_place(), portable()] {
        let ctx = r.save(&options).unwrap();
        let context = Context::from_bytes(&ctx).unwrap();
        let saved: Vec<llext::SavedExtension<'_>> = context.extensions().collect();
        let names: Vec<&str> = saved.iter().map(|e| e.name()).collect();
        assert_eq!(names, ["libmath", "usemath", "ctors"]);
        let deps = |i: usize| saved[i].dependencies().collect::<Vec<_>>();
        assert_eq!((deps(0), deps(1), deps(2)), (vec![], vec![0], vec![]));
        assert_eq!(saved[0].use_count(), 2);
        assert!(saved.iter().all(|e| e.initialised()));
        assert_eq!(saved[2].hooks(), (2, 1));
        for e in &saved {
            let info = r.info(r.get(e.name()).unwrap()).unwrap();
            let blocks: u64 = e.blocks().map(|(_, size, _)| size).sum();
            assert_eq!(blocks, info.memory as u64, "{}", e.name());
            let exports: Vec<(Vec<u8>, u64)> = e.exports().map(|(n, a)| (n.to_vec(), a)).collect();
            for (name, addr) in &exports {
                let name = std::str::from_utf8(name).unwrap();
                assert_eq!(r.find_symbol(name), Some(*addr as usize), "{name}");
            }
            assert!(e.fixup_bytes() > 0, "the host records fixups by default");
        }
        assert!(saved[0].exports().any(|(n, _)| n == b"lm_mul"));
    }
}

/// A context saved before its extensions' constructors ran — loaded with `bring_up: false`, or linked by
/// a registry for another machine on a build host and shipped to the device — restores them not brought
/// up, and nothing could run their constructors: a firmware restoring a host-made context called
/// extensions whose constructors never ran. `bring_up` runs them, a dependency's first, once.
#[test]
fn extensions_saved_before_their_constructors_ran_are_brought_up_after_a_restore() {
    let base = compile_c(
        "#include \"llext.h\"\n\
         static long state;\n\
         __attribute__((constructor)) static void base_init(void) { state = state * 10 + 1; }\n\
         long base_state(void) { return state; }\n\
         LLEXT_EXPORT(base_state);\n",
        &["-fPIC"],
    );
    let user = compile_c(
        "extern long base_state(void);\n\
         static long seen = -1;\n\
         __attribute__((constructor)) static void user_init(void) { seen = base_state() * 10 + 2; }\n\
         long user_seen(void) { return seen; }\n",
        &["-fPIC"],
    );
    let linked_only = llext::LoadOptions {
        bring_up: false,
        ..llext::LoadOptions::default()
    };
    let ctx = {
        let r = registry();
        r.load_with("base", &base, &linked_only).unwrap();
        r.load_with("user", &user, &linked_only).unwrap();
        r.save(&portable()).unwrap()
    };
    let context = Context::from_bytes(&ctx).unwrap();
    assert!(context.extensions().all(|x| !x.initialised()));

    let r = registry();
    let ids = r.restore(&context, &RestoreOptions::default()).unwrap();
    assert_eq!(call(&r, "user_seen", &[]), -1, "restored, not brought up");
    // The user's constructor reads what the base's wrote: the base comes first.
    assert_eq!(r.bring_up(ids[1]).unwrap(), 2);
    assert_eq!(call(&r, "base_state", &[]), 1);
    assert_eq!(call(&r, "user_seen", &[]), 12);
    assert_eq!(r.bring_up(ids[0]).unwrap(), 0, "once only");
    assert_eq!(r.bring_up(ids[1]).unwrap(), 0, "once only");
    // Saved again, it is initialised: a restore of that context needs no bring-up.
    let again = r.save(&portable()).unwrap();
    assert!(Context::from_bytes(&again)
        .unwrap()
        .extensions()
        .all(|x| x.initialised()));
    r.unload(ids[1]).unwrap();
    r.unload(ids[0]).unwrap();
    assert!(matches!(r.bring_up(ids[0]), Err(Error::NotLoaded { .. })));

    // A registry for another machine links and saves, but runs nothing.
    let riscv = common::compile_riscv_gcc(
        "__attribute__((constructor)) static void init(void) {}\nint f(void) { return 1; }\n",
        &["-march=rv32imac", "-mabi=ilp32"],
    );
    let mut arena = vec![0u8; 1 << 16];
    let foreign = Registry::for_machine(
        llext::ArenaMemory::new(&mut arena),
        ExportTable::default(),
        243,
    );
    let id = foreign.load("f", &riscv).unwrap();
    assert!(matches!(
        foreign.bring_up(id),
        Err(Error::ForeignCode { machine: 243 })
    ));
}

/// Review: a load with `bring_up: true` ran the new extension's constructors, but not those of a
/// dependency that was loaded or restored without running them: they ran after the dependent's (when
/// `bring_up` was called for it), or never. A load now brings such dependencies up first, as `bring_up`
/// does.
#[test]
fn a_load_brings_up_a_dependency_not_brought_up_first() {
    let base = compile_c(
        "#include \"llext.h\"\n\
         static long state;\n\
         __attribute__((constructor)) static void base_init(void) { state = 1; }\n\
         long base_state(void) { return state; }\n\
         LLEXT_EXPORT(base_state);\n",
        &["-O2", "-fPIC"],
    );
    let user = compile_c(
        "extern long base_state(void);\n\
         static long seen = -1;\n\
         __attribute__((constructor)) static void user_init(void) { seen = base_state(); }\n\
         long user_seen(void) { return seen; }\n",
        &["-O2", "-fPIC"],
    );
    let r = registry();
    let linked_only = llext::LoadOptions {
        bring_up: false,
        ..llext::LoadOptions::default()
    };
    r.load_with("base", &base, &linked_only).unwrap();
    r.load("user", &user).unwrap();
    assert_eq!(
        call(&r, "user_seen", &[]),
        1,
        "user's constructor ran before base's (base_state() was 0)"
    );
}
