//! Where `HostMemory` puts its pool when the process already has a `MAP_32BIT` mapping, which Linux places
//! at 0x4000_0000, inside every 1 GiB range below 2 GiB: a half-size pool below it, so that code built
//! without `-fPIC` still reaches its own data with 32-bit absolute addresses. Found when the tests' own
//! executable arenas (then `MAP_32BIT`) came first in a test binary and such objects failed to link. One
//! test in its own binary: the pool is made once per process.

mod common;

use common::{call, registry};
use llext_fixtures::bytes;

#[test]
fn the_pool_stays_low_beside_a_map_32bit_mapping() {
    // SAFETY: a fresh anonymous private mapping, kept for the life of the test.
    let low = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            1 << 20,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    assert_ne!(low, libc::MAP_FAILED);
    assert!((low as usize) < 0x8000_0000);
    let r = registry();
    // gcc -O2 -fno-pic: 32-bit absolute addresses of its own data and constants.
    let id = r.load("basic", &bytes("basic-gcc-O2-nopic.o")).unwrap();
    assert_eq!(call(&r, "basic_add", &[2, 3]), 5);
    let info = r.info(id).unwrap();
    assert!(info
        .regions
        .iter()
        .all(|region| region.addr + region.size <= 0x8000_0000));
    r.unload(id).unwrap();
}
