//! Per-CPU page lists (pcp): small free blocks cached per CPU and zone.
//!
//! Orders `0..=PCP_MAX_ORDER` are served from a CPU's own lists without the
//! zone lock: an allocation pops a block, a free pushes one. An empty list is
//! refilled with `batch` frames in one zone-lock hold; a list past `high`
//! frames gives `batch` back in one hold. Each list is protected by its own
//! lock, uncontended except when another CPU drains it (before failing an
//! allocation, or at teardown), which is why it is a lock and not bare
//! per-CPU data. Lock order: a pcp lock, then the zone lock.
//!
//! Lists are singly linked through owner word 0 of each block's head (pfn
//! offsets from the map base), so a push or pop touches one descriptor.

use super::migratetype::{pageblock_migratetype, Migratetype, NR_MIGRATETYPES};
use super::vmstat::{VmCounters, VmEvent};
use super::zone::Zone;
use crate::folio::PageType;
use crate::memmap::{MemMap, Pfn};
use crate::sync::SpinLock;

/// The largest order cached per CPU (`PAGE_ALLOC_COSTLY_ORDER`).
pub const PCP_MAX_ORDER: u32 = 3;
const NR_PCP_ORDERS: usize = PCP_MAX_ORDER as usize + 1;
const NIL: u32 = u32::MAX;
const NEXT: usize = 0;

/// Per-CPU list sizing, in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcpConfig {
    /// Whether per-CPU lists are used at all (off: every request takes the
    /// zone lock).
    pub enabled: bool,
    /// Frames moved per refill or bulk free.
    pub batch: u32,
    /// A CPU's list gives back `batch` frames once it holds more than this.
    pub high: u32,
}

impl Default for PcpConfig {
    fn default() -> Self {
        Self { enabled: true, batch: 63, high: 6 * 63 }
    }
}

/// One CPU's lists for one zone: what the pcp lock protects.
pub(crate) struct PcpLists {
    heads: [[u32; NR_PCP_ORDERS]; NR_MIGRATETYPES],
    /// Frames on the lists.
    count: u32,
}

/// One CPU's cache for one zone. Aligned to two cache lines so neighbouring
/// CPUs never share one (the adjacent-line prefetcher pairs lines).
#[repr(align(128))]
pub(crate) struct Pcp {
    lists: SpinLock<PcpLists>,
}

impl Pcp {
    pub(crate) fn new() -> Self {
        Self { lists: SpinLock::new(PcpLists { heads: [[NIL; NR_PCP_ORDERS]; NR_MIGRATETYPES], count: 0 }) }
    }

    /// Frames cached, as a snapshot taken under the lock.
    pub(crate) fn count(&self) -> u32 {
        self.lists.lock().with_ref(|l| l.count)
    }

    /// Pops a block of `order` for `mt`, refilling from `zone` when empty.
    /// Counts on `stats`, the running CPU's counters.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn alloc(
        &self,
        zone: &Zone,
        map: &MemMap<'_>,
        config: &PcpConfig,
        order: u32,
        mt: Migratetype,
        high_priority: bool,
        stats: &VmCounters,
    ) -> Option<Pfn> {
        let mut guard = self.lists.lock();
        guard.with(|lists| {
            if let Some(pfn) = lists.pop(map, order, mt) {
                stats.add(VmEvent::PcpAllocHit, 1);
                return Some(pfn);
            }
            // Refill: up to `batch` frames in one zone-lock hold, stopping at
            // the watermark.
            let nr = 1u64 << order;
            let blocks = (config.batch as u64 >> order).max(1);
            let mut area = zone.area.lock();
            area.with(|area| {
                for _ in 0..blocks {
                    if !zone.watermark_ok(nr, high_priority) {
                        break;
                    }
                    let Some(pfn) = area.take_block(zone, map, order, mt) else { break };
                    lists.push(map, pfn, order, mt);
                }
            });
            drop(area);
            stats.add(VmEvent::PcpRefill, 1);
            lists.pop(map, order, mt)
        })
    }

    /// Pushes a freed block; gives `batch` frames back to `zone` past `high`.
    pub(crate) fn free(
        &self,
        zone: &Zone,
        map: &MemMap<'_>,
        config: &PcpConfig,
        pfn: Pfn,
        order: u32,
        stats: &VmCounters,
    ) {
        let mt = pageblock_migratetype(map, pfn);
        let mut guard = self.lists.lock();
        guard.with(|lists| {
            lists.push(map, pfn, order, mt);
            if lists.count > config.high {
                stats.add(VmEvent::PcpFreeBulk, 1);
                lists.give_back(zone, map, config.batch);
            }
        });
    }

    /// Gives every cached block back to `zone`; returns the frames moved.
    pub(crate) fn drain(&self, zone: &Zone, map: &MemMap<'_>) -> u32 {
        let drain = |lists: &mut PcpLists| {
            let count = lists.count;
            lists.give_back(zone, map, u32::MAX);
            count
        };
        // PCP.3: the owning CPU's lock, even when draining another CPU's
        // lists, which that CPU may be using right now.
        #[cfg(not(memdesc_mutant = "drain_without_pcp_lock"))]
        return self.lists.lock().with(drain);
        // Mutant: a remote drain that trusts the owner to be idle.
        #[cfg(memdesc_mutant = "drain_without_pcp_lock")]
        // SAFETY: none: deliberately racy, for loom to report.
        return unsafe { self.lists.with_unlocked(drain) };
    }

    /// Calls `f(order, mt, pfn)` for every cached block (audits). Returns
    /// `false` if the lists hold more blocks than `count` allows (a corrupt
    /// or cyclic list), stopping there instead of looping forever.
    pub(crate) fn for_each_block(&self, map: &MemMap<'_>, mut f: impl FnMut(u32, Migratetype, Pfn)) -> bool {
        let guard = self.lists.lock();
        guard.with_ref(|lists| {
            let mut budget = lists.count;
            for mt in Migratetype::ALL {
                for order in 0..NR_PCP_ORDERS {
                    let mut cursor = lists.heads[mt.index()][order];
                    while cursor != NIL {
                        let pfn = map.base_pfn().add(cursor as u64);
                        if budget < 1 << order || map.page(pfn).is_none() {
                            return false;
                        }
                        budget -= 1 << order;
                        // SAFETY: we hold the pcp lock (the guard), which owns
                        // every block on these lists and their links.
                        cursor = unsafe { map.page_of(pfn).owner_word(NEXT) } as u32;
                        f(order as u32, mt, pfn);
                    }
                }
            }
            budget == 0
        })
    }
}

impl PcpLists {
    fn push(&mut self, map: &MemMap<'_>, pfn: Pfn, order: u32, mt: Migratetype) {
        let page = map.page_of(pfn);
        page.set_type(PageType::Pcp { order: order as u8 });
        let head = &mut self.heads[mt.index()][order as usize];
        // SAFETY: duty 1 of set_owner_word: the block was just freed or taken
        // from the zone by us, and the pcp lock (`&mut self`) owns it now.
        unsafe { page.set_owner_word(NEXT, *head as u64) };
        *head = (pfn.0 - map.base_pfn().0) as u32;
        self.count += 1 << order;
    }

    fn pop(&mut self, map: &MemMap<'_>, order: u32, mt: Migratetype) -> Option<Pfn> {
        let head = &mut self.heads[mt.index()][order as usize];
        if *head == NIL {
            return None;
        }
        let pfn = map.base_pfn().add(*head as u64);
        // SAFETY: the block is on our list; the pcp lock (`&mut self`) owns
        // its owner words.
        *head = unsafe { map.page_of(pfn).owner_word(NEXT) } as u32;
        self.count -= 1 << order;
        Some(pfn)
    }

    /// Frees at least `frames` frames (or all) to the zone in one lock hold.
    fn give_back(&mut self, zone: &Zone, map: &MemMap<'_>, frames: u32) {
        let mut freed = 0u32;
        let mut area = zone.area.lock();
        area.with(|area| {
            'lists: for order in (0..NR_PCP_ORDERS as u32).rev() {
                for mt in Migratetype::ALL {
                    while let Some(pfn) = self.pop(map, order, mt) {
                        area.free_block(zone, map, pfn, order);
                        freed += 1 << order;
                        if freed >= frames {
                            break 'lists;
                        }
                    }
                }
            }
        });
    }
}
