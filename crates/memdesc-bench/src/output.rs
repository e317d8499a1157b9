//! The report: one [`Row`] per goal and per probe, written as JSON
//! (`--json`), as Markdown (`--markdown`, BENCHMARKS.md) and to stdout.

use crate::goals::{Goal, Measured, Probe};
use crate::harness::{Sample, Settings};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The command that regenerates BENCHMARKS.md.
pub const COMMAND: &str = "cargo xtask bench";

/// One line of the report: a goal (with a bound) or a raw probe (without).
#[derive(Serialize)]
pub struct Row {
    /// The goal id (P1…) or the probe id.
    pub id: String,
    /// `"goal"` or `"probe"`.
    pub kind: &'static str,
    /// What was measured.
    pub description: String,
    /// Our figure (null for probes).
    pub ours: Option<f64>,
    /// The peer's figure, or the probe's.
    pub peer: Option<f64>,
    /// What the peer (or probe) is.
    pub peer_name: String,
    /// The ratio the goal bounds (null for probes).
    pub ratio: Option<f64>,
    /// How the ratio is computed.
    pub ratio_definition: Option<&'static str>,
    /// The bound on the ratio (null for probes).
    pub goal: Option<f64>,
    /// Whether the ratio is within the bound (null for probes).
    pub met: Option<bool>,
    /// The unit of `ours` and `peer`.
    pub unit: &'static str,
    /// Setup facts, spreads and derived figures.
    pub note: String,
    /// For a probe: the goal whose run measured it.
    pub goal_id: Option<&'static str>,
    /// Fastest and slowest repetition of `ours`.
    pub ours_range: Option<[f64; 2]>,
    /// Fastest and slowest repetition of `peer`.
    pub peer_range: Option<[f64; 2]>,
    /// Repetitions behind each median.
    pub reps: usize,
    /// For an unmet goal: what limits it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'static str>,
}

/// Rounds for the report (sub-picosecond digits are noise).
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn range(s: &Sample) -> [f64; 2] {
    [round3(s.min_ns), round3(s.max_ns)]
}

fn spread(s: &Sample) -> String {
    format!("{:.1}–{:.1}", s.min_ns, s.max_ns)
}

impl Row {
    /// The row of `goal`, measured as `m`.
    pub fn goal(goal: &Goal, m: &Measured) -> Row {
        let ratio = m.ours.median_ns / m.peer.median_ns;
        let met = ratio <= goal.bound;
        let mut note = format!(
            "ours {} ns, peer {} ns over {} reps ({} / {} iterations per rep)",
            spread(&m.ours),
            spread(&m.peer),
            m.ours.reps,
            m.ours.iters,
            m.peer.iters
        );
        if !m.note.is_empty() {
            note = format!("{}; {note}", m.note);
        }
        Row {
            id: goal.id.to_owned(),
            kind: "goal",
            description: goal.description.to_owned(),
            ours: Some(round3(m.ours.median_ns)),
            peer: Some(round3(m.peer.median_ns)),
            peer_name: goal.peer_name.to_owned(),
            ratio: Some(round3(ratio)),
            ratio_definition: Some(goal.ratio_definition),
            goal: Some(goal.bound),
            met: Some(met),
            unit: "ns/op",
            note,
            goal_id: None,
            ours_range: Some(range(&m.ours)),
            peer_range: Some(range(&m.peer)),
            reps: m.ours.reps,
            limit: (!met).then_some(goal.limit),
        }
    }

    /// The row of a probe measured in `goal`'s run.
    pub fn probe(goal: &Goal, p: &Probe) -> Row {
        let mut note = format!("{} ns over {} reps", spread(&p.sample), p.sample.reps);
        if !p.note.is_empty() {
            note = format!("{}; {note}", p.note);
        }
        Row {
            id: p.id.to_owned(),
            kind: "probe",
            description: p.description.to_owned(),
            ours: None,
            peer: Some(round3(p.sample.median_ns)),
            peer_name: p.description.to_owned(),
            ratio: None,
            ratio_definition: None,
            goal: None,
            met: None,
            unit: "ns/op",
            note,
            goal_id: Some(goal.id),
            ours_range: None,
            peer_range: Some(range(&p.sample)),
            reps: p.sample.reps,
            limit: None,
        }
    }
}

/// Where and how the run happened.
pub struct RunInfo {
    /// The CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// CPUs available to this process.
    pub nproc: usize,
    /// The UTC date, `YYYY-MM-DD`.
    pub date: String,
    /// The measuring settings.
    pub settings: Settings,
    /// Whether this was a `--quick` smoke run.
    pub quick: bool,
    /// The 1-minute load average when the run started (`/proc/loadavg`).
    pub load: Option<f64>,
}

impl RunInfo {
    /// Collects the machine facts for `settings`.
    pub fn collect(settings: Settings, quick: bool) -> RunInfo {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| text.split_whitespace().next().and_then(|w| w.parse().ok()));
        RunInfo { cpu, nproc, date: utc_date(SystemTime::now()), settings, quick, load }
    }
}

/// `YYYY-MM-DD` of `now` in UTC (Hinnant's days-to-civil).
fn utc_date(now: SystemTime) -> String {
    let days = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The rows as a pretty-printed JSON list.
pub fn json(rows: &[Row]) -> String {
    let mut text = serde_json::to_string_pretty(rows).expect("rows serialise");
    text.push('\n');
    text
}

fn ns(x: Option<f64>) -> String {
    match x {
        Some(v) if v < 100.0 => format!("{v:.1} ns"),
        Some(v) if v >= 10_000_000.0 => format!("{:.1} ms", v / 1e6),
        Some(v) if v >= 10_000.0 => format!("{:.1} µs", v / 1000.0),
        Some(v) => format!("{v:.0} ns"),
        None => "–".to_owned(),
    }
}

/// The goal and probe tables, as Markdown.
pub fn tables(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| id | what | ours | peer | ratio | goal | met |\n|---|---|---|---|---|---|---|\n");
    for r in rows.iter().filter(|r| r.kind == "goal") {
        let _ = writeln!(
            out,
            "| {} | {}; peer: {} | {} | {} | {:.2} | ≤ {} | {} |",
            r.id,
            r.description,
            r.peer_name,
            ns(r.ours),
            ns(r.peer),
            r.ratio.unwrap_or(f64::NAN),
            r.goal.unwrap_or(f64::NAN),
            if r.met == Some(true) { "yes" } else { "**no**" },
        );
    }
    out.push_str("\nRaw probes (no goal; measured in the named goal's run):\n\n");
    out.push_str("| probe | run | what | median | note |\n|---|---|---|---|---|\n");
    for r in rows.iter().filter(|r| r.kind == "probe") {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.id,
            r.goal_id.unwrap_or("–"),
            r.description,
            ns(r.peer),
            r.note
        );
    }
    out
}

/// BENCHMARKS.md: intro, command, tables (`extra`, S4's detail, after
/// them), then what limits each unmet goal.
pub fn markdown(info: &RunInfo, rows: &[Row], extra: Option<&str>) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        out,
        "memdesc against peers run in the same process on the same pattern, reported as ratios \
         (goals from the performance reference, §4). Each figure is the median ns per operation \
         of {} repetitions of about {} ms, after one warm-up; ours and the peers run interleaved, \
         rotating which goes first. Wall-clock ratios on a shared VM are noisy (±15%): treat a \
         miss within that band as a warning. The reference's quiet-machine probes were fetch_add \
         6.1 ns, CAS loop 11.2 ns, FrameAllocator pair 611 ns and batch 49.6 ns, Heap 2 MiB pair \
         26 ns (with its own region size): probes well above those mean this run was disturbed, \
         and a `fetch_add_2t_private` ratio near 1.0 means the other vCPU was busy, so P5 says \
         nothing in that run. The address-space goals (G1, G2, T1, F1, F2) run on a simulated MMU \
         over a fresh node; setup that is not the operation (faulting what is pinned or split, \
         unmapping) stays outside the clock, and F1, F2 and T1 time the host kernel's own fault \
         and PMD split in the same run as their peers. The slab goals (S1, S1k, S2, S2g, S3) run one \
         64-byte cache of a slab allocator over a fresh node, each thread bound to a simulated CPU so \
         the per-CPU sheaves serve it; mimalloc (the `mimalloc` crate) and glibc malloc (std's \
         `System`) are called directly in the same process, neither being the global allocator \
         (the reference measured mimalloc at 5.3 ns per pair and 6.1 ns per batch op, glibc at 8.8 \
         and 31.9 ns). S4 runs C programs as processes under `LD_PRELOAD` (our library, and mimalloc's built \
         from the same sources as that crate's), with glibc without a preload as a third column, alternating; \
         its rows are the median wall time per run, fork to exit, and the peak RSS of each run comes from \
         `wait4`.\n",
        info.settings.reps,
        info.settings.target.as_millis()
    );
    let _ = writeln!(out, "- Machine: {}, {} CPUs (nproc)", info.cpu, info.nproc);
    let _ = writeln!(out, "- Date: {} (UTC)", info.date);
    if let Some(load) = info.load {
        let verdict = if load > info.nproc as f64 { ": more runnable tasks than CPUs, figures disturbed" } else { "" };
        let _ = writeln!(out, "- Load average at the start: {load:.2}{verdict}");
    }
    let _ = writeln!(out, "- Command: `{COMMAND}`");
    let _ = writeln!(out, "- Raw data: `target/bench/results.json` (one object per goal and probe)");
    if info.quick {
        out.push_str("- **Quick smoke run (`--quick`): too few repetitions to quote.**\n");
    }
    out.push_str("\n## Results\n\n");
    out.push_str(&tables(rows));
    if let Some(extra) = extra {
        out.push('\n');
        out.push_str(extra);
    }
    out.push_str("\nSetup and spread (fastest–slowest repetition):\n\n");
    for r in rows.iter().filter(|r| r.kind == "goal") {
        let _ = writeln!(out, "- {}: {}.", r.id, r.note);
    }
    out.push_str("\n## Not met / limits\n\n");
    let unmet: Vec<&Row> = rows.iter().filter(|r| r.met == Some(false)).collect();
    if unmet.is_empty() {
        out.push_str("Every goal measured in this run was met.\n");
    }
    for r in unmet {
        let _ = writeln!(
            out,
            "### {}: {:.2} ({}), goal ≤ {}\n",
            r.id,
            r.ratio.unwrap_or(f64::NAN),
            r.ratio_definition.unwrap_or("ours / peer"),
            r.goal.unwrap_or(f64::NAN)
        );
        let _ = writeln!(out, "{}\n", r.limit.unwrap_or(""));
        for p in rows.iter().filter(|p| p.goal_id == Some(r.id.as_str())) {
            let _ = writeln!(out, "- probe `{}`: {} ({})", p.id, ns(p.peer), p.note);
        }
        out.push('\n');
    }
    out.push_str(INSTRUCTION_COUNTS);
    out
}

/// How to get deterministic instruction counts, which this VM's timings are
/// not.
const INSTRUCTION_COUNTS: &str = "\
## Instruction counts

Timings on a shared VM drift; instruction counts do not. `--iters N` skips calibration, so every \
workload runs exactly N × (reps + 1) iterations, and callgrind can count one loop:

```sh
cargo build --release -p memdesc-bench
valgrind --tool=callgrind --toggle-collect='memdesc_bench::ours::pair_loop' \\
    target/release/memdesc-bench --quick --filter P1 --iters 100000
```

Divide the total `I refs` by N × 4 (`--quick` runs 3 reps + 1 warm-up). The loops are \
`ours::pair_loop` (P1, P3, P4), `ours::frozen_pair_loop` (P1f), `ours::batch_loop` (P2; 1000 ops per iteration), \
`ours::get_put_loop` (R1), `mm::pin_loop` (G1, G2, and G1's probes; 512 pages per iteration), \
`memdesc::thp::split_folio` (T1: the split alone, without the THP fault and munmap around it), \
`mm::first_touch_loop` (F1, F2; it includes the untimed munmap, so toggle on \
`memdesc::pgtable::aspace::AddressSpace::write` for the faults alone), `slab::cache_pair_loop` (S1), \
`slab::kmalloc_pair_loop` (S1k), `slab::lookup_loop`, `slab::sheaf_floor_pair_loop` and \
`slab::local_enter_exit_loop` (S1's probes), `slab::cache_pair_on_loop` and `slab::kmalloc_pair_on_loop` \
(the `pair_on` and `kmalloc_on` probes), `slab::cache_batch_on_loop` (S2's `batch_on` probe), \
`slab::cache_batch_loop` (S2, S2g, S3's 1-thread probe; 1000 ops per iteration, or 128 for the \
`sheaf_only_batch` probe, which the same toggle also counts), `peers::*_loop` for the peers, and \
`mallocs::pair_on` and `mallocs::batch_on` for mimalloc and glibc (one symbol name for both: \
`callgrind_annotate --inclusive=yes` splits them by source file, the `mimalloc` crate's lib.rs and \
std's `alloc/unix.rs`); `callgrind_annotate --inclusive=yes` breaks a loop down by function. The host's own \
faults and `MADV_DONTNEED` run in the kernel, which callgrind does not see.
";
