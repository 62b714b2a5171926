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
    println!("cargo::rustc-check-cfg=cfg(llext_riscv_float_abi, values(\"soft\", \"single\", \"double\"))");
    println!("cargo::rustc-check-cfg=cfg(llext_arm_mclass)");
    let target = std::env::var("TARGET").unwrap_or_default();
    if let Some(isa) = native_isa(&target) {
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

/// The target's instruction set as an `-march`-like key, for RISC-V and Cortex-M targets.
fn native_isa(target: &str) -> Option<String> {
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let features: Vec<&str> = features.split(',').filter(|f| !f.is_empty()).collect();
    let has = |f: &str| features.contains(&f);
    let arch = target.split('-').next().unwrap_or("");
    if let Some(letters) = arch
        .strip_prefix("riscv32")
        .map(|l| ("rv32", l))
        .or_else(|| arch.strip_prefix("riscv64").map(|l| ("rv64", l)))
    {
        let mut key = format!("{}{}", letters.0, letters.1);
        if !key.contains(['i', 'e', 'g']) {
            return None;
        }
        for f in &features {
            // Single-letter and Z extensions (others, such as `relax`, are not extensions).
            let extension = f.len() == 1 || f.starts_with('z');
            if extension
                && f.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                key.push('_');
                key.push_str(f);
            }
        }
        return Some(key);
    }
    let base = match arch {
        a if a.starts_with("thumbv6m") => "armv6-m",
        a if a.starts_with("thumbv7m") => "armv7-m",
        a if a.starts_with("thumbv7em") => "armv7e-m",
        a if a.starts_with("thumbv8m.base") => "armv8-m.base",
        a if a.starts_with("thumbv8m.main") && has("v8.1m.main") => "armv8.1-m.main",
        a if a.starts_with("thumbv8m.main") => "armv8-m.main",
        _ => return None,
    };
    let mut key = String::from(base);
    for (feature, option) in [
        ("dsp", "+dsp"),
        ("fpregs", "+fp"),
        ("fp64", "+fp.dp"),
        ("mve", "+mve"),
        ("mve.fp", "+mve.fp"),
    ] {
        if has(feature) {
            key.push_str(option);
        }
    }
    Some(key)
}
