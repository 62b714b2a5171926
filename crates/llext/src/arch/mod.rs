//! Per-architecture relocation backends behind one trait.
//!
//! The generic linker (`link.rs`) computes the inputs of every relocation formula — S, A, P, the GOT slot and
//! the stub of a symbol — and each backend turns them into bits. Adding an architecture means one new file here
//! and one arm in the `with_backend!` dispatch macro.

// A backend is built when the `all-arches` feature asks for every one (hosts, cross-checking tools) or when
// it is the target's own instruction set (firmware keeps only the linker it can use: on Cortex-M the other
// backends cost about 60 KB of flash).
#[cfg(any(feature = "all-arches", target_arch = "aarch64"))]
pub mod aarch64;
#[cfg(any(feature = "all-arches", target_arch = "arm"))]
pub mod arm;
#[cfg(any(
    feature = "all-arches",
    target_arch = "riscv32",
    target_arch = "riscv64"
))]
pub mod riscv;
#[cfg(any(feature = "all-arches", target_arch = "x86_64"))]
pub mod x86_64;

mod isa;
pub use isa::Isa;

/// The reader of the file-wide attributes (`Tag_File`) of `vendor`'s subsection in the object's section of
/// type `sh_type`: Arm's `.ARM.attributes` (`aeabi`) and RISC-V's `.riscv.attributes` (`riscv`) share the
/// format. `None` if there is none or it cannot be read (attributes are advisory: the link does not depend
/// on them).
#[cfg(any(
    feature = "all-arches",
    target_arch = "arm",
    target_arch = "riscv32",
    target_arch = "riscv64"
))]
pub(crate) fn file_attributes_reader<'d>(
    object: &crate::elf::Object<'d>,
    sh_type: u32,
    vendor: &[u8],
) -> Option<object::read::elf::AttributeReader<'d>> {
    use object::elf::{FileHeader32, Tag_File};
    use object::read::elf::AttributesSection;
    let section = object.sections.iter().find(|s| s.sh_type == sh_type)?;
    // The class only picks the header type the parser is generic over; the section's layout is the same.
    let attributes =
        AttributesSection::<FileHeader32<object::Endianness>>::new(object.endian, section.data)
            .ok()?;
    let mut subsections = attributes.subsections().ok()?;
    while let Some(subsection) = subsections.next().ok()? {
        if subsection.vendor() != vendor {
            continue;
        }
        let mut subsubsections = subsection.subsubsections();
        while let Some(sub) = subsubsections.next().ok()? {
            if sub.tag() == Tag_File {
                return Some(sub.attributes());
            }
        }
    }
    None
}

/// What a relocation type needs from the linker before it can be applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// A GOT slot holding the symbol's address.
    pub got_slot: bool,
    /// A call stub (PLT-like), used when the target is out of the instruction's reach.
    pub stub: bool,
    /// A direct reference to data, not through the GOT, that reads a copy of a copyable built-in
    /// ([`Export::copyable`](crate::Export::copyable)) instead of the variable itself.
    pub copy: bool,
}

/// Everything a relocation formula may use. Names follow the psABI documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// Relocation type.
    pub r_type: u32,
    /// S: the symbol's address.
    pub s: u64,
    /// A: the addend.
    pub a: i64,
    /// P: the address of the place being patched.
    pub p: u64,
    /// Z: the symbol's size.
    pub z: u64,
    /// The address of this symbol's GOT slot, if one was reserved.
    pub got_slot: Option<u64>,
    /// GOT: the address of the extension's GOT.
    pub got: u64,
    /// The address of this symbol's stub, if one was reserved.
    pub stub: Option<u64>,
    /// The symbol is code whose address may carry a mode bit (Arm's Thumb bit, which only function symbols
    /// have): an `STT_FUNC` symbol of the object, or a symbol from outside it that a branch refers to
    /// ([`Relocator::branches`]).
    pub func: bool,
    /// For a type that [`Relocator::pairing`] marks as a LO part: the value its HI partner computed
    /// ([`Relocator::hi_value`]), if the partner was found.
    pub hi: Option<i64>,
    /// The symbol is absent: an undefined weak symbol nothing provides (or an absolute symbol at 0), whose
    /// address is 0 and which no code is at. A branch or call to it becomes what GNU `ld` makes of it (a NOP
    /// on Arm and AArch64, a jump from register zero on RISC-V), not a jump to address 0 through a veneer.
    pub absent: bool,
    /// The place holds what an earlier link wrote there (a portable restore links again at new addresses),
    /// not the object's bytes: backends then accept the forms they themselves write (a RISC-V `lui` where
    /// the object has an `auipc`, a NOP where it has a branch), which an object itself must not have.
    pub relink: bool,
}

#[cfg(test)]
impl Inputs {
    /// Inputs with only S, A and P set (no GOT, stub, size, mode bit or HI partner), for backend tests.
    pub(crate) fn plain(r_type: u32, s: u64, a: i64, p: u64) -> Inputs {
        Inputs {
            r_type,
            s,
            a,
            p,
            z: 0,
            got_slot: None,
            got: 0,
            stub: None,
            func: false,
            hi: None,
            absent: false,
            relink: false,
        }
    }
}

/// How a relocation type takes part in a HI/LO pair (e.g. RISC-V `PCREL_HI20` and `PCREL_LO12_I`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Applied on its own.
    Alone,
    /// A HI part: its [`Relocator::hi_value`] is recorded under its place's address.
    Hi,
    /// A LO part whose HI partner is the one placed at this relocation's symbol address (S).
    LoAtSymbol,
    /// A LO part whose HI partner patches the same place (P).
    LoAtPlace,
}

/// Why a relocation could not be applied; the linker adds the location and symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The backend does not implement this type.
    Unsupported,
    /// The computed value does not fit the field.
    Overflow {
        /// The value computed.
        value: i64,
        /// What to do about it.
        reason: &'static str,
    },
    /// The place does not lie wholly inside its section.
    OutsideSection,
    /// The relocation needs a GOT slot or stub that was not reserved (a linker bug).
    Internal,
    /// The place or the pairing is not what the type requires (e.g. a MOVW relocation on a branch, a LO12
    /// without its HI20).
    Invalid {
        /// The instruction or value found.
        value: i64,
        /// What was expected.
        reason: &'static str,
    },
}

/// One instruction set's relocation formulas.
pub trait Relocator {
    /// `e_machine` this backend handles.
    const MACHINE: u16;
    /// Pointer size in bytes for this backend (used for GOT slots and `.exported_sym` entries).
    const POINTER_SIZE: usize;
    /// Size of one call stub in bytes (0 if the architecture never needs stubs).
    const STUB_SIZE: usize;
    /// Alignment of call stubs.
    const STUB_ALIGN: usize;
    /// True if some type says [`Needs::copy`]: the linker's code for copies of built-ins is compiled only
    /// for such backends (a firmware for another machine carries none of it).
    const COPIES: bool = false;

    /// The ABI name of a relocation type, e.g. `R_X86_64_PC32`, or `None` if unknown.
    fn name(r_type: u32) -> Option<&'static str>;
    /// What the type needs reserved before linking. Unknown types need nothing (they fail in `apply`).
    fn needs(r_type: u32) -> Needs;
    /// True for types that patch nothing (e.g. `R_X86_64_NONE`).
    fn is_none(r_type: u32) -> bool;
    /// True for types whose value is `S + A - P` alone (no GOT or stub involved): their bits do not change when
    /// the place and the target move together, so portable snapshots need not record them when both lie in
    /// the same block. The default, `false`, records every relocation (always correct, only larger).
    fn is_pc_relative(r_type: u32) -> bool {
        let _ = r_type;
        false
    }
    /// True for types that add `S + A` to the value already in the place, or subtract it (RISC-V `ADD32`,
    /// `SUB32`, ...: `V + S + A`), modulo the field's width. A portable restore finds such a place already
    /// relocated, so it replays them with the change of S alone (S set to 0, A to new S minus old S).
    /// The default, `false`, says every type writes its field afresh.
    fn accumulates(r_type: u32) -> bool {
        let _ = r_type;
        false
    }
    /// Writes a stub at `stub` (whose address is `at`) that jumps to `target`.
    fn write_stub(stub: &mut [u8], at: u64, target: u64) -> Result<(), Problem>;
    /// Reads the addend stored in the place (REL relocations).
    fn implicit_addend(r_type: u32, place: &[u8]) -> Result<i64, Problem> {
        let _ = (r_type, place);
        Err(Problem::Unsupported)
    }
    /// Applies one relocation to `place` (the bytes from the relocation offset to the end of its section).
    fn apply(inputs: &Inputs, place: &mut [u8]) -> Result<(), Problem>;
    /// How the type takes part in HI/LO pairs; most types stand alone.
    fn pairing(r_type: u32) -> Pairing {
        let _ = r_type;
        Pairing::Alone
    }
    /// True for types that write their field afresh for [`accumulates`](Relocator::accumulates) types at the
    /// same place to add to or subtract from (RISC-V `SET6` before a `SUB6`: a label difference). A portable
    /// restore that writes such a field afresh applies those partners in full, not by how far they moved.
    fn starts_difference(r_type: u32) -> bool {
        let _ = r_type;
        false
    }
    /// True for types that write a whole pointer, `S + A` (with the Thumb bit on Arm) and nothing else: an
    /// address in a data word. A portable restore treats such a word in writable memory as a pointer the
    /// extension may have changed since it was loaded. The default, `false`, re-applies every type.
    fn writes_pointer(r_type: u32) -> bool {
        let _ = r_type;
        false
    }
    /// At most how many bytes from its place a relocation of this type writes. The default, 8, is the widest
    /// field of the fixed-width types; backends of 32-bit machines say 4 where that holds, so that a
    /// pointer-sized write is not taken to spill into the next field.
    fn max_write(r_type: u32) -> usize {
        let _ = r_type;
        8
    }
    /// True for types that only ever address code: branches and calls. A symbol outside the object (whose
    /// type neither the object nor the export tables give) counts as a function for these alone. The
    /// default, `false`, suits machines whose addresses carry no mode bit.
    fn branches(r_type: u32) -> bool {
        let _ = r_type;
        false
    }
    /// For a [`Pairing::Hi`] type: the value its LO partners need (e.g. `S + A - P` of a `PCREL_HI20`).
    fn hi_value(inputs: &Inputs) -> Result<i64, Problem> {
        let _ = inputs;
        Err(Problem::Unsupported)
    }
}

/// Whether relocation `r_type` against `sym` takes the symbol for a function, whose address may carry a
/// mode bit ([`Inputs::func`]). A symbol the object defines says so itself (`STT_FUNC`). An undefined one
/// usually has no type (`STT_NOTYPE`), and the firmware's and other extensions' exports say nothing either:
/// it counts as a function when a branch refers to it ([`Relocator::branches`]), so calls still switch
/// state, and as data otherwise. Data at an odd address then keeps its addend whole (`&bytes[1]` of a byte
/// array at an odd address); a function's address with an even addend comes out the same either way.
pub(crate) fn is_function<A: Relocator>(sym: &crate::elf::Symbol, r_type: u32) -> bool {
    use crate::elf::SymbolPlace;
    sym.kind == ::object::elf::STT_FUNC.0
        || (sym.place == SymbolPlace::Undefined
            && sym.kind != ::object::elf::STT_OBJECT.0
            && A::branches(r_type))
}

/// A human name for an `e_machine` value.
pub fn machine_name(machine: u16) -> &'static str {
    match machine {
        EM_X86_64 => "x86_64",
        3 => "i386",
        EM_ARM => "ARM",
        EM_AARCH64 => "AArch64",
        EM_RISCV => "RISC-V",
        _ => "unknown",
    }
}

/// The relocation backends of this build, by name: its own machine's, or all with the `all-arches`
/// feature. RISC-V has one per pointer width.
pub fn linked_backends() -> impl Iterator<Item = &'static str> {
    let all = cfg!(feature = "all-arches");
    [
        ("x86_64", all || cfg!(target_arch = "x86_64")),
        ("ARM", all || cfg!(target_arch = "arm")),
        ("AArch64", all || cfg!(target_arch = "aarch64")),
        ("32-bit RISC-V", all || cfg!(target_arch = "riscv32")),
        ("64-bit RISC-V", all || cfg!(target_arch = "riscv64")),
    ]
    .into_iter()
    .filter_map(|(name, linked)| linked.then_some(name))
}

/// The `e_machine` this build runs natively, if a backend exists for it.
pub const fn native_machine() -> Option<u16> {
    if cfg!(target_arch = "x86_64") {
        Some(EM_X86_64)
    } else if cfg!(target_arch = "arm") {
        Some(EM_ARM)
    } else if cfg!(target_arch = "aarch64") {
        Some(EM_AARCH64)
    } else if cfg!(any(target_arch = "riscv32", target_arch = "riscv64")) {
        Some(EM_RISCV)
    } else {
        None
    }
}

/// How floating-point arguments and results pass between functions, as an object says (RISC-V in its
/// `e_flags`, an Arm relocatable object in its build attributes, an Arm image in its `e_flags` too): code
/// built for one convention passes `float`s where code built for another does not look, so GNU `ld` refuses
/// to link the two, and so does a registry that knows its own
/// ([`Registry::set_float_abi`](crate::Registry::set_float_abi)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatAbi {
    /// In integer registers: Arm's base procedure call standard (`-mfloat-abi=soft` or `softfp`), RISC-V
    /// `ilp32`/`lp64`.
    Soft,
    /// Arm's VFP variant (`-mfloat-abi=hard`, the `eabihf` targets).
    Vfp,
    /// RISC-V single precision in FP registers (`ilp32f`, `lp64f`).
    Single,
    /// RISC-V double precision in FP registers (`ilp32d`, `lp64d`).
    Double,
    /// RISC-V quad precision in FP registers (`ilp32q`, `lp64q`).
    Quad,
}

/// Float-ABI codes in contexts and records: the position here plus one (0: not known).
const FLOAT_ABI_CODES: [FloatAbi; 5] = [
    FloatAbi::Soft,
    FloatAbi::Vfp,
    FloatAbi::Single,
    FloatAbi::Double,
    FloatAbi::Quad,
];

impl FloatAbi {
    /// Its 4-bit code in saved contexts and records (0 stands for not known).
    pub(crate) fn code(abi: Option<FloatAbi>) -> u8 {
        abi.and_then(|abi| FLOAT_ABI_CODES.iter().position(|&a| a == abi))
            .map_or(0, |i| i as u8 + 1)
    }

    /// The convention a code stands for: `Ok(None)` for 0, `Err` for a code no convention has.
    pub(crate) fn from_code(code: u8) -> Result<Option<FloatAbi>, ()> {
        match code {
            0 => Ok(None),
            code => FLOAT_ABI_CODES
                .get(usize::from(code) - 1)
                .copied()
                .map(Some)
                .ok_or(()),
        }
    }

    /// The convention an object of `machine` with these `e_flags` follows, if its flags say (Arm EABI
    /// version 5 objects with one of the float-ABI flags, every RISC-V object).
    pub fn from_flags(machine: u16, e_flags: u32) -> Option<FloatAbi> {
        // AAELF32 "ELF header": EF_ARM_ABI_FLOAT_SOFT 0x200 and EF_ARM_ABI_FLOAT_HARD 0x400, meaningful
        // from EABI version 5 (the top byte).
        const EF_ARM_ABI_FLOAT_SOFT: u32 = 0x200;
        const EF_ARM_ABI_FLOAT_HARD: u32 = 0x400;
        // RISC-V psABI "ELF Object Files", "File Header": EF_RISCV_FLOAT_ABI is bits 1-2.
        const EF_RISCV_FLOAT_ABI: u32 = 0x6;
        match machine {
            EM_ARM if e_flags >> 24 >= 5 => {
                match e_flags & (EF_ARM_ABI_FLOAT_SOFT | EF_ARM_ABI_FLOAT_HARD) {
                    EF_ARM_ABI_FLOAT_SOFT => Some(FloatAbi::Soft),
                    EF_ARM_ABI_FLOAT_HARD => Some(FloatAbi::Vfp),
                    _ => None,
                }
            }
            EM_RISCV => Some(match e_flags & EF_RISCV_FLOAT_ABI {
                0 => FloatAbi::Soft,
                2 => FloatAbi::Single,
                4 => FloatAbi::Double,
                _ => FloatAbi::Quad,
            }),
            _ => None,
        }
    }

    /// The convention an object follows: its `e_flags`, or on Arm its build attributes.
    pub(crate) fn of_object(object: &crate::elf::Object<'_>) -> Option<FloatAbi> {
        let flagged = FloatAbi::from_flags(object.machine, object.e_flags);
        #[cfg(any(feature = "all-arches", target_arch = "arm"))]
        if flagged.is_none() && object.machine == EM_ARM {
            return arm::attributes_float_abi(object);
        }
        flagged
    }

    /// The convention this build's own code follows, on Arm and on RISC-V targets whose name says it
    /// (`riscv64gc`, `riscv32imafc`, `riscv32imac`, ...; `None` for a custom target).
    pub const fn native() -> Option<FloatAbi> {
        if cfg!(target_arch = "arm") {
            if cfg!(target_abi = "eabihf") {
                Some(FloatAbi::Vfp)
            } else {
                Some(FloatAbi::Soft)
            }
        } else if cfg!(llext_riscv_float_abi = "double") {
            // Rust's RISC-V targets pass floats in the widest FP registers their name gives them (the
            // build script reads it: `target_feature = "d"` is not a stable cfg).
            Some(FloatAbi::Double)
        } else if cfg!(llext_riscv_float_abi = "single") {
            Some(FloatAbi::Single)
        } else if cfg!(llext_riscv_float_abi = "soft") {
            Some(FloatAbi::Soft)
        } else {
            None
        }
    }

    /// A short name for lists and command lines: `soft`, `vfp`, `single`, `double` or `quad`.
    pub const fn key(self) -> &'static str {
        match self {
            FloatAbi::Soft => "soft",
            FloatAbi::Vfp => "vfp",
            FloatAbi::Single => "single",
            FloatAbi::Double => "double",
            FloatAbi::Quad => "quad",
        }
    }

    /// The convention named `key` ([`FloatAbi::key`]).
    pub fn from_key(key: &str) -> Option<FloatAbi> {
        [
            FloatAbi::Soft,
            FloatAbi::Vfp,
            FloatAbi::Single,
            FloatAbi::Double,
            FloatAbi::Quad,
        ]
        .into_iter()
        .find(|a| a.key() == key)
    }

    /// The compiler flag that selects this convention on `machine` for `bits`-bit code.
    pub fn flag(self, machine: u16, bits: u8) -> &'static str {
        let rv64 = bits == 64;
        match (machine, self) {
            (EM_ARM, FloatAbi::Vfp) => "-mfloat-abi=hard",
            (EM_ARM, _) => "-mfloat-abi=soft (or softfp)",
            (_, FloatAbi::Soft) if rv64 => "-mabi=lp64",
            (_, FloatAbi::Soft) => "-mabi=ilp32",
            (_, FloatAbi::Single) if rv64 => "-mabi=lp64f",
            (_, FloatAbi::Single) => "-mabi=ilp32f",
            (_, FloatAbi::Double) if rv64 => "-mabi=lp64d",
            (_, FloatAbi::Double) => "-mabi=ilp32d",
            (_, _) if rv64 => "-mabi=lp64q",
            (_, _) => "-mabi=ilp32q",
        }
    }
}

impl core::fmt::Display for FloatAbi {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FloatAbi::Soft => "soft-float",
            FloatAbi::Vfp => "hard-float (VFP)",
            FloatAbi::Single => "single-float",
            FloatAbi::Double => "double-float",
            FloatAbi::Quad => "quad-float",
        })
    }
}

/// The Arm architecture profile an ELF file (object or image) is built for, from its build attributes:
/// `A`, `R`, `M` (Cortex-M: Thumb code only), or `S` (A or R). `None` for other machines, a file without
/// the attribute, or a build without the Arm backend.
pub fn arm_profile(elf: &[u8]) -> Option<char> {
    #[cfg(any(feature = "all-arches", target_arch = "arm"))]
    {
        let object = crate::elf::parse(elf, &crate::Limits::default()).ok()?;
        (object.machine == EM_ARM)
            .then(|| arm::attributes_profile(&object))
            .flatten()
    }
    #[cfg(not(any(feature = "all-arches", target_arch = "arm")))]
    {
        let _ = elf;
        None
    }
}

/// The Arm profile an object's build attributes give, if it is one an M-profile core may not run: `A`, `R`
/// or `S`.
pub(crate) fn foreign_arm_profile(object: &crate::elf::Object<'_>) -> Option<char> {
    #[cfg(any(feature = "all-arches", target_arch = "arm"))]
    if object.machine == EM_ARM {
        return arm::attributes_profile(object).filter(|p| matches!(p, 'A' | 'R' | 'S'));
    }
    let _ = object;
    None
}

/// The first executable section of an Arm object holding A32 (Arm-state) code.
pub(crate) fn arm_state_section(object: &crate::elf::Object<'_>) -> Option<usize> {
    #[cfg(any(feature = "all-arches", target_arch = "arm"))]
    if object.machine == EM_ARM {
        return arm::arm_state_section(object);
    }
    let _ = object;
    None
}

/// Whether this build runs on a Cortex-M (Thumb code only).
pub const fn native_thumb_only() -> bool {
    cfg!(llext_arm_mclass)
}

/// The pointer width (bytes) of `machine`'s code, where the machine alone decides it (RISC-V has two).
pub(crate) const fn pointer_size(machine: u16) -> Option<u8> {
    match machine {
        EM_X86_64 | EM_AARCH64 => Some(8),
        EM_ARM => Some(4),
        _ => None,
    }
}

/// Whether objects of `machine` link direct references to a [`copyable`](crate::Export::copyable) or a
/// [`function`](crate::Export::function) built-in otherwise than to another (x86-64: a copy of the value,
/// the call stub), so that a list of the built-ins must say which they are.
pub(crate) const fn export_kinds_matter(machine: u16) -> bool {
    machine == EM_X86_64
}

const EM_X86_64: u16 = 62;
pub(crate) const EM_ARM: u16 = 40;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;

/// The relocation name of `r_type` for `machine`, if known.
pub fn relocation_name(machine: u16, r_type: u32) -> Option<&'static str> {
    // Either RISC-V backend names the types; a firmware build has only the one of its width.
    with_backend!(machine, true, A => A::name(r_type),
        _ => with_backend!(machine, false, A => A::name(r_type), _ => None))
}

/// Calls `f` with the backend for `machine` and ELF class (`is_64`); RISC-V has one backend per class because
/// its pointer size follows the class.
macro_rules! with_backend {
    ($machine:expr, $is_64:expr, $backend:ident => $body:expr, _ => $otherwise:expr) => {
        match ($machine, $is_64) {
            #[cfg(any(feature = "all-arches", target_arch = "x86_64"))]
            ($crate::arch::x86_64::X86_64::MACHINE_ID, _) => {
                type $backend = $crate::arch::x86_64::X86_64;
                $body
            }
            #[cfg(any(feature = "all-arches", target_arch = "arm"))]
            ($crate::arch::arm::Arm::MACHINE_ID, _) => {
                type $backend = $crate::arch::arm::Arm;
                $body
            }
            #[cfg(any(feature = "all-arches", target_arch = "aarch64"))]
            ($crate::arch::aarch64::Aarch64::MACHINE_ID, _) => {
                type $backend = $crate::arch::aarch64::Aarch64;
                $body
            }
            // A firmware links only objects of its own pointer width, so it gets only that RISC-V backend.
            #[cfg(any(feature = "all-arches", target_arch = "riscv32"))]
            ($crate::arch::riscv::MACHINE_ID, false) => {
                type $backend = $crate::arch::riscv::Riscv32;
                $body
            }
            #[cfg(any(feature = "all-arches", target_arch = "riscv64"))]
            ($crate::arch::riscv::MACHINE_ID, true) => {
                type $backend = $crate::arch::riscv::Riscv64;
                $body
            }
            _ => $otherwise,
        }
    };
}
pub(crate) use with_backend;

/// Little-endian field helpers shared by the backends.
pub(crate) mod field {
    use super::Problem;

    pub fn write<const N: usize>(place: &mut [u8], bytes: [u8; N]) -> Result<(), Problem> {
        place
            .get_mut(..N)
            .ok_or(Problem::OutsideSection)?
            .copy_from_slice(&bytes);
        Ok(())
    }

    pub fn fits_signed(v: i64, bits: u32) -> bool {
        let min = -(1i64 << (bits - 1));
        let max = (1i64 << (bits - 1)) - 1;
        (min..=max).contains(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_abi_from_e_flags() {
        // Arm: EABI version 5 with the soft or hard flag; older or unflagged objects say nothing.
        assert_eq!(
            FloatAbi::from_flags(EM_ARM, 0x0500_0200),
            Some(FloatAbi::Soft)
        );
        assert_eq!(
            FloatAbi::from_flags(EM_ARM, 0x0500_0400),
            Some(FloatAbi::Vfp)
        );
        assert_eq!(FloatAbi::from_flags(EM_ARM, 0x0500_0000), None);
        assert_eq!(FloatAbi::from_flags(EM_ARM, 0x0400_0400), None);
        assert_eq!(FloatAbi::from_flags(EM_ARM, 0x0500_0600), None);
        // RISC-V: bits 1-2, next to RVC (bit 0) and RVE (bit 3).
        assert_eq!(FloatAbi::from_flags(EM_RISCV, 0x1), Some(FloatAbi::Soft));
        assert_eq!(FloatAbi::from_flags(EM_RISCV, 0x3), Some(FloatAbi::Single));
        assert_eq!(FloatAbi::from_flags(EM_RISCV, 0x5), Some(FloatAbi::Double));
        assert_eq!(FloatAbi::from_flags(EM_RISCV, 0x7), Some(FloatAbi::Quad));
        // Other machines have no such flags.
        assert_eq!(FloatAbi::from_flags(EM_X86_64, 0x5), None);
        assert_eq!(FloatAbi::from_flags(EM_AARCH64, 0x400), None);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(FloatAbi::native(), None, "x86-64 hosts pass floats one way");
    }
}
