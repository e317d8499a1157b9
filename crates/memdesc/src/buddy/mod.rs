//! The page allocator: zones of buddy free lists, pageblock migratetypes,
//! per-CPU lists, watermarks, and the [`Node`] that ties them to the memory
//! map.
//!
//! # Design
//! [`Node::boot`] places the memory map and the `Node` itself inside the
//! managed memory ([`MemMap::boot`]), types every frame (hole, reserved,
//! metadata, free), splits the span into a normal zone and a movable zone, and
//! frees the usable frames into the zones as maximal aligned blocks.
//!
//! An allocation ([`Node::alloc`], [`Node::alloc_frozen`]) picks zones in
//! order (movable requests try the movable zone first), checks the min
//! watermark, and takes a block from the CPU's pcp list (orders 0–3) or the
//! zone's free lists. It then prepares the folio (compound words, type tag,
//! cleared owner words; zeroed on request) while it is still exclusively ours
//! (P3.1–P3.2), and either publishes it with refcount 1 (P3.3) or hands it out
//! frozen. When every zone fails, every CPU's lists are drained and the
//! allocation retried once before [`AllocError::OutOfMemory`].
//!
//! A folio comes back when its last [`FolioRef`] is dropped or its
//! [`FrozenFolio`] is dropped ([`FolioRelease::release`]): its descriptors are
//! checked (a mapped, pinned, locked or malformed folio is quarantined with a
//! bad-page report instead of freed) and reset, and the block goes to the pcp
//! list or merges into the zone.
//!
//! Main types: [`Node`], [`NodeConfig`], [`Gfp`], [`Migratetype`],
//! [`ZoneId`]; reports in [`report`].

mod freelist;
mod hotadd;
mod migratetype;
mod pcp;
pub mod report;
mod vmstat;
mod zone;

pub use crate::memmap::HotAddError;
pub use hotadd::HotAdded;
pub use migratetype::{Migratetype, NR_MIGRATETYPES};
pub use pcp::{PcpConfig, PCP_MAX_ORDER};
pub use vmstat::{VmEvent, NR_VM_EVENTS};
pub use zone::{Watermarks, ZoneId, NR_ORDERS, NR_ZONES};

pub use crate::folio::RawError;

use crate::folio::{
    decode_compound, head_word, raw_head, sealed, tail_word, BadPageReason, FolioRelease, Order, PageFlags, PageType,
    UnfreezeRefusal,
};
use crate::memmap::{
    BootFailed, MemMap, MemMapError, MemoryLayout, Pfn, PhysAddr, DEFAULT_SECTION_ORDER, PAGEBLOCK_FRAMES,
};
use crate::platform::{LocalCpu, Platform};
use crate::sync::{Ordering, SpinLock};
use core::fmt;
use core::num::NonZeroU32;
use migratetype::set_pageblock_migratetype;
use pcp::{Pcp, PcpLists};
use vmstat::VmCounters;
use zone::{max_block_order, Zone};

/// `relax` rounds [`Node::drain_all`] waits for the CPUs it asked to answer
/// (PCP.8) before it counts them as unanswered and goes on. Under the model,
/// a few rounds: loom runs a yielding thread only once the others block or
/// yield, so an owner that will answer does within them.
const DRAIN_WAIT_ROUNDS: u32 = if cfg!(memdesc_loom) { 6 } else { 1 << 12 };

/// A counted reference to a folio of a [`Node`]: the generic
/// [`folio::FolioRef`](crate::folio::FolioRef), whose page documents its
/// methods (contents, freeze, lock, raw conversion).
pub type FolioRef<'a> = crate::folio::FolioRef<'a, Node<'a>>;
/// A frozen folio of a [`Node`]: the generic
/// [`folio::FrozenFolio`](crate::folio::FrozenFolio), whose page documents
/// its methods (bytes, split, retype, unfreeze).
pub type FrozenFolio<'a> = crate::folio::FrozenFolio<'a, Node<'a>>;
/// A locked folio of a [`Node`]: [`folio::LockedFolio`](crate::folio::LockedFolio).
pub type LockedFolio<'r, 'a> = crate::folio::LockedFolio<'r, 'a, Node<'a>>;
/// The pieces of a split folio of a [`Node`]:
/// [`folio::SplitFolios`](crate::folio::SplitFolios).
pub type SplitFolios<'a> = crate::folio::SplitFolios<'a, Node<'a>>;
/// A failed freeze of a folio of a [`Node`], with the reference back:
/// [`folio::FreezeError`](crate::folio::FreezeError).
pub type FreezeError<'a> = crate::folio::FreezeError<'a, Node<'a>>;
/// A refused unfreeze of a folio of a [`Node`], with the folio back:
/// [`folio::UnfreezeError`](crate::folio::UnfreezeError).
pub type UnfreezeError<'a> = crate::folio::UnfreezeError<'a, Node<'a>>;
/// A refused split of a folio of a [`Node`], with the folio back:
/// [`folio::SplitError`](crate::folio::SplitError).
pub type SplitError<'a> = crate::folio::SplitError<'a, Node<'a>>;

/// Several counted references to one folio of a [`Node`]:
/// [`folio::FolioRefs`](crate::folio::FolioRefs).
pub type FolioRefs<'a> = crate::folio::FolioRefs<'a, Node<'a>>;
/// Pins on one folio of a [`Node`]: [`folio::PinnedFolio`](crate::folio::PinnedFolio).
pub type PinnedFolio<'a> = crate::folio::PinnedFolio<'a, Node<'a>>;
/// A refused pin of a folio of a [`Node`], with the references back:
/// [`folio::PinError`](crate::folio::PinError).
pub type PinError<'a> = crate::folio::PinError<'a, Node<'a>>;
/// A refused unfreeze of split pieces of a [`Node`], with the rest back:
/// [`folio::UnfreezeSplitError`](crate::folio::UnfreezeSplitError).
pub type UnfreezeSplitError<'a> = crate::folio::UnfreezeSplitError<'a, Node<'a>>;

/// The most CPUs a node serves (per-CPU lists are inline in the node).
#[cfg(not(memdesc_loom))]
pub const MAX_CPUS: usize = 64;
/// The most CPUs a node serves (shrunk under the model).
#[cfg(memdesc_loom)]
pub const MAX_CPUS: usize = 2;

/// How many bad-page reports the node keeps (the count is exact).
pub const BAD_PAGE_LOG: usize = 16;

/// Node configuration.
#[derive(Clone, Copy, Debug)]
pub struct NodeConfig {
    /// Percentage of the span (rounded to 4 MiB) given to the movable zone.
    pub movable_percent: u8,
    /// Per-CPU list sizing.
    pub pcp: PcpConfig,
    /// Min watermark per zone, in frames; `None` scales it with the zone like
    /// Linux's `min_free_kbytes`.
    pub min_free_frames: Option<u64>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { movable_percent: 25, pcp: PcpConfig::default(), min_free_frames: None }
    }
}

/// How to allocate (Linux's gfp flags, as a struct).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gfp {
    /// The mobility of the allocation; `Movable` may use the movable zone.
    pub migratetype: Migratetype,
    /// The type tag the folio gets.
    pub page_type: PageType,
    /// Zero the frames before handing them out.
    pub zero: bool,
    /// May dip below the min watermark (`__GFP_HIGH`).
    pub high_priority: bool,
}

impl Gfp {
    /// Unmovable kernel memory.
    pub const KERNEL: Gfp =
        Gfp { migratetype: Migratetype::Unmovable, page_type: PageType::Kernel, zero: false, high_priority: false };
    /// Movable user memory (anonymous).
    pub const USER: Gfp =
        Gfp { migratetype: Migratetype::Movable, page_type: PageType::Anon, zero: false, high_priority: false };
    /// Reclaimable caches.
    pub const RECLAIMABLE: Gfp =
        Gfp { migratetype: Migratetype::Reclaimable, page_type: PageType::File, zero: false, high_priority: false };

    /// The same request, zeroing the frames.
    pub const fn zeroed(self) -> Self {
        Self { zero: true, ..self }
    }

    /// The same request, typing the folio `ty`.
    pub const fn typed(self, ty: PageType) -> Self {
        Self { page_type: ty, ..self }
    }
}

/// Why the node could not boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The memory layout was refused.
    Layout(MemMapError),
    /// More CPUs than [`MAX_CPUS`], or none.
    TooManyCpus(u32),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(e) => write!(f, "memory layout refused: {e}"),
            Self::TooManyCpus(n) => write!(f, "{n} CPUs; supported: 1..={MAX_CPUS}"),
        }
    }
}

impl core::error::Error for BootError {}

impl From<MemMapError> for BootError {
    fn from(e: MemMapError) -> Self {
        Self::Layout(e)
    }
}

impl From<BootFailed<'_, BootError>> for BootError {
    fn from(failed: BootFailed<'_, BootError>) -> Self {
        failed.error
    }
}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// No zone the request may use has a free block of the order above the
    /// watermark, even after draining every CPU's lists.
    OutOfMemory {
        /// The order requested.
        order: Order,
    },
    /// The requested type cannot head an allocated folio (free, tail or
    /// unmanaged types), or a counted allocation asked for an always-frozen
    /// type (slab, page table: use [`Node::alloc_frozen`]).
    BadType(PageType),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory { order } => write!(f, "out of memory for an order-{order} allocation"),
            Self::BadType(ty) => write!(f, "cannot allocate a folio of type {ty}"),
        }
    }
}

impl core::error::Error for AllocError {}

/// What [`Node::drain_all`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Frames the call gave back itself (the calling CPU's lists); the
    /// other CPUs' owners give theirs back and count
    /// [`VmEvent::PcpDrainAnswered`].
    pub frames: u64,
    /// CPUs asked to drain their own lists.
    pub asked: u32,
    /// CPUs that neither answered nor were seen empty within the wait, or
    /// that still owed an answer to an earlier request (not waited for;
    /// asked again).
    pub unanswered: u32,
}

/// Counts an allocation of `order` from zone `id` on `stats`.
#[inline(always)]
fn count_alloc(stats: &VmCounters, id: ZoneId, order: Order, gfp: Gfp) {
    let nr = order.nr_pages();
    stats.add(if id == ZoneId::Movable { VmEvent::PgallocMovable } else { VmEvent::PgallocNormal }, nr);
    if gfp.page_type.is_always_frozen() {
        stats.add(VmEvent::PgallocFrozen, 1);
    }
    if gfp.zero {
        stats.add(VmEvent::Pgzero, nr);
    }
}

/// One bad-page report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPageReport {
    /// The frame reported.
    pub pfn: Pfn,
    /// What was wrong.
    pub reason: BadPageReason,
}

struct BadPageLog {
    reports: [Option<BadPageReport>; BAD_PAGE_LOG],
    count: u64,
    frames: u64,
}

/// A NUMA node's worth of memory: the memory map, the zones, the per-CPU
/// lists. Lives inside the memory it manages.
pub struct Node<'a> {
    map: MemMap<'a>,
    platform: &'a dyn Platform,
    nr_cpus: u32,
    zones: [Zone; NR_ZONES],
    pcp: [Pcp; MAX_CPUS],
    /// Event counters per CPU, written by the CPU itself.
    stats: [VmCounters; MAX_CPUS],
    config: NodeConfig,
    bad: SpinLock<BadPageLog>,
}

impl sealed::Sealed for Node<'_> {}

impl<'a> FolioRelease for Node<'a> {
    #[inline(always)]
    fn memmap(&self) -> &MemMap<'_> {
        &self.map
    }

    fn release(&self, head: Pfn) {
        self.free_folio(head);
    }

    fn bad_page(&self, pfn: Pfn, reason: BadPageReason) {
        self.quarantine(pfn, reason);
    }

    fn platform(&self) -> &dyn Platform {
        self.platform
    }
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node").field("map", &self.map).field("zones", &self.zones).finish_non_exhaustive()
    }
}

impl<'a> Node<'a> {
    /// Boots a node over `memory` (the host's mapping of physical addresses
    /// `phys_base..`), placing all metadata inside it.
    ///
    /// # Errors
    /// [`BootError::Layout`] for a bad memory layout (including one that
    /// leaves no frame to manage); [`BootError::TooManyCpus`] if the platform
    /// reports more than [`MAX_CPUS`] CPUs. The memory comes back, untouched,
    /// in the [`BootFailed`], so another layout can be tried on it; for `?`
    /// into an owned error, `.map_err(BootFailed::into_error)?`.
    pub fn boot(
        memory: &'a mut [u8],
        phys_base: PhysAddr,
        layout: &MemoryLayout<'_>,
        config: NodeConfig,
        platform: &'a dyn Platform,
    ) -> Result<&'a Node<'a>, BootFailed<'a, BootError>> {
        Self::boot_with_sections(memory, phys_base, layout, config, DEFAULT_SECTION_ORDER, platform)
    }

    /// [`Node::boot`] with hot-pluggable sections of `2^section_order`
    /// frames: `memory` covers the node's whole possible span, `layout` the
    /// RAM present at boot, and [`Node::hot_add`] makes sections of the rest
    /// present at run time.
    ///
    /// # Errors
    /// As [`Node::boot`]; a bad section order is a
    /// [`BootError::Layout`]([`MemMapError::BadSectionOrder`]).
    pub fn boot_with_sections(
        memory: &'a mut [u8],
        phys_base: PhysAddr,
        layout: &MemoryLayout<'_>,
        config: NodeConfig,
        section_order: u32,
        platform: &'a dyn Platform,
    ) -> Result<&'a Node<'a>, BootFailed<'a, BootError>> {
        let nr_cpus = platform.nr_cpus();
        if nr_cpus == 0 || nr_cpus as usize > MAX_CPUS {
            return Err(BootFailed { error: BootError::TooManyCpus(nr_cpus), memory });
        }
        MemMap::boot_with_sections(memory, phys_base, layout, section_order, |map, _info| {
            let (start, end) = (map.base_pfn(), map.end_pfn());
            let span = end.0 - start.0;
            // The boundary is aligned to absolute MAX_ORDER pfns, so no
            // buddy block and no pageblock ever straddles two zones (a
            // pageblock claim retypes the whole pageblock).
            let max_block = 1u64 << crate::folio::MAX_ORDER;
            let movable = span * config.movable_percent.min(90) as u64 / 100;
            let boundary = Pfn(((end.0 - movable).next_multiple_of(max_block)).clamp(start.0, end.0));
            let mut zones = [Zone::new(ZoneId::Normal, start, boundary), Zone::new(ZoneId::Movable, boundary, end)];
            populate(&map, layout, &mut zones);
            set_watermarks(&mut zones, config.min_free_frames);
            Node {
                map,
                platform,
                nr_cpus,
                zones,
                pcp: core::array::from_fn(|_| Pcp::new()),
                stats: core::array::from_fn(|_| VmCounters::new()),
                config,
                bad: SpinLock::new(BadPageLog { reports: [None; BAD_PAGE_LOG], count: 0, frames: 0 }),
            }
        })
        .map_err(|failed| failed.map_error(BootError::Layout))
    }

    /// The memory map.
    pub fn memmap(&self) -> &MemMap<'a> {
        &self.map
    }

    /// The platform hooks.
    pub fn platform(&self) -> &'a dyn Platform {
        self.platform
    }

    /// How many CPUs the node serves.
    pub fn nr_cpus(&self) -> u32 {
        self.nr_cpus
    }

    /// The configuration the node booted with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Allocates a folio of `order` and returns a reference to it (refcount
    /// 1, type `gfp.page_type`).
    ///
    /// # Errors
    /// [`AllocError::OutOfMemory`] when no allowed zone has a block after
    /// draining every CPU's lists; [`AllocError::BadType`] for a type an
    /// allocated, counted folio cannot have.
    #[inline]
    pub fn alloc(&self, order: Order, gfp: Gfp) -> Result<FolioRef<'_>, AllocError> {
        self.alloc_with(None, order, gfp)
    }

    /// Allocates a folio of `order` and returns it frozen (refcount 0):
    /// exclusively the caller's, invisible to speculative getters (P3). Slab
    /// and page-table frames are allocated this way and stay frozen.
    ///
    /// # Errors
    /// As [`Node::alloc`].
    #[inline]
    pub fn alloc_frozen(&self, order: Order, gfp: Gfp) -> Result<FrozenFolio<'_>, AllocError> {
        self.alloc_frozen_with(None, order, gfp)
    }

    /// [`Node::alloc`] inside a local section the caller opened: the
    /// per-CPU fast path with no call to the platform. An embedder that owns
    /// its platform (the malloc adapters, over `HostPlatform`) enters once,
    /// inline, and passes the token; free with [`Node::put_on`].
    ///
    /// # Safety
    /// 1. `cpu` came from `local_enter` of the platform this node booted
    ///    with, and has not been passed back to its `local_exit` (a token of
    ///    another platform may name a CPU another thread holds here).
    ///
    /// # Errors
    /// As [`Node::alloc`].
    #[inline]
    pub unsafe fn alloc_on(&self, cpu: &LocalCpu, order: Order, gfp: Gfp) -> Result<FolioRef<'_>, AllocError> {
        self.alloc_with(Some(cpu), order, gfp)
    }

    /// [`Node::alloc_frozen`] inside a local section the caller opened (see
    /// [`Node::alloc_on`]); free with [`Node::free_frozen_on`].
    ///
    /// # Safety
    /// As [`Node::alloc_on`].
    ///
    /// # Errors
    /// As [`Node::alloc`].
    #[inline]
    pub unsafe fn alloc_frozen_on(
        &self,
        cpu: &LocalCpu,
        order: Order,
        gfp: Gfp,
    ) -> Result<FrozenFolio<'_>, AllocError> {
        self.alloc_frozen_with(Some(cpu), order, gfp)
    }

    /// Drops `folio`'s reference as its drop does, freeing a last one
    /// through the caller's local section (see [`Node::alloc_on`]). A folio
    /// of another node is put by its own drop.
    ///
    /// # Safety
    /// As [`Node::alloc_on`].
    #[inline]
    pub unsafe fn put_on(&self, cpu: &LocalCpu, folio: FolioRef<'_>) {
        if !core::ptr::eq(folio.owner(), self) {
            return drop(folio);
        }
        folio.put_with(|_, pfn| self.free_folio_with(Some(cpu), pfn));
    }

    /// Frees `folio` as its drop does, through the caller's local section
    /// (see [`Node::alloc_on`]). A folio of another node is freed by its own
    /// drop.
    ///
    /// # Safety
    /// As [`Node::alloc_on`].
    #[inline]
    pub unsafe fn free_frozen_on(&self, cpu: &LocalCpu, folio: FrozenFolio<'_>) {
        if !core::ptr::eq(folio.owner(), self) {
            return drop(folio);
        }
        let pfn = folio.into_raw();
        self.free_folio_with(Some(cpu), pfn);
    }

    /// [`Node::alloc`]'s body: on `cpu` if the caller entered one, else
    /// entering the platform's.
    #[inline(always)]
    fn alloc_with(&self, cpu: Option<&LocalCpu>, order: Order, gfp: Gfp) -> Result<FolioRef<'_>, AllocError> {
        if gfp.page_type.is_always_frozen() {
            return Err(AllocError::BadType(gfp.page_type));
        }
        let folio = self.alloc_frozen_with(cpu, order, gfp)?;
        crate::platform::failpoint!(self.platform, AllocPublish);
        Ok(folio.publish())
    }

    /// [`Node::alloc_frozen`]'s body (see [`Node::alloc_with`]).
    #[inline(always)]
    fn alloc_frozen_with(&self, cpu: Option<&LocalCpu>, order: Order, gfp: Gfp) -> Result<FrozenFolio<'_>, AllocError> {
        if !gfp.page_type.is_owner_type() {
            return Err(AllocError::BadType(gfp.page_type));
        }
        let pfn = match self.rmqueue(cpu, order, gfp) {
            Some(pfn) => pfn,
            None => self.alloc_after_drain(order, gfp)?,
        };
        let head = self.prep_new_folio(pfn, order, gfp);
        // SAFETY: duty 1: the block came off a free list, so it is ours alone;
        // prep_new_folio typed it as allocated; its refcount is still 0.
        Ok(unsafe { crate::folio::FrozenFolio::from_owned(self, head) })
    }

    /// PCP.11: every allowed zone failed. The free frames may all sit on
    /// other CPUs' lists: drain them all, then retry the zone walk once
    /// (straight from the zones: a refill would only cache on this CPU
    /// frames the retry was short of).
    #[cold]
    #[inline(never)]
    fn alloc_after_drain(&self, order: Order, gfp: Gfp) -> Result<Pfn, AllocError> {
        // Mutant: fail without draining them.
        #[cfg(not(memdesc_mutant = "no_drain_before_oom"))]
        self.drain_all();
        let stats = &self.stats[self.cpu()];
        stats.add(VmEvent::DrainAllPages, 1);
        // Mutant: drain, then fail without retrying.
        #[cfg(memdesc_mutant = "no_retry_after_drain")]
        let retried = None;
        #[cfg(not(memdesc_mutant = "no_retry_after_drain"))]
        let retried = self.rmqueue_zones(order, gfp, stats);
        retried.ok_or_else(|| {
            stats.add(VmEvent::PgallocFail, 1);
            AllocError::OutOfMemory { order }
        })
    }

    /// Takes a free block for `gfp` from the first zone that has one: from
    /// the calling CPU's lists for orders up to [`PCP_MAX_ORDER`] (PCP.1–5),
    /// else, or on the fallback path (PCP.10), from the zones under their
    /// locks. Counts the allocation.
    #[inline(always)]
    fn rmqueue(&self, cpu: Option<&LocalCpu>, order: Order, gfp: Gfp) -> Option<Pfn> {
        if self.pcp_caches(order) {
            let local = match cpu {
                Some(cpu) => self.rmqueue_on(cpu, order, gfp),
                None => match self.local_enter() {
                    Some(cpu) => {
                        let local = self.rmqueue_on(&cpu, order, gfp);
                        self.platform.local_exit(cpu);
                        local
                    }
                    None => None,
                },
            };
            if let Some(found) = local {
                return found;
            }
        }
        self.rmqueue_fallback(order, gfp)
    }

    /// PCP.2–5, alloc, inside the section of `cpu`: `None` when the lists
    /// cannot be used (PCP.10).
    #[inline(always)]
    fn rmqueue_on(&self, cpu: &LocalCpu, order: Order, gfp: Gfp) -> Option<Option<Pfn>> {
        let (pcp, index) = self.lock_local(cpu)?;
        let found = self.rmqueue_locked(pcp, index, order, gfp);
        // PCP.5
        pcp.unlock_local();
        Some(found)
    }

    /// Whether blocks of `order` go through the per-CPU lists.
    #[inline(always)]
    fn pcp_caches(&self, order: Order) -> bool {
        self.config.pcp.enabled && order.get() <= PCP_MAX_ORDER
    }

    /// PCP.3–4, alloc, on `pcp` (CPU `cpu`), whose local lock the caller
    /// holds: a pop from the first allowed zone's list inline, anything
    /// else (another zone, a refill) out of line.
    #[inline(always)]
    fn rmqueue_locked(&self, pcp: &Pcp, cpu: usize, order: Order, gfp: Gfp) -> Option<Pfn> {
        let stats = &self.stats[cpu];
        pcp.with_locked(
            &self.zones,
            &self.map,
            stats,
            #[inline(always)]
            |lists| {
                // The first of `zones_for(gfp)`.
                let id = if gfp.migratetype == Migratetype::Movable { ZoneId::Movable } else { ZoneId::Normal };
                match lists[id as usize].pop(&self.map, order.get(), gfp.migratetype) {
                    Some(pfn) => {
                        stats.add(VmEvent::PcpAllocHit, 1);
                        count_alloc(stats, id, order, gfp);
                        Some(pfn)
                    }
                    None => self.rmqueue_pcp(lists, order, gfp, stats),
                }
            },
        )
    }

    /// The zones' locked path when the lists do not serve the request
    /// (PCP.10's fallback, an order the lists do not cache, pcp disabled).
    #[cold]
    #[inline(never)]
    fn rmqueue_fallback(&self, order: Order, gfp: Gfp) -> Option<Pfn> {
        self.rmqueue_zones(order, gfp, &self.stats[self.cpu()])
    }

    /// The zones an allocation for `gfp` may use, in order.
    #[inline(always)]
    fn zones_for(gfp: Gfp) -> &'static [ZoneId] {
        if gfp.migratetype == Migratetype::Movable {
            &[ZoneId::Movable, ZoneId::Normal]
        } else {
            &[ZoneId::Normal]
        }
    }

    /// PCP.4, alloc: the first allowed zone's list that has (or refills) a
    /// block; the caller holds the local lock. The path past an empty list
    /// ([`Node::rmqueue_locked`] pops inline).
    #[cold]
    #[inline(never)]
    fn rmqueue_pcp(&self, lists: &mut [PcpLists; NR_ZONES], order: Order, gfp: Gfp, stats: &VmCounters) -> Option<Pfn> {
        for &id in Self::zones_for(gfp) {
            let zone = &self.zones[id as usize];
            if zone.is_empty() {
                continue;
            }
            let found = lists[id as usize].alloc(
                zone,
                &self.map,
                &self.config.pcp,
                order.get(),
                gfp.migratetype,
                gfp.high_priority,
                stats,
            );
            if let Some(pfn) = found {
                count_alloc(stats, id, order, gfp);
                return Some(pfn);
            }
        }
        None
    }

    /// The zones' own locked path (orders above the lists, pcp disabled, or
    /// PCP.10's fallback).
    fn rmqueue_zones(&self, order: Order, gfp: Gfp, stats: &VmCounters) -> Option<Pfn> {
        let nr = order.nr_pages();
        for &id in Self::zones_for(gfp) {
            let zone = &self.zones[id as usize];
            if zone.is_empty() {
                continue;
            }
            if !zone.watermark_ok(nr, gfp.high_priority) {
                stats.add(VmEvent::WatermarkFail, 1);
                continue;
            }
            let mut area = zone.area.lock();
            let found = area.with(|area| area.take_block(zone, &self.map, order.get(), gfp.migratetype));
            drop(area);
            if let Some(pfn) = found {
                count_alloc(stats, id, order, gfp);
                return Some(pfn);
            }
        }
        None
    }

    /// PCP.1, PCP.2 and PCP.5: runs `f` on the calling CPU's [`Pcp`] (with
    /// its index) under the CPU's local lock, inside one `local_enter`
    /// section. `None`: the thread has no CPU, or re-entered a CPU whose
    /// local lock it holds; the caller takes the fallback path (PCP.10).
    ///
    /// The one place the allocator enters and leaves a CPU.
    #[inline(always)]
    fn with_local_cpu<R>(&self, f: impl FnOnce(&Pcp, usize) -> R) -> Option<R> {
        let cpu = self.local_enter()?;
        let r = self.on_local_cpu(&cpu, f);
        self.platform.local_exit(cpu);
        r
    }

    /// PCP.1: enters the calling thread's CPU (`None`: it has none, PCP.10).
    /// The caller passes the token back to `local_exit`.
    #[inline(always)]
    fn local_enter(&self) -> Option<LocalCpu> {
        // Mutant: a thread with no CPU uses CPU 0's lists.
        #[cfg(not(memdesc_mutant = "fallback_uses_cpu0_lists"))]
        let cpu = self.platform.local_enter();
        #[cfg(memdesc_mutant = "fallback_uses_cpu0_lists")]
        // SAFETY: none: deliberately broken (the mutant), for loom to report.
        let cpu =
            Some(self.platform.local_enter().unwrap_or(unsafe { LocalCpu::new_unchecked(crate::platform::CpuId(0)) }));
        cpu
    }

    /// PCP.2 and PCP.5 inside a section the caller entered (PCP.1, `cpu`):
    /// runs `f` on `cpu`'s [`Pcp`] under its local lock. `None` for a CPU
    /// the node does not serve or a re-entry (PCP.10).
    #[inline(always)]
    fn on_local_cpu<R>(&self, cpu: &LocalCpu, f: impl FnOnce(&Pcp, usize) -> R) -> Option<R> {
        let (pcp, index) = self.lock_local(cpu)?;
        let r = f(pcp, index);
        // PCP.5
        pcp.unlock_local();
        Some(r)
    }

    /// PCP.2: takes `cpu`'s local lock; returns its [`Pcp`] and index, or
    /// `None` for a CPU the node does not serve or a re-entry (PCP.10). The
    /// caller unlocks (PCP.5) before it leaves the section.
    #[inline(always)]
    fn lock_local(&self, cpu: &LocalCpu) -> Option<(&Pcp, usize)> {
        let index = cpu.cpu().index();
        if index >= self.nr_cpus as usize {
            return None;
        }
        let pcp = self.pcp.get(index)?;
        pcp.try_lock_local().then_some((pcp, index))
    }

    /// Prepares a block just taken off a free list as a folio (P3.1–P3.2).
    ///
    /// Free frames keep compound word, flags, mapcount and pincount at 0
    /// (the free path resets or checks them, and the audit verifies it), so
    /// only what differs from that is written.
    #[inline(always)]
    fn prep_new_folio(&self, pfn: Pfn, order: Order, gfp: Gfp) -> &'a crate::memmap::Page {
        let map = &self.map;
        let head = map.page_of(pfn);
        if gfp.zero {
            // SAFETY: duty 1: the block was just taken off a free list and is
            // not yet published; nobody else can reach its contents.
            unsafe { map.zero_frames(pfn, order.nr_pages()) };
        }
        // P3.1: compound layout and owner words. Relaxed stores (inside
        // set_compound and set_type): the block is exclusively ours until
        // P3.3 publishes it.
        if order != Order::ZERO {
            prep_compound(map.pages_of(pfn, order.nr_pages()), pfn, order);
        }
        for word in 0..crate::memmap::OWNER_WORDS {
            // SAFETY: duty 1 of set_owner_word: the block is exclusively ours
            // (taken off a free list under its lock, not yet published).
            unsafe { head.set_owner_word(word, 0) };
        }
        // P3.2: the type tag, last before publication.
        head.set_type(gfp.page_type);
        head
    }

    /// Takes back a folio whose refcount reached 0 (or whose frozen owner
    /// dropped it): checks it, resets it, and frees its block.
    ///
    /// The common case, a clean order-0 folio, is checked with one branch
    /// ([`order0_is_clean`]); anything else, or a check that fails, takes
    /// [`Node::free_folio_checked`], which names the reason.
    #[inline]
    fn free_folio(&self, head_pfn: Pfn) {
        self.free_folio_with(None, head_pfn);
    }

    /// [`Node::free_folio`]'s body: on `cpu` if the caller entered one,
    /// else entering the platform's.
    #[inline(always)]
    fn free_folio_with(&self, cpu: Option<&LocalCpu>, head_pfn: Pfn) {
        crate::platform::failpoint!(self.platform, FreeFolio);
        let head = self.map.page_of(head_pfn);
        if order0_is_clean(head) {
            reset_flags(head);
            return self.free_block(cpu, head_pfn, Order::ZERO);
        }
        if let Some(order) = self.free_folio_checked(head_pfn, head) {
            self.free_block_any(cpu, head_pfn, order);
        }
    }

    /// Frees the checked and reset block of `order` at `head_pfn`: to the
    /// lists of `cpu` (or of the CPU it enters) for the orders they cache,
    /// else, or on PCP.10's fallback, to its zone.
    #[inline(always)]
    fn free_block(&self, cpu: Option<&LocalCpu>, head_pfn: Pfn, order: Order) {
        let zone = self.zone_of(head_pfn);
        if self.pcp_caches(order) {
            let local = match cpu {
                Some(cpu) => self.free_on(cpu, zone, head_pfn, order),
                None => match self.local_enter() {
                    Some(cpu) => {
                        let local = self.free_on(&cpu, zone, head_pfn, order);
                        self.platform.local_exit(cpu);
                        local
                    }
                    None => None,
                },
            };
            if local.is_some() {
                return;
            }
        }
        self.free_fallback(zone, head_pfn, order);
    }

    /// [`Node::free_block`] out of line, for the folios
    /// [`Node::free_folio_checked`] passed.
    #[inline(never)]
    fn free_block_any(&self, cpu: Option<&LocalCpu>, head_pfn: Pfn, order: Order) {
        self.free_block(cpu, head_pfn, order);
    }

    /// PCP.2–5, free, inside the section of `cpu`: `None` when the lists
    /// cannot be used (PCP.10).
    #[inline(always)]
    fn free_on(&self, cpu: &LocalCpu, zone: &Zone, head_pfn: Pfn, order: Order) -> Option<()> {
        let (pcp, index) = self.lock_local(cpu)?;
        self.free_locked(pcp, index, zone, head_pfn, order);
        // PCP.5
        pcp.unlock_local();
        Some(())
    }

    /// PCP.3–4, free, on `pcp` (CPU `cpu`), whose local lock the caller
    /// holds: pushes the checked and reset block on `zone`'s list.
    #[inline(always)]
    fn free_locked(&self, pcp: &Pcp, cpu: usize, zone: &Zone, head_pfn: Pfn, order: Order) {
        let stats = &self.stats[cpu];
        pcp.with_locked(
            &self.zones,
            &self.map,
            stats,
            #[inline(always)]
            |lists| {
                stats.add(VmEvent::Pgfree, order.nr_pages());
                lists[zone.id as usize].free(zone, &self.map, &self.config.pcp, head_pfn, order.get(), stats);
            },
        );
    }

    /// PCP.10's fallback, or an order the lists do not cache: the block goes
    /// straight to its zone under the zone lock.
    #[cold]
    #[inline(never)]
    fn free_fallback(&self, zone: &Zone, head_pfn: Pfn, order: Order) {
        self.stats[self.cpu()].add(VmEvent::Pgfree, order.nr_pages());
        let mut area = zone.area.lock();
        area.with(|area| area.free_block(zone, &self.map, head_pfn, order.get()));
    }

    /// [`Node::free_folio`]'s checks for every folio (any order, every check
    /// named) and its reset to the free-frame state: the order of the block
    /// to free, or `None` when the folio was quarantined instead.
    #[cold]
    #[inline(never)]
    fn free_folio_checked(&self, head_pfn: Pfn, head: &crate::memmap::Page) -> Option<Order> {
        if head.page_type() == PageType::Quarantined {
            // Quarantined while a reference was still held (a free that
            // found a nonzero refcount); that reference is now gone. The
            // frames stay out of service and were counted and reported once.
            return None;
        }
        let (_, order) = decode_compound(head_pfn, head.compound_word());
        let Some(order) = order else {
            self.quarantine(head_pfn, BadPageReason::BadCompound);
            return None;
        };
        let folio = self.map.pages_of(head_pfn, order.nr_pages());
        if let Some(reason) = check_free(head_pfn, folio) {
            self.quarantine(head_pfn, reason);
            return None;
        }
        // Reset to the free-frame state prep_new_folio relies on: tails
        // become plain free frames; the head is typed by the list it joins.
        if order != Order::ZERO {
            for tail in &folio[1..] {
                tail.set_compound(0);
                tail.set_type(PageType::Free);
            }
            head.set_compound(0);
        }
        reset_flags(head);
        Some(order)
    }

    /// Takes the folio (or frame) at `pfn` out of service and logs a report.
    /// A free frame is only reported: it belongs to a free list, and
    /// retyping it would corrupt the list.
    fn quarantine(&self, pfn: Pfn, reason: BadPageReason) {
        let Some(page) = self.map.page(pfn) else { return };
        let frames = if page.page_type().is_free() { 0 } else { self.retype_quarantined(pfn, page) };
        // Mutant: the slot is read in one hold of the log's lock and
        // written in another, so two CPUs quarantining at once lose a
        // report (Z.4).
        #[cfg(memdesc_mutant = "bad_page_log_split_update")]
        let slot = self.bad.lock().with(|log| log.count);
        let mut log = self.bad.lock();
        log.with(|log| {
            #[cfg(memdesc_mutant = "bad_page_log_split_update")]
            {
                log.count = slot;
            }
            // Z.4: slot, count and frames in one hold of the log's lock.
            log.reports[(log.count % BAD_PAGE_LOG as u64) as usize] = Some(BadPageReport { pfn, reason });
            log.count += 1;
            log.frames += frames;
        });
        drop(log);
        self.stats[self.cpu()].add(VmEvent::BadPage, 1);
    }

    /// Types the frame at `pfn` and the tails still linked to it as
    /// quarantined; returns how many frames that newly took out of service
    /// (a frame quarantined before, such as a bad tail, is counted once).
    fn retype_quarantined(&self, pfn: Pfn, page: &crate::memmap::Page) -> u64 {
        let mut frames = 0;
        let mut retype = |p: &crate::memmap::Page| {
            if p.page_type() != PageType::Quarantined {
                p.set_type(PageType::Quarantined);
                frames += 1;
            }
        };
        let order = decode_compound(pfn, page.compound_word()).1;
        retype(page);
        if let Some(order) = order {
            let tail = tail_word(pfn);
            (1..order.nr_pages())
                .map_while(|i| self.map.page(pfn.add(i)).filter(|t| t.compound_word() == tail))
                .for_each(&mut retype);
        }
        frames
    }

    /// The running CPU's index into per-CPU arrays (clamped: a platform
    /// reporting a bad id costs speed, never memory safety).
    #[inline(always)]
    fn cpu(&self) -> usize {
        self.platform.current_cpu().index().min(self.nr_cpus as usize - 1)
    }

    fn zone_of(&self, pfn: Pfn) -> &Zone {
        if self.zones[ZoneId::Movable as usize].contains(pfn) {
            &self.zones[ZoneId::Movable as usize]
        } else if pfn < self.map.end_pfn() {
            &self.zones[ZoneId::Normal as usize]
        } else {
            self.hot_zone_of(pfn)
        }
    }

    /// Gives the calling CPU's cached blocks back to the zones and answers
    /// any drain request posted to it (PCP.9); returns the frames moved. An
    /// embedder calls it on a thread that stops running as its CPU (the
    /// adapters' thread-exit hook, before the CPU slot is released), so no
    /// frames stay cached where no thread will answer a drain. Nothing (0)
    /// on a thread with no CPU or a re-entry.
    pub fn drain_local(&self) -> u64 {
        self.with_local_cpu(|pcp, cpu| pcp.drain_own(&self.zones, &self.map, &self.stats[cpu])).unwrap_or(0)
    }

    /// Answers a drain request posted to the calling CPU, if any (PCP.3,
    /// PCP.7): two loads when there is none. For an embedder's quiescent
    /// points (a kernel's scheduler tick or idle entry, a user-space CPU's
    /// loop between operations, its RCU quiescent states), so a CPU that
    /// seldom allocates pages still answers [`Node::drain_all`] in time.
    #[inline]
    pub fn answer_drain(&self) {
        self.with_local_cpu(|pcp, cpu| {
            if pcp.drain_requested() {
                pcp.with_locked(&self.zones, &self.map, &self.stats[cpu], |_| ());
            }
        });
    }

    /// Gives every CPU's cached blocks back to the zones
    /// (`drain_all_pages`): the caller's own lists directly (PCP.9), every
    /// other CPU by a request its owner answers at its next entry (PCP.6–8).
    ///
    /// Waits a bounded number of [`Platform::relax`] rounds for the answers:
    /// a CPU whose thread does not enter the allocator meanwhile (asleep in
    /// a syscall, or ended without [`Node::drain_local`]) keeps its frames
    /// and is reported in [`DrainReport::unanswered`] and counted
    /// ([`VmEvent::PcpDrainTimeout`]); its request stays posted and is
    /// answered at its next entry, and until then later drains ask it
    /// without waiting for it. A CPU whose lists are empty needs no answer.
    pub fn drain_all(&self) -> DrainReport {
        let own = self.with_local_cpu(|pcp, cpu| (cpu, pcp.drain_own(&self.zones, &self.map, &self.stats[cpu])));
        let mut report = DrainReport { frames: own.map_or(0, |(_, moved)| moved), asked: 0, unanswered: 0 };
        // PCP.6: ask every other CPU (and our own after a re-entry). A CPU
        // still owing an answer to an earlier request is asked again but
        // not waited for: it has not entered since, and every drain would
        // otherwise wait out its rounds for it.
        let mut pending = [None::<u32>; MAX_CPUS];
        let mut owing = 0;
        for (cpu, pcp) in self.pcp[..self.nr_cpus as usize].iter().enumerate() {
            if own.is_some_and(|(own, _)| own == cpu) {
                continue;
            }
            // Mutant: the drain takes the owner's lists itself, while the
            // owner may be inside them.
            #[cfg(memdesc_mutant = "remote_drain_takes_owner_lists")]
            {
                report.frames += pcp.drain_unasked(&self.zones, &self.map);
                continue;
            }
            #[allow(unreachable_code)]
            {
                let stale = pcp.drain_requested();
                let generation = pcp.request();
                report.asked += 1;
                if stale && !pcp.answered(generation) {
                    owing += 1;
                } else {
                    pending[cpu] = Some(generation);
                }
            }
        }
        // PCP.8: wait for each answer (or an empty CPU), a bounded time.
        for round in 0..=DRAIN_WAIT_ROUNDS {
            let mut waiting = false;
            for (cpu, slot) in pending.iter_mut().enumerate() {
                if let Some(generation) = *slot {
                    if self.pcp[cpu].answered(generation) {
                        *slot = None;
                    } else {
                        waiting = true;
                    }
                }
            }
            if !waiting || round == DRAIN_WAIT_ROUNDS {
                break;
            }
            // While we wait, answer requests to our own CPU (PCP.3 at an
            // entry), so two CPUs draining at once do not wait out each
            // other's rounds.
            if own.is_some() {
                self.answer_drain();
            }
            self.platform.relax();
        }
        let timed_out = pending.iter().flatten().count() as u32;
        if timed_out > 0 {
            self.stats[self.cpu()].add(VmEvent::PcpDrainTimeout, u64::from(timed_out));
        }
        report.unanswered = timed_out + owing;
        report
    }

    /// Takes a speculative reference to the folio containing `pfn` (P1) with
    /// no source to recheck; validate the type before relying on it.
    ///
    /// # Errors
    /// See [`crate::folio::GetError`].
    pub fn try_get(&self, pfn: Pfn) -> Result<FolioRef<'_>, crate::folio::GetError> {
        crate::folio::try_get(self, pfn, |_| true)
    }

    /// Drops one reference to the folio headed at `pfn`, for callers that
    /// keep raw pfns (`put_page`). Checks the frame first; frees the folio on
    /// the last put.
    ///
    /// # Safety
    /// 1. The caller owns a counted reference to this folio that no handle
    ///    represents (one given up by [`FolioRef::into_raw`], or held by the
    ///    caller's own structures) and gives it up here. The checks below
    ///    catch the misuses they can see; they cannot see whose reference it
    ///    is, and putting another holder's reference would leave that
    ///    holder's handle pointing at a freed folio.
    ///
    /// # Errors
    /// [`RawError`] for a pfn out of range, a tail, a free or unmanaged
    /// frame, or a zero refcount. Nothing changes on error.
    pub unsafe fn put_pfn(&self, pfn: Pfn) -> Result<(), RawError> {
        let page = raw_head(&self.map, pfn)?;
        // Relaxed: seeds the decrement-unless-zero loop.
        let mut count = page.refcount.load(Ordering::Relaxed);
        loop {
            if count == 0 {
                return Err(RawError::ZeroRefcount(pfn));
            }
            // R.4. Release: like FolioRef::drop, our accesses happen before
            // the free; pairs with the Acquire fence below, FolioRef::drop's
            // (R.3) and try_freeze (P2.1). Relaxed: on failure, retry.
            #[cfg(not(memdesc_mutant = "relaxed_put_pfn"))]
            let put = page.refcount.compare_exchange_weak(count, count - 1, Ordering::Release, Ordering::Relaxed);
            // Mutant: the raw put without Release. Relaxed: both orderings
            // deliberately wrong.
            #[cfg(memdesc_mutant = "relaxed_put_pfn")]
            let put = page.refcount.compare_exchange_weak(count, count - 1, Ordering::Relaxed, Ordering::Relaxed);
            match put {
                Ok(_) => break,
                Err(actual) => count = actual,
            }
        }
        if count == 1 {
            // R.4, last put. Acquire: pairs with the Release puts of the
            // other holders (R.2, R.4). Mutant: the fence removed.
            #[cfg(not(memdesc_mutant = "put_pfn_no_fence"))]
            crate::sync::fence(Ordering::Acquire);
            self.free_folio(pfn);
        }
        Ok(())
    }

    /// Frees the folio headed at `pfn`, which the caller says has `order`
    /// (`__free_pages`): a [`Node::put_pfn`] that also checks the order.
    ///
    /// # Safety
    /// As [`Node::put_pfn`].
    ///
    /// # Errors
    /// As [`Node::put_pfn`], plus [`RawError::WrongOrder`].
    pub unsafe fn free_pages(&self, pfn: Pfn, order: Order) -> Result<(), RawError> {
        let page = raw_head(&self.map, pfn)?;
        let actual = decode_compound(pfn, page.compound_word()).1.unwrap_or(Order::ZERO);
        if actual != order {
            return Err(RawError::WrongOrder { pfn, actual });
        }
        // SAFETY: duty 1 is ours by the same duty of our caller.
        unsafe { self.put_pfn(pfn) }
    }

    /// Unfreezes the frozen folio headed at `pfn` to `count` references, for
    /// callers that keep raw pfns. Checks the state, not who froze it.
    ///
    /// # Safety
    /// 1. The caller owns the frozen folio and no handle represents it (it
    ///    was given up by [`FrozenFolio::into_raw`]); the `count` references
    ///    it creates are the caller's, as raw references.
    ///
    /// # Errors
    /// [`RawError`] for a pfn out of range, a tail, a free or unmanaged frame,
    /// a counted folio ([`RawError::NotFrozen`]), a slab or page-table folio
    /// ([`RawError::WrongType`]), or a count in the overflow band
    /// ([`RawError::Overflow`]).
    pub unsafe fn unfreeze_pfn(&self, pfn: Pfn, count: NonZeroU32) -> Result<(), RawError> {
        let page = raw_head(&self.map, pfn)?;
        match UnfreezeRefusal::check(page.page_type(), count) {
            Some(UnfreezeRefusal::AlwaysFrozen(ty)) => return Err(RawError::WrongType(pfn, ty)),
            Some(UnfreezeRefusal::Overflow) => return Err(RawError::Overflow(pfn)),
            None => {}
        }
        // Release: publishes the owner's stores like FrozenFolio::unfreeze
        // (P2.5), pairing with the Acquire get (P1.3). Relaxed: on failure,
        // nothing changes.
        #[cfg(not(memdesc_mutant = "relaxed_unfreeze_pfn"))]
        let unfrozen = page.refcount.compare_exchange(0, count.get(), Ordering::Release, Ordering::Relaxed);
        // Mutant: the raw unfreeze without Release. Relaxed: both orderings
        // deliberately wrong.
        #[cfg(memdesc_mutant = "relaxed_unfreeze_pfn")]
        let unfrozen = page.refcount.compare_exchange(0, count.get(), Ordering::Relaxed, Ordering::Relaxed);
        unfrozen.map(|_| ()).map_err(|refcount| RawError::NotFrozen { pfn, refcount })
    }

    /// Bad-page reports: how many, how many frames they quarantined, and the
    /// most recent ones (up to [`BAD_PAGE_LOG`]).
    pub fn bad_pages(&self) -> (u64, u64, [Option<BadPageReport>; BAD_PAGE_LOG]) {
        let guard = self.bad.lock();
        guard.with_ref(|log| (log.count, log.frames, log.reports))
    }
}

/// Whether `head`, a folio's head at its free, is an order-0 folio that
/// passes every check of [`check_free`]: an allocated type, no compound
/// word, no reference, mapping or pin left, no flag that must be clear.
/// Loads and one combined compare, so the common free costs one branch;
/// `false` sends the caller to [`check_free`], which names what failed.
#[inline(always)]
fn order0_is_clean(head: &crate::memmap::Page) -> bool {
    // Relaxed: for all six loads below, checks at free time of a folio that
    // is ours (last put or frozen owner); nothing is ordered by them.
    let relaxed = Ordering::Relaxed;
    let dirty = head.compound.load(relaxed)
        | (head.flags.load(relaxed) & PageFlags::CHECK_AT_FREE.0)
        | u64::from(head.refcount.load(relaxed))
        | u64::from(head.mapcount.load(relaxed) as u32)
        | u64::from(head.pincount.load(relaxed));
    dirty == 0 && PageType::decode(head.ty.load(relaxed)).is_owner_type()
}

/// Clears a freed head's flags (bits no check refuses, such as a stale
/// `PG_referenced`), writing only when one is set.
#[inline(always)]
fn reset_flags(head: &crate::memmap::Page) {
    if head.flags() != PageFlags::EMPTY {
        // Relaxed: refcount 0 and the folio ours (last put or frozen
        // owner): nobody else may touch its flags.
        head.flags.store(0, Ordering::Relaxed);
    }
}

/// P3.1 for a large folio: compound words and tail types of `folio` (head
/// first, headed at `pfn`, of `order`).
#[inline(never)]
fn prep_compound(folio: &[crate::memmap::Page], pfn: Pfn, order: Order) {
    let tail = tail_word(pfn);
    for page in &folio[1..] {
        page.set_compound(tail);
        page.set_type(PageType::Tail);
    }
    folio[0].set_compound(head_word(order));
}

/// What is wrong with the folio `folio` (head first) being freed, if
/// anything (Linux's `free_page_is_bad`): the free path trusts nothing the
/// descriptors can contradict.
fn check_free(head_pfn: Pfn, folio: &[crate::memmap::Page]) -> Option<BadPageReason> {
    let head = &folio[0];
    let ty = head.page_type();
    if ty.is_free() {
        return Some(BadPageReason::DoubleFree);
    }
    if ty.is_unmanaged() || ty == PageType::Tail {
        return Some(BadPageReason::BadCompound);
    }
    // A counted reference still exists (a frozen handle freed after a raw
    // unfreeze, or restored over a counted folio): freeing would hand the
    // frames to a new owner while that holder still reaches them. P1.3
    // cannot raise a count from 0, so a 0 seen here stays 0.
    if head.ref_count() != 0 {
        return Some(BadPageReason::NonzeroRefcount);
    }
    if head.map_count() != 0 {
        return Some(BadPageReason::FreedWhileMapped);
    }
    // Relaxed: a check at free time; the folio is ours.
    if head.pincount.load(Ordering::Relaxed) != 0 {
        return Some(BadPageReason::FreedWhilePinned);
    }
    if head.flags().intersects(PageFlags::CHECK_AT_FREE) {
        return Some(BadPageReason::FreedWithBadFlags);
    }
    let tail = tail_word(head_pfn);
    // The common case, every tail clean, in one pass without a branch per
    // word (an order-9 free checks 511 tails): OR together what must be
    // zero, and find which check failed only if one did.
    let tail_type = u64::from(PageType::Tail.encode());
    let mut dirty = 0u64;
    // Relaxed: for all six loads below, checks at free time of a folio that
    // is ours (last put or frozen owner); nothing is ordered by them.
    let relaxed = Ordering::Relaxed;
    for page in &folio[1..] {
        dirty |= (page.compound.load(relaxed) ^ tail)
            | (u64::from(page.ty.load(relaxed)) ^ tail_type)
            | u64::from(page.refcount.load(relaxed))
            | u64::from(page.mapcount.load(relaxed) as u32)
            | u64::from(page.pincount.load(relaxed))
            | page.flags.load(relaxed);
    }
    if dirty == 0 {
        return None;
    }
    folio[1..].iter().find_map(|page| bad_tail(page, tail))
}

/// What is wrong with one tail of a folio being freed, if anything: the
/// slow path of [`check_free`], which names the first failed check.
fn bad_tail(page: &crate::memmap::Page, tail: u64) -> Option<BadPageReason> {
    if page.compound_word() != tail {
        return Some(BadPageReason::BadCompound);
    }
    if page.page_type() != PageType::Tail {
        return Some(BadPageReason::BadTailType);
    }
    if page.ref_count() != 0 {
        return Some(BadPageReason::NonzeroRefcount);
    }
    if page.map_count() != 0 {
        return Some(BadPageReason::FreedWhileMapped);
    }
    // Relaxed: a check at free time; the folio is ours.
    if page.pincount.load(Ordering::Relaxed) != 0 {
        return Some(BadPageReason::FreedWhilePinned);
    }
    if page.flags() != PageFlags::EMPTY {
        return Some(BadPageReason::FreedWithBadFlags);
    }
    None
}

/// Types every frame of the span and frees the usable ones into their zones,
/// as maximal aligned blocks. Runs at boot, before the node is shared.
fn populate(map: &MemMap<'_>, layout: &MemoryLayout<'_>, zones: &mut [Zone; NR_ZONES]) {
    let (meta_start, meta_end) = map.metadata_range();
    let usable = |pfn: Pfn| layout.is_ram(pfn) && !layout.is_reserved(pfn) && !(meta_start <= pfn && pfn < meta_end);
    // Pageblocks start movable, as Linux boots them.
    let mut pb = map.base_pfn();
    while pb < map.end_pfn() {
        set_pageblock_migratetype(map, pb, Migratetype::Movable);
        pb = Pfn((pb.0 & !(PAGEBLOCK_FRAMES - 1)) + PAGEBLOCK_FRAMES);
    }
    for zone in zones.iter_mut() {
        let mut pfn = zone.start;
        let mut managed = 0;
        let mut area = zone.area.lock();
        while pfn < zone.end {
            if !usable(pfn) {
                let ty = if !layout.is_ram(pfn) {
                    PageType::Hole
                } else if layout.is_reserved(pfn) {
                    PageType::Reserved
                } else {
                    PageType::Metadata
                };
                map.page_of(pfn).set_type(ty);
                pfn = pfn.add(1);
                continue;
            }
            let mut run_end = pfn;
            while run_end < zone.end && usable(run_end) {
                run_end = run_end.add(1);
            }
            while pfn < run_end {
                let order = max_block_order(pfn, run_end);
                for i in 1..(1u64 << order) {
                    map.page_of(pfn.add(i)).set_type(PageType::Free);
                }
                area.with(|area| area.free_block(zone, map, pfn, order));
                managed += 1 << order;
                pfn = pfn.add(1 << order);
            }
        }
        drop(area);
        zone.managed = managed;
    }
}

/// Splits the node's min watermark over the zones by size.
fn set_watermarks(zones: &mut [Zone; NR_ZONES], min_free_frames: Option<u64>) {
    let total: u64 = zones.iter().map(|z| z.managed).sum();
    // A min above the node's size is clamped: it would refuse every
    // allocation either way, and the arithmetic below stays in range.
    let min_total = min_free_frames.unwrap_or_else(|| default_min_free(total)).min(total);
    for zone in zones.iter_mut() {
        let min = ((min_total as u128 * zone.managed as u128).checked_div(total as u128).unwrap_or(0)) as u64;
        zone.watermarks = Watermarks { min, low: min + min / 4, high: min + min / 2 };
    }
}

/// Linux's `min_free_kbytes` rule: sqrt(16 × managed KiB), clamped to
/// 128 KiB..256 MiB, in frames; nothing for tiny nodes (tests, models).
fn default_min_free(managed_frames: u64) -> u64 {
    if managed_frames < 4096 {
        return 0;
    }
    let kib = managed_frames * 4;
    let min_kib = (kib * 16).isqrt().clamp(128, 256 * 1024);
    min_kib / 4
}

#[cfg(all(test, not(memdesc_loom)))]
mod tests;

#[cfg(all(test, not(memdesc_loom)))]
mod proptests;

#[cfg(all(test, memdesc_loom))]
mod loom;
