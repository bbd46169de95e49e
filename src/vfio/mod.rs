//! The kernel back end: VFIO container/group (legacy) and iommufd/cdev, device fds,
//! regions, DMA, interrupts and the KVM-VFIO association.

use crate::device::{DeviceError, DeviceHandle, DeviceSpec, OpenOptions, Result};

/// Opens kernel devices, sharing one IOMMU context among them.
pub fn open_devices(specs: &[&DeviceSpec], _opts: &OpenOptions) -> Result<Vec<DeviceHandle>> {
    Err(DeviceError::Unsupported {
        device: specs.first().map(|s| s.to_string()).unwrap_or_default(),
        what: "the kernel back end (not built yet)".into(),
    })
}
