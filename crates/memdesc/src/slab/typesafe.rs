//! The reader's side of a TYPESAFE_BY_RCU object, as Linux's
//! `SLAB_TYPESAFE_BY_RCU` users must write it: inside an RCU read section,
//! take the object's own reference (or lock), then check that it is still
//! the object that was looked up. The slab only promises that the memory
//! stays an object of the same cache until the section ends; the object
//! may have been freed and reused for another one meanwhile.

use super::{Found, SlabAllocator, SlabFlags};
use crate::rcu::RcuReadGuard;
use crate::sync::{fence, FrameWord, Ordering};

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

impl<'a> SlabAllocator<'a> {
    /// The words of the TYPESAFE_BY_RCU object at `addr`, for a lockless
    /// reader inside `section` (a section of this allocator's RCU): the
    /// memory stays an object of that cache until the section ends (its
    /// slab goes back to the buddy allocator only after a grace period),
    /// though the object may be freed and reused meanwhile, so the reader
    /// takes the object's own reference and revalidates
    /// ([`typesafe_get`]). Object owners write these words atomically too
    /// ([`SlabObject::words`](super::SlabObject::words)).
    ///
    /// Returns `None` if `addr` is not an object of a TYPESAFE_BY_RCU cache
    /// now, or `section` belongs to another RCU.
    pub fn typesafe_words<'g>(&'g self, section: &'g RcuReadGuard<'_, '_>, addr: usize) -> Option<&'g [FrameWord]> {
        let core = self.core();
        if !core::ptr::addr_eq(section.rcu(), core.rcu) {
            return None;
        }
        let Ok(Found::Object(cache, obj)) = core.lookup(addr) else { return None };
        if !cache.config.flags.contains(SlabFlags::TYPESAFE_BY_RCU) {
            return None;
        }
        // Acquire: pairs with the Release fence of add_slab (P7.2): the
        // constructor's plain writes to the new slab's objects happen
        // before these atomic reads.
        fence(Ordering::Acquire);
        Some(core.arena.words(obj, cache.layout.size / 8))
    }
}
