//! Loads and links any bytes into a static arena (nothing is run: `bring_up: false`). Whatever loads must
//! be describable, saved portably, decoded and restored into a second arena; every block must come back.
#![no_main]

use llext::{Context, LoadOptions, RestoreOptions, SaveOptions};
use llext_fuzz::{check_registry, expect_typed, machine_of, registry, with_arenas};

const NO_RUN: LoadOptions = LoadOptions {
    bring_up: false,
    keep_eh_frame: false,
    portable: true,
    storage: llext::Storage::Copy,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let machine = machine_of(data);
    with_arenas(|first, second| {
        let (r, live) = registry(first, machine);
        match r.load_with("fuzzed", data, &NO_RUN) {
            Err(e) => {
                expect_typed(&e);
                assert!(r.is_empty());
                assert_eq!(live.get(), 0, "blocks left behind by a failed load");
            }
            Ok(id) => {
                let info = r.info(id).expect("info of a loaded extension");
                for region in &info.regions {
                    assert_eq!(region.addr % region.align, 0, "{region:?}");
                }
                check_registry(&r);
                let portable = SaveOptions {
                    portable: true,
                    ..SaveOptions::default()
                };
                let bytes = r
                    .save(&portable)
                    .unwrap_or_else(|e| panic!("save of a loaded extension: {e}"));
                if !bytes.is_empty() {
                    let context = Context::from_bytes(&bytes).expect("decode of a fresh context");
                    let (r2, live2) = registry(second, machine);
                    match r2.restore(&context, &RestoreOptions::default()) {
                        Ok(ids) => {
                            assert_eq!(ids.len(), 1);
                            check_registry(&r2);
                        }
                        Err(e) => {
                            expect_typed(&e);
                            assert!(r2.is_empty());
                            assert_eq!(live2.get(), 0);
                        }
                    }
                    drop(r2);
                    assert_eq!(live2.get(), 0, "restored blocks not freed");
                }
                r.unload(id).expect("unload");
                assert!(r.is_empty());
                assert_eq!(live.get(), 0, "blocks left behind by unload");
            }
        }
    });
});
