//! memdesc as a process allocator: the engine behind the `GlobalAlloc`
//! adapter ([`MemdescAlloc`]) and the C `malloc` ABI of `memdesc-malloc`.
//!
//! # The problem
//! The core crate manages "physical memory" handed to it as a byte slice and
//! never allocates. A process allocator needs the opposite view: memory that
//! grows with demand, threads that come and go, `fork`, and pointers from a
//! program that may misuse them.
//!
//! # The mechanism
//! - **Span** (`span`): one large virtual range is reserved once
//!   (`mmap(PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE)`,
//!   lazily backed, so untouched frames cost nothing) and a [`memdesc::Node`]
//!   boots over it with a first present section; the descriptors, the node
//!   and the slab allocator's own state live in that memory.
//! - **Size classes** (`classes`): 16-byte granules up to 128 bytes, then
//!   four classes per power of two up to 16 KiB, each a slab cache; larger
//!   requests are buddy folios (large kmalloc), and above the largest folio
//!   a direct `mmap` kept in a table (`large`).
//! - **Per-thread CPU slots** (`platform`, over `memdesc-host`'s
//!   `HostPlatform`): a thread claims one of the node's CPU slots on its
//!   first allocation and keeps it until it exits,
//!   so the slab's per-CPU sheaves serve it with no locked instruction;
//!   when every slot is taken it uses the locked slow path.
//! - **Entry** (`thread`): every call enters through a guard that makes
//!   re-entrant calls (the allocator's own initialisation calling libc,
//!   a panic message) use a static bootstrap arena, and that lets `fork`
//!   wait until no thread is inside the allocator.
//! - **Misuse** (`report`): every pointer given back is checked through its
//!   descriptor; a foreign, interior or already-free pointer is reported on
//!   stderr (without allocating) and the process aborts.
//!
//! The engine's state lives in statics and in the span: initialising it
//! allocates nothing through `malloc`, because inside the `LD_PRELOAD`
//! library `malloc` is this engine.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
#![warn(missing_docs)]

mod api;
mod bootstrap;
mod classes;
mod engine;
mod gate;
mod global;
mod large;
mod platform;
mod report;
mod span;
mod stats;
mod thread;

pub use api::{alloc, alloc_zeroed, free, realloc, usable_size, Stats};
pub use global::MemdescAlloc;
pub use stats::{print_summary, snapshot};

/// Whether the calling thread runs on a CPU slot of its own (the per-CPU
/// fast paths) rather than the locked slow path: `false` before its first
/// allocation, when every slot was taken, and after its exit hook ran.
pub fn thread_has_cpu_slot() -> bool {
    matches!(platform::binding(), platform::Binding::Slot(_))
}

/// How many CPU slots the engine runs with (at least four per CPU the
/// process may run on, from 8 up to the core's `MAX_CPUS`; fixed at
/// initialisation).
pub fn cpu_slots() -> u32 {
    platform::platform().slots().nr_cpus()
}
