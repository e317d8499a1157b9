//! memdesc's side of each comparison: a simulated node and the timed loops
//! run on it.
//!
//! Every goal boots its own node ([`with_node`]): 1 GiB of lazily backed
//! simulated RAM, two simulated CPUs, the calling thread bound to CPU 0.

use crate::harness::{run_threads, time_loop};
use memdesc::buddy::report::VmStat;
use memdesc::buddy::VmEvent;
use memdesc::{CpuId, FolioRef, Gfp, Node, NodeConfig, Order, Pfn};
use memdesc_sim::{Arena, SimPlatform};
use std::error::Error;
use std::hint::black_box;
use std::time::Duration;

/// Simulated RAM per node.
pub const RAM_BYTES: u64 = 1 << 30;
/// Simulated CPUs per node (P5 uses both).
pub const NR_CPUS: u32 = 2;

/// Boots a fresh node with `config` and runs `f` on it, with the calling
/// thread bound to CPU 0.
///
/// # Errors
/// The host refused the arena's mapping, the node did not boot, or the
/// node filed bad-page reports while `f` ran (the figures would then time a
/// broken path).
pub fn with_node<R>(
    config: NodeConfig,
    f: impl for<'n> FnOnce(&'n Node<'n>, &'n SimPlatform) -> R,
) -> Result<R, Box<dyn Error>> {
    let platform = SimPlatform::new(NR_CPUS)?;
    let _cpu = platform.bind_current_thread(CpuId(0))?;
    let mut arena = Arena::new(RAM_BYTES)?;
    let node = arena.boot(config, &platform)?;
    let result = f(node, &platform);
    let (reports, frames, _) = node.bad_pages();
    if reports != 0 {
        return Err(format!("{reports} bad-page reports ({frames} frames) during the benchmark").into());
    }
    Ok(result)
}

/// How the pcp lists served the allocations between two snapshots: the
/// share of hits, and refills and bulk frees per 1000 allocations.
pub fn pcp_note(before: &VmStat, after: &VmStat) -> String {
    let delta = |e: VmEvent| after.event(e) - before.event(e);
    // Frames; equal to allocations for the order-0 goals that call this.
    let allocs = (delta(VmEvent::PgallocNormal) + delta(VmEvent::PgallocMovable)).max(1) as f64;
    format!(
        "pcp hits {:.2}% of allocations, {:.1} refills and {:.1} bulk frees per 1000",
        100.0 * delta(VmEvent::PcpAllocHit) as f64 / allocs,
        1000.0 * delta(VmEvent::PcpRefill) as f64 / allocs,
        1000.0 * delta(VmEvent::PcpFreeBulk) as f64 / allocs,
    )
}

/// Alloc + drop pairs of one `order` folio: the pcp fast path for order 0
/// with pcp enabled, the zone's buddy lists otherwise.
#[inline(never)]
pub fn pair_loop(node: &Node<'_>, order: Order, gfp: Gfp, iters: u64) -> Duration {
    // The allocator's atomics keep every iteration; no per-iteration
    // black_box, whose stack store would slow the next locked instruction
    // (see `peers`).
    let (order, gfp) = black_box((order, gfp));
    time_loop(iters, || drop(node.alloc(order, gfp).expect("the node has free memory")))
}

/// Frozen order-0 alloc + drop pairs (`alloc_frozen` + drop of the
/// `FrozenFolio`): the pcp fast path with no refcount traffic (P1f).
#[inline(never)]
pub fn frozen_pair_loop(node: &Node<'_>, iters: u64) -> Duration {
    let gfp = black_box(Gfp::KERNEL);
    time_loop(iters, || drop(node.alloc_frozen(Order::ZERO, gfp).expect("the node has free memory")))
}

/// P1's pair as an embedder that owns its platform makes it: per operation
/// `HostPlatform::enter_local` (a static, inlined call: no virtual call),
/// `alloc_on` / `put_on` with the token, `exit_local`.
#[inline(never)]
#[allow(unsafe_code)]
pub fn pair_on_loop(node: &Node<'_>, platform: &SimPlatform, iters: u64) -> Duration {
    let gfp = black_box(Gfp::KERNEL);
    time_loop(iters, || {
        let cpu = platform.enter_local().expect("the bench thread is bound to a CPU");
        // SAFETY: the token is from the platform the bench node booted with,
        // and goes back to it just below.
        let folio = unsafe { node.alloc_on(&cpu, Order::ZERO, gfp) }.expect("the node has free memory");
        platform.exit_local(cpu);
        let cpu = platform.enter_local().expect("the bench thread is bound to a CPU");
        // SAFETY: as above.
        unsafe { node.put_on(&cpu, folio) };
        platform.exit_local(cpu);
    })
}

/// P1f's pair as [`pair_on_loop`] makes P1's: `alloc_frozen_on` +
/// `free_frozen_on`, each inside its own entry.
#[inline(never)]
#[allow(unsafe_code)]
pub fn frozen_pair_on_loop(node: &Node<'_>, platform: &SimPlatform, iters: u64) -> Duration {
    let gfp = black_box(Gfp::KERNEL);
    time_loop(iters, || {
        let cpu = platform.enter_local().expect("the bench thread is bound to a CPU");
        // SAFETY: the token is from the platform the bench node booted with,
        // and goes back to it just below.
        let folio = unsafe { node.alloc_frozen_on(&cpu, Order::ZERO, gfp) }.expect("the node has free memory");
        platform.exit_local(cpu);
        let cpu = platform.enter_local().expect("the bench thread is bound to a CPU");
        // SAFETY: as above.
        unsafe { node.free_frozen_on(&cpu, folio) };
        platform.exit_local(cpu);
    })
}

/// Batches: `batch.capacity()` order-0 allocations kept in `batch`, then all
/// dropped in allocation order.
#[inline(never)]
pub fn batch_loop<'n>(node: &'n Node<'n>, batch: &mut Vec<FolioRef<'n>>, iters: u64) -> Duration {
    let size = batch.capacity();
    time_loop(iters, || {
        for _ in 0..size {
            batch.push(node.alloc(Order::ZERO, Gfp::KERNEL).expect("the node has free memory"));
        }
        black_box(&*batch);
        batch.clear();
    })
}

/// Speculative get ([`Node::try_get`]) on `pfn`, a folio the caller holds,
/// then drop of the new reference.
#[inline(never)]
pub fn get_put_loop(node: &Node<'_>, pfn: Pfn, iters: u64) -> Duration {
    let pfn = black_box(pfn);
    time_loop(iters, || drop(node.try_get(pfn).expect("the caller holds the folio")))
}

/// `threads` threads, thread `t` bound to CPU `t`, each running `iters`
/// order-0 alloc + drop pairs on `node`; returns the wall time.
pub fn churn_threads(node: &Node<'_>, platform: &SimPlatform, threads: usize, iters: u64) -> Duration {
    lending(&[platform], || {
        run_threads(
            threads,
            |t| platform.bind_current_thread(CpuId(t as u32)).expect("CPU t is free"),
            |_| {
                pair_loop(node, Order::ZERO, Gfp::KERNEL, iters);
            },
        )
    })
}

/// Runs `f` with the calling thread's CPUs on `platforms` (it runs as CPU
/// 0 in [`with_node`]) given back, so threads `f` starts and joins can bind
/// them; takes them again afterwards. A CPU is never two threads'.
pub fn lending<R>(platforms: &[&SimPlatform], f: impl FnOnce() -> R) -> R {
    match platforms.split_first() {
        None => f(),
        Some((first, rest)) => first
            .slots()
            .while_unbound(|| lending(rest, f))
            .expect("the worker threads ended and gave the bench's CPU back"),
    }
}

/// `nodes.len()` threads, thread `t` running `iters` order-0 alloc + drop
/// pairs on its own `nodes[t].0` (bound to CPU 0 of its platform
/// `nodes[t].1`); returns the wall time. Two threads that share no node at
/// all: the reference for P5's scaling.
pub fn churn_separate_nodes(nodes: &[(&Node<'_>, &SimPlatform)], iters: u64) -> Duration {
    let platforms: Vec<&SimPlatform> = nodes.iter().map(|&(_, platform)| platform).collect();
    lending(&platforms, || {
        run_threads(
            nodes.len(),
            |t| nodes[t].1.bind_current_thread(CpuId(0)).expect("CPU 0 of its own platform is free"),
            |t| {
                pair_loop(nodes[t].0, Order::ZERO, Gfp::KERNEL, iters);
            },
        )
    })
}
