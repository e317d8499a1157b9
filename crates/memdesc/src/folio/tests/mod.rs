use super::*;
use crate::buddy::{Gfp, Node};
use crate::folio::UnfreezeRefusal;
use crate::folio::{try_get_refs, FolioRefs, GUP_PIN_COUNTING_BIAS};
use crate::memmap::{PhysRange, PAGE_SIZE};
use crate::platform::SpinPlatform;
use crate::testutil::{small_config, with_node};
use core::num::NonZeroU32;

const ONE: NonZeroU32 = NonZeroU32::MIN;

fn node(f: impl FnOnce(&Node<'_>)) {
    with_node(1024, &[], small_config(true), &SpinPlatform, f)
}

#[test]
fn page_type_round_trips_through_its_encoding() {
    let all = [
        PageType::Uninit,
        PageType::Hole,
        PageType::Reserved,
        PageType::Metadata,
        PageType::Buddy { order: 10 },
        PageType::Free,
        PageType::Pcp { order: 3 },
        PageType::Tail,
        PageType::Kernel,
        PageType::Anon,
        PageType::File,
        PageType::Slab { cache: 513 },
        PageType::Movable { ops: 7 },
        PageType::PageTable,
        PageType::Offline,
        PageType::Quarantined,
    ];
    for ty in all {
        assert_eq!(PageType::decode(ty.encode()), ty);
    }
}

#[test]
fn try_get_on_free_frame_fails() {
    node(|n| {
        let pfn = n.memmap().end_pfn().add(0).0 - 1;
        assert_eq!(n.try_get(Pfn(pfn)).unwrap_err(), GetError::Free);
    });
}

#[test]
fn try_get_out_of_range_and_unmanaged() {
    node(|n| {
        assert_eq!(n.try_get(n.memmap().end_pfn()).unwrap_err(), GetError::OutOfRange);
        let (meta, _) = n.memmap().metadata_range();
        assert_eq!(n.try_get(meta).unwrap_err(), GetError::Unmanaged(PageType::Metadata));
    });
}

#[test]
fn try_get_on_tail_counts_the_head() {
    node(|n| {
        let folio = n.alloc(Order::new(2).unwrap(), Gfp::USER).unwrap();
        let head = folio.pfn();
        let got = n.try_get(head.add(3)).unwrap();
        assert_eq!(got.pfn(), head);
        assert_eq!(folio.ref_count(), 2);
        assert!(got.contains(head.add(3)) && !got.contains(head.add(4)));
        drop(got);
        assert_eq!(folio.ref_count(), 1);
    });
}

#[test]
fn try_get_never_counts_a_frozen_slab() {
    node(|n| {
        let slab = n.alloc_frozen(Order::new(1).unwrap(), Gfp::KERNEL.typed(PageType::Slab { cache: 3 })).unwrap();
        assert_eq!(n.try_get(slab.pfn()).unwrap_err(), GetError::Frozen);
        assert_eq!(n.try_get(slab.pfn().add(1)).unwrap_err(), GetError::Frozen);
        assert_eq!(slab.head().ref_count(), 0);
    });
}

#[test]
fn source_recheck_failure_drops_the_reference() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let err = try_get(n, folio.pfn(), |_| false).unwrap_err();
        assert_eq!(err, GetError::SourceChanged);
        assert_eq!(folio.ref_count(), 1);
    });
}

#[test]
fn speculative_reference_outlives_the_owner_and_frees_last() {
    node(|n| {
        let free_before = n.vmstat().nr_free_pages;
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let spec = n.try_get(folio.pfn()).unwrap();
        drop(folio);
        assert_eq!(n.vmstat().nr_free_pages, free_before - 1, "still held by the speculative reference");
        drop(spec);
        assert_eq!(n.vmstat().nr_free_pages, free_before);
    });
}

#[test]
fn freeze_fails_while_referenced() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let extra = folio.clone();
        let err = folio.try_freeze().unwrap_err();
        assert_eq!(err.actual, 2);
        let folio = err.folio;
        drop(extra);
        let frozen = folio.try_freeze().unwrap();
        assert_eq!(n.try_get(frozen.pfn()).unwrap_err(), GetError::Frozen);
        let back = frozen.unfreeze(ONE).unwrap();
        assert_eq!(back.ref_count(), 1);
    });
}

#[test]
fn frozen_owner_changes_type_and_owner_words() {
    node(|n| {
        let mut frozen = n.alloc_frozen(Order::ZERO, Gfp::KERNEL).unwrap();
        assert!(!frozen.set_type(PageType::Tail), "tails are never owner types");
        assert!(!frozen.set_type(PageType::Free));
        assert!(frozen.set_type(PageType::Movable { ops: 2 }));
        assert!(frozen.set_owner_word(3, 0xfeed));
        assert!(!frozen.set_owner_word(4, 1));
        assert_eq!(frozen.owner_word(3), Some(0xfeed));
        let counted = frozen.unfreeze(ONE).unwrap();
        assert_eq!(counted.page_type(), PageType::Movable { ops: 2 });
    });
}

#[test]
fn split_makes_every_piece_its_own_folio() {
    node(|n| {
        let folio = n.alloc(Order::new(2).unwrap(), Gfp::USER).unwrap();
        let head = folio.pfn();
        let frozen = folio.try_freeze().unwrap();
        let mut pieces: std::vec::Vec<_> =
            frozen.split(Order::ZERO).unwrap().map(|p| p.unfreeze_one().unwrap()).collect();
        // P2.6: the original head comes out last.
        let first = pieces.pop().unwrap();
        assert_eq!(first.pfn(), head);
        assert_eq!(first.order(), Order::ZERO);
        assert_eq!(pieces.len(), 3);
        for (i, piece) in pieces.iter().enumerate() {
            assert_eq!(piece.pfn(), head.add(i as u64 + 1));
            assert_eq!(piece.page_type(), PageType::Anon);
            assert_eq!(n.try_get(piece.pfn()).unwrap().pfn(), piece.pfn());
        }
        drop(pieces);
        drop(first);
        assert_eq!(n.audit().violations, 0);
        assert_eq!(n.audit().allocated, 0);
    });
}

#[test]
fn split_refuses_a_larger_order() {
    node(|n| {
        let frozen = n.alloc_frozen(Order::new(1).unwrap(), Gfp::KERNEL).unwrap();
        let (frozen, err) = frozen.split(Order::ONE).unwrap_err().into_parts();
        assert!(matches!(err, SplitFailed::NotSmaller { .. }));
        assert_eq!(frozen.order(), Order::ONE, "a refused split changes nothing");
        drop(frozen);
    });
}

#[test]
fn folio_lock_excludes_and_releases() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let locked = folio.try_lock().unwrap();
        assert!(folio.try_lock().is_none());
        assert!(folio.head().flags().contains(PageFlags::LOCKED));
        drop(locked);
        let again = folio.lock();
        drop(again);
        assert!(!folio.head().flags().contains(PageFlags::LOCKED));
    });
}

#[test]
fn dropping_a_frozen_folio_frees_it() {
    node(|n| {
        let before = n.vmstat().nr_free_pages;
        let frozen = n.alloc_frozen(Order::new(3).unwrap(), Gfp::KERNEL).unwrap();
        assert_eq!(n.vmstat().nr_free_pages, before - 8);
        drop(frozen);
        assert_eq!(n.vmstat().nr_free_pages, before);
    });
}

#[test]
fn raw_round_trip_restores_the_reference() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let pfn = folio.into_raw();
        // SAFETY: `pfn` came from into_raw just above and is restored once.
        let folio = unsafe { FolioRef::from_raw(n, pfn) }.unwrap();
        assert_eq!(folio.ref_count(), 1);
    });
}

#[test]
fn contents_cover_the_whole_folio() {
    node(|n| {
        let folio = n.alloc(Order::new(1).unwrap(), Gfp::USER).unwrap();
        assert_eq!(folio.contents().len(), 2 * PAGE_SIZE / 8);
    });
    let _ = PhysRange::new(0, 0);
}

/// Regression (review of issue 2): a slab or page-table folio can never be
/// counted, even when retyped while frozen (P3, seed 004).
#[test]
fn unfreeze_refuses_always_frozen_types() {
    node(|n| {
        let mut frozen = n.alloc(Order::ZERO, Gfp::KERNEL).unwrap().try_freeze().unwrap();
        assert!(frozen.set_type(PageType::PageTable));
        let err = frozen.unfreeze(ONE).unwrap_err();
        assert_eq!(err.reason, UnfreezeRefusal::AlwaysFrozen(PageType::PageTable));
        assert_eq!(n.try_get(err.folio.pfn()).unwrap_err(), GetError::Frozen);
    });
}

/// Regression (review of issue 2): split pieces come out unlocked and with
/// clean owner words; they keep the other flags.
#[test]
fn split_pieces_are_unlocked_and_clean() {
    node(|n| {
        let folio = n.alloc(Order::new(2).unwrap(), Gfp::USER).unwrap();
        let flags = PageFlags(PageFlags::LOCKED.0 | PageFlags::DIRTY.0);
        // Relaxed: test setup on a folio only we hold.
        folio.head().flags.fetch_or(flags.0, crate::sync::Ordering::Relaxed);
        let frozen = folio.try_freeze().unwrap();
        let mut pieces: std::vec::Vec<_> = frozen.split(Order::ZERO).unwrap().collect();
        let first = pieces.pop().unwrap();
        for piece in &pieces {
            assert!(piece.head().flags().contains(PageFlags::DIRTY));
            assert!(!piece.head().flags().intersects(PageFlags(PageFlags::LOCKED.0 | PageFlags::WAITERS.0)));
            assert!((0..4).all(|w| piece.owner_word(w) == Some(0)));
        }
        // Relaxed: test cleanup; the original head keeps the lock bit.
        first.head().flags.store(0, crate::sync::Ordering::Relaxed);
        drop(pieces);
        drop(first);
        assert_eq!(n.audit().violations, 0);
    });
}

mod pin;
mod split;
