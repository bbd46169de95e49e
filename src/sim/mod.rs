//! The simulated device: an in-process back end beneath the same [`crate::device::Device`]
//! interface as kernel devices.

use crate::device::{DeviceError, DeviceHandle, Result};

/// Opens a simulated device from its `key=value,...` parameters.
pub fn open(params: &str) -> Result<DeviceHandle> {
    Err(DeviceError::Unsupported {
        device: format!("sim:{params}"),
        what: "the simulator (not built yet)".into(),
    })
}
