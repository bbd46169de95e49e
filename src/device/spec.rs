//! How users name devices on the command line.

use super::DeviceError;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A device as named by the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The built-in simulator: `sim` or `sim:key=value,...` (parameters parsed by
    /// the simulator back end, `sim`); the string holds what follows `sim:`.
    Sim(String),
    /// A mediated device by UUID (`/sys/bus/mdev/devices/<uuid>`).
    Mdev(uuid::Uuid),
    /// A PCI device by address, normalised to `dddd:bb:dd.f`.
    Pci(String),
    /// A VFIO device cdev (`/dev/vfio/devices/vfioN`).
    Cdev(PathBuf),
    /// A sysfs device node (`/sys/bus/pci/devices/...`, `/sys/bus/mdev/devices/...`).
    Sysfs(PathBuf),
}

impl DeviceSpec {
    /// Whether this names the simulator.
    pub fn is_sim(&self) -> bool {
        matches!(self, DeviceSpec::Sim(_))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Sim(p) if p.is_empty() => f.write_str("sim"),
            DeviceSpec::Sim(p) => write!(f, "sim:{p}"),
            DeviceSpec::Mdev(u) => write!(f, "{u}"),
            DeviceSpec::Pci(a) => f.write_str(a),
            DeviceSpec::Cdev(p) | DeviceSpec::Sysfs(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Normalises a PCI address (`00:03.0` or `0000:00:03.0`) to `dddd:bb:dd.f`.
pub fn parse_pci_address(s: &str) -> Option<String> {
    let (dom, rest) = match s.matches(':').count() {
        1 => ("0000", s),
        2 => s.split_once(':')?,
        _ => return None,
    };
    let (bus, devfn) = rest.split_once(':')?;
    let (dev, func) = devfn.split_once('.')?;
    let hex = |t: &str, max_len: usize| {
        !t.is_empty() && t.len() <= max_len && t.chars().all(|c| c.is_ascii_hexdigit())
    };
    if !(hex(dom, 4) && hex(bus, 2) && hex(dev, 2) && func.len() == 1 && hex(func, 1)) {
        return None;
    }
    let d = u32::from_str_radix(dom, 16).ok()?;
    let b = u32::from_str_radix(bus, 16).ok()?;
    let v = u32::from_str_radix(dev, 16).ok()?;
    let fu = u32::from_str_radix(func, 16).ok()?;
    if v > 0x1f || fu > 7 {
        return None;
    }
    Some(format!("{d:04x}:{b:02x}:{v:02x}.{fu:x}"))
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| DeviceError::InvalidSpec {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty device name"));
        }
        if t == "sim" {
            return Ok(DeviceSpec::Sim(String::new()));
        }
        if let Some(p) = t.strip_prefix("sim:") {
            return Ok(DeviceSpec::Sim(p.to_string()));
        }
        if t.starts_with('/') {
            let p = PathBuf::from(t);
            if p.starts_with("/dev/vfio/devices") {
                return Ok(DeviceSpec::Cdev(p));
            }
            if p.starts_with("/dev") {
                return Err(bad(
                    "device files other than /dev/vfio/devices/vfioN cannot name a device; give the mdev UUID, PCI address or sysfs path",
                ));
            }
            return Ok(DeviceSpec::Sysfs(p));
        }
        if let Some(a) = parse_pci_address(t) {
            return Ok(DeviceSpec::Pci(a));
        }
        if t.len() == 36 && t.matches('-').count() == 4 {
            return uuid::Uuid::parse_str(t)
                .map(DeviceSpec::Mdev)
                .map_err(|e| bad(&format!("malformed mdev UUID: {e}")));
        }
        Err(bad(
            "expected `sim[:key=value,...]`, an mdev UUID, a PCI address (0000:00:03.0), a sysfs path or /dev/vfio/devices/vfioN",
        ))
    }
}

/// Which IOMMU interface kernel devices are opened through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IommuBackend {
    /// The legacy container/group interface (`/dev/vfio/vfio`, `/dev/vfio/<group>`, type1).
    Legacy,
    /// The iommufd + device cdev interface (`/dev/iommu`, `/dev/vfio/devices/vfioN`).
    Iommufd,
    /// iommufd when the kernel offers it and the device has a cdev, else legacy.
    #[default]
    Auto,
}

impl FromStr for IommuBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "legacy" | "container" | "group" => Ok(IommuBackend::Legacy),
            "iommufd" | "cdev" => Ok(IommuBackend::Iommufd),
            "auto" => Ok(IommuBackend::Auto),
            _ => Err(format!(
                "unknown IOMMU back end {s:?} (legacy, iommufd, auto)"
            )),
        }
    }
}

impl fmt::Display for IommuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IommuBackend::Legacy => "legacy",
            IommuBackend::Iommufd => "iommufd",
            IommuBackend::Auto => "auto",
        })
    }
}

/// Options for opening kernel devices.
///
/// # Examples
///
/// A VMM registers the devices it opens through the library with its own VM: it hands in
/// the KVM-VFIO device of its `VmFd` (`kvm_device`), and the composition root (`open`) registers every
/// group or cdev with that device instead of creating a private VM. The simulator has no
/// VFIO files and ignores it, so this runs wherever `/dev/kvm` does:
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # if !std::path::Path::new("/dev/kvm").exists() { return Ok(()); }
/// use vfio_harness::vfio::KvmVfioDevice;
/// use vfio_harness::{Device, OpenOptions};
///
/// let vm = kvm_ioctls::Kvm::new()?.create_vm()?; // the VMM's VM
/// let kvm_vfio = KvmVfioDevice::create(&vm)?;
/// let opts = OpenOptions {
///     kvm_device: Some(kvm_vfio.handle()),
///     ..OpenOptions::default()
/// };
/// let dev = vfio_harness::open(&"sim:state=64K".parse()?, &opts)?;
/// assert_eq!(dev.info().backend, "sim");
/// // A kernel device opened with `opts` is registered with `vm`: its context's
/// // `kvm_registered()` is true and `kvm_note()` names the caller's KVM-VFIO device.
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// IOMMU interface.
    pub iommu: IommuBackend,
    /// Register the group / cdev with a KVM-VFIO pseudo device of a private, empty VM
    /// created for the purpose, when `/dev/kvm` exists (some vendor drivers refuse to open
    /// without a KVM). Ignored when `kvm_device` is given.
    pub kvm: bool,
    /// The caller's KVM-VFIO device (a VMM's: `KVM_DEV_TYPE_VFIO` created on its own
    /// `VmFd`, as `vfio_ioctls` takes it; see `vfio::KvmVfioDevice::create` /
    /// `vfio::KvmVfioDevice::handle`). Every group or cdev opened is registered with it, so
    /// with the VMM's VM, before the device is opened. Opening fails when the handle is not
    /// a KVM-VFIO device. The VM is the caller's to keep alive.
    pub kvm_device: Option<std::sync::Arc<vfio_ioctls::VfioDeviceFd>>,
    /// Root of sysfs (for tests on fixture trees); `/sys` when `None`.
    pub sysfs_root: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "sim".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Sim(String::new())
        );
        assert_eq!(
            "sim:protocol=v1,state=64M".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Sim("protocol=v1,state=64M".into())
        );
        assert_eq!(
            "00:03.0".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Pci("0000:00:03.0".into())
        );
        assert_eq!(
            "0000:3B:1F.7".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Pci("0000:3b:1f.7".into())
        );
        let u = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";
        assert_eq!(
            u.parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Mdev(uuid::Uuid::parse_str(u).unwrap())
        );
        assert_eq!(
            "/dev/vfio/devices/vfio0".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Cdev("/dev/vfio/devices/vfio0".into())
        );
        assert_eq!(
            "/sys/bus/pci/devices/0000:00:03.0"
                .parse::<DeviceSpec>()
                .unwrap(),
            DeviceSpec::Sysfs("/sys/bus/pci/devices/0000:00:03.0".into())
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "83b8f4f2-509f-382f-3c1e-e6bfe0fa10zz",
            "0000:00:20.0",
            "00:03.8",
            "/dev/vfio/12",
            "hello",
        ] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn iommu_backend_parses() {
        assert_eq!(
            "legacy".parse::<IommuBackend>().unwrap(),
            IommuBackend::Legacy
        );
        assert_eq!(
            "iommufd".parse::<IommuBackend>().unwrap(),
            IommuBackend::Iommufd
        );
        assert!("vfio".parse::<IommuBackend>().is_err());
    }
}
