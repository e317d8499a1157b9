//! The machine: maps the arena, boots the node, runs the workload CPUs, the
//! scanner, the processes, pinners and splitters as threads, reports
//! progress, then tears down and audits.
//!
//! CPU numbering ([`Layout`]): allocator CPUs are `0..allocators`, the
//! scanner is CPU `allocators`, then come the processes, the pinners and the
//! splitters; every thread is one CPU and owns its per-CPU lists and TLB.

use crate::arena::Arena;
use crate::config::{Layout, SimConfig};
use crate::error::SimError;
use crate::report::{self, Report, RunOutcome};
use crate::scanner;
use crate::violations::Violations;
use crate::workload::mm::{self, MmContext, MmResult, Registry};
use crate::workload::slab::caches::Caches;
use crate::workload::slab::{self, reader, SlabContext, SlabResult, SlabStats, Slots};
use crate::workload::{mixed, WorkerContext, WorkerResult};
use crate::SimPlatform;
use memdesc::memmap::PhysRange;
use memdesc::migrate::CountingOps;
use memdesc::pgtable::AddressSpace;
use memdesc::slab::{SlabAllocator, SlabEvent};
use memdesc::{CpuId, Mmu, Node, NodeConfig, Rcu, RcuConfig, TableReturn, ZoneId};
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, ScopedJoinHandle};
use std::time::{Duration, Instant};

/// How often the caller hears about progress.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What the simulation is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The workload runs.
    Running,
    /// Past the deadline (or interrupted): the CPUs free everything they
    /// hold.
    Teardown,
    /// Every CPU stopped: draining per-CPU lists and auditing.
    Audit,
}

/// A progress report, handed to the caller of [`run`] on its own thread.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// What is happening.
    pub phase: Phase,
    /// Time since the workload started.
    pub elapsed: Duration,
    /// How long the workload runs.
    pub duration: Duration,
    /// Operations so far, over all CPUs: allocations plus frees, and the
    /// processes', pinners' and splitters' operations (maps, pages stamped,
    /// GUP calls, splits, protection changes, drops).
    pub ops: u64,
    /// Operations per second since the previous report.
    pub ops_per_s: f64,
    /// Violations the CPUs saw, known once they have all stopped (0 before
    /// [`Phase::Audit`]).
    pub violations: u64,
}

/// A counter on a cache line of its own, so CPUs publishing progress do not
/// slow each other down.
#[repr(align(128))]
#[derive(Default)]
struct PaddedCounter(AtomicU64);

/// Decrements the count of running workload CPUs when a CPU thread ends,
/// even by a panic, so the scanner always stops.
struct RunningGuard<'a>(&'a AtomicUsize);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        // Relaxed: a stop flag (see scanner::run).
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs the simulation `config` describes and returns its report, calling
/// `progress` on this thread about every 100 ms.
///
/// # Errors
/// [`SimError`] if the configuration is invalid, the arena cannot be mapped,
/// the node does not boot, or a thread cannot start. Violations are not
/// errors: they are in the report.
pub fn run(config: &SimConfig, progress: impl FnMut(&Progress)) -> Result<Report, SimError> {
    run_interruptible(config, &AtomicBool::new(false), progress)
}

/// Runs the simulation like [`run`], but stops the workload early once
/// `interrupt` is set (by a signal handler, say): every CPU stops at its
/// next batch of operations, then the run ends as any other does, freeing
/// everything, draining, auditing and reconciling the counters, so the
/// report is a real one for what ran. It says when the interrupt came
/// ([`Report::interrupted_after_s`]).
///
/// # Errors
/// As [`run`].
pub fn run_interruptible(
    config: &SimConfig,
    interrupt: &AtomicBool,
    mut progress: impl FnMut(&Progress),
) -> Result<Report, SimError> {
    config.validate()?;
    let layout = config.layout();
    let mut arena = Arena::new(config.ram_bytes).map_err(SimError::Map)?;
    let machine = report::Machine::of(&arena, &layout);
    let base_addr = arena.base_addr();
    let platform = SimPlatform::new(layout.nr_cpus()).map_err(SimError::Cpus)?;
    let hot_sections = if config.hot_add { arena.hot_sections() } else { Vec::new() };
    let node = if config.hot_add {
        arena.boot_for_hot_add(NodeConfig::default(), &platform)
    } else {
        arena.boot(NodeConfig::default(), &platform)
    }
    .map_err(SimError::Boot)?;
    // Page-table frames the allocator CPUs free go through RCU (P5) and
    // come back to the page-table layer's freer after their grace period.
    let table_return = Mmu::table_return(node);
    // The processes' page tables go to a freer of their own, so that what
    // it counts freed is theirs alone (`Mmu::table_frames`).
    let mmu_tables = Mmu::table_return(node);
    // TYPESAFE_BY_RCU slab frames come back here after their grace period:
    // made before the RCU that queues them, so it outlives them.
    let slab_return = SlabAllocator::slab_return(node);
    let rcu = Rcu::new(&platform, RcuConfig::default()).map_err(SimError::Rcu)?;
    let mmu = Mmu::new(&rcu, &mmu_tables);
    let counters: Vec<PaddedCounter> = (0..layout.nr_cpus()).map(|_| PaddedCounter::default()).collect();
    let slots = Slots::new();
    // The movable ops of the mixed CPUs' movable folios, called by the
    // scanner's isolate step.
    let movable_ops = CountingOps::new(scanner::MOVABLE_OPS);
    // Declared after what the CPUs borrow: the allocator ties the RCU's
    // lifetime to its own, so it is dropped first.
    let slab = match layout.slab_cpus {
        0 => None,
        _ => Some(SlabAllocator::new(node, &rcu, &slab_return).map_err(SimError::Slab)?),
    };
    let caches = slab.as_ref().map(Caches::create).transpose().map_err(SimError::Slab)?;
    let slab_shared = caches.as_ref().map(|caches| SlabShared { caches, slots: &slots, base_addr });
    let shared = Shared {
        node,
        platform: &platform,
        rcu: &rcu,
        table_return: &table_return,
        mmu: &mmu,
        counters: &counters,
        movable_ops: &movable_ops,
        published: slab_shared.map(|_| (&slots, base_addr)),
    };
    let mut outcome = run_cpus(config, &layout, &shared, slab_shared, &hot_sections, interrupt, &mut progress)?;
    if let (Some(slab), Some(caches)) = (&slab, caches) {
        let stats = std::mem::take(&mut outcome.slab_stats);
        let slabinfo = std::mem::take(&mut outcome.slabinfo);
        outcome.slab = Some(teardown_slab(slab, caches, stats, slabinfo, &mut outcome.violations));
    }
    // Waits for the TYPESAFE_BY_RCU slabs' grace periods and frees the
    // allocator's own frames; the slab return, which outlives it, counts
    // what went back through RCU.
    drop(slab);
    if let Some(run) = &mut outcome.slab {
        let freer = slab_return.callback();
        run.rcu_callbacks = freer.rcu_freed() + freer.batches_run();
        for (name, n) in &mut run.events {
            if *name == SlabEvent::SlabsRcuFreed.name() {
                *n = freer.rcu_freed();
            }
        }
    }
    progress(&Progress {
        phase: Phase::Audit,
        elapsed: outcome.elapsed,
        duration: config.duration,
        ops: outcome.stats.ops() + outcome.mm.ops() + outcome.slab_stats.ops(),
        ops_per_s: 0.0,
        violations: outcome.violations.count(),
    });
    // Every callback the CPUs queued runs before the audit, here (a thread
    // that is not a CPU, once every CPU thread has ended).
    rcu.barrier();
    node.drain_all();
    Ok(report::build(config, machine, node, outcome, rcu.report(), &mmu))
}

/// What every CPU thread of a machine shares.
#[derive(Clone, Copy)]
struct Shared<'m> {
    node: &'m Node<'m>,
    platform: &'m SimPlatform,
    rcu: &'m Rcu<'m>,
    table_return: &'m TableReturn<'m>,
    mmu: &'m Mmu<'m>,
    /// Each CPU's progress counter.
    counters: &'m [PaddedCounter],
    /// The movable ops the scanner's isolate step calls.
    movable_ops: &'m CountingOps,
    /// The slab CPUs' published objects and the host address of physical
    /// address 0, for the scanner, when slab CPUs run.
    published: Option<(&'m Slots, usize)>,
}

/// What the slab CPUs, the readers and the scanner share.
#[derive(Clone, Copy)]
struct SlabShared<'c, 'a> {
    caches: &'c Caches<'c, 'a>,
    slots: &'c Slots,
    /// The host address of physical address 0.
    base_addr: usize,
}

/// Frees what `kfree_rcu` queued, destroys the caches (each must be
/// empty), audits the slab layer and collects its report; the caller drops
/// the allocator after.
fn teardown_slab(
    slab: &SlabAllocator<'_>,
    caches: Caches<'_, '_>,
    activity: SlabStats,
    slabinfo: Vec<memdesc::slab::SlabInfo>,
    v: &mut crate::violations::Violations,
) -> report::SlabRun {
    // The kfree_rcu batches still queued hold objects of the caches.
    slab.rcu_barrier();
    caches.destroy(v);
    let audit = slab.audit();
    if audit.violations > 0 {
        v.record_many(audit.violations, || format!("slab audit: {} violations ({audit:?})", audit.violations));
    }
    // Every object was freed and every cache destroyed: only the kmalloc
    // caches remain, with no slab on their lists beyond the kept empties.
    let live: u64 = slab.slabinfo().map(|info| info.active_objs).sum();
    if live > 0 {
        v.record(|| format!("slab: {live} objects still active in the kmalloc caches at the end"));
    }
    let bad: Vec<String> = slab.bad_objects().map(|b| b.to_string()).collect();
    if !bad.is_empty() {
        v.record(|| format!("slab: {} bad-object reports, the last: {}", bad.len(), bad[bad.len() - 1]));
    }
    report::SlabRun {
        activity,
        slabinfo,
        events: slab.events().into_iter().map(|(e, n)| (e.name(), n)).collect(),
        // Set once the allocator is dropped (its drop frees more).
        rcu_callbacks: 0,
        frozen_allocs: slab.event(SlabEvent::SlabsAllocated) + slab.event(SlabEvent::LargeAlloc),
    }
}

/// Starts every CPU thread, reports progress until they all end, and
/// collects what they did. The processes' address spaces live here: every
/// one is dropped (its tables freed) once every thread has ended.
fn run_cpus<'m, 'c>(
    config: &SimConfig,
    layout: &Layout,
    shared: &Shared<'m>,
    slab: Option<SlabShared<'c, 'm>>,
    hot_sections: &[PhysRange],
    interrupt: &'m AtomicBool,
    progress: &mut impl FnMut(&Progress),
) -> Result<RunOutcome, SimError> {
    let Shared { node, platform, rcu, mmu, .. } = *shared;
    let aspaces = (0..layout.processes)
        .map(|_| AddressSpace::new(mmu))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SimError::AddressSpace)?;
    let managed = node.vmstat().nr_managed;
    let registry = Registry::default();
    let mm_cpus = layout.processes + layout.pinners + layout.splitters;
    let budget_pages = managed * config.mm_percent() / 100 / u64::from(layout.processes.max(1));
    let cpus = layout.allocators + mm_cpus + layout.slab_cpus + layout.slab_readers;
    let running = AtomicUsize::new(cpus as usize);
    let start = Instant::now();
    let deadline = start + config.duration;
    let outcome = thread::scope(|s| {
        let mut spawned = Spawned { running: &running, node, outstanding: cpus as usize };
        let mut workers = Vec::new();
        for cpu in 0..layout.allocators {
            let ctx = worker_context(config, shared, cpu, start, deadline, interrupt);
            let handle = spawned.spawn(s, format!("cpu{cpu}"), platform, cpu, move || mixed::run(&ctx))?;
            workers.push(handle);
        }
        let mut actors = Vec::new();
        for cpu in layout.first_process()..layout.first_slab_cpu() {
            let ctx = MmContext {
                aspaces: &aspaces,
                registry: &registry,
                rcu,
                cpu,
                seed: config.seed,
                start,
                deadline,
                ops: &shared.counters[cpu as usize].0,
                interrupt,
            };
            let (role, name) = if cpu < layout.first_pinner() {
                ((cpu - layout.first_process()) as usize, "process")
            } else if cpu < layout.first_splitter() {
                ((cpu - layout.first_pinner()) as usize, "pinner")
            } else {
                ((cpu - layout.first_splitter()) as usize, "splitter")
            };
            let handle = spawned.spawn(s, format!("{name}{role}"), platform, cpu, move || {
                let result = match name {
                    "process" => mm::process::run(&ctx, role, budget_pages),
                    "pinner" => mm::pinner::run(&ctx, role),
                    _ => mm::splitter::run(&ctx, role),
                };
                // This CPU stops: no read section of it can delay a grace
                // period.
                rcu.idle_enter(CpuId(cpu));
                result
            })?;
            actors.push((format!("{name} {role} (cpu{cpu})"), handle));
        }
        let (slab_cpus, readers) = match slab {
            Some(slab) => spawn_slab(s, &mut spawned, config.seed, layout, shared, slab, deadline, interrupt)?,
            None => (Vec::new(), Vec::new()),
        };
        let (scanner_cpu, running) = (layout.scanner, &running);
        let (movable_ops, published) = (shared.movable_ops, shared.published);
        let scanner = thread::Builder::new()
            .name("scanner".into())
            .spawn_scoped(s, move || {
                let _cpu = platform.bind_current_thread(CpuId(scanner_cpu)).expect("one thread per simulated CPU");
                let scanner = scanner::Scanner::new(node, rcu, CpuId(scanner_cpu), config.seed, movable_ops, published);
                let result = scanner.run(deadline, interrupt, running);
                // A get whose put was a folio's last frees onto this CPU's
                // lists: give them back before the CPU is released.
                node.drain_local();
                result
            })
            .map_err(SimError::Spawn)?;
        // Not a CPU: hot_add takes the zone lock and counts under it.
        let hot_adder = (!hot_sections.is_empty())
            .then(|| {
                thread::Builder::new().name("hotadd".into()).spawn_scoped(s, move || {
                    hot_add_sections(node, hot_sections, start + config.duration / 2, interrupt)
                })
            })
            .transpose()
            .map_err(SimError::Spawn)?;
        let finished = || {
            workers.iter().all(|w| w.is_finished())
                && actors.iter().all(|(_, a)| a.is_finished())
                && slab_cpus.iter().all(|h| h.is_finished())
                && readers.iter().all(|h| h.is_finished())
                && scanner.is_finished()
        };
        report_progress(config, start, shared.counters, finished, interrupt, progress);
        let elapsed = start.elapsed();
        let mut outcome = collect(workers, actors, scanner, elapsed);
        collect_slab(&mut outcome, slab_cpus, readers);
        if let Some(adder) = hot_adder {
            match adder.join() {
                Ok(run) => {
                    for error in &run.errors {
                        outcome.violations.record(|| format!("hot-add refused: {error}"));
                    }
                    outcome.hot_add = Some(run);
                }
                Err(panic) => outcome.violations.record(|| format!("hot-add panicked: {}", panic_message(&*panic))),
            }
        }
        Ok(outcome)
    });
    drop(aspaces);
    outcome
}

/// Hot-adds `sections` one by one, evenly spaced until `by`, while the CPUs
/// run; stops early on an interrupt.
fn hot_add_sections(node: &Node<'_>, sections: &[PhysRange], by: Instant, interrupt: &AtomicBool) -> report::HotAddRun {
    let mut run = report::HotAddRun::default();
    let begin = Instant::now();
    let span = by.saturating_duration_since(begin);
    for (i, &range) in sections.iter().enumerate() {
        let due = begin + span.mul_f64((i + 1) as f64 / sections.len() as f64);
        loop {
            // Relaxed: a stop request, polled; nothing is read after it.
            if interrupt.load(Ordering::Relaxed) {
                return run;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            thread::sleep((due - now).min(Duration::from_millis(10)));
        }
        // Alternate the zones, so movable and unmovable requests both see
        // memory arrive.
        let zone = if i % 2 == 0 { ZoneId::Normal } else { ZoneId::Movable };
        match node.hot_add(range, zone) {
            Ok(added) => {
                run.sections += added.sections;
                run.frames += added.end.0 - added.start.0;
                run.managed += added.managed;
            }
            Err(e) => run.errors.push(e.to_string()),
        }
    }
    run
}

type SlabHandles<'s> =
    (Vec<ScopedJoinHandle<'s, SlabResult>>, Vec<ScopedJoinHandle<'s, (SlabStats, crate::violations::Violations)>>);

/// Starts the slab CPUs (each with an inbox for remote frees and senders to
/// the others) and the lockless readers.
#[allow(clippy::too_many_arguments)]
fn spawn_slab<'s, 'e, 'm: 's, 'c: 's, 'r: 's>(
    s: &'s thread::Scope<'s, 'e>,
    spawned: &mut Spawned<'r, 'm>,
    seed: u64,
    layout: &Layout,
    shared: &Shared<'m>,
    slab: SlabShared<'c, 'm>,
    deadline: Instant,
    interrupt: &'m AtomicBool,
) -> Result<SlabHandles<'s>, SimError> {
    let n = layout.slab_cpus as usize;
    let (senders, mut inboxes): (Vec<_>, Vec<_>) = (0..n).map(|_| std::sync::mpsc::channel()).unzip();
    let mut cpus = Vec::new();
    for (index, inbox) in inboxes.drain(..).enumerate() {
        let cpu = layout.first_slab_cpu() + index as u32;
        let peers = senders.iter().enumerate().filter(|&(i, _)| i != index).map(|(_, tx)| tx.clone()).collect();
        let ctx = SlabContext {
            caches: slab.caches,
            slots: slab.slots,
            rcu: shared.rcu,
            cpu,
            index,
            nr_slab_cpus: n,
            seed,
            deadline,
            interrupt,
            ops: &shared.counters[cpu as usize].0,
            peers,
            inbox,
        };
        cpus.push(spawned.spawn(s, format!("slab{index}"), shared.platform, cpu, move || slab::run(ctx))?);
    }
    drop(senders);
    let mut readers = Vec::new();
    for index in 0..layout.slab_readers {
        let cpu = layout.first_slab_reader() + index;
        let ctx = reader::ReaderContext {
            slab: slab.caches.slab,
            slots: slab.slots,
            rcu: shared.rcu,
            base_addr: slab.base_addr,
            cpu,
            seed,
            deadline,
            interrupt,
        };
        readers.push(spawned.spawn(s, format!("reader{index}"), shared.platform, cpu, move || reader::run(&ctx))?);
    }
    Ok((cpus, readers))
}

/// Joins the slab CPUs and readers; a thread that panicked is a violation.
fn collect_slab(outcome: &mut RunOutcome, cpus: Vec<ScopedJoinHandle<'_, SlabResult>>, readers: SlabReaders<'_>) {
    for (index, cpu) in cpus.into_iter().enumerate() {
        match cpu.join() {
            Ok(result) => {
                outcome.slab_stats += &result.stats;
                outcome.violations.merge(result.violations);
                if let Some(info) = result.slabinfo {
                    outcome.slabinfo = info;
                }
            }
            Err(panic) => outcome.violations.record(|| format!("slab{index} panicked: {}", panic_message(&*panic))),
        }
    }
    for (index, reader) in readers.into_iter().enumerate() {
        match reader.join() {
            Ok((stats, violations)) => {
                outcome.slab_stats += &stats;
                outcome.violations.merge(violations);
            }
            Err(panic) => outcome.violations.record(|| format!("reader{index} panicked: {}", panic_message(&*panic))),
        }
    }
}

type SlabReaders<'s> = Vec<ScopedJoinHandle<'s, (SlabStats, crate::violations::Violations)>>;

/// What allocator CPU `cpu` is given.
fn worker_context<'m>(
    config: &SimConfig,
    shared: &Shared<'m>,
    cpu: u32,
    start: Instant,
    deadline: Instant,
    interrupt: &'m AtomicBool,
) -> WorkerContext<'m> {
    let managed = shared.node.vmstat().nr_managed;
    let cpus = config.layout().allocators;
    WorkerContext {
        node: shared.node,
        rcu: shared.rcu,
        table_return: shared.table_return,
        cpu,
        nr_cpus: cpus,
        seed: config.seed,
        start,
        deadline,
        target_frames: managed * mixed::LIVE_TARGET_PERCENT / 100 / u64::from(cpus),
        ops: &shared.counters[cpu as usize].0,
        interrupt,
    }
}

/// Spawns CPU threads, each counted in `running` until it ends; if one
/// cannot start, the ones not started are uncounted so the scanner stops.
/// Each thread gives its CPU's cached frames back as it ends
/// (`Node::drain_local`): no thread answers a drain for that CPU later.
struct Spawned<'r, 'n> {
    running: &'r AtomicUsize,
    node: &'n Node<'n>,
    /// Threads counted in `running` but not started yet.
    outstanding: usize,
}

impl<'r, 'n> Spawned<'r, 'n> {
    fn spawn<'s, 'e, T: Send + 's>(
        &mut self,
        s: &'s thread::Scope<'s, 'e>,
        name: String,
        platform: &'s SimPlatform,
        cpu: u32,
        f: impl FnOnce() -> T + Send + 's,
    ) -> Result<ScopedJoinHandle<'s, T>, SimError>
    where
        'r: 's,
        'n: 's,
    {
        let (running, node) = (self.running, self.node);
        let handle = thread::Builder::new().name(name).spawn_scoped(s, move || {
            let _guard = RunningGuard(running);
            let _cpu = platform.bind_current_thread(CpuId(cpu)).expect("one thread per simulated CPU");
            let result = f();
            node.drain_local();
            result
        });
        match handle {
            Ok(handle) => {
                self.outstanding -= 1;
                Ok(handle)
            }
            Err(e) => {
                // Relaxed: a stop flag (see scanner::run); the CPUs already
                // started stop at the deadline.
                running.fetch_sub(self.outstanding, Ordering::Relaxed);
                self.outstanding = 0;
                Err(SimError::Spawn(e))
            }
        }
    }
}

/// Calls `progress` every [`PROGRESS_INTERVAL`] until every thread ended.
fn report_progress(
    config: &SimConfig,
    start: Instant,
    counters: &[PaddedCounter],
    finished: impl Fn() -> bool,
    interrupt: &AtomicBool,
    progress: &mut impl FnMut(&Progress),
) {
    let (mut last_ops, mut last_at) = (0, start);
    while !finished() {
        thread::sleep(PROGRESS_INTERVAL);
        let now = Instant::now();
        // Relaxed: progress statistics.
        let ops: u64 = counters.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
        let elapsed = now - start;
        // Relaxed: a stop flag; it only changes the phase shown.
        let interrupted = interrupt.load(Ordering::Relaxed);
        let phase = if elapsed < config.duration && !interrupted { Phase::Running } else { Phase::Teardown };
        let dt = (now - last_at).as_secs_f64();
        let ops_per_s = if dt > 0.0 { ops.saturating_sub(last_ops) as f64 / dt } else { 0.0 };
        let elapsed = elapsed.min(config.duration);
        progress(&Progress { phase, elapsed, duration: config.duration, ops, ops_per_s, violations: 0 });
        (last_ops, last_at) = (ops, now);
    }
}

/// Joins every thread; a thread that panicked is a violation.
fn collect(
    workers: Vec<ScopedJoinHandle<'_, WorkerResult>>,
    actors: Vec<(String, ScopedJoinHandle<'_, MmResult>)>,
    scanner: ScopedJoinHandle<'_, (scanner::ScannerStats, Violations)>,
    elapsed: Duration,
) -> RunOutcome {
    let mut outcome = RunOutcome { elapsed, ..RunOutcome::default() };
    for (who, actor) in actors {
        match actor.join() {
            Ok(result) => {
                outcome.mm += &result.stats;
                outcome.violations.merge(result.violations);
                if let Some(ran) = result.interrupted_after {
                    outcome.interrupted_after = Some(outcome.interrupted_after.map_or(ran, |t| t.max(ran)));
                }
            }
            Err(panic) => outcome.violations.record(|| format!("{who} panicked: {}", panic_message(&*panic))),
        }
    }
    for (cpu, worker) in workers.into_iter().enumerate() {
        match worker.join() {
            Ok(result) => {
                outcome.stats += &result.stats;
                outcome.violations.merge(result.violations);
                outcome.per_cpu.push((result.timed_ops, result.timed));
                if result.interrupted {
                    let after = outcome.interrupted_after.map_or(result.timed, |t| t.max(result.timed));
                    outcome.interrupted_after = Some(after);
                }
            }
            Err(panic) => {
                outcome.violations.record(|| format!("cpu{cpu} panicked: {}", panic_message(&*panic)));
                outcome.per_cpu.push((0, elapsed));
            }
        }
    }
    match scanner.join() {
        Ok((stats, violations)) => {
            outcome.scanner = stats;
            outcome.violations.merge(violations);
        }
        Err(panic) => outcome.violations.record(|| format!("scanner panicked: {}", panic_message(&*panic))),
    }
    outcome
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
