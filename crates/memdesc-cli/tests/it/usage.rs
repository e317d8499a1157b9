//! The command line as a user meets it: help, bad values, the repeat line.

use crate::run;

#[test]
fn help_states_memory_rules_and_exit_codes() {
    for args in [&["--help"][..], &["run", "--help"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0));
        let help = &out.stdout;
        assert!(help.contains("the least accepted is 64 MiB"), "{help}");
        assert!(help.contains("rounded down to a multiple of 4 MiB"), "{help}");
        assert!(help.contains("--profile <PROFILE>") && help.contains("[possible values: mixed, gup, slab]"), "{help}");
        for code in ["\n  0    passed", "\n  1    failed", "\n  2    usage error", "\n  130  interrupted by Ctrl-C"] {
            assert!(help.contains(code), "{code:?} missing from {help}");
        }
    }
}

#[test]
fn bad_values_exit_2_saying_what_is_wrong() {
    let cases: [(&[&str], &str); 7] = [
        (&["--duration=-1"], "negative durations are not allowed: -1"),
        (&["--duration", "0"], "the duration must be more than zero"),
        (&["--mem", "32M"], "\"32M\" is less than the minimum of 64 MiB"),
        (&["--cpus", "0"], "at least one CPU is needed"),
        (&["run", "--cpus", "48"], "at most 47"),
        (&["run", "--profile", "bogus"], "[possible values: mixed, gup, slab]"),
        (&["--seed", "-1"], "negative seeds are not allowed"),
    ];
    for (args, message) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

/// The `repeat with:` line of a text report, as arguments.
fn repeat_args(report: &str) -> Vec<String> {
    let line = report.lines().find_map(|l| l.strip_prefix("repeat with: memdesc ")).expect("a repeat line");
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn repeat_line_of_a_sub_millisecond_run_is_accepted_and_reproduces_it() {
    // Issue §4: this printed "--duration 0ms", which the CLI refused.
    let first = run(&["--mem", "67108865", "--cpus", "1", "--duration", "0.0000001s", "--seed", "9"]);
    assert_eq!(first.status.code(), Some(0), "{}{}", first.stdout, first.stderr);
    let args = repeat_args(&first.stdout);
    assert_eq!(args.join(" "), "run --mem 67108865 --cpus 1 --duration 100ns --seed 9");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let again = run(&args);
    assert_eq!(again.status.code(), Some(0), "{}{}", again.stdout, again.stderr);
    assert_eq!(repeat_args(&again.stdout), args);
    let header = |report: &str| report.lines().next().map(str::to_owned);
    assert_eq!(header(&again.stdout), header(&first.stdout));
}

#[test]
fn gup_profile_repeat_line_names_the_profile_and_reproduces_it() {
    let first = run(&["run", "--profile", "gup", "--mem", "64M", "--cpus", "1", "--duration", "200ms", "--seed", "4"]);
    assert_eq!(first.status.code(), Some(0), "{}{}", first.stdout, first.stderr);
    let args = repeat_args(&first.stdout);
    assert_eq!(args.join(" "), "run --profile gup --mem 64M --cpus 1 --duration 200ms --seed 4");
    assert!(first.stdout.starts_with("memdesc simulation: gup workload"), "{}", first.stdout);
}

#[test]
fn slab_profile_reports_slabinfo_in_json_and_passes() {
    let out = run(&["run", "--profile", "slab", "--mem", "64M", "--cpus", "2", "--duration", "300ms", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    assert_eq!((json["violations"].as_u64(), json["leaked_frames"].as_u64()), (Some(0), Some(0)), "{json:#}");
    assert_eq!(json["config"]["workload"], "slab");
    let lines = json["slab"]["slabinfo"].as_array().expect("slabinfo lines");
    let identity = lines.iter().find(|l| l["name"] == "sim_identity").expect("the TYPESAFE_BY_RCU cache's line");
    assert!(identity["total_objs"].as_u64() > Some(0) && identity["objs_per_slab"].as_u64() > Some(0), "{identity:#}");
    assert!(json["slab"]["events"]["slabs_rcu_freed"].as_u64() > Some(0), "{json:#}");
    assert!(json["scanner"]["slab_frames_met"].as_u64() > Some(0), "{json:#}");
    assert_eq!(json["scanner"]["slab_references"].as_u64(), Some(0));
}
