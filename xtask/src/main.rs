//! Project tasks for llext, run as `cargo xtask <task>` (the alias lives in
//! `.cargo/config.toml`). Plain `std`, so the tasks build in seconds on a fresh checkout.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

mod footprint;
/// The firmware targets' cross compilers and flags, as `llext-cross` and the firmware's build script use them.
#[path = "../../crates/llext-cross/src/targets.rs"]
#[allow(dead_code)]
mod llext_cross_targets;
mod qemu;
mod reliability;
#[path = "../../crates/llext-fixtures/zlib.rs"]
#[allow(dead_code)]
mod zlib;

/// Debian packages the host tests need: compilers for the fixtures, binutils for `ld -r` and
/// `readelf`, LLVM tools, and valgrind. Targets added later (QEMU, cross compilers) append here.
const HOST_PACKAGES: &[&str] = &["gcc", "clang", "lld", "llvm", "binutils", "valgrind"];

/// Every package `deps` checks: the host ones and the targets' ([`qemu::TARGET_PACKAGES`]).
fn all_packages() -> Vec<&'static str> {
    HOST_PACKAGES
        .iter()
        .chain(qemu::TARGET_PACKAGES)
        .copied()
        .collect()
}

/// Set for `cargo test` in CI so that the fixtures refuse to run without their clang variants.
const REQUIRE_CLANG_VAR: &str = "LLEXT_REQUIRE_CLANG";

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  deps    check the Debian packages the tests need; install the missing ones
          when running as root on Debian/Ubuntu, else print the command
  ci      deps, fmt check, clippy, tests, docs, the CLI demo and the firmware
          tests under QEMU, failing fast
  qemu [TARGET...]
          build the test firmware and run it under QEMU (targets: cortex-m,
          riscv32, riscv64, aarch64; all by default)
  qemu-run --target TARGET [--call SYM] [--arg INT]... FILE...
          load extension files on the emulated target, call SYM, print
          `returned: N`
  qemu-run --target TARGET --exports
          print the firmware's export table as `NAME ADDRESS` lines (and
          where it puts extensions), for `llext check --exports FILE`
  footprint
          flash and RAM the loader adds to the Cortex-M firmware, and the
          heap and memory each fixture extension takes (`key: value` lines)
  fuzz [--seconds N | --runs N] [TARGET...]
          seed corpora from the fixtures, then run each cargo-fuzz target in
          fuzz/ (60 s each by default; --runs N: N inputs, fixed seed)
  sanitize
          host tests under AddressSanitizer, the command under valgrind
  reliability [--seconds N]
          mutation, allocation-failure and concurrency tests, sanitize and
          fuzz, with a summary of the figures (target/reliability/)
  help    this message
";

/// Why a task failed, already phrased for the user.
struct Failure(String);

type Result<T = ()> = std::result::Result<T, Failure>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map(String::as_str);
    if args.len() > 1
        && !matches!(
            task,
            Some("qemu" | "qemu-run" | "fuzz" | "sanitize" | "reliability")
        )
    {
        eprintln!("error: unexpected arguments after `{}`\n\n{USAGE}", args[0]);
        return ExitCode::from(2);
    }
    let result = match task {
        None | Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("deps") => deps(),
        Some("ci") => ci(),
        Some("qemu") => qemu::qemu(&args[1..]),
        Some("fuzz") => reliability::fuzz(&args[1..]),
        Some("sanitize") => reliability::sanitize(&args[1..]),
        Some("reliability") => reliability::reliability(&args[1..]),
        Some("qemu-run") => qemu::qemu_run(&args[1..]),
        Some("footprint") => footprint::footprint(),
        Some(other) => {
            eprintln!("error: unknown task `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask deps`: makes sure every package of [`all_packages`] is installed.
fn deps() -> Result {
    let packages = all_packages();
    let missing = missing_packages(&packages)?;
    if missing.is_empty() {
        println!("all packages installed: {}", packages.join(" "));
        return Ok(());
    }
    let list = missing.join(" ");
    println!("missing Debian packages: {list}");
    let on_debian = Path::new("/etc/debian_version").exists();
    if !on_debian {
        return Err(Failure(format!(
            "not a Debian/Ubuntu system; install the equivalents of these packages: {list}"
        )));
    }
    let install = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
         --no-install-recommends {list}"
    );
    if !is_root()? {
        return Err(Failure(format!("run as root:\n    {install}")));
    }
    run("apt-get update", Command::new("apt-get").arg("update"))?;
    run(
        &format!("apt-get install {list}"),
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    let still_missing = missing_packages(&packages)?;
    if !still_missing.is_empty() {
        return Err(Failure(format!(
            "still missing after apt-get install: {}",
            still_missing.join(" ")
        )));
    }
    Ok(())
}

/// The packages that `dpkg-query` does not report as installed.
fn missing_packages(packages: &[&'static str]) -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for &package in packages {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", package])
            .output()
            .map_err(|e| {
                Failure(format!(
                    "cannot run dpkg-query ({e}); install these packages with your system's \
                     package manager: {}",
                    packages.join(" ")
                ))
            })?;
        // An unknown package makes dpkg-query fail; a removed one reports "deinstall ok
        // config-files". Only "install ok installed" means the files are there.
        let status = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || status.trim() != "install ok installed" {
            missing.push(package);
        }
    }
    Ok(missing)
}

/// Whether `id -u` says we are root.
fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| Failure(format!("cannot run `id -u`: {e}")))?;
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `cargo xtask ci`: every check CI makes, in order, stopping at the first failure.
fn ci() -> Result {
    let start = Instant::now();
    let result = ci_steps();
    let elapsed = format_duration(start.elapsed());
    match &result {
        Ok(()) => println!("==> ci passed in {elapsed}"),
        Err(_) => println!("==> ci failed after {elapsed}"),
    }
    result
}

fn ci_steps() -> Result {
    let root = workspace_root();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let cargo = |args: &[&str]| {
        let mut command = Command::new(&cargo);
        command.current_dir(&root).args(args);
        command
    };

    println!("==> deps");
    deps()?;
    step(
        "cargo fmt --all -- --check",
        &mut cargo(&["fmt", "--all", "--", "--check"]),
    )?;
    // The firmware and fuzz workspaces are excluded from the main one; their sources are checked too.
    for dir in ["firmware", "fuzz"] {
        step(
            &format!("(cd {dir} && cargo fmt --all -- --check)"),
            cargo(&["fmt", "--all", "--", "--check"]).current_dir(root.join(dir)),
        )?;
    }
    step(
        "cargo clippy --workspace --all-targets -- -D warnings",
        &mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        &format!("{REQUIRE_CLANG_VAR}=1 cargo test --workspace"),
        cargo(&["test", "--workspace"]).env(REQUIRE_CLANG_VAR, "1"),
    )?;
    // llext as an in-place-only firmware takes it, without its `portable` feature: clippy over every
    // target, and the test file of its refusals, which the default build leaves empty (the whole suite
    // passes there too, `--features std,all-arches`, but builds every test again: a minute more).
    let without_portable = ["-p", "llext", "--no-default-features", "--features", "std"];
    step(
        "cargo clippy -p llext --no-default-features --features std --all-targets -- -D warnings",
        cargo(&["clippy"])
            .args(without_portable)
            .args(["--all-targets", "--", "-D", "warnings"]),
    )?;
    step(
        &format!(
            "{REQUIRE_CLANG_VAR}=1 cargo test -p llext --no-default-features --features std \
             --test without_portable"
        ),
        cargo(&["test"])
            .args(without_portable)
            .args(["--test", "without_portable"])
            .env(REQUIRE_CLANG_VAR, "1"),
    )?;
    println!("==> cargo xtask qemu");
    qemu::qemu(&[])?;
    // A short, deterministic fuzz pass (fixed seed, fixed number of inputs per target) on every change;
    // `cargo xtask fuzz` / `cargo xtask reliability` run the long ones.
    println!("==> cargo xtask fuzz --runs 20000");
    reliability::fuzz(&["--runs".to_string(), "20000".to_string()])?;
    step(
        "RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps",
        cargo(&["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    step(
        "cargo run --release -p llext-cli -- demo",
        &mut cargo(&["run", "--release", "-p", "llext-cli", "--", "demo"]),
    )?;
    Ok(())
}

/// Prints `==> <name>` and runs the command.
fn step(name: &str, command: &mut Command) -> Result {
    println!("==> {name}");
    run(name, command)
}

/// Runs a command with inherited standard streams, failing unless it exits successfully.
fn run(name: &str, command: &mut Command) -> Result {
    let status = command
        .status()
        .map_err(|e| Failure(format!("cannot start `{name}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure(format!("`{name}` failed ({status})")))
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// `1m 23.4s` or `8.2s`.
fn format_duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let minutes = (seconds / 60.0).floor();
    if minutes >= 1.0 {
        format!("{minutes:.0}m {:.1}s", seconds - minutes * 60.0)
    } else {
        format!("{seconds:.1}s")
    }
}
