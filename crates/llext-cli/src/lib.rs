//! The pure part of the `llext` command: turning a shell line or an integer argument into values, with no
//! I/O and no loading, so that it can be tested and fuzzed on its own (`fuzz/fuzz_targets/shell_parse.rs`).
//!
//! ```
//! use llext_cli::{parse_line, Command};
//! assert_eq!(
//!     parse_line("call add 2 0x10").unwrap(),
//!     Command::Call { symbol: "add", args: vec![2, 16] }
//! );
//! assert!(parse_line("unload").is_err());
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod command;

pub use command::{parse_int, parse_line, Command, ParseError};
