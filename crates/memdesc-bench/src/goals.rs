//! The goals of the performance reference (performance.md §4) this binary
//! measures, each against its peer in the same run, and the probes that show
//! what limits them.
//!
//! A goal's ratio is ours ÷ peer (for P5: our 2-thread wall ns/op ÷ our
//! 1-thread ns/op; for R1 the peer is the floor of any get + put, its two
//! atomics timed alone; for G2 the peer is a `fetch_add`, the bound 0.5 ns
//! expressed in the reference's `fetch_add`s; for T1 the peer is the host
//! kernel's PMD split measured in the same run, as the difference of two
//! `MADV_DONTNEED` timings), and it is met when the ratio is at most the
//! bound.

use crate::harness::{measure, Sample, Settings, Workload};
use crate::{host, mm, ours, peers, s4, slabgoals};
use memdesc::buddy::PcpConfig;
use memdesc::{
    get_user_pages_fast, AddressSpace, Gfp, GupFlags, GupRun, MmEvent, Mmu, NodeConfig, Order, SplitMode, PAGE_SIZE,
};
use std::alloc::Layout;
use std::error::Error;

/// One goal: what is measured, against what, and the bound.
pub struct Goal {
    /// The id from performance.md §4.
    pub id: &'static str,
    /// What we measure.
    pub description: &'static str,
    /// What we compare against.
    pub peer_name: &'static str,
    /// The bound on the ratio.
    pub bound: f64,
    /// What the ratio is.
    pub ratio_definition: &'static str,
    /// What limits the ratio, printed when the goal is not met.
    pub limit: &'static str,
    /// Measures the goal.
    pub run: fn(&Settings) -> Result<Measured, Box<dyn Error>>,
}

/// The result of running one goal.
pub struct Measured {
    /// Our ns per op.
    pub ours: Sample,
    /// The peer's ns per op.
    pub peer: Sample,
    /// Setup facts worth printing beside the figures (pool sizes).
    pub note: String,
    /// Raw probes measured in the same interleaved run.
    pub probes: Vec<Probe>,
}

/// A raw measurement without a goal, shown so the reader sees the limits.
pub struct Probe {
    /// A stable id.
    pub id: &'static str,
    /// What was measured.
    pub description: &'static str,
    /// The measurement.
    pub sample: Sample,
    /// Context (for example a derived ratio).
    pub note: String,
}

/// Frames in the `FrameAllocator` pool for P2: as many as the node's RAM.
const BATCH_POOL_FRAMES: usize = ours::RAM_BYTES as usize / PAGE_SIZE;
/// Frames in the `FrameAllocator` pool for P3: 4 GiB worth, as performance.md
/// §3 measured it.
const PAIR_POOL_FRAMES: usize = 1 << 20;
/// Allocations per batch in P2.
const BATCH: usize = 1000;
/// The buddy `Heap`'s region for P4, and its alignment: 64 MiB, so a 2 MiB
/// pair splits and merges five levels (our node splits one). This is the
/// setup that reproduces performance.md §3's 26 ns; a 1 GiB region costs the
/// peer about twice that, a 4 MiB one about a third.
const HEAP_REGION: usize = 1 << 26;
/// A 2 MiB folio's order.
const ORDER_2M: u32 = 9;

/// Every goal, in report order.
pub const GOALS: &[Goal] = &[
    Goal {
        id: "P1",
        description: "order-0 alloc + drop, pcp hit, 1 thread",
        peer_name: "uncontended AtomicU64::fetch_add",
        bound: 3.0,
        ratio_definition: "ours / peer",
        limit: "Per pair the fast path makes one locked read-modify-write, as the peer does: \
                the put's `lock xadd` (the CPU's lists are entered with a plain load and store of \
                its local lock word, the publish is a Release store, the last put's Acquire a \
                load). The `pcp_pair_atomics` probe times those accesses alone in the same run. \
                What remains is plain work, about 260 instructions per pair under callgrind \
                (`--quick --filter P1 --iters 100000`, toggle-collect on ours::pair_loop; 462 \
                before the hot path was made straight-line): per operation a `dyn Platform` \
                local_enter and local_exit (a thread-local read on the simulator), the \
                drain-request check, the vmstat counters, the free-time check of the descriptor \
                (one combined compare), the pageblock-migratetype lookup on free, \
                prep_new_folio's owner-word clears, and bounds-checked descriptor lookups. The \
                `pair_on` probe is the same pair as an adapter that owns its platform makes it \
                (`alloc_on` + `put_on`, the CPU entered on the concrete type, inline): about \
                230 instructions, no virtual call.",
        run: p1,
    },
    Goal {
        id: "P1f",
        description: "order-0 alloc_frozen + drop (FrozenFolio), pcp hit, 1 thread",
        peer_name: "uncontended AtomicU64::fetch_add",
        bound: 2.0,
        ratio_definition: "ours / peer",
        limit: "The frozen pair makes no locked instruction at all (the refcount stays 0; the \
                `count-rmw` test proves it), so the bound is P1's 3x less the one `fetch_add` P1's \
                put costs: what is left is the plain work of P1's analysis, about 270 \
                instructions per pair under callgrind (toggle-collect on ours::frozen_pair_loop; \
                453 before): the virtual calls, the counters, the free-time check, the \
                migratetype lookup, the owner-word clears. The `frozen_pair_on` probe \
                (`alloc_frozen_on` + `free_frozen_on` inside the caller's own entries, about 220 \
                instructions) is the adapters' path.",
        run: p1f,
    },
    Goal {
        id: "P2",
        description: "order-0 batch: 1000 allocs kept, then 1000 drops",
        peer_name: "buddy_system_allocator FrameAllocator batch",
        bound: 0.5,
        ratio_definition: "ours / peer, ns per alloc+free",
        limit: "A batch of 1000 overflows the pcp list (high = 378 frames, batch = 63): \
                allocation refills 63 frames per zone-lock hold and, past the high mark, frees give \
                63 back per hold, so about two thirds of the frames are split off and merged back \
                through the buddy lists (the row's note counts refills and bulk frees per 1000) on \
                top of the per-frame fast-path cost of P1. A larger or self-tuning high mark would \
                keep the batch on the pcp list, but the fast path alone (P1's figure) is already \
                above 0.5x the peer.",
        run: p2,
    },
    Goal {
        id: "P3",
        description: "order-0 alloc + drop, pcp disabled (zone buddy lists)",
        peer_name: "FrameAllocator alloc(1)+dealloc from an empty 4 GiB pool",
        bound: 0.25,
        ratio_definition: "ours / peer",
        limit: "Every pair takes the zone spin lock twice, splits an order-10 block down to \
                order 0 and merges it back: ten levels of intrusive free-list and descriptor updates \
                each way (the peer does twenty levels of BTreeSet work, with heap allocation).",
        run: p3,
    },
    Goal {
        id: "P4",
        description: "order-9 (2 MiB) alloc + drop, unfragmented node",
        peer_name: "buddy_system_allocator Heap 2 MiB-aligned alloc+dealloc",
        bound: 1.5,
        ratio_definition: "ours / peer",
        limit: "Above the pcp orders each pair takes the zone lock twice and splits an \
                order-10 block, and the per-frame metadata work scales with the folio: alloc writes \
                a compound word and a type into each of the 511 tail descriptors; free checks six \
                words of every tail (compound, type, refcount, mapcount, pincount, flags: the free \
                path trusts nothing, OR-ed without a branch per word; ~420 -> ~645 ns on AMD EPYC, \
                where branchy checks cost 1060 ns), then resets two (one slice walk each). That is \
                about 4 000 descriptor word accesses over 32 KiB of descriptors per pair, where \
                the peer touches one word per split level. Meeting 1.5x the peer needs tails that \
                are not written per frame (a head found from the frame's alignment and a per-block \
                order); Linux itself reports about 365 ns for this pair.",
        run: p4,
    },
    Goal {
        id: "P5",
        description: "order-0 alloc + drop on 2 threads / 2 CPUs, wall ns/op",
        peer_name: "memdesc P1 pattern on 1 thread (same run)",
        bound: 0.6,
        ratio_definition: "2-thread wall ns/op / 1-thread ns/op",
        limit: "The two threads share no cache line on this path (pcp lists and vmstat \
                counters are per CPU and 128-byte aligned), so the limit is the machine: 2 vCPUs \
                shared with other processes. Two probes in the same run separate the two: \
                `churn_2t_separate_nodes` runs the same pattern with each thread on its own node \
                (if it scales no better, nothing in the node is shared), and \
                `fetch_add_2t_private` is the machine's ceiling; when that is near 1.0 the second \
                vCPU was busy and P5 cannot be judged from this run.",
        run: p5,
    },
    Goal {
        id: "R1",
        description: "speculative get (Node::try_get) + drop on a held order-0 folio",
        peer_name: "the atomics alone of any get + put: CAS-loop increment + fetch_sub (cas_get_put_floor)",
        bound: 1.1,
        ratio_definition: "ours / floor",
        limit: "The floor is the two locked RMWs no get + put can do without: the CAS of P1.3 \
                and the put's `fetch_sub`. What ours adds is plain loads and branches around them: \
                the bounds-checked descriptor lookup, the compound-word read and decode (P1.2), \
                the head recheck after the CAS (P1.4) and the put's last-reference test. Meeting \
                1.1x has to come from doing less of that work per pair, not from fewer atomics. \
                R1 was first stated as 1.2x one CAS-loop increment, which is below this floor \
                (the `cas_get_put_floor` probe's note gives the floor over one CAS, 1.5x to 2x on \
                this VM); the `cas_loop` probe keeps that comparison.",
        run: r1,
    },
    Goal {
        id: "G1",
        description: "GUP-fast pin + unpin of 512 PTE-mapped order-0 folios in one call, ns per page",
        peer_name: "uncontended AtomicU64::fetch_add",
        bound: 3.0,
        ratio_definition: "ours per page / fetch_add",
        limit: "Each order-0 page is its own folio, so each costs the P1 get's CAS loop, the pin \
                bias's second CAS loop (P6.4: into_pins adds the bias to a held reference with a \
                CAS loop, where one fetch_add would do), the unpin's fetch_sub, and, per run, the \
                `nr_foll_pin_released` count, which Mmu::count makes with a locked fetch_add (the \
                StatWord doc asks for a per-CPU load + store): four locked RMWs per page against a \
                bound of three fetch_adds. The `gup_pin_atomics` probe times those four alone in \
                the same run. Around them, per page (about half of ours under perf): two full \
                four-level walks from the root (the leaf's, and contiguous_ptes' look at the next \
                PTE), the P6.5 reload of the PMD and the PTE, and the run's slot. Meeting 3x needs \
                the bias added with one fetch_add (the reference is held), the unpin count once \
                per call (or per-CPU load + store), and a walk that reads the PMD once per table \
                and steps through its PTEs (Linux's gup_fast_pte_range). The \
                `gup_pin_adjacent_small` probe shows a second problem: when the order-0 folios lie \
                on adjacent frames (as a buddy without pcp lists, or a pcp refill, hands them out), \
                contiguous_ptes scans ahead to the table's end for every page (a full walk per \
                PTE) and the extra references are taken and given back: quadratic in the batch. \
                The scan should stop at the end of the folio found by the get (known after P1.3, \
                or from the head's order).",
        run: g1,
    },
    Goal {
        id: "G2",
        description: "GUP-fast pin + unpin of a PMD-mapped 2 MiB folio (512 pages in one call), ns per 4 KiB subpage",
        peer_name: "uncontended AtomicU64::fetch_add",
        bound: G2_BOUND,
        ratio_definition: "ours per subpage / fetch_add (bound: 0.5 ns at the reference's 6.1 ns fetch_add)",
        limit: "One call per folio costs a fixed amount divided by 512: the RCU read section \
                (a fetch_add and a SeqCst fence to enter, a fetch_sub to leave), the walk, the \
                get's CAS, the pincount add, the recheck, the unpin's two RMWs and three counter \
                fetch_adds (gup_fast, pins, unpins), each with a `dyn Platform` CPU lookup.",
        run: g2,
    },
    Goal {
        id: "T1",
        description: "split of a freshly faulted PMD-mapped 2 MiB folio to order 0: PMD split, folio split, remap",
        peer_name: "the host kernel's PMD split, same run: MADV_DONTNEED of 4 KiB inside a THP minus the same on a small page (performance.md §3: 8.3 µs)",
        bound: 1.0,
        ratio_definition: "ours / host PMD split (stretch 0.3)",
        limit: "The split walks the folio's 512 pages page by page, each under the address \
                space's lock, and finds each page's PTE from the root: SPLIT.2 calls pmd_slot (a \
                three-level walk) and loads and decodes the PMD for every page before installing its \
                migration entry, and the remap does it all again, though one PTE table covers the \
                whole folio. Under callgrind (`--quick --filter T1 --iters 20`, toggle-collect on \
                split_folio: about 400 000 instructions per split), pmd_slot is 29% of them and \
                Entry::decode 26% (inclusive, overlapping), the remap 37%, unfreeze_with (512 \
                folios published and dropped one by one) 14%. The `split_around` probe (10 folios instead of 512) costs \
                about the same, so the per-page table work, not the number of folios, dominates; \
                `split_from_ptes` costs about as much as T1 (their difference, our PMD split, is \
                within the run's noise), so the PMD split is a small part. Resolving the PTE table \
                once per 2 MiB and walking its entries in place would remove most of it.",
        run: t1,
    },
    Goal {
        id: "F1",
        description:
            "first-touch fault of a 4 KiB page (AddressSpace::write of one byte; zeroing included), ns per page",
        peer_name: "the host kernel's first-touch fault, anonymous mmap, 4 KiB (MADV_NOHUGEPAGE), same run",
        bound: 1.0,
        ratio_definition: "ours / host",
        limit: "Ours is a simulated MMU: the write first misses the software TLB (under its \
                lock), walks the tables without a lock, faults (the address-space lock, a VMA \
                lookup, a zeroed order-0 allocation, a Release entry store), then retries the \
                translation, fills the TLB and writes through the frame's atomic words. The \
                `zeroed_alloc_4k` probe is the allocation with its zeroing alone.",
        run: f1,
    },
    Goal {
        id: "F2",
        description: "first-touch fault of a 2 MiB THP (one write; zeroing included), ns per 2 MiB",
        peer_name: "the host kernel's first-touch fault, anonymous mmap, 2 MiB aligned (MADV_HUGEPAGE), same run",
        bound: 1.0,
        ratio_definition: "ours / host",
        limit: "Zeroing 2 MiB dominates both sides: the `zeroed_alloc_2m` probe is our order-9 \
                zeroed allocation + drop alone and `memset_2m` a plain memset of a hot 2 MiB \
                buffer, the bandwidth bound of the zeroing.",
        run: f2,
    },
    Goal {
        id: "S1",
        description: "slab 64 B alloc_raw + free_raw pair on one cache, hot, 1 thread bound to a CPU (sheaf fast path)",
        peer_name: "mimalloc 64 B alloc + free pair (mimalloc crate, same process)",
        bound: 1.5,
        ratio_definition: "ours / mimalloc",
        limit: S1_LIMIT,
        run: slabgoals::s1,
    },
    Goal {
        id: "S1k",
        description: "S1 through kmalloc(64, 8) + kfree (size class, then the kmalloc-64 cache's sheaf)",
        peer_name: "mimalloc 64 B alloc + free pair",
        bound: 1.5,
        ratio_definition: "ours / mimalloc",
        limit: S1K_LIMIT,
        run: slabgoals::s1k,
    },
    Goal {
        id: "S2",
        description: "slab batch: 1000 allocs of 64 B kept, then 1000 frees, 1 thread bound to a CPU",
        peer_name: "mimalloc, same batch",
        bound: 1.5,
        ratio_definition: "ours / mimalloc, ns per alloc+free",
        limit: S2_LIMIT,
        run: slabgoals::s2,
    },
    Goal {
        id: "S2g",
        description: "S2's batch (measured again, against glibc)",
        peer_name: "glibc malloc/free (std System), same batch",
        bound: 0.35,
        ratio_definition: "ours / glibc, ns per alloc+free",
        limit: S2G_LIMIT,
        run: slabgoals::s2g,
    },
    Goal {
        id: "S3",
        description: "slab batch of 1000 on 2 threads / 2 CPUs sharing one cache, wall ns/op",
        peer_name: "mimalloc, same batch on 2 threads",
        bound: 1.5,
        ratio_definition: "ours / mimalloc, wall ns per alloc+free",
        limit: S3_LIMIT,
        run: slabgoals::s3,
    },
    Goal {
        id: "S4-cfrac",
        description: "cfrac-like: continued fractions of sqrt(N) on heap bignums (many small short-lived blocks), 1 thread, under LD_PRELOAD",
        peer_name: "the same program under mimalloc's library (LD_PRELOAD, same run)",
        bound: 1.2,
        ratio_definition: "ours / mimalloc, median wall time per run",
        limit: S4_LIMIT,
        run: |settings| s4::program("cfrac", settings),
    },
    Goal {
        id: "S4-espresso",
        description: "espresso-like: boolean covers of mid-size cube arrays, realloc growth, sorts, 1 thread, under LD_PRELOAD",
        peer_name: "the same program under mimalloc's library (LD_PRELOAD, same run)",
        bound: 1.2,
        ratio_definition: "ours / mimalloc, median wall time per run",
        limit: S4_LIMIT,
        run: |settings| s4::program("espresso", settings),
    },
    Goal {
        id: "S4-glibc-simple",
        description: "glibc-simple-like: tight malloc/free loops of fixed sizes, 1 thread, under LD_PRELOAD",
        peer_name: "the same program under mimalloc's library (LD_PRELOAD, same run)",
        bound: 1.2,
        ratio_definition: "ours / mimalloc, median wall time per run",
        limit: S4_LIMIT,
        run: |settings| s4::program("glibc-simple", settings),
    },
    Goal {
        id: "S4-mstress",
        description: "mstress-like: 2 threads in rounds, random sizes, blocks passed between threads, under LD_PRELOAD",
        peer_name: "the same program under mimalloc's library (LD_PRELOAD, same run)",
        bound: 1.2,
        ratio_definition: "ours / mimalloc, median wall time per run",
        limit: S4_LIMIT,
        run: |settings| s4::program("mstress", settings),
    },
    Goal {
        id: "S4-xmalloc-test",
        description: "xmalloc-test-like: producer thread allocates, consumer thread frees (--procs=2), under LD_PRELOAD",
        peer_name: "the same program under mimalloc's library (LD_PRELOAD, same run)",
        bound: 1.2,
        ratio_definition: "ours / mimalloc, median wall time per run",
        limit: S4_LIMIT,
        run: |settings| s4::program("xmalloc-test", settings),
    },
    Goal {
        id: "S4",
        description: "the S4 programs under LD_PRELOAD, geometric mean",
        peer_name: "the same programs under mimalloc's library",
        bound: 1.2,
        ratio_definition: "geometric mean of ours / mimalloc",
        limit: S4_LIMIT,
        run: s4::geomean_goal,
    },
];

/// What limits S1 when it is missed.
const S1_LIMIT: &str = "Under callgrind (`--quick --filter S1 --iters 100000`, toggle-collect on \
    slab::cache_pair_loop, divided by 400 000) ours is about 163 instructions per pair against mimalloc's 72 \
    (2.3x; 287 before the lean free check and the inlined entry points). The free's check is now a few loads \
    and compares (the address to a pfn by the memory's linear map, the descriptor, the compound word, the type \
    tag against the cache's own id, the object-boundary multiply; the full lookup runs only to name a refusal). What is left is the trip into the \
    per-CPU layer: per operation a `dyn Platform` local_enter and local_exit (about 56 instructions a pair), \
    Result plumbing and the sheaf steps. The `pair_on` probe is the same pair as an adapter that owns its \
    platform makes it (HostPlatform::enter_local, inlined, and `alloc_on`/`free_on` with the token): about 125 \
    instructions (toggle-collect on slab::cache_pair_on_loop), 1.7x mimalloc's.";
/// What limits S1k when it is missed.
const S1K_LIMIT: &str = "S1's analysis. kmalloc adds its own steps (the alignment and size checks, the size class, \
    the class's cache read from the registry) and kfree finds the cache from the slab's tag and the registry: \
    about 190 instructions per pair under callgrind (toggle-collect on slab::kmalloc_pair_loop, `--quick --filter \
    S1k --iters 100000`) against S1's 163; the `kmalloc_on` probe (an adapter's kmalloc_on + kfree_on) about 145. \
    The `cache_pair` probe is S1's pair in the same run.";
/// What limits S2 when it is missed.
const S2_LIMIT: &str = "A 64-byte cache's sheaves hold 64 objects and the barn 16 sheaves, so a batch of 1000 stays \
    in the per-CPU layer (the row's note counts the objects moved to and from the slabs: none); a give-back, when \
    one happens, returns each slab's run of objects in one update, and min_partial (5 to 10 by size, as Linux) \
    keeps the slabs the next refill needs. Under callgrind (`--quick --filter S2 --iters 200`, toggle-collect on \
    slab::cache_batch_loop, which also counts the `sheaf_only_batch` probe's 128-object batches) ours is about \
    180 instructions per alloc+free against mimalloc's 63 (about 410 before): S1's per-operation cost, virtual \
    local_enter/local_exit included, is what remains; the `batch_on` probe (an adapter's alloc_on/free_on, \
    toggle-collect on slab::cache_batch_on_loop) is about 140.";
/// What limits S2g when it is missed.
const S2G_LIMIT: &str = "The bound 0.35x glibc was set from the reference's glibc batch of 31.9 ns. glibc measured \
    in this process is faster: 7 to 17 ns per alloc+free in this machine's runs (its tcache and fastbins; it is \
    also the process's global allocator, so its heap state depends on the goals run before S2), which puts 0.35x \
    of it between 2.5 and 6 ns, at or near mimalloc's own batch: S2g asks about as much as S2's 1.5x mimalloc, \
    sometimes more. What limits ours is S2's analysis.";
/// What limits S3 when it is missed.
const S3_LIMIT: &str = "Both threads share one cache: one barn of 16 sheaves of 64 and one list lock, so when both \
    hold most of a batch the barn overflows to the slabs, and every barn trade (one per 64 operations) moves the \
    barn's lock and lines between the vCPUs (about 230 ns per handoff on this machine, performance.md §3). The \
    `batch_2t_separate_caches` probe runs the same threads on a cache each: its ratio to S3 is the cost of \
    sharing, and its ratio to `batch_1t` the scaling with nothing shared; `fetch_add_2t_private` is the machine's \
    ceiling (near 1.0 means the other vCPU was busy and the run says nothing about scaling). mimalloc's threads \
    never share: each has its own heap and pages. What is left is S1's per-operation cost.";

/// What limits S4 when it is missed.
const S4_LIMIT: &str = "Every malloc and free of the preloaded library pays the slab's per-call cost plus the \
    adapter's own, and a program here makes millions of them, so S4's ratios track instructions per call. Under \
    callgrind, a C loop of `malloc(64)` + `free` (memdesc-preload's `c/pairs.c`, at two N, the difference divided \
    by the extra pairs) costs about 335 instructions per pair under our library (free about 187, malloc about \
    135) against 65 under mimalloc's and 141 under glibc. The library's per-thread block is already one \
    initial-exec TLS access per call (a hidden `.tbss` symbol; no `__tls_get_addr`) and the CPU token is built \
    from it, so what remains is about 100 instructions of the core's inlined path (the free's descriptor lookup \
    and boundary check, the sheaf push and pop) and about 200 of the adapter's: the fork gate's entry and leave \
    (a store, the barrier check, the pending load, a Release store), function prologues, the span and bootstrap \
    checks and the per-slot counters. mimalloc reaches its thread's heap with one initial-exec TLS load and pops \
    a page-local free list. The programs differ in how much else they do: espresso computes more than it \
    allocates and comes out near 1.0, and so does mstress; cfrac and glibc-simple are almost all malloc and \
    free, so they show the per-call ratio (glibc-simple's batches of 400 and 1600 also overflow a CPU's sheaves \
    and go through refill and give-back under the list lock, S2's limit); xmalloc-test is all remote frees: the \
    producer's sheaves empty and refill from the slabs while the consumer's fill and give back, both under one \
    list lock whose lines move between the vCPUs (about 700 instructions per pair under callgrind, `xmalloc_test \
    2 1 2400`, against mimalloc's 125, whose remote frees go to a page-local atomic list its owner collects in a \
    batch). Meeting 1.2x needs the fast path within about 1.2x of mimalloc's instructions (a cheaper gate, e.g. \
    the guard holding a pointer to its inside flag; a free lookup of a few loads) and remote frees batched per \
    slab (a per-slab remote list its owning CPU collects) instead of one list-lock trip per sheaf. Peak RSS, the other column: ours stays within a few MiB of glibc's on the small \
    programs and well below mimalloc's on mstress.";

/// G2's bound: 0.5 ns per subpage in units of the reference machine's
/// 6.1 ns `fetch_add` (performance.md §3): 0.5 / 6.1, rounded.
const G2_BOUND: f64 = 0.082;
/// Pages per GUP call in G1 and G2 (Li Zhe's batches, performance.md §1).
const GUP_BATCH: u64 = 512;
/// Linux's PMD split on this machine, ns (performance.md §3): T1's
/// reference figure, printed beside the host's PMD split of this run.
const LINUX_PMD_SPLIT_NS: f64 = 8300.0;

fn default_node() -> NodeConfig {
    NodeConfig::default()
}

pub(crate) fn probe(id: &'static str, description: &'static str, sample: Sample, note: String) -> Probe {
    Probe { id, description, sample, note }
}

fn p1(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    ours::with_node(default_node(), |node, platform| {
        let before = node.vmstat();
        let samples = measure(
            settings,
            &mut [
                Workload::new(1, |n| ours::pair_loop(node, Order::ZERO, Gfp::KERNEL, n)),
                Workload::new(1, peers::fetch_add_loop),
                Workload::new(1, peers::pcp_pair_atomics_loop),
                Workload::new(1, |n| ours::pair_on_loop(node, platform, n)),
            ],
        );
        let floor = samples[2].median_ns / samples[1].median_ns;
        Measured {
            ours: samples[0],
            peer: samples[1],
            note: format!(
                "ours / pcp_pair_atomics floor = {:.2}; {}",
                samples[0].median_ns / samples[2].median_ns,
                ours::pcp_note(&before, &node.vmstat())
            ),
            probes: vec![
                probe("fetch_add", "uncontended fetch_add (lock xadd), probe (a)", samples[1], String::new()),
                probe(
                    "pcp_pair_atomics",
                    "atomics alone of a pcp pair: local lock load + store twice, publish store, fetch_sub, Acquire load",
                    samples[2],
                    format!("{floor:.2}x fetch_add: the floor of P1's design (one locked RMW)"),
                ),
                probe(
                    "pair_on",
                    "the pair through alloc_on + put_on, the platform entered on its concrete type (an adapter's path)",
                    samples[3],
                    format!("{:.2}x fetch_add", samples[3].median_ns / samples[1].median_ns),
                ),
            ],
        }
    })
}

fn p1f(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    ours::with_node(default_node(), |node, platform| {
        let before = node.vmstat();
        let samples = measure(
            settings,
            &mut [
                Workload::new(1, |n| ours::frozen_pair_loop(node, n)),
                Workload::new(1, peers::fetch_add_loop),
                Workload::new(1, |n| ours::frozen_pair_on_loop(node, platform, n)),
            ],
        );
        Measured {
            ours: samples[0],
            peer: samples[1],
            note: ours::pcp_note(&before, &node.vmstat()),
            probes: vec![probe(
                "frozen_pair_on",
                "the frozen pair through alloc_frozen_on + free_frozen_on, the platform entered on its concrete type",
                samples[2],
                format!("{:.2}x fetch_add", samples[2].median_ns / samples[1].median_ns),
            )],
        }
    })
}

fn p2(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    ours::with_node(default_node(), |node, _| {
        let mut folios = Vec::with_capacity(BATCH);
        let mut pool = peers::frame_pool(BATCH_POOL_FRAMES, BATCH_POOL_FRAMES);
        let mut frames = Vec::with_capacity(BATCH);
        let before = node.vmstat();
        let samples = measure(
            settings,
            &mut [
                Workload::new(BATCH as u64, |n| ours::batch_loop(node, &mut folios, n)),
                Workload::new(BATCH as u64, |n| peers::frame_batch_loop(&mut pool, &mut frames, n)),
            ],
        );
        Measured {
            ours: samples[0],
            peer: samples[1],
            note: format!(
                "peer pool: {BATCH_POOL_FRAMES} frames (the node's RAM); {}",
                ours::pcp_note(&before, &node.vmstat())
            ),
            probes: vec![probe("frame_batch", "FrameAllocator order-0 batch 1000", samples[1], String::new())],
        }
    })
}

fn p3(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    let config = NodeConfig { pcp: PcpConfig { enabled: false, ..Default::default() }, ..Default::default() };
    ours::with_node(config, |node, _| {
        // The pool starts at frame 2^20 so it is one aligned block:
        // FrameAllocator caps a block starting at frame 0 at 32 frames.
        let mut pool = peers::frame_pool(PAIR_POOL_FRAMES, PAIR_POOL_FRAMES);
        let samples = measure(
            settings,
            &mut [
                Workload::new(1, |n| ours::pair_loop(node, Order::ZERO, Gfp::KERNEL, n)),
                Workload::new(1, |n| peers::frame_pair_loop(&mut pool, n)),
            ],
        );
        Measured {
            ours: samples[0],
            peer: samples[1],
            note: format!("peer pool: frames 2^20..2^21, one free 4 GiB block ({PAIR_POOL_FRAMES} frames)"),
            probes: vec![probe(
                "frame_pair",
                "FrameAllocator order-0 pair, empty 4 GiB pool",
                samples[1],
                String::new(),
            )],
        }
    })
}

fn p4(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    let order = Order::new(ORDER_2M).expect("order 9 is at most MAX_ORDER");
    let layout = Layout::from_size_align(2 << 20, 2 << 20).expect("2 MiB is a valid layout");
    ours::with_node(default_node(), |node, _| {
        let mut heap = peers::HeapPeer::new(HEAP_REGION);
        let region_mib = heap.region() >> 20;
        let samples = measure(
            settings,
            &mut [
                Workload::new(1, |n| ours::pair_loop(node, order, Gfp::USER, n)),
                Workload::new(1, |n| heap.pair_loop(layout, n)),
            ],
        );
        Measured {
            ours: samples[0],
            peer: samples[1],
            note: format!("peer heap: one {region_mib} MiB block aligned to its size"),
            probes: vec![probe("heap_2m_pair", "buddy Heap 2 MiB pair", samples[1], String::new())],
        }
    })
}

fn p5(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    ours::with_node(default_node(), |node, platform| {
        ours::with_node(default_node(), |other, other_platform| {
            let samples = measure(
                settings,
                &mut [
                    Workload::new(2, |n| ours::churn_threads(node, platform, 2, n)),
                    Workload::new(1, |n| ours::pair_loop(node, Order::ZERO, Gfp::KERNEL, n)),
                    Workload::new(2, |n| ours::churn_separate_nodes(&[(node, platform), (other, other_platform)], n)),
                    Workload::new(2, |n| peers::private_fetch_add_threads(2, n)),
                    Workload::new(1, peers::fetch_add_loop),
                ],
            );
            let separate = samples[2].median_ns / samples[1].median_ns;
            let ceiling = samples[3].median_ns / samples[4].median_ns;
            Measured {
                ours: samples[0],
                peer: samples[1],
                note: String::new(),
                probes: vec![
                    probe(
                        "churn_2t_separate_nodes",
                        "P5's pattern with each thread on its own node, wall ns/op",
                        samples[2],
                        format!("{separate:.2}x our 1-thread figure: the scaling with no shared node state"),
                    ),
                    probe(
                        "fetch_add_2t_private",
                        "2 threads, fetch_add on private lines, wall ns/op",
                        samples[3],
                        format!("{ceiling:.2}x 1-thread fetch_add: this machine's 2-thread ceiling (ideal 0.5)"),
                    ),
                ],
            }
        })
    })?
}

fn r1(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    ours::with_node(default_node(), |node, _| {
        let held = node.alloc(Order::ZERO, Gfp::KERNEL).expect("a fresh node has free memory");
        let pfn = held.pfn();
        let samples = measure(
            settings,
            &mut [
                Workload::new(1, |n| ours::get_put_loop(node, pfn, n)),
                Workload::new(1, peers::cas_loop),
                Workload::new(1, peers::cas_then_fetch_sub_loop),
            ],
        );
        drop(held);
        let floor = samples[2].median_ns / samples[1].median_ns;
        let over_cas = samples[0].median_ns / samples[1].median_ns;
        Measured {
            ours: samples[0],
            peer: samples[2],
            note: format!("ours / cas_loop = {over_cas:.2} (R1 as first stated, against one CAS)"),
            probes: vec![
                probe(
                    "cas_loop",
                    "uncontended CAS-loop increment, probe (b)",
                    samples[1],
                    format!("ours = {over_cas:.2}x this: R1 as first stated (≤ 1.2x one CAS, below the floor)"),
                ),
                probe(
                    "cas_get_put_floor",
                    "CAS-loop increment + fetch_sub: atomics alone of a get + put",
                    samples[2],
                    format!("{floor:.2}x the CAS loop: the floor of any get + put"),
                ),
            ],
        }
    })
}

/// `n` empty GUP slots.
fn slots<'m, 'a>(n: u64) -> Vec<Option<GupRun<'m, 'a>>> {
    (0..n).map(|_| None).collect()
}

/// One GUP pin call over `nr` pages at `va`: the runs it returns, and how
/// many neighbouring runs start on adjacent frames.
fn run_layout(aspace: &AddressSpace<'_, '_>, va: u64, nr: u64) -> Result<(usize, usize), Box<dyn Error>> {
    let mut out = slots(nr);
    let runs = get_user_pages_fast(aspace, va, nr, GupFlags::PIN, &mut out)?;
    let pfns: Vec<u64> = out[..runs].iter().flatten().map(|r| r.first_pfn().0).collect();
    let adjacent = pfns.windows(2).filter(|w| w[1] == w[0] + 1).count();
    Ok((runs, adjacent))
}

/// GUP-fast calls and fallbacks so far.
fn gup_counts(mmu: &Mmu<'_>) -> (u64, u64) {
    (mmu.event(MmEvent::GupFast), mmu.event(MmEvent::GupFastFallback))
}

fn g1(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    // A second node whose faults get ascending adjacent frames: without pcp
    // lists the buddy hands out the halves it splits off in address order.
    let no_pcp = NodeConfig { pcp: PcpConfig { enabled: false, ..Default::default() }, ..Default::default() };
    mm::with_mmu_config(no_pcp, |adjacent_mmu| mm::with_mmu(|mmu| g1_on(settings, mmu, adjacent_mmu))?)?
}

fn g1_on(settings: &Settings, mmu: &Mmu<'_>, adjacent_mmu: &Mmu<'_>) -> Result<Measured, Box<dyn Error>> {
    {
        let aspace = AddressSpace::new(mmu)?;
        let other = AddressSpace::new(adjacent_mmu)?;
        let packed = mm::small_pages(&other, GUP_BATCH)?;
        let (packed_runs, packed_adjacent) = run_layout(&other, packed, GUP_BATCH)?;
        let mut out_packed = slots(GUP_BATCH);
        let small = mm::small_pages(&aspace, GUP_BATCH)?;
        let thp = mm::pmd_thp(&aspace)?;
        mm::split_pmd(&aspace, thp)?;
        let (runs, adjacent) = run_layout(&aspace, small, GUP_BATCH)?;
        let (thp_runs, _) = run_layout(&aspace, thp, GUP_BATCH)?;
        let (mut out_small, mut out_thp) = (slots(GUP_BATCH), slots(GUP_BATCH));
        let before = gup_counts(mmu);
        let samples = measure(
            settings,
            &mut [
                Workload::new(GUP_BATCH, |n| mm::pin_loop(&aspace, small, GUP_BATCH, &mut out_small, n)),
                Workload::new(1, peers::fetch_add_loop),
                Workload::new(GUP_BATCH, |n| mm::pin_loop(&aspace, thp, GUP_BATCH, &mut out_thp, n)),
                Workload::new(1, peers::gup_pin_atomics_loop),
                Workload::new(GUP_BATCH, |n| mm::pin_loop(&other, packed, GUP_BATCH, &mut out_packed, n)),
            ],
        );
        let after = gup_counts(mmu);
        let fetch_add = samples[1].median_ns;
        Ok(Measured {
            ours: samples[0],
            peer: samples[1],
            note: format!(
                "{runs} runs per call ({adjacent} of {} neighbouring folios on adjacent frames); \
                 {} fast calls, {} fallbacks; ours / gup_pin_atomics floor = {:.2}",
                runs.saturating_sub(1),
                after.0 - before.0,
                after.1 - before.1,
                samples[0].median_ns / samples[3].median_ns
            ),
            probes: vec![
                probe(
                    "gup_pin_pte_thp",
                    "GUP-fast pin + unpin of a PTE-mapped 2 MiB folio (PMD split by mprotect), 512 pages per call, per page",
                    samples[2],
                    format!(
                        "{thp_runs} run per call, one add per run; {:.2}x fetch_add per page, {:.0} ns per call",
                        samples[2].median_ns / fetch_add,
                        samples[2].median_ns * GUP_BATCH as f64
                    ),
                ),
                probe(
                    "gup_pin_atomics",
                    "atomics alone of an order-0 pin + unpin: get CAS, bias CAS, fetch_sub, unpin-count fetch_add",
                    samples[3],
                    format!("{:.2}x fetch_add: the floor of G1's current design", samples[3].median_ns / fetch_add),
                ),
                probe(
                    "gup_pin_adjacent_small",
                    "G1's pattern on 512 order-0 folios on ascending adjacent frames (a node without pcp lists)",
                    samples[4],
                    format!(
                        "{packed_runs} runs per call, {packed_adjacent} of {} neighbours adjacent; {:.2}x G1",
                        packed_runs.saturating_sub(1),
                        samples[4].median_ns / samples[0].median_ns
                    ),
                ),
            ],
        })
    }
}

fn g2(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    mm::with_mmu(|mmu| {
        let aspace = AddressSpace::new(mmu)?;
        let va = mm::pmd_thp(&aspace)?;
        let (runs, _) = run_layout(&aspace, va, GUP_BATCH)?;
        let mut out = slots(GUP_BATCH);
        let before = gup_counts(mmu);
        let samples = measure(
            settings,
            &mut [
                Workload::new(GUP_BATCH, |n| mm::pin_loop(&aspace, va, GUP_BATCH, &mut out, n)),
                Workload::new(1, peers::fetch_add_loop),
            ],
        );
        let after = gup_counts(mmu);
        let per_call = samples[0].median_ns * GUP_BATCH as f64;
        Ok(Measured {
            ours: samples[0],
            peer: samples[1],
            note: format!(
                "absolute: {:.3} ns per subpage against the 0.5 ns goal; {per_call:.0} ns per call = {:.1} \
                 fetch_adds; {runs} run per call; {} fast calls, {} fallbacks",
                samples[0].median_ns,
                per_call / samples[1].median_ns,
                after.0 - before.0,
                after.1 - before.1
            ),
            probes: vec![probe("fetch_add", "uncontended fetch_add (lock xadd), probe (a)", samples[1], String::new())],
        })
    })?
}

fn t1(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    use mm::SplitFrom;
    let zero = Order::ZERO;
    let (mut host_error, mut small_error) = (None, None);
    let mut regions = 0;
    let before = host::thp_events();
    let samples = mm::with_mmu(|mmu| {
        let aspace = AddressSpace::new(mmu)?;
        let samples = measure(
            settings,
            &mut [
                Workload::new(1, |n| mm::split_loop(&aspace, SplitMode::Uniform(zero), SplitFrom::Pmd, n)),
                Workload::new(1, |n| host::dontneed_in_thp_loop(n, &mut host_error, &mut regions)),
                Workload::new(1, |n| host::dontneed_small_loop(n, &mut small_error)),
                Workload::new(1, |n| mm::split_loop(&aspace, SplitMode::Around(zero), SplitFrom::Pmd, n)),
                Workload::new(1, |n| mm::split_loop(&aspace, SplitMode::Uniform(zero), SplitFrom::Ptes, n)),
            ],
        );
        let per_split = mmu.event(MmEvent::TlbShootdown) as f64 / mmu.event(MmEvent::ThpSplitPage).max(1) as f64;
        Ok::<_, Box<dyn Error>>((samples, per_split))
    })??;
    let (samples, shootdowns) = samples;
    if let Some(e) = host_error.or(small_error) {
        return Err(e.into());
    }
    let given = host::thp_verdict(before, host::thp_events(), regions);
    let (ours, thp, small) = (samples[0], samples[1], samples[2]);
    // The host's PMD split: the DONTNEED inside a THP minus the baseline's
    // median (the spread is the THP side's).
    let host = Sample {
        median_ns: thp.median_ns - small.median_ns,
        min_ns: thp.min_ns - small.median_ns,
        max_ns: thp.max_ns - small.median_ns,
        ..thp
    };
    let stretch = if ours.median_ns <= 0.3 * host.median_ns { "met" } else { "not met" };
    Ok(Measured {
        ours,
        peer: host,
        note: format!(
            "ours: the THP fault and the munmap outside the clock; absolute: {:.1} µs against the reference's 8.3 µs \
             ({:.2}x; stretch 2.5 µs); stretch 0.3x the host: {stretch}; {shootdowns:.1} TLB shootdowns per split \
             (its munmap included); \
             host: {given}",
            ours.median_ns / 1000.0,
            ours.median_ns / LINUX_PMD_SPLIT_NS
        ),
        probes: vec![
            probe(
                "host_dontneed_thp",
                "host MADV_DONTNEED of 4 KiB inside a freshly faulted THP (PMD split + zap of one PTE)",
                thp,
                String::new(),
            ),
            probe(
                "host_dontneed_4k",
                "host MADV_DONTNEED of one faulted 4 KiB page (the baseline)",
                small,
                String::new(),
            ),
            probe(
                "split_around",
                "non-uniform split (SplitMode::Around(0)) of a fresh PMD-mapped 2 MiB folio: 10 folios",
                samples[3],
                format!("{:.2}x the host PMD split", samples[3].median_ns / host.median_ns),
            ),
            probe(
                "split_from_ptes",
                "uniform split to order 0 of a PTE-mapped 2 MiB folio (PMD split beforehand): folio split + remap",
                samples[4],
                format!(
                    "T1 minus this: {:.0} ns for our PMD split (a difference of medians: noise when small)",
                    ours.median_ns - samples[4].median_ns
                ),
            ),
        ],
    })
}

fn f1(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    let pages = host::PAGES_4K as u64;
    let policy = host::thp_policy();
    let mut host_error = None;
    let measured = mm::with_mmu(|mmu| {
        let aspace = AddressSpace::new(mmu)?;
        let node = mmu.node();
        let samples = measure(
            settings,
            &mut [
                Workload::new(pages, |n| mm::first_touch_loop(&aspace, pages, pages, false, n)),
                Workload::new(pages, |n| host::touch_4k_loop(n, &mut host_error)),
                Workload::new(1, |n| ours::pair_loop(node, Order::ZERO, Gfp::USER.zeroed(), n)),
            ],
        );
        Ok::<_, Box<dyn Error>>(Measured {
            ours: samples[0],
            peer: samples[1],
            note: format!(
                "{pages} pages per iteration on both sides, map and unmap outside the clock; host THP policy {policy}"
            ),
            probes: vec![
                probe(
                    "host_fault_4k",
                    "host kernel first-touch fault, anonymous mmap, 4 KiB (MADV_NOHUGEPAGE), per page",
                    samples[1],
                    String::new(),
                ),
                probe(
                    "zeroed_alloc_4k",
                    "our order-0 zeroed allocation + drop (the fault's allocation alone)",
                    samples[2],
                    format!("{:.0}% of our fault", 100.0 * samples[2].median_ns / samples[0].median_ns),
                ),
            ],
        })
    })??;
    host_error.map_or(Ok(measured), |e| Err(e.into()))
}

fn f2(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    let order = Order::new(ORDER_2M).expect("order 9 is at most MAX_ORDER");
    let policy = host::thp_policy();
    let mut host_error = None;
    let mut regions = 0;
    let mut buf = vec![1u8; 2 << 20];
    let before = host::thp_events();
    let measured = mm::with_mmu(|mmu| {
        let aspace = AddressSpace::new(mmu)?;
        let node = mmu.node();
        let samples = measure(
            settings,
            &mut [
                Workload::new(1, |n| mm::first_touch_loop(&aspace, mm::HUGE_PAGES, 1, true, n)),
                Workload::new(1, |n| host::touch_2m_loop(n, &mut host_error, &mut regions)),
                Workload::new(1, |n| ours::pair_loop(node, order, Gfp::USER.zeroed(), n)),
                Workload::new(1, |n| peers::zero_loop(&mut buf, n)),
            ],
        );
        let thp_faults = mmu.event(MmEvent::ThpFaultAlloc);
        let fallbacks = mmu.event(MmEvent::ThpFaultFallback);
        Ok::<_, Box<dyn Error>>((samples, thp_faults, fallbacks))
    })??;
    let (samples, thp_faults, fallbacks) = measured;
    let given = host::thp_verdict(before, host::thp_events(), regions);
    if let Some(e) = host_error {
        return Err(e.into());
    }
    let gbs = |s: &Sample| (2u64 << 20) as f64 / s.median_ns;
    Ok(Measured {
        ours: samples[0],
        peer: samples[1],
        note: format!(
            "ours: one write per 2 MiB ({thp_faults} THP faults, {fallbacks} fallbacks); the host writes all 512 pages \
             (511 hit the THP); host THP policy {policy}; {given}"
        ),
        probes: vec![
            probe(
                "host_fault_2m",
                "host kernel first-touch fault, anonymous mmap, 2 MiB aligned (MADV_HUGEPAGE), per 2 MiB",
                samples[1],
                format!("{:.1} GB/s", gbs(&samples[1])),
            ),
            probe(
                "zeroed_alloc_2m",
                "our order-9 zeroed allocation + drop (the fault's allocation and zeroing alone)",
                samples[2],
                format!(
                    "{:.1} GB/s; {:.0}% of our fault",
                    gbs(&samples[2]),
                    100.0 * samples[2].median_ns / samples[0].median_ns
                ),
            ),
            probe("memset_2m", "memset of a hot 2 MiB buffer", samples[3], format!("{:.1} GB/s", gbs(&samples[3]))),
        ],
    })
}
