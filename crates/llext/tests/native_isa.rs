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
            native_isa(target, features, None, &[]).as_deref(),
            Some(key),
            "{target} [{features}]"
        );
    }
    // The firmware's own hard-float objects (what README.md says to build them with) load on it.
    let core = Isa::from_key(&native_isa("thumbv7em-none-eabihf", "", None, &[]).unwrap()).unwrap();
    let m4f = Isa::from_key("armv7e-m+fp").unwrap();
    assert_eq!(core.missing(&m4f), None);
}

#[test]
fn riscv_targets_take_their_letters_from_the_name() {
    // Stable compilers hide `f` and `d` (unstable on RISC-V): the name has them.
    let stable = "a,c,m,zaamo,zalrsc,zca,zicsr,zifencei";
    let key = native_isa("riscv64gc-unknown-none-elf", stable, None, &[]).unwrap();
    assert_eq!(Isa::from_key(&key).unwrap().key(), "rv64imafdc");
    assert_eq!(
        native_isa("x86_64-unknown-linux-gnu", "sse2", None, &[]),
        None
    );
}

/// `-C target-cpu` names what the target's features cannot: a Cortex-M33's DSP on a stable compiler, a
/// Cortex-M7's double-precision FPU and a Cortex-M55's MVE on any (rustc lists neither `fp64` nor `mve`).
#[test]
fn a_cortex_m_target_cpu_names_its_core() {
    for (flags, cpu) in [
        ("-Ctarget-cpu=cortex-m33", Some("cortex-m33")),
        (
            "-C\x1ftarget-cpu=cortex-m7\x1f-Copt-level=s",
            Some("cortex-m7"),
        ),
        (
            "-Ctarget-cpu=cortex-m4\x1f-C\x1ftarget-cpu=cortex-m7",
            Some("cortex-m7"),
        ),
        ("-Copt-level=s", None),
        ("", None),
    ] {
        assert_eq!(target_cpu(flags), cpu, "{flags:?}");
    }
    for (target, cpu, key) in [
        (
            "thumbv8m.main-none-eabihf",
            "cortex-m33",
            "armv8-m.main+dsp+fp",
        ),
        ("thumbv7em-none-eabihf", "cortex-m7", "armv7e-m+fp.dp"),
        ("thumbv7em-none-eabi", "cortex-m7", "armv7e-m"),
        (
            "thumbv8m.main-none-eabihf",
            "cortex-m55",
            "armv8.1-m.main+dsp+fp.dp+mve.fp",
        ),
        ("thumbv6m-none-eabi", "cortex-m0plus", "armv6-m"),
        // A CPU the table does not know: the target's name and features decide.
        ("thumbv7em-none-eabihf", "generic", "armv7e-m+fp"),
    ] {
        let native = native_isa(target, "", Some(cpu), &[]).unwrap();
        assert_eq!(Isa::from_key(&native).unwrap().key(), key, "{target} {cpu}");
    }
    // gcc's -mcpu=cortex-m33 objects (DSP) load on a stable Cortex-M33 firmware.
    let m33 = Isa::from_key(
        &native_isa("thumbv8m.main-none-eabihf", "", Some("cortex-m33"), &[]).unwrap(),
    );
    let object = Isa::from_key("armv8-m.main+dsp+fp").unwrap();
    assert_eq!(m33.unwrap().missing(&object), None);
}

/// `-C target-feature=-fp64` beside `-C target-cpu=cortex-m7` (an STM32F746's single-precision FPv5) is a
/// core without double precision: objects that may use it are refused.
#[test]
fn features_turned_off_beside_a_target_cpu_are_not_claimed() {
    let flags = "-Ctarget-cpu=cortex-m7\x1f-Ctarget-feature=-fp64";
    let off = disabled_features(flags);
    assert_eq!(off, ["fp64"]);
    let native = native_isa("thumbv7em-none-eabihf", "", target_cpu(flags), &off).unwrap();
    let core = Isa::from_key(&native).unwrap();
    assert_eq!(core.key(), "armv7e-m+fpv5");
    let dp = Isa::from_key("armv7e-m+fp.dp").unwrap();
    assert_eq!(core.missing(&dp).as_deref(), Some("a double-precision FPU"));
    let native = native_isa(
        "thumbv8m.main-none-eabihf",
        "",
        Some("cortex-m55"),
        &["mve.fp", "fp64"],
    );
    assert_eq!(native.as_deref(), Some("armv8.1-m.main+dsp+fp+mve"));
    assert_eq!(
        disabled_features("-Ctarget-feature=-fp64,+fp64"),
        Vec::<&str>::new()
    );
}
