//! Address newtypes: physical addresses and page frame numbers.

use core::fmt;

/// Bytes per frame.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

impl PhysAddr {
    /// Whether the address is frame-aligned.
    pub const fn is_page_aligned(self) -> bool {
        self.0 & (PAGE_SIZE as u64 - 1) == 0
    }

    /// The frame containing this address.
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
}

/// A page frame number: a physical address divided by [`PAGE_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The frame's first byte.
    pub const fn phys(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }

    /// The frame `n` frames above this one.
    #[inline(always)]
    pub const fn add(self, n: u64) -> Pfn {
        Pfn(self.0 + n)
    }

    /// Whether this pfn is a multiple of `1 << order`.
    #[inline(always)]
    pub const fn is_aligned(self, order: u32) -> bool {
        self.0 & ((1u64 << order) - 1) == 0
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: PhysAddr,
    /// One past the last byte.
    pub end: PhysAddr,
}

impl PhysRange {
    /// The range `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start: PhysAddr(start), end: PhysAddr(end) }
    }

    /// Whether the two ranges share a byte.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.start.0 < other.end.0 && other.start.0 < self.end.0
    }

    /// Whether `pfn`'s frame lies inside the range.
    pub const fn contains_pfn(&self, pfn: Pfn) -> bool {
        let addr = pfn.phys().0;
        self.start.0 <= addr && addr < self.end.0
    }

    /// Frames in the range.
    pub const fn nr_frames(&self) -> u64 {
        (self.end.0 - self.start.0) >> PAGE_SHIFT
    }
}
