//! The simulated CPUs' platform hooks: thread-bound CPU ids (also the RCU
//! reader CPU of each thread) and hashed wait queues for the folio lock.

use memdesc::platform::{CpuId, Platform, WaitKey};
use std::cell::Cell;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

thread_local! {
    /// The CPU this thread runs as; `None` for a thread that is not a CPU
    /// (the machine's own thread, which drains and audits at the end).
    static CURRENT_CPU: Cell<Option<u32>> = const { Cell::new(None) };
}

const WAIT_BUCKETS: usize = 64;

/// Platform hooks for a simulated machine: each simulated CPU is one thread
/// that calls [`SimPlatform::bind_current_thread`] first.
pub struct SimPlatform {
    nr_cpus: u32,
    queues: [(Mutex<()>, Condvar); WAIT_BUCKETS],
}

impl SimPlatform {
    /// A platform with `nr_cpus` CPUs.
    pub fn new(nr_cpus: u32) -> Self {
        Self { nr_cpus, queues: std::array::from_fn(|_| (Mutex::new(()), Condvar::new())) }
    }

    /// Makes the calling thread run as `cpu` (one thread per CPU: the
    /// platform contract of [`Platform`]).
    pub fn bind_current_thread(&self, cpu: CpuId) {
        assert!(cpu.0 < self.nr_cpus, "cpu {} out of range (nr_cpus {})", cpu.0, self.nr_cpus);
        CURRENT_CPU.with(|c| c.set(Some(cpu.0)));
    }

    fn queue(&self, key: WaitKey) -> &(Mutex<()>, Condvar) {
        // Fibonacci hashing spreads neighbouring pfns over the buckets.
        let hash = key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        &self.queues[hash as usize % WAIT_BUCKETS]
    }
}

impl Platform for SimPlatform {
    fn current_cpu(&self) -> CpuId {
        // A thread that is not a CPU uses CPU 0's per-CPU lists: only the
        // machine's thread, once every CPU thread has ended.
        CpuId(CURRENT_CPU.with(Cell::get).unwrap_or(0))
    }

    fn rcu_reader_cpu(&self) -> Option<CpuId> {
        // One thread per CPU, bound for its whole life: the contract.
        CURRENT_CPU.with(Cell::get).map(CpuId)
    }

    fn local_enter(&self) -> Option<CpuId> {
        // A CPU is its thread, bound for its whole life, so nothing else
        // runs as it: entering costs a thread-local read. The machine's own
        // thread has no CPU and takes the shared slow path.
        CURRENT_CPU.with(Cell::get).map(CpuId)
    }

    fn relax(&self) {
        // A grace period waits for other threads: let them run.
        std::thread::yield_now();
    }

    fn nr_cpus(&self) -> u32 {
        self.nr_cpus
    }

    fn wait(&self, key: WaitKey, still_blocked: &dyn Fn() -> bool) {
        let (lock, cv) = self.queue(key);
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        if still_blocked() {
            // The timeout bounds the cost of a hash collision's stray wake-up
            // and of any wake-up lost to a bug, which the caller's loop absorbs.
            let _ = cv.wait_timeout(guard, Duration::from_millis(10));
        }
    }

    fn wake_all(&self, key: WaitKey) {
        let (lock, cv) = self.queue(key);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        cv.notify_all();
    }
}
