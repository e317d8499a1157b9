//! The raw page descriptor: one per 4 KiB frame, 64 bytes.
//!
//! This module owns the layout and the only `unsafe` on descriptor words. The
//! atomic words are interpreted by the folio layer ([`crate::folio`]); the four
//! *owner words* belong to whoever owns the frame (the buddy free lists, the
//! per-CPU lists, later the slab or the page cache) and are reached only
//! through the `unsafe` accessors below, whose callers prove ownership by a
//! lock guard, a frozen folio or a held reference plus the type tag (P3).
//!
//! Layout (bytes):
//!
//! | offset | word | meaning (see [`crate::folio`]) |
//! |---|---|---|
//! | 0 | `flags` | page flags (`PG_locked`, `PG_waiters`, …) |
//! | 8 | `compound` | head/tail link: tail bit + head pfn, or head order |
//! | 16 | `ty` | the type tag (P3) |
//! | 20 | `refcount` | 0 = free or frozen, ≥ 1 = counted (P1, P2) |
//! | 24 | `mapcount` | page-table mappings of this page |
//! | 28 | `pincount` | FOLL_PIN count of a large folio (on its head) |
//! | 32 | owner words 0–3 | owner-specific (free-list links, slab state, …) |

use crate::sync::{AtomicI32, AtomicU32, AtomicU64, UnsafeCell};

/// How many owner words a descriptor has.
pub const OWNER_WORDS: usize = 4;

/// A frame's descriptor (Linux `struct page`).
///
/// `repr(C)` fixes the layout the table above documents and the compile-time
/// size check relies on; `align(64)` puts each descriptor on its own cache
/// line so two CPUs working on neighbouring frames never share a line.
#[repr(C)]
#[cfg_attr(not(memdesc_loom), repr(align(64)))]
pub struct Page {
    pub(crate) flags: AtomicU64,
    pub(crate) compound: AtomicU64,
    pub(crate) ty: AtomicU32,
    pub(crate) refcount: AtomicU32,
    pub(crate) mapcount: AtomicI32,
    pub(crate) pincount: AtomicU32,
    owner: [UnsafeCell<u64>; OWNER_WORDS],
    /// Under the model the owner words are loom cells, too large and of the
    /// wrong layout for an RCU head; the head gets this plain side storage
    /// instead (see [`Page::rcu_head_storage`]).
    #[cfg(memdesc_loom)]
    rcu_head: core::cell::UnsafeCell<core::mem::MaybeUninit<[u64; RCU_HEAD_WORDS]>>,
    /// Under the model, seed 004's historical `mapping` word (Linux's
    /// `page->mapping`, which the slab's RCU head overlapped) as Linux
    /// accessed it, with READ_ONCE/WRITE_ONCE: a relaxed atomic, so the
    /// historical design's races are ordering bugs loom explores rather
    /// than plain-cell races it reports at once. See
    /// [`Page::historical_mapping`].
    #[cfg(all(memdesc_loom, any(memdesc_historical, feature = "failpoints")))]
    mapping: AtomicU64,
}

/// Words of the side storage an RCU head uses under the model.
#[cfg(memdesc_loom)]
const RCU_HEAD_WORDS: usize = 16;

/// Bytes an RCU head may occupy in a descriptor ([`Page::rcu_head_storage`]):
/// the owner words in production.
#[cfg(not(memdesc_loom))]
pub(crate) const RCU_HEAD_BYTES: usize = OWNER_WORDS * 8;
/// Bytes an RCU head may occupy in a descriptor: the model's side storage.
#[cfg(memdesc_loom)]
pub(crate) const RCU_HEAD_BYTES: usize = RCU_HEAD_WORDS * 8;
/// The alignment [`Page::rcu_head_storage`] guarantees.
pub(crate) const RCU_HEAD_ALIGN: usize = 8;

/// Bytes per descriptor (64 in production; larger under the model checker,
/// whose atomics carry bookkeeping).
pub const DESCRIPTOR_SIZE: usize = core::mem::size_of::<Page>();

// The quality bar of DESIGN.md §5: at most 64 bytes per 4 KiB frame.
#[cfg(not(memdesc_loom))]
const _: () = assert!(core::mem::size_of::<Page>() == 64);
#[cfg(not(memdesc_loom))]
const _: () = assert!(core::mem::align_of::<Page>() == 64);

// SAFETY: the atomic words are Sync by themselves. The owner words are plain
// cells, but every access goes through `owner_word`/`set_owner_word`, whose
// callers must own the words exclusively (a lock, a frozen folio, or a held
// reference plus a type that makes them read-only), and every use of the
// RCU head storage has the same duty (`rcu_head_storage`); that is the
// argument for sharing descriptors between threads.
unsafe impl Sync for Page {}
// SAFETY: a descriptor holds no thread-affine state.
unsafe impl Send for Page {}

impl Page {
    /// A descriptor in its boot state: all words zero.
    pub(crate) fn new() -> Self {
        Self {
            flags: AtomicU64::new(0),
            compound: AtomicU64::new(0),
            ty: AtomicU32::new(0),
            refcount: AtomicU32::new(0),
            mapcount: AtomicI32::new(0),
            pincount: AtomicU32::new(0),
            owner: [UnsafeCell::new(0), UnsafeCell::new(0), UnsafeCell::new(0), UnsafeCell::new(0)],
            #[cfg(memdesc_loom)]
            rcu_head: core::cell::UnsafeCell::new(core::mem::MaybeUninit::uninit()),
            #[cfg(all(memdesc_loom, any(memdesc_historical, feature = "failpoints")))]
            mapping: AtomicU64::new(0),
        }
    }

    /// Where an RCU head queued for this frame lives while its folio waits
    /// for a grace period (P5: no heap): [`RCU_HEAD_BYTES`] bytes aligned to
    /// [`RCU_HEAD_ALIGN`], overlapping the owner words in production (a
    /// plain side storage under the model, whose owner words are loom
    /// cells). Computing the pointer is safe; using it is not.
    ///
    /// Duties of whoever reads or writes through the pointer:
    /// 1. It owns the folio headed here exclusively (frozen, its handle
    ///    given up for as long as the head is in use), so nothing else reads
    ///    or writes the owner words meanwhile (the owner-word accessors'
    ///    duty 1, for every word at once).
    /// 2. It accesses at most [`RCU_HEAD_BYTES`] bytes, only through
    ///    interior-mutable types (atomics, cells): the descriptor is shared
    ///    (`&Page`), so the bytes may be written only where `UnsafeCell`
    ///    allows it, and a later owner-word write must not invalidate a
    ///    reference to the head that is still live.
    /// 3. It reads a value only after writing one of that type: the bytes
    ///    are uninitialised under the model and hold owner words otherwise.
    #[inline(always)]
    pub(crate) fn rcu_head_storage(&self) -> *mut u8 {
        // The whole array, by place projection from `&self` (no reference
        // to one cell, whose provenance would cover 8 bytes only). Every
        // byte is inside an UnsafeCell, so writing through a pointer derived
        // from a shared reference is allowed.
        #[cfg(not(memdesc_loom))]
        let storage = core::ptr::addr_of!(self.owner).cast::<u8>().cast_mut();
        #[cfg(memdesc_loom)]
        let storage = self.rcu_head.get().cast::<u8>();
        storage
    }

    /// Reads owner word `index`.
    ///
    /// # Safety
    /// 1. No other thread writes this word concurrently: the caller holds the
    ///    lock that owns the frame in its current state (the zone lock for a
    ///    free block, the per-CPU list lock for a pcp page), or the folio is
    ///    frozen and owned by the caller, or the caller holds a reference and
    ///    the owner publishes the word before the reference became visible.
    #[inline(always)]
    pub(crate) unsafe fn owner_word(&self, index: usize) -> u64 {
        debug_assert!(index < OWNER_WORDS);
        // SAFETY: duty 1 (no concurrent writer) is the caller's.
        self.owner[index].with(|word| unsafe { *word })
    }

    /// Writes owner word `index`.
    ///
    /// # Safety
    /// 1. The caller owns the frame exclusively in its current state (the
    ///    lock that owns free or pcp frames, or a frozen folio), so no other
    ///    thread reads or writes the word concurrently.
    #[inline(always)]
    pub(crate) unsafe fn set_owner_word(&self, index: usize, value: u64) {
        debug_assert!(index < OWNER_WORDS);
        // SAFETY: duty 1 (exclusive ownership) is the caller's.
        self.owner[index].with_mut(|word| unsafe { *word = value })
    }
}

/// The owner word that plays Linux's `page->mapping` in seed 004's
/// historical design (`migrate::historical`): the word a slab reuses.
#[cfg(any(memdesc_historical, feature = "failpoints"))]
pub(crate) const HISTORICAL_MAPPING_WORD: usize = 0;

/// Seed 004's historical design only (`migrate::historical`): "movable"
/// read from a word other owners reuse. Never used by the real protocol.
#[cfg(any(memdesc_historical, feature = "failpoints"))]
impl Page {
    /// Reads the historical `mapping` word as Linux did (READ_ONCE): an
    /// atomic view of owner word [`HISTORICAL_MAPPING_WORD`], or its
    /// stand-in under the model.
    ///
    /// # Safety
    /// 1. Nobody accesses the owner word concurrently except through these
    ///    two historical accessors (both atomic). A counted frame's owner
    ///    words are written only while frozen or free, which a reference
    ///    excludes, so a reader holding a reference meets only the
    ///    historical writers.
    #[inline(always)]
    pub(crate) unsafe fn historical_mapping(&self) -> u64 {
        #[cfg(memdesc_loom)]
        let word = self.mapping.load(crate::sync::Ordering::Relaxed); // Relaxed: READ_ONCE (below).
        #[cfg(not(memdesc_loom))]
        let word = self.owner[HISTORICAL_MAPPING_WORD].with_mut(|p| {
            // SAFETY: the cell is 8-aligned (`repr(C)`, offset 32 of a
            // 64-aligned descriptor) and lives as long as `self`; duty 1
            // makes every concurrent access atomic.
            let word = unsafe { crate::sync::AtomicU64::from_ptr(p) };
            // Relaxed: READ_ONCE, as Linux read it; the historical barriers
            // (fences in migrate::historical) are what order it, or fail to.
            word.load(crate::sync::Ordering::Relaxed)
        });
        word
    }

    /// Writes the historical `mapping` word (WRITE_ONCE).
    ///
    /// # Safety
    /// 1. As for [`Page::historical_mapping`]: every concurrent access of
    ///    the owner word goes through these accessors.
    #[inline(always)]
    pub(crate) unsafe fn set_historical_mapping(&self, value: u64) {
        #[cfg(memdesc_loom)]
        self.mapping.store(value, crate::sync::Ordering::Relaxed); // Relaxed: WRITE_ONCE (below).
        #[cfg(not(memdesc_loom))]
        self.owner[HISTORICAL_MAPPING_WORD].with_mut(|p| {
            // SAFETY: as in historical_mapping.
            let word = unsafe { crate::sync::AtomicU64::from_ptr(p) };
            // Relaxed: WRITE_ONCE; the historical fences order it, or fail to.
            word.store(value, crate::sync::Ordering::Relaxed);
        });
    }
}

impl core::fmt::Debug for Page {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use crate::sync::Ordering::Relaxed;
        // Relaxed: a debugging snapshot; the words may change as we read.
        f.debug_struct("Page")
            .field("flags", &self.flags.load(Relaxed))
            .field("compound", &self.compound.load(Relaxed))
            .field("ty", &self.ty.load(Relaxed))
            .field("refcount", &self.refcount.load(Relaxed))
            .finish_non_exhaustive()
    }
}
