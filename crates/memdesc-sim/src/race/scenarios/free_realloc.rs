//! `gup-fast-vs-free-realloc`: John Hubbard's case (seed 000). GUP-fast
//! reads the entry and the head; the page is unmapped, its folio freed and
//! the block reallocated as an order-2 folio, of which the page is again a
//! tail under the same head. The increment lands on the new folio and the
//! head recheck (P1.4) passes; only the entry recheck (P1.5) can refuse.
//! Without the rechecks the getter pins a page the entry no longer maps.

use super::*;

/// CPU 0 runs GUP-fast, CPU 1 unmaps and frees, CPU 2 allocates.
const GETTER: u32 = 0;
const UNMAPPER: u32 = 1;
const ALLOCATOR: u32 = 2;

const STEPS: [(u32, StepAt); 9] = [
    (GETTER, StepAt::Act(Act::GupReadPte)),
    (GETTER, StepAt::Core(Failpoint::P1ReadHead)),
    (UNMAPPER, StepAt::Act(Act::Unmap)),
    (UNMAPPER, StepAt::Core(Failpoint::FreeFolio)),
    (ALLOCATOR, StepAt::Act(Act::Alloc)),
    (ALLOCATOR, StepAt::Core(Failpoint::AllocPublish)),
    (GETTER, StepAt::Core(Failpoint::P1Increment)),
    (GETTER, StepAt::Core(Failpoint::P1HeadRecheck)),
    (GETTER, StepAt::Core(Failpoint::P1SourceRecheck)),
];

/// The checks the historical code lacked or had defeated (the entry
/// recheck by store reordering, which a schedule cannot force: see
/// docs/RACES.md).
const HISTORICAL_SKIPS: &[Failpoint] = &[Failpoint::P1HeadRecheck, Failpoint::P1SourceRecheck];

pub(super) fn run(variant: Variant, timeout: Duration) -> Result<RaceReport, RaceError> {
    let mut arena = Arena::new(ARENA_BYTES).map_err(RaceError::Map)?;
    let replay = ReplayPlatform::new(3, STEPS.to_vec(), skips(variant, HISTORICAL_SKIPS), timeout);
    let node = arena.boot(node_config(), &replay).map_err(RaceError::Boot)?;

    // Setup: every frame allocated but one block, so the allocator's choices
    // are forced; from it an order-1 folio, mapped, its tail in the PTE.
    let mut held = exhaust(node);
    let spare = held
        .iter()
        .position(|f| f.order() >= Order::TWO)
        .ok_or_else(|| RaceError::Setup("no block of order 2 or more to free".into()))?;
    let spare = held.swap_remove(spare);
    let block = (spare.pfn(), spare.order());
    drop(spare);
    let mapping = node.alloc(Order::ONE, Gfp::USER).map_err(|e| RaceError::Setup(format!("an order-1 folio: {e}")))?;
    let head = mapping.pfn();
    if head != block.0 {
        return Err(RaceError::Setup(format!(
            "the order-1 folio came from pfn {head}, not the free block at {}",
            block.0
        )));
    }
    let target = head.add(1);
    let pte = AtomicU64::new(pte_word(target)?);
    let frames = Frames { node };

    let describe = |at: StepAt| match at {
        StepAt::Act(Act::GupReadPte) => format!("reads the PTE: pfn {target}, the tail of order-1 folio {head}"),
        StepAt::Core(Failpoint::P1ReadHead) => {
            format!("reads pfn {target}'s compound head: {}", frames.describe_head(target))
        }
        StepAt::Act(Act::Unmap) => format!(
            "clears the PTE (Release) and puts the mapping's reference: refcount of {head} now {}, the last put",
            frames.refcount(head)
        ),
        StepAt::Core(Failpoint::FreeFolio) => format!(
            "frees folio {head}: it merges back into the free order-{} block at pfn {} (type {})",
            block.1,
            block.0,
            frames.type_of(block.0)
        ),
        StepAt::Act(Act::Alloc) => format!(
            "allocates an order-2 folio: gets the block at {}; pfn {target} is again a tail, of {}",
            frames.head(target),
            frames.describe_head(target)
        ),
        StepAt::Core(Failpoint::AllocPublish) => format!(
            "publishes folio {} (Release): refcount 0 -> {}",
            frames.head(target),
            frames.refcount(frames.head(target))
        ),
        StepAt::Core(Failpoint::P1Increment) => format!(
            "increments pfn {head}'s refcount: now {} (the new order-2 folio: the increment succeeds)",
            frames.refcount(head)
        ),
        StepAt::Core(Failpoint::P1HeadRecheck) => {
            let now = frames.head(target);
            let verdict = if now == head { "passes" } else { "fails" };
            if replay.skips(Failpoint::P1HeadRecheck) {
                format!("no head recheck (historical code; it would find pfn {now} and pass)")
            } else {
                format!(
                    "rechecks pfn {target}'s head: still pfn {now}: {verdict} (the head check cannot see this race)"
                )
            }
        }
        StepAt::Core(Failpoint::P1SourceRecheck) => {
            let now = mapped(load(&pte)).map_or_else(|| "nothing".to_owned(), |p| format!("pfn {p}"));
            if replay.skips(Failpoint::P1SourceRecheck) {
                format!(
                    "no entry recheck (historical: the PTE now maps {now}): keeps its reference, refcount {}",
                    frames.refcount(head)
                )
            } else {
                format!(
                    "rereads the PTE: maps {now}, not pfn {target}: drops its reference (refcount {}), SourceChanged",
                    frames.refcount(head)
                )
            }
        }
        other => format!("{other:?}"),
    };

    let (rows, getter, unmapped, realloc) = std::thread::scope(|scope| {
        let getter = spawn_cpu(scope, &replay, GETTER, || gup_fast_one(node, &replay, &pte));
        let unmapper = spawn_cpu(scope, &replay, UNMAPPER, || {
            replay.act(Act::Unmap);
            // Release: pairs with the getter's Acquire rereads (P1.5); the
            // clear happens before the put that frees the folio (P5).
            pte.store(0, Ordering::Release);
            drop(mapping);
        });
        let allocator = spawn_cpu(scope, &replay, ALLOCATOR, || {
            replay.act(Act::Alloc);
            node.alloc(Order::TWO, Gfp::USER).map_err(|e| e.to_string())
        });
        let rows = drive(&replay, describe);
        (rows, join(getter, GETTER), join(unmapper, UNMAPPER), join(allocator, ALLOCATOR))
    });
    let (rows, getter) = (rows?, getter?);
    unmapped?;
    let realloc = realloc?.map_err(RaceError::Setup)?;

    let found = validate(&getter, target, mapped(load(&pte)));
    drop((getter, realloc, held));
    Ok(RaceReport {
        scenario: "gup-fast-vs-free-realloc",
        variant,
        summary: ALL[1].summary,
        cpus: vec![
            CpuRole { cpu: GETTER, role: "GUP-fast (getter)" },
            CpuRole { cpu: UNMAPPER, role: "munmap + free" },
            CpuRole { cpu: ALLOCATOR, role: "allocator" },
        ],
        rows,
        outcome: outcome(variant, target, found, node),
    })
}
