//! Host memory: one process-wide pool of pages reserved with `mmap`, handed out with W^X protections.
//!
//! The pool is reserved once (`PROT_NONE`, no swap reserved) preferably in the low 2 GiB of the address space
//! (1 GiB, else half of that below an earlier `MAP_32BIT` mapping), so that objects compiled without `-fPIC`
//! (absolute 32-bit relocations) load, and so that every extension lies within ±2 GiB of every other one. Freed pages go back to a free list and are handed out again first: they are
//! already backed by physical memory, which spares the cost of first-touch page faults.
//!
//! The pool is cut into one zone per final permission (code, constants, data). Blocks of one permission
//! then lie together, so sealing a block next to sealed ones moves the boundary of an existing mapping
//! instead of splitting a read-write mapping in three — about half the cost of an `mprotect` on Linux —
//! and data pages, never sealed, need no protection change at all after they were first opened.

use core::ptr::NonNull;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::memory::{Block, BlockRequest, Memory, Permission};
use crate::ranges::FreeRanges;

const POOL_SIZE: usize = 1 << 30;
/// (address, size) tried for the pool, each ending at or below 2 GiB, so that code built without `-fPIC`
/// reaches its own data with 32-bit absolute addresses; if none is free the pool goes wherever the kernel
/// puts it. Every 1 GiB range below 2 GiB holds 0x4000_0000, where Linux puts the first `MAP_32BIT` mapping
/// (a JIT's, or any library's): then a half-size pool below it.
const POOL_PLACES: [(usize, usize); 6] = [
    (0x1000_0000, POOL_SIZE),
    (0x2000_0000, POOL_SIZE),
    (0x3000_0000, POOL_SIZE),
    (0x4000_0000, POOL_SIZE),
    (0x1000_0000, POOL_SIZE / 2),
    (0x2000_0000, POOL_SIZE / 2),
];

struct Pool {
    base: usize,
    size: usize,
    page: usize,
    /// One zone per final permission, indexed like [`Permission::ALL`].
    zones: [Zone; 3],
    /// Blocks given up with `disown` and not adopted since (pool offsets): the only pages `adopt` accepts,
    /// each at most once, so a stale or forged context cannot take over pages another extension owns.
    retained: FreeRanges,
}

/// Pool offsets `[start, end)` where the blocks of one final permission are placed.
struct Zone {
    start: usize,
    end: usize,
    /// Next never-used page offset.
    bump: usize,
    /// Freed page ranges (pool offsets), kept read-write so reuse needs no system call.
    free: FreeRanges,
}

impl Zone {
    fn new(start: usize, end: usize) -> Zone {
        Zone {
            start,
            end,
            bump: start,
            free: FreeRanges::default(),
        }
    }

    /// True if `[off, off + len)` lies in the part of the zone handed out so far.
    fn holds(&self, off: usize, len: usize) -> bool {
        off >= self.start && off.checked_add(len).is_some_and(|end| end <= self.bump)
    }
}

/// Where the zones end, in eighths of the pool: code 3/8, constants 2/8, data 3/8.
const ZONE_ENDS: [usize; 3] = [3, 5, 8];

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

#[cfg(test)]
std::thread_local! {
    /// `mprotect` calls made by this thread: tests share the pool with tests running in other threads, so
    /// each counts only its own calls.
    static PROTECT_CALLS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

fn os_error() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

fn reserve() -> Result<Pool> {
    let page = page_size();
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    for (hint, size) in POOL_PLACES {
        // SAFETY: a fresh anonymous PROT_NONE mapping; MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let p = unsafe {
            libc::mmap(
                hint as *mut libc::c_void,
                size,
                libc::PROT_NONE,
                flags | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            continue;
        }
        if p as usize == hint {
            return Ok(Pool::new(hint, size, page));
        }
        // An old kernel ignored the flag and placed it elsewhere: give it back and try the next place.
        // SAFETY: unmapping the mapping just created, which nothing references.
        unsafe { libc::munmap(p, size) };
    }
    // SAFETY: a fresh anonymous PROT_NONE mapping wherever the kernel chooses.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            POOL_SIZE,
            libc::PROT_NONE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::Memory {
            what: "reserve the extension memory pool",
            code: os_error(),
        });
    }
    Ok(Pool::new(p as usize, POOL_SIZE, page))
}

/// The zone of pages with `permission`: one zone per permission, in [`Permission::ALL`] order.
fn zone_index(permission: Permission) -> usize {
    Permission::ALL
        .iter()
        .position(|&p| p == permission)
        .unwrap_or(0)
}

impl Pool {
    fn new(base: usize, size: usize, page: usize) -> Pool {
        let at = |eighths: usize| size / 8 * eighths;
        Pool {
            base,
            size,
            page,
            zones: [
                Zone::new(0, at(ZONE_ENDS[0])),
                Zone::new(at(ZONE_ENDS[0]), at(ZONE_ENDS[1])),
                Zone::new(at(ZONE_ENDS[1]), at(ZONE_ENDS[2])),
            ],
            retained: FreeRanges::default(),
        }
    }

    fn zone_mut(&mut self, permission: Permission) -> Result<&mut Zone> {
        self.zones
            .get_mut(zone_index(permission))
            .ok_or_else(|| Error::Internal("pool zone"))
    }

    /// The zone holding the pages `[off, off + len)` handed out so far, if any.
    fn zone_of(&mut self, off: usize, len: usize) -> Option<&mut Zone> {
        self.zones.iter_mut().find(|z| z.holds(off, len))
    }

    fn protect(&self, offset: usize, len: usize, prot: i32, what: &'static str) -> Result<()> {
        #[cfg(test)]
        PROTECT_CALLS.with(|calls| calls.set(calls.get() + 1));
        // SAFETY: [base+offset, +len) lies inside the pool mapping and belongs to a block the caller owns.
        let r = unsafe { libc::mprotect((self.base + offset) as *mut libc::c_void, len, prot) };
        if r != 0 {
            return Err(Error::Memory {
                what,
                code: os_error(),
            });
        }
        Ok(())
    }

    /// Takes pages for a block of `permission` from its zone. Returns (offset, reserved length, aligned
    /// start).
    fn take(
        &mut self,
        size: usize,
        align: usize,
        permission: Permission,
    ) -> Result<(usize, usize, usize)> {
        let oom = || Error::OutOfMemory { size, align };
        let align = align.max(self.page);
        let round = |v: usize, a: usize| v.checked_add(a - 1).map(|x| x & !(a - 1));
        let len = round(size, self.page).ok_or_else(oom)?;
        let base = self.base;
        let zone = self.zone_mut(permission)?;
        // Reuse touched pages first.
        if let Some(start) = zone.free.take_first_fit(base, len, align) {
            return Ok((start, len, base + start));
        }
        let start = round(base + zone.bump, align).ok_or_else(oom)? - base;
        let end = start.checked_add(len).ok_or_else(oom)?;
        if end > zone.end {
            return Err(oom());
        }
        let bump = zone.bump;
        // The alignment gap, if any, is opened with the block and becomes a free range.
        self.protect(
            bump,
            end - bump,
            libc::PROT_READ | libc::PROT_WRITE,
            "open pool pages",
        )?;
        let zone = self.zone_mut(permission)?;
        if start > bump {
            zone.free.give_back(bump, start - bump);
        }
        zone.bump = end;
        Ok((start, len, base + start))
    }

    /// Returns the pages `[off, off + len)`, read-write again, to the free list of their zone.
    fn give_back(&mut self, off: usize, len: usize) {
        if let Some(zone) = self.zone_of(off, len) {
            zone.free.give_back(off, len);
        }
    }

    /// Applies a final protection to a run of blocks.
    fn seal(&self, run: Run, prot: i32) -> Result<()> {
        self.protect(run.offset, run.len, prot, "set final protection")
    }

    /// Offset of a block in the pool, checking that all its pages lie in the part of a zone handed out so
    /// far.
    fn offset_of(&self, block: &Block) -> Result<usize> {
        block
            .addr()
            .checked_sub(self.base)
            .filter(|&off| self.zones.iter().any(|z| z.holds(off, block.token())))
            .ok_or_else(|| Error::Internal("a block that is not from the extension memory pool"))
    }
}

/// Final protection of code blocks.
const PROT_CODE: i32 = libc::PROT_READ | libc::PROT_EXEC;
/// Final protection of constant blocks.
const PROT_CONSTANTS: i32 = libc::PROT_READ;

/// Pool pages `[offset, offset + len)` of blocks lying end to end that end with one protection: one
/// `mprotect` seals them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    offset: usize,
    len: usize,
}

impl Run {
    /// Grows the run by the pages `[offset, offset + len)` if they touch it at either end.
    fn absorb(&mut self, offset: usize, len: usize) -> bool {
        let Some(total) = self.len.checked_add(len) else {
            return false;
        };
        if self.offset.checked_add(self.len) == Some(offset) {
            self.len = total;
            true
        } else if offset.checked_add(len) == Some(self.offset) {
            *self = Run { offset, len: total };
            true
        } else {
            false
        }
    }
}

/// Host memory provider: page-granular blocks from a process-wide `mmap` pool, finalised with `mprotect`.
///
/// Code ends read+execute, constants read-only, data read-write: no page is ever writable and executable at
/// once after loading. All `HostMemory` values share one pool, so extensions in different registries are still
/// within ±2 GiB of each other.
///
/// ```
/// use llext::{HostMemory, Memory, BlockRequest, Permission};
/// let mut memory = HostMemory::new();
/// let block = memory.allocate(&BlockRequest { size: 10, align: 64, permission: Permission::ReadOnly }).unwrap();
/// memory.finalize(&block, Permission::ReadOnly).unwrap();
/// memory.free(block);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct HostMemory {
    _private: (),
}

impl HostMemory {
    /// A handle on the process-wide pool (reserved on first use).
    pub fn new() -> Self {
        HostMemory { _private: () }
    }

    /// Start address and size of the pool, once reserved.
    pub fn pool_range() -> Option<(usize, usize)> {
        let guard = POOL.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|p| (p.base, p.size))
    }
}

fn with_pool<T>(f: impl FnOnce(&mut Pool) -> Result<T>) -> Result<T> {
    let mut guard = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        *guard = Some(reserve()?);
    }
    match guard.as_mut() {
        Some(pool) => f(pool),
        None => Err(Error::Internal("memory pool missing")),
    }
}

// SAFETY: blocks are disjoint page ranges of the pool mapping, opened read-write before they are handed out.
unsafe impl Memory for HostMemory {
    fn allocate(&mut self, request: &BlockRequest) -> Result<Block> {
        if request.size == 0 || !request.align.is_power_of_two() {
            return Err(Error::OutOfMemory {
                size: request.size,
                align: request.align,
            });
        }
        let (_, len, addr) =
            with_pool(|pool| pool.take(request.size, request.align, request.permission))?;
        // (Not `ok_or`: an error built on every call is also dropped on every call.)
        let Some(ptr) = NonNull::new(addr as *mut u8) else {
            return Err(Error::Internal("null pool block"));
        };
        // SAFETY: [addr, addr+len) is read-write, inside the pool and removed from the free list; len >= size.
        Ok(unsafe { Block::new(ptr, request.size, len) })
    }

    fn finalize(&mut self, block: &Block, permission: Permission) -> Result<()> {
        self.finalize_all(&mut core::iter::once((block, permission)))
    }

    /// Seals blocks lying end to end with equal permission with one `mprotect`, under one lock.
    ///
    /// One run is kept open per sealed permission, so blocks of the other permission in between do not
    /// break it: a portable restore allocates permission by permission (its code blocks come out end to
    /// end, then its constant blocks) but hands the blocks over extension by extension. No page is ever
    /// made writable here, so W^X holds whatever the order. The pool lock is held while `blocks` is
    /// iterated, so the iterator must not itself use a `HostMemory`.
    fn finalize_all(
        &mut self,
        blocks: &mut dyn Iterator<Item = (&Block, Permission)>,
    ) -> Result<()> {
        // Read-write blocks already have their final protection.
        let mut sealed = blocks
            .filter(|(_, permission)| *permission != Permission::ReadWrite)
            .peekable();
        // With nothing to seal the lock is not taken (nor the pool reserved), as `finalize` never did.
        if sealed.peek().is_none() {
            return Ok(());
        }
        with_pool(|pool| {
            let mut code: Option<Run> = None;
            let mut constants: Option<Run> = None;
            for (block, permission) in sealed {
                let (open, prot) = match permission {
                    Permission::ReadExecute => (&mut code, PROT_CODE),
                    Permission::ReadOnly => (&mut constants, PROT_CONSTANTS),
                    Permission::ReadWrite => continue,
                };
                let offset = pool.offset_of(block)?;
                let len = block.token();
                if !open.as_mut().is_some_and(|run| run.absorb(offset, len)) {
                    if let Some(done) = open.replace(Run { offset, len }) {
                        pool.seal(done, prot)?;
                    }
                }
            }
            if let Some(run) = code {
                pool.seal(run, PROT_CODE)?;
            }
            if let Some(run) = constants {
                pool.seal(run, PROT_CONSTANTS)?;
            }
            Ok(())
        })
        // x86_64 keeps instruction fetch coherent with stores: no cache maintenance is needed here.
    }

    fn adopt(
        &mut self,
        addr: usize,
        size: usize,
        token: usize,
        permission: Permission,
    ) -> Result<Block> {
        with_pool(|pool| {
            let off = addr.wrapping_sub(pool.base);
            // A block given up with `disown` and not adopted since: taking it out of the retained set makes
            // a second adoption of the same pages fail. It must lie in the zone of the permission it is
            // adopted with: its pages have that zone's protection, and `free` will return them there.
            let retained = addr >= pool.base
                && size <= token
                && off % pool.page == 0
                && pool.zones.iter().position(|z| z.holds(off, token))
                    == Some(zone_index(permission))
                && pool.retained.take_exact(off, token);
            if !retained {
                return Err(Error::Memory {
                    what: "adopt retained memory: range is not a block of that permission given up with \
                           `disown` (or was adopted already)",
                    code: 0,
                });
            }
            Ok(())
        })?;
        // (Not `ok_or`: an error built on every call is also dropped on every call.)
        let Some(ptr) = NonNull::new(addr as *mut u8) else {
            return Err(Error::Internal("null pool block"));
        };
        // SAFETY: the range is a block of the pool that was given up with `disown` and not adopted or freed
        // since (checked above), so nothing else owns it.
        Ok(unsafe { Block::new(ptr, size, token) })
    }

    fn disown(&mut self, block: Block) {
        // The pages stay as they are, allocated, until a restore adopts them.
        let _ = with_pool(|pool| {
            let off = pool.offset_of(&block)?;
            pool.retained.give_back(off, block.token());
            Ok(())
        });
    }

    fn free_finalized(&mut self, block: Block, permission: Permission) {
        if permission != Permission::ReadWrite {
            return self.free(block);
        }
        // Data pages were never sealed: they go back to the free list as they are, read-write.
        let _ = with_pool(|pool| {
            let off = pool.offset_of(&block)?;
            pool.give_back(off, block.token());
            Ok(())
        });
    }

    fn free(&mut self, block: Block) {
        let _ = with_pool(|pool| {
            let off = pool.offset_of(&block)?;
            // Back to read-write (never executable) so the pages can be refilled without another system call.
            let opened = pool.protect(
                off,
                block.token(),
                libc::PROT_READ | libc::PROT_WRITE,
                "release pages",
            );
            if opened.is_ok() {
                pool.give_back(off, block.token());
            }
            opened
        });
    }
}

// The C library's standard streams, `v...printf` functions, stack-protector and fortified (`_FORTIFY_SOURCE`)
// entry points and what glibc's headers make of `assert`, `<ctype.h>` and `sscanf`, which the `libc` crate
// does not declare. Only their addresses are taken; llext never calls them, and reads the
// two stream pointers only to give code built without `-fPIC` copies of them (`Export::copyable`).
// The `va_list` arguments of the `v...printf` functions are declared as an opaque pointer: nothing here
// calls them.
extern "C" {
    static stdout: *mut libc::FILE;
    static stderr: *mut libc::FILE;
    fn __stack_chk_fail() -> !;
    fn vprintf(format: *const libc::c_char, ap: *mut libc::c_void) -> libc::c_int;
    fn vfprintf(
        stream: *mut libc::FILE,
        format: *const libc::c_char,
        ap: *mut libc::c_void,
    ) -> libc::c_int;
    fn vsnprintf(
        s: *mut libc::c_char,
        n: libc::size_t,
        format: *const libc::c_char,
        ap: *mut libc::c_void,
    ) -> libc::c_int;
}
// More of what ordinary C calls, which the `libc` crate does not declare: only their addresses are taken,
// so the signatures are left out. `<math.h>` (gcc also merges `sin` and `cos` of one angle into `sincos`),
// `setjmp` (a macro for `_setjmp` in glibc), and the compiler-runtime helpers gcc and clang call for
// `__builtin_popcount`, 128-bit division and complex products, which Rust programs link too (its
// `compiler_builtins`, or libgcc).
extern "C" {
    static stdin: *mut libc::FILE;
    fn getc();
    // The rest of `<stdio.h>`'s streams, `<locale.h>`, `<time.h>`'s calendar, `qsort_r`, and the stream
    // locking and `_unlocked` reads and writes POSIX adds: Lua 5.4, bzip2 and zstd call them.
    fn clearerr();
    fn setvbuf();
    fn setbuf();
    fn remove();
    fn rename();
    fn tmpfile();
    fn freopen();
    fn fseeko();
    fn ftello();
    fn fgetpos();
    fn fsetpos();
    fn rewind();
    fn strcoll();
    fn strxfrm();
    fn setlocale();
    fn localeconv();
    fn difftime();
    fn mktime();
    fn gmtime();
    fn localtime();
    fn gmtime_r();
    fn localtime_r();
    fn strftime();
    fn qsort_r();
    fn flockfile();
    fn funlockfile();
    fn getc_unlocked();
    fn putc_unlocked();
    fn putc();
    fn strsep();
    fn strtold();
    fn clock();
    fn vsprintf();
    fn bcmp();
    fn sqrt();
    fn cbrt();
    fn hypot();
    fn sin();
    fn cos();
    fn tan();
    fn sincos();
    fn asin();
    fn acos();
    fn atan();
    fn atan2();
    fn sinh();
    fn cosh();
    fn tanh();
    fn exp();
    fn exp2();
    fn expm1();
    fn log();
    fn log2();
    fn log10();
    fn log1p();
    fn pow();
    fn floor();
    fn ceil();
    fn round();
    fn trunc();
    fn rint();
    fn lround();
    fn fmod();
    fn fabs();
    fn fmin();
    fn fmax();
    fn copysign();
    fn ldexp();
    fn frexp();
    fn modf();
    fn sqrtf();
    fn sinf();
    fn cosf();
    fn tanf();
    fn sincosf();
    fn atan2f();
    fn expf();
    fn logf();
    fn log10f();
    fn powf();
    fn floorf();
    fn ceilf();
    fn roundf();
    fn truncf();
    fn fmodf();
    fn fabsf();
    fn hypotf();
    fn fminf();
    fn fmaxf();
    fn fma();
    fn fmaf();
    fn asinh();
    fn acosh();
    fn atanh();
    fn erf();
    fn erfc();
    fn tgamma();
    fn lgamma();
    fn remainder();
    fn fdim();
    fn nearbyint();
    fn asinhf();
    fn acoshf();
    fn atanhf();
    fn erff();
    fn erfcf();
    fn tgammaf();
    fn lgammaf();
    fn remainderf();
    fn fdimf();
    fn cbrtf();
    fn exp2f();
    fn expm1f();
    fn log2f();
    fn log1pf();
    fn asinf();
    fn acosf();
    fn atanf();
    fn sinhf();
    fn coshf();
    fn tanhf();
    fn rintf();
    fn nearbyintf();
    fn creal();
    fn cimag();
    fn cabs();
    fn carg();
    fn setjmp();
    fn _setjmp();
    fn longjmp();
    fn _longjmp();
    fn __popcountdi2();
    fn __floattidf();
    fn __floatuntidf();
    fn __fixdfti();
    fn __fixunsdfti();
    fn __floattisf();
    fn __floatuntisf();
    fn __fixsfti();
    fn __fixunssfti();
    fn __divti3();
    fn __udivti3();
    fn __modti3();
    fn __umodti3();
    fn __muldc3();
    fn __divdc3();
    fn __mulsc3();
    fn __divsc3();
}
#[cfg(target_env = "gnu")]
extern "C" {
    // What `-D_FILE_OFFSET_BITS=64` (Lua's `lprefix.h`, bzip2's and autoconf's builds) renames the
    // stream functions to, and what glibc's inline `getc_unlocked` and `putc_unlocked` call when the
    // buffer is empty or full.
    fn fopen64();
    fn freopen64();
    fn tmpfile64();
    fn fseeko64();
    fn ftello64();
    fn fgetpos64();
    fn fsetpos64();
    fn __uflow();
    fn __overflow();
    fn __sigsetjmp();
    fn siglongjmp();
    fn __longjmp_chk();
    fn __isoc99_scanf();
    fn __isoc99_fscanf();
    fn __vsprintf_chk();
    fn __strncat_chk();
    fn __stpncpy_chk();
    fn __fgets_chk();
    fn __fread_chk();
}
#[cfg(target_env = "gnu")]
extern "C" {
    fn __printf_chk(flag: libc::c_int, format: *const libc::c_char, ...) -> libc::c_int;
    fn __fprintf_chk(
        stream: *mut libc::FILE,
        flag: libc::c_int,
        format: *const libc::c_char,
        ...
    ) -> libc::c_int;
    fn __sprintf_chk(
        s: *mut libc::c_char,
        flag: libc::c_int,
        len: libc::size_t,
        format: *const libc::c_char,
        ...
    ) -> libc::c_int;
    fn __snprintf_chk(
        s: *mut libc::c_char,
        maxlen: libc::size_t,
        flag: libc::c_int,
        len: libc::size_t,
        format: *const libc::c_char,
        ...
    ) -> libc::c_int;
    fn __memcpy_chk(d: *mut libc::c_void, s: *const libc::c_void, n: usize, len: usize) -> *mut u8;
    fn __memmove_chk(d: *mut libc::c_void, s: *const libc::c_void, n: usize, len: usize)
        -> *mut u8;
    fn __memset_chk(d: *mut libc::c_void, c: libc::c_int, n: usize, len: usize) -> *mut u8;
    fn __strcpy_chk(d: *mut libc::c_char, s: *const libc::c_char, len: usize) -> *mut u8;
    fn __stpcpy_chk(d: *mut libc::c_char, s: *const libc::c_char, len: usize) -> *mut u8;
    fn __strncpy_chk(d: *mut libc::c_char, s: *const libc::c_char, n: usize, len: usize)
        -> *mut u8;
    fn __strcat_chk(d: *mut libc::c_char, s: *const libc::c_char, len: usize) -> *mut u8;
    fn __vsnprintf_chk(
        s: *mut libc::c_char,
        maxlen: libc::size_t,
        flag: libc::c_int,
        len: libc::size_t,
        format: *const libc::c_char,
        ap: *mut libc::c_void,
    ) -> libc::c_int;
    fn __vfprintf_chk(
        stream: *mut libc::FILE,
        flag: libc::c_int,
        format: *const libc::c_char,
        ap: *mut libc::c_void,
    ) -> libc::c_int;
    fn __vprintf_chk(
        flag: libc::c_int,
        format: *const libc::c_char,
        ap: *mut libc::c_void,
    ) -> libc::c_int;
    // What glibc's headers turn `assert`, `isalpha`/`toupper`/`tolower` and `sscanf` into.
    fn __assert_fail(
        assertion: *const libc::c_char,
        file: *const libc::c_char,
        line: libc::c_uint,
        function: *const libc::c_char,
    ) -> !;
    fn __ctype_b_loc() -> *mut *const u16;
    fn __ctype_tolower_loc() -> *mut *const i32;
    fn __ctype_toupper_loc() -> *mut *const i32;
    fn __isoc99_sscanf(s: *const libc::c_char, format: *const libc::c_char, ...) -> libc::c_int;
    fn llabs(n: libc::c_longlong) -> libc::c_longlong;
}

/// The C library functions a host offers extensions by default, so ordinary C compiled with `cc -c` runs
/// unchanged: stdio output and input, files (`fopen`, `fgets`, `fseeko`, `tmpfile`, `setvbuf`, `remove`,
/// ...; on glibc also the `fopen64`... names `-D_FILE_OFFSET_BITS=64` makes of them; `stdin`, `stdout` and
/// `stderr` are copyable: see [`Export::copyable`](crate::Export::copyable)), `flockfile` and
/// `getc_unlocked`, `<locale.h>`, `strcoll`, calendar time (`mktime`, `gmtime_r`, `strftime`, ...),
/// `qsort_r`, `v...printf`, `sscanf`, heap, memory and
/// string functions (including those compilers substitute, such as `stpcpy` for `strcpy` followed by
/// `strlen`, or clang's `bcmp`), `strtok_r`, `strndup`, `strerror`, `<ctype.h>`, conversions, sorting,
/// `getenv`, `rand`, `time`, `clock`, `usleep`, `setjmp`/`longjmp`, `<math.h>` (with gcc's `sincos`) and
/// `<complex.h>`'s `creal`..., `abs`, `labs` and `llabs` (which `-ffreestanding` code calls out of line),
/// `aligned_alloc` and `posix_memalign`, the compiler-runtime helpers of `__builtin_popcount`, 128-bit division and
/// conversions and complex products (`__popcountdi2`, `__udivti3`, `__floattidf`, `__muldc3`, ...),
/// `abort`, `errno`, the stack protector's `__stack_chk_fail`, and on glibc what its headers turn `assert`, `<ctype.h>`, `scanf` and
/// `setjmp` into (`__assert_fail`, `__ctype_b_loc`, `__isoc99_sscanf`, `__sigsetjmp`, ...) and the checked
/// functions `-D_FORTIFY_SOURCE` calls (`__printf_chk`, `__vsnprintf_chk`, `__memcpy_chk`, `__strncat_chk`,
/// ...), so objects built with a distribution's hardening defaults load too.
///
/// Left out on purpose: `exit` and `atexit` (an extension does not end its host, nor leave a function to
/// run after it may have been unloaded).
///
/// ```
/// let table = llext::ExportTable::new(llext::LIBC_EXPORTS);
/// assert!(table.get("printf").is_some());
/// assert!(table.get("stpcpy").is_some());
/// ```
pub static LIBC_EXPORTS: &[crate::Export] = &[
    crate::Export::function("puts", libc::puts as *const ()),
    crate::Export::function("printf", libc::printf as *const ()),
    crate::Export::function("snprintf", libc::snprintf as *const ()),
    crate::Export::function("sprintf", libc::sprintf as *const ()),
    crate::Export::function("putchar", libc::putchar as *const ()),
    crate::Export::function("malloc", libc::malloc as *const ()),
    crate::Export::function("calloc", libc::calloc as *const ()),
    crate::Export::function("realloc", libc::realloc as *const ()),
    crate::Export::function("free", libc::free as *const ()),
    crate::Export::function("aligned_alloc", libc::aligned_alloc as *const ()),
    crate::Export::function("posix_memalign", libc::posix_memalign as *const ()),
    crate::Export::function("abs", libc::abs as *const ()),
    crate::Export::function("labs", libc::labs as *const ()),
    crate::Export::function("llabs", llabs as *const ()),
    crate::Export::function("memcpy", libc::memcpy as *const ()),
    crate::Export::function("memmove", libc::memmove as *const ()),
    crate::Export::function("memset", libc::memset as *const ()),
    crate::Export::function("memcmp", libc::memcmp as *const ()),
    crate::Export::function("memchr", libc::memchr as *const ()),
    crate::Export::function("strlen", libc::strlen as *const ()),
    crate::Export::function("strnlen", libc::strnlen as *const ()),
    crate::Export::function("strcmp", libc::strcmp as *const ()),
    crate::Export::function("strncmp", libc::strncmp as *const ()),
    crate::Export::function("strcpy", libc::strcpy as *const ()),
    crate::Export::function("strncpy", libc::strncpy as *const ()),
    crate::Export::function("stpcpy", libc::stpcpy as *const ()),
    crate::Export::function("strcat", libc::strcat as *const ()),
    crate::Export::function("strncat", libc::strncat as *const ()),
    crate::Export::function("strchr", libc::strchr as *const ()),
    crate::Export::function("strrchr", libc::strrchr as *const ()),
    crate::Export::function("strstr", libc::strstr as *const ()),
    crate::Export::function("strdup", libc::strdup as *const ()),
    crate::Export::function("strtol", libc::strtol as *const ()),
    crate::Export::function("strtoul", libc::strtoul as *const ()),
    crate::Export::function("atoi", libc::atoi as *const ()),
    crate::Export::function("qsort", libc::qsort as *const ()),
    crate::Export::function("bsearch", libc::bsearch as *const ()),
    crate::Export::function("abort", libc::abort as *const ()),
    crate::Export::function("fprintf", libc::fprintf as *const ()),
    crate::Export::function("fputs", libc::fputs as *const ()),
    crate::Export::function("fputc", libc::fputc as *const ()),
    crate::Export::function("fwrite", libc::fwrite as *const ()),
    crate::Export::function("fflush", libc::fflush as *const ()),
    crate::Export::function("vprintf", vprintf as *const ()),
    crate::Export::function("vfprintf", vfprintf as *const ()),
    crate::Export::function("vsnprintf", vsnprintf as *const ()),
    crate::Export::function("sscanf", libc::sscanf as *const ()),
    crate::Export::function("strtoll", libc::strtoll as *const ()),
    crate::Export::function("strtoull", libc::strtoull as *const ()),
    crate::Export::function("strtod", libc::strtod as *const ()),
    crate::Export::function("atol", libc::atol as *const ()),
    crate::Export::function("strcasecmp", libc::strcasecmp as *const ()),
    crate::Export::function("strncasecmp", libc::strncasecmp as *const ()),
    crate::Export::function("strspn", libc::strspn as *const ()),
    crate::Export::function("strcspn", libc::strcspn as *const ()),
    crate::Export::function("strpbrk", libc::strpbrk as *const ()),
    crate::Export::function("toupper", libc::toupper as *const ()),
    crate::Export::function("tolower", libc::tolower as *const ()),
    crate::Export::function("isalpha", libc::isalpha as *const ()),
    crate::Export::function("isdigit", libc::isdigit as *const ()),
    crate::Export::function("isalnum", libc::isalnum as *const ()),
    crate::Export::function("isspace", libc::isspace as *const ()),
    crate::Export::function("isupper", libc::isupper as *const ()),
    crate::Export::function("islower", libc::islower as *const ()),
    crate::Export::function("isxdigit", libc::isxdigit as *const ()),
    crate::Export::function("getenv", libc::getenv as *const ()),
    crate::Export::function("rand", libc::rand as *const ()),
    crate::Export::function("srand", libc::srand as *const ()),
    crate::Export::function("time", libc::time as *const ()),
    crate::Export::function("clock_gettime", libc::clock_gettime as *const ()),
    crate::Export::function("__errno_location", libc::__errno_location as *const ()),
    // The streams themselves, as data: `fprintf(stderr, ...)` reads the `stderr` pointer. Code built
    // without `-fPIC` (gcc's default `-fPIE` included) reads them directly, expecting them within 2 GiB:
    // it gets copies, which is right as the C library never changes these pointers after start-up.
    // SAFETY: `stdout` and `stderr` are initialised, aligned pointer variables of the C library, readable
    // for the whole life of the process; a program that assigns to them while extensions load breaks
    // this (as it would race with the C library's own readers).
    unsafe { crate::Export::copyable("stdout", &raw const stdout as *const ()) },
    // SAFETY: as above.
    unsafe { crate::Export::copyable("stderr", &raw const stderr as *const ()) },
    crate::Export::function("__stack_chk_fail", __stack_chk_fail as *const ()),
    // SAFETY: as for `stdout` above.
    unsafe { crate::Export::copyable("stdin", &raw const stdin as *const ()) },
    // Input and files.
    crate::Export::function("fopen", libc::fopen as *const ()),
    crate::Export::function("fclose", libc::fclose as *const ()),
    crate::Export::function("fgets", libc::fgets as *const ()),
    crate::Export::function("fread", libc::fread as *const ()),
    crate::Export::function("fseek", libc::fseek as *const ()),
    crate::Export::function("ftell", libc::ftell as *const ()),
    crate::Export::function("feof", libc::feof as *const ()),
    crate::Export::function("ferror", libc::ferror as *const ()),
    crate::Export::function("fgetc", libc::fgetc as *const ()),
    crate::Export::function("getc", getc as *const ()),
    crate::Export::function("getchar", libc::getchar as *const ()),
    crate::Export::function("ungetc", libc::ungetc as *const ()),
    crate::Export::function("putc", putc as *const ()),
    crate::Export::function("scanf", libc::scanf as *const ()),
    crate::Export::function("fscanf", libc::fscanf as *const ()),
    crate::Export::function("perror", libc::perror as *const ()),
    crate::Export::function("clearerr", clearerr as *const ()),
    crate::Export::function("setvbuf", setvbuf as *const ()),
    crate::Export::function("setbuf", setbuf as *const ()),
    crate::Export::function("remove", remove as *const ()),
    crate::Export::function("rename", rename as *const ()),
    crate::Export::function("tmpfile", tmpfile as *const ()),
    crate::Export::function("freopen", freopen as *const ()),
    crate::Export::function("fseeko", fseeko as *const ()),
    crate::Export::function("ftello", ftello as *const ()),
    crate::Export::function("fgetpos", fgetpos as *const ()),
    crate::Export::function("fsetpos", fsetpos as *const ()),
    crate::Export::function("rewind", rewind as *const ()),
    crate::Export::function("flockfile", flockfile as *const ()),
    crate::Export::function("funlockfile", funlockfile as *const ()),
    crate::Export::function("getc_unlocked", getc_unlocked as *const ()),
    crate::Export::function("putc_unlocked", putc_unlocked as *const ()),
    // Strings and conversions.
    crate::Export::function("vsprintf", vsprintf as *const ()),
    crate::Export::function("stpncpy", libc::stpncpy as *const ()),
    crate::Export::function("bcmp", bcmp as *const ()),
    crate::Export::function("memrchr", libc::memrchr as *const ()),
    crate::Export::function("strtok", libc::strtok as *const ()),
    crate::Export::function("strtok_r", libc::strtok_r as *const ()),
    crate::Export::function("strsep", strsep as *const ()),
    crate::Export::function("strndup", libc::strndup as *const ()),
    crate::Export::function("strerror", libc::strerror as *const ()),
    crate::Export::function("atof", libc::atof as *const ()),
    crate::Export::function("strtof", libc::strtof as *const ()),
    crate::Export::function("strtold", strtold as *const ()),
    // Time.
    crate::Export::function("clock", clock as *const ()),
    crate::Export::function("usleep", libc::usleep as *const ()),
    crate::Export::function("nanosleep", libc::nanosleep as *const ()),
    // Non-local jumps (only within the extension's own calls: a jump out of it would skip llext).
    crate::Export::function("setjmp", setjmp as *const ()),
    crate::Export::function("_setjmp", _setjmp as *const ()),
    crate::Export::function("longjmp", longjmp as *const ()),
    crate::Export::function("_longjmp", _longjmp as *const ()),
    // <math.h>.
    crate::Export::function("sqrt", sqrt as *const ()),
    crate::Export::function("cbrt", cbrt as *const ()),
    crate::Export::function("hypot", hypot as *const ()),
    crate::Export::function("sin", sin as *const ()),
    crate::Export::function("cos", cos as *const ()),
    crate::Export::function("tan", tan as *const ()),
    crate::Export::function("sincos", sincos as *const ()),
    crate::Export::function("asin", asin as *const ()),
    crate::Export::function("acos", acos as *const ()),
    crate::Export::function("atan", atan as *const ()),
    crate::Export::function("atan2", atan2 as *const ()),
    crate::Export::function("sinh", sinh as *const ()),
    crate::Export::function("cosh", cosh as *const ()),
    crate::Export::function("tanh", tanh as *const ()),
    crate::Export::function("exp", exp as *const ()),
    crate::Export::function("exp2", exp2 as *const ()),
    crate::Export::function("expm1", expm1 as *const ()),
    crate::Export::function("log", log as *const ()),
    crate::Export::function("log2", log2 as *const ()),
    crate::Export::function("log10", log10 as *const ()),
    crate::Export::function("log1p", log1p as *const ()),
    crate::Export::function("pow", pow as *const ()),
    crate::Export::function("floor", floor as *const ()),
    crate::Export::function("ceil", ceil as *const ()),
    crate::Export::function("round", round as *const ()),
    crate::Export::function("trunc", trunc as *const ()),
    crate::Export::function("rint", rint as *const ()),
    crate::Export::function("lround", lround as *const ()),
    crate::Export::function("fmod", fmod as *const ()),
    crate::Export::function("fabs", fabs as *const ()),
    crate::Export::function("fmin", fmin as *const ()),
    crate::Export::function("fmax", fmax as *const ()),
    crate::Export::function("copysign", copysign as *const ()),
    crate::Export::function("ldexp", ldexp as *const ()),
    crate::Export::function("frexp", frexp as *const ()),
    crate::Export::function("modf", modf as *const ()),
    crate::Export::function("sqrtf", sqrtf as *const ()),
    crate::Export::function("sinf", sinf as *const ()),
    crate::Export::function("cosf", cosf as *const ()),
    crate::Export::function("tanf", tanf as *const ()),
    crate::Export::function("sincosf", sincosf as *const ()),
    crate::Export::function("atan2f", atan2f as *const ()),
    crate::Export::function("expf", expf as *const ()),
    crate::Export::function("logf", logf as *const ()),
    crate::Export::function("log10f", log10f as *const ()),
    crate::Export::function("powf", powf as *const ()),
    crate::Export::function("floorf", floorf as *const ()),
    crate::Export::function("ceilf", ceilf as *const ()),
    crate::Export::function("roundf", roundf as *const ()),
    crate::Export::function("truncf", truncf as *const ()),
    crate::Export::function("fmodf", fmodf as *const ()),
    crate::Export::function("fabsf", fabsf as *const ()),
    crate::Export::function("hypotf", hypotf as *const ()),
    crate::Export::function("fminf", fminf as *const ()),
    crate::Export::function("fmaxf", fmaxf as *const ()),
    crate::Export::function("fma", fma as *const ()),
    crate::Export::function("fmaf", fmaf as *const ()),
    crate::Export::function("asinh", asinh as *const ()),
    crate::Export::function("acosh", acosh as *const ()),
    crate::Export::function("atanh", atanh as *const ()),
    crate::Export::function("erf", erf as *const ()),
    crate::Export::function("erfc", erfc as *const ()),
    crate::Export::function("tgamma", tgamma as *const ()),
    crate::Export::function("lgamma", lgamma as *const ()),
    crate::Export::function("remainder", remainder as *const ()),
    crate::Export::function("fdim", fdim as *const ()),
    crate::Export::function("nearbyint", nearbyint as *const ()),
    crate::Export::function("asinhf", asinhf as *const ()),
    crate::Export::function("acoshf", acoshf as *const ()),
    crate::Export::function("atanhf", atanhf as *const ()),
    crate::Export::function("erff", erff as *const ()),
    crate::Export::function("erfcf", erfcf as *const ()),
    crate::Export::function("tgammaf", tgammaf as *const ()),
    crate::Export::function("lgammaf", lgammaf as *const ()),
    crate::Export::function("remainderf", remainderf as *const ()),
    crate::Export::function("fdimf", fdimf as *const ()),
    crate::Export::function("cbrtf", cbrtf as *const ()),
    crate::Export::function("exp2f", exp2f as *const ()),
    crate::Export::function("expm1f", expm1f as *const ()),
    crate::Export::function("log2f", log2f as *const ()),
    crate::Export::function("log1pf", log1pf as *const ()),
    crate::Export::function("asinf", asinf as *const ()),
    crate::Export::function("acosf", acosf as *const ()),
    crate::Export::function("atanf", atanf as *const ()),
    crate::Export::function("sinhf", sinhf as *const ()),
    crate::Export::function("coshf", coshf as *const ()),
    crate::Export::function("tanhf", tanhf as *const ()),
    crate::Export::function("rintf", rintf as *const ()),
    crate::Export::function("nearbyintf", nearbyintf as *const ()),
    crate::Export::function("creal", creal as *const ()),
    crate::Export::function("cimag", cimag as *const ()),
    crate::Export::function("cabs", cabs as *const ()),
    crate::Export::function("carg", carg as *const ()),
    // Locale, calendar time, sorting with a context.
    crate::Export::function("strcoll", strcoll as *const ()),
    crate::Export::function("strxfrm", strxfrm as *const ()),
    crate::Export::function("setlocale", setlocale as *const ()),
    crate::Export::function("localeconv", localeconv as *const ()),
    crate::Export::function("difftime", difftime as *const ()),
    crate::Export::function("mktime", mktime as *const ()),
    crate::Export::function("gmtime", gmtime as *const ()),
    crate::Export::function("localtime", localtime as *const ()),
    crate::Export::function("gmtime_r", gmtime_r as *const ()),
    crate::Export::function("localtime_r", localtime_r as *const ()),
    crate::Export::function("strftime", strftime as *const ()),
    crate::Export::function("qsort_r", qsort_r as *const ()),
    // Compiler-runtime helpers.
    crate::Export::function("__popcountdi2", __popcountdi2 as *const ()),
    crate::Export::function("__divti3", __divti3 as *const ()),
    crate::Export::function("__udivti3", __udivti3 as *const ()),
    crate::Export::function("__modti3", __modti3 as *const ()),
    crate::Export::function("__umodti3", __umodti3 as *const ()),
    crate::Export::function("__floattidf", __floattidf as *const ()),
    crate::Export::function("__floatuntidf", __floatuntidf as *const ()),
    crate::Export::function("__fixdfti", __fixdfti as *const ()),
    crate::Export::function("__fixunsdfti", __fixunsdfti as *const ()),
    crate::Export::function("__floattisf", __floattisf as *const ()),
    crate::Export::function("__floatuntisf", __floatuntisf as *const ()),
    crate::Export::function("__fixsfti", __fixsfti as *const ()),
    crate::Export::function("__fixunssfti", __fixunssfti as *const ()),
    crate::Export::function("__muldc3", __muldc3 as *const ()),
    crate::Export::function("__divdc3", __divdc3 as *const ()),
    crate::Export::function("__mulsc3", __mulsc3 as *const ()),
    crate::Export::function("__divsc3", __divsc3 as *const ()),
    // glibc only.
    #[cfg(target_env = "gnu")]
    crate::Export::function("mempcpy", libc::mempcpy as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__printf_chk", __printf_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__fprintf_chk", __fprintf_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__sprintf_chk", __sprintf_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__snprintf_chk", __snprintf_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__memcpy_chk", __memcpy_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__memmove_chk", __memmove_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__memset_chk", __memset_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__strcpy_chk", __strcpy_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__stpcpy_chk", __stpcpy_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__strncpy_chk", __strncpy_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__strcat_chk", __strcat_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__vsnprintf_chk", __vsnprintf_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__vfprintf_chk", __vfprintf_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__vprintf_chk", __vprintf_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__assert_fail", __assert_fail as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__ctype_b_loc", __ctype_b_loc as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__ctype_tolower_loc", __ctype_tolower_loc as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__ctype_toupper_loc", __ctype_toupper_loc as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__isoc99_sscanf", __isoc99_sscanf as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__isoc99_scanf", __isoc99_scanf as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__isoc99_fscanf", __isoc99_fscanf as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__sigsetjmp", __sigsetjmp as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("siglongjmp", siglongjmp as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__longjmp_chk", __longjmp_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__vsprintf_chk", __vsprintf_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__strncat_chk", __strncat_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__stpncpy_chk", __stpncpy_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__fgets_chk", __fgets_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__fread_chk", __fread_chk as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("fopen64", fopen64 as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("freopen64", freopen64 as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("tmpfile64", tmpfile64 as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("fseeko64", fseeko64 as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("ftello64", ftello64 as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("fgetpos64", fgetpos64 as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("fsetpos64", fsetpos64 as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__uflow", __uflow as *const ()),
    #[cfg(target_env = "gnu")]
    crate::Export::function("__overflow", __overflow as *const ()),
];

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    const RX: Permission = Permission::ReadExecute;
    const RO: Permission = Permission::ReadOnly;
    const RW: Permission = Permission::ReadWrite;

    /// `mprotect` calls this thread has made so far.
    fn protect_calls() -> usize {
        PROTECT_CALLS.with(core::cell::Cell::get)
    }

    /// Serialises the allocation runs of these tests: two of them allocating in lockstep on two cores
    /// would interleave their blocks on every attempt.
    static ALLOCATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Allocates one block per `(size, permission)` in a row, retrying until those of one permission come
    /// out end to end (each permission has its own zone of the pool):
    /// other tests share the pool and may free pages that an attempt then takes, or take pages in
    /// between. Blocks of failed attempts are kept (they fill the holes that made the attempt fail) and
    /// returned second, to be freed.
    fn adjacent(
        memory: &mut HostMemory,
        requests: &[(usize, Permission)],
    ) -> (Vec<Block>, Vec<Block>) {
        let _serial = ALLOCATING.lock().unwrap_or_else(|p| p.into_inner());
        let mut spare = Vec::new();
        for _ in 0..64 {
            let blocks: Vec<Block> = requests
                .iter()
                .map(|&(size, permission)| {
                    let request = BlockRequest {
                        size,
                        align: 16,
                        permission,
                    };
                    memory.allocate(&request).unwrap()
                })
                .collect();
            let same = |i: usize| requests[i].1 == requests[i + 1].1;
            if (0..blocks.len().saturating_sub(1))
                .filter(|&i| same(i))
                .all(|i| blocks[i].addr() + blocks[i].token() == blocks[i + 1].addr())
            {
                return (blocks, spare);
            }
            spare.extend(blocks);
        }
        panic!(
            "no run of {} adjacent blocks in 64 attempts",
            requests.len()
        );
    }

    /// Permissions of the one mapping of `/proc/self/maps` that covers all of `[start, end)`, if any.
    fn mapping(start: usize, end: usize) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().find_map(|line| {
            let (range, rest) = line.split_once(' ')?;
            let (lo, hi) = range.split_once('-')?;
            let lo = usize::from_str_radix(lo, 16).ok()?;
            let hi = usize::from_str_radix(hi, 16).ok()?;
            let perms = rest.get(..4)?;
            (lo <= start && end <= hi).then(|| String::from(perms))
        })
    }

    fn span(blocks: &[Block]) -> (usize, usize) {
        let last = blocks.last().unwrap();
        (blocks[0].addr(), last.addr() + last.token())
    }

    fn free_all(memory: &mut HostMemory, blocks: impl IntoIterator<Item = Block>) {
        for block in blocks {
            memory.free(block);
        }
    }

    #[test]
    fn three_adjacent_code_blocks_are_sealed_with_one_call() {
        let mut memory = HostMemory::new();
        let (blocks, spare) = adjacent(&mut memory, &[(100, RX), (5000, RX), (100, RX)]);
        let (start, end) = span(&blocks);
        assert_eq!(end - start, 4 * page_size());

        let before = protect_calls();
        memory
            .finalize_all(&mut blocks.iter().map(|b| (b, RX)))
            .unwrap();
        assert_eq!(protect_calls() - before, 1);
        assert_eq!(mapping(start, end).as_deref(), Some("r-xp"));

        free_all(&mut memory, blocks);
        free_all(&mut memory, spare);
    }

    #[test]
    fn code_then_constants_are_sealed_with_two_calls() {
        let mut memory = HostMemory::new();
        let (blocks, spare) = adjacent(&mut memory, &[(100, RX), (100, RX), (100, RO)]);
        let page = page_size();
        let start = blocks[0].addr();

        let before = protect_calls();
        let mut all = blocks.iter().zip([RX, RX, RO]);
        memory.finalize_all(&mut all).unwrap();
        assert_eq!(protect_calls() - before, 2);
        assert_eq!(mapping(start, start + 2 * page).as_deref(), Some("r-xp"));
        let constants = blocks[2].addr();
        assert_eq!(
            mapping(constants, constants + page).as_deref(),
            Some("r--p")
        );

        free_all(&mut memory, blocks);
        free_all(&mut memory, spare);
    }

    #[test]
    fn blocks_handed_over_extension_by_extension_still_merge() {
        // What a portable restore of two extensions does: allocate code, then constants, then data, and
        // seal extension by extension.
        let mut memory = HostMemory::new();
        let requests = [
            (100, RX),
            (100, RX),
            (100, RO),
            (100, RO),
            (100, RW),
            (100, RW),
        ];
        let (blocks, spare) = adjacent(&mut memory, &requests);
        let order = [0, 2, 4, 1, 3, 5];
        let before = protect_calls();
        let mut all = order.iter().map(|&i| (&blocks[i], requests[i].1));
        memory.finalize_all(&mut all).unwrap();
        assert_eq!(protect_calls() - before, 2);
        let page = page_size();
        for (first, perms) in [(0, "r-xp"), (2, "r--p"), (4, "rw-p")] {
            let start = blocks[first].addr();
            assert_eq!(mapping(start, start + 2 * page).as_deref(), Some(perms));
        }

        free_all(&mut memory, blocks);
        free_all(&mut memory, spare);
    }

    #[test]
    fn each_permission_has_its_own_zone() {
        let mut memory = HostMemory::new();
        let blocks: Vec<(Block, Permission)> = [RX, RO, RW]
            .into_iter()
            .map(|permission| {
                let request = BlockRequest {
                    size: 64,
                    align: 16,
                    permission,
                };
                (memory.allocate(&request).unwrap(), permission)
            })
            .collect();
        let (base, size) = HostMemory::pool_range().unwrap();
        for (block, permission) in &blocks {
            let i = Permission::ALL
                .iter()
                .position(|p| p == permission)
                .unwrap();
            let start = if i == 0 {
                0
            } else {
                size / 8 * ZONE_ENDS[i - 1]
            };
            let end = size / 8 * ZONE_ENDS[i];
            let off = block.addr() - base;
            assert!(
                (start..end).contains(&off),
                "{permission:?} block at {off:#x}"
            );
        }
        for (block, _) in blocks {
            memory.free(block);
        }
    }

    #[test]
    fn read_write_blocks_and_empty_lists_make_no_call() {
        let mut memory = HostMemory::new();
        let block = memory
            .allocate(&BlockRequest {
                size: 100,
                align: 16,
                permission: RW,
            })
            .unwrap();
        let before = protect_calls();
        memory.finalize_all(&mut core::iter::empty()).unwrap();
        memory
            .finalize_all(&mut core::iter::once((&block, RW)))
            .unwrap();
        memory.finalize(&block, RW).unwrap();
        assert_eq!(protect_calls(), before);
        memory.free(block);
    }

    #[test]
    fn a_block_from_elsewhere_is_refused() {
        let mut memory = HostMemory::new();
        // Make sure the pool exists, so the check compares against it.
        let ours = memory
            .allocate(&BlockRequest {
                size: 100,
                align: 16,
                permission: RX,
            })
            .unwrap();
        let mut bytes = alloc::vec![0u8; 64];
        let ptr = NonNull::new(bytes.as_mut_ptr()).unwrap();
        // SAFETY: `bytes` outlives the block, which nothing else aliases.
        let foreign = unsafe { Block::new(ptr, bytes.len(), 4096) };
        let before = protect_calls();
        assert!(matches!(
            memory.finalize(&foreign, RX),
            Err(Error::Internal(_))
        ));
        let refused = memory.finalize_all(&mut [(&foreign, RX), (&ours, RX)].into_iter());
        assert!(refused.is_err());
        assert_eq!(protect_calls(), before);
        memory.free(ours);
    }

    #[test]
    fn runs_grow_at_either_end_only() {
        let mut run = Run {
            offset: 4096,
            len: 4096,
        };
        assert!(run.absorb(8192, 8192));
        assert!(run.absorb(0, 4096));
        assert_eq!(
            run,
            Run {
                offset: 0,
                len: 16384
            }
        );
        assert!(!run.absorb(20480, 4096));
        assert!(!run.absorb(4096, 4096));
        assert!(!run.absorb(16384, usize::MAX));
    }
}
