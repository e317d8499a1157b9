//! The slab layer in the simulator: `--profile slab` alone, and the checks
//! the mixed run shares (slabinfo, counters, the scanner's isolate check).

use crate::run;
use memdesc_sim::{Report, SimConfig, Workload};
use std::time::Duration;

/// The caches every run creates, as slabinfo names them.
const SIM_CACHES: [&str; 11] = [
    "sim_identity",
    "sim_debug",
    "sim_ctor",
    "sim_8",
    "sim_24",
    "sim_96",
    "sim_192",
    "sim_512",
    "sim_2048",
    "sim_4096",
    "sim_8192",
];

/// What every run with slab CPUs must show: a slabinfo line per cache with
/// objects in it as the run ended, objects freed locally and remotely with
/// their stamps checked, lookups by the readers, and slab frames back
/// through RCU.
pub(crate) fn check_slab_section(report: &Report) {
    let slab = report.slab.as_ref().expect("a slab section");
    for name in SIM_CACHES {
        let line = slab.slabinfo.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("no slabinfo line {name}"));
        assert!(line.total_objs > 0 && line.total_objs >= line.active_objs, "{line:#?}");
        assert!(line.objs_per_slab > 0 && line.pages_per_slab > 0 && line.obj_size > 0, "{line:#?}");
        assert_eq!(line.total_objs, line.slabs * line.objs_per_slab, "{line:#?}");
    }
    let big = slab.slabinfo.iter().find(|l| l.name == "sim_8192").expect("sim_8192");
    assert!(big.pages_per_slab > 1, "8 KiB objects need multi-frame slabs: {big:#?}");
    let a = &slab.activity;
    assert!(a.allocs > 0 && a.local_frees > 0 && a.remote_frees > 0, "{a:#?}");
    assert_eq!(a.remote_frees, a.remote_frees_sent, "every object sent was freed by its receiver: {a:#?}");
    assert_eq!(a.allocs, a.local_frees + a.remote_frees, "every object freed once: {a:#?}");
    assert_eq!(a.stamps_checked, a.allocs, "every free checked its stamp: {a:#?}");
    assert!(a.ctor_checked > 0 && a.shrinks > 0 && a.published > 0, "{a:#?}");
    assert!(a.kmallocs > 0 && a.kfree_rcu > 0, "{a:#?}");
    assert!(a.reader_lookups > 0 && a.reader_hits > 0, "{a:#?}");
    assert_eq!(a.reader_lookups, a.reader_hits + a.reader_misses + a.reader_unlisted, "{a:#?}");
    let event = |name: &str| *slab.events.get(name).unwrap_or_else(|| panic!("no {name} in the slab events"));
    assert!(event("slabs_rcu_freed") > 0, "no TYPESAFE_BY_RCU slab went back through RCU: {:#?}", slab.events);
    // Taken before the allocator's drop gives back the kmalloc caches' kept
    // empty slabs and flushes the objects their per-CPU sheaves still
    // cache (the leaked-frames check covers those).
    assert!(event("slabs_freed") <= event("slabs_allocated"), "{:#?}", slab.events);
    assert!(event("slab_free") <= event("slab_alloc") && event("slab_free") > 0, "{:#?}", slab.events);
    assert_eq!(event("slab_debug_reports"), 0, "{:#?}", slab.events);
    assert!(event("kfree_rcu_batches") > 0 && event("kfree_rcu") == a.kfree_rcu, "{:#?}", slab.events);
    assert!(event("kmalloc_large_alloc") > 0, "the page-granular kmalloc path never ran: {:#?}", slab.events);
    assert_eq!(event("kmalloc_large_alloc"), event("kmalloc_large_free"), "{:#?}", slab.events);
}

#[test]
fn short_slab_profile_run_passes_and_meets_slab_frames() {
    let config = SimConfig::new(64 << 20, 2, Duration::from_millis(400), 0x51ab).with_workload(Workload::Slab);
    let report = run(config);
    assert_eq!(report.violations, 0, "violations: {:#?}", report.first_violations);
    assert_eq!((report.leaked_frames, report.bad_pages, report.audit.allocated_frames), (0, 0, 0));
    assert!(report.passed());
    assert_eq!(report.machine.slab_cpus.len(), 2);
    assert!(report.machine.process_cpus.is_empty() && report.workload.allocs == 0);
    check_slab_section(&report);
    let s = &report.scanner;
    assert!(s.slab_frames_met > 0 && s.slab_starts > 0, "{s:#?}");
    assert_eq!((s.slab_references, s.successes), (0, 0), "only slab frames are allocated: {s:#?}");
    assert_eq!((s.isolate.isolated, s.isolate.ops_misuses), (0, 0), "nothing movable: {s:#?}");

    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["config"]["workload"], "slab");
    let line = &json["slab"]["slabinfo"][0];
    for key in ["name", "active_objs", "total_objs", "obj_size", "objs_per_slab", "pages_per_slab"] {
        assert!(line.get(key).is_some(), "no {key} in {line:#}");
    }
    for key in ["slabs_rcu_freed", "kfree_rcu_batches", "slab_debug_reports"] {
        assert!(json["slab"]["events"][key].is_u64(), "no slab.events.{key}");
    }
    for key in ["remote_frees", "reader_hits", "reader_misses"] {
        assert!(json["slab"]["activity"][key].is_u64(), "no slab.activity.{key}");
    }
    assert!(json["scanner"]["slab_frames_met"].as_u64() > Some(0));
    let text = report.to_string();
    assert!(
        text.contains("# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("sim_identity ")), "{text}");
    assert!(text.contains("slabs_rcu_freed "), "{text}");
}

#[test]
fn the_gup_profile_has_no_slab_section() {
    let config = SimConfig::new(64 << 20, 1, Duration::from_millis(100), 3).with_workload(Workload::Gup);
    let report = run(config);
    assert!(report.passed(), "{:#?}", report.first_violations);
    assert!(report.slab.is_none() && report.machine.slab_cpus.is_empty());
    assert_eq!(report.scanner.slab_starts, 0);
}
