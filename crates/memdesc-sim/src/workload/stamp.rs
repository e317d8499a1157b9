//! Stamps: a 64-bit value derived from (seed, CPU, allocation, pfn) written
//! into the first and last word of every frame a CPU owns and checked before
//! it frees the frame, so any frame handed to two owners, or written by the
//! allocator while allocated, shows up.

use crate::rng::mix;
use memdesc::{FrameReader, FrameWriter, Pfn, PAGE_SIZE};

/// Bytes in a stamp word.
const WORD: usize = 8;
/// 64-bit words in a frame.
const WORDS_PER_FRAME: usize = PAGE_SIZE / WORD;

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

/// Writes the stamps of the frames `writer` covers, the first at `head`.
///
/// Through the core's content cursor: a frozen folio's writer needs the
/// exclusive handle, a counted one's is shared (the stamps are still ours:
/// no other holder writes them; the Release of our last put, or the free of
/// a frozen folio, orders them before any reuse).
pub(crate) fn write(mut writer: FrameWriter<'_>, head: Pfn, key: u64) {
    for i in 0..writer.len() / PAGE_SIZE {
        let (first, last) = frame_stamp(key, head.add(i as u64));
        writer.seek(i * PAGE_SIZE);
        writer.write_u64(first);
        writer.seek((i + 1) * PAGE_SIZE - WORD);
        writer.write_u64(last);
    }
}

/// The word at byte `offset` of what `reader` covers.
fn word_at(reader: &mut FrameReader<'_>, offset: usize) -> u64 {
    reader.seek(offset);
    reader.read_u64().unwrap_or(0)
}

/// The first stamp (frames from `head`) that differs from what [`write()`]
/// wrote under `key`.
pub(crate) fn first_mismatch(mut reader: FrameReader<'_>, head: Pfn, key: u64) -> Option<Mismatch> {
    (0..reader.len() / PAGE_SIZE).find_map(|i| {
        let pfn = head.add(i as u64);
        let (first, last) = frame_stamp(key, pfn);
        [(0, first), (WORDS_PER_FRAME - 1, last)].into_iter().find_map(|(word, expected)| {
            let found = word_at(&mut reader, i * PAGE_SIZE + word * WORD);
            (found != expected).then_some(Mismatch { pfn, word, expected, found })
        })
    })
}

/// The first non-zero word among a sample of every frame (first, second,
/// middle, last words), for a folio allocated zeroed.
pub(crate) fn first_nonzero(mut reader: FrameReader<'_>, head: Pfn) -> Option<Mismatch> {
    const SAMPLE: [usize; 4] = [0, 1, WORDS_PER_FRAME / 2, WORDS_PER_FRAME - 1];
    (0..reader.len() / PAGE_SIZE).find_map(|i| {
        SAMPLE.into_iter().find_map(|word| {
            let found = word_at(&mut reader, i * PAGE_SIZE + word * WORD);
            (found != 0).then_some(Mismatch { pfn: head.add(i as u64), word, expected: 0, found })
        })
    })
}

/// The number of bytes in `nr_pages` frames.
pub(crate) fn bytes_in(nr_pages: u64) -> usize {
    nr_pages as usize * PAGE_SIZE
}
