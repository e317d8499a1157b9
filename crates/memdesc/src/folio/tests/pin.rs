//! Multi-reference gets, `FolioRefs` and pins (P1 generalised, P6).

use super::*;
use crate::folio::{PinFailed, RefOverflow};
use std::vec::Vec;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

#[test]
fn try_get_refs_adds_every_reference_in_one_get() {
    node(|n| {
        let folio = n.alloc(Order::TWO, Gfp::USER).unwrap();
        let refs = try_get_refs(n, folio.pfn().add(3), nz(3), |_| true).unwrap();
        assert_eq!((refs.pfn(), refs.nr_refs().get()), (folio.pfn(), 3));
        assert_eq!(folio.ref_count(), 4);
        drop(refs);
        assert_eq!(folio.ref_count(), 1);
    });
}

#[test]
fn try_get_refs_refuses_the_overflow_band_and_takes_nothing() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        assert_eq!(try_get_refs(n, folio.pfn(), nz(REF_MAX), |_| true).unwrap_err(), GetError::Overflow);
        assert_eq!(try_get_refs(n, folio.pfn(), nz(REF_MAX + 1), |_| true).unwrap_err(), GetError::Overflow);
        assert_eq!(folio.ref_count(), 1);
        // Exactly up to the band is allowed.
        let all = try_get_refs(n, folio.pfn(), nz(REF_MAX - 1), |_| true).unwrap();
        assert_eq!(folio.ref_count(), REF_MAX);
        assert_eq!(n.try_get(folio.pfn()).unwrap_err(), GetError::Overflow);
        drop(all);
    });
}

#[test]
fn try_get_refs_on_free_and_frozen_frames_fails_typed() {
    node(|n| {
        let frozen = n.alloc_frozen(Order::ONE, Gfp::KERNEL).unwrap();
        assert_eq!(try_get_refs(n, frozen.pfn().add(1), nz(2), |_| true).unwrap_err(), GetError::Frozen);
        let pfn = frozen.pfn();
        drop(frozen);
        assert_eq!(try_get_refs(n, pfn, nz(2), |_| true).unwrap_err(), GetError::Free);
        assert_eq!(try_get_refs(n, n.memmap().end_pfn(), nz(2), |_| true).unwrap_err(), GetError::OutOfRange);
    });
}

#[test]
fn try_get_refs_source_recheck_failure_puts_them_all() {
    node(|n| {
        let folio = n.alloc(Order::ONE, Gfp::USER).unwrap();
        let err = try_get_refs(n, folio.pfn(), nz(5), |got| {
            assert_eq!(got.ref_count(), 6, "the recheck runs with the references held");
            false
        });
        assert_eq!(err.unwrap_err(), GetError::SourceChanged);
        assert_eq!(folio.ref_count(), 1);
    });
}

#[test]
fn folio_refs_split_merge_and_convert() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let mut refs = folio.try_clone_refs(nz(4)).unwrap();
        assert_eq!(folio.ref_count(), 5);
        assert!(refs.split_off(nz(4)).is_none(), "a handle never holds 0");
        let two = refs.split_off(nz(2)).unwrap();
        let one = refs.split_one().unwrap();
        assert_eq!((refs.nr_refs().get(), two.nr_refs().get()), (1, 2));
        assert!(refs.split_one().is_none());
        let two = FolioRef::try_from(two).unwrap_err();
        let last = FolioRef::try_from(refs).unwrap();
        let mut back = FolioRefs::from(last);
        back.merge(two).unwrap();
        assert_eq!(back.nr_refs().get(), 3);
        let other = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let stranger = back.merge(FolioRefs::from(other)).unwrap_err();
        assert_ne!(stranger.pfn(), folio.pfn());
        drop((back, one, stranger));
        assert_eq!(folio.ref_count(), 1);
    });
}

#[test]
fn try_clone_refs_refuses_the_overflow_band() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let err = folio.try_clone_refs(nz(REF_MAX)).unwrap_err();
        assert_eq!(err, RefOverflow { pfn: folio.pfn(), refcount: 1, add: REF_MAX });
        assert_eq!(folio.ref_count(), 1);
    });
}

#[test]
fn pin_of_a_small_folio_is_the_bias() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        assert!(!folio.maybe_dma_pinned());
        let pinned = try_get_refs(n, folio.pfn(), nz(2), |_| true).unwrap().into_pins().unwrap();
        assert_eq!(pinned.nr_pins().get(), 2);
        assert_eq!(folio.ref_count(), 1 + 2 * GUP_PIN_COUNTING_BIAS);
        assert_eq!(folio.head().pincount.load(crate::sync::Ordering::Relaxed), 0, "small folios have no pincount");
        assert!(folio.maybe_dma_pinned() && pinned.maybe_dma_pinned());
        let mut pinned = pinned;
        let one = pinned.split_off(ONE).unwrap();
        drop(pinned);
        assert_eq!(folio.ref_count(), 1 + GUP_PIN_COUNTING_BIAS);
        drop(one);
        assert_eq!(folio.ref_count(), 1);
        assert!(!folio.maybe_dma_pinned());
    });
}

#[test]
fn pin_of_a_large_folio_counts_pins_exactly() {
    node(|n| {
        let folio = n.alloc(Order::TWO, Gfp::USER).unwrap();
        let pinned = try_get_refs(n, folio.pfn().add(2), nz(3), |_| true).unwrap().into_pins().unwrap();
        let pincount = || folio.head().pincount.load(crate::sync::Ordering::Relaxed);
        assert_eq!((folio.ref_count(), pincount()), (4, 3));
        assert!(folio.maybe_dma_pinned());
        // Plain references never look like pins on a large folio.
        let plain = folio.try_clone_refs(nz(2000)).unwrap();
        let mut pinned = pinned;
        let mut two = pinned.split_off(nz(2)).unwrap();
        assert!(two.merge(pinned).is_ok());
        assert_eq!(two.nr_pins().get(), 3);
        drop(two);
        assert_eq!((folio.ref_count(), pincount()), (2001, 0));
        assert!(!folio.maybe_dma_pinned(), "exact for large folios");
        drop(plain);
    });
}

#[test]
fn maybe_dma_pinned_may_say_yes_falsely_for_small_folios() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let plain = folio.try_clone_refs(nz(GUP_PIN_COUNTING_BIAS - 1)).unwrap();
        assert!(folio.maybe_dma_pinned(), "1024 plain references look pinned");
        drop(plain);
        assert!(!folio.maybe_dma_pinned());
    });
}

#[test]
fn pin_taken_from_a_held_reference() {
    node(|n| {
        let folio = n.alloc(Order::ONE, Gfp::USER).unwrap();
        let pin = folio.clone().try_pin().unwrap();
        let more = folio.try_clone_refs(nz(2)).unwrap().into_pins().unwrap();
        let pincount = folio.head().pincount.load(crate::sync::Ordering::Relaxed);
        assert_eq!((pin.nr_pins().get() + more.nr_pins().get(), pincount), (3, 3));
        drop((pin, more));
        assert_eq!(folio.ref_count(), 1);
    });
}

#[test]
fn pins_on_a_small_folio_stop_before_the_overflow_band() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let filler = folio.try_clone_refs(nz(REF_MAX - 2000)).unwrap();
        let pin = folio.clone().try_pin().unwrap();
        let seen = folio.ref_count();
        assert_eq!(seen, REF_MAX - 1999 + GUP_PIN_COUNTING_BIAS - 1 + 1);
        let err = folio.clone().try_pin().unwrap_err();
        assert_eq!(err.reason, PinFailed::Overflow { pfn: folio.pfn(), refcount: seen + 1, pins: 1 });
        let (refs, _) = err.into_parts();
        assert_eq!(refs.nr_refs().get(), 1, "the reference comes back");
        drop(refs);
        assert_eq!(folio.ref_count(), seen, "a refused pin adds nothing");
        drop((pin, filler));
        // A bias that does not fit a u32 at all.
        let huge = folio.try_clone_refs(nz(5_000_000)).unwrap();
        assert!(matches!(huge.into_pins().unwrap_err().reason, PinFailed::Overflow { pins: 5_000_000, .. }));
        assert_eq!(folio.ref_count(), 1);
    });
}

#[test]
fn unpin_of_the_last_reference_frees_the_folio() {
    node(|n| {
        for order in [Order::ZERO, Order::TWO] {
            let before = n.vmstat().nr_free_pages;
            let folio = n.alloc(order, Gfp::USER).unwrap();
            let pinned = folio.try_clone_refs(nz(2)).unwrap().into_pins().unwrap();
            drop(folio);
            assert_eq!(n.vmstat().nr_free_pages, before - order.nr_pages(), "pins keep the folio");
            drop(pinned);
            assert_eq!(n.vmstat().nr_free_pages, before);
        }
        assert_eq!(n.audit().violations, 0);
        assert_eq!(n.bad_pages().0, 0);
    });
}

#[test]
fn freeze_refuses_a_pinned_folio() {
    node(|n| {
        let small = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let pin = small.clone().try_pin().unwrap();
        let err = small.try_freeze().unwrap_err();
        assert_eq!(err.actual, 1 + GUP_PIN_COUNTING_BIAS);
        let small = err.folio;
        assert_eq!(small.ref_count(), 1 + GUP_PIN_COUNTING_BIAS, "a refused freeze keeps the pin's bias");
        drop(pin);
        let large = n.alloc(Order::TWO, Gfp::USER).unwrap();
        let pin = large.clone().try_pin().unwrap();
        let large = large.try_freeze().unwrap_err().folio;
        drop(pin);
        let frozen = large.try_freeze().unwrap();
        assert_eq!(frozen.head().pincount.load(crate::sync::Ordering::Relaxed), 0);
        drop((small, frozen));
        assert_eq!(n.audit().allocated, 0);
    });
}

/// P6 against P2 on real threads (Miri's race detector sees the real
/// code): two pinners pin the last frame of an order-2 folio again and
/// again while the owner retries freezing it until no pin is held, then
/// splits it around that frame. Every pin holds a folio containing its
/// frame; nothing leaks.
#[test]
fn pinners_race_a_split_around_their_frame() {
    let rounds = if cfg!(miri) { 4 } else { 200 };
    node(|n| {
        let folio = n.alloc(Order::TWO, Gfp::USER).unwrap();
        let (head, target) = (folio.pfn(), folio.pfn().add(3));
        let done = crate::sync::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for refs in [1, 2] {
                let done = &done;
                scope.spawn(move || {
                    let mut round = 0u64;
                    // Relaxed: a stop flag; the join orders everything else.
                    while round < rounds || done.load(crate::sync::Ordering::Relaxed) == 0 {
                        round += 1;
                        let Ok(got) = try_get_refs(n, target, nz(refs), |_| true) else { continue };
                        let pinned = got.into_pins().unwrap();
                        assert!(pinned.contains(target) && pinned.maybe_dma_pinned());
                        let mut writer = pinned.writer();
                        writer.seek((target.0 - pinned.pfn().0) as usize * PAGE_SIZE);
                        writer.write(&round.to_ne_bytes());
                        drop(pinned);
                        std::thread::yield_now();
                    }
                });
            }
            let mut folio = folio;
            let frozen = loop {
                match folio.try_freeze() {
                    Ok(frozen) => break frozen,
                    Err(err) => folio = err.folio,
                }
                std::thread::yield_now();
            };
            let mut pieces = Vec::new();
            frozen.split_around(target, Order::ZERO).unwrap().unfreeze_with(|_, _| ONE, |p| pieces.push(p)).unwrap();
            assert_eq!(pieces.iter().map(|p| p.pfn()).collect::<Vec<_>>(), [head.add(2), target, head]);
            // Relaxed: as above.
            done.store(1, crate::sync::Ordering::Relaxed);
            drop(pieces);
        });
        assert_eq!(n.audit().allocated, 0);
        assert_eq!(n.bad_pages().0, 0);
    });
}
