// The zlib fixture: real, optimised library code (zlib's deflate and inflate) with the driver
// `zlib/zlib_main.c`, combined by `ld -r` into one extension. zlib's sources are the copy the
// `libz-sys` crate carries (a build-dependency of llext-fixtures, so cargo has it unpacked); none of
// them is kept in this repository. Shared (`#[path]`-included) by llext-fixtures' build script, the
// firmware's build script and xtask, so every build compiles the same files the same way.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// zlib's core (deflate, inflate and the checksums), without the `gz*` file functions and the
/// one-shot helpers, which need a C library's allocator or stdio.
pub const SOURCES: &[&str] = &[
    "adler32", "crc32", "deflate", "inflate", "inftrees", "inffast", "trees", "zutil",
];

/// Flags of zlib and the driver besides the target's: `Z_SOLO` builds zlib without any C library
/// header and without a default allocator (the driver passes one that calls `malloc`).
pub const FLAGS: &[&str] = &["-DZ_SOLO"];

/// The argument the tests give `zlib_main`.
pub const SEED: i64 = 7;

/// The package whose copy of zlib is built.
const PACKAGE: &str = "libz-sys";

/// `src/zlib` of the `libz-sys` package that the workspace of `manifest` (a `Cargo.toml`) locks,
/// found with `cargo metadata` run by `cargo` for the dependencies of a build for `platform` (the
/// host's target triple). Offline first; `cargo metadata` wants every package of the workspace,
/// and a build of one crate (`cargo run -p llext-cli`) fetches only its own, so then again online.
pub fn source_dir(cargo: &OsStr, manifest: &Path, platform: &str) -> Result<PathBuf, String> {
    let metadata = |offline: bool| {
        let mut command = Command::new(cargo);
        command.args(["metadata", "--format-version", "1"]);
        if offline {
            command.arg("--offline");
        }
        command
            .args(["--filter-platform", platform])
            .arg("--manifest-path")
            .arg(manifest)
            .stdin(Stdio::null());
        let line = format!("{command:?}");
        match command.output() {
            Ok(out) if out.status.success() => Ok((line, out.stdout)),
            Ok(out) => Err(format!(
                "{line} failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => Err(format!("cannot run {line}: {e}")),
        }
    };
    let (line, out) = metadata(true).or_else(|offline| {
        metadata(false).map_err(|online| format!("{offline}\nand online: {online}"))
    })?;
    let json = String::from_utf8_lossy(&out);
    let manifests: Vec<String> = packages(&json)
        .into_iter()
        .filter(|(name, _)| name == PACKAGE)
        .map(|(_, manifest)| manifest)
        .collect();
    let [manifest] = manifests.as_slice() else {
        return Err(format!(
            "{line} lists {} `{PACKAGE}` packages, not one: {manifests:?}",
            manifests.len()
        ));
    };
    let dir = Path::new(manifest)
        .parent()
        .map(|p| p.join("src/zlib"))
        .unwrap_or_default();
    if !dir.join("zlib.h").is_file() {
        return Err(format!(
            "{} has no zlib.h: the `{PACKAGE}` package no longer carries zlib's sources there",
            dir.display()
        ));
    }
    Ok(dir)
}

/// `(name, manifest_path)` of every package in `cargo metadata` output: the string members of the
/// objects one level inside the top-level object's arrays, which only `packages` holds.
fn packages(json: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let (mut name, mut manifest) = (None, None);
    // Nesting: 1 in the top object, 2 in `packages`, 3 in a package.
    let mut depth = 0usize;
    let mut key: Option<String> = None;
    let mut chars = json.chars();
    while let Some(c) = chars.next() {
        match c {
            '{' | '[' => {
                depth += 1;
                key = None;
            }
            '}' | ']' => {
                if depth == 3 && c == '}' {
                    if let (Some(n), Some(m)) = (name.take(), manifest.take()) {
                        found.push((n, m));
                    }
                }
                depth = depth.saturating_sub(1);
                key = None;
            }
            ',' => key = None,
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(other) => s.push(other),
                            None => break,
                        },
                        c => s.push(c),
                    }
                }
                if depth != 3 {
                    continue;
                }
                match key.take() {
                    None => key = Some(s),
                    Some(k) if k == "name" => name = Some(s),
                    Some(k) if k == "manifest_path" => manifest = Some(s),
                    Some(_) => {}
                }
            }
            _ => {}
        }
    }
    found
}

/// Each C file of the fixture — the driver, then zlib's [`SOURCES`] in `src` — with the object it
/// compiles to in `parts` (made here): the parts `ld -r` combines into one build.
pub fn units(src: &Path, driver: &Path, parts: &Path) -> Vec<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(parts).unwrap_or_else(|e| panic!("{}: {e}", parts.display()));
    let sources = SOURCES.iter().map(|s| src.join(format!("{s}.c")));
    std::iter::once(driver.to_path_buf())
        .chain(sources)
        .map(|source| {
            let stem = source.file_stem().unwrap_or_default().to_owned();
            let obj = parts.join(Path::new(&stem).with_extension("o"));
            (source, obj)
        })
        .collect()
}

/// Builds the fixture natively with `cc` at `-O2` into `dir`, its driver's `main` included, and
/// runs it: what `zlib_main(SEED)` returns on the host, which every loaded build must return too.
pub fn native_result(cc: &str, src: &Path, driver: &Path, dir: &Path) -> Result<i64, String> {
    let exe = dir.join("zlib-native");
    let mut command = Command::new(cc);
    command
        .args(["-O2", "-DLLEXT_ZLIB_NATIVE"])
        .args(FLAGS)
        .arg(format!("-I{}", src.display()))
        .arg(driver)
        .args(SOURCES.iter().map(|s| src.join(format!("{s}.c"))))
        .arg("-o")
        .arg(&exe)
        .stdin(Stdio::null());
    let line = format!("{command:?}");
    let out = command
        .output()
        .map_err(|e| format!("cannot run {line}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{line} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = Command::new(&exe)
        .arg(SEED.to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let printed = String::from_utf8_lossy(&out.stdout);
    match printed.trim().parse::<i64>() {
        Ok(v) if out.status.success() && v >= 0 => Ok(v),
        _ => Err(format!(
            "{} {SEED} ({}) printed `{}`: a native build of the zlib fixture must print a result \
             of at least 0",
            exe.display(),
            out.status,
            printed.trim()
        )),
    }
}
