//! The embedder's tour: what a kernel or hypervisor author does first with
//! memdesc, start to finish, in one program.
//!
//! 1. hand over "physical memory" (here 128 MiB of heap, standing in for a
//!    direct map) with a hole and a firmware range, and boot a node; a bad
//!    layout comes back with the memory, and another is tried;
//! 2. allocate folios (counted, frozen, zeroed) and fill them: an exclusive
//!    owner writes bytes, shared holders use cursors;
//! 3. take a speculative reference the way a pfn walker does (P1);
//! 4. freeze, split into pieces, unfreeze (P2); lock a folio;
//! 5. read the views Linux users know: buddyinfo, vmstat, the audit.
//!
//! Run it with `cargo run -p memdesc --example tour`. The only `unsafe` is
//! handing over the buffer, as a kernel hands over its direct map.

use memdesc::{
    GetError, Gfp, MemoryLayout, Node, NodeConfig, Order, PageType, PhysAddr, PhysRange, SpinPlatform, VmEvent, ZoneId,
    PAGE_SIZE,
};
use std::error::Error;

const MIB: u64 = 1 << 20;

/// A page-aligned frame of "physical memory".
#[repr(C, align(4096))]
struct Frame([u8; PAGE_SIZE]);

fn main() -> Result<(), Box<dyn Error>> {
    // 1. Physical memory: 128 MiB, with a 1 MiB hole at 64 MiB (no RAM
    // there) and the first 256 KiB reserved for "firmware".
    let mut frames: Vec<Frame> = (0..(128 * MIB) as usize / PAGE_SIZE).map(|_| Frame([0; PAGE_SIZE])).collect();
    let len = frames.len() * PAGE_SIZE;
    // SAFETY: `frames` is one live allocation of `len` bytes, aligned to a
    // frame, borrowed exclusively here and outliving every use of the node.
    let memory: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(frames.as_mut_ptr().cast::<u8>(), len) };

    // A first layout that claims more RAM than the buffer holds is refused,
    // and the memory comes back untouched for a corrected one.
    let too_big = [PhysRange::new(0, 256 * MIB)];
    let refused = match Node::boot(
        memory,
        PhysAddr(0),
        &MemoryLayout { ram: &too_big, reserved: &[] },
        NodeConfig::default(),
        &SpinPlatform,
    ) {
        Ok(_) => return Err("a layout larger than the buffer booted".into()),
        Err(refused) => refused,
    };
    println!("boot refused: {refused}");
    let (_, memory) = refused.into_parts();

    let ram = [PhysRange::new(0, 64 * MIB), PhysRange::new(65 * MIB, 128 * MIB)];
    let reserved = [PhysRange::new(0, 256 << 10)];
    let layout = MemoryLayout { ram: &ram, reserved: &reserved };
    let node = Node::boot(memory, PhysAddr(0), &layout, NodeConfig::default(), &SpinPlatform)
        .map_err(memdesc::BootFailed::into_error)?;
    let vm = node.vmstat();
    println!(
        "booted: {} frames managed, {} free, metadata {} frames",
        vm.nr_managed,
        vm.nr_free_pages,
        node.memmap().metadata_frames()
    );

    // 2. An exclusive owner fills a folio with plain bytes before anyone can
    // see it, then publishes it with one reference.
    let mut frozen = node.alloc_frozen(Order::TWO, Gfp::USER.zeroed())?;
    frozen.bytes_mut()[..13].copy_from_slice(b"hello, frames");
    let folio = frozen.unfreeze_one().map_err(memdesc::UnfreezeError::into_failed)?;
    // Shared holders read and write through cursors that stay defined while
    // other holders touch the same bytes.
    let mut greeting = [0u8; 13];
    folio.reader().read(&mut greeting);
    assert_eq!(&greeting, b"hello, frames");
    let mut writer = folio.writer();
    writer.seek(PAGE_SIZE);
    writer.write(b"second frame");
    println!("folio {} (order {}): {:?}", folio.pfn(), folio.order(), String::from_utf8_lossy(&greeting));

    // 3. A pfn walker reaching the folio's third frame takes a reference to
    // the whole folio (P1), and then checks the type it needs.
    let seen = node.try_get(folio.pfn().add(3))?;
    assert_eq!((seen.pfn(), seen.page_type()), (folio.pfn(), PageType::Anon));
    // The firmware range and free frames refuse a reference.
    assert!(matches!(node.try_get(memdesc::Pfn(1)), Err(GetError::Unmanaged(PageType::Reserved))));
    drop(seen);

    // 4. Freeze at the one reference we hold (P2.1), split into order-0
    // folios, and unfreeze them, the original head last (P2.5, P2.6).
    let frozen = folio.try_freeze().map_err(memdesc::FreezeError::into_failed)?;
    let pieces = frozen.split(Order::ZERO).map_err(memdesc::SplitError::into_failed)?;
    let mut folios = Vec::new();
    for piece in pieces {
        folios.push(piece.unfreeze_one().map_err(memdesc::UnfreezeError::into_failed)?);
    }
    let second = &folios[0];
    let mut text = [0u8; 12];
    second.reader().read(&mut text);
    println!("split into {} folios; frame {} says {:?}", folios.len(), second.pfn(), String::from_utf8_lossy(&text));
    {
        let locked = second.lock();
        assert!(second.try_lock().is_none(), "the folio lock excludes a second holder");
        drop(locked);
    }
    drop(folios);

    // A slab frame is allocated frozen and can never be counted (P3).
    let slab = node.alloc_frozen(Order::ZERO, Gfp::KERNEL.typed(PageType::Slab { cache: 7 }))?;
    assert!(matches!(node.try_get(slab.pfn()), Err(GetError::Frozen)));
    drop(slab);

    // 5. The views.
    for zone in [ZoneId::Normal, ZoneId::Movable] {
        let info = node.zone_info(zone);
        let counts: Vec<String> = info.free_blocks.iter().map(u64::to_string).collect();
        println!("Node 0, zone {:>8} {}", format!("{zone:?}"), counts.join(" "));
    }
    let vm = node.vmstat();
    println!("pgalloc_movable {}", vm.event(VmEvent::PgallocMovable));
    println!("pgfree {}", vm.event(VmEvent::Pgfree));
    let audit = node.audit();
    println!(
        "audit: {} free, {} allocated, {} unmanaged, {} violations",
        audit.free, audit.allocated, audit.unmanaged, audit.violations
    );
    assert_eq!((audit.allocated, audit.violations), (0, 0));
    Ok(())
}
