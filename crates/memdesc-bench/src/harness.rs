//! The measuring loop: calibrated repetitions of interleaved workloads,
//! reported as medians.
//!
//! A [`Workload`] runs `iters` iterations of one operation pattern and returns
//! the time they took, measured inside the workload (so setup such as thread
//! spawning stays outside the clock). [`measure`] sizes each workload so one
//! repetition takes about [`Settings::target`], runs each once as a warm-up,
//! then runs [`Settings::reps`] repetitions of every workload, rotating which
//! one goes first, so ours and the peer see the same machine state (other
//! builds, frequency) within a run. The figure reported is the median ns per
//! operation.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Repetitions per workload (the median is taken over these).
    pub reps: usize,
    /// The wall time one repetition should take.
    pub target: Duration,
    /// Run exactly this many iterations per repetition instead of
    /// calibrating (for instruction counts under callgrind, where timing
    /// means nothing).
    pub fixed_iters: Option<u64>,
}

impl Settings {
    /// The default run: 9 repetitions of about 40 ms each.
    pub const DEFAULT: Settings = Settings { reps: 9, target: Duration::from_millis(40), fixed_iters: None };
    /// A smoke test: 3 repetitions of about 4 ms; the numbers are indicative only.
    pub const QUICK: Settings = Settings { reps: 3, target: Duration::from_millis(4), fixed_iters: None };
}

/// The largest iteration count calibration will try.
const MAX_ITERS: u64 = 1 << 40;

/// One operation pattern to time.
pub struct Workload<'a> {
    /// Operations per iteration (1000 for a batch of 1000, 2 for two threads
    /// doing one pair each): ns/op is time / (iters × ops_per_iter).
    pub ops_per_iter: u64,
    /// Runs `iters` iterations and returns the time they took.
    pub run: Box<dyn FnMut(u64) -> Duration + 'a>,
}

impl<'a> Workload<'a> {
    /// A workload of `ops_per_iter` operations per iteration.
    pub fn new(ops_per_iter: u64, run: impl FnMut(u64) -> Duration + 'a) -> Self {
        Self { ops_per_iter, run: Box::new(run) }
    }
}

/// The result of measuring one workload.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Median ns per operation over the repetitions.
    pub median_ns: f64,
    /// Fastest repetition, ns per operation.
    pub min_ns: f64,
    /// Slowest repetition, ns per operation.
    pub max_ns: f64,
    /// Repetitions taken.
    pub reps: usize,
    /// Iterations per repetition.
    pub iters: u64,
}

/// Times `iters` calls of `body`.
#[inline(always)]
pub fn time_loop(iters: u64, mut body: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        body();
    }
    start.elapsed()
}

/// Measures every workload with interleaved repetitions; returns one sample
/// per workload, in order.
pub fn measure(settings: &Settings, workloads: &mut [Workload<'_>]) -> Vec<Sample> {
    let iters: Vec<u64> =
        workloads.iter_mut().map(|w| settings.fixed_iters.unwrap_or_else(|| calibrate(settings.target, w))).collect();
    for (w, &n) in workloads.iter_mut().zip(&iters) {
        (w.run)(n); // warm-up
    }
    let count = workloads.len();
    let mut per_op: Vec<Vec<f64>> = vec![Vec::with_capacity(settings.reps); count];
    for rep in 0..settings.reps {
        for k in 0..count {
            let i = (rep + k) % count;
            let elapsed = (workloads[i].run)(iters[i]);
            per_op[i].push(elapsed.as_nanos() as f64 / (iters[i] * workloads[i].ops_per_iter) as f64);
        }
    }
    per_op.into_iter().zip(iters).map(|(ns, iters)| summarise(ns, iters)).collect()
}

/// Finds the iteration count for which one repetition takes about `target`.
fn calibrate(target: Duration, w: &mut Workload<'_>) -> u64 {
    let mut iters = 1u64;
    loop {
        let elapsed = (w.run)(iters).max(Duration::from_nanos(1));
        if elapsed >= target / 4 || iters >= MAX_ITERS {
            let scaled = iters as f64 * target.as_secs_f64() / elapsed.as_secs_f64();
            return (scaled.round() as u64).clamp(1, MAX_ITERS);
        }
        // Below 100 µs the timer and warm-up dominate: grow blindly.
        let factor = if elapsed < Duration::from_micros(100) {
            16
        } else {
            (target.as_secs_f64() / elapsed.as_secs_f64()).ceil().clamp(2.0, 16.0) as u64
        };
        iters = iters.saturating_mul(factor);
    }
}

fn summarise(mut ns: Vec<f64>, iters: u64) -> Sample {
    ns.sort_by(f64::total_cmp);
    let reps = ns.len();
    let median = if reps % 2 == 1 { ns[reps / 2] } else { (ns[reps / 2 - 1] + ns[reps / 2]) / 2.0 };
    Sample { median_ns: median, min_ns: ns[0], max_ns: ns[reps - 1], reps, iters }
}

/// Runs `body(t)` on `threads` scoped threads `t = 0..threads`, each after
/// its own `prepare(t)` (binding it to a CPU: what it returns, the binding
/// guard, is kept until `body` ends), started together by a barrier.
/// Returns the wall time from the first start to the last finish.
pub fn run_threads<G>(threads: usize, prepare: impl Fn(usize) -> G + Sync, body: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, prepare, body) = (&barrier, &prepare, &body);
                s.spawn(move || {
                    let guard = prepare(t);
                    barrier.wait();
                    let start = Instant::now();
                    body(t);
                    let end = Instant::now();
                    drop(guard);
                    (start, end)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a benchmark thread panicked")).collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("at least one thread");
    let last = spans.iter().map(|s| s.1).max().expect("at least one thread");
    last - first
}
