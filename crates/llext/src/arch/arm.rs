//! 32-bit Arm (`EM_ARM`): A32 and Thumb-2 code, REL relocations whose addends sit in the place.
//!
//! Formulas from "ELF for the Arm Architecture" (AAELF32), section 5.6 "Relocation"; instruction fields from
//! the Arm Architecture Reference Manual (ARMv7-A/R and ARMv7-M). Symbol values keep the Thumb bit (bit 0 of a
//! Thumb function's address, as ELF stores it), so `S + A` already carries `T` for every function symbol.
//!
//! Calls and tail calls that cannot reach (Thumb BL/B.W: ±16 MiB, A32 BL/B: ±32 MiB) — e.g. from RAM at
//! `0x2000_0000` to firmware in flash at `0x0` — go through a veneer ("stub") the linker places next to the
//! code. A veneer has a Thumb entry at +0 (`ldr.w pc, [pc, #4]`), an A32 entry at +4 (`ldr pc, [pc, #-4]`)
//! and the target address at +8; loading `pc` switches state by bit 0 of the target, so either kind of caller
//! reaches a Thumb or an A32 function. The A32 entry needs Armv5T or later; a Thumb caller needs Thumb-2.
//! `R_ARM_V4BX` is left as `BX` (Armv4T and later).

use super::{field, Inputs, Needs, Problem, Relocator};

/// The 32-bit Arm backend (A32 and Thumb-2, little-endian).
#[derive(Debug)]
pub enum Arm {}

impl Arm {
    /// `EM_ARM`.
    pub const MACHINE_ID: u16 = 40;
}

const NONE: u32 = 0;
const PC24: u32 = 1;
const ABS32: u32 = 2;
const REL32: u32 = 3;
const ABS16: u32 = 5;
const ABS8: u32 = 8;
const THM_CALL: u32 = 10;
const THM_PC8: u32 = 11;
const GOTOFF32: u32 = 24;
const BASE_PREL: u32 = 25;
const GOT_BREL: u32 = 26;
const PLT32: u32 = 27;
const CALL: u32 = 28;
const JUMP24: u32 = 29;
const THM_JUMP24: u32 = 30;
const BASE_ABS: u32 = 31;
const TARGET1: u32 = 38;
const V4BX: u32 = 40;
const TARGET2: u32 = 41;
const PREL31: u32 = 42;
const MOVW_ABS_NC: u32 = 43;
const MOVT_ABS: u32 = 44;
const MOVW_PREL_NC: u32 = 45;
const MOVT_PREL: u32 = 46;
const THM_MOVW_ABS_NC: u32 = 47;
const THM_MOVT_ABS: u32 = 48;
const THM_MOVW_PREL_NC: u32 = 49;
const THM_MOVT_PREL: u32 = 50;
const THM_JUMP19: u32 = 51;
const THM_JUMP6: u32 = 52;
const THM_ALU_PREL_11_0: u32 = 53;
const THM_PC12: u32 = 54;
const ABS32_NOI: u32 = 55;
const REL32_NOI: u32 = 56;
const GOT_PREL: u32 = 96;
const THM_JUMP11: u32 = 102;
const THM_JUMP8: u32 = 103;

/// Size of a veneer: Thumb entry, A32 entry, target address.
const STUB_BYTES: usize = 12;
/// Offset of the A32 entry inside a veneer.
const STUB_ARM_ENTRY: i64 = 4;

const VENEER_ADVICE: &str =
    "branch target out of reach and no veneer was reserved (veneers exist only for calls to symbols outside the extension)";
const STATE_ADVICE: &str =
    "a plain branch cannot switch between Thumb and A32 state, and no veneer was reserved for this local target";

impl Relocator for Arm {
    const MACHINE: u16 = Self::MACHINE_ID;
    const POINTER_SIZE: usize = 4;
    const STUB_SIZE: usize = STUB_BYTES;
    const STUB_ALIGN: usize = 4;

    fn name(r_type: u32) -> Option<&'static str> {
        Some(match r_type {
            NONE => "R_ARM_NONE",
            PC24 => "R_ARM_PC24",
            ABS32 => "R_ARM_ABS32",
            REL32 => "R_ARM_REL32",
            4 => "R_ARM_LDR_PC_G0",
            ABS16 => "R_ARM_ABS16",
            6 => "R_ARM_ABS12",
            7 => "R_ARM_THM_ABS5",
            ABS8 => "R_ARM_ABS8",
            9 => "R_ARM_SBREL32",
            THM_CALL => "R_ARM_THM_CALL",
            THM_PC8 => "R_ARM_THM_PC8",
            12 => "R_ARM_BREL_ADJ",
            13 => "R_ARM_TLS_DESC",
            17 => "R_ARM_TLS_DTPMOD32",
            18 => "R_ARM_TLS_DTPOFF32",
            19 => "R_ARM_TLS_TPOFF32",
            20 => "R_ARM_COPY",
            21 => "R_ARM_GLOB_DAT",
            22 => "R_ARM_JUMP_SLOT",
            23 => "R_ARM_RELATIVE",
            GOTOFF32 => "R_ARM_GOTOFF32",
            BASE_PREL => "R_ARM_BASE_PREL",
            GOT_BREL => "R_ARM_GOT_BREL",
            PLT32 => "R_ARM_PLT32",
            CALL => "R_ARM_CALL",
            JUMP24 => "R_ARM_JUMP24",
            THM_JUMP24 => "R_ARM_THM_JUMP24",
            BASE_ABS => "R_ARM_BASE_ABS",
            TARGET1 => "R_ARM_TARGET1",
            39 => "R_ARM_SBREL31",
            V4BX => "R_ARM_V4BX",
            TARGET2 => "R_ARM_TARGET2",
            PREL31 => "R_ARM_PREL31",
            MOVW_ABS_NC => "R_ARM_MOVW_ABS_NC",
            MOVT_ABS => "R_ARM_MOVT_ABS",
            MOVW_PREL_NC => "R_ARM_MOVW_PREL_NC",
            MOVT_PREL => "R_ARM_MOVT_PREL",
            THM_MOVW_ABS_NC => "R_ARM_THM_MOVW_ABS_NC",
            THM_MOVT_ABS => "R_ARM_THM_MOVT_ABS",
            THM_MOVW_PREL_NC => "R_ARM_THM_MOVW_PREL_NC",
            THM_MOVT_PREL => "R_ARM_THM_MOVT_PREL",
            THM_JUMP19 => "R_ARM_THM_JUMP19",
            THM_JUMP6 => "R_ARM_THM_JUMP6",
            THM_ALU_PREL_11_0 => "R_ARM_THM_ALU_PREL_11_0",
            THM_PC12 => "R_ARM_THM_PC12",
            ABS32_NOI => "R_ARM_ABS32_NOI",
            REL32_NOI => "R_ARM_REL32_NOI",
            95 => "R_ARM_GOT_ABS",
            GOT_PREL => "R_ARM_GOT_PREL",
            97 => "R_ARM_GOT_BREL12",
            98 => "R_ARM_GOTOFF12",
            99 => "R_ARM_GOTRELAX",
            100 => "R_ARM_GNU_VTENTRY",
            101 => "R_ARM_GNU_VTINHERIT",
            THM_JUMP11 => "R_ARM_THM_JUMP11",
            THM_JUMP8 => "R_ARM_THM_JUMP8",
            104 => "R_ARM_TLS_GD32",
            105 => "R_ARM_TLS_LDM32",
            106 => "R_ARM_TLS_LDO32",
            107 => "R_ARM_TLS_IE32",
            108 => "R_ARM_TLS_LE32",
            160 => "R_ARM_IRELATIVE",
            _ => return None,
        })
    }

    fn needs(r_type: u32) -> Needs {
        match r_type {
            GOT_BREL | GOT_PREL => Needs {
                got_slot: true,
                ..Needs::default()
            },
            CALL | JUMP24 | PC24 | PLT32 | THM_CALL | THM_JUMP24 => Needs {
                stub: true,
                ..Needs::default()
            },
            _ => Needs::default(),
        }
    }

    fn is_none(r_type: u32) -> bool {
        r_type == NONE
    }

    /// The AAELF32 relocation codes table gives these as ((S + A) | T) - P or S + A - P, and `apply`
    /// computes them from that difference and T alone. T is bit 0 of a Thumb function's value: it says which
    /// state the symbol is in, not where it lies, so it moves with the symbol. A call out of reach goes
    /// through a veneer, which only symbols outside the extension get (and the linker records anything
    /// that uses one).
    ///
    /// A Thumb `BL` to A32 code becomes `BLX`, whose offset is taken from Pa = P & ~3 (`thumb_branch`), so
    /// its bits hold only while the block moves by multiples of 4. They do: AAELF32 (section alignment) asks every
    /// section holding A32 code to be word-aligned, a block is aligned as its most aligned section, and the
    /// `BLX` target lies in the caller's block (otherwise the reference is recorded anyway). An object that
    /// breaks the rule gets A32 code at a halfword address whenever its block lands on one, which no fixup
    /// can repair. A32 branches that become `BLX` take their H bit from the offset, not from P.
    ///
    /// Left out: the Pa types (`THM_PC8`, `THM_PC12`, `THM_ALU_PREL_11_0`), since Thumb-only sections
    /// need only halfword alignment, so a block may move by 2 and carry or drop bit 1 of P; `BASE_PREL`,
    /// `GOT_PREL`, `GOT_BREL`, `GOTOFF32` and `BASE_ABS`, relative to the GOT; `TARGET1` (absolute here)
    /// and the other absolute types.
    fn writes_pointer(r_type: u32) -> bool {
        matches!(r_type, ABS32 | TARGET1)
    }

    fn max_write(_r_type: u32) -> usize {
        // Data fields and instructions: 4 bytes at most (Thumb-2 pairs of halfwords included).
        4
    }

    fn is_pc_relative(r_type: u32) -> bool {
        // Every branch and call, and the PC-relative data types.
        Self::branches(r_type)
            || matches!(
                r_type,
                REL32
                    | REL32_NOI
                    | PREL31
                    | MOVW_PREL_NC
                    | MOVT_PREL
                    | THM_MOVW_PREL_NC
                    | THM_MOVT_PREL
            )
    }

    /// The branch and call types: their target is code, so a symbol outside the object is a function whose
    /// bit 0 says Thumb. Every other type reads its address as data.
    fn branches(r_type: u32) -> bool {
        matches!(
            r_type,
            PC24 | PLT32
                | CALL
                | JUMP24
                | THM_CALL
                | THM_JUMP24
                | THM_JUMP19
                | THM_JUMP11
                | THM_JUMP8
                | THM_JUMP6
        )
    }

    fn write_stub(stub: &mut [u8], _at: u64, target: u64) -> Result<(), Problem> {
        let target = u32::try_from(target).map_err(|_| Problem::Overflow {
            value: target as i64,
            reason: "veneer target above 4 GiB",
        })?;
        let mut code = [0u8; STUB_BYTES];
        // Thumb entry: ldr.w pc, [pc, #4] (pc reads as entry + 4, so this loads entry + 8).
        code[0..2].copy_from_slice(&0xf8dfu16.to_le_bytes());
        code[2..4].copy_from_slice(&0xf004u16.to_le_bytes());
        // A32 entry: ldr pc, [pc, #-4] (pc reads as entry + 8, so this loads the same word).
        code[4..8].copy_from_slice(&0xe51f_f004u32.to_le_bytes());
        code[8..12].copy_from_slice(&target.to_le_bytes());
        field::write(stub, code)
    }

    fn implicit_addend(r_type: u32, place: &[u8]) -> Result<i64, Problem> {
        Ok(match r_type {
            NONE | V4BX => 0,
            ABS32 | REL32 | TARGET1 | TARGET2 | GOTOFF32 | BASE_PREL | GOT_BREL | BASE_ABS
            | ABS32_NOI | REL32_NOI | GOT_PREL => i64::from(read32(place)? as i32),
            // AAELF32 5.6.1.1: data addends are sign-extended from the place's width.
            PREL31 => sign_extend(u64::from(read32(place)?), 31),
            ABS16 => i64::from(read16(place)? as i16),
            ABS8 => i64::from(*place.first().ok_or(Problem::OutsideSection)? as i8),
            PC24 | PLT32 | CALL | JUMP24 => {
                let w = read32(place)?;
                let h = if w >> 28 == 0xf { (w >> 24) & 1 } else { 0 };
                sign_extend(u64::from(((w & 0x00ff_ffff) << 2) | (h << 1)), 26)
            }
            THM_CALL | THM_JUMP24 => thumb_bl_offset(read16(place)?, read16_at(place, 2)?),
            THM_JUMP19 => {
                let (hw1, hw2) = (u32::from(read16(place)?), u32::from(read16_at(place, 2)?));
                let v = (((hw1 >> 10) & 1) << 20)
                    | (((hw2 >> 11) & 1) << 19)
                    | (((hw2 >> 13) & 1) << 18)
                    | ((hw1 & 0x3f) << 12)
                    | ((hw2 & 0x7ff) << 1);
                sign_extend(u64::from(v), 21)
            }
            THM_JUMP11 => sign_extend(u64::from((read16(place)? & 0x7ff) << 1), 12),
            THM_JUMP8 => sign_extend(u64::from((read16(place)? & 0xff) << 1), 9),
            THM_JUMP6 => {
                let hw = read16(place)?;
                let imm = i64::from((((hw >> 9) & 1) << 6) | (((hw >> 3) & 0x1f) << 1));
                // AAELF32 5.6.1.1: CBZ/CBNZ addend is ((imm + 4) & 0x7f) - 4.
                ((imm + 4) & 0x7f) - 4
            }
            THM_PC8 => {
                let imm = i64::from(read16(place)? & 0xff) << 2;
                // AAELF32 5.6.1.1: Thumb LDR/ADR (literal) addend is ((imm + 4) & 0x3ff) - 4.
                ((imm + 4) & 0x3ff) - 4
            }
            THM_PC12 => {
                let (hw1, hw2) = (read16(place)?, read16_at(place, 2)?);
                let imm = i64::from(hw2 & 0xfff);
                if hw1 & 0x80 != 0 {
                    imm
                } else {
                    -imm
                }
            }
            THM_ALU_PREL_11_0 => {
                let (hw1, hw2) = (u32::from(read16(place)?), u32::from(read16_at(place, 2)?));
                let imm =
                    i64::from((((hw1 >> 10) & 1) << 11) | (((hw2 >> 12) & 7) << 8) | (hw2 & 0xff));
                if (hw1 >> 4) & 0xf == 0xa {
                    -imm
                } else {
                    imm
                }
            }
            // AAELF32 5.6.1.1: MOVW/MOVT addends are the 16-bit immediate read as signed.
            MOVW_ABS_NC | MOVT_ABS | MOVW_PREL_NC | MOVT_PREL => {
                let w = read32(place)?;
                i64::from((((w >> 4) & 0xf000) | (w & 0x0fff)) as u16 as i16)
            }
            THM_MOVW_ABS_NC | THM_MOVT_ABS | THM_MOVW_PREL_NC | THM_MOVT_PREL => {
                let (hw1, hw2) = (read16(place)?, read16_at(place, 2)?);
                i64::from(thumb_imm16(hw1, hw2) as i16)
            }
            _ => return Err(Problem::Unsupported),
        })
    }

    fn apply(i: &Inputs, place: &mut [u8]) -> Result<(), Problem> {
        // T comes from function symbols only; their address keeps it in bit 0.
        let t = if i.func { (i.s & 1) as i64 } else { 0 };
        let s = address(i.s)? - t;
        let p = address(i.p)?;
        // Addends are 32-bit on Arm (read from a 32-bit place or an Elf32_Rela): a larger one can only come
        // from a damaged context, and bounding it keeps every sum below in range.
        let a = i64::from(
            i32::try_from(i.a).map_err(|_| overflow(i.a, "addend does not fit 32 bits"))?,
        );
        // (S + A) | T: the formula of every type that may address code.
        let sa = (s + a) | t;
        let slot = || i.got_slot.ok_or(Problem::Internal).and_then(address);
        match i.r_type {
            NONE | V4BX => Ok(()),
            // AAELF32 5.6.1 table: ABS32 and TARGET1 (absolute on this platform) are (S + A) | T.
            ABS32 | TARGET1 | ABS32_NOI => write32(place, sa),
            // AAELF32 5.6.1 table: REL32 is ((S + A) | T) - P.
            REL32 | REL32_NOI => write32(place, sa - p),
            // AAELF32 5.6.1 table: GOTOFF32 is ((S + A) | T) - GOT_ORG.
            GOTOFF32 => write32(place, sa - address(i.got)?),
            // AAELF32 5.6.1 table: BASE_PREL is B(S) + A - P, B(S) being the GOT origin.
            BASE_PREL => write32(place, address(i.got)? + a - p),
            // AAELF32 5.6.1 table: BASE_ABS is B(S) + A.
            BASE_ABS => write32(place, address(i.got)? + a),
            // AAELF32 5.6.1 table: GOT_BREL is GOT(S) + A - GOT_ORG.
            GOT_BREL => write32(place, slot()? + a - address(i.got)?),
            // AAELF32 5.6.1 table: GOT_PREL is GOT(S) + A - P.
            GOT_PREL => write32(place, slot()? + a - p),
            ABS16 => {
                // AAELF32 5.6.1 table: ABS16 is S + A, checked to fit 16 bits signed or unsigned.
                if !(-0x8000..=0xffff).contains(&(s + a)) {
                    return Err(overflow(s + a, "value does not fit 16 bits"));
                }
                field::write(place, ((s + a) as u16).to_le_bytes())
            }
            ABS8 => {
                // AAELF32 5.6.1 table: ABS8 is S + A, checked to fit 8 bits signed or unsigned.
                if !(-0x80..=0xff).contains(&(s + a)) {
                    return Err(overflow(s + a, "value does not fit 8 bits"));
                }
                field::write(place, [(s + a) as u8])
            }
            PREL31 => {
                // AAELF32 5.6.1 table: PREL31 is ((S + A) | T) - P in 31 bits, bit 31 kept.
                let v = sa - p;
                if !field::fits_signed(v, 31) {
                    return Err(overflow(v, "target out of ±1 GiB reach of PREL31"));
                }
                let old = read32(place)?;
                write32(
                    place,
                    i64::from((old & 0x8000_0000) | (v as u32 & 0x7fff_ffff)),
                )
            }
            CALL | JUMP24 | PC24 | PLT32 => arm_branch(i, s, t, p, place),
            THM_CALL | THM_JUMP24 => thumb_branch(i, s, t, p, place),
            THM_JUMP19 => {
                // AAELF32 5.6.1 table: THM_JUMP19 is ((S + A) | T) - P, 21-bit B<c>.W.
                let v = sa - p;
                if i.func && t == 0 {
                    return Err(overflow(v, STATE_ADVICE));
                }
                let v = v & !1;
                if !field::fits_signed(v, 21) {
                    return Err(overflow(v, "conditional branch target out of ±1 MiB reach"));
                }
                let (hw1, hw2) = (read16(place)?, read16_at(place, 2)?);
                let u = v as u32;
                let hw1 = (u32::from(hw1) & 0xfbc0) | (((u >> 20) & 1) << 10) | ((u >> 12) & 0x3f);
                let hw2 = (u32::from(hw2) & 0xd000)
                    | (((u >> 18) & 1) << 13)
                    | (((u >> 19) & 1) << 11)
                    | ((u >> 1) & 0x7ff);
                write_thumb32(place, hw1 as u16, hw2 as u16)
            }
            THM_JUMP11 => {
                // AAELF32 5.6.1 table: THM_JUMP11 is S + A - P, 12-bit B.
                let v = s + a - p;
                if !field::fits_signed(v & !1, 12) {
                    return Err(overflow(v, "branch target out of ±2 KiB reach"));
                }
                let hw = read16(place)?;
                write16(place, (hw & 0xf800) | (((v >> 1) as u16) & 0x7ff))
            }
            THM_JUMP8 => {
                // AAELF32 5.6.1 table: THM_JUMP8 is S + A - P, 9-bit B<c>.
                let v = s + a - p;
                if !field::fits_signed(v & !1, 9) {
                    return Err(overflow(v, "branch target out of ±256 byte reach"));
                }
                let hw = read16(place)?;
                write16(place, (hw & 0xff00) | (((v >> 1) as u16) & 0xff))
            }
            THM_JUMP6 => {
                // AAELF32 5.6.1 table: THM_JUMP6 is S + A - P, forward-only CBZ/CBNZ.
                let v = (s + a - p) & !1;
                if !(0..=126).contains(&v) {
                    return Err(overflow(v, "CBZ/CBNZ target must lie 0..126 bytes ahead"));
                }
                let hw = read16(place)?;
                let v = v as u16;
                write16(
                    place,
                    (hw & 0xfd07) | (((v >> 6) & 1) << 9) | (((v >> 1) & 0x1f) << 3),
                )
            }
            THM_PC8 => {
                // AAELF32 5.6.1 table: THM_PC8 is S + A - Pa, a word offset of 0..1020.
                let v = s + a - (p & !3);
                if !(0..=1020).contains(&v) || v & 3 != 0 {
                    return Err(overflow(
                        v,
                        "literal must lie 0..1020 bytes ahead, word-aligned",
                    ));
                }
                let hw = read16(place)?;
                write16(place, (hw & 0xff00) | ((v >> 2) as u16))
            }
            THM_PC12 => {
                // AAELF32 5.6.1 table: THM_PC12 is S + A - Pa, 12-bit magnitude with an up/down bit.
                let v = s + a - (p & !3);
                if v.unsigned_abs() > 0xfff {
                    return Err(overflow(v, "literal out of ±4 KiB reach"));
                }
                let (hw1, hw2) = (read16(place)?, read16_at(place, 2)?);
                let up = if v >= 0 { 0x80 } else { 0 };
                let hw1 = (hw1 & !0x80) | up;
                let hw2 = (hw2 & 0xf000) | (v.unsigned_abs() as u16);
                write_thumb32(place, hw1, hw2)
            }
            THM_ALU_PREL_11_0 => {
                // AAELF32 5.6.1 table: THM_ALU_PREL_11_0 is ((S + A) | T) - Pa for ADR.W (ADDW/SUBW pc).
                let v = sa - (p & !3);
                if v.unsigned_abs() > 0xfff {
                    return Err(overflow(v, "address out of ±4 KiB reach of ADR.W"));
                }
                let (hw1, hw2) = (u32::from(read16(place)?), u32::from(read16_at(place, 2)?));
                if hw1 & 0xfb4f != 0xf20f {
                    return Err(Problem::Invalid {
                        value: i64::from(hw1),
                        reason: "THM_ALU_PREL_11_0 does not patch an ADR.W (ADDW/SUBW from pc)",
                    });
                }
                let m = v.unsigned_abs() as u32;
                let op = if v < 0 { 0xa0 } else { 0 };
                let hw1 = (hw1 & !0x04f0) | (((m >> 11) & 1) << 10) | op;
                let hw2 = (hw2 & 0x8f00) | (((m >> 8) & 7) << 12) | (m & 0xff);
                write_thumb32(place, hw1 as u16, hw2 as u16)
            }
            // AAELF32 5.6.1 table: MOVW_ABS_NC is (S + A) | T, low half.
            MOVW_ABS_NC => arm_mov(place, sa),
            // AAELF32 5.6.1 table: MOVT_ABS is S + A, high half.
            MOVT_ABS => arm_mov(place, (s + a) >> 16),
            // AAELF32 5.6.1 table: MOVW_PREL_NC is ((S + A) | T) - P, low half.
            MOVW_PREL_NC => arm_mov(place, sa - p),
            // AAELF32 5.6.1 table: MOVT_PREL is S + A - P, high half.
            MOVT_PREL => arm_mov(place, (s + a - p) >> 16),
            // AAELF32 5.6.1 table: THM_MOVW_ABS_NC is (S + A) | T, low half.
            THM_MOVW_ABS_NC => thumb_mov(place, sa),
            // AAELF32 5.6.1 table: THM_MOVT_ABS is S + A, high half.
            THM_MOVT_ABS => thumb_mov(place, (s + a) >> 16),
            // AAELF32 5.6.1 table: THM_MOVW_PREL_NC is ((S + A) | T) - P, low half.
            THM_MOVW_PREL_NC => thumb_mov(place, sa - p),
            // AAELF32 5.6.1 table: THM_MOVT_PREL is S + A - P, high half.
            THM_MOVT_PREL => thumb_mov(place, (s + a - p) >> 16),
            _ => Err(Problem::Unsupported),
        }
    }
}

/// A32 `B`/`BL`/`BLX` (immediate): ±32 MiB, BL to a Thumb function becomes BLX.
fn arm_branch(i: &Inputs, s: i64, t: i64, p: i64, place: &mut [u8]) -> Result<(), Problem> {
    let w = read32(place)?;
    let cond = w >> 28;
    if i.absent {
        // A branch to an absent (undefined weak) function, which the caller checks for, becomes a NOP (of
        // the same condition) as GNU ld links it: there is nothing to call and no veneer is needed.
        let cond = if cond == 0xf { 0xe } else { cond };
        return write32(place, i64::from((cond << 28) | 0x0320_f000));
    }
    let was_blx = cond == 0xf;
    let link = was_blx || (w >> 24) & 1 == 1;
    // Only an unconditional BL may turn into BLX (and back).
    let can_switch = link && (cond == 0xe || was_blx);
    // AAELF32 5.6.1 table: CALL, JUMP24, PC24, PLT32 are ((S + A) | T) - P.
    let v = ((s + i.a) | t) - p;
    // Only function symbols say which state they are in; for others keep the instruction's.
    let to_thumb = if i.func { t == 1 } else { was_blx };
    let veneer = i.stub.map(address).transpose()?;
    let (offset, to_thumb) = if field::fits_signed(v & !1, 26) && (!to_thumb || can_switch) {
        (v & !1, to_thumb)
    } else if let Some(stub) = veneer {
        // The veneer's A32 entry: a B or BL to it stays in A32 state.
        (stub + STUB_ARM_ENTRY + i.a - p, false)
    } else if to_thumb && !can_switch {
        return Err(overflow(v, STATE_ADVICE));
    } else {
        return Err(overflow(v, VENEER_ADVICE));
    };
    if !field::fits_signed(offset, 26) {
        return Err(overflow(offset, "veneer out of ±32 MiB reach"));
    }
    let imm24 = (offset as u32 >> 2) & 0x00ff_ffff;
    let insn = if to_thumb {
        // BLX (immediate): H carries bit 1 of the halfword-aligned offset.
        0xfa00_0000 | (((offset as u32 >> 1) & 1) << 24) | imm24
    } else {
        if offset & 3 != 0 {
            return Err(overflow(offset, "A32 branch target is not word-aligned"));
        }
        let cond = if was_blx { 0xe } else { cond };
        (cond << 28) | 0x0a00_0000 | (u32::from(link) << 24) | imm24
    };
    write32(place, i64::from(insn))
}

/// Thumb-2 `BL`/`BLX`/`B.W`: ±16 MiB, BL to an A32 function becomes BLX, out of reach goes through the veneer.
fn thumb_branch(i: &Inputs, s: i64, t: i64, p: i64, place: &mut [u8]) -> Result<(), Problem> {
    let (hw1, hw2) = (read16(place)?, read16_at(place, 2)?);
    // BL (hw2 11x1), BLX (11x0) or B.W (10x1); on a restore, the NOP.W an earlier link made of one.
    let branch = hw1 & 0xf800 == 0xf000 && matches!(hw2 & 0xd000, 0xd000 | 0xc000 | 0x9000);
    let nop = (hw1, hw2) == (0xf3af, 0x8000) && i.relink;
    if !branch && !nop {
        return Err(Problem::Invalid {
            value: i64::from(hw1),
            reason: "THM_CALL/THM_JUMP24 does not patch a 32-bit Thumb branch",
        });
    }
    if i.absent {
        // A branch to an absent (undefined weak) function, which the caller checks for, becomes NOP.W as
        // GNU ld links it.
        return write_thumb32(place, 0xf3af, 0x8000);
    }
    if nop {
        return Err(Problem::Invalid {
            value: i64::from(hw1),
            reason: "a NOP.W for an absent function, whose symbol is now present",
        });
    }
    let call = i.r_type == THM_CALL;
    let was_blx = call && hw2 & 0x1000 == 0;
    // AAELF32 5.6.1 table: THM_CALL and THM_JUMP24 are ((S + A) | T) - P.
    let v = ((s + i.a) | t) - p;
    // Only function symbols say which state they are in; for others keep the instruction's.
    let to_arm = if i.func { t == 0 } else { was_blx };
    let veneer = i.stub.map(address).transpose()?;
    // BLX aligns the PC down to a word, so its offset is taken from Align(P + 4, 4).
    let blx_offset = (v & !1) + (p & 2);
    let (offset, link_to_arm) = if !to_arm && field::fits_signed(v & !1, 25) {
        (v & !1, false)
    } else if to_arm && call && field::fits_signed(blx_offset, 25) {
        if blx_offset & 3 != 0 {
            return Err(overflow(blx_offset, "A32 call target is not word-aligned"));
        }
        (blx_offset, true)
    } else if let Some(stub) = veneer {
        // The veneer's Thumb entry: a BL or B.W to it stays in Thumb state.
        ((stub + i.a - p) & !1, false)
    } else if to_arm && !call {
        return Err(overflow(v, STATE_ADVICE));
    } else {
        return Err(overflow(v, VENEER_ADVICE));
    };
    if !field::fits_signed(offset, 25) {
        return Err(overflow(offset, "veneer out of ±16 MiB reach"));
    }
    let u = offset as u32;
    let sign = (u >> 24) & 1;
    let j1 = (!((u >> 23) ^ sign)) & 1;
    let j2 = (!((u >> 22) ^ sign)) & 1;
    let new1 = 0xf000 | (sign << 10) | ((u >> 12) & 0x3ff);
    let kind = if !call {
        0x9000 // B.W
    } else if link_to_arm {
        0xc000 // BLX
    } else {
        0xd000 // BL
    };
    let new2 = kind | (j1 << 13) | (j2 << 11) | ((u >> 1) & 0x7ff);
    write_thumb32(place, new1 as u16, new2 as u16)
}

/// The offset of a Thumb-2 BL/BLX/B.W: S:I1:I2:imm10:imm11:0, I = NOT(J XOR S).
fn thumb_bl_offset(hw1: u16, hw2: u16) -> i64 {
    let (hw1, hw2) = (u32::from(hw1), u32::from(hw2));
    let sign = (hw1 >> 10) & 1;
    let i1 = (!((hw2 >> 13) ^ sign)) & 1;
    let i2 = (!((hw2 >> 11) ^ sign)) & 1;
    let v = (sign << 24) | (i1 << 23) | (i2 << 22) | ((hw1 & 0x3ff) << 12) | ((hw2 & 0x7ff) << 1);
    sign_extend(u64::from(v), 25)
}

/// The imm16 of a Thumb MOVW/MOVT: imm4:i:imm3:imm8.
fn thumb_imm16(hw1: u16, hw2: u16) -> u16 {
    ((hw1 & 0xf) << 12) | (((hw1 >> 10) & 1) << 11) | (((hw2 >> 12) & 7) << 8) | (hw2 & 0xff)
}

fn arm_mov(place: &mut [u8], v: i64) -> Result<(), Problem> {
    let w = read32(place)?;
    if w & 0x0ff0_0000 != 0x0300_0000 && w & 0x0ff0_0000 != 0x0340_0000 {
        return Err(Problem::Invalid {
            value: i64::from(w),
            reason: "MOVW/MOVT relocation does not patch an A32 MOVW or MOVT",
        });
    }
    let v = v as u32 & 0xffff;
    write32(
        place,
        i64::from((w & 0xfff0_f000) | ((v & 0xf000) << 4) | (v & 0x0fff)),
    )
}

fn thumb_mov(place: &mut [u8], v: i64) -> Result<(), Problem> {
    let (hw1, hw2) = (read16(place)?, read16_at(place, 2)?);
    if hw1 & 0xfb70 != 0xf240 {
        return Err(Problem::Invalid {
            value: i64::from(hw1),
            reason: "THM_MOVW/THM_MOVT relocation does not patch a Thumb MOVW or MOVT",
        });
    }
    let v = v as u16;
    let hw1 = (hw1 & 0xfbf0) | (v >> 12) | (((v >> 11) & 1) << 10);
    let hw2 = (hw2 & 0x8f00) | (((v >> 8) & 7) << 12) | (v & 0xff);
    write_thumb32(place, hw1, hw2)
}

/// Arm addresses are 32 bits: anything else (e.g. a host buffer above 4 GiB) cannot be encoded.
fn address(v: u64) -> Result<i64, Problem> {
    if v > u64::from(u32::MAX) {
        return Err(overflow(
            v as i64,
            "address above 4 GiB: load 32-bit Arm objects into memory below 4 GiB",
        ));
    }
    Ok(v as i64)
}

fn overflow(value: i64, reason: &'static str) -> Problem {
    Problem::Overflow { value, reason }
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn read16(place: &[u8]) -> Result<u16, Problem> {
    read16_at(place, 0)
}

fn read16_at(place: &[u8], at: usize) -> Result<u16, Problem> {
    let b = place.get(at..at + 2).ok_or(Problem::OutsideSection)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn read32(place: &[u8]) -> Result<u32, Problem> {
    let b = place.get(..4).ok_or(Problem::OutsideSection)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn write16(place: &mut [u8], v: u16) -> Result<(), Problem> {
    field::write(place, v.to_le_bytes())
}

/// Writes the low 32 bits: AAELF32 computes every expression modulo 2^32.
fn write32(place: &mut [u8], v: i64) -> Result<(), Problem> {
    field::write(place, (v as u32).to_le_bytes())
}

fn write_thumb32(place: &mut [u8], hw1: u16, hw2: u16) -> Result<(), Problem> {
    let [a, b] = hw1.to_le_bytes();
    let [c, d] = hw2.to_le_bytes();
    field::write(place, [a, b, c, d])
}

/// The numeric build attributes of an Arm file that the loader reads (`.ARM.attributes`, the `aeabi`
/// subsection's Tag_File; Addenda to the ABI for the Arm architecture, "Build attributes"), 0 where absent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FileAttributes {
    /// Tag_CPU_arch_profile (7): `A`, `R`, `M`, `S` (A or R), or 0.
    pub profile: u64,
    /// Tag_ABI_FP_number_model (23): 0 if the file uses no floating point.
    fp_model: u64,
    /// Tag_ABI_VFP_args (28): 0 base standard, 1 VFP registers, 2 toolchain-specific, 3 compatible.
    vfp_args: u64,
    /// Tag_CPU_arch (6): 10 v7, 11 v6-M, 12 v6S-M, 13 v7E-M, 16 v8-M.base, 17 v8-M.main, 21 v8.1-M.main, ...
    pub cpu_arch: u64,
    /// Tag_FP_arch (10): 0 no FP instructions, otherwise the FP architecture.
    pub fp_arch: u64,
    /// Tag_ABI_HardFP_use (27): 1 single precision only.
    pub hardfp_use: u64,
    /// Tag_DSP_extension (46): 1 DSP instructions allowed.
    pub dsp: u64,
    /// Tag_MVE_arch (48): 1 integer MVE, 2 integer and floating-point MVE.
    pub mve: u64,
}

/// The object's file attributes: read once per object (the float-ABI, profile and instruction-set checks
/// of a load all ask).
pub(crate) fn file_attributes(object: &crate::elf::Object<'_>) -> Option<FileAttributes> {
    *object
        .arm_attributes
        .get_or_init(|| read_file_attributes(object))
}

fn read_file_attributes(object: &crate::elf::Object<'_>) -> Option<FileAttributes> {
    let mut reader =
        super::file_attributes_reader(object, object::elf::SHT_ARM_ATTRIBUTES.0, b"aeabi")?;
    let mut found = FileAttributes::default();
    while let Some(tag) = reader.read_tag().ok()? {
        // "Build attributes": tags 4, 5 and 67 take a string, 32 a number and a string, 65 a
        // string; the other tags below 32 a number; from 32 on, odd tags a string, even a number.
        match tag {
            4 | 5 | 65 | 67 => {
                reader.read_string().ok()?;
            }
            32 => {
                reader.read_integer().ok()?;
                reader.read_string().ok()?;
            }
            t if t >= 32 && t % 2 == 1 => {
                reader.read_string().ok()?;
            }
            t => {
                let value = reader.read_integer().ok()?;
                match t {
                    6 => found.cpu_arch = value,
                    7 => found.profile = value,
                    10 => found.fp_arch = value,
                    23 => found.fp_model = value,
                    27 => found.hardfp_use = value,
                    28 => found.vfp_args = value,
                    46 => found.dsp = value,
                    48 => found.mve = value,
                    _ => {}
                }
            }
        }
    }
    Some(found)
}

/// The floating-point calling convention an Arm object's build attributes give (`Tag_ABI_VFP_args`):
/// relocatable objects say it there, not in `e_flags`. `None` if the object has no such section, uses no
/// floating point (Tag_ABI_FP_number_model 0, e.g. assembly: GNU ld ignores the convention then), says
/// "toolchain-specific" or "compatible with both", or the section cannot be read (the convention is
/// advisory: the link does not depend on it).
pub(crate) fn attributes_float_abi(object: &crate::elf::Object<'_>) -> Option<super::FloatAbi> {
    let a = file_attributes(object)?;
    match a.vfp_args {
        _ if a.fp_model == 0 => None,
        0 => Some(super::FloatAbi::Soft),
        1 => Some(super::FloatAbi::Vfp),
        _ => None,
    }
}

/// The architecture profile an Arm file's build attributes give (`A`, `R`, `M`, or `S` for A or R).
pub(crate) fn attributes_profile(object: &crate::elf::Object<'_>) -> Option<char> {
    let profile = file_attributes(object)?.profile;
    u8::try_from(profile)
        .ok()
        .filter(|p| p.is_ascii_uppercase())
        .map(char::from)
}

/// The first executable section holding A32 (Arm-state) code, which M-profile cores cannot run: one where
/// a mapping symbol `$a` (or clang's `$a.N`) starts code (AAELF32, "Mapping symbols").
pub(crate) fn arm_state_section(object: &crate::elf::Object<'_>) -> Option<usize> {
    object.symbols.iter().find_map(|sym| {
        let crate::elf::SymbolPlace::Section(index) = sym.place else {
            return None;
        };
        let mapping = sym.name == b"$a" || sym.name.starts_with(b"$a.");
        let code = object
            .sections
            .get(index)
            .is_some_and(|s| s.flags & object::elf::SHF_EXECINSTR.0 != 0);
        (mapping && code).then_some(index)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(r_type: u32, s: u64, a: i64, p: u64) -> Inputs {
        Inputs {
            func: true,
            ..Inputs::plain(r_type, s, a, p)
        }
    }

    fn thumb32(hw1: u16, hw2: u16) -> [u8; 4] {
        let mut b = [0u8; 4];
        write_thumb32(&mut b, hw1, hw2).unwrap();
        b
    }

    /// Applies with the addend read from the place, as the linker does for REL.
    fn relocate(mut i: Inputs, place: &mut [u8]) -> Result<(), Problem> {
        i.a = Arm::implicit_addend(i.r_type, place)?;
        Arm::apply(&i, place)
    }

    #[test]
    fn thumb_bl_addend_and_range_edges() {
        // `bl .` as assemblers emit it: f7ff fffe, addend -4.
        let bl = thumb32(0xf7ff, 0xfffe);
        assert_eq!(Arm::implicit_addend(THM_CALL, &bl), Ok(-4));
        let p = 0x2000_0000u64;
        // Farthest forward Thumb target: P + 4 + 16 MiB - 2.
        let mut place = bl;
        relocate(inputs(THM_CALL, p + 4 + 0xff_fffe + 1, 0, p), &mut place).unwrap();
        let (h1, h2) = (read16(&place).unwrap(), read16_at(&place, 2).unwrap());
        assert_eq!(thumb_bl_offset(h1, h2), 0xff_fffe);
        assert_eq!(h2 & 0xd000, 0xd000, "stays a BL");
        // One halfword further is out of reach and, without a veneer, an error.
        let mut place = bl;
        let r = relocate(inputs(THM_CALL, p + 4 + 0x100_0000 + 1, 0, p), &mut place);
        assert!(matches!(r, Err(Problem::Overflow { .. })));
        // Farthest backward: P + 4 - 16 MiB.
        let mut place = bl;
        relocate(inputs(THM_CALL, p + 4 - 0x100_0000 + 1, 0, p), &mut place).unwrap();
        let (h1, h2) = (read16(&place).unwrap(), read16_at(&place, 2).unwrap());
        assert_eq!(thumb_bl_offset(h1, h2), -0x100_0000);
    }

    #[test]
    fn branches_to_address_zero_become_nops() {
        // An undefined weak function is 0: a Thumb BL or B.W to it is NOP.W, an A32 BL a NOP of the same
        // condition (BLX: always), as GNU ld links them, whatever veneer was reserved.
        let absent = |r_type, p| Inputs {
            absent: true,
            ..inputs(r_type, 0, 0, p)
        };
        for (r_type, hw1, hw2) in [(THM_CALL, 0xf7ff, 0xfffe), (THM_JUMP24, 0xf7ff, 0xbffe)] {
            let mut place = thumb32(hw1, hw2);
            let mut i = absent(r_type, 0x2000_0000);
            i.stub = Some(0x2000_0400);
            relocate(i, &mut place).unwrap();
            assert_eq!(place, thumb32(0xf3af, 0x8000));
            // The NOP.W links the same way again (a restore elsewhere).
            let again = Inputs {
                relink: true,
                ..absent(r_type, 0x3000_0000)
            };
            relocate(again, &mut place).unwrap();
            assert_eq!(place, thumb32(0xf3af, 0x8000));
        }
        // In an object, a NOP.W (or any other instruction than BL, BLX and B.W) is no branch.
        for (hw1, hw2) in [(0xf3af, 0x8000), (0xf000, 0x8000), (0xf7ff, 0xaffe)] {
            let mut place = thumb32(hw1, hw2);
            let r = relocate(absent(THM_CALL, 0x2000_0000), &mut place);
            assert!(
                matches!(r, Err(Problem::Invalid { .. })),
                "{hw1:#x} {hw2:#x}"
            );
        }
        // A function that is there, even at address 0, is branched to.
        let mut place = thumb32(0xf7ff, 0xfffe);
        let mut i = inputs(THM_CALL, 1, 0, 0x2000_0000);
        i.stub = Some(0x2000_0400);
        i.func = true;
        relocate(i, &mut place).unwrap();
        let (h1, h2) = (read16(&place).unwrap(), read16_at(&place, 2).unwrap());
        assert_eq!(0x2000_0000 + 4 + thumb_bl_offset(h1, h2), 0x2000_0400);
        for (insn, nop) in [
            (0xebfe_fffeu32, 0xe320_f000u32), // bl .
            (0x1bfe_fffe, 0x1320_f000),       // blne .
            (0xfafe_fffe, 0xe320_f000),       // blx .
        ] {
            let mut place = insn.to_le_bytes();
            relocate(absent(CALL, 0x2000_0000), &mut place).unwrap();
            assert_eq!(u32::from_le_bytes(place), nop, "{insn:#x}");
        }
    }

    #[test]
    fn thumb_bl_to_flash_goes_through_the_veneer() {
        let p = 0x2000_0100u64;
        let stub = 0x2000_0400u64;
        let mut place = thumb32(0xf7ff, 0xfffe);
        let mut i = inputs(THM_CALL, 0x0000_1235, 0, p);
        i.stub = Some(stub);
        relocate(i, &mut place).unwrap();
        let (h1, h2) = (read16(&place).unwrap(), read16_at(&place, 2).unwrap());
        assert_eq!(p as i64 + 4 + thumb_bl_offset(h1, h2), stub as i64);
        assert_eq!(h2 & 0xd000, 0xd000, "a BL to the veneer's Thumb entry");
        // The veneer loads the full target, Thumb bit included.
        let mut code = [0u8; STUB_BYTES];
        Arm::write_stub(&mut code, stub, 0x1235).unwrap();
        assert_eq!(&code[..4], &thumb32(0xf8df, 0xf004));
        assert_eq!(
            u32::from_le_bytes([code[8], code[9], code[10], code[11]]),
            0x1235
        );
    }

    #[test]
    fn thumb_bl_to_arm_becomes_blx_with_aligned_offset() {
        let p = 0x1002u64; // halfword- but not word-aligned
        let mut place = thumb32(0xf7ff, 0xfffe);
        relocate(inputs(THM_CALL, 0x2000, 0, p), &mut place).unwrap();
        let (h1, h2) = (read16(&place).unwrap(), read16_at(&place, 2).unwrap());
        assert_eq!(h2 & 0xd000, 0xc000, "BLX");
        // BLX target = Align(P + 4, 4) + offset.
        assert_eq!(((p + 4) & !3) as i64 + thumb_bl_offset(h1, h2), 0x2000);
    }

    #[test]
    fn thumb_b_w_to_arm_without_veneer_is_refused() {
        let mut place = thumb32(0xf7ff, 0xbffe);
        let r = relocate(inputs(THM_JUMP24, 0x2000, 0, 0x1000), &mut place);
        assert!(matches!(r, Err(Problem::Overflow { reason, .. }) if reason == STATE_ADVICE));
    }

    #[test]
    fn arm_bl_to_thumb_becomes_blx_and_far_calls_use_the_a32_entry() {
        let bl = 0xebff_fffeu32.to_le_bytes(); // bl . (addend -8)
        assert_eq!(Arm::implicit_addend(CALL, &bl), Ok(-8));
        let mut place = bl;
        relocate(inputs(CALL, 0x1003, 0, 0x1000), &mut place).unwrap();
        let w = read32(&place).unwrap();
        assert_eq!(w >> 25, 0x7d, "BLX (immediate)");
        let offset =
            sign_extend(u64::from(w & 0xff_ffff) << 2, 26) + i64::from(((w >> 24) & 1) << 1);
        assert_eq!(0x1000 + 8 + offset, 0x1002);
        let mut place = bl;
        let mut i = inputs(CALL, 0x0800_0001, 0, 0x2000_0000);
        i.stub = Some(0x2000_1000);
        relocate(i, &mut place).unwrap();
        let w = read32(&place).unwrap();
        assert_eq!(w >> 24, 0xeb, "BL");
        assert_eq!(0x2000_0008 + ((w & 0xff_ffff) << 2), 0x2000_1004);
    }

    #[test]
    fn movw_movt_split_and_reassemble() {
        // movw r0, #0 ; movt r0, #0 (Thumb)
        let mut lo = thumb32(0xf240, 0x0000);
        let mut hi = thumb32(0xf2c0, 0x0000);
        relocate(inputs(THM_MOVW_ABS_NC, 0x2345_6789, 0, 0), &mut lo).unwrap();
        relocate(inputs(THM_MOVT_ABS, 0x2345_6789, 0, 0), &mut hi).unwrap();
        let lo16 = thumb_imm16(read16(&lo).unwrap(), read16_at(&lo, 2).unwrap());
        let hi16 = thumb_imm16(read16(&hi).unwrap(), read16_at(&hi, 2).unwrap());
        assert_eq!((u32::from(hi16) << 16) | u32::from(lo16), 0x2345_6789);
        // The stored immediate is a signed addend for both.
        let with_addend = thumb32(0xf6cf, 0x70fc); // movt r0, #0xfffc
        assert_eq!(Arm::implicit_addend(THM_MOVT_ABS, &with_addend), Ok(-4));
        // A32 forms.
        let mut w = 0xe300_0000u32.to_le_bytes(); // movw r0, #0
        relocate(inputs(MOVW_ABS_NC, 0xabcd_1234, 0, 0), &mut w).unwrap();
        assert_eq!(read32(&w).unwrap(), 0xe301_0234);
        let mut w = 0xe340_0000u32.to_le_bytes(); // movt r0, #0
        relocate(inputs(MOVT_ABS, 0xabcd_1234, 0, 0), &mut w).unwrap();
        assert_eq!(read32(&w).unwrap(), 0xe34a_0bcd);
    }

    #[test]
    fn mov_relocation_on_another_instruction_is_refused() {
        let mut place = thumb32(0xf7ff, 0xfffe);
        let r = relocate(inputs(THM_MOVW_ABS_NC, 0x1234, 0, 0), &mut place);
        assert!(matches!(r, Err(Problem::Invalid { .. })));
    }

    #[test]
    fn prel31_keeps_bit_31_and_checks_range() {
        let mut place = 0x8000_0000u32.to_le_bytes();
        relocate(inputs(PREL31, 0x1000, 0, 0x2000), &mut place).unwrap();
        assert_eq!(read32(&place).unwrap(), 0x8000_0000 | (0x7fff_f000));
        let mut place = 0u32.to_le_bytes();
        let r = relocate(inputs(PREL31, 0x4000_0000, 0, 0), &mut place);
        assert!(matches!(r, Err(Problem::Overflow { .. })));
    }

    #[test]
    fn short_thumb_branches_and_literals() {
        // b.n . : e7fe (addend -4)
        let mut place = 0xe7feu16.to_le_bytes();
        assert_eq!(Arm::implicit_addend(THM_JUMP11, &place), Ok(-4));
        relocate(inputs(THM_JUMP11, 0x1000 + 4 + 2046, 0, 0x1000), &mut place).unwrap();
        assert_eq!(read16(&place).unwrap(), 0xe000 | 1023);
        let mut place = 0xe7feu16.to_le_bytes();
        assert!(relocate(inputs(THM_JUMP11, 0x1000 + 4 + 2048, 0, 0x1000), &mut place).is_err());
        // beq.n . : d0fe
        let mut place = 0xd0feu16.to_le_bytes();
        relocate(inputs(THM_JUMP8, 0x1000 + 4 - 256, 0, 0x1000), &mut place).unwrap();
        assert_eq!(read16(&place).unwrap(), 0xd080);
        // ldr r0, [pc, #x] with the REL addend convention ((imm + 4) & 0x3ff) - 4.
        let mut place = 0x48ffu16.to_le_bytes();
        assert_eq!(Arm::implicit_addend(THM_PC8, &place), Ok(-4));
        relocate(inputs(THM_PC8, 0x1008, 0, 0x1002), &mut place).unwrap();
        // Pa = 0x1000, PC = Pa + 4: literal at PC + 4 → imm8 = 1.
        assert_eq!(read16(&place).unwrap(), 0x4801);
        // cbz r0, . (0xb100 + addend -4 encoded as imm 0x7c): forward only.
        let mut place = 0xb3f0u16.to_le_bytes();
        assert_eq!(Arm::implicit_addend(THM_JUMP6, &place), Ok(-4));
        assert!(relocate(inputs(THM_JUMP6, 0x0ffe, 0, 0x1000), &mut place).is_err());
    }

    #[test]
    fn got_relative_words() {
        let mut place = 0u32.to_le_bytes();
        let mut i = inputs(GOT_PREL, 0x500, 0, 0x1000);
        i.got_slot = Some(0x2008);
        i.got = 0x2000;
        Arm::apply(&i, &mut place).unwrap();
        assert_eq!(read32(&place).unwrap(), 0x1008);
        i.r_type = GOT_BREL;
        Arm::apply(&i, &mut place).unwrap();
        assert_eq!(read32(&place).unwrap(), 8);
        i.r_type = BASE_PREL;
        i.a = -8;
        Arm::apply(&i, &mut place).unwrap();
        assert_eq!(read32(&place).unwrap(), 0x2000 - 8 - 0x1000);
    }

    /// What `is_pc_relative` promises the linker: moving place and target together leaves the patched bits
    /// as they were, by any even distance for Thumb places and by multiples of 4 for A32 places and for a
    /// Thumb `BL` that reaches A32 code (both live in word-aligned sections). The Pa types and absolute
    /// types break that promise.
    #[test]
    fn pc_relative_types_keep_their_bits_when_place_and_target_move_together() {
        // The instruction patched for each type, and whether the target is Thumb code (T = 1).
        let template = |r_type: u32| -> ([u8; 4], bool) {
            let a32 = |w: u32| w.to_le_bytes();
            match r_type {
                REL32 | REL32_NOI | PREL31 => ([0; 4], true),
                PC24 | PLT32 | CALL => (a32(0xeb00_0000), false), // bl
                JUMP24 => (a32(0xea00_0000), false),              // b
                MOVW_PREL_NC => (a32(0xe300_0000), true),         // movw r0, #0
                MOVT_PREL => (a32(0xe340_0000), true),            // movt r0, #0
                THM_CALL => (thumb32(0xf000, 0xd000), true),      // bl
                THM_JUMP24 => (thumb32(0xf000, 0x9000), true),    // b.w
                THM_JUMP19 => (thumb32(0xf000, 0x8000), true),    // beq.w
                THM_JUMP11 => (thumb32(0xe000, 0), true),         // b.n (second halfword unused)
                THM_JUMP8 => (thumb32(0xd000, 0), true),          // beq.n
                THM_JUMP6 => (thumb32(0xb100, 0), true),          // cbz r0
                THM_MOVW_PREL_NC => (thumb32(0xf240, 0x0000), true),
                THM_MOVT_PREL => (thumb32(0xf2c0, 0x0000), true),
                _ => panic!("no test instruction for {:?}", Arm::name(r_type)),
            }
        };
        let apply = |r_type: u32, mut place: [u8; 4], s: u64, p: u64| {
            Arm::apply(&inputs(r_type, s, 0, p), &mut place).map(|()| place)
        };
        let p = 0x2000_0ff0u64;
        let types = || (0..256).filter(|&t| Arm::is_pc_relative(t));
        assert_eq!(types().count(), 17);
        for r_type in types() {
            let (place, thumb_target) = template(r_type);
            let thumb_place = matches!(
                r_type,
                THM_CALL
                    | THM_JUMP24
                    | THM_JUMP19
                    | THM_JUMP11
                    | THM_JUMP8
                    | THM_JUMP6
                    | THM_MOVW_PREL_NC
                    | THM_MOVT_PREL
            );
            // A Thumb `BL` to A32 code and an A32 `BL` to Thumb code are tried too: both become `BLX`.
            let targets: &[bool] = if matches!(r_type, THM_CALL | CALL) {
                &[true, false]
            } else {
                &[thumb_target]
            };
            for &thumb in targets {
                // CBZ reaches only forward.
                let distances: &[i64] = if r_type == THM_JUMP6 {
                    &[0x4, 0x7c]
                } else {
                    &[0x7c, -0x7c]
                };
                let shifts: &[u64] = if thumb_place && thumb {
                    &[0x2, 0x4, 0x10, 0x340, 0x1230, 0x10_0000]
                } else {
                    &[0x4, 0x10, 0x340, 0x1230, 0x10_0000]
                };
                for &distance in distances {
                    let s = p.wrapping_add_signed(distance) | u64::from(thumb);
                    let here = apply(r_type, place, s, p).unwrap();
                    for &shift in shifts {
                        assert_eq!(
                            apply(r_type, place, s + shift, p + shift).unwrap(),
                            here,
                            "{:?} (Thumb target: {thumb}) changed when moved by {shift:#x}",
                            Arm::name(r_type)
                        );
                    }
                }
            }
        }
        // A Thumb `BL` to A32 code moved by 2 would reach A32 code at a halfword address, which a fresh
        // link refuses: its `BLX` offset is taken from Pa.
        let bl = thumb32(0xf000, 0xd000);
        assert!(apply(THM_CALL, bl, p + 0x7c, p).is_ok());
        assert!(apply(THM_CALL, bl, p + 0x7e, p + 2).is_err());
        // So do the Pa types, whose targets may lie at any halfword (or byte, for ADR.W)...
        let ldr_w = thumb32(0xf8df, 0x0000); // ldr.w r0, [pc, #0]
        assert!(!Arm::is_pc_relative(THM_PC12));
        assert_ne!(
            apply(THM_PC12, ldr_w, p + 0x7e, p + 2),
            apply(THM_PC12, ldr_w, p + 0x80, p + 4)
        );
        let adr_w = thumb32(0xf20f, 0x0000); // addw r0, pc, #0
        assert!(!Arm::is_pc_relative(THM_ALU_PREL_11_0));
        assert_ne!(
            apply(THM_ALU_PREL_11_0, adr_w, p + 0x7e, p + 2),
            apply(THM_ALU_PREL_11_0, adr_w, p + 0x80, p + 4)
        );
        // ... and the absolute ones.
        assert!(!Arm::is_pc_relative(ABS32));
        assert_ne!(
            apply(ABS32, [0; 4], p + 0x7c, p),
            apply(ABS32, [0; 4], p + 0x80, p + 4)
        );
    }

    #[test]
    fn addends_beyond_32_bits_are_refused() {
        let mut place = [0u8; 4];
        for (r_type, a) in [(ABS32, i64::MAX), (REL32, i64::MIN), (GOT_PREL, 1 << 32)] {
            let i = Inputs {
                got_slot: Some(0x100),
                ..inputs(r_type, 0x1000, a, 0x2000)
            };
            let r = Arm::apply(&i, &mut place);
            assert!(
                matches!(r, Err(Problem::Overflow { .. })),
                "{r_type}: {r:?}"
            );
        }
    }

    #[test]
    fn addresses_above_4_gib_are_refused() {
        let mut place = [0u8; 4];
        let r = Arm::apply(&inputs(ABS32, 0x1_0000_0000, 0, 0), &mut place);
        assert!(matches!(r, Err(Problem::Overflow { .. })));
    }
}
