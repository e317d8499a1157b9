//! What to simulate: the machine's memory and CPUs, how long, the seed, and
//! the workload.

use crate::error::SimError;
use serde::Serialize;
use std::time::Duration;

/// The least RAM the simulator boots with: below it the reserved kernel image
/// leaves the normal zone (almost) empty.
pub const MIN_RAM_BYTES: u64 = 64 << 20;

/// A workload the simulator can run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Every CPU allocates and frees mixed orders with random lifetimes,
    /// counted and frozen, stamping and checking every frame, while a scanner
    /// takes speculative references to random frames.
    #[default]
    Mixed,
}

impl Workload {
    /// The workload's name, as the report prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Mixed => "mixed",
        }
    }
}

/// What to simulate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimConfig {
    /// Simulated RAM, in bytes (the arena rounds it down to
    /// [`RAM_GRANULE`](crate::arena::RAM_GRANULE)).
    pub ram_bytes: u64,
    /// Simulated CPUs running the workload; the scanner gets one more.
    pub cpus: u32,
    /// How long the workload runs, before teardown and audit.
    #[serde(rename = "duration_s", serialize_with = "serialize_secs")]
    pub duration: Duration,
    /// Seed of every random choice (same seed, same choices per CPU; the
    /// interleaving of CPUs is the host's).
    pub seed: u64,
    /// What the CPUs run.
    pub workload: Workload,
}

impl SimConfig {
    /// RAM when none is given: 4 GiB.
    pub const DEFAULT_RAM_BYTES: u64 = 4 << 30;
    /// Duration when none is given: 10 s.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

    /// The mixed workload on `cpus` CPUs and `ram_bytes` of RAM.
    pub fn new(ram_bytes: u64, cpus: u32, duration: Duration, seed: u64) -> Self {
        Self { ram_bytes, cpus, duration, seed, workload: Workload::Mixed }
    }

    /// Checks the configuration can boot.
    ///
    /// # Errors
    /// [`SimError::NoCpus`], [`SimError::TooManyCpus`] (the scanner needs a
    /// CPU of its own within [`memdesc::buddy::MAX_CPUS`]),
    /// [`SimError::TooLittleMemory`].
    pub fn validate(&self) -> Result<(), SimError> {
        if self.cpus == 0 {
            return Err(SimError::NoCpus);
        }
        let max = memdesc::buddy::MAX_CPUS as u32 - 1;
        if self.cpus > max {
            return Err(SimError::TooManyCpus { cpus: self.cpus, max });
        }
        if self.ram_bytes < MIN_RAM_BYTES {
            return Err(SimError::TooLittleMemory { bytes: self.ram_bytes, min: MIN_RAM_BYTES });
        }
        Ok(())
    }

    /// The command line that runs this configuration again, exactly:
    /// `memdesc run --mem … --cpus … --duration … --seed …`, each value
    /// printed in the largest unit that represents it without rounding.
    pub fn repeat_command(&self) -> String {
        format!(
            "memdesc run --mem {} --cpus {} --duration {} --seed {}",
            size_arg(self.ram_bytes),
            self.cpus,
            duration_arg(self.duration),
            self.seed
        )
    }
}

/// `bytes` as `--mem` accepts it: in the largest binary unit (T, G, M, K)
/// that divides it, else in bytes.
fn size_arg(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    for (shift, suffix) in UNITS {
        if bytes != 0 && bytes % (1 << shift) == 0 {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `d` as `--duration` accepts it: in the largest unit (h, m, s, ms, us,
/// ns) that divides it, so nothing is rounded away.
fn duration_arg(d: Duration) -> String {
    const UNITS: [(u128, &str); 5] =
        [(3_600_000_000_000, "h"), (60_000_000_000, "m"), (1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")];
    let nanos = d.as_nanos();
    for (unit, suffix) in UNITS {
        if nanos != 0 && nanos % unit == 0 {
            return format!("{}{suffix}", nanos / unit);
        }
    }
    format!("{nanos}ns")
}

impl Default for SimConfig {
    /// 4 GiB, one CPU per host core, 10 s, seed 0.
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Self::new(Self::DEFAULT_RAM_BYTES, cpus, Self::DEFAULT_DURATION, 0)
    }
}

#[cfg(test)]
mod tests;

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
