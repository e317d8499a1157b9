//! Each scenario in each variant, asserting what the getter ended up with,
//! not only that the replay ran; and the driver's refusal of a schedule
//! that cannot be followed.

use super::replay::{Act, ReplayError, ReplayPlatform, StepAt};
use super::{find, scenarios, FastPath, GetterResult, RaceReport, Variant};
use memdesc::platform::failpoints::Failpoint;
use memdesc::platform::Platform;
use memdesc::CpuId;
use std::time::Duration;

fn replay(name: &str, variant: Variant) -> RaceReport {
    let report = find(name).expect("scenario exists").run(variant).expect("the replay follows its schedule");
    assert_eq!(report.rows.len(), report.rows.last().map_or(0, |r| r.index), "every step ran, in order");
    assert_eq!((report.outcome.leaked_frames, report.outcome.violations), (0, 0), "{report}");
    report
}

#[test]
fn split_fixed_the_head_recheck_refuses_and_the_slow_path_takes_the_page() {
    let report = replay("gup-fast-vs-split", Variant::Fixed);
    let o = &report.outcome;
    assert_eq!(o.fast_path, FastPath { fell_back: true, refused_by: Some("P1.4 head recheck") }, "{report}");
    // The slow path, under the lock, holds the right page: the new order-0
    // folio at the target.
    let target = o.target_pfn;
    assert_eq!(o.getter, GetterResult::Held { page: target, folio: target, order: 0 }, "{report}");
    assert_eq!(o.bug, None);
    assert!(report.as_expected(), "{report}");
}

#[test]
fn split_historical_holds_the_old_head_and_is_caught() {
    let report = replay("gup-fast-vs-split", Variant::Historical);
    let o = &report.outcome;
    let target = o.target_pfn;
    // GUP claims the page, but its reference is on the old head, now an
    // order-0 folio without the page; the entry recheck passed.
    assert_eq!(o.getter, GetterResult::Held { page: target, folio: target - 1, order: 0 }, "{report}");
    assert_eq!(o.fast_path, FastPath { fell_back: false, refused_by: None }, "{report}");
    assert!(o.bug.as_deref().is_some_and(|b| b.contains("no longer contains")), "{report}");
    assert!(report.rows.iter().any(|r| r.skipped && r.at == "P1HeadRecheck"), "{report}");
    assert!(report.rows.iter().any(|r| !r.skipped && r.at == "GupRecheck" && r.text.contains("passes")), "{report}");
    assert!(report.as_expected(), "{report}");
}

#[test]
fn free_realloc_fixed_the_entry_recheck_refuses() {
    let report = replay("gup-fast-vs-free-realloc", Variant::Fixed);
    let o = &report.outcome;
    // The head recheck passes (the page is a tail of the same head again);
    // only the entry recheck can refuse. The slow path faults a new page.
    assert_eq!(o.fast_path, FastPath { fell_back: true, refused_by: Some("P6.12 entry recheck") }, "{report}");
    assert!(report.rows.iter().any(|r| r.at == "P1HeadRecheck" && r.text.contains("passes")), "{report}");
    assert!(matches!(o.getter, GetterResult::Held { page, folio, .. } if page != o.target_pfn && folio == page));
    assert_eq!(o.bug, None);
    assert!(report.as_expected(), "{report}");
}

#[test]
fn free_realloc_historical_holds_an_unmapped_page_and_is_caught() {
    let report = replay("gup-fast-vs-free-realloc", Variant::Historical);
    let o = &report.outcome;
    let target = o.target_pfn;
    // The reallocated order-2 folio, under the same head, still contains the
    // page; the address maps nothing any more.
    assert_eq!(o.getter, GetterResult::Held { page: target, folio: target - 1, order: 2 }, "{report}");
    assert!(o.bug.as_deref().is_some_and(|b| b.contains("which now maps nothing")), "{report}");
    assert!(report.as_expected(), "{report}");
}

#[test]
fn every_scenario_has_a_unique_name_and_both_variants_render() {
    let names: Vec<_> = scenarios().iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["gup-fast-vs-split", "gup-fast-vs-free-realloc", "isolate-vs-slab-rcu-free", "first-barrier-patch"]
    );
    let report = replay("gup-fast-vs-split", Variant::Fixed);
    let text = report.to_string();
    assert!(text.contains("CPU 0: GUP-fast") && text.contains("CPU 1: THP split"), "{text}");
    assert!(text.contains("verdict:  PASS"), "{text}");
    let json = serde_json::to_value(&report).expect("serialises");
    assert_eq!(json["variant"], "fixed");
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(9));
    assert_eq!(json["outcome"]["fast_path"]["refused_by"], "P1.4 head recheck");
    assert_eq!(json["outcome"]["getter"]["kind"], "held");
}

#[test]
fn rcu_free_historical_calls_movable_ops_on_the_slab_frame_and_is_caught() {
    let report = replay("isolate-vs-slab-rcu-free", Variant::Historical);
    let o = &report.outcome;
    // The scanner isolated the slab frame: it holds a reference to it.
    let target = o.target_pfn;
    assert_eq!(o.getter, GetterResult::Held { page: target, folio: target, order: 0 }, "{report}");
    assert_eq!(o.fast_path, FastPath { fell_back: false, refused_by: None }, "{report}");
    assert!(o.bug.as_deref().is_some_and(|b| b.starts_with("movable ops called on a slab frame")), "{report}");
    assert!(report.rows.iter().any(|r| r.skipped && r.at == "IsoTypeCheck"), "{report}");
    assert!(report.rows.iter().any(|r| r.at == "P1Increment" && r.text.contains("refcount now 2")), "{report}");
    assert!(report.rows.iter().any(|r| r.at == "IsoOps" && r.text.contains("1 on a slab frame")), "{report}");
    assert!(report.as_expected(), "{report}");
}

#[test]
fn rcu_free_fixed_the_speculative_get_refuses_the_frozen_slab() {
    let report = replay("isolate-vs-slab-rcu-free", Variant::Fixed);
    let o = &report.outcome;
    let refused = Some("ISO.1 speculative get (the frame is frozen)");
    assert_eq!(o.fast_path, FastPath { fell_back: true, refused_by: refused }, "{report}");
    assert!(matches!(&o.getter, GetterResult::Failed { reason } if reason.contains("frozen")), "{report}");
    assert_eq!(o.bug, None);
    assert!(report.rows.iter().any(|r| r.at == "P1Increment" && r.text.contains("type slab")), "{report}");
    // The real allocator's slab: typed with the cache's id while listed,
    // unlisted (still frozen) while its RCU free waits, free after it.
    let row = |at: &str| report.rows.iter().find(|r| r.at == at).map(|r| r.text.clone()).expect(at);
    let unlisted = format!("type slab({})", memdesc::slab::SLAB_UNLISTED);
    assert!(row("SlabAlloc").contains("refcount 0") && !row("SlabAlloc").contains(&unlisted), "{report}");
    // The object came through the slab CPU's sheaf (the per-CPU layer ran:
    // the refill took more than the one object).
    assert!(!row("SlabAlloc").contains(" 1 objects taken"), "{report}");
    assert!(row("SlabRcuFree").contains("refcount 0") && row("SlabRcuFree").contains(&unlisted), "{report}");
    assert!(row("GracePeriod").contains("type buddy"), "{report}");
    assert!(report.as_expected(), "{report}");
}

#[test]
fn first_patch_historical_passes_both_slab_tests_and_is_caught() {
    let report = replay("first-barrier-patch", Variant::Historical);
    let o = &report.outcome;
    let target = o.target_pfn;
    assert_eq!(o.getter, GetterResult::Held { page: target, folio: target, order: 0 }, "{report}");
    assert!(o.bug.as_deref().is_some_and(|b| b.contains("both slab tests passed")), "{report}");
    // Yoo's table: the two slab tests run (not skipped) and both say no;
    // the slab is set up and freed between them.
    let order: Vec<_> = report.rows.iter().map(|r| (r.cpu, r.at.as_str())).collect();
    let at = |name: &str| order.iter().position(|&(_, a)| a == name).expect(name);
    assert!(at("IsoSlabTest") < at("HistoricalSetSlab"), "{report}");
    assert!(at("HistoricalRcuHead") < at("IsoMovableTest"), "{report}");
    assert!(at("IsoMovableTest") < at("HistoricalSlabFree"), "{report}");
    assert!(at("HistoricalSlabFree") < at("IsoSlabRecheck"), "{report}");
    assert!(report.rows.iter().all(|r| !r.skipped || r.at == "IsoTypeCheck"), "{report}");
    assert!(report.rows.iter().any(|r| r.at == "IsoSlabRecheck" && r.text.contains("passes as movable")), "{report}");
    assert!(report.as_expected(), "{report}");
}

#[test]
fn first_patch_fixed_never_counts_the_slab() {
    let report = replay("first-barrier-patch", Variant::Fixed);
    let o = &report.outcome;
    assert_eq!(o.fast_path.refused_by, Some("ISO.1 speculative get (the frame is frozen)"), "{report}");
    assert_eq!(o.bug, None);
    assert!(report.as_expected(), "{report}");
}

#[test]
fn a_step_that_never_comes_ends_the_replay_with_an_error() {
    // CPU 1 is scheduled at a failpoint its script never reaches: the driver
    // must give up within the timeout instead of hanging.
    let steps = vec![(0, StepAt::Act(Act::ThpSplit)), (1, StepAt::Core(Failpoint::SplitFrozen))];
    let replay = ReplayPlatform::new(2, steps, Vec::new(), Duration::from_millis(200));
    let error = std::thread::scope(|scope| {
        for cpu in 0..2 {
            let replay = &replay;
            scope.spawn(move || {
                let _cpu = replay.bind_current_thread(CpuId(cpu)).expect("a free CPU");
                if cpu == 0 {
                    replay.act(Act::ThpSplit);
                }
                replay.exit();
            });
        }
        replay.run_step(0).expect("step 1 runs");
        let error = replay.run_step(1).expect_err("step 2 never comes");
        replay.abort();
        error
    });
    assert!(matches!(error, ReplayError::NotReached { index: 1, cpu: 1, .. }), "{error}");
    assert!(error.to_string().starts_with("schedule not followed"), "{error}");
}

#[test]
fn skip_is_answered_only_at_checks_and_only_to_scripts() {
    let replay = ReplayPlatform::new(
        1,
        Vec::new(),
        vec![Failpoint::P1HeadRecheck, Failpoint::P1Increment],
        Duration::from_millis(100),
    );
    use memdesc::platform::failpoints::FailAction;
    // Setup and teardown run on threads that are not scripts: the real code.
    assert_eq!(replay.failpoint(Failpoint::P1HeadRecheck), FailAction::Continue);
    let _cpu = replay.bind_current_thread(CpuId(0)).expect("a free CPU");
    assert_eq!(replay.failpoint(Failpoint::P1HeadRecheck), FailAction::Skip);
    assert_eq!(replay.failpoint(Failpoint::P1Increment), FailAction::Continue);
    assert_eq!(replay.failpoint(Failpoint::P1SourceRecheck), FailAction::Continue);
}

#[test]
#[ignore = "prints the tables"]
fn print_all() {
    for s in scenarios() {
        for v in Variant::ALL {
            println!("{}", s.run(v).unwrap());
        }
    }
}
