use super::*;
use crate::testutil::TestMemory;

const MIB: u64 = 1 << 20;

fn boot_err(memory: &mut TestMemory, ram: &[PhysRange], reserved: &[PhysRange]) -> MemMapError {
    let layout = MemoryLayout { ram, reserved };
    MemMap::boot(memory.bytes(), PhysAddr(0), &layout, |_, _| ()).map(|_| ()).unwrap_err().error
}

#[test]
fn boot_rejects_misaligned_range() {
    let mut m = TestMemory::new(4 * MIB as usize);
    let bad = PhysRange::new(0x800, 2 * MIB);
    assert_eq!(boot_err(&mut m, &[bad], &[]), MemMapError::Misaligned(bad));
    let bad_res = PhysRange::new(4096, 4096 + 100);
    assert_eq!(boot_err(&mut m, &[PhysRange::new(0, 2 * MIB)], &[bad_res]), MemMapError::Misaligned(bad_res));
}

#[test]
fn boot_rejects_overlapping_ram() {
    let mut m = TestMemory::new(4 * MIB as usize);
    let a = PhysRange::new(0, 2 * MIB);
    let b = PhysRange::new(MIB, 3 * MIB);
    assert_eq!(boot_err(&mut m, &[a, b], &[]), MemMapError::Overlap(a, b));
}

#[test]
fn boot_rejects_inverted_and_outside_ranges() {
    let mut m = TestMemory::new(4 * MIB as usize);
    let inv = PhysRange::new(2 * MIB, MIB);
    assert_eq!(boot_err(&mut m, &[inv], &[]), MemMapError::Inverted(inv));
    let outside = PhysRange::new(0, 8 * MIB);
    assert_eq!(boot_err(&mut m, &[outside], &[]), MemMapError::OutsideMemory(outside));
    assert_eq!(boot_err(&mut m, &[], &[]), MemMapError::NoRam);
}

#[test]
fn boot_fails_cleanly_without_room_for_metadata() {
    let mut m = TestMemory::new(4 * MIB as usize);
    // One free frame of RAM: nowhere to put the descriptors.
    let ram = PhysRange::new(0, 4 * MIB);
    let reserved = PhysRange::new(4096, 4 * MIB);
    assert!(matches!(boot_err(&mut m, &[ram], &[reserved]), MemMapError::NoRoomForMetadata { .. }));
}

#[test]
fn metadata_goes_to_lowest_unreserved_ram_and_pfns_round_trip() {
    let mut m = TestMemory::new(8 * MIB as usize);
    let ram = [PhysRange::new(MIB, 3 * MIB), PhysRange::new(4 * MIB, 8 * MIB)];
    let reserved = [PhysRange::new(MIB, MIB + 16 * 4096)];
    let layout = MemoryLayout { ram: &ram, reserved: &reserved };
    let root = MemMap::boot(m.bytes(), PhysAddr(0), &layout, |map, info| (map, info)).unwrap();
    let (map, info) = root;
    assert_eq!(map.base_pfn(), Pfn(256));
    assert_eq!(map.end_pfn(), Pfn(2048));
    assert_eq!(info.metadata_start, Pfn(256 + 16), "right after the reserved run");
    assert_eq!(map.metadata_frames(), info.metadata_end.0 - info.metadata_start.0);
    // 1792 descriptors of 64 bytes = 28 frames, plus pageblock bytes and root.
    assert!(map.metadata_frames() >= 28 && map.metadata_frames() <= 30, "{}", map.metadata_frames());
    for pfn in [Pfn(256), Pfn(700), Pfn(2047)] {
        assert_eq!(map.pfn_of(map.page(pfn).unwrap()), pfn);
    }
    assert!(map.page(Pfn(255)).is_none() && map.page(Pfn(2048)).is_none());
    assert!(map.frame_words(info.metadata_start, 1).is_none(), "metadata is never exposed as contents");
    assert_eq!(map.frame_words(Pfn(1024), 2).unwrap().len(), 1024);
}

#[test]
fn descriptor_is_one_cache_line() {
    assert_eq!(DESCRIPTOR_SIZE, 64);
    assert_eq!(core::mem::align_of::<Page>(), 64);
}

/// Regression (review of issue 2): a physical base near the top of the
/// address space overflowed the span computation.
#[test]
fn boot_refuses_a_span_past_the_address_space() {
    let mut m = TestMemory::new(MIB as usize);
    let layout = MemoryLayout { ram: &[PhysRange::new(0, MIB)], reserved: &[] };
    let err = MemMap::boot(m.bytes(), PhysAddr(!0xfff), &layout, |_, _| ()).map(|_| ()).unwrap_err();
    assert_eq!(err.error, MemMapError::TooLarge);
}

/// A boot span that starts and ends inside pageblocks: every frame of those
/// pageblocks (below the base, past the end) shares their pageblock byte,
/// which the claim of a block near either end retypes.
#[test]
fn partial_pageblocks_at_both_ends_have_their_byte() {
    let mut m = TestMemory::new(4 * MIB as usize);
    let ram = [PhysRange::new(MIB, 3 * MIB + 16 * 4096)];
    let layout = MemoryLayout { ram: &ram, reserved: &[] };
    let (map, _) = MemMap::boot(m.bytes(), PhysAddr(0), &layout, |map, info| (map, info)).unwrap();
    assert_eq!((map.base_pfn(), map.end_pfn()), (Pfn(256), Pfn(768 + 16)));
    assert!(core::ptr::eq(map.pageblock(Pfn(0)), map.pageblock(Pfn(256))), "the base's pageblock");
    assert!(core::ptr::eq(map.pageblock(Pfn(1023)), map.pageblock(Pfn(768))), "the end's pageblock");
    assert!(!core::ptr::eq(map.pageblock(Pfn(511)), map.pageblock(Pfn(512))));
}
