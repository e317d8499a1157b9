//! Frame contents for shared holders: byte cursors that stay defined while
//! other holders read and write the same frames.
//!
//! # Access by ownership level
//! - The **exclusive** owner of a folio (a frozen folio: no reference, no
//!   pin, no speculative getter can reach it) gets plain `&[u8]` /
//!   `&mut [u8]`, and folio-to-folio copies at memcpy speed; exclusivity is
//!   what makes ordinary Rust references sound.
//! - **Shared** holders (counted references; later GUP pins that a device
//!   reads while the process writes) get a [`FrameReader`] and a
//!   [`FrameWriter`]. Another holder may write the same bytes at any moment,
//!   so no `&[u8]` may exist: a concurrent write under a shared reference is
//!   undefined behaviour. The cursors copy through 64-bit atomic words
//!   instead (a plain `mov` on x86-64), which keeps every race defined: a
//!   racing reader sees each word either before or after a write. They order
//!   nothing by themselves; holders that need a happens-before edge take it
//!   from a protocol (the folio lock's Release/Acquire, a refcount put).
//!
//! Every access is a whole aligned word (never a byte-sized atomic on the
//! same memory), so readers and writers never mix access sizes; a write of
//! part of a word merges its bytes with a compare-exchange loop, so a
//! concurrent writer of the other bytes of that word loses nothing.
//! This is the model of Asterinas OSTD's `VmReader`/`VmWriter`: a cursor
//! over memory that may change under it, with lengths, not references.

use crate::sync::{FrameWord, Ordering};

const WORD: usize = core::mem::size_of::<u64>();

/// A read cursor over frame contents that other holders may be writing.
///
/// Reads copy out whole atomic words; a racing write shows as either its old
/// or its new value, word by word, never as undefined behaviour.
#[derive(Clone, Debug)]
pub struct FrameReader<'a> {
    words: &'a [FrameWord],
    pos: usize,
}

/// A write cursor over frame contents that other holders may be reading or
/// writing. See [`FrameReader`].
#[derive(Debug)]
pub struct FrameWriter<'a> {
    words: &'a [FrameWord],
    pos: usize,
}

/// The cursor state both cursors share: a byte position in a word slice.
macro_rules! cursor_common {
    ($cursor:ident) => {
        impl<'a> $cursor<'a> {
            /// A cursor at byte 0 of `words`.
            pub fn new(words: &'a [FrameWord]) -> Self {
                Self { words, pos: 0 }
            }

            /// Bytes covered, in all.
            pub fn len(&self) -> usize {
                self.words.len() * WORD
            }

            /// Whether it covers no bytes.
            pub fn is_empty(&self) -> bool {
                self.words.is_empty()
            }

            /// The cursor's byte position.
            pub fn position(&self) -> usize {
                self.pos
            }

            /// Bytes left after the cursor.
            pub fn remaining(&self) -> usize {
                self.len() - self.pos
            }

            /// Moves the cursor to byte `pos`, clamped to the end; returns the
            /// new position.
            pub fn seek(&mut self, pos: usize) -> usize {
                self.pos = pos.min(self.len());
                self.pos
            }

            /// Advances the cursor by up to `n` bytes; returns how many it
            /// skipped.
            pub fn skip(&mut self, n: usize) -> usize {
                let n = n.min(self.remaining());
                self.pos += n;
                n
            }
        }
    };
}

cursor_common!(FrameReader);
cursor_common!(FrameWriter);

impl FrameReader<'_> {
    /// Copies bytes from the cursor into `buf`, as many as fit and remain;
    /// returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.remaining());
        let mut done = 0;
        while done < n {
            let (index, offset) = (self.pos / WORD, self.pos % WORD);
            let take = (WORD - offset).min(n - done);
            // Relaxed: contents carry no ordering of their own (see the
            // module doc); the atomic only keeps a racing write defined.
            let bytes = self.words[index].load(Ordering::Relaxed).to_ne_bytes();
            buf[done..done + take].copy_from_slice(&bytes[offset..offset + take]);
            done += take;
            self.pos += take;
        }
        n
    }

    /// Reads the next 8 bytes as a native-endian `u64`, or `None` if fewer
    /// remain (the cursor does not move then).
    pub fn read_u64(&mut self) -> Option<u64> {
        if self.remaining() < WORD {
            return None;
        }
        let mut bytes = [0; WORD];
        self.read(&mut bytes);
        Some(u64::from_ne_bytes(bytes))
    }
}

impl FrameWriter<'_> {
    /// Copies `buf` to the cursor, as much as remains; returns how many
    /// bytes it wrote.
    pub fn write(&mut self, buf: &[u8]) -> usize {
        let n = buf.len().min(self.remaining());
        let mut done = 0;
        while done < n {
            let (index, offset) = (self.pos / WORD, self.pos % WORD);
            let take = (WORD - offset).min(n - done);
            self.store_bytes(index, offset, &buf[done..done + take]);
            done += take;
            self.pos += take;
        }
        n
    }

    /// Writes `byte` `n` times from the cursor (fewer if fewer remain);
    /// returns how many bytes it wrote.
    pub fn fill(&mut self, byte: u8, n: usize) -> usize {
        let n = n.min(self.remaining());
        let pattern = [byte; WORD];
        let mut done = 0;
        while done < n {
            let offset = self.pos % WORD;
            let take = (WORD - offset).min(n - done);
            self.store_bytes(self.pos / WORD, offset, &pattern[..take]);
            done += take;
            self.pos += take;
        }
        n
    }

    /// Writes `value` as 8 native-endian bytes; `false` (nothing written) if
    /// fewer than 8 remain.
    pub fn write_u64(&mut self, value: u64) -> bool {
        if self.remaining() < WORD {
            return false;
        }
        self.write(&value.to_ne_bytes());
        true
    }

    /// Copies everything `reader` has left (or as much as fits here);
    /// returns the bytes copied. Both cursors advance.
    pub fn copy_from(&mut self, reader: &mut FrameReader<'_>) -> usize {
        let mut chunk = [0u8; 256];
        let mut copied = 0;
        loop {
            let want = chunk.len().min(self.remaining()).min(reader.remaining());
            if want == 0 {
                return copied;
            }
            let got = reader.read(&mut chunk[..want]);
            self.write(&chunk[..got]);
            copied += got;
        }
    }

    /// Stores `bytes` at byte `offset` of word `index`.
    fn store_bytes(&self, index: usize, offset: usize, bytes: &[u8]) {
        let word = &self.words[index];
        if bytes.len() == WORD {
            let mut whole = [0; WORD];
            whole.copy_from_slice(bytes);
            // Relaxed: see the module doc; a whole-word store needs no merge.
            word.store(u64::from_ne_bytes(whole), Ordering::Relaxed);
            return;
        }
        // A part of a word: merge with what is there now, retrying if another
        // writer changed the word meanwhile, so its bytes survive.
        // Relaxed: both sides; contents order nothing, the CAS only makes the
        // merge atomic.
        let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            let mut merged = old.to_ne_bytes();
            merged[offset..offset + bytes.len()].copy_from_slice(bytes);
            Some(u64::from_ne_bytes(merged))
        });
    }
}
