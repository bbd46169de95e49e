//! # vfio-harness
//!
//! A userspace harness that drives devices through the Linux kernel's VFIO interface:
//! open mediated devices (mdev) and vfio-pci devices through the legacy container/group
//! path or the iommufd cdev path, map their BARs and DMA, fire their interrupts, drive the
//! device-migration state machine (protocol v2, and the region-based v1) and its data stream,
//! and measure device-state save/restore throughput and downtime.
//!
//! Layers (floors), bottom up; no module imports a floor above its own (`tests/layers.rs`
//! checks it):
//! 0. [`device`]: the [`Device`] trait every back end implements, device specs, errors, and
//!    the migration state model ([`device::fsm`]) and the kernel's uAPI constants
//!    ([`device::uapi`]); with the utilities [`mem`] (page-aligned buffers and mappings),
//!    [`units`], [`pattern`] and [`entropy`].
//! 1. Back ends: [`sysfs`] (mdev parents, types and instances; PCI devices and IOMMU
//!    groups), [`vfio`] (the kernel, on top of `sysfs`) and [`sim`] (an in-process simulated
//!    device).
//! 2. [`mod@open`]: the composition root, spec to back end ([`open()`], [`open_all`]).
//! 3. [`drivers`]: test-device DMA drivers (QEMU edu, the bed's vhgpu) behind one
//!    framework, and the exercises built on them (DMA round trip, fill/CRC by DMA, interrupt
//!    loopback).
//! 4. [`migration`]: the v2 and v1 protocol drivers, the stream format, the
//!    save/restore/migrate engine (one call each, devices left RUNNING), the step-by-step
//!    sessions a VMM drives a handoff with ([`migration::session`]: pre-copy, stop-copy, the
//!    end state of its choice, groups of devices through the P2P states), compatibility
//!    checks and the conformance suite.
//! 5. [`transport`]: migration across hosts (a wire protocol over TCP or mutually
//!    authenticated TLS around the engine).
//! 6. [`mod@bench`]: throughput and downtime measurements of every path a user's transfer
//!    takes, the transport's included.
//!
//! The `vfio-harness` command (`src/cli/`) sits on top and is not part of the library.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use vfio_harness::{Device, OpenOptions};
//!
//! let dev = vfio_harness::open(&"sim:state=64K".parse()?, &OpenOptions::default())?;
//! println!("{}: {} regions", dev.name(), dev.info().regions.len());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

pub mod bench;
pub mod device;
pub mod drivers;
pub mod entropy;
mod le;
pub mod mem;
pub mod migration;
pub mod open;
pub mod pattern;
pub mod sim;
pub mod sysfs;
pub mod transport;
pub mod units;
pub mod vfio;

pub use device::{Device, DeviceHandle, DeviceSpec, OpenOptions};
pub use open::{open, open_all};
