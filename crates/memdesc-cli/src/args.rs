//! The command line: subcommands, options, and the parsers for sizes and
//! durations.

use clap::{Args, Parser, Subcommand};
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
    /// Boot a simulated machine, run the mixed workload, print the report.
    Run(RunArgs),
}

/// Options of `memdesc run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Simulated RAM: bytes, or with a binary suffix (512M, 4G, 4GiB).
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub mem: u64,
    /// Workload CPUs (threads); a scanner CPU is added. Default: one per host core.
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// How long the workload runs before teardown (10s, 500ms, 2m).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed of every random choice. Default: from the clock (printed in the report).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Parses a size: a number of bytes, optionally with a fraction and a
/// binary suffix (`K`, `M`, `G`, `T`, each optionally followed by `iB` or
/// `B`; case-insensitive). `4G`, `4GiB` and `4GB` all mean 4 × 2^30.
///
/// # Errors
/// A message for an empty, malformed, zero or too-large size.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown size unit {other:?} (use K, M, G or T)")),
    };
    let bytes = scale(number, 1u64 << shift)
        .ok_or_else(|| format!("invalid size {text:?} (examples: 512M, 4G, 4GiB, 1048576)"))?;
    if bytes == 0 {
        return Err("size must not be zero".to_owned());
    }
    Ok(bytes)
}

/// Parses a duration: a number with a unit (`ms`, `s`, `m`, `h`), or bare
/// seconds. `10s`, `500ms`, `2m`, `1.5s`.
///
/// # Errors
/// A message for an empty, malformed or zero duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let nanos_per_unit: u64 = match unit.trim() {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m or h)")),
    };
    let nanos =
        scale(number, nanos_per_unit).ok_or_else(|| format!("invalid duration {text:?} (examples: 10s, 500ms, 2m)"))?;
    if nanos == 0 {
        return Err("duration must not be zero".to_owned());
    }
    Ok(Duration::from_nanos(nanos))
}

/// `number` (digits, optionally one `.` and more digits) times `unit`,
/// rounded down; `None` if malformed or overflowing.
fn scale(number: &str, unit: u64) -> Option<u64> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only(whole) || !digits_only(fraction) {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut total = whole.checked_mul(unit)? as u128;
    // The fraction, exactly: digits / 10^len × unit, for up to 18 digits.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        total += digits * unit as u128 / 10u128.pow(fraction.len() as u32);
    }
    u64::try_from(total).ok()
}

/// A seed from the clock, for runs that did not ask for one.
pub fn fresh_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // Fold to a short decimal that is easy to type back.
    (nanos as u64 ^ (nanos >> 64) as u64) % 1_000_000_000
}

#[cfg(test)]
mod tests;
