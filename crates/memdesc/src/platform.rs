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

use core::marker::PhantomData;

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

/// Proof that the calling thread is, until this token goes back to
/// [`Platform::local_exit`], the only user of one CPU's per-CPU state.
///
/// Made only by the `unsafe` [`LocalCpu::new_unchecked`] (inside a
/// platform's [`Platform::local_enter`]), so per-CPU code may touch that
/// CPU's unlocked state while it holds one. Neither `Send` nor `Sync` nor
/// `Clone`: it stays with the thread that entered, once.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// fn leak(cpu: memdesc::LocalCpu) {
///     send(cpu); // a token cannot move to another thread
/// }
/// ```
///
/// ```compile_fail
/// // Safe code cannot make one.
/// let _ = memdesc::LocalCpu { cpu: memdesc::CpuId(0), _not_send: core::marker::PhantomData };
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct LocalCpu {
    cpu: CpuId,
    _not_send: PhantomData<*const ()>,
}

impl LocalCpu {
    /// A token for `cpu`.
    ///
    /// # Safety
    /// From this call until the token is passed to [`Platform::local_exit`]
    /// (or dropped), no other thread uses `cpu`'s per-CPU state (no other
    /// thread holds a token for `cpu`), and the calling thread stays on
    /// `cpu`. The same thread may make another token for `cpu` before
    /// exiting (an interrupt in a kernel, a re-entry): per-CPU code guards
    /// that case itself (the slab's local trylock). `cpu` need not be below
    /// `nr_cpus`; users bounds-check it.
    #[inline(always)]
    pub unsafe fn new_unchecked(cpu: CpuId) -> Self {
        Self { cpu, _not_send: PhantomData }
    }

    /// The CPU this thread runs as.
    #[inline(always)]
    pub fn cpu(&self) -> CpuId {
        self.cpu
    }
}

/// Proof that the calling thread runs as one CPU for RCU: it may count its
/// read sections on that CPU's counter.
///
/// Made only by the `unsafe` [`RcuReaderCpu::new_unchecked`] (inside a
/// platform's [`Platform::rcu_reader_cpu`]). Neither `Send` nor `Sync` nor
/// `Clone`: a read section keeps it and ends on the thread that began it.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// fn leak(cpu: memdesc::RcuReaderCpu) {
///     send(cpu); // a token cannot move to another thread
/// }
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct RcuReaderCpu {
    cpu: CpuId,
    _not_send: PhantomData<*const ()>,
}

impl RcuReaderCpu {
    /// A token for `cpu`.
    ///
    /// # Safety
    /// At this call the calling thread is the one running as `cpu`: no
    /// other thread enters read sections or reports quiescent states as
    /// `cpu` until this thread stops running as it, and a thread that runs
    /// as `cpu` afterwards is ordered after this one (it took the CPU over
    /// by a release/acquire hand-off, so it sees this thread's counts). A
    /// read section keeps counting on `cpu`'s counter, which is an atomic
    /// read-modify-write, after its thread has stopped running as `cpu`.
    #[inline(always)]
    pub unsafe fn new_unchecked(cpu: CpuId) -> Self {
        Self { cpu, _not_send: PhantomData }
    }

    /// The CPU whose counter this thread's read sections use.
    #[inline(always)]
    pub fn cpu(&self) -> CpuId {
        self.cpu
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
/// - `current_cpu` returns an id below `nr_cpus`; it is a hint (which CPU's
///   locked lists to use), so any answer is memory safe. What needs a
///   CPU's state to itself asks for a token instead ([`LocalCpu`],
///   [`RcuReaderCpu`]), which only `unsafe` code can make.
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
    /// Only a platform that can prove this thread runs as a CPU returns
    /// `Some`: the token is made by the `unsafe`
    /// [`RcuReaderCpu::new_unchecked`], whose contract is that proof. The
    /// default, `None`, sends every reader through the shared counter of
    /// [`crate::rcu`]: always correct, one contended cache line slower.
    fn rcu_reader_cpu(&self) -> Option<RcuReaderCpu> {
        None
    }

    /// Enters a section in which this thread is the only user of one CPU's
    /// per-CPU state until [`Platform::local_exit`], and returns that CPU as
    /// a [`LocalCpu`] token; a kernel disables preemption (or migration)
    /// here, a user-space host checks the thread's CPU binding. `None`: this
    /// thread has no CPU of its own (a host thread, a test on
    /// [`SpinPlatform`]); callers then take their shared, locked slow path.
    ///
    /// The token is the proof the per-CPU code relies on for memory
    /// safety: only [`LocalCpu::new_unchecked`], an `unsafe fn` whose
    /// contract is exclusivity, makes one, so a platform cannot hand out a
    /// shared CPU without writing `unsafe`. Entering and exiting make no
    /// locked instruction on the fast path of a production platform: that
    /// is the point of per-CPU state. The default, `None`, is always
    /// correct and sends every caller to the slow path.
    fn local_enter(&self) -> Option<LocalCpu> {
        None
    }

    /// Leaves the section [`Platform::local_enter`] opened with `cpu` (a
    /// kernel re-enables preemption). The default drops the token.
    fn local_exit(&self, cpu: LocalCpu) {
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
