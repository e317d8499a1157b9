//! The command line: subcommands, options, the help's closing notes, and
//! the parsers for sizes, durations, CPU counts and seeds.
//!
//! Each parser says what is wrong with a bad value (negative, zero, below
//! the minimum, too large, an unknown unit), not just that it is invalid.
//! Values may start with `-` so that a negative one reaches its parser and
//! gets that message instead of clap's "unexpected argument".

use crate::exit;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use memdesc_sim::arena::RAM_GRANULE;
use memdesc_sim::{Workload, MAX_WORKLOAD_CPUS, MIN_RAM_BYTES};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A physical-memory manager on typed page descriptors: run the simulator.
#[derive(Debug, Parser)]
#[command(name = "memdesc", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The options of `run`, when no subcommand is given.
    #[command(flatten)]
    pub run: RunArgs,
}

/// A subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a simulated machine, run a workload (`--profile`), print the
    /// report.
    Run(RunArgs),
    /// Replay one of the seeds' races step by step on the real code
    /// (`memdesc race list` names them).
    Race(RaceArgs),
}

/// Options of `memdesc race`.
#[derive(Debug, Args)]
pub struct RaceArgs {
    /// `list` to name the races, or the race to replay.
    #[arg(value_name = "NAME", value_parser = race_names())]
    pub name: String,
    /// Which code the getter runs: `historical` (before the fix: the replay
    /// skips the rechecks it lacked) or `fixed`. Default: both, historical
    /// first.
    #[arg(long, value_enum)]
    pub variant: Option<VariantArg>,
    /// Print the reports (or the list) as JSON on stdout: an array.
    #[arg(long)]
    pub json: bool,
}

/// `--variant` of `memdesc race`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VariantArg {
    /// The code before the fix.
    Historical,
    /// The code as it is.
    Fixed,
}

impl From<VariantArg> for memdesc_sim::race::Variant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::Historical => Self::Historical,
            VariantArg::Fixed => Self::Fixed,
        }
    }
}

/// `list` and every race's name, so clap lists them in errors and help.
fn race_names() -> clap::builder::PossibleValuesParser {
    let names = std::iter::once("list").chain(memdesc_sim::race::scenarios().iter().map(|s| s.name));
    clap::builder::PossibleValuesParser::new(names)
}

/// Options of `memdesc run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Simulated RAM: bytes, or with a binary suffix (512M, 4G, 4GiB, 1.5G).
    /// At least 64 MiB; rounded down to a multiple of 4 MiB.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_mem, allow_hyphen_values = true)]
    pub mem: u64,
    /// Workload CPUs (threads), 1 to 47: the allocator CPUs of the mixed
    /// profile; a scanner, cpus processes (2 to 4), cpus pinners (2 to 8),
    /// a splitter, 2 slab CPUs and a slab reader are added. In the slab
    /// profile: the slab CPUs (at least 2), with a scanner and 2 readers.
    /// Default: one per host core, at most 47.
    #[arg(long, value_name = "N", value_parser = parse_cpus, allow_hyphen_values = true)]
    pub cpus: Option<u32>,
    /// What runs. `mixed` (the default): allocator CPUs churn folios of
    /// every order beside a scanner taking speculative references, and
    /// processes (address spaces, THP faults, mprotect, MADV_DONTNEED,
    /// munmap), pinners (GUP-fast pins like direct I/O, stamps checked
    /// through the pins) and a splitter (THP splits racing the pins), and
    /// slab CPUs (objects of TYPESAFE_BY_RCU, debug, constructor and sized
    /// caches, stamped, freed locally and remotely) with lockless readers.
    /// `gup`: the processes, pinners, splitter and scanner alone, no
    /// allocator churn. `slab`: the slab CPUs, readers and scanner alone;
    /// the report adds slabinfo lines and the slab counters.
    #[arg(long, value_name = "PROFILE", default_value = "mixed", value_parser = profile_parser())]
    pub profile: Workload,
    /// How long the workload runs before teardown: a number and a unit (ns,
    /// us, ms, s, m, h), or bare seconds (10s, 500ms, 1.5s, 2m).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Duration,
    /// Seed of every random choice. Default: from the clock (printed in the report).
    #[arg(long, value_name = "N", value_parser = parse_seed, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Boot with only the lower half of the RAM present and hot-add the
    /// upper half in 4 MiB sections during the first half of the run, while
    /// every CPU allocates, frees and scans.
    #[arg(long)]
    pub hot_add: bool,
}

/// The command line with its closing notes (memory, exit status), built
/// from the constants they state so they cannot drift.
pub fn command() -> clap::Command {
    let notes = notes();
    Cli::command()
        .after_help(notes.clone())
        .mut_subcommand("run", |run| run.after_help(notes))
        .mut_subcommand("race", |race| race.after_help(race_notes()))
}

/// What `memdesc race --help` says after the options.
fn race_notes() -> String {
    format!(
        "Races:\n{races}\n\
         \n\
         Exit status:\n  \
         {passed:<4} every variant replayed behaved as expected: the fixed code's recheck refused\n       \
         the reference; the historical code showed the bug and validation caught it\n  \
         {failed:<4} a variant did not, or the threads did not follow the schedule\n  \
         {usage:<4} usage error, or the simulated machine could not start",
        races = memdesc_sim::race::scenarios()
            .iter()
            .map(|s| format!("  {}\n      {}", s.name, s.summary))
            .collect::<Vec<_>>()
            .join("\n"),
        passed = exit::PASSED,
        failed = exit::FAILED,
        usage = exit::USAGE,
    )
}

/// Parses the process's arguments, exiting with the usage code (or 0 for
/// `--help` and `--version`) when they do not parse.
pub fn parse() -> Cli {
    let parsed = command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m));
    parsed.unwrap_or_else(|e| e.exit())
}

/// What `--help` says after the options.
fn notes() -> String {
    format!(
        "Memory:\n  \
         --mem is rounded down to a multiple of {granule} MiB; the least accepted is {min} MiB.\n  \
         The machine adds holes around the RAM and reserves part of it as the kernel image.\n\
         \n\
         Exit status:\n  \
         {passed:<4} passed: no violations, no leaked frames, no bad pages\n  \
         {failed:<4} failed: violations, leaked frames or bad pages (interrupted or not), or the run hung\n  \
         {usage:<4} usage error, or the simulated machine could not start\n  \
         {interrupted:<4} interrupted by Ctrl-C (SIGINT) with nothing wrong in what ran: the workload\n       \
         stops, teardown and audit still run, and the report of what ran is printed,\n       \
         marked INTERRUPTED. A second Ctrl-C ends at once, without a report.",
        granule = RAM_GRANULE >> 20,
        min = MIN_RAM_BYTES >> 20,
        passed = exit::PASSED,
        failed = exit::FAILED,
        usage = exit::USAGE,
        interrupted = exit::INTERRUPTED,
    )
}

/// Parses `--mem`: a size (see [`parse_size`]) of at least
/// [`MIN_RAM_BYTES`].
///
/// # Errors
/// A message saying what is wrong: as [`parse_size`], or below the minimum.
pub fn parse_mem(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < MIN_RAM_BYTES {
        return Err(format!(
            "{:?} is less than the minimum of {} MiB of simulated RAM",
            text.trim(),
            MIN_RAM_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// Parses a size: a number of bytes, optionally with a fraction and a
/// binary suffix (`K`, `M`, `G`, `T`, each optionally followed by `iB` or
/// `B`; case-insensitive), rounded down to whole bytes. `4G`, `4GiB` and
/// `4GB` all mean 4 × 2^30.
///
/// # Errors
/// A message for an empty, negative, malformed or too-large size, or an
/// unknown unit.
pub fn parse_size(text: &str) -> Result<u64, String> {
    const EXAMPLES: &str = "examples: 512M, 4G, 4GiB, 1048576";
    let text = text.trim();
    let (number, suffix) = split_number(text, "size", EXAMPLES)?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("unknown size unit {suffix:?} in {text:?} (use K, M, G or T, or none for bytes)")),
    };
    let bytes = scale(number, 1u64 << shift).ok_or_else(|| format!("{text:?} is not a size ({EXAMPLES})"))?;
    u64::try_from(bytes).map_err(|_| format!("{text:?} is too large: sizes stop below 16 EiB (2^64 bytes)"))
}

/// Parses a duration: a number with a unit (`ns`, `us` or `µs`, `ms`, `s`,
/// `m` or `min`, `h`), or bare seconds: `10s`, `500ms`, `2m`, `1.5s`,
/// `100ns`. Fractions are exact down to the nanosecond.
///
/// # Errors
/// A message for an empty, negative, zero, malformed, shorter than 1 ns or
/// too long duration, or an unknown unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXAMPLES: &str = "examples: 10s, 500ms, 1.5s, 2m";
    let text = text.trim();
    let (number, unit) = split_number(text, "duration", EXAMPLES)?;
    let nanos_per_unit: u64 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(format!("unknown duration unit {unit:?} in {text:?} (use ns, us, ms, s, m or h)")),
    };
    let nanos = scale(number, nanos_per_unit).ok_or_else(|| format!("{text:?} is not a duration ({EXAMPLES})"))?;
    let nanos = u64::try_from(nanos)
        .map_err(|_| format!("{text:?} is too long: durations stop below 2^64 ns (about 584 years)"))?;
    if nanos == 0 {
        return Err(if number.bytes().all(|b| b == b'0' || b == b'.') {
            "the duration must be more than zero".to_owned()
        } else {
            format!("{text:?} is shorter than 1 ns, the finest duration there is")
        });
    }
    Ok(Duration::from_nanos(nanos))
}

/// `--profile`: the workloads by name; clap lists them in `--help` and in
/// its error for any other.
fn profile_parser() -> impl clap::builder::TypedValueParser<Value = Workload> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Workload::ALL.map(Workload::name))
        .map(|name| Workload::from_name(&name).unwrap_or_default())
}

/// Parses `--cpus`: a whole number of workload CPUs, from 1 to
/// [`MAX_WORKLOAD_CPUS`] (the node's other CPUs run the scanner,
/// processes, pinners and splitter).
///
/// # Errors
/// A message for a negative, malformed, zero or too-large count.
pub fn parse_cpus(text: &str) -> Result<u32, String> {
    let max = MAX_WORKLOAD_CPUS;
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("negative CPU counts are not allowed: {text}"));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a CPU count: use a whole number from 1 to {max}"));
    }
    match text.parse::<u32>() {
        Ok(0) => Err("at least one CPU is needed".to_owned()),
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "{text} CPUs requested; at most {max} (the others run the scanner, processes, pinners and splitter)"
        )),
    }
}

/// Parses `--seed`: a whole number from 0 to 2^64 - 1.
///
/// # Errors
/// A message for a negative, malformed or too-large seed.
pub fn parse_seed(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("negative seeds are not allowed: {text} (seeds are 0 to {})", u64::MAX));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a seed: use a whole number from 0 to {}", u64::MAX));
    }
    text.parse().map_err(|_| format!("seed {text} is too large: at most {}", u64::MAX))
}

/// Splits `text` into its number (digits and `.`) and its unit (trimmed),
/// refusing an empty or negative value with a message about `what`.
fn split_number<'t>(text: &'t str, what: &str, examples: &str) -> Result<(&'t str, &'t str), String> {
    if text.is_empty() {
        return Err(format!("empty {what} ({examples})"));
    }
    if text.starts_with('-') {
        return Err(format!("negative {what}s are not allowed: {text}"));
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("{text:?} does not start with a number ({examples})"));
    }
    Ok((number, unit.trim()))
}

/// `number` (digits, optionally one `.` and more digits) times `unit`,
/// rounded down; `None` if malformed. Exact for up to 18 fraction digits
/// (later ones are below a unit's 10^-18 and are dropped, rounding down).
fn scale(number: &str, unit: u64) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits_only(whole) || !digits_only(fraction) {
        return None;
    }
    // Leading zeros carry nothing, and dropping them keeps long zero
    // paddings from overflowing the parse.
    let whole = whole.trim_start_matches('0');
    let whole: u128 = if whole.is_empty() {
        0
    } else if whole.len() > 20 {
        // More than u64::MAX: too large whatever the unit, and still
        // reported as too large rather than malformed.
        u128::from(u64::MAX) + 1
    } else {
        whole.parse().ok()?
    };
    let mut total = whole * u128::from(unit);
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        total += digits * u128::from(unit) / 10u128.pow(fraction.len() as u32);
    }
    Some(total)
}

/// One workload CPU per host core, within what `--cpus` accepts.
pub fn default_cpus() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores as u32).min(MAX_WORKLOAD_CPUS)
}

/// A seed from the clock, for runs that did not ask for one.
pub fn fresh_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // Fold to a short decimal that is easy to type back.
    (nanos as u64 ^ (nanos >> 64) as u64) % 1_000_000_000
}

#[cfg(test)]
mod tests;
