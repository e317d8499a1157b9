//! The slab allocator (issue 7). This branch holds only its per-CPU fast
//! path, `sheaf` (crate-private); the slab cache that implements
//! `sheaf::ObjectSource` lands beside it.

#[allow(dead_code)] // Used by the slab cache, which lands beside it.
pub(crate) mod sheaf;
