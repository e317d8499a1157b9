//! P2: splitting a frozen folio into smaller folios.
//!
//! The caller froze the folio at its exact expected refcount (P2.1), so no
//! reference exists and no speculative getter can take one. Two layouts:
//!
//! - *uniform* ([`FrozenFolio::split`]): every piece has the new order;
//! - *around a target* ([`FrozenFolio::split_around`], Linux 6.15's
//!   `folio_split`): the piece holding the target pfn has the new order and
//!   the rest stay in the largest aligned pieces, as a buddy split would
//!   leave them (order 9 around one page: ten folios of orders 8, 7, …, 1,
//!   0 and the target's 0, instead of 512).
//!
//! The split writes the original head's new order (P2.3) and returns the
//! pieces, still frozen, as an owning iterator ([`SplitFolios`]). Each new
//! piece's compound info, type and flags are written as the iterator hands
//! it out (P2.2), and the original head comes out last, after every piece
//! has been rewritten: a getter that reads a tail not yet rewritten finds
//! the original head, still frozen, and fails (P1.3). So the caller
//! unfreezes the original last (P2.6), like Linux's `__folio_split`;
//! [`SplitFolios::unfreeze_with`] does the whole unfreeze in that order.
//! Pieces the caller does not take (it stopped early, or panicked) are
//! rewritten and freed when the iterator drops: none leaks.

use super::{
    head_word, tail_word, FolioRef, FolioRelease, FrozenFolio, Order, PageFlags, PageType, UnfreezeFailed,
    UnfreezeRefusal,
};
use crate::memmap::Pfn;
use core::fmt;
use core::num::NonZeroU32;

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
    /// The target of [`FrozenFolio::split_around`] is not in the folio.
    NotInFolio {
        /// The target pfn.
        target: Pfn,
    },
}

impl fmt::Display for SplitFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSmaller { order, new_order } => {
                write!(f, "cannot split an order-{order} folio to order {new_order}")
            }
            Self::NotInFolio { target } => write!(f, "split target {target} is not in the folio"),
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
/// then the original head (now of its piece's order) last (P2.6).
///
/// Owns the pieces it has not yielded and frees them on drop. Each new
/// piece's descriptors are written as it is yielded (P2.2); the original
/// head comes out only after all of them.
#[must_use = "dropping the pieces frees them"]
pub struct SplitFolios<'a, R: FolioRelease> {
    /// The original head; yielded last.
    first: Option<FrozenFolio<'a, R>>,
    owner: &'a R,
    head_pfn: Pfn,
    /// Frames of the original folio.
    nr_pages: u64,
    /// The order of the target's piece (of every piece, if uniform).
    new_order: Order,
    /// The target's offset in the folio, for a split around it.
    target: Option<u64>,
    /// The type and flags every new head gets.
    ty: PageType,
    flags: PageFlags,
    /// Offset of the next new piece to yield (piece 0 is `first`).
    next: u64,
}

impl<'a, R: FolioRelease> SplitFolios<'a, R> {
    /// The order of the piece holding the target (of every piece, for a
    /// uniform split).
    pub fn new_order(&self) -> Order {
        self.new_order
    }

    /// The target of a split around a pfn; `None` for a uniform split.
    pub fn target(&self) -> Option<Pfn> {
        self.target.map(|t| self.head_pfn.add(t))
    }

    /// The order of the piece starting at offset `off` (a piece start):
    /// `new_order` for the target's piece (or every piece, if uniform);
    /// otherwise the highest bit in which `off` and the target's offset
    /// differ, as halving the folio toward the target leaves it.
    fn piece_order(&self, off: u64) -> Order {
        match self.target {
            Some(t) if (off ^ t) >> self.new_order.get() != 0 => {
                Order::new(63 - (off ^ t).leading_zeros()).unwrap_or(self.new_order)
            }
            _ => self.new_order,
        }
    }

    /// The next piece to yield, as (pfn, order), without yielding it.
    fn peek(&self) -> Option<(Pfn, Order)> {
        if self.next < self.nr_pages {
            Some((self.head_pfn.add(self.next), self.piece_order(self.next)))
        } else {
            self.first.as_ref().map(|first| (self.head_pfn, first.order()))
        }
    }

    /// Unfreezes every piece left, in the split's order: each new piece
    /// with its compound info written (P2.2) and then published with
    /// `count(pfn, order)` references (P2.5, P2.7), the original head last
    /// (P2.6). Each counted piece goes to `each`, in that order; the
    /// references beyond the first belong to holders the caller accounts
    /// for (the mappings its freeze expected).
    ///
    /// # Errors
    /// If a piece may not be counted (its type is never counted, P3, or its
    /// count is in the overflow band), stops before it and returns it and
    /// every piece after it, still frozen, with the original head, in
    /// [`UnfreezeSplitError`]; the pieces already handed to `each` stay
    /// counted.
    pub fn unfreeze_with(
        mut self,
        mut count: impl FnMut(Pfn, Order) -> NonZeroU32,
        mut each: impl FnMut(FolioRef<'a, R>),
    ) -> Result<(), UnfreezeSplitError<'a, R>> {
        // Mutant (DESIGN §4, "unfreeze before publishing compound info"):
        // the original head counted first, while the pieces' tails still
        // name it, so a getter on a tail counts the head and its recheck
        // (P1.4) passes on a folio that no longer holds its pfn (seed 000).
        #[cfg(memdesc_mutant = "split_unfreeze_head_first")]
        if let Some((pfn, order)) = self.first.as_ref().map(|f| (f.pfn(), f.order())) {
            let n = count(pfn, order);
            if let (None, Some(first)) = (UnfreezeRefusal::check(self.ty, n), self.first.take()) {
                each(first.unfreeze_checked(n));
            }
        }
        // P2.7: pieces in pfn order, then the original (peek yields it
        // last).
        while let Some((pfn, order)) = self.peek() {
            let n = count(pfn, order);
            if let Some(reason) = UnfreezeRefusal::check(self.ty, n) {
                return Err(UnfreezeSplitError { rest: self, failed: UnfreezeFailed { pfn, reason } });
            }
            let Some(piece) = self.next() else { break };
            // P2.5 (P2.6 for the original): the Release store of `n`.
            each(piece.unfreeze_checked(n));
        }
        Ok(())
    }

    /// Pieces left to yield.
    fn remaining(&self) -> usize {
        let first = usize::from(self.first.is_some());
        if self.target.is_none() {
            return ((self.nr_pages - self.next.min(self.nr_pages)) >> self.new_order.get()) as usize + first;
        }
        let (mut off, mut pieces) = (self.next, first);
        while off < self.nr_pages {
            off += self.piece_order(off).nr_pages();
            pieces += 1;
        }
        pieces
    }
}

impl<'a, R: FolioRelease> Iterator for SplitFolios<'a, R> {
    type Item = FrozenFolio<'a, R>;

    fn next(&mut self) -> Option<FrozenFolio<'a, R>> {
        if self.next >= self.nr_pages {
            if self.first.is_some() {
                crate::platform::failpoint!(self.owner.platform(), SplitUnfreezeHead);
            }
            // P2.4, P2.6: the original comes back last, after every new
            // piece has been rewritten.
            return self.first.take();
        }
        crate::platform::failpoint!(self.owner.platform(), SplitPiece);
        let order = self.piece_order(self.next);
        let pfn = self.head_pfn.add(self.next);
        self.next += order.nr_pages();
        let map = self.owner.memmap();
        let head = map.page_of(pfn);
        // P2.2: the tails name the new head; the head gets the type, flags,
        // its order and clean owner words. Stores are Relaxed (set_compound,
        // set_type): we own every frame of the frozen folio, and the Release
        // unfreeze of P2.5 publishes them.
        for t in 1..order.nr_pages() {
            map.page_of(pfn.add(t)).set_compound(tail_word(pfn));
        }
        // Relaxed: exclusive owner of the frozen folio; published by P2.5.
        head.flags.store(self.flags.0, crate::sync::Ordering::Relaxed);
        head.set_type(self.ty);
        head.set_compound(head_word(order));
        for word in 0..crate::memmap::OWNER_WORDS {
            // SAFETY: duty 1 of set_owner_word: every frame of the frozen
            // folio is exclusively ours (type invariant of `first`, which
            // this iterator owns); an ex-tail's words are stale, and a new
            // head starts clean.
            unsafe { head.set_owner_word(word, 0) };
        }
        // SAFETY: duty 1 of from_owned: the piece is allocated (it has the
        // original's type), its refcount is 0 (it was a tail of a frozen
        // folio), and `next` moved past it, so this is the only handle ever
        // made for it.
        Some(unsafe { FrozenFolio::from_owned(self.owner, head) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.remaining();
        (left, Some(left))
    }
}

impl<R: FolioRelease> ExactSizeIterator for SplitFolios<'_, R> {}

impl<R: FolioRelease> Drop for SplitFolios<'_, R> {
    fn drop(&mut self) {
        // Pieces nobody took are ours: rewrite and free each (a
        // FrozenFolio's drop), the original last.
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
            .field("target", &self.target())
            .field("left", &self.len())
            .finish()
    }
}

/// A refused [`SplitFolios::unfreeze_with`]: the pieces not yet counted
/// come back, still frozen, the refused one first.
pub struct UnfreezeSplitError<'a, R: FolioRelease> {
    /// The refused piece, the pieces after it and the original head.
    pub rest: SplitFolios<'a, R>,
    /// The refused piece and why.
    pub failed: UnfreezeFailed,
}

impl<'a, R: FolioRelease> UnfreezeSplitError<'a, R> {
    /// The pieces back, and the error without them.
    pub fn into_parts(self) -> (SplitFolios<'a, R>, UnfreezeFailed) {
        (self.rest, self.failed)
    }

    /// The error without the pieces, which are freed.
    pub fn into_failed(self) -> UnfreezeFailed {
        self.failed
    }
}

impl<R: FolioRelease> From<UnfreezeSplitError<'_, R>> for UnfreezeFailed {
    fn from(e: UnfreezeSplitError<'_, R>) -> Self {
        e.failed
    }
}

impl<R: FolioRelease> fmt::Debug for UnfreezeSplitError<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnfreezeSplitError").field("rest", &self.rest).field("failed", &self.failed).finish()
    }
}

impl<R: FolioRelease> fmt::Display for UnfreezeSplitError<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.failed, f)
    }
}

impl<R: FolioRelease> core::error::Error for UnfreezeSplitError<'_, R> {}

impl<'a, R: FolioRelease> FrozenFolio<'a, R> {
    /// Splits this folio into folios of `new_order` (P2.2–P2.4) and returns
    /// them, frozen, as an iterator that yields the new folios first and the
    /// original head last (unfreeze them in that order: P2.5, P2.6, or all
    /// at once with [`SplitFolios::unfreeze_with`]). Each piece has the
    /// original's type and flags (less the lock bits) and zeroed owner
    /// words.
    ///
    /// # Errors
    /// [`SplitError`] with the folio back, unchanged, if `new_order` is not
    /// below its order.
    pub fn split(self, new_order: Order) -> Result<SplitFolios<'a, R>, SplitError<'a, R>> {
        self.split_layout(new_order, None)
    }

    /// Splits this folio so that the piece holding `target` has
    /// `new_order` and the rest stay in the largest aligned pieces (P2.2–
    /// P2.4; Linux's non-uniform `folio_split`): halve the folio, keep the
    /// half without the target whole, and go on halving the other until it
    /// has `new_order`. An order-`k` folio becomes `k - new_order + 1`
    /// pieces, yielded in pfn order with the original head last, as
    /// [`FrozenFolio::split`].
    ///
    /// # Errors
    /// [`SplitError`] with the folio back, unchanged, if `new_order` is not
    /// below its order or `target` is not one of its frames.
    pub fn split_around(self, target: Pfn, new_order: Order) -> Result<SplitFolios<'a, R>, SplitError<'a, R>> {
        let head = self.pfn();
        if target < head || target.0 - head.0 >= self.nr_pages() {
            return Err(SplitError { folio: self, reason: SplitFailed::NotInFolio { target } });
        }
        self.split_layout(new_order, Some(target.0 - head.0))
    }

    /// The split of either layout: checks, P2.3, and the iterator that does
    /// P2.2 piece by piece.
    fn split_layout(self, new_order: Order, target: Option<u64>) -> Result<SplitFolios<'a, R>, SplitError<'a, R>> {
        let order = self.order();
        if new_order >= order {
            return Err(SplitError { folio: self, reason: SplitFailed::NotSmaller { order, new_order } });
        }
        let ty = self.page_type();
        // The lock bits stay with the original head: a piece comes out
        // unlocked, with no sleepers to wake.
        let flags = PageFlags(self.head().flags().0 & !(PageFlags::LOCKED.0 | PageFlags::WAITERS.0));
        let mut pieces = SplitFolios {
            first: None,
            owner: self.owner(),
            head_pfn: self.pfn(),
            nr_pages: order.nr_pages(),
            new_order,
            target,
            ty: if matches!(ty, PageType::Tail) { PageType::Kernel } else { ty },
            flags,
            next: 0,
        };
        crate::platform::failpoint!(self.owner().platform(), SplitFrozen);
        // P2.3: the original head takes its piece's order.
        let head_order = pieces.piece_order(0);
        self.head().set_compound(head_word(head_order));
        pieces.next = head_order.nr_pages();
        pieces.first = Some(self);
        Ok(pieces)
    }
}
