//! The slab layer's typed errors and bad-object reports.

use crate::buddy::AllocError;
use core::fmt;

/// What a debug check found wrong with an object (slub_debug style).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BadObjectKind {
    /// The red zone before the object was overwritten.
    LeftRedZone,
    /// The red zone after the object was overwritten.
    RightRedZone,
    /// A free object's poison was overwritten: a use-after-free write.
    PoisonOverwritten,
    /// The per-object state word holds no known state (overwritten).
    StateCorrupted,
    /// A free object's free pointer does not name an object of its slab:
    /// the rest of the slab's freelist is abandoned (quarantined).
    FreePointerCorrupted,
}

impl BadObjectKind {
    /// A short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::LeftRedZone => "left red zone overwritten",
            Self::RightRedZone => "right red zone overwritten",
            Self::PoisonOverwritten => "poison overwritten (use after free)",
            Self::StateCorrupted => "object state overwritten",
            Self::FreePointerCorrupted => "free pointer overwritten",
        }
    }
}

/// A corrupted object found by a debug check: the object is quarantined
/// (never handed out again), not reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BadObject {
    /// The cache's name.
    pub cache: &'static str,
    /// The cache's id (its slab type tag payload).
    pub cache_id: u16,
    /// The slab's head pfn.
    pub slab: u64,
    /// The object's offset in its slab.
    pub offset: usize,
    /// The first byte found wrong, as an offset in the slab.
    pub at: usize,
    /// What was wrong.
    pub kind: BadObjectKind,
}

impl fmt::Display for BadObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cache {} (id {}): object at offset {:#x} of slab pfn {}: {} (byte {:#x})",
            self.cache,
            self.cache_id,
            self.offset,
            self.slab,
            self.kind.name(),
            self.at
        )
    }
}

/// A slab operation refused: nothing changed, except where a variant says
/// an object was quarantined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabError {
    /// Object size 0, or too large for a slab (see `MAX_OBJECT_SIZE`) or a
    /// large kmalloc (above the largest buddy order).
    BadSize(usize),
    /// Alignment not a power of two, or above a page.
    BadAlign(usize),
    /// Every cache id is in use.
    TooManyCaches,
    /// The buddy allocator had no frames.
    OutOfMemory(AllocError),
    /// The pointer is not an object of this allocator: outside the node's
    /// memory, or in a frame whose type tag is not a slab's.
    NotSlabObject(usize),
    /// The pointer is an object of another cache than the one it was freed
    /// to.
    WrongCache {
        /// The cache it was freed to.
        expected: u16,
        /// The cache its slab belongs to.
        found: u16,
    },
    /// The pointer is inside a slab but not at an object's start.
    Misaligned {
        /// The cache.
        cache: u16,
        /// The pointer's offset in its slab.
        offset: usize,
    },
    /// The object is free already (detected by debug caches).
    DoubleFree {
        /// The cache.
        cache: u16,
        /// The object's offset in its slab.
        offset: usize,
    },
    /// A debug check found the object corrupted; it is quarantined.
    BadObject(BadObject),
    /// The slab return given to `SlabAllocator::new` takes another node's
    /// frames.
    ForeignReturn,
}

impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize(size) => write!(f, "object size {size} is not supported"),
            Self::BadAlign(align) => write!(f, "alignment {align} is not a power of two up to a page"),
            Self::TooManyCaches => write!(f, "every slab cache id is in use"),
            Self::OutOfMemory(e) => write!(f, "no frames for a slab: {e}"),
            Self::NotSlabObject(addr) => write!(f, "{addr:#x} is not a slab object"),
            Self::WrongCache { expected, found } => {
                write!(f, "object of cache {found} freed to cache {expected}")
            }
            Self::Misaligned { cache, offset } => {
                write!(f, "offset {offset:#x} is not an object boundary in cache {cache}")
            }
            Self::DoubleFree { cache, offset } => {
                write!(f, "double free of the object at offset {offset:#x} of cache {cache}")
            }
            Self::BadObject(report) => write!(f, "bad object: {report}"),
            Self::ForeignReturn => write!(f, "the slab return belongs to another node"),
        }
    }
}

impl core::error::Error for SlabError {}

impl From<AllocError> for SlabError {
    fn from(e: AllocError) -> Self {
        Self::OutOfMemory(e)
    }
}
