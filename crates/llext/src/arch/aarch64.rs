//! AArch64 (`EM_AARCH64`), little-endian, RELA. Formulas from "ELF for the Arm 64-bit Architecture"
//! (AAELF64), section 5.7 "Relocation" (tables "Static Data relocations", "Group relocations to create a 16,
//! 32, 48, or 64 bit unsigned data value or address inline", "Relocations to generate 19, 21 and 33 bit
//! PC-relative addresses", "Relocations for control-flow instructions", "GOT-relative instruction
//! relocations"); instruction fields from the Arm Architecture Reference Manual for A-profile.
//!
//! `B`/`BL` beyond ±128 MiB go through a veneer (`ldr x16, #8; br x16; .quad target`), which uses IP0 as the
//! procedure call standard allows. GOT-generating relocations share one slot per symbol, so they need a zero
//! addend (what compilers emit).

use super::{field, Inputs, Needs, Problem, Relocator};

/// The AArch64 backend.
#[derive(Debug)]
pub enum Aarch64 {}

impl Aarch64 {
    /// `EM_AARCH64`.
    pub const MACHINE_ID: u16 = 183;
}

const NONE: u32 = 0;
const NONE_ALT: u32 = 256;
const ABS64: u32 = 257;
const ABS32: u32 = 258;
const ABS16: u32 = 259;
const PREL64: u32 = 260;
const PREL32: u32 = 261;
const PREL16: u32 = 262;
const MOVW_UABS_G0: u32 = 263;
const MOVW_UABS_G0_NC: u32 = 264;
const MOVW_UABS_G1: u32 = 265;
const MOVW_UABS_G1_NC: u32 = 266;
const MOVW_UABS_G2: u32 = 267;
const MOVW_UABS_G2_NC: u32 = 268;
const MOVW_UABS_G3: u32 = 269;
const MOVW_SABS_G0: u32 = 270;
const MOVW_SABS_G1: u32 = 271;
const MOVW_SABS_G2: u32 = 272;
const LD_PREL_LO19: u32 = 273;
const ADR_PREL_LO21: u32 = 274;
const ADR_PREL_PG_HI21: u32 = 275;
const ADR_PREL_PG_HI21_NC: u32 = 276;
const ADD_ABS_LO12_NC: u32 = 277;
const LDST8_ABS_LO12_NC: u32 = 278;
const TSTBR14: u32 = 279;
const CONDBR19: u32 = 280;
const JUMP26: u32 = 282;
/// The A64 `NOP`.
const NOP: u32 = 0xd503_201f;
const CALL26: u32 = 283;
const LDST16_ABS_LO12_NC: u32 = 284;
const LDST32_ABS_LO12_NC: u32 = 285;
const LDST64_ABS_LO12_NC: u32 = 286;
const MOVW_PREL_G0: u32 = 287;
const MOVW_PREL_G0_NC: u32 = 288;
const MOVW_PREL_G1: u32 = 289;
const MOVW_PREL_G1_NC: u32 = 290;
const MOVW_PREL_G2: u32 = 291;
const MOVW_PREL_G2_NC: u32 = 292;
const MOVW_PREL_G3: u32 = 293;
const LDST128_ABS_LO12_NC: u32 = 299;
const GOT_LD_PREL19: u32 = 309;
const ADR_GOT_PAGE: u32 = 311;
const LD64_GOT_LO12_NC: u32 = 312;
const LD64_GOTPAGE_LO15: u32 = 313;

const STUB_BYTES: usize = 16;

impl Relocator for Aarch64 {
    const MACHINE: u16 = Self::MACHINE_ID;
    const POINTER_SIZE: usize = 8;
    const STUB_SIZE: usize = STUB_BYTES;
    const STUB_ALIGN: usize = 8;

    fn name(r_type: u32) -> Option<&'static str> {
        Some(match r_type {
            NONE => "R_AARCH64_NONE",
            NONE_ALT => "R_AARCH64_NONE",
            ABS64 => "R_AARCH64_ABS64",
            ABS32 => "R_AARCH64_ABS32",
            ABS16 => "R_AARCH64_ABS16",
            PREL64 => "R_AARCH64_PREL64",
            PREL32 => "R_AARCH64_PREL32",
            PREL16 => "R_AARCH64_PREL16",
            MOVW_UABS_G0 => "R_AARCH64_MOVW_UABS_G0",
            MOVW_UABS_G0_NC => "R_AARCH64_MOVW_UABS_G0_NC",
            MOVW_UABS_G1 => "R_AARCH64_MOVW_UABS_G1",
            MOVW_UABS_G1_NC => "R_AARCH64_MOVW_UABS_G1_NC",
            MOVW_UABS_G2 => "R_AARCH64_MOVW_UABS_G2",
            MOVW_UABS_G2_NC => "R_AARCH64_MOVW_UABS_G2_NC",
            MOVW_UABS_G3 => "R_AARCH64_MOVW_UABS_G3",
            MOVW_SABS_G0 => "R_AARCH64_MOVW_SABS_G0",
            MOVW_SABS_G1 => "R_AARCH64_MOVW_SABS_G1",
            MOVW_SABS_G2 => "R_AARCH64_MOVW_SABS_G2",
            LD_PREL_LO19 => "R_AARCH64_LD_PREL_LO19",
            ADR_PREL_LO21 => "R_AARCH64_ADR_PREL_LO21",
            ADR_PREL_PG_HI21 => "R_AARCH64_ADR_PREL_PG_HI21",
            ADR_PREL_PG_HI21_NC => "R_AARCH64_ADR_PREL_PG_HI21_NC",
            ADD_ABS_LO12_NC => "R_AARCH64_ADD_ABS_LO12_NC",
            LDST8_ABS_LO12_NC => "R_AARCH64_LDST8_ABS_LO12_NC",
            TSTBR14 => "R_AARCH64_TSTBR14",
            CONDBR19 => "R_AARCH64_CONDBR19",
            JUMP26 => "R_AARCH64_JUMP26",
            CALL26 => "R_AARCH64_CALL26",
            LDST16_ABS_LO12_NC => "R_AARCH64_LDST16_ABS_LO12_NC",
            LDST32_ABS_LO12_NC => "R_AARCH64_LDST32_ABS_LO12_NC",
            LDST64_ABS_LO12_NC => "R_AARCH64_LDST64_ABS_LO12_NC",
            MOVW_PREL_G0 => "R_AARCH64_MOVW_PREL_G0",
            MOVW_PREL_G0_NC => "R_AARCH64_MOVW_PREL_G0_NC",
            MOVW_PREL_G1 => "R_AARCH64_MOVW_PREL_G1",
            MOVW_PREL_G1_NC => "R_AARCH64_MOVW_PREL_G1_NC",
            MOVW_PREL_G2 => "R_AARCH64_MOVW_PREL_G2",
            MOVW_PREL_G2_NC => "R_AARCH64_MOVW_PREL_G2_NC",
            MOVW_PREL_G3 => "R_AARCH64_MOVW_PREL_G3",
            LDST128_ABS_LO12_NC => "R_AARCH64_LDST128_ABS_LO12_NC",
            300 => "R_AARCH64_MOVW_GOTOFF_G0",
            307 => "R_AARCH64_GOTREL64",
            308 => "R_AARCH64_GOTREL32",
            GOT_LD_PREL19 => "R_AARCH64_GOT_LD_PREL19",
            310 => "R_AARCH64_LD64_GOTOFF_LO15",
            ADR_GOT_PAGE => "R_AARCH64_ADR_GOT_PAGE",
            LD64_GOT_LO12_NC => "R_AARCH64_LD64_GOT_LO12_NC",
            LD64_GOTPAGE_LO15 => "R_AARCH64_LD64_GOTPAGE_LO15",
            314 => "R_AARCH64_PLT32",
            315 => "R_AARCH64_GOTPCREL32",
            512..=573 => "R_AARCH64_TLS (thread-local storage)",
            1024 => "R_AARCH64_COPY",
            1025 => "R_AARCH64_GLOB_DAT",
            1026 => "R_AARCH64_JUMP_SLOT",
            1027 => "R_AARCH64_RELATIVE",
            1028..=1031 => "R_AARCH64_TLS (dynamic)",
            1032 => "R_AARCH64_IRELATIVE",
            _ => return None,
        })
    }

    fn needs(r_type: u32) -> Needs {
        match r_type {
            GOT_LD_PREL19 | ADR_GOT_PAGE | LD64_GOT_LO12_NC | LD64_GOTPAGE_LO15 => Needs {
                got_slot: true,
                ..Needs::default()
            },
            CALL26 | JUMP26 => Needs {
                stub: true,
                ..Needs::default()
            },
            _ => Needs::default(),
        }
    }

    fn is_none(r_type: u32) -> bool {
        r_type == NONE || r_type == NONE_ALT
    }

    /// AAELF64 5.7 gives these as S + A - P, and `apply` computes them from that difference alone (a far
    /// `B`/`BL` through a veneer is recorded anyway: the linker checks for the veneer).
    ///
    /// `ADRP` (`ADR_PREL_PG_HI21[_NC]`, Page(S + A) - Page(P)) is left out: the page difference holds only
    /// while a block moves by whole 4 KiB pages, and blocks are aligned only as their sections ask (an
    /// `ArenaMemory` may put a block that asks for 16 bytes at any multiple of 16). Its `:lo12:` partners
    /// are S + A, absolute.
    fn writes_pointer(r_type: u32) -> bool {
        r_type == ABS64
    }

    fn is_pc_relative(r_type: u32) -> bool {
        matches!(
            r_type,
            PREL64
                | PREL32
                | PREL16
                | LD_PREL_LO19
                | ADR_PREL_LO21
                | TSTBR14
                | CONDBR19
                | JUMP26
                | CALL26
                | MOVW_PREL_G0
                | MOVW_PREL_G0_NC
                | MOVW_PREL_G1
                | MOVW_PREL_G1_NC
                | MOVW_PREL_G2
                | MOVW_PREL_G2_NC
                | MOVW_PREL_G3
        )
    }

    fn write_stub(stub: &mut [u8], _at: u64, target: u64) -> Result<(), Problem> {
        let mut code = [0u8; STUB_BYTES];
        // ldr x16, #8 ; br x16 ; .quad target
        code[0..4].copy_from_slice(&0x5800_0050u32.to_le_bytes());
        code[4..8].copy_from_slice(&0xd61f_0200u32.to_le_bytes());
        code[8..16].copy_from_slice(&target.to_le_bytes());
        field::write(stub, code)
    }

    fn apply(i: &Inputs, place: &mut [u8]) -> Result<(), Problem> {
        let s = i.s as i64;
        let p = i.p as i64;
        let a = i.a;
        let x = s.wrapping_add(a);
        let px = x.wrapping_sub(p);
        let got_entry = || -> Result<i64, Problem> {
            if a != 0 {
                return Err(Problem::Invalid {
                    value: a,
                    reason:
                        "GOT-generating relocation with a non-zero addend (one GOT slot per symbol)",
                });
            }
            i.got_slot.map(|g| g as i64).ok_or(Problem::Internal)
        };
        match i.r_type {
            NONE | NONE_ALT => Ok(()),
            // AAELF64 5.7.5 static data: ABS64 is S + A.
            ABS64 => field::write(place, x.to_le_bytes()),
            // AAELF64 5.7.5 static data: ABS32 is S + A, -2^31 <= X < 2^32.
            ABS32 => data::<4>(place, x, -(1 << 31), 1 << 32),
            // AAELF64 5.7.5 static data: ABS16 is S + A, -2^15 <= X < 2^16.
            ABS16 => data::<2>(place, x, -(1 << 15), 1 << 16),
            // AAELF64 5.7.5 static data: PREL64 is S + A - P.
            PREL64 => field::write(place, px.to_le_bytes()),
            // AAELF64 5.7.5 static data: PREL32 is S + A - P, -2^31 <= X < 2^32.
            PREL32 => data::<4>(place, px, -(1 << 31), 1 << 32),
            // AAELF64 5.7.5 static data: PREL16 is S + A - P, -2^15 <= X < 2^16.
            PREL16 => data::<2>(place, px, -(1 << 15), 1 << 16),
            // AAELF64 5.7.6 group relocations: MOVW_UABS_Gn sets bits [16n+15:16n] of S + A in MOVZ/MOVK.
            MOVW_UABS_G0 => movw_unsigned(place, x, 0, true),
            MOVW_UABS_G0_NC => movw_unsigned(place, x, 0, false),
            MOVW_UABS_G1 => movw_unsigned(place, x, 1, true),
            MOVW_UABS_G1_NC => movw_unsigned(place, x, 1, false),
            MOVW_UABS_G2 => movw_unsigned(place, x, 2, true),
            MOVW_UABS_G2_NC => movw_unsigned(place, x, 2, false),
            MOVW_UABS_G3 => movw_unsigned(place, x, 3, false),
            // AAELF64 5.7.6 group relocations: MOVW_SABS_Gn is S + A as MOVZ (X >= 0) or MOVN with ~X (X < 0).
            MOVW_SABS_G0 => movw_signed(place, x, 0, true),
            MOVW_SABS_G1 => movw_signed(place, x, 1, true),
            MOVW_SABS_G2 => movw_signed(place, x, 2, true),
            // AAELF64 5.7.6 group relocations: MOVW_PREL_Gn is S + A - P, signed like SABS; _NC only sets bits.
            MOVW_PREL_G0 => movw_signed(place, px, 0, true),
            MOVW_PREL_G1 => movw_signed(place, px, 1, true),
            MOVW_PREL_G2 => movw_signed(place, px, 2, true),
            MOVW_PREL_G3 => movw_signed(place, px, 3, false),
            MOVW_PREL_G0_NC => movw_unsigned(place, px, 0, false),
            MOVW_PREL_G1_NC => movw_unsigned(place, px, 1, false),
            MOVW_PREL_G2_NC => movw_unsigned(place, px, 2, false),
            // AAELF64 5.7.7 PC-relative addresses: LD_PREL_LO19 is S + A - P, ±1 MiB, word-aligned.
            LD_PREL_LO19 => imm19(place, px, "literal out of ±1 MiB reach", Kind::LoadLiteral),
            // AAELF64 5.7.7 PC-relative addresses: ADR_PREL_LO21 is S + A - P, ±1 MiB.
            ADR_PREL_LO21 => {
                if !field::fits_signed(px, 21) {
                    return Err(overflow(px, "address out of ±1 MiB reach of ADR"));
                }
                adr(place, px, false)
            }
            // AAELF64 5.7.7 PC-relative addresses: ADR_PREL_PG_HI21 is Page(S + A) - Page(P), ±4 GiB.
            ADR_PREL_PG_HI21 | ADR_PREL_PG_HI21_NC => {
                let pages = page(x).wrapping_sub(page(p)) >> 12;
                if i.r_type == ADR_PREL_PG_HI21 && !field::fits_signed(pages, 21) {
                    return Err(overflow(pages << 12, "page out of ±4 GiB reach of ADRP"));
                }
                adr(place, pages, true)
            }
            // AAELF64 5.7.7: ADD_ABS_LO12_NC sets the ADD immediate to bits [11:0] of S + A.
            ADD_ABS_LO12_NC => {
                let w = read32(place)?;
                if w & 0x1f00_0000 != 0x1100_0000 {
                    return Err(invalid(
                        w,
                        "ADD_ABS_LO12_NC does not patch an ADD (immediate)",
                    ));
                }
                imm12(place, x & 0xfff)
            }
            // AAELF64 5.7.7: LDSTn_ABS_LO12_NC sets the scaled load/store offset to bits [11:log2 n] of S + A.
            LDST8_ABS_LO12_NC => ldst(place, x, 0),
            LDST16_ABS_LO12_NC => ldst(place, x, 1),
            LDST32_ABS_LO12_NC => ldst(place, x, 2),
            LDST64_ABS_LO12_NC => ldst(place, x, 3),
            LDST128_ABS_LO12_NC => ldst(place, x, 4),
            TSTBR14 => {
                // AAELF64 5.7.8 control flow: TSTBR14 is S + A - P, ±32 KiB.
                let w = read32(place)?;
                if w & 0x7e00_0000 != 0x3600_0000 {
                    return Err(invalid(w, "TSTBR14 does not patch TBZ/TBNZ"));
                }
                if !field::fits_signed(px, 16) || px & 3 != 0 {
                    return Err(overflow(px, "test-and-branch target out of ±32 KiB reach"));
                }
                write32(
                    place,
                    (w & !(0x3fff << 5)) | ((((px >> 2) as u32) & 0x3fff) << 5),
                )
            }
            // AAELF64 5.7.8 control flow: CONDBR19 is S + A - P, ±1 MiB.
            CONDBR19 => imm19(
                place,
                px,
                "conditional branch target out of ±1 MiB reach",
                Kind::CondBranch,
            ),
            JUMP26 | CALL26 => {
                // AAELF64 5.7.8 control flow: JUMP26 and CALL26 are S + A - P, ±128 MiB, else a veneer.
                let w = read32(place)?;
                if i.absent && (w & 0x7c00_0000 == 0x1400_0000 || (i.relink && w == NOP)) {
                    // A branch to an absent (undefined weak) function, which the caller checks for,
                    // becomes a NOP as GNU ld links it (and the NOP links again on a restore).
                    return field::write(place, NOP.to_le_bytes());
                }
                if w & 0x7c00_0000 != 0x1400_0000 {
                    return Err(invalid(w, "JUMP26/CALL26 does not patch B or BL"));
                }
                let v = match i.stub {
                    Some(stub) if !field::fits_signed(px, 28) => {
                        (stub as i64).wrapping_add(a).wrapping_sub(p)
                    }
                    _ => px,
                };
                if !field::fits_signed(v, 28) {
                    return Err(overflow(
                        v,
                        "branch target out of ±128 MiB reach and no veneer was reserved (veneers exist only for calls to symbols outside the extension)",
                    ));
                }
                if v & 3 != 0 {
                    return Err(overflow(v, "branch target is not word-aligned"));
                }
                write32(place, (w & 0xfc00_0000) | (((v >> 2) as u32) & 0x03ff_ffff))
            }
            // AAELF64 5.7.11 GOT-relative: GOT_LD_PREL19 is G(GDAT(S + A)) - P, ±1 MiB.
            GOT_LD_PREL19 => imm19(
                place,
                got_entry()?.wrapping_sub(p),
                "GOT slot out of ±1 MiB reach",
                Kind::LoadLiteral,
            ),
            ADR_GOT_PAGE => {
                // AAELF64 5.7.11 GOT-relative: ADR_GOT_PAGE is Page(G(GDAT(S + A))) - Page(P), ±4 GiB.
                let pages = page(got_entry()?).wrapping_sub(page(p)) >> 12;
                if !field::fits_signed(pages, 21) {
                    return Err(overflow(
                        pages << 12,
                        "GOT page out of ±4 GiB reach of ADRP",
                    ));
                }
                adr(place, pages, true)
            }
            LD64_GOT_LO12_NC => {
                // AAELF64 5.7.11 GOT-relative: LD64_GOT_LO12_NC is G(GDAT(S + A)) & 0xff8, as an LDR offset.
                let slot = got_entry()?;
                ldst(place, slot, 3)
            }
            LD64_GOTPAGE_LO15 => {
                // AAELF64 5.7.11 GOT-relative: LD64_GOTPAGE_LO15 is G(GDAT(S + A)) - Page(GOT), 0..2^15.
                let v = got_entry()?.wrapping_sub(page(i.got as i64));
                if !(0..1 << 15).contains(&v) || v & 7 != 0 {
                    return Err(overflow(v, "GOT slot beyond 32 KiB of the GOT's page"));
                }
                let w = read32(place)?;
                check_ldst(w)?;
                write32(place, (w & !(0xfff << 10)) | (((v >> 3) as u32) << 10))
            }
            _ => Err(Problem::Unsupported),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    LoadLiteral,
    CondBranch,
}

fn page(v: i64) -> i64 {
    v & !0xfff
}

fn overflow(value: i64, reason: &'static str) -> Problem {
    Problem::Overflow { value, reason }
}

fn invalid(found: u32, reason: &'static str) -> Problem {
    Problem::Invalid {
        value: i64::from(found),
        reason,
    }
}

fn read32(place: &[u8]) -> Result<u32, Problem> {
    let b = place.get(..4).ok_or(Problem::OutsideSection)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn write32(place: &mut [u8], w: u32) -> Result<(), Problem> {
    field::write(place, w.to_le_bytes())
}

fn data<const N: usize>(place: &mut [u8], v: i64, min: i64, end: i64) -> Result<(), Problem> {
    if !(min..end).contains(&v) {
        return Err(overflow(v, "value does not fit the data field"));
    }
    let bytes = v.to_le_bytes();
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    field::write(place, out)
}

/// ADR (21-bit byte offset) or ADRP (21-bit page offset): immlo in bits 30:29, immhi in bits 23:5.
fn adr(place: &mut [u8], imm: i64, page: bool) -> Result<(), Problem> {
    let w = read32(place)?;
    let is_adrp = w & 0x9f00_0000 == 0x9000_0000;
    let is_adr = w & 0x9f00_0000 == 0x1000_0000;
    if (page && !is_adrp) || (!page && !is_adr) {
        return Err(invalid(w, "ADR/ADRP relocation does not patch ADR/ADRP"));
    }
    let u = imm as u32;
    let w = (w & 0x9f00_001f) | ((u & 3) << 29) | (((u >> 2) & 0x7ffff) << 5);
    write32(place, w)
}

fn imm12(place: &mut [u8], v: i64) -> Result<(), Problem> {
    let w = read32(place)?;
    write32(place, (w & !(0xfff << 10)) | (((v as u32) & 0xfff) << 10))
}

fn check_ldst(w: u32) -> Result<(), Problem> {
    // Load/store register (unsigned immediate): bits 29:27 = 111, bits 25:24 = 01.
    if w & 0x3b00_0000 != 0x3900_0000 {
        return Err(invalid(
            w,
            "load/store relocation does not patch a load or store with an unsigned offset",
        ));
    }
    Ok(())
}

fn ldst(place: &mut [u8], v: i64, shift: u32) -> Result<(), Problem> {
    let w = read32(place)?;
    check_ldst(w)?;
    let lo = v & 0xfff;
    if lo & ((1 << shift) - 1) != 0 {
        return Err(overflow(
            v,
            "address is not aligned to the access size of this load/store",
        ));
    }
    write32(
        place,
        (w & !(0xfff << 10)) | ((((lo >> shift) as u32) & 0xfff) << 10),
    )
}

fn imm19(place: &mut [u8], v: i64, reason: &'static str, kind: Kind) -> Result<(), Problem> {
    let w = read32(place)?;
    let ok = match kind {
        // LDR/LDRSW/PRFM (literal), integer or SIMD&FP: bits 29:27 = 011, bit 24 = 0.
        Kind::LoadLiteral => w & 0x3b00_0000 == 0x1800_0000,
        // B.cond (0x54), CBZ/CBNZ (x011010x).
        Kind::CondBranch => w & 0xff00_0010 == 0x5400_0000 || w & 0x7e00_0000 == 0x3400_0000,
    };
    if !ok {
        return Err(invalid(
            w,
            "19-bit PC-relative relocation does not patch LDR (literal), B.cond or CBZ/CBNZ",
        ));
    }
    if !field::fits_signed(v, 21) || v & 3 != 0 {
        return Err(overflow(v, reason));
    }
    write32(
        place,
        (w & !(0x7ffff << 5)) | ((((v >> 2) as u32) & 0x7ffff) << 5),
    )
}

fn check_movw(w: u32) -> Result<(), Problem> {
    // Move wide (immediate): bits 28:23 = 100101.
    if w & 0x1f80_0000 != 0x1280_0000 {
        return Err(invalid(w, "MOVW relocation does not patch MOVZ/MOVN/MOVK"));
    }
    Ok(())
}

/// Bits [16g+15:16g] of `v` into the imm16 of MOVZ/MOVK, checking `v < 2^(16(g+1))` when `check`.
fn movw_unsigned(place: &mut [u8], v: i64, group: u32, check: bool) -> Result<(), Problem> {
    let w = read32(place)?;
    check_movw(w)?;
    if check && (v as u64) >> (16 * (group + 1)) != 0 {
        return Err(overflow(
            v,
            "value does not fit the bits this MOVW group covers",
        ));
    }
    let imm = ((v as u64) >> (16 * group)) as u32 & 0xffff;
    write32(place, (w & !(0xffff << 5)) | (imm << 5))
}

/// MOVZ with bits of `v` when `v >= 0`, MOVN with bits of `!v` when negative.
fn movw_signed(place: &mut [u8], v: i64, group: u32, check: bool) -> Result<(), Problem> {
    let w = read32(place)?;
    check_movw(w)?;
    if check && group < 3 && !field::fits_signed(v, 16 * (group + 1) + 1) {
        return Err(overflow(
            v,
            "value does not fit the bits this signed MOVW group covers",
        ));
    }
    let (opc, bits) = if v >= 0 { (0b10, v) } else { (0b00, !v) };
    let imm = ((bits as u64) >> (16 * group)) as u32 & 0xffff;
    write32(
        place,
        (w & !(0x3 << 29) & !(0xffff << 5)) | (opc << 29) | (imm << 5),
    )
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

    #[test]
    fn calls_to_address_zero_become_nops() {
        // An undefined weak function is 0: a BL or B to it is a NOP, as GNU ld links it, whatever
        // veneer was reserved, and the NOP links the same way again (a restore elsewhere).
        let absent = |r_type, p| Inputs {
            absent: true,
            ..inputs(r_type, 0, 0, p)
        };
        for insn in [0x9400_0000u32, 0x1400_0000] {
            let mut b = insn.to_le_bytes();
            let mut i = absent(CALL26, 0x4000_0000);
            i.stub = Some(0x4000_0100);
            Aarch64::apply(&i, &mut b).unwrap();
            assert_eq!(word(&b), NOP);
            let again = Inputs {
                relink: true,
                ..absent(JUMP26, 0x5000_0000)
            };
            Aarch64::apply(&again, &mut b).unwrap();
            assert_eq!(word(&b), NOP);
            // In an object a NOP is no branch.
            assert!(Aarch64::apply(&absent(JUMP26, 0x5000_0000), &mut b).is_err());
        }
        // Anything else at the place is still refused.
        let mut b = 0xd65f_03c0u32.to_le_bytes(); // ret
        assert!(Aarch64::apply(&absent(CALL26, 0x4000_0000), &mut b).is_err());
        // A function that is there, even at address 0, is branched to.
        let mut b = 0x9400_0000u32.to_le_bytes();
        Aarch64::apply(&inputs(CALL26, 0, 0, 0x100), &mut b).unwrap();
        assert_eq!(word(&b), 0x97ff_ffc0, "bl 0");
    }

    #[test]
    fn call26_range_edges_and_veneer() {
        let bl = 0x9400_0000u32.to_le_bytes();
        let p = 0x4000_0000u64;
        let mut b = bl;
        Aarch64::apply(&inputs(CALL26, p + (128 << 20) - 4, 0, p), &mut b).unwrap();
        assert_eq!(word(&b), 0x95ff_ffff);
        let mut b = bl;
        Aarch64::apply(&inputs(CALL26, p - (128 << 20), 0, p), &mut b).unwrap();
        assert_eq!(word(&b), 0x9600_0000);
        let mut b = bl;
        assert!(Aarch64::apply(&inputs(CALL26, p + (128 << 20), 0, p), &mut b).is_err());
        let mut i = inputs(CALL26, p + (1 << 32), 0, p);
        i.stub = Some(p + 0x100);
        let mut b = bl;
        Aarch64::apply(&i, &mut b).unwrap();
        assert_eq!(word(&b), 0x9400_0040);
        // A target in reach ignores the veneer.
        i.s = p + 0x800;
        let mut b = bl;
        Aarch64::apply(&i, &mut b).unwrap();
        assert_eq!(word(&b), 0x9400_0200);
    }

    #[test]
    fn adrp_add_ldst_page_arithmetic() {
        let p = 0x4000_0ffcu64;
        let s = 0x4123_4568u64;
        let mut adrp = 0x9000_0000u32.to_le_bytes(); // adrp x0, 0
        Aarch64::apply(&inputs(ADR_PREL_PG_HI21, s, 0, p), &mut adrp).unwrap();
        let w = word(&adrp);
        let imm = ((((w >> 5) & 0x7ffff) << 2) | ((w >> 29) & 3)) as i64;
        assert_eq!(page(p as i64) + (imm << 12), page(s as i64));
        let mut ldr = 0xf940_0000u32.to_le_bytes(); // ldr x0, [x0]
        Aarch64::apply(&inputs(LDST64_ABS_LO12_NC, s, 0, p), &mut ldr).unwrap();
        assert_eq!((word(&ldr) >> 10) & 0xfff, 0x568 >> 3);
        let mut ldr = 0xf940_0000u32.to_le_bytes();
        assert!(Aarch64::apply(&inputs(LDST64_ABS_LO12_NC, s + 4, 0, p), &mut ldr).is_err());
        let mut add = 0x9100_0000u32.to_le_bytes(); // add x0, x0, #0
        Aarch64::apply(&inputs(ADD_ABS_LO12_NC, s, 0, p), &mut add).unwrap();
        assert_eq!((word(&add) >> 10) & 0xfff, 0x568);
        let mut not_add = 0xf940_0000u32.to_le_bytes();
        assert!(matches!(
            Aarch64::apply(&inputs(ADD_ABS_LO12_NC, s, 0, p), &mut not_add),
            Err(Problem::Invalid { .. })
        ));
        // ±4 GiB edge of ADRP.
        let mut adrp = 0x9000_0000u32.to_le_bytes();
        assert!(Aarch64::apply(&inputs(ADR_PREL_PG_HI21, p + (1 << 32), 0, p), &mut adrp).is_err());
    }

    /// What `is_pc_relative` promises the linker: moving place and target together by any distance, not
    /// only whole pages, leaves the patched bits as they were. `ADRP` breaks that promise.
    #[test]
    fn pc_relative_types_keep_their_bits_when_place_and_target_move_together() {
        let apply = |r_type: u32, s: u64, p: u64| {
            let word: u32 = match r_type {
                PREL64 | PREL32 | PREL16 => 0,
                LD_PREL_LO19 => 0x5800_0000,  // ldr x0, <literal>
                ADR_PREL_LO21 => 0x1000_0000, // adr x0, <label>
                ADR_PREL_PG_HI21 => 0x9000_0000,
                TSTBR14 => 0x3600_0000,  // tbz w0, #0, <label>
                CONDBR19 => 0x5400_0000, // b.eq <label>
                JUMP26 => 0x1400_0000,
                CALL26 => 0x9400_0000,
                MOVW_PREL_G0 | MOVW_PREL_G1 | MOVW_PREL_G2 | MOVW_PREL_G3 => 0xd280_0000, // movz x0
                MOVW_PREL_G0_NC | MOVW_PREL_G1_NC | MOVW_PREL_G2_NC => 0xf280_0000,       // movk x0
                _ => panic!("no test instruction for {:?}", Aarch64::name(r_type)),
            };
            let mut place = [0u8; 8];
            place[..4].copy_from_slice(&word.to_le_bytes());
            Aarch64::apply(&inputs(r_type, s, 0, p), &mut place).unwrap();
            place
        };
        let p = 0x4000_0ff0u64;
        let types = || (0..1100).filter(|&t| Aarch64::is_pc_relative(t));
        assert_eq!(types().count(), 16);
        for r_type in types() {
            for distance in [0x7f0i64, -0x7f0] {
                let s = p.wrapping_add_signed(distance);
                let here = apply(r_type, s, p);
                for shift in [0x4u64, 0x10, 0x340, 0x1230, 0x10_0000, 0x1_0000_0004] {
                    assert_eq!(
                        apply(r_type, s + shift, p + shift),
                        here,
                        "{:?} changed when moved by {shift:#x}",
                        Aarch64::name(r_type)
                    );
                }
            }
        }
        // A page boundary between place and target comes and goes with a move of less than a page.
        assert!(!Aarch64::is_pc_relative(ADR_PREL_PG_HI21));
        assert_ne!(
            apply(ADR_PREL_PG_HI21, p + 0x20, p),
            apply(ADR_PREL_PG_HI21, p + 0x30, p + 0x10)
        );
    }

    #[test]
    fn movw_sabs_uses_movn_for_negative_values() {
        let movz = 0xd280_0000u32.to_le_bytes(); // movz x0, #0
        let mut m = movz;
        Aarch64::apply(&inputs(MOVW_SABS_G0, 0, -2, 0), &mut m).unwrap();
        // movn x0, #1 is -2.
        assert_eq!(word(&m), 0x9280_0020);
        let mut m = movz;
        Aarch64::apply(&inputs(MOVW_SABS_G0, 5, 0, 0), &mut m).unwrap();
        assert_eq!(word(&m), 0xd280_00a0);
        let mut m = movz;
        assert!(Aarch64::apply(&inputs(MOVW_SABS_G0, 0x1_0000, 0, 0), &mut m).is_err());
        let mut m = movz;
        Aarch64::apply(&inputs(MOVW_SABS_G0, 0, -0x1_0000, 0), &mut m).unwrap();
        assert_eq!(word(&m), 0x9280_0000 | (0xffff << 5));
        let mut m = 0xf2a0_0000u32.to_le_bytes(); // movk x0, #0, lsl 16
        Aarch64::apply(&inputs(MOVW_UABS_G1_NC, 0x1234_5678_9abc, 0, 0), &mut m).unwrap();
        assert_eq!((word(&m) >> 5) & 0xffff, 0x5678);
        let mut m = movz;
        assert!(Aarch64::apply(&inputs(MOVW_UABS_G1, 0x1_0000_0000, 0, 0), &mut m).is_err());
    }

    #[test]
    fn got_page_and_slot_offset() {
        let mut i = inputs(ADR_GOT_PAGE, 0x1234, 0, 0x4000_0000);
        i.got_slot = Some(0x4001_2008);
        i.got = 0x4001_2000;
        let mut adrp = 0x9000_0000u32.to_le_bytes();
        Aarch64::apply(&i, &mut adrp).unwrap();
        let w = word(&adrp);
        assert_eq!((((w >> 5) & 0x7ffff) << 2) | ((w >> 29) & 3), 0x12);
        i.r_type = LD64_GOT_LO12_NC;
        let mut ldr = 0xf940_0000u32.to_le_bytes();
        Aarch64::apply(&i, &mut ldr).unwrap();
        assert_eq!((word(&ldr) >> 10) & 0xfff, 1);
        i.a = 8;
        assert!(matches!(
            Aarch64::apply(&i, &mut ldr),
            Err(Problem::Invalid { .. })
        ));
    }

    #[test]
    fn data_ranges() {
        let mut b = [0u8; 4];
        Aarch64::apply(&inputs(ABS32, 0xffff_ffff, 0, 0), &mut b).unwrap();
        assert!(Aarch64::apply(&inputs(ABS32, 0x1_0000_0000, 0, 0), &mut b).is_err());
        Aarch64::apply(&inputs(PREL32, 0, -(1 << 31), 0), &mut b).unwrap();
        assert!(Aarch64::apply(&inputs(PREL32, 0, -(1 << 31) - 1, 0), &mut b).is_err());
        let mut b = [0u8; 2];
        assert!(Aarch64::apply(&inputs(ABS16, 0x1_0000, 0, 0), &mut b).is_err());
    }

    #[test]
    fn branch_relocations_check_the_instruction() {
        let mut cbz = 0xb400_0000u32.to_le_bytes(); // cbz x0, .
        Aarch64::apply(&inputs(CONDBR19, 0x1000 - 4, 0, 0x1000), &mut cbz).unwrap();
        assert_eq!((word(&cbz) >> 5) & 0x7ffff, 0x7ffff);
        let mut tbz = 0x3600_0000u32.to_le_bytes();
        Aarch64::apply(&inputs(TSTBR14, 0x1000 + 0x7ffc, 0, 0x1000), &mut tbz).unwrap();
        assert!(Aarch64::apply(&inputs(TSTBR14, 0x1000 + 0x8000, 0, 0x1000), &mut tbz).is_err());
        let mut nop = 0xd503_201fu32.to_le_bytes();
        assert!(matches!(
            Aarch64::apply(&inputs(CALL26, 0x100, 0, 0), &mut nop),
            Err(Problem::Invalid { .. })
        ));
    }
}
