//! Memory sections: frames made present after boot (memory hot-add).
//!
//! The memory slice a map boots over covers the node's whole possible span;
//! boot describes the RAM present then with one flat descriptor array. The
//! rest of the slice, from the first section boundary at or after the boot
//! span's end, is the *hot-pluggable span*: a run of sections of
//! `2^order` frames, each absent until hot-added. A *section* carries its own
//! metadata in its first frames (Linux's `memmap_on_memory`): its
//! descriptors, then its pageblock bytes. One state byte per section, in the
//! boot metadata, says whether the section is absent, has descriptors, or is
//! online, and which zone (an opaque tag for this layer) it belongs to.
//!
//! Publication (HOTADD, docs/PROTOCOLS.md): descriptors are written while the
//! section is absent (HOTADD.1), published to owner paths with a Release store
//! of `HAS_MEMMAP` (HOTADD.2), typed by the layer above (HOTADD.3), made
//! visible to lockless readers with a Release store of `ONLINE` (HOTADD.4),
//! and only then freed into a zone (HOTADD.5). Lookups load the state with
//! Acquire (HOTADD.6 for lockless readers, HOTADD.7 for owner paths). A
//! section never goes back to absent, so a descriptor reference handed out
//! for `'a` stays valid.
//!
//! The boot array's lookups stay one compare: every section lookup is a
//! cold, out-of-line call taken only for pfns past the boot span.

use super::{MemMap, Page, Pfn, PhysAddr, PhysRange, PAGEBLOCK_FRAMES, PAGEBLOCK_ORDER, PAGE_SIZE};
use crate::sync::{AtomicU8, Ordering, SpinGuard, SpinLock};
use core::fmt;
use core::mem::{align_of, size_of};

/// The section order a map gets unless the host asks for another: 4 MiB, the
/// size of the largest buddy block (MAX_ORDER, a layer above), so a section's
/// 1.6 % of descriptors costs it only its top order-10 block.
#[cfg(not(memdesc_loom))]
pub const DEFAULT_SECTION_ORDER: u32 = 10;
/// The section order under the model: one pageblock, so a section of a few
/// frames is cheap to describe.
#[cfg(memdesc_loom)]
pub const DEFAULT_SECTION_ORDER: u32 = PAGEBLOCK_ORDER;

/// The largest section order accepted (1 TiB sections).
pub const MAX_SECTION_ORDER: u32 = 28;

/// State byte: the section has no descriptors; every lookup misses.
const ABSENT: u8 = 0;
/// State bit: the section's descriptors and pageblock bytes are initialised
/// (HOTADD.2); owner paths (a pfn from a free list or a handle) may use them.
pub(super) const HAS_MEMMAP: u8 = 1;
/// State bit: the section is online (HOTADD.4); lockless readers (speculative
/// getters, pfn walkers) see it.
pub(super) const ONLINE: u8 = 2;
/// The zone tag sits above the two state bits.
const TAG_SHIFT: u32 = 2;

/// Why a hot-add was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotAddError {
    /// The range is empty or ends before it starts.
    Empty(PhysRange),
    /// The range's bounds are not section-aligned.
    Misaligned {
        /// The range asked for.
        range: PhysRange,
        /// The section size, in bytes.
        section_bytes: u64,
    },
    /// The range is not inside the hot-pluggable span: the memory the node
    /// booted over, from the first section boundary after the boot RAM.
    OutsideSpan {
        /// The range asked for.
        range: PhysRange,
        /// The hot-pluggable span.
        span: PhysRange,
    },
    /// A section of the range is already present.
    Present {
        /// The first frame of that section.
        section: Pfn,
    },
}

impl fmt::Display for HotAddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty(r) => write!(f, "range {:#x}..{:#x} is empty", r.start.0, r.end.0),
            Self::Misaligned { range, section_bytes } => write!(
                f,
                "range {:#x}..{:#x} is not aligned to the {section_bytes:#x}-byte sections",
                range.start.0, range.end.0
            ),
            Self::OutsideSpan { range, span } => write!(
                f,
                "range {:#x}..{:#x} lies outside the hot-pluggable span {:#x}..{:#x}",
                range.start.0, range.end.0, span.start.0, span.end.0
            ),
            Self::Present { section } => write!(f, "the section at pfn {} is already present", section.0),
        }
    }
}

impl core::error::Error for HotAddError {}

/// Frames at the start of a section of `order` that hold its descriptors
/// and pageblock bytes.
pub const fn section_meta_frames(order: u32) -> u64 {
    let frames = 1u64 << order;
    let pageblocks = frames.div_ceil(PAGEBLOCK_FRAMES);
    let bytes = frames * size_of::<Page>() as u64 + pageblocks * size_of::<AtomicU8>() as u64;
    bytes.div_ceil(PAGE_SIZE as u64)
}

/// Whether a map may use sections of `order`: at least a pageblock, at most
/// [`MAX_SECTION_ORDER`], and leaving frames to manage after the metadata.
pub(crate) const fn section_order_ok(order: u32) -> bool {
    order >= PAGEBLOCK_ORDER && order <= MAX_SECTION_ORDER && section_meta_frames(order) < 1u64 << order
}

/// The section table: one state byte per section of the hot-pluggable span,
/// placed in the boot metadata, and the lock that serialises hot-adds.
pub(crate) struct Sections<'a> {
    /// `ABSENT`, or `HAS_MEMMAP` (then `ONLINE`) with the tag above
    /// `TAG_SHIFT`. Moved only forward, only under `lock`, by
    /// [`MemMap::hot_plug`] (HOTADD.2) and [`HotPlug::online`] (HOTADD.4).
    pub(crate) states: &'a [AtomicU8],
    /// First frame of the hot-pluggable span (section-aligned).
    pub(crate) base: Pfn,
    pub(crate) order: u32,
    /// `section_meta_frames(order)`, computed once.
    pub(crate) meta_frames: u64,
    /// Held for a whole hot-add: two never interleave.
    pub(crate) lock: SpinLock<()>,
}

impl Sections<'_> {
    /// One past the hot-pluggable span's last frame.
    fn end(&self) -> Pfn {
        self.base.add((self.states.len() as u64) << self.order)
    }

    /// The state byte of `pfn`'s section, if `pfn` is in the span.
    #[inline]
    fn state_of(&self, pfn: Pfn) -> Option<&AtomicU8> {
        let index = pfn.0.checked_sub(self.base.0)? >> self.order;
        self.states.get(index as usize)
    }
}

/// A hot-add in progress: the section table's lock, held until the whole
/// hot-add is done, and the range whose descriptors it wrote.
pub(crate) struct HotPlug<'m, 'a> {
    map: &'m MemMap<'a>,
    start: Pfn,
    end: Pfn,
    tag: u8,
    _lock: SpinGuard<'m, ()>,
}

impl<'a> MemMap<'a> {
    /// The frames of one section.
    pub fn section_frames(&self) -> u64 {
        1 << self.sections.order
    }

    /// The frames at the start of each hot-added section that hold its
    /// metadata.
    pub fn section_meta_frames(&self) -> u64 {
        self.sections.meta_frames
    }

    /// The hot-pluggable span, `[start, end)`: where `Node::hot_add`
    /// accepts sections (empty when the memory ends with the boot RAM).
    pub fn hot_span(&self) -> (Pfn, Pfn) {
        (self.sections.base, self.sections.end())
    }

    /// The online sections, lowest first, as `(first frame, zone tag)`: what
    /// a pfn walker visits after the boot span. A snapshot: a section
    /// onlined meanwhile may be missed, never one that is not online.
    pub fn online_sections(&self) -> impl Iterator<Item = (Pfn, u8)> + '_ {
        let sections = &self.sections;
        sections.states.iter().enumerate().filter_map(move |(i, state)| {
            // HOTADD.6. Acquire: pairs with the Release in HotPlug::online
            // (HOTADD.4); the walker then reads the section's descriptors.
            let state = state.load(Ordering::Acquire);
            (state & ONLINE != 0).then(|| (sections.base.add((i as u64) << sections.order), state >> TAG_SHIFT))
        })
    }

    /// The tag of `pfn`'s section, if `pfn` lies in a hot-added section
    /// whose descriptors exist (`None` for the boot span).
    #[inline]
    pub(crate) fn section_tag(&self, pfn: Pfn) -> Option<u8> {
        // HOTADD.7. Acquire: pairs with the Release in hot_plug (HOTADD.2).
        let state = self.sections.state_of(pfn)?.load(Ordering::Acquire);
        (state & HAS_MEMMAP != 0).then_some(state >> TAG_SHIFT)
    }

    /// Whether `a` and `b` lie in the same section.
    #[inline]
    pub(crate) fn same_section(&self, a: Pfn, b: Pfn) -> bool {
        (a.0 ^ b.0) >> self.sections.order == 0
    }

    /// The descriptor of `pfn` in a hot-added section whose state has
    /// `need` (`ONLINE` for lockless readers, `HAS_MEMMAP` for owner paths).
    #[cold]
    #[inline(never)]
    pub(super) fn hot_page(&self, pfn: Pfn, need: u8) -> Option<&'a Page> {
        let state = self.sections.state_of(pfn)?;
        // HOTADD.6 (ONLINE) / HOTADD.7 (HAS_MEMMAP). Acquire: pairs with the
        // Release in HotPlug::online (HOTADD.4) or hot_plug (HOTADD.2): the
        // descriptors written in HOTADD.1 happen before our reads.
        #[cfg(not(memdesc_mutant = "hotadd_relaxed_lookup"))]
        let state = state.load(Ordering::Acquire);
        // Mutant: the lookup without Acquire, so a getter may read a
        // descriptor whose initialisation it is not ordered after. Relaxed:
        // deliberately wrong.
        #[cfg(memdesc_mutant = "hotadd_relaxed_lookup")]
        let state = state.load(Ordering::Relaxed);
        if state & need == 0 {
            return None;
        }
        let section = Pfn(pfn.0 & !((1u64 << self.sections.order) - 1));
        // SAFETY: duty 1 of section_pages: the state has HAS_MEMMAP (both
        // `need` values imply it: ONLINE is set only after HAS_MEMMAP), and
        // the Acquire above orders HOTADD.1's writes before this.
        let pages = unsafe { self.section_pages(section) };
        Some(&pages[(pfn.0 - section.0) as usize])
    }

    /// The descriptors of `nr` frames from `pfn`, inside one hot-added
    /// section with descriptors (an owner path: a folio never spans two
    /// sections).
    #[cold]
    #[inline(never)]
    pub(super) fn hot_pages(&self, pfn: Pfn, nr: u64) -> Option<&'a [Page]> {
        if nr == 0 || !self.same_section(pfn, Pfn(pfn.0 + nr - 1)) {
            return None;
        }
        let first = self.hot_page(pfn, HAS_MEMMAP)?;
        let section = Pfn(pfn.0 & !((1u64 << self.sections.order) - 1));
        // SAFETY: duty 1: hot_page just saw HAS_MEMMAP with Acquire.
        let pages = unsafe { self.section_pages(section) };
        let start = (pfn.0 - section.0) as usize;
        debug_assert!(core::ptr::eq(first, &pages[start]));
        Some(&pages[start..start + nr as usize])
    }

    /// The pfn of a descriptor of a hot-added section: the descriptor lies in
    /// its own section's first frames, so its address names the section.
    #[cold]
    #[inline(never)]
    pub(super) fn hot_pfn_of(&self, page: &Page) -> Pfn {
        // Addresses, not provenance: no pointer is made from the result.
        let offset = (page as *const Page).addr().wrapping_sub(self.memory.as_ptr().addr());
        let holder = Pfn((self.phys_base.0 + offset as u64) >> super::PAGE_SHIFT);
        let section = Pfn(holder.0 & !((1u64 << self.sections.order) - 1));
        let section_offset = (section.phys().0 - self.phys_base.0) as usize;
        let index = (offset - section_offset) / size_of::<Page>();
        debug_assert!(self.section_tag(section).is_some() && (index as u64) < self.section_frames());
        section.add(index as u64)
    }

    /// The pageblock byte of `pfn` in a hot-added section.
    ///
    /// # Panics
    /// If the section has no descriptors: the caller owns a frame there, so
    /// that is a bug in the core.
    #[cold]
    #[inline(never)]
    #[track_caller]
    pub(super) fn hot_pageblock(&self, pfn: Pfn) -> &'a AtomicU8 {
        if self.section_tag(pfn).is_none() {
            super::outside_map(pfn, 1);
        }
        let section = Pfn(pfn.0 & !((1u64 << self.sections.order) - 1));
        let frames = self.section_frames();
        // SAFETY: in the section's metadata (section_meta_frames counts these
        // bytes), inside `memory` (the table covers only sections inside it);
        // initialised in HOTADD.1 before the HAS_MEMMAP that section_tag just
        // saw with Acquire, and never written as anything else.
        unsafe {
            let base = self.section_base(section).add(frames as usize * size_of::<Page>()).cast::<AtomicU8>();
            &*base.add(((pfn.0 - section.0) >> PAGEBLOCK_ORDER) as usize)
        }
    }

    /// Whether `nr` frames from `pfn`, past the boot span, are frames of one
    /// section with descriptors and outside its metadata: what frame views
    /// may cover there.
    #[cold]
    #[inline(never)]
    pub(super) fn hot_frames_ok(&self, pfn: Pfn, nr: u64) -> bool {
        let section = Pfn(pfn.0 & !((1u64 << self.sections.order) - 1));
        nr > 0
            && self.same_section(pfn, Pfn(pfn.0 + nr - 1))
            && pfn.0 - section.0 >= self.sections.meta_frames
            && self.section_tag(pfn).is_some()
    }

    /// The host address of a section's first byte.
    fn section_base(&self, section: Pfn) -> *mut u8 {
        // In bounds: the table covers only sections inside `memory`.
        self.memory.as_ptr().wrapping_add((section.phys().0 - self.phys_base.0) as usize)
    }

    /// The descriptors of the section starting at `section`.
    ///
    /// # Safety
    /// 1. The section's state has `HAS_MEMMAP`, loaded with Acquire (or the
    ///    caller wrote it), so HOTADD.1's writes happen before this.
    unsafe fn section_pages(&self, section: Pfn) -> &'a [Page] {
        // The descriptors are never written as anything else afterwards: a
        // section never goes back to absent, and frame views exclude the
        // metadata frames (hot_frames_ok).
        let first = self.section_base(section).cast::<Page>();
        let frames = self.section_frames() as usize;
        // SAFETY: duty 1: HOTADD.1 initialised these `frames` descriptors,
        // frame-aligned inside `memory` (borrowed for 'a); only shared
        // references are ever made to them.
        unsafe { core::slice::from_raw_parts(first, frames) }
    }

    /// Starts a hot-add of `range` (HOTADD.1–.2): takes the hot-add lock,
    /// checks the range, writes every section's descriptors (zeroed) and
    /// pageblock bytes, and publishes them to owner paths tagged `tag`. The
    /// sections stay invisible to lockless readers until
    /// [`HotPlug::online`].
    ///
    /// # Errors
    /// [`HotAddError`] for an empty, misaligned or out-of-span range, or one
    /// with a section already present; nothing is written then.
    pub(crate) fn hot_plug(&self, range: PhysRange, tag: u8) -> Result<HotPlug<'_, 'a>, HotAddError> {
        const { assert!(align_of::<Page>() <= PAGE_SIZE && align_of::<AtomicU8>() <= align_of::<Page>()) };
        let section_bytes = (PAGE_SIZE as u64) << self.sections.order;
        if range.end.0 <= range.start.0 {
            return Err(HotAddError::Empty(range));
        }
        if range.start.0 % section_bytes != 0 || range.end.0 % section_bytes != 0 {
            return Err(HotAddError::Misaligned { range, section_bytes });
        }
        let (base, end) = self.hot_span();
        if range.start.0 < base.phys().0 || range.end.0 > end.phys().0 {
            let span = PhysRange { start: base.phys(), end: end.phys() };
            return Err(HotAddError::OutsideSpan { range, span });
        }
        let lock = self.sections.lock.lock();
        let (start, end) = (range.start.pfn(), range.end.pfn());
        let frames = self.section_frames();
        let mut section = start;
        while section < end {
            // Relaxed: states change only under the lock we hold.
            if self.sections.state_of(section).is_none_or(|s| s.load(Ordering::Relaxed) != ABSENT) {
                return Err(HotAddError::Present { section });
            }
            section = section.add(frames);
        }
        let mut section = start;
        while section < end {
            // HOTADD.1: write the descriptors and pageblock bytes.
            // SAFETY: duty 1: absent (checked above, under the lock that
            // every writer holds, and states never go back).
            unsafe { self.init_section(section) };
            let state = self.sections.state_of(section).expect("checked above");
            // HOTADD.2. Release: pairs with the Acquire in hot_page and
            // section_tag (HOTADD.7): an owner path that finds HAS_MEMMAP
            // reads initialised descriptors.
            state.store(HAS_MEMMAP | (tag << TAG_SHIFT), Ordering::Release);
            section = section.add(frames);
        }
        Ok(HotPlug { map: self, start, end, tag, _lock: lock })
    }

    /// Writes the descriptors and pageblock bytes of the section at
    /// `section` (HOTADD.1).
    ///
    /// # Safety
    /// 1. The section is absent and the caller holds the section lock: no
    ///    reference, frame view or other writer reaches its bytes (lookups
    ///    miss an absent section; frame views exclude it: hot_frames_ok).
    unsafe fn init_section(&self, section: Pfn) {
        let frames = self.section_frames() as usize;
        let base = self.section_base(section);
        let pages = base.cast::<Page>();
        for i in 0..frames {
            // SAFETY: duty 1 makes the slot ours; it lies in the section's
            // metadata frames (section_meta_frames), inside `memory`, and is
            // aligned (a frame boundary plus a multiple of the size).
            unsafe { pages.add(i).write(Page::new()) };
        }
        // SAFETY: right after the descriptors, inside the metadata frames.
        let pageblocks = unsafe { base.add(frames * size_of::<Page>()) }.cast::<AtomicU8>();
        for i in 0..frames.div_ceil(PAGEBLOCK_FRAMES as usize) {
            // SAFETY: as above; aligned since a Page's size is a multiple
            // of its alignment, which is at least AtomicU8's.
            unsafe { pageblocks.add(i).write(AtomicU8::new(0)) };
        }
    }
}

impl<'a> HotPlug<'_, 'a> {
    /// The frames being added, `[start, end)`.
    pub(crate) fn range(&self) -> (Pfn, Pfn) {
        (self.start, self.end)
    }

    /// Makes every section of the range visible to lockless readers
    /// (HOTADD.4). The layer above has typed the frames (HOTADD.3).
    pub(crate) fn online(&self) {
        let mut section = self.start;
        while section < self.end {
            let state = self.map.sections.state_of(section).expect("checked by hot_plug");
            // HOTADD.4. Release: pairs with the Acquire in hot_page and
            // online_sections (HOTADD.6): a getter or walker that sees the
            // section online reads descriptors typed by HOTADD.3.
            #[cfg(not(memdesc_mutant = "hotadd_relaxed_online"))]
            state.store(HAS_MEMMAP | ONLINE | (self.tag << TAG_SHIFT), Ordering::Release);
            // Mutant: the section goes online without Release. Relaxed:
            // deliberately wrong.
            #[cfg(memdesc_mutant = "hotadd_relaxed_online")]
            state.store(HAS_MEMMAP | ONLINE | (self.tag << TAG_SHIFT), Ordering::Relaxed);
            section = section.add(self.map.section_frames());
        }
    }
}

/// The section table a boot places: `(base, sections)` for a map whose
/// boot span ends at `span_end`, over memory ending at `memory_end`, with
/// descriptor indices (pfn − `span_start`) below 2^32.
pub(super) fn plan_sections(span_start: Pfn, span_end: Pfn, memory_end: PhysAddr, order: u32) -> (Pfn, u64) {
    let base = Pfn(span_end.0.next_multiple_of(1 << order));
    let index_end = span_start.0 + u32::MAX as u64;
    let end = (memory_end.0 >> super::PAGE_SHIFT).min(index_end);
    (base, end.saturating_sub(base.0) >> order)
}

/// Bytes of the section table of `nr` sections.
pub(super) const fn table_bytes(nr: u64) -> u64 {
    nr * size_of::<AtomicU8>() as u64
}
