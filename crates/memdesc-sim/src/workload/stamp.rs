//! Stamps: a 64-bit value derived from (seed, CPU, allocation, pfn) written
//! into the first and last word of every frame a CPU owns and checked before
//! it frees the frame, so any frame handed to two owners, or written by the
//! allocator while allocated, shows up.

use crate::rng::mix;
use memdesc::sync::FrameWord;
use memdesc::{Pfn, PAGE_SIZE};
use std::sync::atomic::Ordering;

/// 64-bit words in a frame.
const WORDS_PER_FRAME: usize = PAGE_SIZE / 8;

/// A stamp word that did not hold what was written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mismatch {
    /// The frame.
    pub(crate) pfn: Pfn,
    /// The word's index in the frame.
    pub(crate) word: usize,
    /// What was written.
    pub(crate) expected: u64,
    /// What was read.
    pub(crate) found: u64,
}

/// The key of allocation `seq` of `cpu` in a run seeded `seed`; every frame's
/// stamp derives from it and the frame's pfn.
pub(crate) fn key(seed: u64, cpu: u32, seq: u64) -> u64 {
    mix(seed ^ mix(((cpu as u64) << 48) ^ seq))
}

/// The (first word, last word) stamps of frame `pfn` under `key`.
fn frame_stamp(key: u64, pfn: Pfn) -> (u64, u64) {
    let s = mix(key ^ pfn.0.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (s, s.rotate_left(32) ^ u64::MAX)
}

/// Writes the stamps of the frames `words` covers, the first at `head`.
pub(crate) fn write(words: &[FrameWord], head: Pfn, key: u64) {
    for (i, frame) in words.chunks_exact(WORDS_PER_FRAME).enumerate() {
        let (first, last) = frame_stamp(key, head.add(i as u64));
        // Relaxed: the frames are ours; the Release of our last put (or the
        // free of a frozen folio) orders these before any reuse.
        frame[0].store(first, Ordering::Relaxed);
        // Relaxed: as above.
        frame[WORDS_PER_FRAME - 1].store(last, Ordering::Relaxed);
    }
}

/// The first stamp in `words` (frames from `head`) that differs from what
/// [`write()`] wrote under `key`.
pub(crate) fn first_mismatch(words: &[FrameWord], head: Pfn, key: u64) -> Option<Mismatch> {
    words.chunks_exact(WORDS_PER_FRAME).enumerate().find_map(|(i, frame)| {
        let pfn = head.add(i as u64);
        let (first, last) = frame_stamp(key, pfn);
        [(0, first), (WORDS_PER_FRAME - 1, last)].into_iter().find_map(|(word, expected)| {
            // Relaxed: our own earlier store, on this thread.
            let found = frame[word].load(Ordering::Relaxed);
            (found != expected).then_some(Mismatch { pfn, word, expected, found })
        })
    })
}

/// The first non-zero word among a sample of every frame (first, second,
/// middle, last words), for a folio allocated zeroed.
pub(crate) fn first_nonzero(words: &[FrameWord], head: Pfn) -> Option<Mismatch> {
    const SAMPLE: [usize; 4] = [0, 1, WORDS_PER_FRAME / 2, WORDS_PER_FRAME - 1];
    words.chunks_exact(WORDS_PER_FRAME).enumerate().find_map(|(i, frame)| {
        SAMPLE.into_iter().find_map(|word| {
            // Relaxed: the allocator zeroed the frames before publishing the
            // folio to us (on this thread, or through the Release publish).
            let found = frame[word].load(Ordering::Relaxed);
            (found != 0).then_some(Mismatch { pfn: head.add(i as u64), word, expected: 0, found })
        })
    })
}

/// The number of 64-bit words in `nr_pages` frames.
pub(crate) fn words_in(nr_pages: u64) -> usize {
    nr_pages as usize * WORDS_PER_FRAME
}
