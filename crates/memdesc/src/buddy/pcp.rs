//! Per-CPU page lists (pcp): small free blocks cached per CPU and zone,
//! reached with no locked instruction.
//!
//! Orders `0..=PCP_MAX_ORDER` are served from the running CPU's own lists:
//! an allocation pops a block, a free pushes one. An empty list is refilled
//! with `batch` frames in one zone-lock hold; a list past `high` frames gives
//! `batch` back in one hold.
//!
//! A CPU's lists are entered like the slab's sheaves: inside
//! [`Platform::local_enter`](crate::platform::Platform::local_enter)'s
//! section and under the CPU's *local trylock*, a word only that CPU touches
//! (a load and a store, never a read-modify-write). A thread with no CPU, or
//! a re-entry on a CPU whose local lock is held, takes the *fallback* path:
//! the zone's own locked free lists. Nobody else ever touches a CPU's lists:
//! a remote drain ([`Node::drain_all`](super::Node::drain_all)) *asks* the
//! owner through the CPU's request word, which the owner checks at every
//! entry and answers by draining its own lists and acknowledging. An owner
//! that never enters again (asleep, or gone without
//! [`Node::drain_local`](super::Node::drain_local)) does not answer: the
//! drain waits a bounded number of `relax` rounds and counts it.
//! docs/PROTOCOLS.md, section PCP, numbers the steps.
//!
//! Lists are singly linked through owner word 0 of each block's head (pfn
//! offsets from the map base), so a push or pop touches one descriptor.

use super::migratetype::{pageblock_migratetype, Migratetype, NR_MIGRATETYPES};
use super::vmstat::{VmCounters, VmEvent};
use super::zone::{Zone, NR_ZONES};
use crate::folio::PageType;
use crate::memmap::{MemMap, Pfn};
use crate::sync::{compiler_fence, AtomicU32, Ordering, UnsafeCell};

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

/// One CPU's lists for one zone.
pub(crate) struct PcpLists {
    heads: [[u32; NR_PCP_ORDERS]; NR_MIGRATETYPES],
    /// Frames on the lists.
    count: u32,
}

/// One CPU's lists for every zone, on cache lines of their own (aligned to
/// two: the adjacent-line prefetcher pairs lines), with the words that guard
/// them.
#[repr(align(128))]
pub(crate) struct Pcp {
    /// The local trylock: 1 while this CPU is inside its lists (PCP.2).
    /// Only this CPU (and what interrupts it) touches it.
    local_lock: AtomicU32,
    /// Drain requests: a generation every requester increments (PCP.6).
    drain_req: AtomicU32,
    /// The last generation this CPU answered; written only by its owner
    /// (PCP.7).
    drain_ack: AtomicU32,
    /// Frames on each zone's lists, stored by the owner after each change
    /// (statistics, and the drainer's test for an empty CPU, PCP.8).
    counts: [AtomicU32; NR_ZONES],
    lists: UnsafeCell<[PcpLists; NR_ZONES]>,
}

// SAFETY: `lists` is reached only by the thread running as this CPU, inside
// its `local_enter` section and under the local lock (PCP.1–2); the other
// fields are atomics. Soundness rests on `Platform::local_enter`'s contract
// (one thread per CPU), as the slab's sheaves do.
unsafe impl Sync for Pcp {}

impl PcpLists {
    const EMPTY: PcpLists = PcpLists { heads: [[NIL; NR_PCP_ORDERS]; NR_MIGRATETYPES], count: 0 };
}

impl Pcp {
    pub(crate) fn new() -> Self {
        Self {
            local_lock: AtomicU32::new(0),
            drain_req: AtomicU32::new(0),
            drain_ack: AtomicU32::new(0),
            counts: core::array::from_fn(|_| AtomicU32::new(0)),
            lists: UnsafeCell::new([PcpLists::EMPTY; NR_ZONES]),
        }
    }

    /// Frames cached on `zone`'s lists, as the owner last stored it.
    pub(crate) fn count(&self, zone: usize) -> u32 {
        // Relaxed: a statistic, read racily.
        self.counts[zone].load(Ordering::Relaxed)
    }

    /// PCP.2: takes the local lock unless this CPU already holds it (a
    /// re-entry), which then takes the fallback path.
    #[inline(always)]
    pub(crate) fn try_lock_local(&self) -> bool {
        // Relaxed: only this CPU reads or writes the word (local_enter's
        // contract); a re-entry on this CPU runs in program order with us.
        if self.local_lock.load(Ordering::Relaxed) != 0 {
            return false;
        }
        // Relaxed: as above; no other CPU ever reads this word.
        self.local_lock.store(1, Ordering::Relaxed);
        // Acquire: a signal fence, pairs with the Release one in
        // unlock_local: the compiler keeps our list accesses after the lock
        // word is set, where an interrupt on this CPU would see it held.
        compiler_fence(Ordering::Acquire);
        true
    }

    /// PCP.5: releases the local lock.
    #[inline(always)]
    pub(crate) fn unlock_local(&self) {
        // Release: a signal fence, pairs with the Acquire one in
        // try_lock_local: our list accesses stay before the unlock.
        compiler_fence(Ordering::Release);
        // Relaxed: only this CPU reads the word.
        self.local_lock.store(0, Ordering::Relaxed);
    }

    /// Runs `f` on this CPU's lists; the caller holds the local lock (PCP.2)
    /// inside the owner's `local_enter` section. Answers a pending drain
    /// request first (PCP.7) and stores the counts afterwards (PCP.4).
    #[inline(always)]
    pub(crate) fn with_locked<R>(
        &self,
        zones: &[Zone; NR_ZONES],
        map: &MemMap<'_>,
        stats: &VmCounters,
        f: impl FnOnce(&mut [PcpLists; NR_ZONES]) -> R,
    ) -> R {
        // Inlined whatever the call sites: the closure is the pcp fast path.
        self.lists.with_mut(
            #[inline(always)]
            |lists| {
                // SAFETY: the caller holds this CPU's local lock inside its
                // local_enter section (PCP.1–2): only this thread reaches the
                // lists, and no other reference to them is live (remote drains
                // only ask, PCP.6).
                let lists = unsafe { &mut *lists };
                // PCP.3. Mutant: the owner never looks at the request.
                #[cfg(not(memdesc_mutant = "pcp_owner_ignores_drain_request"))]
                {
                    // Relaxed: the request carries no data (the frames it asks
                    // for are our own); the answer's ordering is PCP.7's ack.
                    let req = self.drain_req.load(Ordering::Relaxed);
                    // Relaxed: only this CPU writes the ack word.
                    if req != self.drain_ack.load(Ordering::Relaxed) {
                        self.answer(lists, zones, map, stats, req);
                    }
                }
                let r = f(lists);
                self.store_counts(lists);
                r
            },
        )
    }

    /// PCP.7: gives every cached block back to the zones and acknowledges
    /// request `req`, under the local lock.
    #[cold]
    #[inline(never)]
    fn answer(
        &self,
        lists: &mut [PcpLists; NR_ZONES],
        zones: &[Zone; NR_ZONES],
        map: &MemMap<'_>,
        stats: &VmCounters,
        req: u32,
    ) {
        for (zone, lists) in zones.iter().zip(lists.iter_mut()) {
            lists.give_back(zone, map, u32::MAX);
        }
        self.store_counts(lists);
        stats.add(VmEvent::PcpDrainAnswered, 1);
        // Release: our give-back (its zone-lock holds) happens before the
        // requester's retry, whose zone-lock acquisition thus comes after
        // our release of it; pairs with the Acquire load in `answered`.
        self.drain_ack.store(req, Ordering::Release);
    }

    /// PCP.4's count stores.
    #[inline(always)]
    fn store_counts(&self, lists: &[PcpLists; NR_ZONES]) {
        for (count, lists) in self.counts.iter().zip(lists) {
            // Release: pairs with the Acquire load in is_empty (PCP.8): a
            // drainer that reads 0 sees the give-back that emptied the
            // lists. A plain store on x86-64.
            count.store(lists.count, Ordering::Release);
        }
    }

    /// PCP.9, the owner's side: gives every cached block back (the lists are
    /// the caller's, under the local lock) and answers any pending request.
    /// Returns the frames moved.
    pub(crate) fn drain_own(&self, zones: &[Zone; NR_ZONES], map: &MemMap<'_>, stats: &VmCounters) -> u64 {
        self.with_locked(zones, map, stats, |lists| {
            let mut moved = 0u64;
            for (zone, lists) in zones.iter().zip(lists.iter_mut()) {
                moved += u64::from(lists.count);
                lists.give_back(zone, map, u32::MAX);
            }
            // The zero counts settle any later request (PCP.8) for as long
            // as this CPU caches nothing: a thread that ends here is never
            // waited for.
            self.store_counts(lists);
            // Relaxed: as in with_locked (PCP.3).
            let req = self.drain_req.load(Ordering::Relaxed);
            // Relaxed: only this CPU writes the ack word.
            if req != self.drain_ack.load(Ordering::Relaxed) {
                // Release: as in `answer`.
                self.drain_ack.store(req, Ordering::Release);
            }
            moved
        })
    }

    /// PCP.6: posts a drain request; returns its generation.
    pub(crate) fn request(&self) -> u32 {
        // Relaxed: the request carries no data; the requester polls the
        // answer (PCP.8), and the owner sees the request at an entry.
        self.drain_req.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// The mutant `remote_drain_takes_owner_lists`: another CPU's lists
    /// given back without asking, while their owner may be inside them.
    #[cfg(memdesc_mutant = "remote_drain_takes_owner_lists")]
    pub(crate) fn drain_unasked(&self, zones: &[Zone; NR_ZONES], map: &MemMap<'_>) -> u64 {
        self.lists.with_mut(|lists| {
            // SAFETY: none: deliberately racy, for loom to report.
            let lists = unsafe { &mut *lists };
            let mut moved = 0u64;
            for (zone, lists) in zones.iter().zip(lists.iter_mut()) {
                moved += u64::from(lists.count);
                lists.give_back(zone, map, u32::MAX);
            }
            self.store_counts(lists);
            moved
        })
    }

    /// Whether a drain request is pending (PCP.3's test, without entering):
    /// the owner's cheap poll, and the models' owner waiting for one.
    #[inline(always)]
    pub(crate) fn drain_requested(&self) -> bool {
        // Relaxed: a poll; the entry that answers rereads the word (PCP.3).
        self.drain_req.load(Ordering::Relaxed) != self.drain_ack.load(Ordering::Relaxed)
    }

    /// PCP.8: whether request `generation` is settled: answered, or the
    /// lists were seen empty.
    pub(crate) fn answered(&self, generation: u32) -> bool {
        // Acquire: pairs with the Release ack of `answer`/`drain_own`.
        let ack = self.drain_ack.load(Ordering::Acquire);
        // Wrapping comparison: the ack is at or past our generation.
        if ack.wrapping_sub(generation) as i32 >= 0 {
            return true;
        }
        // Acquire: pairs with store_counts' Release.
        self.counts.iter().all(|count| count.load(Ordering::Acquire) == 0)
    }

    /// Calls `f(order, mt, pfn)` for every cached block of `zone` (audits);
    /// the caller holds the local lock. Returns `false` if the lists hold
    /// more blocks than `count` allows (a corrupt or cyclic list), stopping
    /// there instead of looping forever.
    pub(crate) fn for_each_block(lists: &PcpLists, map: &MemMap<'_>, mut f: impl FnMut(u32, Migratetype, Pfn)) -> bool {
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
                    // SAFETY: the caller holds the local lock, which owns
                    // every block on these lists and their links.
                    cursor = unsafe { map.page_of(pfn).owner_word(NEXT) } as u32;
                    f(order as u32, mt, pfn);
                }
            }
        }
        budget == 0
    }
}

impl PcpLists {
    /// PCP.4: pops a block of `order` for `mt`, refilling from `zone` when
    /// empty. Counts on `stats`, the running CPU's counters.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn alloc(
        &mut self,
        zone: &Zone,
        map: &MemMap<'_>,
        config: &PcpConfig,
        order: u32,
        mt: Migratetype,
        high_priority: bool,
        stats: &VmCounters,
    ) -> Option<Pfn> {
        if let Some(pfn) = self.pop(map, order, mt) {
            stats.add(VmEvent::PcpAllocHit, 1);
            return Some(pfn);
        }
        self.refill(zone, map, config, order, mt, high_priority, stats)
    }

    /// Refill: up to `batch` frames in one zone-lock hold, stopping at the
    /// watermark.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn refill(
        &mut self,
        zone: &Zone,
        map: &MemMap<'_>,
        config: &PcpConfig,
        order: u32,
        mt: Migratetype,
        high_priority: bool,
        stats: &VmCounters,
    ) -> Option<Pfn> {
        let nr = 1u64 << order;
        let blocks = (config.batch as u64 >> order).max(1);
        let mut area = zone.area.lock();
        area.with(|area| {
            for _ in 0..blocks {
                if !zone.watermark_ok(nr, high_priority) {
                    break;
                }
                let Some(pfn) = area.take_block(zone, map, order, mt) else { break };
                self.push(map, pfn, order, mt);
            }
        });
        drop(area);
        stats.add(VmEvent::PcpRefill, 1);
        self.pop(map, order, mt)
    }

    /// PCP.4: pushes a freed block; gives `batch` frames back to `zone`
    /// past `high`.
    #[inline(always)]
    pub(crate) fn free(
        &mut self,
        zone: &Zone,
        map: &MemMap<'_>,
        config: &PcpConfig,
        pfn: Pfn,
        order: u32,
        stats: &VmCounters,
    ) {
        let mt = pageblock_migratetype(map, pfn);
        self.push(map, pfn, order, mt);
        if self.count > config.high {
            self.free_bulk(zone, map, config, stats);
        }
    }

    /// PCP.4's give-back past `high`: `batch` frames to `zone`.
    #[cold]
    #[inline(never)]
    fn free_bulk(&mut self, zone: &Zone, map: &MemMap<'_>, config: &PcpConfig, stats: &VmCounters) {
        stats.add(VmEvent::PcpFreeBulk, 1);
        self.give_back(zone, map, config.batch);
    }

    #[inline(always)]
    fn push(&mut self, map: &MemMap<'_>, pfn: Pfn, order: u32, mt: Migratetype) {
        let page = map.page_of(pfn);
        page.set_type(PageType::Pcp { order: order as u8 });
        let head = &mut self.heads[mt.index()][order as usize];
        // SAFETY: duty 1 of set_owner_word: the block was just freed or taken
        // from the zone by us, and the local lock (`&mut self`) owns it now.
        unsafe { page.set_owner_word(NEXT, *head as u64) };
        *head = (pfn.0 - map.base_pfn().0) as u32;
        self.count += 1 << order;
    }

    /// PCP.4: pops a block of `order` for `mt`; `None` when the list is
    /// empty.
    #[inline(always)]
    pub(crate) fn pop(&mut self, map: &MemMap<'_>, order: u32, mt: Migratetype) -> Option<Pfn> {
        let head = &mut self.heads[mt.index()][order as usize];
        if *head == NIL {
            return None;
        }
        let pfn = map.base_pfn().add(*head as u64);
        // SAFETY: the block is on our list; the local lock (`&mut self`)
        // owns its owner words.
        *head = unsafe { map.page_of(pfn).owner_word(NEXT) } as u32;
        self.count -= 1 << order;
        Some(pfn)
    }

    /// Frees at least `frames` frames (or all) to the zone in one lock hold.
    fn give_back(&mut self, zone: &Zone, map: &MemMap<'_>, frames: u32) {
        if self.count == 0 {
            return;
        }
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
