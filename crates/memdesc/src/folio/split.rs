//! P2: splitting a frozen folio into smaller folios.
//!
//! The caller froze the folio at its exact expected refcount (P2.1), so no
//! reference exists and no speculative getter can take one. The split then
//! rewrites the compound words of the new heads and tails (P2.2–P2.3), all
//! before it returns: no caller code runs while the folio is half split. It
//! returns the pieces, still frozen, as an owning iterator ([`SplitFolios`])
//! that yields every new folio and then the original head last, so the
//! caller unfreezes it after all the others (P2.5, P2.6), like Linux's
//! `__folio_split`. Pieces the caller does not take (it stopped early, or
//! panicked) are freed when the iterator drops: none leaks.

use super::{head_word, tail_word, FolioRelease, FrozenFolio, Order, PageFlags, PageType};
use core::fmt;

/// Why a split was refused (without the folio: `'static`, for `?`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitFailed {
    /// The new order is not smaller than the folio's.
    NotSmaller {
        /// The folio's order.
        order: Order,
        /// The requested order.
        new_order: Order,
    },
}

impl fmt::Display for SplitFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSmaller { order, new_order } => {
                write!(f, "cannot split an order-{order} folio to order {new_order}")
            }
        }
    }
}

impl core::error::Error for SplitFailed {}

/// A refused split: the folio comes back, still frozen and unchanged.
pub struct SplitError<'a, R: FolioRelease> {
    /// The folio the caller passed in.
    pub folio: FrozenFolio<'a, R>,
    /// Why.
    pub reason: SplitFailed,
}

impl<'a, R: FolioRelease> SplitError<'a, R> {
    /// The folio back, and the error without it.
    pub fn into_parts(self) -> (FrozenFolio<'a, R>, SplitFailed) {
        (self.folio, self.reason)
    }

    /// The error without the folio, which is freed.
    pub fn into_failed(self) -> SplitFailed {
        self.reason
    }
}

impl<R: FolioRelease> From<SplitError<'_, R>> for SplitFailed {
    fn from(e: SplitError<'_, R>) -> Self {
        e.reason
    }
}

impl<R: FolioRelease> fmt::Debug for SplitError<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitError").field("pfn", &self.folio.pfn()).field("reason", &self.reason).finish()
    }
}

impl<R: FolioRelease> fmt::Display for SplitError<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "folio {}: {}", self.folio.pfn(), self.reason)
    }
}

impl<R: FolioRelease> core::error::Error for SplitError<'_, R> {}

/// The pieces of a split folio, each frozen: every new folio in pfn order,
/// then the original head (now of the new order) last (P2.6).
///
/// Owns the pieces it has not yielded and frees them on drop.
#[must_use = "dropping the pieces frees them"]
pub struct SplitFolios<'a, R: FolioRelease> {
    /// The original head; yielded last.
    first: Option<FrozenFolio<'a, R>>,
    owner: &'a R,
    head_pfn: crate::memmap::Pfn,
    new_order: Order,
    /// Index of the next new folio to yield (1-based: piece 0 is `first`).
    next: u64,
    /// How many pieces in all, the first included.
    count: u64,
}

impl<'a, R: FolioRelease> SplitFolios<'a, R> {
    /// The order of every piece.
    pub fn new_order(&self) -> Order {
        self.new_order
    }
}

impl<'a, R: FolioRelease> Iterator for SplitFolios<'a, R> {
    type Item = FrozenFolio<'a, R>;

    fn next(&mut self) -> Option<FrozenFolio<'a, R>> {
        if self.next < self.count {
            let pfn = self.head_pfn.add(self.next * self.new_order.nr_pages());
            self.next += 1;
            // SAFETY: duty 1 of from_owned: the piece is allocated (split
            // gave it the original's type), its refcount is 0 (it was a tail
            // of a frozen folio), and `next` moves past it, so this is the
            // only handle ever made for it.
            return Some(unsafe { FrozenFolio::from_owned(self.owner, self.owner.memmap().page_of(pfn)) });
        }
        // P2.6: the original comes back last.
        if self.first.is_some() {
            crate::platform::failpoint!(self.owner.platform(), SplitUnfreezeHead);
        }
        self.first.take()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.count - self.next) as usize + usize::from(self.first.is_some());
        (left, Some(left))
    }
}

impl<R: FolioRelease> ExactSizeIterator for SplitFolios<'_, R> {}

impl<R: FolioRelease> Drop for SplitFolios<'_, R> {
    fn drop(&mut self) {
        // Pieces nobody took are ours: free each (a FrozenFolio's drop).
        for piece in self.by_ref() {
            drop(piece);
        }
    }
}

impl<R: FolioRelease> fmt::Debug for SplitFolios<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitFolios")
            .field("head", &self.head_pfn)
            .field("new_order", &self.new_order)
            .field("left", &self.len())
            .finish()
    }
}

impl<'a, R: FolioRelease> FrozenFolio<'a, R> {
    /// Splits this folio into folios of `new_order` (P2.2-P2.4) and returns
    /// them, frozen, as an iterator that yields the new folios first and the
    /// original head last (unfreeze them in that order: P2.5, P2.6). Each
    /// piece has the original's type and flags (less the lock bits) and
    /// zeroed owner words.
    ///
    /// # Errors
    /// [`SplitError`] with the folio back, unchanged, if `new_order` is not
    /// below its order.
    pub fn split(self, new_order: Order) -> Result<SplitFolios<'a, R>, SplitError<'a, R>> {
        let order = self.order();
        if new_order >= order {
            return Err(SplitError { folio: self, reason: SplitFailed::NotSmaller { order, new_order } });
        }
        let owner = self.owner();
        let map = owner.memmap();
        let head_pfn = self.pfn();
        let ty = self.page_type();
        // The lock bits stay with the original head: a piece comes out
        // unlocked, with no sleepers to wake.
        let flags = PageFlags(self.head().flags().0 & !(PageFlags::LOCKED.0 | PageFlags::WAITERS.0));
        let step = new_order.nr_pages();
        crate::platform::failpoint!(owner.platform(), SplitFrozen);
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
        crate::platform::failpoint!(owner.platform(), SplitPiecesWritten);
        // P2.4: the new folios go to the caller still frozen, through the
        // iterator, which frees any the caller does not take.
        let count = order.nr_pages() / step;
        Ok(SplitFolios { first: Some(self), owner, head_pfn, new_order, next: 1, count })
    }
}
