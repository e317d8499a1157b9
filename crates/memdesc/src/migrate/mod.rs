//! The isolate step of migration and compaction (DESIGN P8, first half):
//! a pfn scanner meets frames it holds no reference to and asks "is this a
//! movable page, and may I take it?".
//!
//! In seed 004 Linux's `isolate_movable_page()` answered from a bit of
//! `page->mapping`, a word the slab allocator reused for its RCU head, and
//! called the "movable operations" a slab's RCU callback address decoded
//! to. Here the question is answered by the protocol of docs/PROTOCOLS.md
//! (ISO.1–ISO.6), in this order:
//!
//! 1. **ISO.1** a speculative get (P1, [`Node::try_get`]): it fails on free
//!    frames, on a tail whose folio changed meanwhile, and on every frozen
//!    frame, so slab and page-table frames (allocated frozen, P3) are
//!    refused here, before anything of their descriptor but the refcount
//!    and type tag is looked at;
//! 2. **ISO.2** the type tag (P3): only [`PageType::Movable`] with ops
//!    registered under its id goes on; the reference taken at ISO.1
//!    stabilises the tag (only a frozen owner retypes, and freezing needs
//!    our reference gone);
//! 3. **ISO.3** the folio trylock (never sleep on a page someone else
//!    works on);
//! 4. **ISO.4** not already isolated ([`PageFlags::ISOLATED`], under the
//!    lock);
//! 5. **ISO.5** the ops' `isolate`; on success the flag is set and the lock
//!    dropped, and the caller gets an [`IsolatedPage`];
//! 6. **ISO.6** dropping the [`IsolatedPage`] puts the page back: under the
//!    lock, the ops' `putback`, the flag cleared, then the reference put.
//!
//! [`scan_isolate`] runs the step over a pfn range and counts outcomes
//! ([`ScanStats`]): the simulator's scanner calls it, and must meet slab
//! frames (counted in [`ScanStats::frozen_slab`]) without ever holding a
//! reference to one.
//!
//! The historical design (slab frames counted, "movable" read from the
//! word the slab reuses, with or without Babka's barriers) lives in
//! `historical`, compiled only for the seed-004 mutants and the race
//! replay (feature `failpoints`): see docs/PROTOCOLS.md (ISO.2h).

#[cfg(any(memdesc_historical, feature = "failpoints"))]
pub mod historical;

use crate::buddy::{FolioRef, Node};
use crate::folio::{GetError, PageFlags, PageType};
use crate::memmap::Pfn;
use crate::sync::{AtomicU64, Ordering};
use core::fmt;

/// How many movable-ops ids the registry has (`PageType::Movable { ops }`
/// with `ops` below this).
pub const MOVABLE_OPS_MAX: usize = 8;

/// What a driver whose pages are movable supplies (Linux's `struct
/// movable_operations`, isolate and putback half): called with the folio
/// locked and counted.
pub trait MovableOps: Sync {
    /// A name for reports.
    fn name(&self) -> &'static str;
    /// Takes the page off the driver's own structures for migration;
    /// `false` if the driver cannot give it up now.
    fn isolate(&self, folio: &FolioRef<'_>) -> bool;
    /// Gives a page isolated by [`MovableOps::isolate`] back to the driver
    /// (migration did not happen).
    fn putback(&self, folio: &FolioRef<'_>);
}

/// The movable ops by id: a fixed array, filled before the scanners run.
pub struct MovableOpsRegistry<'r> {
    slots: [Option<&'r dyn MovableOps>; MOVABLE_OPS_MAX],
}

impl Default for MovableOpsRegistry<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MovableOpsRegistry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.slots.iter().map(|s| s.map(|ops| ops.name()))).finish()
    }
}

/// Why [`MovableOpsRegistry::register`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The id is not below [`MOVABLE_OPS_MAX`].
    OutOfRange(u16),
    /// The id has ops already.
    Taken(u16),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange(id) => write!(f, "movable ops id {id} is not below {MOVABLE_OPS_MAX}"),
            Self::Taken(id) => write!(f, "movable ops id {id} is registered already"),
        }
    }
}

impl core::error::Error for RegisterError {}

impl<'r> MovableOpsRegistry<'r> {
    /// An empty registry.
    pub const fn new() -> Self {
        Self { slots: [None; MOVABLE_OPS_MAX] }
    }

    /// Registers `ops` under `id`, the payload of the `PageType::Movable`
    /// its pages carry.
    ///
    /// # Errors
    /// [`RegisterError`] for an id out of range or taken.
    pub fn register(&mut self, id: u16, ops: &'r dyn MovableOps) -> Result<(), RegisterError> {
        let slot = self.slots.get_mut(usize::from(id)).ok_or(RegisterError::OutOfRange(id))?;
        if slot.is_some() {
            return Err(RegisterError::Taken(id));
        }
        *slot = Some(ops);
        Ok(())
    }

    /// The ops registered under `id`.
    pub fn get(&self, id: u16) -> Option<&'r dyn MovableOps> {
        self.slots.get(usize::from(id)).copied().flatten()
    }
}

/// Why the isolate step did not isolate a page: each step's refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsolateError {
    /// ISO.1: no reference (free, frozen — slab, page table, being split —
    /// changed folio, unmanaged, out of range).
    Get(GetError),
    /// ISO.2: the type tag is not movable.
    NotMovable(PageType),
    /// ISO.2: movable, but no ops are registered under the id.
    NoOps(u16),
    /// ISO.3: someone holds the folio lock.
    Busy,
    /// ISO.4: another scanner isolated it already.
    AlreadyIsolated,
    /// ISO.5: the driver would not give it up.
    Refused,
}

impl fmt::Display for IsolateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Get(e) => write!(f, "no reference: {e}"),
            Self::NotMovable(ty) => write!(f, "not movable (type {ty})"),
            Self::NoOps(id) => write!(f, "no movable ops registered under id {id}"),
            Self::Busy => f.write_str("the folio is locked"),
            Self::AlreadyIsolated => f.write_str("already isolated"),
            Self::Refused => f.write_str("the driver refused to isolate it"),
        }
    }
}

impl core::error::Error for IsolateError {}

/// A page taken off its driver for migration: a counted reference and the
/// ops that isolated it. Drop puts it back (ISO.6).
#[must_use = "dropping an isolated page puts it back at once"]
pub struct IsolatedPage<'n, 'r> {
    folio: FolioRef<'n>,
    ops: &'r dyn MovableOps,
}

impl<'n> IsolatedPage<'n, '_> {
    /// The isolated folio.
    pub fn folio(&self) -> &FolioRef<'n> {
        &self.folio
    }

    /// The name of the ops that isolated it.
    pub fn ops_name(&self) -> &'static str {
        self.ops.name()
    }
}

impl fmt::Debug for IsolatedPage<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsolatedPage").field("pfn", &self.folio.pfn()).field("ops", &self.ops.name()).finish()
    }
}

impl Drop for IsolatedPage<'_, '_> {
    fn drop(&mut self) {
        // A failing model unwinding: the sleeping lock would touch loom
        // objects again and abort the test binary instead of failing it.
        if crate::sync::model_unwinding() {
            return;
        }
        // ISO.6: under the lock, as the isolate ran (a sleeping lock: the
        // holder of an isolated page may wait for it).
        let locked = self.folio.lock();
        self.ops.putback(locked.folio());
        // Relaxed: under the folio lock, whose Release unlock publishes it.
        self.folio.head().flags.fetch_and(!PageFlags::ISOLATED.0, Ordering::Relaxed);
        drop(locked);
        // The reference of ISO.1 goes with `self.folio`.
    }
}

/// Isolates the movable page at `pfn` for migration (ISO.1–ISO.5), or
/// says which step refused it. No error leaves a reference, a lock or the
/// isolated flag behind.
///
/// # Errors
/// [`IsolateError`]: the step that refused.
pub fn isolate_movable_page<'n, 'r>(
    node: &'n Node<'n>,
    registry: &MovableOpsRegistry<'r>,
    pfn: Pfn,
) -> Result<IsolatedPage<'n, 'r>, IsolateError> {
    // ISO.1 (P1): frozen frames (slab, page table) refuse here.
    let folio = node.try_get(pfn).map_err(IsolateError::Get)?;

    // ISO.2 (P3): the type tag, stable while we hold the reference.
    let ops = movable_ops(node, &folio, registry)?;

    // ISO.3: never wait for a lock someone else holds.
    crate::platform::failpoint!(node.platform(), IsoTrylock);
    let locked = folio.try_lock().ok_or(IsolateError::Busy)?;

    // ISO.4: isolated by someone else? Relaxed: the flag changes only under
    // the folio lock, whose Acquire (L.1) we hold.
    if locked.folio().head().flags().contains(PageFlags::ISOLATED) {
        return Err(IsolateError::AlreadyIsolated);
    }

    // ISO.5: the driver's isolate, then the flag, under the lock.
    crate::platform::failpoint!(node.platform(), IsoOps);
    if !ops.isolate(locked.folio()) {
        return Err(IsolateError::Refused);
    }
    // Relaxed: under the folio lock; its Release unlock (L.3) publishes it
    // to the next holder, who is the only one to read it (ISO.4).
    locked.folio().head().flags.fetch_or(PageFlags::ISOLATED.0, Ordering::Relaxed);
    drop(locked);
    Ok(IsolatedPage { folio, ops })
}

/// ISO.2: the ops for a page whose reference we hold, from its type tag
/// (or, in a replay of seed 004's historical design, from the `mapping`
/// word).
fn movable_ops<'r>(
    node: &Node<'_>,
    folio: &FolioRef<'_>,
    registry: &MovableOpsRegistry<'r>,
) -> Result<&'r dyn MovableOps, IsolateError> {
    // Mutants (seed 004): the historical design, "movable" inferred from a
    // word the slab reuses instead of the type tag.
    #[cfg(memdesc_historical)]
    {
        let _ = node;
        historical::movable_ops(folio, registry)
    }
    #[cfg(not(memdesc_historical))]
    {
        // A replay answers Skip here to run the historical design.
        #[cfg(feature = "failpoints")]
        if !crate::platform::failpoint_check!(node.platform(), IsoTypeCheck) {
            return historical::movable_ops_replay(node, folio, registry);
        }
        #[cfg(not(feature = "failpoints"))]
        let _ = node;
        match folio.page_type() {
            PageType::Movable { ops } => registry.get(ops).ok_or(IsolateError::NoOps(ops)),
            ty => Err(IsolateError::NotMovable(ty)),
        }
    }
}

/// What [`scan_isolate`] met, one count per pfn tried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Pfns tried (a folio isolated or found unmovable counts once, and
    /// its other pfns are skipped).
    pub scanned: u64,
    /// Free frames (ISO.1).
    pub free: u64,
    /// Frozen slab frames: refused at ISO.1, never referenced.
    pub frozen_slab: u64,
    /// Frozen page-table frames: refused at ISO.1.
    pub frozen_page_table: u64,
    /// Other frozen folios (being split or migrated): refused at ISO.1.
    pub frozen_other: u64,
    /// Frames that are not managed memory, or a get that raced a split or
    /// free (ISO.1).
    pub other: u64,
    /// Counted but not movable (ISO.2).
    pub not_movable: u64,
    /// Isolated and handed to the caller (ISO.5).
    pub isolated: u64,
    /// Locked, isolated already, or refused by the driver (ISO.3–ISO.5).
    pub busy: u64,
}

/// Runs the isolate step over `range` (a pfn scanner's pass), handing each
/// isolated page to `keep` (drop it to put it back) and counting outcomes.
///
/// A refusal at ISO.1 is classified from a snapshot of the head's type tag
/// (an atomic word): the scanner learns that it met a slab frame without
/// holding a reference to it or reading its owner words.
pub fn scan_isolate<'n, 'r>(
    node: &'n Node<'n>,
    registry: &MovableOpsRegistry<'r>,
    range: core::ops::Range<Pfn>,
    mut keep: impl FnMut(IsolatedPage<'n, 'r>),
) -> ScanStats {
    let mut stats = ScanStats::default();
    let mut pfn = range.start;
    while pfn.0 < range.end.0 {
        stats.scanned += 1;
        let mut next = pfn.add(1);
        match isolate_movable_page(node, registry, pfn) {
            Ok(page) => {
                stats.isolated += 1;
                next = folio_end(page.folio());
                keep(page);
            }
            Err(IsolateError::Get(GetError::Free)) => stats.free += 1,
            Err(IsolateError::Get(GetError::Frozen)) => match frozen_type(node, pfn) {
                PageType::Slab { .. } => stats.frozen_slab += 1,
                PageType::PageTable => stats.frozen_page_table += 1,
                _ => stats.frozen_other += 1,
            },
            Err(IsolateError::Get(_)) => stats.other += 1,
            Err(IsolateError::NotMovable(_) | IsolateError::NoOps(_)) => stats.not_movable += 1,
            Err(IsolateError::Busy | IsolateError::AlreadyIsolated | IsolateError::Refused) => stats.busy += 1,
        }
        pfn = next;
    }
    stats
}

/// The pfn after the folio `folio` heads.
fn folio_end(folio: &FolioRef<'_>) -> Pfn {
    folio.pfn().add(folio.nr_pages())
}

/// The type tag of the head `pfn` names now: a snapshot of two atomic words
/// (compound and type), for the statistics only.
fn frozen_type(node: &Node<'_>, pfn: Pfn) -> PageType {
    let map = node.memmap();
    map.compound_head(pfn).and_then(|(head, _)| map.page(head)).map_or(PageType::Uninit, |page| page.page_type())
}

/// A movable driver for tests, models and the simulator: accepts every
/// page, counts isolations and putbacks, and checks defensively that it is
/// called only on pages of its own type, counting (and reporting) every
/// call on anything else — what Linux's ops could not do when compaction
/// called them on a slab page (seed 004).
#[derive(Debug)]
pub struct CountingOps {
    id: u16,
    isolated: AtomicU64,
    put_back: AtomicU64,
    misuse: AtomicU64,
    slab_misuse: AtomicU64,
}

/// A call of movable ops on a page that is not theirs (seed 004).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpsMisuse {
    /// The page's head.
    pub pfn: Pfn,
    /// Its type tag when the ops looked.
    pub found: PageType,
}

impl fmt::Display for OpsMisuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.found {
            PageType::Slab { .. } => write!(f, "movable ops called on a slab frame (pfn {}, {})", self.pfn, self.found),
            ty => write!(f, "movable ops called on a frame that is not movable (pfn {}, {ty})", self.pfn),
        }
    }
}

impl CountingOps {
    /// Ops for pages typed `PageType::Movable { ops: id }`.
    pub fn new(id: u16) -> Self {
        Self {
            id,
            isolated: AtomicU64::new(0),
            put_back: AtomicU64::new(0),
            misuse: AtomicU64::new(0),
            slab_misuse: AtomicU64::new(0),
        }
    }

    /// The defensive check: the page must carry this driver's type.
    ///
    /// # Errors
    /// [`OpsMisuse`] otherwise (counted).
    pub fn check(&self, folio: &FolioRef<'_>) -> Result<(), OpsMisuse> {
        let found = folio.page_type();
        if found == (PageType::Movable { ops: self.id }) {
            return Ok(());
        }
        // Relaxed: statistics, read after the scanners are joined.
        self.misuse.fetch_add(1, Ordering::Relaxed);
        if matches!(found, PageType::Slab { .. }) {
            // Relaxed: as above.
            self.slab_misuse.fetch_add(1, Ordering::Relaxed);
        }
        Err(OpsMisuse { pfn: folio.pfn(), found })
    }

    /// Pages isolated (including misuses).
    pub fn isolated(&self) -> u64 {
        // Relaxed: statistics.
        self.isolated.load(Ordering::Relaxed)
    }

    /// Pages put back.
    pub fn put_back(&self) -> u64 {
        // Relaxed: statistics.
        self.put_back.load(Ordering::Relaxed)
    }

    /// Calls on a page that was not this driver's (should stay 0).
    pub fn misuses(&self) -> u64 {
        // Relaxed: statistics.
        self.misuse.load(Ordering::Relaxed)
    }

    /// Of those, calls on a slab frame.
    pub fn slab_misuses(&self) -> u64 {
        // Relaxed: statistics.
        self.slab_misuse.load(Ordering::Relaxed)
    }
}

impl MovableOps for CountingOps {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn isolate(&self, folio: &FolioRef<'_>) -> bool {
        // A misuse is counted, and the page still "isolated" so that the
        // putback balances; the model checks and the replay report it.
        let _ = self.check(folio);
        // Relaxed: statistics.
        self.isolated.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn putback(&self, folio: &FolioRef<'_>) {
        let _ = folio;
        // Relaxed: statistics.
        self.put_back.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(memdesc_loom)))]
mod tests;

#[cfg(all(test, memdesc_loom))]
mod loom;
