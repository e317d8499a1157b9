//! The type tag (P3): what a frame is, in one atomic word.
//!
//! Linux infers a page's type from flag bits and, until 2022, from bits of
//! the `mapping` pointer, a word the slab allocator reused for its RCU
//! callback (seed 004). Here the type is one value in its own word. It is
//! written only by the frame's exclusive owner (the allocator while the frame
//! is free or being prepared, a [`FrozenFolio`](super::FrozenFolio) holder),
//! so anyone holding a reference sees a type that cannot change under them.

use core::fmt;

/// What a frame is. Encoded as `kind | payload << 8` in the descriptor's type
/// word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageType {
    /// Boot state; no frame keeps it after the allocator starts.
    Uninit,
    /// Not RAM: a hole inside the span the memory map covers.
    Hole,
    /// RAM the host reserved (firmware, kernel image); never managed.
    Reserved,
    /// Holds the allocator's own metadata (descriptors, root object).
    Metadata,
    /// Head of a free block of `2^order` frames on a zone free list.
    Buddy {
        /// Order of the free block.
        order: u8,
    },
    /// Free, inside a free block but not its head, or between lists.
    Free,
    /// Free, on a per-CPU list, as the head of a block of `2^order` frames.
    Pcp {
        /// Order of the cached block.
        order: u8,
    },
    /// A tail page of an allocated compound folio; its head holds the type.
    Tail,
    /// Allocated for the kernel, with no more specific owner.
    Kernel,
    /// Anonymous memory of a process.
    Anon,
    /// Page-cache memory of a file.
    File,
    /// A slab of cache `cache` (allocated frozen: refcount stays 0).
    Slab {
        /// Index of the owning slab cache.
        cache: u16,
    },
    /// A driver page whose migration goes through registered ops.
    Movable {
        /// Index of the movable-ops entry.
        ops: u16,
    },
    /// A page-table frame (allocated frozen).
    PageTable,
    /// Memory taken offline (ballooned out, unplugged).
    Offline,
    /// A bad page: taken out of service after a bad-page report.
    Quarantined,
}

const KIND_MASK: u32 = 0xff;
const PAYLOAD_SHIFT: u32 = 8;

impl PageType {
    /// The encoded word.
    #[inline(always)]
    pub const fn encode(self) -> u32 {
        // Kind and payload apart: the kind is the variant's index, which
        // the compiler reads off the discriminant instead of a jump table.
        let kind: u32 = match self {
            Self::Uninit => 0,
            Self::Hole => 1,
            Self::Reserved => 2,
            Self::Metadata => 3,
            Self::Buddy { .. } => 4,
            Self::Free => 5,
            Self::Pcp { .. } => 6,
            Self::Tail => 7,
            Self::Kernel => 8,
            Self::Anon => 9,
            Self::File => 10,
            Self::Slab { .. } => 11,
            Self::Movable { .. } => 12,
            Self::PageTable => 13,
            Self::Offline => 14,
            Self::Quarantined => 15,
        };
        let payload: u32 = match self {
            Self::Buddy { order } | Self::Pcp { order } => order as u32,
            Self::Slab { cache } => cache as u32,
            Self::Movable { ops } => ops as u32,
            _ => 0,
        };
        kind | payload << PAYLOAD_SHIFT
    }

    /// Decodes a type word; an unknown kind decodes as `Uninit`.
    pub const fn decode(word: u32) -> Self {
        let payload = word >> PAYLOAD_SHIFT;
        match word & KIND_MASK {
            1 => Self::Hole,
            2 => Self::Reserved,
            3 => Self::Metadata,
            4 => Self::Buddy { order: payload as u8 },
            5 => Self::Free,
            6 => Self::Pcp { order: payload as u8 },
            7 => Self::Tail,
            8 => Self::Kernel,
            9 => Self::Anon,
            10 => Self::File,
            11 => Self::Slab { cache: payload as u16 },
            12 => Self::Movable { ops: payload as u16 },
            13 => Self::PageTable,
            14 => Self::Offline,
            15 => Self::Quarantined,
            _ => Self::Uninit,
        }
    }

    /// Whether the frame belongs to the allocator (buddy, pcp, or inside a
    /// free block).
    pub const fn is_free(self) -> bool {
        matches!(self, Self::Buddy { .. } | Self::Free | Self::Pcp { .. })
    }

    /// Whether the frame is never managed (hole, reserved, metadata, bad).
    pub const fn is_unmanaged(self) -> bool {
        matches!(self, Self::Uninit | Self::Hole | Self::Reserved | Self::Metadata | Self::Quarantined)
    }

    /// Whether a frame of this type is allocated frozen and never counted:
    /// no speculative getter can take a reference to it (P3).
    pub const fn is_always_frozen(self) -> bool {
        matches!(self, Self::Slab { .. } | Self::PageTable)
    }

    /// Whether this type may be given to a newly allocated folio head.
    pub const fn is_owner_type(self) -> bool {
        !self.is_free() && !self.is_unmanaged() && !matches!(self, Self::Tail)
    }

    /// A short lower-case name (vmstat style).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Uninit => "uninit",
            Self::Hole => "hole",
            Self::Reserved => "reserved",
            Self::Metadata => "metadata",
            Self::Buddy { .. } => "buddy",
            Self::Free => "free",
            Self::Pcp { .. } => "pcp",
            Self::Tail => "tail",
            Self::Kernel => "kernel",
            Self::Anon => "anon",
            Self::File => "file",
            Self::Slab { .. } => "slab",
            Self::Movable { .. } => "movable",
            Self::PageTable => "pagetable",
            Self::Offline => "offline",
            Self::Quarantined => "quarantined",
        }
    }
}

impl fmt::Display for PageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Buddy { order } | Self::Pcp { order } => write!(f, "{}({order})", self.name()),
            Self::Slab { cache } => write!(f, "slab({cache})"),
            Self::Movable { ops } => write!(f, "movable({ops})"),
            _ => f.write_str(self.name()),
        }
    }
}
