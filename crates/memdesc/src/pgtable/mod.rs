//! Page tables: four-level x86-64-style tables in frames of type
//! [`PageType::PageTable`](crate::folio::PageType::PageTable), allocated
//! frozen so no speculative getter can take a reference to one.
//!
//! The layer: entry encodings ([`Entry`], [`Level`]), tables in frames with
//! Acquire loads and Release publication (P4, `table`), the simulated MMU's
//! per-CPU TLBs and shootdowns (`tlb`), the unmap gather with RCU-deferred
//! table freeing (P5, `gather`), and [`AddressSpace`]: areas, faults,
//! accesses, unmapping, protection changes and the PMD split.

mod aspace;
mod entry;
pub(crate) mod gather;
mod mmu;
mod table;
mod tlb;
mod vma;

pub(crate) use aspace::map_count;
pub use aspace::{AddressSpace, AsAudit, Fault, Leaf, MmError, HUGE_SIZE, USER_END, USER_START};
pub use entry::{Entry, EntryError, Level, Prot, ENTRIES_PER_TABLE, HUGE_FRAMES, MAX_ENTRY_PFN, TABLE_BITS};
pub use mmu::{MmEvent, Mmu};
pub use table::{TableFreer, TableReturn};
pub use tlb::TLB_ENTRIES;
pub use vma::{Vma, MAX_VMAS};

#[cfg(all(test, memdesc_loom))]
pub(crate) mod loom;
#[cfg(all(test, not(memdesc_loom)))]
mod proptests;
#[cfg(all(test, not(memdesc_loom)))]
mod tests;
