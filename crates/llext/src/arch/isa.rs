//! What instructions a core runs, and what an object's build says it may use.
//!
//! A Cortex-M3 faults on the first DSP or floating-point instruction of an object built with
//! `-mcpu=cortex-m4`, and a RISC-V core without the F extension on the first `flw` of an object built with
//! `-march=rv32imafc`, however well the object links. The compilers record what they were allowed to use:
//! Arm objects in their build attributes (`Tag_CPU_arch`, `Tag_DSP_extension`, `Tag_FP_arch`,
//! `Tag_ABI_HardFP_use`, `Tag_MVE_arch`), RISC-V objects in theirs (`Tag_RISCV_arch`, an ISA string such as
//! `rv32i2p1_m2p0_a2p1_c2p0`). A registry that knows its core's [`Isa`] refuses an object that may use more
//! ([`Error::Isa`](crate::Error::Isa)), naming what is missing.

use alloc::string::String;
use core::fmt::{self, Write as _};

#[cfg(any(feature = "all-arches", target_arch = "arm"))]
use super::EM_ARM;
#[cfg(any(
    feature = "all-arches",
    target_arch = "riscv32",
    target_arch = "riscv64"
))]
use super::EM_RISCV;
#[cfg(any(feature = "all-arches", target_arch = "arm"))]
use m_profile::*;
#[cfg(any(
    feature = "all-arches",
    target_arch = "riscv32",
    target_arch = "riscv64"
))]
use rv::*;

/// The instructions a core runs, or that an object may use: a RISC-V base and its standard extensions, or
/// an Arm M-profile architecture with its DSP, FPU and MVE options. Written and read as a `-march`-like key
/// ([`Isa::key`], [`Isa::from_key`]): `rv32imac`, `rv64imafdc_zba_zbb`, `armv7e-m+fp`, `armv8-m.main+dsp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isa {
    machine: u16,
    /// RISC-V: 32 or 64. Arm: 32.
    bits: u8,
    /// RISC-V: bit `n` for letter `'a' + n`, then [`Z_NAMES`] from bit 26. Arm: the capability bits above.
    features: u128,
}

impl Isa {
    /// The ISA a `-march`-like key names: a RISC-V ISA string (`rv32imac`, `rv64gc_zba`, or a full one with
    /// versions such as `rv32i2p1_m2p0_a2p1_c2p0`), or an Arm M-profile architecture with options
    /// (`armv6-m`, `armv7-m`, `armv7e-m`, `armv8-m.base`, `armv8-m.main`, `armv8.1-m.main`, each optionally
    /// followed by `+dsp`, `+fp`, `+fp.dp`, `+fpv5`, `+mve`, `+mve.fp`; on Armv7E-M `+fp` is FPv4 and
    /// `+fpv5` a single-precision FPv5). `None` if it names neither (or has surrounding whitespace).
    pub fn from_key(key: &str) -> Option<Isa> {
        match key.strip_prefix("arm") {
            #[cfg(any(feature = "all-arches", target_arch = "arm"))]
            Some(rest) => arm_from_key(rest),
            #[cfg(any(
                feature = "all-arches",
                target_arch = "riscv32",
                target_arch = "riscv64"
            ))]
            None => riscv_from_string(key.as_bytes()),
            // Keys of a machine this build has no backend for.
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The key that names this ISA ([`Isa::from_key`] reads it back).
    pub fn key(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "{self}");
        s
    }

    /// The `e_machine` this ISA is of.
    pub fn machine(&self) -> u16 {
        self.machine
    }

    /// Its width in bits: RISC-V's 32 or 64, Arm's 32.
    pub(crate) fn bits(&self) -> u8 {
        self.bits
    }

    /// The features as bits, which [`Isa::from_parts`] takes back (a saved context carries them).
    pub(crate) fn features(&self) -> u128 {
        self.features
    }

    /// The ISA of `machine` with width `bits` and these feature bits (as [`Isa::features`] gave them), if
    /// this build knows that machine's ISAs; bits no feature stands for are dropped. Taken as they are,
    /// without reading a key back: nothing is allocated ([`Context::from_bytes`](crate::Context::from_bytes)
    /// promises so), and the ISA compares as the one that was saved.
    pub(crate) fn from_parts(machine: u16, bits: u8, features: u128) -> Option<Isa> {
        let known: Option<u128> = match (machine, bits) {
            #[cfg(any(feature = "all-arches", target_arch = "arm"))]
            (EM_ARM, 32) => Some((FP5 << 1) - 1),
            #[cfg(any(
                feature = "all-arches",
                target_arch = "riscv32",
                target_arch = "riscv64"
            ))]
            (EM_RISCV, 32 | 64) => Some((1u128 << (Z_FIRST as usize + Z_NAMES.len())) - 1),
            _ => None,
        };
        known.map(|known| Isa {
            machine,
            bits,
            features: features & known,
        })
    }

    /// The ISA of this build's own code, on RISC-V and Cortex-M targets: from the target's name and the
    /// target features it was compiled with (`-C target-feature`, `-C target-cpu`), which the build script
    /// reads. `None` elsewhere (a custom target, an A-profile Arm core, x86-64, AArch64).
    pub fn native() -> Option<Isa> {
        option_env!("LLEXT_NATIVE_ISA").and_then(Isa::from_key)
    }

    /// What an object may use, as its build attributes say ([`Isa::of_attributes`]), or for a RISC-V
    /// object without them, its `e_flags` (RVC, RVE, the float ABI): the least it may use, which is no
    /// measure of a core. `None` if it does not say.
    pub(crate) fn of_object(object: &crate::elf::Object<'_>) -> Option<Isa> {
        let attributes = Isa::of_attributes(object);
        #[cfg(any(
            feature = "all-arches",
            target_arch = "riscv32",
            target_arch = "riscv64"
        ))]
        if attributes.is_none() && object.machine == EM_RISCV {
            let bits = if object.class.is_64 { 64 } else { 32 };
            return Some(riscv_from_flags(bits, object.e_flags));
        }
        attributes
    }

    /// What a file's build attributes say it was built for (RISC-V's `Tag_RISCV_arch`; Arm's
    /// `Tag_CPU_arch` and the options above, for M-profile architectures). `None` if they do not say.
    fn of_attributes(object: &crate::elf::Object<'_>) -> Option<Isa> {
        match object.machine {
            #[cfg(any(
                feature = "all-arches",
                target_arch = "riscv32",
                target_arch = "riscv64"
            ))]
            EM_RISCV => riscv_of_attributes(object),
            #[cfg(any(feature = "all-arches", target_arch = "arm"))]
            EM_ARM => arm_of_attributes(object),
            _ => None,
        }
    }

    /// What the object's ISA `needs` beyond this one, named for an error message ("the F extension", "a
    /// double-precision FPU"), or `None` if this core runs everything it may use. Other machines, or the
    /// other RISC-V width, are not compared here (a registry refuses that as `Error::WrongClass`).
    pub fn missing(&self, needs: &Isa) -> Option<String> {
        if self.machine != needs.machine || self.bits != needs.bits {
            return None;
        }
        match self.machine {
            #[cfg(any(feature = "all-arches", target_arch = "arm"))]
            EM_ARM => arm_missing(needs.features, needs.features & !self.features),
            #[cfg(any(
                feature = "all-arches",
                target_arch = "riscv32",
                target_arch = "riscv64"
            ))]
            EM_RISCV => riscv_missing(self.features, needs.features),
            _ => None,
        }
    }

    /// The ISA an ELF image (a firmware) or object says it was built for, from its build attributes; `None`
    /// if it does not say (or is not an ELF file this build reads). Not from a RISC-V file's `e_flags`,
    /// which name only C and E of every extension the core may have: an image without attributes is no
    /// measure of what its core runs.
    pub fn of_elf(elf: &[u8]) -> Option<Isa> {
        let object = crate::elf::parse(elf, &crate::Limits::default()).ok()?;
        Isa::of_attributes(&object)
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.machine {
            #[cfg(any(feature = "all-arches", target_arch = "arm"))]
            EM_ARM => arm_fmt(self.features, f),
            #[cfg(any(
                feature = "all-arches",
                target_arch = "riscv32",
                target_arch = "riscv64"
            ))]
            EM_RISCV => {
                write!(f, "rv{}", self.bits)?;
                write_riscv_features(f, self.features, false)
            }
            // An ISA of a machine this build has no backend for (none is ever made).
            machine => write!(f, "machine {machine}"),
        }
    }
}

/// RISC-V ISA strings: extensions by bit, parsing, implications, names.
#[cfg(any(
    feature = "all-arches",
    target_arch = "riscv32",
    target_arch = "riscv64"
))]
mod rv {
    use super::*;

    /// RISC-V multi-letter extensions the check knows, by bit (after the 26 single letters). Others (privileged
    /// `s*` extensions, hints, vendor `x*` ones not listed here, newer ones, and those every core that runs code
    /// from RAM has: Zicsr and Zifencei) are not checked: an object using one of them loads. The parts of M, A
    /// and C (Zmmul; Zaamo and Zalrsc; Zca, Zcf and Zcd), which newer compilers list beside the letter, are: code
    /// built for a part alone (`-march=rv32i_zca`) uses it, and a core may have the parts without the letter
    /// (`rv32imc_zaamo_zalrsc` is `rv32imac`).
    pub(super) const Z_NAMES: [&str; 78] = [
        "zba",
        "zbb",
        "zbc",
        "zbs",
        "zbkb",
        "zbkc",
        "zbkx",
        "zfh",
        "zfhmin",
        "zfa",
        "zicond",
        "zcb",
        "zcmp",
        "zcmt",
        "zknd",
        "zkne",
        "zknh",
        "zksed",
        "zksh",
        "zacas",
        "zabha",
        "zawrs",
        "zve32x",
        "zve32f",
        "zve64x",
        "zve64f",
        "zve64d",
        "zvfh",
        "zvbb",
        "zvbc",
        "zmmul",
        "zaamo",
        "zalrsc",
        "zca",
        "zcf",
        "zcd",
        // Floating point in integer registers, cache-block operations, total store order (code built for it
        // leaves out fences a weakly ordered core needs), vector crypto, BF16, may-be-operations.
        "zfinx",
        "zdinx",
        "zhinx",
        "zhinxmin",
        "zicbom",
        "zicboz",
        "ztso",
        "zvkb",
        "zvkg",
        "zvkned",
        "zvknha",
        "zvknhb",
        "zvksed",
        "zvksh",
        "zvfhmin",
        "zfbfmin",
        "zvfbfmin",
        "zvfbfwma",
        "zimop",
        "zcmop",
        // Shorthands for groups of the above (only their parts are compared).
        "zk",
        "zkn",
        "zks",
        "zce",
        // Vendor extensions of common microcontroller cores: T-Head's, CORE-V's (OpenHW), WCH's.
        "xtheadba",
        "xtheadbb",
        "xtheadbs",
        "xtheadcmo",
        "xtheadcondmov",
        "xtheadfmemidx",
        "xtheadmac",
        "xtheadmemidx",
        "xtheadmempair",
        "xtheadsync",
        "xcvalu",
        "xcvbi",
        "xcvbitmanip",
        "xcvelw",
        "xcvmac",
        "xcvmem",
        "xcvsimd",
        "xwchc",
    ];
    pub(super) const Z_FIRST: u32 = 26;
    /// The single letters that name instruction-set extensions the check compares. The base (`i`, `e`) is
    /// compared on its own; `g` expands; `h`, `s`, `u`, `n` are privileged.
    pub(super) const RV_LETTERS: &str = "mafdqlcbkjtpv";
    /// RISC-V's canonical order of single-letter extensions, for names.
    pub(super) const RV_ORDER: &str = "iemafdqlcbkjtpvh";

    pub(super) const fn letter_bit(letter: u8) -> u128 {
        match letter {
            b'a'..=b'z' => 1 << (letter - b'a'),
            _ => 0,
        }
    }

    /// Writes RISC-V features: as an ISA string's tail (`imac_zba`), or for a message (`the F, C and Zba
    /// extensions`).
    pub(super) fn write_riscv_features(
        f: &mut dyn fmt::Write,
        features: u128,
        prose: bool,
    ) -> fmt::Result {
        let features = features & !riscv_shown_parts(features);
        let mut names: [&str; 128] = [""; 128];
        let mut n = 0;
        for (at, c) in RV_ORDER.bytes().enumerate() {
            if features & letter_bit(c) != 0 {
                if let Some(slot) = names.get_mut(n) {
                    *slot = RV_ORDER.get(at..at + 1).unwrap_or("");
                    n += 1;
                }
            }
        }
        for (i, z) in Z_NAMES.iter().enumerate() {
            if features & (1 << (Z_FIRST + i as u32)) != 0 {
                if let Some(slot) = names.get_mut(n) {
                    *slot = z;
                    n += 1;
                }
            }
        }
        let names = names.get(..n).unwrap_or(&[]);
        if !prose {
            for (i, name) in names.iter().enumerate() {
                if name.len() > 1 && i > 0 {
                    f.write_char('_')?;
                }
                f.write_str(name)?;
            }
            return Ok(());
        }
        f.write_str("the ")?;
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                f.write_str(if i + 1 == names.len() { " and " } else { ", " })?;
            }
            let mut chars = name.chars();
            if let Some(first) = chars.next() {
                f.write_char(first.to_ascii_uppercase())?;
                f.write_str(chars.as_str())?;
            }
        }
        f.write_str(if names.len() == 1 {
            " extension"
        } else {
            " extensions"
        })
    }

    /// Reads a RISC-V ISA string: `rv32`/`rv64`, then single letters (each optionally with a version such as
    /// `2p1`), then `_`-separated multi-letter extensions (also versioned). Unknown extensions are skipped.
    pub(super) fn riscv_from_string(s: &[u8]) -> Option<Isa> {
        let lower = |c: &u8| c.to_ascii_lowercase();
        let (bits, rest) = match s.get(..4) {
            Some(p) if p.eq_ignore_ascii_case(b"rv32") => (32, s.get(4..)?),
            Some(p) if p.eq_ignore_ascii_case(b"rv64") => (64, s.get(4..)?),
            _ => return None,
        };
        let mut features = 0u128;
        for (n, token) in rest.split(|&c| c == b'_').enumerate() {
            let first = token.first().map(lower);
            if n > 0 && token.len() > 1 && matches!(first, Some(b'z' | b's' | b'x')) {
                // A multi-letter extension, without its version.
                let name = trim_version(token);
                if let Some(i) = Z_NAMES
                    .iter()
                    .position(|z| z.as_bytes().eq_ignore_ascii_case(name))
                {
                    features |= 1 << (Z_FIRST + i as u32);
                }
                continue;
            }
            // Single letters, each optionally followed by a version: `i2p1`, `m`, `a2p0`.
            let mut i = 0;
            while let Some(&c) = token.get(i) {
                let c = c.to_ascii_lowercase();
                if !c.is_ascii_lowercase() {
                    return None;
                }
                features |= match c {
                    b'g' => {
                        letter_bit(b'i')
                            | letter_bit(b'm')
                            | letter_bit(b'a')
                            | letter_bit(b'f')
                            | letter_bit(b'd')
                    }
                    b'i' | b'e' => letter_bit(c),
                    _ if RV_LETTERS.as_bytes().contains(&c) => letter_bit(c),
                    _ => 0,
                };
                i += 1;
                // A version: digits, then optionally `p` and digits.
                while token.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    if token.get(i) == Some(&b'p')
                        && token.get(i + 1).is_some_and(u8::is_ascii_digit)
                    {
                        i += 1;
                    }
                }
            }
        }
        if features & (letter_bit(b'i') | letter_bit(b'e')) == 0 {
            return None;
        }
        Some(Isa {
            machine: EM_RISCV,
            bits,
            features: riscv_closure(features, bits),
        })
    }

    /// A multi-letter extension's name without its version: `zba1p0` and `zba1` give `zba`, `zcmp2p0` gives
    /// `zcmp`, and `zve32x` stays (no name the check knows ends in a digit).
    pub(super) fn trim_version(token: &[u8]) -> &[u8] {
        let digits_before = |end: usize| {
            let mut e = end;
            while e > 1 && token.get(e - 1).is_some_and(u8::is_ascii_digit) {
                e -= 1;
            }
            e
        };
        let mut end = digits_before(token.len());
        // `<major>p<minor>`: the `p` and the major version go too.
        if end < token.len() && end > 1 && token.get(end - 1) == Some(&b'p') {
            let major = digits_before(end - 1);
            if major < end - 1 {
                end = major;
            }
        }
        token.get(..end).unwrap_or(token)
    }

    /// What each extension brings with it, one step: [`riscv_closure`] applies it to a fixed point.
    pub(super) const IMPLIES: [(u128, u128); 32] = [
        (letter_bit(b'v'), letter_bit(b'd') | z_bit("zve64d")),
        (z_bit("zve64d"), letter_bit(b'd') | z_bit("zve64f")),
        (z_bit("zve64f"), z_bit("zve64x") | z_bit("zve32f")),
        (z_bit("zve32f"), letter_bit(b'f') | z_bit("zve32x")),
        (z_bit("zve64x"), z_bit("zve32x")),
        (
            z_bit("zvfh"),
            z_bit("zve32f") | z_bit("zfhmin") | z_bit("zvfhmin"),
        ),
        (letter_bit(b'q'), letter_bit(b'd')),
        (letter_bit(b'd'), letter_bit(b'f')),
        (letter_bit(b'b'), z_bit("zba") | z_bit("zbb") | z_bit("zbs")),
        (letter_bit(b'k'), z_bit("zkn")),
        (z_bit("zfh"), z_bit("zfhmin")),
        (z_bit("zfhmin") | z_bit("zfa"), letter_bit(b'f')),
        // Zvbb is a superset of Zvkb, Zvfh of Zvfhmin, Zvknhb (SHA-256 and SHA-512) of Zvknha (SHA-256).
        (z_bit("zvbb"), z_bit("zve32x") | z_bit("zvkb")),
        (z_bit("zvbc"), z_bit("zve64x")),
        (letter_bit(b'm'), z_bit("zmmul")),
        (letter_bit(b'a'), z_bit("zaamo") | z_bit("zalrsc")),
        (letter_bit(b'c'), z_bit("zca")),
        (z_bit("zcb") | z_bit("zcmp") | z_bit("zcmt"), z_bit("zca")),
        (z_bit("zcf"), z_bit("zca") | letter_bit(b'f')),
        (z_bit("zcd"), z_bit("zca") | letter_bit(b'd')),
        (z_bit("zdinx") | z_bit("zhinxmin"), z_bit("zfinx")),
        (z_bit("zhinx"), z_bit("zhinxmin")),
        (z_bit("zfbfmin"), letter_bit(b'f')),
        (
            z_bit("zvfhmin") | z_bit("zvfbfmin") | z_bit("zvfbfwma"),
            z_bit("zve32f"),
        ),
        (z_bit("zvfbfwma"), z_bit("zvfbfmin") | z_bit("zfbfmin")),
        (
            z_bit("zvkb")
                | z_bit("zvkg")
                | z_bit("zvkned")
                | z_bit("zvknha")
                | z_bit("zvksed")
                | z_bit("zvksh"),
            z_bit("zve32x"),
        ),
        (z_bit("zvknhb"), z_bit("zve64x") | z_bit("zvknha")),
        (z_bit("zcmop"), z_bit("zca")),
        (z_bit("zk"), z_bit("zkn")),
        (
            z_bit("zkn"),
            z_bit("zbkb")
                | z_bit("zbkc")
                | z_bit("zbkx")
                | z_bit("zkne")
                | z_bit("zknd")
                | z_bit("zknh"),
        ),
        (
            z_bit("zks"),
            z_bit("zbkb") | z_bit("zbkc") | z_bit("zbkx") | z_bit("zksed") | z_bit("zksh"),
        ),
        (
            z_bit("zce"),
            z_bit("zca") | z_bit("zcb") | z_bit("zcmp") | z_bit("zcmt"),
        ),
    ];

    /// What each extension brings with it (D holds F, V holds D, B is Zba, Zbb and Zbs, ...), to a fixed
    /// point: Zve64d holds Zve64f, which holds Zve64x and Zve32f, which hold Zve32x, so that a core with V runs
    /// an object GCC lists every one of them for (`v1p0_..._zve32f1p0_zve32x1p0_zve64d1p0_zve64f1p0_zve64x1p0`).
    pub(super) fn riscv_closure(mut f: u128, bits: u8) -> u128 {
        loop {
            let before = f;
            for (from, to) in IMPLIES {
                if f & from != 0 {
                    f |= to;
                }
            }
            if f == before {
                break;
            }
        }
        // C is Zca, with Zcf on RV32 with F and Zcd with D (its compressed loads and stores of them); A is
        // Zaamo and Zalrsc. A core with the parts has the whole.
        // Zcf is RV32's alone (RV64 has no compressed single-precision loads): nothing to compare there.
        if bits == 64 {
            f &= !ZCF;
        }
        // Zce on RV32 with F holds Zcf (GCC lists it too).
        const ZCE: u128 = z_bit("zce");
        if bits == 32 && f & ZCE != 0 && f & letter_bit(b'f') != 0 {
            f |= ZCF;
        }
        let mut c_parts = ZCA;
        if bits == 32 && f & letter_bit(b'f') != 0 {
            c_parts |= ZCF;
        }
        if f & letter_bit(b'd') != 0 {
            c_parts |= ZCD;
        }
        if f & letter_bit(b'c') != 0 {
            f |= c_parts;
        } else if f & c_parts == c_parts {
            f |= letter_bit(b'c');
        }
        if f & A_PARTS == A_PARTS {
            f |= letter_bit(b'a');
        }
        // A core that lists the parts of a shorthand has them.
        f & !SHORTHANDS
    }

    /// The bit of a multi-letter extension in [`Z_NAMES`]. Only for constants (the tables below): it is
    /// evaluated at compile time, where a name not in the list fails the build.
    pub(super) const fn z_bit(name: &str) -> u128 {
        let name = name.as_bytes();
        let mut i = 0;
        while i < Z_NAMES.len() {
            let z = Z_NAMES[i].as_bytes();
            if z.len() == name.len() {
                let mut j = 0;
                while j < z.len() && z[j] == name[j] {
                    j += 1;
                }
                if j == z.len() {
                    return 1u128 << (Z_FIRST as usize + i);
                }
            }
            i += 1;
        }
        panic!("z_bit: a name not in Z_NAMES")
    }

    pub(super) const ZCA: u128 = z_bit("zca");
    pub(super) const ZCF: u128 = z_bit("zcf");
    pub(super) const ZCD: u128 = z_bit("zcd");
    pub(super) const A_PARTS: u128 = z_bit("zaamo") | z_bit("zalrsc");
    /// B, K and the Z shorthands: only their parts are compared.
    pub(super) const SHORTHANDS: u128 = letter_bit(b'b')
        | letter_bit(b'k')
        | z_bit("zk")
        | z_bit("zkn")
        | z_bit("zks")
        | z_bit("zce");

    /// Parts a name need not show beside their whole ([`riscv_shown_parts`]).
    pub(super) const SHOWN_PARTS: [(u128, u128); 7] = [
        (letter_bit(b'm'), z_bit("zmmul")),
        (letter_bit(b'a'), z_bit("zaamo") | z_bit("zalrsc")),
        (letter_bit(b'c'), z_bit("zca") | z_bit("zcf") | z_bit("zcd")),
        (
            z_bit("zve64d"),
            z_bit("zve64f") | z_bit("zve64x") | z_bit("zve32f") | z_bit("zve32x"),
        ),
        (
            z_bit("zve64f"),
            z_bit("zve64x") | z_bit("zve32f") | z_bit("zve32x"),
        ),
        (z_bit("zve64x"), z_bit("zve32x")),
        (z_bit("zve32f"), z_bit("zve32x")),
    ];

    /// Extensions a name need not show, as another it shows holds them: `rv64imafdcv_zve64d`, not every
    /// smaller Zve as well, and `rv32imac`, not `rv32imac_zmmul_zaamo_zalrsc_zca`.
    pub(super) fn riscv_shown_parts(f: u128) -> u128 {
        SHOWN_PARTS
            .iter()
            .filter(|(whole, _)| f & whole != 0)
            .fold(0, |hidden, (_, part)| hidden | part)
    }

    /// What a RISC-V object's `e_flags` say it uses: RVC, RVE, and the FP registers its calling convention
    /// passes values in.
    pub(super) fn riscv_from_flags(bits: u8, e_flags: u32) -> Isa {
        let mut features = if e_flags & 0x8 != 0 {
            letter_bit(b'e')
        } else {
            letter_bit(b'i')
        };
        if e_flags & 0x1 != 0 {
            features |= letter_bit(b'c');
        }
        features |= match e_flags & 0x6 {
            2 => letter_bit(b'f'),
            4 => letter_bit(b'd'),
            6 => letter_bit(b'q'),
            _ => 0,
        };
        Isa {
            machine: EM_RISCV,
            bits,
            features: riscv_closure(features, bits),
        }
    }

    /// The `Tag_RISCV_arch` string of a RISC-V object's `.riscv.attributes` (RISC-V psABI, "Attributes": in
    /// the `riscv` vendor's file subsection, tag 5; odd tags take a string, even ones a number).
    pub(super) fn riscv_attribute_arch<'a>(object: &crate::elf::Object<'a>) -> Option<&'a [u8]> {
        const SHT_RISCV_ATTRIBUTES: u32 = 0x7000_0003;
        let mut reader =
            crate::arch::file_attributes_reader(object, SHT_RISCV_ATTRIBUTES, b"riscv")?;
        while let Some(tag) = reader.read_tag().ok()? {
            if tag % 2 == 1 {
                let value = reader.read_string().ok()?;
                if tag == 5 {
                    return Some(value);
                }
            } else {
                reader.read_integer().ok()?;
            }
        }
        None
    }

    /// What a RISC-V file's build attributes say it was built for (`Tag_RISCV_arch`).
    pub(super) fn riscv_of_attributes(object: &crate::elf::Object<'_>) -> Option<Isa> {
        let bits = if object.class.is_64 { 64 } else { 32 };
        riscv_attribute_arch(object)
            .and_then(riscv_from_string)
            .filter(|isa| isa.bits == bits)
    }

    /// What a RISC-V object that `needs` these features lacks on a `core` with those, named.
    pub(super) fn riscv_missing(core: u128, needs: u128) -> Option<String> {
        let lacking = needs & !core;
        let (e, i) = (letter_bit(b'e'), letter_bit(b'i'));
        if needs & e != core & e {
            // RV32E code runs on an RV32I core, but its calling convention (ilp32e) is another one; GNU
            // `ld` refuses the mix both ways.
            return Some(if needs & e != 0 {
                String::from("the E base and its ilp32e calling convention")
            } else {
                String::from("registers x16-x31, which an E-base core lacks")
            });
        }
        let mut lacking = lacking & !(e | i);
        // Without F (or D), C's loads and stores of it are missing too: named by the letter alone.
        for (letter, part) in [(b'f', ZCF), (b'd', ZCD)] {
            if lacking & letter_bit(letter) != 0 {
                lacking &= !part;
            }
        }
        if lacking == 0 {
            return None;
        }
        let mut s = String::new();
        let _ = write_riscv_features(&mut s, lacking, true);
        Some(s)
    }
}

/// Arm M-profile architectures and options by bit, keys, names.
#[cfg(any(feature = "all-arches", target_arch = "arm"))]
mod m_profile {
    use super::*;

    /// Arm M-profile capabilities, by bit.
    pub(super) const T1: u128 = 1 << 0; // Armv6-M Thumb
    pub(super) const T2: u128 = 1 << 1; // Armv7-M Thumb-2
    pub(super) const V8B: u128 = 1 << 2; // Armv8-M Baseline additions (acquire/release, TT, SG, ...)
    pub(super) const V81: u128 = 1 << 3; // Armv8.1-M Mainline additions (low-overhead loops, ...)
    pub(super) const DSP: u128 = 1 << 4; // the DSP extension (Armv7E-M, +dsp)
    pub(super) const FP: u128 = 1 << 5; // a single-precision FPU
    pub(super) const FPDP: u128 = 1 << 6; // a double-precision FPU
    pub(super) const MVE: u128 = 1 << 7; // M-profile vector extension, integer
    pub(super) const MVEF: u128 = 1 << 8; // and floating point
    /// FPv5 instructions (VRINT*, VSEL, VMAXNM, VCVTA, ...): a Cortex-M7's FPU and every Armv8-M one, not a
    /// Cortex-M4's (FPv4), which faults on them.
    pub(super) const FP5: u128 = 1 << 9;

    /// Arm M-profile architectures by capability, with the `-march` name each goes by (longest first where
    /// one holds another, so a name picks the largest that fits).
    pub(super) const ARM_ARCHES: [(u128, &str); 6] = [
        (T1 | T2 | V8B | V81, "armv8.1-m.main"),
        (T1 | T2 | V8B, "armv8-m.main"),
        (T1 | T2 | DSP, "armv7e-m"),
        (T1 | T2, "armv7-m"),
        (T1 | V8B, "armv8-m.base"),
        (T1, "armv6-m"),
    ];
    /// Arm options, with the `-march` suffix each goes by.
    /// On Armv7E-M `+fp` is a Cortex-M4's FPv4 and `+fp.dp` a Cortex-M7's FPv5 (as GCC's `-march` has them);
    /// `+fpv5` is a single-precision FPv5 (a Cortex-M7's `-mfpu=fpv5-sp-d16`). Armv8-M FPUs are all FPv5.
    pub(super) const ARM_OPTIONS: [(u128, &str); 6] = [
        (DSP, "+dsp"),
        (FPDP, "+fp.dp"),
        (FP5, "+fpv5"),
        (FP, "+fp"),
        (MVEF, "+mve.fp"),
        (MVE, "+mve"),
    ];

    pub(super) fn arm_from_key(rest: &str) -> Option<Isa> {
        let mut parts = rest.split('+');
        let base = parts.next()?;
        let mut features = ARM_ARCHES
            .iter()
            .find(|(_, name)| name.strip_prefix("arm") == Some(base))?
            .0;
        for option in parts {
            features |= ARM_OPTIONS
                .iter()
                .find(|(_, suffix)| suffix.strip_prefix('+') == Some(option))?
                .0;
        }
        if features & MVEF != 0 {
            features |= MVE | FP;
        }
        if features & (FPDP | FP5) != 0 {
            features |= FP;
        }
        if features & FP != 0 && features & (V8B | FPDP) != 0 {
            features |= FP5;
        }
        if features & MVE != 0 {
            features |= DSP;
        }
        Some(Isa {
            machine: EM_ARM,
            bits: 32,
            features,
        })
    }

    /// The largest M-profile architecture `features` hold: its `-march` name and capabilities.
    pub(super) fn arm_base(features: u128) -> (&'static str, u128) {
        ARM_ARCHES
            .iter()
            .find(|(caps, _)| features & caps == *caps)
            .map_or(("", 0), |(caps, name)| (*name, *caps))
    }

    pub(super) fn arm_missing(needs: u128, lacking: u128) -> Option<String> {
        let what = if lacking & (T2 | V8B | V81) != 0 {
            let mut s = String::from("instructions of ");
            s.push_str(arm_base(needs).0);
            return Some(s);
        } else if lacking & DSP != 0 {
            "the DSP extension"
        } else if lacking & FP != 0 {
            "an FPU"
        } else if lacking & FPDP != 0 {
            "a double-precision FPU"
        } else if lacking & FP5 != 0 {
            "an FPv5 FPU (VRINT, VSEL, VMAXNM), as a Cortex-M7's"
        } else if lacking & (MVE | MVEF) != 0 {
            "the M-profile vector extension (MVE)"
        } else {
            return None;
        };
        Some(String::from(what))
    }

    /// What an Arm file's build attributes say it was built for: `Tag_CPU_arch` and the options, for
    /// M-profile architectures.
    pub(super) fn arm_of_attributes(object: &crate::elf::Object<'_>) -> Option<Isa> {
        let a = crate::arch::arm::file_attributes(object)?;
        // An A- or R-profile file is not of an M-profile architecture, however its Tag_CPU_arch
        // reads (v7 is Armv7-A's too); the registry refuses it on an M-profile core for its profile.
        if matches!(u8::try_from(a.profile), Ok(b'A' | b'R' | b'S')) {
            return None;
        }
        let mut features = match a.cpu_arch {
            1..=7 | 9 | 11 | 12 => T1,
            8 | 10 => T1 | T2,
            13 => T1 | T2 | DSP,
            16 => T1 | V8B,
            17 => T1 | T2 | V8B,
            21 => T1 | T2 | V8B | V81,
            _ => return None,
        };
        if a.dsp == 1 {
            features |= DSP;
        }
        if a.fp_arch != 0 {
            // Tag_ABI_HardFP_use 1: single precision only; otherwise what the FP architecture has,
            // and every one an M-profile core has does double precision.
            features |= if a.hardfp_use == 1 { FP } else { FP | FPDP };
            // 7 and 8: the Armv8 FP architecture, which M-profile cores have as FPv5.
            if a.fp_arch >= 7 {
                features |= FP5;
            }
        }
        features |= match a.mve {
            1 => MVE,
            2 => MVE | MVEF,
            _ => 0,
        };
        Some(Isa {
            machine: EM_ARM,
            bits: 32,
            features,
        })
    }

    /// Writes an Arm M-profile ISA's key.
    pub(super) fn arm_fmt(features: u128, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = arm_base(features);
        f.write_str(base.0)?;
        let mut shown = base.1;
        // What the base and the other options say: FPv5 with Armv8-M's FPU or Armv7E-M's `+fp.dp`.
        if features & (V8B | FPDP) != 0 {
            shown |= FP5;
        }
        for (bit, suffix) in ARM_OPTIONS {
            // +mve.fp says +mve, and +fp.dp says +fp.
            if features & bit != 0 && shown & bit == 0 {
                f.write_str(suffix)?;
                shown |= match bit {
                    MVEF => MVEF | MVE,
                    FPDP => FPDP | FP,
                    FP5 => FP5 | FP,
                    _ => bit,
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isa(key: &str) -> Isa {
        Isa::from_key(key).unwrap_or_else(|| panic!("{key}"))
    }

    #[test]
    fn riscv_strings_read_with_and_without_versions() {
        let full = isa("rv32i2p1_m2p0_a2p1_c2p0_zicsr2p0_zifencei2p0_zmmul1p0_zaamo1p0_zca1p0");
        assert_eq!(full, isa("rv32imac"));
        assert_eq!(full.key(), "rv32imac");
        // `g` is IMAFD; D holds F; B is its parts; versions of multi-letter names go.
        assert_eq!(isa("rv64gc").key(), "rv64imafdc");
        assert_eq!(isa("RV64IMADC").key(), "rv64imafdc");
        assert_eq!(isa("rv64gcb").key(), "rv64imafdc_zba_zbb_zbs");
        assert_eq!(
            isa("rv32imac_zba1p0_zcmp1p0_zve32x1p0").key(),
            "rv32imac_zba_zcmp_zve32x"
        );
        assert_eq!(isa("rv32e1p9").key(), "rv32e");
        // Privileged and unknown extensions are not compared (the vendor ones listed are).
        assert_eq!(isa("rv32imac_sstc_xfoo_zfoo1p0_h"), isa("rv32imac"));
        for bad in ["", "rv", "rv32", "rv16i", "x86", "rv32_zba", "rv32i$"] {
            assert_eq!(Isa::from_key(bad), None, "{bad}");
        }
        for key in ["rv32imac", "rv64imafdcv_zba_zfh_zfhmin_zve64d", "rv32emc"] {
            assert_eq!(isa(key).key(), key);
        }
    }

    #[test]
    fn riscv_extensions_that_change_what_code_does_are_compared() {
        // A review found these accepted on any core: floats in integer registers, code that leaves out
        // fences for a TSO core, cache-block operations, vendor instructions.
        let core = isa("rv64gc");
        for (object, missing) in [
            ("rv64imac_zfinx", "the Zfinx extension"),
            ("rv64gc_ztso1p0", "the Ztso extension"),
            ("rv64gc_zicbom1p0", "the Zicbom extension"),
            (
                "rv64gc_xtheadba1p0_xtheadbb1p0",
                "the Xtheadba and Xtheadbb extensions",
            ),
            ("rv64gc_zdinx", "the Zfinx and Zdinx extensions"),
        ] {
            assert_eq!(
                core.missing(&isa(object)).as_deref(),
                Some(missing),
                "{object}"
            );
            assert_eq!(isa(object).missing(&isa(object)), None, "{object}");
        }
        // Shorthands stand for their parts, on either side.
        assert_eq!(isa("rv32imac_zce").missing(&isa("rv32imac_zcb_zcmp")), None);
        assert_eq!(isa("rv64gc_zk").missing(&isa("rv64gc_zbkb_zknh")), None);
        assert_eq!(isa("rv64gc_zkn").missing(&isa("rv64gc_zk")), None);
        assert_eq!(
            isa("rv64gc_zbkb").missing(&isa("rv64gc_zks")).as_deref(),
            Some("the Zbkc, Zbkx, Zksed and Zksh extensions")
        );
        assert_eq!(isa("rv64imac_zfinx").key(), "rv64imac_zfinx");
    }

    /// A core with an extension runs code built for one it holds: Zvbb holds Zvkb, Zvfh Zvfhmin, Zvknhb
    /// Zvknha, and RV32 Zce with F holds Zcf (so C).
    #[test]
    fn supersets_run_their_subsets() {
        for (core, object) in [
            ("rv64gcv_zvbb", "rv64gcv_zvkb"),
            ("rv64gcv_zvfh", "rv64gcv_zvfhmin"),
            ("rv64gcv_zvknhb", "rv64gcv_zvknha"),
            ("rv32imaf_zce", "rv32imafc"),
        ] {
            assert_eq!(
                isa(core).missing(&isa(object)),
                None,
                "{core} runs {object}"
            );
        }
    }

    #[test]
    fn riscv_missing_extensions_are_named() {
        let core = isa("rv32imac");
        assert_eq!(core.missing(&isa("rv32imac")), None);
        assert_eq!(core.missing(&isa("rv32ic")), None);
        assert_eq!(
            core.missing(&isa("rv32imafc")).as_deref(),
            Some("the F extension")
        );
        assert_eq!(
            core.missing(&isa("rv32imafdc_zba_zbb")).as_deref(),
            Some("the F, D, Zba and Zbb extensions")
        );
        // The E base and the I base do not mix either way.
        assert!(core.missing(&isa("rv32e")).unwrap().contains("ilp32e"));
        assert!(isa("rv32emc").missing(&core).unwrap().contains("x16"));
        // Another width is not this check's business (the ELF class is refused before).
        assert_eq!(core.missing(&isa("rv64gc")), None);
    }

    #[test]
    fn a_vector_core_runs_what_gcc_lists_for_v() {
        // GCC 12's Tag_RISCV_arch for -march=rv64gcv lists every Zve that V holds.
        let gcc = isa("rv64i2p1_m2p0_a2p1_f2p2_d2p2_c2p0_v1p0_zicsr2p0_zifencei2p0_zmmul1p0_\
                       zve32f1p0_zve32x1p0_zve64d1p0_zve64f1p0_zve64x1p0_zvl128b1p0_zvl32b1p0_zvl64b1p0");
        let core = isa("rv64gcv");
        assert_eq!(core.missing(&gcc), None);
        assert_eq!(gcc, core);
        assert_eq!(gcc.key(), "rv64imafdcv_zve64d");
        // The smaller vector extensions are parts of V, and Zve32f needs F.
        for part in [
            "rv64gc_zve32x",
            "rv64gc_zve64x",
            "rv64gc_zve32f",
            "rv64gc_zve64d",
        ] {
            assert_eq!(core.missing(&isa(part)), None, "{part}");
        }
        assert_eq!(
            isa("rv64gc_zve32x").missing(&core).as_deref(),
            Some("the V and Zve64d extensions")
        );
        assert_eq!(
            isa("rv32imc").missing(&isa("rv32imc_zve32f")).as_deref(),
            Some("the F and Zve32f extensions")
        );
    }

    #[test]
    fn parts_of_m_a_and_c_are_compared() {
        // Code built for a part alone uses it: a core without the letter lacks it.
        let rv32i = isa("rv32i");
        let named = |core: &Isa, needs: &str| core.missing(&isa(needs)).unwrap_or_default();
        assert_eq!(named(&rv32i, "rv32i2p1_zca1p0"), "the C extension");
        assert_eq!(named(&rv32i, "rv32i2p1_zmmul1p0"), "the Zmmul extension");
        assert_eq!(
            named(&isa("rv32imc"), "rv32imc_zalrsc"),
            "the Zalrsc extension"
        );
        assert_eq!(named(&isa("rv64imafd_zca"), "rv64gc"), "the C extension");
        assert_eq!(named(&isa("rv32imaf_zca"), "rv32imafc"), "the C extension");
        assert_eq!(
            named(&isa("rv32imac"), "rv32imafdc"),
            "the F and D extensions"
        );
        // A core with every part has the letter; with the letter, every part.
        assert_eq!(isa("rv32imc_zaamo_zalrsc"), isa("rv32imac"));
        assert_eq!(isa("rv32imc_zaamo1p0_zalrsc1p0").key(), "rv32imac");
        assert_eq!(isa("rv32ima_zca").missing(&isa("rv32imac")), None);
        assert_eq!(isa("rv64imafd_zca_zcd").missing(&isa("rv64gc")), None);
        for part in [
            "rv32i_zca",
            "rv32i_zmmul",
            "rv32i_zaamo",
            "rv32i_zalrsc",
            "rv32ic_zcb",
        ] {
            assert_eq!(isa("rv32imac_zcb").missing(&isa(part)), None, "{part}");
        }
        assert_eq!(isa("rv32i_zca_zcb").key(), "rv32ic_zcb");
        assert_eq!(isa("rv64i_zcf").key(), "rv64ifc");
        assert_eq!(isa("rv64i_zcf"), isa("rv64ifc"));
    }

    #[test]
    fn fpv5_code_is_not_for_a_cortex_m4() {
        // -mcpu=cortex-m7 -mfpu=fpv5-sp-d16 code may use VRINTM and VMAXNM, which a Cortex-M4F lacks.
        let m7sp = isa("armv7e-m+fpv5");
        assert_eq!(
            isa("armv7e-m+fp").missing(&m7sp).as_deref(),
            Some("an FPv5 FPU (VRINT, VSEL, VMAXNM), as a Cortex-M7's")
        );
        for fpv5 in [
            "armv7e-m+fp.dp",
            "armv8-m.main+dsp+fp",
            "armv8.1-m.main+dsp+mve.fp",
        ] {
            assert_eq!(isa(fpv5).missing(&m7sp), None, "{fpv5}");
            assert_eq!(isa(fpv5).missing(&isa("armv7e-m+fp")), None, "{fpv5}");
        }
        assert_eq!(m7sp.missing(&isa("armv7e-m+fp")), None);
        assert_eq!(m7sp.key(), "armv7e-m+fpv5");
        assert_eq!(isa("armv8-m.main+fpv5"), isa("armv8-m.main+fp"));
        assert_eq!(isa("armv7e-m+fp.dp+fpv5").key(), "armv7e-m+fp.dp");
    }

    #[test]
    fn arm_keys_and_missing_capabilities() {
        for key in [
            "armv6-m",
            "armv7-m",
            "armv7e-m+fp",
            "armv7e-m+fp.dp",
            "armv8-m.base",
            "armv8-m.main+dsp+fp",
            "armv8.1-m.main+dsp+fp.dp+mve.fp",
        ] {
            assert_eq!(isa(key).key(), key);
        }
        assert_eq!(Isa::from_key("armv9-m"), None);
        assert_eq!(Isa::from_key("armv7-m+sve"), None);
        let m4f = isa("armv7e-m+fp");
        for fine in ["armv6-m", "armv7-m", "armv7e-m", "armv7e-m+fp"] {
            assert_eq!(m4f.missing(&isa(fine)), None, "{fine}");
        }
        let named = |needs: &str| m4f.missing(&isa(needs)).unwrap_or_default();
        assert_eq!(named("armv7e-m+fp.dp"), "a double-precision FPU");
        assert_eq!(named("armv8-m.base"), "instructions of armv8-m.base");
        assert_eq!(
            named("armv8.1-m.main+mve"),
            "instructions of armv8.1-m.main"
        );
        let m3 = isa("armv7-m");
        assert_eq!(
            m3.missing(&isa("armv7e-m")).as_deref(),
            Some("the DSP extension")
        );
        assert_eq!(m3.missing(&isa("armv7-m+fp")).as_deref(), Some("an FPU"));
        assert_eq!(
            isa("armv6-m").missing(&m3).as_deref(),
            Some("instructions of armv7-m")
        );
        // RISC-V and Arm keys are of different machines: not compared.
        assert_eq!(m3.missing(&isa("rv32imac")), None);
    }
}
