use super::{mutant_names, owner, passed_tests};

#[test]
fn names_come_from_the_check_cfg_values() {
    let manifest = r#"
[workspace.lints.rust]
missing_docs = "warn"
unexpected_cfgs = { level = "warn", check-cfg = ['cfg(memdesc_loom)', 'cfg(memdesc_mutant, values("no_head_recheck", "relaxed_unfreeze"))'] }

[workspace.lints.clippy]
undocumented_unsafe_blocks = "deny"
"#;
    assert_eq!(mutant_names(manifest).unwrap(), ["no_head_recheck", "relaxed_unfreeze"]);
}

#[test]
fn names_parse_from_escaped_multiline_entries() {
    let manifest = "[workspace.lints.rust]\nunexpected_cfgs = { level = \"warn\", check-cfg = [\n  \"cfg(memdesc_mutant, values(\\\"a\\\",\n    \\\"b_2\\\",))\",\n] }\n";
    assert_eq!(mutant_names(manifest).unwrap(), ["a", "b_2"]);
}

#[test]
fn names_outside_the_lints_section_are_ignored() {
    let manifest = "[package]\n# cfg(memdesc_mutant, values(\"x\"))\n[workspace.lints.rust]\nmissing_docs = \"warn\"\n";
    assert!(mutant_names(manifest).is_err());
}

#[test]
fn duplicate_or_empty_lists_are_errors() {
    let dup = "[workspace.lints.rust]\nx = ['cfg(memdesc_mutant, values(\"a\", \"a\"))']\n";
    assert!(mutant_names(dup).is_err());
    let empty = "[workspace.lints.rust]\nx = ['cfg(memdesc_mutant, values())']\n";
    assert!(mutant_names(empty).is_err());
}

#[test]
fn the_real_manifest_lists_mutants() {
    let manifest = include_str!("../../../Cargo.toml");
    assert!(!mutant_names(manifest).unwrap().is_empty());
}

#[test]
fn passed_counts_sum_ok_results_only() {
    let out = "\
running 2 tests
test folio::loom::mutant_no_head_recheck ... ok
test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 40 filtered out; finished in 1.2s
test result: FAILED. 1 passed; 1 failed; 0 ignored
";
    assert_eq!(passed_tests(out), 2);
    assert_eq!(passed_tests("test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 42 filtered out"), 0);
    assert_eq!(passed_tests(""), 0);
}

#[test]
fn a_mutant_named_in_the_alloc_sources_is_the_allocs() {
    let sources = "#[cfg(memdesc_mutant = \"fork_relaxed_leave\")]\nfn f() {}\n";
    assert_eq!(owner("fork_relaxed_leave", sources), ("memdesc-alloc", "MEMDESC_ALLOC_MUTANT"));
    assert_eq!(owner("relaxed_put", sources), ("memdesc", "MEMDESC_MUTANT"));
    // A name that only prefixes an alloc mutant's is still the core's.
    assert_eq!(owner("fork_relaxed", sources), ("memdesc", "MEMDESC_MUTANT"));
}

#[test]
fn the_real_alloc_sources_own_the_fork_mutants() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sources = super::read_sources(&root.join(super::ALLOC_SRC)).unwrap();
    assert_eq!(owner("fork_no_entry_barrier", &sources).0, "memdesc-alloc");
    assert_eq!(owner("relaxed_put", &sources).0, "memdesc");
}
