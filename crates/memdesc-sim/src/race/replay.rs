//! The replay driver: runs a scenario's threads, each bound as a CPU, in one
//! forced interleaving of protocol steps.
//!
//! A *step* is a failpoint of the core ([`Failpoint`]) or an action of the
//! scenario's own code ([`Act`]), taken by one CPU. The thread whose turn it
//! is runs from the step's failpoint to its next scheduled one (or to the
//! end of its script); every other scenario thread is blocked at its next
//! scheduled step meanwhile, so each step runs alone. Failpoints a schedule
//! does not name for that CPU pass straight through.
//!
//! The driver (the caller's thread) grants the steps one by one and, after
//! each, while nobody runs, asks the scenario to describe what that step
//! did (from the frames' state): that is the step table's row. The threads
//! and the driver wait with a timeout, so a step that never comes ends the
//! replay with [`ReplayError`] ("schedule not followed"), never a hang.

use crate::SimPlatform;
use memdesc::platform::failpoints::{FailAction, Failpoint};
use memdesc::platform::{CpuId, LocalCpu, Platform, WaitKey};
use memdesc_host::{SlotBinding, SlotError};
use std::cell::Cell;
use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A step of the scenario's own code (not a core failpoint): what the
/// caller of the core does between its calls, such as reading an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Act {
    /// The owner splits the THP (`thp::split_folio`): under the address
    /// space's lock, migration entries for its pages, one TLB flush, the
    /// freeze at the mappings' count (SPLIT.1-SPLIT.3, P2.1).
    ThpSplit,
    /// The process drops the range (`madvise(MADV_DONTNEED)`): clears the
    /// entry, flushes the TLBs, then puts the mapping's reference (P5).
    Zap,
    /// An allocation takes and prepares a block (P3.1-P3.2).
    Alloc,
    /// The slab allocator (`slab::SlabAllocator`) allocates an object and
    /// takes a new slab frame for it: frozen and typed slab at once (P7.1,
    /// P3), its state in the owner words (P7.2).
    SlabAlloc,
    /// The historical slab takes a frame counted (`alloc_pages`, seed 004's
    /// design: H.0, `migrate::historical`).
    CountedSlabAlloc,
    /// The object is freed and the cache shrunk: the TYPESAFE_BY_RCU slab,
    /// empty, goes to `Rcu::call_rcu_frame`, which writes the RCU head over
    /// the frozen frame's owner words (P7.4, RCU.11).
    SlabRcuFree,
    /// The slab's CPU waits for the grace period and runs the callbacks
    /// (`Rcu::barrier`): the slab frame goes back to the buddy allocator.
    GracePeriod,
}

impl Act {
    /// The docs/PROTOCOLS.md step it stands for.
    pub const fn step(self) -> &'static str {
        match self {
            Self::ThpSplit => "P2.1",
            Self::Zap => "P5",
            Self::Alloc => "P3.1",
            Self::SlabAlloc => "P7.1",
            Self::CountedSlabAlloc => "H.0",
            Self::SlabRcuFree => "P7.4",
            Self::GracePeriod => "RCU.5",
        }
    }
}

/// Where a step starts: a core failpoint or a scenario action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepAt {
    /// A failpoint in the core.
    Core(Failpoint),
    /// An action of the scenario's code.
    Act(Act),
}

impl StepAt {
    /// The protocol step id.
    pub fn step(self) -> &'static str {
        match self {
            Self::Core(f) => f.step(),
            Self::Act(a) => a.step(),
        }
    }

    /// The failpoint's or action's name.
    pub fn name(self) -> String {
        match self {
            Self::Core(f) => format!("{f:?}"),
            Self::Act(a) => format!("{a:?}"),
        }
    }
}

/// Why a replay could not follow its schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// A step never started: its CPU did not reach it in time, or finished
    /// its script first.
    NotReached {
        /// Index of the step in the schedule.
        index: usize,
        /// Its CPU.
        cpu: u32,
        /// Its failpoint or action.
        at: String,
        /// What the CPU did instead.
        why: String,
    },
    /// A step started but its CPU never reached its next step or its end.
    NotFinished {
        /// Index of the step in the schedule.
        index: usize,
        /// Its CPU.
        cpu: u32,
        /// Its failpoint or action.
        at: String,
    },
    /// A scenario thread could not run as its CPU.
    Bind {
        /// The CPU.
        cpu: u32,
        /// Why.
        error: SlotError,
    },
    /// A scenario thread panicked.
    Panicked {
        /// The thread's CPU.
        cpu: u32,
        /// The panic message.
        message: String,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReached { index, cpu, at, why } => {
                write!(f, "schedule not followed: step {} (CPU {cpu} at {at}) never started: {why}", index + 1)
            }
            Self::NotFinished { index, cpu, at } => write!(
                f,
                "schedule not followed: step {} (CPU {cpu} at {at}) never reached CPU {cpu}'s next step or end",
                index + 1
            ),
            Self::Bind { cpu, error } => write!(f, "CPU {cpu} could not bind its thread: {error}"),
            Self::Panicked { cpu, message } => write!(f, "CPU {cpu} panicked: {message}"),
        }
    }
}

impl std::error::Error for ReplayError {}

thread_local! {
    /// Whether this thread runs a scenario script ([`ReplayPlatform::bind_current_thread`]);
    /// others (the driver, setup and teardown) never wait at a failpoint.
    static SCRIPTED: Cell<bool> = const { Cell::new(false) };
}

/// The shared state of a replay, under one mutex.
#[derive(Debug)]
struct State {
    /// The step the driver grants now (`steps.len()` once all are done).
    cursor: usize,
    /// The granted step was taken by its CPU.
    started: bool,
    /// The granted step is over: its CPU reached its next step or its end.
    ended: bool,
    /// Per CPU: the index of its next step not yet taken.
    next: Vec<usize>,
    /// Per CPU: the step it is running, if any.
    running: Vec<Option<usize>>,
    /// Per CPU: its script returned.
    exited: Vec<bool>,
    /// The replay failed: everyone runs free to the end.
    aborted: bool,
}

/// Platform hooks for a replay: the simulator's, plus failpoints that block
/// each thread until the schedule gives it its turn.
pub struct ReplayPlatform {
    inner: SimPlatform,
    steps: Vec<(u32, StepAt)>,
    skip: Vec<Failpoint>,
    timeout: Duration,
    state: Mutex<State>,
    turn: Condvar,
}

impl ReplayPlatform {
    /// A platform of `nr_cpus` CPUs following `steps` (CPU, step) in order,
    /// answering [`FailAction::Skip`] at the checks in `skip`; each wait
    /// gives up after `timeout`.
    ///
    /// # Panics
    /// If `nr_cpus` is 0 or above memdesc's `MAX_CPUS` (scenarios use 2 or
    /// 3).
    pub fn new(nr_cpus: u32, steps: Vec<(u32, StepAt)>, skip: Vec<Failpoint>, timeout: Duration) -> Self {
        let cpus = nr_cpus as usize;
        let next = (0..cpus).map(|c| first_step_of(&steps, c as u32, 0)).collect();
        let state = State {
            // Nothing granted yet: every thread waits at its first step.
            cursor: usize::MAX,
            started: false,
            ended: false,
            next,
            running: vec![None; cpus],
            exited: vec![false; cpus],
            aborted: false,
        };
        let inner = SimPlatform::new(nr_cpus).expect("a scenario has 1 to MAX_CPUS CPUs");
        Self { inner, steps, skip, timeout, state: Mutex::new(state), turn: Condvar::new() }
    }

    /// Binds the calling thread as `cpu` until the guard drops (one
    /// scenario thread per CPU) and makes it follow the schedule; other
    /// threads pass every failpoint.
    ///
    /// # Errors
    /// As [`SimPlatform::bind_current_thread`]: `cpu` is out of range or
    /// held, or this thread is bound already.
    pub fn bind_current_thread(&self, cpu: CpuId) -> Result<SlotBinding<'_>, SlotError> {
        let binding = self.inner.bind_current_thread(cpu)?;
        SCRIPTED.with(|s| s.set(true));
        Ok(binding)
    }

    /// Runs a scenario action: waits for its turn if the schedule names it
    /// next for this CPU.
    pub fn act(&self, act: Act) {
        self.reach(StepAt::Act(act));
    }

    /// Ends the calling CPU's script: its running step is over.
    /// Call it while still bound (it finds the CPU by the binding).
    pub fn exit(&self) {
        let cpu = self.current_cpu().index();
        let mut state = self.lock();
        if let Some(i) = state.running[cpu].take() {
            debug_assert_eq!(i, state.cursor);
            state.ended = true;
        }
        state.exited[cpu] = true;
        drop(state);
        self.turn.notify_all();
    }

    /// Gives up: every thread runs free to the end of its script.
    pub fn abort(&self) {
        self.lock().aborted = true;
        self.turn.notify_all();
    }

    /// Grants step `index` and waits until it is over; the frames are then
    /// quiescent (every scenario thread waits or has exited) until the next
    /// grant.
    ///
    /// # Errors
    /// [`ReplayError`] if the step does not start or end within the timeout.
    pub fn run_step(&self, index: usize) -> Result<(), ReplayError> {
        let (cpu, at) = self.steps[index];
        let mut state = self.lock();
        state.cursor = index;
        state.started = false;
        state.ended = false;
        self.turn.notify_all();
        let deadline = Instant::now() + self.timeout;
        while !state.started {
            if state.exited[cpu as usize] {
                return Err(self.not_reached(index, "its script ended first".into()));
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(self.not_reached(index, format!("it did not get there within {:?}", self.timeout)));
            };
            state = self.turn.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        while !state.ended {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(ReplayError::NotFinished { index, cpu, at: at.name() });
            };
            state = self.turn.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        Ok(())
    }

    /// The steps, as (CPU, where).
    pub fn steps(&self) -> &[(u32, StepAt)] {
        &self.steps
    }

    /// Whether the replay answers Skip at `at`.
    pub fn skips(&self, at: Failpoint) -> bool {
        at.is_check() && self.skip.contains(&at)
    }

    fn not_reached(&self, index: usize, why: String) -> ReplayError {
        let (cpu, at) = self.steps[index];
        ReplayError::NotReached { index, cpu, at: at.name(), why }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A thread on this CPU reached `at`: if it is the CPU's next scheduled
    /// step, end the step it runs and wait for the grant.
    fn reach(&self, at: StepAt) {
        if !SCRIPTED.with(Cell::get) {
            return;
        }
        let cpu = self.current_cpu();
        let c = cpu.index();
        let mut state = self.lock();
        let index = state.next[c];
        if state.aborted || self.steps.get(index).map(|s| s.1) != Some(at) {
            return; // Not scheduled here: pass through.
        }
        if let Some(i) = state.running[c].take() {
            debug_assert_eq!(i, state.cursor);
            state.ended = true;
            self.turn.notify_all();
        }
        let granted = |s: &State| s.cursor == index && !s.started;
        while !state.aborted && !granted(&state) {
            // The driver times out first and aborts; this bound only keeps a
            // thread from sleeping forever if the driver itself is gone.
            state = self.turn.wait_timeout(state, self.timeout * 2).unwrap_or_else(|e| e.into_inner()).0;
        }
        if state.aborted {
            return;
        }
        state.started = true;
        state.running[c] = Some(index);
        state.next[c] = first_step_of(&self.steps, cpu.0, index + 1);
        drop(state);
        self.turn.notify_all();
    }
}

/// The index of CPU `cpu`'s first step at or after `from` (`steps.len()` if
/// none).
fn first_step_of(steps: &[(u32, StepAt)], cpu: u32, from: usize) -> usize {
    (from..steps.len()).find(|&i| steps[i].0 == cpu).unwrap_or(steps.len())
}

impl Platform for ReplayPlatform {
    fn current_cpu(&self) -> CpuId {
        self.inner.current_cpu()
    }

    fn nr_cpus(&self) -> u32 {
        self.inner.nr_cpus()
    }

    fn wait(&self, key: WaitKey, still_blocked: &dyn Fn() -> bool) {
        self.inner.wait(key, still_blocked);
    }

    fn wake_all(&self, key: WaitKey) {
        self.inner.wake_all(key);
    }

    fn local_enter(&self) -> Option<LocalCpu> {
        // A scenario thread is its bound CPU, one thread per CPU (as in the
        // simulator): the slab's per-CPU sheaves run their fast paths.
        self.inner.local_enter()
    }

    fn local_exit(&self, cpu: LocalCpu) {
        self.inner.local_exit(cpu);
    }

    fn relax(&self) {
        // A grace-period wait (the slab's rcu_barrier) yields as in the
        // simulator instead of spinning.
        self.inner.relax();
    }

    fn failpoint(&self, at: Failpoint) -> FailAction {
        self.reach(StepAt::Core(at));
        // Only the scripts run the historical code; setup and teardown run
        // the real one.
        if self.skips(at) && SCRIPTED.with(Cell::get) {
            FailAction::Skip
        } else {
            FailAction::Continue
        }
    }
}
