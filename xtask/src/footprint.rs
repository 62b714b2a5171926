//! `cargo xtask footprint`: what the loader costs on the Cortex-M4F firmware, as `key: value` lines.
//!
//! - Flash and RAM: two images of `firmware/cortex-m` built with `--release` (opt-level "s", as every
//!   firmware profile): `footprint-baseline` (runtime, heap, console, host files over semihosting,
//!   `printf`) and `footprint-loader` (the same plus the loader as `qemu-run` uses it: export table and the C
//!   library it names, registry, arena). Sizes come from `llvm-size -A`: flash is every section loaded
//!   from flash (vector table, text, rodata, the initial values of data), RAM is data, bss and uninit.
//!   The loader's flash is split with the loader image's symbol sizes (`llvm-nm -S`): what is `llext`'s
//!   (and, of that, what the four backends the firmware never uses take), and the rest.
//! - Without llext's `portable` feature: a separate build with `--no-default-features` makes the loader
//!   image again and `footprint-restore-inplace` (the loader plus saving in place, forgetting and
//!   restoring), what a firmware that only keeps its extensions across a suspend carries. Cargo unifies
//!   features over one build, so these cannot come out of the default one. It runs first and its images
//!   are measured at once, so that the images under their usual names are the default build's at the end
//!   (its loader image is kept as `footprint-loader-without-portable`).
//! - Heap and extension memory per extension: the test firmware (`cargo xtask qemu` build) run with the
//!   semihosting argument `footprint` loads each fixture copied and in place and reports the heap the loader
//!   keeps for it, the heap's high-water mark during the load and the arena bytes, against its ELF size.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::qemu::{build_firmware, check, firmware_cargo, run_qemu, target};
use crate::{workspace_root, Failure, Result};

const BASELINE: &str = "footprint-baseline";
const LOADER: &str = "footprint-loader";
const RESTORE: &str = "footprint-restore";
const RESTORE_IN_PLACE: &str = "footprint-restore-inplace";
/// Where the loader image built without llext's `portable` feature is kept.
const LOADER_WITHOUT_PORTABLE: &str = "footprint-loader-without-portable";

/// Section sizes of one image, by name.
struct Sizes(BTreeMap<String, u64>);

impl Sizes {
    fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }
    /// What the image stores in flash.
    fn flash(&self) -> u64 {
        self.get(".vector_table") + self.get(".text") + self.get(".rodata") + self.get(".data")
    }
    /// What it takes of RAM before the stack: initialised data, zeroed data, uninitialised data.
    fn ram(&self) -> u64 {
        self.get(".data") + self.get(".bss") + self.get(".uninit")
    }
}

fn tool_output(program: &str, args: &[&str], image: &Path) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .arg(image)
        .output()
        .map_err(|e| Failure(format!("cannot run {program} (Debian package llvm): {e}")))?;
    if !out.status.success() {
        return Err(Failure(format!(
            "{program} {} failed: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sizes(image: &Path) -> Result<Sizes> {
    let text = tool_output("llvm-size", &["-A", "-d"], image)?;
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some(name), Some(size), Some(_addr)) = (words.next(), words.next(), words.next()) {
            if let (true, Ok(size)) = (name.starts_with('.'), size.parse::<u64>()) {
                map.insert(name.to_string(), size);
            }
        }
    }
    Ok(Sizes(map))
}

/// Code and constants of the loader in an image, from its symbol table (each address counted once: the
/// compiler folds identical functions): everything whose name mentions `llext::` — its own functions and
/// the generic code of `core`, `alloc` and its dependencies instantiated for its types — and, of that, what
/// was instantiated for a relocation backend other than `own` (the linker is generic over the
/// `Relocator`, so each backend compiled into the core brings its own copy).
fn loader_bytes(image: &Path, own: &str) -> Result<(u64, u64)> {
    const BACKENDS: [&str; 5] = [
        "arch::x86_64::X86_64",
        "arch::arm::Arm",
        "arch::aarch64::Aarch64",
        "arch::riscv::Riscv32",
        "arch::riscv::Riscv64",
    ];
    let text = tool_output("llvm-nm", &["--demangle", "-S"], image)?;
    let mut seen = BTreeSet::new();
    let (mut total, mut other) = (0, 0);
    for line in text.lines() {
        let mut words = line.splitn(4, ' ');
        let (Some(addr), Some(size), Some(kind), Some(name)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "r" | "R") {
            continue;
        }
        let mentions = name.replace("llext_fw::", "");
        if !mentions.contains("llext::") || !seen.insert(addr.to_string()) {
            continue;
        }
        let Ok(size) = u64::from_str_radix(size, 16) else {
            continue;
        };
        total += size;
        if !name.contains(own) && BACKENDS.iter().any(|b| name.contains(b)) {
            other += size;
        }
    }
    Ok((total, other))
}

/// The size of the data symbol whose demangled name ends with `name`.
fn symbol_size(image: &Path, name: &str) -> Result<u64> {
    let text = tool_output("llvm-nm", &["--demangle", "-S"], image)?;
    text.lines()
        .find_map(|line| {
            let mut words = line.splitn(4, ' ');
            let (_, size, _, symbol) = (words.next()?, words.next()?, words.next()?, words.next()?);
            symbol
                .ends_with(name)
                .then(|| u64::from_str_radix(size, 16).ok())
                .flatten()
        })
        .ok_or_else(|| Failure(format!("no symbol `{name}` in {}", image.display())))
}

/// The value after `key ` in an `ext NAME: key N, key N, ...` line.
fn field(line: &str, key: &str) -> Option<u64> {
    let (_, list) = line.split_once(": ")?;
    list.split(", ").find_map(|part| {
        let (k, v) = part.trim().split_once(' ')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

/// `cargo xtask footprint`.
pub fn footprint() -> Result {
    let root = workspace_root();
    let t = target("cortex-m")?;
    let dir = root.join("firmware");
    let images = dir.join(format!("target/{}/release", t.triple));
    let build = |what: &str, bins: &[&str], default_features: bool| {
        println!("==> {}: build {what} (release)", t.name);
        let mut command = firmware_cargo(&root)?;
        command.args([
            "build",
            "--quiet",
            "--release",
            "-Zbuild-std=core,alloc",
            "-p",
            t.package,
        ]);
        if !default_features {
            command.arg("--no-default-features");
        }
        for bin in bins {
            command.args(["--bin", bin]);
        }
        check(
            "build the footprint images",
            command.arg("--target").arg(t.triple),
        )
    };

    // Without llext's `portable` feature first, so that the images under their usual names are the
    // default build's when this ends.
    build(
        &format!("{LOADER} and {RESTORE_IN_PLACE} without llext's `portable` feature"),
        &[LOADER, RESTORE_IN_PLACE],
        false,
    )?;
    let loader_np_image = images.join(LOADER_WITHOUT_PORTABLE);
    std::fs::copy(images.join(LOADER), &loader_np_image)
        .map_err(|e| Failure(format!("cannot keep the loader image: {e}")))?;
    let restore_ip_image = images.join(RESTORE_IN_PLACE);
    let (loader_np, restore_ip) = (sizes(&loader_np_image)?, sizes(&restore_ip_image)?);
    let (loader_np_llext, _) = loader_bytes(&loader_np_image, "arch::arm::Arm")?;
    let (restore_ip_llext, _) = loader_bytes(&restore_ip_image, "arch::arm::Arm")?;

    build(
        &format!("{BASELINE}, {LOADER} and {RESTORE}"),
        &[BASELINE, LOADER, RESTORE],
        true,
    )?;
    let (base_image, loader_image) = (images.join(BASELINE), images.join(LOADER));
    let restore_image = images.join(RESTORE);
    let (base, loader, restore) = (
        sizes(&base_image)?,
        sizes(&loader_image)?,
        sizes(&restore_image)?,
    );

    println!(
        "==> {}: build the test firmware and run `footprint`",
        t.name
    );
    let image = build_firmware(&root, t)?;
    let (code, output) = run_qemu(t, &image, &[String::from("footprint")], false)?;
    if code != Some(0) {
        return Err(Failure(format!(
            "the footprint run failed (exit status {code:?}):\n{output}"
        )));
    }

    println!("target: {} ({})", t.name, t.triple);
    println!("profile: release, opt-level \"s\"");
    for (key, section) in [
        ("text", ".text"),
        ("rodata", ".rodata"),
        ("data", ".data"),
        ("bss", ".bss"),
    ] {
        println!("{key}_without: {}", base.get(section));
        println!("{key}_with: {}", loader.get(section));
    }
    let loader_flash = loader.flash().saturating_sub(base.flash());
    let loader_ram = loader.ram().saturating_sub(base.ram());
    println!("flash_without: {}", base.flash());
    println!("flash_with: {}", loader.flash());
    println!("loader_flash: {loader_flash}");
    let (llext, other_backends) = loader_bytes(&loader_image, "arch::arm::Arm")?;
    println!("loader_flash_llext: {llext}");
    println!("loader_flash_rest: {}", loader_flash.saturating_sub(llext));
    // Every relocation backend is compiled into the core; the Cortex-M firmware only ever uses Arm's.
    println!("loader_flash_other_backends: {other_backends}");
    println!("ram_without: {}", base.ram());
    println!("ram_with: {}", loader.ram());
    println!("loader_ram: {loader_ram}");
    let arena = symbol_size(&loader_image, "llext_fw::ARENA")?;
    println!("arena_bytes: {arena}");
    println!(
        "loader_ram_without_arena: {}",
        loader_ram.saturating_sub(arena)
    );
    // Saving and restoring on top of the loader: in place into a buffer, portably into a second arena.
    println!(
        "restore_flash: {}",
        restore.flash().saturating_sub(loader.flash())
    );
    let (restore_llext, _) = loader_bytes(&restore_image, "arch::arm::Arm")?;
    println!(
        "restore_flash_llext: {}",
        restore_llext.saturating_sub(llext)
    );
    let second_arena = symbol_size(&restore_image, "llext_fw::FRESH")?;
    println!(
        "restore_ram_without_arena: {}",
        restore
            .ram()
            .saturating_sub(loader.ram())
            .saturating_sub(second_arena)
    );
    // The same without llext's `portable` feature: the loader (which then records no fixups), and saving
    // and restoring in place only on top of it.
    println!(
        "loader_flash_without_portable: {}",
        loader_np.flash().saturating_sub(base.flash())
    );
    println!("loader_flash_llext_without_portable: {loader_np_llext}");
    println!(
        "restore_inplace_flash: {}",
        restore_ip.flash().saturating_sub(loader_np.flash())
    );
    println!(
        "restore_inplace_flash_llext: {}",
        restore_ip_llext.saturating_sub(loader_np_llext)
    );
    println!(
        "restore_inplace_ram: {}",
        restore_ip.ram().saturating_sub(loader_np.ram())
    );

    let mut totals = [0u64; 5];
    let mut count = 0;
    for line in output.lines() {
        let line = line.trim_end();
        if line.starts_with("heap_capacity:") || line.starts_with("arena_capacity:") {
            println!("{line}");
        }
        if !line.starts_with("ext ") {
            continue;
        }
        println!("{line}");
        // zlib's builds are real library code, tens of times larger than the other fixtures: shown,
        // but kept out of the totals so that the mean stays comparable from run to run.
        if line.starts_with("ext zlib-") {
            continue;
        }
        count += 1;
        for (total, key) in totals.iter_mut().zip([
            "elf_bytes",
            "heap_bytes",
            "heap_peak_bytes",
            "arena_bytes",
            "in_place_arena_bytes",
        ]) {
            *total += field(line, key).unwrap_or(0);
        }
    }
    if count == 0 {
        return Err(Failure(format!(
            "the firmware reported no extensions:\n{output}"
        )));
    }
    let [elf, heap, peak, arena_used, in_place] = totals;
    println!(
        "ext_total: count {count}, elf_bytes {elf}, heap_bytes {heap}, heap_peak_bytes {peak}, \
         arena_bytes {arena_used}, in_place_arena_bytes {in_place}"
    );
    println!(
        "ext_mean: elf_bytes {}, heap_bytes {}, heap_peak_bytes {}, arena_bytes {}, in_place_arena_bytes {}",
        elf / count,
        heap / count,
        peak / count,
        arena_used / count,
        in_place / count
    );
    Ok(())
}
