//! RISC-V (`EM_RISCV`), RV32 and RV64, RELA. Formulas from the "RISC-V ELF psABI", chapter "ELF Object Files",
//! section "Relocations" (table "Relocation types" and "Calculation Symbols"); instruction fields from the RISC-V
//! unprivileged ISA manual.
//!
//! The two classes share every formula and differ in pointer size (GOT slots, `.exported_sym` entries) and in
//! what a 32-bit immediate means: RV32 computes modulo 2^32, so every address is in reach of `lui`/`auipc`;
//! RV64 sign-extends it, so absolute `HI20` addresses must lie in the lowest or highest 2 GiB (use
//! `-mcmodel=medany` for code loaded elsewhere) and PC-relative ones within ±2 GiB.
//!
//! Linker relaxation is not done, but for what correctness needs: `R_RISCV_RELAX` is accepted and ignored,
//! and the padding at each `R_RISCV_ALIGN` is trimmed before layout (`align.rs`), as a linker must, so that
//! aligned code lands aligned; the relocation itself then patches nothing.

use super::{field, Inputs, Needs, Pairing, Problem, Relocator};

/// `EM_RISCV`.
pub const MACHINE_ID: u16 = 243;

/// The RV32 backend (ELFCLASS32 objects).
#[derive(Debug)]
pub enum Riscv32 {}

/// The RV64 backend (ELFCLASS64 objects).
#[derive(Debug)]
pub enum Riscv64 {}

impl Riscv32 {
    /// `EM_RISCV`.
    pub const MACHINE_ID: u16 = MACHINE_ID;
}

impl Riscv64 {
    /// `EM_RISCV`.
    pub const MACHINE_ID: u16 = MACHINE_ID;
}

const NONE: u32 = 0;
const R32: u32 = 1;
const R64: u32 = 2;
const BRANCH: u32 = 16;
const JAL: u32 = 17;
const CALL: u32 = 18;
const CALL_PLT: u32 = 19;
const GOT_HI20: u32 = 20;
const PCREL_HI20: u32 = 23;
const PCREL_LO12_I: u32 = 24;
const PCREL_LO12_S: u32 = 25;
const HI20: u32 = 26;
const LO12_I: u32 = 27;
const LO12_S: u32 = 28;
const ADD8: u32 = 33;
const ADD16: u32 = 34;
const ADD32: u32 = 35;
const ADD64: u32 = 36;
const SUB8: u32 = 37;
const SUB16: u32 = 38;
const SUB32: u32 = 39;
const SUB64: u32 = 40;
const GOT32_PCREL: u32 = 41;
const ALIGN: u32 = 43;
const RVC_BRANCH: u32 = 44;
const RVC_JUMP: u32 = 45;
const RELAX: u32 = 51;
const SUB6: u32 = 52;
const SET6: u32 = 53;
const SET8: u32 = 54;
const SET16: u32 = 55;
const SET32: u32 = 56;
const R32_PCREL: u32 = 57;
const PLT32: u32 = 59;
const SET_ULEB128: u32 = 60;
const SUB_ULEB128: u32 = 61;

const OPCODE_LUI: u32 = 0x37;
const OPCODE_AUIPC: u32 = 0x17;
const OPCODE_JAL: u32 = 0x6f;
const OPCODE_JALR: u32 = 0x67;
const OPCODE_BRANCH: u32 = 0x63;

const MEDANY_ADVICE: &str =
    "absolute address out of reach of lui on RV64 (lowest or highest 2 GiB only); build the extension with -mcmodel=medany";
const PCREL_ADVICE: &str = "target out of ±2 GiB reach of auipc";

/// The XLEN-specific parts: pointer size and the veneer that reaches any address.
trait Xlen {
    const RV64: bool;
}

impl Xlen for Riscv32 {
    const RV64: bool = false;
}

impl Xlen for Riscv64 {
    const RV64: bool = true;
}

macro_rules! riscv_backend {
    ($ty:ty, $ptr:expr, $stub:expr) => {
        impl Relocator for $ty {
            const MACHINE: u16 = MACHINE_ID;
            const POINTER_SIZE: usize = $ptr;
            const STUB_SIZE: usize = $stub;
            const STUB_ALIGN: usize = $ptr;

            fn name(r_type: u32) -> Option<&'static str> {
                name(r_type)
            }

            fn needs(r_type: u32) -> Needs {
                needs(r_type)
            }

            fn is_none(r_type: u32) -> bool {
                // `RELAX` and `ALIGN` (whose padding `align.rs` trimmed) patch nothing either: the linker skips
                // them and portable contexts do not record them.
                matches!(r_type, NONE | RELAX | ALIGN)
            }

            fn write_stub(stub: &mut [u8], _at: u64, target: u64) -> Result<(), Problem> {
                write_stub(stub, target, <$ty as Xlen>::RV64)
            }

            fn apply(inputs: &Inputs, place: &mut [u8]) -> Result<(), Problem> {
                apply(inputs, place, <$ty as Xlen>::RV64)
            }

            fn pairing(r_type: u32) -> Pairing {
                pairing(r_type)
            }

            fn is_pc_relative(r_type: u32) -> bool {
                // psABI "Relocations" table: these are S + A - P alone (a far JAL or CALL through a
                // stub is recorded anyway: the linker checks for the stub).
                matches!(
                    r_type,
                    BRANCH | JAL | CALL | CALL_PLT | RVC_BRANCH | RVC_JUMP | R32_PCREL | PLT32
                )
            }

            fn writes_pointer(r_type: u32) -> bool {
                r_type == if <$ty as Xlen>::RV64 { R64 } else { R32 }
            }

            fn starts_difference(r_type: u32) -> bool {
                // psABI "Relocations" table: SETn is S + A, which the SUBn at the same place then reduces.
                matches!(r_type, SET6 | SET8 | SET16 | SET32)
            }

            fn max_write(r_type: u32) -> usize {
                match r_type {
                    // AUIPC and JALR.
                    R64 | ADD64 | SUB64 | CALL | CALL_PLT => 8,
                    // As many bytes as the assembler left for the ULEB128.
                    SET_ULEB128 | SUB_ULEB128 => usize::MAX,
                    _ => 4,
                }
            }

            fn accumulates(r_type: u32) -> bool {
                // psABI "Relocations" table: ADDn is V + S + A, SUBn and SUB6 are V - S - A.
                matches!(
                    r_type,
                    ADD8 | ADD16 | ADD32 | ADD64 | SUB6 | SUB8 | SUB16 | SUB32 | SUB64
                )
            }

            fn hi_value(inputs: &Inputs) -> Result<i64, Problem> {
                hi_value(inputs, <$ty as Xlen>::RV64)
            }
        }
    };
}

riscv_backend!(Riscv32, 4, 16);
riscv_backend!(Riscv64, 8, 24);

fn name(r_type: u32) -> Option<&'static str> {
    Some(match r_type {
        NONE => "R_RISCV_NONE",
        R32 => "R_RISCV_32",
        R64 => "R_RISCV_64",
        3 => "R_RISCV_RELATIVE",
        4 => "R_RISCV_COPY",
        5 => "R_RISCV_JUMP_SLOT",
        6 => "R_RISCV_TLS_DTPMOD32",
        7 => "R_RISCV_TLS_DTPMOD64",
        8 => "R_RISCV_TLS_DTPREL32",
        9 => "R_RISCV_TLS_DTPREL64",
        10 => "R_RISCV_TLS_TPREL32",
        11 => "R_RISCV_TLS_TPREL64",
        12 => "R_RISCV_TLSDESC",
        BRANCH => "R_RISCV_BRANCH",
        JAL => "R_RISCV_JAL",
        CALL => "R_RISCV_CALL",
        CALL_PLT => "R_RISCV_CALL_PLT",
        GOT_HI20 => "R_RISCV_GOT_HI20",
        21 => "R_RISCV_TLS_GOT_HI20",
        22 => "R_RISCV_TLS_GD_HI20",
        PCREL_HI20 => "R_RISCV_PCREL_HI20",
        PCREL_LO12_I => "R_RISCV_PCREL_LO12_I",
        PCREL_LO12_S => "R_RISCV_PCREL_LO12_S",
        HI20 => "R_RISCV_HI20",
        LO12_I => "R_RISCV_LO12_I",
        LO12_S => "R_RISCV_LO12_S",
        29 => "R_RISCV_TPREL_HI20",
        30 => "R_RISCV_TPREL_LO12_I",
        31 => "R_RISCV_TPREL_LO12_S",
        32 => "R_RISCV_TPREL_ADD",
        ADD8 => "R_RISCV_ADD8",
        ADD16 => "R_RISCV_ADD16",
        ADD32 => "R_RISCV_ADD32",
        ADD64 => "R_RISCV_ADD64",
        SUB8 => "R_RISCV_SUB8",
        SUB16 => "R_RISCV_SUB16",
        SUB32 => "R_RISCV_SUB32",
        SUB64 => "R_RISCV_SUB64",
        GOT32_PCREL => "R_RISCV_GOT32_PCREL",
        ALIGN => "R_RISCV_ALIGN",
        RVC_BRANCH => "R_RISCV_RVC_BRANCH",
        RVC_JUMP => "R_RISCV_RVC_JUMP",
        46 => "R_RISCV_RVC_LUI",
        RELAX => "R_RISCV_RELAX",
        SUB6 => "R_RISCV_SUB6",
        SET6 => "R_RISCV_SET6",
        SET8 => "R_RISCV_SET8",
        SET16 => "R_RISCV_SET16",
        SET32 => "R_RISCV_SET32",
        R32_PCREL => "R_RISCV_32_PCREL",
        58 => "R_RISCV_IRELATIVE",
        PLT32 => "R_RISCV_PLT32",
        SET_ULEB128 => "R_RISCV_SET_ULEB128",
        SUB_ULEB128 => "R_RISCV_SUB_ULEB128",
        62 => "R_RISCV_TLSDESC_HI20",
        63 => "R_RISCV_TLSDESC_LOAD_LO12",
        64 => "R_RISCV_TLSDESC_ADD_LO12",
        65 => "R_RISCV_TLSDESC_CALL",
        _ => return None,
    })
}

fn needs(r_type: u32) -> Needs {
    match r_type {
        GOT_HI20 | GOT32_PCREL => Needs {
            got_slot: true,
            ..Needs::default()
        },
        // auipc+jalr reaches ±2 GiB, enough for any call on these machines; a JAL (±1 MiB) to another
        // object's function may need the veneer.
        JAL => Needs {
            stub: true,
            ..Needs::default()
        },
        _ => Needs::default(),
    }
}

fn pairing(r_type: u32) -> Pairing {
    match r_type {
        PCREL_HI20 | GOT_HI20 | SET_ULEB128 => Pairing::Hi,
        PCREL_LO12_I | PCREL_LO12_S => Pairing::LoAtSymbol,
        SUB_ULEB128 => Pairing::LoAtPlace,
        _ => Pairing::Alone,
    }
}

fn hi_value(i: &Inputs, rv64: bool) -> Result<i64, Problem> {
    let c = Calc::new(i, rv64)?;
    match i.r_type {
        // psABI "Relocations" table: PCREL_HI20 is S + A - P; or S + A where the `auipc` becomes a `lui`.
        PCREL_HI20 => Ok(pcrel_hi(&c).0),
        // psABI "Relocations" table: GOT_HI20 is G + GOT + A - P (the slot's address).
        GOT_HI20 => Ok(c.narrow(c.slot()?.wrapping_add(c.a).wrapping_sub(c.p))),
        // psABI "Relocations" table: SET_ULEB128 is S + A; its SUB_ULEB128 partner subtracts.
        SET_ULEB128 => Ok(c.s.wrapping_add(c.a)),
        _ => Err(Problem::Unsupported),
    }
}

/// The value of a `PCREL_HI20` and whether it is absolute: S + A - P, or, on RV64, S + A when that is out
/// of the `auipc`'s ±2 GiB reach but within a `lui`'s (the lowest or highest 2 GiB), the `auipc` then
/// becoming a `lui` and its LO12 partners adding the low bits of the address itself. GNU ld links such
/// references the same way: it is how code at 0x8000_0000 reads the address 0 of an undefined weak symbol.
fn pcrel_hi(c: &Calc) -> (i64, bool) {
    let relative = c.narrow(c.s.wrapping_add(c.a).wrapping_sub(c.p));
    let absolute = c.s.wrapping_add(c.a);
    if c.rv64 && !in_hi20_reach(relative) && in_hi20_reach(absolute) {
        (absolute, true)
    } else {
        (relative, false)
    }
}

/// `v` is the sum of a sign-extended 32-bit `lui`/`auipc` immediate and a sign-extended 12-bit one.
fn in_hi20_reach(v: i64) -> bool {
    field::fits_signed(v.wrapping_add(0x800), 32)
}

/// `auipc t1, 0; l[wd] t1, k(t1); jr t1; [nop]; .word/.dword target`: reaches any address.
fn write_stub(stub: &mut [u8], target: u64, rv64: bool) -> Result<(), Problem> {
    const T1: u32 = 6;
    let auipc = OPCODE_AUIPC | (T1 << 7);
    let jr = OPCODE_JALR | (T1 << 15);
    if rv64 {
        // ld t1, 16(t1): funct3 3
        let ld = 0x03 | (T1 << 7) | (3 << 12) | (T1 << 15) | (16 << 20);
        let mut code = [0u8; 24];
        for (k, w) in [auipc, ld, jr, 0x13].iter().enumerate() {
            code[k * 4..k * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        code[16..24].copy_from_slice(&target.to_le_bytes());
        field::write(stub, code)
    } else {
        let target = u32::try_from(target).map_err(|_| Problem::Overflow {
            value: target as i64,
            reason: "veneer target above 4 GiB on RV32",
        })?;
        // lw t1, 12(t1): funct3 2
        let lw = 0x03 | (T1 << 7) | (2 << 12) | (T1 << 15) | (12 << 20);
        let mut code = [0u8; 16];
        for (k, w) in [auipc, lw, jr, target].iter().enumerate() {
            code[k * 4..k * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        field::write(stub, code)
    }
}

/// S, A, P as signed values, checked to be addresses of this XLEN.
struct Calc<'a> {
    i: &'a Inputs,
    s: i64,
    a: i64,
    p: i64,
    rv64: bool,
}

impl<'a> Calc<'a> {
    fn new(i: &'a Inputs, rv64: bool) -> Result<Self, Problem> {
        if !rv64 && (i.s > u64::from(u32::MAX) || i.p > u64::from(u32::MAX)) {
            return Err(Problem::Overflow {
                value: i.s.max(i.p) as i64,
                reason: "address above 4 GiB: load RV32 objects into memory below 4 GiB",
            });
        }
        Ok(Calc {
            i,
            s: i.s as i64,
            a: i.a,
            p: i.p as i64,
            rv64,
        })
    }

    /// RV32 computes modulo 2^32: a value is its low 32 bits, sign-extended.
    fn narrow(&self, v: i64) -> i64 {
        if self.rv64 {
            v
        } else {
            i64::from(v as i32)
        }
    }

    fn slot(&self) -> Result<i64, Problem> {
        self.i.got_slot.map(|g| g as i64).ok_or(Problem::Internal)
    }

    fn stub(&self) -> Option<i64> {
        self.i.stub.map(|s| s as i64)
    }
}

fn apply(i: &Inputs, place: &mut [u8], rv64: bool) -> Result<(), Problem> {
    let c = Calc::new(i, rv64)?;
    let (s, a, p) = (c.s, c.a, c.p);
    match i.r_type {
        NONE | RELAX | ALIGN => Ok(()),
        R32 => {
            // psABI "Relocations" table: 32 is S + A.
            let v = s.wrapping_add(a);
            if !(-(1i64 << 31)..(1i64 << 32)).contains(&v) {
                return Err(overflow(v, "value does not fit 32 bits"));
            }
            field::write(place, (v as u32).to_le_bytes())
        }
        // psABI "Relocations" table: 64 is S + A.
        R64 => field::write(place, s.wrapping_add(a).to_le_bytes()),
        BRANCH => {
            // psABI "Relocations" table: BRANCH is S + A - P (B-type, ±4 KiB).
            let v = c.narrow(s.wrapping_add(a).wrapping_sub(p));
            check_opcode(
                place,
                OPCODE_BRANCH,
                "BRANCH does not patch a conditional branch",
            )?;
            pc_range(v, 13, "branch target out of ±4 KiB reach")?;
            let u = v as u32;
            let imm = (((u >> 12) & 1) << 31)
                | (((u >> 5) & 0x3f) << 25)
                | (((u >> 1) & 0xf) << 8)
                | (((u >> 11) & 1) << 7);
            patch32(place, 0x01ff_f07f, imm)
        }
        JAL => {
            // psABI "Relocations" table: JAL is S + A - P (J-type, ±1 MiB).
            let direct = c.narrow(s.wrapping_add(a).wrapping_sub(p));
            let v = match c.stub() {
                Some(stub) if !field::fits_signed(direct, 21) => {
                    c.narrow(stub.wrapping_add(a).wrapping_sub(p))
                }
                _ => direct,
            };
            check_opcode(place, OPCODE_JAL, "JAL does not patch a jal")?;
            pc_range(v, 21, "jump target out of ±1 MiB reach")?;
            patch32(place, 0x0000_0fff, j_imm(v as u32))
        }
        CALL | CALL_PLT => {
            // psABI "Relocations" table: CALL and CALL_PLT are S + A - P over auipc+jalr.
            check_opcode(place, OPCODE_AUIPC, "CALL does not patch auipc")?;
            let jalr = place.get_mut(4..).ok_or(Problem::OutsideSection)?;
            check_opcode(jalr, OPCODE_JALR, "CALL's second instruction is not jalr")?;
            if i.absent {
                // An absent (undefined weak) function is 0, which its caller checks before calling: the
                // call jumps from register zero wherever the code is, as GNU ld links it:
                // `auipc rd, 0; jalr ..., A(zero)`.
                if !field::fits_signed(a, 12) {
                    return Err(overflow(
                        a,
                        "call to an absent weak function with an addend beyond ±2 KiB",
                    ));
                }
                patch32(jalr, 0x000f_ffff & !(0x1f << 15), 0)?;
                lo12_i(jalr, a)?;
                return hi20(place, 0, None);
            }
            let v = c.narrow(s.wrapping_add(a).wrapping_sub(p));
            hi20(place, v, rv64.then_some(PCREL_ADVICE))?;
            let jalr = place.get_mut(4..).ok_or(Problem::OutsideSection)?;
            lo12_i(jalr, v)
        }
        GOT_HI20 => {
            check_opcode(place, OPCODE_AUIPC, "GOT_HI20 does not patch auipc")?;
            let v = hi_value(i, rv64)?;
            hi20(place, v, rv64.then_some(PCREL_ADVICE))
        }
        PCREL_HI20 => {
            // The place holds the object's auipc, or on a restore the lui an earlier link may have made
            // of it: either becomes what the value needs.
            let w = read32(place)?;
            if w & 0x7f != OPCODE_AUIPC && !(i.relink && w & 0x7f == OPCODE_LUI) {
                return Err(invalid(w, "PCREL_HI20 does not patch auipc"));
            }
            let (v, absolute) = pcrel_hi(&c);
            let opcode = if absolute { OPCODE_LUI } else { OPCODE_AUIPC };
            patch32(place, !0x7f, opcode)?;
            hi20(place, v, rv64.then_some(PCREL_ADVICE))
        }
        PCREL_LO12_I | PCREL_LO12_S => {
            // psABI "Relocations" table: PCREL_LO12 uses the value of the PCREL_HI20 at its symbol.
            let v = i.hi.ok_or(Problem::Invalid {
                value: s,
                reason: "PCREL_LO12 without a PCREL_HI20 or GOT_HI20 at the address of its symbol",
            })?;
            if i.r_type == PCREL_LO12_I {
                lo12_i(place, v)
            } else {
                lo12_s(place, v)
            }
        }
        HI20 => {
            // psABI "Relocations" table: HI20 is S + A (lui).
            let v = c.narrow(s.wrapping_add(a));
            check_opcode(place, OPCODE_LUI, "HI20 does not patch lui")?;
            hi20(place, v, rv64.then_some(MEDANY_ADVICE))
        }
        // psABI "Relocations" table: LO12_I and LO12_S are S + A.
        LO12_I => lo12_i(place, c.narrow(s.wrapping_add(a))),
        LO12_S => lo12_s(place, c.narrow(s.wrapping_add(a))),
        RVC_BRANCH => {
            // psABI "Relocations" table: RVC_BRANCH is S + A - P (CB-type, ±256 bytes).
            let v = c.narrow(s.wrapping_add(a).wrapping_sub(p));
            let hw = read16(place)?;
            if hw & 0x3 != 1 || hw >> 14 != 0b11 {
                return Err(invalid(hw, "RVC_BRANCH does not patch c.beqz/c.bnez"));
            }
            pc_range(v, 9, "compressed branch target out of ±256 byte reach")?;
            let u = v as u16;
            let imm = (((u >> 8) & 1) << 12)
                | (((u >> 3) & 3) << 10)
                | (((u >> 6) & 3) << 5)
                | (((u >> 1) & 3) << 3)
                | (((u >> 5) & 1) << 2);
            write16(place, (hw & 0xe383) | imm)
        }
        RVC_JUMP => {
            // psABI "Relocations" table: RVC_JUMP is S + A - P (CJ-type, ±2 KiB).
            let v = c.narrow(s.wrapping_add(a).wrapping_sub(p));
            let hw = read16(place)?;
            if hw & 0x3 != 1 || (hw >> 13 != 0b101 && hw >> 13 != 0b001) {
                return Err(invalid(hw, "RVC_JUMP does not patch c.j/c.jal"));
            }
            pc_range(v, 12, "compressed jump target out of ±2 KiB reach")?;
            let u = v as u16;
            let imm = (((u >> 11) & 1) << 12)
                | (((u >> 4) & 1) << 11)
                | (((u >> 8) & 3) << 9)
                | (((u >> 10) & 1) << 8)
                | (((u >> 6) & 1) << 7)
                | (((u >> 7) & 1) << 6)
                | (((u >> 1) & 7) << 3)
                | (((u >> 5) & 1) << 2);
            write16(place, (hw & 0xe003) | imm)
        }
        // psABI "Relocations" table: ADDn is V + S + A, SUBn is V - S - A, modulo the width.
        ADD8 => update::<1>(place, |v| v.wrapping_add(s.wrapping_add(a))),
        ADD16 => update::<2>(place, |v| v.wrapping_add(s.wrapping_add(a))),
        ADD32 => update::<4>(place, |v| v.wrapping_add(s.wrapping_add(a))),
        ADD64 => update::<8>(place, |v| v.wrapping_add(s.wrapping_add(a))),
        SUB8 => update::<1>(place, |v| v.wrapping_sub(s.wrapping_add(a))),
        SUB16 => update::<2>(place, |v| v.wrapping_sub(s.wrapping_add(a))),
        SUB32 => update::<4>(place, |v| v.wrapping_sub(s.wrapping_add(a))),
        SUB64 => update::<8>(place, |v| v.wrapping_sub(s.wrapping_add(a))),
        // psABI "Relocations" table: SUB6 is V - S - A and SET6 is S + A, in the low 6 bits.
        SUB6 => update::<1>(place, |v| {
            (v & 0xc0) | (v.wrapping_sub(s.wrapping_add(a)) & 0x3f)
        }),
        SET6 => update::<1>(place, |v| (v & 0xc0) | (s.wrapping_add(a) & 0x3f)),
        // psABI "Relocations" table: SETn is S + A, truncated to the width.
        SET8 => update::<1>(place, |_| s.wrapping_add(a)),
        SET16 => update::<2>(place, |_| s.wrapping_add(a)),
        SET32 => update::<4>(place, |_| s.wrapping_add(a)),
        R32_PCREL | PLT32 => {
            // psABI "Relocations" table: 32_PCREL and PLT32 are S + A - P.
            let v = c.narrow(s.wrapping_add(a).wrapping_sub(p));
            if !field::fits_signed(v, 32) {
                return Err(overflow(v, "PC-relative word out of ±2 GiB reach"));
            }
            field::write(place, (v as i32).to_le_bytes())
        }
        GOT32_PCREL => {
            // psABI "Relocations" table: GOT32_PCREL is G + GOT + A - P.
            let v = c.narrow(c.slot()?.wrapping_add(a).wrapping_sub(p));
            if !field::fits_signed(v, 32) {
                return Err(overflow(v, "GOT slot out of ±2 GiB reach"));
            }
            field::write(place, (v as i32).to_le_bytes())
        }
        SET_ULEB128 => {
            // psABI "Relocations" table: SET_ULEB128 is S + A; if it does not fit, the SUB_ULEB128 that must
            // follow at the same place writes the difference.
            let v = s.wrapping_add(a);
            let len = uleb_len(place)?;
            if v >= 0 && (len >= 10 || (v as u64) >> (7 * len) == 0) {
                write_uleb(place, v as u64, len)
            } else if i.hi.is_some() {
                Ok(()) // its SUB_ULEB128 (same place) writes the difference
            } else {
                Err(overflow(v, "SET_ULEB128 value does not fit the bytes the assembler left, and no SUB_ULEB128 follows"))
            }
        }
        SUB_ULEB128 => {
            // psABI "Relocations" table: SUB_ULEB128 is V - S - A, V being its SET_ULEB128's S + A.
            let set = i.hi.ok_or(Problem::Invalid {
                value: p,
                reason: "SUB_ULEB128 without a SET_ULEB128 at the same place",
            })?;
            let v = set.wrapping_sub(s.wrapping_add(a));
            let len = uleb_len(place)?;
            if v < 0 || (len < 10 && (v as u64) >> (7 * len) != 0) {
                return Err(overflow(
                    v,
                    "ULEB128 difference does not fit the bytes the assembler left",
                ));
            }
            write_uleb(place, v as u64, len)
        }
        _ => Err(Problem::Unsupported),
    }
}

fn overflow(value: i64, reason: &'static str) -> Problem {
    Problem::Overflow { value, reason }
}

fn invalid(found: impl Into<i64>, reason: &'static str) -> Problem {
    Problem::Invalid {
        value: found.into(),
        reason,
    }
}

/// A PC-relative offset of `bits` bits (bit 0 implied zero).
fn pc_range(v: i64, bits: u32, reason: &'static str) -> Result<(), Problem> {
    if !field::fits_signed(v, bits) {
        return Err(overflow(v, reason));
    }
    if v & 1 != 0 {
        return Err(overflow(v, "branch target is not 2-byte aligned"));
    }
    Ok(())
}

fn j_imm(u: u32) -> u32 {
    (((u >> 20) & 1) << 31)
        | (((u >> 1) & 0x3ff) << 21)
        | (((u >> 11) & 1) << 20)
        | (((u >> 12) & 0xff) << 12)
}

/// The upper 20 bits of `v`, rounded so that adding the sign-extended low 12 bits gives `v` back.
/// `reason` is `None` on RV32, where everything wraps modulo 2^32.
fn hi20(place: &mut [u8], v: i64, reason: Option<&'static str>) -> Result<(), Problem> {
    if let Some(reason) = reason.filter(|_| !in_hi20_reach(v)) {
        return Err(overflow(v, reason));
    }
    let hi = ((v.wrapping_add(0x800) >> 12) as u32) & 0xfffff;
    patch32(place, 0x0000_0fff, hi << 12)
}

fn lo12_i(place: &mut [u8], v: i64) -> Result<(), Problem> {
    let w = read32(place)?;
    if !matches!(w & 0x7f, 0x03 | 0x07 | 0x13 | 0x1b | 0x67) {
        return Err(invalid(
            w,
            "LO12_I does not patch an I-type instruction (load, addi, jalr)",
        ));
    }
    let lo = (v as u32) & 0xfff;
    patch32(place, 0x000f_ffff, lo << 20)
}

fn lo12_s(place: &mut [u8], v: i64) -> Result<(), Problem> {
    let w = read32(place)?;
    if !matches!(w & 0x7f, 0x23 | 0x27) {
        return Err(invalid(w, "LO12_S does not patch a store"));
    }
    let lo = (v as u32) & 0xfff;
    patch32(place, 0x01ff_f07f, ((lo >> 5) << 25) | ((lo & 0x1f) << 7))
}

fn check_opcode(place: &[u8], opcode: u32, reason: &'static str) -> Result<(), Problem> {
    let w = read32(place)?;
    if w & 0x7f != opcode {
        return Err(invalid(w, reason));
    }
    Ok(())
}

fn read16(place: &[u8]) -> Result<u16, Problem> {
    let b = place.get(..2).ok_or(Problem::OutsideSection)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn read32(place: &[u8]) -> Result<u32, Problem> {
    let b = place.get(..4).ok_or(Problem::OutsideSection)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn write16(place: &mut [u8], v: u16) -> Result<(), Problem> {
    field::write(place, v.to_le_bytes())
}

/// Keeps the bits of `keep` and ORs in `bits`.
fn patch32(place: &mut [u8], keep: u32, bits: u32) -> Result<(), Problem> {
    let w = read32(place)?;
    field::write(place, ((w & keep) | bits).to_le_bytes())
}

/// Reads an N-byte little-endian value, maps it, writes the low N bytes back.
fn update<const N: usize>(place: &mut [u8], f: impl Fn(i64) -> i64) -> Result<(), Problem> {
    let bytes = place.get_mut(..N).ok_or(Problem::OutsideSection)?;
    let mut buf = [0u8; 8];
    buf[..N].copy_from_slice(bytes);
    let v = f(i64::from_le_bytes(buf)).to_le_bytes();
    bytes.copy_from_slice(&v[..N]);
    Ok(())
}

/// The length of the ULEB128 the assembler left in the place.
fn uleb_len(place: &[u8]) -> Result<usize, Problem> {
    let end = place
        .iter()
        .take(10)
        .position(|b| b & 0x80 == 0)
        .ok_or(Problem::OutsideSection)?;
    Ok(end + 1)
}

/// Writes `v` as a ULEB128 of exactly `len` bytes (padded with continuation bytes).
fn write_uleb(place: &mut [u8], v: u64, len: usize) -> Result<(), Problem> {
    let bytes = place.get_mut(..len).ok_or(Problem::OutsideSection)?;
    let mut rest = v;
    for (k, b) in bytes.iter_mut().enumerate() {
        let more = if k + 1 < len { 0x80 } else { 0 };
        *b = (rest & 0x7f) as u8 | more;
        rest = rest.checked_shr(7).unwrap_or(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(r_type: u32, s: u64, a: i64, p: u64) -> Inputs {
        Inputs::plain(r_type, s, a, p)
    }

    fn word(place: &[u8]) -> u32 {
        read32(place).unwrap()
    }

    fn i_imm(w: u32) -> i64 {
        i64::from((w as i32) >> 20)
    }

    fn u_imm(w: u32) -> i64 {
        i64::from((w & 0xffff_f000) as i32)
    }

    #[test]
    fn call_pair_reaches_both_ends_of_2_gib() {
        // auipc ra, 0 ; jalr ra, 0(ra)
        let code = [0x0000_0097u32, 0x0000_80e7];
        let mut place = [0u8; 8];
        for (k, w) in code.iter().enumerate() {
            place[k * 4..k * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        let p = 0x1_0000_0000u64;
        for target in [p + 0x7fff_f7ff, p - 0x8000_0800, p + 0x800, p - 0x801] {
            let mut buf = place;
            Riscv64::apply(&inputs(CALL_PLT, target, 0, p), &mut buf).unwrap();
            let (hi, lo) = (word(&buf), word(&buf[4..]));
            assert_eq!(
                p as i64 + u_imm(hi) + i_imm(lo),
                target as i64,
                "{target:#x}"
            );
            assert_eq!(hi & 0xfff, 0x097, "rd and opcode kept");
        }
        let mut buf = place;
        let r = Riscv64::apply(&inputs(CALL, p + 0x7fff_f800, 0, p), &mut buf);
        assert!(matches!(r, Err(Problem::Overflow { .. })));
        // RV32 computes modulo 2^32: everything is in reach.
        let mut buf = place;
        Riscv32::apply(&inputs(CALL, 0xffff_f000, 0, 0x1000), &mut buf).unwrap();
        assert_eq!(
            (0x1000 + u_imm(word(&buf)) + i_imm(word(&buf[4..]))) as u32,
            0xffff_f000
        );
    }

    #[test]
    fn undefined_weak_references_reach_address_zero_from_anywhere() {
        // auipc ra, 0 ; jalr ra, 0(ra), and auipc a0, 0 ; addi a0, a0, 0 (`lla a0, f`).
        let call: [u8; 8] = [0x97, 0, 0, 0, 0xe7, 0x80, 0, 0];
        let lla = 0x0000_0517u32.to_le_bytes();
        let addi = 0x0005_0513u32.to_le_bytes();
        let far = 0x8000_4000u64;
        let absent = |r_type, p| Inputs {
            absent: true,
            ..inputs(r_type, 0, 0, p)
        };
        for rv64 in [true, false] {
            let apply = |i: &Inputs, place: &mut [u8]| apply(i, place, rv64);
            let mut buf = call;
            apply(&absent(CALL_PLT, far), &mut buf).unwrap();
            assert_eq!(word(&buf), 0x0000_0097, "auipc ra, 0");
            assert_eq!(word(&buf[4..]), 0x0000_00e7, "jalr ra, 0(zero)");
            // Linked again elsewhere (a restore), the same.
            let relinked = Inputs {
                relink: true,
                ..absent(CALL_PLT, 0x1000)
            };
            apply(&relinked, &mut buf).unwrap();
            assert_eq!((word(&buf), word(&buf[4..])), (0x97, 0xe7));
            // A function that is there, even at a low address, is called PC-relative.
            let mut buf = call;
            apply(&inputs(CALL_PLT, 0x100, 0, 0x2000), &mut buf).unwrap();
            assert_eq!(word(&buf[4..]) >> 15 & 0x1f, 1, "jalr ra, ...(ra)");
            assert_eq!(0x2000 + u_imm(word(&buf)) + i_imm(word(&buf[4..])), 0x100);
        }
        // RV64: the auipc out of reach of 0 becomes a lui, and its LO12 partner adds the absolute value.
        let i = inputs(PCREL_HI20, 0, 8, far);
        let hi = hi_value(&i, true).unwrap();
        assert_eq!(hi, 8);
        let mut buf = lla;
        Riscv64::apply(&i, &mut buf).unwrap();
        assert_eq!(word(&buf), 0x0000_0537, "lui a0, 0");
        let mut lo = addi;
        let mut pair = inputs(PCREL_LO12_I, far, 0, far + 4);
        pair.hi = Some(hi);
        Riscv64::apply(&pair, &mut lo).unwrap();
        assert_eq!(u_imm(word(&buf)) + i_imm(word(&lo)), 8);
        // A lui at the place is what an earlier link wrote only on a restore: linked again within reach,
        // it is an auipc again; in an object it is refused.
        let again = Inputs {
            relink: true,
            ..inputs(PCREL_HI20, 0, 8, 0x1000)
        };
        Riscv64::apply(&again, &mut buf).unwrap();
        assert_eq!(word(&buf) & 0x7f, OPCODE_AUIPC);
        let mut lui = 0x0000_0537u32.to_le_bytes();
        let r = Riscv64::apply(&inputs(PCREL_HI20, 0, 8, far), &mut lui);
        assert!(matches!(r, Err(Problem::Invalid { .. })), "{r:?}");
        // RV32 wraps, so it never needs the lui.
        let mut buf = lla;
        Riscv32::apply(&inputs(PCREL_HI20, 0, 8, far), &mut buf).unwrap();
        assert_eq!(word(&buf) & 0x7f, OPCODE_AUIPC);
        // An address out of the reach of both stays an error.
        let mut buf = lla;
        let r = Riscv64::apply(&inputs(PCREL_HI20, 0x1_8000_0000, 0, far), &mut buf);
        assert!(matches!(r, Err(Problem::Overflow { reason, .. }) if reason == PCREL_ADVICE));
    }

    #[test]
    fn hi20_lo12_absolute_and_the_medany_limit() {
        let mut lui = 0x0000_0537u32.to_le_bytes(); // lui a0, 0
        let mut addi = 0x0005_0513u32.to_le_bytes(); // addi a0, a0, 0
        let mut sw = 0x00a5_2023u32.to_le_bytes(); // sw a0, 0(a0)
        let s = 0x8000_1fffu64;
        Riscv32::apply(&inputs(HI20, s, 0, 0), &mut lui).unwrap();
        Riscv32::apply(&inputs(LO12_I, s, 0, 0), &mut addi).unwrap();
        Riscv32::apply(&inputs(LO12_S, s, 0, 0), &mut sw).unwrap();
        assert_eq!((u_imm(word(&lui)) + i_imm(word(&addi))) as u32, s as u32);
        let sw = word(&sw);
        let s_imm = i64::from(((sw as i32) >> 25) << 5 | ((sw >> 7) & 0x1f) as i32);
        assert_eq!((u_imm(word(&lui)) + s_imm) as u32, s as u32);
        // On RV64, lui sign-extends: 0x8000_1fff is out of its reach.
        let mut lui = 0x0000_0537u32.to_le_bytes();
        let r = Riscv64::apply(&inputs(HI20, s, 0, 0), &mut lui);
        assert!(matches!(r, Err(Problem::Overflow { reason, .. }) if reason == MEDANY_ADVICE));
    }

    #[test]
    fn pcrel_lo12_needs_its_hi20() {
        let mut addi = 0x0005_0513u32.to_le_bytes();
        let r = Riscv64::apply(&inputs(PCREL_LO12_I, 0x1000, 0, 0x1004), &mut addi);
        assert!(matches!(r, Err(Problem::Invalid { .. })));
        let mut i = inputs(PCREL_LO12_I, 0x1000, 0, 0x1004);
        i.hi = Some(0x1234_5ffe);
        Riscv64::apply(&i, &mut addi).unwrap();
        assert_eq!(i_imm(word(&addi)), -2);
        // The HI value is S + A - P of the auipc.
        let hi = hi_value(&inputs(PCREL_HI20, 0x3000, 8, 0x1000), true).unwrap();
        assert_eq!(hi, 0x2008);
    }

    #[test]
    fn branches_check_range_and_kind() {
        let beq = 0x0000_0063u32.to_le_bytes();
        let mut b = beq;
        Riscv64::apply(&inputs(BRANCH, 0x1000 + 4094, 0, 0x1000), &mut b).unwrap();
        let w = word(&b);
        let imm = (((w >> 31) & 1) << 12)
            | (((w >> 7) & 1) << 11)
            | (((w >> 25) & 0x3f) << 5)
            | (((w >> 8) & 0xf) << 1);
        assert_eq!(imm, 4094);
        let mut b = beq;
        assert!(Riscv64::apply(&inputs(BRANCH, 0x1000 + 4096, 0, 0x1000), &mut b).is_err());
        let mut not_a_branch = 0x0000_0013u32.to_le_bytes();
        let r = Riscv64::apply(&inputs(BRANCH, 0x1000, 0, 0x1000), &mut not_a_branch);
        assert!(matches!(r, Err(Problem::Invalid { .. })));
        // c.j, forward 2046 and back 2048.
        for off in [2046i64, -2048] {
            let mut cj = 0xa001u16.to_le_bytes();
            let target = (0x10000 + off) as u64;
            Riscv32::apply(&inputs(RVC_JUMP, target, 0, 0x10000), &mut cj).unwrap();
            let h = u32::from(read16(&cj).unwrap());
            let imm = (((h >> 12) & 1) << 11)
                | (((h >> 11) & 1) << 4)
                | (((h >> 9) & 3) << 8)
                | (((h >> 8) & 1) << 10)
                | (((h >> 7) & 1) << 6)
                | (((h >> 6) & 1) << 7)
                | (((h >> 3) & 7) << 1)
                | (((h >> 2) & 1) << 5);
            assert!(super::super::field::fits_signed(off, 12));
            assert_eq!(((imm << 20) as i32 >> 20) as i64, off);
        }
        let mut cj = 0xa001u16.to_le_bytes();
        assert!(Riscv32::apply(&inputs(RVC_JUMP, 0x10000 + 2048, 0, 0x10000), &mut cj).is_err());
    }

    #[test]
    fn data_add_sub_set_and_uleb() {
        let mut w = 10u32.to_le_bytes();
        Riscv32::apply(&inputs(ADD32, 0x100, 1, 0), &mut w).unwrap();
        Riscv32::apply(&inputs(SUB32, 0x80, 0, 0), &mut w).unwrap();
        assert_eq!(u32::from_le_bytes(w), 10 + 0x101 - 0x80);
        let mut b = [0xc5u8];
        Riscv32::apply(&inputs(SET6, 0x47, 0, 0), &mut b).unwrap();
        assert_eq!(b[0], 0xc7);
        Riscv32::apply(&inputs(SUB6, 0x8, 0, 0), &mut b).unwrap();
        assert_eq!(b[0], 0xff);
        // A two-byte ULEB128 left by the assembler receives SET - SUB.
        let mut uleb = [0x80u8, 0x00, 0xaa];
        let mut i = inputs(SUB_ULEB128, 0x8000_0000, 0, 0);
        assert!(Riscv64::apply(&i, &mut uleb).is_err(), "no SET partner");
        i.hi = Some(0x8000_0000 + 300);
        Riscv64::apply(&i, &mut uleb).unwrap();
        assert_eq!(uleb, [0x80 | (300 & 0x7f) as u8, 2, 0xaa]);
        i.hi = Some(0x8000_0000 + 20000);
        assert!(
            Riscv64::apply(&i, &mut uleb).is_err(),
            "does not fit two bytes"
        );
        // A SET_ULEB128 whose value does not fit is left for its SUB_ULEB128, but one without a partner
        // (`hi` is `None`) is an error, never a silently unpatched placeholder.
        let mut uleb = [0x80u8, 0x00];
        let mut set = inputs(SET_ULEB128, 0x8000_0000, 0, 0);
        assert!(matches!(
            Riscv64::apply(&set, &mut uleb),
            Err(Problem::Overflow { .. })
        ));
        set.hi = Some(0);
        Riscv64::apply(&set, &mut uleb).unwrap();
        assert_eq!(uleb, [0x80, 0x00]);
        Riscv64::apply(&inputs(SET_ULEB128, 100, 0, 0), &mut uleb).unwrap();
        assert_eq!(uleb, [0x80 | 100, 0x00]);
    }

    #[test]
    fn relax_and_align_patch_nothing() {
        let mut nops = [0x13u8, 0, 0, 0];
        Riscv64::apply(&inputs(ALIGN, 0, 4, 0), &mut nops).unwrap();
        Riscv64::apply(&inputs(RELAX, 0, 0, 0), &mut nops).unwrap();
        assert_eq!(nops, [0x13, 0, 0, 0]);
    }

    #[test]
    fn stubs_load_the_full_address() {
        let mut code = [0u8; 24];
        Riscv64::write_stub(&mut code, 0, 0x1234_5678_9abc).unwrap();
        assert_eq!(
            u64::from_le_bytes(code[16..24].try_into().unwrap()),
            0x1234_5678_9abc
        );
        assert_eq!(word(&code[4..]) >> 20, 16, "ld offset reaches the literal");
        let mut code = [0u8; 16];
        Riscv32::write_stub(&mut code, 0, 0x8000_0000).unwrap();
        assert_eq!(word(&code[12..]), 0x8000_0000);
        assert!(Riscv32::write_stub(&mut code, 0, 0x1_0000_0000).is_err());
    }
}
