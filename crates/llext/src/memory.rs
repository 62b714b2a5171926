//! Memory for loaded extensions: one trait, a host implementation (mmap, W^X) and a no_std arena.

use core::ptr::NonNull;

use crate::error::{Error, Result};
use crate::ranges::FreeRanges;

/// The protection a block ends up with once loading is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Code: readable and executable, never writable.
    ReadExecute,
    /// Constant data, relocated tables, the GOT: read-only.
    ReadOnly,
    /// Data and bss: readable and writable, never executable.
    ReadWrite,
}

impl Permission {
    /// All permissions, in block order.
    pub const ALL: [Permission; 3] = [
        Permission::ReadExecute,
        Permission::ReadOnly,
        Permission::ReadWrite,
    ];

    /// Short name as shown by `llext inspect` (`r-x`, `r--`, `rw-`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReadExecute => "r-x",
            Permission::ReadOnly => "r--",
            Permission::ReadWrite => "rw-",
        }
    }
}

/// A request for one block of extension memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRequest {
    /// Size in bytes (never 0).
    pub size: usize,
    /// Alignment in bytes (a power of two).
    pub align: usize,
    /// The protection the block will be finalised to.
    pub permission: Permission,
}

/// A block handed out by a [`Memory`] provider: writable from allocation until [`Memory::finalize`].
#[derive(Debug, PartialEq, Eq)]
pub struct Block {
    ptr: NonNull<u8>,
    size: usize,
    /// Provider-private value (e.g. the size actually reserved).
    token: usize,
}

// SAFETY: a Block is an owning handle to memory that no one else aliases; moving it between threads is sound.
unsafe impl Send for Block {}

impl Block {
    /// Builds a block handle. Providers call this; the loader only consumes blocks.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `size` bytes until the block is finalised or freed, and not
    /// be aliased by any other live block.
    pub unsafe fn new(ptr: NonNull<u8>, size: usize, token: usize) -> Block {
        Block { ptr, size, token }
    }

    /// Start address.
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Start pointer.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Size in bytes as requested.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The provider's private value given to [`Block::new`].
    pub fn token(&self) -> usize {
        self.token
    }

    /// The block's bytes, for reading (every final permission includes read).
    ///
    /// # Safety
    /// No mutable reference into the block may be live.
    pub(crate) unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: the provider promised `size` readable bytes for the block's lifetime; the caller promises
        // no concurrent mutable access.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.size) }
    }

    /// The block's bytes, for filling before it is finalised.
    ///
    /// # Safety
    /// The block must not be finalised yet (its memory is still writable) and no other reference into it may
    /// be live.
    pub(crate) unsafe fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the provider promised `size` writable bytes until finalisation (see `Block::new`); the caller
        // promises the block is not finalised and not aliased.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.size) }
    }
}

/// Where extension memory comes from.
///
/// The loader asks for one block per permission per extension, fills and relocates it while it is writable,
/// then calls [`Memory::finalize`] once, which sets the final protection and makes instructions visible to
/// instruction fetch (cache maintenance where the core needs it). [`Memory::free`] returns the block.
///
/// # Safety
/// Implementations must hand out blocks that are valid, writable, aligned as requested, at least `size` bytes
/// long and disjoint from every other live block, until they are freed.
pub unsafe trait Memory {
    /// Allocates a writable block. Failure is [`Error::OutOfMemory`], never a panic.
    fn allocate(&mut self, request: &BlockRequest) -> Result<Block>;
    /// Applies the final protection and makes code coherent. Called at most once per block.
    fn finalize(&mut self, block: &Block, permission: Permission) -> Result<()>;
    /// Releases a block.
    fn free(&mut self, block: Block);

    /// Releases a block that was finalised to `permission` (an unloaded extension's). Providers may skip
    /// work the permission makes needless — the host pool does not reopen pages that stayed read-write;
    /// the default calls [`Memory::free`].
    fn free_finalized(&mut self, block: Block, permission: Permission) {
        let _ = permission;
        self.free(block);
    }

    /// Finalises several blocks at once. Providers may merge adjacent blocks of equal permission into one
    /// protection change; the default finalises them one by one.
    fn finalize_all(
        &mut self,
        blocks: &mut dyn Iterator<Item = (&Block, Permission)>,
    ) -> Result<()> {
        for (block, permission) in blocks {
            self.finalize(block, permission)?;
        }
        Ok(())
    }

    /// Takes ownership of a block that already holds a loaded extension (an in-place restore after a
    /// suspend): the memory at `addr` is kept as it is, with its final protection. Providers that cannot
    /// tell whether the range is theirs refuse (the default).
    fn adopt(
        &mut self,
        addr: usize,
        size: usize,
        token: usize,
        permission: Permission,
    ) -> Result<Block> {
        let _ = (addr, size, token, permission);
        Err(Error::Memory {
            what: "adopt retained memory (this provider does not support in-place restore)",
            code: 0,
        })
    }

    /// Frees a block taken with [`Memory::adopt`] that nothing used since: what
    /// [`Registry::discard`](crate::Registry::discard) gives back (sealed to `permission`, never run or
    /// written). A provider that tracks which memory it has handed out may return such a block to the state
    /// it had before the adoption; the default frees it like an unloaded extension's
    /// ([`Memory::free_finalized`]).
    fn free_adopted(&mut self, block: Block, permission: Permission) {
        self.free_finalized(block, permission);
    }

    /// Gives up a block without freeing its contents: the reverse of [`Memory::adopt`], used when the
    /// registry forgets its bookkeeping before a suspend, or rolls back a failed restore. The default
    /// forgets the handle.
    fn disown(&mut self, block: Block) {
        let _ = block;
    }

    /// Whether code may run where it lies outside this provider's blocks — in the extension's own storage,
    /// e.g. memory-mapped flash on a core without an MMU. With `true`, code sections that no relocation
    /// patches are used in place by [`Storage::InPlace`](crate::Storage::InPlace) loads instead of being
    /// copied. The default is `false`: on a host the storage is ordinary, non-executable heap memory.
    fn executes_in_place(&self) -> bool {
        false
    }
}

/// A no_std provider over a caller-given byte arena (e.g. a `static mut [u8; N]` on a microcontroller).
///
/// First fit with coalescing free ranges; permissions are not enforced (there is no MMU); `finalize` calls the
/// optional `sync_code` hook for code blocks so targets with caches can clean and invalidate them.
///
/// In-place restores: a block given up with [`Memory::disown`] (by
/// [`Registry::forget_all`](crate::Registry::forget_all)) is kept apart, so a load before the restore
/// takes other free memory and leaves it intact; only when nothing else fits are the kept blocks handed
/// out again, and a restore that then names them is refused ([`Error::Memory`]) instead of adopting
/// overwritten code. After a warm reboot, a new arena over the same retained bytes adopts the blocks a
/// context names as long as nothing it handed out since it was made reached them (what it has handed out
/// is tracked as a high-water mark: with first fit that is everything below it). Saving with
/// [`SaveOptions::content_hashes`](crate::SaveOptions::content_hashes) also refuses blocks that changed
/// in any other way. [`Registry::with_memory`](crate::Registry::with_memory) reads the arena's
/// [`free_bytes`](ArenaMemory::free_bytes) while a registry owns it.
///
/// ```
/// static mut ARENA: [u8; 4096] = [0; 4096];
/// // SAFETY: the arena is used by this provider alone.
/// let arena = unsafe { &mut *core::ptr::addr_of_mut!(ARENA) };
/// let mut memory = llext::ArenaMemory::new(arena);
/// use llext::{Memory, BlockRequest, Permission};
/// let block = memory.allocate(&BlockRequest { size: 100, align: 64, permission: Permission::ReadWrite }).unwrap();
/// assert_eq!(block.addr() % 64, 0);
/// memory.free(block);
/// assert!(memory.allocate(&BlockRequest { size: 8192, align: 8, permission: Permission::ReadOnly }).is_err());
/// ```
pub struct ArenaMemory<'a> {
    base: NonNull<u8>,
    len: usize,
    free: FreeRanges,
    /// Blocks given up with `disown` and not adopted or handed out since.
    retained: FreeRanges,
    /// The end of the highest range handed out since the arena was made (allocated, or adopted and freed
    /// since): past it, every byte is as it was when the arena was made (first fit hands out the lowest
    /// range that fits).
    touched: usize,
    sync_code: Option<fn(*const u8, usize)>,
    executes_in_place: bool,
    _arena: core::marker::PhantomData<&'a mut [u8]>,
}

// SAFETY: the arena is exclusively borrowed for 'a; the provider is the only user of those bytes.
unsafe impl Send for ArenaMemory<'_> {}

impl<'a> ArenaMemory<'a> {
    /// Takes over `arena` for extension memory.
    pub fn new(arena: &'a mut [u8]) -> Self {
        let len = arena.len();
        let base = NonNull::new(arena.as_mut_ptr()).unwrap_or(NonNull::dangling());
        ArenaMemory {
            base,
            len,
            free: FreeRanges::whole(len),
            retained: FreeRanges::default(),
            touched: 0,
            sync_code: None,
            executes_in_place: false,
            _arena: core::marker::PhantomData,
        }
    }

    /// Sets a hook called on every finalised code block (clean D-cache, invalidate I-cache).
    pub fn with_code_sync(mut self, sync: fn(*const u8, usize)) -> Self {
        self.sync_code = Some(sync);
        self
    }

    /// Declares that memory outside the arena — the firmware image in flash, where extensions loaded with
    /// [`Registry::load_static`](crate::Registry::load_static) lie — is executable, so their code sections
    /// that no relocation patches run in place (see [`Memory::executes_in_place`]). Only true on targets
    /// without an MMU or with that memory mapped executable.
    pub fn with_code_in_place(mut self) -> Self {
        self.executes_in_place = true;
        self
    }

    /// Bytes currently free, blocks given up for a restore included (a load takes them when nothing else
    /// fits).
    pub fn free_bytes(&self) -> usize {
        self.free.total() + self.retained.total()
    }

    /// First fit in the free ranges; failing that, in them and the blocks given up for a restore, which
    /// then can no longer be adopted (they stay kept if the request does not fit even so).
    fn take_first_fit(&mut self, size: usize, align: usize) -> Option<usize> {
        let base = self.base.as_ptr() as usize;
        if let Some(off) = self.free.take_first_fit(base, size, align) {
            return Some(off);
        }
        if self.retained.total() == 0 {
            return None;
        }
        // Room in the free list for every kept range first, so that merging them in drops none (a full
        // heap: as if nothing fit, everything kept).
        if !self.free.reserve(self.retained.len()) {
            return None;
        }
        let mut kept = core::mem::take(&mut self.retained);
        for (off, len) in kept.ranges() {
            self.free.give_back(off, len); // room made above
        }
        let off = self.free.take_first_fit(base, size, align);
        if off.is_none() {
            // Back into the list they came in, which needs no room; one the free list cannot split off
            // (a full heap) stays free rather than be lost.
            kept.retain(|off, len| self.free.take_exact(off, len));
            self.retained = kept;
        }
        off
    }

    /// Size of the arena.
    pub fn capacity(&self) -> usize {
        self.len
    }
}

// SAFETY: blocks are disjoint sub-ranges of the exclusively borrowed arena, aligned as asked.
unsafe impl Memory for ArenaMemory<'_> {
    fn allocate(&mut self, request: &BlockRequest) -> Result<Block> {
        let oom = || Error::OutOfMemory {
            size: request.size,
            align: request.align,
        };
        if request.size == 0 || !request.align.is_power_of_two() {
            return Err(oom());
        }
        let base = self.base.as_ptr() as usize;
        let off = self
            .take_first_fit(request.size, request.align)
            .ok_or_else(oom)?;
        self.touched = self.touched.max(off + request.size);
        let ptr = NonNull::new((base + off) as *mut u8)
            .ok_or_else(|| Error::Internal("null arena block"))?;
        // SAFETY: [off, off+size) lies inside the arena and was free; it is now out of the free list, so no
        // other block aliases it.
        Ok(unsafe { Block::new(ptr, request.size, off) })
    }

    fn finalize(&mut self, block: &Block, permission: Permission) -> Result<()> {
        if permission == Permission::ReadExecute {
            if let Some(sync) = self.sync_code {
                sync(block.as_ptr(), block.size());
            }
        }
        Ok(())
    }

    fn adopt(
        &mut self,
        addr: usize,
        size: usize,
        _token: usize,
        _permission: Permission,
    ) -> Result<Block> {
        let base = self.base.as_ptr() as usize;
        let off = addr
            .checked_sub(base)
            .filter(|o| o.checked_add(size).is_some_and(|e| e <= self.len));
        // A context saved with another arena (one a firmware update moved, say) is told apart from one
        // whose blocks something else took since: the cures differ.
        let Some(off) = off else {
            return Err(Error::Memory {
                what: "adopt retained memory: range lies outside the arena (saved with another arena?)",
                code: 0,
            });
        };
        // Given up with `disown` and kept since; or, in an arena made after a warm reboot, never handed out.
        let kept = size > 0
            && (self.retained.take_exact(off, size)
                || (off >= self.touched && self.free.take_exact(off, size)));
        if !kept {
            return Err(Error::Memory {
                what: "adopt retained memory: the arena has handed the range out since it was given up \
                       (a load between `forget_all`, or a warm reboot, and the restore took it)",
                code: 0,
            });
        }
        let ptr =
            NonNull::new(addr as *mut u8).ok_or_else(|| Error::Internal("null arena block"))?;
        // SAFETY: the range lies inside the arena and was kept or never handed out; it is now out of both
        // lists, so no other block aliases it.
        Ok(unsafe { Block::new(ptr, size, off) })
    }

    fn disown(&mut self, block: Block) {
        // The bytes stay as they are, kept apart for a later restore to adopt. If the kept list has no
        // room (a full heap), the range goes back to the free list rather than out of the arena's books.
        if !self.retained.give_back(block.token(), block.size()) {
            self.free.give_back(block.token(), block.size());
        }
    }

    fn free_adopted(&mut self, block: Block, _permission: Permission) {
        // Nothing wrote it since it was adopted, so it does not raise the mark of what was handed out: a
        // range adopted as never handed out (after a warm reboot) lies past the mark and stays adoptable,
        // as it was; raising the mark would also refuse every other context's blocks below it. A range
        // adopted from the kept ones was handed out before, and lies below the mark already.
        self.free.give_back(block.token(), block.size());
    }

    fn free(&mut self, block: Block) {
        // A block adopted after a warm reboot and freed (its extension unloaded) was handed out too: it
        // is no longer as it was when the arena was made, and is not adopted again.
        self.touched = self.touched.max(block.token().saturating_add(block.size()));
        self.free.give_back(block.token(), block.size());
    }

    fn executes_in_place(&self) -> bool {
        self.executes_in_place
    }
}

/// An extension's blocks with their final permissions: at most one per permission, kept inline so that
/// loading or restoring an extension allocates no list for them.
#[derive(Debug, Default)]
pub(crate) struct BlockList {
    items: [Option<Placed>; Permission::ALL.len()],
}

/// A block and the permission it is sealed to.
pub(crate) type Placed = (Block, Permission);

impl BlockList {
    /// Appends a block, or gives it back if the list is full (one block per permission: the linker makes
    /// no more, and contexts with more are refused), so that the caller can return it to its provider.
    pub fn push(&mut self, block: Placed) -> Result<(), Placed> {
        match self.items.iter_mut().find(|i| i.is_none()) {
            Some(free) => {
                *free = Some(block);
                Ok(())
            }
            None => Err(block),
        }
    }

    pub fn len(&self) -> usize {
        self.items.iter().take_while(|i| i.is_some()).count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Placed> + '_ {
        self.items.iter().map_while(Option::as_ref)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Placed> + '_ {
        self.items.iter_mut().map_while(Option::as_mut)
    }

    pub fn get(&self, i: usize) -> Option<&Placed> {
        self.items.get(i).and_then(Option::as_ref)
    }

    pub fn last(&self) -> Option<&Placed> {
        self.iter().last()
    }

    /// Takes every block out, leaving the list empty.
    pub fn take_all(&mut self) -> impl Iterator<Item = Placed> {
        core::mem::take(&mut self.items)
            .into_iter()
            .map_while(|i| i)
    }
}

/// What only a portable restore does with a list: fill its blocks one by one and put them back in the
/// order of the saved record.
#[cfg(feature = "portable")]
impl BlockList {
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Placed> {
        self.items.get_mut(i).and_then(Option::as_mut)
    }

    /// Sorts the blocks by `key`.
    pub fn sort_by_key<K: Ord>(&mut self, mut key: impl FnMut(&Placed) -> K) {
        let n = self.len();
        if let Some(items) = self.items.get_mut(..n) {
            items.sort_by_key(|i| i.as_ref().map(&mut key));
        }
    }
}
