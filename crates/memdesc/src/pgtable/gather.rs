//! The unmap gather (P5): collect what unmapping cleared, flush the TLBs
//! once per batch, and only then drop the mappings' references; table
//! frames wait for a grace period on top.
//!
//! The order is the whole point. A CPU may still translate through a
//! cleared entry until its TLB is flushed (P5.2), so a page is freed only
//! after the flush (P5.3); a lockless walker (GUP-fast, the MMU's walk)
//! may still be reading a table that was unlinked, until its RCU read
//! section ends, so a table frame is freed only after a grace period
//! (P5.4).

use super::mmu::{MmEvent, Mmu};
use super::table::take_table;
use crate::buddy::FolioRefs;
use crate::memmap::Pfn;
use core::num::NonZeroU32;

/// Mapping references gathered before a flush is forced.
pub(crate) const GATHER_BATCH: usize = 64;

/// One address space's pending unmap work.
pub(crate) struct Gather<'m, 'a> {
    mmu: &'m Mmu<'a>,
    asid: u32,
    /// Folio heads with how many mapping references to drop, coalesced per
    /// folio.
    refs: [(Pfn, u32); GATHER_BATCH],
    nr: usize,
    /// The virtual range whose translations must be flushed.
    start: u64,
    end: u64,
    /// Unlinked table frames, handed to RCU after the flush (P5.4).
    tables: [Pfn; TABLE_BATCH],
    nr_tables: usize,
}

/// Table frames gathered before a flush is forced.
const TABLE_BATCH: usize = 16;

impl<'m, 'a> Gather<'m, 'a> {
    pub(crate) fn new(mmu: &'m Mmu<'a>, asid: u32) -> Self {
        Self {
            mmu,
            asid,
            refs: [(Pfn(0), 0); GATHER_BATCH],
            nr: 0,
            start: u64::MAX,
            end: 0,
            tables: [Pfn(0); TABLE_BATCH],
            nr_tables: 0,
        }
    }

    /// Records that `start..end` had translations changed or removed.
    pub(crate) fn cover(&mut self, start: u64, end: u64) {
        self.start = self.start.min(start);
        self.end = self.end.max(end);
    }

    /// Queues `n` mapping references to the folio headed at `head`, to be
    /// dropped after the next flush (P5.3).
    pub(crate) fn drop_refs(&mut self, head: Pfn, n: u32) {
        if self.nr > 0 && self.refs[self.nr - 1].0 == head {
            self.refs[self.nr - 1].1 += n;
            return;
        }
        if self.nr == GATHER_BATCH {
            self.flush();
        }
        self.refs[self.nr] = (head, n);
        self.nr += 1;
    }

    /// Queues a table frame whose parent entry was just cleared (P5.4),
    /// to be handed to RCU after the next flush.
    ///
    /// # Safety
    /// 1. The caller cleared the one entry that owned `table`.
    pub(crate) unsafe fn free_table(&mut self, table: Pfn) {
        if self.nr_tables == TABLE_BATCH {
            self.flush();
        }
        self.tables[self.nr_tables] = table;
        self.nr_tables += 1;
    }

    /// Flushes the gathered range from every TLB (P5.2), then drops the
    /// gathered references (P5.3).
    pub(crate) fn flush(&mut self) {
        // Mutant: the references dropped before the TLB flush, so a CPU
        // still translating through a cleared entry reaches a freed page.
        #[cfg(memdesc_mutant = "unmap_put_before_flush")]
        self.drop_gathered_refs();
        // P5.2: no CPU translates through a cleared entry after this.
        if self.start < self.end {
            let (shootdowns, flushed) = self.mmu.tlbs.flush(self.mmu.platform(), self.asid, self.start, self.end);
            self.mmu.count(MmEvent::TlbFlushBatch, 1);
            self.mmu.count(MmEvent::TlbShootdown, shootdowns);
            self.mmu.count(MmEvent::TlbFlushedEntries, flushed);
            self.start = u64::MAX;
            self.end = 0;
        }
        // P5.3: only now may the pages be freed.
        self.drop_gathered_refs();
        // P5.4: the tables after a grace period.
        for i in 0..self.nr_tables {
            self.defer_table_free(self.tables[i]);
        }
        self.nr_tables = 0;
    }

    /// Hands an unlinked table frame to RCU (P5.4): freed once every
    /// walker that could have read it (a read section that began before
    /// the unlink) has left its section. Never waits.
    fn defer_table_free(&self, table: Pfn) {
        // SAFETY: every queued pfn came through `free_table`, whose caller
        // cleared the one entry owning it, and is restored once, here.
        let frozen = unsafe { take_table(self.mmu.node(), table) };
        // Mutant: the table freed at once, under the walkers still reading it.
        #[cfg(memdesc_mutant = "table_free_without_gp")]
        {
            use crate::rcu::FrameCallback;
            self.mmu.tables.callback().invoke(frozen);
        }
        #[cfg(not(memdesc_mutant = "table_free_without_gp"))]
        if let Err((frozen, _)) = self.mmu.rcu.call_rcu_frame(frozen, self.mmu.tables) {
            // Only a frame of another node is refused, and tables come from
            // this MMU's node; if it ever happens, wait the grace period
            // here instead.
            self.mmu.rcu.synchronize();
            use crate::rcu::FrameCallback;
            self.mmu.tables.callback().invoke(frozen);
        }
    }

    fn drop_gathered_refs(&mut self) {
        for &(head, n) in &self.refs[..self.nr] {
            let n = NonZeroU32::new(n).expect("gathered runs hold references");
            // SAFETY: each gathered reference was owned by a leaf entry the
            // caller cleared (drop_refs' contract through `zap`), and is
            // restored once, here: all of a folio's in one put (P5.3).
            let refs = unsafe { FolioRefs::from_raw(self.mmu.node(), head, n) };
            drop(refs.expect("a leaf entry holds a counted reference"));
            self.mmu.count(MmEvent::UnmapPages, u64::from(n.get()));
        }
        self.nr = 0;
    }

    /// Flushes what is left (P5.2–P5.4). Tables go to RCU and are freed
    /// after their grace period without this thread waiting for it.
    pub(crate) fn finish(mut self) {
        self.flush();
    }
}

impl Drop for Gather<'_, '_> {
    fn drop(&mut self) {
        debug_assert!(self.nr == 0 && self.nr_tables == 0, "a gather must be finished");
    }
}
