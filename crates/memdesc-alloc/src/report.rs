//! Reports on stderr that never allocate: a fixed buffer formatted with
//! `core::fmt` and written to fd 2, and the misuse reports that end in
//! `abort()`.

use core::fmt::{self, Write};

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
    pub(crate) fn flush(&mut self) {
        let mut done = 0;
        while done < self.len {
            // SAFETY: the pointer and length name initialised bytes of our
            // buffer; write(2) only reads them.
            let n = unsafe { libc::write(2, self.buf[done..].as_ptr().cast(), self.len - done) };
            if n <= 0 {
                break;
            }
            done += n as usize;
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
