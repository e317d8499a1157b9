//! P1: the speculative reference, for anyone who reaches a frame without
//! holding a reference to it (pfn scanners, GUP-fast, compaction).
//!
//! The frame may be freed, reallocated into a folio of another order, split
//! or frozen at any moment, so [`try_get`] follows the protocol of
//! docs/PROTOCOLS.md P1 step by step:
//!
//! 1. look the descriptor up by pfn (bounds-checked);
//! 2. read the head from the frame's compound word (a racy snapshot);
//! 3. increment the head's refcount unless it is 0 (free or frozen); Acquire;
//! 4. recheck that the frame still names that head (seed 000: the folio may
//!    have been split or freed and reallocated between 2 and 3);
//! 5. let the caller recheck its source (the PTE, the slot) still points here;
//!
//! and only then hands out a [`FolioRef`] ([`try_get`]) or, for several
//! references in one add, a [`FolioRefs`] ([`try_get_refs`]); `try_get` is
//! the one-reference case of the same code. A failed recheck drops the
//! reference, which may be the last one: the drop frees the folio properly.

use super::{decode_compound, FolioRef, FolioRefs, FolioRelease, PageType, REF_MAX};
use crate::memmap::Pfn;
use crate::sync::{spin_loop, Ordering};
use core::fmt;
use core::num::NonZeroU32;

/// Why a speculative get returned no reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetError {
    /// The pfn has no descriptor.
    OutOfRange,
    /// The frame is not managed memory (hole, reserved, metadata, bad).
    Unmanaged(PageType),
    /// The frame is free (buddy, pcp, or inside a free block).
    Free,
    /// The folio is frozen: being split or migrated, or allocated frozen
    /// (slab, page table), so it can never be counted.
    Frozen,
    /// The frame changed folio between reading its head and taking the
    /// reference (split, or freed and reallocated): retry if still wanted.
    Moved,
    /// The caller's source recheck failed (the entry no longer points here).
    SourceChanged,
    /// The refcount is in the overflow band.
    Overflow,
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange => f.write_str("pfn out of range"),
            Self::Unmanaged(ty) => write!(f, "frame is not managed ({ty})"),
            Self::Free => f.write_str("frame is free"),
            Self::Frozen => f.write_str("folio is frozen"),
            Self::Moved => f.write_str("frame changed folio during the get"),
            Self::SourceChanged => f.write_str("source no longer points to the folio"),
            Self::Overflow => f.write_str("refcount overflow"),
        }
    }
}

impl core::error::Error for GetError {}

/// Takes a reference to the folio containing `pfn` without holding one
/// (P1), then runs `recheck_source` on it (P1.5): the `refs = 1` case of
/// [`try_get_refs`].
///
/// `recheck_source` gets the new reference and answers whether whatever led
/// the caller to `pfn` (a page-table entry, a cache slot) still leads there;
/// pass `|_| true` for a plain pfn walk, and validate the type afterwards
/// (the frame may belong to a new allocation: the reference pins *a* folio,
/// not the one the caller first saw).
///
/// # Errors
/// See [`GetError`]. No error leaves a reference behind.
pub fn try_get<'a, R: FolioRelease>(
    owner: &'a R,
    pfn: Pfn,
    recheck_source: impl FnOnce(&FolioRef<'a, R>) -> bool,
) -> Result<FolioRef<'a, R>, GetError> {
    let (owner, head, _) = try_get_refs(owner, pfn, NonZeroU32::MIN, recheck_source)?.into_parts();
    Ok(FolioRef::from_counted(owner, head))
}

/// Takes `refs` references to the folio containing `pfn` in one refcount
/// add, without holding one (P1, Linux's `folio_ref_try_add`), then runs
/// `recheck_source` on them (P1.5).
///
/// GUP-fast calls it once per folio with one reference for every page of
/// the folio its range covers, and puts or pins them together (one
/// [`FolioRefs`] drop, [`FolioRefs::into_pins`](super::FolioRefs::into_pins)).
/// `recheck_source` is as for [`try_get`]; a caller that pins rechecks its
/// source after [`into_pins`](super::FolioRefs::into_pins) instead (P6.1).
///
/// # Errors
/// See [`GetError`]; [`GetError::Overflow`] if the add would pass
/// [`REF_MAX`]. No error leaves a reference behind.
pub fn try_get_refs<'a, R: FolioRelease>(
    owner: &'a R,
    pfn: Pfn,
    refs: NonZeroU32,
    recheck_source: impl FnOnce(&FolioRef<'a, R>) -> bool,
) -> Result<FolioRefs<'a, R>, GetError> {
    let map = owner.memmap();
    // P1.1: the descriptor; bounds-checked arithmetic, never a wild pointer.
    let page = map.page(pfn).ok_or(GetError::OutOfRange)?;
    crate::platform::failpoint!(owner.platform(), P1ReadHead);
    // P1.2: the head, from a snapshot of the compound word (Relaxed inside
    // compound_word; rechecked at P1.4 after the Acquire of P1.3).
    let (head_pfn, _) = decode_compound(pfn, page.compound_word());
    let head = map.page(head_pfn).ok_or(GetError::Moved)?;

    crate::platform::failpoint!(owner.platform(), P1Increment);
    // P1.3: add `refs` unless zero, never into the overflow band.
    let limit = REF_MAX.checked_sub(refs.get()).ok_or(GetError::Overflow)?;
    // Relaxed: the first read only seeds the CAS loop.
    let mut count = head.refcount.load(Ordering::Relaxed);
    loop {
        if count == 0 {
            let ty = head.page_type();
            return Err(if ty.is_free() {
                GetError::Free
            } else if ty.is_unmanaged() {
                GetError::Unmanaged(ty)
            } else {
                GetError::Frozen
            });
        }
        if count > limit {
            return Err(GetError::Overflow);
        }
        // Acquire: pairs with the Release that made the count non-zero
        // (publish P3.3, unfreeze P2.5) and with every Release put, so once
        // we hold the references we see the folio's compound info, type tag
        // and owner words as its owner published them.
        // Relaxed: on failure, we retry with the value read.
        match head.refcount.compare_exchange_weak(count, count + refs.get(), Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => break,
            Err(actual) => {
                count = actual;
                spin_loop();
            }
        }
    }
    let folio = FolioRefs::from_counted(owner, head, refs);

    // P1.4: recheck the frame still belongs to the head we counted (seed
    // 000). Relaxed inside compound_word: ordered after the Acquire of P1.3.
    #[cfg(not(memdesc_mutant = "no_head_recheck"))]
    if crate::platform::failpoint_check!(owner.platform(), P1HeadRecheck) {
        let (now, _) = decode_compound(pfn, page.compound_word());
        if now != head_pfn {
            drop(folio);
            return Err(GetError::Moved);
        }
    }

    // P1.5: the caller's source recheck.
    #[cfg(not(memdesc_mutant = "no_source_recheck"))]
    if crate::platform::failpoint_check!(owner.platform(), P1SourceRecheck) && !recheck_source(folio.folio()) {
        drop(folio);
        return Err(GetError::SourceChanged);
    }
    Ok(folio)
}
