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
//! After each run it runs the isolate step compaction will use over the
//! same pfns ([`memdesc::migrate::scan_isolate`]: speculative get, type
//! tag, trylock, the movable ops): a refusal at the get is classified by
//! the folio's type tag, read without a reference, so the scanner counts
//! the slab frames it met; the mixed CPUs' folios typed
//! `Movable { ops: MOVABLE_OPS }` are isolated and put back through
//! [`CountingOps`], which counts any call on a page not its own (a slab
//! frame: seed 004's crash). A reference to a slab frame, in the walk or
//! the isolate step, is a violation. With slab CPUs running, some runs
//! start at an object they published (read inside the run's read section):
//! that frame must be met as a slab.

use crate::rng::Rng;
use crate::violations::Violations;
use crate::workload::slab::reader::pfn_of;
use crate::workload::slab::Slots;
use memdesc::folio::{PageFlags, MAX_ORDER, REF_MAX};
use memdesc::migrate::{scan_isolate, CountingOps, IsolatedPage, MovableOpsRegistry, ScanStats};
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
/// The movable-ops id of the mixed CPUs' movable folios, registered with
/// the scanner's [`CountingOps`].
pub(crate) const MOVABLE_OPS: u16 = 0;

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
    /// What the isolate step met.
    pub isolate: IsolateStats,
    /// Slab frames the isolate step met and left alone (refused at its
    /// get, classified by the type tag: a slab or a large kmalloc).
    pub slab_frames_met: u64,
    /// References obtained to a slab frame, by the walk or the isolate
    /// step. Must be 0 (P3, P7).
    pub slab_references: u64,
    /// Runs started at an object the slab CPUs published.
    pub slab_starts: u64,
}

/// The isolate step's outcomes ([`ScanStats`]) and its movable ops' counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IsolateStats {
    /// Pfns tried.
    pub scanned: u64,
    /// Free frames.
    pub free: u64,
    /// Frozen slab frames (refused at the get, never referenced).
    pub frozen_slab: u64,
    /// Frozen page-table frames.
    pub frozen_page_table: u64,
    /// Other frozen folios (being split, or plain frozen kernel memory).
    pub frozen_other: u64,
    /// Unmanaged frames, or gets that raced a split or free.
    pub other: u64,
    /// Counted but not movable.
    pub not_movable: u64,
    /// Isolated (and put back at once).
    pub isolated: u64,
    /// Locked, isolated already, or refused by the ops.
    pub busy: u64,
    /// Putbacks the movable ops counted.
    pub put_back: u64,
    /// Calls of the movable ops on a page not theirs. Must be 0.
    pub ops_misuses: u64,
    /// Of them, on a slab frame (seed 004's crash). Must be 0.
    pub ops_slab_misuses: u64,
}

impl IsolateStats {
    fn add(&mut self, s: &ScanStats) {
        self.scanned += s.scanned;
        self.free += s.free;
        self.frozen_slab += s.frozen_slab;
        self.frozen_page_table += s.frozen_page_table;
        self.frozen_other += s.frozen_other;
        self.other += s.other;
        self.not_movable += s.not_movable;
        self.isolated += s.isolated;
        self.busy += s.busy;
    }
}

/// The scanner CPU's state.
pub(crate) struct Scanner<'n> {
    node: &'n Node<'n>,
    ops: &'n CountingOps,
    registry: MovableOpsRegistry<'n>,
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
    /// Its isolate step calls `ops` for folios typed
    /// `Movable { ops: MOVABLE_OPS }`. With `slab`, some runs start at
    /// objects the slab CPUs published.
    pub(crate) fn new(
        node: &'n Node<'n>,
        rcu: &'n Rcu<'n>,
        cpu: CpuId,
        seed: u64,
        ops: &'n CountingOps,
        slab: Option<(&'n Slots, usize)>,
    ) -> Self {
        let rng = Rng::stream(seed, u64::from(cpu.0));
        let mut registry = MovableOpsRegistry::new();
        // The only registration, into an empty registry: cannot fail.
        let _ = registry.register(MOVABLE_OPS, ops);
        let (stats, violations) = (ScannerStats::default(), Violations::default());
        Self { node, ops, registry, slab, rcu, cpu, rng, stats, violations }
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
                // A last put of ours frees onto this CPU's page lists.
                self.node.answer_drain();
            }
        }
        self.rcu.idle_enter(self.cpu);
        let i = &mut self.stats.isolate;
        (i.put_back, i.ops_misuses, i.ops_slab_misuses) =
            (self.ops.put_back(), self.ops.misuses(), self.ops.slab_misuses());
        (self.stats, self.violations)
    }
    /// Walks up to [`MAX_RUN`] consecutive pfns from a random start.
    fn walk_run(&mut self) {
        let map = self.node.memmap();
        // With hot-added sections, the whole hot-pluggable span: absent
        // sections must look out of range (HOTADD.6).
        let (hot_start, hot_end) = map.hot_span();
        let end = if hot_end > hot_start { hot_end } else { map.end_pfn() };
        let (base, end) = (map.base_pfn().0, end.0);
        let start = if self.rng.per_mille(OUT_OF_RANGE_PER_MILLE) {
            end + self.rng.below(MAX_RUN)
        } else {
            base + self.rng.below(end - base)
        };
        let len = 1 + self.rng.below(MAX_RUN);
        if let Some(pfn) = self.published_slab() {
            self.stats.slab_starts += 1;
            if self.isolate(pfn..pfn.add(1)).frozen_slab != 1 {
                self.violations
                    .record(|| format!("scanner: pfn {pfn} of a published slab object was not met as a slab frame"));
            }
        }
        for pfn in (start..start + len).map(Pfn) {
            self.stats.attempts += 1;
            match self.node.try_get(pfn) {
                Ok(folio) => {
                    self.stats.successes += 1;
                    self.validate(pfn, &folio);
                    self.exercise(&folio);
                    // Dropping may be the last put: the folio is freed on
                    // this CPU.
                    drop(folio);
                }
                Err(e) => self.count_failure(e),
            }
        }
        self.isolate(Pfn(start)..Pfn(start + len));
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

    /// The isolate step over `range`: every page isolated is checked and
    /// put back at once (dropped).
    fn isolate(&mut self, range: std::ops::Range<Pfn>) -> ScanStats {
        let mut slab_refs = 0;
        let stats = scan_isolate(self.node, &self.registry, range, |page: IsolatedPage<'_, '_>| {
            if matches!(page.folio().page_type(), PageType::Slab { .. }) {
                slab_refs += 1;
            }
        });
        self.stats.isolate.add(&stats);
        self.stats.slab_frames_met += stats.frozen_slab;
        self.stats.slab_references += slab_refs;
        stats
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
        if matches!(ty, PageType::Slab { .. }) {
            self.stats.slab_references += 1;
        }
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
