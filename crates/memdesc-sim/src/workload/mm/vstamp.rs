//! Stamps of user memory: a 64-bit word that is a function of (run seed,
//! address space, the word's virtual address, generation), written by a
//! process at the first and last word of each page it writes, so that
//! anyone holding the page (the process reading through its mapping, a
//! pinner reading through its pin) can tell whether the word belongs at
//! that address without knowing which generation to expect.
//!
//! Layout: the generation in the top [`GEN_BITS`] bits, a hash of
//! everything in the rest. One word is stored and loaded whole (the
//! content cursors store an aligned word at once), so a racing reader sees
//! the old stamp or the new one, never a mix. Zero is "never written" (or
//! dropped by `MADV_DONTNEED`): generations start at 1.

use crate::rng::mix;

/// Bits of the generation.
const GEN_BITS: u32 = 24;
/// Bits of the hash.
const HASH_BITS: u32 = 64 - GEN_BITS;
/// The largest generation; the next one wraps to 1.
pub(crate) const MAX_GEN: u32 = (1 << GEN_BITS) - 1;

/// The stamp of the word at `va` in address space `asid`, generation `gen`
/// (1..=[`MAX_GEN`]).
pub(crate) fn stamp(seed: u64, asid: u32, va: u64, gen: u32) -> u64 {
    debug_assert!((1..=MAX_GEN).contains(&gen));
    let hash = mix(seed ^ mix((u64::from(asid) << 32) ^ u64::from(gen)) ^ va.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (u64::from(gen) << HASH_BITS) | (hash >> GEN_BITS)
}

/// Whether `word`, read at `va` of address space `asid`, is zero or a stamp
/// of some generation for that address.
pub(crate) fn is_valid(seed: u64, asid: u32, va: u64, word: u64) -> bool {
    let gen = (word >> HASH_BITS) as u32;
    word == 0 || (gen != 0 && stamp(seed, asid, va, gen) == word)
}

/// The generation after `gen`, skipping 0.
pub(crate) fn next_gen(gen: u32) -> u32 {
    if gen >= MAX_GEN {
        1
    } else {
        gen + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_valid_only_at_its_own_address_and_space() {
        let s = stamp(7, 3, 0x20_0000, 5);
        assert!(is_valid(7, 3, 0x20_0000, s));
        assert!(is_valid(7, 3, 0x20_0000, 0));
        assert!(!is_valid(7, 3, 0x20_1000, s), "another page's stamp");
        assert!(!is_valid(7, 4, 0x20_0000, s), "another address space's stamp");
        assert!(!is_valid(8, 3, 0x20_0000, s), "another run's stamp");
        assert!(!is_valid(7, 3, 0x20_0000, s ^ 1), "a flipped bit");
        assert_ne!(stamp(7, 3, 0x20_0000, 6), s);
        assert_eq!(s >> HASH_BITS, 5);
    }

    #[test]
    fn generations_wrap_past_zero() {
        assert_eq!(next_gen(1), 2);
        assert_eq!(next_gen(MAX_GEN), 1);
        assert!(is_valid(1, 1, 0x40_0000, stamp(1, 1, 0x40_0000, MAX_GEN)));
    }
}
