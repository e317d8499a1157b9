//! The machine: maps the arena, boots the node, runs the workload CPUs and
//! the scanner as threads, reports progress, then tears down and audits.
//!
//! CPU numbering: workload CPUs are `0..cpus`; the scanner is CPU `cpus`, so
//! the platform has `cpus + 1` CPUs and every thread owns its per-CPU lists.

use crate::arena::Arena;
use crate::config::SimConfig;
use crate::error::SimError;
use crate::platform::SimPlatform;
use crate::report::{self, Report, RunOutcome};
use crate::scanner;
use crate::violations::Violations;
use crate::workload::{mixed, WorkerContext, WorkerResult};
use memdesc::{CpuId, Mmu, Node, NodeConfig, Rcu, RcuConfig, TableReturn};
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
    /// Allocations plus frees so far, over all CPUs.
    pub ops: u64,
    /// Allocations plus frees per second since the previous report.
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
    let mut arena = Arena::new(config.ram_bytes).map_err(SimError::Map)?;
    let machine = report::Machine::of(&arena, config.cpus);
    let platform = SimPlatform::new(config.cpus + 1);
    let node = arena.boot(NodeConfig::default(), &platform).map_err(SimError::Boot)?;
    // Page-table frames the CPUs free go through RCU (P5) and come back
    // to the page-table layer's freer after their grace period.
    let table_return = Mmu::table_return(node);
    let rcu = Rcu::new(&platform, RcuConfig::default()).map_err(SimError::Rcu)?;
    let counters: Vec<PaddedCounter> = (0..config.cpus).map(|_| PaddedCounter::default()).collect();
    let shared = Shared { node, platform: &platform, rcu: &rcu, table_return: &table_return, counters: &counters };
    let outcome = run_cpus(config, &shared, interrupt, &mut progress)?;
    progress(&Progress {
        phase: Phase::Audit,
        elapsed: outcome.elapsed,
        duration: config.duration,
        ops: outcome.stats.ops(),
        ops_per_s: 0.0,
        violations: outcome.violations.count(),
    });
    // Every callback the CPUs queued runs before the audit, here (a thread
    // that is not a CPU, once every CPU thread has ended).
    rcu.barrier();
    node.drain_all();
    Ok(report::build(config, machine, node, outcome, rcu.report()))
}

/// What every CPU thread of a machine shares.
#[derive(Clone, Copy)]
struct Shared<'m> {
    node: &'m Node<'m>,
    platform: &'m SimPlatform,
    rcu: &'m Rcu<'m>,
    table_return: &'m TableReturn<'m>,
    /// Each workload CPU's progress counter.
    counters: &'m [PaddedCounter],
}

/// Starts every CPU thread, reports progress until they all end, and
/// collects what they did.
fn run_cpus<'m>(
    config: &SimConfig,
    shared: &Shared<'m>,
    interrupt: &'m AtomicBool,
    progress: &mut impl FnMut(&Progress),
) -> Result<RunOutcome, SimError> {
    let Shared { node, platform, rcu, table_return, counters } = *shared;
    let managed = node.vmstat().nr_managed;
    let target_frames = managed * mixed::LIVE_TARGET_PERCENT / 100 / config.cpus as u64;
    let running = AtomicUsize::new(config.cpus as usize);
    let start = Instant::now();
    let deadline = start + config.duration;
    thread::scope(|s| {
        let mut workers = Vec::new();
        for cpu in 0..config.cpus {
            let ctx = WorkerContext {
                node,
                rcu,
                table_return,
                cpu,
                nr_cpus: config.cpus,
                seed: config.seed,
                start,
                deadline,
                target_frames,
                ops: &counters[cpu as usize].0,
                interrupt,
            };
            let running = &running;
            let handle = thread::Builder::new().name(format!("cpu{cpu}")).spawn_scoped(s, move || {
                let _guard = RunningGuard(running);
                platform.bind_current_thread(CpuId(cpu));
                mixed::run(&ctx)
            });
            match handle {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    // The CPUs already started stop at the deadline.
                    running.fetch_sub((config.cpus - cpu) as usize, Ordering::Relaxed);
                    return Err(SimError::Spawn(e));
                }
            }
        }
        let (scanner_cpu, running) = (config.cpus, &running);
        let scanner = thread::Builder::new()
            .name("scanner".into())
            .spawn_scoped(s, move || {
                platform.bind_current_thread(CpuId(scanner_cpu));
                let scanner = scanner::Scanner::new(node, rcu, CpuId(scanner_cpu), config.seed);
                scanner.run(deadline, interrupt, running)
            })
            .map_err(SimError::Spawn)?;
        report_progress(config, start, counters, &workers, &scanner, interrupt, progress);
        let elapsed = start.elapsed();
        Ok(collect(workers, scanner, elapsed))
    })
}

/// Calls `progress` every [`PROGRESS_INTERVAL`] until every thread ended.
fn report_progress<W, S>(
    config: &SimConfig,
    start: Instant,
    counters: &[PaddedCounter],
    workers: &[ScopedJoinHandle<'_, W>],
    scanner: &ScopedJoinHandle<'_, S>,
    interrupt: &AtomicBool,
    progress: &mut impl FnMut(&Progress),
) {
    let (mut last_ops, mut last_at) = (0, start);
    while !(workers.iter().all(|w| w.is_finished()) && scanner.is_finished()) {
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
    scanner: ScopedJoinHandle<'_, (scanner::ScannerStats, Violations)>,
    elapsed: Duration,
) -> RunOutcome {
    let mut outcome = RunOutcome { elapsed, ..RunOutcome::default() };
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
