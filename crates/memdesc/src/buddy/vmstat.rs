//! Event counters in Linux's vmstat vocabulary.
//!
//! Each per-CPU list and each zone has its own set, written only under the
//! lock that owns it (a load and a store, no atomic read-modify-write on the
//! hot path) and summed when read. A snapshot is racy by design.

use crate::sync::{Ordering, StatWord};

macro_rules! vm_events {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A counted event.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum VmEvent { $($(#[$doc])* $variant,)* }

        impl VmEvent {
            /// Every event, in index order.
            pub const ALL: [VmEvent; NR_VM_EVENTS] = [$(VmEvent::$variant,)*];

            /// The vmstat name.
            pub const fn name(self) -> &'static str {
                match self { $(VmEvent::$variant => $name,)* }
            }
        }
    };
}

vm_events! {
    /// Frames allocated from the normal zone.
    PgallocNormal => "pgalloc_normal",
    /// Frames allocated from the movable zone.
    PgallocMovable => "pgalloc_movable",
    /// Frames freed.
    Pgfree => "pgfree",
    /// Allocations handed out frozen (slab, page tables).
    PgallocFrozen => "pgalloc_frozen",
    /// Allocations served from a per-CPU list without the zone lock.
    PcpAllocHit => "pcp_alloc_hit",
    /// Batches moved from a zone to a per-CPU list.
    PcpRefill => "pcp_refill",
    /// Batches moved from a per-CPU list back to a zone (list above high).
    PcpFreeBulk => "pcp_free_bulk",
    /// Times every CPU's lists were drained before failing an allocation.
    DrainAllPages => "drain_all_pages",
    /// Allocations that failed after draining.
    PgallocFail => "pgalloc_fail",
    /// Zone attempts refused by the min watermark.
    WatermarkFail => "watermark_fail",
    /// Blocks stolen from another migratetype's pageblock.
    ExtfragSteal => "extfrag_steal",
    /// Whole pageblocks claimed for another migratetype.
    PageblockClaim => "pageblock_claim",
    /// Frames zeroed at allocation.
    Pgzero => "pgzero",
    /// Bad-page reports (frames quarantined).
    BadPage => "bad_page",
    /// Drain requests a CPU answered by giving its own lists back (PCP.7).
    PcpDrainAnswered => "pcp_drain_answered",
    /// CPUs a drain waited for in vain (PCP.8): they neither answered nor
    /// were empty within its rounds, and their frames stayed cached.
    PcpDrainTimeout => "pcp_drain_timeout",
}

/// How many events there are.
pub const NR_VM_EVENTS: usize = 16;

/// One owner's counters: a CPU's (written only by the thread running as that
/// CPU, per the [`Platform`](crate::platform::Platform) contract) or a zone's
/// (written under the zone lock). Aligned so two CPUs' sets never share a
/// cache line.
#[repr(align(128))]
pub(crate) struct VmCounters {
    items: [StatWord; NR_VM_EVENTS],
}

impl VmCounters {
    pub(crate) const fn new() -> Self {
        Self { items: [const { StatWord::new(0) }; NR_VM_EVENTS] }
    }

    /// Adds `n` to `event`. There is one writer at a time: the CPU owning
    /// the set, or the holder of the lock owning it.
    #[inline(always)]
    pub(crate) fn add(&self, event: VmEvent, n: u64) {
        let word = &self.items[event as usize];
        // Relaxed: a statistic with one writer at a time (the owning CPU, or
        // the owning lock); readers only sum snapshots. Were the platform
        // contract broken, counts could be lost, nothing else.
        word.store(word.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Adds this set into `sum`.
    pub(crate) fn sum_into(&self, sum: &mut [u64; NR_VM_EVENTS]) {
        for (total, word) in sum.iter_mut().zip(&self.items) {
            // Relaxed: a snapshot of a statistic.
            *total += word.load(Ordering::Relaxed);
        }
    }
}
