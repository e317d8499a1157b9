//! Where objects sit in a slab, and the slab order (Linux's
//! `calculate_order`).
//!
//! A slot is, in order: the left red zone (debug caches), the object, the
//! right red zone (debug), the free pointer when it cannot overlap the
//! object (debug, constructor and TYPESAFE_BY_RCU caches: their free
//! objects keep meaningful contents), and the state word (debug). Slots are
//! packed from the slab's first byte at a stride that keeps every object
//! aligned.

use super::{SlabError, SlabFlags};
use crate::folio::Order;
use crate::memmap::PAGE_SIZE;

/// The largest slab order: a slab spans at most 8 frames.
pub const MAX_SLAB_ORDER: u32 = 3;
/// The largest object a cache may hold: one slab of the largest order.
pub const MAX_OBJECT_SIZE: usize = PAGE_SIZE << MAX_SLAB_ORDER;
/// Red-zone bytes on each side of a debug cache's object (at least).
pub(crate) const RED_ZONE: usize = 16;
/// Objects per slab the order choice aims for (fewer trips to the buddy).
#[cfg(not(memdesc_loom))]
const MIN_OBJECTS: usize = 8;
#[cfg(memdesc_loom)]
const MIN_OBJECTS: usize = 1;
/// At most 1/WASTE_FRACTION of a slab may be left over.
const WASTE_FRACTION: usize = 16;

/// A cache's object layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The object size the user asked for.
    pub(crate) size: usize,
    /// The object alignment.
    pub(crate) align: usize,
    /// Bytes from one slot to the next.
    pub(crate) stride: usize,
    /// The object's offset in its slot (the left red zone).
    pub(crate) obj_off: usize,
    /// The free pointer's offset in its slot.
    pub(crate) fp_off: usize,
    /// The state word's offset in its slot (debug caches).
    pub(crate) state_off: Option<usize>,
    /// The slab order.
    pub(crate) order: Order,
    /// Objects per slab.
    pub(crate) objects: u16,
    /// `ceil(2^32 / stride)`: slot indices by multiplication (offsets in a
    /// slab are below 2^15 and strides at most 2^15, so the quotient is
    /// exact; Linux's `reciprocal_divide` does the same).
    recip: u64,
}

const fn align_up(value: usize, align: usize) -> usize {
    (value + align - 1) & !(align - 1)
}

impl Layout {
    /// The layout of objects of `size` bytes aligned to `align`.
    ///
    /// # Errors
    /// [`SlabError::BadAlign`] for an alignment not a power of two or above
    /// a page; [`SlabError::BadSize`] for 0 or a slot above
    /// [`MAX_OBJECT_SIZE`].
    pub(crate) fn new(size: usize, align: usize, flags: SlabFlags, has_ctor: bool) -> Result<Self, SlabError> {
        if !align.is_power_of_two() || align > PAGE_SIZE {
            return Err(SlabError::BadAlign(align));
        }
        if size == 0 || size > MAX_OBJECT_SIZE {
            return Err(SlabError::BadSize(size));
        }
        let word_align = align.max(8);
        let debug = flags.contains(SlabFlags::DEBUG);
        let (obj_off, fp_off, state_off, end) = if debug {
            let obj_off = align_up(RED_ZONE, align);
            let right = align_up(obj_off + size, 8) + RED_ZONE;
            (obj_off, right, Some(right + 8), right + 16)
        } else if flags.contains(SlabFlags::TYPESAFE_BY_RCU) || has_ctor {
            let fp = align_up(size, 8);
            (0, fp, None, fp + 8)
        } else {
            (0, 0, None, size.max(8))
        };
        let stride = align_up(end, word_align);
        if stride > MAX_OBJECT_SIZE {
            return Err(SlabError::BadSize(size));
        }
        let (order, objects) = order_for(stride);
        let recip = (1u64 << 32).div_ceil(stride as u64);
        Ok(Self { size, align, stride, obj_off, fp_off, state_off, order, objects, recip })
    }

    /// The object at index `index` of the slab starting at `base`.
    #[inline(always)]
    pub(crate) const fn object(&self, base: usize, index: usize) -> usize {
        base + index * self.stride + self.obj_off
    }

    /// The index of the object at `offset` in its slab, if `offset` is an
    /// object's start.
    #[inline(always)]
    pub(crate) fn index_of(&self, offset: usize) -> Option<usize> {
        let slot = offset.checked_sub(self.obj_off)?;
        if slot >= MAX_OBJECT_SIZE {
            return None;
        }
        let index = ((slot as u64 * self.recip) >> 32) as usize;
        (index * self.stride == slot && index < usize::from(self.objects)).then_some(index)
    }

    /// Where the free pointer of the object at `obj` lives.
    #[inline(always)]
    pub(crate) const fn free_ptr(&self, obj: usize) -> usize {
        obj - self.obj_off + self.fp_off
    }
}

/// The smallest order whose slab holds enough objects with little waste
/// (relaxing the object count, then the waste fraction 1/16 → 1/8 → 1/4,
/// as Linux's `calculate_order` does).
fn order_for(stride: usize) -> (Order, u16) {
    let fits = |order: u32, min_objects: usize, fraction: usize| {
        let bytes = PAGE_SIZE << order;
        let objects = bytes / stride;
        let waste = bytes - objects * stride;
        (objects >= min_objects.max(1) && waste * fraction <= bytes).then_some(objects)
    };
    let tries =
        [(MIN_OBJECTS, WASTE_FRACTION), (1, WASTE_FRACTION), (1, WASTE_FRACTION / 2), (1, WASTE_FRACTION / 4), (1, 1)];
    for (min_objects, fraction) in tries {
        for order in 0..=MAX_SLAB_ORDER {
            if let Some(objects) = fits(order, min_objects, fraction) {
                let order = Order::new(order).unwrap_or(Order::ZERO);
                return (order, objects as u16);
            }
        }
    }
    // Unreachable for stride <= MAX_OBJECT_SIZE: the largest order holds one.
    (Order::ZERO, 0)
}
