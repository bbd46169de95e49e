//! Test-device drivers and the exercises built on them.
//!
//! The floor above the back ends: everything here works over [`Device`] (kernel device or
//! simulator alike) and reaches into [`crate::vfio`] only for DMA mapping and eventfds.
//!
//! - A DMA-capable test device is a [`DmaDriver`], a small table of operations (probe, init,
//!   remove, memcpy_start, memcpy_wait, send_msi: the model of the kernel's VFIO selftests
//!   library) that only programs the device's own registers: `edu` (QEMU's edu device)
//!   and `vhgpu` (the bed's test GPU module).
//! - [`DRIVERS`] is the registry and [`driver_for`] looks a device up in it.
//! - [`DmaEngine`] is the framework around a driver: PCI_COMMAND bus mastering and its
//!   restore, the MSI eventfd, draining and waiting, limits and call-order checks, done once
//!   for every driver.
//! - Exercises returning serializable reports: [`dma_check::dma_check`] (a pattern
//!   through the device and back), [`dma_pattern::dma_pattern`] (fill device memory with a
//!   pattern by DMA, or DMA it out and CRC it) and [`irq::exercise_irq`] (interrupt delivery,
//!   latency, mask/unmask).

pub mod dirty_log;
pub mod dma_check;
pub mod dma_pattern;
pub(crate) mod edu;
mod engine;
mod error;
pub mod irq;
mod ops;
pub mod space;
pub(crate) mod vhgpu;

#[cfg(test)]
mod tests;

pub use engine::{DmaEngine, DEFAULT_TIMEOUT};
pub use error::{DriverError, Result};
pub use ops::{Completion, Direction, DmaDriver, DmaLimits, Outcome, Transfer, MSI_INDEX};

use crate::device::Device;

/// One entry of the driver registry.
#[derive(Clone, Copy, Debug)]
pub struct DriverEntry {
    /// Driver name.
    pub name: &'static str,
    /// The device it drives, for messages (`QEMU edu 1234:11e8`).
    pub device: &'static str,
    /// Returns the driver when `dev` is a device it drives (PCI id, and whatever else the
    /// driver checks: vhgpu reads its ID register).
    pub probe: fn(&dyn Device) -> Option<Box<dyn DmaDriver>>,
}

/// The registry: every DMA test driver, probed in this order.
pub static DRIVERS: &[DriverEntry] = &[
    DriverEntry {
        name: "edu",
        device: "QEMU edu 1234:11e8",
        probe: edu::Edu::probe,
    },
    DriverEntry {
        name: "vhgpu",
        device: "vhgpu 1234:7668",
        probe: vhgpu::Vhgpu::probe,
    },
];

/// The driver for `dev`: the first registry entry whose probe matches, or `None`.
///
/// ```
/// use vfio_harness::OpenOptions;
/// use vfio_harness::drivers::{self, DmaEngine, DriverError};
///
/// let dev = vfio_harness::open(&"sim".parse()?, &OpenOptions::default())?;
/// // The simulator has no DMA engine: no driver claims it, and the framework (and so every
/// // DMA exercise) says which devices it knows.
/// assert!(drivers::driver_for(dev.as_ref()).is_none());
/// match DmaEngine::probe(dev.as_ref()) {
///     Err(DriverError::NoDriver { known, .. }) => assert!(known.contains("edu 1234:11e8")),
///     _ => unreachable!("the simulator has no DMA driver"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn driver_for(dev: &dyn Device) -> Option<Box<dyn DmaDriver>> {
    DRIVERS.iter().find_map(|d| (d.probe)(dev))
}

/// The devices the registry knows, for messages (`QEMU edu 1234:11e8, vhgpu 1234:7668`).
pub fn known_devices() -> String {
    DRIVERS
        .iter()
        .map(|d| d.device)
        .collect::<Vec<_>>()
        .join(", ")
}
