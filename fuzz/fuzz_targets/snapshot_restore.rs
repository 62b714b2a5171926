//! Decodes any bytes as a saved context and restores it into an arena-backed registry for the context's
//! machine (so every backend replays hostile fixups; nothing is run).
//!
//! The first input byte selects how: bit 0 reseals the rest (length field and checksum recomputed, so
//! mutations reach the record checks instead of stopping at the checksum), bit 1 skips content checks,
//! bit 2 leaves stored pointers alone, bit 3 restores with `restore_static` given a storage buffer the
//! context cannot name (in-place regions are refused either way, by different checks), bit 4 discards the
//! context instead of restoring it (the arena is new, so blocks it never handed out are taken and freed).
#![no_main]

use llext::{Context, RestoreOptions, SaveOptions};
use llext_fuzz::{backend_machine, check_registry, expect_typed, registry, reseal, with_arenas};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 != 0 {
        reseal(&mut bytes);
    }
    let context = match Context::from_bytes(&bytes) {
        Ok(c) => c,
        Err(e) => return expect_typed(&e),
    };
    assert_eq!(context.names().count(), context.len());
    with_arenas(|arena, _| {
        let (r, live) = registry(arena, backend_machine(context.machine()));
        let options = RestoreOptions {
            verify_content: mode & 2 == 0,
            move_stored_pointers: mode & 4 == 0,
        };
        static STORAGE: [u8; 64] = [0; 64];
        if mode & 16 != 0 {
            // All or nothing, and nothing is registered either way.
            if let Err(e) = r.discard(&context) {
                expect_typed(&e);
            }
            assert!(r.is_empty(), "a discard registered extensions");
            assert_eq!(live.get(), 0, "a discard left blocks behind");
            return;
        }
        let restored = if mode & 8 != 0 {
            r.restore_static(&context, &options, &[&STORAGE])
        } else {
            r.restore(&context, &options)
        };
        match restored {
            Ok(ids) => {
                assert_eq!(ids.len(), context.len());
                check_registry(&r);
                // What was restored saves again and decodes.
                let again = r.save(&SaveOptions::default()).expect("save after restore");
                Context::from_bytes(&again).expect("decode after restore");
            }
            Err(e) => {
                expect_typed(&e);
                assert!(r.is_empty(), "a failed restore left extensions behind");
                assert_eq!(live.get(), 0, "a failed restore left blocks behind");
            }
        }
        // Dropping frees every block without running destructors (restored code is never run here).
        drop(r);
        assert_eq!(live.get(), 0);
    });
});
