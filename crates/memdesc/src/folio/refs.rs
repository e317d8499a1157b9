//! [`FolioRefs`]: several counted references to one folio in one handle.
//!
//! GUP-fast takes one refcount add covering every subpage of a folio its
//! range covers (Linux's `folio_ref_try_add`), and puts them back in one
//! subtraction. [`try_get_refs`](super::try_get_refs) makes such a handle
//! through P1; [`FolioRefs::into_pins`](super::FolioRefs::into_pins) turns
//! it into pins (P6). Its drop is the same put as [`FolioRef`]'s (R.2, R.3),
//! with `n` in place of 1.

use super::handle::put_refs;
use super::{FolioRef, FolioRelease, REF_MAX};
use crate::memmap::Page;
use crate::sync::Ordering;
use core::fmt;
use core::mem::ManuallyDrop;
use core::num::NonZeroU32;
use core::ops::Deref;

/// `n` counted references to one folio (`n >= 1`).
///
/// Derefs to a [`FolioRef`] for the folio's queries and contents (one of
/// the `n` references, borrowed). Drop puts all `n` in one atomic
/// subtraction; the last put frees the folio, as [`FolioRef`]'s does.
#[must_use]
pub struct FolioRefs<'a, R: FolioRelease> {
    /// One of the references, as a handle that is never dropped on its own.
    folio: ManuallyDrop<FolioRef<'a, R>>,
    /// How many references this handle holds, `folio`'s included.
    refs: NonZeroU32,
}

/// A refcount add that would enter the overflow band (above [`REF_MAX`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefOverflow {
    /// The folio's head.
    pub pfn: crate::memmap::Pfn,
    /// The refcount seen.
    pub refcount: u32,
    /// The references asked for.
    pub add: u32,
}

impl fmt::Display for RefOverflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "folio {}: adding {} to refcount {} passes {REF_MAX}", self.pfn, self.add, self.refcount)
    }
}

impl core::error::Error for RefOverflow {}

/// Adds `add` to the refcount of `head`, a folio the caller holds a
/// reference to, unless the sum passes [`REF_MAX`]; returns the count seen.
pub(crate) fn try_add_held(head: &Page, add: u32) -> Result<u32, u32> {
    // Relaxed: seeds the loop; the caller holds a reference, so the folio
    // cannot be freed or frozen meanwhile and nothing needs ordering (as
    // R.1, Arc::clone).
    let mut count = head.refcount.load(Ordering::Relaxed);
    loop {
        if count.checked_add(add).is_none_or(|sum| sum > REF_MAX) {
            return Err(count);
        }
        // Relaxed: as R.1, made from a held reference. Relaxed on failure:
        // retry with the value read.
        match head.refcount.compare_exchange_weak(count, count + add, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Ok(count),
            Err(actual) => count = actual,
        }
    }
}

impl<'a, R: FolioRelease> FolioRefs<'a, R> {
    /// Wraps `refs` references the caller has already counted on `head`.
    pub(crate) fn from_counted(owner: &'a R, head: &'a Page, refs: NonZeroU32) -> Self {
        Self { folio: ManuallyDrop::new(FolioRef::from_counted(owner, head)), refs }
    }

    /// Gives up the handle without putting; the caller now owns the
    /// references.
    pub(crate) fn into_parts(self) -> (&'a R, &'a Page, NonZeroU32) {
        let this = ManuallyDrop::new(self);
        (this.folio.owner(), this.folio.head(), this.refs)
    }

    /// How many references this handle holds.
    pub fn nr_refs(&self) -> NonZeroU32 {
        self.refs
    }

    /// One of the references, borrowed: the folio's queries and contents.
    pub fn folio(&self) -> &FolioRef<'a, R> {
        &self.folio
    }

    /// Moves `k` of the references into a new handle, keeping the rest.
    ///
    /// # Errors
    /// `self` keeps all of them and `None` comes back if `k` is not below
    /// [`FolioRefs::nr_refs`] (a handle never holds 0).
    pub fn split_off(&mut self, k: NonZeroU32) -> Option<FolioRefs<'a, R>> {
        let rest = NonZeroU32::new(self.refs.get().checked_sub(k.get())?)?;
        self.refs = rest;
        Some(Self::from_counted(self.folio.owner(), self.folio.head(), k))
    }

    /// Moves one reference out as a [`FolioRef`], if this handle holds more
    /// than one.
    pub fn split_one(&mut self) -> Option<FolioRef<'a, R>> {
        let one = self.split_off(NonZeroU32::MIN)?;
        let (owner, head, _) = one.into_parts();
        Some(FolioRef::from_counted(owner, head))
    }

    /// Takes `other`'s references into this handle, if both name the same
    /// folio; otherwise gives `other` back.
    ///
    /// # Errors
    /// `other`, unchanged, if it names another folio or the sum would not
    /// fit a `u32` (it cannot pass [`REF_MAX`] legitimately: both are
    /// counted).
    pub fn merge(&mut self, other: FolioRefs<'a, R>) -> Result<(), FolioRefs<'a, R>> {
        if !core::ptr::eq(self.folio.head(), other.folio.head()) {
            return Err(other);
        }
        let Some(sum) = self.refs.checked_add(other.refs.get()) else {
            return Err(other);
        };
        let _ = other.into_parts();
        self.refs = sum;
        Ok(())
    }
}

impl<'a, R: FolioRelease> FolioRef<'a, R> {
    /// Takes `n` more references to this folio, from this one (no P1: the
    /// folio is held): the slow path's add for the pages of a folio it
    /// faulted in (Linux's `try_grab_folio`).
    ///
    /// # Errors
    /// [`RefOverflow`] if the refcount would pass [`REF_MAX`]; nothing is
    /// taken.
    pub fn try_clone_refs(&self, n: NonZeroU32) -> Result<FolioRefs<'a, R>, RefOverflow> {
        match try_add_held(self.head(), n.get()) {
            Ok(_) => Ok(FolioRefs::from_counted(self.owner(), self.head(), n)),
            Err(refcount) => Err(RefOverflow { pfn: self.pfn(), refcount, add: n.get() }),
        }
    }
}

impl<'a, R: FolioRelease> Deref for FolioRefs<'a, R> {
    type Target = FolioRef<'a, R>;

    fn deref(&self) -> &FolioRef<'a, R> {
        &self.folio
    }
}

impl<'a, R: FolioRelease> From<FolioRef<'a, R>> for FolioRefs<'a, R> {
    fn from(folio: FolioRef<'a, R>) -> Self {
        Self { folio: ManuallyDrop::new(folio), refs: NonZeroU32::MIN }
    }
}

impl<'a, R: FolioRelease> TryFrom<FolioRefs<'a, R>> for FolioRef<'a, R> {
    type Error = FolioRefs<'a, R>;

    /// The one reference of a handle holding exactly one.
    ///
    /// # Errors
    /// The handle back, unchanged, if it holds more than one (take them one
    /// by one with [`FolioRefs::split_one`]).
    fn try_from(refs: FolioRefs<'a, R>) -> Result<Self, FolioRefs<'a, R>> {
        if refs.refs != NonZeroU32::MIN {
            return Err(refs);
        }
        let (owner, head, _) = refs.into_parts();
        Ok(FolioRef::from_counted(owner, head))
    }
}

impl<R: FolioRelease> Drop for FolioRefs<'_, R> {
    #[inline]
    fn drop(&mut self) {
        put_refs(self.folio.owner(), self.folio.head(), self.refs);
    }
}

impl<R: FolioRelease> fmt::Debug for FolioRefs<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FolioRefs").field("pfn", &self.folio.pfn()).field("refs", &self.refs).finish()
    }
}
