//! memdesc: the page-frame layer of an operating system, with typed page
//! descriptors.
//!
//! # The problem
//! A kernel's physical-memory manager keeps one descriptor per frame and lets
//! lockless code (GUP-fast, compaction, pfn walkers) take references to frames
//! it does not own. In Linux that has raced with huge-page splitting (a
//! reference taken on a folio that was split meanwhile) and with the slab
//! allocator (compaction read "movable" from a word slab reused for its RCU
//! callback). memdesc makes those races impossible by construction:
//!
//! - one atomic **type tag** per descriptor, written only by the frame's
//!   exclusive owner ([`folio::PageType`]);
//! - **frozen** allocation (refcount 0) for frames no one else may count
//!   ([`buddy::Node::alloc_frozen`]);
//! - one audited **speculative get** ([`folio::try_get`]) with the head and
//!   source rechecks;
//! - handles whose types are the ownership levels ([`folio::FolioRef`],
//!   [`folio::FrozenFolio`], [`folio::LockedFolio`]).
//!
//! # The mechanism
//! [`buddy::Node::boot`] takes the host's physical memory as a byte slice and
//! a map of RAM and reserved ranges, places the 64-byte descriptors and the
//! node itself inside it (no heap), and runs a buddy allocator with pageblock
//! migratetypes, two zones, watermarks and per-CPU lists.
//!
//! The layers, lowest first, are the modules: [`sync`] (atomics: `core` or
//! loom), [`platform`] (host hooks), [`memmap`] (descriptors), [`folio`]
//! (types, refcounts, handles, protocols P1–P3), [`buddy`] (the allocator). A
//! module uses only those before it. docs/PROTOCOLS.md lists every protocol
//! step and the code that implements it.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod buddy;
pub mod folio;
pub mod memmap;
pub mod platform;
pub mod sync;

#[cfg(test)]
mod testutil;

pub use buddy::{AllocError, FolioRef, FrozenFolio, Gfp, Migratetype, Node, NodeConfig, ZoneId};
pub use folio::{GetError, Order, PageType};
pub use memmap::{MemoryLayout, Pfn, PhysAddr, PhysRange, PAGE_SIZE};
pub use platform::{CpuId, Platform};
