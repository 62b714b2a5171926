//! Malformed input: every damage gives a typed error, no panic, no leak, the registry unchanged.

mod common;

use common::elf::{put_u16, put_u32, put_u64, shdrs, u16_at, u32_at, u64_at};
use common::{counting_registry, Counting};
use llext::{Error, ExportTable, LoadOptions, Registry};

const NO_RUN: LoadOptions = LoadOptions {
    bring_up: false,
    keep_eh_frame: false,
    // Fixup records too, where llext has its `portable` feature.
    portable: cfg!(feature = "portable"),
    storage: llext::Storage::Copy,
};

fn fixture() -> Vec<u8> {
    llext_fixtures::bytes("basic-gcc-O2-pic.o")
}

/// Offset of the section header of the first section of type `sh_type` (and whose sh_info is a text section
/// when it is a RELA section).
fn find_section(b: &[u8], sh_type: u32) -> usize {
    let (off, n) = shdrs(b);
    (1..n)
        .map(|i| off + i * 64)
        .find(|&h| {
            u32_at(b, h + 4) == sh_type && {
                if sh_type != 4 {
                    true
                } else {
                    let target = u32_at(b, h + 44) as usize;
                    let flags = u64_at(b, off + target * 64 + 8);
                    flags & 0x4 != 0 // SHF_EXECINSTR
                }
            }
        })
        .expect("section")
}

/// Loads `bytes` into a fresh counting registry; asserts nothing leaked and nothing stayed on error.
fn load(bytes: &[u8]) -> Result<(), Error> {
    let (r, memory) = counting_registry();
    let result = r.load_with("damaged", bytes, &NO_RUN).map(|id| {
        r.unload(id).unwrap();
    });
    assert!(r.is_empty());
    assert_eq!(memory.live(), 0, "blocks leaked");
    result
}

#[test]
fn the_fixture_itself_loads() {
    load(&fixture()).unwrap();
}

#[test]
fn truncation_at_every_boundary_is_an_error() {
    let f = fixture();
    let (shoff, n) = shdrs(&f);
    let mut cuts: Vec<usize> = (0..128).collect();
    cuts.extend((0..=n).map(|i| shoff + i * 64));
    cuts.extend((0..f.len()).step_by(16));
    for cut in cuts {
        if cut >= f.len() {
            continue;
        }
        assert!(load(&f[..cut]).is_err(), "truncated at {cut} loaded");
    }
    assert_eq!(load(&[]), Err(Error::NotElf));
    assert_eq!(load(b"\x7fELF"), Err(Error::NotElf));
}

/// A review: a Rust rlib or staticlib, or a C static library, given instead of its member was "not an ELF
/// file (bad magic or too short)", which did not say what the file was or what to do.
#[test]
fn archives_are_named_as_such() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("archive");
    std::fs::create_dir_all(&dir).unwrap();
    let member = dir.join("basic.o");
    std::fs::write(&member, fixture()).unwrap();
    for (flags, name) in [("rcs", "libbasic.a"), ("rcsT", "libbasic-thin.a")] {
        let archive = dir.join(name);
        let _ = std::fs::remove_file(&archive);
        let status = std::process::Command::new("ar")
            .arg(flags)
            .arg(&archive)
            .arg(&member)
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = std::fs::read(&archive).unwrap();
        assert_eq!(load(&bytes), Err(Error::Archive), "{name}");
        assert_eq!(
            llext::inspect::inspect(&bytes).err(),
            Some(Error::Archive),
            "{name}"
        );
    }
    assert!(Error::Archive.to_string().contains("`ar x`"));
    assert_eq!(load(b"!<arch>\n"), Err(Error::Archive));
    assert_eq!(load(b"!<arch"), Err(Error::NotElf));
}

#[test]
fn wrong_class_endianness_machine_and_type() {
    let f = fixture();
    let mut b = f.clone();
    b[4] = 7;
    assert!(matches!(
        load(&b),
        Err(Error::Unsupported {
            what: "ELF class",
            value: 7
        })
    ));
    let mut b = f.clone();
    b[4] = 1; // claims ELF32: the 64-bit header does not parse as a usable 32-bit one
    assert!(load(&b).is_err());
    let mut b = f.clone();
    b[5] = 2;
    assert!(load(&b).is_err());
    let mut b = f.clone();
    b[5] = 9;
    assert!(matches!(
        load(&b),
        Err(Error::Unsupported {
            what: "ELF byte order",
            ..
        })
    ));
    let mut b = f.clone();
    put_u16(&mut b, 18, 40);
    assert_eq!(
        load(&b),
        Err(Error::WrongMachine {
            expected: 62,
            found: 40
        })
    );
    let mut b = f.clone();
    put_u16(&mut b, 16, 2);
    assert!(matches!(load(&b), Err(Error::Unsupported { value: 2, .. })));
    let msg = load(&b).unwrap_err().to_string();
    assert!(msg.contains("relocatable"), "{msg}");
}

#[test]
fn unknown_relocation_type_is_named() {
    let mut b = fixture();
    let rela = find_section(&b, 4);
    let entries = u64_at(&b, rela + 24) as usize;
    put_u32(&mut b, entries + 8, 200);
    match load(&b) {
        Err(Error::UnsupportedRelocation {
            r_type: 200,
            kind,
            section,
            ..
        }) => {
            assert_eq!(kind, "unknown");
            assert!(section.starts_with(".text"), "{section}");
        }
        other => panic!("{other:?}"),
    }
    // A known but unsupported type (TLS) is named too.
    put_u32(&mut b, entries + 8, 19);
    match load(&b) {
        Err(Error::UnsupportedRelocation {
            kind: "R_X86_64_TLSGD",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn relocation_offset_outside_its_section() {
    let mut b = fixture();
    let rela = find_section(&b, 4);
    let entries = u64_at(&b, rela + 24) as usize;
    put_u64(&mut b, entries, 0x7fff_ffff_0000);
    match load(&b) {
        Err(Error::BadRelocation { reason, .. }) => assert!(reason.contains("outside"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Two bytes before the end: the 4-byte field would straddle the end.
    let mut b = fixture();
    let target = u32_at(&b, rela + 44) as usize;
    let (shoff, _) = shdrs(&b);
    let size = u64_at(&b, shoff + target * 64 + 32);
    let pc32 = (0..u64_at(&b, rela + 32) as usize / 24)
        .map(|i| entries + i * 24)
        .find(|&e| matches!(u32_at(&b, e + 8), 2 | 4 | 42 | 9))
        .unwrap();
    put_u64(&mut b, pc32, size - 2);
    assert!(
        matches!(load(&b), Err(Error::BadRelocation { .. })),
        "{:?}",
        load(&b)
    );
}

#[test]
fn symbol_and_section_indexes_out_of_range() {
    let mut b = fixture();
    let rela = find_section(&b, 4);
    let entries = u64_at(&b, rela + 24) as usize;
    put_u32(&mut b, entries + 12, 0x00ff_ffff);
    assert!(
        matches!(load(&b), Err(Error::BadSymbol { .. })),
        "{:?}",
        load(&b)
    );

    // A defined symbol whose st_shndx points past the section table.
    let mut b = fixture();
    let symtab = find_section(&b, 2);
    let (off, size) = (
        u64_at(&b, symtab + 24) as usize,
        u64_at(&b, symtab + 32) as usize,
    );
    let sym = (1..size / 24)
        .map(|i| off + i * 24)
        .find(|&s| u16_at(&b, s + 6) != 0 && u16_at(&b, s + 6) < 0xff00)
        .unwrap();
    put_u16(&mut b, sym + 6, 0xfe00);
    assert!(
        matches!(load(&b), Err(Error::BadSymbol { .. })),
        "{:?}",
        load(&b)
    );

    // Relocation section whose target (sh_info) is out of range, and one linked to itself.
    let mut b = fixture();
    put_u32(&mut b, rela + 44, 9999);
    assert!(
        matches!(load(&b), Err(Error::BadSection { .. })),
        "{:?}",
        load(&b)
    );
    let mut b = fixture();
    let (shoff, _) = shdrs(&b);
    let self_index = ((rela - shoff) / 64) as u32;
    put_u32(&mut b, rela + 40, self_index);
    assert!(load(&b).is_err());

    // Section name offset out of the string table, string table index out of range.
    let mut b = fixture();
    put_u32(&mut b, rela, 0xffff_fff0);
    assert!(load(&b).is_err());
    let mut b = fixture();
    put_u16(&mut b, 0x3e, 0xfff0);
    assert!(load(&b).is_err());
}

#[test]
fn sections_past_the_end_huge_sizes_and_bad_alignments() {
    let f = fixture();
    let text = {
        let (off, n) = shdrs(&f);
        (1..n)
            .map(|i| off + i * 64)
            .find(|&h| u64_at(&f, h + 8) & 0x4 != 0)
            .unwrap()
    };
    let cases: Vec<(usize, u64, &str)> = vec![
        (24, f.len() as u64, "offset at end of file"),
        (24, u64::MAX - 8, "offset overflow"),
        (32, 1 << 62, "huge size"),
        (32, f.len() as u64 + 1, "size past end"),
        (48, 3, "alignment not a power of two"),
        (48, 1 << 63, "alignment 2^63"),
        (48, 1 << 40, "alignment 2^40"),
        (56, u64::MAX, "entsize"),
    ];
    for (field, value, what) in cases {
        let mut b = f.clone();
        put_u64(&mut b, text + field, value);
        let r = load(&b);
        if what != "entsize" {
            assert!(r.is_err(), "{what}: loaded");
        }
    }
    // A bss section of absurd size is capped, not allocated.
    let mut b = f.clone();
    let bss = find_section(&b, 8);
    put_u64(&mut b, bss + 32, 1 << 40);
    assert!(
        matches!(
            load(&b),
            Err(Error::Limit {
                what: "extension memory",
                ..
            })
        ),
        "{:?}",
        load(&b)
    );
    // Zero alignment means 1.
    let mut b = f.clone();
    put_u64(&mut b, text + 48, 0);
    load(&b).unwrap();
}

#[test]
fn every_header_and_section_table_byte_damaged() {
    // Each byte of the ELF header and of the section header table, set to a handful of hostile values.
    let f = fixture();
    let (shoff, n) = shdrs(&f);
    let positions: Vec<usize> = (0..64).chain(shoff..shoff + n * 64).collect();
    let mut outcomes = (0usize, 0usize);
    for at in positions {
        for v in [0x00u8, 0xff, 0x80, 0x7f, 0x01] {
            if f[at] == v {
                continue;
            }
            let mut b = f.clone();
            b[at] = v;
            match load(&b) {
                Ok(()) => outcomes.0 += 1,
                Err(e) => {
                    assert!(!matches!(e, Error::Internal(_)), "byte {at} = {v:#x}: {e}");
                    assert!(!e.to_string().is_empty());
                    outcomes.1 += 1;
                }
            }
        }
    }
    assert!(outcomes.1 > 100, "{outcomes:?}");
}

#[test]
fn allocation_failure_at_every_point_leaves_nothing() {
    let f = fixture();
    for n in 0..3 {
        let memory = Counting::failing_at(n);
        let r = Registry::new(memory.clone(), ExportTable::new(llext::LIBC_EXPORTS));
        assert!(
            matches!(
                r.load_with("x", &f, &NO_RUN),
                Err(Error::OutOfMemory { .. })
            ),
            "fail at {n}"
        );
        assert!(r.is_empty());
        assert_eq!(memory.live(), 0);
    }
}

#[test]
fn bad_names_are_refused() {
    let r = common::registry();
    for name in ["", "a\0b", &"x".repeat(256)] {
        assert!(matches!(
            r.load(name, &fixture()),
            Err(Error::BadName { .. })
        ));
    }
    // The message says why, and shows only the start of a long name (user review: a 5,000-byte name was
    // echoed whole, with no reason given).
    let message = r
        .load(&"n".repeat(5000), &fixture())
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        format!(
            "invalid extension name `{}…` (5000 bytes): a name is 1 to 255 bytes, without NUL",
            "n".repeat(40)
        )
    );
    let message = r.load("a\0b", &fixture()).unwrap_err().to_string();
    assert!(
        message.starts_with("invalid extension name `a?b` (3 bytes)"),
        "{message}"
    );
}

#[test]
fn limits_are_enforced() {
    let r = common::registry();
    r.set_limits(llext::Limits {
        max_file_size: 100,
        ..llext::Limits::default()
    });
    assert!(matches!(
        r.load("x", &fixture()),
        Err(Error::Limit {
            what: "file size",
            ..
        })
    ));
    r.set_limits(llext::Limits {
        max_relocations: 3,
        ..llext::Limits::default()
    });
    assert!(matches!(
        r.load("x", &fixture()),
        Err(Error::Limit {
            what: "relocation count",
            ..
        })
    ));
    r.set_limits(llext::Limits {
        max_symbols: 3,
        ..llext::Limits::default()
    });
    assert!(matches!(
        r.load("x", &fixture()),
        Err(Error::Limit {
            what: "symbol count",
            ..
        })
    ));
    assert!(r.is_empty());
}

/// User review: `llext check` on an i386 object said "unsupported machine: no relocation backend in this
/// build (0x3)" while `run` named both machines. A registry for a machine without a backend now says which
/// machine it is and which ones the build links.
#[test]
fn a_machine_without_a_backend_is_named() {
    let mut elf = fixture();
    put_u16(&mut elf, 18, 3); // e_machine: EM_386
    let mut arena = vec![0u8; 1 << 16];
    let r = Registry::for_machine(
        llext::ArenaMemory::new(&mut arena),
        ExportTable::default(),
        3,
    );
    let e = r.load("i386", &elf).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NoBackend {
                machine: 3,
                bits: 64
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with(
            "no relocation backend for 64-bit i386 (3) objects in this build; it links x86_64"
        ),
        "{text}"
    );
    assert!(r.is_empty());
}

/// A user's trial of ordinary C: thread-local variables were refused as such without `-fPIC`, but with it
/// only as an undefined `__tls_get_addr`; and a GCC nested function whose address is taken loaded fine,
/// then died of SIGSEGV running its trampoline on the non-executable stack. Both are refused up front.
#[test]
fn objects_needing_tls_or_an_executable_stack_are_refused_up_front() {
    const TLS: &str = "static __thread long count;\nlong tls_bump(void) { return ++count; }\n";
    const NESTED: &str = "typedef unsigned long size_t;\n\
        void qsort(void *, size_t, size_t, int (*)(const void *, const void *));\n\
        long nested(long n) {\n\
            int cmp(const void *a, const void *b) { return (*(const int *)a - *(const int *)b) * (int)n; }\n\
            int v[3] = { 3, 1, 2 };\n\
            qsort(v, 3, sizeof v[0], cmp);\n\
            return v[0];\n\
        }\n";
    let (r, memory) = counting_registry();
    for (source, flags, reason) in [
        (TLS, &["-fPIC"][..], "thread-local storage"),
        (TLS, &["-fno-pic"][..], "thread-local storage"),
        (NESTED, &["-O2"][..], "relink with `ld -r -z noexecstack`"),
    ] {
        match r.load("refused", &common::compile_c(source, flags)) {
            // A thread-local variable is named.
            Err(Error::BadSymbol {
                name, reason: r, ..
            }) if source == TLS => {
                assert_eq!(name, "count");
                assert!(r.contains(reason), "{r}");
            }
            Err(Error::BadSection { reason: r, .. }) if source != TLS => {
                assert!(r.contains(reason), "{r}")
            }
            other => panic!("{flags:?} {reason}: {other:?}"),
        }
        assert!(r.is_empty());
        assert_eq!(memory.live(), 0);
    }
}

/// A user's trial: an indirect function (GNU ifunc) linked as a plain function, so a call ran its resolver
/// and returned the implementation's address as the result (a wrong value, no error). It is refused.
#[test]
fn indirect_functions_are_refused() {
    const IFUNC: &str = "static long impl(long x) { return x + 22; }\n\
        static long (*resolve(void))(long) { return impl; }\n\
        long ifoo(long) __attribute__((ifunc(\"resolve\")));\n\
        long ifn(long x) { return ifoo(x) * 2; }\n";
    let (r, memory) = counting_registry();
    for flags in [
        &["-O2", "-fPIC"][..],
        &["-O2", "-fno-pic"][..],
        &["-O0"][..],
    ] {
        match r.load("ifunc", &common::compile_c(IFUNC, flags)) {
            Err(Error::BadSymbol { name, reason, .. }) => {
                assert_eq!(name, "ifoo");
                assert!(reason.contains("indirect function"), "{reason}");
            }
            other => panic!("{flags:?}: {other:?}"),
        }
        assert!(r.is_empty());
        assert_eq!(memory.live(), 0);
    }
}
