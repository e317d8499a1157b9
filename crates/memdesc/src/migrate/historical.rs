//! Seed 004's historical design, kept alive only to be caught: slab frames
//! counted like any page, with their state (and, while an RCU free waits,
//! the RCU head's callback address) in a word that the isolate step reads
//! to decide "movable?" (Linux's `page->mapping & PAGE_MAPPING_MOVABLE`).
//!
//! Compiled for the seed-004 mutants (`memdesc_historical`, set by the build
//! script) and for the race replay (feature `failpoints`), never in a
//! production build. Two halves:
//!
//! - the **writers** ([`CountedSlab`]): a slab frame allocated counted
//!   (`alloc_pages`, refcount 1), flagged slab while counted
//!   (`__folio_set_slab`; here the type tag stands in for `PG_slab`), its
//!   state written to the `mapping` word (H.0); the RCU head written over
//!   that word by `call_rcu` (H.1); after the grace period the word cleared,
//!   the flag cleared and the reference put (H.2);
//! - the **reader** (ISO.2h, in place of ISO.2): "movable" from the word,
//!   with the tests and barriers of the variant:
//!   - `slab_counted_movable_word`: the movable test alone (Hugh Dickins'
//!     crash);
//!   - `first_barrier_patch`: slab test, Acquire fence (smp_rmb), movable
//!     test, Acquire fence, slab test (Babka's first patch; Hyeonggon
//!     Yoo's interleaving defeats it);
//!   - `first_patch_rmb_before_pagemovable`: the first patch plus Babka's
//!     question, another fence and movable test after the second slab test
//!     (loom finds no failure: its last three tests are the corrected
//!     order);
//!   - `corrected_barrier_order`: movable test, fence, slab test, fence,
//!     movable test (Babka's correction; loom finds no failure);
//!   - the replay (feature `failpoints`): the first patch's order, each
//!     slab test a check the replay may skip (Skip at both: Hugh's code).
//!
//! The writers' barriers are Babka's: a Release fence (smp_wmb) after
//! setting the flag and before clearing it.
//!
//! Soundness: the `mapping` word is accessed only through the atomic
//! historical accessors of [`crate::memmap::Page`] while the frame is
//! counted; the real protocol never reads a counted frame's owner words.
//! A platform that answers Skip at [`IsoTypeCheck`] must run one step at a
//! time (the replay driver does), or the historical design's logic races.
//!
//! [`IsoTypeCheck`]: crate::platform::failpoints::Failpoint::IsoTypeCheck

use super::{IsolateError, MovableOps, MovableOpsRegistry, MOVABLE_OPS_MAX};
use crate::buddy::{AllocError, FolioRef, Gfp, Node};
use crate::folio::{Order, PageType};
use crate::memmap::Pfn;
#[cfg(any(
    memdesc_mutant = "first_barrier_patch",
    memdesc_mutant = "first_patch_rmb_before_pagemovable",
    memdesc_mutant = "corrected_barrier_order",
    feature = "failpoints"
))]
use crate::sync::{fence, Ordering};

/// Linux's `PAGE_MAPPING_MOVABLE`: bit 1 of `mapping` said "movable".
pub const MAPPING_MOVABLE: u64 = 0x2;

/// The word the slab's RCU head puts over `mapping` (H.1): the address of
/// SLUB's `rcu_free_slab()` on Hugh Dickins' machine, odd-aligned under
/// `CONFIG_CC_OPTIMIZE_FOR_SIZE`, so bit 1 was set.
pub const RCU_FREE_SLAB_WORD: u64 = 0xffff_ffff_8113_03aa;

/// The ops id a `mapping` word decodes to ("`mapping` minus the low bits
/// is the ops"): the registry slot the historical reader calls.
pub const fn ops_of_word(word: u64) -> u16 {
    ((word >> 2) % MOVABLE_OPS_MAX as u64) as u16
}

/// The slot [`RCU_FREE_SLAB_WORD`] decodes to: where a replay or model
/// registers the ops that the historical reader will (wrongly) call.
pub const RCU_FREE_SLAB_OPS: u16 = ops_of_word(RCU_FREE_SLAB_WORD);

/// Whether a `mapping` word says "movable".
pub const fn is_movable_word(word: u64) -> bool {
    word & MAPPING_MOVABLE != 0
}

/// `PageSlab`: the type tag stands in for the flag (a Relaxed load, as
/// Linux's `test_bit`).
fn is_slab(folio: &FolioRef<'_>) -> bool {
    matches!(folio.page_type(), PageType::Slab { .. })
}

/// `READ_ONCE(page->mapping)`.
fn mapping(folio: &FolioRef<'_>) -> u64 {
    // SAFETY: duty 1 of historical_mapping: the word of a counted frame is
    // written only by the historical writers below, through the atomic
    // accessor (and by the allocator before publication and after the last
    // put, which our reference orders).
    unsafe { folio.head().historical_mapping() }
}

/// The ops a movable word decodes to.
fn lookup<'r>(word: u64, registry: &MovableOpsRegistry<'r>) -> Result<&'r dyn MovableOps, IsolateError> {
    let id = ops_of_word(word);
    registry.get(id).ok_or(IsolateError::NoOps(id))
}

/// ISO.2h under the mutants: the historical reader.
#[cfg(memdesc_historical)]
pub(super) fn movable_ops<'r>(
    folio: &FolioRef<'_>,
    registry: &MovableOpsRegistry<'r>,
) -> Result<&'r dyn MovableOps, IsolateError> {
    let not_movable = || IsolateError::NotMovable(folio.page_type());
    // Hugh Dickins' kernel: `__PageMovable(page)` and nothing else.
    #[cfg(memdesc_mutant = "slab_counted_movable_word")]
    let word = {
        let word = mapping(folio);
        if !is_movable_word(word) {
            return Err(not_movable());
        }
        word
    };
    // Babka's first patch: slab, rmb, movable, rmb, slab.
    #[cfg(memdesc_mutant = "first_barrier_patch")]
    let word = {
        if is_slab(folio) {
            return Err(not_movable());
        }
        // Acquire: smp_rmb, pairing with the writers' Release fences.
        fence(Ordering::Acquire);
        let word = mapping(folio);
        if !is_movable_word(word) {
            return Err(not_movable());
        }
        // Acquire: smp_rmb, as above.
        fence(Ordering::Acquire);
        if is_slab(folio) {
            return Err(not_movable());
        }
        word
    };
    // Babka's question on Yoo's interleaving: the first patch plus "another
    // smp_rmb() before the PageMovable test" that Linux makes after the
    // folio lock. Made here before the lock: the folio lock is a word the
    // slab's writers never touch, so it orders nothing between them.
    #[cfg(memdesc_mutant = "first_patch_rmb_before_pagemovable")]
    let word = {
        if is_slab(folio) {
            return Err(not_movable());
        }
        // Acquire: smp_rmb, pairing with the writers' Release fences.
        fence(Ordering::Acquire);
        if !is_movable_word(mapping(folio)) {
            return Err(not_movable());
        }
        // Acquire: smp_rmb, as above.
        fence(Ordering::Acquire);
        if is_slab(folio) {
            return Err(not_movable());
        }
        // Acquire: the smp_rmb Babka asked about, pairing with the Release
        // fence before the flag is cleared (H.2).
        fence(Ordering::Acquire);
        let word = mapping(folio);
        if !is_movable_word(word) {
            return Err(not_movable());
        }
        word
    };
    // Babka's correction: movable, rmb, slab, rmb, movable.
    #[cfg(memdesc_mutant = "corrected_barrier_order")]
    let word = {
        if !is_movable_word(mapping(folio)) {
            return Err(not_movable());
        }
        // Acquire: smp_rmb, pairing with the Release fence after the slab
        // flag is set (H.0): a movable word written after it implies the
        // flag.
        fence(Ordering::Acquire);
        if is_slab(folio) {
            return Err(not_movable());
        }
        // Acquire: smp_rmb, pairing with the Release fence before the flag
        // is cleared (H.2): a clear flag implies the cleared word.
        fence(Ordering::Acquire);
        let word = mapping(folio);
        if !is_movable_word(word) {
            return Err(not_movable());
        }
        word
    };
    lookup(word, registry)
}

/// ISO.2h in a replay (Skip at `IsoTypeCheck`): the first patch's order,
/// each slab test a check the replay may skip too.
#[cfg(all(feature = "failpoints", not(memdesc_historical)))]
pub(super) fn movable_ops_replay<'r>(
    node: &Node<'_>,
    folio: &FolioRef<'_>,
    registry: &MovableOpsRegistry<'r>,
) -> Result<&'r dyn MovableOps, IsolateError> {
    let platform = node.platform();
    let not_movable = || IsolateError::NotMovable(folio.page_type());
    if crate::platform::failpoint_check!(platform, IsoSlabTest) && is_slab(folio) {
        return Err(not_movable());
    }
    // Acquire: smp_rmb, pairing with the writers' Release fences.
    fence(Ordering::Acquire);
    crate::platform::failpoint!(platform, IsoMovableTest);
    let word = mapping(folio);
    if !is_movable_word(word) {
        return Err(not_movable());
    }
    // Acquire: smp_rmb, as above.
    fence(Ordering::Acquire);
    if crate::platform::failpoint_check!(platform, IsoSlabRecheck) && is_slab(folio) {
        return Err(not_movable());
    }
    lookup(word, registry)
}

/// smp_wmb in the writers, for the variants that have Babka's barriers.
#[inline(always)]
fn smp_wmb() {
    // Release: pairs with the reader's Acquire fences (ISO.2h).
    #[cfg(any(
        memdesc_mutant = "first_barrier_patch",
        memdesc_mutant = "first_patch_rmb_before_pagemovable",
        memdesc_mutant = "corrected_barrier_order",
        feature = "failpoints"
    ))]
    fence(Ordering::Release);
}

/// A slab frame as the historical design kept it: counted, the slab's own
/// reference held here, flagged slab while counted, its state in the
/// `mapping` word. Drop frees it as [`CountedSlab::free`] does.
#[derive(Debug)]
pub struct CountedSlab<'n> {
    folio: FolioRef<'n>,
}

impl<'n> CountedSlab<'n> {
    /// H.0: `alloc_pages` (counted: refcount 1, published), then
    /// `__folio_set_slab`, smp_wmb (if the variant has it), then the slab's
    /// state into the `mapping` word.
    ///
    /// # Errors
    /// [`AllocError`] from the allocator.
    pub fn alloc(node: &'n Node<'n>, cache: u16, state: u64) -> Result<Self, AllocError> {
        let folio = node.alloc(Order::ZERO, Gfp::KERNEL)?;
        crate::platform::failpoint!(node.platform(), HistoricalSetSlab);
        // The historical design's defining step: the type (`PG_slab`) set
        // on a counted frame, which P3 forbids.
        folio.head().set_type(PageType::Slab { cache });
        smp_wmb();
        // SAFETY: duty 1 of set_historical_mapping: only the historical
        // accessors touch this word of a counted frame.
        unsafe { folio.head().set_historical_mapping(state) };
        Ok(Self { folio })
    }

    /// The frame.
    pub fn pfn(&self) -> Pfn {
        self.folio.pfn()
    }

    /// H.1: `call_rcu(&slab->rcu_head, rcu_free_slab)`: the head's
    /// callback address lands on `mapping` (commit 65505d1f2338e7's
    /// overlap). The frame stays counted while it waits.
    pub fn rcu_head(&self) {
        crate::platform::failpoint!(self.folio.owner().platform(), HistoricalRcuHead);
        // SAFETY: as in alloc.
        unsafe { self.folio.head().set_historical_mapping(RCU_FREE_SLAB_WORD) };
    }

    /// H.2: after the grace period, `__free_slab`: `mapping = NULL`,
    /// smp_wmb (if the variant has it), `__folio_clear_slab`, then the
    /// slab's reference put (the last one frees the frame).
    pub fn free(self) {
        crate::platform::failpoint!(self.folio.owner().platform(), HistoricalSlabFree);
        drop(self);
    }
}

impl Drop for CountedSlab<'_> {
    fn drop(&mut self) {
        // SAFETY: as in alloc.
        unsafe { self.folio.head().set_historical_mapping(0) };
        smp_wmb();
        self.folio.head().set_type(PageType::Kernel);
        // The reference goes with `self.folio`.
    }
}
