//! `llext bench [load] [--iterations N]`: how long loading and unloading take, measured in this process.
//!
//! Loading here means parsing, laying out, allocating, linking and sealing, without running constructors
//! (`bring_up: false`), so no extension code runs and nothing is printed between the measurements. Each
//! measurement is repeated after a warm-up and the median is printed; nothing is compared with a threshold.

use std::hint::black_box;
use std::time::Instant;

use llext::{ExtId, LoadOptions};
use llext_fixtures::Variant;

use crate::{host_registry, Failure, Registry0};

/// Repetitions of each measurement when `--iterations` is not given.
const DEFAULT_ITERATIONS: usize = 1000;

/// The single object is the bundled fixture whose file size is nearest to this.
const TARGET_BYTES: u64 = 3 * 1024;

/// The build the single object is taken from: what `cc -c -O2 -fPIC` makes of a C file.
const VARIANT: Variant = Variant {
    compiler: "gcc",
    opt: "O2",
    pic: true,
};

pub(crate) fn bench(args: &[String]) -> Result<(), Failure> {
    let mut iterations = DEFAULT_ITERATIONS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            // The only benchmark so far; the word is accepted so that others can be added beside it.
            "load" => {}
            "--iterations" => {
                let text = it
                    .next()
                    .ok_or(Failure("--iterations needs a count".into()))?;
                iterations = match text.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(Failure(format!(
                            "`{text}` is not a positive iteration count"
                        )))
                    }
                };
            }
            other => {
                return Err(Failure(format!(
                    "unknown bench argument `{other}` (usage: llext bench [load] [--iterations N])"
                )))
            }
        }
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
