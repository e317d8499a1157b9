//! The watchdog: a run whose allocator state is corrupt can hang instead of
//! failing (a CPU spinning on a lock another CPU held when it panicked, an
//! audit walking a cyclic free list). If the run has not finished long after
//! its deadline, the watchdog says so on stderr and ends the process with
//! the failure exit code.

use memdesc_sim::{Phase, Progress};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// What the watchdog last heard: the phase and the violations known.
type Heard = (Phase, u64);

/// A watchdog over one run.
pub struct Watchdog {
    heard: Arc<Mutex<Heard>>,
}

impl Watchdog {
    /// Starts a watchdog that fires if the run lasts beyond `limit`.
    pub fn start(limit: Duration) -> Self {
        let heard: Arc<Mutex<Heard>> = Arc::new(Mutex::new((Phase::Running, 0)));
        let watched = Arc::clone(&heard);
        let start = Instant::now();
        // Detached: it ends with the process.
        let _ = thread::Builder::new().name("watchdog".into()).spawn(move || loop {
            thread::sleep(Duration::from_millis(500));
            if start.elapsed() > limit {
                let (phase, violations) = *watched.lock().unwrap_or_else(PoisonError::into_inner);
                eprintln!(
                    "memdesc: FAIL: the run did not finish within {} s (stuck in {phase:?}; a CPU panicked holding \
                     a lock, or a free list is cyclic). {violations} violations were known.",
                    limit.as_secs()
                );
                std::process::exit(crate::exit::FAILED.into());
            }
        });
        Self { heard }
    }

    /// Notes a progress report.
    pub fn heard(&self, p: &Progress) {
        *self.heard.lock().unwrap_or_else(PoisonError::into_inner) = (p.phase, p.violations);
    }
}
