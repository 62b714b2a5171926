//! The build script's reading of the target (`native_isa.rs`, which it includes), as Cargo gives it:
//! `CARGO_CFG_TARGET_FEATURE` is what `rustc --print cfg` lists, and a stable compiler lists no Arm
//! feature at all (they are unstable).

include!("../native_isa.rs");

use llext::arch::Isa;

/// What `rustc --print cfg --target thumbv7em-none-eabihf` lists with `RUSTC_BOOTSTRAP=1`.
const NIGHTLY_V7EM_HF: &str = "dsp,fpregs,mclass,thumb-mode,thumb2,v5te,v6,v6k,v6t2,v7";

#[test]
fn a_hard_float_target_has_an_fpu_on_a_stable_compiler() {
    for (target, features, key) in [
        ("thumbv7em-none-eabihf", "", "armv7e-m+fp"),
        ("thumbv7em-none-eabihf", NIGHTLY_V7EM_HF, "armv7e-m+dsp+fp"),
        ("thumbv8m.main-none-eabihf", "", "armv8-m.main+fp"),
        ("thumbv7em-none-eabi", "", "armv7e-m"),
        ("thumbv6m-none-eabi", "", "armv6-m"),
    ] {
        assert_eq!(
            native_isa(target, features).as_deref(),
            Some(key),
            "{target} [{features}]"
        );
    }
    // The firmware's own hard-float objects (what README.md says to build them with) load on it.
    let core = Isa::from_key(&native_isa("thumbv7em-none-eabihf", "").unwrap()).unwrap();
    let m4f = Isa::from_key("armv7e-m+fp").unwrap();
    assert_eq!(core.missing(&m4f), None);
}

#[test]
fn riscv_targets_take_their_letters_from_the_name() {
    // Stable compilers hide `f` and `d` (unstable on RISC-V): the name has them.
    let stable = "a,c,m,zaamo,zalrsc,zca,zicsr,zifencei";
    let key = native_isa("riscv64gc-unknown-none-elf", stable).unwrap();
    assert_eq!(Isa::from_key(&key).unwrap().key(), "rv64imafdc");
    assert_eq!(native_isa("x86_64-unknown-linux-gnu", "sse2"), None);
}
