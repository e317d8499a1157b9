//! [`HostPlatform`]: the core's platform hooks for user-space threads.

use crate::slots::{CpuSlots, SlotBinding, SlotError};
use memdesc::platform::{CpuId, LocalCpu, Platform, RcuReaderCpu, WaitKey};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Wait-queue buckets; frames hash onto them as Linux hashes
/// `folio_waitqueue`, so a collision is only a spurious wake-up.
const WAIT_BUCKETS: usize = 64;

/// Platform hooks for threads of a user-space program: a thread is a CPU
/// while it holds a slot of the platform's [`CpuSlots`]; the others (a
/// program's surplus threads, the simulator's own thread) have no CPU and
/// take the core's shared, locked paths.
///
/// Waits sleep on hashed `Mutex` + `Condvar` buckets: futex based in std on
/// Linux, so waiting never allocates (the `malloc` adapter runs on this).
pub struct HostPlatform {
    slots: CpuSlots,
    queues: [(Mutex<()>, Condvar); WAIT_BUCKETS],
}

impl std::fmt::Debug for HostPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPlatform").field("slots", &self.slots).finish_non_exhaustive()
    }
}

impl HostPlatform {
    /// A platform of `nr_cpus` CPUs, none bound yet.
    ///
    /// # Errors
    /// [`SlotError::BadCount`] unless `1 <= nr_cpus <= MAX_CPUS`.
    pub const fn new(nr_cpus: u32) -> Result<Self, SlotError> {
        match CpuSlots::new(nr_cpus) {
            Ok(slots) => Ok(Self::with_slots(slots)),
            Err(e) => Err(e),
        }
    }

    /// A platform over `slots` (which may carry a release hook).
    pub const fn with_slots(slots: CpuSlots) -> Self {
        Self { slots, queues: [const { (Mutex::new(()), Condvar::new()) }; WAIT_BUCKETS] }
    }

    /// The CPU slots.
    pub fn slots(&self) -> &CpuSlots {
        &self.slots
    }

    /// Makes the calling thread run as `cpu` until the guard drops:
    /// [`CpuSlots::bind`].
    ///
    /// # Errors
    /// As [`CpuSlots::bind`]: a CPU held by another thread, or a second
    /// binding of this thread, is an error, never a shared CPU.
    pub fn bind_current_thread(&self, cpu: CpuId) -> Result<SlotBinding<'_>, SlotError> {
        self.slots.bind(cpu)
    }

    /// [`Platform::local_enter`] as a static call, for a host that owns
    /// its platform (the malloc adapters): thread-local reads and one
    /// store, inlined, no virtual call. Pass the token to the slab's `*_on`
    /// entry points and back to [`HostPlatform::exit_local`].
    #[inline(always)]
    pub fn enter_local(&self) -> Option<LocalCpu> {
        let cpu = self.slots.enter()?;
        // The slot was claimed by an Acquire CAS no other thread can win
        // until a Release store gives it back; `release_current` panics
        // while a section is open. Re-entry is allowed by the contract.
        // SAFETY: this thread holds `cpu`'s slot, and `enter` counted this
        // section, so the slot stays ours until the matching `local_exit`.
        Some(unsafe { LocalCpu::new_unchecked(cpu) })
    }

    /// [`Platform::local_exit`] as a static call (see
    /// [`HostPlatform::enter_local`]).
    #[inline(always)]
    pub fn exit_local(&self, cpu: LocalCpu) {
        debug_assert_eq!(self.slots.current(), Some(cpu.cpu()), "local_exit of another CPU");
        self.slots.exit();
    }

    fn queue(&self, key: WaitKey) -> &(Mutex<()>, Condvar) {
        // Fibonacci hashing spreads neighbouring pfns over the buckets.
        let hash = key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        &self.queues[hash as usize % WAIT_BUCKETS]
    }
}

impl Platform for HostPlatform {
    fn current_cpu(&self) -> CpuId {
        // A hint (which CPU's locked lists): a thread with no CPU uses
        // CPU 0's.
        self.slots.current().unwrap_or(CpuId(0))
    }

    fn nr_cpus(&self) -> u32 {
        self.slots.nr_cpus()
    }

    #[inline]
    fn local_enter(&self) -> Option<LocalCpu> {
        self.enter_local()
    }

    #[inline]
    fn local_exit(&self, cpu: LocalCpu) {
        self.exit_local(cpu);
    }

    fn rcu_reader_cpu(&self) -> Option<RcuReaderCpu> {
        let cpu = self.slots.current()?;
        // The next holder claims the slot with an Acquire CAS of the owner
        // word our release stores with Release, so it is ordered after us;
        // a thread holds one CPU per set, never two of this platform.
        // SAFETY: this thread holds `cpu`'s slot, so no other thread runs
        // as `cpu` until it releases it, and the next holder follows us.
        Some(unsafe { RcuReaderCpu::new_unchecked(cpu) })
    }

    fn relax(&self) {
        // A grace period waits for other threads: let them run.
        std::thread::yield_now();
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
