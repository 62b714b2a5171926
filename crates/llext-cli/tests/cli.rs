//! The `llext` command, run as a process on real fixture objects.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use llext_fixtures::path;

fn llext(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llext"))
        .args(args)
        .output()
        .unwrap()
}

fn shell(script: &str) -> Output {
    shell_bytes(script.as_bytes())
}

fn shell_bytes(script: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llext"))
        .arg("shell")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the command and checks that it fails (status 1) with an `error:` line that says `expected`.
fn fails_with(args: &[&str], expected: &str) {
    let out = llext(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(
        err.starts_with("error: ") && err.contains(expected),
        "{args:?}: {err}"
    );
}

/// A file name of this test process in the test target directory (`stem-PID.snap`).
fn scratch_snapshot(stem: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{stem}-{}.snap", std::process::id()));
    path.to_str().unwrap().to_owned()
}

fn fixture(name: &str) -> String {
    path(name).display().to_string()
}

#[test]
fn run_calls_a_function_and_prints_the_result() {
    for v in llext_fixtures::variants() {
        let out = llext(&[
            "run",
            "--call",
            "basic_add",
            "--arg",
            "2",
            "--arg",
            "3",
            &fixture(&v.file_name("basic")),
        ]);
        assert!(out.status.success(), "{v}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).lines().any(|l| l == "returned: 5"),
            "{v}: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn run_links_later_files_against_earlier_ones_and_runs_destructors() {
    let out = llext(&[
        "run",
        "--call",
        "use_math",
        "--arg",
        "0x10",
        &fixture("libmath-gcc-O0-nopic.o"),
        &fixture("usemath-clang-O2-pic.o"),
        &fixture("ctors-gcc-Os-pic.o"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let returned = lines
        .iter()
        .position(|l| *l == "returned: 48")
        .expect(&stdout);
    let dtor = lines
        .iter()
        .position(|l| *l == "ctors: destructor ran")
        .expect(&stdout);
    assert!(
        dtor > returned,
        "destructors run at teardown, after the call: {stdout}"
    );
}

#[test]
fn run_with_printf_output_in_order() {
    let out = llext(&[
        "run",
        "--call",
        "basic_strings",
        &fixture("basic-gcc-O2-pic.o"),
    ]);
    assert_eq!(
        text(&out.stdout),
        "basic: llext-42 (8 chars)\nreturned: 8\n"
    );
}

#[test]
fn run_rust_extension_and_negative_args() {
    let out = llext(&[
        "run",
        "--call",
        "rs_sum_to",
        "--arg",
        "-5",
        &fixture("rsext.o"),
    ]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "returned: 0\n");
}

#[test]
fn failures_exit_1_with_an_error_line() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["run".into(), fixture("undef-gcc-O2-pic.o")],
            "no_such_function",
        ),
        (
            vec!["run".into(), "/nonexistent.o".into()],
            "/nonexistent.o",
        ),
        (
            vec![
                "run".into(),
                "--call".into(),
                "nothing".into(),
                fixture("basic-gcc-O2-pic.o"),
            ],
            "nothing",
        ),
        (
            vec![
                "run".into(),
                "--arg".into(),
                "zz".into(),
                fixture("basic-gcc-O2-pic.o"),
            ],
            "zz",
        ),
        (vec!["run".into(), "--bogus".into()], "--bogus"),
        (vec!["run".into()], "FILE"),
        (
            vec!["run".into(), env!("CARGO_BIN_EXE_llext").into()],
            "relocatable",
        ),
        (vec!["inspect".into()], "FILE"),
        (vec!["check".into(), "Cargo.toml".into()], "not an ELF"),
        (vec!["frobnicate".into()], "frobnicate"),
        // Counts too large to keep every sample are refused before anything is allocated.
        (
            vec![
                "bench".into(),
                "--iterations".into(),
                "18446744073709551615".into(),
            ],
            "iteration count",
        ),
        (
            vec![
                "bench".into(),
                "restore".into(),
                "--iterations".into(),
                "100000000000000".into(),
            ],
            "iteration count",
        ),
        (
            vec![
                "run".into(),
                "--arg".into(),
                "--5".into(),
                fixture("basic-gcc-O2-pic.o"),
            ],
            "--5",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = llext(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Review of the command: an argument that is not UTF-8 panicked (`env::args`); an unreadable file among
/// `check`'s files printed its problem without `error: ` or a newline, and an unreadable first file
/// stopped the check of the others.
#[test]
fn bad_arguments_and_unreadable_files_are_error_lines() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(env!("CARGO_BIN_EXE_llext"))
        .arg("inspect")
        .arg(std::ffi::OsStr::from_bytes(b"\xff.o"))
        .output()
        .unwrap();
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.starts_with("error: ") && e.contains("UTF-8"), "{e}");

    let good = fixture("libmath-gcc-O2-pic.o");
    for files in [
        [good.as_str(), "/nonexistent.o"],
        ["/nonexistent.o", good.as_str()],
    ] {
        let out = llext(&["check", files[0], files[1]]);
        let e = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{files:?}: {e}");
        assert!(
            text(&out.stdout).starts_with("ok: "),
            "{files:?}: the good file is checked"
        );
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "{files:?}: {e}");
        assert!(
            lines[0].starts_with("error: /nonexistent.o: "),
            "{files:?}: {e}"
        );
        assert_eq!(
            lines[1], "error: 1 of 2 files would not load",
            "{files:?}: {e}"
        );
    }
}

#[test]
fn parse_int_takes_the_whole_decimal_range() {
    let out = llext(&[
        "run",
        "--call",
        "basic_add",
        "--arg",
        "-9223372036854775808",
        "--arg",
        "1",
        &fixture("basic-gcc-O2-pic.o"),
    ]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        s.lines().any(|l| l == "returned: -9223372036854775807"),
        "{s}"
    );
}

#[test]
fn inspect_reads_executables_too() {
    // inspect reads any ELF file; loading one that is not relocatable is refused by `run` (above).
    let out = llext(&["inspect", env!("CARGO_BIN_EXE_llext")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("DYN (shared object)"));
}

#[test]
fn inspect_shows_sections_regions_symbols_and_relocations() {
    let out = llext(&["inspect", &fixture("libmath-gcc-O2-pic.o")]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(s.contains("REL (relocatable object)"), "{s}");
    assert!(s.contains("x86_64"), "{s}");
    assert!(s.contains(".exported_sym") && s.contains("exports"), "{s}");
    assert!(s.contains("exported symbols (3)"), "{s}");
    assert!(s.contains("R_X86_64_64"), "{s}");

    let out = llext(&["inspect", "--json", &fixture("usemath-gcc-O2-nopic.o")]);
    assert!(out.status.success());
    let j = text(&out.stdout);
    assert!(j.starts_with('{') && j.trim_end().ends_with('}'), "{j}");
    assert!(j.contains("\"machine\":62"), "{j}");
    assert!(j.contains("{\"name\":\"lm_mul\",\"weak\":false}"), "{j}");
    assert!(j.contains("\"R_X86_64_PLT32\""), "{j}");
}

#[test]
fn check_reports_every_unresolved_symbol_without_running() {
    let out = llext(&["check", &fixture("usemath-gcc-O2-pic.o")]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("lm_mul") && e.contains("lm_scale"), "{e}");
    assert!(
        e.lines().filter(|l| l.starts_with("error: ")).count() >= 3,
        "{e}"
    );

    let out = llext(&[
        "check",
        &fixture("libmath-gcc-O2-pic.o"),
        &fixture("usemath-gcc-O2-pic.o"),
        &fixture("ctors-gcc-O2-pic.o"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert_eq!(
        s.lines().filter(|l| l.starts_with("ok: ")).count(),
        3,
        "{s}"
    );
    assert!(
        !s.contains("destructor ran"),
        "check must not run extension code: {s}"
    );
}

#[test]
fn shell_session() {
    let lib = fixture("libmath-gcc-O2-pic.o");
    let user = fixture("usemath-gcc-O2-pic.o");
    let out = shell(&format!(
        "help\nload {lib} libmath\nload {user} usemath\nload {lib} libmath\nlist\nsymbols libmath\ncall use_math 5\nunload libmath\ncall lm_mul 6 7\nunload libmath\nunload usemath\nunload libmath\nlist\nbogus\n"
    ));
    let s = text(&out.stdout);
    let e = text(&out.stderr);
    assert!(s.contains("loaded libmath"), "{s}");
    assert!(s.contains("libmath already loaded, use count 2"), "{s}");
    assert!(s.contains("usemath uses=1 deps=libmath"), "{s}");
    assert!(s.contains("export lm_mul"), "{s}");
    assert!(s.contains("returned: 15"), "{s}");
    assert!(s.contains("libmath still loaded, use count 1"), "{s}");
    assert!(s.contains("unloaded usemath"), "{s}");
    assert!(s.contains("returned: 42"), "{s}");
    assert!(s.contains("no extensions loaded"), "{s}");
    assert!(
        e.contains("error: cannot unload `libmath`: still used by `usemath`"),
        "{e}"
    );
    assert!(e.contains("error: unknown command `bogus`"), "{e}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed command makes the exit status 1"
    );

    let ok = shell(&format!("load {lib}\ncall lm_mul 2 21\n"));
    assert!(ok.status.success());
    assert!(text(&ok.stdout).contains("returned: 42"));

    let refused = shell(&format!(
        "load {lib}\nload {user}\nunload libmath-gcc-O2-pic\n"
    ));
    assert!(
        text(&refused.stderr).contains("still used by `usemath-gcc-O2-pic`"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn demo_runs() {
    let out = llext(&["demo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("use_math(5) = 15"), "{s}");
    assert!(s.contains("rs_fib(50) = 12586269025"), "{s}");
    assert!(s.contains("unload libmath refused"), "{s}");
    assert!(s.contains("0 extensions loaded now"), "{s}");
}

#[test]
fn bench_prints_every_median_as_an_integer() {
    let out = llext(&["bench", "--iterations", "20"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let value = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("no `{key}:` line in {s}"))
    };
    assert!(value("object").ends_with(".o"), "{s}");
    for key in [
        "object_bytes",
        "load_ns",
        "unload_ns",
        "load_demo_set_ns",
        "iterations",
    ] {
        assert!(value(key).parse::<u64>().is_ok(), "`{key}` in {s}");
    }
    assert_eq!(value("iterations"), "20", "{s}");

    let out = llext(&["bench", "restore", "--iterations", "5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = text(&out.stdout);
    for prefix in ["", "set50_"] {
        for key in [
            "load_ns",
            "restore_inplace_ns",
            "restore_portable_ns",
            "memcpy_ns",
            "context_inplace_bytes",
            "context_portable_bytes",
            "memory_bytes",
        ] {
            let key = format!("{prefix}{key}: ");
            let line = r.lines().find_map(|l| l.strip_prefix(key.as_str()));
            assert!(
                line.is_some_and(|v| v.parse::<u64>().is_ok()),
                "`{key}` in {r}"
            );
        }
    }

    for bad in [&["bench", "--iterations", "0"][..], &["bench", "store"]] {
        let out = llext(bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        assert!(text(&out.stderr).starts_with("error: "), "{bad:?}");
    }
}

#[test]
fn snapshot_save_and_restore_across_processes() {
    let snap = scratch_snapshot("cli");
    let snap = snap.as_str();
    let out = llext(&[
        "snapshot",
        "save",
        "--out",
        snap,
        &fixture("libmath-gcc-O2-pic.o"),
        &fixture("usemath-gcc-O2-nopic.o"),
        &fixture("ctors-clang-O2-pic.o"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("saved 3 extensions"));
    // A new process restores it (new addresses under ASLR for the host, new blocks for the extensions).
    let out = llext(&[
        "snapshot", "restore", snap, "--call", "use_math", "--arg", "5",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.lines().any(|l| l == "returned: 15"), "{s}");
    assert!(
        s.contains("ctors: destructor ran"),
        "restored extensions are torn down like loaded ones: {s}"
    );
    let out = llext(&["snapshot", "restore", snap, "--call", "ctors_state"]);
    assert!(
        text(&out.stdout).contains("returned: 12"),
        "not re-initialised: state as saved"
    );

    // Refusals: exit 1 with `error: ...`.
    let bytes = std::fs::read(snap).unwrap();
    let bad = format!("{snap}.bad");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    for args in [
        vec!["snapshot", "restore", bad.as_str()],
        vec!["snapshot", "restore", "/nonexistent.snap"],
        vec!["snapshot", "save", snap],
        vec!["snapshot"],
    ] {
        let out = llext(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).starts_with("error: "),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let mut flipped = bytes.clone();
    flipped[60] ^= 4;
    std::fs::write(&bad, &flipped).unwrap();
    let out = llext(&["snapshot", "restore", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("checksum"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn shell_suspend_save_and_restore() {
    let snap = scratch_snapshot("shell");
    let snap = snap.as_str();
    let lib = fixture("libmath-gcc-O2-pic.o");
    let user = fixture("usemath-gcc-O2-pic.o");
    let out = shell(&format!("load {lib} libmath\nload {user} usemath\ncall use_math 2\nsuspend\ncall use_math 2\nsave {snap} usemath\n"));
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s}{}", text(&out.stderr));
    assert!(s.contains("restored 2 extensions"), "{s}");
    assert!(
        s.contains("returned: 6") && s.contains("returned: 8"),
        "state survives suspend: {s}"
    );
    assert!(s.contains("saved 2 extensions"), "{s}");
    let out = shell(&format!(
        "restore {snap}\ncall use_math 1\nlist\nrestore {snap}\n"
    ));
    let s = text(&out.stdout);
    assert!(
        s.contains("restored 2 extensions") && s.contains("returned: 5"),
        "{s}"
    );
    assert!(
        text(&out.stderr).contains("already loaded"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1));

    // A line that is not UTF-8 fails alone; the session goes on and tears down as usual.
    let ctors = fixture("ctors-gcc-O2-pic.o");
    let mut script = b"\xff\xfe\n".to_vec();
    script.extend_from_slice(format!("load {ctors}\ncall ctors_state\n").as_bytes());
    let out = shell_bytes(&script);
    let (s, e) = (text(&out.stdout), text(&out.stderr));
    assert!(e.contains("error: the line is not valid UTF-8"), "{e}");
    assert!(
        s.contains("returned: 12") && s.contains("ctors: destructor ran"),
        "{s}"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// Review of the command: `snapshot restore` unloaded each extension once, so one saved with a use count
/// of 2 was dropped with the registry without its destructors.
#[test]
fn snapshot_restore_tears_down_extensions_used_twice() {
    let snap = scratch_snapshot("twice");
    let snap = snap.as_str();
    let ctors = fixture("ctors-gcc-O2-pic.o");
    let out = shell(&format!("load {ctors}\nload {ctors}\nsave {snap}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = llext(&["snapshot", "restore", snap, "--call", "ctors_state"]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.contains("returned: 12"), "{s}");
    assert_eq!(s.matches("ctors: destructor ran").count(), 1, "{s}");
}

#[test]
fn legacy_constructor_lists_run_in_order() {
    for v in llext_fixtures::variants() {
        let out = llext(&[
            "run",
            "--call",
            "legacy_order",
            &fixture(&v.file_name("legacy_ctors")),
        ]);
        assert!(out.status.success(), "{v}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "returned: 1243\nlegacy: dtor 7\nlegacy: dtor 8\nlegacy: fini 6\nlegacy: fini 5\n",
            "{v}"
        );
    }
}

/// Builds `source` with clang for `triple` in the test's scratch directory: an object (`-c`), or with
/// `link` a bare executable (lld, no C library, entry `_start`). Returns its path.
fn clang_build(triple: &str, name: &str, source: &str, link: bool) -> String {
    let mut cmd = Command::new("clang");
    cmd.arg(format!("--target={triple}")).arg("-O2");
    if link {
        cmd.args(["-nostdlib", "-fuse-ld=lld", "-Wl,-e,_start"]);
    } else {
        cmd.arg("-c");
    }
    build_c(cmd, &format!("check-{triple}"), name, source, link)
}

/// Runs `cmd` (a compiler with its flags) on `source`, written to `<scratch>/<dir>/<name>.c`, into
/// `<name>.o` (or `<name>.elf` if `linked`) there. Returns the output's path.
fn build_c(mut cmd: Command, dir: &str, name: &str, source: &str, linked: bool) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(format!("{name}.{}", if linked { "elf" } else { "o" }));
    let status = cmd
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("the C compiler runs (install it with `cargo xtask deps`)");
    assert!(status.success(), "{cmd:?}");
    out.display().to_string()
}

/// `source` built like `gcc -c -O2 -fPIC` into `<scratch>/<dir>/<name>.o`; returns its path.
fn gcc_pic(dir: &str, name: &str, source: &str) -> String {
    let mut gcc = Command::new("gcc");
    gcc.args(["-c", "-O2", "-fPIC"]);
    build_c(gcc, dir, name, source, false)
}

/// gcc's default `-fPIE` code reads `stderr` PC-relative, as if it lay within 2 GiB: it reads a copy of
/// the pointer, which a portable restore in another process (the C library elsewhere under ASLR) must
/// take again, or the restored code writes to a stale `FILE *`.
#[test]
fn fpie_code_writes_to_stderr_also_after_a_restore_in_another_process() {
    const SOURCE: &str = "#include <stdio.h>\n\
                          long hello(long n) { fprintf(stderr, \"hello %ld\\n\", n); return n + 1; }\n";
    let mut gcc = Command::new("gcc");
    gcc.args(["-c", "-O2", "-fPIE"]);
    let object = build_c(gcc, "streams", "hello", SOURCE, false);
    let out = llext(&["run", &object, "--call", "hello", "--arg", "41"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "hello 41\n");
    assert!(text(&out.stdout).contains("returned: 42"));
    let snap = scratch_snapshot("streams");
    let out = llext(&["snapshot", "save", "--out", &snap, &object]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for _ in 0..2 {
        let out = llext(&[
            "snapshot", "restore", &snap, "--call", "hello", "--arg", "6",
        ]);
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "hello 6\n");
        assert!(text(&out.stdout).contains("returned: 7"));
    }
}

#[test]
fn check_links_objects_for_another_machine_against_the_firmware_exports() {
    const EXTENSION: &str = "long fw_add(long a, long b);\nextern long fw_counter;\n\
                             long ext_main(long x) { fw_counter++; return fw_add(x, 1); }\n";
    const FIRMWARE: &str = "long fw_counter;\nlong fw_add(long a, long b) { return a + b; }\n\
                            void _start(void) {}\n";
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    for triple in [
        "thumbv7m-none-eabi",
        "riscv32-unknown-elf",
        "riscv64-unknown-elf",
        "aarch64-none-elf",
    ] {
        let object = clang_build(triple, "ext", EXTENSION, false);

        // No exports given: every symbol the firmware must provide is a problem, all reported at once.
        let out = llext(&["check", &object]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{triple}: {err}");
        for symbol in ["fw_add", "fw_counter"] {
            assert!(
                err.contains(&format!("undefined symbol `{symbol}`")),
                "{triple}: {err}"
            );
        }

        // A text list: a name alone, a name with an address, a comment.
        let list = dir.join(format!("exports-{triple}.txt"));
        std::fs::write(&list, "fw_add\nfw_counter 0x20000100  # data\n").unwrap();
        let out = llext(&["check", "--exports", list.to_str().unwrap(), &object]);
        assert!(out.status.success(), "{triple}: {}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with("ok: "), "{triple}");
        // An unreadable file first: the machine comes from the first file that reads.
        let out = llext(&[
            "check",
            "--exports",
            list.to_str().unwrap(),
            "/nonexistent.o",
            &object,
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{triple}: {err}");
        assert!(text(&out.stdout).starts_with("ok: "), "{triple}: {err}");
        assert!(
            err.starts_with("error: /nonexistent.o: "),
            "{triple}: {err}"
        );

        // The firmware's ELF image, and `nm` output of it.
        let firmware = clang_build(triple, "firmware", FIRMWARE, true);
        let out = llext(&["check", "--exports", &firmware, &object]);
        assert!(out.status.success(), "{triple}: {}", text(&out.stderr));
        let nm = Command::new("nm").arg(&firmware).output().unwrap();
        let listing = dir.join(format!("nm-{triple}.txt"));
        std::fs::write(&listing, &nm.stdout).unwrap();
        let out = llext(&["check", "--exports", listing.to_str().unwrap(), &object]);
        assert!(out.status.success(), "{triple}: {}", text(&out.stderr));
    }

    // `nm` of a firmware built from two files, each with a local `helper` and Arm mapping symbols (`$t`),
    // and a one-letter name with an address.
    let two = dir.join("check-two-files");
    std::fs::create_dir_all(&two).unwrap();
    let sources = [
        ("a.c", "static long helper(long x) { return x + 1; }\nlong fw_add(long a, long b) { return helper(a) + b - 1; }\nvoid _start(void) {}\n"),
        ("b.c", "static long helper(long x) { return x * 2; }\nlong fw_counter;\nlong fw_twice(long x) { return helper(x); }\n"),
    ];
    for (name, text) in sources {
        std::fs::write(two.join(name), text).unwrap();
    }
    let image = two.join("firmware.elf");
    let status = Command::new("clang")
        .args([
            "--target=thumbv7m-none-eabi",
            "-O0",
            "-nostdlib",
            "-fuse-ld=lld",
            "-Wl,-e,_start",
            "-o",
        ])
        .arg(&image)
        .arg(two.join("a.c"))
        .arg(two.join("b.c"))
        .status()
        .unwrap();
    assert!(status.success());
    let nm = Command::new("nm").arg(&image).output().unwrap();
    let listing = text(&nm.stdout);
    assert!(listing.matches(" helper\n").count() == 2, "{listing}");
    let listing_file = two.join("nm.txt");
    std::fs::write(&listing_file, format!("{listing}x 0x20000000\n")).unwrap();
    let uses_x = clang_build(
        "thumbv7m-none-eabi",
        "uses-x",
        "extern long x;\nlong fw_add(long, long);\nlong f(void) { return fw_add(x, 1); }\n",
        false,
    );
    let out = llext(&[
        "check",
        "--exports",
        listing_file.to_str().unwrap(),
        &uses_x,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The image offers its locals too (a Rust firmware keeps its C library's functions local), but not a
    // name two of them share: which one an object means cannot be told. A user's trial found an object
    // calling `helper` checked `ok`.
    let uses_helper = clang_build(
        "thumbv7m-none-eabi",
        "uses-helper",
        "long helper(long);\nlong g(long v) { return helper(v); }\n",
        false,
    );
    let image_path = image.to_str().unwrap();
    let out = llext(&["check", "--exports", image_path, &uses_helper]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("undefined symbol `helper`"),
        "{}",
        text(&out.stderr)
    );
    let out = llext(&["check", "--exports", image_path, &uses_x]);
    assert!(
        text(&out.stderr).contains("undefined symbol `x`") && !text(&out.stderr).contains("fw_add"),
        "{}",
        text(&out.stderr)
    );

    // A bad line names the file and line; a missing file and a missing value are errors too.
    let bad = dir.join("exports-bad.txt");
    std::fs::write(&bad, "fw_add\nfw_counter 0xzz\n").unwrap();
    let dup = dir.join("exports-twice.txt");
    std::fs::write(&dup, "fw_add\nfw_counter\nfw_add 0x100\n").unwrap();
    let object = clang_build("thumbv7m-none-eabi", "ext", EXTENSION, false);
    for (args, expected) in [
        (
            vec!["check", "--exports", bad.to_str().unwrap(), &object],
            ":2: bad address `0xzz`",
        ),
        (
            vec!["check", "--exports", "/nonexistent/exports", &object],
            "/nonexistent/exports",
        ),
        (
            vec!["check", "--exports", dup.to_str().unwrap(), &object],
            "`fw_add` is listed twice",
        ),
        (vec!["check", "--exports"], "--exports needs a file name"),
        (
            vec!["check", "--exports", "a", "--exports", "b", &object],
            "--exports is given twice",
        ),
        (
            vec!["check", "--bogus", &object],
            "unknown option `--bogus`",
        ),
    ] {
        fails_with(&args, expected);
    }
}

/// `check` links where the extensions go on the device: past the RAM of the firmware's ELF image, or at
/// `--at`. An embedded user's trial found `riscv64` code built with gcc's default `-mcmodel=medlow` checked
/// "ok" in a scratch arena below 2 GiB, then refused on the device, whose RAM starts at 0x8000_0000.
#[test]
fn check_links_at_the_firmware_ram_address() {
    const EXTENSION: &str = "long fw_add(long a, long b);\nstatic long total;\n\
                             long ext_main(long x) { total += x; return fw_add(total, 1); }\n";
    const FIRMWARE: &str = "long fw_counter;\nlong fw_add(long a, long b) { return a + b; }\n\
                            void _start(void) {}\n";
    let triple = "riscv64-unknown-elf";
    let build = |name: &str, model: &str| {
        let mut cmd = Command::new("clang");
        cmd.args([
            &format!("--target={triple}"),
            "-O2",
            "-c",
            "-fno-pic",
            model,
        ]);
        build_c(cmd, "check-at", name, EXTENSION, false)
    };
    let medlow = build("medlow", "-mcmodel=medlow");
    let medany = build("medany", "-mcmodel=medany");
    let mut cmd = Command::new("clang");
    cmd.args([
        &format!("--target={triple}"),
        "-O2",
        "-nostdlib",
        "-fuse-ld=lld",
        "-Wl,-e,_start",
        "-Wl,-Ttext=0x80000000",
    ]);
    let firmware = build_c(cmd, "check-at", "firmware", FIRMWARE, true);

    let out = llext(&["check", "--exports", &firmware, &medlow]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("R_RISCV_HI20") && err.contains("-mcmodel=medany"),
        "{err}"
    );
    let out = llext(&["check", "--exports", &firmware, &medany]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Elsewhere, as `--at` says: below 2 GiB the same medlow code links.
    let out = llext(&[
        "check",
        "--exports",
        &firmware,
        "--at",
        "0x10000000",
        &medlow,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = llext(&[
        "check",
        "--at",
        "0x80000000",
        "--exports",
        &firmware,
        &medlow,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // A text list says where the firmware puts extensions (`# at: ADDR`, as the test firmware's `exports`
    // prints it), which `--at` overrides.
    let list = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("check-at-list.txt");
    std::fs::write(&list, "# at: 0x80000000\nfw_add 0x80000000\n").unwrap();
    let list = list.to_str().unwrap();
    let out = llext(&["check", "--exports", list, &medlow]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("R_RISCV_HI20"), "{err}");
    let out = llext(&["check", "--exports", list, "--at", "0x10000000", &medlow]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bad = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("check-at-bad.txt");
    std::fs::write(&bad, "# at: 0x123\nfw_add\n").unwrap();
    fails_with(
        &["check", "--exports", bad.to_str().unwrap(), &medlow],
        "check-at-bad.txt:1: --at 0x123: the address must be a non-zero multiple of 4096",
    );

    // A native object at a given address links against the C library as without `--at`.
    let native = gcc_pic(
        "check-at",
        "native",
        "#include <string.h>\nlong n(const char *s) { return strlen(s); }\n",
    );
    let out = llext(&["check", "--at", "0x10000000", &native]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // An image whose writable segment ends within 64 KiB of the top of the address space (damaged
    // program headers): an error, not an overflow. Review found a panic in debug builds and an attempt at
    // address 0 in release builds. The ELF64 little-endian program headers are patched in place.
    let mut elf = std::fs::read(&firmware).unwrap();
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let phoff = u64_at(&elf, 0x20) as usize;
    let entsize = u16::from_le_bytes([elf[0x36], elf[0x37]]) as usize;
    let count = u16::from_le_bytes([elf[0x38], elf[0x39]]) as usize;
    let mut patched = 0;
    for k in 0..count {
        let o = phoff + k * entsize;
        // PT_LOAD with PF_W: p_vaddr and p_paddr.
        if elf[o] == 1 && elf[o + 4] & 2 != 0 {
            elf[o + 16..o + 24].copy_from_slice(&0xffff_ffff_ffff_f000u64.to_le_bytes());
            elf[o + 24..o + 32].copy_from_slice(&0xffff_ffff_ffff_f000u64.to_le_bytes());
            patched += 1;
        }
    }
    assert!(patched > 0, "the firmware has a writable segment");
    let high = firmware.replace("firmware.elf", "firmware-high.elf");
    std::fs::write(&high, elf).unwrap();
    fails_with(
        &["check", "--exports", &high, &medany],
        "give its address with --at",
    );

    for (args, expected) in [
        (vec!["check", "--at"], "--at needs an address"),
        (vec!["check", "--at", "0x1001", &medlow], "multiple of 4096"),
        (vec!["check", "--at", "0", &medlow], "multiple of 4096"),
        (
            vec!["check", "--at", "lots", &medlow],
            "expected an address",
        ),
        (
            vec!["check", "--at", "0x10000000", "--at", "0x20000000", &medlow],
            "--at is given twice",
        ),
    ] {
        fails_with(&args, expected);
    }
}

/// `check` against a firmware image refuses objects that pass floats by another convention than the
/// firmware's code (its `e_flags`), as the firmware itself would.
#[test]
fn check_compares_the_float_abi_with_the_firmware_image() {
    const EXTENSION: &str =
        "float fw_scale(float x);\nfloat ext_main(float x) { return fw_scale(x); }\n";
    const FIRMWARE: &str = "float fw_scale(float x) { return x; }\nvoid _start(void) {}\n";
    let firmware = clang_build("thumbv7em-none-eabihf", "firmware", FIRMWARE, true);
    let hard = clang_build("thumbv7em-none-eabihf", "hard", EXTENSION, false);
    let soft = clang_build("thumbv7m-none-eabi", "soft", EXTENSION, false);
    let out = llext(&["check", "--exports", &firmware, &hard]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = llext(&["check", "--exports", &firmware, &soft]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("soft-float calling convention") && err.contains("-mfloat-abi=hard"),
        "{err}"
    );
    // A32 code against the Cortex-M image (profile M), or a list with a `# thumb-only` line, is refused.
    let a32 = clang_build("armv7a-none-eabihf", "a32", EXTENSION, false);
    fails_with(
        &["check", "--exports", &firmware, &a32],
        "holds A32 (Arm-state) code",
    );
    let thumb_list = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("exports-thumb.txt");
    std::fs::write(&thumb_list, "# thumb-only\nfw_scale\n").unwrap();
    let out = llext(&["check", "--exports", thumb_list.to_str().unwrap(), &a32]);
    assert!(
        text(&out.stderr).contains("holds A32 (Arm-state) code"),
        "{}",
        text(&out.stderr)
    );
    // `inspect` shows each object's.
    for (object, abi) in [(&hard, "hard-float (VFP)"), (&soft, "soft-float")] {
        let out = llext(&["inspect", object]);
        assert!(
            text(&out.stdout).contains(&format!("\nfloat ABI: {abi}\n")),
            "{}",
            text(&out.stdout)
        );
    }
    // An image for another machine or width is named as such.
    let riscv = clang_build("riscv32-unknown-elf", "firmware", FIRMWARE, true);
    let out = llext(&["check", "--exports", &riscv, &hard]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the firmware image is 32-bit RISC-V, the objects 32-bit ARM"),
        "{err}"
    );
    // A text list says nothing of the convention, unless a `# float-abi: KEY` line does (the test
    // firmware's `exports` output has one).
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let list = dir.join("exports-float.txt");
    std::fs::write(&list, "fw_scale\n").unwrap();
    let out = llext(&["check", "--exports", list.to_str().unwrap(), &soft]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = dir.join("exports-float-vfp.txt");
    std::fs::write(&said, "# float-abi: vfp\nfw_scale\n").unwrap();
    let out = llext(&["check", "--exports", said.to_str().unwrap(), &soft]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("-mfloat-abi=hard"),
        "{}",
        text(&out.stderr)
    );
    let out = llext(&["check", "--exports", said.to_str().unwrap(), &hard]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wrong = dir.join("exports-float-bad.txt");
    std::fs::write(&wrong, "# float-abi: hard\nfw_scale\n").unwrap();
    let out = llext(&["check", "--exports", wrong.to_str().unwrap(), &hard]);
    assert!(
        text(&out.stderr).contains(":1: unknown float ABI `hard`"),
        "{}",
        text(&out.stderr)
    );
    // An address a 32-bit object cannot hold is refused with the list.
    let far = dir.join("exports-far.txt");
    std::fs::write(&far, "fw_scale 0x100000001\n").unwrap();
    let out = llext(&["check", "--exports", far.to_str().unwrap(), &hard]);
    assert!(
        text(&out.stderr).contains("address 0x100000001 does not fit the 32-bit objects"),
        "{}",
        text(&out.stderr)
    );
}

/// A user's review of the command: calling a data symbol died of SIGSEGV; `--help` after a command, a
/// repeated `--call`, `--arg` without `--call` and `--` were refused or ignored without a word; a context
/// file given to `run` or `inspect` was "not an ELF file"; the shell could not load a path with spaces.
#[test]
fn user_review_of_the_command() {
    const SOURCE: &str = "long counter = 5;\nlong bump(long by) { return counter += by; }\n";
    let mut gcc = Command::new("gcc");
    gcc.args(["-c", "-O2"]);
    let object = build_c(gcc, "user review", "data", SOURCE, false);

    let out = llext(&["run", "--call", "counter", &object]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("error: symbol `counter` is data"),
        "{}",
        text(&out.stderr)
    );

    for (command, shows) in [
        (&["run", "--help"][..], "run [--call SYM]"),
        (&["snapshot", "-h"][..], "snapshot restore SNAP"),
        (&["shell", "--help"][..], "suspend"),
        (&["check", "x.o", "--help"][..], "check [--exports FILE]"),
    ] {
        let out = llext(command);
        assert!(out.status.success(), "{command:?}: {}", text(&out.stderr));
        let s = text(&out.stdout);
        assert!(
            s.starts_with("usage:\n") && s.contains(shows),
            "{command:?}: {s}"
        );
    }
    let out = llext(&["run", "--help"]);
    assert!(
        !text(&out.stdout).contains("inspect FILE"),
        "only `run` is described"
    );

    for (args, error) in [
        (
            &["run", "--arg", "5", object.as_str()][..],
            "--arg needs --call SYM",
        ),
        (
            &["run", "--call", "a", "--call", "b", object.as_str()][..],
            "--call is given twice",
        ),
        (
            &[
                "snapshot",
                "save",
                "--out",
                "a",
                "--out",
                "b",
                object.as_str(),
            ][..],
            "--out is given twice",
        ),
    ] {
        let out = llext(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&out.stderr), format!("error: {error}\n"), "{args:?}");
    }
    let out = llext(&[
        "run",
        "--call",
        "bump",
        "--arg",
        "18446744073709551615",
        "--",
        &object,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("returned: 4"),
        "{}",
        text(&out.stdout)
    );
    // Review of the first fixes: `--` for check and inspect too; `-h` as an option's value is that
    // value; one bench mode and one count.
    for args in [
        &["check", "--", &object][..],
        &["inspect", "--", &object][..],
    ] {
        let out = llext(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let out = llext(&["run", "--call", "-h", &object]);
    assert_eq!(
        text(&out.stderr),
        "error: symbol `-h` not found in any loaded extension\n"
    );
    for (args, error) in [
        (
            &["bench", "load", "restore"][..],
            "bench measures `load` or `restore`, not both",
        ),
        (
            &["bench", "--iterations", "1", "--iterations", "2"][..],
            "--iterations is given twice",
        ),
    ] {
        let out = llext(args);
        assert_eq!(text(&out.stderr), format!("error: {error}\n"), "{args:?}");
    }

    let snap = scratch_snapshot("user-review");
    let out = llext(&["snapshot", "save", "--out", &snap, &object]);
    assert_eq!(text(&out.stdout), format!("saved 1 extension to {snap}\n"));
    let out = llext(&["run", &snap]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("it is a saved context of 1 extension (data), not an ELF object"),
        "{}",
        text(&out.stderr)
    );
    let out = llext(&["inspect", &snap]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("type: saved context, portable")
            && s.contains("\n  data: no dependencies; use count 1; constructors ran\n"),
        "{s}"
    );
    let out = llext(&["inspect", "--json", &snap]);
    assert!(text(&out.stdout).contains("\"type\":\"context\",\"portable\":true"));
    // A damaged one is named as such, not as "not an ELF file" (a user trial found that).
    let bytes = std::fs::read(&snap).unwrap();
    let truncated = format!("{snap}.truncated");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1]).unwrap();
    fails_with(
        &["inspect", &truncated],
        "a damaged llext context: invalid saved context: length does not match the header",
    );

    let out = shell(&format!(
        "load \"{object}\"\nload \"{object}\"\ncall bump 2\nsave \"{snap}\"\nunload data\nunload data\n\
         restore \"{snap}\"\ncall bump 1\n"
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for line in [
        "data already loaded, use count 2 (to load",
        "returned: 7",
        "saved 1 extension to",
        "restored 1 extension\n",
        "returned: 8",
    ] {
        assert!(s.contains(line), "{line}: {s}");
    }
    std::fs::remove_file(&snap).unwrap();
}

/// User review: `llext check` on two objects exporting the same four names reported only the first clash.
#[test]
fn check_reports_every_clashing_export() {
    let lib = fixture("libmath-gcc-O2-pic.o");
    let out = llext(&["check", &lib, &lib]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    let clashes = e.lines().filter(|l| l.contains("already exports")).count();
    assert_eq!(clashes, 3, "{e}");
}

/// A Rust user's trial: at opt-level 0 even a plain loop reaches `core`'s panic functions, which no host
/// can offer; `check` said only "undefined symbol `_RNv...panic_nounwind_fmt`". It now says what that
/// is and what to do, and the same object built at opt-level 2 loads and runs.
#[test]
fn rust_core_symbols_come_with_a_hint() {
    const SOURCE: &str = "#![no_std]\n\
        #[no_mangle]\n\
        pub extern \"C\" fn count(n: i64) -> i64 {\n\
            let mut s = 0i64;\n\
            for i in 0..n { s = s.wrapping_add(i); }\n\
            s\n\
        }\n\
        #[no_mangle]\n\
        pub extern \"C\" fn add(a: i64, b: i64) -> i64 { a + b }\n";
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rust-core");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("count.rs");
    std::fs::write(&src, SOURCE).unwrap();
    let build_with = |level: &str, extra: &[&str]| {
        let out = dir.join(format!("count-{level}{}.o", extra.len()));
        let status = Command::new("rustc")
            .args(["--crate-type", "lib", "--emit", "obj", "--edition", "2021"])
            .args(["-C", "panic=abort", "-C", &format!("opt-level={level}")])
            .args(extra)
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .status()
            .expect("rustc runs");
        assert!(status.success());
        out.display().to_string()
    };
    let build = |level: &str| build_with(level, &[]);
    let out = llext(&["check", &build("0")]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("core")
            && e.contains(
                "(Rust's `core`, which no host can offer: build the extension with opt-level 1"
            ),
        "{e}"
    );
    let out = llext(&["run", "--call", "count", "--arg", "10", &build("2")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("returned: 45"));
    // A later review: cargo's dev profile at opt-level 1 or more still reached `core` (its overflow checks
    // and debug assertions), while the hint asked only for opt-level 1, which the object already had.
    let out = llext(&["check", &build_with("2", &["-C", "debug-assertions=on"])]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("without debug assertions and overflow checks (`-C debug-assertions=off"),
        "{e}"
    );
}

/// `nm` output lists two files' `static helper` (lower-case `t`) at two addresses; as with the ELF
/// image, neither is offered (a review found them offered). A `# float-abi:` key of another machine is refused as such.
#[test]
fn check_refuses_ambiguous_nm_locals_and_a_float_abi_of_another_machine() {
    let uses_helper = clang_build(
        "thumbv7m-none-eabi",
        "review-uses-helper",
        "long helper(long);\nlong g(long v) { return helper(v); }\n",
        false,
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let nm = dir.join("review-nm-locals.txt");
    std::fs::write(
        &nm,
        "00001001 t helper\n00002001 t helper\n00003001 T main\n",
    )
    .unwrap();
    let out = llext(&["check", "--exports", nm.to_str().unwrap(), &uses_helper]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("undefined symbol `helper`"),
        "{}",
        text(&out.stderr)
    );
    // One local at one address (listed twice, say) is offered.
    std::fs::write(&nm, "00001001 t helper\n00001001 t helper\n").unwrap();
    let out = llext(&["check", "--exports", nm.to_str().unwrap(), &uses_helper]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // `double` is a RISC-V convention: for Arm objects the list is wrong, not every object.
    let list = dir.join("review-float-riscv-key.txt");
    std::fs::write(&list, "# float-abi: double\nhelper\n").unwrap();
    let out = llext(&["check", "--exports", list.to_str().unwrap(), &uses_helper]);
    let err = text(&out.stderr);
    assert!(
        err.contains("float-abi") && !err.contains("rebuild"),
        "{err}"
    );
}

/// `check` refuses objects built for more instructions than the firmware's core runs, as the firmware
/// itself would: the core's instruction set comes from the image's build attributes or a list's
/// `# isa: KEY` line. `inspect` shows an object's.
#[test]
fn check_compares_the_instruction_set_with_the_firmware() {
    const EXTENSION: &str =
        "int fw_add(int a, int b);\nint ext_main(int x) { return fw_add(x, 1); }\n";
    const FIRMWARE: &str = "int fw_add(int a, int b) { return a + b; }\nvoid _start(void) {}\n";
    let firmware = clang_build("thumbv7em-none-eabihf", "isa-firmware", FIRMWARE, true);
    let m4 = clang_build("thumbv7em-none-eabihf", "isa-m4", EXTENSION, false);
    let mut clang = Command::new("clang");
    clang.args([
        "--target=thumbv7em-none-eabihf",
        "-mcpu=cortex-m7",
        "-O2",
        "-c",
    ]);
    let m7 = build_c(clang, "check-isa", "m7", EXTENSION, false);
    let out = llext(&["check", "--exports", &firmware, &m4]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    fails_with(
        &["check", "--exports", &firmware, &m7],
        "built for armv7e-m+fp.dp, so it may use a double-precision FPU, which this core (armv7e-m+fp) lacks",
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let list = dir.join("exports-isa.txt");
    for (key, m7_fits) in [("armv7e-m+fp", false), ("armv7e-m+fp.dp", true)] {
        std::fs::write(&list, format!("# isa: {key}\nfw_add\n")).unwrap();
        let out = llext(&["check", "--exports", list.to_str().unwrap(), &m4, &m7]);
        assert_eq!(
            out.status.success(),
            m7_fits,
            "{key}: {}",
            text(&out.stderr)
        );
    }
    for (line, expected) in [
        (
            "# isa: rv32imac",
            "`# isa: rv32imac` names no ARM instruction set",
        ),
        ("# isa: armv9-m", "unknown instruction set `armv9-m`"),
    ] {
        std::fs::write(&list, format!("{line}\nfw_add\n")).unwrap();
        fails_with(
            &["check", "--exports", list.to_str().unwrap(), &m4],
            expected,
        );
    }
    // A review: a bitcode object (cargo's `lto` profile) checked against the firmware's list was refused
    // as "`# isa: armv7e-m+fp` names no x86_64 instruction set" (no file parsed, so the machine fell back
    // to the host's), hiding the file's own error. Likewise a `# float-abi:` line.
    let bitcode = dir.join("check-isa-bitcode.o");
    std::fs::write(&bitcode, b"BC\xc0\xde\x35\x14\x00\x00").unwrap();
    for line in ["# isa: armv7e-m+fp", "# float-abi: vfp\n# isa: armv7e-m+fp"] {
        std::fs::write(&list, format!("{line}\nfw_add\n")).unwrap();
        let out = llext(&[
            "check",
            "--exports",
            list.to_str().unwrap(),
            bitcode.to_str().unwrap(),
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("LLVM bitcode") && !err.contains("names no"),
            "{line}: {err}"
        );
    }
    let out = llext(&["inspect", &m7]);
    assert!(
        text(&out.stdout).contains("\ninstruction set: armv7e-m+fp.dp\n"),
        "{}",
        text(&out.stdout)
    );
}

/// When a file does not load, a later file's undefined symbol that it would have exported is named as
/// a consequence (a user trial saw every such symbol reported with no hint of the cause).
#[test]
fn check_names_exports_of_a_file_that_did_not_load() {
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include");
    let build = |name: &str, source: &str| {
        let mut gcc = Command::new("gcc");
        gcc.args(["-c", "-O2", "-fPIC", "-I", include]);
        build_c(gcc, "check-cascade", name, source, false)
    };
    let lib = build(
        "lib",
        "#include <llext.h>\nlong missing_helper(long);\n\
         long lib_fn(long x) { return missing_helper(x); }\nEXPORT_SYMBOL(lib_fn);\n",
    );
    let user = build(
        "user",
        "long lib_fn(long);\nlong user_fn(long x) { return lib_fn(x) + 1; }\n",
    );
    let out = llext(&["check", &lib, &user]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("undefined symbol `missing_helper`"), "{err}");
    assert!(
        err.contains(&format!(
            "note: {user}: `lib_fn` is exported by {lib}, which did not load"
        )),
        "{err}"
    );
}

/// A host program's plugins call its own exports and the C library: `--libc` checks them against both.
#[test]
fn check_against_a_host_programs_exports_and_the_c_library() {
    const PLUGIN: &str = "#include <stdio.h>\nlong host_log(const char *);\n\
                          long plugin_main(long x) { host_log(\"hi\"); return printf(\"%ld\\n\", x); }\n";
    let plugin = gcc_pic("check-libc", "plugin", PLUGIN);
    let list = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("host-exports.txt");
    std::fs::write(&list, "# the host program's exports!\nhost_log\n").unwrap();
    let list = list.to_str().unwrap();

    // The list alone replaces the C library; the C library alone lacks the host's function.
    let out = llext(&["check", "--exports", list, &plugin]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("undefined symbol `printf`"), "{err}");
    assert!(!err.contains("host_log"), "{err}");
    let out = llext(&["check", &plugin]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("undefined symbol `host_log`"), "{err}");

    // Both together, in either order of the options.
    for args in [
        ["check", "--exports", list, "--libc", &plugin],
        ["check", "--libc", "--exports", list, &plugin],
    ] {
        let out = llext(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with(&format!("ok: {plugin}: ")));
    }

    // Another machine's objects cannot call this host's C library; the flag once only.
    let thumb = clang_build(
        "thumbv7m-none-eabi",
        "libc-thumb",
        "int f(void) { return 1; }\n",
        false,
    );
    fails_with(
        &["check", "--libc", &thumb],
        "--libc offers this host's C library, which ARM objects cannot call",
    );
    fails_with(
        &["check", "--libc", "--libc", &plugin],
        "--libc is given twice",
    );
}

/// An object that loads but defines no global symbol offers nothing to call: `check` says so (a user trial's
/// Rust function without `#[no_mangle]` checked `ok` and failed only when called).
#[test]
fn check_notes_an_object_that_offers_nothing() {
    let hidden = gcc_pic(
        "check-nothing",
        "hidden",
        "static int counter;\n__attribute__((used)) static int bump(void) { return ++counter; }\n",
    );
    let out = llext(&["check", &hidden]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains(&format!("note: {hidden}: it defines no global symbol")),
        "{s}"
    );
    let out = llext(&["check", &fixture("libmath-gcc-O2-pic.o")]);
    assert!(
        !text(&out.stdout).contains("note:"),
        "{}",
        text(&out.stdout)
    );
}

/// What `Registry::write_export_list` writes, `check --exports` reads back: the list of a Cortex-M
/// firmware's registry (float ABI, Thumb only, ISA, a function's address with the Thumb bit) checks the
/// firmware's extensions. `at` is the arena's address, which a `static` array has at no page boundary;
/// the list said it as given, and `check` refuses a `# at:` that is not a multiple of 4096.
#[test]
fn check_reads_what_write_export_list_writes() {
    const EXTENSION: &str =
        "float fw_scale(float x);\nfloat ext_main(float x) { return fw_scale(x); }\n";
    let object = clang_build("thumbv7em-none-eabihf", "listed", EXTENSION, false);
    let mut arena = [0u8; 4096];
    let table = llext::ExportTable::new(&[llext::Export::function(
        "fw_scale",
        0x1fff_f001usize as *const (),
    )]);
    let registry = llext::Registry::for_machine(llext::ArenaMemory::new(&mut arena), table, 40);
    registry.set_isa(llext::arch::Isa::from_key("armv7e-m+fp"));
    registry.set_float_abi(Some(llext::arch::FloatAbi::Vfp));
    registry.set_thumb_only(true);
    let mut list = String::new();
    registry
        .write_export_list(&mut list, Some(0x2000_0124))
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("written-exports.txt");
    std::fs::write(&path, &list).unwrap();
    let out = llext(&["check", "--exports", path.to_str().unwrap(), &object]);
    assert!(out.status.success(), "{list}\n{}", text(&out.stderr));
}

/// A user trial: the list `Registry::write_export_list` writes of an x86-64 host program's registry (its
/// `exports!` and the C library's) said only `NAME ADDRESS`, so `check --exports` linked every entry as
/// a plain address, and refused what that registry loads: gcc's default `-fPIE` code reading `stdout`
/// PC-relative (the registry gives it a copy: `Export::copyable`), and `-fno-pic` code taking a host
/// function's address as a 32-bit value (it reaches a stub: `Export::function`), were reported out of
/// reach of the C library and the program.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn check_links_against_a_host_export_list_as_the_host_registry_does() {
    const PLUGIN: &str =
        "#include <stdio.h>\nlong host_add(long, long);\nlong (*kept)(long, long);\n\
                          long plugin_main(long x) { kept = host_add; fputs(\"hi\\n\", stdout); \
                          return kept(x, 1); }\n";
    extern "C" fn host_add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
    static HOST: &[llext::Export] = llext::exports![host_add];
    let table: Vec<llext::Export> = HOST.iter().chain(llext::LIBC_EXPORTS).copied().collect();
    let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::new(&table));
    let mut list = String::new();
    registry.write_export_list(&mut list, None).unwrap();
    let line = |name: &str| list.lines().find(|l| l.starts_with(&format!("{name} 0x")));
    assert!(
        line("host_add").is_some_and(|l| l.ends_with(" function")),
        "{list}"
    );
    assert!(
        line("stdout").is_some_and(|l| l.ends_with(" copyable")),
        "{list}"
    );
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("host-program-exports.txt");
    let path = path.to_str().unwrap();
    let options = llext::LoadOptions {
        bring_up: false,
        ..llext::LoadOptions::default()
    };
    for (pic, unkind) in [("-fPIE", " copyable"), ("-fno-pic", " function")] {
        let mut gcc = Command::new("gcc");
        gcc.args(["-c", "-O2", pic]);
        let plugin = build_c(gcc, "host-list", &format!("plugin{pic}"), PLUGIN, false);
        let bytes = std::fs::read(&plugin).unwrap();
        let id = registry.load_with("plugin", &bytes, &options).unwrap();
        registry.unload(id).unwrap();
        std::fs::write(path, &list).unwrap();
        let out = llext(&["check", "--exports", path, &plugin]);
        assert!(out.status.success(), "{pic}: {}", text(&out.stderr));
        // A plain export at a host address stays out of reach of such code, as in the registry.
        std::fs::write(path, list.replace(unkind, "")).unwrap();
        let out = llext(&["check", "--exports", path, &plugin]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{pic}: {err}");
        assert!(
            err.contains("rebuild the extension with -fPIC"),
            "{pic}: {err}"
        );
    }
    // The kind follows an address: `NAME KIND` is no line.
    std::fs::write(path, "host_add function\n").unwrap();
    let out = llext(&["check", "--exports", path, "x.o"]);
    assert!(
        text(&out.stderr).contains("bad address `function`"),
        "{}",
        text(&out.stderr)
    );
}

/// An export named like one of `nm`'s undefined-symbol types (`U`, `w`, `v`: a C variable may be called
/// `w`) is listed as `w 0xADDR`; `check` took the line for `nm`'s weak undefined symbol `0xADDR` and
/// dropped it, so an extension using `w` did not link.
#[test]
fn check_reads_exports_named_like_nm_types() {
    const EXTENSION: &str = "extern int w, U, v;\nint ext_main(void) { return w + U + v; }\n";
    let object = clang_build("thumbv7em-none-eabihf", "nm-letters", EXTENSION, false);
    let mut arena = [0u8; 4096];
    let table = llext::ExportTable::new(&[
        llext::Export::new("w", 0x1fff_e000usize as *const ()),
        llext::Export::new("U", 0x1fff_e004usize as *const ()),
        llext::Export::new("v", 0x1fff_e008usize as *const ()),
    ]);
    let registry = llext::Registry::for_machine(llext::ArenaMemory::new(&mut arena), table, 40);
    let mut list = String::new();
    registry
        .write_export_list(&mut list, Some(0x2000_0000))
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("nm-letter-exports.txt");
    std::fs::write(&path, &list).unwrap();
    let out = llext(&["check", "--exports", path.to_str().unwrap(), &object]);
    assert!(out.status.success(), "{list}\n{}", text(&out.stderr));
    // nm's own undefined lines are still skipped.
    std::fs::write(&path, "         U w\n         w U\n").unwrap();
    let out = llext(&["check", "--exports", path.to_str().unwrap(), &object]);
    assert!(text(&out.stderr).contains("`w`"), "{}", text(&out.stderr));
}

/// A list line is `NAME ADDRESS`: an export whose name has white space or `#` (any string may name an
/// export) cannot be said in one. `write_export_list` wrote it anyway, and `check` refused the whole list
/// (`a b c 0x...` is no line it reads) or read another name.
#[test]
fn write_export_list_leaves_out_names_no_line_can_say() {
    const EXTENSION: &str =
        "float fw_scale(float x);\nfloat ext_main(float x) { return fw_scale(x); }\n";
    let object = clang_build("thumbv7em-none-eabihf", "odd-names", EXTENSION, false);
    let mut arena = [0u8; 4096];
    let table = llext::ExportTable::new(&[
        llext::Export::new("a b c", 0x1fff_e000usize as *const ()),
        llext::Export::new("", 0x1fff_e004usize as *const ()),
        llext::Export::new("x#y", 0x1fff_e008usize as *const ()),
        llext::Export::new("tab\tname", 0x1fff_e00cusize as *const ()),
        llext::Export::function("fw_scale", 0x1fff_f001usize as *const ()),
    ]);
    let registry = llext::Registry::for_machine(llext::ArenaMemory::new(&mut arena), table, 40);
    let mut list = String::new();
    registry
        .write_export_list(&mut list, Some(0x2000_0000))
        .unwrap();
    assert!(
        list.lines()
            .filter(|l| !l.starts_with('#'))
            .eq(["fw_scale 0x1ffff001"]),
        "{list}"
    );
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("odd-name-exports.txt");
    std::fs::write(&path, &list).unwrap();
    let out = llext(&["check", "--exports", path.to_str().unwrap(), &object]);
    assert!(out.status.success(), "{list}\n{}", text(&out.stderr));
}

/// A user's trial: with standard output a pipe, a destructor's `printf` output came after the shell's
/// next lines, as C's stdio buffer was flushed only at the next load.
#[test]
fn shell_unload_prints_destructor_output_before_its_own() {
    let script = format!(
        "load {} ctors\nunload ctors\nlist\n",
        fixture("ctors-gcc-O2-pic.o")
    );
    let out = shell(&script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let lines: Vec<&str> = s.lines().collect();
    let at = |line: &str| lines.iter().position(|l| *l == line);
    let (Some(dtor), Some(unloaded), Some(empty)) = (
        at("ctors: destructor ran"),
        at("unloaded ctors"),
        at("no extensions loaded"),
    ) else {
        panic!("{s}");
    };
    assert!(dtor < unloaded && unloaded < empty, "{s}");
}

/// `inspect` of a saved context shows each extension's record: dependencies by name, use count, blocks,
/// exports, constructors and destructors, and the size of its fixup table (text and JSON).
#[test]
fn inspect_shows_what_each_saved_extension_holds() {
    let snap = scratch_snapshot("inspect-records");
    let out = llext(&[
        "snapshot",
        "save",
        "--out",
        &snap,
        &fixture("libmath-gcc-O2-pic.o"),
        &fixture("usemath-gcc-O2-nopic.o"),
        &fixture("ctors-clang-O2-pic.o"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = llext(&["inspect", &snap]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("\n  libmath-gcc-O2-pic: no dependencies; use count 1; constructors ran\n"),
        "{s}"
    );
    assert!(
        s.contains("\n  usemath-gcc-O2-nopic: depends on libmath-gcc-O2-pic; use count 1"),
        "{s}"
    );
    assert!(
        s.contains("    exports: ") && s.contains("lm_mul 0x"),
        "{s}"
    );
    assert!(s.contains("    blocks: r-x "), "{s}");
    assert!(
        s.contains("constructors 2, destructors 1, fixup table "),
        "{s}"
    );
    let out = llext(&["inspect", "--json", &snap]);
    let s = text(&out.stdout);
    assert!(
        s.contains(
            "\"records\":[{\"name\":\"libmath-gcc-O2-pic\",\"dependencies\":[],\"use_count\":1"
        ),
        "{s}"
    );
    assert!(
        s.contains("{\"name\":\"usemath-gcc-O2-nopic\",\"dependencies\":[\"libmath-gcc-O2-pic\"]"),
        "{s}"
    );
    assert!(s.contains("\"permission\":\"r-x\""), "{s}");
}

/// A portable context of another machine's extensions (what a build host makes for a device, with
/// `Registry::for_machine`): `inspect` said to restore it with `llext snapshot restore`, which then
/// refused it as "for another machine (context 0xf3, here 0x3e)". It names the machines now.
#[test]
fn a_context_of_another_machine_is_named_as_such() {
    let object = clang_build(
        "riscv32-unknown-elf",
        "foreign_ctx",
        "int f(void) { return 1; }\n",
        false,
    );
    let mut arena = vec![0u8; 1 << 16];
    let registry = llext::Registry::for_machine(
        llext::ArenaMemory::new(&mut arena),
        llext::ExportTable::default(),
        243,
    );
    registry
        .load("foreign", &std::fs::read(&object).unwrap())
        .unwrap();
    let options = llext::SaveOptions {
        portable: true,
        ..llext::SaveOptions::default()
    };
    let snap = scratch_snapshot("foreign-machine");
    std::fs::write(&snap, registry.save(&options).unwrap()).unwrap();
    let out = llext(&["inspect", &snap]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("restore with: `Registry::restore` in a RISC-V program"),
        "{s}"
    );
    // What its object needs, which a restore on the device checks: the registry knew no core.
    assert!(
        s.contains("\n    built for: instruction set rv32i") && s.contains("float ABI soft\n"),
        "{s}"
    );
    assert!(!s.contains("saved where the core runs"), "{s}");
    let json = text(&llext(&["inspect", "--json", &snap]).stdout);
    assert!(
        json.contains("\"isa\":\"rv32i")
            && json.contains("\"float_abi\":\"soft\",\"a32\":false,\"arm_profile\":null}"),
        "{json}"
    );
    fails_with(
        &["snapshot", "restore", &snap],
        "saved context is for another machine: RISC-V (243), and this registry holds x86_64 (62) extensions",
    );
}

/// A user trial linked a device's extensions on a build host to ship a portable context instead of ELF
/// files, and had to write its own host program: `snapshot save` refused the RISC-V objects. With
/// `--exports` it links them as `check` does — for their machine, against the firmware's list, at its
/// `# at:` address, checked against its core — runs nothing, and saves a portable context that says its
/// constructors have not run. (The xtask's QEMU step restores such a context on each device.)
#[test]
fn snapshot_save_links_for_a_firmware_on_the_host() {
    const LIB: &str = "#include \"llext.h\"\nint fw_log(const char *);\nstatic int count = 40;\n\
                       __attribute__((constructor)) static void init(void) { count += 2; }\n\
                       int lib_count(void) { fw_log(\"count\"); return count; }\n\
                       LLEXT_EXPORT(lib_count);\n";
    const APP: &str = "int lib_count(void);\nint app_main(void) { return lib_count() + 1; }\n";
    let build = |name: &str, source: &str, march: &str| {
        let mut cmd = Command::new("clang");
        cmd.args([
            "--target=riscv32-unknown-elf",
            march,
            "-mabi=ilp32",
            "-O2",
            "-c",
            "-fno-pic",
            concat!("-I", env!("CARGO_MANIFEST_DIR"), "/../../include"),
        ]);
        build_c(cmd, "save-for-firmware", name, source, false)
    };
    let lib = build("lib", LIB, "-march=rv32imac");
    let app = build("app", APP, "-march=rv32imac");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("save-for-firmware");
    let list = dir.join("exports.txt");
    std::fs::write(
        &list,
        "# at: 0x80100000\n# float-abi: soft\n# isa: rv32imac\nfw_log 0x80000400\n",
    )
    .unwrap();
    let list = list.display().to_string();
    let snap = dir.join("app.ctx").display().to_string();

    let out = llext(&[
        "snapshot",
        "save",
        "--exports",
        &list,
        "--out",
        &snap,
        &lib,
        &app,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("saved 2 extensions for RISC-V") && said.contains("Registry::bring_up"),
        "{said}"
    );
    let out = llext(&["inspect", &snap]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for expected in [
        "machine RISC-V (243)",
        "not brought up",
        "at 0x80100000",
        "instruction set rv32imac, float ABI soft",
    ] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }

    // What the device would refuse is refused here: a built-in it does not export, more instructions
    // than its core runs; and the options are checked.
    let std::process::Output { status, stderr, .. } =
        llext(&["snapshot", "save", "--exports", &list, "--out", &snap, &app]);
    assert_eq!(status.code(), Some(1));
    assert!(
        text(&stderr).contains("undefined symbol `lib_count`"),
        "{}",
        text(&stderr)
    );
    let wider = build("wider", LIB, "-march=rv32imafc");
    let out = llext(&[
        "snapshot",
        "save",
        "--exports",
        &list,
        "--out",
        &snap,
        &wider,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("which this core"),
        "{}",
        text(&out.stderr)
    );
    fails_with(
        &[
            "snapshot",
            "save",
            "--exports",
            &list,
            "--at",
            "12",
            "--out",
            &snap,
            &lib,
        ],
        "multiple of 4096",
    );
    fails_with(
        &[
            "snapshot",
            "save",
            "--exports",
            &list,
            "--exports",
            &list,
            "--out",
            &snap,
            &lib,
        ],
        "--exports is given twice",
    );
}

/// `snapshot save --exports` of this machine's objects saves a context whose extensions were never
/// brought up, and `inspect` says to restore it with `llext snapshot restore`: that restore (and the
/// shell's `restore`) called into them without running their constructors.
#[test]
fn a_restored_context_saved_before_its_constructors_ran_is_brought_up() {
    let object = gcc_pic(
        "restore-brings-up",
        "state",
        "static long state;\n\
         __attribute__((constructor)) static void init(void) { state = 12; }\n\
         long get_state(void) { return state; }\n",
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("restore-brings-up");
    let list = dir.join("exports.txt");
    std::fs::write(&list, "# no built-ins\n").unwrap();
    let snap = scratch_snapshot("restore-brings-up");
    let out = llext(&[
        "snapshot",
        "save",
        "--exports",
        list.to_str().unwrap(),
        "--out",
        &snap,
        &object,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&llext(&["inspect", &snap]).stdout);
    assert!(shown.contains("not brought up"), "{shown}");
    assert!(
        shown.contains("restore with: llext snapshot restore"),
        "{shown}"
    );
    let out = llext(&["snapshot", "restore", &snap, "--call", "get_state"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("returned: 12"),
        "constructor not run: {}",
        text(&out.stdout)
    );
    let out = shell(&format!("restore {snap}\ncall get_state\n"));
    assert!(
        text(&out.stdout).contains("returned: 12"),
        "constructor not run: {}",
        text(&out.stdout)
    );
}
