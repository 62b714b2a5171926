//! Writing llext extensions in Rust.
//!
//! An extension is a `#![no_std]` crate compiled to a relocatable object
//! (`rustc --crate-type lib --emit obj -C panic=abort`). Its `#[no_mangle] pub extern "C"` functions and
//! `#[no_mangle] pub static` data become visible to extensions loaded after it when they are listed in the
//! object's `.exported_sym` section, exactly as C extensions list them with `LLEXT_EXPORT` from
//! `include/llext.h`. [`export!`] adds such an entry; [`ExportedSymbol`] is the entry's layout.
//!
//! ```
//! use core::sync::atomic::{AtomicI64, Ordering};
//!
//! #[no_mangle]
//! pub static CRATE_DOC_CALLS: AtomicI64 = AtomicI64::new(0);
//!
//! #[no_mangle]
//! pub extern "C" fn crate_doc_square(x: i64) -> i64 {
//!     CRATE_DOC_CALLS.fetch_add(1, Ordering::Relaxed);
//!     x.wrapping_mul(x)
//! }
//!
//! llext_ext::export!(crate_doc_square);
//! llext_ext::export!(static CRATE_DOC_CALLS);
//!
//! assert_eq!(crate_doc_square(7), 49);
//! ```
//!
//! The crate has no dependencies and no code of its own that ends up in an extension: the macro expands to
//! static data in the extension's crate, so the object's only undefined symbols are the host functions it
//! calls.

#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

/// One entry of an extension's `.exported_sym` table: a NUL-terminated name and the address it stands for.
///
/// Two pointer-sized fields and no padding, the layout of Zephyr's `struct llext_const_symbol` and of
/// `struct llext_symbol` in `include/llext.h`, so the loader reads Rust and C tables alike. Entries are
/// normally made by [`export!`]; building one by hand looks like this:
///
/// ```
/// use llext_ext::ExportedSymbol;
///
/// extern "C" fn by_hand() -> i64 {
///     1
/// }
///
/// static ENTRY: ExportedSymbol = ExportedSymbol {
///     name: b"by_hand\0".as_ptr(),
///     addr: by_hand as *const (),
/// };
///
/// assert_eq!(core::mem::size_of::<ExportedSymbol>(), 2 * core::mem::size_of::<usize>());
/// assert_eq!(ENTRY.addr, by_hand as *const ());
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportedSymbol {
    /// The name other extensions link against, NUL-terminated.
    pub name: *const u8,
    /// The address of the exported function or data.
    pub addr: *const (),
}

// SAFETY: an entry is two addresses that are only read (by the loader, when it reads the table); sharing it
// between threads cannot race.
unsafe impl Sync for ExportedSymbol {}

/// Lists an item in the extension's `.exported_sym` table, so extensions loaded later can link against it.
///
/// - `export!(function)` exports a `#[no_mangle] pub extern "C" fn` under its own name;
/// - `export!(function as "name")` exports it under another name;
/// - `export!(static DATA)` and `export!(static DATA as "name")` export a `#[no_mangle] pub static`.
///
/// Data needs the `static` keyword because a macro cannot tell a function from a static by its name, and
/// the address is taken differently: a function is converted to its code address, a static is referred to
/// in place. Passing data without `static` is a compile-time error, not a wrong address.
///
/// Each use emits one `#[used] #[link_section = ".exported_sym"]` static [`ExportedSymbol`] whose name
/// is a NUL-terminated copy of the exported name. It can stand anywhere an item can: at module level, or
/// in a function body next to the items it exports.
///
/// ```
/// use core::sync::atomic::{AtomicI64, Ordering};
///
/// #[no_mangle]
/// pub extern "C" fn macro_doc_add(a: i64, b: i64) -> i64 {
///     a.wrapping_add(b)
/// }
///
/// #[no_mangle]
/// pub static MACRO_DOC_TOTAL: AtomicI64 = AtomicI64::new(0);
///
/// llext_ext::export!(macro_doc_add);
/// llext_ext::export!(macro_doc_add as "add");
/// llext_ext::export!(static MACRO_DOC_TOTAL);
/// llext_ext::export!(static MACRO_DOC_TOTAL as "total");
///
/// MACRO_DOC_TOTAL.store(macro_doc_add(2, 3), Ordering::Relaxed);
/// assert_eq!(MACRO_DOC_TOTAL.load(Ordering::Relaxed), 5);
/// ```
///
/// Data without `static` does not compile:
///
/// ```compile_fail
/// #[no_mangle]
/// pub static MACRO_DOC_LIMIT: i64 = 10;
/// llext_ext::export!(MACRO_DOC_LIMIT);
/// ```
#[macro_export]
macro_rules! export {
    (static $item:path as $name:literal) => {
        $crate::__export_entry!(
            ::core::concat!($name, "\0"),
            ::core::ptr::addr_of!($item) as *const ()
        );
    };
    (static $item:ident) => {
        $crate::__export_entry!(
            ::core::concat!(::core::stringify!($item), "\0"),
            ::core::ptr::addr_of!($item) as *const ()
        );
    };
    ($item:path as $name:literal) => {
        $crate::__export_entry!(
            ::core::concat!($name, "\0"),
            $crate::__private::function_address($item, $item as *const ())
        );
    };
    ($item:ident) => {
        $crate::__export_entry!(
            ::core::concat!(::core::stringify!($item), "\0"),
            $crate::__private::function_address($item, $item as *const ())
        );
    };
}

/// The static behind [`export!`], in an anonymous constant so that any number of entries can share a scope.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_entry {
    ($name:expr, $addr:expr) => {
        const _: () = {
            #[used]
            #[link_section = ".exported_sym"]
            static ENTRY: $crate::ExportedSymbol = $crate::ExportedSymbol {
                name: $name.as_ptr(),
                addr: $addr,
            };
        };
    };
}

/// Helpers for the macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    /// Returns `addr`, the result of `item as *const ()`, after checking at compile time that `item` is a
    /// function: function items are zero-sized, while the value of an integer or pointer static would also
    /// convert to a pointer, silently exporting the value instead of its address.
    pub const fn function_address<F: Copy>(item: F, addr: *const ()) -> *const () {
        let _ = item;
        assert!(
            core::mem::size_of::<F>() == 0,
            "llext_ext::export!: not a function; export data with `export!(static NAME)`"
        );
        addr
    }
}
