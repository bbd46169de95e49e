//! mdev parents and their types (`class/mdev_bus/<parent>/mdev_supported_types/<type>`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use uuid::Uuid;

use super::{canonical, collect_attrs, io_err, plain_name, ser_uuids, PARENTS_DIR};
use crate::sysfs::{dir_names, link_name, read_attr_opt, Result, SysfsError, SysfsRoot};

/// Standard files of a type directory (everything else is a vendor attribute).
const TYPE_STD: &[&str] = &[
    "create",
    "available_instances",
    "device_api",
    "name",
    "description",
    "devices",
];

/// A registered mdev parent device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MdevParent {
    /// The parent's device name (`0000:00:02.0`, `mtty`, `0.0.26ab`).
    pub name: String,
    /// Its canonical sysfs directory.
    pub sysfs_path: PathBuf,
    /// The subsystem it belongs to (`pci`, `mtty`, `css`...), when sysfs says.
    pub subsystem: Option<String>,
    /// Its types, sorted by name.
    pub types: Vec<String>,
}

/// One mdev type of one parent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MdevType {
    /// The parent device name.
    pub parent: String,
    /// The type id: the directory name, an opaque string (`mtty-2`).
    #[serde(rename = "type")]
    pub type_id: String,
    /// `name`: the human title (`Dual port serial`), when present.
    pub name: Option<String>,
    /// `description`, when present.
    pub description: Option<String>,
    /// `device_api` (`vfio-pci`, `vfio-ccw`, ...), `None` when unreadable.
    pub device_api: Option<String>,
    /// `available_instances`, `None` when unreadable or not a number.
    pub available_instances: Option<u64>,
    /// Instances of this type (`devices/`).
    #[serde(serialize_with = "ser_uuids")]
    pub devices: Vec<Uuid>,
    /// Every other attribute of the type directory (vendor knobs, migration-compatibility
    /// attributes), by name; `None` when present but unreadable (write-only, or the driver
    /// refused the read). Attributes in subdirectories are named `dir/attr`.
    pub attributes: BTreeMap<String, Option<String>>,
    /// The type's canonical sysfs directory.
    pub sysfs_path: PathBuf,
}

impl MdevType {
    /// `parent/type`, as used in messages.
    pub fn id(&self) -> String {
        format!("{}/{}", self.parent, self.type_id)
    }

    /// A vendor attribute's value, `None` when absent or unreadable.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).and_then(|v| v.as_deref())
    }
}

/// Names of the registered parents, sorted.
pub fn parent_names(root: &SysfsRoot) -> Result<Vec<String>> {
    let dir = root.join(PARENTS_DIR);
    dir_names(&dir).map_err(|e| io_err("list mdev parents", &dir, e))
}

/// `class/mdev_bus/<parent>`.
fn parent_dir(root: &SysfsRoot, parent: &str) -> PathBuf {
    root.join(PARENTS_DIR).join(parent)
}

/// `class/mdev_bus/<parent>/mdev_supported_types`.
pub(super) fn types_dir(root: &SysfsRoot, parent: &str) -> PathBuf {
    parent_dir(root, parent).join("mdev_supported_types")
}

/// The registered parents with their type names.
pub fn list_parents(root: &SysfsRoot) -> Result<Vec<MdevParent>> {
    let mut out = Vec::new();
    for name in parent_names(root)? {
        let dir = parent_dir(root, &name);
        let tdir = types_dir(root, &name);
        out.push(MdevParent {
            sysfs_path: canonical(&dir),
            subsystem: link_name(&dir.join("subsystem")),
            types: dir_names(&tdir).map_err(|e| io_err("list mdev types", &tdir, e))?,
            name,
        });
    }
    Ok(out)
}

/// Every type of every parent, sorted by parent then type.
pub fn list_types(root: &SysfsRoot) -> Result<Vec<MdevType>> {
    let mut out = Vec::new();
    for p in parent_names(root)? {
        out.extend(parent_types(root, &p)?);
    }
    Ok(out)
}

/// The types of one parent; [`SysfsError::UnknownParent`] (listing the parents) when it does
/// not exist.
pub fn parent_types(root: &SysfsRoot, parent: &str) -> Result<Vec<MdevType>> {
    check_parent(root, parent)?;
    let tdir = types_dir(root, parent);
    let mut out = Vec::new();
    for t in dir_names(&tdir).map_err(|e| io_err("list mdev types", &tdir, e))? {
        out.push(read_type(root, parent, &t)?);
    }
    Ok(out)
}

fn check_parent(root: &SysfsRoot, parent: &str) -> Result<()> {
    if plain_name(parent) && parent_dir(root, parent).exists() {
        return Ok(());
    }
    Err(SysfsError::UnknownParent {
        parent: parent.to_string(),
        known: parent_names(root)?,
    })
}

/// One type; [`SysfsError::UnknownParent`] / [`SysfsError::UnknownType`] (listing what
/// exists) when it does not exist.
pub fn find_type(root: &SysfsRoot, parent: &str, mdev_type: &str) -> Result<MdevType> {
    check_parent(root, parent)?;
    let dir = types_dir(root, parent).join(mdev_type);
    if !plain_name(mdev_type) || !dir.is_dir() {
        let tdir = types_dir(root, parent);
        return Err(SysfsError::UnknownType {
            parent: parent.to_string(),
            mdev_type: mdev_type.to_string(),
            known: dir_names(&tdir).map_err(|e| io_err("list mdev types", &tdir, e))?,
        });
    }
    read_type(root, parent, mdev_type)
}

/// Finds the types named `mdev_type` on any parent (type ids are usually unique per driver,
/// so this is how a user naming only a type is resolved).
pub fn types_named(root: &SysfsRoot, mdev_type: &str) -> Result<Vec<MdevType>> {
    Ok(list_types(root)?
        .into_iter()
        .filter(|t| t.type_id == mdev_type)
        .collect())
}

fn read_type(root: &SysfsRoot, parent: &str, type_id: &str) -> Result<MdevType> {
    let dir = types_dir(root, parent).join(type_id);
    let ddir = dir.join("devices");
    let mut devices: Vec<Uuid> = dir_names(&ddir)
        .map_err(|e| io_err(format!("list instances of {parent}/{type_id}"), &ddir, e))?
        .iter()
        .filter_map(|n| Uuid::try_parse(n).ok())
        .collect();
    devices.sort();
    Ok(MdevType {
        parent: parent.to_string(),
        type_id: type_id.to_string(),
        name: read_attr_opt(&dir.join("name")),
        description: read_attr_opt(&dir.join("description")),
        device_api: read_attr_opt(&dir.join("device_api")),
        available_instances: read_attr_opt(&dir.join("available_instances"))
            .and_then(|s| s.trim().parse().ok()),
        devices,
        attributes: collect_attrs(&dir, TYPE_STD)
            .map_err(|e| io_err(format!("read attributes of {parent}/{type_id}"), &dir, e))?,
        sysfs_path: canonical(&dir),
    })
}
