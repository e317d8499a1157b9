//! get_user_pages: references and FOLL_PIN pins on the pages behind a
//! range of user addresses (P6), taken locklessly when possible.
//!
//! # The fast path (seed 000's walker)
//! [`get_user_pages_fast`] walks the address space's tables without its
//! lock, inside an RCU read section (P5.4: no table frame it reads is freed
//! under it), reading every entry once with Acquire (P4.3). For each leaf
//! it takes, with the one P1 function ([`try_get_refs`]), one reference for
//! every page of that folio the range covers in one add, then (for PIN)
//! turns them into pins, then rechecks that the PMD and the PTEs it read
//! still hold the words it read (P6.5 / P1.5). Any failure (an empty or
//! non-present entry, a read-only entry for a write, a get that finds the
//! folio freed, frozen or moved, a recheck that sees a change) drops what
//! that step took and hands the rest of the range to the slow path.
//!
//! # The slow path
//! [`get_user_pages`] takes the address space's lock, faults each page in
//! (so a write GUP on a read-only mapping fails with
//! [`Fault::Protection`], as documented for [`GupError::Fault`]), and takes
//! the references under the lock, where no entry can change.
//!
//! # What the caller gets
//! One [`GupRun`] per folio run: a range of consecutive pages of the range
//! that lie in one folio, holding one reference or pin per page. Dropping a
//! run puts or unpins all its pages in one operation per folio (Linux's
//! `unpin_user_pages` batching). Pinned pages stay allocated, and at their
//! pfns, after `munmap` until unpinned.

#[cfg(all(test, not(memdesc_loom)))]
mod tests;

use crate::buddy::{FolioRefs, Node, PinnedFolio};
use crate::folio::{decode_compound, try_get_refs, GetError};
use crate::memmap::{FrameReader, FrameWriter, Pfn, PAGE_SIZE};
use crate::pgtable::{
    AddressSpace, Entry, Fault, Leaf, Level, MmEvent, Mmu, ENTRIES_PER_TABLE, HUGE_FRAMES, USER_END, USER_START,
};
use core::fmt;
use core::num::NonZeroU32;

const PAGE: u64 = PAGE_SIZE as u64;

/// What to take (Linux's `FOLL_*` flags that matter here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GupFlags {
    /// The caller will write the pages (`FOLL_WRITE`): the mappings must be
    /// writable.
    pub write: bool,
    /// Pin instead of plain references (`FOLL_PIN`): for DMA and other
    /// long-lived access to the pages' contents.
    pub pin: bool,
}

impl GupFlags {
    /// Plain references, read access.
    pub const GET: GupFlags = GupFlags { write: false, pin: false };
    /// Pins, read access.
    pub const PIN: GupFlags = GupFlags { write: false, pin: true };
    /// Pins, write access (direct I/O reads into the pages).
    pub const PIN_WRITE: GupFlags = GupFlags { write: true, pin: true };
}

/// Why a GUP call failed. Nothing is held on error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GupError {
    /// The start is not page-aligned.
    Unaligned(u64),
    /// No pages asked for.
    Empty,
    /// The range leaves the user address range.
    OutOfRange {
        /// First byte.
        start: u64,
        /// Pages asked for.
        nr_pages: u64,
    },
    /// The range needs more runs than the caller's buffer holds.
    BufferTooSmall {
        /// Slots in the buffer.
        slots: usize,
    },
    /// A page could not be faulted in: unmapped address, a write to a
    /// read-only mapping, or no memory.
    Fault(Fault),
    /// A folio's reference or pin count would overflow.
    Overflow(Pfn),
}

impl fmt::Display for GupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned(va) => write!(f, "address {va:#x} is not page-aligned"),
            Self::Empty => f.write_str("no pages asked for"),
            Self::OutOfRange { start, nr_pages } => {
                write!(f, "{nr_pages} pages at {start:#x} leave the user address range")
            }
            Self::BufferTooSmall { slots } => write!(f, "the range needs more than {slots} runs"),
            Self::Fault(fault) => write!(f, "cannot fault the page in: {fault}"),
            Self::Overflow(pfn) => write!(f, "folio {pfn} has too many references or pins"),
        }
    }
}

impl core::error::Error for GupError {}

/// References or pins on one folio.
#[derive(Debug)]
enum Held<'a> {
    Got(FolioRefs<'a>),
    Pinned(PinnedFolio<'a>),
}

/// Consecutive pages of a GUP range in one folio, each held once (a
/// reference or a pin). Drop releases them all in one operation.
pub struct GupRun<'m, 'a> {
    mmu: &'m Mmu<'a>,
    va: u64,
    first: Pfn,
    nr_pages: u32,
    held: Held<'a>,
}

impl fmt::Debug for GupRun<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GupRun")
            .field("va", &self.va)
            .field("first", &self.first)
            .field("nr_pages", &self.nr_pages)
            .field("pinned", &self.is_pinned())
            .finish()
    }
}

impl<'m, 'a> GupRun<'m, 'a> {
    /// The user address of the first page.
    pub fn va(&self) -> u64 {
        self.va
    }

    /// The frame of the first page; the others follow it.
    pub fn first_pfn(&self) -> Pfn {
        self.first
    }

    /// Pages in the run.
    pub fn nr_pages(&self) -> u32 {
        self.nr_pages
    }

    /// Whether the pages are pinned (FOLL_PIN) rather than referenced.
    pub fn is_pinned(&self) -> bool {
        matches!(self.held, Held::Pinned(_))
    }

    /// The folio's head pfn.
    pub fn folio_pfn(&self) -> Pfn {
        self.folio().pfn()
    }

    fn folio(&self) -> &crate::buddy::FolioRef<'a> {
        match &self.held {
            Held::Got(refs) => refs.folio(),
            Held::Pinned(pins) => pins.folio(),
        }
    }

    /// Whether the folio may be DMA-pinned (exact for a large folio; a small
    /// one may say yes falsely, as in Linux).
    pub fn maybe_dma_pinned(&self) -> bool {
        self.folio().maybe_dma_pinned()
    }

    /// The run's bytes, as a device would read them while the process may
    /// write: atomic-word cursors, never plain references.
    pub fn reader(&self) -> FrameReader<'_> {
        FrameReader::new(self.words())
    }

    /// A cursor writing the run's bytes (a device's DMA into the pages).
    pub fn writer(&self) -> FrameWriter<'_> {
        FrameWriter::new(self.words())
    }

    fn words(&self) -> &[crate::sync::FrameWord] {
        let map = self.mmu.node().memmap();
        map.frame_words(self.first, u64::from(self.nr_pages)).expect("held pages are inside the node")
    }
}

impl Drop for GupRun<'_, '_> {
    fn drop(&mut self) {
        if self.is_pinned() {
            self.mmu.count(MmEvent::Unpins, u64::from(self.nr_pages));
        }
        // The held handle's own drop puts every reference, or unpins every
        // pin, of this folio at once (P6.6).
    }
}

/// Validates a request; returns its end address.
fn check_range(start: u64, nr_pages: u64) -> Result<u64, GupError> {
    if start % PAGE != 0 {
        return Err(GupError::Unaligned(start));
    }
    if nr_pages == 0 {
        return Err(GupError::Empty);
    }
    nr_pages
        .checked_mul(PAGE)
        .and_then(|len| start.checked_add(len))
        .filter(|&end| start >= USER_START && end <= USER_END)
        .ok_or(GupError::OutOfRange { start, nr_pages })
}

/// Turns `refs` into what `flags` asks for.
fn hold(refs: FolioRefs<'_>, flags: GupFlags) -> Result<Held<'_>, GupError> {
    if !flags.pin {
        return Ok(Held::Got(refs));
    }
    refs.into_pins().map(Held::Pinned).map_err(|e| {
        let (refs, _) = e.into_parts();
        GupError::Overflow(refs.folio().pfn())
    })
}

/// Puts `run` into the next free slot of `out`, counting its pins as
/// acquired (their drop counts them released, whichever way it comes).
fn push<'m, 'a>(out: &mut [Option<GupRun<'m, 'a>>], filled: &mut usize, run: GupRun<'m, 'a>) -> Result<(), GupError> {
    // Counted first: a run refused for want of a slot is dropped here, and
    // its drop counts the release.
    if run.is_pinned() {
        run.mmu.count(MmEvent::Pins, u64::from(run.nr_pages));
    }
    let slots = out.len();
    let slot = out.get_mut(*filled).ok_or(GupError::BufferTooSmall { slots })?;
    *slot = Some(run);
    *filled += 1;
    Ok(())
}

/// Releases the first `filled` runs of `out` (an error path: nothing held).
fn release(out: &mut [Option<GupRun<'_, '_>>], filled: usize) {
    for slot in &mut out[..filled] {
        *slot = None;
    }
}

/// Takes references (or pins) on the `nr_pages` pages from `start`, into
/// `out` (one run per folio run; slots after the last run used are left as
/// they were). Tries the lockless walk first and finishes with the slow
/// path from the first page the fast path could not take. Returns the
/// number of runs filled.
///
/// # Errors
/// [`GupError`]; on error nothing is held and `out` is left empty up to
/// where it was filled.
pub fn get_user_pages_fast<'m, 'a>(
    aspace: &AddressSpace<'m, 'a>,
    start: u64,
    nr_pages: u64,
    flags: GupFlags,
    out: &mut [Option<GupRun<'m, 'a>>],
) -> Result<usize, GupError> {
    let end = check_range(start, nr_pages)?;
    let mmu = aspace.mmu();
    let mut filled = 0;
    let fast_end = fast_path(aspace, start, end, flags, out, &mut filled).inspect_err(|_| release(out, filled))?;
    if fast_end == end {
        mmu.count(MmEvent::GupFast, 1);
    } else {
        mmu.count(MmEvent::GupFastFallback, 1);
        slow_path(aspace, fast_end, end, flags, out, &mut filled).inspect_err(|_| release(out, filled))?;
    }
    Ok(filled)
}

/// [`get_user_pages_fast`] without the lockless walk: the slow path alone
/// (Linux's `get_user_pages`/`pin_user_pages`).
///
/// # Errors
/// As [`get_user_pages_fast`].
pub fn get_user_pages<'m, 'a>(
    aspace: &AddressSpace<'m, 'a>,
    start: u64,
    nr_pages: u64,
    flags: GupFlags,
    out: &mut [Option<GupRun<'m, 'a>>],
) -> Result<usize, GupError> {
    let end = check_range(start, nr_pages)?;
    let mut filled = 0;
    slow_path(aspace, start, end, flags, out, &mut filled).inspect_err(|_| release(out, filled))?;
    Ok(filled)
}

/// The lockless walk (P6.1–P6.5); returns where it stopped (`end` if it
/// took every page).
fn fast_path<'m, 'a>(
    aspace: &AddressSpace<'m, 'a>,
    start: u64,
    end: u64,
    flags: GupFlags,
    out: &mut [Option<GupRun<'m, 'a>>],
    filled: &mut usize,
) -> Result<u64, GupError> {
    let mmu = aspace.mmu();
    let node = mmu.node();
    // P5.4 / P6.1: no table frame read below is freed before this ends.
    let section = mmu.rcu().read_lock();
    let mut va = start;
    while va < end {
        crate::platform::failpoint!(node.platform(), GupWalk);
        let Some(leaf) = aspace.walk(&section, va) else { break };
        let Entry::Page { pfn, prot, huge } = leaf.entry else { break };
        if !prot.user || (flags.write && !prot.write) {
            break;
        }
        // The pages of this leaf's folio the range covers: up to the end of
        // the huge page for a PMD leaf; for PTEs, the following entries of
        // the same table that map the following frames with the same
        // permissions (a PTE-mapped large folio), checked again after the
        // get.
        let (first, nr) = if huge {
            let offset = (va / PAGE) % HUGE_FRAMES;
            (pfn.add(offset), (HUGE_FRAMES - offset).min((end - va) / PAGE))
        } else {
            (pfn, contiguous_ptes(aspace, &leaf, va, end))
        };
        let refs = NonZeroU32::new(nr as u32).expect("at least the leaf's page");
        // P6.2 / P1.1–P1.4: one add for every page of the run.
        let mut got = match try_get_refs(node, first, refs, |_| true) {
            Ok(got) => got,
            Err(GetError::Overflow) => return Err(GupError::Overflow(first)),
            Err(_) => break,
        };
        // A PTE run may cross into another folio: keep the pages inside the
        // one we counted. P1.4 guarantees `first` is inside it (no second
        // check here: the P1 function is the one audited place).
        let folio = got.folio();
        let inside = (folio.pfn().0 + folio.nr_pages()).saturating_sub(first.0).clamp(1, nr);
        let inside = NonZeroU32::new(inside as u32).expect("clamped to at least one");
        if inside.get() < refs.get() {
            drop(got.split_off(NonZeroU32::new(refs.get() - inside.get()).expect("fewer inside")));
        }
        let held = hold(got, flags)?;
        // P6.5 / P1.5: the entries still map what we counted; a change means
        // an unmap, split or free raced us, and the slow path decides.
        if crate::platform::failpoint_check!(node.platform(), GupRecheck) && !still_mapped(aspace, &leaf, inside.get())
        {
            drop(held);
            break;
        }
        push(out, filled, GupRun { mmu, va, first, nr_pages: inside.get(), held })?;
        va += u64::from(inside.get()) * PAGE;
    }
    Ok(va)
}

/// How many PTEs from `leaf` on (up to `end`, the table's end and the end
/// of the folio the first page seems to belong to) map consecutive frames
/// with the same permissions. The folio's extent is read speculatively,
/// from the compound words before any reference is held: it only bounds
/// the scan (an order-0 folio scans nothing); the run is clamped to the
/// folio actually counted after the get (P6.10).
fn contiguous_ptes(aspace: &AddressSpace<'_, '_>, leaf: &Leaf, va: u64, end: u64) -> u64 {
    let Entry::Page { pfn, prot, .. } = leaf.entry else { return 1 };
    let map = aspace.mmu().node().memmap();
    let folio_left = map.page(pfn).map_or(1, |page| {
        let (head, order) = decode_compound(pfn, page.compound_word());
        let order = order.or_else(|| map.page(head).and_then(|h| decode_compound(head, h.compound_word()).1));
        (head.0 + (1u64 << order.map_or(0, |o| o.get()))).saturating_sub(pfn.0).max(1)
    });
    let in_table = (ENTRIES_PER_TABLE as u64 - leaf.index as u64).min((end - va) / PAGE).min(folio_left);
    let store = &aspace.mmu().store;
    let mut nr = 1;
    while nr < in_table {
        // P4.3 on the same PTE table: the next entry, read once.
        let word = store.load_word(leaf.table, leaf.index + nr as usize);
        match Entry::decode(word, Level::Pte) {
            Entry::Page { pfn: next, prot: p, huge: false }
                if next == pfn.add(nr) && p.write == prot.write && p.user == prot.user => {}
            _ => break,
        }
        nr += 1;
    }
    nr
}

/// P6.5: rereads the PMD entry and every PTE of the run; true if each
/// still maps what the walk read (the accessed and dirty bits aside, which
/// the MMU may set meanwhile).
fn still_mapped(aspace: &AddressSpace<'_, '_>, leaf: &Leaf, nr: u32) -> bool {
    // Mutant: no recheck after the get (seed 000's missing PTE recheck).
    if cfg!(memdesc_mutant = "no_gup_recheck") {
        return true;
    }
    let store = &aspace.mmu().store;
    let same = |word: u64, level: Level, want: Entry| match (Entry::decode(word, level), want) {
        (Entry::Page { pfn, prot, huge }, Entry::Page { pfn: p, prot: q, huge: h }) => {
            pfn == p && huge == h && prot.write == q.write && prot.user == q.user
        }
        (Entry::Table(t), Entry::Table(u)) => t == u,
        _ => false,
    };
    let pmd_now = store.load_word(leaf.pmd.0, leaf.pmd.1);
    if !same(pmd_now, Level::Pmd, Entry::decode(leaf.pmd_word, Level::Pmd)) {
        return false;
    }
    let Entry::Page { pfn, prot, huge } = leaf.entry else { return false };
    huge || (0..nr).all(|i| {
        let word = store.load_word(leaf.table, leaf.index + i as usize);
        same(word, Level::Pte, Entry::Page { pfn: pfn.add(u64::from(i)), prot, huge: false })
    })
}

/// The slow path: under the address space's lock, fault each page in and
/// take it.
fn slow_path<'m, 'a>(
    aspace: &AddressSpace<'m, 'a>,
    start: u64,
    end: u64,
    flags: GupFlags,
    out: &mut [Option<GupRun<'m, 'a>>],
    filled: &mut usize,
) -> Result<(), GupError> {
    let mmu = aspace.mmu();
    mmu.count(MmEvent::GupSlow, 1);
    let node: &'a Node<'a> = mmu.node();
    crate::platform::failpoint!(node.platform(), GupSlowPath);
    let mut va = start;
    while va < end {
        let taken = aspace
            .with_mapped(va, flags.write, |leaf| {
                let Entry::Page { pfn, huge, .. } = leaf.entry else {
                    unreachable!("with_mapped gives present leaves")
                };
                let (first, nr) = if huge {
                    let offset = (va / PAGE) % HUGE_FRAMES;
                    (pfn.add(offset), (HUGE_FRAMES - offset).min((end - va) / PAGE))
                } else {
                    (pfn, 1)
                };
                // Under the lock the leaf's own reference keeps the folio;
                // the P1 function cannot fail but on overflow.
                (first, nr, try_get_refs(node, first, NonZeroU32::new(nr as u32).expect("one page"), |_| true))
            })
            .map_err(GupError::Fault)?;
        let (first, nr, refs) = taken;
        let refs = refs.map_err(|_| GupError::Overflow(first))?;
        let held = hold(refs, flags)?;
        push(out, filled, GupRun { mmu, va, first, nr_pages: nr as u32, held })?;
        va += nr * PAGE;
    }
    Ok(())
}

#[cfg(all(test, memdesc_loom))]
mod loom;
