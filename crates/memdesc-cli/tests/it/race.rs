//! `memdesc race` as a user runs it: the list, each race in both variants,
//! the JSON, the exit status.

use crate::run;

#[test]
fn list_names_the_seed_000_and_seed_004_races() {
    let out = run(&["race", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    for name in ["gup-fast-vs-split", "gup-fast-vs-free-realloc", "isolate-vs-slab-rcu-free", "first-barrier-patch"] {
        assert!(out.stdout.contains(name), "{name}: {}", out.stdout);
    }
    let json: serde_json::Value = serde_json::from_str(&run(&["race", "list", "--json"]).stdout).expect("JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(4));
}

#[test]
fn each_seed_004_race_shows_the_historical_bug_caught_and_the_fix_holding() {
    for name in ["isolate-vs-slab-rcu-free", "first-barrier-patch"] {
        let out = run(&["race", name]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}{}", out.stdout, out.stderr);
        let text = &out.stdout;
        assert!(text.contains("verdict:  PASS: the historical code shows the bug, caught and reported"), "{text}");
        assert!(text.contains("verdict:  PASS: the fixed code held: the ISO.1 speculative get"), "{text}");
        assert!(text.contains("| CPU 0: pfn scanner (isolate step)"), "{text}");
    }
}

#[test]
fn each_race_shows_the_historical_bug_caught_and_the_fix_holding() {
    for name in ["gup-fast-vs-split", "gup-fast-vs-free-realloc"] {
        let out = run(&["race", name]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}{}", out.stdout, out.stderr);
        let text = &out.stdout;
        assert!(text.contains(&format!("race {name} (historical variant)")), "{text}");
        assert!(text.contains(&format!("race {name} (fixed variant)")), "{text}");
        assert!(text.contains("verdict:  PASS: the historical code shows the bug, caught by validation"), "{text}");
        assert!(text.contains("verdict:  PASS: the fixed code held"), "{text}");
        assert!(text.contains("| CPU 0: GUP-fast (getter)"), "{text}");
    }
}

#[test]
fn json_reports_the_getter_and_the_verdict() {
    let out = run(&["race", "gup-fast-vs-free-realloc", "--variant", "fixed", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let report = &json[0];
    assert_eq!(report["variant"], "fixed");
    assert_eq!(report["outcome"]["fast_path"]["refused_by"], "P6.12 entry recheck");
    assert_eq!(report["outcome"]["fast_path"]["fell_back"], true);
    assert_eq!(report["outcome"]["as_expected"], true);
    assert_eq!(report["rows"].as_array().map(Vec::len), Some(10));
    let out = run(&["race", "gup-fast-vs-split", "--variant", "historical", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(json[0]["outcome"]["getter"]["kind"], "held");
    assert!(json[0]["outcome"]["bug"].as_str().is_some_and(|b| b.contains("no longer contains")));
}

#[test]
fn an_unknown_race_is_a_usage_error() {
    let out = run(&["race", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("possible values: list, gup-fast-vs-split"), "{}", out.stderr);
}
