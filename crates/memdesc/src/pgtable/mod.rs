//! Page tables: four-level x86-64-style tables in frames of type
//! [`PageType::PageTable`](crate::folio::PageType::PageTable), allocated
//! frozen so no speculative getter can take a reference to one.
//!
//! So far this layer has the entry encodings ([`Entry`]: tables, 4 KiB and
//! 2 MiB leaves, migration entries) and the level arithmetic ([`Level`]).
//! The tables themselves, the walk with Acquire entry loads (P4), the
//! simulated MMU and its TLBs, and unmapping with batched flushes and
//! RCU-deferred table freeing (P5) build on these (issue 6).

mod entry;

pub use entry::{Entry, EntryError, Level, Prot, ENTRIES_PER_TABLE, MAX_ENTRY_PFN};
