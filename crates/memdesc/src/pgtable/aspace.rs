//! Address spaces: mapped areas, faults, accesses through the simulated
//! MMU, unmapping and protection changes.
//!
//! # Locking
//! One lock per address space (Linux's `mmap_lock` and page-table lock in
//! one) serialises every change to its areas and entries. Lockless readers
//! of the entries are the MMU's walk on a TLB miss and GUP-fast; both read
//! each entry once with Acquire (P4.3) inside an RCU read section (P5.4).
//!
//! # References and mapcounts
//! Every present leaf holds one reference to its folio (a 2 MiB PMD leaf
//! one, each PTE of a PTE-mapped folio one, as Linux). Mapcounts are per
//! folio, Linux 6.x style: the head's `mapcount` counts every mapping of
//! the folio (PTE or PMD), and a large folio's first tail's `mapcount` is
//! its entire-mapcount (PMD mappings). Without fork, a folio is mapped by
//! at most one address space, so the lock of that address space orders
//! every mapcount change.

use super::entry::{Entry, Level, Prot, ENTRIES_PER_TABLE, HUGE_FRAMES};
use super::gather::Gather;
use super::mmu::{MmEvent, Mmu};
use super::table::take_mapping_ref;
use super::tlb::TlbEntry;
use super::vma::{TooManyVmas, Vma, Vmas};
use crate::buddy::{AllocError, Gfp};
use crate::folio::{decode_compound, Order};
use crate::memmap::{FrameReader, FrameWriter, Page, Pfn, PAGE_SIZE};
use crate::sync::{Ordering, SpinLock, StatWord};
use core::fmt;
use core::num::NonZeroU32;

/// Bytes a PMD leaf maps: 2 MiB (32 KiB under the model checker).
pub const HUGE_SIZE: u64 = HUGE_FRAMES * PAGE_SIZE as u64;
/// The lowest address a mapping may use: the first huge page stays
/// unmapped, so address 0 always faults.
pub const USER_START: u64 = HUGE_SIZE;
/// One past the highest user address: 256 TiB with 4-level tables.
pub const USER_END: u64 = ENTRIES_PER_TABLE as u64 * (1 << Level::Pgd.shift());

const PAGE: u64 = PAGE_SIZE as u64;

/// Why a mapping call was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// The address is not page-aligned.
    Unaligned(u64),
    /// The length is zero.
    EmptyRange,
    /// The range leaves the user address range.
    OutOfRange {
        /// First byte.
        start: u64,
        /// Length asked for.
        len: u64,
    },
    /// No mapping overlaps the range.
    NotMapped {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// The address space has no gap of this length.
    NoSpace(u64),
    /// The area table is full.
    TooManyMappings,
    /// A table frame could not be allocated.
    NoMemory(AllocError),
    /// A folio's reference count would pass the overflow band.
    RefOverflow(Pfn),
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned(va) => write!(f, "address {va:#x} is not page-aligned"),
            Self::EmptyRange => f.write_str("empty range"),
            Self::OutOfRange { start, len } => write!(f, "{len:#x} bytes at {start:#x} leave the user address range"),
            Self::NotMapped { start, end } => write!(f, "nothing is mapped in {start:#x}..{end:#x}"),
            Self::NoSpace(len) => write!(f, "no free range of {len:#x} bytes"),
            Self::TooManyMappings => f.write_str("too many mappings"),
            Self::NoMemory(e) => write!(f, "no memory for a page table: {e}"),
            Self::RefOverflow(pfn) => write!(f, "folio {pfn} has too many references"),
        }
    }
}

impl core::error::Error for MmError {}

/// A simulated page fault the access could not resolve (a signal, to a
/// process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No mapping at this address (SIGSEGV, `SEGV_MAPERR`).
    NotMapped(u64),
    /// A write to a read-only mapping (SIGSEGV, `SEGV_ACCERR`).
    Protection(u64),
    /// No memory for the page or a table (the OOM path; SIGBUS here).
    NoMemory(u64),
    /// An entry this layer never writes was found: corruption, reported.
    BadEntry(u64),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMapped(va) => write!(f, "no mapping at {va:#x}"),
            Self::Protection(va) => write!(f, "write to read-only mapping at {va:#x}"),
            Self::NoMemory(va) => write!(f, "out of memory faulting {va:#x}"),
            Self::BadEntry(va) => write!(f, "corrupt page-table entry for {va:#x}"),
        }
    }
}

impl core::error::Error for Fault {}

/// What one address space's audit found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AsAudit {
    /// Table frames reachable from the root, root included.
    pub tables: u64,
    /// 4 KiB leaves.
    pub pte_mappings: u64,
    /// 2 MiB leaves.
    pub pmd_mappings: u64,
    /// Inconsistencies found (0 on a healthy address space).
    pub violations: u64,
    /// The first inconsistency: the virtual address it concerns.
    pub first_violation: Option<u64>,
}

/// A lockless walk's result: the leaf that maps an address, with where it
/// was read so a caller can recheck it (P1.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The table frame holding the leaf.
    pub table: Pfn,
    /// The leaf's index in it.
    pub index: usize,
    /// The PMD table and index on the way (the leaf's own for a huge leaf).
    pub pmd: (Pfn, usize),
    /// The PMD entry's word as read (for a PTE leaf, the table pointer).
    pub pmd_word: u64,
    /// The leaf word as read.
    pub word: u64,
    /// The decoded leaf: [`Entry::Page`] (4 KiB or huge), or the
    /// non-present entry met.
    pub entry: Entry,
}

/// One process's address space.
pub struct AddressSpace<'m, 'a> {
    mmu: &'m Mmu<'a>,
    asid: u32,
    root: Pfn,
    /// The areas; the lock also serialises every entry store.
    vmas: SpinLock<Vmas>,
    /// Large folios left partly mapped by an unmap, waiting for
    /// [`thp::split_deferred`](crate::thp::split_deferred). A leaf lock,
    /// taken under `vmas`' or alone.
    deferred: SpinLock<DeferredSplits>,
    /// Table frames in the tree (root included), changed under the lock:
    /// the audit finds exactly this many, each reached once.
    tables: StatWord,
}

impl fmt::Debug for AddressSpace<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddressSpace").field("asid", &self.asid).field("root", &self.root).finish()
    }
}

fn range_end(start: u64, len: u64) -> Result<u64, MmError> {
    if start % PAGE != 0 {
        return Err(MmError::Unaligned(start));
    }
    if len == 0 {
        return Err(MmError::EmptyRange);
    }
    let end = start.checked_add(len.next_multiple_of(PAGE)).filter(|&e| start >= USER_START && e <= USER_END);
    end.ok_or(MmError::OutOfRange { start, len })
}

impl<'m, 'a> AddressSpace<'m, 'a> {
    /// An empty address space (one root table).
    ///
    /// # Errors
    /// [`MmError::NoMemory`] if the root table cannot be allocated.
    pub fn new(mmu: &'m Mmu<'a>) -> Result<Self, MmError> {
        let root = mmu.store.alloc_table().map_err(MmError::NoMemory)?;
        mmu.count(MmEvent::PgtableAlloc, 1);
        Ok(Self {
            mmu,
            asid: mmu.new_asid(),
            root,
            vmas: SpinLock::new(Vmas::new()),
            deferred: SpinLock::new(DeferredSplits::default()),
            tables: StatWord::new(1),
        })
    }

    /// Takes the address-space lock. Waiting passes time through
    /// [`Platform::relax`](crate::platform::Platform::relax) (a host with
    /// more threads than CPUs yields there), because the holder may run for
    /// a while: a fault's allocation and zeroing, a split, an unmap's
    /// shootdowns.
    fn lock(&self) -> crate::sync::SpinGuard<'_, Vmas> {
        loop {
            if let Some(guard) = self.vmas.try_lock() {
                return guard;
            }
            self.mmu.platform().relax();
        }
    }

    /// The MMU this address space uses.
    pub fn mmu(&self) -> &'m Mmu<'a> {
        self.mmu
    }

    /// The address-space id tagging its TLB entries.
    pub fn asid(&self) -> u32 {
        self.asid
    }

    /// The mapped areas, as a snapshot.
    pub fn vmas(&self, out: &mut [Vma]) -> usize {
        self.lock().with_ref(|v| {
            let n = v.as_slice().len().min(out.len());
            out[..n].copy_from_slice(&v.as_slice()[..n]);
            n
        })
    }

    /// Maps `len` bytes (rounded up to pages) of anonymous memory, zero on
    /// first touch; `thp` lets faults use 2 MiB folios (the start is then
    /// 2 MiB-aligned when `len` is at least 2 MiB). Returns the address.
    ///
    /// # Errors
    /// [`MmError::EmptyRange`], [`MmError::NoSpace`], [`MmError::TooManyMappings`].
    pub fn mmap_anon(&self, len: u64, write: bool, thp: bool) -> Result<u64, MmError> {
        if len == 0 {
            return Err(MmError::EmptyRange);
        }
        let len = len.checked_next_multiple_of(PAGE).ok_or(MmError::NoSpace(len))?;
        let align = if thp && len >= HUGE_SIZE { HUGE_SIZE } else { PAGE };
        self.lock().with(|vmas| {
            let start = vmas.find_gap(len, align, USER_START, USER_END).ok_or(MmError::NoSpace(len))?;
            vmas.insert(Vma { start, end: start + len, write, thp }).map_err(|TooManyVmas| MmError::TooManyMappings)?;
            Ok(start)
        })
    }

    /// Maps anonymous memory at exactly `start..start + len`, which must be
    /// free.
    ///
    /// # Errors
    /// As [`AddressSpace::mmap_anon`], [`MmError::Unaligned`],
    /// [`MmError::OutOfRange`], and [`MmError::NoSpace`] if the range is in
    /// use.
    pub fn mmap_anon_at(&self, start: u64, len: u64, write: bool, thp: bool) -> Result<(), MmError> {
        let end = range_end(start, len)?;
        self.lock().with(|vmas| {
            if vmas.overlaps(start, end) {
                return Err(MmError::NoSpace(len));
            }
            vmas.insert(Vma { start, end, write, thp }).map_err(|TooManyVmas| MmError::TooManyMappings)
        })
    }

    /// Unmaps `start..start + len`: clears the entries, flushes the TLBs,
    /// drops the pages' references (P5.1–P5.3), frees emptied tables after
    /// a grace period (P5.4). A huge mapping cut by the range is first split
    /// into a PTE table (P4). Unmapped holes inside the range are skipped.
    ///
    /// # Errors
    /// [`MmError::Unaligned`], [`MmError::EmptyRange`],
    /// [`MmError::OutOfRange`]; [`MmError::NotMapped`] if nothing in the
    /// range is mapped; [`MmError::TooManyMappings`] if cutting an area in
    /// two needs a slot there is not; [`MmError::NoMemory`] if a huge
    /// mapping had to be split and no table frame was free (nothing was
    /// unmapped then either).
    pub fn munmap(&self, start: u64, len: u64) -> Result<(), MmError> {
        self.unmap(start, len, true)
    }

    /// `madvise(MADV_DONTNEED)`: drops the pages of `start..start + len`
    /// (the next touch faults in zeroes); the areas and tables stay.
    ///
    /// # Errors
    /// As [`AddressSpace::munmap`], except for [`MmError::TooManyMappings`].
    pub fn madvise_dontneed(&self, start: u64, len: u64) -> Result<(), MmError> {
        self.unmap(start, len, false)
    }

    fn unmap(&self, start: u64, len: u64, remove: bool) -> Result<(), MmError> {
        let end = range_end(start, len)?;
        let mut gather = Gather::new(self.mmu, self.asid);
        let result = self.lock().with(|vmas| {
            if !vmas.overlaps(start, end) {
                return Err(MmError::NotMapped { start, end });
            }
            self.split_edges(start, end, &mut gather)?;
            if remove {
                vmas.rewrite(start, end, |_| None).map_err(|TooManyVmas| MmError::TooManyMappings)?;
            }
            self.zap(start, end, &mut gather);
            if remove {
                self.prune(start, end, &mut gather);
            }
            gather.flush();
            Ok(())
        });
        gather.finish();
        result
    }

    /// Changes `start..start + len` to read-only or read-write. Huge
    /// mappings cut by the range are split into PTE tables first (P4).
    ///
    /// # Errors
    /// As [`AddressSpace::munmap`].
    pub fn mprotect(&self, start: u64, len: u64, write: bool) -> Result<(), MmError> {
        let end = range_end(start, len)?;
        let mut gather = Gather::new(self.mmu, self.asid);
        let result = self.lock().with(|vmas| {
            if !vmas.overlaps(start, end) {
                return Err(MmError::NotMapped { start, end });
            }
            self.split_edges(start, end, &mut gather)?;
            vmas.rewrite(start, end, |v| Some(Vma { write, ..v })).map_err(|TooManyVmas| MmError::TooManyMappings)?;
            self.for_each_leaf(start, end, |table, index, level, entry, _| {
                if let Entry::Page { pfn, prot, huge } = entry {
                    let new = Entry::Page { pfn, prot: Prot { write, ..prot }, huge };
                    self.mmu.store.publish(table, index, new);
                }
                let _ = level;
            });
            gather.cover(start, end);
            gather.flush();
            Ok(())
        });
        gather.finish();
        result
    }

    /// Splits the huge mappings that straddle `start` or `end` into PTE
    /// tables, so the range's edges fall on PTEs.
    fn split_edges(&self, start: u64, end: u64, gather: &mut Gather<'m, 'a>) -> Result<(), MmError> {
        for edge in [start, end] {
            if edge % HUGE_SIZE != 0 {
                self.split_pmd_at(edge, gather)?;
            }
        }
        Ok(())
    }

    /// Splits the huge mapping covering `va`, if there is one, into a PTE
    /// table (P4.1, P4.2). The caller holds the lock.
    pub(crate) fn split_pmd_at(&self, va: u64, gather: &mut Gather<'m, 'a>) -> Result<bool, MmError> {
        let Some((pmd_table, index)) = self.pmd_slot(va) else { return Ok(false) };
        let store = &self.mmu.store;
        let Entry::Page { pfn: head, prot, huge: true } = store.load(pmd_table, index, Level::Pmd) else {
            return Ok(false);
        };
        // The PMD's one reference becomes one per PTE: the 511 new ones in
        // one add, taken first so that a refusal changes nothing.
        // SAFETY: the PMD leaf owns this reference; it is given back at once
        // (into_raw below), now shared by the PTEs.
        let folio = unsafe { take_mapping_ref(self.mmu.node(), head) };
        let more = NonZeroU32::new(ENTRIES_PER_TABLE as u32 - 1).expect("tables have many entries");
        let refs = folio.try_clone_refs(more).map_err(|e| MmError::RefOverflow(e.pfn));
        let _ = folio.into_raw();
        let refs = refs?;
        // P4.1: a new table, filled completely while no walker can reach it.
        let pte = match store.alloc_table() {
            Ok(pte) => pte,
            Err(e) => {
                drop(refs);
                return Err(MmError::NoMemory(e));
            }
        };
        self.table_added(1);
        for i in 0..ENTRIES_PER_TABLE {
            store.fill(pte, i, Entry::Page { pfn: head.add(i as u64), prot, huge: false });
        }
        let _ = refs.into_raw();
        // The one mapping becomes 512: entire-mapcount down, total up.
        let map = self.mmu.node().memmap();
        map_count(map.page(head).expect("mapped head"), ENTRIES_PER_TABLE as i32 - 1);
        map_count(map.page(head.add(1)).expect("huge folio tail"), -1);
        // P4.2: publish the filled table (Release, in publish).
        store.publish(pmd_table, index, Entry::Table(pte));
        let base = va & !(HUGE_SIZE - 1);
        gather.cover(base, base + HUGE_SIZE);
        self.mmu.count(MmEvent::ThpSplitPmd, 1);
        Ok(true)
    }

    /// Counts a table frame entering (1) or leaving (-1) the tree; called
    /// under the lock (or from `new` and `drop`, which own the tree).
    fn table_added(&self, delta: i64) {
        if delta > 0 {
            self.mmu.count(MmEvent::PgtableAlloc, delta as u64);
        }
        // Relaxed: written only under the address-space lock, which orders
        // the load and the store; the audit reads it under that lock.
        let now = self.tables.load(Ordering::Relaxed);
        // Relaxed: as above.
        self.tables.store(now.wrapping_add(delta as u64), Ordering::Relaxed);
    }

    /// The PMD table and index for `va`, if the upper tables exist.
    pub(crate) fn pmd_slot(&self, va: u64) -> Option<(Pfn, usize)> {
        let store = &self.mmu.store;
        let mut table = self.root;
        for level in [Level::Pgd, Level::Pud] {
            match store.load(table, level.index(va), level) {
                Entry::Table(next) => table = next,
                _ => return None,
            }
        }
        Some((table, Level::Pmd.index(va)))
    }

    /// As [`AddressSpace::pmd_slot`], allocating missing upper tables.
    fn pmd_slot_alloc(&self, va: u64) -> Result<(Pfn, usize), AllocError> {
        let store = &self.mmu.store;
        let mut table = self.root;
        for level in [Level::Pgd, Level::Pud] {
            let index = level.index(va);
            table = match store.load(table, index, level) {
                Entry::Table(next) => next,
                _ => {
                    let next = store.alloc_table()?;
                    self.table_added(1);
                    // P4.2: the empty table, published.
                    store.publish(table, index, Entry::Table(next));
                    next
                }
            };
        }
        Ok((table, Level::Pmd.index(va)))
    }

    /// Runs `f` on every non-empty leaf in `start..end` (present,
    /// migration or unknown), walking only the tables that exist. Huge
    /// leaves must lie entirely inside (the caller split the edges).
    fn for_each_leaf(&self, start: u64, end: u64, mut f: impl FnMut(Pfn, usize, Level, Entry, u64)) {
        self.visit(self.root, Level::Pgd, start, end, &mut f);
    }

    fn visit(&self, table: Pfn, level: Level, start: u64, end: u64, f: &mut impl FnMut(Pfn, usize, Level, Entry, u64)) {
        let store = &self.mmu.store;
        let size = level.size();
        let mut va = start;
        while va < end {
            let slot_end = (va & !(size - 1)) + size;
            let index = level.index(va);
            match store.load(table, index, level) {
                Entry::None => {}
                Entry::Table(child) => match level.next() {
                    Some(next) => self.visit(child, next, va, end.min(slot_end), f),
                    None => f(table, index, level, Entry::Table(child), va),
                },
                entry => f(table, index, level, entry, va),
            }
            va = slot_end;
        }
    }

    /// Clears every leaf in `start..end` into `gather` (P5.1).
    fn zap(&self, start: u64, end: u64, gather: &mut Gather<'m, 'a>) {
        let store = &self.mmu.store;
        let map = self.mmu.node().memmap();
        let mut deferred = self.deferred.lock();
        self.for_each_leaf(start, end, |table, index, level, _, va| {
            let Entry::Page { pfn, huge, .. } = store.clear(table, index, level) else { return };
            let (head, _) = decode_compound(pfn, map.page(pfn).expect("mapped frame").compound_word());
            let head_page = map.page(head).expect("mapped head");
            map_count(head_page, -1);
            if huge {
                map_count(map.page(head.add(1)).expect("huge folio tail"), -1);
            } else if head_page.map_count() > 0
                && decode_compound(head, head_page.compound_word()).1 > Some(Order::ZERO)
            {
                // A large folio still mapped in part: queue it for a split
                // (Linux's deferred split), so its unmapped pages can be
                // freed. The queue is small; a folio that does not fit stays
                // whole until it is unmapped entirely, which frees it.
                let base = va - (pfn.0 - head.0) * PAGE;
                if deferred.with(|q| q.push(base, head)) {
                    self.mmu.count(MmEvent::ThpDeferredSplit, 1);
                }
            }
            gather.drop_refs(head, 1);
        });
        drop(deferred);
        gather.cover(start, end);
    }

    /// Unlinks the tables left empty inside `start..end` (P5.4's input).
    fn prune(&self, start: u64, end: u64, gather: &mut Gather<'m, 'a>) {
        self.prune_level(self.root, Level::Pgd, start, end, gather);
    }

    /// Prunes below entry range `start..end` of `table` at `level`; returns
    /// nothing, the caller checks emptiness.
    fn prune_level(&self, table: Pfn, level: Level, start: u64, end: u64, gather: &mut Gather<'m, 'a>) {
        let store = &self.mmu.store;
        let Some(child_level) = level.next() else { return };
        let size = level.size();
        let mut va = start;
        while va < end {
            let index = level.index(va);
            let slot_start = va & !(size - 1);
            if let Entry::Table(child) = store.load(table, index, level) {
                if child_level != Level::Pte {
                    self.prune_level(child, child_level, va, end.min(slot_start + size), gather);
                }
                if store.is_empty(child) {
                    store.clear(table, index, level);
                    // SAFETY: we just cleared the one entry that owned it.
                    unsafe { gather.free_table(child) };
                    self.table_added(-1);
                }
            }
            va = slot_start + size;
        }
    }

    /// Handles a fault at `va`: maps a zeroed page or, in a THP area where
    /// an aligned 2 MiB fits, a zeroed 2 MiB folio with one PMD (counted as
    /// a fallback when only a 4 KiB page could be had).
    ///
    /// # Errors
    /// [`Fault`] when the access cannot be allowed or no memory is left.
    pub fn fault(&self, va: u64, write: bool) -> Result<(), Fault> {
        self.mmu.count(MmEvent::PgFault, 1);
        self.lock().with(|vmas| {
            let vma = vmas.find(va).ok_or(Fault::NotMapped(va))?;
            if write && !vma.write {
                return Err(Fault::Protection(va));
            }
            self.fault_locked(va, vma)
        })
    }

    fn fault_locked(&self, va: u64, vma: Vma) -> Result<(), Fault> {
        let store = &self.mmu.store;
        let node = self.mmu.node();
        let prot = Prot { write: vma.write, ..Prot::READ };
        let (pmd_table, pmd_index) = self.pmd_slot_alloc(va).map_err(|_| Fault::NoMemory(va))?;
        let pte = match store.load(pmd_table, pmd_index, Level::Pmd) {
            Entry::Table(pte) => pte,
            Entry::Page { .. } | Entry::Migration { .. } => return Ok(()),
            Entry::Unknown(_) => return Err(Fault::BadEntry(va)),
            Entry::None => {
                let base = va & !(HUGE_SIZE - 1);
                if vma.thp && base >= vma.start && base + HUGE_SIZE <= vma.end {
                    let order = Order::try_from(super::TABLE_BITS).expect("PMD order fits");
                    match node.alloc(order, Gfp::USER.zeroed()) {
                        Ok(folio) => {
                            let map = node.memmap();
                            map_count(folio.head(), 1);
                            map_count(map.page(folio.pfn().add(1)).expect("huge folio tail"), 1);
                            // P4.2: the zeroed folio, published.
                            store.publish(
                                pmd_table,
                                pmd_index,
                                Entry::Page { pfn: folio.into_raw(), prot, huge: true },
                            );
                            self.mmu.count(MmEvent::ThpFaultAlloc, 1);
                            return Ok(());
                        }
                        Err(_) => self.mmu.count(MmEvent::ThpFaultFallback, 1),
                    }
                }
                let pte = store.alloc_table().map_err(|_| Fault::NoMemory(va))?;
                self.table_added(1);
                store.publish(pmd_table, pmd_index, Entry::Table(pte));
                pte
            }
        };
        let index = Level::Pte.index(va);
        match store.load(pte, index, Level::Pte) {
            Entry::None => {
                let folio = node.alloc(Order::ZERO, Gfp::USER.zeroed()).map_err(|_| Fault::NoMemory(va))?;
                map_count(folio.head(), 1);
                // P4.2: the zeroed page, published.
                store.publish(pte, index, Entry::Page { pfn: folio.into_raw(), prot, huge: false });
                Ok(())
            }
            Entry::Unknown(_) => Err(Fault::BadEntry(va)),
            _ => Ok(()),
        }
    }

    /// Walks to the leaf mapping `va` without the lock: each entry read
    /// once with Acquire (P4.3). Call it inside an RCU read section
    /// (P5.4): the tables it reads may be unlinked meanwhile, and only the
    /// grace period keeps their frames from being reused under it.
    pub fn walk(&self, _section: &crate::rcu::RcuReadGuard<'_, 'a>, va: u64) -> Option<Leaf> {
        if !(USER_START..USER_END).contains(&va) {
            return None;
        }
        let store = &self.mmu.store;
        let mut table = self.root;
        for level in [Level::Pgd, Level::Pud] {
            match store.load(table, level.index(va), level) {
                Entry::Table(next) => table = next,
                _ => return None,
            }
        }
        let pmd = (table, Level::Pmd.index(va));
        let pmd_word = store.load_word(pmd.0, pmd.1);
        match Entry::decode(pmd_word, Level::Pmd) {
            Entry::Table(pte) => {
                let index = Level::Pte.index(va);
                let word = store.load_word(pte, index);
                let entry = Entry::decode(word, Level::Pte);
                (entry != Entry::None).then_some(Leaf { table: pte, index, pmd, pmd_word, word, entry })
            }
            Entry::None => None,
            entry => Some(Leaf { table: pmd.0, index: pmd.1, pmd, pmd_word, word: pmd_word, entry }),
        }
    }

    /// Takes the oldest large folio queued for a deferred split: the
    /// address of its first page and its head pfn (it may have been freed
    /// or split since; the caller checks).
    pub(crate) fn pop_deferred_split(&self) -> Option<(u64, Pfn)> {
        self.deferred.lock().with(DeferredSplits::pop)
    }

    /// Under the lock, faults `va` in (for a write if `write`) until a
    /// present leaf maps it with the access allowed, then runs `f` on that
    /// leaf while still holding the lock (GUP's slow path: no entry changes
    /// under `f`).
    ///
    /// # Errors
    /// The [`Fault`] the access cannot get past.
    pub(crate) fn with_mapped<R>(&self, va: u64, write: bool, f: impl FnOnce(Leaf) -> R) -> Result<R, Fault> {
        self.lock().with(|vmas| {
            let vma = vmas.find(va).ok_or(Fault::NotMapped(va))?;
            if write && !vma.write {
                return Err(Fault::Protection(va));
            }
            loop {
                let leaf = {
                    let section = self.mmu.rcu.read_lock();
                    self.walk(&section, va)
                };
                if let Some(leaf @ Leaf { entry: Entry::Page { prot, .. }, .. }) = leaf {
                    if !write || prot.write {
                        return Ok(f(leaf));
                    }
                }
                self.mmu.count(MmEvent::PgFault, 1);
                self.fault_locked(va, vma)?;
            }
        })
    }

    /// Runs `f` under the lock with a gather; flushes the gather (TLBs,
    /// then the gathered references) before unlocking and finishes it
    /// (tables after a grace period) after. For layers above that change
    /// mappings (the THP split).
    pub(crate) fn locked<R>(&self, f: impl FnOnce(&mut Gather<'m, 'a>) -> R) -> R {
        let mut gather = Gather::new(self.mmu, self.asid);
        let result = self.lock().with(|_| {
            let result = f(&mut gather);
            gather.flush();
            result
        });
        gather.finish();
        result
    }

    /// Reads `buf.len()` bytes at `va` through the MMU, faulting pages in.
    ///
    /// # Errors
    /// The first [`Fault`] met; bytes before it were read.
    pub fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let mut done = 0;
        while done < buf.len() {
            let at = va + done as u64;
            let n = (PAGE - at % PAGE).min((buf.len() - done) as u64) as usize;
            let chunk = &mut buf[done..done + n];
            self.with_translation(at, false, |words| {
                let mut reader = FrameReader::new(words);
                reader.seek((at % PAGE) as usize);
                reader.read(chunk);
            })?;
            done += n;
        }
        Ok(())
    }

    /// Writes `buf` at `va` through the MMU, faulting pages in.
    ///
    /// # Errors
    /// The first [`Fault`] met; bytes before it were written.
    pub fn write(&self, va: u64, buf: &[u8]) -> Result<(), Fault> {
        let mut done = 0;
        while done < buf.len() {
            let at = va + done as u64;
            let n = (PAGE - at % PAGE).min((buf.len() - done) as u64) as usize;
            let chunk = &buf[done..done + n];
            self.with_translation(at, true, |words| {
                let mut writer = FrameWriter::new(words);
                writer.seek((at % PAGE) as usize);
                writer.write(chunk);
            })?;
            done += n;
        }
        Ok(())
    }

    /// Translates `va` on this CPU (TLB, else a lockless walk that fills
    /// the TLB, else a fault) and runs `access` on the frame's words, all
    /// under this CPU's TLB lock so no shootdown lands in between.
    fn with_translation(
        &self,
        va: u64,
        write: bool,
        access: impl FnOnce(&[crate::sync::FrameWord]),
    ) -> Result<(), Fault> {
        let map = self.mmu.node().memmap();
        let mut access = Some(access);
        loop {
            let cpu = self.mmu.platform().current_cpu();
            let mut tlb = self.mmu.tlbs.lock(cpu);
            let hit = tlb.with_ref(|t| t.lookup(self.asid, va)).filter(|e| !write || e.write);
            let translation = match hit {
                Some(e) => Some(e),
                None => {
                    let section = self.mmu.rcu.read_lock();
                    match self.walk(&section, va) {
                        Some(Leaf { table, index, word, entry: Entry::Page { pfn, prot, huge }, .. })
                            if prot.user && (!write || prot.write) =>
                        {
                            self.mmu.store.mark_used(table, index, word, write).then(|| {
                                let shift = if huge { Level::Pmd.shift() } else { Level::Pte.shift() };
                                let e = TlbEntry {
                                    asid: self.asid,
                                    huge,
                                    write: prot.write && (write || prot.dirty),
                                    vpn: va >> shift,
                                    pfn,
                                };
                                tlb.with(|t| t.insert(e));
                                e
                            })
                        }
                        _ => None,
                    }
                }
            };
            if let Some(e) = translation {
                // Mutant: the access after the TLB lock is dropped, where a
                // shootdown and the page's free can land in between.
                #[cfg(memdesc_mutant = "access_outside_tlb_lock")]
                drop(tlb);
                // P5.5: the access, still under this CPU's TLB lock.
                self.mmu.store.touch_frame(e.frame_of(va));
                let words = map.frame_words(e.frame_of(va), 1).expect("mapped frame inside the node");
                (access.take().expect("access runs once"))(words);
                return Ok(());
            }
            drop(tlb);
            self.fault(va, write)?;
        }
    }

    /// Checks the tables against the descriptors: every leaf's folio is
    /// anonymous, counted at least once per mapping, with mapcounts equal to
    /// its mappings; every table frame is a frozen page-table frame reached
    /// once. Takes the lock; call it at a quiescent point for exact
    /// mapcounts.
    pub fn audit(&self) -> AsAudit {
        let _locked = self.lock();
        let mut audit = AsAudit::default();
        let mut run = Run::default();
        self.audit_table(self.root, Level::Pgd, 0, &mut audit, &mut run);
        // Every table in the tree reached exactly once: a table linked twice
        // (or a leaked one) makes the counts differ.
        // Relaxed: written under the lock we hold.
        if audit.tables != self.tables.load(Ordering::Relaxed) {
            violation(&mut audit, 0);
        }
        audit
    }

    fn audit_table(&self, table: Pfn, level: Level, base: u64, audit: &mut AsAudit, run: &mut Run) {
        let map = self.mmu.node().memmap();
        audit.tables += 1;
        let ok =
            map.page(table).is_some_and(|p| p.page_type() == crate::folio::PageType::PageTable && p.ref_count() == 0);
        if !ok {
            violation(audit, base);
        }
        for index in 0..ENTRIES_PER_TABLE {
            let va = base + index as u64 * level.size();
            match self.mmu.store.load(table, index, level) {
                Entry::None => {}
                Entry::Table(child) => match level.next() {
                    Some(next) => self.audit_table(child, next, va, audit, run),
                    None => violation(audit, va),
                },
                Entry::Page { pfn, huge, .. } => {
                    if huge {
                        audit.pmd_mappings += 1;
                    } else {
                        audit.pte_mappings += 1;
                    }
                    run.add(self, audit, va, pfn, huge);
                }
                Entry::Migration { .. } | Entry::Unknown(_) => violation(audit, va),
            }
        }
    }

    /// How many table frames the tree holds, root included, as a snapshot
    /// (the audit checks the tree holds exactly this many).
    pub fn table_frames(&self) -> u64 {
        // Relaxed: a snapshot of a count written under the lock.
        self.tables.load(Ordering::Relaxed)
    }
}

/// Partly mapped large folios to split, as (address of the folio's first
/// page, head pfn); a small ring, newest kept.
#[derive(Default)]
pub(crate) struct DeferredSplits {
    queue: [(u64, Pfn); DEFERRED_SPLITS],
    len: usize,
}

/// Partly mapped folios an address space remembers for splitting.
const DEFERRED_SPLITS: usize = 16;

impl DeferredSplits {
    /// Queues a folio; false if it was already queued.
    fn push(&mut self, base: u64, head: Pfn) -> bool {
        if self.queue[..self.len].iter().any(|&(_, h)| h == head) {
            return false;
        }
        if self.len == DEFERRED_SPLITS {
            self.queue.copy_within(1.., 0);
            self.len -= 1;
        }
        self.queue[self.len] = (base, head);
        self.len += 1;
        true
    }

    /// Takes the oldest queued folio.
    pub(crate) fn pop(&mut self) -> Option<(u64, Pfn)> {
        if self.len == 0 {
            return None;
        }
        let first = self.queue[0];
        self.queue.copy_within(1..self.len, 0);
        self.len -= 1;
        Some(first)
    }
}

/// Folios already checked whose address range the audit is still inside.
///
/// Without fork or mremap, page `i` of a folio can be mapped only at
/// `base + i * PAGE`, so a folio's mappings lie in one range of addresses;
/// another folio may be mapped inside it (a hole refaulted with a small
/// page), so the ranges nest, a few deep.
#[derive(Default)]
struct Run {
    open: [(Pfn, u64); 16],
    len: usize,
}

impl Run {
    /// Checks the folio mapped at `va` (by `pfn`) the first time one of
    /// its mappings is met: its mapcounts against the mappings in its range,
    /// its refcount against them, its type.
    fn add(&mut self, aspace: &AddressSpace<'_, '_>, audit: &mut AsAudit, va: u64, pfn: Pfn, huge: bool) {
        let map = aspace.mmu.node().memmap();
        let Some(page) = map.page(pfn) else { return violation(audit, va) };
        let (head, _) = decode_compound(pfn, page.compound_word());
        let Some(head_page) = map.page(head) else { return violation(audit, va) };
        // Close the ranges we have left.
        while self.len > 0 && self.open[self.len - 1].1 <= va {
            self.len -= 1;
        }
        if self.open[..self.len].iter().any(|&(h, _)| h == head) {
            return;
        }
        let order = decode_compound(head, head_page.compound_word()).1.unwrap_or(Order::ZERO);
        let nr = 1u64 << order.get();
        let base = va - (pfn.0 - head.0) * PAGE;
        let end = base + nr * PAGE;
        let (mut mappings, mut pmd) = (0i32, 0i32);
        if huge {
            (mappings, pmd) = (1, 1);
        } else {
            let section = aspace.mmu.rcu.read_lock();
            let mut at = base;
            while at < end {
                if let Some(Leaf { entry: Entry::Page { pfn: p, huge: false, .. }, .. }) = aspace.walk(&section, at) {
                    if p.0 >= head.0 && p.0 < head.0 + nr {
                        mappings += 1;
                    }
                }
                at += PAGE;
            }
        }
        let entire = if order > Order::ZERO { map.page(head.add(1)).map_or(0, Page::map_count) } else { 0 };
        if head_page.page_type() != crate::folio::PageType::Anon
            || head_page.map_count() != mappings
            || entire != pmd
            || (head_page.ref_count() as i64) < i64::from(mappings)
        {
            violation(audit, va);
        }
        if self.len < self.open.len() {
            self.open[self.len] = (head, end);
            self.len += 1;
        }
    }
}

fn violation(audit: &mut AsAudit, va: u64) {
    audit.violations += 1;
    audit.first_violation.get_or_insert(va);
}

/// Adds `delta` to a descriptor's mapcount.
pub(crate) fn map_count(page: &Page, delta: i32) {
    // Relaxed: mapcounts change only under the lock of the one address
    // space mapping the folio (no fork), which orders them; audits read
    // them under that lock too.
    page.mapcount.fetch_add(delta, Ordering::Relaxed);
}

impl Drop for AddressSpace<'_, '_> {
    fn drop(&mut self) {
        let mut gather = Gather::new(self.mmu, self.asid);
        self.lock().with(|vmas| {
            *vmas = Vmas::new();
            self.zap(USER_START, USER_END, &mut gather);
            self.prune(USER_START, USER_END, &mut gather);
            gather.flush();
        });
        // SAFETY: the address space is going away: nothing else owns the
        // root, and no walker can start (walks need `&self`).
        unsafe { gather.free_table(self.root) };
        gather.finish();
    }
}
