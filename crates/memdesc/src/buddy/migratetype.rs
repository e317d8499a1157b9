//! Migratetypes: what kind of allocation a pageblock serves.
//!
//! Grouping pages by mobility keeps unmovable allocations from scattering
//! over memory that compaction could otherwise empty. Each pageblock (order
//! 9) carries one migratetype in the memory map's pageblock bytes; free
//! blocks sit on the free list of their pageblock's type. When a type runs
//! out, allocation falls back to another type's blocks in Linux's order,
//! either claiming a whole pageblock (when it is mostly free) or stealing one
//! block.

use crate::memmap::{MemMap, Pfn};
use crate::sync::Ordering;
use core::fmt;

/// The mobility class of an allocation and of a pageblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Migratetype {
    /// Kernel memory that cannot move (slab, page tables).
    Unmovable = 0,
    /// Memory that migration can move (user pages).
    Movable = 1,
    /// Memory a shrinker can free (caches).
    Reclaimable = 2,
}

/// How many migratetypes there are.
pub const NR_MIGRATETYPES: usize = 3;

impl Migratetype {
    /// Every migratetype, in index order.
    pub const ALL: [Migratetype; NR_MIGRATETYPES] = [Self::Unmovable, Self::Movable, Self::Reclaimable];

    /// The index for per-type arrays.
    #[inline(always)]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Linux's fallback order: which types a request may borrow from, in
    /// order (`fallbacks[]` in mm/page_alloc.c).
    pub const fn fallbacks(self) -> [Migratetype; 2] {
        match self {
            Self::Unmovable => [Self::Reclaimable, Self::Movable],
            Self::Movable => [Self::Reclaimable, Self::Unmovable],
            Self::Reclaimable => [Self::Unmovable, Self::Movable],
        }
    }

    #[inline(always)]
    const fn from_bits(bits: u8) -> Self {
        // A table, not a match: one load on the free path (an unknown
        // value reads as movable, the boot type).
        const BY_BITS: [Migratetype; 4] =
            [Migratetype::Unmovable, Migratetype::Movable, Migratetype::Reclaimable, Migratetype::Movable];
        BY_BITS[(bits & 3) as usize]
    }

    /// A short name, as /proc/pagetypeinfo prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unmovable => "Unmovable",
            Self::Movable => "Movable",
            Self::Reclaimable => "Reclaimable",
        }
    }
}

impl fmt::Display for Migratetype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The migratetype of the pageblock containing `pfn`.
#[inline(always)]
pub(crate) fn pageblock_migratetype(map: &MemMap<'_>, pfn: Pfn) -> Migratetype {
    // Relaxed: the byte changes only under the zone lock, which every caller
    // that acts on it holds; lock-free readers (reports) take a snapshot.
    Migratetype::from_bits(map.pageblock(pfn).load(Ordering::Relaxed))
}

/// Sets the migratetype of the pageblock containing `pfn`. Caller holds the
/// zone lock.
#[inline(always)]
pub(crate) fn set_pageblock_migratetype(map: &MemMap<'_>, pfn: Pfn, mt: Migratetype) {
    // Relaxed: written under the zone lock, whose release publishes it to the
    // next holder; see pageblock_migratetype.
    map.pageblock(pfn).store(mt as u8, Ordering::Relaxed);
}
