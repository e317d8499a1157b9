//! The folio lock (`PG_locked`): a sleeping lock in the head's flags word.
//!
//! Lock and unlock are atomic read-modify-writes on the flags word. A
//! waiter sets `PG_waiters` before sleeping on the platform's wait queue for
//! the folio's pfn; unlock clears both bits and wakes the queue only if the
//! waiter bit was set, so an uncontended unlock costs one atomic.

use super::{FolioRef, FolioRelease, PageFlags};
use crate::platform::WaitKey;
use crate::sync::Ordering;

/// The folio lock, held. Borrows the reference that keeps the folio alive;
/// Drop unlocks and wakes waiters.
#[must_use]
pub struct LockedFolio<'r, 'a, R: FolioRelease> {
    folio: &'r FolioRef<'a, R>,
}

impl<'a, R: FolioRelease> FolioRef<'a, R> {
    /// Takes the folio lock if it is free.
    pub fn try_lock(&self) -> Option<LockedFolio<'_, 'a, R>> {
        // L.1. Acquire: pairs with the Release in LockedFolio::drop (L.3), so
        // this holder sees what the previous one wrote under the lock.
        #[cfg(not(memdesc_mutant = "relaxed_folio_lock"))]
        let old = self.head().flags.fetch_or(PageFlags::LOCKED.0, Ordering::Acquire);
        // Mutant: the lock bit taken without Acquire, so a holder may miss
        // the previous holder's writes. Relaxed: deliberately wrong.
        #[cfg(memdesc_mutant = "relaxed_folio_lock")]
        let old = self.head().flags.fetch_or(PageFlags::LOCKED.0, Ordering::Relaxed);
        // Not `then_some`: it would build the guard eagerly, and its drop
        // would release a lock someone else holds.
        if old & PageFlags::LOCKED.0 == 0 {
            Some(LockedFolio { folio: self })
        } else {
            None
        }
    }

    /// Takes the folio lock, sleeping on the owner's platform wait queue
    /// while it is held.
    ///
    /// # Deadlock
    /// The lock is not recursive, as Linux's `folio_lock` is not: a thread
    /// that already holds this folio's lock (through any reference to it)
    /// and calls `lock` again sleeps forever. The lock word records no owner
    /// (that would take a descriptor word, and the per-thread bookkeeping
    /// to check it costs every lock), so this is not detected; use
    /// [`FolioRef::try_lock`] where a path may already hold the lock.
    pub fn lock(&self) -> LockedFolio<'_, 'a, R> {
        loop {
            if let Some(locked) = self.try_lock() {
                return locked;
            }
            // Relaxed: only announces a sleeper; the wait below rechecks the
            // lock bit under the platform's queue lock, and unlock's RMW sees
            // this bit in coherence order if it runs after us.
            self.head().flags.fetch_or(PageFlags::WAITERS.0, Ordering::Relaxed);
            let head = self.head();
            // L.2: sleep only while the lock is held *and* our waiters bit is
            // still set. An unlock clears both bits; if the holder then locks
            // again before we queue, LOCKED alone would put us to sleep with
            // no waiters bit, and the next unlock would wake nobody (a lost
            // wake-up). Seeing WAITERS clear, we return, set it again and
            // requeue.
            let asleep = PageFlags(PageFlags::LOCKED.0 | PageFlags::WAITERS.0);
            self.owner().platform().wait(WaitKey(self.pfn().0), &|| head.flags().contains(asleep));
        }
    }
}

impl<'a, R: FolioRelease> LockedFolio<'_, 'a, R> {
    /// The locked folio.
    pub fn folio(&self) -> &FolioRef<'a, R> {
        self.folio
    }
}

impl<R: FolioRelease> Drop for LockedFolio<'_, '_, R> {
    fn drop(&mut self) {
        let clear = PageFlags::LOCKED.0 | PageFlags::WAITERS.0;
        // Release: pairs with the Acquire in try_lock; the next holder sees
        // our writes.
        let old = self.folio.head().flags.fetch_and(!clear, Ordering::Release);
        // Mutant: the unlock never wakes, so a sleeper sleeps on (a lost
        // wake-up).
        #[cfg(not(memdesc_mutant = "lost_folio_wakeup"))]
        if old & PageFlags::WAITERS.0 != 0 {
            self.folio.owner().platform().wake_all(WaitKey(self.folio.pfn().0));
        }
    }
}
