//! Measured limits of the host kernel: its first-touch fault of anonymous
//! memory, the figure goals F1 (4 KiB) and F2 (2 MiB THP) compare our
//! address spaces' faults with (issue 6). They have no goal rows yet; they
//! are reported as limits ([`Limit`]) beside the goals.
//!
//! Each iteration maps a fresh anonymous region (outside the clock), times
//! the first write to every 4 KiB page of it, and unmaps it:
//! - **4 KiB** ([`first_touch_4k`]): [`PAGES_4K`] pages advised
//!   `MADV_NOHUGEPAGE`, so each write is one fault that allocates and zeroes
//!   one page; reported per page.
//! - **2 MiB** ([`first_touch_2m`]): a 2 MiB-aligned 2 MiB range advised
//!   `MADV_HUGEPAGE`; with a THP the first write faults in and zeroes the
//!   whole 2 MiB and the other 511 writes hit it; without one, every write
//!   is a 4 KiB fault. Reported per 2 MiB. Whether the host gave THPs is
//!   read from `/proc/vmstat` (`thp_fault_alloc`, `thp_fault_fallback`
//!   around the measurement) and the policy from
//!   `/sys/kernel/mm/transparent_hugepage/enabled`, and both go in the
//!   note, so a row measured without THPs says so.
//!
//! No `unsafe`: memmap2's anonymous maps and `advise_range` are safe, and
//! the writes go through the map's slice.

use crate::harness::{measure, Sample, Settings, Workload};
use memmap2::{Advice, MmapMut, MmapOptions};
use std::io;
use std::time::{Duration, Instant};

/// 4 KiB pages per iteration of the 4 KiB probe (16 MiB).
pub const PAGES_4K: usize = 4096;
const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;

/// A measured limit: a probe that is not tied to a goal measured in this
/// run, named by the goal it bounds.
pub struct Limit {
    /// A stable id.
    pub id: &'static str,
    /// The goal it is the limit of (F1, F2).
    pub goal_id: &'static str,
    /// What was measured.
    pub description: &'static str,
    /// The unit of the figure.
    pub unit: &'static str,
    /// The measurement.
    pub sample: Sample,
    /// Context: the THP policy and what the host gave.
    pub note: String,
}

/// Measures both host probes.
///
/// # Errors
/// If the host refuses to map or advise a region.
pub fn limits(settings: &Settings) -> io::Result<Vec<Limit>> {
    let policy = thp_policy();
    let small = first_touch_4k(settings)?;
    let before = thp_events();
    let (huge, regions) = first_touch_2m(settings)?;
    let after = thp_events();
    let given = match (before, after) {
        (Some(b), Some(a)) => {
            let (alloc, fallback) = (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1));
            let verdict = if alloc >= regions {
                "every region got a THP"
            } else if alloc == 0 {
                "NO THP: the figure is 512 small faults, not a huge-page fault"
            } else {
                "some regions got no THP: the figure mixes huge and small faults"
            };
            format!("{verdict} (thp_fault_alloc +{alloc}, thp_fault_fallback +{fallback} over {regions} regions)")
        }
        _ => "THP use unknown (no /proc/vmstat)".to_owned(),
    };
    Ok(vec![
        Limit {
            id: "host_fault_4k",
            goal_id: "F1",
            description: "host kernel first-touch fault, anonymous mmap, 4 KiB (MADV_NOHUGEPAGE)",
            unit: "ns/page",
            sample: small,
            note: format!("{PAGES_4K} pages per iteration, zeroing included; THP policy {policy}"),
        },
        Limit {
            id: "host_fault_2m",
            goal_id: "F2",
            description: "host kernel first-touch fault, anonymous mmap, 2 MiB aligned (MADV_HUGEPAGE)",
            unit: "ns/2 MiB",
            sample: huge,
            note: format!("all 512 pages written, zeroing included; THP policy {policy}; {given}"),
        },
    ])
}

/// The 4 KiB probe: median ns per first-touched page.
fn first_touch_4k(settings: &Settings) -> io::Result<Sample> {
    let mut error = None;
    let samples = measure(
        settings,
        &mut [Workload::new(PAGES_4K as u64, |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                match touch_once(PAGES_4K * PAGE, 0, PAGES_4K * PAGE, Advice::NoHugePage) {
                    Ok(t) => total += t,
                    Err(e) => {
                        error.get_or_insert(e);
                        break;
                    }
                }
            }
            total
        })],
    );
    error.map_or(Ok(samples[0]), Err)
}

/// The 2 MiB probe: median ns per first-touched 2 MiB region, and how many
/// regions it touched.
fn first_touch_2m(settings: &Settings) -> io::Result<(Sample, u64)> {
    let mut error = None;
    let mut regions = 0;
    let samples = measure(
        settings,
        &mut [Workload::new(1, |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Twice the size, so an aligned 2 MiB lies inside.
                match touch_once(2 * HUGE, HUGE, HUGE, Advice::HugePage) {
                    Ok(t) => total += t,
                    Err(e) => {
                        error.get_or_insert(e);
                        break;
                    }
                }
                regions += 1;
            }
            total
        })],
    );
    error.map_or(Ok((samples[0], regions)), Err)
}

/// Maps `map_len` bytes, advises the `len` bytes at the first offset past
/// `align` boundary (`align` 0: the start), times one write to each of
/// their pages, and unmaps. The map and unmap are outside the clock.
fn touch_once(map_len: usize, align: usize, len: usize, advice: Advice) -> io::Result<Duration> {
    let mut map: MmapMut = MmapOptions::new().len(map_len).map_anon()?;
    let offset = if align == 0 { 0 } else { map.as_ptr().addr().next_multiple_of(align) - map.as_ptr().addr() };
    map.advise_range(advice, offset, len)?;
    let region = &mut map[offset..offset + len];
    let start = Instant::now();
    for page in region.chunks_exact_mut(PAGE) {
        // The write is the fault; `black_box` keeps the compiler from
        // dropping a store nobody reads.
        page[0] = 1;
        std::hint::black_box(&mut page[0]);
    }
    let elapsed = start.elapsed();
    drop(map);
    Ok(elapsed)
}

/// The host's THP policy, from `/sys/kernel/mm/transparent_hugepage/enabled`.
fn thp_policy() -> String {
    match std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled") {
        Ok(text) => parse_thp_policy(&text),
        Err(_) => "unknown (no transparent_hugepage in sysfs)".to_owned(),
    }
}

/// The bracketed (active) word of the sysfs policy line, quoted; the line
/// itself if none is bracketed.
fn parse_thp_policy(text: &str) -> String {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .map_or_else(|| text.trim().to_owned(), |w| format!("`{w}`"))
}

/// `thp_fault_alloc` and `thp_fault_fallback` from `/proc/vmstat`.
fn thp_events() -> Option<(u64, u64)> {
    std::fs::read_to_string("/proc/vmstat").ok().map(|text| parse_thp_events(&text))
}

/// `thp_fault_alloc` and `thp_fault_fallback` of a `/proc/vmstat` text (0
/// for a missing line).
fn parse_thp_events(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.split_once(' ').filter(|(key, _)| *key == name).and_then(|(_, v)| v.trim().parse().ok()))
            .unwrap_or(0)
    };
    (field("thp_fault_alloc"), field("thp_fault_fallback"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_the_bracketed_word() {
        assert_eq!(parse_thp_policy("always [madvise] never\n"), "`madvise`");
        assert_eq!(parse_thp_policy("[always] madvise never"), "`always`");
        assert_eq!(parse_thp_policy("odd\n"), "odd");
    }

    #[test]
    fn thp_events_ignore_lookalike_lines() {
        let text = "thp_fault_alloc 12\nthp_fault_fallback_charge 7\nthp_fault_fallback 3\n";
        assert_eq!(parse_thp_events(text), (12, 3));
        assert_eq!(parse_thp_events("nr_free_pages 5\n"), (0, 0));
    }

    #[test]
    fn first_touch_of_a_few_pages_is_timed() {
        let elapsed = touch_once(4 * PAGE, 0, 4 * PAGE, Advice::NoHugePage).unwrap();
        assert!(elapsed > Duration::ZERO);
    }
}
