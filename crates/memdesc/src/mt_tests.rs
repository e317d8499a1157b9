//! Multi-threaded tests of the real code: two or three CPUs as std threads
//! over one small node.
//!
//! The loom models check each protocol exhaustively on a model of the
//! atomics; these run the production build on real threads, so that Miri's
//! data-race detector and weak-memory emulation see the allocator's locks,
//! the per-CPU lists, P1 against frees, reallocations and splits (P2), and
//! the folio lock contended. Each test is small (a few dozen frames, a few
//! rounds under Miri) and repeats more natively, where only the assertions
//! and the final audit can catch a race.
//!
//! Every CPU is one thread whose id comes from a thread-local (`testutil::ThreadCpus`);
//! waits yield. Threads are scoped, so the node outlives them without
//! `unsafe`.

use crate::buddy::{FolioRef, Gfp, Node, NodeConfig, PcpConfig};
use crate::folio::{GetError, Order, PageType};
use crate::memmap::Pfn;
use crate::sync::{AtomicU64, Ordering};
use crate::testutil::{set_thread_cpu, with_node, ThreadCpus};
use std::vec::Vec;

/// Frames of RAM per test node: the metadata (descriptors and the node's
/// per-CPU arrays take about 20 frames) plus a few dozen to allocate.
const FRAMES: u64 = 64;

/// Rounds each CPU runs: a few under Miri, which interprets every step, and
/// more natively, where races need repetitions to show.
const ROUNDS: usize = if cfg!(miri) { 3 } else { 300 };

static TWO_CPUS: ThreadCpus = ThreadCpus { nr: 2 };
static THREE_CPUS: ThreadCpus = ThreadCpus { nr: 3 };

/// A node config with tiny per-CPU lists (so refills and give-backs happen
/// every few allocations), one zone and no watermark.
fn config(pcp: bool) -> NodeConfig {
    NodeConfig { movable_percent: 0, pcp: PcpConfig { enabled: pcp, batch: 2, high: 4 }, min_free_frames: Some(0) }
}

/// Runs `work(cpu)` on one thread per CPU of the node's platform and waits
/// for all of them; a panic on any CPU fails the test. Each thread drains
/// its CPU's lists as it ends (`Node::drain_local`, the adapters'
/// thread-exit hook): no later thread answers for that CPU.
fn on_cpus(node: &Node<'_>, work: impl Fn(u32) + Sync) {
    std::thread::scope(|scope| {
        for cpu in 0..node.nr_cpus() {
            let work = &work;
            scope.spawn(move || {
                set_thread_cpu(Some(cpu));
                work(cpu);
                node.drain_local();
                set_thread_cpu(None);
            });
        }
    });
}

/// Checks the allocator after every CPU has finished: no leaked folio, the
/// lists consistent, nothing quarantined.
fn assert_quiescent_and_clean(node: &Node<'_>) {
    node.drain_all();
    let audit = node.audit();
    assert_eq!(audit.violations, 0, "allocator invariants violated: {:?}", audit.first_violation);
    assert_eq!(audit.allocated, 0, "folios leaked");
    assert_eq!(audit.quarantined, 0, "frames quarantined");
    assert_eq!(node.vmstat().nr_free_pcp, 0, "drained pcp lists still hold frames");
}

/// Stamps every frame of `folio` with `stamp` in its first word.
fn stamp(folio: &FolioRef<'_>, stamp: u64) {
    for frame in folio.contents().chunks(crate::memmap::PAGE_SIZE / 8) {
        // Relaxed: the folio is this thread's alone; a stamp found changed
        // later (check_stamp) means another CPU was handed the same frame.
        frame[0].store(stamp, Ordering::Relaxed);
    }
}

/// Asserts every frame of `folio` still carries `stamp`.
fn check_stamp(folio: &FolioRef<'_>, stamp: u64) {
    for (i, frame) in folio.contents().chunks(crate::memmap::PAGE_SIZE / 8).enumerate() {
        // Relaxed: our own earlier store; see stamp().
        let seen = frame[0].load(Ordering::Relaxed);
        assert_eq!(seen, stamp, "frame {} of folio {} was handed to someone else", i, folio.pfn());
    }
}

/// What a successful speculative get of `pfn` must see (P1's promise),
/// twice, with a yield between: a held reference pins the folio's head,
/// order and type.
fn check_get(node: &Node<'_>, pfn: Pfn) -> bool {
    match node.try_get(pfn) {
        Ok(folio) => {
            let (head, order, ty) = (folio.pfn(), folio.order(), folio.page_type());
            assert!(folio.contains(pfn), "P1 violated: reference to folio {head} which does not hold {pfn}");
            assert!(ty.is_owner_type(), "P1 violated: counted folio {head} has type {ty}");
            assert!(head.is_aligned(order.get()), "P1 violated: folio {head} misaligned for order {order}");
            std::thread::yield_now();
            assert_eq!((folio.order(), folio.page_type()), (order, ty), "P1 violated: folio {head} changed");
            true
        }
        // Metadata: an aim rounded down below the first managed frame.
        Err(GetError::Free | GetError::Frozen | GetError::Moved | GetError::Unmanaged(PageType::Metadata)) => false,
        Err(e) => panic!("P1 violated: unexpected error {e} for {pfn}"),
    }
}

/// Three CPUs allocate and free folios of orders 0–2 through their tiny
/// per-CPU lists; each frees half of what it allocates on the next CPU
/// (through a shared hand-off), so blocks move between CPUs' lists and the
/// zone. Then all three exhaust memory together, which drains every CPU's
/// lists while the others use theirs. No frame is ever handed to two CPUs
/// at once (stamps), and everything comes back.
#[test]
fn alloc_and_free_across_cpus_through_pcp_lists() {
    with_node(FRAMES, &[], config(true), &THREE_CPUS, |node| {
        let handoff: [std::sync::Mutex<Vec<(FolioRef<'_>, u64)>>; 3] = Default::default();
        on_cpus(node, |cpu| {
            for round in 0..ROUNDS {
                let mut held = Vec::new();
                // Mostly movable (the zone's pageblocks are), one unmovable
                // request per round to take the fallback path.
                for (i, (order, gfp)) in
                    [(0, Gfp::USER), (1, Gfp::USER), (0, Gfp::KERNEL), (2, Gfp::USER), (0, Gfp::USER)]
                        .into_iter()
                        .enumerate()
                {
                    let Ok(folio) = node.alloc(Order::new(order).unwrap(), gfp) else {
                        continue;
                    };
                    let tag = (u64::from(cpu) << 48) | ((round as u64) << 8) | i as u64;
                    stamp(&folio, tag);
                    held.push((folio, tag));
                }
                std::thread::yield_now();
                for (folio, tag) in &held {
                    check_stamp(folio, *tag);
                }
                // Half to the next CPU, half freed here; then free what the
                // previous CPU handed us.
                let next = (cpu as usize + 1) % 3;
                let mut give = Vec::new();
                for (i, entry) in held.into_iter().enumerate() {
                    if i % 2 == 0 {
                        give.push(entry);
                    }
                }
                handoff[next].lock().unwrap().extend(give);
                let mine = core::mem::take(&mut *handoff[cpu as usize].lock().unwrap());
                for (folio, tag) in mine {
                    check_stamp(&folio, tag);
                }
            }
            // Exhaust memory from every CPU at once: a failing CPU drains
            // every CPU's lists (remote drains that ask each owner).
            let mut all = Vec::new();
            while let Ok(folio) = node.alloc(Order::ZERO, Gfp::USER) {
                let tag = (u64::from(cpu) << 48) | 0xffff;
                stamp(&folio, tag);
                all.push((folio, tag));
            }
            for (folio, tag) in &all {
                check_stamp(folio, *tag);
            }
        });
        for list in handoff {
            for (folio, tag) in list.into_inner().unwrap() {
                check_stamp(&folio, tag);
            }
        }
        assert_quiescent_and_clean(node);
    });
}

/// P1 against free and reallocation: one CPU allocates, stamps and frees
/// folios of mixed orders and types (reusing the same frames as folios of
/// other orders, seed 000's case), while two CPUs take speculative
/// references to the pfns it works on and check what they got.
#[test]
fn speculative_gets_race_frees_and_reallocations() {
    with_node(FRAMES, &[], config(false), &THREE_CPUS, |node| {
        let target = AtomicU64::new(node.memmap().end_pfn().0 - 4);
        let done = AtomicU64::new(0);
        on_cpus(node, |cpu| {
            if cpu == 0 {
                for round in 0..ROUNDS * 4 {
                    let order = Order::new([1, 0, 2, 0][round % 4]).unwrap();
                    let gfp = if round % 3 == 0 { Gfp::USER.typed(PageType::File) } else { Gfp::USER };
                    let folio = node.alloc(order, gfp).unwrap();
                    // Relaxed: only a hint of where to aim; P1 must hold for
                    // any pfn, whatever the getters see.
                    target.store(folio.pfn().add(folio.nr_pages() - 1).0, Ordering::Relaxed);
                    stamp(&folio, round as u64);
                    std::thread::yield_now();
                    drop(folio);
                }
                // Relaxed: a stop flag; the scope's join orders the rest.
                done.store(1, Ordering::Relaxed);
            } else {
                // Relaxed: a stop flag, see above.
                while done.load(Ordering::Relaxed) == 0 {
                    // Relaxed: a hint, see the store.
                    let aim = Pfn(target.load(Ordering::Relaxed));
                    for pfn in [aim, Pfn(aim.0 & !1), Pfn(aim.0 & !3)] {
                        check_get(node, pfn);
                    }
                    std::thread::yield_now();
                }
            }
        });
        assert_quiescent_and_clean(node);
    });
}

/// P2 against P1: one CPU allocates an order-2 folio, freezes it (which
/// fails while a getter holds a reference) and splits it into order-0
/// folios, unfreezing the pieces before the original head; two CPUs take
/// speculative references to the head and the tails meanwhile. A getter
/// must never hold a reference to a folio that does not contain its pfn.
#[test]
fn split_races_speculative_getters() {
    with_node(FRAMES, &[], config(false), &THREE_CPUS, |node| {
        // Getters aim at the four frames from here until the first split.
        let target = AtomicU64::new(node.memmap().end_pfn().0 - 4);
        let done = AtomicU64::new(0);
        // Set by the splitter after a few failed freezes: getters hold their
        // references across yields, and two of them on two cores can keep
        // the count above 1 indefinitely (the freeze is not fair, by design:
        // P2.1 fails while anyone holds a reference). The getters pause
        // until it is clear, so the splitter makes progress.
        let backoff = AtomicU64::new(0);
        on_cpus(node, |cpu| {
            if cpu == 0 {
                let mut splits = 0;
                for _ in 0..ROUNDS * 2 {
                    let mut folio = node.alloc(Order::new(2).unwrap(), Gfp::USER).unwrap();
                    // Relaxed: a hint, as in the test above.
                    target.store(folio.pfn().0, Ordering::Relaxed);
                    std::thread::yield_now();
                    let mut attempts = 0;
                    let frozen = loop {
                        match folio.try_freeze() {
                            Ok(frozen) => break frozen,
                            // A getter holds a reference: P2.1 fails, we
                            // keep ours and retry once it is dropped.
                            Err(err) => {
                                folio = err.folio;
                                attempts += 1;
                                if attempts == 16 {
                                    // Relaxed: a scheduling hint; the freeze's
                                    // CAS decides, whatever the getters see.
                                    backoff.store(1, Ordering::Relaxed);
                                }
                                assert!(attempts < 100_000, "getters starved the freeze of {}", folio.pfn());
                                std::thread::yield_now();
                            }
                        }
                    };
                    // Relaxed: the hint above, withdrawn.
                    backoff.store(0, Ordering::Relaxed);
                    // The split yields the new folios, then the original
                    // head, which is so unfrozen last (P2.6).
                    let pieces: Vec<_> =
                        frozen.split(Order::ZERO).unwrap().map(|piece| piece.unfreeze_one().unwrap()).collect();
                    assert_eq!(pieces.len(), 4);
                    assert!(pieces.iter().all(|piece| piece.order() == Order::ZERO));
                    splits += 1;
                    std::thread::yield_now();
                    drop(pieces);
                }
                assert_eq!(splits, ROUNDS * 2);
                // Relaxed: a stop flag; the scope's join orders the rest.
                done.store(1, Ordering::Relaxed);
            } else {
                // Relaxed: a stop flag, see above.
                while done.load(Ordering::Relaxed) == 0 {
                    // Relaxed: a hint, see the store.
                    let head = target.load(Ordering::Relaxed);
                    for offset in [0, 1, 2, 3] {
                        check_get(node, Pfn(head + offset));
                    }
                    // Leave the splitter a window with no reference held,
                    // and stay out while it asks for one.
                    std::thread::yield_now();
                    // Relaxed: hints (see the stores).
                    while backoff.load(Ordering::Relaxed) == 1 && done.load(Ordering::Relaxed) == 0 {
                        std::thread::yield_now();
                    }
                }
            }
        });
        assert_quiescent_and_clean(node);
    });
}

/// The folio lock under contention (L.1–L.3): two CPUs share one folio and
/// increment a word of its contents with a plain load and store, under the
/// lock; every increment survives only if the lock excludes and orders the
/// holders. Waiters go through the platform's wait.
#[test]
fn folio_lock_serialises_cpus() {
    with_node(FRAMES, &[], config(true), &TWO_CPUS, |node| {
        let folio = node.alloc(Order::ZERO, Gfp::KERNEL.zeroed()).unwrap();
        let rounds = ROUNDS * 4;
        on_cpus(node, |_cpu| {
            let mine = folio.clone();
            for _ in 0..rounds {
                let locked = mine.lock();
                let word = &locked.folio().contents()[0];
                // Relaxed: the folio lock orders holders (L.1's Acquire
                // pairs with L.3's Release); a broken lock loses increments.
                let value = word.load(Ordering::Relaxed);
                std::thread::yield_now();
                // Relaxed: see the load.
                word.store(value + 1, Ordering::Relaxed);
                drop(locked);
            }
        });
        // Relaxed: the scope joined every CPU.
        assert_eq!(folio.contents()[0].load(Ordering::Relaxed), 2 * rounds as u64);
        drop(folio);
        assert_quiescent_and_clean(node);
    });
}
