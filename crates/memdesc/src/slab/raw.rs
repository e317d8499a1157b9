//! The slab layer's `unsafe`, in one place: the typed view of a slab head's
//! owner words ([`SlabView`]), object memory reached by address
//! ([`Arena`]), and structs placed in frozen frames ([`place`]).
//!
//! # Who may touch a slab's owner words
//! A slab frame is typed `Slab { cache }` by the one atomic tag (P3, P7)
//! and is never counted (allocated frozen, P2), so no speculative getter
//! reads its owner words as anything. Between the slab layer's own users
//! the rule is:
//! - while the creator or the discarder holds the [`FrozenFolio`], the
//!   frame is typed `Slab { cache: UNLISTED }` and the handle is the only
//!   way in ([`SlabView::frozen`]);
//! - while the frame is typed `Slab { cache: id }` with a real cache id, it
//!   is on that cache's lists, and its owner words belong to whoever holds
//!   that cache's list lock ([`SlabView::locked`], which checks the tag
//!   under the lock: both retypes happen under it).

use super::SLAB_UNLISTED;
use crate::buddy::FrozenFolio;
use crate::folio::PageType;
use crate::memmap::{MemMap, Page};
use crate::sync::FrameWord;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// Owner word 0: counts and list membership ([`SlabCounts`]).
const W_COUNTS: usize = 0;
/// Owner word 1: address of the first free object, or 0.
const W_FREELIST: usize = 1;
/// Owner word 2: next slab on the same list (a pfn), or [`NIL`].
const W_NEXT: usize = 2;
/// Owner word 3: previous slab on the same list (a pfn), or [`NIL`].
const W_PREV: usize = 3;

/// The end of a slab list.
pub(crate) const NIL: u64 = u64::MAX;

/// Which of its cache's lists a slab is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// On no list (being created or discarded).
    None = 0,
    /// Some objects free (empty slabs too, up to the cache's
    /// `min_partial` slabs on the list).
    Partial = 1,
    /// Every object in use (or quarantined).
    Full = 2,
}

/// Owner word 0 decoded: `objects | inuse << 16 | quarantined << 32 |
/// list << 46 | cache << 48`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlabCounts {
    /// Objects the slab holds.
    pub(crate) objects: u16,
    /// Objects handed out (to users or to per-CPU sheaves), quarantined
    /// ones included.
    pub(crate) inuse: u16,
    /// Objects found corrupted by the debug checks and never reused.
    pub(crate) quarantined: u16,
    /// The list the slab is on.
    pub(crate) list: ListKind,
    /// The cache, as a cross-check of the type tag for audits.
    pub(crate) cache: u16,
}

/// Quarantined objects fit in 14 bits (a slab holds at most
/// `PAGE_SIZE << MAX_SLAB_ORDER / 8` objects).
const QUARANTINE_MASK: u64 = (1 << 14) - 1;

impl SlabCounts {
    fn encode(self) -> u64 {
        u64::from(self.objects)
            | u64::from(self.inuse) << 16
            | (u64::from(self.quarantined) & QUARANTINE_MASK) << 32
            | (self.list as u64) << 46
            | u64::from(self.cache) << 48
    }

    fn decode(word: u64) -> Self {
        let list = match (word >> 46) & 3 {
            1 => ListKind::Partial,
            2 => ListKind::Full,
            _ => ListKind::None,
        };
        Self {
            objects: word as u16,
            inuse: (word >> 16) as u16,
            quarantined: ((word >> 32) & QUARANTINE_MASK) as u16,
            list,
            cache: (word >> 48) as u16,
        }
    }
}

/// Proof that the holder is inside one cache's list lock: lives only in
/// the lock-protected list state, so `&mut` to it exists only under the
/// lock.
#[derive(Debug)]
pub(crate) struct ListLock {
    cache: u16,
}

impl ListLock {
    /// The witness of cache `cache`'s lock; the cache puts it in its
    /// lock-protected state and nowhere else.
    pub(super) const fn new(cache: u16) -> Self {
        Self { cache }
    }
}

/// Typed access to a slab head's owner words (P7): only through a frozen
/// handle or the owning cache's list lock, as the module doc says.
pub(crate) struct SlabView<'v> {
    page: &'v Page,
    /// Exclusive for `'v`: holds the handle or the lock witness mutably.
    _exclusive: PhantomData<&'v mut ()>,
}

impl<'v> SlabView<'v> {
    /// The view of a slab its creator or discarder holds frozen.
    pub(crate) fn frozen(folio: &'v mut FrozenFolio<'_>) -> Self {
        debug_assert!(matches!(folio.page_type(), PageType::Slab { .. }));
        Self { page: folio.head(), _exclusive: PhantomData }
    }

    /// The view of the slab headed by `page`, under the list lock of the
    /// cache `lock` belongs to; `None` unless `page` is a slab head of that
    /// cache now (read under the lock, which orders it after both retypes).
    pub(crate) fn locked(lock: &'v mut ListLock, page: &'v Page) -> Option<Self> {
        (page.page_type() == PageType::Slab { cache: lock.cache } && lock.cache != SLAB_UNLISTED)
            .then_some(Self { page, _exclusive: PhantomData })
    }

    fn read(&self, index: usize) -> u64 {
        // SAFETY: duty 1 of owner_word: by construction the view holds the
        // frozen handle or the lock that owns this slab's owner words (module
        // doc), so nobody writes them concurrently.
        unsafe { self.page.owner_word(index) }
    }

    fn write(&mut self, index: usize, value: u64) {
        // SAFETY: duty 1 of set_owner_word: exclusive as in `read`.
        unsafe { self.page.set_owner_word(index, value) }
    }

    /// Counts and list membership.
    pub(crate) fn counts(&self) -> SlabCounts {
        SlabCounts::decode(self.read(W_COUNTS))
    }

    /// Writes counts and list membership.
    pub(crate) fn set_counts(&mut self, counts: SlabCounts) {
        self.write(W_COUNTS, counts.encode());
    }

    /// Address of the first free object, or 0.
    pub(crate) fn freelist(&self) -> usize {
        self.read(W_FREELIST) as usize
    }

    /// Sets the first free object.
    pub(crate) fn set_freelist(&mut self, addr: usize) {
        self.write(W_FREELIST, addr as u64);
    }

    /// The list links (next, prev) as pfns or [`NIL`].
    pub(crate) fn links(&self) -> (u64, u64) {
        (self.read(W_NEXT), self.read(W_PREV))
    }

    /// Sets the next link.
    pub(crate) fn set_next(&mut self, next: u64) {
        self.write(W_NEXT, next);
    }

    /// Sets the previous link.
    pub(crate) fn set_prev(&mut self, prev: u64) {
        self.write(W_PREV, prev);
    }
}

/// The node's memory seen as addresses: rebuilds object pointers (with the
/// memory's provenance) from the addresses slabs and sheaves keep.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arena {
    base: NonNull<u8>,
}

// SAFETY: an arena is a base pointer; every access through it is an
// `unsafe` call below whose caller owns the bytes.
unsafe impl Send for Arena {}
// SAFETY: as for Send.
unsafe impl Sync for Arena {}

impl Arena {
    /// The arena of `map`'s memory.
    pub(crate) fn new(map: &MemMap<'_>) -> Self {
        Self { base: map.memory_ptr() }
    }

    /// The pointer to address `addr` of the memory (an address this layer
    /// computed from a frame of the map).
    #[inline(always)]
    pub(crate) fn ptr(&self, addr: usize) -> NonNull<u8> {
        let offset = addr.wrapping_sub(self.base.as_ptr() as usize);
        // A frame address of the map is inside the memory the base
        // starts, hence not null.
        NonNull::new(self.base.as_ptr().wrapping_add(offset)).unwrap_or(self.base)
    }

    /// Reads the word at `addr` (a free pointer, a kfree_rcu entry).
    ///
    /// # Safety
    /// 1. `addr` is 8-aligned, inside a frame the slab layer owns, and no
    ///    other thread writes the word concurrently (a free object under its
    ///    cache's list lock, or an object the caller owns).
    #[inline(always)]
    pub(crate) unsafe fn read_word(&self, addr: usize) -> usize {
        debug_assert_eq!(addr % 8, 0);
        // SAFETY: duty 1; the pointer carries the memory's provenance.
        unsafe { self.ptr(addr).as_ptr().cast::<usize>().read() }
    }

    /// Writes the word at `addr`.
    ///
    /// # Safety
    /// 1. As for [`Arena::read_word`], and no other thread reads it
    ///    concurrently either.
    #[inline(always)]
    pub(crate) unsafe fn write_word(&self, addr: usize, value: usize) {
        debug_assert_eq!(addr % 8, 0);
        // SAFETY: duty 1; the pointer carries the memory's provenance.
        unsafe { self.ptr(addr).as_ptr().cast::<usize>().write(value) }
    }

    /// The `len` bytes at `addr`.
    ///
    /// # Safety
    /// 1. The bytes are inside frames the slab layer owns, and nobody writes
    ///    them while the slice lives.
    pub(crate) unsafe fn bytes<'b>(&self, addr: usize, len: usize) -> &'b [u8] {
        // SAFETY: duty 1.
        unsafe { core::slice::from_raw_parts(self.ptr(addr).as_ptr(), len) }
    }

    /// The `n` words at `addr`, as atomics: a view that stays defined while
    /// other holders read and write them atomically (TYPESAFE_BY_RCU
    /// objects). Computing it is safe: atomic accesses cannot race each
    /// other; the caller keeps plain accesses away (see the callers).
    pub(crate) fn words<'b>(&self, addr: usize, n: usize) -> &'b [FrameWord] {
        debug_assert_eq!(addr % 8, 0);
        // The callers' duty, stated at each: no plain access to these words
        // happens concurrently (TYPESAFE_BY_RCU objects are written only
        // atomically once published, and their slabs stay slabs for the
        // reader's section).
        // SAFETY: `addr` is an 8-aligned object address of a slab frame of
        // the node's memory (the callers looked it up), which lives as long
        // as the node; FrameWord is a u64-sized atomic valid for any bits.
        unsafe { core::slice::from_raw_parts(self.ptr(addr).as_ptr().cast::<FrameWord>(), n) }
    }

    /// The `len` bytes at `addr`, writable.
    ///
    /// # Safety
    /// 1. The bytes are inside frames the slab layer owns, and nobody else
    ///    reads or writes them while the slice lives.
    #[allow(clippy::mut_from_ref)] // Exclusivity is duty 1, the caller's.
    pub(crate) unsafe fn bytes_mut<'b>(&self, addr: usize, len: usize) -> &'b mut [u8] {
        // SAFETY: duty 1.
        unsafe { core::slice::from_raw_parts_mut(self.ptr(addr).as_ptr(), len) }
    }
}

/// Moves `value` into the frames of `folio` (allocated for it, large and
/// aligned enough) and returns a pointer to it; the folio is given up
/// (its pfn is returned) and must be taken back with [`unplace`].
///
/// Returns the value back if the folio is too small.
pub(crate) fn place<T>(folio: FrozenFolio<'_>, value: T) -> Result<(NonNull<T>, u64), T> {
    let len = folio.nr_pages() as usize * crate::memmap::PAGE_SIZE;
    if size_of::<T>() > len || align_of::<T>() > crate::memmap::PAGE_SIZE {
        return Err(value);
    }
    let Some(frame) = folio.owner().memmap().frame_ptr(folio.pfn()) else {
        return Err(value);
    };
    let ptr = frame.cast::<T>();
    let pfn = folio.into_raw();
    // SAFETY: the frames are ours alone (frozen, handle given up just
    // above, restored only by `unplace`), large enough and page-aligned
    // (checked above).
    unsafe { ptr.as_ptr().write(value) };
    Ok((ptr, pfn.0))
}

/// Drops the value [`place`] put at `ptr` and returns its folio.
///
/// # Safety
/// 1. `ptr` and `pfn` came from one `place` call on a folio of `node`, and
///    this is the one `unplace` for it: no reference to the value remains.
pub(crate) unsafe fn unplace<'n, T>(
    node: &'n crate::buddy::Node<'n>,
    ptr: NonNull<T>,
    pfn: u64,
) -> Option<FrozenFolio<'n>> {
    // SAFETY: duty 1: the value is live and ours alone.
    unsafe { ptr.as_ptr().drop_in_place() };
    // SAFETY: duty 1 of from_raw: `place` gave the handle up with
    // into_raw, and this is its one restore.
    unsafe { FrozenFolio::from_raw(node, crate::memmap::Pfn(pfn)) }.ok()
}

/// Restores a slab (or batch) folio given up with `into_raw`.
///
/// # Safety
/// 1. The slab layer gave the folio at `pfn` up with `into_raw` and this is
///    its one restore (a slab taken off its lists under the lock).
pub(crate) unsafe fn take_folio<'n>(node: &'n crate::buddy::Node<'n>, pfn: u64) -> Option<FrozenFolio<'n>> {
    // SAFETY: duty 1 of from_raw is ours, passed on.
    unsafe { FrozenFolio::from_raw(node, crate::memmap::Pfn(pfn)) }.ok()
}
