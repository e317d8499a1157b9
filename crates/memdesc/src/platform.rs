//! Platform hooks: what the embedding kernel (or the simulator) provides.
//!
//! The core never asks the host for anything but these: which CPU is running,
//! how many there are, how to sleep until a folio lock may be free, and (with
//! default implementations) which CPU's RCU state a thread may use and how to
//! pass time in a grace-period wait, and how to make another CPU flush its TLB
//! (a shootdown). Later layers add their hooks here so there is one trait to
//! implement when porting. Quiescent
//! states go the other way: the host calls [`crate::rcu::Rcu::quiescent`].
//!
//! Under the model checker the implementations must be deterministic: a
//! thread's CPU id is fixed and waiting is a yield.

pub mod failpoints;
pub(crate) use failpoints::{failpoint, failpoint_check};

/// Index of a CPU, `0..nr_cpus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuId(pub u32);

impl CpuId {
    /// The index as a `usize`, for per-CPU arrays.
    #[inline(always)]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a wait is waiting for: the folio lock of one frame.
///
/// The key is stable for the frame's life (its pfn), so a host can hash it to
/// a wait queue the way Linux hashes `folio_waitqueue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WaitKey(pub u64);

/// The services a host supplies to the core.
///
/// # Contract
/// - `current_cpu` returns an id below `nr_cpus`, and a CPU's per-CPU data is
///   used by one thread at a time (the kernel guarantees this by disabling
///   preemption; the simulator by running each CPU as one thread). The per-CPU
///   lists are still locked, so a violation costs speed, never memory safety.
/// - `wait` may return spuriously; callers recheck. It must return promptly
///   once `wake_all` is called for the same key after `still_blocked` returned
///   `true` (no lost wake-ups).
pub trait Platform: Sync {
    /// The CPU this code runs on.
    fn current_cpu(&self) -> CpuId;

    /// How many CPUs exist; fixed for the platform's lifetime.
    fn nr_cpus(&self) -> u32;

    /// Sleeps until woken for `key`, unless `still_blocked()` is false once the
    /// wait queue is held.
    fn wait(&self, key: WaitKey, still_blocked: &dyn Fn() -> bool);

    /// Wakes every waiter on `key`.
    fn wake_all(&self, key: WaitKey);

    /// The CPU whose RCU read-side state this thread may use, or `None` for
    /// a thread that is not running as a CPU (a test, a host thread).
    ///
    /// Return `Some(cpu)` only if this thread is the one running as `cpu`
    /// (no other thread enters RCU read sections or reports quiescent states
    /// as `cpu` meanwhile) and does not move to another CPU inside a read
    /// section. The default, `None`, sends every reader through the shared
    /// counter of [`crate::rcu`]: always correct, one contended cache line
    /// slower.
    fn rcu_reader_cpu(&self) -> Option<CpuId> {
        None
    }

    /// Enters a section in which this thread is the only user of one CPU's
    /// per-CPU state until [`Platform::local_exit`], and returns that CPU; a
    /// kernel disables preemption (or migration) here, the simulator's CPU
    /// is its thread. `None`: this thread has no CPU of its own (a host
    /// thread, a test on [`SpinPlatform`]); callers then take their shared,
    /// locked slow path.
    ///
    /// # Contract
    /// - Between `Some(cpu)` and the matching `local_exit(cpu)`, no other
    ///   thread runs as `cpu`, and this thread stays on `cpu`. The same
    ///   thread may enter again before it exits (an interrupt in a kernel):
    ///   per-CPU code guards against that itself (the slab's local trylock).
    /// - Entering and exiting make no locked instruction on the fast path of
    ///   a production platform: that is the point of per-CPU state.
    /// - The default, `None`, is always correct and sends every caller to
    ///   the slow path.
    fn local_enter(&self) -> Option<CpuId> {
        None
    }

    /// Leaves the section [`Platform::local_enter`] opened for `cpu` (a
    /// kernel re-enables preemption). The default does nothing.
    fn local_exit(&self, cpu: CpuId) {
        let _ = cpu;
    }

    /// Lets time pass in a polling loop (an RCU grace-period or barrier
    /// wait): a host may yield or sleep briefly. The default is a spin hint,
    /// a yield point under the model.
    fn relax(&self) {
        crate::sync::spin_loop();
    }

    /// Makes `cpu` run `flush` (which invalidates entries of its TLB) and
    /// returns once it has: a TLB shootdown. A kernel sends an
    /// inter-processor interrupt and waits for the acknowledgement, the way
    /// Linux's `flush_tlb_multi` does. The default runs `flush` on the
    /// calling thread, which is exact for the core's software TLBs: `flush`
    /// takes `cpu`'s TLB lock, which that CPU holds across every translation
    /// and access it makes, so no access of `cpu` straddles the flush.
    fn tlb_shootdown(&self, cpu: CpuId, flush: &dyn Fn()) {
        let _ = cpu;
        flush();
    }

    /// Called at a protocol step named by `at` (feature `failpoints` only;
    /// see [`failpoints`]): a race replay blocks here until it is this
    /// thread's turn, and may answer [`FailAction::Skip`](failpoints::FailAction)
    /// at a check to run the historical code. The default continues.
    #[cfg(feature = "failpoints")]
    fn failpoint(&self, at: failpoints::Failpoint) -> failpoints::FailAction {
        let _ = at;
        failpoints::FailAction::Continue
    }
}

/// A single-CPU platform whose waits spin: for tests, loom models and early
/// boot, where nobody else can hold a lock for long.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpinPlatform;

impl Platform for SpinPlatform {
    fn current_cpu(&self) -> CpuId {
        CpuId(0)
    }

    fn nr_cpus(&self) -> u32 {
        1
    }

    fn wait(&self, _key: WaitKey, still_blocked: &dyn Fn() -> bool) {
        if still_blocked() {
            crate::sync::spin_loop();
        }
    }

    fn wake_all(&self, _key: WaitKey) {}
}
