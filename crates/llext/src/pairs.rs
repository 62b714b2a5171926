//! HI/LO relocation pairs: the value a HI part computes, found again by its LO parts.
//!
//! A RISC-V `PCREL_LO12_I` names the label of an `auipc`, not the final target: its value is the low 12 bits
//! of what the `PCREL_HI20` (or `GOT_HI20`) relocation at that label computed — wherever in the section that
//! relocation sits. Likewise a `SUB_ULEB128` subtracts from the `SET_ULEB128` at the same place. Before any
//! place is patched, this module runs the HI parts a backend declares ([`Relocator::pairing`]) and records
//! their values by place address; the linker then hands each LO part its partner's value in
//! [`Inputs::hi`]. A LO part without a partner gets `None`, which the backend reports as a typed error.
//! A portable restore builds the same table from the HI parts of its fixup table, at the new addresses
//! ([`HiValues::add_hi`]), and pairs the LO parts with it exactly as the linker did.

use alloc::vec::Vec;

use crate::arch::{Inputs, Pairing, Relocator};
use crate::elf::Object;
use crate::error::Result;
use crate::fallible;

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
        let mut his = HiValues::default();
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
                        his.add_lo_place(base.wrapping_add(r.offset))?;
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
                    func: crate::arch::is_function::<A>(sym, r.r_type),
                    hi: None,
                    // No HI value depends on these.
                    absent: false,
                    relink: false,
                };
                his.add_hi::<A>(&inputs)?;
            }
        }
        his.sort();
        Ok(his)
    }

    /// Records the value of the HI part described by `inputs` under its place (a portable restore feeds
    /// the HI parts of its fixup table this way, at the new addresses). A HI part that cannot be computed
    /// is left out: it fails on its own when applied, and its LO parts then fail as unpaired, which names
    /// them too. Call [`HiValues::sort`] after the last addition.
    pub fn add_hi<A: Relocator>(&mut self, inputs: &Inputs) -> Result<()> {
        if let Ok(value) = A::hi_value(inputs) {
            fallible::push(&mut self.by_place, (inputs.p, value))?;
        }
        Ok(())
    }

    /// Records a place patched by a LO part that pairs by place ([`Pairing::LoAtPlace`]).
    pub fn add_lo_place(&mut self, place: u64) -> Result<()> {
        fallible::push(&mut self.lo_places, place)
    }

    /// Sorts what was added, for [`HiValues::partner`]. Inlined with its length checks, so that on
    /// architectures without pairs (nothing is ever added) the sorting code is not linked at all.
    #[inline(always)]
    pub fn sort(&mut self) {
        if self.by_place.len() > 1 {
            fallible::sort_by(&mut self.by_place, |a, b| a.0 < b.0);
        }
        if self.lo_places.len() > 1 {
            fallible::sort_by(&mut self.lo_places, |a, b| a < b);
        }
    }

    /// Empties the table, keeping its memory (for the next extension of a portable restore).
    #[cfg(feature = "portable")]
    pub fn clear(&mut self) {
        self.by_place.clear();
        self.lo_places.clear();
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
