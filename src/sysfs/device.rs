//! sysfs lookups for one kernel device: where its node is, its IOMMU group and the group's
//! members, its driver, its mdev type and parent, its VFIO cdev.
//!
//! Everything is read relative to a [`SysfsRoot`], so the functions run on fixture trees.

use std::fs;
use std::path::{Path, PathBuf};

use super::SysfsRoot;
use crate::device::{DeviceError, DeviceSpec, Result};

/// One member of an IOMMU group and the driver it is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// Device name (`0000:00:03.0`, an mdev UUID).
    pub name: String,
    /// Bound driver, `None` when unbound.
    pub driver: Option<String>,
    /// A mediated device (its "driver" is the vendor driver, which is VFIO's).
    pub mdev: bool,
}

impl GroupMember {
    /// Whether this member blocks group viability: bound to a host driver rather than to a
    /// VFIO driver (vfio-pci and its variants, an mdev vendor driver through vfio_mdev) or to
    /// nothing. PCI bridges bound to `pcieport` are tolerated by the kernel as well.
    pub fn blocks_viability(&self) -> bool {
        if self.mdev {
            return false;
        }
        match self.driver.as_deref() {
            None => false,
            Some(d) => !(d.contains("vfio") || d == "pcieport" || d == "pci-stub"),
        }
    }
}

impl std::fmt::Display for GroupMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.driver {
            Some(d) => write!(f, "{} ({d})", self.name),
            None => write!(f, "{} (no driver)", self.name),
        }
    }
}

fn link_name(p: &Path) -> Option<String> {
    fs::read_link(p)
        .ok()?
        .file_name()?
        .to_str()
        .map(str::to_string)
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Resolves a (non-simulator) device spec to its sysfs node.
///
/// mdev UUIDs map to `bus/mdev/devices/<uuid>`, PCI addresses to `bus/pci/devices/<addr>`,
/// sysfs paths are taken as given (re-rooted under a fixture root when one is set), and a cdev
/// `/dev/vfio/devices/vfioN` is resolved through `class/vfio-dev/vfioN/device`.
pub fn resolve(root: &SysfsRoot, spec: &DeviceSpec) -> Result<PathBuf> {
    let invalid = |reason: String| DeviceError::InvalidSpec {
        spec: spec.to_string(),
        reason,
    };
    let p = match spec {
        DeviceSpec::Sim(_) => return Err(invalid("the simulator has no sysfs node".into())),
        DeviceSpec::Mdev(u) => root.join(format!("bus/mdev/devices/{u}")),
        DeviceSpec::Pci(a) => root.join(format!("bus/pci/devices/{a}")),
        DeviceSpec::Sysfs(p) => {
            if root.path() == Path::new("/sys") {
                p.clone()
            } else {
                // Fixture roots: a path given as /sys/... lives under the fixture.
                match p.strip_prefix("/sys") {
                    Ok(rel) => root.join(rel),
                    Err(_) => p.clone(),
                }
            }
        }
        DeviceSpec::Cdev(p) => {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| n.starts_with("vfio") && n[4..].chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| invalid("a cdev is named /dev/vfio/devices/vfioN".into()))?;
            // On the real system the node must exist: sysfs lists every VFIO device under
            // class/vfio-dev even on kernels without device cdevs (no node in /dev).
            if root.path() == Path::new("/sys") && !p.exists() {
                return Err(invalid(format!(
                    "{} does not exist{}",
                    p.display(),
                    if root.join(format!("class/vfio-dev/{name}")).exists() {
                        ": the kernel lists the device in sysfs but has no cdev node for it (CONFIG_VFIO_DEVICE_CDEV off, or /dev is not devtmpfs); name it by its UUID, PCI address or sysfs path"
                    } else {
                        ""
                    }
                )));
            }
            let link = root.join(format!("class/vfio-dev/{name}/device"));
            fs::canonicalize(&link).map_err(|e| {
                invalid(format!(
                    "cannot resolve {} to its device: {e} (is the cdev interface enabled, CONFIG_VFIO_DEVICE_CDEV?)",
                    link.display()
                ))
            })?
        }
    };
    if !p.exists() {
        let hint = match spec {
            DeviceSpec::Mdev(_) => "no such mdev; create it first (vfio-harness mdev create, or echo UUID > .../mdev_supported_types/TYPE/create)",
            DeviceSpec::Pci(_) => "no such PCI device (lspci -D lists them)",
            _ => "no such sysfs node",
        };
        return Err(invalid(format!("{} does not exist: {hint}", p.display())));
    }
    // Canonicalize so that relative links (iommu_group, driver) resolve consistently.
    fs::canonicalize(&p).map_err(|e| invalid(format!("cannot resolve {}: {e}", p.display())))
}

/// The device's name: the last component of its sysfs node.
pub fn device_name(node: &Path) -> String {
    node.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| node.display().to_string())
}

/// The IOMMU group number (`iommu_group` link), `None` when the device has none.
pub fn iommu_group(node: &Path) -> Option<u32> {
    link_name(&node.join("iommu_group"))?.parse().ok()
}

/// The members of IOMMU group `group` with their drivers, sorted by name.
pub fn group_members(root: &SysfsRoot, group: u32) -> Vec<GroupMember> {
    let dir = root.join(format!("kernel/iommu_groups/{group}/devices"));
    let mut v: Vec<GroupMember> = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| GroupMember {
                name: e.file_name().to_string_lossy().into_owned(),
                driver: driver(&e.path()),
                mdev: e.path().join("mdev_type").exists(),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The bound driver's name (`driver` link), `None` when unbound.
pub fn driver(node: &Path) -> Option<String> {
    link_name(&node.join("driver"))
}

/// The mdev type id (`mdev_type` link name, e.g. `mtty-2`), for mediated devices.
pub fn mdev_type(node: &Path) -> Option<String> {
    link_name(&node.join("mdev_type"))
}

/// The mdev type's `device_api` (`vfio-pci`), for mediated devices.
pub fn mdev_device_api(node: &Path) -> Option<String> {
    read_trim(&node.join("mdev_type/device_api"))
}

/// The parent of a mediated device: the directory above its node.
pub fn mdev_parent(node: &Path) -> Option<String> {
    if !node.join("mdev_type").exists() {
        return None;
    }
    node.parent()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// The VFIO cdev name (`vfio0`) from `vfio-dev/`, `None` when the device has no cdev.
pub fn cdev_name(node: &Path) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir(node.join("vfio-dev"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vfio"))
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Whether the device's VFIO class entry `vfio-dev/<name>` is gone (only a missing entry
/// counts; any other error reading it says nothing). The kernel deletes it first when it
/// unregisters a VFIO device (mdev remove, driver unbind), then waits for the device's last
/// fd to close; with the device still open here, a missing entry means a removal has begun.
pub fn vfio_dev_gone(node: &Path, name: &str) -> bool {
    matches!(
        fs::symlink_metadata(node.join("vfio-dev").join(name)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fixture() -> (tempfile::TempDir, SysfsRoot) {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().to_path_buf();
        let r = r.as_path();
        let pci = r.join("devices/pci0000:00/0000:00:03.0");
        let uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";
        let mdev = r.join(format!("devices/virtual/mtty/mtty/{uuid}"));
        for d in [
            &pci,
            &mdev,
            &r.join("bus/pci/devices"),
            &r.join("bus/mdev/devices"),
            &r.join("bus/pci/drivers/vfio-pci"),
            &r.join("bus/pci/drivers/snd_hda_intel"),
            &r.join("bus/mdev/drivers/vfio_mdev"),
            &r.join("kernel/iommu_groups/7/devices"),
            &r.join("devices/virtual/mtty/mtty/mdev_supported_types/mtty-2"),
            &r.join("class/vfio-dev"),
            &pci.join("vfio-dev/vfio3"),
            &r.join("devices/pci0000:00/0000:00:03.1"),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(
            r.join("devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/device_api"),
            "vfio-pci\n",
        )
        .unwrap();
        symlink(&pci, r.join("bus/pci/devices/0000:00:03.0")).unwrap();
        symlink(&mdev, r.join(format!("bus/mdev/devices/{uuid}"))).unwrap();
        symlink(r.join("kernel/iommu_groups/7"), pci.join("iommu_group")).unwrap();
        symlink(r.join("bus/pci/drivers/vfio-pci"), pci.join("driver")).unwrap();
        let sib = r.join("devices/pci0000:00/0000:00:03.1");
        symlink(r.join("bus/pci/drivers/snd_hda_intel"), sib.join("driver")).unwrap();
        symlink(&pci, r.join("kernel/iommu_groups/7/devices/0000:00:03.0")).unwrap();
        symlink(&sib, r.join("kernel/iommu_groups/7/devices/0000:00:03.1")).unwrap();
        symlink(
            r.join("devices/virtual/mtty/mtty/mdev_supported_types/mtty-2"),
            mdev.join("mdev_type"),
        )
        .unwrap();
        symlink(r.join("bus/mdev/drivers/vfio_mdev"), mdev.join("driver")).unwrap();
        fs::create_dir_all(r.join("class/vfio-dev/vfio3")).unwrap();
        symlink(&pci, r.join("class/vfio-dev/vfio3/device")).unwrap();
        (t, SysfsRoot::new(r))
    }

    #[test]
    fn resolves_every_spec_form() {
        let (_t, root) = fixture();
        let pci = resolve(&root, &"0000:00:03.0".parse().unwrap()).unwrap();
        assert!(pci.ends_with("devices/pci0000:00/0000:00:03.0"));
        let cdev = resolve(&root, &"/dev/vfio/devices/vfio3".parse().unwrap()).unwrap();
        assert_eq!(cdev, pci);
        let sys = resolve(&root, &"/sys/bus/pci/devices/0000:00:03.0".parse().unwrap()).unwrap();
        assert_eq!(sys, pci);
        let m = resolve(
            &root,
            &"83b8f4f2-509f-382f-3c1e-e6bfe0fa1001".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(mdev_type(&m).as_deref(), Some("mtty-2"));
        assert_eq!(mdev_parent(&m).as_deref(), Some("mtty"));
        assert_eq!(mdev_device_api(&m).as_deref(), Some("vfio-pci"));
        assert_eq!(driver(&m).as_deref(), Some("vfio_mdev"));
        assert_eq!(mdev_parent(&pci), None);
    }

    #[test]
    fn refuses_missing_devices() {
        let (_t, root) = fixture();
        let e = resolve(&root, &"0000:00:04.0".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(resolve(&root, &"/dev/vfio/devices/vfio9".parse().unwrap()).is_err());
        assert!(resolve(&root, &"/dev/vfio/devices/iommu".parse().unwrap()).is_err());
    }

    #[test]
    fn group_and_blockers() {
        let (_t, root) = fixture();
        let pci = resolve(&root, &"0000:00:03.0".parse().unwrap()).unwrap();
        assert_eq!(iommu_group(&pci), Some(7));
        assert_eq!(cdev_name(&pci).as_deref(), Some("vfio3"));
        let m = group_members(&root, 7);
        assert_eq!(m.len(), 2);
        let blockers: Vec<String> = m
            .iter()
            .filter(|m| m.blocks_viability())
            .map(|m| m.to_string())
            .collect();
        assert_eq!(blockers, ["0000:00:03.1 (snd_hda_intel)"]);
    }

    #[test]
    fn vfio_dev_gone_only_when_the_entry_is_missing() {
        let t = tempfile::tempdir().unwrap();
        let node = t.path().join("0000:00:03.0");
        fs::create_dir_all(node.join("vfio-dev/vfio3")).unwrap();
        assert!(!vfio_dev_gone(&node, "vfio3"));
        assert!(vfio_dev_gone(&node, "vfio4"));
        fs::remove_dir(node.join("vfio-dev/vfio3")).unwrap();
        assert!(vfio_dev_gone(&node, "vfio3"));
        // The whole node gone (an mdev's bus link is deleted before the driver lets go).
        assert!(vfio_dev_gone(&t.path().join("missing"), "vfio3"));
        // Not a directory in the way: an error other than "not found" says nothing.
        let file = t.path().join("plain");
        fs::write(&file, b"").unwrap();
        assert!(!vfio_dev_gone(&file, "vfio3"));
    }
}
