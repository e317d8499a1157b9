//! Counting atomics for `--cfg memdesc_count_rmw`: `core`'s atomics behind
//! wrappers that count, per thread, every read-modify-write (`swap`,
//! `compare_exchange*`, `fetch_*`) and every `fence`: the instructions that
//! are locked (or a full barrier) on x86-64. Loads and stores pass through
//! uncounted: they are plain moves.
//!
//! A test reads [`rmw_count`] around a code path to prove it makes no locked
//! instruction (the slab's per-CPU fast path, see `slab::sheaf`). The
//! wrappers offer exactly the methods the crate uses; a new use that does
//! not compile here is a new method to add, counted if it is an RMW.

use core::sync::atomic as core_atomic;
pub(crate) use core_atomic::Ordering;

std::thread_local! {
    /// Read-modify-writes and fences this thread has made.
    static RMW_COUNT: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// Read-modify-writes (and fences) the calling thread has made so far.
#[cfg(test)]
pub(crate) fn rmw_count() -> u64 {
    RMW_COUNT.with(core::cell::Cell::get)
}

#[inline(always)]
fn count() {
    RMW_COUNT.with(|c| c.set(c.get() + 1));
}

/// `core::sync::atomic::fence`, counted.
#[inline(always)]
pub(crate) fn fence(order: Ordering) {
    count();
    core_atomic::fence(order);
}

macro_rules! counting_int {
    ($name:ident, $int:ty) => {
        #[doc = concat!("`core`'s `", stringify!($name), "`, its read-modify-writes counted.")]
        #[derive(Debug, Default)]
        #[repr(transparent)]
        pub(crate) struct $name(core_atomic::$name);

        #[allow(dead_code)] // The crate uses a different subset per type.
        impl $name {
            pub(crate) const fn new(v: $int) -> Self {
                Self(core_atomic::$name::new(v))
            }
            #[inline(always)]
            pub(crate) fn load(&self, order: Ordering) -> $int {
                self.0.load(order)
            }
            #[inline(always)]
            pub(crate) fn store(&self, v: $int, order: Ordering) {
                self.0.store(v, order)
            }
            #[inline(always)]
            pub(crate) fn get_mut(&mut self) -> &mut $int {
                self.0.get_mut()
            }
            #[inline(always)]
            pub(crate) fn into_inner(self) -> $int {
                self.0.into_inner()
            }
            #[inline(always)]
            pub(crate) fn as_ptr(&self) -> *mut $int {
                self.0.as_ptr()
            }
            #[inline(always)]
            pub(crate) fn swap(&self, v: $int, order: Ordering) -> $int {
                count();
                self.0.swap(v, order)
            }
            #[inline(always)]
            pub(crate) fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                count();
                self.0.compare_exchange(current, new, success, failure)
            }
            #[inline(always)]
            pub(crate) fn compare_exchange_weak(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                count();
                self.0.compare_exchange_weak(current, new, success, failure)
            }
            #[inline(always)]
            pub(crate) fn fetch_add(&self, v: $int, order: Ordering) -> $int {
                count();
                self.0.fetch_add(v, order)
            }
            #[inline(always)]
            pub(crate) fn fetch_sub(&self, v: $int, order: Ordering) -> $int {
                count();
                self.0.fetch_sub(v, order)
            }
            #[inline(always)]
            pub(crate) fn fetch_and(&self, v: $int, order: Ordering) -> $int {
                count();
                self.0.fetch_and(v, order)
            }
            #[inline(always)]
            pub(crate) fn fetch_or(&self, v: $int, order: Ordering) -> $int {
                count();
                self.0.fetch_or(v, order)
            }
            #[inline(always)]
            pub(crate) fn fetch_xor(&self, v: $int, order: Ordering) -> $int {
                count();
                self.0.fetch_xor(v, order)
            }
            #[inline(always)]
            pub(crate) fn fetch_max(&self, v: $int, order: Ordering) -> $int {
                count();
                self.0.fetch_max(v, order)
            }
            #[inline(always)]
            pub(crate) fn fetch_min(&self, v: $int, order: Ordering) -> $int {
                count();
                self.0.fetch_min(v, order)
            }
            #[inline(always)]
            pub(crate) fn fetch_update(
                &self,
                set_order: Ordering,
                fetch_order: Ordering,
                f: impl FnMut($int) -> Option<$int>,
            ) -> Result<$int, $int> {
                // One count per call, not per retry: the fast path must make none.
                count();
                self.0.fetch_update(set_order, fetch_order, f)
            }
        }
    };
}

counting_int!(AtomicU8, u8);
counting_int!(AtomicU32, u32);
counting_int!(AtomicI32, i32);
counting_int!(AtomicU64, u64);

/// `core`'s `AtomicPtr`, its read-modify-writes counted.
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct AtomicPtr<T>(core_atomic::AtomicPtr<T>);

#[allow(dead_code)] // The crate uses a subset.
impl<T> AtomicPtr<T> {
    pub(crate) const fn new(p: *mut T) -> Self {
        Self(core_atomic::AtomicPtr::new(p))
    }
    #[inline(always)]
    pub(crate) fn load(&self, order: Ordering) -> *mut T {
        self.0.load(order)
    }
    #[inline(always)]
    pub(crate) fn store(&self, p: *mut T, order: Ordering) {
        self.0.store(p, order)
    }
    #[inline(always)]
    pub(crate) fn swap(&self, p: *mut T, order: Ordering) -> *mut T {
        count();
        self.0.swap(p, order)
    }
    #[inline(always)]
    pub(crate) fn compare_exchange(
        &self,
        current: *mut T,
        new: *mut T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<*mut T, *mut T> {
        count();
        self.0.compare_exchange(current, new, success, failure)
    }
    #[inline(always)]
    pub(crate) fn compare_exchange_weak(
        &self,
        current: *mut T,
        new: *mut T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<*mut T, *mut T> {
        count();
        self.0.compare_exchange_weak(current, new, success, failure)
    }
}
