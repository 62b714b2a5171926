//! Reading ELF relocatable objects through the `object` crate, into a compact neutral view.
//!
//! Nothing here trusts the file: every index, offset and size is checked, and every failure is a typed
//! [`Error`]. The view borrows the input bytes; the only allocations are one vector of sections, one of symbols
//! and one of relocation tables.

use alloc::string::String;
use alloc::vec::Vec;

use object::elf;
use object::read::elf::{FileHeader, Rel as _, Rela as _, SectionHeader as _, Sym as _};
use object::{Endianness, SectionIndex};

use crate::error::{Error, Result};
use crate::limits::Limits;

/// Pointer width and byte order of an ELF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class {
    pub is_64: bool,
    pub little_endian: bool,
}

/// One section header, decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Section<'data> {
    pub name: &'data [u8],
    pub sh_type: u32,
    pub flags: u64,
    pub size: u64,
    pub align: u64,
    /// File bytes (empty for `SHT_NOBITS`).
    pub data: &'data [u8],
}

impl Section<'_> {
    pub fn is_alloc(&self) -> bool {
        self.flags & elf::SHF_ALLOC.0 != 0
    }
    pub fn is_nobits(&self) -> bool {
        self.sh_type == elf::SHT_NOBITS.0
    }
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(self.name).into_owned()
    }
}

/// Where a symbol is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SymbolPlace {
    Undefined,
    Absolute,
    Common,
    Section(usize),
}

/// One symbol table entry, decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Symbol<'data> {
    pub name: &'data [u8],
    pub value: u64,
    pub size: u64,
    pub bind: u8,
    pub kind: u8,
    /// `STV_DEFAULT`, `STV_HIDDEN`...
    pub visibility: u8,
    pub place: SymbolPlace,
}

impl Symbol<'_> {
    pub fn is_weak(&self) -> bool {
        self.bind == elf::STB_WEAK.0
    }
    pub fn is_global(&self) -> bool {
        self.bind == elf::STB_GLOBAL.0 || self.bind == elf::STB_WEAK.0
    }
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(self.name).into_owned()
    }
}

/// The raw entries of one relocation section, still in file form.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entries<'data> {
    Rel32(&'data [elf::Rel32<Endianness>]),
    Rela32(&'data [elf::Rela32<Endianness>]),
    Rel64(&'data [elf::Rel64<Endianness>]),
    Rela64(&'data [elf::Rela64<Endianness>]),
    /// Decoded and rewritten (RISC-V alignment padding trimmed: see `align.rs`).
    #[cfg(any(
        feature = "all-arches",
        target_arch = "riscv32",
        target_arch = "riscv64"
    ))]
    Decoded(&'data [Reloc]),
}

/// One decoded relocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reloc {
    pub offset: u64,
    pub r_type: u32,
    pub symbol: u32,
    /// `None` for REL entries: the addend is stored in the place.
    pub addend: Option<i64>,
}

/// A relocation section: which section it patches, and its entries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelocTable<'data> {
    pub index: usize,
    pub target: usize,
    pub entries: Entries<'data>,
}

impl RelocTable<'_> {
    pub fn len(&self) -> usize {
        match self.entries {
            Entries::Rel32(e) => e.len(),
            Entries::Rela32(e) => e.len(),
            Entries::Rel64(e) => e.len(),
            Entries::Rela64(e) => e.len(),
            #[cfg(any(
                feature = "all-arches",
                target_arch = "riscv32",
                target_arch = "riscv64"
            ))]
            Entries::Decoded(e) => e.len(),
        }
    }

    pub fn get(&self, endian: Endianness, i: usize) -> Option<Reloc> {
        Some(match self.entries {
            Entries::Rel32(e) => {
                let r = e.get(i)?;
                Reloc {
                    offset: r.r_offset(endian).into(),
                    r_type: r.r_type(endian).0,
                    symbol: r.r_sym(endian),
                    addend: None,
                }
            }
            Entries::Rela32(e) => {
                let r = e.get(i)?;
                Reloc {
                    offset: r.r_offset(endian).into(),
                    r_type: r.r_type(endian).0,
                    symbol: r.r_sym(endian),
                    addend: Some(r.r_addend(endian).into()),
                }
            }
            Entries::Rel64(e) => {
                let r = e.get(i)?;
                Reloc {
                    offset: r.r_offset(endian),
                    r_type: r.r_type(endian).0,
                    symbol: r.r_sym(endian),
                    addend: None,
                }
            }
            Entries::Rela64(e) => {
                let r = e.get(i)?;
                Reloc {
                    offset: r.r_offset(endian),
                    r_type: r.r_type(endian, false).0,
                    symbol: r.r_sym(endian, false),
                    addend: Some(r.r_addend(endian)),
                }
            }
            #[cfg(any(
                feature = "all-arches",
                target_arch = "riscv32",
                target_arch = "riscv64"
            ))]
            Entries::Decoded(e) => *e.get(i)?,
        })
    }

    pub fn iter(&self, endian: Endianness) -> impl Iterator<Item = Reloc> + '_ {
        (0..self.len()).filter_map(move |i| self.get(endian, i))
    }
}

/// A parsed relocatable object.
#[derive(Debug)]
pub(crate) struct Object<'data> {
    pub class: Class,
    pub endian: Endianness,
    pub e_type: u16,
    pub machine: u16,
    pub e_flags: u32,
    pub sections: Vec<Section<'data>>,
    pub symbols: Vec<Symbol<'data>>,
    pub relocs: Vec<RelocTable<'data>>,
    /// The total length of the section and symbol names, counted against `Limits::max_name_bytes` (the
    /// linker goes on counting the names of the export table).
    pub name_bytes: u64,
    /// An Arm object's file attributes, read at their first use (`arch::arm::file_attributes`).
    #[cfg(any(feature = "all-arches", target_arch = "arm"))]
    pub arm_attributes: core::cell::OnceCell<Option<crate::arch::arm::FileAttributes>>,
    /// The sections that a `__start_X` or `__stop_X` symbol bounds together with others of their name
    /// (rustc gives every `#[link_section]` static a section of its own): copied side by side, never used
    /// in place (in the file, other sections lie between them). Empty unless the object has such bounds.
    pub bound_groups: Vec<usize>,
}

impl<'data> Object<'data> {
    pub fn section_name(&self, index: usize) -> String {
        self.sections
            .get(index)
            .map(Section::name_lossy)
            .unwrap_or_default()
    }
}

/// Reads the ELF identification bytes: class and byte order.
pub(crate) fn identify(data: &[u8]) -> Result<Class> {
    // LLVM bitcode, bare or in its wrapper: what `clang -flto -c` writes.
    if data.starts_with(b"BC\xc0\xde") || data.starts_with(&[0xde, 0xc0, 0x17, 0x0b]) {
        return Err(Error::IntermediateCode {
            format: crate::error::LLVM_BITCODE,
        });
    }
    // A static library, or a Rust rlib or staticlib, instead of one of its members.
    if data.starts_with(b"!<arch>\n") || data.starts_with(b"!<thin>\n") {
        return Err(Error::Archive);
    }
    let ident = data.get(..16).ok_or_else(|| Error::NotElf)?;
    if ident.get(..4) != Some(&elf::ELFMAG[..]) {
        return Err(Error::NotElf);
    }
    let is_64 = match ident.get(4).copied() {
        Some(c) if c == elf::ELFCLASS32.0 => false,
        Some(c) if c == elf::ELFCLASS64.0 => true,
        other => {
            return Err(Error::Unsupported {
                what: "ELF class",
                value: u64::from(other.unwrap_or(0)),
            })
        }
    };
    let little_endian = match ident.get(5).copied() {
        Some(d) if d == elf::ELFDATA2LSB.0 => true,
        Some(d) if d == elf::ELFDATA2MSB.0 => false,
        other => {
            return Err(Error::Unsupported {
                what: "ELF byte order",
                value: u64::from(other.unwrap_or(0)),
            })
        }
    };
    Ok(Class {
        is_64,
        little_endian,
    })
}

/// Parses an ELF object of either class. A build whose relocation backends all take one class (firmware
/// built without `all-arches`: Arm is 32-bit; x86-64 and AArch64 are 64-bit; RISC-V follows the target)
/// parses only that one, and refuses the other as [`Error::WrongClass`].
pub(crate) fn parse<'data>(data: &'data [u8], limits: &Limits) -> Result<Object<'data>> {
    limits.check("file size", data.len() as u64, limits.max_file_size)?;
    let class = identify(data)?;
    match class.is_64 {
        #[cfg(any(
            feature = "all-arches",
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64"
        ))]
        true => parse_class::<elf::FileHeader64<Endianness>>(data, class, limits),
        #[cfg(any(feature = "all-arches", target_arch = "arm", target_arch = "riscv32"))]
        false => parse_class::<elf::FileHeader32<Endianness>>(data, class, limits),
        #[allow(unreachable_patterns)]
        _ => Err(Error::WrongClass {
            expected: if class.is_64 { 32 } else { 64 },
            found: if class.is_64 { 64 } else { 32 },
        }),
    }
}

fn parse_class<'data, Elf: FileHeader<Endian = Endianness>>(
    data: &'data [u8],
    class: Class,
    limits: &Limits,
) -> Result<Object<'data>> {
    let header = Elf::parse(data).map_err(Error::malformed("file header"))?;
    let endian = header.endian().map_err(Error::malformed("file header"))?;
    let table = header
        .sections(endian, data)
        .map_err(Error::malformed("section header table"))?;
    limits.check("section count", table.len() as u64, limits.max_sections)?;

    let mut sections = Vec::new();
    sections
        .try_reserve_exact(table.len())
        .map_err(|_| crate::fallible::oom::<Section<'_>>(table.len()))?;
    let mut symtab_index = None;
    // Every name is counted as it is read (see `Limits::max_name_bytes`).
    let mut name_bytes = 0u64;
    for (index, shdr) in table.enumerate() {
        let index = index.0;
        let name = table
            .section_name(endian, shdr)
            .map_err(|detail| Error::BadSection {
                index,
                name: String::new(),
                reason: detail_reason(detail),
            })?;
        limits.count_name(&mut name_bytes, name)?;
        let sh_type = shdr.sh_type(endian).0;
        let flags: u64 = shdr.sh_flags(endian).0;
        let size: u64 = shdr.sh_size(endian).into();
        let align: u64 = shdr.sh_addralign(endian).into();
        let bad = |reason| Error::BadSection {
            index,
            name: String::from_utf8_lossy(name).into_owned(),
            reason,
        };
        if align > 1 && !align.is_power_of_two() {
            return Err(bad("alignment is not a power of two"));
        }
        if align > limits.max_alignment {
            return Err(bad("alignment is larger than the loader accepts"));
        }
        let data = if sh_type == elf::SHT_NOBITS.0 || sh_type == elf::SHT_NULL.0 {
            &[][..]
        } else {
            shdr.data(endian, data)
                .map_err(|_| bad("contents lie outside the file"))?
        };
        if sh_type == elf::SHT_SYMTAB.0 {
            if symtab_index.is_some() {
                return Err(bad("second symbol table"));
            }
            symtab_index = Some(index);
        }
        sections.push(Section {
            name,
            sh_type,
            flags,
            size,
            align: align.max(1),
            data,
        });
    }

    let mut symbols = Vec::new();
    if let Some(index) = symtab_index {
        let symtab = table
            .symbol_table_by_index(endian, data, SectionIndex(index))
            .map_err(Error::malformed("symbol table"))?;
        limits.check("symbol count", symtab.len() as u64, limits.max_symbols)?;
        symbols
            .try_reserve_exact(symtab.len())
            .map_err(|_| crate::fallible::oom::<Symbol<'_>>(symtab.len()))?;
        for (i, sym) in symtab.enumerate() {
            let name = symtab
                .symbol_name(endian, sym)
                .map_err(|detail| Error::BadSymbol {
                    index: i.0,
                    name: String::new(),
                    reason: detail_reason(detail),
                })?;
            limits.count_name(&mut name_bytes, name)?;
            let shndx = sym.st_shndx(endian);
            let place = if shndx == elf::SHN_UNDEF {
                SymbolPlace::Undefined
            } else if shndx == elf::SHN_ABS {
                SymbolPlace::Absolute
            } else if shndx == elf::SHN_COMMON {
                SymbolPlace::Common
            } else {
                match symtab.symbol_section(endian, sym, i) {
                    Ok(Some(s)) if s.0 < sections.len() => SymbolPlace::Section(s.0),
                    _ => {
                        return Err(Error::BadSymbol {
                            index: i.0,
                            name: String::from_utf8_lossy(name).into_owned(),
                            reason: "section index out of range or reserved",
                        })
                    }
                }
            };
            // GCC marks an object that holds only GIMPLE (`-flto` without `-ffat-lto-objects`).
            if name == b"__gnu_lto_slim" {
                return Err(Error::IntermediateCode {
                    format: "GCC's GIMPLE",
                });
            }
            symbols.push(Symbol {
                name,
                value: sym.st_value(endian).into(),
                size: sym.st_size(endian).into(),
                bind: sym.st_bind().0,
                kind: sym.st_type().0,
                visibility: sym.st_visibility().0,
                place,
            });
        }
    }

    let mut relocs = Vec::new();
    let mut total = 0u64;
    for (index, shdr) in table.enumerate() {
        let sh_type = shdr.sh_type(endian);
        if sh_type != elf::SHT_REL && sh_type != elf::SHT_RELA {
            continue;
        }
        let index = index.0;
        let bad = |reason| Error::BadSection {
            index,
            name: sections
                .get(index)
                .map(Section::name_lossy)
                .unwrap_or_default(),
            reason,
        };
        let target = shdr.sh_info(endian) as usize;
        let link = shdr.sh_link(endian) as usize;
        if header.e_type(endian) != elf::ET_REL && (target == 0 || Some(link) != symtab_index) {
            // Dynamic relocations of a linked image (`.rela.dyn`, `.rela.plt`): not ours to apply here.
            continue;
        }
        if target == 0 || target >= sections.len() {
            return Err(bad("relocation target section index out of range"));
        }
        if Some(link) != symtab_index {
            return Err(bad("relocations must refer to the symbol table"));
        }
        let entries = if class.is_64 {
            if sh_type == elf::SHT_RELA {
                Entries::Rela64(
                    shdr.data_as_array(endian, data)
                        .map_err(|_| bad("bad relocation entries"))?,
                )
            } else {
                Entries::Rel64(
                    shdr.data_as_array(endian, data)
                        .map_err(|_| bad("bad relocation entries"))?,
                )
            }
        } else if sh_type == elf::SHT_RELA {
            Entries::Rela32(
                shdr.data_as_array(endian, data)
                    .map_err(|_| bad("bad relocation entries"))?,
            )
        } else {
            Entries::Rel32(
                shdr.data_as_array(endian, data)
                    .map_err(|_| bad("bad relocation entries"))?,
            )
        };
        let table = RelocTable {
            index,
            target,
            entries,
        };
        total = total.saturating_add(table.len() as u64);
        relocs.try_reserve(1).map_err(|_| Error::OutOfMemory {
            size: core::mem::size_of::<RelocTable<'_>>(),
            align: core::mem::align_of::<RelocTable<'_>>(),
        })?;
        relocs.push(table);
    }
    limits.check("relocation count", total, limits.max_relocations)?;

    Ok(Object {
        class,
        endian,
        e_type: header.e_type(endian).0,
        machine: header.e_machine(endian).0,
        e_flags: header.e_flags(endian).0,
        sections,
        symbols,
        relocs,
        name_bytes,
        #[cfg(any(feature = "all-arches", target_arch = "arm"))]
        arm_attributes: core::cell::OnceCell::new(),
        bound_groups: Vec::new(),
    })
}

fn detail_reason(_e: object::read::Error) -> &'static str {
    "name offset is outside the string table"
}
