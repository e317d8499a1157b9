//! Objects with identity, as SLAB_TYPESAFE_BY_RCU users build them: the
//! identity cache's 512-byte objects (8 to a slab, so retiring a few
//! empties a slab) hold their identity (the stamp) in word 0, their own
//! reference count in word 1, a payload derived from the identity in the
//! next words and the identity's complement in the last.
//!
//! The owner writes identity and payload, then sets the reference count to
//! 1 (Release) and publishes the object in a slot. A reader inside a read
//! section takes a reference only if the count is not zero (Acquire), then
//! revalidates: the identity must be the one the slot named, since the
//! object may have been freed and reused meanwhile. To retire it, the
//! owner unpublishes it, then takes the count from 1 to 0 once no reader
//! holds a reference, zeroes it and frees it.

use memdesc::sync::FrameWord;
use std::sync::atomic::Ordering;

/// The identity word.
const IDENTITY: usize = 0;
/// The reference count word.
const REFCOUNT: usize = 1;

/// The payload word `i` of an object with `identity`.
fn payload(identity: u64, i: usize) -> u64 {
    identity.rotate_left(7 * i as u32) ^ 0x5A5A_A5A5_0F0F_F0F0
}

/// Writes identity and payload into a fresh object's `words` (its count
/// is 0, as its constructor or last owner left it), then makes it
/// referenceable.
pub(crate) fn init(words: &[FrameWord], identity: u64) {
    let last = words.len() - 1;
    // Relaxed (all): published by the Release store of the count below.
    words[IDENTITY].store(identity, Ordering::Relaxed);
    for (i, word) in words.iter().enumerate().take(last).skip(REFCOUNT + 1) {
        word.store(payload(identity, i), Ordering::Relaxed);
    }
    words[last].store(!identity, Ordering::Relaxed);
    // Release: pairs with the Acquire of a reader's `get`: a reader that
    // takes a reference sees the identity and payload written above.
    words[REFCOUNT].store(1, Ordering::Release);
}

/// Takes a reference unless the count is 0 (the object is free or being
/// retired).
pub(crate) fn get(words: &[FrameWord]) -> bool {
    // Relaxed: only a starting value for the exchange below.
    let mut count = words[REFCOUNT].load(Ordering::Relaxed);
    while count != 0 {
        // Acquire: pairs with the Release store of `init`. Relaxed on
        // failure: the loop retries with the value found.
        match words[REFCOUNT].compare_exchange_weak(count, count + 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(found) => count = found,
        }
    }
    false
}

/// Drops a reference taken by [`get`].
pub(crate) fn put(words: &[FrameWord]) {
    // Release: pairs with the Acquire exchange of `kill`: this reader's
    // reads of the object happen before the owner zeroes and frees it.
    words[REFCOUNT].fetch_sub(1, Ordering::Release);
}

/// Whether the object now has `identity` (revalidation, after `get`).
pub(crate) fn is(words: &[FrameWord], identity: u64) -> bool {
    // Relaxed: after the Acquire of `get`, which ordered `init`'s writes.
    words[IDENTITY].load(Ordering::Relaxed) == identity
}

/// The first word of a referenced object with `identity` that does not
/// hold what `init` wrote: (word, expected, found).
pub(crate) fn first_wrong(words: &[FrameWord], identity: u64) -> Option<(usize, u64, u64)> {
    let last = words.len() - 1;
    (REFCOUNT + 1..=last).find_map(|i| {
        let expected = if i == last { !identity } else { payload(identity, i) };
        // Relaxed: as in `is`.
        let found = words[i].load(Ordering::Relaxed);
        (found != expected).then_some((i, expected, found))
    })
}

/// Takes the owner's count from 1 to 0 once no reader holds a reference;
/// returns how many times it found readers holding one.
pub(crate) fn kill(words: &[FrameWord]) -> u64 {
    let mut busy = 0;
    // Acquire: pairs with the Release of every reader's `put`. Relaxed on
    // failure: retried.
    while words[REFCOUNT].compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed).is_err() {
        busy += 1;
        std::thread::yield_now();
    }
    busy
}
