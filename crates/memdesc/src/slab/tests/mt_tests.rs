//! Multi-threaded slab tests (sized for Miri): stamped objects freed by
//! other threads, and TYPESAFE_BY_RCU readers that revalidate what they
//! find while a writer frees, reuses and shrinks.

use super::super::*;
use crate::platform::SpinPlatform;
use crate::rcu::{Rcu, RcuConfig};
use crate::testutil::{small_config, with_node};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as StdOrdering};
use std::sync::Mutex;
use std::vec::Vec;

const FRAMES: u64 = if cfg!(miri) { 256 } else { 1024 };
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

/// An object of the TYPESAFE_BY_RCU cache: its identity key (0 while
/// free), then payload.
const OBJ_SIZE: usize = 256;
const SLOTS: usize = 4;

fn key_of<'p>(p: NonNull<u8>) -> &'p AtomicU64 {
    // SAFETY: objects of the cache are 8-aligned slab memory that stays a
    // slab frame while any reader may hold the pointer (TYPESAFE_BY_RCU),
    // and the allocator never writes the first word of such an object (its
    // free pointer lives past the object).
    unsafe { &*p.as_ptr().cast::<AtomicU64>() }
}

#[test]
fn typesafe_by_rcu_readers_revalidate_against_free_reuse_and_shrink() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ret = SlabAllocator::slab_return(node);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
        let slab = SlabAllocator::new(node, &rcu, &ret).unwrap();
        let config = CacheConfig { flags: SlabFlags::TYPESAFE_BY_RCU, ..CacheConfig::new("rcu-mt", OBJ_SIZE) };
        let cache = slab.create_cache(config).unwrap();
        // Published objects: the slot's expected key, then its pointer.
        let keys: [AtomicU64; SLOTS] = Default::default();
        let ptrs: [AtomicUsize; SLOTS] = Default::default();
        let done = AtomicBool::new(false);
        let found = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                let (slab, keys, ptrs, done, found, rcu) = (&slab, &keys, &ptrs, &done, &found, &rcu);
                s.spawn(move || {
                    let mut i = 0;
                    while !done.load(StdOrdering::Acquire) || i < 4 {
                        i += 1;
                        let _guard = rcu.read_lock();
                        let slot = i % SLOTS;
                        // Acquire: pairs with the writer's Release publish.
                        let addr = ptrs[slot].load(StdOrdering::Acquire);
                        if addr == 0 {
                            continue;
                        }
                        let p = slab.core().arena.ptr(addr);
                        // The frame stays a slab for the whole section.
                        let map = slab.node().memmap();
                        let (head, _) = map.compound_head(map.pfn_of_addr(addr).unwrap()).unwrap();
                        assert!(
                            matches!(map.page(head).unwrap().page_type(), PageType::Slab { .. }),
                            "slab frame freed under an RCU reader"
                        );
                        // Revalidate: the object may have been freed and
                        // reused; only a matching key makes it ours.
                        let key = key_of(p).load(StdOrdering::Acquire);
                        if key != 0 && key == keys[slot].load(StdOrdering::Acquire) {
                            found.fetch_add(1, StdOrdering::Relaxed);
                        }
                    }
                });
            }
            for (next_key, round) in (1u64..).zip(0..ROUNDS) {
                let slot = round % SLOTS;
                let old = ptrs[slot].swap(0, StdOrdering::AcqRel);
                if old != 0 {
                    let p = slab.core().arena.ptr(old);
                    key_of(p).store(0, StdOrdering::Release);
                    // SAFETY: unpublished above; allocated by this thread,
                    // freed once (readers only revalidate).
                    unsafe { cache.free_raw(p) }.unwrap();
                }
                let p = cache.alloc_raw().unwrap();
                key_of(p).store(next_key, StdOrdering::Release);
                keys[slot].store(next_key, StdOrdering::Release);
                // Release: publishes the key to readers (their Acquire load).
                ptrs[slot].store(p.as_ptr() as usize, StdOrdering::Release);
                if round % 16 == 0 {
                    // Burst: allocate and free a slab's worth, then shrink,
                    // so slab frames go through RCU under the readers.
                    let burst: Vec<_> = (0..24).map(|_| cache.alloc_raw().unwrap()).collect();
                    for q in burst {
                        // SAFETY: allocated just above, never published.
                        unsafe { cache.free_raw(q) }.unwrap();
                    }
                    slab.shrink(&cache);
                    rcu.poll();
                }
            }
            done.store(true, StdOrdering::Release);
        });
        for ptr in &ptrs {
            let addr = ptr.swap(0, StdOrdering::AcqRel);
            if addr != 0 {
                // SAFETY: unpublished; allocated by the writer, freed once.
                unsafe { cache.free_raw(slab.core().arena.ptr(addr)) }.unwrap();
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
