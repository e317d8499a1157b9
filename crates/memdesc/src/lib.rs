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
//! # Example
//! Boot a node over 8 MiB of "physical memory" (here a page-aligned heap
//! buffer; a kernel passes its direct map), allocate, and take a speculative
//! reference the way a pfn scanner would.
//!
//! ```
//! use memdesc::{Gfp, MemoryLayout, Node, NodeConfig, Order, PageType, PhysAddr, PhysRange, SpinPlatform, PAGE_SIZE};
//!
//! #[repr(C, align(4096))]
//! struct Frame([u8; PAGE_SIZE]);
//! let mut frames: Vec<Frame> = (0..2048).map(|_| Frame([0; PAGE_SIZE])).collect();
//! // SAFETY: the frames are one live, exclusively borrowed allocation of
//! // 2048 * PAGE_SIZE bytes, viewed as bytes for as long as `frames` lives.
//! let memory = unsafe { std::slice::from_raw_parts_mut(frames.as_mut_ptr().cast::<u8>(), 2048 * PAGE_SIZE) };
//!
//! // RAM from 0 to 8 MiB, with the first 64 KiB reserved for "firmware".
//! let ram = [PhysRange::new(0, 8 << 20)];
//! let reserved = [PhysRange::new(0, 64 << 10)];
//! let layout = MemoryLayout { ram: &ram, reserved: &reserved };
//! let node = Node::boot(memory, PhysAddr(0), &layout, NodeConfig::default(), &SpinPlatform)
//!     .map_err(memdesc::BootFailed::into_error)?;
//!
//! let folio = node.alloc(Order::TWO, Gfp::USER.zeroed())?;
//! assert_eq!(folio.page_type(), PageType::Anon);
//! // A lockless walker reaching a tail frame counts the whole folio (P1).
//! let seen = node.try_get(folio.pfn().add(3))?;
//! assert_eq!(seen.pfn(), folio.pfn());
//! drop((seen, folio));
//! assert_eq!(node.audit().allocated, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A longer tour (a buffer with a hole and a firmware range, a refused
//! layout retried, byte access by ownership level, freeze, split, lock, and
//! the buddyinfo/vmstat/audit views) is the runnable example
//! `crates/memdesc/examples/tour.rs` (`cargo run -p memdesc --example tour`).
//!
//! # Frame contents by ownership level
//! An exclusive owner ([`FrozenFolio`]) gets plain bytes
//! ([`folio::FrozenFolio::bytes_mut`]) and memcpy-speed copies; shared
//! holders ([`FolioRef`]) get [`FrameReader`] / [`FrameWriter`] cursors of
//! atomic words, which stay defined while other holders write.
//!
//! The layers, lowest first, are the modules: [`sync`] (atomics: `core` or
//! loom), [`platform`] (host hooks), [`memmap`] (descriptors), [`folio`]
//! (types, refcounts, handles, protocols P1–P3), [`buddy`] (the allocator),
//! [`rcu`] (read sections, grace periods, deferred callbacks), then
//! [`pgtable`], [`gup`], [`thp`] and [`migrate`] (the isolate step a pfn
//! scanner runs). A module uses only those before it. docs/PROTOCOLS.md lists every protocol
//! step and the code that implements it.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
#![warn(missing_docs)]

// Tests use std; so does the model checker (loom, and the pgtable layer's
// shadow of table entries under it), and the counting atomics' thread-local
// (`--cfg memdesc_count_rmw`).
#[cfg(any(test, memdesc_loom, memdesc_count_rmw))]
extern crate std;

pub mod buddy;
pub mod folio;
pub mod gup;
pub mod memmap;
pub mod migrate;
pub mod pgtable;
pub mod platform;
pub mod rcu;
pub mod slab;
pub mod sync;
pub mod thp;

#[cfg(all(test, feature = "failpoints", not(memdesc_loom)))]
mod failpoint_tests;
#[cfg(all(test, not(memdesc_loom)))]
mod mt_tests;
#[cfg(test)]
mod testutil;

// The crate root is the one place an embedder imports from: everything a
// host needs to boot a node, allocate, hold, freeze, split and lock folios,
// read their contents and reports, and handle every error. The aliases bind
// the generic handles of `folio` to `Node`; their pages link to the
// generic types' methods.
pub use buddy::report::{Audit, Violation, VmStat, ZoneInfo};
pub use buddy::{
    AllocError, BadPageReport, BootError, FolioRef, FolioRefs, FreezeError, FrozenFolio, Gfp, HotAdded, LockedFolio,
    Migratetype, Node, NodeConfig, PcpConfig, PinError, PinnedFolio, SplitError, SplitFolios, UnfreezeError,
    UnfreezeSplitError, VmEvent, Watermarks, ZoneId, BAD_PAGE_LOG, MAX_CPUS,
};
pub use folio::{
    BadPageReason, CopyError, FreezeFailed, GetError, Order, OrderTooLarge, PageFlags, PageType, PinFailed, RawError,
    RefOverflow, SplitFailed, UnfreezeFailed, UnfreezeRefusal, GUP_PIN_COUNTING_BIAS, MAX_ORDER, REF_MAX,
};
pub use gup::{get_user_pages, get_user_pages_fast, GupError, GupFlags, GupRun};
pub use memmap::{
    BootFailed, FrameReader, FrameWriter, HotAddError, MemMapError, MemoryLayout, Pfn, PhysAddr, PhysRange,
    DEFAULT_SECTION_ORDER, PAGEBLOCK_ORDER, PAGE_SIZE,
};
pub use migrate::{
    isolate_movable_page, scan_isolate, CountingOps, IsolateError, IsolatedPage, MovableOps, MovableOpsRegistry,
    ScanStats,
};
pub use pgtable::{
    AddressSpace, AsAudit, Fault, MmError, MmEvent, Mmu, TableFreer, TableReturn, Vma, HUGE_SIZE, USER_END, USER_START,
};
pub use platform::{CpuId, LocalCpu, Platform, RcuReaderCpu, SpinPlatform, WaitKey};
pub use rcu::{FrameCallback, FrameReturn, Rcu, RcuCallback, RcuConfig, RcuError, RcuHead, RcuReadGuard, RcuReport};
pub use thp::{split_deferred, split_folio, DeferredOutcome, SplitDone, SplitMode, ThpSplitError};
