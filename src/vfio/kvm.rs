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
