//! The one error type of the crate.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

/// Everything that can go wrong while reading, loading, linking, running or unloading an extension.
///
/// Every variant names what went wrong and where, so that `Display` reads as a sentence a user can act on.
/// A bug in the loader itself is reported as [`Error::Internal`], never as bad input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The data is not an ELF file at all.
    NotElf,
    /// The data is an `ar` archive (a static library, a Rust rlib or staticlib), not an object: its
    /// members are objects, one of which may be the extension.
    Archive,
    /// The file holds a compiler's intermediate code for link-time optimisation (`-flto`), not machine code.
    IntermediateCode {
        /// Which: GCC's GIMPLE (in an ELF object) or LLVM bitcode.
        format: &'static str,
    },
    /// The ELF structure is malformed; `what` says which part was being read.
    Malformed {
        /// The part of the file being read.
        what: &'static str,
        /// The detail reported by the ELF reader.
        detail: object::read::Error,
    },
    /// A header field names something this loader does not support (class, byte order, type, machine).
    Unsupported {
        /// What is unsupported, as a sentence fragment.
        what: &'static str,
        /// The value found in the file.
        value: u64,
    },
    /// The file is for another machine than the one it is being loaded on.
    WrongMachine {
        /// `e_machine` of the registry's target.
        expected: u16,
        /// `e_machine` found in the file.
        found: u16,
    },
    /// The object's class (32- or 64-bit) is not the pointer width of the registry's extensions: e.g. an
    /// RV64 object on RV32 firmware, which would link but not run.
    WrongClass {
        /// Bits of the registry's pointers.
        expected: u8,
        /// Bits of the object's (or context's) pointers.
        found: u8,
    },
    /// The object passes floating-point values by another convention than the registry's code: e.g. a
    /// `-mfloat-abi=soft` object for a hard-float firmware. GNU `ld` refuses to link the two as well.
    FloatAbi {
        /// `e_machine` of the object.
        machine: u16,
        /// 32 or 64: the object's class.
        bits: u8,
        /// The registry's convention ([`Registry::set_float_abi`](crate::Registry::set_float_abi)).
        expected: crate::arch::FloatAbi,
        /// The object's, from its `e_flags`.
        found: crate::arch::FloatAbi,
    },
    /// The object holds A32 (Arm-state) code, which a Cortex-M cannot run: e.g. `arm-none-eabi-gcc -c`
    /// without `-mthumb -mcpu=...` (its default is A32). Refused where the registry runs Thumb code only
    /// ([`Registry::set_thumb_only`](crate::Registry::set_thumb_only)).
    ArmState {
        /// The section that holds it.
        section: String,
    },
    /// The object's build attributes say it is for another Arm profile than a Cortex-M's (`A`, `R`, or `S`
    /// for either): it may use instructions M-profile cores lack. GNU `ld` refuses to link such a mix too.
    /// Refused where the registry runs Thumb code only, as [`Error::ArmState`].
    ArmProfile {
        /// The object's Tag_CPU_arch_profile.
        found: char,
    },
    /// The object's build attributes say it may use instructions the core lacks
    /// ([`Registry::set_isa`](crate::Registry::set_isa)): e.g. DSP or floating-point instructions of a
    /// `-mcpu=cortex-m4` object on a Cortex-M3, or F instructions of an `-march=rv32imafc` object on an
    /// `rv32imac` core. It would fault at the first one.
    Isa {
        /// What the object is built for, as a `-march`-like key ([`Isa::key`](crate::arch::Isa::key)).
        object: String,
        /// What the core runs, the same way.
        core: String,
        /// What the object may use that the core lacks ("the F extension", "a double-precision FPU").
        missing: String,
    },
    /// A section header is unusable.
    BadSection {
        /// Section index.
        index: usize,
        /// Section name (may be empty when the name itself is unreadable).
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A symbol table entry is unusable.
    BadSymbol {
        /// Symbol index.
        index: usize,
        /// Symbol name, when readable.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A relocation type the architecture backend does not implement.
    UnsupportedRelocation {
        /// Relocation type name (or `"unknown"`).
        kind: &'static str,
        /// Raw relocation type.
        r_type: u32,
        /// Section the relocation applies to.
        section: String,
        /// Offset inside that section.
        offset: u64,
    },
    /// A relocation whose computed value does not fit its field, or whose place is outside its section.
    BadRelocation {
        /// Relocation type name.
        kind: &'static str,
        /// Section the relocation applies to.
        section: String,
        /// Offset inside that section.
        offset: u64,
        /// Symbol the relocation refers to.
        symbol: String,
        /// The value that did not fit (0 when not applicable).
        value: i64,
        /// What is wrong, and advice where there is some.
        reason: &'static str,
    },
    /// A symbol is neither built in nor exported by a loaded extension.
    Undefined {
        /// The extension being loaded.
        extension: String,
        /// The missing symbol.
        symbol: String,
        /// A loaded extension that defines the symbol without exporting it (the likely mistake: its
        /// definition lacks `LLEXT_EXPORT`, or Rust's `export!`).
        defined_by: Option<String>,
    },
    /// An extension exports a name that is already exported (by the firmware or another extension).
    DuplicateExport {
        /// The extension being loaded.
        extension: String,
        /// The name exported twice.
        symbol: String,
        /// Who exports it already: `the built-in export table` (the program's or firmware's own exports),
        /// ``extension `NAME` ``, or ``the same extension (`NAME`)`` (it lists the name twice).
        owner: String,
    },
    /// The `.exported_sym` table of an extension is malformed.
    BadExportTable {
        /// The extension being loaded.
        extension: String,
        /// Entry index.
        entry: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The last entry of an [`Error::Link`] list that stopped at its cap: there were more problems.
    TooManyProblems {
        /// How many problems the list holds before this entry.
        listed: usize,
    },
    /// Several problems found while linking one extension (every one is listed, up to a cap).
    Link {
        /// The extension being loaded.
        extension: String,
        /// Each problem, in file order.
        problems: Vec<Error>,
    },
    /// The memory provider could not satisfy an allocation.
    OutOfMemory {
        /// Requested size in bytes.
        size: usize,
        /// Requested alignment in bytes.
        align: usize,
    },
    /// The memory provider failed to change protections or release memory.
    Memory {
        /// What the provider was doing.
        what: &'static str,
        /// OS error number, or 0.
        code: i32,
    },
    /// A configured limit was exceeded.
    Limit {
        /// Which limit.
        what: &'static str,
        /// The limit.
        limit: u64,
        /// The value found.
        value: u64,
    },
    /// An extension name is empty, too long or contains a NUL byte.
    BadName {
        /// The rejected name.
        name: String,
    },
    /// No extension with that name or handle is loaded.
    NotLoaded {
        /// The name (or `"#index"` for a stale handle).
        name: String,
    },
    /// No such symbol in the loaded extensions.
    NoSuchSymbol {
        /// The symbol asked for.
        symbol: String,
    },
    /// The symbol asked for is at address 0: an undefined weak symbol an extension exports, say. There is
    /// nothing to call.
    NullSymbol {
        /// The symbol asked for.
        symbol: String,
    },
    /// This build of llext has no relocation backend for the machine and pointer width (see
    /// [`arch::linked_backends`](crate::arch::linked_backends)).
    NoBackend {
        /// The `e_machine` asked for.
        machine: u16,
        /// The pointer width asked for, in bits.
        bits: u8,
    },
    /// The symbol asked for lies in an extension's data (a block without execute permission): calling it
    /// would crash.
    NotCode {
        /// The symbol asked for.
        symbol: String,
    },
    /// The extension cannot be unloaded: other loaded extensions depend on it.
    InUse {
        /// The extension asked to unload.
        extension: String,
        /// Names of the extensions that depend on it.
        dependents: Vec<String>,
    },
    /// The extension's constructors or destructors are running (they run outside the registry's lock, so
    /// they may call back into it): it cannot be unloaded or saved until they return.
    Busy {
        /// The extension.
        extension: String,
        /// What is running: `"constructors"` or `"destructors"`.
        running: &'static str,
    },
    /// A call into extensions of a registry made for another machine
    /// ([`Registry::for_machine`](crate::Registry::for_machine)), whose code cannot run in this program.
    ForeignCode {
        /// `e_machine` of the registry's extensions.
        machine: u16,
    },
    /// Too many call arguments.
    TooManyArguments {
        /// Number given.
        given: usize,
        /// Maximum accepted.
        max: usize,
    },
    /// A call argument does not fit the target's C `long`.
    ArgumentRange {
        /// Argument position (0-based).
        index: usize,
        /// The value given.
        value: i64,
    },
    /// An I/O error while reading an extension (host only).
    Io {
        /// What was being read.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// A saved context is malformed: bad magic, truncated, inconsistent, or its checksum does not match.
    Snapshot {
        /// What is wrong.
        reason: &'static str,
    },
    /// A saved context was written by another format version.
    SnapshotVersion {
        /// Version found.
        found: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// A saved context was made for another machine, pointer width or set of built-in symbols.
    SnapshotMismatch {
        /// What differs.
        what: &'static str,
        /// Value this registry has.
        expected: u64,
        /// Value in the context.
        found: u64,
    },
    /// A saved extension whose object this registry's core cannot run: it needs instructions the core
    /// lacks, passes floats another way, or holds A32 code or was built for another Arm profile where only
    /// Thumb code of the M-profile runs. A restore reads no ELF file, so its record says what a load read
    /// from the object, and the restore makes the load's checks with it. Nothing was changed.
    SnapshotCore {
        /// The saved extension.
        extension: String,
        /// What differs: `"instruction set"`, `"floating-point calling convention"`, `"Arm code"` or
        /// `"Arm profile"`.
        what: &'static str,
        /// What its object needs: an ISA key, a calling convention's key, A32 code, another Arm profile.
        needs: String,
        /// What this registry's core has (for an instruction set, with what it lacks).
        here: String,
    },
    /// A saved extension depends on an extension that is not in the context.
    SnapshotDependency {
        /// The dependent extension.
        extension: String,
        /// The dependency's index in the context.
        index: u32,
    },
    /// A restored extension needs a built-in symbol the firmware no longer exports.
    MissingBuiltin {
        /// The extension.
        extension: String,
        /// The symbol.
        symbol: String,
    },
    /// A portable restore put an extension's blocks where an address its code or data holds no longer fits
    /// the field that holds it (a 32-bit absolute address above 4 GiB, a PC-relative reference beyond its
    /// reach): the context is sound, but not restorable at these addresses.
    SnapshotReach {
        /// The extension.
        extension: String,
        /// What does not fit, and what to do about it.
        reason: &'static str,
    },
    /// An extension of that name is already loaded.
    AlreadyLoaded {
        /// The name.
        name: String,
    },
    /// A retained block, or the bytes of a block a portable context carries, no longer holds what was saved
    /// (storage an extension used in place: [`Error::StorageChanged`]). An in-place context refused so
    /// gives its retained blocks back with [`Registry::discard`](crate::Registry::discard).
    ContentChanged {
        /// The extension.
        extension: String,
        /// Its block index.
        block: usize,
        /// The block's permission.
        permission: crate::memory::Permission,
        /// Where the block was when saved.
        addr: u64,
    },
    /// [`Registry::restore_static`](crate::Registry::restore_static): storage an extension used sections
    /// from in place ([`Storage::InPlace`](crate::Storage::InPlace)) no longer holds what it held when the
    /// context was saved with content hashes (an update rewrote it). Nothing was changed; the context's
    /// retained blocks go back with [`Registry::discard`](crate::Registry::discard).
    StorageChanged {
        /// The extension.
        extension: String,
        /// The kind of the region used in place there.
        kind: crate::RegionKind,
        /// Where the region lies in the storage.
        addr: u64,
    },
    /// [`Registry::save_into`](crate::Registry::save_into) was given a buffer smaller than the context.
    BufferTooSmall {
        /// Bytes the context needs ([`Registry::context_size`](crate::Registry::context_size)).
        needed: usize,
        /// Bytes the buffer has.
        size: usize,
    },
    /// The extension was loaded without recording fixups, so it cannot go into a portable snapshot.
    NotPortable {
        /// The extension.
        extension: String,
    },
    /// The operation needs a cargo feature this build of llext was made without: `portable` for recording
    /// fixups at load ([`LoadOptions::portable`](crate::LoadOptions::portable)), saving a portable context
    /// ([`SaveOptions::portable`](crate::SaveOptions::portable)) and restoring one. Nothing was changed.
    FeatureDisabled {
        /// The cargo feature of the `llext` crate.
        feature: &'static str,
        /// What needed it, as a sentence fragment.
        what: &'static str,
    },
    /// In-place storage ([`Storage::InPlace`](crate::Storage::InPlace)) cannot be used as asked: loading
    /// from bytes that may not outlive the extension, saving an extension with sections in place into a
    /// portable context (which would have to carry bytes that are not the extension's to move), restoring
    /// a context of one with [`Registry::restore`](crate::Registry::restore) (which is given no storage),
    /// or with [`Registry::restore_static`](crate::Registry::restore_static) given storage that does not
    /// hold its in-place regions. Nothing was changed.
    InPlace {
        /// The extension.
        extension: String,
        /// What is wrong, and what to do instead.
        reason: &'static str,
    },
    /// A broken internal invariant: a bug in `llext`, not in the input.
    Internal(&'static str),
}

impl Error {
    pub(crate) fn malformed(what: &'static str) -> impl FnOnce(object::read::Error) -> Error {
        move |e| Error::Malformed { what, detail: e }
    }

    /// The problems this error stands for: itself, or each problem of a [`Error::Link`].
    pub fn problems(&self) -> &[Error] {
        match self {
            Error::Link { problems, .. } => problems,
            other => core::slice::from_ref(other),
        }
    }
}

/// [`Error::IntermediateCode`]'s `format` for clang's and rustc's bitcode objects.
pub(crate) const LLVM_BITCODE: &str = "LLVM bitcode";

/// What an undefined symbol of Rust's libraries is, for the hint after it: its name carries the hash of
/// the toolchain's crate, so a host cannot export it for extensions.
enum RustLibrary<'a> {
    /// A function of `core`, with its path when the mangled name spells a plain one
    /// (`core::str::converts::from_utf8`).
    Core(Option<RustPath<'a>>),
    /// `alloc`, or the allocator shims only a final link makes (`__rust_alloc`, ...).
    Alloc,
    /// Unwinding: Rust's personality routine, or the unwinder's `_Unwind_Resume`.
    Unwind,
}

/// Most components [`RustPath`] keeps; a deeper path is not spelt out.
const RUST_PATH_DEPTH: usize = 8;

/// The components of a plainly mangled Rust path, crate first.
struct RustPath<'a> {
    parts: [&'a [u8]; RUST_PATH_DEPTH],
    len: usize,
}

impl<'a> RustPath<'a> {
    fn parts(&self) -> &[&'a [u8]] {
        self.parts.get(..self.len).unwrap_or_default()
    }

    #[cfg(feature = "std")]
    fn push(&mut self, part: &'a [u8]) -> Option<()> {
        *self.parts.get_mut(self.len)? = part;
        self.len += 1;
        Some(())
    }

    /// Whether it is one of the functions panics and formatting reach (`core::panicking::panic_fmt`,
    /// `core::option::expect_failed`, `core::slice::index::slice_index_fail`, `core::fmt::write`, ...).
    fn panics_or_formats(&self) -> bool {
        let has = |part: &[u8], word: &[u8]| part.windows(word.len()).any(|w| w == word);
        self.parts()
            .iter()
            .any(|p| has(p, b"panic") || has(p, b"fail") || *p == b"fmt")
    }
}

impl fmt::Display for RustPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.parts().iter().enumerate() {
            if i > 0 {
                f.write_str("::")?;
            }
            for &c in *part {
                f.write_char(char::from(c))?;
            }
        }
        Ok(())
    }
}

/// A decimal length, then an identifier of that many ASCII letters, digits and `_`, and the rest after it.
/// In a `v0` name a `_` after the length separates it from an identifier that starts with `_` or a digit.
#[cfg(feature = "std")]
fn rust_identifier(s: &[u8], v0: bool) -> Option<(&[u8], &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut len = 0usize;
    for &d in s.get(..digits).filter(|d| !d.is_empty())? {
        len = len.checked_mul(10)?.checked_add(usize::from(d - b'0'))?;
    }
    let s = s.get(digits..)?;
    let s = match s {
        [b'_', rest @ ..] if v0 => rest,
        _ => s,
    };
    let ident = s.get(..len).filter(|i| !i.is_empty())?;
    ident
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .then_some((ident, s.get(len..)?))
}

/// The path of a v0 (`_RNvNtCs..._4core3str9from_utf8`) or legacy (`_ZN4core3str9from_utf817h...E`)
/// mangled name made only of modules and items; `None` for anything else (impls, generics, back
/// references, Punycode). Hosts only (the `std` feature): firmware keeps the flash, and its hint the
/// general advice.
#[cfg(not(feature = "std"))]
fn rust_path(_: &[u8]) -> Option<RustPath<'_>> {
    None
}

#[cfg(feature = "std")]
fn rust_path(name: &[u8]) -> Option<RustPath<'_>> {
    let mut path = RustPath {
        parts: [&[]; RUST_PATH_DEPTH],
        len: 0,
    };
    if let Some(mut rest) = name.strip_prefix(b"_R") {
        // `N` and a namespace letter per nested item, then the crate root `C`, then their identifiers.
        let mut depth = 0;
        while let [b'N', ns, tail @ ..] = rest {
            if !ns.is_ascii_alphabetic() {
                return None;
            }
            depth += 1;
            rest = tail;
        }
        rest = rest.strip_prefix(b"C")?;
        // The crate's disambiguator, `s<base 62>_`.
        if let [b's', tail @ ..] = rest {
            rest = tail.get(tail.iter().position(|&c| c == b'_')? + 1..)?;
        }
        for _ in 0..=depth {
            let (ident, tail) = rust_identifier(rest, true)?;
            path.push(ident)?;
            rest = tail;
        }
        return Some(path);
    }
    if !legacy_rust_hash(name) {
        return None;
    }
    let mut rest = name.strip_prefix(b"_ZN")?;
    while !rest.starts_with(b"E") {
        let (ident, tail) = rust_identifier(rest, false)?;
        path.push(ident)?;
        rest = tail;
    }
    // The last component is the hash, `h` and 16 hexadecimal digits.
    let hash = |p: &&[u8]| p.len() == 17 && p.first() == Some(&b'h');
    if path.parts().last().is_some_and(hash) {
        path.len -= 1;
    }
    Some(path)
}

/// Whether a legacy (`_ZN...E`) mangled name ends in Rust's hash component, `17h` and 16 hexadecimal
/// digits: a C++ name in a namespace `core` or `alloc` has none.
fn legacy_rust_hash(name: &[u8]) -> bool {
    // `17h`, 16 digits, `E`: the last 20 bytes.
    name.len()
        .checked_sub(20)
        .and_then(|at| name.get(at..))
        .is_some_and(|t| {
            t.starts_with(b"17h")
                && t.ends_with(b"E")
                && t.get(3..19)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        })
}

/// What the undefined symbol `name` is of Rust's libraries, if it is. (Byte searches: `str::contains`
/// would bring a string searcher into firmware.)
fn rust_library(name: &str) -> Option<RustLibrary<'_>> {
    let bytes = name.as_bytes();
    if bytes == b"rust_eh_personality" || bytes == b"_Unwind_Resume" {
        return Some(RustLibrary::Unwind);
    }
    let has = |word: &[u8]| bytes.windows(word.len()).any(|w| w == word);
    let path = rust_path(bytes);
    match path.as_ref().and_then(|p| p.parts().first()) {
        Some(&b"core") => return Some(RustLibrary::Core(path)),
        Some(&b"alloc") => return Some(RustLibrary::Alloc),
        Some(&b"__rustc") if has(b"alloc") => return Some(RustLibrary::Alloc),
        _ => {}
    }
    if bytes.starts_with(b"__rust_") && has(b"alloc") {
        Some(RustLibrary::Alloc)
    } else if (bytes.starts_with(b"_ZN4core") && legacy_rust_hash(bytes))
        || (bytes.starts_with(b"_R") && has(b"_4core"))
    {
        Some(RustLibrary::Core(None))
    } else {
        None
    }
}

/// Advice for an undefined symbol that no host offers C code: the process-ending functions
/// `LIBC_EXPORTS` leaves out on purpose, and the runtimes of compiler flags that instrument code
/// (sanitizers, coverage, `-pg`, split stacks, external retpoline thunks), which a trial of real libraries
/// met as bare "undefined symbol" errors.
///
/// Built with `std` only: about 1 KB of text a firmware would carry for messages `llext check` gives on
/// the host (which links objects for a device too).
#[cfg(feature = "std")]
fn c_runtime_hint(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    let any_prefix = |prefixes: &[&[u8]]| prefixes.iter().any(|p| bytes.starts_with(p));
    match bytes {
        b"exit" | b"_exit" | b"_Exit" | b"quick_exit" | b"atexit" | b"at_quick_exit" | b"on_exit" => {
            Some(
                "a function that ends the process or runs after it, which a host does not offer by default: \
                 an extension must not end its host, nor leave a function to run after it may have been \
                 unloaded; return an error to the host instead, or build the library without the path \
                 that calls it",
            )
        }
        b"mcount" | b"_mcount" | b"__fentry__" => {
            Some("the profiling hook of `-pg`, which extensions do not get: build without `-pg`")
        }
        b"__morestack" => Some(
            "the stack-growing helper of `-fsplit-stack`, which extensions do not get: build without it",
        ),
        _ if any_prefix(&[b"__ubsan_", b"__asan_", b"__tsan_", b"__msan_", b"__sanitizer_"]) => Some(
            "a sanitizer's runtime, which extensions do not get: build without `-fsanitize=...`",
        ),
        _ if any_prefix(&[b"__gcov_", b"__llvm_profile_", b"__llvm_gcov_"]) => Some(
            "the coverage or profile runtime, which extensions do not get: build without `--coverage`, \
             `-fprofile-arcs` and `-fprofile-instr-generate`",
        ),
        _ if any_prefix(&[b"__x86_indirect_thunk_", b"__x86_return_thunk"]) => Some(
            "a retpoline thunk that `-mindirect-branch=thunk-extern` or `-mfunction-return=thunk-extern` \
             leaves to the program (a kernel has them): build with `=thunk` (thunks in the object) or \
             without those flags",
        ),
        _ => None,
    }
}

#[cfg(not(feature = "std"))]
fn c_runtime_hint(_: &str) -> Option<&'static str> {
    None
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotElf => f.write_str("not an ELF file (bad magic or too short)"),
            Error::Archive => f.write_str(
                "an `ar` archive (a static library, or a Rust rlib or staticlib), not an object: take the \
                 extension's object out with `ar x` (of a Rust staticlib, its `<crate>-*.rcgu.o` member), or \
                 build an object (`rustc --emit obj`, `cc -c`)",
            ),
            Error::IntermediateCode { format } => {
                write!(
                    f,
                    "the file holds {format} for link-time optimisation, not machine code: build it \
                     without -flto (or, with GCC, add -ffat-lto-objects)"
                )?;
                // rustc writes bitcode objects too: cargo passes `-C linker-plugin-lto` to a `lib` crate
                // built in a profile with `lto`.
                if *format == LLVM_BITCODE {
                    f.write_str(
                        "; from rustc, without -C linker-plugin-lto, which cargo passes to a `lib` crate \
                         in a profile with `lto` (set `lto = false` for `cargo rustc -- --emit obj`)",
                    )?;
                }
                Ok(())
            }
            Error::Malformed { what, detail } => write!(f, "malformed ELF {what}: {detail}"),
            Error::Unsupported { what, value } => write!(f, "unsupported {what} ({value:#x})"),
            Error::WrongMachine { expected, found } => write!(
                f,
                "built for machine {} ({found}), but this loader runs {} ({expected})",
                crate::arch::machine_name(*found),
                crate::arch::machine_name(*expected)
            ),
            Error::ForeignCode { machine } => write!(
                f,
                "cannot run code built for machine {} ({machine}) in this program: a registry for another \
                 machine links, saves and restores its extensions but never runs them",
                crate::arch::machine_name(*machine)
            ),
            Error::WrongClass { expected, found } => write!(
                f,
                "built for {found}-bit code, but this registry holds {expected}-bit extensions"
            ),
            Error::FloatAbi {
                machine,
                bits,
                expected,
                found,
            } => write!(
                f,
                "built for the {found} calling convention, but the code it would link with (the program's, \
                 or the firmware's) uses the {expected} one: rebuild it with {}",
                expected.flag(*machine, *bits)
            ),
            Error::ArmState { section } => write!(
                f,
                "section `{section}` holds A32 (Arm-state) code, which M-profile cores (Cortex-M) cannot run: \
                 rebuild it with -mthumb and the core's -mcpu"
            ),
            Error::ArmProfile { found } => write!(
                f,
                "built for the Arm {found}-profile, but this code runs on an M-profile core (Cortex-M): \
                 rebuild it with the core's -mcpu (e.g. -mcpu=cortex-m4 -mthumb)"
            ),
            Error::Isa {
                object,
                core,
                missing,
            } => {
                write!(
                    f,
                    "built for {object}, so it may use {missing}, which this core ({core}) lacks: rebuild it \
                     for the core (-march={core}"
                )?;
                // RISC-V compilers take the ISA string alone; Arm ones name a core and its FPU too.
                if core.starts_with("arm") {
                    f.write_str(", or its -mcpu and -mfpu")?;
                }
                f.write_str(")")
            }
            Error::BadSection {
                index,
                name,
                reason,
            } => write!(f, "section {index} `{name}`: {reason}"),
            Error::BadSymbol {
                index,
                name,
                reason,
            } => write!(f, "symbol {index} `{name}`: {reason}"),
            Error::UnsupportedRelocation {
                kind,
                r_type,
                section,
                offset,
            } => write!(
                f,
                "unsupported relocation {kind} (type {r_type}) at {section}+{offset:#x}"
            ),
            Error::BadRelocation {
                kind,
                section,
                offset,
                symbol,
                value,
                reason,
            } => write!(
                f,
                "relocation {kind} at {section}+{offset:#x} against `{symbol}`: {reason} (value {value:#x})"
            ),
            Error::Undefined {
                extension,
                symbol,
                defined_by,
            } => {
                write!(f, "undefined symbol `{symbol}` in extension `{extension}`")?;
                if let Some(definer) = defined_by {
                    write!(
                        f,
                        " (extension `{definer}` defines it but does not export it: mark its \
                         definition with `LLEXT_EXPORT` in C or `export!` in Rust)"
                    )?;
                }
                match rust_library(symbol) {
                    Some(RustLibrary::Core(Some(path))) if !path.panics_or_formats() => write!(
                        f,
                        " (Rust's `core`, which no host can offer: `{path}` is one of its functions, \
                         which the extension calls and does not contain; write the extension without \
                         it, as bundling `core` into an extension is not supported)"
                    ),
                    Some(RustLibrary::Core(path)) => {
                        f.write_str(
                            " (Rust's `core`, which no host can offer: build the extension with opt-level \
                             1 or more, without debug assertions and overflow checks (`-C \
                             debug-assertions=off -C overflow-checks=off`; cargo's dev profile turns them \
                             on), and without paths that can panic or format",
                        )?;
                        match path {
                            Some(path) => write!(f, ": `{path}` is one)"),
                            None => f.write_str(")"),
                        }
                    }
                    Some(RustLibrary::Alloc) => f.write_str(
                        " (Rust's `alloc`, which no host can offer: an extension cannot use `alloc` \
                         (`Vec`, `Box`, `String`), whose global allocator only a final link provides; \
                         call the host's `malloc` and `free` instead)",
                    ),
                    Some(RustLibrary::Unwind) => f.write_str(
                        " (unwinding, which extensions do not do: build a Rust extension with `-C \
                         panic=abort` (`panic = \"abort\"` in its cargo profile), a C++ one with \
                         `-fno-exceptions`)",
                    ),
                    None => match c_runtime_hint(symbol) {
                        Some(hint) => write!(f, " ({hint})"),
                        None => Ok(()),
                    },
                }
            }
            Error::DuplicateExport {
                extension,
                symbol,
                owner,
            } => write!(
                f,
                "extension `{extension}` exports `{symbol}`, which {owner} already exports"
            ),
            Error::BadExportTable {
                extension,
                entry,
                reason,
            } => write!(
                f,
                "extension `{extension}`: .exported_sym entry {entry}: {reason}"
            ),
            Error::TooManyProblems { listed } => {
                write!(f, "more problems: the load stopped after the first {listed}")
            }
            Error::Link {
                extension,
                problems,
            } => {
                let n = problems
                    .iter()
                    .filter(|p| !matches!(p, Error::TooManyProblems { .. }))
                    .count();
                write!(
                    f,
                    "cannot link extension `{extension}`: {n} problem{}",
                    if n == 1 { "" } else { "s" }
                )?;
                for p in problems {
                    write!(f, "; {p}")?;
                }
                Ok(())
            }
            Error::OutOfMemory { size, align } => {
                write!(f, "out of memory allocating {size} bytes aligned to {align}")
            }
            Error::Memory { what, code: 0 } => write!(f, "memory provider failed to {what}"),
            Error::Memory { what, code } => write!(f, "memory provider failed to {what} (os error {code})"),
            Error::Limit { what, limit, value } => {
                write!(f, "{what} is {value}, over the limit of {limit}")
            }
            Error::BadName { name } => {
                // A name refused for its length can be long: show its start only, control characters as
                // `?` (without `escape_debug`, whose Unicode tables would cost a firmware kilobytes).
                f.write_str("invalid extension name `")?;
                let mut shown = 0;
                for c in name.chars().take(40) {
                    f.write_char(if c.is_control() { '?' } else { c })?;
                    shown += c.len_utf8();
                }
                let more = if shown < name.len() { "…" } else { "" };
                write!(
                    f,
                    "{more}` ({} bytes): a name is 1 to 255 bytes, without NUL",
                    name.len()
                )
            }
            Error::NotLoaded { name } => write!(f, "no extension `{name}` is loaded"),
            Error::NoSuchSymbol { symbol } => {
                write!(f, "symbol `{symbol}` not found in any loaded extension")
            }
            Error::NoBackend { machine, bits } => {
                write!(
                    f,
                    "no relocation backend for {bits}-bit {} ({machine}) objects in this build; it links",
                    crate::arch::machine_name(*machine)
                )?;
                let mut none = true;
                for (i, name) in crate::arch::linked_backends().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    f.write_str(name)?;
                    none = false;
                }
                if none {
                    f.write_str(" none")?;
                }
                Ok(())
            }
            Error::NotCode { symbol } => write!(
                f,
                "symbol `{symbol}` is data (in an extension block without execute permission), not a \
                 function: nothing to call"
            ),
            Error::NullSymbol { symbol } => write!(
                f,
                "symbol `{symbol}` is at address 0 (an undefined weak symbol?): nothing to call"
            ),
            Error::Busy { extension, running } => write!(
                f,
                "cannot unload or save `{extension}` while its {running} run"
            ),
            Error::InUse {
                extension,
                dependents,
            } => {
                write!(f, "cannot unload `{extension}`: still used by ")?;
                for (i, d) in dependents.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{d}`")?;
                }
                Ok(())
            }
            Error::TooManyArguments { given, max } => {
                write!(f, "{given} call arguments given, at most {max} are supported")
            }
            Error::ArgumentRange { index, value } => write!(
                f,
                "call argument {index} ({value}) does not fit this target's C `long`"
            ),
            Error::Io { path, message } => write!(f, "{path}: {message}"),
            Error::Snapshot { reason } => write!(f, "invalid saved context: {reason}"),
            Error::SnapshotVersion { found, supported } => write!(
                f,
                "saved context has format version {found}, this build reads version {supported}"
            ),
            // Machines by name and widths in bits: a context of another machine is what a build host
            // that links a device's extensions makes, and `0xf3`/`0x3e` told its user nothing.
            Error::SnapshotMismatch {
                what: "machine",
                expected,
                found,
            } => {
                let name = |m: &u64| u16::try_from(*m).map_or("unknown", crate::arch::machine_name);
                write!(
                    f,
                    "saved context is for another machine: {} ({found}), and this registry holds {} \
                     ({expected}) extensions",
                    name(found),
                    name(expected)
                )
            }
            Error::SnapshotMismatch {
                what: "pointer width",
                expected,
                found,
            } => write!(
                f,
                "saved context is for another pointer width: {}-bit extensions, and this registry holds \
                 {}-bit ones",
                found.saturating_mul(8),
                expected.saturating_mul(8)
            ),
            Error::SnapshotMismatch {
                what,
                expected,
                found,
            } => write!(
                f,
                "saved context is for another {what} (context {found:#x}, here {expected:#x})"
            ),
            Error::SnapshotCore {
                extension,
                what,
                needs,
                here,
            } => write!(
                f,
                "saved extension `{extension}` was built for a core whose {what} is {needs}, and here it \
                 is {here}: its code may not run here"
            ),
            Error::SnapshotDependency { extension, index } => write!(
                f,
                "saved extension `{extension}` depends on entry {index}, which is not in the context"
            ),
            Error::MissingBuiltin { extension, symbol } => write!(
                f,
                "saved extension `{extension}` needs built-in symbol `{symbol}`, which this registry does not \
                 export"
            ),
            Error::AlreadyLoaded { name } => write!(f, "an extension named `{name}` is already loaded"),
            Error::ContentChanged {
                extension,
                block,
                permission,
                addr,
            } => write!(
                f,
                "memory of extension `{extension}` (block {block}: {}, saved at {addr:#x}) changed since \
                 the context was saved",
                permission.as_str()
            ),
            Error::StorageChanged {
                extension,
                kind,
                addr,
            } => write!(
                f,
                "storage of extension `{extension}` changed since the context was saved (its {} used in \
                 place at {addr:#x}): load the extension again instead of restoring it",
                kind.as_str()
            ),
            Error::BufferTooSmall { needed, size } => write!(
                f,
                "buffer of {size} bytes too small to save the context into: it needs {needed} \
                 (`context_size`)"
            ),
            Error::NotPortable { extension } => write!(
                f,
                "extension `{extension}` was loaded without fixup records and cannot be saved portably"
            ),
            Error::SnapshotReach { extension, reason } => write!(
                f,
                "cannot restore extension `{extension}` at its new addresses: {reason}"
            ),
            Error::FeatureDisabled { feature, what } => write!(
                f,
                "llext was built without its `{feature}` feature, which {what} needs (enable it in the \
                 `llext` dependency's `features`)"
            ),
            Error::InPlace { extension, reason } => {
                write!(f, "extension `{extension}` with in-place storage: {reason}")
            }
            Error::Internal(what) => write!(f, "internal error in llext (please report): {what}"),
        }
    }
}

impl core::error::Error for Error {}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
