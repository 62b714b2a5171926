//! `ArenaMemory`'s kept (disowned) blocks: what a restore may adopt, and that no range of the arena is
//! lost when the heap cannot grow its range lists.
//!
//! This binary installs a global allocator that can be told to refuse every allocation of the current
//! thread (a heap that is full stays full), so that the arena's fallible list growth is exercised.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use llext::{ArenaMemory, BlockRequest, Memory, Permission};

#[global_allocator]
static ALLOCATOR: Refusing = Refusing;

thread_local! {
    static HEAP_FULL: Cell<bool> = const { Cell::new(false) };
}

struct Refusing;

fn heap_full() -> bool {
    HEAP_FULL.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards to the system allocator; refusing returns null, as allowed.
unsafe impl GlobalAlloc for Refusing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if heap_full() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if heap_full() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` with every heap allocation of this thread refused.
fn with_full_heap<T>(f: impl FnOnce() -> T) -> T {
    HEAP_FULL.with(|h| h.set(true));
    let r = f();
    HEAP_FULL.with(|h| h.set(false));
    r
}

fn rw(size: usize) -> BlockRequest {
    BlockRequest {
        size,
        align: 1,
        permission: Permission::ReadWrite,
    }
}

/// A load that does not fit even with the kept blocks must leave them kept (and free): with a full
/// heap, putting them back into the kept list needs room the heap does not have.
#[test]
fn a_failed_allocation_with_a_full_heap_loses_no_kept_block() {
    let mut bytes = vec![0u8; 1024];
    let base = bytes.as_ptr() as usize;
    let mut m = ArenaMemory::new(&mut bytes);
    let a = m.allocate(&rw(512)).unwrap();
    m.disown(a);
    assert_eq!(m.free_bytes(), 1024);
    let refused = with_full_heap(|| m.allocate(&rw(2048)).is_err());
    assert!(refused);
    assert_eq!(m.free_bytes(), 1024, "a kept block left the arena's books");
    let b = m.adopt(base, 512, 0, Permission::ReadWrite).unwrap();
    m.free(b);
}

/// The same when the kept block touches no free range: merging it into the free list needs room.
#[test]
fn a_failed_allocation_with_a_full_heap_loses_no_kept_block_apart_from_the_free_ones() {
    let mut bytes = vec![0u8; 1024];
    let base = bytes.as_ptr() as usize;
    let mut m = ArenaMemory::new(&mut bytes);
    let a = m.allocate(&rw(100)).unwrap();
    let _b = m.allocate(&rw(100)).unwrap();
    m.disown(a);
    assert_eq!(m.free_bytes(), 924);
    let refused = with_full_heap(|| m.allocate(&rw(2048)).is_err());
    assert!(refused);
    assert_eq!(m.free_bytes(), 924, "a kept block left the arena's books");
    m.adopt(base, 100, 0, Permission::ReadWrite).unwrap();
}

/// After a warm reboot, a restore adopts a never-handed-out range; if the restore then fails it disowns
/// it again (all or nothing). With a full heap, the kept list has no room for it: the range must not
/// leave the arena's books (before kept blocks were a list of their own, it went back to the free list,
/// whose split by the adoption had left room).
#[test]
fn disowning_with_a_full_heap_loses_no_block() {
    let mut bytes = vec![0u8; 1024];
    let base = bytes.as_ptr() as usize;
    let mut m = ArenaMemory::new(&mut bytes);
    let adopted = m
        .adopt(base + 256, 128, 0, Permission::ReadExecute)
        .unwrap();
    with_full_heap(|| m.disown(adopted));
    assert_eq!(
        m.free_bytes(),
        1024,
        "a disowned block left the arena's books"
    );
    m.adopt(base + 256, 128, 0, Permission::ReadExecute)
        .unwrap();
}

/// After a warm reboot a new arena adopts what it has not handed out. A block it adopted and then freed
/// (the extension was unloaded: its destructors ran, its memory went back) has been handed out: adopting
/// it again must be refused, as it is for a block the same arena allocated and freed.
#[test]
fn a_block_adopted_then_freed_is_not_adopted_again() {
    let mut bytes = vec![0u8; 4096];
    let base = bytes.as_ptr() as usize;
    let mut m = ArenaMemory::new(&mut bytes);
    // Allocated and freed: refused.
    let a = m.allocate(&rw(256)).unwrap();
    assert_eq!(a.addr(), base);
    m.free(a);
    assert!(m.adopt(base, 256, 0, Permission::ReadWrite).is_err());
    // Adopted (a restore after a warm reboot) and freed (unloaded): refused too.
    let b = m.adopt(base + 1024, 256, 0, Permission::ReadWrite).unwrap();
    m.free(b);
    assert!(
        m.adopt(base + 1024, 256, 0, Permission::ReadWrite).is_err(),
        "an unloaded extension's freed block was adopted again"
    );
    // Disowned instead (forget_all, a failed restore): kept, and adopted again.
    let c = m.adopt(base + 2048, 256, 0, Permission::ReadWrite).unwrap();
    m.disown(c);
    m.adopt(base + 2048, 256, 0, Permission::ReadWrite).unwrap();
}
