//! `llext`: loadable ELF extensions for microcontrollers and hosts.
//!
//! A program (firmware or host application) loads ELF relocatable objects — plain `cc -c` output, `ld -r`
//! partial links, Rust objects — at run time, links them against the symbols it exports and against each
//! other, runs them and unloads them. The model is Zephyr's LLEXT; extensions built for it, with their
//! `.exported_sym` tables, keep working.
//!
//! The data flows one way: bytes → [`elf`](crate) reading → layout (sections into regions) → [`Memory`]
//! blocks → linking (symbols, per-architecture relocations) → the [`Registry`].
//!
//! ```no_run
//! # #[cfg(feature = "std")] {
//! use llext::{exports, Export, ExportTable, HostMemory, Registry, LIBC_EXPORTS};
//! extern "C" fn host_add(a: i64, b: i64) -> i64 { a + b }
//! static HOST: &[Export] = exports![host_add];
//! // The program's own functions, and the C library's (printf, malloc, ...) that plain C code calls.
//! let table: Vec<Export> = HOST.iter().chain(LIBC_EXPORTS).copied().collect();
//! let registry = Registry::new(HostMemory::new(), ExportTable::new(&table));
//! let ext = registry.load_file("plugin.o")?;
//! // SAFETY: `plugin_main` is `long plugin_main(long)` in plugin.o.
//! let result = unsafe { registry.call_in(ext, "plugin_main", &[41]) }?;
//! registry.unload(ext)?;
//! # }
//! # Ok::<(), llext::Error>(())
//! ```
//!
//! The core is `#![no_std]` + `alloc`; the `std` feature (default) adds [`HostMemory`], file and reader
//! loading, and a `std::sync::Mutex` lock. The `portable` feature (default) adds portable contexts
//! ([`SaveOptions::portable`]); without it, in-place save and restore work on their own, with about half
//! the code.

#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]
// `Error` has variants that own a `String`, so `ok_or(Error::X)` builds an error and runs its drop glue on
// every success: 6% of a load's instructions when measured. Errors are built lazily (`ok_or_else`) instead,
// which this lint would undo.
#![allow(
    clippy::unnecessary_lazy_evaluations,
    reason = "an eagerly built Error is dropped on every success"
)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(any(
    feature = "all-arches",
    target_arch = "riscv32",
    target_arch = "riscv64"
))]
mod align;
pub mod arch;
mod elf;
mod error;
mod fallible;
#[cfg(feature = "std")]
mod host;
pub mod inspect;
mod layout;
mod limits;
mod link;
mod memory;
mod pairs;
mod ranges;
mod record;
mod registry;
mod snapshot;
mod symbols;
mod sync;

pub use error::{Error, Result};
#[cfg(feature = "std")]
pub use host::{HostMemory, LIBC_EXPORTS};
pub use layout::RegionKind;
pub use limits::Limits;
pub use memory::{ArenaMemory, Block, BlockRequest, Memory, Permission};
#[cfg(feature = "std")]
pub use registry::default_name;
pub use registry::{
    ExtId, ExtensionInfo, LoadOptions, Location, LocationRef, RegionInfo, Registry, SectionInfo,
    Storage, SymbolInfo, Unloaded, MAX_CALL_ARGS,
};
pub use snapshot::{
    Context, RestoreOptions, SaveOptions, SavedCore, SavedExtension, CONTEXT_VERSION,
};
pub use symbols::{Export, ExportTable};
