//! Allocation failure at every point of load, link, bring-up, unload, save and restore.
//!
//! Two kinds of allocation can fail:
//! - **Extension memory** (the [`Memory`](llext::Memory) provider): the `Counting` provider fails its Nth
//!   block; every such failure must be an [`Error::OutOfMemory`], leave the registry unchanged and give
//!   back every block taken.
//! - **Heap** (Rust's global allocator): this test binary installs [`Failing`], which counts allocations
//!   and frees and fails exactly the Nth allocation of the thread under test. Each point N runs in a forked
//!   child, because a failed allocation behind an infallible `Vec`/`Box`/`String` operation aborts the
//!   process (`handle_alloc_error`). A child that returns must report `OutOfMemory`, leave the registry
//!   as it was and have freed every heap byte it allocated (allocation and free counts balance). A child
//!   that aborts names the allocation site (the `llext` frames of its backtrace); the sites found are
//!   compared with [`INFALLIBLE`], the documented list of infallible allocations, so a new one is seen in
//!   review.
// Saves or restores portable contexts throughout: llext's `portable` feature (on by default).
#![cfg(feature = "portable")]

mod common;

use common::portable;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};

use common::Counting;
use llext::{
    Context, Error, ExportTable, LoadOptions, Registry, RestoreOptions, SaveOptions, Unloaded,
};
use llext_fixtures::bytes;

#[global_allocator]
static ALLOCATOR: Failing = Failing;

/// Per-thread allocation accounting: only the thread running an operation is counted or failed.
#[derive(Debug, Clone, Copy)]
struct Tally {
    armed: bool,
    /// Allocations (including reallocations) seen while armed.
    count: usize,
    /// The allocation number (from 1) to fail; 0 = none.
    fail_at: usize,
    /// Set once the allocation at `fail_at` was refused.
    failed: bool,
    /// The alignment of the refused allocation.
    failed_align: usize,
    allocs: usize,
    frees: usize,
    live_bytes: isize,
    /// Inside the failure report: allocations pass through uncounted.
    reporting: bool,
}

const IDLE: Tally = Tally {
    armed: false,
    count: 0,
    fail_at: 0,
    failed: false,
    failed_align: 0,
    allocs: 0,
    frees: 0,
    live_bytes: 0,
    reporting: false,
};

thread_local! {
    static TALLY: Cell<Tally> = const { Cell::new(IDLE) };
}

/// Where a forked child writes the site of a refused allocation (-1: nowhere).
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

struct Failing;

impl Failing {
    /// Counts an allocation of `size` bytes aligned to `align`; false if it must fail.
    fn admit(size: usize, align: usize) -> bool {
        TALLY
            .try_with(|t| {
                let mut s = t.get();
                if !s.armed || s.reporting {
                    return true;
                }
                s.count += 1;
                if s.count == s.fail_at {
                    s.failed = true;
                    s.failed_align = align;
                    t.set(s);
                    report_site(size);
                    return false;
                }
                t.set(s);
                true
            })
            .unwrap_or(true)
    }

    fn note(alloc: isize, free: isize, bytes: isize) {
        let _ = TALLY.try_with(|t| {
            let mut s = t.get();
            if s.armed && !s.reporting {
                s.allocs = s.allocs.wrapping_add_signed(alloc);
                s.frees = s.frees.wrapping_add_signed(free);
                s.live_bytes += bytes;
                t.set(s);
            }
        });
    }
}

// SAFETY: forwards every call to the system allocator; failing an allocation returns null, as allowed.
unsafe impl GlobalAlloc for Failing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::admit(layout.size(), layout.align()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::note(1, 0, layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::admit(layout.size(), layout.align()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::note(1, 0, layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (that is, from System) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        Self::note(0, 1, -(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Self::admit(new_size, layout.align()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's arguments.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            Self::note(0, 0, new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Writes the `llext` frames of the current backtrace to the report pipe (in a forked child only).
fn report_site(size: usize) {
    let fd = REPORT_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    TALLY.with(|t| {
        let mut s = t.get();
        s.reporting = true;
        t.set(s);
    });
    // In a block, so that what it allocates is also freed before counting resumes.
    {
        // "SIZE bytes|file function|file:line", for the innermost `llext` frame.
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        let mut site = String::from("(no llext frame)");
        let mut location = String::new();
        let mut lines = trace.lines().peekable();
        while let Some(line) = lines.next() {
            let name = line.trim_start();
            let name = name.split_once(": ").map_or(name, |(_, n)| n);
            if !name.trim_start_matches('<').starts_with("llext::") {
                continue;
            }
            let at = lines
                .peek()
                .and_then(|l| l.trim_start().strip_prefix("at "))
                .unwrap_or("");
            let path = at.rsplit_once(':').map_or(at, |(l, _)| l);
            location = path.find("src/").map_or(path, |i| &path[i..]).to_string();
            let file = path.rsplit('/').next().unwrap_or(path);
            let file = file.split(':').next().unwrap_or(file);
            site = format!("{file} {}", function_name(name));
            break;
        }
        let site = format!("{size} bytes|{site}|{location}");
        // SAFETY: writing a byte buffer to a pipe this process owns.
        unsafe { libc::write(fd, site.as_ptr().cast(), site.len()) };
    }
    TALLY.with(|t| {
        let mut s = t.get();
        s.reporting = false;
        t.set(s);
    });
}

/// The bare function name of a backtrace frame, the same whatever the symbol mangling: closures, generic
/// arguments and `impl` paths removed (`<llext::registry::Registry<X>>::restore` and
/// `llext::snapshot::<impl llext::registry::Registry<M>>::restore` are both `restore`).
fn function_name(frame: &str) -> String {
    let frame = frame.split("::{").next().unwrap_or(frame);
    let mut depth = 0;
    let mut bare = String::new();
    for c in frame.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ if depth == 0 => bare.push(c),
            _ => {}
        }
    }
    let bare = bare.trim_end_matches(':').trim();
    bare.rsplit("::").next().unwrap_or(bare).to_string()
}

fn arm(fail_at: usize) {
    TALLY.with(|t| {
        t.set(Tally {
            armed: true,
            fail_at,
            ..IDLE
        })
    });
}

fn disarm() -> Tally {
    TALLY.with(|t| {
        let s = t.get();
        t.set(IDLE);
        s
    })
}

/// What happened in a forked child.
#[derive(Debug)]
enum Child {
    /// Exit status and message.
    Exited(i32, String),
    /// Killed by a signal (an abort on an infallible allocation): the report written before.
    Signaled(i32, String),
}

/// Runs `f` in a forked child; its message (or a panic's) comes back through a pipe.
fn forked(f: impl FnOnce() -> Result<String, String>) -> Child {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the test binary runs one test at a time on this thread (see the test), so no other thread
    // holds a lock the child could need.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(fds[0]) };
        REPORT_FD.store(fds[1], Ordering::SeqCst);
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let (code, message) = match outcome {
            Ok(Ok(m)) => (0, m),
            Ok(Err(m)) => (3, m),
            Err(p) => (
                4,
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            ),
        };
        let message = format!("\n{message}");
        // SAFETY: writing to our pipe, then leaving without running the parent's exit handlers.
        unsafe {
            libc::write(fds[1], message.as_ptr().cast(), message.len());
            libc::_exit(code)
        }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut status = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: killing our own child, then reaping it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into our buffer from our pipe.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        text.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: closing our read end.
    unsafe { libc::close(fds[0]) };
    let text = String::from_utf8_lossy(&text).into_owned();
    if libc::WIFEXITED(status) {
        Child::Exited(libc::WEXITSTATUS(status), text)
    } else {
        Child::Signaled(libc::WTERMSIG(status), text)
    }
}

const NO_RUN: LoadOptions = LoadOptions {
    bring_up: false,
    keep_eh_frame: false,
    portable: true,
    storage: llext::Storage::Copy,
};

type Reg = Registry<Counting>;

/// One operation under test: how to set the registry up, and the operation itself.
struct Operation {
    name: &'static str,
    setup: fn(&Reg) -> Vec<u8>,
    run: fn(&Reg, &[u8]) -> Result<(), Error>,
}

/// Loads `libmath` and `usemath` (which uses it), running nothing.
fn load_pair(r: &Reg) {
    r.load_with("libmath", &bytes("libmath-gcc-O2-pic.o"), &NO_RUN)
        .unwrap();
    r.load_with("usemath", &bytes("usemath-gcc-O2-pic.o"), &NO_RUN)
        .unwrap();
}

fn registry() -> (Reg, Counting) {
    let memory = Counting::default();
    (
        Registry::new(memory.clone(), ExportTable::new(llext::LIBC_EXPORTS)),
        memory,
    )
}

fn operations() -> Vec<Operation> {
    vec![
        Operation {
            name: "load and link (basic, gcc -O2 -fPIC)",
            setup: |_| bytes("basic-gcc-O2-pic.o"),
            run: |r, b| r.load_with("basic", b, &NO_RUN).map(drop),
        },
        Operation {
            name: "load and link (farcall, clang -O0: GOT and stubs)",
            setup: |_| bytes("farcall-clang-O0-nopic.o"),
            run: |r, b| r.load_with("farcall", b, &NO_RUN).map(drop),
        },
        Operation {
            name: "load and link against a loaded extension (usemath on libmath)",
            setup: |r| {
                r.load_with("libmath", &bytes("libmath-gcc-O2-pic.o"), &NO_RUN)
                    .unwrap();
                bytes("usemath-gcc-O2-pic.o")
            },
            run: |r, b| r.load_with("usemath", b, &NO_RUN).map(drop),
        },
        Operation {
            name: "load, link and bring up (ctors: constructors run)",
            setup: |_| bytes("ctors-gcc-O2-pic.o"),
            run: |r, b| r.load("ctors", b).map(drop),
        },
        Operation {
            name: "load the Rust extension (rsext)",
            setup: |_| bytes("rsext.o"),
            run: |r, b| r.load_with("rsext", b, &NO_RUN).map(drop),
        },
        Operation {
            name: "load again (use count)",
            setup: |r| {
                let b = bytes("basic-gcc-O2-pic.o");
                r.load_with("basic", &b, &NO_RUN).unwrap();
                b
            },
            run: |r, b| r.load_with("basic", b, &NO_RUN).map(drop),
        },
        Operation {
            name: "unload (destructors run, memory freed)",
            setup: |r| {
                r.load("ctors", &bytes("ctors-gcc-O2-pic.o")).unwrap();
                Vec::new()
            },
            run: |r, _| {
                r.unload_name("ctors")
                    .map(|u| assert_eq!(u, Unloaded::Freed))
            },
        },
        Operation {
            name: "save portable (Registry::save)",
            setup: |r| {
                load_pair(r);
                Vec::new()
            },
            run: |r, _| r.save(&portable()).map(drop),
        },
        Operation {
            name: "save into a buffer (Registry::save_into)",
            setup: |r| {
                r.load_with("libmath", &bytes("libmath-gcc-O2-pic.o"), &NO_RUN)
                    .unwrap();
                vec![0u8; r.context_size(&portable()).unwrap()]
            },
            run: |r, b| {
                // The buffer is the caller's (e.g. retained RAM): made and dropped outside the count.
                let mut buf = disarm_scope(|| b.to_vec());
                let result = r.save_into(&portable(), &mut buf).map(drop);
                disarm_scope(|| drop(buf));
                result
            },
        },
        Operation {
            name: "decode a context (Context::from_bytes)",
            setup: |r| {
                r.load_with("libmath", &bytes("libmath-gcc-O2-pic.o"), &NO_RUN)
                    .unwrap();
                let ctx = r.save(&portable()).unwrap();
                r.unload_name("libmath").unwrap();
                ctx
            },
            run: |_, b| Context::from_bytes(b).map(drop),
        },
        Operation {
            name: "restore portable (new addresses)",
            setup: |_| {
                let (src, _) = registry();
                load_pair(&src);
                src.save(&portable()).unwrap()
            },
            run: |r, b| {
                let c = Context::from_bytes(b)?;
                r.restore(&c, &RestoreOptions::default()).map(drop)
            },
        },
        Operation {
            name: "restore in place (after forget_all)",
            setup: |r| {
                load_pair(r);
                let ctx = r
                    .save(&SaveOptions {
                        content_hashes: true,
                        ..SaveOptions::default()
                    })
                    .unwrap();
                r.forget_all().unwrap();
                ctx
            },
            run: |r, b| {
                let c = Context::from_bytes(b)?;
                r.restore(&c, &RestoreOptions::default()).map(drop)
            },
        },
        Operation {
            name: "discard an in-place context (after forget_all)",
            setup: |r| {
                load_pair(r);
                let ctx = r.save(&SaveOptions::default()).unwrap();
                r.forget_all().unwrap();
                ctx
            },
            run: |r, b| {
                let c = Context::from_bytes(b)?;
                r.discard(&c).map(drop)
            },
        },
    ]
}

/// Runs `f` with counting suspended (for test-side allocations inside an operation).
fn disarm_scope<T>(f: impl FnOnce() -> T) -> T {
    let saved = TALLY.with(|t| t.get());
    TALLY.with(|t| t.set(IDLE));
    let out = f();
    TALLY.with(|t| t.set(saved));
    out
}

/// The infallible allocations left in `llext` that these operations reach, by the file and function of
/// the innermost `llext` frame of the forked child that aborts: none. Every vector, string and table the
/// loader grows goes through `try_reserve` (`crates/llext/src/fallible.rs`), so a failure returns
/// `OutOfMemory` with nothing leaked or changed. A site that aborts fails the test; if one must be accepted,
/// list it here with what it allocates.
const INFALLIBLE: &[(&str, &str)] = &[];

#[test]
fn allocation_failure_at_every_point() {
    // Symbolise once here, so that each forked child reuses the parsed debug information.
    let _ = std::backtrace::Backtrace::force_capture().to_string();
    let mut report: BTreeMap<&'static str, (usize, usize, usize)> = BTreeMap::new();
    let mut sites: BTreeMap<String, (usize, std::collections::BTreeSet<String>)> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut provider_points = 0;
    for op in operations() {
        let (r, memory) = registry();
        let input = (op.setup)(&r);
        let before = r.extensions();
        let live_before = memory.live();

        // Extension memory: fail the Nth block.
        for n in 0.. {
            memory.fail_after(n);
            match (op.run)(&r, &input) {
                Err(Error::OutOfMemory { .. }) => {
                    provider_points += 1;
                    if r.extensions() != before || memory.live() != live_before {
                        problems.push(format!("{}: block {n}: state changed", op.name));
                    }
                }
                Err(e) => {
                    problems.push(format!("{}: block {n}: {e}", op.name));
                    break;
                }
                Ok(()) => break,
            }
        }
        memory.fail_after(usize::MAX / 2);
        // The provider-failure loop ended with one successful run in this process: start again.
        drop(r);
        let (r, memory) = registry();
        let input = (op.setup)(&r);
        memory.fail_after(usize::MAX / 2);

        // Heap: count the allocations of one clean run (in a child, so the parent's state stays).
        let count = match forked(|| {
            arm(0);
            let result = (op.run)(&r, &input);
            let t = disarm();
            result.map_err(|e| e.to_string())?;
            Ok(t.count.to_string())
        }) {
            Child::Exited(0, text) => text.trim().parse::<usize>().unwrap_or(0),
            other => panic!("{}: clean run failed: {other:?}", op.name),
        };
        let entry = report.entry(op.name).or_default();
        for n in 1..=count {
            let outcome = forked(|| {
                let before = r.extensions();
                let live = memory.live();
                arm(n);
                let result = (op.run)(&r, &input);
                let (failed, failed_align) = TALLY.with(|t| (t.get().failed, t.get().failed_align));
                let err = result.err();
                let kind = err.as_ref().map(|e| matches!(e, Error::OutOfMemory { .. }));
                // The error gives the refused request in bytes and its alignment, not a count of
                // values: a site that reports `align: 1` for values aligned to more names the count
                // (a review's 20,011-symbol object was refused as "20010 bytes aligned to 1" when
                // its symbol states took about 1 MB).
                let misreported = matches!(
                    err,
                    Some(Error::OutOfMemory { align: 1, .. }) if failed && failed_align > 1
                );
                let text = disarm_scope(|| err.as_ref().map(|e| e.to_string()));
                drop(err);
                let t = disarm();
                match kind {
                    None if failed => {
                        return Err("an allocation failed, yet the operation succeeded".into())
                    }
                    None => return Ok("ok".into()),
                    Some(false) => {
                        return Err(format!(
                            "not an out-of-memory error: {}",
                            text.unwrap_or_default()
                        ))
                    }
                    Some(true) if misreported => {
                        return Err(format!(
                            "out-of-memory error gives alignment 1 for an allocation aligned to {failed_align}: {}",
                            text.unwrap_or_default()
                        ))
                    }
                    Some(true) => {}
                }
                if t.allocs != t.frees || t.live_bytes != 0 {
                    return Err(format!(
                        "heap not balanced after the error: {} allocations, {} frees, {} bytes live",
                        t.allocs, t.frees, t.live_bytes
                    ));
                }
                if r.extensions() != before || memory.live() != live {
                    return Err("registry or extension memory changed".into());
                }
                Ok("oom".into())
            });
            entry.0 += 1;
            match outcome {
                Child::Exited(0, _) => entry.1 += 1,
                Child::Signaled(libc::SIGABRT, text) => {
                    entry.2 += 1;
                    let mut parts = text.lines().next().unwrap_or("").split('|').skip(1);
                    let site = parts.next().unwrap_or("(no llext frame)").to_string();
                    let location = parts.next().unwrap_or("").to_string();
                    let e = sites.entry(site).or_default();
                    e.0 += 1;
                    e.1.insert(location);
                }
                other => problems.push(format!("{}: allocation {n}: {other:?}", op.name)),
            }
        }
    }
    let mut points = 0;
    for (name, (tried, returned, aborted)) in &report {
        points += tried;
        println!(
            "reliability: alloc-failure: {name}: {tried} heap allocation points, {returned} returned OutOfMemory with nothing leaked or changed, {aborted} abort (infallible)"
        );
    }
    println!(
        "reliability: alloc-failure: {points} heap allocation points and {provider_points} extension-memory allocation points exercised; {} infallible allocation sites",
        sites.len()
    );
    for (site, (points, locations)) in &sites {
        let locations: Vec<&str> = locations.iter().map(String::as_str).collect();
        println!(
            "reliability: alloc-failure: infallible site {site} ({points} points; {})",
            locations.join(", ")
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let unexpected: Vec<&String> = sites
        .keys()
        .filter(|s| !INFALLIBLE.iter().any(|(k, _)| s == k))
        .collect();
    assert!(
        unexpected.is_empty(),
        "allocation sites that abort and are not documented in INFALLIBLE:\n{}",
        unexpected
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Review 10: `Context::from_bytes` ("no allocation") read a format-6 header's instruction set back through
/// its key, a `String`: an allocation (and an infallible one, behind `write!`) for every context a registry
/// that knows its core's ISA saved, as every RISC-V and Cortex-M firmware's does.
#[test]
fn decoding_a_context_with_an_isa_allocates_nothing() {
    let mut arena = common::ExecArena::new(1 << 20);
    let r = Registry::for_machine(
        llext::ArenaMemory::new(arena.bytes()),
        ExportTable::default(),
        243,
    );
    r.set_isa(llext::arch::Isa::from_key("rv32imafc_zba"));
    r.set_float_abi(Some(llext::arch::FloatAbi::Single));
    let elf = common::compile_riscv_gcc(
        "long triple(long x) { return 3 * x; }\n",
        &["-march=rv32imafc_zba", "-mabi=ilp32f"],
    );
    r.load("ext", &elf).unwrap();
    for options in [portable(), SaveOptions::default()] {
        let ctx = r.save(&options).unwrap();
        arm(0);
        let decoded = Context::from_bytes(&ctx).map(drop);
        let tally = disarm();
        assert_eq!(decoded, Ok(()));
        assert_eq!((tally.allocs, tally.count), (0, 0), "{tally:?}");
    }
    // And the core read back is the one saved: a core without Zba refuses the context.
    let ctx = r.save(&portable()).unwrap();
    let mut arena2 = common::ExecArena::new(1 << 20);
    let r2 = Registry::for_machine(
        llext::ArenaMemory::new(arena2.bytes()),
        ExportTable::default(),
        243,
    );
    r2.set_isa(llext::arch::Isa::from_key("rv32imafc"));
    let e = r2
        .restore(
            &Context::from_bytes(&ctx).unwrap(),
            &RestoreOptions::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("rv32imafc_zba"), "{e}");
}
