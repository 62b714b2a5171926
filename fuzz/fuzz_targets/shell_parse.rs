//! Parses any text as an `llext shell` line, and every word as an integer argument.
#![no_main]

use llext_cli::{parse_int, parse_line, Command};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    // Without quotes a line's words are its white-space-separated parts; a word in double quotes may hold
    // spaces, and is then a part of the line between two quotes.
    let quoted = line.contains('"');
    let words: Vec<&str> = line.split_whitespace().collect();
    let parsed = parse_line(line);
    if quoted {
        match parsed {
            Ok(Command::Call { symbol, .. }) => assert!(line.contains(symbol)),
            Ok(Command::Load { file, name }) => {
                assert!(line.contains(file));
                assert!(name.is_none_or(|n| line.contains(n)));
            }
            Ok(_) => {}
            Err(e) => assert!(!e.0.is_empty()),
        }
        return;
    }
    match parsed {
        Ok(Command::Call { symbol, args }) => {
            assert_eq!(Some(&symbol), words.get(1));
            assert_eq!(args.len(), words.len() - 2);
        }
        Ok(Command::Load { file, name }) => {
            assert_eq!(Some(&file), words.get(1));
            assert_eq!(name, words.get(2).copied());
        }
        Ok(Command::Save { names, .. }) => assert_eq!(names.len(), words.len() - 2),
        Ok(Command::Nothing) => assert!(words.first().is_none_or(|w| w.starts_with('#'))),
        Ok(_) => {}
        Err(e) => assert!(!e.0.is_empty()),
    }
    for w in words {
        if let Ok(v) = parse_int(w) {
            // Every value has a spelling that reads back as itself.
            assert_eq!(parse_int(&format!("{:#x}", v as u64)), Ok(v));
        }
    }
});
