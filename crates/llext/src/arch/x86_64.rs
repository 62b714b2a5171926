//! x86_64 (`EM_X86_64`), RELA. Formulas from the System V AMD64 psABI, section 4.4 "Relocation".

use super::{field, Inputs, Needs, Problem, Relocator};

/// The x86_64 backend.
#[derive(Debug)]
pub enum X86_64 {}

impl X86_64 {
    /// `EM_X86_64`.
    pub const MACHINE_ID: u16 = 62;
}

const NONE: u32 = 0;
const R64: u32 = 1;
const PC32: u32 = 2;
const GOT32: u32 = 3;
const PLT32: u32 = 4;
const GOTPCREL: u32 = 9;
const R32: u32 = 10;
const R32S: u32 = 11;
const R16: u32 = 12;
const PC16: u32 = 13;
const R8: u32 = 14;
const PC8: u32 = 15;
const PC64: u32 = 24;
const GOTOFF64: u32 = 25;
const GOTPC32: u32 = 26;
const GOT64: u32 = 27;
const GOTPCREL64: u32 = 28;
const GOTPC64: u32 = 29;
const GOTPLT64: u32 = 30;
const PLTOFF64: u32 = 31;
const SIZE32: u32 = 32;
const SIZE64: u32 = 33;
const GOTPCRELX: u32 = 41;
const REX_GOTPCRELX: u32 = 42;

const PIC_ADVICE: &str =
    "target out of ±2 GiB reach of this PC-relative reference; rebuild the extension with -fPIC";
const ABS32_ADVICE: &str =
    "absolute address does not fit 32 bits; rebuild the extension with -fPIC \
     (code built without it needs what it refers to below 4 GiB: the symbol lies above)";
const ABS32S_ADVICE: &str =
    "absolute address does not fit 32 bits sign-extended; rebuild the extension with -fPIC \
     (code built without it needs what it refers to below 2 GiB: the symbol lies above)";

impl Relocator for X86_64 {
    const MACHINE: u16 = Self::MACHINE_ID;
    const POINTER_SIZE: usize = 8;
    const STUB_SIZE: usize = 16;
    const STUB_ALIGN: usize = 16;
    const COPIES: bool = true;

    fn name(r_type: u32) -> Option<&'static str> {
        Some(match r_type {
            NONE => "R_X86_64_NONE",
            R64 => "R_X86_64_64",
            PC32 => "R_X86_64_PC32",
            GOT32 => "R_X86_64_GOT32",
            PLT32 => "R_X86_64_PLT32",
            5 => "R_X86_64_COPY",
            6 => "R_X86_64_GLOB_DAT",
            7 => "R_X86_64_JUMP_SLOT",
            8 => "R_X86_64_RELATIVE",
            GOTPCREL => "R_X86_64_GOTPCREL",
            R32 => "R_X86_64_32",
            R32S => "R_X86_64_32S",
            R16 => "R_X86_64_16",
            PC16 => "R_X86_64_PC16",
            R8 => "R_X86_64_8",
            PC8 => "R_X86_64_PC8",
            16 => "R_X86_64_DTPMOD64",
            17 => "R_X86_64_DTPOFF64",
            18 => "R_X86_64_TPOFF64",
            19 => "R_X86_64_TLSGD",
            20 => "R_X86_64_TLSLD",
            21 => "R_X86_64_DTPOFF32",
            22 => "R_X86_64_GOTTPOFF",
            23 => "R_X86_64_TPOFF32",
            PC64 => "R_X86_64_PC64",
            GOTOFF64 => "R_X86_64_GOTOFF64",
            GOTPC32 => "R_X86_64_GOTPC32",
            GOT64 => "R_X86_64_GOT64",
            GOTPCREL64 => "R_X86_64_GOTPCREL64",
            GOTPC64 => "R_X86_64_GOTPC64",
            GOTPLT64 => "R_X86_64_GOTPLT64",
            PLTOFF64 => "R_X86_64_PLTOFF64",
            SIZE32 => "R_X86_64_SIZE32",
            SIZE64 => "R_X86_64_SIZE64",
            34 => "R_X86_64_GOTPC32_TLSDESC",
            35 => "R_X86_64_TLSDESC_CALL",
            36 => "R_X86_64_TLSDESC",
            37 => "R_X86_64_IRELATIVE",
            GOTPCRELX => "R_X86_64_GOTPCRELX",
            REX_GOTPCRELX => "R_X86_64_REX_GOTPCRELX",
            _ => return None,
        })
    }

    fn needs(r_type: u32) -> Needs {
        match r_type {
            GOT32 | GOTPCREL | GOTPCRELX | REX_GOTPCRELX | GOT64 | GOTPCREL64 | GOTPLT64 => Needs {
                got_slot: true,
                ..Needs::default()
            },
            PLT32 | PLTOFF64 => Needs {
                stub: true,
                ..Needs::default()
            },
            // What `-fPIE` and `-fno-pic` code uses to read external data: `mov sym(%rip)`, `mov sym, %eax`.
            PC32 | R32 | R32S => Needs {
                copy: true,
                ..Needs::default()
            },
            _ => Needs::default(),
        }
    }

    fn is_none(r_type: u32) -> bool {
        r_type == NONE
    }

    fn writes_pointer(r_type: u32) -> bool {
        r_type == R64
    }

    fn is_pc_relative(r_type: u32) -> bool {
        matches!(r_type, PC32 | PC64 | PC16 | PC8 | PLT32)
    }

    fn write_stub(stub: &mut [u8], _at: u64, target: u64) -> Result<(), Problem> {
        // jmp *0(%rip); .quad target; padded with int3.
        let mut code = [0xccu8; 16];
        code[..6].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
        code[6..14].copy_from_slice(&target.to_le_bytes());
        field::write(stub, code)
    }

    fn apply(i: &Inputs, place: &mut [u8]) -> Result<(), Problem> {
        let s = i.s as i64;
        let p = i.p as i64;
        let got = i.got as i64;
        let slot = || i.got_slot.map(|g| g as i64).ok_or(Problem::Internal);
        match i.r_type {
            NONE => Ok(()),
            R64 => field::write(place, s.wrapping_add(i.a).to_le_bytes()),
            PC64 => field::write(place, s.wrapping_add(i.a).wrapping_sub(p).to_le_bytes()),
            SIZE64 => field::write(place, (i.z as i64).wrapping_add(i.a).to_le_bytes()),
            GOTOFF64 => field::write(place, s.wrapping_add(i.a).wrapping_sub(got).to_le_bytes()),
            GOTPC64 => field::write(place, got.wrapping_add(i.a).wrapping_sub(p).to_le_bytes()),
            GOT64 | GOTPLT64 => {
                field::write(place, (slot()? - got).wrapping_add(i.a).to_le_bytes())
            }
            GOTPCREL64 => field::write(
                place,
                slot()?.wrapping_add(i.a).wrapping_sub(p).to_le_bytes(),
            ),
            PLTOFF64 => {
                let l = i.stub.map(|st| st as i64).unwrap_or(s);
                field::write(place, l.wrapping_add(i.a).wrapping_sub(got).to_le_bytes())
            }
            PC32 => signed32(place, s.wrapping_add(i.a).wrapping_sub(p), PIC_ADVICE),
            PLT32 => {
                let direct = s.wrapping_add(i.a).wrapping_sub(p);
                if field::fits_signed(direct, 32) {
                    return signed32(place, direct, PIC_ADVICE);
                }
                // Out of reach: go through this symbol's stub, which jumps anywhere.
                match i.stub {
                    Some(stub) => signed32(
                        place,
                        (stub as i64).wrapping_add(i.a).wrapping_sub(p),
                        "call stub out of reach",
                    ),
                    None => signed32(place, direct, PIC_ADVICE),
                }
            }
            GOTPCREL | GOTPCRELX | REX_GOTPCRELX => signed32(
                place,
                slot()?.wrapping_add(i.a).wrapping_sub(p),
                "GOT out of reach",
            ),
            GOT32 => signed32(
                place,
                (slot()? - got).wrapping_add(i.a),
                "GOT slot offset too large",
            ),
            GOTPC32 => signed32(
                place,
                got.wrapping_add(i.a).wrapping_sub(p),
                "GOT out of reach",
            ),
            R32 => {
                let v = s.wrapping_add(i.a);
                if !fits_unsigned(v, 32) {
                    return Err(Problem::Overflow {
                        value: v,
                        reason: ABS32_ADVICE,
                    });
                }
                field::write(place, (v as u32).to_le_bytes())
            }
            R32S => signed32(place, s.wrapping_add(i.a), ABS32S_ADVICE),
            SIZE32 => {
                let v = (i.z as i64).wrapping_add(i.a);
                if !fits_unsigned(v, 32) {
                    return Err(Problem::Overflow {
                        value: v,
                        reason: "symbol size does not fit 32 bits",
                    });
                }
                field::write(place, (v as u32).to_le_bytes())
            }
            R16 => {
                let v = s.wrapping_add(i.a);
                if !fits_unsigned(v, 16) {
                    return Err(Problem::Overflow {
                        value: v,
                        reason: "absolute address does not fit 16 bits",
                    });
                }
                field::write(place, (v as u16).to_le_bytes())
            }
            PC16 => {
                let v = s.wrapping_add(i.a).wrapping_sub(p);
                if !field::fits_signed(v, 16) {
                    return Err(Problem::Overflow {
                        value: v,
                        reason: "target out of ±32 KiB reach",
                    });
                }
                field::write(place, (v as i16).to_le_bytes())
            }
            R8 => {
                let v = s.wrapping_add(i.a);
                if !fits_unsigned(v, 8) {
                    return Err(Problem::Overflow {
                        value: v,
                        reason: "absolute address does not fit 8 bits",
                    });
                }
                field::write(place, [v as u8])
            }
            PC8 => {
                let v = s.wrapping_add(i.a).wrapping_sub(p);
                if !field::fits_signed(v, 8) {
                    return Err(Problem::Overflow {
                        value: v,
                        reason: "target out of ±128 byte reach",
                    });
                }
                field::write(place, [v as i8 as u8])
            }
            _ => Err(Problem::Unsupported),
        }
    }
}

fn fits_unsigned(v: i64, bits: u32) -> bool {
    v >= 0 && (v as u64) < (1u64 << bits)
}

fn signed32(place: &mut [u8], v: i64, reason: &'static str) -> Result<(), Problem> {
    if !field::fits_signed(v, 32) {
        return Err(Problem::Overflow { value: v, reason });
    }
    field::write(place, (v as i32).to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(r_type: u32, s: u64, a: i64, p: u64) -> Inputs {
        Inputs::plain(r_type, s, a, p)
    }

    #[test]
    fn pc32_range_is_checked_at_both_ends() {
        let mut buf = [0u8; 4];
        let p = 0x1_0000_0000u64;
        assert!(X86_64::apply(&inputs(PC32, p + 0x7fff_ffff, 0, p), &mut buf).is_ok());
        assert_eq!(i32::from_le_bytes(buf), i32::MAX);
        assert!(matches!(
            X86_64::apply(&inputs(PC32, p + 0x8000_0000, 0, p), &mut buf),
            Err(Problem::Overflow { .. })
        ));
        assert!(X86_64::apply(&inputs(PC32, p - 0x8000_0000, 0, p), &mut buf).is_ok());
        assert_eq!(i32::from_le_bytes(buf), i32::MIN);
    }

    #[test]
    fn plt32_uses_the_stub_only_when_out_of_reach() {
        let mut buf = [0u8; 4];
        let mut i = inputs(PLT32, 0x7f00_0000_0000, -4, 0x1000_0000);
        i.stub = Some(0x1000_1000);
        X86_64::apply(&i, &mut buf).unwrap();
        assert_eq!(i32::from_le_bytes(buf), 0x1000 - 4);
        i.s = 0x1000_2000;
        X86_64::apply(&i, &mut buf).unwrap();
        assert_eq!(i32::from_le_bytes(buf), 0x2000 - 4);
    }

    #[test]
    fn place_past_the_section_end_is_refused() {
        let mut buf = [0u8; 3];
        assert_eq!(
            X86_64::apply(&inputs(R32, 1, 0, 0), &mut buf),
            Err(Problem::OutsideSection)
        );
    }

    #[test]
    fn r32_rejects_high_addresses_with_advice() {
        let mut buf = [0u8; 4];
        let r = X86_64::apply(&inputs(R32, 0x1_0000_0000, 0, 0), &mut buf);
        assert!(matches!(r, Err(Problem::Overflow { reason, .. }) if reason.contains("-fPIC")));
    }
}
