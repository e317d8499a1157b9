//! Workloads: what the simulated CPUs run, and what they count.
//!
//! A workload runs on one CPU thread until the deadline (or an interrupt),
//! then frees
//! everything it holds, checking it, and returns its [`WorkloadStats`] and
//! the violations it saw. Neighbours: [`crate::machine`] starts the threads;
//! [`crate::scanner`] runs beside them.

mod live;
pub(crate) mod mixed;
pub(crate) mod mm;
pub(crate) mod slab;
pub(crate) mod stamp;

use memdesc::buddy::NR_ORDERS;
use memdesc::{Node, Rcu, TableReturn};
use serde::Serialize;
use std::ops::AddAssign;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

/// What the workload CPUs did, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkloadStats {
    /// Successful allocations, counted and frozen.
    pub allocs: u64,
    /// Folios freed (split pieces count one each).
    pub frees: u64,
    /// Allocations refused with out-of-memory (expected under pressure, not
    /// a violation).
    pub alloc_failures: u64,
    /// Allocations handed out frozen (`alloc_frozen`).
    pub frozen_allocs: u64,
    /// Frozen allocations of always-frozen types (slab, page table).
    pub always_frozen_allocs: u64,
    /// Allocations asked to be zeroed.
    pub zeroed_allocs: u64,
    /// Frames in zeroed allocations.
    pub frames_zeroed: u64,
    /// Frames in all successful allocations.
    pub frames_allocated: u64,
    /// Successful allocations by order.
    pub allocs_by_order: [u64; NR_ORDERS],
    /// Folios frozen and split.
    pub splits: u64,
    /// Folios the splits produced (the head included).
    pub split_pieces: u64,
    /// Freezes refused because someone else held a reference (P2 EAGAIN).
    pub freeze_eagain: u64,
    /// Folio lock acquisitions.
    pub lock_ops: u64,
    /// `try_lock` calls that found the lock held.
    pub lock_busy: u64,
    /// References cloned and dropped.
    pub clones: u64,
    /// Phases run near full memory, to exhaust it on purpose.
    pub pressure_phases: u64,
    /// Page-table frames freed through RCU (`call_rcu_frame`, P5) rather
    /// than at once.
    pub table_frees_deferred: u64,
    /// The most frames one CPU held at once (the maximum over CPUs; a CPU
    /// peaks in its pressure phase).
    pub peak_live_frames: u64,
}

impl WorkloadStats {
    /// Allocations plus frees: the operations throughput counts.
    pub fn ops(&self) -> u64 {
        self.allocs + self.frees
    }
}

impl AddAssign<&WorkloadStats> for WorkloadStats {
    fn add_assign(&mut self, o: &WorkloadStats) {
        self.allocs += o.allocs;
        self.frees += o.frees;
        self.alloc_failures += o.alloc_failures;
        self.frozen_allocs += o.frozen_allocs;
        self.always_frozen_allocs += o.always_frozen_allocs;
        self.zeroed_allocs += o.zeroed_allocs;
        self.frames_zeroed += o.frames_zeroed;
        self.frames_allocated += o.frames_allocated;
        for (sum, n) in self.allocs_by_order.iter_mut().zip(o.allocs_by_order) {
            *sum += n;
        }
        self.splits += o.splits;
        self.split_pieces += o.split_pieces;
        self.freeze_eagain += o.freeze_eagain;
        self.lock_ops += o.lock_ops;
        self.lock_busy += o.lock_busy;
        self.clones += o.clones;
        self.pressure_phases += o.pressure_phases;
        self.table_frees_deferred += o.table_frees_deferred;
        self.peak_live_frames = self.peak_live_frames.max(o.peak_live_frames);
    }
}

/// What a workload CPU is given.
pub(crate) struct WorkerContext<'n> {
    /// The machine's node.
    pub(crate) node: &'n Node<'n>,
    /// The machine's RCU: this CPU reports quiescent states between
    /// batches of operations, and goes idle when it stops.
    pub(crate) rcu: &'n Rcu<'n>,
    /// Where page-table frames freed through RCU go (P5).
    pub(crate) table_return: &'n TableReturn<'n>,
    /// This CPU's index (the thread is already bound to it).
    pub(crate) cpu: u32,
    /// How many workload CPUs there are.
    pub(crate) nr_cpus: u32,
    /// The run's seed.
    pub(crate) seed: u64,
    /// When the run started.
    pub(crate) start: Instant,
    /// When to stop and tear down.
    pub(crate) deadline: Instant,
    /// Frames this CPU keeps allocated, on average.
    pub(crate) target_frames: u64,
    /// Where to publish the ops done so far, for progress reports.
    pub(crate) ops: &'n AtomicU64,
    /// Set to stop before the deadline (Ctrl-C in the CLI).
    pub(crate) interrupt: &'n AtomicBool,
}

/// What one workload CPU hands back.
pub(crate) struct WorkerResult {
    /// Its counts.
    pub(crate) stats: WorkloadStats,
    /// What it saw go wrong.
    pub(crate) violations: crate::violations::Violations,
    /// Allocations plus frees before the deadline (teardown excluded).
    pub(crate) timed_ops: u64,
    /// How long it ran before teardown.
    pub(crate) timed: std::time::Duration,
    /// Whether it stopped before the deadline because of the interrupt.
    pub(crate) interrupted: bool,
}
