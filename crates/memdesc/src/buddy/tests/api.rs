//! The embedder's API: contents by ownership level, the split's owning
//! iterator, errors that work with `?`, orders.

use crate::buddy::{Gfp, Node};
use crate::folio::{FreezeError, Order, OrderTooLarge, PageType, SplitError, SplitFailed, UnfreezeError};
use crate::memmap::PAGE_SIZE;
use crate::platform::SpinPlatform;
use crate::testutil::{small_config, with_node};
use std::boxed::Box;
use std::string::ToString;
use std::vec::Vec;

fn node(f: impl FnOnce(&Node<'_>)) {
    with_node(512, &[], small_config(true), &SpinPlatform, f)
}

#[test]
fn an_exclusive_owner_writes_bytes_that_shared_holders_then_read() {
    node(|n| {
        let mut frozen = n.alloc_frozen(Order::ONE, Gfp::USER.zeroed()).unwrap();
        assert_eq!(frozen.bytes().len(), 2 * PAGE_SIZE);
        assert!(frozen.bytes().iter().all(|&b| b == 0));
        for (i, b) in frozen.bytes_mut().iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let counted = frozen.unfreeze_one().unwrap();
        let other = counted.clone();
        let mut reader = other.reader();
        let mut back = std::vec![0u8; 2 * PAGE_SIZE + 7];
        assert_eq!(reader.read(&mut back), 2 * PAGE_SIZE, "reads stop at the folio's end");
        assert!(back[..2 * PAGE_SIZE].iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert_eq!(reader.remaining(), 0);
        assert_eq!(reader.read(&mut back), 0);
    });
}

#[test]
fn writers_merge_partial_words_and_stop_at_the_end() {
    node(|n| {
        let folio = n.alloc(Order::ZERO, Gfp::USER.zeroed()).unwrap();
        let mut w = folio.writer();
        w.seek(3);
        assert_eq!(w.write(b"hello"), 5);
        assert_eq!(w.position(), 8);
        w.seek(PAGE_SIZE - 2);
        assert_eq!(w.write(b"xyz"), 2, "a write stops at the end");
        assert!(!w.write_u64(1));
        w.seek(16);
        assert!(w.write_u64(0x0102_0304_0506_0708));
        w.seek(30);
        assert_eq!(w.fill(0xaa, 4), 4);

        let mut r = folio.reader();
        let mut head = [0u8; 8];
        r.read(&mut head);
        assert_eq!(&head, b"\0\0\0hello");
        r.seek(16);
        assert_eq!(r.read_u64(), Some(0x0102_0304_0506_0708));
        let mut mid = [0u8; 6];
        r.seek(29);
        r.read(&mut mid);
        assert_eq!(mid, [0, 0xaa, 0xaa, 0xaa, 0xaa, 0]);
        r.seek(PAGE_SIZE - 2);
        let mut end = [0u8; 2];
        r.read(&mut end);
        assert_eq!(&end, b"xy");
        assert_eq!(r.read_u64(), None);
    });
}

#[test]
fn a_writer_copies_from_a_reader_across_folios() {
    node(|n| {
        let src = n.alloc(Order::ONE, Gfp::USER).unwrap();
        let mut w = src.writer();
        for i in 0..(2 * PAGE_SIZE / 8) as u64 {
            w.write_u64(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        let dst = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let mut r = src.reader();
        r.skip(5);
        assert_eq!(dst.writer().copy_from(&mut r), PAGE_SIZE, "the copy stops when the destination is full");
        let (mut a, mut b) = (std::vec![0u8; PAGE_SIZE], std::vec![0u8; PAGE_SIZE]);
        let mut r = src.reader();
        r.skip(5);
        r.read(&mut a);
        dst.reader().read(&mut b);
        assert_eq!(a, b);
    });
}

#[test]
fn frozen_folios_copy_at_memcpy_speed_and_refuse_other_orders() {
    node(|n| {
        let mut src = n.alloc_frozen(Order::TWO, Gfp::USER).unwrap();
        src.bytes_mut().iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7) as u8);
        let mut dst = n.alloc_frozen(Order::TWO, Gfp::USER).unwrap();
        dst.copy_from(&src).unwrap();
        assert_eq!(dst.bytes(), src.bytes());
        let mut small = n.alloc_frozen(Order::ONE, Gfp::USER).unwrap();
        let err = small.copy_from(&src).unwrap_err();
        assert_eq!((err.src, err.dst), (Order::TWO, Order::ONE));
        let mut w = small.writer();
        assert_eq!(w.fill(1, usize::MAX), 2 * PAGE_SIZE);
        assert!(small.bytes().iter().all(|&b| b == 1));
    });
}

#[test]
fn split_pieces_not_taken_are_freed() {
    node(|n| {
        let free_before = n.vmstat().nr_free_pages;
        let frozen = n.alloc_frozen(Order::new(3).unwrap(), Gfp::USER).unwrap();
        let head = frozen.pfn();
        let mut pieces = frozen.split(Order::ZERO).unwrap();
        assert_eq!(pieces.len(), 8);
        let second = pieces.next().unwrap();
        assert_eq!(second.pfn(), head.add(1));
        assert_eq!(pieces.len(), 7);
        drop(pieces);
        assert_eq!(n.vmstat().nr_free_pages, free_before - 1, "only the piece taken stays allocated");
        drop(second);
        assert_eq!(n.vmstat().nr_free_pages, free_before);
        assert_eq!(n.audit().violations, 0);
    });
}

#[test]
fn a_panic_while_taking_pieces_leaks_nothing() {
    node(|n| {
        let free_before = n.vmstat().nr_free_pages;
        let frozen = n.alloc_frozen(Order::TWO, Gfp::USER).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (i, piece) in frozen.split(Order::ZERO).unwrap().enumerate() {
                assert_eq!(piece.order(), Order::ZERO);
                if i == 1 {
                    panic!("caller code fails mid-way");
                }
            }
        }));
        assert!(outcome.is_err());
        assert_eq!(n.vmstat().nr_free_pages, free_before);
        let audit = n.audit();
        assert_eq!((audit.allocated, audit.violations), (0, 0));
    });
}

#[test]
fn split_to_order_one_keeps_tails_linked_to_each_new_head() {
    node(|n| {
        let frozen = n.alloc_frozen(Order::new(3).unwrap(), Gfp::USER).unwrap();
        let head = frozen.pfn();
        let pieces: Vec<_> = frozen.split(Order::ONE).unwrap().map(|p| p.unfreeze_one().unwrap()).collect();
        let heads: Vec<_> = pieces.iter().map(|p| p.pfn().0 - head.0).collect();
        assert_eq!(heads, [2, 4, 6, 0], "new folios in pfn order, the original last");
        for piece in &pieces {
            assert_eq!(piece.order(), Order::ONE);
            assert_eq!(n.try_get(piece.pfn().add(1)).unwrap().pfn(), piece.pfn());
        }
    });
}

/// `?` works into an owned error for every error that carries a handle.
fn freeze_twice(n: &Node<'_>) -> Result<(), Box<dyn std::error::Error>> {
    let folio = n.alloc(Order::ZERO, Gfp::USER)?;
    let _extra = folio.clone();
    let frozen = folio.try_freeze().map_err(FreezeError::into_failed)?;
    drop(frozen);
    Ok(())
}

fn unfreeze_a_slab(n: &Node<'_>) -> Result<(), Box<dyn std::error::Error>> {
    let slab = n.alloc_frozen(Order::ZERO, Gfp::KERNEL.typed(PageType::Slab { cache: 1 }))?;
    let _counted = slab.unfreeze_one().map_err(UnfreezeError::into_failed)?;
    Ok(())
}

fn split_up(n: &Node<'_>) -> Result<(), Box<dyn std::error::Error>> {
    let frozen = n.alloc_frozen(Order::ONE, Gfp::KERNEL)?;
    let _pieces = frozen.split(Order::new(5).unwrap()).map_err(SplitError::into_failed)?;
    Ok(())
}

#[test]
fn handle_errors_convert_for_the_question_mark() {
    node(|n| {
        let e = freeze_twice(n).unwrap_err();
        assert!(e.to_string().contains("refcount 2, not the expected 1"), "{e}");
        let e = unfreeze_a_slab(n).unwrap_err();
        assert!(e.to_string().contains("never counted"), "{e}");
        let e = split_up(n).unwrap_err();
        assert_eq!(
            e.downcast_ref::<SplitFailed>(),
            Some(&SplitFailed::NotSmaller { order: Order::ONE, new_order: Order::new(5).unwrap() })
        );
        assert_eq!(n.audit().allocated, 0, "every converted error released its handle");
    });
}

#[test]
fn orders_convert_from_numbers() {
    assert_eq!(Order::try_from(3), Ok(Order::THREE));
    assert_eq!(Order::try_from(11), Err(OrderTooLarge(11)));
    assert_eq!(u32::from(Order::PMD), 9);
    assert_eq!(Order::PMD, Order::PAGEBLOCK);
}
