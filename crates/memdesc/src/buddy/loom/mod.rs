//! Loom models of the allocator: publication of new folios (P3), the zone
//! lock and its free lists (L.4–L.6), fallback and pageblock claims, the
//! per-CPU lists and their drains, and the bad-page log.
//!
//! Every model runs two CPUs (`MAX_CPUS` is 2 under the model) over a node
//! of a few frames, audits the allocator after every execution, and has its
//! holders write the frames they own through loom-tracked cells ([`Frames`]),
//! so a hand-off between owners that lacks its Release/Acquire edge is a
//! data race loom reports, not a silent pass.

mod alloc;
mod badpage;
mod hotadd;
mod pcp;
mod zone;

use super::{Node, NodeConfig, PcpConfig};
use crate::folio::Order;
use crate::memmap::Pfn;
use crate::platform::{CpuId, LocalCpu, Platform, WaitKey};
use core::cell::Cell;
use loom::cell::UnsafeCell;
use loom::thread;
use std::sync::Arc;
use std::vec::Vec;

/// Frames of RAM in most models' nodes (the first two hold the memory map).
const FRAMES: u64 = 24;

/// The largest node a model boots ([`Frames`] has a cell for each frame).
const MAX_FRAMES: u64 = 64;

loom::thread_local! {
    static CPU: Cell<u32> = Cell::new(0);
}

/// What [`set_cpu`] stores for a thread that is not a CPU.
const NO_CPU: u32 = u32::MAX;

/// Says which CPU the running loom thread is ([`NO_CPU`]: none, so its
/// allocations take the fallback path, PCP.10).
fn set_cpu(cpu: u32) {
    CPU.with(|c| c.set(cpu));
}

/// Two CPUs; each loom thread says which it is, and is the only thread
/// running as it (`local_enter`'s contract). The allocator only spins (zone
/// and bad-page locks), so `wait` never needs to block here.
struct TwoCpus;

impl Platform for TwoCpus {
    fn current_cpu(&self) -> CpuId {
        // A thread with no CPU counts its events on CPU 0's counters (lost
        // updates at worst: they are atomic words).
        CpuId(CPU.with(Cell::get).min(1))
    }
    fn local_enter(&self) -> Option<LocalCpu> {
        let cpu = Some(CPU.with(Cell::get)).filter(|&cpu| cpu != NO_CPU)?;
        // SAFETY: a model gives each CPU one thread, which says so with
        // set_cpu for its whole life, so two threads never share a CPU's
        // per-CPU state (loom would report the race on the lists if they did).
        Some(unsafe { LocalCpu::new_unchecked(CpuId(cpu)) })
    }
    fn nr_cpus(&self) -> u32 {
        2
    }
    fn wait(&self, _: WaitKey, _: &dyn Fn() -> bool) {
        thread::yield_now();
    }
    fn wake_all(&self, _: WaitKey) {}
}

static PLATFORM: TwoCpus = TwoCpus;

/// A small node config: no movable zone, no watermark, per-CPU lists of
/// `batch` frames given back past `high`.
fn config(pcp: bool, batch: u32, high: u32) -> NodeConfig {
    NodeConfig { movable_percent: 0, pcp: PcpConfig { enabled: pcp, batch, high }, min_free_frames: Some(0) }
}

/// Boots a node of [`FRAMES`] frames on the two-CPU platform and runs `f`.
fn with_node(config: NodeConfig, f: impl FnOnce(&Node<'_>)) {
    crate::testutil::with_node(FRAMES, &[], config, &PLATFORM, f);
}

/// Boots a node of `frames` frames on the two-CPU platform and runs `f`.
fn with_node_of(frames: u64, config: NodeConfig, f: impl FnOnce(&Node<'_>)) {
    assert!(frames <= MAX_FRAMES);
    crate::testutil::with_node(frames, &[], config, &PLATFORM, f);
}

/// Frame contents as loom sees them: one cell per frame of the node.
///
/// The real contents are [`crate::sync::FrameWord`]s, which the model does
/// not track. A holder writes the cells of the frames it owns; the next
/// owner of a frame writes them again, so the two writes race unless the
/// allocator's hand-off (free, lists, locks, publication) orders them.
struct Frames(Vec<UnsafeCell<u64>>);

// SAFETY: frames are shared between CPUs like the memory they stand for;
// every access goes through `Frames::write`, whose claim of ownership is
// exactly what loom checks (an unordered pair of accesses is reported).
unsafe impl Sync for Frames {}

impl Frames {
    fn new() -> Arc<Self> {
        Arc::new(Self((0..MAX_FRAMES).map(|_| UnsafeCell::new(0)).collect()))
    }

    /// Writes `value` into every frame of the block of `order` at `pfn`,
    /// which the caller owns (allocated, not yet freed).
    fn write(&self, pfn: Pfn, order: Order, value: u64) {
        for cell in &self.0[pfn.0 as usize..(pfn.0 + order.nr_pages()) as usize] {
            // SAFETY: the caller owns the frame; the claim is what loom
            // checks (a racing write from a previous or next owner is
            // reported as a causality violation).
            cell.with_mut(|word| unsafe { *word = value });
        }
    }
}

/// Runs `other` on CPU 1 in a new loom thread while `this` runs on CPU 0 in
/// the current one, then joins.
fn on_two_cpus(
    node: &Node<'_>,
    other: impl FnOnce(&'static Node<'static>) + Send + 'static,
    this: impl FnOnce(&Node<'_>),
) {
    let addr = node as *const Node<'_> as usize;
    let handle = thread::spawn(move || {
        set_cpu(1);
        // SAFETY: the node lives until the model's `with_node` returns,
        // which is after the join below.
        other(unsafe { &*(addr as *const Node<'static>) });
    });
    set_cpu(0);
    this(node);
    handle.join().unwrap();
}

/// Asserts that the allocator's descriptors and lists are consistent and
/// returns the audit.
fn audit_clean(node: &Node<'_>) -> super::report::Audit {
    let audit = node.audit();
    assert_eq!(audit.violations, 0, "allocator invariants violated: {:?}", audit.first_violation);
    audit
}
