//! An llext extension written in Rust.
//!
//! Built by `build.rs` as a `no_std` library object (`--crate-type lib --emit obj`), so it is
//! an ordinary relocatable object like the C fixtures, and its exports are listed with
//! `llext_ext::export!` (the `llext-ext` crate, built by `build.rs` as an rlib). Nothing in it may
//! reach a Rust runtime symbol: arithmetic wraps, there is no slice indexing and no formatting, so
//! no panic path and no `core::fmt` code is generated. The only host functions it calls are `puts`
//! and `strlen` (the optimiser may fold the `strlen` of a constant away).
//!
//! Expected results, for a freshly loaded copy:
//! - `rs_fib(n)`: n-th Fibonacci number, `rs_fib(0) = 0`, `rs_fib(1) = 1`, `rs_fib(10) = 55`,
//!   `rs_fib(50) = 12586269025`; 0 for negative `n`.
//! - `rs_sum_to(n)`: `1 + 2 + ... + n`, `rs_sum_to(100) = 5050`; 0 for `n <= 0`.
//! - `rs_hello()`: prints "hello from rust" with `puts` and returns its length, 15.
//! - `rs_bump()`: 1 on the first call, then 2, 3, ... (a counter in `.bss`).

#![no_std]

use core::ffi::c_char;
use core::sync::atomic::{AtomicI64, Ordering};

extern "C" {
    fn puts(s: *const c_char) -> i32;
    fn strlen(s: *const c_char) -> usize;
}

/// The n-th Fibonacci number, computed iteratively with wrapping additions.
#[no_mangle]
pub extern "C" fn rs_fib(n: i64) -> i64 {
    let (mut a, mut b) = (0i64, 1i64);
    let mut i = 0i64;
    while i < n {
        let next = a.wrapping_add(b);
        a = b;
        b = next;
        i = i.wrapping_add(1);
    }
    a
}

/// `1 + 2 + ... + n` with wrapping additions; 0 for `n <= 0`.
#[no_mangle]
pub extern "C" fn rs_sum_to(n: i64) -> i64 {
    let mut sum = 0i64;
    let mut i = 1i64;
    while i <= n {
        sum = sum.wrapping_add(i);
        i = i.wrapping_add(1);
    }
    sum
}

/// Prints a greeting through the host's `puts` and returns its length (15).
#[no_mangle]
pub extern "C" fn rs_hello() -> i64 {
    let message = c"hello from rust";
    // SAFETY: `message` is a NUL-terminated string that outlives both calls.
    unsafe {
        puts(message.as_ptr());
        strlen(message.as_ptr()) as i64
    }
}

static BUMPS: AtomicI64 = AtomicI64::new(0);

/// Returns how often it has been called, this call included: 1, 2, 3, ...
#[no_mangle]
pub extern "C" fn rs_bump() -> i64 {
    BUMPS.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
}

// The `.exported_sym` table: one entry per function, as `LLEXT_EXPORT` makes them in C.
llext_ext::export!(rs_fib);
llext_ext::export!(rs_sum_to);
llext_ext::export!(rs_hello);
llext_ext::export!(rs_bump);
