//! The slab's per-CPU fast path: sheaves and a barn (Linux 7.0's design).
//!
//! Each CPU has a *main* and a *spare* sheaf: fixed-capacity arrays of free
//! object addresses. An allocation pops from the main sheaf, a free pushes
//! onto it, under the CPU's *local trylock*: a word only that CPU touches, so
//! taking it is a plain load and store, never a read-modify-write (Linux's
//! `local_trylock` on !PREEMPT_RT). With [`Platform::local_enter`] making the
//! CPU's state exclusive, the common pair makes **no locked instruction**
//! (the `memdesc_count_rmw` test below counts them).
//!
//! The slow paths, in order:
//! - alloc, main empty: swap with the spare if it holds objects; else trade
//!   the empty main for a full sheaf of the *barn*; else [`ObjectSource::refill`].
//! - free, main full: swap with the spare if it has room; else trade the full
//!   main for an empty sheaf of the barn; else [`ObjectSource::give_back`] the
//!   main's objects as one batch.
//!
//! The barn is shared by the node's CPUs behind a [`SpinLock`]: up to
//! [`BARN_SHEAVES`] sheaves, the full ones holding objects and the rest being
//! its empty sheaves. A trade copies addresses between the CPU's sheaf and a
//! barn sheaf (at most [`SHEAF_CAPACITY`] words, on a path that already takes
//! a lock), so a CPU's sheaves stay in its own cache lines.
//!
//! A thread with no CPU (`local_enter` is `None`), or a re-entry on a CPU
//! whose local lock is held (an interrupt in a kernel), goes straight to the
//! source: the *fallback* path, which is the slabs' own locked path. A free
//! on another CPU than the allocation's (a *remote* free) is an ordinary free
//! onto the freeing CPU's sheaf; objects return to their slabs through the
//! barn or a give-back. Nothing here touches an object's memory.
//!
//! Flushing (see [`PerCpuSheaves::flush_local`]): the calling CPU's sheaves
//! and the barn go back at once; every other CPU is sent a request that it
//! honours at its next slow path; [`PerCpuSheaves::flush_all`] (exclusive)
//! returns everything. docs/PROTOCOLS.md, section SHEAF, numbers the steps.

use crate::buddy::MAX_CPUS;
use crate::platform::{LocalCpu, Platform};
use crate::sync::{compiler_fence, AtomicU32, Ordering, SpinLock, StatWord, UnsafeCell};

#[cfg(all(test, memdesc_loom))]
mod loom;
#[cfg(all(test, not(memdesc_loom)))]
mod tests;

/// Most objects one sheaf holds; a cache picks its capacity up to this
/// (64 for small objects, as Linux's sheaves of small caches). A CPU's slot
/// (two sheaves of 64 addresses and a length each, the lock, flag and
/// statistics words) is 17 cache lines; a cache's slots are sized by the
/// platform's CPU count, in frames of their own ([`PerCpuSheaves::in_storage`]).
pub(crate) const SHEAF_CAPACITY: usize = 64;

/// Sheaves in a barn, full and empty together: with two sheaves per CPU,
/// 18 sheaves of 64 hold a batch of 1000 small objects without a trip to
/// the slabs. One under the model, so two CPUs fill it at once and a free
/// reaches the give-back path.
pub(crate) const BARN_SHEAVES: usize = if cfg!(memdesc_loom) { 1 } else { 16 };

/// What the per-CPU layer needs from the slabs beneath it (implemented by the
/// slab cache).
pub(crate) trait ObjectSource {
    /// Allocates up to `out.len()` objects from slabs (node partial lists,
    /// new slabs), writing their addresses to `out`; returns how many (0:
    /// out of memory).
    fn refill(&self, out: &mut [usize]) -> usize;

    /// Gives `objs` back to their slabs (the objects are free).
    fn give_back(&self, objs: &[usize]);
}

/// A fixed-capacity stack of free objects' addresses.
#[derive(Clone, Copy)]
pub(crate) struct Sheaf {
    len: usize,
    objs: [usize; SHEAF_CAPACITY],
}

impl Sheaf {
    const EMPTY: Sheaf = Sheaf { len: 0, objs: [0; SHEAF_CAPACITY] };

    #[inline(always)]
    fn pop(&mut self) -> Option<usize> {
        self.len = self.len.checked_sub(1)?;
        Some(self.objs[self.len])
    }

    /// The object the next pop returns.
    #[inline(always)]
    fn top(&self) -> Option<usize> {
        self.len.checked_sub(1).map(|i| self.objs[i])
    }

    /// Pushes `obj`; the caller has checked there is room.
    #[inline(always)]
    fn push(&mut self, obj: usize) {
        self.objs[self.len] = obj;
        self.len += 1;
    }

    fn objects(&self) -> &[usize] {
        &self.objs[..self.len]
    }

    /// Makes this sheaf a copy of `from` (only its objects are copied).
    fn copy_from(&mut self, from: &Sheaf) {
        self.objs[..from.len].copy_from_slice(from.objects());
        self.len = from.len;
    }

    /// Gives every object back to `src`, leaving the sheaf empty: sorted
    /// by address first, outside the source's lock, so each slab's objects
    /// form one run the source returns in one update (objects freed in
    /// random order would otherwise mostly be runs of one).
    fn give_back(&mut self, src: &dyn ObjectSource) {
        if self.len > 0 {
            self.objs[..self.len].sort_unstable();
            src.give_back(self.objects());
            self.len = 0;
        }
    }
}

/// One CPU's two sheaves, reached only under its local lock.
struct CpuState {
    main: Sheaf,
    spare: Sheaf,
}

impl CpuState {
    fn cached(&self) -> usize {
        self.main.len + self.spare.len
    }

    fn flush(&mut self, src: &dyn ObjectSource) {
        self.main.give_back(src);
        self.spare.give_back(src);
    }
}

/// One CPU's slot, on cache lines of its own: the fast path writes only
/// here.
#[repr(align(64))]
pub(crate) struct CpuSheaves {
    /// The local trylock: 1 while this CPU is inside `alloc`/`free`/`flush_local`.
    /// Only this CPU (and what interrupts it) touches it (SHEAF.2).
    local_lock: AtomicU32,
    /// 1: another CPU asked this one to flush its sheaves at its next slow
    /// path (SHEAF.7).
    flush_requested: AtomicU32,
    /// Objects in `sheaves`, stored by the owner after each change, for
    /// [`PerCpuSheaves::cached`] (never read by the protocol).
    cached: StatWord,
    sheaves: UnsafeCell<CpuState>,
}

// SAFETY: `sheaves` is reached only by the thread running as this CPU,
// while it holds a `LocalCpu` token for it and under the local lock
// (SHEAF.1–2), or through `&mut PerCpuSheaves`; the other fields are
// atomics. Soundness thus rests on `LocalCpu::new_unchecked`'s contract (one
// thread per CPU until `local_exit`), which a platform accepts in `unsafe`
// code, as a kernel's per-CPU data rests on disabled preemption.
unsafe impl Sync for CpuSheaves {}

impl CpuSheaves {
    fn new() -> Self {
        Self {
            local_lock: AtomicU32::new(0),
            flush_requested: AtomicU32::new(0),
            cached: StatWord::new(0),
            sheaves: UnsafeCell::new(CpuState { main: Sheaf::EMPTY, spare: Sheaf::EMPTY }),
        }
    }

    /// SHEAF.2: takes the local lock unless this CPU already holds it (a
    /// re-entry), which then takes the fallback path.
    #[inline(always)]
    fn try_lock_local(&self) -> bool {
        // Relaxed: only this CPU reads or writes the word (the LocalCpu
        // token's contract); a re-entry on this CPU runs in program order with us.
        if self.local_lock.load(Ordering::Relaxed) != 0 {
            return false;
        }
        // Relaxed: as above; no other CPU ever sees this store.
        self.local_lock.store(1, Ordering::Relaxed);
        // Acquire: a signal fence, pairs with the Release one in
        // unlock_local: the compiler keeps our sheaf accesses after the lock
        // word is set, where an interrupt on this CPU would see it held.
        compiler_fence(Ordering::Acquire);
        true
    }

    /// SHEAF.4: releases the local lock.
    #[inline(always)]
    fn unlock_local(&self) {
        // Release: a signal fence, pairs with the Acquire one in
        // try_lock_local: our sheaf accesses stay before the unlock.
        compiler_fence(Ordering::Release);
        // Relaxed: only this CPU reads the word.
        self.local_lock.store(0, Ordering::Relaxed);
    }

    /// Runs `f` on this CPU's sheaves, under its local lock, and records
    /// how many objects they hold.
    #[inline(always)]
    fn with_locked<R>(&self, f: impl FnOnce(&mut CpuState) -> R) -> R {
        self.sheaves.with_mut(|state| {
            // Other CPUs never touch the state (only the flag), and
            // `flush_all` has `&mut self`.
            // SAFETY: the caller holds this CPU's LocalCpu token and its
            // local lock (SHEAF.2): the only reference to the state.
            let state = unsafe { &mut *state };
            let r = f(state);
            // Relaxed: a statistic for `cached`, ordering nothing.
            self.cached.store(state.cached() as u64, Ordering::Relaxed);
            r
        })
    }
}

/// The barn: sheaves shared by the node's CPUs, behind the barn lock.
struct Barn<'s> {
    /// `full[..nr_full]` hold objects; the others are empty sheaves.
    full: &'s mut [Sheaf],
    nr_full: usize,
}

impl Barn<'_> {
    /// Trades the (empty) `into` for a full sheaf, if the barn has one.
    fn take_full(&mut self, into: &mut Sheaf) -> bool {
        let Some(last) = self.nr_full.checked_sub(1) else {
            return false;
        };
        into.copy_from(&self.full[last]);
        self.full[last].len = 0;
        self.nr_full = last;
        true
    }

    /// Trades the full `from` for an empty sheaf, if the barn has one.
    fn put_full(&mut self, from: &mut Sheaf) -> bool {
        if self.nr_full == self.full.len() {
            return false;
        }
        self.full[self.nr_full].copy_from(from);
        self.nr_full += 1;
        from.len = 0;
        true
    }

    fn cached(&self) -> usize {
        self.full[..self.nr_full].iter().map(|s| s.len).sum()
    }
}

/// One cache's per-CPU sheaves (a main and a spare per CPU) and its barn.
///
/// No heap: the slots and the barn's sheaves live in storage the cache
/// took from its node ([`PerCpuSheaves::in_storage`]), sized by the
/// platform's CPU count. Objects still cached when it is dropped are not
/// given back: call [`PerCpuSheaves::flush_all`] first.
pub(crate) struct PerCpuSheaves<'s> {
    /// One slot per CPU of the platform (at most [`MAX_CPUS`]); a CPU past
    /// them takes the fallback path.
    cpus: &'s [CpuSheaves],
    barn: SpinLock<Barn<'s>>,
    /// Objects per sheaf, `1..=SHEAF_CAPACITY`.
    capacity: usize,
}

/// [`PerCpuSheaves`] with the heap storage it borrows (tests and models):
/// dereferences to the sheaves, and frees the storage after them.
#[cfg(test)]
pub(crate) struct OwnedSheaves {
    sheaves: core::mem::ManuallyDrop<PerCpuSheaves<'static>>,
    cpus: *mut [CpuSheaves],
    full: *mut [Sheaf],
}

#[cfg(test)]
impl core::ops::Deref for OwnedSheaves {
    type Target = PerCpuSheaves<'static>;
    fn deref(&self) -> &PerCpuSheaves<'static> {
        &self.sheaves
    }
}

#[cfg(test)]
impl core::ops::DerefMut for OwnedSheaves {
    fn deref_mut(&mut self) -> &mut PerCpuSheaves<'static> {
        &mut self.sheaves
    }
}

// SAFETY: the raw pointers are the storage the (Sync) sheaves borrow,
// touched only by drop.
#[cfg(test)]
unsafe impl Sync for OwnedSheaves {}
// SAFETY: as for Sync.
#[cfg(test)]
unsafe impl Send for OwnedSheaves {}

#[cfg(test)]
impl Drop for OwnedSheaves {
    fn drop(&mut self) {
        // SAFETY: the sheaves are dropped once, here, before their storage;
        // the storage came from Box::into_raw in `PerCpuSheaves::owned` and is
        // freed once; no borrow of it outlives `self`.
        unsafe {
            core::mem::ManuallyDrop::drop(&mut self.sheaves);
            drop(std::boxed::Box::from_raw(self.cpus));
            drop(std::boxed::Box::from_raw(self.full));
        }
    }
}

/// Where a cache's per-CPU storage puts the barn's sheaves: after the
/// slots (a multiple of their 64-byte alignment, which a sheaf's 8 divides).
const fn barn_offset(nr_cpus: usize) -> usize {
    nr_cpus * size_of::<CpuSheaves>()
}

impl<'s> PerCpuSheaves<'s> {
    /// Bytes of storage [`PerCpuSheaves::in_storage`] needs for `nr_cpus`
    /// CPUs: their slots, then the barn's sheaves.
    pub(crate) const fn storage_bytes(nr_cpus: usize) -> usize {
        barn_offset(nr_cpus) + BARN_SHEAVES * size_of::<Sheaf>()
    }

    /// Empty sheaves for `nr_cpus` CPUs (clamped to `1..=MAX_CPUS`), each
    /// holding up to `capacity` objects (clamped to `1..=SHEAF_CAPACITY`),
    /// built in `storage`.
    ///
    /// # Safety
    /// 1. `storage` is aligned to 64 bytes and valid for reads and writes of
    ///    [`PerCpuSheaves::storage_bytes`]`(nr_cpus)` bytes for `'s`, and
    ///    nothing else uses those bytes during `'s` (frames the cache took
    ///    frozen from its node and gives back only after dropping this).
    pub(crate) unsafe fn in_storage(capacity: usize, nr_cpus: usize, storage: core::ptr::NonNull<u8>) -> Self {
        let nr_cpus = nr_cpus.clamp(1, MAX_CPUS);
        let slots = storage.cast::<CpuSheaves>();
        // SAFETY: duty 1: the barn's sheaves start inside the storage; the
        // offset is a multiple of 64, which Sheaf's alignment divides.
        let sheaves = unsafe { storage.add(barn_offset(nr_cpus)) }.cast::<Sheaf>();
        for i in 0..nr_cpus {
            // SAFETY: duty 1: slot `i` lies inside the storage, aligned (the
            // storage is 64-aligned and a slot is 64 bytes times n), and is
            // ours to write.
            unsafe { slots.add(i).write(CpuSheaves::new()) };
        }
        for i in 0..BARN_SHEAVES {
            // SAFETY: duty 1: sheaf `i` lies inside the storage, after the
            // slots, aligned as said above.
            unsafe { sheaves.add(i).write(Sheaf::EMPTY) };
        }
        // SAFETY: duty 1: both runs were initialised just above, lie in
        // storage valid and ours for 's, and do not overlap; the slots are
        // only shared from here on, the sheaves only reached by this `&mut`.
        let (cpus, full) = unsafe {
            (
                core::slice::from_raw_parts(slots.as_ptr(), nr_cpus),
                core::slice::from_raw_parts_mut(sheaves.as_ptr(), BARN_SHEAVES),
            )
        };
        Self { cpus, barn: SpinLock::new(Barn { full, nr_full: 0 }), capacity: capacity.clamp(1, SHEAF_CAPACITY) }
    }

    /// Sheaves for [`MAX_CPUS`] CPUs in heap storage they own (tests and
    /// models).
    #[cfg(test)]
    pub(crate) fn owned(capacity: usize) -> OwnedSheaves {
        let cpus: std::boxed::Box<[CpuSheaves]> = (0..MAX_CPUS).map(|_| CpuSheaves::new()).collect();
        let full: std::boxed::Box<[Sheaf]> = (0..BARN_SHEAVES).map(|_| Sheaf::EMPTY).collect();
        let (cpus, full) = (std::boxed::Box::into_raw(cpus), std::boxed::Box::into_raw(full));
        // SAFETY: both boxes were just given up and are taken back only by
        // OwnedSheaves' drop, after the sheaves that borrow them.
        let (cpu_slice, full_slice) = unsafe { (&*cpus, &mut *full) };
        let sheaves = PerCpuSheaves {
            cpus: cpu_slice,
            barn: SpinLock::new(Barn { full: full_slice, nr_full: 0 }),
            capacity: capacity.clamp(1, SHEAF_CAPACITY),
        };
        OwnedSheaves { sheaves: core::mem::ManuallyDrop::new(sheaves), cpus, full }
    }

    /// Objects per sheaf.
    #[cfg(all(test, not(memdesc_loom)))]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Allocates an object: from the calling CPU's main sheaf with no atomic
    /// read-modify-write and no lock (SHEAF.1–4); from the spare, the barn
    /// or `src` when it is empty (SHEAF.5); from `src` directly on the
    /// fallback path (SHEAF.8). `None`: `src` is out of objects.
    #[inline(always)]
    pub(crate) fn alloc(&self, platform: &dyn Platform, src: &dyn ObjectSource) -> Option<usize> {
        // SHEAF.1
        let Some(cpu) = platform.local_enter() else {
            return Self::alloc_fallback(src);
        };
        let obj = self.alloc_on(&cpu, src);
        platform.local_exit(cpu);
        obj
    }

    /// [`Self::alloc`] inside a section the caller opened (SHEAF.2–5, 8):
    /// `cpu` is the token of SHEAF.1, from the platform of this cache's
    /// node (the caller's duty, `CacheRef::alloc_on`'s).
    #[inline(always)]
    pub(crate) fn alloc_on(&self, cpu: &LocalCpu, src: &dyn ObjectSource) -> Option<usize> {
        match self.cpus.get(cpu.cpu().index()) {
            Some(slot) if slot.try_lock_local() => {
                // SHEAF.3
                let obj = slot.with_locked(|state| match state.main.pop() {
                    Some(obj) => Some(obj),
                    None => self.alloc_slow(slot, state, src),
                });
                slot.unlock_local();
                obj
            }
            _ => Self::alloc_fallback(src),
        }
    }

    /// Frees `obj` (an object of this cache, not cached anywhere): onto the
    /// calling CPU's main sheaf with no atomic read-modify-write and no lock
    /// (SHEAF.1–4); onto the spare or the barn, or back to `src`, when the
    /// main sheaf is full (SHEAF.6); to `src` directly on the fallback path
    /// (SHEAF.8). Returns `false`, freeing nothing, when `obj` is the
    /// main sheaf's top already: the cheap double-free check of a free
    /// repeated before the next allocation on this CPU (SLUB's hardened
    /// freelist makes the same one); other double frees are found only by
    /// debug caches.
    #[inline(always)]
    pub(crate) fn free(&self, platform: &dyn Platform, obj: usize, src: &dyn ObjectSource) -> bool {
        // SHEAF.1
        let Some(cpu) = platform.local_enter() else {
            Self::free_fallback(obj, src);
            return true;
        };
        let freed = self.free_on(&cpu, obj, src);
        platform.local_exit(cpu);
        freed
    }

    /// [`Self::free`] inside a section the caller opened (SHEAF.2–4, 6, 8),
    /// with `cpu` as in [`Self::alloc_on`]; `false` as in [`Self::free`].
    #[inline(always)]
    pub(crate) fn free_on(&self, cpu: &LocalCpu, obj: usize, src: &dyn ObjectSource) -> bool {
        match self.cpus.get(cpu.cpu().index()) {
            Some(slot) if slot.try_lock_local() => {
                // SHEAF.3
                let freed = slot.with_locked(|state| {
                    if state.main.top() == Some(obj) {
                        false
                    } else if state.main.len < self.capacity {
                        state.main.push(obj);
                        true
                    } else {
                        self.free_slow(slot, state, obj, src);
                        true
                    }
                });
                slot.unlock_local();
                freed
            }
            _ => {
                Self::free_fallback(obj, src);
                true
            }
        }
    }

    /// Flushes the calling CPU's sheaves and every full sheaf of the barn
    /// into `src`, and asks every other CPU to flush its own at its next
    /// slow path (SHEAF.7).
    ///
    /// What a shrinker can rely on: when this returns, the objects that
    /// were in the caller's sheaves and in the barn when it started are back
    /// in `src` (unless the caller has no CPU or re-entered its own CPU: then
    /// its CPU too is only asked); each other CPU keeps at most two sheaves
    /// of objects until its next alloc or free that leaves the main sheaf
    /// (empty main on alloc, full main on free), which flushes them. Objects
    /// freed meanwhile may be cached again. Only [`Self::flush_all`] empties
    /// everything.
    pub(crate) fn flush_local(&self, platform: &dyn Platform, src: &dyn ObjectSource) {
        let own = platform.local_enter();
        let nr_cpus = (platform.nr_cpus() as usize).min(self.cpus.len());
        for (index, slot) in self.cpus[..nr_cpus].iter().enumerate() {
            if own.as_ref().is_some_and(|cpu| cpu.cpu().index() == index) && slot.try_lock_local() {
                slot.with_locked(|state| state.flush(src));
                slot.unlock_local();
            } else {
                // Relaxed: the flag carries no data (the sheaves it asks
                // for are the owner's own); the owner sees it at some slow
                // path, and that is all this promises.
                slot.flush_requested.store(1, Ordering::Relaxed);
            }
        }
        if let Some(cpu) = own {
            platform.local_exit(cpu);
        }
        self.flush_barn(src);
    }

    /// Flushes every CPU's sheaves and the barn into `src`: `&mut self` is
    /// the proof that no CPU is inside `alloc` or `free` (a cache being
    /// destroyed). Afterwards [`Self::cached`] is 0.
    pub(crate) fn flush_all(&mut self, src: &dyn ObjectSource) {
        for slot in self.cpus {
            slot.with_locked(|state| state.flush(src));
            // Relaxed: exclusive access; nothing to order.
            slot.flush_requested.store(0, Ordering::Relaxed);
        }
        self.flush_barn(src);
    }

    /// Objects cached in sheaves and the barn: approximate while CPUs run,
    /// exact when none does.
    pub(crate) fn cached(&self) -> usize {
        // Relaxed: statistics, summed racily.
        let cpus: u64 = self.cpus.iter().map(|slot| slot.cached.load(Ordering::Relaxed)).sum();
        cpus as usize + self.barn.lock().with_ref(Barn::cached)
    }

    /// Full sheaves in the barn (tests).
    #[cfg(all(test, not(memdesc_loom)))]
    fn barn_full(&self) -> usize {
        self.barn.lock().with_ref(|barn| barn.nr_full)
    }

    /// The fallback path's allocation (SHEAF.8): one object from `src`.
    #[cold]
    #[inline(never)]
    fn alloc_fallback(src: &dyn ObjectSource) -> Option<usize> {
        let mut one = [0];
        (src.refill(&mut one) == 1).then_some(one[0])
    }

    /// The fallback path's free (SHEAF.8): `obj` back to `src`.
    #[cold]
    #[inline(never)]
    fn free_fallback(obj: usize, src: &dyn ObjectSource) {
        src.give_back(&[obj]);
    }

    /// SHEAF.5: the main sheaf is empty.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, slot: &CpuSheaves, state: &mut CpuState, src: &dyn ObjectSource) -> Option<usize> {
        Self::honour_flush_request(slot, state, src);
        if state.spare.len > 0 {
            core::mem::swap(&mut state.main, &mut state.spare);
            return state.main.pop();
        }
        if self.take_from_barn(&mut state.main) {
            return state.main.pop();
        }
        state.main.len = src.refill(&mut state.main.objs[..self.capacity]);
        state.main.pop()
    }

    /// SHEAF.6: the main sheaf is full.
    #[cold]
    #[inline(never)]
    fn free_slow(&self, slot: &CpuSheaves, state: &mut CpuState, obj: usize, src: &dyn ObjectSource) {
        Self::honour_flush_request(slot, state, src);
        if state.main.len == self.capacity {
            if state.spare.len < self.capacity {
                core::mem::swap(&mut state.main, &mut state.spare);
            } else if !self.barn.lock().with(|barn| barn.put_full(&mut state.main)) {
                state.main.give_back(src);
            }
        }
        state.main.push(obj);
    }

    /// SHEAF.5's barn step: trades the empty `main` for a full barn sheaf.
    fn take_from_barn(&self, main: &mut Sheaf) -> bool {
        #[cfg(not(memdesc_mutant = "barn_unlocked_exchange"))]
        return self.barn.lock().with(|barn| barn.take_full(main));
        // Mutant: the trade without the barn lock, racing another CPU's.
        #[cfg(memdesc_mutant = "barn_unlocked_exchange")]
        // SAFETY: deliberately broken (the mutant): another CPU may hold
        // the barn lock meanwhile.
        return unsafe { self.barn.with_unlocked(|barn| barn.take_full(main)) };
    }

    /// SHEAF.7, the owner's side: if another CPU asked, flush this CPU's
    /// sheaves before the slow path goes on.
    fn honour_flush_request(slot: &CpuSheaves, state: &mut CpuState, src: &dyn ObjectSource) {
        // Relaxed: the flag carries no data (see flush_local); a request
        // seen one slow path late only flushes later.
        if slot.flush_requested.load(Ordering::Relaxed) != 0 {
            // Relaxed: as above. A request stored between the load and this
            // store is answered by the flush that follows it.
            slot.flush_requested.store(0, Ordering::Relaxed);
            state.flush(src);
        }
    }

    /// Gives back the barn's full sheaves one at a time, never calling
    /// `src` under the barn lock (the source takes the slabs' locks). At
    /// most as many as the barn holds: CPUs putting sheaves meanwhile cannot
    /// keep the flush going.
    fn flush_barn(&self, src: &dyn ObjectSource) {
        let mut sheaf = Sheaf::EMPTY;
        for _ in 0..BARN_SHEAVES {
            if !self.barn.lock().with(|barn| barn.take_full(&mut sheaf)) {
                break;
            }
            sheaf.give_back(src);
        }
    }
}
