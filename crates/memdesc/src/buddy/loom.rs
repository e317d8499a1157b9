//! Loom models of the allocator's publication (P3) and of two CPUs sharing
//! the zone lock and per-CPU lists.

use super::{Gfp, Node, NodeConfig, PcpConfig};
use crate::folio::{GetError, Order, PageType};
use crate::memmap::Pfn;
use crate::platform::{CpuId, Platform, WaitKey};
use crate::testutil::{check_model, with_node};
use core::cell::Cell;
use loom::thread;

const FRAMES: u64 = 24;

loom::thread_local! {
    static CPU: Cell<u32> = Cell::new(0);
}

/// Two CPUs; each loom thread says which it is.
struct TwoCpus;

impl Platform for TwoCpus {
    fn current_cpu(&self) -> CpuId {
        CpuId(CPU.with(Cell::get))
    }
    fn nr_cpus(&self) -> u32 {
        2
    }
    fn wait(&self, _: WaitKey, _: &dyn Fn() -> bool) {
        thread::yield_now();
    }
    fn wake_all(&self, _: WaitKey) {}
}

static PLATFORM: TwoCpus = TwoCpus;

fn config(pcp: bool) -> NodeConfig {
    NodeConfig { movable_percent: 0, pcp: PcpConfig { enabled: pcp, batch: 2, high: 2 }, min_free_frames: Some(0) }
}

/// Runs `a` on a second CPU's thread and `b` on this one, over one node.
fn two_cpus(pcp: bool, a: fn(&Node<'_>, Pfn), b: fn(&Node<'_>, Pfn)) {
    with_node(FRAMES, &[], config(pcp), &PLATFORM, |node| {
        // The frame the next order-0 allocation will take (pcp off, one CPU
        // so far: deterministic), found by allocating and freeing it.
        let target = {
            let probe = node.alloc(Order::ZERO, Gfp::USER).unwrap();
            probe.pfn()
        };
        let addr = node as *const Node<'_> as usize;
        let other = thread::spawn(move || {
            CPU.with(|c| c.set(1));
            // SAFETY: the node lives until `with_node` returns, after the
            // join below.
            a(unsafe { &*(addr as *const Node<'static>) }, target);
        });
        b(node, target);
        other.join().unwrap();
        assert_eq!(node.audit().violations, 0, "allocator invariants violated: {:?}", node.audit().first_violation);
    });
}

/// P3: a scanner's speculative get races the allocation that publishes a
/// freshly typed folio on the frame it aims at.
fn get_races_alloc() {
    two_cpus(
        false,
        |node, target| match node.try_get(target) {
            Ok(folio) => {
                let ty = folio.page_type();
                assert_eq!(ty, PageType::Anon, "P3 violated: counted folio {} still reads type {ty}", folio.pfn());
                assert_eq!(folio.order(), Order::ZERO, "P3 violated: stale compound info");
            }
            Err(GetError::Free | GetError::Frozen | GetError::Moved) => {}
            Err(e) => panic!("P3 violated: unexpected error {e}"),
        },
        |node, target| {
            let folio = node.alloc(Order::ZERO, Gfp::USER).unwrap();
            assert_eq!(folio.pfn(), target);
        },
    );
}

#[test]
fn p3_get_races_alloc_publish() {
    check_model(get_races_alloc);
}

/// Two CPUs allocate and free through their per-CPU lists and the shared
/// zone (refill and give-back under the zone lock); they never get the same
/// frame, and the allocator's lists stay consistent.
#[test]
fn pcp_two_cpus_share_the_zone() {
    check_model(|| {
        two_cpus(
            true,
            |node, _| {
                let a = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                let b = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
                assert_ne!(a.pfn(), b.pfn());
                drop((a, b));
            },
            |node, _| {
                let c = node.alloc(Order::new(1).unwrap(), Gfp::KERNEL).unwrap();
                drop(c);
            },
        )
    });
}

/// The typed folio published without Release (DESIGN §4).
#[cfg(memdesc_mutant = "relaxed_type_publish")]
#[test]
fn mutant_relaxed_type_publish_is_caught() {
    crate::testutil::assert_model_fails(get_races_alloc);
}

/// A CPU frees a block while another takes that block's buddy off the free
/// list (zone lock only, no pcp): the taker must retype its block under the
/// lock, or the freer merges with a block that is no longer free.
#[test]
fn zone_free_races_take_of_its_buddy() {
    check_model(free_races_take);
}

fn free_races_take() {
    {
        with_node(FRAMES, &[], config(false), &PLATFORM, |node| {
            // The first order-0 allocation splits an order-1 block and leaves
            // its buddy alone on the order-0 list: the next one takes it.
            let first = node.alloc(Order::ZERO, Gfp::USER).unwrap();
            let raw = first.into_raw();
            let addr = node as *const Node<'_> as usize;
            let other = thread::spawn(move || {
                CPU.with(|c| c.set(1));
                // SAFETY: the node outlives the join below.
                let node = unsafe { &*(addr as *const Node<'static>) };
                // SAFETY: duty 1: `raw` is the reference given up by
                // into_raw above, put once.
                unsafe { node.put_pfn(raw) }.unwrap();
            });
            let taken = node.alloc(Order::ZERO, Gfp::USER).unwrap();
            other.join().unwrap();
            drop(taken);
            let audit = node.audit();
            assert_eq!(audit.violations, 0, "allocator invariants violated: {:?}", audit.first_violation);
            assert_eq!(audit.allocated, 0);
        });
    }
}

/// A taken block retyped only after the zone lock is dropped.
#[cfg(memdesc_mutant = "buddy_retype_after_unlock")]
#[test]
fn mutant_buddy_retype_after_unlock_is_caught() {
    crate::testutil::assert_model_fails(free_races_take);
}
