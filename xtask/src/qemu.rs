//! `cargo xtask qemu [TARGET...]` and `cargo xtask qemu-run --target TARGET [--call SYM] [--arg INT]...
//! FILE...`: build the test firmware (`firmware/`) with Debian's Rust toolchain and run it under QEMU.
//!
//! Each firmware embeds the fixture extensions built for its target (clang and the GNU cross compiler, every
//! optimisation level and flavour, by the firmware's build script) and the Rust extension `firmware/rsext`
//! (built here first, its own archive member extracted with `llvm-ar`). The firmware prints one line per
//! case and `N passed, N failed`, and exits non-zero on any failure; a run that outlives its timeout fails.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{workspace_root, Failure, Result};

/// Debian packages the firmware builds and QEMU runs need, beyond the host ones.
pub const TARGET_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "gcc-arm-none-eabi",
    "gcc-riscv64-unknown-elf",
    "gcc-aarch64-linux-gnu",
    "qemu-system-arm",
    "qemu-system-misc",
];

/// How long one firmware may run.
const TIMEOUT: Duration = Duration::from_secs(120);

/// One emulated target.
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) triple: &'static str,
    pub(crate) package: &'static str,
    qemu: &'static [&'static str],
    /// Extra rustc flags for the Rust extension.
    rsext_flags: &'static str,
}

const TARGETS: &[Target] = &[
    Target {
        name: "cortex-m",
        triple: "thumbv7em-none-eabihf",
        package: "llext-fw-cortex-m",
        qemu: &[
            "qemu-system-arm",
            "-machine",
            "mps2-an386",
            "-cpu",
            "cortex-m4",
        ],
        rsext_flags: "",
    },
    Target {
        name: "riscv32",
        triple: "riscv32imac-unknown-none-elf",
        package: "llext-fw-riscv",
        qemu: &["qemu-system-riscv32", "-machine", "virt", "-bios", "none"],
        rsext_flags: "",
    },
    Target {
        name: "riscv64",
        triple: "riscv64gc-unknown-none-elf",
        package: "llext-fw-riscv",
        qemu: &["qemu-system-riscv64", "-machine", "virt", "-bios", "none"],
        rsext_flags: "-Ccode-model=medium",
    },
    Target {
        name: "aarch64",
        triple: "aarch64-unknown-none",
        package: "llext-fw-aarch64",
        qemu: &[
            "qemu-system-aarch64",
            "-machine",
            "virt",
            "-cpu",
            "cortex-a53",
            "-nic",
            "none",
        ],
        rsext_flags: "",
    },
];

pub(crate) fn target(name: &str) -> Result<&'static Target> {
    TARGETS.iter().find(|t| t.name == name).ok_or_else(|| {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        Failure(format!(
            "unknown target `{name}` (targets: {})",
            names.join(", ")
        ))
    })
}

/// Debian's cargo with Debian's rustc and `RUSTC_BOOTSTRAP`, the combination `-Zbuild-std` needs.
pub(crate) fn debian_cargo(dir: &Path) -> Command {
    let mut command = Command::new("/usr/bin/cargo");
    command
        .current_dir(dir)
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    command
}

/// [`debian_cargo`] in `firmware/`, told where zlib's sources are (`LLEXT_FW_ZLIB`, the `libz-sys` crate's
/// `src/zlib`, which the firmware's build script compiles into the zlib fixture).
pub(crate) fn firmware_cargo(root: &Path) -> Result<Command> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let zlib = crate::zlib::source_dir(
        &cargo,
        &root.join("Cargo.toml"),
        crate::reliability::HOST_TRIPLE,
    )
    .map_err(|e| Failure(format!("cannot find zlib's sources for the firmware: {e}")))?;
    let mut command = debian_cargo(&root.join("firmware"));
    command.env("LLEXT_FW_ZLIB", zlib);
    Ok(command)
}

pub(crate) fn check(name: &str, command: &mut Command) -> Result {
    let status = command
        .status()
        .map_err(|e| Failure(format!("cannot start `{name}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure(format!("`{name}` failed ({status})")))
    }
}

/// Builds the Rust extension for `t` and extracts its own object; returns its path.
fn build_rsext(root: &Path, t: &Target) -> Result<PathBuf> {
    let dir = root.join("firmware/rsext");
    let flags = format!("-Cforce-unwind-tables=no {}", t.rsext_flags);
    check(
        &format!("build the Rust extension for {}", t.name),
        debian_cargo(&dir)
            .env("RUSTFLAGS", flags.trim())
            .args([
                "build",
                "--quiet",
                "--release",
                "-Zbuild-std=core",
                "--target",
            ])
            .arg(t.triple),
    )?;
    let archive = dir.join(format!("target/{}/release/libllext_rsext.a", t.triple));
    let out = Command::new("llvm-ar")
        .arg("t")
        .arg(&archive)
        .output()
        .map_err(|e| Failure(format!("cannot run llvm-ar (package llvm): {e}")))?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let member = listing
        .lines()
        .find(|m| m.starts_with("llext_rsext-"))
        .ok_or_else(|| Failure(format!("no llext_rsext member in {}", archive.display())))?;
    let extract_dir = dir.join(format!("target/{}/extension", t.triple));
    std::fs::create_dir_all(&extract_dir)
        .map_err(|e| Failure(format!("cannot create {}: {e}", extract_dir.display())))?;
    check(
        "llvm-ar x",
        Command::new("llvm-ar")
            .current_dir(&extract_dir)
            .arg("x")
            .arg(&archive)
            .arg(member),
    )?;
    let object = extract_dir.join("rsext.o");
    std::fs::rename(extract_dir.join(member), &object)
        .map_err(|e| Failure(format!("cannot rename the extracted member: {e}")))?;
    Ok(object)
}

/// Builds the firmware for `t`; returns the ELF image.
pub(crate) fn build_firmware(root: &Path, t: &Target) -> Result<PathBuf> {
    let rsext = build_rsext(root, t)?;
    let dir = root.join("firmware");
    check(
        &format!("build the {} firmware", t.name),
        firmware_cargo(root)?
            .env("LLEXT_FW_RSEXT", &rsext)
            .args([
                "build",
                "--quiet",
                "-Zbuild-std=core,alloc",
                "-p",
                t.package,
                "--target",
            ])
            .arg(t.triple),
    )?;
    Ok(dir.join(format!("target/{}/debug/{}", t.triple, t.package)))
}

/// Runs QEMU on `image` with semihosting arguments, echoing its output if `echo`; returns (exit code,
/// output).
pub(crate) fn run_qemu(
    t: &Target,
    image: &Path,
    args: &[String],
    echo: bool,
) -> Result<(Option<i32>, String)> {
    let mut semihosting = String::from("enable=on,target=native");
    for a in args {
        if a.contains(',') || a.contains(char::is_whitespace) {
            return Err(Failure(format!(
                "`{a}`: semihosting arguments may not contain commas or spaces"
            )));
        }
        semihosting.push_str(",arg=");
        semihosting.push_str(a);
    }
    let (program, machine) = t.qemu.split_first().ok_or(Failure("no QEMU".into()))?;
    let mut child = Command::new(program)
        .args(machine)
        .args(["-nographic", "-monitor", "none", "-semihosting-config"])
        .arg(&semihosting)
        .arg("-kernel")
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot start {program}: {e}")))?;
    let mut stdout = child.stdout.take().ok_or(Failure("no stdout".into()))?;
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if echo {
                use std::io::Write as _;
                let _ = std::io::stdout().write_all(&chunk[..n]);
            }
            all.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(Failure(format!("waiting for {program}: {e}"))),
        }
    };
    let output = reader.join().unwrap_or_default();
    match status {
        Some(status) => Ok((status.code(), output)),
        None => Err(Failure(format!(
            "{}: timed out after {} s (a hang is a failure)",
            t.name,
            TIMEOUT.as_secs()
        ))),
    }
}

/// The last `N passed, N failed` line of the output.
fn summary(output: &str) -> Option<(usize, usize)> {
    output.lines().rev().find_map(|line| {
        let (passed, failed) = line.trim().split_once(" passed, ")?;
        let failed = failed.strip_suffix(" failed")?;
        Some((passed.parse().ok()?, failed.parse().ok()?))
    })
}

/// `cargo xtask qemu [TARGET...]`.
pub fn qemu(names: &[String]) -> Result {
    let root = workspace_root();
    let chosen: Vec<&Target> = if names.is_empty() {
        TARGETS.iter().collect()
    } else {
        names.iter().map(|n| target(n)).collect::<Result<_>>()?
    };
    let mut lines = Vec::new();
    let mut ok = true;
    for t in chosen {
        println!("==> {}: build", t.name);
        let image = build_firmware(&root, t)?;
        println!("==> {}: run under QEMU", t.name);
        let line = match run_qemu(t, &image, &[], true) {
            Ok((code, output)) => match summary(&output) {
                Some((passed, failed)) => {
                    ok &= failed == 0 && code == Some(0);
                    let status = if code == Some(0) {
                        String::new()
                    } else {
                        format!(" (exit status {code:?})")
                    };
                    format!("{}: {passed} passed, {failed} failed{status}", t.name)
                }
                None => {
                    ok = false;
                    format!(
                        "{}: 0 passed, 1 failed (no summary; exit status {code:?})",
                        t.name
                    )
                }
            },
            Err(Failure(message)) => {
                ok = false;
                format!("{}: 0 passed, 1 failed ({message})", t.name)
            }
        };
        lines.push(line);
        println!(
            "==> {}: llext check against the firmware's export table",
            t.name
        );
        if let Err(Failure(message)) = check_exports(&root, t, &image) {
            ok = false;
            lines.push(format!("{}: export table check failed: {message}", t.name));
        }
        println!("==> {}: a faulting extension is reported", t.name);
        if let Err(Failure(message)) = check_fault(&root, t, &image) {
            ok = false;
            lines.push(format!("{}: fault report check failed: {message}", t.name));
        }
    }
    for line in &lines {
        println!("{line}");
    }
    if ok {
        Ok(())
    } else {
        Err(Failure(String::from("firmware tests failed")))
    }
}

/// An extension that faults (`__builtin_trap()`: an undefined instruction or a breakpoint) ends a
/// `qemu-run` with a report naming where in the extension it happened and exit status 134, instead of
/// hanging the firmware until the timeout.
fn check_fault(root: &Path, t: &Target, image: &Path) -> Result {
    let cross = cross_target(t)?;
    let dir = root.join("target").join("xtask-fault").join(t.name);
    std::fs::create_dir_all(&dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    let source = dir.join("trap.c");
    std::fs::write(
        &source,
        "long trap_main(long x) { if (x > 0) __builtin_trap(); return x; }\n",
    )
    .map_err(|e| Failure(format!("{}: {e}", source.display())))?;
    let object = dir.join("trap.o");
    check(
        cross.gcc.command,
        Command::new(cross.gcc.command)
            .args(cross.gcc.flags)
            .args(crate::llext_cross_targets::COMMON_FLAGS)
            .args(["-O2", "-fno-pic"])
            .arg(&source)
            .arg("-o")
            .arg(&object),
    )?;
    let args = [
        String::from("run"),
        String::from("--call"),
        String::from("trap_main"),
        String::from("--arg"),
        String::from("1"),
        object.display().to_string(),
    ];
    let (code, output) = run_qemu(t, image, &args, false)?;
    let report = output
        .lines()
        .find(|l| l.starts_with("fault: "))
        .unwrap_or("");
    if code != Some(134)
        || !report.contains("`trap_main`+0x")
        || !report.contains("extension `trap`")
    {
        return Err(Failure(format!(
            "expected a fault report in `trap_main` and exit status 134, got {code:?}: {}",
            output.trim()
        )));
    }
    println!("ok: {report}");
    Ok(())
}

/// The firmware's export table (`exports` on its command line) makes `llext check` on the host link as the
/// firmware does: an object using the firmware's C library checks `ok`, one calling a function the image
/// defines but does not export (`fw_write`, its console hook) is refused — which the image itself, a superset,
/// would let through — and so is an object built for more instructions than the firmware's core runs, which
/// the firmware refuses too. Objects linked on the host by `llext snapshot save --exports` restore on the
/// device; one built for more than its core, linked by a host told nothing of the core, is refused by the
/// device's restore.
fn check_exports(root: &Path, t: &Target, image: &Path) -> Result {
    let cross = cross_target(t)?;
    let (code, output) = run_qemu(t, image, &[String::from("exports")], false)?;
    if code != Some(0) {
        return Err(Failure(format!("`exports` exited with {code:?}")));
    }
    // Where the firmware puts extensions, which `llext check` takes from the list.
    if !output.lines().any(|l| l.starts_with("# at: 0x")) {
        return Err(Failure(String::from("no `# at:` line in the export table")));
    }
    let dir = root.join("target").join("xtask-exports").join(t.name);
    std::fs::create_dir_all(&dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    let list = dir.join("exports.txt");
    std::fs::write(&list, &output).map_err(|e| Failure(format!("{}: {e}", list.display())))?;
    let hidden = dir.join("hidden.c");
    std::fs::write(
        &hidden,
        "void fw_write(const char *bytes, unsigned long len);
         void hello(void) { fw_write(\"hi\\n\", 3); }
",
    )
    .map_err(|e| Failure(format!("{}: {e}", hidden.display())))?;
    let compile = |source: &Path, flags: &[&str]| -> Result<PathBuf> {
        let object = dir.join(
            source
                .file_stem()
                .map(|s| format!("{}.o", s.to_string_lossy()))
                .unwrap_or_default(),
        );
        let status = Command::new(cross.gcc.command)
            .args(cross.gcc.flags)
            .args(crate::llext_cross_targets::COMMON_FLAGS)
            .args(["-O2", "-fno-pic"])
            .arg(format!("-I{}", root.join("include").display()))
            .args(flags)
            .arg(source)
            .arg("-o")
            .arg(&object)
            .status()
            .map_err(|e| Failure(format!("{}: {e}", cross.gcc.command)))?;
        if !status.success() {
            return Err(Failure(format!(
                "{} failed on {}",
                cross.gcc.command,
                source.display()
            )));
        }
        Ok(object)
    };
    let fixtures = root.join("firmware/fixtures");
    let objects = [
        compile(&fixtures.join("logging.c"), &[])?,
        compile(&hidden, &[])?,
        compile(&fixtures.join("leaf.c"), cross.more_isa)?,
    ];
    // `llext COMMAND --exports LIST ARGS...`, built from this workspace.
    let llext_with =
        |list: &Path, command: &str, args: &[&std::ffi::OsStr]| -> Result<std::process::Output> {
            Command::new(env!("CARGO"))
                .current_dir(root)
                .args(["run", "-q", "-p", "llext-cli", "--"])
                .args(command.split(' '))
                .arg("--exports")
                .arg(list)
                .args(args)
                .output()
                .map_err(|e| Failure(format!("llext {command}: {e}")))
        };
    let llext = |command: &str, args: &[&std::ffi::OsStr]| llext_with(&list, command, args);
    let check = |object: &Path| llext("check", &[object.as_os_str()]);
    let logging = check(&objects[0])?;
    if !logging.status.success() {
        return Err(Failure(format!(
            "logging.c: {}",
            String::from_utf8_lossy(&logging.stderr).trim()
        )));
    }
    let hidden = check(&objects[1])?;
    let err = String::from_utf8_lossy(&hidden.stderr);
    if hidden.status.success() || !err.contains("undefined symbol `fw_write`") {
        return Err(Failure(format!(
            "an unexported firmware function was not refused: {}",
            err.trim()
        )));
    }
    if !cross.more_isa.is_empty() {
        let more = check(&objects[2])?;
        let err = String::from_utf8_lossy(&more.stderr);
        if more.status.success() || !err.contains("which this core") {
            return Err(Failure(format!(
                "leaf.c built with {:?} was not refused: {}",
                cross.more_isa,
                err.trim()
            )));
        }
        println!("ok: leaf.c built with {:?} is refused", cross.more_isa);
    }
    println!(
        "ok: logging.c links, the unexported `fw_write` is refused ({})",
        list.display()
    );

    // Linked on the host against the list, restored on the device: a dependency, constructors (which
    // only the device runs, after the restore) and a destructor.
    let linked = ["libsum.c", "useslib.c", "ctor.c"]
        .iter()
        .map(|c| compile(&fixtures.join(c), &[]))
        .collect::<Result<Vec<_>>>()?;
    let context = dir.join("host-linked.ctx");
    let mut args = vec![std::ffi::OsStr::new("--out"), context.as_os_str()];
    args.extend(linked.iter().map(|o| o.as_os_str()));
    let save = llext("snapshot save", &args)?;
    if !save.status.success() {
        return Err(Failure(format!(
            "llext snapshot save --exports: {}",
            String::from_utf8_lossy(&save.stderr).trim()
        )));
    }
    for (call, args, expected) in [
        ("uses_main", &["5", "2"][..], 25),
        ("ctor_main", &[][..], 12),
    ] {
        let mut words = vec![
            String::from("restore"),
            context.display().to_string(),
            String::from("--call"),
            String::from(call),
        ];
        for a in args {
            words.extend([String::from("--arg"), String::from(*a)]);
        }
        let (code, output) = run_qemu(t, image, &words, false)?;
        let returned = format!("returned: {expected}");
        if code != Some(0)
            || !output.contains("brought 3 up")
            || !output.lines().any(|l| l == returned)
            || !output.contains("ctor: destructor ran")
        {
            return Err(Failure(format!(
                "a host-linked context restored on the device: {call} exited with {code:?} and printed:\n{}",
                output.trim()
            )));
        }
    }
    println!(
        "ok: libsum, useslib and ctor linked by `llext snapshot save --exports`, restored and brought up \
         on the device"
    );

    // Linked by a host told nothing of the core (a list without its `# isa:`, `# float-abi:` and
    // `# thumb-only` lines), code built for more than the core runs saves; the device refuses to restore
    // it, from what the context records of the object.
    if !cross.more_isa.is_empty() {
        let no_core = dir.join("exports-no-core.txt");
        let lines: Vec<&str> = output
            .lines()
            .filter(|l| {
                !["# isa:", "# float-abi:", "# thumb-only"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .collect();
        std::fs::write(&no_core, lines.join("\n") + "\n")
            .map_err(|e| Failure(format!("{}: {e}", no_core.display())))?;
        let more = dir.join("more.ctx");
        let args = [
            std::ffi::OsStr::new("--out"),
            more.as_os_str(),
            objects[2].as_os_str(),
        ];
        let save = llext_with(&no_core, "snapshot save", &args)?;
        if !save.status.success() {
            return Err(Failure(format!(
                "llext snapshot save --exports (no core): {}",
                String::from_utf8_lossy(&save.stderr).trim()
            )));
        }
        let words = [
            String::from("restore"),
            more.display().to_string(),
            String::from("--call"),
            String::from("leaf_main"),
        ];
        let (code, printed) = run_qemu(t, image, &words, false)?;
        if code == Some(0) || !printed.contains("was built for a core whose instruction set is") {
            return Err(Failure(format!(
                "leaf.c built with {:?}, linked by a host that knew no core, restored on the device: \
                 exited with {code:?} and printed:\n{}",
                cross.more_isa,
                printed.trim()
            )));
        }
        println!(
            "ok: leaf.c built with {:?} and linked by a host that knew no core is refused by the device's restore",
            cross.more_isa
        );
    }
    Ok(())
}

/// The cross-compilation facts of `t` (compilers and their flags), shared with `llext-cross`.
fn cross_target(t: &Target) -> Result<&'static crate::llext_cross_targets::Target> {
    crate::llext_cross_targets::TARGETS
        .iter()
        .find(|c| c.name == t.name)
        .ok_or_else(|| Failure(format!("{}: not in llext-cross's target table", t.name)))
}

/// Whether `path` starts like an llext saved context.
fn is_context(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"LLEXTCTX"
}

/// `cargo xtask qemu-run --target TARGET [--call SYM] [--arg INT]... FILE...`: exits with the firmware's
/// status (0 after `returned: N`, 1 after `error: ...`). FILEs that are saved contexts are restored and
/// brought up instead of loaded.
pub fn qemu_run(args: &[String]) -> Result {
    let mut target_name = None;
    let mut forwarded = vec![String::from("run")];
    let mut files = 0;
    let mut contexts = 0;
    let mut exports = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--target" => target_name = it.next().cloned(),
            "--exports" => exports = true,
            "--call" | "--arg" => {
                let value = it
                    .next()
                    .ok_or_else(|| Failure(format!("{a} needs a value")))?;
                forwarded.push(a.clone());
                forwarded.push(value.clone());
            }
            file => {
                let path =
                    std::fs::canonicalize(file).map_err(|e| Failure(format!("{file}: {e}")))?;
                contexts += usize::from(is_context(&path));
                forwarded.push(path.display().to_string());
                files += 1;
            }
        }
    }
    let name = target_name.ok_or_else(|| Failure(String::from("--target TARGET is required")))?;
    if exports {
        if files > 0 || forwarded.len() > 1 {
            return Err(Failure(String::from(
                "--exports takes no files, --call or --arg",
            )));
        }
        forwarded = vec![String::from("exports")];
    } else if files == 0 {
        return Err(Failure(String::from("no extension files given")));
    } else if contexts == files {
        // Saved contexts (`llext snapshot save --exports`): the firmware restores and brings them up.
        forwarded[0] = String::from("restore");
    } else if contexts > 0 {
        return Err(Failure(String::from(
            "give either extension objects or saved contexts, not both",
        )));
    }
    let t = target(&name)?;
    let image = build_firmware(&workspace_root(), t)?;
    let (code, _) = run_qemu(t, &image, &forwarded, true)?;
    match code {
        Some(0) => Ok(()),
        Some(c) => std::process::exit(c),
        None => Err(Failure(String::from("QEMU was killed"))),
    }
}
