//! Reports on stderr that never allocate: a fixed buffer formatted with
//! `core::fmt` and written to fd 2, and the misuse reports that end in
//! `abort()`.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicI32, Ordering};

/// A copy of the stderr the process started with, taken at initialisation
/// when `MEMDESC_STATS=1`, or -1: programs such as coreutils close fd 2 in
/// an exit handler, before the exit summary is printed.
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

/// Keeps a copy of fd 2 (close-on-exec, so children do not inherit it) for
/// reports made after the program closed its stderr. The copy sits at fd 64
/// or above, out of the low numbers a program's next `open` would take.
pub(crate) fn keep_stderr() {
    // SAFETY: fcntl on fd 2 takes no pointers; a failure returns -1.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 64) };
    // Relaxed: read by the same process at exit; whoever reads -1 writes
    // to fd 2 alone, which is what happened before the copy existed.
    SAVED_STDERR.store(fd, Ordering::Relaxed);
}

/// Writes `bytes` to `fd`; false if the fd is closed (EBADF) before any
/// byte went out.
fn write_all(fd: i32, bytes: &[u8]) -> bool {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: the pointer and length name initialised bytes of the
        // slice; write(2) only reads them.
        let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n <= 0 {
            // SAFETY: errno is thread-local and always readable.
            let closed = n < 0 && unsafe { *libc::__errno_location() } == libc::EBADF;
            return !(closed && done == 0);
        }
        done += n as usize;
    }
    true
}

/// A line buffer on the stack; what does not fit is cut.
pub(crate) struct StderrLine {
    buf: [u8; 512],
    len: usize,
}

impl StderrLine {
    pub(crate) const fn new() -> Self {
        Self { buf: [0; 512], len: 0 }
    }

    /// Writes the buffer to stderr and empties it.
    /// If the program closed fd 2, the copy [`keep_stderr`] kept is used.
    pub(crate) fn flush(&mut self) {
        let bytes = &self.buf[..self.len];
        if !write_all(2, bytes) {
            // Relaxed: see SAVED_STDERR.
            let saved = SAVED_STDERR.load(Ordering::Relaxed);
            if saved >= 0 {
                write_all(saved, bytes);
            }
        }
        self.len = 0;
    }
}

impl Write for StderrLine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Prints one `memdesc: ...` line on stderr.
pub(crate) fn line(args: fmt::Arguments<'_>) {
    let mut out = StderrLine::new();
    let _ = out.write_str("memdesc: ");
    let _ = out.write_fmt(args);
    let _ = out.write_str("\n");
    out.flush();
}

/// What the program did wrong with a pointer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Misuse {
    /// Not an allocation of this allocator (outside every span and map).
    Foreign,
    /// Inside an allocation or a slab but not at an object's start.
    Interior,
    /// Freed already (a debug cache's free object).
    DoubleFree,
    /// In the span but not an allocated block: free frames (a large block
    /// freed already) or the allocator's metadata.
    NotAllocated,
    /// A debug check found the object's red zone or state overwritten.
    Corrupted,
}

impl Misuse {
    fn what(self) -> &'static str {
        match self {
            Self::Foreign => "pointer not allocated by memdesc (foreign or wild)",
            Self::Interior => "pointer into the middle of an allocation",
            Self::DoubleFree => "double free",
            Self::NotAllocated => "not an allocated block (double free of a large block, or a wild pointer)",
            Self::Corrupted => "heap corruption detected",
        }
    }
}

/// Reports misuse of `ptr` by `op` and aborts: continuing would corrupt
/// memory. `detail` says what the descriptor showed.
#[cold]
pub(crate) fn misuse(op: &str, ptr: usize, kind: Misuse, detail: &dyn fmt::Display) -> ! {
    line(format_args!("{op}({ptr:#x}): {}: {detail}", kind.what()));
    line(format_args!("aborting: continuing would corrupt memory"));
    // SAFETY: abort() never returns and takes no arguments.
    unsafe { libc::abort() }
}
