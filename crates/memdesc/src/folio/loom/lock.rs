//! L.1–L.3: the folio lock, on a platform whose wait really sleeps, so a
//! lost wake-up leaves a waiter asleep forever and loom reports the
//! deadlock.

use super::{alloc_raw, on_node, restore, spawn_on};
use crate::testutil::check_model;
use std::sync::Arc;

/// Data only the folio lock protects.
struct LockGuarded(crate::sync::UnsafeCell<u32>);

// SAFETY: every access happens under the folio lock (the model's claim);
// loom's cell reports any access that is not, which is what the model checks.
unsafe impl Sync for LockGuarded {}
// SAFETY: as for Sync: the cell holds a plain integer.
unsafe impl Send for LockGuarded {}

impl LockGuarded {
    fn increment(&self) {
        // SAFETY: the caller holds the folio lock (the model's claim).
        self.0.with_mut(|c| unsafe { *c += 1 });
    }
}

/// Two holders of references to one folio each take its lock and
/// increment a counter only the lock protects (a loom cell: a broken lock
/// is a detected data race); whoever finds it held sleeps on the
/// platform's wait queue until the unlock wakes it (L.2, L.3), so a lost
/// wake-up is a deadlock.
fn lock_serialises_holders() {
    on_node(|node| {
        let counter = Arc::new(LockGuarded(crate::sync::UnsafeCell::new(0)));
        let raw = alloc_raw(node, 0);
        let other = node.try_get(raw).unwrap().into_raw();
        // Both lockers on spawned threads: a deadlock must find this one
        // only joining (see BlockingPlatform).
        let lockers = [raw, other].map(|mine| {
            let counter = counter.clone();
            spawn_on(node, move |node| {
                // SAFETY: duty 1: each raw reference above is restored once.
                // Not dropped on unwind: loom's deadlock panic unwinds a
                // sleeper, and a put then would abort the test binary.
                let folio = core::mem::ManuallyDrop::new(unsafe { restore(node, mine) });
                let locked = folio.lock();
                counter.increment();
                drop(locked);
                drop(core::mem::ManuallyDrop::into_inner(folio));
            })
        });
        for locker in lockers {
            locker.join().unwrap();
        }
    });
}

#[test]
fn folio_lock_serialises_holders() {
    check_model(lock_serialises_holders);
}

/// A holder unlocks and locks again while another holder is on its way to
/// sleep (L.2): the unlock clears the waiters bit the sleeper set, so the
/// sleeper must not sleep on the relocked folio without setting it again,
/// or the holder's second unlock wakes nobody and loom reports the
/// deadlock. (Found by review: waiting on LOCKED alone lost this wake-up.)
fn lock_survives_relock() {
    on_node(|node| {
        let counter = Arc::new(LockGuarded(crate::sync::UnsafeCell::new(0)));
        let raw = alloc_raw(node, 0);
        let other = node.try_get(raw).unwrap().into_raw();
        let lockers = [(raw, 2), (other, 1)].map(|(mine, rounds)| {
            let counter = counter.clone();
            spawn_on(node, move |node| {
                // SAFETY: duty 1: each raw reference above is restored once.
                // Not dropped on unwind (see lock_serialises_holders).
                let folio = core::mem::ManuallyDrop::new(unsafe { restore(node, mine) });
                for _ in 0..rounds {
                    let locked = folio.lock();
                    counter.increment();
                    drop(locked);
                }
                drop(core::mem::ManuallyDrop::into_inner(folio));
            })
        });
        for locker in lockers {
            locker.join().unwrap();
        }
    });
}

#[test]
fn folio_lock_survives_relock() {
    check_model(lock_survives_relock);
}

/// The folio lock taken without Acquire (L.1).
#[cfg(memdesc_mutant = "relaxed_folio_lock")]
#[test]
fn mutant_relaxed_folio_lock_is_caught() {
    crate::testutil::assert_model_fails(lock_serialises_holders);
}

/// The unlock forgets to wake a sleeper (L.3): loom finds the waiter
/// asleep with nobody left to wake it.
#[cfg(memdesc_mutant = "lost_folio_wakeup")]
#[test]
fn mutant_lost_folio_wakeup_is_caught() {
    crate::testutil::assert_model_fails(lock_serialises_holders);
}
