//! Test scaffolding: page-aligned memory and small booted nodes.

use crate::buddy::{Node, NodeConfig, PcpConfig};
use crate::memmap::{MemoryLayout, PhysAddr, PhysRange, PAGE_SIZE};
use crate::platform::Platform;
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

/// Runs a loom model with the preemption bound from the environment
/// (`LOOM_MAX_PREEMPTIONS`, default 3).
#[cfg(memdesc_loom)]
pub(crate) fn check_model(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(model);
}

/// Asserts that loom finds a bug in `model` (a mutant's test): the model
/// must fail with a protocol assertion or a loom causality violation. The
/// bound is fixed (2), so the environment cannot make the search vacuous.
#[cfg(memdesc_loom)]
#[allow(dead_code)] // Called only by the mutant tests, compiled one mutant at a time.
pub(crate) fn assert_model_fails(model: impl Fn() + Sync + Send + 'static) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(model);
    }));
    let payload = outcome.expect_err("loom explored every interleaving and found no bug: the mutant survived");
    let message = payload
        .downcast_ref::<std::string::String>()
        .map(|s| s.as_str())
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(
        message.contains("violated") || message.contains("Causality"),
        "the model failed, but not on the protocol: {message}"
    );
    std::eprintln!("loom caught the mutant: {message}");
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
    builder.check(model);
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
    assert!(
        message.contains("violated") || message.contains("Causality"),
        "the model failed, but not on the protocol: {message}"
    );
    std::eprintln!("loom caught the mutant: {message}");
}
