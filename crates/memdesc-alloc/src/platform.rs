//! The engine's platform: the node's CPUs are slots that threads claim.
//!
//! A thread claims a free slot once (one compare-exchange), on its first
//! allocation, and keeps it until its exit hook releases it; while it holds
//! the slot no other thread runs as that CPU, which is the contract of
//! [`Platform::local_enter`], and entering is a thread-local read. A thread
//! that finds every slot taken gets none and takes the core's locked slow
//! paths. The binding is a const-initialised, Drop-free thread-local, so
//! reading it never allocates and registers no destructor.
//!
//! (Interim: `memdesc-host`'s `CpuSlots`/`HostPlatform` replace this module
//! when that crate lands; the shape is the same.)

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};
use memdesc::platform::{CpuId, Platform, WaitKey};

/// CPU slots: the most the core serves.
pub(crate) const NR_SLOTS: u32 = memdesc::MAX_CPUS as u32;

/// A thread's binding, as stored in [`BINDING`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    /// Has not allocated yet: claims a slot at its first allocation.
    Unclaimed,
    /// Runs as this CPU.
    Slot(u32),
    /// Found every slot taken: locked slow path from now on.
    NoSlot,
    /// Its exit hook ran: slow path, never claims again (a late free from
    /// another key's destructor must not resurrect per-CPU state).
    Exited,
}

const UNCLAIMED: u32 = u32::MAX;
const NO_SLOT: u32 = u32::MAX - 1;
const EXITED: u32 = u32::MAX - 2;

/// A thread's allocator state: one thread-local, so each entry point looks
/// it up once (in the `LD_PRELOAD` library every lookup is a
/// `__tls_get_addr` call: rustc's cdylibs use the global-dynamic model).
pub(crate) struct ThreadState {
    /// How deep this thread is inside the allocator (0 or 1).
    pub(crate) depth: Cell<u32>,
    /// This thread's [`Binding`], encoded (slot index or a sentinel).
    binding: Cell<u32>,
}

std::thread_local! {
    static THREAD: ThreadState = const { ThreadState { depth: Cell::new(0), binding: Cell::new(UNCLAIMED) } };
}

/// Runs `f` with this thread's state.
#[inline(always)]
pub(crate) fn with_thread<R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    THREAD.with(f)
}

/// Who owns each slot: 0 free, 1 taken.
static OWNERS: [AtomicU32; NR_SLOTS as usize] = [const { AtomicU32::new(0) }; NR_SLOTS as usize];

/// This thread's binding.
#[inline(always)]
pub(crate) fn binding() -> Binding {
    THREAD.with(ThreadState::binding)
}

impl ThreadState {
    /// This thread's binding.
    #[inline(always)]
    pub(crate) fn binding(&self) -> Binding {
        match self.binding.get() {
            UNCLAIMED => Binding::Unclaimed,
            NO_SLOT => Binding::NoSlot,
            EXITED => Binding::Exited,
            slot => Binding::Slot(slot),
        }
    }

    /// A token unique among live threads (the state's address).
    pub(crate) fn token(&self) -> usize {
        self as *const ThreadState as usize
    }

    /// Claims the first free slot for this thread (which has none).
    pub(crate) fn claim_any(&self) -> Binding {
        for (index, owner) in OWNERS.iter().enumerate() {
            // Acquire: pairs with the Release in `release`, so the previous
            // owner's per-CPU writes are seen before we use its CPU.
            // Relaxed on failure: we move on to the next slot.
            if owner.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                self.binding.set(index as u32);
                return Binding::Slot(index as u32);
            }
        }
        self.binding.set(NO_SLOT);
        Binding::NoSlot
    }

    /// Releases this thread's slot, if any, and marks it exited.
    pub(crate) fn release(&self) {
        if let Binding::Slot(slot) = self.binding() {
            // Release: pairs with the Acquire claim of the next owner.
            OWNERS[slot as usize].store(0, Ordering::Release);
        }
        self.binding.set(EXITED);
    }
}

/// In a forked child: frees every slot but `keep` (the forking thread's),
/// whose threads do not exist here.
pub(crate) fn release_all_but(keep: Binding) {
    for (index, owner) in OWNERS.iter().enumerate() {
        if keep != Binding::Slot(index as u32) {
            // Relaxed: the child is single-threaded here.
            owner.store(0, Ordering::Relaxed);
        }
    }
}

/// How many slots are taken (racy snapshot, for statistics).
pub(crate) fn slots_taken() -> u32 {
    // Relaxed: a statistic.
    OWNERS.iter().filter(|o| o.load(Ordering::Relaxed) != 0).count() as u32
}

/// The platform hooks over the slots.
pub(crate) struct EnginePlatform;

impl Platform for EnginePlatform {
    fn current_cpu(&self) -> CpuId {
        // Threads without a slot share the last CPU's (locked) per-CPU
        // lists: a contract violation the core documents as costing speed,
        // never safety.
        match binding() {
            Binding::Slot(slot) => CpuId(slot),
            _ => CpuId(NR_SLOTS - 1),
        }
    }

    fn nr_cpus(&self) -> u32 {
        NR_SLOTS
    }

    fn wait(&self, _key: WaitKey, still_blocked: &dyn Fn() -> bool) {
        if still_blocked() {
            std::thread::yield_now();
        }
    }

    fn wake_all(&self, _key: WaitKey) {}

    fn local_enter(&self) -> Option<CpuId> {
        // The slot is this thread's from claim to release (see module doc).
        match binding() {
            Binding::Slot(slot) => Some(CpuId(slot)),
            _ => None,
        }
    }

    fn relax(&self) {
        std::thread::yield_now();
    }
}
