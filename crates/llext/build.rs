//! Tells the crate which floating-point calling convention a RISC-V target's code follows, and whether an
//! Arm target is a Cortex-M (M-profile: Thumb code only).
//!
//! Rust does not say it in a stable `cfg` (`target_feature = "d"` is unstable on RISC-V, so stable
//! compilers leave it out), so it comes from the target's name: the `gc` targets pass floats in double
//! registers (`lp64d`, `ilp32d`), the `imaf` ones in single registers (`ilp32f`), the others in integer
//! registers. A custom target gets none: its firmware states its own (`Registry::set_float_abi`).
//!
//! It also names the target's instruction set as an `-march`-like key in `LLEXT_NATIVE_ISA` (read by
//! `arch::Isa::native`): on RISC-V the letters of the target's name plus every target feature the compiler
//! enables (`-C target-feature`, `-C target-cpu`); on Cortex-M the architecture of the target's name plus
//! its DSP, FPU and MVE features.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=native_isa.rs");
    println!("cargo::rustc-check-cfg=cfg(llext_riscv_float_abi, values(\"soft\", \"single\", \"double\"))");
    println!("cargo::rustc-check-cfg=cfg(llext_arm_mclass)");
    let target = std::env::var("TARGET").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if let Some(isa) = native_isa(
        &target,
        &features,
        target_cpu(&flags),
        &disabled_features(&flags),
    ) {
        println!("cargo::rustc-env=LLEXT_NATIVE_ISA={isa}");
    }
    // Cortex-M cores run Thumb code only.
    if ["thumbv6m", "thumbv7m", "thumbv7em", "thumbv8m"]
        .iter()
        .any(|m| target.starts_with(m))
    {
        println!("cargo::rustc-cfg=llext_arm_mclass");
    }
    let arch = target.split('-').next().unwrap_or("");
    let abi = match arch
        .strip_prefix("riscv32")
        .or_else(|| arch.strip_prefix("riscv64"))
    {
        None => return,
        Some(ext) if ext.starts_with('g') || ext.contains('d') => "double",
        Some(ext) if ext.contains('f') => "single",
        Some(ext) if ext.starts_with('i') || ext.starts_with('e') => "soft",
        Some(_) => return,
    };
    println!("cargo::rustc-cfg=llext_riscv_float_abi=\"{abi}\"");
}

include!("native_isa.rs");
