//! DMA memory: anonymous buffers built with vm-memory (2 MiB hugetlb pages when asked and
//! available), placed at IOVAs inside the ranges the IOMMU allows, mapped and unmapped
//! through the shared [`VfioContext`].
//!
//! A buffer is a one-region `GuestMemoryMmap` whose guest addresses *are* the IOVAs, so
//! CPU-side access goes through vm-memory's volatile copies and never through Rust
//! references (the device writes the memory behind our back).

use std::time::{Duration, Instant};

use vm_memory::mmap::MmapRegion;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap};

use super::context::VfioContext;
use super::ioctl::IovaRange;
use crate::device::{DeviceError, Result};

/// 2 MiB: the huge page size used with `--hugepages`.
pub const HUGE_2M: u64 = 2 << 20;

/// Chooses an IOVA for `len` bytes: the lowest `align`-aligned address at or above `floor`
/// such that the whole buffer lies inside one allowed range and below `limit` (exclusive,
/// e.g. `1 << 28` for a device with a 28-bit DMA mask).
pub fn pick_iova(
    ranges: &[IovaRange],
    len: u64,
    align: u64,
    floor: u64,
    limit: Option<u64>,
) -> Option<u64> {
    if len == 0 || align == 0 || !align.is_power_of_two() {
        return None;
    }
    let mut best: Option<u64> = None;
    for r in ranges {
        let lo = r.start.max(floor);
        let Some(start) = lo.checked_add(align - 1).map(|v| v & !(align - 1)) else {
            continue;
        };
        let Some(last) = start.checked_add(len - 1) else {
            continue;
        };
        if start < lo || last > r.last {
            continue;
        }
        if let Some(l) = limit {
            if last >= l {
                continue;
            }
        }
        best = Some(best.map_or(start, |b: u64| b.min(start)));
    }
    best
}

/// An anonymous buffer for device DMA, addressed by IOVA.
pub struct DmaBuffer {
    mem: GuestMemoryMmap,
    iova: u64,
    len: u64,
    hugepages: bool,
}

impl DmaBuffer {
    /// Allocates `len` bytes (rounded up to the page size in use) to live at `iova`. With
    /// `hugepages`, tries 2 MiB hugetlb pages first and falls back to normal pages;
    /// [`DmaBuffer::hugepages`] says which was used.
    pub fn alloc(iova: u64, len: u64, hugepages: bool) -> Result<DmaBuffer> {
        let page = if hugepages { HUGE_2M } else { 4096 };
        let rounded = len.div_ceil(page) * page;
        let size = usize::try_from(rounded)
            .map_err(|_| DeviceError::InvalidArgument(format!("buffer of {len} bytes")))?;
        let base = libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let (region, used_huge) = if hugepages {
            // MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT
            // Without MAP_NORESERVE: hugetlb pages are reserved at mmap time, so a shortage
            // fails here instead of raising SIGBUS on first touch.
            let huge = libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_HUGETLB | (21 << 26);
            match MmapRegion::<()>::build(None, size, prot, huge) {
                Ok(r) => (r, true),
                Err(_) => (Self::plain(len, prot, base)?, false),
            }
        } else {
            (Self::plain(len, prot, base)?, false)
        };
        let len_used = region.size() as u64;
        let reg = GuestRegionMmap::new(region, GuestAddress(iova)).ok_or_else(|| {
            DeviceError::InvalidArgument(format!("buffer at IOVA {iova:#x} overflows"))
        })?;
        let mem = GuestMemoryMmap::from_regions(vec![reg]).map_err(|e| {
            DeviceError::InvalidArgument(format!("cannot build the DMA memory: {e}"))
        })?;
        Ok(DmaBuffer {
            mem,
            iova,
            len: len_used,
            hugepages: used_huge,
        })
    }

    fn plain(len: u64, prot: i32, flags: i32) -> Result<MmapRegion<()>> {
        let size = usize::try_from(len.div_ceil(4096) * 4096)
            .map_err(|_| DeviceError::InvalidArgument(format!("buffer of {len} bytes")))?;
        MmapRegion::<()>::build(None, size, prot, flags).map_err(|e| DeviceError::Io {
            device: "dma".into(),
            what: format!("allocate {size} bytes of DMA memory"),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// The IOVA of the first byte.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Length in bytes (after rounding to the page size).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether 2 MiB hugetlb pages back the buffer.
    pub fn hugepages(&self) -> bool {
        self.hugepages
    }

    fn host_ptr(&self) -> Result<*mut u8> {
        self.mem
            .get_host_address(GuestAddress(self.iova))
            .map_err(|_| DeviceError::InvalidArgument("DMA buffer has no mapping".into()))
    }

    /// Copies `data` into the buffer at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.mem
            .write_slice(data, GuestAddress(self.iova + offset))
            .map_err(|e| self.oob(offset, data.len(), e))
    }

    /// Copies out of the buffer at `offset`.
    pub fn read(&self, offset: u64, data: &mut [u8]) -> Result<()> {
        self.mem
            .read_slice(data, GuestAddress(self.iova + offset))
            .map_err(|e| self.oob(offset, data.len(), e))
    }

    /// Fills the buffer with `byte` (touches every page, so it is populated before mapping).
    pub fn fill(&self, byte: u8) -> Result<()> {
        let chunk = vec![byte; 64 << 10];
        let mut off = 0;
        while off < self.len {
            let n = (self.len - off).min(chunk.len() as u64) as usize;
            self.write(off, &chunk[..n])?;
            off += n as u64;
        }
        Ok(())
    }

    fn oob(&self, offset: u64, len: usize, e: vm_memory::GuestMemoryError) -> DeviceError {
        DeviceError::OutOfBounds {
            what: format!("DMA buffer at IOVA {:#x} ({e})", self.iova),
            offset,
            len: len as u64,
            size: self.len,
        }
    }
}

/// A buffer mapped for DMA; unmapped by [`DmaMapping::unmap`] or, best effort, on drop.
pub struct DmaMapping<'a> {
    ctx: &'a VfioContext,
    buf: DmaBuffer,
    mapped: bool,
}

impl<'a> DmaMapping<'a> {
    /// Maps `buf` at its IOVA; returns the mapping and how long the map call took.
    pub fn map(ctx: &'a VfioContext, buf: DmaBuffer) -> Result<(DmaMapping<'a>, Duration)> {
        let host = buf.host_ptr()?;
        let t = Instant::now();
        // SAFETY: `host..host+len` is the buffer's own mapping, which lives as long as the
        // returned DmaMapping; the mapping is removed (unmap or drop) before `buf` is freed,
        // and the buffer is only accessed through vm-memory's volatile copies.
        unsafe { ctx.dma_map(buf.iova, buf.len, host)? };
        let took = t.elapsed();
        Ok((
            DmaMapping {
                ctx,
                buf,
                mapped: true,
            },
            took,
        ))
    }

    /// The mapped buffer.
    pub fn buffer(&self) -> &DmaBuffer {
        &self.buf
    }

    /// Unmaps; returns how long the unmap call took (zero when
    /// [`DmaMapping::unmap_keep`] unmapped it already).
    pub fn unmap(mut self) -> Result<Duration> {
        self.unmap_keep()
    }

    /// Removes the IOMMU mapping but keeps the buffer: it stays readable and writable
    /// through [`DmaMapping::buffer`], and the device can no longer reach it (a DMA to its
    /// IOVA now faults in the IOMMU). Returns how long the unmap call took; a second call
    /// does nothing. The memory is freed when the mapping is dropped.
    pub fn unmap_keep(&mut self) -> Result<Duration> {
        if !self.mapped {
            return Ok(Duration::ZERO);
        }
        let t = Instant::now();
        self.ctx.dma_unmap(self.buf.iova, self.buf.len)?;
        self.mapped = false;
        Ok(t.elapsed())
    }

    /// Whether the IOMMU mapping is in place.
    pub fn is_mapped(&self) -> bool {
        self.mapped
    }
}

impl Drop for DmaMapping<'_> {
    fn drop(&mut self) {
        if self.mapped && self.ctx.dma_unmap(self.buf.iova, self.buf.len).is_err() {
            // The device may still reach this memory: leak it rather than free it under DMA.
            let buf = std::mem::replace(
                &mut self.buf.mem,
                GuestMemoryMmap::from_regions(Vec::new()).unwrap_or_default(),
            );
            std::mem::forget(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, last: u64) -> IovaRange {
        IovaRange { start, last }
    }

    #[test]
    fn picks_lowest_fitting_aligned_iova() {
        let ranges = [r(0, 0xfedf_ffff), r(0xfef0_0000, u64::MAX)];
        assert_eq!(
            pick_iova(&ranges, 1 << 20, 4096, 1 << 20, None),
            Some(1 << 20)
        );
        assert_eq!(
            pick_iova(&ranges, 4096, HUGE_2M, 0x1234, None),
            Some(HUGE_2M)
        );
        // Does not fit under the 28-bit limit.
        assert_eq!(
            pick_iova(&ranges, 1 << 28, 4096, 1 << 20, Some(1 << 28)),
            None
        );
        // Skips to the second range when the first is too small.
        let small = [r(0x1000, 0x1fff), r(0x10_0000, 0x1f_ffff)];
        assert_eq!(pick_iova(&small, 0x2000, 4096, 0, None), Some(0x10_0000));
        // Range ending at u64::MAX does not overflow.
        assert_eq!(
            pick_iova(&[r(u64::MAX - 0xfff, u64::MAX)], 0x1000, 0x1000, 0, None),
            Some(u64::MAX - 0xfff)
        );
        assert_eq!(pick_iova(&ranges, 0, 4096, 0, None), None);
        assert_eq!(pick_iova(&ranges, 4096, 3, 0, None), None);
    }

    #[test]
    fn buffer_round_trip() {
        let b = DmaBuffer::alloc(0x10_0000, 5000, false).unwrap();
        assert_eq!(b.len(), 8192);
        assert!(!b.hugepages());
        b.fill(0xa5).unwrap();
        b.write(4096, b"hello").unwrap();
        let mut out = [0u8; 7];
        b.read(4095, &mut out).unwrap();
        assert_eq!(&out, b"\xa5hello\xa5");
        assert!(b.write(8190, b"xyz").is_err());
    }
}
