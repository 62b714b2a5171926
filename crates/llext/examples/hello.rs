//! Loads one extension, calls one of its functions and unloads it: the library example of the README.
//!
//! ```text
//! cargo run -p llext --example hello -- FILE.o FUNCTION [INT...]
//! ```
//!
//! `FUNCTION` must be a C function (or a Rust `extern "C" fn`) of the object, or of the host's C library
//! functions it may call, taking up to six integer or pointer arguments and returning an integer.

use llext::{ExportTable, HostMemory, Registry};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: hello FILE.o FUNCTION [INT...]";
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or(usage)?;
    let function = args.next().ok_or(usage)?;
    let values = args.map(|a| a.parse()).collect::<Result<Vec<i64>, _>>()?;

    let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
    let ext = registry.load_file(&path)?;
    // SAFETY: the caller names a C function taking up to six integer arguments (see the usage above).
    let result = unsafe { registry.call(&function, &values) }?;
    registry.unload(ext)?;

    println!("{function} returned {result}");
    Ok(())
}
