//! `gup-fast-vs-split`: Jann Horn's case (seed 000). GUP-fast reads the head
//! from a tail page's compound word; before it increments, the owner
//! freezes the 2 MiB folio and splits it to order 0; the increment lands on
//! the old head, which no longer contains the page. The head recheck (P1.4)
//! must refuse it; without it the getter pins the wrong page.

use super::*;

/// CPU 0 runs GUP-fast, CPU 1 splits.
const GETTER: u32 = 0;
const SPLITTER: u32 = 1;

const STEPS: [(u32, StepAt); 8] = [
    (GETTER, StepAt::Act(Act::GupReadPte)),
    (GETTER, StepAt::Core(Failpoint::P1ReadHead)),
    (SPLITTER, StepAt::Act(Act::Freeze)),
    (SPLITTER, StepAt::Core(Failpoint::SplitFrozen)),
    (SPLITTER, StepAt::Core(Failpoint::SplitPiece)),
    (SPLITTER, StepAt::Core(Failpoint::SplitUnfreezeHead)),
    (GETTER, StepAt::Core(Failpoint::P1Increment)),
    (GETTER, StepAt::Core(Failpoint::P1HeadRecheck)),
];

/// The checks the pre-2021 code lacked.
const HISTORICAL_SKIPS: &[Failpoint] = &[Failpoint::P1HeadRecheck];

pub(super) fn run(variant: Variant, timeout: Duration) -> Result<RaceReport, RaceError> {
    let mut arena = Arena::new(ARENA_BYTES).map_err(RaceError::Map)?;
    let replay = ReplayPlatform::new(2, STEPS.to_vec(), skips(variant, HISTORICAL_SKIPS), timeout);
    let node = arena.boot(node_config(), &replay).map_err(RaceError::Boot)?;

    // Setup: a 2 MiB folio mapped by PTEs (one reference for the mapping),
    // and the PTE of its second page, which GUP-fast will follow.
    let thp = node.alloc(Order::PMD, Gfp::USER).map_err(|e| RaceError::Setup(format!("a 2 MiB folio: {e}")))?;
    let head = thp.pfn();
    let target = head.add(1);
    let pte = AtomicU64::new(pte_word(target)?);
    let frames = Frames { node };
    let nr_new = Order::PMD.nr_pages() - 1;

    let describe = |at: StepAt| {
        match at {
        StepAt::Act(Act::GupReadPte) => {
            format!("reads the PTE: pfn {target}, a tail of the 2 MiB folio at pfn {head}")
        }
        StepAt::Core(Failpoint::P1ReadHead) => {
            format!("reads pfn {target}'s compound head: {}", frames.describe_head(target))
        }
        StepAt::Act(Act::Freeze) => {
            format!("freezes folio {head}: refcount 1 -> {} (its one reference)", frames.refcount(head))
        }
        StepAt::Core(Failpoint::SplitFrozen) => format!(
            "splits to order 0: the old head is now {}; pfn {target} still names head pfn {} until its piece \
             is rewritten",
            frames.describe_head(head),
            frames.head(target)
        ),
        StepAt::Core(Failpoint::SplitPiece) => format!(
            "rewrites and unfreezes the {nr_new} new folios one by one, each unfrozen with Release (P2.5): pfn {target}'s \
             head is now {}, refcount {}",
            frames.describe_head(target),
            frames.refcount(target)
        ),
        StepAt::Core(Failpoint::SplitUnfreezeHead) => {
            format!("unfreezes the old head last: {}, refcount {}", frames.describe_head(head), frames.refcount(head))
        }
        StepAt::Core(Failpoint::P1Increment) => format!(
            "increments pfn {head}'s refcount: now {} (the old head: the increment succeeds)",
            frames.refcount(head)
        ),
        StepAt::Core(Failpoint::P1HeadRecheck) => {
            let now = frames.head(target);
            if replay.skips(Failpoint::P1HeadRecheck) {
                format!(
                    "no head recheck (historical code; it would find pfn {now}): keeps its reference, refcount {}",
                    frames.refcount(head)
                )
            } else {
                format!(
                    "rechecks pfn {target}'s head: pfn {now}, not {head}: drops its reference (refcount {}), Moved",
                    frames.refcount(head)
                )
            }
        }
        other => format!("{other:?}"),
    }
    };

    let (rows, getter, pieces) = std::thread::scope(|scope| {
        let getter = spawn_cpu(scope, &replay, GETTER, || gup_fast_one(node, &replay, &pte));
        let splitter = spawn_cpu(scope, &replay, SPLITTER, || -> Result<Vec<FolioRef<'_>>, String> {
            replay.act(Act::Freeze);
            let frozen = thp.try_freeze().map_err(|e| e.to_string())?;
            let pieces = frozen.split(Order::ZERO).map_err(|e| e.to_string())?;
            pieces.map(|piece| piece.unfreeze_one().map_err(|e| e.to_string())).collect()
        });
        let rows = drive(&replay, describe);
        (rows, join(getter, GETTER), join(splitter, SPLITTER))
    });
    let (rows, getter) = (rows?, getter?);
    let pieces = pieces?.map_err(RaceError::Setup)?;

    let found = validate(&getter, target, mapped(load(&pte)));
    drop((getter, pieces));
    Ok(RaceReport {
        scenario: "gup-fast-vs-split",
        variant,
        summary: ALL[0].summary,
        cpus: vec![
            CpuRole { cpu: GETTER, role: "GUP-fast (getter)" },
            CpuRole { cpu: SPLITTER, role: "THP split (owner)" },
        ],
        rows,
        outcome: outcome(variant, target, found, node),
    })
}
