//! llext test firmware for Cortex-M4F on QEMU `mps2-an386`: cortex-m-rt starts it (stack, data, bss, FPU);
//! semihosting is `bkpt 0xab`. The M4 has no caches, so making code visible takes only barriers.

#![no_std]
#![no_main]

use core::arch::asm;

#[cortex_m_rt::entry]
fn main() -> ! {
    llext_fw::start("cortex-m")
}

/// The semihosting trap: operation in r0, argument in r1, result in r0.
#[no_mangle]
pub extern "C" fn fw_semihost(op: usize, arg: usize) -> usize {
    let result: usize;
    // SAFETY: the semihosting trap reads the block at `arg` (valid for `op`, as the callers guarantee) and
    // changes no other state of this program.
    unsafe { asm!("bkpt 0xab", inout("r0") op => result, in("r1") arg, options(nostack)) };
    result
}

/// No caches on the M4: a DSB and an ISB order the writes before fetching the new code.
#[no_mangle]
pub extern "C" fn fw_sync_code(_ptr: *const u8, _len: usize) {
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    llext_fw::panicked(info)
}
