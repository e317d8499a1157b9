//! Short runs with processes, pinners and splitters: the races of the
//! page-table, GUP and THP layers happen (GUP-fast fallbacks, splits
//! refused by pins, TLB shootdowns), every stamp checks, and every table
//! frame comes back.

use crate::run;
use memdesc_sim::{Report, SimConfig, Workload};
use std::time::Duration;

fn event(report: &Report, name: &str) -> u64 {
    *report.page_tables.events.get(name).unwrap_or_else(|| panic!("no {name} in the page-table events"))
}

/// What both profiles must show.
fn assert_layer_exercised(report: &Report) {
    assert_eq!(report.violations, 0, "violations: {:#?}", report.first_violations);
    assert_eq!(report.leaked_frames, 0);
    assert_eq!(report.page_tables.table_frames_at_end, 0);
    assert!(report.passed());
    let a = &report.page_tables.activity;
    assert!(a.maps > 0 && a.thp_maps > 0 && a.munmaps > 0, "{a:#?}");
    assert!(a.pages_written > 0 && a.bytes_verified > 0 && a.zero_pages_verified > 0, "{a:#?}");
    assert!(a.mprotects > 0 && a.protection_faults > 0 && a.dontneeds > 0, "{a:#?}");
    assert!(a.gup_calls > 0 && a.pages_pinned > 0 && a.stamps_checked > 0, "{a:#?}");
    assert!(a.peak_table_frames > 0 && a.audits > 0, "{a:#?}");
    assert!(a.splits > 0 && a.splits_busy > 0 && a.thread_reads > 0, "{a:#?}");
    for name in [
        "thp_fault_alloc",
        "thp_split_pmd",
        "thp_split_page",
        "thp_split_page_failed",
        "thp_deferred_split_page",
        "gup_fast",
        "gup_fast_fallback",
        "gup_slow",
        "nr_foll_pin_acquired",
        "nr_tlb_remote_flush",
        "nr_tlb_flushed_entries",
        "pgtable_alloc",
    ] {
        assert!(event(report, name) > 0, "{name} is 0: {:#?}", report.page_tables.events);
    }
    // Every page the pinners were handed pinned is counted as acquired.
    // (Released is at least that: the core also counts the unpins of runs
    // it drops on an error path, whose pins it never counted as acquired.)
    assert_eq!(event(report, "nr_foll_pin_acquired"), a.pages_pinned);
    assert!(event(report, "nr_foll_pin_released") >= a.pages_pinned);
    assert_eq!(event(report, "pgtable_alloc"), event(report, "pgtable_free"));
}

#[test]
fn mixed_run_with_processes_exercises_the_races() {
    let report = run(SimConfig::new(256 << 20, 2, Duration::from_millis(1500), 0x6a9));
    assert_layer_exercised(&report);
    assert!(report.workload.allocs > 0);
}

#[test]
fn gup_profile_runs_only_this_layer() {
    let report = run(SimConfig::new(128 << 20, 2, Duration::from_millis(1500), 0x6a9).with_workload(Workload::Gup));
    assert_layer_exercised(&report);
    assert_eq!(report.workload.allocs, 0, "no allocator churn in the gup profile");
    assert_eq!(report.machine.workload_cpus, 0);
    let json = serde_json::to_value(&report).expect("serialisable");
    assert!(json["page_tables"]["events"]["gup_fast_fallback"].as_u64() > Some(0), "{json:#}");
    assert_eq!(json["config"]["workload"], "gup");
}
