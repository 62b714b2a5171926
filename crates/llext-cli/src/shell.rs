//! `llext shell`: one command per line from standard input.

use std::io::{BufRead, Write};

use llext_cli::{parse_line, Command};

use crate::{call_and_print, host_registry, read_file, Failure, Registry0};

pub(crate) const HELP: &str = "\
commands:
  load FILE [NAME]    load, link and bring up an extension (name: file stem)
  unload NAME         unload (refused while other extensions depend on it)
  list                loaded extensions: use count, dependencies, region sizes
  symbols NAME        exported and global symbols of an extension
  call SYM [INT...]   call `long SYM(long, ...)` with up to 6 arguments, print `returned: N`
  suspend             save the in-place context, drop all bookkeeping (memory kept), restore it
  save FILE [NAME...] save a portable context of everything, or of NAME... and their dependencies
  restore FILE        restore a portable context saved by `save` or `llext snapshot save`
  help                this text
  quit                leave (also end of input)
A word in double quotes may hold spaces: load \"my file.o\".
";

pub(crate) fn shell(args: &[String]) -> Result<(), Failure> {
    if let Some(a) = args.first() {
        return Err(Failure(format!("shell takes no arguments (got `{a}`)")));
    }
    let registry = host_registry();
    // SAFETY: isatty only inspects the file descriptor.
    let interactive = unsafe { libc::isatty(0) } == 1;
    let stdin = std::io::stdin();
    let mut failures = 0usize;
    let mut bytes = Vec::new();
    loop {
        if interactive {
            print!("llext> ");
            let _ = std::io::stdout().flush();
        }
        bytes.clear();
        // A line that is not UTF-8 fails alone, like any other bad line; a read error ends the session,
        // still with the orderly teardown below.
        let outcome = match stdin.lock().read_until(b'\n', &mut bytes) {
            Ok(0) => break,
            Ok(_) => match std::str::from_utf8(&bytes) {
                Ok(line) => execute(&registry, line.trim()),
                Err(_) => Err(Failure("the line is not valid UTF-8".into())),
            },
            Err(e) => {
                failures += 1;
                crate::flush_all();
                eprintln!("error: reading standard input: {e}");
                break;
            }
        };
        match outcome {
            Ok(Flow::Continue) => {}
            Ok(Flow::Quit) => break,
            Err(Failure(message)) => {
                failures += 1;
                crate::flush_all();
                eprintln!("error: {message}");
            }
        }
    }
    // Orderly teardown: dependents first, destructors run.
    teardown(&registry);
    if failures > 0 {
        return Err(Failure(String::new()));
    }
    Ok(())
}

enum Flow {
    Continue,
    Quit,
}

/// Unloads everything, newest first, until nothing more can go.
pub(crate) fn teardown(registry: &Registry0) {
    loop {
        let infos = registry.extensions();
        if infos.is_empty() {
            break;
        }
        let mut progress = false;
        for info in infos.iter().rev() {
            crate::flush_all();
            let _ = crate::unload_fully(registry, info.id);
            progress |= registry.get(&info.name).is_none();
        }
        if !progress {
            break;
        }
    }
    crate::flush_all();
}

fn execute(registry: &Registry0, line: &str) -> Result<Flow, Failure> {
    match parse_line(line)? {
        Command::Nothing => {}
        Command::Load { file, name } => {
            let bytes = read_file(file)?;
            let name = match name {
                Some(n) => n.to_string(),
                None => llext::default_name(std::path::Path::new(file)),
            };
            crate::flush_all();
            let before = registry
                .get(&name)
                .and_then(|id| registry.info(id).ok())
                .map(|i| i.use_count);
            let id = registry
                .load(&name, &bytes)
                .map_err(|e| crate::load_failure(file, &bytes, &e))?;
            crate::flush_all();
            let info = registry.info(id)?;
            match before {
                // As in Zephyr, loading a name again only counts one more user: the file is not read.
                Some(_) => println!(
                    "{} already loaded, use count {} (to load {file} beside it: load FILE NAME)",
                    info.name, info.use_count
                ),
                None => println!("loaded {} ({} bytes)", info.name, info.memory),
            }
        }
        Command::Unload { name } => {
            crate::flush_all();
            let unloaded = registry.unload_name(name);
            // Destructors may have printed through C's buffered stdio: theirs first, then ours.
            crate::flush_all();
            match unloaded? {
                llext::Unloaded::Freed => println!("unloaded {name}"),
                llext::Unloaded::StillInUse(n) => println!("{name} still loaded, use count {n}"),
            }
        }
        Command::List => {
            let infos = registry.extensions();
            if infos.is_empty() {
                println!("no extensions loaded");
            }
            for info in infos {
                let deps = if info.dependencies.is_empty() {
                    "-".to_string()
                } else {
                    info.dependencies.join(",")
                };
                let regions: Vec<String> = info
                    .regions
                    .iter()
                    .map(|r| format!("{}={}", r.kind.as_str(), r.size))
                    .collect();
                println!(
                    "{} uses={} deps={} {}",
                    info.name,
                    info.use_count,
                    deps,
                    regions.join(" ")
                );
            }
        }
        Command::Symbols { name } => {
            let id = registry
                .get(name)
                .ok_or(Failure(format!("no extension `{name}` is loaded")))?;
            for s in registry.info(id)?.symbols {
                println!(
                    "{:#014x} {} {}",
                    s.addr,
                    if s.exported { "export" } else { "global" },
                    s.name
                );
            }
        }
        Command::Call { symbol, args } => {
            call_and_print(registry, symbol, &args)?;
        }
        Command::Suspend => {
            let bytes = registry.save(&llext::SaveOptions::default())?;
            // Checked before anything is forgotten: only the restore itself can fail after that point.
            let context = llext::Context::from_bytes(&bytes)?;
            let forgotten = registry.forget_all()?;
            let restored = registry
                .restore(&context, &llext::RestoreOptions::default())
                .map_err(|e| {
                    Failure(format!(
                        "{e}; the {forgotten} suspended extensions are gone (their memory stays retained)"
                    ))
                })?;
            debug_assert_eq!(forgotten, restored.len());
            println!("restored {}", crate::count(restored.len(), "extension"));
        }
        Command::Save { file, names } => {
            let names = Some(&names[..]).filter(|n| !n.is_empty());
            let n = crate::snapshot::save_to(registry, file, names)?;
            println!("saved {} to {file}", crate::count(n, "extension"));
        }
        Command::Restore { file } => {
            let ids = crate::snapshot::restore_from(registry, file)?;
            println!("restored {}", crate::count(ids.len(), "extension"));
        }
        Command::Help => print!("{HELP}"),
        Command::Quit => return Ok(Flow::Quit),
    }
    Ok(Flow::Continue)
}
