//! Multi-threaded slab tests (sized for Miri): stamped objects freed by
//! other threads, and TYPESAFE_BY_RCU readers that revalidate what they
//! find while a writer frees, reuses and shrinks.

use super::super::*;
use crate::platform::SpinPlatform;
use crate::rcu::{Rcu, RcuConfig};
use crate::testutil::{small_config, with_node};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as StdOrdering};
use std::sync::Mutex;
use std::vec::Vec;

const FRAMES: u64 = if cfg!(miri) { 512 } else { 1024 };
const ROUNDS: usize = if cfg!(miri) { 8 } else { 400 };

fn stamp_of(thread: usize, i: usize) -> u64 {
    ((thread as u64) << 32) | i as u64 | 1 << 63
}

#[test]
fn threads_free_each_others_stamped_objects() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ret = SlabAllocator::slab_return(node);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
        let slab = SlabAllocator::new(node, &rcu, &ret).unwrap();
        let cache = slab.create_cache(CacheConfig::new("mt", 48)).unwrap();
        // Objects handed to the other threads: (address, stamp, cache?).
        let exchange: Mutex<Vec<(usize, u64, bool)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..3 {
                let (slab, cache, exchange) = (&slab, &cache, &exchange);
                s.spawn(move || {
                    for i in 0..ROUNDS {
                        let from_cache = i % 2 == 0;
                        let p = if from_cache {
                            cache.alloc_raw().unwrap()
                        } else {
                            slab.kmalloc(40 + i % 200, 8).unwrap()
                        };
                        let stamp = stamp_of(t, i);
                        // SAFETY: a fresh object of at least 40 bytes, ours.
                        unsafe { p.as_ptr().cast::<u64>().write_unaligned(stamp) };
                        let theirs = {
                            let mut ex = exchange.lock().unwrap();
                            ex.push((p.as_ptr() as usize, stamp, from_cache));
                            // Take the oldest object, most likely another thread's.
                            (ex.len() > 4).then(|| ex.remove(0))
                        };
                        if let Some((addr, stamp, from_cache)) = theirs {
                            let p = slab.core().arena.ptr(addr);
                            // SAFETY: handed over through the exchange: ours
                            // now, freed once below.
                            assert_eq!(unsafe { p.as_ptr().cast::<u64>().read_unaligned() }, stamp);
                            // SAFETY: as above.
                            let freed = unsafe {
                                if from_cache {
                                    cache.free_raw(p)
                                } else {
                                    slab.kfree(p)
                                }
                            };
                            freed.unwrap();
                        }
                    }
                });
            }
        });
        for (addr, stamp, from_cache) in exchange.into_inner().unwrap() {
            let p = slab.core().arena.ptr(addr);
            // SAFETY: the last holders are gone; each left in the exchange
            // is freed once here.
            assert_eq!(unsafe { p.as_ptr().cast::<u64>().read_unaligned() }, stamp);
            // SAFETY: as above.
            let freed = unsafe {
                if from_cache {
                    cache.free_raw(p)
                } else {
                    slab.kfree(p)
                }
            };
            freed.unwrap();
        }
        assert_eq!(slab.audit().violations, 0);
        slab.destroy(cache).unwrap();
        drop(slab);
        rcu.barrier();
        assert_eq!(node.audit().allocated, 0);
    });
}

/// An object of the TYPESAFE_BY_RCU cache: word 0 its identity key (0
/// while free), word 1 its own reference count, word 2 a payload derived
/// from the key.
const OBJ_SIZE: usize = 256;
const SLOTS: usize = 4;

/// Drops a reference to the object at `addr`; the last one frees it.
fn put(slab: &SlabAllocator<'_>, cache: &CacheRef<'_, '_>, addr: usize) {
    let words = slab.core().arena.words(addr, 3);
    if words[1].fetch_sub(1, StdOrdering::AcqRel) == 1 {
        words[0].store(0, StdOrdering::Relaxed);
        // SAFETY: the last reference: the object is ours, freed once.
        unsafe { cache.free_raw(slab.core().arena.ptr(addr)) }.unwrap();
    }
}

#[test]
fn typesafe_by_rcu_readers_revalidate_against_free_reuse_and_shrink() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ret = SlabAllocator::slab_return(node);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
        let slab = SlabAllocator::new(node, &rcu, &ret).unwrap();
        let config = CacheConfig { flags: SlabFlags::TYPESAFE_BY_RCU, ..CacheConfig::new("rcu-mt", OBJ_SIZE) };
        let cache = slab.create_cache(config).unwrap();
        // Published objects: the slot's expected key, then its address.
        let keys: [AtomicU64; SLOTS] = Default::default();
        let ptrs: [AtomicUsize; SLOTS] = Default::default();
        let done = AtomicBool::new(false);
        let hits = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                let (slab, cache, keys, ptrs, done, hits, rcu) = (&slab, &cache, &keys, &ptrs, &done, &hits, &rcu);
                s.spawn(move || {
                    let mut i = 0;
                    while !done.load(StdOrdering::Acquire) || i < 4 {
                        i += 1;
                        let section = rcu.read_lock();
                        let slot = i % SLOTS;
                        let key = keys[slot].load(StdOrdering::Acquire);
                        let addr = ptrs[slot].load(StdOrdering::Acquire);
                        let Some(words) = slab.typesafe_words(&section, addr) else { continue };
                        let get = || {
                            let mut n = words[1].load(StdOrdering::Relaxed);
                            while n != 0 {
                                match words[1].compare_exchange(n, n + 1, StdOrdering::Acquire, StdOrdering::Relaxed) {
                                    Ok(_) => return true,
                                    Err(now) => n = now,
                                }
                            }
                            false
                        };
                        let revalidate = || words[0].load(StdOrdering::Acquire) == key;
                        if typesafe_get(&section, get, revalidate, || put(slab, cache, addr)) {
                            assert_eq!(words[2].load(StdOrdering::Relaxed), key * 3, "a revalidated object's payload");
                            hits.fetch_add(1, StdOrdering::Relaxed);
                            put(slab, cache, addr);
                        }
                    }
                });
            }
            for (key, round) in (1u64..).zip(0..ROUNDS) {
                let slot = round % SLOTS;
                let old = ptrs[slot].swap(0, StdOrdering::AcqRel);
                if old != 0 {
                    put(&slab, &cache, old);
                }
                let obj = cache.alloc().unwrap();
                let words = obj.words();
                words[2].store(key * 3, StdOrdering::Relaxed);
                words[0].store(key, StdOrdering::Relaxed);
                words[1].store(1, StdOrdering::Release);
                let addr = obj.into_raw().as_ptr() as usize;
                keys[slot].store(key, StdOrdering::Release);
                ptrs[slot].store(addr, StdOrdering::Release);
                if round % 16 == 0 {
                    // Burst: allocate and free a slab's worth, then shrink,
                    // so slab frames go through RCU under the readers.
                    let burst: Vec<_> = (0..24).map(|_| cache.alloc().unwrap()).collect();
                    drop(burst);
                    slab.shrink(&cache);
                    rcu.poll();
                }
            }
            done.store(true, StdOrdering::Release);
        });
        for ptr in &ptrs {
            let addr = ptr.swap(0, StdOrdering::AcqRel);
            if addr != 0 {
                put(&slab, &cache, addr);
            }
        }
        slab.destroy(cache).unwrap();
        slab.rcu_barrier();
        assert!(slab.event(SlabEvent::SlabsRcuFreed) > 0, "slab frames went through RCU");
        drop(slab);
        rcu.barrier();
        assert_eq!(node.audit().allocated, 0);
    });
}
