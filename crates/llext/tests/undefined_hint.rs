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

/// The hint after an undefined symbol of Rust's libraries, by its name (a user trial's Rust extensions:
/// `core::str::from_utf8` was given the advice for panics, which its object already followed; `alloc`'s
/// and unwinding's symbols got none).
#[test]
fn rust_library_symbols_are_named_with_what_to_do() {
    let hint = |symbol: &str| {
        Error::Undefined {
            extension: "ext".into(),
            symbol: symbol.into(),
            defined_by: None,
        }
        .to_string()
    };
    let panics = "build the extension with opt-level 1 or more, without debug assertions and overflow checks";
    // Panics and formatting, v0 and legacy: the build advice, and the function's path.
    for (symbol, path) in [
        (
            "_RNvNtCsgEmfK2I1SDS_4core9panicking18panic_bounds_check",
            "core::panicking::panic_bounds_check",
        ),
        (
            "_RNvNtNtCsgEmfK2I1SDS_4core5slice5index16slice_index_fail",
            "core::slice::index::slice_index_fail",
        ),
        (
            "_RNvNtCsgEmfK2I1SDS_4core6option13expect_failed",
            "core::option::expect_failed",
        ),
        ("_ZN4core3fmt5write17h0123456789abcdefE", "core::fmt::write"),
    ] {
        let e = hint(symbol);
        assert!(e.contains(panics), "{e}");
        assert!(e.contains(&format!("format: `{path}` is one)")), "{e}");
    }
    // A name the hint cannot spell (a generic impl) still gets the advice.
    let e = hint("_RINvNtCsgEmfK2I1SDS_4core3ptr13drop_in_placeNtCs1_3ext1TEB4_");
    assert!(e.contains(panics) && e.ends_with("panic or format)"), "{e}");
    // Another function of `core`: no build advice, which it already follows.
    let e = hint("_RNvNtNtCsgEmfK2I1SDS_4core3str8converts9from_utf8");
    assert!(!e.contains("opt-level 1"), "{e}");
    assert!(
        e.contains("`core::str::converts::from_utf8` is one of its functions")
            && e.contains("write the extension without it"),
        "{e}"
    );
    // `alloc`, its allocator shims, unwinding.
    for symbol in [
        "_RNvNtCslNYArtu3iFV_5alloc7raw_vec12handle_error",
        "_RNvCsfLfy6EI15iL_7___rustc35___rust_no_alloc_shim_is_unstable_v2",
        "_RNvCsfLfy6EI15iL_7___rustc12___rust_alloc",
        "__rust_alloc",
    ] {
        let e = hint(symbol);
        assert!(
            e.contains("an extension cannot use `alloc`") && e.contains("`malloc`"),
            "{e}"
        );
    }
    for symbol in ["rust_eh_personality", "_Unwind_Resume"] {
        assert!(
            hint(symbol).contains("`-C panic=abort`"),
            "{}",
            hint(symbol)
        );
    }
    // Other symbols, of the program or a crate of the extension's own: nothing.
    for symbol in [
        "host_log",
        "_RNvCs1_5store4bump",
        "_ZN5store4bump17h0123456789abcdefE",
        // C++ in namespaces named `core` and `alloc` (no Rust hash component): not Rust's (review).
        "_ZN4core3fooEv",
        "_ZN5alloc4growEm",
    ] {
        assert_eq!(
            hint(symbol),
            format!("undefined symbol `{symbol}` in extension `ext`")
        );
    }
}

/// A trial of real C libraries met these as bare "undefined symbol" errors: bzip2's fatal path calls
/// `exit`, which `LIBC_EXPORTS` leaves out on purpose, and habitual build flags (`-fsanitize=undefined`,
/// `--coverage`, `-pg`) call runtimes no host offers. The error now says why and what to build without.
#[test]
fn process_ending_functions_and_instrumentation_runtimes_are_explained() {
    let cases: [(&str, &[&str], &str, &str); 4] = [
        (
            "#include <stdlib.h>\nlong run(long n) { if (n < 0) exit(3); atexit(0); return n; }",
            &["-O2"],
            "exit",
            "must not end its host",
        ),
        (
            "int v[4]; long run(long n) { return v[n] * (int)n; }",
            &["-O2", "-fsanitize=undefined"],
            "__ubsan_handle_",
            "build without `-fsanitize=...`",
        ),
        (
            "long run(long n) { return n > 3 ? n : -n; }",
            &["-O2", "--coverage"],
            "__gcov_",
            "build without `--coverage`",
        ),
        (
            "long run(long n) { return n + 1; }",
            &["-O2", "-pg"],
            "mcount",
            "build without `-pg`",
        ),
    ];
    for (source, flags, symbol, advice) in cases {
        let object = common::compile_c(source, flags);
        let error = common::registry()
            .load("instrumented", &object)
            .expect_err("an undefined runtime symbol");
        let problem = error
            .problems()
            .iter()
            .find(|p| matches!(p, Error::Undefined { symbol: s, .. } if s.starts_with(symbol)))
            .unwrap_or_else(|| panic!("{flags:?}: no undefined `{symbol}...` in {error}"));
        let text = problem.to_string();
        assert!(text.contains(advice), "{flags:?}: {text}");
        assert!(!text.contains("  "), "{flags:?}: a broken line in {text:?}");
    }
}
