//! The hint of `Error::Undefined` (`defined_by`): an extension that defines the symbol without
//! exporting it. One on its way out (its destructors run) is not offered: it may well export the
//! symbol, and nothing can link against it any more.

mod common;

use std::sync::{Arc, Mutex};

use llext::{Error, Export, ExportTable, HostMemory, Registry, Unloaded};

type Reg = Registry<HostMemory>;

/// The registry, the object to load from inside the destructor, and what that load returned.
struct World {
    registry: Option<Arc<Reg>>,
    app: Option<Vec<u8>>,
    outcome: Option<Result<(), Error>>,
}

static WORLD: Mutex<World> = Mutex::new(World {
    registry: None,
    app: None,
    outcome: None,
});

/// Called by `lib`'s destructor: loads `app`, which imports what `lib` exports.
extern "C" fn host_in_fini() {
    let (registry, app) = {
        let w = WORLD.lock().unwrap();
        (w.registry.clone(), w.app.clone())
    };
    if let (Some(r), Some(app)) = (registry, app) {
        let outcome = r.load("app", &app).map(|_| ());
        WORLD.lock().unwrap().outcome = Some(outcome);
    }
}

#[test]
fn an_extension_whose_destructors_run_is_not_named_as_defining_without_exporting() {
    let lib = common::compile_c(
        "#include \"llext.h\"\n\
         extern void host_in_fini(void);\n\
         int bump(int by) { return by + 1; }\n\
         LLEXT_EXPORT(bump);\n\
         __attribute__((destructor)) static void lib_fini(void) { host_in_fini(); }\n",
        &["-O2", "-fPIC"],
    );
    let app = common::compile_c(
        "extern int bump(int); int run(int n) { return bump(n); }",
        &["-O2", "-fPIC"],
    );
    let mut table: Vec<Export> = llext::LIBC_EXPORTS.to_vec();
    table.push(Export::new("host_in_fini", host_in_fini as *const ()));
    let r = Arc::new(Registry::new(HostMemory::new(), ExportTable::new(&table)));
    // `lib` exports `bump`: `app` links against it.
    let id = r.load("lib", &lib).unwrap();
    let a = r.load("app", &app).unwrap();
    assert_eq!(r.unload(a), Ok(Unloaded::Freed));
    *WORLD.lock().unwrap() = World {
        registry: Some(r.clone()),
        app: Some(app),
        outcome: None,
    };
    assert_eq!(r.unload(id), Ok(Unloaded::Freed));
    let outcome = WORLD
        .lock()
        .unwrap()
        .outcome
        .take()
        .expect("the destructor ran");
    WORLD.lock().unwrap().registry = None;
    match outcome {
        Err(Error::Undefined {
            symbol, defined_by, ..
        }) => {
            assert_eq!(symbol, "bump");
            assert_eq!(
                defined_by, None,
                "told to mark with LLEXT_EXPORT a symbol `lib` exports (it is being unloaded)"
            );
        }
        other => panic!("{other:?}"),
    }
}
