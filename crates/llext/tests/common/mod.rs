//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod elf;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use llext::{Block, BlockRequest, ExportTable, HostMemory, Memory, Permission, Registry};

/// Options that save a portable context of everything loaded.
pub fn portable() -> llext::SaveOptions<'static> {
    llext::SaveOptions {
        portable: true,
        ..llext::SaveOptions::default()
    }
}

/// `bytes` for the rest of the program (storage for `Registry::load_static`), kept reachable from a
/// static, so LeakSanitizer (`cargo xtask sanitize`) does not report this deliberate leak as the library's.
pub fn leak(bytes: Vec<u8>) -> &'static [u8] {
    static KEPT: std::sync::Mutex<Vec<&'static [u8]>> = std::sync::Mutex::new(Vec::new());
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(bytes);
    bytes
}

/// A memory provider wrapper that counts live blocks and can be told to fail the Nth allocation.
#[derive(Clone, Default)]
pub struct Tracked<M> {
    pub live: Arc<AtomicUsize>,
    pub allocations: Arc<AtomicUsize>,
    /// Bytes requested by every allocation that succeeded.
    pub requested: Arc<AtomicUsize>,
    /// Allocation number (counted from 1) that fails; 0 = none.
    pub fail_at: Arc<AtomicUsize>,
    pub inner: M,
}

/// Host memory that counts live blocks and can fail the Nth allocation.
pub type Counting = Tracked<HostMemory>;

/// Arena memory that counts live blocks (like [`Counting`] for the host pool).
pub type CountingArena<'a> = Tracked<llext::ArenaMemory<'a>>;

impl Counting {
    pub fn failing_at(n: usize) -> Self {
        let c = Counting::default();
        c.fail_at.store(n + 1, Ordering::SeqCst);
        c
    }
}

impl<'a> CountingArena<'a> {
    pub fn new(arena: &'a mut [u8]) -> (Self, Arc<AtomicUsize>) {
        let live = Arc::new(AtomicUsize::new(0));
        let memory = Tracked {
            live: live.clone(),
            allocations: Arc::default(),
            requested: Arc::default(),
            fail_at: Arc::default(),
            inner: llext::ArenaMemory::new(arena),
        };
        (memory, live)
    }
}

impl<M> Tracked<M> {
    /// Makes the `n`th allocation from now (0 = the next) fail.
    pub fn fail_after(&self, n: usize) {
        self.fail_at.store(
            self.allocations.load(Ordering::SeqCst) + n + 1,
            Ordering::SeqCst,
        );
    }
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

// SAFETY: forwards to the wrapped provider, which upholds the contract.
unsafe impl<M: Memory> Memory for Tracked<M> {
    fn allocate(&mut self, request: &BlockRequest) -> llext::Result<Block> {
        let n = self.allocations.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at.load(Ordering::SeqCst) {
            return Err(llext::Error::OutOfMemory {
                size: request.size,
                align: request.align,
            });
        }
        let b = self.inner.allocate(request)?;
        self.live.fetch_add(1, Ordering::SeqCst);
        self.requested.fetch_add(request.size, Ordering::SeqCst);
        Ok(b)
    }
    fn finalize(&mut self, block: &Block, permission: Permission) -> llext::Result<()> {
        self.inner.finalize(block, permission)
    }
    fn free(&mut self, block: Block) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.inner.free(block)
    }
    fn adopt(
        &mut self,
        addr: usize,
        size: usize,
        token: usize,
        permission: Permission,
    ) -> llext::Result<Block> {
        let b = self.inner.adopt(addr, size, token, permission)?;
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(b)
    }
    fn free_adopted(&mut self, block: Block, permission: Permission) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.inner.free_adopted(block, permission)
    }
    fn disown(&mut self, block: Block) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.inner.disown(block)
    }
    fn executes_in_place(&self) -> bool {
        self.inner.executes_in_place()
    }
}

/// The C library's exports with `name` at `addr` instead: the same names with one built-in elsewhere, as
/// in a new process where a portable restore must rebind it.
pub fn libc_exports_moving(name: &'static str, addr: *const ()) -> Vec<llext::Export> {
    llext::LIBC_EXPORTS
        .iter()
        .map(|e| match e.name() {
            n if n == name => llext::Export::new(name, addr),
            _ => *e,
        })
        .collect()
}

pub fn registry() -> Registry<HostMemory> {
    Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS))
}

pub fn counting_registry() -> (Registry<Counting>, Counting) {
    let memory = Counting::default();
    (
        Registry::new(memory.clone(), ExportTable::new(llext::LIBC_EXPORTS)),
        memory,
    )
}

/// A simulated suspend: saves an in-place context, forgets the `count` loaded extensions and restores
/// them from the context. Returns the context and the restored handles.
pub fn suspend_in_place<M: Memory>(
    registry: &Registry<M>,
    count: usize,
) -> (Vec<u8>, Vec<llext::ExtId>) {
    let context = registry.save(&llext::SaveOptions::default()).unwrap();
    assert_eq!(registry.forget_all(), Ok(count));
    let ids = registry
        .restore(
            &llext::Context::from_bytes(&context).unwrap(),
            &llext::RestoreOptions::default(),
        )
        .unwrap();
    assert_eq!(ids.len(), count);
    (context, ids)
}

/// Calls `symbol` with `args`.
pub fn call<M: Memory>(registry: &Registry<M>, symbol: &str, args: &[i64]) -> i64 {
    // SAFETY: the fixtures' functions are `long f(long...)` C functions, documented in their sources.
    unsafe { registry.call(symbol, args) }.unwrap_or_else(|e| panic!("call {symbol}: {e}"))
}

/// The protection string (`r-xp`...) of the mapping holding `addr`, from /proc/self/maps.
pub fn protection_of(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let range = parts.next().unwrap();
        let perms = parts.next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            usize::from_str_radix(a, 16).unwrap(),
            usize::from_str_radix(b, 16).unwrap(),
        );
        if (a..b).contains(&addr) {
            return perms.to_string();
        }
    }
    panic!("{addr:#x} is not mapped")
}

/// Compiles C `source` with gcc into an object (real compiler output, made at test time for generated
/// shapes such as random dependency graphs). Objects are cached by content in the target directory.
pub fn compile_c(source: &str, flags: &[&str]) -> Vec<u8> {
    compile_with("gcc", source, flags)
}

/// Compiles C `source` with clang for another target (`--target=TRIPLE`), e.g. to get ELF32, REL-style
/// (Arm) or RISC-V objects on an x86_64 host. Cached like [`compile_c`].
pub fn compile_for(triple: &str, source: &str, flags: &[&str]) -> Vec<u8> {
    let target = format!("--target={triple}");
    let mut all = vec![target.as_str()];
    all.extend_from_slice(flags);
    compile_with("clang", source, &all)
}

/// Compiles C `source` with Debian's RISC-V GNU cross compiler (`riscv64-unknown-elf-gcc`, either width by
/// `-march`/`-mabi`), whose assembler leaves alignment to the linker. Cached like [`compile_c`].
#[allow(dead_code)]
pub fn compile_riscv_gcc(source: &str, flags: &[&str]) -> Vec<u8> {
    compile_with("riscv64-unknown-elf-gcc", source, flags)
}

/// Compiles C `source` with Debian's Arm GNU cross compiler (`arm-none-eabi-gcc`). Cached like
/// [`compile_c`].
#[allow(dead_code)]
pub fn compile_arm_gcc(source: &str, flags: &[&str]) -> Vec<u8> {
    compile_with("arm-none-eabi-gcc", source, flags)
}

fn compile_with(compiler: &str, source: &str, flags: &[&str]) -> Vec<u8> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut h);
    compiler.hash(&mut h);
    flags.hash(&mut h);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("generated-c");
    std::fs::create_dir_all(&dir).unwrap();
    let key = format!("{:016x}", h.finish());
    let obj = dir.join(format!("{key}.o"));
    if let Ok(bytes) = std::fs::read(&obj) {
        return bytes;
    }
    let src = dir.join(format!("{key}.c"));
    std::fs::write(&src, source).unwrap();
    // Unique per process and thread: tests running at once may compile the same source.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("{key}.{}.{n}.o", std::process::id()));
    let out = std::process::Command::new(compiler)
        .args(["-c", "-O2", "-ffreestanding", "-fno-common"])
        .args(flags)
        .arg("-I")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../include"))
        .arg(&src)
        .arg("-o")
        .arg(&tmp)
        .output()
        .expect(compiler);
    assert!(
        out.status.success(),
        "{compiler} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &obj).unwrap();
    std::fs::read(&obj).unwrap()
}

/// A read-write-execute mapping in the low 2 GiB, for [`llext::ArenaMemory`] tests that call the loaded code:
/// an arena does not change protections, and code built without `-fPIC` needs low addresses. Unmapped on
/// drop.
///
/// Placed from 0x7000_0000 up, not with `MAP_32BIT`, whose first mapping the kernel puts at 0x4000_0000:
/// inside every 1 GiB range below 2 GiB that `HostMemory` tries for its pool, which then went high when such
/// an arena came first in a test binary, and objects built without `-fPIC` failed to link.
pub struct ExecArena {
    ptr: *mut u8,
    len: usize,
}

impl ExecArena {
    pub fn new(len: usize) -> ExecArena {
        const FROM: usize = 0x7000_0000;
        const TO: usize = 0x8000_0000;
        let step = len.next_multiple_of(1 << 20);
        for at in (FROM..TO.saturating_sub(len)).step_by(step) {
            // SAFETY: a fresh anonymous private mapping that replaces nothing (MAP_FIXED_NOREPLACE);
            // nothing else refers to it.
            let p = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED && p as usize == at {
                return ExecArena { ptr: p.cast(), len };
            }
        }
        panic!("no room for a {len}-byte executable arena between {FROM:#x} and {TO:#x}");
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, and borrowed through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for ExecArena {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`; every borrow of it has ended.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A small deterministic generator (xorshift), so failures reproduce from the printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Restores a context with default options into `r`, which must accept it.
pub fn restore_all<M: Memory>(r: &Registry<M>, ctx: &[u8]) -> Vec<llext::ExtId> {
    r.restore(
        &llext::Context::from_bytes(ctx).unwrap(),
        &llext::RestoreOptions::default(),
    )
    .unwrap()
}

/// Saves everything `r` holds portably and restores it into a fresh host registry, which it returns.
pub fn restored_elsewhere<M: Memory>(r: &Registry<M>) -> Registry<HostMemory> {
    let options = llext::SaveOptions {
        portable: true,
        ..llext::SaveOptions::default()
    };
    let other = registry();
    restore_all(&other, &r.save(&options).unwrap());
    other
}
