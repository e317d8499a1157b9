//! Seed 004's races: a pfn scanner runs the isolate step
//! (`migrate::isolate_movable_page`) on a frame a slab allocates and frees
//! through RCU.
//!
//! - `isolate-vs-slab-rcu-free`: Hugh Dickins' crash. Historical variant:
//!   the slab frame is counted and its RCU head's callback word lies over
//!   `mapping`; the scanner, which infers "movable" from that word and has
//!   no slab test, calls the movable ops on the slab frame, whose own check
//!   reports it. Fixed: the slab frame is frozen and typed; the scanner's
//!   speculative get (ISO.1, P1.3) refuses it.
//! - `first-barrier-patch`: Hyeonggon Yoo's interleaving against Babka's
//!   first patch (slab test, rmb, movable test, rmb, slab test): the slab
//!   is allocated after the first slab test and freed before the second,
//!   and the movable test in between reads its RCU head's word. Fixed: no
//!   window exists in which the frame is counted and a slab.
//!
//! The fixed variant's slab is the real allocator (`slab::SlabAllocator`,
//! a TYPESAFE_BY_RCU cache, bound to its CPU so its per-CPU sheaves are
//! used): the object's allocation takes a new slab frame (P7.1, P7.2), its
//! free and a `shrink` flush the sheaf and empty the slab, which goes to
//! `call_rcu_frame` (P7.4). The historical variant keeps
//! `historical::CountedSlab` (the 2022 design by definition): it answers
//! Skip at `IsoTypeCheck` (the type-tag check the historical code lacked),
//! and for Hugh Dickins' kernel at the two slab tests too (they came with
//! the first patch).

use super::*;
use memdesc::migrate::historical::{CountedSlab, RCU_FREE_SLAB_OPS, RCU_FREE_SLAB_WORD};
use memdesc::migrate::{isolate_movable_page, CountingOps, IsolateError, IsolatedPage, MovableOpsRegistry};
use memdesc::slab::{CacheConfig, SlabAllocator, SlabEvent, SlabFlags};
use memdesc::{GetError, PageType};

/// CPU 0 runs the scanner, CPU 1 the slab.
const SCANNER: u32 = 0;
const SLAB: u32 = 1;

/// The historical slab's state in its overlapping word (a freelist
/// offset): not "movable" to the historical reader.
const SLAB_STATE: u64 = 0x40;
/// The historical slab's cache id.
const CACHE: u16 = 1;
/// The fixed variant's cache: TYPESAFE_BY_RCU (its empty slabs go back
/// through RCU), objects small enough that one order-0 slab fills a sheaf.
fn typesafe_cache() -> CacheConfig {
    CacheConfig { flags: SlabFlags::TYPESAFE_BY_RCU, ..CacheConfig::new("seed004", 64) }
}

/// Which race.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Race {
    /// Hugh Dickins' crash.
    RcuFree,
    /// Hyeonggon Yoo's interleaving.
    FirstPatch,
}

impl Race {
    const fn name(self) -> &'static str {
        match self {
            Self::RcuFree => "isolate-vs-slab-rcu-free",
            Self::FirstPatch => "first-barrier-patch",
        }
    }

    const fn summary(self) -> &'static str {
        match self {
            Self::RcuFree => ALL[2].summary,
            Self::FirstPatch => ALL[3].summary,
        }
    }
}

/// The fixed design's schedule, the same for both races: the frame is
/// never counted, so the get refuses it whenever it comes.
fn fixed_steps() -> Vec<(u32, StepAt)> {
    vec![
        (SLAB, StepAt::Act(Act::SlabAlloc)),
        (SLAB, StepAt::Act(Act::SlabRcuFree)),
        (SCANNER, StepAt::Core(Failpoint::P1Increment)),
        (SLAB, StepAt::Act(Act::GracePeriod)),
    ]
}

fn steps(race: Race, variant: Variant) -> Vec<(u32, StepAt)> {
    match (race, variant) {
        (_, Variant::Fixed) => fixed_steps(),
        // Hugh Dickins' report: the scanner meets the slab while its RCU
        // free waits, the callback's address in `mapping`.
        (Race::RcuFree, Variant::Historical) => vec![
            (SLAB, StepAt::Act(Act::CountedSlabAlloc)),
            (SLAB, StepAt::Core(Failpoint::HistoricalRcuHead)),
            (SCANNER, StepAt::Core(Failpoint::P1Increment)),
            (SCANNER, StepAt::Core(Failpoint::IsoTypeCheck)),
            (SCANNER, StepAt::Core(Failpoint::IsoMovableTest)),
            (SCANNER, StepAt::Core(Failpoint::IsoOps)),
            (SLAB, StepAt::Core(Failpoint::HistoricalSlabFree)),
        ],
        // Hyeonggon Yoo's table, row by row.
        (Race::FirstPatch, Variant::Historical) => vec![
            (SLAB, StepAt::Act(Act::CountedSlabAlloc)),
            (SCANNER, StepAt::Core(Failpoint::P1Increment)),
            (SCANNER, StepAt::Core(Failpoint::IsoTypeCheck)),
            (SCANNER, StepAt::Core(Failpoint::IsoSlabTest)),
            (SLAB, StepAt::Core(Failpoint::HistoricalSetSlab)),
            (SLAB, StepAt::Core(Failpoint::HistoricalRcuHead)),
            (SCANNER, StepAt::Core(Failpoint::IsoMovableTest)),
            (SLAB, StepAt::Core(Failpoint::HistoricalSlabFree)),
            (SCANNER, StepAt::Core(Failpoint::IsoSlabRecheck)),
            (SCANNER, StepAt::Core(Failpoint::IsoOps)),
        ],
    }
}

/// The checks the historical code lacked.
fn historical_skips(race: Race) -> &'static [Failpoint] {
    match race {
        // No type tag and no slab test: `__PageMovable()` alone.
        Race::RcuFree => &[Failpoint::IsoTypeCheck, Failpoint::IsoSlabTest, Failpoint::IsoSlabRecheck],
        // No type tag; the first patch's two slab tests run.
        Race::FirstPatch => &[Failpoint::IsoTypeCheck],
    }
}

pub(super) fn run_rcu_free(variant: Variant, timeout: Duration) -> Result<RaceReport, RaceError> {
    run(Race::RcuFree, variant, timeout)
}

pub(super) fn run_first_patch(variant: Variant, timeout: Duration) -> Result<RaceReport, RaceError> {
    run(Race::FirstPatch, variant, timeout)
}

fn run(race: Race, variant: Variant, timeout: Duration) -> Result<RaceReport, RaceError> {
    let mut arena = Arena::new(ARENA_BYTES).map_err(RaceError::Map)?;
    let replay = ReplayPlatform::new(2, steps(race, variant), skips(variant, historical_skips(race)), timeout);
    let node = arena.boot(node_config(), &replay).map_err(RaceError::Boot)?;
    let setup = |what: &str, e: &dyn std::fmt::Display| RaceError::Setup(format!("{what}: {e}"));
    // The slab return outlives the RCU that queues frames to it.
    let slab_return = SlabAllocator::slab_return(node);
    let rcu = rcu(&replay)?;
    let slab = SlabAllocator::new(node, &rcu, &slab_return).map_err(|e| setup("slab allocator", &e))?;
    let cache = slab.create_cache(typesafe_cache()).map_err(|e| setup("cache", &e))?;
    if cache.slab_shape().1 != 1 {
        return Err(RaceError::Setup(format!("the cache's slabs are {} frames, not one", cache.slab_shape().1)));
    }
    let cache_id = cache.id();
    // A movable driver, registered where the RCU callback's address decodes
    // to: the ops the historical reader will call.
    let ops = CountingOps::new(RCU_FREE_SLAB_OPS);
    let mut registry = MovableOpsRegistry::new();
    registry.register(RCU_FREE_SLAB_OPS, &ops).map_err(|e| RaceError::Setup(format!("registry: {e}")))?;

    // The frame the slab will get: per-CPU lists are off, so the next
    // order-0 allocation (the historical slab's, or the real cache's first
    // slab: the allocator and its caches' structs are placed already) lands
    // where this probe did.
    let probe = node.alloc(Order::ZERO, Gfp::KERNEL).map_err(|e| RaceError::Setup(format!("probe: {e}")))?;
    let target = probe.pfn();
    drop(probe);
    let frames = Frames { node };
    let word = format!("{RCU_FREE_SLAB_WORD:#x}");
    let historical = variant == Variant::Historical;

    let describe = |at: StepAt| match at {
        StepAt::Act(Act::SlabAlloc) => format!(
            "allocates an object of the TYPESAFE_BY_RCU cache: its CPU's sheaf is empty, the refill takes a new \
             slab frozen and typed at once (P7.1): pfn {target}, type {}, refcount {}; its state in the owner \
             words, written by the frozen owner and then under the list lock (P7.2); {} objects taken from it \
             into the sheaf",
            frames.type_of(target),
            frames.refcount(target),
            slab.event(SlabEvent::SlabAlloc)
        ),
        StepAt::Act(Act::SlabRcuFree) => format!(
            "frees the object into its CPU's sheaf and shrinks the cache: the sheaf flushes into the slab, which \
             empties, leaves the lists and goes to call_rcu_frame with the RCU head over the owner words (P7.4); \
             the frame stays frozen (refcount {}, type {}: off every cache's lists)",
            frames.refcount(target),
            frames.type_of(target)
        ),
        StepAt::Act(Act::GracePeriod) => format!(
            "the grace period ends (rcu_barrier); the slab return frees the frame: type {}",
            frames.type_of(target)
        ),
        StepAt::Act(Act::CountedSlabAlloc) if race == Race::RcuFree => format!(
            "alloc_pages: pfn {target} counted (refcount {}), then __folio_set_slab: type {}; the slab's state \
             ({SLAB_STATE:#x}) in `mapping`",
            frames.refcount(target),
            frames.type_of(target)
        ),
        StepAt::Act(Act::CountedSlabAlloc) => format!(
            "folio = alloc_pages(): pfn {target} counted, refcount {}, type {}",
            frames.refcount(target),
            frames.type_of(target)
        ),
        StepAt::Core(Failpoint::HistoricalSetSlab) => format!(
            "__folio_set_slab: type {}; smp_wmb; the slab's state ({SLAB_STATE:#x}) in `mapping`",
            frames.type_of(target)
        ),
        StepAt::Core(Failpoint::HistoricalRcuHead) => format!(
            "call_rcu(&slab->rcu_head, rcu_free_slab): the head lies over `mapping`, which now holds the \
             callback's address {word} (bit 1 set); the frame stays counted (refcount {})",
            frames.refcount(target)
        ),
        StepAt::Core(Failpoint::HistoricalSlabFree) => format!(
            "after the grace period: mapping = NULL; smp_wmb; __folio_clear_slab (type {}); the slab's put: \
             refcount {}",
            frames.type_of(target),
            frames.refcount(target)
        ),
        StepAt::Core(Failpoint::P1Increment) if frames.refcount(target) == 0 => format!(
            "speculative get of pfn {target} (ISO.1, P1.3): refcount 0, type {}: frozen, no reference; the \
             scanner counts a slab frame and moves on",
            frames.type_of(target)
        ),
        StepAt::Core(Failpoint::P1Increment) => format!(
            "folio_try_get(): refcount now {} (type {}): the scanner holds a reference",
            frames.refcount(target),
            frames.type_of(target)
        ),
        StepAt::Core(Failpoint::IsoTypeCheck) => {
            "no type tag to check (historical): \"movable?\" is inferred from `mapping`".to_owned()
        }
        StepAt::Core(Failpoint::IsoSlabTest) => format!(
            "folio_test_slab(): type {} -> {}; smp_rmb",
            frames.type_of(target),
            if frames.type_of(target).starts_with("slab") { "slab, skip it" } else { "false, go on" }
        ),
        StepAt::Core(Failpoint::IsoMovableTest) if race == Race::RcuFree => format!(
            "__PageMovable(): `mapping` is {word}, bit 1 set: \"movable\", ops at `mapping` minus the low bits \
             (slot {RCU_FREE_SLAB_OPS}); no slab test in this kernel"
        ),
        StepAt::Core(Failpoint::IsoMovableTest) => {
            format!("__folio_test_movable(): `mapping` is {word}, the RCU head's callback: true; smp_rmb")
        }
        StepAt::Core(Failpoint::IsoSlabRecheck) => {
            format!("folio_test_slab() again: type {} -> false: the page passes as movable", frames.type_of(target))
        }
        StepAt::Core(Failpoint::IsoOps) => format!(
            "folio_trylock() succeeds; calls ops[{RCU_FREE_SLAB_OPS}].isolate on pfn {target} (type {}): the \
             ops' own check reports {} misuse(s), {} on a slab frame",
            frames.type_of(target),
            ops.misuses(),
            ops.slab_misuses()
        ),
        other => format!("{other:?}"),
    };

    let (rows, scanned, slab_done) = std::thread::scope(|scope| {
        let scanner = spawn_cpu(scope, &replay, SCANNER, || isolate_movable_page(node, &registry, target));
        let slab = spawn_cpu(scope, &replay, SLAB, || -> Result<(), String> {
            if historical {
                // Each call waits at its own failpoint for its turn.
                replay.act(Act::CountedSlabAlloc);
                let slab = CountedSlab::alloc(node, CACHE, SLAB_STATE).map_err(|e| e.to_string())?;
                slab.rcu_head();
                slab.free();
            } else {
                replay.act(Act::SlabAlloc);
                let object = cache.alloc().map_err(|e| e.to_string())?;
                let found = node.memmap().page(target).map(|p| p.page_type());
                if found != Some(PageType::Slab { cache: cache_id }) {
                    return Err(format!("the slab did not land at pfn {target} (its type is {found:?})"));
                }
                replay.act(Act::SlabRcuFree);
                drop(object);
                slab.shrink(&cache);
                replay.act(Act::GracePeriod);
                slab.rcu_barrier();
            }
            Ok(())
        });
        let rows = drive(&replay, describe);
        (rows, join(scanner, SCANNER), join(slab, SLAB))
    });
    let (rows, scanned) = (rows?, scanned?);
    slab_done?.map_err(|e| RaceError::Setup(format!("the slab: {e}")))?;

    let outcome = isolate_outcome(race, variant, target, &scanned, &ops);
    drop(scanned);
    slab.destroy(cache).map_err(|e| setup("destroy", &e))?;
    drop(slab);
    rcu.barrier();
    let audit = node.audit();
    let mut outcome = outcome;
    outcome.leaked_frames = audit.allocated;
    outcome.violations = audit.violations;
    if audit.allocated != 0 || audit.violations != 0 {
        outcome.as_expected = false;
        outcome.verdict = format!(
            "FAIL: {}; {} frames leaked, {} audit violations",
            outcome.verdict, audit.allocated, audit.violations
        );
    }
    Ok(RaceReport {
        scenario: race.name(),
        variant,
        summary: race.summary(),
        actor: "the scanner's isolate step",
        cpus: vec![
            CpuRole { cpu: SCANNER, role: "pfn scanner (isolate step)" },
            CpuRole {
                cpu: SLAB,
                role: match variant {
                    Variant::Historical => "slab (alloc, RCU free)",
                    Variant::Fixed => "slab allocator (TYPESAFE_BY_RCU cache)",
                },
            },
        ],
        rows,
        outcome,
    })
}

/// What the scanner ended with, and the verdict (the audit is added by the
/// caller once everything is dropped).
fn isolate_outcome(
    race: Race,
    variant: Variant,
    target: Pfn,
    scanned: &Result<IsolatedPage<'_, '_>, IsolateError>,
    ops: &CountingOps,
) -> Outcome {
    let getter = match scanned {
        Ok(page) => GetterResult::Held { page: target.0, folio: page.folio().pfn().0, order: 0 },
        Err(e) => GetterResult::Failed { reason: e.to_string() },
    };
    let refused_by = match scanned {
        Err(IsolateError::Get(GetError::Frozen)) => Some("ISO.1 speculative get (the frame is frozen)"),
        Err(IsolateError::Get(GetError::Free)) => Some("ISO.1 speculative get (the frame is free)"),
        Err(IsolateError::NotMovable(_)) => Some("ISO.2 type check"),
        _ => None,
    };
    let fast_path = FastPath { fell_back: scanned.is_err(), refused_by };
    let bug = (ops.misuses() > 0).then(|| {
        let on = if ops.slab_misuses() > 0 { "a slab frame" } else { "a frame that is no longer a slab nor movable" };
        let how = match race {
            Race::RcuFree => "\"movable\" read from the word the slab's RCU head overlaps (seed 004, Hugh Dickins)",
            Race::FirstPatch => {
                "both slab tests passed around a movable test that read the slab's RCU head \
                 (seed 004, Hyeonggon Yoo's interleaving)"
            }
        };
        format!("movable ops called on {on} (pfn {target}): {how}; the ops' own check caught it")
    });
    let (as_expected, verdict) = match (variant, &bug, refused_by) {
        (Variant::Fixed, None, Some(by)) => (true, format!("PASS: the fixed code held: the {by} refused the frame")),
        (Variant::Fixed, Some(bug), _) => (false, format!("FAIL: the fixed code let the race through: {bug}")),
        (Variant::Fixed, None, None) => (false, "FAIL: the fixed code refused nothing: the race did not happen".into()),
        (Variant::Historical, Some(bug), _) => {
            (true, format!("PASS: the historical code shows the bug, caught and reported: {bug}"))
        }
        (Variant::Historical, None, _) => {
            (false, "FAIL: the historical code did not show the bug: the race did not happen".into())
        }
    };
    Outcome { target_pfn: target.0, getter, fast_path, bug, leaked_frames: 0, violations: 0, as_expected, verdict }
}
