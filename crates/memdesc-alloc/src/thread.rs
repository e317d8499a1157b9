//! Entering the allocator, and the thread-exit and fork hooks.
//!
//! # Entry
//! Every call enters through [`enter`]: a thread-local depth makes a
//! re-entrant call (libc calling `malloc` from inside the allocator: the
//! initialisation's `pthread_atfork`, a key ≥ 32, a panic message) return
//! `None`, and the caller serves it from the bootstrap arena. Then the
//! thread marks itself *inside*: a thread with a CPU slot stores 1 in its
//! slot's own flag (a plain store, no locked instruction), a thread
//! without one counts itself in a shared counter.
//!
//! # Fork
//! `fork` must not copy a lock held by a thread that will not exist in the
//! child. The prefork handler publishes a *fork pending* word naming the
//! forking thread, makes every running thread's earlier stores visible
//! (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: an asymmetric barrier,
//! so the entry's store-then-load needs only a compiler fence; a full fence
//! on both sides where membarrier is unavailable), and waits until no
//! thread is inside; threads entering meanwhile see the word and wait
//! outside, holding nothing. The forking thread itself passes (other
//! libraries' prefork handlers may allocate); the handshake is `gate`'s
//! (FORK.1–7 in docs/PROTOCOLS.md). The parent handler clears
//! the word; the child's clears it and counts the CPU slots of the threads
//! it does not have (they stay held, with what their sheaves and lists
//! cache: `memdesc-host` cannot take a slot back from a gone thread).
//!
//! # Thread exit
//! A claiming thread sets a pthread key (created at initialisation; a key
//! below 32 lives in the thread descriptor, so setting it allocates
//! nothing) whose destructor flushes the thread's CPU's sheaves and lists
//! and releases the slot; afterwards the thread's calls take the slow path
//! and never claim again. The main thread's sheaves are flushed at exit by
//! a `.fini_array` hook, which also prints the statistics.

use crate::engine::Engine;
use crate::gate::Gate;
use crate::platform::{self, Binding, ThreadState};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The CPU slots' inside flags, the slot-less count and the fork pending
/// word (`gate`).
#[cfg(not(memdesc_loom))]
static GATE: Gate<{ platform::NR_SLOTS as usize }> = Gate::new();
/// Under loom the gate's atomics are loom's, which have no const
/// constructor; only the gate's own models run under that cfg.
#[cfg(memdesc_loom)]
static GATE: std::sync::LazyLock<Gate<{ platform::NR_SLOTS as usize }>> = std::sync::LazyLock::new(Gate::new);
/// Whether membarrier is registered (the entry then needs no fence).
static MEMBARRIER: AtomicBool = AtomicBool::new(false);
/// CPU slots held by threads a forked child does not have (statistics).
pub(crate) static ORPHANED_SLOTS: AtomicU32 = AtomicU32::new(0);
/// The exit-hook key, plus one (0: not created).
static KEY: AtomicU32 = AtomicU32::new(0);

const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 8;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 16;

/// Being inside the allocator; dropping it leaves.
pub(crate) struct Guard<'t> {
    thread: &'t ThreadState,
    /// The slot whose inside flag we set, or `None` for the shared count.
    slot: Option<u32>,
}

/// Enters the allocator as `thread`; `None` for a re-entrant call. Always
/// inlined: out of line, the guard comes back through memory (about 20
/// instructions a call more).
#[inline(always)]
pub(crate) fn enter(thread: &ThreadState) -> Option<Guard<'_>> {
    if thread.depth.get() != 0 {
        return None;
    }
    thread.depth.set(1);
    let slot = match thread.binding() {
        Binding::Slot(slot) => Some(slot),
        _ => None,
    };
    // Relaxed: set once at initialisation, before any thread could fork.
    let membarrier = MEMBARRIER.load(Ordering::Relaxed);
    GATE.enter(slot.map(|s| s as usize), thread.token(), membarrier);
    Some(Guard { thread, slot })
}

impl Drop for Guard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        GATE.leave(self.slot.map(|s| s as usize));
        self.thread.depth.set(0);
    }
}

impl Guard<'_> {
    /// Claims a CPU slot for this thread if it has never had one, or has
    /// been without one for a while (the engine is up, so the exit key
    /// exists). This call stays counted as it entered.
    #[inline]
    pub(crate) fn claim(&self) {
        if !self.thread.wants_slot() {
            return;
        }
        if let Binding::Slot(_) = self.thread.claim_any() {
            // Relaxed: created before the engine was published (OnceLock).
            let key = KEY.load(Ordering::Relaxed);
            if key != 0 {
                // SAFETY: a key we created; a non-null value makes its
                // destructor run at thread exit. Keys below 32 do not
                // allocate; above, glibc's calloc re-enters us and is
                // served by the bootstrap arena (we are inside).
                unsafe { libc::pthread_setspecific(key - 1, core::ptr::dangling::<libc::c_void>()) };
            }
        }
    }

    /// This thread's binding now.
    #[inline(always)]
    pub(crate) fn binding(&self) -> Binding {
        self.thread.binding()
    }
}

/// Sets up the exit key, the fork handlers and membarrier; called once by
/// the initialising thread, inside, before the engine is published.
pub(crate) fn init_hooks() {
    // SAFETY: registration takes no pointers; a failure leaves the entry
    // on its fence.
    let registered =
        unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) } == 0;
    // Relaxed: published with the engine (OnceLock), before other threads
    // use the allocator; a thread that entered before reads false and
    // fences, which is also correct.
    MEMBARRIER.store(registered, Ordering::Relaxed);
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-pointer; the destructor is an extern "C"
    // fn that lives for the process.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
        // Relaxed: published with the engine.
        KEY.store(key + 1, Ordering::Relaxed);
    }
    // SAFETY: three extern "C" fns that live for the process.
    unsafe { libc::pthread_atfork(Some(prefork), Some(postfork_parent), Some(postfork_child)) };
}

/// The exit key's destructor: returns the thread's cached objects and
/// frames and releases its slot.
extern "C" fn thread_exit(_value: *mut libc::c_void) {
    platform::with_thread(|thread| {
        let guard = enter(thread);
        // The flush runs while the thread still runs as its CPU (its
        // sheaves are reachable only from it); then the slot goes.
        thread.release_with(|| {
            if let (Some(_), Some(engine)) = (&guard, crate::engine::ready()) {
                engine.flush_local();
            }
        });
        drop(guard);
    });
}

/// At process exit (the main thread): flush and print the statistics.
extern "C" fn process_exit() {
    // Not under loom: the gate's atomics there exist only inside a model,
    // and the test binary exits outside one.
    if cfg!(memdesc_loom) {
        return;
    }
    platform::with_thread(process_exit_as);
}

fn process_exit_as(thread: &ThreadState) {
    match (enter(thread), crate::engine::ready()) {
        (Some(guard), Some(engine)) => {
            engine.flush_local();
            drop(guard);
            if engine.stats {
                crate::stats::print_summary();
            }
        }
        // Never used (a program that did not allocate): still say the
        // library was loaded, for whoever checks.
        (_, None) if crate::engine::env_flag(b"MEMDESC_STATS\0") => crate::stats::print_summary(),
        _ => {}
    }
}

#[used]
#[link_section = ".fini_array"]
static PROCESS_EXIT: extern "C" fn() = process_exit;

extern "C" fn prefork() {
    let (token, own) = platform::with_thread(|t| (t.token(), t.binding()));
    let own = match own {
        Binding::Slot(s) => Some(s as usize),
        _ => None,
    };
    GATE.prefork(token, own, || {
        // Relaxed: set at initialisation (the handler exists only after it).
        if !MEMBARRIER.load(Ordering::Relaxed) {
            return false;
        }
        // SAFETY: a registered command without pointers. It makes every
        // running thread of the process execute a full barrier: their
        // inside-flag stores are visible to the gate's scan.
        unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
        true
    });
}

extern "C" fn postfork_parent() {
    GATE.postfork_parent();
}

extern "C" fn postfork_child() {
    // The child is single-threaded: the other threads' inside marks and
    // slots belong to threads that do not exist here. Their slots stay
    // held (memdesc-host gives no way to take a slot from a thread that
    // is gone), with the objects and frames cached in them: counted.
    let orphaned = platform::orphaned_by_fork(platform::binding());
    // Relaxed: single-threaded.
    ORPHANED_SLOTS.store(orphaned, Ordering::Relaxed);
    GATE.postfork_child();
}

/// The engine's per-thread flush, for the exit hooks.
impl Engine {
    /// Gives the calling CPU's cached objects (its sheaves, and the barn's
    /// full sheaves) and cached frames (its pcp lists, answering any drain
    /// request) back, while the thread still runs as that CPU.
    pub(crate) fn flush_local(&self) {
        self.slab.shrink_all();
        self.node.drain_local();
    }
}
