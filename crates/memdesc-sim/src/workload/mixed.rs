//! The mixed workload: allocate and free folios of mixed orders with random
//! lifetimes, counted and frozen, stamping every frame owned and checking the
//! stamps before freeing.
//!
//! Each CPU keeps a set of live allocations around its share of
//! [`LIVE_TARGET_PERCENT`] of managed memory, so the per-CPU lists refill and
//! drain and the buddy lists split, merge and fall back between
//! migratetypes. A few times per run each CPU enters a *pressure phase*: it
//! only allocates, until an order-0 allocation fails (having drained every
//! CPU's lists first) or the phase times out; then it frees back down to its
//! target. Now and then it also freezes and splits a counted folio (P2),
//! takes its folio lock, or clones a reference.

use super::live::{Handle, Live};
use super::{stamp, WorkerContext, WorkerResult, WorkloadStats};
use crate::rng::Rng;
use crate::violations::Violations;
use memdesc::folio::{PageFlags, MAX_ORDER};
use memdesc::{AllocError, CpuId, FrozenFolio, Gfp, Order, PageType};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Share of managed memory, in percent, the workload CPUs keep allocated
/// together.
pub(crate) const LIVE_TARGET_PERCENT: u64 = 60;
/// Pressure phases each CPU runs, spread over the run.
const PRESSURE_PHASES: u32 = 3;
/// Operations between looks at the clock.
const BATCH: u32 = 64;

/// Order classes (inclusive ranges) and their weights: mostly single frames,
/// some small folios, a few large ones up to the maximum order.
const ORDER_CLASSES: [(u32, u32); 4] = [(0, 0), (1, 3), (4, 8), (9, MAX_ORDER)];
const ORDER_WEIGHTS: [u32; 4] = [70, 15, 10, 5];

// Chances per operation, per mille.
const SPLIT_PER_MILLE: u64 = 10;
const LOCK_PER_MILLE: u64 = 5;
const CLONE_PER_MILLE: u64 = 5;
// Chances per allocation, per mille.
const FROZEN_PER_MILLE: u64 = 200;
const ZEROED_PER_MILLE: u64 = 100;
/// How often a split goes straight to order 0 rather than to a random
/// smaller order.
const SPLIT_TO_ZERO_PER_MILLE: u64 = 750;

/// Runs the workload on the calling CPU until the deadline or the
/// interrupt, then frees everything it holds.
pub(crate) fn run(ctx: &WorkerContext<'_>) -> WorkerResult {
    let mut worker = Worker {
        ctx,
        rng: Rng::stream(ctx.seed, ctx.cpu as u64),
        live: Vec::new(),
        live_frames: 0,
        seq: 0,
        pressure_until: None,
        interrupted: false,
        stats: WorkloadStats::default(),
        violations: Violations::default(),
    };
    let mut panicked = worker.guarded(Worker::run_until_deadline);
    let timed_ops = worker.stats.ops();
    let timed = ctx.start.elapsed();
    if !panicked {
        panicked = worker.guarded(Worker::free_all);
    }
    // This CPU stops: no read section of it can delay a grace period.
    ctx.rcu.idle_enter(CpuId(ctx.cpu));
    if panicked {
        // The allocator may be corrupt: hand nothing more back to it. The
        // audit counts these frames as leaked.
        std::mem::forget(std::mem::take(&mut worker.live));
    }
    WorkerResult {
        stats: worker.stats,
        violations: worker.violations,
        timed_ops,
        timed,
        interrupted: worker.interrupted,
    }
}

/// The order `n` (which the classes keep in range).
fn order_of(n: u32) -> Order {
    Order::new(n).unwrap_or(Order::MAX)
}

struct Worker<'c, 'n> {
    ctx: &'c WorkerContext<'n>,
    rng: Rng,
    live: Vec<Live<'n>>,
    /// Frames in `live`.
    live_frames: u64,
    /// Allocations made, for stamp keys.
    seq: u64,
    /// The end of the current pressure phase, if one runs.
    pressure_until: Option<Instant>,
    /// Whether the interrupt stopped it before the deadline.
    interrupted: bool,
    stats: WorkloadStats,
    violations: Violations,
}

impl<'n> Worker<'_, 'n> {
    /// Runs `f`, catching a panic (a core bug: bad input gets typed errors)
    /// so that it is reported as a violation, and so that unwinding does not
    /// drop the live set into a possibly corrupt allocator (a second panic
    /// there would abort the process without a report). Returns whether `f`
    /// panicked.
    fn guarded(&mut self, f: impl FnOnce(&mut Self)) -> bool {
        let result = panic::catch_unwind(AssertUnwindSafe(|| f(self)));
        let Err(panic) = result else { return false };
        let cpu = self.ctx.cpu;
        self.violations.record(|| format!("cpu{cpu} panicked: {}", crate::machine::panic_message(&*panic)));
        true
    }

    fn run_until_deadline(&mut self) {
        let (starts, cap) = self.pressure_schedule();
        let mut next_phase = 0;
        loop {
            for _ in 0..BATCH {
                self.step();
            }
            // Relaxed: a progress statistic, read racily by the machine.
            self.ctx.ops.store(self.stats.ops(), Ordering::Relaxed);
            // Between operations: outside any read section (RCU.6); also
            // runs this CPU's callbacks whose grace period is over. A
            // pending drain of this CPU's page lists is answered too.
            self.ctx.rcu.quiescent(CpuId(self.ctx.cpu));
            self.ctx.node.answer_drain();
            let now = Instant::now();
            if now >= self.ctx.deadline {
                break;
            }
            // Relaxed: a stop flag; nothing is published through it.
            if self.ctx.interrupt.load(Ordering::Relaxed) {
                self.interrupted = true;
                break;
            }
            if self.pressure_until.is_some_and(|end| now >= end) {
                self.pressure_until = None;
            }
            if starts.get(next_phase).is_some_and(|&start| now >= start) {
                next_phase += 1;
                self.pressure_until = Some(now + cap);
                self.stats.pressure_phases += 1;
            }
        }
    }

    /// When this CPU's pressure phases start, and how long each may last:
    /// the run is cut into one slot per phase of every CPU (plus one), and
    /// CPUs take turns, so one CPU at a time pushes memory to its limit.
    fn pressure_schedule(&self) -> (Vec<Instant>, Duration) {
        let (cpu, cpus) = (self.ctx.cpu, self.ctx.nr_cpus);
        let slots = PRESSURE_PHASES * cpus + 1;
        let slot = self.ctx.deadline.saturating_duration_since(self.ctx.start) / slots;
        let starts = (0..PRESSURE_PHASES).map(|k| self.ctx.start + slot * (k * cpus + cpu + 1)).collect();
        (starts, slot / 2)
    }

    fn step(&mut self) {
        let r = self.rng.below(1000);
        if r < SPLIT_PER_MILLE {
            self.split_one();
        } else if r < SPLIT_PER_MILLE + LOCK_PER_MILLE {
            self.lock_one();
        } else if r < SPLIT_PER_MILLE + LOCK_PER_MILLE + CLONE_PER_MILLE {
            self.clone_one();
        } else if self.wants_alloc() {
            self.alloc_one();
        } else {
            self.free_one();
        }
    }

    /// Whether to allocate rather than free: keeps the live set around the
    /// target, or always under pressure.
    fn wants_alloc(&mut self) -> bool {
        if self.pressure_until.is_some() || self.live.is_empty() {
            return true;
        }
        let target = self.ctx.target_frames;
        if self.live_frames > target + target / 4 {
            return false;
        }
        self.rng.per_mille(if self.live_frames < target { 700 } else { 300 })
    }

    /// A random live allocation held by a counted reference, if the one
    /// picked is.
    fn pick_counted(&mut self) -> Option<usize> {
        if self.live.is_empty() {
            return None;
        }
        let i = self.rng.below(self.live.len() as u64) as usize;
        self.live[i].is_counted().then_some(i)
    }

    fn alloc_one(&mut self) {
        let (lo, hi) = ORDER_CLASSES[self.rng.weighted(&ORDER_WEIGHTS)];
        let mut order = self.rng.in_range(lo..=hi);
        let frozen = self.rng.per_mille(FROZEN_PER_MILLE);
        let (gfp, ty) = if frozen { self.frozen_request(&mut order) } else { self.counted_request() };
        let zeroed = self.rng.per_mille(ZEROED_PER_MILLE);
        let gfp = if zeroed { gfp.zeroed() } else { gfp };
        let order = order_of(order);
        let node = self.ctx.node;
        let result = if frozen {
            node.alloc_frozen(order, gfp).map(Handle::Frozen)
        } else {
            node.alloc(order, gfp).map(Handle::Counted)
        };
        let cpu = self.ctx.cpu;
        let handle = match result {
            Ok(handle) => handle,
            Err(AllocError::OutOfMemory { order: failed }) => {
                self.stats.alloc_failures += 1;
                if failed != order {
                    self.violations.record(|| format!("cpu{cpu}: order-{order} allocation failed for order {failed}"));
                }
                if order == Order::ZERO {
                    // Memory is exhausted down to single frames: the
                    // pressure phase has done its job.
                    self.pressure_until = None;
                }
                return;
            }
            Err(e) => {
                self.violations.record(|| format!("cpu{cpu}: order-{order} {ty} allocation refused: {e}"));
                return;
            }
        };
        let mut live = Live { handle, ty, order, key: stamp::key(self.ctx.seed, cpu, self.seq) };
        self.seq += 1;
        live.check_descriptor(node, cpu, &mut self.violations);
        if zeroed {
            if let Some(m) = stamp::first_nonzero(live.reader(), live.pfn()) {
                self.violations.record(|| {
                    format!("cpu{cpu}: zeroed folio {}: frame {} word {} is {:#x}", live.pfn(), m.pfn, m.word, m.found)
                });
            }
        }
        let (pfn, key) = (live.pfn(), live.key);
        stamp::write(live.writer(), pfn, key);
        self.count_alloc(order, frozen, ty, zeroed);
        self.live.push(live);
    }

    fn count_alloc(&mut self, order: Order, frozen: bool, ty: PageType, zeroed: bool) {
        let nr = order.nr_pages();
        let s = &mut self.stats;
        s.allocs += 1;
        s.allocs_by_order[order.get() as usize] += 1;
        s.frames_allocated += nr;
        s.frozen_allocs += frozen as u64;
        s.always_frozen_allocs += ty.is_always_frozen() as u64;
        s.zeroed_allocs += zeroed as u64;
        s.frames_zeroed += if zeroed { nr } else { 0 };
        self.live_frames += nr;
        s.peak_live_frames = s.peak_live_frames.max(self.live_frames);
    }

    /// A frozen request: a slab frame (order ≤ 3), a page table (order 0)
    /// or plain kernel memory. May lower `order`. The slab frames are typed
    /// as on no cache's lists (`SLAB_UNLISTED`): the machine's slab
    /// allocator owns the cache ids, and a frame claiming one of its caches
    /// would be misread by its descriptor lookups and audit.
    fn frozen_request(&mut self, order: &mut u32) -> (Gfp, PageType) {
        match self.rng.below(4) {
            0 | 1 => {
                *order = (*order).min(3);
                let ty = PageType::Slab { cache: memdesc::slab::SLAB_UNLISTED };
                let gfp = if self.rng.per_mille(300) { Gfp::RECLAIMABLE } else { Gfp::KERNEL };
                (gfp.typed(ty), ty)
            }
            2 => {
                *order = 0;
                (Gfp::KERNEL.typed(PageType::PageTable), PageType::PageTable)
            }
            _ => (Gfp::KERNEL, PageType::Kernel),
        }
    }

    /// A counted request: kernel, user or reclaimable memory, usually typed
    /// as its kind (kernel, anon, file), sometimes retyped, or typed movable
    /// (a driver's page the scanner's isolate step may isolate).
    fn counted_request(&mut self) -> (Gfp, PageType) {
        let gfp = [Gfp::KERNEL, Gfp::USER, Gfp::USER, Gfp::RECLAIMABLE][self.rng.below(4) as usize];
        let ty = if self.rng.per_mille(200) {
            let movable = PageType::Movable { ops: crate::scanner::MOVABLE_OPS };
            [PageType::Kernel, PageType::Anon, PageType::File, movable][self.rng.below(4) as usize]
        } else {
            gfp.page_type
        };
        (gfp.typed(ty), ty)
    }

    fn free_one(&mut self) {
        if self.live.is_empty() {
            return;
        }
        let i = self.rng.below(self.live.len() as u64) as usize;
        let live = self.live.swap_remove(i);
        self.release(live);
    }

    /// Checks an allocation and frees it (drop: the last put, or the frozen
    /// owner's free).
    fn release(&mut self, live: Live<'n>) {
        live.check_descriptor(self.ctx.node, self.ctx.cpu, &mut self.violations);
        live.check_stamps(self.ctx.cpu, &mut self.violations);
        self.live_frames -= live.order.nr_pages();
        self.stats.frees += 1;
        match live {
            Live { handle: Handle::Frozen(folio), ty: PageType::PageTable, .. } => self.free_table_frame(folio),
            live => drop(live),
        }
    }

    /// Frees a page-table frame the way P5 does: after a grace period, with
    /// the RCU head in the frame's own descriptor.
    fn free_table_frame(&mut self, folio: FrozenFolio<'n>) {
        match self.ctx.rcu.call_rcu_frame(folio, self.ctx.table_return) {
            Ok(()) => self.stats.table_frees_deferred += 1,
            Err((folio, e)) => {
                let (cpu, pfn) = (self.ctx.cpu, folio.pfn());
                self.violations.record(|| format!("cpu{cpu}: call_rcu_frame refused folio {pfn}: {e}"));
                drop(folio);
            }
        }
    }

    fn free_all(&mut self) {
        while let Some(live) = self.live.pop() {
            self.release(live);
        }
    }

    /// Freezes a counted folio at refcount 1 and splits it (P2); every piece
    /// stays a live allocation with its parent's stamps.
    fn split_one(&mut self) {
        let Some(i) = self.pick_counted() else { return };
        if self.live[i].order == Order::ZERO {
            return;
        }
        let (folio, ty, order, key) = match self.live.swap_remove(i) {
            Live { handle: Handle::Counted(folio), ty, order, key } => (folio, ty, order, key),
            other => {
                self.live.push(other);
                return;
            }
        };
        let (node, cpu) = (self.ctx.node, self.ctx.cpu);
        let frozen = match folio.try_freeze() {
            Ok(frozen) => frozen,
            Err(e) => {
                // A scanner holds a transient reference: EAGAIN, keep ours.
                self.stats.freeze_eagain += 1;
                if e.actual <= 1 {
                    let pfn = e.folio.pfn();
                    self.violations.record(|| format!("cpu{cpu}: freeze of {pfn} at 1 failed seeing {}", e.actual));
                }
                self.live.push(Live { handle: Handle::Counted(e.folio), ty, order, key });
                return;
            }
        };
        let new_order = if self.rng.per_mille(SPLIT_TO_ZERO_PER_MILLE) {
            Order::ZERO
        } else {
            order_of(self.rng.below(order.get() as u64) as u32)
        };
        match frozen.split(new_order) {
            Ok(pieces) => {
                self.stats.splits += 1;
                self.stats.split_pieces += pieces.len() as u64;
                // The new folios come first and the original head last, so
                // it is unfrozen last (P2.6).
                for piece in pieces {
                    let piece = Live { handle: Handle::Frozen(piece), ty, order: new_order, key };
                    piece.check_descriptor(node, cpu, &mut self.violations);
                    self.live.push(piece.into_counted());
                }
            }
            Err(refused) => {
                let (frozen, e) = refused.into_parts();
                self.violations.record(|| format!("cpu{cpu}: split of order {order} to {new_order} refused: {e}"));
                let head = Live { handle: Handle::Frozen(frozen), ty, order, key };
                head.check_descriptor(node, cpu, &mut self.violations);
                self.live.push(head.into_counted());
            }
        }
    }

    /// Takes and releases the folio lock of a counted folio.
    fn lock_one(&mut self) {
        let Some(i) = self.pick_counted() else { return };
        let Handle::Counted(folio) = &self.live[i].handle else { return };
        let guard = if self.rng.per_mille(500) {
            folio.try_lock().unwrap_or_else(|| {
                self.stats.lock_busy += 1;
                folio.lock()
            })
        } else {
            folio.lock()
        };
        if !guard.folio().head().flags().contains(PageFlags::LOCKED) {
            let (cpu, pfn) = (self.ctx.cpu, folio.pfn());
            self.violations.record(|| format!("cpu{cpu}: folio {pfn} locked without its lock bit"));
        }
        drop(guard);
        self.stats.lock_ops += 1;
    }

    /// Clones a counted reference and drops the clone.
    fn clone_one(&mut self) {
        let Some(i) = self.pick_counted() else { return };
        let Handle::Counted(folio) = &self.live[i].handle else { return };
        let copy = folio.clone();
        if copy.pfn() != folio.pfn() || copy.ref_count() < 2 {
            let (cpu, pfn, rc) = (self.ctx.cpu, folio.pfn(), copy.ref_count());
            self.violations.record(|| format!("cpu{cpu}: clone of folio {pfn} left refcount {rc}"));
        }
        drop(copy);
        self.stats.clones += 1;
    }
}
