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
use crate::sync::Ordering;

/// One entry word.
#[cfg(not(memdesc_loom))]
pub(crate) type EntryWord = crate::sync::FrameWord;
/// One entry word: a loom atomic under the model.
#[cfg(memdesc_loom)]
pub(crate) type EntryWord = crate::sync::AtomicU64;

/// Where table entries live: the node's frames (or the model's shadow).
pub(crate) struct TableStore<'a> {
    node: &'a Node<'a>,
    #[cfg(memdesc_loom)]
    shadow: std::boxed::Box<[EntryWord]>,
    /// Under the model, one cell per frame standing in for the table
    /// frame's contents as plain memory: a walker reads it with every
    /// entry, and the frame's next life writes it ([`TableStore::retire`],
    /// [`TableStore::alloc_table`]), so a table freed under a walker is a
    /// data race loom reports (P5.4).
    #[cfg(memdesc_loom)]
    frames: std::boxed::Box<[crate::sync::UnsafeCell<u64>]>,
}

impl<'a> TableStore<'a> {
    pub(crate) fn new(node: &'a Node<'a>) -> Self {
        Self {
            node,
            #[cfg(memdesc_loom)]
            shadow: (0..node.memmap().nr_pages() as usize * ENTRIES_PER_TABLE).map(|_| EntryWord::new(0)).collect(),
            #[cfg(memdesc_loom)]
            frames: (0..node.memmap().nr_pages()).map(|_| crate::sync::UnsafeCell::new(0)).collect(),
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

    /// The model's contents cell of frame `pfn`.
    #[cfg(memdesc_loom)]
    fn frame_cell(&self, pfn: Pfn) -> &crate::sync::UnsafeCell<u64> {
        &self.frames[(pfn.0 - self.node.memmap().base_pfn().0) as usize]
    }

    /// Marks the end of `table`'s life as a table, before its frame is
    /// freed: under the model, the frame's next owner writes it.
    #[inline]
    pub(crate) fn retire(&self, table: Pfn) {
        #[cfg(memdesc_loom)]
        // SAFETY: the model's claim that the frame is ours alone now (no
        // walker still reads it); loom checks it and reports a race if not.
        self.frame_cell(table).with_mut(|cell| unsafe { *cell = table.0 });
        let _ = table;
    }

    /// Under the model, reads frame `pfn`'s contents cell: a CPU's access
    /// to a mapped page, which must not race the page's next owner (P5.3).
    #[inline]
    pub(crate) fn touch_frame(&self, pfn: Pfn) {
        #[cfg(memdesc_loom)]
        // SAFETY: the model's claim that the page is not reused under this
        // access; loom checks it.
        self.frame_cell(pfn).with(|cell| unsafe { core::ptr::read_volatile(cell) });
        let _ = pfn;
    }

    /// Reads entry word `index` of `table` (P4.3).
    #[inline]
    pub(crate) fn load_word(&self, table: Pfn, index: usize) -> u64 {
        #[cfg(memdesc_loom)]
        // SAFETY: the model's claim that the table frame is not reused
        // under this read (P5.4); loom checks it.
        self.frame_cell(table).with(|cell| unsafe { core::ptr::read_volatile(cell) });
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
            // SAFETY: the model's claim that the new table is ours alone;
            // loom checks it against the walkers' reads of its last life.
            self.frame_cell(pfn).with_mut(|cell| unsafe { *cell = 0 });
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
