//! Loom models of P1 (speculative get) and P2 (freeze and split) on a real
//! node of a few frames, and the mutants loom must catch.
//!
//! Each model boots a fresh node per execution (per-CPU lists off, so the
//! frames taken are deterministic), then races a speculative getter against
//! an owner that splits or frees and reallocates the folio.

use crate::buddy::{Gfp, Node};
use crate::folio::{GetError, Order, PageType};
use crate::memmap::Pfn;
use crate::platform::SpinPlatform;
use crate::testutil::{check_model, small_config, with_node};
use core::num::NonZeroU32;
use loom::thread;

const ONE: NonZeroU32 = NonZeroU32::MIN;
/// Frames of RAM: enough for the metadata (larger under loom) and a few
/// order-1 and order-2 blocks.
const FRAMES: u64 = 24;

/// Races `getter` (this thread, which runs first) against `owner` (a
/// second thread) over one node, with an order-1 anonymous folio allocated
/// up front and handed to `owner`. Whatever raw reference `owner` returns is
/// put after the join: the new owner keeps its frame while the getter runs.
fn race(
    owner: impl FnOnce(&Node<'_>, crate::buddy::FolioRef<'_>) -> Option<Pfn> + Send,
    getter: impl FnOnce(&Node<'_>, Pfn),
) {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let folio = node.alloc(Order::new(1).unwrap(), Gfp::USER).unwrap();
        let tail = folio.pfn().add(1);
        let raw = folio.into_raw();
        let addr = node as *const Node<'_> as usize;
        let handle = spawn_unchecked(move || {
            // SAFETY: `addr` is the node booted above, which outlives the
            // join below.
            let node = unsafe { &*(addr as *const Node<'static>) };
            // SAFETY: duty 1: `raw` came from into_raw and is restored once.
            let folio = unsafe { crate::folio::FolioRef::from_raw(node, raw) }.unwrap();
            owner(node, folio)
        });
        getter(node, tail);
        if let Some(kept) = handle.join().unwrap() {
            // SAFETY: duty 1: `kept` is a reference the owner gave up with
            // into_raw and handed to us through the join; put once.
            unsafe { node.put_pfn(kept) }.unwrap();
        }
        let audit = node.audit();
        assert_eq!(audit.violations, 0, "allocator invariants violated: {:?}", audit.first_violation);
    });
}

/// Spawns a non-'static closure on a loom thread.
fn spawn_unchecked<F: FnOnce() -> Option<Pfn> + Send>(f: F) -> thread::JoinHandle<Option<Pfn>> {
    let boxed: std::boxed::Box<dyn FnOnce() -> Option<Pfn> + Send + '_> = std::boxed::Box::new(f);
    // SAFETY: every caller joins the handle before the borrowed node dies,
    // so erasing the lifetime cannot let the closure outlive it.
    let boxed: std::boxed::Box<dyn FnOnce() -> Option<Pfn> + Send + 'static> = unsafe { core::mem::transmute(boxed) };
    thread::spawn(boxed)
}

/// What a successful speculative get of `pfn` must see (P1's promise).
fn check_got(node: &Node<'_>, pfn: Pfn) -> Option<PageType> {
    match node.try_get(pfn) {
        Ok(folio) => {
            assert!(folio.contains(pfn), "P1 violated: reference to folio {} which no longer holds {pfn}", folio.pfn());
            let ty = folio.page_type();
            assert!(ty.is_owner_type(), "P1 violated: counted folio {} has type {ty}", folio.pfn());
            assert!(folio.pfn().is_aligned(folio.order().get()), "P1 violated: misaligned head");
            Some(ty)
        }
        Err(GetError::Free | GetError::Frozen | GetError::Moved) => None,
        Err(e) => panic!("P1 violated: unexpected error {e}"),
    }
}

/// P1 against P2: the getter aims at the tail while the owner freezes the
/// folio and splits it into two order-0 folios, unfreezing the new one
/// first and the original last.
fn get_races_split() {
    race(
        |_node, folio| {
            if let Ok(frozen) = folio.try_freeze() {
                // New folios first, the original head last (P2.6).
                let pieces: std::vec::Vec<_> =
                    frozen.split(Order::ZERO).unwrap().map(|piece| piece.unfreeze(ONE).unwrap()).collect();
                drop(pieces);
            }
            None
        },
        |node, tail| {
            check_got(node, tail);
        },
    );
}

/// P1 against free and reallocation as a folio of another order (seed
/// 000): the owner frees the order-1 folio, whose frames merge, and
/// allocates an order-0 folio, which the allocator carves from the same
/// block, so the old head is counted again but the tail is no longer its.
fn get_races_free_and_realloc() {
    race(
        |node, folio| {
            drop(folio);
            // A movable request: the freed block is first on its list, so the
            // allocator splits it and hands back the old head.
            let again = node.alloc(Order::ZERO, Gfp::USER.typed(PageType::File)).unwrap();
            Some(again.into_raw())
        },
        |node, tail| {
            check_got(node, tail);
        },
    );
}

/// P2 alone: a getter takes a speculative reference to the head while the
/// owner freezes the folio, writes an owner word (legal only while frozen)
/// and unfreezes. Either the freeze fails (the getter's reference is
/// counted) or the getter's reference comes after the unfreeze and reads
/// the word as published; loom's race detector checks the owner word.
fn freeze_excludes_getters() {
    race(
        |_node, folio| match folio.try_freeze() {
            Ok(mut frozen) => {
                frozen.set_owner_word(2, 0xf00d);
                Some(frozen.unfreeze(ONE).unwrap().into_raw())
            }
            Err(err) => Some(err.folio.into_raw()),
        },
        |node, tail| {
            let head = Pfn(tail.0 - 1);
            if let Ok(folio) = node.try_get(head) {
                // SAFETY: duty 1 of owner_word: we hold a reference, and the
                // owner writes word 2 only while frozen, which our reference
                // excludes; its value was published by the unfreeze (P2.5)
                // our get (P1.3) acquired, or it is the allocation's zero.
                let word = unsafe { folio.head().owner_word(2) };
                assert!(word == 0 || word == 0xf00d, "P2 violated: owner word {word:#x}");
            }
        },
    );
}

#[test]
fn p2_freeze_excludes_getters() {
    check_model(freeze_excludes_getters);
}

/// P1 against P2 with two getters, one aiming at the tail and one at the
/// head, while the owner splits: three threads, so the getters' increments
/// also race each other and the freeze.
#[test]
fn p1_two_getters_race_split() {
    check_model(|| {
        with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
            let folio = node.alloc(Order::new(1).unwrap(), Gfp::USER).unwrap();
            let head = folio.pfn();
            let raw = folio.into_raw();
            let addr = node as *const Node<'_> as usize;
            let splitter = spawn_unchecked(move || {
                // SAFETY: the node outlives both joins below.
                let node = unsafe { &*(addr as *const Node<'static>) };
                // SAFETY: duty 1: `raw` came from into_raw and is restored once.
                let folio = unsafe { crate::folio::FolioRef::from_raw(node, raw) }.unwrap();
                if let Ok(frozen) = folio.try_freeze() {
                    let pieces: std::vec::Vec<_> =
                        frozen.split(Order::ZERO).unwrap().map(|piece| piece.unfreeze(ONE).unwrap()).collect();
                    drop(pieces);
                }
                None
            });
            let head_getter = spawn_unchecked(move || {
                // SAFETY: the node outlives both joins below.
                let node = unsafe { &*(addr as *const Node<'static>) };
                check_got(node, head);
                None
            });
            check_got(node, head.add(1));
            splitter.join().unwrap();
            head_getter.join().unwrap();
            let audit = node.audit();
            assert_eq!(audit.violations, 0, "allocator invariants violated: {:?}", audit.first_violation);
            assert_eq!(audit.allocated, 0, "a reference leaked");
        });
    });
}

/// Data only the folio lock protects.
struct LockGuarded(crate::sync::UnsafeCell<u32>);

// SAFETY: every access happens under the folio lock (the model's claim);
// loom's cell reports any access that is not, which is what the model checks.
unsafe impl Sync for LockGuarded {}

/// The folio lock: two threads increment a counter that only the lock
/// protects (a loom cell, so a broken lock is a detected data race), the
/// second sleeping through the platform's wait while the first holds it.
#[test]
fn folio_lock_serialises_holders() {
    check_model(lock_serialises_holders);
}

/// The folio lock taken without Acquire (L.1).
#[cfg(memdesc_mutant = "relaxed_folio_lock")]
#[test]
fn mutant_relaxed_folio_lock_is_caught() {
    crate::testutil::assert_model_fails(lock_serialises_holders);
}

fn lock_serialises_holders() {
    {
        let counter = std::sync::Arc::new(LockGuarded(crate::sync::UnsafeCell::new(0u32)));
        let shared = counter.clone();
        race(
            move |_node, folio| {
                let locked = folio.lock();
                // SAFETY: the folio lock is held: no other access.
                shared.0.with_mut(|c| unsafe { *c += 1 });
                drop(locked);
                Some(folio.into_raw())
            },
            |node, tail| {
                let folio = node.try_get(Pfn(tail.0 - 1)).unwrap();
                let locked = folio.lock();
                // SAFETY: the folio lock is held: no other access.
                counter.0.with_mut(|c| unsafe { *c += 1 });
                drop(locked);
            },
        );
    }
}

#[test]
fn p1_get_races_split() {
    check_model(get_races_split);
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

/// The unfreeze after a split without Release (DESIGN §4).
#[cfg(memdesc_mutant = "relaxed_unfreeze")]
#[test]
fn mutant_relaxed_unfreeze_is_caught() {
    crate::testutil::assert_model_fails(get_races_split);
}

/// The same mutant, seen by the plain P2 model: the owner word written
/// while frozen is not published to the next getter.
#[cfg(memdesc_mutant = "relaxed_unfreeze")]
#[test]
fn mutant_relaxed_unfreeze_is_caught_by_p2() {
    crate::testutil::assert_model_fails(freeze_excludes_getters);
}
