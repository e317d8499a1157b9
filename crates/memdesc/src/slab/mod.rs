//! The slab allocator over frozen folios (P7), with TYPESAFE_BY_RCU caches,
//! `kfree_rcu`, slub_debug-style checks and kmalloc size classes.
//!
//! # Design
//! - **Slabs** are folios from [`Node::alloc_frozen`] typed
//!   `PageType::Slab { cache }`: never counted (P2, P3), so no pfn walker can
//!   take a reference to one or read its owner words as anything else. The
//!   order is chosen per object size to keep waste under 1/16 of the slab
//!   with at least 8 objects where possible (Linux's `calculate_order`).
//! - **Slab state** lives in the head's four owner words, reached only
//!   through `raw::SlabView`, whose constructors take the frozen handle or
//!   the cache's list lock (and check the type tag under it): word 0 packs
//!   objects / in use / quarantined / list / cache id, word 1 is the
//!   freelist head (an object address), words 2–3 link the slab on one of
//!   its cache's lists (pfns).
//! - **Objects** are packed from the slab's first byte. A free object holds
//!   the address of the next free one (SLUB's free pointer): in its first
//!   word, or past the object for caches whose free objects must keep their
//!   contents (constructor, TYPESAFE_BY_RCU, debug). Debug caches add red
//!   zones and a state word (`layout.rs`, `debug.rs`).
//! - **Lists and locking**: each cache has one node's partial, full and
//!   empty lists behind one `SpinLock`; empty slabs beyond `min_partial`
//!   (5 to 10 by object size, as Linux) go back to the buddy allocator, and
//!   a give-back returns each slab's run of objects in one update. A slab is typed `Slab { cache: id }`
//!   exactly while it is on cache `id`'s lists (both retypes happen under
//!   the lock); while its creator or discarder holds it frozen it is typed
//!   `Slab { cache: SLAB_UNLISTED }`. Above the lists sit the per-CPU
//!   sheaves (`sheaf`, protocol SHEAF), which call the cache through
//!   `ObjectSource` on their slow paths. Neither the
//!   buddy allocator nor RCU is called under a list lock; but `refill` may
//!   allocate a slab and `give_back` may hand one to `call_rcu_frame`,
//!   which waits for a grace period and runs callbacks (kfree_rcu batches:
//!   frees into any cache) inline when its queue is full, so callers keep
//!   no lock of their own across them.
//! - **Frees never trust the pointer**: address → pfn → compound head →
//!   type tag `Slab { cache }` → the cache must match → the offset must be
//!   an object boundary (`SlabCore::lookup`).
//! - **TYPESAFE_BY_RCU** caches reuse objects at once but hand their slab
//!   frames to [`Rcu::call_rcu_frame`], whose head overlaps the owner words
//!   that held the slab state (deliberately, as Linux's `struct slab`;
//!   harmless because of P3). `kfree_rcu` batches pointers in a frozen
//!   Kernel frame queued the same way; [`SlabFreer`] takes both back.
//! - **Large kmalloc** (above 2048 bytes) are buddy folios typed
//!   `Slab { cache: SLAB_LARGE }`: frozen, and recognised by the tag.
//! - **No heap**: the allocator's core and every cache struct live in
//!   frozen Kernel folios the allocator takes from its node.

mod cache;
mod debug;
mod error;
mod kmalloc;
mod layout;
pub(crate) mod raw;
mod rcu_free;
mod report;
mod sheaf;
mod typesafe;

#[cfg(all(test, memdesc_loom))]
mod loom;

#[cfg(all(test, not(memdesc_loom)))]
mod tests;

pub use error::{BadObject, BadObjectKind, SlabError};
pub use kmalloc::{KmallocObject, KMALLOC_MAX_CACHE_SIZE, KMALLOC_SIZES};
pub use layout::{MAX_OBJECT_SIZE, MAX_SLAB_ORDER};
pub use rcu_free::{SlabFreer, SlabReturn};
pub use report::{SlabAudit, SlabEvent, SlabInfo, BAD_OBJECT_LOG, NR_SLAB_EVENTS};
pub use typesafe::typesafe_get;

use cache::Cache;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use raw::Arena;

use crate::buddy::{Gfp, Node};
use crate::folio::{decode_compound, Order, PageType};
use crate::memmap::{Pfn, PAGE_SHIFT, PAGE_SIZE};
use crate::platform::LocalCpu;
use crate::rcu::Rcu;
use crate::sync::{AtomicPtr, Ordering, SpinLock, StatWord};

/// How many caches may exist at once (cache ids `0..MAX_CACHES`; 16 under
/// the model checker, whose atomics are costly).
pub const MAX_CACHES: usize = if cfg!(memdesc_loom) { 16 } else { 64 };
/// The type-tag cache id of a slab on no cache's lists (being created, or
/// on its way back to the buddy allocator, possibly through RCU).
pub const SLAB_UNLISTED: u16 = u16::MAX;
/// The type-tag cache id of a large kmalloc folio.
pub const SLAB_LARGE: u16 = u16::MAX - 1;

/// Flags of a cache (Linux's `SLAB_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlabFlags(u32);

impl SlabFlags {
    /// No flag.
    pub const NONE: SlabFlags = SlabFlags(0);
    /// Objects may be reused at once for another object of the same type,
    /// but slab frames go back to the buddy allocator only after an RCU
    /// grace period: lockless readers in a read section may read a freed
    /// object (never a freed frame) and must revalidate what they find.
    pub const TYPESAFE_BY_RCU: SlabFlags = SlabFlags(1);
    /// slub_debug: red zones, poison, a state word per object, all
    /// checked; allocations and frees bypass the per-CPU sheaves.
    pub const DEBUG: SlabFlags = SlabFlags(2);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: SlabFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both flag sets.
    pub const fn union(self, other: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | other.0)
    }
}

impl core::ops::BitOr for SlabFlags {
    type Output = SlabFlags;
    fn bitor(self, rhs: SlabFlags) -> SlabFlags {
        self.union(rhs)
    }
}

/// What a cache holds.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    /// The name in reports.
    pub name: &'static str,
    /// Object size in bytes (1..=[`MAX_OBJECT_SIZE`], with room for the
    /// cache's metadata).
    pub size: usize,
    /// Object alignment: a power of two up to a page.
    pub align: usize,
    /// Runs once on each object when its slab is created (not on every
    /// allocation): objects must be freed in their constructed state.
    pub ctor: Option<fn(&mut [u8])>,
    /// Flags.
    pub flags: SlabFlags,
}

impl CacheConfig {
    /// A cache of `size`-byte objects aligned to 8, no constructor, no
    /// flags.
    pub const fn new(name: &'static str, size: usize) -> Self {
        Self { name, size, align: 8, ctor: None, flags: SlabFlags::NONE }
    }
}

/// The allocator's shared state, placed in a frozen Kernel folio (stable
/// address, no heap).
pub(crate) struct SlabCore<'a> {
    pub(crate) node: &'a Node<'a>,
    pub(crate) rcu: &'a Rcu<'a>,
    pub(crate) ret: &'a SlabReturn<'a>,
    pub(crate) arena: Arena,
    /// `addr >> PAGE_SHIFT` minus the pfn of the frame at host address
    /// `addr`, for every frame of the memory: the memory and its physical
    /// base are both page-aligned (checked at boot), so frames map linearly.
    /// What a free's lookup turns an address into a pfn with, before the
    /// descriptor (which exists only inside the memory) checks it.
    pfn_bias: usize,
    /// Cache `id`'s struct, or null. Written under `registry_lock`.
    registry: [AtomicPtr<Cache<'a>>; MAX_CACHES],
    registry_lock: SpinLock<()>,
    events: [StatWord; NR_SLAB_EVENTS],
    bad: SpinLock<report::BadLog>,
    pub(crate) batch: SpinLock<Option<rcu_free::Batch<'a>>>,
}

/// What a pointer is, by its descriptor.
pub(crate) enum Found<'r, 'a> {
    /// An object boundary of a slab of `cache`.
    Object(&'r Cache<'a>, usize),
    /// The first byte of a large kmalloc folio.
    Large(Pfn, Order),
}

impl<'a> SlabCore<'a> {
    /// Counts `n` events. Slow paths only (an atomic add).
    pub(crate) fn count(&self, event: SlabEvent, n: u64) {
        // Relaxed: a statistic.
        self.events[event as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// The count of `event` so far.
    pub(crate) fn events(&self, event: SlabEvent) -> u64 {
        // Relaxed: a statistic.
        self.events[event as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn record_bad(&self, report: BadObject) {
        self.count(SlabEvent::DebugReports, 1);
        self.bad.lock().with(|log| log.push(report));
    }

    /// Cache `id`'s struct, if it exists (the pointer `place` returned).
    pub(crate) fn cache_ptr(&self, id: usize) -> Option<NonNull<Cache<'a>>> {
        // Acquire: pairs with the Release store of create_cache, so the
        // cache struct written before it is seen whole.
        NonNull::new(self.registry.get(id)?.load(Ordering::Acquire))
    }

    /// Cache `id`, if it exists.
    #[inline]
    pub(crate) fn cache(&self, id: usize) -> Option<&Cache<'a>> {
        // SAFETY: a non-null entry points to a cache placed by create_cache
        // that lives until destroy or the allocator's drop clears the entry
        // (both need every handle to it gone: `CacheRef` by value, `&mut`).
        self.cache_ptr(id).map(|ptr| unsafe { ptr.as_ref() })
    }

    /// The type-tag cache id of the slab `addr` lies in and its offset from
    /// the slab's first byte, by the descriptors (never trusting the
    /// pointer): `None` outside the memory or for a frame not typed slab.
    /// The frees' common check, loads and compares only; what it finds
    /// still needs the object-boundary test.
    #[inline(always)]
    pub(crate) fn slab_of(&self, addr: usize) -> Option<(u16, usize)> {
        let map = self.node.memmap();
        // An address outside the memory gives a pfn the map does not cover
        // (the descriptors describe frames of the memory only), so `page`
        // refuses it; one inside the metadata gives a frame never typed slab.
        let pfn = Pfn(((addr >> PAGE_SHIFT).wrapping_sub(self.pfn_bias)) as u64);
        let page = map.page(pfn)?;
        let (head, _) = decode_compound(pfn, page.compound_word());
        let head_page = if head == pfn { page } else { map.page(head)? };
        let PageType::Slab { cache } = head_page.page_type() else { return None };
        // Frames are page-aligned in the memory (checked at boot), so the
        // slab starts `pfn - head` frames before `addr`'s frame.
        let offset = (addr & (PAGE_SIZE - 1)) + (pfn.0.wrapping_sub(head.0) as usize).wrapping_mul(PAGE_SIZE);
        Some((cache, offset))
    }

    /// The cache whose object starts at `addr` (any cache: kfree's check),
    /// or `None` for anything else (a large kmalloc, a foreign or interior
    /// pointer), which [`SlabCore::lookup`] then names.
    #[inline(always)]
    pub(crate) fn cache_of_object(&self, addr: usize) -> Option<&Cache<'a>> {
        let (id, offset) = self.slab_of(addr)?;
        // SLAB_LARGE and SLAB_UNLISTED are past the registry: None.
        let cache = self.cache(usize::from(id))?;
        cache.layout.index_of(offset).map(|_| cache)
    }

    /// What `addr` is, by its descriptor (never trusting the pointer).
    ///
    /// # Errors
    /// [`SlabError::NotSlabObject`] outside the memory or for a frame not
    /// typed slab (or a slab of no cache); [`SlabError::Misaligned`] for an
    /// address inside a slab but not at an object's start.
    #[inline]
    pub(crate) fn lookup(&self, addr: usize) -> Result<Found<'_, 'a>, SlabError> {
        let map = self.node.memmap();
        let not_slab = SlabError::NotSlabObject(addr);
        let pfn = map.pfn_of_addr(addr).ok_or(not_slab)?;
        let (head, order) = map.compound_head(pfn).ok_or(not_slab)?;
        let page = map.page(head).ok_or(not_slab)?;
        let PageType::Slab { cache } = page.page_type() else { return Err(not_slab) };
        // Frames are page-aligned in the memory (checked at boot), so the
        // slab starts `pfn - head` frames before `addr`'s frame.
        let offset = (addr & (PAGE_SIZE - 1)) + (pfn.0.wrapping_sub(head.0) as usize).wrapping_mul(PAGE_SIZE);
        if cache == SLAB_LARGE {
            return match order {
                Some(order) if offset == 0 => Ok(Found::Large(head, order)),
                _ => Err(SlabError::Misaligned { cache, offset }),
            };
        }
        let cache = self.cache(usize::from(cache)).ok_or(not_slab)?;
        if cache.layout.index_of(offset).is_none() {
            return Err(SlabError::Misaligned { cache: cache.id, offset });
        }
        Ok(Found::Object(cache, addr))
    }
}

/// The slab allocator of one node: caches, kmalloc, kfree_rcu, reports.
///
/// # Examples
/// ```
/// use memdesc::slab::{CacheConfig, SlabAllocator};
/// use memdesc::{MemoryLayout, Node, NodeConfig, PhysAddr, PhysRange, Rcu, RcuConfig, SpinPlatform, PAGE_SIZE};
///
/// #[repr(C, align(4096))]
/// struct Frame([u8; PAGE_SIZE]);
/// let mut frames: Vec<Frame> = (0..512).map(|_| Frame([0; PAGE_SIZE])).collect();
/// // SAFETY: one live, exclusively borrowed allocation of 512 frames.
/// let memory = unsafe { std::slice::from_raw_parts_mut(frames.as_mut_ptr().cast::<u8>(), 512 * PAGE_SIZE) };
/// let ram = [PhysRange::new(0, 512 * PAGE_SIZE as u64)];
/// let layout = MemoryLayout { ram: &ram, reserved: &[] };
/// let node = Node::boot(memory, PhysAddr(0), &layout, NodeConfig::default(), &SpinPlatform)
///     .map_err(memdesc::BootFailed::into_error)?;
///
/// // The slab return outlives the RCU that queues frames to it.
/// let ret = SlabAllocator::slab_return(node);
/// let rcu = Rcu::new(&SpinPlatform, RcuConfig::default())?;
/// let slab = SlabAllocator::new(node, &rcu, &ret)?;
///
/// let cache = slab.create_cache(CacheConfig::new("inode", 200))?;
/// let mut obj = cache.alloc()?;
/// obj.bytes_mut()[0] = 7;
/// drop(obj);
/// let p = slab.kmalloc(100, 8)?;
/// // SAFETY: `p` came from kmalloc and is freed once.
/// unsafe { slab.kfree(p) }?;
/// slab.destroy(cache).map_err(|e| e.to_string())?;
/// drop(slab);
/// assert_eq!(node.audit().allocated, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SlabAllocator<'a> {
    core: NonNull<SlabCore<'a>>,
    home: Pfn,
    node: &'a Node<'a>,
    _core: PhantomData<SlabCore<'a>>,
}

// SAFETY: the core is shared state built from Sync parts (atomics, locks,
// shared references); the handle is a pointer to it.
unsafe impl Sync for SlabAllocator<'_> {}
// SAFETY: as for Sync: nothing in it is tied to a thread.
unsafe impl Send for SlabAllocator<'_> {}
// SAFETY: as for the allocator: locks, atomics and shared references.
unsafe impl Sync for SlabCore<'_> {}
// SAFETY: as for Sync.
unsafe impl Send for SlabCore<'_> {}
// SAFETY: a cache is locks, atomics, a plain config and shared references;
// its sheaves are per-CPU state made exclusive by the `LocalCpu` token of
// `local_enter` (their own argument).
unsafe impl Sync for Cache<'_> {}
// SAFETY: as for Sync.
unsafe impl Send for Cache<'_> {}

impl fmt::Debug for SlabAllocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlabAllocator").field("home", &self.home).finish_non_exhaustive()
    }
}

/// Frames of the smallest order holding `bytes`.
fn order_for_bytes(bytes: usize) -> Option<Order> {
    let pages = bytes.div_ceil(PAGE_SIZE).max(1);
    Order::new(pages.next_power_of_two().trailing_zeros())
}

impl<'a> SlabAllocator<'a> {
    /// The return address of `node`'s TYPESAFE_BY_RCU slabs and kfree_rcu
    /// batches: the embedder creates it before the [`Rcu`] it uses, so it
    /// outlives every queued frame (as `Mmu::table_return`).
    pub fn slab_return(node: &'a Node<'a>) -> SlabReturn<'a> {
        SlabReturn::new(node, SlabFreer::new(node))
    }

    /// An allocator over `node`, freeing through `rcu` into `ret`, with the
    /// kmalloc caches ([`KMALLOC_SIZES`]) created.
    ///
    /// # Errors
    /// [`SlabError::OutOfMemory`] if the node has no frames for the core or
    /// the kmalloc caches (everything taken is given back).
    pub fn new(node: &'a Node<'a>, rcu: &'a Rcu<'a>, ret: &'a SlabReturn<'a>) -> Result<Self, SlabError> {
        if !core::ptr::eq(ret.node(), node) {
            return Err(SlabError::ForeignReturn);
        }
        let order = order_for_bytes(size_of::<SlabCore<'a>>()).ok_or(SlabError::BadSize(0))?;
        let folio = node.alloc_frozen(order, Gfp::KERNEL)?;
        // Any frame of the memory gives the memory's linear map.
        let home_addr = node.memmap().frame_ptr(folio.pfn()).map_or(0, |p| p.as_ptr() as usize);
        let core = SlabCore {
            node,
            rcu,
            ret,
            arena: Arena::new(node.memmap()),
            pfn_bias: (home_addr >> PAGE_SHIFT).wrapping_sub(folio.pfn().0 as usize),
            registry: core::array::from_fn(|_| AtomicPtr::new(core::ptr::null_mut())),
            registry_lock: SpinLock::new(()),
            events: [const { StatWord::new(0) }; NR_SLAB_EVENTS],
            bad: SpinLock::new(report::BadLog::new()),
            batch: SpinLock::new(None),
        };
        let Ok((ptr, home)) = raw::place(folio, core) else {
            return Err(SlabError::BadSize(size_of::<SlabCore<'a>>()));
        };
        let this = Self { core: ptr, home: Pfn(home), node, _core: PhantomData };
        ret.callback().attach(ptr.cast());
        for (index, &size) in KMALLOC_SIZES.iter().enumerate() {
            let config = CacheConfig {
                name: kmalloc::KMALLOC_NAMES[index],
                size,
                align: kmalloc::natural_align(size),
                ctor: None,
                flags: SlabFlags::NONE,
            };
            // The handle is not kept: kmalloc finds its caches by id.
            let cache = this.create_cache(config)?;
            debug_assert_eq!(usize::from(cache.id()), index);
        }
        Ok(this)
    }

    pub(crate) fn core(&self) -> &SlabCore<'a> {
        // SAFETY: placed by `new`, dropped only by `drop` (which has
        // `&mut self`, so no borrow of it remains).
        unsafe { self.core.as_ref() }
    }

    /// The node.
    pub fn node(&self) -> &'a Node<'a> {
        self.node
    }

    /// Creates a cache.
    ///
    /// # Errors
    /// [`SlabError::BadSize`] / [`SlabError::BadAlign`] for a layout no
    /// slab can hold, [`SlabError::TooManyCaches`] past [`MAX_CACHES`],
    /// [`SlabError::OutOfMemory`] without frames for the cache struct.
    pub fn create_cache(&self, config: CacheConfig) -> Result<CacheRef<'_, 'a>, SlabError> {
        let layout = layout::Layout::new(config.size, config.align, config.flags, config.ctor.is_some())?;
        let core = self.core();
        let _registry = core.registry_lock.lock();
        // Relaxed: entries are written only under the registry lock we hold.
        let id = core.registry.iter().position(|e| e.load(Ordering::Relaxed).is_null());
        let id = id.ok_or(SlabError::TooManyCaches)?;
        let order = order_for_bytes(size_of::<Cache<'a>>()).ok_or(SlabError::BadSize(0))?;
        // The per-CPU sheaves, sized by the platform's CPUs, in frames of
        // their own (taken first: a failure below drops them back).
        let nr_cpus = (self.node.platform().nr_cpus() as usize).clamp(1, crate::buddy::MAX_CPUS);
        let storage_order =
            order_for_bytes(sheaf::PerCpuSheaves::storage_bytes(nr_cpus)).ok_or(SlabError::BadSize(0))?;
        let storage = self.node.alloc_frozen(storage_order, Gfp::KERNEL)?;
        let folio = self.node.alloc_frozen(order, Gfp::KERNEL)?;
        let Some(storage_ptr) = self.node.memmap().frame_ptr(storage.pfn()) else {
            return Err(SlabError::BadSize(sheaf::PerCpuSheaves::storage_bytes(nr_cpus)));
        };
        let storage_pfn = storage.into_raw().0;
        // SAFETY: duty 1 of Cache::new: the frames are frozen and given up
        // just above (page-aligned, `storage_bytes` long by the order), and
        // taken back only by `unregister` after the cache struct is dropped.
        let cache =
            unsafe { Cache::new(id as u16, config, layout, core, folio.pfn().0, (storage_ptr, storage_pfn, nr_cpus)) };
        let Ok((ptr, _)) = raw::place(folio, cache) else {
            // SAFETY: duty 1 of take_folio: given up above; the cache
            // struct that used the frames came back and is dropped.
            drop(unsafe { raw::take_folio(self.node, storage_pfn) });
            return Err(SlabError::BadSize(size_of::<Cache<'a>>()));
        };
        // Release: pairs with the Acquire load in SlabCore::cache, so a
        // lookup that finds the pointer sees the cache written by `place`.
        core.registry[id].store(ptr.as_ptr(), Ordering::Release);
        Ok(CacheRef { ptr, slab: self, _cache: PhantomData })
    }

    /// Gives a cache's empty slabs back to the buddy allocator, after
    /// flushing what the per-CPU sheaves let this CPU flush. Returns how
    /// many slabs went back.
    pub fn shrink(&self, cache: &CacheRef<'_, 'a>) -> u64 {
        let c = cache.cache();
        c.sheaves.flush_local(self.node.platform(), &c.slabs);
        c.release_empty(false)
    }

    /// Shrinks every cache, the kmalloc caches included (Linux's
    /// `drop_slab`); returns how many slabs went back.
    pub fn shrink_all(&self) -> u64 {
        let core = self.core();
        let platform = self.node.platform();
        (0..MAX_CACHES)
            .filter_map(|id| core.cache(id))
            .map(|c| {
                c.sheaves.flush_local(platform, &c.slabs);
                c.release_empty(false)
            })
            .sum()
    }

    /// Destroys a cache: flushes every sheaf, gives every slab back and
    /// frees the cache struct (for a TYPESAFE_BY_RCU cache, after a grace
    /// period: so not inside a read section).
    ///
    /// # Errors
    /// [`DestroyError`] with the cache back (still usable) if objects are
    /// live, saying how many; quarantined objects do not count as live.
    pub fn destroy<'s>(&'s self, cache: CacheRef<'s, 'a>) -> Result<(), DestroyError<'s, 'a>> {
        // SAFETY: duty 1 of flush_sheaves: `CacheRef` is not Clone and
        // every `SlabObject` borrows it, so taking it by value means no
        // other handle to the cache exists (a concurrent kfree through the
        // registry would free a non-live object: the caller's bug).
        unsafe { flush_sheaves(cache.ptr) };
        let c = cache.cache();
        let live = c.lists.lock().with(|l| l.inuse - l.quarantined);
        if live > 0 {
            return Err(DestroyError { live, cache });
        }
        c.release_empty(true);
        self.unregister(cache.ptr);
        Ok(())
    }

    /// Clears a cache's registry entry and frees its struct.
    fn unregister(&self, ptr: NonNull<Cache<'a>>) {
        let core = self.core();
        // SAFETY: a placed cache, alive until the unplace below.
        let cache = unsafe { ptr.as_ref() };
        let (id, home, sheaf_home) = (usize::from(cache.id), cache.home, cache.sheaf_home);
        // The cache's counts join the allocator's before it goes.
        let (allocs, frees) = cache.lists.lock().with(|l| (l.allocs, l.frees));
        core.count(SlabEvent::SlabAlloc, allocs);
        core.count(SlabEvent::SlabFree, frees);
        let typesafe = cache.config.flags.contains(SlabFlags::TYPESAFE_BY_RCU);
        core.registry_lock.lock().with(|()| {
            // Relaxed: a lookup that still finds the entry is either a free
            // of a non-live object or a TYPESAFE_BY_RCU reader, which the
            // grace period below waits for; nothing is published by clearing.
            core.registry[id].store(core::ptr::null_mut(), Ordering::Relaxed);
        });
        if typesafe {
            // Lockless readers (`typesafe_words`, inside a section) may hold
            // the cache they looked up from the registry: its struct goes
            // only after they have left (Linux's rcu_barrier in
            // kmem_cache_destroy).
            core.rcu.synchronize();
        }
        // SAFETY: duty 1 of unplace: placed by create_cache at `home`, and
        // this is its one unplace (the entry is cleared; no handle remains).
        drop(unsafe { raw::unplace(self.node, ptr, home) });
        // SAFETY: duty 1 of take_folio: create_cache gave the sheaves'
        // frames up, and the cache struct that used them is dropped.
        drop(unsafe { raw::take_folio(self.node, sheaf_home) });
    }

    /// The counters so far (racy snapshot).
    pub fn events(&self) -> [(SlabEvent, u64); NR_SLAB_EVENTS] {
        let core = self.core();
        SlabEvent::ALL.map(|e| {
            let per_cache = |f: fn(&cache::Lists) -> u64| {
                (0..MAX_CACHES).filter_map(|id| core.cache(id)).map(|c| c.lists.lock().with(|l| f(l))).sum::<u64>()
            };
            let n = match e {
                SlabEvent::SlabsRcuFreed => core.ret.callback().rcu_freed(),
                SlabEvent::SlabAlloc => core.events(e) + per_cache(|l| l.allocs),
                SlabEvent::SlabFree => core.events(e) + per_cache(|l| l.frees),
                _ => core.events(e),
            };
            (e, n)
        })
    }

    /// One counter.
    pub fn event(&self, event: SlabEvent) -> u64 {
        self.events()[event as usize].1
    }

    /// The last bad-object reports (up to [`BAD_OBJECT_LOG`]), oldest first.
    pub fn bad_objects(&self) -> impl Iterator<Item = BadObject> {
        self.core().bad.lock().with(|log| log.snapshot()).into_iter().flatten()
    }
}

impl Drop for SlabAllocator<'_> {
    /// Runs the pending kfree_rcu batches, gives every cache's slabs back
    /// (a cache with live objects is leaked, with its slabs), waits for the
    /// grace periods of TYPESAFE_BY_RCU slabs, and frees the core. Must not
    /// run inside an RCU read section.
    fn drop(&mut self) {
        self.rcu_barrier();
        let core = self.core();
        core.ret.callback().detach();
        for id in 0..MAX_CACHES {
            let Some(ptr) = core.cache_ptr(id) else { continue };
            // SAFETY: duty 1 of flush_sheaves: `&mut self`: every CacheRef
            // and SlabObject borrowed the allocator and is gone.
            unsafe { flush_sheaves(ptr) };
            // SAFETY: placed, alive until unregister below.
            let c = unsafe { ptr.as_ref() };
            c.release_empty(true);
            if c.lists.lock().with(|l| l.slabs) == 0 {
                self.unregister(ptr);
            }
        }
        core.rcu.barrier();
        // SAFETY: duty 1 of unplace: placed by `new` at `home`, unplaced
        // once; `&mut self` means no borrow of it remains.
        drop(unsafe { raw::unplace(self.node, self.core, self.home.0) });
    }
}

/// Flushes every CPU's sheaves of the cache at `ptr` into its slabs.
///
/// # Safety
/// 1. No other reference to the cache exists while this runs (destroy, or
///    the allocator's drop).
unsafe fn flush_sheaves(ptr: NonNull<Cache<'_>>) {
    let cache = ptr.as_ptr();
    // SAFETY: duty 1: the sheaves are borrowed mutably and the slabs shared,
    // disjoint fields of a cache nobody else references; `ptr` is the
    // pointer `place` returned (write permission).
    unsafe { (*cache).sheaves.flush_all(&(*cache).slabs) }
}

/// A cache, by handle: allocate, free, report. Not `Clone`: destroying the
/// cache takes it by value.
pub struct CacheRef<'s, 'a> {
    ptr: NonNull<Cache<'a>>,
    slab: &'s SlabAllocator<'a>,
    _cache: PhantomData<&'s Cache<'a>>,
}

// SAFETY: a shared handle to a Sync cache.
unsafe impl Send for CacheRef<'_, '_> {}
// SAFETY: as for Send.
unsafe impl Sync for CacheRef<'_, '_> {}

impl fmt::Debug for CacheRef<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheRef").field("name", &self.cache().config.name).field("id", &self.cache().id).finish()
    }
}

impl<'s, 'a> CacheRef<'s, 'a> {
    #[inline(always)]
    fn cache(&self) -> &Cache<'a> {
        // SAFETY: placed by create_cache, freed only by destroy (which takes
        // this handle) or the allocator's drop (after `'s`).
        unsafe { self.ptr.as_ref() }
    }

    /// The cache id (the payload of its slabs' type tag).
    pub fn id(&self) -> u16 {
        self.cache().id
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.cache().config
    }

    /// Objects per slab and frames per slab.
    pub fn slab_shape(&self) -> (u16, u64) {
        (self.cache().layout.objects, self.cache().layout.order.nr_pages())
    }

    /// The allocator.
    pub fn allocator(&self) -> &'s SlabAllocator<'a> {
        self.slab
    }

    /// Allocates an object as a handle that frees it when dropped.
    ///
    /// # Errors
    /// [`SlabError::OutOfMemory`] when no slab has a free object and the
    /// buddy allocator has no frames.
    pub fn alloc(&self) -> Result<SlabObject<'_, 'a>, SlabError> {
        let ptr = self.alloc_raw()?;
        Ok(SlabObject { ptr, cache: self.cache() })
    }

    /// Allocates an object as a raw pointer (for adapters).
    ///
    /// # Errors
    /// As [`CacheRef::alloc`].
    #[inline(always)]
    pub fn alloc_raw(&self) -> Result<NonNull<u8>, SlabError> {
        let addr = self.cache().alloc()?;
        Ok(self.cache().core().arena.ptr(addr))
    }

    /// [`CacheRef::alloc_raw`] inside a local section the caller opened:
    /// the per-CPU fast path with no call to the platform (an adapter that
    /// owns its platform enters once, inline, and passes the token). `None`
    /// when no slab has a free object and the buddy allocator has no
    /// frames.
    ///
    /// # Safety
    /// 1. `cpu` came from `local_enter` of the platform this allocator's
    ///    node was booted with (a token of another platform may name a CPU
    ///    another thread holds here).
    #[inline(always)]
    pub unsafe fn alloc_on(&self, cpu: &LocalCpu) -> Option<NonNull<u8>> {
        let cache = self.cache();
        let addr = cache.alloc_on(cpu)?;
        Some(cache.core().arena.ptr(addr))
    }

    /// Frees an object of this cache.
    ///
    /// # Errors
    /// [`SlabError::NotSlabObject`], [`SlabError::WrongCache`],
    /// [`SlabError::Misaligned`] by the descriptor; for a debug cache also
    /// [`SlabError::DoubleFree`] and [`SlabError::BadObject`]. Nothing is
    /// freed on error (a bad object is quarantined).
    ///
    /// # Safety
    /// 1. If `ptr` is an object of this cache, the caller owns it (from
    ///    `alloc_raw`, not freed since) and gives it up: no access after.
    ///    Double frees are detected only by debug caches.
    #[inline(always)]
    pub unsafe fn free_raw(&self, ptr: NonNull<u8>) -> Result<(), SlabError> {
        let addr = ptr.as_ptr() as usize;
        let cache = self.cache();
        if cache.owns(addr) {
            return cache.free(addr);
        }
        self.free_refused(addr)
    }

    /// [`CacheRef::free_raw`] inside a local section the caller opened, as
    /// [`CacheRef::alloc_on`].
    ///
    /// # Errors
    /// As [`CacheRef::free_raw`].
    ///
    /// # Safety
    /// 1. As [`CacheRef::free_raw`]'s duty 1.
    /// 2. As [`CacheRef::alloc_on`]'s duty 1.
    #[inline(always)]
    pub unsafe fn free_on(&self, cpu: &LocalCpu, ptr: NonNull<u8>) -> Result<(), SlabError> {
        let addr = ptr.as_ptr() as usize;
        let cache = self.cache();
        if cache.owns(addr) {
            return cache.free_on(cpu, addr);
        }
        self.free_refused(addr)
    }

    /// A free whose pointer the fast check refused: the full lookup names
    /// what it is (and frees it if a retype raced the check).
    #[cold]
    #[inline(never)]
    fn free_refused(&self, addr: usize) -> Result<(), SlabError> {
        match self.cache().core().lookup(addr)? {
            Found::Object(c, obj) if c.id == self.cache().id => c.free(obj),
            Found::Object(c, _) => Err(SlabError::WrongCache { expected: self.cache().id, found: c.id }),
            Found::Large(..) => Err(SlabError::WrongCache { expected: self.cache().id, found: SLAB_LARGE }),
        }
    }
}

/// A cache refused to be destroyed: objects are still live.
pub struct DestroyError<'s, 'a> {
    /// Live objects (allocated, not quarantined).
    pub live: u64,
    /// The cache, back and usable.
    pub cache: CacheRef<'s, 'a>,
}

impl fmt::Debug for DestroyError<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestroyError").field("live", &self.live).field("cache", &self.cache).finish()
    }
}

impl fmt::Display for DestroyError<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache {} still has {} live objects", self.cache.cache().config.name, self.live)
    }
}

impl core::error::Error for DestroyError<'_, '_> {}

/// An allocated object; dropping it frees it.
#[must_use]
pub struct SlabObject<'c, 'a> {
    ptr: NonNull<u8>,
    cache: &'c Cache<'a>,
}

// SAFETY: the handle owns its object's bytes; the cache is Sync.
unsafe impl Send for SlabObject<'_, '_> {}
// SAFETY: shared access gives `&[u8]` only.
unsafe impl Sync for SlabObject<'_, '_> {}

impl fmt::Debug for SlabObject<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlabObject").field("ptr", &self.ptr).field("cache", &self.cache.config.name).finish()
    }
}

impl<'c, 'a> SlabObject<'c, 'a> {
    /// The object's address.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Whether plain byte access is allowed: not for a TYPESAFE_BY_RCU
    /// cache, whose objects lockless readers may read while the owner
    /// writes (use [`SlabObject::words`] there).
    fn plain(&self) -> bool {
        !self.cache.config.flags.contains(SlabFlags::TYPESAFE_BY_RCU)
    }

    /// The object's bytes (its cache's object size); empty for a
    /// TYPESAFE_BY_RCU cache (see [`SlabObject::words`]).
    pub fn bytes(&self) -> &[u8] {
        if !self.plain() {
            return &[];
        }
        // SAFETY: duty 1 of bytes: the handle owns the object (allocated,
        // not freed; not TYPESAFE_BY_RCU, so no lockless reader) and `&self`
        // excludes the writable view.
        unsafe { self.cache.core().arena.bytes(self.ptr.as_ptr() as usize, self.cache.layout.size) }
    }

    /// The object's bytes, writable; empty for a TYPESAFE_BY_RCU cache.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        if !self.plain() {
            return &mut [];
        }
        // SAFETY: duty 1 of bytes_mut: owned, no lockless reader (as in
        // `bytes`), and `&mut self` makes this the only view.
        unsafe { self.cache.core().arena.bytes_mut(self.ptr.as_ptr() as usize, self.cache.layout.size) }
    }

    /// The object's whole 8-byte words, as atomics: how a TYPESAFE_BY_RCU
    /// object's owner writes what lockless readers
    /// ([`SlabAllocator::typesafe_words`]) read. Any cache's object may be
    /// used this way.
    pub fn words(&self) -> &[crate::sync::FrameWord] {
        // Only atomic accesses reach these words while the handle lives:
        // the owner's (here) and TYPESAFE_BY_RCU readers'; the plain views
        // above borrow the handle and are refused for such caches.
        self.cache.core().arena.words(self.ptr.as_ptr() as usize, self.cache.layout.size / 8)
    }

    /// Frees the object after an RCU grace period
    /// ([`SlabAllocator::kfree_rcu`]).
    ///
    /// # Errors
    /// As [`SlabAllocator::kfree_rcu`] (cannot fail for a live object).
    pub fn kfree_rcu(self) -> Result<(), SlabError> {
        let cache = self.cache;
        // The handle owned the object and gives it up here.
        cache.core().kfree_rcu(self.into_raw().as_ptr() as usize)
    }

    /// Gives the object up as a raw pointer (free it with
    /// [`CacheRef::free_raw`]).
    pub fn into_raw(self) -> NonNull<u8> {
        let ptr = self.ptr;
        core::mem::forget(self);
        ptr
    }
}

impl Drop for SlabObject<'_, '_> {
    fn drop(&mut self) {
        // An object this handle owns frees without error, except a debug
        // cache's bad object, which is quarantined and reported there.
        let _ = self.cache.free(self.ptr.as_ptr() as usize);
    }
}
