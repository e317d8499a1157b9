//! Loom models of TYPESAFE_BY_RCU: a reader that looks an object up inside
//! an RCU read section, takes the object's own reference and revalidates
//! its identity, against a free and a reuse of the object; and a reader
//! reading a slab's memory inside its section against the slab's return
//! to the buddy allocator. With the mutants loom must catch.
//!
//! Object memory is frame contents (plain `core` memory, invisible to
//! loom), so each object has a loom-tracked shadow here (its reference
//! count, identity key and payload cell), and each frame a contents cell in
//! the [`SlabFreer`](super::SlabFreer) that the frame's next life writes.

use super::{typesafe_get, CacheConfig, CacheRef, SlabAllocator, SlabFlags, SlabReturn};
use crate::buddy::Node;
use crate::rcu::{Rcu, RcuConfig};
use crate::sync::{AtomicU32, AtomicU64, Ordering, UnsafeCell};
use crate::testutil::{check_model_with_branches, small_config, with_node, BlockingPlatform};
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use loom::thread;
use std::boxed::Box;

/// Frames: metadata, the slab core, the caches' structs and a few slabs.
const FRAMES: u64 = 64;
/// Scheduling points per execution (booting and the kmalloc caches take
/// a few thousand).
const BRANCHES: usize = 50_000;
/// The identity keys of the looked-up object and of its reuse.
const KEY_A: u64 = 0xa;
const KEY_B: u64 = 0xb;

/// The loom shadow of one object slot: its own reference count, identity
/// key (0 while free) and payload.
struct Slot {
    refs: AtomicU32,
    key: AtomicU64,
    data: UnsafeCell<u64>,
}

/// One execution's shared state, leaked for the model's threads.
struct World {
    node: &'static Node<'static>,
    rcu: &'static Rcu<'static>,
    ret: &'static SlabReturn<'static>,
    slab: &'static SlabAllocator<'static>,
    cache: &'static CacheRef<'static, 'static>,
    /// The lookup structure: one published object address, or 0.
    published: AtomicU64,
    slots: [Slot; 4],
}

// SAFETY: the cells are the model's stand-in for object payloads: each
// access is the model's claim that the reference protocol orders it, which
// loom checks.
unsafe impl Sync for World {}

impl World {
    fn slot(&self, addr: usize) -> &Slot {
        // Objects are 1032 bytes apart: neighbours land on distinct slots.
        &self.slots[(addr >> 10) % 4]
    }

    fn ptr(&self, addr: usize) -> NonNull<u8> {
        self.slab.core().arena.ptr(addr)
    }

    /// Initialises a fresh object as `key` with one reference, the
    /// allocator's.
    fn init(&self, addr: usize, key: u64) {
        let slot = self.slot(addr);
        // SAFETY: a fresh object: nobody holds a reference to it.
        slot.data.with_mut(|d| unsafe { *d = key });
        // Release: pairs with the reader's Acquire revalidation.
        slot.key.store(key, Ordering::Release);
        // Release: pairs with the reader's Acquire get (the payload).
        slot.refs.store(1, Ordering::Release);
    }

    /// The object's own reference, taken only while it is live.
    fn get(&self, addr: usize) -> bool {
        let refs = &self.slot(addr).refs;
        // Relaxed: the CAS below rechecks.
        let mut n = refs.load(Ordering::Relaxed);
        while n != 0 {
            // Acquire: pairs with the Release of init (the payload).
            match refs.compare_exchange(n, n + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }

    /// Drops a reference; the last one frees the object.
    fn put(&self, addr: usize) {
        let slot = self.slot(addr);
        // AcqRel: the last putter sees every holder's accesses before it
        // frees.
        if slot.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Relaxed: the free below publishes nothing through it.
            slot.key.store(0, Ordering::Relaxed);
            // SAFETY: the last reference: the object is ours, freed once.
            unsafe { self.cache.free_raw(self.ptr(addr)) }.unwrap();
        }
    }

    /// The reader's access to the slab memory holding `addr`.
    fn touch_slab(&self, addr: usize) {
        let map = self.node.memmap();
        let pfn = map.pfn_of_addr(addr).unwrap();
        let (head, _) = map.compound_head(pfn).unwrap();
        self.ret.callback().touch(head);
    }
}

/// Boots a node with a slab allocator and one TYPESAFE_BY_RCU cache of
/// 1 KiB objects, runs `f`, destroys the cache, drops the allocator and
/// checks every frame came back.
fn with_world(f: impl FnOnce(&'static World)) {
    let platform: &'static BlockingPlatform = Box::leak(Box::new(BlockingPlatform::new(2)));
    with_node(FRAMES, &[], small_config(false), platform, |node| {
        // SAFETY: the node lives until `with_node` returns, and the model
        // joins its threads and drops what borrows it before that.
        let node: &'static Node<'static> = unsafe { &*(node as *const Node<'_>).cast::<Node<'static>>() };
        let ret: &'static SlabReturn<'static> = Box::leak(Box::new(SlabAllocator::slab_return(node)));
        let rcu: &'static Rcu<'static> = Box::leak(Box::new(Rcu::new(platform, RcuConfig::default()).unwrap()));
        let slab = Box::into_raw(Box::new(SlabAllocator::new(node, rcu, ret).unwrap()));
        // SAFETY: boxed above, taken back below after every thread joined.
        let slab_ref: &'static SlabAllocator<'static> = unsafe { &*slab };
        let config = CacheConfig { flags: SlabFlags::TYPESAFE_BY_RCU, ..CacheConfig::new("typesafe", 1024) };
        let cache = ManuallyDrop::new(Box::new(slab_ref.create_cache(config).unwrap()));
        // SAFETY: the box is taken back below, after every thread joined.
        let cache_ref: &'static CacheRef<'static, 'static> = unsafe { &*(&**cache as *const CacheRef<'_, '_>) };
        let slot = || Slot { refs: AtomicU32::new(0), key: AtomicU64::new(0), data: UnsafeCell::new(0) };
        let world = Box::leak(Box::new(World {
            node,
            rcu,
            ret,
            slab: slab_ref,
            cache: cache_ref,
            published: AtomicU64::new(0),
            slots: [slot(), slot(), slot(), slot()],
        }));
        f(world);
        let cache = *ManuallyDrop::into_inner(cache);
        slab_ref.destroy(cache).unwrap();
        // SAFETY: boxed above; every borrow of it (threads, the cache) is
        // gone.
        drop(unsafe { Box::from_raw(slab) });
        rcu.barrier();
        let audit = node.audit();
        assert_eq!(audit.allocated, 0, "P7 violated: {} frames still allocated", audit.allocated);
    });
}

/// The TYPESAFE_BY_RCU reader: looks the object up inside a read section,
/// takes its reference and revalidates its identity, then uses it.
fn reader(world: &World) {
    thread::yield_now();
    let section = world.rcu.read_lock();
    // Acquire: pairs with the Release publish of the setup.
    let addr = world.published.load(Ordering::Acquire) as usize;
    if addr == 0 {
        return;
    }
    world.touch_slab(addr);
    let slot = world.slot(addr);
    let found = typesafe_get(
        &section,
        || world.get(addr),
        // Acquire: pairs with the Release of init.
        || slot.key.load(Ordering::Acquire) == KEY_A,
        || world.put(addr),
    );
    if found {
        // SAFETY: a reference to a live object: its payload is stable
        // (loom checks it).
        let data = slot.data.with(|d| unsafe { *d });
        assert_eq!(data, KEY_A, "TYPESAFE_BY_RCU violated: the reader uses a reused object as the one it looked up");
        world.put(addr);
    }
    drop(section);
}

/// A reader looks object A up while the updater unpublishes and frees it
/// and allocates B, which reuses A's memory (LIFO freelist; a second live
/// object keeps the slab). The reader's revalidation rejects B.
fn revalidate_model() {
    with_world(|world| {
        let a = world.cache.alloc_raw().unwrap().as_ptr() as usize;
        let keep = world.cache.alloc_raw().unwrap();
        world.init(a, KEY_A);
        // Release: pairs with the reader's Acquire lookup.
        world.published.store(a as u64, Ordering::Release);
        let r = thread::spawn(move || reader(world));
        let w = thread::spawn(move || {
            // Release: an unpublish; readers that miss it revalidate.
            world.published.store(0, Ordering::Release);
            world.put(a);
            let b = world.cache.alloc_raw().unwrap().as_ptr() as usize;
            world.init(b, KEY_B);
            b
        });
        r.join().unwrap();
        let b = w.join().unwrap();
        world.put(b);
        // SAFETY: allocated above, freed once.
        unsafe { world.cache.free_raw(keep) }.unwrap();
    });
}

#[test]
fn typesafe_rcu_reader_revalidates_against_free_and_reuse() {
    check_model_with_branches(BRANCHES, revalidate_model);
}

/// Mutant `typesafe_rcu_no_revalidate`: the reader uses the reused object
/// as the one it looked up.
#[cfg(memdesc_mutant = "typesafe_rcu_no_revalidate")]
#[test]
fn mutant_typesafe_rcu_no_revalidate_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, revalidate_model);
}

/// A reader reads the slab memory of an object it found inside its section
/// while the updater unpublishes and frees the slab's only object: the
/// empty slab goes back to the buddy allocator only after the grace period
/// (the frame's next life writes its contents cell).
fn slab_free_model() {
    with_world(|world| {
        let a = world.cache.alloc_raw().unwrap().as_ptr() as usize;
        // Release: pairs with the reader's Acquire lookup.
        world.published.store(a as u64, Ordering::Release);
        let r = thread::spawn(move || {
            thread::yield_now();
            let section = world.rcu.read_lock();
            // Acquire: pairs with the Release publish above.
            let addr = world.published.load(Ordering::Acquire) as usize;
            if addr != 0 {
                world.touch_slab(addr);
            }
            drop(section);
        });
        let w = thread::spawn(move || {
            // Release: an unpublish.
            world.published.store(0, Ordering::Release);
            // SAFETY: allocated above, unpublished, freed once.
            unsafe { world.cache.free_raw(world.ptr(a)) }.unwrap();
            world.slab.rcu_barrier();
        });
        r.join().unwrap();
        w.join().unwrap();
    });
}

#[test]
fn typesafe_rcu_slab_frames_wait_for_readers() {
    check_model_with_branches(BRANCHES, slab_free_model);
}

/// Mutant `slab_free_without_gp`: the empty TYPESAFE_BY_RCU slab goes back
/// to the buddy allocator at once, under the reader.
#[cfg(memdesc_mutant = "slab_free_without_gp")]
#[test]
fn mutant_slab_free_without_gp_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, slab_free_model);
}

/// P7.2: two CPUs free objects of one slab while one of them allocates:
/// the slab's owner words (loom cells under the model) are touched only
/// under the cache's list lock, so loom reports no race, and the audit
/// finds the in-use count matching the freelist.
#[test]
fn slab_owner_words_under_the_list_lock() {
    check_model_with_branches(BRANCHES, || {
        with_world(|world| {
            let a = world.cache.alloc_raw().unwrap().as_ptr() as usize;
            let b = world.cache.alloc_raw().unwrap().as_ptr() as usize;
            let keep = world.cache.alloc_raw().unwrap();
            let t = thread::spawn(move || {
                // SAFETY: allocated above, freed once (here).
                unsafe { world.cache.free_raw(world.ptr(a)) }.unwrap();
            });
            // SAFETY: allocated above, freed once (here).
            unsafe { world.cache.free_raw(world.ptr(b)) }.unwrap();
            let c = world.cache.alloc_raw().unwrap();
            t.join().unwrap();
            let audit = world.slab.audit();
            assert_eq!(audit.violations, 0, "P7 violated: slab state disagrees with its freelist: {audit:?}");
            // SAFETY: allocated above, freed once.
            unsafe {
                world.cache.free_raw(c).unwrap();
                world.cache.free_raw(keep).unwrap();
            }
        });
    });
}
