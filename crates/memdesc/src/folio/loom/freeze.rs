//! P2 (freeze, unfreeze) and P3.4 (retyping a frozen folio): the getter
//! must see what the owner wrote while frozen, and never count a slab.

use super::{alloc_raw, on_node, restore, spawn_on, ONE};
use crate::buddy::Gfp;
use crate::folio::{FrozenFolio, GetError, Order, PageType};
use crate::testutil::check_model;
use core::num::NonZeroU32;

/// P2 alone: a getter takes a speculative reference to the head while the
/// owner freezes the folio, writes an owner word (legal only while frozen)
/// and unfreezes. Either the freeze fails (the getter's reference is
/// counted) or the getter's reference comes after the unfreeze and reads
/// the word as published; loom's race detector checks the owner word.
fn freeze_excludes_getters() {
    on_node(|node| {
        let raw = alloc_raw(node, 1);
        let owner = spawn_on(node, move |node| {
            // SAFETY: duty 1: `raw` came from alloc_raw and is restored once.
            let folio = unsafe { restore(node, raw) };
            match folio.try_freeze() {
                Ok(mut frozen) => {
                    frozen.set_owner_word(2, 0xf00d);
                    frozen.unfreeze(ONE).unwrap().into_raw()
                }
                Err(err) => err.folio.into_raw(),
            }
        });
        if let Ok(folio) = node.try_get(raw) {
            // SAFETY: duty 1 of owner_word: we hold a reference, and the
            // owner writes word 2 only while frozen, which our reference
            // excludes; its value was published by the unfreeze (P2.5) our
            // get (P1.3) acquired, or it is the allocation's zero.
            let word = unsafe { folio.head().owner_word(2) };
            assert!(word == 0 || word == 0xf00d, "P2 violated: owner word {word:#x}");
        }
        let kept = owner.join().unwrap();
        // SAFETY: duty 1: the owner gave this reference up with into_raw.
        unsafe { node.put_pfn(kept) }.unwrap();
    });
}

#[test]
fn p2_freeze_excludes_getters() {
    check_model(freeze_excludes_getters);
}

/// The same mutant, seen by the plain P2 model: the owner word written
/// while frozen is not published to the next getter.
#[cfg(memdesc_mutant = "relaxed_unfreeze")]
#[test]
fn mutant_relaxed_unfreeze_is_caught_by_p2() {
    crate::testutil::assert_model_fails(freeze_excludes_getters);
}

/// P2.1 with an expected count above one: the owner holds its handle and a
/// raw reference it accounts for (a mapping), and freezes at 2 while a
/// getter reads an owner word under a transient reference. The getter's
/// put must happen before the owner's write (R.2 with P2.1's Acquire), the
/// owner's write before the next getter's read (P2.5), the unfreeze must
/// restore both references, and with the getter gone a freeze at exactly 2
/// must succeed.
fn freeze_with_raw_references() {
    let two = NonZeroU32::new(2).unwrap();
    on_node(|node| {
        let folio = node.alloc(Order::ZERO, Gfp::USER).unwrap();
        let mapping = folio.clone().into_raw();
        let raw = folio.into_raw();
        let owner = spawn_on(node, move |node| {
            // SAFETY: duty 1: `raw` came from into_raw and is restored once.
            let folio = unsafe { restore(node, raw) };
            // SAFETY: duty 1: the other reference is `mapping`, raw, which
            // this model restores only after the join.
            match unsafe { folio.try_freeze_with(two) } {
                Ok(mut frozen) => {
                    frozen.set_owner_word(1, 0xbeef);
                    frozen.unfreeze(two).unwrap().into_raw()
                }
                Err(err) => err.folio.into_raw(),
            }
        });
        if let Ok(folio) = node.try_get(raw) {
            // SAFETY: duty 1 of owner_word: as in freeze_excludes_getters.
            let word = unsafe { folio.head().owner_word(1) };
            assert!(word == 0 || word == 0xbeef, "P2 violated: owner word {word:#x}");
        }
        let kept = owner.join().unwrap();
        assert_eq!(kept, mapping);
        // SAFETY: duty 1: the owner's reference, given up with into_raw.
        let folio = unsafe { restore(node, kept) };
        // SAFETY: duty 1: the other reference is `mapping`, raw, consumed
        // by this freeze (the frozen folio is then freed).
        let frozen = unsafe { folio.try_freeze_with(two) };
        drop(frozen.unwrap_or_else(|e| panic!("P2 violated: freeze at the exact count failed: {e}")));
    });
}

#[test]
fn p2_freeze_with_raw_references() {
    check_model(freeze_with_raw_references);
}

/// P3.4 through the raw path: the owner of a frozen anonymous folio
/// retypes it to a file folio and writes an owner word, then gives it up
/// and unfreezes it by pfn (`Node::unfreeze_pfn`), while a getter aims at
/// it. A getter that wins must read the new type and the word: the
/// unfreeze's Release (P2.5) publishes both to its Acquire (P1.3).
fn unfreeze_pfn_publishes_retype() {
    on_node(|node| {
        let raw = node.alloc_frozen(Order::ZERO, Gfp::USER).unwrap().into_raw();
        let owner = spawn_on(node, move |node| {
            // SAFETY: duty 1: `raw` came from FrozenFolio::into_raw, once.
            let mut frozen = unsafe { FrozenFolio::from_raw(node, raw) }.unwrap();
            assert!(frozen.set_type(PageType::File));
            frozen.set_owner_word(0, 0xfeed);
            let raw = frozen.into_raw();
            // SAFETY: duty 1: the frozen folio is ours and no handle
            // represents it; the one reference made is ours, raw.
            unsafe { node.unfreeze_pfn(raw, ONE) }.unwrap();
        });
        // A scheduling point: without it loom explored this model as one
        // execution (the getter first, whole), and missed the mutant.
        loom::thread::yield_now();
        match node.try_get(raw) {
            Ok(folio) => {
                let ty = folio.page_type();
                assert_eq!(ty, PageType::File, "P3 violated: counted folio {raw} reads type {ty}");
                // SAFETY: duty 1 of owner_word: written while frozen, before
                // the unfreeze our get acquired; loom checks it.
                let word = unsafe { folio.head().owner_word(0) };
                assert_eq!(word, 0xfeed, "P3 violated: owner word {word:#x} not published");
            }
            Err(GetError::Frozen) => {}
            Err(e) => panic!("P3 violated: unexpected error {e}"),
        }
        owner.join().unwrap();
        // SAFETY: duty 1: the unfreeze's reference, never represented.
        unsafe { node.put_pfn(raw) }.unwrap();
    });
}

#[test]
fn p3_unfreeze_pfn_publishes_retype() {
    check_model(unfreeze_pfn_publishes_retype);
}

/// `unfreeze_pfn` without Release.
#[cfg(memdesc_mutant = "relaxed_unfreeze_pfn")]
#[test]
fn mutant_relaxed_unfreeze_pfn_is_caught() {
    crate::testutil::assert_model_fails(unfreeze_pfn_publishes_retype);
}

/// P3: a getter races the owner's retype of its folio to a slab. The owner
/// freezes (which the getter's reference blocks), retypes (P3.4) and tries
/// to unfreeze, by handle and then by pfn: both must refuse, since a
/// counted slab is what let compaction read a slab's owner words (seed
/// 004). The getter must never hold a counted slab.
fn get_races_retype_to_slab() {
    on_node(|node| {
        let raw = alloc_raw(node, 0);
        let owner = spawn_on(node, move |node| {
            // SAFETY: duty 1: `raw` came from alloc_raw and is restored once.
            let folio = unsafe { restore(node, raw) };
            let Ok(mut frozen) = folio.try_freeze() else { return };
            assert!(frozen.set_type(PageType::Slab { cache: 3 }));
            match frozen.unfreeze(ONE) {
                Ok(counted) => drop(counted),
                Err(refused) => {
                    let raw = refused.folio.into_raw();
                    // SAFETY: duty 1: the frozen folio is ours, given up
                    // with into_raw just above.
                    match unsafe { node.unfreeze_pfn(raw, ONE) } {
                        // SAFETY: duty 1: the reference the unfreeze made.
                        Ok(()) => unsafe { node.put_pfn(raw) }.unwrap(),
                        // SAFETY: duty 1: still frozen, given up once above;
                        // freed as a slab cache frees its frame.
                        Err(_) => drop(unsafe { FrozenFolio::from_raw(node, raw) }.unwrap()),
                    }
                }
            }
        });
        if let Ok(folio) = node.try_get(raw) {
            let ty = folio.page_type();
            assert!(!ty.is_always_frozen(), "P3 violated: a getter holds counted folio {raw} of type {ty}");
        }
        owner.join().unwrap();
    });
}

#[test]
fn p3_getter_never_counts_a_slab() {
    check_model(get_races_retype_to_slab);
}

/// The unfreeze counts slab and page-table folios (seed 004's precondition).
#[cfg(memdesc_mutant = "unfreeze_counts_slab")]
#[test]
fn mutant_unfreeze_counts_slab_is_caught() {
    crate::testutil::assert_model_fails(get_races_retype_to_slab);
}
