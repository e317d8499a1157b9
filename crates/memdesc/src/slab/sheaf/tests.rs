//! Unit and multi-threaded tests of the sheaves against a vector-backed
//! object source, and (under `--cfg memdesc_count_rmw`) the count of locked
//! instructions on the fast path.

use super::{ObjectSource, PerCpuSheaves, BARN_SHEAVES, SHEAF_CAPACITY};
use crate::sync::SpinLock;
use crate::testutil::{set_thread_cpu, ThreadCpus};
use core::cell::Cell;
use std::collections::BTreeSet;
use std::vec::Vec;

/// Fake object addresses: `BASE + i * STRIDE` for object `i`.
const BASE: usize = 0x10_0000;
const STRIDE: usize = 64;

fn index(addr: usize) -> usize {
    (addr - BASE) / STRIDE
}

struct Pool {
    free: Vec<usize>,
    /// Per object: handed out and not yet given back.
    out: Vec<bool>,
    refills: usize,
    single_refills: usize,
    give_backs: usize,
}

/// A slab stand-in: a stack of free addresses behind a `SpinLock` (so the
/// counting build sees the slow path's locked instructions), which checks
/// that no object is handed out twice or given back twice.
struct VecSource {
    pool: SpinLock<Pool>,
    total: usize,
}

impl VecSource {
    fn new(total: usize) -> Self {
        let pool = Pool {
            free: (0..total).rev().map(|i| BASE + i * STRIDE).collect(),
            out: std::vec![false; total],
            refills: 0,
            single_refills: 0,
            give_backs: 0,
        };
        Self { pool: SpinLock::new(pool), total }
    }

    fn read<R>(&self, f: impl FnOnce(&Pool) -> R) -> R {
        self.pool.lock().with_ref(f)
    }

    /// Every object is back in the pool.
    fn assert_all_back(&self) {
        let free = self.read(|p| p.free.len());
        assert_eq!(free, self.total, "objects lost: {} of {} back in the source", free, self.total);
    }
}

impl ObjectSource for VecSource {
    fn refill(&self, out: &mut [usize]) -> usize {
        self.pool.lock().with(|pool| {
            let n = out.len().min(pool.free.len());
            for slot in &mut out[..n] {
                let obj = pool.free.pop().expect("counted above");
                assert!(!pool.out[index(obj)], "object {obj:#x} handed out twice");
                pool.out[index(obj)] = true;
                *slot = obj;
            }
            pool.refills += 1;
            if out.len() == 1 {
                pool.single_refills += 1;
            }
            n
        })
    }

    fn give_back(&self, objs: &[usize]) {
        self.pool.lock().with(|pool| {
            for &obj in objs {
                assert!(pool.out[index(obj)], "object {obj:#x} given back twice, or never handed out");
                pool.out[index(obj)] = false;
                pool.free.push(obj);
            }
            pool.give_backs += 1;
        });
    }
}

static ONE_CPU: ThreadCpus = ThreadCpus { nr: 1 };
static TWO_CPUS: ThreadCpus = ThreadCpus { nr: 2 };
static THREE_CPUS: ThreadCpus = ThreadCpus { nr: 3 };

/// Runs `f` as `cpu` (or as a thread with no CPU), restoring "no CPU" after.
fn as_cpu<R>(cpu: Option<u32>, f: impl FnOnce() -> R) -> R {
    set_thread_cpu(cpu);
    let r = f();
    set_thread_cpu(None);
    r
}

#[test]
fn a_free_repeated_onto_the_sheaf_top_is_refused() {
    as_cpu(Some(0), || {
        let src = VecSource::new(8);
        let mut sheaves = PerCpuSheaves::owned(4);
        let (a, b) = (sheaves.alloc(&ONE_CPU, &src).expect("objects"), sheaves.alloc(&ONE_CPU, &src).expect("objects"));
        assert!(sheaves.free(&ONE_CPU, a, &src));
        assert!(!sheaves.free(&ONE_CPU, a, &src), "the double free of the sheaf's top was accepted");
        assert_eq!(sheaves.cached(), 3, "the refused free cached the object twice");
        assert!(sheaves.free(&ONE_CPU, b, &src));
        sheaves.flush_all(&src);
        src.assert_all_back();
    });
}

#[test]
fn objects_go_through_main_spare_and_barn_and_all_come_back() {
    as_cpu(Some(0), || {
        let src = VecSource::new(64);
        let mut sheaves = PerCpuSheaves::owned(4);
        let mut live = BTreeSet::new();
        for _ in 0..16 {
            let obj = sheaves.alloc(&ONE_CPU, &src).expect("the source has objects");
            assert!(live.insert(obj), "object {obj:#x} handed out twice");
        }
        // Four refills of a whole sheaf each.
        assert_eq!(src.read(|p| p.refills), 4);
        // Frees fill main (4), swap it for the empty spare, fill main
        // again, then trade full mains for the barn's empty sheaves.
        for &obj in &live {
            sheaves.free(&ONE_CPU, obj, &src);
        }
        assert_eq!(sheaves.barn_full(), 2);
        assert_eq!(sheaves.cached(), 16);
        assert_eq!(src.read(|p| p.give_backs), 0);
        // All 16 come back from main, spare and barn: no refill.
        let again: BTreeSet<usize> = (0..16).map(|_| sheaves.alloc(&ONE_CPU, &src).expect("cached")).collect();
        assert_eq!(again, live, "a cached object lost or duplicated");
        assert_eq!(src.read(|p| p.refills), 4);
        assert_eq!(sheaves.barn_full(), 0);
        for &obj in &again {
            sheaves.free(&ONE_CPU, obj, &src);
        }
        sheaves.flush_all(&src);
        assert_eq!(sheaves.cached(), 0);
        src.assert_all_back();
    });
}

#[test]
fn a_full_barn_sends_a_batch_back_to_the_source() {
    as_cpu(Some(0), || {
        let src = VecSource::new(128);
        let mut sheaves = PerCpuSheaves::owned(2);
        // main + spare + a full barn, then one sheaf more.
        let n = 2 * 2 + BARN_SHEAVES * 2 + 2;
        let objs: Vec<usize> = (0..n).map(|_| sheaves.alloc(&ONE_CPU, &src).expect("objects")).collect();
        for &obj in &objs {
            sheaves.free(&ONE_CPU, obj, &src);
        }
        assert_eq!(sheaves.barn_full(), BARN_SHEAVES);
        assert_eq!(src.read(|p| p.give_backs), 1, "the sheaf that found the barn full goes back");
        assert_eq!(sheaves.cached(), n - 2);
        sheaves.flush_all(&src);
        src.assert_all_back();
    });
}

#[test]
fn an_empty_source_fails_the_allocation() {
    as_cpu(Some(0), || {
        let src = VecSource::new(3);
        let mut sheaves = PerCpuSheaves::owned(4);
        let objs: Vec<usize> = (0..3).map(|_| sheaves.alloc(&ONE_CPU, &src).expect("three objects")).collect();
        assert_eq!(sheaves.alloc(&ONE_CPU, &src), None);
        for obj in objs {
            sheaves.free(&ONE_CPU, obj, &src);
        }
        sheaves.flush_all(&src);
        src.assert_all_back();
    });
}

#[test]
fn a_thread_with_no_cpu_goes_straight_to_the_source() {
    as_cpu(None, || {
        let src = VecSource::new(8);
        let sheaves = PerCpuSheaves::owned(4);
        let obj = sheaves.alloc(&ONE_CPU, &src).expect("objects");
        assert_eq!(src.read(|p| (p.refills, p.single_refills)), (1, 1));
        sheaves.free(&ONE_CPU, obj, &src);
        assert_eq!(src.read(|p| p.give_backs), 1);
        assert_eq!(sheaves.cached(), 0);
        src.assert_all_back();
    });
}

/// A source that re-enters the sheaves from inside a refill or give-back,
/// as an interrupt on the same CPU would.
struct Reentrant<'a> {
    inner: VecSource,
    sheaves: &'a PerCpuSheaves<'static>,
    nested_alloc: Cell<Option<usize>>,
    nested_free: Cell<bool>,
    /// An object to free from inside the next refill (instead of the
    /// nested allocation).
    free_in_refill: Cell<Option<usize>>,
}

impl<'a> Reentrant<'a> {
    fn new(sheaves: &'a PerCpuSheaves<'static>, objects: usize) -> Self {
        Self {
            inner: VecSource::new(objects),
            sheaves,
            nested_alloc: Cell::new(None),
            nested_free: Cell::new(false),
            free_in_refill: Cell::new(None),
        }
    }
}

impl ObjectSource for Reentrant<'_> {
    fn refill(&self, out: &mut [usize]) -> usize {
        if let Some(obj) = self.free_in_refill.take() {
            self.sheaves.free(&ONE_CPU, obj, &self.inner);
        } else if out.len() > 1 && self.nested_alloc.get().is_none() {
            self.nested_alloc.set(self.sheaves.alloc(&ONE_CPU, &self.inner));
        }
        self.inner.refill(out)
    }

    fn give_back(&self, objs: &[usize]) {
        if !self.nested_free.replace(true) {
            let obj = self.nested_alloc.take().expect("the nested allocation");
            self.sheaves.free(&ONE_CPU, obj, &self.inner);
        }
        self.inner.give_back(objs);
    }
}

#[test]
fn a_reentry_on_the_same_cpu_takes_the_fallback_path() {
    as_cpu(Some(0), || {
        let mut sheaves = PerCpuSheaves::owned(2);
        let src = Reentrant::new(&sheaves, 16);
        let obj = sheaves.alloc(&ONE_CPU, &src).expect("objects");
        // The nested allocation found the local lock held: one object from
        // the source, not the sheaf being refilled.
        let nested = src.nested_alloc.get().expect("the refill re-entered");
        assert_ne!(nested, obj);
        assert_eq!(src.inner.read(|p| p.single_refills), 1);
        sheaves.free(&ONE_CPU, obj, &src);
        let inner = src.inner;
        // The nested free was never run (no give-back yet): give it back.
        inner.give_back(&[nested]);
        sheaves.flush_all(&inner);
        inner.assert_all_back();
    });
}

#[test]
fn a_reentered_free_takes_the_fallback_path() {
    as_cpu(Some(0), || {
        let mut sheaves = PerCpuSheaves::owned(2);
        let src = Reentrant::new(&sheaves, 64);
        // The first refill re-enters (nested_alloc), then frees fill main,
        // spare and the barn until a give-back re-enters with a free.
        let objs: Vec<usize> =
            (0..2 * 2 + BARN_SHEAVES * 2 + 1).map(|_| sheaves.alloc(&ONE_CPU, &src).expect("objects")).collect();
        let before = src.inner.read(|p| p.give_backs);
        for &obj in &objs {
            sheaves.free(&ONE_CPU, obj, &src);
        }
        assert!(src.nested_free.get(), "the give-back re-entered");
        // The nested free went straight to the source: one give-back of its
        // own beside the batch's.
        assert_eq!(src.inner.read(|p| p.give_backs), before + 2);
        let inner = src.inner;
        sheaves.flush_all(&inner);
        inner.assert_all_back();
    });
}

#[test]
fn a_free_reentering_a_refill_takes_the_fallback_path() {
    as_cpu(Some(0), || {
        let mut sheaves = PerCpuSheaves::owned(4);
        let src = Reentrant::new(&sheaves, 16);
        let mut one = [0];
        assert_eq!(src.inner.refill(&mut one), 1);
        src.free_in_refill.set(Some(one[0]));
        // The refill frees while main is empty and being refilled: the
        // free must go to the source, not into the sheaf being written.
        let obj = sheaves.alloc(&ONE_CPU, &src).expect("objects");
        assert_eq!(src.inner.read(|p| p.give_backs), 1, "the nested free went to the source");
        assert_eq!(sheaves.cached(), 3);
        sheaves.free(&ONE_CPU, obj, &src);
        let inner = src.inner;
        sheaves.flush_all(&inner);
        inner.assert_all_back();
    });
}

#[test]
fn flush_local_flushes_the_caller_and_the_barn_and_asks_the_others() {
    let src = VecSource::new(64);
    let mut sheaves = PerCpuSheaves::owned(4);
    // CPU 0 ends with a full main and a full spare (8 objects).
    as_cpu(Some(0), || {
        let objs: Vec<usize> = (0..8).map(|_| sheaves.alloc(&TWO_CPUS, &src).expect("objects")).collect();
        for obj in objs {
            sheaves.free(&TWO_CPUS, obj, &src);
        }
    });
    // CPU 1 allocates 10 (three refills of 4: 2 left in main), frees them
    // and ends with full main and spare and one full sheaf in the barn.
    as_cpu(Some(1), || {
        let objs: Vec<usize> = (0..10).map(|_| sheaves.alloc(&TWO_CPUS, &src).expect("objects")).collect();
        for obj in objs {
            sheaves.free(&TWO_CPUS, obj, &src);
        }
        assert_eq!(sheaves.barn_full(), 1);
        assert_eq!(sheaves.cached(), 8 + 12);
        sheaves.flush_local(&TWO_CPUS, &src);
    });
    // CPU 1's sheaves and the barn are back; CPU 0 keeps its 8 until its
    // next slow path.
    assert_eq!(sheaves.cached(), 8);
    as_cpu(Some(0), || {
        // Fast-path allocations do not look at the request...
        let obj = sheaves.alloc(&TWO_CPUS, &src).expect("cached");
        assert_eq!(sheaves.cached(), 7);
        sheaves.free(&TWO_CPUS, obj, &src);
        // ...a free that finds main full does, and flushes first.
        let extra = sheaves.alloc(&TWO_CPUS, &src).expect("cached");
        let other = as_cpu(None, || sheaves.alloc(&TWO_CPUS, &src).expect("from the source"));
        set_thread_cpu(Some(0));
        sheaves.free(&TWO_CPUS, extra, &src);
        sheaves.free(&TWO_CPUS, other, &src);
        assert_eq!(sheaves.cached(), 1, "CPU 0 honoured the request at its slow path");
    });
    // A thread with no CPU: flushes the barn and asks every CPU.
    sheaves.flush_local(&TWO_CPUS, &src);
    assert_eq!(sheaves.cached(), 1);
    sheaves.flush_all(&src);
    src.assert_all_back();
}

#[test]
fn an_allocation_that_finds_main_empty_honours_a_flush_request() {
    let src = VecSource::new(64);
    let mut sheaves = PerCpuSheaves::owned(4);
    // CPU 0 ends with an empty main and a full spare.
    as_cpu(Some(0), || {
        let objs: Vec<usize> = (0..8).map(|_| sheaves.alloc(&TWO_CPUS, &src).expect("objects")).collect();
        for obj in objs {
            sheaves.free(&TWO_CPUS, obj, &src);
        }
        for _ in 0..4 {
            let obj = sheaves.alloc(&TWO_CPUS, &src).expect("cached");
            src.give_back(&[obj]);
        }
    });
    assert_eq!(src.read(|p| p.refills), 2);
    as_cpu(Some(1), || sheaves.flush_local(&TWO_CPUS, &src));
    as_cpu(Some(0), || {
        // Not a swap with the spare: the spare goes back, main refills.
        let obj = sheaves.alloc(&TWO_CPUS, &src).expect("objects");
        assert_eq!(src.read(|p| p.refills), 3, "CPU 0 flushed its spare before going on");
        assert_eq!(sheaves.cached(), 3);
        sheaves.free(&TWO_CPUS, obj, &src);
    });
    sheaves.flush_all(&src);
    src.assert_all_back();
}

/// A CPU-bound platform that checks every `local_enter` is matched by one
/// `local_exit` of the same CPU, on every path.
struct Balanced {
    inner: ThreadCpus,
    depth: crate::sync::AtomicU64,
    enters: crate::sync::AtomicU64,
}

impl crate::platform::Platform for Balanced {
    fn current_cpu(&self) -> crate::platform::CpuId {
        self.inner.current_cpu()
    }

    fn nr_cpus(&self) -> u32 {
        self.inner.nr_cpus()
    }

    fn wait(&self, key: crate::platform::WaitKey, still_blocked: &dyn Fn() -> bool) {
        self.inner.wait(key, still_blocked);
    }

    fn wake_all(&self, key: crate::platform::WaitKey) {
        self.inner.wake_all(key);
    }

    fn local_enter(&self) -> Option<crate::platform::LocalCpu> {
        let cpu = self.inner.local_enter()?;
        // Relaxed: one test thread; a counter.
        self.depth.store(self.depth.load(crate::sync::Ordering::Relaxed) + 1, crate::sync::Ordering::Relaxed);
        // Relaxed: as above.
        self.enters.store(self.enters.load(crate::sync::Ordering::Relaxed) + 1, crate::sync::Ordering::Relaxed);
        Some(cpu)
    }

    fn local_exit(&self, cpu: crate::platform::LocalCpu) {
        assert_eq!(cpu.cpu(), self.inner.current_cpu(), "local_exit of another CPU");
        // Relaxed: as above.
        let depth = self.depth.load(crate::sync::Ordering::Relaxed);
        assert!(depth > 0, "local_exit without local_enter");
        // Relaxed: as above.
        self.depth.store(depth - 1, crate::sync::Ordering::Relaxed);
        self.inner.local_exit(cpu);
    }
}

#[test]
fn every_local_enter_is_matched_by_a_local_exit() {
    let platform = Balanced {
        inner: ThreadCpus { nr: 2 },
        depth: crate::sync::AtomicU64::new(0),
        enters: crate::sync::AtomicU64::new(0),
    };
    let src = VecSource::new(64);
    let mut sheaves = PerCpuSheaves::owned(2);
    as_cpu(Some(1), || {
        // Fast and slow paths of both operations, and a flush.
        let objs: Vec<usize> = (0..20).map(|_| sheaves.alloc(&platform, &src).expect("objects")).collect();
        for obj in objs {
            sheaves.free(&platform, obj, &src);
        }
        sheaves.flush_local(&platform, &src);
    });
    // Relaxed: the test thread's own stores.
    assert_eq!(platform.depth.load(crate::sync::Ordering::Relaxed), 0, "a local_enter was not exited");
    // Relaxed: as above.
    assert_eq!(platform.enters.load(crate::sync::Ordering::Relaxed), 41);
    sheaves.flush_all(&src);
    src.assert_all_back();
}

#[test]
fn the_sheaves_fit_their_storage() {
    // The cache struct keeps a slice and the barn lock; the slots and the
    // barn's sheaves take frames sized by the CPU count: one order-2 folio
    // (16 KiB) on a 2-CPU host, order 5 (128 KiB) at 64 CPUs.
    assert!(core::mem::size_of::<PerCpuSheaves>() <= 128);
    assert_eq!(core::mem::size_of::<super::CpuSheaves>(), 17 * 64, "a CPU's slot grew past 17 cache lines");
    assert!(PerCpuSheaves::storage_bytes(2) <= 16 << 10);
    assert!(PerCpuSheaves::storage_bytes(super::MAX_CPUS) <= 128 << 10);
    assert_eq!(PerCpuSheaves::owned(SHEAF_CAPACITY + 1).capacity(), SHEAF_CAPACITY);
    assert_eq!(PerCpuSheaves::owned(0).capacity(), 1);
}

/// Three CPUs pass objects round a ring: each allocates a batch, stamps it
/// and sends it to the next CPU, which checks the stamps and frees the
/// objects there (a remote free), so objects migrate between CPUs' sheaves
/// through the barn. Every stamp is taken with a swap that must find the
/// object unowned.
#[test]
fn three_cpus_free_each_others_objects() {
    use crate::sync::{AtomicU64, Ordering};
    use std::sync::mpsc;

    const ROUNDS: usize = if cfg!(miri) { 3 } else { 300 };
    const BATCH: usize = 7;
    const OBJECTS: usize = 256;
    let src = VecSource::new(OBJECTS);
    let mut sheaves = PerCpuSheaves::owned(3);
    let owner: Vec<AtomicU64> = (0..OBJECTS).map(|_| AtomicU64::new(0)).collect();
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::channel::<Vec<usize>>()).unzip();
    std::thread::scope(|scope| {
        for (cpu, receiver) in receivers.into_iter().enumerate() {
            let next = senders[(cpu + 1) % 3].clone();
            let (sheaves, src, owner) = (&sheaves, &src, &owner);
            scope.spawn(move || {
                set_thread_cpu(Some(cpu as u32));
                let me = cpu as u64 + 1;
                for _ in 0..ROUNDS {
                    let batch: Vec<usize> = (0..BATCH)
                        .map(|_| {
                            let obj = sheaves.alloc(&THREE_CPUS, src).expect("the pool is large enough");
                            // Relaxed: the stamp's swap is its own check;
                            // hand-offs are ordered by the sheaves and the channel.
                            let was = owner[index(obj)].swap(me, Ordering::Relaxed);
                            assert_eq!(was, 0, "object {obj:#x} handed to CPU {cpu} while owned by {was}");
                            obj
                        })
                        .collect();
                    next.send(batch).expect("the next CPU runs until the last batch");
                    let from_prev = receiver.recv().expect("the previous CPU sends every round");
                    let prev = ((cpu + 2) % 3) as u64 + 1;
                    for obj in from_prev {
                        // Relaxed: as above.
                        let was = owner[index(obj)].swap(0, Ordering::Relaxed);
                        assert_eq!(was, prev, "object {obj:#x} changed owner in flight");
                        sheaves.free(&THREE_CPUS, obj, src);
                    }
                }
                set_thread_cpu(None);
            });
        }
        // Only the threads hold senders now: a CPU that panics disconnects
        // its channel, and the next one fails instead of waiting forever.
        drop(senders);
    });
    sheaves.flush_all(&src);
    src.assert_all_back();
}

/// The proof that the common pair makes no locked instruction: 1000 alloc +
/// free pairs on a CPU, after a warm-up, count no read-modify-write and no
/// fence; the slow path (a refill, the barn) counts some, so the count
/// works. Run by `cargo xtask ci` under `--cfg memdesc_count_rmw`.
#[cfg(memdesc_count_rmw)]
#[test]
fn sheaf_fast_path_makes_no_locked_instruction() {
    use crate::sync::rmw_count;
    as_cpu(Some(0), || {
        let src = VecSource::new(256);
        let mut sheaves = PerCpuSheaves::owned(SHEAF_CAPACITY);
        let start = rmw_count();
        // Warm-up: the first allocation refills the main sheaf.
        let obj = sheaves.alloc(&ONE_CPU, &src).expect("objects");
        sheaves.free(&ONE_CPU, obj, &src);
        let warm_up = rmw_count() - start;
        assert!(warm_up > 0, "the refill took the source's lock: the count must see it");

        let before = rmw_count();
        for _ in 0..1000 {
            let obj = sheaves.alloc(&ONE_CPU, &src).expect("cached");
            sheaves.free(&ONE_CPU, obj, &src);
        }
        assert_eq!(rmw_count() - before, 0, "the alloc + free fast path made a locked instruction");

        // Past the main sheaf: the barn's lock and a refill.
        let before = rmw_count();
        let objs: Vec<usize> =
            (0..SHEAF_CAPACITY + 1).map(|_| sheaves.alloc(&ONE_CPU, &src).expect("objects")).collect();
        assert!(rmw_count() - before > 0, "the slow path must count its locks");
        for obj in objs {
            sheaves.free(&ONE_CPU, obj, &src);
        }
        sheaves.flush_all(&src);
        src.assert_all_back();
    });
}

/// The same proof through the real slab: `alloc_raw` + `free_raw` of a
/// 64-byte cache and `kmalloc` + `kfree` of 64 bytes, on a CPU of a booted
/// node, count no read-modify-write and no fence once the sheaf is warm
/// (the descriptor lookup that checks each free is loads only).
#[cfg(memdesc_count_rmw)]
#[test]
fn slab_alloc_free_pair_makes_no_locked_instruction() {
    use crate::rcu::{Rcu, RcuConfig};
    use crate::slab::{CacheConfig, SlabAllocator};
    use crate::sync::rmw_count;
    use crate::testutil::{small_config, with_node};

    as_cpu(Some(0), || {
        with_node(1024, &[], small_config(false), &ONE_CPU, |node| {
            let ret = SlabAllocator::slab_return(node);
            let rcu = Rcu::new(&ONE_CPU, RcuConfig::default()).expect("rcu");
            let slab = SlabAllocator::new(node, &rcu, &ret).expect("slab");
            let cache = slab.create_cache(CacheConfig::new("count", 64)).expect("cache");
            let before = rmw_count();
            let warm = cache.alloc_raw().expect("object");
            // SAFETY: allocated just above from this cache, freed once.
            unsafe { cache.free_raw(warm) }.expect("free");
            let warm_up = rmw_count() - before;
            assert!(warm_up > 0, "the first allocation creates a slab under locks: the count must see it");

            let before = rmw_count();
            for _ in 0..1000 {
                let p = cache.alloc_raw().expect("object");
                // SAFETY: allocated just above from this cache, freed once.
                unsafe { cache.free_raw(p) }.expect("free");
            }
            assert_eq!(rmw_count() - before, 0, "a cache's alloc + free pair made a locked instruction");

            let p = slab.kmalloc(64, 8).expect("kmalloc");
            // SAFETY: from kmalloc just above, freed once.
            unsafe { slab.kfree(p) }.expect("kfree");
            let before = rmw_count();
            for _ in 0..1000 {
                let p = slab.kmalloc(64, 8).expect("kmalloc");
                // SAFETY: from kmalloc just above, freed once.
                unsafe { slab.kfree(p) }.expect("kfree");
            }
            assert_eq!(rmw_count() - before, 0, "a kmalloc + kfree pair made a locked instruction");

            // The entry points a malloc adapter uses, inside its own section.
            use crate::platform::Platform;
            let cpu = ONE_CPU.local_enter().expect("CPU 0");
            let before = rmw_count();
            for _ in 0..1000 {
                // SAFETY: `cpu` is a token of the node's platform; each
                // object is allocated just above and freed once.
                unsafe {
                    let p = cache.alloc_on(&cpu).expect("object");
                    cache.free_on(&cpu, p).expect("free");
                    let k = slab.kmalloc_on(&cpu, 64, 8).expect("kmalloc");
                    slab.kfree_on(&cpu, k).expect("kfree");
                }
            }
            assert_eq!(rmw_count() - before, 0, "an alloc_on / kmalloc_on pair made a locked instruction");
            ONE_CPU.local_exit(cpu);

            slab.destroy(cache).expect("no live objects");
            drop(slab);
            rcu.barrier();
            assert_eq!(node.audit().allocated, 0, "every frame is back");
        });
    });
}
