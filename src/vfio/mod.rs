//! The kernel back end: VFIO container/group (legacy) and iommufd/cdev, device fds,
//! regions, DMA, interrupts, DMA dirty logging ([`dirty`]) and the KVM-VFIO association.
//!
//! [`open_devices`] opens every device of one call into one shared [`VfioContext`] (one
//! container, or one iommufd IOAS), optionally registered with a KVM-VFIO pseudo device as a
//! VMM would. Each device is a [`KernelDevice`] implementing [`crate::device::Device`];
//! back-end specifics (DMA mapping, IOVA ranges, the KVM note) are reached by downcasting
//! through [`crate::device::Device::as_any`].
//!
//! ## In a VMM
//!
//! A VMM already owns its VFIO objects, its VM and its guest memory, and hands them in:
//! - its container or iommufd as a context: [`VfioContext::from_container`],
//!   [`VfioContext::from_iommufd`];
//! - its devices: [`KernelDevice::from_vfio_device`] (a `vfio_ioctls::VfioDevice`) or
//!   [`KernelDevice::from_device_fd`] (a bare device fd), described by the device itself
//!   (flags, regions, IRQs queried from its fd);
//! - its VM: [`KvmVfioDevice::create`] on its `VmFd` (or [`KvmVfioDevice::from_handle`] on
//!   the KVM-VFIO device it already has), then [`VfioContext::create`] so that the devices
//!   opened here ([`VfioContext::open_device`]) are registered with that VM, or
//!   [`KvmVfioDevice::add_device`] for a device opened without;
//!   or, through the composition root, [`crate::device::OpenOptions::kvm_device`] (its
//!   [`KvmVfioDevice::handle`]): `open` then registers what it opens with that VM;
//! - its guest memory: [`VfioContext::map_guest_memory`] maps every region of a
//!   `GuestMemoryMmap` for device DMA (IOVA = guest address, or an [`IovaLayout`]), unmapped
//!   by [`GuestMemoryDma::unmap`] or on drop.
//!
//! `examples/vmm_adopt.rs` does all of it as a VMM would.

mod adopt;
mod caps;
mod context;
mod debug;
mod device;
pub mod dirty;
pub mod dma;
pub mod dma_timing;
mod guest_dma_error;
mod guest_memory;
pub(crate) mod ioctl;
pub mod irq;
mod kvm;
mod mig_calls;
pub mod pci;
pub mod pci_config;
pub mod region;

pub use adopt::AdoptOptions;
pub use caps::ChainError;
pub use context::{IommuKind, VfioContext};
pub use device::KernelDevice;
pub use guest_dma_error::GuestDmaError;
pub use guest_memory::{plan_guest_dma, GuestMemoryDma, GuestRegionDma, IovaLayout};
pub use ioctl::IovaRange;
pub use kvm::KvmVfioDevice;

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::device::{DeviceError, DeviceHandle, DeviceSpec, IommuBackend, OpenOptions, Result};
use crate::sysfs::{device as sysdev, SysfsRoot};

/// Opens kernel devices, sharing one IOMMU context among them.
///
/// With [`IommuBackend::Auto`], when iommufd was chosen but refuses to open (its context or
/// a device's cdev bind/attach fails), the devices are opened through the legacy container
/// instead and [`VfioContext::iommu_fallback`] records why. A legacy attempt that fails too
/// returns the iommufd error, unless the legacy one is the more precise
/// [`DeviceError::GroupNotViable`].
pub fn open_devices(specs: &[&DeviceSpec], opts: &OpenOptions) -> Result<Vec<DeviceHandle>> {
    let root = SysfsRoot::from_option(opts.sysfs_root.as_deref());
    let mut nodes = Vec::with_capacity(specs.len());
    for s in specs {
        nodes.push(sysdev::resolve(&root, s)?);
    }
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let kind = choose_backend(opts.iommu, &nodes);
    match open_with(kind, &nodes, opts, &root, None) {
        Err(e @ DeviceError::Open { .. })
            if opts.iommu == IommuBackend::Auto && kind == IommuKind::Iommufd =>
        {
            let note = format!("iommufd failed ({e}); opened through the legacy container");
            match open_with(IommuKind::Legacy, &nodes, opts, &root, Some(note)) {
                Ok(devs) => Ok(devs),
                Err(l @ DeviceError::GroupNotViable { .. }) => Err(l),
                Err(_) => Err(e),
            }
        }
        r => r,
    }
}

/// Opens `nodes` through `kind` into one new context (`fallback`: why this is not the
/// interface first chosen).
fn open_with(
    kind: IommuKind,
    nodes: &[std::path::PathBuf],
    opts: &OpenOptions,
    root: &SysfsRoot,
    fallback: Option<String>,
) -> Result<Vec<DeviceHandle>> {
    let first = sysdev::device_name(&nodes[0]);
    for n in nodes {
        precheck(n, kind)?;
    }
    let ctx = match &opts.kvm_device {
        Some(handle) => {
            let kvm = KvmVfioDevice::from_handle(Arc::clone(handle))?;
            VfioContext::with_kvm_device(kind, &kvm, &first)?
        }
        None => VfioContext::new(kind, opts.kvm, &first)?,
    };
    let ctx = Arc::new(ctx.with_fallback(fallback));
    let mut out: Vec<DeviceHandle> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let d = KernelDevice::open(n, Arc::clone(&ctx), root)?;
        out.push(Arc::new(d));
    }
    Ok(out)
}

/// Picks the IOMMU interface: `auto` takes iommufd when `/dev/iommu` exists and every
/// device has a VFIO cdev (`vfio-dev/`), else legacy.
pub fn choose_backend(want: IommuBackend, nodes: &[std::path::PathBuf]) -> IommuKind {
    match want {
        IommuBackend::Legacy => IommuKind::Legacy,
        IommuBackend::Iommufd => IommuKind::Iommufd,
        IommuBackend::Auto => {
            if Path::new("/dev/iommu").exists()
                && nodes.iter().all(|n| sysdev::cdev_name(n).is_some())
            {
                IommuKind::Iommufd
            } else {
                IommuKind::Legacy
            }
        }
    }
}

/// An open failure; `detail` is what a pre-check found (empty: nothing beyond the errno).
fn open_err(device: &str, what: String, source: io::Error, detail: &str) -> DeviceError {
    DeviceError::Open {
        device: device.to_string(),
        what,
        source,
        detail: (!detail.is_empty()).then(|| detail.to_string()),
    }
}

/// Checks what the kernel needs before vfio-ioctls opens the device, so that the common
/// failures come with a precise message instead of a bare errno.
fn precheck(node: &Path, kind: IommuKind) -> Result<()> {
    let name = sysdev::device_name(node);
    let is_mdev = node.join("mdev_type").exists();
    let bind_hint = if is_mdev {
        "the mdev must be bound to vfio_mdev (its vendor driver's VFIO interface)"
    } else {
        "bind the device to vfio-pci (echo VENDOR DEVICE > /sys/bus/pci/drivers/vfio-pci/new_id, or driver_override)"
    };
    let drv = sysdev::driver(node);
    match kind {
        IommuKind::Legacy => {
            if !Path::new("/dev/vfio/vfio").exists() {
                return Err(open_err(
                    &name,
                    "open /dev/vfio/vfio".into(),
                    io::Error::from_raw_os_error(libc::ENOENT),
                    "no /dev/vfio/vfio: load the vfio modules (modprobe vfio-pci vfio_iommu_type1), or use --iommu iommufd",
                ));
            }
            let group = sysdev::iommu_group(node).ok_or_else(|| {
                open_err(
                    &name,
                    "find the IOMMU group".into(),
                    io::Error::from_raw_os_error(libc::ENOENT),
                    "the device has no iommu_group: enable an IOMMU (intel_iommu=on / amd_iommu=on) or create the mdev first",
                )
            })?;
            let gpath = format!("/dev/vfio/{group}");
            if !Path::new(&gpath).exists() {
                return Err(open_err(
                    &name,
                    format!("open {gpath}"),
                    io::Error::from_raw_os_error(libc::ENOENT),
                    &format!(
                        "no group file: {bind_hint} (currently bound to {})",
                        drv.as_deref().unwrap_or("no driver")
                    ),
                ));
            }
            // Viability itself is the kernel's call (VFIO_GROUP_GET_STATUS); a refusal is
            // explained with the members still bound to host drivers (KernelDevice::open).
        }
        IommuKind::Iommufd => {
            if !Path::new("/dev/iommu").exists() {
                return Err(open_err(
                    &name,
                    "open /dev/iommu".into(),
                    io::Error::from_raw_os_error(libc::ENOENT),
                    "no /dev/iommu: the kernel lacks CONFIG_IOMMUFD (or the module is not loaded); use --iommu legacy",
                ));
            }
            let cdev = sysdev::cdev_name(node).ok_or_else(|| {
                open_err(
                    &name,
                    "find the VFIO cdev (vfio-dev/)".into(),
                    io::Error::from_raw_os_error(libc::ENOENT),
                    &format!(
                        "no cdev: {bind_hint}, on a kernel with CONFIG_VFIO_DEVICE_CDEV (currently bound to {})",
                        drv.as_deref().unwrap_or("no driver")
                    ),
                )
            })?;
            let p = format!("/dev/vfio/devices/{cdev}");
            if !Path::new(&p).exists() {
                return Err(open_err(
                    &name,
                    format!("open {p}"),
                    io::Error::from_raw_os_error(libc::ENOENT),
                    "the cdev node is missing: is devtmpfs mounted on /dev?",
                ));
            }
        }
    }
    Ok(())
}

/// The errno behind a vfio-ioctls error (walking its source chain), as an `io::Error`.
pub(crate) fn vfio_io_error(e: &vfio_ioctls::VfioError) -> io::Error {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(s) = c.downcast_ref::<vmm_sys_util::errno::Error>() {
            return io::Error::from_raw_os_error(s.errno());
        }
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return match io.raw_os_error() {
                Some(n) => io::Error::from_raw_os_error(n),
                None => io::Error::new(io.kind(), io.to_string()),
            };
        }
        cur = c.source();
    }
    match e {
        vfio_ioctls::VfioError::NoMigrationDataFd => {
            io::Error::other("no migration data stream is open (enter a streaming state first)")
        }
        _ => io::Error::other(e.to_string()),
    }
}
