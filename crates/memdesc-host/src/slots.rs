//! CPU slots: which thread runs as which CPU, claimed atomically.
//!
//! A slot's owner word is 0 when free and the owning thread's key
//! otherwise; a thread claims it with one compare-and-swap (Acquire) and
//! gives it back with a store (Release), so everything the previous owner
//! did to that CPU's per-CPU state happens before the next owner's first
//! access: the hand-off a kernel gets from its scheduler's locks.
//!
//! The thread's side is a small thread-local table of bindings keyed by
//! the set's identity (several sets may exist in one process: tests, a
//! simulator inside a program that uses the allocator). It is
//! const-initialised and has no destructor, so reading it never allocates
//! nor registers anything: the LD_PRELOAD `malloc` reads it on every call.

use memdesc::buddy::MAX_CPUS;
use memdesc::CpuId;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many [`CpuSlots`] sets one thread may be bound in at once.
pub const MAX_SETS_PER_THREAD: usize = 4;

/// One entry of a thread's binding table.
#[derive(Clone, Copy)]
struct Binding {
    /// The set's identity ([`CpuSlots::id`]); [`FREE`]: a free entry.
    set: usize,
    /// The CPU this thread holds in that set.
    cpu: u32,
}

/// The `set` of a free entry: no identity, so a set never used (identity
/// 0) matches no entry and the fast path needs no test for it.
const FREE: usize = usize::MAX;

const UNBOUND: Binding = Binding { set: FREE, cpu: 0 };

/// A thread's side of the bindings.
struct ThreadState {
    bindings: [Cell<Binding>; MAX_SETS_PER_THREAD],
    /// Local sections this thread has open, in any set
    /// ([`CpuSlots::enter`]): no binding of it is released while one is.
    /// One counter for all sets keeps `exit` to a decrement, with no lookup.
    sections: Cell<u32>,
}

thread_local! {
    /// This thread's bindings. Const-initialised `Copy` cells: no lazy
    /// initialisation, no destructor, no allocation on any access.
    static STATE: ThreadState = const {
        ThreadState { bindings: [const { Cell::new(UNBOUND) }; MAX_SETS_PER_THREAD], sections: Cell::new(0) }
    };
}

/// Identities handed to sets at their first binding; 0 is "none yet".
static NEXT_SET: AtomicUsize = AtomicUsize::new(1);

/// This thread's key in owner words: the address of its thread state,
/// unique among live threads and never 0.
fn thread_key() -> usize {
    STATE.with(|state| state as *const ThreadState as usize)
}

/// The index of this thread's entry for `set`, if it has one.
#[inline(always)]
fn find(table: &[Cell<Binding>; MAX_SETS_PER_THREAD], set: usize) -> Option<usize> {
    table.iter().position(|entry| entry.get().set == set)
}

/// Why a thread could not bind, or a set could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotError {
    /// A set needs between 1 and `max` CPUs (memdesc's `MAX_CPUS`).
    BadCount {
        /// The count asked for.
        nr: u32,
        /// The most the core supports.
        max: u32,
    },
    /// The CPU is not below the set's count.
    OutOfRange {
        /// The CPU asked for.
        cpu: CpuId,
        /// The set's count.
        nr: u32,
    },
    /// Another thread holds the CPU.
    Taken(CpuId),
    /// This thread already holds a CPU of this set.
    AlreadyBound(CpuId),
    /// This thread is bound in [`MAX_SETS_PER_THREAD`] other sets.
    TooManySets,
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadCount { nr, max } => write!(f, "{nr} CPUs asked for; a set has 1 to {max}"),
            Self::OutOfRange { cpu, nr } => write!(f, "cpu {} out of range (nr_cpus {nr})", cpu.0),
            Self::Taken(cpu) => write!(f, "cpu {} is held by another thread", cpu.0),
            Self::AlreadyBound(cpu) => write!(f, "this thread already runs as cpu {} of this set", cpu.0),
            Self::TooManySets => write!(f, "this thread is bound in {MAX_SETS_PER_THREAD} other sets"),
        }
    }
}

impl std::error::Error for SlotError {}

/// One CPU's owner word, alone in its cache line (claims of different
/// CPUs do not contend).
#[repr(align(64))]
struct Slot {
    /// 0: free; else the owning thread's key.
    owner: AtomicUsize,
}

/// A fixed set of `nr` CPU slots, each held by at most one thread.
///
/// `const`-constructible so an allocator can keep one in a `static`.
pub struct CpuSlots {
    /// This set's identity in threads' binding tables: 0 until the first
    /// binding takes a fresh one, then fixed.
    id: AtomicUsize,
    nr: u32,
    /// Run on the releasing thread, which still holds the CPU, before a
    /// slot is given back: flush that CPU's caches.
    release_hook: Option<fn(CpuId)>,
    slots: [Slot; MAX_CPUS],
}

impl fmt::Debug for CpuSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.slots[..self.nr as usize]
            .iter()
            // Relaxed: a snapshot for display.
            .filter(|slot| slot.owner.load(Ordering::Relaxed) != 0)
            .count();
        f.debug_struct("CpuSlots").field("nr", &self.nr).field("held", &held).finish()
    }
}

impl CpuSlots {
    /// `nr` free slots, CPUs `0..nr`.
    ///
    /// # Errors
    /// [`SlotError::BadCount`] unless `1 <= nr <= MAX_CPUS`.
    pub const fn new(nr: u32) -> Result<Self, SlotError> {
        if nr == 0 || nr as usize > MAX_CPUS {
            return Err(SlotError::BadCount { nr, max: MAX_CPUS as u32 });
        }
        Ok(Self {
            id: AtomicUsize::new(0),
            nr,
            release_hook: None,
            slots: [const { Slot { owner: AtomicUsize::new(0) } }; MAX_CPUS],
        })
    }

    /// The same set, calling `hook(cpu)` on the releasing thread before
    /// each slot is given back (while that thread still runs as `cpu`, so
    /// the hook may enter the CPU's local sections and flush its caches).
    pub const fn with_release_hook(mut self, hook: fn(CpuId)) -> Self {
        self.release_hook = Some(hook);
        self
    }

    /// How many CPUs the set has.
    pub fn nr_cpus(&self) -> u32 {
        self.nr
    }

    /// This set's identity, taking a fresh one at the first call.
    fn id(&self) -> usize {
        // Relaxed: the identity is written once (0 to its value) and only
        // compared with entries this thread wrote itself, after reading it;
        // coherence keeps a thread that saw the value from seeing 0 again.
        let id = self.id.load(Ordering::Relaxed);
        if id != 0 {
            return id;
        }
        // Relaxed: a unique number is all the counter gives.
        let fresh = NEXT_SET.fetch_add(1, Ordering::Relaxed);
        // Relaxed (both): as for the load above; the loser takes the
        // winner's identity.
        match self.id.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => fresh,
            Err(winner) => winner,
        }
    }

    /// This set's identity if any thread ever bound in it (0 otherwise):
    /// the fast path's read, which never assigns.
    #[inline(always)]
    fn id_if_used(&self) -> usize {
        // Relaxed: as in `id`.
        self.id.load(Ordering::Relaxed)
    }

    /// Makes the calling thread run as `cpu` until the returned guard
    /// drops (or [`CpuSlots::release_current`]).
    ///
    /// # Errors
    /// [`SlotError::OutOfRange`]; [`SlotError::Taken`] if another thread
    /// holds `cpu`; [`SlotError::AlreadyBound`] if this thread holds a CPU
    /// of this set already; [`SlotError::TooManySets`].
    pub fn bind(&self, cpu: CpuId) -> Result<SlotBinding<'_>, SlotError> {
        if cpu.0 >= self.nr {
            return Err(SlotError::OutOfRange { cpu, nr: self.nr });
        }
        let (id, entry) = self.free_entry()?;
        // Acquire: pairs with the Release store of `release`: the previous
        // owner's per-CPU accesses happen before ours.
        self.slots[cpu.index()]
            .owner
            .compare_exchange(0, thread_key(), Ordering::Acquire, Ordering::Relaxed)
            .map_err(|_| SlotError::Taken(cpu))?;
        Ok(self.record(id, entry, cpu))
    }

    /// Makes the calling thread run as the first free CPU, once per thread
    /// (never on a fast path). `None` if every CPU is held, or if this
    /// thread is already bound in this set (see [`CpuSlots::current`]) or
    /// in [`MAX_SETS_PER_THREAD`] others: the caller then takes its shared,
    /// locked slow path.
    pub fn claim_any(&self) -> Option<SlotBinding<'_>> {
        let (id, entry) = self.free_entry().ok()?;
        let key = thread_key();
        let cpu = self.slots[..self.nr as usize].iter().position(|slot| {
            // Relaxed: a hint that skips held slots without a locked
            // instruction; the CAS decides.
            slot.owner.load(Ordering::Relaxed) == 0
                // Acquire: as in `bind`.
                && slot.owner.compare_exchange(0, key, Ordering::Acquire, Ordering::Relaxed).is_ok()
        })?;
        Some(self.record(id, entry, CpuId(cpu as u32)))
    }

    /// This set's identity and a free entry of this thread's table, or
    /// why the thread cannot bind.
    fn free_entry(&self) -> Result<(usize, usize), SlotError> {
        let id = self.id();
        STATE.with(|state| {
            let table = &state.bindings;
            if let Some(held) = find(table, id) {
                return Err(SlotError::AlreadyBound(CpuId(table[held].get().cpu)));
            }
            find(table, FREE).map(|entry| (id, entry)).ok_or(SlotError::TooManySets)
        })
    }

    /// Records a claimed slot in this thread's table.
    fn record(&self, id: usize, entry: usize, cpu: CpuId) -> SlotBinding<'_> {
        STATE.with(|state| state.bindings[entry].set(Binding { set: id, cpu: cpu.0 }));
        SlotBinding { slots: self, cpu, _not_send: PhantomData }
    }

    /// The CPU the calling thread runs as in this set, if any.
    #[inline]
    pub fn current(&self) -> Option<CpuId> {
        let id = self.id_if_used();
        STATE.with(|state| find(&state.bindings, id).map(|entry| CpuId(state.bindings[entry].get().cpu)))
    }

    /// Opens a local section on the calling thread's CPU: `None` if it has
    /// none in this set. Until the matching [`CpuSlots::exit`] the binding
    /// cannot be released, so the CPU stays this thread's: what makes a
    /// `LocalCpu` token sound. Thread-local reads and one store.
    #[inline]
    pub(crate) fn enter(&self) -> Option<CpuId> {
        let id = self.id_if_used();
        STATE.with(|state| {
            // A thread is bound in one set but for tests: its first entry.
            let first = state.bindings[0].get();
            let cpu = if first.set == id { first.cpu } else { Self::find_cold(state, id)? };
            state.sections.set(state.sections.get() + 1);
            Some(CpuId(cpu))
        })
    }

    /// The CPU of this thread's entry for `id` past the first.
    #[cold]
    fn find_cold(state: &ThreadState, id: usize) -> Option<u32> {
        state.bindings[1..].iter().map(Cell::get).find(|binding| binding.set == id).map(|binding| binding.cpu)
    }

    /// Closes a section [`CpuSlots::enter`] opened.
    #[inline]
    pub(crate) fn exit(&self) {
        STATE.with(|state| {
            let open = state.sections.get();
            debug_assert!(open > 0, "local_exit without local_enter");
            state.sections.set(open.saturating_sub(1));
        });
    }

    /// Gives back the CPU the calling thread holds in this set (after the
    /// release hook), and returns it; `None` if it held none. For a
    /// thread-exit hook (a pthread key's destructor) that has no guard; a
    /// [`SlotBinding`] still alive afterwards does nothing when it drops,
    /// unless the thread holds its CPU again by then.
    ///
    /// # Panics
    /// If the thread is inside a local section (a `local_enter` not yet
    /// exited, of any set): releasing then would let another
    /// thread in while this one still uses the CPU. The slot stays held.
    pub fn release_current(&self) -> Option<CpuId> {
        self.release_current_with(|_| {})
    }

    /// As [`CpuSlots::release_current`], running `flush(cpu)` first (then
    /// the release hook), while the thread still runs as `cpu`.
    ///
    /// # Panics
    /// As [`CpuSlots::release_current`].
    pub fn release_current_with(&self, flush: impl FnOnce(CpuId)) -> Option<CpuId> {
        let cpu = self.current()?;
        flush(cpu);
        if let Some(hook) = self.release_hook {
            hook(cpu);
        }
        let id = self.id_if_used();
        // The flush or hook may have released already.
        let cpu = STATE.with(|state| {
            let open = state.sections.get();
            let entry = &state.bindings[find(&state.bindings, id)?];
            let binding = entry.get();
            assert!(open == 0, "cpu {} released inside {open} local section(s) of this thread", binding.cpu);
            entry.set(UNBOUND);
            Some(CpuId(binding.cpu))
        })?;
        // Release: pairs with the Acquire CAS of the next `bind` or
        // `claim_any` of this CPU: our per-CPU accesses happen before its.
        self.slots[cpu.index()].owner.store(0, Ordering::Release);
        Some(cpu)
    }

    /// Runs `f` with the calling thread's CPU in this set given back (if it
    /// holds one), then takes the same CPU again: for a thread that hands
    /// its CPU to scoped worker threads and waits for them.
    ///
    /// # Errors
    /// [`SlotError::Taken`] if the CPU is held by another thread when `f`
    /// returns: this thread then holds none (its guard does nothing).
    pub fn while_unbound<R>(&self, f: impl FnOnce() -> R) -> Result<R, SlotError> {
        let held = self.release_current();
        let result = f();
        if let Some(cpu) = held {
            // The guard of the first binding is still alive: forget the new
            // one, the old one releases it.
            std::mem::forget(self.bind(cpu)?);
        }
        Ok(result)
    }
}

/// The calling thread's hold on one CPU of a [`CpuSlots`]: dropping it
/// gives the CPU back (after the set's release hook). Not `Send`: the
/// binding is the thread's.
#[must_use = "dropping the binding gives the CPU back at once"]
pub struct SlotBinding<'s> {
    slots: &'s CpuSlots,
    cpu: CpuId,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for SlotBinding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotBinding").field("cpu", &self.cpu).finish()
    }
}

impl SlotBinding<'_> {
    /// The CPU this thread runs as.
    pub fn cpu(&self) -> CpuId {
        self.cpu
    }

    /// Gives the CPU back now, running `flush(cpu)` first while the thread
    /// still holds it.
    ///
    /// # Panics
    /// As [`CpuSlots::release_current`].
    pub fn release_with(self, flush: impl FnOnce(CpuId)) {
        let slots = self.slots;
        std::mem::forget(self);
        slots.release_current_with(flush);
    }
}

impl Drop for SlotBinding<'_> {
    fn drop(&mut self) {
        // Only the binding this guard made: after `release_current` and a
        // new bind of another CPU, this guard is stale.
        if self.slots.current() == Some(self.cpu) {
            self.slots.release_current();
        }
    }
}

#[cfg(test)]
mod tests;
