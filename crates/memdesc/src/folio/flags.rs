//! Page flags: the bits of the descriptor's flags word.
//!
//! Bits the owner changes while holding the folio exclusively (frozen or
//! locked) may be written with a plain load/store; bits others may change
//! concurrently (the lock bits) use atomic read-modify-writes.

/// A set of page flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageFlags(pub u64);

impl PageFlags {
    /// No flags.
    pub const EMPTY: Self = Self(0);
    /// The folio lock is held (`PG_locked`).
    pub const LOCKED: Self = Self(1 << 0);
    /// Someone sleeps on the folio lock (`PG_waiters`).
    pub const WAITERS: Self = Self(1 << 1);
    /// Contents differ from backing store (`PG_dirty`).
    pub const DIRTY: Self = Self(1 << 2);
    /// Contents are valid (`PG_uptodate`).
    pub const UPTODATE: Self = Self(1 << 3);
    /// On an LRU list (`PG_lru`).
    pub const LRU: Self = Self(1 << 4);
    /// Isolated for migration (`PG_movable_ops_isolated`).
    pub const ISOLATED: Self = Self(1 << 5);
    /// Flags that must be clear when a folio is freed.
    pub const CHECK_AT_FREE: Self = Self(Self::LOCKED.0 | Self::WAITERS.0 | Self::LRU.0 | Self::ISOLATED.0);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}
