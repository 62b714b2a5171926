//! HI/LO relocation pairs: the value a HI part computes, found again by its LO parts.
//!
//! A RISC-V `PCREL_LO12_I` names the label of an `auipc`, not the final target: its value is the low 12 bits
//! of what the `PCREL_HI20` (or `GOT_HI20`) relocation at that label computed — wherever in the section that
//! relocation sits. Likewise a `SUB_ULEB128` subtracts from the `SET_ULEB128` at the same place. Before any
//! place is patched, this module runs the HI parts a backend declares ([`Relocator::pairing`]) and records
//! their values by place address; the linker then hands each LO part its partner's value in
//! [`Inputs::hi`]. A LO part without a partner gets `None`, which the backend reports as a typed error.

use alloc::vec::Vec;

use object::elf;

use crate::arch::{Inputs, Pairing, Relocator};
use crate::elf::{Object, SymbolPlace};
use crate::error::{Error, Result};

/// What the linker knows about a symbol that the formulas need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SymbolInputs {
    pub addr: u64,
    pub got_slot: Option<u64>,
    pub stub: Option<u64>,
}

/// HI values by the address of the place their relocation patches, sorted.
#[derive(Debug, Default)]
pub(crate) struct HiValues {
    by_place: Vec<(u64, i64)>,
    /// Places patched by a LO part that pairs by place (e.g. `SUB_ULEB128`), sorted: a HI part at such a
    /// place has a partner that will write the final value.
    lo_places: Vec<u64>,
}

impl HiValues {
    /// Computes every HI part of the loaded sections. `section_addr` gives a section's load address (`None`
    /// if it is not loaded), `symbol` a symbol's inputs (`None` if unusable; reported elsewhere).
    pub fn collect<A: Relocator>(
        obj: &Object<'_>,
        section_addr: impl Fn(usize) -> Option<u64>,
        symbol: impl Fn(u32) -> Option<SymbolInputs>,
        got: u64,
    ) -> Result<HiValues> {
        let mut by_place = Vec::new();
        let mut lo_places = Vec::new();
        for table in &obj.relocs {
            let (Some(base), Some(target)) =
                (section_addr(table.target), obj.sections.get(table.target))
            else {
                continue;
            };
            for r in table.iter(obj.endian) {
                match A::pairing(r.r_type) {
                    Pairing::Hi => {}
                    Pairing::LoAtPlace => {
                        lo_places.try_reserve(1).map_err(|_| Error::OutOfMemory {
                            size: core::mem::size_of::<u64>(),
                            align: 8,
                        })?;
                        lo_places.push(base.wrapping_add(r.offset));
                        continue;
                    }
                    _ => continue,
                }
                let (Some(sym), Some(info)) =
                    (obj.symbols.get(r.symbol as usize), symbol(r.symbol))
                else {
                    continue;
                };
                let a = match r.addend {
                    Some(a) => a,
                    // The file's bytes: nothing is patched yet.
                    None => match target
                        .data
                        .get(r.offset as usize..)
                        .map(|place| A::implicit_addend(r.r_type, place))
                    {
                        Some(Ok(a)) => a,
                        _ => continue, // reported when the relocation itself is applied
                    },
                };
                let inputs = Inputs {
                    r_type: r.r_type,
                    s: info.addr,
                    a,
                    p: base.wrapping_add(r.offset),
                    z: sym.size,
                    got_slot: info.got_slot,
                    got,
                    stub: info.stub,
                    func: sym.kind == elf::STT_FUNC.0 || sym.place == SymbolPlace::Undefined,
                    hi: None,
                };
                // A HI part that cannot be computed fails on its own when applied; its LO parts then fail
                // as unpaired, which names them too.
                if let Ok(value) = A::hi_value(&inputs) {
                    by_place.try_reserve(1).map_err(|_| Error::OutOfMemory {
                        size: core::mem::size_of::<(u64, i64)>(),
                        align: 8,
                    })?;
                    by_place.push((inputs.p, value));
                }
            }
        }
        by_place.sort_unstable_by_key(|&(place, _)| place);
        lo_places.sort_unstable();
        Ok(HiValues {
            by_place,
            lo_places,
        })
    }

    /// The value of the HI partner of the relocation described by `inputs`, if it is a LO part and the
    /// partner exists.
    ///
    /// For a HI part, `Some(0)` says that a LO part pairing by place patches the same place after it (so the
    /// HI part need not, or cannot, write a final value), `None` that none does.
    pub fn partner<A: Relocator>(&self, inputs: &Inputs) -> Option<i64> {
        let key = match A::pairing(inputs.r_type) {
            Pairing::LoAtSymbol => inputs.s,
            Pairing::LoAtPlace => inputs.p,
            Pairing::Hi => {
                return self.lo_places.binary_search(&inputs.p).ok().map(|_| 0);
            }
            Pairing::Alone => return None,
        };
        let at = self.by_place.partition_point(|&(place, _)| place < key);
        self.by_place
            .get(at)
            .filter(|&&(place, _)| place == key)
            .map(|&(_, value)| value)
    }
}
