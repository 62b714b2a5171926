//! The restore image of `cargo xtask footprint`: the loader image plus saving and restoring what it loaded,
//! in place and portably (the code a firmware that keeps its extensions across a suspend carries).

#![no_std]
#![no_main]

#[path = "../target.rs"]
mod target;

#[cortex_m_rt::entry]
fn main() -> ! {
    llext_fw::start_restore()
}
