//! Builds the firmware fixture extensions (`firmware/fixtures/*.c`) for every firmware target with clang and
//! the target's GNU cross compiler, at each optimisation level and object flavour, into `OUT_DIR`; and each
//! target's assembly fixture (`fixtures/relocs-*.S`, relocation types no compiler emits for the C ones) with
//! both assemblers.
//!
//! A missing compiler does not fail the build: it is recorded (with the Debian package that provides it) in
//! `LLEXT_CROSS_MISSING`, and the tests refuse to pass without its objects unless
//! `LLEXT_ALLOW_MISSING_CROSS=1` is set.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[path = "src/targets.rs"]
#[allow(dead_code)]
mod targets;

use targets::{asm_object_name, compile_command, object_name, OPTS, STEMS, TARGETS};

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = manifest.join("../..");
    let fixtures = root.join("firmware/fixtures");
    let include = root.join("include");
    let asm = manifest.join("fixtures");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", asm.display());
    println!("cargo:rerun-if-changed=src/targets.rs");
    println!("cargo:rerun-if-changed={}", fixtures.display());
    println!("cargo:rerun-if-changed={}", include.display());

    let mut missing: Vec<String> = Vec::new();
    let mut built: Vec<String> = Vec::new();
    let mut jobs: Vec<(String, Command)> = Vec::new();
    let clang_ok = probe("clang");
    if !clang_ok {
        missing.push("clang (package clang)".to_owned());
    }
    for target in TARGETS {
        fs::create_dir_all(out.join(target.name)).expect("create the output directory");
        let gcc_ok = probe(target.gcc.command);
        if !gcc_ok {
            let entry = format!("{} (package {})", target.gcc.command, target.gcc.package);
            if !missing.contains(&entry) {
                missing.push(entry);
            }
        }
        for (cc, ok) in [("clang", clang_ok), ("gcc", gcc_ok)] {
            if !ok {
                continue;
            }
            let name = asm_object_name(target.name, cc);
            let mut command = if cc == "clang" {
                let mut c = Command::new("clang");
                c.args(target.asm.clang);
                c
            } else {
                let mut c = Command::new(target.gcc.command);
                c.args(target.asm.gcc);
                c
            };
            command
                .arg("-c")
                .arg(asm.join(target.asm.source))
                .arg("-o")
                .arg(out.join(&name));
            jobs.push((name.clone(), command));
            built.push(name);
            for opt in OPTS {
                for flavour in target.flavours {
                    for stem in STEMS {
                        let name = object_name(target.name, stem, cc, opt, flavour);
                        let mut command = compile_command(target, cc, opt, flavour);
                        command
                            .arg(format!("-I{}", include.display()))
                            .arg(format!("-I{}", fixtures.display()))
                            .arg(fixtures.join(format!("{stem}.c")))
                            .arg("-o")
                            .arg(out.join(&name));
                        jobs.push((name.clone(), command));
                        built.push(name);
                    }
                }
            }
        }
    }
    run_all(jobs);
    println!("cargo:rustc-env=LLEXT_CROSS_MISSING={}", missing.join(";"));
    println!("cargo:rustc-env=LLEXT_CROSS_BUILT={}", built.join(","));
}

fn probe(command: &str) -> bool {
    Command::new(command)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the jobs two at a time (the machines are shared), panicking with the first failures.
fn run_all(jobs: Vec<(String, Command)>) {
    let parallel = env::var("NUM_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 2);
    let mut running: Vec<(String, Child)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let finish = |(name, child): (String, Child), failures: &mut Vec<String>| match child
        .wait_with_output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => failures.push(format!(
            "{name}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => failures.push(format!("{name}: {e}")),
    };
    for (name, mut command) in jobs {
        if running.len() >= parallel {
            finish(running.remove(0), &mut failures);
        }
        match command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => running.push((name, child)),
            Err(e) => failures.push(format!("{name}: cannot start {command:?}: {e}")),
        }
    }
    for entry in running {
        finish(entry, &mut failures);
    }
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(3).collect();
        panic!(
            "building the cross fixtures failed ({} jobs):\n{}",
            failures.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let _ = Path::new(".");
}
