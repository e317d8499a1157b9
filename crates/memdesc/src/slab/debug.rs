//! Debug caches (slub_debug style): red zones around every object, poison
//! in free objects, and a state word per object, all checked under the
//! cache's list lock on alloc and free.
//!
//! A corrupted object is quarantined: marked so, never handed out again,
//! counted, and reported ([`BadObject`](super::BadObject)); the allocator's
//! own state (free pointers, owner words) is never taken from a corrupted
//! object.

use super::layout::Layout;
use super::raw::Arena;
use super::BadObjectKind;

/// Fill of red zones.
pub(crate) const RED_ZONE_BYTE: u8 = 0xbb;
/// Fill of free objects (Linux's POISON_FREE).
pub(crate) const POISON_FREE: u8 = 0x6b;
/// State word of a free object.
pub(crate) const STATE_FREE: usize = 0x5ab_f4ee;
/// State word of an allocated object.
pub(crate) const STATE_ALLOCATED: usize = 0x5ab_a110c;
/// State word of a quarantined object.
pub(crate) const STATE_QUARANTINED: usize = 0x5ab_bad;

/// A debug cache's view of its objects: every function's caller holds the
/// cache's list lock or owns the object (a new slab, frozen).
pub(crate) struct Debug<'c> {
    pub(crate) arena: &'c Arena,
    pub(crate) layout: &'c Layout,
    /// Free objects are poisoned (not for constructor or TYPESAFE_BY_RCU
    /// caches, whose free objects keep their contents).
    pub(crate) poison: bool,
}

impl Debug<'_> {
    fn state_addr(&self, obj: usize) -> usize {
        obj - self.layout.obj_off + self.layout.state_off.unwrap_or(0)
    }

    /// The object's state word.
    pub(crate) fn state(&self, obj: usize) -> usize {
        // SAFETY: duty 1 of read_word: the state word is in the slot, which
        // the caller owns (lock or frozen slab, type doc).
        unsafe { self.arena.read_word(self.state_addr(obj)) }
    }

    /// Sets the object's state word.
    pub(crate) fn set_state(&self, obj: usize, state: usize) {
        // SAFETY: duty 1 of write_word: as in `state`.
        unsafe { self.arena.write_word(self.state_addr(obj), state) }
    }

    /// Fills a new slab's object: red zones, poison, state free.
    pub(crate) fn init(&self, obj: usize) {
        let slot = obj - self.layout.obj_off;
        let right = obj + self.layout.size;
        let fp = slot + self.layout.fp_off;
        // SAFETY: duty 1 of bytes_mut: the slot is the caller's (type doc).
        unsafe {
            self.arena.bytes_mut(slot, self.layout.obj_off).fill(RED_ZONE_BYTE);
            self.arena.bytes_mut(right, fp - right).fill(RED_ZONE_BYTE);
        }
        self.poison_object(obj);
        self.set_state(obj, STATE_FREE);
    }

    /// Poisons a free object's bytes (when the cache poisons).
    pub(crate) fn poison_object(&self, obj: usize) {
        if self.poison {
            // SAFETY: duty 1 of bytes_mut: the object is free and the
            // caller's (type doc).
            unsafe { self.arena.bytes_mut(obj, self.layout.size) }.fill(POISON_FREE);
        }
    }

    /// Checks both red zones; returns the first bad byte.
    pub(crate) fn check_red_zones(&self, obj: usize) -> Result<(), (BadObjectKind, usize)> {
        let slot = obj - self.layout.obj_off;
        let right = obj + self.layout.size;
        let fp = slot + self.layout.fp_off;
        // SAFETY: duty 1 of bytes: the slot is the caller's (type doc).
        let (left, right_zone) =
            unsafe { (self.arena.bytes(slot, self.layout.obj_off), self.arena.bytes(right, fp - right)) };
        if let Some(i) = left.iter().position(|&b| b != RED_ZONE_BYTE) {
            return Err((BadObjectKind::LeftRedZone, slot + i));
        }
        if let Some(i) = right_zone.iter().position(|&b| b != RED_ZONE_BYTE) {
            return Err((BadObjectKind::RightRedZone, right + i));
        }
        Ok(())
    }

    /// Checks a free object before it is handed out: state, red zones,
    /// poison.
    pub(crate) fn check_free_object(&self, obj: usize) -> Result<(), (BadObjectKind, usize)> {
        if self.state(obj) != STATE_FREE {
            return Err((BadObjectKind::StateCorrupted, self.state_addr(obj)));
        }
        self.check_red_zones(obj)?;
        if self.poison {
            // SAFETY: duty 1 of bytes: the object is free and the caller's.
            let bytes = unsafe { self.arena.bytes(obj, self.layout.size) };
            if let Some(i) = bytes.iter().position(|&b| b != POISON_FREE) {
                return Err((BadObjectKind::PoisonOverwritten, obj + i));
            }
        }
        Ok(())
    }
}
