//! The scanner: a CPU that walks random runs of pfns taking speculative
//! references (P1), as compaction's migrate scanner and other pfn walkers
//! will, and validates every folio it gets.
//!
//! Its walks run inside RCU read sections (it stands for the lockless
//! walkers), and it reports quiescent states between them.
//!
//! It runs on its own CPU because dropping its reference can be the last
//! put, which frees the folio into the running CPU's per-CPU lists. What it
//! checks: the folio contains the pfn, its head is aligned to its order,
//! the order is at most [`MAX_ORDER`], the refcount is counted, the type is
//! an allocated owner type and never slab or page table (allocated frozen:
//! P3 says no getter can count them), and a non-head frame is a tail.
//!
//! Every get is also the isolate step compaction will run (speculative get,
//! then the type): a refused get is classified by the folio's type tag,
//! read without a reference (the tag is atomic), so the scanner counts the
//! slab frames it met; a reference to one is a violation. With slab CPUs
//! running, some runs start at an object they published (read inside the
//! run's read section): that frame must be met as a slab.

use crate::rng::Rng;
use crate::violations::Violations;
use crate::workload::slab::reader::{folio_type, pfn_of};
use crate::workload::slab::Slots;
use memdesc::folio::{PageFlags, MAX_ORDER, REF_MAX};
use memdesc::{CpuId, FolioRef, GetError, Node, PageType, Pfn, Rcu};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// The longest run of consecutive pfns walked from one random start.
const MAX_RUN: u64 = 64;
/// Chance per run, per mille, that it starts past the end of the map.
const OUT_OF_RANGE_PER_MILLE: u64 = 5;
// Chances per successful get, per mille.
const LOCK_PER_MILLE: u64 = 20;
const CLONE_PER_MILLE: u64 = 20;
/// Chance per run, per mille, that it starts at a published slab object.
const SLAB_START_PER_MILLE: u64 = 100;

/// Why speculative gets failed, by [`GetError`] variant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GetOutcomes {
    /// The frame was free.
    pub free: u64,
    /// The folio was frozen (allocated frozen, or being split).
    pub frozen: u64,
    /// The frame changed folio during the get (the head recheck, P1.4).
    pub moved: u64,
    /// The frame is not managed (hole, reserved, metadata).
    pub unmanaged: u64,
    /// The pfn has no descriptor.
    pub out_of_range: u64,
    /// The source recheck failed (never, for a plain pfn walk).
    pub source_changed: u64,
    /// The refcount was in the overflow band.
    pub overflow: u64,
}

/// What the scanner did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScannerStats {
    /// Speculative gets tried.
    pub attempts: u64,
    /// Gets that returned a reference.
    pub successes: u64,
    /// Gets that did not, by reason.
    pub failures: GetOutcomes,
    /// Folio locks taken on folios it got.
    pub locks: u64,
    /// References cloned from ones it got.
    pub clones: u64,
    /// Refused gets whose frame's type tag said slab (a slab or a large
    /// kmalloc): the isolate check met a slab frame and left it alone.
    pub slab_frames_met: u64,
    /// Refused gets whose frame's type tag said page table.
    pub table_frames_met: u64,
    /// References obtained to a slab frame. Must be 0 (P3, P7).
    pub slab_references: u64,
    /// Runs started at an object the slab CPUs published.
    pub slab_starts: u64,
}

/// The scanner CPU's state.
pub(crate) struct Scanner<'n> {
    node: &'n Node<'n>,
    /// The slab CPUs' published objects and the host address of physical
    /// address 0, when slab CPUs run.
    slab: Option<(&'n Slots, usize)>,
    rcu: &'n Rcu<'n>,
    cpu: CpuId,
    rng: Rng,
    stats: ScannerStats,
    violations: Violations,
}

impl<'n> Scanner<'n> {
    /// A scanner running as `cpu` (the calling thread must be bound to it),
    /// drawing pfns from the stream of `seed` numbered by its CPU.
    /// With `slab`, some runs start at objects the slab CPUs published.
    pub(crate) fn new(
        node: &'n Node<'n>,
        rcu: &'n Rcu<'n>,
        cpu: CpuId,
        seed: u64,
        slab: Option<(&'n Slots, usize)>,
    ) -> Self {
        let rng = Rng::stream(seed, u64::from(cpu.0));
        Self { node, slab, rcu, cpu, rng, stats: ScannerStats::default(), violations: Violations::default() }
    }

    /// Scans until the deadline has passed (or `interrupt` is set) and no
    /// workload CPU is running. Each run of gets is one RCU read section,
    /// as a lockless walker's would be; a quiescent state is reported
    /// between runs, and the CPU goes idle at the end.
    pub(crate) fn run(
        mut self,
        deadline: Instant,
        interrupt: &AtomicBool,
        running: &AtomicUsize,
    ) -> (ScannerStats, Violations) {
        // Relaxed (both): stop flags; the threads' joins order everything
        // that matters.
        let stopping = || Instant::now() >= deadline || interrupt.load(Ordering::Relaxed);
        while !stopping() || running.load(Ordering::Relaxed) > 0 {
            for _ in 0..16 {
                let section = self.rcu.read_lock();
                self.walk_run();
                drop(section);
                self.rcu.quiescent(self.cpu);
            }
        }
        self.rcu.idle_enter(self.cpu);
        (self.stats, self.violations)
    }
    /// Walks up to [`MAX_RUN`] consecutive pfns from a random start.
    fn walk_run(&mut self) {
        let map = self.node.memmap();
        let (base, end) = (map.base_pfn().0, map.end_pfn().0);
        let start = if self.rng.per_mille(OUT_OF_RANGE_PER_MILLE) {
            end + self.rng.below(MAX_RUN)
        } else {
            base + self.rng.below(end - base)
        };
        let len = 1 + self.rng.below(MAX_RUN);
        if let Some(pfn) = self.published_slab() {
            self.stats.slab_starts += 1;
            let met = self.stats.slab_frames_met;
            self.isolate(pfn);
            if self.stats.slab_frames_met == met {
                self.violations
                    .record(|| format!("scanner: pfn {pfn} of a published slab object was not met as a slab frame"));
            }
        }
        for pfn in (start..start + len).map(Pfn) {
            self.isolate(pfn);
        }
    }

    /// The pfn of an object a slab CPU published, sometimes (read inside
    /// the caller's read section: its slab stays a slab until it ends).
    fn published_slab(&mut self) -> Option<Pfn> {
        let (slots, base) = self.slab?;
        if !self.rng.per_mille(SLAB_START_PER_MILLE) {
            return None;
        }
        let seen = slots.read(self.rng.below(slots.len() as u64) as usize)?;
        Some(pfn_of(base, seen.addr))
    }

    /// The isolate step on `pfn`: a speculative get, then the type.
    fn isolate(&mut self, pfn: Pfn) {
        self.stats.attempts += 1;
        match self.node.try_get(pfn) {
            Ok(folio) => {
                self.stats.successes += 1;
                if matches!(folio.page_type(), PageType::Slab { .. }) {
                    self.stats.slab_references += 1;
                }
                self.validate(pfn, &folio);
                self.exercise(&folio);
                // Dropping may be the last put: the folio is freed on
                // this CPU.
                drop(folio);
            }
            Err(e) => {
                if e == GetError::Frozen {
                    match folio_type(self.node, pfn) {
                        Some(PageType::Slab { .. }) => self.stats.slab_frames_met += 1,
                        Some(PageType::PageTable) => self.stats.table_frames_met += 1,
                        _ => {}
                    }
                }
                self.count_failure(e);
            }
        }
    }

    fn count_failure(&mut self, e: GetError) {
        let f = &mut self.stats.failures;
        *match e {
            GetError::Free => &mut f.free,
            GetError::Frozen => &mut f.frozen,
            GetError::Moved => &mut f.moved,
            GetError::Unmanaged(_) => &mut f.unmanaged,
            GetError::OutOfRange => &mut f.out_of_range,
            GetError::SourceChanged => &mut f.source_changed,
            GetError::Overflow => &mut f.overflow,
        } += 1;
    }

    /// Checks what the reference guarantees: with it held the folio cannot
    /// be freed, split or retyped, so these reads are stable.
    fn validate(&mut self, pfn: Pfn, folio: &FolioRef<'n>) {
        let (head, order, ty, refcount) = (folio.pfn(), folio.order(), folio.page_type(), folio.ref_count());
        let what = || format!("scanner: get of {pfn} gave folio {head} (order {order}, {ty}, refcount {refcount})");
        let v = &mut self.violations;
        if !folio.contains(pfn) {
            v.record(|| format!("{}: does not contain the pfn", what()));
        }
        if order.get() > MAX_ORDER || !head.is_aligned(order.get()) {
            v.record(|| format!("{}: head not aligned to its order", what()));
        }
        if !(1..=REF_MAX).contains(&refcount) {
            v.record(|| format!("{}: refcount not counted", what()));
        }
        if !ty.is_owner_type() {
            v.record(|| format!("{}: not an allocated type", what()));
        }
        if ty.is_always_frozen() {
            v.record(|| format!("{}: always-frozen type counted (P3)", what()));
        }
        if pfn != head {
            let actual = self.node.memmap().page(pfn).map(|p| p.page_type());
            if actual != Some(PageType::Tail) {
                v.record(|| format!("{}: the pfn's frame is {actual:?}, not a tail", what()));
            }
        }
    }

    /// Sometimes takes the folio lock or clones the reference, as isolation
    /// for migration would (P8: get, then trylock).
    fn exercise(&mut self, folio: &FolioRef<'n>) {
        if self.rng.per_mille(LOCK_PER_MILLE) {
            if let Some(locked) = folio.try_lock() {
                if !locked.folio().head().flags().contains(PageFlags::LOCKED) {
                    let pfn = folio.pfn();
                    self.violations.record(|| format!("scanner: folio {pfn} locked without its lock bit"));
                }
                self.stats.locks += 1;
            }
        }
        if self.rng.per_mille(CLONE_PER_MILLE) {
            let copy = folio.clone();
            self.stats.clones += 1;
            drop(copy);
        }
    }
}
