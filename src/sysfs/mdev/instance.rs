//! mdev instances (`bus/mdev/devices/<uuid>`): listing and reading them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use super::{canonical, collect_attrs, io_err, ser_uuid, INSTANCES_DIR};
use crate::sysfs::{dir_names, link_name, Result, SysfsError, SysfsRoot};

/// Standard files and directories of an instance directory.
const INSTANCE_STD: &[&str] = &[
    "uevent",
    "remove",
    "power",
    "vfio-dev",
    "mdev_type",
    "iommu_group",
    "driver",
    "subsystem",
];

/// One mediated device instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MdevInstance {
    /// Its UUID (also its device name).
    #[serde(serialize_with = "ser_uuid")]
    pub uuid: Uuid,
    /// The parent device name.
    pub parent: String,
    /// The type id, from the `mdev_type` link (`None` while the instance is half-made).
    #[serde(rename = "type")]
    pub mdev_type: Option<String>,
    /// The IOMMU group number (each mdev has its own group).
    pub iommu_group: Option<u32>,
    /// The bound driver (the vendor's mdev driver, e.g. `mtty`), `None` when unbound.
    pub driver: Option<String>,
    /// The VFIO device cdev name (`vfio3` for `/dev/vfio/devices/vfio3`), when the kernel
    /// has device cdevs.
    pub vfio_cdev: Option<String>,
    /// The canonical sysfs directory.
    pub sysfs_path: PathBuf,
    /// Vendor per-instance attributes (files in the instance directory and its named
    /// attribute groups, `vendor/sample_mdev_dev`), `None` when unreadable.
    pub attributes: BTreeMap<String, Option<String>>,
}

impl MdevInstance {
    /// `parent/type` of the instance (`parent/?` while half-made).
    pub fn type_id(&self) -> String {
        format!(
            "{}/{}",
            self.parent,
            self.mdev_type.as_deref().unwrap_or("?")
        )
    }
}

/// `bus/mdev/devices/<uuid>`.
/// The instance's node: `bus/mdev/devices/<uuid>` under `root`.
pub(crate) fn instance_dir(root: &SysfsRoot, uuid: &Uuid) -> PathBuf {
    root.join(INSTANCES_DIR).join(uuid.hyphenated().to_string())
}

/// Whether an instance node exists (even half-made).
pub fn exists(root: &SysfsRoot, uuid: &Uuid) -> bool {
    fs::symlink_metadata(instance_dir(root, uuid)).is_ok()
}

/// Every instance, sorted by UUID. Entries that are not UUIDs are skipped.
pub fn list_instances(root: &SysfsRoot) -> Result<Vec<MdevInstance>> {
    let dir = root.join(INSTANCES_DIR);
    let mut uuids: Vec<Uuid> = dir_names(&dir)
        .map_err(|e| io_err("list mdev instances", &dir, e))?
        .iter()
        .filter_map(|n| Uuid::try_parse(n).ok())
        .collect();
    uuids.sort();
    let mut out = Vec::with_capacity(uuids.len());
    for u in uuids {
        match instance(root, &u) {
            Ok(i) => out.push(i),
            // Removed between the listing and the read: not an error for a listing.
            Err(SysfsError::NoSuchInstance { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One instance; [`SysfsError::NoSuchInstance`] when it does not exist.
pub fn instance(root: &SysfsRoot, uuid: &Uuid) -> Result<MdevInstance> {
    let dir = instance_dir(root, uuid);
    if !dir.exists() {
        return Err(SysfsError::NoSuchInstance {
            uuid: *uuid,
            dir: root.join(INSTANCES_DIR),
        });
    }
    let sysfs_path = canonical(&dir);
    let type_link = dir.join("mdev_type");
    let (parent, mdev_type) = match fs::canonicalize(&type_link) {
        // <parent dir>/mdev_supported_types/<type>
        Ok(t) => {
            let ty = t.file_name().map(|n| n.to_string_lossy().into_owned());
            let parent = t
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned());
            match parent {
                Some(p) => (p, ty),
                None => {
                    return Err(SysfsError::Malformed {
                        path: type_link,
                        reason: format!(
                            "link target {} is not <parent>/mdev_supported_types/<type>",
                            t.display()
                        ),
                    })
                }
            }
        }
        // Half-made (the link is created last): the parent is the device's parent directory.
        Err(_) => (
            sysfs_path
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            None,
        ),
    };
    let iommu_group = link_name(&dir.join("iommu_group")).and_then(|g| g.parse().ok());
    let vfio_cdev = dir_names(&dir.join("vfio-dev"))
        .ok()
        .and_then(|v| v.into_iter().find(|n| n.starts_with("vfio")));
    let attributes = collect_attrs(&dir, INSTANCE_STD)
        .map_err(|e| io_err(format!("read attributes of {uuid}"), &dir, e))?;
    Ok(MdevInstance {
        uuid: *uuid,
        parent,
        mdev_type,
        iommu_group,
        driver: link_name(&dir.join("driver")),
        vfio_cdev,
        sysfs_path,
        attributes,
    })
}
