//! A short run of the mixed workload: nothing broken, nothing leaked, and
//! every path the workload promises was taken.

use crate::run;
use memdesc_sim::SimConfig;
use std::time::Duration;

#[test]
fn short_mixed_run_passes_and_exercises_every_path() {
    let report = run(SimConfig::new(96 << 20, 2, Duration::from_millis(1000), 0x5eed));
    assert_eq!(report.violations, 0, "violations: {:#?}", report.first_violations);
    assert_eq!(report.leaked_frames, 0);
    assert_eq!(report.bad_pages, 0, "bad pages: {:#?}", report.bad_page_reports);
    assert!(report.passed());
    assert!(!report.interrupted && report.interrupted_after_s.is_none());

    let w = &report.workload;
    assert!(w.allocs > 0 && w.frees == w.allocs - w.splits + w.split_pieces, "every folio freed once: {w:#?}");
    assert!(w.frozen_allocs > 0 && w.always_frozen_allocs > 0, "{w:#?}");
    assert!(w.zeroed_allocs > 0, "{w:#?}");
    assert!(w.splits > 0, "{w:#?}");
    assert!(w.lock_ops > 0 && w.clones > 0, "{w:#?}");
    assert!(w.pressure_phases > 0 && w.alloc_failures > 0, "out of memory never reached: {w:#?}");

    let s = &report.scanner;
    assert!(s.successes > 0, "the scanner never got a reference: {s:#?}");
    assert!(s.attempts > s.successes, "the scanner never failed a get: {s:#?}");
    assert!(s.failures.free > 0 && s.failures.unmanaged > 0 && s.failures.out_of_range > 0, "{s:#?}");

    let r = &report.rcu;
    assert!(r.grace_periods > 0, "no grace period completed: {r:#?}");
    assert!(w.table_frees_deferred > 0, "no page-table frame went through RCU: {w:#?}");
    // The callbacks are the workload's deferred frees, the processes'
    // page-table frames and the TYPESAFE_BY_RCU slabs, each freed after its
    // grace period.
    let tables_freed = *report.page_tables.events.get("pgtable_free").expect("pgtable_free counted");
    assert!(tables_freed > 0, "no process table frame went through RCU");
    let slab = report.slab.as_ref().expect("slab CPUs run in the mixed workload");
    let slab_event = |name: &str| *slab.events.get(name).unwrap_or_else(|| panic!("no {name} in the slab events"));
    let slabs_rcu = slab_event("slabs_rcu_freed") + slab_event("kfree_rcu_batches");
    let expected = w.table_frees_deferred + tables_freed + slabs_rcu;
    assert_eq!((r.callbacks_queued, r.callbacks_invoked, r.callbacks_synchronous), (expected, expected, 0), "{r:#?}");

    let vm = |name: &str| *report.vmstat.get(name).unwrap_or_else(|| panic!("no {name} in vmstat"));
    assert!(vm("drain_all_pages") > 0, "the drain-before-failing path never ran");
    assert!(vm("pgalloc_fail") > 0);
    assert!(vm("pcp_refill") > 0 && vm("pcp_free_bulk") > 0);
    assert_eq!(vm("nr_free_pages"), vm("nr_managed"));

    // Slab churn ran beside the rest, and the scanner's isolate check met
    // slab frames without ever taking a reference to one.
    crate::slab::check_slab_section(&report);
    assert!(s.slab_frames_met > 0 && s.slab_references == 0, "{s:#?}");
    // The isolate step isolated the CPUs' movable folios and put each back,
    // and never called their ops on anything else.
    let i = &s.isolate;
    assert!(i.isolated > 0 && i.isolated == i.put_back, "{i:#?}");
    assert_eq!((i.ops_misuses, i.ops_slab_misuses), (0, 0), "{i:#?}");
    assert_eq!(i.frozen_slab, s.slab_frames_met, "{s:#?}");
}

#[test]
fn report_serialises_with_the_documented_keys() {
    let report = run(SimConfig::new(64 << 20, 1, Duration::from_millis(200), 1));
    let json = serde_json::to_value(&report).expect("serialisable");
    for key in [
        "violations",
        "leaked_frames",
        "bad_pages",
        "vmstat",
        "buddyinfo",
        "duration_s",
        "pagetypeinfo",
        "memmap",
        "rcu",
    ] {
        assert!(json.get(key).is_some(), "no {key} in {json:#}");
    }
    assert_eq!(json["repeat"], "memdesc run --mem 64M --cpus 1 --duration 200ms --seed 1");
    assert!(json["interrupted_after_s"].is_null() && json["interrupted"] == false, "{json:#}");
    assert_eq!(json["buddyinfo"]["Normal"].as_array().map(Vec::len), Some(11));
    assert!(json["vmstat"]["pgfree"].is_u64());
    for key in ["grace_periods", "callbacks_queued", "callbacks_invoked", "stalls"] {
        assert!(json["rcu"][key].is_u64(), "no rcu.{key} in {json:#}");
    }
    let text = report.to_string();
    assert!(text.contains("Node 0, zone   Normal "), "{text}");
    assert!(text.ends_with("PASS\n") || text.ends_with("FAIL\n"), "{text}");
}

/// `--hot-add`: half the RAM arrives in sections while every CPU runs; the
/// run still balances, and the hot-added memory is managed at the end.
#[test]
fn hot_add_run_passes_and_grows_the_node() {
    let report = run(SimConfig::new(96 << 20, 2, Duration::from_millis(1000), 0x5eed).with_hot_add(true));
    assert_eq!(report.violations, 0, "violations: {:#?}", report.first_violations);
    assert!(report.passed());
    let hot = report.hot_add.as_ref().expect("a hot-add run reports what it added");
    assert!(hot.sections > 0 && hot.errors.is_empty(), "{hot:#?}");
    let managed: u64 = report.zones.iter().map(|z| z.managed).sum();
    assert!(managed > hot.managed, "the zones count the hot-added frames: {managed} vs {hot:#?}");
    assert_eq!(report.vmstat.get("nr_hot_added"), Some(&hot.frames));
    assert!(report.repeat.contains(" --hot-add "), "{}", report.repeat);
}
