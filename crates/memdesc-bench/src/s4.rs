//! S4 (performance.md §4): real allocation-heavy C programs under
//! `LD_PRELOAD`, ours (`libmemdesc_malloc.so`) against mimalloc's library,
//! with glibc's malloc (no preload) as a third column.
//!
//! The programs are memdesc-preload's `c/` workloads, written to the
//! patterns of mimalloc-bench's pure-C set (whose sources no package
//! registry carries): cfrac-, espresso-, glibc-simple-, mstress- and
//! xmalloc-test-like, the threaded two with two threads (`--procs=2`). They
//! are compiled with `cc -O2` into `target/bench/s4` at run time, and
//! mimalloc's library from the vendored sources of the `libmimalloc-sys`
//! crate, so it is the same mimalloc as S1–S3's in-process peer.
//!
//! Each program runs once per allocator as a warm-up, then `reps` times per
//! allocator (at most 7), the three alternating and rotating which goes first. Each run
//! goes through `c/measure.c`, which times it from fork to exit and reads its
//! peak RSS from `wait4`. A goal row (`S4-<program>`) reports the median
//! wall times; the `S4` row their geometric means. Every run must exit 0 and
//! print the checksum the glibc warm-up printed: a wrong answer is an error,
//! not a figure.

use crate::goals::{probe, Measured};
use crate::harness::{Sample, Settings};
use memdesc_preload::build::{workspace_root, CProgram};
use memdesc_preload::Preload;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// One S4 program.
pub struct Program {
    /// The goal id's suffix and the report's name.
    pub name: &'static str,
    /// Its source, `c/<source>.c` in memdesc-preload.
    pub source: &'static str,
    /// Its arguments.
    pub args: &'static [&'static str],
    /// The id of its glibc probe.
    pub glibc_probe: &'static str,
}

/// The programs, in report order.
pub const PROGRAMS: &[Program] = &[
    Program { name: "cfrac", glibc_probe: "S4-cfrac-glibc", source: "cfrac", args: &[] },
    Program { name: "espresso", glibc_probe: "S4-espresso-glibc", source: "espresso", args: &[] },
    Program { name: "glibc-simple", glibc_probe: "S4-glibc-simple-glibc", source: "glibc_simple", args: &[] },
    Program { name: "mstress", glibc_probe: "S4-mstress-glibc", source: "mstress", args: &["2"] },
    Program { name: "xmalloc-test", glibc_probe: "S4-xmalloc-test-glibc", source: "xmalloc_test", args: &["2"] },
];

/// Repetitions per allocator at most: each is a process run of a fraction
/// of a second, so S4 takes the reference's minimum of 7 rather than the
/// harness's default of 9 (`--quick` still runs 3).
const MAX_REPS: usize = 7;

/// Whom a run is under.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Under {
    Ours,
    Mimalloc,
    Glibc,
}

const UNDER: [Under; 3] = [Under::Ours, Under::Mimalloc, Under::Glibc];

/// What the runs need, built once per process.
struct Setup {
    /// `c/measure.c`, compiled.
    measure: PathBuf,
    /// Where the programs are compiled and runs write their reports.
    dir: PathBuf,
    ours: Preload,
    mimalloc: Preload,
}

impl Setup {
    fn get() -> Result<Arc<Setup>, Box<dyn Error>> {
        static SETUP: Mutex<Option<Arc<Setup>>> = Mutex::new(None);
        let mut setup = SETUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(s) = setup.as_ref() {
            return Ok(Arc::clone(s));
        }
        let dir = workspace_root().join("target").join("bench").join("s4");
        let measure = CProgram { name: "measure" }.compile(&dir)?;
        let mimalloc = Preload::mimalloc(&dir)?;
        let ours = Preload::memdesc()?;
        let built = Arc::new(Setup { measure, dir, ours, mimalloc });
        *setup = Some(Arc::clone(&built));
        Ok(built)
    }

    fn preload(&self, under: Under) -> Option<&Preload> {
        match under {
            Under::Ours => Some(&self.ours),
            Under::Mimalloc => Some(&self.mimalloc),
            Under::Glibc => None,
        }
    }
}

/// One run's figures.
#[derive(Clone, Copy)]
struct RunFigures {
    wall_ns: f64,
    rss_kib: f64,
}

/// One program's result, kept for the RSS table and the geometric mean.
#[derive(Clone)]
struct ProgramResult {
    name: &'static str,
    /// Wall ns per run, per allocator (ours, mimalloc, glibc).
    wall: [Sample; 3],
    /// Median peak RSS in KiB, per allocator.
    rss_kib: [f64; 3],
}

/// The programs measured in this process, in measuring order.
static RESULTS: Mutex<Vec<ProgramResult>> = Mutex::new(Vec::new());

/// Runs `exe` once under `under` through `measure`; checks its exit and its
/// output against `expected` (set by the first run).
fn run_once(
    setup: &Setup,
    exe: &Path,
    program: &Program,
    under: Under,
    expected: &mut Option<String>,
) -> Result<RunFigures, Box<dyn Error>> {
    let report = setup.dir.join(format!("{}.measure", program.source));
    let mut cmd = Command::new(&setup.measure);
    cmd.arg(&report).arg(exe).args(program.args).stdin(Stdio::null()).env_remove("LD_PRELOAD");
    if let Some(p) = setup.preload(under) {
        cmd.env("MEASURE_PRELOAD", &p.library);
    }
    let out = cmd.output().map_err(|e| format!("running {}: {e}", setup.measure.display()))?;
    let who = setup.preload(under).map_or("glibc", |p| p.name);
    let text = std::fs::read_to_string(&report).map_err(|e| format!("{}: {e}", report.display()))?;
    let fields: Vec<f64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let [wall_ns, rss_kib, status] = fields[..] else {
        return Err(format!("{}: not `wall rss status`: {text:?}", report.display()).into());
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if status != 0.0 || !out.status.success() {
        return Err(format!(
            "S4 {} under {who}: wait status {status}; stderr:\n{}",
            program.name,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    match expected {
        None => *expected = Some(stdout),
        Some(want) if *want != stdout => {
            return Err(format!("S4 {} under {who} printed {stdout:?}, glibc printed {want:?}", program.name).into())
        }
        Some(_) => {}
    }
    Ok(RunFigures { wall_ns, rss_kib })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn sample(walls: &[f64]) -> Sample {
    let min = walls.iter().copied().fold(f64::INFINITY, f64::min);
    let max = walls.iter().copied().fold(0.0, f64::max);
    Sample { median_ns: median(walls.to_vec()), min_ns: min, max_ns: max, reps: walls.len(), iters: 1 }
}

/// Measures one program: a warm-up per allocator (glibc's first, which sets
/// the expected output), then `settings.reps` rotations (at most
/// [`MAX_REPS`]).
fn measure_program(program: &'static Program, settings: &Settings) -> Result<ProgramResult, Box<dyn Error>> {
    let setup = Setup::get()?;
    let exe = CProgram { name: program.source }.compile(&setup.dir)?;
    let mut expected = None;
    for under in [Under::Glibc, Under::Ours, Under::Mimalloc] {
        run_once(&setup, &exe, program, under, &mut expected)?;
    }
    let mut figures: [Vec<RunFigures>; 3] = Default::default();
    for rep in 0..settings.reps.min(MAX_REPS) {
        for k in 0..UNDER.len() {
            let i = (rep + k) % UNDER.len();
            figures[i].push(run_once(&setup, &exe, program, UNDER[i], &mut expected)?);
        }
    }
    let wall = |i: usize| sample(&figures[i].iter().map(|f| f.wall_ns).collect::<Vec<_>>());
    let rss = |i: usize| median(figures[i].iter().map(|f| f.rss_kib).collect());
    let result =
        ProgramResult { name: program.name, wall: [wall(0), wall(1), wall(2)], rss_kib: [rss(0), rss(1), rss(2)] };
    let mut results = RESULTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    results.retain(|r| r.name != program.name);
    results.push(result.clone());
    Ok(result)
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// The goal of one program: `S4-<name>`.
pub fn program(name: &str, settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    let program = PROGRAMS.iter().find(|p| p.name == name).ok_or_else(|| format!("no S4 program `{name}`"))?;
    let r = measure_program(program, settings)?;
    let [ours, mi, glibc] = r.wall;
    Ok(Measured {
        ours,
        peer: mi,
        note: format!(
            "`{}` under LD_PRELOAD, ns per run from fork to exit; peak RSS (median) ours {:.1} MiB, mimalloc {:.1} \
             MiB, glibc {:.1} MiB; every run printed glibc's checksum",
            [program.source].iter().chain(program.args).copied().collect::<Vec<_>>().join(" "),
            mib(r.rss_kib[0]),
            mib(r.rss_kib[1]),
            mib(r.rss_kib[2])
        ),
        probes: vec![probe(
            program.glibc_probe,
            "the same program under glibc malloc (no preload), ns per run",
            glibc,
            format!(
                "ours = {:.2}x glibc; mimalloc = {:.2}x glibc",
                ours.median_ns / glibc.median_ns,
                mi.median_ns / glibc.median_ns
            ),
        )],
    })
}

fn geomean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x.ln(), n + 1));
    (sum / n.max(1) as f64).exp()
}

fn geomean_sample(results: &[ProgramResult], i: usize) -> Sample {
    Sample {
        median_ns: geomean(results.iter().map(|r| r.wall[i].median_ns)),
        min_ns: geomean(results.iter().map(|r| r.wall[i].min_ns)),
        max_ns: geomean(results.iter().map(|r| r.wall[i].max_ns)),
        reps: results.first().map_or(0, |r| r.wall[i].reps),
        iters: 1,
    }
}

/// The `S4` goal: the geometric mean over the programs (those not yet
/// measured in this process are measured now).
pub fn geomean_goal(settings: &Settings) -> Result<Measured, Box<dyn Error>> {
    for program in PROGRAMS {
        let done =
            RESULTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().any(|r| r.name == program.name);
        if !done {
            measure_program(program, settings)?;
        }
    }
    let results = RESULTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let rss = |i: usize| mib(geomean(results.iter().map(|r| r.rss_kib[i])));
    let glibc = geomean_sample(&results, 2);
    let ours = geomean_sample(&results, 0);
    let mi = geomean_sample(&results, 1);
    Ok(Measured {
        ours,
        peer: mi,
        note: format!(
            "geometric mean over {} programs of the median wall time per run; peak RSS geometric mean ours {:.1} MiB, \
             mimalloc {:.1} MiB, glibc {:.1} MiB",
            results.len(),
            rss(0),
            rss(1),
            rss(2)
        ),
        probes: vec![probe(
            "S4-glibc",
            "the programs under glibc malloc (no preload), geometric mean ns per run",
            glibc,
            format!(
                "ours = {:.2}x glibc; mimalloc = {:.2}x glibc",
                ours.median_ns / glibc.median_ns,
                mi.median_ns / glibc.median_ns
            ),
        )],
    })
}

fn ms(ns: f64) -> String {
    format!("{:.0} ms", ns / 1e6)
}

/// The S4 table with the RSS columns, if S4 ran: one line per program,
/// Markdown.
pub fn table() -> Option<String> {
    let results = RESULTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    if results.is_empty() {
        return None;
    }
    let mut out = String::from(
        "S4 in detail (median wall time per run and median peak RSS, under each allocator):\n\n\
         | program | ours | mimalloc | glibc | ours / mimalloc | ours / glibc | RSS ours | RSS mimalloc | RSS glibc |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &results {
        let [o, m, g] = r.wall.map(|s| s.median_ns);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            r.name,
            ms(o),
            ms(m),
            ms(g),
            o / m,
            o / g,
            mib(r.rss_kib[0]),
            mib(r.rss_kib[1]),
            mib(r.rss_kib[2])
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geomean_of_ratios_is_the_ratio_of_geomeans() {
        let ours = [2.0, 8.0, 4.0];
        let peer = [1.0, 2.0, 4.0];
        let ratio = geomean(ours.iter().zip(&peer).map(|(o, p)| o / p));
        let of_means = geomean(ours.into_iter()) / geomean(peer.into_iter());
        assert!((ratio - of_means).abs() < 1e-12);
        assert!((geomean([2.0, 8.0].into_iter()) - 4.0).abs() < 1e-12);
    }

    #[test]
    fn median_and_spread_of_runs() {
        let s = sample(&[5.0, 1.0, 3.0, 9.0]);
        assert_eq!((s.median_ns, s.min_ns, s.max_ns, s.reps), (4.0, 1.0, 9.0, 4));
    }
}
