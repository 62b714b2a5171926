//! Systematic damage to real objects: every class of hostile edit the loader must survive, applied field
//! by field to compiled fixtures (gcc and clang, every optimisation level, PIC and not, `ld -r` partial
//! links, a Rust object, and clang cross objects for Arm, RISC-V and AArch64 so ELF32 and REL parsing and
//! every relocation backend are reached). Each damaged object must load correctly or be refused with a
//! typed error — never a panic or an arithmetic overflow (the test runs with debug assertions) — and a
//! refusal must leave the registry and its memory exactly as they were.
//!
//! The classes follow issue 6: truncation at every header and table boundary; section offsets and sizes
//! past the end; overlapping sections; huge sizes, entry sizes and alignments; symbol, section and string
//! indexes out of range; `SHN_*` special indexes; relocation offsets outside their section; unknown
//! relocation types; wrong class, byte order, machine and type; self-referencing links.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use common::elf::{ElfEdit, Hdr, Rel, Sh, Sym, SHT_NOBITS, SHT_RELA, SHT_STRTAB};
use common::{compile_for, CountingArena, ExecArena};
use llext::{Error, Export, ExportTable, LoadOptions, Registry};

const NO_RUN: LoadOptions = LoadOptions {
    bring_up: false,
    keep_eh_frame: false,
    // Fixup records too, where llext has its `portable` feature.
    portable: cfg!(feature = "portable"),
    storage: llext::Storage::Copy,
};

/// A small C extension with the shapes that produce every common relocation: a jump table, strings, an
/// initialised pointer, static and global data, a call to the host.
const CROSS_SOURCE: &str = r#"
extern long host_log(const char *s, long v);
static long counter;
long table[4] = {1, 2, 3, 4};
const char *greeting = "hello";
long pick(int i) {
    switch (i) { case 0: return 3; case 1: return 7; case 2: return 11; case 3: return 13;
                 case 4: return 17; case 5: return 19; default: return -1; }
}
long bump(long x) { counter += x + table[x & 3]; return host_log(greeting, counter); }
"#;

/// Clang targets of the cross objects, and the registry machine that loads them.
const CROSS: &[(&str, &[&str])] = &[
    ("thumbv7m-none-eabi", &[]),
    ("armv7a-none-eabi", &["-marm"]),
    ("riscv32-unknown-elf", &[]),
    ("riscv64-unknown-elf", &["-mcmodel=medany"]),
    ("aarch64-none-elf", &[]),
    ("i386-unknown-linux-gnu", &[]),
];

/// One object under test: its bytes, the machine its registry runs, and what must be loaded first.
struct Subject {
    name: String,
    bytes: Vec<u8>,
    machine: u16,
    preload: Vec<(&'static str, Vec<u8>)>,
}

fn subjects() -> Vec<Subject> {
    let mut s = Vec::new();
    let x86 = |name: String, bytes: Vec<u8>| Subject {
        name,
        bytes,
        machine: 62,
        preload: Vec::new(),
    };
    for v in llext_fixtures::variants() {
        s.push(x86(v.file_name("basic"), v.bytes("basic")));
    }
    for v in llext_fixtures::variants().into_iter().filter(|v| {
        matches!(
            v.to_string().as_str(),
            "gcc-O2-pic" | "gcc-O0-nopic" | "clang-Os-pic" | "clang-O2-nopic"
        )
    }) {
        for stem in ["farcall", "ctors", "partial", "legacy_ctors", "weak"] {
            s.push(x86(v.file_name(stem), v.bytes(stem)));
        }
        s.push(Subject {
            name: v.file_name("usemath"),
            bytes: v.bytes("usemath"),
            machine: 62,
            preload: vec![("libmath", v.bytes("libmath"))],
        });
    }
    s.push(x86("rsext.o".into(), llext_fixtures::bytes("rsext.o")));
    for (triple, flags) in CROSS {
        let bytes = compile_for(triple, CROSS_SOURCE, flags);
        let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
        s.push(Subject {
            name: format!("cross-{triple}.o"),
            bytes,
            machine,
            preload: Vec::new(),
        });
    }
    s
}

/// A registry for one subject, over an executable arena in the low 2 GiB.
struct Bench<'a> {
    registry: Registry<CountingArena<'a>>,
    live: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    baseline: Vec<llext::ExtensionInfo>,
    baseline_live: usize,
}

/// Outcomes, counted.
#[derive(Default)]
struct Tally {
    tried: usize,
    loaded: usize,
    by_class: BTreeMap<&'static str, (usize, usize)>,
    by_error: BTreeMap<String, usize>,
    failures: Vec<String>,
}

fn error_kind(e: &Error) -> String {
    let text = format!("{e:?}");
    text.split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_string()
}

fn check_error(e: &Error) -> Result<(), String> {
    for p in e.problems().iter().chain([e]) {
        if matches!(p, Error::Internal(_)) {
            return Err(format!("internal error for bad input: {p}"));
        }
    }
    if e.to_string().is_empty() {
        return Err("error renders empty".into());
    }
    Ok(())
}

impl Bench<'_> {
    fn attempt(&mut self, tally: &mut Tally, class: &'static str, what: &str, bytes: &[u8]) {
        tally.tried += 1;
        let entry = tally.by_class.entry(class).or_default();
        entry.0 += 1;
        let r = &self.registry;
        let live = &self.live;
        let (baseline, baseline_live) = (&self.baseline, self.baseline_live);
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Option<String>, String> {
            if let Err(e) = llext::inspect::inspect(bytes) {
                check_error(&e).map_err(|m| format!("inspect: {m}"))?;
            }
            match r.load_with("damaged", bytes, &NO_RUN) {
                Ok(id) => {
                    let info = r.info(id).map_err(|e| format!("info: {e}"))?;
                    for region in &info.regions {
                        if region.addr % region.align != 0 {
                            return Err(format!("misaligned region {region:?}"));
                        }
                    }
                    r.unload(id).map_err(|e| format!("unload: {e}"))?;
                    if live.load(Ordering::SeqCst) != baseline_live {
                        return Err("blocks left after unload".into());
                    }
                    Ok(None)
                }
                Err(e) => {
                    check_error(&e)?;
                    if live.load(Ordering::SeqCst) != baseline_live {
                        return Err(format!("blocks left after refusal ({e})"));
                    }
                    if &r.extensions() != baseline {
                        return Err(format!("registry changed by a refused load ({e})"));
                    }
                    Ok(Some(error_kind(&e)))
                }
            }
        }));
        match outcome {
            Ok(Ok(None)) => {
                tally.loaded += 1;
                entry.1 += 1;
            }
            Ok(Ok(Some(kind))) => *tally.by_error.entry(kind).or_default() += 1,
            Ok(Err(m)) => tally.failures.push(format!("{class}: {what}: {m}")),
            Err(panic) => {
                let m = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tally.failures.push(format!("{class}: {what}: panic: {m}"));
            }
        }
    }
}

/// Every damaged copy of `e`, by class.
fn mutations(e: &ElfEdit) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let len = e.bytes.len() as u64;
    let shnum = e.shnum();
    let all_ones = |field: (usize, usize)| u64::MAX >> (64 - 8 * field.1);
    let set = |out: &mut Vec<_>, class, what: String, field: (usize, usize), value: u64| {
        if e.get(field) != value & all_ones(field) {
            out.push((class, what, e.with(field, value)));
        }
    };

    // Truncation at every header and table boundary.
    let mut cuts = BTreeSet::new();
    cuts.extend(0..e.header_size() + 1);
    for i in 0..=shnum {
        let at = e.shoff() + i * e.shentsize();
        cuts.extend([at, at + 1, at + 4]);
    }
    for i in 1..shnum {
        if e.sh_get(i, Sh::Type) == SHT_NOBITS {
            continue;
        }
        let (off, size) = (e.sh_get(i, Sh::Offset), e.sh_get(i, Sh::Size));
        cuts.extend([off, off + 1, off + size.saturating_sub(1), off + size].map(|c| c as usize));
    }
    if let Some(symtab) = e.symtab() {
        let off = e.sh_get(symtab, Sh::Offset) as usize;
        cuts.extend((0..=e.symbol_count()).map(|k| off + k * e.sym_size()));
    }
    for s in e.relocation_sections() {
        let off = e.sh_get(s, Sh::Offset) as usize;
        cuts.extend((0..=e.rel_count(s)).map(|k| off + k * e.rel_size(s)));
    }
    cuts.extend((0..e.bytes.len()).step_by(61));
    for cut in cuts.into_iter().filter(|&c| c < e.bytes.len()) {
        out.push((
            "truncation",
            format!("cut at {cut}"),
            e.bytes[..cut].to_vec(),
        ));
    }

    // Identity: class, byte order, machine, type, versions, header sizes.
    for (f, values) in [
        (Hdr::Class, &[0u64, 1, 2, 3, 0xff][..]),
        (Hdr::Data, &[0, 2, 3]),
        (Hdr::IdentVersion, &[0, 2]),
        (Hdr::Type, &[0, 2, 3, 4, 0xfe00, 0xffff]),
        (Hdr::Machine, &[0, 3, 40, 62, 183, 243, 0xffff]),
        (Hdr::Version, &[0, 2, u64::MAX]),
        (Hdr::Ehsize, &[0, 1, 0xffff]),
        (
            Hdr::Shentsize,
            &[
                0,
                1,
                e.shentsize() as u64 - 1,
                e.shentsize() as u64 + 1,
                0xffff,
            ],
        ),
    ] {
        for &v in values {
            set(&mut out, "identity", format!("{f:?} = {v:#x}"), e.hdr(f), v);
        }
    }

    // Section header table and string table indexes; extended numbering (SHN_XINDEX, e_shnum 0).
    for v in [0, 1, shnum as u64 - 1, shnum as u64 + 1, 0xff00, 0xffff] {
        set(
            &mut out,
            "index",
            format!("e_shnum = {v}"),
            e.hdr(Hdr::Shnum),
            v,
        );
    }
    for v in [0, shnum as u64, shnum as u64 + 1, 0xfeff, 0xff00, 0xffff] {
        set(
            &mut out,
            "index",
            format!("e_shstrndx = {v}"),
            e.hdr(Hdr::Shstrndx),
            v,
        );
    }
    for i in e
        .relocation_sections()
        .into_iter()
        .take(1)
        .chain(e.symtab())
    {
        set(
            &mut out,
            "index",
            format!("e_shstrndx = {i}"),
            e.hdr(Hdr::Shstrndx),
            i as u64,
        );
    }
    for v in [len, len - 1, len + 1, u64::MAX, 1 << 40] {
        set(
            &mut out,
            "out-of-file",
            format!("e_shoff = {v:#x}"),
            e.hdr(Hdr::Shoff),
            v,
        );
    }
    {
        // SHN_XINDEX string table index, resolved through section 0's sh_link; and e_shnum = 0 with the
        // count in section 0's sh_size.
        let mut x = e.clone();
        let real = x.get(x.hdr(Hdr::Shstrndx));
        x.put(x.hdr(Hdr::Shstrndx), 0xffff);
        x.put(x.sh(0, Sh::Link), real);
        out.push(("special", "e_shstrndx = SHN_XINDEX".into(), x.bytes.clone()));
        x.put(x.sh(0, Sh::Link), 0xffff_fff0);
        out.push(("special", "SHN_XINDEX to nowhere".into(), x.bytes));
        let mut x = e.clone();
        x.put(x.hdr(Hdr::Shnum), 0);
        x.put(x.sh(0, Sh::Size), shnum as u64);
        out.push((
            "special",
            "e_shnum = 0, count in section 0".into(),
            x.bytes.clone(),
        ));
        x.put(x.sh(0, Sh::Size), u64::MAX);
        out.push((
            "special",
            "e_shnum = 0, huge count in section 0".into(),
            x.bytes,
        ));
    }

    // Every section header.
    let anchors: Vec<u64> = [
        Some(0usize),
        e.symtab(),
        e.relocation_sections().first().copied(),
    ]
    .into_iter()
    .flatten()
    .chain(e.sections_of_type(SHT_STRTAB).into_iter().take(1))
    .map(|i| e.sh_get(i, Sh::Offset))
    .chain([0, e.shoff() as u64])
    .collect();
    for i in 1..shnum {
        let off = e.sh_get(i, Sh::Offset);
        let size = e.sh_get(i, Sh::Size);
        let s = |f| e.sh(i, f);
        for v in [len, len - 1, len + 1, u64::MAX, u64::MAX - 7, 1 << 40] {
            set(
                &mut out,
                "out-of-file",
                format!("section {i} offset {v:#x}"),
                s(Sh::Offset),
                v,
            );
        }
        for v in [len, len + 1, len.saturating_sub(off) + 1, 1 << 32, u64::MAX] {
            set(
                &mut out,
                "out-of-file",
                format!("section {i} size {v:#x}"),
                s(Sh::Size),
                v,
            );
        }
        for &a in &anchors {
            set(
                &mut out,
                "overlap",
                format!("section {i} at {a:#x}"),
                s(Sh::Offset),
                a,
            );
        }
        if size > 1 {
            set(
                &mut out,
                "overlap",
                format!("section {i} at +1"),
                s(Sh::Offset),
                off + 1,
            );
        }
        for v in [0, 3, 6, 1 << 17, 1 << 32, 1 << 62, 1 << 63, u64::MAX] {
            set(
                &mut out,
                "huge",
                format!("section {i} align {v:#x}"),
                s(Sh::Align),
                v,
            );
        }
        for v in [0, 1, 3, 1 << 63, u64::MAX] {
            set(
                &mut out,
                "huge",
                format!("section {i} entsize {v:#x}"),
                s(Sh::Entsize),
                v,
            );
        }
        for v in [1 << 31, 1 << 63, u64::MAX - 7] {
            set(
                &mut out,
                "huge",
                format!("section {i} size {v:#x}"),
                s(Sh::Size),
                v,
            );
        }
        for v in [0xffff, 0x1_0000, u64::MAX] {
            set(
                &mut out,
                "index",
                format!("section {i} name {v:#x}"),
                s(Sh::Name),
                v,
            );
        }
        for v in [0, shnum as u64, shnum as u64 + 1, u64::MAX] {
            set(
                &mut out,
                "index",
                format!("section {i} link {v:#x}"),
                s(Sh::Link),
                v,
            );
            set(
                &mut out,
                "index",
                format!("section {i} info {v:#x}"),
                s(Sh::Info),
                v,
            );
        }
        set(
            &mut out,
            "self-link",
            format!("section {i} link = itself"),
            s(Sh::Link),
            i as u64,
        );
        set(
            &mut out,
            "self-link",
            format!("section {i} info = itself"),
            s(Sh::Info),
            i as u64,
        );
        for t in [0u64, 1, SHT_NOBITS, SHT_STRTAB, SHT_RELA, 9, 2, 0x7000_0001] {
            set(
                &mut out,
                "index",
                format!("section {i} type {t:#x}"),
                s(Sh::Type),
                t,
            );
        }
        if e.sh_get(i, Sh::Type) == SHT_STRTAB && size > 0 {
            // A string table without its final NUL.
            let last = (off + size - 1) as usize;
            set(
                &mut out,
                "index",
                format!("section {i} unterminated"),
                (last, 1),
                b'A' as u64,
            );
        }
    }

    // Every symbol.
    let nsyms = e.symbol_count();
    for k in 1..nsyms {
        let f = |x| e.sym(k, x);
        for v in [0xffff, 0x10_0000, u64::MAX] {
            set(
                &mut out,
                "index",
                format!("symbol {k} name {v:#x}"),
                f(Sym::Name),
                v,
            );
        }
        for v in [shnum as u64, shnum as u64 + 1, 0xfeff] {
            set(
                &mut out,
                "index",
                format!("symbol {k} shndx {v:#x}"),
                f(Sym::Shndx),
                v,
            );
        }
        // SHN_UNDEF, SHN_LORESERVE, SHN_HIPROC, SHN_ABS, SHN_COMMON, SHN_XINDEX.
        for v in [0, 0xff00, 0xff1f, 0xfff1, 0xfff2, 0xffff] {
            set(
                &mut out,
                "special",
                format!("symbol {k} shndx {v:#x}"),
                f(Sym::Shndx),
                v,
            );
        }
        for v in [1 << 63, u64::MAX, 3] {
            set(
                &mut out,
                "huge",
                format!("symbol {k} value {v:#x}"),
                f(Sym::Value),
                v,
            );
            set(
                &mut out,
                "huge",
                format!("symbol {k} size {v:#x}"),
                f(Sym::Size),
                v,
            );
        }
        // Binding/type nibbles: STB_GNU_UNIQUE, STT_TLS, STT_GNU_IFUNC, reserved values.
        for v in [0x1a, 0x16, 0xa2, 0xff] {
            set(
                &mut out,
                "special",
                format!("symbol {k} info {v:#x}"),
                f(Sym::Info),
                v,
            );
        }
    }

    // Every relocation section: offsets, symbols and addends of a spread of entries; every type on the
    // first and last entry.
    for s in e.relocation_sections() {
        let n = e.rel_count(s);
        if n == 0 {
            continue;
        }
        let target = e.sh_get(s, Sh::Info) as usize;
        let tsize = if target < shnum {
            e.sh_get(target, Sh::Size)
        } else {
            0
        };
        let picks: BTreeSet<usize> = (0..8).map(|k| k * (n - 1) / 7).collect();
        for &k in &picks {
            let field = |f| e.rel(s, k, f);
            for v in [
                tsize,
                tsize.wrapping_sub(1),
                tsize.wrapping_sub(2),
                tsize.wrapping_sub(3),
                u64::MAX,
                1 << 63,
                0xffff_ffff,
            ] {
                set(
                    &mut out,
                    "reloc-offset",
                    format!("rel {s}.{k} offset {v:#x}"),
                    field(Rel::Offset).unwrap(),
                    v,
                );
            }
            for v in [0, nsyms as u64, nsyms as u64 + 1, u64::MAX] {
                set(
                    &mut out,
                    "index",
                    format!("rel {s}.{k} symbol {v:#x}"),
                    field(Rel::Symbol).unwrap(),
                    v,
                );
            }
            if let Some(a) = field(Rel::Addend) {
                for v in [i64::MIN as u64, i64::MAX as u64, u64::MAX, 1 << 32] {
                    set(&mut out, "huge", format!("rel {s}.{k} addend {v:#x}"), a, v);
                }
            }
        }
        for k in [0, n - 1] {
            let types = (0..=80u64).chain([100, 128, 200, 250, 253, 255, 0xffff, u64::MAX]);
            for t in types {
                set(
                    &mut out,
                    "reloc-type",
                    format!("rel {s}.{k} type {t}"),
                    e.rel(s, k, Rel::Type).unwrap(),
                    t,
                );
            }
        }
    }
    out
}

#[test]
fn every_class_of_damage_is_refused_or_loads() {
    let start = std::time::Instant::now();
    let mut tally = Tally::default();
    let mut objects = 0;
    let mut baseline_loads = 0;
    for subject in subjects() {
        let mut arena = ExecArena::new(4 << 20);
        let mut host = ExecArena::new(4096);
        let host_fn = host.bytes().as_ptr() as *const ();
        let (memory, live) = CountingArena::new(arena.bytes());
        let builtins = if subject.machine == 62 {
            ExportTable::new(llext::LIBC_EXPORTS)
        } else {
            // Cross objects call `host_log`: an address in the low 2 GiB, reachable from 32-bit code.
            ExportTable::new(&[Export::new("host_log", host_fn)])
        };
        let registry = Registry::for_machine(memory, builtins, subject.machine);
        for (name, bytes) in &subject.preload {
            registry.load_with(name, bytes, &NO_RUN).unwrap();
        }
        let mut bench = Bench {
            baseline: registry.extensions(),
            baseline_live: live.load(Ordering::SeqCst),
            registry,
            live,
        };
        objects += 1;
        let before = tally.loaded;
        bench.attempt(&mut tally, "intact", &subject.name, &subject.bytes);
        baseline_loads += tally.loaded - before;
        // Every intact object loads, so the damage reaches every stage; only i386 has no backend.
        assert!(
            tally.loaded > before || subject.machine == 3,
            "{} does not load intact",
            subject.name
        );
        let edit = ElfEdit::new(subject.bytes.clone());
        for (class, what, bytes) in mutations(&edit) {
            bench.attempt(
                &mut tally,
                class,
                &format!("{}: {what}", subject.name),
                &bytes,
            );
        }
    }
    let elapsed = start.elapsed();
    println!(
        "reliability: mutation: {} damaged objects from {objects} fixtures ({baseline_loads} load intact) in {:.1}s: {} loaded, {} refused with a typed error, {} findings",
        tally.tried,
        elapsed.as_secs_f64(),
        tally.loaded,
        tally.tried - tally.loaded - tally.failures.len(),
        tally.failures.len()
    );
    for (class, (tried, loaded)) in &tally.by_class {
        println!("reliability: mutation class {class}: {tried} tried, {loaded} loaded");
    }
    for (kind, n) in &tally.by_error {
        println!("reliability: mutation error {kind}: {n}");
    }
    assert!(
        tally.failures.is_empty(),
        "{} damaged objects broke the loader:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
}
