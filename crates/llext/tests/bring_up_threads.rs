//! `Registry::bring_up` and loads from two threads: a dependency's constructors run outside the lock, and
//! what depends on it must not be brought up before they have returned.

mod common;

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use llext::{Error, Export, ExportTable, HostMemory, LoadOptions, Registry};

/// Where a test's `host_hold` finds its channels (one per test: the tests run in parallel).
type Hold = Mutex<Option<(Sender<()>, Receiver<()>)>>;

/// Tells the test the constructor calling it runs, then waits until the test says go on.
fn hold(slot: &Hold) {
    let hold = slot.lock().unwrap().take();
    if let Some((running, go_on)) = hold {
        let _ = running.send(());
        let _ = go_on.recv_timeout(Duration::from_secs(30));
    }
}

static HOLD: Hold = Mutex::new(None);
static HOLD2: Hold = Mutex::new(None);

extern "C" fn host_hold() {
    hold(&HOLD);
}

extern "C" fn host_hold2() {
    hold(&HOLD2);
}

/// `base` (whose constructor calls the host function `hold_name` and then sets its state) loaded without
/// running it, another thread bringing it up and held inside that constructor, and `user`'s object (whose
/// constructor reads base's state into `user_seen<suffix>`), built but not loaded.
struct Held {
    r: Arc<Registry<HostMemory>>,
    user: Vec<u8>,
    go_on: Sender<()>,
    other: JoinHandle<llext::Result<usize>>,
}

fn base_held(
    slot: &'static Hold,
    hold_name: &'static str,
    host: extern "C" fn(),
    suffix: &str,
) -> Held {
    let base = common::compile_c(
        &format!(
            "#include \"llext.h\"\n\
             extern void {hold_name}(void);\n\
             static long state;\n\
             __attribute__((constructor)) static void base_init(void) {{ {hold_name}(); state = 1; }}\n\
             long base_state{suffix}(void) {{ return state; }}\n\
             LLEXT_EXPORT(base_state{suffix});\n"
        ),
        &["-O2", "-fPIC"],
    );
    let user = common::compile_c(
        &format!(
            "extern long base_state{suffix}(void);\n\
             static long seen = -1;\n\
             __attribute__((constructor)) static void user_init(void) {{ seen = base_state{suffix}(); }}\n\
             long user_seen{suffix}(void) {{ return seen; }}\n"
        ),
        &["-O2", "-fPIC"],
    );
    let mut table: Vec<Export> = llext::LIBC_EXPORTS.to_vec();
    table.push(Export::new(hold_name, host as *const ()));
    let r = Arc::new(Registry::new(HostMemory::new(), ExportTable::new(&table)));
    let linked_only = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let base_id = r.load_with("base", &base, &linked_only).unwrap();

    let (running_tx, running) = channel();
    let (go_on, go_on_rx) = channel();
    *slot.lock().unwrap() = Some((running_tx, go_on_rx));
    let other = {
        let r = r.clone();
        std::thread::spawn(move || r.bring_up(base_id))
    };
    running
        .recv_timeout(Duration::from_secs(30))
        .expect("base's constructor runs");
    Held {
        r,
        user,
        go_on,
        other,
    }
}

#[test]
fn a_dependency_still_constructing_is_not_passed_over() {
    let Held {
        r,
        user,
        go_on,
        other,
    } = base_held(&HOLD, "host_hold", host_hold, "");
    let linked_only = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let user_id = r.load_with("user", &user, &linked_only).unwrap();
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

/// Review of 910752b: a load with `bring_up: true` of an extension whose dependency's constructors run in
/// another thread ran its own constructors at once, before the dependency's had returned (it read the
/// dependency's state half made), as `bring_up` no longer does.
#[test]
fn a_load_does_not_run_constructors_before_a_dependency_still_constructing() {
    let Held {
        r,
        user,
        go_on,
        other,
    } = base_held(&HOLD2, "host_hold2", host_hold2, "2");
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
