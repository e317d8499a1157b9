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
use super::table::{take_mapping_ref, take_table};
use crate::memmap::Pfn;

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
    /// Unlinked table frames, chained through owner word 0 of each
    /// (frozen, so the words are ours), freed after a grace period.
    tables: Option<Pfn>,
}

impl<'m, 'a> Gather<'m, 'a> {
    pub(crate) fn new(mmu: &'m Mmu<'a>, asid: u32) -> Self {
        Self { mmu, asid, refs: [(Pfn(0), 0); GATHER_BATCH], nr: 0, start: u64::MAX, end: 0, tables: None }
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

    /// Queues a table frame whose parent entry was just cleared (P5.4).
    ///
    /// # Safety
    /// 1. The caller cleared the one entry that owned `table`.
    pub(crate) unsafe fn free_table(&mut self, table: Pfn) {
        // SAFETY: duty 1 is the caller's.
        let mut frozen = unsafe { take_table(self.mmu.node(), table) };
        frozen.set_owner_word(0, self.tables.map_or(u64::MAX, |p| p.0));
        self.tables = Some(frozen.into_raw());
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
    }

    fn drop_gathered_refs(&mut self) {
        for &(head, n) in &self.refs[..self.nr] {
            for _ in 0..n {
                // SAFETY: each gathered reference was owned by a leaf entry
                // the caller cleared (drop_refs' contract through `zap`), and
                // is restored once, here.
                drop(unsafe { take_mapping_ref(self.mmu.node(), head) });
            }
            self.mmu.count(MmEvent::UnmapPages, u64::from(n));
        }
        self.nr = 0;
    }

    /// Flushes, then frees the gathered table frames after a grace period
    /// (P5.4). Call it without the address-space lock: the wait lets every
    /// CPU's read section end, and a CPU may be spinning on that lock
    /// outside any section, which is fine, or inside one, which is not.
    pub(crate) fn finish(mut self) {
        self.flush();
        let Some(mut next) = self.tables.take() else { return };
        // P5.4: every walker that could have read an unlinked table is in a
        // read section that began before the unlink; wait them out.
        // Mutant: free the tables at once, under those walkers.
        #[cfg(not(memdesc_mutant = "table_free_without_gp"))]
        self.mmu.rcu.synchronize();
        loop {
            // SAFETY: every pfn in the chain was given up by `free_table`
            // with `into_raw` and is restored once, here.
            let frozen = unsafe { take_table(self.mmu.node(), next) };
            let link = frozen.owner_word(0).unwrap_or(u64::MAX);
            self.mmu.store.retire(next);
            drop(frozen);
            self.mmu.count(MmEvent::PgtableFree, 1);
            if link == u64::MAX {
                break;
            }
            next = Pfn(link);
        }
    }
}

impl Drop for Gather<'_, '_> {
    fn drop(&mut self) {
        debug_assert!(self.nr == 0 && self.tables.is_none(), "a gather must be finished");
    }
}
