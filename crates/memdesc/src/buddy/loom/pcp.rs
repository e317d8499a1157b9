//! Per-CPU lists: refill and give-back through the zone (PCP.1, PCP.2), a
//! remote drain racing the owner's own use of its list (PCP.3), and the
//! drain and retry before an allocation fails (PCP.4).

use super::{audit_clean, config, on_two_cpus, set_cpu, with_node, Frames};
use crate::buddy::{FolioRef, Gfp};
use crate::folio::Order;

/// Two CPUs allocate and free through their per-CPU lists and the shared
/// zone (refill and give-back under the zone lock; one CPU refills and
/// gives back an order-1 block, the other two frames); they never get the
/// same frame, each writes the frames it got, and the allocator's lists
/// stay consistent.
fn two_cpus_share_the_zone() {
    with_node(config(true, 2, 1), |node| {
        let frames = Frames::new();
        let other = frames.clone();
        on_two_cpus(
            node,
            move |node| {
                let a = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                let b = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                assert_ne!(a.pfn(), b.pfn(), "PCP.1 violated: one frame handed out twice");
                other.write(a.pfn(), Order::ZERO, 1);
                other.write(b.pfn(), Order::ZERO, 1);
                drop((a, b));
            },
            |node| {
                let order = Order::new(1).unwrap();
                let c = node.alloc(order, Gfp::KERNEL).unwrap();
                frames.write(c.pfn(), order, 2);
                drop(c);
            },
        );
        let audit = audit_clean(node);
        assert_eq!(audit.allocated, 0, "PCP.2 violated: frames lost");
    });
}

#[test]
fn pcp_two_cpus_share_the_zone() {
    crate::testutil::check_model(two_cpus_share_the_zone);
}

/// The only free frames sit on CPU 1's list (the zone is empty) when CPU 0
/// allocates: CPU 0 must drain CPU 1's list and retry (PCP.4) rather than
/// fail. Meanwhile CPU 1 frees a frame past its `high` (a give-back) and
/// allocates and frees one from its own list, racing the remote drain
/// (PCP.3). Frame contents written by each owner hand over through the
/// locks.
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
            },
            |node| {
                let got = node
                    .alloc(Order::ZERO, Gfp::USER)
                    .unwrap_or_else(|e| panic!("PCP.4 violated: free frames on another CPU's list, yet {e}"));
                frames.write(got.pfn(), Order::ZERO, 3);
                drop(got);
            },
        );
        let audit = audit_clean(node);
        assert_eq!(audit.free, 3, "PCP.3 violated: frames lost");
        drop((blocks, singles));
        node.drain_all();
        for (cpu, lists) in node.pcp.iter().enumerate() {
            let left: u32 = lists.iter().map(|pcp| pcp.count()).sum();
            assert_eq!(left, 0, "PCP.3 violated: a drain left {left} frames on CPU {cpu}'s lists");
        }
    });
}

/// Branches per execution: booting, filling and auditing the node with
/// the free path's checks takes more than loom's default 1000.
const DRAIN_BRANCHES: usize = 4000;

#[test]
fn pcp_drain_then_retry_before_oom() {
    crate::testutil::check_model_with_branches(DRAIN_BRANCHES, drain_then_retry_before_oom);
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

/// A remote drain that does not take the owning CPU's pcp lock.
#[cfg(memdesc_mutant = "drain_without_pcp_lock")]
#[test]
fn mutant_drain_without_pcp_lock_is_caught() {
    crate::testutil::assert_model_fails_with_branches(DRAIN_BRANCHES, drain_then_retry_before_oom);
}

/// The spin lock's unlock without Release (L.4): the next holder of a pcp
/// or zone lock no longer sees the lists the last one left.
#[cfg(memdesc_mutant = "relaxed_spin_unlock")]
#[test]
fn mutant_relaxed_spin_unlock_is_caught() {
    crate::testutil::assert_model_fails(two_cpus_share_the_zone);
}
