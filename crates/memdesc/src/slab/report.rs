//! Reports: slabinfo lines, event counters (vmstat style), the bad-object
//! log and the audit.

use super::{BadObject, SlabAllocator, MAX_CACHES, SLAB_LARGE, SLAB_UNLISTED};
use crate::folio::PageType;
use crate::memmap::Pfn;

macro_rules! slab_events {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A counted slab event.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum SlabEvent { $($(#[$doc])* $variant,)* }

        impl SlabEvent {
            /// Every event, in index order.
            pub const ALL: [SlabEvent; NR_SLAB_EVENTS] = [$(SlabEvent::$variant,)*];

            /// The vmstat-style name.
            pub const fn name(self) -> &'static str {
                match self { $(SlabEvent::$variant => $name,)* }
            }
        }
    };
}

slab_events! {
    /// Objects taken from slabs (by the sheaves' refills or debug caches).
    SlabAlloc => "slab_alloc",
    /// Objects given back to slabs.
    SlabFree => "slab_free",
    /// Slabs taken from the buddy allocator.
    SlabsAllocated => "slabs_allocated",
    /// Slabs given back (at once, or queued for a grace period).
    SlabsFreed => "slabs_freed",
    /// TYPESAFE_BY_RCU slab frames freed after their grace period.
    SlabsRcuFreed => "slabs_rcu_freed",
    /// Pointers queued by kfree_rcu.
    KfreeRcu => "kfree_rcu",
    /// kfree_rcu batches queued for a grace period.
    KfreeRcuBatches => "kfree_rcu_batches",
    /// Large kmalloc folios allocated.
    LargeAlloc => "kmalloc_large_alloc",
    /// Large kmalloc folios freed.
    LargeFree => "kmalloc_large_free",
    /// Debug reports (bad objects, double frees).
    DebugReports => "slab_debug_reports",
}

/// How many slab events there are.
pub const NR_SLAB_EVENTS: usize = 10;

/// Bad-object reports kept (the most recent).
pub const BAD_OBJECT_LOG: usize = 8;

/// The last bad-object reports, a ring.
pub(crate) struct BadLog {
    entries: [Option<BadObject>; BAD_OBJECT_LOG],
    next: usize,
}

impl BadLog {
    pub(crate) const fn new() -> Self {
        Self { entries: [None; BAD_OBJECT_LOG], next: 0 }
    }

    pub(crate) fn push(&mut self, report: BadObject) {
        self.entries[self.next % BAD_OBJECT_LOG] = Some(report);
        self.next += 1;
    }

    /// Oldest first.
    pub(crate) fn snapshot(&self) -> [Option<BadObject>; BAD_OBJECT_LOG] {
        let mut out = [None; BAD_OBJECT_LOG];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.entries[(self.next + i) % BAD_OBJECT_LOG];
        }
        out
    }
}

/// One slabinfo line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabInfo {
    /// The cache's name.
    pub name: &'static str,
    /// The cache id.
    pub id: u16,
    /// Objects in use by users (handed out of slabs, minus those cached in
    /// per-CPU sheaves, minus quarantined ones).
    pub active_objs: u64,
    /// Objects in the cache's slabs.
    pub total_objs: u64,
    /// The object size.
    pub obj_size: usize,
    /// Objects per slab.
    pub objs_per_slab: u16,
    /// Frames per slab.
    pub pages_per_slab: u64,
    /// Slabs.
    pub slabs: u64,
    /// Objects cached in per-CPU sheaves.
    pub cached_objs: u64,
    /// Objects quarantined by debug checks.
    pub quarantined_objs: u64,
}

impl core::fmt::Display for SlabInfo {
    /// `name active total objsize objperslab pagesperslab`, as
    /// /proc/slabinfo begins.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:<16} {:>8} {:>8} {:>6} {:>4} {:>2}",
            self.name, self.active_objs, self.total_objs, self.obj_size, self.objs_per_slab, self.pages_per_slab
        )
    }
}

/// What [`SlabAllocator::audit`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlabAudit {
    /// Caches.
    pub caches: u64,
    /// Slabs on the caches' lists.
    pub slabs: u64,
    /// Frames of those slabs.
    pub slab_frames: u64,
    /// Frames typed as a listed slab in the memory map (must equal
    /// `slab_frames` when no slab is being created or discarded).
    pub frames_owned: u64,
    /// Frames of slabs off the lists (on their way back through RCU).
    pub unlisted_frames: u64,
    /// Frames of large kmalloc allocations.
    pub large_frames: u64,
    /// Broken invariants: a slab's in-use count against its freelist, list
    /// membership, list lengths, the caches' totals, frames owned against
    /// slabs counted.
    pub violations: u64,
}

impl<'a> SlabAllocator<'a> {
    /// One slabinfo line per cache, in id order (racy while CPUs run).
    pub fn slabinfo(&self) -> impl Iterator<Item = SlabInfo> + use<'_, 'a> {
        let core = self.core();
        (0..MAX_CACHES).filter_map(move |id| {
            let cache = core.cache(id)?;
            let (slabs, inuse, quarantined) = cache.lists.lock().with(|l| (l.slabs, l.inuse, l.quarantined));
            let cached = cache.sheaves.cached() as u64;
            let objects = u64::from(cache.layout.objects);
            Some(SlabInfo {
                name: cache.config.name,
                id: cache.id,
                active_objs: inuse.saturating_sub(cached + quarantined),
                total_objs: slabs * objects,
                obj_size: cache.layout.size,
                objs_per_slab: cache.layout.objects,
                pages_per_slab: cache.layout.order.nr_pages(),
                slabs,
                cached_objs: cached,
                quarantined_objs: quarantined,
            })
        })
    }

    /// Checks every cache's slabs (under each list lock) and the memory
    /// map's slab frames against them. Meaningful when no allocation or
    /// free runs concurrently.
    pub fn audit(&self) -> SlabAudit {
        let core = self.core();
        let mut audit = SlabAudit::default();
        for id in 0..MAX_CACHES {
            let Some(cache) = core.cache(id) else { continue };
            let (slabs, frames, violations) = cache.audit();
            audit.caches += 1;
            audit.slabs += slabs;
            audit.slab_frames += frames;
            audit.violations += violations;
        }
        let map = self.node.memmap();
        // The boot span, then every hot-added section online.
        let sections = map.online_sections().map(|(start, _)| (start, start.add(map.section_frames())));
        for (start, end) in core::iter::once((map.base_pfn(), map.end_pfn())).chain(sections) {
            self.audit_frames(&mut audit, start, end);
        }
        if audit.frames_owned != audit.slab_frames {
            audit.violations += 1;
        }
        audit
    }

    /// Counts the slab frames of `[start, end)` by the list they belong to.
    fn audit_frames(&self, audit: &mut SlabAudit, start: Pfn, end: Pfn) {
        let map = self.node.memmap();
        let mut pfn = start;
        while pfn < end {
            let mut step = 1;
            if let (Some(page), Some((head, Some(order)))) = (map.page(pfn), map.compound_head(pfn)) {
                if head == pfn {
                    if let PageType::Slab { cache } = page.page_type() {
                        let frames = order.nr_pages();
                        match cache {
                            SLAB_LARGE => audit.large_frames += frames,
                            SLAB_UNLISTED => audit.unlisted_frames += frames,
                            _ => audit.frames_owned += frames,
                        }
                        step = frames;
                    }
                }
            }
            pfn = Pfn(pfn.0 + step);
        }
    }
}
