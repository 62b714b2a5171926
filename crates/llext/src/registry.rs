//! The registry: loaded extensions by name, their exports, dependencies and use counts, behind one lock.

use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashTable;

use crate::arch::{self, with_backend};
use crate::elf;
use crate::error::{Error, Result};
use crate::fallible;
use crate::layout::{LayoutOptions, RegionKind};
use crate::limits::Limits;
use crate::link::{self, Linked, Owner, Request, Resolver, SymRec};
use crate::memory::{Memory, Permission};
use crate::record::{Refusal, Table};
use crate::symbols::{hash_name, ExportTable};
use crate::sync::Lock;

/// Largest number of integer arguments [`Registry::call`] passes.
pub const MAX_CALL_ARGS: usize = 6;

/// A handle on a loaded extension: a slot index plus a generation, so a handle kept past unload is refused
/// instead of reaching another extension that reused the slot, and the registry's tag, so a handle given
/// to another registry is refused instead of reaching that registry's extension in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
    pub(crate) registry: u32,
}

/// A tag for a new registry, different from every other registry's in this program (up to 2^32 of them;
/// on targets without 32-bit atomic read-modify-write, two registries created at once by two threads may
/// share one).
fn next_registry_tag() -> u32 {
    use core::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    #[cfg(target_has_atomic = "32")]
    {
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
    #[cfg(not(target_has_atomic = "32"))]
    {
        let tag = NEXT.load(Ordering::Relaxed);
        NEXT.store(tag.wrapping_add(1), Ordering::Relaxed);
        tag
    }
}

/// Where the sections of an extension live once it is loaded (Zephyr's storage modes, in the part that
/// matters to a loader: whether the input may be used in place).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Storage {
    /// Every loaded section is copied into blocks from the [`Memory`] provider (the default); the input
    /// may be dropped after loading.
    #[default]
    Copy,
    /// The input outlives the extension (e.g. it lies in memory-mapped flash): read-only sections that no
    /// relocation patches, whose place in the input meets their alignment and that every reference can
    /// reach from the copied sections, are used where they lie and cost no block memory. Code qualifies
    /// only where the provider runs code outside its blocks ([`Memory::executes_in_place`]). Everything
    /// else is copied. Only [`Registry::load_static`] accepts it.
    InPlace,
}

/// How to load an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Run `.preinit_array`, `.init_array` and `.ctors` right after linking (default `true`), after those
    /// of any dependency loaded or restored without running its own (as [`Registry::bring_up`] does); the
    /// load is refused with [`Error::Busy`] while a dependency's constructors run (in another thread, or
    /// the load is called from them), and leaves nothing loaded. With
    /// `false` the extension is linked but none of its code runs, until [`Registry::bring_up`];
    /// [`Registry::unload`] runs no destructors of one never brought up.
    pub bring_up: bool,
    /// Load `.eh_frame` too (default `false`: unwind tables cost memory and are rarely used by extensions).
    pub keep_eh_frame: bool,
    /// Record the table of address-dependent locations that portable snapshots need (default `true` with
    /// the `std` and `portable` features, `false` otherwise: it costs about 40 bytes per relocation that
    /// crosses blocks, and each block is allocated one byte longer than its content, so that no block
    /// starts where another's content ends and a pointer to the end of an array moves with it). A build
    /// without the `portable` feature refuses `true` ([`Error::FeatureDisabled`]).
    pub portable: bool,
    /// Copy every section, or use read-only ones in place (default [`Storage::Copy`]).
    pub storage: Storage,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            bring_up: true,
            keep_eh_frame: false,
            portable: cfg!(all(feature = "std", feature = "portable")),
            storage: Storage::Copy,
        }
    }
}

/// What [`Registry::unload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unloaded {
    /// The use count dropped to zero: destructors ran and every byte was freed.
    Freed,
    /// Only the use count was lowered; the extension stays loaded with this many users.
    StillInUse(u32),
}

/// A region of a loaded extension, as reported by [`Registry::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    /// What the region holds.
    pub kind: RegionKind,
    /// Start address.
    pub addr: usize,
    /// Size in bytes.
    pub size: usize,
    /// Alignment (the strictest of its sections).
    pub align: usize,
    /// Final protection.
    pub permission: Permission,
    /// The span of the extension's storage that holds its in-place sections of this kind: no block
    /// memory, and it may cover bytes of the input between them.
    pub in_place: bool,
}

/// A loaded section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    /// Section name.
    pub name: String,
    /// The region it was placed in.
    pub region: RegionKind,
    /// Offset inside the region.
    pub offset: usize,
    /// Address: the region's plus `offset`, or 0 for an empty section whose region the extension does not
    /// have (an empty `.data` in an extension without other writable data: no region is made for nothing).
    pub addr: usize,
    /// Size in bytes.
    pub size: usize,
    /// Used where it lies in the extension's storage ([`Storage::InPlace`]); `offset` is then inside the
    /// in-place region of its kind.
    pub in_place: bool,
}

/// A named address in a loaded extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolInfo {
    /// Name.
    pub name: String,
    /// Address.
    pub addr: usize,
    /// True if listed in `.exported_sym` (other extensions may link against it).
    pub exported: bool,
}

/// Where an address lies in the loaded extensions ([`Registry::locate`]): for a fault handler's or a
/// profiler's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The extension holding it.
    pub id: ExtId,
    /// Its name.
    pub extension: String,
    /// The region holding it.
    pub region: RegionKind,
    /// The extension's global symbol nearest at or below the address in that region, if any.
    pub symbol: Option<String>,
    /// The address's offset from that symbol, or from the region's start without one.
    pub offset: usize,
}

/// [`Location`] with its names lent from the registry ([`Registry::locate_with`]): nothing allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocationRef<'a> {
    /// The extension holding it.
    pub id: ExtId,
    /// Its name.
    pub extension: &'a str,
    /// The region holding it.
    pub region: RegionKind,
    /// The extension's global symbol nearest at or below the address in that region, if any.
    pub symbol: Option<&'a str>,
    /// The address's offset from that symbol, or from the region's start without one.
    pub offset: usize,
}

impl LocationRef<'_> {
    /// The same, with names of its own.
    pub fn to_location(self) -> Location {
        Location {
            id: self.id,
            extension: String::from(self.extension),
            region: self.region,
            symbol: self.symbol.map(String::from),
            offset: self.offset,
        }
    }
}

impl core::fmt::Display for LocationRef<'_> {
    /// `` `symbol`+0x12 in extension `name` `` (or `` text+0x40 in extension `name` ``).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.symbol {
            Some(symbol) => write!(f, "`{symbol}`+{:#x}", self.offset)?,
            None => write!(f, "{}+{:#x}", self.region.as_str(), self.offset)?,
        }
        write!(f, " in extension `{}`", self.extension)
    }
}

impl core::fmt::Display for Location {
    /// As [`LocationRef`]'s.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        LocationRef {
            id: self.id,
            extension: &self.extension,
            region: self.region,
            symbol: self.symbol.as_deref(),
            offset: self.offset,
        }
        .fmt(f)
    }
}

/// A snapshot of one loaded extension's state, for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionInfo {
    /// Its handle.
    pub id: ExtId,
    /// Its unique name.
    pub name: String,
    /// How many times it was loaded and not yet unloaded.
    pub use_count: u32,
    /// Names of the extensions it resolved symbols from.
    pub dependencies: Vec<String>,
    /// Names of the loaded extensions that depend on it.
    pub dependents: Vec<String>,
    /// Its regions, in placement order.
    pub regions: Vec<RegionInfo>,
    /// Its loaded sections.
    pub sections: Vec<SectionInfo>,
    /// Exported symbols first, then the other global symbols (sorted by name).
    pub symbols: Vec<SymbolInfo>,
    /// Number of constructors.
    pub init_count: usize,
    /// Number of destructors.
    pub fini_count: usize,
    /// Bytes of extension memory it holds.
    pub memory: usize,
}

/// What an extension's own code is doing outside the registry's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Nothing: it may be unloaded and saved.
    Ready,
    /// Its constructors run. It is linked and visible; unloading it to zero, saving it and `forget_all`
    /// are refused until they return.
    Constructing,
    /// Its destructors run. It is out of the name and export indexes (saves leave it out; `forget_all` is
    /// refused); its memory is freed after them.
    Destructing,
}

pub(crate) struct Ext {
    pub use_count: u32,
    pub dependents: u32,
    pub initialised: bool,
    pub phase: Phase,
    /// Scratch mark for graph walks under the lock (saving a dependency closure without allocating).
    pub mark: bool,
    /// Scratch: the extension's index in the context being saved.
    pub rank: u32,
    /// The slots loaded just before and after this one ([`NO_EXT`] at the ends): the load order, walked
    /// in one pass when saving.
    pub prev: u32,
    pub next: u32,
    pub linked: Linked,
}

/// No extension (the ends of the load-order list).
pub(crate) const NO_EXT: u32 = u32::MAX;

pub(crate) struct Slot {
    pub generation: u32,
    pub ext: Option<Ext>,
}

/// An export of an extension just inserted whose name was taken already ([`Inner::insert`]).
pub(crate) struct Clash {
    /// Its index among the extension's exports.
    pub export: u32,
    /// The slot of the extension that has it (maybe the same one), or `None` for a built-in.
    pub owner: Option<u32>,
}

pub(crate) struct Inner<M> {
    pub memory: M,
    pub builtins: ExportTable,
    pub limits: Limits,
    pub machine: u16,
    /// Pointer width (bytes) of the extensions this registry holds: the running program's own for its native
    /// machine, fixed by the machine for Arm, AArch64 and x86-64, and for another machine's RISC-V (one
    /// `e_machine`, two classes) by the first extension loaded or restored.
    pub pointer_size: Option<u8>,
    /// The floating-point calling convention objects must follow, if known.
    pub float_abi: Option<arch::FloatAbi>,
    /// Objects must hold Thumb code only (the registry's code runs on a Cortex-M).
    pub thumb_only: bool,
    /// The instructions the core runs, if known: objects that may use more are refused.
    pub isa: Option<arch::Isa>,
    pub slots: Vec<Slot>,
    /// Slot index by extension name.
    pub names: HashTable<u32>,
    /// (slot, export index) by exported name.
    pub exports: HashTable<(u32, u32)>,
    /// Every slot below this one is occupied (where the search for a free slot starts).
    pub free_from: usize,
    /// The first and last loaded extension still loaded ([`NO_EXT`] if none).
    pub first: u32,
    pub last: u32,
    /// This registry's tag in every handle it gives ([`ExtId::registry`]).
    pub tag: u32,
}

/// The set of loaded extensions.
///
/// Every operation takes one lock for its whole duration, so concurrent loads and unloads never interleave
/// their checks and updates.
///
/// Constructors and destructors of extensions run outside the lock, so they may call back into the registry:
/// look symbols up, call them, load or unload other extensions. An extension is linked and visible to other
/// threads before its constructors run; while they run, unloading it to zero, saving it and
/// [`Registry::forget_all`] are refused with [`Error::Busy`]. Destructors run after the extension has left
/// the name and export indexes, so nothing new can link against it, saves leave it out, and `forget_all`
/// is refused; its memory is freed once they return.
///
/// ```no_run
/// # #[cfg(feature = "std")] {
/// static HOST: &[llext::Export] = llext::exports![];
/// let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::new(HOST));
/// let ext = registry.load_file("hello.o").unwrap();
/// // SAFETY: `hello` is a C function taking up to six integer arguments.
/// let r = unsafe { registry.call("hello", &[1, 2]) }.unwrap();
/// registry.unload(ext).unwrap();
/// # }
/// ```
pub struct Registry<M: Memory> {
    pub(crate) inner: Lock<Inner<M>>,
}

impl<M: Memory> core::fmt::Debug for Registry<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registry")
            .field("len", &self.len())
            .finish()
    }
}

/// What [`Registry::unload`] does after the steps taken under the lock.
enum Unloading {
    /// Nothing more: the use count went down, or the extension is freed.
    Done(Unloaded),
    /// Run the destructors, then free the extension.
    Destruct,
}

/// Takes `ext` (in `slot`) out of the name and export indexes.
fn unindex(names: &mut HashTable<u32>, exports: &mut HashTable<(u32, u32)>, slot: u32, ext: &Ext) {
    let view = ext.linked.view();
    if let Ok(entry) = names.find_entry(hash_name(view.name_bytes()), |&s| s == slot) {
        entry.remove();
    }
    for (i, e) in view.exports().enumerate() {
        let h = hash_name(e.map(|e| view.str(e.name)).unwrap_or(&[]));
        if let Ok(entry) = exports.find_entry(h, |&r| r == (slot, i as u32)) {
            entry.remove();
        }
    }
}

pub(crate) fn ext_at(slots: &[Slot], slot: u32) -> Option<&Ext> {
    slots.get(slot as usize).and_then(|s| s.ext.as_ref())
}

impl Ext {
    /// The extension's name (kept in its record).
    pub fn name(&self) -> &str {
        self.linked.view().name()
    }

    /// [`Error::Busy`] while its constructors or destructors run.
    pub(crate) fn check_ready(&self) -> Result<()> {
        let running = match self.phase {
            Phase::Ready => return Ok(()),
            Phase::Constructing => "constructors",
            Phase::Destructing => "destructors",
        };
        Err(Error::Busy {
            extension: self.name_string(),
            running,
        })
    }

    fn name_string(&self) -> String {
        String::from(self.name())
    }
}

fn export_name(slots: &[Slot], (slot, i): (u32, u32)) -> &[u8] {
    ext_at(slots, slot)
        .and_then(|e| {
            let v = e.linked.view();
            v.export(i as usize).map(|x| v.str(x.name))
        })
        .unwrap_or(&[])
}

/// The hash of the name of the extension in `slot` (what the name index is keyed by).
fn name_hash(slots: &[Slot], slot: u32) -> u64 {
    ext_at(slots, slot)
        .map(|e| hash_name(e.linked.view().name_bytes()))
        .unwrap_or(0)
}

/// The hasher of the name index, for its rehashes. Every rehash of the table goes through this one closure
/// type, so the table's growing code is built once.
fn name_hasher(slots: &[Slot]) -> impl Fn(&u32) -> u64 + '_ {
    move |&s| name_hash(slots, s)
}

/// The hasher of the export index (see [`name_hasher`]).
fn export_hasher(slots: &[Slot]) -> impl Fn(&(u32, u32)) -> u64 + '_ {
    move |&r| hash_name(export_name(slots, r))
}

pub(crate) struct View<'a> {
    pub builtins: &'a ExportTable,
    pub slots: &'a [Slot],
    pub exports: &'a HashTable<(u32, u32)>,
}

impl View<'_> {
    fn export(&self, name: &[u8]) -> Option<(u32, u32, SymRec)> {
        find_export(self.slots, self.exports, name)
    }
}

/// The slot, index and entry of the extension export `name`.
fn find_export(
    slots: &[Slot],
    exports: &HashTable<(u32, u32)>,
    name: &[u8],
) -> Option<(u32, u32, SymRec)> {
    find_export_hashed(slots, exports, name, hash_name(name))
}

/// [`find_export`] for a name whose hash is known.
fn find_export_hashed(
    slots: &[Slot],
    exports: &HashTable<(u32, u32)>,
    name: &[u8],
    h: u64,
) -> Option<(u32, u32, SymRec)> {
    let &(slot, i) = exports.find(h, |&r| export_name(slots, r) == name)?;
    let e = ext_at(slots, slot)?.linked.view().export(i as usize)?;
    Some((slot, i, e))
}

impl Resolver for View<'_> {
    fn resolve(&self, name: &[u8]) -> Option<(u64, Owner)> {
        if let Some(e) = self.builtins.entry(name) {
            let owner = Owner::Builtin {
                copyable: e.is_copyable(),
                function: e.is_function(),
            };
            return Some((e.addr() as u64, owner));
        }
        self.export(name)
            .map(|(slot, _, e)| (e.addr as u64, Owner::Extension(slot, e.block)))
    }

    #[cfg(feature = "portable")]
    fn export_index(&self, slot: u32, name: &[u8]) -> Option<u32> {
        self.export(name)
            .filter(|&(s, ..)| s == slot)
            .map(|(_, i, _)| i)
    }

    #[cfg(feature = "portable")]
    fn locate(&self, slot: u32, block: u8, addr: u64) -> Option<u32> {
        let (b, _) = ext_at(self.slots, slot)?
            .linked
            .blocks
            .get(block as usize)?;
        link::place_in(block as usize, b, addr, true).map(|(_, offset)| offset)
    }

    fn exporter(&self, name: &[u8]) -> Option<String> {
        exporter_hashed(
            self.builtins,
            self.slots,
            self.exports,
            name,
            hash_name(name),
        )
    }

    fn definer(&self, name: &[u8]) -> Option<String> {
        // Not one whose destructors run: it is out of the export index, which is why nothing resolved
        // (it may well export the symbol), and on its way out.
        self.slots
            .iter()
            .filter_map(|s| s.ext.as_ref())
            .filter(|e| e.phase != Phase::Destructing)
            .find(|e| e.linked.view().global_rec(name).is_some())
            .map(|e| String::from(e.name()))
    }
}

/// Who already exports `name` (hash `h`): a built-in, or a loaded extension (by name).
fn exporter_hashed(
    builtins: &ExportTable,
    slots: &[Slot],
    exports: &HashTable<(u32, u32)>,
    name: &[u8],
    h: u64,
) -> Option<String> {
    if builtins.get_hashed(name, h).is_some() {
        return Some(owner_text(slots, None, None));
    }
    let (slot, ..) = find_export_hashed(slots, exports, name, h)?;
    ext_at(slots, slot)?;
    Some(owner_text(slots, Some(slot), None))
}

/// Who has an export's name, for [`Error::DuplicateExport`]: the built-in table (`None`), the extension in
/// slot `owner`, or, when that is `own`, the same extension.
fn owner_text(slots: &[Slot], owner: Option<u32>, own: Option<u32>) -> String {
    match owner.and_then(|o| ext_at(slots, o)) {
        None => String::from("the built-in export table"),
        Some(o) if owner == own => alloc::format!("the same extension (`{}`)", o.name()),
        Some(o) => alloc::format!("extension `{}`", o.name()),
    }
}

/// `bytes` as text, or a note that they are not UTF-8 (names a report lends rather than copies).
fn utf8_or_note(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("(a name not in UTF-8)")
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.contains('\0') {
        return Err(Error::BadName {
            name: String::from(name),
        });
    }
    Ok(())
}

/// Calls a C function at `addr` with up to six integer arguments.
///
/// # Safety
/// `addr` must be the address of a function with the C ABI that takes at most six integer (or pointer)
/// arguments and returns an integer, and that is safe to call with these arguments.
unsafe fn call_address(addr: usize, args: &[i64]) -> Result<i64> {
    if args.len() > MAX_CALL_ARGS {
        return Err(Error::TooManyArguments {
            given: args.len(),
            max: MAX_CALL_ARGS,
        });
    }
    if addr == 0 {
        return Err(Error::Internal("call of a null address"));
    }
    // Arguments and result are C `long`: pointer-sized, so one register each on 32- and 64-bit targets.
    let mut a = [0isize; MAX_CALL_ARGS];
    for (i, (dst, src)) in a.iter_mut().zip(args).enumerate() {
        *dst = isize::try_from(*src).map_err(|_| Error::ArgumentRange {
            index: i,
            value: *src,
        })?;
    }
    type Fn6 = extern "C" fn(isize, isize, isize, isize, isize, isize) -> isize;
    // SAFETY: the caller guarantees `addr` is such a function; extra arguments are ignored by the callee in
    // every supported C calling convention (they sit in caller-saved registers or caller-popped stack).
    let f: Fn6 = unsafe { core::mem::transmute::<usize, Fn6>(addr) };
    Ok(f(a[0], a[1], a[2], a[3], a[4], a[5]) as i64)
}

/// Runs a list of `void (*)(void)` functions.
///
/// # Safety
/// Every address must be a constructor or destructor of a loaded, sealed extension.
unsafe fn run_all(functions: impl Iterator<Item = usize>) {
    for f in functions {
        type Hook = extern "C" fn();
        // SAFETY: the caller guarantees each entry is a `void (void)` C function in sealed extension code.
        let hook: Hook = unsafe { core::mem::transmute::<usize, Hook>(f) };
        hook();
    }
}

impl<M: Memory> Registry<M> {
    /// An empty registry that allocates from `memory` and offers `builtins` to extensions. It loads objects
    /// for the machine it runs on.
    pub fn new(memory: M, builtins: ExportTable) -> Self {
        Self::for_machine(memory, builtins, arch::native_machine().unwrap_or(0))
    }

    /// An empty registry for objects of `machine` (`e_machine`), e.g. to check cross-built objects on a host
    /// without running them, or to save and restore their contexts there.
    ///
    /// All its extensions have one pointer width: the running program's for its own machine, 32 bits for
    /// Arm, 64 for AArch64 and x86-64; for another machine's RISC-V, the width of the ISA
    /// [`Registry::set_isa`] gives it, or else the class of the first object loaded (or context restored).
    /// Objects of another class are refused with [`Error::WrongClass`].
    ///
    /// A registry for another machine than the one the program runs on never runs extension code: loads
    /// link without running constructors (whatever [`LoadOptions::bring_up`] says), unloads run no
    /// destructors (not even those of restored extensions initialised elsewhere), and
    /// [`Registry::call`] is refused with [`Error::ForeignCode`].
    ///
    /// For its own machine a registry refuses objects built for another floating-point calling convention
    /// ([`Error::FloatAbi`]); for another machine it knows none until [`Registry::set_float_abi`] says,
    /// and likewise no instruction set ([`Registry::set_isa`]) and no Thumb-only core
    /// ([`Registry::set_thumb_only`]).
    ///
    /// Such a registry over the firmware's export table can link a device's extensions on a build host
    /// and save a portable context ([`SaveOptions::portable`](crate::SaveOptions::portable)) that the
    /// device restores at its own addresses, rebinding the built-ins by name, without parsing or linking
    /// anything (`llext snapshot save --exports FILE` does this). Tell it the device's core, so that it
    /// refuses objects built for more at load already; the device checks each restored extension's object
    /// against its own core in any case, from what the record says the object needs
    /// ([`Error::SnapshotCore`]). Nothing ran on the host, so the device runs the constructors after the
    /// restore with [`Registry::bring_up`].
    pub fn for_machine(memory: M, builtins: ExportTable, machine: u16) -> Self {
        let native = arch::native_machine() == Some(machine);
        let pointer_size = if native {
            Some(core::mem::size_of::<usize>() as u8)
        } else {
            arch::pointer_size(machine)
        };
        let float_abi = if native {
            arch::FloatAbi::native()
        } else {
            None
        };
        Registry {
            inner: Lock::new(Inner {
                memory,
                builtins,
                limits: Limits::default(),
                machine,
                pointer_size,
                float_abi,
                thumb_only: native && arch::native_thumb_only(),
                isa: if native { arch::Isa::native() } else { None },
                slots: Vec::new(),
                names: HashTable::new(),
                exports: HashTable::new(),
                free_from: 0,
                first: NO_EXT,
                last: NO_EXT,
                tag: next_registry_tag(),
            }),
        }
    }

    /// The ELF machine (`e_machine`) this registry loads extensions for.
    pub fn machine(&self) -> u16 {
        self.inner.lock().machine
    }

    /// Calls `f` with the memory provider, under the registry's lock: to read its state (e.g.
    /// [`ArenaMemory::free_bytes`](crate::ArenaMemory::free_bytes)) while the registry owns it. Only shared
    /// access is lent, so the registry's blocks stay its own; `f` must not call into this registry (its lock
    /// is held).
    ///
    /// ```
    /// let mut arena = [0u8; 4096];
    /// let registry = llext::Registry::for_machine(
    ///     llext::ArenaMemory::new(&mut arena),
    ///     llext::ExportTable::default(),
    ///     40, // EM_ARM
    /// );
    /// assert_eq!(registry.with_memory(|m| m.free_bytes()), 4096);
    /// ```
    pub fn with_memory<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        f(&self.inner.lock().memory)
    }

    /// Writes the built-in export table as the list `llext check --exports FILE` reads, so that extensions
    /// are checked on a host against exactly what this registry offers: a comment with the command, then
    /// `# at: ADDR` if `at` says where the firmware puts extensions (its arena's address, rounded down to
    /// the 4 KiB page `llext check` maps its scratch arena at; no line for an address in the first page),
    /// what the registry knows of its core (`# float-abi: KEY`, `# thumb-only`, `# isa: KEY`), and one
    /// `NAME ADDRESS` line per export (but one whose name is empty or has white space or `#` in it, which
    /// no line can say: a closing comment counts them). On x86-64, where code built without `-fPIC` reaches
    /// an [`Export::copyable`](crate::Export::copyable) variable's copy and an
    /// [`Export::function`](crate::Export::function)'s stub, such a line ends in `copyable` or `function`,
    /// so that the check links those references as this registry does. Nothing is allocated; `out` is
    /// written under the registry's lock, so it must not call into this registry.
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// fn twice(x: i64) -> i64 { 2 * x }
    /// let table = llext::ExportTable::new(&[llext::Export::new("twice", twice as *const ())]);
    /// let registry = llext::Registry::new(llext::HostMemory::new(), table);
    /// let mut list = String::new();
    /// registry.write_export_list(&mut list, Some(0x2008_0124)).unwrap();
    /// assert!(list.contains("# at: 0x20080000\n"));
    /// assert!(list.lines().last().unwrap().starts_with("twice 0x"));
    /// # }
    /// ```
    pub fn write_export_list(
        &self,
        out: &mut dyn core::fmt::Write,
        at: Option<usize>,
    ) -> core::fmt::Result {
        let inner = self.inner.lock();
        out.write_str("# Exports for extensions. Check them on a host with\n")?;
        out.write_str("# llext check --exports THIS_FILE FILE...\n")?;
        // `llext check` maps its scratch arena there: a page boundary, not zero.
        if let Some(at) = at.map(|at| at & !0xfff).filter(|&at| at != 0) {
            writeln!(out, "# at: {at:#x}")?;
        }
        if let Some(abi) = inner.float_abi {
            writeln!(out, "# float-abi: {}", abi.key())?;
        }
        if inner.thumb_code_only() {
            out.write_str("# thumb-only\n")?;
        }
        if let Some(isa) = inner.isa {
            writeln!(out, "# isa: {isa}")?;
        }
        // A line is `NAME ADDRESS` up to a `#`: a name that is empty or has white space or `#` in it
        // cannot be said in one (any string may name an export).
        let mut left_out = 0usize;
        let kinds = arch::export_kinds_matter(inner.machine);
        for e in inner.builtins.iter() {
            let name = e.name();
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '#') {
                left_out += 1;
                continue;
            }
            let kind = match (kinds, e.is_copyable(), e.is_function()) {
                (true, true, _) => " copyable",
                (true, false, true) => " function",
                _ => "",
            };
            writeln!(out, "{name} {:#x}{kind}", e.addr() as usize)?;
        }
        if left_out > 0 {
            writeln!(
                out,
                "# {left_out} exports left out: their names are empty or have white space or # in them"
            )?;
        }
        Ok(())
    }

    /// Replaces the input limits.
    pub fn set_limits(&self, limits: Limits) {
        self.inner.lock().limits = limits;
    }

    /// Sets the floating-point calling convention objects must follow (Arm and RISC-V objects say theirs
    /// in `e_flags`), or `None` to accept any. A registry for its own machine starts with the program's
    /// own ([`FloatAbi::native`](arch::FloatAbi::native)); one for another machine with `None`, which a
    /// host checking a firmware's extensions sets from the firmware image's `e_flags`
    /// ([`FloatAbi::from_flags`](arch::FloatAbi::from_flags)).
    pub fn set_float_abi(&self, abi: Option<arch::FloatAbi>) {
        self.inner.lock().float_abi = abi;
    }

    /// Sets whether Arm objects must hold Thumb code only, as a Cortex-M runs ([`Error::ArmState`] for
    /// A32 code, [`Error::ArmProfile`] for code built for an A- or R-profile core). A registry for its own machine on a Cortex-M starts with `true`; any other with `false`,
    /// which a host checking a Cortex-M firmware's extensions sets from the image's profile
    /// ([`arm_profile`](arch::arm_profile) `M`).
    pub fn set_thumb_only(&self, thumb_only: bool) {
        self.inner.lock().thumb_only = thumb_only;
    }

    /// Sets the instructions the core runs ([`Isa`](arch::Isa)), or `None` to accept any: objects whose
    /// build attributes say they may use more are refused with [`Error::Isa`]. A registry for its own
    /// machine on a RISC-V or Cortex-M target starts with the target's ([`Isa::native`](arch::Isa::native));
    /// any other with `None`, which a host checking a firmware's extensions sets from the firmware image
    /// ([`Isa::of_elf`](arch::Isa::of_elf)). A firmware whose core has more than its target says (e.g. an FPU
    /// it enables itself) declares it here. An Arm ISA is an M-profile one: with it, A32 code and A- or
    /// R-profile objects are refused as with [`Registry::set_thumb_only`].
    pub fn set_isa(&self, isa: Option<arch::Isa>) {
        self.inner.lock().isa = isa;
    }

    /// Loads, links and brings up an extension from ELF bytes, under `name`.
    ///
    /// If `name` is already loaded, its use count is raised and the existing handle returned — at once, even
    /// while another thread still runs that extension's constructors.
    ///
    /// ```no_run
    /// # #[cfg(feature = "std")] {
    /// # let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::default());
    /// let bytes = std::fs::read("ext.o").unwrap();
    /// let id = registry.load("ext", &bytes).unwrap();
    /// assert_eq!(registry.info(id).unwrap().name, "ext");
    /// # }
    /// ```
    pub fn load(&self, name: &str, elf: &[u8]) -> Result<ExtId> {
        self.load_with(name, elf, &LoadOptions::default())
    }

    /// [`Registry::load`] with options. [`Storage::InPlace`] is refused here ([`Error::InPlace`]): the bytes
    /// are only borrowed for the call; see [`Registry::load_static`].
    pub fn load_with(&self, name: &str, elf: &[u8], options: &LoadOptions) -> Result<ExtId> {
        if options.storage == Storage::InPlace {
            return Err(Error::InPlace {
                extension: String::from(name),
                reason: "needs bytes that outlive the extension (use `Registry::load_static`)",
            });
        }
        self.load_impl(name, elf, options, false)
    }

    /// Loads an extension from bytes that live as long as the program — the firmware image, a leaked
    /// buffer — so that, with [`Storage::InPlace`], its read-only sections can be used where they lie.
    /// An in-place context of such an extension is restored with [`Registry::restore_static`], given these
    /// bytes.
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// use llext::{ExportTable, HostMemory, LoadOptions, Registry, Storage};
    /// let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
    /// let bytes: &'static [u8] = llext_fixtures::bytes("basic-gcc-O2-pic.o").leak();
    /// let options = LoadOptions { storage: Storage::InPlace, ..LoadOptions::default() };
    /// let id = registry.load_static("basic", bytes, &options).unwrap();
    /// let info = registry.info(id).unwrap();
    /// let input = bytes.as_ptr_range();
    /// for s in info.sections.iter().filter(|s| s.in_place) {
    ///     assert!(input.contains(&(s.addr as *const u8)));
    /// }
    /// # }
    /// ```
    pub fn load_static(
        &self,
        name: &str,
        elf: &'static [u8],
        options: &LoadOptions,
    ) -> Result<ExtId> {
        self.load_impl(name, elf, options, options.storage == Storage::InPlace)
    }

    fn load_impl(
        &self,
        name: &str,
        elf: &[u8],
        options: &LoadOptions,
        in_place: bool,
    ) -> Result<ExtId> {
        if options.portable && !cfg!(feature = "portable") {
            return Err(Error::FeatureDisabled {
                feature: "portable",
                what: "recording fixups for portable contexts (`LoadOptions::portable`)",
            });
        }
        check_name(name)?;
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if let Some(id) = inner.find(name) {
            if let Some(ext) = inner
                .slots
                .get_mut(id.index as usize)
                .and_then(|s| s.ext.as_mut())
            {
                ext.use_count = ext.use_count.saturating_add(1);
            }
            return Ok(id);
        }
        // Declared before the object, which may borrow from it.
        #[cfg(any(
            feature = "all-arches",
            target_arch = "riscv32",
            target_arch = "riscv64"
        ))]
        let mut relaxed = crate::align::Relaxed::default();
        let mut object = elf::parse(elf, &inner.limits)?;
        link::check_type(&object)?;
        if object.machine != inner.machine {
            return Err(Error::WrongMachine {
                expected: inner.machine,
                found: object.machine,
            });
        }
        let width = if object.class.is_64 { 8 } else { 4 };
        inner.check_width(width)?;
        let bits = width * 8;
        // A core's ISA has a width too (`rv32imac`), which a registry for another machine does not know
        // otherwise: RV64 code does not run on an RV32 core, nor the reverse.
        if let Some(core) = inner.isa.filter(|isa| isa.machine() == object.machine) {
            if core.bits() != bits {
                return Err(Error::WrongClass {
                    expected: core.bits(),
                    found: bits,
                });
            }
        }
        // What the object needs of the core, checked here and kept in its record for a restore's checks.
        let a32 = arch::arm_state_section(&object);
        let needs = crate::record::Needs {
            a32: a32.is_some(),
            profile: arch::foreign_arm_profile(&object),
            float_abi: arch::FloatAbi::of_object(&object),
            isa: arch::Isa::of_object(&object),
        };
        if let Some(refusal) = needs.refusal(&crate::snapshot::SavedCore::of(inner)) {
            return Err(match refusal {
                Refusal::FloatAbi(expected, found) => Error::FloatAbi {
                    machine: object.machine,
                    bits,
                    expected,
                    found,
                },
                Refusal::ArmState => Error::ArmState {
                    section: a32.map(|s| object.section_name(s)).unwrap_or_default(),
                },
                Refusal::ArmProfile(found) => Error::ArmProfile { found },
                Refusal::Isa(core, needs, missing) => Error::Isa {
                    object: needs.key(),
                    core: core.key(),
                    missing,
                },
            });
        }
        #[cfg(any(
            feature = "all-arches",
            target_arch = "riscv32",
            target_arch = "riscv64"
        ))]
        if object.machine == crate::arch::riscv::MACHINE_ID {
            object = crate::align::relax(object, &mut relaxed, &inner.limits)?;
        }
        let request = Request {
            name,
            limits: &inner.limits,
            layout: LayoutOptions {
                keep_eh_frame: options.keep_eh_frame,
            },
            record_fixups: options.portable,
            needs,
            in_place,
        };
        let view = View {
            builtins: &inner.builtins,
            slots: &inner.slots,
            exports: &inner.exports,
        };
        link::prepare_symbols(&mut object, &view, request.layout)?;
        let linked = with_backend!(inner.machine, object.class.is_64, A => link::link::<A, M, View<'_>>(&object, &request, &view, &mut inner.memory),
            _ => Err(Error::NoBackend { machine: inner.machine, bits: if object.class.is_64 { 64 } else { 32 } }))?;
        // Everything `insert` needs is allocated first; if that fails, the blocks go back and nothing changed.
        if let Err(e) = inner.reserve_for(1, linked.view().count(Table::Exports)) {
            linked.free(&mut inner.memory);
            return Err(e);
        }
        // The link refused exports clashing with the built-ins', other extensions' and each other.
        let id = match inner.insert(linked, false) {
            Ok((id, _)) => id,
            Err((e, linked)) => {
                linked.free(&mut inner.memory);
                return Err(e);
            }
        };
        inner.pointer_size = Some(width);
        if !options.bring_up || !inner.runs_code() {
            return Ok(id);
        }
        let Some(ext) = inner.slot_mut(id.index) else {
            return Ok(id);
        };
        ext.initialised = true;
        let constructors = ext.linked.view().count(Table::Init) > 0;
        // Dependencies loaded or restored without running their constructors run them first, as
        // `bring_up` would. Only looked for when a direct dependency was not brought up, or its
        // constructors still run (the walk is over every extension): one that was has had its own
        // dependencies brought up before it.
        let pending = ext_at(&inner.slots, id.index).is_some_and(|ext| {
            ext.linked.view().deps().any(|d| {
                ext_at(&inner.slots, d).is_some_and(|e| !e.initialised || e.phase != Phase::Ready)
            })
        });
        let mut dependencies = if pending {
            match inner.not_brought_up(id) {
                Ok(order) => order,
                // A dependency's constructors run in another thread (or this load is called from them),
                // or no heap for the list: its own constructors would read the dependency's state
                // unset. The lock was held since it was linked and none of its code ran, so it goes as
                // if it had never been loaded.
                Err(e) => {
                    if let Some(ext) = inner.remove(id) {
                        ext.linked.free(&mut inner.memory);
                    }
                    return Err(e);
                }
            }
        } else {
            Vec::new()
        };
        // Claimed under this lock, as the extension itself is: another thread bringing one of them up
        // meanwhile is refused (`Busy`) rather than passed over.
        for &dep in &dependencies {
            if let Some(d) = inner.ext_mut(dep) {
                d.initialised = true;
                if d.linked.view().count(Table::Init) > 0 {
                    d.phase = Phase::Constructing;
                }
            }
        }
        dependencies.retain(|&dep| {
            inner
                .ext(dep)
                .is_some_and(|d| d.phase == Phase::Constructing)
        });
        if constructors {
            if let Some(ext) = inner.slot_mut(id.index) {
                ext.phase = Phase::Constructing;
            }
        }
        drop(guard);
        // While `Constructing`, neither `unload` nor `forget_all` takes them away.
        for &dep in &dependencies {
            self.run_hooks(dep, Table::Init);
            if let Some(d) = self.inner.lock().ext_mut(dep) {
                d.phase = Phase::Ready;
            }
        }
        if constructors {
            self.run_hooks(id, Table::Init);
            if let Some(ext) = self.inner.lock().ext_mut(id) {
                ext.phase = Phase::Ready;
            }
        }
        Ok(id)
    }

    /// Runs an extension's constructors or destructors without holding the lock, so that they may call back
    /// into the registry. A few addresses at a time are copied out under the lock; nothing is allocated.
    fn run_hooks(&self, id: ExtId, table: Table) {
        const BATCH: usize = 16;
        let mut done = 0;
        loop {
            let mut batch = [0usize; BATCH];
            let mut n = 0;
            {
                let inner = self.inner.lock();
                let Some(ext) = inner.ext(id) else {
                    return;
                };
                for (to, addr) in batch
                    .iter_mut()
                    .zip(ext.linked.view().addrs(table).skip(done))
                {
                    *to = addr;
                    n += 1;
                }
            }
            // SAFETY: the list holds the relocated entries of the extension's own, sealed, constructor or
            // destructor sections. While its phase is `Constructing` or `Destructing`, `unload` refuses to
            // free it and `forget_all` refuses to disown anything (so neither it nor what it depends on goes
            // away); the registry itself outlives this call.
            unsafe { run_all(batch.iter().take(n).copied()) };
            if n < BATCH {
                return;
            }
            done += n;
        }
    }

    /// Lowers the use count of an extension; when it reaches zero runs its destructors and frees all its
    /// memory. Refused while other loaded extensions depend on it.
    ///
    /// Destructors run in the reverse order of construction: construction runs `.preinit_array`, then
    /// `.init_array` lists by priority (`.init_array.N` before the plain one) with, at equal priority, the
    /// legacy `.ctors` lists after them (each `.ctors` list last entry first); teardown runs the `.dtors`
    /// lists (first entry first), then the `.fini_array` lists (last entry first, lowest priority last).
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// use llext::{ExportTable, HostMemory, Registry, Unloaded};
    /// let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
    /// let lib = registry.load("libmath", &llext_fixtures::bytes("libmath-gcc-O2-pic.o")).unwrap();
    /// let user = registry.load("usemath", &llext_fixtures::bytes("usemath-gcc-O2-pic.o")).unwrap();
    /// assert!(registry.unload(lib).is_err()); // usemath still links against it
    /// assert_eq!(registry.unload(user).unwrap(), Unloaded::Freed);
    /// assert_eq!(registry.unload(lib).unwrap(), Unloaded::Freed);
    /// # }
    /// ```
    pub fn unload(&self, id: ExtId) -> Result<Unloaded> {
        let step = self.inner.lock().begin_unload(id)?;
        self.finish_unload(id, step)
    }

    /// [`Registry::unload`] by name.
    pub fn unload_name(&self, name: &str) -> Result<Unloaded> {
        let (id, step) = {
            let mut inner = self.inner.lock();
            let id = inner.find(name).ok_or_else(|| Error::NotLoaded {
                name: String::from(name),
            })?;
            (id, inner.begin_unload(id)?)
        };
        self.finish_unload(id, step)
    }

    /// Runs the constructors of an extension that is linked but was never brought up — loaded with
    /// [`LoadOptions::bring_up`] `false`, or restored from a context saved before its constructors ran
    /// (one a registry for another machine made: a build host links a device's extensions and saves a
    /// portable context, which the device restores) — and first those of its dependencies that were not
    /// brought up either, in load order, as loading them would have. From then on it is initialised: its
    /// destructors run when it is unloaded, and a context saved of it says so.
    ///
    /// Returns how many extensions it brought up: 0 if they all were already. The constructors run
    /// outside the registry's lock, as on a load. Refused with [`Error::ForeignCode`] by a registry for
    /// another machine, which never runs extension code, and with [`Error::Busy`] while the constructors
    /// of it or of one of its dependencies run (another thread brings them up, or it is called from
    /// them): it does not return before what it depends on is up (those it brought up by then stay up).
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// use llext::{ExportTable, HostMemory, LoadOptions, Registry};
    /// let registry = Registry::new(HostMemory::new(), ExportTable::new(llext::LIBC_EXPORTS));
    /// let linked_only = LoadOptions { bring_up: false, ..LoadOptions::default() };
    /// let id = registry.load_with("ctors", &llext_fixtures::bytes("ctors-gcc-O2-pic.o"), &linked_only).unwrap();
    /// // SAFETY: `long ctors_state(void)`.
    /// assert_eq!(unsafe { registry.call("ctors_state", &[]) }.unwrap(), 0);
    /// assert_eq!(registry.bring_up(id).unwrap(), 1);
    /// assert_eq!(unsafe { registry.call("ctors_state", &[]) }.unwrap(), 12);
    /// assert_eq!(registry.bring_up(id).unwrap(), 0); // once only
    /// # }
    /// ```
    pub fn bring_up(&self, id: ExtId) -> Result<usize> {
        let order = {
            let mut inner = self.inner.lock();
            inner.get(id)?;
            if !inner.runs_code() {
                return Err(Error::ForeignCode {
                    machine: inner.machine,
                });
            }
            inner.not_brought_up(id)?
        };
        self.construct_in_order(&order)
    }

    /// Runs the constructors of each extension of `order` not brought up yet, one after the other (each
    /// outside the lock); returns how many it brought up. Stops at one whose constructors or destructors
    /// another thread runs ([`Error::Busy`]).
    fn construct_in_order(&self, order: &[ExtId]) -> Result<usize> {
        let mut done = 0;
        for &ext_id in order {
            {
                let mut inner = self.inner.lock();
                // Gone meanwhile (unloaded, forgotten), or brought up by another thread.
                let Some(ext) = inner.ext_mut(ext_id) else {
                    continue;
                };
                // Brought up by another thread, whose constructors may still run: not passed over, or
                // what depends on it would be constructed before it is.
                ext.check_ready()?;
                if ext.initialised {
                    continue;
                }
                ext.initialised = true;
                done += 1;
                if ext.linked.view().count(Table::Init) == 0 {
                    continue;
                }
                ext.phase = Phase::Constructing;
            }
            self.run_hooks(ext_id, Table::Init);
            if let Some(ext) = self.inner.lock().ext_mut(ext_id) {
                ext.phase = Phase::Ready;
            }
        }
        Ok(done)
    }

    /// Runs the destructors of an extension [`Inner::begin_unload`] took out of the indexes, then frees it.
    fn finish_unload(&self, id: ExtId, step: Unloading) -> Result<Unloaded> {
        if let Unloading::Done(unloaded) = step {
            return Ok(unloaded);
        }
        self.run_hooks(id, Table::Fini);
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        // Still in its slot: `unload` and `forget_all` refuse to touch a `Destructing` extension.
        let ext = inner
            .remove(id)
            .ok_or_else(|| Error::Internal("a destructing extension left its slot"))?;
        ext.linked.free(&mut inner.memory);
        Ok(Unloaded::Freed)
    }

    /// The handle of the extension loaded under `name`.
    pub fn get(&self, name: &str) -> Option<ExtId> {
        self.inner.lock().find(name)
    }

    /// Number of loaded extensions.
    pub fn len(&self) -> usize {
        self.inner.lock().names.len()
    }

    /// True if nothing is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The address of `name` in the loaded extensions: exported symbols first, then the other global symbols
    /// of each extension in load order. A Thumb function's address has bit 0 set, as a function pointer
    /// to it needs: it may be transmuted to an `extern "C" fn` of the function's signature (how to call a
    /// function that [`Registry::call`]'s `long` arguments do not fit, one taking a 64-bit integer on a
    /// 32-bit target, say).
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::default());
    /// assert_eq!(registry.find_symbol("nothing_loaded"), None);
    /// # }
    /// ```
    pub fn find_symbol(&self, name: &str) -> Option<usize> {
        self.inner.lock().find_symbol(name.as_bytes())
    }

    /// The address of `name` in one extension (exported or global); with the Thumb bit for Thumb code, as
    /// [`Registry::find_symbol`].
    pub fn extension_symbol(&self, id: ExtId, name: &str) -> Result<Option<usize>> {
        let inner = self.inner.lock();
        Ok(inner.symbol_of(id, name.as_bytes())?.map(|s| s.addr))
    }

    /// Where `addr` lies in the loaded extensions' memory: the extension, region and nearest global symbol
    /// at or below it. `None` if no extension holds it, or if the registry is in use at the moment: it never
    /// waits for the registry's lock. It allocates the names it returns; a fault handler, which must not
    /// allocate (the fault may be in the allocator), uses [`Registry::locate_with`].
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::new(llext::LIBC_EXPORTS));
    /// let id = registry.load("basic", &llext_fixtures::bytes("basic-gcc-O2-pic.o")).unwrap();
    /// let add = registry.extension_symbol(id, "basic_add").unwrap().unwrap();
    /// let at = registry.locate(add + 2).unwrap();
    /// assert_eq!((at.symbol.as_deref(), at.offset), (Some("basic_add"), 2));
    /// assert_eq!(at.to_string(), "`basic_add`+0x2 in extension `basic`");
    /// # }
    /// ```
    pub fn locate(&self, addr: usize) -> Option<Location> {
        self.locate_with(addr, |at| at.to_location())
    }

    /// [`Registry::locate`] without allocating: `f` gets the location with names lent from the registry
    /// (under its lock, taken only if free). Meant for a fault handler; on a host it is not
    /// async-signal-safe (the lock is not).
    pub fn locate_with<R>(&self, addr: usize, f: impl FnOnce(&LocationRef<'_>) -> R) -> Option<R> {
        let inner = self.inner.try_lock()?;
        let found = inner.in_load_order().find_map(|(slot, ext)| {
            let l = ext.linked.view();
            let region = l.region_holding(addr)?;
            // Arm function symbols carry the Thumb bit, which their code's addresses do not.
            let thumb = inner.machine == arch::EM_ARM && region.kind == RegionKind::Text;
            let start = |s: &SymRec| if thumb { s.addr & !1 } else { s.addr };
            let nearest = l
                .globals()
                .flatten()
                .chain(l.exports().flatten())
                .filter(|s| start(s) <= addr && start(s) >= region.addr)
                .max_by_key(start);
            Some(LocationRef {
                id: inner.id_at(slot)?,
                extension: utf8_or_note(l.name_bytes()),
                region: region.kind,
                symbol: nearest.map(|s| utf8_or_note(l.str(s.name))),
                offset: addr - nearest.map_or(region.addr, |s| start(&s)),
            })
        });
        found.map(|at| f(&at))
    }

    /// Calls the function `symbol` (found as by [`Registry::find_symbol`]) with up to six integer arguments
    /// and returns its integer result. Arguments and result are C `long` (pointer-sized): on 32-bit targets
    /// an argument that does not fit is refused with [`Error::ArgumentRange`].
    ///
    /// # Safety
    /// `symbol` must name a C function taking at most six integer or pointer arguments and returning an
    /// integer, safe to call with `args`; its extension must not be unloaded while it runs.
    ///
    /// ```no_run
    /// # #[cfg(feature = "std")] {
    /// # let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::default());
    /// // SAFETY: `add` is `long add(long, long)` in a loaded extension.
    /// let sum = unsafe { registry.call("add", &[2, 3]) }.unwrap();
    /// # }
    /// ```
    pub unsafe fn call(&self, symbol: &str, args: &[i64]) -> Result<i64> {
        let addr = self.callable(symbol, |inner| Ok(inner.find_symbol_in(symbol.as_bytes())))?;
        // SAFETY: forwarded from this function's contract.
        unsafe { call_address(addr, args) }
    }

    /// [`Registry::call`] of the function `symbol` of one extension (exported or global): where several
    /// extensions define a function of one name (each plugin's `plugin_main`, say), this one's.
    ///
    /// # Safety
    /// As for [`Registry::call`].
    ///
    /// ```no_run
    /// # #[cfg(feature = "std")] {
    /// # let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::default());
    /// let plugin = registry.load_file("plugin.o").unwrap();
    /// // SAFETY: `plugin_main` is `long plugin_main(long)` in plugin.o.
    /// let result = unsafe { registry.call_in(plugin, "plugin_main", &[41]) }.unwrap();
    /// # }
    /// ```
    pub unsafe fn call_in(&self, id: ExtId, symbol: &str, args: &[i64]) -> Result<i64> {
        let addr = self.callable(symbol, |inner| {
            Ok(inner
                .symbol_of(id, symbol.as_bytes())?
                .map(|s| (id.index, s)))
        })?;
        // SAFETY: forwarded from this function's contract.
        unsafe { call_address(addr, args) }
    }

    /// The address of the function `symbol` that `find` finds (with its extension's slot), checked for a
    /// call: code of this machine, in executable memory, not NULL.
    fn callable(
        &self,
        symbol: &str,
        find: impl FnOnce(&Inner<M>) -> Result<Option<(u32, SymRec)>>,
    ) -> Result<usize> {
        let (SymRec { addr, .. }, permission) = {
            let inner = self.inner.lock();
            if !inner.runs_code() {
                return Err(Error::ForeignCode {
                    machine: inner.machine,
                });
            }
            find(&inner)?.map(|(slot, sym)| (sym, inner.symbol_permission(slot, &sym)))
        }
        .ok_or_else(|| Error::NoSuchSymbol {
            symbol: String::from(symbol),
        })?;
        if permission.is_some_and(|p| p != Permission::ReadExecute) {
            return Err(Error::NotCode {
                symbol: String::from(symbol),
            });
        }
        if addr == 0 {
            return Err(Error::NullSymbol {
                symbol: String::from(symbol),
            });
        }
        Ok(addr)
    }

    /// Inspects one extension: its regions, sections, symbols, use count and dependencies.
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::new(llext::LIBC_EXPORTS));
    /// let id = registry.load("basic", &llext_fixtures::bytes("basic-gcc-O2-pic.o")).unwrap();
    /// let info = registry.info(id).unwrap();
    /// let text = info.regions.iter().find(|r| r.kind == llext::RegionKind::Text).unwrap();
    /// assert_eq!(text.permission, llext::Permission::ReadExecute);
    /// assert!(info.symbols.iter().any(|s| s.name == "basic_add"));
    /// # }
    /// ```
    pub fn info(&self, id: ExtId) -> Result<ExtensionInfo> {
        let inner = self.inner.lock();
        inner.get(id)?;
        inner.info(id)
    }

    /// Inspects every loaded extension, in load order.
    ///
    /// ```
    /// # #[cfg(feature = "std")] {
    /// let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::new(llext::LIBC_EXPORTS));
    /// for (name, bytes) in llext_fixtures::CHAIN3 {
    ///     registry.load(name, bytes).unwrap();
    /// }
    /// let names: Vec<String> = registry.extensions().into_iter().map(|e| e.name).collect();
    /// assert_eq!(names, ["chain3_0", "chain3_1", "chain3_2"]);
    /// # }
    /// ```
    pub fn extensions(&self) -> Vec<ExtensionInfo> {
        let inner = self.inner.lock();
        inner
            .in_load_order()
            // One whose destructors run is on its way out (and no longer found by name).
            .filter(|(_, ext)| ext.phase != Phase::Destructing)
            .filter_map(|(slot, _)| inner.info(inner.id_at(slot)?).ok())
            .collect()
    }

    /// The built-in export table.
    pub fn with_builtins<T>(&self, f: impl FnOnce(&ExportTable) -> T) -> T {
        f(&self.inner.lock().builtins)
    }
}

#[cfg(feature = "std")]
impl<M: Memory> Registry<M> {
    /// Loads an extension from any reader, under `name`.
    pub fn load_reader<R: std::io::Read + std::io::Seek>(
        &self,
        name: &str,
        mut reader: R,
    ) -> Result<ExtId> {
        let io = |e: std::io::Error| Error::Io {
            path: String::from(name),
            message: std::string::ToString::to_string(&e),
        };
        let max = self.inner.lock().limits.max_file_size;
        let len = reader.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        if len > max {
            return Err(Error::Limit {
                what: "file size",
                limit: max,
                value: len,
            });
        }
        reader.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        let mut bytes = Vec::with_capacity(len as usize);
        reader.read_to_end(&mut bytes).map_err(io)?;
        self.load(name, &bytes)
    }

    /// Loads an extension from a file, named after the file stem (`dir/hello.o` → `hello`).
    ///
    /// ```
    /// let registry = llext::Registry::new(llext::HostMemory::new(), llext::ExportTable::new(llext::LIBC_EXPORTS));
    /// let id = registry.load_file(llext_fixtures::path("rsext.o")).unwrap();
    /// assert_eq!(registry.info(id).unwrap().name, "rsext");
    /// // SAFETY: rs_fib is `extern "C" fn(i64) -> i64` in the Rust fixture.
    /// assert_eq!(unsafe { registry.call("rs_fib", &[10]) }.unwrap(), 55);
    /// ```
    pub fn load_file(&self, path: impl AsRef<std::path::Path>) -> Result<ExtId> {
        let path = path.as_ref();
        let name = default_name(path);
        let file = std::fs::File::open(path).map_err(|e| Error::Io {
            path: std::string::ToString::to_string(&path.display()),
            message: std::string::ToString::to_string(&e),
        })?;
        self.load_reader(&name, std::io::BufReader::new(file))
    }
}

/// The default extension name for a path: its file stem.
#[cfg(feature = "std")]
pub fn default_name(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| std::string::ToString::to_string(&path.display()))
}

/// Capacities of the registry's tables (slots, names, exports), to shrink them back after a failure.
pub(crate) type Capacities = (usize, usize, usize);

/// Shrinks the registry's tables back to `before` (or to what they hold, if more).
fn shrink_tables(
    slots: &mut Vec<Slot>,
    names: &mut HashTable<u32>,
    exports: &mut HashTable<(u32, u32)>,
    before: Capacities,
) {
    let slots_ref: &[Slot] = slots;
    names.shrink_to(before.1, name_hasher(slots_ref));
    exports.shrink_to(before.2, export_hasher(slots_ref));
    // Trailing empty slots a failed operation pushed go too.
    while slots.len() > before.0 && slots.last().is_some_and(|s| s.ext.is_none()) {
        slots.pop();
    }
    slots.shrink_to(before.0);
}

/// Makes room in the registry's tables for `extensions` more extensions with `exports` exports in all. All
/// or nothing: if one table cannot grow, the ones that did are shrunk back to their former capacity.
pub(crate) fn reserve_tables(
    slots: &mut Vec<Slot>,
    names: &mut HashTable<u32>,
    exports: &mut HashTable<(u32, u32)>,
    extensions: usize,
    export_count: usize,
) -> Result<()> {
    let before = (slots.capacity(), names.capacity(), exports.capacity());
    fallible::reserve(slots, extensions)?;
    let slots_ref: &[Slot] = slots;
    let grown = names
        .try_reserve(extensions, name_hasher(slots_ref))
        .map_err(|_| fallible::oom::<u32>(extensions))
        .and_then(|()| {
            exports
                .try_reserve(export_count, export_hasher(slots_ref))
                .map_err(|_| fallible::oom::<(u32, u32)>(export_count))
        });
    if grown.is_err() {
        shrink_tables(slots, names, exports, before);
    }
    grown
}

impl<M> Inner<M> {
    /// Objects must hold Thumb code of the M-profile only: told so, or with an M-profile instruction set
    /// (every Arm `Isa` is one).
    pub(crate) fn thumb_code_only(&self) -> bool {
        self.thumb_only || self.isa.is_some_and(|isa| isa.machine() == arch::EM_ARM)
    }
}

impl<M: Memory> Inner<M> {
    pub(crate) fn find(&self, name: &str) -> Option<ExtId> {
        self.find_bytes(name.as_bytes())
    }

    /// [`Inner::find`] for a name not yet read as UTF-8.
    pub(crate) fn find_bytes(&self, name: &[u8]) -> Option<ExtId> {
        let slots = &self.slots;
        let &slot = self.names.find(hash_name(name), |&s| {
            ext_at(slots, s).is_some_and(|e| e.linked.view().name_bytes() == name)
        })?;
        self.id_at(slot)
    }

    fn get(&self, id: ExtId) -> Result<&Ext> {
        self.ext(id).ok_or_else(|| Error::NotLoaded {
            name: alloc::format!("#{}", id.index),
        })
    }

    /// The extensions' code can run here: the registry is for the machine the program runs on. A registry
    /// for another machine links, saves and restores, but never runs constructors, destructors or calls.
    fn runs_code(&self) -> bool {
        arch::native_machine() == Some(self.machine)
    }

    /// The handle of the extension in `slot`, if one is there.
    pub(crate) fn id_at(&self, slot: u32) -> Option<ExtId> {
        let s = self.slots.get(slot as usize)?;
        s.ext.as_ref()?;
        Some(ExtId {
            index: slot,
            generation: s.generation,
            registry: self.tag,
        })
    }

    /// The extension `id` names, if still loaded.
    pub(crate) fn ext(&self, id: ExtId) -> Option<&Ext> {
        self.slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation && id.registry == self.tag)
            .and_then(|s| s.ext.as_ref())
    }

    fn ext_mut(&mut self, id: ExtId) -> Option<&mut Ext> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation && id.registry == self.tag)
            .and_then(|s| s.ext.as_mut())
    }

    fn find_symbol(&self, name: &[u8]) -> Option<usize> {
        self.find_symbol_in(name).map(|(_, s)| s.addr)
    }

    /// The symbol `name` of extension `id`: exported first, then global. An extension whose destructors
    /// run is on its way out: not found, as [`Inner::find_symbol_in`] does not find it (its memory is freed
    /// as soon as they return).
    fn symbol_of(&self, id: ExtId, name: &[u8]) -> Result<Option<SymRec>> {
        let ext = self.get(id)?;
        if ext.phase == Phase::Destructing {
            return Err(Error::NotLoaded {
                name: ext.name_string(),
            });
        }
        let l = ext.linked.view();
        Ok(l.exports()
            .flatten()
            .find(|e| l.str(e.name) == name)
            .or_else(|| l.global_rec(name)))
    }

    /// The symbol `name` and the slot of the extension that has it: exported first, then the other
    /// global symbols of each extension in load order.
    fn find_symbol_in(&self, name: &[u8]) -> Option<(u32, SymRec)> {
        let export = find_export(&self.slots, &self.exports, name).map(|(slot, _, e)| (slot, e));
        export.or_else(|| {
            self.in_load_order()
                .filter(|(_, e)| e.phase != Phase::Destructing)
                .find_map(|(slot, e)| Some((slot, e.linked.view().global_rec(name)?)))
        })
    }

    /// The permission of the extension memory `sym` of extension `slot` lies in: its own block's, or else
    /// (an export of another extension's symbol, a section used in place) that of any loaded extension's
    /// region holding the address. `None` for an address outside every extension: a built-in's, say.
    fn symbol_permission(&self, slot: u32, sym: &SymRec) -> Option<Permission> {
        let own = ext_at(&self.slots, slot).and_then(|e| {
            let block = e.linked.view().blocks().nth(usize::from(sym.block));
            block.flatten().map(|b| b.permission)
        });
        // Rare (no block of its own): a walk over every extension's few regions.
        own.or_else(|| {
            self.in_load_order().find_map(|(_, e)| {
                let holder = e.linked.view().region_holding(sym.addr);
                holder.map(|r| r.kind.permission())
            })
        })
    }

    /// Makes room for `extensions` more extensions with `exports` exports in all, so that as many
    /// [`Inner::insert`] calls allocate nothing. All or nothing: on failure the tables are shrunk back.
    pub(crate) fn reserve_for(&mut self, extensions: usize, exports: usize) -> Result<()> {
        reserve_tables(
            &mut self.slots,
            &mut self.names,
            &mut self.exports,
            extensions,
            exports,
        )
    }

    /// The tables' capacities now (see [`Inner::shrink_back`]).
    pub(crate) fn capacities(&self) -> Capacities {
        (
            self.slots.capacity(),
            self.names.capacity(),
            self.exports.capacity(),
        )
    }

    /// Undoes the growth of the tables since `before` was taken (after a failed restore).
    pub(crate) fn shrink_back(&mut self, before: Capacities) {
        shrink_tables(&mut self.slots, &mut self.names, &mut self.exports, before);
    }

    /// Registers a linked extension. Allocates nothing after [`Inner::reserve_for`] made room for it. On
    /// failure (only if no room was made) the extension comes back with the error, so its blocks can be
    /// given back; the large error value is on a path that never runs after a successful reservation.
    #[allow(clippy::result_large_err)]
    pub(crate) fn insert(
        &mut self,
        linked: Linked,
        check_exports: bool,
    ) -> core::result::Result<(ExtId, Option<Clash>), (Error, Linked)> {
        let start = self.free_from.min(self.slots.len());
        let free = self
            .slots
            .get(start..)
            .and_then(|rest| rest.iter().position(|s| s.ext.is_none()));
        let index = match free {
            Some(i) => start + i,
            None => {
                if self.slots.len() == self.slots.capacity() {
                    return Err((Error::Internal("registry slots not reserved"), linked));
                }
                self.slots.push(Slot {
                    generation: 0,
                    ext: None,
                });
                self.slots.len() - 1
            }
        };
        let (Ok(slot), Some(s)) = (u32::try_from(index), self.slots.get_mut(index)) else {
            return Err((Error::Internal("slot count"), linked));
        };
        let export_count = linked.view().count(Table::Exports);
        let own_hash = hash_name(linked.view().name_bytes());
        self.free_from = index + 1;
        s.ext = Some(Ext {
            use_count: 1,
            dependents: 0,
            initialised: false,
            phase: Phase::Ready,
            mark: false,
            rank: 0,
            prev: self.last,
            next: NO_EXT,
            linked,
        });
        let id = ExtId {
            index: slot,
            generation: s.generation,
            registry: self.tag,
        };
        match self.slot_mut(self.last) {
            Some(before) => before.next = slot,
            None => self.first = slot,
        }
        self.last = slot;
        let dep_at =
            |slots: &[Slot], k: usize| ext_at(slots, slot).and_then(|e| e.linked.view().dep(k));
        let mut k = 0;
        while let Some(dep) = dep_at(&self.slots, k) {
            if let Some(d) = self.slot_mut(dep) {
                d.dependents = d.dependents.saturating_add(1);
            }
            k += 1;
        }
        // The extension is in its slot now, so the tables can rehash any entry, including its own.
        let slots = &self.slots;
        self.names.insert_unique(own_hash, slot, name_hasher(slots));
        // With `check_exports`, the first export whose name a built-in, another extension or an earlier
        // export of its own has too: found with the hash the insertion takes anyway.
        let mut clash = None;
        for i in 0..export_count {
            let key = (slot, i as u32);
            let name = export_name(slots, key);
            let h = hash_name(name);
            if check_exports && clash.is_none() {
                let owner = match self.builtins.get_hashed(name, h) {
                    Some(_) => Some(None),
                    None => {
                        find_export_hashed(slots, &self.exports, name, h).map(|(o, ..)| Some(o))
                    }
                };
                clash = owner.map(|owner| Clash {
                    export: key.1,
                    owner,
                });
            }
            self.exports.insert_unique(h, key, export_hasher(slots));
        }
        Ok((id, clash))
    }

    /// The name of the export a [`Clash`] of the extension in `slot` is about, and who has it already, for
    /// [`Error::DuplicateExport`].
    pub(crate) fn clash_text(&self, slot: u32, clash: &Clash) -> (String, String) {
        let name = export_name(&self.slots, (slot, clash.export));
        (
            String::from_utf8_lossy(name).into_owned(),
            owner_text(&self.slots, clash.owner, Some(slot)),
        )
    }

    /// Refuses extensions of another pointer width than the registry's (e.g. an RV64 object on RV32
    /// firmware, which would link but not run).
    pub(crate) fn check_width(&self, width: u8) -> Result<()> {
        match self.pointer_size {
            Some(own) if own != width => Err(Error::WrongClass {
                expected: own * 8,
                found: width * 8,
            }),
            _ => Ok(()),
        }
    }

    /// The extension in `slot`, if any.
    pub(crate) fn slot_mut(&mut self, slot: u32) -> Option<&mut Ext> {
        self.slots
            .get_mut(slot as usize)
            .and_then(|s| s.ext.as_mut())
    }

    /// `id` and its dependency closure, those not brought up yet, in load order (dependencies first).
    /// Uses the scratch marks, as saving does, under the same lock.
    fn not_brought_up(&mut self, id: ExtId) -> Result<Vec<ExtId>> {
        for e in self.slots.iter_mut().filter_map(|s| s.ext.as_mut()) {
            e.mark = false;
        }
        if let Some(e) = self.slot_mut(id.index) {
            e.mark = true;
        }
        // A dependency is always loaded (or restored) before what depends on it: one walk from the
        // newest back reaches each after everything that can mark it.
        let mut at = self.last;
        let mut count = 0;
        while let Some(ext) = ext_at(&self.slots, at) {
            let (prev, mark) = (ext.prev, ext.mark);
            if mark {
                // Its constructors run in another thread (or its destructors): nothing that depends on it
                // may be brought up until they return.
                ext.check_ready()?;
                count += 1;
                let view = ext.linked.view();
                for k in 0..view.count(Table::Deps) {
                    let dep = ext_at(&self.slots, at).and_then(|e| e.linked.view().dep(k));
                    if let Some(d) = dep.and_then(|d| self.slot_mut(d)) {
                        d.mark = true;
                    }
                }
            }
            at = prev;
        }
        let mut order = fallible::vec(count)?;
        for (slot, ext) in self.in_load_order() {
            if ext.mark && !ext.initialised {
                if let Some(id) = self.id_at(slot) {
                    // Room for every marked extension was made above.
                    order.push(id);
                }
            }
        }
        Ok(order)
    }

    /// The loaded extensions in load order.
    pub(crate) fn in_load_order(&self) -> impl Iterator<Item = (u32, &Ext)> + '_ {
        let mut at = self.first;
        core::iter::from_fn(move || {
            let slot = at;
            let ext = ext_at(&self.slots, slot)?;
            at = ext.next;
            Some((slot, ext))
        })
    }

    /// Takes the extension in `slot` out of the name and export indexes (it stays in its slot).
    fn unindex(&mut self, slot: u32) {
        if let Some(ext) = ext_at(&self.slots, slot) {
            unindex(&mut self.names, &mut self.exports, slot, ext);
        }
    }

    /// Takes an extension out of its slot and out of the indexes (no destructors run, nothing is freed).
    pub(crate) fn remove(&mut self, id: ExtId) -> Option<Ext> {
        let tag = self.tag;
        let slot = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation && id.registry == tag)?;
        let ext = slot.ext.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free_from = self.free_from.min(id.index as usize);
        match self.slot_mut(ext.prev) {
            Some(before) => before.next = ext.next,
            None => self.first = ext.next,
        }
        match self.slot_mut(ext.next) {
            Some(after) => after.prev = ext.prev,
            None => self.last = ext.prev,
        }
        unindex(&mut self.names, &mut self.exports, id.index, &ext);
        let view = ext.linked.view();
        for dep in view.deps() {
            if let Some(d) = self.slot_mut(dep) {
                d.dependents = d.dependents.saturating_sub(1);
            }
        }
        Some(ext)
    }

    /// Who already exports `name` (a built-in or a loaded extension), for duplicate-export checks; `h` is
    /// its [`hash_name`].
    pub(crate) fn exporter_hashed(&self, name: &[u8], h: u64) -> Option<String> {
        exporter_hashed(&self.builtins, &self.slots, &self.exports, name, h)
    }

    /// The unload steps taken under the lock: lowers the use count, or checks that the extension may go.
    /// With destructors to run, takes it out of the indexes and leaves it `Destructing` for
    /// [`Registry::finish_unload`]; without, frees it at once.
    fn begin_unload(&mut self, id: ExtId) -> Result<Unloading> {
        let ext = self.get(id)?;
        if ext.use_count > 1 {
            let ext = self
                .slot_mut(id.index)
                .ok_or_else(|| Error::Internal("slot"))?;
            ext.use_count -= 1;
            return Ok(Unloading::Done(Unloaded::StillInUse(ext.use_count)));
        }
        ext.check_ready()?;
        if ext.dependents > 0 {
            let dependents = self.dependents_of(id.index, ext.dependents);
            return Err(Error::InUse {
                extension: ext.name_string(),
                dependents,
            });
        }
        if self.runs_code() && ext.initialised && ext.linked.view().count(Table::Fini) > 0 {
            self.unindex(id.index);
            let ext = self
                .slot_mut(id.index)
                .ok_or_else(|| Error::Internal("slot"))?;
            ext.phase = Phase::Destructing;
            return Ok(Unloading::Destruct);
        }
        // Out of its slot, out of the indexes, then freed.
        let ext = self.remove(id).ok_or_else(|| Error::Internal("slot"))?;
        ext.linked.free(&mut self.memory);
        Ok(Unloading::Done(Unloaded::Freed))
    }

    /// The names of the `count` extensions that depend on the one in `slot` (none looked for if it has
    /// none, so listing every extension stays linear in their number).
    fn dependents_of(&self, slot: u32, count: u32) -> Vec<String> {
        if count == 0 {
            return Vec::new();
        }
        self.slots
            .iter()
            .filter_map(|s| s.ext.as_ref())
            .filter(|e| e.linked.view().deps().any(|d| d == slot))
            .take(count as usize)
            .map(Ext::name_string)
            .collect()
    }

    fn info(&self, id: ExtId) -> Result<ExtensionInfo> {
        let ext = self.get(id)?;
        let l = ext.linked.view();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let region_addr = |kind: RegionKind, in_place: bool| {
            l.regions()
                .find(|r| r.kind == kind && r.in_place == in_place)
                .map(|r| r.addr)
                .unwrap_or(0)
        };
        let mut symbols: Vec<SymbolInfo> = l
            .exports()
            .flatten()
            .map(|e| SymbolInfo {
                name: text(l.str(e.name)),
                addr: e.addr,
                exported: true,
            })
            .collect();
        // Globals that are not also exported (sorted export names: O(n log n) however many there are).
        let mut exported: Vec<&[u8]> = l.exports().flatten().map(|e| l.str(e.name)).collect();
        exported.sort_unstable();
        symbols.extend(
            l.globals()
                .flatten()
                .filter(|g| exported.binary_search(&l.str(g.name)).is_err())
                .map(|g| SymbolInfo {
                    name: text(l.str(g.name)),
                    addr: g.addr,
                    exported: false,
                }),
        );
        Ok(ExtensionInfo {
            id,
            name: ext.name_string(),
            use_count: ext.use_count,
            dependencies: l
                .deps()
                .filter_map(|d| ext_at(&self.slots, d).map(Ext::name_string))
                .collect(),
            dependents: self.dependents_of(id.index, ext.dependents),
            regions: l
                .regions()
                .map(|r| RegionInfo {
                    kind: r.kind,
                    addr: r.addr,
                    size: r.size,
                    align: r.align,
                    permission: r.kind.permission(),
                    in_place: r.in_place,
                })
                .collect(),
            sections: l
                .sections()
                .map(|s| SectionInfo {
                    name: text(l.str(s.name)),
                    region: s.kind,
                    offset: s.offset,
                    // Restores check that the offset lies in the region, so this never wraps.
                    addr: region_addr(s.kind, s.in_place).wrapping_add(s.offset),
                    size: s.size,
                    in_place: s.in_place,
                })
                .collect(),
            symbols,
            init_count: l.count(Table::Init),
            fini_count: l.count(Table::Fini),
            memory: ext.linked.memory_size(),
        })
    }
}

impl<M: Memory> Drop for Registry<M> {
    /// Frees every extension's memory (without running destructors: use [`Registry::unload`] for an orderly
    /// teardown).
    fn drop(&mut self) {
        let inner = &mut *self.inner.lock();
        for slot in inner.slots.iter_mut() {
            if let Some(ext) = slot.ext.take() {
                ext.linked.free(&mut inner.memory);
            }
        }
    }
}
