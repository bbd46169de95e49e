//! Kernel structs read out of the buffers ioctls fill, and VFIO capability chains
//! (`struct vfio_info_cap_header`), bounds-checked against the bytes the kernel filled.
//!
//! An info ioctl with a chain (`VFIO_DEVICE_GET_REGION_INFO`, `VFIO_IOMMU_GET_INFO`) answers
//! with a fixed struct followed by capabilities, each starting with
//! `struct vfio_info_cap_header { u16 id; u16 version; u32 next; }`, `next` being the offset
//! of the following capability from the start of the buffer (0 ends the chain). The kernel
//! lays them out in increasing order. A driver can still hand back anything, so every read
//! here is checked against the buffer and a malformed chain is a [`ChainError`], never a
//! panic or an out-of-bounds read: an offset past the filled bytes, an offset into the fixed
//! struct, a `next` that does not move forward (a loop), or a capability whose entries run
//! past the end.

use std::mem::size_of;

use iommufd_bindings::{iommu_ioas_iova_ranges, iommu_iova_range};
use vfio_bindings::bindings::vfio::{
    vfio_device_info, vfio_info_cap_header, vfio_iommu_type1_info,
    vfio_iommu_type1_info_cap_iova_range, vfio_iova_range, vfio_irq_info, vfio_irq_set,
    vfio_region_info, vfio_region_info_cap_sparse_mmap, vfio_region_info_cap_type,
    vfio_region_sparse_mmap_area,
};

/// A malformed kernel answer: a struct shorter than its fixed part, or a capability chain
/// that leaves the buffer or loops.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The buffer is shorter than the fixed struct it must start with.
    #[error("{what} is {len} byte(s), shorter than its {need}-byte fixed part")]
    Short {
        /// The struct (`struct vfio_region_info`, ...).
        what: &'static str,
        /// Bytes available.
        len: usize,
        /// Bytes the fixed struct needs.
        need: usize,
    },
    /// The chain starts inside the fixed struct.
    #[error("capability chain starts at offset {offset}, inside the {header}-byte fixed struct")]
    IntoHeader {
        /// The offset given.
        offset: usize,
        /// Size of the fixed struct.
        header: usize,
    },
    /// A capability (its header, its fixed part or its entries) reaches past the bytes the
    /// kernel filled.
    #[error(
        "capability at offset {offset} needs {need} byte(s) but only {len} byte(s) were filled"
    )]
    OutOfRange {
        /// Offset of the capability.
        offset: usize,
        /// Bytes it needs from its offset.
        need: usize,
        /// Bytes filled in the whole buffer.
        len: usize,
    },
    /// A `next` offset does not move forward: the chain would loop.
    #[error("capability at offset {offset} links back to offset {next}: the chain would loop")]
    Loop {
        /// Offset of the capability.
        offset: usize,
        /// Its `next`.
        next: usize,
    },
}

/// A uAPI struct that may be read from any bytes.
///
/// # Safety
/// Implementors are `repr(C)` structs of integer fields (and zero-sized flexible-array
/// markers) without padding, so every byte of a value is initialised and every bit pattern
/// is a valid value.
pub(crate) unsafe trait Pod: Sized {}

/// Implements [`Pod`] for bindgen uAPI structs, asserting each size equals the sum of the
/// field sizes written next to it (so the struct has no padding).
macro_rules! pod {
    ($($t:ty = $size:expr;)*) => {
        $(
            // SAFETY: a bindgen `repr(C)` struct of integer fields (flexible arrays are
            // zero-sized markers) whose size is asserted below to equal the sum of its
            // fields' sizes: no padding, any bit pattern valid.
            unsafe impl Pod for $t {}
            const _: () = assert!(size_of::<$t>() == $size);
        )*
    };
}

pod! {
    vfio_info_cap_header = 2 + 2 + 4;
    vfio_device_info = 6 * 4;
    vfio_region_info = 4 * 4 + 8 + 8;
    vfio_region_info_cap_type = 8 + 4 + 4;
    vfio_region_info_cap_sparse_mmap = 8 + 4 + 4;
    vfio_region_sparse_mmap_area = 8 + 8;
    vfio_irq_info = 4 * 4;
    vfio_irq_set = 5 * 4;
    vfio_iommu_type1_info = 4 + 4 + 8 + 4 + 4;
    vfio_iommu_type1_info_cap_iova_range = 8 + 4 + 4;
    vfio_iova_range = 8 + 8;
    iommu_ioas_iova_ranges = 4 * 4 + 8 + 8;
    iommu_iova_range = 8 + 8;
    u32 = 4;
    u64 = 8;
}

/// The `T` at byte `off` of `b`, or `None` when it does not fit.
pub(crate) fn read<T: Pod>(b: &[u8], off: usize) -> Option<T> {
    let end = off.checked_add(size_of::<T>())?;
    let src = b.get(off..end)?;
    // SAFETY: `src` holds exactly size_of::<T>() readable bytes; `read_unaligned` has no
    // alignment requirement, and any bytes are a valid `T` (`Pod`).
    Some(unsafe { std::ptr::read_unaligned(src.as_ptr().cast::<T>()) })
}

/// Reads the fixed struct `T` a buffer starts with.
pub(crate) fn read_head<T: Pod>(b: &[u8], what: &'static str) -> Result<T, ChainError> {
    read(b, 0).ok_or(ChainError::Short {
        what,
        len: b.len(),
        need: size_of::<T>(),
    })
}

/// One capability of a chain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cap<'a> {
    /// `id`.
    pub(crate) id: u16,
    /// Offset of its header in the buffer.
    offset: usize,
    /// The buffer from the header to the end of the filled bytes.
    bytes: &'a [u8],
}

impl Cap<'_> {
    fn out_of_range(&self, need: usize) -> ChainError {
        ChainError::OutOfRange {
            offset: self.offset,
            need,
            len: self.offset + self.bytes.len(),
        }
    }

    /// The capability's struct (header included).
    pub(crate) fn get<T: Pod>(&self) -> Result<T, ChainError> {
        read(self.bytes, 0).ok_or_else(|| self.out_of_range(size_of::<T>()))
    }

    /// `n` entries of `T` starting `at` bytes after the header's start (a flexible array).
    pub(crate) fn array<T: Pod>(&self, at: usize, n: usize) -> Result<Vec<T>, ChainError> {
        let need = n
            .checked_mul(size_of::<T>())
            .and_then(|s| s.checked_add(at))
            .unwrap_or(usize::MAX);
        if need > self.bytes.len() {
            return Err(self.out_of_range(need));
        }
        (0..n)
            .map(|i| {
                read(self.bytes, at + i * size_of::<T>()).ok_or_else(|| self.out_of_range(need))
            })
            .collect()
    }
}

/// Walks the chain starting at `first` in `filled` (the bytes the kernel filled, at most
/// `argsz`), after a fixed struct of `header` bytes. `first == 0` is an empty chain.
pub(crate) fn walk(filled: &[u8], header: usize, first: u32) -> Result<Vec<Cap<'_>>, ChainError> {
    let mut caps = Vec::new();
    let mut off = first as usize;
    if off == 0 {
        return Ok(caps);
    }
    if off < header {
        return Err(ChainError::IntoHeader {
            offset: off,
            header,
        });
    }
    loop {
        let oor = ChainError::OutOfRange {
            offset: off,
            need: size_of::<vfio_info_cap_header>(),
            len: filled.len(),
        };
        let h: vfio_info_cap_header = read(filled, off).ok_or(oor.clone())?;
        let bytes = filled.get(off..).ok_or(oor)?;
        caps.push(Cap {
            id: h.id,
            offset: off,
            bytes,
        });
        let next = h.next as usize;
        if next == 0 {
            return Ok(caps);
        }
        if next <= off {
            return Err(ChainError::Loop { offset: off, next });
        }
        off = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-byte fixed struct followed by caps `(id, next, body)` laid out in order.
    fn chain(caps: &[(u16, u32, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        for (id, next, body) in caps {
            b.extend_from_slice(&id.to_ne_bytes());
            b.extend_from_slice(&1u16.to_ne_bytes());
            b.extend_from_slice(&next.to_ne_bytes());
            b.extend_from_slice(body);
        }
        b
    }

    #[test]
    fn good_chain() {
        let body = 7u32.to_ne_bytes();
        let b = chain(&[(5, 28, &body), (9, 0, &[])]);
        let caps = walk(&b, 16, 16).unwrap();
        assert_eq!(caps.iter().map(|c| c.id).collect::<Vec<_>>(), [5, 9]);
        assert_eq!(caps[0].array::<u32>(8, 1).unwrap(), [7]);
        assert!(walk(&b, 16, 0).unwrap().is_empty());
    }

    #[test]
    fn loops_are_errors() {
        let b = chain(&[(1, 16, &[])]); // points at itself
        assert_eq!(
            walk(&b, 16, 16).unwrap_err(),
            ChainError::Loop {
                offset: 16,
                next: 16
            }
        );
        let b = chain(&[(1, 24, &[]), (2, 16, &[])]); // points back
        assert!(matches!(
            walk(&b, 16, 16),
            Err(ChainError::Loop {
                offset: 24,
                next: 16
            })
        ));
    }

    #[test]
    fn out_of_range_offsets_are_errors() {
        let b = chain(&[(1, 400, &[])]);
        assert_eq!(
            walk(&b, 16, 16).unwrap_err(),
            ChainError::OutOfRange {
                offset: 400,
                need: 8,
                len: 24
            }
        );
        assert!(matches!(
            walk(&b, 16, 20),
            Err(ChainError::OutOfRange { offset: 20, .. })
        ));
        assert!(matches!(
            walk(&b, 16, u32::MAX),
            Err(ChainError::OutOfRange { .. })
        ));
        assert_eq!(
            walk(&b, 16, 8).unwrap_err(),
            ChainError::IntoHeader {
                offset: 8,
                header: 16
            }
        );
    }

    #[test]
    fn entries_past_the_end_are_errors() {
        let b = chain(&[(1, 0, &[0u8; 8])]);
        let caps = walk(&b, 16, 16).unwrap();
        assert!(caps[0].array::<u64>(8, 1).is_ok());
        assert!(matches!(
            caps[0].array::<u64>(8, 2),
            Err(ChainError::OutOfRange { need: 24, .. })
        ));
        assert!(caps[0].array::<u64>(8, usize::MAX).is_err());
        assert!(caps[0].get::<vfio_region_info>().is_err());
        assert!(read_head::<vfio_region_info>(&b[..31], "x").is_err());
    }
}
