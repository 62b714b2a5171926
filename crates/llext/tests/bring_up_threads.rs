//! `Registry::bring_up` from two threads: a dependency's constructors run outside the lock, and what
//! depends on it must not be brought up before they have returned.

mod common;

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llext::{Error, Export, ExportTable, HostMemory, LoadOptions, Registry};

/// `host_hold` tells the test its caller's constructor runs, then waits until the test says go on.
static HOLD: Mutex<Option<(Sender<()>, Receiver<()>)>> = Mutex::new(None);

extern "C" fn host_hold() {
    let hold = HOLD.lock().unwrap().take();
    if let Some((running, go_on)) = hold {
        let _ = running.send(());
        let _ = go_on.recv_timeout(Duration::from_secs(30));
    }
}

#[test]
fn a_dependency_still_constructing_is_not_passed_over() {
    let base = common::compile_c(
        "#include \"llext.h\"\n\
         extern void host_hold(void);\n\
         static long state;\n\
         __attribute__((constructor)) static void base_init(void) { host_hold(); state = 1; }\n\
         long base_state(void) { return state; }\n\
         LLEXT_EXPORT(base_state);\n",
        &["-O2", "-fPIC"],
    );
    let user = common::compile_c(
        "extern long base_state(void);\n\
         static long seen = -1;\n\
         __attribute__((constructor)) static void user_init(void) { seen = base_state(); }\n\
         long user_seen(void) { return seen; }\n",
        &["-O2", "-fPIC"],
    );
    let mut table: Vec<Export> = llext::LIBC_EXPORTS.to_vec();
    table.push(Export::new("host_hold", host_hold as *const ()));
    let r = Arc::new(Registry::new(HostMemory::new(), ExportTable::new(&table)));
    let linked_only = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let base_id = r.load_with("base", &base, &linked_only).unwrap();
    let user_id = r.load_with("user", &user, &linked_only).unwrap();

    let (running_tx, running) = channel();
    let (go_on, go_on_rx) = channel();
    *HOLD.lock().unwrap() = Some((running_tx, go_on_rx));
    let other = {
        let r = r.clone();
        std::thread::spawn(move || r.bring_up(base_id))
    };
    running
        .recv_timeout(Duration::from_secs(30))
        .expect("base's constructor runs");
    // base's constructor has not returned: bringing up what depends on it must not run user's
    // constructor now (it reads base's state). Busy, or waiting, would do; Ok having run it does not.
    let outcome = r.bring_up(user_id);
    go_on.send(()).unwrap();
    assert_eq!(other.join().unwrap(), Ok(1));
    // SAFETY: `long user_seen(void)`.
    let seen = unsafe { r.call("user_seen", &[]) }.unwrap();
    match outcome {
        Err(Error::Busy { .. }) => assert_eq!(seen, -1, "refused, and user's constructor did not run"),
        other => panic!(
            "bring_up(user) while base's constructors ran: {other:?}; user's constructor saw base_state() = {seen} (1 once base's constructor returned)"
        ),
    }
    // Once base is up, user comes up, and sees it.
    assert_eq!(r.bring_up(user_id), Ok(1));
    // SAFETY: as above.
    assert_eq!(unsafe { r.call("user_seen", &[]) }, Ok(1));
}

/// `host_hold`, for the load test (the tests run in parallel).
static HOLD2: Mutex<Option<(Sender<()>, Receiver<()>)>> = Mutex::new(None);

extern "C" fn host_hold2() {
    let hold = HOLD2.lock().unwrap().take();
    if let Some((running, go_on)) = hold {
        let _ = running.send(());
        let _ = go_on.recv_timeout(Duration::from_secs(30));
    }
}

/// Review of 910752b: a load with `bring_up: true` of an extension whose dependency's constructors run in
/// another thread ran its own constructors at once, before the dependency's had returned (it read the
/// dependency's state half made), as `bring_up` no longer does.
#[test]
fn a_load_does_not_run_constructors_before_a_dependency_still_constructing() {
    let base = common::compile_c(
        "#include \"llext.h\"\n\
         extern void host_hold2(void);\n\
         static long state;\n\
         __attribute__((constructor)) static void base_init(void) { host_hold2(); state = 1; }\n\
         long base_state2(void) { return state; }\n\
         LLEXT_EXPORT(base_state2);\n",
        &["-O2", "-fPIC"],
    );
    let user = common::compile_c(
        "extern long base_state2(void);\n\
         static long seen = -1;\n\
         __attribute__((constructor)) static void user_init(void) { seen = base_state2(); }\n\
         long user_seen2(void) { return seen; }\n",
        &["-O2", "-fPIC"],
    );
    let mut table: Vec<Export> = llext::LIBC_EXPORTS.to_vec();
    table.push(Export::new("host_hold2", host_hold2 as *const ()));
    let r = Arc::new(Registry::new(HostMemory::new(), ExportTable::new(&table)));
    let linked_only = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let base_id = r.load_with("base", &base, &linked_only).unwrap();

    let (running_tx, running) = channel();
    let (go_on, go_on_rx) = channel();
    *HOLD2.lock().unwrap() = Some((running_tx, go_on_rx));
    let other = {
        let r = r.clone();
        std::thread::spawn(move || r.bring_up(base_id))
    };
    running
        .recv_timeout(Duration::from_secs(30))
        .expect("base's constructor runs");
    // base's constructor has not returned: loading what depends on it must not run user's constructor now.
    let outcome = r.load("user", &user);
    // SAFETY: `long user_seen2(void)`.
    let seen_meanwhile = unsafe { r.call("user_seen2", &[]) };
    go_on.send(()).unwrap();
    assert_eq!(other.join().unwrap(), Ok(1));
    match (outcome, seen_meanwhile) {
        (Err(Error::Busy { .. }), _) => {}
        (Ok(_), Ok(-1)) => {}
        (outcome, seen) => panic!(
            "load(user) while base's constructors ran: {outcome:?}; user's constructor saw base_state2() = {seen:?} (0: base's constructor had not returned)"
        ),
    }
}
