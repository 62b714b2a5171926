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
    // Traps (an illegal instruction, a misaligned or faulting access) go to `fw_trap`, direct mode.
    "    la t0, fw_trap",
    "    csrw mtvec, t0",
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
    // A trap: its cause, PC and value to `fw_fault`, which reports it and ends the run.
    ".section .text.fw_trap, \"ax\"",
    ".balign 4",
    "fw_trap:",
    "    csrr a0, mcause",
    "    csrr a1, mepc",
    "    csrr a2, mtval",
    "    j fw_fault",
    // fence.i (Zifencei), spelled as its encoding for assemblers that want the extension named.
    ".section .text.fw_sync_code, \"ax\"",
    ".global fw_sync_code",
    "fw_sync_code:",
    "    fence rw, rw",
    "    .word 0x0000100f",
    "    ret",
);

// libgcc's millicode for `-msave-restore`, which the firmware exports: `call t0, __riscv_save_N` saves ra and
// s0..s(N-1) in a frame of (N + 1) words rounded up to 16 bytes, as GCC lays its frames out, ra at the top;
// `tail __riscv_restore_N` restores them, frees the frame and returns to the saved ra.
global_asm!(
    ".set XLENB, {xlen}",
    ".macro SREG reg, off",
    ".if XLENB == 8",
    "    sd \\reg, \\off(sp)",
    ".else",
    "    sw \\reg, \\off(sp)",
    ".endif",
    ".endm",
    ".macro LREG reg, off",
    ".if XLENB == 8",
    "    ld \\reg, \\off(sp)",
    ".else",
    "    lw \\reg, \\off(sp)",
    ".endif",
    ".endm",
    // The callee-saved registers in order: s0, s1, s2..s11; each below the previous one.
    ".macro SLOTS op, n, size",
    "    \\op ra, \\size - XLENB",
    ".if \\n >= 1", "    \\op s0, \\size - 2 * XLENB", ".endif",
    ".if \\n >= 2", "    \\op s1, \\size - 3 * XLENB", ".endif",
    ".if \\n >= 3", "    \\op s2, \\size - 4 * XLENB", ".endif",
    ".if \\n >= 4", "    \\op s3, \\size - 5 * XLENB", ".endif",
    ".if \\n >= 5", "    \\op s4, \\size - 6 * XLENB", ".endif",
    ".if \\n >= 6", "    \\op s5, \\size - 7 * XLENB", ".endif",
    ".if \\n >= 7", "    \\op s6, \\size - 8 * XLENB", ".endif",
    ".if \\n >= 8", "    \\op s7, \\size - 9 * XLENB", ".endif",
    ".if \\n >= 9", "    \\op s8, \\size - 10 * XLENB", ".endif",
    ".if \\n >= 10", "    \\op s9, \\size - 11 * XLENB", ".endif",
    ".if \\n >= 11", "    \\op s10, \\size - 12 * XLENB", ".endif",
    ".if \\n >= 12", "    \\op s11, \\size - 13 * XLENB", ".endif",
    ".endm",
    ".macro SAVE_RESTORE n",
    ".section .text.__riscv_save_\\n, \"ax\"",
    ".globl __riscv_save_\\n",
    "__riscv_save_\\n:",
    "    addi sp, sp, -((((\\n) + 1) * XLENB + 15) / 16) * 16",
    "    SLOTS SREG, \\n, ((((\\n) + 1) * XLENB + 15) / 16) * 16",
    "    jr t0",
    ".section .text.__riscv_restore_\\n, \"ax\"",
    ".globl __riscv_restore_\\n",
    "__riscv_restore_\\n:",
    "    SLOTS LREG, \\n, ((((\\n) + 1) * XLENB + 15) / 16) * 16",
    "    addi sp, sp, ((((\\n) + 1) * XLENB + 15) / 16) * 16",
    "    ret",
    ".endm",
    "SAVE_RESTORE 0",
    "SAVE_RESTORE 1",
    "SAVE_RESTORE 2",
    "SAVE_RESTORE 3",
    "SAVE_RESTORE 4",
    "SAVE_RESTORE 5",
    "SAVE_RESTORE 6",
    "SAVE_RESTORE 7",
    "SAVE_RESTORE 8",
    "SAVE_RESTORE 9",
    "SAVE_RESTORE 10",
    "SAVE_RESTORE 11",
    "SAVE_RESTORE 12",
    xlen = const core::mem::size_of::<usize>(),
);

#[cfg(target_arch = "riscv32")]
const TARGET: &str = "riscv32";
#[cfg(target_arch = "riscv64")]
const TARGET: &str = "riscv64";

#[no_mangle]
extern "C" fn fw_main() -> ! {
    llext_fw::start(TARGET)
}

/// Reports a trap (from `fw_trap`) by its `mcause`, with `mtval` (the instruction or address).
#[no_mangle]
extern "C" fn fw_fault(cause: usize, pc: usize, value: usize) -> ! {
    let what = match cause {
        0 => "instruction address misaligned",
        1 => "instruction access fault",
        2 => "illegal instruction",
        3 => "breakpoint",
        4 => "load address misaligned",
        5 => "load access fault",
        6 => "store address misaligned",
        7 => "store access fault",
        _ => "trap",
    };
    llext_fw::faulted(what, pc, value)
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
