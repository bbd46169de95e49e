//! How long the IOMMU takes to map and unmap a DMA buffer (pinning and IOMMU page-table
//! work), the measurement behind `vfio-harness dma`.

use serde::Serialize;

use super::context::VfioContext;
use super::dma::{pick_iova, DmaBuffer, DmaMapping, HUGE_2M};
use super::ioctl::IovaRange;
use crate::device::{DeviceError, Result};
use crate::units::{bytes_per_second, format_bytes};

/// One map/unmap measurement (`dma --json`: `map`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapTiming {
    /// Bytes mapped (the request rounded up to the page size in use).
    pub size: u64,
    /// IOVA the buffer was mapped at.
    pub iova: u64,
    /// Whether 2 MiB hugetlb pages backed the buffer (asked for and available).
    pub hugepages: bool,
    /// Duration of the map call, in seconds.
    pub map_seconds: f64,
    /// Duration of the unmap call, in seconds.
    pub unmap_seconds: f64,
    /// `size / map_seconds`.
    pub map_bytes_per_second: f64,
    /// `size / unmap_seconds`.
    pub unmap_bytes_per_second: f64,
}

/// Lowest IOVA the buffer is placed at.
const IOVA_FLOOR: u64 = 1 << 20;

/// Allocates `size` bytes (2 MiB hugetlb pages when `hugepages` and available, else normal
/// pages), populates them, and times one map and one unmap at the lowest fitting IOVA of
/// `ranges` (`granule`: the IOMMU's smallest page, from [`VfioContext::iova_ranges`]).
pub fn time_map_unmap(
    ctx: &VfioContext,
    ranges: &[IovaRange],
    granule: u64,
    size: u64,
    hugepages: bool,
) -> Result<MapTiming> {
    let align = if hugepages {
        HUGE_2M.max(granule)
    } else {
        granule
    };
    let iova = pick_iova(
        ranges,
        size.div_ceil(align) * align,
        align,
        IOVA_FLOOR,
        None,
    )
    .ok_or_else(|| {
        DeviceError::InvalidArgument(format!("no IOVA range can hold {}", format_bytes(size)))
    })?;
    time_map_unmap_at(ctx, iova, size, hugepages)
}

/// Like [`time_map_unmap`], at the IOVA the caller chose. The IOVA is not checked against
/// the allowed ranges here: the kernel is the authority, and a map it refuses (an IOVA in a
/// reserved range such as the MSI window, beyond the IOMMU's address width, or misaligned)
/// is returned as its [`DeviceError::Dma`] with the errno.
pub fn time_map_unmap_at(
    ctx: &VfioContext,
    iova: u64,
    size: u64,
    hugepages: bool,
) -> Result<MapTiming> {
    let buf = DmaBuffer::alloc(iova, size, hugepages)?;
    buf.fill(0)?; // populate before timing the pinning
    let len = buf.len();
    let used_huge = buf.hugepages();
    let (m, map_t) = DmaMapping::map(ctx, buf)?;
    let unmap_t = m.unmap()?;
    Ok(MapTiming {
        size: len,
        iova,
        hugepages: used_huge,
        map_seconds: map_t.as_secs_f64(),
        unmap_seconds: unmap_t.as_secs_f64(),
        map_bytes_per_second: bytes_per_second(len, map_t.as_secs_f64()),
        unmap_bytes_per_second: bytes_per_second(len, unmap_t.as_secs_f64()),
    })
}
