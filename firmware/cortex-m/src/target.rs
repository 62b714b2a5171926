//! What the Cortex-M4F images share: the semihosting trap (`bkpt 0xab`), making new code visible (the M4
//! has no caches, so barriers suffice) and the panic handler.

use core::arch::asm;

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
