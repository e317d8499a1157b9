//! The reader's side of a TYPESAFE_BY_RCU object, as Linux's
//! `SLAB_TYPESAFE_BY_RCU` users must write it: inside an RCU read section,
//! take the object's own reference (or lock), then check that it is still
//! the object that was looked up. The slab only promises that the memory
//! stays an object of the same cache until the section ends; the object
//! may have been freed and reused for another one meanwhile.

use crate::rcu::RcuReadGuard;

/// Takes a reference to an object found inside `section`: `get` takes the
/// object's own reference (failing, `false`, if the object is free), then
/// `revalidate` checks its identity (the key the lookup used); if that
/// fails the reference is dropped with `put`. Returns whether the caller
/// now holds a reference to the object it looked up.
pub fn typesafe_get(
    section: &RcuReadGuard<'_, '_>,
    get: impl FnOnce() -> bool,
    revalidate: impl FnOnce() -> bool,
    put: impl FnOnce(),
) -> bool {
    let _ = section;
    if !get() {
        return false;
    }
    // Mutant: the reader trusts the object it found without checking its
    // identity, and uses a reused object as the one it looked up.
    if cfg!(memdesc_mutant = "typesafe_rcu_no_revalidate") {
        let _ = (revalidate, put);
        return true;
    }
    if !revalidate() {
        put();
        return false;
    }
    true
}
