//! # vfio-harness
//!
//! A userspace harness that drives devices through the Linux kernel's VFIO interface:
//! open mediated devices (mdev) and vfio-pci devices through the legacy container/group
//! path or the iommufd cdev path, map their BARs and DMA, fire their interrupts, drive the
//! device-migration state machine (protocol v2, and the region-based v1) and its data stream,
//! and measure device-state save/restore throughput and downtime.
//!
//! Layers, bottom up:
//! - [`mem`]: page-aligned anonymous buffers and mappings of device memory.
//! - [`sysfs`]: mdev parents, types and instances; PCI devices and IOMMU groups.
//! - [`device`]: the [`device::Device`] trait every back end implements, device specs,
//!   errors. Back ends: [`vfio`] (the kernel) and [`sim`] (an in-process simulated device).
//! - [`migration`]: the v2 state machine, the v1 protocol driver, the stream format, the
//!   save/restore/migrate engine, compatibility checks and the conformance suite.
//! - [`mod@bench`]: throughput and downtime measurements.

#![deny(missing_docs)]

pub mod bench;
pub mod device;
mod le;
pub mod mem;
pub mod migration;
pub mod pattern;
pub mod sim;
pub mod sysfs;
pub mod units;
pub mod vfio;

pub use device::{Device, DeviceHandle, DeviceSpec, OpenOptions};
