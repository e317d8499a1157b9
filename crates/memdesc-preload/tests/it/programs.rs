//! The programs: python3, git, sort, ls, and the C program `c/threads.c`.

use crate::support::{check_same, preload_library, same_under_preload, Proof, TempDir, LIMIT};
use memdesc_preload::{run, CProgram};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// A python3 script that allocates heavily: a dict of 300k entries, 200k
/// small lists, a string built from 200k pieces, a JSON round-trip of 100k
/// records, sorting and set work, and four threads building and dropping
/// their own structures. It prints digests of what it built.
const PYTHON_SCRIPT: &str = r#"
import hashlib, json, threading, random
random.seed(8)
d = {i: str(i) * 3 for i in range(300000)}
lists = [[j, j + 1, str(j)] for j in range(200000)]
s = "".join(str(x) for x in range(200000))
records = {"items": [{"id": i, "name": "n%d" % i, "tags": ["a", "b", str(i % 7)], "v": i * 0.5}
                     for i in range(100000)]}
text = json.dumps(records, sort_keys=True)
back = json.loads(text)
assert back == records
words = sorted({"%x" % random.getrandbits(40) for _ in range(100000)})
del d[5]
for k in range(0, 300000, 3):
    d.pop(k, None)
results = [None] * 4
def work(t):
    rnd = random.Random(t)
    acc = []
    for round in range(20):
        chunk = [bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 64))) for _ in range(2000)]
        acc.append(hashlib.sha256(b"".join(chunk)).hexdigest())
        del chunk
    results[t] = hashlib.sha256("".join(acc).encode()).hexdigest()
threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
for th in threads: th.start()
for th in threads: th.join()
print(len(d), sum(map(len, d.values())))
print(len(lists), sum(x[1] for x in lists))
print(hashlib.sha256(s.encode()).hexdigest())
print(hashlib.sha256(text.encode()).hexdigest())
print(len(words), words[0], words[-1])
print(*results)
"#;

fn python(mode: Option<&str>) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(PYTHON_SCRIPT).env("PYTHONHASHSEED", "0");
    match mode {
        Some(allocator) => cmd.env("PYTHONMALLOC", allocator),
        None => cmd.env_remove("PYTHONMALLOC"),
    };
    cmd
}

/// python3 with its own small-object allocator (pymalloc): large objects and
/// the interpreter's own structures come from malloc.
#[test]
fn python3_allocating_heavily() {
    let out = same_under_preload("python3 -c SCRIPT", Proof::Report, || python(None));
    assert_eq!(out.lines().count(), 6, "python3 printed:\n{out}");
}

/// python3 with `PYTHONMALLOC=malloc`: every object, however small, is a
/// malloc and a free.
#[test]
fn python3_with_every_object_from_malloc() {
    let out = same_under_preload("PYTHONMALLOC=malloc python3 -c SCRIPT", Proof::Report, || python(Some("malloc")));
    assert_eq!(out.lines().count(), 6, "python3 printed:\n{out}");
}

/// A git command on the repository in `repo`, with fixed identity and
/// dates so both runs create the same objects.
fn git(repo: &Path, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Preload Test", "-c", "user.email=preload@example.com"])
        .args(["-c", "init.defaultBranch=main", "-c", "gc.autoDetach=false", "-c", "core.pager=cat"])
        .args(args)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    cmd
}

/// Writes commit `n`'s version of the files in `repo`.
fn write_files(repo: &Path, n: usize) {
    for f in 0..20 {
        let mut text = String::new();
        for line in 0..(200 + 50 * f) {
            // Each commit changes every seventh line of every file.
            let version = if line % 7 == n % 7 { n } else { 0 };
            let _ = writeln!(text, "file {f} line {line} version {version} {}", "x".repeat(line % 40));
        }
        std::fs::write(repo.join(format!("f{f:02}.txt")), text).expect("writing a file");
    }
}

/// git on a small repository: init, six commits, `log --stat`, `gc`,
/// `fsck`, `log` again; each step compared with the same step run without
/// the preload on a twin repository.
#[test]
fn git_on_a_small_repository() {
    let preload = preload_library();
    let dir = TempDir::new("git");
    let (plain_repo, ours_repo, home) = (dir.path().join("plain"), dir.path().join("ours"), dir.path().join("home"));
    for d in [&plain_repo, &ours_repo, &home] {
        std::fs::create_dir_all(d).expect("creating a directory");
    }
    let mut steps: Vec<Vec<String>> = vec![vec!["init".into(), "-q".into()]];
    for n in 1..=6 {
        steps.push(vec![format!("write {n}")]);
        steps.push(vec!["add".into(), "-A".into()]);
        steps.push(vec!["commit".into(), "-q".into(), "-m".into(), format!("commit {n}")]);
    }
    for tail in [
        &["log", "--stat"][..],
        &["gc", "--quiet", "--aggressive"],
        &["fsck", "--no-progress"],
        &["log"],
        &["log", "--oneline", "-p", "-3"],
        &["count-objects", "-v"],
    ] {
        steps.push(tail.iter().map(|s| s.to_string()).collect());
    }
    let mut saw_log = false;
    for step in &steps {
        if let Some(n) = step[0].strip_prefix("write ") {
            let n = n.parse().expect("a commit number");
            write_files(&plain_repo, n);
            write_files(&ours_repo, n);
            continue;
        }
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        let what = format!("git {}", args.join(" "));
        let plain = run::command(git(&plain_repo, &home, &args), None, LIMIT).unwrap_or_else(|e| panic!("{what}: {e}"));
        let ours = run::command(git(&ours_repo, &home, &args), Some(&preload), LIMIT)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(plain.status.success(), "{what} fails without the preload:\n{}", plain.stderr);
        check_same(&what, &plain, &ours, &preload, true);
        if args == ["log"] {
            assert_eq!(ours.stdout.matches("\ncommit ").count() + 1, 6, "git log:\n{}", ours.stdout);
            saw_log = true;
        }
    }
    assert!(saw_log);
}

/// `sort` of a 200k-line generated file.
#[test]
fn sort_of_200k_lines() {
    let dir = TempDir::new("sort");
    let file = dir.path().join("lines.txt");
    let mut text = String::with_capacity(200_000 * 24);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..200_000u64 {
        // An LCG: lines of different lengths and many duplicates.
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let _ = writeln!(text, "{:x} {}", x >> (40 + (x % 20)), i % 1000);
    }
    std::fs::write(&file, text).expect("writing the input");
    for flags in [&[][..], &["-n", "-r"], &["-u", "-k", "2,2n"]] {
        let out = same_under_preload(&format!("sort {}", flags.join(" ")), Proof::Bindings, || {
            let mut cmd = Command::new("sort");
            cmd.args(flags).arg(&file).env("LC_ALL", "C");
            cmd
        });
        assert!(out.lines().count() >= 1000, "sort {flags:?} printed {} lines", out.lines().count());
    }
}

/// `ls -lR` on a tree of 2000 files.
#[test]
fn ls_of_2000_files() {
    let dir = TempDir::new("ls");
    for d in 0..20 {
        let sub = dir.path().join(format!("dir{d:02}"));
        std::fs::create_dir_all(&sub).expect("creating a directory");
        for f in 0..100 {
            std::fs::write(sub.join(format!("file-{f:03}-{}", "n".repeat(f % 30))), vec![b'x'; d * f])
                .expect("writing a file");
        }
    }
    for flags in ["-lR", "-lAR", "-lRS"] {
        let out = same_under_preload(&format!("ls {flags}"), Proof::Bindings, || {
            let mut cmd = Command::new("ls");
            cmd.arg(flags).arg("--color=never").arg(dir.path()).env("LC_ALL", "C").env("TZ", "UTC");
            cmd
        });
        assert!(out.lines().count() >= 2000, "ls {flags} printed {} lines", out.lines().count());
    }
}

/// `c/threads.c`: cross-thread frees, threads in waves, the aligned and
/// usable-size calls with content checks, fork while threads allocate.
#[test]
fn threaded_c_program() {
    let dir = TempDir::new("threads");
    let exe = match (CProgram { name: "threads" }).compile(dir.path()) {
        Ok(exe) => exe,
        Err(e) => panic!("compiling c/threads.c: {e}"),
    };
    let out = same_under_preload("threads 3", Proof::Report, || {
        let mut cmd = Command::new(&exe);
        cmd.arg("3");
        cmd
    });
    assert!(out.starts_with("api "), "threads printed:\n{out}");
}
