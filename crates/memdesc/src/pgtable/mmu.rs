//! The simulated MMU: what every address space of a node shares (the table
//! store, the per-CPU TLBs, RCU, counters).

use super::table::{TableFreer, TableReturn, TableStore};
use super::tlb::Tlbs;
use crate::buddy::{Node, MAX_CPUS};
use crate::platform::Platform;
use crate::rcu::Rcu;
use crate::sync::{AtomicU32, Ordering, StatWord};

macro_rules! mm_events {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A counted event of the page-table layer, with its vmstat name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum MmEvent { $($(#[$doc])* $variant,)* }

        impl MmEvent {
            /// Every event, in index order.
            pub const ALL: &'static [MmEvent] = &[$(MmEvent::$variant,)*];

            /// The vmstat name.
            pub const fn name(self) -> &'static str {
                match self { $(MmEvent::$variant => $name,)* }
            }
        }
    };
}

mm_events! {
    /// Page faults handled (first touch, permission upgrade, retries).
    PgFault => "pgfault",
    /// Faults that mapped a 2 MiB folio with one PMD.
    ThpFaultAlloc => "thp_fault_alloc",
    /// THP-eligible faults that fell back to 4 KiB pages.
    ThpFaultFallback => "thp_fault_fallback",
    /// PMD mappings split into PTE tables.
    ThpSplitPmd => "thp_split_pmd",
    /// Folios split (to any lower order).
    ThpSplitPage => "thp_split_page",
    /// Large folios queued for a split after an unmap left them partly
    /// mapped.
    ThpDeferredSplit => "thp_deferred_split_page",
    /// Folio splits refused (a pin or transient reference).
    ThpSplitPageFailed => "thp_split_page_failed",
    /// Remote TLB flushes (one per CPU shot down).
    TlbShootdown => "nr_tlb_remote_flush",
    /// Translations dropped from TLBs by flushes.
    TlbFlushedEntries => "nr_tlb_flushed_entries",
    /// TLB flushes of a batch (a gather's flush).
    TlbFlushBatch => "nr_tlb_local_flush_all",
    /// Page-table frames allocated.
    PgtableAlloc => "pgtable_alloc",
    /// Page-table frames freed (after their grace period).
    PgtableFree => "pgtable_free",
    /// Mapping references dropped by unmapping.
    UnmapPages => "unmap_pages",
    /// GUP-fast calls that took every page without a lock.
    GupFast => "gup_fast",
    /// GUP-fast calls that fell back to the slow path (a recheck failed, an
    /// entry was missing or not writable).
    GupFastFallback => "gup_fast_fallback",
    /// Slow-path GUP calls.
    GupSlow => "gup_slow",
    /// Pages pinned (FOLL_PIN).
    Pins => "nr_foll_pin_acquired",
    /// Pages unpinned.
    Unpins => "nr_foll_pin_released",
}

const NR_MM_EVENTS: usize = MmEvent::ALL.len();

/// What the address spaces of one node share.
pub struct Mmu<'a> {
    pub(crate) store: TableStore<'a>,
    pub(crate) tlbs: Tlbs,
    pub(crate) rcu: &'a Rcu<'a>,
    /// Where unlinked table frames go after their grace period (P5.4).
    pub(crate) tables: &'a TableReturn<'a>,
    next_asid: AtomicU32,
    /// Per-CPU event counters (the non-CPU threads share the last row).
    stats: [[StatWord; NR_MM_EVENTS]; MAX_CPUS + 1],
}

impl core::fmt::Debug for Mmu<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mmu").finish_non_exhaustive()
    }
}

impl<'a> Mmu<'a> {
    /// Where an MMU over `node` frees its table frames: create it before
    /// the [`Rcu`] (an `Rcu`'s queued frames must not outlive it) and hand
    /// both to [`Mmu::new`].
    ///
    /// ```
    /// # use memdesc::{Mmu, MemoryLayout, Node, NodeConfig, PhysAddr, PhysRange, Rcu, RcuConfig, SpinPlatform, PAGE_SIZE};
    /// # #[repr(C, align(4096))]
    /// # struct Frame([u8; PAGE_SIZE]);
    /// # let mut frames: Vec<Frame> = (0..256).map(|_| Frame([0; PAGE_SIZE])).collect();
    /// # // SAFETY: one live, exclusively borrowed allocation of 256 frames.
    /// # let memory = unsafe { std::slice::from_raw_parts_mut(frames.as_mut_ptr().cast::<u8>(), 256 * PAGE_SIZE) };
    /// # let ram = [PhysRange::new(0, 256 * PAGE_SIZE as u64)];
    /// # let layout = MemoryLayout { ram: &ram, reserved: &[] };
    /// # let node = Node::boot(memory, PhysAddr(0), &layout, NodeConfig::default(), &SpinPlatform)
    /// #     .map_err(memdesc::BootFailed::into_error)?;
    /// let tables = Mmu::table_return(node);
    /// let rcu = Rcu::new(&SpinPlatform, RcuConfig::default())?;
    /// let mmu = Mmu::new(&rcu, &tables);
    /// # let _ = mmu;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn table_return(node: &'a Node<'a>) -> TableReturn<'a> {
        TableReturn::new(node, TableFreer::new(node))
    }

    /// An MMU over the frames of `tables`' node, freeing table frames
    /// through `rcu` to `tables`.
    pub fn new(rcu: &'a Rcu<'a>, tables: &'a TableReturn<'a>) -> Self {
        let node = tables.node();
        Self {
            store: TableStore::new(node, tables.callback()),
            tlbs: Tlbs::new(),
            rcu,
            tables,
            next_asid: AtomicU32::new(1),
            stats: core::array::from_fn(|_| core::array::from_fn(|_| StatWord::new(0))),
        }
    }

    /// The node whose frames back the tables and mappings.
    pub fn node(&self) -> &'a Node<'a> {
        self.store.node()
    }

    /// The RCU that table frames are freed through.
    pub fn rcu(&self) -> &'a Rcu<'a> {
        self.rcu
    }

    pub(crate) fn platform(&self) -> &'a dyn Platform {
        self.store.node().platform()
    }

    pub(crate) fn new_asid(&self) -> u32 {
        // Relaxed: an id, unique by the RMW alone; it orders nothing.
        self.next_asid.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts `n` of `event` on this CPU's row.
    #[inline]
    pub(crate) fn count(&self, event: MmEvent, n: u64) {
        let cpu = self.platform().current_cpu().index().min(MAX_CPUS);
        // Relaxed: a statistic, summed racily by `events`.
        self.stats[cpu][event as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Waits until every table frame queued for freeing has been freed
    /// ([`Rcu::barrier`]): before checking that nothing is left.
    pub fn barrier(&self) {
        self.rcu.barrier();
    }

    /// The total of `event` over every CPU.
    pub fn event(&self, event: MmEvent) -> u64 {
        if event == MmEvent::PgtableFree {
            return self.tables.callback().freed();
        }
        // Relaxed: a snapshot of statistics.
        self.stats.iter().map(|row| row[event as usize].load(Ordering::Relaxed)).sum()
    }

    /// Every event with its total, in [`MmEvent::ALL`] order.
    pub fn events(&self) -> [(MmEvent, u64); NR_MM_EVENTS] {
        core::array::from_fn(|i| (MmEvent::ALL[i], self.event(MmEvent::ALL[i])))
    }

    /// Page-table frames allocated and not yet freed (in a tree, or waiting
    /// for their grace period), over every address space of this MMU.
    pub fn table_frames(&self) -> u64 {
        self.event(MmEvent::PgtableAlloc) - self.event(MmEvent::PgtableFree)
    }
}
