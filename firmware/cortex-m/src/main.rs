//! llext test firmware for Cortex-M4F on QEMU `mps2-an386`: cortex-m-rt starts it (stack, data, bss, FPU);
//! semihosting is `bkpt 0xab`. The M4 has no caches, so making code visible takes only barriers.

#![no_std]
#![no_main]

mod target;

#[cortex_m_rt::entry]
fn main() -> ! {
    llext_fw::start("cortex-m")
}
