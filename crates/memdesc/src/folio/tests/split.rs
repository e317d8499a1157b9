//! Non-uniform split (`split_around`) and the split's unfreeze
//! (`unfreeze_with`), with a property test against a reference model.

use super::*;
use crate::folio::UnfreezeSplitError;
use proptest::prelude::*;
use std::vec::Vec;

/// The pieces of an order-`order` block at `start` split toward `target`
/// down to `new_order`, by the definition: halve, keep the half without
/// the target whole, go on with the other.
fn model(start: u64, order: u32, target: u64, new_order: u32) -> Vec<(u64, u32)> {
    if order == new_order {
        return std::vec![(start, order)];
    }
    let half = 1 << (order - 1);
    if target < start + half {
        let mut pieces = model(start, order - 1, target, new_order);
        pieces.push((start + half, order - 1));
        pieces
    } else {
        let mut pieces = std::vec![(start, order - 1)];
        pieces.extend(model(start + half, order - 1, target, new_order));
        pieces
    }
}

/// Stamps every frame of a frozen folio with its pfn in its first word.
fn stamp(frozen: &mut crate::buddy::FrozenFolio<'_>) {
    let head = frozen.pfn().0;
    for (i, frame) in frozen.bytes_mut().chunks_mut(PAGE_SIZE).enumerate() {
        frame[..8].copy_from_slice(&(head + i as u64).to_le_bytes());
    }
}

/// Splits an order-`order` folio around offset `target` to `new_order`,
/// unfreezes it with `unfreeze_with` and checks the pieces against the
/// model: pfn order (the original head last), orders, alignment, every
/// frame covered once, stamps untouched, types and counts.
fn check_split_around(n: &Node<'_>, order: u32, target: u64, new_order: u32) {
    let mut frozen = n.alloc(Order::new(order).unwrap(), Gfp::USER).unwrap().try_freeze().unwrap();
    stamp(&mut frozen);
    let head = frozen.pfn();
    let pieces = frozen.split_around(head.add(target), Order::new(new_order).unwrap()).unwrap();
    assert_eq!(pieces.len(), (order - new_order + 1) as usize);
    assert_eq!(pieces.target(), Some(head.add(target)));
    let mut counted = Vec::new();
    let mut asked = Vec::new();
    pieces
        .unfreeze_with(
            |pfn, order| {
                asked.push((pfn.0 - head.0, order.get()));
                NonZeroU32::new(1 + order.get()).unwrap()
            },
            |folio| counted.push(folio),
        )
        .unwrap();
    let mut want = model(0, order, target, new_order);
    // The original head comes out last.
    let first = want.remove(0);
    want.push(first);
    assert_eq!(asked, want);
    let mut covered = std::vec![0u8; 1 << order];
    for (folio, &(off, piece_order)) in counted.iter().zip(&want) {
        assert_eq!((folio.pfn(), folio.order().get()), (head.add(off), piece_order));
        assert!(folio.pfn().is_aligned(piece_order));
        assert_eq!(folio.ref_count(), 1 + piece_order);
        assert_eq!(folio.page_type(), PageType::Anon);
        for frame in 0..1u64 << piece_order {
            covered[(off + frame) as usize] += 1;
            let pfn = folio.pfn().add(frame);
            let word = folio.contents()[(frame as usize) * PAGE_SIZE / 8].load(crate::sync::Ordering::Relaxed);
            assert_eq!(u64::from_le(word), pfn.0, "contents untouched");
            assert_eq!(n.try_get(pfn).unwrap().pfn(), folio.pfn(), "every frame belongs to its piece");
        }
        if off <= target && target < off + (1 << piece_order) {
            assert_eq!(piece_order, new_order, "the target's piece has the new order");
        }
    }
    assert!(covered.iter().all(|&c| c == 1), "every frame in exactly one piece");
    for folio in counted {
        let extra = folio.ref_count() - 1;
        let raw = folio.into_raw();
        for _ in 0..=extra {
            // SAFETY: the references counted by unfreeze_with are ours, each
            // put once.
            unsafe { n.put_pfn(raw) }.unwrap();
        }
    }
    let audit = n.audit();
    assert_eq!((audit.violations, audit.allocated), (0, 0));
}

#[test]
fn split_around_a_page_leaves_the_largest_aligned_pieces() {
    // Order 9 natively; under Miri, order 4 in a smaller node.
    let (order, frames) = if cfg!(miri) { (4, 512) } else { (9, 2048) };
    with_node(frames, &[], small_config(false), &SpinPlatform, |n| {
        // Order 9 around one page: orders 8, 7, ..., 1, 0 and the target's
        // 0, ten folios (Linux's folio_split).
        check_split_around(n, order, 37 % (1 << order), 0);
        check_split_around(n, order, 0, 0);
        check_split_around(n, order, (1 << order) - 1, 2);
    });
}

#[test]
fn split_around_refuses_bad_targets_and_orders() {
    node(|n| {
        let frozen = n.alloc_frozen(Order::TWO, Gfp::KERNEL).unwrap();
        let outside = frozen.pfn().add(4);
        let (frozen, err) = frozen.split_around(outside, Order::ZERO).unwrap_err().into_parts();
        assert_eq!(err, SplitFailed::NotInFolio { target: outside });
        let inside = frozen.pfn().add(1);
        let (frozen, err) = frozen.split_around(inside, Order::TWO).unwrap_err().into_parts();
        assert!(matches!(err, SplitFailed::NotSmaller { .. }));
        assert_eq!(frozen.order(), Order::TWO, "a refused split changes nothing");
    });
}

#[test]
fn unfreeze_with_counts_the_pieces_then_the_head() {
    node(|n| {
        let frozen = n.alloc(Order::TWO, Gfp::USER).unwrap().try_freeze().unwrap();
        let head = frozen.pfn();
        let mut seen = Vec::new();
        frozen
            .split(Order::ZERO)
            .unwrap()
            .unfreeze_with(
                |pfn, _| {
                    // The pieces before this one are counted already; the
                    // original head, not yet (unless it is this one).
                    assert_eq!(n.memmap().page(head).unwrap().ref_count(), 0, "the original head is counted last");
                    NonZeroU32::new(if pfn == head { 1 } else { 2 }).unwrap()
                },
                |folio| seen.push((folio.pfn(), folio.ref_count())),
            )
            .unwrap();
        assert_eq!(seen, [(head.add(1), 2), (head.add(2), 2), (head.add(3), 2), (head, 1)]);
        // The closure dropped its handle: one reference of each is put.
        for (pfn, count) in seen {
            for _ in 1..count {
                // SAFETY: each other counted reference is put exactly once.
                unsafe { n.put_pfn(pfn) }.unwrap();
            }
        }
        assert_eq!(n.audit().allocated, 0);
    });
}

#[test]
fn unfreeze_with_stops_at_a_refused_count_and_returns_the_rest() {
    node(|n| {
        let frozen = n.alloc(Order::TWO, Gfp::USER).unwrap().try_freeze().unwrap();
        let head = frozen.pfn();
        let mut counted = Vec::new();
        let err: UnfreezeSplitError<'_, _> = frozen
            .split(Order::ZERO)
            .unwrap()
            .unfreeze_with(
                |pfn, _| NonZeroU32::new(if pfn == head.add(2) { REF_MAX + 1 } else { 1 }).unwrap(),
                |folio| counted.push(folio),
            )
            .unwrap_err();
        assert_eq!(err.failed, UnfreezeFailed { pfn: head.add(2), reason: UnfreezeRefusal::Overflow });
        assert_eq!(counted.len(), 1);
        let (rest, _) = err.into_parts();
        let rest: Vec<_> = rest.collect();
        assert_eq!(rest.iter().map(|f| f.pfn()).collect::<Vec<_>>(), [head.add(2), head.add(3), head]);
        assert!(rest.iter().all(|f| f.head().ref_count() == 0), "the rest stays frozen");
        drop((rest, counted));
        assert_eq!(n.audit().allocated, 0);
        assert_eq!(n.bad_pages().0, 0);
    });
}

#[test]
fn unfreeze_with_refuses_never_counted_types_up_front() {
    node(|n| {
        let mut frozen = n.alloc_frozen(Order::ONE, Gfp::KERNEL).unwrap();
        assert!(frozen.set_type(PageType::PageTable));
        let err = frozen.split(Order::ZERO).unwrap().unfreeze_with(|_, _| ONE, |_| panic!("counted")).unwrap_err();
        assert_eq!(err.failed.reason, UnfreezeRefusal::AlwaysFrozen(PageType::PageTable));
        assert_eq!(err.rest.len(), 2);
    });
}

#[test]
fn dropped_pieces_of_a_split_around_are_freed() {
    node(|n| {
        let before = n.vmstat().nr_free_pages;
        let frozen = n.alloc_frozen(Order::THREE, Gfp::KERNEL).unwrap();
        let target = frozen.pfn().add(5);
        let mut pieces = frozen.split_around(target, Order::ZERO).unwrap();
        let taken = pieces.next().unwrap();
        drop(pieces);
        assert_eq!(n.vmstat().nr_free_pages, before - taken.nr_pages());
        drop(taken);
        assert_eq!(n.vmstat().nr_free_pages, before);
        assert_eq!(n.audit().violations, 0);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 48 }, ..ProptestConfig::default() })]

    #[test]
    fn split_around_matches_the_halving_model(order in 1u32..=6, target in any::<u64>(), new_order in any::<u32>()) {
        let new_order = new_order % order;
        let target = target % (1 << order);
        with_node(256, &[], small_config(false), &SpinPlatform, |n| check_split_around(n, order, target, new_order));
    }
}
