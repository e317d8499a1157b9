//! Loom models of GUP-fast against the two races of seed 000, and the
//! mutants loom must catch.
//!
//! - [`gup_fast_vs_split`]: Jann Horn's case. The walker reads the entry
//!   of a tail page while the folio is frozen and split; its increment may
//!   land on the old head. A reference it returns must be to a folio that
//!   holds its page and that the address maps, and a split that succeeded
//!   must not have frozen over it.
//! - [`gup_fast_vs_unmap_realloc`]: John Hubbard's case. The walker reads
//!   the entry, the page is unmapped, freed and reallocated for another
//!   address before the walker's increment. The increment succeeds (the
//!   new owner counts the page); only the recheck of the entry (P6.5)
//!   tells the walker the page is no longer the one the address maps.
//!
//! Tables have 8 entries under the model: a "huge" folio is order 3.

use super::{get_user_pages_fast, GupError, GupFlags, GupRun};
use crate::folio::Order;
use crate::pgtable::loom::{with_world, World, PAGE};
use crate::pgtable::{Entry, Fault, Leaf, HUGE_FRAMES, HUGE_SIZE};
use crate::testutil::{check_model_with_branches, set_current_cpu};
use crate::thp::{split_folio, SplitMode, ThpSplitError};
use loom::thread;

/// Scheduling points per execution (booting, splitting and auditing).
const BRANCHES: usize = 50_000;

/// The frame mapped at `va` now (after the threads joined).
fn mapped_frame(world: &World, va: u64) -> Option<u64> {
    let section = world.mmu.rcu().read_lock();
    match world.aspace.walk(&section, va) {
        Some(Leaf { entry: Entry::Page { pfn, huge, .. }, .. }) => {
            Some(pfn.0 + if huge { (va / PAGE) % HUGE_FRAMES } else { 0 })
        }
        _ => None,
    }
}

/// The walker: one GUP-fast of the page at `va`, as CPU 1. Yields first so
/// that loom's first execution runs the other thread first and every load
/// of the walk becomes a backtracking point (see `pgtable::loom`).
fn gup_one(world: &World, va: u64, flags: GupFlags) -> Result<GupRun<'static, 'static>, GupError> {
    set_current_cpu(1);
    thread::yield_now();
    let mut out = [None];
    get_user_pages_fast(world.aspace, va, 1, flags, &mut out).map(|_| out[0].take().expect("one run"))
}

/// What a run must be (P1, P6): a folio holding the page, and the page the
/// address maps.
fn check_run(world: &World, run: &GupRun<'_, '_>, va: u64) {
    let folio = world.node.memmap().page(run.folio_pfn()).unwrap();
    let order = crate::folio::decode_compound(run.folio_pfn(), folio.compound_word()).1.unwrap_or(Order::ZERO);
    assert!(
        run.first_pfn().0 >= run.folio_pfn().0 && run.first_pfn().0 < run.folio_pfn().0 + (1 << order.get()),
        "P1 violated: GUP holds folio {} which does not contain its page {}",
        run.folio_pfn(),
        run.first_pfn()
    );
    assert_eq!(
        mapped_frame(world, va),
        Some(run.first_pfn().0),
        "P6 violated: GUP-fast holds page {} but the address maps another",
        run.first_pfn()
    );
}

fn gup_fast_vs_split(flags: GupFlags) {
    with_world(
        |world| {
            let va = world.aspace.mmap_anon(HUGE_SIZE, true, true).unwrap();
            world.aspace.write(va, b"x").unwrap();
            va
        },
        |world, va| {
            let aspace = world.aspace;
            let splitter = thread::spawn(move || {
                set_current_cpu(0);
                split_folio(aspace, va, SplitMode::Uniform(Order::ZERO))
            });
            let got = gup_one(&world, va + 3 * PAGE, flags);
            let split = splitter.join().unwrap();
            match (&split, &got) {
                (Ok(_), Ok(run)) => {
                    check_run(&world, run, va + 3 * PAGE);
                    assert_eq!(
                        run.folio_pfn(),
                        run.first_pfn(),
                        "P2 violated: the split froze over a reference GUP still holds"
                    );
                }
                (Err(ThpSplitError::Busy { .. }), Ok(run)) => check_run(&world, run, va + 3 * PAGE),
                (Err(ThpSplitError::Busy { .. }), Err(e)) => panic!("P2 violated: split refused, yet GUP failed: {e}"),
                (Ok(_), Err(e)) => panic!("GUP of a mapped page failed: {e}"),
                (Err(e), _) => panic!("unexpected split failure: {e}"),
            }
            drop(got);
        },
    );
}

#[test]
fn gup_fast_vs_split_holds() {
    check_model_with_branches(BRANCHES, || gup_fast_vs_split(GupFlags::GET));
}

/// The split's freeze against a concurrent pin: exactly one wins.
#[test]
fn pin_vs_split_freeze_holds() {
    check_model_with_branches(BRANCHES, || gup_fast_vs_split(GupFlags::PIN));
}

fn gup_fast_vs_unmap_realloc() {
    with_world(
        |world| {
            // The neighbour keeps the PTE table in use, so the unmap frees
            // the page at once and no table waits for a grace period.
            let va = world.aspace.mmap_anon(3 * PAGE, true, false).unwrap();
            world.aspace.write(va, b"old").unwrap();
            world.aspace.write(va + PAGE, b"neighbour").unwrap();
            va
        },
        |world, va| {
            let aspace = world.aspace;
            let unmapper = thread::spawn(move || {
                set_current_cpu(0);
                aspace.munmap(va, PAGE).unwrap();
                // The freed frame is reallocated for the next address.
                aspace.write(va + 2 * PAGE, b"new").unwrap();
            });
            let got = gup_one(&world, va, GupFlags::GET);
            unmapper.join().unwrap();
            match &got {
                Ok(run) => assert_ne!(
                    mapped_frame(&world, va + 2 * PAGE),
                    Some(run.first_pfn().0),
                    "P6 violated: GUP-fast holds a page that was unmapped, freed and reallocated under it"
                ),
                Err(GupError::Fault(Fault::NotMapped(_))) => {}
                Err(e) => panic!("unexpected GUP failure: {e}"),
            }
            drop(got);
        },
    );
}

#[test]
fn gup_fast_vs_unmap_realloc_holds() {
    check_model_with_branches(BRANCHES, gup_fast_vs_unmap_realloc);
}

/// GUP-fast without the entry recheck after the get.
#[cfg(memdesc_mutant = "no_gup_recheck")]
#[test]
fn mutant_no_gup_recheck_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, gup_fast_vs_unmap_realloc);
}

/// P1 without the head recheck: the split case.
#[cfg(memdesc_mutant = "no_head_recheck")]
#[test]
fn mutant_no_head_recheck_is_caught_by_gup() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, || gup_fast_vs_split(GupFlags::GET));
}
