//! The ownership handles: counted [`FolioRef`] and exclusive [`FrozenFolio`].

use super::raw::{raw_head, RawError};
use super::{decode_compound, Order, PageType, REF_MAX};
use crate::memmap::{FrameReader, FrameWriter, MemMap, Page, Pfn};
use crate::sync::{FrameWord, Ordering};
use core::fmt;
use core::mem::ManuallyDrop;
use core::num::NonZeroU32;

pub(crate) mod sealed {
    /// Keeps [`FolioRelease`](super::FolioRelease) implementable only here:
    /// its implementor takes ownership of freed frames on trust.
    pub trait Sealed {}
}

/// Why a descriptor is in a state the core refuses to use: the report that
/// quarantines a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPageReason {
    /// A put found the refcount already 0.
    RefcountUnderflow,
    /// A folio reached refcount 0 while still mapped.
    FreedWhileMapped,
    /// A folio reached refcount 0 while pinned.
    FreedWhilePinned,
    /// A folio reached refcount 0 with flags that must be clear (locked,
    /// isolated, on an LRU).
    FreedWithBadFlags,
    /// A tail's compound word does not name its head.
    BadCompound,
    /// A free path met a frame whose type says it is already free.
    DoubleFree,
    /// A folio reached the free path with a nonzero refcount: someone still
    /// holds a reference (a frozen handle freed while raw references were
    /// counted, or a handle restored from a counted pfn).
    NonzeroRefcount,
    /// A tail reached the free path with a type other than `Tail` (already
    /// quarantined, or overwritten).
    BadTailType,
}

impl fmt::Display for BadPageReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RefcountUnderflow => "refcount underflow",
            Self::FreedWhileMapped => "freed while mapped",
            Self::FreedWhilePinned => "freed while pinned",
            Self::FreedWithBadFlags => "freed with bad flags",
            Self::BadCompound => "bad compound info",
            Self::DoubleFree => "double free",
            Self::NonzeroRefcount => "nonzero refcount",
            Self::BadTailType => "bad tail type",
        })
    }
}

/// The owner of frames whose last reference is dropped: the allocator.
///
/// Sealed: implemented by [`crate::buddy::Node`] (and test doubles inside the
/// crate).
pub trait FolioRelease: Sync + Sized + sealed::Sealed {
    /// The memory map the folios live in.
    fn memmap(&self) -> &MemMap<'_>;

    /// Takes back the folio headed at `head`, whose refcount just reached 0:
    /// the callee now owns it exclusively.
    fn release(&self, head: Pfn);

    /// Records a bad-page report for `pfn` and takes the frame out of service.
    fn bad_page(&self, pfn: Pfn, reason: BadPageReason);

    /// The platform whose wait queues the folio lock sleeps on: one per
    /// owner, so a waiter and the unlocker always use the same queues.
    fn platform(&self) -> &dyn crate::platform::Platform;
}

/// A counted reference to a folio.
///
/// While it lives the folio cannot be freed, frozen, split or change type.
/// Clone takes another reference; Drop puts this one, and the last put hands
/// the folio back to the allocator.
#[must_use]
pub struct FolioRef<'a, R: FolioRelease> {
    owner: &'a R,
    head: &'a Page,
}

/// The exclusive owner of a frozen folio (refcount 0, not free).
///
/// Nobody else can take a reference: [`try_get`](super::try_get) fails on a
/// zero refcount. This is the only handle that may change the type tag, the
/// compound layout or the owner words. Drop frees the folio.
#[must_use]
pub struct FrozenFolio<'a, R: FolioRelease> {
    owner: &'a R,
    head: &'a Page,
}

/// Why a freeze failed: the refcount was not the expected one (a pin, a
/// transient reference from a speculative getter, another mapping). The
/// reference comes back untouched.
///
/// It holds the reference, so it borrows the allocator: to use `?` into an
/// owned error such as `Box<dyn Error>`, convert it to the handle-free
/// [`FreezeFailed`] first (`.map_err(FreezeError::into_failed)?`, which puts
/// the reference), or keep the reference with [`FreezeError::into_parts`].
pub struct FreezeError<'a, R: FolioRelease> {
    /// The reference the caller passed in.
    pub folio: FolioRef<'a, R>,
    /// The refcount the freeze expected.
    pub expected: u32,
    /// The refcount seen instead of the expected one.
    pub actual: u32,
}

/// A failed freeze, without the reference: `'static`, for `?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreezeFailed {
    /// The folio's head.
    pub pfn: Pfn,
    /// The refcount the freeze expected.
    pub expected: u32,
    /// The refcount seen instead.
    pub actual: u32,
}

impl fmt::Display for FreezeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "folio {} has refcount {}, not the expected {}", self.pfn, self.actual, self.expected)
    }
}

impl core::error::Error for FreezeFailed {}

impl<'a, R: FolioRelease> FreezeError<'a, R> {
    /// The reference back, and the error without it.
    pub fn into_parts(self) -> (FolioRef<'a, R>, FreezeFailed) {
        let failed = FreezeFailed { pfn: self.folio.pfn(), expected: self.expected, actual: self.actual };
        (self.folio, failed)
    }

    /// The error without the reference, which is put.
    pub fn into_failed(self) -> FreezeFailed {
        self.into_parts().1
    }
}

impl<R: FolioRelease> From<FreezeError<'_, R>> for FreezeFailed {
    fn from(e: FreezeError<'_, R>) -> Self {
        e.into_failed()
    }
}

impl<R: FolioRelease> fmt::Debug for FreezeError<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreezeError")
            .field("pfn", &self.folio.pfn())
            .field("expected", &self.expected)
            .field("actual", &self.actual)
            .finish()
    }
}

impl<R: FolioRelease> fmt::Display for FreezeError<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = FreezeFailed { pfn: self.folio.pfn(), expected: self.expected, actual: self.actual };
        fmt::Display::fmt(&failed, f)
    }
}

impl<R: FolioRelease> core::error::Error for FreezeError<'_, R> {}

/// Why [`FrozenFolio::unfreeze`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnfreezeRefusal {
    /// Slab and page-table folios stay frozen for life (P3): counting one
    /// would let speculative getters reach its owner words (seed 004).
    AlwaysFrozen(PageType),
    /// The count is in the overflow band.
    Overflow,
}

impl UnfreezeRefusal {
    /// Why a frozen folio of type `ty` may not be unfrozen to `count`
    /// references, if it may not: the one rule both `FrozenFolio::unfreeze`
    /// and the raw `Node::unfreeze_pfn` apply.
    pub const fn check(ty: PageType, count: NonZeroU32) -> Option<Self> {
        // Mutant (seed 004's precondition): slab and page-table folios
        // counted like any other.
        #[cfg(memdesc_mutant = "unfreeze_counts_slab")]
        let ty = if ty.is_always_frozen() { PageType::Kernel } else { ty };
        if ty.is_always_frozen() {
            Some(Self::AlwaysFrozen(ty))
        } else if count.get() > REF_MAX {
            Some(Self::Overflow)
        } else {
            None
        }
    }
}

impl fmt::Display for UnfreezeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlwaysFrozen(ty) => write!(f, "a folio of type {ty} is never counted"),
            Self::Overflow => f.write_str("unfreeze count in the overflow band"),
        }
    }
}

impl core::error::Error for UnfreezeRefusal {}

/// A refused unfreeze, without the folio: `'static`, for `?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnfreezeFailed {
    /// The folio's head.
    pub pfn: Pfn,
    /// Why.
    pub reason: UnfreezeRefusal,
}

impl fmt::Display for UnfreezeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot unfreeze folio {}: {}", self.pfn, self.reason)
    }
}

impl core::error::Error for UnfreezeFailed {}

/// A refused unfreeze: the folio comes back, still frozen.
///
/// Like [`FreezeError`], it holds a handle: [`UnfreezeError::into_parts`]
/// splits it from the `'static` [`UnfreezeFailed`], and
/// [`UnfreezeError::into_failed`] (or `From`) frees the folio and keeps the
/// error, for `?`.
pub struct UnfreezeError<'a, R: FolioRelease> {
    /// The folio, still frozen and still the caller's.
    pub folio: FrozenFolio<'a, R>,
    /// Why.
    pub reason: UnfreezeRefusal,
}

impl<R: FolioRelease> fmt::Debug for UnfreezeError<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnfreezeError").field("pfn", &self.folio.pfn()).field("reason", &self.reason).finish()
    }
}

impl<R: FolioRelease> fmt::Display for UnfreezeError<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&UnfreezeFailed { pfn: self.folio.pfn(), reason: self.reason }, f)
    }
}

impl<R: FolioRelease> core::error::Error for UnfreezeError<'_, R> {}

impl<'a, R: FolioRelease> UnfreezeError<'a, R> {
    /// The folio back, still frozen, and the error without it.
    pub fn into_parts(self) -> (FrozenFolio<'a, R>, UnfreezeFailed) {
        let failed = UnfreezeFailed { pfn: self.folio.pfn(), reason: self.reason };
        (self.folio, failed)
    }

    /// The error without the folio, which is freed.
    pub fn into_failed(self) -> UnfreezeFailed {
        self.into_parts().1
    }
}

impl<R: FolioRelease> From<UnfreezeError<'_, R>> for UnfreezeFailed {
    fn from(e: UnfreezeError<'_, R>) -> Self {
        e.into_failed()
    }
}

/// The queries both handles answer the same way: the head, its pfn, and the
/// order, type and contents, all stable while the handle lives (a counted
/// reference or exclusive ownership pins them, P3).
macro_rules! folio_queries {
    ($handle:ident) => {
        impl<'a, R: FolioRelease> $handle<'a, R> {
            /// The head frame's pfn.
            #[inline(always)]
            pub fn pfn(&self) -> Pfn {
                self.owner.memmap().pfn_of(self.head)
            }

            /// The head descriptor.
            #[inline(always)]
            pub fn head(&self) -> &'a Page {
                self.head
            }

            /// The folio's order.
            #[inline(always)]
            pub fn order(&self) -> Order {
                decode_compound(Pfn(0), self.head.compound_word()).1.unwrap_or(Order::ZERO)
            }

            /// Frames in the folio.
            #[inline(always)]
            pub fn nr_pages(&self) -> u64 {
                self.order().nr_pages()
            }

            /// The type tag.
            #[inline(always)]
            pub fn page_type(&self) -> PageType {
                self.head.page_type()
            }

            /// The allocator this folio belongs to.
            pub fn owner(&self) -> &'a R {
                self.owner
            }

            /// A read cursor over the folio's contents, which stays defined
            /// if other holders write them meanwhile (see
            /// [`FrameReader`]). Borrowed from the handle, so it cannot
            /// outlive the reference or ownership that keeps the frames
            /// allocated.
            pub fn reader(&self) -> FrameReader<'_> {
                FrameReader::new(self.owner.memmap().frame_words(self.pfn(), self.nr_pages()).unwrap_or(&[]))
            }
        }
    };
}

folio_queries!(FolioRef);
folio_queries!(FrozenFolio);

impl<'a, R: FolioRelease> FolioRef<'a, R> {
    /// Wraps a head whose refcount the caller has already raised for us.
    #[inline(always)]
    pub(crate) fn from_counted(owner: &'a R, head: &'a Page) -> Self {
        Self { owner, head }
    }

    /// The refcount, as a snapshot.
    pub fn ref_count(&self) -> u32 {
        self.head.ref_count()
    }

    /// The folio's contents as atomic words (racy but defined: holders of
    /// other references may access them too). Borrowed from the handle, so
    /// no view outlives the reference that keeps the frames allocated.
    pub fn contents(&self) -> &[FrameWord] {
        self.owner.memmap().frame_words(self.pfn(), self.nr_pages()).unwrap_or(&[])
    }

    /// A write cursor over the folio's contents. Other holders may read and
    /// write the same bytes meanwhile, so this is a cursor of atomic words
    /// (see [`FrameWriter`]), never a `&mut [u8]`; use the folio lock or
    /// another protocol to order writes between holders.
    pub fn writer(&self) -> FrameWriter<'_> {
        FrameWriter::new(self.contents())
    }

    /// Whether `pfn` lies inside this folio.
    pub fn contains(&self, pfn: Pfn) -> bool {
        let head = self.pfn();
        head <= pfn && pfn.0 < head.0 + self.nr_pages()
    }

    /// Freezes the refcount from exactly 1 to 0 (P2.1): succeeds only if
    /// this is the folio's one reference, so no other handle to it exists.
    ///
    /// # Errors
    /// [`FreezeError`] with this reference back if anyone else holds one (a
    /// pin, a clone, a speculative getter).
    pub fn try_freeze(self) -> Result<FrozenFolio<'a, R>, FreezeError<'a, R>> {
        // SAFETY: duty 1 holds trivially: `expected` is 1, this reference.
        unsafe { self.try_freeze_with(NonZeroU32::MIN) }
    }

    /// Freezes the refcount from exactly `expected` to 0 (P2.1), giving this
    /// reference up for exclusive ownership. `expected` counts this reference
    /// and the raw ones the caller accounts for (mappings, cache slots): any
    /// other reference (a pin, a speculative getter) makes the freeze fail.
    ///
    /// # Safety
    /// 1. The `expected - 1` other references are raw references (given up
    ///    with [`FolioRef::into_raw`] or held by the caller's structures)
    ///    that nobody turns back into handles or puts while the folio is
    ///    frozen; no other live [`FolioRef`] to this folio is counted in
    ///    `expected`, nor any pin ([`PinnedFolio`](super::PinnedFolio):
    ///    on a small folio its bias is 1024 references, which must never
    ///    reach the frozen or free path while the pin lives, P6.4). (A
    ///    live handle counted here would be left pointing at a frozen
    ///    folio, able to reach it while we own it exclusively.)
    ///
    /// # Errors
    /// [`FreezeError`] with this reference back if the refcount is not
    /// `expected`.
    pub unsafe fn try_freeze_with(self, expected: NonZeroU32) -> Result<FrozenFolio<'a, R>, FreezeError<'a, R>> {
        // P2.1. Acquire: pairs with the Release fetch_sub of every put
        // (put_refs, R.2) so the other holders' accesses happen before our
        // exclusive use. Relaxed: on failure, we keep our reference and touch
        // nothing.
        #[cfg(not(memdesc_mutant = "split_check_without_freeze"))]
        let frozen = self.head.refcount.compare_exchange(expected.get(), 0, Ordering::Acquire, Ordering::Relaxed);
        // Mutant (DESIGN §4, "split checking the refcount without freezing
        // it"): the count compared, not swapped to 0, so a speculative get
        // or pin that lands after the check is counted on a folio being
        // split, and the unfreeze overwrites it. Acquire: as the CAS's.
        #[cfg(memdesc_mutant = "split_check_without_freeze")]
        let frozen = match self.head.refcount.load(Ordering::Acquire) {
            seen if seen == expected.get() => Ok(seen),
            seen => Err(seen),
        };
        match frozen {
            Ok(_) => {
                let this = ManuallyDrop::new(self);
                Ok(FrozenFolio { owner: this.owner, head: this.head })
            }
            Err(actual) => Err(FreezeError { folio: self, expected: expected.get(), actual }),
        }
    }

    /// Gives up the handle without putting the reference; returns the head
    /// pfn, for [`FolioRef::from_raw`].
    pub fn into_raw(self) -> Pfn {
        let pfn = self.pfn();
        core::mem::forget(self);
        pfn
    }

    /// Restores a handle given up by [`FolioRef::into_raw`].
    ///
    /// # Safety
    /// 1. `pfn` came from `into_raw` on a reference of this `owner`, and
    ///    each such value is restored exactly once.
    ///
    /// # Errors
    /// [`RawError`] for what a check can see is not a counted folio head:
    /// a pfn outside the map, a tail, a free or unmanaged frame, refcount
    /// 0. Nothing changes on error.
    pub unsafe fn from_raw(owner: &'a R, pfn: Pfn) -> Result<Self, RawError> {
        let head = raw_head(owner.memmap(), pfn)?;
        if head.ref_count() == 0 {
            return Err(RawError::ZeroRefcount(pfn));
        }
        Ok(Self { owner, head })
    }
}

impl<R: FolioRelease> Clone for FolioRef<'_, R> {
    #[inline]
    fn clone(&self) -> Self {
        // Relaxed: as in Arc::clone, a new reference is made from one we hold,
        // so the folio cannot be freed or frozen concurrently and nothing
        // needs ordering.
        let old = self.head.refcount.fetch_add(1, Ordering::Relaxed);
        if old == 0 || old >= REF_MAX {
            // Relaxed: undoing our own increment; we are about to panic.
            self.head.refcount.fetch_sub(1, Ordering::Relaxed);
            // A handle that outlived its reference (raw-API misuse) must not
            // bring a free or frozen folio back to life, and an overflow
            // means references are leaking: both are bugs, like Arc's abort.
            panic!("folio {}: clone of a reference at refcount {old}", self.pfn());
        }
        Self { owner: self.owner, head: self.head }
    }
}

impl<'a, R: FolioRelease> FolioRef<'a, R> {
    /// Puts this reference as its drop does, but a last put hands the
    /// folio to `release` instead of [`FolioRelease::release`] (see
    /// [`put_refs_with`]).
    #[inline(always)]
    pub(crate) fn put_with(self, release: impl FnOnce(&'a R, Pfn)) {
        let this = ManuallyDrop::new(self);
        put_refs_with(this.owner, this.head, NonZeroU32::MIN, release);
    }
}

impl<R: FolioRelease> Drop for FolioRef<'_, R> {
    #[inline]
    fn drop(&mut self) {
        put_refs(self.owner, self.head, NonZeroU32::MIN);
    }
}

/// Puts `n` counted references to the folio headed at `head` in one atomic
/// subtraction (R.2), freeing it through `owner` if they were the last
/// (R.3): the one put of [`FolioRef`], [`FolioRefs`](super::FolioRefs) and
/// [`PinnedFolio`](super::PinnedFolio). The caller gives up `n` references
/// it holds.
#[inline]
pub(crate) fn put_refs<R: FolioRelease>(owner: &R, head: &Page, n: NonZeroU32) {
    put_refs_with(owner, head, n, |owner, pfn| owner.release(pfn));
}

/// [`put_refs`], handing a folio whose last reference this was to
/// `release` (the owner's own release on a path that skips a step, such as
/// a CPU entry its caller already made) instead of
/// [`FolioRelease::release`].
#[inline(always)]
pub(crate) fn put_refs_with<'o, R: FolioRelease>(
    owner: &'o R,
    head: &Page,
    n: NonZeroU32,
    release: impl FnOnce(&'o R, Pfn),
) {
    let n = n.get();
    // R.2. Release: our accesses to the folio happen before whoever frees or
    // freezes it; pairs with the Acquire load below (last put, R.3),
    // put_pfn's (R.4) and the Acquire CAS in try_freeze (P2.1).
    #[cfg(not(memdesc_mutant = "relaxed_put"))]
    let old = head.refcount.fetch_sub(n, Ordering::Release);
    // Mutant: the put without Release, so a holder's writes may land after
    // the free. Relaxed: deliberately wrong.
    #[cfg(memdesc_mutant = "relaxed_put")]
    let old = head.refcount.fetch_sub(n, Ordering::Relaxed);
    if old == n {
        // R.3. Acquire: pairs with the Release puts of every other holder
        // (R.2, R.4): our fetch_sub continues their release sequences, so
        // this load, reading its 0 (or a later RMW), synchronises with each
        // and their accesses happen before the free. A load, not a fence:
        // the same edge (Arc's under ThreadSanitizer), a plain move on
        // x86-64, and no fence on the counted pair's path.
        // Mutant: the Acquire removed, as if Arc::drop lacked its own.
        #[cfg(not(memdesc_mutant = "no_last_put_fence"))]
        head.refcount.load(Ordering::Acquire);
        release(owner, owner.memmap().pfn_of(head));
    } else if old < n {
        // Puts nobody owned (a raw API misused): undo our own wrap only, so
        // a concurrent publish of a reallocation is not overwritten, and
        // report it; the owner quarantines the frame unless it is free (a
        // free frame is on a list and stays there).
        // Relaxed: misuse recovery; nothing is ordered by it. Mutant: the
        // wrap left in place.
        #[cfg(not(memdesc_mutant = "put_at_zero_no_undo"))]
        let _ = head.refcount.compare_exchange(old.wrapping_sub(n), old, Ordering::Relaxed, Ordering::Relaxed);
        owner.bad_page(owner.memmap().pfn_of(head), BadPageReason::RefcountUnderflow);
    }
}

impl<R: FolioRelease> fmt::Debug for FolioRef<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FolioRef")
            .field("pfn", &self.pfn())
            .field("order", &self.order())
            .field("type", &self.page_type())
            .finish()
    }
}

impl<'a, R: FolioRelease> FrozenFolio<'a, R> {
    /// Wraps a head the caller owns exclusively with refcount 0.
    ///
    /// # Safety
    /// 1. The folio at `head` is allocated (not free), its refcount is 0, and
    ///    no other handle to it exists.
    #[inline(always)]
    pub(crate) unsafe fn from_owned(owner: &'a R, head: &'a Page) -> Self {
        debug_assert_eq!(head.ref_count(), 0);
        Self { owner, head }
    }

    /// Changes the type tag (P3). The new type reaches other CPUs when the
    /// folio is published or unfrozen.
    ///
    /// Returns `false`, changing nothing, for a type no allocated folio may
    /// carry (free, tail, unmanaged).
    pub fn set_type(&mut self, ty: PageType) -> bool {
        if !ty.is_owner_type() {
            return false;
        }
        self.head.set_type(ty);
        true
    }

    /// Reads owner word `index` (0..4).
    pub fn owner_word(&self, index: usize) -> Option<u64> {
        // SAFETY: duty 1 holds: the folio is frozen and this handle is its
        // only owner (type invariant), so nobody writes the word concurrently.
        (index < crate::memmap::OWNER_WORDS).then(|| unsafe { self.head.owner_word(index) })
    }

    /// Writes owner word `index` (0..4); returns `false` if out of range.
    pub fn set_owner_word(&mut self, index: usize, value: u64) -> bool {
        if index >= crate::memmap::OWNER_WORDS {
            return false;
        }
        // SAFETY: duty 1 holds: frozen and exclusively ours (type invariant).
        unsafe { self.head.set_owner_word(index, value) };
        true
    }

    /// Unfreezes to `count` references (P2.5) and returns one of them; the
    /// other `count - 1` belong to holders the caller accounts for (the raw
    /// references its `try_freeze_with` expected).
    ///
    /// # Errors
    /// [`UnfreezeError`] with the folio back, still frozen, for a slab or
    /// page-table folio (they are never counted: P3) or a count in the
    /// overflow band.
    pub fn unfreeze(self, count: NonZeroU32) -> Result<FolioRef<'a, R>, UnfreezeError<'a, R>> {
        if let Some(reason) = UnfreezeRefusal::check(self.page_type(), count) {
            return Err(UnfreezeError { folio: self, reason });
        }
        Ok(self.unfreeze_checked(count))
    }

    /// [`FrozenFolio::unfreeze`] past its check: the caller has applied
    /// [`UnfreezeRefusal::check`] to this folio's type and `count`.
    pub(crate) fn unfreeze_checked(self, count: NonZeroU32) -> FolioRef<'a, R> {
        let this = ManuallyDrop::new(self);
        // P2.5. Release: publishes every store made while frozen (type tag,
        // compound words, flags, owner words; P2.2-P2.4) to the next
        // speculative getter, whose Acquire get (P1.3) pairs with it.
        #[cfg(not(memdesc_mutant = "relaxed_unfreeze"))]
        this.head.refcount.store(count.get(), Ordering::Release);
        // Mutant (DESIGN §4): the unfreeze without Release, so a getter may
        // see the refcount but stale compound info and type (seed 000).
        // Relaxed: deliberately wrong.
        #[cfg(memdesc_mutant = "relaxed_unfreeze")]
        this.head.refcount.store(count.get(), Ordering::Relaxed);
        FolioRef { owner: this.owner, head: this.head }
    }

    /// Publishes a newly allocated folio with refcount 1 (P3.3): the type tag,
    /// compound words and cleared owner words written while it was being
    /// prepared become visible to every getter that takes a reference.
    pub(crate) fn publish(self) -> FolioRef<'a, R> {
        let this = ManuallyDrop::new(self);
        // P3.3. Release: pairs with the Acquire get (P1.3); a getter that sees
        // refcount 1 sees the type tag and compound info of P3.1-P3.2.
        #[cfg(not(memdesc_mutant = "relaxed_type_publish"))]
        this.head.refcount.store(1, Ordering::Release);
        // Mutant (DESIGN §4): the typed folio published without Release, so
        // a getter may hold a reference and still read the old type.
        // Relaxed: deliberately wrong.
        #[cfg(memdesc_mutant = "relaxed_type_publish")]
        this.head.refcount.store(1, Ordering::Relaxed);
        FolioRef { owner: this.owner, head: this.head }
    }

    /// Gives up the handle, keeping the folio frozen; returns the head pfn.
    pub fn into_raw(self) -> Pfn {
        let pfn = self.pfn();
        core::mem::forget(self);
        pfn
    }

    /// Restores a handle given up by [`FrozenFolio::into_raw`].
    ///
    /// # Safety
    /// 1. `pfn` came from `into_raw` on a frozen folio of this `owner`, and
    ///    each such value is restored exactly once.
    ///
    /// # Errors
    /// [`RawError`] for what a check can see is not a frozen folio head: a
    /// pfn outside the map, a tail, a free or unmanaged frame
    /// ([`RawError::Unmanaged`] for a reserved one), a counted folio
    /// ([`RawError::NotFrozen`]). Nothing changes on error.
    pub unsafe fn from_raw(owner: &'a R, pfn: Pfn) -> Result<Self, RawError> {
        let head = raw_head(owner.memmap(), pfn)?;
        let refcount = head.ref_count();
        if refcount != 0 {
            return Err(RawError::NotFrozen { pfn, refcount });
        }
        Ok(Self { owner, head })
    }

    /// The folio's contents as bytes. Frozen means exclusive: no reference,
    /// pin or speculative getter can reach the frames, so a plain slice is
    /// sound (and `&mut self` in [`FrozenFolio::bytes_mut`] keeps it from
    /// overlapping a write).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: duty 1 of frame_bytes: the folio is frozen and this handle
        // its only owner (type invariant); the only writable views,
        // `bytes_mut` and `writer`, borrow the handle mutably, so none exists
        // while this shared borrow lives.
        unsafe { self.owner.memmap().frame_bytes(self.pfn(), self.nr_pages()) }.unwrap_or(&[])
    }

    /// The folio's contents as mutable bytes (exclusive owner).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: duty 1 of frame_bytes_mut: frozen and exclusively ours
        // (type invariant), and `&mut self` makes this the only view.
        unsafe { self.owner.memmap().frame_bytes_mut(self.pfn(), self.nr_pages()) }.unwrap_or(&mut [])
    }

    /// A write cursor over the contents, for code written against the
    /// shared holders' cursors; an exclusive owner may as well use
    /// [`FrozenFolio::bytes_mut`].
    pub fn writer(&mut self) -> FrameWriter<'_> {
        FrameWriter::new(self.owner.memmap().frame_words(self.pfn(), self.nr_pages()).unwrap_or(&[]))
    }

    /// Copies the contents of `src`, a folio of the same order, into this
    /// one, at memcpy speed (migration's copy: both folios exclusively
    /// owned).
    ///
    /// # Errors
    /// [`CopyError`] if the orders differ; nothing is copied.
    pub fn copy_from<S: FolioRelease>(&mut self, src: &FrozenFolio<'_, S>) -> Result<(), CopyError> {
        let (from, to) = (src.order(), self.order());
        if from != to {
            return Err(CopyError { src: from, dst: to });
        }
        self.bytes_mut().copy_from_slice(src.bytes());
        Ok(())
    }

    /// Unfreezes to one reference, the caller's: the common case of
    /// [`FrozenFolio::unfreeze`].
    ///
    /// # Errors
    /// As [`FrozenFolio::unfreeze`].
    pub fn unfreeze_one(self) -> Result<FolioRef<'a, R>, UnfreezeError<'a, R>> {
        self.unfreeze(NonZeroU32::MIN)
    }
}

/// A copy between folios of different orders was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyError {
    /// The source's order.
    pub src: Order,
    /// The destination's order.
    pub dst: Order,
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot copy an order-{} folio into an order-{} folio", self.src, self.dst)
    }
}

impl core::error::Error for CopyError {}

impl<R: FolioRelease> Drop for FrozenFolio<'_, R> {
    fn drop(&mut self) {
        // Dropping exclusive ownership frees the folio; the refcount is
        // already 0, so the allocator takes it as is.
        self.owner.release(self.pfn());
    }
}

impl<R: FolioRelease> fmt::Debug for FrozenFolio<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrozenFolio")
            .field("pfn", &self.pfn())
            .field("order", &self.order())
            .field("type", &self.page_type())
            .finish()
    }
}

impl<'a, R: FolioRelease> super::FolioRefs<'a, R> {
    /// Gives up the handle without putting its references; returns the head
    /// pfn and how many, for [`FolioRefs::from_raw`](super::FolioRefs::from_raw)
    /// (a page table's leaves hold their references this way).
    pub fn into_raw(self) -> (Pfn, NonZeroU32) {
        let (owner, head, refs) = self.into_parts();
        (owner.memmap().pfn_of(head), refs)
    }

    /// Restores `n` references given up by [`FolioRef::into_raw`] or
    /// [`FolioRefs::into_raw`](super::FolioRefs::into_raw), in one handle,
    /// so they are put in one subtraction.
    ///
    /// # Safety
    /// 1. The caller owns `n` raw references of this `owner` to the folio
    ///    headed at `pfn` and restores each once.
    ///
    /// # Errors
    /// As [`FolioRef::from_raw`], and [`RawError::ZeroRefcount`] if the
    /// refcount is below `n`. Nothing changes on error.
    pub unsafe fn from_raw(owner: &'a R, pfn: Pfn, n: NonZeroU32) -> Result<Self, RawError> {
        let head = raw_head(owner.memmap(), pfn)?;
        if head.ref_count() < n.get() {
            return Err(RawError::ZeroRefcount(pfn));
        }
        Ok(Self::from_counted(owner, head, n))
    }
}
