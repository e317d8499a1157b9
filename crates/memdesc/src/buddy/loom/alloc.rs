//! P3: a new folio's publication (P3.1–P3.3) and the free path's reset
//! handed to the next allocation (P3.5).

use super::{audit_clean, config, on_two_cpus, with_node, Frames};
use crate::buddy::{Gfp, Node};
use crate::folio::{tail_word, GetError, Order, PageFlags, PageType};
use crate::memmap::{Pfn, OWNER_WORDS};
use crate::sync::Ordering;
use core::num::NonZeroU32;

/// Finds the head the next allocation of `order` takes (pcp off, one CPU so
/// far: deterministic) by allocating and freeing it.
fn next_head(node: &Node<'_>, order: Order) -> Pfn {
    node.alloc(order, Gfp::USER).unwrap().pfn()
}

/// A scanner's speculative get, aimed at frame `index` of the folio of
/// `order` that the other CPU allocates (and then frees) meanwhile.
fn get_races_alloc(order: Order, index: u64) {
    with_node(config(false, 2, 2), |node| {
        let head = next_head(node, order);
        let frames = Frames::new();
        let holder = frames.clone();
        on_two_cpus(
            node,
            move |node| {
                // The owner: P3.1–P3.3, then its own use of the frames.
                let folio = node.alloc(order, Gfp::USER).unwrap();
                assert_eq!(folio.pfn(), head);
                holder.write(head, order, 1);
                drop(folio);
            },
            |node| {
                let target = head.add(index);
                match node.try_get(target) {
                    Ok(folio) => check_published(node, &folio, target, order),
                    Err(GetError::Free | GetError::Frozen | GetError::Moved) => {}
                    Err(e) => panic!("P3 violated: unexpected error {e}"),
                }
            },
        );
        audit_clean(node);
    });
}

/// What a getter holding a reference may rely on (P1.6 after P3.3): the
/// type, the compound words of head and tails, and cleared owner words.
fn check_published(node: &Node<'_>, folio: &crate::buddy::FolioRef<'_>, target: Pfn, order: Order) {
    let ty = folio.page_type();
    assert_eq!(ty, PageType::Anon, "P3 violated: counted folio {} still reads type {ty}", folio.pfn());
    assert_eq!(folio.order(), order, "P3 violated: stale compound info on the head");
    assert!(folio.contains(target), "P3 violated: folio {} does not contain {target}", folio.pfn());
    for index in 1..order.nr_pages() {
        let tail = node.memmap().page_of(folio.pfn().add(index));
        assert_eq!(tail.page_type(), PageType::Tail, "P3 violated: tail {index} not typed Tail");
        assert_eq!(tail.compound_word(), tail_word(folio.pfn()), "P3 violated: tail {index} names another head");
    }
    for word in 0..OWNER_WORDS {
        // SAFETY: duty 1: we hold a reference, and the allocator cleared the
        // words before publishing (P3.1, P3.3); loom checks that claim.
        let value = unsafe { folio.head().owner_word(word) };
        assert_eq!(value, 0, "P3 violated: owner word {word} not cleared");
    }
}

/// P3.1–P3.3 on a single frame.
fn get_races_order0_alloc() {
    get_races_alloc(Order::ZERO, 0);
}

/// P3.1–P3.3 on an order-2 folio, the getter aiming at its last tail: the
/// tail loop of P3.1 runs three times and the getter's P1.2 reads a tail's
/// compound word written there.
fn get_races_order2_alloc() {
    get_races_alloc(Order::new(2).unwrap(), 3);
}

#[test]
fn p3_get_races_alloc_publish() {
    crate::testutil::check_model(get_races_order0_alloc);
}

#[test]
fn p3_get_on_a_tail_races_order2_alloc() {
    crate::testutil::check_model(get_races_order2_alloc);
}

/// The typed folio published without Release (DESIGN §4).
#[cfg(memdesc_mutant = "relaxed_type_publish")]
#[test]
fn mutant_relaxed_type_publish_is_caught() {
    crate::testutil::assert_model_fails(get_races_order0_alloc);
}

/// The same mutant, seen on an order-2 folio's tail.
#[cfg(memdesc_mutant = "relaxed_type_publish")]
#[test]
fn mutant_relaxed_type_publish_is_caught_on_a_tail() {
    crate::testutil::assert_model_fails(get_races_order2_alloc);
}

/// P3.5: the owner of an order-1 folio dirties it (flags, an owner word,
/// the frames) and frees it while the other CPU allocates at that order;
/// whichever block the allocation gets must come clean, and the frames'
/// hand-off must be ordered by the zone lock.
fn free_hands_reset_to_next_alloc() {
    with_node(config(false, 2, 2), |node| {
        // Leave one order-1 block free (at 2): the others are taken.
        let taken = [3, 3, 2].map(|o| node.alloc(Order::new(o).unwrap(), Gfp::USER).unwrap().into_raw());
        let order = Order::new(1).unwrap();
        let mut owned = node.alloc_frozen(order, Gfp::KERNEL).unwrap();
        let head = owned.pfn();
        let frames = Frames::new();
        let next = frames.clone();
        owned.set_owner_word(1, 0xdead);
        // Relaxed: the folio is frozen and ours; the free's reset and the
        // zone lock publish what becomes of it (P3.5).
        owned.head().flags.fetch_or(PageFlags::DIRTY.0 | PageFlags::UPTODATE.0, Ordering::Relaxed);
        on_two_cpus(
            node,
            move |node| {
                if let Ok(folio) = node.alloc(order, Gfp::USER) {
                    assert_eq!(folio.pfn(), head);
                    let flags = folio.head().flags();
                    assert_eq!(flags, PageFlags::EMPTY, "P3.5 violated: flags {flags:?} survived the free");
                    check_published(node, &folio, head.add(1), order);
                    next.write(head, order, 2);
                }
            },
            move |_| {
                frames.write(head, order, 1);
                drop(owned);
            },
        );
        let audit = audit_clean(node);
        assert_eq!(audit.free, 2, "P3.5 violated: the freed block was lost");
        for pfn in taken {
            // SAFETY: duty 1: each is the reference into_raw gave up above.
            unsafe { node.put_pfn(pfn) }.unwrap();
        }
    });
}

#[test]
fn p3_free_hands_a_clean_folio_to_the_next_alloc() {
    crate::testutil::check_model(free_hands_reset_to_next_alloc);
}

/// P3.4 and the always-frozen rule: CPU 1 allocates an order-1 folio
/// frozen, retypes it and sets an owner word while frozen, and unfreezes it
/// (P2.5 publishes both); it also allocates a slab frame, which it may
/// retype but never count. CPU 0's scanner aims at the order-1 folio's tail
/// and at the slab frame: it sees the new type and word, or nothing, and
/// never a reference to the slab.
fn retype_frozen_races_get() {
    with_node(config(false, 2, 2), |node| {
        let order = Order::new(1).unwrap();
        // Where the two allocations below land (deterministic: one CPU so
        // far, and both blocks merge back when freed).
        let (head, slab_pfn) = {
            let probe = (node.alloc(order, Gfp::USER).unwrap(), node.alloc(Order::ZERO, Gfp::USER).unwrap());
            (probe.0.pfn(), probe.1.pfn())
        };
        on_two_cpus(
            node,
            move |node| {
                let mut owned = node.alloc_frozen(order, Gfp::USER).unwrap();
                assert_eq!(owned.pfn(), head);
                let slab = node.alloc_frozen(Order::ZERO, Gfp::USER.typed(SLAB)).unwrap();
                assert_eq!(slab.pfn(), slab_pfn);
                // P3.4: retype and write an owner word, only while frozen.
                assert!(owned.set_type(PageType::File));
                owned.set_owner_word(0, 7);
                let counted = owned.unfreeze(NonZeroU32::MIN).unwrap();
                let refused = slab.unfreeze(NonZeroU32::MIN).expect_err("P3 violated: a slab folio was counted");
                drop((counted, refused));
            },
            move |node| {
                match node.try_get(head.add(1)) {
                    Ok(folio) => {
                        assert_eq!(folio.page_type(), PageType::File, "P3.4 violated: retype not published");
                        // SAFETY: duty 1: we hold a reference, and the owner
                        // wrote the word before the unfreeze published it.
                        let word = unsafe { folio.head().owner_word(0) };
                        assert_eq!(word, 7, "P3.4 violated: owner word not published");
                    }
                    Err(GetError::Free | GetError::Frozen | GetError::Moved) => {}
                    Err(e) => panic!("P3 violated: unexpected error {e}"),
                }
                match node.try_get(slab_pfn) {
                    Ok(folio) => panic!("P3 violated: a reference to {} of type {}", folio.pfn(), folio.page_type()),
                    Err(GetError::Free | GetError::Frozen) => {}
                    Err(e) => panic!("P3 violated: unexpected error {e}"),
                }
            },
        );
        audit_clean(node);
    });
}

/// A slab type: always frozen.
const SLAB: PageType = PageType::Slab { cache: 1 };

#[test]
fn p3_retype_while_frozen_races_get() {
    crate::testutil::check_model(retype_frozen_races_get);
}
