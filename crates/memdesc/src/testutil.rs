//! Test scaffolding: page-aligned memory and small booted nodes.

use crate::buddy::{Node, NodeConfig, PcpConfig};
use crate::memmap::{MemoryLayout, PhysAddr, PhysRange, PAGE_SIZE};
use crate::platform::Platform;
#[cfg(memdesc_loom)]
use crate::platform::{CpuId, WaitKey};
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// Page-aligned, zeroed host memory standing in for physical memory.
pub(crate) struct TestMemory {
    ptr: *mut u8,
    layout: Layout,
}

impl TestMemory {
    pub(crate) fn new(bytes: usize) -> Self {
        let layout = Layout::from_size_align(bytes, PAGE_SIZE).expect("layout");
        // SAFETY: the layout has a non-zero size (callers ask for frames).
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "test memory allocation failed");
        Self { ptr, layout }
    }

    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live allocation of `layout.size()` zeroed bytes,
        // borrowed mutably through `&mut self`.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for TestMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

/// A node config for small tests: explicit pcp sizes, no watermark, no
/// movable zone unless asked.
pub(crate) fn small_config(pcp: bool) -> NodeConfig {
    NodeConfig { movable_percent: 0, pcp: PcpConfig { enabled: pcp, batch: 4, high: 8 }, min_free_frames: Some(0) }
}

/// Boots a node over `frames` frames of RAM starting at pfn 0 (no holes),
/// plus whatever `reserved` says, and runs `f` on it.
pub(crate) fn with_node<R>(
    frames: u64,
    reserved: &[PhysRange],
    config: NodeConfig,
    platform: &dyn Platform,
    f: impl FnOnce(&Node<'_>) -> R,
) -> R {
    let bytes = frames * PAGE_SIZE as u64;
    let mut memory = TestMemory::new(bytes as usize);
    let ram = [PhysRange::new(0, bytes)];
    let layout = MemoryLayout { ram: &ram, reserved };
    let node = Node::boot(memory.bytes(), PhysAddr(0), &layout, config, platform).expect("boot");
    f(node)
}

/// Boots a node over `frames` frames of memory starting at pfn 0, of which
/// the first `boot_frames` are RAM at boot and the rest hot-pluggable in
/// sections of `2^section_order` frames, and runs `f` on it.
pub(crate) fn with_hotplug_node<R>(
    boot_frames: u64,
    frames: u64,
    section_order: u32,
    config: NodeConfig,
    platform: &dyn Platform,
    f: impl FnOnce(&Node<'_>) -> R,
) -> R {
    let mut memory = TestMemory::new((frames * PAGE_SIZE as u64) as usize);
    let ram = [PhysRange::new(0, boot_frames * PAGE_SIZE as u64)];
    let layout = MemoryLayout { ram: &ram, reserved: &[] };
    let node =
        Node::boot_with_sections(memory.bytes(), PhysAddr(0), &layout, config, section_order, platform).expect("boot");
    f(node)
}

#[cfg(not(memdesc_loom))]
std::thread_local! {
    /// The CPU a std test thread runs as ([`set_thread_cpu`]); `None` for a
    /// thread that is not a CPU.
    static THREAD_CPU: core::cell::Cell<Option<u32>> = const { core::cell::Cell::new(None) };
}

/// Makes the calling std thread run as `cpu` on a [`ThreadCpus`] platform,
/// or as a thread that is not a CPU (`None`).
#[cfg(not(memdesc_loom))]
pub(crate) fn set_thread_cpu(cpu: Option<u32>) {
    THREAD_CPU.with(|c| c.set(cpu));
}

/// Boots a node like [`with_node`] on a one-CPU [`ThreadCpus`] platform and
/// runs `f` as that CPU, so the allocator's per-CPU lists are in use (on a
/// platform with no CPU every request takes the zones' locked path).
#[cfg(not(memdesc_loom))]
pub(crate) fn with_node_on_cpu0<R>(
    frames: u64,
    reserved: &[PhysRange],
    config: NodeConfig,
    f: impl FnOnce(&Node<'_>) -> R,
) -> R {
    static ONE_CPU: ThreadCpus = ThreadCpus { nr: 1 };
    set_thread_cpu(Some(0));
    let r = with_node(frames, reserved, config, &ONE_CPU, f);
    set_thread_cpu(None);
    r
}

/// A platform of `nr` CPUs for multi-threaded std tests (also under Miri):
/// a thread is the CPU it set with [`set_thread_cpu`] (CPU 0's per-CPU
/// lists and a non-CPU RCU reader if it set none); waits and RCU relaxing
/// yield the thread.
#[cfg(not(memdesc_loom))]
pub(crate) struct ThreadCpus {
    pub(crate) nr: u32,
}

#[cfg(not(memdesc_loom))]
impl Platform for ThreadCpus {
    fn current_cpu(&self) -> crate::platform::CpuId {
        crate::platform::CpuId(THREAD_CPU.with(core::cell::Cell::get).unwrap_or(0))
    }

    fn nr_cpus(&self) -> u32 {
        self.nr
    }

    fn wait(&self, _key: crate::platform::WaitKey, still_blocked: &dyn Fn() -> bool) {
        if still_blocked() {
            std::thread::yield_now();
        }
    }

    fn wake_all(&self, _key: crate::platform::WaitKey) {}

    fn rcu_reader_cpu(&self) -> Option<crate::platform::RcuReaderCpu> {
        let cpu = crate::platform::CpuId(THREAD_CPU.with(core::cell::Cell::get)?);
        // SAFETY: a test binds one thread per CPU with `set_thread_cpu`, for
        // the thread's whole life (the tests' side of the contract).
        Some(unsafe { crate::platform::RcuReaderCpu::new_unchecked(cpu) })
    }

    fn local_enter(&self) -> Option<crate::platform::LocalCpu> {
        let cpu = crate::platform::CpuId(THREAD_CPU.with(core::cell::Cell::get)?);
        // SAFETY: a thread bound with `set_thread_cpu` is that CPU for its
        // whole life, one thread per CPU (the tests' side of the contract).
        Some(unsafe { crate::platform::LocalCpu::new_unchecked(cpu) })
    }

    fn relax(&self) {
        std::thread::yield_now();
    }
}

/// Runs a loom model with the preemption bound from the environment
/// (`LOOM_MAX_PREEMPTIONS`, default 3).
#[cfg(memdesc_loom)]
pub(crate) fn check_model(model: impl Fn() + Sync + Send + 'static) {
    // 0: keep loom's default branch limit.
    check_model_with_branches(0, model);
}

/// Asserts that loom finds a bug in `model` (a mutant's test): the model
/// must fail with a protocol assertion or a loom causality violation. The
/// bound is fixed (2), so the environment cannot make the search vacuous.
#[cfg(memdesc_loom)]
#[allow(dead_code)] // Called only by the mutant tests, compiled one mutant at a time.
pub(crate) fn assert_model_fails(model: impl Fn() + Sync + Send + 'static) {
    // 0: keep loom's default branch limit.
    assert_model_fails_with_branches(0, model);
}

#[cfg(memdesc_loom)]
loom::thread_local! {
    /// The CPU a model thread says it runs on ([`set_current_cpu`]);
    /// `None` until it says so (it then shares CPU 0's locked per-CPU
    /// lists but has no per-CPU state of its own: `local_enter` is `None`).
    static CPU: core::cell::Cell<Option<u32>> = core::cell::Cell::new(None);
}

/// Makes the calling model thread run as `cpu` on a [`BlockingPlatform`].
#[cfg(memdesc_loom)]
#[allow(dead_code)] // For models with per-CPU lists; the folio models run on CPU 0.
pub(crate) fn set_current_cpu(cpu: u32) {
    CPU.with(|c| c.set(Some(cpu)));
}

/// Wait queues of a [`BlockingPlatform`]; keys hash onto them as Linux
/// hashes `folio_waitqueue`, so a collision is only a spurious wake-up.
#[cfg(memdesc_loom)]
const WAIT_QUEUES: usize = 4;

/// A platform for loom models whose `wait` really sleeps: a waiter
/// registers on its key's queue and parks until a `wake_all` for that queue
/// unparks it, so a lost wake-up leaves it asleep and loom reports the
/// deadlock. `still_blocked` is rechecked under the queue's mutex, which
/// `wake_all` also takes: the contract of [`Platform::wait`] and nothing
/// more.
///
/// Build one per execution (loom's mutexes belong to one execution). A
/// model that may deadlock must keep loom objects whose drop acts (a
/// `FolioRef`) off the stacks of threads that may sleep, the model's main
/// thread only joining: loom's deadlock panic unwinds every thread, and
/// such a drop then panics again and aborts the test binary instead of
/// failing the model.
#[cfg(memdesc_loom)]
pub(crate) struct BlockingPlatform {
    nr_cpus: u32,
    queues: [loom::sync::Mutex<std::vec::Vec<loom::thread::Thread>>; WAIT_QUEUES],
}

#[cfg(memdesc_loom)]
impl BlockingPlatform {
    /// A platform of `nr_cpus` CPUs (at most [`crate::buddy::MAX_CPUS`]);
    /// each model thread picks its CPU with [`set_current_cpu`].
    pub(crate) fn new(nr_cpus: u32) -> Self {
        Self { nr_cpus, queues: core::array::from_fn(|_| loom::sync::Mutex::new(std::vec::Vec::new())) }
    }

    fn queue(&self, key: WaitKey) -> &loom::sync::Mutex<std::vec::Vec<loom::thread::Thread>> {
        &self.queues[(key.0 % WAIT_QUEUES as u64) as usize]
    }
}

#[cfg(memdesc_loom)]
impl Platform for BlockingPlatform {
    fn current_cpu(&self) -> CpuId {
        CpuId(CPU.with(core::cell::Cell::get).unwrap_or(0))
    }

    fn local_enter(&self) -> Option<crate::platform::LocalCpu> {
        let cpu = CpuId(CPU.with(core::cell::Cell::get)?);
        // SAFETY: only a thread that chose its CPU is that CPU, and a model
        // gives each CPU one thread, so two threads never share a CPU's
        // per-CPU state (loom would report the race on the cells if one did).
        Some(unsafe { crate::platform::LocalCpu::new_unchecked(cpu) })
    }

    fn nr_cpus(&self) -> u32 {
        self.nr_cpus
    }

    fn wait(&self, key: WaitKey, still_blocked: &dyn Fn() -> bool) {
        let mut queue = self.queue(key).lock().unwrap();
        // The recheck under the queue lock is what makes a wake-up between
        // the caller's check and this sleep impossible to lose: a waker
        // either ran before it (and the recheck sees the lock free) or
        // finds us on the queue. An unpark that comes before the park below
        // makes it return at once.
        if !still_blocked() {
            return;
        }
        queue.push(loom::thread::current());
        drop(queue);
        loom::thread::park();
    }

    fn wake_all(&self, key: WaitKey) {
        let waiters = core::mem::take(&mut *self.queue(key).lock().unwrap());
        for waiter in waiters {
            waiter.unpark();
        }
    }
}

/// Runs a loom model like [`check_model`], allowing at least `max_branches`
/// scheduling points per execution (loom's default is 1000): for models
/// whose node is large enough that booting and auditing it come near that.
#[cfg(memdesc_loom)]
pub(crate) fn check_model_with_branches(max_branches: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.max_branches = builder.max_branches.max(max_branches);
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = executions.clone();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    std::eprintln!("loom explored {} executions", executions.load(std::sync::atomic::Ordering::Relaxed));
}

/// [`assert_model_fails`] for a model that needs [`check_model_with_branches`]:
/// the same fixed bound (2) and the same demand that the failure be the
/// protocol's, with at least `max_branches` branches per execution.
#[cfg(memdesc_loom)]
#[allow(dead_code)] // Called only by the mutant tests, compiled one mutant at a time.
pub(crate) fn assert_model_fails_with_branches(max_branches: usize, model: impl Fn() + Sync + Send + 'static) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.max_branches = builder.max_branches.max(max_branches);
        builder.check(model);
    }));
    let payload = outcome.expect_err("loom explored every interleaving and found no bug: the mutant survived");
    let message = payload
        .downcast_ref::<std::string::String>()
        .map(|s| s.as_str())
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    // Only what a protocol bug produces counts: a model's own "violated"
    // assertion, loom's race detector ("Causality violation"), or loom's
    // "deadlock" when every thread sleeps (a lost wake-up).
    assert!(
        message.contains("violated") || message.contains("Causality") || message.starts_with("deadlock"),
        "the model failed, but not on the protocol: {message}"
    );
    std::eprintln!("loom caught the mutant: {message}");
}
