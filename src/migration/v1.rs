//! Migration protocol v1: the region-based protocol (see the module docs of
//! [`crate::migration`]).

use super::{MigrationDriver, MigrationError, Pending, Protocol, Result};
use crate::device::{DeviceHandle, MigFlags, MigState, RegionInfo};

/// Region type of the v1 migration region (`VFIO_REGION_TYPE_MIGRATION_DEPRECATED`).
pub const REGION_TYPE_MIGRATION: u32 = 3;
/// Region subtype of the v1 migration region (`VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED`).
pub const REGION_SUBTYPE_MIGRATION: u32 = 1;

/// Drives a device through the v1 migration region.
pub struct V1Driver {
    device: DeviceHandle,
    #[allow(dead_code)]
    region: RegionInfo,
}

impl V1Driver {
    /// The device's v1 migration region, if it has one.
    pub fn probe(device: &DeviceHandle) -> Option<RegionInfo> {
        device
            .info()
            .region_by_type(REGION_TYPE_MIGRATION, REGION_SUBTYPE_MIGRATION)
            .cloned()
    }

    /// Opens the v1 driver on a device with a migration region.
    pub fn new(device: DeviceHandle) -> Result<Self> {
        let region = Self::probe(&device).ok_or_else(|| MigrationError::NotMigratable {
            device: device.name().to_string(),
        })?;
        Ok(V1Driver { device, region })
    }

    fn todo(&self) -> MigrationError {
        MigrationError::Protocol {
            device: self.device.name().to_string(),
            what: "the v1 driver is not built yet".into(),
        }
    }
}

impl MigrationDriver for V1Driver {
    fn protocol(&self) -> Protocol {
        Protocol::V1
    }
    fn device(&self) -> &DeviceHandle {
        &self.device
    }
    fn flags(&self) -> MigFlags {
        MigFlags(MigFlags::STOP_COPY | MigFlags::PRE_COPY)
    }
    fn set_state(&mut self, _state: MigState) -> Result<()> {
        Err(self.todo())
    }
    fn state(&mut self) -> Result<MigState> {
        Err(self.todo())
    }
    fn read(&mut self, _buf: &mut [u8]) -> Result<usize> {
        Err(self.todo())
    }
    fn write(&mut self, _buf: &[u8]) -> Result<usize> {
        Err(self.todo())
    }
    fn pending(&mut self) -> Result<Pending> {
        Err(self.todo())
    }
    fn stop_copy_size(&mut self) -> Result<Option<u64>> {
        Ok(None)
    }
    fn recover(&mut self) -> Result<()> {
        Err(self.todo())
    }
}
