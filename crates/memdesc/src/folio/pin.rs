//! P6 (the folio side): FOLL_PIN pins, unpin and `maybe_dma_pinned`.
//!
//! A *pin* is a reference held for DMA or another long access to a folio's
//! frames: it keeps the folio alive and in place (split and migration
//! freeze at an exact count, P2.1, and every pin adds to that count), and
//! it is visible as a pin, so those paths can tell a pinned folio from a
//! merely referenced one, as Linux's `folio_maybe_dma_pinned` does:
//!
//! - a small (order-0) folio has no pin counter: a pin is
//!   [`GUP_PIN_COUNTING_BIAS`] (1024) references, so a refcount of 1024 or
//!   more *may* mean a pin (or 1024 plain references: a false positive);
//! - a large folio counts pins exactly in its head's `pincount`, and each
//!   pin also holds one plain reference.
//!
//! [`PinnedFolio`] is `n` pins on one folio; its drop unpins all `n` at
//! once. Pins are made from references already held ([`FolioRefs::into_pins`],
//! [`FolioRef::try_pin`]): the references come first (P1 for GUP-fast, or
//! the slow path's fault), and only then is the order read, because an
//! order read before the get may belong to a folio that was freed and
//! reallocated meanwhile (Linux's `try_grab_folio_fast` in the same order).
//!
//! The limit: a small folio's refcount stays at most [`REF_MAX`], so it
//! carries at most `REF_MAX / 1024` (2^20) pins with its other
//! references; a pin past that fails with [`PinFailed::Overflow`], never
//! wrapping. A large folio's pins are bounded by its references.

use super::handle::put_refs;
use super::refs::try_add_held;
use super::{FolioRef, FolioRefs, FolioRelease, Order, REF_MAX};
use crate::memmap::{Page, Pfn};
use crate::sync::Ordering;
use core::fmt;
use core::mem::ManuallyDrop;
use core::num::NonZeroU32;
use core::ops::Deref;

/// References a pin of a small (order-0) folio costs (Linux's
/// `GUP_PIN_COUNTING_BIAS`).
pub const GUP_PIN_COUNTING_BIAS: u32 = 1 << 10;

/// [`GUP_PIN_COUNTING_BIAS`] as a count of references to put.
const BIAS: NonZeroU32 = match NonZeroU32::new(GUP_PIN_COUNTING_BIAS) {
    Some(bias) => bias,
    None => panic!("the pin bias is not zero"),
};

/// `n` pins on one folio (`n >= 1`), from GUP with FOLL_PIN.
///
/// Derefs to a [`FolioRef`] for the folio's queries and contents. Drop
/// unpins all `n` at once (P6.5, P6.6); the last reference frees the folio
/// through its owner, as any put does. Unpinning more than was pinned is
/// impossible: only this handle undoes its own pins.
#[must_use]
pub struct PinnedFolio<'a, R: FolioRelease> {
    /// One of the pins' references, never dropped on its own.
    folio: ManuallyDrop<FolioRef<'a, R>>,
    /// How many pins this handle holds.
    pins: NonZeroU32,
}

/// Why a pin was refused (without the references: `'static`, for `?`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinFailed {
    /// A small folio's refcount would pass [`REF_MAX`] with the pins' bias.
    Overflow {
        /// The folio's head.
        pfn: Pfn,
        /// The refcount seen.
        refcount: u32,
        /// The pins asked for.
        pins: u32,
    },
}

impl fmt::Display for PinFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overflow { pfn, refcount, pins } => write!(
                f,
                "folio {pfn}: {pins} pins of {GUP_PIN_COUNTING_BIAS} references each on refcount {refcount} pass {REF_MAX}"
            ),
        }
    }
}

impl core::error::Error for PinFailed {}

/// A refused pin: the references come back, still held.
pub struct PinError<'a, R: FolioRelease> {
    /// The references the caller passed in.
    pub refs: FolioRefs<'a, R>,
    /// Why.
    pub reason: PinFailed,
}

impl<'a, R: FolioRelease> PinError<'a, R> {
    /// The references back, and the error without them.
    pub fn into_parts(self) -> (FolioRefs<'a, R>, PinFailed) {
        (self.refs, self.reason)
    }

    /// The error without the references, which are put.
    pub fn into_failed(self) -> PinFailed {
        self.reason
    }
}

impl<R: FolioRelease> From<PinError<'_, R>> for PinFailed {
    fn from(e: PinError<'_, R>) -> Self {
        e.reason
    }
}

impl<R: FolioRelease> fmt::Debug for PinError<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinError").field("refs", &self.refs).field("reason", &self.reason).finish()
    }
}

impl<R: FolioRelease> fmt::Display for PinError<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.reason, f)
    }
}

impl<R: FolioRelease> core::error::Error for PinError<'_, R> {}

/// Whether pins on a folio of `order` are counted in `pincount` (large) or
/// as a bias on the refcount (small).
#[inline(always)]
fn has_pincount(order: Order) -> bool {
    order > Order::ZERO
}

impl<'a, R: FolioRelease> FolioRefs<'a, R> {
    /// Turns these `n` references into `n` pins (P6.2–P6.4): on a large
    /// folio, `pincount += n`, each pin keeping one of the references; on a
    /// small one, `refcount += n * (GUP_PIN_COUNTING_BIAS - 1)`.
    ///
    /// A GUP-fast caller rechecks its source (the PTE) after this, not
    /// before: the pin must be counted when the recheck passes (P6.1).
    ///
    /// # Errors
    /// [`PinError`] with the references back if a small folio's refcount
    /// would pass [`REF_MAX`]; nothing is added.
    pub fn into_pins(self) -> Result<PinnedFolio<'a, R>, PinError<'a, R>> {
        let pins = self.nr_refs();
        // P6.2: the order, read only now that the references are held
        // (P1.6): it cannot change until they are put.
        if has_pincount(self.order()) {
            // P6.3. Relaxed: the references (held, counted by P1.3 or a held
            // add) are what split and migration freeze on (P2.1); the
            // pincount is read only as a snapshot (maybe_dma_pinned) or by
            // the free path after the last put, which our Release put
            // (R.2) orders after this add.
            self.head().pincount.fetch_add(pins.get(), Ordering::Relaxed);
        } else {
            // P6.4: the rest of the bias, never into the overflow band.
            let added = match pins.get().checked_mul(GUP_PIN_COUNTING_BIAS - 1) {
                Some(bias) => try_add_held(self.head(), bias),
                None => Err(self.ref_count()),
            };
            if let Err(refcount) = added {
                let reason = PinFailed::Overflow { pfn: self.pfn(), refcount, pins: pins.get() };
                return Err(PinError { refs: self, reason });
            }
        }
        let (owner, head, _) = self.into_parts();
        Ok(PinnedFolio { folio: ManuallyDrop::new(FolioRef::from_counted(owner, head)), pins })
    }
}

impl<'a, R: FolioRelease> FolioRef<'a, R> {
    /// Turns this reference into one pin ([`FolioRefs::into_pins`] with one
    /// reference): the slow path pins what it faulted in. For more pins on
    /// the same folio, take the references first
    /// ([`FolioRef::try_clone_refs`]).
    ///
    /// # Errors
    /// As [`FolioRefs::into_pins`], with the reference back inside.
    pub fn try_pin(self) -> Result<PinnedFolio<'a, R>, PinError<'a, R>> {
        FolioRefs::from(self).into_pins()
    }

    /// Whether the folio may be pinned (P6.7, Linux's
    /// `folio_maybe_dma_pinned`), as a snapshot: exact for a large folio
    /// (its pincount is not 0); for a small one, whether its refcount
    /// reaches [`GUP_PIN_COUNTING_BIAS`], which 1024 plain references also
    /// do (a false positive, never a false negative).
    pub fn maybe_dma_pinned(&self) -> bool {
        maybe_dma_pinned(self.head(), self.order())
    }
}

/// P6.7 on the head of a folio of `order` held by the caller.
fn maybe_dma_pinned(head: &Page, order: Order) -> bool {
    if has_pincount(order) {
        // Relaxed: a snapshot, as documented; a decision that must exclude
        // pins freezes the refcount instead (P2.1).
        head.pincount.load(Ordering::Relaxed) > 0
    } else {
        head.ref_count() >= GUP_PIN_COUNTING_BIAS
    }
}

impl<'a, R: FolioRelease> PinnedFolio<'a, R> {
    /// How many pins this handle holds.
    pub fn nr_pins(&self) -> NonZeroU32 {
        self.pins
    }

    /// The pinned folio, borrowed: its queries and contents.
    pub fn folio(&self) -> &FolioRef<'a, R> {
        &self.folio
    }

    /// Moves `k` of the pins into a new handle, keeping the rest.
    ///
    /// # Errors
    /// `None`, with every pin kept here, if `k` is not below
    /// [`PinnedFolio::nr_pins`].
    pub fn split_off(&mut self, k: NonZeroU32) -> Option<PinnedFolio<'a, R>> {
        let rest = NonZeroU32::new(self.pins.get().checked_sub(k.get())?)?;
        self.pins = rest;
        let folio = FolioRef::from_counted(self.folio.owner(), self.folio.head());
        Some(PinnedFolio { folio: ManuallyDrop::new(folio), pins: k })
    }

    /// Takes `other`'s pins into this handle, if both pin the same folio,
    /// so they are unpinned in one batch.
    ///
    /// # Errors
    /// `other`, unchanged, if it pins another folio or the sum would not
    /// fit a `u32`.
    pub fn merge(&mut self, other: PinnedFolio<'a, R>) -> Result<(), PinnedFolio<'a, R>> {
        if !core::ptr::eq(self.folio.head(), other.folio.head()) {
            return Err(other);
        }
        let Some(sum) = self.pins.checked_add(other.pins.get()) else {
            return Err(other);
        };
        core::mem::forget(other);
        self.pins = sum;
        Ok(())
    }
}

impl<'a, R: FolioRelease> Deref for PinnedFolio<'a, R> {
    type Target = FolioRef<'a, R>;

    fn deref(&self) -> &FolioRef<'a, R> {
        &self.folio
    }
}

impl<R: FolioRelease> Drop for PinnedFolio<'_, R> {
    fn drop(&mut self) {
        let (owner, head, pins) = (self.folio.owner(), self.folio.head(), self.pins);
        if has_pincount(self.folio.order()) {
            // P6.5: the pins, then their references.
            #[cfg(not(memdesc_mutant = "unpin_put_before_pincount"))]
            {
                // Relaxed: sequenced before the Release put just below
                // (R.2), which orders it before the last putter's Acquire
                // (R.3) and so before the free path's pincount check.
                head.pincount.fetch_sub(pins.get(), Ordering::Relaxed);
                put_refs(owner, head, pins);
            }
            // Mutant: the references put before the pins, so another
            // holder's last put may free the folio while its pincount still
            // counts ours. Relaxed: as above, deliberately misplaced.
            #[cfg(memdesc_mutant = "unpin_put_before_pincount")]
            {
                put_refs(owner, head, pins);
                // Relaxed: deliberately misplaced (mutant).
                head.pincount.fetch_sub(pins.get(), Ordering::Relaxed);
            }
        } else {
            // P6.6: the whole bias in one put. The product never saturates:
            // into_pins added it without passing REF_MAX.
            put_refs(owner, head, pins.saturating_mul(BIAS));
        }
    }
}

impl<R: FolioRelease> fmt::Debug for PinnedFolio<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedFolio")
            .field("pfn", &self.folio.pfn())
            .field("order", &self.folio.order())
            .field("pins", &self.pins)
            .finish()
    }
}
