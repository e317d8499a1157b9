//! Table frames, the entry words inside them, and what an entry owns.
//!
//! A table is one frame of type [`PageType::PageTable`], allocated frozen
//! (refcount 0 for its whole life, P3), so no speculative getter can count
//! it. Its 512 entries are the frame's contents, read and written as atomic
//! words: lockless walkers (the MMU, GUP-fast) read them while the owner of
//! the address space writes them.
//!
//! # Ownership held by entries
//! A table entry owns the table below it (a frozen folio given up with
//! `into_raw`); a present leaf owns one counted reference to the folio it
//! maps. The `unsafe` that turns an entry's pfn back into a handle lives
//! here only, in [`take_table`] and [`take_mapping_ref`], whose callers
//! have just cleared the entry that owned the handle.
//!
//! # Under the model checker
//! Frame contents are `core` atomics, invisible to loom; the entries of a
//! table are protocol state (P4, P5), so under `memdesc_loom` they live in a
//! shadow array of loom atomics, one row per frame, and tables have 8
//! entries (see [`TABLE_BITS`](super::TABLE_BITS)).

use super::entry::{Entry, Level, ENTRIES_PER_TABLE};
use crate::buddy::{AllocError, FolioRef, FrozenFolio, Gfp, Node};
use crate::folio::{Order, PageType};
use crate::memmap::Pfn;
use crate::rcu::{FrameCallback, FrameReturn};
use crate::sync::{Ordering, StatWord};

/// One entry word.
#[cfg(not(memdesc_loom))]
pub(crate) type EntryWord = crate::sync::FrameWord;
/// One entry word: a loom atomic under the model.
#[cfg(memdesc_loom)]
pub(crate) type EntryWord = crate::sync::AtomicU64;

/// Takes page-table frames back after their grace period (P5.4) and frees
/// them, counting them. The embedder creates one per node, wrapped in its
/// [`TableReturn`] ([`Mmu::table_return`](super::Mmu::table_return)),
/// before the [`Rcu`](crate::rcu::Rcu) it is used with, so it outlives
/// every queued frame.
pub struct TableFreer<'n> {
    freed: StatWord,
    /// Under the model, one cell per frame standing in for the frame's
    /// contents as plain memory: walkers read a table's cell with every
    /// entry (and CPUs a page's with every access), and the frame's next
    /// life writes it, so a frame reused under a reader is a data race loom
    /// reports (P5.3, P5.4).
    #[cfg(memdesc_loom)]
    frames: std::boxed::Box<[crate::sync::UnsafeCell<u64>]>,
    node: &'n Node<'n>,
}

// SAFETY: under the model, the cells are the model's stand-in for frame
// contents: each access is the model's claim that its thread may make it,
// which loom checks (reporting those that race is the point). Outside the
// model the freer holds only atomics and a shared reference.
#[cfg(memdesc_loom)]
unsafe impl Sync for TableFreer<'_> {}

/// Where page-table frames go after their grace period:
/// [`Rcu::call_rcu_frame`](crate::rcu::Rcu::call_rcu_frame)'s return
/// address for them.
pub type TableReturn<'n> = FrameReturn<'n, TableFreer<'n>>;

impl core::fmt::Debug for TableFreer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TableFreer").field("freed", &self.freed()).finish_non_exhaustive()
    }
}

impl<'n> TableFreer<'n> {
    /// A freer for the page-table frames of `node`.
    pub fn new(node: &'n Node<'n>) -> Self {
        Self {
            freed: StatWord::new(0),
            #[cfg(memdesc_loom)]
            frames: (0..node.memmap().nr_pages()).map(|_| crate::sync::UnsafeCell::new(0)).collect(),
            node,
        }
    }

    /// Table frames freed so far.
    pub fn freed(&self) -> u64 {
        // Relaxed: a statistic.
        self.freed.load(Ordering::Relaxed)
    }

    /// The model's contents cell of frame `pfn`.
    #[cfg(memdesc_loom)]
    fn frame_cell(&self, pfn: Pfn) -> &crate::sync::UnsafeCell<u64> {
        &self.frames[(pfn.0 - self.node.memmap().base_pfn().0) as usize]
    }

    /// Marks the start of frame `pfn`'s next life (its next owner's
    /// writes): under the model, writes its contents cell.
    #[inline]
    pub(crate) fn retire(&self, pfn: Pfn) {
        #[cfg(memdesc_loom)]
        // SAFETY: the model's claim that the frame is ours alone now (no
        // walker or CPU still reads it); loom checks it and reports a race
        // if not.
        self.frame_cell(pfn).with_mut(|cell| unsafe { *cell = pfn.0 });
        let _ = (pfn, self.node);
    }

    /// A read of frame `pfn`'s contents, under the model.
    #[inline]
    pub(crate) fn touch(&self, pfn: Pfn) {
        #[cfg(memdesc_loom)]
        // SAFETY: the model's claim that the frame is not reused under this
        // read; loom checks it.
        self.frame_cell(pfn).with(|cell| unsafe { core::ptr::read_volatile(cell) });
        let _ = pfn;
    }
}

impl<'n> FrameCallback<'n> for TableFreer<'n> {
    fn invoke(&self, table: FrozenFolio<'n>) {
        self.retire(table.pfn());
        drop(table);
        // Relaxed: a statistic.
        self.freed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where table entries live: the node's frames (or the model's shadow).
pub(crate) struct TableStore<'a> {
    node: &'a Node<'a>,
    freer: &'a TableFreer<'a>,
    #[cfg(memdesc_loom)]
    shadow: std::boxed::Box<[EntryWord]>,
}

impl<'a> TableStore<'a> {
    pub(crate) fn new(node: &'a Node<'a>, freer: &'a TableFreer<'a>) -> Self {
        Self {
            node,
            freer,
            #[cfg(memdesc_loom)]
            shadow: (0..node.memmap().nr_pages() as usize * ENTRIES_PER_TABLE).map(|_| EntryWord::new(0)).collect(),
        }
    }

    pub(crate) fn node(&self) -> &'a Node<'a> {
        self.node
    }

    /// The entries of the table in frame `table`.
    ///
    /// # Panics
    /// If `table` is outside the node: callers pass only pfns read from
    /// entries this layer wrote, which name frames it allocated.
    #[inline]
    pub(crate) fn entries(&self, table: Pfn) -> &[EntryWord] {
        #[cfg(not(memdesc_loom))]
        {
            let words = self.node.memmap().frame_words(table, 1).expect("table frame inside the node");
            &words[..ENTRIES_PER_TABLE]
        }
        #[cfg(memdesc_loom)]
        {
            let row = (table.0 - self.node.memmap().base_pfn().0) as usize * ENTRIES_PER_TABLE;
            &self.shadow[row..row + ENTRIES_PER_TABLE]
        }
    }

    /// Reads entry `index` of `table` at `level` (P4.3).
    #[inline]
    pub(crate) fn load(&self, table: Pfn, index: usize, level: Level) -> Entry {
        Entry::decode(self.load_word(table, index), level)
    }

    /// Marks the start of frame `pfn`'s next life (see [`TableFreer`]):
    /// the models' next owners call it.
    #[inline]
    #[cfg_attr(not(all(test, memdesc_loom)), allow(dead_code))]
    pub(crate) fn retire(&self, pfn: Pfn) {
        self.freer.retire(pfn);
    }

    /// Under the model, reads frame `pfn`'s contents cell: a CPU's access
    /// to a mapped page, which must not race the page's next owner (P5.3).
    #[inline]
    pub(crate) fn touch_frame(&self, pfn: Pfn) {
        self.freer.touch(pfn);
    }

    /// Reads entry word `index` of `table` (P4.3).
    #[inline]
    pub(crate) fn load_word(&self, table: Pfn, index: usize) -> u64 {
        // Under the model: the walker reads the table frame (P5.4).
        self.freer.touch(table);
        // Acquire: pairs with the Release store that installed the entry
        // (P4.2), so a walker that sees a table or a leaf also sees the
        // table's filled entries and the page's zeroed or copied contents.
        #[cfg(not(memdesc_mutant = "relaxed_entry_load"))]
        return self.entries(table)[index].load(Ordering::Acquire);
        // Mutant: the walker's load without Acquire. Relaxed: deliberately
        // wrong.
        #[cfg(memdesc_mutant = "relaxed_entry_load")]
        return self.entries(table)[index].load(Ordering::Relaxed);
    }

    /// Installs `entry` at `index` of `table` (P4.2). Only the holder of the
    /// address-space lock writes entries.
    #[inline]
    pub(crate) fn publish(&self, table: Pfn, index: usize, entry: Entry) {
        let word = entry.encode().expect("entries are built from frames of the node");
        // Release: pairs with the walkers' Acquire loads (P4.3): everything
        // written before (a table's entries, a page's contents, its
        // descriptor) is visible to a walker that sees this word.
        #[cfg(not(memdesc_mutant = "relaxed_entry_publish"))]
        self.entries(table)[index].store(word, Ordering::Release);
        // Mutant: the PTE stored without release (seed 000). Relaxed:
        // deliberately wrong.
        #[cfg(memdesc_mutant = "relaxed_entry_publish")]
        self.entries(table)[index].store(word, Ordering::Relaxed);
    }

    /// Fills entry `index` of a table that no walker can reach yet (it is
    /// published later by a [`TableStore::publish`] of its parent entry).
    #[inline]
    pub(crate) fn fill(&self, table: Pfn, index: usize, entry: Entry) {
        let word = entry.encode().expect("entries are built from frames of the node");
        // Relaxed: the table is unreachable until the parent's Release
        // publish (P4.1, P4.2), which orders this store before any walk.
        self.entries(table)[index].store(word, Ordering::Relaxed);
    }

    /// Clears entry `index` of `table`, returning what it held (P5.1).
    #[inline]
    pub(crate) fn clear(&self, table: Pfn, index: usize, level: Level) -> Entry {
        // Relaxed: the clear reaches walkers through what follows it: the
        // TLB flush and the Release put that frees a mapped folio (P5.3),
        // or the grace period before a table is freed (P5.4). A swap still
        // reads the latest word, so a dirty bit the MMU set is not lost.
        Entry::decode(self.entries(table)[index].swap(0, Ordering::Relaxed), level)
    }

    /// Sets the accessed (and, for a write, dirty) bit of a present leaf,
    /// as the MMU does on a TLB fill; fails if the entry changed meanwhile.
    #[inline]
    pub(crate) fn mark_used(&self, table: Pfn, index: usize, seen: u64, write: bool) -> bool {
        let bits = if write { 1 << 5 | 1 << 6 } else { 1 << 5 };
        if seen & bits == bits {
            return true;
        }
        // Relaxed: the A/D bits order nothing; the CAS only refuses to set
        // them on an entry that was cleared or replaced since the walk.
        self.entries(table)[index].compare_exchange(seen, seen | bits, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Allocates a table frame: frozen, typed page-table, every entry empty
    /// (P4.1).
    pub(crate) fn alloc_table(&self) -> Result<Pfn, AllocError> {
        let table = self.node.alloc_frozen(Order::ZERO, Gfp::KERNEL.typed(PageType::PageTable).zeroed())?;
        let pfn = table.into_raw();
        #[cfg(memdesc_loom)]
        {
            for word in self.entries(pfn) {
                // Relaxed: published by the parent entry's Release (P4.2).
                word.store(0, Ordering::Relaxed);
            }
            // The new table's zeroing: its next life begins.
            self.freer.retire(pfn);
        }
        Ok(pfn)
    }

    /// Whether every entry of `table` is empty.
    pub(crate) fn is_empty(&self, table: Pfn) -> bool {
        // Relaxed: called under the address-space lock, which orders every
        // write to this table's entries before it.
        self.entries(table).iter().all(|word| word.load(Ordering::Relaxed) == 0)
    }
}

/// Takes back the table frame that a just-cleared entry owned.
///
/// # Safety
/// 1. The caller cleared (under the address-space lock) the one entry that
///    pointed to `table`, so nothing else owns it.
pub(crate) unsafe fn take_table<'a>(node: &'a Node<'a>, table: Pfn) -> FrozenFolio<'a> {
    // SAFETY: duty 1: the table was given up with `into_raw` when its entry
    // was installed, and that entry is gone, so this restores it once.
    unsafe { FrozenFolio::from_raw(node, table) }.expect("a table entry points at a frozen table frame")
}

/// Takes back the counted reference that a just-cleared leaf entry owned.
///
/// # Safety
/// 1. The caller cleared the leaf entry that held this reference (or is
///    turning one entry's reference into another's), under the address-space
///    lock, and restores it once.
pub(crate) unsafe fn take_mapping_ref<'a>(node: &'a Node<'a>, head: Pfn) -> FolioRef<'a> {
    // SAFETY: duty 1: every present leaf was installed from a reference
    // given up with `into_raw` on this node.
    unsafe { FolioRef::from_raw(node, head) }.expect("a leaf entry holds a counted reference")
}
