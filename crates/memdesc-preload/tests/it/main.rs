//! Real programs under the preloaded `libmemdesc_malloc.so`: each test runs
//! a command without the library and again under it, and requires the same
//! exit status and output, and the library's `memdesc:` report on standard
//! error (`MEMDESC_STATS=1`), which shows it was loaded and served the
//! program. The library is built on first use (see
//! `memdesc_preload::build::memdesc_malloc`); a test fails if it cannot be.

mod programs;
mod support;
