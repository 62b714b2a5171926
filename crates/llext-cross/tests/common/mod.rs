//! What the cross-check tests share: memory at a fixed address, the firmware's pretend symbols, loading with
//! llext and linking with GNU `ld` at the same addresses.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use llext::{ArenaMemory, Export, ExportTable, ExtensionInfo, LoadOptions, Registry};
use object::{Object, ObjectSection, ObjectSymbol};

use llext_cross::{Target, TARGETS};

pub mod asm;

/// Bytes mapped for one target's loads.
pub const ARENA: usize = 4 << 20;

/// An anonymous mapping at exactly `base`.
pub struct Mapping {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Mapping {
    pub fn at(base: u64, len: usize) -> Mapping {
        // SAFETY: an anonymous private mapping; MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let ptr = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert!(
            ptr != libc::MAP_FAILED && ptr as u64 == base,
            "cannot map {len:#x} bytes at {base:#x} for the cross-check"
        );
        Mapping {
            ptr: ptr.cast(),
            len,
        }
    }

    pub fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let off = (addr - self.ptr as u64) as usize;
        assert!(off + len <= self.len);
        // SAFETY: inside the mapping; no registry holds the arena any more when this is called.
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }.to_vec()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `at` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .expect("known target")
}

/// GNU `ld` is available for `target`, or its absence is allowed.
pub fn have_ld(target: &Target) -> bool {
    let ok = Command::new(target.ld.command)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing: Vec<String> = llext_cross::missing_compilers()
        .into_iter()
        .map(String::from)
        .chain((!ok).then(|| format!("{} (package {})", target.ld.command, target.ld.package)))
        .collect();
    llext_cross::require(&missing)
}

/// `what` was not built: allowed (the caller skips) only when a cross compiler it needs is missing and
/// `LLEXT_ALLOW_MISSING_CROSS=1`; otherwise this fails the test.
pub fn not_built(what: &str) {
    let missing: Vec<String> = llext_cross::missing_compilers()
        .into_iter()
        .map(String::from)
        .collect();
    assert!(
        !llext_cross::require(&missing),
        "{what} was not built although its compilers are there"
    );
}

/// A firmware symbol is data (no Thumb bit): the C fixtures' two data symbols, and the assembly
/// fixtures' names with `data` and `small_` values.
pub fn is_data(name: &str) -> bool {
    name == "fw_value"
        || name == "lib_factor"
        || name.contains("data")
        || name.starts_with("small_")
}

/// Where the cross-check pretends the `index`th firmware symbol lies. The C fixtures' symbols are 0x100
/// apart from `exports_base`; the assembly fixtures (`fixtures/relocs-*.S`) name what they need: `near_*`
/// and `edge_*` just below `load_base` (within 4 KiB of the loaded code), `small_*` at absolute values
/// below 256, `odd_*` (data) at odd addresses. On Arm, functions carry the Thumb bit except `arm_*` ones (A32).
pub fn export_address(target: &Target, name: &str, index: usize) -> u64 {
    let spot = name.strip_prefix("arm_").unwrap_or(name);
    let mut addr = if spot.starts_with("near_") || spot.starts_with("edge_") {
        assert!(index < 0x80, "too many firmware symbols for the near spots");
        target.load_base - 0x800 + 0x10 * index as u64
    } else if spot.starts_with("small_") {
        assert!(
            index < 0x30,
            "too many firmware symbols for the small spots"
        );
        0x20 + 4 * index as u64
    } else {
        target.exports_base + 0x100 * index as u64
    };
    if target.thumb && !is_data(name) && !name.starts_with("arm_") {
        addr |= 1;
    }
    if spot.starts_with("odd_") {
        addr |= 1;
    }
    addr
}

/// The undefined symbols of an object, with fake firmware addresses.
pub fn fake_exports(target: &Target, elf: &[u8]) -> Vec<(String, u64)> {
    let file = object::File::parse(elf).expect("fixture parses");
    let mut names: Vec<String> = file
        .symbols()
        // A weak reference is left undefined: the firmware does not have it (0 in both linkers).
        .filter(|s| s.is_undefined() && !s.is_weak() && !s.name().unwrap_or("").is_empty())
        .filter_map(|s| s.name().ok().map(String::from))
        .filter(|n| n != "_GLOBAL_OFFSET_TABLE_")
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let addr = export_address(target, &name, i);
            (name, addr)
        })
        .collect()
}

/// Loads `elf` with llext into `mapping` (a fresh registry, so always at the same addresses) with the
/// firmware symbols `exports`.
pub fn llext_load(
    target: &Target,
    mapping: &Mapping,
    name: &str,
    elf: &[u8],
    exports: &[(String, u64)],
) -> Result<ExtensionInfo, llext::Error> {
    let table: Vec<Export> = exports
        .iter()
        .map(|(n, a)| Export::new(Box::leak(n.clone().into_boxed_str()), *a as *const ()))
        .collect();
    let table = ExportTable::new(Box::leak(table.into_boxed_slice()));
    // SAFETY: the mapping is only used through this arena until the registry is dropped, at the end of
    // this function.
    let arena = unsafe { std::slice::from_raw_parts_mut(mapping.ptr, mapping.len) };
    let registry = Registry::for_machine(ArenaMemory::new(arena), table, target.machine);
    let options = LoadOptions {
        bring_up: false,
        ..LoadOptions::default()
    };
    let id = registry.load_with(name, elf, &options)?;
    registry.info(id)
}

/// Section name → the address llext gave it.
pub fn section_addresses(info: &ExtensionInfo) -> BTreeMap<String, u64> {
    let mut addrs = BTreeMap::new();
    for s in &info.sections {
        assert!(
            addrs.insert(s.name.clone(), s.addr as u64).is_none(),
            "{}: two sections named {}",
            info.name,
            s.name
        );
    }
    addrs
}

/// Links `object` with GNU ld, each section at `addrs[name]`; returns the output file's bytes, or ld's
/// complaint.
pub fn try_gnu_link(
    target: &Target,
    object: &Path,
    addrs: &BTreeMap<String, u64>,
    exports: &[(String, u64)],
    got_at: u64,
    work: &Path,
) -> Result<Vec<u8>, String> {
    let mut script = String::from("SECTIONS\n{\n");
    for (name, addr) in addrs {
        let _ = writeln!(script, "  {name} {addr:#x} : {{ *({name}) }}");
    }
    let _ = writeln!(
        script,
        "  .got {got_at:#x} : {{ *(.got.plt) *(.igot.plt) *(.got) *(.igot) }}"
    );
    script.push_str("  /DISCARD/ : { *(.eh_frame) *(.note.GNU-stack) }\n}\n");
    let script_path = work.join("link.ld");
    std::fs::write(&script_path, script).expect("write linker script");
    let out_path = work.join("linked.elf");
    let mut command = Command::new(target.ld.command);
    command
        .args(target.ld.flags)
        .args([
            "-static",
            "-nostdlib",
            "-e",
            "0",
            "--no-warn-mismatch",
            "-T",
        ])
        .arg(&script_path)
        .arg("-o")
        .arg(&out_path)
        .arg(object);
    if target.thumb {
        command.arg(firmware_symbols(target, exports, work));
    } else {
        for (name, addr) in exports {
            command.arg(format!("--defsym={name}={addr:#x}"));
        }
    }
    let out = command.output().expect("run ld");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(std::fs::read(&out_path).expect("read ld output"))
}

/// An object defining the firmware's symbols as absolute symbols, functions typed `STT_FUNC`.
///
/// On Arm `--defsym` is not enough: its symbols have no type, GNU ld takes an untyped symbol for A32
/// code, and it then puts an interworking veneer in front of every conditional Thumb branch to it. The
/// firmware's functions are `STT_FUNC` symbols whose bit 0 says Thumb, as llext assumes of every export.
fn firmware_symbols(target: &Target, exports: &[(String, u64)], work: &Path) -> std::path::PathBuf {
    let mut source = String::new();
    for (name, addr) in exports {
        let _ = writeln!(source, "\t.globl\t{name}");
        if !is_data(name) {
            let _ = writeln!(source, "\t.type\t{name}, %function");
        }
        let _ = writeln!(source, "\t.set\t{name}, {addr:#x}");
    }
    let source_path = work.join("firmware.s");
    let object_path = work.join("firmware.o");
    std::fs::write(&source_path, source).expect("write the firmware symbols");
    let out = Command::new(target.gcc.command)
        .arg("-c")
        .arg(&source_path)
        .arg("-o")
        .arg(&object_path)
        .output()
        .expect("run the assembler");
    assert!(
        out.status.success(),
        "assembling the firmware symbols failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    object_path
}

/// [`try_gnu_link`], which must succeed.
pub fn gnu_link(
    target: &Target,
    object: &Path,
    addrs: &BTreeMap<String, u64>,
    exports: &[(String, u64)],
    got_at: u64,
    work: &Path,
) -> Vec<u8> {
    try_gnu_link(target, object, addrs, exports, got_at, work)
        .unwrap_or_else(|e| panic!("{} failed on {}: {e}", target.ld.command, object.display()))
}

/// The bytes of `[addr, addr + len)` in a linked ELF file.
pub fn linked_bytes(elf: &[u8], addr: u64, len: usize) -> Option<Vec<u8>> {
    let file = object::File::parse(elf).ok()?;
    for s in file.sections() {
        if s.address() <= addr && addr + len as u64 <= s.address() + s.size() {
            let data = s.data().ok()?;
            let off = (addr - s.address()) as usize;
            return data.get(off..off + len).map(<[u8]>::to_vec);
        }
    }
    None
}

pub fn word(bytes: &[u8], at: usize, ptr: usize) -> u64 {
    let mut w = [0u8; 8];
    w[..ptr].copy_from_slice(&bytes[at..at + ptr]);
    u64::from_le_bytes(w)
}

pub fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// A scratch directory for ld's inputs and outputs, removed when dropped.
pub struct WorkDir(pub std::path::PathBuf);

impl WorkDir {
    pub fn new(what: &str) -> WorkDir {
        let dir = std::env::temp_dir().join(format!("llext-cross-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("work directory");
        WorkDir(dir)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
