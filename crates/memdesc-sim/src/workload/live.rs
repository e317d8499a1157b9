//! A live allocation: the handle a CPU holds, and what it expects of it.

use super::stamp;
use crate::violations::Violations;
use memdesc::folio::REF_MAX;
use memdesc::{FolioRef, FrameReader, FrameWriter, FrozenFolio, Node, Order, PageType, Pfn};

/// How a CPU holds a folio: by one counted reference, or frozen.
pub(crate) enum Handle<'n> {
    /// A counted reference (refcount ≥ 1; a scanner may add transient ones).
    Counted(FolioRef<'n>),
    /// Exclusive ownership at refcount 0.
    Frozen(FrozenFolio<'n>),
}

/// A folio a CPU owns, with what it asked for and the key of its stamps.
pub(crate) struct Live<'n> {
    pub(crate) handle: Handle<'n>,
    /// The type requested.
    pub(crate) ty: PageType,
    /// The order requested (or produced by a split).
    pub(crate) order: Order,
    /// The stamp key (see [`stamp::key`]); split pieces keep their parent's.
    pub(crate) key: u64,
}

impl<'n> Live<'n> {
    /// The head frame.
    pub(crate) fn pfn(&self) -> Pfn {
        match &self.handle {
            Handle::Counted(f) => f.pfn(),
            Handle::Frozen(f) => f.pfn(),
        }
    }

    /// A read cursor over the contents.
    pub(crate) fn reader(&self) -> FrameReader<'_> {
        match &self.handle {
            Handle::Counted(f) => f.reader(),
            Handle::Frozen(f) => f.reader(),
        }
    }

    /// A write cursor over the contents (the frozen handle's needs it
    /// exclusively).
    pub(crate) fn writer(&mut self) -> FrameWriter<'_> {
        match &mut self.handle {
            Handle::Counted(f) => f.writer(),
            Handle::Frozen(f) => f.writer(),
        }
    }

    /// Whether it is held by a counted reference.
    pub(crate) fn is_counted(&self) -> bool {
        matches!(self.handle, Handle::Counted(_))
    }

    /// Checks the descriptor says what we asked for: type, order, refcount
    /// state, alignment, tails, and that the contents cover the folio.
    pub(crate) fn check_descriptor(&self, node: &Node<'_>, cpu: u32, v: &mut Violations) {
        let (ty, order, refcount) = match &self.handle {
            Handle::Counted(f) => (f.page_type(), f.order(), f.ref_count()),
            Handle::Frozen(f) => (f.page_type(), f.order(), f.head().ref_count()),
        };
        let pfn = self.pfn();
        let what = || format!("cpu{cpu}: folio {pfn} (order {}, {})", self.order, self.ty);
        if ty != self.ty {
            v.record(|| format!("{}: type is {ty}", what()));
        }
        if order != self.order {
            v.record(|| format!("{}: order is {order}", what()));
        }
        let refcount_ok = if self.is_counted() { (1..=REF_MAX).contains(&refcount) } else { refcount == 0 };
        if !refcount_ok {
            v.record(|| format!("{}: refcount {refcount}", what()));
        }
        if !pfn.is_aligned(self.order.get()) {
            v.record(|| format!("{}: head not aligned to its order", what()));
        }
        let map = node.memmap();
        if let Some(i) =
            (1..self.order.nr_pages()).find(|&i| map.page(pfn.add(i)).map(|p| p.page_type()) != Some(PageType::Tail))
        {
            v.record(|| format!("{}: frame {i} is not a tail", what()));
        }
        if self.reader().len() != stamp::bytes_in(self.order.nr_pages()) {
            v.record(|| format!("{}: contents cover {} bytes", what(), self.reader().len()));
        }
    }

    /// Checks every frame's stamps.
    pub(crate) fn check_stamps(&self, cpu: u32, v: &mut Violations) {
        if let Some(m) = stamp::first_mismatch(self.reader(), self.pfn(), self.key) {
            v.record(|| {
                format!(
                    "cpu{cpu}: folio {} (order {}, {}): stamp of frame {} word {} is {:#x}, wrote {:#x}",
                    self.pfn(),
                    self.order,
                    self.ty,
                    m.pfn,
                    m.word,
                    m.found,
                    m.expected
                )
            });
        }
    }
}

impl<'n> Live<'n> {
    /// The same allocation held by a counted reference: a frozen folio is
    /// unfrozen to refcount 1 (P2.5). A folio the core refuses to count (a
    /// slab or page table) stays frozen, which its checks then expect.
    pub(crate) fn into_counted(self) -> Live<'n> {
        let handle = match self.handle {
            Handle::Frozen(f) => match f.unfreeze(std::num::NonZeroU32::MIN) {
                Ok(counted) => Handle::Counted(counted),
                Err(refused) => Handle::Frozen(refused.folio),
            },
            counted => counted,
        };
        Live { handle, ..self }
    }
}
