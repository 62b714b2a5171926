//! The `llext` command: a thin layer over the `llext` library.

mod bench;
mod check;
mod demo;
mod inspect;
mod shell;
mod snapshot;

use std::io::Write;
use std::process::ExitCode;

use llext::{ExportTable, HostMemory, Registry};

const USAGE: &str = "\
usage: llext <command> [args]

commands:
  inspect FILE [--json]                    ELF type, machine, sections and regions, symbols, relocations;
                                           for a saved context, what each extension in it holds
  check [--exports FILE] [--libc] [--at ADDR] FILE...
                                           load and link without running anything; report every problem.
                                           Objects for another machine are linked for it, against the
                                           firmware's exports (an ELF image, whose symbols stand for
                                           them: `#[no_mangle]` in Rust; `nm` output of it; or
                                           `NAME [ADDRESS [function|copyable]]` lines with optional
                                           `# float-abi: KEY`, `# thumb-only` and `# isa: KEY` lines),
                                           which replace the C library's for any object (--libc: this
                                           host's objects get both); at ADDR, or past the RAM of the
                                           firmware's ELF image, as on the device
  run [--call SYM] [--arg INT]... FILE...  load in order, run constructors, call SYM, print `returned: N`
  shell                                    read commands from stdin (type `help`)
  snapshot save [--exports FILE [--at ADDR]] --out SNAP FILE...
                                           load FILE... as `run` does, save a portable context to SNAP;
                                           with --exports, link them for that firmware as `check` does,
                                           running nothing, for the device to restore and bring up
  snapshot restore SNAP [--call SYM] [--arg INT]...
                                           restore SNAP (no ELF parsing, no relinking), then as `run`
  demo                                     load the bundled sample extensions and show what happens
  bench [load|restore] [--iterations N]    median times: load+link+seal and unload; or full load vs in-place
                                           and portable restore vs memcpy (3-extension chain, 50-extension set)
  help                                     this text

SYM is called as a C function `long SYM(long, ...)` with up to six INT arguments: decimal or 0x hex,
-2^63 to 2^64-1 (above 2^63-1 they wrap, as a C `unsigned long` would); the result is a signed `long`.
`llext COMMAND --help` shows one command. `--` ends the options: every later word is a FILE.
";

/// The lines of [`USAGE`] that describe `command`, or `None` for an unknown command.
fn command_usage(command: &str) -> Option<String> {
    let mut lines = String::new();
    let mut inside = false;
    for line in USAGE.lines().skip_while(|l| *l != "commands:").skip(1) {
        let Some(rest) = line.strip_prefix("  ") else {
            break;
        };
        if !rest.starts_with(' ') {
            inside = rest.split_whitespace().next() == Some(command);
        }
        if inside {
            lines.push_str(line);
            lines.push('\n');
        }
    }
    if lines.is_empty() {
        return None;
    }
    let notes = USAGE.rsplit("\n\n").next().unwrap_or_default();
    let extra = match command {
        "run" | "snapshot" => notes,
        "shell" => shell::HELP,
        _ => "",
    };
    Some(format!(
        "usage:\n{lines}{}{extra}",
        if extra.is_empty() { "" } else { "\n" }
    ))
}

/// Whether `args` ask for help: `--help` or `-h` before `--`, and not as the value of an option.
fn wants_help(args: &[String]) -> bool {
    const TAKE_VALUES: [&str; 6] = [
        "--call",
        "--arg",
        "--out",
        "--exports",
        "--at",
        "--iterations",
    ];
    let mut it = args.iter().take_while(|a| *a != "--");
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" | "-h" => return true,
            option if TAKE_VALUES.contains(&option) => {
                it.next();
            }
            _ => {}
        }
    }
    false
}

/// `n word`, with the word's plural unless `n` is 1 (`1 extension`, `3 extensions`).
pub(crate) fn count(n: usize, word: &str) -> String {
    match (n, word.strip_suffix('y')) {
        (1, _) => format!("1 {word}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {word}s"),
    }
}

/// A command-line failure: printed as `error: ...`, exit status 1.
pub(crate) struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

pub(crate) type Registry0 = Registry<HostMemory>;

/// A registry over host memory offering the C library functions to extensions.
pub(crate) fn host_registry() -> Registry0 {
    Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS))
}

/// Flushes Rust's and C's standard output, so that the extension's `printf` output and ours stay in order.
pub(crate) fn flush_all() {
    let _ = std::io::stdout().flush();
    // SAFETY: fflush(NULL) flushes every C stdio output stream; it has no other effect.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// Parses an integer argument: decimal or hexadecimal with `0x`, optionally negative; values above
/// `i64::MAX` wrap.
pub(crate) fn parse_int(text: &str) -> Result<i64, Failure> {
    Ok(llext_cli::parse_int(text)?)
}

/// A name for `path` not yet used in `registry`: the file stem, or `stem-2`, `stem-3`...
pub(crate) fn unique_name<M: llext::Memory>(registry: &Registry<M>, path: &str) -> String {
    let stem = llext::default_name(std::path::Path::new(path));
    if registry.get(&stem).is_none() {
        return stem;
    }
    (2..)
        .map(|n| format!("{stem}-{n}"))
        .find(|n| registry.get(n).is_none())
        .unwrap_or(stem)
}

pub(crate) fn read_file(path: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure(format!("{path}: {e}")))
}

/// A hint for a file that is a saved context, not an ELF object: what it holds and how to restore it.
pub(crate) fn context_hint(bytes: &[u8]) -> Option<String> {
    let context = llext::Context::from_bytes(bytes).ok()?;
    let names: Vec<&str> = context.names().collect();
    let listed = match names.len() {
        0 => String::new(),
        _ => format!(" ({})", names.join(", ")),
    };
    let how = if context.is_portable() {
        "restore it with `llext snapshot restore` or the shell's `restore`"
    } else {
        "an in-place context, only the process that saved it can restore it"
    };
    Some(format!(
        "it is a saved context of {}{listed}, not an ELF object: {how}",
        count(names.len(), "extension"),
    ))
}

/// `FILE: problem` for a file that would not load, with [`context_hint`] when it applies.
pub(crate) fn load_failure(file: &str, bytes: &[u8], e: &llext::Error) -> Failure {
    match context_hint(bytes) {
        Some(hint) => Failure(format!("{file}: {hint}")),
        None => Failure(format!("{file}: {e}")),
    }
}

/// Calls `symbol` in the loaded extensions and prints `returned: N`.
pub(crate) fn call_and_print(
    registry: &Registry0,
    symbol: &str,
    args: &[i64],
) -> Result<i64, Failure> {
    flush_all();
    // SAFETY: the user names a C function taking up to six integer arguments; this is the command's contract
    // (documented in `llext help` and the README): calling arbitrary code is what `run` and `call` are for.
    let result = unsafe { registry.call(symbol, args) };
    flush_all();
    let value = result?;
    println!("returned: {value}");
    Ok(value)
}

/// `--call SYM`, `--arg INT`... and the remaining words, as `run` and `snapshot` take them.
pub(crate) struct RunArgs<'a> {
    pub call: Option<&'a str>,
    pub args: Vec<i64>,
    pub files: Vec<&'a str>,
    pub out: Option<&'a str>,
    /// `snapshot save` only: the firmware's exports and where its extensions go (see `check`).
    pub exports: Option<&'a str>,
    pub at: Option<&'a str>,
}

pub(crate) fn parse_run_args(args: &[String], accept_out: bool) -> Result<RunArgs<'_>, Failure> {
    let mut parsed = RunArgs {
        call: None,
        args: Vec::new(),
        files: Vec::new(),
        out: None,
        exports: None,
        at: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .map(String::as_str)
                .ok_or(Failure(format!("{a} needs {what}")))
        };
        match a.as_str() {
            "--call" => parsed.call = once(a, parsed.call, value("a symbol name")?)?,
            "--arg" => parsed.args.push(parse_int(value("an integer")?)?),
            "--out" if accept_out => parsed.out = once(a, parsed.out, value("a file name")?)?,
            "--exports" if accept_out => {
                parsed.exports = once(a, parsed.exports, value("a file name")?)?
            }
            "--at" if accept_out => parsed.at = once(a, parsed.at, value("an address")?)?,
            "--" => parsed.files.extend(it.by_ref().map(String::as_str)),
            s if s.starts_with("--") => return Err(Failure(format!("unknown option `{s}`"))),
            _ => parsed.files.push(a),
        }
    }
    if parsed.args.len() > llext::MAX_CALL_ARGS {
        return Err(Failure(format!(
            "at most {} --arg values are supported",
            llext::MAX_CALL_ARGS
        )));
    }
    // Arguments for nothing would be dropped without a word (`snapshot save` refuses both itself).
    if !accept_out && parsed.call.is_none() && !parsed.args.is_empty() {
        return Err(Failure("--arg needs --call SYM".into()));
    }
    Ok(parsed)
}

/// The value of an option that may be given once.
fn once<'a>(
    option: &str,
    earlier: Option<&'a str>,
    value: &'a str,
) -> Result<Option<&'a str>, Failure> {
    match earlier {
        Some(_) => Err(Failure(format!("{option} is given twice"))),
        None => Ok(Some(value)),
    }
}

/// Loads `files` in order, running constructors; stops at the first failure.
pub(crate) fn load_files(
    registry: &Registry0,
    files: &[&str],
) -> (Vec<llext::ExtId>, Result<(), Failure>) {
    let mut loaded = Vec::new();
    for file in files {
        let bytes = match read_file(file) {
            Ok(b) => b,
            Err(e) => return (loaded, Err(e)),
        };
        flush_all();
        match registry.load(&unique_name(registry, file), &bytes) {
            Ok(id) => loaded.push(id),
            Err(e) => return (loaded, Err(load_failure(file, &bytes, &e))),
        }
        flush_all();
    }
    (loaded, Ok(()))
}

/// Calls the requested symbol (if any and if all went well so far), then unloads `loaded` newest first,
/// running destructors. The first failure wins.
pub(crate) fn call_then_teardown(
    registry: &Registry0,
    loaded: Vec<llext::ExtId>,
    call: Option<&str>,
    args: &[i64],
    mut outcome: Result<(), Failure>,
) -> Result<(), Failure> {
    if outcome.is_ok() {
        if let Some(symbol) = call {
            outcome = call_and_print(registry, symbol, args).map(|_| ());
        }
    }
    for id in loaded.into_iter().rev() {
        flush_all();
        if let Err(e) = unload_fully(registry, id) {
            outcome = outcome.and(Err(e.into()));
        }
    }
    flush_all();
    outcome
}

/// Unloads `id` until it is freed and its destructors have run, however high its use count (a restored
/// context keeps the counts it was saved with).
pub(crate) fn unload_fully(registry: &Registry0, id: llext::ExtId) -> Result<(), llext::Error> {
    while let llext::Unloaded::StillInUse(_) = registry.unload(id)? {}
    Ok(())
}

fn run(args: &[String]) -> Result<(), Failure> {
    let parsed = parse_run_args(args, false)?;
    if parsed.files.is_empty() {
        return Err(Failure("run needs at least one FILE".into()));
    }
    let registry = host_registry();
    let (loaded, outcome) = load_files(&registry, &parsed.files);
    call_then_teardown(&registry, loaded, parsed.call, &parsed.args, outcome)
}

/// One `error: FILE: problem` line per problem.
pub(crate) fn render_problems(file: &str, e: &llext::Error) -> String {
    e.problems()
        .iter()
        .map(|p| format!("error: {file}: {p}\n"))
        .collect()
}

fn main() -> ExitCode {
    // Arguments that are not UTF-8 (a file name, say) are refused, not a panic as `env::args` would make them.
    let args: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string().map_err(|a| {
                Failure(format!(
                    "argument `{}` is not valid UTF-8",
                    a.to_string_lossy()
                ))
            })
        })
        .collect()
    {
        Ok(args) => args,
        Err(e) => return report(Err(e)),
    };
    let Some(command) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let rest = args.get(1..).unwrap_or(&[]);
    if command != "help" && wants_help(rest) {
        if let Some(usage) = command_usage(command) {
            print!("{usage}");
            return report(Ok(()));
        }
    }
    let result = match command.as_str() {
        "inspect" => inspect::inspect(rest),
        "check" => check::check(rest),
        "run" => run(rest),
        "shell" => shell::shell(rest),
        "snapshot" => snapshot::snapshot(rest),
        "demo" => demo::demo(rest),
        "bench" => bench::bench(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        "--version" | "version" => {
            println!("llext {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        other => Err(Failure(format!(
            "unknown command `{other}` (try `llext help`)"
        ))),
    };
    report(result)
}

/// Flushes the output and turns the command's result into its exit status, printing `error: ...` on failure.
fn report(result: Result<(), Failure>) -> ExitCode {
    flush_all();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}
