//! The scenarios: seed 000's two races, each a setup, a schedule, one
//! script per CPU, and a validation of what the getter ended up holding.
//!
//! Shared machinery first (boot, threads as CPUs, the driver loop, the
//! verdict), then one module per race.

use super::getter::{gup_fast_one, GetterRefusal};
use super::replay::{Act, ReplayError, ReplayPlatform, StepAt};
use super::{CpuRole, GetterResult, Outcome, RaceError, RaceReport, Row, Scenario, Variant};
use crate::arena::Arena;
use memdesc::pgtable::{Entry, Level, Prot};
use memdesc::platform::failpoints::Failpoint;
use memdesc::{CpuId, FolioRef, Gfp, Node, NodeConfig, Order, PcpConfig, Pfn, MAX_ORDER};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
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
];

/// The smallest arena: a few thousand usable frames.
const ARENA_BYTES: u64 = 16 << 20;

/// A node whose every allocation is reproducible: no per-CPU lists (frees
/// merge at once), no watermark reserve.
fn node_config() -> NodeConfig {
    NodeConfig {
        pcp: PcpConfig { enabled: false, ..PcpConfig::default() },
        min_free_frames: Some(0),
        ..NodeConfig::default()
    }
}

/// A PTE word mapping `pfn` read-write.
fn pte_word(pfn: Pfn) -> Result<u64, RaceError> {
    let prot = Prot { write: true, user: true, accessed: true, dirty: false };
    Entry::Page { pfn, prot, huge: false }.encode().map_err(|e| RaceError::Setup(e.to_string()))
}

/// The pfn a PTE word maps, if any.
fn mapped(word: u64) -> Option<Pfn> {
    match Entry::decode(word, Level::Pte) {
        Entry::Page { pfn, .. } => Some(pfn),
        _ => None,
    }
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
        replay.bind_current_thread(CpuId(cpu));
        let result = catch_unwind(AssertUnwindSafe(body));
        if result.is_err() {
            replay.abort();
        }
        replay.exit();
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

/// What the getter holds, and what is wrong with it: a folio that does not
/// contain the pfn it went for, or one the entry no longer maps.
fn validate(
    getter: &Result<FolioRef<'_>, GetterRefusal>,
    target: Pfn,
    entry_now: Option<Pfn>,
) -> (GetterResult, Option<String>) {
    match getter {
        Err(refusal) => (GetterResult::Refused { reason: refusal.to_string(), by: refusal.step() }, None),
        Ok(folio) => {
            let (pfn, order) = (folio.pfn(), folio.order());
            let held = GetterResult::Held { pfn: pfn.0, order: order.get() as u8 };
            let bug = if !folio.contains(target) {
                Some(format!(
                    "the getter holds folio {pfn} (order {order}), which no longer contains pfn {target}: \
                     its reference pins another page than the one mapped (seed 000)"
                ))
            } else if entry_now != Some(target) {
                let now = entry_now.map_or_else(|| "nothing".to_owned(), |p| format!("pfn {p}"));
                Some(format!(
                    "the getter holds folio {pfn} (order {order}) for pfn {target}, but the entry now maps {now}: \
                     it pins a page of someone else's allocation, not the one mapped (seed 000)"
                ))
            } else {
                None
            };
            (held, bug)
        }
    }
}

/// The verdict, once every reference is dropped: the node's audit must find
/// every frame free again and no invariant broken.
fn outcome(variant: Variant, target: Pfn, (getter, bug): (GetterResult, Option<String>), node: &Node<'_>) -> Outcome {
    let audit = node.audit();
    let leaked_frames = audit.allocated;
    let violations = audit.violations;
    let clean = leaked_frames == 0 && violations == 0;
    let (as_expected, verdict) = match (variant, &getter, &bug) {
        (Variant::Fixed, GetterResult::Refused { by, .. }, None)
            if by.starts_with("P1.4") || by.starts_with("P1.5") =>
        {
            (clean, format!("the fixed code held: the {by} refused the reference"))
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
    Outcome { target_pfn: target.0, getter, bug, leaked_frames, violations, as_expected, verdict }
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

/// The skip set of a variant: the checks the historical code lacked.
fn skips(variant: Variant, historical: &[Failpoint]) -> Vec<Failpoint> {
    match variant {
        Variant::Historical => historical.to_vec(),
        Variant::Fixed => Vec::new(),
    }
}

/// Reads an entry word for a row or the validation. Acquire: pairs with the
/// scenario's Release stores of the entry (P4); the steps are serialised by
/// the replay anyway.
fn load(pte: &AtomicU64) -> u64 {
    pte.load(Ordering::Acquire)
}
