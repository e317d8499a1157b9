//! Virtual memory areas: the mapped ranges of an address space, in a fixed
//! array (the core has no heap), sorted and never overlapping.

/// Most areas one address space may have.
pub const MAX_VMAS: usize = 64;

/// One mapped range `start..end` (page-aligned) and what it allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vma {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Writes allowed.
    pub write: bool,
    /// Faults may map 2 MiB folios where an aligned 2 MiB fits.
    pub thp: bool,
}

/// The sorted areas.
#[derive(Clone, Debug)]
pub(crate) struct Vmas {
    list: [Vma; MAX_VMAS],
    len: usize,
}

/// The area table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooManyVmas;

impl Vmas {
    pub(crate) const fn new() -> Self {
        Self { list: [Vma { start: 0, end: 0, write: false, thp: false }; MAX_VMAS], len: 0 }
    }

    pub(crate) fn as_slice(&self) -> &[Vma] {
        &self.list[..self.len]
    }

    /// The area containing `va`.
    pub(crate) fn find(&self, va: u64) -> Option<Vma> {
        let i = self.as_slice().partition_point(|v| v.end <= va);
        self.as_slice().get(i).filter(|v| v.start <= va).copied()
    }

    /// Whether any area overlaps `start..end`.
    pub(crate) fn overlaps(&self, start: u64, end: u64) -> bool {
        self.as_slice().iter().any(|v| v.start < end && start < v.end)
    }

    /// The lowest gap of `len` bytes at `align` alignment in `lo..hi`.
    pub(crate) fn find_gap(&self, len: u64, align: u64, lo: u64, hi: u64) -> Option<u64> {
        let mut candidate = lo.next_multiple_of(align);
        for v in self.as_slice() {
            if candidate.checked_add(len)? <= v.start {
                break;
            }
            candidate = candidate.max(v.end.next_multiple_of(align));
        }
        (candidate.checked_add(len)? <= hi).then_some(candidate)
    }

    /// Inserts `vma`, which overlaps no area.
    pub(crate) fn insert(&mut self, vma: Vma) -> Result<(), TooManyVmas> {
        debug_assert!(!self.overlaps(vma.start, vma.end));
        if self.len == MAX_VMAS {
            return Err(TooManyVmas);
        }
        let i = self.as_slice().partition_point(|v| v.end <= vma.start);
        self.list.copy_within(i..self.len, i + 1);
        self.list[i] = vma;
        self.len += 1;
        Ok(())
    }

    /// How many more slots rewriting `start..end` may need (a cut inside an
    /// area splits it in two).
    fn slots_needed(&self, start: u64, end: u64) -> usize {
        self.as_slice().iter().filter(|v| v.start < start && end < v.end).count()
    }

    /// Applies `f` to the parts of areas inside `start..end`, splitting the
    /// areas at the edges; `f` returning `None` removes the part.
    pub(crate) fn rewrite(&mut self, start: u64, end: u64, f: impl Fn(Vma) -> Option<Vma>) -> Result<(), TooManyVmas> {
        if self.len + self.slots_needed(start, end) > MAX_VMAS {
            return Err(TooManyVmas);
        }
        let mut out = [Vma::default(); MAX_VMAS];
        let mut n = 0;
        let mut push = |v: Vma| {
            // Merge with an equal neighbour, as Linux's vma_merge would.
            if n > 0 {
                let last: &mut Vma = &mut out[n - 1];
                if last.end == v.start && last.write == v.write && last.thp == v.thp {
                    last.end = v.end;
                    return;
                }
            }
            out[n] = v;
            n += 1;
        };
        for &v in self.as_slice() {
            if v.end <= start || end <= v.start {
                push(v);
                continue;
            }
            if v.start < start {
                push(Vma { end: start, ..v });
            }
            if let Some(inner) = f(Vma { start: v.start.max(start), end: v.end.min(end), ..v }) {
                push(inner);
            }
            if end < v.end {
                push(Vma { start: end, ..v });
            }
        }
        self.list = out;
        self.len = n;
        Ok(())
    }
}
