//! Why a simulation could not run.

use memdesc::buddy::BootError;
use memdesc::pgtable::MmError;
use memdesc::slab::SlabError;
use memdesc::RcuError;
use memdesc_host::SlotError;
use std::fmt;
use std::io;

/// Why [`run`](crate::run) returned no report.
#[derive(Debug)]
pub enum SimError {
    /// The configuration asked for no CPUs.
    NoCpus,
    /// More workload CPUs than the node serves (it keeps CPUs for the
    /// scanner, processes, pinners and splitters).
    TooManyCpus {
        /// CPUs asked for.
        cpus: u32,
        /// The most allowed.
        max: u32,
    },
    /// Less RAM than [`MIN_RAM_BYTES`](crate::MIN_RAM_BYTES).
    TooLittleMemory {
        /// Bytes asked for.
        bytes: u64,
        /// The least allowed.
        min: u64,
    },
    /// The host refused to map the arena.
    Map(io::Error),
    /// The node refused to boot over the arena.
    Boot(BootError),
    /// The host refused to start a thread.
    Spawn(io::Error),
    /// The machine's RCU could not be set up for its CPUs.
    Rcu(RcuError),
    /// A process's address space could not be created (no frame for its
    /// root table).
    AddressSpace(MmError),
    /// The slab allocator or one of the simulator's caches could not be
    /// created.
    Slab(SlabError),
    /// The machine's CPUs could not be set up (a count the core does not
    /// support).
    Cpus(SlotError),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCpus => f.write_str("at least one CPU is needed"),
            Self::TooManyCpus { cpus, max } => {
                write!(f, "{cpus} CPUs requested; at most {max} (the others run the scanner, processes, pinners and splitter)")
            }
            Self::TooLittleMemory { bytes, min } => {
                write!(f, "{bytes} bytes of RAM requested; at least {} MiB", min >> 20)
            }
            Self::Map(e) => write!(f, "cannot map the simulated memory: {e}"),
            Self::Boot(e) => write!(f, "the node did not boot: {e}"),
            Self::Spawn(e) => write!(f, "cannot start a CPU thread: {e}"),
            Self::Rcu(e) => write!(f, "cannot set up RCU: {e}"),
            Self::AddressSpace(e) => write!(f, "cannot create a process's address space: {e}"),
            Self::Slab(e) => write!(f, "cannot set up the slab allocator: {e}"),
            Self::Cpus(e) => write!(f, "cannot set up the CPUs: {e}"),
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Map(e) | Self::Spawn(e) => Some(e),
            Self::Boot(e) => Some(e),
            Self::Rcu(e) => Some(e),
            Self::AddressSpace(e) => Some(e),
            Self::Slab(e) => Some(e),
            Self::Cpus(e) => Some(e),
            _ => None,
        }
    }
}
