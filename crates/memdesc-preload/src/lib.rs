//! memdesc-preload: real programs run under the preloaded
//! `libmemdesc_malloc.so`, and the helpers that build and run them.
//!
//! # The problem
//! A malloc replacement is only done when ordinary programs run under it
//! unchanged: python3, git, sort, ls, and threaded C code that frees across
//! threads, forks and uses the aligned and usable-size calls. The same
//! programs, under our library and under mimalloc's, are the S4 benchmark.
//!
//! # The mechanism
//! [`build`] finds or builds what is preloaded (our cdylib, through a nested
//! `cargo build` with a target directory of its own, or the path in
//! `MEMDESC_MALLOC_SO`; mimalloc's, compiled from the vendored sources of
//! the `libmimalloc-sys` crate) and compiles the C programs of `c/` with
//! `cc -O2`. [`run`] runs a command with or without a [`Preload`], with a
//! time limit, capturing its status and output. The integration tests
//! (`tests/it`) compare each program's output under our library with the
//! same command run without it; memdesc-bench's S4 goal times the C
//! programs through `c/measure.c`, which reports each run's wall time and
//! peak RSS.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod build;
pub mod run;

pub use build::{BuildError, CProgram};
pub use run::{Outcome, Preload, RunError};
