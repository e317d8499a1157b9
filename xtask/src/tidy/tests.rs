use super::lex::lex;
use super::{check_tree, SourceFile};

/// Checks `text` as the file at `path`; returns (line, message) pairs.
fn check(path: &str, text: &str) -> Vec<(usize, String)> {
    let file = SourceFile::classify(path).expect("a checked path");
    file.check(text).into_iter().map(|v| (v.line, v.message)).collect()
}

fn lines_of(path: &str, text: &str) -> Vec<usize> {
    check(path, text).into_iter().map(|(line, _)| line).collect()
}

#[test]
fn test_only_files_and_other_trees_are_skipped() {
    for path in [
        "crates/memdesc/src/folio/tests.rs",
        "crates/memdesc/src/folio/loom.rs",
        "crates/memdesc/src/buddy/loom/pcp.rs",
        "crates/memdesc/src/buddy/proptests.rs",
        "crates/memdesc/src/testutil.rs",
        "crates/memdesc/src/tests/helpers.rs",
        "crates/memdesc/tests/it/main.rs",
        "crates/memdesc/build.rs",
        "xtask/src/main.rs",
        "crates/memdesc/src/notes.md",
    ] {
        assert!(SourceFile::classify(path).is_none(), "{path}");
    }
    assert!(SourceFile::classify("crates/memdesc/src/folio/handle.rs").is_some());
    assert!(SourceFile::classify("crates/memdesc-sim/src/lib.rs").is_some());
}

#[test]
fn lexer_separates_code_comments_and_literals() {
    let src = "let s = \"// not a comment, unsafe {\"; // unsafe { here\n\
               let c = '\"'; let l: &'a str = r#\"crate::buddy \"x\"\"#;\n\
               /* a /* nested */ still comment */ let u = 1;\n\
               let e = '\\''; let b = b'x'; let t = br\"raw\";";
    let lines = lex(src);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0].code.trim(), "let s = \"\";");
    assert_eq!(lines[0].comment, "// unsafe { here");
    assert_eq!(lines[1].code, "let c = ''; let l: &'a str = r\"\";");
    assert_eq!(lines[2].code.trim(), "let u = 1;");
    assert!(lines[2].comment.contains("still comment"));
    assert_eq!(lines[3].code, "let e = ''; let b = b''; let t = br\"\";");
}

#[test]
fn lexer_keeps_line_numbers_through_multiline_literals() {
    let src = "let a = \"one\ntwo \\\nthree\";\n/* x\ny */ let b = r\"\nq\";\nlet c = 1;";
    let lines = lex(src);
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[6].code, "let c = 1;");
    assert_eq!(lines[4].code.trim(), "let b = r\"");
}

#[test]
fn layering_flags_uses_of_higher_layers() {
    let text = "\
//! Uses crate::buddy only in docs, which is fine.
use crate::sync::atomic::AtomicU32;
use crate::memmap::Pfn;
use crate::buddy::Zone;
fn f() { let _ = crate::buddy::split_block; }
use crate::{
    platform,
    buddy::pcp::Pcp,
};
const S: &str = \"crate::buddy\"; // crate::buddy in a comment
use crate::rcu::Guard;
use crate::error::Error;
";
    let found = check("crates/memdesc/src/folio/handle.rs", text);
    let lines: Vec<usize> = found.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [4, 5, 8, 11]);
    assert!(found[0].1.contains("`folio` uses `crate::buddy`"), "{found:?}");
}

#[test]
fn layering_applies_to_top_level_files_and_skips_unlisted_modules() {
    let text = "use crate::folio::Folio;\n";
    assert_eq!(lines_of("crates/memdesc/src/memmap.rs", text), [1]);
    assert!(check("crates/memdesc/src/buddy/mod.rs", text).is_empty());
    assert!(check("crates/memdesc/src/lib.rs", text).is_empty());
    assert!(check("crates/memdesc/src/error.rs", text).is_empty());
    // Only the core crate is layered.
    assert!(check("crates/memdesc-sim/src/memmap.rs", text).is_empty());
}

#[test]
fn atomics_only_through_sync() {
    let text = "\
use core::sync::atomic::{AtomicU64, Ordering as O};
use crate::sync::atomic::AtomicU32;
use core::sync::{atomic};
let x = ::loom::thread::spawn(f);
use loom::sync::Arc;
use crate::sync::loom::model; // a module named loom is fine
// core::sync::atomic in a comment is fine
";
    let path = "crates/memdesc/src/folio/mod.rs";
    assert_eq!(lines_of(path, text), [1, 3, 4, 5]);
    assert!(check("crates/memdesc/src/sync.rs", text).is_empty());
    assert!(check("crates/memdesc/src/sync/loom_impl.rs", text).is_empty());
    assert!(check("crates/memdesc-sim/src/stats.rs", text).is_empty());
}

#[test]
fn unsafe_only_in_allowlisted_core_files() {
    let text = "\
#![deny(unsafe_op_in_unsafe_fn)]
/// Calling this is `unsafe` only in docs.
pub unsafe fn f() {}
let s = \"unsafe\";
";
    assert_eq!(lines_of("crates/memdesc/src/folio/flags.rs", text), [3]);
    for allowed in [
        "crates/memdesc/src/sync.rs",
        "crates/memdesc/src/sync/cell.rs",
        "crates/memdesc/src/sync/deep/er.rs",
        "crates/memdesc/src/folio/handle.rs",
        "crates/memdesc/src/buddy/pcp.rs",
    ] {
        assert!(check(allowed, text).is_empty(), "{allowed}");
    }
    // `sync/*` does not allow a sibling that merely starts with "sync".
    assert_eq!(lines_of("crates/memdesc/src/syncx.rs", text), [3]);
}

#[test]
fn sim_and_cli_may_only_forbid_unsafe() {
    let text = "#![forbid(unsafe_code)]\nunsafe impl Send for X {}\n";
    assert_eq!(lines_of("crates/memdesc-sim/src/lib.rs", text), [2]);
    assert_eq!(lines_of("crates/memdesc-cli/src/main.rs", text), [2]);
    // Benches keep allocator FFI; only rule d applies there.
    assert!(check("crates/memdesc-bench/src/alloc.rs", text).is_empty());
}

#[test]
fn unsafe_blocks_need_a_safety_comment_close_above() {
    let text = "\
// SAFETY: (1) the caller holds the zone lock.
let a = unsafe { f() };
// SAFETY: six lines above still counts.
x();
x();
x();
x();
x();
let c = unsafe{ h() };
x();
x();
x();
x();
x();
x();
let b = unsafe { g() };
let d = unsafe { i() }; // SAFETY: same line counts.
let e = unsafe
    fn_ptr_type();
// unsafe { in a comment }
/// ```
/// unsafe { doc_example() }
/// ```
let s = \"unsafe { in a string }\";
";
    let path = "crates/memdesc-bench/src/alloc.rs";
    assert_eq!(lines_of(path, text), [16]);
    let far = "// SAFETY: too far.\nx();\nx();\nx();\nx();\nx();\nx();\nunsafe { f() }\n";
    assert_eq!(lines_of(path, far), [8]);
    // A long SAFETY comment directly above counts in full.
    let long = "// SAFETY: a long argument.\n//\n//\n//\n//\n//\n//\n//\nunsafe { f() }\n";
    assert!(check(path, long).is_empty());
    // A string "SAFETY:" is not a comment.
    let in_string = "let s = \"SAFETY:\"; unsafe { f() }\n";
    assert_eq!(lines_of(path, in_string), [1]);
}

#[test]
fn orderings_need_a_named_comment() {
    let text = "\
fn f() {
    // Acquire: pairs with the Release in unfreeze (P2.5).
    let v = self.word.load(Ordering::Acquire);
    let w = self.word.load(Ordering::Relaxed);
    self.word.store(1, Ordering::Release); // Release: pairs with get (P1.3).
    // Acquire: pairs with the Release in unfreeze (P2.5).
    // Relaxed: on failure we retry and reload at step P1.2.
    match self.word.compare_exchange(
        old,
        new,
        Ordering::Acquire,
        Ordering::Relaxed,
    ) {
        Ok(_) => {}
        Err(_) => {}
    }
    // Relaxed: a statistic.
    let s = self
        .stats
        .fetch_add(1, Ordering::AcqRel);
    fence(Ordering::SeqCst);
    if a.cmp(&b) == Ordering::Less {}
    // Relaxed: this comment is separated by a blank line.

    x.load(Ordering::Relaxed);
}
";
    let found = check("crates/memdesc/src/folio/mod.rs", text);
    let lines: Vec<usize> = found.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [4, 20, 21, 25], "{found:?}");
    assert!(found[1].1.contains("`AcqRel` without"), "{found:?}");
    // The facade, test-only files and other crates are exempt.
    assert!(check("crates/memdesc/src/sync.rs", text).is_empty());
    assert!(SourceFile::classify("crates/memdesc/src/folio/loom.rs").is_none());
    assert!(check("crates/memdesc-sim/src/stress.rs", text).is_empty());
}

#[test]
fn orderings_imported_by_name_count_as_uses() {
    let text = "\
use crate::sync::Ordering::Relaxed;
pub(crate) use crate::sync::{
    fence,
    Ordering::{Acquire, SeqCst},
};
fn fmt() {
    // Relaxed: a debugging snapshot.
    f.debug_struct(\"Page\")
        .field(\"flags\", &self.flags.load(Relaxed))
        .field(\"ty\", &self.ty.load(Relaxed))
        .finish();
    let v = self.word.load(Acquire);
    fence(SeqCst); // SeqCst: the one total order of P4.2 and P4.4.
    let Release = 1;
}
";
    assert_eq!(lines_of("crates/memdesc/src/folio/mod.rs", text), [12]);
}

#[test]
fn ordering_comment_block_may_sit_above_a_cfg_attribute() {
    let text = "\
// Release: pairs with the Acquire in try_get (P1.2).
#[cfg(not(memdesc_mutant = \"relaxed_unfreeze\"))]
self.word.store(v, Ordering::Release);
#[cfg(memdesc_mutant = \"relaxed_unfreeze\")]
self.word.store(v, Ordering::Relaxed);
";
    assert_eq!(lines_of("crates/memdesc/src/folio/mod.rs", text), [5]);
}

#[test]
fn tree_walk_finds_files_and_skips_tests() {
    let root = std::env::temp_dir().join(format!("xtask-tidy-{}", std::process::id()));
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("crates/memdesc/src/lib.rs", "#![no_std]\nmod folio;\n");
    write("crates/memdesc/src/folio/mod.rs", "use crate::buddy::Zone;\n");
    write("crates/memdesc/src/folio/tests.rs", "use crate::buddy::Zone;\n");
    write("crates/memdesc-sim/src/lib.rs", "#![forbid(unsafe_code)]\n");
    write("crates/memdesc-sim/README.md", "unsafe {\n");
    let (files, violations) = check_tree(&root).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(files, 3);
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].to_string().split(": layering").next(), Some("tidy: crates/memdesc/src/folio/mod.rs:1"));
}
