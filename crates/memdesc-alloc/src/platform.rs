//! The engine's platform: `memdesc-host`'s [`HostPlatform`], whose CPUs are
//! slots that threads claim, plus this crate's per-thread state.
//!
//! A thread claims a free slot once ([`CpuSlots::claim_any`](memdesc_host::CpuSlots::claim_any),
//! one compare-exchange), on its first allocation, and keeps it until its
//! exit hook releases it; while it holds the slot no other thread runs as
//! that CPU, so `local_enter` hands out the CPU's token with thread-local
//! reads. A thread that finds every slot taken gets none and takes the
//! core's locked slow paths. Both thread-locals (our block here and the
//! host's binding table) are zero- or const-initialised and Drop-free, so
//! reading them never allocates and registers no destructor; the fast
//! paths read only ours (the engine makes the CPU token from it).

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use memdesc::CpuId;
use memdesc_host::HostPlatform;

/// CPU slots at most: the most the core serves.
pub(crate) const NR_SLOTS: u32 = memdesc::MAX_CPUS as u32;

const fn host(nr: u32) -> HostPlatform {
    // Under loom the core serves 2 CPUs: the counts are clamped there (only
    // the fork gate's models run in that build, never the engine).
    #[cfg(memdesc_loom)]
    let nr = if nr < NR_SLOTS { nr } else { NR_SLOTS };
    match HostPlatform::new(nr) {
        Ok(platform) => platform,
        Err(_) => panic!("slot counts are within 1..=MAX_CPUS"),
    }
}

/// The platforms the engine may run on, by slot count. Every slot costs
/// each size class's cache a CPU's sheaves (written at initialisation), so
/// the engine picks the smallest count that is at least four slots per
/// CPU the process may run on ([`choose`]): a thread beyond that takes
/// the locked path until a slot frees up.
static PLATFORMS: [HostPlatform; 4] = [host(8), host(16), host(32), host(NR_SLOTS)];
/// The index of the chosen platform in [`PLATFORMS`].
static CHOSEN: AtomicUsize = AtomicUsize::new(PLATFORMS.len() - 1);

/// The platform every engine call runs on.
#[inline(always)]
pub(crate) fn platform() -> &'static HostPlatform {
    // Relaxed: written once by the initialising thread before the engine
    // (and so any caller) exists; published with the engine's OnceLock.
    &PLATFORMS[CHOSEN.load(Ordering::Relaxed).min(PLATFORMS.len() - 1)]
}

/// Picks the platform from the CPUs this process may run on
/// (`sched_getaffinity`: a system call, no allocation). Called once, at
/// initialisation, before the node boots.
pub(crate) fn choose() {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid out-buffer of the size passed.
    let ok = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    // SAFETY: `set` is an initialised cpu_set_t.
    let cpus = if ok { unsafe { libc::CPU_COUNT(&set) }.max(1) as u32 } else { NR_SLOTS };
    let want = cpus.saturating_mul(4);
    let index = PLATFORMS.iter().position(|p| p.slots().nr_cpus() >= want).unwrap_or(PLATFORMS.len() - 1);
    // Relaxed: see `platform`.
    CHOSEN.store(index, Ordering::Relaxed);
}

/// Slots held by a thread of this process, by our count (the host's owner
/// words are private): a forked child counts those of threads it lacks.
static HELD: [AtomicBool; NR_SLOTS as usize] = [const { AtomicBool::new(false) }; NR_SLOTS as usize];

/// A thread's binding, as stored in its [`ThreadState`].
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

// The binding word holds the complement of these (a slot index is stored
// as `!slot`), so the all-zero block a new thread starts with reads
// `Unclaimed`.
const UNCLAIMED: u32 = u32::MAX;
const NO_SLOT: u32 = u32::MAX - 1;
const EXITED: u32 = u32::MAX - 2;

/// A thread's allocator state: one per-thread block, all zero at thread
/// start, so each entry point looks it up once. On x86_64 Linux the block
/// is an initial-exec TLS symbol (see [`tls`]): its address is the thread
/// pointer plus a constant, two instructions, where a `thread_local!` in
/// a cdylib costs a `__tls_get_addr` call (rustc builds cdylibs
/// global-dynamic, and its TLS-model switch is unstable).
#[repr(C, align(16))]
pub(crate) struct ThreadState {
    /// How deep this thread is inside the allocator (0 or 1).
    pub(crate) depth: Cell<u32>,
    /// This thread's [`Binding`], encoded and complemented (0 reads
    /// `Unclaimed`).
    binding: Cell<u32>,
    /// Allocations since a slot-less thread last tried to claim one.
    since_claim: Cell<u32>,
}

/// A thread that found every slot taken tries again after this many
/// allocations (slots free up as other threads exit).
const RECLAIM_PERIOD: u32 = 4096;

/// The per-thread block as an initial-exec TLS symbol.
///
/// The block lives in `.tbss` (zero-filled for every thread by the C
/// library) under a hidden symbol, and is reached as `%fs:0` plus its
/// offset from the GOT (`@GOTTPOFF`): the model C allocators use
/// (`tls_model("initial-exec")`). A library with initial-exec TLS must be
/// in the static TLS block: always so under `LD_PRELOAD` or when linked,
/// and for `dlopen` glibc reserves surplus space for such libraries.
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
mod tls {
    use super::ThreadState;

    const _: () = assert!(size_of::<ThreadState>() == 16 && align_of::<ThreadState>() == 16);

    core::arch::global_asm!(
        ".pushsection .tbss.memdesc_alloc_thread_block,\"awT\",@nobits",
        ".p2align 4",
        ".globl memdesc_alloc_thread_block",
        ".hidden memdesc_alloc_thread_block",
        ".type memdesc_alloc_thread_block, @object",
        ".size memdesc_alloc_thread_block, 16",
        "memdesc_alloc_thread_block:",
        ".zero 16",
        ".popsection",
    );

    /// The calling thread's block.
    #[inline(always)]
    pub(super) fn block() -> *const ThreadState {
        let block: *const ThreadState;
        // SAFETY: reads the thread pointer's self-pointer (`%fs:0`, the
        // x86_64 TLS ABI) and the GOT slot the dynamic linker fills with
        // the block's offset from it; writes only the output register.
        unsafe {
            core::arch::asm!(
                "mov {block}, qword ptr fs:[0]",
                "add {block}, qword ptr [rip + memdesc_alloc_thread_block@GOTTPOFF]",
                block = out(reg) block,
                options(pure, readonly, nostack),
            );
        }
        block
    }
}

/// The per-thread block elsewhere: a const-initialised, Drop-free
/// thread-local (no lazy initialisation, no destructor).
#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
mod tls {
    use super::ThreadState;
    use core::cell::Cell;

    std::thread_local! {
        static THREAD: ThreadState = const {
            ThreadState { depth: Cell::new(0), binding: Cell::new(0), since_claim: Cell::new(0) }
        };
    }

    /// The calling thread's block.
    #[inline(always)]
    pub(super) fn block() -> *const ThreadState {
        THREAD.with(|t| t as *const ThreadState)
    }
}

/// Runs `f` with this thread's state.
#[inline(always)]
pub(crate) fn with_thread<R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    // SAFETY: the calling thread's block: live and aligned for as long as
    // the thread runs (so throughout `f`), zero at thread start (a valid
    // ThreadState: Cells of integers), and used only by this thread (the
    // reference does not leave `f`, and ThreadState is not Sync).
    f(unsafe { &*tls::block() })
}

/// This thread's binding.
#[inline(always)]
pub(crate) fn binding() -> Binding {
    with_thread(ThreadState::binding)
}

impl ThreadState {
    /// This thread's binding.
    #[inline(always)]
    pub(crate) fn binding(&self) -> Binding {
        match !self.binding.get() {
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

    /// Whether this thread should try to claim a slot now: never tried,
    /// or slot-less for [`RECLAIM_PERIOD`] allocations.
    #[inline(always)]
    pub(crate) fn wants_slot(&self) -> bool {
        match self.binding() {
            Binding::Unclaimed => true,
            Binding::NoSlot => {
                let n = self.since_claim.get() + 1;
                self.since_claim.set(if n == RECLAIM_PERIOD { 0 } else { n });
                n == RECLAIM_PERIOD
            }
            Binding::Slot(_) | Binding::Exited => false,
        }
    }

    /// Claims the first free slot for this thread (which has none).
    pub(crate) fn claim_any(&self) -> Binding {
        match platform().slots().claim_any() {
            Some(binding) => {
                let cpu = binding.cpu().0;
                // The slot is held until `release` (the exit hook), not
                // until this guard's scope ends.
                core::mem::forget(binding);
                // Relaxed: a statistic (and the fork child's count, where
                // only one thread runs).
                HELD[cpu as usize].store(true, Ordering::Relaxed);
                self.binding.set(!cpu);
                Binding::Slot(cpu)
            }
            None => {
                self.binding.set(!NO_SLOT);
                Binding::NoSlot
            }
        }
    }

    /// Runs `flush` while this thread still runs as its CPU, then releases
    /// the slot (if any) and marks the thread exited.
    pub(crate) fn release_with(&self, flush: impl FnOnce()) {
        if let Binding::Slot(slot) = self.binding() {
            platform().slots().release_current_with(|_: CpuId| flush());
            // Relaxed: a statistic.
            HELD[slot as usize].store(false, Ordering::Relaxed);
        }
        self.binding.set(!EXITED);
    }
}

/// In a forked child: the slots held by threads that do not exist here
/// (all but `keep`, the forking thread's). The host's slots cannot be
/// taken back from a thread that is gone, so they stay held, with what
/// their sheaves and lists cache: counted, not reused. Returns how many.
pub(crate) fn orphaned_by_fork(keep: Binding) -> u32 {
    let mut orphaned = 0;
    for (index, held) in HELD.iter().enumerate() {
        // Relaxed: the child is single-threaded here.
        if keep != Binding::Slot(index as u32) && held.load(Ordering::Relaxed) {
            orphaned += 1;
        }
    }
    orphaned
}

/// How many slots are held (racy snapshot, for statistics).
pub(crate) fn slots_taken() -> u32 {
    // Relaxed: a statistic.
    HELD.iter().filter(|h| h.load(Ordering::Relaxed)).count() as u32
}
