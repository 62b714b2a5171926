//! Real objects from gcc, clang and rustc, loaded and run natively, in every build variant.

mod common;

use common::{call, protection_of, registry};
use llext::{RegionKind, Unloaded};
use llext_fixtures::{bytes, variants, Variant};

fn load_variant(r: &llext::Registry<llext::HostMemory>, v: &Variant, stem: &str) -> llext::ExtId {
    r.load(stem, &v.bytes(stem))
        .unwrap_or_else(|e| panic!("{v}: load {stem}: {e}"))
}

#[test]
fn basic_runs_in_every_variant() {
    for v in variants() {
        let r = registry();
        let id = load_variant(&r, &v, "basic");
        assert_eq!(call(&r, "basic_add", &[2, 3]), 5, "{v}");
        assert_eq!(call(&r, "basic_add", &[-10, 4]), -6, "{v}");
        assert_eq!(call(&r, "basic_sum6", &[1, 2, 3, 4, 5, 6]), 91, "{v}");
        assert_eq!(call(&r, "basic_counter", &[]), 1, "{v}");
        assert_eq!(call(&r, "basic_counter", &[]), 2, "{v}");
        assert_eq!(call(&r, "basic_accumulate", &[8]), 50, "{v}");
        assert_eq!(call(&r, "basic_accumulate", &[8]), 58, "{v}");
        let switch = [11, 30, 3, 40, 95, -10, 100, 10, 266, 990];
        for (sel, want) in switch.iter().enumerate() {
            assert_eq!(
                call(&r, "basic_switch", &[sel as i64, 10]),
                *want,
                "{v} switch {sel}"
            );
        }
        assert_eq!(call(&r, "basic_switch", &[77, 10]), -1, "{v}");
        for (i, want) in [17, 3, 70, -10].iter().enumerate() {
            assert_eq!(
                call(&r, "basic_table", &[i as i64, 10]),
                *want,
                "{v} table {i}"
            );
        }
        assert_eq!(call(&r, "basic_table", &[9, 10]), -1, "{v}");
        assert_eq!(call(&r, "basic_strings", &[]), 8, "{v}");
        assert_eq!(call(&r, "basic_heap", &[10]), 190, "{v}");
        assert_eq!(call(&r, "basic_heap", &[0]), -1, "{v}");
        assert_eq!(call(&r, "basic_align", &[]), 0, "{v}");
        assert_eq!(call(&r, "basic_aligned_first", &[]), 9, "{v}");
        assert_eq!(call(&r, "basic_bss_sum", &[]), 0, "{v}");
        assert_eq!(call(&r, "basic_bss_fill", &[1]), 2080, "{v}");
        assert_eq!(call(&r, "basic_bss_sum", &[]), 2080, "{v}");

        // 64- and 128-byte aligned data really is aligned, and regions carry their strictest alignment.
        let info = r.info(id).unwrap();
        let addr = r
            .extension_symbol(id, "basic_aligned_data")
            .unwrap()
            .unwrap();
        assert_eq!(addr % 64, 0, "{v}");
        let data = info
            .regions
            .iter()
            .find(|g| g.kind == RegionKind::Data)
            .unwrap();
        assert!(
            data.align >= 64 && data.addr % data.align == 0,
            "{v}: {data:?}"
        );
        // Debug and unwind sections cost nothing.
        assert!(info.sections.iter().all(|s| !s.name.starts_with(".debug")
            && s.name != ".eh_frame"
            && s.name != ".comment"));
        assert_eq!(r.unload(id).unwrap(), Unloaded::Freed);
        assert!(r.is_empty());
    }
}

#[test]
fn memory_is_w_xor_x() {
    let r = registry();
    for v in variants() {
        let id = load_variant(&r, &v, "basic");
        let info = r.info(id).unwrap();
        for region in &info.regions {
            let want = match region.kind.permission() {
                llext::Permission::ReadExecute => "r-x",
                llext::Permission::ReadOnly => "r--",
                llext::Permission::ReadWrite => "rw-",
            };
            let got = protection_of(region.addr);
            assert_eq!(
                &got[..3],
                want,
                "{v}: {:?} at {:#x}",
                region.kind,
                region.addr
            );
        }
        r.unload(id).unwrap();
    }
}

#[test]
fn constructors_run_in_priority_order_and_destructors_on_unload() {
    for v in variants() {
        let r = registry();
        let id = load_variant(&r, &v, "ctors");
        assert_eq!(call(&r, "ctors_state", &[]), 12, "{v}");
        let info = r.info(id).unwrap();
        assert!(
            info.init_count >= 2 && info.fini_count >= 1,
            "{v}: {info:?}"
        );
        r.unload(id).unwrap();
    }
}

#[test]
fn extensions_link_against_each_others_exports() {
    for v in variants() {
        let r = registry();
        let lib = load_variant(&r, &v, "libmath");
        let user = load_variant(&r, &v, "usemath");
        assert_eq!(call(&r, "lm_mul", &[6, 7]), 42, "{v}");
        assert_eq!(call(&r, "use_math", &[5]), 15, "{v}");
        assert_eq!(call(&r, "use_math", &[5]), 20, "{v}");
        assert_eq!(call(&r, "use_scale", &[]), 5, "{v}");
        assert_eq!(call(&r, "lm_scaled", &[5]), 25, "{v}");
        let info = r.info(user).unwrap();
        assert_eq!(info.dependencies, vec!["libmath".to_string()], "{v}");
        assert_eq!(
            r.info(lib).unwrap().dependents,
            vec!["usemath".to_string()],
            "{v}"
        );
        // Unload ordering: the dependency stays while its user is loaded.
        match r.unload(lib) {
            Err(llext::Error::InUse {
                extension,
                dependents,
            }) => {
                assert_eq!(extension, "libmath");
                assert_eq!(dependents, vec!["usemath".to_string()]);
            }
            other => panic!("{v}: unload of a dependency: {other:?}"),
        }
        assert_eq!(call(&r, "lm_mul", &[2, 2]), 4, "{v}: libmath still works");
        r.unload(user).unwrap();
        r.unload(lib).unwrap();
    }
}

#[test]
fn diamond_dependencies() {
    for v in variants() {
        let r = registry();
        for stem in ["dbase", "dleft", "dright", "dtop"] {
            load_variant(&r, &v, stem);
        }
        assert_eq!(call(&r, "dl_left", &[]), 101, "{v}");
        assert_eq!(call(&r, "dr_right", &[]), 200, "{v}");
        assert_eq!(call(&r, "dtop_total", &[]), 301, "{v}");
        // db_calls counts every db_value() call, shared by all users of dbase: two direct, two via dtop.
        assert_eq!(call(&r, "dtop_calls", &[]), 4, "{v}");
        let top = r.info(r.get("dtop").unwrap()).unwrap();
        let mut deps = top.dependencies.clone();
        deps.sort();
        assert_eq!(deps, ["dleft", "dright"], "{v}");
        let base = r.info(r.get("dbase").unwrap()).unwrap();
        let mut dependents = base.dependents.clone();
        dependents.sort();
        assert_eq!(dependents, ["dleft", "dright"], "{v}");
        assert!(r.unload_name("dbase").is_err());
        assert!(r.unload_name("dleft").is_err());
        for stem in ["dtop", "dleft", "dright", "dbase"] {
            assert_eq!(r.unload_name(stem).unwrap(), Unloaded::Freed, "{v} {stem}");
        }
    }
}

#[test]
fn undefined_symbol_fails_naming_it_and_leaves_nothing_behind() {
    for v in variants() {
        let (r, memory) = common::counting_registry();
        match r.load("undef", &v.bytes("undef")) {
            Err(llext::Error::Undefined {
                extension,
                symbol,
                defined_by,
            }) => {
                assert_eq!(extension, "undef");
                assert_eq!(symbol, "no_such_function");
                assert_eq!(defined_by, None);
            }
            other => panic!("{v}: {other:?}"),
        }
        assert!(r.is_empty());
        assert_eq!(memory.live(), 0, "{v}: a failed load must not keep memory");
    }
}

/// The commonest first mistake: a library extension defines a function but does not export it. The
/// error names the extension that has it and says what to add, and the registry keeps only the library.
#[test]
fn a_symbol_a_loaded_extension_defines_without_exporting_names_it() {
    let (r, memory) = common::counting_registry();
    let lib = common::compile_c(
        "static int count; int bump(int by) { count += by; return count; }",
        &["-O2", "-fPIC"],
    );
    let app = common::compile_c(
        "extern int bump(int); int run(int n) { return bump(n); }",
        &["-O2", "-fPIC"],
    );
    r.load("lib", &lib).unwrap();
    let err = r.load("app", &app).unwrap_err();
    match &err {
        llext::Error::Undefined {
            extension,
            symbol,
            defined_by,
        } => {
            assert_eq!(extension, "app");
            assert_eq!(symbol, "bump");
            assert_eq!(defined_by.as_deref(), Some("lib"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("extension `lib` defines it but does not export it"),
        "{err}"
    );
    assert_eq!(r.len(), 1);
    r.unload_name("lib").unwrap();
    assert_eq!(memory.live(), 0);
}

#[test]
fn weak_undefined_resolves_to_zero_or_to_a_loaded_definition() {
    for v in variants() {
        let r = registry();
        let id = load_variant(&r, &v, "weak");
        assert_eq!(call(&r, "weak_probe", &[]), -7, "{v}");
        r.unload(id).unwrap();
        let def = load_variant(&r, &v, "weakdef");
        let id = load_variant(&r, &v, "weak");
        assert_eq!(call(&r, "weak_probe", &[]), 42, "{v}");
        r.unload(id).unwrap();
        r.unload(def).unwrap();
    }
}

#[test]
fn far_host_calls_go_through_stubs() {
    for v in variants() {
        let r = registry();
        let id = load_variant(&r, &v, "farcall");
        assert_eq!(call(&r, "far_calls", &[]), 2281, "{v}");
        assert_eq!(call(&r, "far_format", &[1, 2, 3, 4, 5, 6]), 11, "{v}");
        assert_eq!(
            call(&r, "far_format", &[-1, 10, 100, 1000, 10000, 100000]),
            27,
            "{v}"
        );
        assert_eq!(call(&r, "far_strings", &[]), 10, "{v}");
        assert_eq!(call(&r, "far_putchar", &[120]), 120, "{v}");
        let info = r.info(id).unwrap();
        let text = info
            .regions
            .iter()
            .find(|g| g.kind == RegionKind::Text)
            .unwrap();
        let printf = libc::printf as *const () as usize;
        let distance = (printf as i128 - text.addr as i128).abs();
        if distance > i32::MAX as i128 && !v.pic {
            // Non-PIC calls are PLT32: out of reach, so they must have gone through generated stubs.
            assert!(
                info.regions.iter().any(|g| g.kind == RegionKind::Stubs),
                "{v}: no stubs"
            );
        }
        r.unload(id).unwrap();
    }
    // The pool sits in the low 2 GiB, far from the C library, so the stub path is really exercised.
    let (base, _) = llext::HostMemory::pool_range().unwrap();
    assert!(base < 0x8000_0000, "pool at {base:#x}");
    assert!((libc::printf as *const () as usize) > 0x1_0000_0000);
}

#[test]
fn partial_links_load() {
    for v in variants() {
        let r = registry();
        let id = load_variant(&r, &v, "partial");
        assert_eq!(call(&r, "partial_entry", &[1]), 22, "{v}");
        assert_eq!(call(&r, "partial_entry", &[5]), 30, "{v}");
        r.unload(id).unwrap();
    }
}

/// Real library code: zlib's deflate and inflate, optimised by gcc and clang and combined with a driver
/// by `ld -r`, round-trip generated text and return what the same C built natively returns.
#[test]
fn zlib_deflates_and_inflates_as_natively() {
    let objects = llext_fixtures::zlib_objects();
    for name in &objects {
        let r = registry();
        let id = r
            .load("zlib", &bytes(name))
            .unwrap_or_else(|e| panic!("load {name}: {e}"));
        let seed = llext_fixtures::ZLIB_SEED;
        assert_eq!(
            call(&r, "zlib_main", &[seed]),
            llext_fixtures::ZLIB_EXPECTED,
            "{name}: zlib_main({seed})"
        );
        assert_eq!(r.unload(id).unwrap(), Unloaded::Freed, "{name}");
    }
    assert!(objects.iter().any(|n| n.contains("-gcc-")));
    if std::env::var(llext_fixtures::REQUIRE_CLANG_VAR).as_deref() == Ok("1") {
        assert!(objects.iter().any(|n| n.contains("-clang-")));
    }
}

#[test]
fn rust_extension_runs_and_exports() {
    let r = registry();
    let id = r.load("rsext", &bytes("rsext.o")).unwrap();
    assert_eq!(call(&r, "rs_fib", &[10]), 55);
    assert_eq!(call(&r, "rs_fib", &[50]), 12586269025);
    assert_eq!(call(&r, "rs_sum_to", &[100]), 5050);
    assert_eq!(call(&r, "rs_hello", &[]), 15);
    assert_eq!(call(&r, "rs_bump", &[]), 1);
    assert_eq!(call(&r, "rs_bump", &[]), 2);
    let info = r.info(id).unwrap();
    let mut exported: Vec<&str> = info
        .symbols
        .iter()
        .filter(|s| s.exported)
        .map(|s| s.name.as_str())
        .collect();
    exported.sort();
    assert_eq!(exported, ["rs_bump", "rs_fib", "rs_hello", "rs_sum_to"]);
    r.unload(id).unwrap();
}

#[test]
fn clang_variants_exist_when_required() {
    llext_fixtures::require_clang_if_asked();
    if std::env::var(llext_fixtures::REQUIRE_CLANG_VAR).as_deref() == Ok("1") {
        assert!(variants().iter().any(|v| v.compiler == "clang"));
    }
}

/// Objects built the way distributions build C by default: gcc's `-O2` turns `strcpy` then `strlen` into
/// `stpcpy`, Ubuntu adds `-fstack-protector-strong` (`__stack_chk_fail`) and `-D_FORTIFY_SOURCE=2`
/// (`__snprintf_chk`, `__strcpy_chk`, `__fprintf_chk`, ...), and writing to `stderr` reads the C library's
/// `stderr` pointer. The host's C library table offers all of them, so such objects load and run unchanged.
#[test]
fn objects_built_with_hardening_defaults_run() {
    let source = "#include <stdio.h>\n\
                  #include <string.h>\n\
                  static char buf[64];\n\
                  const char *greeting = \"hello\";\n\
                  long work(long n) {\n\
                      char local[32];\n\
                      snprintf(local, sizeof local, \"%s %ld\", greeting, n);\n\
                      strcpy(buf, local);\n\
                      return (long)strlen(buf);\n\
                  }\n";
    // `-fhosted` undoes the helper's `-ffreestanding`: these are ordinary hosted builds.
    for flags in [
        &["-fhosted", "-O2"][..],
        &[
            "-fhosted",
            "-O2",
            "-fstack-protector-all",
            "-D_FORTIFY_SOURCE=2",
            "-fPIE",
        ][..],
        &["-fhosted", "-O2", "-fstack-protector-strong", "-fPIC"][..],
    ] {
        let r = registry();
        let object = common::compile_c(source, flags);
        r.load("hardened", &object)
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        // "hello 12345" is 11 bytes.
        assert_eq!(call(&r, "work", &[12345]), 11, "{flags:?}");
    }
    // The standard streams are data of the C library. Position-independent code reaches them through its
    // GOT. gcc's `-fPIE` (its default here) and `-fno-pic` code, and clang's `-fno-pic` code, read them
    // PC-relative, which nothing could satisfy from more than 2 GiB away: such code reads copies
    // (`Export::copyable`), which the loader keeps in the extension's data: writable, so an assignment
    // changes the extension's copy.
    let streams = "#include <stdio.h>\n\
                   long report(long n) {\n\
                       fprintf(stderr, \"report: %ld\\n\", n);\n\
                       fputs(\"report done\\n\", stdout);\n\
                       return fflush(stdout) == 0 ? n + 1 : -1;\n\
                   }\n\
                   long stream(long address) { return address ? (long)&stderr : (long)stderr; }\n\
                   void redirect(void) { stderr = stdout; }\n";
    extern "C" {
        static stdout: *mut std::ffi::c_void;
        static stderr: *mut std::ffi::c_void;
    }
    // SAFETY: reading the C library's initialised `stderr` pointer.
    let (value, address) = unsafe { (stderr as i64, &raw const stderr as i64) };
    for (flags, copied, clang) in [
        (&["-fhosted", "-O2", "-fPIC"][..], false, false),
        (
            &["-fhosted", "-O2", "-fPIC", "-D_FORTIFY_SOURCE=2"][..],
            false,
            false,
        ),
        (&["-fhosted", "-O2", "-fPIE"][..], true, false),
        (&["-fhosted", "-O2", "-fno-pic"][..], true, false),
        (
            &["-fhosted", "-O2", "-fPIE", "-D_FORTIFY_SOURCE=2"][..],
            true,
            false,
        ),
        // clang's `-fPIE` goes through the GOT (it does not count on copy relocations); `-fno-pic` does not.
        (&["-O2", "-fPIE"][..], false, true),
        (&["-O2", "-fno-pic"][..], true, true),
    ] {
        let r = registry();
        let object = if clang {
            common::compile_for("x86_64-linux-gnu", streams, flags)
        } else {
            common::compile_c(streams, flags)
        };
        r.load("streams", &object)
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        assert_eq!(call(&r, "report", &[41]), 42, "{flags:?}");
        assert_eq!(call(&r, "stream", &[0]), value, "{flags:?}: the stream");
        let seen = call(&r, "stream", &[1]);
        assert_eq!(
            seen != address,
            copied,
            "{flags:?}: a copy, or the variable"
        );
        if copied {
            call(&r, "redirect", &[]);
            // SAFETY: reading the C library's `stdout` and `stderr` pointers.
            let (out, err) = unsafe { (stdout as i64, stderr as i64) };
            assert_eq!(call(&r, "stream", &[0]), out, "{flags:?}: the copy changed");
            assert_eq!(err, value, "{flags:?}: the host's stderr did not");
        }
    }
}

/// Everyday C: `assert`, `errno`, `<ctype.h>`, `sscanf`, `vsnprintf` behind a logging helper, `strtoll`,
/// `strcasecmp`, `getenv`, `rand`. glibc's headers turn several into internal entry points
/// (`__assert_fail`, `__errno_location`, `__ctype_b_loc`, `__isoc99_sscanf`, and `__vsnprintf_chk` with
/// `_FORTIFY_SOURCE`), which `LIBC_EXPORTS` offers too.
#[test]
fn everyday_c_library_calls_run() {
    let source = "#include <assert.h>\n#include <ctype.h>\n#include <errno.h>\n#include <stdarg.h>\n\
                  #include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <strings.h>\n\
                  static char log_buf[64];\n\
                  static void say(const char *fmt, ...) {\n\
                      va_list ap; va_start(ap, fmt); vsnprintf(log_buf, sizeof log_buf, fmt, ap); va_end(ap);\n\
                  }\n\
                  const char *last_log(void) { return log_buf; }\n\
                  long parse(const char *text) {\n\
                      assert(text != NULL);\n\
                      char word[32]; int n = 0;\n\
                      if (sscanf(text, \"%31s %d\", word, &n) != 2) return -1;\n\
                      for (char *p = word; *p; p++) *p = (char)toupper((unsigned char)*p);\n\
                      if (!isalpha((unsigned char)word[0])) return -2;\n\
                      errno = 0;\n\
                      (void)strtoll(\"99999999999999999999\", NULL, 10);\n\
                      if (errno != ERANGE) return -3;\n\
                      long total = n + (long)strspn(word, \"ABCDEFGHIJKLMNOPQRSTUVWXYZ\");\n\
                      if (strcasecmp(word, \"hello\") == 0) total += 1000;\n\
                      if (getenv(\"PATH\") == NULL) return -4;\n\
                      srand(1); (void)rand();\n\
                      say(\"%s=%ld\", word, total);\n\
                      return total;\n\
                  }\n";
    for flags in [
        &["-fhosted", "-O2"][..],
        &["-fhosted", "-O2", "-D_FORTIFY_SOURCE=2"][..],
        &["-fhosted", "-O0"][..],
    ] {
        let r = registry();
        r.load("everyday", &common::compile_c(source, flags))
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        let text = c"hello 7";
        // "HELLO": 5 letters, plus 7, plus 1000 for the case-insensitive match.
        assert_eq!(
            call(&r, "parse", &[text.as_ptr() as i64]),
            1012,
            "{flags:?}"
        );
        let log = call(&r, "last_log", &[]);
        // SAFETY: `last_log` returns the extension's NUL-terminated static buffer, still loaded.
        let log = unsafe { std::ffi::CStr::from_ptr(log as *const std::ffi::c_char) };
        assert_eq!(log.to_str(), Ok("HELLO=1012"), "{flags:?}");
    }
}

/// A user's trial of ordinary C found these refused as undefined: `<math.h>` (and gcc's `sincos`), `setjmp`,
/// `strtok_r`, `strndup`, `strerror`, reading files, what `_FORTIFY_SOURCE` makes of `vsprintf` and
/// `strncat`, clang's `bcmp` for `memcmp(...) == 0`, and the compiler-runtime helpers of
/// `__builtin_popcount`, 128-bit division and complex products. Each now runs, from gcc at -O0 and -O2 (also
/// fortified) and clang at -O2.
#[test]
fn more_everyday_c_runs() {
    let source = r#"
        #include <complex.h>
        #include <math.h>
        #include <setjmp.h>
        #include <stdarg.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        static jmp_buf where;
        static void bail(int code) { longjmp(where, code); }
        /* 30 + 2 = 32: the sum of hypot(3, 4) * 6 and a jump back with 2. */
        long maths(long angle_deg) {
            double a = angle_deg * 3.14159265358979323846 / 180.0;
            double s = sin(a), c = cos(a);                         /* gcc -O2: sincos */
            long v = lround(hypot(3.0, 4.0) * 6.0 * (s * s + c * c)) + lround(floor(pow(2.0, 0.5)) - 1.0);
            int code = setjmp(where);
            if (code == 0) bail(2);
            volatile double zero = 0.0;
            return v + code + (long)sqrt(zero);
        }
        /* Words of "a,b;;c" split at , and ; : 3, plus strlen(strndup("hello", 3)) = 3, plus a message. */
        long words(void) {
            char text[] = "a,b;;c", *save = NULL; long n = 0;
            for (char *w = strtok_r(text, ",;", &save); w; w = strtok_r(NULL, ",;", &save)) n++;
            char *d = strndup("hello", 3); n += (long)strlen(d); free(d);
            return n + (strerror(2) != NULL && strerror(2)[0] != 0);
        }
        static char out[64];
        static void logf_(const char *fmt, ...) { va_list ap; va_start(ap, fmt); vsprintf(out, fmt, ap); va_end(ap); }
        /* Reads the first line of the file at path, reports its length through vsprintf and strncat. */
        long first_line(const char *path) {
            FILE *f = fopen(path, "r");
            if (!f) return -1;
            char line[32], word[8];
            if (!fgets(line, sizeof line, f)) { fclose(f); return -2; }
            if (fscanf(f, "%7s", word) != 1 || strcmp(word, "second") != 0 || getc(f) != '\n') return -4;
            fclose(f);
            logf_("%zu:", strlen(line));
            strncat(out, line, 4);
            const char *volatile expected = "7:abcd"; /* 7: "abcdef" and its newline */
            return memcmp(out, expected, strlen(expected)) == 0 ? (long)strlen(out) : -3; /* clang: bcmp */
        }
        /* popcount(0xff) = 8, (2^100 / 3) % 1000 via 128-bit division, (1+2i)(3+4i) = -5+10i (5), and
           back: (-5+10i) / (1+2i) = 3+4i (7). */
        long runtime(long x) {
            unsigned __int128 big = (unsigned __int128)1 << 100;
            long p = __builtin_popcountl((unsigned long)x);
            long q = (long)((big / (unsigned __int128)(x - 252)) % 1000);
            volatile double one = 1.0;
            double complex a = one + 2.0 * I, b = 3.0 * one + 4.0 * one * I;
            double complex z = a * b, w = z / a;
            return p * 1000000 + q * 100 + lround(creal(z) + cimag(z)) + lround(creal(w) + cimag(w));
        }
        /* A Rust user's trial: 128-bit integers to and from floating point, fma, erf, tgamma.
           x 2^70 and back: x (5), fma(3, 3, 1) = 10, erf(0) + tgamma(4) = 6. */
        long conversions(long x) {
            volatile __int128 big = (__int128)x << 70;
            double d = (double)big;
            unsigned __int128 back = (unsigned __int128)(d / 2.0);
            volatile double three = 3.0, zero = 0.0;
            return (long)(back >> 69) + lround(fma(three, three, 1.0)) + lround(erf(zero) + tgamma(three + 1.0));
        }
    "#;
    let path = std::env::temp_dir().join(format!("llext-line-{}.txt", std::process::id()));
    std::fs::write(
        &path,
        "abcdef
second
",
    )
    .unwrap();
    let path_c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // (2^100 / 3) % 1000, computed here.
    let q = ((1u128 << 100) / 3 % 1000) as i64;
    let gcc = |flags: &[&str]| common::compile_c(source, flags);
    let clang = |flags: &[&str]| common::compile_for("x86_64-linux-gnu", source, flags);
    for (what, object) in [
        ("gcc -O0", gcc(&["-fhosted", "-O0"])),
        ("gcc -O2", gcc(&["-fhosted", "-O2"])),
        (
            "gcc -O2 fortify",
            gcc(&["-fhosted", "-O2", "-D_FORTIFY_SOURCE=2"]),
        ),
        ("clang -O2", clang(&["-fhosted", "-O2"])),
    ] {
        let r = registry();
        r.load("more", &object)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(call(&r, "maths", &[30]), 32, "{what}");
        assert_eq!(call(&r, "words", &[]), 7, "{what}");
        assert_eq!(
            call(&r, "first_line", &[path_c.as_ptr() as i64]),
            6,
            "{what}"
        );
        assert_eq!(
            call(&r, "runtime", &[255]),
            8_000_000 + q * 100 + 12,
            "{what}"
        );
        assert_eq!(call(&r, "conversions", &[5]), 21, "{what}");
    }
    std::fs::remove_file(&path).unwrap();
}

/// A trial of real C libraries (Lua 5.4, bzip2, zstd, built as their own build scripts build them) found
/// them refused as undefined: `-D_FILE_OFFSET_BITS=64` (Lua's `lprefix.h`, bzip2's Makefile, autoconf's
/// `AC_SYS_LARGEFILE`) renames `fopen`, `fseeko`, `ftello`, `tmpfile`... to glibc's `...64` names; glibc's
/// inline `getc_unlocked` calls `__uflow`; and `setvbuf`, `clearerr`, `flockfile`, `strcoll`,
/// `localeconv`, `strftime`, `gmtime_r`, `mktime`, `difftime` and zstd's `qsort_r` were missing. Each now
/// runs, from gcc and clang, with and without large-file names, optimised (inline `getc_unlocked`) or not.
#[test]
fn large_file_streams_locale_and_time_run() {
    let source = r#"
        #define _GNU_SOURCE
        #include <locale.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/types.h>
        #include <time.h>
        /* Writes n lines to a temporary file, seeks back and reads them under the stream's lock:
           the bytes read plus 100 per line. */
        long stream(long n) {
            FILE *f = tmpfile();
            if (!f) return -1;
            if (setvbuf(f, NULL, _IOFBF, 256) != 0) return -2;
            for (long i = 0; i < n; i++) fprintf(f, "line %ld\n", i);
            off_t end = ftello(f);
            if (fseeko(f, 0, SEEK_SET) != 0) return -3;
            long bytes = 0, lines = 0;
            int c;
            flockfile(f);
            while ((c = getc_unlocked(f)) != EOF) { bytes++; lines += c == '\n'; }
            funlockfile(f);
            if (!feof(f)) return -4;
            clearerr(f);
            if (feof(f)) return -5;
            fclose(f);
            return bytes == (long)end ? bytes + 100 * lines : -6;
        }
        static int by_rest(const void *a, const void *b, void *arg) {
            long k = *(const long *)arg, x = *(const int *)a % k, y = *(const int *)b % k;
            return (x > y) - (x < y);
        }
        /* One decimal digit per check that holds, from the right. */
        long world(long k) {
            long r = 0;
            r += setlocale(LC_ALL, NULL) != NULL;
            r += 10 * (localeconv()->decimal_point[0] == '.');
            r += 100 * (strcoll("abc", "abd") < 0);
            struct tm t = {0};
            t.tm_year = 100; t.tm_mday = 1; t.tm_hour = 12;
            r += 1000 * (mktime(&t) != (time_t)-1 && t.tm_wday == 6);  /* 2000-01-01: a Saturday */
            time_t noon = 946728000;
            struct tm g;
            char text[32];
            r += 10000 * (gmtime_r(&noon, &g) != NULL && strftime(text, sizeof text, "%Y-%m-%d %H", &g) == 13
                          && strcmp(text, "2000-01-01 12") == 0);
            r += 100000 * (difftime(noon + 5, noon) == 5.0);
            int v[] = {13, 7, 22, 4};
            qsort_r(v, 4, sizeof v[0], by_rest, &k);
            r += 1000000 * (v[0] == 22 && v[1] == 13 && v[2] == 4 && v[3] == 7);
            return r;
        }
    "#;
    let gcc = |flags: &[&str]| common::compile_c(source, flags);
    let clang = |flags: &[&str]| common::compile_for("x86_64-linux-gnu", source, flags);
    let large = "-D_FILE_OFFSET_BITS=64";
    for (what, object) in [
        ("gcc -O0", gcc(&["-fhosted", "-O0", large])),
        ("gcc -O2", gcc(&["-fhosted", "-O2", large])),
        ("gcc -O2 32-bit offsets", gcc(&["-fhosted", "-O2"])),
        ("clang -O2", clang(&["-fhosted", "-O2", "-fPIC", large])),
    ] {
        let r = registry();
        r.load("streams", &object)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // "line 0\n" to "line 2\n": 21 bytes, 3 lines.
        assert_eq!(call(&r, "stream", &[3]), 321, "{what}");
        assert_eq!(call(&r, "world", &[10]), 1_111_111, "{what}");
    }
}

/// `-flto` objects hold the compiler's intermediate code, not machine code: a typed error says so (gcc's
/// slim objects are ELF with only GIMPLE sections, clang's are LLVM bitcode).
#[test]
fn link_time_optimisation_objects_are_named_as_such() {
    let source = "long twice(long x) { return 2 * x; }\n";
    let gcc = common::compile_c(source, &["-flto"]);
    let clang = common::compile_for("x86_64-linux-gnu", source, &["-flto"]);
    // What cargo makes of a `lib` crate in a profile with `lto` (`cargo rustc -- --emit obj`): a review
    // found the error's advice named only C compilers' flags.
    let rustc = rustc_object(
        "rust-bitcode",
        "#![no_std]\n#[no_mangle]\npub extern \"C\" fn twice(x: i64) -> i64 { x.wrapping_mul(2) }\n",
        "twice",
        &["-C", "linker-plugin-lto"],
    );
    for (object, format) in [
        (gcc, "GCC's GIMPLE"),
        (clang, "LLVM bitcode"),
        (rustc, "LLVM bitcode"),
    ] {
        let r = registry();
        match r.load("lto", &object) {
            Err(e @ llext::Error::IntermediateCode { format: f }) => {
                assert_eq!(f, format);
                let text = e.to_string();
                assert!(text.contains("-flto"), "{text}");
                assert_eq!(
                    text.contains("from rustc, without -C linker-plugin-lto"),
                    format == "LLVM bitcode",
                    "{text}"
                );
            }
            other => panic!("{format}: {other:?}"),
        }
        assert!(r.is_empty());
    }
}

/// A user's trial: a table gathered with `__attribute__((section("handlers")))` and walked from
/// `__start_handlers` to `__stop_handlers` (a common plugin idiom, which a static link supports) was
/// refused as two undefined symbols. They are the bounds of the object's section now, from gcc (PIE, PIC,
/// no PIC) and clang, and after a portable restore at new addresses.
#[test]
fn section_bounds_of_gathered_tables_are_defined() {
    let source = r#"
        struct handler { const char *name; long (*fn)(long); };
        static long twice(long x) { return 2 * x; }
        static long negate(long x) { return -x; }
        static long square(long x) { return x * x; }
        static const struct handler h1 __attribute__((section("handlers"), used)) = { "twice", twice };
        static const struct handler h2 __attribute__((section("handlers"), used)) = { "negate", negate };
        static const struct handler h3 __attribute__((section("handlers"), used)) = { "square", square };
        extern const struct handler __start_handlers[], __stop_handlers[];
        long run_all(long x) {
            long sum = 0;
            for (const struct handler *h = __start_handlers; h < __stop_handlers; h++) sum += h->fn(x);
            return sum;
        }
        long handler_count(void) { return __stop_handlers - __start_handlers; }
    "#;
    for (what, object) in [
        ("gcc", common::compile_c(source, &[])),
        ("gcc -fPIC", common::compile_c(source, &["-fPIC"])),
        ("gcc -fno-pic", common::compile_c(source, &["-fno-pic"])),
        (
            "clang -O2",
            common::compile_for("x86_64-linux-gnu", source, &[]),
        ),
    ] {
        let r = registry();
        r.load("handlers", &object)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(call(&r, "handler_count", &[]), 3, "{what}");
        // 2*5 - 5 + 25.
        assert_eq!(call(&r, "run_all", &[5]), 30, "{what}");
        #[cfg(feature = "portable")]
        {
            let other = common::restored_elsewhere(&r);
            assert_eq!(call(&other, "run_all", &[4]), 8 - 4 + 16, "{what}");
        }
    }
    // Review: only a loaded section is bounded; an allocated note of the same name is not loaded (it was
    // taken, then refused as ambiguous or as not loaded).
    let beside_a_note = "__asm__(\".section notey,\\\"a\\\",@note\\n.long 0,0,0\\n\
                         .section notey,\\\"a\\\",@progbits,unique,3\\n.quad 7\\n.text\\n\");\n\
                         extern const long __start_notey[], __stop_notey[];\n\
                         long count_notey(void) { return (__stop_notey - __start_notey) * 100 + __start_notey[0]; }\n";
    let r = registry();
    r.load("notey", &common::compile_c(beside_a_note, &[]))
        .unwrap();
    assert_eq!(call(&r, "count_notey", &[]), 107);
    // Several sections of that name (`unique` in the assembler; rustc makes one per `#[link_section]`
    // static) are bounded together, as a static link concatenates them, with a section of another kind
    // of memory between them in the file; also after a portable restore.
    let several = "__asm__(\".section handlers,\\\"a\\\",@progbits,unique,1\\n.quad 1\\n\
                   .section between,\\\"aw\\\",@progbits\\n.quad 99\\n\
                   .section handlers,\\\"a\\\",@progbits,unique,2\\n.quad 2\\n\
                   .section handlers,\\\"a\\\",@progbits,unique,3\\n.quad 4\\n.text\\n\");\n\
                   extern const long __start_handlers[], __stop_handlers[];\n\
                   long handlers_sum(void) { long s = 0; \
                   for (const long *p = __start_handlers; p < __stop_handlers; p++) s += *p; \
                   return s * 10 + (__stop_handlers - __start_handlers); }\n";
    for flags in [&["-fPIC"][..], &["-fno-pic"][..]] {
        let object = common::compile_c(several, flags);
        for storage in [llext::Storage::Copy, llext::Storage::InPlace] {
            let r = registry();
            let options = llext::LoadOptions {
                storage,
                ..llext::LoadOptions::default()
            };
            let bytes = common::leak(object.clone());
            r.load_static("several", bytes, &options).unwrap();
            assert_eq!(call(&r, "handlers_sum", &[]), 73, "{flags:?} {storage:?}");
            // (A portable context of sections used in place is refused: storage it does not carry.)
            #[cfg(feature = "portable")]
            if storage == llext::Storage::Copy {
                let other = common::restored_elsewhere(&r);
                assert_eq!(call(&other, "handlers_sum", &[]), 73, "{flags:?}");
            }
        }
    }
    // Another section of their kind between them, which layout would place between them too: refused.
    let apart = several.replace("between,\\\"aw", "between,\\\"a");
    assert_ne!(apart, several);
    match registry().load("apart", &common::compile_c(&apart, &[])) {
        Err(llext::Error::BadSymbol { name, reason, .. }) => {
            assert_eq!(name, "__start_handlers");
            assert!(reason.contains("other sections between"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Of two kinds of memory, no one range holds them: refused.
    let mixed = "__asm__(\".section handlers,\\\"a\\\",@progbits,unique,1\\n.quad 1\\n\
                 .section handlers,\\\"aw\\\",@progbits,unique,2\\n.quad 2\\n.text\\n\");\n\
                 extern const long __start_handlers[];\n\
                 long first(void) { return __start_handlers[0]; }\n";
    match registry().load("mixed", &common::compile_c(mixed, &[])) {
        Err(llext::Error::BadSymbol { name, reason, .. }) => {
            assert_eq!(name, "__start_handlers");
            assert!(reason.contains("different memory"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// Code built without `-fPIC` takes the address of a C library function as a 32-bit value
/// (`mov $strlen, %edi`, `R_X86_64_32`, or a pointer table's `R_X86_64_64`), which the host's C library,
/// far above 4 GiB, does not fit. A user's C trial found such objects refused ("absolute address does not fit
/// 32 bits"); the C library's exports are functions (`Export::function`), so direct references reach the
/// extension's call stub for them, as an executable's reach its PLT — also after a portable restore into
/// another registry. Within the extension the address is one: `f == strlen` holds.
#[test]
fn non_pic_code_takes_the_address_of_c_library_functions() {
    let source = r#"
        #include <stdlib.h>
        #include <string.h>
        typedef size_t (*lenfn)(const char *);
        __attribute__((noinline)) static long apply(lenfn f, const char *s) { return (long)f(s); }
        static int by_value(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
        static lenfn table[] = { strlen };
        /* strlen("hello") through a pointer (5), the pointer compared with a direct one and with a table's
           (10), qsort with the extension's comparator and bsearch through the C library's own pointer to it
           (100 * index 2). */
        long addresses(long x) {
            volatile lenfn f = strlen;
            if (table[0] != f) return -1;
            int v[] = {9, 3, 7, 1};
            qsort(v, 4, sizeof v[0], by_value);
            int key = 7;
            int *at = bsearch(&key, v, 4, sizeof v[0], by_value);
            return apply(strlen, "hello") + (f == strlen) * 10 + (at ? (at - v) * 100 : -1000) + x;
        }
    "#;
    for flags in [&["-fno-pic", "-O0"][..], &["-fno-pic", "-O2"]] {
        let object = common::compile_c(source, flags);
        let r = registry();
        r.load("addresses", &object)
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        assert_eq!(call(&r, "addresses", &[1000]), 1215, "{flags:?}");
        #[cfg(feature = "portable")]
        {
            let other = common::restored_elsewhere(&r);
            assert_eq!(
                call(&other, "addresses", &[2000]),
                2215,
                "{flags:?} restored"
            );
        }
    }
}

/// Pointers to a built-in function's stub in data, after a portable restore into another registry (the
/// original gone): a review's check of `Export::function`.
#[test]
fn non_pic_data_pointers_to_function_stubs_survive_a_restore() {
    let source = r#"
        #include <string.h>
        #include <stddef.h>
        typedef size_t (*lenfn)(const char *);
        static size_t mylen(const char *s) { return 100 + strlen(s); }
        lenfn table[3] = { strlen, strlen, strlen };   /* R_X86_64_64 words */
        lenfn g;                                        /* .bss: no relocation */
        long set(long x) {
            table[1] = mylen;                 /* changed to the extension's own function */
            table[2] = (lenfn)strchr;         /* changed to another built-in (its stub) */
            g = strlen;                       /* stored at run time where no relocation is */
            return 0;
        }
        long probe(long x) {
            return (table[0] == strlen) + 2 * (table[1] == mylen) + 4 * (table[2] == (lenfn)strchr)
                 + 8 * (g == strlen) + 16 * (table[0]("abc") == 3) + 32 * (table[1]("abc") == 103);
        }
    "#;
    for flags in [&["-fno-pic", "-O0"][..], &["-fno-pic", "-O2"]] {
        let object = common::compile_c(source, flags);
        let r = registry();
        r.load("ptrs", &object).unwrap();
        call(&r, "set", &[0]);
        assert_eq!(call(&r, "probe", &[0]), 63, "{flags:?}");
        let (ctx, _) = common::suspend_in_place(&r, 1);
        drop(ctx);
        assert_eq!(call(&r, "probe", &[0]), 63, "{flags:?} in place");
        #[cfg(feature = "portable")]
        {
            let other = common::restored_elsewhere(&r);
            drop(r);
            // Every relocated word is right, and so is `g`, stored at run time where the linker wrote
            // nothing: it held the address of the stub in the extension's code, and moved with it.
            assert_eq!(
                call(&other, "probe", &[0]),
                63,
                "{flags:?} restored elsewhere"
            );
        }
    }
}

/// One object with both a GOT reference (`-fPIC` part, e.g. after `ld -r`) and a direct one to a built-in
/// function sees one address: a review found the GOT slot holding the function's own.
#[test]
fn non_pic_got_and_direct_references_agree() {
    let source = r#"
        #include <string.h>
        long same(long x) {
            void *a, *b = (void *)strlen;
            __asm__ volatile ("movq strlen@GOTPCREL(%%rip), %0" : "=r"(a));
            return a == b;
        }
    "#;
    let object = common::compile_c(source, &["-fno-pic", "-O2"]);
    let r = registry();
    r.load("same", &object).unwrap();
    assert_eq!(call(&r, "same", &[0]), 1);
    #[cfg(feature = "portable")]
    {
        let other = common::restored_elsewhere(&r);
        assert_eq!(call(&other, "same", &[0]), 1, "restored");
    }
}

/// A Rust plugin trial: rustc gives every `#[link_section = "X"]` static a section of its own, so a table
/// gathered that way (what `linkme`-style registration builds) and walked with `__start_X`/`__stop_X` was
/// refused as ambiguous. The sections are now placed side by side and bounded together.
#[test]
fn a_rust_table_of_link_section_statics_is_walked() {
    let source = r#"#![no_std]
#[repr(C)]
pub struct Entry { pub id: i64, pub f: extern "C" fn(i64) -> i64 }
extern "C" fn double(x: i64) -> i64 { x.wrapping_mul(2) }
extern "C" fn triple(x: i64) -> i64 { x.wrapping_mul(3) }
#[used] #[link_section = "llext_table"] static A: Entry = Entry { id: 1, f: double };
#[used] #[link_section = "llext_table"] static B: Entry = Entry { id: 2, f: triple };
#[used] #[link_section = "llext_table"] static C: Entry = Entry { id: 4, f: double };
extern "C" { static __start_llext_table: Entry; static __stop_llext_table: Entry; }
#[no_mangle]
pub extern "C" fn table_sum(x: i64) -> i64 {
    let mut p = unsafe { core::ptr::addr_of!(__start_llext_table) };
    let end = unsafe { core::ptr::addr_of!(__stop_llext_table) };
    let mut total: i64 = 0;
    while p < end {
        // SAFETY: between the bounds of the table, which holds entries only.
        let e = unsafe { &*p };
        total = total.wrapping_add(e.id.wrapping_mul((e.f)(x)));
        p = p.wrapping_add(1);
    }
    total
}
"#;
    for model in ["pic", "static"] {
        let relocation = format!("relocation-model={model}");
        let object = rustc_object(
            "rust-table",
            source,
            &format!("table-{model}"),
            &["-C", "codegen-units=1", "-C", &relocation],
        );
        let r = registry();
        r.load("table", &object)
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        // 1*10 + 2*15 + 4*10.
        assert_eq!(call(&r, "table_sum", &[5]), 80, "{model}");
        #[cfg(feature = "portable")]
        {
            let other = common::restored_elsewhere(&r);
            assert_eq!(call(&other, "table_sum", &[1]), 16, "{model}");
        }
    }
}

/// Review: the sections of one name bounded together start where a static link starts them, at the
/// largest alignment among them, even when the first of them (an empty marker of alignment 1) needs
/// less: `__start_X` is the start of the table, not of the padding before its first entry.
#[test]
fn a_gathered_table_starts_at_the_alignment_of_its_entries() {
    let source = "__asm__(\".section pre,\\\"a\\\",@progbits\\n.byte 1\\n\
                  .section handlers,\\\"a\\\",@progbits,unique,1\\n\
                  .section handlers,\\\"a\\\",@progbits,unique,2\\n.balign 8\\n.quad 2\\n\
                  .section handlers,\\\"a\\\",@progbits,unique,3\\n.balign 8\\n.quad 4\\n.text\\n\");\n\
                  extern const long __start_handlers[], __stop_handlers[];\n\
                  long handlers_sum(void) { long s = 0; \
                  for (const long *p = __start_handlers; p < __stop_handlers; p++) s += *p; \
                  return s * 10 + (__stop_handlers - __start_handlers); }\n\
                  long start_misalignment(void) { return (long)__start_handlers % 8; }\n";
    let object = common::compile_c(source, &[]);
    let r = registry();
    r.load("aligned", &object).unwrap();
    assert_eq!(call(&r, "start_misalignment", &[]), 0);
    assert_eq!(call(&r, "handlers_sum", &[]), 62);
}

/// Compiles the Rust `source` as a `no_std` library into an object with rustc (`panic=abort`,
/// `opt-level=2`, then `flags`), in the test target directory's `dir` as `stem.o`.
fn rustc_object(dir: &str, source: &str, stem: &str, flags: &[&str]) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{stem}.rs"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(format!("{stem}.o"));
    let status = std::process::Command::new("rustc")
        .args(["--crate-type", "lib", "--emit", "obj", "--edition", "2021"])
        .args(["-C", "panic=abort", "-C", "opt-level=2"])
        .args(flags)
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "rustc {flags:?} {}", src.display());
    std::fs::read(&out).unwrap()
}
