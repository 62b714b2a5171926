//! llext test firmware for AArch64 on QEMU `virt` (Cortex-A53, started at EL1 with the MMU off): stack,
//! FP/SIMD enabled (CPACR_EL1.FPEN), bss zeroed, then the shared firmware. Semihosting is `hlt #0xf000`;
//! code is made visible to instruction fetch by cleaning the data cache and invalidating the instruction
//! cache by line.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    ldr x0, =__stack_top",
    "    mov sp, x0",
    "    mov x0, #(3 << 20)",
    "    msr cpacr_el1, x0",
    // Exceptions (an undefined instruction, BRK, an abort) go to `fw_vectors`.
    "    ldr x0, =fw_vectors",
    "    msr vbar_el1, x0",
    "    isb",
    "    ldr x0, =__bss_start",
    "    ldr x1, =__bss_end",
    "1:  cmp x0, x1",
    "    b.hs 2f",
    "    strb wzr, [x0], #1",
    "    b 1b",
    "2:  bl fw_main",
    "3:  wfe",
    "    b 3b",
    ".ltorg",
    // Sixteen 128-byte entries, 2 KiB aligned; every one reports the exception and ends the run.
    ".section .text.fw_vectors, \"ax\"",
    ".balign 2048",
    "fw_vectors:",
    ".rept 16",
    "    mrs x0, esr_el1",
    "    mrs x1, elr_el1",
    "    mrs x2, far_el1",
    "    b fw_fault",
    ".balign 128",
    ".endr",
);

#[no_mangle]
extern "C" fn fw_main() -> ! {
    llext_fw::start("aarch64")
}

/// Reports an exception (from `fw_vectors`) by its syndrome's class, with the fault address register.
#[no_mangle]
extern "C" fn fw_fault(esr: usize, pc: usize, far: usize) -> ! {
    let what = match esr >> 26 {
        0x00 => "undefined instruction",
        0x21 => "instruction abort",
        0x22 => "PC alignment fault",
        0x25 => "data abort",
        0x26 => "SP alignment fault",
        0x3c => "BRK instruction",
        _ => "exception",
    };
    llext_fw::faulted(what, pc, far)
}

/// The semihosting trap: operation in w0, argument in x1, result in x0.
#[no_mangle]
pub extern "C" fn fw_semihost(op: usize, arg: usize) -> usize {
    let result: usize;
    // SAFETY: the semihosting trap reads the block at `arg` (valid for `op`, as the callers guarantee) and
    // changes no other state of this program.
    unsafe { asm!("hlt #0xf000", inout("x0") op => result, in("x1") arg, options(nostack)) };
    result
}

/// Cleans the data cache to the point of unification and invalidates the instruction cache over
/// `[ptr, ptr + len)`, line by line (line sizes from CTR_EL0).
#[no_mangle]
pub extern "C" fn fw_sync_code(ptr: *const u8, len: usize) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let dline = 4usize << ((ctr >> 16) & 0xf);
    let iline = 4usize << (ctr & 0xf);
    let start = ptr as usize;
    let end = start + len;
    let mut a = start & !(dline - 1);
    while a < end {
        // SAFETY: cache maintenance by address on memory this program owns.
        unsafe { asm!("dc cvau, {}", in(reg) a, options(nostack)) };
        a += dline;
    }
    // SAFETY: barrier only.
    unsafe { asm!("dsb ish", options(nostack)) };
    let mut a = start & !(iline - 1);
    while a < end {
        // SAFETY: cache maintenance by address on memory this program owns.
        unsafe { asm!("ic ivau, {}", in(reg) a, options(nostack)) };
        a += iline;
    }
    // SAFETY: barriers only.
    unsafe { asm!("dsb ish", "isb", options(nostack)) };
}

/// One core, interrupts never enabled: a critical section needs no locking.
struct SingleCore;
critical_section::set_impl!(SingleCore);

// SAFETY: nothing runs concurrently with the firmware's single thread of execution.
unsafe impl critical_section::Impl for SingleCore {
    unsafe fn acquire() -> critical_section::RawRestoreState {}
    unsafe fn release(_: critical_section::RawRestoreState) {}
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    llext_fw::panicked(info)
}
