//! llext test firmware for RISC-V on QEMU `virt` (`-bios none`): a small start in assembly (stack, FPU on,
//! bss zeroed), the semihosting trap and `fence.i`, then the shared firmware.

#![no_std]
#![no_main]

use core::arch::global_asm;

global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    la sp, __stack_top",
    // mstatus.FS = Initial, so that Rust code may use the FPU on riscv64gc.
    "    li t0, 0x2000",
    "    csrs mstatus, t0",
    "    la t0, __bss_start",
    "    la t1, __bss_end",
    "1:  bgeu t0, t1, 2f",
    "    sb zero, 0(t0)",
    "    addi t0, t0, 1",
    "    j 1b",
    "2:  call fw_main",
    "3:  j 3b",
    // Semihosting: the trap is `ebreak` between these two no-op shifts, uncompressed, in one 16-byte block.
    ".section .text.fw_semihost, \"ax\"",
    ".global fw_semihost",
    ".balign 16",
    ".option push",
    ".option norvc",
    "fw_semihost:",
    "    slli x0, x0, 0x1f",
    "    ebreak",
    "    srai x0, x0, 7",
    "    ret",
    ".option pop",
    // fence.i (Zifencei), spelled as its encoding for assemblers that want the extension named.
    ".section .text.fw_sync_code, \"ax\"",
    ".global fw_sync_code",
    "fw_sync_code:",
    "    fence rw, rw",
    "    .word 0x0000100f",
    "    ret",
);

#[cfg(target_arch = "riscv32")]
const TARGET: &str = "riscv32";
#[cfg(target_arch = "riscv64")]
const TARGET: &str = "riscv64";

#[no_mangle]
extern "C" fn fw_main() -> ! {
    llext_fw::start(TARGET)
}

/// One hart, interrupts never enabled: a critical section needs no locking.
struct SingleHart;
critical_section::set_impl!(SingleHart);

// SAFETY: nothing runs concurrently with the firmware's single thread of execution.
unsafe impl critical_section::Impl for SingleHart {
    unsafe fn acquire() -> critical_section::RawRestoreState {}
    unsafe fn release(_: critical_section::RawRestoreState) {}
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    llext_fw::panicked(info)
}
