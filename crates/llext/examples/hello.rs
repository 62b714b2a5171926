//! Loads one extension, calls one of its functions and unloads it: the library example of the README.
//!
//! ```text
//! cargo run -p llext --example hello -- FILE.o FUNCTION [INT...]
//! ```
//!
//! `FUNCTION` must be a C function (or a Rust `extern "C" fn`) the object defines, taking up to six
//! integer or pointer arguments and returning an integer: `long FUNCTION(long, ...)`.

use std::process::ExitCode;

use llext::{ExportTable, HostMemory, Registry};

fn main() -> ExitCode {
    match hello() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hello() -> Result<(), Box<dyn std::error::Error>> {
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
