//! `Registry::load_with` + `Registry::unload` of one ~3 KB C object, without running constructors.
//!
//! The object is chosen as `llext bench` chooses it: among the `gcc -O2 -fPIC` fixtures that load on their
//! own, the one whose file size is nearest to 3 KiB. Run with `cargo bench -p llext --bench load`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use llext::{ExportTable, HostMemory, LoadOptions, Registry};
use llext_fixtures::Variant;

const TARGET_BYTES: u64 = 3 * 1024;

const VARIANT: Variant = Variant {
    compiler: "gcc",
    opt: "O2",
    pic: true,
};

/// The file name and bytes of the fixture to measure.
fn pick_object(registry: &Registry<HostMemory>, options: &LoadOptions) -> (String, Vec<u8>) {
    let mut best: Option<(u64, String, Vec<u8>)> = None;
    for stem in llext_fixtures::stems() {
        let file_name = VARIANT.file_name(stem);
        let bytes = llext_fixtures::bytes(&file_name);
        let distance = (bytes.len() as u64).abs_diff(TARGET_BYTES);
        if best.as_ref().is_some_and(|(d, _, _)| *d <= distance) {
            continue;
        }
        // Some fixtures need another one loaded first, or are meant to fail.
        let Ok(id) = registry.load_with("probe", &bytes, options) else {
            continue;
        };
        registry.unload(id).expect("unload the probe");
        best = Some((distance, file_name, bytes));
    }
    let (_, name, bytes) = best.expect("a fixture that loads on its own");
    (name, bytes)
}

fn load_and_unload(c: &mut Criterion) {
    let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
    let options = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let (name, object) = pick_object(&registry, &options);
    c.bench_function(&format!("load_with+unload {name}"), |b| {
        b.iter(|| {
            let id = registry
                .load_with("bench", black_box(&object), &options)
                .expect("load");
            registry.unload(black_box(id)).expect("unload")
        })
    });
}

/// In-place and portable restore of the bundled 3-extension chain, against loading it.
fn restore_chain(c: &mut Criterion) {
    use llext::{Context, RestoreOptions, SaveOptions};
    let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
    let options = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let load_all = |r: &Registry<HostMemory>| -> Vec<llext::ExtId> {
        llext_fixtures::CHAIN3
            .iter()
            .map(|(name, bytes)| r.load_with(name, black_box(bytes), &options).expect("load"))
            .collect()
    };
    let unload_all = |r: &Registry<HostMemory>, ids: Vec<llext::ExtId>| {
        for id in ids.into_iter().rev() {
            r.unload(id).expect("unload");
        }
    };
    c.bench_function("chain3 load", |b| {
        b.iter(|| {
            let ids = load_all(&registry);
            unload_all(&registry, ids)
        })
    });
    let ids = load_all(&registry);
    let in_place = registry.save(&SaveOptions::default()).expect("save");
    let portable = registry
        .save(&SaveOptions {
            portable: true,
            ..SaveOptions::default()
        })
        .expect("save");
    c.bench_function("chain3 restore in place (with forget_all)", |b| {
        b.iter(|| {
            registry.forget_all().expect("nothing busy");
            let context = Context::from_bytes(black_box(&in_place)).expect("context");
            registry
                .restore(&context, &RestoreOptions::default())
                .expect("restore")
        })
    });
    let target = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
    c.bench_function("chain3 restore portable (+unload)", |b| {
        b.iter(|| {
            let context = Context::from_bytes(black_box(&portable)).expect("context");
            let restored = target
                .restore(&context, &RestoreOptions::default())
                .expect("restore");
            unload_all(&target, restored)
        })
    });
    drop(ids);
}

criterion_group!(benches, load_and_unload, restore_chain);
criterion_main!(benches);
