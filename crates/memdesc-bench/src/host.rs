//! The host kernel's side of goals F1 (4 KiB) and F2 (2 MiB THP): its
//! first-touch fault of anonymous memory, measured in the same run as our
//! address spaces' faults (issue 6).
//!
//! Each iteration maps a fresh anonymous region (outside the clock), times
//! the first write to every 4 KiB page of it, and unmaps it:
//! - **4 KiB** ([`touch_4k_loop`]): [`PAGES_4K`] pages advised
//!   `MADV_NOHUGEPAGE`, so each write is one fault that allocates and zeroes
//!   one page; reported per page.
//! - **2 MiB** ([`touch_2m_loop`]): a 2 MiB-aligned 2 MiB range advised
//!   `MADV_HUGEPAGE`; with a THP the first write faults in and zeroes the
//!   whole 2 MiB and the other 511 writes hit it; without one, every write
//!   is a 4 KiB fault. Reported per 2 MiB. Whether the host gave THPs is
//!   read from `/proc/vmstat` (`thp_fault_alloc`, `thp_fault_fallback`
//!   around the measurement, [`thp_verdict`]) and the policy from
//!   `/sys/kernel/mm/transparent_hugepage/enabled`, and both go in the
//!   note, so a row measured without THPs says so.
//!
//!
//! For goal T1 it also measures the host's PMD split the way performance.md
//! §3 did: `MADV_DONTNEED` of one 4 KiB page inside a freshly faulted THP
//! ([`dontneed_in_thp_loop`]), minus the same call on a 4 KiB page of a
//! small-page region ([`dontneed_small_loop`]). Linux splits the PMD there
//! and queues the folio for a deferred split: the figure is the PMD split
//! alone.
//!
//! The only `unsafe` is the `MADV_DONTNEED` call ([`dontneed`]); the maps,
//! the safe advice and the writes go through memmap2's safe API.

use memmap2::{Advice, MmapMut, MmapOptions, UncheckedAdvice};
use std::io;
use std::time::{Duration, Instant};

/// 4 KiB pages per iteration of the 4 KiB probe (16 MiB).
pub const PAGES_4K: usize = 4096;
const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;

/// Times, per iteration, the first touch of [`PAGES_4K`] fresh 4 KiB pages
/// (`MADV_NOHUGEPAGE`); the first host error is kept in `error` and ends
/// the loop. Per page: `ops_per_iter` is [`PAGES_4K`].
pub fn touch_4k_loop(iters: u64, error: &mut Option<io::Error>) -> Duration {
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
}

/// Times, per iteration, the first touch of every page of a fresh 2 MiB
/// aligned region (`MADV_HUGEPAGE`), counting the regions in `regions`;
/// the first host error is kept in `error` and ends the loop.
pub fn touch_2m_loop(iters: u64, error: &mut Option<io::Error>, regions: &mut u64) -> Duration {
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
        *regions += 1;
    }
    total
}

/// Times, per iteration, `MADV_DONTNEED` of one 4 KiB page inside a fresh
/// 2 MiB aligned region whose first write (outside the clock) faulted in a
/// THP, counting the regions in `regions`; the first host error is kept in
/// `error` and ends the loop.
pub fn dontneed_in_thp_loop(iters: u64, error: &mut Option<io::Error>, regions: &mut u64) -> Duration {
    dontneed_loop(iters, error, |total, error| {
        let result = dontneed_once(2 * HUGE, HUGE, Advice::HugePage).map(|t| *total += t);
        *regions += 1;
        result.map_err(|e| *error = Some(e)).is_ok()
    })
}

/// Times, per iteration, `MADV_DONTNEED` of one faulted 4 KiB page of a
/// small-page region (`MADV_NOHUGEPAGE`): the baseline of
/// [`dontneed_in_thp_loop`].
pub fn dontneed_small_loop(iters: u64, error: &mut Option<io::Error>) -> Duration {
    dontneed_loop(iters, error, |total, error| {
        dontneed_once(2 * PAGE, 0, Advice::NoHugePage).map(|t| *total += t).map_err(|e| *error = Some(e)).is_ok()
    })
}

/// Runs `once` up to `iters` times, stopping at its first failure; returns
/// the time it summed.
fn dontneed_loop(
    iters: u64,
    error: &mut Option<io::Error>,
    mut once: impl FnMut(&mut Duration, &mut Option<io::Error>) -> bool,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if error.is_some() || !once(&mut total, error) {
            break;
        }
    }
    total
}

/// Maps `map_len` bytes, advises the 2 MiB (or, with `align` 0, one page)
/// at the first `align` boundary with `advice`, writes its first page
/// (outside the clock), times `MADV_DONTNEED` of its second page, and
/// unmaps.
fn dontneed_once(map_len: usize, align: usize, advice: Advice) -> io::Result<Duration> {
    let mut map: MmapMut = MmapOptions::new().len(map_len).map_anon()?;
    let (offset, len) = if align == 0 {
        (0, map_len)
    } else {
        (map.as_ptr().addr().next_multiple_of(align) - map.as_ptr().addr(), HUGE)
    };
    map.advise_range(advice, offset, len)?;
    map[offset] = 1;
    map[offset + PAGE] = 1;
    std::hint::black_box(&mut map[offset..offset + 2 * PAGE]);
    let start = Instant::now();
    dontneed(&map, offset + PAGE, PAGE)?;
    let elapsed = start.elapsed();
    drop(map);
    Ok(elapsed)
}

/// `MADV_DONTNEED` of `len` bytes at `offset` of `map`.
#[allow(unsafe_code)]
fn dontneed(map: &MmapMut, offset: usize, len: usize) -> io::Result<()> {
    // unchecked_advise_range's duty: the advice must not break what Rust
    // assumes of the memory. MADV_DONTNEED on a private anonymous map
    // leaves it mapped and reads it back as zeroes afterwards; the shared
    // borrow of `map` here is the only one live, and no reference into the
    // bytes survives the call, so nothing observes the bytes changing.
    // SAFETY: that duty, discharged above; offset and len lie inside the map
    // (dontneed_once).
    unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, offset, len) }
}

/// What the host gave the 2 MiB probe, from `thp_fault_alloc` and
/// `thp_fault_fallback` before and after it touched `regions` regions.
pub fn thp_verdict(before: Option<(u64, u64)>, after: Option<(u64, u64)>, regions: u64) -> String {
    match (before, after) {
        (Some(b), Some(a)) => {
            let (alloc, fallback) = (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1));
            let verdict = if alloc >= regions {
                "every region got a THP"
            } else if alloc == 0 {
                "NO THP: the host figure is 512 small faults, not a huge-page fault"
            } else {
                "some regions got no THP: the host figure mixes huge and small faults"
            };
            format!("{verdict} (thp_fault_alloc +{alloc}, thp_fault_fallback +{fallback} over {regions} regions)")
        }
        _ => "THP use unknown (no /proc/vmstat)".to_owned(),
    }
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
pub fn thp_policy() -> String {
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
pub fn thp_events() -> Option<(u64, u64)> {
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
    fn dontneed_leaves_the_page_zero_and_is_timed() {
        let mut map = MmapOptions::new().len(2 * PAGE).map_anon().unwrap();
        map[PAGE] = 7;
        dontneed(&map, PAGE, PAGE).unwrap();
        assert_eq!(map[PAGE], 0, "the page reads back as zero after MADV_DONTNEED");
        let mut error = None;
        assert!(dontneed_small_loop(2, &mut error) > Duration::ZERO);
        assert!(error.is_none());
    }

    #[test]
    fn first_touch_of_a_few_pages_is_timed() {
        let elapsed = touch_once(4 * PAGE, 0, 4 * PAGE, Advice::NoHugePage).unwrap();
        assert!(elapsed > Duration::ZERO);
    }
}
