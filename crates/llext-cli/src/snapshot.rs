//! `llext snapshot save|restore`: portable contexts in files.

use llext::{ArenaMemory, Context, LoadOptions, Registry, RestoreOptions, SaveOptions};

use crate::check::with_firmware_registry;
use crate::{
    call_then_teardown, host_registry, load_failure, load_files, parse_run_args, read_file,
    unique_name, Failure, Registry0,
};

pub(crate) fn snapshot(args: &[String]) -> Result<(), Failure> {
    match args.first().map(String::as_str) {
        Some("save") => save(args.get(1..).unwrap_or(&[])),
        Some("restore") => restore(args.get(1..).unwrap_or(&[])),
        Some(other) => Err(Failure(format!(
            "unknown snapshot command `{other}` (save or restore)"
        ))),
        None => Err(Failure("snapshot needs `save` or `restore`".into())),
    }
}

/// Saves a portable context of `names` (and their dependencies), or of everything, to `path`.
pub(crate) fn save_to<M: llext::Memory>(
    registry: &Registry<M>,
    path: &str,
    names: Option<&[&str]>,
) -> Result<usize, Failure> {
    let options = SaveOptions {
        names,
        portable: true,
        content_hashes: true,
    };
    let bytes = registry.save(&options)?;
    std::fs::write(path, &bytes).map_err(|e| Failure(format!("{path}: {e}")))?;
    Ok(Context::from_bytes(&bytes)?.len())
}

/// Restores the context in `path` and brings up what was saved before its constructors ran (a context
/// `snapshot save --exports` linked for this machine); returns the handles of the restored extensions, in
/// load order.
pub(crate) fn restore_from(registry: &Registry0, path: &str) -> Result<Vec<llext::ExtId>, Failure> {
    let bytes = read_file(path)?;
    let context = Context::from_bytes(&bytes).map_err(|e| Failure(format!("{path}: {e}")))?;
    let ids = registry
        .restore(&context, &RestoreOptions::default())
        .map_err(|e| Failure(format!("{path}: {e}")))?;
    for &id in &ids {
        if let Err(e) = registry.bring_up(id) {
            // Nothing stays behind a refusal: what was restored goes again, newest first.
            for &id in ids.iter().rev() {
                let _ = crate::unload_fully(registry, id);
            }
            return Err(Failure(format!("{path}: {e}")));
        }
    }
    Ok(ids)
}

fn save(args: &[String]) -> Result<(), Failure> {
    let parsed = parse_run_args(args, true)?;
    let out = parsed
        .out
        .ok_or(Failure("snapshot save needs --out SNAP".into()))?;
    if parsed.call.is_some() || !parsed.args.is_empty() {
        return Err(Failure("snapshot save takes no --call or --arg".into()));
    }
    if parsed.files.is_empty() {
        return Err(Failure("snapshot save needs at least one FILE".into()));
    }
    if parsed.exports.is_some() || parsed.at.is_some() {
        let at = parsed.at.map(crate::check::parse_address).transpose()?;
        return with_firmware_registry(parsed.exports, at, false, &parsed.files, |registry| {
            save_for_firmware(registry, &parsed.files, out)
        });
    }
    let registry = host_registry();
    let (loaded, outcome) = load_files(&registry, &parsed.files);
    let outcome = outcome.and_then(|()| {
        let n = save_to(&registry, out, None)?;
        println!("saved {} to {out}", crate::count(n, "extension"));
        Ok(())
    });
    call_then_teardown(&registry, loaded, None, &[], outcome)
}

fn restore(args: &[String]) -> Result<(), Failure> {
    let parsed = parse_run_args(args, false)?;
    let [snap] = parsed.files[..] else {
        return Err(Failure(
            "snapshot restore takes exactly one SNAP file".into(),
        ));
    };
    let registry = host_registry();
    let restored = restore_from(&registry, snap);
    let (ids, outcome) = match restored {
        Ok(ids) => (ids, Ok(())),
        Err(e) => (Vec::new(), Err(e)),
    };
    call_then_teardown(&registry, ids, parsed.call, &parsed.args, outcome)
}

/// Links `files` for the firmware `registry` describes, as its loader would, without running anything,
/// and saves a portable context of them to `out`: the device restores it at its own addresses, rebinding
/// the built-ins by name, and runs the constructors with `Registry::bring_up`.
fn save_for_firmware(
    registry: &Registry<ArenaMemory<'_>>,
    files: &[&str],
    out: &str,
) -> Result<(), Failure> {
    let options = LoadOptions {
        bring_up: false,
        portable: true,
        ..LoadOptions::default()
    };
    for &file in files {
        let bytes = read_file(file)?;
        registry
            .load_with(&unique_name(registry, file), &bytes, &options)
            .map_err(|e| load_failure(file, &bytes, &e))?;
    }
    let n = save_to(registry, out, None)?;
    println!(
        "saved {} for {} to {out}: restore it with Registry::restore, then run constructors with \
         Registry::bring_up",
        crate::count(n, "extension"),
        llext::arch::machine_name(registry.machine())
    );
    Ok(())
}
