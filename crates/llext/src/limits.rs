//! Caps that keep a hostile file from making the loader allocate or work without bound.

use crate::error::{Error, Result};

/// Upper bounds checked while an extension is read and laid out. Each exceeded cap is an [`Error::Limit`].
///
/// The defaults suit hosts and large microcontrollers; firmware with little RAM should lower them.
///
/// ```
/// let limits = llext::Limits { max_file_size: 64 * 1024, ..llext::Limits::default() };
/// assert!(limits.max_file_size < llext::Limits::default().max_file_size);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_file_size: u64,
    /// Largest number of section headers.
    pub max_sections: u64,
    /// Largest number of symbol table entries.
    pub max_symbols: u64,
    /// Largest number of relocations, over all relocation sections.
    pub max_relocations: u64,
    /// Largest total memory one extension may occupy, in bytes.
    pub max_memory: u64,
    /// Largest section alignment accepted, in bytes.
    pub max_alignment: u64,
    /// Largest total length of the section, symbol and export-table names, in bytes. Names may share
    /// their bytes (each a different suffix of one long string), so without this cap a small file could
    /// name thousands of long symbols and make the loader copy, hash and sort far more than it holds.
    pub max_name_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: 256 << 20,
            max_sections: 1 << 16,
            max_symbols: 1 << 20,
            max_relocations: 1 << 22,
            max_memory: 256 << 20,
            max_alignment: 1 << 16,
            max_name_bytes: 16 << 20,
        }
    }
}

impl Limits {
    /// Adds `name` to the running total of name bytes `total` and checks it against `max_name_bytes`.
    pub(crate) fn count_name(&self, total: &mut u64, name: &[u8]) -> Result<()> {
        *total = total.saturating_add(name.len() as u64);
        self.check("name bytes", *total, self.max_name_bytes)
    }

    pub(crate) fn check(&self, what: &'static str, value: u64, limit: u64) -> Result<()> {
        if value > limit {
            Err(Error::Limit { what, limit, value })
        } else {
            Ok(())
        }
    }
}
