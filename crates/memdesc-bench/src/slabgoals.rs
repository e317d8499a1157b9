//! The slab goals S1–S3 (performance.md §4): a 64-byte cache of our slab
//! allocator against mimalloc and glibc malloc called in the same process,
//! on the same pattern, with probes that split ours into its parts.

use crate::goals::{probe, Measured};
use crate::harness::{measure, Settings, Workload};
use crate::mallocs::{self, Malloc};
use crate::{peers, slab};
use memdesc::slab::CacheConfig;
use std::error::Error;

/// Objects per batch in S2 and S3 (performance.md §2's pattern).
pub const BATCH: usize = 1000;
/// A batch that fits in one CPU's two sheaves: S2's
/// pattern with no refill and no give-back.
const SHEAF_BATCH: usize = 2 * slab::SHEAF_CAPACITY;
/// Threads in S3.
const THREADS: usize = 2;

/// S1: a hot alloc + free pair on one cache against mimalloc's pair.
pub fn s1(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    slab::with_slab(|alloc, cache, platform| {
        let held = cache.alloc().expect("a fresh node has free memory");
        let held_ptr = held.as_ptr();
        let samples = measure(
            settings,
            &mut [
                Workload::new(1, |n| slab::cache_pair_loop(cache, n)),
                Workload::new(1, |n| mallocs::pair_loop(Malloc::Mimalloc, slab::OBJECT_SIZE, n)),
                Workload::new(1, |n| mallocs::pair_loop(Malloc::Glibc, slab::OBJECT_SIZE, n)),
                Workload::new(1, |n| slab::sheaf_floor_pair_loop(platform, n)),
                Workload::new(1, |n| slab::lookup_loop(alloc, held_ptr, n)),
                Workload::new(1, peers::fetch_add_loop),
                Workload::new(1, |n| slab::local_enter_exit_loop(platform, n)),
                Workload::new(1, |n| slab::cache_pair_on_loop(cache, platform, n)),
            ],
        );
        let n = samples[0].iters;
        let traffic = slab::traffic(alloc, settings, n, || slab::cache_pair_loop(cache, n));
        drop(held);
        let ours = samples[0].median_ns;
        let mi = samples[1].median_ns;
        let fetch_add = samples[5].median_ns;
        Measured {
            ours: samples[0],
            peer: samples[1],
            note: format!("{traffic}; ours = {:.1} fetch_adds", ours / fetch_add),
            probes: vec![
                probe(
                    "glibc_pair",
                    "glibc malloc(64) + free pair (std System)",
                    samples[2],
                    format!(
                        "{:.2}x mimalloc; ours = {:.2}x this",
                        samples[2].median_ns / mi,
                        ours / samples[2].median_ns
                    ),
                ),
                probe(
                    "sheaf_pair_floor",
                    "the sheaf fast path's own steps for a pair, replicated: local_enter/local_exit via dyn Platform, \
                     local lock load + stores, pop/push, cached-count store; no lookup",
                    samples[3],
                    format!(
                        "{:.0}% of ours; {:.2}x mimalloc: the floor of the current design",
                        100.0 * samples[3].median_ns / ours,
                        samples[3].median_ns / mi
                    ),
                ),
                probe(
                    "free_lookup",
                    "the free path's descriptor lookup alone (ksize of a live object: address, pfn, head, type tag, \
                     cache, object boundary)",
                    samples[4],
                    format!("{:.0}% of ours", 100.0 * samples[4].median_ns / ours),
                ),
                probe(
                    "local_enter_exit",
                    "Platform::local_enter + local_exit through dyn Platform, twice (a pair's two entries)",
                    samples[6],
                    format!("{:.0}% of sheaf_pair_floor", 100.0 * samples[6].median_ns / samples[3].median_ns),
                ),
                probe("fetch_add", "uncontended fetch_add (lock xadd), probe (a)", samples[5], String::new()),
                probe(
                    "pair_on",
                    "S1's pair as a malloc adapter makes it: HostPlatform::enter_local (static, inlined), \
                     alloc_on / free_on with the token, exit_local, per operation",
                    samples[7],
                    format!("{:.2}x mimalloc; {:.2}x ours", samples[7].median_ns / mi, samples[7].median_ns / ours),
                ),
            ],
        }
    })
}

/// S1k: S1 through kmalloc(64) and kfree.
pub fn s1k(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    slab::with_slab(|alloc, cache, platform| {
        // A live object in the kmalloc-64 cache, as S1 keeps one in its own.
        let held = alloc.kmalloc(slab::OBJECT_SIZE, 8).expect("a fresh node has free memory");
        let samples = measure(
            settings,
            &mut [
                Workload::new(1, |n| slab::kmalloc_pair_loop(alloc, n)),
                Workload::new(1, |n| mallocs::pair_loop(Malloc::Mimalloc, slab::OBJECT_SIZE, n)),
                Workload::new(1, |n| slab::cache_pair_loop(cache, n)),
                Workload::new(1, |n| slab::kmalloc_pair_on_loop(alloc, platform, n)),
            ],
        );
        slab::kfree_once(alloc, held);
        Measured {
            ours: samples[0],
            peer: samples[1],
            note: String::new(),
            probes: vec![
                probe(
                    "cache_pair",
                    "S1's pair on a cache of its own (alloc_raw + free_raw)",
                    samples[2],
                    format!("kmalloc = {:.2}x this", samples[0].median_ns / samples[2].median_ns),
                ),
                probe(
                    "kmalloc_on",
                    "kmalloc_on + kfree_on, each inside HostPlatform::enter_local / exit_local (a malloc \
                     adapter's pair)",
                    samples[3],
                    format!(
                        "{:.2}x mimalloc; {:.2}x ours",
                        samples[3].median_ns / samples[1].median_ns,
                        samples[3].median_ns / samples[0].median_ns
                    ),
                ),
            ],
        }
    })
}

/// S2's and S2g's shared measurement.
fn batch_run(settings: &Settings, peer: Malloc, other: Malloc) -> Result<Measured, Box<dyn Error>> {
    slab::with_slab(|alloc, cache, platform| {
        let mut ours_batch = Vec::with_capacity(BATCH);
        let mut on_batch = Vec::with_capacity(BATCH);
        let mut small = Vec::with_capacity(SHEAF_BATCH);
        let (mut peer_batch, mut other_batch) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
        let samples = measure(
            settings,
            &mut [
                Workload::new(BATCH as u64, |n| slab::cache_batch_loop(cache, &mut ours_batch, n)),
                Workload::new(BATCH as u64, |n| mallocs::batch_loop(peer, slab::OBJECT_SIZE, &mut peer_batch, n)),
                Workload::new(BATCH as u64, |n| mallocs::batch_loop(other, slab::OBJECT_SIZE, &mut other_batch, n)),
                Workload::new(SHEAF_BATCH as u64, |n| slab::cache_batch_loop(cache, &mut small, n)),
                Workload::new(BATCH as u64, |n| slab::cache_batch_on_loop(cache, platform, &mut on_batch, n)),
            ],
        );
        let n = samples[0].iters;
        let traffic =
            slab::traffic(alloc, settings, n * BATCH as u64, || slab::cache_batch_loop(cache, &mut ours_batch, n));
        let ours = samples[0].median_ns;
        let sheaf_only = samples[3].median_ns;
        Measured {
            ours: samples[0],
            peer: samples[1],
            note: format!("ns per alloc+free; {traffic}"),
            probes: vec![
                probe(
                    match other {
                        Malloc::Mimalloc => "mimalloc_batch",
                        Malloc::Glibc => "glibc_batch",
                    },
                    match other {
                        Malloc::Mimalloc => "mimalloc batch 1000 of 64 B",
                        Malloc::Glibc => "glibc batch 1000 of 64 B",
                    },
                    samples[2],
                    format!("ours = {:.2}x this", ours / samples[2].median_ns),
                ),
                probe(
                    "sheaf_only_batch",
                    "ours, batch of 128 (one CPU's main and spare sheaves of 64: no barn, refill or give-back)",
                    samples[3],
                    format!(
                        "the barn, refill and give-back paths are {:.0}% of the batch-1000 figure",
                        100.0 * (ours - sheaf_only).max(0.0) / ours
                    ),
                ),
                probe(
                    "batch_on",
                    "S2's batch as a malloc adapter makes it: alloc_on / free_on, each inside \
                     HostPlatform::enter_local / exit_local",
                    samples[4],
                    format!(
                        "{:.2}x the peer; {:.2}x ours",
                        samples[4].median_ns / samples[1].median_ns,
                        samples[4].median_ns / ours
                    ),
                ),
            ],
        }
    })
}

/// S2: the batch against mimalloc.
pub fn s2(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    batch_run(settings, Malloc::Mimalloc, Malloc::Glibc)
}

/// S2g: the batch against glibc.
pub fn s2g(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    batch_run(settings, Malloc::Glibc, Malloc::Mimalloc)
}

/// S3: the batch on two threads sharing one cache against mimalloc on
/// two threads.
pub fn s3(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    slab::with_slab(|alloc, cache, platform| {
        let other = match alloc.create_cache(CacheConfig::new("bench-64-b", slab::OBJECT_SIZE)) {
            Ok(c) => c,
            Err(e) => return Err(Box::<dyn Error>::from(format!("a second cache: {e}"))),
        };
        let per_iter = (THREADS * BATCH) as u64;
        let mut one = Vec::with_capacity(BATCH);
        let samples = measure(
            settings,
            &mut [
                Workload::new(per_iter, |n| slab::batch_threads(cache, platform, THREADS, BATCH, n)),
                Workload::new(per_iter, |n| {
                    mallocs::batch_threads(Malloc::Mimalloc, slab::OBJECT_SIZE, THREADS, BATCH, n)
                }),
                Workload::new(BATCH as u64, |n| slab::cache_batch_loop(cache, &mut one, n)),
                Workload::new(2, |n| peers::private_fetch_add_threads(THREADS, n)),
                Workload::new(1, peers::fetch_add_loop),
                Workload::new(per_iter, |n| slab::batch_threads_separate(&[cache, &other], platform, BATCH, n)),
            ],
        );
        let n = samples[0].iters;
        let traffic =
            slab::traffic(alloc, settings, n * per_iter, || slab::batch_threads(cache, platform, THREADS, BATCH, n));
        let ours = samples[0].median_ns;
        alloc.destroy(other).map_err(|e| format!("destroying the second cache: {e}"))?;
        Ok(Measured {
            ours: samples[0],
            peer: samples[1],
            note: format!(
                "wall ns per alloc+free over both threads' ops; each thread bound to its own simulated CPU, \
                 one shared cache (one barn, one list lock); {traffic}"
            ),
            probes: vec![
                probe(
                    "batch_1t",
                    "ours, S2's batch on 1 thread (same run)",
                    samples[2],
                    format!("2 threads = {:.2}x this (ideal 0.5)", ours / samples[2].median_ns),
                ),
                probe(
                    "fetch_add_2t_private",
                    "2 threads, fetch_add on private lines, wall ns/op",
                    samples[3],
                    format!(
                        "{:.2}x 1-thread fetch_add: this machine's 2-thread ceiling (ideal 0.5)",
                        samples[3].median_ns / samples[4].median_ns
                    ),
                ),
                probe(
                    "batch_2t_separate_caches",
                    "S3's pattern with each thread on its own cache (no shared barn or list lock), wall ns/op",
                    samples[5],
                    format!(
                        "{:.2}x our 1-thread figure; S3 = {:.2}x this: the cost of sharing one cache",
                        samples[5].median_ns / samples[2].median_ns,
                        ours / samples[5].median_ns
                    ),
                ),
            ],
        })
    })?
}
