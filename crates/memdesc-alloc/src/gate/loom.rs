//! Loom models of the fork gate (FORK.1–7 in docs/PROTOCOLS.md).
//!
//! A thread inside the allocator updates its state (a loom-tracked cell
//! standing for, say, the word of a lock it takes); the forking thread,
//! once prefork's wait is over, reads that state as `fork` copies it into
//! the child. If a thread can be inside while the fork copies, the two
//! accesses are unordered and loom reports a causality violation; a
//! waiter let in before the forking thread is done races the same way.
//! Run with `RUSTFLAGS="--cfg memdesc_loom" CARGO_TARGET_DIR=target/loom
//! cargo test -p memdesc-alloc --release --lib gate::loom`.

use super::Gate;
use ::loom::cell::UnsafeCell;
use ::loom::sync::Arc;

/// The entering thread's token (tokens are nonzero and distinct).
const ENTRANT: usize = 1;
/// The forking thread's token.
const FORKER: usize = 2;
/// The forking thread's CPU slot (it may allocate while its fork is pending).
const FORKER_SLOT: Option<usize> = Some(1);

/// The gate of a two-slot process and the allocator state that threads
/// inside it update.
struct Process {
    gate: Gate<2>,
    state: UnsafeCell<u64>,
}

impl Process {
    fn new() -> Arc<Self> {
        Arc::new(Self { gate: Gate::new(), state: UnsafeCell::new(0) })
    }

    /// One allocation as the thread `token` on `slot`: enter, update the
    /// state, leave.
    fn allocate(&self, slot: Option<usize>, token: usize) {
        self.gate.enter(slot, token, false);
        self.state.with_mut(|state| {
            // SAFETY: exclusive while inside, which is what the model checks:
            // loom reports any access not ordered with this one.
            unsafe { *state += 1 }
        });
        self.gate.leave(slot);
    }

    /// `fork` as the forking thread: prefork (the fallback fence: loom has
    /// no membarrier, see the module `gate`), optionally an allocation of
    /// its own while the fork is pending (another library's prefork
    /// handler), the child's copy of the state, then the parent's handler.
    fn fork(&self, allocate_while_pending: bool) -> u64 {
        self.gate.prefork(FORKER, FORKER_SLOT, || false);
        if allocate_while_pending {
            self.allocate(FORKER_SLOT, FORKER);
        }
        let copy = self.state.with(|state| {
            // SAFETY: no other thread is inside after prefork; loom reports
            // a write by one that is.
            unsafe { *state }
        });
        self.gate.postfork_parent();
        copy
    }
}

/// A thread on CPU slot 0 allocates while another thread forks: the fork
/// waits for it or it waits for the fork (FORK.1–6).
fn slot_thread_against_fork() {
    let process = Process::new();
    let entrant = {
        let process = process.clone();
        ::loom::thread::spawn(move || process.allocate(Some(0), ENTRANT))
    };
    let copy = process.fork(false);
    entrant.join().unwrap();
    assert!(copy <= 1, "FORK violated: the child's copy of the state counts {copy} allocations");
}

/// As [`slot_thread_against_fork`], for a thread without a CPU slot (the
/// shared count, FORK.1–6 slot-less).
fn slotless_thread_against_fork() {
    let process = Process::new();
    let entrant = {
        let process = process.clone();
        ::loom::thread::spawn(move || process.allocate(None, ENTRANT))
    };
    let copy = process.fork(false);
    entrant.join().unwrap();
    assert!(copy <= 1, "FORK violated: the child's copy of the state counts {copy} allocations");
}

/// The forking thread allocates while its fork is pending (it passes its
/// own gate) and a thread on slot 0 allocates meanwhile: that thread must
/// stay outside until the postfork clear (FORK.3's wait, FORK.7), and once
/// let in it is marked again (the retry), so a second fork waits for it.
fn waiter_against_allocating_fork() {
    let process = Process::new();
    let entrant = {
        let process = process.clone();
        ::loom::thread::spawn(move || process.allocate(Some(0), ENTRANT))
    };
    let copy = process.fork(true);
    let second = process.fork(false);
    entrant.join().unwrap();
    assert!((1..=2).contains(&copy), "FORK violated: the child's copy counts {copy} allocations");
    assert!(second >= copy, "FORK violated: the second child's copy counts {second} < {copy}");
    let total = process.state.with(|state| {
        // SAFETY: both threads are done (joined).
        unsafe { *state }
    });
    assert_eq!(total, 2, "FORK violated: an allocation was lost");
}

/// The forking thread forks while it is itself inside (fork is
/// async-signal-safe: a signal handler may fork while its thread is in the
/// middle of an allocation) and a thread on slot 0 allocates meanwhile: the
/// scan must not wait for the forking thread's own mark (FORK.6), and the
/// other thread is still kept out.
fn fork_from_inside() {
    let process = Process::new();
    let entrant = {
        let process = process.clone();
        ::loom::thread::spawn(move || process.allocate(Some(0), ENTRANT))
    };
    process.gate.enter(FORKER_SLOT, FORKER, false);
    let copy = process.fork(false);
    process.gate.leave(FORKER_SLOT);
    entrant.join().unwrap();
    assert!(copy <= 1, "FORK violated: the child's copy of the state counts {copy} allocations");
}

/// Runs `model` under loom at the preemption bound of `LOOM_MAX_PREEMPTIONS`
/// (3 if unset), as the core's models do.
fn check_model(model: fn()) {
    let mut builder = ::loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(model);
}

/// Asserts that loom finds the protocol's bug in `model` (a mutant's test):
/// at a fixed bound (2), failing with a "violated" assertion, a causality
/// violation or a deadlock.
#[allow(dead_code)] // Called only by the mutant tests, compiled one mutant at a time.
fn assert_model_fails(model: fn()) {
    let outcome = std::panic::catch_unwind(|| {
        let mut builder = ::loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(model);
    });
    let payload = outcome.expect_err("loom explored every interleaving and found no bug: the mutant survived");
    let message = payload
        .downcast_ref::<String>()
        .map(|s| s.as_str())
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(
        message.contains("violated") || message.contains("Causality") || message.starts_with("deadlock"),
        "the model failed, but not on the protocol: {message}"
    );
    eprintln!("loom caught the mutant: {message}");
}

#[test]
fn fork_waits_for_slot_thread() {
    check_model(slot_thread_against_fork);
}

#[test]
fn fork_waits_for_slotless_thread() {
    check_model(slotless_thread_against_fork);
}

#[test]
fn waiter_stays_out_until_postfork() {
    check_model(waiter_against_allocating_fork);
}

#[test]
fn fork_from_inside_passes_its_own_mark() {
    check_model(fork_from_inside);
}

#[cfg(memdesc_mutant = "fork_no_entry_barrier")]
#[test]
fn mutant_fork_no_entry_barrier_is_caught() {
    assert_model_fails(slot_thread_against_fork);
}

#[cfg(memdesc_mutant = "fork_relaxed_leave")]
#[test]
fn mutant_fork_relaxed_leave_is_caught() {
    assert_model_fails(slot_thread_against_fork);
}

#[cfg(memdesc_mutant = "fork_pending_before_inside")]
#[test]
fn mutant_fork_pending_before_inside_is_caught() {
    assert_model_fails(slot_thread_against_fork);
}

#[cfg(memdesc_mutant = "fork_scan_skips_shared")]
#[test]
fn mutant_fork_scan_skips_shared_is_caught() {
    assert_model_fails(slotless_thread_against_fork);
}
