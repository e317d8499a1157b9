//! The simulator's slab caches and what an object of each holds: a stamp
//! (CPU, sequence) in its first and last word, checked before every free;
//! the constructor cache's objects also hold the constructed pattern
//! everywhere else, and go back to it before they are freed.

use crate::violations::Violations;
use memdesc::slab::{CacheConfig, CacheRef, DestroyError, SlabAllocator, SlabError, SlabFlags, SlabObject};

/// The byte the constructor cache's constructor writes everywhere.
const CTOR_BYTE: u8 = 0xC7;
/// Bytes in a stamp word.
const WORD: usize = 8;

/// What a cache is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// TYPESAFE_BY_RCU objects with an identity, published to the readers.
    Identity,
    /// slub_debug checks (red zones, poison, state words).
    Debug,
    /// Objects built by a constructor, freed in their constructed state.
    Ctor,
    /// Plain objects of one size, 8 B to 8 KiB (multi-frame slabs above a
    /// page).
    Sized,
}

/// The caches every run creates: (name, size, kind). Identity first (the
/// readers' cache).
pub(crate) const CACHES: [(&str, usize, Kind); 11] = [
    ("sim_identity", 64, Kind::Identity),
    ("sim_debug", 200, Kind::Debug),
    ("sim_ctor", 120, Kind::Ctor),
    ("sim_8", 8, Kind::Sized),
    ("sim_24", 24, Kind::Sized),
    ("sim_96", 96, Kind::Sized),
    ("sim_192", 192, Kind::Sized),
    ("sim_512", 512, Kind::Sized),
    ("sim_2048", 2048, Kind::Sized),
    ("sim_4096", 4096, Kind::Sized),
    ("sim_8192", 8192, Kind::Sized),
];

/// The index of the identity cache in [`CACHES`].
pub(crate) const IDENTITY: usize = 0;

/// How often a CPU allocates from each cache (weights, in [`CACHES`]
/// order): small objects most, 4–8 KiB objects rarely.
pub(crate) const WEIGHTS: [u32; 11] = [20, 6, 8, 12, 12, 10, 8, 8, 6, 3, 2];

fn construct(bytes: &mut [u8]) {
    bytes.fill(CTOR_BYTE);
}

/// The caches of a run, over one allocator.
pub(crate) struct Caches<'s, 'a> {
    /// The allocator.
    pub(crate) slab: &'s SlabAllocator<'a>,
    /// One per [`CACHES`] entry.
    pub(crate) caches: Vec<CacheRef<'s, 'a>>,
}

impl<'s, 'a> Caches<'s, 'a> {
    /// Creates every cache of [`CACHES`] in `slab`.
    ///
    /// # Errors
    /// The first cache the allocator refused (those created before are
    /// destroyed).
    pub(crate) fn create(slab: &'s SlabAllocator<'a>) -> Result<Self, SlabError> {
        let mut caches = Vec::new();
        for (name, size, kind) in CACHES {
            let flags = match kind {
                Kind::Identity => SlabFlags::TYPESAFE_BY_RCU,
                Kind::Debug => SlabFlags::DEBUG,
                Kind::Ctor | Kind::Sized => SlabFlags::NONE,
            };
            let ctor = (kind == Kind::Ctor).then_some(construct as fn(&mut [u8]));
            let config = CacheConfig { ctor, flags, ..CacheConfig::new(name, size) };
            match slab.create_cache(config) {
                Ok(cache) => caches.push(cache),
                Err(e) => {
                    for cache in caches {
                        // Empty: nothing was allocated from them.
                        let _ = slab.destroy(cache);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Self { slab, caches })
    }

    /// Destroys every cache; a cache that still has live objects is a
    /// violation (it stays registered: the allocator's drop leaks it with
    /// its slabs, which the node's audit then counts as leaked frames).
    pub(crate) fn destroy(self, v: &mut Violations) {
        for cache in self.caches {
            if let Err(DestroyError { live, cache }) = self.slab.destroy(cache) {
                let name = cache.config().name;
                v.record(|| format!("slab: cache {name} still has {live} live objects at the end"));
            }
        }
    }
}

/// The stamp of allocation `seq` of slab CPU `cpu`, for an object of
/// cache `cache`: never zero.
pub(crate) fn stamp_of(seed: u64, cpu: u32, seq: u64, cache: usize) -> u64 {
    crate::workload::stamp::key(seed, cpu, seq) ^ (cache as u64) | 1
}

/// Stamps `obj`: its first word, and its last one if it has two.
pub(crate) fn write_stamp(obj: &mut SlabObject<'_, '_>, stamp: u64) {
    let bytes = obj.bytes_mut();
    let len = bytes.len();
    bytes[..WORD].copy_from_slice(&stamp.to_ne_bytes());
    if len >= 2 * WORD {
        bytes[len - WORD..].copy_from_slice(&(!stamp).to_ne_bytes());
    }
}

/// What the stamp words of `obj` hold if not the stamp `stamp`.
pub(crate) fn stamp_mismatch(obj: &SlabObject<'_, '_>, stamp: u64) -> Option<(u64, u64)> {
    let bytes = obj.bytes();
    let len = bytes.len();
    let word = |at: usize| u64::from_ne_bytes(bytes[at..at + WORD].try_into().unwrap_or([0; WORD]));
    if word(0) != stamp {
        return Some((stamp, word(0)));
    }
    if len >= 2 * WORD && word(len - WORD) != !stamp {
        return Some((!stamp, word(len - WORD)));
    }
    None
}

/// The first byte of a constructor-cache object that is not the
/// constructed pattern (from `from`), if any.
pub(crate) fn unconstructed(obj: &SlabObject<'_, '_>, from: usize) -> Option<usize> {
    obj.bytes().iter().skip(from).position(|&b| b != CTOR_BYTE).map(|i| i + from)
}

/// Puts the stamp words of a constructor-cache object back to the
/// constructed pattern (objects are freed constructed).
pub(crate) fn reconstruct(obj: &mut SlabObject<'_, '_>) {
    construct(obj.bytes_mut());
}
