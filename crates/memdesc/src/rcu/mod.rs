//! RCU: read-side critical sections, grace periods, deferred callbacks.
//!
//! # Design
//! A **read section** ([`RcuReadGuard`], from [`Rcu::read_lock`]) counts
//! itself in a reader counter: the running CPU's own counter when the
//! platform says this thread is a CPU ([`Platform::rcu_reader_cpu`]), else
//! one shared counter for every other thread (a test, a host thread, later
//! the global allocator). Entering is one RMW on that counter and a full
//! fence (RCU.1); leaving is one Release RMW (RCU.2). A CPU reader writes
//! only its CPU's own cache line; a non-CPU reader pays a shared-line RMW,
//! which is correct for any number of threads because the counter counts
//! sections, not threads.
//!
//! A **grace period** (GP) is numbered: [`Rcu::synchronize`] (or the
//! callback machinery) starts GP `g` by incrementing `gp_seq` (RCU.3), and
//! GP `g` is over once a scan, after a full fence (RCU.4), finds every CPU
//! **quiescent for `g`**: its reader counter at 0, or a quiescent state
//! reported for a GP number `>= g` (RCU.5, RCU.6); and the shared counter
//! at 0. The fences of RCU.1 and RCU.4 form the store-buffering pair: either
//! the scan sees the reader's count, or the reader sees everything the
//! updater did before the GP started (the unpublished pointer). An idle CPU
//! has no section open, so its counter shows it quiescent without it
//! reporting anything; [`Rcu::idle_enter`] is only a last report.
//!
//! **Quiescent states** ([`Rcu::quiescent`]) are what keep grace periods
//! short on a CPU that is almost always inside a read section: the host (the
//! simulator between operations, a kernel on context switch) reports that
//! the CPU is outside any section, and the report counts for every GP
//! started before it. Reports also run the CPU's ready callbacks.
//!
//! **Callbacks** ([`Rcu::call_rcu`]) queue an intrusive [`RcuHead`] the
//! caller embeds in the object to free: no heap. The callback is a
//! `&dyn` [`RcuCallback`], so it carries its context (a plain `fn` is one).
//! [`Rcu::call_rcu_frame`] defers a frozen folio (a page-table frame, P5)
//! with the head written into the folio's own descriptor owner words, and
//! hands the folio back to a [`FrameCallback`] after the grace period.
//! Each CPU (and the non-CPU threads together) has its own FIFO queue of
//! two segments, `next` (no GP yet) and `wait` (waiting for GP `g`);
//! whoever polls the queue ([`Rcu::quiescent`] on that CPU, [`Rcu::poll`],
//! [`Rcu::barrier`]) runs the `wait` segment once its GP is over and starts
//! a GP for `next`.
//! [`Rcu::barrier`] waits until every callback queued before it has run.
//!
//! **Stalls**: a CPU found busy (a section open, no report) by
//! `stall_scans` consecutive scans is reported ([`RcuReport::stalls`],
//! [`RcuReport::last_stalled_cpu`]), as Linux's RCU CPU stall warning does.
//! A queue holding more than `max_pending` callbacks does not grow: the
//! next `call_rcu` waits for a grace period itself and runs the callback at
//! once, as Linux's `kfree_rcu` does when it cannot allocate.
//!
//! docs/PROTOCOLS.md (section RCU) lists the steps, their orderings and the
//! models that fail without each.

mod callback;
mod head;
#[cfg(all(test, memdesc_loom))]
mod loom;
#[cfg(all(test, not(memdesc_loom)))]
mod tests;

pub use head::{FrameCallback, FrameReturn, RcuCallback, RcuHead};

use crate::buddy::MAX_CPUS;
use crate::platform::{CpuId, Platform, RcuReaderCpu};
use crate::sync::{fence, AtomicU64, Ordering, StatWord};
use callback::CallbackQueue;
use core::fmt;
use core::marker::PhantomData;

/// Tuning of an [`Rcu`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcuConfig {
    /// Consecutive scans that may find a CPU busy before it is reported as
    /// stalled (and again every as many scans after that).
    pub stall_scans: u64,
    /// Callbacks one queue may hold; past it, `call_rcu` waits for a grace
    /// period itself and runs the callback at once.
    pub max_pending: u64,
}

impl Default for RcuConfig {
    fn default() -> Self {
        Self { stall_scans: 1 << 20, max_pending: 1 << 14 }
    }
}

/// Why an [`Rcu`] could not be built, or a callback not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RcuError {
    /// The platform has more CPUs than [`MAX_CPUS`], or none.
    TooManyCpus(u32),
    /// The head is already queued and its callback has not run yet.
    AlreadyQueued,
    /// `call_rcu_frame` was given a folio of another node than its
    /// [`FrameReturn`]'s.
    ForeignFolio,
}

impl fmt::Display for RcuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyCpus(n) => write!(f, "{n} CPUs; supported: 1..={MAX_CPUS}"),
            Self::AlreadyQueued => f.write_str("RCU head already queued"),
            Self::ForeignFolio => f.write_str("folio of another node than the frame return's"),
        }
    }
}

impl core::error::Error for RcuError {}

/// Counters of an [`Rcu`]: snapshots, summed racily.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RcuReport {
    /// Grace periods started.
    pub gp_started: u64,
    /// Grace periods known complete (the highest completed GP number: each
    /// completion implies every earlier one).
    pub gp_completed: u64,
    /// Callbacks queued by `call_rcu`.
    pub callbacks_queued: u64,
    /// Callbacks run.
    pub callbacks_invoked: u64,
    /// `call_rcu` calls that found their queue full and waited for a grace
    /// period themselves.
    pub callbacks_synchronous: u64,
    /// Stall reports: a CPU found busy by `stall_scans` consecutive scans.
    pub stalls: u64,
    /// The CPU of the last stall report.
    pub last_stalled_cpu: Option<CpuId>,
}

/// One CPU's RCU state, on its own cache line so a reader writes nothing
/// another CPU's reader writes.
#[repr(align(64))] // One line per CPU: the read fast path's only write.
struct RcuCpu {
    /// Read sections open on this CPU. Moved only by the thread running as
    /// this CPU: +1 on entry (RCU.1), -1 on exit (RCU.2).
    readers: AtomicU64,
    /// The highest GP number this CPU reported a quiescent state for
    /// (RCU.6): it was outside every read section after that GP started.
    qs_seq: AtomicU64,
    /// Consecutive scans that found this CPU busy (stall detection).
    busy_scans: StatWord,
}

impl RcuCpu {
    fn new() -> Self {
        Self { readers: AtomicU64::new(0), qs_seq: AtomicU64::new(0), busy_scans: StatWord::new(0) }
    }
}

/// The RCU state of one machine: per-CPU reader counters and quiescent
/// states, the shared counter of non-CPU readers, the GP number and the
/// callback queues. Lives wherever the host puts it (a static, the node's
/// owner); it allocates nothing.
///
/// # Examples
/// Unpublish, wait for the readers, then free; or defer the free.
///
/// ```
/// use memdesc::{Rcu, RcuConfig, RcuHead, SpinPlatform};
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// static FREED: AtomicBool = AtomicBool::new(false);
/// fn free(_head: &RcuHead<'_>) {
///     FREED.store(true, Ordering::Release);
/// }
///
/// let head = RcuHead::new(0); // embedded in the object to free
/// let rcu = Rcu::new(&SpinPlatform, RcuConfig::default())?;
/// {
///     let _guard = rcu.read_lock();
///     // ... read RCU-protected data ...
/// }
/// rcu.synchronize(); // every section open before this call has ended
/// rcu.call_rcu(&head, &free)?;
/// rcu.barrier(); // polls until the callback has run
/// assert!(FREED.load(Ordering::Acquire));
/// assert_eq!(rcu.report().callbacks_invoked, 1);
/// # Ok::<(), memdesc::RcuError>(())
/// ```
pub struct Rcu<'a> {
    platform: &'a dyn Platform,
    config: RcuConfig,
    nr_cpus: usize,
    /// The number of the last GP started (RCU.3); GP 0 is "none".
    gp_seq: AtomicU64,
    /// Read sections open on threads that are not CPUs (RCU.1, RCU.2).
    foreign_readers: AtomicU64,
    cpus: [RcuCpu; MAX_CPUS],
    /// One queue per CPU, then one for the non-CPU threads.
    queues: [CallbackQueue<'a>; MAX_CPUS + 1],
    gp_completed: StatWord,
    stalls: StatWord,
    /// The last stalled CPU plus one; 0 for none.
    last_stalled: StatWord,
    synchronous: StatWord,
}

impl fmt::Debug for Rcu<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rcu").field("nr_cpus", &self.nr_cpus).field("report", &self.report()).finish()
    }
}

/// An RCU read-side critical section; dropping it ends the section.
///
/// Not `Send`: a section belongs to the thread (and CPU) that entered it.
/// Sections nest: each guard counts once.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let rcu = memdesc::Rcu::new(&memdesc::SpinPlatform, memdesc::RcuConfig::default()).unwrap();
/// send(rcu.read_lock()); // a read section cannot move to another thread
/// ```
#[must_use = "dropping the guard ends the read section at once"]
pub struct RcuReadGuard<'r, 'a> {
    rcu: &'r Rcu<'a>,
    /// The CPU whose counter this section incremented (the platform's
    /// proof that this thread runs as it); `None` for the shared counter.
    cpu: Option<RcuReaderCpu>,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for RcuReadGuard<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RcuReadGuard").field("cpu", &self.cpu).finish()
    }
}

impl<'a> Rcu<'a> {
    /// Creates the RCU state for `platform`'s CPUs.
    ///
    /// # Errors
    /// [`RcuError::TooManyCpus`] if the platform has no CPU or more than
    /// [`MAX_CPUS`].
    pub fn new(platform: &'a dyn Platform, config: RcuConfig) -> Result<Self, RcuError> {
        let nr = platform.nr_cpus();
        if nr == 0 || nr as usize > MAX_CPUS {
            return Err(RcuError::TooManyCpus(nr));
        }
        Ok(Self {
            platform,
            config,
            nr_cpus: nr as usize,
            gp_seq: AtomicU64::new(0),
            foreign_readers: AtomicU64::new(0),
            cpus: core::array::from_fn(|_| RcuCpu::new()),
            queues: core::array::from_fn(|_| CallbackQueue::new()),
            gp_completed: StatWord::new(0),
            stalls: StatWord::new(0),
            last_stalled: StatWord::new(0),
            synchronous: StatWord::new(0),
        })
    }

    /// The reader counter of this thread: its CPU's, or the shared one.
    fn reader_counter(&self, cpu: Option<CpuId>) -> &AtomicU64 {
        match cpu {
            Some(cpu) => &self.cpus[cpu.index()].readers,
            None => &self.foreign_readers,
        }
    }

    /// The CPU the platform lets this thread read as, if it is in range.
    fn this_cpu(&self) -> Option<RcuReaderCpu> {
        self.platform.rcu_reader_cpu().filter(|cpu| cpu.cpu().index() < self.nr_cpus)
    }

    /// Enters a read section: until the guard drops, nothing unpublished
    /// before a grace period that this section may have seen is freed.
    pub fn read_lock(&self) -> RcuReadGuard<'_, 'a> {
        let cpu = self.this_cpu();
        // RCU.1. Relaxed: the fence below orders it before the section's
        // reads; the count itself publishes nothing.
        self.reader_counter(cpu.as_ref().map(RcuReaderCpu::cpu)).fetch_add(1, Ordering::Relaxed);
        // RCU.1. SeqCst: the fence pairs with the scan's fence (RCU.4) in
        // gp_done: either that scan sees this count, or this section sees
        // every store made before the grace period started (store
        // buffering, forbidden only with a full fence on both sides).
        #[cfg(not(memdesc_mutant = "rcu_reader_no_barrier"))]
        fence(Ordering::SeqCst);
        // Mutant: the reader without its barrier, so the count may still
        // sit in the store buffer when a scan reads 0 and the updater frees
        // what this section is about to read.
        RcuReadGuard { rcu: self, cpu, _not_send: PhantomData }
    }

    /// Starts a new grace period and returns its number (RCU.3). Every
    /// store the caller made before (or acquired before, under a queue
    /// lock) is covered by it.
    fn start_gp(&self) -> u64 {
        // RCU.3. Release: pairs with the Acquire load of gp_seq in
        // quiescent (RCU.6): a CPU that reports for this GP sees what the
        // updater did before it started. An RMW so the release sequence
        // carries every earlier start too.
        self.gp_seq.fetch_add(1, Ordering::Release) + 1
    }

    /// Scans every CPU and the shared counter once: is GP `gp` over?
    /// Also counts busy scans towards stall reports.
    fn gp_done(&self, gp: u64) -> bool {
        // RCU.4. SeqCst: the fence pairs with the reader's fence (RCU.1); see
        // read_lock. The updater's stores happen before this scan (program
        // order, or the queue lock and the Release of RCU.3).
        fence(Ordering::SeqCst);
        let mut done = true;
        for (index, cpu) in self.cpus[..self.nr_cpus].iter().enumerate() {
            if self.cpu_quiescent(cpu, gp) {
                // Relaxed: a statistic (stall detection).
                cpu.busy_scans.store(0, Ordering::Relaxed);
                continue;
            }
            done = false;
            // Relaxed: a statistic; racing scans may lose a count.
            let busy = cpu.busy_scans.load(Ordering::Relaxed) + 1;
            // Relaxed: as above.
            cpu.busy_scans.store(busy, Ordering::Relaxed);
            if busy % self.config.stall_scans.max(1) == 0 {
                // Relaxed: statistics, read racily by report().
                self.stalls.fetch_add(1, Ordering::Relaxed);
                // Relaxed: as above.
                self.last_stalled.store(index as u64 + 1, Ordering::Relaxed);
            }
        }
        // RCU.5. Acquire: pairs with the Release decrement of a non-CPU
        // reader's exit (RCU.2), so its section's reads happen before
        // whatever the updater does after this GP.
        if self.foreign_readers.load(Ordering::Acquire) != 0 {
            done = false;
        }
        if done {
            // Relaxed: a statistic.
            self.gp_completed.fetch_max(gp, Ordering::Relaxed);
        }
        done
    }

    /// Whether `cpu` is quiescent for GP `gp` (RCU.5).
    fn cpu_quiescent(&self, cpu: &RcuCpu, gp: u64) -> bool {
        // Mutant: the scan takes a CPU with a section open for quiescent,
        // so a GP ends under a reader.
        if cfg!(memdesc_mutant = "rcu_gp_ignores_readers") {
            return true;
        }
        // RCU.5. Acquire: pairs with the Release decrement of RCU.2: the
        // ended sections' reads happen before the updater's free.
        cpu.readers.load(Ordering::Acquire) == 0
            // RCU.5. Acquire: pairs with the Release store of the report
            // (RCU.6): the sections before the report happen before the
            // updater's free.
            || cpu.qs_seq.load(Ordering::Acquire) >= gp
    }

    /// Waits until every read section that was open when it was called has
    /// ended: afterwards the caller may free what it unpublished before the
    /// call. Waits through [`Platform::relax`]; a reader that never leaves
    /// is reported as a stall (and this never returns, as in Linux).
    ///
    /// Must not be called inside a read section of the same thread, which
    /// would wait for itself.
    ///
    /// # Panics
    /// In debug builds, if the calling thread is a CPU ([`Platform::rcu_reader_cpu`])
    /// with a read section open. A non-CPU thread cannot be checked: the
    /// shared counter does not say whose sections it counts.
    pub fn synchronize(&self) {
        if let Some(cpu) = self.this_cpu().as_ref().map(RcuReaderCpu::cpu) {
            debug_assert!(
                // Relaxed: this thread's own counter, which only it moves.
                self.cpus[cpu.index()].readers.load(Ordering::Relaxed) == 0,
                "Rcu::synchronize called inside an RCU read section on {cpu:?}: it would wait for itself"
            );
        }
        let gp = self.start_gp();
        while !self.gp_done(gp) {
            self.platform.relax();
        }
    }

    /// Reports that `cpu` is outside every read section: the report counts
    /// for every grace period started before it (RCU.6). Then runs the
    /// CPU's ready callbacks (and, on CPU 0, those of the non-CPU threads).
    ///
    /// Call it from the thread running as `cpu` (the simulator between
    /// operations, a kernel on context switch). A report from inside a read
    /// section, for a CPU out of range, or from a thread the platform does
    /// not run as `cpu` ([`Platform::rcu_reader_cpu`]) is ignored: another
    /// thread's report could race `cpu`'s own reader entry (RCU.1 against
    /// RCU.5) and end a grace period under an open section.
    pub fn quiescent(&self, cpu: CpuId) {
        if self.this_cpu().as_ref().map(RcuReaderCpu::cpu) != Some(cpu) {
            return;
        }
        let Some(state) = self.cpus[..self.nr_cpus].get(cpu.index()) else { return };
        // Relaxed: this CPU's own counter, moved only by the calling thread.
        if state.readers.load(Ordering::Relaxed) != 0 {
            return;
        }
        // RCU.6. Acquire: pairs with the Release increment of RCU.3: read
        // sections this CPU enters after the report see what the updaters
        // of GPs up to `seen` did before starting them.
        let seen = self.gp_seq.load(Ordering::Acquire);
        // RCU.6. Release: pairs with the Acquire load of qs_seq in the scan
        // (RCU.5): this CPU's ended sections happen before the updater's
        // free.
        state.qs_seq.store(seen, Ordering::Release);
        self.poll_queue(cpu.index());
        if cpu.index() == 0 {
            self.poll_queue(MAX_CPUS);
        }
    }

    /// Marks `cpu` idle: a last quiescent report. An idle CPU has no read
    /// section open, so every later scan finds it quiescent by its counter
    /// without further reports.
    pub fn idle_enter(&self, cpu: CpuId) {
        self.quiescent(cpu);
    }

    /// Counters, as snapshots.
    pub fn report(&self) -> RcuReport {
        let mut report = RcuReport {
            // Relaxed: a snapshot for a report.
            gp_started: self.gp_seq.load(Ordering::Relaxed),
            // Relaxed: statistic.
            gp_completed: self.gp_completed.load(Ordering::Relaxed),
            // Relaxed: statistic.
            callbacks_synchronous: self.synchronous.load(Ordering::Relaxed),
            // Relaxed: statistic.
            stalls: self.stalls.load(Ordering::Relaxed),
            // Relaxed: statistic.
            last_stalled_cpu: match self.last_stalled.load(Ordering::Relaxed) {
                0 => None,
                n => Some(CpuId((n - 1) as u32)),
            },
            ..RcuReport::default()
        };
        for queue in &self.queues {
            let (queued, invoked) = queue.counts();
            report.callbacks_queued += queued;
            report.callbacks_invoked += invoked;
        }
        report
    }
}

impl<'r, 'a> RcuReadGuard<'r, 'a> {
    /// The RCU this section belongs to (for APIs whose safety rests on a
    /// section of a particular RCU, such as a TYPESAFE_BY_RCU slab's).
    pub fn rcu(&self) -> &'r Rcu<'a> {
        self.rcu
    }
}

impl Drop for RcuReadGuard<'_, '_> {
    fn drop(&mut self) {
        if crate::sync::model_unwinding() {
            return;
        }
        // RCU.2. Release: pairs with the Acquire loads of the scan (RCU.5):
        // this section's reads happen before the free that follows the GP.
        self.rcu.reader_counter(self.cpu.as_ref().map(RcuReaderCpu::cpu)).fetch_sub(1, Ordering::Release);
    }
}
