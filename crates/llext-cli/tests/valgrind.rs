//! The command's integration scenarios (those of `cli.rs`) under valgrind memcheck: every run must end
//! with its usual status, zero memcheck errors and no definite or indirect leak.
//!
//! Ignored by default (valgrind makes each run take seconds); `cargo xtask sanitize` runs it with
//! `cargo test -p llext-cli --test valgrind -- --ignored`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use llext_fixtures::path;

fn fixture(name: &str) -> String {
    path(name).display().to_string()
}

fn scratch(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Runs `llext ARGS` under memcheck (feeding `stdin`), checks its exit status and that memcheck reported
/// nothing; returns standard output.
fn memcheck(args: &[&str], stdin: &str, status: i32) -> String {
    let log = scratch(&format!("valgrind-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut child = Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
        ])
        .arg(format!("--log-file={}", log.display()))
        .arg(env!("CARGO_BIN_EXE_llext"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("valgrind (install it with `cargo xtask deps`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        report.trim().is_empty() && out.status.code() != Some(99),
        "memcheck reports for `llext {}`:\n{report}",
        args.join(" ")
    );
    assert_eq!(
        out.status.code(),
        Some(status),
        "`llext {}`: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs valgrind and takes about a minute; run by `cargo xtask sanitize`"]
fn command_scenarios_under_memcheck() {
    let snap = scratch("valgrind.snap");
    let snap = snap.display().to_string();
    let basic = fixture("basic-gcc-O2-pic.o");
    let libmath = fixture("libmath-gcc-O0-nopic.o");
    let usemath = fixture("usemath-clang-O2-pic.o");
    let ctors = fixture("ctors-gcc-Os-pic.o");
    let rsext = fixture("rsext.o");
    let undef = fixture("undef-gcc-O2-pic.o");
    let shell = format!(
        "load {libmath} libmath\nload {usemath}\nlist\nsymbols libmath\ncall use_math 5\n\
         suspend\ncall use_math 5\nsave {snap}\nunload usemath\nunload libmath\n\
         restore {snap}\ncall use_math 1\nunload nothing\nbogus\ncall\nquit\n"
    );
    let runs: Vec<(Vec<&str>, &str, i32, &str)> = vec![
        (vec!["inspect", &basic], "", 0, "basic_add"),
        (vec!["inspect", "--json", &rsext], "", 0, "rs_fib"),
        (vec!["check", &libmath, &usemath], "", 0, "ok:"),
        (vec!["check", &undef], "", 1, ""),
        (
            vec!["run", "--call", "basic_strings", &basic],
            "",
            0,
            "returned: 8",
        ),
        (
            vec![
                "run", "--call", "use_math", "--arg", "0x10", &libmath, &usemath, &ctors,
            ],
            "",
            0,
            "ctors: destructor ran",
        ),
        (
            vec!["run", "--call", "rs_sum_to", "--arg", "-5", &rsext],
            "",
            0,
            "returned: 0",
        ),
        (vec!["run", "/nonexistent.o"], "", 1, ""),
        (
            vec!["snapshot", "save", "--out", &snap, &libmath, &usemath],
            "",
            0,
            "saved 2",
        ),
        (
            vec![
                "snapshot", "restore", &snap, "--call", "use_math", "--arg", "5",
            ],
            "",
            0,
            "returned: 15",
        ),
        (vec!["shell"], &shell, 1, "restored 2 extensions"),
        (vec!["demo"], "", 0, "Hello, llext!"),
        (vec!["bench", "--iterations", "2"], "", 0, "load_ns"),
    ];
    let count = runs.len();
    for (args, stdin, status, expect) in runs {
        let out = memcheck(&args, stdin, status);
        assert!(out.contains(expect), "`llext {}`: {out}", args.join(" "));
    }
    println!(
        "reliability: valgrind: {count} runs of the command under memcheck (inspect, check, run, snapshot save/restore, shell, demo, bench): 0 errors, 0 leaks"
    );
}
