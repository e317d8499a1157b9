//! Memory hot-add: sections of the node's span made present at run time.
//!
//! [`Node::hot_add`] runs protocol HOTADD (docs/PROTOCOLS.md): the memory
//! map writes the sections' descriptors in their own first frames and
//! publishes them to owner paths (HOTADD.1–.2, [`MemMap::hot_plug`]); here
//! the frames are typed and the pageblocks set (HOTADD.3); the sections go
//! online for lockless readers (HOTADD.4); and only then are the frames freed
//! into the zone (HOTADD.5), so any frame an allocation can return is one a
//! speculative getter or pfn walker can see. Concurrent hot-adds serialise on
//! the section lock, held from HOTADD.1 to the end.
//!
//! [`MemMap::hot_plug`]: crate::memmap::MemMap

use super::migratetype::set_pageblock_migratetype;
use super::zone::{max_block_order, Zone, ZoneId};
use super::{Migratetype, Node};
use crate::folio::PageType;
use crate::memmap::{HotAddError, Pfn, PhysRange, PAGEBLOCK_FRAMES};

/// What a hot-add made present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotAdded {
    /// The first frame added.
    pub start: Pfn,
    /// One past the last frame added.
    pub end: Pfn,
    /// The zone the frames went to.
    pub zone: ZoneId,
    /// Sections added.
    pub sections: u64,
    /// Frames holding the sections' own descriptors and pageblock bytes.
    pub metadata_frames: u64,
    /// Frames freed into the zone: the rest.
    pub managed: u64,
}

impl<'a> Node<'a> {
    /// Makes the section-aligned `range` of the node's memory present at run
    /// time (memory hot-add) and frees its frames into `zone`.
    ///
    /// The range must lie in the hot-pluggable span
    /// ([`MemMap::hot_span`](crate::memmap::MemMap::hot_span)): inside the
    /// memory the node booted over, past the boot RAM. Each section keeps
    /// its descriptors and pageblock bytes in its first
    /// [`section_meta_frames`](crate::memmap::MemMap::section_meta_frames)
    /// frames; the host must back the whole range before the call. Safe to
    /// call while other CPUs allocate, free, get speculatively and walk
    /// pfns; two hot-adds run one after the other. The zone's watermarks are
    /// not recomputed.
    ///
    /// # Errors
    /// [`HotAddError`] for an empty or misaligned range, one outside the
    /// hot-pluggable span, or one with a section already present; nothing
    /// changes then.
    pub fn hot_add(&self, range: PhysRange, zone: ZoneId) -> Result<HotAdded, HotAddError> {
        let map = &self.map;
        // HOTADD.1–.2: descriptors written and published to owner paths,
        // under the section lock (held until `plug` drops).
        let plug = map.hot_plug(range, zone as u8)?;
        let (start, end) = plug.range();
        let frames = map.section_frames();
        let meta = map.section_meta_frames();
        let sections = (end.0 - start.0) / frames;
        // HOTADD.3: type every frame and set the pageblocks, before anyone
        // but owner paths can see them. Relaxed stores (set_type,
        // set_pageblock_migratetype): HOTADD.4's Release publishes them.
        let mut section = start;
        while section < end {
            for (i, page) in map.pages_of(section, frames).iter().enumerate() {
                page.set_type(if (i as u64) < meta { PageType::Metadata } else { PageType::Free });
            }
            let mut pb = section;
            while pb < section.add(frames) {
                set_pageblock_migratetype(map, pb, Migratetype::Movable);
                pb = pb.add(PAGEBLOCK_FRAMES);
            }
            section = section.add(frames);
        }
        // HOTADD.4: online, for speculative getters and pfn walkers.
        #[cfg(not(memdesc_mutant = "hotadd_free_before_online"))]
        plug.online();
        // HOTADD.5: the frames go to the zone's free lists last.
        let managed = self.free_hot_sections(&self.zones[zone as usize], start, end);
        // Mutant: the frames reach the free lists before the sections are
        // online, so another CPU may allocate a frame that getters and
        // walkers still see as out of range.
        #[cfg(memdesc_mutant = "hotadd_free_before_online")]
        plug.online();
        drop(plug);
        Ok(HotAdded { start, end, zone, sections, metadata_frames: sections * meta, managed })
    }

    /// Frees every section's frames past its metadata into `zone` as maximal
    /// aligned blocks and accounts for them, in one hold of the zone lock
    /// (HOTADD.5); returns the frames freed.
    fn free_hot_sections(&self, zone: &Zone, start: Pfn, end: Pfn) -> u64 {
        let map = &self.map;
        let (frames, meta) = (map.section_frames(), map.section_meta_frames());
        let mut managed = 0;
        let mut area = zone.area.lock();
        area.with(|area| {
            let mut section = start;
            while section < end {
                let section_end = section.add(frames);
                let mut pfn = section.add(meta);
                while pfn < section_end {
                    let order = max_block_order(pfn, section_end);
                    area.free_block(zone, map, pfn, order);
                    managed += 1u64 << order;
                    pfn = pfn.add(1 << order);
                }
                section = section_end;
            }
            zone.account_hot_add(area, end.0 - start.0, managed);
        });
        managed
    }

    /// The zone of a frame in a hot-added section (the cold half of
    /// `zone_of`).
    #[cold]
    #[inline(never)]
    pub(super) fn hot_zone_of(&self, pfn: Pfn) -> &Zone {
        match self.map.section_tag(pfn) {
            Some(tag) if tag == ZoneId::Movable as u8 => &self.zones[ZoneId::Movable as usize],
            _ => &self.zones[ZoneId::Normal as usize],
        }
    }
}
