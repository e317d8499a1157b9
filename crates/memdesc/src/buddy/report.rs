//! Views of a node in Linux's vocabulary: buddyinfo, pagetypeinfo, vmstat,
//! and an audit that walks every descriptor.
//!
//! Views taken while other CPUs allocate are snapshots; [`Node::audit`] is
//! exact only when the node is quiescent (it reports what it sees).

use super::migratetype::{pageblock_migratetype, Migratetype, NR_MIGRATETYPES};
use super::vmstat::{VmEvent, NR_VM_EVENTS};
use super::zone::{Watermarks, ZoneId, NR_ORDERS};
use super::Node;
use crate::folio::{decode_compound, tail_word, PageType};
use crate::memmap::{Pfn, PAGEBLOCK_FRAMES};
use core::fmt;

/// One zone's free memory, by order and migratetype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneInfo {
    /// Which zone.
    pub id: ZoneId,
    /// First frame of the zone's boot span.
    pub start: Pfn,
    /// One past the last frame of the zone's boot span.
    pub end: Pfn,
    /// Frames given to the zone, at boot and by hot-adds.
    pub managed: u64,
    /// Frames of the sections hot-added to the zone, their metadata
    /// included (they lie past every boot span).
    pub hot_added: u64,
    /// Free frames on the buddy lists.
    pub free: u64,
    /// Free frames on the per-CPU lists.
    pub pcp: u64,
    /// The zone's watermarks.
    pub watermarks: Watermarks,
    /// Free blocks per order (`/proc/buddyinfo`).
    pub free_blocks: [u64; NR_ORDERS],
    /// Free blocks per migratetype and order (`/proc/pagetypeinfo`).
    pub free_by_type: [[u64; NR_ORDERS]; NR_MIGRATETYPES],
    /// Pageblocks per migratetype.
    pub pageblocks: [u64; NR_MIGRATETYPES],
}

/// Event counters summed over CPUs and zones, plus gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmStat {
    /// Free frames (buddy lists plus per-CPU lists).
    pub nr_free_pages: u64,
    /// Free frames on per-CPU lists.
    pub nr_free_pcp: u64,
    /// Frames given to the allocator, at boot and by hot-adds.
    pub nr_managed: u64,
    /// Frames quarantined by bad-page reports.
    pub nr_quarantined: u64,
    /// Frames of the sections hot-added ([`Node::hot_add`]), their
    /// metadata included: a gauge, not an event, so that the per-CPU
    /// event counters stay one cache line each.
    pub nr_hot_added: u64,
    /// Event counts, indexed by [`VmEvent`].
    pub events: [u64; NR_VM_EVENTS],
}

impl VmStat {
    /// The count of one event.
    pub fn event(&self, event: VmEvent) -> u64 {
        self.events[event as usize]
    }

    /// Every counter as (vmstat name, value), gauges first.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        [
            ("nr_free_pages", self.nr_free_pages),
            ("nr_free_pcp", self.nr_free_pcp),
            ("nr_managed", self.nr_managed),
            ("nr_quarantined", self.nr_quarantined),
            ("nr_hot_added", self.nr_hot_added),
        ]
        .into_iter()
        .chain(VmEvent::ALL.iter().map(|e| (e.name(), self.events[*e as usize])))
    }
}

/// What an audit found wrong with a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A free block's head is not aligned to its order.
    MisalignedBlock,
    /// A frame inside a free block is not typed free, or has a compound word.
    BadFreeTail,
    /// A free frame has a non-zero refcount.
    FreeWithRefcount,
    /// A free frame has a compound word, flags, a mapcount or a pincount:
    /// allocation relies on all four being 0.
    DirtyFreeFrame,
    /// A `Free` frame belongs to no free block.
    OrphanFree,
    /// A tail does not belong to the folio before it.
    OrphanTail,
    /// A tail has a non-zero refcount.
    TailWithRefcount,
    /// A free list's block is not typed as its list says, or lies outside
    /// its zone, or sits on another migratetype's list.
    BadListEntry,
    /// A zone's free count disagrees with its lists.
    FreeCountMismatch,
    /// A free list's links do not end where its length says (a cycle, or a
    /// link out of the map).
    CorruptList,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MisalignedBlock => "free block not aligned to its order",
            Self::BadFreeTail => "frame inside a free block not typed free",
            Self::FreeWithRefcount => "free frame with a refcount",
            Self::DirtyFreeFrame => "free frame with compound info, flags, mapcount or pincount",
            Self::OrphanFree => "free frame outside any free block",
            Self::OrphanTail => "tail outside its folio",
            Self::TailWithRefcount => "tail with a refcount",
            Self::BadListEntry => "free-list entry of the wrong type, zone or migratetype",
            Self::FreeCountMismatch => "zone free count disagrees with its lists",
            Self::CorruptList => "free list links do not match its length",
        })
    }
}

/// Frame counts by what they are, and the violations found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Free frames (buddy and per-CPU lists).
    pub free: u64,
    /// Frames in allocated folios (counted or frozen).
    pub allocated: u64,
    /// Allocated folios.
    pub folios: u64,
    /// Frames in holes, reserved or holding metadata.
    pub unmanaged: u64,
    /// Frames quarantined by bad-page reports.
    pub quarantined: u64,
    /// Descriptor invariants broken.
    pub violations: u64,
    /// The first violation seen.
    pub first_violation: Option<(Pfn, Violation)>,
}

impl Audit {
    fn violate(&mut self, pfn: Pfn, what: Violation) {
        self.violations += 1;
        if self.first_violation.is_none() {
            self.first_violation = Some((pfn, what));
        }
    }
}

/// Whether a free frame is in the state allocation relies on (P3.1 writes
/// only what differs from it).
/// The first frame of each pageblock a free block of `order` at `pfn`
/// covers (one, for blocks smaller than a pageblock).
fn pageblocks_of(pfn: Pfn, order: usize) -> impl Iterator<Item = Pfn> {
    (0..(1u64 << order).div_ceil(PAGEBLOCK_FRAMES)).map(move |i| pfn.add(i * PAGEBLOCK_FRAMES))
}

fn is_clean(page: &crate::memmap::Page) -> bool {
    // Relaxed: an audit of a quiescent node.
    let pinned = page.pincount.load(crate::sync::Ordering::Relaxed) != 0;
    page.compound_word() == 0 && page.flags() == crate::folio::PageFlags::EMPTY && page.map_count() == 0 && !pinned
}

impl<'a> Node<'a> {
    /// A snapshot of one zone's free memory.
    pub fn zone_info(&self, id: ZoneId) -> ZoneInfo {
        let zone = &self.zones[id as usize];
        let map = &self.map;
        let mut info = ZoneInfo {
            id,
            start: zone.start,
            end: zone.end,
            managed: zone.managed_pages(),
            hot_added: zone.hot_present_pages(),
            free: 0,
            pcp: 0,
            watermarks: zone.watermarks,
            free_blocks: [0; NR_ORDERS],
            free_by_type: [[0; NR_ORDERS]; NR_MIGRATETYPES],
            pageblocks: [0; NR_MIGRATETYPES],
        };
        {
            let guard = zone.area.lock();
            guard.with_ref(|area| {
                info.free = area.free();
                for order in 0..NR_ORDERS {
                    for mt in Migratetype::ALL {
                        let n = area.nr_blocks(order, mt);
                        info.free_by_type[mt.index()][order] += n;
                        info.free_blocks[order] += n;
                    }
                }
            });
        }
        for pcp in &self.pcp[..self.nr_cpus as usize] {
            info.pcp += pcp.count(id as usize) as u64;
        }
        let mut pb = Pfn(zone.start.0 & !(PAGEBLOCK_FRAMES - 1));
        while pb < zone.end && zone.start < zone.end {
            let at = pb.max(zone.start);
            info.pageblocks[pageblock_migratetype(map, at).index()] += 1;
            pb = pb.add(PAGEBLOCK_FRAMES);
        }
        for (section, tag) in map.online_sections() {
            if tag == id as u8 {
                for i in (0..map.section_frames()).step_by(PAGEBLOCK_FRAMES as usize) {
                    info.pageblocks[pageblock_migratetype(map, section.add(i)).index()] += 1;
                }
            }
        }
        info
    }

    /// Event counters and gauges, summed over CPUs and zones.
    pub fn vmstat(&self) -> VmStat {
        let mut events = [0; NR_VM_EVENTS];
        for stats in &self.stats[..self.nr_cpus as usize] {
            stats.sum_into(&mut events);
        }
        let mut stat =
            VmStat { nr_free_pages: 0, nr_free_pcp: 0, nr_managed: 0, nr_quarantined: 0, nr_hot_added: 0, events };
        for zone in &self.zones {
            zone.stats.sum_into(&mut stat.events);
            let info = self.zone_info(zone.id);
            stat.nr_free_pages += info.free + info.pcp;
            stat.nr_free_pcp += info.pcp;
            stat.nr_managed += zone.managed_pages();
            stat.nr_hot_added += zone.hot_present_pages();
        }
        stat.nr_quarantined = self.bad_pages().1;
        stat
    }

    /// Walks every descriptor and every free list and checks the allocator's
    /// invariants. Exact only while no other CPU allocates or frees.
    pub fn audit(&self) -> Audit {
        let map = &self.map;
        let mut audit = Audit::default();
        self.audit_frames(&mut audit, map.base_pfn(), map.end_pfn());
        for (section, _) in map.online_sections() {
            self.audit_frames(&mut audit, section, section.add(map.section_frames()));
        }
        self.audit_lists(&mut audit);
        audit
    }

    /// Checks the descriptors of `[start, end)`, a run of one descriptor
    /// array (the boot span or one section).
    fn audit_frames(&self, audit: &mut Audit, start: Pfn, end: Pfn) {
        let map = &self.map;
        let mut pfn = start;
        while pfn < end {
            let page = map.page_of(pfn);
            let ty = page.page_type();
            match ty {
                PageType::Buddy { order } | PageType::Pcp { order } => {
                    let nr = 1u64 << order;
                    if !pfn.is_aligned(order as u32) {
                        audit.violate(pfn, Violation::MisalignedBlock);
                    }
                    if page.ref_count() != 0 {
                        audit.violate(pfn, Violation::FreeWithRefcount);
                    }
                    if !is_clean(page) {
                        audit.violate(pfn, Violation::DirtyFreeFrame);
                    }
                    for i in 1..nr.min(end.0 - pfn.0) {
                        let p = map.page_of(pfn.add(i));
                        if p.page_type() != PageType::Free {
                            audit.violate(pfn.add(i), Violation::BadFreeTail);
                        }
                        if p.ref_count() != 0 {
                            audit.violate(pfn.add(i), Violation::FreeWithRefcount);
                        }
                        if !is_clean(p) {
                            audit.violate(pfn.add(i), Violation::DirtyFreeFrame);
                        }
                    }
                    audit.free += nr;
                    pfn = pfn.add(nr);
                }
                PageType::Free => {
                    audit.violate(pfn, Violation::OrphanFree);
                    pfn = pfn.add(1);
                }
                PageType::Tail => {
                    audit.violate(pfn, Violation::OrphanTail);
                    pfn = pfn.add(1);
                }
                PageType::Quarantined => {
                    audit.quarantined += 1;
                    pfn = pfn.add(1);
                }
                PageType::Uninit | PageType::Hole | PageType::Reserved | PageType::Metadata => {
                    audit.unmanaged += 1;
                    pfn = pfn.add(1);
                }
                _ => {
                    let order = decode_compound(pfn, page.compound_word()).1.unwrap_or_default();
                    let nr = order.nr_pages().min(end.0 - pfn.0);
                    let tail = tail_word(pfn);
                    for i in 1..nr {
                        let p = map.page_of(pfn.add(i));
                        if p.page_type() != PageType::Tail || p.compound_word() != tail {
                            audit.violate(pfn.add(i), Violation::OrphanTail);
                        }
                        if p.ref_count() != 0 {
                            audit.violate(pfn.add(i), Violation::TailWithRefcount);
                        }
                    }
                    audit.allocated += nr;
                    audit.folios += 1;
                    pfn = pfn.add(nr);
                }
            }
        }
    }

    /// Checks every zone's and CPU's free lists against the descriptors.
    fn audit_lists(&self, audit: &mut Audit) {
        let map = &self.map;
        for zone in &self.zones {
            let guard = zone.area.lock();
            guard.with_ref(|area| {
                let mut listed = 0;
                for order in 0..NR_ORDERS {
                    for mt in Migratetype::ALL {
                        let intact = area.for_each_block(map, order, mt, |block| {
                            listed += 1u64 << order;
                            let ok = zone.spans(map, block)
                                && map.page_of(block).page_type() == (PageType::Buddy { order: order as u8 })
                                && pageblocks_of(block, order).all(|pb| pageblock_migratetype(map, pb) == mt);
                            if !ok {
                                audit.violate(block, Violation::BadListEntry);
                            }
                        });
                        if !intact {
                            audit.violate(zone.start, Violation::CorruptList);
                        }
                    }
                }
                if listed != area.free() || area.free() != zone.free_pages() {
                    audit.violate(zone.start, Violation::FreeCountMismatch);
                }
            });
        }
        // The calling CPU's lists only: every other CPU's belong to its
        // owner (PCP.1), so they are audited on that CPU, or after a drain.
        self.with_local_cpu(|pcp, cpu| {
            pcp.with_locked(&self.zones, map, &self.stats[cpu], |lists| {
                for (zone, lists) in lists.iter().enumerate() {
                    let intact = super::pcp::Pcp::for_each_block(lists, map, |order, _mt, block| {
                        if map.page_of(block).page_type() != (PageType::Pcp { order: order as u8 }) {
                            audit.violate(block, Violation::BadListEntry);
                        }
                    });
                    if !intact {
                        audit.violate(self.zones[zone].start, Violation::CorruptList);
                    }
                }
            })
        });
    }
}
