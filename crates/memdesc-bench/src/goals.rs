//! The goals of the performance reference (performance.md §4) this binary
//! measures, each against its peer in the same run, and the probes that show
//! what limits them.
//!
//! A goal's ratio is ours ÷ peer (for P5: our 2-thread wall ns/op ÷ our
//! 1-thread ns/op; for R1 the peer is the floor of any get + put, its two
//! atomics timed alone), and it is met when the ratio is at most the bound.

use crate::harness::{measure, Sample, Settings, Workload};
use crate::{ours, peers};
use memdesc::buddy::PcpConfig;
use memdesc::{Gfp, NodeConfig, Order, PAGE_SIZE};
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
        limit: "Per pair the fast path makes three locked read-modify-writes where the peer \
                makes one: the pcp spin lock's `lock cmpxchg` on alloc and again on free, and the \
                put's `lock xadd` (the publish is a plain Release store). The `pcp_pair_atomics` \
                probe times those atomics alone in the same run: about 4x a fetch_add, since each \
                locked instruction also waits for the stores before it to drain, so they exceed \
                the bound by themselves. \
                Around them (about 470 instructions per pair under callgrind, none dominant): the \
                CPU id fetched once per alloc and once per free through `dyn Platform` and a \
                thread-local, the vmstat counters, the free-time checks, the pageblock-migratetype \
                lookup on free, and bounds-checked descriptor lookups. Meeting 3x needs at most one \
                locked RMW per \
                pair: a per-CPU fast path that takes no atomic lock while the thread is bound to its \
                CPU (SLUB sheaves' local_trylock is a plain per-CPU flag), with remote drains \
                asking the owner CPU instead of taking its lock.",
        run: p1,
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
];

fn default_node() -> NodeConfig {
    NodeConfig::default()
}

fn probe(id: &'static str, description: &'static str, sample: Sample, note: String) -> Probe {
    Probe { id, description, sample, note }
}

fn p1(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    ours::with_node(default_node(), |node, _| {
        let before = node.vmstat();
        let samples = measure(
            settings,
            &mut [
                Workload::new(1, |n| ours::pair_loop(node, Order::ZERO, Gfp::KERNEL, n)),
                Workload::new(1, peers::fetch_add_loop),
                Workload::new(1, peers::pcp_pair_atomics_loop),
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
                    "atomics alone of a pcp pair: 2 lock cycles + store + fetch_sub",
                    samples[2],
                    format!("{floor:.2}x fetch_add: the floor of P1's current design"),
                ),
            ],
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
        ours::with_node(default_node(), |other, _| {
            let samples = measure(
                settings,
                &mut [
                    Workload::new(2, |n| ours::churn_threads(node, platform, 2, n)),
                    Workload::new(1, |n| ours::pair_loop(node, Order::ZERO, Gfp::KERNEL, n)),
                    Workload::new(2, |n| ours::churn_separate_nodes(&[node, other], platform, n)),
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
