//! Reads any bytes as an ELF file and reports its structure, as `llext inspect` does.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match llext::inspect::inspect(data) {
        Ok(report) => {
            for (i, s) in report.sections.iter().enumerate() {
                assert_eq!(s.index, i);
            }
            assert!(report
                .relocations
                .windows(2)
                .all(|w| w[0].r_type < w[1].r_type));
            let _ = format!("{report:?}");
        }
        Err(e) => llext_fuzz::expect_typed(&e),
    }
});
