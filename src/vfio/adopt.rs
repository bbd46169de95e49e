//! Taking the objects a VMM already owns: its `vfio_ioctls::VfioDevice` or a bare device
//! fd as a [`KernelDevice`], its `VfioContainer` or `VfioIommufd` as a [`VfioContext`], and
//! contexts made here but registered with the VMM's own KVM-VFIO device.
//!
//! Whatever is handed in, the device's flags, regions and IRQs are queried from its fd with
//! the crate's own ioctls ([`super::ioctl::DeviceFd`]), exactly as for a device the crate
//! opened itself.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vfio_ioctls::{VfioContainer, VfioDevice, VfioIommufd, VfioOps};

use super::context::{Iommu, IommuKind, VfioContext};
use super::device::{dup_fd, KernelDevice};
use super::ioctl::DeviceFd;
use super::kvm::{KvmVfio, KvmVfioDevice};
use super::mig_calls::{MigCalls, OwnMig};
use super::{open_err, precheck};
use crate::device::{DeviceError, DeviceSpec, Result};
use crate::sysfs::{device as sysdev, SysfsRoot};

/// What to call an adopted device and where its sysfs node is (both optional).
///
/// A `VfioDevice` does not say where it came from, so the sysfs node, when given, is what
/// fills the identity (driver, mdev type and parent, device API) and the IOMMU group; the
/// name is used in every message (default: the node's last component, else the fd).
///
/// # Example
///
/// ```
/// use vfio_harness::vfio::AdoptOptions;
///
/// let opts = AdoptOptions::new()
///     .name("gpu0")
///     .sysfs_path("/sys/bus/pci/devices/0000:00:03.0");
/// assert_eq!(opts.get_name(), Some("gpu0"));
/// assert_eq!(
///     opts.get_sysfs_path(),
///     Some(std::path::Path::new("/sys/bus/pci/devices/0000:00:03.0"))
/// );
/// ```
#[derive(Clone, Debug, Default)]
pub struct AdoptOptions {
    name: Option<String>,
    sysfs_path: Option<PathBuf>,
}

impl AdoptOptions {
    /// No name, no sysfs node.
    ///
    /// # Example
    ///
    /// ```
    /// let opts = vfio_harness::vfio::AdoptOptions::new();
    /// assert!(opts.get_name().is_none() && opts.get_sysfs_path().is_none());
    /// ```
    pub fn new() -> AdoptOptions {
        AdoptOptions::default()
    }

    /// The name used in messages and in [`crate::device::DeviceInfo::name`].
    ///
    /// # Example
    ///
    /// ```
    /// let opts = vfio_harness::vfio::AdoptOptions::new().name("nic1");
    /// assert_eq!(opts.get_name(), Some("nic1"));
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> AdoptOptions {
        self.name = Some(name.into());
        self
    }

    /// The device's sysfs node (`/sys/bus/pci/devices/...`, `/sys/bus/mdev/devices/<uuid>`).
    ///
    /// # Example
    ///
    /// ```
    /// let opts = vfio_harness::vfio::AdoptOptions::new()
    ///     .sysfs_path("/sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001");
    /// assert!(opts.get_sysfs_path().is_some());
    /// ```
    pub fn sysfs_path(mut self, path: impl Into<PathBuf>) -> AdoptOptions {
        self.sysfs_path = Some(path.into());
        self
    }

    /// The name set with [`AdoptOptions::name`].
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vfio_harness::vfio::AdoptOptions::new().get_name(), None);
    /// ```
    pub fn get_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The node set with [`AdoptOptions::sysfs_path`].
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vfio_harness::vfio::AdoptOptions::new().get_sysfs_path(), None);
    /// ```
    pub fn get_sysfs_path(&self) -> Option<&Path> {
        self.sysfs_path.as_deref()
    }

    /// The name: given, else the node's last component, else `fallback`.
    fn resolve_name(&self, fallback: impl FnOnce() -> String) -> String {
        match (&self.name, &self.sysfs_path) {
            (Some(n), _) => n.clone(),
            (None, Some(p)) => sysdev::device_name(p),
            (None, None) => fallback(),
        }
    }
}

impl VfioContext {
    /// A context over the VMM's legacy container (type1). DMA mappings made through the
    /// context ([`VfioContext::dma_map`], [`VfioContext::map_guest_memory`]) land in that
    /// container, next to the VMM's own. KVM registration is whatever the container was
    /// created with (`VfioContainer::new(Some(handle))` registers every group opened in it);
    /// [`VfioContext::kvm_registered`] reports `false` because this crate did not do it,
    /// and [`VfioContext::kvm_note`] says so.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::path::Path;
    /// use std::sync::Arc;
    /// use vfio_harness::vfio::{AdoptOptions, KernelDevice, VfioContext};
    ///
    /// // The VMM's own objects (needs /dev/vfio/vfio and a device bound to vfio-pci).
    /// let container = Arc::new(vfio_ioctls::VfioContainer::new(None)?);
    /// let node = Path::new("/sys/bus/pci/devices/0000:00:03.0");
    /// let dev = Arc::new(vfio_ioctls::VfioDevice::new(node, container.clone(), true)?);
    ///
    /// let ctx = Arc::new(VfioContext::from_container(container));
    /// let kd = KernelDevice::from_vfio_device(dev, ctx, &AdoptOptions::new().sysfs_path(node))?;
    /// # drop(kd);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_container(container: Arc<VfioContainer>) -> VfioContext {
        VfioContext::from_parts(Iommu::Legacy(container), None, adopted_note())
    }

    /// A context over the VMM's iommufd and IOAS (`VfioIommufd`). As with
    /// [`VfioContext::from_container`], DMA goes into that IOAS and the KVM registration is
    /// the `VfioIommufd`'s own.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use vfio_harness::vfio::{AdoptOptions, KernelDevice, VfioContext};
    ///
    /// // The VMM's own objects (needs /dev/iommu and a VFIO cdev).
    /// let iommufd = Arc::new(iommufd_ioctls::IommuFd::new()?);
    /// let vfio_iommufd = Arc::new(vfio_ioctls::VfioIommufd::new(iommufd, None, None)?);
    /// let cdev = std::fs::OpenOptions::new()
    ///     .read(true)
    ///     .write(true)
    ///     .open("/dev/vfio/devices/vfio0")?;
    /// let dev = vfio_ioctls::VfioDevice::new_from_fd(cdev, vfio_iommufd.clone(), true)?;
    ///
    /// let ctx = Arc::new(VfioContext::from_iommufd(vfio_iommufd));
    /// let kd = KernelDevice::from_vfio_device(dev, ctx, &AdoptOptions::new())?;
    /// # drop(kd);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_iommufd(iommufd: Arc<VfioIommufd>) -> VfioContext {
        VfioContext::from_parts(Iommu::Iommufd(iommufd), None, adopted_note())
    }

    /// Creates a container (`IommuKind::Legacy`, type1) or an iommufd with one IOAS
    /// (`IommuKind::Iommufd`) whose devices are registered with the caller's KVM-VFIO device
    /// (the VMM's VM) instead of a private one; `None` registers nowhere. Open devices in it
    /// with [`VfioContext::open_device`], or with vfio-ioctls through
    /// [`VfioContext::vfio_ops`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use vfio_harness::vfio::{IommuKind, KvmVfioDevice, VfioContext};
    ///
    /// let vm = kvm_ioctls::Kvm::new()?.create_vm()?; // the VMM's VM
    /// let kvm_vfio = KvmVfioDevice::create(&vm)?;
    /// // Needs /dev/vfio/vfio:
    /// let ctx = Arc::new(VfioContext::create(IommuKind::Legacy, Some(&kvm_vfio))?);
    /// assert!(ctx.kvm_registered());
    /// let dev = ctx.open_device(&"0000:00:03.0".parse()?)?;
    /// # drop(dev);
    /// # Ok(())
    /// # }
    /// ```
    pub fn create(kind: IommuKind, kvm: Option<&KvmVfioDevice>) -> Result<VfioContext> {
        let (kvm, note) = match kvm {
            Some(k) => (
                Some(KvmVfio::of(k)),
                super::context::CALLERS_KVM_NOTE.to_string(),
            ),
            None => (None, "no KVM-VFIO device given".to_string()),
        };
        VfioContext::build(kind, kvm, note, kind.as_str())
    }

    /// Opens a kernel device (mdev UUID, PCI address, sysfs node or cdev, as in
    /// [`DeviceSpec`]) into this context: its group joins the container, or its cdev is bound
    /// to the iommufd and attached to the IOAS, and it is registered with the context's
    /// KVM-VFIO device if any. The same checks and messages as the crate's own `open`.
    ///
    /// # Example
    ///
    /// See [`VfioContext::create`].
    pub fn open_device(self: &Arc<Self>, spec: &DeviceSpec) -> Result<KernelDevice> {
        if spec.is_sim() {
            return Err(DeviceError::InvalidArgument(format!(
                "{spec}: the simulator has no VFIO device to open into a kernel context"
            )));
        }
        let root = SysfsRoot::from_option(None);
        let node = sysdev::resolve(&root, spec)?;
        precheck(&node, self.kind())?;
        KernelDevice::open(&node, Arc::clone(self), &root)
    }

    /// The container or iommufd as vfio-ioctls' `VfioOps`, to open devices with
    /// `VfioDevice::new(path, ctx.vfio_ops(), true)` in a context made here.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::path::Path;
    /// use std::sync::Arc;
    /// use vfio_harness::vfio::{AdoptOptions, IommuKind, KernelDevice, VfioContext};
    ///
    /// let ctx = Arc::new(VfioContext::create(IommuKind::Legacy, None)?);
    /// let node = Path::new("/sys/bus/pci/devices/0000:00:03.0");
    /// let dev = vfio_ioctls::VfioDevice::new(node, ctx.vfio_ops(), true)?;
    /// let kd = KernelDevice::from_vfio_device(dev, ctx, &AdoptOptions::new())?;
    /// # drop(kd);
    /// # Ok(())
    /// # }
    /// ```
    pub fn vfio_ops(&self) -> Arc<dyn VfioOps> {
        self.ops()
    }

    /// The legacy container, when this context is one.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use vfio_harness::vfio::{IommuKind, VfioContext};
    /// let ctx = VfioContext::create(IommuKind::Legacy, None)?;
    /// assert!(ctx.container().is_some() && ctx.iommufd().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn container(&self) -> Option<&Arc<VfioContainer>> {
        match self.iommu() {
            Iommu::Legacy(c) => Some(c),
            Iommu::Iommufd(_) => None,
        }
    }

    /// The iommufd and IOAS, when this context is one.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use vfio_harness::vfio::{IommuKind, VfioContext};
    /// let ctx = VfioContext::create(IommuKind::Iommufd, None)?;
    /// let ioas = ctx.iommufd().map(|i| i.ioas().id());
    /// # drop(ioas);
    /// # Ok(())
    /// # }
    /// ```
    pub fn iommufd(&self) -> Option<&Arc<VfioIommufd>> {
        match self.iommu() {
            Iommu::Iommufd(i) => Some(i),
            Iommu::Legacy(_) => None,
        }
    }
}

fn adopted_note() -> String {
    "KVM registration is the caller's (made by its container or iommufd if created with a KVM-VFIO handle)"
        .to_string()
}

impl KernelDevice {
    /// The VMM's `VfioDevice` (owned, or an `Arc` the VMM keeps a clone of) as a
    /// [`crate::device::Device`]. `ctx` must be the context of
    /// the container or iommufd the device was opened through ([`VfioContext::from_container`],
    /// [`VfioContext::from_iommufd`], or a context made here); a device bound to an iommufd
    /// in a legacy context is refused.
    ///
    /// The device's flags, regions (with their capability chains) and IRQs are queried from
    /// its fd, not taken from vfio-ioctls (whose region table drops failed indexes). Region
    /// I/O, mmap, IRQs and reset use a duplicate of the device fd (the same open file);
    /// migration calls go through the `VfioDevice`, so the VMM and this crate share one
    /// migration data stream. The duplicate is closed when this is dropped, before this
    /// `Arc` of the `VfioDevice`, so that the last one can release the group (the other way
    /// round when the kernel has begun removing the device: see [`KernelDevice`]). Put it in
    /// an `Arc` to use it as a [`crate::device::DeviceHandle`] with the rest of the library
    /// (migration, DMA drivers).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::path::Path;
    /// use std::sync::Arc;
    /// use vfio_harness::device::Device;
    /// use vfio_harness::vfio::{AdoptOptions, KernelDevice, VfioContext};
    ///
    /// let container = Arc::new(vfio_ioctls::VfioContainer::new(None)?);
    /// let node = Path::new("/sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001");
    /// let dev = Arc::new(vfio_ioctls::VfioDevice::new(node, container.clone(), true)?);
    ///
    /// let ctx = Arc::new(VfioContext::from_container(container));
    /// let kd = KernelDevice::from_vfio_device(
    ///     Arc::clone(&dev),
    ///     ctx,
    ///     &AdoptOptions::new().sysfs_path(node),
    /// )?;
    /// for r in &kd.info().regions {
    ///     println!("region {} {} size {:#x}", r.index, r.name, r.size);
    /// }
    /// println!("migration: {:?}", kd.migration_flags()?);
    ///
    /// // The library's device handle (the VMM keeps `dev` and `kd.context()` for itself).
    /// let handle: vfio_harness::device::DeviceHandle = Arc::new(kd);
    /// # drop(handle);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_vfio_device(
        dev: impl Into<Arc<VfioDevice>>,
        ctx: Arc<VfioContext>,
        opts: &AdoptOptions,
    ) -> Result<KernelDevice> {
        let dev: Arc<VfioDevice> = dev.into();
        let name = opts.resolve_name(|| format!("vfio device (fd {})", dev.as_raw_fd()));
        if dev.iommufd_dev_id().is_some() && ctx.kind() == IommuKind::Legacy {
            return Err(DeviceError::InvalidArgument(format!(
                "{name}: the device is bound to an iommufd (device id {}), but the context is a legacy container: use VfioContext::from_iommufd with the VfioIommufd it was opened through",
                dev.iommufd_dev_id().unwrap_or_default()
            )));
        }
        let fd = dup_fd(dev.as_ref(), &name)?;
        check_device_fd(&fd, &name)?;
        let node = opts.sysfs_path.clone();
        let group = node.as_deref().and_then(sysdev::iommu_group);
        KernelDevice::assemble(fd, MigCalls::Vfio(dev), ctx, name, node, group)
    }

    /// A bare VFIO device fd as a [`crate::device::Device`]: one the VMM got from
    /// `VFIO_GROUP_GET_DEVICE_FD` on a group in its container, or a cdev it bound to its
    /// iommufd and attached to an IOAS. The fd is owned from now on (pass a `try_clone` to
    /// keep yours) and closed on drop; for a legacy device, drop this before the group leaves
    /// its container. `ctx` is the context of that container or iommufd (used for DMA).
    ///
    /// Flags, regions and IRQs are queried from the fd; migration calls are issued on it
    /// directly (`VFIO_DEVICE_FEATURE`, `VFIO_MIG_GET_PRECOPY_INFO`). A fd that is not a
    /// usable VFIO device is refused up front with the kernel's errno (`ENOTTY`: not a VFIO
    /// device; `EINVAL` on a cdev: not bound to an iommufd yet).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// use std::sync::Arc;
    /// use vfio_harness::vfio::{AdoptOptions, KernelDevice, VfioContext};
    ///
    /// // A VMM that keeps its VfioDevice and hands in a second fd of the same device:
    /// let container = Arc::new(vfio_ioctls::VfioContainer::new(None)?);
    /// let node = std::path::Path::new("/sys/bus/pci/devices/0000:00:03.0");
    /// let dev = vfio_ioctls::VfioDevice::new(node, container.clone(), true)?;
    /// // SAFETY: dup returns a fresh fd that nothing else owns.
    /// let fd = unsafe { OwnedFd::from_raw_fd(libc::dup(dev.as_raw_fd())) };
    ///
    /// let ctx = Arc::new(VfioContext::from_container(container));
    /// let kd = KernelDevice::from_device_fd(fd, ctx, &AdoptOptions::new().sysfs_path(node))?;
    /// # drop(kd);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_device_fd(
        fd: OwnedFd,
        ctx: Arc<VfioContext>,
        opts: &AdoptOptions,
    ) -> Result<KernelDevice> {
        let name = opts.resolve_name(|| format!("vfio device (fd {})", fd.as_raw_fd()));
        check_device_fd(&fd, &name)?;
        let node = opts.sysfs_path.clone();
        let group = node.as_deref().and_then(sysdev::iommu_group);
        let mig = MigCalls::Own(OwnMig::new());
        KernelDevice::assemble(std::fs::File::from(fd), mig, ctx, name, node, group)
    }
}

/// Refuses, with the kernel's errno and a hint, a fd on which `VFIO_DEVICE_GET_INFO` fails.
fn check_device_fd(fd: &impl AsFd, name: &str) -> Result<()> {
    match DeviceFd::new(fd.as_fd()).info() {
        Ok(_) => Ok(()),
        Err(source) => {
            let hint = match source.raw_os_error() {
                Some(libc::ENOTTY) => {
                    "not a VFIO device fd (a group or container fd is not one: get the device fd with VFIO_GROUP_GET_DEVICE_FD, or open /dev/vfio/devices/vfioN and bind it to an iommufd)"
                }
                Some(libc::EINVAL) => {
                    "a VFIO cdev answers EINVAL until it is bound to an iommufd (VFIO_DEVICE_BIND_IOMMUFD)"
                }
                _ => "",
            };
            Err(open_err(
                name,
                "query the device fd (VFIO_DEVICE_GET_INFO)".into(),
                source,
                hint,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fd_that_is_not_a_vfio_device_is_refused_with_enotty() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let e = check_device_fd(&null, "x").unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOTTY), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("VFIO_DEVICE_GET_INFO"), "{msg}");
        assert!(msg.contains("not a VFIO device fd"), "{msg}");
    }

    #[test]
    fn the_vmm_facing_types_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<KernelDevice>();
        send_sync::<VfioContext>();
        send_sync::<KvmVfioDevice>();
        send_sync::<crate::vfio::GuestMemoryDma>();
        send_sync::<crate::vfio::IovaLayout>();
        send_sync::<crate::vfio::GuestDmaError>();
    }

    #[test]
    fn names_come_from_the_options_the_node_or_the_fallback() {
        let o = AdoptOptions::new();
        assert_eq!(o.resolve_name(|| "fd 7".into()), "fd 7");
        let o = o.sysfs_path("/sys/bus/pci/devices/0000:00:03.0");
        assert_eq!(o.resolve_name(|| unreachable!()), "0000:00:03.0");
        let o = o.name("gpu0");
        assert_eq!(o.resolve_name(|| unreachable!()), "gpu0");
    }
}
