// The target's instruction set, for the build script (`build.rs` includes this file) and its tests
// (`tests/native_isa.rs` does too).

/// The values of the `-C` (`--codegen`) options in Cargo's encoded flags (`CARGO_ENCODED_RUSTFLAGS`:
/// flags separated by 0x1f), in order.
fn codegen_options(encoded_flags: &str) -> Vec<&str> {
    let mut flags = encoded_flags.split('\x1f');
    let mut values = Vec::new();
    while let Some(flag) = flags.next() {
        let value = match flag {
            "-C" | "--codegen" => flags.next().unwrap_or(""),
            f => f
                .strip_prefix("-C")
                .or_else(|| f.strip_prefix("--codegen="))
                .unwrap_or(""),
        };
        values.push(value);
    }
    values
}

/// The `-C target-cpu` of Cargo's encoded flags, if given.
fn target_cpu(encoded_flags: &str) -> Option<&str> {
    // The last one wins, as for rustc.
    codegen_options(encoded_flags)
        .into_iter()
        .rev()
        .find_map(|v| v.strip_prefix("target-cpu="))
}

/// The target features `-C target-feature` turns off (`fp64` of `-C target-feature=+dsp,-fp64`), which
/// a core named by `-C target-cpu` then lacks (a Cortex-M7 with a single-precision FPU is built with
/// `-C target-cpu=cortex-m7 -C target-feature=-fp64`).
fn disabled_features(encoded_flags: &str) -> Vec<&str> {
    let mut off: Vec<&str> = Vec::new();
    for list in codegen_options(encoded_flags)
        .into_iter()
        .filter_map(|v| v.strip_prefix("target-feature="))
    {
        for f in list.split(',') {
            if let Some(name) = f.strip_prefix('-') {
                off.push(name);
            } else if let Some(name) = f.strip_prefix('+') {
                off.retain(|n| *n != name);
            }
        }
    }
    off
}

/// A Cortex-M key (`cortex_m_isa`) without what `off` (`disabled_features`) turns off.
fn cortex_m_without(key: &str, off: &[&str]) -> String {
    let off = |f: &str| off.contains(&f);
    let mut parts = key.split('+');
    let mut base = parts.next().unwrap_or("");
    let mut options: Vec<&str> = parts.collect();
    if off("fpregs") || off("vfp2") || off("vfp2sp") {
        options.retain(|o| !o.starts_with("fp") && *o != "mve.fp");
    }
    if off("mve") {
        options.retain(|o| !o.starts_with("mve"));
    } else if off("mve.fp") {
        for o in options.iter_mut().filter(|o| **o == "mve.fp") {
            *o = "mve";
        }
    }
    if off("fp64") {
        // Armv8-M's single-precision FPU is FPv5 (`+fp`); Armv7E-M's (a Cortex-M7's) is `+fpv5`.
        let single = if base == "armv7e-m" { "fpv5" } else { "fp" };
        for o in options.iter_mut().filter(|o| **o == "fp.dp") {
            *o = single;
        }
    }
    if off("dsp") {
        options.retain(|o| *o != "dsp");
        if base == "armv7e-m" {
            base = "armv7-m";
        }
    }
    let mut s = String::from(base);
    for o in options {
        s.push('+');
        s.push_str(o);
    }
    s
}

/// A Cortex-M core's instruction set by its name (`-C target-cpu`), hard-float or not: what the target
/// features of a stable compiler cannot say (they are unstable), and what rustc never lists (`fp64`,
/// `mve`, Armv8.1-M).
fn cortex_m_isa(cpu: &str, hard_float: bool) -> Option<&'static str> {
    Some(match (cpu, hard_float) {
        ("cortex-m0" | "cortex-m0plus" | "cortex-m1", _) => "armv6-m",
        ("cortex-m3", _) => "armv7-m",
        ("cortex-m4", false) | ("cortex-m7", false) => "armv7e-m",
        ("cortex-m4", true) => "armv7e-m+fp",
        // LLVM's Cortex-M7 has the double-precision FPv5 FPU.
        ("cortex-m7", true) => "armv7e-m+fp.dp",
        ("cortex-m23", _) => "armv8-m.base",
        ("cortex-m33" | "cortex-m35p", false) => "armv8-m.main+dsp",
        ("cortex-m33" | "cortex-m35p", true) => "armv8-m.main+dsp+fp",
        ("cortex-m55" | "cortex-m85", false) => "armv8.1-m.main+dsp+mve",
        ("cortex-m55" | "cortex-m85", true) => "armv8.1-m.main+dsp+fp.dp+mve.fp",
        _ => return None,
    })
}

/// The target's instruction set as an `-march`-like key, for RISC-V and Cortex-M targets, from the
/// target's name, its features (`CARGO_CFG_TARGET_FEATURE`) and, for a Cortex-M, `-C target-cpu`.
fn native_isa(target: &str, features: &str, cpu: Option<&str>, off: &[&str]) -> Option<String> {
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
            // Single-letter, Z and vendor X extensions (others, such as `relax`, are not extensions).
            let extension = f.len() == 1 || f.starts_with('z') || f.starts_with('x');
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
    let hard_float = target.ends_with("eabihf");
    if arch.starts_with("thumbv") {
        if let Some(key) = cpu.and_then(|c| cortex_m_isa(c, hard_float)) {
            return Some(cortex_m_without(key, off));
        }
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
    // A hard-float target passes floats in FPU registers, so its core has an FPU, whatever the features
    // say: a stable compiler hides every Arm target feature (they are unstable), leaving none.
    if hard_float && !has("fpregs") {
        key.push_str("+fp");
    }
    Some(key)
}
