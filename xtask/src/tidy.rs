//! `cargo xtask tidy`: static checks the compiler does not make.
//!
//! Scans `crates/*/src/**/*.rs`, skipping test-only files (`tests.rs`,
//! `loom.rs`, `proptests.rs`, `testutil.rs`, anything under a `tests/` or
//! `loom/` directory). Rules:
//!
//! - **layering**: a core module uses only layers below it ([`LAYERS`]);
//! - **atomics**: atomics and loom reach the core only through `crate::sync`;
//! - **unsafe allowlist**: `unsafe` appears in the core only in
//!   [`UNSAFE_ALLOWLIST`], and never in the simulator or CLI;
//! - **SAFETY**: every `unsafe {` block has a `SAFETY:` comment on its line,
//!   within [`SAFETY_WINDOW`] lines above, or in the comment block directly
//!   above;
//! - **ordering comments**: every core line naming `Ordering::X` has a comment
//!   containing `X:` on the line or directly above the statement.
//!
//! The first three rules look only at code: comments (doc comments included)
//! and the insides of string literals are stripped first, see [`lex`].

mod lex;

use std::fmt;
use std::path::Path;

use lex::Line;

/// The core crate's top-level modules, lowest layer first. A module may use
/// (`crate::Y`) only modules listed before it. Names not yet present in the
/// tree are fine; modules not listed here are not checked.
pub const LAYERS: &[&str] =
    &["sync", "platform", "memmap", "folio", "buddy", "rcu", "pgtable", "gup", "thp", "slab", "migrate"];

/// Core files (relative to `crates/memdesc/src`) that may contain `unsafe`.
/// `dir/*` allows every file under `dir`, at any depth.
pub const UNSAFE_ALLOWLIST: &[&str] = &[
    // The facade's cells and lock (a file now, a directory if it grows).
    "sync.rs",
    "sync/*",
    // The per-CPU tokens' unsafe constructors (the platform's proof).
    "platform.rs",
    // The raw descriptor layout and owner words, and boot-time placement.
    "memmap/page.rs",
    "memmap/mod.rs",
    // Sections hot-added at run time: their descriptors, written in place.
    "memmap/section.rs",
    // Handles restored from raw pfns; split hands out new frozen heads.
    "folio/handle.rs",
    "folio/split.rs",
    // Owner-word links of the free lists, and folio preparation.
    "buddy/freelist.rs",
    "buddy/pcp.rs",
    "buddy/mod.rs",
    // RCU heads: the raw queue link and callback cell, and heads written
    // into a frozen frame's owner words (P5).
    "rcu/head.rs",
    // Entries own what they point at: tables (frozen) and mapping
    // references, restored from raw pfns when an entry is cleared.
    "pgtable/table.rs",
    "pgtable/gather.rs",
    "pgtable/aspace.rs",
    // The THP split freezes at the count its migration entries account for.
    "thp/mod.rs",
    // Slab: owner words through SlabView and object memory by address
    // (raw); handles over caches placed in frames (mod); free pointers,
    // red zones and poison read under the list lock (cache, debug); the
    // unsafe free entry points and the folios they restore (kmalloc,
    // rcu_free).
    "slab/raw.rs",
    "slab/mod.rs",
    "slab/cache.rs",
    "slab/debug.rs",
    "slab/kmalloc.rs",
    "slab/rcu_free.rs",
    // Seed 004's historical design (mutants and replay only): the atomic
    // view of the `mapping` owner word it reads and writes.
    "migrate/historical.rs",
    // A CPU's sheaves, reached under its local lock (SHEAF.2).
    "slab/sheaf.rs",
];

/// Crates that `#![forbid(unsafe_code)]` and must not mention `unsafe`.
const NO_UNSAFE_CRATES: &[&str] = &["memdesc-sim", "memdesc-cli"];

/// The core crate's directory name under `crates/`.
const CORE: &str = "memdesc";

/// Paths into the atomics of `core`/`std`, which must come through
/// `crate::sync` instead (loom paths are matched by [`loom_path`]).
const ATOMIC_PATHS: &[&str] = &[
    "core::sync::atomic",
    "std::sync::atomic",
    // Grouped imports would hide the `atomic` segment.
    "core::sync::{",
    "std::sync::{",
];

/// Lines above an `unsafe {` in which its `SAFETY:` comment may start
/// (anywhere in the comment block directly above also counts).
const SAFETY_WINDOW: usize = 6;

/// Continuation lines of one statement skipped when looking for the comment
/// above a line with `Ordering::`.
const ORDERING_WINDOW: usize = 8;

/// The memory orderings of `core::sync::atomic::Ordering`.
const ORDERINGS: &[&str] = &["Relaxed", "Release", "Acquire", "AcqRel", "SeqCst"];

/// Files whose contents only compile under `cfg(test)`; tidy skips them.
const TEST_FILE_NAMES: &[&str] = &["tests.rs", "loom.rs", "proptests.rs", "testutil.rs"];

/// One broken rule.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path relative to the workspace root, with `/` separators.
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tidy: {}:{}: {}", self.path, self.line, self.message)
    }
}

/// Checks the workspace at `root`, printing every violation.
pub fn run(root: &Path) -> Result<(), String> {
    let (files, violations) = check_tree(root)?;
    for v in &violations {
        println!("{v}");
    }
    if violations.is_empty() {
        println!("tidy: ok ({files} files)");
        Ok(())
    } else {
        Err(format!("{} violation(s) in {files} files", violations.len()))
    }
}

/// Checks every source file under `root/crates/*/src`. Returns the number of
/// files checked and the violations, sorted by path and line.
pub fn check_tree(root: &Path) -> Result<(usize, Vec<Violation>), String> {
    let mut paths = Vec::new();
    let crates = root.join("crates");
    for entry in read_dir(&crates)? {
        let src = entry.join("src");
        if src.is_dir() {
            collect_rs(&src, &mut paths)?;
        }
    }
    paths.sort();

    let mut files = 0;
    let mut violations = Vec::new();
    for path in &paths {
        let rel = relative(root, path);
        let Some(file) = SourceFile::classify(&rel) else {
            continue;
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        files += 1;
        violations.extend(file.check(&text));
    }
    Ok((files, violations))
}

/// Returns the entries of `dir`, sorted.
fn read_dir(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        out.push(entry.map_err(|e| format!("reading {}: {e}", dir.display()))?.path());
    }
    out.sort();
    Ok(out)
}

/// Appends every `.rs` file under `dir` to `out`.
fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), String> {
    for path in read_dir(dir)? {
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Returns `path` relative to `root` with `/` separators.
fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// A source file and the rules that apply to it.
pub struct SourceFile<'a> {
    /// Path relative to the workspace root.
    path: &'a str,
    /// Directory name of its crate under `crates/`.
    krate: &'a str,
    /// Path relative to the crate's `src/`.
    in_src: &'a str,
}

impl<'a> SourceFile<'a> {
    /// Parses `crates/<crate>/src/<in_src>`; `None` for paths outside that
    /// shape, the `xtask` crate, and test-only files.
    pub fn classify(path: &'a str) -> Option<SourceFile<'a>> {
        let rest = path.strip_prefix("crates/")?;
        let (krate, rest) = rest.split_once('/')?;
        let in_src = rest.strip_prefix("src/")?;
        if krate == "xtask" || !in_src.ends_with(".rs") {
            return None;
        }
        let mut components = in_src.split('/').collect::<Vec<_>>();
        let file_name = components.pop()?;
        if TEST_FILE_NAMES.contains(&file_name) || components.iter().any(|c| matches!(*c, "tests" | "loom")) {
            return None;
        }
        Some(SourceFile { path, krate, in_src })
    }

    /// Returns every violation in `text`, this file's contents.
    pub fn check(&self, text: &str) -> Vec<Violation> {
        let lines = lex::lex(text);
        let mut out = Vec::new();
        if self.krate == CORE {
            self.check_layering(&lines, &mut out);
            if !self.is_sync() {
                self.check_atomics(&lines, &mut out);
                self.check_orderings(&lines, &mut out);
            }
            if !self.unsafe_allowed() {
                self.check_no_unsafe(
                    &lines,
                    &mut out,
                    "outside the unsafe allowlist (UNSAFE_ALLOWLIST in xtask/src/tidy.rs)",
                );
            }
        } else if NO_UNSAFE_CRATES.contains(&self.krate) {
            self.check_no_unsafe(&lines, &mut out, "in a crate that forbids unsafe_code");
        }
        self.check_safety_comments(&lines, &mut out);
        out.sort_by_key(|v| v.line);
        out
    }

    fn violation(&self, line: usize, message: String) -> Violation {
        Violation { path: self.path.to_owned(), line, message }
    }

    /// The core module this file belongs to: `X` for `X.rs` and `X/**`.
    fn top_module(&self) -> &str {
        match self.in_src.split_once('/') {
            Some((dir, _)) => dir,
            None => self.in_src.trim_end_matches(".rs"),
        }
    }

    fn is_sync(&self) -> bool {
        self.top_module() == "sync"
    }

    fn unsafe_allowed(&self) -> bool {
        UNSAFE_ALLOWLIST.iter().any(|entry| match entry.strip_suffix("/*") {
            Some(dir) => self.in_src.starts_with(dir) && self.in_src[dir.len()..].starts_with('/'),
            None => self.in_src == *entry,
        })
    }

    /// Rule a: no `crate::Y` for a layer `Y` above this file's layer.
    fn check_layering(&self, lines: &[Line], out: &mut Vec<Violation>) {
        let module = self.top_module();
        let Some(rank) = LAYERS.iter().position(|&l| l == module) else {
            return;
        };
        let code = lines.iter().map(|l| l.code.as_str()).collect::<Vec<_>>().join("\n");
        for (offset, used) in crate_paths(&code) {
            if let Some(used_rank) = LAYERS.iter().position(|&l| l == used) {
                if used_rank > rank {
                    let line = code[..offset].matches('\n').count() + 1;
                    out.push(self.violation(
                        line,
                        format!(
                            "layering: `{module}` uses `crate::{used}`, a higher layer \
                             (lowest first: {})",
                            LAYERS.join(" < ")
                        ),
                    ));
                }
            }
        }
    }

    /// Rule b: atomics and loom only through `crate::sync`.
    fn check_atomics(&self, lines: &[Line], out: &mut Vec<Violation>) {
        for (n, line) in lines.iter().enumerate() {
            for path in ATOMIC_PATHS {
                if find_path(&line.code, path).next().is_some() {
                    out.push(self.violation(n + 1, format!("atomics: `{path}` outside sync; use `crate::sync`")));
                }
            }
            if loom_path(&line.code) {
                out.push(self.violation(n + 1, "atomics: `loom::` outside sync; use `crate::sync`".to_owned()));
            }
        }
    }

    /// Rule c: no `unsafe` token in this file.
    fn check_no_unsafe(&self, lines: &[Line], out: &mut Vec<Violation>, why: &str) {
        for (n, line) in lines.iter().enumerate() {
            if find_word(&line.code, "unsafe").next().is_some() {
                out.push(self.violation(n + 1, format!("unsafe: `unsafe` {why}")));
            }
        }
    }

    /// Rule d: every `unsafe {` has a `SAFETY:` comment close above.
    fn check_safety_comments(&self, lines: &[Line], out: &mut Vec<Violation>) {
        for (n, line) in lines.iter().enumerate() {
            let opens_block = find_word(&line.code, "unsafe")
                .any(|at| line.code[at + "unsafe".len()..].trim_start().starts_with('{'));
            if !opens_block {
                continue;
            }
            let first = n.saturating_sub(SAFETY_WINDOW);
            let in_window = lines[first..=n].iter().any(|l| l.comment.contains("SAFETY:"));
            let in_block_above =
                lines[..n].iter().rev().take_while(|l| l.is_comment_only()).any(|l| l.comment.contains("SAFETY:"));
            if !in_window && !in_block_above {
                out.push(self.violation(
                    n + 1,
                    format!(
                        "SAFETY: `unsafe` block without a `// SAFETY:` comment on its line, \
                         in the {SAFETY_WINDOW} lines above, or in the comment block above it"
                    ),
                ));
            }
        }
    }

    /// Rule e: every `Ordering::X` has an `X:` comment. An ordering imported
    /// by name (`use crate::sync::Ordering::Relaxed;`) counts wherever the
    /// bare name appears; the `use` itself is not an operation.
    fn check_orderings(&self, lines: &[Line], out: &mut Vec<Violation>) {
        let (in_use, imported) = ordering_imports(lines);
        for (n, line) in lines.iter().enumerate() {
            if in_use[n] {
                continue;
            }
            let mut used = orderings_used(&line.code);
            for &name in &imported {
                if !used.contains(&name) && find_word(&line.code, name).next().is_some() {
                    used.push(name);
                }
            }
            if used.is_empty() {
                continue;
            }
            let comments = ordering_comments(lines, n);
            for name in used {
                if !comments.contains(&format!("{name}:")) {
                    out.push(self.violation(
                        n + 1,
                        format!(
                            "ordering: `{name}` without a `// {name}: ...` comment \
                             (saying what it pairs with) on the line or directly above"
                        ),
                    ));
                }
            }
        }
    }
}

/// Whether `c` may continue an identifier.
fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte offsets of `needle` in `hay` where it does not continue an
/// identifier on the left.
fn find_path<'h>(hay: &'h str, needle: &'h str) -> impl Iterator<Item = usize> + 'h {
    hay.match_indices(needle).map(|(at, _)| at).filter(move |&at| !hay[..at].chars().next_back().is_some_and(is_ident))
}

/// Byte offsets of `word` in `hay` as a whole identifier.
fn find_word<'h>(hay: &'h str, word: &'h str) -> impl Iterator<Item = usize> + 'h {
    find_path(hay, word).filter(move |&at| !hay[at + word.len()..].chars().next().is_some_and(is_ident))
}

/// Returns the identifier at the start of `s`.
fn leading_ident(s: &str) -> &str {
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// Finds the first segment after every `crate::` in `code`, including each
/// top-level name in a `crate::{a, b::c}` group. Returns (offset, name).
fn crate_paths(code: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    for at in find_path(code, "crate::") {
        let mut pos = at + "crate::".len();
        let rest = &code[pos..];
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if !trimmed.starts_with('{') {
            out.push((pos, leading_ident(trimmed)));
            continue;
        }
        // A group: collect the names that start an item at depth 1.
        let mut depth = 0usize;
        let mut item_start = false;
        for (k, c) in code[pos..].char_indices() {
            match c {
                '{' => {
                    depth += 1;
                    item_start = depth == 1;
                }
                '}' => {
                    if depth <= 1 {
                        break;
                    }
                    depth -= 1;
                }
                ',' if depth == 1 => item_start = true,
                c if item_start && is_ident(c) => {
                    out.push((pos + k, leading_ident(&code[pos + k..])));
                    item_start = false;
                }
                c if item_start && !c.is_whitespace() => item_start = false,
                _ => {}
            }
        }
    }
    out
}

/// Whether `code` names the loom crate (`loom::...`, `::loom::...`), as
/// opposed to a module called `loom` inside a path (`folio::loom::...`).
fn loom_path(code: &str) -> bool {
    find_path(code, "loom::").any(|at| {
        let before = &code[..at];
        match before.strip_suffix("::") {
            Some(prefix) => !prefix.chars().next_back().is_some_and(is_ident),
            None => true,
        }
    })
}

/// Marks the lines that belong to `use` declarations, and returns them with
/// the orderings those declarations import by name (`Ordering::Relaxed`,
/// `Ordering::{Acquire, Release}`, `Ordering::*`).
fn ordering_imports(lines: &[Line]) -> (Vec<bool>, Vec<&'static str>) {
    let mut in_use = vec![false; lines.len()];
    let mut imported: Vec<&'static str> = Vec::new();
    let mut n = 0;
    while n < lines.len() {
        if !is_use_start(&lines[n].code) {
            n += 1;
            continue;
        }
        // The declaration runs to the line holding its `;`.
        let mut decl = String::new();
        while n < lines.len() {
            in_use[n] = true;
            decl.push_str(&lines[n].code);
            decl.push(' ');
            n += 1;
            if decl.contains(';') {
                break;
            }
        }
        for (at, _) in decl.match_indices("Ordering::") {
            let rest = decl[at + "Ordering::".len()..].trim_start();
            let names: Vec<&str> = if rest.starts_with('*') {
                ORDERINGS.to_vec()
            } else if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                group.split(',').map(|item| leading_ident(item.trim())).collect()
            } else {
                vec![leading_ident(rest)]
            };
            for name in names {
                if let Some(&known) = ORDERINGS.iter().find(|&&o| o == name) {
                    if !imported.contains(&known) {
                        imported.push(known);
                    }
                }
            }
        }
    }
    (in_use, imported)
}

/// Whether `code` starts a `use` declaration (`use`, `pub use`,
/// `pub(crate) use`).
fn is_use_start(code: &str) -> bool {
    let mut code = code.trim_start();
    if let Some(rest) = code.strip_prefix("pub") {
        let rest = rest.trim_start();
        code = match rest.strip_prefix('(') {
            Some(vis) => vis.split_once(')').map_or("", |(_, after)| after),
            None => rest,
        }
        .trim_start();
    }
    code.strip_prefix("use").is_some_and(|rest| rest.starts_with([' ', ':', '{']))
}

/// The atomic orderings named as `Ordering::X` in `code`, deduplicated.
fn orderings_used(code: &str) -> Vec<&'static str> {
    let mut used = Vec::new();
    for (at, _) in code.match_indices("Ordering::") {
        let name = leading_ident(&code[at + "Ordering::".len()..]);
        if let Some(&known) = ORDERINGS.iter().find(|&&o| o == name) {
            if !used.contains(&known) {
                used.push(known);
            }
        }
    }
    used
}

/// Collects the comment text that may justify the orderings on line `n`: its
/// own comment, trailing comments on the continuation lines of the same
/// statement above it (at most [`ORDERING_WINDOW`]), and the contiguous block
/// of comment lines directly above the statement.
fn ordering_comments(lines: &[Line], n: usize) -> String {
    let mut text = lines[n].comment.clone();
    let mut j = n;
    let mut skipped = 0;
    while j > 0 && !lines[j - 1].is_comment_only() {
        let code = lines[j - 1].code.trim_end();
        // A blank line or a line ending a statement or opening a block means
        // line `n` starts its own statement.
        let ends_statement =
            code.trim().is_empty() || code.ends_with(';') || code.ends_with('{') || code.ends_with('}');
        if ends_statement || skipped == ORDERING_WINDOW {
            return text;
        }
        text.push_str(&lines[j - 1].comment);
        j -= 1;
        skipped += 1;
    }
    while j > 0 && lines[j - 1].is_comment_only() {
        text.push_str(&lines[j - 1].comment);
        j -= 1;
    }
    text
}

#[cfg(test)]
mod tests;
