//! `cargo xtask mutants`: checks that the loom models catch every mutant.
//!
//! A mutant is a `cfg(memdesc_mutant = "name")` that swaps one step of a
//! protocol for a known-broken one. Its test passes only when loom finds the
//! bug, so a mutant is *caught* when `cargo test ... mutant` succeeds and at
//! least one test ran and passed; anything else is *missed*. A few
//! variants declared beside the mutants are expected to *hold*
//! ([`EXPECTED_TO_HOLD`]): their `mutant_*` test runs the model as is, and
//! they are reported as holding or not.
//!
//! The list of mutants has one source of truth: the `check-cfg` entry
//! `cfg(memdesc_mutant, values("a", "b", ...))` under `[workspace.lints.rust]`
//! in the root `Cargo.toml`. The core's build script turns `MEMDESC_MUTANT`
//! into that cfg for the core crate only, so each mutant rebuilds just the
//! core, in the target directory `loom` already filled. A mutant whose cfg
//! appears in memdesc-alloc's sources (the fork gate's) is that crate's:
//! its build script takes `MEMDESC_ALLOC_MUTANT` instead, so the core is
//! not rebuilt for it.

use std::fmt::Write as _;

use crate::steps::{seconds, Runner, Step};

/// Variants declared beside the mutants that are expected to HOLD: their
/// `mutant_*` test runs the model with `check_model`, and passing means the
/// variant is correct (seed 004: in the historical design, Babka's
/// corrected barrier order and the fence he asked about, which loom must
/// agree with).
pub const EXPECTED_TO_HOLD: &[&str] = &["first_patch_rmb_before_pagemovable", "corrected_barrier_order"];

/// Lines of captured output shown for a missed mutant, per stream.
const TAIL_LINES: usize = 30;

/// Runs every mutant (or only `only`, if non-empty) and reports the tally.
pub fn run(runner: &mut Runner, only: &[String]) -> Result<(), String> {
    let manifest_path = runner.root().join("Cargo.toml");
    let manifest =
        std::fs::read_to_string(&manifest_path).map_err(|e| format!("reading {}: {e}", manifest_path.display()))?;
    let all = mutant_names(&manifest)?;
    let names: Vec<String> = if only.is_empty() {
        all
    } else {
        for name in only {
            if !all.contains(name) {
                return Err(format!("unknown mutant `{name}`; Cargo.toml declares: {}", all.join(", ")));
            }
        }
        only.to_vec()
    };

    let alloc_sources = read_sources(&runner.root().join(ALLOC_SRC))?;
    let (mut caught, mut held, mut missed) = (0usize, 0usize, 0usize);
    for name in &names {
        let (package, variable) = owner(name, &alloc_sources);
        let step = crate::loom_env(Step::cargo(
            &format!("mutant {name}"),
            &["test", "-p", package, "--release", "--lib", "mutant", "--", "--test-threads=2"],
        ))
        .env(variable, name);
        let out = runner.run_captured(&step)?;
        let passed = passed_tests(&out.stdout);
        let holds = EXPECTED_TO_HOLD.contains(&name.as_str());
        let (ok_word, bad_word) = if holds { ("holds", "DID NOT HOLD") } else { ("caught", "MISSED") };
        if out.success && passed >= 1 {
            if holds {
                held += 1;
            } else {
                caught += 1;
            }
            println!("mutant {name}: {ok_word} ({})", seconds(out.elapsed));
            runner.record(&format!("mutant {name}"), out.elapsed, ok_word);
        } else {
            missed += 1;
            let why = if out.success { "no mutant test passed" } else { "tests failed or did not build" };
            println!("mutant {name}: {bad_word} ({}): {why}", seconds(out.elapsed));
            print!("{}", tail("stdout", &out.stdout));
            print!("{}", tail("stderr", &out.stderr));
            runner.record(&format!("mutant {name}"), out.elapsed, bad_word);
        }
    }
    println!("mutants: {caught} caught, {held} held as expected, {missed} missed");
    if missed > 0 {
        Err(format!("{missed} mutant(s) missed"))
    } else if caught + held == 0 {
        Err("no mutant was caught".to_owned())
    } else {
        Ok(())
    }
}

/// memdesc-alloc's sources, relative to the workspace root.
const ALLOC_SRC: &str = "crates/memdesc-alloc/src";

/// The package whose tests catch mutant `name`, and the variable its build
/// script turns into the cfg: memdesc-alloc's if `alloc_sources` (its
/// `.rs` files, concatenated) name the mutant's cfg, else the core's.
pub fn owner(name: &str, alloc_sources: &str) -> (&'static str, &'static str) {
    if alloc_sources.contains(&format!("memdesc_mutant = \"{name}\"")) {
        ("memdesc-alloc", "MEMDESC_ALLOC_MUTANT")
    } else {
        ("memdesc", "MEMDESC_MUTANT")
    }
}

/// Concatenates every `.rs` file under `dir`, recursively.
fn read_sources(dir: &std::path::Path) -> Result<String, String> {
    let mut text = String::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?.path();
        if path.is_dir() {
            text.push_str(&read_sources(&path)?);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            text.push_str(&std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?);
        }
    }
    Ok(text)
}

/// Extracts the mutant names from the root manifest's
/// `cfg(memdesc_mutant, values(...))` check-cfg entry.
///
/// Plain string scanning: the entry may sit in a TOML literal string
/// (`'... values("a", "b")'`) or a basic one (`"... values(\"a\")"`), on one
/// line or several.
pub fn mutant_names(manifest: &str) -> Result<Vec<String>, String> {
    const SECTION: &str = "[workspace.lints.rust]";
    const CFG: &str = "cfg(memdesc_mutant";
    let missing = || format!("no `{CFG}, values(...))` check-cfg under {SECTION} in Cargo.toml");

    let start = manifest.find(SECTION).ok_or_else(missing)?;
    let section = &manifest[start + SECTION.len()..];
    // The section ends at the next table header.
    let end = section.find("\n[").unwrap_or(section.len());
    let section = &section[..end];

    let cfg = section.find(CFG).ok_or_else(missing)?;
    let after_cfg = &section[cfg + CFG.len()..];
    let values = after_cfg.find("values(").ok_or_else(missing)?;
    let list = &after_cfg[values + "values(".len()..];
    let close = list.find(')').ok_or_else(|| "unterminated `values(` in the memdesc_mutant check-cfg".to_owned())?;

    let mut names = Vec::new();
    for item in list[..close].replace('\\', "").split(',') {
        let name = item.trim().trim_matches('"');
        if name.is_empty() {
            continue;
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad mutant name `{name}` in Cargo.toml"));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("mutant `{name}` is listed twice in Cargo.toml"));
        }
        names.push(name.to_owned());
    }
    if names.is_empty() {
        return Err(missing());
    }
    Ok(names)
}

/// Sums `N` over libtest's `test result: ok. N passed; ...` lines.
pub fn passed_tests(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split_once(" passed"))
        .filter_map(|(n, _)| n.trim().parse::<usize>().ok())
        .sum()
}

/// Returns the last [`TAIL_LINES`] lines of `text`, indented and labelled.
fn tail(label: &str, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let skip = lines.len().saturating_sub(TAIL_LINES);
    let mut out = format!("    --- {label} (last {} lines) ---\n", lines.len() - skip);
    for line in &lines[skip..] {
        let _ = writeln!(out, "    {line}");
    }
    out
}

#[cfg(test)]
mod tests;
