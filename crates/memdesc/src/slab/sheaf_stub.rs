//! A stand-in for the per-CPU sheaves (`slab/sheaf.rs`, helper SHEAF) with
//! the same crate-private signatures: every call goes straight to the slabs.
//! The lead replaces `mod sheaf_stub` by `mod sheaf` when both branches meet.
//! TODO(#7): delete once `sheaf.rs` is merged.

use crate::platform::Platform;

/// What the per-CPU layer needs from the slabs beneath it (implemented by
/// the cache).
pub(crate) trait ObjectSource {
    /// Allocates up to `out.len()` objects from slabs, writing their
    /// addresses to `out`; returns how many (0: out of memory).
    fn refill(&self, out: &mut [usize]) -> usize;
    /// Gives `objs` back to their slabs.
    fn give_back(&self, objs: &[usize]);
}

/// One cache's per-CPU sheaves: here, none.
pub(crate) struct PerCpuSheaves {
    capacity: usize,
}

impl PerCpuSheaves {
    /// Sheaves of `capacity` objects each (unused by the stand-in).
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity }
    }

    /// Allocates one object from the slabs.
    pub(crate) fn alloc(&self, platform: &dyn Platform, src: &dyn ObjectSource) -> Option<usize> {
        let _ = (platform, self.capacity);
        let mut out = [0usize; 1];
        (src.refill(&mut out) == 1).then_some(out[0])
    }

    /// Frees one object to its slab.
    pub(crate) fn free(&self, platform: &dyn Platform, obj: usize, src: &dyn ObjectSource) {
        let _ = platform;
        src.give_back(&[obj]);
    }

    /// Nothing is cached.
    pub(crate) fn flush_local(&self, platform: &dyn Platform, src: &dyn ObjectSource) {
        let _ = (platform, src);
    }

    /// Nothing is cached.
    pub(crate) fn flush_all(&mut self, src: &dyn ObjectSource) {
        let _ = src;
    }

    /// Objects cached: none.
    pub(crate) fn cached(&self) -> usize {
        0
    }
}
