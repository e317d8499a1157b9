use super::{mutant_names, passed_tests};

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
