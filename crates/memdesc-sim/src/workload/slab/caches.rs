//! The simulator's slab caches and what an object of each holds: a stamp
//! (CPU, sequence) in its first and last word, checked before every free;
//! the constructor cache's objects also hold the constructed pattern
//! everywhere else, and go back to it before they are freed; the identity
//! cache's objects are zeroed by their constructor and go back to zero.

use crate::violations::Violations;
use memdesc::slab::{
    CacheConfig, CacheRef, DestroyError, KmallocObject, SlabAllocator, SlabError, SlabFlags, SlabObject,
};
use std::sync::atomic::Ordering;

/// The byte the constructor cache's constructor writes everywhere.
const CTOR_BYTE: u8 = 0xC7;
/// Bytes in a stamp word.
const WORD: usize = 8;

/// What a cache is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// TYPESAFE_BY_RCU objects with an identity and a reference count,
    /// published to the readers (see `identity`).
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
    ("sim_identity", 512, Kind::Identity),
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

/// The allocation source after the caches: kmalloc.
pub(crate) const KMALLOC: usize = CACHES.len();

/// How often a CPU allocates from each cache, then from kmalloc (weights,
/// in [`CACHES`] order, then [`KMALLOC`]): small objects most, 4–8 KiB
/// objects rarely. The identity cache holds only published objects, so
/// its slabs go empty as objects are retired, and go back through RCU
/// under the readers.
pub(crate) const WEIGHTS: [u32; 12] = [0, 6, 8, 10, 10, 8, 6, 6, 4, 2, 2, 22];

/// kmalloc sizes asked for from the size classes: every class and sizes
/// between classes.
pub(crate) const KMALLOC_SIZES: [usize; 14] = [8, 13, 16, 24, 40, 64, 96, 100, 128, 192, 256, 300, 1000, 2048];
/// kmalloc sizes on the page-granular path (whole frames from the buddy
/// allocator), asked for rarely: each is a buddy allocation, and the
/// allocator CPUs of the mixed workload share the zones' locks.
pub(crate) const KMALLOC_LARGE_SIZES: [usize; 2] = [3000, 8192];
/// Chance per kmalloc, per mille, of a page-granular size.
pub(crate) const KMALLOC_LARGE_PER_MILLE: u64 = 10;

fn construct(bytes: &mut [u8]) {
    bytes.fill(CTOR_BYTE);
}

/// The identity cache's constructor: identity 0 and reference count 0
/// (free), once per object when its slab is made, as Linux's
/// SLAB_TYPESAFE_BY_RCU users initialise their locks.
fn construct_identity(bytes: &mut [u8]) {
    bytes.fill(0);
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
            let ctor = match kind {
                Kind::Ctor => Some(construct as fn(&mut [u8])),
                Kind::Identity => Some(construct_identity as fn(&mut [u8])),
                Kind::Debug | Kind::Sized => None,
            };
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
/// source `source` (a cache index, or [`KMALLOC`]): odd, so never zero.
pub(crate) fn stamp_of(seed: u64, cpu: u32, seq: u64, source: usize) -> u64 {
    crate::workload::stamp::key(seed, cpu, seq) ^ (source as u64) | 1
}

/// An object a slab CPU holds: from one of [`CACHES`], or from kmalloc.
pub(crate) enum Object<'c, 'a> {
    /// An object of a cache.
    Cache(SlabObject<'c, 'a>),
    /// A kmalloc allocation (a size class, or whole frames above 2 KiB).
    Kmalloc(KmallocObject<'c, 'a>),
}

impl Object<'_, '_> {
    /// The object's address.
    pub(crate) fn addr(&self) -> usize {
        match self {
            Self::Cache(o) => o.as_ptr().as_ptr() as usize,
            Self::Kmalloc(o) => o.as_ptr().as_ptr() as usize,
        }
    }

    /// Stamps the first word, and the last if there are two.
    ///
    /// Cache objects are written through their atomic words (the only view
    /// a TYPESAFE_BY_RCU object has; Relaxed: the object is this CPU's,
    /// and a hand-over to another CPU goes through a channel, which orders
    /// it); kmalloc allocations through their bytes.
    pub(crate) fn write_stamp(&mut self, stamp: u64) {
        match self {
            Self::Cache(o) => {
                let words = o.words();
                // Relaxed (both): see above.
                words[0].store(stamp, Ordering::Relaxed);
                if words.len() >= 2 {
                    words[words.len() - 1].store(!stamp, Ordering::Relaxed);
                }
            }
            Self::Kmalloc(o) => {
                let bytes = o.bytes_mut();
                let len = bytes.len();
                bytes[..WORD].copy_from_slice(&stamp.to_ne_bytes());
                if len >= 2 * WORD {
                    bytes[len - WORD..].copy_from_slice(&(!stamp).to_ne_bytes());
                }
            }
        }
    }

    /// (expected, found) of the first stamp word that does not hold
    /// `stamp`'s.
    pub(crate) fn stamp_mismatch(&self, stamp: u64) -> Option<(u64, u64)> {
        let (first, last) = match self {
            Self::Cache(o) => {
                let words = o.words();
                // Relaxed (both): the object is this CPU's (see write_stamp).
                let first = words[0].load(Ordering::Relaxed);
                (first, (words.len() >= 2).then(|| words[words.len() - 1].load(Ordering::Relaxed)))
            }
            Self::Kmalloc(o) => {
                let bytes = o.bytes();
                let len = bytes.len();
                let word = |at: usize| u64::from_ne_bytes(bytes[at..at + WORD].try_into().unwrap_or([0; WORD]));
                (word(0), (len >= 2 * WORD).then(|| word(len - WORD)))
            }
        };
        if first != stamp {
            return Some((stamp, first));
        }
        match last {
            Some(last) if last != !stamp => Some((!stamp, last)),
            _ => None,
        }
    }

    /// Frees the object: at once, or after a grace period (`kfree_rcu`).
    pub(crate) fn free(self, rcu: bool) {
        // A live handle frees without error: the lookup through the
        // descriptor finds it.
        match (self, rcu) {
            (Self::Cache(o), true) => drop(o.kfree_rcu()),
            (Self::Kmalloc(o), true) => drop(o.kfree_rcu()),
            (o, false) => drop(o),
        }
    }
}

/// The first byte of a constructor-cache object that is not the
/// constructed pattern, if any.
pub(crate) fn unconstructed(obj: &SlabObject<'_, '_>) -> Option<usize> {
    obj.bytes().iter().position(|&b| b != CTOR_BYTE)
}

/// Puts a cache object back to its constructed state before it is freed:
/// the constructor cache's pattern, the identity cache's zeroes (reference
/// count 0: no reader can take a reference to a free object).
pub(crate) fn reconstruct(obj: &SlabObject<'_, '_>, kind: Kind) {
    let value = match kind {
        Kind::Ctor => u64::from_ne_bytes([CTOR_BYTE; WORD]),
        Kind::Identity => 0,
        Kind::Debug | Kind::Sized => return,
    };
    for word in obj.words() {
        // Relaxed: the object is this CPU's; its free orders these stores
        // before any reuse (and the identity cache's readers take the
        // reference count with Acquire after the next owner's Release).
        word.store(value, Ordering::Relaxed);
    }
}
