//! The exported C functions, called directly. The test binary links the
//! library, so its `malloc` is the process's: the harness and std run on
//! it too (as under `LD_PRELOAD`).

mod misuse;
mod semantics;
mod stats;
mod threads;

use core::ffi::c_int;

pub(crate) fn errno() -> c_int {
    // SAFETY: this thread's errno location.
    unsafe { *libc::__errno_location() }
}

pub(crate) fn set_errno(value: c_int) {
    // SAFETY: this thread's errno location.
    unsafe { *libc::__errno_location() = value };
}
