//! P2: splitting a frozen folio into smaller folios.
//!
//! The caller froze the folio at its exact expected refcount (P2.1), so no
//! reference exists and no speculative getter can take one. The split then
//! rewrites the compound words of the new heads and tails (P2.2–P2.3), and
//! hands each new folio but the first to the caller, still frozen, to be
//! unfrozen (P2.5, Release) or freed; the original head comes back last, so
//! the caller unfreezes it after all the others (P2.6), like Linux's
//! `__folio_split`.

use super::{head_word, tail_word, FolioRelease, FrozenFolio, Order, PageFlags, PageType};
use core::fmt;

/// Why a split was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// The new order is not smaller than the folio's.
    NotSmaller {
        /// The folio's order.
        order: Order,
        /// The requested order.
        new_order: Order,
    },
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSmaller { order, new_order } => {
                write!(f, "cannot split an order-{order} folio to order {new_order}")
            }
        }
    }
}

impl core::error::Error for SplitError {}

impl<'a, R: FolioRelease> FrozenFolio<'a, R> {
    /// Splits this folio into folios of `new_order` (P2.2-P2.4).
    ///
    /// Every new folio except the first is passed to `each`, frozen, with the
    /// original's type and flags; the first (this head, now of `new_order`)
    /// is returned, so the caller unfreezes it last (P2.6).
    ///
    /// # Errors
    /// [`SplitError::NotSmaller`] with the folio back if `new_order` is not
    /// below its order.
    pub fn split(
        self,
        new_order: Order,
        mut each: impl FnMut(FrozenFolio<'a, R>),
    ) -> Result<FrozenFolio<'a, R>, (FrozenFolio<'a, R>, SplitError)> {
        let order = self.order();
        if new_order >= order {
            return Err((self, SplitError::NotSmaller { order, new_order }));
        }
        let owner = self.owner();
        let map = owner.memmap();
        let head_pfn = self.pfn();
        let ty = self.page_type();
        // The lock bits stay with the original head: a piece comes out
        // unlocked, with no sleepers to wake.
        let flags = PageFlags(self.head().flags().0 & !(PageFlags::LOCKED.0 | PageFlags::WAITERS.0));
        let step = new_order.nr_pages();
        // P2.2: each new head gets the type, flags and its own compound
        // layout; its tails point at it. Stores are Relaxed (set_compound,
        // set_type): we own every frame of the frozen folio, and the Release
        // unfreeze of P2.5 publishes them.
        let mut sub = step;
        while sub < order.nr_pages() {
            let sub_pfn = head_pfn.add(sub);
            let sub_head = map.page_of(sub_pfn);
            for t in 1..step {
                map.page_of(sub_pfn.add(t)).set_compound(tail_word(sub_pfn));
            }
            // Relaxed: exclusive owner of the frozen folio; published by P2.5.
            sub_head.flags.store(flags.0, crate::sync::Ordering::Relaxed);
            sub_head.set_type(if matches!(ty, PageType::Tail) { PageType::Kernel } else { ty });
            sub_head.set_compound(head_word(new_order));
            for word in 0..crate::memmap::OWNER_WORDS {
                // SAFETY: duty 1 of set_owner_word: every frame of the frozen
                // folio is exclusively ours (type invariant of `self`); an
                // ex-tail's words are stale, and a new head starts clean.
                unsafe { sub_head.set_owner_word(word, 0) };
            }
            sub += step;
        }
        // P2.3: the original head takes the new order.
        self.head().set_compound(head_word(new_order));
        // P2.4: hand out the new folios, still frozen.
        let mut sub = step;
        while sub < order.nr_pages() {
            // SAFETY: duty 1: the sub-folio is allocated (it carries the
            // original's type), its refcount is 0 (tails always are), and
            // this loop creates its only handle.
            each(unsafe { FrozenFolio::from_owned(owner, map.page_of(head_pfn.add(sub))) });
            sub += step;
        }
        // P2.6: the original comes back last.
        Ok(self)
    }
}
