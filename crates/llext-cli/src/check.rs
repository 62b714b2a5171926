//! `llext check`: load and link without running anything, and report every problem.
//!
//! Objects for the machine the command runs on are checked against the C library functions it offers, as
//! `run` would load them. Objects for another machine (the first file decides) — or any, with
//! `--exports FILE` — are checked by a registry for that machine over a scratch arena, against the symbols
//! the firmware exports: read from its ELF image, or from a text list. Nothing is ever run.

use llext::{ArenaMemory, Export, ExportTable, HostMemory, Memory, Registry};

use crate::{context_hint, count, read_file, render_problems, unique_name, Failure};

/// Bytes of the scratch arena foreign objects are linked into.
const ARENA_BYTES: usize = 16 << 20;

pub(crate) fn check(args: &[String]) -> Result<(), Failure> {
    let mut exports = None;
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
            "--" => files.extend(it.by_ref().map(String::as_str)),
            s if s.starts_with("--") => return Err(Failure(format!("unknown option `{s}`"))),
            _ => files.push(a.as_str()),
        }
    }
    if files.is_empty() {
        return Err(Failure("check needs at least one FILE".into()));
    }
    let native = llext::arch::native_machine();
    // The machine of the first file that reads and parses (the loads below report why the others do not).
    let (machine, bits) = files
        .iter()
        .find_map(|file| {
            let report = llext::inspect::inspect(&read_file(file).ok()?).ok()?;
            Some((report.machine, report.class_bits))
        })
        .unwrap_or((native.unwrap_or(0), 64));
    if exports.is_none() && Some(machine) == native {
        let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
        return check_files(&registry, &files);
    }
    let mut arena = ScratchArena::new(ARENA_BYTES)?;
    if bits == 32 && arena.end() > 1 << 32 {
        return Err(Failure(
            "cannot map a scratch arena below 4 GiB for 32-bit objects on this host".into(),
        ));
    }
    // Names listed without an address are placed just past the arena, within reach of its code.
    let past_arena = arena.end();
    let table = match exports {
        Some(path) => read_exports(path, machine, past_arena)?,
        None => Vec::new(),
    };
    let registry = Registry::for_machine(
        ArenaMemory::new(arena.bytes()),
        ExportTable::new(&table),
        machine,
    );
    check_files(&registry, &files)
}

/// Loads each file (constructors off), prints `ok: ...` or its problems, then unloads them all.
fn check_files<M: Memory>(registry: &Registry<M>, files: &[&str]) -> Result<(), Failure> {
    let options = llext::LoadOptions {
        bring_up: false,
        ..llext::LoadOptions::default()
    };
    let mut loaded = Vec::new();
    let mut failed = 0;
    for &file in files {
        let result = read_file(file)
            .map_err(|Failure(text)| Failure(format!("error: {text}\n")))
            .and_then(|bytes| {
                registry
                    .load_with(&unique_name(registry, file), &bytes, &options)
                    .map_err(|e| match context_hint(&bytes) {
                        Some(hint) => Failure(format!("error: {file}: {hint}\n")),
                        None => Failure(render_problems(file, &e)),
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

/// The firmware's exports: the defined symbols of an ELF image, or a text list with one symbol per
/// line — `NAME`, `NAME ADDRESS`, or `nm` output (`ADDRESS TYPE NAME`; undefined symbols are skipped),
/// addresses in hexadecimal.
/// Names without an address get distinct ones from `free` on (odd on Arm: Thumb functions).
fn read_exports(path: &str, machine: u16, free: u64) -> Result<Vec<Export>, Failure> {
    let bytes = read_file(path)?;
    let listed = if bytes.starts_with(b"\x7fELF") {
        elf_exports(path, &bytes)?
    } else {
        text_exports(path, &bytes)?
    };
    const EM_ARM: u16 = 40;
    let thumb = u64::from(machine == EM_ARM);
    let mut next = free;
    let mut table = Vec::with_capacity(listed.len());
    let mut seen = std::collections::HashSet::new();
    for (name, addr) in listed {
        if !seen.insert(name.clone()) {
            return Err(Failure(format!("{path}: `{name}` is listed twice")));
        }
        let addr = addr.unwrap_or_else(|| {
            next += 16;
            next - 16 + thumb
        });
        let addr = usize::try_from(addr)
            .map_err(|_| Failure(format!("{path}: `{name}`: address {addr:#x} out of range")))?;
        table.push(Export::new(keep(name), addr as *const ()));
    }
    Ok(table)
}

/// Keeps an export's name for the rest of the process (an `Export` names a `&'static str`), reachable from a
/// static so that leak checkers do not report it.
fn keep(name: String) -> &'static str {
    static KEPT: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let name: &'static str = Box::leak(name.into_boxed_str());
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(name);
    name
}

fn elf_exports(path: &str, bytes: &[u8]) -> Result<Vec<(String, Option<u64>)>, Failure> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let file = object::File::parse(bytes).map_err(|e| Failure(format!("{path}: {e}")))?;
    // Global symbols first; then local functions and objects, since a firmware's export table may offer
    // functions its image keeps local (the C library's `memset` in a Rust firmware). A superset, then:
    // the image does not say which symbols its export table holds.
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
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
            if seen.insert(name) {
                out.push((name.to_owned(), Some(s.address())));
            }
        }
    }
    if out.is_empty() {
        return Err(Failure(format!("{path}: no defined symbols")));
    }
    Ok(out)
}

fn text_exports(path: &str, bytes: &[u8]) -> Result<Vec<(String, Option<u64>)>, Failure> {
    let text = std::str::from_utf8(bytes).map_err(|_| Failure(format!("{path}: not text")))?;
    // Named or global entries, then `nm`'s local ones (lower-case type) where no other has the name:
    // several files of a firmware may each have a local of one name.
    let mut named = Vec::new();
    let mut local = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |what: &str| Failure(format!("{path}:{}: {what}", n + 1));
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
            [name] => named.push(((*name).to_owned(), None)),
            // nm's undefined symbols (`U`, weak `w`/`v`, no address): not the firmware's to give.
            ["U" | "w" | "v", _] => {}
            [name, addr] => named.push(((*name).to_owned(), Some(address(addr)?))),
            [addr, t, name] if is_type(t) => {
                if !wanted(name) {
                    continue;
                }
                let entry = ((*name).to_owned(), Some(address(addr)?));
                if t.chars().all(|c| c.is_ascii_lowercase()) {
                    local.push(entry);
                } else {
                    named.push(entry);
                }
            }
            _ => {
                return Err(bad(
                    "expected `NAME`, `NAME ADDRESS` or `ADDRESS TYPE NAME`",
                ))
            }
        }
    }
    let mut seen: std::collections::HashSet<String> =
        named.iter().map(|(name, _)| name.clone()).collect();
    for entry in local {
        if seen.insert(entry.0.clone()) {
            named.push(entry);
        }
    }
    Ok(named)
}

/// Zeroed read-write memory for linking objects of another machine; nothing in it runs. Low in the address
/// space, so that 32-bit targets' addresses fit (checked by the caller).
struct ScratchArena {
    ptr: *mut u8,
    len: usize,
}

impl ScratchArena {
    fn new(len: usize) -> Result<Self, Failure> {
        // x86-64 Linux maps below 2 GiB on request; elsewhere a low address is only a hint.
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        let (low, hint) = (libc::MAP_32BIT, 0usize);
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        let (low, hint) = (0, 0x1000_0000usize);
        // SAFETY: a fresh anonymous private mapping (the address is a hint, not MAP_FIXED); no existing
        // memory is touched.
        let ptr = unsafe {
            libc::mmap(
                hint as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | low,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Failure(format!(
                "cannot map a {len}-byte scratch arena: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(ScratchArena {
            ptr: ptr.cast(),
            len,
        })
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
