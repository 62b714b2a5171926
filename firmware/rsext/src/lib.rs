//! A Rust extension: `rs_main(a, b, _, _)` returns fib(a) plus the sum of `b` integers from `a`, and prints
//! through the firmware's `printf` (a variadic C function declared here).

#![no_std]

extern "C" {
    fn printf(fmt: *const u8, ...) -> i32;
}

fn fib(n: isize) -> isize {
    let (mut x, mut y) = (0isize, 1isize);
    for _ in 0..n {
        let next = x.wrapping_add(y);
        x = y;
        y = next;
    }
    x
}

/// The extension's entry point, called with four `long` arguments.
#[no_mangle]
pub extern "C" fn rs_main(a: isize, b: isize, _c: isize, _d: isize) -> isize {
    let result = fib(a).wrapping_add((a..a.wrapping_add(b)).fold(0isize, |s, v| s.wrapping_add(v)));
    // SAFETY: a NUL-terminated format with one `long` argument, as printf expects.
    unsafe { printf(b"rsext: rs_main(%ld, %ld) = %ld\n\0".as_ptr(), a, b, result) };
    result
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
