//! Why guest memory could not be mapped for DMA: [`GuestDmaError`], naming the region.

use std::io;

use super::ioctl::IovaRange;
use crate::device::DeviceError;

/// Why guest memory could not be mapped (or unmapped) for DMA. Every variant names the
/// region (its index in the `GuestMemoryMmap`); the kernel's errno is kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestDmaError {
    /// The layout gave the region no IOVA, or its IOVA range does not fit in 64 bits.
    #[error("guest memory region {region} (guest {guest_addr:#x}, {len:#x} bytes): {reason}")]
    Iova {
        /// Region index.
        region: usize,
        /// Its guest address.
        guest_addr: u64,
        /// Its length.
        len: u64,
        /// What went wrong.
        reason: String,
    },

    /// IOVA, length or host address is not a multiple of the mapping granule (the host page
    /// size, or the IOMMU's smallest page when larger).
    #[error("guest memory region {region} (guest {guest_addr:#x}, IOVA {iova:#x}, {len:#x} bytes, host {host_addr:#x}) is not aligned to the mapping granule {granule:#x}")]
    Misaligned {
        /// Region index.
        region: usize,
        /// Its guest address.
        guest_addr: u64,
        /// Its IOVA.
        iova: u64,
        /// Its length.
        len: u64,
        /// Its host address.
        host_addr: usize,
        /// The granule.
        granule: u64,
    },

    /// Two regions would overlap in the IO address space.
    #[error("guest memory regions {first} and {second} overlap in the IO address space at IOVA {iova:#x}")]
    Overlap {
        /// The region with the lower IOVA.
        first: usize,
        /// The region overlapping it.
        second: usize,
        /// The first IOVA of `second`, inside `first`.
        iova: u64,
    },

    /// The region's IOVA range is not inside one of the ranges the IOMMU allows (reserved
    /// windows such as the x86 MSI range at 0xfee00000 are holes between them).
    #[error("guest memory region {region} (IOVA {iova:#x}, {len:#x} bytes) is outside the IOVA ranges the IOMMU allows ({})", ranges_text(.allowed))]
    OutsideIovaRanges {
        /// Region index.
        region: usize,
        /// Its IOVA.
        iova: u64,
        /// Its length.
        len: u64,
        /// The allowed ranges.
        allowed: Vec<IovaRange>,
    },

    /// vm-memory has no host mapping for the region.
    #[error("guest memory region {region} (guest {guest_addr:#x}) has no host mapping")]
    NoHostAddress {
        /// Region index.
        region: usize,
        /// Its guest address.
        guest_addr: u64,
    },

    /// The kernel refused the map or unmap.
    #[error("{space}: DMA {op} of guest memory region {region} (guest {guest_addr:#x}, IOVA {iova:#x}, {len:#x} bytes) failed: {source}{}", hint_text(.hint))]
    Dma {
        /// The IOMMU context (`legacy` or `iommufd`).
        space: String,
        /// `map` or `unmap`.
        op: &'static str,
        /// Region index.
        region: usize,
        /// Its guest address.
        guest_addr: u64,
        /// Its IOVA.
        iova: u64,
        /// Its length.
        len: u64,
        /// The kernel's error.
        #[source]
        source: io::Error,
        /// A hint (memlock limit, overlap with an existing mapping...), or empty.
        hint: String,
    },
}

impl GuestDmaError {
    /// The index of the region concerned (the second one of an overlap).
    ///
    /// # Example
    ///
    /// ```
    /// use vfio_harness::vfio::GuestDmaError;
    /// let e = GuestDmaError::Overlap { first: 0, second: 2, iova: 0x1000 };
    /// assert_eq!(e.region(), 2);
    /// ```
    pub fn region(&self) -> usize {
        match self {
            GuestDmaError::Iova { region, .. }
            | GuestDmaError::Misaligned { region, .. }
            | GuestDmaError::OutsideIovaRanges { region, .. }
            | GuestDmaError::NoHostAddress { region, .. }
            | GuestDmaError::Dma { region, .. } => *region,
            GuestDmaError::Overlap { second, .. } => *second,
        }
    }

    /// The kernel's errno, for [`GuestDmaError::Dma`].
    ///
    /// # Example
    ///
    /// ```
    /// use vfio_harness::vfio::GuestDmaError;
    /// let e = GuestDmaError::Overlap { first: 0, second: 1, iova: 0 };
    /// assert_eq!(e.errno(), None);
    /// ```
    pub fn errno(&self) -> Option<i32> {
        match self {
            GuestDmaError::Dma { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<GuestDmaError> for DeviceError {
    /// A kernel refusal becomes [`DeviceError::Dma`] (the region named in its `device`
    /// field, errno kept), anything else [`DeviceError::InvalidArgument`].
    fn from(e: GuestDmaError) -> DeviceError {
        match e {
            GuestDmaError::Dma {
                space,
                op,
                region,
                guest_addr,
                iova,
                len,
                source,
                ..
            } => DeviceError::Dma {
                device: format!("{space}, guest memory region {region} (guest {guest_addr:#x})"),
                op,
                iova,
                len,
                source,
            },
            other => DeviceError::InvalidArgument(other.to_string()),
        }
    }
}

fn ranges_text(r: &[IovaRange]) -> String {
    let list: Vec<String> = r
        .iter()
        .map(|r| format!("{:#x}-{:#x}", r.start, r.last))
        .collect();
    list.join(", ")
}

fn hint_text(h: &str) -> String {
    if h.is_empty() {
        String::new()
    } else {
        format!(" (hint: {h})")
    }
}
