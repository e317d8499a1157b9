//! Descriptors as folios: the type tag, the refcount states, compound
//! folios, and the handles that make the protocols types.
//!
//! # Design
//! A *folio* is a power-of-two run of frames, `2^order` of them, naturally
//! aligned. Its first frame is the *head*: it holds the folio's refcount, type
//! tag, flags and lock. The others are *tails*: their compound word names the
//! head, their refcount stays 0 and their type is [`PageType::Tail`].
//!
//! The refcount word of a head has these states:
//!
//! | value | state | who moves it |
//! |---|---|---|
//! | 0, type free | free | the allocator, under its locks |
//! | 0, type owned | frozen: one exclusive owner | [`FolioRef::try_freeze`] in, [`FrozenFolio::unfreeze`] out |
//! | 1 ..= [`REF_MAX`] | counted (a pin of a small folio is [`GUP_PIN_COUNTING_BIAS`] of them) | [`Clone`] / [`Drop`] of [`FolioRef`], [`FolioRefs`], [`PinnedFolio`]; [`try_get_refs`] |
//! | above [`REF_MAX`] | overflow band: a leak of references | refused by [`try_get`]; a [`Clone`] past it panics like `Arc` |
//!
//! The handles are the ownership levels:
//! - [`FolioRef`]: one counted reference. Drop puts it; the last put hands
//!   the folio back to its owner (the allocator) through [`FolioRelease`].
//! - [`FrozenFolio`]: the exclusive owner of a frozen folio. The only way to
//!   change the type tag or owner words. Drop frees the folio.
//! - [`LockedFolio`]: the folio lock, held while borrowing a reference.
//! - [`FolioRefs`]: `n` counted references to one folio, put in one
//!   subtraction (GUP's one add per folio).
//! - [`PinnedFolio`]: `n` FOLL_PIN pins (P6): on a large folio `n` of the
//!   head's `pincount` plus `n` references, on a small one
//!   `n * GUP_PIN_COUNTING_BIAS` references. Drop unpins them all.
//!
//! [`try_get_refs`] is the one speculative-get protocol (P1): every lockless
//! user (pfn scanners, GUP-fast, compaction) goes through it, [`try_get`]
//! being its one-reference case. Freeze and split (P2) are
//! [`FolioRef::try_freeze`] (or `try_freeze_with` for counts that include
//! raw references), [`FrozenFolio::split`] or [`FrozenFolio::split_around`],
//! and [`SplitFolios::unfreeze_with`]. Allocation publishes a newly typed
//! folio with one Release store (P3, in `FrozenFolio::publish`).
//!
//! Neighbours: below, [`crate::memmap`] owns the raw descriptor; above,
//! [`crate::buddy`] implements [`FolioRelease`] and creates folios.

mod flags;
mod handle;
mod lock;
mod pin;
mod ptype;
mod raw;
mod refs;
mod speculative;
mod split;

pub use flags::PageFlags;
pub use handle::{
    BadPageReason, CopyError, FolioRef, FolioRelease, FreezeError, FreezeFailed, FrozenFolio, UnfreezeError,
    UnfreezeFailed, UnfreezeRefusal,
};
pub use lock::LockedFolio;
pub use pin::{PinError, PinFailed, PinnedFolio, GUP_PIN_COUNTING_BIAS};
pub use ptype::PageType;
pub use raw::RawError;
pub use refs::{FolioRefs, RefOverflow};
pub use speculative::{try_get, try_get_refs, GetError};
pub use split::{SplitError, SplitFailed, SplitFolios, UnfreezeSplitError};

pub(crate) use raw::raw_head;

pub(crate) use handle::sealed;

use crate::memmap::{Page, Pfn};
use crate::sync::Ordering;
use core::fmt;

/// The largest folio order (4 MiB with 4 KiB frames).
pub const MAX_ORDER: u32 = 10;

/// The largest counted refcount; above it is the overflow band.
pub const REF_MAX: u32 = 1 << 30;

/// A folio order, `0..=MAX_ORDER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Order(u8);

impl Order {
    /// Order 0: one frame.
    pub const ZERO: Order = Order(0);
    /// Order 1: two frames.
    pub const ONE: Order = Order(1);
    /// Order 2: four frames.
    pub const TWO: Order = Order(2);
    /// Order 3: eight frames (the largest order the per-CPU lists cache).
    pub const THREE: Order = Order(3);
    /// The order of a PMD-mapped huge page (2 MiB with 4 KiB frames). In
    /// production it is also the pageblock order; under the model checker
    /// pageblocks shrink and this does not.
    pub const PMD: Order = Order(9);
    /// The pageblock order (2 MiB).
    pub const PAGEBLOCK: Order = Order(crate::memmap::PAGEBLOCK_ORDER as u8);
    /// The largest order.
    pub const MAX: Order = Order(MAX_ORDER as u8);

    /// The order `order`, if it is at most [`MAX_ORDER`].
    pub const fn new(order: u32) -> Option<Order> {
        if order <= MAX_ORDER {
            Some(Order(order as u8))
        } else {
            None
        }
    }

    /// The order as a number.
    #[inline(always)]
    pub const fn get(self) -> u32 {
        self.0 as u32
    }

    /// Frames in a folio of this order.
    #[inline(always)]
    pub const fn nr_pages(self) -> u64 {
        1 << self.0
    }
}

/// An order above [`MAX_ORDER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderTooLarge(pub u32);

impl fmt::Display for OrderTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {} is above the largest order, {MAX_ORDER}", self.0)
    }
}

impl core::error::Error for OrderTooLarge {}

impl TryFrom<u32> for Order {
    type Error = OrderTooLarge;

    fn try_from(order: u32) -> Result<Self, OrderTooLarge> {
        Order::new(order).ok_or(OrderTooLarge(order))
    }
}

impl From<Order> for u32 {
    fn from(order: Order) -> u32 {
        order.get()
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// The compound word: bit 0 set = tail, bits 1.. = head pfn. Bit 0 clear =
// head or single page, bits 1..=4 = the folio's order.
const COMPOUND_TAIL: u64 = 1;

/// The compound word of a tail of the folio headed at `head`.
#[inline(always)]
pub(crate) const fn tail_word(head: Pfn) -> u64 {
    head.0 << 1 | COMPOUND_TAIL
}

/// The compound word of a head of order `order`.
#[inline(always)]
pub(crate) const fn head_word(order: Order) -> u64 {
    (order.0 as u64) << 1
}

/// Decodes a compound word read at `pfn` into (head pfn, order if head).
#[inline(always)]
pub(crate) const fn decode_compound(pfn: Pfn, word: u64) -> (Pfn, Option<Order>) {
    if word & COMPOUND_TAIL != 0 {
        (Pfn(word >> 1), None)
    } else {
        (pfn, Some(Order(((word >> 1) & 0xf) as u8)))
    }
}

/// Snapshots of descriptor state, for anyone (racy by design: the values may
/// change before the caller looks at them).
impl Page {
    /// The type tag, as a snapshot.
    #[inline(always)]
    pub fn page_type(&self) -> PageType {
        // Relaxed: a snapshot. Callers that act on the type hold a reference
        // (whose Acquire get, P1.3, ordered this read after the publication,
        // P3.3) or the lock that owns the frame.
        PageType::decode(self.ty.load(Ordering::Relaxed))
    }

    /// The refcount, as a snapshot.
    #[inline(always)]
    pub fn ref_count(&self) -> u32 {
        // Relaxed: a snapshot for reports and checks; nothing is ordered by it.
        self.refcount.load(Ordering::Relaxed)
    }

    /// The flags, as a snapshot.
    #[inline(always)]
    pub fn flags(&self) -> PageFlags {
        // Relaxed: a snapshot; lock acquisition orders through its own RMW.
        PageFlags(self.flags.load(Ordering::Relaxed))
    }

    /// The page-table mapcount, as a snapshot.
    #[inline(always)]
    pub fn map_count(&self) -> i32 {
        // Relaxed: a snapshot for checks at free time, when the owner holds
        // the folio exclusively.
        self.mapcount.load(Ordering::Relaxed)
    }

    /// The raw compound word, as a snapshot.
    #[inline(always)]
    pub(crate) fn compound_word(&self) -> u64 {
        // Relaxed: P1.2 and P1.4 read it racily; the Acquire get (P1.3)
        // between them is what makes the recheck meaningful.
        self.compound.load(Ordering::Relaxed)
    }

    /// Writes the type tag. Only the frame's exclusive owner calls this.
    #[inline(always)]
    pub(crate) fn set_type(&self, ty: PageType) {
        // Relaxed: the writer owns the frame exclusively; the type reaches
        // other CPUs through the Release that publishes the folio (P3.3 in
        // FrozenFolio::publish, P2.5 in FrozenFolio::unfreeze) or through the
        // lock that owns free frames.
        self.ty.store(ty.encode(), Ordering::Relaxed);
    }

    /// Writes the compound word. Only the frame's exclusive owner calls this.
    #[inline(always)]
    pub(crate) fn set_compound(&self, word: u64) {
        // Relaxed: exclusive owner; published like `set_type` (P2.2, P3.1).
        self.compound.store(word, Ordering::Relaxed);
    }
}

/// Compound-info snapshots by pfn, for reports, audits and race replays.
impl crate::memmap::MemMap<'_> {
    /// The head of the folio `pfn` belongs to by its compound word, and its
    /// order if `pfn` is a head; `None` for a pfn outside the map. A racy
    /// snapshot, like [`Page::page_type`].
    pub fn compound_head(&self, pfn: Pfn) -> Option<(Pfn, Option<Order>)> {
        Some(decode_compound(pfn, self.page(pfn)?.compound_word()))
    }
}

#[cfg(all(test, not(memdesc_loom)))]
mod tests;

#[cfg(all(test, memdesc_loom))]
mod loom;
