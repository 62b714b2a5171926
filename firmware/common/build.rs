//! Builds the firmware's C library and the fixture extensions for the target being built.
//!
//! The fixtures are `firmware/fixtures/*.c` compiled with clang and the target's GNU cross compiler at
//! `-O0`, `-Os`, `-O2` in each flavour, exactly as the host cross-check builds them (the matrix lives in
//! `crates/llext-cross/src/targets.rs`); `fixtures.rs` embeds them, each in a 64-byte aligned static so
//! that sections keep their alignment where they lie in the image (in-place loading needs that). A Rust
//! extension object given in `LLEXT_FW_RSEXT` is embedded too.
//!
//! The zlib fixture (`crates/llext-fixtures/zlib.rs`): zlib's deflate and inflate from the sources in
//! `LLEXT_FW_ZLIB` (the `libz-sys` crate's `src/zlib`, which `cargo xtask` finds) and the driver
//! `zlib_main.c`, built by clang and the GNU cross compiler at `-O2` and `-Os` in the target's first
//! flavour and combined by the target's `ld -r`; a native build of the same C on the host gives what it
//! must return (`ZLIB_EXPECTED`).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../crates/llext-cross/src/targets.rs"]
#[allow(dead_code)]
mod targets;

#[path = "../../crates/llext-fixtures/zlib.rs"]
#[allow(dead_code)]
mod zlib;

/// Optimisation levels of the zlib fixture: each build takes a few seconds of one core.
const ZLIB_OPTS: &[&str] = &["O2", "Os"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let triple = env::var("TARGET").expect("TARGET");
    let root = manifest.join("../..");
    println!("cargo:rerun-if-changed=c/libc.c");
    println!("cargo:rerun-if-changed=../fixtures");
    println!("cargo:rerun-if-changed=../../crates/llext-cross/src/targets.rs");
    println!("cargo:rerun-if-env-changed=LLEXT_FW_RSEXT");
    println!("cargo:rerun-if-env-changed=LLEXT_FW_ZLIB");
    println!("cargo:rerun-if-changed=../../crates/llext-fixtures/zlib.rs");
    println!("cargo:rerun-if-changed=../../crates/llext-fixtures/zlib");

    let name = match triple.as_str() {
        "thumbv7em-none-eabihf" => "cortex-m",
        "riscv32imac-unknown-none-elf" => "riscv32",
        "riscv64gc-unknown-none-elf" => "riscv64",
        "aarch64-unknown-none" => "aarch64",
        other => panic!("no firmware for target {other}"),
    };
    let target = targets::TARGETS
        .iter()
        .find(|t| t.name == name)
        .expect("target in the matrix");

    // The C library, with the same clang flags as the fixtures.
    let libc_obj = out.join("libc.o");
    run(Command::new("clang")
        .args(target.clang)
        .args([
            "-c",
            "-O2",
            "-ffreestanding",
            "-fno-builtin",
            "-fno-stack-protector",
            "-Wall",
            "-std=gnu11",
        ])
        .arg(manifest.join("c/libc.c"))
        .arg("-o")
        .arg(&libc_obj));
    let archive = out.join("libfwlibc.a");
    let _ = fs::remove_file(&archive);
    run(Command::new("llvm-ar")
        .arg("crs")
        .arg(&archive)
        .arg(&libc_obj));
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=fwlibc");

    // The fixture matrix.
    let fixtures = root.join("firmware/fixtures");
    let include = root.join("include");
    let dir = out.join("fixtures");
    fs::create_dir_all(&dir).expect("fixture directory");
    // Each object in its own aligned static, then the list of (name, bytes).
    let mut statics = String::from(
        "/// ELF bytes at an alignment no section of a fixture exceeds.\n\
         #[repr(C, align(64))]\npub struct Aligned<T>(pub T);\n",
    );
    let mut list = String::from("/// Embedded fixture extensions: (name, ELF bytes).\npub static FIXTURES: &[(&str, &[u8])] = &[\n");
    let mut count = 0usize;
    let mut embed = |name: &str, path: &Path, statics: &mut String, list: &mut String| {
        let len = fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        let index = count;
        count += 1;
        let _ = writeln!(
            statics,
            "static F{index}: Aligned<[u8; {len}]> = Aligned(*include_bytes!({:?}));",
            path.display().to_string()
        );
        let _ = writeln!(list, "    (\"{name}\", &F{index}.0),");
    };
    for cc in ["clang", "gcc"] {
        for opt in targets::OPTS {
            for flavour in target.flavours {
                for stem in targets::STEMS {
                    let obj_name = format!("{stem}-{cc}-{opt}-{flavour}");
                    let obj = dir.join(format!("{obj_name}.o"));
                    let mut command = targets::compile_command(target, cc, opt, flavour);
                    command
                        .arg(format!("-I{}", include.display()))
                        .arg(format!("-I{}", fixtures.display()))
                        .arg(fixtures.join(format!("{stem}.c")))
                        .arg("-o")
                        .arg(&obj);
                    if cc == "gcc"
                        && Command::new(target.gcc.command)
                            .arg("--version")
                            .output()
                            .is_err()
                    {
                        panic!(
                            "{} is missing: install the Debian package {}",
                            target.gcc.command, target.gcc.package
                        );
                    }
                    run(&mut command);
                    embed(&obj_name, &obj, &mut statics, &mut list);
                }
            }
        }
    }
    // One more object of a fixture: the compiler's core and ABI flags (the target's, or another core's),
    // then the common ones and `flags`, at -O2 without PIC.
    let mut one_more = |obj_name: &str, core: &[&str], flags: &[&str], source: &str| {
        let obj = dir.join(format!("{obj_name}.o"));
        run(Command::new(target.gcc.command)
            .args(core)
            .args(targets::COMMON_FLAGS)
            .args(["-O2", "-fno-pic"])
            .args(flags)
            .arg(format!("-I{}", include.display()))
            .arg(format!("-I{}", fixtures.display()))
            .arg(fixtures.join(source))
            .arg("-o")
            .arg(&obj));
        embed(obj_name, &obj, &mut statics, &mut list);
    };
    let own = target.gcc.flags;
    // `leaf.c` built for another floating-point calling convention, which the firmware must refuse.
    if !target.other_float_abi.is_empty() {
        one_more(
            "floatabi-gcc-O2-nopic",
            own,
            target.other_float_abi,
            "leaf.c",
        );
    }
    // `leaf.c` built for more instructions than the firmware's core runs, which the firmware must refuse.
    if !target.more_isa.is_empty() {
        one_more("isa-gcc-O2-nopic", own, target.more_isa, "leaf.c");
    }
    // On riscv32: `basic.c` built without M, whose multiplications and remainders call libgcc's
    // `__mulsi3` and `__modsi3`, which the firmware exports with the rest of that family. It must run.
    if name == "riscv32" {
        one_more("basic-gcc-O2-rv32i", own, &["-march=rv32i"], "basic.c");
    }
    // On the Cortex-M: `leaf.c` as A32 code (for a Cortex-A, with the firmware's float ABI), which the
    // firmware must refuse.
    if name == "cortex-m" {
        let a7 = ["-mcpu=cortex-a7", "-marm", "-mfloat-abi=hard"];
        one_more("armstate-gcc-O2-nopic", &a7, &[], "leaf.c");
    }
    if let Some(rsext) = env::var_os("LLEXT_FW_RSEXT").filter(|v| !v.is_empty()) {
        let path = Path::new(&rsext);
        println!("cargo:rerun-if-changed={}", path.display());
        embed("rsext-rustc-Os-nopic", path, &mut statics, &mut list);
    }
    let zlib_src = env::var_os("LLEXT_FW_ZLIB")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "LLEXT_FW_ZLIB is not set: it names zlib's sources (the libz-sys crate's src/zlib) for the \
                 zlib fixture; `cargo xtask qemu` sets it"
            )
        });
    let (objects, expected) = build_zlib(target, &zlib_src, &root, &dir);
    for (obj_name, obj) in &objects {
        embed(obj_name, obj, &mut statics, &mut list);
    }
    let _ = writeln!(
        statics,
        "/// What `zlib_main(ZLIB_SEED)` of the zlib fixture returns, natively on the host.\n\
         pub const ZLIB_EXPECTED: isize = {expected};\n\
         /// The argument the tests give `zlib_main`.\n\
         pub const ZLIB_SEED: isize = {};",
        zlib::SEED,
    );
    list.push_str("];\n");
    statics.push_str(&list);
    fs::write(out.join("fixtures.rs"), statics).expect("write fixtures.rs");
}

/// Builds the zlib fixture for `target` (objects named `zlib-<cc>-<opt>-<flavour>`) and natively on the
/// host, beside each other; returns the objects and what they must return.
fn build_zlib(
    target: &targets::Target,
    src: &Path,
    root: &Path,
    dir: &Path,
) -> (Vec<(String, PathBuf)>, i64) {
    let driver = root.join("crates/llext-fixtures/zlib/zlib_main.c");
    // The target's first flavour at each level, and every other flavour (PIC, long calls, no
    // relaxation, save/restore calls) at -O2.
    let (first, others) = target
        .flavours
        .split_first()
        .expect("a target has flavours");
    let variants: Vec<(&str, &str)> = ZLIB_OPTS
        .iter()
        .map(|&opt| (opt, *first))
        .chain(others.iter().map(|&flavour| ("O2", flavour)))
        .collect();
    let mut builds = Vec::new();
    let mut compiles = Vec::new();
    for cc in ["clang", "gcc"] {
        for &(opt, flavour) in &variants {
            let obj_name = format!("zlib-{cc}-{opt}-{flavour}");
            let parts = dir.join(&obj_name);
            let mut objects = Vec::new();
            for (source, obj) in zlib::units(src, &driver, &parts) {
                let mut command = targets::compile_command(target, cc, opt, flavour);
                command
                    .args(zlib::FLAGS)
                    .arg(format!("-I{}", src.display()))
                    .arg(&source)
                    .arg("-o")
                    .arg(&obj);
                compiles.push(command);
                objects.push(obj);
            }
            builds.push((obj_name, objects));
        }
    }
    let native_dir = dir.join("zlib-native");
    fs::create_dir_all(&native_dir).unwrap_or_else(|e| panic!("{}: {e}", native_dir.display()));
    let expected = std::thread::scope(|scope| {
        let native = scope.spawn(|| zlib::native_result("gcc", src, &driver, &native_dir));
        run_parallel(compiles);
        native.join().expect("the native zlib build")
    })
    .unwrap_or_else(|e| panic!("cannot compute what the zlib fixture returns: {e}"));
    let mut linked = Vec::new();
    for (obj_name, objects) in builds {
        let obj = dir.join(format!("{obj_name}.o"));
        if Command::new(target.ld.command)
            .arg("--version")
            .output()
            .is_err()
        {
            panic!(
                "{} is missing: install the Debian package {}",
                target.ld.command, target.ld.package
            );
        }
        run(Command::new(target.ld.command)
            .args(target.ld.flags)
            .arg("-r")
            .args(&objects)
            .arg("-o")
            .arg(&obj));
        linked.push((obj_name, obj));
    }
    (linked, expected)
}

/// Runs the commands, as many at a time as cargo allows this build script, and panics on the first that
/// fails.
fn run_parallel(commands: Vec<Command>) {
    let parallel = env::var("NUM_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let mut running = std::collections::VecDeque::new();
    let wait = |(line, child): (String, std::process::Child)| {
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for {line}: {e}"));
        assert!(
            out.status.success(),
            "{line} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for mut command in commands {
        if running.len() >= parallel {
            wait(running.pop_front().expect("a running command"));
        }
        let line = format!("{command:?}");
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
        running.push_back((line, child));
    }
    for entry in running {
        wait(entry);
    }
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
