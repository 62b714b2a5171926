// The firmware targets and how to build C extensions for them. Shared by `build.rs` and the library
// (`#[path]`-included by both), so the build and the tests agree on names.

/// One firmware target family.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The name used by `cargo xtask qemu` (`cortex-m`, `riscv32`, `riscv64`, `aarch64`).
    pub name: &'static str,
    /// `e_machine` of its objects.
    pub machine: u16,
    /// ELFCLASS64 objects.
    pub is_64: bool,
    /// clang flags (after `clang`).
    pub clang: &'static [&'static str],
    /// The GNU cross compiler, the Debian package holding it, and its flags.
    pub gcc: Tool,
    /// The GNU linker used for the cross-check, and its Debian package.
    pub ld: Tool,
    /// Object flavours built for this target (see [`flavour_flags`]).
    pub flavours: &'static [&'static str],
    /// Where the host cross-check loads this target's objects.
    pub load_base: u64,
    /// Where it pretends the firmware's exports are (within reach of direct calls from `load_base`).
    pub exports_base: u64,
    /// Function addresses carry the Thumb bit.
    pub thumb: bool,
    /// The assembly fixture of the host cross-check only (not embedded in the firmware).
    pub asm: Asm,
    /// GNU cross compiler flags (after `gcc.flags`) for another floating-point calling convention than the
    /// firmware's: the firmware must refuse `leaf.c` built with them. Empty where objects do not say theirs.
    pub other_float_abi: &'static [&'static str],
    /// GNU cross compiler flags (after `gcc.flags`) for more instructions than the firmware's core runs, with
    /// its float ABI: the firmware must refuse `leaf.c` built with them. Empty where objects do not say.
    pub more_isa: &'static [&'static str],
}

/// An assembly fixture in `crates/llext-cross/fixtures/`, assembled with clang and with the GNU cross
/// compiler's driver (which runs `as` after the C preprocessor).
#[derive(Debug, Clone, Copy)]
pub struct Asm {
    /// The source file.
    pub source: &'static str,
    /// clang flags (after `clang`).
    pub clang: &'static [&'static str],
    /// Flags of the GNU cross compiler's driver.
    pub gcc: &'static [&'static str],
}

/// A command and the Debian package that installs it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The command.
    pub command: &'static str,
    /// The Debian package.
    pub package: &'static str,
    /// Flags.
    pub flags: &'static [&'static str],
}

/// Every firmware target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "cortex-m",
        machine: 40,
        is_64: false,
        clang: &[
            "--target=thumbv7em-none-eabihf",
            "-mcpu=cortex-m4",
            "-mthumb",
            "-mfloat-abi=hard",
        ],
        gcc: Tool {
            command: "arm-none-eabi-gcc",
            package: "gcc-arm-none-eabi",
            flags: &["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard"],
        },
        ld: Tool {
            command: "arm-none-eabi-ld",
            package: "binutils-arm-none-eabi",
            flags: &["--no-merge-exidx-entries"],
        },
        // `longcalls`: Zephyr builds its Arm extensions with -mlong-calls.
        flavours: &["nopic", "pic", "longcalls"],
        load_base: 0x2000_0000,
        exports_base: 0x2040_0000,
        thumb: true,
        // A32 code too, which Cortex-M flags refuse.
        asm: Asm {
            source: "relocs-arm.S",
            clang: &["--target=armv7a-none-eabi"],
            gcc: &["-march=armv7-a"],
        },
        other_float_abi: &["-mfloat-abi=soft"],
        // A Cortex-M7's double-precision FPU.
        more_isa: &["-mcpu=cortex-m7", "-mfpu=fpv5-d16"],
    },
    Target {
        name: "riscv32",
        machine: 243,
        is_64: false,
        clang: &[
            "--target=riscv32-unknown-elf",
            "-march=rv32imac",
            "-mabi=ilp32",
        ],
        gcc: Tool {
            command: "riscv64-unknown-elf-gcc",
            package: "gcc-riscv64-unknown-elf",
            flags: &["-march=rv32imac", "-mabi=ilp32"],
        },
        ld: Tool {
            command: "riscv64-unknown-elf-ld",
            package: "binutils-riscv64-unknown-elf",
            flags: &["-m", "elf32lriscv", "--no-relax"],
        },
        flavours: &["nopic", "pic", "norelax", "saverestore"],
        load_base: 0x3000_0000,
        exports_base: 0x3040_0000,
        thumb: false,
        asm: Asm {
            source: "relocs-riscv.S",
            clang: &[
                "--target=riscv32-unknown-elf",
                "-march=rv32imac",
                "-mabi=ilp32",
            ],
            gcc: &["-march=rv32imac", "-mabi=ilp32"],
        },
        other_float_abi: &["-march=rv32imafc", "-mabi=ilp32f"],
        // F instructions behind a soft-float calling convention.
        more_isa: &["-march=rv32imafc"],
    },
    Target {
        name: "riscv64",
        machine: 243,
        is_64: true,
        clang: &[
            "--target=riscv64-unknown-elf",
            "-march=rv64gc",
            "-mabi=lp64d",
            "-mcmodel=medany",
        ],
        gcc: Tool {
            command: "riscv64-unknown-elf-gcc",
            package: "gcc-riscv64-unknown-elf",
            flags: &["-march=rv64gc", "-mabi=lp64d", "-mcmodel=medany"],
        },
        ld: Tool {
            command: "riscv64-unknown-elf-ld",
            package: "binutils-riscv64-unknown-elf",
            flags: &["-m", "elf64lriscv", "--no-relax"],
        },
        flavours: &["nopic", "pic", "norelax", "saverestore"],
        load_base: 0x8000_0000,
        exports_base: 0x8040_0000,
        thumb: false,
        asm: Asm {
            source: "relocs-riscv.S",
            clang: &[
                "--target=riscv64-unknown-elf",
                "-march=rv64gc",
                "-mabi=lp64d",
            ],
            gcc: &["-march=rv64gc", "-mabi=lp64d"],
        },
        other_float_abi: &["-mabi=lp64"],
        more_isa: &["-march=rv64gc_zba_zbb"],
    },
    Target {
        name: "aarch64",
        machine: 183,
        is_64: true,
        clang: &[
            "--target=aarch64-none-elf",
            "-mstrict-align",
            "-mgeneral-regs-only",
        ],
        gcc: Tool {
            command: "aarch64-linux-gnu-gcc",
            package: "gcc-aarch64-linux-gnu",
            // The Linux-targeted gcc calls libgcc's outline atomics (`__aarch64_ldadd8_relax`, ...) for
            // atomic operations, which the test firmware exports.
            flags: &["-mstrict-align", "-mgeneral-regs-only"],
        },
        ld: Tool {
            command: "aarch64-linux-gnu-ld",
            package: "binutils-aarch64-linux-gnu",
            flags: &[],
        },
        flavours: &["nopic", "pic"],
        load_base: 0x4000_0000,
        exports_base: 0x4040_0000,
        thumb: false,
        asm: Asm {
            source: "relocs-aarch64.S",
            clang: &["--target=aarch64-none-elf"],
            gcc: &[],
        },
        other_float_abi: &[],
        more_isa: &[],
    },
];

/// Flags every fixture is compiled with (before the target's, the `-O` and the flavour's).
pub const COMMON_FLAGS: &[&str] = &[
    "-c",
    "-std=gnu11",
    "-Wall",
    "-ffreestanding",
    "-fno-common",
    "-fno-stack-protector",
];

/// Optimisation levels.
pub const OPTS: &[&str] = &["O0", "Os", "O2"];

/// The fixture sources in `firmware/fixtures/`, without `.c`.
pub const STEMS: &[&str] = &[
    "basic", "wide", "libsum", "useslib", "ctor", "leaf", "weak", "numeric", "aligned", "logging",
    "atomic64", "saves",
];

/// The command that compiles a C fixture for `target` with `cc` (`clang` or `gcc`, the target's GNU cross
/// compiler) at `-{opt}` in `flavour`: the compiler, its target flags, [`COMMON_FLAGS`], the level and
/// the flavour's flags. The caller adds include paths, the source and `-o`.
#[allow(dead_code)]
pub fn compile_command(
    target: &Target,
    cc: &str,
    opt: &str,
    flavour: &str,
) -> std::process::Command {
    let mut command = if cc == "clang" {
        let mut c = std::process::Command::new("clang");
        c.args(target.clang);
        c
    } else {
        let mut c = std::process::Command::new(target.gcc.command);
        c.args(target.gcc.flags);
        c
    };
    command
        .args(COMMON_FLAGS)
        .arg(format!("-{opt}"))
        .args(flavour_flags(flavour));
    command
}

/// Compiler flags of an object flavour.
pub fn flavour_flags(flavour: &str) -> &'static [&'static str] {
    match flavour {
        "pic" => &["-fPIC"],
        "norelax" => &["-fno-pic", "-mno-relax"],
        // RISC-V's size option: prologues and epilogues call the firmware's `__riscv_save_N` and
        // `__riscv_restore_N` (gcc; clang takes the flag and inlines them).
        "saverestore" => &["-fno-pic", "-msave-restore"],
        // Every call loads its target's address from a literal pool (Arm): what Zephyr's LLEXT build adds
        // to the firmware's flags for extensions.
        "longcalls" => &["-fno-pic", "-mlong-calls"],
        _ => &["-fno-pic"],
    }
}

/// The stem of the assembly fixtures' objects.
pub const ASM_STEM: &str = "relocs";

/// `<target>/relocs-<cc>.o`, relative to the output directory: the assembly fixture built by `cc`.
#[allow(dead_code)]
pub fn asm_object_name(target: &str, cc: &str) -> String {
    format!("{target}/{ASM_STEM}-{cc}.o")
}

/// `<target>/<stem>-<cc>-<opt>-<flavour>.o`, relative to the output directory.
#[allow(dead_code)]
pub fn object_name(target: &str, stem: &str, cc: &str, opt: &str, flavour: &str) -> String {
    format!("{target}/{stem}-{cc}-{opt}-{flavour}.o")
}
