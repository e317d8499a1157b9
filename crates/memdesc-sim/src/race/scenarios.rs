//! The scenarios: seed 000's two races and seed 004's two, each a setup, a schedule, one
//! script per CPU, and a validation of what the getter ended up holding.
//!
//! Shared machinery first (boot, threads as CPUs, the driver loop, the
//! verdict), then one module per race.

use super::getter::{gup_fast_one, GupResult};
use super::replay::{Act, ReplayError, ReplayPlatform, StepAt};
use super::{CpuRole, FastPath, GetterResult, Outcome, RaceError, RaceReport, Row, Scenario, Variant};
use crate::arena::Arena;
use memdesc::pgtable::{AddressSpace, Entry, Mmu, HUGE_FRAMES, HUGE_SIZE};
use memdesc::platform::failpoints::Failpoint;
use memdesc::{CpuId, FolioRef, Gfp, Node, NodeConfig, Order, PcpConfig, Pfn, Rcu, RcuConfig, MAX_ORDER, PAGE_SIZE};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Duration;

pub(super) static ALL: &[Scenario] = &[
    Scenario {
        name: "gup-fast-vs-split",
        summary: "Jann Horn's case: GUP-fast reads a tail's head, the THP is frozen and split, \
                  the increment lands on the old head",
        run: split::run,
    },
    Scenario {
        name: "gup-fast-vs-free-realloc",
        summary: "John Hubbard's case: the folio is unmapped, freed and reallocated at another order \
                  while GUP-fast is between reading the entry and its increment",
        run: free_realloc::run,
    },
    Scenario {
        name: "isolate-vs-slab-rcu-free",
        summary: "Hugh Dickins' crash (seed 004): a pfn scanner's isolate step meets a slab frame whose RCU \
                  free waits, its callback's address in the word read for \"movable\"",
        run: isolate::run_rcu_free,
    },
    Scenario {
        name: "first-barrier-patch",
        summary: "Hyeonggon Yoo's interleaving (seed 004): slab test, rmb, movable test, rmb, slab test, with \
                  the slab allocated and freed between the tests",
        run: isolate::run_first_patch,
    },
];

/// The smallest arena: a few thousand usable frames.
const ARENA_BYTES: u64 = 16 << 20;

/// A node whose every allocation is reproducible: no per-CPU lists (frees
/// merge at once), no watermark reserve.
fn node_config() -> NodeConfig {
    NodeConfig {
        // One zone: page tables (unmovable) and user pages draw on the same
        // few frames.
        movable_percent: 0,
        pcp: PcpConfig { enabled: false, ..PcpConfig::default() },
        min_free_frames: Some(0),
    }
}

const PAGE: u64 = PAGE_SIZE as u64;

/// The pfn mapped at `va` now, read as GUP-fast reads it (lockless, in a
/// read section), or `None`.
fn mapped_at(aspace: &AddressSpace<'_, '_>, va: u64) -> Option<Pfn> {
    let section = aspace.mmu().rcu().read_lock();
    match aspace.walk(&section, va)?.entry {
        Entry::Page { pfn, huge: true, .. } => Some(pfn.add((va / PAGE) % HUGE_FRAMES)),
        Entry::Page { pfn, .. } => Some(pfn),
        _ => None,
    }
}

/// A process: an address space with one 2 MiB region at a 2 MiB-aligned
/// address, faulted in as one order-9 folio (a THP) mapped by its PMD.
fn map_thp<'m, 'a>(aspace: &AddressSpace<'m, 'a>) -> Result<(u64, Pfn), RaceError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| RaceError::Setup(format!("{what}: {e}"));
    let va = aspace.mmap_anon(HUGE_SIZE, true, true).map_err(|e| setup("mmap", &e))?;
    aspace.write(va, b"seed 000").map_err(|e| setup("first touch", &e))?;
    let head = mapped_at(aspace, va).ok_or_else(|| RaceError::Setup("the region is not mapped".into()))?;
    let order = aspace.mmu().node().memmap().compound_head(head).and_then(|(_, order)| order);
    if va % HUGE_SIZE != 0 || order != Some(Order::PMD) {
        return Err(RaceError::Setup(format!("no 2 MiB folio at {va:#x} (order {order:?})")));
    }
    Ok((va, head))
}

/// Snapshots of one frame, for the rows.
struct Frames<'n> {
    node: &'n Node<'n>,
}

impl Frames<'_> {
    fn refcount(&self, pfn: Pfn) -> u32 {
        self.node.memmap().page(pfn).map_or(0, |p| p.ref_count())
    }

    fn head(&self, pfn: Pfn) -> Pfn {
        self.node.memmap().compound_head(pfn).map_or(pfn, |(head, _)| head)
    }

    fn order(&self, head: Pfn) -> Option<Order> {
        self.node.memmap().compound_head(head).and_then(|(_, order)| order)
    }

    fn describe_head(&self, pfn: Pfn) -> String {
        let head = self.head(pfn);
        match self.order(head) {
            Some(order) => format!("pfn {head} (order {order}, type {})", self.type_of(head)),
            None => format!("pfn {head}"),
        }
    }

    fn type_of(&self, pfn: Pfn) -> String {
        self.node.memmap().page(pfn).map_or_else(|| "none".into(), |p| p.page_type().to_string())
    }
}

/// Spawns a scenario thread bound as `cpu`; a panic becomes an error and
/// aborts the replay instead of stalling it.
fn spawn_cpu<'s, 'e: 's, T: Send + 's>(
    scope: &'s Scope<'s, 'e>,
    replay: &'e ReplayPlatform,
    cpu: u32,
    body: impl FnOnce() -> T + Send + 's,
) -> ScopedJoinHandle<'s, Result<T, ReplayError>> {
    scope.spawn(move || {
        let binding = match replay.bind_current_thread(CpuId(cpu)) {
            Ok(binding) => binding,
            Err(error) => {
                replay.abort();
                return Err(ReplayError::Bind { cpu, error });
            }
        };
        let result = catch_unwind(AssertUnwindSafe(body));
        if result.is_err() {
            replay.abort();
        }
        // Still bound: `exit` finds the CPU by the binding.
        replay.exit();
        drop(binding);
        result.map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            ReplayError::Panicked { cpu, message }
        })
    })
}

/// Joins a scenario thread (whose panics `spawn_cpu` already caught).
fn join<T>(handle: ScopedJoinHandle<'_, Result<T, ReplayError>>, cpu: u32) -> Result<T, ReplayError> {
    handle.join().unwrap_or_else(|_| Err(ReplayError::Panicked { cpu, message: "unwinding failed".into() }))
}

/// Grants every step in turn and describes each once it is over.
fn drive(replay: &ReplayPlatform, describe: impl Fn(StepAt) -> String) -> Result<Vec<Row>, ReplayError> {
    let mut rows = Vec::new();
    for (index, &(cpu, at)) in replay.steps().iter().enumerate() {
        if let Err(e) = replay.run_step(index) {
            replay.abort();
            return Err(e);
        }
        let skipped = matches!(at, StepAt::Core(f) if replay.skips(f));
        rows.push(Row { index: index + 1, cpu, protocol_step: at.step(), at: at.name(), text: describe(at), skipped });
    }
    Ok(rows)
}

/// The row of GUP's slow path, from what `va` maps once it is done.
fn slow_path_row(aspace: &AddressSpace<'_, '_>, va: u64) -> String {
    let now = mapped_at(aspace, va).map_or_else(|| "nothing".to_owned(), |p| format!("pfn {p}"));
    format!(
        "slow path: under the address space's lock, faults {va:#x} in if needed and takes a reference: it maps {now}"
    )
}

/// What GUP holds, and what is wrong with it: a reference on a folio that
/// does not contain the page it claims, or on a page the address no longer
/// maps.
fn validate(result: &GupResult<'_, '_>, aspace: &AddressSpace<'_, '_>, va: u64) -> (GetterResult, Option<String>) {
    let run = match &result.run {
        Err(reason) => return (GetterResult::Failed { reason: reason.clone() }, None),
        Ok(run) => run,
    };
    let (page, folio) = (run.first_pfn(), run.folio_pfn());
    let node = aspace.mmu().node();
    let order = node.memmap().compound_head(folio).and_then(|(_, order)| order).unwrap_or(Order::ZERO);
    let held = GetterResult::Held { page: page.0, folio: folio.0, order: order.get() as u8 };
    let bug = if !(folio.0..folio.0 + order.nr_pages()).contains(&page.0) {
        Some(format!(
            "GUP says it holds pfn {page} at {va:#x}, but its reference is on folio {folio} (order {order}), \
             which no longer contains that page (seed 000)"
        ))
    } else if mapped_at(aspace, va) != Some(page) {
        let now = mapped_at(aspace, va).map_or_else(|| "nothing".to_owned(), |p| format!("pfn {p}"));
        Some(format!(
            "GUP holds pfn {page} (folio {folio}, order {order}) for {va:#x}, which now maps {now}: \
             it pins a page of someone else's allocation, not the one mapped (seed 000)"
        ))
    } else {
        None
    };
    (held, bug)
}

/// The verdict, once every reference is dropped and the address space torn
/// down: the node's audit must find every frame free again and no
/// invariant broken.
fn outcome(
    variant: Variant,
    target: Pfn,
    (getter, bug): (GetterResult, Option<String>),
    fast_path: FastPath,
    node: &Node<'_>,
) -> Outcome {
    let audit = node.audit();
    let leaked_frames = audit.allocated;
    let violations = audit.violations;
    let clean = leaked_frames == 0 && violations == 0;
    let (as_expected, verdict) = match (variant, fast_path.refused_by, &bug) {
        (Variant::Fixed, Some(by), None) if fast_path.fell_back => {
            let then = match &getter {
                GetterResult::Held { page, .. } => format!("took pfn {} under the lock", Pfn(*page)),
                GetterResult::Failed { reason } => format!("failed: {reason}"),
            };
            (clean, format!("the fixed code held: the {by} refused the reference; the slow path {then}"))
        }
        (Variant::Fixed, _, Some(bug)) => (false, format!("the fixed code let the race through: {bug}")),
        (Variant::Fixed, _, None) => (
            false,
            "the fixed code took no wrong reference, but no recheck refused one: the race did not happen".into(),
        ),
        (Variant::Historical, _, Some(bug)) => {
            (clean, format!("the historical code shows the bug, caught by validation: {bug}"))
        }
        (Variant::Historical, _, None) => {
            (false, "the historical code did not show the bug: the race did not happen".into())
        }
    };
    let verdict = match (as_expected, clean) {
        (true, _) => format!("PASS: {verdict}"),
        (false, true) => format!("FAIL: {verdict}"),
        (false, false) => format!("FAIL: {verdict}; {leaked_frames} frames leaked, {violations} audit violations"),
    };
    Outcome { target_pfn: target.0, getter, fast_path, bug, leaked_frames, violations, as_expected, verdict }
}

/// The RCU and MMU every scenario's process runs on.
fn rcu(replay: &ReplayPlatform) -> Result<Rcu<'_>, RaceError> {
    Rcu::new(replay, RcuConfig::default()).map_err(|e| RaceError::Setup(format!("rcu: {e}")))
}

/// Allocates every frame of the node, largest blocks first, so the
/// allocator has nothing but what the scenario frees.
fn exhaust<'n>(node: &'n Node<'n>) -> Vec<FolioRef<'n>> {
    let mut held = Vec::new();
    for order in (0..=MAX_ORDER).rev().filter_map(Order::new) {
        while let Ok(folio) = node.alloc(order, Gfp::USER) {
            held.push(folio);
        }
    }
    held
}

mod split;

mod free_realloc;

mod isolate;

/// The skip set of a variant: the checks the historical code lacked.
fn skips(variant: Variant, historical: &[Failpoint]) -> Vec<Failpoint> {
    match variant {
        Variant::Historical => historical.to_vec(),
        Variant::Fixed => Vec::new(),
    }
}
