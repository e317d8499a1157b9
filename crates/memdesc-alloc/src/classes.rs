//! Size classes: finer than kmalloc's powers of two, so a 40-byte request
//! costs 48 bytes, not 64.
//!
//! Every 16 bytes up to 128 (16 is glibc's `alignof(max_align_t)` on
//! x86_64, the minimum alignment `malloc` promises), then four classes per
//! power of two up to [`MAX_CLASS_SIZE`]. An object of class `s` is aligned
//! to the largest power of two dividing `s` (capped at a page): slabs are
//! page-aligned and packed at stride `s`, and each cache is created with
//! that alignment so debug layouts keep it too.

use memdesc::PAGE_SIZE;

/// The class sizes, ascending.
pub(crate) const CLASS_SIZES: [usize; NR_CLASSES] = [
    16, 32, 48, 64, 80, 96, 112, 128, // 16-byte steps
    160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, // four per doubling
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384,
];
/// How many classes.
pub(crate) const NR_CLASSES: usize = 36;
/// The largest size a slab class serves; above it, folios.
pub(crate) const MAX_CLASS_SIZE: usize = 16384;
/// The minimum alignment of every allocation.
pub(crate) const MIN_ALIGN: usize = 16;

/// The cache names (slabinfo lines).
pub(crate) const CLASS_NAMES: [&str; NR_CLASSES] = [
    "malloc-16",
    "malloc-32",
    "malloc-48",
    "malloc-64",
    "malloc-80",
    "malloc-96",
    "malloc-112",
    "malloc-128",
    "malloc-160",
    "malloc-192",
    "malloc-224",
    "malloc-256",
    "malloc-320",
    "malloc-384",
    "malloc-448",
    "malloc-512",
    "malloc-640",
    "malloc-768",
    "malloc-896",
    "malloc-1k",
    "malloc-1280",
    "malloc-1536",
    "malloc-1792",
    "malloc-2k",
    "malloc-2560",
    "malloc-3k",
    "malloc-3584",
    "malloc-4k",
    "malloc-5k",
    "malloc-6k",
    "malloc-7k",
    "malloc-8k",
    "malloc-10k",
    "malloc-12k",
    "malloc-14k",
    "malloc-16k",
];

/// The class of each size, by `(size - 1) / 16`.
static BY_GRANULE: [u8; MAX_CLASS_SIZE / 16] = {
    let mut table = [0u8; MAX_CLASS_SIZE / 16];
    let mut granule = 0;
    let mut class = 0;
    while granule < table.len() {
        while CLASS_SIZES[class] < (granule + 1) * 16 {
            class += 1;
        }
        table[granule] = class as u8;
        granule += 1;
    }
    table
};

/// The alignment every object of class `index` has.
pub(crate) const fn class_align(index: usize) -> usize {
    let size = CLASS_SIZES[index];
    let align = 1 << size.trailing_zeros();
    if align > PAGE_SIZE {
        PAGE_SIZE
    } else {
        align
    }
}

/// The smallest class holding `size` bytes (1..) aligned to `align`, if a
/// class does.
#[inline(always)]
pub(crate) fn class_for(size: usize, align: usize) -> Option<usize> {
    if size > MAX_CLASS_SIZE {
        return None;
    }
    let mut index = usize::from(BY_GRANULE[(size.max(1) - 1) / 16]);
    if align > MIN_ALIGN {
        while class_align(index) < align {
            index += 1;
            if index == NR_CLASSES {
                return None;
            }
        }
    }
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_gets_the_smallest_class_that_fits() {
        for size in 1..=MAX_CLASS_SIZE {
            let index = class_for(size, 1).unwrap();
            assert!(CLASS_SIZES[index] >= size, "size {size} in class {}", CLASS_SIZES[index]);
            assert!(index == 0 || CLASS_SIZES[index - 1] < size, "size {size} could use a smaller class");
        }
        assert_eq!(class_for(MAX_CLASS_SIZE + 1, 1), None);
    }

    #[test]
    fn aligned_requests_get_a_class_aligned_enough() {
        assert_eq!(CLASS_SIZES[class_for(40, 64).unwrap()], 64);
        assert_eq!(CLASS_SIZES[class_for(100, 256).unwrap()], 256);
        assert_eq!(CLASS_SIZES[class_for(5000, 4096).unwrap()], 8192);
        assert_eq!(class_for(100, 8192), None);
        for index in 0..NR_CLASSES {
            assert!(class_align(index) >= MIN_ALIGN);
        }
    }
}
