//! Zones and their buddy free lists.
//!
//! A zone is a contiguous pfn range with one lock over its free lists, one
//! list per (order, migratetype). Free blocks are naturally aligned; a block's
//! buddy is `pfn ^ (1 << order)`, identified in O(1) by its descriptor's type
//! tag (`Buddy { order }`), never by scanning a list. Every function here runs
//! with the zone lock held: they take `&mut FreeArea`, which only the lock
//! guard hands out.

use super::freelist::FreeList;
use super::migratetype::{pageblock_migratetype, set_pageblock_migratetype, Migratetype, NR_MIGRATETYPES};
use super::vmstat::{VmCounters, VmEvent};
use crate::folio::{PageType, MAX_ORDER};
use crate::memmap::{MemMap, Pfn, PAGEBLOCK_FRAMES, PAGEBLOCK_ORDER};
use crate::sync::{Ordering, SpinLock, StatWord};
use core::fmt;

/// Orders `0..=MAX_ORDER`.
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;

/// Which zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZoneId {
    /// Where every allocation may come from.
    Normal = 0,
    /// Only movable allocations: compaction can always empty it.
    Movable = 1,
}

/// How many zones there are.
pub const NR_ZONES: usize = 2;

impl ZoneId {
    /// Every zone, in index order.
    pub const ALL: [ZoneId; NR_ZONES] = [ZoneId::Normal, ZoneId::Movable];

    /// The zone's name, as /proc/zoneinfo prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Movable => "Movable",
        }
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The free lists of a zone: what the zone lock protects.
pub(crate) struct FreeArea {
    lists: [[FreeList; NR_MIGRATETYPES]; NR_ORDERS],
    /// Free frames on the lists (mirrored in `Zone::free_pages` for lock-free
    /// watermark checks).
    free: u64,
}

/// Watermarks in frames: allocation keeps the zone's free frames above `min`
/// unless the request may dip into reserves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// Below this only high-priority requests succeed.
    pub min: u64,
    /// Below this a kernel would wake kswapd.
    pub low: u64,
    /// Reclaim's target.
    pub high: u64,
}

/// A zone: the part of the boot span between `start` and `end`, plus the
/// sections hot-added to it (tagged with its id in the section table).
pub(crate) struct Zone {
    pub(crate) id: ZoneId,
    /// The zone's boot span; hot-added sections lie past every boot span.
    pub(crate) start: Pfn,
    pub(crate) end: Pfn,
    pub(crate) area: SpinLock<FreeArea>,
    /// Free frames in the buddy lists; written under the lock, read racily.
    free_pages: StatWord,
    /// Frames given to this zone at boot.
    pub(crate) managed: u64,
    /// Frames given to this zone by hot-adds (HOTADD.5); written under the
    /// zone lock, read racily.
    hot_managed: StatWord,
    /// Frames of the sections hot-added to this zone, metadata included;
    /// written under the zone lock, read racily.
    hot_present: StatWord,
    pub(crate) watermarks: Watermarks,
    /// Events counted under the zone lock.
    pub(crate) stats: VmCounters,
}

impl Zone {
    pub(crate) fn new(id: ZoneId, start: Pfn, end: Pfn) -> Self {
        Self {
            id,
            start,
            end,
            area: SpinLock::new(FreeArea { lists: [[FreeList::new(); NR_MIGRATETYPES]; NR_ORDERS], free: 0 }),
            free_pages: StatWord::new(0),
            managed: 0,
            hot_managed: StatWord::new(0),
            hot_present: StatWord::new(0),
            watermarks: Watermarks::default(),
            stats: VmCounters::new(),
        }
    }

    /// Whether `pfn` lies in this zone.
    #[inline(always)]
    pub(crate) fn contains(&self, pfn: Pfn) -> bool {
        self.start <= pfn && pfn < self.end
    }

    /// Whether `pfn` lies in this zone: its boot span or a section
    /// hot-added to it.
    #[inline]
    pub(crate) fn spans(&self, map: &MemMap<'_>, pfn: Pfn) -> bool {
        self.contains(pfn) || (pfn >= map.end_pfn() && map.section_tag(pfn) == Some(self.id as u8))
    }

    /// Whether `buddy`, the buddy of the free block at `pfn`, may merge with
    /// it: in the zone's boot span, or in the same hot-added section of this
    /// zone (a block never spans two descriptor arrays).
    #[inline(always)]
    fn may_merge(&self, map: &MemMap<'_>, pfn: Pfn, buddy: Pfn) -> bool {
        self.contains(buddy) || (map.same_section(pfn, buddy) && self.spans(map, buddy))
    }

    /// Frames managed by this zone: given at boot plus hot-added.
    pub(crate) fn managed_pages(&self) -> u64 {
        // Relaxed: a counter read as a snapshot.
        self.managed + self.hot_managed.load(Ordering::Relaxed)
    }

    /// Frames of the sections hot-added to this zone, metadata included.
    pub(crate) fn hot_present_pages(&self) -> u64 {
        // Relaxed: a counter read as a snapshot.
        self.hot_present.load(Ordering::Relaxed)
    }

    /// Whether the zone has no memory at all (an empty boot span and
    /// nothing hot-added), so allocation skips it.
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        // Relaxed: a hint; a hot-add racing with this check only delays the
        // zone's first use to the next allocation.
        self.end <= self.start && self.hot_managed.load(Ordering::Relaxed) == 0
    }

    /// Accounts for a hot-added section range: `present` frames, `managed`
    /// of them freed into the zone. Called under the zone lock (`_area`
    /// proves it), the counters' one writer.
    pub(crate) fn account_hot_add(&self, _area: &mut FreeArea, present: u64, managed: u64) {
        // Relaxed: written under the zone lock; read as snapshots.
        self.hot_present.store(self.hot_present.load(Ordering::Relaxed) + present, Ordering::Relaxed);
        // Relaxed: as above.
        self.hot_managed.store(self.hot_managed.load(Ordering::Relaxed) + managed, Ordering::Relaxed);
    }

    /// Free frames in the buddy lists, as a snapshot.
    #[inline(always)]
    pub(crate) fn free_pages(&self) -> u64 {
        // Relaxed: a watermark hint; the allocation itself runs under the lock
        // and fails cleanly if the lists are empty.
        self.free_pages.load(Ordering::Relaxed)
    }

    /// Whether taking `nr` frames keeps the zone above its min watermark.
    #[inline(always)]
    pub(crate) fn watermark_ok(&self, nr: u64, high_priority: bool) -> bool {
        let min = if high_priority { 0 } else { self.watermarks.min };
        self.free_pages() >= nr + min
    }

    fn sync_free(&self, area: &FreeArea) {
        // Relaxed: written under the zone lock (one writer); read as a hint by
        // free_pages.
        self.free_pages.store(area.free, Ordering::Relaxed);
    }
}

impl FreeArea {
    /// Puts the block at `pfn` on its list, typed as a buddy head.
    fn add_block(&mut self, map: &MemMap<'_>, pfn: Pfn, order: u32, mt: Migratetype) {
        map.page_of(pfn).set_type(PageType::Buddy { order: order as u8 });
        self.lists[order as usize][mt.index()].push(map, pfn);
        self.free += 1 << order;
    }

    /// Takes the block at `pfn` off its list. Its type is left for the
    /// caller to overwrite.
    fn del_block(&mut self, map: &MemMap<'_>, pfn: Pfn, order: u32, mt: Migratetype) {
        self.lists[order as usize][mt.index()].remove(map, pfn);
        self.free -= 1 << order;
    }

    /// Number of free blocks of `order` and `mt`.
    pub(crate) fn nr_blocks(&self, order: usize, mt: Migratetype) -> u64 {
        self.lists[order][mt.index()].len() as u64
    }

    /// Free frames on the lists.
    pub(crate) fn free(&self) -> u64 {
        self.free
    }

    /// Walks every block on list (order, mt); `false` if the list is
    /// corrupt (see `FreeList::for_each`).
    pub(crate) fn for_each_block(&self, map: &MemMap<'_>, order: usize, mt: Migratetype, f: impl FnMut(Pfn)) -> bool {
        self.lists[order][mt.index()].for_each(map, f)
    }

    /// Frees the block of `2^order` frames at `pfn` into the zone, merging
    /// with free buddies (`__free_one_page`). The caller owns the frames and
    /// has reset their descriptors (non-head frames typed `Free`).
    pub(crate) fn free_block(&mut self, zone: &Zone, map: &MemMap<'_>, mut pfn: Pfn, mut order: u32) {
        let mt = pageblock_migratetype(map, pfn);
        while order < MAX_ORDER {
            let buddy = Pfn(pfn.0 ^ (1 << order));
            if !zone.may_merge(map, pfn, buddy) {
                break;
            }
            let buddy_page = map.page_of(buddy);
            // O(1): the buddy is mergeable iff it heads a free block of the
            // same order. We hold the zone lock, which owns every Buddy-typed
            // frame of this zone, so the type cannot change under us.
            if buddy_page.page_type() != (PageType::Buddy { order: order as u8 }) {
                break;
            }
            let buddy_mt = pageblock_migratetype(map, buddy);
            self.del_block(map, buddy, order, buddy_mt);
            // Merging whole pageblocks: the merged block takes our type, in
            // every pageblock the buddy covers (Z.3).
            #[cfg(not(memdesc_mutant = "merge_keeps_buddy_pageblock_type"))]
            if order >= PAGEBLOCK_ORDER && buddy_mt != mt {
                set_pageblock_range(map, buddy, 1 << order, mt);
            }
            // Mutant: the buddy's pageblocks keep their old type, so the
            // merged block sits on one type's list over another's pageblock.
            #[cfg(memdesc_mutant = "merge_keeps_buddy_pageblock_type")]
            let _ = (buddy_mt, mt);
            buddy_page.set_type(PageType::Free);
            let merged = Pfn(pfn.0 & buddy.0);
            if merged != pfn {
                map.page_of(pfn).set_type(PageType::Free);
            }
            pfn = merged;
            order += 1;
        }
        self.add_block(map, pfn, order, pageblock_migratetype(map, pfn));
        zone.sync_free(self);
    }

    /// Takes a block of exactly `order` for `mt`, splitting a larger one and
    /// falling back to other migratetypes if needed (`__rmqueue`). Returns the
    /// block's pfn; its head descriptor still says `Buddy`, for the caller to
    /// retype.
    pub(crate) fn take_block(&mut self, zone: &Zone, map: &MemMap<'_>, order: u32, mt: Migratetype) -> Option<Pfn> {
        let pfn = self.take_smallest(map, order, mt).or_else(|| self.take_fallback(zone, map, order, mt))?;
        zone.sync_free(self);
        Some(pfn)
    }

    fn take_smallest(&mut self, map: &MemMap<'_>, order: u32, mt: Migratetype) -> Option<Pfn> {
        for current in order..=MAX_ORDER {
            if let Some(pfn) = self.lists[current as usize][mt.index()].pop(map) {
                self.take_off(map, pfn, current);
                self.expand(map, pfn, order, current, mt);
                return Some(pfn);
            }
        }
        None
    }

    /// Accounts for a block just popped and retypes its head, still under
    /// the zone lock: a CPU freeing its buddy checks for `Buddy { order }`
    /// under this lock, and must not merge with a block that left the list.
    fn take_off(&mut self, map: &MemMap<'_>, pfn: Pfn, order: u32) {
        self.free -= 1 << order;
        // Mutant: leave the head typed `Buddy` until allocation prep retypes
        // it after the unlock, so a concurrent free merges with a block that
        // is no longer listed (Linux clears PageBuddy under the lock for this).
        #[cfg(not(memdesc_mutant = "buddy_retype_after_unlock"))]
        map.page_of(pfn).set_type(PageType::Free);
    }

    /// Splits the block at `pfn` from `high` down to `low`, putting the upper
    /// halves back on `mt`'s lists.
    fn expand(&mut self, map: &MemMap<'_>, pfn: Pfn, low: u32, mut high: u32, mt: Migratetype) {
        while high > low {
            high -= 1;
            self.add_block(map, pfn.add(1 << high), high, mt);
        }
    }

    /// Borrows from another migratetype (`__rmqueue_claim`, then
    /// `__rmqueue_steal`): the largest fallback block first, claiming its
    /// pageblock when it is large or mostly free.
    fn take_fallback(&mut self, zone: &Zone, map: &MemMap<'_>, order: u32, mt: Migratetype) -> Option<Pfn> {
        for fallback in mt.fallbacks() {
            for current in (order..=MAX_ORDER).rev() {
                if self.lists[current as usize][fallback.index()].is_empty() {
                    continue;
                }
                let claim = current >= PAGEBLOCK_ORDER / 2 || mt != Migratetype::Movable;
                if claim {
                    if let Some(head) = self.lists[current as usize][fallback.index()].first(map) {
                        if self.try_claim_pageblocks(zone, map, head, current, fallback, mt) {
                            zone.stats.add(VmEvent::PageblockClaim, 1);
                            return self.take_smallest(map, order, mt);
                        }
                    }
                }
                // Steal just this block (Z.1); its remainder stays with its
                // type.
                let pfn = self.lists[current as usize][fallback.index()].pop(map)?;
                #[cfg(not(memdesc_mutant = "steal_without_retype"))]
                self.take_off(map, pfn, current);
                // Mutant: the stolen block leaves its list still typed
                // `Buddy`, so a free of its buddy merges with it (L.5's race,
                // on the fallback path).
                #[cfg(memdesc_mutant = "steal_without_retype")]
                {
                    self.free -= 1 << current;
                }
                self.expand(map, pfn, order, current, fallback);
                zone.stats.add(VmEvent::ExtfragSteal, 1);
                return Some(pfn);
            }
        }
        None
    }

    /// Changes the pageblock(s) of the free block at `pfn` to `to` if the
    /// block covers whole pageblocks or at least half of its pageblock is
    /// free, moving every free block inside to `to`'s lists.
    fn try_claim_pageblocks(
        &mut self,
        zone: &Zone,
        map: &MemMap<'_>,
        pfn: Pfn,
        order: u32,
        from: Migratetype,
        to: Migratetype,
    ) -> bool {
        let block_start = Pfn(pfn.0 & !(PAGEBLOCK_FRAMES - 1));
        let span = PAGEBLOCK_FRAMES.max(1 << order);
        if order < PAGEBLOCK_ORDER {
            let free = self.free_frames_in(zone, map, block_start, span);
            if free * 2 < PAGEBLOCK_FRAMES {
                return false;
            }
        }
        // Move every free block inside the span from `from` to `to`.
        let mut cursor = block_start;
        let end = block_start.add(span);
        while cursor < end {
            if !zone.spans(map, cursor) {
                cursor = cursor.add(1);
                continue;
            }
            match map.page_of(cursor).page_type() {
                PageType::Buddy { order: o } => {
                    let o = o as u32;
                    let block_mt = pageblock_migratetype(map, cursor);
                    if block_mt == from {
                        self.del_block(map, cursor, o, from);
                        self.add_block(map, cursor, o, to);
                    }
                    cursor = cursor.add(1 << o);
                }
                _ => cursor = cursor.add(1),
            }
        }
        // Z.2: the claimed pageblocks change type under the zone lock, with
        // the blocks just moved.
        #[cfg(not(memdesc_mutant = "claim_wrong_pageblock"))]
        set_pageblock_range(map, block_start, span, to);
        // Mutant: the claim retypes the neighbouring pageblock(s), leaving
        // the moved blocks on `to`'s lists over `from`'s pageblocks.
        #[cfg(memdesc_mutant = "claim_wrong_pageblock")]
        set_pageblock_range(map, Pfn(block_start.0 ^ span), span, to);
        true
    }

    fn free_frames_in(&self, zone: &Zone, map: &MemMap<'_>, start: Pfn, span: u64) -> u64 {
        let (mut cursor, end, mut free) = (start, start.add(span), 0);
        while cursor < end {
            if zone.spans(map, cursor) {
                if let PageType::Buddy { order } = map.page_of(cursor).page_type() {
                    free += 1 << order;
                    cursor = cursor.add(1 << order);
                    continue;
                }
            }
            cursor = cursor.add(1);
        }
        free
    }
}

/// Sets every pageblock of the `frames` frames at `pfn` (whole pageblocks)
/// to `mt`. Caller holds the zone lock.
fn set_pageblock_range(map: &MemMap<'_>, pfn: Pfn, frames: u64, mt: Migratetype) {
    let mut pb = pfn;
    while pb < pfn.add(frames) {
        set_pageblock_migratetype(map, pb, mt);
        pb = pb.add(PAGEBLOCK_FRAMES);
    }
}

/// Largest order such that a block at `pfn` is aligned and fits before `end`.
pub(crate) fn max_block_order(pfn: Pfn, end: Pfn) -> u32 {
    let mut order = MAX_ORDER;
    while order > 0 && (!pfn.is_aligned(order) || pfn.0 + (1 << order) > end.0) {
        order -= 1;
    }
    order
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zone")
            .field("id", &self.id)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("free_pages", &self.free_pages())
            .finish_non_exhaustive()
    }
}
