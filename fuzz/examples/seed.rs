//! Writes the seed corpora of every fuzz target from the real fixtures: `seed DIR` fills `DIR/<target>/`.
//!
//! Run by `cargo xtask fuzz`; the seeds are regenerated every run, not committed.

use std::path::Path;
use std::process::Command;

use llext::{ExportTable, HostMemory, LoadOptions, Registry, SaveOptions};

const NO_RUN: LoadOptions = LoadOptions {
    bring_up: false,
    keep_eh_frame: false,
    portable: true,
    storage: llext::Storage::Copy,
};

/// Sets of fixture stems loaded together (dependencies first) and saved as one context.
const SETS: &[&[&str]] = &[
    &["basic"],
    &["libmath", "usemath"],
    &["ctors"],
    &["farcall"],
    &["dbase", "dleft", "dright", "dtop"],
    &["weakdef", "weak"],
    &["partial"],
];

/// The cross objects' source: a jump table, strings, an initialised pointer, data, a call to the host.
const CROSS_SOURCE: &str = r#"
extern long host_log(const char *s, long v);
static long counter;
long table[4] = {1, 2, 3, 4};
const char *greeting = "hello";
long pick(int i) {
    switch (i) { case 0: return 3; case 1: return 7; case 2: return 11; case 3: return 13;
                 case 4: return 17; case 5: return 19; default: return -1; }
}
long bump(long x) { counter += x + table[x & 3]; return host_log(greeting, counter); }
"#;

const CROSS: &[(&str, &[&str])] = &[
    ("thumbv7m-none-eabi", &[]),
    ("armv7a-none-eabi", &["-marm"]),
    ("riscv32-unknown-elf", &[]),
    ("riscv64-unknown-elf", &["-mcmodel=medany"]),
    ("aarch64-none-elf", &[]),
];

/// Code that asks for alignment, and a float argument.
const ALIGNED_SOURCE: &str = r#"
__attribute__((noinline)) static long triple(long x) { return x * 3; }
__attribute__((noinline, aligned(4))) void vector(void) { }
__attribute__((noinline, aligned(64))) long line(long c, long d) { return c * d + triple(c); }
float half(float x) { return x * 0.5f; }
long entry(long a) { return line(a, a) + (long)half((float)a); }
"#;

/// GNU cross compilers, their flags and a name for the seed.
const GNU_CROSS: &[(&str, &[&str], &str)] = &[
    (
        "riscv64-unknown-elf-gcc",
        &["-march=rv32imac", "-mabi=ilp32"],
        "rv32-aligned",
    ),
    (
        "riscv64-unknown-elf-gcc",
        &["-march=rv64gc", "-mabi=lp64d", "-mcmodel=medany"],
        "rv64-aligned",
    ),
    (
        "arm-none-eabi-gcc",
        &["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard"],
        "thumb-hard",
    ),
];

/// A host object built like a plain `gcc -c` (`-fPIE`): it reads `stderr` directly, so it gets a copy of
/// it (`Export::copyable`), and its contexts carry a copy-slot fixup.
const STREAMS_SOURCE: &str = "#include <stdio.h>\n\
    long say(long n) { fprintf(stderr, \"%ld\\n\", n); return (long)&stderr; }\n";

/// Constants reached by 64-bit absolute addresses (`-mcmodel=large`), which a host load keeps in place in
/// the extension's storage (`Storage::InPlace`).
const IN_PLACE_SOURCE: &str = "static const long primes[4] = { 2, 3, 5, 7 };\n\
    static const char *const words[] = { \"zero\", \"one\" };\n\
    long prime(long i) { return primes[i & 3]; }\n\
    long word0(long i) { return words[i & 1][0]; }\n";

const SHELL_LINES: &[&str] = &[
    "load basic.o",
    "load libmath.o math",
    "load \"my dir/a b.o\" \"x y\"",
    // Found by fuzzing: a quoted word that holds the spaces the oracle split at.
    "call \" *f\" ",
    "unload math",
    "list",
    "symbols basic",
    "call basic_add 2 3",
    "call f -1 0x10 -0X7fffffffffffffff 9223372036854775807",
    "suspend",
    "save out.ctx libmath usemath",
    "restore out.ctx",
    "help",
    "quit",
    "# a comment",
    "   ",
];

/// Compiles `source` with `compiler` (a command with its flags) into `name`, writes the object as an
/// `elf_inspect` and a `load_link` seed and returns its bytes; `None` if the compiler is missing or fails.
fn object_seed(
    out: &Path,
    mut compiler: Command,
    source: &Path,
    name: &str,
    counts: &mut [usize; 4],
) -> Option<Vec<u8>> {
    let object = out.join(name);
    let built = compiler
        .arg(source)
        .arg("-o")
        .arg(&object)
        .status()
        .is_ok_and(|s| s.success());
    let bytes = built.then(|| std::fs::read(&object).expect("read seed object"));
    let _ = std::fs::remove_file(&object);
    let bytes = bytes?;
    write(&out.join("elf_inspect"), name, &bytes);
    write(&out.join("load_link"), name, &bytes);
    counts[0] += 1;
    counts[1] += 1;
    Some(bytes)
}

/// An object of another machine, compiled by `compiler` into seed `<stem>.o`, and its contexts, saved by a
/// registry for its own machine (and pointer width) so that snapshot_restore replays every backend's fixups.
fn cross_seed(out: &Path, compiler: Command, source: &Path, stem: &str, counts: &mut [usize; 4]) {
    let Some(bytes) = object_seed(out, compiler, source, &format!("{stem}.o"), counts) else {
        return;
    };
    llext_fuzz::with_arenas(|arena, _| {
        let (registry, _) = llext_fuzz::registry(arena, llext_fuzz::machine_of(&bytes));
        if registry.load_with("cross", &bytes, &NO_RUN).is_ok() {
            counts[2] += write_contexts(out, &registry, stem);
        }
    });
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create seed directory");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

/// Writes the portable and the in-place context of everything `registry` holds as `snapshot_restore` seeds
/// named `{prefix}-{kind}.ctx`, prefixed with the target's mode byte (1: reseal after mutation; 17: the
/// same, discarding an in-place context instead of restoring it); returns how many.
fn write_contexts<M: llext::Memory>(out: &Path, registry: &Registry<M>, prefix: &str) -> usize {
    let mut n = 0;
    for (kind, portable) in [("portable", true), ("inplace", false)] {
        let options = SaveOptions {
            portable,
            content_hashes: true,
            ..SaveOptions::default()
        };
        let ctx = registry.save(&options).expect("save");
        // In-place contexts are also discarded (mode bit 4) instead of restored.
        let modes: &[(u8, &str)] = if portable {
            &[(1, "")]
        } else {
            &[(1, ""), (1 | 16, "-discard")]
        };
        for &(mode, suffix) in modes {
            let mut seed = vec![mode];
            seed.extend_from_slice(&ctx);
            write(
                &out.join("snapshot_restore"),
                &format!("{prefix}-{kind}{suffix}.ctx"),
                &seed,
            );
            n += 1;
        }
    }
    n
}

fn main() {
    let out = std::env::args_os()
        .nth(1)
        .expect("usage: seed DIR (the fuzz seeds directory)");
    let out = Path::new(&out);
    let mut counts = [0usize; 4];

    // Every object the fixtures build, for both ELF targets.
    let mut objects: Vec<_> = std::fs::read_dir(llext_fixtures::out_dir())
        .expect("fixture directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    objects.sort();
    for path in &objects {
        let bytes = std::fs::read(path).expect("read fixture");
        let name = path.file_name().unwrap().to_string_lossy();
        write(&out.join("elf_inspect"), &name, &bytes);
        write(&out.join("load_link"), &name, &bytes);
        counts[0] += 1;
        counts[1] += 1;
    }

    // Small clang cross objects, so that ELF32, REL relocations and every relocation backend are reached
    // (load_link loads each for its own e_machine). Skipped where clang is missing.
    let source = out.join("cross.c");
    std::fs::create_dir_all(out).expect("seed directory");
    std::fs::write(&source, CROSS_SOURCE).expect("write cross source");
    for (triple, flags) in CROSS {
        let mut clang = Command::new("clang");
        clang
            .arg(format!("--target={triple}"))
            .args(["-c", "-O2", "-ffreestanding", "-fno-common"])
            .args(*flags);
        cross_seed(out, clang, &source, &format!("cross-{triple}"), &mut counts);
    }
    let _ = std::fs::remove_file(&source);

    // GNU cross objects: RISC-V with aligned code, whose R_RISCV_ALIGN padding the loader trims, and Arm
    // with the build attributes that give its float ABI. Skipped where the compilers are missing.
    let source = out.join("aligned.c");
    std::fs::write(&source, ALIGNED_SOURCE).expect("write aligned source");
    for (compiler, flags, label) in GNU_CROSS {
        let mut gcc = Command::new(compiler);
        gcc.args(["-c", "-O2", "-ffreestanding"]).args(*flags);
        cross_seed(out, gcc, &source, &format!("gnu-{label}"), &mut counts);
    }
    let _ = std::fs::remove_file(&source);

    let source = out.join("streams.c");
    std::fs::write(&source, STREAMS_SOURCE).expect("write streams source");
    let mut gcc = Command::new("gcc");
    gcc.args(["-c", "-O2", "-fPIE"]);
    if let Some(bytes) = object_seed(out, gcc, &source, "streams-gcc-pie.o", &mut counts) {
        let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
        if registry.load_with("streams", &bytes, &NO_RUN).is_ok() {
            counts[2] += write_contexts(out, &registry, "streams-gcc-pie");
        }
    }
    let _ = std::fs::remove_file(&source);

    // An in-place context of an extension that keeps its constants in its storage: a hash per such region
    // follows its record (format 8). Its portable context is refused, so only this one.
    let source = out.join("in_place.c");
    std::fs::write(&source, IN_PLACE_SOURCE).expect("write in-place source");
    let mut gcc = Command::new("gcc");
    gcc.args(["-c", "-O2", "-mcmodel=large", "-fno-pic"]);
    if let Some(bytes) = object_seed(out, gcc, &source, "in-place-gcc-large.o", &mut counts) {
        let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
        let options = LoadOptions {
            storage: llext::Storage::InPlace,
            ..NO_RUN
        };
        // The storage outlives the registry: this program ends soon after.
        if registry
            .load_static("in-place", bytes.leak(), &options)
            .is_ok()
        {
            let hashes = SaveOptions {
                content_hashes: true,
                ..SaveOptions::default()
            };
            let mut seed = vec![1u8];
            seed.extend_from_slice(&registry.save(&hashes).expect("save"));
            write(&out.join("snapshot_restore"), "in-place-storage.ctx", &seed);
            counts[2] += 1;
        }
    }
    let _ = std::fs::remove_file(&source);

    // Contexts of real extension sets, portable and in place, prefixed with the target's mode byte
    // (1: reseal after mutation).
    for variant in llext_fixtures::variants() {
        for set in SETS {
            let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
            let loaded = set.iter().all(|stem| {
                registry
                    .load_with(stem, &variant.bytes(stem), &NO_RUN)
                    .is_ok()
            });
            if loaded {
                counts[2] +=
                    write_contexts(out, &registry, &format!("{}-{variant}", set.join("+")));
            }
        }
    }

    for (i, line) in SHELL_LINES.iter().enumerate() {
        write(
            &out.join("shell_parse"),
            &format!("line{i:02}"),
            line.as_bytes(),
        );
        counts[3] += 1;
    }
    println!(
        "seeds: elf_inspect {}, load_link {}, snapshot_restore {}, shell_parse {}",
        counts[0], counts[1], counts[2], counts[3]
    );
}
