//! `llext inspect FILE [--json]`.

use std::fmt::Write as _;

use llext::inspect::Report;

use crate::{read_file, Failure};

pub(crate) fn inspect(args: &[String]) -> Result<(), Failure> {
    let mut json = false;
    let mut file = None;
    let mut options = true;
    for a in args {
        match a.as_str() {
            "--" if options => options = false,
            "--json" if options => json = true,
            s if options && s.starts_with("--") => {
                return Err(Failure(format!("unknown option `{s}`")))
            }
            _ if file.is_some() => return Err(Failure("inspect takes one FILE".into())),
            _ => file = Some(a),
        }
    }
    let file = file.ok_or(Failure("inspect needs a FILE".into()))?;
    let bytes = read_file(file)?;
    // A saved context (`llext snapshot save`, the shell's `save`) is described, not refused as a bad ELF.
    match llext::Context::from_bytes(&bytes) {
        Ok(context) => {
            print!("{}", context_description(file, &context, bytes.len(), json));
            return Ok(());
        }
        Err(e) if bytes.starts_with(&llext::Context::MAGIC) => {
            return Err(Failure(format!("{file}: a damaged llext context: {e}")));
        }
        Err(_) => {}
    }
    let report = llext::inspect::inspect(&bytes).map_err(|e| Failure(format!("{file}: {e}")))?;
    if json {
        println!("{}", to_json(file, &report));
    } else {
        print!("{}", to_text(file, &report));
    }
    Ok(())
}

/// What a saved context holds: its kind, machine and extensions in load order, each with what its record
/// says (dependencies, use count, blocks, exports, constructors and destructors, fixup table).
fn context_description(file: &str, c: &llext::Context<'_>, len: usize, json: bool) -> String {
    let machine = llext::arch::machine_name(c.machine());
    let names: Vec<&str> = c.names().collect();
    let core = c.saved_core();
    let isa = core.isa.map(|isa| isa.key());
    let float_abi = core.float_abi.map(|abi| abi.key());
    let dep_names = |e: &llext::SavedExtension<'_>| -> Vec<&str> {
        e.dependencies()
            .map(|d| names.get(d).copied().unwrap_or("?"))
            .collect()
    };
    if json {
        let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
        let or_null = |v: Option<&str>| v.map_or("null".to_string(), quote);
        let records: Vec<String> = c
            .extensions()
            .map(|e| {
                let deps: Vec<String> = dep_names(&e).iter().map(|n| quote(n)).collect();
                let blocks: Vec<String> = e
                    .blocks()
                    .map(|(addr, size, p)| {
                        format!(
                            "{{\"addr\":{addr},\"size\":{size},\"permission\":{}}}",
                            quote(p.as_str())
                        )
                    })
                    .collect();
                let exports: Vec<String> = e
                    .exports()
                    .map(|(name, addr)| {
                        let name = String::from_utf8_lossy(name);
                        format!("{{\"name\":{},\"addr\":{addr}}}", quote(&name))
                    })
                    .collect();
                let (ctors, dtors) = e.hooks();
                let isa = e.isa().map(|isa| isa.key());
                format!(
                    "{{\"name\":{},\"dependencies\":[{}],\"use_count\":{},\"initialised\":{},\
                     \"blocks\":[{}],\"exports\":[{}],\"constructors\":{ctors},\"destructors\":{dtors},\
                     \"fixup_bytes\":{},\"isa\":{},\"float_abi\":{},\"a32\":{},\"arm_profile\":{}}}",
                    quote(e.name()),
                    deps.join(","),
                    e.use_count(),
                    e.initialised(),
                    blocks.join(","),
                    exports.join(","),
                    e.fixup_bytes(),
                    or_null(isa.as_deref()),
                    or_null(e.float_abi().map(|abi| abi.key())),
                    e.holds_a32(),
                    or_null(e.arm_profile().map(|p| p.to_string()).as_deref()),
                )
            })
            .collect();
        return format!(
            "{{\"file\":{},\"type\":\"context\",\"portable\":{},\"machine\":{},\"machine_name\":{},\
             \"bytes\":{len},\"isa\":{},\"float_abi\":{},\"thumb_only\":{},\"extensions\":[{}],\
             \"records\":[{}]}}\n",
            quote(file),
            c.is_portable(),
            c.machine(),
            quote(machine),
            or_null(isa.as_deref()),
            or_null(float_abi),
            core.thumb_only,
            quoted.join(","),
            records.join(",")
        );
    }
    let kind = if c.is_portable() {
        "portable (carries the extensions' memory; restores at new addresses)"
    } else {
        "in place (names retained memory; restores only where it was saved)"
    };
    let mut out = format!(
        "file: {file}\ntype: saved context, {kind}, machine {machine} ({}), {len} bytes\n\
         extensions, in load order: {}\n",
        c.machine(),
        names.len()
    );
    for e in c.extensions() {
        let deps = dep_names(&e);
        let deps = if deps.is_empty() {
            "no dependencies".to_string()
        } else {
            format!("depends on {}", deps.join(", "))
        };
        let state = if e.initialised() {
            "constructors ran"
        } else {
            "not brought up"
        };
        let _ = writeln!(
            out,
            "  {}: {deps}; use count {}; {state}",
            e.name(),
            e.use_count()
        );
        let blocks: Vec<String> = e
            .blocks()
            .map(|(addr, size, p)| format!("{} {size} bytes at {addr:#x}", p.as_str()))
            .collect();
        let _ = writeln!(out, "    blocks: {}", blocks.join(", "));
        let exports: Vec<String> = e
            .exports()
            .map(|(name, addr)| format!("{} {addr:#x}", String::from_utf8_lossy(name)))
            .collect();
        if !exports.is_empty() {
            let _ = writeln!(out, "    exports: {}", exports.join(", "));
        }
        let (ctors, dtors) = e.hooks();
        let _ = writeln!(
            out,
            "    constructors {ctors}, destructors {dtors}, fixup table {} bytes",
            e.fixup_bytes()
        );
        // What a restore checks against its own registry's core (`Error::SnapshotCore`).
        let mut needs = Vec::new();
        needs.extend(e.isa().map(|isa| format!("instruction set {isa}")));
        needs.extend(e.float_abi().map(|abi| format!("float ABI {}", abi.key())));
        if e.holds_a32() {
            needs.push("A32 (Arm-state) code".to_string());
        }
        needs.extend(e.arm_profile().map(|p| format!("the Arm {p}-profile")));
        if !needs.is_empty() {
            let _ = writeln!(out, "    built for: {}", needs.join(", "));
        }
    }
    // What the saving registry knew of its core.
    let mut known = Vec::new();
    known.extend(isa.map(|isa| format!("instruction set {isa}")));
    known.extend(float_abi.map(|abi| format!("float ABI {abi}")));
    if core.thumb_only {
        known.push("Thumb code only".to_string());
    }
    if !known.is_empty() {
        let _ = writeln!(out, "saved where the core runs: {}", known.join(", "));
    }
    if c.is_portable() && llext::arch::native_machine() == Some(c.machine()) {
        let _ = writeln!(out, "restore with: llext snapshot restore {file}");
    } else if c.is_portable() {
        // `snapshot restore` runs what it restores: only a program of the context's machine can.
        let _ = writeln!(
            out,
            "restore with: `Registry::restore` in a {} program (`llext snapshot restore` restores {} contexts only)",
            llext::arch::machine_name(c.machine()),
            llext::arch::native_machine().map_or("this machine's", llext::arch::machine_name)
        );
    }
    out
}

fn type_name(e_type: u16) -> &'static str {
    match e_type {
        1 => "REL (relocatable object)",
        2 => "EXEC (executable)",
        3 => "DYN (shared object)",
        4 => "CORE",
        _ => "unknown",
    }
}

fn to_text(file: &str, r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "file: {file}");
    let _ = writeln!(
        out,
        "type: {}, {}-bit {}-endian, machine {} ({})",
        type_name(r.e_type),
        r.class_bits,
        if r.little_endian { "little" } else { "big" },
        r.machine_name,
        r.machine
    );
    if let Some(abi) = r.float_abi {
        let _ = writeln!(out, "float ABI: {abi}");
    }
    if let Some(isa) = r.isa {
        let _ = writeln!(out, "instruction set: {isa}");
    }
    let _ = writeln!(out, "sections:");
    let _ = writeln!(
        out,
        "  {:>3}  {:<28} {:>8} {:>6}  region",
        "idx", "name", "size", "align"
    );
    for s in &r.sections {
        if s.index == 0 {
            continue;
        }
        let region = s.region.map(|k| k.as_str()).unwrap_or("-");
        let _ = writeln!(
            out,
            "  {:>3}  {:<28} {:>8} {:>6}  {}",
            s.index, s.name, s.size, s.align, region
        );
    }
    let list = |out: &mut String, title: &str, items: &mut dyn Iterator<Item = String>| {
        let items: Vec<String> = items.collect();
        let _ = writeln!(
            out,
            "{title} ({}):{}",
            items.len(),
            if items.is_empty() { " none" } else { "" }
        );
        for i in items {
            let _ = writeln!(out, "  {i}");
        }
    };
    list(
        &mut out,
        "exported symbols",
        &mut r.exported.iter().cloned(),
    );
    list(
        &mut out,
        "defined global symbols",
        &mut r.defined.iter().cloned(),
    );
    list(
        &mut out,
        "undefined symbols",
        &mut r.undefined.iter().map(|(n, weak)| {
            if *weak {
                format!("{n} (weak)")
            } else {
                n.clone()
            }
        }),
    );
    list(
        &mut out,
        "relocations by type",
        &mut r
            .relocations
            .iter()
            .map(|c| format!("{:<26} {:>6}", c.name, c.count)),
    );
    out
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(q, "\\u{:04x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn to_json(file: &str, r: &Report) -> String {
    let strings = |v: &mut dyn Iterator<Item = String>| {
        let items: Vec<String> = v.map(|s| quote(&s)).collect();
        format!("[{}]", items.join(","))
    };
    let sections: Vec<String> =
        r.sections
            .iter()
            .filter(|s| s.index != 0)
            .map(|s| {
                format!(
                "{{\"index\":{},\"name\":{},\"type\":{},\"size\":{},\"align\":{},\"region\":{}}}",
                s.index,
                quote(&s.name),
                s.kind,
                s.size,
                s.align,
                s.region.map(|k| quote(k.as_str())).unwrap_or_else(|| "null".into())
            )
            })
            .collect();
    let undefined: Vec<String> = r
        .undefined
        .iter()
        .map(|(n, weak)| format!("{{\"name\":{},\"weak\":{weak}}}", quote(n)))
        .collect();
    let relocs: Vec<String> = r
        .relocations
        .iter()
        .map(|c| {
            format!(
                "{{\"name\":{},\"type\":{},\"count\":{}}}",
                quote(c.name),
                c.r_type,
                c.count
            )
        })
        .collect();
    format!(
        "{{\"file\":{},\"type\":{},\"type_name\":{},\"class\":{},\"little_endian\":{},\"machine\":{},\"machine_name\":{},\"float_abi\":{},\"isa\":{},\"sections\":[{}],\"exported\":{},\"defined\":{},\"undefined\":[{}],\"relocations\":[{}]}}",
        quote(file),
        r.e_type,
        quote(type_name(r.e_type)),
        r.class_bits,
        r.little_endian,
        r.machine,
        quote(r.machine_name),
        r.float_abi
            .map_or_else(|| "null".to_string(), |abi| quote(&abi.to_string())),
        r.isa
            .map_or_else(|| "null".to_string(), |isa| quote(&isa.key())),
        sections.join(","),
        strings(&mut r.exported.iter().cloned()),
        strings(&mut r.defined.iter().cloned()),
        undefined.join(","),
        relocs.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use llext::arch::{FloatAbi, Isa};
    use llext::{ArenaMemory, ExportTable, Registry, SaveOptions};

    /// A context names the core it was saved for (for inspection: a restore checks each record's needs); a
    /// host's, which knows none, says nothing.
    #[test]
    fn a_context_names_the_core_it_was_saved_for() {
        let mut arena = vec![0u8; 4096];
        let r = Registry::for_machine(ArenaMemory::new(&mut arena), ExportTable::default(), 243);
        r.set_isa(Isa::from_key("rv32imac"));
        r.set_float_abi(Some(FloatAbi::Soft));
        let bytes = r.save(&SaveOptions::default()).unwrap();
        let context = llext::Context::from_bytes(&bytes).unwrap();
        let text = context_description("fw.ctx", &context, bytes.len(), false);
        assert!(
            text.contains("saved where the core runs: instruction set rv32imac, float ABI soft\n"),
            "{text}"
        );
        let json = context_description("fw.ctx", &context, bytes.len(), true);
        assert!(
            json.contains("\"isa\":\"rv32imac\",\"float_abi\":\"soft\",\"thumb_only\":false"),
            "{json}"
        );

        let host = crate::host_registry();
        let bytes = host.save(&SaveOptions::default()).unwrap();
        let context = llext::Context::from_bytes(&bytes).unwrap();
        let text = context_description("host.ctx", &context, bytes.len(), false);
        assert!(!text.contains("saved where"), "{text}");
        let json = context_description("host.ctx", &context, bytes.len(), true);
        assert!(
            json.contains("\"isa\":null,\"float_abi\":null,\"thumb_only\":false"),
            "{json}"
        );
    }
}
