//! User-space hosts for memdesc: the one place a program's threads become
//! the core's CPUs, soundly.
//!
//! The core's per-CPU fast paths (the slab's sheaves, the order-0 pcp
//! lists, RCU's per-CPU reader counters) touch a CPU's state without a
//! lock, on the proof that no other thread runs as that CPU meanwhile: a
//! [`memdesc::platform::LocalCpu`] or [`memdesc::platform::RcuReaderCpu`]
//! token, which only `unsafe` code can make. A kernel has that proof for
//! free (disabled preemption); a user-space host has to build it:
//!
//! - [`CpuSlots`]: `nr` CPU slots, each claimed by at most one thread at a
//!   time with one compare-and-swap ([`CpuSlots::bind`] for an explicit CPU,
//!   [`CpuSlots::claim_any`] for the first free one), held until the
//!   [`SlotBinding`] guard drops or [`CpuSlots::release_current`] (for a
//!   thread-exit hook that has no guard). The thread's binding lives in a
//!   const-initialised thread-local without a destructor, so the fast-path
//!   lookup is a thread-local read that never allocates: safe inside a
//!   `malloc`.
//! - [`HostPlatform`]: [`memdesc::Platform`] over `CpuSlots`, whose
//!   `local_enter` and `rcu_reader_cpu` make tokens only for the bound
//!   thread, with hashed futex-backed wait queues for the folio lock.
//!
//! The simulator, the race replay and the benchmarks run on it, as do the
//! allocator adapters.
#![deny(unsafe_op_in_unsafe_fn)]

mod platform;
mod slots;

pub use platform::HostPlatform;
pub use slots::{CpuSlots, SlotBinding, SlotError, MAX_SETS_PER_THREAD};
