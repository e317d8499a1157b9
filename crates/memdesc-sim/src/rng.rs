//! A small, fast, seedable random number generator (SplitMix64), so a run is
//! repeatable from its seed without a dependency.
//!
//! Each CPU gets its own stream ([`Rng::stream`]); [`mix`] is the same
//! finalizer, used to derive stamps.

/// The golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective mix of 64 bits.
pub(crate) const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 generator (Steele, Lea and Flood, 2014): one word of state,
/// passes BigCrush, and any seed is fine.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// The generator for `seed`.
    pub(crate) const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Stream `stream` of `seed`: independent generators for each CPU.
    pub(crate) const fn stream(seed: u64, stream: u64) -> Self {
        Self::new(mix(seed ^ mix(stream.wrapping_add(1).wrapping_mul(GOLDEN))))
    }

    /// The next 64 random bits.
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// A number in `0..n` (Lemire's multiply-shift; the bias is below 2^-32
    /// for the small `n` used here). `n` must not be 0.
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A number in `range`, which must not be empty.
    #[inline]
    pub(crate) fn in_range(&mut self, range: std::ops::RangeInclusive<u32>) -> u32 {
        let (lo, hi) = range.into_inner();
        lo + self.below((hi - lo) as u64 + 1) as u32
    }

    /// True with probability `per_mille / 1000`.
    #[inline]
    pub(crate) fn per_mille(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// An index into `weights`, each chosen in proportion to its weight.
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut pick = self.below(total.max(1));
        for (i, &w) in weights.iter().enumerate() {
            if pick < w as u64 {
                return i;
            }
            pick -= w as u64;
        }
        weights.len() - 1
    }
}

#[cfg(test)]
mod tests;
