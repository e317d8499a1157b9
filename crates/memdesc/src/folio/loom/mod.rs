//! Loom models of the folio side, and the mutants loom must catch:
//! counted references and the raw-pfn paths (R, [`refs`]), the speculative
//! get (P1, [`get`]), freeze, split and retyping a frozen folio (P2, P3.4,
//! [`freeze`]), the folio lock (L.1–L.3, [`lock`]) and pins against split
//! and unpin against the last put (P6, P2.7, [`pin`]).
//!
//! Each model boots a fresh node per execution (per-CPU lists off, so the
//! frames taken are deterministic) on a [`BlockingPlatform`], whose waits
//! really sleep. Holders write [`Frames`], one loom cell per frame and
//! holder standing in for the frame's contents, before they give their
//! reference up, and the next owner writes them after reallocation, so a
//! missing Release or Acquire on the way is a data race loom reports rather
//! than a silent pass. Every model ends with the node clean: no audit
//! violation, nothing allocated, no bad-page report.

mod freeze;
mod get;
mod lock;
mod pin;
mod refs;

use crate::buddy::{FolioRef, FrozenFolio, Gfp, Node};
use crate::folio::{GetError, Order, PageType};
use crate::memmap::Pfn;
use crate::testutil::{small_config, with_node, BlockingPlatform};
use core::num::NonZeroU32;
use loom::thread;
use std::sync::Arc;

const ONE: NonZeroU32 = NonZeroU32::MIN;
/// Frames of RAM: enough for the metadata (larger under loom) and a few
/// order-1 and order-2 blocks.
const FRAMES: u64 = 24;
/// Holders that may write a frame at once, each through its own cell.
const HOLDERS: usize = 2;

/// Boots a node on a one-CPU blocking platform, runs `f` on it, then checks
/// the node is clean ([`assert_clean`]).
fn on_node(f: impl FnOnce(&Node<'_>)) {
    let platform = BlockingPlatform::new(1);
    with_node(FRAMES, &[], small_config(false), &platform, |node| {
        f(node);
        assert_clean(node);
    });
}

/// Asserts no audit violation, no frame still allocated and no bad-page
/// report: every reference a model took was given back exactly once.
fn assert_clean(node: &Node<'_>) {
    let audit = node.audit();
    assert_eq!(audit.violations, 0, "allocator invariants violated: {:?}", audit.first_violation);
    assert_eq!(audit.allocated, 0, "R violated: {} frames still allocated at the end", audit.allocated);
    let (reports, _, log) = node.bad_pages();
    assert_eq!(reports, 0, "R violated: {reports} bad-page reports, first {:?}", log[0]);
}

/// Runs `f` on a new loom thread with the node.
fn spawn_on<T: Send + 'static>(
    node: &Node<'_>,
    f: impl FnOnce(&Node<'static>) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let addr = node as *const Node<'_> as usize;
    thread::spawn(move || {
        // SAFETY: the node lives until `with_node` returns, and every model
        // joins this thread inside it.
        f(unsafe { &*(addr as *const Node<'static>) })
    })
}

/// Frame contents as the model sees them: per frame, one loom cell per
/// holder. A holder writes its own cell while it holds a reference; an
/// exclusive owner (frozen, or the next owner after reallocation) writes
/// them all. Loom reports any write not ordered after the previous owner's.
struct Frames(std::vec::Vec<[crate::sync::UnsafeCell<u64>; HOLDERS]>);

// SAFETY: each access is the model's claim that its thread owns the cell at
// that moment; loom checks every one and reports those that race, which is
// what the models test.
unsafe impl Sync for Frames {}
// SAFETY: as for Sync: the cells hold plain integers.
unsafe impl Send for Frames {}

impl Frames {
    fn new() -> Arc<Self> {
        Arc::new(Self((0..FRAMES).map(|_| core::array::from_fn(|_| crate::sync::UnsafeCell::new(0))).collect()))
    }

    /// Writes holder `holder`'s cell of frame `pfn`.
    fn write(&self, pfn: Pfn, holder: usize, value: u64) {
        // SAFETY: the model's claim (see the Sync impl); loom checks it.
        self.0[pfn.0 as usize][holder].with_mut(|cell| unsafe { *cell = value });
    }

    /// Writes every cell of every frame of `folio`, as its only owner.
    fn write_all(&self, folio: &FolioRef<'_>, value: u64) {
        for pfn in folio.pfn().0..folio.pfn().0 + folio.nr_pages() {
            for holder in 0..HOLDERS {
                self.write(Pfn(pfn), holder, value);
            }
        }
    }
}

/// Splits a frozen folio into folios of `new_order` and unfreezes each to
/// one reference with `unfreeze_with`: the pieces as the split hands them
/// out (P2.2, P2.5), the original head last (P2.6, P2.7). The models' one
/// call of `split`.
fn split_and_unfreeze(frozen: FrozenFolio<'_>, new_order: Order) -> std::vec::Vec<FolioRef<'_>> {
    let mut pieces = std::vec::Vec::new();
    frozen.split(new_order).unwrap().unfreeze_with(|_, _| ONE, |piece| pieces.push(piece)).unwrap();
    pieces
}

/// What a successful speculative get of `pfn` must see (P1's promise): a
/// folio containing `pfn`, aligned, of an owner type, with the owner words
/// its owner published. Returns its head, order and type, or `None` if the
/// get failed.
fn check_got(node: &Node<'_>, pfn: Pfn) -> Option<(Pfn, Order, PageType)> {
    match node.try_get(pfn) {
        Ok(folio) => {
            assert!(folio.contains(pfn), "P1 violated: reference to folio {} which no longer holds {pfn}", folio.pfn());
            let ty = folio.page_type();
            assert!(ty.is_owner_type(), "P1 violated: counted folio {} has type {ty}", folio.pfn());
            assert!(folio.pfn().is_aligned(folio.order().get()), "P1 violated: misaligned head");
            // SAFETY: duty 1 of owner_word: we hold a reference, and every
            // writer of word 0 (allocation prep, split) wrote it before the
            // Release that made the refcount non-zero, which our get (P1.3)
            // acquired; loom checks this claim.
            let word = unsafe { folio.head().owner_word(0) };
            assert_eq!(word, 0, "P1 violated: folio {} has a stale owner word", folio.pfn());
            Some((folio.pfn(), folio.order(), ty))
        }
        Err(GetError::Free | GetError::Frozen | GetError::Moved) => None,
        Err(e) => panic!("P1 violated: unexpected error {e}"),
    }
}

/// Allocates a movable folio of `order` and gives its reference up as a
/// raw pfn, for a model thread to restore.
fn alloc_raw(node: &Node<'_>, order: u32) -> Pfn {
    node.alloc(Order::new(order).unwrap(), Gfp::USER).unwrap().into_raw()
}

/// Restores a reference given up by [`alloc_raw`] or `into_raw`.
///
/// # Safety
/// 1. As [`FolioRef::from_raw`](crate::folio::FolioRef::from_raw): `raw`
///    is a reference of `node` given up once, restored once.
unsafe fn restore<'a>(node: &'a Node<'a>, raw: Pfn) -> FolioRef<'a> {
    // SAFETY: duty 1 is the caller's.
    unsafe { crate::folio::FolioRef::from_raw(node, raw) }.unwrap()
}
