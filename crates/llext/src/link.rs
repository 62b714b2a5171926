//! Linking: resolve symbols, allocate blocks, copy sections, build the GOT and stubs, apply relocations, read
//! the export table, seal the memory. Written once for every architecture; the formulas come from a
//! [`Relocator`].

use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashTable;

use object::elf;

use crate::arch::{Inputs, Pairing, Problem, Relocator};
use crate::elf::{Object, SymbolPlace};
use crate::error::{Error, Result};
use crate::fallible;
use crate::layout::{self, LayoutOptions, Placement, Plan, RegionKind};
use crate::limits::Limits;
use crate::memory::{BlockList, BlockRequest, Memory, Permission};
use crate::record::{BlockRec, Parts, Record, View};
use crate::symbols::{hash_name, never_rehashed};

// The fixup table portable contexts carry is recorded with the `portable` feature only. Without it a load
// that asks for one is refused (`Error::FeatureDisabled`) before it links, and this stand-in, which can
// never be made, takes the recorder's place so that no recording code is compiled.
#[cfg(feature = "portable")]
pub(crate) mod fixups;
#[cfg(not(feature = "portable"))]
mod fixups {
    use super::{Resolver, SymState};
    use crate::arch::{Inputs, Relocator};
    use crate::elf::Object;
    use crate::error::{Error, Result};
    use crate::memory::{BlockList, Permission};
    use alloc::vec::Vec;

    pub(super) enum Recorder {}

    // The recorder's signatures, so that the linker compiles either way.
    #[allow(clippy::extra_unused_type_parameters)]
    impl Recorder {
        #[allow(clippy::too_many_arguments)]
        pub(super) fn new<R: Resolver>(
            _: &Object<'_>,
            _: &mut [SymState],
            _: usize,
            _: &[u32],
            _: &R,
            _: &BlockList,
            _: impl Fn(usize) -> Option<Permission>,
            _: &mut Vec<u8>,
        ) -> Result<Recorder> {
            Err(Error::FeatureDisabled {
                feature: "portable",
                what: "recording fixups for portable contexts (`LoadOptions::portable`)",
            })
        }

        pub(super) fn slots<A: Relocator>(
            &mut self,
            _: &SymState,
            _: Option<u64>,
            _: [u64; 3],
            _: &BlockList,
        ) -> Result<()> {
            match *self {}
        }

        pub(super) fn relocation<A: Relocator>(
            &mut self,
            _: &SymState,
            _: &Inputs,
            _: Option<u64>,
            _: Option<u64>,
            _: &BlockList,
        ) -> Result<()> {
            match *self {}
        }

        pub(super) fn table(&self) -> &[u8] {
            match *self {}
        }
    }
}

/// At most this many problems are collected for one extension before giving up.
const MAX_PROBLEMS: usize = 64;

/// Who provides a resolved symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A built-in; `copyable` if direct references may read a copy of its value ([`crate::Export::copyable`]),
    /// `function` if they may reach a stub for it instead ([`crate::Export::function`]).
    Builtin { copyable: bool, function: bool },
    /// An export of the extension in this registry slot, in this block of its ([`NO_BLOCK`] if none).
    Extension(u32, u8),
}

/// How the linker looks up names outside the object.
pub(crate) trait Resolver {
    fn resolve(&self, name: &[u8]) -> Option<(u64, Owner)>;
    /// Who already exports `name`, if anyone (for duplicate-export checks).
    fn exporter(&self, name: &[u8]) -> Option<String>;
    /// A loaded extension that defines `name` as a global symbol without exporting it, if any (for the
    /// hint of an undefined symbol: a search through every extension, on that error path only).
    fn definer(&self, name: &[u8]) -> Option<String>;
    /// `addr`'s offset in block `block` of extension `slot`, if it lies there or at its end (for fixup
    /// records, which only the `portable` feature makes).
    #[cfg(feature = "portable")]
    fn locate(&self, slot: u32, block: u8, addr: u64) -> Option<u32>;
    /// The index of export `name` among the exports of the extension in `slot` (for fixup records of
    /// exports that move with none of its blocks; looked up only then, so that the per-symbol state a
    /// load keeps stays small).
    #[cfg(feature = "portable")]
    fn export_index(&self, slot: u32, name: &[u8]) -> Option<u32>;
}

/// A (start, length) range in an extension's string buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Str {
    pub start: u32,
    pub len: u32,
}

/// A region of a loaded extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RegionRec {
    pub kind: RegionKind,
    pub addr: usize,
    pub size: usize,
    pub align: usize,
    /// The span of the extension's storage holding its in-place sections of this kind (no block memory).
    pub in_place: bool,
}

/// A loaded section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SectionRec {
    pub name: Str,
    pub kind: RegionKind,
    /// Offset inside its region (the in-place one when `in_place`).
    pub offset: usize,
    pub size: usize,
    /// Used where it lies in the extension's storage.
    pub in_place: bool,
}

/// A named address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SymRec {
    pub name: Str,
    pub addr: usize,
    /// The extension's block the address moves with: its own section's (a label at the very end of one
    /// block is also the start of the next one when the provider put them back to back). [`NO_BLOCK`]
    /// for addresses that do not move with the extension: absolute symbols, exports of other code.
    pub block: u8,
}

/// [`SymRec::block`] of a symbol outside the extension's blocks.
pub(crate) const NO_BLOCK: u8 = u8::MAX;
/// While linking: an export whose address field a relocation wrote other than whole from its start.
const TOUCHED: u8 = u8::MAX - 1;

/// Everything the registry keeps about one linked extension: its blocks and its encoded record.
#[derive(Debug)]
pub(crate) struct Linked {
    pub blocks: BlockList,
    pub record: Record,
}

impl Linked {
    pub fn view(&self) -> View<'_> {
        self.record.view()
    }

    pub fn memory_size(&self) -> usize {
        self.blocks.iter().map(|(b, _)| b.size()).sum()
    }

    pub fn free<M: Memory>(mut self, memory: &mut M) {
        for (block, permission) in self.blocks.take_all() {
            memory.free_finalized(block, permission);
        }
    }
}

/// Frees blocks on every early return.
struct Blocks<'m, M: Memory> {
    memory: &'m mut M,
    blocks: BlockList,
}

impl<M: Memory> Drop for Blocks<'_, M> {
    fn drop(&mut self) {
        for (block, _) in self.blocks.take_all() {
            self.memory.free(block);
        }
    }
}

/// The symbol is absent ([`Inputs::absent`]): an undefined symbol nothing provides (weak, else the link
/// failed) or an absolute symbol at 0. These are the symbols whose fixups target `Target::Absolute(0)`, so a
/// portable restore decides the same.
fn is_absent(sym: &crate::elf::Symbol<'_>, state: &SymState) -> bool {
    state.addr == 0
        && match (sym.place, state.owner) {
            (SymbolPlace::Absolute, _) => true,
            // Nothing provides it, or another extension exports 0 outside its blocks (a weak symbol it
            // lacks itself, or an absolute 0): `fixup_target` records `Target::Absolute(0)` for both.
            (SymbolPlace::Undefined, None | Some(Owner::Extension(_, NO_BLOCK))) => true,
            _ => false,
        }
}

/// Per-symbol link state: one vector for the whole object, no allocation per symbol.
#[derive(Debug, Clone, Copy)]
struct SymState {
    addr: u64,
    got: u32,
    stub: u32,
    /// The slot (in the copies at the end of the bss region) holding a copy of a copyable built-in's
    /// value, for direct references to it.
    copy: u32,
    /// Some relocation refers to the symbol directly as data ([`Needs::copy`](crate::arch::Needs::copy)).
    direct: bool,
    referenced: bool,
    valid: bool,
    /// For undefined symbols: who provides it.
    owner: Option<Owner>,
    /// Where the symbol is found again when blocks move (computed once, for fixup records, which only the
    /// `portable` feature makes).
    #[cfg(feature = "portable")]
    target: fixups::Target,
}

pub(crate) const NO_SLOT: u32 = u32::MAX;

pub(crate) struct Request<'a> {
    pub name: &'a str,
    pub limits: &'a Limits,
    pub layout: LayoutOptions,
    /// Record the fixup table portable snapshots need.
    pub record_fixups: bool,
    /// The input outlives the extension: read-only sections may be used where they lie.
    pub in_place: bool,
    /// What the object needs of the core: its record says so, for a restore's checks.
    pub needs: crate::record::Needs,
}

/// Problems found while linking, up to a cap.
struct Problems<'a> {
    extension: &'a str,
    list: Vec<Error>,
}

impl<'a> Problems<'a> {
    fn new(extension: &'a str) -> Self {
        Problems {
            extension,
            list: Vec::new(),
        }
    }

    /// Notes one more problem. Past [`MAX_PROBLEMS`] the load stops with those found so far, closed by
    /// [`Error::TooManyProblems`].
    fn push(&mut self, e: Error) -> Result<()> {
        if self.list.len() >= MAX_PROBLEMS {
            fallible::push(
                &mut self.list,
                Error::TooManyProblems {
                    listed: MAX_PROBLEMS,
                },
            )?;
            return self.check();
        }
        fallible::push(&mut self.list, e)
    }

    /// Fails with the problems found so far, if any.
    fn check(&mut self) -> Result<()> {
        let mut list = core::mem::take(&mut self.list);
        match list.len() {
            0 => Ok(()),
            1 => Err(list.pop().unwrap_or(Error::Internal("problem list"))),
            _ => Err(Error::Link {
                extension: String::from(self.extension),
                problems: list,
            }),
        }
    }
}

/// Checks the sections ([`check_sections`]), then makes definitions of the object out of what a static
/// link would define before resolving the rest:
///
/// - `__start_X` and `__stop_X`, for a section `X` whose name is a C identifier, are the start and the
///   end of that section (the idiom of tables gathered with `__attribute__((section("X")))`), when the
///   object refers to them. Several loaded sections of that name (rustc makes one per `#[link_section]`
///   static) are bounded together from the first to the last in file order, which layout places side by
///   side as long as they need one kind of memory and no other section of that kind lies between them;
///   they are recorded in `bound_groups`, so that they are copied, never used in place.
/// - A weak definition of default visibility whose name a loaded extension exports becomes a reference
///   to that export, as a static link lets a strong definition in another object win over a weak one (and
///   as `dlopen` would interpose it); the weak body stays in the extension, unused. Built-ins do not take
///   over weak definitions: like the members of a static C library, they only provide what is undefined.
pub(crate) fn prepare_symbols<R: Resolver>(
    obj: &mut Object<'_>,
    resolver: &R,
    layout: LayoutOptions,
) -> Result<()> {
    check_sections(obj)?;
    let Object {
        symbols,
        sections,
        bound_groups,
        ..
    } = obj;
    // Loaded sections by name, built at the first symbol that asks for a bound: one sort, then a search
    // for each.
    let mut by_name: Option<Vec<(&[u8], usize)>> = None;
    // Which runs of `by_name` (by their first position) are in `bound_groups` already.
    let mut grouped: Vec<bool> = Vec::new();
    for (index, sym) in symbols.iter_mut().enumerate().skip(1) {
        match sym.place {
            SymbolPlace::Undefined => {
                let Some((section, at_end)) = section_bound(sym.name) else {
                    continue;
                };
                if by_name.is_none() {
                    let list = loaded_by_name(sections, layout)?;
                    grouped = fallible::vec(list.len())?;
                    grouped.resize(list.len(), false);
                    by_name = Some(list);
                }
                let by_name = by_name.as_deref().unwrap_or_default();
                let start = by_name.partition_point(|(name, _)| *name < section);
                let named = by_name.get(start..).unwrap_or_default();
                let named = named
                    .get(..named.partition_point(|(name, _)| *name == section))
                    .unwrap_or_default();
                // In file order (`by_name` is sorted by name, then index).
                let (Some(&(_, first)), Some(&(_, last))) = (named.first(), named.last()) else {
                    continue;
                };
                let newly = first != last
                    && grouped
                        .get_mut(start)
                        .is_some_and(|done| !core::mem::replace(done, true));
                if newly {
                    // Several sections of the name (checked once): bounded together if layout puts
                    // them side by side, which it does when they need one kind of memory and no other
                    // section of that kind lies between them in the file (layout keeps file order).
                    let kind = |i: usize| {
                        sections
                            .get(i)
                            .and_then(|s| layout::classify(s, layout).ok().flatten())
                    };
                    let apart = |reason| Error::BadSymbol {
                        index,
                        name: sym.name_lossy(),
                        reason,
                    };
                    let first_kind = kind(first);
                    if named.iter().any(|&(_, i)| kind(i) != first_kind) {
                        return Err(apart(
                            "several sections have the name it bounds and need different memory \
                             (writable and read-only, say), so no one range holds them (combine them \
                             with `ld -r`)",
                        ));
                    }
                    let between = (first..=last).any(|i| {
                        sections.get(i).is_some_and(|s| s.name != section) && kind(i) == first_kind
                    });
                    if between {
                        return Err(apart(
                            "several sections have the name it bounds, with other sections between \
                             them in the file, so no one range holds them alone (combine them with \
                             `ld -r`)",
                        ));
                    }
                    bound_groups
                        .try_reserve(named.len())
                        .map_err(|_| fallible::oom::<usize>(named.len()))?;
                    // Room made above.
                    bound_groups.extend(named.iter().map(|&(_, member)| member));
                    // The range starts at the largest alignment of its members, as a static link starts
                    // the section it concatenates them into: else an empty or less aligned first member
                    // would put `__start_X` before the padding that aligns the first entry.
                    let align = named
                        .iter()
                        .filter_map(|&(_, i)| sections.get(i).map(|s| s.align))
                        .max()
                        .unwrap_or(1);
                    if let Some(s) = sections.get_mut(first) {
                        s.align = s.align.max(align);
                    }
                }
                let found = if at_end { last } else { first };
                sym.place = SymbolPlace::Section(found);
                sym.value = if at_end {
                    sections.get(found).map_or(0, |s| s.size)
                } else {
                    0
                };
            }
            SymbolPlace::Section(_) | SymbolPlace::Common => {
                if sym.is_weak()
                    && sym.visibility == elf::STV_DEFAULT.0
                    && !sym.name.is_empty()
                    && matches!(resolver.resolve(sym.name), Some((_, Owner::Extension(..))))
                {
                    sym.place = SymbolPlace::Undefined;
                }
            }
            SymbolPlace::Absolute => {}
        }
    }
    Ok(())
}

/// The sections layout loads whose names can have bounds, with their indexes, sorted by name.
fn loaded_by_name<'s>(
    sections: &[crate::elf::Section<'s>],
    layout: LayoutOptions,
) -> Result<Vec<(&'s [u8], usize)>> {
    let mut by_name = fallible::vec(sections.len())?;
    for (index, s) in sections.iter().enumerate() {
        let loaded = || layout::classify(s, layout).ok().flatten().is_some();
        if section_bound_name(s.name) && loaded() {
            by_name.push((s.name, index));
        }
    }
    fallible::sort_by(&mut by_name, |a, b| a < b);
    Ok(by_name)
}

/// The section a `__start_X` or `__stop_X` symbol bounds, and whether it is its end.
fn section_bound(name: &[u8]) -> Option<(&[u8], bool)> {
    let (section, at_end) = match name.strip_prefix(b"__start_") {
        Some(section) => (section, false),
        None => (name.strip_prefix(b"__stop_")?, true),
    };
    section_bound_name(section).then_some((section, at_end))
}

/// Whether a section name can have bound symbols: a C identifier.
fn section_bound_name(name: &[u8]) -> bool {
    name.first().is_some_and(|c| !c.is_ascii_digit())
        && name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Refuses (from [`prepare_symbols`], before any symbol is looked up) objects that need what no extension
/// gets: thread-local storage (which `-fPIC` code would otherwise report only as an undefined
/// `__tls_get_addr`), or an executable stack, which a `.note.GNU-stack` section marked executable asks for
/// (GCC makes one for a nested function whose address is taken: its trampoline is written to the stack
/// and run there), or an indirect function (a GNU ifunc: its symbol's address is that of a resolver to be
/// called at load time, so linking calls to it as to a function would run the resolver instead).
fn check_sections(obj: &Object<'_>) -> Result<()> {
    for (index, sym) in obj.symbols.iter().enumerate() {
        if sym.kind == elf::STT_GNU_IFUNC.0 && sym.place != SymbolPlace::Undefined {
            return Err(Error::BadSymbol {
                index,
                name: sym.name_lossy(),
                reason:
                    "an indirect function (GNU ifunc: `__attribute__((ifunc))`, `target_clones`), \
                         whose resolver extensions do not run: call the implementation directly",
            });
        }
    }
    for (index, s) in obj.sections.iter().enumerate() {
        let reason = if s.is_alloc() && s.flags & elf::SHF_TLS.0 != 0 {
            // Named by a variable of the section where there is one: the section alone does not say
            // which variable of which member of an archive `ld -r` took (a C library's `errno`, say).
            let variable = obj.symbols.iter().enumerate().find(|(_, sym)| {
                sym.kind == elf::STT_TLS.0 && sym.place == SymbolPlace::Section(index)
            });
            if let Some((at, sym)) = variable {
                return Err(Error::BadSymbol {
                    index: at,
                    name: sym.name_lossy(),
                    reason:
                        "a thread-local variable (`__thread`, `_Thread_local`, `thread_local`; \
                             also a static C library's `errno`): thread-local storage (`.tdata`, `.tbss`) \
                             is not supported in extensions",
                });
            }
            "thread-local storage is not supported in extensions"
        } else if s.name == b".note.GNU-stack" && s.flags & elf::SHF_EXECINSTR.0 != 0 {
            "the object asks for an executable stack, and extensions run on non-executable stacks (a \
             GCC nested function whose address is taken runs a trampoline there; `ld -r` also asks for \
             one when an input has no .note.GNU-stack: if nothing runs code on the stack, relink with \
             `ld -r -z noexecstack`)"
        } else {
            continue;
        };
        return Err(Error::BadSection {
            index,
            name: s.name_lossy(),
            reason,
        });
    }
    Ok(())
}

/// Checks the header fields that decide whether this backend can load the object at all.
pub(crate) fn check_header<A: Relocator>(obj: &Object<'_>) -> Result<()> {
    check_type(obj)?;
    if obj.machine != A::MACHINE {
        return Err(Error::WrongMachine {
            expected: A::MACHINE,
            found: obj.machine,
        });
    }
    if (obj.class.is_64 && A::POINTER_SIZE != 8) || (!obj.class.is_64 && A::POINTER_SIZE != 4) {
        return Err(Error::Unsupported {
            what: "ELF class for this machine",
            value: if obj.class.is_64 { 64 } else { 32 },
        });
    }
    if !obj.class.little_endian {
        return Err(Error::Unsupported {
            what: "byte order: big-endian",
            value: 2,
        });
    }
    Ok(())
}

/// Only relocatable objects are loaded (checked before the machine, so that type errors read as such).
pub(crate) fn check_type(obj: &Object<'_>) -> Result<()> {
    if obj.e_type != elf::ET_REL.0 {
        return Err(Error::Unsupported {
            what: "ELF type: only relocatable objects (ET_REL, `cc -c` output) are loaded",
            value: u64::from(obj.e_type),
        });
    }
    Ok(())
}

fn reloc_name<A: Relocator>(r_type: u32) -> &'static str {
    A::name(r_type).unwrap_or("unknown")
}

/// Loads and links `obj` into fresh blocks from `memory`. Nothing is run. On error every block is freed.
pub(crate) fn link<A: Relocator, M: Memory, R: Resolver>(
    obj: &Object<'_>,
    req: &Request<'_>,
    resolver: &R,
    memory: &mut M,
) -> Result<Linked> {
    check_header::<A>(obj)?;
    let ptr = A::POINTER_SIZE;
    let mut problems = Problems::new(req.name);

    // Pass 1: which symbols are used by relocations in loaded sections, and which need GOT slots or stubs.
    let mut syms: Vec<SymState> = Vec::new();
    syms.try_reserve_exact(obj.symbols.len())
        .map_err(|_| fallible::oom::<SymState>(obj.symbols.len()))?;
    syms.resize(
        obj.symbols.len(),
        SymState {
            addr: 0,
            got: NO_SLOT,
            stub: NO_SLOT,
            copy: NO_SLOT,
            direct: false,
            referenced: false,
            valid: true,
            owner: None,
            #[cfg(feature = "portable")]
            target: fixups::Target::Absolute(0),
        },
    );
    let loaded = |index: usize| {
        obj.sections
            .get(index)
            .and_then(|s| layout::classify(s, req.layout).ok().flatten())
            .is_some()
    };
    let (mut got_slots, mut stub_slots, mut copy_slots) = (0u32, 0u32, 0u32);
    for table in &obj.relocs {
        if !loaded(table.target) {
            continue;
        }
        for r in table.iter(obj.endian) {
            let Some(state) = syms.get_mut(r.symbol as usize) else {
                problems.push(Error::BadSymbol {
                    index: r.symbol as usize,
                    name: String::new(),
                    reason: "relocation refers to a symbol index out of range",
                })?;
                continue;
            };
            // A type that patches nothing only marks a dependency (Arm's `.ARM.exidx` names the unwinder's
            // personality routine so), which an extension never needs resolved.
            if A::is_none(r.r_type) {
                continue;
            }
            state.referenced = true;
            let needs = A::needs(r.r_type);
            state.direct |= A::COPIES && needs.copy;
            if needs.got_slot && state.got == NO_SLOT {
                state.got = got_slots;
                got_slots += 1;
            }
            let external = obj
                .symbols
                .get(r.symbol as usize)
                .is_some_and(|s| s.place == SymbolPlace::Undefined);
            if needs.stub && external && state.stub == NO_SLOT && A::STUB_SIZE > 0 {
                state.stub = stub_slots;
                stub_slots += 1;
            }
        }
    }

    // Resolve external symbols before allocating anything: a missing symbol costs no memory.
    let mut deps: Vec<u32> = Vec::new();
    let mut got_symbol = None;
    for (index, (sym, state)) in obj.symbols.iter().zip(syms.iter_mut()).enumerate() {
        if index == 0 || sym.place != SymbolPlace::Undefined || !state.referenced {
            continue;
        }
        if sym.name == b"_GLOBAL_OFFSET_TABLE_" {
            // The linker-defined GOT base (x86_64 psABI): our GOT, which must then exist.
            got_symbol = Some(index);
            got_slots = got_slots.max(1);
            continue;
        }
        match resolver.resolve(sym.name) {
            Some((addr, owner)) => {
                state.addr = addr;
                state.owner = Some(owner);
                if A::COPIES && state.direct {
                    match owner {
                        Owner::Builtin { copyable: true, .. } => {
                            state.copy = copy_slots;
                            copy_slots += 1;
                        }
                        // Direct references to a function reach a stub for it (see `canonical`).
                        Owner::Builtin { function: true, .. } if state.stub == NO_SLOT => {
                            state.stub = stub_slots;
                            stub_slots += 1;
                        }
                        _ => {}
                    }
                }
                if let Owner::Extension(slot, _) = owner {
                    if !deps.contains(&slot) {
                        fallible::push(&mut deps, slot)?;
                    }
                }
            }
            None if sym.is_weak() => state.addr = 0,
            None => problems.push(Error::Undefined {
                extension: String::from(req.name),
                symbol: sym.name_lossy(),
                defined_by: resolver.definer(sym.name),
            })?,
        }
    }
    problems.check()?;

    let got = (u64::from(got_slots) * ptr as u64, ptr as u64);
    let stubs = (
        u64::from(stub_slots) * A::STUB_SIZE as u64,
        A::STUB_ALIGN as u64,
    );
    let mut in_place = if req.in_place {
        in_place_candidates(obj, req.layout, memory.executes_in_place())?
    } else {
        Vec::new()
    };
    let mut blocks = Blocks {
        memory,
        blocks: BlockList::default(),
    };
    // Plan and allocate; then, if some in-place section is out of reach of a reference from where the
    // copied sections landed, copy it too and start over (each round copies more, so this ends).
    let (plan, block_addr) = loop {
        let generated = layout::Generated {
            got,
            stubs,
            copies: (u64::from(copy_slots) * ptr as u64, ptr as u64),
            slack: u64::from(req.record_fixups),
        };
        let plan = layout::plan(obj, req.layout, req.limits, generated, &in_place)?;
        let block_addr = allocate(&plan, &mut blocks, req.record_fixups)?;
        if plan.in_place.iter().all(|r| r.size == 0) {
            break (plan, block_addr);
        }
        if !copy_out_of_reach::<A>(obj, &plan, &block_addr, &syms, &mut in_place) {
            break (plan, block_addr);
        }
        for (block, _) in blocks.blocks.take_all() {
            blocks.memory.free(block);
        }
    };

    let region_addr = |kind: RegionKind| region_start(&plan, &block_addr, kind);
    let section_addr = |p: &Placement| placed_addr(&plan, &block_addr, p);

    // Copy section contents (in-place sections stay where they are).
    for (index, placement) in plan.placements.iter().enumerate() {
        let (Some(p), Some(s)) = (placement, obj.sections.get(index)) else {
            continue;
        };
        if s.is_nobits() || s.size == 0 || p.in_place {
            continue;
        }
        let src = s
            .data
            .get(..s.size as usize)
            .ok_or_else(|| Error::BadSection {
                index,
                name: s.name_lossy(),
                reason: "contents lie outside the file",
            })?;
        let dst = window(&mut blocks.blocks, section_addr(p), src.len())?;
        dst.copy_from_slice(src);
    }

    // Defined symbols' addresses.
    let bss = region_addr(RegionKind::Bss);
    for (index, (sym, state)) in obj.symbols.iter().zip(syms.iter_mut()).enumerate() {
        match sym.place {
            SymbolPlace::Undefined => {}
            SymbolPlace::Absolute => state.addr = sym.value,
            SymbolPlace::Common => {}
            SymbolPlace::Section(s) => match plan.placements.get(s).copied().flatten() {
                Some(p) => state.addr = section_addr(&p).wrapping_add(sym.value),
                None => {
                    state.valid = false;
                    if state.referenced && index != 0 {
                        problems.push(Error::BadSymbol {
                            index,
                            name: sym.name_lossy(),
                            reason: "referenced by loaded code but defined in a section that is not loaded",
                        })?;
                    }
                }
            },
        }
    }
    for &(index, offset) in &plan.commons {
        if let Some(state) = syms.get_mut(index) {
            state.addr = bss + offset;
        }
    }

    // GOT slots and stubs.
    let got_base = region_addr(RegionKind::Got);
    let copy_base = region_addr(RegionKind::Bss) + plan.copies;
    if let Some(state) = got_symbol.and_then(|i| syms.get_mut(i)) {
        state.addr = got_base;
    }
    let stub_base = region_addr(RegionKind::Stubs);
    let mut strings: Vec<u8> = Vec::new();
    // The fixup table portable contexts need, if asked for (it names built-ins first in the strings).
    let mut recorder = if req.record_fixups {
        Some(fixups::Recorder::new(
            obj,
            &mut syms,
            (got_slots + stub_slots + copy_slots) as usize,
            &deps,
            resolver,
            &blocks.blocks,
            |index| home_permission(&plan, obj.symbols.get(index)),
            &mut strings,
        )?)
    } else {
        None
    };
    // The stub at which a built-in function that direct references take the address of is reached
    // ([`crate::Export::function`]): by those references, by pointer tables and by the object's GOT slot
    // for it, so that the extension sees one address for it (as an executable's GOT holds the PLT entry
    // that is its canonical address).
    let canonical_stub = |state: &SymState| {
        (A::COPIES
            && state.direct
            && state.stub != NO_SLOT
            && matches!(state.owner, Some(Owner::Builtin { function: true, .. })))
        .then(|| stub_base + u64::from(state.stub) * A::STUB_SIZE as u64)
    };
    for (index, state) in syms.iter().enumerate() {
        let canonical = canonical_stub(state);
        if let Some(recorder) = recorder.as_mut() {
            let bases = [got_base, stub_base, copy_base];
            recorder.slots::<A>(state, canonical, bases, &blocks.blocks)?;
        }
        if state.got != NO_SLOT {
            let at = got_base + u64::from(state.got) * ptr as u64;
            let bytes = canonical.unwrap_or(state.addr).to_le_bytes();
            let dst = window(&mut blocks.blocks, at, ptr)?;
            dst.copy_from_slice(
                bytes
                    .get(..ptr)
                    .ok_or_else(|| Error::Internal("pointer size"))?,
            );
        }
        if state.stub != NO_SLOT {
            let at = stub_base + u64::from(state.stub) * A::STUB_SIZE as u64;
            let dst = window(&mut blocks.blocks, at, A::STUB_SIZE)?;
            A::write_stub(dst, at, state.addr).map_err(|_| Error::BadSymbol {
                index,
                name: obj
                    .symbols
                    .get(index)
                    .map(|s| s.name_lossy())
                    .unwrap_or_default(),
                reason: "its address is out of reach of this machine's call stubs (above 4 GiB for 32-bit code)",
            })?;
        }
        if A::COPIES && state.copy != NO_SLOT {
            let at = copy_base + u64::from(state.copy) * ptr as u64;
            let value = builtin_value(state.addr, ptr)?;
            let dst = window(&mut blocks.blocks, at, ptr)?;
            dst.copy_from_slice(
                value
                    .get(..ptr)
                    .ok_or_else(|| Error::Internal("pointer size"))?,
            );
        }
    }

    // HI/LO pairs: what each HI part computes, found again by its LO parts (see `pairs`).
    let his = crate::pairs::HiValues::collect::<A>(
        obj,
        |index| {
            plan.placements
                .get(index)
                .copied()
                .flatten()
                .map(|p| section_addr(&p))
        },
        |index| {
            syms.get(index as usize)
                .filter(|st| st.valid)
                .map(|st| crate::pairs::SymbolInputs {
                    addr: st.addr,
                    got_slot: (st.got != NO_SLOT)
                        .then(|| got_base + u64::from(st.got) * ptr as u64),
                    stub: (st.stub != NO_SLOT)
                        .then(|| stub_base + u64::from(st.stub) * A::STUB_SIZE as u64),
                })
        },
        got_base,
    )?;

    // The export table's entries, and for each the block of the symbol a relocation put in its address
    // field: the block its address moves with ([`SymRec::block`]).
    let entry = 2 * ptr as u64;
    let export_table = plan
        .regions
        .get(RegionKind::Exports.index())
        .filter(|r| r.size > 0)
        .map(|r| (region_addr(RegionKind::Exports), r.size));
    let mut export_blocks: Vec<u8> = Vec::new();
    // Entries from this index on were written by a relocation of no fixed size: no block for them.
    let mut touched_from = u64::MAX;
    if let Some((_, size)) = export_table {
        let count = (size / entry) as usize;
        export_blocks = fallible::vec(count)?;
        export_blocks.resize(count, NO_BLOCK);
    }
    // Relocations.
    for table in &obj.relocs {
        let Some(placement) = plan.placements.get(table.target).copied().flatten() else {
            continue;
        };
        let Some(target) = obj.sections.get(table.target) else {
            continue;
        };
        if placement.in_place {
            if table.len() > 0 {
                return Err(Error::Internal("relocations for a section used in place"));
            }
            continue;
        }
        if target.is_nobits() {
            problems.push(Error::BadSection {
                index: table.index,
                name: obj.section_name(table.index),
                reason: "relocations applied to a section without contents",
            })?;
            continue;
        }
        let base = section_addr(&placement);
        for r in table.iter(obj.endian) {
            if A::is_none(r.r_type) {
                continue;
            }
            let (Some(state), Some(sym)) = (
                syms.get(r.symbol as usize),
                obj.symbols.get(r.symbol as usize),
            ) else {
                continue; // already reported in pass 1
            };
            let bad = |value: i64, reason: &'static str| Error::BadRelocation {
                kind: reloc_name::<A>(r.r_type),
                section: target.name_lossy(),
                offset: r.offset,
                symbol: match sym.place {
                    // Section symbols have no name of their own: show the section's.
                    SymbolPlace::Section(s) if sym.name.is_empty() => obj.section_name(s),
                    _ => sym.name_lossy(),
                },
                value,
                reason,
            };
            if r.offset >= target.size {
                problems.push(bad(r.offset as i64, "place lies outside its section"))?;
                continue;
            }
            if !state.valid {
                continue; // reported with the symbol
            }
            let p = base + r.offset;
            let len = (target.size - r.offset) as usize;
            let place = window(&mut blocks.blocks, p, len)?;
            let a = match r.addend {
                Some(a) => a,
                None => match A::implicit_addend(r.r_type, place) {
                    Ok(a) => a,
                    Err(problem) => {
                        problems.push(describe::<A>(
                            problem,
                            r.r_type,
                            r.offset,
                            target.name_lossy(),
                            &bad,
                        ))?;
                        continue;
                    }
                },
            };
            // A direct data reference to a copyable built-in reads the copy of its value instead. A built-in
            // function that such references take the address of is reached at its stub, which lies within
            // their reach, by every reference that is not a call or through the GOT, so that the
            // extension sees one address for it ([`crate::Export::function`]).
            let needs = A::needs(r.r_type);
            let copy_slot = (A::COPIES && needs.copy && state.copy != NO_SLOT)
                .then(|| copy_base + u64::from(state.copy) * ptr as u64);
            let canonical = canonical_stub(state).filter(|_| !needs.got_slot && !needs.stub);
            let inputs = Inputs {
                r_type: r.r_type,
                s: copy_slot.or(canonical).unwrap_or(state.addr),
                a,
                p,
                z: sym.size,
                got_slot: (state.got != NO_SLOT)
                    .then(|| got_base + u64::from(state.got) * ptr as u64),
                got: got_base,
                stub: (state.stub != NO_SLOT)
                    .then(|| stub_base + u64::from(state.stub) * A::STUB_SIZE as u64),
                func: crate::arch::is_function::<A>(sym, r.r_type),
                hi: None,
                absent: is_absent(sym, state),
                relink: false,
            };
            let inputs = Inputs {
                hi: his.partner::<A>(&inputs),
                ..inputs
            };
            if let Err(problem) = A::apply(&inputs, place) {
                problems.push(describe::<A>(
                    problem,
                    r.r_type,
                    r.offset,
                    target.name_lossy(),
                    &bad,
                ))?;
                continue;
            }
            if let Some((start, size)) = export_table.filter(|_| !export_blocks.is_empty()) {
                // The address fields the relocation may write: one written from its start takes the
                // block of the relocation's symbol (the last such relocation's, as the last one wins);
                // one written otherwise, in part or from elsewhere, moves with no block.
                let at = p.wrapping_sub(start);
                let width = A::max_write(r.r_type) as u64;
                if at < size && width > 2 * entry {
                    // A write of no fixed size (a ULEB128): every entry from here on, in one step.
                    touched_from = touched_from.min(at / entry);
                } else if at < size {
                    let end = at + width;
                    for k in at / entry..=(end - 1) / entry {
                        let field = k * entry + ptr as u64;
                        let Some(b) = export_blocks.get_mut(k as usize) else {
                            continue;
                        };
                        if at == field && *b != TOUCHED {
                            *b = match sym.place {
                                SymbolPlace::Section(_) | SymbolPlace::Common => own_place(
                                    &blocks.blocks,
                                    home_permission(&plan, Some(sym)),
                                    state.addr,
                                )
                                .map_or(NO_BLOCK, |(b, _)| b),
                                _ => NO_BLOCK,
                            };
                        } else if field < end && at < field + ptr as u64 {
                            *b = TOUCHED;
                        }
                    }
                }
            }
            if let Some(recorder) = recorder.as_mut() {
                recorder.relocation::<A>(state, &inputs, copy_slot, canonical, &blocks.blocks)?;
            }
        }
    }
    problems.check()?;

    // Bookkeeping: names, sections, regions, exports, globals, init/fini.
    let intern = |bytes: &[u8], strings: &mut Vec<u8>| -> Result<Str> {
        let start =
            u32::try_from(strings.len()).map_err(|_| Error::Internal("string table size"))?;
        let len = u32::try_from(bytes.len()).map_err(|_| Error::Internal("string size"))?;
        fallible::extend(strings, bytes)?;
        Ok(Str { start, len })
    };
    let placed = plan.placements.iter().filter(|p| p.is_some()).count();
    let names_len: usize = plan
        .placements
        .iter()
        .zip(&obj.sections)
        .filter(|(p, _)| p.is_some())
        .map(|(_, s)| s.name.len())
        .sum();
    fallible::reserve(&mut strings, names_len)?;
    let mut sections = fallible::vec(placed)?;
    for (index, placement) in plan.placements.iter().enumerate() {
        let (Some(p), Some(s)) = (placement, obj.sections.get(index)) else {
            continue;
        };
        sections.push(SectionRec {
            name: intern(s.name, &mut strings)?,
            kind: p.kind,
            offset: p.offset as usize,
            size: s.size as usize,
            in_place: p.in_place,
        });
    }
    // At most one copied and one in-place region of each kind.
    let mut regions = fallible::vec(2 * RegionKind::ALL.len())?;
    for kind in RegionKind::ALL {
        let Some(r) = plan.regions.get(kind.index()) else {
            continue;
        };
        if r.size > 0 {
            regions.push(RegionRec {
                kind,
                addr: region_addr(kind) as usize,
                size: r.size as usize,
                align: r.align as usize,
                in_place: false,
            });
        }
    }
    for kind in RegionKind::ALL {
        if let Some(r) = plan.in_place.get(kind.index()).filter(|r| r.size > 0) {
            regions.push(RegionRec {
                kind,
                addr: r.addr as usize,
                size: r.size as usize,
                align: r.align as usize,
                in_place: true,
            });
        }
    }

    // Exported symbols: {name pointer, address} pairs, pointer-sized fields, as Zephyr lays them out.
    let mut exports: Vec<SymRec> = Vec::new();
    if let Some((start, size)) = export_table {
        let bad = |entry: usize, reason| Error::BadExportTable {
            extension: String::from(req.name),
            entry,
            reason,
        };
        if size % entry != 0 {
            return Err(bad(
                0,
                "table size is not a whole number of {name, address} entries",
            ));
        }
        let count = (size / entry) as usize;
        exports = fallible::vec(count)?;
        let mut clashes = Problems::new(req.name);
        // Names seen so far, by hash (as indexes into `exports`): a duplicate is found in constant time, so
        // a hostile table of n names costs O(n), not O(n²). Room for every entry is reserved up front, so
        // the table never rehashes and its hasher is never called.
        let mut name_bytes = obj.name_bytes;
        let mut seen: HashTable<u32> = HashTable::new();
        seen.try_reserve(count, never_rehashed)
            .map_err(|_| fallible::oom::<u32>(count))?;
        for i in 0..count {
            let at = start + i as u64 * entry;
            let name_ptr = read_word(&mut blocks.blocks, at, ptr)?;
            let addr = read_word(&mut blocks.blocks, at + ptr as u64, ptr)?;
            let name = c_string(&mut blocks.blocks, name_ptr)
                .or_else(|| in_place_c_string(obj, &plan, name_ptr))
                .ok_or_else(|| {
                    bad(
                        i,
                        "name does not point to a NUL-terminated string inside the extension",
                    )
                })?;
            if name.is_empty() {
                return Err(bad(i, "empty name"));
            }
            // Entries may name suffixes of one long string, like symbols: counted with the object's names.
            req.limits.count_name(&mut name_bytes, name)?;
            let name = fallible::to_vec(name)?;
            // Every clash is reported (the entry is left out, and the load fails after the table).
            let clash = |owner| Error::DuplicateExport {
                extension: String::from(req.name),
                symbol: String::from_utf8_lossy(&name).into_owned(),
                owner,
            };
            if let Some(owner) = resolver.exporter(&name) {
                clashes.push(clash(owner))?;
                continue;
            }
            let h = hash_name(&name);
            let earlier = seen.find(h, |&k| {
                exports.get(k as usize).is_some_and(|e: &SymRec| {
                    strings.get(e.name.start as usize..(e.name.start + e.name.len) as usize)
                        == Some(&name[..])
                })
            });
            if earlier.is_some() {
                clashes.push(clash(alloc::format!("the same extension (`{}`)", req.name)))?;
                continue;
            }
            // The block of the symbol the entry was relocated against, if the address lies in it (or at
            // its end): an addend that leaves it makes an address that moves with nothing.
            let block = export_blocks
                .get(i)
                .filter(|_| (i as u64) < touched_from)
                .and_then(|&b| Some((b, blocks.blocks.get(b as usize)?)))
                .and_then(|(b, (k, _))| place_in(b as usize, k, addr, true))
                .map_or(NO_BLOCK, |(b, _)| b);
            let rec = SymRec {
                name: intern(&name, &mut strings)?,
                addr: addr as usize,
                block,
            };
            let index =
                u32::try_from(exports.len()).map_err(|_| Error::Internal("export count"))?;
            seen.insert_unique(h, index, never_rehashed);
            exports.push(rec);
        }
        clashes.check()?;
    }

    let global_count = obj
        .symbols
        .iter()
        .filter(|s| s.is_global() && s.place != SymbolPlace::Undefined)
        .count();
    let mut globals = fallible::vec(global_count)?;
    for (sym, state) in obj.symbols.iter().zip(&syms) {
        let defined = matches!(
            sym.place,
            SymbolPlace::Section(_) | SymbolPlace::Common | SymbolPlace::Absolute
        );
        if !defined || !sym.is_global() || !state.valid || sym.name.is_empty() {
            continue;
        }
        if sym.kind == elf::STT_SECTION.0 || sym.kind == elf::STT_FILE.0 {
            continue;
        }
        let block = match sym.place {
            SymbolPlace::Absolute => None,
            _ => own_place(
                &blocks.blocks,
                home_permission(&plan, Some(sym)),
                state.addr,
            ),
        };
        fallible::push(
            &mut globals,
            SymRec {
                name: intern(sym.name, &mut strings)?,
                addr: state.addr as usize,
                block: block.map_or(NO_BLOCK, |(b, _)| b),
            },
        )?;
    }
    // By name (`View::global` searches them), then address: a total order, so the same on every load.
    let text = |x: Str| {
        strings
            .get(x.start as usize..(x.start + x.len) as usize)
            .unwrap_or(&[])
    };
    fallible::sort_by(&mut globals, |a, b| {
        (text(a.name), a.addr) < (text(b.name), b.addr)
    });

    // Constructors in execution order; destructors in reverse order of construction.
    let (mut init, mut fini) = (Vec::new(), Vec::new());
    for &index in &plan.array_order {
        let (Some(Some(p)), Some(s)) = (plan.placements.get(index), obj.sections.get(index)) else {
            continue;
        };
        let legacy = s.name.starts_with(b".ctors") || s.name.starts_with(b".dtors");
        let list = match p.kind {
            RegionKind::FiniArray => &mut fini,
            _ => &mut init,
        };
        let first = list.len();
        let count = (s.size / ptr as u64) as usize;
        for i in 0..count {
            let f = read_word(&mut blocks.blocks, section_addr(p) + (i * ptr) as u64, ptr)?;
            // 0 and -1 are the sentinels legacy .ctors lists use.
            if f != 0 && f != u64::MAX && !(ptr == 4 && f == u64::from(u32::MAX)) {
                fallible::push(list, f as usize)?;
            }
        }
        if legacy {
            // .ctors run last-to-first, .dtors first-to-last: store both in the order the arrays imply.
            if let Some(added) = list.get_mut(first..) {
                added.reverse();
            }
        }
    }
    fini.reverse();

    // Seal: final protections, code made visible to instruction fetch.
    for (block, permission) in blocks.blocks.iter() {
        blocks.memory.finalize(block, *permission)?;
    }
    // The record: one allocation holding everything the registry keeps (and a context saves). The link
    // state goes first, so that the heap's high-water mark is not the record on top of it.
    drop(syms);
    drop(his);
    drop(plan);
    let mut saved = [BlockRec::EMPTY; 3];
    for ((block, permission), rec) in blocks.blocks.iter().zip(saved.iter_mut()) {
        let align = regions
            .iter()
            .filter(|r: &&RegionRec| !r.in_place && r.kind.permission() == *permission)
            .map(|r| r.align)
            .max()
            .unwrap_or(1);
        *rec = BlockRec {
            addr: block.addr() as u64,
            size: block.size() as u64,
            align: align as u64,
            token: block.token() as u64,
            permission: *permission,
            hash: 0,
        };
    }
    let record = Parts {
        name: req.name,
        deps: &deps,
        strings: &strings,
        blocks: saved.get(..blocks.blocks.len()).unwrap_or(&[]),
        regions: &regions,
        sections: &sections,
        exports: &exports,
        globals: &globals,
        init: &init,
        fini: &fini,
        fixups: recorder.as_ref().map(fixups::Recorder::table),
        needs: req.needs,
    }
    .encode()?;
    let blocks = core::mem::take(&mut blocks.blocks);
    Ok(Linked { blocks, record })
}

/// Allocates one zeroed block per permission the plan uses, into `blocks`; returns each block's address
/// (0 where unused), indexed like [`Permission::ALL`]. With `slack`, each block is one byte longer than
/// its content, so no block ends where another one starts: a pointer one past the end of the last array
/// of a block is then inside it, and a portable restore moves it with that block and not with whichever
/// one a provider put right after it (an arena places blocks back to back). A portable restore allocates
/// the saved sizes, slack included.
fn allocate<M: Memory>(plan: &Plan, blocks: &mut Blocks<'_, M>, slack: bool) -> Result<[u64; 3]> {
    let mut block_addr = [0u64; 3];
    for (i, permission) in Permission::ALL.iter().enumerate() {
        let Some(&(size, align)) = plan.blocks.get(i) else {
            continue;
        };
        if size == 0 {
            continue;
        }
        let request = BlockRequest {
            size: usize::try_from(size)
                .ok()
                .and_then(|size| size.checked_add(usize::from(slack)))
                .ok_or_else(|| Error::OutOfMemory {
                    size: usize::MAX,
                    align: 1,
                })?,
            align: usize::try_from(align).unwrap_or(usize::MAX),
            permission: *permission,
        };
        let mut block = blocks.memory.allocate(&request)?;
        if block.size() < request.size || block.addr() % request.align != 0 {
            blocks.memory.free(block);
            return Err(Error::Internal(
                "memory provider returned a short or misaligned block",
            ));
        }
        // SAFETY: the block was just allocated, is not finalised, and nothing else refers to it.
        unsafe { block.bytes_mut() }.fill(0);
        if let Some(a) = block_addr.get_mut(i) {
            *a = block.addr() as u64;
        }
        if let Err((block, _)) = blocks.blocks.push((block, *permission)) {
            blocks.memory.free(block);
            return Err(Error::Internal("more blocks than permissions"));
        }
    }
    Ok(block_addr)
}

/// The start of a region inside its block.
fn region_start(plan: &Plan, block_addr: &[u64; 3], kind: RegionKind) -> u64 {
    let b = block_addr
        .get(layout::block_index(kind.permission()))
        .copied()
        .unwrap_or(0);
    b + plan.regions.get(kind.index()).map_or(0, |r| r.offset)
}

/// Where a placed section is: in its region's block, or where it lies in the input when used in place.
fn placed_addr(plan: &Plan, block_addr: &[u64; 3], p: &Placement) -> u64 {
    if p.in_place {
        plan.in_place.get(p.kind.index()).map_or(0, |r| r.addr) + p.offset
    } else {
        region_start(plan, block_addr, p.kind) + p.offset
    }
}

/// The sections an in-place load may leave where they lie in the input (by section index): constants —
/// and code, if the provider runs code outside its blocks — that no relocation patches and whose address in
/// the input meets their alignment. Whether every reference reaches them is checked once blocks exist.
fn in_place_candidates(obj: &Object<'_>, options: LayoutOptions, code: bool) -> Result<Vec<bool>> {
    let mut keep: Vec<bool> = Vec::new();
    keep.try_reserve_exact(obj.sections.len())
        .map_err(|_| Error::OutOfMemory {
            size: obj.sections.len(),
            align: 1,
        })?;
    keep.extend(obj.sections.iter().map(|s| {
        let eligible = match layout::classify(s, options) {
            Ok(Some(RegionKind::Rodata)) => true,
            Ok(Some(RegionKind::Text)) => code,
            _ => false,
        };
        eligible
            && !s.is_nobits()
            && s.size > 0
            && s.flags & elf::SHF_WRITE.0 == 0
            && (s.data.len() as u64) >= s.size
            && (s.data.as_ptr() as u64) % s.align.max(1) == 0
    }));
    for table in &obj.relocs {
        if table.len() > 0 {
            if let Some(k) = keep.get_mut(table.target) {
                *k = false;
            }
        }
    }
    // Sections bounded together are copied side by side: where they lie in the file, other sections
    // come between.
    for &member in &obj.bound_groups {
        if let Some(k) = keep.get_mut(member) {
            *k = false;
        }
    }
    Ok(keep)
}

/// Takes out of `in_place` the in-place sections that some relocation of a copied section cannot reach from
/// where its place now lies — a PC-relative reference from code in RAM to constants in distant flash, a
/// 32-bit absolute address of storage above 4 GiB — found by applying each such relocation to a scratch
/// copy of its place. Returns whether any was taken out.
fn copy_out_of_reach<A: Relocator>(
    obj: &Object<'_>,
    plan: &Plan,
    block_addr: &[u64; 3],
    syms: &[SymState],
    in_place: &mut [bool],
) -> bool {
    let ptr = A::POINTER_SIZE as u64;
    let got = region_start(plan, block_addr, RegionKind::Got);
    let stubs = region_start(plan, block_addr, RegionKind::Stubs);
    let placement = |index: usize| plan.placements.get(index).copied().flatten();
    let mut changed = false;
    for table in &obj.relocs {
        let (Some(at), Some(section)) = (placement(table.target), obj.sections.get(table.target))
        else {
            continue;
        };
        if at.in_place || section.is_nobits() {
            continue;
        }
        for r in table.iter(obj.endian) {
            let (Some(sym), Some(state)) = (
                obj.symbols.get(r.symbol as usize),
                syms.get(r.symbol as usize),
            ) else {
                continue;
            };
            let SymbolPlace::Section(home) = sym.place else {
                continue;
            };
            let Some(target) = placement(home).filter(|p| p.in_place) else {
                continue;
            };
            // LO parts take their value from a HI partner, which is the one that reaches the target.
            if A::is_none(r.r_type)
                || matches!(
                    A::pairing(r.r_type),
                    Pairing::LoAtSymbol | Pairing::LoAtPlace
                )
                || !in_place.get(home).copied().unwrap_or(false)
            {
                continue;
            }
            let mut scratch = [0u8; 16];
            let start = usize::try_from(r.offset).unwrap_or(usize::MAX);
            let end = section.size.min(section.data.len() as u64) as usize;
            let Some(src) = section.data.get(start..end) else {
                continue; // reported when the relocation is applied
            };
            let len = src.len().min(scratch.len());
            let place = &mut scratch[..len];
            place.copy_from_slice(&src[..len]);
            let a = match r.addend {
                Some(a) => a,
                None => match A::implicit_addend(r.r_type, place) {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let inputs = Inputs {
                r_type: r.r_type,
                s: placed_addr(plan, block_addr, &target).wrapping_add(sym.value),
                a,
                p: placed_addr(plan, block_addr, &at) + r.offset,
                z: sym.size,
                got_slot: (state.got != NO_SLOT).then(|| got + u64::from(state.got) * ptr),
                got,
                stub: (state.stub != NO_SLOT)
                    .then(|| stubs + u64::from(state.stub) * A::STUB_SIZE as u64),
                func: sym.kind == elf::STT_FUNC.0,
                hi: None,
                absent: false,
                relink: false,
            };
            if A::apply(&inputs, place).is_err() {
                if let Some(keep) = in_place.get_mut(home) {
                    *keep = false;
                    changed = true;
                }
            }
        }
    }
    changed
}

/// A NUL-terminated string at `addr` inside a section used in place.
fn in_place_c_string<'data>(obj: &Object<'data>, plan: &Plan, addr: u64) -> Option<&'data [u8]> {
    obj.sections
        .iter()
        .zip(&plan.placements)
        .filter(|(_, p)| p.is_some_and(|p| p.in_place))
        .find_map(|(s, _)| {
            let start = s.data.as_ptr() as u64;
            let off = usize::try_from(addr.checked_sub(start)?).ok()?;
            let bytes = s.data.get(..usize::try_from(s.size).ok()?)?;
            let tail = bytes.get(off..)?;
            let nul = tail.iter().position(|&b| b == 0)?;
            tail.get(..nul)
        })
}

/// The block index holding `addr` and the offset inside it.
///
/// A block that contains `addr` wins over one that merely ends there: blocks may be adjacent (an arena hands
/// them out back to back), and an address at the start of one block must move with that block. Only an
/// address one past the end of every block (a symbol marking a section's end) belongs to the block it ends.
pub(crate) fn block_offset(blocks: &BlockList, addr: u64) -> Option<(u8, u32)> {
    let at = |end_too: bool| {
        blocks
            .iter()
            .enumerate()
            .find_map(|(i, (b, _))| place_in(i, b, addr, end_too))
    };
    at(false).or_else(|| at(true))
}

/// Block `i`'s index and `addr`'s offset in it, if `addr` lies in the block (or at its end, if `end_too`).
pub(crate) fn place_in(
    i: usize,
    block: &crate::memory::Block,
    addr: u64,
    end_too: bool,
) -> Option<(u8, u32)> {
    let offset = addr.checked_sub(block.addr() as u64)?;
    let size = block.size() as u64;
    if offset > size || (offset == size && !end_too) {
        return None;
    }
    Some((u8::try_from(i).ok()?, u32::try_from(offset).ok()?))
}

/// The permission of the block a defined symbol belongs to: its section's (or `.bss`'s, for a common
/// symbol). `None` for other symbols and for sections used in place.
fn home_permission(plan: &Plan, sym: Option<&crate::elf::Symbol<'_>>) -> Option<Permission> {
    match sym?.place {
        SymbolPlace::Section(s) => plan
            .placements
            .get(s)
            .copied()
            .flatten()
            .filter(|p| !p.in_place)
            .map(|p| p.kind.permission()),
        SymbolPlace::Common => Some(RegionKind::Bss.permission()),
        _ => None,
    }
}

/// The pointer-sized value of the copyable built-in at `addr` ([`crate::Export::copyable`]), as
/// little-endian bytes.
pub(crate) fn builtin_value(addr: u64, ptr: usize) -> Result<[u8; 8]> {
    if ptr != core::mem::size_of::<usize>() {
        return Err(Error::Unsupported {
            what: "copying a built-in's value for a target of another pointer size than the host's",
            value: ptr as u64,
        });
    }
    // SAFETY: only exports made with `Export::copyable` are copied, whose contract is that the address
    // points to an initialised pointer-sized value that stays readable while the table is used; the read
    // does not rely on its alignment.
    let value = unsafe { core::ptr::read_unaligned(addr as usize as *const usize) };
    Ok((value as u64).to_le_bytes())
}

/// The block and offset of an address of the extension's own: in the block of `home` (the permission of
/// the symbol's section), its end included, else in whichever block holds it.
fn own_place(blocks: &BlockList, home: Option<Permission>, addr: u64) -> Option<(u8, u32)> {
    home.and_then(|p| offset_in(blocks, p, addr))
        .or_else(|| block_offset(blocks, addr))
}

/// The index of the block of `permission`, and `addr`'s offset in it, if `addr` lies in it or at its end.
fn offset_in(blocks: &BlockList, permission: Permission, addr: u64) -> Option<(u8, u32)> {
    blocks
        .iter()
        .enumerate()
        .filter(|(_, (_, p))| *p == permission)
        .find_map(|(i, (b, _))| place_in(i, b, addr, true))
}

fn describe<A: Relocator>(
    problem: Problem,
    r_type: u32,
    offset: u64,
    section: String,
    bad: &dyn Fn(i64, &'static str) -> Error,
) -> Error {
    match problem {
        Problem::Unsupported => Error::UnsupportedRelocation {
            kind: reloc_name::<A>(r_type),
            r_type,
            section,
            offset,
        },
        Problem::Overflow { value, reason } => bad(value, reason),
        Problem::OutsideSection => bad(offset as i64, "place lies outside its section"),
        Problem::Invalid { value, reason } => bad(value, reason),
        Problem::Internal => {
            Error::Internal("relocation needs a GOT slot or stub that was not reserved")
        }
    }
}

/// The bytes [addr, addr+len) of whichever block holds them.
fn window(blocks: &mut BlockList, addr: u64, len: usize) -> Result<&mut [u8]> {
    for (block, _) in blocks.iter_mut() {
        let start = block.addr() as u64;
        let end = start + block.size() as u64;
        if addr >= start && addr.checked_add(len as u64).is_some_and(|e| e <= end) {
            let off = (addr - start) as usize;
            // SAFETY: blocks are not finalised until linking is over, and no other reference into them is live.
            let bytes = unsafe { block.bytes_mut() };
            return bytes
                .get_mut(off..off + len)
                .ok_or_else(|| Error::Internal("block window"));
        }
    }
    Err(Error::Internal("address outside the extension's blocks"))
}

fn read_word(blocks: &mut BlockList, addr: u64, ptr: usize) -> Result<u64> {
    let bytes = window(blocks, addr, ptr)?;
    let mut w = [0u8; 8];
    w.get_mut(..ptr)
        .ok_or_else(|| Error::Internal("pointer size"))?
        .copy_from_slice(bytes);
    Ok(u64::from_le_bytes(w))
}

/// A NUL-terminated string at `addr`, if it lies wholly inside one block.
fn c_string(blocks: &mut BlockList, addr: u64) -> Option<&[u8]> {
    for (block, _) in blocks.iter_mut() {
        let start = block.addr() as u64;
        let end = start + block.size() as u64;
        if addr >= start && addr < end {
            // SAFETY: as in `window`.
            let bytes = unsafe { block.bytes_mut() };
            let tail = bytes.get((addr - start) as usize..)?;
            let nul = tail.iter().position(|&b| b == 0)?;
            return tail.get(..nul);
        }
    }
    None
}
