//! Extensions built for the firmware targets, for host-side cross-checks of the llext relocation backends.
//!
//! `build.rs` compiles `firmware/fixtures/*.c` for every [`TARGETS`] entry with clang and the target's GNU
//! cross compiler at `-O0`, `-Os` and `-O2`, in each object flavour (`nopic`, `pic`, for Cortex-M also
//! `longcalls`, and for RISC-V also `norelax` and `saverestore`), into this crate's `OUT_DIR`; and assembles
//! each target's [`Asm`] fixture (`fixtures/relocs-*.S`: the relocation types no compiler emits for the C
//! fixtures) with both toolchains, as the objects of stem [`ASM_STEM`].
//!
//! ```
//! for target in llext_cross::TARGETS {
//!     for object in llext_cross::objects(target.name) {
//!         assert!(object.path.exists());
//!     }
//! }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::path::PathBuf;

#[path = "targets.rs"]
mod targets;

pub use targets::{flavour_flags, Asm, Target, Tool, ASM_STEM, COMMON_FLAGS, OPTS, STEMS, TARGETS};

/// Set to `1` to let the tests pass when a cross compiler or linker is missing.
pub const ALLOW_MISSING_VAR: &str = "LLEXT_ALLOW_MISSING_CROSS";

/// One built fixture object.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// `<stem>-<cc>-<opt>-<flavour>`, or `relocs-<cc>` for the assembly fixture.
    pub name: String,
    /// Its source stem (`basic`, ..., or [`ASM_STEM`]).
    pub stem: String,
    /// Where it is.
    pub path: PathBuf,
}

/// The objects built for `target`.
pub fn objects(target: &str) -> Vec<Fixture> {
    let prefix = format!("{target}/");
    env!("LLEXT_CROSS_BUILT")
        .split(',')
        .filter_map(|rel| rel.strip_prefix(&prefix).map(|file| (rel, file)))
        .map(|(rel, file)| {
            let name = file.trim_end_matches(".o").to_owned();
            let stem = name.split('-').next().unwrap_or_default().to_owned();
            Fixture {
                name,
                stem,
                path: PathBuf::from(env!("OUT_DIR")).join(rel),
            }
        })
        .collect()
}

/// The compilers that were missing at build time, as `command (package NAME)`.
pub fn missing_compilers() -> Vec<&'static str> {
    env!("LLEXT_CROSS_MISSING")
        .split(';')
        .filter(|s| !s.is_empty())
        .collect()
}

/// Fails (panics) naming the missing packages, unless [`ALLOW_MISSING_VAR`] is `1`. Returns whether
/// everything is there.
pub fn require(missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let allowed = std::env::var(ALLOW_MISSING_VAR).is_ok_and(|v| v == "1");
    assert!(
        allowed,
        "cross tools are missing: {}; install them (`cargo xtask deps` does) or set {ALLOW_MISSING_VAR}=1 to skip",
        missing.join(", ")
    );
    eprintln!(
        "warning: skipping what needs {} ({ALLOW_MISSING_VAR}=1)",
        missing.join(", ")
    );
    false
}
