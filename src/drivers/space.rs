//! Host memory the device's DMA reaches: buffers placed at IOVAs and mapped through an
//! IOMMU context.
//!
//! The exercises ([`super::dma_check`], [`super::dma_pattern`]) work over [`DmaSpace`], so
//! they run on a kernel device's [`VfioContext`] and, in tests, on an in-process stand-in.

use crate::device::{Device, Result};
use crate::vfio::dma::{DmaBuffer, DmaMapping};
use crate::vfio::{IovaRange, KernelDevice, VfioContext};

/// An IO address space that host buffers can be mapped into for device DMA.
pub trait DmaSpace {
    /// The mapping granule (smallest IOMMU page size) and the IOVA ranges DMA may use.
    fn iova_ranges(&self) -> Result<(u64, Vec<IovaRange>)>;

    /// Allocates `len` bytes (rounded up to the page size), fills them with `fill` (so
    /// every page is populated before it is pinned) and maps them at `iova`.
    fn map_buffer(&self, iova: u64, len: u64, fill: u8) -> Result<Box<dyn DmaRegion + '_>>;

    /// Like [`DmaSpace::map_buffer`]; with `hugepages`, backed by 2 MiB hugetlb pages when
    /// the system has them free (else normal pages: [`DmaRegion::hugepages`] says which).
    /// Spaces without hugetlb memory ignore `hugepages` (the default).
    fn map_buffer_pages(
        &self,
        iova: u64,
        len: u64,
        fill: u8,
        hugepages: bool,
    ) -> Result<Box<dyn DmaRegion + '_>> {
        let _ = hugepages;
        self.map_buffer(iova, len, fill)
    }
}

/// A host buffer mapped for device DMA. Unmapped by [`DmaRegion::unmap`] or, best effort,
/// when dropped.
pub trait DmaRegion {
    /// IOVA of the first byte.
    fn iova(&self) -> u64;
    /// Length in bytes.
    fn len(&self) -> u64;
    /// Whether the buffer is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies out of the buffer at `offset` (volatile: the device writes it).
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Copies `data` into the buffer at `offset`.
    fn write(&self, offset: u64, data: &[u8]) -> Result<()>;
    /// Unmaps the buffer, reporting a failure (nothing to do after
    /// [`DmaRegion::unmap_keep`]).
    fn unmap(self: Box<Self>) -> Result<()>;
    /// Whether 2 MiB hugetlb pages back the buffer.
    fn hugepages(&self) -> bool {
        false
    }
    /// Removes the IOMMU mapping but keeps the host memory, still readable and writable
    /// through [`DmaRegion::read`] / [`DmaRegion::write`]: the device can no longer reach
    /// it. A second call does nothing. Spaces that cannot keep the memory say so (the
    /// default).
    fn unmap_keep(&mut self) -> Result<()> {
        Err(crate::device::DeviceError::Unsupported {
            device: "DMA space".into(),
            what: "unmapping a buffer while keeping its memory".into(),
        })
    }
}

impl DmaSpace for VfioContext {
    fn iova_ranges(&self) -> Result<(u64, Vec<IovaRange>)> {
        VfioContext::iova_ranges(self)
    }

    fn map_buffer(&self, iova: u64, len: u64, fill: u8) -> Result<Box<dyn DmaRegion + '_>> {
        self.map_buffer_pages(iova, len, fill, false)
    }

    fn map_buffer_pages(
        &self,
        iova: u64,
        len: u64,
        fill: u8,
        hugepages: bool,
    ) -> Result<Box<dyn DmaRegion + '_>> {
        let buf = DmaBuffer::alloc(iova, len, hugepages)?;
        buf.fill(fill)?;
        let (m, _) = DmaMapping::map(self, buf)?;
        Ok(Box::new(m))
    }
}

impl DmaRegion for DmaMapping<'_> {
    fn iova(&self) -> u64 {
        self.buffer().iova()
    }

    fn len(&self) -> u64 {
        self.buffer().len()
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.buffer().read(offset, buf)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.buffer().write(offset, data)
    }

    fn unmap(self: Box<Self>) -> Result<()> {
        DmaMapping::unmap(*self).map(|_| ())
    }

    fn hugepages(&self) -> bool {
        self.buffer().hugepages()
    }

    fn unmap_keep(&mut self) -> Result<()> {
        DmaMapping::unmap_keep(self).map(|_| ())
    }
}

/// The IOMMU context of a kernel device (through [`Device::as_any`]); `None` for back ends
/// without one (the simulator).
pub fn kernel_context(dev: &dyn Device) -> Option<&VfioContext> {
    dev.as_any()
        .downcast_ref::<KernelDevice>()
        .map(|k| k.context().as_ref())
}
