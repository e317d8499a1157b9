//! P1: a speculative getter against split, free and reallocation, and its
//! source recheck (P1.5).

use super::{alloc_raw, check_got, on_node, restore, spawn_on, split_and_unfreeze};
use crate::buddy::Gfp;
use crate::folio::{GetError, Order, PageType};
use crate::memmap::Pfn;
use crate::sync::{AtomicU64, Ordering};
use crate::testutil::check_model;
use std::sync::Arc;

/// P1 against P2: the getter aims at frame `aim` of an order-`order` folio
/// while the owner freezes it and splits it into folios of `new_order`,
/// unfreezing the pieces first and the original last. A successful get must
/// hold either the whole folio or the piece that contains `aim`.
fn get_races_split(order: u32, new_order: u32, aim: u64) {
    on_node(|node| {
        let raw = alloc_raw(node, order);
        let splitter = spawn_on(node, move |node| {
            // SAFETY: duty 1: `raw` came from alloc_raw and is restored once.
            let folio = unsafe { restore(node, raw) };
            if let Ok(frozen) = folio.try_freeze() {
                drop(split_and_unfreeze(frozen, Order::new(new_order).unwrap()));
            }
        });
        let target = raw.add(aim);
        if let Some((head, got_order, _)) = check_got(node, target) {
            let piece = Pfn(target.0 & !((1 << new_order) - 1));
            let whole = head == raw && got_order.get() == order;
            let split = head == piece && got_order.get() == new_order;
            assert!(whole || split, "P1 violated: {target} in folio {head} of order {got_order}");
        }
        splitter.join().unwrap();
    });
}

#[test]
fn p1_get_races_split() {
    check_model(|| get_races_split(1, 0, 1));
}

/// An order-2 folio split to order 1: each piece has a tail, so the tail
/// loop of the split (P2.2) runs, and the getter aims at a piece's tail.
#[test]
fn p1_get_races_split_to_order1() {
    check_model(|| get_races_split(2, 1, 3));
}

/// An order-2 folio split to order 0, the getter aiming at its last frame.
#[test]
fn p1_get_races_split_to_order0() {
    check_model(|| get_races_split(2, 0, 3));
}

/// P1 against free and reallocation as a folio of another order (seed
/// 000): the owner frees the order-1 folio, whose frames merge, and
/// allocates an order-0 folio, which the allocator carves from the same
/// block, so the old head is counted again but the tail is no longer its.
fn get_races_free_and_realloc() {
    on_node(|node| {
        let raw = alloc_raw(node, 1);
        let owner = spawn_on(node, move |node| {
            // SAFETY: duty 1: `raw` came from alloc_raw and is restored once.
            drop(unsafe { restore(node, raw) });
            // A movable request: the freed block is first on its list, so the
            // allocator splits it and hands back the old head.
            node.alloc(Order::ZERO, Gfp::USER.typed(PageType::File)).unwrap().into_raw()
        });
        check_got(node, raw.add(1));
        let kept = owner.join().unwrap();
        // SAFETY: duty 1: the owner gave this reference up with into_raw.
        unsafe { node.put_pfn(kept) }.unwrap();
    });
}

#[test]
fn p1_get_races_free_and_realloc() {
    check_model(get_races_free_and_realloc);
}

/// Seed 000, 2021: no recheck of the head after the get.
#[cfg(memdesc_mutant = "no_head_recheck")]
#[test]
fn mutant_no_head_recheck_is_caught() {
    crate::testutil::assert_model_fails(get_races_free_and_realloc);
}

/// P1 against P2 with two getters, one aiming at the tail and one at the
/// head, while the owner splits: three threads, so the getters' increments
/// also race each other and the freeze.
#[test]
fn p1_two_getters_race_split() {
    check_model(|| {
        on_node(|node| {
            let raw = alloc_raw(node, 1);
            let splitter = spawn_on(node, move |node| {
                // SAFETY: duty 1: `raw` came from alloc_raw and is restored once.
                let folio = unsafe { restore(node, raw) };
                if let Ok(frozen) = folio.try_freeze() {
                    drop(split_and_unfreeze(frozen, Order::ZERO));
                }
            });
            let head_getter = spawn_on(node, move |node| {
                check_got(node, raw);
            });
            check_got(node, raw.add(1));
            splitter.join().unwrap();
            head_getter.join().unwrap();
        });
    });
}

/// The unfreeze after a split without Release (DESIGN §4).
#[cfg(memdesc_mutant = "relaxed_unfreeze")]
#[test]
fn mutant_relaxed_unfreeze_is_caught() {
    crate::testutil::assert_model_fails(|| get_races_split(1, 0, 1));
}

/// P1.5: the getter found the pfn through a source (a slot standing in for
/// a PTE: pfn + 1, or 0 for none) that an unmapper clears before dropping
/// the folio, whose frame is then reallocated as a file folio. A get that
/// succeeds must hold the anonymous folio the entry mapped: the recheck of
/// the source after the increment is what rules out the new owner's folio.
fn get_races_unmap() {
    on_node(|node| {
        let raw = alloc_raw(node, 0);
        let entry = raw.0 + 1;
        // Release: stands in for the PTE store of P4, after the folio is
        // published; pairs with the getter's Acquire loads.
        let slot = Arc::new(AtomicU64::new(entry));
        let unmapper_slot = slot.clone();
        let unmapper = spawn_on(node, move |node| {
            // SAFETY: duty 1: `raw` came from alloc_raw and is restored once.
            let folio = unsafe { restore(node, raw) };
            // Relaxed: the clear is ordered before the new owner's publish
            // by the put's Release (R.2) and the zone lock, which is all the
            // getter's recheck relies on.
            unmapper_slot.store(0, Ordering::Relaxed);
            drop(folio);
            node.alloc(Order::ZERO, Gfp::USER.typed(PageType::File)).unwrap().into_raw()
        });
        // Acquire: pairs with the publication of the entry.
        let seen = slot.load(Ordering::Acquire);
        if seen != 0 {
            // Acquire: the source recheck, as GUP-fast rereads the PTE.
            let got = crate::folio::try_get(node, Pfn(seen - 1), |_| slot.load(Ordering::Acquire) == seen);
            match got {
                Ok(folio) => {
                    let ty = folio.page_type();
                    assert_eq!(
                        ty,
                        PageType::Anon,
                        "P1 violated: the entry no longer maps folio {} ({ty})",
                        folio.pfn()
                    );
                }
                Err(GetError::Free | GetError::Frozen | GetError::Moved | GetError::SourceChanged) => {}
                Err(e) => panic!("P1 violated: unexpected error {e}"),
            }
        }
        let kept = unmapper.join().unwrap();
        // SAFETY: duty 1: the unmapper gave this reference up with into_raw.
        unsafe { node.put_pfn(kept) }.unwrap();
    });
}

#[test]
fn p1_get_rechecks_its_source() {
    check_model(get_races_unmap);
}

/// P1.5 skipped: the getter keeps a reference its source no longer names.
#[cfg(memdesc_mutant = "no_source_recheck")]
#[test]
fn mutant_no_source_recheck_is_caught() {
    crate::testutil::assert_model_fails(get_races_unmap);
}
