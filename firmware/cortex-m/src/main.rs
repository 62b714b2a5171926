//! llext test firmware for Cortex-M4F on QEMU `mps2-an386`: cortex-m-rt starts it (stack, data, bss, FPU);
//! semihosting is `bkpt 0xab`. The M4 has no caches, so making code visible takes only barriers.

#![no_std]
#![no_main]

mod target;

#[cortex_m_rt::entry]
fn main() -> ! {
    llext_fw::start("cortex-m")
}

/// A fault (an undefined instruction, a bus or usage fault, escalated to HardFault) is reported with where
/// it happened, instead of the default handler's endless loop.
#[cortex_m_rt::exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    // SCB's Configurable Fault Status Register: what kind of fault.
    const CFSR: *const u32 = 0xE000_ED28 as *const u32;
    // SAFETY: a read of a system control register, always mapped on a Cortex-M.
    let cfsr = unsafe { CFSR.read_volatile() };
    llext_fw::faulted("HardFault", frame.pc() as usize, cfsr as usize)
}
