//! Failpoints: named protocol steps at which a race replay can stop a
//! thread (feature `failpoints`, off by default).
//!
//! The simulator's replay driver (`memdesc-sim`'s `race` module) runs the
//! real code on a few threads and forces one interleaving by blocking each
//! thread at these steps until a schedule says it is its turn, the way the
//! seed threads draw a race as a step table. A failpoint marks the *start*
//! of the step it names: the thread whose turn it is runs from there to its
//! next failpoint.
//!
//! Without the feature the `Failpoint` and `FailAction` types and the
//! `Platform::failpoint` hook do not exist, and the
//! call-site macros expand to nothing that runs (`failpoint_check!` to
//! `true`), so a production build carries no trace of them. The feature's
//! absence is checked by a doc test that must fail to compile without it.
//!
//! `FailAction::Skip` lets a replay run the historical (pre-fix) code at
//! the steps that are checks (`Failpoint::is_check`): the check is not
//! made, as in Linux before seed 000's fix. It is honoured only there; the
//! compile-time `memdesc_mutant` variants stay for the model checker.
//!
//! Without the feature the hook is absent, so this does not compile:
//!
#![cfg_attr(not(feature = "failpoints"), doc = "```compile_fail")]
#![cfg_attr(feature = "failpoints", doc = "```")]
//! use memdesc::platform::{failpoints::{FailAction, Failpoint}, CpuId, Platform, WaitKey};
//!
//! struct Host;
//! impl Platform for Host {
//!     fn current_cpu(&self) -> CpuId { CpuId(0) }
//!     fn nr_cpus(&self) -> u32 { 1 }
//!     fn wait(&self, _: WaitKey, _: &dyn Fn() -> bool) {}
//!     fn wake_all(&self, _: WaitKey) {}
//!     fn failpoint(&self, at: Failpoint) -> FailAction {
//!         if at.is_check() { FailAction::Skip } else { FailAction::Continue }
//!     }
//! }
//! assert!(matches!(Host.failpoint(Failpoint::P1HeadRecheck), FailAction::Skip));
//! ```

/// A protocol step a replay may stop at, named by the step it starts.
#[cfg(feature = "failpoints")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failpoint {
    /// P1.2: the getter is about to read the head from the frame's compound word.
    P1ReadHead,
    /// P1.3: the getter is about to increment the head's refcount.
    P1Increment,
    /// P1.4 (a check): the getter is about to recheck the frame's head.
    P1HeadRecheck,
    /// P1.5 (a check): the getter is about to run the caller's source recheck.
    P1SourceRecheck,
    /// P2.3: the splitter, holding the frozen folio, is about to write the
    /// original head's new order (the pieces follow, one by one).
    SplitFrozen,
    /// P2.2: the split's iterator is about to rewrite one new piece's
    /// compound info and hand it out (fires once per new piece).
    SplitPiece,
    /// P2.6: every piece is out; the original head is about to go back to
    /// the caller, last.
    SplitUnfreezeHead,
    /// R.3: the allocator is about to take back a folio whose last
    /// reference went (or whose frozen owner dropped it).
    FreeFolio,
    /// P3.3: a prepared folio is about to be published with refcount 1.
    AllocPublish,
    /// P6.9: GUP-fast is about to walk to the next leaf (Acquire reads of
    /// each level's entry, P4.3, inside its RCU read section).
    GupWalk,
    /// P6.12 (a check; P1.5 for GUP): GUP-fast is about to reread the PMD
    /// and PTEs it followed, after the get.
    GupRecheck,
    /// P6.13: GUP's slow path is about to take the address space's lock
    /// and fault the rest of the range in.
    GupSlowPath,
    /// ISO.2 (a check): the isolate step is about to check the type tag.
    /// Skip runs seed 004's historical design instead: "movable" inferred
    /// from the `mapping` word (`migrate::historical`).
    IsoTypeCheck,
    /// ISO.2h (a check, historical design only): the `PageSlab` test before
    /// the movable test (Babka's first patch). Skip: Hugh Dickins' code,
    /// which had none.
    IsoSlabTest,
    /// ISO.2h (historical design only): the movable test, a read of the
    /// `mapping` word.
    IsoMovableTest,
    /// ISO.2h (a check, historical design only): the `PageSlab` test after
    /// the movable test (Babka's first patch). Skip: no such test.
    IsoSlabRecheck,
    /// ISO.3: the isolate step is about to try the folio lock.
    IsoTrylock,
    /// ISO.5: the isolate step is about to call the movable ops' isolate.
    IsoOps,
    /// H.0 (historical design only): a frame just allocated counted is
    /// about to be flagged slab (`__folio_set_slab`) and given slab state.
    HistoricalSetSlab,
    /// H.1 (historical design only): a counted slab frame is about to get
    /// its RCU head, whose callback word overlaps `mapping`.
    HistoricalRcuHead,
    /// H.2 (historical design only): a counted slab frame is about to be
    /// freed (mapping cleared, slab flag cleared, reference put).
    HistoricalSlabFree,
}

#[cfg(feature = "failpoints")]
impl Failpoint {
    /// Every failpoint, in protocol order.
    pub const ALL: [Failpoint; 21] = [
        Self::P1ReadHead,
        Self::P1Increment,
        Self::P1HeadRecheck,
        Self::P1SourceRecheck,
        Self::SplitFrozen,
        Self::SplitPiece,
        Self::SplitUnfreezeHead,
        Self::FreeFolio,
        Self::AllocPublish,
        Self::GupWalk,
        Self::GupRecheck,
        Self::GupSlowPath,
        Self::IsoTypeCheck,
        Self::IsoSlabTest,
        Self::IsoMovableTest,
        Self::IsoSlabRecheck,
        Self::IsoTrylock,
        Self::IsoOps,
        Self::HistoricalSetSlab,
        Self::HistoricalRcuHead,
        Self::HistoricalSlabFree,
    ];

    /// Whether the step is a check, where [`FailAction::Skip`] is honoured.
    pub const fn is_check(self) -> bool {
        matches!(
            self,
            Self::P1HeadRecheck
                | Self::P1SourceRecheck
                | Self::GupRecheck
                | Self::IsoTypeCheck
                | Self::IsoSlabTest
                | Self::IsoSlabRecheck
        )
    }

    /// The docs/PROTOCOLS.md step this failpoint starts.
    pub const fn step(self) -> &'static str {
        match self {
            Self::P1ReadHead => "P1.2",
            Self::P1Increment => "P1.3",
            Self::P1HeadRecheck => "P1.4",
            Self::P1SourceRecheck => "P1.5",
            Self::SplitFrozen => "P2.3",
            Self::SplitPiece => "P2.2",
            Self::SplitUnfreezeHead => "P2.6",
            Self::FreeFolio => "R.3",
            Self::AllocPublish => "P3.3",
            Self::GupWalk => "P6.9",
            Self::GupRecheck => "P6.12",
            Self::GupSlowPath => "P6.13",
            Self::IsoTypeCheck => "ISO.2",
            Self::IsoSlabTest | Self::IsoMovableTest | Self::IsoSlabRecheck => "ISO.2h",
            Self::IsoTrylock => "ISO.3",
            Self::IsoOps => "ISO.5",
            Self::HistoricalSetSlab => "H.0",
            Self::HistoricalRcuHead => "H.1",
            Self::HistoricalSlabFree => "H.2",
        }
    }
}

/// What a thread does after its failpoint returns.
#[cfg(feature = "failpoints")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailAction {
    /// Run the step as written.
    Continue,
    /// At a check ([`Failpoint::is_check`]): do not make the check, as the
    /// historical code did not. Ignored anywhere else.
    Skip,
}

/// Stops at a failpoint: `failpoint!(platform, Name)` calls
/// `platform.failpoint(Failpoint::Name)` with the feature, and expands to an
/// uncalled closure (no code, no unused-variable warnings) without it.
#[cfg(feature = "failpoints")]
macro_rules! failpoint {
    ($platform:expr, $at:ident) => {{
        let _ = $crate::platform::Platform::failpoint($platform, $crate::platform::failpoints::Failpoint::$at);
    }};
}

/// Stops at a failpoint (feature off: nothing runs).
#[cfg(not(feature = "failpoints"))]
macro_rules! failpoint {
    ($platform:expr, $at:ident) => {{
        let _ = || $platform;
    }};
}

/// Stops at a check's failpoint and says whether to make the check:
/// `false` only when a replay asks for the historical code
/// (`FailAction::Skip`); `true` without the feature.
#[cfg(feature = "failpoints")]
macro_rules! failpoint_check {
    ($platform:expr, $at:ident) => {
        !matches!(
            $crate::platform::Platform::failpoint($platform, $crate::platform::failpoints::Failpoint::$at),
            $crate::platform::failpoints::FailAction::Skip
        )
    };
}

/// Whether to make a check (feature off: always).
#[cfg(not(feature = "failpoints"))]
macro_rules! failpoint_check {
    ($platform:expr, $at:ident) => {{
        let _ = || $platform;
        true
    }};
}

pub(crate) use {failpoint, failpoint_check};
