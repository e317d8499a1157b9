//! The getter side of seed 000: GUP-fast for one page, through the real
//! walker ([`memdesc::gup::get_user_pages_fast`]: the lockless walk in an
//! RCU read section, the one P1 function, the entry recheck, and the slow
//! path under the address space's lock when the fast path gives up).
//! Every scenario calls [`gup_fast_one`] and nothing else.

use memdesc::gup::{get_user_pages_fast, GupFlags, GupRun};
use memdesc::pgtable::{AddressSpace, MmEvent};

/// What GUP-fast of one page came back with.
pub(crate) struct GupResult<'m, 'a> {
    /// The run holding the page, or why there is none.
    pub run: Result<GupRun<'m, 'a>, String>,
    /// The fast path gave up on the page and the slow path took over.
    pub fell_back: bool,
}

/// GUP-fast (plain reference, read) of the page at `va`.
pub(crate) fn gup_fast_one<'m, 'a>(aspace: &AddressSpace<'m, 'a>, va: u64) -> GupResult<'m, 'a> {
    let mmu = aspace.mmu();
    let fallbacks = mmu.event(MmEvent::GupFastFallback);
    let mut out = [None];
    let run = match get_user_pages_fast(aspace, va, 1, GupFlags::GET, &mut out) {
        Ok(_) => out[0].take().ok_or_else(|| "GUP filled no run".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    GupResult { run, fell_back: mmu.event(MmEvent::GupFastFallback) > fallbacks }
}
