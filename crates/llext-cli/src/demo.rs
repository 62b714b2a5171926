//! `llext demo`: loads the sample extensions bundled with the command and narrates each step.

use std::time::Instant;

use crate::{flush_all, host_registry, Failure};

fn micros(start: Instant) -> String {
    format!("{:.1} µs", start.elapsed().as_secs_f64() * 1e6)
}

pub(crate) fn demo(args: &[String]) -> Result<(), Failure> {
    if let Some(a) = args.first() {
        return Err(Failure(format!("demo takes no arguments (got `{a}`)")));
    }
    let registry = host_registry();
    println!(
        "llext demo: {} sample extensions built from C (gcc -O2 -fPIC) and Rust\n",
        llext_fixtures::DEMO.len()
    );

    println!(
        "1. load each extension: parse, lay out, allocate, relocate, seal (W^X), run constructors"
    );
    for (name, bytes) in llext_fixtures::DEMO {
        flush_all();
        let start = Instant::now();
        let id = registry
            .load(name, bytes)
            .map_err(|e| Failure(format!("{name}: {e}")))?;
        let took = micros(start);
        flush_all();
        let info = registry.info(id)?;
        let exported: Vec<&str> = info
            .symbols
            .iter()
            .filter(|s| s.exported)
            .map(|s| s.name.as_str())
            .collect();
        println!(
            "   {name:<11} {:>5} bytes, {} regions, exports [{}]{} — {took}",
            info.memory,
            info.regions.len(),
            exported.join(", "),
            if info.dependencies.is_empty() {
                String::new()
            } else {
                format!(", depends on {}", info.dependencies.join(", "))
            },
        );
    }

    println!("\n2. call into the extensions (they call the host's printf/strlen and each other)");
    let call = |symbol: &str, args: &[i64], note: &str| -> Result<i64, Failure> {
        flush_all();
        let start = Instant::now();
        // SAFETY: every symbol called here is a C (or `extern "C"` Rust) function of the bundled samples taking
        // integer or pointer arguments, as documented in their sources.
        let value = unsafe { registry.call(symbol, args) }?;
        let took = micros(start);
        flush_all();
        println!(
            "   {symbol}({}) = {value}   {note} — {took}",
            args.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(value)
    };
    call("lm_mul", &[6, 7], "libmath, exported through .exported_sym")?;
    call(
        "use_math",
        &[5],
        "usemath calls libmath's lm_mul and changes its lm_scale",
    )?;
    call("lm_scaled", &[5], "libmath sees the change made by usemath")?;
    call(
        "ctors_state",
        &[],
        "set by two constructors, run in priority order",
    )?;
    call("rs_fib", &[50], "Rust extension")?;
    call("rs_hello", &[], "Rust calling the host's puts")?;
    let who = std::ffi::CString::new("llext").map_err(|e| Failure(e.to_string()))?;
    call(
        "greet",
        &[who.as_ptr() as i64],
        "C extension calling the host's printf",
    )?;

    println!("\n3. the registry keeps extensions consistent");
    let again = registry
        .load("libmath", &[])
        .map_err(|e| Failure(e.to_string()))?;
    println!(
        "   loading libmath again returns the loaded one: use count {}",
        registry.info(again)?.use_count
    );
    registry.unload(again)?;
    match registry.unload_name("libmath") {
        Err(e) => println!("   unload libmath refused: {e}"),
        Ok(_) => {
            return Err(Failure(
                "libmath was unloaded while usemath depended on it".into(),
            ))
        }
    }
    for info in registry.extensions() {
        let regions: Vec<String> = info
            .regions
            .iter()
            .map(|r| {
                format!(
                    "{} {}@{:#x} {}",
                    r.kind.as_str(),
                    r.size,
                    r.addr,
                    r.permission.as_str()
                )
            })
            .collect();
        println!("   {:<11} {}", info.name, regions.join(", "));
    }

    println!("\n4. unload everything, newest first (destructors run)");
    for info in registry.extensions().iter().rev() {
        flush_all();
        let start = Instant::now();
        registry.unload(info.id)?;
        let took = micros(start);
        flush_all();
        println!("   unloaded {:<11} — {took}", info.name);
    }
    println!(
        "\n{} extensions loaded now; every byte was returned to the page pool.",
        registry.len()
    );
    Ok(())
}
