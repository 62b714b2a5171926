//! Every cap of [`llext::Limits`] is enforced with a typed [`Error::Limit`] (alignment: a typed
//! [`Error::BadSection`]), before the loader allocates or works in proportion to the hostile value; and the
//! work that is not capped stays proportional to the input.

mod common;

use common::{compile_c, counting_registry};
use llext::{Error, Limits, LoadOptions};
use llext_fixtures::bytes;

const NO_RUN: LoadOptions = LoadOptions {
    bring_up: false,
    keep_eh_frame: false,
    // Fixup records too, where llext has its `portable` feature.
    portable: cfg!(feature = "portable"),
    storage: llext::Storage::Copy,
};

fn refused(limits: Limits, object: &[u8]) -> Error {
    let (r, memory) = counting_registry();
    r.set_limits(limits);
    let err = r
        .load_with("capped", object, &NO_RUN)
        .expect_err("over the limit");
    assert!(r.is_empty());
    assert_eq!(memory.live(), 0);
    err
}

fn limit_name(e: &Error) -> &'static str {
    match e {
        Error::Limit { what, .. } => what,
        other => panic!("not a limit: {other}"),
    }
}

#[test]
fn every_cap_is_a_typed_error() {
    let object = bytes("basic-gcc-O2-pic.o");
    let base = Limits::default();
    let cases = [
        (
            Limits {
                max_file_size: object.len() as u64 - 1,
                ..base
            },
            "file size",
        ),
        (
            Limits {
                max_sections: 4,
                ..base
            },
            "section count",
        ),
        (
            Limits {
                max_symbols: 4,
                ..base
            },
            "symbol count",
        ),
        (
            Limits {
                max_relocations: 4,
                ..base
            },
            "relocation count",
        ),
        (
            Limits {
                max_memory: 64,
                ..base
            },
            "extension memory",
        ),
        (
            Limits {
                max_name_bytes: 16,
                ..base
            },
            "name bytes",
        ),
    ];
    for (limits, what) in cases {
        let err = refused(limits, &object);
        assert_eq!(limit_name(&err), what, "{err}");
        assert!(err.to_string().contains("over the limit"), "{err}");
    }
    // basic.c aligns data to 128 bytes.
    let err = refused(
        Limits {
            max_alignment: 64,
            ..base
        },
        &object,
    );
    assert!(
        matches!(err, Error::BadSection { reason, .. } if reason.contains("alignment")),
        "{err}"
    );
    // Exactly at each limit still loads.
    let (r, _) = counting_registry();
    r.set_limits(Limits {
        max_file_size: object.len() as u64,
        ..base
    });
    r.load_with("basic", &object, &NO_RUN).unwrap();
}

/// `max_memory` bounds what a load asks its memory provider for: the byte of slack each block of a load
/// that records fixups gets is counted too (it once let such a load exceed the cap by up to 3 bytes).
#[test]
fn the_memory_cap_counts_every_byte_requested() {
    let object = bytes("basic-gcc-O2-pic.o");
    for portable in [false, true] {
        let options = LoadOptions {
            portable: portable && cfg!(feature = "portable"),
            ..NO_RUN
        };
        let (r, memory) = counting_registry();
        r.load_with("basic", &object, &options).unwrap();
        let requested = memory.requested.load(std::sync::atomic::Ordering::SeqCst) as u64;

        let (r, memory) = counting_registry();
        r.set_limits(Limits {
            max_memory: requested - 1,
            ..Limits::default()
        });
        let err = r.load_with("basic", &object, &options).unwrap_err();
        assert!(
            matches!(err, Error::Limit { what: "extension memory", value, .. } if value == requested),
            "portable {portable}: {err}"
        );
        assert!(r.is_empty());
        assert_eq!(memory.live(), 0);
        r.set_limits(Limits {
            max_memory: requested,
            ..Limits::default()
        });
        r.load_with("basic", &object, &options).unwrap();
    }
}

#[test]
fn file_size_is_checked_before_reading() {
    // A reader that claims a huge length fails on the cap, without the loader reading or allocating it.
    struct Huge;
    impl std::io::Read for Huge {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("read past the size check")
        }
    }
    impl std::io::Seek for Huge {
        fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
            Ok(match pos {
                std::io::SeekFrom::End(_) => 1 << 40,
                _ => 0,
            })
        }
    }
    let (r, _) = counting_registry();
    let err = r.load_reader("huge", Huge).unwrap_err();
    assert_eq!(limit_name(&err), "file size");
}

#[test]
fn defaults_bound_a_hostile_file() {
    let d = Limits::default();
    assert!(d.max_file_size <= 256 << 20);
    assert!(d.max_memory <= 256 << 20);
    assert!(d.max_sections <= 1 << 16);
    assert!(d.max_symbols <= 1 << 20);
    assert!(d.max_relocations <= 1 << 22);
    assert!(d.max_alignment <= 1 << 16);
}

/// Work that no cap bounds directly grows with the input, not with its square: an extension exporting
/// many names (each checked against every other) loads in about the time of the linking itself.
#[test]
fn many_exports_load_in_proportional_time() {
    let n = 20_000;
    let mut source = String::from("#include <llext.h>\n");
    for i in 0..n {
        source.push_str(&format!("long export_fn_{i:05}(long x) {{ return x + {i}; }}\nLLEXT_EXPORT(export_fn_{i:05});\n"));
    }
    let object = compile_c(&source, &["-fPIC", "-O0"]);
    let (r, _) = counting_registry();
    let start = std::time::Instant::now();
    let id = r.load_with("many", &object, &NO_RUN).unwrap();
    let elapsed = start.elapsed();
    for i in [0, n / 2, n - 1] {
        let name = format!("export_fn_{i:05}");
        assert!(r.extension_symbol(id, &name).unwrap().is_some(), "{name}");
        assert!(r.find_symbol(&name).is_some(), "{name}");
    }
    println!(
        "reliability: limits: {n} exports loaded in {:.2}s",
        elapsed.as_secs_f64()
    );
    // Checking each name against every other took 6 s here; with a hash table it takes 0.1 s.
    assert!(elapsed.as_secs_f64() < 2.0, "{n} exports took {elapsed:?}");
}

#[test]
fn a_name_exported_twice_by_one_extension_is_refused() {
    let source = r#"
        #include <llext.h>
        long twice(long x) { return 2 * x; }
        static const struct llext_symbol first __attribute__((section(".exported_sym"), used)) =
            { "twice", (const void *)&twice };
        static const struct llext_symbol again __attribute__((section(".exported_sym"), used)) =
            { "twice", (const void *)&twice };
    "#;
    let object = compile_c(source, &["-fPIC"]);
    let (r, memory) = counting_registry();
    match r.load_with("dup", &object, &NO_RUN) {
        Err(Error::DuplicateExport { symbol, owner, .. }) => {
            assert_eq!(symbol, "twice");
            assert!(owner.contains("same extension"), "{owner}");
        }
        other => panic!("{other:?}"),
    }
    assert!(r.is_empty());
    assert_eq!(memory.live(), 0);
}

/// Review of the load path: symbol names may share the bytes of the string table, each a different suffix
/// of one long string. 2,048 such names of 128 KiB in a 188 KB file made the loader copy, hash and sort
/// 256 MiB of names (529 MB of memory). The names' total length is now capped (`max_name_bytes`, 16 MiB
/// by default) as they are read. The object here is gcc's, with the names of 300 globals pointed into
/// one 64 KiB name: 19 MiB of names.
#[test]
fn names_sharing_one_long_string_are_capped() {
    use object::read::elf::{ElfFile64, FileHeader};
    use object::{Object, ObjectSection, ObjectSymbol};
    let long = "n".repeat(64 * 1024);
    let mut source = format!("long {long} = 1;\n");
    for i in 0..300 {
        source.push_str(&format!("long g{i} = {i};\n"));
    }
    let mut elf = compile_c(&source, &[]);
    let (symtab, long_name) = {
        let file = ElfFile64::<object::Endianness>::parse(&*elf).unwrap();
        let endian = file.endian();
        let symtab = file
            .section_by_name(".symtab")
            .unwrap()
            .file_range()
            .unwrap();
        let long_name = file
            .symbols()
            .find(|s| s.name() == Ok(long.as_str()))
            .map(|s| s.elf_symbol().st_name.get(endian))
            .unwrap();
        assert!(file.elf_header().is_little_endian());
        (symtab, long_name)
    };
    // Elf64_Sym is 24 bytes, st_name its first word: every other symbol gets a suffix of the long name.
    let (start, size) = (symtab.0 as usize, symtab.1 as usize);
    for (k, sym) in elf[start..start + size]
        .chunks_exact_mut(24)
        .enumerate()
        .skip(1)
    {
        let name = long_name + 1 + k as u32;
        sym[..4].copy_from_slice(&name.to_le_bytes());
    }
    let err = refused(Limits::default(), &elf);
    assert_eq!(limit_name(&err), "name bytes", "{err}");
}

/// Review of the name cap: the export table's names are C strings in the extension's memory, and entries
/// may name suffixes of one long string too. 300 entries into one 64 KiB string (19 MiB of names) are
/// counted with the object's own names and refused.
#[test]
fn export_names_sharing_one_long_string_are_capped() {
    let mut table = String::new();
    for i in 0..300 {
        table.push_str(&format!(".quad long_name + {}\\n.quad long_name\\n", 1 + i));
    }
    let source = format!(
        "__asm__(\".section .rodata\\nlong_name: .fill 65536, 1, 0x6e\\n.byte 0\\n\
         .section .exported_sym, \\\"a\\\"\\n{table}.previous\\n\");\n"
    );
    let elf = compile_c(&source, &["-fno-pic"]);
    let err = refused(Limits::default(), &elf);
    assert_eq!(limit_name(&err), "name bytes", "{err}");
}

/// Review: past the cap on listed link problems, the load reported only "link problems is 64, over the
/// limit of 64" and dropped every problem found. It now keeps the first 64, closed by a note that there
/// were more — for clashing exports and for undefined symbols alike.
#[test]
fn past_the_problem_cap_the_first_problems_are_kept() {
    let mut exports = String::from("#include <llext.h>\n");
    let mut calls = String::from("long all(void) { return 0");
    for i in 0..70 {
        exports += &format!("long f{i}(void) {{ return {i}; }}\nLLEXT_EXPORT(f{i});\n");
        calls += &format!(" + g{i}()");
    }
    calls = (0..70)
        .map(|i| format!("long g{i}(void);\n"))
        .collect::<String>()
        + &calls
        + "; }\n";
    let (r, memory) = counting_registry();
    r.load_with("first", &compile_c(&exports, &["-fPIC"]), &NO_RUN)
        .unwrap();
    let live = memory.live();
    for (name, source) in [("second", &exports), ("calls", &calls)] {
        let e = r
            .load_with(name, &compile_c(source, &["-fPIC"]), &NO_RUN)
            .unwrap_err();
        let problems = e.problems();
        assert_eq!(problems.len(), 65, "{name}: {e}");
        for p in &problems[..64] {
            assert!(
                matches!(p, Error::DuplicateExport { .. } | Error::Undefined { .. }),
                "{name}: {p:?}"
            );
        }
        assert!(matches!(
            problems[64],
            Error::TooManyProblems { listed: 64 }
        ));
        let text = e.to_string();
        assert!(text.contains(": 64 problems; "), "{text}");
        assert!(
            text.ends_with("; more problems: the load stopped after the first 64"),
            "{text}"
        );
        assert_eq!(r.len(), 1);
        assert_eq!(memory.live(), live);
    }
}
