//! The baseline of `cargo xtask footprint`: the Cortex-M4F firmware's runtime, heap, console, host files
//! and `printf`, without the loader.

#![no_std]
#![no_main]

#[path = "../target.rs"]
mod target;

#[cortex_m_rt::entry]
fn main() -> ! {
    llext_fw::start_baseline()
}
