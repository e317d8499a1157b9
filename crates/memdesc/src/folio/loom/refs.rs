//! R: counted references (clone, put, the last put's fence), the raw-pfn
//! puts (`put_pfn`, `free_pages`), the guard of a put that finds 0, and the
//! overflow band.

use super::{alloc_raw, on_node, restore, spawn_on, Frames};
use crate::buddy::{FolioRef, Gfp, Node, RawError};
use crate::folio::{Order, REF_MAX};
use crate::sync::{AtomicU32, Ordering};
use crate::testutil::{check_model, small_config, with_node, BlockingPlatform};
use core::num::NonZeroU32;
use std::sync::Arc;

/// Gives up the reference `folio` the way `how` says.
#[derive(Clone, Copy)]
enum Put {
    /// `FolioRef::drop` (R.2, R.3).
    Drop,
    /// `Node::put_pfn` (R.4).
    Raw,
    /// `Node::free_pages` (R.4 behind an order check).
    FreePages,
}

fn put(node: &Node<'_>, folio: FolioRef<'_>, how: Put) {
    match how {
        Put::Drop => drop(folio),
        Put::Raw => {
            let raw = folio.into_raw();
            // SAFETY: duty 1: `raw` is the reference just given up, once.
            unsafe { node.put_pfn(raw) }.unwrap();
        }
        Put::FreePages => {
            let (raw, order) = (folio.pfn(), folio.order());
            let raw_again = folio.into_raw();
            debug_assert_eq!(raw, raw_again);
            // SAFETY: duty 1: as for put_pfn above.
            unsafe { node.free_pages(raw, order) }.unwrap();
        }
    }
}

/// Two holders of one folio (the second made by `clone`, R.1) each write
/// their own cell of the frame and put their reference, the other thread
/// by `theirs`, this one by `ours`; this thread then allocates again, which
/// takes the frame back if our put was the last, and writes every cell as
/// the new owner. The other holder's write must happen before that: its
/// put's Release (R.2 or R.4), then the Acquire fence of our last put
/// (R.3, or the one in `put_pfn`); if their put is the last instead, the
/// zone lock orders its free before our allocation.
fn holders_race_last_put(theirs: Put, ours: Put) {
    on_node(|node| {
        let frames = Frames::new();
        let folio = node.alloc(Order::ZERO, Gfp::USER).unwrap();
        let pfn = folio.pfn();
        let other = folio.clone().into_raw();
        let their_frames = frames.clone();
        let holder = spawn_on(node, move |node| {
            // SAFETY: duty 1: `other` came from into_raw and is restored once.
            let folio = unsafe { restore(node, other) };
            their_frames.write(pfn, 1, 1);
            put(node, folio, theirs);
        });
        frames.write(pfn, 0, 1);
        put(node, folio, ours);
        let next = node.alloc(Order::ZERO, Gfp::USER).unwrap();
        frames.write_all(&next, 2);
        drop(next);
        holder.join().unwrap();
    });
}

/// The other holder drops its handle (R.2); our put is raw, so when it is
/// the last, `put_pfn`'s Acquire fence is what orders the holder's write.
fn drop_races_raw_put() {
    holders_race_last_put(Put::Drop, Put::FreePages);
}

/// The other holder's put is raw (R.4's Release CAS); when our drop is the
/// last, its Acquire fence (R.3) is what orders the holder's write.
fn raw_put_races_drop() {
    holders_race_last_put(Put::Raw, Put::Drop);
}

#[test]
fn r_drop_races_raw_last_put() {
    check_model(drop_races_raw_put);
}

#[test]
fn r_raw_put_races_last_drop() {
    check_model(raw_put_races_drop);
}

/// `put_pfn`'s decrement without Release (R.4).
#[cfg(memdesc_mutant = "relaxed_put_pfn")]
#[test]
fn mutant_relaxed_put_pfn_is_caught() {
    crate::testutil::assert_model_fails(raw_put_races_drop);
}

/// `put_pfn` frees without the Acquire fence (R.4's last put).
#[cfg(memdesc_mutant = "put_pfn_no_fence")]
#[test]
fn mutant_put_pfn_no_fence_is_caught() {
    crate::testutil::assert_model_fails(drop_races_raw_put);
}

/// `FolioRef::drop` frees without the Acquire fence (R.3), the step
/// `Arc::drop` has for the same reason.
#[cfg(memdesc_mutant = "no_last_put_fence")]
#[test]
fn mutant_no_last_put_fence_is_caught() {
    crate::testutil::assert_model_fails(raw_put_races_drop);
}

/// `FolioRef::drop`'s decrement without Release (R.2).
#[cfg(memdesc_mutant = "relaxed_put")]
#[test]
fn mutant_relaxed_put_is_caught() {
    crate::testutil::assert_model_fails(drop_races_raw_put);
}

/// Spins (yielding to loom) until `flag` holds at least `value`.
fn wait_for(flag: &AtomicU32, value: u32) {
    // Acquire: pairs with the Release in `signal`, ordering what the
    // signalling thread did before it.
    while flag.load(Ordering::Acquire) < value {
        loom::thread::yield_now();
    }
}

fn signal(flag: &AtomicU32, value: u32) {
    // Release: pairs with the Acquire in `wait_for`.
    flag.store(value, Ordering::Release);
}

/// The guard of a put that found 0 (raw-API misuse): a stale handle's drop
/// lands after the folio's real last put, on the free frame. The guard must
/// undo its own wrap (a CAS from `u32::MAX`), leave the free frame on its
/// list, untyped by the report, and file the report.
///
/// The race the CAS (rather than a plain store) exists for, a publish of a
/// reallocation landing between the wrap and the undo, is not modelled:
/// loom orders a plain store (the publish) against another thread's
/// read-modify-writes only by causality, so it lets the undo's CAS read the
/// wrap even after the publish and reports a lost publish that the C++
/// memory model (one modification order, RMWs read its last value) rules
/// out.
fn stray_put_after_free() {
    let platform = BlockingPlatform::new(1);
    with_node(super::FRAMES, &[], small_config(false), &platform, |node| {
        let raw = alloc_raw(node, 0);
        let steps = Arc::new(AtomicU32::new(0));
        let stray_steps = steps.clone();
        let stray = spawn_on(node, move |node| {
            // The misuse: a second handle for the one reference there is.
            // SAFETY: deliberately violated (duty 1: restored twice); the
            // guard under test is what stands between this and a wrapped
            // refcount.
            let stale = unsafe { restore(node, raw) };
            signal(&stray_steps, 1);
            wait_for(&stray_steps, 2);
            drop(stale);
        });
        wait_for(&steps, 1);
        // SAFETY: duty 1: `raw` is the reference alloc_raw gave up; this is
        // its one legitimate put (the stray handle is the misuse).
        unsafe { node.put_pfn(raw) }.unwrap();
        signal(&steps, 2);
        // A getter racing the stray put must never count the free frame,
        // wrapped or not.
        if let Ok(folio) = node.try_get(raw) {
            panic!("R violated: a getter counted free frame {raw}: {folio:?}");
        }
        stray.join().unwrap();
        let page = node.memmap().page(raw).unwrap();
        let count = page.ref_count();
        assert_eq!(count, 0, "R violated: a put at zero left free frame {raw} at refcount {count}");
        let ty = page.page_type();
        assert!(ty.is_free(), "R violated: the report retyped free frame {raw} as {ty}");
        let (reports, frames, log) = node.bad_pages();
        assert_eq!((reports, frames), (1, 0), "R violated: reports {log:?}");
        let audit = node.audit();
        assert_eq!(audit.violations, 0, "allocator invariants violated: {:?}", audit.first_violation);
        assert_eq!(audit.allocated, 0, "R violated: {} frames still allocated", audit.allocated);
    });
}

#[test]
fn r_stray_put_undoes_its_wrap() {
    check_model(stray_put_after_free);
}

/// The guard does not undo its wrap: the free frame keeps refcount
/// `u32::MAX`.
#[cfg(memdesc_mutant = "put_at_zero_no_undo")]
#[test]
fn mutant_put_at_zero_no_undo_is_caught() {
    crate::testutil::assert_model_fails(stray_put_after_free);
}

/// The overflow band: two getters race for the last counted value below
/// it (`REF_MAX`); exactly one wins, and the count never enters the band.
/// The references are raw ones the model accounts for, frozen all at once
/// with `try_freeze_with` (P2.1 with an expected count above one).
fn gets_race_at_ref_max() {
    on_node(|node| {
        let frozen = node.alloc_frozen(Order::ZERO, Gfp::USER).unwrap();
        let near = NonZeroU32::new(REF_MAX - 1).unwrap();
        let raw = frozen.unfreeze(near).unwrap().into_raw();
        let other = spawn_on(node, move |node| node.try_get(raw).ok().map(FolioRef::into_raw));
        let mine = node.try_get(raw).ok().map(FolioRef::into_raw);
        let theirs = other.join().unwrap();
        let won = u32::from(mine.is_some()) + u32::from(theirs.is_some());
        let count = node.memmap().page(raw).unwrap().ref_count();
        assert!(count <= REF_MAX, "R violated: refcount {count} in the overflow band");
        assert_eq!(won, 1, "R violated: {won} gets won the last counted value");
        // SAFETY: duty 1: `raw` is the unfreeze's reference, restored once.
        let folio = unsafe { restore(node, raw) };
        // SAFETY: duty 1: the other `count - 1` references are the model's
        // raw ones (the unfreeze's and the winning get's), never restored.
        let frozen = unsafe { folio.try_freeze_with(NonZeroU32::new(count).unwrap()) };
        drop(frozen.unwrap_or_else(|e| panic!("P2 violated: freeze at the exact count failed: {e}")));
    });
}

#[test]
fn r_gets_stop_below_the_overflow_band() {
    check_model(gets_race_at_ref_max);
}

/// Asserts that cloning `folio` panics and leaves its refcount as it was.
fn assert_clone_refused(folio: &FolioRef<'_>) {
    let before = folio.ref_count();
    let cloned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| folio.clone().into_raw()));
    assert!(cloned.is_err(), "R violated: a clone at refcount {before} succeeded");
    let after = folio.ref_count();
    assert_eq!(after, before, "R violated: the clone guard left refcount {after}, not {before}");
}

/// The guards of R, sequential (no interleaving is involved: a clone is
/// made from a held reference, and the raw checks read the caller's own
/// frame): a clone at `REF_MAX` (the band's edge) or through a stale handle
/// at 0 (raw-API misuse) panics and undoes itself, and a raw put of a
/// frozen folio is refused and changes nothing.
#[test]
fn r_guards_refuse_zero_and_the_band() {
    check_model(|| {
        on_node(|node| {
            let frozen = node.alloc_frozen(Order::ZERO, Gfp::USER).unwrap();
            let top = NonZeroU32::new(REF_MAX).unwrap();
            let folio = frozen.unfreeze(top).unwrap();
            assert_clone_refused(&folio);
            // SAFETY: duty 1: the other references are the model's raw ones.
            let frozen = unsafe { folio.try_freeze_with(top) }.unwrap();
            let raw = frozen.into_raw();
            // SAFETY: duty 1 deliberately violated: we own no reference to
            // the frozen folio; put_pfn must see refcount 0 and refuse.
            let put = unsafe { node.put_pfn(raw) };
            assert_eq!(put, Err(RawError::ZeroRefcount(raw)), "R violated: a raw put of a frozen folio");
            let count = node.memmap().page(raw).unwrap().ref_count();
            assert_eq!(count, 0, "R violated: a refused raw put left refcount {count}");
            // SAFETY: duty 1: `raw` came from FrozenFolio::into_raw, once.
            drop(unsafe { crate::folio::FrozenFolio::from_raw(node, raw) }.unwrap());
            // A stale handle: restored while counted, its reference then put.
            let raw = alloc_raw(node, 0);
            // SAFETY: duty 1 deliberately violated (restored, then also put
            // below): the misuse the clone guard exists for.
            let stale = unsafe { restore(node, raw) };
            // SAFETY: duty 1: the reference alloc_raw gave up, put once.
            unsafe { node.put_pfn(raw) }.unwrap();
            assert_clone_refused(&stale);
            core::mem::forget(stale);
        });
    });
}
