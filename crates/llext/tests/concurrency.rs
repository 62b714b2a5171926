//! A bounded stress test: several threads load, call, unload, save and restore on one registry at once.
//! Each thread works on its own extension names (plus the shared `libmath`, whose use count the threads
//! raise and lower but never drop to zero), keeps the state it expects, and at the end the registry must
//! hold exactly the union of those states: no lost or doubled extension, the expected use counts, every
//! `usemath` copy depending on `libmath` and listed among its dependents. A thread that does not finish in
//! time is reported as a deadlock. `cargo xtask sanitize` also runs this under AddressSanitizer.
// Saves or restores portable contexts throughout: llext's `portable` feature (on by default).
#![cfg(feature = "portable")]

mod common;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Counting, Rng};
use llext::{Context, Error, ExportTable, LoadOptions, Registry, RestoreOptions, SaveOptions};
use llext_fixtures::bytes;

const THREADS: usize = 4;
const ITERATIONS: usize = 400;
/// A thread not done by then is deadlocked (the whole test takes about a second).
const DEADLINE: Duration = Duration::from_secs(120);

/// What the `reenter` fixture's constructor and destructor call: nothing to do here.
extern "C" fn host_reenter(_phase: *const std::ffi::c_char) -> i64 {
    1
}

fn call(r: &Registry<Counting>, symbol: &str, args: &[i64]) -> i64 {
    // SAFETY: `lm_mul` is `long lm_mul(long, long)` in libmath, which no thread unloads (the main thread
    // holds one use until the end).
    unsafe { r.call(symbol, args) }.unwrap_or_else(|e| panic!("{symbol}: {e}"))
}

/// What one thread did: its extensions and their use counts, and counts of each operation.
#[derive(Default)]
struct Outcome {
    expected: BTreeMap<String, u32>,
    operations: BTreeMap<&'static str, usize>,
}

fn worker(r: &Registry<Counting>, t: usize, seed: u64) -> Outcome {
    let mut rng = Rng(seed | 1);
    let mut out = Outcome::default();
    let basic = bytes("basic-gcc-O2-pic.o");
    let usemath = bytes("usemath-gcc-O2-pic.o");
    let libmath = bytes("libmath-gcc-O2-pic.o");
    let reenter = bytes("reenter-gcc-O2-pic.o");
    let no_run = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let mut libmath_uses = 0u32;
    for i in 0..ITERATIONS {
        let k = rng.below(3);
        let (stem, object) = if rng.below(2) == 0 {
            ("basic", &basic)
        } else {
            ("usemath", &usemath)
        };
        let name = format!("{stem}-{t}-{k}");
        let op = match rng.below(11) {
            0..=2 => {
                r.load_with(&name, object, &no_run)
                    .unwrap_or_else(|e| panic!("load {name}: {e}"));
                *out.expected.entry(name).or_default() += 1;
                "load"
            }
            3..=4 => {
                if let Some(uses) = out.expected.get_mut(&name) {
                    r.unload_name(&name)
                        .unwrap_or_else(|e| panic!("unload {name}: {e}"));
                    *uses -= 1;
                    if *uses == 0 {
                        out.expected.remove(&name);
                    }
                } else {
                    assert!(matches!(r.unload_name(&name), Err(Error::NotLoaded { .. })));
                }
                "unload"
            }
            5 => {
                assert_eq!(call(r, "lm_mul", &[t as i64, i as i64]), (t * i) as i64);
                "call"
            }
            6 => {
                // Raise or lower the shared library's use count (never to zero: main holds one).
                if libmath_uses > 0 && rng.below(2) == 0 {
                    r.unload_name("libmath").unwrap();
                    libmath_uses -= 1;
                } else {
                    r.load_with("libmath", &libmath, &no_run).unwrap();
                    libmath_uses += 1;
                }
                "libmath use count"
            }
            7 => {
                // Save this thread's extensions (their dependencies come along) and restore them into a
                // registry of its own.
                let names: Vec<&str> = out.expected.keys().map(String::as_str).collect();
                if names.is_empty() {
                    continue;
                }
                let ctx = r
                    .save(&SaveOptions {
                        names: Some(&names),
                        portable: true,
                        content_hashes: true,
                    })
                    .unwrap_or_else(|e| panic!("save: {e}"));
                let context = Context::from_bytes(&ctx).unwrap();
                let copy =
                    Registry::new(Counting::default(), ExportTable::new(llext::LIBC_EXPORTS));
                copy.restore(&context, &RestoreOptions::default())
                    .unwrap_or_else(|e| panic!("restore copy: {e}"));
                for (n, uses) in &out.expected {
                    let info = copy.info(copy.get(n).unwrap()).unwrap();
                    assert_eq!(info.use_count, *uses, "{n}");
                }
                "save and restore elsewhere"
            }
            8 => {
                // Take one of this thread's `basic` copies out and put it back through a context.
                let Some(own) = out
                    .expected
                    .keys()
                    .find(|n| n.starts_with("basic"))
                    .cloned()
                else {
                    continue;
                };
                let names = [own.as_str()];
                let ctx = r
                    .save(&SaveOptions {
                        names: Some(&names),
                        portable: true,
                        content_hashes: true,
                    })
                    .unwrap();
                let uses = out.expected[&own];
                for _ in 0..uses {
                    r.unload_name(&own).unwrap();
                }
                let ids = r
                    .restore(
                        &Context::from_bytes(&ctx).unwrap(),
                        &RestoreOptions::default(),
                    )
                    .unwrap_or_else(|e| panic!("restore {own}: {e}"));
                assert_eq!(ids.len(), 1);
                assert_eq!(r.info(ids[0]).unwrap().use_count, uses);
                "save, unload and restore"
            }
            9 => {
                // An extension whose constructors and destructors run outside the lock (they call
                // `host_reenter`), while other threads save: they see it busy or not at all.
                let name = format!("reenter-{t}");
                let id = r
                    .load(&name, &reenter)
                    .unwrap_or_else(|e| panic!("load {name}: {e}"));
                assert_eq!(r.unload(id), Ok(llext::Unloaded::Freed));
                "constructors and destructors"
            }
            _ => {
                // A whole-registry context: consistent whatever the other threads are doing. Refused
                // only while another thread's extension runs its constructors; then tried again.
                let ctx = loop {
                    match r.save(&SaveOptions::default()) {
                        Ok(ctx) => break ctx,
                        Err(Error::Busy { .. }) => std::thread::yield_now(),
                        Err(e) => panic!("save: {e}"),
                    }
                };
                let context = Context::from_bytes(&ctx).unwrap();
                assert!(context.names().any(|n| n == "libmath"));
                "save everything"
            }
        };
        *out.operations.entry(op).or_default() += 1;
    }
    for _ in 0..libmath_uses {
        r.unload_name("libmath").unwrap();
    }
    out
}

#[test]
fn threads_load_call_unload_save_and_restore_at_once() {
    let start = Instant::now();
    let memory = Counting::default();
    let mut builtins = llext::LIBC_EXPORTS.to_vec();
    builtins.push(llext::Export::new(
        "host_reenter",
        host_reenter as *const (),
    ));
    let r = Arc::new(Registry::new(memory.clone(), ExportTable::new(&builtins)));
    r.load("libmath", &bytes("libmath-gcc-O2-pic.o")).unwrap();
    let (done, finished) = mpsc::channel();
    for t in 0..THREADS {
        let r = r.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                worker(&r, t, 0x9e37_79b9 * (t as u64 + 1))
            }));
            let _ = done.send((t, outcome));
        });
    }
    drop(done);
    let mut expected: BTreeMap<String, u32> = BTreeMap::new();
    let mut operations: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..THREADS {
        let (t, outcome) = finished
            .recv_timeout(DEADLINE.saturating_sub(start.elapsed()))
            .unwrap_or_else(|_| panic!("deadlock: a thread did not finish within {DEADLINE:?}"));
        let outcome = outcome.unwrap_or_else(|p| {
            let m = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("thread {t}: {m}")
        });
        expected.extend(outcome.expected);
        for (op, n) in outcome.operations {
            *operations.entry(op).or_default() += n;
        }
    }
    expected.insert("libmath".into(), 1);

    // Exactly the expected extensions, each once, with the expected use counts and links.
    let all = r.extensions();
    let found: BTreeMap<String, u32> = all.iter().map(|e| (e.name.clone(), e.use_count)).collect();
    assert_eq!(found.len(), all.len(), "an extension is listed twice");
    assert_eq!(found, expected);
    let lib = all.iter().find(|e| e.name == "libmath").unwrap();
    let mut users: Vec<&str> = all
        .iter()
        .filter(|e| e.name.starts_with("usemath"))
        .map(|e| {
            assert_eq!(e.dependencies, ["libmath"], "{}", e.name);
            e.name.as_str()
        })
        .collect();
    let mut dependents: Vec<&str> = lib.dependents.iter().map(String::as_str).collect();
    users.sort();
    dependents.sort();
    assert_eq!(dependents, users);
    for e in &all {
        if e.name.starts_with("basic") {
            assert!(
                e.dependencies.is_empty() && e.dependents.is_empty(),
                "{e:?}"
            );
        }
    }

    // Everything unloads (dependents first) and every block comes back.
    for e in all.iter().filter(|e| e.name != "libmath") {
        for _ in 0..e.use_count {
            r.unload_name(&e.name).unwrap();
        }
    }
    r.unload_name("libmath").unwrap();
    assert!(r.is_empty());
    assert_eq!(memory.live(), 0);
    let total: usize = operations.values().sum();
    println!(
        "reliability: concurrency: {THREADS} threads, {total} operations ({}) in {:.1}s; registry consistent, no deadlock, every block freed",
        operations
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        start.elapsed().as_secs_f64()
    );
}
