//! kmalloc: size classes from 8 bytes to half a page, served by the caches
//! `SlabAllocator::new` creates (ids 0..11, in [`KMALLOC_SIZES`] order), and
//! page-granular allocations above, straight from the buddy allocator and
//! typed `Slab { cache: SLAB_LARGE }` so `kfree` knows them.

use super::{order_for_bytes, Found, SlabAllocator, SlabCore, SlabError, SlabEvent, SLAB_LARGE};
use crate::buddy::Gfp;
use crate::folio::PageType;
use crate::memmap::PAGE_SIZE;
use crate::platform::LocalCpu;
use core::ptr::NonNull;

/// The kmalloc size classes: powers of two plus 96 and 192, as Linux has.
pub const KMALLOC_SIZES: [usize; 11] = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048];
/// The largest size served by a slab cache; larger requests take frames.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 2048;
/// The caches' names.
pub(crate) const KMALLOC_NAMES: [&str; 11] = [
    "kmalloc-8",
    "kmalloc-16",
    "kmalloc-32",
    "kmalloc-64",
    "kmalloc-96",
    "kmalloc-128",
    "kmalloc-192",
    "kmalloc-256",
    "kmalloc-512",
    "kmalloc-1k",
    "kmalloc-2k",
];

/// The class of sizes up to 192, by `(size - 1) / 8`.
const SMALL_INDEX: [u8; 24] = [0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6];

/// The alignment every object of a class of `size` has: the largest power
/// of two dividing it (slabs are page-aligned and packed at that stride),
/// so power-of-two classes are naturally aligned, as Linux guarantees.
pub(crate) const fn natural_align(size: usize) -> usize {
    let align = 1 << size.trailing_zeros();
    if align > PAGE_SIZE {
        PAGE_SIZE
    } else {
        align
    }
}

/// The class serving `size` bytes aligned to `align`, if a slab class does.
#[inline(always)]
fn class_for(size: usize, align: usize) -> Option<usize> {
    let mut index = if size <= 192 {
        usize::from(SMALL_INDEX[(size - 1) / 8])
    } else if size <= KMALLOC_MAX_CACHE_SIZE {
        (usize::BITS - (size - 1).leading_zeros()) as usize - 1
    } else {
        return None;
    };
    while natural_align(KMALLOC_SIZES[index]) < align {
        index += 1;
        if index == KMALLOC_SIZES.len() {
            return None;
        }
    }
    Some(index)
}

impl SlabCore<'_> {
    /// Frees what `addr` is by its descriptor: an object of any cache, or a
    /// large kmalloc.
    #[inline(always)]
    pub(crate) fn kfree_addr(&self, addr: usize) -> Result<(), SlabError> {
        match self.cache_of_object(addr) {
            Some(cache) => cache.free(addr),
            None => self.kfree_other(addr),
        }
    }

    /// What the fast check of a kfree refused: a large kmalloc, a bad
    /// pointer (named by the full lookup), or an object whose slab a retype
    /// raced the check.
    #[cold]
    #[inline(never)]
    pub(crate) fn kfree_other(&self, addr: usize) -> Result<(), SlabError> {
        match self.lookup(addr)? {
            Found::Object(cache, obj) => cache.free(obj),
            Found::Large(pfn, _) => {
                // SAFETY: duty 1 of take_folio: kmalloc gave the folio up
                // with into_raw; the caller of kfree gives its pointer up
                // once (kfree's duty 1).
                if let Some(folio) = unsafe { super::raw::take_folio(self.node, pfn.0) } {
                    self.count(SlabEvent::LargeFree, 1);
                    drop(folio);
                }
                Ok(())
            }
        }
    }
}

impl SlabAllocator<'_> {
    /// Allocates `size` bytes aligned to `align` (a power of two): from the
    /// smallest size class that fits and is aligned enough, or, above
    /// [`KMALLOC_MAX_CACHE_SIZE`], from the smallest buddy folio (aligned to
    /// its size).
    ///
    /// # Errors
    /// [`SlabError::BadSize`] for 0 or above the largest folio,
    /// [`SlabError::BadAlign`] for an alignment not a power of two,
    /// [`SlabError::OutOfMemory`].
    #[inline(always)]
    pub fn kmalloc(&self, size: usize, align: usize) -> Result<NonNull<u8>, SlabError> {
        // One compare rejects 0 and the large sizes; the slow path names them.
        if size.wrapping_sub(1) < KMALLOC_MAX_CACHE_SIZE && align.is_power_of_two() {
            let core = self.core();
            if let Some(cache) = class_for(size, align).and_then(|index| core.cache(index)) {
                return Ok(core.arena.ptr(cache.alloc()?));
            }
        }
        self.kmalloc_slow(size, align)
    }

    /// kmalloc's checks and large allocations.
    #[cold]
    #[inline(never)]
    fn kmalloc_slow(&self, size: usize, align: usize) -> Result<NonNull<u8>, SlabError> {
        if !align.is_power_of_two() {
            return Err(SlabError::BadAlign(align));
        }
        if size == 0 {
            return Err(SlabError::BadSize(size));
        }
        let core = self.core();
        if let Some(index) = class_for(size, align) {
            let cache = core.cache(index).ok_or(SlabError::BadSize(size))?;
            return Ok(core.arena.ptr(cache.alloc()?));
        }
        let order = order_for_bytes(size.max(align)).ok_or(SlabError::BadSize(size))?;
        let folio = self.node.alloc_frozen(order, Gfp::KERNEL.typed(PageType::Slab { cache: SLAB_LARGE }))?;
        let addr = self.node.memmap().frame_ptr(folio.pfn()).map_or(0, |p| p.as_ptr() as usize);
        let _ = folio.into_raw();
        core.count(SlabEvent::LargeAlloc, 1);
        Ok(core.arena.ptr(addr))
    }

    /// [`SlabAllocator::kmalloc`] inside a local section the caller opened:
    /// a size class's per-CPU fast path with no call to the platform; large
    /// sizes and errors take kmalloc's own path.
    ///
    /// # Errors
    /// As [`SlabAllocator::kmalloc`].
    ///
    /// # Safety
    /// 1. `cpu` came from `local_enter` of the platform this allocator's
    ///    node was booted with, as for
    ///    [`CacheRef::alloc_on`](super::CacheRef::alloc_on).
    #[inline(always)]
    pub unsafe fn kmalloc_on(&self, cpu: &LocalCpu, size: usize, align: usize) -> Result<NonNull<u8>, SlabError> {
        // One compare rejects 0 and the large sizes; kmalloc names them.
        if size.wrapping_sub(1) < KMALLOC_MAX_CACHE_SIZE && align.is_power_of_two() {
            let core = self.core();
            if let Some(cache) = class_for(size, align).and_then(|index| core.cache(index)) {
                if let Some(addr) = cache.alloc_on(cpu) {
                    return Ok(core.arena.ptr(addr));
                }
            }
        }
        self.kmalloc_other(size, align)
    }

    /// What the fast path of `kmalloc_on` did not serve (through the
    /// platform: an out-of-memory retry, or kmalloc's own slow path).
    #[cold]
    #[inline(never)]
    fn kmalloc_other(&self, size: usize, align: usize) -> Result<NonNull<u8>, SlabError> {
        self.kmalloc(size, align)
    }

    /// [`SlabAllocator::kfree`] inside a local section the caller opened,
    /// as [`SlabAllocator::kmalloc_on`].
    ///
    /// # Errors
    /// As [`SlabAllocator::kfree`].
    ///
    /// # Safety
    /// 1. As [`SlabAllocator::kfree`]'s duty 1.
    /// 2. As [`SlabAllocator::kmalloc_on`]'s duty 1.
    #[inline(always)]
    pub unsafe fn kfree_on(&self, cpu: &LocalCpu, ptr: NonNull<u8>) -> Result<(), SlabError> {
        let addr = ptr.as_ptr() as usize;
        let core = self.core();
        match core.cache_of_object(addr) {
            Some(cache) => cache.free_on(cpu, addr),
            None => core.kfree_other(addr),
        }
    }

    /// Frees what `kmalloc` (or any cache's `alloc_raw`) returned, found by
    /// its descriptor.
    ///
    /// # Errors
    /// As [`CacheRef::free_raw`](super::CacheRef::free_raw) (without
    /// `WrongCache`: any cache's object may be kfree'd); nothing is freed.
    ///
    /// # Safety
    /// 1. If `ptr` is an allocation of this allocator, the caller owns it
    ///    and gives it up (freed once, no access after). Double frees are
    ///    detected only by debug caches (and for large allocations only
    ///    once the frames are back in the buddy allocator).
    #[inline(always)]
    pub unsafe fn kfree(&self, ptr: NonNull<u8>) -> Result<(), SlabError> {
        self.core().kfree_addr(ptr.as_ptr() as usize)
    }

    /// The usable size of an allocation: its class's object size, or its
    /// folio's bytes.
    ///
    /// # Errors
    /// As [`SlabAllocator::kfree`]'s lookup.
    #[inline]
    pub fn ksize(&self, ptr: NonNull<u8>) -> Result<usize, SlabError> {
        if let Some(cache) = self.core().cache_of_object(ptr.as_ptr() as usize) {
            return Ok(cache.layout.size);
        }
        self.ksize_other(ptr)
    }

    /// What the fast check of `ksize` refused: a large kmalloc, or a bad
    /// pointer the full lookup names.
    #[cold]
    #[inline(never)]
    fn ksize_other(&self, ptr: NonNull<u8>) -> Result<usize, SlabError> {
        match self.core().lookup(ptr.as_ptr() as usize)? {
            Found::Object(cache, _) => Ok(cache.layout.size),
            Found::Large(_, order) => Ok(order.nr_pages() as usize * PAGE_SIZE),
        }
    }
}

/// A kmalloc allocation by handle, for safe users: dropping it kfree's it.
#[must_use]
pub struct KmallocObject<'s, 'a> {
    ptr: NonNull<u8>,
    len: usize,
    slab: &'s SlabAllocator<'a>,
}

// SAFETY: the handle owns its bytes; the allocator is Sync.
unsafe impl Send for KmallocObject<'_, '_> {}
// SAFETY: shared access gives `&[u8]` only.
unsafe impl Sync for KmallocObject<'_, '_> {}

impl core::fmt::Debug for KmallocObject<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KmallocObject").field("ptr", &self.ptr).field("len", &self.len).finish()
    }
}

impl<'a> SlabAllocator<'a> {
    /// [`SlabAllocator::kmalloc`] as a handle whose drop frees.
    ///
    /// # Errors
    /// As [`SlabAllocator::kmalloc`].
    pub fn kmalloc_object(&self, size: usize, align: usize) -> Result<KmallocObject<'_, 'a>, SlabError> {
        Ok(KmallocObject { ptr: self.kmalloc(size, align)?, len: size, slab: self })
    }
}

impl KmallocObject<'_, '_> {
    /// The allocation's address.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The size asked for (the usable size may be larger:
    /// [`SlabAllocator::ksize`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the size asked for is 0 (never: kmalloc refuses it).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes asked for.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: duty 1 of bytes: the handle owns the allocation (a
        // kmalloc class or large folio: no lockless reader) and `&self`
        // excludes the writable view.
        unsafe { self.slab.core().arena.bytes(self.ptr.as_ptr() as usize, self.len) }
    }

    /// The bytes asked for, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: duty 1 of bytes_mut: owned, and `&mut self` makes this
        // the only view.
        unsafe { self.slab.core().arena.bytes_mut(self.ptr.as_ptr() as usize, self.len) }
    }

    /// Gives the allocation up as a raw pointer (free it with
    /// [`SlabAllocator::kfree`]).
    pub fn into_raw(self) -> NonNull<u8> {
        let ptr = self.ptr;
        core::mem::forget(self);
        ptr
    }

    /// Frees the allocation after an RCU grace period.
    ///
    /// # Errors
    /// As [`SlabAllocator::kfree_rcu`] (cannot fail for a live handle).
    pub fn kfree_rcu(self) -> Result<(), SlabError> {
        let slab = self.slab;
        slab.core().kfree_rcu(self.into_raw().as_ptr() as usize)
    }
}

impl Drop for KmallocObject<'_, '_> {
    fn drop(&mut self) {
        // A live handle's allocation frees without error.
        let _ = self.slab.core().kfree_addr(self.ptr.as_ptr() as usize);
    }
}
