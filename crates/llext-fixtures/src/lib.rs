//! Real ELF relocatable objects for the llext tests, built during `cargo build`.
//!
//! `build.rs` compiles every C file in `c/` with gcc (and clang when it is installed) at `-O0`,
//! `-O2` and `-Os`, each with `-fPIC` and with `-fno-pic`, links `partA` and `partB` of each
//! variant into `partial` with `ld -r`, and compiles `rust/rsext.rs` into `rsext.o`. All objects
//! are for the host architecture and land in this crate's `OUT_DIR`; the functions here find
//! them. Each C file documents the exact results its functions return.
//!
//! ```
//! use llext_fixtures::{bytes, variants};
//!
//! for variant in variants() {
//!     let object = bytes(&variant.file_name("basic"));
//!     assert_eq!(&object[..4], b"\x7fELF");
//! }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

/// True when clang was found at build time, so the clang variants exist.
pub const HAVE_CLANG: bool = cfg!(llext_have_clang);

/// Environment variable that makes [`require_clang_if_asked`] (and so [`variants`]) fail when
/// the fixtures were built without clang; CI sets it to `1` so a lost compiler cannot silently
/// halve the test matrix.
pub const REQUIRE_CLANG_VAR: &str = "LLEXT_REQUIRE_CLANG";

/// Demo extensions embedded in the crate, as `(name, object bytes)`, in a sensible load order:
/// `libmath` before `usemath`, which links against it.
///
/// - `libmath`: exports `lm_mul`, `lm_scale` and `lm_scaled` (`c/libmath.c`, gcc `-O2 -fPIC`).
/// - `usemath`: `use_math(5)` returns 15 on a fresh `libmath` (`c/usemath.c`).
/// - `ctors`: `ctors_state()` returns 12; prints `ctors: destructor ran` on unload.
/// - `rsext`: the Rust extension, `rs_fib(10)` returns 55 (`rust/rsext.rs`).
/// - `demo_greet`: exports `greet(name)`, which prints `Hello, <name>!` and returns its length.
pub static DEMO: &[(&str, &[u8])] = &[
    (
        "libmath",
        include_bytes!(concat!(env!("OUT_DIR"), "/libmath-gcc-O2-pic.o")),
    ),
    (
        "usemath",
        include_bytes!(concat!(env!("OUT_DIR"), "/usemath-gcc-O2-pic.o")),
    ),
    (
        "ctors",
        include_bytes!(concat!(env!("OUT_DIR"), "/ctors-gcc-O2-pic.o")),
    ),
    (
        "rsext",
        include_bytes!(concat!(env!("OUT_DIR"), "/rsext.o")),
    ),
    (
        "demo_greet",
        include_bytes!(concat!(env!("OUT_DIR"), "/demo_greet-gcc-O2-pic.o")),
    ),
];

pub mod context;
mod graph;
pub use graph::{bundled_deps, graph_node_source};

include!(concat!(env!("OUT_DIR"), "/sets.rs"));

/// The directory holding every built fixture object.
pub fn out_dir() -> &'static Path {
    Path::new(env!("OUT_DIR"))
}

/// The path of a fixture object, e.g. `path("basic-gcc-O2-pic.o")` or `path("rsext.o")`.
///
/// The file is not checked for existence; see [`bytes`].
pub fn path(file_name: &str) -> PathBuf {
    out_dir().join(file_name)
}

/// The contents of a fixture object, e.g. `bytes("partial-clang-Os-nopic.o")`.
///
/// # Panics
///
/// When the file cannot be read, naming it; a test has nothing to do without its fixture.
pub fn bytes(file_name: &str) -> Vec<u8> {
    let path = path(file_name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// The stems of the objects built for every [`Variant`]: one per `c/*.c` file plus `partial`.
///
/// Not every stem loads on its own: `usemath` needs `libmath`, the diamond `dleft`/`dright`
/// need `dbase` and `dtop` needs both, and `undef` must fail to load.
pub fn stems() -> Vec<&'static str> {
    env!("LLEXT_FIXTURES_STEMS").split(',').collect()
}

/// One cell of the build matrix: a compiler, an optimisation level and a code model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Variant {
    /// The compiler, `"gcc"` or `"clang"`.
    pub compiler: &'static str,
    /// The optimisation level without its dash: `"O0"`, `"O2"` or `"Os"`.
    pub opt: &'static str,
    /// Compiled with `-fPIC` (true) or `-fno-pic` (false).
    pub pic: bool,
}

impl Variant {
    /// The object file name of `stem` in this variant, e.g. `basic-gcc-O2-pic.o`.
    pub fn file_name(&self, stem: &str) -> String {
        format!("{stem}-{self}.o")
    }

    /// The path of `stem` in this variant; shorthand for `path(&self.file_name(stem))`.
    pub fn path(&self, stem: &str) -> PathBuf {
        path(&self.file_name(stem))
    }

    /// The contents of `stem` in this variant; panics like [`bytes`].
    pub fn bytes(&self, stem: &str) -> Vec<u8> {
        bytes(&self.file_name(stem))
    }
}

impl fmt::Display for Variant {
    /// `<compiler>-<opt>-<pic|nopic>`, the variant's part of a file name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pic = if self.pic { "pic" } else { "nopic" };
        write!(f, "{}-{}-{pic}", self.compiler, self.opt)
    }
}

/// Every variant that was built: all gcc variants, and all clang variants when clang was found.
///
/// # Panics
///
/// Through [`require_clang_if_asked`], when `LLEXT_REQUIRE_CLANG=1` but clang was missing.
pub fn variants() -> Vec<Variant> {
    require_clang_if_asked();
    let mut variants = Vec::new();
    for compiler in env!("LLEXT_FIXTURES_COMPILERS").split(',') {
        for opt in env!("LLEXT_FIXTURES_OPTS").split(',') {
            for pic in [true, false] {
                variants.push(Variant { compiler, opt, pic });
            }
        }
    }
    variants
}

/// What `zlib_main(ZLIB_SEED)` of the zlib fixture returns: the result of a native build of the
/// same C (`zlib/zlib_main.c` and zlib), run by the build script.
pub const ZLIB_EXPECTED: i64 = parse_i64(env!("LLEXT_ZLIB_EXPECTED"));

/// The argument the tests give the zlib fixture's `zlib_main`.
pub const ZLIB_SEED: i64 = parse_i64(env!("LLEXT_ZLIB_SEED"));

/// The zlib fixture's object files: zlib's deflate and inflate (from the `libz-sys` crate's
/// sources) and the driver `zlib/zlib_main.c`, built by gcc and clang at `-O2` with `-fPIC` and at
/// `-Os` with `-fno-pic`, each combined by `ld -r`: `zlib-clang-O2-pic.o`, `zlib-gcc-Os-nopic.o`...
///
/// # Panics
///
/// Like [`variants`], when clang is required but missing.
pub fn zlib_objects() -> Vec<&'static str> {
    require_clang_if_asked();
    env!("LLEXT_ZLIB_VARIANTS").split(',').collect()
}

/// A decimal number given by the build script.
const fn parse_i64(s: &str) -> i64 {
    let bytes = s.as_bytes();
    assert!(!bytes.is_empty(), "an empty number from build.rs");
    let mut value = 0i64;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit(), "not a number from build.rs");
        value = value * 10 + (bytes[i] - b'0') as i64;
        i += 1;
    }
    value
}

/// Panics when the environment variable `LLEXT_REQUIRE_CLANG` is `1` at run time but clang was
/// not found when the fixtures were built.
pub fn require_clang_if_asked() {
    let asked = std::env::var_os(REQUIRE_CLANG_VAR).is_some_and(|v| v == "1");
    if asked && !HAVE_CLANG {
        panic!(
            "{REQUIRE_CLANG_VAR}=1 but clang was not found when llext-fixtures was built, so the \
             clang fixtures are missing; install clang (`cargo xtask deps`), then rebuild the \
             fixtures with `cargo clean -p llext-fixtures`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_every_stem() {
        for variant in variants() {
            for stem in stems() {
                let object = variant.bytes(stem);
                assert_eq!(&object[..4], b"\x7fELF", "{}", variant.file_name(stem));
            }
        }
    }

    #[test]
    fn variant_names_follow_the_build_script() {
        let variant = Variant {
            compiler: "gcc",
            opt: "O2",
            pic: false,
        };
        assert_eq!(variant.file_name("basic"), "basic-gcc-O2-nopic.o");
        assert_eq!(variants().len(), if HAVE_CLANG { 12 } else { 6 });
    }

    #[test]
    fn zlib_is_built_by_every_compiler() {
        let objects = zlib_objects();
        assert_eq!(objects.len(), if HAVE_CLANG { 4 } else { 2 });
        for name in objects {
            assert_eq!(&bytes(name)[..4], b"\x7fELF", "{name}");
        }
    }

    #[test]
    fn demo_objects_are_relocatable() {
        for (name, object) in DEMO {
            // e_type at offset 16 is ET_REL (1) in either byte order.
            assert!(object.len() > 18, "{name}");
            assert_eq!(&object[..4], b"\x7fELF", "{name}");
            assert!(
                object[16..18] == [1, 0] || object[16..18] == [0, 1],
                "{name}"
            );
        }
    }
}
