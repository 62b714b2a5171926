//! llext built without its `portable` feature, as a firmware that only keeps its extensions across a
//! suspend builds it: recording fixups, saving portably and restoring a portable context are refused
//! with `Error::FeatureDisabled`, changing nothing, and in-place save and restore work as with it.
//!
//! The default build has the feature, so this file is empty there; `cargo xtask ci` runs it with
//! `cargo test -p llext --no-default-features --features std --test without_portable`.
#![cfg(all(feature = "std", not(feature = "portable")))]

mod common;

use common::portable;

use common::{call, compile_c, counting_registry, registry, restore_all};
use llext::{
    Context, Error, Export, ExportTable, HostMemory, LoadOptions, Registry, RestoreOptions,
    SaveOptions,
};
use llext_fixtures::bytes;
use llext_fixtures::context::{self as cx, Table};

const LIB: &str = "libmath-gcc-O2-pic.o";
const USER: &str = "usemath-gcc-O2-nopic.o";

fn load_pair<M: llext::Memory>(r: &Registry<M>) {
    r.load("libmath", &bytes(LIB)).unwrap();
    r.load("usemath", &bytes(USER)).unwrap();
}

/// Asserts that `result` is the refusal of a build without the `portable` feature.
#[track_caller]
fn assert_disabled<T: std::fmt::Debug>(result: llext::Result<T>) {
    match result {
        Err(e @ Error::FeatureDisabled { feature, .. }) => {
            assert_eq!(feature, "portable");
            let text = e.to_string();
            assert!(
                text.contains("built without its `portable` feature"),
                "{text}"
            );
        }
        other => panic!("expected Error::FeatureDisabled, got {other:?}"),
    }
}

/// The portable twin of the in-place context `ctx`, in the layout a build with the feature writes as far
/// as `Context::from_bytes` reads it: the portable flag, each record marked as having recorded its fixups
/// (an empty table) and followed by the saved addresses of the built-ins they name (none) and its blocks'
/// bytes (zeros: a restore with the feature would refuse them as changed, one without never looks).
fn portable_twin(ctx: &[u8]) -> Vec<u8> {
    let count = u32::from_le_bytes(ctx[24..28].try_into().unwrap()) as usize;
    let mut out = ctx[..cx::HEADER].to_vec();
    out[10] |= 1;
    let mut start = cx::HEADER;
    for r in 0..count {
        let end = cx::record_end(ctx, r);
        let at = out.len();
        out.extend_from_slice(&ctx[start..end]);
        out[at + 5] = 1; // the record's "fixups recorded" byte
        out.extend_from_slice(&0u32.to_le_bytes());
        let carried: u64 = cx::blocks(ctx, r).iter().map(|b| b.size).sum();
        out.resize(out.len() + carried as usize, 0);
        start = end;
    }
    let total = out.len() as u64 + 8;
    out[32..40].copy_from_slice(&total.to_le_bytes());
    let sum = Context::checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

#[test]
fn loads_do_not_record_fixups_unless_asked_and_asking_is_refused() {
    assert!(!LoadOptions::default().portable);
    let (r, memory) = counting_registry();
    let record = LoadOptions {
        portable: true,
        ..LoadOptions::default()
    };
    assert_disabled(r.load_with("libmath", &bytes(LIB), &record));
    assert!(r.is_empty());
    assert_eq!(memory.live(), 0, "nothing was allocated");
    // Nor is a name already loaded taken again (its use count stays).
    r.load("libmath", &bytes(LIB)).unwrap();
    assert_disabled(r.load_with("libmath", &bytes(LIB), &record));
    assert_eq!(r.extensions()[0].use_count, 1);
    let leaked = common::leak(bytes(LIB));
    assert_disabled(r.load_static("other", leaked, &record));
    assert_eq!(r.len(), 1);
}

#[test]
fn portable_saves_are_refused() {
    let r = registry();
    assert_disabled(r.save(&portable()));
    load_pair(&r);
    let before = r.extensions();
    assert_disabled(r.save(&portable()));
    assert_disabled(r.context_size(&portable()));
    let mut buf = vec![0u8; 1 << 16];
    assert_disabled(r.save_into(&portable(), &mut buf));
    assert!(buf.iter().all(|&b| b == 0), "nothing was written");
    let names = ["usemath"];
    let subset = SaveOptions {
        names: Some(&names),
        ..portable()
    };
    assert_disabled(r.save(&subset));
    assert_eq!(r.extensions(), before);
    assert_eq!(call(&r, "use_math", &[5]), 15);
}

#[test]
fn portable_contexts_are_read_but_not_restored() {
    let (r, memory) = counting_registry();
    load_pair(&r);
    let in_place = r.save(&SaveOptions::default()).unwrap();
    let twin = portable_twin(&in_place);
    let context = Context::from_bytes(&twin).unwrap();
    assert!(context.is_portable());
    assert_eq!(context.names().collect::<Vec<_>>(), ["libmath", "usemath"]);

    // Into the registry that holds the extensions, after it forgot them, and into a fresh one: refused
    // before anything is taken, allocated or registered.
    let live = memory.live();
    assert_disabled(r.restore(&context, &RestoreOptions::default()));
    assert_eq!((r.len(), memory.live()), (2, live));
    r.forget_all().unwrap();
    assert_disabled(r.restore(&context, &RestoreOptions::default()));
    assert!(r.is_empty());
    let (fresh, fresh_memory) = counting_registry();
    assert_disabled(fresh.restore(&context, &RestoreOptions::default()));
    assert!(fresh.is_empty());
    assert_eq!(
        fresh_memory
            .allocations
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // An empty portable context too: the build refuses the kind, whatever it holds.
    let empty = portable_twin(&registry().save(&SaveOptions::default()).unwrap());
    assert_disabled(fresh.restore(
        &Context::from_bytes(&empty).unwrap(),
        &RestoreOptions::default(),
    ));

    // The retained blocks were left alone: the in-place context still takes them over.
    restore_all(&r, &in_place);
    assert_eq!(memory.live(), live);
    assert_eq!(call(&r, "use_math", &[5]), 15);
}

#[test]
fn in_place_save_and_restore_work_as_with_the_feature() {
    let (r, memory) = counting_registry();
    load_pair(&r);
    r.load("libmath", &[]).unwrap(); // use count 2
    assert_eq!(call(&r, "use_math", &[5]), 15);
    let before = r.extensions();
    for hashes in [false, true] {
        let options = SaveOptions {
            content_hashes: hashes,
            ..SaveOptions::default()
        };
        let size = r.context_size(&options).unwrap();
        let mut retained = vec![0u8; size];
        assert_eq!(r.save_into(&options, &mut retained), Ok(size));
        assert_eq!(retained, r.save(&options).unwrap());
        let context = Context::from_bytes(&retained).unwrap();
        assert!(!context.is_portable());
        let live = memory.live();
        assert_eq!(r.forget_all(), Ok(2));
        assert_eq!(memory.live(), 0);
        let ids = r.restore(&context, &RestoreOptions::default()).unwrap();
        assert_eq!((ids.len(), memory.live()), (2, live));
    }
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
    r.unload_name("usemath").unwrap();
    r.unload_name("libmath").unwrap();
    r.unload_name("libmath").unwrap();
    assert_eq!(memory.live(), 0, "unload after restore frees every block");
}

/// The constructor and destructor checks of an in-place restore: in the extension's own code, in a
/// dependency's, a built-in function — accepted; in data — refused, taking nothing.
#[test]
fn in_place_restore_checks_what_unload_will_call() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static BYES: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn host_bye() {
        BYES.fetch_add(1, Ordering::SeqCst);
    }
    const DEP: &str = "#include \"llext.h\"\n\
                       long dep_hits;\n\
                       void dep_hit(void) { dep_hits++; }\n\
                       long dep_count(void) { return dep_hits; }\n\
                       LLEXT_EXPORT(dep_hit);\n\
                       LLEXT_EXPORT(dep_count);\n";
    const USER: &str = "extern void dep_hit(void);\n\
                        extern void host_bye(void);\n\
                        static void own_bye(void) { dep_hit(); }\n\
                        static void (*const bye[])(void) __attribute__((section(\".fini_array\"), used)) =\n\
                        { own_bye, dep_hit, host_bye };\n\
                        long user_nop(void) { return 7; }\n";
    let table: Vec<Export> = llext::LIBC_EXPORTS
        .iter()
        .copied()
        .chain([Export::new("host_bye", host_bye as *const ())])
        .collect();
    let r = Registry::new(HostMemory::new(), ExportTable::new(&table));
    r.load("dep", &compile_c(DEP, &["-fPIC"])).unwrap();
    r.load("user", &compile_c(USER, &["-fPIC"])).unwrap();
    let genuine = r.save(&SaveOptions::default()).unwrap();
    r.forget_all().unwrap();

    // A destructor moved into the dependency's data is refused, and nothing is kept.
    let data = cx::blocks(&genuine, 0)
        .into_iter()
        .find(|b| llext::Permission::ALL[b.permission as usize] == llext::Permission::ReadWrite)
        .unwrap();
    let (at, count) = cx::entry(&genuine, 1, Table::Fini, 0);
    assert_eq!(count, 3);
    let mut bad = genuine.clone();
    bad[at..at + 8].copy_from_slice(&data.addr.to_le_bytes());
    let n = bad.len() - 8;
    let sum = Context::checksum(&bad[..n]);
    bad[n..].copy_from_slice(&sum.to_le_bytes());
    match r.restore(
        &Context::from_bytes(&bad).unwrap(),
        &RestoreOptions::default(),
    ) {
        Err(Error::Snapshot { reason }) => assert!(reason.contains("destructor"), "{reason}"),
        other => {
            r.forget_all().unwrap(); // never call it
            panic!("{other:?}");
        }
    }
    assert!(r.is_empty());

    restore_all(&r, &genuine);
    assert_eq!(call(&r, "user_nop", &[]), 7);
    r.unload_name("user").unwrap();
    assert_eq!(
        call(&r, "dep_count", &[]),
        2,
        "its own destructor and the dependency's"
    );
    assert_eq!(BYES.load(Ordering::SeqCst), 1, "and the built-in");
    r.unload_name("dep").unwrap();
}
