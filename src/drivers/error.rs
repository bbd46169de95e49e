//! Errors of the test-device drivers and the exercises built on them.

use std::io;
use std::time::Duration;

use crate::device::DeviceError;
use crate::vfio::dirty::DirtyLogError;

/// Result of driver and exercise calls.
pub type Result<T> = std::result::Result<T, DriverError>;

/// What can go wrong driving a test device's DMA engine or exercising a device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// No driver in the registry ([`super::DRIVERS`]) matches the device.
    #[error("{device}: no DMA engine driver for this device (pci id {}); supported: {known}", .pci_id.as_deref().unwrap_or("none"))]
    NoDriver {
        /// Device name.
        device: String,
        /// The device's PCI id (`1234:11e8`), when it has one.
        pci_id: Option<String>,
        /// The devices the registry knows ([`super::known_devices`]).
        known: String,
    },

    /// The request lies outside what the device or the driver can do (transfer size,
    /// device-memory window, DMA mask), or an argument cannot work.
    #[error("{device}: {reason}")]
    InvalidArgument {
        /// Device name.
        device: String,
        /// What is wrong.
        reason: String,
    },

    /// A framework call came out of order (DMA before `init`, a second transfer while one is
    /// in flight, `memcpy_wait` without `memcpy_start`).
    #[error("{device}: {driver}: {what}")]
    Sequence {
        /// Device name.
        device: String,
        /// Driver name.
        driver: &'static str,
        /// What was out of order.
        what: &'static str,
    },

    /// No allowed IOVA range can hold a buffer the exercise needs.
    #[error("{device}: no IOVA range below the device's DMA limit for the {what}")]
    NoIova {
        /// Device name.
        device: String,
        /// Which buffer (`source buffer`, `destination buffer`, ...).
        what: &'static str,
    },

    /// An interrupt the driver waits for did not arrive in time.
    #[error("{device}: the {what} MSI did not arrive within {timeout:?} ({status})")]
    Timeout {
        /// Device name.
        device: String,
        /// Which interrupt (`DMA completion`, `raised`).
        what: &'static str,
        /// How long it was waited for.
        timeout: Duration,
        /// The device's status registers as the driver read them afterwards.
        status: String,
    },

    /// The device reported a failure, or a state its driver did not expect.
    #[error("{device}: {what} ({status}): {source}")]
    Device {
        /// Device name.
        device: String,
        /// What failed.
        what: String,
        /// The device's status registers as the driver read them.
        status: String,
        /// The errno the device reported, or the kind of inconsistency.
        #[source]
        source: io::Error,
    },

    /// An eventfd could not be created or waited on.
    #[error("{device}: cannot {what}: {source}")]
    Event {
        /// Device name.
        device: String,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A device-layer call (region access, interrupt set-up, DMA mapping) failed.
    #[error(transparent)]
    Access(#[from] DeviceError),

    /// A DMA dirty-logging call failed (the kernel's errno in it).
    #[error(transparent)]
    DirtyLog(#[from] DirtyLogError),
}
