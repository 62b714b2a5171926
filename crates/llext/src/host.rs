//! Host memory: one process-wide pool of pages reserved with `mmap`, handed out with W^X protections.
//!
//! The pool is reserved once (`PROT_NONE`, no swap reserved) preferably in the low 2 GiB of the address space,
//! so that objects compiled without `-fPIC` (absolute 32-bit relocations) load, and so that every extension lies
//! within ±2 GiB of every other one. Freed pages go back to a free list and are handed out again first: they are
//! already backed by physical memory, which spares the cost of first-touch page faults.

use core::ptr::NonNull;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::memory::{Block, BlockRequest, Memory, Permission};
use crate::ranges::FreeRanges;

const POOL_SIZE: usize = 1 << 30;
/// Addresses tried for the pool, chosen so that the whole pool ends at or below 2 GiB; if none is free the pool goes wherever the kernel puts it.
const POOL_HINTS: [usize; 4] = [0x1000_0000, 0x2000_0000, 0x3000_0000, 0x4000_0000];

struct Pool {
    base: usize,
    size: usize,
    page: usize,
    /// Next never-used page offset.
    bump: usize,
    /// Freed page ranges, kept read-write so reuse needs no system call.
    free: FreeRanges,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

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
    for hint in POOL_HINTS {
        // SAFETY: a fresh anonymous PROT_NONE mapping; MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let p = unsafe {
            libc::mmap(
                hint as *mut libc::c_void,
                POOL_SIZE,
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
            return Ok(Pool::new(hint, page));
        }
        // An old kernel ignored the flag and placed it elsewhere: give it back and try the next hint.
        // SAFETY: unmapping the mapping just created, which nothing references.
        unsafe { libc::munmap(p, POOL_SIZE) };
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
    Ok(Pool::new(p as usize, page))
}

impl Pool {
    fn new(base: usize, page: usize) -> Pool {
        Pool {
            base,
            size: POOL_SIZE,
            page,
            bump: 0,
            free: FreeRanges::default(),
        }
    }

    fn protect(&self, offset: usize, len: usize, prot: i32, what: &'static str) -> Result<()> {
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

    /// Returns (offset, reserved length, aligned start).
    fn take(&mut self, size: usize, align: usize) -> Result<(usize, usize, usize)> {
        let oom = Error::OutOfMemory { size, align };
        let align = align.max(self.page);
        let round = |v: usize, a: usize| v.checked_add(a - 1).map(|x| x & !(a - 1));
        let len = round(size, self.page).ok_or(oom.clone())?;
        // Reuse touched pages first.
        if let Some(start) = self.free.take_first_fit(self.base, len, align) {
            return Ok((start, len, self.base + start));
        }
        let start = round(self.base + self.bump, align).ok_or(oom.clone())? - self.base;
        let end = start.checked_add(len).ok_or(oom.clone())?;
        if end > self.size {
            return Err(oom);
        }
        if start > self.bump {
            // The alignment gap becomes a free range.
            let gap = (self.bump, start - self.bump);
            self.protect(
                gap.0,
                gap.1,
                libc::PROT_READ | libc::PROT_WRITE,
                "open pool pages",
            )?;
            self.give_back(gap.0, gap.1);
        }
        self.protect(
            start,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            "open pool pages",
        )?;
        self.bump = end;
        Ok((start, len, self.base + start))
    }

    fn give_back(&mut self, off: usize, len: usize) {
        self.free.give_back(off, len);
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
        let (_, len, addr) = with_pool(|pool| pool.take(request.size, request.align))?;
        let ptr = NonNull::new(addr as *mut u8).ok_or(Error::Internal("null pool block"))?;
        // SAFETY: [addr, addr+len) is read-write, inside the pool and removed from the free list; len >= size.
        Ok(unsafe { Block::new(ptr, request.size, len) })
    }

    fn finalize(&mut self, block: &Block, permission: Permission) -> Result<()> {
        let prot = match permission {
            Permission::ReadExecute => libc::PROT_READ | libc::PROT_EXEC,
            Permission::ReadOnly => libc::PROT_READ,
            Permission::ReadWrite => return Ok(()),
        };
        with_pool(|pool| {
            pool.protect(
                block.addr() - pool.base,
                block.token(),
                prot,
                "set final protection",
            )
        })
        // x86_64 keeps instruction fetch coherent with stores: no cache maintenance is needed here.
    }

    fn adopt(
        &mut self,
        addr: usize,
        size: usize,
        token: usize,
        _permission: Permission,
    ) -> Result<Block> {
        with_pool(|pool| {
            let off = addr.wrapping_sub(pool.base);
            let inside =
                addr >= pool.base && off.checked_add(token).is_some_and(|end| end <= pool.bump);
            let overlaps_free = pool.free.overlaps(off, token);
            if !inside || overlaps_free || size > token || off % pool.page != 0 {
                return Err(Error::Memory {
                    what: "adopt retained memory: range is not a live block of this process's pool",
                    code: 0,
                });
            }
            Ok(())
        })?;
        let ptr = NonNull::new(addr as *mut u8).ok_or(Error::Internal("null pool block"))?;
        // SAFETY: the range is a block of the pool that was allocated and never freed (checked above); the
        // registry that owned it gave it up with `disown`, so nothing else owns it.
        Ok(unsafe { Block::new(ptr, size, token) })
    }

    fn free(&mut self, block: Block) {
        let _ = with_pool(|pool| {
            let off = block.addr() - pool.base;
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

/// The C library functions a host offers extensions by default, so ordinary C compiled with `cc -c` runs
/// unchanged: stdio output, heap, memory and string functions, `abort`.
///
/// ```
/// let table = llext::ExportTable::new(llext::LIBC_EXPORTS);
/// assert!(table.get("printf").is_some());
/// ```
pub static LIBC_EXPORTS: &[crate::Export] = crate::exports![
    "puts" => libc::puts,
    "printf" => libc::printf,
    "snprintf" => libc::snprintf,
    "sprintf" => libc::sprintf,
    "putchar" => libc::putchar,
    "malloc" => libc::malloc,
    "calloc" => libc::calloc,
    "realloc" => libc::realloc,
    "free" => libc::free,
    "memcpy" => libc::memcpy,
    "memmove" => libc::memmove,
    "memset" => libc::memset,
    "memcmp" => libc::memcmp,
    "strlen" => libc::strlen,
    "strcmp" => libc::strcmp,
    "strncmp" => libc::strncmp,
    "strcpy" => libc::strcpy,
    "strncpy" => libc::strncpy,
    "abort" => libc::abort,
];
