//! Per-CPU lists: refill and give-back through the zone (PCP.4), a remote
//! drain asking the owner while it allocates and frees (PCP.3, PCP.6–9),
//! the drain and retry before an allocation fails (PCP.11), and the
//! fallback path of a thread with no CPU beside an owner (PCP.10).
//!
//! Every CPU thread that ends calls `Node::drain_local` (the embedder's
//! thread-exit hook), except where a model says otherwise.

use super::{audit_clean, config, on_two_cpus, set_cpu, with_node, Frames, NO_CPU};
use crate::buddy::{FolioRef, Gfp, Node};
use crate::folio::Order;

/// Asserts every CPU's lists are empty and every frame is back in a zone.
fn assert_all_back(node: &Node<'_>, free: u64) {
    let audit = audit_clean(node);
    assert_eq!(audit.allocated, 0, "PCP.4 violated: frames lost");
    assert_eq!(audit.free, free, "PCP.4 violated: frames lost");
    let cached = node.vmstat().nr_free_pcp;
    assert_eq!(cached, 0, "PCP.9 violated: {cached} frames still cached after every CPU drained");
}

/// Two CPUs allocate and free through their per-CPU lists and the shared
/// zone (refill and give-back under the zone lock; one CPU refills and
/// gives back an order-1 block, the other two frames); they never get the
/// same frame, each writes the frames it got, and the allocator's lists
/// stay consistent.
fn two_cpus_share_the_zone() {
    with_node(config(true, 2, 1), |node| {
        let free = audit_clean(node).free;
        let frames = Frames::new();
        let other = frames.clone();
        on_two_cpus(
            node,
            move |node| {
                let a = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                let b = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                assert_ne!(a.pfn(), b.pfn(), "PCP.4 violated: one frame handed out twice");
                other.write(a.pfn(), Order::ZERO, 1);
                other.write(b.pfn(), Order::ZERO, 1);
                drop((a, b));
                node.drain_local();
            },
            |node| {
                let order = Order::new(1).unwrap();
                let c = node.alloc(order, Gfp::KERNEL).unwrap();
                frames.write(c.pfn(), order, 2);
                drop(c);
            },
        );
        node.drain_local();
        assert_all_back(node, free);
    });
}

#[test]
fn pcp_two_cpus_share_the_zone() {
    crate::testutil::check_model(two_cpus_share_the_zone);
}

/// A remote drain (`drain_all` on CPU 0) asks CPU 1 while CPU 1 allocates,
/// writes and frees frames through its list (a refill, then a give-back
/// past `high`), then ends. CPU 1's lists are touched by CPU 1 alone
/// (PCP.6–7: a drain that takes them itself races on them); every frame is
/// given back exactly once (a double give-back corrupts the zone's lists,
/// which the audit sees) and none is lost. When `drain_all` reports every
/// CPU answered, the frames CPU 1 cached before it are in the zone.
fn remote_drain_races_owner() {
    with_node(config(true, 2, 1), |node| {
        let free = audit_clean(node).free;
        let frames = Frames::new();
        let other = frames.clone();
        on_two_cpus(
            node,
            move |node| {
                let a = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                other.write(a.pfn(), Order::ZERO, 1);
                drop(a);
                let b = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                other.write(b.pfn(), Order::ZERO, 1);
                drop(b);
                node.drain_local();
            },
            |node| {
                let report = node.drain_all();
                assert_eq!(report.unanswered, 0, "PCP.8 violated: CPU 1 entered or ended, yet did not answer");
                // What CPU 0 can take now: CPU 1's frames, if it had any,
                // are back in the zone or on their way through its entry.
                let got = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                frames.write(got.pfn(), Order::ZERO, 2);
                drop(got);
            },
        );
        node.drain_local();
        assert_all_back(node, free);
    });
}

#[test]
fn pcp_remote_drain_races_owner() {
    crate::testutil::check_model_with_branches(DRAIN_BRANCHES, remote_drain_races_owner);
}

/// The free frames sit on CPU 1's list (the zone is empty) when CPU 0
/// allocates: CPU 0 must ask CPU 1 to drain and retry (PCP.11) rather than
/// fail. Meanwhile CPU 1 frees a frame past its `high` (a give-back) and
/// allocates and frees one from its own list, then ends (PCP.9). Frame
/// contents written by each owner hand over through the zone lock.
///
/// Layout (24 frames): both order-3 blocks and six single frames are taken
/// on CPU 1; two of the singles are freed to CPU 1's list (batch 1, high 2)
/// and one more is held for the give-back.
fn drain_then_retry_before_oom() {
    with_node(config(true, 1, 2), |node| {
        set_cpu(1);
        let blocks = [3, 3].map(|o| node.alloc(Order::new(o).unwrap(), Gfp::USER).unwrap());
        let mut singles: std::vec::Vec<_> = (0..6).map(|_| node.alloc(Order::ZERO, Gfp::USER).unwrap()).collect();
        let frames = Frames::new();
        for single in &singles {
            frames.write(single.pfn(), Order::ZERO, 1);
        }
        drop(singles.drain(..2));
        let given_back = singles.pop().unwrap().into_raw();
        let other = frames.clone();
        on_two_cpus(
            node,
            move |node| {
                other.write(given_back, Order::ZERO, 2);
                // SAFETY: duty 1: the reference into_raw gave up above,
                // restored once.
                drop(unsafe { FolioRef::from_raw(node, given_back) }.unwrap());
                let own = node.alloc(Order::ZERO, Gfp::USER).unwrap();
                other.write(own.pfn(), Order::ZERO, 2);
                drop(own);
                node.drain_local();
            },
            |node| {
                let got = node
                    .alloc(Order::ZERO, Gfp::USER)
                    .unwrap_or_else(|e| panic!("PCP.11 violated: free frames on another CPU's list, yet {e}"));
                frames.write(got.pfn(), Order::ZERO, 3);
                drop(got);
            },
        );
        drop((blocks, singles));
        node.drain_local();
        assert_all_back(node, FRAMES_FREE);
    });
}

/// Free frames of the 24-frame node (the first two hold the memory map).
const FRAMES_FREE: u64 = super::FRAMES - 2;

/// Branches per execution: booting, filling and auditing the node with
/// the free path's checks takes more than loom's default 1000.
const DRAIN_BRANCHES: usize = 4000;

#[test]
fn pcp_drain_then_retry_before_oom() {
    crate::testutil::check_model_with_branches(DRAIN_BRANCHES, drain_then_retry_before_oom);
}

/// The owner answers at its next entry (PCP.3): the only free frames sit
/// on CPU 1's list when CPU 0 allocates; CPU 1 waits until a request is
/// posted, then allocates and frees once, and ends *without* draining (a
/// thread that keeps running as its CPU). CPU 0's allocation must succeed
/// on the frames CPU 1's entry gave back.
fn owner_answers_at_its_next_entry() {
    with_node(config(true, 1, 2), |node| {
        set_cpu(1);
        let blocks = [3, 3].map(|o| node.alloc(Order::new(o).unwrap(), Gfp::USER).unwrap());
        let mut singles: std::vec::Vec<_> = (0..6).map(|_| node.alloc(Order::ZERO, Gfp::USER).unwrap()).collect();
        let frames = Frames::new();
        for single in &singles {
            frames.write(single.pfn(), Order::ZERO, 1);
        }
        drop(singles.drain(..2));
        let other = frames.clone();
        on_two_cpus(
            node,
            move |node| {
                while !node.pcp[1].drain_requested() {
                    loom::thread::yield_now();
                }
                let own = node.alloc(Order::ZERO, Gfp::USER).unwrap();
                other.write(own.pfn(), Order::ZERO, 2);
                drop(own);
            },
            |node| {
                let got = node
                    .alloc(Order::ZERO, Gfp::USER)
                    .unwrap_or_else(|e| panic!("PCP.3 violated: CPU 1 entered after the request, yet {e}"));
                frames.write(got.pfn(), Order::ZERO, 3);
                drop(got);
            },
        );
        drop((blocks, singles));
        set_cpu(1);
        node.drain_local();
        set_cpu(0);
        node.drain_local();
        assert_all_back(node, FRAMES_FREE);
    });
}

#[test]
fn pcp_owner_answers_at_its_next_entry() {
    crate::testutil::check_model_with_branches(DRAIN_BRANCHES, owner_answers_at_its_next_entry);
}

/// A thread with no CPU (PCP.10) allocates, writes and frees frames
/// through the zone's locked path while CPU 0 refills, uses and gives back
/// through its own list: the fallback never touches CPU 0's lists (a race
/// loom reports on their cell), no frame is handed out twice, none is lost.
fn fallback_races_the_owner() {
    with_node(config(true, 1, 1), |node| {
        let free = audit_clean(node).free;
        let frames = Frames::new();
        let other = frames.clone();
        on_two_cpus(
            node,
            move |node| {
                set_cpu(NO_CPU);
                let a = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                other.write(a.pfn(), Order::ZERO, 1);
                drop(a);
            },
            |node| {
                let b = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                let c = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                frames.write(b.pfn(), Order::ZERO, 2);
                frames.write(c.pfn(), Order::ZERO, 2);
                drop((b, c));
            },
        );
        node.drain_local();
        assert_all_back(node, free);
    });
}

#[test]
fn pcp_fallback_races_the_owner() {
    crate::testutil::check_model(fallback_races_the_owner);
}

/// An allocation that fails without draining the other CPUs' lists.
#[cfg(memdesc_mutant = "no_drain_before_oom")]
#[test]
fn mutant_no_drain_before_oom_is_caught() {
    crate::testutil::assert_model_fails_with_branches(DRAIN_BRANCHES, drain_then_retry_before_oom);
}

/// An allocation that drains but fails without retrying.
#[cfg(memdesc_mutant = "no_retry_after_drain")]
#[test]
fn mutant_no_retry_after_drain_is_caught() {
    crate::testutil::assert_model_fails_with_branches(DRAIN_BRANCHES, drain_then_retry_before_oom);
}

/// A remote drain that takes the owner's lists itself instead of asking.
#[cfg(memdesc_mutant = "remote_drain_takes_owner_lists")]
#[test]
fn mutant_remote_drain_takes_owner_lists_is_caught() {
    crate::testutil::assert_model_fails_with_branches(DRAIN_BRANCHES, remote_drain_races_owner);
}

/// An owner that never looks at the request word at its entry.
#[cfg(memdesc_mutant = "pcp_owner_ignores_drain_request")]
#[test]
fn mutant_pcp_owner_ignores_drain_request_is_caught() {
    crate::testutil::assert_model_fails_with_branches(DRAIN_BRANCHES, owner_answers_at_its_next_entry);
}

/// A thread with no CPU that uses CPU 0's lists anyway (PCP.10).
#[cfg(memdesc_mutant = "fallback_uses_cpu0_lists")]
#[test]
fn mutant_fallback_uses_cpu0_lists_is_caught() {
    crate::testutil::assert_model_fails(fallback_races_the_owner);
}

/// The spin lock's unlock without Release (L.4): the next holder of a zone
/// lock no longer sees the lists the last one left.
#[cfg(memdesc_mutant = "relaxed_spin_unlock")]
#[test]
fn mutant_relaxed_spin_unlock_is_caught() {
    crate::testutil::assert_model_fails(two_cpus_share_the_zone);
}
