//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use llext::{Block, BlockRequest, ExportTable, HostMemory, Memory, Permission, Registry};

/// Host memory that counts live blocks and can be told to fail the Nth allocation.
#[derive(Clone, Default)]
pub struct Counting {
    pub live: Arc<AtomicUsize>,
    pub allocations: Arc<AtomicUsize>,
    pub fail_at: Option<usize>,
    inner: HostMemory,
}

impl Counting {
    pub fn failing_at(n: usize) -> Self {
        Counting {
            fail_at: Some(n),
            ..Counting::default()
        }
    }
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

// SAFETY: forwards to HostMemory, which upholds the contract.
unsafe impl Memory for Counting {
    fn allocate(&mut self, request: &BlockRequest) -> llext::Result<Block> {
        let n = self.allocations.fetch_add(1, Ordering::SeqCst);
        if Some(n) == self.fail_at {
            return Err(llext::Error::OutOfMemory {
                size: request.size,
                align: request.align,
            });
        }
        let b = self.inner.allocate(request)?;
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(b)
    }
    fn finalize(&mut self, block: &Block, permission: Permission) -> llext::Result<()> {
        self.inner.finalize(block, permission)
    }
    fn free(&mut self, block: Block) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.inner.free(block)
    }
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
