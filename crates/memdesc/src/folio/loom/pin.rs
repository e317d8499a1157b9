//! P6 and P2.7: a pin against split's freeze, a multi-reference getter
//! against a split around its pfn and its unfreeze (seed 000 at the folio
//! level), and unpins racing each other to the last put.

use super::{alloc_raw, on_node, restore, spawn_on, Frames, ONE};
use crate::folio::{try_get_refs, GetError, Order};
use crate::memmap::Pfn;
use crate::testutil::check_model;
use core::num::NonZeroU32;

/// What a pinner on `pfn` got, checked against P1's promise: the pinned
/// folio's head and order, or `None` if the get failed (frozen, moved or
/// already freed), never anything else.
fn check_pinned(pinned: &crate::buddy::PinnedFolio<'_>, pfn: Pfn) -> (Pfn, Order) {
    assert!(pinned.contains(pfn), "P6 violated: pin on folio {} which no longer holds {pfn}", pinned.pfn());
    assert!(pinned.maybe_dma_pinned(), "P6 violated: pinned folio {} does not look pinned", pinned.pfn());
    (pinned.pfn(), pinned.order())
}

/// P2.1 against P6: the splitter freezes an order-1 folio at its one
/// reference and splits it to order 0 (`unfreeze_with`, head last) while
/// a pinner takes a reference to its tail (P1) and pins it (P6.2–P6.4).
/// Exactly one wins the race: a pin on the whole folio, held until the
/// splitter is done, means the split failed and left the folio as it was;
/// a failed pin, or a pin on a piece, means the split won. Nothing leaks.
fn split_races_pin() {
    on_node(|node| {
        let frames = Frames::new();
        let raw = alloc_raw(node, 1);
        let splitter_frames = frames.clone();
        let splitter = spawn_on(node, move |node| {
            // SAFETY: duty 1: `raw` came from alloc_raw and is restored once.
            let folio = unsafe { restore(node, raw) };
            match folio.try_freeze() {
                Ok(frozen) => {
                    let pieces = super::split_and_unfreeze(frozen, Order::ZERO);
                    for piece in &pieces {
                        splitter_frames.write(piece.pfn(), 0, 1);
                    }
                    true
                }
                Err(err) => {
                    let (folio, failed) = err.into_parts();
                    assert_eq!(folio.order(), Order::ONE, "P2 violated: a refused split changed the folio");
                    assert!(failed.actual >= 2, "P2 violated: freeze refused at count {}", failed.actual);
                    splitter_frames.write(raw, 0, 1);
                    false
                }
            }
        });
        let target = raw.add(1);
        match try_get_refs(node, target, ONE, |_| true).map(|refs| refs.into_pins().unwrap()) {
            Ok(pinned) => {
                let (head, order) = check_pinned(&pinned, target);
                frames.write(target, 1, 1);
                let split_won = splitter.join().unwrap();
                let whole = head == raw && order == Order::ONE;
                assert!(whole != split_won, "P2 violated: split {split_won} with a pin on folio {head}, order {order}");
                drop(pinned);
            }
            Err(GetError::Free | GetError::Frozen | GetError::Moved) => {
                assert!(splitter.join().unwrap(), "P2 violated: the split failed with no pin");
            }
            Err(e) => panic!("P6 violated: unexpected error {e}"),
        }
    });
}

#[test]
fn p6_split_races_pin() {
    check_model(split_races_pin);
}

/// Split's freeze that only compares the count (DESIGN §4): a pin landing
/// between the check and the split is overwritten by the unfreeze.
#[cfg(memdesc_mutant = "split_check_without_freeze")]
#[test]
fn mutant_split_check_without_freeze_is_caught() {
    crate::testutil::assert_model_fails(split_races_pin);
}

/// Seed 000 at the folio level, with a split around the target: a getter
/// takes two references (GUP-fast's one add for two pages) on the last
/// frame of an order-2 folio while the owner freezes it, splits it around
/// that frame to order 0 (pieces: order 1 at the head, then two order-0
/// folios) and unfreezes every new piece, compound info written first, and
/// the original head last (P2.2, P2.5–P2.7). The getter must never hold a
/// folio that does not contain its frame.
fn get_refs_races_split_around() {
    on_node(|node| {
        let raw = alloc_raw(node, 2);
        let target = raw.add(3);
        let splitter = spawn_on(node, move |node| {
            // SAFETY: duty 1: `raw` came from alloc_raw and is restored once.
            let folio = unsafe { restore(node, raw) };
            if let Ok(frozen) = folio.try_freeze() {
                let mut pieces = std::vec::Vec::new();
                let split = frozen.split_around(target, Order::ZERO).unwrap();
                split.unfreeze_with(|_, _| ONE, |piece| pieces.push(piece)).unwrap();
                let orders: std::vec::Vec<_> = pieces.iter().map(|p| (p.pfn(), p.order().get())).collect();
                assert_eq!(orders, [(raw.add(2), 0), (target, 0), (raw, 1)], "P2 violated: pieces");
            }
        });
        match try_get_refs(node, target, NonZeroU32::new(2).unwrap(), |_| true) {
            Ok(refs) => {
                assert!(refs.contains(target), "P1 violated: references to folio {} without {target}", refs.pfn());
                let whole = refs.pfn() == raw && refs.order() == Order::TWO;
                let piece = refs.pfn() == target && refs.order() == Order::ZERO;
                assert!(whole || piece, "P1 violated: {target} in folio {} of order {}", refs.pfn(), refs.order());
            }
            Err(GetError::Free | GetError::Frozen | GetError::Moved) => {}
            Err(e) => panic!("P1 violated: unexpected error {e}"),
        }
        splitter.join().unwrap();
    });
}

#[test]
fn p2_get_refs_races_split_around() {
    check_model(get_refs_races_split_around);
}

/// The original head unfrozen before the pieces are rewritten and
/// unfrozen (DESIGN §4, "unfreeze before publishing compound info").
#[cfg(memdesc_mutant = "split_unfreeze_head_first")]
#[test]
fn mutant_split_unfreeze_head_first_is_caught() {
    crate::testutil::assert_model_fails(get_refs_races_split_around);
}

/// P6.5/P6.6 against R.3: two holders of one folio of `order` each pin it
/// from a reference they hold (the slow path's pin), write their own cell
/// of its frames and unpin, on two threads; whoever puts last frees it,
/// exactly once, with its pincount back at 0 (the free path checks it),
/// and this thread's next allocation takes the frames back and writes
/// every cell as their new owner.
fn unpins_race_to_the_last_put(order: u32) {
    on_node(|node| {
        let frames = Frames::new();
        let folio = node.alloc(Order::new(order).unwrap(), crate::buddy::Gfp::USER).unwrap();
        let pfn = folio.pfn();
        let other = folio.clone().into_raw();
        let their_frames = frames.clone();
        let holder = spawn_on(node, move |node| {
            // SAFETY: duty 1: `other` came from into_raw and is restored once.
            let pinned = unsafe { restore(node, other) }.try_pin().unwrap();
            their_frames.write(pfn, 1, 1);
            drop(pinned);
        });
        let pinned = folio.try_pin().unwrap();
        frames.write(pfn, 0, 1);
        drop(pinned);
        let next = node.alloc(Order::new(order).unwrap(), crate::buddy::Gfp::USER).unwrap();
        frames.write_all(&next, 2);
        drop(next);
        holder.join().unwrap();
    });
}

/// Small folios: each unpin is one put of the whole bias (P6.6).
#[test]
fn p6_unpins_race_to_the_last_put_small() {
    check_model(|| unpins_race_to_the_last_put(0));
}

/// Large folios: each unpin gives back its pincount, then its reference
/// (P6.5).
#[test]
fn p6_unpins_race_to_the_last_put_large() {
    check_model(|| unpins_race_to_the_last_put(1));
}

/// The unpin's reference put before its pincount (P6.5 reordered): the
/// other holder's last put frees a folio that still counts a pin.
#[cfg(memdesc_mutant = "unpin_put_before_pincount")]
#[test]
fn mutant_unpin_put_before_pincount_is_caught() {
    crate::testutil::assert_model_fails(|| unpins_race_to_the_last_put(1));
}

/// Seed 000 with a multi-reference get: no head recheck, and the getter
/// keeps references to a folio its frame has left.
#[cfg(memdesc_mutant = "no_head_recheck")]
#[test]
fn mutant_no_head_recheck_is_caught_by_get_refs() {
    crate::testutil::assert_model_fails(get_refs_races_split_around);
}
