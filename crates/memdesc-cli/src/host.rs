//! The host's memory, to warn before a run that cannot fit: the workload
//! touches nearly all simulated RAM (it stamps every frame it allocates,
//! and its pressure phases allocate until memory runs out), so a `--mem`
//! above what the host has free ends with the host's OOM killer, not a
//! report.

use std::fs;

/// Bytes the host has available (`MemAvailable` in `/proc/meminfo`), if it
/// says.
pub fn available_bytes() -> Option<u64> {
    parse_meminfo(&fs::read_to_string("/proc/meminfo").ok()?)
}

/// `MemAvailable` from the text of `/proc/meminfo`, in bytes.
fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// A warning when `ram_bytes` of simulated RAM exceed the host's
/// `available` bytes.
pub fn warning(ram_bytes: u64, available: u64) -> Option<String> {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    (ram_bytes > available).then(|| {
        format!(
            "warning: {:.1} GiB of simulated RAM is more than the {:.1} GiB this host has available; the \
             workload touches nearly all of it, so the host may kill the run before it reports",
            gib(ram_bytes),
            gib(available)
        )
    })
}

#[cfg(test)]
mod tests;
