//! Slab tests on one thread: layout, alloc/free, lookups that never trust
//! the pointer, kmalloc, empty-slab limits, shrink/destroy, RCU frees,
//! debug checks, reports; and a property test against a map of live
//! objects.

use super::*;
use crate::buddy::Node;
use crate::platform::SpinPlatform;
use crate::rcu::{Rcu, RcuConfig};
use crate::testutil::{small_config, with_node};
use std::collections::BTreeMap;
use std::vec::Vec;

/// Multi-threaded tests.
mod mt_tests;

const FRAMES: u64 = if cfg!(miri) { 512 } else { 1024 };

/// Boots a node with a slab allocator, runs `f`, drops the allocator and
/// checks every frame came back.
fn with_slab(f: impl FnOnce(&Node<'_>, &SlabAllocator<'_>)) {
    with_slab_frames(FRAMES, f);
}

/// [`with_slab`] over a node of `frames` frames.
fn with_slab_frames(frames: u64, f: impl FnOnce(&Node<'_>, &SlabAllocator<'_>)) {
    with_node(frames, &[], small_config(false), &SpinPlatform, |node| {
        let ret = SlabAllocator::slab_return(node);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).expect("rcu");
        let slab = SlabAllocator::new(node, &rcu, &ret).expect("slab");
        assert_eq!(slab.audit().violations, 0);
        f(node, &slab);
        let audit = slab.audit();
        assert_eq!(audit.violations, 0, "{audit:?}");
        drop(slab);
        rcu.barrier();
        assert_eq!(node.audit().allocated, 0, "every frame is back");
        assert_eq!(node.audit().violations, 0);
    });
}

fn stamp(ptr: NonNull<u8>, len: usize, value: u8) {
    // SAFETY: the test owns the object of `len` bytes at `ptr`.
    unsafe { ptr.as_ptr().write_bytes(value, len) };
}

fn check_stamp(ptr: NonNull<u8>, len: usize, value: u8) {
    // SAFETY: the test owns the object of `len` bytes at `ptr`.
    let bytes = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), len) };
    assert!(bytes.iter().all(|&b| b == value), "object {ptr:?} lost its stamp {value}");
}

#[test]
fn new_refuses_another_nodes_slab_return() {
    with_node(64, &[], small_config(false), &SpinPlatform, |a| {
        with_node(64, &[], small_config(false), &SpinPlatform, |b| {
            let ret = SlabAllocator::slab_return(b);
            let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
            assert_eq!(SlabAllocator::new(a, &rcu, &ret).err(), Some(SlabError::ForeignReturn));
            assert_eq!(a.audit().allocated, 0);
        });
    });
}

#[test]
fn order_keeps_waste_low_and_objects_many() {
    for size in [8, 24, 96, 192, 700, 1024, 2048, 3000, 5000] {
        let layout = layout::Layout::new(size, 8, SlabFlags::NONE, false).unwrap();
        let bytes = PAGE_SIZE << layout.order.get();
        let waste = bytes - usize::from(layout.objects) * layout.stride;
        let fraction = if size <= 2048 { 16 } else { 8 };
        assert!(waste * fraction <= bytes, "size {size}: waste {waste} of {bytes}");
        assert!(layout.objects >= 1);
        if size <= 2048 {
            assert!(layout.objects >= 8, "size {size}: {} objects", layout.objects);
        }
    }
    assert_eq!(layout::Layout::new(0, 8, SlabFlags::NONE, false), Err(SlabError::BadSize(0)));
    assert_eq!(layout::Layout::new(8, 3, SlabFlags::NONE, false), Err(SlabError::BadAlign(3)));
    assert!(layout::Layout::new(MAX_OBJECT_SIZE + 1, 8, SlabFlags::NONE, false).is_err());
}

#[test]
#[cfg_attr(miri, ignore = "pure arithmetic over 600k offsets: native only")]
fn object_indices_by_reciprocal_match_division() {
    for size in [8, 24, 40, 96, 200, 1000, 1500, 3000, 7000, 20000] {
        for flags in [SlabFlags::NONE, SlabFlags::DEBUG] {
            let layout = layout::Layout::new(size, 8, flags, false).unwrap();
            let slab = PAGE_SIZE << layout.order.get();
            for offset in 0..slab {
                let by_division = offset
                    .checked_sub(layout.obj_off)
                    .filter(|slot| slot % layout.stride == 0 && slot / layout.stride < usize::from(layout.objects))
                    .map(|slot| slot / layout.stride);
                assert_eq!(layout.index_of(offset), by_division, "size {size} offset {offset}");
            }
        }
    }
}

#[test]
fn objects_round_trip_and_slabs_are_frozen_and_typed() {
    with_slab(|node, slab| {
        let cache = slab.create_cache(CacheConfig::new("test", 40)).unwrap();
        let (per_slab, _) = cache.slab_shape();
        let objs: Vec<_> = (0..usize::from(per_slab) + 3).map(|_| cache.alloc_raw().unwrap()).collect();
        for (i, &p) in objs.iter().enumerate() {
            stamp(p, 40, i as u8);
            let pfn = node.memmap().pfn_of_addr(p.as_ptr() as usize).unwrap();
            let (head, _) = node.memmap().compound_head(pfn).unwrap();
            let page = node.memmap().page(head).unwrap();
            assert_eq!(page.page_type(), PageType::Slab { cache: cache.id() });
            assert_eq!(page.ref_count(), 0, "P3: a slab is never counted");
            assert!(node.try_get(pfn).is_err(), "P3: no speculative reference to a slab");
        }
        let info = slab.slabinfo().find(|i| i.name == "test").unwrap();
        assert_eq!(info.active_objs, objs.len() as u64);
        assert_eq!(info.slabs, 2);
        assert_eq!(slab.audit().violations, 0);
        for (i, &p) in objs.iter().enumerate() {
            check_stamp(p, 40, i as u8);
            // SAFETY: allocated above, freed once.
            unsafe { cache.free_raw(p) }.unwrap();
        }
        let mut obj = cache.alloc().unwrap();
        obj.bytes_mut().fill(9);
        assert!(obj.bytes().iter().all(|&b| b == 9));
        drop(obj);
        slab.destroy(cache).unwrap();
    });
}

#[test]
fn frees_are_checked_through_the_descriptor() {
    with_slab(|node, slab| {
        let a = slab.create_cache(CacheConfig::new("a", 64)).unwrap();
        let b = slab.create_cache(CacheConfig::new("b", 64)).unwrap();
        let pa = a.alloc_raw().unwrap();
        let pb = b.alloc_raw().unwrap();
        // SAFETY: each pointer below is checked and refused; nothing is
        // freed (the one inside `pa` is in bounds of its slab).
        unsafe {
            assert_eq!(a.free_raw(pb), Err(SlabError::WrongCache { expected: a.id(), found: b.id() }));
            let inside = NonNull::new_unchecked(pa.as_ptr().add(8));
            assert!(matches!(a.free_raw(inside), Err(SlabError::Misaligned { .. })));
            let mut local = 0u64;
            let stack = NonNull::from(&mut local).cast::<u8>();
            assert_eq!(a.free_raw(stack), Err(SlabError::NotSlabObject(stack.as_ptr() as usize)));
            assert!(matches!(slab.kfree(stack), Err(SlabError::NotSlabObject(_))));
        }
        // A frame of another owner, in the node's memory.
        let mut anon = node.alloc_frozen(Order::ZERO, Gfp::USER).unwrap();
        let anon_ptr = NonNull::from(&mut anon.bytes_mut()[0]);
        // SAFETY: refused, nothing freed.
        assert!(matches!(unsafe { slab.kfree(anon_ptr) }, Err(SlabError::NotSlabObject(_))));
        drop(anon);
        // SAFETY: allocated above, freed once.
        unsafe {
            a.free_raw(pa).unwrap();
            slab.kfree(pb).unwrap();
        }
        slab.destroy(a).unwrap();
        slab.destroy(b).unwrap();
    });
}

/// The `*_on` entry points (a token the caller entered with): they take
/// the sheaves (a freed object comes back first) and refuse what
/// `free_raw` and `kfree` refuse, by the same checks.
#[test]
fn the_on_entry_points_take_the_sheaves_and_check_every_free() {
    use crate::platform::Platform;
    use crate::testutil::{set_thread_cpu, ThreadCpus};
    static ONE: ThreadCpus = ThreadCpus { nr: 1 };
    set_thread_cpu(Some(0));
    with_node(FRAMES, &[], small_config(false), &ONE, |node| {
        let ret = SlabAllocator::slab_return(node);
        let rcu = Rcu::new(&ONE, RcuConfig::default()).expect("rcu");
        let slab = SlabAllocator::new(node, &rcu, &ret).expect("slab");
        let a = slab.create_cache(CacheConfig::new("a", 64)).unwrap();
        let b = slab.create_cache(CacheConfig::new("b", 64)).unwrap();
        let dbg = debug_cache(&slab);
        let cpu = ONE.local_enter().expect("this thread runs as CPU 0");
        // SAFETY: `cpu` is a token of the platform the node booted with;
        // each pointer is freed once, or refused and not freed.
        unsafe {
            let pa = a.alloc_on(&cpu).unwrap();
            stamp(pa, 64, 0xa5);
            a.free_on(&cpu, pa).unwrap();
            assert_eq!(a.alloc_on(&cpu), Some(pa), "the sheaf's last free comes back first");
            let pb = b.alloc_on(&cpu).unwrap();
            assert_eq!(a.free_on(&cpu, pb), Err(SlabError::WrongCache { expected: a.id(), found: b.id() }));
            let inside = NonNull::new_unchecked(pa.as_ptr().add(8));
            assert!(matches!(a.free_on(&cpu, inside), Err(SlabError::Misaligned { .. })));
            assert!(matches!(slab.kfree_on(&cpu, inside), Err(SlabError::Misaligned { .. })));
            let mut local = 0u64;
            let stack = NonNull::from(&mut local).cast::<u8>();
            assert_eq!(a.free_on(&cpu, stack), Err(SlabError::NotSlabObject(stack.as_ptr() as usize)));
            assert!(matches!(slab.kfree_on(&cpu, stack), Err(SlabError::NotSlabObject(_))));
            let k = slab.kmalloc_on(&cpu, 64, 8).unwrap();
            assert_eq!(slab.ksize(k), Ok(64));
            assert!(matches!(a.free_on(&cpu, k), Err(SlabError::WrongCache { .. })));
            slab.kfree_on(&cpu, k).unwrap();
            assert_eq!(slab.kmalloc_on(&cpu, 64, 8), Ok(k), "kfree_on cached it on this CPU");
            slab.kfree_on(&cpu, k).unwrap();
            assert_eq!(slab.kmalloc_on(&cpu, 0, 8), Err(SlabError::BadSize(0)));
            assert_eq!(slab.kmalloc_on(&cpu, 64, 3), Err(SlabError::BadAlign(3)));
            let large = slab.kmalloc_on(&cpu, 3 * PAGE_SIZE, 8).unwrap();
            assert!(matches!(a.free_on(&cpu, large), Err(SlabError::WrongCache { found: SLAB_LARGE, .. })));
            slab.kfree_on(&cpu, large).unwrap();
            let pd = dbg.alloc_on(&cpu).unwrap();
            dbg.free_on(&cpu, pd).unwrap();
            assert!(matches!(dbg.free_on(&cpu, pd), Err(SlabError::DoubleFree { .. })));
            a.free_on(&cpu, pa).unwrap();
            b.free_on(&cpu, pb).unwrap();
        }
        ONE.local_exit(cpu);
        slab.destroy(a).unwrap();
        slab.destroy(b).unwrap();
        slab.destroy(dbg).unwrap();
        assert_eq!(slab.audit().violations, 0);
        drop(slab);
        rcu.barrier();
        assert_eq!(node.audit().allocated, 0, "every frame is back");
    });
    set_thread_cpu(None);
}

/// Sheaves given back in runs of objects per slab (a shrink's flush): every
/// slab's counts and freelist come out right, so all of them empty and go
/// back, whatever order the objects were freed in.
#[test]
fn a_give_back_returns_runs_per_slab_and_every_slab_empties() {
    use crate::platform::Platform;
    use crate::testutil::{set_thread_cpu, ThreadCpus};
    static ONE: ThreadCpus = ThreadCpus { nr: 1 };
    set_thread_cpu(Some(0));
    with_node(FRAMES, &[], small_config(false), &ONE, |node| {
        let ret = SlabAllocator::slab_return(node);
        let rcu = Rcu::new(&ONE, RcuConfig::default()).expect("rcu");
        let slab = SlabAllocator::new(node, &rcu, &ret).expect("slab");
        let cache = slab.create_cache(CacheConfig::new("runs", 64)).unwrap();
        let before = node.audit().allocated;
        let (per_slab, pages) = cache.slab_shape();
        let objs: Vec<_> = (0..usize::from(per_slab) * 4 + 7).map(|_| cache.alloc_raw().unwrap()).collect();
        let slabs = (node.audit().allocated - before) / pages;
        assert!(slabs >= 4, "the objects span several slabs");
        // Runs of one slab, single objects alternating between slabs, and
        // runs in reverse: evens forwards, then odds backwards.
        let order = objs.iter().step_by(2).chain(objs.iter().skip(1).step_by(2).rev());
        let cpu = ONE.local_enter().expect("CPU 0");
        for &p in order {
            // SAFETY: allocated above, freed once; the token is this
            // node's platform's.
            unsafe { cache.free_on(&cpu, p) }.unwrap();
        }
        ONE.local_exit(cpu);
        assert_eq!(slab.audit().violations, 0);
        assert_eq!(slab.shrink(&cache), slabs, "every slab emptied and went back");
        assert_eq!(node.audit().allocated, before);
        slab.destroy(cache).unwrap();
        drop(slab);
        rcu.barrier();
        assert_eq!(node.audit().allocated, 0, "every frame is back");
    });
    set_thread_cpu(None);
}

#[test]
fn kmalloc_picks_classes_honours_alignment_and_goes_large() {
    with_slab(|_, slab| {
        let mut live = Vec::new();
        for (size, align, class) in [
            (1, 1, 8),
            (8, 8, 8),
            (9, 1, 16),
            (65, 8, 96),
            (96, 64, 128),
            (100, 8, 128),
            (129, 8, 192),
            (193, 8, 256),
            (2048, 8, 2048),
            (64, 1024, 1024),
        ] {
            let p = slab.kmalloc(size, align).unwrap();
            assert_eq!(slab.ksize(p), Ok(class), "size {size} align {align}");
            assert_eq!(p.as_ptr() as usize % align, 0);
            assert_eq!(p.as_ptr() as usize % natural(class), 0, "class {class} naturally aligned");
            stamp(p, size, 0x5a);
            live.push((p, size));
        }
        let large = slab.kmalloc(5000, 8).unwrap();
        assert_eq!(slab.ksize(large), Ok(2 * PAGE_SIZE));
        assert_eq!(large.as_ptr() as usize % PAGE_SIZE, 0);
        stamp(large, 5000, 1);
        assert_eq!(slab.event(SlabEvent::LargeAlloc), 1);
        let inner = NonNull::new(large.as_ptr().wrapping_add(PAGE_SIZE)).unwrap();
        // SAFETY: refused: not the allocation's start; nothing is freed.
        let refused = unsafe { slab.kfree(inner) };
        assert!(matches!(refused, Err(SlabError::Misaligned { .. })));
        assert_eq!(slab.audit().large_frames, 2);
        // SAFETY: each allocated above and freed once.
        unsafe {
            slab.kfree(large).unwrap();
            for (p, size) in live {
                check_stamp(p, size, 0x5a);
                slab.kfree(p).unwrap();
            }
        }
        assert_eq!(slab.kmalloc(0, 8), Err(SlabError::BadSize(0)));
        assert_eq!(slab.kmalloc(8, 3), Err(SlabError::BadAlign(3)));
        assert_eq!(slab.audit().large_frames, 0);
        assert!(slab.shrink_all() > 0);
        assert!(slab.slabinfo().all(|i| i.slabs == 0), "shrink_all gave every empty slab back");
    });
}

fn natural(size: usize) -> usize {
    1 << size.trailing_zeros()
}

#[test]
fn empty_slabs_beyond_min_partial_go_back_and_shrink_returns_the_rest() {
    with_slab(|node, slab| {
        let cache = slab.create_cache(CacheConfig::new("big", 1024)).unwrap();
        let (per_slab, pages) = cache.slab_shape();
        let before = node.audit().allocated;
        let min_partial = cache.cache().min_partial;
        assert_eq!(min_partial, 5, "Linux's floor: log2(1024) / 2 is below it");
        let slabs = min_partial + 3;
        let n = usize::from(per_slab) * slabs as usize;
        let objs: Vec<_> = (0..n).map(|_| cache.alloc_raw().unwrap()).collect();
        assert_eq!(node.audit().allocated, before + slabs * pages);
        for p in objs {
            // SAFETY: allocated above, freed once.
            unsafe { cache.free_raw(p) }.unwrap();
        }
        let kept = slab.slabinfo().find(|i| i.name == "big").unwrap().slabs;
        assert_eq!(kept, min_partial, "min_partial empty slabs kept, the rest given back");
        assert_eq!(slab.shrink(&cache), min_partial);
        assert_eq!(node.audit().allocated, before);
        slab.destroy(cache).unwrap();
    });
}

#[test]
fn destroy_refuses_while_objects_are_live_and_says_how_many() {
    with_slab(|_, slab| {
        let cache = slab.create_cache(CacheConfig::new("live", 32)).unwrap();
        let p = cache.alloc_raw().unwrap();
        let q = cache.alloc_raw().unwrap();
        let err = slab.destroy(cache).unwrap_err();
        assert_eq!(err.live, 2);
        let cache = err.cache;
        // SAFETY: allocated above, freed once.
        unsafe {
            cache.free_raw(p).unwrap();
            cache.free_raw(q).unwrap();
        }
        slab.destroy(cache).unwrap();
        assert!(slab.slabinfo().all(|i| i.name != "live"));
    });
}

#[test]
fn cache_ids_run_out_and_come_back() {
    // Every cache struct (its per-CPU sheaves for MAX_CPUS CPUs included)
    // takes an order-3 folio: all the ids need 4 MiB, Miri or not.
    with_slab_frames(1024, |_, slab| {
        let mut caches = Vec::new();
        loop {
            match slab.create_cache(CacheConfig::new("many", 16)) {
                Ok(c) => caches.push(c),
                Err(e) => {
                    assert_eq!(e, SlabError::TooManyCaches);
                    break;
                }
            }
        }
        assert_eq!(caches.len(), MAX_CACHES - KMALLOC_SIZES.len());
        for c in caches {
            slab.destroy(c).unwrap();
        }
        slab.destroy(slab.create_cache(CacheConfig::new("again", 16)).unwrap()).unwrap();
    });
}

#[test]
fn constructor_runs_once_per_object_at_slab_creation() {
    fn ctor(obj: &mut [u8]) {
        obj.fill(0xc7);
    }
    with_slab(|_, slab| {
        let config = CacheConfig { ctor: Some(ctor), ..CacheConfig::new("ctor", 24) };
        let cache = slab.create_cache(config).unwrap();
        let p = cache.alloc_raw().unwrap();
        check_stamp(p, 24, 0xc7);
        // SAFETY: allocated above, freed once (in its constructed state).
        unsafe { cache.free_raw(p) }.unwrap();
        let q = cache.alloc_raw().unwrap();
        check_stamp(q, 24, 0xc7);
        // SAFETY: as above.
        unsafe { cache.free_raw(q) }.unwrap();
        slab.destroy(cache).unwrap();
    });
}

#[test]
fn typesafe_by_rcu_slabs_go_back_only_after_a_grace_period() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ret = SlabAllocator::slab_return(node);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
        let slab = SlabAllocator::new(node, &rcu, &ret).unwrap();
        let config = CacheConfig { flags: SlabFlags::TYPESAFE_BY_RCU, ..CacheConfig::new("rcu", 512) };
        let cache = slab.create_cache(config).unwrap();
        let (per_slab, pages) = cache.slab_shape();
        let min_partial = cache.cache().min_partial;
        let slabs = min_partial + 1;
        let objs: Vec<_> = (0..usize::from(per_slab) * slabs as usize).map(|_| cache.alloc_raw().unwrap()).collect();
        let reader = rcu.read_lock();
        for p in objs {
            // SAFETY: allocated above, freed once.
            unsafe { cache.free_raw(p) }.unwrap();
        }
        assert_eq!(slab.shrink(&cache), min_partial, "the slab beyond min_partial went earlier");
        let allocated = node.audit().allocated;
        rcu.poll();
        assert_eq!(node.audit().allocated, allocated, "no slab frame freed under a reader");
        assert_eq!(slab.event(SlabEvent::SlabsRcuFreed), 0);
        assert_eq!(slab.audit().unlisted_frames, slabs * pages, "queued slabs keep the slab type");
        drop(reader);
        slab.rcu_barrier();
        assert_eq!(slab.event(SlabEvent::SlabsRcuFreed), slabs);
        assert_eq!(node.audit().allocated, allocated - slabs * pages);
        slab.destroy(cache).unwrap();
        drop(slab);
        rcu.barrier();
        assert_eq!(node.audit().allocated, 0);
    });
}

#[test]
fn kfree_rcu_frees_in_batches_after_a_grace_period() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ret = SlabAllocator::slab_return(node);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
        let slab = SlabAllocator::new(node, &rcu, &ret).unwrap();
        let n = if cfg!(miri) { 20 } else { rcu_free::BATCH_CAP + 10 };
        let objs: Vec<_> = (0..n).map(|_| slab.kmalloc(32, 8).unwrap()).collect();
        let active = |slab: &SlabAllocator<'_>| slab.slabinfo().find(|i| i.name == "kmalloc-32").unwrap().active_objs;
        let reader = rcu.read_lock();
        for &p in &objs {
            // SAFETY: allocated above, given up once.
            unsafe { slab.kfree_rcu(p) }.unwrap();
        }
        slab.kfree_rcu_flush();
        rcu.poll();
        assert_eq!(active(&slab), n as u64, "nothing freed under a reader");
        drop(reader);
        slab.rcu_barrier();
        assert_eq!(active(&slab), 0);
        let batches = if cfg!(miri) { 1 } else { 2 };
        assert_eq!(slab.event(SlabEvent::KfreeRcuBatches), batches);
        assert_eq!(ret.callback().batches_run(), batches);
        let mut local = 0u8;
        // SAFETY: refused: not an allocation; nothing is queued.
        let refused = unsafe { slab.kfree_rcu(NonNull::from(&mut local)) };
        assert!(refused.is_err());
        drop(slab);
        rcu.barrier();
        assert_eq!(node.audit().allocated, 0);
    });
}

#[test]
fn safe_handles_cover_kmalloc_words_and_typesafe_readers() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ret = SlabAllocator::slab_return(node);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
        let other_rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
        let slab = SlabAllocator::new(node, &rcu, &ret).unwrap();
        let mut k = slab.kmalloc_object(100, 8).unwrap();
        k.bytes_mut().fill(3);
        assert_eq!((k.len(), k.bytes().iter().map(|&b| u32::from(b)).sum::<u32>()), (100, 300));
        let big = slab.kmalloc_object(9000, 8).unwrap();
        assert_eq!(big.bytes().len(), 9000);
        drop((k, big));
        slab.kmalloc_object(64, 8).unwrap().kfree_rcu().unwrap();

        let config = CacheConfig { flags: SlabFlags::TYPESAFE_BY_RCU, ..CacheConfig::new("ids", 24) };
        let ids = slab.create_cache(config).unwrap();
        let plain = slab.create_cache(CacheConfig::new("plain", 24)).unwrap();
        let mut obj = ids.alloc().unwrap();
        assert!(obj.bytes_mut().is_empty(), "no plain bytes for TYPESAFE_BY_RCU objects");
        assert_eq!(obj.words().len(), 3);
        obj.words()[0].store(77, core::sync::atomic::Ordering::Release);
        let addr = obj.as_ptr().as_ptr() as usize;
        let p = plain.alloc().unwrap();
        {
            let section = rcu.read_lock();
            let words = slab.typesafe_words(&section, addr).unwrap();
            assert_eq!(words[0].load(core::sync::atomic::Ordering::Acquire), 77);
            assert!(slab.typesafe_words(&section, p.as_ptr().as_ptr() as usize).is_none(), "not TYPESAFE_BY_RCU");
            assert!(slab.typesafe_words(&section, addr + 8).is_none(), "not an object start");
            let foreign = other_rcu.read_lock();
            assert!(slab.typesafe_words(&foreign, addr).is_none(), "a section of another RCU");
        }
        obj.kfree_rcu().unwrap();
        drop(p);
        slab.rcu_barrier();
        assert_eq!(slab.slabinfo().find(|i| i.name == "ids").unwrap().active_objs, 0);
        slab.destroy(ids).unwrap();
        slab.destroy(plain).unwrap();
        drop(slab);
        rcu.barrier();
        assert_eq!(node.audit().allocated, 0);
    });
}

fn debug_cache<'s, 'a>(slab: &'s SlabAllocator<'a>) -> CacheRef<'s, 'a> {
    slab.create_cache(CacheConfig { flags: SlabFlags::DEBUG, ..CacheConfig::new("dbg", 40) }).unwrap()
}

#[test]
fn debug_detects_a_red_zone_overwrite_on_free_and_quarantines() {
    with_slab(|_, slab| {
        let cache = debug_cache(slab);
        let p = cache.alloc_raw().unwrap();
        // SAFETY: one byte past the object: the bug under test, inside the
        // slot's red zone (the slab's memory).
        unsafe { p.as_ptr().add(40).write(0) };
        // SAFETY: allocated above.
        let err = unsafe { cache.free_raw(p) }.unwrap_err();
        let SlabError::BadObject(report) = err else { panic!("{err:?}") };
        assert_eq!(report.kind, BadObjectKind::RightRedZone);
        assert_eq!(report.cache, "dbg");
        assert_eq!(slab.bad_objects().last(), Some(report));
        assert_eq!(slab.event(SlabEvent::DebugReports), 1);
        let info = slab.slabinfo().find(|i| i.name == "dbg").unwrap();
        assert_eq!((info.active_objs, info.quarantined_objs), (0, 1));
        // The quarantined object is never handed out again.
        let q = cache.alloc_raw().unwrap();
        assert_ne!(q, p);
        // SAFETY: allocated above, freed once.
        unsafe { cache.free_raw(q) }.unwrap();
        slab.destroy(cache).unwrap();
    });
}

#[test]
fn debug_detects_use_after_free_on_the_next_allocation() {
    with_slab(|_, slab| {
        let cache = debug_cache(slab);
        let (per_slab, _) = cache.slab_shape();
        let p = cache.alloc_raw().unwrap();
        // SAFETY: allocated above, freed once.
        unsafe { cache.free_raw(p) }.unwrap();
        // SAFETY: the use-after-free write under test, into a poisoned
        // free object of the slab.
        unsafe { p.as_ptr().add(3).write(0x42) };
        // LIFO freelist: the next allocation meets it first.
        let objs: Vec<_> = (0..usize::from(per_slab)).map(|_| cache.alloc_raw().unwrap()).collect();
        assert!(!objs.contains(&p), "the corrupted object was handed out");
        let report = slab.bad_objects().last().unwrap();
        assert_eq!(report.kind, BadObjectKind::PoisonOverwritten);
        assert_eq!(report.at, report.offset + 3);
        for q in objs {
            // SAFETY: allocated above, freed once.
            unsafe { cache.free_raw(q) }.unwrap();
        }
        assert_eq!(slab.audit().violations, 0);
        slab.destroy(cache).unwrap();
    });
}

#[test]
fn debug_never_follows_a_corrupted_free_pointer() {
    with_slab(|_, slab| {
        let cache = debug_cache(slab);
        let layout = layout::Layout::new(40, 8, SlabFlags::DEBUG, false).unwrap();
        let p = cache.alloc_raw().unwrap();
        // SAFETY: allocated above, freed once.
        unsafe { cache.free_raw(p) }.unwrap();
        // SAFETY: the bug under test: a write into the free object's slot,
        // past its red zone, over its free pointer (the slab's memory).
        unsafe { p.as_ptr().add(layout.fp_off - layout.obj_off).cast::<u64>().write_unaligned(0xdead_beef) };
        let q = cache.alloc_raw().unwrap();
        assert_eq!(q, p, "the object itself is intact and handed out");
        let report = slab.bad_objects().last().unwrap();
        assert_eq!(report.kind, BadObjectKind::FreePointerCorrupted);
        let info = slab.slabinfo().find(|i| i.name == "dbg").unwrap();
        assert_eq!(info.quarantined_objs, u64::from(cache.slab_shape().0) - 1, "the rest of the chain is abandoned");
        let r = cache.alloc_raw().unwrap();
        assert_eq!(slab.audit().violations, 0);
        // SAFETY: allocated above, freed once.
        unsafe {
            cache.free_raw(q).unwrap();
            cache.free_raw(r).unwrap();
        }
        slab.destroy(cache).unwrap();
    });
}

#[test]
fn debug_detects_a_double_free() {
    with_slab(|_, slab| {
        let cache = debug_cache(slab);
        let p = cache.alloc_raw().unwrap();
        let keep = cache.alloc_raw().unwrap();
        // SAFETY: the first free is legal; the second is refused, not done.
        unsafe {
            cache.free_raw(p).unwrap();
            assert!(matches!(cache.free_raw(p), Err(SlabError::DoubleFree { cache: c, .. }) if c == cache.id()));
            cache.free_raw(keep).unwrap();
        }
        assert_eq!(slab.audit().violations, 0);
        slab.destroy(cache).unwrap();
    });
}

/// Frees an object the property test's model holds live.
fn free_live(slab: &SlabAllocator<'_>, caches: &[CacheRef<'_, '_>], cache: Option<usize>, p: NonNull<u8>) {
    // SAFETY: the model holds `p` live (allocated, not freed), and removed
    // it: it is freed once.
    let freed = unsafe {
        match cache {
            Some(c) => caches[c].free_raw(p),
            None => slab.kfree(p),
        }
    };
    freed.unwrap();
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    Free(usize),
    /// A free on another thread (a remote CPU's free).
    RemoteFree(usize),
    Kmalloc(usize),
    Shrink(usize),
    /// Destroy the cache: refused with the model's live count, or done
    /// (and the cache created again) when none is live.
    Destroy(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..3usize).prop_map(Op::Alloc),
        3 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::RemoteFree),
        2 => (1..6000usize).prop_map(Op::Kmalloc),
        1 => (0..3usize).prop_map(Op::Shrink),
        1 => (0..3usize).prop_map(Op::Destroy),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 48 },
        ..Default::default()
    })]

    /// Random alloc/free/kmalloc/shrink over three caches against a map of
    /// live objects: contents stamps survive, counts agree, every frame is
    /// back at the end (with_slab).
    #[test]
    fn slab_matches_a_map_of_live_objects(ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 20 } else { 300 })) {
        with_slab(|_, slab| {
            let configs = [
                CacheConfig::new("p8", 8),
                CacheConfig { flags: SlabFlags::TYPESAFE_BY_RCU, ..CacheConfig::new("prcu", 200) },
                CacheConfig { flags: SlabFlags::DEBUG, ..CacheConfig::new("pdbg", 1500) },
            ];
            let mut caches: Vec<_> = configs.iter().map(|c| slab.create_cache(*c).unwrap()).collect();
            // Live objects: address -> (cache or None for kmalloc, size, stamp).
            let mut live: BTreeMap<usize, (Option<usize>, usize, u8)> = BTreeMap::new();
            let mut next = 1u8;
            for op in ops {
                match &op {
                    &Op::Alloc(c) => {
                        let p = caches[c].alloc_raw().unwrap();
                        let size = configs[c].size;
                        stamp(p, size, next);
                        assert!(live.insert(p.as_ptr() as usize, (Some(c), size, next)).is_none(), "handed out twice");
                    }
                    &Op::Kmalloc(size) => {
                        let p = slab.kmalloc(size, 8).unwrap();
                        assert!(slab.ksize(p).unwrap() >= size);
                        stamp(p, size, next);
                        assert!(live.insert(p.as_ptr() as usize, (None, size, next)).is_none(), "handed out twice");
                    }
                    &Op::Free(pick) | &Op::RemoteFree(pick) if !live.is_empty() => {
                        let addr = *live.keys().nth(pick % live.len()).unwrap();
                        let (cache, size, value) = live.remove(&addr).unwrap();
                        let p = slab.core().arena.ptr(addr);
                        check_stamp(p, size, value);
                        if matches!(op, Op::RemoteFree(_)) {
                            let caches = &caches;
                            std::thread::scope(|s| {
                                s.spawn(move || free_live(slab, caches, cache, slab.core().arena.ptr(addr)));
                            });
                        } else {
                            free_live(slab, &caches, cache, p);
                        }
                    }
                    Op::Free(_) | Op::RemoteFree(_) => {}
                    &Op::Destroy(c) => {
                        let model_live = live.values().filter(|(cache, ..)| *cache == Some(c)).count() as u64;
                        let cache = caches.remove(c);
                        match slab.destroy(cache) {
                            Ok(()) => {
                                assert_eq!(model_live, 0, "destroyed with live objects");
                                caches.insert(c, slab.create_cache(configs[c]).unwrap());
                            }
                            Err(e) => {
                                assert_eq!(e.live, model_live, "destroy's live count");
                                caches.insert(c, e.cache);
                            }
                        }
                    }
                    &Op::Shrink(c) => {
                        slab.shrink(&caches[c]);
                    }
                }
                next = next.wrapping_add(1).max(1);
            }
            let audit = slab.audit();
            assert_eq!(audit.violations, 0, "{audit:?}");
            let active: u64 = slab.slabinfo().map(|i| i.active_objs).sum();
            let large = live.iter().filter(|(_, (c, s, _))| c.is_none() && *s > KMALLOC_MAX_CACHE_SIZE).count();
            assert_eq!(active + large as u64, live.len() as u64);
            for (addr, (cache, size, value)) in live {
                let p = slab.core().arena.ptr(addr);
                check_stamp(p, size, value);
                free_live(slab, &caches, cache, p);
            }
            for c in caches {
                slab.destroy(c).unwrap();
            }
        });
    }
}
