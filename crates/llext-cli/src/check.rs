//! `llext check`: load and link without running anything, and report every problem.
//!
//! Objects for the machine the command runs on are checked against the C library functions it offers, as
//! `run` would load them. Objects for another machine (the first file decides) — or any, with
//! `--exports FILE` — are checked by a registry for that machine over a scratch arena, against the symbols
//! the firmware exports: read from its ELF image, or from a text list. The arena lies where `--at` says, or
//! just past the RAM of the firmware's ELF image, so that every reach (a branch, a PC-relative or an absolute
//! address) is checked as on the device. Nothing is ever run. With `--libc`, objects of this machine are checked
//! against a host program's exports (`--exports`) and the C library's together.

use llext::arch::{FloatAbi, Isa};
use llext::{ArenaMemory, Export, ExportTable, HostMemory, Memory, Registry};

use crate::{context_hint, count, read_file, render_problems, unique_name, Failure};

/// Bytes of the scratch arena foreign objects are linked into.
const ARENA_BYTES: usize = 16 << 20;

pub(crate) fn check(args: &[String]) -> Result<(), Failure> {
    let mut exports = None;
    let mut at = None;
    let mut libc = false;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--exports" => {
                let file = it
                    .next()
                    .ok_or(Failure("--exports needs a file name".into()))?;
                if exports.replace(file.as_str()).is_some() {
                    return Err(Failure("--exports is given twice".into()));
                }
            }
            "--libc" => {
                if std::mem::replace(&mut libc, true) {
                    return Err(Failure("--libc is given twice".into()));
                }
            }
            "--at" => {
                let text = it.next().ok_or(Failure("--at needs an address".into()))?;
                if at.replace(parse_address(text)?).is_some() {
                    return Err(Failure("--at is given twice".into()));
                }
            }
            "--" => files.extend(it.by_ref().map(String::as_str)),
            s if s.starts_with("--") => return Err(Failure(format!("unknown option `{s}`"))),
            _ => files.push(a.as_str()),
        }
    }
    if files.is_empty() {
        return Err(Failure("check needs at least one FILE".into()));
    }
    let native = llext::arch::native_machine();
    if exports.is_none() && at.is_none() && Some(objects_machine(&files).0) == native {
        let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
        return check_files(&registry, &files);
    }
    with_firmware_registry(exports, at, libc, &files, |registry| {
        check_files(registry, &files)
    })
}

/// The machine and class of the first of `files` that reads and parses (the loads report why the others
/// do not), if one does; else this host's, 64-bit.
fn objects_machine(files: &[&str]) -> (u16, u8, bool) {
    let first = files.iter().find_map(|file| {
        let report = llext::inspect::inspect(&read_file(file).ok()?).ok()?;
        Some((report.machine, report.class_bits))
    });
    match first {
        Some((machine, bits)) => (machine, bits, true),
        None => (llext::arch::native_machine().unwrap_or(0), 64, false),
    }
}

/// Calls `f` with a registry for the machine of `files` over a scratch arena, linking against the
/// firmware's exports (`exports`: its ELF image or a text list; with `libc`, this host's C library too)
/// and checking objects against the core the list describes, as on the device: the arena lies at `at`, or
/// where the list says, or just past the firmware image's RAM. Nothing is ever run.
pub(crate) fn with_firmware_registry<R>(
    exports: Option<&str>,
    at: Option<u64>,
    libc: bool,
    files: &[&str],
    f: impl FnOnce(&Registry<ArenaMemory<'_>>) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let native = llext::arch::native_machine();
    let (machine, bits, parsed) = objects_machine(files);
    if libc && Some(machine) != native {
        return Err(Failure(format!(
            "--libc offers this host's C library, which {} objects cannot call",
            llext::arch::machine_name(machine)
        )));
    }
    let listed = exports.map(read_export_list).transpose()?;
    // Where the extensions go: as given, or as the list says, else just past the firmware image's RAM
    // (where its heap or arena would be), so that every reach is what it is on the device; else anywhere
    // low.
    let at = match (at.or(listed.as_ref().and_then(|l| l.at)), listed.as_ref().and_then(|l| l.ram_end)) {
        (Some(at), _) => Some(at),
        (None, Some(end)) => Some(
            end.max(MIN_ADDRESS)
                .checked_next_multiple_of(ALIGN)
                .ok_or_else(|| {
                    Failure(format!(
                        "the firmware image's RAM ends at {end:#x}, too high for a scratch arena past it: \
                         give its address with --at"
                    ))
                })?,
        ),
        (None, None) => None,
    };
    let mut arena = ScratchArena::new(ARENA_BYTES, at)?;
    if bits == 32 && arena.end() > 1 << 32 {
        return Err(Failure(match at {
            Some(at) => format!(
                "the scratch arena at {at:#x} ends above 4 GiB, out of reach of 32-bit objects: give \
                 another address with --at"
            ),
            None => "cannot map a scratch arena below 4 GiB for 32-bit objects on this host".into(),
        }));
    }
    // Names listed without an address are placed just past the arena, within reach of its code.
    let past_arena = arena.end();
    let image = listed.as_ref().and_then(|l| l.image);
    let float_abi = listed.as_ref().and_then(|l| l.float_abi);
    let thumb_only = listed.as_ref().is_some_and(|l| l.thumb_only);
    let isa = listed.as_ref().and_then(|l| l.isa);
    // A list's convention must be one of the objects' machine (`vfp` is Arm's; `single`, `double` and
    // `quad` are RISC-V's), or every object would be refused with advice for the wrong machine. When no
    // file parses the objects' machine is unknown, and each file's own error is what to report (this
    // check and the instruction set's below named the list instead of a bitcode or damaged file).
    if let Some(abi) = float_abi.filter(|_| parsed) {
        const EM_ARM: u16 = 40;
        const EM_RISCV: u16 = 243;
        let fits = match machine {
            EM_ARM => matches!(abi, FloatAbi::Soft | FloatAbi::Vfp),
            EM_RISCV => abi != FloatAbi::Vfp,
            _ => true,
        };
        if !fits {
            return Err(Failure(format!(
                "{}: `# float-abi: {}` names no {} calling convention",
                exports.unwrap_or_default(),
                abi.key(),
                llext::arch::machine_name(machine)
            )));
        }
    }
    if let (Some(image), true) = (image, parsed) {
        if (image.machine, image.bits) != (machine, bits) {
            return Err(Failure(format!(
                "{}: the firmware image is {}-bit {}, the objects {}-bit {}",
                exports.unwrap_or_default(),
                image.bits,
                llext::arch::machine_name(image.machine),
                bits,
                llext::arch::machine_name(machine)
            )));
        }
    }
    if let Some(isa) = isa.filter(|isa| parsed && isa.machine() != machine) {
        return Err(Failure(format!(
            "{}: `# isa: {isa}` names no {} instruction set",
            exports.unwrap_or_default(),
            llext::arch::machine_name(machine)
        )));
    }
    let mut table = match (exports, listed) {
        (Some(path), Some(listed)) => {
            address_exports(path, listed.entries, machine, bits, past_arena)?
        }
        _ => Vec::new(),
    };
    // A host program's own exports beside the C library's (a listed name wins: it comes first).
    if libc {
        table.extend_from_slice(llext::LIBC_EXPORTS);
    }
    // Without `--exports`, objects of this machine link against the C library as everywhere else.
    let builtins = if exports.is_none() && Some(machine) == native {
        ExportTable::new(llext::LIBC_EXPORTS)
    } else {
        ExportTable::new(&table)
    };
    let registry = Registry::for_machine(ArenaMemory::new(arena.bytes()), builtins, machine);
    // Objects must pass floats as the firmware's code does, as far as its image or a list's
    // `# float-abi: KEY` line says; otherwise any convention is accepted.
    if exports.is_some() {
        registry.set_float_abi(float_abi);
        registry.set_thumb_only(thumb_only);
        registry.set_isa(isa);
    }
    f(&registry)
}

/// The lowest address `--at` defaults to (Linux refuses mappings below `vm.mmap_min_addr`, 64 KiB by
/// default), and the alignment of the arena's address.
const MIN_ADDRESS: u64 = 0x1_0000;
const ALIGN: u64 = 0x1_0000;

/// `--at`'s address: hexadecimal with `0x` or decimal, page-aligned, not 0.
pub(crate) fn parse_address(text: &str) -> Result<u64, Failure> {
    let value = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .map_err(|_| {
        Failure(format!(
            "--at `{text}`: expected an address (`0x` hexadecimal or decimal)"
        ))
    })?;
    if value == 0 || value % 4096 != 0 {
        return Err(Failure(format!(
            "--at {value:#x}: the address must be a non-zero multiple of 4096"
        )));
    }
    Ok(value)
}

/// Loads each file (constructors off), prints `ok: ...` or its problems, then unloads them all.
fn check_files<M: Memory>(registry: &Registry<M>, files: &[&str]) -> Result<(), Failure> {
    let options = llext::LoadOptions {
        bring_up: false,
        ..llext::LoadOptions::default()
    };
    let mut loaded = Vec::new();
    let mut failed = 0;
    // What the files that did not load would have exported, and which file: a later file's undefined
    // symbol among them is a consequence, not a problem of its own.
    let mut missing_exports: std::collections::HashMap<String, &str> = Default::default();
    for &file in files {
        let result = read_file(file)
            .map_err(|Failure(text)| Failure(format!("error: {text}\n")))
            .and_then(|bytes| {
                registry
                    .load_with(&unique_name(registry, file), &bytes, &options)
                    .map_err(|e| match context_hint(&bytes) {
                        Some(hint) => Failure(format!("error: {file}: {hint}\n")),
                        None => Failure(failure_with_notes(file, &bytes, &e, &mut missing_exports)),
                    })
            });
        match result {
            Ok(id) => {
                let info = registry.info(id)?;
                println!(
                    "ok: {file}: {} in {}, {}, {}",
                    count(info.memory, "byte"),
                    count(info.regions.len(), "region"),
                    count(
                        info.symbols.iter().filter(|s| s.exported).count(),
                        "exported symbol"
                    ),
                    count(info.dependencies.len(), "dependency")
                );
                // Loads, yet offers nothing: what a user trial's Rust object without `#[no_mangle]` did.
                if info.symbols.is_empty() {
                    println!(
                        "note: {file}: it defines no global symbol, so nothing in it can be called or linked \
                         against (in C, a function that is not `static`; in Rust, one with `#[no_mangle]` \
                         or `export!`)"
                    );
                }
                loaded.push(id);
            }
            Err(Failure(text)) => {
                failed += 1;
                eprint!("{text}");
            }
        }
    }
    for id in loaded.into_iter().rev() {
        registry.unload(id)?;
    }
    if failed > 0 {
        return Err(Failure(format!(
            "{failed} of {} files would not load",
            files.len()
        )));
    }
    Ok(())
}

/// The problems of `file`, which did not load, with a note for each undefined symbol an earlier file that
/// did not load either would have exported; then what `file` would have exported joins `missing`.
fn failure_with_notes<'f>(
    file: &'f str,
    bytes: &[u8],
    e: &llext::Error,
    missing: &mut std::collections::HashMap<String, &'f str>,
) -> String {
    let mut text = render_problems(file, e);
    for p in e.problems() {
        if let llext::Error::Undefined { symbol, .. } = p {
            if let Some(exporter) = missing.get(symbol) {
                text.push_str(&format!(
                    "note: {file}: `{symbol}` is exported by {exporter}, which did not load\n"
                ));
            }
        }
    }
    if let Ok(report) = llext::inspect::inspect(bytes) {
        for name in report.exported {
            missing.entry(name).or_insert(file);
        }
    }
    text
}

/// What `--exports` lists: names with their addresses if known and what a list line says they are, and for
/// an ELF image where its RAM ends.
struct ExportList {
    entries: Vec<(String, Option<u64>, Kind)>,
    /// The end of the image's highest writable segment.
    ram_end: Option<u64>,
    /// Where the firmware puts extensions: a text list's `# at: ADDR` line (what `--at` gives).
    at: Option<u64>,
    /// For an ELF image: its machine and class.
    image: Option<ImageHeader>,
    /// The firmware's floating-point calling convention: an image's header, or a text list's
    /// `# float-abi: KEY` line.
    float_abi: Option<FloatAbi>,
    /// The firmware runs Thumb code only (a Cortex-M): an image's Arm profile `M`, or a text list's
    /// `# thumb-only` line.
    thumb_only: bool,
    /// The instructions the firmware's core runs: an image's build attributes, or a text list's
    /// `# isa: KEY` line.
    isa: Option<Isa>,
}

/// What a text list's `NAME ADDRESS KIND` line says an export is (`Registry::write_export_list` writes the
/// kind on x86-64, where code built without `-fPIC` reaches a copy of an `Export::copyable` variable and
/// the stub of an `Export::function`); `Plain` for every other line and for an ELF image's symbols.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Function,
    Copyable,
}

/// What a firmware image's header says about the code it runs.
#[derive(Clone, Copy)]
struct ImageHeader {
    machine: u16,
    bits: u8,
    /// From its `e_flags`, or an Arm image's build attributes, if they say.
    float_abi: Option<FloatAbi>,
}

/// The firmware's exports: the defined symbols of an ELF image, or a text list with one symbol per
/// line — `NAME`, `NAME ADDRESS`, or `nm` output (`ADDRESS TYPE NAME`; undefined symbols are skipped),
/// addresses in hexadecimal.
fn read_export_list(path: &str) -> Result<ExportList, Failure> {
    let bytes = read_file(path)?;
    if bytes.starts_with(b"\x7fELF") {
        elf_exports(path, &bytes)
    } else {
        text_exports(path, &bytes)
    }
}

/// The export table of `listed`. Names without an address get distinct ones from `free` on (odd on Arm:
/// Thumb functions). On x86-64 a `function` is an `Export::function`, and a `copyable` an
/// `Export::copyable` of a zero of this process's (the loader reads the variable's value for the copy when
/// it links, and the address the list gives is another process's; only 64-bit references, which reach
/// anything, see it), as in the registry that wrote the list.
fn address_exports(
    path: &str,
    listed: Vec<(String, Option<u64>, Kind)>,
    machine: u16,
    bits: u8,
    free: u64,
) -> Result<Vec<Export>, Failure> {
    const EM_ARM: u16 = 40;
    const EM_X86_64: u16 = 62;
    let thumb = u64::from(machine == EM_ARM);
    let mut next = free;
    let mut table = Vec::with_capacity(listed.len());
    let mut seen = std::collections::HashSet::new();
    for (name, addr, kind) in listed {
        if !seen.insert(name.clone()) {
            return Err(Failure(format!("{path}: `{name}` is listed twice")));
        }
        let addr = addr.unwrap_or_else(|| {
            next += 16;
            next - 16 + thumb
        });
        if bits == 32 && addr > u64::from(u32::MAX) {
            return Err(Failure(format!(
                "{path}: `{name}`: address {addr:#x} does not fit the 32-bit objects"
            )));
        }
        let addr = usize::try_from(addr)
            .map_err(|_| Failure(format!("{path}: `{name}`: address {addr:#x} out of range")))?;
        table.push(match kind {
            Kind::Function if machine == EM_X86_64 => {
                Export::function(keep(name), addr as *const ())
            }
            // SAFETY: a zero that is never freed or written (`keep_zero`).
            Kind::Copyable if machine == EM_X86_64 => unsafe {
                Export::copyable(keep(name), keep_zero())
            },
            _ => Export::new(keep(name), addr as *const ()),
        });
    }
    Ok(table)
}

/// A pointer-sized zero for the rest of the process, reachable from a static as `keep`'s names are: the
/// value a `copyable` export of a list stands for.
fn keep_zero() -> *const () {
    static KEPT: std::sync::Mutex<Vec<&'static usize>> = std::sync::Mutex::new(Vec::new());
    let zero: &'static usize = Box::leak(Box::new(0));
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(zero);
    zero as *const usize as *const ()
}

/// Keeps an export's name for the rest of the process (an `Export` names a `&'static str`), reachable from a
/// static so that leak checkers do not report it.
fn keep(name: String) -> &'static str {
    static KEPT: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let name: &'static str = Box::leak(name.into_boxed_str());
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(name);
    name
}

fn elf_exports(path: &str, bytes: &[u8]) -> Result<ExportList, Failure> {
    use object::{Object, ObjectSegment, ObjectSymbol, SegmentFlags, SymbolKind};
    let file = object::File::parse(bytes).map_err(|e| Failure(format!("{path}: {e}")))?;
    let ram_end = file
        .segments()
        .filter(|s| {
            matches!(s.flags(), SegmentFlags::Elf { p_flags, .. } if p_flags.contains(object::elf::PF_W))
        })
        .filter_map(|s| s.address().checked_add(s.size()))
        .max();
    // Global symbols first; then local functions and objects, since a firmware's export table may offer
    // functions its image keeps local (the C library's `memset` in a Rust firmware). A superset, then:
    // the image does not say which symbols its export table holds. Name -> (a local, its address).
    let mut seen = std::collections::HashMap::new();
    let mut out = Vec::new();
    let mut ambiguous = std::collections::HashSet::new();
    for local in [false, true] {
        for s in file.symbols() {
            let wanted = match s.kind() {
                SymbolKind::Text | SymbolKind::Data => true,
                SymbolKind::Unknown => !local,
                _ => false,
            };
            if !s.is_definition() || s.is_local() != local || !wanted {
                continue;
            }
            let Ok(name) = s.name() else { continue };
            // Skip Arm mapping symbols (`$t`, `$d`) and assembler-local labels.
            if name.is_empty() || name.starts_with('$') || name.starts_with(".L") {
                continue;
            }
            match seen.get(name) {
                None => {
                    seen.insert(name, (local, s.address()));
                    out.push((name.to_owned(), Some(s.address()), Kind::Plain));
                }
                // Two locals of one name at two addresses (two files' `static` helpers): which one an
                // object means cannot be told, so neither is offered.
                Some(&(true, addr)) if addr != s.address() => {
                    ambiguous.insert(name);
                }
                Some(_) => {}
            }
        }
    }
    out.retain(|(name, ..)| !ambiguous.contains(name.as_str()));
    let image = image_header(bytes);
    if out.is_empty() {
        return Err(Failure(format!("{path}: no defined symbols")));
    }
    Ok(ExportList {
        entries: out,
        ram_end,
        at: None,
        image,
        float_abi: image.and_then(|i| i.float_abi),
        thumb_only: llext::arch::arm_profile(bytes) == Some('M'),
        isa: Isa::of_elf(bytes),
    })
}

/// The machine, class and floating-point calling convention of an ELF image, as `inspect` reads them.
fn image_header(bytes: &[u8]) -> Option<ImageHeader> {
    let report = llext::inspect::inspect(bytes).ok()?;
    Some(ImageHeader {
        machine: report.machine,
        bits: report.class_bits,
        float_abi: report.float_abi,
    })
}

/// A text list's entries, and what its comment lines say of the firmware (the test firmware's `exports`
/// output has them): `# float-abi: KEY` its floating-point calling convention, `# thumb-only` that it runs
/// Thumb code only, `# isa: KEY` the instructions its core runs, `# at: ADDR` where it puts extensions.
fn text_exports(path: &str, bytes: &[u8]) -> Result<ExportList, Failure> {
    let text = std::str::from_utf8(bytes).map_err(|_| Failure(format!("{path}: not text")))?;
    let mut float_abi = None;
    let mut thumb_only = false;
    let mut isa = None;
    let mut at = None;
    // Named or global entries, then `nm`'s local ones (lower-case type) where no other has the name:
    // several files of a firmware may each have a local of one name.
    let mut named = Vec::new();
    let mut local = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |what: &str| Failure(format!("{path}:{}: {what}", n + 1));
        if line.trim() == "# thumb-only" {
            thumb_only = true;
            continue;
        }
        if let Some(key) = line.trim().strip_prefix("# float-abi:") {
            let key = key.trim();
            float_abi = Some(FloatAbi::from_key(key).ok_or_else(|| {
                bad(&format!(
                    "unknown float ABI `{key}` (soft, vfp, single, double or quad)"
                ))
            })?);
            continue;
        }
        if let Some(text) = line.trim().strip_prefix("# at:") {
            at = Some(parse_address(text.trim()).map_err(|Failure(e)| bad(&e))?);
            continue;
        }
        if let Some(key) = line.trim().strip_prefix("# isa:") {
            let key = key.trim();
            isa = Some(Isa::from_key(key).ok_or_else(|| {
                bad(&format!(
                    "unknown instruction set `{key}` (e.g. rv32imac, rv64gc_zba, armv7e-m+fp, armv6-m)"
                ))
            })?);
            continue;
        }
        let words: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let is_type = |w: &str| w.len() == 1 && w.chars().all(|c| c.is_ascii_alphabetic());
        let address = |w: &str| -> Result<u64, Failure> {
            // Hexadecimal, with or without `0x` (nm prints it bare).
            let digits = w
                .strip_prefix("0x")
                .or_else(|| w.strip_prefix("0X"))
                .unwrap_or(w);
            u64::from_str_radix(digits, 16).map_err(|e| bad(&format!("bad address `{w}`: {e}")))
        };
        // Arm mapping symbols (`$t`, `$d`) and assembler-local labels name no function or object.
        let wanted = |name: &str| !name.starts_with('$') && !name.starts_with(".L");
        match words.as_slice() {
            [] => {}
            [name] => named.push(((*name).to_owned(), None, Kind::Plain)),
            // nm's undefined symbols (`U`, weak `w`/`v`, no address): not the firmware's to give. An
            // export of one of those names, at a `0x` address (as `Registry::write_export_list` writes
            // it), is the firmware's.
            ["U" | "w" | "v", name] if !name.starts_with("0x") && !name.starts_with("0X") => {}
            [name, addr] => named.push(((*name).to_owned(), Some(address(addr)?), Kind::Plain)),
            [addr, t, name] if is_type(t) => {
                if !wanted(name) {
                    continue;
                }
                let entry = ((*name).to_owned(), Some(address(addr)?), Kind::Plain);
                if t.chars().all(|c| c.is_ascii_lowercase()) {
                    local.push(entry);
                } else {
                    named.push(entry);
                }
            }
            [name, addr, kind @ ("function" | "copyable")] => {
                let kind = if *kind == "function" {
                    Kind::Function
                } else {
                    Kind::Copyable
                };
                named.push(((*name).to_owned(), Some(address(addr)?), kind));
            }
            _ => {
                return Err(bad(
                    "expected `NAME`, `NAME ADDRESS`, `NAME ADDRESS function|copyable` or \
                     `ADDRESS TYPE NAME`",
                ))
            }
        }
    }
    let mut seen: std::collections::HashSet<String> =
        named.iter().map(|(name, ..)| name.clone()).collect();
    // Two locals of one name at two addresses (two files' `static` helpers): which one an object means
    // cannot be told, so neither is offered (as for an ELF image).
    let mut first = std::collections::HashMap::new();
    let mut ambiguous = std::collections::HashSet::new();
    for (name, addr, _) in &local {
        if *first.entry(name.as_str()).or_insert(*addr) != *addr {
            ambiguous.insert(name.clone());
        }
    }
    for entry in local {
        if !ambiguous.contains(&entry.0) && seen.insert(entry.0.clone()) {
            named.push(entry);
        }
    }
    Ok(ExportList {
        entries: named,
        ram_end: None,
        at,
        image: None,
        float_abi,
        thumb_only,
        isa,
    })
}

/// Zeroed read-write memory for linking objects of another machine; nothing in it runs. Low in the address
/// space, so that 32-bit targets' addresses fit (checked by the caller).
struct ScratchArena {
    ptr: *mut u8,
    len: usize,
}

impl ScratchArena {
    /// `len` bytes at `at`, or low in the address space.
    fn new(len: usize, at: Option<u64>) -> Result<Self, Failure> {
        // x86-64 Linux maps below 2 GiB on request; elsewhere a low address is only a hint.
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        let (low, hint) = (libc::MAP_32BIT, 0usize);
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        let (low, hint) = (0, 0x1000_0000usize);
        // At a given address: never over an existing mapping (where the kernel does not know
        // MAP_FIXED_NOREPLACE it is a hint, and the address is checked below).
        let (flags, hint) = match at {
            Some(at) => (
                libc::MAP_FIXED_NOREPLACE,
                usize::try_from(at).map_err(|_| Failure(format!("--at {at:#x}: out of range")))?,
            ),
            None => (low, hint),
        };
        // SAFETY: a fresh anonymous private mapping, never replacing an existing one; no existing memory is
        // touched.
        let ptr = unsafe {
            libc::mmap(
                hint as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let error = std::io::Error::last_os_error();
            let at = at.map_or(String::new(), |at| {
                format!(" at {at:#x} (give another with --at)")
            });
            // MAP_FIXED_NOREPLACE fails with EEXIST where this program already has a mapping.
            let why = if error.raw_os_error() == Some(libc::EEXIST) {
                String::from("this program already uses that address range")
            } else {
                error.to_string()
            };
            return Err(Failure(format!(
                "cannot map a {len}-byte scratch arena{at}: {why}"
            )));
        }
        let arena = ScratchArena {
            ptr: ptr.cast(),
            len,
        };
        match at {
            Some(at) if arena.ptr as u64 != at => Err(Failure(format!(
                "cannot map a {len}-byte scratch arena at {at:#x}: the address is in use (give another with --at)"
            ))),
            _ => Ok(arena),
        }
    }

    fn end(&self) -> u64 {
        self.ptr as u64 + self.len as u64
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, and owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for ScratchArena {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; the registry borrowing it is gone.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
