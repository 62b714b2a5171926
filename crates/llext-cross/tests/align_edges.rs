//! RISC-V sources whose `R_RISCV_ALIGN` padding llext trims (labels at the ends of padding, references by
//! symbol plus offset, gcc's `-falign-*` options with debug and unwind tables), each loaded with llext and
//! linked with GNU `ld --no-relax` at the same addresses: every loaded section must match byte for byte.
//! A review wrote them; the second found llext moving relocation addends, which GNU `ld` does not.

use std::process::Command;

use object::Object;

/// The tests map the same fixed address: one at a time.
static MAPPED: std::sync::Mutex<()> = std::sync::Mutex::new(());

mod common;
use common::{
    gnu_link, have_ld, linked_bytes, llext_load, section_addresses, target, Mapping, WorkDir, ARENA,
};

fn assemble(work: &std::path::Path, name: &str, source: &str, flags: &[&str]) -> Vec<u8> {
    let ext = if flags.is_empty() { "S" } else { "c" };
    let src = work.join(format!("{name}.{ext}"));
    let obj = work.join(format!("{name}.o"));
    std::fs::write(&src, source).unwrap();
    let out = Command::new("riscv64-unknown-elf-gcc")
        .args(["-march=rv64gc", "-mabi=lp64d", "-mcmodel=medany", "-c"])
        .args(flags)
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(obj).unwrap()
}

/// The differences between llext's and ld's bytes of every loaded section of `source`.
fn differences(name: &str, source: &str, flags: &[&str]) -> Vec<String> {
    let t = target("riscv64");
    let work = WorkDir::new(&format!("align-{name}"));
    let elf = assemble(&work.0, name, source, flags);
    let _one = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
    let mapping = Mapping::at(t.load_base, ARENA);
    let info = llext_load(t, &mapping, name, &elf, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
    let addrs = section_addresses(&info);
    let linked = gnu_link(
        t,
        &work.0.join(format!("{name}.o")),
        &addrs,
        &[],
        t.load_base + ARENA as u64 - 0x1_0000,
        &work.0,
    );
    let file = object::File::parse(&*elf).unwrap();
    let mut diffs = Vec::new();
    for s in &info.sections {
        if file.section_by_name(&s.name).is_none() || s.size == 0 {
            continue;
        }
        let ours = mapping.bytes(s.addr as u64, s.size);
        let Some(theirs) = linked_bytes(&linked, s.addr as u64, s.size) else {
            diffs.push(format!(
                "{name}: {} ({} bytes) not in ld's output",
                s.name, s.size
            ));
            continue;
        };
        if ours != theirs {
            let first = ours.iter().zip(&theirs).position(|(a, b)| a != b).unwrap();
            diffs.push(format!(
                "{name}: {} differs first at +{first:#x}: llext {:02x?}, ld {:02x?}",
                s.name,
                &ours[first..(first + 8).min(ours.len())],
                &theirs[first..(first + 8).min(theirs.len())]
            ));
        }
    }
    diffs
}

const LABELS: &str = r#"
	.option relax
	.text
	.globl f
	.type f, @function
f:	addi a0,a1,100
	addi a0,a1,100
	addi a0,a1,100
	addi a0,a1,100
	.p2align 4
.Lhi:	auipc a0, %pcrel_hi(data)
	addi a0, a0, %pcrel_lo(.Lhi)
	.p2align 3
	.p2align 5
.Lend:	ret
	.size f, .-f
	.p2align 4
.Ltail:
	.section .rodata
	.dword .Lhi
	.dword .Lend
	.word .Lend - .Lhi
	.word .Ltail - f
	.data
data:	.dword 1
"#;

/// References to code by symbol plus offset, which gas emits for explicit `sym+N` / `.text+N`.
const ADDENDS: &str = r#"
	.option relax
	.text
	.globl f
f:	addi a0,a1,100
	addi a0,a1,100
	addi a0,a1,100
	addi a0,a1,100
	.p2align 4
	addi a0,a0,2
	ret
	.size f, .-f
	.section .rodata
	.dword f+30
	.dword .text+30
"#;

#[test]
fn labels_at_padding_ends_match_gnu_ld() {
    if !have_ld(target("riscv64")) {
        return;
    }
    let diffs = differences("labels", LABELS, &[]);
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[test]
fn symbol_plus_offset_into_trimmed_code_matches_gnu_ld() {
    if !have_ld(target("riscv64")) {
        return;
    }
    let diffs = differences("addends", ADDENDS, &[]);
    assert!(diffs.is_empty(), "{diffs:#?}");
}

const LOOPS: &str = r#"
static int table(int x, int y)
{
	switch (x) {
	case 0: return y + 1;
	case 1: return y * 3;
	case 2: return y - 7;
	case 3: return y << 2;
	case 4: return y ^ 0x55;
	case 5: return y / 3;
	default: return 0;
	}
}
__attribute__((aligned(64))) int vec(int n)
{
	int s = 0;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			s += table(j % 7, i);
	return s;
}
int user(int n) { return vec(n) + table(n, n); }
"#;

#[test]
fn aligned_loops_and_labels_match_gnu_ld() {
    if !have_ld(target("riscv64")) {
        return;
    }
    let mut diffs = Vec::new();
    for (i, flags) in [
        &[
            "-O2",
            "-falign-functions=32",
            "-falign-loops=16",
            "-falign-labels=8",
            "-falign-jumps=8",
        ][..],
        &[
            "-O2",
            "-g",
            "-fasynchronous-unwind-tables",
            "-falign-loops=32",
        ][..],
        &["-Os", "-fPIC", "-falign-functions=16", "-falign-loops=8"][..],
    ]
    .into_iter()
    .enumerate()
    {
        diffs.extend(differences(&format!("loops{i}"), LOOPS, flags));
    }
    assert!(diffs.is_empty(), "{diffs:#?}");
}
