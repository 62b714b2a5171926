//! The loader image of `cargo xtask footprint`: the baseline plus the loader as `qemu-run` uses it (export
//! table, registry, arena), without the tests and the embedded fixtures.

#![no_std]
#![no_main]

#[path = "../target.rs"]
mod target;

#[cortex_m_rt::entry]
fn main() -> ! {
    llext_fw::start_loader()
}
