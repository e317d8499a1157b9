//! Page-table entry encodings: one 64-bit word per entry, x86-64 layout.
//!
//! | bits | present entry | non-present entry |
//! |---|---|---|
//! | 0 | `P` present (1) | 0 |
//! | 1 | `RW` writable | `MIGRATION` marker (1 for a migration entry, 0 for none) |
//! | 2 | `US` user | the migration entry's mapping was writable |
//! | 5 | `A` accessed | — |
//! | 6 | `D` dirty | the migration entry's page was dirty |
//! | 7 | `PS` huge (PMD leaf of a 2 MiB folio) | huge (a PMD migration entry; PTE-level migration entries never set it, PMD-level ones always do) |
//! | 12–51 | pfn (of the page, the huge page's head, or the next table) | pfn of the page being migrated or split |
//!
//! An all-zero word is an empty entry (`pte_none`). A migration entry keeps
//! the pfn and what the mapping was (writable, dirty, huge), so the remap
//! after a split or migration restores it exactly; a CPU that faults on one
//! waits until it is replaced. Entries are built and decoded only through
//! these types, so a caller never confuses a table pointer with a huge
//! leaf, or a migration entry with a present one: decoding is total (every
//! word decodes to exactly one [`Entry`]).

use crate::memmap::Pfn;
use core::fmt;

/// The present bit.
const PRESENT: u64 = 1 << 0;
/// Writable (present entries).
const WRITE: u64 = 1 << 1;
/// User-accessible (present entries).
const USER: u64 = 1 << 2;
/// Accessed (present entries), set by the MMU on use.
const ACCESSED: u64 = 1 << 5;
/// Dirty (present leaf entries), set by the MMU on write.
const DIRTY: u64 = 1 << 6;
/// A PMD (or PUD) leaf, not a table pointer.
const HUGE: u64 = 1 << 7;
/// A non-present migration entry (bit 1 when bit 0 is clear).
const MIGRATION: u64 = 1 << 1;
/// The migration entry's mapping was writable (bit 2 when non-present).
const MIGRATION_WRITE: u64 = 1 << 2;
/// Bits 12..=51: the pfn.
const PFN_MASK: u64 = ((1 << 52) - 1) & !((1 << 12) - 1);
/// The largest pfn an entry can hold (40 bits: 4 PiB of physical memory).
pub const MAX_ENTRY_PFN: u64 = PFN_MASK >> 12;

/// The page-table level an entry lives at, top first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Page global directory: 512 GiB per entry.
    Pgd,
    /// Page upper directory: 1 GiB per entry.
    Pud,
    /// Page middle directory: 2 MiB per entry; may hold a huge leaf.
    Pmd,
    /// Page table: 4 KiB per entry.
    Pte,
}

impl Level {
    /// The levels from the top down.
    pub const ALL: [Level; 4] = [Level::Pgd, Level::Pud, Level::Pmd, Level::Pte];

    /// log2 of the bytes one entry at this level maps (x86-64: 39, 30, 21,
    /// 12; under the model checker, 8-entry tables: 21, 18, 15, 12).
    pub const fn shift(self) -> u32 {
        match self {
            Level::Pgd => 12 + 3 * TABLE_BITS,
            Level::Pud => 12 + 2 * TABLE_BITS,
            Level::Pmd => 12 + TABLE_BITS,
            Level::Pte => 12,
        }
    }

    /// Bytes one entry at this level maps.
    pub const fn size(self) -> u64 {
        1 << self.shift()
    }

    /// The index of the entry at this level that maps `vaddr`
    /// (`0..ENTRIES_PER_TABLE`).
    pub const fn index(self, vaddr: u64) -> usize {
        ((vaddr >> self.shift()) & (ENTRIES_PER_TABLE as u64 - 1)) as usize
    }

    /// The level below, if any.
    pub const fn next(self) -> Option<Level> {
        match self {
            Level::Pgd => Some(Level::Pud),
            Level::Pud => Some(Level::Pmd),
            Level::Pmd => Some(Level::Pte),
            Level::Pte => None,
        }
    }
}

/// log2 of the entries in one table: 9 (512 entries, one 4 KiB frame of
/// 8-byte words). Under the model checker tables have 8 entries, so a
/// "huge" PMD leaf maps an order-3 folio that fits a node of a few dozen
/// frames, and a model walks four real levels.
#[cfg(not(memdesc_loom))]
pub const TABLE_BITS: u32 = 9;
/// log2 of the entries in one table (8 under the model checker).
#[cfg(memdesc_loom)]
pub const TABLE_BITS: u32 = 3;

/// Entries in one table frame.
pub const ENTRIES_PER_TABLE: usize = 1 << TABLE_BITS;

/// Permission and state bits of a present leaf mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prot {
    /// Writes allowed.
    pub write: bool,
    /// User mode may access.
    pub user: bool,
    /// Set on access (by the simulated MMU).
    pub accessed: bool,
    /// Set on write (by the simulated MMU).
    pub dirty: bool,
}

impl Prot {
    /// User read-only.
    pub const READ: Prot = Prot { write: false, user: true, accessed: false, dirty: false };
    /// User read-write.
    pub const READ_WRITE: Prot = Prot { write: true, user: true, accessed: false, dirty: false };

    const fn bits(self) -> u64 {
        (if self.write { WRITE } else { 0 })
            | (if self.user { USER } else { 0 })
            | (if self.accessed { ACCESSED } else { 0 })
            | (if self.dirty { DIRTY } else { 0 })
    }

    const fn from_bits(word: u64) -> Prot {
        Prot {
            write: word & WRITE != 0,
            user: word & USER != 0,
            accessed: word & ACCESSED != 0,
            dirty: word & DIRTY != 0,
        }
    }
}

/// What an entry word says: decoding is total, every word is one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// Empty: nothing mapped here.
    None,
    /// A pointer to the next-level table (never at [`Level::Pte`]).
    Table(Pfn),
    /// A present leaf: a 4 KiB page at [`Level::Pte`], the head of a 2 MiB
    /// folio (`huge`) at [`Level::Pmd`].
    Page {
        /// The frame mapped (the huge folio's head for a huge leaf).
        pfn: Pfn,
        /// Permissions and state.
        prot: Prot,
        /// A PMD leaf.
        huge: bool,
    },
    /// Non-present: the page is being migrated or split; a CPU that faults
    /// here waits until it is replaced.
    Migration {
        /// The frame (or huge head) the entry mapped.
        pfn: Pfn,
        /// The mapping was writable.
        write: bool,
        /// The page was dirty when unmapped.
        dirty: bool,
        /// A PMD migration entry.
        huge: bool,
    },
    /// A non-present word this layer never writes (a bug or corruption);
    /// kept, not guessed at, so an audit can report it.
    Unknown(u64),
}

/// Why an entry could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The pfn does not fit an entry's 40 bits.
    PfnTooLarge(Pfn),
    /// A huge leaf's pfn is not aligned to 2 MiB.
    MisalignedHuge(Pfn),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PfnTooLarge(p) => write!(f, "pfn {p} does not fit a page-table entry"),
            Self::MisalignedHuge(p) => write!(f, "pfn {p} is not aligned for a 2 MiB mapping"),
        }
    }
}

impl core::error::Error for EntryError {}

/// Frames per huge (PMD-mapped) page: 512, a 2 MiB folio.
pub const HUGE_FRAMES: u64 = 1 << TABLE_BITS;

fn pfn_bits(pfn: Pfn) -> Result<u64, EntryError> {
    if pfn.0 > MAX_ENTRY_PFN {
        return Err(EntryError::PfnTooLarge(pfn));
    }
    Ok(pfn.0 << 12)
}

fn huge_pfn_bits(pfn: Pfn, huge: bool) -> Result<u64, EntryError> {
    if huge && pfn.0 % HUGE_FRAMES != 0 {
        return Err(EntryError::MisalignedHuge(pfn));
    }
    Ok(pfn_bits(pfn)? | if huge { HUGE } else { 0 })
}

impl Entry {
    /// Encodes the entry as its word.
    ///
    /// # Errors
    /// [`EntryError`] for a pfn beyond 40 bits or a misaligned huge pfn.
    /// [`Entry::Unknown`] encodes as the word it holds.
    pub fn encode(self) -> Result<u64, EntryError> {
        Ok(match self {
            Entry::None => 0,
            // Tables are writable and user-accessible: the leaf decides.
            Entry::Table(pfn) => pfn_bits(pfn)? | PRESENT | WRITE | USER,
            Entry::Page { pfn, prot, huge } => huge_pfn_bits(pfn, huge)? | PRESENT | prot.bits(),
            Entry::Migration { pfn, write, dirty, huge } => {
                huge_pfn_bits(pfn, huge)?
                    | MIGRATION
                    | if write { MIGRATION_WRITE } else { 0 }
                    | if dirty { DIRTY } else { 0 }
            }
            Entry::Unknown(word) => word,
        })
    }

    /// Decodes a word read at `level`.
    ///
    /// At [`Level::Pte`] a present word is a 4 KiB leaf; at [`Level::Pmd`]
    /// it is a huge leaf if the huge bit is set and a table otherwise; above,
    /// it is a table. Migration entries live at the two lowest levels (huge
    /// only at [`Level::Pmd`]). Any word this layer would never write at
    /// `level` (a huge bit at the PTE level, a 1 GiB leaf, stray bits in a
    /// non-present word) decodes as [`Entry::Unknown`].
    pub const fn decode(word: u64, level: Level) -> Entry {
        let pfn = Pfn((word & PFN_MASK) >> 12);
        let huge = word & HUGE != 0;
        // A huge leaf or huge migration entry names a 2 MiB-aligned head.
        if huge && pfn.0 % HUGE_FRAMES != 0 {
            return Entry::Unknown(word);
        }
        if word & PRESENT != 0 {
            // Bits this layer never sets (NX, PAT, cache control, global,
            // software bits) make the word unknown rather than dropped.
            if word & !(PFN_MASK | PRESENT | WRITE | USER | ACCESSED | DIRTY | HUGE) != 0 {
                return Entry::Unknown(word);
            }
            return match (level, huge) {
                (Level::Pte, false) => Entry::Page { pfn, prot: Prot::from_bits(word), huge: false },
                (Level::Pmd, true) => Entry::Page { pfn, prot: Prot::from_bits(word), huge: true },
                (Level::Pte, true) | (Level::Pud | Level::Pgd, true) => Entry::Unknown(word),
                (Level::Pmd | Level::Pud | Level::Pgd, false) => Entry::Table(pfn),
            };
        }
        if word == 0 {
            return Entry::None;
        }
        let known = PFN_MASK | MIGRATION | MIGRATION_WRITE | DIRTY | HUGE;
        let level_ok = match level {
            Level::Pte => !huge,
            Level::Pmd => huge,
            Level::Pud | Level::Pgd => false,
        };
        if word & MIGRATION != 0 && word & !known == 0 && level_ok {
            return Entry::Migration { pfn, write: word & MIGRATION_WRITE != 0, dirty: word & DIRTY != 0, huge };
        }
        Entry::Unknown(word)
    }

    /// Whether the MMU may use the entry (a table or a present leaf).
    pub const fn is_present(self) -> bool {
        matches!(self, Entry::Table(_) | Entry::Page { .. })
    }
}

#[cfg(all(test, not(memdesc_loom)))]
mod tests;
