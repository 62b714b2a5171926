//! Builds the fixture objects into `OUT_DIR`.
//!
//! Every `c/*.c` file is compiled by gcc (and by clang when it runs) at each optimisation level,
//! with and without `-fPIC`, into `<stem>-<cc>-<opt>-<pic|nopic>.o`. `partA` and `partB` of each
//! variant are then combined by `ld -r` into `partial-<cc>-<opt>-<pic|nopic>.o`, and
//! `rust/rsext.rs` is compiled by the current `rustc` into `rsext.o`, against the `llext-ext`
//! crate (`../llext-ext`) built by the same `rustc` into `libllext_ext.rlib`.
//!
//! zlib's deflate and inflate, from the `libz-sys` package's sources (see `zlib.rs`), are compiled
//! with the driver `zlib/zlib_main.c` by gcc and clang in the [`ZLIB_VARIANTS`] and combined by
//! `ld -r` into `zlib-<cc>-<opt>-<pic|nopic>.o`; a native build of the same C, run here, gives
//! what they must return (`LLEXT_ZLIB_EXPECTED`).
//!
//! The objects are for the host architecture: they are what the host tests load.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;

/// Optimisation levels of the build matrix, as `-<opt>` compiler flags.
const OPTS: &[&str] = &["O0", "O2", "Os"];

/// Flags every C fixture is compiled with, before `-I`, `-O` and the PIC flag.
const COMMON_FLAGS: &[&str] = &[
    "-c",
    "-std=gnu11",
    "-Wall",
    "-ffreestanding",
    "-fno-stack-protector",
    "-fno-common",
];

/// The two halves that `ld -r` merges into `partial`.
const PARTIAL_INPUTS: [&str; 2] = ["partA", "partB"];

/// Flags of the Rust extension; `-C force-unwind-tables=no` is added when rustc accepts it.
const RUST_FLAGS: &[&str] = &[
    "--edition",
    "2021",
    "--crate-type",
    "lib",
    "--emit",
    "obj",
    "-C",
    "opt-level=2",
    "-C",
    "panic=abort",
    "-C",
    "codegen-units=1",
    "-C",
    "debuginfo=0",
];

/// Flags of `llext-ext`, the macro crate the Rust extension is written with. Its panic strategy
/// matches the extension's.
const EXT_CRATE_FLAGS: &[&str] = &[
    "--crate-type",
    "rlib",
    "--crate-name",
    "llext_ext",
    "--edition",
    "2021",
    "-C",
    "panic=abort",
    "-C",
    "opt-level=2",
];

/// A command to run, with a description for error messages.
struct Job {
    what: String,
    command: Command,
}

#[path = "src/graph.rs"]
mod graph;

#[path = "zlib.rs"]
mod zlib;

/// The zlib fixture's builds for each compiler: (optimisation level, PIC). Each takes about a
/// second of one core.
const ZLIB_VARIANTS: &[(&str, bool)] = &[("O2", true), ("Os", false)];

/// The bundled generated sets: (name prefix, node count, chain only).
const SETS: &[(&str, usize, bool)] = &[("chain3", 3, true), ("set50", 50, false)];

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    let c_dir = manifest_dir.join("c");
    let rust_dir = manifest_dir.join("rust");
    let ext_crate_src = manifest_dir.join("../llext-ext/src");
    let include_dir = manifest_dir.join("../../include");
    let include_dir = include_dir
        .canonicalize()
        .unwrap_or_else(|e| panic!("cannot find {}: {e}", include_dir.display()));

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", c_dir.display());
    println!("cargo:rerun-if-changed={}", rust_dir.display());
    println!("cargo:rerun-if-changed={}", include_dir.display());
    println!("cargo:rerun-if-changed={}", ext_crate_src.display());
    println!("cargo:rerun-if-changed=zlib.rs");
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("zlib").display()
    );
    println!("cargo:rustc-check-cfg=cfg(llext_have_clang)");

    let stems = c_stems(&c_dir);
    for part in PARTIAL_INPUTS {
        assert!(
            stems.iter().any(|s| s == part),
            "c/{part}.c is missing: it is needed to build partial.o"
        );
    }

    let mut compilers = vec!["gcc"];
    if let Err(e) = probe("gcc") {
        panic!("gcc is required to build the llext fixtures: {e}");
    }
    match probe("clang") {
        Ok(()) => {
            compilers.push("clang");
            println!("cargo:rustc-cfg=llext_have_clang");
        }
        Err(e) => println!("cargo:warning=building fixtures without clang: {e}"),
    }

    let mut compile = Vec::new();
    for &cc in &compilers {
        for &opt in OPTS {
            for pic in [true, false] {
                for stem in &stems {
                    let src = c_dir.join(format!("{stem}.c"));
                    let obj = out_dir.join(object_name(stem, cc, opt, pic));
                    compile.push(compile_job(cc, opt, pic, &[], &include_dir, &src, &obj));
                }
            }
        }
    }
    // The zlib fixture compiles with the others, and its native build runs beside them.
    let zlib = zlib_build(&manifest_dir, &out_dir, &compilers);
    let zlib_expected = thread::scope(|scope| {
        let native = scope
            .spawn(|| zlib::native_result("gcc", &zlib.src, &zlib.driver, &out_dir.join("zlib")));
        compile.extend(zlib.jobs);
        run_jobs(compile);
        native
            .join()
            .unwrap_or_else(|_| panic!("the native zlib build panicked"))
    })
    .unwrap_or_else(|e| panic!("cannot compute what the zlib fixture returns: {e}"));

    let mut link = Vec::new();
    for &cc in &compilers {
        for &opt in OPTS {
            for pic in [true, false] {
                let obj = out_dir.join(object_name("partial", cc, opt, pic));
                let mut command = Command::new("ld");
                command.arg("-r");
                for part in PARTIAL_INPUTS {
                    command.arg(out_dir.join(object_name(part, cc, opt, pic)));
                }
                command.arg("-o").arg(&obj);
                link.push(Job {
                    what: format!("ld -r {}", obj.display()),
                    command,
                });
            }
        }
    }
    run_jobs(link);

    link_zlib(&out_dir, &zlib.variants);
    let names: Vec<&str> = zlib.variants.iter().map(|(v, _)| v.as_str()).collect();
    println!("cargo:rustc-env=LLEXT_ZLIB_VARIANTS={}", names.join(","));
    println!("cargo:rustc-env=LLEXT_ZLIB_EXPECTED={zlib_expected}");
    println!("cargo:rustc-env=LLEXT_ZLIB_SEED={}", zlib::SEED);

    // Generated dependency graphs for the restore benchmark and tests, compiled like `cc -c -O2 -fPIC`.
    let gen = out_dir.join("gen");
    std::fs::create_dir_all(&gen).unwrap_or_else(|e| panic!("{}: {e}", gen.display()));
    let mut jobs = Vec::new();
    let mut sets_rs = String::new();
    for &(set, count, chain_only) in SETS {
        sets_rs += &format!(
            "/// The generated `{set}` set: {count} extensions, node `i` depending on {}, in load order.\n",
            if chain_only { "`i - 1`" } else { "`i - 1` and `i / 2`" }
        );
        sets_rs += &format!("pub static {}: &[(&str, &[u8])] = &[\n", set.to_uppercase());
        for i in 0..count {
            let src = gen.join(format!("{set}_{i}.c"));
            let obj = gen.join(format!("{set}_{i}.o"));
            let code = graph::graph_node_source(i, &graph::bundled_deps(i, chain_only));
            if std::fs::read_to_string(&src).ok().as_deref() != Some(code.as_str()) {
                std::fs::write(&src, code).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
            }
            let mut command = Command::new("gcc");
            command
                .args(COMMON_FLAGS)
                .arg(format!("-I{}", include_dir.display()))
                .args(["-O2", "-fPIC"])
                .arg(&src)
                .arg("-o")
                .arg(&obj);
            jobs.push(Job {
                what: format!("gcc {}", obj.display()),
                command,
            });
            sets_rs += &format!(
                "    (\"{set}_{i}\", include_bytes!({:?})),\n",
                obj.display().to_string()
            );
        }
        sets_rs += "];\n";
    }
    run_jobs(jobs);
    let sets_file = out_dir.join("sets.rs");
    std::fs::write(&sets_file, sets_rs).unwrap_or_else(|e| panic!("{}: {e}", sets_file.display()));

    let ext_crate = out_dir.join("libllext_ext.rlib");
    build_ext_crate(&ext_crate_src.join("lib.rs"), &ext_crate);
    build_rust_extension(
        &rust_dir.join("rsext.rs"),
        &out_dir.join("rsext.o"),
        &ext_crate,
    );

    let mut all_stems = stems;
    all_stems.push("partial".to_owned());
    println!(
        "cargo:rustc-env=LLEXT_FIXTURES_STEMS={}",
        all_stems.join(",")
    );
    println!(
        "cargo:rustc-env=LLEXT_FIXTURES_COMPILERS={}",
        compilers.join(",")
    );
    println!("cargo:rustc-env=LLEXT_FIXTURES_OPTS={}", OPTS.join(","));
}

/// The zlib fixture's build: its sources, and what to run.
struct ZlibBuild {
    /// zlib's sources.
    src: PathBuf,
    /// The driver, `zlib/zlib_main.c`.
    driver: PathBuf,
    /// The compile jobs of every compiler and [`ZLIB_VARIANTS`].
    jobs: Vec<Job>,
    /// Each variant's object name and the directory of its compiled parts.
    variants: Vec<(String, PathBuf)>,
}

/// Finds zlib's sources and makes the jobs that compile the zlib fixture.
fn zlib_build(manifest_dir: &Path, out_dir: &Path, compilers: &[&str]) -> ZlibBuild {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let host = env_var("HOST");
    let src = zlib::source_dir(&cargo, &manifest_dir.join("Cargo.toml"), &host)
        .unwrap_or_else(|e| panic!("cannot find zlib's sources for the zlib fixture: {e}"));
    let driver = manifest_dir.join("zlib/zlib_main.c");
    let dir = out_dir.join("zlib");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut compile = Vec::new();
    let mut variants = Vec::new();
    for &cc in compilers {
        for &(opt, pic) in ZLIB_VARIANTS {
            let variant = object_name("zlib", cc, opt, pic);
            let parts = dir.join(variant.trim_end_matches(".o"));
            for (source, obj) in zlib::units(&src, &driver, &parts) {
                compile.push(compile_job(cc, opt, pic, zlib::FLAGS, &src, &source, &obj));
            }
            variants.push((variant, parts));
        }
    }
    ZlibBuild {
        src,
        driver,
        jobs: compile,
        variants,
    }
}

/// Combines the driver and zlib of each variant (name, directory of its objects) into one object.
fn link_zlib(out_dir: &Path, variants: &[(String, PathBuf)]) {
    let mut link = Vec::new();
    for (variant, parts) in variants {
        let obj = out_dir.join(variant);
        let mut command = Command::new("ld");
        command.arg("-r");
        for stem in std::iter::once("zlib_main").chain(zlib::SOURCES.iter().copied()) {
            command.arg(parts.join(format!("{stem}.o")));
        }
        command.arg("-o").arg(&obj);
        link.push(Job {
            what: format!("ld -r {}", obj.display()),
            command,
        });
    }
    run_jobs(link);
}

/// `<stem>-<cc>-<opt>-<pic|nopic>.o`, the naming `src/lib.rs` relies on.
/// The job compiling C `source` into `obj` with `cc` at `-{opt}`, position-independent or not, with
/// [`COMMON_FLAGS`], `flags` and `include` as an include directory.
fn compile_job(
    cc: &str,
    opt: &str,
    pic: bool,
    flags: &[&str],
    include: &Path,
    source: &Path,
    obj: &Path,
) -> Job {
    let mut command = Command::new(cc);
    command
        .args(COMMON_FLAGS)
        .args(flags)
        .arg(format!("-I{}", include.display()))
        .arg(format!("-{opt}"))
        .arg(if pic { "-fPIC" } else { "-fno-pic" })
        .arg(source)
        .arg("-o")
        .arg(obj);
    Job {
        what: format!("{cc} {}", obj.display()),
        command,
    }
}

fn object_name(stem: &str, cc: &str, opt: &str, pic: bool) -> String {
    let pic = if pic { "pic" } else { "nopic" };
    format!("{stem}-{cc}-{opt}-{pic}.o")
}

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("cargo did not set {name}"))
}

/// The stems of `c/*.c`, sorted so the build and the list given to the crate are stable.
fn c_stems(c_dir: &Path) -> Vec<String> {
    let entries =
        fs::read_dir(c_dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", c_dir.display()));
    let mut stems: Vec<String> = entries
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", c_dir.display())))
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .map(|path| {
            let stem = path.file_stem().and_then(|s| s.to_str());
            stem.unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
                .to_owned()
        })
        .collect();
    stems.sort();
    stems
}

/// Runs `<compiler> --version`, so a missing or broken compiler is found before the matrix.
fn probe(compiler: &str) -> Result<(), String> {
    match Command::new(compiler).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("`{compiler} --version` failed: {}", out.status)),
        Err(e) => Err(format!("cannot run `{compiler}`: {e}")),
    }
}

/// How many failed jobs are shown in full; one broken source fails every variant alike.
const SHOWN_FAILURES: usize = 3;

/// Runs the jobs, as many at a time as cargo allows this build script, and once all have
/// finished panics showing the first failed jobs with their command lines and output.
fn run_jobs(jobs: Vec<Job>) {
    let parallel = env::var("NUM_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .or_else(|| thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    let mut running: Vec<(String, String, Child)> = Vec::new();
    let mut failures = Vec::new();
    let finish = |(what, line, child): (String, String, Child), failures: &mut Vec<String>| {
        report(&what, &line, child.wait_with_output(), failures);
    };
    for mut job in jobs {
        if running.len() >= parallel {
            finish(running.remove(0), &mut failures);
        }
        let line = format!("{:?}", job.command);
        match job
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => running.push((job.what, line, child)),
            Err(e) => {
                failures.push(format!("{}: cannot start {line}: {e}", job.what));
            }
        }
    }
    for entry in running {
        finish(entry, &mut failures);
    }
    if !failures.is_empty() {
        let mut message = String::from("building the llext fixtures failed:\n");
        for failure in failures.iter().take(SHOWN_FAILURES) {
            let _ = writeln!(message, "{failure}");
        }
        if failures.len() > SHOWN_FAILURES {
            let more = failures.len() - SHOWN_FAILURES;
            let _ = writeln!(message, "... and {more} more failed jobs");
        }
        panic!("{message}");
    }
}

/// Records a failed job in `failures`; a successful job's diagnostics become cargo warnings.
fn report(what: &str, line: &str, result: std::io::Result<Output>, failures: &mut Vec<String>) {
    match result {
        Ok(out) if out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            for diagnostic in stderr.lines() {
                println!("cargo:warning={what}: {diagnostic}");
            }
        }
        Ok(out) => {
            failures.push(format!(
                "{what}: {} ({line})\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            ));
        }
        Err(e) => {
            failures.push(format!("{what}: cannot wait for {line}: {e}"));
        }
    }
}

/// The rustc cargo uses for this build.
fn rustc() -> std::ffi::OsString {
    env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

/// Compiles `llext-ext` into the rlib `rlib` with the rustc cargo uses, so the Rust extension
/// can name it with `--extern`.
fn build_ext_crate(src: &Path, rlib: &Path) {
    let mut command = Command::new(rustc());
    command.args(EXT_CRATE_FLAGS).arg(src).arg("-o").arg(rlib);
    let line = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
    if !out.status.success() {
        panic!(
            "building llext-ext for the Rust extension failed: {} ({line})\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for diagnostic in String::from_utf8_lossy(&out.stderr).lines() {
        println!("cargo:warning=llext-ext: {diagnostic}");
    }
}

/// Compiles the Rust extension against the `llext-ext` rlib with the rustc cargo uses,
/// retrying without `-C force-unwind-tables=no` for targets that insist on unwind tables.
fn build_rust_extension(src: &Path, obj: &Path, ext_crate: &Path) {
    let rustc = rustc();
    let mut extern_arg = std::ffi::OsString::from("llext_ext=");
    extern_arg.push(ext_crate);
    let lib_dir = ext_crate.parent().unwrap_or_else(|| Path::new("."));
    let attempt = |no_unwind_tables: bool| {
        let mut command = Command::new(&rustc);
        command.args(RUST_FLAGS);
        if no_unwind_tables {
            command.args(["-C", "force-unwind-tables=no"]);
        }
        command
            .arg("--extern")
            .arg(&extern_arg)
            .arg("-L")
            .arg(lib_dir)
            .arg(src)
            .arg("-o")
            .arg(obj);
        let line = format!("{command:?}");
        let out = command
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
        (line, out)
    };
    let (mut line, mut out) = attempt(true);
    if !out.status.success() {
        (line, out) = attempt(false);
    }
    if !out.status.success() {
        panic!(
            "building the Rust extension failed: {} ({line})\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for diagnostic in String::from_utf8_lossy(&out.stderr).lines() {
        println!("cargo:warning=rsext: {diagnostic}");
    }
}
