//! The table the slab CPUs publish identity objects into, for the lockless
//! readers and the scanner: per slot a sequence word (odd while its owner
//! changes it), the object's address and its identity (the stamp).
//!
//! Slot `i` belongs to slab CPU `i % nr_slab_cpus`: only its owner writes
//! it, so a slot has one writer and the sequence word orders its changes
//! for the readers (a seqlock over two words).

use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};

/// Slots in the table.
pub(crate) const SLOTS: usize = 64;

#[derive(Default)]
struct Slot {
    seq: AtomicU64,
    addr: AtomicUsize,
    identity: AtomicU64,
}

/// A published object as a reader saw it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen {
    /// The slot's sequence number when read (even).
    pub(crate) seq: u64,
    /// The object's address.
    pub(crate) addr: usize,
    /// Its identity.
    pub(crate) identity: u64,
}

/// The published identity objects.
pub(crate) struct Slots {
    slots: Vec<Slot>,
}

impl Slots {
    /// An empty table of [`SLOTS`] slots.
    pub(crate) fn new() -> Self {
        Self { slots: (0..SLOTS).map(|_| Slot::default()).collect() }
    }

    /// Slots in the table.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Runs `change` on slot `i` between the odd and the even sequence
    /// number. Only the slot's owner calls it.
    fn write(&self, i: usize, change: impl FnOnce(&Slot)) {
        let slot = &self.slots[i];
        // Relaxed: only this thread writes the word.
        let seq = slot.seq.load(Ordering::Relaxed);
        // Relaxed: ordered before the changes by the fence below.
        slot.seq.store(seq + 1, Ordering::Relaxed);
        // Release fence: pairs with the reader's Acquire fence in `read`, so
        // a reader that saw any change also sees the odd sequence number.
        fence(Ordering::Release);
        change(slot);
        // Release: pairs with the Acquire load in `read`: a reader that sees
        // the even number sees the changes.
        slot.seq.store(seq + 2, Ordering::Release);
    }

    /// Publishes the object at `addr` with `identity` in slot `i`.
    pub(crate) fn publish(&self, i: usize, addr: usize, identity: u64) {
        self.write(i, |slot| {
            // Relaxed (both): inside the sequence window (see `write`).
            slot.identity.store(identity, Ordering::Relaxed);
            slot.addr.store(addr, Ordering::Relaxed);
        });
    }

    /// Empties slot `i` (before its object is freed).
    pub(crate) fn unpublish(&self, i: usize) {
        self.write(i, |slot| {
            // Relaxed (both): inside the sequence window (see `write`).
            slot.addr.store(0, Ordering::Relaxed);
            slot.identity.store(0, Ordering::Relaxed);
        });
    }

    /// What slot `i` holds, if an object is published there and no change
    /// was under way when read.
    pub(crate) fn read(&self, i: usize) -> Option<Seen> {
        let slot = &self.slots[i % self.slots.len()];
        // Acquire: pairs with the Release store that ends `write`.
        let seq = slot.seq.load(Ordering::Acquire);
        if seq % 2 == 1 {
            return None;
        }
        // Relaxed (both): validated by the sequence recheck below.
        let addr = slot.addr.load(Ordering::Relaxed);
        let identity = slot.identity.load(Ordering::Relaxed);
        let seen = Seen { seq, addr, identity };
        (addr != 0 && self.still(i, &seen)).then_some(seen)
    }

    /// Whether slot `i` still holds what `seen` read (revalidation).
    pub(crate) fn still(&self, i: usize, seen: &Seen) -> bool {
        let slot = &self.slots[i % self.slots.len()];
        // Acquire fence: pairs with the Release fence in `write`: if the
        // reads before it saw a change, the load below sees the odd number.
        fence(Ordering::Acquire);
        // Relaxed: ordered after the earlier reads by the fence.
        slot.seq.load(Ordering::Relaxed) == seen.seq
    }
}
