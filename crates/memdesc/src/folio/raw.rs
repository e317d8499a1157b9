//! Checks for the raw-pfn entry points: handles restored from a pfn
//! ([`FolioRef::from_raw`](super::FolioRef::from_raw),
//! [`FrozenFolio::from_raw`](super::FrozenFolio::from_raw)) and the
//! allocator's raw operations (`Node::put_pfn`, `free_pages`,
//! `unfreeze_pfn`).
//!
//! A raw pfn is a claim the caller makes ("I own a reference to the folio
//! headed here"), which no check can verify. What a check *can* see (a pfn
//! outside the map, a tail, a free or unmanaged frame, a refcount that does
//! not fit the claim) is refused with a [`RawError`] before anything is
//! touched, so a bad pfn never reaches the memory map's indexing.

use super::{decode_compound, Order, PageType};
use crate::memmap::{MemMap, Page, Pfn};
use core::fmt;

/// Why a raw-pfn operation was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawError {
    /// The pfn has no descriptor.
    OutOfRange(Pfn),
    /// The frame is a tail; operations take the head.
    Tail(Pfn),
    /// The frame is free.
    Free(Pfn),
    /// The frame is not managed (hole, reserved, metadata, quarantined).
    Unmanaged(Pfn, PageType),
    /// A put (or a counted handle) found refcount 0 (frozen, or never
    /// counted).
    ZeroRefcount(Pfn),
    /// An unfreeze (or a frozen handle) found a counted folio.
    NotFrozen {
        /// The frame.
        pfn: Pfn,
        /// Its refcount.
        refcount: u32,
    },
    /// The folio has another order than the caller said.
    WrongOrder {
        /// The frame.
        pfn: Pfn,
        /// Its order.
        actual: Order,
    },
    /// The folio's type forbids the operation (unfreezing a slab or page
    /// table, which stay frozen: P3).
    WrongType(Pfn, PageType),
    /// A count in the refcount's overflow band.
    Overflow(Pfn),
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange(p) => write!(f, "pfn {p} out of range"),
            Self::Tail(p) => write!(f, "pfn {p} is a tail page"),
            Self::Free(p) => write!(f, "pfn {p} is free"),
            Self::Unmanaged(p, ty) => write!(f, "pfn {p} is not managed ({ty})"),
            Self::ZeroRefcount(p) => write!(f, "pfn {p} has refcount 0"),
            Self::NotFrozen { pfn, refcount } => write!(f, "pfn {pfn} is not frozen (refcount {refcount})"),
            Self::WrongOrder { pfn, actual } => write!(f, "pfn {pfn} heads an order-{actual} folio"),
            Self::WrongType(p, ty) => write!(f, "pfn {p} has type {ty}"),
            Self::Overflow(p) => write!(f, "pfn {p}: count in the overflow band"),
        }
    }
}

impl core::error::Error for RawError {}

/// The descriptor of `pfn` if it could head an allocated folio: inside the
/// map, not free, not unmanaged, not a tail.
///
/// # Errors
/// [`RawError::OutOfRange`], [`RawError::Free`], [`RawError::Unmanaged`] or
/// [`RawError::Tail`].
pub(crate) fn raw_head<'a>(map: &MemMap<'a>, pfn: Pfn) -> Result<&'a Page, RawError> {
    let page = map.page(pfn).ok_or(RawError::OutOfRange(pfn))?;
    let ty = page.page_type();
    if ty.is_free() {
        return Err(RawError::Free(pfn));
    }
    if ty.is_unmanaged() {
        return Err(RawError::Unmanaged(pfn, ty));
    }
    if ty == PageType::Tail {
        return Err(RawError::Tail(pfn));
    }
    // A head's compound word names no other head; a malformed one (a tail
    // word on a frame typed as a head) is refused like a tail.
    if decode_compound(pfn, page.compound_word()).1.is_none() {
        return Err(RawError::Tail(pfn));
    }
    Ok(page)
}
