//! The KVM-VFIO pseudo device: groups and cdevs are registered with it as a VMM does, so
//! vendor drivers that insist on a KVM (some vGPU drivers refuse to open without one) work.

use std::path::Path;
use std::sync::Arc;

use kvm_bindings::{kvm_create_device, kvm_device_type_KVM_DEV_TYPE_VFIO};
use kvm_ioctls::{Kvm, VmFd};
use vfio_ioctls::VfioDeviceFd;

/// A throwaway VM and its KVM-VFIO device. The VM fd is kept so that the device's VM lives
/// as long as the context.
pub(crate) struct KvmVfio {
    _vm: VmFd,
    /// The pseudo device, handed to vfio-ioctls as the container's device handle.
    pub(crate) device: Arc<VfioDeviceFd>,
}

impl KvmVfio {
    /// Creates the VM and the pseudo device, or says why not.
    pub(crate) fn create() -> Result<KvmVfio, String> {
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
            _vm: vm,
            device: Arc::new(VfioDeviceFd::new_from_kvm(fd)),
        })
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
}
