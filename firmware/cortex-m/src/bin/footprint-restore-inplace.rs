//! The in-place restore image of `cargo xtask footprint`: the loader image plus saving what it loaded in
//! place, forgetting and restoring it — what a firmware that keeps its extensions across a suspend, and never
//! moves them, carries. `cargo xtask footprint` builds it with `--no-default-features`, against llext
//! without its `portable` feature (see this crate's Cargo.toml).

#![no_std]
#![no_main]

#[path = "../target.rs"]
mod target;

#[cortex_m_rt::entry]
fn main() -> ! {
    llext_fw::start_restore_in_place()
}
