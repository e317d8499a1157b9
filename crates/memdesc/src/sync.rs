//! The sync facade: every atomic, cell, fence and spin hint in the core comes
//! from here.
//!
//! In production these are `core`'s; under `--cfg memdesc_loom` they are
//! loom's, so the model checker sees every access the protocols make. The cfg
//! is crate-specific on purpose: a bare `loom` cfg would also switch our
//! dependencies into their own loom modes.
//!
//! Two things here are not plain re-exports:
//! - `UnsafeCell` offers loom's `with`/`with_mut` API in both modes, so loom
//!   can report a data race on a descriptor's owner words.
//! - `SpinLock` is the lock the buddy zones and per-CPU lists use. In a
//!   kernel it would also disable preemption or interrupts; here the platform
//!   decides that (see [`crate::platform`]).
//! - Under `--cfg memdesc_count_rmw` (tests), the atomics count their
//!   read-modify-writes and fences per thread (`rmw_count`), so a test can
//!   show a path makes no locked instruction.
//!
//! [`FrameWord`] is always `core`'s `AtomicU64`: frame *contents* live in the
//! managed memory itself and are never part of a model.

#[cfg(memdesc_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

#[cfg(all(not(memdesc_loom), not(memdesc_count_rmw)))]
pub(crate) use core::sync::atomic::{fence, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

// The proof that a path makes no locked instruction: the same atomics,
// counting their read-modify-writes per thread (`SpinLock` counts through
// its CAS). Tests only; see `counting`.
#[cfg(all(not(memdesc_loom), memdesc_count_rmw))]
mod counting;
#[cfg(all(test, not(memdesc_loom), memdesc_count_rmw))]
pub(crate) use counting::rmw_count;
#[cfg(all(not(memdesc_loom), memdesc_count_rmw))]
pub(crate) use counting::{fence, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Orders this thread's accesses against code that interrupts it on the same
/// CPU (a signal fence: no instruction, only the compiler's ordering). The
/// per-CPU fast paths' local locks need no more than this.
pub(crate) use core::sync::atomic::compiler_fence;

/// One 64-bit word of frame contents, accessed racily but atomically.
///
/// Frame contents are not protocol state: owners and speculative readers may
/// touch the same bytes, so every access is an atomic (a plain `mov` on
/// x86-64 with `Relaxed`), which keeps that race defined.
pub type FrameWord = core::sync::atomic::AtomicU64;

/// Hints that the caller is spinning; a yield point under the model.
#[inline(always)]
pub(crate) fn spin_loop() {
    #[cfg(memdesc_loom)]
    loom::hint::spin_loop();
    #[cfg(not(memdesc_loom))]
    core::hint::spin_loop();
}

/// Whether the model checker is unwinding a failed execution: a guard's
/// drop must not touch loom objects then (loom would panic again, inside
/// the unwind, and abort the test binary instead of failing the model).
/// Always `false` outside the model, so it costs nothing there.
#[inline(always)]
pub(crate) fn model_unwinding() -> bool {
    #[cfg(memdesc_loom)]
    return std::thread::panicking();
    #[cfg(not(memdesc_loom))]
    false
}

/// An `UnsafeCell` whose accesses loom can check for data races.
#[cfg(memdesc_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// An `UnsafeCell` with loom's closure-based API.
#[cfg(not(memdesc_loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(memdesc_loom))]
impl<T> UnsafeCell<T> {
    /// Creates a cell holding `value`.
    #[inline(always)]
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a shared raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a mutable raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A test-and-test-and-set spin lock protecting a `T`.
///
/// Used for the zone free lists and the per-CPU lists; both are held for
/// short, bounded sections. The lock word is the only atomic; the data sits in
/// an `UnsafeCell` reached only through its guard.
#[derive(Debug)]
pub(crate) struct SpinLock<T> {
    locked: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serialises every access to `data` (only a `SpinGuard`, which
// exists while `locked` is held, reaches it), so sharing the lock between
// threads is sound whenever `T` may be sent between threads.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// Creates an unlocked lock around `data`.
    pub(crate) fn new(data: T) -> Self {
        Self { locked: AtomicU32::new(0), data: UnsafeCell::new(data) }
    }

    /// Acquires the lock, spinning until it is free.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            if let Some(guard) = self.try_lock() {
                return guard;
            }
            // Relaxed: only a hint to avoid hammering the line with CASes; the
            // CAS in try_lock is what orders.
            while self.locked.load(Ordering::Relaxed) != 0 {
                spin_loop();
            }
        }
    }

    /// Acquires the lock if it is free.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        // Acquire: pairs with the Release store in SpinGuard::drop, so this
        // critical section sees everything the previous holder wrote.
        // Relaxed: on failure, nothing was acquired.
        self.locked.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).ok().map(|_| SpinGuard { lock: self })
    }
}

#[cfg(memdesc_mutant = "barn_unlocked_exchange")]
impl<T> SpinLock<T> {
    /// Runs `f` on the protected data without taking the lock: exists only
    /// for the mutant that takes a sheaf from the slab's barn without its
    /// lock.
    ///
    /// # Safety
    /// 1. No other thread holds the lock or touches the data meanwhile; the
    ///    mutant breaks this on purpose, for loom to report.
    pub(crate) unsafe fn with_unlocked<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: duty 1 is the caller's (and broken by the mutant).
        self.data.with_mut(|data| f(unsafe { &mut *data }))
    }
}

/// Proof that a [`SpinLock`] is held; releases it on drop.
#[must_use]
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinGuard<'_, T> {
    /// Runs `f` on the protected data.
    #[inline(always)]
    pub(crate) fn with<R>(&mut self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: this guard exists only while `locked` is held (type
        // invariant), and `&mut self` keeps the reference unique within it.
        self.lock.data.with_mut(|data| f(unsafe { &mut *data }))
    }

    /// Runs `f` on the protected data, read-only.
    #[inline(always)]
    pub(crate) fn with_ref<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        // SAFETY: the guard holds the lock (type invariant); `&self` only
        // hands out shared access.
        self.lock.data.with(|data| f(unsafe { &*data }))
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Release: pairs with the Acquire CAS in SpinLock::try_lock, handing
        // this section's writes to the next holder (L.4).
        #[cfg(not(memdesc_mutant = "relaxed_spin_unlock"))]
        self.lock.locked.store(0, Ordering::Release);
        // Mutant: the unlock without Release. Relaxed: deliberately wrong.
        #[cfg(memdesc_mutant = "relaxed_spin_unlock")]
        self.lock.locked.store(0, Ordering::Relaxed);
    }
}

/// A statistics counter: always `core`'s `AtomicU64`, never modelled.
///
/// Counters order nothing; they are written by one holder of the lock that
/// owns them (load then store, no read-modify-write on the hot path) and
/// summed racily by readers. Keeping them out of the model keeps loom's state
/// space to the protocols.
#[cfg(not(all(memdesc_count_rmw, not(memdesc_loom))))]
pub(crate) type StatWord = core::sync::atomic::AtomicU64;
/// A statistics counter, counted like the other atomics (so a statistic
/// bumped on a fast path shows in `rmw_count`).
#[cfg(all(memdesc_count_rmw, not(memdesc_loom)))]
pub(crate) type StatWord = counting::AtomicU64;
