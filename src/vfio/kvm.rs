//! The KVM-VFIO pseudo device: groups and cdevs are registered with it as a VMM does, for
//! vendor drivers that insist on a KVM (some vGPU drivers refuse to open without one).
//!
//! Proven in the bed (TCG's `-cpu max` offers SVM, so the guest has `/dev/kvm` beside VFIO):
//! groups and cdevs of mtty and edu registered with a real VM's KVM-VFIO device, and DMA and
//! migration working with them registered (`kernel-kvm`). Not shown: a vendor driver that
//! uses the KVM pointer, or a device assigned to a guest that runs (`hw-notes/devices.md`).
//!
//! [`KvmVfioDevice`] is the pseudo device of a VM the caller owns (a VMM's `VmFd`), or the
//! one a VMM already created; the private `KvmVfio` is the throwaway VM that
//! [`crate::device::OpenOptions::kvm`] asks for when nobody hands one in.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_VFIO, KVM_DEV_VFIO_FILE,
    KVM_DEV_VFIO_FILE_ADD, KVM_DEV_VFIO_FILE_DEL,
};
use kvm_ioctls::{DeviceFd as KvmDeviceFd, Kvm, VmFd};
use vfio_ioctls::VfioDeviceFd;

use super::vfio_io_error;
use crate::device::{errno_hint, DeviceError, Result};

/// A throwaway VM and its KVM-VFIO device (or, without a VM, the caller's device). The VM
/// fd is kept so that the device's VM lives as long as the context.
pub(crate) struct KvmVfio {
    _vm: Option<VmFd>,
    /// The pseudo device, handed to vfio-ioctls as the container's device handle.
    pub(crate) device: Arc<VfioDeviceFd>,
}

impl KvmVfio {
    /// Creates the VM and the pseudo device, or says why not.
    pub(crate) fn create() -> std::result::Result<KvmVfio, String> {
        if !Path::new("/dev/kvm").exists() {
            return Err("no /dev/kvm: devices are not registered with KVM".into());
        }
        let kvm = Kvm::new().map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
        let vm = kvm
            .create_vm()
            .map_err(|e| format!("cannot create a KVM VM: {e}"))?;
        let mut dev = kvm_create_device {
            type_: kvm_device_type_KVM_DEV_TYPE_VFIO,
            fd: 0,
            flags: 0,
        };
        let fd = vm
            .create_device(&mut dev)
            .map_err(|e| format!("cannot create the KVM-VFIO device: {e}"))?;
        Ok(KvmVfio {
            _vm: Some(vm),
            device: Arc::new(VfioDeviceFd::new_from_kvm(fd)),
        })
    }

    /// The caller's pseudo device (its VM is the caller's to keep alive).
    pub(crate) fn of(device: &KvmVfioDevice) -> KvmVfio {
        KvmVfio {
            _vm: None,
            device: device.handle(),
        }
    }
}

/// The KVM-VFIO pseudo device (`KVM_DEV_TYPE_VFIO`) of a VM the caller owns: the device
/// through which KVM learns which VFIO groups and device cdevs its guest uses (for cache
/// coherency, and for vendor drivers that need the KVM, such as vGPU drivers that refuse to
/// open without one).
///
/// Two ways to get one: [`KvmVfioDevice::create`] on the VMM's own `VmFd`, or
/// [`KvmVfioDevice::from_handle`] on the `Arc<VfioDeviceFd>` the VMM already created and
/// gave to vfio-ioctls. Then either
/// - hand [`KvmVfioDevice::handle`] to `vfio_ioctls::VfioContainer::new` /
///   `VfioIommufd::new` (vfio-ioctls registers every group or cdev opened through them), or
///   pass the device to [`super::VfioContext::create`] so that the devices this crate opens
///   are registered with the VMM's VM, not with a private one; or
/// - register files yourself with [`KvmVfioDevice::add_file`] /
///   [`KvmVfioDevice::add_device`].
///
/// Drivers read the KVM when a device is opened (a group's device fd) or bound to an
/// iommufd (a cdev), so register *before* that point; a registration added afterwards is
/// recorded by KVM (coherency, assignment count) but not seen by the driver.
///
/// # Example
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # if !std::path::Path::new("/dev/kvm").exists() { return Ok(()); }
/// use vfio_harness::vfio::KvmVfioDevice;
///
/// // The VMM's own VM.
/// let kvm = kvm_ioctls::Kvm::new()?;
/// let vm = kvm.create_vm()?;
///
/// let kvm_vfio = KvmVfioDevice::create(&vm)?;
/// // The handle vfio-ioctls takes: VfioContainer::new(Some(kvm_vfio.handle())).
/// let _handle = kvm_vfio.handle();
///
/// // KVM itself refuses what is not a VFIO group or device file.
/// let not_vfio = std::fs::File::open("/dev/null")?;
/// let err = kvm_vfio.add_file(std::os::fd::AsFd::as_fd(&not_vfio)).unwrap_err();
/// assert_eq!(err.errno(), Some(libc::EINVAL));
/// # Ok(())
/// # }
/// ```
pub struct KvmVfioDevice {
    handle: Arc<VfioDeviceFd>,
    /// A duplicate of the handle's fd, for the attribute calls (vfio-ioctls does not lend
    /// the fd of a `VfioDeviceFd` out).
    fd: KvmDeviceFd,
}

impl KvmVfioDevice {
    /// Creates the KVM-VFIO pseudo device on the caller's VM (`KVM_CREATE_DEVICE` with
    /// `KVM_DEV_TYPE_VFIO`). KVM allows one per VM: a second call on the same VM fails with
    /// `EBUSY`; reuse the first device ([`KvmVfioDevice::from_handle`]) instead.
    ///
    /// # Example
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # if !std::path::Path::new("/dev/kvm").exists() { return Ok(()); }
    /// let vm = kvm_ioctls::Kvm::new()?.create_vm()?;
    /// let kvm_vfio = vfio_harness::vfio::KvmVfioDevice::create(&vm)?;
    /// println!("{kvm_vfio:?}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn create(vm: &VmFd) -> Result<KvmVfioDevice> {
        let mut dev = kvm_create_device {
            type_: kvm_device_type_KVM_DEV_TYPE_VFIO,
            fd: 0,
            flags: 0,
        };
        let fd = vm.create_device(&mut dev).map_err(|e| {
            let source = io::Error::from_raw_os_error(e.errno());
            let hint = match e.errno() {
                libc::EBUSY => {
                    "the VM already has its KVM-VFIO device (one per VM): use KvmVfioDevice::from_handle on it"
                }
                libc::ENODEV => "the kernel lacks CONFIG_KVM_VFIO",
                n => errno_hint(Some(n)),
            };
            DeviceError::Open {
                device: "KVM-VFIO".into(),
                what: "create the KVM-VFIO device (KVM_CREATE_DEVICE)".into(),
                source,
                detail: Some(hint.into()),
            }
        })?;
        KvmVfioDevice::from_handle(Arc::new(VfioDeviceFd::new_from_kvm(fd)))
    }

    /// Takes the KVM-VFIO device a VMM already created (the `Arc<VfioDeviceFd>` it gives to
    /// vfio-ioctls). Refused when the handle is not a KVM device (an MSHV one), or when the
    /// KVM device it holds is not a KVM-VFIO device (`KVM_HAS_DEVICE_ATTR` of
    /// `KVM_DEV_VFIO_FILE_ADD` fails; the errno is kept).
    ///
    /// # Example
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # if !std::path::Path::new("/dev/kvm").exists() { return Ok(()); }
    /// use std::sync::Arc;
    /// use vfio_harness::vfio::KvmVfioDevice;
    ///
    /// // What a VMM built on vfio-ioctls already has:
    /// let vm = kvm_ioctls::Kvm::new()?.create_vm()?;
    /// let mut cd = kvm_bindings::kvm_create_device {
    ///     type_: kvm_bindings::kvm_device_type_KVM_DEV_TYPE_VFIO,
    ///     fd: 0,
    ///     flags: 0,
    /// };
    /// let handle = Arc::new(vfio_ioctls::VfioDeviceFd::new_from_kvm(vm.create_device(&mut cd)?));
    ///
    /// let kvm_vfio = KvmVfioDevice::from_handle(Arc::clone(&handle))?;
    /// assert!(Arc::ptr_eq(&kvm_vfio.handle(), &handle));
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_handle(handle: Arc<VfioDeviceFd>) -> Result<KvmVfioDevice> {
        let open_err = |what: &str, source: io::Error, hint: &str| DeviceError::Open {
            device: "KVM-VFIO".into(),
            what: what.into(),
            source,
            detail: Some(hint.into()),
        };
        let fd = handle.try_clone().and_then(|h| h.to_kvm()).map_err(|e| {
            let source = vfio_io_error(&e);
            open_err(
                &format!("take the KVM device of the handle ({e})"),
                source,
                "the handle must come from VfioDeviceFd::new_from_kvm",
            )
        })?;
        let probe = file_attr(KVM_DEV_VFIO_FILE_ADD, &0);
        fd.has_device_attr(&probe).map_err(|e| {
            open_err(
                "check the handle is a KVM-VFIO device (KVM_HAS_DEVICE_ATTR)",
                io::Error::from_raw_os_error(e.errno()),
                "the KVM device is not of type KVM_DEV_TYPE_VFIO",
            )
        })?;
        Ok(KvmVfioDevice { handle, fd })
    }

    /// The handle vfio-ioctls takes (`VfioContainer::new(Some(..))`,
    /// `VfioIommufd::new(.., .., Some(..))`): it then registers every group or cdev opened
    /// through that container or iommufd.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let vm = kvm_ioctls::Kvm::new()?.create_vm()?;
    /// let kvm_vfio = vfio_harness::vfio::KvmVfioDevice::create(&vm)?;
    /// // Needs /dev/vfio/vfio:
    /// let container = vfio_ioctls::VfioContainer::new(Some(kvm_vfio.handle()))?;
    /// # drop(container);
    /// # Ok(())
    /// # }
    /// ```
    pub fn handle(&self) -> Arc<VfioDeviceFd> {
        Arc::clone(&self.handle)
    }

    /// Registers a VFIO group fd or a VFIO device fd (cdev, or from a group) with KVM
    /// (`KVM_DEV_VFIO_FILE_ADD`). KVM keeps a reference to the file until
    /// [`KvmVfioDevice::remove_file`] or until the VM is destroyed: remove it before closing a
    /// legacy device, or its group cannot leave the container (`EBUSY`). Errors keep KVM's
    /// errno: `EINVAL` not a VFIO file (kernels before 6.6 take group files only), `EEXIST`
    /// already registered, `EBADF` a closed fd.
    ///
    /// # Example
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # if !std::path::Path::new("/dev/kvm").exists() { return Ok(()); }
    /// use std::os::fd::AsFd;
    ///
    /// let vm = kvm_ioctls::Kvm::new()?.create_vm()?;
    /// let kvm_vfio = vfio_harness::vfio::KvmVfioDevice::create(&vm)?;
    /// let file = std::fs::File::open("/dev/null")?;
    /// let e = kvm_vfio.add_file(file.as_fd()).unwrap_err();
    /// assert_eq!(e.errno(), Some(libc::EINVAL)); // not a VFIO file
    /// # Ok(())
    /// # }
    /// ```
    pub fn add_file(&self, file: BorrowedFd<'_>) -> Result<()> {
        self.file_op(KVM_DEV_VFIO_FILE_ADD, file)
    }

    /// Removes a file registered with [`KvmVfioDevice::add_file`] (`KVM_DEV_VFIO_FILE_DEL`).
    /// `ENOENT` when it was not registered.
    ///
    /// # Example
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # if !std::path::Path::new("/dev/kvm").exists() { return Ok(()); }
    /// use std::os::fd::AsFd;
    ///
    /// let vm = kvm_ioctls::Kvm::new()?.create_vm()?;
    /// let kvm_vfio = vfio_harness::vfio::KvmVfioDevice::create(&vm)?;
    /// let file = std::fs::File::open("/dev/null")?;
    /// let e = kvm_vfio.remove_file(file.as_fd()).unwrap_err();
    /// assert_eq!(e.errno(), Some(libc::ENOENT)); // never registered
    /// # Ok(())
    /// # }
    /// ```
    pub fn remove_file(&self, file: BorrowedFd<'_>) -> Result<()> {
        self.file_op(KVM_DEV_VFIO_FILE_DEL, file)
    }

    fn file_op(&self, op: u32, file: BorrowedFd<'_>) -> Result<()> {
        let raw: i32 = file.as_raw_fd();
        let attr = file_attr(op, &raw);
        self.fd.set_device_attr(&attr).map_err(|e| {
            let name = if op == KVM_DEV_VFIO_FILE_ADD {
                "KVM_DEV_VFIO_FILE_ADD"
            } else {
                "KVM_DEV_VFIO_FILE_DEL"
            };
            let hint = match e.errno() {
                libc::EINVAL if op == KVM_DEV_VFIO_FILE_ADD => " (not a VFIO group or device file)",
                libc::EEXIST => " (already registered)",
                libc::ENOENT => " (not registered)",
                _ => "",
            };
            DeviceError::Io {
                device: "KVM-VFIO".into(),
                what: format!("{name} of fd {raw}{hint}"),
                source: io::Error::from_raw_os_error(e.errno()),
            }
        })
    }
}

/// A `KVM_DEV_VFIO_FILE` attribute whose argument is the fd at `fd` (KVM reads an `int32`
/// there during the call).
fn file_attr(op: u32, fd: &i32) -> kvm_device_attr {
    kvm_device_attr {
        group: KVM_DEV_VFIO_FILE,
        attr: u64::from(op),
        addr: fd as *const i32 as u64,
        flags: 0,
    }
}

impl fmt::Debug for KvmVfioDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvmVfioDevice")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine with /dev/kvm (the development and CI machines) the VM and the KVM-VFIO
    /// pseudo device are created for real; without it, the reason says so.
    #[test]
    fn creates_the_kvm_vfio_device_where_kvm_exists() {
        match KvmVfio::create() {
            Ok(k) => {
                let Ok(dev) = Arc::try_unwrap(k.device) else {
                    panic!("the context must be the sole owner of its device");
                };
                let fd = dev.to_kvm().expect("a KVM device fd");
                // A group fd that is not a VFIO group is refused by the pseudo device: the
                // registration path (KVM_DEV_VFIO_FILE_ADD) reaches the kernel.
                let not_a_group = std::fs::File::open("/dev/null").unwrap();
                let fd_raw = std::os::fd::AsRawFd::as_raw_fd(&not_a_group);
                let attr = kvm_bindings::kvm_device_attr {
                    group: kvm_bindings::KVM_DEV_VFIO_FILE,
                    attr: kvm_bindings::KVM_DEV_VFIO_FILE_ADD as u64,
                    addr: &fd_raw as *const i32 as u64,
                    flags: 0,
                };
                assert!(fd.set_device_attr(&attr).is_err());
            }
            Err(e) => {
                assert!(!Path::new("/dev/kvm").exists(), "KVM exists but: {e}");
                assert!(e.contains("/dev/kvm"), "{e}");
            }
        }
    }
    fn caller_vm() -> Option<VmFd> {
        if !Path::new("/dev/kvm").exists() {
            return None;
        }
        Some(Kvm::new().unwrap().create_vm().unwrap())
    }

    /// The pseudo device is created on the caller's VM: a second one on the same VM is the
    /// kernel's "one KVM-VFIO device per VM" refusal (EBUSY), not a private VM's success.
    #[test]
    fn creates_on_the_callers_vm() {
        let Some(vm) = caller_vm() else { return };
        let first = KvmVfioDevice::create(&vm).unwrap();
        let e = KvmVfioDevice::create(&vm).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EBUSY), "{e}");
        assert!(e.to_string().contains("from_handle"), "{e}");
        // The VMM's existing handle is taken as is.
        let again = KvmVfioDevice::from_handle(first.handle()).unwrap();
        assert!(Arc::ptr_eq(&again.handle(), &first.handle()));
    }

    /// Registering a file that is not VFIO is refused by KVM's VFIO device itself (EINVAL
    /// from kvm_vfio_file_add), removing one never added is its ENOENT: the calls reach the
    /// caller's KVM-VFIO device.
    #[test]
    fn registering_a_non_vfio_fd_is_refused_by_kvm() {
        let Some(vm) = caller_vm() else { return };
        let kv = KvmVfioDevice::create(&vm).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let e = kv.add_file(std::os::fd::AsFd::as_fd(&null)).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
        assert!(e.to_string().contains("KVM_DEV_VFIO_FILE_ADD"), "{e}");
        assert!(e.to_string().contains("not a VFIO"), "{e}");
        let (sock, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = kv.add_file(std::os::fd::AsFd::as_fd(&sock)).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
        let e = kv.remove_file(std::os::fd::AsFd::as_fd(&null)).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT), "{e}");
    }
}
