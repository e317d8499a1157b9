//! The getter side of seed 000: GUP-fast taking a reference to the page one
//! entry maps. Every scenario calls [`gup_fast_one`] and nothing else, so
//! the real walker (`gup::get_user_pages_fast`, issue 6) can replace it here
//! once it exists.
//!
//! For now it is the walk's last level only: read the PTE word (Acquire,
//! P4), then the one P1 function, [`memdesc::folio::try_get`], with the
//! source recheck rereading that word (P1.5).

use super::replay::{Act, ReplayPlatform};
use memdesc::folio::{try_get, GetError};
use memdesc::pgtable::{Entry, Level};
use memdesc::{FolioRef, Node};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the getter came back without a reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetterRefusal {
    /// The entry mapped no page when read (GUP-fast falls back).
    NotMapped,
    /// The speculative get refused (P1).
    Get(GetError),
}

impl fmt::Display for GetterRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMapped => f.write_str("the entry maps no page"),
            Self::Get(e) => write!(f, "{e} ({e:?})"),
        }
    }
}

impl GetterRefusal {
    /// The protocol step that refused.
    pub(crate) fn step(self) -> &'static str {
        match self {
            Self::NotMapped => "P4 entry read",
            Self::Get(GetError::Moved) => "P1.4 head recheck",
            Self::Get(GetError::SourceChanged) => "P1.5 source recheck",
            Self::Get(_) => "P1.3 get",
        }
    }
}

/// GUP-fast for the one page `pte` maps: reads the entry, takes a
/// speculative reference to its folio, and rechecks the entry afterwards.
pub(crate) fn gup_fast_one<'n>(
    node: &'n Node<'n>,
    replay: &ReplayPlatform,
    pte: &AtomicU64,
) -> Result<FolioRef<'n>, GetterRefusal> {
    replay.act(Act::GupReadPte);
    // Acquire: pairs with the Release store that installed the entry (P4),
    // so the page's descriptor is initialised before we look at it.
    let word = pte.load(Ordering::Acquire);
    let Entry::Page { pfn, .. } = Entry::decode(word, Level::Pte) else {
        return Err(GetterRefusal::NotMapped);
    };
    // P1.5: the entry still holds the word we followed. Acquire: as above;
    // the Release clear in the unmapper pairs with it.
    try_get(node, pfn, |_| pte.load(Ordering::Acquire) == word).map_err(GetterRefusal::Get)
}
