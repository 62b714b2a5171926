//! Built-in export tables and the name hash used by every symbol index.

use alloc::vec::Vec;
use hashbrown::HashTable;

/// The hash of a symbol name: word-at-a-time multiply-rotate, deterministic across runs and targets (saved
/// contexts fingerprint export tables with it).
pub(crate) fn hash_name(name: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = name.len() as u64;
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        if let Some(dst) = w.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// The hasher for an index made with room for all its entries, which never rehashes, so never calls it.
/// One function for every such index: the table's growing code is built once for them all.
pub(crate) fn never_rehashed(_: &u32) -> u64 {
    0
}

/// One symbol the embedding program offers to extensions: a name and an address.
///
/// Build tables of them with [`exports!`](crate::exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Export {
    name: &'static str,
    addr: *const (),
    /// Made by the `unsafe` [`Export::copyable`]: the loader may read a pointer-sized value at `addr`.
    /// The fields are private so that safe code cannot set this flag, or change the address of an
    /// export that has it.
    copyable: bool,
    /// Made by [`Export::function`]: `addr` is code.
    function: bool,
}

// SAFETY: an Export is a name and an address; sharing it across threads shares no memory behind the
// address (the only read through it, of a copyable export, is what `Export::copyable`'s contract allows
// from any thread).
unsafe impl Sync for Export {}
// SAFETY: as above.
unsafe impl Send for Export {}

impl Export {
    /// The name extensions refer to.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The address the name resolves to.
    pub const fn addr(&self) -> *const () {
        self.addr
    }

    /// True if made with [`Export::copyable`].
    pub const fn is_copyable(&self) -> bool {
        self.copyable
    }

    /// True if made with [`Export::function`].
    pub const fn is_function(&self) -> bool {
        self.function
    }

    /// An export of `addr` under `name`.
    pub const fn new(name: &'static str, addr: *const ()) -> Self {
        Export {
            name,
            addr,
            copyable: false,
            function: false,
        }
    }

    /// An export of the function at `addr` under `name`. It is [`Export::new`], and more: code built
    /// without `-fPIC` takes a function's address as a 32-bit value (`mov $strlen, %edi`, x86-64
    /// `R_X86_64_32`), which a host's C library, far above 4 GiB, does not fit; such direct references to
    /// a function export reach the extension's call stub for it instead, low with the extension, as an
    /// executable's references reach its PLT (the object's GOT slot for the function, if it has one,
    /// holds the stub too). The address such an extension sees then differs from the one the host and
    /// other extensions see, but calls through either arrive at the function.
    pub const fn function(name: &'static str, addr: *const ()) -> Self {
        Export {
            name,
            addr,
            copyable: false,
            function: true,
        }
    }

    /// An export of a pointer-sized variable whose value does not change while extensions use it, such as
    /// C's `stdout`. Code built without `-fPIC` reads external data directly, expecting the variable within
    /// ±2 GiB of itself (an executable gets a copy of it there from the dynamic linker). On x86-64 such a
    /// direct reference to this export (`R_X86_64_PC32`, `_32`, `_32S`) reaches a private copy of its
    /// value instead, in the extension's zero-filled data, which the loader fills when it links the
    /// extension and again when it restores it from a portable context. References through the GOT
    /// (`-fPIC` code) and pointer-sized absolute ones still reach the variable itself, so the two kinds
    /// see different addresses, and an assignment through a direct reference changes only the copy.
    /// The other backends take no copies (their code reaches data through the GOT or absolute addresses).
    /// An in-place restore keeps the copy as it was saved, as it keeps all of the extension's memory.
    ///
    /// # Safety
    /// `addr` must point to an initialised pointer-sized value that stays readable for as long as a
    /// table holding this export is used to load or restore extensions, and that no thread writes while
    /// a load or a restore may read it (the loader reads it without synchronisation).
    pub const unsafe fn copyable(name: &'static str, addr: *const ()) -> Self {
        Export {
            name,
            addr,
            copyable: true,
            function: false,
        }
    }
}

/// Declares a static slice of [`Export`]s of functions ([`Export::function`]): `name` exports the function
/// `name` in scope, `"name" => path` exports `path` under another name. Export data with [`Export::new`] or
/// [`Export::copyable`].
///
/// Each function must be `extern "C"` (or `unsafe extern "C"`) with the signature the extensions' C
/// declarations give it: the macro takes any function's address, and C code calls a Rust-ABI `fn` with
/// the wrong convention. Make it `#[no_mangle]` too if extensions are checked against the firmware's ELF
/// image (`llext check --exports firmware.elf`): the image has a Rust function's mangled symbol, not the
/// name the table gives it, and an export under another name (`"name" => path`) is in no image at all.
///
/// ```
/// extern "C" fn answer() -> i64 { 42 }
/// static HOST: &[llext::Export] = llext::exports![answer, "the_answer" => answer];
/// let table = llext::ExportTable::new(HOST);
/// assert_eq!(table.get("the_answer"), Some(answer as usize));
/// ```
#[macro_export]
macro_rules! exports {
    ($($item:tt)*) => { $crate::__exports_inner!([] $($item)*) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __exports_inner {
    ([$($done:expr,)*]) => { &[$($done,)*] };
    ([$($done:expr,)*] $name:literal => $path:path $(, $($rest:tt)*)?) => {
        $crate::__exports_inner!([$($done,)* $crate::Export::function($name, $path as *const ()),] $($($rest)*)?)
    };
    ([$($done:expr,)*] $name:ident $(, $($rest:tt)*)?) => {
        $crate::__exports_inner!([$($done,)* $crate::Export::function(stringify!($name), $name as *const ()),] $($($rest)*)?)
    };
}

/// The embedding program's built-in symbols, indexed by a hash table (O(1) lookups on average).
///
/// The first entry of a name wins if a name is listed twice.
#[derive(Debug, Clone, Default)]
pub struct ExportTable {
    entries: Vec<Export>,
    index: HashTable<u32>,
    fingerprint: u64,
    fingerprint_with_addresses: u64,
}

impl ExportTable {
    /// Indexes `entries`.
    pub fn new(entries: &[Export]) -> Self {
        let mut index = HashTable::with_capacity(entries.len());
        let mut kept = Vec::with_capacity(entries.len());
        let mut fingerprint = 0u64;
        for e in entries {
            let h = hash_name(e.name.as_bytes());
            let dup = index
                .find(h, |&i: &u32| {
                    kept.get(i as usize)
                        .is_some_and(|k: &Export| k.name == e.name)
                })
                .is_some();
            if dup {
                continue;
            }
            // Made with room for every entry: it never grows.
            index.insert_unique(h, kept.len() as u32, never_rehashed);
            fingerprint = fingerprint.wrapping_add(h.rotate_left(17) ^ h);
            kept.push(*e);
        }
        let fingerprint_with_addresses = kept.iter().fold(fingerprint, |acc, e| {
            let h =
                hash_name(e.name.as_bytes()) ^ (e.addr as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            acc.wrapping_add(h.rotate_left(29) ^ h)
        });
        ExportTable {
            entries: kept,
            index,
            fingerprint,
            fingerprint_with_addresses,
        }
    }

    /// The address exported under `name`.
    pub fn get(&self, name: &str) -> Option<usize> {
        self.get_bytes(name.as_bytes())
    }

    pub(crate) fn get_bytes(&self, name: &[u8]) -> Option<usize> {
        self.get_hashed(name, hash_name(name))
    }

    /// [`ExportTable::get`] for a name whose [`hash_name`] the caller already computed.
    pub(crate) fn get_hashed(&self, name: &[u8], h: u64) -> Option<usize> {
        self.entry_hashed(name, h).map(|e| e.addr as usize)
    }

    /// The entry named `name`.
    pub(crate) fn entry(&self, name: &[u8]) -> Option<&Export> {
        self.entry_hashed(name, hash_name(name))
    }

    fn entry_hashed(&self, name: &[u8], h: u64) -> Option<&Export> {
        let entries = &self.entries;
        self.index
            .find(h, |&i| {
                entries
                    .get(i as usize)
                    .is_some_and(|e| e.name.as_bytes() == name)
            })
            .and_then(|&i| entries.get(i as usize))
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = &Export> {
        self.entries.iter()
    }

    /// An order-independent hash of the exported names (not addresses).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// An order-independent hash of names and addresses: equal only if every built-in is still where it
    /// was, which in-place restores require.
    pub fn fingerprint_with_addresses(&self) -> u64 {
        self.fingerprint_with_addresses
    }
}
