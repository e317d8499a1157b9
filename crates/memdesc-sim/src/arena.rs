//! The simulated machine's physical memory: an anonymous mapping whose byte
//! offsets are physical addresses, with a memory map like a PC's (a low hole,
//! a reserved kernel image, a hole below 4 GiB-style MMIO).
//!
//! Untouched frames cost the host nothing (the mapping is lazily backed), so
//! holes and free memory are free; the mapping is returned on drop.

use memdesc::buddy::BootError;
use memdesc::memmap::{MemoryLayout, PhysAddr, PhysRange};
use memdesc::{BootFailed, Node, NodeConfig, Platform};
use std::io;

/// Bytes below the first RAM range (like x86's low megabyte).
pub const LOW_HOLE: u64 = 1 << 20;
/// Reserved at the start of RAM (the "kernel image").
pub const KERNEL_IMAGE: u64 = 8 << 20;
/// The MMIO-style hole in the middle of RAM.
pub const MID_HOLE: u64 = 64 << 20;
/// RAM is a whole number of these: the requested size is rounded down to it.
pub const RAM_GRANULE: u64 = 4 << 20;

/// Physical memory for one simulated machine.
pub struct Arena {
    mapping: memmap2::MmapMut,
    ram: [PhysRange; 2],
    reserved: [PhysRange; 1],
}

impl Arena {
    /// Maps `ram_bytes` of simulated RAM (rounded down to [`RAM_GRANULE`],
    /// at least 16 MiB) plus the holes around it.
    ///
    /// # Errors
    /// The host refused the mapping.
    pub fn new(ram_bytes: u64) -> io::Result<Arena> {
        let ram_bytes = (ram_bytes & !(RAM_GRANULE - 1)).max(16 << 20);
        let half = (ram_bytes / 2) & !(RAM_GRANULE - 1);
        let first = PhysRange::new(LOW_HOLE, LOW_HOLE + half);
        let second_start = first.end.0 + MID_HOLE;
        let second = PhysRange::new(second_start, second_start + (ram_bytes - half));
        let total = second.end.0 as usize;
        let mapping = memmap2::MmapOptions::new().len(total).map_anon()?;
        Ok(Arena { mapping, ram: [first, second], reserved: [PhysRange::new(LOW_HOLE, LOW_HOLE + KERNEL_IMAGE)] })
    }

    /// The host address of physical address 0 (the mapping's first byte):
    /// with it, an object's address names its pfn without the core's help.
    pub fn base_addr(&self) -> usize {
        self.mapping.as_ptr() as usize
    }

    /// RAM bytes (holes excluded).
    pub fn ram_bytes(&self) -> u64 {
        self.ram.iter().map(|r| r.end.0 - r.start.0).sum()
    }

    /// The RAM and reserved ranges.
    pub fn ranges(&self) -> ([PhysRange; 2], [PhysRange; 1]) {
        (self.ram, self.reserved)
    }

    /// Boots a node over this memory.
    ///
    /// # Errors
    /// As [`Node::boot`].
    pub fn boot<'a>(&'a mut self, config: NodeConfig, platform: &'a dyn Platform) -> Result<&'a Node<'a>, BootError> {
        let (ram, reserved) = (self.ram, self.reserved);
        let layout = MemoryLayout { ram: &ram, reserved: &reserved };
        Node::boot(&mut self.mapping[..], PhysAddr(0), &layout, config, platform).map_err(BootFailed::into_error)
    }
}
