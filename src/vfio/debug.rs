//! `Debug` for the kernel back end's public types, from their public accessors (kept apart
//! from the types so the back end's files stay about what they do).

use super::dma::{DmaBuffer, DmaMapping};
use super::irq::IrqEvent;
use super::{KernelDevice, VfioContext};
use crate::device::Device;
use std::fmt;

impl fmt::Debug for VfioContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioContext")
            .field("kind", &self.kind())
            .field("kvm_registered", &self.kvm_registered())
            .field("kvm_note", &self.kvm_note())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for KernelDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelDevice")
            .field("name", &self.name())
            .field("sysfs_path", &self.sysfs_path())
            .field("iommu_group", &self.iommu_group())
            .field("fd", &self.raw_fd())
            .field("context", self.context())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DmaBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuffer")
            .field("iova", &format_args!("{:#x}", self.iova()))
            .field("len", &self.len())
            .field("hugepages", &self.hugepages())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DmaMapping<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaMapping")
            .field("buffer", self.buffer())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for IrqEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IrqEvent")
            .field("fd", &self.raw_fd())
            .finish()
    }
}
