//! `gup-fast-vs-split`: Jann Horn's case (seed 000). GUP-fast walks to a
//! PTE mapping a tail page of a THP and reads the head from the page's
//! compound word; before it increments, the owner splits the folio to
//! order 0 (`thp::split_folio`: migration entries, freeze, split, unfreeze,
//! remap); the increment lands on the old head, which no longer contains
//! the page. The PTE recheck cannot see it (the split remapped the same
//! page); the head recheck (P1.4) must refuse it.

use super::*;

/// CPU 0 runs GUP-fast, CPU 1 splits.
const GETTER: u32 = 0;
const SPLITTER: u32 = 1;

/// The schedule: the two variants part after the head recheck.
fn steps(variant: Variant) -> Vec<(u32, StepAt)> {
    let mut steps = vec![
        (GETTER, StepAt::Core(Failpoint::GupWalk)),
        (GETTER, StepAt::Core(Failpoint::P1ReadHead)),
        (SPLITTER, StepAt::Act(Act::ThpSplit)),
        (SPLITTER, StepAt::Core(Failpoint::SplitFrozen)),
        (SPLITTER, StepAt::Core(Failpoint::SplitPiece)),
        (SPLITTER, StepAt::Core(Failpoint::SplitUnfreezeHead)),
        (GETTER, StepAt::Core(Failpoint::P1Increment)),
        (GETTER, StepAt::Core(Failpoint::P1HeadRecheck)),
    ];
    steps.push(match variant {
        // Past the head recheck it lacks, to the entry recheck.
        Variant::Historical => (GETTER, StepAt::Core(Failpoint::GupRecheck)),
        // Refused at P1.4, to the slow path.
        Variant::Fixed => (GETTER, StepAt::Core(Failpoint::GupSlowPath)),
    });
    steps
}

/// The check the pre-2021 code lacked.
const HISTORICAL_SKIPS: &[Failpoint] = &[Failpoint::P1HeadRecheck];

pub(super) fn run(variant: Variant, timeout: Duration) -> Result<RaceReport, RaceError> {
    let mut arena = Arena::new(ARENA_BYTES).map_err(RaceError::Map)?;
    let replay = ReplayPlatform::new(2, steps(variant), skips(variant, HISTORICAL_SKIPS), timeout);
    let node = arena.boot(node_config(), &replay).map_err(RaceError::Boot)?;
    let tables = Mmu::table_return(node);
    let rcu = rcu(&replay)?;
    let mmu = Mmu::new(&rcu, &tables);
    let aspace = AddressSpace::new(&mmu).map_err(|e| RaceError::Setup(format!("address space: {e}")))?;

    // Setup: a THP, then an mprotect of its first page, which splits the
    // PMD mapping into a PTE table (the folio stays whole, PTE-mapped, as
    // in Jann's case); GUP-fast will go for the second page.
    let (base, head) = map_thp(&aspace)?;
    aspace.mprotect(base, PAGE, true).map_err(|e| RaceError::Setup(format!("mprotect: {e}")))?;
    let (va, target) = (base + PAGE, head.add(1));
    let frames = Frames { node };
    let refused = Cell::new(None);
    let nr_new = Order::PMD.nr_pages() - 1;

    let describe = |at: StepAt| match at {
        StepAt::Core(Failpoint::GupWalk) => format!(
            "walks to {va:#x} (RCU read section, Acquire loads): a PTE mapping pfn {target}, a tail of the \
             2 MiB folio at pfn {head}"
        ),
        StepAt::Core(Failpoint::P1ReadHead) => {
            format!("reads pfn {target}'s compound head: {}", frames.describe_head(target))
        }
        StepAt::Act(Act::ThpSplit) => format!(
            "locks the address space, turns the folio's 512 PTEs into migration entries, flushes the TLBs, \
             and freezes the folio at its mappings' count: refcount now {}",
            frames.refcount(head)
        ),
        StepAt::Core(Failpoint::SplitFrozen) => format!(
            "splits to order 0: the old head is now {}; pfn {target} still names head pfn {} until its piece \
             is rewritten",
            frames.describe_head(head),
            frames.head(target)
        ),
        StepAt::Core(Failpoint::SplitPiece) => format!(
            "rewrites and unfreezes the {nr_new} new folios one by one, each with Release (P2.5): pfn \
             {target}'s head is now {}, refcount {}",
            frames.describe_head(target),
            frames.refcount(target)
        ),
        StepAt::Core(Failpoint::SplitUnfreezeHead) => format!(
            "unfreezes the old head last ({}, refcount {}), then replaces the migration entries by PTEs for \
             the same pages (Release, P4): {va:#x} maps pfn {} again; unlocks",
            frames.describe_head(head),
            frames.refcount(head),
            mapped_at(&aspace, va).map_or_else(|| "nothing".to_owned(), |p| p.to_string())
        ),
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
                if now != head {
                    refused.set(Some("P1.4 head recheck"));
                }
                format!(
                    "rechecks pfn {target}'s head: pfn {now}, not {head}: drops its reference (refcount {}), Moved; \
                     GUP-fast gives up on the page",
                    frames.refcount(head)
                )
            }
        }
        StepAt::Core(Failpoint::GupRecheck) => format!(
            "rereads the PMD and the PTE: {va:#x} still maps pfn {}, so the recheck passes (the split \
             remapped the same page): GUP returns pfn {target} held by a reference on folio {head}",
            mapped_at(&aspace, va).map_or_else(|| "nothing".to_owned(), |p| p.to_string())
        ),
        StepAt::Core(Failpoint::GupSlowPath) => slow_path_row(&aspace, va),
        other => format!("{other:?}"),
    };

    let (rows, got, split) = std::thread::scope(|scope| {
        let getter = spawn_cpu(scope, &replay, GETTER, || gup_fast_one(&aspace, va));
        let splitter = spawn_cpu(scope, &replay, SPLITTER, || {
            replay.act(Act::ThpSplit);
            memdesc::thp::split_folio(&aspace, va, memdesc::thp::SplitMode::Uniform(Order::ZERO))
                .map_err(|e| e.to_string())
        });
        let rows = drive(&replay, describe);
        (rows, join(getter, GETTER), join(splitter, SPLITTER))
    });
    let (rows, got) = (rows?, got?);
    split?.map_err(|e| RaceError::Setup(format!("the split failed: {e}")))?;

    let found = validate(&got, &aspace, va);
    let fast_path = FastPath { fell_back: got.fell_back, refused_by: refused.get() };
    drop(got);
    drop(aspace);
    // Table frames go back through RCU callbacks: run them before the audit.
    mmu.barrier();
    Ok(RaceReport {
        scenario: "gup-fast-vs-split",
        variant,
        summary: ALL[0].summary,
        actor: "GUP-fast",
        cpus: vec![
            CpuRole { cpu: GETTER, role: "GUP-fast (getter)" },
            CpuRole { cpu: SPLITTER, role: "THP split (owner)" },
        ],
        rows,
        outcome: outcome(variant, target, found, fast_path, node),
    })
}
