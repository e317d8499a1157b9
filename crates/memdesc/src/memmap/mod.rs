//! The memory map: one descriptor per frame, placed inside managed memory.
//!
//! [`MemMap::boot`] takes the host's physical memory (as a byte slice that
//! covers the physical span, holes included, like a kernel's direct map), the
//! RAM ranges with their reserved sub-ranges, and validates them. It then
//! carves the metadata it needs out of the lowest RAM that fits: the
//! descriptor array (flat: one 64-byte [`Page`] per frame of the span, so pfn ↔
//! descriptor is one subtraction and one multiply), a byte per pageblock, and
//! the caller's own root object (the allocator). Nothing is allocated from a
//! heap; the metadata frames are reported so the layer above can type them.
//!
//! Frames in holes still get a descriptor (FLATMEM); their cost is
//! [`MemMap::metadata_frames`] and is reported. A sparse map would trade that
//! for one more lookup per pfn.

mod addr;
mod contents;
mod page;
mod section;

pub use addr::{Pfn, PhysAddr, PhysRange, PAGE_SHIFT, PAGE_SIZE};
pub use contents::{FrameReader, FrameWriter};
pub use page::{Page, DESCRIPTOR_SIZE, OWNER_WORDS};
pub(crate) use page::{RCU_HEAD_ALIGN, RCU_HEAD_BYTES};
pub use section::{section_meta_frames, HotAddError, DEFAULT_SECTION_ORDER, MAX_SECTION_ORDER};

use crate::sync::{AtomicU8, FrameWord, SpinLock};
use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use section::Sections;

/// Order of a pageblock: the unit that carries a migratetype (2 MiB).
#[cfg(not(memdesc_loom))]
pub const PAGEBLOCK_ORDER: u32 = 9;
/// Order of a pageblock, shrunk under the model so that a node of a few
/// dozen frames has several pageblocks and fallback can claim one.
#[cfg(memdesc_loom)]
pub const PAGEBLOCK_ORDER: u32 = 3;
/// Frames per pageblock.
pub const PAGEBLOCK_FRAMES: u64 = 1 << PAGEBLOCK_ORDER;

/// The physical memory a host hands over: RAM ranges and the reserved
/// sub-ranges inside them (firmware, kernel image, …) that are never managed.
#[derive(Clone, Copy, Debug)]
pub struct MemoryLayout<'c> {
    /// RAM ranges; frame-aligned, non-overlapping, any order.
    pub ram: &'c [PhysRange],
    /// Ranges never handed out; frame-aligned, non-overlapping.
    pub reserved: &'c [PhysRange],
}

impl MemoryLayout<'_> {
    /// Whether `pfn` is RAM.
    pub fn is_ram(&self, pfn: Pfn) -> bool {
        self.ram.iter().any(|r| r.contains_pfn(pfn))
    }

    /// Whether `pfn` is inside a reserved range.
    pub fn is_reserved(&self, pfn: Pfn) -> bool {
        self.reserved.iter().any(|r| r.contains_pfn(pfn))
    }
}

/// Why a memory layout was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemMapError {
    /// No RAM range was given, or every range is empty.
    NoRam,
    /// A range's bounds are not frame-aligned.
    Misaligned(PhysRange),
    /// The memory slice the host handed over does not start on a frame
    /// boundary (its address, in the host's address space).
    MisalignedMemory {
        /// The slice's address.
        addr: usize,
    },
    /// The physical address the memory slice maps is not frame-aligned.
    MisalignedBase(PhysAddr),
    /// A range ends before it starts.
    Inverted(PhysRange),
    /// Two RAM ranges (or two reserved ranges) overlap.
    Overlap(PhysRange, PhysRange),
    /// A range lies outside the memory slice the host handed over.
    OutsideMemory(PhysRange),
    /// No unreserved RAM run is large enough for the metadata.
    NoRoomForMetadata {
        /// Bytes the metadata needs.
        needed: u64,
    },
    /// The span has more frames than a descriptor index can name.
    TooLarge,
    /// The section order is below a pageblock, above
    /// [`MAX_SECTION_ORDER`], or leaves no frame after a section's own
    /// metadata.
    BadSectionOrder(u32),
    /// Once the metadata is placed, no RAM frame is left to manage (every
    /// one is reserved or holds metadata).
    NoUsableFrames {
        /// Frames the metadata takes.
        metadata_frames: u64,
    },
}

impl fmt::Display for MemMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRam => write!(f, "no RAM in the memory layout"),
            Self::Misaligned(r) => write!(f, "range {:#x}..{:#x} is not frame-aligned", r.start.0, r.end.0),
            Self::Inverted(r) => write!(f, "range {:#x}..{:#x} ends before it starts", r.start.0, r.end.0),
            Self::Overlap(a, b) => {
                write!(f, "ranges {:#x}..{:#x} and {:#x}..{:#x} overlap", a.start.0, a.end.0, b.start.0, b.end.0)
            }
            Self::OutsideMemory(r) => {
                write!(f, "range {:#x}..{:#x} lies outside the given memory", r.start.0, r.end.0)
            }
            Self::NoRoomForMetadata { needed } => {
                write!(f, "no unreserved RAM run holds the {needed} bytes of metadata")
            }
            Self::MisalignedMemory { addr } => {
                write!(f, "the memory buffer at {addr:#x} does not start on a {PAGE_SIZE}-byte frame boundary")
            }
            Self::MisalignedBase(base) => write!(f, "physical base {:#x} is not frame-aligned", base.0),
            Self::TooLarge => write!(f, "physical span too large"),
            Self::BadSectionOrder(order) => write!(f, "section order {order} is not usable"),
            Self::NoUsableFrames { metadata_frames } => {
                write!(f, "no RAM frame is left to manage after the {metadata_frames} frames of metadata")
            }
        }
    }
}

impl core::error::Error for MemMapError {}

/// A refused boot: the error, and the memory handed back unchanged, so the
/// host can try another layout over the same buffer.
///
/// It borrows the memory, so it is not `'static`: for `?` into an owned
/// error (`Box<dyn Error>`), take the error alone with
/// [`BootFailed::into_error`] (or `From`).
pub struct BootFailed<'a, E> {
    /// Why the boot was refused.
    pub error: E,
    /// The memory the boot was given; nothing in it was written.
    pub memory: &'a mut [u8],
}

impl<'a, E> BootFailed<'a, E> {
    /// The error and the memory.
    pub fn into_parts(self) -> (E, &'a mut [u8]) {
        (self.error, self.memory)
    }

    /// The error alone.
    pub fn into_error(self) -> E {
        self.error
    }

    /// Changes the error, keeping the memory.
    pub fn map_error<F>(self, f: impl FnOnce(E) -> F) -> BootFailed<'a, F> {
        BootFailed { error: f(self.error), memory: self.memory }
    }
}

impl<E: fmt::Debug> fmt::Debug for BootFailed<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootFailed")
            .field("error", &self.error)
            .field("memory", &format_args!("{:p}+{:#x}", self.memory.as_ptr(), self.memory.len()))
            .finish()
    }
}

impl<E: fmt::Display> fmt::Display for BootFailed<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for BootFailed<'_, E> {}

impl From<BootFailed<'_, MemMapError>> for MemMapError {
    fn from(failed: BootFailed<'_, MemMapError>) -> Self {
        failed.error
    }
}

/// The descriptor array and the memory it describes.
///
/// The descriptors are reached through a saved base pointer and count, not a
/// `&[Page]`: a lookup is then one bounds check and one multiply, and under
/// Miri's Stacked Borrows it retags one 64-byte descriptor instead of the
/// whole array, which made allocation-heavy tests on larger maps minutes
/// slower per test.
pub struct MemMap<'a> {
    /// The first of `nr_pages` descriptors, initialised by `boot` and
    /// borrowed (shared) for 'a; derived from the `memory` borrow.
    pages: NonNull<Page>,
    nr_pages: usize,
    pageblocks: &'a [AtomicU8],
    base_pfn: Pfn,
    /// Start of the host mapping of physical address `phys_base`.
    memory: NonNull<u8>,
    phys_base: PhysAddr,
    memory_len: usize,
    metadata: (Pfn, Pfn),
    /// The sections hot-added past the boot span (see `section`).
    sections: Sections<'a>,
    _memory: PhantomData<&'a mut [u8]>,
    _pages: PhantomData<&'a [Page]>,
}

// SAFETY: the descriptors are Sync (see `Page`); frame contents are reached
// only as atomic words (`frame_words`, borrowed by the handles that keep the
// frames allocated) or by the exclusive owner of a frame not yet published
// (`zero_frames`), so sharing the map between threads adds no race.
unsafe impl Sync for MemMap<'_> {}
// SAFETY: the map borrows the memory for 'a from whichever thread created it;
// nothing in it is tied to that thread.
unsafe impl Send for MemMap<'_> {}

impl fmt::Debug for MemMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemMap")
            .field("base_pfn", &self.base_pfn)
            .field("nr_pages", &self.nr_pages)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// Where boot placed the metadata, for the layer above to type the frames.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// First metadata frame.
    pub metadata_start: Pfn,
    /// One past the last metadata frame.
    pub metadata_end: Pfn,
}

impl<'a> MemMap<'a> {
    /// Validates `layout`, places descriptors, pageblock bytes and a `T` (built
    /// by `build` from the finished map) in the lowest unreserved RAM that
    /// fits, and returns the `T`, which lives as long as the memory.
    ///
    /// `memory` is the host's mapping of physical addresses
    /// `phys_base..phys_base + memory.len()`; every RAM range must lie inside
    /// it. Frames outside RAM are never touched, so a host may leave them
    /// unbacked.
    ///
    /// # Errors
    /// [`MemMapError`] for an empty, misaligned, inverted, overlapping or
    /// out-of-bounds layout, when no unreserved RAM run holds the metadata,
    /// or when no frame would be left to manage; the memory comes back in
    /// the [`BootFailed`], untouched.
    pub fn boot<T>(
        memory: &'a mut [u8],
        phys_base: PhysAddr,
        layout: &MemoryLayout<'_>,
        build: impl FnOnce(MemMap<'a>, BootInfo) -> T,
    ) -> Result<&'a T, BootFailed<'a, MemMapError>> {
        Self::boot_with_sections(memory, phys_base, layout, DEFAULT_SECTION_ORDER, build)
    }

    /// [`MemMap::boot`] with sections of `2^section_order` frames for the
    /// memory past the boot RAM (see [`MemMap::hot_span`]).
    ///
    /// # Errors
    /// As [`MemMap::boot`], plus [`MemMapError::BadSectionOrder`].
    pub fn boot_with_sections<T>(
        memory: &'a mut [u8],
        phys_base: PhysAddr,
        layout: &MemoryLayout<'_>,
        section_order: u32,
        build: impl FnOnce(MemMap<'a>, BootInfo) -> T,
    ) -> Result<&'a T, BootFailed<'a, MemMapError>> {
        match plan::<T>(memory, phys_base, layout, section_order) {
            // SAFETY: `plan` validated the layout against this very memory.
            Ok(plan) => Ok(unsafe { Self::place(memory, phys_base, plan, build) }),
            Err(error) => Err(BootFailed { error, memory }),
        }
    }

    /// Writes the metadata `plan` placed and builds the root.
    ///
    /// # Safety
    /// 1. `plan` came from [`plan`] for this `memory`, `phys_base` and `T`.
    unsafe fn place<T>(
        memory: &'a mut [u8],
        phys_base: PhysAddr,
        plan: Plan,
        build: impl FnOnce(MemMap<'a>, BootInfo) -> T,
    ) -> &'a T {
        let Plan {
            span_start,
            nr_pages,
            nr_pageblocks,
            pb_offset,
            table_offset,
            hot_base,
            nr_sections,
            section_order,
            root_offset,
            meta_start,
            meta_end,
        } = plan;
        // A slice's pointer is never null.
        let base = NonNull::from(&mut *memory).cast::<u8>();
        let memory_len = memory.len();
        let offset = (meta_start.phys().0 - phys_base.0) as usize;
        // SAFETY: `validate` checked that every RAM range, and so the metadata
        // run chosen inside one, lies within `memory`; the offset is in bounds.
        let meta = unsafe { base.as_ptr().add(offset) };

        let pages_ptr = meta.cast::<Page>();
        for i in 0..nr_pages as usize {
            // SAFETY: `meta` is frame-aligned (memory base and the run are), so
            // every slot is aligned for `Page`; slot i lies within the
            // `meta_frames` run, which we own exclusively through `memory`.
            unsafe { pages_ptr.add(i).write(Page::new()) };
        }
        // The descriptors stay behind this pointer (see `MemMap::pages`): all
        // `nr_pages` slots were initialised above, and the run stays borrowed
        // for 'a through `memory` and is never handed out again (its frames
        // are typed as metadata by the layer above).
        // SAFETY: an in-bounds offset from `base`, which is non-null.
        let pages = unsafe { NonNull::new_unchecked(pages_ptr) };

        // SAFETY: `pb_offset` is within the run (see `needed`).
        let pb_ptr = unsafe { meta.add(pb_offset as usize) }.cast::<AtomicU8>();
        for i in 0..nr_pageblocks as usize {
            // SAFETY: byte-aligned slot inside the run, exclusively ours.
            unsafe { pb_ptr.add(i).write(AtomicU8::new(0)) };
        }
        // SAFETY: initialised above; borrowed for 'a like the descriptors.
        let pageblocks: &'a [AtomicU8] = unsafe { core::slice::from_raw_parts(pb_ptr, nr_pageblocks as usize) };

        // SAFETY: `table_offset` is within the run, after the pageblock bytes
        // (see `plan`).
        let table_ptr = unsafe { meta.add(table_offset as usize) }.cast::<AtomicU8>();
        for i in 0..nr_sections as usize {
            // SAFETY: a slot inside the run, exclusively ours; aligned, as
            // `plan` rounds the offset up to AtomicU8's alignment.
            unsafe { table_ptr.add(i).write(AtomicU8::new(0)) };
        }
        // SAFETY: initialised above; borrowed for 'a like the descriptors.
        let states: &'a [AtomicU8] = unsafe { core::slice::from_raw_parts(table_ptr, nr_sections as usize) };
        let sections = Sections {
            states,
            base: hot_base,
            order: section_order,
            meta_frames: section_meta_frames(section_order),
            lock: SpinLock::new(()),
        };

        let map = MemMap {
            pages,
            nr_pages: nr_pages as usize,
            pageblocks,
            base_pfn: span_start,
            memory: base,
            phys_base,
            memory_len,
            metadata: (meta_start, meta_end),
            sections,
            _memory: PhantomData,
            _pages: PhantomData,
        };
        let info = BootInfo { metadata_start: meta_start, metadata_end: meta_end };
        let root = build(map, info);
        // SAFETY: `root_offset` is aligned for T (rounded up to its alignment
        // from a frame-aligned base) and `size_of::<T>()` bytes fit in the run.
        let root_ptr = unsafe { meta.add(root_offset as usize) }.cast::<T>();
        // SAFETY: as above; the slot is ours and uninitialised.
        unsafe { root_ptr.write(root) };
        // SAFETY: initialised just above, and the run is borrowed for 'a. The
        // root is never dropped: it lives in the memory it manages.
        unsafe { &*root_ptr }
    }

    /// The first frame with a descriptor.
    #[inline(always)]
    pub fn base_pfn(&self) -> Pfn {
        self.base_pfn
    }

    /// One past the last frame with a descriptor.
    #[inline(always)]
    pub fn end_pfn(&self) -> Pfn {
        self.base_pfn.add(self.nr_pages as u64)
    }

    /// Frames with a descriptor, holes included.
    pub fn nr_pages(&self) -> u64 {
        self.nr_pages as u64
    }

    /// The frames holding the metadata, `[start, end)`.
    pub fn metadata_range(&self) -> (Pfn, Pfn) {
        self.metadata
    }

    /// How many frames the metadata takes.
    pub fn metadata_frames(&self) -> u64 {
        self.metadata.1 .0 - self.metadata.0 .0
    }

    /// The descriptor of `pfn`, or `None` if the map does not cover it.
    #[inline(always)]
    pub fn page(&self, pfn: Pfn) -> Option<&'a Page> {
        let index = pfn.0.wrapping_sub(self.base_pfn.0);
        if index >= self.nr_pages as u64 {
            // Past the boot span (or below it: the index wrapped): a
            // hot-added section, if online (HOTADD.6).
            return self.hot_page(pfn, section::ONLINE);
        }
        // SAFETY: duty 1: index < nr_pages, checked just above.
        Some(unsafe { self.page_at(index as usize) })
    }

    /// The descriptor of `pfn`, which the caller knows to be covered.
    ///
    /// # Panics
    /// If `pfn` is outside the map: that is a bug in the core, not bad input.
    #[inline(always)]
    pub(crate) fn page_of(&self, pfn: Pfn) -> &'a Page {
        // A pfn below the base wraps to an index past the end.
        let index = pfn.0.wrapping_sub(self.base_pfn.0);
        if index >= self.nr_pages as u64 {
            // A hot-added section's frame, which an owner path reaches once
            // its descriptors exist (HOTADD.7).
            return self.hot_page(pfn, section::HAS_MEMMAP).unwrap_or_else(|| outside_map(pfn, 1));
        }
        // SAFETY: duty 1: index < nr_pages, checked just above.
        unsafe { self.page_at(index as usize) }
    }

    /// The descriptors of `nr` frames from `pfn` (one bounds check for a
    /// whole folio's walk).
    ///
    /// # Panics
    /// If the frames are outside the map: a bug in the core, not bad input.
    #[inline(always)]
    pub(crate) fn pages_of(&self, pfn: Pfn, nr: u64) -> &'a [Page] {
        let start = pfn.0.wrapping_sub(self.base_pfn.0);
        let nr_pages = self.nr_pages as u64;
        if start > nr_pages || nr > nr_pages - start {
            return self.hot_pages(pfn, nr).unwrap_or_else(|| outside_map(pfn, nr));
        }
        // SAFETY: start + nr <= nr_pages, checked just above, so the run is
        // inside the descriptor array, initialised and borrowed for 'a (type
        // invariant of `pages`); only shared references are ever made to it.
        unsafe { core::slice::from_raw_parts(self.pages.as_ptr().add(start as usize), nr as usize) }
    }

    /// The descriptor at `index` in the array.
    ///
    /// # Safety
    /// 1. `index < self.nr_pages`.
    #[inline(always)]
    unsafe fn page_at(&self, index: usize) -> &'a Page {
        debug_assert!(index < self.nr_pages);
        // SAFETY: duty 1 puts the slot inside the array, which is initialised
        // and borrowed for 'a (type invariant of `pages`); only shared
        // references are ever made to it.
        unsafe { &*self.pages.as_ptr().add(index) }
    }

    /// The pfn a descriptor of this map describes (the caller got `page`
    /// from this map).
    #[inline(always)]
    pub(crate) fn pfn_of(&self, page: &Page) -> Pfn {
        // Addresses, not provenance: no pointer is made from the result.
        let offset = (page as *const Page).addr().wrapping_sub(self.pages.as_ptr().addr());
        if offset / DESCRIPTOR_SIZE >= self.nr_pages {
            return self.hot_pfn_of(page);
        }
        debug_assert!(offset % DESCRIPTOR_SIZE == 0);
        self.base_pfn.add((offset / DESCRIPTOR_SIZE) as u64)
    }

    /// The pageblock byte of the pageblock containing `pfn`: a pageblock
    /// of the boot span (including the frames of its first and last
    /// pageblocks outside it) or of a hot-added section.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn pageblock(&self, pfn: Pfn) -> &'a AtomicU8 {
        // Hot-added sections start at a section (so pageblock) boundary at
        // or past the boot span's last pageblock.
        if pfn >= self.sections.base {
            return self.hot_pageblock(pfn);
        }
        // Wrapping: a pfn below the base's pageblock indexes past the end
        // and panics on the bounds check.
        let first_pageblock = self.base_pfn.0 & !(PAGEBLOCK_FRAMES - 1);
        &self.pageblocks[(pfn.0.wrapping_sub(first_pageblock) >> PAGEBLOCK_ORDER) as usize]
    }

    /// The contents of `nr` frames from `pfn`, as atomic words.
    ///
    /// Returns `None` if the frames are not all inside the memory or overlap
    /// the metadata. Callers above hand this out only for frames they own or
    /// hold a reference to; the atomic view keeps even a racing access
    /// defined.
    pub(crate) fn frame_words(&self, pfn: Pfn, nr: u64) -> Option<&'a [FrameWord]> {
        let (offset, len) = self.frame_span(pfn, nr)?;
        // SAFETY: in `memory` (borrowed for 'a) and outside the metadata run
        // (frame_span), so nothing aliases the bytes; frame-aligned, hence
        // 8-aligned; FrameWord is a u64-sized atomic valid for any bits.
        Some(unsafe { core::slice::from_raw_parts(self.memory.as_ptr().add(offset).cast::<FrameWord>(), len / 8) })
    }

    /// The contents of `nr` frames from `pfn` as bytes.
    ///
    /// Returns `None` as [`MemMap::frame_words`] does.
    ///
    /// # Safety
    /// 1. Nobody writes the frames while the slice lives: the caller owns
    ///    them exclusively (a frozen folio) and hands out no writable view
    ///    meanwhile.
    pub(crate) unsafe fn frame_bytes(&self, pfn: Pfn, nr: u64) -> Option<&'a [u8]> {
        let (offset, len) = self.frame_span(pfn, nr)?;
        // SAFETY: in `memory` (borrowed for 'a) and outside the metadata run
        // (frame_span); duty 1 keeps the bytes unchanged while shared.
        Some(unsafe { core::slice::from_raw_parts(self.memory.as_ptr().add(offset), len) })
    }

    /// The contents of `nr` frames from `pfn` as mutable bytes.
    ///
    /// Returns `None` as [`MemMap::frame_words`] does.
    ///
    /// # Safety
    /// 1. The caller owns the frames exclusively for as long as the slice
    ///    lives: no reference, atomic view or other slice of them exists (a
    ///    frozen folio, borrowed mutably).
    #[allow(clippy::mut_from_ref)] // Exclusivity is duty 1, proved by the caller's `&mut FrozenFolio`.
    pub(crate) unsafe fn frame_bytes_mut(&self, pfn: Pfn, nr: u64) -> Option<&'a mut [u8]> {
        let (offset, len) = self.frame_span(pfn, nr)?;
        // SAFETY: in bounds and outside the metadata (frame_span); duty 1
        // makes this the only view of the bytes.
        Some(unsafe { core::slice::from_raw_parts_mut(self.memory.as_ptr().add(offset), len) })
    }

    /// Fills `nr` frames from `pfn` with zeroes.
    ///
    /// # Safety
    /// 1. The caller owns the frames exclusively: no reference, mapping or
    ///    atomic view of them exists (a frame just taken off a free list and
    ///    not yet published).
    pub(crate) unsafe fn zero_frames(&self, pfn: Pfn, nr: u64) {
        let Some((offset, len)) = self.frame_span(pfn, nr) else {
            return;
        };
        // SAFETY: in bounds and outside the metadata (frame_span); duty 1
        // makes the write exclusive.
        unsafe { self.memory.as_ptr().add(offset).write_bytes(0, len) };
    }

    /// The host address of frame `pfn`'s first byte, with the provenance of
    /// the whole memory (so an owner may reach any byte of its frames from
    /// it). Returns `None` as [`MemMap::frame_words`] does. Computing the
    /// pointer is safe; whoever reads or writes through it must own the
    /// bytes (a frozen folio, or an object a slab handed out).
    pub(crate) fn frame_ptr(&self, pfn: Pfn) -> Option<NonNull<u8>> {
        let (offset, _) = self.frame_span(pfn, 1)?;
        // `offset` is inside `memory` (frame_span), so the sum is in bounds
        // and not null.
        NonNull::new(self.memory.as_ptr().wrapping_add(offset))
    }

    /// The host address of the memory's first byte, with the provenance of
    /// the whole memory: the base from which the slab layer rebuilds object
    /// pointers from addresses. Using it carries the duties of
    /// [`MemMap::frame_ptr`].
    pub(crate) fn memory_ptr(&self) -> NonNull<u8> {
        self.memory
    }

    /// The frame a host address of this map's memory lies in, or `None` for
    /// an address outside the memory or inside the metadata (a pointer
    /// nobody here handed out).
    pub(crate) fn pfn_of_addr(&self, addr: usize) -> Option<Pfn> {
        let offset = addr.checked_sub(self.memory.as_ptr() as usize)?;
        if offset >= self.memory_len {
            return None;
        }
        let pfn = Pfn((self.phys_base.0 + offset as u64) >> crate::memmap::PAGE_SHIFT);
        self.frame_span(pfn, 1).map(|_| pfn)
    }

    fn frame_span(&self, pfn: Pfn, nr: u64) -> Option<(usize, usize)> {
        let start = pfn.phys().0.checked_sub(self.phys_base.0)?;
        let len = nr.checked_mul(PAGE_SIZE as u64)?;
        let end = start.checked_add(len)?;
        let (meta_start, meta_end) = self.metadata;
        let overlaps_meta = pfn.0 < meta_end.0 && meta_start.0 < pfn.0 + nr;
        if end > self.memory_len as u64 || overlaps_meta {
            return None;
        }
        // Past the boot span only a hot-added section's managed frames may
        // be viewed: absent sections may be unbacked, and a section's first
        // frames hold its descriptors.
        if pfn.0 + nr > self.end_pfn().0 && !self.hot_frames_ok(pfn, nr) {
            return None;
        }
        Some((start as usize, len as usize))
    }
}

/// Panics for a descriptor lookup outside the map: a bug in the core, not
/// bad input. Kept out of line so the lookups inline to a compare and a
/// multiply.
#[cold]
#[inline(never)]
#[track_caller]
fn outside_map(pfn: Pfn, nr: u64) -> ! {
    panic!("frames {}+{nr} are outside the memory map", pfn.0)
}

/// Where boot puts the metadata: computed and checked before anything is
/// written, so a refused layout leaves the memory untouched.
struct Plan {
    span_start: Pfn,
    nr_pages: u64,
    nr_pageblocks: u64,
    pb_offset: u64,
    table_offset: u64,
    hot_base: Pfn,
    nr_sections: u64,
    section_order: u32,
    root_offset: u64,
    meta_start: Pfn,
    meta_end: Pfn,
}

/// Validates the layout and places the metadata for a root of type `T`.
fn plan<T>(
    memory: &[u8],
    phys_base: PhysAddr,
    layout: &MemoryLayout<'_>,
    section_order: u32,
) -> Result<Plan, MemMapError> {
    // The root is placed at a frame-aligned offset rounded up to its
    // alignment, which is only its alignment if that divides a frame.
    const { assert!(align_of::<T>() <= PAGE_SIZE, "a memmap root must not be aligned above a frame") };
    let (span_start, span_end) = validate(memory, phys_base, layout)?;
    if !section::section_order_ok(section_order) {
        return Err(MemMapError::BadSectionOrder(section_order));
    }
    let memory_end = PhysAddr(phys_base.0 + memory.len() as u64);
    let (hot_base, nr_sections) = section::plan_sections(span_start, span_end, memory_end, section_order);
    let nr_pages = span_end.0 - span_start.0;
    let nr_pageblocks = nr_pages.div_ceil(PAGEBLOCK_FRAMES) + 1;
    let desc_bytes = nr_pages.checked_mul(DESCRIPTOR_SIZE as u64).ok_or(MemMapError::TooLarge)?;
    let pb_offset = desc_bytes;
    // A pageblock byte is one byte in production; the model's atomics are
    // larger, and the table after them must not overlap them.
    let pb_bytes = nr_pageblocks * size_of::<AtomicU8>() as u64;
    let table_offset = align_up(pb_offset + pb_bytes, align_of::<AtomicU8>() as u64);
    let root_offset = align_up(table_offset + section::table_bytes(nr_sections), align_of::<T>().max(64) as u64);
    let needed = root_offset + size_of::<T>() as u64;
    let meta_frames = needed.div_ceil(PAGE_SIZE as u64);
    let meta_start = find_metadata_room(layout, meta_frames).ok_or(MemMapError::NoRoomForMetadata { needed })?;
    let meta_end = meta_start.add(meta_frames);
    if usable_frames(layout, (meta_start, meta_end)) == 0 {
        return Err(MemMapError::NoUsableFrames { metadata_frames: meta_frames });
    }
    Ok(Plan {
        span_start,
        nr_pages,
        nr_pageblocks,
        pb_offset,
        table_offset,
        hot_base,
        nr_sections,
        section_order,
        root_offset,
        meta_start,
        meta_end,
    })
}

const fn align_up(value: u64, align: u64) -> u64 {
    (value + align - 1) & !(align - 1)
}

/// Checks the layout and returns the pfn span its RAM covers.
fn validate(memory: &[u8], phys_base: PhysAddr, layout: &MemoryLayout<'_>) -> Result<(Pfn, Pfn), MemMapError> {
    let end = phys_base.0.checked_add(memory.len() as u64).ok_or(MemMapError::TooLarge)?;
    let whole = PhysRange { start: phys_base, end: PhysAddr(end) };
    if (memory.as_ptr() as usize) % PAGE_SIZE != 0 {
        return Err(MemMapError::MisalignedMemory { addr: memory.as_ptr() as usize });
    }
    if !phys_base.is_page_aligned() {
        return Err(MemMapError::MisalignedBase(phys_base));
    }
    for ranges in [layout.ram, layout.reserved] {
        for (i, r) in ranges.iter().enumerate() {
            if !r.start.is_page_aligned() || !r.end.is_page_aligned() {
                return Err(MemMapError::Misaligned(*r));
            }
            if r.end.0 < r.start.0 {
                return Err(MemMapError::Inverted(*r));
            }
            if let Some(other) = ranges[..i].iter().find(|o| o.overlaps(r)) {
                return Err(MemMapError::Overlap(*other, *r));
            }
        }
    }
    let mut span: Option<(Pfn, Pfn)> = None;
    for r in layout.ram.iter().filter(|r| r.end.0 > r.start.0) {
        if r.start.0 < whole.start.0 || r.end.0 > whole.end.0 {
            return Err(MemMapError::OutsideMemory(*r));
        }
        let (s, e) = (r.start.pfn(), r.end.pfn());
        span = Some(match span {
            None => (s, e),
            Some((s0, e0)) => (s0.min(s), e0.max(e)),
        });
    }
    let span = span.ok_or(MemMapError::NoRam)?;
    if span.1 .0 - span.0 .0 > u32::MAX as u64 {
        return Err(MemMapError::TooLarge);
    }
    Ok(span)
}

/// RAM frames that are neither reserved nor metadata: what the layer above
/// will manage.
fn usable_frames(layout: &MemoryLayout<'_>, (meta_start, meta_end): (Pfn, Pfn)) -> u64 {
    // Arithmetic on ranges, not a walk over frames: RAM ranges do not
    // overlap each other, nor reserved ranges each other, and the metadata
    // run touches no reserved range (find_metadata_room).
    let overlap = |a: (u64, u64), b: (u64, u64)| a.1.min(b.1).saturating_sub(a.0.max(b.0));
    let meta = (meta_start.0, meta_end.0);
    layout
        .ram
        .iter()
        .map(|r| {
            let ram = (r.start.pfn().0, r.end.pfn().0);
            let reserved: u64 = layout
                .reserved
                .iter()
                .map(|res| overlap(ram, (res.start.pfn().0, res.end.0.div_ceil(PAGE_SIZE as u64))))
                .sum();
            (ram.1 - ram.0).saturating_sub(reserved + overlap(ram, meta))
        })
        .sum()
}

/// Finds the lowest frame-run of `frames` frames inside one RAM range that no
/// reserved range touches.
fn find_metadata_room(layout: &MemoryLayout<'_>, frames: u64) -> Option<Pfn> {
    let mut best: Option<Pfn> = None;
    for r in layout.ram {
        let (mut start, end) = (r.start.pfn(), r.end.pfn());
        'search: while start.0 + frames <= end.0 {
            let candidate = PhysRange { start: start.phys(), end: start.add(frames).phys() };
            for res in layout.reserved {
                if res.overlaps(&candidate) {
                    start = Pfn(res.end.0.div_ceil(PAGE_SIZE as u64));
                    continue 'search;
                }
            }
            if best.is_none_or(|b| start < b) {
                best = Some(start);
            }
            break;
        }
    }
    best
}

#[cfg(all(test, not(memdesc_loom)))]
mod tests;
