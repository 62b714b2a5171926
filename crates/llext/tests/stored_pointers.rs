//! Pointers an extension's own code stored at run time (a constructor, a registration call) into words the
//! linker never wrote: a portable restore at new addresses moves those that point into a saved block with
//! that block, and rebinds those holding a built-in's saved address by name. Found by a user trial: a
//! moved restore returned wrong values, or crashed, for a constructor's `p = &x`, a C++ object's vtable
//! pointer and a plugin registering itself with a library.
#![cfg(feature = "portable")]

mod common;

use common::portable;

use common::{call, compile_c, registry, restore_all};
use llext::{Context, ExportTable, HostMemory, Registry, RestoreOptions};

/// Only the constructor writes these words: the link wrote none of them (they are in `.bss`).
const STORED: &str = "#include <stdio.h>\n\
    static int x = 5;\n\
    static const char text[] = \"seven\";\n\
    static long twice(long v) { return 2 * v; }\n\
    static int *p;\n\
    static const char *s;\n\
    static long (*f)(long);\n\
    static int (*out)(const char *);\n\
    static void *elsewhere;\n\
    __attribute__((constructor)) static void init(void) {\n\
        p = &x; s = text; f = twice; out = puts; elsewhere = (void *)0x10;\n\
    }\n\
    long get(long a) { return *p + a; }\n\
    long length(void) { long n = 0; while (s[n]) n++; return n; }\n\
    long apply(long v) { return f(v); }\n\
    long printer(void) { return (long)out; }\n\
    long kept(void) { return (long)elsewhere; }\n\
    long puts_address(void) { return (long)puts; }\n\
    long where_p(void) { return (long)p; }\n";

fn check_stored<M: llext::Memory>(r: &Registry<M>, puts_now: i64, when: &str) {
    assert_eq!(call(r, "get", &[1]), 6, "{when}: a pointer to own data");
    assert_eq!(
        call(r, "length", &[]),
        5,
        "{when}: a pointer to own constants"
    );
    assert_eq!(call(r, "apply", &[21]), 42, "{when}: a pointer to own code");
    assert_eq!(call(r, "printer", &[]), puts_now, "{when}: a built-in");
    assert_eq!(
        call(r, "kept", &[]),
        0x10,
        "{when}: a word pointing nowhere saved"
    );
}

#[test]
fn pointers_stored_at_run_time_move_with_their_blocks() {
    let object = compile_c(STORED, &["-fhosted", "-O2", "-fPIC"]);
    let r = registry();
    r.load("stored", &object).unwrap();
    let puts_here = call(&r, "puts_address", &[]);
    check_stored(&r, puts_here, "loaded");
    let ctx = r.save(&portable()).unwrap();
    // At new addresses: the first registry still holds the extension; then it is dropped, so a stale
    // pointer would reach freed pages.
    let elsewhere = registry();
    restore_all(&elsewhere, &ctx);
    assert_ne!(call(&elsewhere, "where_p", &[]), call(&r, "where_p", &[]));
    drop(r);
    check_stored(&elsewhere, puts_here, "new addresses");

    // Built-ins elsewhere too, as in a new process: `puts` is rebound by name.
    extern "C" fn other_puts(_: *const std::ffi::c_char) -> std::ffi::c_int {
        0
    }
    let moved = common::libc_exports_moving("puts", other_puts as *const ());
    let new_process = Registry::new(HostMemory::new(), ExportTable::new(&moved));
    restore_all(&new_process, &ctx);
    check_stored(
        &new_process,
        other_puts as *const () as i64,
        "built-ins moved",
    );
}

/// With `move_stored_pointers` off, such words keep their saved values: the old behaviour, for data that
/// only looks like addresses.
#[test]
fn stored_pointers_can_be_left_as_saved() {
    let object = compile_c(STORED, &["-fhosted", "-O2", "-fPIC"]);
    let r = registry();
    r.load("stored", &object).unwrap();
    let ctx = r.save(&portable()).unwrap();
    let elsewhere = registry();
    let options = RestoreOptions {
        move_stored_pointers: false,
        ..RestoreOptions::default()
    };
    elsewhere
        .restore(&Context::from_bytes(&ctx).unwrap(), &options)
        .unwrap();
    // `p` still points into the saved extension's data, which `r` still holds.
    assert_ne!(
        r.find_symbol("get").unwrap(),
        elsewhere.find_symbol("get").unwrap(),
        "restored at new addresses"
    );
    assert_eq!(call(&elsewhere, "where_p", &[]), call(&r, "where_p", &[]));
    assert_eq!(call(&elsewhere, "get", &[1]), 6);
}

/// A plugin registers itself with a library it depends on: the library's list head (in its `.bss`) then
/// points into the plugin's data, which moves.
#[test]
fn a_registration_stored_in_a_library_moves_with_the_plugin() {
    let library = "#include \"llext.h\"\n\
        struct plugin { struct plugin *next; long (*run)(long); const char *name; };\n\
        static struct plugin *head;\n\
        void register_plugin(struct plugin *p) { p->next = head; head = p; }\n\
        long run_all(long v) { long sum = 0; for (struct plugin *p = head; p; p = p->next) sum += p->run(v); return sum; }\n\
        long first_name_length(void) { long n = 0; if (head) while (head->name[n]) n++; return n; }\n\
        LLEXT_EXPORT(register_plugin);\n";
    let plugin = |name: &str, factor: i64| {
        format!(
            "struct plugin {{ struct plugin *next; long (*run)(long); const char *name; }};\n\
             extern void register_plugin(struct plugin *p);\n\
             static long run(long v) {{ return {factor} * v; }}\n\
             static struct plugin me;\n\
             __attribute__((constructor)) static void init(void) {{\n\
                 me.run = run; me.name = \"{name}\"; register_plugin(&me);\n\
             }}\n"
        )
    };
    let r = registry();
    r.load("library", &compile_c(library, &["-O2", "-fPIC"]))
        .unwrap();
    r.load("two", &compile_c(&plugin("two", 2), &["-O2", "-fPIC"]))
        .unwrap();
    r.load("three", &compile_c(&plugin("three", 3), &["-O0"]))
        .unwrap();
    assert_eq!(call(&r, "run_all", &[10]), 50);
    assert_eq!(call(&r, "first_name_length", &[]), 5);
    let ctx = r.save(&portable()).unwrap();
    let elsewhere = registry();
    restore_all(&elsewhere, &ctx);
    drop(r);
    assert_eq!(call(&elsewhere, "run_all", &[10]), 50);
    assert_eq!(call(&elsewhere, "first_name_length", &[]), 5);
}

/// A user's trial: a `-fno-pic` object's portable context restored where its blocks land above 4 GiB was
/// refused as an "invalid saved context". The context is sound; the place is not: `SnapshotReach` says
/// which extension and what does not fit, and the registry and memory stay as they were.
#[test]
fn a_restore_beyond_a_references_reach_says_so() {
    let object = compile_c(
        "static int x = 3;\nlong where(void) { return (long)&x; }\n",
        &["-O2", "-fno-pic"],
    );
    let r = registry();
    r.load("absolute", &object).unwrap();
    let ctx = r.save(&portable()).unwrap();
    // An arena wherever the kernel puts a plain mapping: far above 4 GiB on x86-64 Linux.
    let len = 1 << 20;
    // SAFETY: a fresh anonymous private mapping; only the arena below uses it, and it is unmapped after.
    let high = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(high, libc::MAP_FAILED);
    assert!(high as usize > u32::MAX as usize, "mapped at {high:p}");
    {
        // SAFETY: the mapping is `len` bytes, readable and writable, and nothing else uses it.
        let bytes = unsafe { std::slice::from_raw_parts_mut(high.cast::<u8>(), len) };
        let there = Registry::new(
            llext::ArenaMemory::new(bytes),
            ExportTable::new(llext::LIBC_EXPORTS),
        );
        let free = there.with_memory(|m| m.free_bytes());
        match there.restore(
            &Context::from_bytes(&ctx).unwrap(),
            &RestoreOptions::default(),
        ) {
            Err(llext::Error::SnapshotReach { extension, reason }) => {
                assert_eq!(extension, "absolute");
                assert!(reason.contains("-fPIC"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(there.is_empty());
        assert_eq!(there.with_memory(|m| m.free_bytes()), free);
    }
    // SAFETY: the registry using the mapping is gone.
    assert_eq!(unsafe { libc::munmap(high, len) }, 0);
}

/// Review: a pointer one past the end of an array that ends its extension's read-write block, stored by a
/// constructor (`end = buf + sizeof buf`), where an arena, which packs blocks, put the next extension's
/// first block right there: the scan moved it with that other block. Loads that record fixups now leave a
/// byte of slack after each block, so the end of a block's content is inside it, and nothing starts there.
#[test]
fn a_stored_end_pointer_at_the_end_of_a_block_stays_with_its_array() {
    let a = compile_c(
        "char *end_ptr = (char *)1;\n\
         static char buf[48];\n\
         __attribute__((constructor)) static void init(void) { end_ptr = buf + sizeof buf; }\n\
         long span(void) { return end_ptr - buf; }\n\
         long buf_end(void) { return (long)(buf + sizeof buf); }\n",
        &["-O2", "-fPIC"],
    );
    let b = compile_c(
        "long first(long v) { return v + 1; }\nint bdata = 3;\nlong bget(void) { return bdata; }\n",
        &["-O2", "-fPIC"],
    );
    let mut arena = common::ExecArena::new(1 << 20);
    let r = Registry::new(
        llext::ArenaMemory::new(arena.bytes()),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    r.load("a", &a).unwrap();
    r.load("b", &b).unwrap();
    assert_eq!(call(&r, "span", &[]), 48);
    let end = call(&r, "buf_end", &[]) as usize;
    // The array ends `a`'s read-write block, and `b`'s code follows within an alignment's distance.
    let first = r.find_symbol("first").unwrap();
    assert!(end < first && first - end <= 16, "{end:#x} {first:#x}");
    let ctx = r.save(&portable()).unwrap();
    let other = registry();
    restore_all(&other, &ctx);
    assert_eq!(
        call(&other, "span", &[]),
        48,
        "end_ptr moved with b's block"
    );
    assert_eq!(call(&other, "bget", &[]), 3);
}

/// Review: on Arm (32-bit), words the code stored in `.bss` — a Thumb function pointer (bit 0 set) and a pointer to
/// its own data — move with their blocks; an integer that points nowhere stays.
#[test]
fn thumb_pointers_stored_in_bss_move_on_a_32_bit_target() {
    let object = common::compile_for(
        "thumbv7em-none-eabi",
        "int x = 1;\nvoid *slots[3];\nint f(int v) { return v + x; }\n",
        &["-O2", "-mthumb"],
    );
    let mut first = common::ExecArena::new(1 << 20);
    let mut second = common::ExecArena::new(1 << 20);
    let a = Registry::for_machine(
        llext::ArenaMemory::new(first.bytes()),
        ExportTable::default(),
        40,
    );
    let id = a.load("t", &object).unwrap();
    let sym = |r: &Registry<_>, id, n: &str| r.extension_symbol(id, n).unwrap().unwrap();
    let (slots, f, x) = (sym(&a, id, "slots"), sym(&a, id, "f"), sym(&a, id, "x"));
    assert_eq!(f & 1, 1, "a Thumb function's address");
    // SAFETY: `slots` is three 4-byte words in the extension's live read-write block.
    unsafe {
        let w = slots as *mut u32;
        w.write_unaligned(f as u32);
        w.add(1).write_unaligned(x as u32);
        w.add(2).write_unaligned(0x10);
    }
    let ctx = a.save(&portable()).unwrap();
    let b = Registry::for_machine(
        llext::ArenaMemory::new(&mut second.bytes()[64..]),
        ExportTable::default(),
        40,
    );
    let id = common::restore_all(&b, &ctx)[0];
    let (slots, f, x) = (sym(&b, id, "slots"), sym(&b, id, "f"), sym(&b, id, "x"));
    // SAFETY: as above, in the restored block.
    let words: Vec<u32> = (0..3)
        .map(|i| unsafe { (slots as *const u32).add(i).read_unaligned() })
        .collect();
    assert_eq!(words, [f as u32, x as u32, 0x10]);
}

/// Review of the slack: a pointer the link wrote into `.data` (`cursor = (char *)first`, into the code
/// block), which the extension then pointed at another extension's string. An arena put that extension's
/// byte-aligned constants in the gap right after the first one's code block, slack included: the word is
/// one past that *whole* block, not past its content, so it can only be the start of the other block. The
/// restore moved it with the fixup's own block (the "home" rule of `moved_with_blocks` still takes a
/// block's very end as its own, which only made sense before the slack).
#[test]
fn a_changed_pointer_to_the_block_right_after_its_home_moves_with_that_block() {
    let a = compile_c(
        "long first(void) { return 1; }\n\
         char *cursor = (char *)first;\n\
         void point(char *p) { cursor = p; }\n\
         long peek(void) { return *cursor; }\n\
         long where(void) { return (long)cursor; }\n",
        &["-O2", "-fPIC"],
    );
    let b = compile_c(
        "const char *hi(void) { return \"hi\"; }\n",
        &["-O2", "-fPIC"],
    );
    let mut arena = common::ExecArena::new(1 << 20);
    let r = Registry::new(
        llext::ArenaMemory::new(arena.bytes()),
        ExportTable::new(llext::LIBC_EXPORTS),
    );
    let ia = r.load("a", &a).unwrap();
    let ib = r.load("b", &b).unwrap();
    let hi = call(&r, "hi", &[]);
    call(&r, "point", &[hi]);
    assert_eq!(call(&r, "peek", &[]), i64::from(b'h'));
    // The setting: `b`'s string starts exactly where `a`'s code block, slack included, ends.
    let info = r.info(ia).unwrap();
    let text = info
        .regions
        .iter()
        .find(|g| g.kind == llext::RegionKind::Text)
        .unwrap();
    let ro_b = r
        .info(ib)
        .unwrap()
        .regions
        .iter()
        .find(|g| g.permission == llext::Permission::ReadOnly)
        .map(|g| g.addr)
        .unwrap();
    assert_eq!(ro_b as i64, hi);
    assert_eq!(
        text.addr + text.size + 1,
        ro_b,
        "b's constants follow a's code block: {:?}",
        info.regions
    );
    let ctx = r.save(&portable()).unwrap();
    let other = registry();
    restore_all(&other, &ctx);
    let hi2 = call(&other, "hi", &[]);
    assert_eq!(
        call(&other, "where", &[]),
        hi2,
        "cursor moved with b's constants"
    );
    assert_eq!(call(&other, "peek", &[]), i64::from(b'h'));
}
