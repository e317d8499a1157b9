//! Direct maps: allocations above the largest folio get their own `mmap`,
//! recorded in a fixed table so `free`, `realloc` and `malloc_usable_size`
//! recognise them (and a foreign pointer is told apart).

use std::sync::Mutex;

/// Table slots (each map is at least 4 MiB, so this is 256 GiB of maps).
const SLOTS: usize = 1 << 16;

#[derive(Clone, Copy)]
struct Entry {
    addr: usize,
    len: usize,
}

const EMPTY: usize = 0;
const TOMBSTONE: usize = 1;

struct Table {
    entries: [Entry; SLOTS],
    live: usize,
}

static TABLE: Mutex<Table> = Mutex::new(Table { entries: [Entry { addr: EMPTY, len: 0 }; SLOTS], live: 0 });

fn hash(addr: usize) -> usize {
    ((addr >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) % SLOTS
}

impl Table {
    fn find(&self, addr: usize) -> Option<usize> {
        let mut i = hash(addr);
        for _ in 0..SLOTS {
            match self.entries[i].addr {
                EMPTY => return None,
                a if a == addr => return Some(i),
                _ => i = (i + 1) % SLOTS,
            }
        }
        None
    }

    fn insert(&mut self, addr: usize, len: usize) -> bool {
        if self.live + 1 >= SLOTS / 2 {
            return false;
        }
        let mut i = hash(addr);
        while self.entries[i].addr > TOMBSTONE {
            i = (i + 1) % SLOTS;
        }
        self.entries[i] = Entry { addr, len };
        self.live += 1;
        true
    }

    fn remove(&mut self, index: usize) {
        self.entries[index] = Entry { addr: TOMBSTONE, len: 0 };
        self.live -= 1;
    }
}

fn table() -> std::sync::MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Maps `size` bytes aligned to `align` (a power of two); null on failure.
pub(crate) fn alloc(size: usize, align: usize) -> *mut u8 {
    let Some(len) = size.checked_next_multiple_of(memdesc::PAGE_SIZE) else { return core::ptr::null_mut() };
    let extra = if align > memdesc::PAGE_SIZE { align } else { 0 };
    let Some(map_len) = len.checked_add(extra) else { return core::ptr::null_mut() };
    // SAFETY: a fresh anonymous mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    let base = p as usize;
    let start = base.next_multiple_of(align.max(memdesc::PAGE_SIZE));
    // SAFETY: the head and tail trimmed are parts of the fresh mapping
    // outside [start, start + len), which nothing uses.
    unsafe {
        if start > base {
            libc::munmap(p, start - base);
        }
        if base + map_len > start + len {
            libc::munmap((start + len) as *mut libc::c_void, base + map_len - start - len);
        }
    }
    if !table().insert(start, len) {
        // SAFETY: our own mapping, never handed out.
        unsafe { libc::munmap(start as *mut libc::c_void, len) };
        return core::ptr::null_mut();
    }
    start as *mut u8
}

/// The length of the direct map at `addr`, if it is one.
pub(crate) fn len_of(addr: usize) -> Option<usize> {
    let table = table();
    table.find(addr).map(|i| table.entries[i].len)
}

/// The start of the direct map that contains `addr` past its first byte,
/// if any (for reports: a scan of the table).
pub(crate) fn containing(addr: usize) -> Option<usize> {
    let table = table();
    table.entries.iter().find(|e| e.addr > TOMBSTONE && addr > e.addr && addr - e.addr < e.len).map(|e| e.addr)
}

/// Unmaps the direct map at `addr`; `false` if it is none.
pub(crate) fn free(addr: usize) -> bool {
    let len = {
        let mut table = table();
        let Some(i) = table.find(addr) else { return false };
        let len = table.entries[i].len;
        table.remove(i);
        len
    };
    // free() preserves errno (munmap may set it).
    // SAFETY: this thread's errno location.
    let saved = unsafe { *libc::__errno_location() };
    // SAFETY: the map was ours and its entry is gone, so no other call
    // can reach it; the caller gave the pointer up.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
    true
}

/// Resizes the direct map at `addr` to `size` bytes (page-aligned maps
/// only); the new address, or null (the map unchanged) on failure.
pub(crate) fn remap(addr: usize, size: usize) -> *mut u8 {
    let Some(new_len) = size.checked_next_multiple_of(memdesc::PAGE_SIZE) else { return core::ptr::null_mut() };
    let mut table = table();
    let Some(i) = table.find(addr) else { return core::ptr::null_mut() };
    let old_len = table.entries[i].len;
    // SAFETY: the map is ours (in the table, which we hold locked), and
    // MREMAP_MAYMOVE moves it whole if it must.
    let p = unsafe { libc::mremap(addr as *mut libc::c_void, old_len, new_len, libc::MREMAP_MAYMOVE) };
    if p == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    table.remove(i);
    let inserted = table.insert(p as usize, new_len);
    debug_assert!(inserted, "a slot was just freed");
    p.cast()
}

/// Direct maps live and their bytes (statistics).
pub(crate) fn usage() -> (usize, usize) {
    let table = table();
    let bytes = table.entries.iter().filter(|e| e.addr > TOMBSTONE).map(|e| e.len).sum();
    (table.live, bytes)
}
