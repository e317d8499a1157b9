//! The memdesc simulator: a machine whose physical memory is an anonymous
//! mapping and whose CPUs are threads.
//!
//! # The problem
//! The core crate's protocols are model-checked on a few frames; the
//! simulator shows they hold at scale, under real contention, with every byte
//! accounted for.
//!
//! # The mechanism
//! [`run`] maps an [`Arena`] as the machine's physical memory (with holes and
//! a reserved kernel image), boots a [`memdesc::Node`] over it with a
//! [`SimPlatform`] whose CPUs are threads, runs a workload on every CPU while
//! a scanner thread takes speculative references to random frames, then
//! frees everything, drops every address space, audits every descriptor
//! and returns a [`Report`].
//! [`run_interruptible`] also stops the workload early when a flag is set
//! (the CLI sets it on Ctrl-C), and still tears down and audits in full.
//!
//! # Main types
//! [`SimConfig`] says what to run; [`Progress`] is handed to the caller while
//! it runs; [`Report`] is what it found (serialisable, and printable in
//! Linux's vocabulary through its `Display`).
//!
//! # Workloads
//! [`Workload::Mixed`]: allocator CPUs allocate and free folios of mixed
//! orders, counted and frozen, stamping every frame they own and checking
//! the stamps before freeing (see `workload::mixed`); processes, pinners
//! and a splitter run the page-table, GUP and THP layers beside them (see
//! `workload::mm`), and slab CPUs churn objects of several slab caches and
//! kmalloc, stamped and checked, freed locally, remotely and after a grace
//! period, while lockless readers revalidate objects of a TYPESAFE_BY_RCU
//! cache (see `workload::slab`). [`Workload::Gup`]: the page-table layers
//! alone; [`Workload::Slab`]: the slab layer alone.
//!
//! # Race replay
//! With the `race` feature (on by default), [`race`] replays seed 000's
//! races step by step on the real code, through the core's failpoints.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arena;
mod config;
mod error;
mod machine;
#[cfg(feature = "race")]
pub mod race;
pub mod report;
mod rng;
mod scanner;
mod violations;
mod workload;

pub use arena::Arena;
pub use config::{Layout, SimConfig, Workload, MAX_WORKLOAD_CPUS, MIN_RAM_BYTES};
pub use error::SimError;
pub use machine::{run, run_interruptible, Phase, Progress};
/// The simulated CPUs' platform hooks: memdesc-host's, whose CPUs are
/// threads bound to slots (each CPU thread keeps the [`memdesc_host::SlotBinding`]
/// of [`SimPlatform::bind_current_thread`] for its life; the machine's own
/// thread has no CPU).
pub type SimPlatform = memdesc_host::HostPlatform;
pub use report::{RcuSummary, Report};
pub use scanner::{IsolateStats, ScannerStats};
pub use workload::mm::MmStats;
pub use workload::slab::SlabStats;
pub use workload::WorkloadStats;
