//! Static inspection of an extension file, without loading it.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::arch;
use crate::elf::{self, SymbolPlace};
use crate::error::Result;
use crate::layout::{self, LayoutOptions, RegionKind};
use crate::limits::Limits;

/// One section of the file and where loading would put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionReport {
    /// Section index.
    pub index: usize,
    /// Name.
    pub name: String,
    /// `sh_type`.
    pub kind: u32,
    /// Size in bytes.
    pub size: u64,
    /// Alignment.
    pub align: u64,
    /// The region it would be loaded into, or `None` if it costs no memory.
    pub region: Option<RegionKind>,
}

/// Relocations of one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelocationCount {
    /// The ABI name, or `"unknown"`.
    pub name: &'static str,
    /// Raw type.
    pub r_type: u32,
    /// How many, over every relocation section (including those of sections that are not loaded).
    pub count: usize,
}

/// What `llext inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// 32 or 64.
    pub class_bits: u8,
    /// Byte order.
    pub little_endian: bool,
    /// `e_type` (1 = relocatable).
    pub e_type: u16,
    /// `e_machine`.
    pub machine: u16,
    /// Human machine name.
    pub machine_name: &'static str,
    /// How the code passes floating-point values, where the file says (Arm, RISC-V).
    pub float_abi: Option<arch::FloatAbi>,
    /// The instructions the code may use, where its build attributes say (Arm M-profile, RISC-V).
    pub isa: Option<arch::Isa>,
    /// Every section.
    pub sections: Vec<SectionReport>,
    /// Names listed in `.exported_sym`.
    pub exported: Vec<String>,
    /// Global symbols defined by the file.
    pub defined: Vec<String>,
    /// Undefined symbols (name, weak) that must come from the firmware or other extensions.
    pub undefined: Vec<(String, bool)>,
    /// Relocation counts by type, sorted by type.
    pub relocations: Vec<RelocationCount>,
}

/// Reads `bytes` and reports its structure. Fails on the same malformed input loading would reject.
///
/// ```
/// assert!(matches!(llext::inspect::inspect(b"not an elf"), Err(llext::Error::NotElf)));
/// ```
pub fn inspect(bytes: &[u8]) -> Result<Report> {
    let obj = elf::parse(bytes, &Limits::default())?;
    let options = LayoutOptions::default();
    let sections = obj
        .sections
        .iter()
        .enumerate()
        .map(|(index, s)| SectionReport {
            index,
            name: s.name_lossy(),
            kind: s.sh_type,
            size: s.size,
            align: s.align,
            region: layout::classify(s, options).ok().flatten(),
        })
        .collect();
    let mut defined = Vec::new();
    let mut undefined = Vec::new();
    for (i, sym) in obj.symbols.iter().enumerate() {
        if i == 0 || sym.name.is_empty() || !sym.is_global() {
            continue;
        }
        if sym.place == SymbolPlace::Undefined {
            undefined.push((sym.name_lossy(), sym.is_weak()));
        } else {
            defined.push(sym.name_lossy());
        }
    }
    // Counted in a sorted map: a hostile file may use millions of distinct types, and a linear search per
    // relocation would make that quadratic.
    let mut by_type: BTreeMap<u32, usize> = BTreeMap::new();
    for table in &obj.relocs {
        for r in table.iter(obj.endian) {
            *by_type.entry(r.r_type).or_default() += 1;
        }
    }
    let counts: Vec<RelocationCount> = by_type
        .into_iter()
        .map(|(r_type, count)| RelocationCount {
            name: arch::relocation_name(obj.machine, r_type).unwrap_or("unknown"),
            r_type,
            count,
        })
        .collect();
    Ok(Report {
        class_bits: if obj.class.is_64 { 64 } else { 32 },
        little_endian: obj.class.little_endian,
        e_type: obj.e_type,
        machine: obj.machine,
        machine_name: arch::machine_name(obj.machine),
        float_abi: arch::FloatAbi::of_object(&obj),
        isa: arch::Isa::of_object(&obj),
        sections,
        exported: exported_names(&obj),
        defined,
        undefined,
        relocations: counts,
    })
}

/// The signed `size`-byte (4 or 8) word of `data` at `offset`: the implicit addend of an absolute data
/// relocation.
fn stored_word(data: &[u8], offset: u64, size: u64, endian: object::Endianness) -> Option<i64> {
    let start = usize::try_from(offset).ok()?;
    let little = endian == object::Endianness::Little;
    if size == 8 {
        let word: [u8; 8] = data.get(start..start.checked_add(8)?)?.try_into().ok()?;
        Some(if little {
            i64::from_le_bytes(word)
        } else {
            i64::from_be_bytes(word)
        })
    } else {
        let word: [u8; 4] = data.get(start..start.checked_add(4)?)?.try_into().ok()?;
        Some(i64::from(if little {
            i32::from_le_bytes(word)
        } else {
            i32::from_be_bytes(word)
        }))
    }
}

/// The names in `.exported_sym`, found through the relocations of its name fields (no loading needed).
fn exported_names(obj: &elf::Object<'_>) -> Vec<String> {
    let mut names = Vec::new();
    let ptr: u64 = if obj.class.is_64 { 8 } else { 4 };
    for (index, s) in obj.sections.iter().enumerate() {
        if s.name != b".exported_sym" {
            continue;
        }
        for table in obj.relocs.iter().filter(|t| t.target == index) {
            for r in table.iter(obj.endian) {
                if r.offset % (2 * ptr) != 0 {
                    continue; // the address field
                }
                let Some(sym) = obj.symbols.get(r.symbol as usize) else {
                    continue;
                };
                let SymbolPlace::Section(si) = sym.place else {
                    continue;
                };
                let Some(strings) = obj.sections.get(si) else {
                    continue;
                };
                // A REL entry (Arm) keeps its addend in the name field itself: the offset of the name in
                // a merged string section such as `.rodata.str1.4`, whose section symbol it refers to.
                let addend = match r.addend {
                    Some(addend) => addend,
                    None => match stored_word(s.data, r.offset, ptr, obj.endian) {
                        Some(addend) => addend,
                        None => continue,
                    },
                };
                let at = sym.value.wrapping_add(addend as u64);
                let Some(tail) = usize::try_from(at)
                    .ok()
                    .and_then(|at| strings.data.get(at..))
                else {
                    continue;
                };
                if let Some(nul) = tail.iter().position(|&b| b == 0) {
                    names
                        .push(String::from_utf8_lossy(tail.get(..nul).unwrap_or(&[])).into_owned());
                }
            }
        }
    }
    names
}
