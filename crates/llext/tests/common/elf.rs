//! Reading and editing the fields of an ELF relocatable object in place (either class, little-endian), for
//! the damage tests: header, section headers, symbols and relocations by name instead of raw offsets.

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// ELF64 section header table offset, count.
pub fn shdrs(b: &[u8]) -> (usize, usize) {
    (u64_at(b, 0x28) as usize, u16_at(b, 0x3c) as usize)
}

/// ELF header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hdr {
    Class,
    Data,
    IdentVersion,
    Type,
    Machine,
    Version,
    Shoff,
    Ehsize,
    Shentsize,
    Shnum,
    Shstrndx,
}

/// Section header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sh {
    Name,
    Type,
    Flags,
    Offset,
    Size,
    Link,
    Info,
    Align,
    Entsize,
}

/// Symbol fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sym {
    Name,
    Info,
    Shndx,
    Value,
    Size,
}

/// Relocation entry fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rel {
    Offset,
    Symbol,
    Type,
    Addend,
}

pub const SHT_SYMTAB: u64 = 2;
pub const SHT_STRTAB: u64 = 3;
pub const SHT_RELA: u64 = 4;
pub const SHT_NOBITS: u64 = 8;
pub const SHT_REL: u64 = 9;

/// An object being damaged.
#[derive(Clone)]
pub struct ElfEdit {
    pub bytes: Vec<u8>,
    pub is64: bool,
}

impl ElfEdit {
    pub fn new(bytes: Vec<u8>) -> ElfEdit {
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert_eq!(bytes[5], 1, "little-endian objects only");
        let is64 = bytes[4] == 2;
        ElfEdit { bytes, is64 }
    }

    pub fn get(&self, (at, width): (usize, usize)) -> u64 {
        let mut w = [0u8; 8];
        w[..width].copy_from_slice(&self.bytes[at..at + width]);
        u64::from_le_bytes(w)
    }

    pub fn put(&mut self, (at, width): (usize, usize), value: u64) {
        self.bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }

    /// A copy with one field set to `value`.
    pub fn with(&self, field: (usize, usize), value: u64) -> Vec<u8> {
        let mut e = self.clone();
        e.put(field, value);
        e.bytes
    }

    pub fn header_size(&self) -> usize {
        if self.is64 {
            64
        } else {
            52
        }
    }

    pub fn hdr(&self, f: Hdr) -> (usize, usize) {
        let (at64, at32, width32) = match f {
            Hdr::Class => return (4, 1),
            Hdr::Data => return (5, 1),
            Hdr::IdentVersion => return (6, 1),
            Hdr::Type => return (16, 2),
            Hdr::Machine => return (18, 2),
            Hdr::Version => return (20, 4),
            Hdr::Shoff => (40, 32, 4),
            Hdr::Ehsize => (52, 40, 2),
            Hdr::Shentsize => (58, 46, 2),
            Hdr::Shnum => (60, 48, 2),
            Hdr::Shstrndx => (62, 50, 2),
        };
        if self.is64 {
            (at64, if f == Hdr::Shoff { 8 } else { width32 })
        } else {
            (at32, width32)
        }
    }

    pub fn shoff(&self) -> usize {
        self.get(self.hdr(Hdr::Shoff)) as usize
    }
    pub fn shnum(&self) -> usize {
        self.get(self.hdr(Hdr::Shnum)) as usize
    }
    pub fn shentsize(&self) -> usize {
        if self.is64 {
            64
        } else {
            40
        }
    }

    pub fn sh(&self, index: usize, f: Sh) -> (usize, usize) {
        let base = self.shoff() + index * self.shentsize();
        let (at, width) = if self.is64 {
            match f {
                Sh::Name => (0, 4),
                Sh::Type => (4, 4),
                Sh::Flags => (8, 8),
                Sh::Offset => (24, 8),
                Sh::Size => (32, 8),
                Sh::Link => (40, 4),
                Sh::Info => (44, 4),
                Sh::Align => (48, 8),
                Sh::Entsize => (56, 8),
            }
        } else {
            match f {
                Sh::Name => (0, 4),
                Sh::Type => (4, 4),
                Sh::Flags => (8, 4),
                Sh::Offset => (16, 4),
                Sh::Size => (20, 4),
                Sh::Link => (24, 4),
                Sh::Info => (28, 4),
                Sh::Align => (32, 4),
                Sh::Entsize => (36, 4),
            }
        };
        (base + at, width)
    }

    pub fn sh_get(&self, index: usize, f: Sh) -> u64 {
        self.get(self.sh(index, f))
    }

    /// Indexes of the sections of type `sh_type`.
    pub fn sections_of_type(&self, sh_type: u64) -> Vec<usize> {
        (1..self.shnum())
            .filter(|&i| self.sh_get(i, Sh::Type) == sh_type)
            .collect()
    }

    pub fn symtab(&self) -> Option<usize> {
        self.sections_of_type(SHT_SYMTAB).first().copied()
    }

    pub fn sym_size(&self) -> usize {
        if self.is64 {
            24
        } else {
            16
        }
    }

    pub fn symbol_count(&self) -> usize {
        self.symtab()
            .map(|s| self.sh_get(s, Sh::Size) as usize / self.sym_size())
            .unwrap_or(0)
    }

    pub fn sym(&self, index: usize, f: Sym) -> (usize, usize) {
        let table = self.symtab().expect("symbol table");
        let base = self.sh_get(table, Sh::Offset) as usize + index * self.sym_size();
        let (at, width) = if self.is64 {
            match f {
                Sym::Name => (0, 4),
                Sym::Info => (4, 1),
                Sym::Shndx => (6, 2),
                Sym::Value => (8, 8),
                Sym::Size => (16, 8),
            }
        } else {
            match f {
                Sym::Name => (0, 4),
                Sym::Value => (4, 4),
                Sym::Size => (8, 4),
                Sym::Info => (12, 1),
                Sym::Shndx => (14, 2),
            }
        };
        (base + at, width)
    }

    /// Relocation sections (REL and RELA).
    pub fn relocation_sections(&self) -> Vec<usize> {
        (1..self.shnum())
            .filter(|&i| matches!(self.sh_get(i, Sh::Type), SHT_REL | SHT_RELA))
            .collect()
    }

    pub fn rel_size(&self, section: usize) -> usize {
        let rela = self.sh_get(section, Sh::Type) == SHT_RELA;
        match (self.is64, rela) {
            (true, true) => 24,
            (true, false) => 16,
            (false, true) => 12,
            (false, false) => 8,
        }
    }

    pub fn rel_count(&self, section: usize) -> usize {
        self.sh_get(section, Sh::Size) as usize / self.rel_size(section)
    }

    /// A field of entry `entry` of relocation section `section`; `None` for the addend of a REL entry.
    pub fn rel(&self, section: usize, entry: usize, f: Rel) -> Option<(usize, usize)> {
        let rela = self.sh_get(section, Sh::Type) == SHT_RELA;
        let base = self.sh_get(section, Sh::Offset) as usize + entry * self.rel_size(section);
        Some(if self.is64 {
            match f {
                Rel::Offset => (base, 8),
                Rel::Type => (base + 8, 4),
                Rel::Symbol => (base + 12, 4),
                Rel::Addend if rela => (base + 16, 8),
                Rel::Addend => return None,
            }
        } else {
            match f {
                Rel::Offset => (base, 4),
                Rel::Type => (base + 4, 1),
                Rel::Symbol => (base + 5, 3),
                Rel::Addend if rela => (base + 8, 4),
                Rel::Addend => return None,
            }
        })
    }
}
