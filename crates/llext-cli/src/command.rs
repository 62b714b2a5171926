//! `llext shell` lines and integer arguments.

use std::fmt;

/// One parsed `llext shell` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// An empty line or a `#` comment.
    Nothing,
    /// `load FILE [NAME]`.
    Load {
        /// The object file.
        file: &'a str,
        /// The name to load it under (default: the file stem).
        name: Option<&'a str>,
    },
    /// `unload NAME`.
    Unload {
        /// The extension.
        name: &'a str,
    },
    /// `list`.
    List,
    /// `symbols NAME`.
    Symbols {
        /// The extension.
        name: &'a str,
    },
    /// `call SYM [INT...]`.
    Call {
        /// The function.
        symbol: &'a str,
        /// Its integer arguments (the registry refuses more than it can pass).
        args: Vec<i64>,
    },
    /// `suspend`.
    Suspend,
    /// `save FILE [NAME...]`.
    Save {
        /// Where the context goes.
        file: &'a str,
        /// The extensions to save with their dependencies; empty saves everything.
        names: Vec<&'a str>,
    },
    /// `restore FILE`.
    Restore {
        /// The context file.
        file: &'a str,
    },
    /// `help`.
    Help,
    /// `quit` or `exit`.
    Quit,
}

/// Why a line or an argument was refused, phrased for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// Parses an integer argument: decimal (leading zeros are still decimal) or hexadecimal with `0x`,
/// optionally negative. Values above `i64::MAX`, up to `u64::MAX`, wrap as a C `unsigned long` passed as
/// `long` would (`0xffffffffffffffff` and `18446744073709551615` are -1).
pub fn parse_int(text: &str) -> Result<i64, ParseError> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let value = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        // Digits only: `from_str_radix` would take a second sign (`-0x+5`).
        // Negative values stop at -2^63, as in decimal.
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok().and_then(|v| match neg {
                true if v <= 1 << 63 => Some((v as i64).wrapping_neg()),
                true => None,
                false => Some(v as i64),
            })
        }
        Some(_) => None,
        // Decimal keeps its sign, so that `i64::MIN` parses and `--5` does not; unsigned values wrap.
        None => text
            .parse::<i64>()
            .ok()
            .or_else(|| text.parse::<u64>().ok().map(|v| v as i64)),
    };
    value.ok_or_else(|| ParseError(format!("`{text}` is not an integer")))
}

/// Splits a line into words at white space. A word in double quotes may hold spaces (`load "my file.o"`);
/// it ends at its closing quote, which must end the line or come before white space.
fn words(line: &str) -> Result<Vec<&str>, ParseError> {
    let mut words = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let (word, after) = match rest.strip_prefix('"') {
            Some(quoted) => {
                let (word, after) = quoted
                    .split_once('"')
                    .ok_or_else(|| ParseError("a quote is not closed".into()))?;
                if after.starts_with(|c: char| !c.is_whitespace()) {
                    let glued = after.split(char::is_whitespace).next().unwrap_or_default();
                    return Err(ParseError(format!(
                        "`\"{word}\"{glued}`: a closing quote must end the word"
                    )));
                }
                (word, after)
            }
            None => rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len())),
        };
        words.push(word);
        rest = after.trim_start();
    }
    Ok(words)
}

/// Splits a shell line into its command and arguments, checks the number of arguments and parses
/// integers. Nothing is read, loaded or called.
pub fn parse_line(line: &str) -> Result<Command<'_>, ParseError> {
    if line.trim_start().starts_with('#') {
        return Ok(Command::Nothing);
    }
    let words = words(line)?;
    let Some((&command, args)) = words.split_first() else {
        return Ok(Command::Nothing);
    };
    let arity = |min: usize, max: usize, usage: &str| {
        if args.len() < min || args.len() > max {
            Err(ParseError(format!("usage: {usage}")))
        } else {
            Ok(())
        }
    };
    let first = args.first().copied().unwrap_or_default();
    Ok(match command {
        "load" => {
            arity(1, 2, "load FILE [NAME]")?;
            Command::Load {
                file: first,
                name: args.get(1).copied(),
            }
        }
        "unload" => {
            arity(1, 1, "unload NAME")?;
            Command::Unload { name: first }
        }
        "list" => {
            arity(0, 0, "list")?;
            Command::List
        }
        "symbols" => {
            arity(1, 1, "symbols NAME")?;
            Command::Symbols { name: first }
        }
        "call" => {
            if args.is_empty() {
                return Err(ParseError("usage: call SYM [INT...]".into()));
            }
            let args = args
                .get(1..)
                .unwrap_or(&[])
                .iter()
                .map(|a| parse_int(a))
                .collect::<Result<Vec<_>, _>>()?;
            Command::Call {
                symbol: first,
                args,
            }
        }
        "suspend" => {
            arity(0, 0, "suspend")?;
            Command::Suspend
        }
        "save" => {
            if args.is_empty() {
                return Err(ParseError("usage: save FILE [NAME...]".into()));
            }
            Command::Save {
                file: first,
                names: args.get(1..).unwrap_or(&[]).to_vec(),
            }
        }
        "restore" => {
            arity(1, 1, "restore FILE")?;
            Command::Restore { file: first }
        }
        "help" => Command::Help,
        "quit" | "exit" => Command::Quit,
        other => {
            return Err(ParseError(format!(
                "unknown command `{other}` (try `help`)"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_their_arity() {
        assert_eq!(parse_line("  "), Ok(Command::Nothing));
        assert_eq!(parse_line("# load x.o"), Ok(Command::Nothing));
        assert_eq!(
            parse_line("load a.o"),
            Ok(Command::Load {
                file: "a.o",
                name: None
            })
        );
        assert_eq!(
            parse_line("load a.o b"),
            Ok(Command::Load {
                file: "a.o",
                name: Some("b")
            })
        );
        assert_eq!(
            parse_line("load a b c"),
            Err(ParseError("usage: load FILE [NAME]".into()))
        );
        assert_eq!(
            parse_line("call f -1 0x10"),
            Ok(Command::Call {
                symbol: "f",
                args: vec![-1, 16]
            })
        );
        assert_eq!(
            parse_line("call f x"),
            Err(ParseError("`x` is not an integer".into()))
        );
        assert_eq!(
            parse_line("save s.ctx a b"),
            Ok(Command::Save {
                file: "s.ctx",
                names: vec!["a", "b"]
            })
        );
        assert_eq!(parse_line("list extra").unwrap_err().0, "usage: list");
        // User review: a path with spaces could not be loaded from the shell.
        assert_eq!(
            parse_line("load  \"my dir/a b.o\"   \"x y\" "),
            Ok(Command::Load {
                file: "my dir/a b.o",
                name: Some("x y")
            })
        );
        assert_eq!(
            parse_line("load \"\""),
            Ok(Command::Load {
                file: "",
                name: None
            })
        );
        assert_eq!(
            parse_line("load \"a.o").unwrap_err().0,
            "a quote is not closed"
        );
        assert_eq!(
            parse_line("load \"a\"b c").unwrap_err().0,
            "`\"a\"b`: a closing quote must end the word"
        );
        assert_eq!(parse_line("  # \"unclosed"), Ok(Command::Nothing));
        assert_eq!(
            parse_line("frobnicate").unwrap_err().0,
            "unknown command `frobnicate` (try `help`)"
        );
    }

    #[test]
    fn integers() {
        assert_eq!(parse_int("-0x8000000000000000"), Ok(i64::MIN));
        assert_eq!(parse_int("0xffffffffffffffff"), Ok(-1));
        assert!(parse_int("").is_err());
        assert!(parse_int("-").is_err());
        assert!(parse_int("0x").is_err());
        assert!(parse_int("+5").is_ok());
        assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_int("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_int("9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_int("18446744073709551615"), Ok(-1));
        assert!(parse_int("18446744073709551616").is_err());
        assert!(parse_int("-9223372036854775809").is_err());
        assert_eq!(parse_int("010"), Ok(10));
        assert!(parse_int("-0x8000000000000001").is_err());
        assert!(parse_int("-0xffffffffffffffff").is_err());
        assert_eq!(parse_int("-0x10"), Ok(-16));
        for bad in ["--5", "-+5", "0x+5", "-0x-5", "0x 5", "5 "] {
            assert!(parse_int(bad).is_err(), "{bad} parsed");
        }
    }
}
