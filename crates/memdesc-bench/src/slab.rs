//! memdesc's slab side of goals S1–S3: a slab allocator over a fresh node
//! ([`with_slab`]) with one 64-byte cache, the timed loops run on it, and a
//! replica of the sheaf fast path's own steps (the probe
//! [`sheaf_floor_pair_loop`]).
//!
//! The calling thread is bound to simulated CPU 0, so
//! `Platform::local_enter` returns a CPU and allocations and frees take the
//! per-CPU sheaves; the threads of [`batch_threads`] bind to CPUs 0 and 1.
//!
//! Freeing a raw object is `unsafe` (the caller gives up what it owns), so
//! this module holds `unsafe` blocks: each frees exactly the objects the
//! same loop allocated, once.
#![deny(unsafe_op_in_unsafe_fn)]

use crate::harness::{run_threads, time_loop, Settings};
use crate::ours;
use memdesc::slab::{CacheConfig, CacheRef, SlabAllocator, SlabEvent};
use memdesc::{CpuId, NodeConfig, Platform, Rcu, RcuConfig};
use memdesc_sim::SimPlatform;
use std::error::Error;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{compiler_fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The object size of S1–S3.
pub const OBJECT_SIZE: usize = 64;
/// Objects per sheaf of a 64-byte cache: `slab/sheaf.rs`'s
/// `SHEAF_CAPACITY` (what `slab/cache.rs` gives caches of up to 256 bytes),
/// which the core keeps crate-private (the `sheaf_only_batch` probe and the
/// replica assume it; a change there only makes the probe touch the barn).
pub const SHEAF_CAPACITY: usize = 64;
/// kmalloc's alignment argument in the kmalloc probe (what `malloc` gives
/// at least).
const KMALLOC_ALIGN: usize = 8;

/// Boots a fresh node ([`ours::with_node`]), builds a slab allocator over
/// it with one `OBJECT_SIZE`-byte cache (no flags: the sheaves' path), runs
/// `f`, then checks that nothing went wrong.
///
/// # Errors
/// As [`ours::with_node`]; the RCU or the allocator could not be built, the
/// cache could not be created; or, after `f`, the allocator logged bad
/// objects or the cache cannot be destroyed (objects leaked: the figures
/// would time a broken path).
pub fn with_slab<R>(
    f: impl for<'s, 'a> FnOnce(&'s SlabAllocator<'a>, &CacheRef<'s, 'a>, &'a SimPlatform) -> R,
) -> Result<R, Box<dyn Error>> {
    ours::with_node(NodeConfig::default(), |node, platform| {
        // The frame return before the RCU, which may hold frames for it.
        let ret = SlabAllocator::slab_return(node);
        let rcu = Rcu::new(platform, RcuConfig::default())?;
        let slab = SlabAllocator::new(node, &rcu, &ret)?;
        let cache = slab.create_cache(CacheConfig::new("bench-64", OBJECT_SIZE))?;
        let result = f(&slab, &cache, platform);
        let bad = slab.bad_objects().count();
        if bad != 0 {
            return Err(format!("the slab logged {bad} bad objects during the benchmark").into());
        }
        slab.destroy(cache).map_err(|e| format!("destroying the bench cache: {e}"))?;
        Ok(result)
    })?
}

/// What went below the sheaves between two event snapshots, over `allocs`
/// allocations (each freed too): objects moved between the sheaves and the
/// slabs per alloc or free (refills and give-backs; 0 when every operation
/// stays on the sheaf), and slabs taken from and given back to the buddy
/// allocator per 1000 allocations.
fn traffic_note(before: &[(SlabEvent, u64)], after: &[(SlabEvent, u64)], allocs: u64) -> String {
    let count = |events: &[(SlabEvent, u64)], e: SlabEvent| events.iter().find(|(k, _)| *k == e).map_or(0, |&(_, n)| n);
    let moved = |e| (count(after, e) - count(before, e)) as f64;
    let allocs = allocs.max(1) as f64;
    format!(
        "{:.3} objects moved between sheaves and slabs per alloc or free, {:.2} slabs allocated and {:.2} freed \
         per 1000 allocs",
        (moved(SlabEvent::SlabAlloc) + moved(SlabEvent::SlabFree)) / (2.0 * allocs),
        1000.0 * moved(SlabEvent::SlabsAllocated) / allocs,
        1000.0 * moved(SlabEvent::SlabsFreed) / allocs,
    )
}

/// Runs `workload` once more, outside any clock, and describes what went
/// below the sheaves while it made its `allocs` allocations
/// ([`traffic_note`]). Not under `--iters`, so a loop's instruction count
/// stays N × (reps + 1) iterations.
pub fn traffic(
    alloc: &SlabAllocator<'_>,
    settings: &Settings,
    allocs: u64,
    workload: impl FnOnce() -> Duration,
) -> String {
    if settings.fixed_iters.is_some() {
        return "no traffic count under --iters".to_owned();
    }
    let before = alloc.events();
    workload();
    traffic_note(&before, &alloc.events(), allocs)
}

/// `alloc_raw` + `free_raw` pairs on `cache`: S1.
#[inline(never)]
pub fn cache_pair_loop(cache: &CacheRef<'_, '_>, iters: u64) -> Duration {
    time_loop(iters, || {
        let obj = cache.alloc_raw().expect("the node has free memory");
        // SAFETY: `obj` was just allocated from this cache and is given up
        // here, once.
        unsafe { cache.free_raw(black_box(obj)) }.expect("a fresh object of this cache");
    })
}

/// `kmalloc(64)` + `kfree` pairs.
#[inline(never)]
pub fn kmalloc_pair_loop(slab: &SlabAllocator<'_>, iters: u64) -> Duration {
    time_loop(iters, || {
        let obj = slab.kmalloc(OBJECT_SIZE, KMALLOC_ALIGN).expect("the node has free memory");
        // SAFETY: `obj` was just kmalloc'ed and is given up here, once.
        unsafe { slab.kfree(black_box(obj)) }.expect("a fresh kmalloc object");
    })
}

/// S1's pair as a malloc adapter that owns its platform makes it: per
/// operation `HostPlatform::enter_local` (a static, inlined call), the
/// cache's `alloc_on` / `free_on` with the token, `exit_local`.
#[inline(never)]
pub fn cache_pair_on_loop(cache: &CacheRef<'_, '_>, platform: &SimPlatform, iters: u64) -> Duration {
    time_loop(iters, || {
        let cpu = platform.enter_local().expect("the bench thread is bound to a CPU");
        // SAFETY: the token is from the platform the bench node booted with.
        let obj = unsafe { cache.alloc_on(&cpu) }.expect("the node has free memory");
        platform.exit_local(cpu);
        let cpu = platform.enter_local().expect("the bench thread is bound to a CPU");
        // SAFETY: `obj` was just allocated from this cache and is given up
        // here, once; the token is as above.
        unsafe { cache.free_on(&cpu, black_box(obj)) }.expect("a fresh object of this cache");
        platform.exit_local(cpu);
    })
}

/// S1k's pair as a malloc adapter makes it: `kmalloc_on` + `kfree_on`,
/// each inside its own `enter_local` / `exit_local`.
#[inline(never)]
pub fn kmalloc_pair_on_loop(slab: &SlabAllocator<'_>, platform: &SimPlatform, iters: u64) -> Duration {
    time_loop(iters, || {
        let cpu = platform.enter_local().expect("the bench thread is bound to a CPU");
        // SAFETY: the token is from the platform the bench node booted with.
        let obj = unsafe { slab.kmalloc_on(&cpu, OBJECT_SIZE, KMALLOC_ALIGN) }.expect("the node has free memory");
        platform.exit_local(cpu);
        let cpu = platform.enter_local().expect("the bench thread is bound to a CPU");
        // SAFETY: `obj` was just kmalloc'ed and is given up here, once; the
        // token is as above.
        unsafe { slab.kfree_on(&cpu, black_box(obj)) }.expect("a fresh kmalloc object");
        platform.exit_local(cpu);
    })
}

/// Frees `obj`, a kmalloc allocation the caller made and gives up.
///
/// # Panics
/// If `obj` is not a live kmalloc allocation of `slab` (the caller's
/// promise; kfree checks the descriptor first, so this fails loudly).
pub fn kfree_once(slab: &SlabAllocator<'_>, obj: NonNull<u8>) {
    // SAFETY: the caller kmalloc'ed `obj` and gives it up here, once (the
    // descriptor check rejects anything else before freeing).
    unsafe { slab.kfree(obj) }.expect("a live kmalloc allocation");
}

/// `ksize` of one live object: the descriptor lookup every free makes
/// (address → pfn → compound head → type tag → cache → object boundary),
/// alone.
#[inline(never)]
pub fn lookup_loop(slab: &SlabAllocator<'_>, obj: NonNull<u8>, iters: u64) -> Duration {
    let obj = black_box(obj);
    let mut sum = 0usize;
    let elapsed = time_loop(iters, || {
        sum = sum.wrapping_add(slab.ksize(obj).expect("a live object"));
    });
    black_box(sum);
    elapsed
}

/// Batches: `batch.capacity()` objects allocated from `cache` and kept in
/// `batch`, then all freed in allocation order: S2.
#[inline(never)]
pub fn cache_batch_loop(cache: &CacheRef<'_, '_>, batch: &mut Vec<NonNull<u8>>, iters: u64) -> Duration {
    let size = batch.capacity();
    time_loop(iters, || {
        for _ in 0..size {
            batch.push(cache.alloc_raw().expect("the node has free memory"));
        }
        for &obj in black_box(&*batch) {
            // SAFETY: each object of the batch was allocated above from this
            // cache and is freed once: the batch is cleared right after.
            unsafe { cache.free_raw(obj) }.expect("an object of this cache");
        }
        batch.clear();
    })
}

/// S2's batch as a malloc adapter makes it: each alloc and free inside its
/// own `HostPlatform::enter_local` / `exit_local`, through `alloc_on` /
/// `free_on`.
#[inline(never)]
pub fn cache_batch_on_loop(
    cache: &CacheRef<'_, '_>,
    platform: &SimPlatform,
    batch: &mut Vec<NonNull<u8>>,
    iters: u64,
) -> Duration {
    let size = batch.capacity();
    time_loop(iters, || {
        for _ in 0..size {
            let cpu = platform.enter_local().expect("the bench thread is bound to a CPU");
            // SAFETY: the token is from the platform the bench node booted with.
            batch.push(unsafe { cache.alloc_on(&cpu) }.expect("the node has free memory"));
            platform.exit_local(cpu);
        }
        for &obj in black_box(&*batch) {
            let cpu = platform.enter_local().expect("the bench thread is bound to a CPU");
            // SAFETY: each object of the batch was allocated above from this
            // cache and is freed once (the batch is cleared right after); the
            // token is as above.
            unsafe { cache.free_on(&cpu, obj) }.expect("an object of this cache");
            platform.exit_local(cpu);
        }
        batch.clear();
    })
}

/// `threads` threads, thread `t` bound to simulated CPU `t`, each running
/// `iters` batches of `size` on `cache`; returns the wall time: S3.
pub fn batch_threads(
    cache: &CacheRef<'_, '_>,
    platform: &SimPlatform,
    threads: usize,
    size: usize,
    iters: u64,
) -> Duration {
    ours::lending(&[platform], || {
        run_threads(
            threads,
            |t| platform.bind_current_thread(CpuId(t as u32)).expect("CPU t is free"),
            |_| {
                cache_batch_loop(cache, &mut Vec::with_capacity(size), iters);
            },
        )
    })
}

/// `caches.len()` threads, thread `t` bound to simulated CPU `t` and
/// running `iters` batches of `size` on its own `caches[t]`; returns the
/// wall time. S3 with no shared cache (no shared barn or list lock).
pub fn batch_threads_separate(
    caches: &[&CacheRef<'_, '_>],
    platform: &SimPlatform,
    size: usize,
    iters: u64,
) -> Duration {
    ours::lending(&[platform], || {
        run_threads(
            caches.len(),
            |t| platform.bind_current_thread(CpuId(t as u32)).expect("CPU t is free"),
            |t| {
                cache_batch_loop(caches[t], &mut Vec::with_capacity(size), iters);
            },
        )
    })
}

/// Sheaf capacity of the replica: the sheaves'.
const FLOOR_CAPACITY: usize = SHEAF_CAPACITY;

/// One CPU's slot in the replica of the sheaf fast path, as laid out by
/// `slab/sheaf.rs`: the local lock word, the statistic of cached objects,
/// and a main sheaf.
#[repr(align(64))]
struct FloorSlot {
    local_lock: AtomicU32,
    cached: AtomicU64,
    len: usize,
    objs: [usize; FLOOR_CAPACITY],
}

impl FloorSlot {
    /// SHEAF.2–4 around `f`: the plain load and store of the local lock,
    /// the signal fences, `f` on the sheaf, the cached-count store.
    #[inline(always)]
    fn locked<R>(&mut self, f: impl FnOnce(&mut usize, &mut [usize; FLOOR_CAPACITY]) -> R) -> Option<R> {
        // Relaxed: the sheaf's own orderings (one CPU touches the word),
        // so the replica compiles to the same instructions.
        if self.local_lock.load(Ordering::Relaxed) != 0 {
            return None;
        }
        // Relaxed: as above.
        self.local_lock.store(1, Ordering::Relaxed);
        // Acquire: a signal fence, as the sheaf's try_lock_local; pairs with
        // the Release one below.
        compiler_fence(Ordering::Acquire);
        let r = f(&mut self.len, &mut self.objs);
        // Relaxed: a statistic, as the sheaf's `cached`.
        self.cached.store(self.len as u64, Ordering::Relaxed);
        // Release: pairs with the Acquire fence above.
        compiler_fence(Ordering::Release);
        // Relaxed: as above.
        self.local_lock.store(0, Ordering::Relaxed);
        Some(r)
    }
}

/// The sheaf fast path's own steps for one alloc + free pair, without the
/// slab around it (no descriptor lookup, no cache or error handling): per
/// operation `local_enter` and `local_exit` through `dyn Platform` (a
/// thread-local read on the simulator), the bounds-checked CPU slot, the
/// local lock's load and stores, the pop or push, the cached-count store.
/// The floor of S1's design.
#[inline(never)]
pub fn sheaf_floor_pair_loop(platform: &dyn Platform, iters: u64) -> Duration {
    let mut slots: Vec<FloorSlot> = (0..2)
        .map(|_| FloorSlot {
            local_lock: AtomicU32::new(0),
            cached: AtomicU64::new(0),
            len: 0,
            objs: [0; FLOOR_CAPACITY],
        })
        .collect();
    // One object in the main sheaf, as in a hot S1 pair.
    slots[0].objs[0] = 0x1000;
    slots[0].len = 1;
    let platform = black_box(platform);
    let slots = black_box(&mut slots);
    let mut sum = 0usize;
    let elapsed = time_loop(iters, || {
        let cpu = platform.local_enter().expect("the bench thread is bound to a CPU");
        let obj = slots.get_mut(cpu.cpu().index()).and_then(|s| {
            s.locked(|len, objs| {
                *len = len.checked_sub(1)?;
                Some(objs[*len])
            })
        });
        platform.local_exit(cpu);
        let obj = obj.flatten().expect("the replica's sheaf holds one object");
        sum = sum.wrapping_add(obj);
        let cpu = platform.local_enter().expect("the bench thread is bound to a CPU");
        if let Some(slot) = slots.get_mut(cpu.cpu().index()) {
            slot.locked(|len, objs| {
                if *len < FLOOR_CAPACITY {
                    objs[*len] = obj;
                    *len += 1;
                }
            });
        }
        platform.local_exit(cpu);
    });
    black_box(sum);
    elapsed
}

/// `local_enter` + `local_exit` through `dyn Platform`, twice per
/// iteration: what a pair's two trips into the per-CPU layer cost before
/// touching a sheaf.
#[inline(never)]
pub fn local_enter_exit_loop(platform: &dyn Platform, iters: u64) -> Duration {
    let platform = black_box(platform);
    let mut sum = 0usize;
    let elapsed = time_loop(iters, || {
        for _ in 0..2 {
            let cpu = platform.local_enter().expect("the bench thread is bound to a CPU");
            sum = sum.wrapping_add(cpu.cpu().index());
            platform.local_exit(cpu);
        }
    });
    black_box(sum);
    elapsed
}
