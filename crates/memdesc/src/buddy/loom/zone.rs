//! The zone lock and its free lists: a block leaves its list retyped (L.5),
//! merges only with a listed buddy (L.6), and fallback steals a block or
//! claims whole pageblocks for another migratetype (Z.1, Z.2).

use super::{audit_clean, config, on_two_cpus, with_node, with_node_of, Frames};
use crate::buddy::{FolioRef, Gfp, Migratetype};
use crate::folio::{Order, PageType};
use crate::memmap::Pfn;

fn order(o: u32) -> Order {
    Order::new(o).unwrap()
}

/// Frees a block of `order` on CPU 1 while CPU 0 takes that block's buddy
/// off the zone's free list at `order` (zone lock only, no pcp): the taker
/// must retype its block under the lock (L.5), or the freer's merge (L.6)
/// unlinks a block that is on no list.
///
/// The first allocation of `order` splits a larger block (order 0: the
/// order-1 block at 2; order 1: the order-2 block at 4, after the order-1
/// block at 2 is taken), so its buddy is alone on its list.
fn free_races_take(o: Order) {
    with_node(config(false, 2, 2), |node| {
        let keep = (o != Order::ZERO).then(|| node.alloc(o, Gfp::USER).unwrap());
        let first = node.alloc(o, Gfp::USER).unwrap();
        let (head, buddy) = (first.pfn(), Pfn(first.pfn().0 ^ o.nr_pages()));
        let frames = Frames::new();
        let freer = frames.clone();
        let raw = first.into_raw();
        on_two_cpus(
            node,
            move |node| {
                freer.write(raw, o, 1);
                // SAFETY: duty 1: `raw` is the reference given up by into_raw
                // above, put once.
                unsafe { node.put_pfn(raw) }.unwrap();
            },
            |node| {
                let taken = node.alloc(o, Gfp::USER).unwrap();
                // Either the buddy (taken before the free merged it) or,
                // after the merge, the lower half of the merged block.
                assert!(taken.pfn() == buddy || taken.pfn() == head, "L.6 violated: took {}", taken.pfn());
                frames.write(taken.pfn(), o, 2);
                drop(taken);
            },
        );
        drop(keep);
        let audit = audit_clean(node);
        assert_eq!(audit.allocated, 0, "L.6 violated: frames lost");
    });
}

fn free_races_take_order0() {
    free_races_take(Order::ZERO);
}

fn free_races_take_order1() {
    free_races_take(order(1));
}

#[test]
fn zone_free_races_take_of_its_buddy() {
    crate::testutil::check_model(free_races_take_order0);
}

#[test]
fn zone_free_races_take_of_its_order1_buddy() {
    crate::testutil::check_model(free_races_take_order1);
}

/// A taken block retyped only after the zone lock is dropped.
#[cfg(memdesc_mutant = "buddy_retype_after_unlock")]
#[test]
fn mutant_buddy_retype_after_unlock_is_caught() {
    crate::testutil::assert_model_fails(free_races_take_order0);
}

/// The same mutant on order-1 buddies.
#[cfg(memdesc_mutant = "buddy_retype_after_unlock")]
#[test]
fn mutant_buddy_retype_after_unlock_is_caught_on_order1() {
    crate::testutil::assert_model_fails(free_races_take_order1);
}

/// Z.1: an unmovable single-frame request finds only a movable order-1
/// block in a pageblock too full to claim, and steals it (its upper half
/// going back to the movable list), while CPU 1 frees that block's buddy.
/// The steal must retype the block under the zone lock, like L.5, or the
/// free merges with it.
///
/// Layout (24 frames, pageblocks of 8): both order-3 blocks and the order-1
/// block at 2 are taken, then an order-1 allocation splits the block at 4
/// and leaves 6 alone on the movable order-1 list; pageblock 0 then has 2
/// free frames of 8.
fn steal_races_free_of_its_buddy() {
    with_node(config(false, 2, 2), |node| {
        let held = [3, 3, 1].map(|o| node.alloc(order(o), Gfp::USER).unwrap());
        let freed = node.alloc(order(1), Gfp::USER).unwrap();
        assert_eq!(freed.pfn(), Pfn(4));
        let frames = Frames::new();
        let freer = frames.clone();
        let raw = freed.into_raw();
        on_two_cpus(
            node,
            move |node| {
                freer.write(raw, order(1), 1);
                // SAFETY: duty 1: the reference into_raw gave up above.
                unsafe { node.put_pfn(raw) }.unwrap();
            },
            |node| {
                let stolen = node
                    .alloc(Order::ZERO, Gfp::KERNEL)
                    .unwrap_or_else(|e| panic!("Z.1 violated: fallback found nothing: {e}"));
                frames.write(stolen.pfn(), Order::ZERO, 2);
                drop(stolen);
            },
        );
        drop(held);
        let audit = audit_clean(node);
        assert_eq!(audit.allocated, 0, "Z.1 violated: frames lost");
    });
}

#[test]
fn fallback_steal_races_free_of_its_buddy() {
    crate::testutil::check_model(steal_races_free_of_its_buddy);
}

/// The stolen block left typed `Buddy`.
#[cfg(memdesc_mutant = "steal_without_retype")]
#[test]
fn mutant_steal_without_retype_is_caught() {
    crate::testutil::assert_model_fails(steal_races_free_of_its_buddy);
}

/// The same retype skipped on every take, seen through the steal.
#[cfg(memdesc_mutant = "buddy_retype_after_unlock")]
#[test]
fn mutant_buddy_retype_after_unlock_is_caught_by_a_steal() {
    crate::testutil::assert_model_fails(steal_races_free_of_its_buddy);
}

/// Z.2 and Z.3: an unmovable allocation claims movable pageblocks (fallback
/// at order ≥ a pageblock's) while CPU 1 frees the movable block of `o`
/// that is the claimed block's buddy; then the unmovable block is freed
/// too. Whatever the order, the merges across pageblocks must leave every
/// free block on the list of its pageblocks' type (the audit checks each
/// pageblock a block covers).
///
/// Layout (pageblocks of 8): in a node of `4 << o` frames, the first
/// allocation of `o` takes the block of `o` at `1 << o`; the second splits
/// the block of `o + 1` at `2 << o` and leaves its upper half alone on the
/// movable list of `o`. At `o` = 4 each of the two buddies covers two
/// pageblocks.
fn claim_races_free_of_its_buddy(o: u32) {
    with_node_of(4 << o, config(false, 2, 2), |node| {
        let held = node.alloc(order(o), Gfp::USER).unwrap();
        let freed = node.alloc(order(o), Gfp::USER).unwrap();
        assert_eq!(freed.pfn(), Pfn(2 << o));
        let frames = Frames::new();
        let freer = frames.clone();
        let freed = freed.into_raw();
        on_two_cpus(
            node,
            move |node| {
                freer.write(freed, order(o), 1);
                // SAFETY: duty 1: the reference into_raw gave up above,
                // restored once.
                drop(unsafe { FolioRef::from_raw(node, freed) }.unwrap());
            },
            |node| {
                let claimed = node
                    .alloc(Order::ZERO, Gfp::KERNEL)
                    .unwrap_or_else(|e| panic!("Z.2 violated: fallback found nothing: {e}"));
                let mt = crate::buddy::migratetype::pageblock_migratetype(node.memmap(), claimed.pfn());
                assert_eq!(mt, Migratetype::Unmovable, "Z.2 violated: allocated from an unclaimed pageblock");
                frames.write(claimed.pfn(), Order::ZERO, 2);
                drop(claimed);
            },
        );
        drop(held);
        let audit = audit_clean(node);
        assert_eq!(audit.free + audit.unmanaged, 4 << o, "Z.2 violated: frames lost");
    });
}

fn claim_races_free_of_its_order3_buddy() {
    claim_races_free_of_its_buddy(3);
}

fn claim_races_free_of_its_order4_buddy() {
    claim_races_free_of_its_buddy(4);
}

#[test]
fn fallback_claim_races_free_of_its_buddy() {
    crate::testutil::check_model(claim_races_free_of_its_order3_buddy);
}

/// Booting and auditing 64 frames takes more than loom's default 1000
/// branches per execution.
#[test]
fn fallback_claim_of_two_pageblocks_races_free_of_its_buddy() {
    crate::testutil::check_model_with_branches(4000, claim_races_free_of_its_order4_buddy);
}

/// A claim that retypes the neighbouring pageblock instead of its own.
#[cfg(memdesc_mutant = "claim_wrong_pageblock")]
#[test]
fn mutant_claim_wrong_pageblock_is_caught() {
    crate::testutil::assert_model_fails(claim_races_free_of_its_order3_buddy);
}

/// A merge across pageblocks that leaves the buddy's pageblock its old type.
#[cfg(memdesc_mutant = "merge_keeps_buddy_pageblock_type")]
#[test]
fn mutant_merge_keeps_buddy_pageblock_type_is_caught() {
    crate::testutil::assert_model_fails(claim_races_free_of_its_order3_buddy);
}

/// L.6 at orders 0 and 1 at once: in the order-2 block at 4, CPU 1 frees
/// the order-1 folio at 4 while CPU 0 frees the frame at 7, whose buddy 6
/// is free. Whichever comes first, 6 must not pass for an order-1 buddy
/// before 7 joins it, and the merges must end in one free order-2 block.
fn merges_cascade_across_orders() {
    with_node(config(false, 2, 2), |node| {
        let keep = node.alloc(order(1), Gfp::USER).unwrap();
        let pair = node.alloc(order(1), Gfp::USER).unwrap();
        let six = node.alloc(Order::ZERO, Gfp::USER).unwrap();
        let seven = node.alloc(Order::ZERO, Gfp::USER).unwrap();
        assert_eq!((pair.pfn(), six.pfn(), seven.pfn()), (Pfn(4), Pfn(6), Pfn(7)));
        drop(six);
        let frames = Frames::new();
        let freer = frames.clone();
        let pair = pair.into_raw();
        on_two_cpus(
            node,
            move |node| {
                freer.write(pair, order(1), 1);
                // SAFETY: duty 1: the reference into_raw gave up above,
                // restored once.
                drop(unsafe { FolioRef::from_raw(node, pair) }.unwrap());
            },
            |_| {
                frames.write(seven.pfn(), Order::ZERO, 2);
                drop(seven);
            },
        );
        let page = node.memmap().page_of(Pfn(4));
        assert_eq!(page.page_type(), PageType::Buddy { order: 2 }, "L.6 violated: 4..8 did not merge");
        drop(keep);
        let audit = audit_clean(node);
        assert_eq!(audit.allocated, 0, "L.6 violated: frames lost");
    });
}

#[test]
fn zone_merges_cascade_across_orders() {
    crate::testutil::check_model(merges_cascade_across_orders);
}
