//! `gup-fast-vs-free-realloc`: John Hubbard's question (seed 000). GUP-fast
//! walks to the PMD mapping a THP and reads the head of the page it wants;
//! the process drops the range (`madvise(MADV_DONTNEED)`), the folio is
//! freed, and its block is reallocated as an order-2 folio of which the
//! page is again a tail under the same head. The increment lands on the
//! new folio and the head recheck (P1.4) passes; only the entry recheck
//! can refuse. Without the rechecks GUP holds a page the address no longer
//! maps.

use super::*;

/// CPU 0 runs GUP-fast, CPU 1 is the process dropping its range, CPU 2
/// allocates.
const GETTER: u32 = 0;
const ZAPPER: u32 = 1;
const ALLOCATOR: u32 = 2;

/// The schedule: the two variants part after the entry recheck.
fn steps(variant: Variant) -> Vec<(u32, StepAt)> {
    let mut steps = vec![
        (GETTER, StepAt::Core(Failpoint::GupWalk)),
        (GETTER, StepAt::Core(Failpoint::P1ReadHead)),
        (ZAPPER, StepAt::Act(Act::Zap)),
        (ZAPPER, StepAt::Core(Failpoint::FreeFolio)),
        (ALLOCATOR, StepAt::Act(Act::Alloc)),
        (ALLOCATOR, StepAt::Core(Failpoint::AllocPublish)),
        (GETTER, StepAt::Core(Failpoint::P1Increment)),
        (GETTER, StepAt::Core(Failpoint::P1HeadRecheck)),
        (GETTER, StepAt::Core(Failpoint::GupRecheck)),
    ];
    if variant == Variant::Fixed {
        // Refused at the entry recheck, to the slow path.
        steps.push((GETTER, StepAt::Core(Failpoint::GupSlowPath)));
    }
    steps
}

/// The checks the historical code lacked or had defeated (the entry
/// recheck by store reordering, which a schedule cannot force: see
/// docs/RACES.md).
const HISTORICAL_SKIPS: &[Failpoint] = &[Failpoint::P1HeadRecheck, Failpoint::GupRecheck];

pub(super) fn run(variant: Variant, timeout: Duration) -> Result<RaceReport, RaceError> {
    let mut arena = Arena::new(ARENA_BYTES).map_err(RaceError::Map)?;
    let replay = ReplayPlatform::new(3, steps(variant), skips(variant, HISTORICAL_SKIPS), timeout);
    let node = arena.boot(node_config(), &replay).map_err(RaceError::Boot)?;
    let tables = Mmu::table_return(node);
    let rcu = rcu(&replay)?;
    let mmu = Mmu::new(&rcu, &tables);
    let aspace = AddressSpace::new(&mmu).map_err(|e| RaceError::Setup(format!("address space: {e}")))?;

    // Setup: a THP mapped by its PMD; then every other frame allocated, so
    // the allocator's only free block will be the THP's own.
    let (base, head) = map_thp(&aspace)?;
    let held = exhaust(node);
    let (va, target) = (base + PAGE, head.add(1));
    let frames = Frames { node };
    let refused = Cell::new(None);

    let describe = |at: StepAt| match at {
        StepAt::Core(Failpoint::GupWalk) => format!(
            "walks to {va:#x} (RCU read section, Acquire loads): a PMD leaf mapping the 2 MiB folio at pfn \
             {head}; the page is pfn {target}"
        ),
        StepAt::Core(Failpoint::P1ReadHead) => {
            format!("reads pfn {target}'s compound head: {}", frames.describe_head(target))
        }
        StepAt::Act(Act::Zap) => format!(
            "drops the range (MADV_DONTNEED): clears the PMD (Release), flushes the TLBs, then puts the \
             mapping's reference: refcount of {head} now {}, the last put",
            frames.refcount(head)
        ),
        StepAt::Core(Failpoint::FreeFolio) => format!(
            "frees folio {head}: its block goes back to the buddy allocator (type {}), pfn {target} a plain \
             free frame",
            frames.type_of(head)
        ),
        StepAt::Act(Act::Alloc) => format!(
            "allocates an order-2 folio: gets the block at pfn {}; pfn {target} is again a tail, of {}",
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
                format!("no head recheck (historical code; it would find pfn {now}: it {verdict})")
            } else {
                if now != head {
                    refused.set(Some("P1.4 head recheck"));
                }
                format!("rechecks pfn {target}'s head: pfn {now}: it {verdict} (a head check cannot see this race)")
            }
        }
        StepAt::Core(Failpoint::GupRecheck) => {
            let now = mapped_at(&aspace, va);
            let now_text = now.map_or_else(|| "nothing".to_owned(), |p| format!("pfn {p}"));
            if replay.skips(Failpoint::GupRecheck) {
                format!(
                    "no entry recheck (historical: {va:#x} now maps {now_text}): GUP returns pfn {target}, held \
                     by a reference on folio {head} (refcount {})",
                    frames.refcount(head)
                )
            } else {
                if now != Some(target) {
                    refused.set(Some("P6.12 entry recheck"));
                }
                format!(
                    "rereads the PMD: {va:#x} maps {now_text}, not pfn {target}: drops its reference (refcount \
                     {}); GUP-fast gives up on the page",
                    frames.refcount(head)
                )
            }
        }
        StepAt::Core(Failpoint::GupSlowPath) => slow_path_row(&aspace, va),
        other => format!("{other:?}"),
    };

    let (rows, got, zapped, realloc) = std::thread::scope(|scope| {
        let getter = spawn_cpu(scope, &replay, GETTER, || gup_fast_one(&aspace, va));
        let zapper = spawn_cpu(scope, &replay, ZAPPER, || {
            replay.act(Act::Zap);
            aspace.madvise_dontneed(base, HUGE_SIZE).map_err(|e| e.to_string())
        });
        let allocator = spawn_cpu(scope, &replay, ALLOCATOR, || {
            replay.act(Act::Alloc);
            node.alloc(Order::TWO, Gfp::USER).map_err(|e| e.to_string())
        });
        let rows = drive(&replay, describe);
        (rows, join(getter, GETTER), join(zapper, ZAPPER), join(allocator, ALLOCATOR))
    });
    let (rows, got) = (rows?, got?);
    zapped?.map_err(|e| RaceError::Setup(format!("madvise: {e}")))?;
    let realloc = realloc?.map_err(|e| RaceError::Setup(format!("the reallocation: {e}")))?;

    let found = validate(&got, &aspace, va);
    let fast_path = FastPath { fell_back: got.fell_back, refused_by: refused.get() };
    drop((got, realloc, held));
    drop(aspace);
    // Table frames go back through RCU callbacks: run them before the audit.
    mmu.barrier();
    Ok(RaceReport {
        scenario: "gup-fast-vs-free-realloc",
        variant,
        summary: ALL[1].summary,
        actor: "GUP-fast",
        cpus: vec![
            CpuRole { cpu: GETTER, role: "GUP-fast (getter)" },
            CpuRole { cpu: ZAPPER, role: "MADV_DONTNEED + free" },
            CpuRole { cpu: ALLOCATOR, role: "allocator" },
        ],
        rows,
        outcome: outcome(variant, target, found, fast_path, node),
    })
}
