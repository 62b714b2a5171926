//! What every llext test firmware shares: console and files over semihosting, the heap, the export table
//! (a small C library, compiler-runtime helpers, two functions and an object of the firmware's own), the
//! test cases over the embedded fixture extensions, and the `qemu-run` mode.
//!
//! A target crate provides two C-ABI functions — `fw_semihost(op, arg)` (the semihosting trap) and
//! `fw_sync_code(ptr, len)` (make written code visible to instruction fetch) — sets up a stack, and calls
//! [`start`].
//!
//! Without semihosting arguments the firmware runs its tests and prints one line per case and
//! `N passed, N failed`: every fixture copied into RAM, then again loaded in place from the firmware image
//! (`Storage::InPlace`: read-only sections that nothing patches stay where they are). With
//! `run [--call SYM] [--arg INT]... FILE...` (QEMU `-semihosting-config arg=...`) it loads the files in
//! order, calls `SYM` and prints `returned: N`; with `footprint` it prints the heap and extension memory
//! each fixture takes (`cargo xtask footprint`). The exit status reaches the host through
//! `SYS_EXIT_EXTENDED`.
//!
//! [`start_baseline`] and [`start_loader`] are the two halves of the size comparison: the same runtime,
//! heap, console and C library, without and with the loader.

#![no_std]

extern crate alloc;

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::fmt::Write as _;
use core::sync::atomic::{AtomicUsize, Ordering};

use llext::{
    ArenaMemory, Context, Export, ExportTable, ExtId, LoadOptions, Registry, RestoreOptions,
    SaveOptions, Storage, Unloaded,
};

mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

extern "C" {
    /// The semihosting call of the target: operation in the first register, argument (often a pointer to
    /// a parameter block of pointer-sized fields) in the second.
    fn fw_semihost(op: usize, arg: usize) -> usize;
    /// Makes `len` bytes of freshly written code at `ptr` visible to instruction fetch.
    fn fw_sync_code(ptr: *const u8, len: usize);
}

// Semihosting operations (Arm "Semihosting for AArch32 and AArch64", also used by RISC-V).
const SYS_OPEN: usize = 0x01;
const SYS_CLOSE: usize = 0x02;
const SYS_WRITE: usize = 0x05;
const SYS_READ: usize = 0x06;
const SYS_FLEN: usize = 0x0c;
const SYS_GET_CMDLINE: usize = 0x15;
const SYS_EXIT_EXTENDED: usize = 0x20;
const ADP_STOPPED_APPLICATION_EXIT: usize = 0x20026;

static STDOUT: AtomicUsize = AtomicUsize::new(usize::MAX);

#[global_allocator]
static HEAP: Heap = Heap {
    inner: embedded_alloc::LlffHeap::empty(),
    used: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
};
const HEAP_SIZE: usize = 512 * 1024;
static mut HEAP_MEMORY: [u8; HEAP_SIZE] = [0; HEAP_SIZE];

/// The heap, counting the bytes in use and their high-water mark (for the footprint report).
struct Heap {
    inner: embedded_alloc::LlffHeap,
    used: AtomicUsize,
    peak: AtomicUsize,
}

impl Heap {
    /// Bytes in use now.
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The most bytes in use since the last reset.
    fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Starts a new high-water mark from the bytes in use now.
    fn reset_peak(&self) {
        self.peak.store(self.used(), Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the linked-list heap, which upholds the allocator contract; the counters
// only observe.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            let now = self.used.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { self.inner.dealloc(ptr, layout) };
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

fn semihost(op: usize, arg: usize) -> usize {
    // SAFETY: the target's trap takes any operation; every caller passes a block valid for that operation.
    unsafe { fw_semihost(op, arg) }
}

/// Writes bytes to the host's standard output.
#[no_mangle]
pub extern "C" fn fw_write(bytes: *const u8, len: usize) {
    let handle = STDOUT.load(Ordering::Relaxed);
    if handle == usize::MAX || len == 0 {
        return;
    }
    let block = [handle, bytes as usize, len];
    semihost(SYS_WRITE, block.as_ptr() as usize);
}

/// The C library's allocation hook.
#[no_mangle]
pub extern "C" fn fw_alloc(size: usize, align: usize) -> *mut u8 {
    match core::alloc::Layout::from_size_align(size.max(1), align) {
        // SAFETY: the layout has a non-zero size.
        Ok(layout) => unsafe { alloc::alloc::alloc(layout) },
        Err(_) => core::ptr::null_mut(),
    }
}

/// The C library's release hook.
#[no_mangle]
pub extern "C" fn fw_free(ptr: *mut u8, size: usize, align: usize) {
    if let Ok(layout) = core::alloc::Layout::from_size_align(size.max(1), align) {
        // SAFETY: `ptr` came from `fw_alloc` with this size and alignment (the C library records both).
        unsafe { alloc::alloc::dealloc(ptr, layout) }
    }
}

struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        fw_write(s.as_ptr(), s.len());
        Ok(())
    }
}

/// `println!` to the semihosting console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        $crate::print_fmt(format_args!($($arg)*));
        $crate::print_fmt(format_args!("\n"));
    }};
}

#[doc(hidden)]
pub fn print_fmt(args: core::fmt::Arguments<'_>) {
    let _ = Console.write_fmt(args);
}

/// Ends the emulation with `code` as the exit status.
pub fn exit(code: usize) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code];
    semihost(SYS_EXIT_EXTENDED, block.as_ptr() as usize);
    loop {
        core::hint::spin_loop();
    }
}

/// The registry of the `qemu-run` mode while it runs extension code, for [`faulted`]'s report (null
/// otherwise).
static RUN_REGISTRY: core::sync::atomic::AtomicPtr<Registry<ArenaMemory<'static>>> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Publishes a registry in [`RUN_REGISTRY`] for as long as the borrow lasts, so that it cannot outlive
/// the registry.
struct Published<'a>(core::marker::PhantomData<&'a Registry<ArenaMemory<'static>>>);

impl<'a> Published<'a> {
    fn new(registry: &'a Registry<ArenaMemory<'static>>) -> Published<'a> {
        let ptr = core::ptr::from_ref(registry).cast_mut();
        RUN_REGISTRY.store(ptr, core::sync::atomic::Ordering::Release);
        Published(core::marker::PhantomData)
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        RUN_REGISTRY.store(core::ptr::null_mut(), core::sync::atomic::Ordering::Release);
    }
}

/// For the target's fault handler: reports a CPU fault (`what`, at `pc`, with the target's `detail`: a
/// fault status or the faulting address) and, if extension code was running, where in it
/// (`Registry::locate_with`, which neither allocates nor waits for the registry's lock); then exits with
/// status 134. An extension that faults ends the run with this report instead of hanging the firmware. A
/// fault while reporting one ends the run at once.
pub fn faulted(what: &str, pc: usize, detail: usize) -> ! {
    static REPORTING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if REPORTING.swap(true, core::sync::atomic::Ordering::AcqRel) {
        println!("fault: {what} at pc {pc:#x} ({detail:#x}) while reporting a fault");
        exit(134);
    }
    let registry = RUN_REGISTRY.load(core::sync::atomic::Ordering::Acquire);
    // SAFETY: `run_files` publishes its registry only while it is alive (`Published` borrows it), and
    // this handler runs on the one core, interrupting code that holds that borrow.
    match unsafe { registry.as_ref() } {
        None => {
            println!("fault: {what} at pc {pc:#x} ({detail:#x}), no extension code was running")
        }
        Some(r) => {
            let reported = r.locate_with(pc, |at| {
                println!("fault: {what} at pc {pc:#x} ({detail:#x}), {at}");
            });
            if reported.is_none() {
                println!(
                    "fault: {what} at pc {pc:#x} ({detail:#x}), not in an extension's memory (or the \
                     registry was in use)"
                );
            }
        }
    }
    exit(134)
}

/// For the target's panic handler: prints the panic and exits with status 101.
pub fn panicked(info: &core::panic::PanicInfo<'_>) -> ! {
    print_fmt(format_args!("panic: {info}\n"));
    exit(101)
}

fn open_stdout() {
    let name = b":tt\0";
    // Mode 4 is "w"; the length excludes the NUL.
    let block = [name.as_ptr() as usize, 4, 3];
    STDOUT.store(
        semihost(SYS_OPEN, block.as_ptr() as usize),
        Ordering::Relaxed,
    );
}

fn command_line() -> String {
    let mut buf = [0u8; 512];
    let block = [buf.as_mut_ptr() as usize, buf.len()];
    if semihost(SYS_GET_CMDLINE, block.as_ptr() as usize) != 0 {
        return String::new();
    }
    // The host writes a NUL-terminated string (and, per the specification, its length into the block).
    let len = block[1].min(buf.len());
    let text = buf.get(..len).unwrap_or(&[]);
    let text = text.split(|&b| b == 0).next().unwrap_or(&[]);
    String::from_utf8_lossy(text).into_owned()
}

/// Reads a whole host file.
fn read_file(path: &str) -> Result<Vec<u8>, String> {
    let mut name: Vec<u8> = path.as_bytes().to_vec();
    name.push(0);
    let block = [name.as_ptr() as usize, 0, path.len()];
    let handle = semihost(SYS_OPEN, block.as_ptr() as usize);
    if handle == usize::MAX {
        return Err(alloc::format!("cannot open {path} on the host"));
    }
    let len = semihost(SYS_FLEN, [handle].as_ptr() as usize);
    if len == usize::MAX {
        return Err(alloc::format!("cannot size {path}"));
    }
    // A file larger than the heap is an error line, not an allocation-failure panic (a review's 2.7 MB
    // opt-level 0 object ended `qemu-run` with exit status 101).
    let mut data = Vec::new();
    if data.try_reserve_exact(len).is_err() {
        semihost(SYS_CLOSE, [handle].as_ptr() as usize);
        return Err(alloc::format!(
            "{path}: {len} bytes do not fit in the firmware's heap"
        ));
    }
    data.resize(len, 0);
    let block = [handle, data.as_mut_ptr() as usize, len];
    let left = semihost(SYS_READ, block.as_ptr() as usize);
    semihost(SYS_CLOSE, [handle].as_ptr() as usize);
    if left != 0 {
        return Err(alloc::format!("short read of {path}"));
    }
    Ok(data)
}

/// Everything the firmware exports to extensions.
fn exports() -> Vec<Export> {
    extern "C" {
        fn printf(fmt: *const u8, ...) -> i32;
        fn puts(s: *const u8) -> i32;
        fn putchar(c: i32) -> i32;
        fn malloc(size: usize) -> *mut u8;
        fn calloc(count: usize, size: usize) -> *mut u8;
        fn realloc(ptr: *mut u8, size: usize) -> *mut u8;
        fn free(ptr: *mut u8);
        fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8;
        fn memmove(d: *mut u8, s: *const u8, n: usize) -> *mut u8;
        fn memset(d: *mut u8, c: i32, n: usize) -> *mut u8;
        fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32;
        fn strlen(s: *const u8) -> usize;
        fn strcmp(a: *const u8, b: *const u8) -> i32;
        fn strncmp(a: *const u8, b: *const u8, n: usize) -> i32;
        fn strcpy(d: *mut u8, s: *const u8) -> *mut u8;
        fn vprintf(fmt: *const u8, ap: *mut u8) -> i32;
        fn ffs(i: i32) -> i32;
        fn fw_twice(x: isize) -> isize;
        static fw_value: isize;
    }
    let mut list = alloc::vec![
        Export::new("printf", printf as *const ()),
        Export::new("puts", puts as *const ()),
        Export::new("putchar", putchar as *const ()),
        Export::new("malloc", malloc as *const ()),
        Export::new("calloc", calloc as *const ()),
        Export::new("realloc", realloc as *const ()),
        Export::new("free", free as *const ()),
        Export::new("memcpy", memcpy as *const ()),
        Export::new("memmove", memmove as *const ()),
        Export::new("memset", memset as *const ()),
        Export::new("memcmp", memcmp as *const ()),
        Export::new("strlen", strlen as *const ()),
        Export::new("strcmp", strcmp as *const ()),
        Export::new("strncmp", strncmp as *const ()),
        Export::new("strcpy", strcpy as *const ()),
        Export::new("vprintf", vprintf as *const ()),
        Export::new("ffs", ffs as *const ()),
        Export::new("fw_twice", fw_twice as *const ()),
        Export::new("fw_value", core::ptr::addr_of!(fw_value) as *const ()),
    ];
    list.extend(runtime_helpers());
    list
}

/// Declares compiler-runtime helpers (from Rust's compiler_builtins, or [`bits`]) and lists them as
/// exports under their own names.
macro_rules! helpers {
    ($($name:ident),* $(,)?) => {{
        extern "C" {
            $(fn $name();)*
        }
        [$(Export::new(stringify!($name), $name as *const ())),*]
    }};
}

/// The compiler-runtime helpers the target's C compilers call (the fixture `numeric.c` calls most of
/// them): integer division and shifts, soft-float arithmetic where the FPU lacks it, and bit operations.
fn runtime_helpers() -> Vec<Export> {
    let mut list = Vec::new();
    // Bit operations: gcc calls these where the instruction set has no instruction for them.
    list.extend_from_slice(&helpers!(
        __popcountsi2,
        __popcountdi2,
        __paritysi2,
        __paritydi2,
        __clzsi2,
        __clzdi2,
        __ctzsi2,
        __ctzdi2,
        __bswapsi2,
        __bswapdi2,
        __ffssi2,
        __ffsdi2,
    ));
    #[cfg(any(target_arch = "arm", target_arch = "riscv32"))]
    list.extend_from_slice(&helpers!(
        __atomic_load_8,
        __atomic_store_8,
        __atomic_exchange_8,
        __atomic_compare_exchange_8,
        __atomic_fetch_add_8,
        __atomic_add_fetch_8,
        __atomic_fetch_sub_8,
        __atomic_sub_fetch_8,
        __atomic_fetch_and_8,
        __atomic_and_fetch_8,
        __atomic_fetch_or_8,
        __atomic_or_fetch_8,
        __atomic_fetch_xor_8,
        __atomic_xor_fetch_8,
        __atomic_fetch_nand_8,
        __atomic_nand_fetch_8,
    ));
    #[cfg(target_arch = "arm")]
    {
        // Run-time ABI for the Arm architecture: integer division and shifts, memory, and (the FPU of a
        // Cortex-M4 does single precision only) double arithmetic, comparisons and conversions; the
        // single-precision ones too, for objects built with -mfloat-abi=soft or softfp.
        list.extend_from_slice(&helpers!(
            __aeabi_uldivmod,
            __aeabi_ldivmod,
            __aeabi_uidiv,
            __aeabi_idiv,
            __aeabi_uidivmod,
            __aeabi_idivmod,
            __aeabi_llsl,
            __aeabi_llsr,
            __aeabi_lasr,
            __aeabi_lmul,
            __aeabi_memcpy,
            __aeabi_memcpy4,
            __aeabi_memcpy8,
            __aeabi_memmove,
            __aeabi_memmove4,
            __aeabi_memmove8,
            __aeabi_memset,
            __aeabi_memset4,
            __aeabi_memset8,
            __aeabi_memclr,
            __aeabi_memclr4,
            __aeabi_memclr8,
        ));
        list.extend_from_slice(&helpers!(
            __aeabi_dadd,
            __aeabi_dsub,
            __aeabi_dmul,
            __aeabi_ddiv,
            __aeabi_dcmpeq,
            __aeabi_dcmplt,
            __aeabi_dcmple,
            __aeabi_dcmpge,
            __aeabi_dcmpgt,
            __aeabi_dcmpun,
            __aeabi_d2iz,
            __aeabi_d2uiz,
            __aeabi_d2lz,
            __aeabi_d2ulz,
            __aeabi_i2d,
            __aeabi_ui2d,
            __aeabi_l2d,
            __aeabi_ul2d,
            __aeabi_f2d,
            __aeabi_d2f,
            __aeabi_fadd,
            __aeabi_fsub,
            __aeabi_fmul,
            __aeabi_fdiv,
            __aeabi_fcmpeq,
            __aeabi_fcmplt,
            __aeabi_fcmple,
            __aeabi_fcmpge,
            __aeabi_fcmpgt,
            __aeabi_fcmpun,
            __aeabi_f2iz,
            __aeabi_f2uiz,
            __aeabi_f2lz,
            __aeabi_f2ulz,
            __aeabi_i2f,
            __aeabi_ui2f,
            __aeabi_l2f,
            __aeabi_ul2f,
        ));
    }
    #[cfg(target_arch = "riscv32")]
    {
        // libgcc's names: 64-bit integer division and shifts, and (rv32imac has no FPU) every float and
        // double operation.
        list.extend_from_slice(&helpers!(
            __udivdi3, __divdi3, __umoddi3, __moddi3, __lshrdi3, __ashldi3, __ashrdi3, __muldi3,
        ));
        // 32-bit multiplication and division, which code built without M (`-march=rv32i`, `rv32ic`) calls.
        list.extend_from_slice(&helpers!(
            __mulsi3, __divsi3, __udivsi3, __modsi3, __umodsi3
        ));
        list.extend_from_slice(&helpers!(
            __adddf3,
            __subdf3,
            __muldf3,
            __divdf3,
            __eqdf2,
            __nedf2,
            __ltdf2,
            __ledf2,
            __gtdf2,
            __gedf2,
            __unorddf2,
            __fixdfsi,
            __fixunsdfsi,
            __fixdfdi,
            __fixunsdfdi,
            __floatsidf,
            __floatunsidf,
            __floatdidf,
            __floatundidf,
            __extendsfdf2,
            __truncdfsf2,
            __addsf3,
            __subsf3,
            __mulsf3,
            __divsf3,
            __eqsf2,
            __nesf2,
            __ltsf2,
            __lesf2,
            __gtsf2,
            __gesf2,
            __unordsf2,
            __fixsfsi,
            __fixunssfsi,
            __fixsfdi,
            __fixunssfdi,
            __floatsisf,
            __floatunsisf,
            __floatdisf,
            __floatundisf,
        ));
    }
    #[cfg(any(target_arch = "riscv32", target_arch = "riscv64"))]
    {
        // Half-precision conversions, which Rust's `core` calls for `f16` (a fat-LTO Rust staticlib that
        // carries `core` needs them: a user trial).
        list.extend_from_slice(&helpers!(__truncsfhf2, __extendhfsf2));
        // `-msave-restore`'s millicode (the RISC-V firmware's start-up assembly).
        list.extend_from_slice(&helpers!(
            __riscv_save_0,
            __riscv_save_1,
            __riscv_save_2,
            __riscv_save_3,
            __riscv_save_4,
            __riscv_save_5,
            __riscv_save_6,
            __riscv_save_7,
            __riscv_save_8,
            __riscv_save_9,
            __riscv_save_10,
            __riscv_save_11,
            __riscv_save_12,
            __riscv_restore_0,
            __riscv_restore_1,
            __riscv_restore_2,
            __riscv_restore_3,
            __riscv_restore_4,
            __riscv_restore_5,
            __riscv_restore_6,
            __riscv_restore_7,
            __riscv_restore_8,
            __riscv_restore_9,
            __riscv_restore_10,
            __riscv_restore_11,
            __riscv_restore_12,
        ));
    }
    #[cfg(target_arch = "aarch64")]
    {
        // libgcc's outline atomics, which the Linux-targeted gcc (Debian's only AArch64 gcc) calls for every
        // atomic operation unless given -mno-outline-atomics. compiler_builtins defines them when the
        // firmware is built with `-C target-feature=+outline-atomics` (.cargo/config.toml); without LSE
        // detection they use exclusive loads and stores.
        list.extend_from_slice(&helpers!(
            __aarch64_cas1_relax,
            __aarch64_cas2_relax,
            __aarch64_cas4_relax,
            __aarch64_cas8_relax,
            __aarch64_cas16_relax,
            __aarch64_swp1_relax,
            __aarch64_swp2_relax,
            __aarch64_swp4_relax,
            __aarch64_swp8_relax,
            __aarch64_ldadd1_relax,
            __aarch64_ldadd2_relax,
            __aarch64_ldadd4_relax,
            __aarch64_ldadd8_relax,
            __aarch64_ldclr1_relax,
            __aarch64_ldclr2_relax,
            __aarch64_ldclr4_relax,
            __aarch64_ldclr8_relax,
            __aarch64_ldeor1_relax,
            __aarch64_ldeor2_relax,
            __aarch64_ldeor4_relax,
            __aarch64_ldeor8_relax,
            __aarch64_ldset1_relax,
            __aarch64_ldset2_relax,
            __aarch64_ldset4_relax,
            __aarch64_ldset8_relax,
            __aarch64_cas1_acq,
            __aarch64_cas2_acq,
            __aarch64_cas4_acq,
            __aarch64_cas8_acq,
            __aarch64_cas16_acq,
            __aarch64_swp1_acq,
            __aarch64_swp2_acq,
            __aarch64_swp4_acq,
            __aarch64_swp8_acq,
            __aarch64_ldadd1_acq,
            __aarch64_ldadd2_acq,
            __aarch64_ldadd4_acq,
            __aarch64_ldadd8_acq,
            __aarch64_ldclr1_acq,
            __aarch64_ldclr2_acq,
            __aarch64_ldclr4_acq,
            __aarch64_ldclr8_acq,
            __aarch64_ldeor1_acq,
            __aarch64_ldeor2_acq,
            __aarch64_ldeor4_acq,
            __aarch64_ldeor8_acq,
            __aarch64_ldset1_acq,
            __aarch64_ldset2_acq,
            __aarch64_ldset4_acq,
            __aarch64_ldset8_acq,
            __aarch64_cas1_rel,
            __aarch64_cas2_rel,
            __aarch64_cas4_rel,
            __aarch64_cas8_rel,
            __aarch64_cas16_rel,
            __aarch64_swp1_rel,
            __aarch64_swp2_rel,
            __aarch64_swp4_rel,
            __aarch64_swp8_rel,
            __aarch64_ldadd1_rel,
            __aarch64_ldadd2_rel,
            __aarch64_ldadd4_rel,
            __aarch64_ldadd8_rel,
            __aarch64_ldclr1_rel,
            __aarch64_ldclr2_rel,
            __aarch64_ldclr4_rel,
            __aarch64_ldclr8_rel,
            __aarch64_ldeor1_rel,
            __aarch64_ldeor2_rel,
            __aarch64_ldeor4_rel,
            __aarch64_ldeor8_rel,
            __aarch64_ldset1_rel,
            __aarch64_ldset2_rel,
            __aarch64_ldset4_rel,
            __aarch64_ldset8_rel,
            __aarch64_cas1_acq_rel,
            __aarch64_cas2_acq_rel,
            __aarch64_cas4_acq_rel,
            __aarch64_cas8_acq_rel,
            __aarch64_cas16_acq_rel,
            __aarch64_swp1_acq_rel,
            __aarch64_swp2_acq_rel,
            __aarch64_swp4_acq_rel,
            __aarch64_swp8_acq_rel,
            __aarch64_ldadd1_acq_rel,
            __aarch64_ldadd2_acq_rel,
            __aarch64_ldadd4_acq_rel,
            __aarch64_ldadd8_acq_rel,
            __aarch64_ldclr1_acq_rel,
            __aarch64_ldclr2_acq_rel,
            __aarch64_ldclr4_acq_rel,
            __aarch64_ldclr8_acq_rel,
            __aarch64_ldeor1_acq_rel,
            __aarch64_ldeor2_acq_rel,
            __aarch64_ldeor4_acq_rel,
            __aarch64_ldeor8_acq_rel,
            __aarch64_ldset1_acq_rel,
            __aarch64_ldset2_acq_rel,
            __aarch64_ldset4_acq_rel,
            __aarch64_ldset8_acq_rel,
        ));
    }
    #[cfg(any(target_arch = "riscv64", target_arch = "aarch64"))]
    {
        // 128-bit integer arithmetic (`__int128`); the FPU does the rest.
        list.extend_from_slice(&helpers!(
            __udivti3, __divti3, __umodti3, __modti3, __multi3
        ));
    }
    list
}

/// libatomic's 64-bit atomics, which C compilers call on the 32-bit targets (neither Cortex-M nor rv32imac
/// has 64-bit atomic instructions): each operation runs with interrupts masked, which makes it atomic on
/// this single-core firmware. The memory order arguments need nothing more here.
#[cfg(any(target_arch = "arm", target_arch = "riscv32"))]
mod atomic64 {
    /// Runs `f` with interrupts masked, restoring the mask as it was.
    fn critical<R>(f: impl FnOnce() -> R) -> R {
        #[cfg(target_arch = "arm")]
        {
            let primask: u32;
            // SAFETY: reads PRIMASK and masks interrupts; the mask is restored below.
            unsafe { core::arch::asm!("mrs {}, PRIMASK", "cpsid i", out(reg) primask) };
            let r = f();
            // SAFETY: restores the PRIMASK read above.
            unsafe { core::arch::asm!("msr PRIMASK, {}", in(reg) primask) };
            r
        }
        #[cfg(target_arch = "riscv32")]
        {
            let mstatus: usize;
            // SAFETY: clears mstatus.MIE (the firmware runs in machine mode) and reads the old value; it is
            // restored below.
            unsafe { core::arch::asm!("csrrci {}, mstatus, 8", out(reg) mstatus) };
            let r = f();
            // SAFETY: sets MIE back if it was set.
            unsafe { core::arch::asm!("csrs mstatus, {}", in(reg) mstatus & 8) };
            r
        }
    }

    /// `uint64_t __atomic_load_8(const volatile void *, int)`.
    ///
    /// # Safety
    /// `ptr` is valid and 8-byte aligned, as the C caller's object is.
    #[no_mangle]
    pub unsafe extern "C" fn __atomic_load_8(ptr: *const u64, _order: i32) -> u64 {
        // SAFETY: the caller's contract.
        critical(|| unsafe { ptr.read_volatile() })
    }

    /// `void __atomic_store_8(volatile void *, uint64_t, int)`.
    ///
    /// # Safety
    /// As [`__atomic_load_8`].
    #[no_mangle]
    pub unsafe extern "C" fn __atomic_store_8(ptr: *mut u64, value: u64, _order: i32) {
        // SAFETY: the caller's contract.
        critical(|| unsafe { ptr.write_volatile(value) })
    }

    /// `uint64_t __atomic_exchange_8(volatile void *, uint64_t, int)`.
    ///
    /// # Safety
    /// As [`__atomic_load_8`].
    #[no_mangle]
    pub unsafe extern "C" fn __atomic_exchange_8(ptr: *mut u64, value: u64, _order: i32) -> u64 {
        critical(|| {
            // SAFETY: the caller's contract.
            unsafe {
                let old = ptr.read_volatile();
                ptr.write_volatile(value);
                old
            }
        })
    }

    /// `bool __atomic_compare_exchange_8(volatile void *, void *expected, uint64_t, int, int)`: stores
    /// `desired` if the value is `*expected`, else writes the value to `*expected`.
    ///
    /// # Safety
    /// As [`__atomic_load_8`], and `expected` is valid too.
    #[no_mangle]
    pub unsafe extern "C" fn __atomic_compare_exchange_8(
        ptr: *mut u64,
        expected: *mut u64,
        desired: u64,
        _success: i32,
        _failure: i32,
    ) -> bool {
        critical(|| {
            // SAFETY: the caller's contract.
            unsafe {
                let now = ptr.read_volatile();
                if now == expected.read() {
                    ptr.write_volatile(desired);
                    true
                } else {
                    expected.write(now);
                    false
                }
            }
        })
    }

    /// Read-modify-write operations: `$fetch` returns the old value, `$then` the new one.
    macro_rules! rmw {
        ($($fetch:ident, $then:ident: |$old:ident, $value:ident| $new:expr;)*) => {$(
            /// libatomic's read-modify-write returning the old value.
            ///
            /// # Safety
            /// As [`__atomic_load_8`].
            #[no_mangle]
            pub unsafe extern "C" fn $fetch(ptr: *mut u64, $value: u64, _order: i32) -> u64 {
                critical(|| {
                    // SAFETY: the caller's contract.
                    unsafe {
                        let $old = ptr.read_volatile();
                        ptr.write_volatile($new);
                        $old
                    }
                })
            }

            /// libatomic's read-modify-write returning the new value.
            ///
            /// # Safety
            /// As [`__atomic_load_8`].
            #[no_mangle]
            pub unsafe extern "C" fn $then(ptr: *mut u64, $value: u64, _order: i32) -> u64 {
                critical(|| {
                    // SAFETY: the caller's contract.
                    unsafe {
                        let $old = ptr.read_volatile();
                        let new = $new;
                        ptr.write_volatile(new);
                        new
                    }
                })
            }
        )*};
    }

    rmw! {
        __atomic_fetch_add_8, __atomic_add_fetch_8: |old, value| old.wrapping_add(value);
        __atomic_fetch_sub_8, __atomic_sub_fetch_8: |old, value| old.wrapping_sub(value);
        __atomic_fetch_and_8, __atomic_and_fetch_8: |old, value| old & value;
        __atomic_fetch_or_8, __atomic_or_fetch_8: |old, value| old | value;
        __atomic_fetch_xor_8, __atomic_xor_fetch_8: |old, value| old ^ value;
        __atomic_fetch_nand_8, __atomic_nand_fetch_8: |old, value| !(old & value);
    }
}

/// Bit operations C compilers call that Rust's compiler_builtins lacks: population count and parity,
/// computed without the intrinsics (which could lower to a call of the very function being defined), and
/// find-first-set (from `trailing_zeros`, which lowers to an instruction or to `__ctz*`).
mod bits {
    fn popcount64(mut x: u64) -> i32 {
        x -= (x >> 1) & 0x5555_5555_5555_5555;
        x = (x & 0x3333_3333_3333_3333) + ((x >> 2) & 0x3333_3333_3333_3333);
        x = (x + (x >> 4)) & 0x0f0f_0f0f_0f0f_0f0f;
        (x.wrapping_mul(0x0101_0101_0101_0101) >> 56) as i32
    }

    /// `int __popcountsi2(unsigned int)`.
    #[no_mangle]
    pub extern "C" fn __popcountsi2(x: u32) -> i32 {
        popcount64(u64::from(x))
    }

    /// `int __popcountdi2(unsigned long long)`.
    #[no_mangle]
    pub extern "C" fn __popcountdi2(x: u64) -> i32 {
        popcount64(x)
    }

    /// `int __paritysi2(unsigned int)`.
    #[no_mangle]
    pub extern "C" fn __paritysi2(x: u32) -> i32 {
        popcount64(u64::from(x)) & 1
    }

    /// `int __paritydi2(unsigned long long)`.
    #[no_mangle]
    pub extern "C" fn __paritydi2(x: u64) -> i32 {
        popcount64(x) & 1
    }

    /// `int __ffssi2(int)`: the lowest set bit, from 1 (0 if none).
    #[no_mangle]
    pub extern "C" fn __ffssi2(x: i32) -> i32 {
        if x == 0 {
            0
        } else {
            x.trailing_zeros() as i32 + 1
        }
    }

    /// `int __ffsdi2(long long)`: the lowest set bit, from 1 (0 if none).
    #[no_mangle]
    pub extern "C" fn __ffsdi2(x: i64) -> i32 {
        if x == 0 {
            0
        } else {
            x.trailing_zeros() as i32 + 1
        }
    }
}

/// An extension function as the tests call it: four `long` arguments, one `long` result.
type ExtFn = extern "C" fn(isize, isize, isize, isize) -> isize;

fn call<M: llext::Memory>(
    registry: &Registry<M>,
    id: ExtId,
    symbol: &str,
    args: [isize; 4],
) -> Result<isize, String> {
    let addr = registry
        .extension_symbol(id, symbol)
        .map_err(|e| alloc::format!("{e}"))?
        .ok_or_else(|| alloc::format!("no symbol {symbol}"))?;
    // SAFETY: the fixtures define `symbol` as `long symbol(long, long, long, long)` in sealed code.
    let f: ExtFn = unsafe { core::mem::transmute::<usize, ExtFn>(addr) };
    Ok(f(args[0], args[1], args[2], args[3]))
}

/// The C expression of `wide.c`, computed here.
fn wide_expected(a: isize, b: isize, c: isize, d: isize) -> isize {
    let x = (a as i64 as u64)
        .wrapping_mul(0x1_0000_0001)
        .wrapping_add(b as i64 as u64);
    let y = (c as i64 as u64).wrapping_add(7);
    let s = (x as i64).wrapping_neg() / (y.wrapping_add(1) as i64);
    let mix = (x / y)
        .wrapping_add(x % y)
        .wrapping_add(x >> ((c as u32) & 31))
        .wrapping_add(x.wrapping_mul(d as i64 as u64) % 1_000_003);
    mix.wrapping_add(s as u64) as isize
}

struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn check(&mut self, case: &str, got: Result<isize, String>, want: isize) {
        match got {
            Ok(v) if v == want => {
                self.passed += 1;
                println!("ok   {case} = {v}");
            }
            Ok(v) => {
                self.failed += 1;
                println!("FAIL {case} = {v}, expected {want}");
            }
            Err(e) => {
                self.failed += 1;
                println!("FAIL {case}: {e}");
            }
        }
    }
}

fn fixture(name: &str) -> Option<&'static [u8]> {
    fixtures::FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The fixtures that stand alone: the function the tests call, its arguments and its expected result.
fn single_case(stem: &str) -> Option<(&'static str, [isize; 4], isize)> {
    match stem {
        "basic" => Some(("basic_main", [1, 10, 3, 2], 1323)),
        "wide" => Some(("wide_main", [5, 6, 3, 2], wide_expected(5, 6, 3, 2))),
        "ctor" => Some(("ctor_main", [0; 4], 12)),
        "leaf" => Some(("leaf_main", [6, 5, 9, 4], 42)),
        "weak" => Some(("weak_main", [5, 7, 12, 10], 145)),
        "numeric" => Some(("numeric_main", [3, 7, -2, 1000], 4242)),
        "aligned" => Some(("aligned_main", [7, 5, 4, 6], 50)),
        "logging" => Some(("logging_main", [1000, 1000, 1000, 0], 440413)),
        "atomic64" => Some(("atomic64_main", [3, 5, 7, 11], 1101409)),
        "saves" => Some(("saves_main", [5, 6, 7, 8], 339)),
        "rsext" => Some(("rs_main", [10, 3, 0, 0], rs_expected(10, 3))),
        // zlib's deflate and inflate with a driver (`crates/llext-fixtures/zlib`): what the host computed.
        "zlib" => Some((
            "zlib_main",
            [fixtures::ZLIB_SEED, 0, 0, 0],
            fixtures::ZLIB_EXPECTED,
        )),
        _ => None,
    }
}

/// The fixtures this firmware must refuse: what for, and the error that says so.
fn refusal(stem: &str) -> Option<(&'static str, fn(&llext::Error) -> bool)> {
    match stem {
        "armstate" => Some(("A32 code", |e| matches!(e, llext::Error::ArmState { .. }))),
        "floatabi" => Some(("float ABI", |e| matches!(e, llext::Error::FloatAbi { .. }))),
        "isa" => Some(("instruction set", |e| matches!(e, llext::Error::Isa { .. }))),
        _ => None,
    }
}

/// How a case loads its extensions: copied into RAM, or in place from the firmware image.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Copy,
    InPlace,
}

fn load<M: llext::Memory>(
    registry: &Registry<M>,
    name: &str,
    elf: &'static [u8],
    mode: Mode,
) -> Result<ExtId, llext::Error> {
    match mode {
        Mode::Copy => registry.load(name, elf),
        Mode::InPlace => {
            let options = LoadOptions {
                storage: Storage::InPlace,
                ..LoadOptions::default()
            };
            registry.load_static(name, elf, &options)
        }
    }
}

/// What an in-place load left in the image.
#[derive(Default, Clone, Copy)]
struct InPlace {
    /// Sections used where they lie, and their bytes.
    sections: usize,
    bytes: usize,
    /// Extension memory (arena bytes) the extension holds.
    memory: usize,
}

fn in_place_of<M: llext::Memory>(registry: &Registry<M>, id: ExtId) -> Result<InPlace, String> {
    let info = registry.info(id).map_err(|e| alloc::format!("info: {e}"))?;
    let mut stats = InPlace {
        memory: info.memory,
        ..InPlace::default()
    };
    for s in info.sections.iter().filter(|s| s.in_place) {
        stats.sections += 1;
        stats.bytes += s.size;
    }
    Ok(stats)
}

/// Loads `name`, calls `symbol(args)`, unloads; also returns what stayed in the image.
fn one<M: llext::Memory>(
    registry: &Registry<M>,
    name: &str,
    elf: &'static [u8],
    mode: Mode,
    symbol: &str,
    args: [isize; 4],
) -> Result<(isize, InPlace), String> {
    let id = load(registry, name, elf, mode).map_err(|e| alloc::format!("load: {e}"))?;
    let stats = in_place_of(registry, id);
    let result = call(registry, id, symbol, args);
    match registry.unload(id) {
        Ok(Unloaded::Freed) => Ok((result?, stats?)),
        Ok(other) => Err(alloc::format!("unload: {other:?}")),
        Err(e) => Err(alloc::format!("unload: {e}")),
    }
}

/// `libsum` then `useslib` of the same build: a dependency, refused unload while in use, then both freed.
fn dependency<M: llext::Memory>(
    registry: &Registry<M>,
    lib_name: &str,
    lib: &'static [u8],
    user_name: &str,
    user: &'static [u8],
    mode: Mode,
) -> Result<isize, String> {
    let lib_id =
        load(registry, lib_name, lib, mode).map_err(|e| alloc::format!("load {lib_name}: {e}"))?;
    let user_id = match load(registry, user_name, user, mode) {
        Ok(id) => id,
        Err(e) => {
            let _ = registry.unload(lib_id);
            return Err(alloc::format!("load {user_name}: {e}"));
        }
    };
    let result = call(registry, user_id, "uses_main", [5, 2, 0, 0]);
    let refused = registry.unload(lib_id).is_err();
    let user_freed = matches!(registry.unload(user_id), Ok(Unloaded::Freed));
    let lib_freed = matches!(registry.unload(lib_id), Ok(Unloaded::Freed));
    if !refused {
        return Err(String::from("the library was unloaded while in use"));
    }
    if !user_freed || !lib_freed {
        return Err(String::from("unload after use failed"));
    }
    result
}

static mut ARENA: [u8; 512 * 1024] = [0; 512 * 1024];

fn registry() -> Registry<ArenaMemory<'static>> {
    // SAFETY: `registry` is called once per run; the arena is used by this provider alone.
    let arena: &'static mut [u8] = unsafe { &mut *core::ptr::addr_of_mut!(ARENA) };
    // No MMU on these machines: the firmware image, where in-place extensions lie, is executable.
    let memory = ArenaMemory::new(arena)
        .with_code_sync(|ptr, len| {
            // SAFETY: the block was just written and is about to be executed.
            unsafe { fw_sync_code(ptr, len) }
        })
        .with_code_in_place();
    Registry::new(memory, ExportTable::new(&exports()))
}

static mut FRESH: [u8; 256 * 1024] = [0; 256 * 1024];

/// A registry over a second arena, cleared first: where a portable context is restored "after a reboot".
///
/// # Safety
/// No other registry over the second arena may be alive.
unsafe fn fresh_registry() -> Registry<ArenaMemory<'static>> {
    // SAFETY: the caller guarantees nothing else uses the second arena.
    let arena: &'static mut [u8] = unsafe { &mut *core::ptr::addr_of_mut!(FRESH) };
    arena.fill(0);
    let memory = ArenaMemory::new(arena).with_code_sync(|ptr, len| {
        // SAFETY: the block was just written and is about to be executed.
        unsafe { fw_sync_code(ptr, len) }
    });
    Registry::new(memory, ExportTable::new(&exports()))
}

/// A stand-in for an extension partition in flash that an update can rewrite: RAM an object is copied into.
#[repr(C, align(64))]
struct Partition([u8; 4096]);
static mut PARTITION: Partition = Partition([0; 4096]);

/// `leaf` (code that needs no relocation) copied into the partition, loaded in place from there and called;
/// saved in place with content hashes and forgotten (a suspend). A plain `restore` refuses the context (it
/// uses storage in place); then, as if an update rewrote the partition meanwhile, one byte of the code
/// there changes, and `restore_static` refuses the context, changing nothing. With the byte back it
/// restores, runs the code where it lies, and is unloaded. Returns the call's result after the restore.
fn rewritten_partition(
    registry: &Registry<ArenaMemory<'static>>,
    name: &str,
    elf: &[u8],
) -> Result<isize, String> {
    let part: *mut u8 = core::ptr::addr_of_mut!(PARTITION).cast();
    let len = elf.len();
    if len > core::mem::size_of::<Partition>() {
        return Err(alloc::format!("{len} bytes do not fit the partition"));
    }
    // SAFETY: only this function uses `PARTITION` (the test cases run one after the other), and no
    // reference to it is live.
    unsafe { core::ptr::copy_nonoverlapping(elf.as_ptr(), part, len) };
    // SAFETY: `PARTITION` is never freed; it is written below only through `part`, while the registry
    // holds nothing of it (after `forget_all`), and read again through fresh slices.
    let storage = || -> &'static [u8] { unsafe { core::slice::from_raw_parts(part, len) } };
    let id =
        load(registry, name, storage(), Mode::InPlace).map_err(|e| alloc::format!("load: {e}"))?;
    let before = call(registry, id, "leaf_main", [6, 5, 9, 4])?;
    let info = registry.info(id).map_err(|e| alloc::format!("info: {e}"))?;
    let code = info
        .regions
        .iter()
        .find(|r| r.in_place && r.kind == llext::RegionKind::Text)
        .map(|r| r.addr - part as usize)
        .ok_or("its code was copied, not used in place")?;
    let save = SaveOptions {
        content_hashes: true,
        ..SaveOptions::default()
    };
    let saved = registry
        .save(&save)
        .map_err(|e| alloc::format!("save: {e}"))?;
    registry
        .forget_all()
        .map_err(|e| alloc::format!("forget: {e}"))?;
    let context = Context::from_bytes(&saved).map_err(|e| alloc::format!("context: {e}"))?;
    let options = RestoreOptions::default();
    if !matches!(
        registry.restore(&context, &options),
        Err(llext::Error::InPlace { .. })
    ) {
        return Err(String::from("a plain restore took storage used in place"));
    }
    // SAFETY: `code` lies inside the partition (the region does); no reference to it is live.
    let flip = || unsafe { *part.add(code) ^= 1 };
    flip();
    let refused = registry.restore_static(&context, &options, &[storage()]);
    flip();
    if !matches!(refused, Err(llext::Error::StorageChanged { .. })) || !registry.is_empty() {
        return Err(alloc::format!("rewritten storage restored: {refused:?}"));
    }
    let ids = registry
        .restore_static(&context, &options, &[storage()])
        .map_err(|e| alloc::format!("restore: {e}"))?;
    let after = ids
        .first()
        .ok_or_else(|| String::from("nothing restored"))
        .and_then(|&id| call(registry, id, "leaf_main", [6, 5, 9, 4]));
    unload_all(registry, &ids)?;
    if after.as_ref().is_ok_and(|&a| a != before) {
        return Err(alloc::format!(
            "{before} before the suspend, {after:?} after"
        ));
    }
    after
}

/// Calls `uses_main(5, 2)` and `basic_main(1, 10, 3, 2)` and checks them against the values their `n`th
/// call gives (both keep state: `libsum`'s factor grows by one per call, `basic` counts its calls), so a
/// restore that lost or reset their data fails.
fn check_state<M: llext::Memory>(
    t: &mut Tally,
    registry: &Registry<M>,
    user: &str,
    basic: &str,
    when: &str,
    n: isize,
) {
    let factor = 3 + (n - 1);
    let uses = registry
        .get(user)
        .ok_or_else(|| alloc::format!("{user} is not loaded"))
        .and_then(|id| call(registry, id, "uses_main", [5, 2, 0, 0]));
    t.check(
        &alloc::format!("{user} {when}: uses_main(5, 2)"),
        uses,
        5 * factor + factor * 2 + factor + 1,
    );
    let b = registry
        .get(basic)
        .ok_or_else(|| alloc::format!("{basic} is not loaded"))
        .and_then(|id| call(registry, id, "basic_main", [1, 10, 3, 2]));
    t.check(
        &alloc::format!("{basic} {when}: basic_main(1, 10, 3, 2)"),
        b,
        1322 + n,
    );
}

/// Context save and restore on the device: load `libsum`, `useslib` (which links against it) and `basic`
/// of one build and call them; save an in-place context, drop the registry's bookkeeping while the arena
/// keeps every region (a simulated suspend), restore and call again; then save a portable context, unload
/// everything, restore it into a freshly cleared second arena and call a third time; then save that, clear
/// the second arena again and restore at the very same addresses (the fixups between unmoved blocks are
/// skipped) and call a fourth time. The calls see the data as it was saved each time.
fn suspend_and_resume(
    registry: &Registry<ArenaMemory<'static>>,
    t: &mut Tally,
    build: &str,
) -> Result<(), String> {
    let names = [
        alloc::format!("libsum{build}"),
        alloc::format!("useslib{build}"),
        alloc::format!("basic{build}"),
    ];
    let result = save_and_restore(registry, t, &names);
    // Whatever happened, leave the registry empty for the next case.
    for name in names.iter().rev() {
        let _ = registry.unload_name(name);
    }
    result
}

fn save_and_restore(
    registry: &Registry<ArenaMemory<'static>>,
    t: &mut Tally,
    names: &[String; 3],
) -> Result<(), String> {
    // Recording the fixup table is off by default without `std`; a portable save needs it.
    let options = LoadOptions {
        portable: true,
        ..LoadOptions::default()
    };
    for name in names {
        let elf = fixture(name).ok_or_else(|| alloc::format!("{name} is not embedded"))?;
        registry
            .load_with(name, elf, &options)
            .map_err(|e| alloc::format!("load {name}: {e}"))?;
    }
    let (user, basic) = (&names[1], &names[2]);
    check_state(t, registry, user, basic, "loaded", 1);

    let (saved, forgotten) = suspend(registry)?;
    let context = Context::from_bytes(&saved).map_err(|e| alloc::format!("context: {e}"))?;
    let restored = registry
        .restore(&context, &RestoreOptions::default())
        .map_err(|e| alloc::format!("restore in place: {e}"))?;
    println!(
        "     suspend: {forgotten} extensions forgotten, {} restored in place from {} bytes",
        restored.len(),
        saved.len()
    );
    check_state(t, registry, user, basic, "restored in place", 2);

    let portable = save_portable(registry)?;
    unload_all(registry, &restored)?;
    // SAFETY: the only registry over the second arena, dropped at the end of this function.
    let fresh = unsafe { fresh_registry() };
    let context = Context::from_bytes(&portable).map_err(|e| alloc::format!("context: {e}"))?;
    let moved = fresh
        .restore(&context, &RestoreOptions::default())
        .map_err(|e| alloc::format!("portable restore: {e}"))?;
    println!(
        "     reboot: {} extensions restored at new addresses from {} bytes",
        moved.len(),
        portable.len()
    );
    check_state(t, &fresh, user, basic, "restored portably", 3);

    // Once more, after a reboot into a heap of the same layout: the blocks come back at their saved
    // addresses, so only the references to firmware symbols are applied again.
    let again = save_portable(&fresh)?;
    let places = |r: &Registry<ArenaMemory<'static>>, ids: &[ExtId]| -> Vec<usize> {
        ids.iter()
            .filter_map(|id| r.info(*id).ok())
            .flat_map(|info| info.regions.into_iter().map(|region| region.addr))
            .collect()
    };
    let before = places(&fresh, &moved);
    unload_all(&fresh, &moved)?;
    drop(fresh);
    // SAFETY: the previous registry over the second arena was dropped just above.
    let same = unsafe { fresh_registry() };
    let context = Context::from_bytes(&again).map_err(|e| alloc::format!("context: {e}"))?;
    let back = same
        .restore(&context, &RestoreOptions::default())
        .map_err(|e| alloc::format!("portable restore in place of itself: {e}"))?;
    let unmoved = places(&same, &back) == before;
    println!(
        "     reboot: {} extensions restored at their saved addresses: {unmoved}",
        back.len()
    );
    t.check(
        &alloc::format!("{user} reboot into the same layout: blocks at their saved addresses"),
        Ok(isize::from(unmoved)),
        1,
    );
    check_state(t, &same, user, basic, "restored at the same addresses", 4);
    // Suspended once more, but the context will not be restored (as after an update): discarding it
    // gives every block the extensions kept back to the arena, and it restores no more.
    discard_all(&same, back.len())
}

/// A simulated suspend: saves what `registry` holds in place and forgets it (its memory stays as it is).
/// Returns the context and how many extensions were forgotten.
fn suspend(registry: &Registry<ArenaMemory<'static>>) -> Result<(Vec<u8>, usize), String> {
    let saved = registry
        .save(&SaveOptions::default())
        .map_err(|e| alloc::format!("save: {e}"))?;
    let forgotten = registry
        .forget_all()
        .map_err(|e| alloc::format!("forget: {e}"))?;
    Ok((saved, forgotten))
}

/// Saves what `registry` holds (`count` extensions) in place, forgets it and discards the context: every
/// kept block must be reported given back, and the context then be refused.
fn discard_all(registry: &Registry<ArenaMemory<'static>>, count: usize) -> Result<(), String> {
    let (saved, forgotten) = suspend(registry)?;
    let context = Context::from_bytes(&saved).map_err(|e| alloc::format!("context: {e}"))?;
    let freed = registry
        .discard(&context)
        .map_err(|e| alloc::format!("discard: {e}"))?;
    let again = registry.restore(&context, &RestoreOptions::default());
    if forgotten != count || freed < count || !matches!(again, Err(llext::Error::Memory { .. })) {
        return Err(alloc::format!(
            "{forgotten} of {count} extensions forgotten, {freed} blocks discarded, then restore: {again:?}"
        ));
    }
    println!("     discard: {freed} blocks of {count} extensions given back");
    unload_all(registry, &[])
}

/// A portable context of everything `registry` holds.
fn save_portable(registry: &Registry<ArenaMemory<'static>>) -> Result<Vec<u8>, String> {
    registry
        .save(&SaveOptions {
            portable: true,
            ..SaveOptions::default()
        })
        .map_err(|e| alloc::format!("portable save: {e}"))
}

/// Unloads `ids`, newest first; once the registry is empty, every byte of its arena must be free again
/// (what a restore took, adopted or allocated, comes back).
fn unload_all(registry: &Registry<ArenaMemory<'static>>, ids: &[ExtId]) -> Result<(), String> {
    for id in ids.iter().rev() {
        registry
            .unload(*id)
            .map_err(|e| alloc::format!("unload: {e}"))?;
    }
    let (free, capacity) = registry.with_memory(|m| (m.free_bytes(), m.capacity()));
    if registry.is_empty() && free != capacity {
        return Err(alloc::format!(
            "{} of the arena's {capacity} bytes still taken with no extension loaded",
            capacity - free
        ));
    }
    Ok(())
}

fn tests(target: &str) -> usize {
    let registry = registry();
    let mut t = Tally {
        passed: 0,
        failed: 0,
    };
    // Totals over the in-place cases: sections and bytes left in the image, extension memory saved.
    let (mut kept_sections, mut kept_bytes, mut saved) = (0usize, 0usize, 0usize);
    println!("{target}: {} embedded extensions", fixtures::FIXTURES.len());
    for mode in [Mode::Copy, Mode::InPlace] {
        for &(name, elf) in fixtures::FIXTURES {
            let stem = name.split('-').next().unwrap_or("");
            let build = name.get(stem.len()..).unwrap_or("");
            let how = if mode == Mode::InPlace {
                " in place"
            } else {
                ""
            };
            if let Some((symbol, args, want)) = single_case(stem) {
                let case = alloc::format!("{name}{how}: {symbol}{args:?}");
                let got = one(&registry, name, elf, mode, symbol, args);
                let got = match (mode, got) {
                    (Mode::InPlace, Ok((v, stats))) => {
                        // The same object copied, for the memory it would have taken.
                        match one(&registry, name, elf, Mode::Copy, symbol, args) {
                            Ok((_, copied)) => {
                                let less = copied.memory.saturating_sub(stats.memory);
                                kept_sections += stats.sections;
                                kept_bytes += stats.bytes;
                                saved += less;
                                println!(
                                    "     {name}: {} sections ({} bytes) in place, {} of {} bytes of RAM saved",
                                    stats.sections, stats.bytes, less, copied.memory
                                );
                                Ok(v)
                            }
                            Err(e) => Err(alloc::format!("copied again: {e}")),
                        }
                    }
                    (_, got) => got.map(|(v, _)| v),
                };
                t.check(&case, got, want);
            } else if let Some((reason, expected)) = refusal(stem) {
                // Built for code this firmware cannot run: refused, nothing loaded.
                let got = match load(&registry, name, elf, mode) {
                    Err(e) if expected(&e) => Ok(0),
                    Err(e) => Err(alloc::format!("refused for another reason: {e}")),
                    Ok(id) => {
                        let _ = registry.unload(id);
                        Err("loaded".into())
                    }
                };
                t.check(
                    &alloc::format!("{name}{how}: refused for its {reason}"),
                    got,
                    0,
                );
            } else if stem == "useslib" {
                let lib_name = alloc::format!("libsum{build}");
                let got = match fixture(&lib_name) {
                    Some(lib) => dependency(&registry, &lib_name, lib, name, elf, mode),
                    None => Err(alloc::format!("{lib_name} is not embedded")),
                };
                t.check(
                    &alloc::format!("{name} on {lib_name}{how}: uses_main(5, 2)"),
                    got,
                    25,
                );
                if mode == Mode::Copy {
                    let resumed = suspend_and_resume(&registry, &mut t, build);
                    t.check(
                        &alloc::format!("save, suspend, restore of the {build} set"),
                        resumed.map(|()| 0),
                        0,
                    );
                }
            }
            if mode == Mode::InPlace && stem == "leaf" {
                let got = rewritten_partition(&registry, name, elf);
                // Whatever happened, leave the registry without it for the next cases.
                let _ = registry.unload_name(name);
                t.check(
                    &alloc::format!(
                        "{name} in place from a partition, suspended: restore refuses it rewritten"
                    ),
                    got,
                    42,
                );
            }
        }
    }
    println!(
        "in place: {kept_sections} sections, {kept_bytes} bytes left in the image, {saved} bytes of RAM saved"
    );
    // The zlib cases above ran, one per embedded build: gcc and clang, each at -O2 and -Os in the
    // target's first flavour and at -O2 in each other flavour `wide` is built in.
    let flavours: BTreeSet<&str> = fixtures::FIXTURES
        .iter()
        .filter(|(n, _)| n.starts_with("wide-"))
        .filter_map(|(n, _)| n.rsplit('-').next())
        .collect();
    let zlib = fixtures::FIXTURES
        .iter()
        .filter(|(n, _)| n.starts_with("zlib-"))
        .count();
    t.check(
        "zlib builds embedded",
        Ok(zlib as isize),
        2 * (flavours.len() as isize + 1),
    );
    let left = registry.len();
    t.check("registry empty after the cases", Ok(left as isize), 0);
    println!("{} passed, {} failed", t.passed, t.failed);
    usize::from(t.failed != 0)
}

/// `footprint`: for each stand-alone fixture (and `useslib`, on its `libsum`), the heap the loader keeps
/// for it (bookkeeping: names, symbols, sections), the heap's high-water mark during the load, and the
/// extension memory (arena bytes) it takes copied and in place, against its ELF size.
fn footprint(target: &str) -> usize {
    let registry = registry();
    println!("target: {target}");
    println!("heap_capacity: {HEAP_SIZE}");
    // SAFETY: only the length of the arena is read.
    println!("arena_capacity: {}", unsafe {
        (*core::ptr::addr_of!(ARENA)).len()
    });
    // Warm up: the registry's own tables (slots, names, exports) grow on first use and are kept; load a
    // library and its user once so that the figures below are each extension's own.
    let warm = fixtures::FIXTURES
        .iter()
        .find(|(n, _)| n.starts_with("useslib-"))
        .and_then(|&(user_name, user)| {
            let lib_name = alloc::format!("libsum{}", user_name.get("useslib".len()..)?);
            Some((lib_name.clone(), fixture(&lib_name)?, user_name, user))
        });
    if let Some((lib_name, lib, user_name, user)) = warm {
        for mode in [Mode::Copy, Mode::InPlace] {
            let _ = dependency(&registry, &lib_name, lib, user_name, user, mode);
        }
    }
    let mut failed = 0;
    for &(name, elf) in fixtures::FIXTURES {
        let stem = name.split('-').next().unwrap_or("");
        let build = name.get(stem.len()..).unwrap_or("");
        let lib = if stem == "useslib" {
            let lib_name = alloc::format!("libsum{build}");
            match fixture(&lib_name).map(|lib| registry.load(&lib_name, lib)) {
                Some(Ok(id)) => Some(id),
                _ => {
                    println!("error: {lib_name} does not load");
                    failed += 1;
                    continue;
                }
            }
        } else if single_case(stem).is_some() || stem == "libsum" {
            None
        } else {
            continue;
        };
        let mut line = alloc::format!("ext {name}: elf_bytes {}", elf.len());
        for mode in [Mode::Copy, Mode::InPlace] {
            let before = HEAP.used();
            HEAP.reset_peak();
            let loaded = load(&registry, name, elf, mode);
            let (kept, peak) = (HEAP.used() - before, HEAP.peak() - before);
            let id = match loaded {
                Ok(id) => id,
                Err(e) => {
                    println!("error: {name}: {e}");
                    failed += 1;
                    break;
                }
            };
            let stats = in_place_of(&registry, id).unwrap_or_default();
            let _ = registry.unload(id);
            let _ = match mode {
                Mode::Copy => write!(
                    line,
                    ", heap_bytes {kept}, heap_peak_bytes {peak}, arena_bytes {}",
                    stats.memory
                ),
                Mode::InPlace => write!(
                    line,
                    ", in_place_arena_bytes {}, in_place_bytes {}, in_place_heap_bytes {kept}",
                    stats.memory, stats.bytes
                ),
            };
        }
        if let Some(id) = lib {
            let _ = registry.unload(id);
        }
        println!("{line}");
    }
    usize::from(failed != 0)
}

/// What the Rust extension (`firmware/rsext`) returns: fib(a) + the sum of a..a+b.
fn rs_expected(a: isize, b: isize) -> isize {
    let (mut x, mut y) = (0isize, 1isize);
    for _ in 0..a {
        let next = x.wrapping_add(y);
        x = y;
        y = next;
    }
    x + (a..a + b).sum::<isize>()
}

/// `qemu-run`: `run [--call SYM] [--arg INT]... FILE...`.
/// `--call SYM`, `--arg INT`... and the files of a `run` or `restore` command line.
struct RunWords<'a> {
    call: Option<&'a str>,
    args: Vec<isize>,
    files: Vec<&'a str>,
}

fn parse_run_words<'a>(words: &[&'a str]) -> Result<RunWords<'a>, String> {
    let mut parsed = RunWords {
        call: None,
        args: Vec::new(),
        files: Vec::new(),
    };
    let mut it = words.iter();
    while let Some(&w) = it.next() {
        match w {
            "--call" => parsed.call = Some(it.next().ok_or("--call needs a symbol")?),
            "--arg" => {
                let v = it.next().ok_or("--arg needs an integer")?;
                parsed
                    .args
                    .push(parse_int(v).ok_or_else(|| alloc::format!("not an integer: {v}"))?);
            }
            file => parsed.files.push(file),
        }
    }
    if parsed.args.len() > 4 {
        return Err(String::from("at most 4 arguments"));
    }
    if parsed.files.is_empty() {
        return Err(String::from("no extension files given"));
    }
    Ok(parsed)
}

/// Calls `sym`, a C function of up to four `long` arguments, and prints `returned: N`.
fn call_and_print(
    registry: &Registry<ArenaMemory<'static>>,
    sym: &str,
    args: &[isize],
) -> Result<(), String> {
    let addr = registry
        .find_symbol(sym)
        .ok_or_else(|| alloc::format!("no symbol `{sym}` in the loaded extensions"))?;
    let mut a = [0isize; 4];
    for (dst, src) in a.iter_mut().zip(args) {
        *dst = *src;
    }
    // SAFETY: the user names a C function taking up to four `long` arguments and returning `long`.
    let f: ExtFn = unsafe { core::mem::transmute::<usize, ExtFn>(addr) };
    println!("returned: {}", f(a[0], a[1], a[2], a[3]));
    Ok(())
}

fn run_files(words: &[&str]) -> Result<(), String> {
    let run = parse_run_words(words)?;
    let registry = registry();
    // Constructors and the call run extension code: a fault in it is reported with where it lies.
    let _published = Published::new(&registry);
    for file in &run.files {
        let data = read_file(file)?;
        let base = file.rsplit('/').next().unwrap_or(file);
        let name = base.strip_suffix(".o").unwrap_or(base);
        registry
            .load_with(name, &data, &LoadOptions::default())
            .map_err(|e| alloc::format!("{file}: {e}"))?;
        println!("loaded {name}");
    }
    match run.call {
        Some(sym) => call_and_print(&registry, sym, &run.args),
        None => Ok(()),
    }
}

/// `restore CONTEXT... [--call SYM] [--arg INT]...`: restores portable contexts a host saved with
/// `llext snapshot save --exports` (linked there against this firmware's export list, built-ins rebound
/// here by name), brings the extensions up (their constructors never ran on the host), calls, and unloads
/// everything, newest first.
fn restore_files(words: &[&str]) -> Result<(), String> {
    let run = parse_run_words(words)?;
    let registry = registry();
    let _published = Published::new(&registry);
    let mut restored = Vec::new();
    for file in &run.files {
        let data = read_file(file)?;
        let context = Context::from_bytes(&data).map_err(|e| alloc::format!("{file}: {e}"))?;
        let ids = registry
            .restore(&context, &RestoreOptions::default())
            .map_err(|e| alloc::format!("{file}: {e}"))?;
        let mut brought_up = 0;
        for &id in &ids {
            brought_up += registry
                .bring_up(id)
                .map_err(|e| alloc::format!("{file}: {e}"))?;
        }
        println!(
            "restored {} extensions from {file}, brought {brought_up} up",
            ids.len()
        );
        restored.extend(ids);
    }
    if let Some(sym) = run.call {
        call_and_print(&registry, sym, &run.args)?;
    }
    unload_all(&registry, &restored)
}

fn parse_int(s: &str) -> Option<isize> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let v = match digits.strip_prefix("0x") {
        Some(hex) => isize::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<isize>().ok()?,
    };
    Some(if neg { -v } else { v })
}

/// What every firmware here brings up first: the heap and the console.
fn boot() {
    // SAFETY: called once, before any allocation; the memory is used by the heap alone.
    unsafe {
        HEAP.inner
            .init(core::ptr::addr_of_mut!(HEAP_MEMORY) as usize, HEAP_SIZE)
    };
    open_stdout();
}

/// The words after `run` on the semihosting command line, if it has one.
fn run_words(line: &str) -> Option<Vec<&str>> {
    command_words(line)
        .filter(|(restore, _)| !restore)
        .map(|(_, words)| words)
}

/// The words after the first `run` or `restore` on the semihosting command line, and whether it was
/// `restore`.
fn command_words(line: &str) -> Option<(bool, Vec<&str>)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| matches!(*w, "run" | "restore"))?;
    let restore = words.get(at) == Some(&"restore");
    Some((restore, words.get(at + 1..).unwrap_or(&[]).to_vec()))
}

fn status(result: Result<(), String>) -> usize {
    match result {
        Ok(()) => 0,
        Err(e) => {
            println!("error: {e}");
            1
        }
    }
}

/// `exports`: the export table as `NAME ADDRESS` lines, where extensions go (`# at: ADDR`) and what the
/// registry knows of its core (`Registry::write_export_list`), so that `llext check --exports FILE` on a
/// host links them exactly as this firmware does (its ELF image lists every symbol it defines, more than it
/// exports).
fn print_exports() -> usize {
    let arena = core::ptr::addr_of!(ARENA) as usize;
    match registry().write_export_list(&mut Console, Some(arena & !0xfff)) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// The firmware's main: tests; `qemu-run` when the semihosting command line has `run`; the footprint
/// report when it has `footprint`, the export table when it has `exports`.
pub fn start(target: &str) -> ! {
    boot();
    let line = command_line();
    let has = |word: &str| line.split_whitespace().any(|w| w == word);
    let code = match command_words(&line) {
        Some((true, words)) => status(restore_files(&words)),
        Some((false, words)) => status(run_files(&words)),
        None if has("footprint") => footprint(target),
        None if has("exports") => print_exports(),
        None => tests(target),
    };
    exit(code)
}

/// The loader half of the size comparison (`cargo xtask footprint`): `qemu-run` alone, without the tests
/// and the embedded fixtures.
pub fn start_loader() -> ! {
    boot();
    let line = command_line();
    let words = run_words(&line).unwrap_or_default();
    exit(status(run_files(&words)))
}

/// The restore image of the size comparison: loads the files named after `run` (recording fixups), saves
/// them in place into a buffer without allocating, forgets and restores them, then saves them portably and
/// restores that into a cleared second arena; unloads everything.
pub fn start_restore() -> ! {
    boot();
    let line = command_line();
    let words = run_words(&line).unwrap_or_default();
    exit(status(load_save_restore(&words)))
}

fn load_save_restore(files: &[&str]) -> Result<(), String> {
    let registry = registry();
    let options = LoadOptions {
        portable: true,
        ..LoadOptions::default()
    };
    let restored = load_and_suspend(&registry, files, &options)?;
    let portable = save_portable(&registry)?;
    unload_all(&registry, &restored)?;
    // SAFETY: the only registry over the second arena, dropped at the end of this function.
    let fresh = unsafe { fresh_registry() };
    let context = Context::from_bytes(&portable).map_err(|e| alloc::format!("context: {e}"))?;
    let moved = fresh
        .restore(&context, &RestoreOptions::default())
        .map_err(|e| alloc::format!("portable restore: {e}"))?;
    println!("restored {} extensions in place and portably", moved.len());
    unload_all(&fresh, &moved)
}

/// The in-place restore image of the size comparison: loads the files named after `run` (no fixups),
/// saves them in place into a buffer without allocating, forgets and restores them; unloads everything.
pub fn start_restore_in_place() -> ! {
    boot();
    let line = command_line();
    let words = run_words(&line).unwrap_or_default();
    exit(status(load_save_restore_in_place(&words)))
}

fn load_save_restore_in_place(files: &[&str]) -> Result<(), String> {
    let registry = registry();
    let restored = load_and_suspend(&registry, files, &LoadOptions::default())?;
    println!("restored {} extensions in place", restored.len());
    unload_all(&registry, &restored)
}

/// Loads `files` into `registry` with `options`, saves them in place into a buffer without allocating (as
/// into retained RAM before a suspend), forgets and restores them; returns the restored handles.
fn load_and_suspend(
    registry: &Registry<ArenaMemory<'static>>,
    files: &[&str],
    options: &LoadOptions,
) -> Result<Vec<ExtId>, String> {
    for file in files {
        let elf = read_file(file)?;
        registry
            .load_with(file, &elf, options)
            .map_err(|e| alloc::format!("{file}: {e}"))?;
    }
    let in_place = SaveOptions::default();
    let size = registry
        .context_size(&in_place)
        .map_err(|e| alloc::format!("context size: {e}"))?;
    let mut retained = alloc::vec![0u8; size];
    let len = registry
        .save_into(&in_place, &mut retained)
        .map_err(|e| alloc::format!("save: {e}"))?;
    registry
        .forget_all()
        .map_err(|e| alloc::format!("forget: {e}"))?;
    let context = Context::from_bytes(retained.get(..len).unwrap_or_default())
        .map_err(|e| alloc::format!("context: {e}"))?;
    registry
        .restore(&context, &RestoreOptions::default())
        .map_err(|e| alloc::format!("restore in place: {e}"))
}

/// The baseline half of the size comparison: the same runtime, heap, console, host files and `printf`,
/// no loader: it reads the files named after `run` and prints their sizes with the C library's `printf`.
pub fn start_baseline() -> ! {
    extern "C" {
        fn printf(fmt: *const u8, ...) -> i32;
    }
    boot();
    let line = command_line();
    let mut result = Ok(());
    for file in run_words(&line).unwrap_or_default() {
        match read_file(file) {
            Ok(data) => {
                let mut name: Vec<u8> = file.as_bytes().to_vec();
                name.push(0);
                // SAFETY: a NUL-terminated format and name; `%lu` takes an unsigned long, as passed.
                unsafe {
                    printf(
                        b"%s: %lu bytes\n\0".as_ptr(),
                        name.as_ptr(),
                        data.len() as core::ffi::c_ulong,
                    )
                };
            }
            Err(e) => result = Err(e),
        }
    }
    exit(status(result))
}
