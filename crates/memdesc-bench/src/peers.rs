//! The peers and probes memdesc is measured against: raw atomics on this
//! machine, and `buddy_system_allocator`'s `FrameAllocator` (frame numbers in
//! `BTreeSet`s) and `Heap` (intrusive lists inside the managed memory).
//!
//! Each loop function times `iters` iterations of one pattern. Inputs go
//! through `black_box` once, before the loop, and results are summed and
//! `black_box`ed after it: a store to the stack before each locked
//! instruction makes that instruction wait for the store buffer to drain,
//! which here turns a 6 ns `fetch_add` into a 10 ns one.
//!
//! The `Heap` needs raw addresses, so this module holds an `unsafe` block,
//! in [`HeapPeer::new`] (the crate's others: the host's `MADV_DONTNEED` in
//! `host`, the malloc peers in `mallocs`, the slab frees in `slab`).
#![deny(unsafe_op_in_unsafe_fn)]

use crate::harness::{run_threads, time_loop};
use buddy_system_allocator::{FrameAllocator, Heap};
use std::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The buddy order count both peers get (the crate's usual choice).
const PEER_ORDERS: usize = 32;

/// An atomic alone on its cache-line pair, so no probe shares a line with
/// anything else.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// Uncontended `fetch_add` (`lock xadd`), one per iteration: probe (a).
#[inline(never)]
pub fn fetch_add_loop(iters: u64) -> Duration {
    let counter = Padded(AtomicU64::new(0));
    let word = black_box(&counter.0);
    let mut sum = 0u64;
    let elapsed = time_loop(iters, || {
        // Relaxed: a probe of the instruction's cost; nothing is ordered.
        sum = sum.wrapping_add(word.fetch_add(1, Ordering::Relaxed));
    });
    black_box(sum);
    elapsed
}

/// Increments `word` with a load and a `compare_exchange_weak` loop, the way
/// a speculative get does.
#[inline(always)]
fn cas_increment(word: &AtomicU64) {
    // Relaxed: seeds the loop.
    let mut current = word.load(Ordering::Relaxed);
    loop {
        // Acquire, Relaxed on failure: the orderings of folio::try_get (P1.3),
        // so the probe compiles to the same instruction.
        match word.compare_exchange_weak(current, current + 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => break,
            Err(actual) => current = actual,
        }
    }
}

/// Uncontended CAS-loop increment, one per iteration: probe (b).
#[inline(never)]
pub fn cas_loop(iters: u64) -> Duration {
    let counter = Padded(AtomicU64::new(0));
    let word = black_box(&counter.0);
    time_loop(iters, || cas_increment(word))
}

/// A CAS-loop increment then a `fetch_sub`: the atomic floor of any
/// speculative get followed by a put.
#[inline(never)]
pub fn cas_then_fetch_sub_loop(iters: u64) -> Duration {
    let counter = Padded(AtomicU64::new(1));
    let word = black_box(&counter.0);
    let mut sum = 0u64;
    let elapsed = time_loop(iters, || {
        cas_increment(word);
        // Release: what FolioRef::drop uses; nothing is ordered here.
        sum = sum.wrapping_add(word.fetch_sub(1, Ordering::Release));
    });
    black_box(sum);
    elapsed
}

/// The memory accesses an order-0 pcp alloc+free pair makes on shared
/// words in memdesc's design, and nothing else: the CPU's local lock taken
/// and released (a load and a store each way, no RMW), the refcount publish
/// store, the put's `fetch_sub` and the last put's Acquire load.
#[inline(never)]
pub fn pcp_pair_atomics_loop(iters: u64) -> Duration {
    let local = Padded(AtomicU32::new(0));
    let refcount = Padded(AtomicU32::new(0));
    let (local, refcount) = black_box((&local.0, &refcount.0));
    time_loop(iters, || {
        local_lock_cycle(local);
        // Release: the publish store (P3.3) it stands for.
        refcount.store(1, Ordering::Release);
        // Release: the put it stands for.
        if refcount.fetch_sub(1, Ordering::Release) == 1 {
            // Acquire: the last put's load (R.3) it stands for.
            black_box(refcount.load(Ordering::Acquire));
            local_lock_cycle(local);
        }
    })
}

/// Takes and releases a CPU's local lock the way `buddy::pcp` does: a load,
/// a store, and a store back (PCP.2, PCP.5).
#[inline(always)]
fn local_lock_cycle(lock: &AtomicU32) {
    // Relaxed: pcp's local lock word, touched by its CPU only.
    if lock.load(Ordering::Relaxed) == 0 {
        // Relaxed: as above.
        lock.store(1, Ordering::Relaxed);
        // Relaxed: as above.
        lock.store(0, Ordering::Relaxed);
    }
}

/// The atomics GUP-fast pins and unpins one order-0 folio with, and nothing
/// else: the speculative get's CAS loop (P1.3), the pin bias added by a
/// second CAS loop (P6.4), the unpin's one `fetch_sub` of the whole bias
/// (P6.6), and the `fetch_add` that counts the run's unpin
/// (`nr_foll_pin_released`).
#[inline(never)]
pub fn gup_pin_atomics_loop(iters: u64) -> Duration {
    let refcount = Padded(AtomicU64::new(1));
    let stat = Padded(AtomicU64::new(0));
    let (refcount, stat) = black_box((&refcount.0, &stat.0));
    time_loop(iters, || {
        cas_increment(refcount);
        // Relaxed: refs.rs try_add_held's orderings, made from a held
        // reference.
        let mut count = refcount.load(Ordering::Relaxed);
        // Relaxed: as above.
        while let Err(actual) =
            refcount.compare_exchange_weak(count, count + 1023, Ordering::Relaxed, Ordering::Relaxed)
        {
            count = actual;
        }
        // Release: the put it stands for.
        refcount.fetch_sub(1024, Ordering::Release);
        // Relaxed: a statistic, as Mmu::count.
        stat.fetch_add(1, Ordering::Relaxed);
    })
}

/// Zeroes `buf` (a `memset`, as the node's zeroing is) once per iteration.
#[inline(never)]
pub fn zero_loop(buf: &mut [u8], iters: u64) -> Duration {
    time_loop(iters, || {
        black_box(&mut *buf).fill(0);
    })
}

/// `threads` threads, each `fetch_add`ing its own counter `iters` times;
/// returns the wall time. The machine's scaling ceiling for P5.
pub fn private_fetch_add_threads(threads: usize, iters: u64) -> Duration {
    let counters: Vec<Padded<AtomicU64>> = (0..threads).map(|_| Padded::default()).collect();
    run_threads(
        threads,
        |_| {},
        |t| {
            fetch_add_on(&counters[t].0, iters);
        },
    )
}

#[inline(never)]
fn fetch_add_on(counter: &AtomicU64, iters: u64) {
    let word = black_box(counter);
    let mut sum = 0u64;
    for _ in 0..iters {
        // Relaxed: a probe of the instruction's cost; nothing is ordered.
        sum = sum.wrapping_add(word.fetch_add(1, Ordering::Relaxed));
    }
    black_box(sum);
}

/// A `FrameAllocator` holding frames `start..start + frames`.
pub fn frame_pool(start: usize, frames: usize) -> FrameAllocator<PEER_ORDERS> {
    let mut pool = FrameAllocator::new();
    pool.add_frame(start, start + frames);
    pool
}

/// `FrameAllocator` order-0 `alloc(1)` + `dealloc` pairs.
#[inline(never)]
pub fn frame_pair_loop(pool: &mut FrameAllocator<PEER_ORDERS>, iters: u64) -> Duration {
    time_loop(iters, || {
        let frame = pool.alloc(1).expect("the peer pool has free frames");
        pool.dealloc(black_box(frame), 1);
    })
}

/// `FrameAllocator` batches: `batch.capacity()` `alloc(1)`s, then a
/// `dealloc` of each in allocation order.
#[inline(never)]
pub fn frame_batch_loop(pool: &mut FrameAllocator<PEER_ORDERS>, batch: &mut Vec<usize>, iters: u64) -> Duration {
    let size = batch.capacity();
    time_loop(iters, || {
        for _ in 0..size {
            batch.push(pool.alloc(1).expect("the peer pool has free frames"));
        }
        for &frame in black_box(&*batch) {
            pool.dealloc(frame, 1);
        }
        batch.clear();
    })
}

/// One 4 KiB chunk of the `Heap`'s backing memory; the alignment lets the
/// region start on any page.
#[repr(align(4096))]
struct Chunk(#[allow(dead_code)] [u8; 4096]);

/// A `buddy_system_allocator::Heap` over its own naturally aligned region.
pub struct HeapPeer {
    /// Declared first so it drops before the memory it points into (it has
    /// no `Drop` of its own, but keep the order honest).
    heap: Heap<PEER_ORDERS>,
    /// The allocation the region lies in: `2 × region` bytes reserved and
    /// never read or written through the `Vec` (its length stays 0), so the
    /// heap is the only user of the bytes. Lazily backed by the host.
    _backing: Vec<Chunk>,
    /// The region's size in bytes.
    region: usize,
}

impl HeapPeer {
    /// A heap managing one `region`-byte block aligned to `region`.
    ///
    /// # Panics
    /// If `region` is not a power of two of at least 4 KiB.
    pub fn new(region: usize) -> Self {
        assert!(region.is_power_of_two() && region >= 4096, "region {region} must be a power of two ≥ 4 KiB");
        let mut backing: Vec<Chunk> = Vec::with_capacity(2 * region / 4096);
        let base = backing.as_mut_ptr() as usize;
        let start = base.next_multiple_of(region);
        let mut heap = Heap::new();
        // Heap::init's duty: [start, start + region) is writable memory only
        // the heap uses while it lives. The range is inside `backing` (start <
        // base + region; 2 × region bytes), which lives as long as `heap`
        // (both fields of Self; the buffer does not move with Self) and keeps
        // length 0, so nothing else touches those bytes.
        // SAFETY: that duty, discharged above.
        unsafe { heap.init(start, region) };
        Self { heap, _backing: backing, region }
    }

    /// The region's size in bytes.
    pub fn region(&self) -> usize {
        self.region
    }

    /// `alloc` + `dealloc` pairs of one `layout` block.
    #[inline(never)]
    pub fn pair_loop(&mut self, layout: Layout, iters: u64) -> Duration {
        let heap = &mut self.heap;
        time_loop(iters, || {
            let block: NonNull<u8> = heap.alloc(layout).expect("the peer heap has a free block");
            heap.dealloc(black_box(block), layout);
        })
    }
}
