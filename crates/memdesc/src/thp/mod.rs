//! Transparent huge pages: splitting a mapped large folio (Linux's
//! `split_huge_page` and, for a split around one page, 6.15's
//! `folio_split`).
//!
//! # The sequence (SPLIT.1–SPLIT.7, docs/PROTOCOLS.md)
//! Under the address space's lock (which, without fork, is the lock of the
//! folio's only mapper, and so plays the role Linux gives the folio lock
//! and the anon_vma lock here):
//! 1. a PMD mapping is first split into a PTE table (P4);
//! 2. every PTE mapping a page of the folio becomes a migration entry that
//!    remembers the page and its write and dirty bits, and the mappings'
//!    mapcounts go; one TLB flush for the range;
//! 3. the refcount is frozen from exactly the mappings' references plus
//!    ours (P2.1): a GUP pin or any transient reference makes it fail, and
//!    the migration entries are turned back into the same mappings, every
//!    byte and reference intact (`thp_split_page_failed`);
//! 4. the frozen folio is split (P2.2–P2.4), uniformly or around the page
//!    at the address (non-uniform: the pieces around it stay as large as
//!    alignment allows);
//! 5. each new piece is unfrozen with the references of its mapped pages,
//!    its compound info published by the Release of its unfreeze, the
//!    original head last (P2.5–P2.7); a piece no entry maps is freed;
//! 6. the migration entries are replaced by present entries for the pieces
//!    (Release, P4.2) with the mapcounts back.
//!
//! A CPU that touches the range meanwhile finds a migration entry (or no
//! TLB entry) and faults; the fault takes the lock, so it waits until the
//! entries are replaced, then sees the same bytes. GUP-fast finds the
//! migration entry and falls back to the slow path, which waits the same
//! way; a GUP-fast that took its references before step 2 makes step 3
//! fail; one that reads the entry before step 2 and increments after step 5
//! is refused by its head recheck (P1.4) or its entry recheck (P6.5).

#[cfg(all(test, not(memdesc_loom)))]
mod mt_tests;
#[cfg(all(test, not(memdesc_loom)))]
mod tests;

use crate::buddy::FolioRef;
use crate::folio::{decode_compound, Order};
use crate::memmap::{Pfn, PAGE_SIZE};
use crate::pgtable::gather::Gather;
use crate::pgtable::{map_count, AddressSpace, Entry, Level, MmEvent, Prot};
use core::fmt;
use core::num::NonZeroU32;

const PAGE: u64 = PAGE_SIZE as u64;

/// How to split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitMode {
    /// Every piece gets `order` (`split_huge_page_to_list_to_order`).
    Uniform(Order),
    /// The piece holding the address gets `order`; the rest stay in the
    /// largest aligned pieces (`folio_split`: order 9 to order 0 around
    /// one page gives 10 folios, not 512).
    Around(Order),
}

/// Why a split did not happen. The mappings, bytes and references are as
/// they were (a PMD mapping may have become PTEs, which map the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThpSplitError {
    /// Nothing is mapped at the address.
    NotMapped(u64),
    /// The folio at the address is not larger than the order asked for.
    TooSmall {
        /// The folio's order.
        order: Order,
    },
    /// The refcount was not what the mappings account for: a pin or a
    /// transient reference (EAGAIN; retry later).
    Busy {
        /// References the mappings and the splitter account for.
        expected: u32,
        /// References found.
        actual: u32,
    },
    /// No table frame for splitting the PMD mapping.
    NoMemory,
}

impl fmt::Display for ThpSplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMapped(va) => write!(f, "nothing mapped at {va:#x}"),
            Self::TooSmall { order } => write!(f, "the folio is order {order}, nothing to split"),
            Self::Busy { expected, actual } => {
                write!(f, "folio busy: {actual} references where the mappings account for {expected}")
            }
            Self::NoMemory => f.write_str("no memory for a page table"),
        }
    }
}

impl core::error::Error for ThpSplitError {}

/// What a split did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitDone {
    /// Folios the original became (itself included).
    pub folios: u32,
    /// Pages remapped.
    pub remapped: u32,
    /// Pieces freed because no entry mapped them.
    pub freed: u32,
}

/// The most pages a split handles: one PMD's worth.
const MAX_PAGES: usize = crate::pgtable::HUGE_FRAMES as usize;

/// Splits the folio mapped at `va` in `aspace` as `mode` says
/// (SPLIT.1–SPLIT.6 above).
///
/// # Errors
/// [`ThpSplitError`]; nothing changed but a possible PMD split.
pub fn split_folio(aspace: &AddressSpace<'_, '_>, va: u64, mode: SplitMode) -> Result<SplitDone, ThpSplitError> {
    let mmu = aspace.mmu();
    let result = aspace.locked(|gather| split_locked(aspace, va, mode, gather));
    match result {
        Ok(_) => mmu.count(MmEvent::ThpSplitPage, 1),
        Err(ThpSplitError::Busy { .. }) => mmu.count(MmEvent::ThpSplitPageFailed, 1),
        Err(_) => {}
    }
    result
}

fn split_locked<'m, 'a>(
    aspace: &AddressSpace<'m, 'a>,
    va: u64,
    mode: SplitMode,
    gather: &mut Gather<'m, 'a>,
) -> Result<SplitDone, ThpSplitError> {
    let mmu = aspace.mmu();
    let node = mmu.node();
    let map = node.memmap();
    let store = &mmu.store;
    let va = va & !(PAGE - 1);

    // The page at `va` and its folio; the mapping's reference keeps both
    // stable while we hold the lock.
    let pfn = {
        let section = mmu.rcu().read_lock();
        match aspace.walk(&section, va) {
            Some(crate::pgtable::Leaf { entry: Entry::Page { pfn, huge, .. }, .. }) => {
                if huge {
                    pfn.add((va / PAGE) % crate::pgtable::HUGE_FRAMES)
                } else {
                    pfn
                }
            }
            _ => return Err(ThpSplitError::NotMapped(va)),
        }
    };
    let (head, order) = decode_compound(pfn, map.page(pfn).ok_or(ThpSplitError::NotMapped(va))?.compound_word());
    let head_page = map.page(head).ok_or(ThpSplitError::NotMapped(va))?;
    let order = order.or_else(|| decode_compound(head, head_page.compound_word()).1).unwrap_or(Order::ZERO);
    let new_order = match mode {
        SplitMode::Uniform(o) | SplitMode::Around(o) => o,
    };
    if order <= new_order || order.get() as usize > MAX_PAGES.trailing_zeros() as usize {
        return Err(ThpSplitError::TooSmall { order });
    }
    let nr = 1usize << order.get();
    let base = va - (pfn.0 - head.0) * PAGE;

    // SPLIT.1: a PMD mapping becomes PTEs first (P4).
    aspace.split_pmd_at(va, gather).map_err(|_| ThpSplitError::NoMemory)?;

    // SPLIT.2: migration entries for every mapped page of the folio.
    // Which pages had a mapping (their migration entry keeps the rest).
    let mut pages = [false; MAX_PAGES];
    let mut mapped = 0u32;
    let mut tables = PteTables::default();
    for (i, page) in pages.iter_mut().enumerate().take(nr) {
        let at = base + i as u64 * PAGE;
        let Some(pte) = tables.get(aspace, at) else { continue };
        let index = Level::Pte.index(at);
        if let Entry::Page { pfn: p, prot, .. } = store.load(pte, index, Level::Pte) {
            if p == head.add(i as u64) {
                store.publish(
                    pte,
                    index,
                    Entry::Migration { pfn: p, write: prot.write, dirty: prot.dirty, huge: false },
                );
                *page = true;
                map_count(head_page, -1);
                mapped += 1;
            }
        }
    }
    gather.cover(base, base + nr as u64 * PAGE);
    gather.flush();

    // SPLIT.3: freeze at exactly the mappings' references plus ours.
    // The mappings' references stay raw (in the migration entries).
    let ours: FolioRef<'a> = node.try_get(head).map_err(|_| ThpSplitError::NotMapped(va))?;
    let expected = NonZeroU32::new(mapped + 1).expect("ours");
    // (The mutant split_check_without_freeze, in try_freeze_with, checks
    // the count without freezing it.)
    // SAFETY: duty 1 of try_freeze_with: the other `mapped` references are
    // the migration entries' (raw, restored only by the remap below, under
    // the lock we hold); we hold no other handle to this folio.
    let frozen = unsafe { ours.try_freeze_with(expected) };
    let frozen = match frozen {
        Ok(frozen) => frozen,
        Err(err) => {
            let (ours, failed) = err.into_parts();
            // Undo SPLIT.2: the same mappings, bytes and references.
            remap(aspace, base, &pages[..nr], |_| head);
            drop(ours);
            return Err(ThpSplitError::Busy { expected: failed.expected, actual: failed.actual });
        }
    };

    // SPLIT.4: the split itself (P2.2–P2.4).
    let pieces = match mode {
        SplitMode::Uniform(o) => frozen.split(o),
        SplitMode::Around(o) => frozen.split_around(pfn, o),
    }
    .unwrap_or_else(|e| {
        panic!("split of a frozen order-{order} folio to order {new_order} refused: {}", e.into_failed())
    });

    // SPLIT.5: unfreeze each piece with its mapped pages' references plus
    // one that we drop right after (so a piece nothing maps is freed), the
    // original head last (P2.7).
    let mut folios = 0;
    let mut freed = 0;
    let mapped_in = |piece: Pfn, order: Order| -> u32 {
        let first = (piece.0 - head.0) as usize;
        pages[first..first + (1usize << order.get())].iter().filter(|&&m| m).count() as u32
    };
    pieces
        .unfreeze_with(
            |piece, order| NonZeroU32::new(mapped_in(piece, order) + 1).expect("plus one"),
            |piece| {
                folios += 1;
                if mapped_in(piece.pfn(), piece.order()) == 0 {
                    freed += 1;
                }
                drop(piece);
            },
        )
        .unwrap_or_else(|e| panic!("unfreezing split anonymous pieces refused: {}", e.into_failed()));

    // SPLIT.6: the pieces mapped again, each page by its new head.
    let remapped =
        remap(aspace, base, &pages[..nr], |p| decode_compound(p, map.page(p).expect("in the node").compound_word()).0);
    Ok(SplitDone { folios, remapped, freed })
}

/// The PTE table mapping an address, found from the root once per 2 MiB
/// (a folio of up to PMD order, naturally aligned, lies in one table).
#[derive(Default)]
struct PteTables {
    last: Option<(u64, Pfn)>,
}

impl PteTables {
    fn get(&mut self, aspace: &AddressSpace<'_, '_>, at: u64) -> Option<Pfn> {
        let region = at / crate::pgtable::HUGE_SIZE;
        if let Some((r, pte)) = self.last {
            if r == region {
                return Some(pte);
            }
        }
        let (pmd_table, pmd_index) = aspace.pmd_slot(at)?;
        let Entry::Table(pte) = aspace.mmu().store.load(pmd_table, pmd_index, Level::Pmd) else { return None };
        self.last = Some((region, pte));
        Some(pte)
    }
}

/// Replaces the migration entries of `pages` (the folio at `base`) by
/// present entries again (Release, P4.2), the mapcount of each page's head
/// (`head_of`) up by one per page. Returns the pages remapped.
fn remap(aspace: &AddressSpace<'_, '_>, base: u64, pages: &[bool], head_of: impl Fn(Pfn) -> Pfn) -> u32 {
    let mmu = aspace.mmu();
    let map = mmu.node().memmap();
    let store = &mmu.store;
    let mut remapped = 0;
    let mut tables = PteTables::default();
    for (i, &mapped) in pages.iter().enumerate() {
        if !mapped {
            continue;
        }
        let at = base + i as u64 * PAGE;
        let pte = tables.get(aspace, at).expect("the table that held the migration entry");
        let index = Level::Pte.index(at);
        let Entry::Migration { pfn, write, dirty, .. } = store.load(pte, index, Level::Pte) else {
            unreachable!("the lock kept our migration entry")
        };
        map_count(map.page(head_of(pfn)).expect("in the node"), 1);
        store.publish(pte, index, Entry::Page { pfn, prot: Prot { write, dirty, ..Prot::READ }, huge: false });
        remapped += 1;
    }
    remapped
}

/// What [`split_deferred`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeferredOutcome {
    /// Folios split to order 0.
    pub split: u32,
    /// Splits refused (a pin or transient reference); those folios stay
    /// whole until unmapped.
    pub busy: u32,
    /// Queued folios no longer mapped (freed, or split already).
    pub gone: u32,
}

/// Splits to order 0 the large folios that unmapping left partly mapped
/// (Linux's deferred split queue, drained on demand here rather than by a
/// shrinker), so that their unmapped pages go back to the allocator.
pub fn split_deferred(aspace: &AddressSpace<'_, '_>) -> DeferredOutcome {
    let mut outcome = DeferredOutcome::default();
    let map = aspace.mmu().node().memmap();
    while let Some((base, head)) = aspace.pop_deferred_split() {
        // A page of that folio still mapped, if any: the folio may have
        // been unmapped entirely, freed or split since it was queued.
        let mapped = {
            let section = aspace.mmu().rcu().read_lock();
            (0..crate::pgtable::HUGE_FRAMES).map(|i| base + i * PAGE).find(|&va| {
                matches!(aspace.walk(&section, va), Some(crate::pgtable::Leaf { entry: Entry::Page { pfn, huge: false, .. }, .. })
                    if map.page(pfn).is_some_and(|p| decode_compound(pfn, p.compound_word()).0 == head))
            })
        };
        let Some(va) = mapped else {
            outcome.gone += 1;
            continue;
        };
        match split_folio(aspace, va, SplitMode::Uniform(Order::ZERO)) {
            Ok(_) => outcome.split += 1,
            Err(ThpSplitError::Busy { .. }) => outcome.busy += 1,
            Err(_) => outcome.gone += 1,
        }
    }
    outcome
}
