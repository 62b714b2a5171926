//! Shared pieces of the llext fuzz targets: arena-backed registries that count their blocks, the context
//! checksum (so that mutated contexts can be resealed and reach the record checks behind it), and the
//! invariants every registry must keep whatever it was fed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use llext::{
    ArenaMemory, Block, BlockRequest, Error, Export, ExportTable, Memory, Permission, Registry,
};

/// Size of each fuzzing arena: room for several fixture objects, small enough to exhaust.
pub const ARENA_SIZE: usize = 1 << 20;

/// The size of a context header; its total-length field sits at [`TOTAL_AT`].
pub const CONTEXT_HEADER: usize = 56;
/// Offset of the total length in a context header.
pub const TOTAL_AT: usize = 32;

/// [`ArenaMemory`] that counts its live blocks, so a target can check that every block came back.
pub struct Tracked<'a> {
    inner: ArenaMemory<'a>,
    live: Rc<Cell<usize>>,
}

impl<'a> Tracked<'a> {
    /// Arena memory over `arena`, counting into `live`.
    pub fn new(arena: &'a mut [u8], live: Rc<Cell<usize>>) -> Self {
        Tracked {
            inner: ArenaMemory::new(arena),
            live,
        }
    }
}

// SAFETY: forwards to ArenaMemory, which upholds the contract; the counter has no effect on the blocks.
unsafe impl Memory for Tracked<'_> {
    fn allocate(&mut self, request: &BlockRequest) -> llext::Result<Block> {
        let block = self.inner.allocate(request)?;
        self.live.set(self.live.get() + 1);
        Ok(block)
    }
    fn finalize(&mut self, block: &Block, permission: Permission) -> llext::Result<()> {
        self.inner.finalize(block, permission)
    }
    fn free(&mut self, block: Block) {
        self.live.set(self.live.get() - 1);
        self.inner.free(block)
    }
    fn adopt(
        &mut self,
        addr: usize,
        size: usize,
        token: usize,
        permission: Permission,
    ) -> llext::Result<Block> {
        let block = self.inner.adopt(addr, size, token, permission)?;
        self.live.set(self.live.get() + 1);
        Ok(block)
    }
    fn free_adopted(&mut self, block: Block, permission: Permission) {
        self.live.set(self.live.get() - 1);
        self.inner.free_adopted(block, permission)
    }
    fn disown(&mut self, block: Block) {
        self.live.set(self.live.get() - 1);
        self.inner.disown(block)
    }
}

/// A read-write mapping in the low 2 GiB (`MAP_32BIT`), so that objects for 32-bit targets and code built
/// without `-fPIC` link as they would on a microcontroller. Never unmapped (one per thread).
fn low_mapping(len: usize) -> &'static mut [u8] {
    // SAFETY: a fresh anonymous private mapping, handed out once.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap of a fuzzing arena");
    // SAFETY: the mapping is `len` bytes, readable and writable, and nothing else refers to it.
    unsafe { std::slice::from_raw_parts_mut(p.cast(), len) }
}

thread_local! {
    static ARENAS: RefCell<(&'static mut [u8], &'static mut [u8])> =
        RefCell::new((low_mapping(ARENA_SIZE), low_mapping(ARENA_SIZE)));
    static HOST_LOG: usize = low_mapping(4096).as_ptr() as usize;
}

/// Runs `f` with two arenas, mapped once per thread (a fresh megabyte per input would dominate the run).
pub fn with_arenas<T>(f: impl FnOnce(&mut [u8], &mut [u8]) -> T) -> T {
    ARENAS.with(|a| {
        let mut a = a.borrow_mut();
        let (first, second) = &mut *a;
        f(first, second)
    })
}

/// The built-in table every target offers: the host C library functions, and `host_log` (which the
/// cross-compiled seeds call) at a low address that 32-bit code can reach. Nothing is ever called.
pub fn builtins() -> ExportTable {
    let mut all: Vec<Export> = llext::LIBC_EXPORTS.to_vec();
    all.push(Export::new("host_log", HOST_LOG.with(|a| *a) as *const ()));
    ExportTable::new(&all)
}

/// A registry over `arena` for `machine`, and its live-block counter.
pub fn registry(arena: &mut [u8], machine: u16) -> (Registry<Tracked<'_>>, Rc<Cell<usize>>) {
    let live = Rc::new(Cell::new(0));
    let registry = Registry::for_machine(Tracked::new(arena, live.clone()), builtins(), machine);
    (registry, live)
}

/// The machine a registry should load `elf` for: its own `e_machine` when a backend exists for it (so
/// every backend's relocation code is fuzzed, nothing being run), else x86_64.
pub fn machine_of(elf: &[u8]) -> u16 {
    let m = match (elf.get(5), elf.get(18..20)) {
        (Some(2), Some(&[a, b])) => u16::from_be_bytes([a, b]),
        (_, Some(&[a, b])) => u16::from_le_bytes([a, b]),
        _ => 62,
    };
    backend_machine(m)
}

/// `machine` if a relocation backend exists for it, else x86_64.
pub fn backend_machine(machine: u16) -> u16 {
    match machine {
        40 | 62 | 183 | 243 => machine,
        _ => 62,
    }
}

/// An error from hostile input must be a typed one, never an internal invariant breaking, and must render.
pub fn expect_typed(e: &Error) {
    assert!(
        !matches!(e, Error::Internal(_)),
        "hostile input reported as an internal error: {e}"
    );
    assert!(!e.to_string().is_empty());
    for p in e.problems() {
        assert!(!matches!(p, Error::Internal(_)), "internal problem: {p}");
    }
}

/// Writes the context's length into its header and recomputes its checksum, so that a mutated context
/// reaches the record checks behind the checksum.
pub fn reseal(ctx: &mut [u8]) {
    if ctx.len() < CONTEXT_HEADER + 8 {
        return;
    }
    let len = ctx.len() as u64;
    ctx[TOTAL_AT..TOTAL_AT + 8].copy_from_slice(&len.to_le_bytes());
    let n = ctx.len() - 8;
    let sum = llext::Context::checksum(&ctx[..n]);
    ctx[n..].copy_from_slice(&sum.to_le_bytes());
}

/// The registry's books agree with themselves: unique names found again by name, use counts of at least
/// one, dependencies loaded and mirrored by dependents.
pub fn check_registry<M: Memory>(r: &Registry<M>) {
    let all = r.extensions();
    assert_eq!(all.len(), r.len());
    for e in &all {
        assert!(e.use_count >= 1, "{}: use count 0", e.name);
        assert_eq!(r.get(&e.name), Some(e.id), "{} not found by name", e.name);
        for d in &e.dependencies {
            let dep = all
                .iter()
                .find(|x| &x.name == d)
                .unwrap_or_else(|| panic!("{}: dependency {d} not loaded", e.name));
            assert!(
                dep.dependents.contains(&e.name),
                "{d} does not list {}",
                e.name
            );
        }
        for d in &e.dependents {
            let user = all
                .iter()
                .find(|x| &x.name == d)
                .unwrap_or_else(|| panic!("{}: dependent {d} not loaded", e.name));
            assert!(user.dependencies.contains(&e.name));
        }
    }
}
