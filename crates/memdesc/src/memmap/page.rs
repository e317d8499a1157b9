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
}

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
// reference plus a type that makes them read-only); that is the argument for
// sharing descriptors between threads.
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
        }
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
