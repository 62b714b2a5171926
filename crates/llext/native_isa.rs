// The target's instruction set, for the build script (`build.rs` includes this file) and its tests
// (`tests/native_isa.rs` does too).

/// The target's instruction set as an `-march`-like key, for RISC-V and Cortex-M targets.
fn native_isa(target: &str, features: &str) -> Option<String> {
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
    // A hard-float target passes floats in FPU registers, so its core has an FPU, whatever the features
    // say: a stable compiler hides every Arm target feature (they are unstable), leaving none.
    if target.ends_with("eabihf") && !has("fpregs") {
        key.push_str("+fp");
    }
    Some(key)
}
