//! What to simulate: the machine's memory and CPUs, how long, the seed, and
//! the workload.

use crate::error::SimError;
use serde::Serialize;
use std::time::Duration;

/// The least RAM the simulator boots with: below it the reserved kernel image
/// leaves the normal zone (almost) empty.
pub const MIN_RAM_BYTES: u64 = 64 << 20;

/// A workload the simulator can run (the CLI's `--profile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Allocator CPUs allocate and free mixed orders with random lifetimes,
    /// counted and frozen, stamping and checking every frame; a scanner
    /// takes speculative references to random frames; processes, pinners
    /// and a splitter run the page-table, GUP and THP layers beside them.
    #[default]
    Mixed,
    /// Only the page-table, GUP and THP layers: processes, pinners, a
    /// splitter and the scanner, no allocator churn.
    Gup,
    /// Only the slab layer: slab CPUs churning objects of several caches
    /// (remote frees, shrinks), lockless readers of a TYPESAFE_BY_RCU
    /// cache, and the scanner.
    Slab,
}

impl Workload {
    /// Every workload, in the order `--help` lists them.
    pub const ALL: [Workload; 3] = [Workload::Mixed, Workload::Gup, Workload::Slab];

    /// The workload's name, as the report and `--profile` spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Mixed => "mixed",
            Self::Gup => "gup",
            Self::Slab => "slab",
        }
    }

    /// The workload named `name`.
    pub fn from_name(name: &str) -> Option<Workload> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// The most workload CPUs `--cpus` may ask for: the node serves
/// [`memdesc::buddy::MAX_CPUS`], and the scanner and the largest set of
/// processes, pinners and splitters take the rest.
pub const MAX_WORKLOAD_CPUS: u32 =
    memdesc::buddy::MAX_CPUS as u32 - 1 - MAX_PROCESSES - MAX_PINNERS - SPLITTERS - MIXED_SLAB_CPUS - MIXED_READERS;
/// The most processes a run has.
const MAX_PROCESSES: u32 = 4;
/// The most pinners a run has.
const MAX_PINNERS: u32 = 8;
/// Splitters in every run that has processes.
const SPLITTERS: u32 = 1;
/// Slab CPUs beside the allocator CPUs of the mixed workload.
const MIXED_SLAB_CPUS: u32 = 2;
/// Lockless readers of the TYPESAFE_BY_RCU cache in the mixed workload.
const MIXED_READERS: u32 = 1;
/// Lockless readers in the slab workload.
const SLAB_READERS: u32 = 2;

/// Which CPU runs what. CPUs `0..allocators` run the allocator workload,
/// CPU `scanner` the scanner, then come the processes, the pinners, the
/// splitters, the slab CPUs and the slab readers, in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// CPUs running the allocator workload (none in the `gup` profile).
    pub allocators: u32,
    /// The scanner's CPU (= `allocators`).
    pub scanner: u32,
    /// Processes, each with its own address space.
    pub processes: u32,
    /// Pinners (GUP-fast like direct I/O).
    pub pinners: u32,
    /// Splitters.
    pub splitters: u32,
    /// Slab CPUs (allocating, stamping, freeing locally and remotely).
    pub slab_cpus: u32,
    /// Lockless readers of the TYPESAFE_BY_RCU cache.
    pub slab_readers: u32,
}

impl Layout {
    /// Every CPU of the machine.
    pub fn nr_cpus(&self) -> u32 {
        self.allocators + 1 + self.processes + self.pinners + self.splitters + self.slab_cpus + self.slab_readers
    }

    /// The first process CPU.
    pub fn first_process(&self) -> u32 {
        self.scanner + 1
    }

    /// The first pinner CPU.
    pub fn first_pinner(&self) -> u32 {
        self.first_process() + self.processes
    }

    /// The first splitter CPU.
    pub fn first_splitter(&self) -> u32 {
        self.first_pinner() + self.pinners
    }

    /// The first slab CPU.
    pub fn first_slab_cpu(&self) -> u32 {
        self.first_splitter() + self.splitters
    }

    /// The first slab reader CPU.
    pub fn first_slab_reader(&self) -> u32 {
        self.first_slab_cpu() + self.slab_cpus
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
    /// Boot with only the lower RAM range present and hot-add the upper
    /// one, section by section, during the first half of the run
    /// ([`memdesc::Node::hot_add`]) while every CPU works.
    pub hot_add: bool,
}

/// Share of managed memory, in percent, the processes map together at most:
/// beside the allocator workload, and alone.
const MM_PERCENT_MIXED: u64 = 10;
const MM_PERCENT_GUP: u64 = 50;

impl SimConfig {
    /// RAM when none is given: 4 GiB.
    pub const DEFAULT_RAM_BYTES: u64 = 4 << 30;
    /// Duration when none is given: 10 s.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

    /// The mixed workload on `cpus` CPUs and `ram_bytes` of RAM.
    pub fn new(ram_bytes: u64, cpus: u32, duration: Duration, seed: u64) -> Self {
        Self { ram_bytes, cpus, duration, seed, workload: Workload::Mixed, hot_add: false }
    }

    /// The same configuration, hot-adding the upper RAM range during the
    /// run (`--hot-add`).
    pub fn with_hot_add(self, hot_add: bool) -> Self {
        Self { hot_add, ..self }
    }

    /// The same configuration running `workload`.
    pub fn with_workload(self, workload: Workload) -> Self {
        Self { workload, ..self }
    }

    /// Which CPU runs what: `cpus` allocator CPUs (none in the `gup` and
    /// `slab` profiles), the scanner, then `cpus` processes (2 to 4),
    /// `cpus` pinners (2 to 8) and one splitter (none in the `slab`
    /// profile), then the slab CPUs (2 beside the mixed workload, `cpus`
    /// but at least 2 in the `slab` profile) and the slab readers (1 and 2).
    pub fn layout(&self) -> Layout {
        let (allocators, slab_cpus, slab_readers) = match self.workload {
            Workload::Mixed => (self.cpus, MIXED_SLAB_CPUS, MIXED_READERS),
            Workload::Gup => (0, 0, 0),
            Workload::Slab => (0, self.cpus.max(2), SLAB_READERS),
        };
        let mm = self.workload != Workload::Slab;
        Layout {
            allocators,
            scanner: allocators,
            processes: if mm { self.cpus.clamp(2, MAX_PROCESSES) } else { 0 },
            pinners: if mm { self.cpus.clamp(2, MAX_PINNERS) } else { 0 },
            splitters: if mm { SPLITTERS } else { 0 },
            slab_cpus,
            slab_readers,
        }
    }

    /// Percent of managed memory the processes may map together.
    pub(crate) fn mm_percent(&self) -> u64 {
        match self.workload {
            Workload::Mixed => MM_PERCENT_MIXED,
            Workload::Gup => MM_PERCENT_GUP,
            Workload::Slab => 0,
        }
    }

    /// Checks the configuration can boot.
    ///
    /// # Errors
    /// [`SimError::NoCpus`], [`SimError::TooManyCpus`] (beyond
    /// [`MAX_WORKLOAD_CPUS`]: the scanner, processes, pinners and splitter
    /// need CPUs of their own within [`memdesc::buddy::MAX_CPUS`]),
    /// [`SimError::TooLittleMemory`].
    pub fn validate(&self) -> Result<(), SimError> {
        if self.cpus == 0 {
            return Err(SimError::NoCpus);
        }
        let max = MAX_WORKLOAD_CPUS;
        if self.cpus > max {
            return Err(SimError::TooManyCpus { cpus: self.cpus, max });
        }
        if self.ram_bytes < MIN_RAM_BYTES {
            return Err(SimError::TooLittleMemory { bytes: self.ram_bytes, min: MIN_RAM_BYTES });
        }
        Ok(())
    }

    /// The command line that runs this configuration again, exactly:
    /// `memdesc run --mem … --cpus … --duration … --seed …` (and
    /// `--profile …` when not the default, `--hot-add` when set), each
    /// value printed in the
    /// largest unit that represents it without rounding.
    pub fn repeat_command(&self) -> String {
        let profile = match self.workload {
            Workload::Mixed => String::new(),
            other => format!(" --profile {}", other.name()),
        };
        format!(
            "memdesc run{profile}{} --mem {} --cpus {} --duration {} --seed {}",
            if self.hot_add { " --hot-add" } else { "" },
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
