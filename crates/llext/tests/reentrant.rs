//! Constructors and destructors run outside the registry's lock: an extension's own code may call back into
//! the registry that is loading or unloading it (look up, call, load and unload others), and another thread
//! may use the registry meanwhile. Unloading or saving the busy extension is refused with `Error::Busy`.
//!
//! The fixture `reenter.c` calls `host_reenter("init")` from its constructor and `host_reenter("fini")` from
//! its destructor; this file provides `host_reenter`. Before, both ran under the lock and a call back into
//! the registry deadlocked.

use std::ffi::{c_char, CStr};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use llext::{Context, Error, Export, ExportTable, HostMemory, Registry, SaveOptions, Unloaded};
use llext_fixtures::{bytes, variants};

type Reg = Registry<HostMemory>;

/// What `host_reenter` does: check the registry from inside the extension, or hand over to the test thread.
enum Mode {
    Check,
    /// Tell the test thread the constructor is running, then wait until it says go on.
    Handshake {
        running: Sender<()>,
        go_on: Receiver<()>,
    },
}

/// The registry under test, what `host_reenter` does, and what it found wrong.
struct World {
    registry: Option<Arc<Reg>>,
    mode: Mode,
    problems: Vec<String>,
    fini_ran: usize,
    /// The handle of the extension under test, once loaded.
    id: Option<llext::ExtId>,
}

static WORLD: Mutex<World> = Mutex::new(World {
    registry: None,
    mode: Mode::Check,
    problems: Vec::new(),
    fini_ran: 0,
    id: None,
});

/// Tests in this file share `WORLD`: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn world() -> MutexGuard<'static, World> {
    WORLD.lock().unwrap_or_else(|e| e.into_inner())
}

fn problem(text: String) {
    world().problems.push(text);
}

extern "C" fn host_reenter(phase: *const c_char) -> i64 {
    // SAFETY: the fixture passes a string literal.
    let phase = unsafe { CStr::from_ptr(phase) }
        .to_string_lossy()
        .into_owned();
    let registry = world().registry.clone();
    let Some(r) = registry else {
        return -1;
    };
    let handshake = match &world().mode {
        Mode::Check => None,
        Mode::Handshake { .. } => Some(()),
    };
    if handshake.is_some() {
        if phase == "init" {
            let w = world();
            if let Mode::Handshake { running, go_on } = &w.mode {
                let _ = running.send(());
                // The test thread does not need WORLD until it says go on.
                let _ = go_on.recv_timeout(Duration::from_secs(60));
            }
        }
        return 1;
    }
    match phase.as_str() {
        "init" => check_while_constructing(&r),
        "fini" => check_while_destructing(&r),
        other => problem(format!("unknown phase {other}")),
    }
    1
}

fn check_while_constructing(r: &Reg) {
    if r.get("reenter").is_none() {
        problem("the extension is not visible to its own constructor".into());
    }
    if r.find_symbol("reenter_value").is_none() {
        problem("find_symbol from a constructor found nothing".into());
    }
    // SAFETY: `reenter_value` is `long reenter_value(void)` in the extension being constructed.
    match unsafe { r.call("reenter_value", &[]) } {
        Ok(42) => {}
        other => problem(format!("call from a constructor: {other:?}")),
    }
    match r.unload_name("reenter") {
        Err(Error::Busy {
            running: "constructors",
            ..
        }) => {}
        other => problem(format!("unload from its own constructor: {other:?}")),
    }
    match r.save(&SaveOptions::default()) {
        Err(Error::Busy { .. }) => {}
        other => problem(format!(
            "save during a constructor: {:?}",
            other.map(|b| b.len())
        )),
    }
    // Forgetting everything would hand back the memory this constructor runs in.
    match r.forget_all() {
        Err(Error::Busy { .. }) => {}
        other => problem(format!("forget_all during a constructor: {other:?}")),
    }
    // A second load of the same name raises the use count, as anywhere else.
    match r.load("reenter", &bytes("reenter-gcc-O2-pic.o")) {
        Ok(id) => match r.unload(id) {
            Ok(Unloaded::StillInUse(1)) => {}
            other => problem(format!("unload of the second use: {other:?}")),
        },
        Err(e) => problem(format!("second load from a constructor: {e}")),
    }
    load_and_unload_another(r, "from a constructor");
}

fn check_while_destructing(r: &Reg) {
    world().fini_ran += 1;
    if r.get("reenter").is_some() || r.find_symbol("reenter_value").is_some() {
        problem("an extension whose destructors run is still found".into());
    }
    match r.unload_name("reenter") {
        Err(Error::NotLoaded { .. }) => {}
        other => problem(format!("unload from its own destructor: {other:?}")),
    }
    if r.extensions().iter().any(|e| e.name == "reenter") {
        problem("an extension whose destructors run is still listed".into());
    }
    // Nor reached by its handle: its memory goes as soon as its destructors return (a review found
    // `call_in` reaching it).
    let id = world().id;
    if let Some(id) = id {
        // SAFETY: refused before any call (were it found, `reenter_seen_by_init` is `long (void)`).
        let called = unsafe { r.call_in(id, "reenter_seen_by_init", &[]) };
        if !matches!(called, Err(Error::NotLoaded { .. })) {
            problem(format!("call_in during its destructors: {called:?}"));
        }
        if !matches!(
            r.extension_symbol(id, "reenter_value"),
            Err(Error::NotLoaded { .. })
        ) {
            problem("extension_symbol during its destructors found it".into());
        }
    }
    // Forgetting everything would hand back the memory this destructor runs in.
    match r.forget_all() {
        Err(Error::Busy {
            running: "destructors",
            ..
        }) => {}
        other => problem(format!("forget_all during a destructor: {other:?}")),
    }
    // Saving now saves everything else, without it.
    match r.save(&SaveOptions::default()) {
        Ok(bytes) => match Context::from_bytes(&bytes) {
            Ok(c) if c.names().all(|n| n != "reenter") => {}
            Ok(_) => problem("a context saved during destructors holds the extension".into()),
            Err(e) => problem(format!("context saved during destructors: {e}")),
        },
        Err(e) => problem(format!("save during destructors: {e}")),
    }
    load_and_unload_another(r, "from a destructor");
}

fn load_and_unload_another(r: &Reg, when: &str) {
    match r.load("inner-basic", &bytes("basic-gcc-O2-pic.o")) {
        Ok(id) => {
            // SAFETY: `basic_add` is `long basic_add(long, long)` in the extension just loaded.
            match unsafe { r.call("basic_add", &[2, 3]) } {
                Ok(5) => {}
                other => problem(format!("basic_add {when}: {other:?}")),
            }
            if r.unload(id) != Ok(Unloaded::Freed) {
                problem(format!("unload of another extension {when} failed"));
            }
        }
        Err(e) => problem(format!("load of another extension {when}: {e}")),
    }
}

fn registry() -> Arc<Reg> {
    let mut table: Vec<Export> = llext::LIBC_EXPORTS.to_vec();
    table.push(Export::new("host_reenter", host_reenter as *const ()));
    Arc::new(Registry::new(HostMemory::new(), ExportTable::new(&table)))
}

#[test]
fn constructors_and_destructors_may_call_back_into_the_registry() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for variant in variants() {
        let r = registry();
        {
            let mut w = world();
            w.registry = Some(r.clone());
            w.mode = Mode::Check;
            w.problems.clear();
            w.fini_ran = 0;
        }
        let id = r
            .load("reenter", &variant.bytes("reenter"))
            .unwrap_or_else(|e| panic!("{variant}: {e}"));
        world().id = Some(id);
        // SAFETY: `reenter_seen_by_init` is `long reenter_seen_by_init(void)`.
        let seen = unsafe { r.call("reenter_seen_by_init", &[]) }.unwrap();
        assert_eq!(
            seen, 1,
            "{variant}: the constructor ran and got host_reenter's answer"
        );
        assert_eq!(r.info(id).unwrap().use_count, 1, "{variant}");
        assert_eq!(r.unload(id).unwrap(), Unloaded::Freed, "{variant}");
        let w = world();
        assert_eq!(w.fini_ran, 1, "{variant}: the destructor ran once");
        assert!(w.problems.is_empty(), "{variant}: {:#?}", w.problems);
        drop(w);
        assert!(r.is_empty(), "{variant}");
        world().registry = None;
    }
}

#[test]
fn another_thread_sees_a_busy_extension_while_its_constructors_run() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = registry();
    let (running_tx, running) = channel();
    let (go_on, go_on_rx) = channel();
    {
        let mut w = world();
        w.registry = Some(r.clone());
        w.mode = Mode::Handshake {
            running: running_tx,
            go_on: go_on_rx,
        };
        w.problems.clear();
    }
    let loader = {
        let r = r.clone();
        std::thread::spawn(move || r.load("reenter", &bytes("reenter-gcc-O2-pic.o")))
    };
    running
        .recv_timeout(Duration::from_secs(60))
        .expect("the constructor started");
    // The constructor is running in the loader thread, which holds no lock now.
    assert!(r.find_symbol("reenter_value").is_some());
    assert!(matches!(
        r.unload_name("reenter"),
        Err(Error::Busy {
            running: "constructors",
            ..
        })
    ));
    let err = r.save(&SaveOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot unload or save `reenter` while its constructors run"
    );
    assert!(matches!(
        r.context_size(&SaveOptions::default()),
        Err(Error::Busy { .. })
    ));
    assert!(matches!(r.forget_all(), Err(Error::Busy { .. })));
    // Other extensions load and unload meanwhile.
    let other = r.load("other", &bytes("basic-gcc-O2-pic.o")).unwrap();
    assert_eq!(r.unload(other).unwrap(), Unloaded::Freed);
    go_on.send(()).unwrap();
    let id = loader.join().unwrap().unwrap();
    // Once the constructors returned, it saves and unloads as usual.
    assert!(r.save(&SaveOptions::default()).is_ok());
    assert_eq!(r.unload(id).unwrap(), Unloaded::Freed);
    assert!(r.is_empty());
    let mut w = world();
    w.registry = None;
    w.mode = Mode::Check;
}
