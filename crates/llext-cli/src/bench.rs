//! `llext bench [load|restore] [--iterations N]`: how long loading, unloading and restoring take, measured
//! in this process.
//!
//! Loading here means parsing, laying out, allocating, linking and sealing, without running constructors
//! (`bring_up: false`), so no extension code runs and nothing is printed between the measurements. Each
//! measurement is repeated after a warm-up and the median is printed; nothing is compared with a threshold.

use std::hint::black_box;
use std::time::Instant;

use llext::{Context, ExtId, LoadOptions, RestoreOptions, SaveOptions};
use llext_fixtures::Variant;

use crate::{host_registry, Failure, Registry0};

/// Repetitions of each measurement when `--iterations` is not given.
const DEFAULT_ITERATIONS: usize = 1000;

/// The most repetitions `--iterations` takes: every sample is kept (8 bytes each) to take the median, and
/// at about 10 µs a round this is already more than a day of measuring.
const MAX_ITERATIONS: usize = 10_000_000;

/// The single object is the bundled fixture whose file size is nearest to this.
const TARGET_BYTES: u64 = 3 * 1024;

/// The build the single object is taken from: what `cc -c -O2 -fPIC` makes of a C file.
const VARIANT: Variant = Variant {
    compiler: "gcc",
    opt: "O2",
    pic: true,
};

pub(crate) fn bench(args: &[String]) -> Result<(), Failure> {
    let mut iterations = None;
    let mut mode = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "load" | "restore" => {
                if mode.replace(a.as_str()).is_some() {
                    return Err(Failure("bench measures `load` or `restore`, not both".into()));
                }
            }
            "--iterations" => {
                let text = it
                    .next()
                    .ok_or(Failure("--iterations needs a count".into()))?;
                if iterations.is_some() {
                    return Err(Failure("--iterations is given twice".into()));
                }
                iterations = Some(match text.parse::<usize>() {
                    Ok(n) if (1..=MAX_ITERATIONS).contains(&n) => n,
                    _ => {
                        return Err(Failure(format!(
                            "`{text}` is not an iteration count from 1 to {MAX_ITERATIONS}"
                        )))
                    }
                });
            }
            other => {
                return Err(Failure(format!(
                    "unknown bench argument `{other}` (usage: llext bench [load|restore] [--iterations N])"
                )))
            }
        }
    }

    let iterations = iterations.unwrap_or(DEFAULT_ITERATIONS);
    if mode == Some("restore") {
        return bench_restore(iterations);
    }
    let registry = host_registry();
    let options = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let (file_name, object) = pick_object(&registry, &options)?;
    let warm_up = iterations.min(100);

    let mut load = Vec::with_capacity(iterations);
    let mut unload = Vec::with_capacity(iterations);
    for round in 0..warm_up + iterations {
        let start = Instant::now();
        let id = registry.load_with("bench", black_box(&object), &options)?;
        let loaded = Instant::now();
        registry.unload(black_box(id))?;
        let unloaded = Instant::now();
        if round >= warm_up {
            load.push(nanos(start, loaded));
            unload.push(nanos(loaded, unloaded));
        }
    }

    let mut demo_set = Vec::with_capacity(iterations);
    let mut ids: Vec<ExtId> = Vec::with_capacity(llext_fixtures::DEMO.len());
    for round in 0..warm_up + iterations {
        let start = Instant::now();
        for (name, bytes) in llext_fixtures::DEMO {
            let id = registry
                .load_with(name, black_box(bytes), &options)
                .map_err(|e| Failure(format!("{name}: {e}")))?;
            ids.push(id);
        }
        let loaded = Instant::now();
        // Newest first: later demo objects depend on earlier ones.
        for id in ids.drain(..).rev() {
            registry.unload(id)?;
        }
        if round >= warm_up {
            demo_set.push(nanos(start, loaded));
        }
    }

    println!("object: {file_name}");
    println!("object_bytes: {}", object.len());
    println!("load_ns: {}", median(&mut load));
    println!("unload_ns: {}", median(&mut unload));
    println!("load_demo_set_ns: {}", median(&mut demo_set));
    println!("iterations: {iterations}");
    Ok(())
}

/// The `VARIANT` fixture whose file size is nearest to `TARGET_BYTES`, among those that load on their own
/// (some need another fixture loaded first, one is meant to fail): its file name and bytes.
fn pick_object(registry: &Registry0, options: &LoadOptions) -> Result<(String, Vec<u8>), Failure> {
    let mut best: Option<(u64, String, Vec<u8>)> = None;
    for stem in llext_fixtures::stems() {
        let file_name = VARIANT.file_name(stem);
        let path = llext_fixtures::path(&file_name);
        let bytes =
            std::fs::read(&path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        let distance = (bytes.len() as u64).abs_diff(TARGET_BYTES);
        if best.as_ref().is_some_and(|(d, _, _)| *d <= distance) {
            continue;
        }
        let Ok(id) = registry.load_with("bench-probe", &bytes, options) else {
            continue;
        };
        registry.unload(id)?;
        best = Some((distance, file_name, bytes));
    }
    best.map(|(_, name, bytes)| (name, bytes))
        .ok_or(Failure(format!("no {VARIANT} fixture loads on its own")))
}

fn nanos(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}

/// The middle sample (the upper one of the two middles for an even count).
fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or(0)
}

/// Medians for one set of extensions: a full load, an in-place restore, a portable restore, and a plain
/// copy of the same number of bytes as the extensions' memory.
struct RestoreFigures {
    load: u64,
    in_place: u64,
    portable: u64,
    memcpy: u64,
    /// Sizes of the in-place and the portable context, and of the extensions' memory.
    in_place_bytes: usize,
    portable_bytes: usize,
    memory_bytes: usize,
}

fn bench_restore(iterations: usize) -> Result<(), Failure> {
    let chain = restore_set(llext_fixtures::CHAIN3, iterations)?;
    let set50 = restore_set(llext_fixtures::SET50, (iterations / 10).max(1))?;
    for (prefix, f) in [("", &chain), ("set50_", &set50)] {
        println!("{prefix}load_ns: {}", f.load);
        println!("{prefix}restore_inplace_ns: {}", f.in_place);
        println!("{prefix}restore_portable_ns: {}", f.portable);
        println!("{prefix}memcpy_ns: {}", f.memcpy);
        println!("{prefix}context_inplace_bytes: {}", f.in_place_bytes);
        println!("{prefix}context_portable_bytes: {}", f.portable_bytes);
        println!("{prefix}memory_bytes: {}", f.memory_bytes);
    }
    println!("extensions: {}", llext_fixtures::CHAIN3.len());
    println!("set50_extensions: {}", llext_fixtures::SET50.len());
    println!("iterations: {iterations}");
    Ok(())
}

fn restore_set(set: &[(&str, &[u8])], iterations: usize) -> Result<RestoreFigures, Failure> {
    let registry = host_registry();
    let options = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let warm_up = iterations.min(50);
    let load_all = |registry: &Registry0| -> Result<Vec<ExtId>, Failure> {
        set.iter()
            .map(|(name, bytes)| {
                registry
                    .load_with(name, black_box(bytes), &options)
                    .map_err(|e| Failure(format!("{name}: {e}")))
            })
            .collect()
    };
    let unload_all = |registry: &Registry0, ids: Vec<ExtId>| -> Result<(), Failure> {
        for id in ids.into_iter().rev() {
            registry.unload(id)?;
        }
        Ok(())
    };

    let mut load = Vec::with_capacity(iterations);
    for round in 0..warm_up + iterations {
        let start = Instant::now();
        let ids = load_all(&registry)?;
        let took = nanos(start, Instant::now());
        unload_all(&registry, ids)?;
        if round >= warm_up {
            load.push(took);
        }
    }

    // One loaded set, saved both ways.
    let ids = load_all(&registry)?;
    let memory: usize = ids
        .iter()
        .map(|&id| registry.info(id).map(|i| i.memory))
        .sum::<Result<usize, _>>()?;
    let in_place_bytes = registry.save(&SaveOptions::default())?;
    let portable_bytes = registry.save(&SaveOptions {
        portable: true,
        ..SaveOptions::default()
    })?;

    let mut in_place = Vec::with_capacity(iterations);
    for round in 0..warm_up + iterations {
        registry.forget_all()?;
        let start = Instant::now();
        let context = Context::from_bytes(black_box(&in_place_bytes))?;
        registry.restore(&context, &RestoreOptions::default())?;
        let took = nanos(start, Instant::now());
        if round >= warm_up {
            in_place.push(took);
        }
    }
    let held = registry.extensions().into_iter().map(|i| i.id).collect();

    let target = host_registry();
    let mut portable = Vec::with_capacity(iterations);
    for round in 0..warm_up + iterations {
        let start = Instant::now();
        let context = Context::from_bytes(black_box(&portable_bytes))?;
        let restored = target.restore(&context, &RestoreOptions::default())?;
        let took = nanos(start, Instant::now());
        unload_all(&target, restored)?;
        if round >= warm_up {
            portable.push(took);
        }
    }
    unload_all(&registry, held)?;

    let source = vec![0x5au8; memory];
    let mut destination = vec![0u8; memory];
    let mut memcpy = Vec::with_capacity(iterations);
    for round in 0..warm_up + iterations {
        let start = Instant::now();
        destination.copy_from_slice(black_box(&source));
        black_box(&mut destination);
        let took = nanos(start, Instant::now());
        if round >= warm_up {
            memcpy.push(took);
        }
    }

    Ok(RestoreFigures {
        load: median(&mut load),
        in_place: median(&mut in_place),
        portable: median(&mut portable),
        memcpy: median(&mut memcpy),
        in_place_bytes: in_place_bytes.len(),
        portable_bytes: portable_bytes.len(),
        memory_bytes: memory,
    })
}
