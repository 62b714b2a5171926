//! Bugs found in review and not fixed here: each test shows one and is ignored until it is fixed
//! (`cargo test -p llext --test open_findings -- --ignored` runs them).

mod common;

use common::{call, registry};
use llext::LoadOptions;

/// A load with `bring_up: true` runs the new extension's constructors, but not those of a dependency
/// that was loaded or restored without running them: they run after the dependent's (when `bring_up`
/// is called for it), or never. `bring_up` itself runs dependencies first.
#[test]
#[ignore = "open: load(bring_up: true) does not bring up its dependencies first"]
fn a_load_brings_up_a_dependency_not_brought_up_first() {
    let base = common::compile_c(
        "#include \"llext.h\"\n\
         static long state;\n\
         __attribute__((constructor)) static void base_init(void) { state = 1; }\n\
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
    let r = registry();
    let linked_only = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    r.load_with("base", &base, &linked_only).unwrap();
    r.load("user", &user).unwrap();
    assert_eq!(
        call(&r, "user_seen", &[]),
        1,
        "user's constructor ran before base's (base_state() was 0)"
    );
}
