//! Reliability tasks (issue 6): `cargo xtask fuzz` runs the cargo-fuzz targets for a bounded time,
//! `cargo xtask sanitize` runs the host tests under AddressSanitizer and the command under valgrind, and
//! `cargo xtask reliability` runs both plus the mutation, allocation-failure and concurrency tests and
//! prints the figures the README's "Reliability" section quotes.
//!
//! Everything these tasks need is installed by them: cargo-fuzz from crates.io (into the default cargo
//! home), valgrind through `cargo xtask deps`. The nightly toolchain must exist (`rustup toolchain list`).

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{deps, format_duration, step, workspace_root, Failure, Result};

/// The fuzz targets in `fuzz/fuzz_targets/`.
const TARGETS: &[&str] = &[
    "elf_inspect",
    "load_link",
    "snapshot_restore",
    "shell_parse",
];

/// Seconds per target when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 60;

/// The host triple: the sanitizer builds for it (`-Zsanitizer` needs an explicit `--target`), and the
/// firmware build asks `cargo metadata` for its dependencies (`qemu::firmware_cargo`).
pub(crate) const HOST_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// Where logs and figures go.
fn report_dir() -> PathBuf {
    workspace_root().join("target/reliability")
}

/// How long, or how many inputs, each fuzz target runs.
#[derive(Debug, Clone)]
struct FuzzPlan {
    /// `-max_total_time`: seconds per target.
    seconds: Option<u64>,
    /// `-runs` with a fixed seed: a reproducible number of inputs per target.
    runs: Option<u64>,
    targets: Vec<String>,
}

fn parse_fuzz_args(args: &[String]) -> Result<FuzzPlan> {
    let mut plan = FuzzPlan {
        seconds: None,
        runs: None,
        targets: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |what: &str| -> Result<u64> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| Failure(format!("{a} needs a positive {what}")))
        };
        match a.as_str() {
            "--seconds" => plan.seconds = Some(number("number of seconds")?),
            "--runs" => plan.runs = Some(number("number of runs")?),
            t if TARGETS.contains(&t) => plan.targets.push(t.to_string()),
            other => {
                return Err(Failure(format!(
                    "unknown fuzz argument `{other}` (targets: {})",
                    TARGETS.join(", ")
                )))
            }
        }
    }
    if plan.seconds.is_none() && plan.runs.is_none() {
        plan.seconds = Some(DEFAULT_SECONDS);
    }
    if plan.targets.is_empty() {
        plan.targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    Ok(plan)
}

/// `cargo +nightly ...` in `dir`, without the variables the outer stable `cargo xtask` set for us.
fn nightly_cargo(dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.arg("+nightly").current_dir(dir);
    for var in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
    command
}

/// The cargo that runs this task (stable), in `dir`.
fn cargo(dir: &Path) -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    command.current_dir(dir);
    command
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_nightly() -> Result {
    if succeeds(nightly_cargo(&workspace_root()).arg("--version")) {
        return Ok(());
    }
    Err(Failure(
        "the nightly toolchain is needed for cargo-fuzz and AddressSanitizer: \
         `rustup toolchain install nightly`"
            .into(),
    ))
}

fn ensure_cargo_fuzz() -> Result {
    if succeeds(nightly_cargo(&workspace_root()).args(["fuzz", "--version"])) {
        return Ok(());
    }
    step(
        "cargo install cargo-fuzz --locked",
        cargo(&workspace_root()).args(["install", "cargo-fuzz", "--locked"]),
    )
}

/// What one fuzz target did.
#[derive(Debug, Clone, Default)]
struct FuzzFigures {
    target: String,
    runs: u64,
    seconds: u64,
    coverage: u64,
    corpus: u64,
}

/// Reads libFuzzer's log: `Done N runs in S second(s)` and the last `cov: C ... corp: K/...` status.
fn parse_fuzz_log(target: &str, log: &str) -> FuzzFigures {
    let mut f = FuzzFigures {
        target: target.to_string(),
        ..FuzzFigures::default()
    };
    let after = |line: &str, key: &str| -> Option<u64> {
        let rest = line.split(key).nth(1)?;
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("Done ") {
            let mut words = rest.split_whitespace();
            f.runs = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            f.seconds = words.nth(2).and_then(|w| w.parse().ok()).unwrap_or(0);
        }
        if line.contains(" cov: ") && line.contains(" corp: ") {
            f.coverage = after(line, " cov: ").unwrap_or(f.coverage);
            f.corpus = after(line, " corp: ").unwrap_or(f.corpus);
        }
    }
    f
}

/// Writes the seed corpora, builds every target once, then runs each in turn.
fn run_fuzz(plan: &FuzzPlan) -> Result<Vec<FuzzFigures>> {
    ensure_nightly()?;
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let fuzz = root.join("fuzz");
    let seeds = fuzz.join("seeds");
    if seeds.exists() {
        fs::remove_dir_all(&seeds)
            .map_err(|e| Failure(format!("cannot clear {}: {e}", seeds.display())))?;
    }
    // The seed generator reads the fixture objects; sharing the workspace's target directory reuses them.
    step(
        "seed corpora from the fixtures (fuzz/examples/seed.rs)",
        cargo(&fuzz)
            .args(["run", "--quiet", "--example", "seed", "--"])
            .arg(&seeds)
            .env("CARGO_TARGET_DIR", root.join("target")),
    )?;
    step(
        "cargo +nightly fuzz build -a",
        nightly_cargo(&fuzz).args(["fuzz", "build", "-a"]),
    )?;
    let logs = report_dir();
    fs::create_dir_all(&logs).map_err(|e| Failure(format!("{}: {e}", logs.display())))?;
    let mut all = Vec::new();
    for target in &plan.targets {
        let corpus = fuzz.join("corpus").join(target);
        fs::create_dir_all(&corpus).map_err(|e| Failure(format!("{}: {e}", corpus.display())))?;
        let mut options = vec![
            "-timeout=10".to_string(),
            "-rss_limit_mb=2048".to_string(),
            "-print_final_stats=1".to_string(),
        ];
        if let Some(s) = plan.seconds {
            options.push(format!("-max_total_time={s}"));
        }
        if let Some(n) = plan.runs {
            options.push("-seed=1".to_string());
            options.push(format!("-runs={n}"));
        }
        let log_path = logs.join(format!("fuzz-{target}.log"));
        let log = fs::File::create(&log_path)
            .map_err(|e| Failure(format!("{}: {e}", log_path.display())))?;
        let err = log
            .try_clone()
            .map_err(|e| Failure(format!("{}: {e}", log_path.display())))?;
        let name = format!(
            "cargo +nightly fuzz run -a {target} fuzz/corpus/{target} fuzz/seeds/{target} -- {}",
            options.join(" ")
        );
        println!("==> {name}");
        let status = nightly_cargo(&fuzz)
            .args(["fuzz", "run", "-a", target])
            .arg(&corpus)
            .arg(seeds.join(target))
            .arg("--")
            .args(&options)
            .stdout(log)
            .stderr(err)
            .status()
            .map_err(|e| Failure(format!("cannot start `{name}`: {e}")))?;
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        if !status.success() {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            return Err(Failure(format!(
                "fuzz target `{target}` found a failure ({status}); log: {}; the input is in \
                 fuzz/artifacts/{target}/ (reproduce with `cd fuzz && cargo +nightly fuzz run -a \
                 {target} fuzz/artifacts/{target}/<file>`), keep it as a regression test",
                log_path.display()
            )));
        }
        let figures = parse_fuzz_log(target, &text);
        println!(
            "    {target}: {} executions in {} s, {} coverage points, corpus {} inputs",
            figures.runs, figures.seconds, figures.coverage, figures.corpus
        );
        all.push(figures);
    }
    Ok(all)
}

fn fuzz_table(figures: &[FuzzFigures]) -> String {
    let mut s = String::from("| target | executions | seconds | coverage points | corpus |\n");
    s.push_str("| --- | ---: | ---: | ---: | ---: |\n");
    for f in figures {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            f.target, f.runs, f.seconds, f.coverage, f.corpus
        );
    }
    s
}

/// `cargo xtask fuzz [--seconds N | --runs N] [TARGET...]`.
pub(crate) fn fuzz(args: &[String]) -> Result {
    let plan = parse_fuzz_args(args)?;
    let start = Instant::now();
    let figures = run_fuzz(&plan)?;
    let table = fuzz_table(&figures);
    let _ = fs::write(report_dir().join("fuzz.md"), &table);
    println!(
        "{table}==> fuzzing passed in {}",
        format_duration(start.elapsed())
    );
    Ok(())
}

/// Runs `command`, echoing its standard output and returning it.
fn run_capturing(name: &str, command: &mut Command) -> Result<String> {
    println!("==> {name}");
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot start `{name}`: {e}")))?;
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            println!("{line}");
            out.push_str(&line);
            out.push('\n');
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failure(format!("`{name}`: {e}")))?;
    if status.success() {
        Ok(out)
    } else {
        Err(Failure(format!("`{name}` failed ({status})")))
    }
}

/// Sums the `N passed` of every `test result:` line.
fn tests_passed(output: &str) -> u64 {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The host test suite under AddressSanitizer; returns its output.
fn asan() -> Result<String> {
    ensure_nightly()?;
    run_capturing(
        "RUSTFLAGS=-Zsanitizer=address cargo +nightly test --target x86_64-unknown-linux-gnu -p llext --tests",
        nightly_cargo(&workspace_root())
            .args(["test", "--target", HOST_TRIPLE, "-p", "llext", "--tests"])
            .env("RUSTFLAGS", "-Zsanitizer=address")
            .env("ASAN_OPTIONS", "detect_leaks=1:detect_stack_use_after_return=1"),
    )
}

/// The command's integration scenarios under valgrind memcheck; returns their output.
fn valgrind() -> Result<String> {
    if !succeeds(Command::new("valgrind").arg("--version")) {
        deps()?;
    }
    run_capturing(
        "cargo test -p llext-cli --test valgrind -- --ignored --nocapture",
        cargo(&workspace_root()).args([
            "test",
            "-p",
            "llext-cli",
            "--test",
            "valgrind",
            "--",
            "--ignored",
            "--nocapture",
        ]),
    )
}

/// `cargo xtask sanitize`.
pub(crate) fn sanitize(args: &[String]) -> Result {
    if let Some(a) = args.first() {
        return Err(Failure(format!("sanitize takes no arguments (got `{a}`)")));
    }
    let start = Instant::now();
    let asan_out = asan()?;
    let valgrind_out = valgrind()?;
    println!(
        "==> sanitizers passed in {}: {} tests under AddressSanitizer, {}",
        format_duration(start.elapsed()),
        tests_passed(&asan_out),
        figure_lines(&valgrind_out, "valgrind").join("; ")
    );
    Ok(())
}

/// The `reliability: <what>...` lines the tests print, without their prefix.
fn figure_lines(output: &str, what: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("reliability: "))
        .filter(|l| l.starts_with(what))
        .map(str::to_string)
        .collect()
}

/// `cargo xtask reliability [--seconds N]`: the fast tests with their figures, both sanitizers, every
/// fuzz target; then a summary, also written to `target/reliability/summary.md`.
pub(crate) fn reliability(args: &[String]) -> Result {
    let plan = parse_fuzz_args(args)?;
    let start = Instant::now();
    let root = workspace_root();
    let tests = run_capturing(
        "cargo test -p llext --test mutation --test alloc_failure --test concurrency --test regressions -- --nocapture",
        cargo(&root).args([
            "test",
            "-p",
            "llext",
            "--test",
            "mutation",
            "--test",
            "alloc_failure",
            "--test",
            "concurrency",
            "--test",
            "regressions",
            "--",
            "--nocapture",
        ]),
    )?;
    let asan_out = asan()?;
    let valgrind_out = valgrind()?;
    let fuzzed = run_fuzz(&plan)?;

    let mut summary = String::from("## Figures of the last `cargo xtask reliability` run\n\n");
    for line in figure_lines(&tests, "") {
        let _ = writeln!(summary, "- {line}");
    }
    let _ = writeln!(
        summary,
        "- AddressSanitizer: {} host tests of `llext` passed, no report",
        tests_passed(&asan_out)
    );
    for line in figure_lines(&valgrind_out, "valgrind") {
        let _ = writeln!(summary, "- {line}");
    }
    summary.push('\n');
    summary.push_str(&fuzz_table(&fuzzed));
    let _ = writeln!(
        summary,
        "\nTotal time {}; zero findings open.",
        format_duration(start.elapsed())
    );
    let path = report_dir().join("summary.md");
    let _ = fs::create_dir_all(report_dir());
    let _ = fs::write(&path, &summary);
    println!("{summary}==> written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_logs_give_runs_coverage_and_corpus() {
        let log = "#2632\tREDUCE cov: 1514 ft: 3981 corp: 131/321Kb lim: 15176 exec/s: 0\n\
                   #547639\tDONE   cov: 1600 ft: 4000 corp: 140/330Kb lim: 15176 exec/s: 26078\n\
                   Done 547639 runs in 21 second(s)\n";
        let f = parse_fuzz_log("elf_inspect", log);
        assert_eq!(
            (f.runs, f.seconds, f.coverage, f.corpus),
            (547639, 21, 1600, 140)
        );
    }

    #[test]
    fn fuzz_arguments() {
        let plan = parse_fuzz_args(&[]).unwrap_or_else(|_| panic!("no arguments"));
        assert_eq!(plan.seconds, Some(DEFAULT_SECONDS));
        assert_eq!(plan.targets.len(), TARGETS.len());
        let args: Vec<String> = ["--runs", "100", "load_link"].map(String::from).to_vec();
        let plan = parse_fuzz_args(&args).unwrap_or_else(|_| panic!("runs"));
        assert_eq!((plan.seconds, plan.runs), (None, Some(100)));
        assert_eq!(plan.targets, ["load_link"]);
        assert!(parse_fuzz_args(&["--seconds".to_string()]).is_err());
        assert!(parse_fuzz_args(&["nope".to_string()]).is_err());
    }
}
