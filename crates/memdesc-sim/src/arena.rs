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
/// A hot-added section: the core's default section size.
pub const SECTION_BYTES: u64 = (memdesc::memmap::PAGE_SIZE as u64) << memdesc::memmap::DEFAULT_SECTION_ORDER;

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

    /// The sections of the upper RAM range a node booted with
    /// `hot_add` adds during the run: its whole [`SECTION_BYTES`] inside it.
    pub fn hot_sections(&self) -> Vec<PhysRange> {
        let upper = self.ram[1];
        let mut start = upper.start.0.next_multiple_of(SECTION_BYTES);
        let mut sections = Vec::new();
        while start + SECTION_BYTES <= upper.end.0 {
            sections.push(PhysRange::new(start, start + SECTION_BYTES));
            start += SECTION_BYTES;
        }
        sections
    }

    /// Boots a node over this memory.
    ///
    /// # Errors
    /// As [`Node::boot`].
    pub fn boot<'a>(&'a mut self, config: NodeConfig, platform: &'a dyn Platform) -> Result<&'a Node<'a>, BootError> {
        self.boot_present(config, false, platform)
    }

    /// Boots a node over this memory with only the lower RAM range present:
    /// [`Arena::hot_sections`] are added during the run.
    ///
    /// # Errors
    /// As [`Node::boot`].
    pub fn boot_for_hot_add<'a>(
        &'a mut self,
        config: NodeConfig,
        platform: &'a dyn Platform,
    ) -> Result<&'a Node<'a>, BootError> {
        self.boot_present(config, true, platform)
    }

    fn boot_present<'a>(
        &'a mut self,
        config: NodeConfig,
        lower_only: bool,
        platform: &'a dyn Platform,
    ) -> Result<&'a Node<'a>, BootError> {
        let (ram, reserved) = (self.ram, self.reserved);
        let present = if lower_only { &ram[..1] } else { &ram[..] };
        let layout = MemoryLayout { ram: present, reserved: &reserved };
        Node::boot(&mut self.mapping[..], PhysAddr(0), &layout, config, platform).map_err(BootFailed::into_error)
    }
}
