//! The fork gate: the handshake between threads entering the allocator and
//! the thread that forks (FORK.1–7 in docs/PROTOCOLS.md).
//!
//! A thread *inside* holds, or may take, the allocator's locks; `fork` must
//! not copy a lock held by a thread that will not exist in the child. An
//! entering thread marks itself inside, then checks the *fork pending*
//! word; the forking thread publishes the word, then scans the marks and
//! waits until none is set. This is store buffering (Dekker): each side
//! stores, then loads what the other stored, and a barrier between the
//! store and the load on both sides guarantees that at least one of them
//! sees the other — either the entering thread sees the pending fork and
//! backs out, or the forking thread sees it inside and waits for it.
//!
//! # The barrier, and what the models check
//! Where `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` is registered, the
//! entry's barrier is a compiler fence only and the forking thread's
//! barrier is the membarrier: the kernel makes every running thread of the
//! process execute a full memory barrier between its return-to-user points,
//! so each entering thread's store-then-load has a full barrier either
//! before its store (it then reads the pending word) or after it (its mark
//! is visible to the scan); a thread not running has no store in flight.
//! That is the fallback's guarantee (a SeqCst fence on both sides) with the
//! entering side's fence executed by the kernel on its behalf. Loom has no
//! asymmetric barrier, so under `memdesc_loom` the entry always takes the
//! fallback's fence and the models check the fallback; the compiler-fence
//! variant is sound by membarrier's contract, not by a model.
//!
//! The state is a [`Gate`] generic over the number of CPU slots, built on
//! std atomics normally and on loom's under `--cfg memdesc_loom`.

#[cfg(memdesc_loom)]
use ::loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(memdesc_loom)]
use ::loom::thread::yield_now;
#[cfg(not(memdesc_loom))]
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(memdesc_loom))]
use std::thread::yield_now;

#[cfg(all(test, memdesc_loom))]
mod loom;

/// One CPU slot's inside flag, on a cache line of its own: written only by
/// the slot's thread (plain stores), read by the forking thread.
#[repr(align(64))]
struct Inside(AtomicU32);

/// The inside marks of `N` CPU slots, the slot-less threads' count, and the
/// fork pending word.
pub(crate) struct Gate<const N: usize> {
    /// One flag per CPU slot: its thread is inside.
    inside: [Inside; N],
    /// Threads without a slot inside.
    shared_inside: AtomicU64,
    /// The forking thread's token while a fork is pending, else 0.
    pending: AtomicUsize,
}

impl<const N: usize> Gate<N> {
    /// A gate with nobody inside and no fork pending.
    #[cfg(not(memdesc_loom))]
    pub(crate) const fn new() -> Self {
        Self {
            inside: [const { Inside(AtomicU32::new(0)) }; N],
            shared_inside: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
        }
    }

    /// A gate with nobody inside and no fork pending (loom's atomics have
    /// no const constructor).
    #[cfg(memdesc_loom)]
    pub(crate) fn new() -> Self {
        Self {
            inside: core::array::from_fn(|_| Inside(AtomicU32::new(0))),
            shared_inside: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
        }
    }

    /// Enters as the thread `token` (nonzero), on CPU slot `slot` or, for
    /// `None`, counted among the slot-less threads; waits outside while
    /// another thread's fork is pending. `membarrier`: the forking thread
    /// orders with membarrier, so the entry needs only a compiler fence.
    #[inline(always)]
    pub(crate) fn enter(&self, slot: Option<usize>, token: usize, membarrier: bool) {
        loop {
            // Mutant: the check before the mark (FORK.3 before FORK.1).
            // Acquire: as FORK.3's.
            #[cfg(memdesc_mutant = "fork_pending_before_inside")]
            let pending = self.pending.load(Ordering::Acquire);
            match slot {
                Some(s) => {
                    // FORK.1. Relaxed: ordered before the load of the
                    // pending word by entry_barrier (FORK.2).
                    self.inside[s].0.store(1, Ordering::Relaxed);
                    entry_barrier(membarrier);
                }
                None => {
                    // FORK.1 (slot-less). SeqCst: counts us before the
                    // fence below (the slow path).
                    self.shared_inside.fetch_add(1, Ordering::SeqCst);
                    // FORK.2. SeqCst: store buffering with prefork's fence
                    // (FORK.5), as in entry_barrier's fallback.
                    fence(Ordering::SeqCst);
                }
            }
            // FORK.3. After the barrier of FORK.2, which pairs with
            // prefork's (FORK.5). Acquire: pairs with the Release clear of
            // the fork handlers (FORK.7) when it reads it, as wait_for_fork
            // does: what the forking thread did while its fork was pending
            // happens before we go inside (on x86 the same plain load).
            #[cfg(not(memdesc_mutant = "fork_pending_before_inside"))]
            let pending = self.pending.load(Ordering::Acquire);
            if pending == 0 || pending == token {
                return;
            }
            self.leave(slot);
            self.wait_for_fork();
        }
    }

    /// Leaves (FORK.4): what the thread did inside happens before a fork
    /// that sees it gone.
    #[inline(always)]
    pub(crate) fn leave(&self, slot: Option<usize>) {
        match slot {
            Some(s) => {
                // Release: pairs with prefork's Acquire scan (FORK.6): what
                // we did inside (locks released) happens before the fork.
                #[cfg(not(memdesc_mutant = "fork_relaxed_leave"))]
                self.inside[s].0.store(0, Ordering::Release);
                // Relaxed: the mutant's, the scan acquires nothing.
                #[cfg(memdesc_mutant = "fork_relaxed_leave")]
                self.inside[s].0.store(0, Ordering::Relaxed);
            }
            // Release: as above, with the scan of the count.
            None => drop(self.shared_inside.fetch_sub(1, Ordering::Release)),
        }
    }

    /// Waits outside until the pending fork is done (FORK.3's other arm).
    #[cold]
    fn wait_for_fork(&self) {
        // Acquire: pairs with the Release clear of the fork handlers
        // (FORK.7): what the forking thread did while it was pending
        // happens before we go inside.
        while self.pending.load(Ordering::Acquire) != 0 {
            yield_now();
        }
    }

    /// The prefork handler, as the thread `token` on slot `own` (it may
    /// allocate while its fork is pending): publishes the pending word
    /// (FORK.5), orders it before the scan (`membarrier`: runs the
    /// asymmetric barrier and says whether it did; otherwise a SeqCst
    /// fence), and waits until no other thread is inside (FORK.6).
    pub(crate) fn prefork(&self, token: usize, own: Option<usize>, membarrier: impl FnOnce() -> bool) {
        // FORK.5. Release: nothing to publish but the word; the barrier
        // below orders it before the scan.
        self.pending.store(token, Ordering::Release);
        if !membarrier() {
            // SeqCst: pairs with the entry's fence (FORK.2): store
            // buffering, one of the two sides sees the other.
            fence(Ordering::SeqCst);
        }
        // FORK.6.
        for (index, inside) in self.inside.iter().enumerate() {
            // Acquire: pairs with the Release of leave (FORK.4).
            while Some(index) != own && inside.0.load(Ordering::Acquire) != 0 {
                yield_now();
            }
        }
        // Acquire: pairs with the Release of leave (FORK.4), slot-less.
        #[cfg(not(memdesc_mutant = "fork_scan_skips_shared"))]
        while self.shared_inside.load(Ordering::Acquire) != 0 {
            yield_now();
        }
    }

    /// The parent's postfork handler (FORK.7): lets the waiting threads in.
    pub(crate) fn postfork_parent(&self) {
        // Release: pairs with wait_for_fork's Acquire.
        self.pending.store(0, Ordering::Release);
    }

    /// The child's postfork handler (FORK.7): the child is single-threaded,
    /// so the other threads' marks belong to threads that do not exist.
    pub(crate) fn postfork_child(&self) {
        for inside in &self.inside {
            // Relaxed: single-threaded.
            inside.0.store(0, Ordering::Relaxed);
        }
        // Relaxed: single-threaded.
        self.shared_inside.store(0, Ordering::Relaxed);
        // Release: single-threaded; pairs with wait_for_fork for form's sake.
        self.pending.store(0, Ordering::Release);
    }
}

/// The store-then-load barrier of the entry (FORK.2; pairs with prefork's
/// membarrier or fence, FORK.5).
#[inline(always)]
fn entry_barrier(membarrier: bool) {
    if cfg!(memdesc_mutant = "fork_no_entry_barrier") {
        return;
    }
    if membarrier && cfg!(not(memdesc_loom)) {
        // SeqCst compiler fence: the store of our inside flag is not moved
        // after the load of the pending word by the compiler; the CPU is
        // ordered by prefork's membarrier (asymmetric barrier).
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        // SeqCst: the store-buffering pattern with prefork's fence: either
        // we see the pending fork or it sees us inside.
        fence(Ordering::SeqCst);
    }
}
