//! Mediated devices through sysfs: parents, types, instances; create and remove.
//!
//! Layout (kernel ABI, `Documentation/ABI/testing/sysfs-bus-vfio-mdev`):
//!
//! ```text
//! /sys/class/mdev_bus/<parent>                     -> the parent device (PCI or not)
//!     mdev_supported_types/<type>/
//!         create                 (write a UUID)
//!         available_instances    device_api    name    description
//!         devices/<uuid>         -> instances of this type
//!         ...                    vendor attributes (opaque, optional)
//! /sys/bus/mdev/devices/<uuid>                     -> the instance
//!     mdev_type -> ../mdev_supported_types/<type>
//!     iommu_group -> /sys/kernel/iommu_groups/<n>
//!     driver -> /sys/bus/mdev/drivers/<vendor driver>
//!     remove                     (write 1)
//!     <group>/<attr>             vendor per-instance attributes (opaque, optional)
//! ```
//!
//! Type names are opaque strings (`mtty-2`, `nvidia-11`, `i915-GVTg_V5_4`); nothing here assumes
//! the parent is a PCI device. Vendor and migration-compatibility attributes
//! (`software_version`, `compatible_type`, `compatible_*`, `dynamic_resources`,
//! `migration_version`) are read as optional strings into `attributes` and never depended on.
//!
//! Creating validates everything it can before touching sysfs (UUID, parent, type, duplicate,
//! capacity) and leaves nothing behind when the kernel refuses.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use super::SysfsRoot;
use super::{dir_names, link_name, read_attr, read_attr_opt, write_attr, Result, SysfsError};

/// `class/mdev_bus`: one entry per registered parent.
pub const PARENTS_DIR: &str = "class/mdev_bus";
/// `bus/mdev/devices`: one entry per instance.
pub const INSTANCES_DIR: &str = "bus/mdev/devices";

/// Standard files of a type directory (everything else is a vendor attribute).
const TYPE_STD: &[&str] = &[
    "create",
    "available_instances",
    "device_api",
    "name",
    "description",
    "devices",
];
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

fn ser_uuid<S: serde::Serializer>(u: &Uuid, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&u.hyphenated())
}

fn ser_uuids<S: serde::Serializer>(u: &[Uuid], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(u.iter().map(|u| u.hyphenated().to_string()))
}

/// Parses a UUID as the kernel's `create` accepts it: the 36-character hyphenated form
/// (any case). Anything else is refused before sysfs is touched.
pub fn parse_uuid(s: &str) -> Result<Uuid> {
    let bad = |reason: String| SysfsError::InvalidUuid {
        input: s.to_string(),
        reason,
    };
    if s.len() != 36 {
        return Err(bad(format!("{} characters instead of 36", s.len())));
    }
    let dashes: Vec<usize> = s.match_indices('-').map(|(i, _)| i).collect();
    if dashes != [8, 13, 18, 23] {
        return Err(bad(
            "hyphens must separate groups of 8-4-4-4-12 digits".into()
        ));
    }
    Uuid::parse_str(s).map_err(|e| bad(e.to_string()))
}

fn io_err(what: impl Into<String>, path: &Path, e: io::Error) -> SysfsError {
    SysfsError::from_io(what, path, e)
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Names of the registered parents, sorted.
pub fn parent_names(root: &SysfsRoot) -> Result<Vec<String>> {
    let dir = root.join(PARENTS_DIR);
    dir_names(&dir).map_err(|e| io_err("list mdev parents", &dir, e))
}

fn parent_dir(root: &SysfsRoot, parent: &str) -> PathBuf {
    root.join(PARENTS_DIR).join(parent)
}

fn types_dir(root: &SysfsRoot, parent: &str) -> PathBuf {
    parent_dir(root, parent).join("mdev_supported_types")
}

/// Checks that a name is one path component (no `/`, `.`, `..`), so user input cannot escape
/// the directory it names an entry of.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
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

/// Reads every regular file of `dir` not named in `skip`, and the regular files of its
/// subdirectories (named attribute groups) as `sub/file`. Symlinks are never followed.
fn collect_attrs(dir: &Path, skip: &[&str]) -> io::Result<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    for name in dir_names(dir)? {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let p = dir.join(&name);
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_file() {
            out.insert(name, read_attr_opt(&p));
        } else if md.is_dir() {
            for sub in dir_names(&p)? {
                let sp = p.join(&sub);
                if fs::symlink_metadata(&sp)
                    .map(|m| m.is_file())
                    .unwrap_or(false)
                {
                    out.insert(format!("{name}/{sub}"), read_attr_opt(&sp));
                }
            }
        }
    }
    Ok(out)
}

fn instance_dir(root: &SysfsRoot, uuid: &Uuid) -> PathBuf {
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

/// What [`create_timed`] made.
#[derive(Clone, Debug)]
pub struct Created {
    /// The new instance's UUID.
    pub uuid: Uuid,
    /// The type as read just before creating (its `available_instances` is the "before" count).
    pub type_before: MdevType,
    /// How long the `create` write took (the kernel creates, probes and binds synchronously).
    pub elapsed: Duration,
}

/// Creates an instance of `parent`/`mdev_type` with `uuid` (a random v4 UUID when `None`) and
/// returns its UUID. See [`create_timed`].
pub fn create(root: &SysfsRoot, parent: &str, mdev_type: &str, uuid: Option<Uuid>) -> Result<Uuid> {
    create_timed(root, parent, mdev_type, uuid).map(|c| c.uuid)
}

/// Creates an instance and times the `create` write.
///
/// Before writing anything it checks that the parent and type exist (the error lists what
/// does), that no instance has this UUID, and that `available_instances` is not 0. When the
/// kernel refuses, the errno is mapped to words (no capacity, duplicate, busy, permissions)
/// and a node that appeared anyway is removed, so a failed create leaves nothing behind.
pub fn create_timed(
    root: &SysfsRoot,
    parent: &str,
    mdev_type: &str,
    uuid: Option<Uuid>,
) -> Result<Created> {
    let ty = find_type(root, parent, mdev_type)?;
    let uuid = uuid.unwrap_or_else(Uuid::new_v4);
    if exists(root, &uuid) {
        let existing = instance(root, &uuid).ok().map(|i| i.type_id());
        return Err(SysfsError::DuplicateUuid { uuid, existing });
    }
    if ty.available_instances == Some(0) {
        return Err(SysfsError::NoCapacity {
            parent: parent.to_string(),
            mdev_type: mdev_type.to_string(),
            available: Some(0),
            source: None,
        });
    }
    let create = types_dir(root, parent).join(mdev_type).join("create");
    if fs::symlink_metadata(&create).is_err() {
        return Err(SysfsError::Malformed {
            path: create,
            reason: "the type has no `create` attribute".into(),
        });
    }
    let text = uuid.hyphenated().to_string();
    let t0 = Instant::now();
    let res = write_attr(&create, &text);
    let elapsed = t0.elapsed();
    match res {
        Ok(()) => Ok(Created {
            uuid,
            type_before: ty,
            elapsed,
        }),
        Err(e) => {
            let errno = e.raw_os_error();
            if errno == Some(libc::EEXIST) {
                // Someone else's instance (created since our check): never touch it.
                let existing = instance(root, &uuid).ok().map(|i| i.type_id());
                return Err(SysfsError::DuplicateUuid { uuid, existing });
            }
            // The node did not exist before the write: whatever is there now is ours.
            if exists(root, &uuid) {
                let _ = write_attr(&instance_dir(root, &uuid).join("remove"), "1");
            }
            Err(match errno {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EUSERS) => {
                    SysfsError::NoCapacity {
                        parent: parent.to_string(),
                        mdev_type: mdev_type.to_string(),
                        available: read_attr(&create.with_file_name("available_instances"))
                            .ok()
                            .and_then(|s| s.trim().parse().ok()),
                        source: Some(e),
                    }
                }
                _ => io_err(format!("create {text} on {parent}/{mdev_type}"), &create, e),
            })
        }
    }
}

/// Removes an instance (writes `1` to its `remove`). The kernel waits for the device to be
/// closed; [`SysfsError::Busy`] when it refuses because the device is in use.
pub fn remove(root: &SysfsRoot, uuid: &Uuid) -> Result<()> {
    remove_timed(root, uuid).map(|_| ())
}

/// Removes an instance and times the `remove` write.
pub fn remove_timed(root: &SysfsRoot, uuid: &Uuid) -> Result<Duration> {
    let dir = instance_dir(root, uuid);
    if !exists(root, uuid) {
        return Err(SysfsError::NoSuchInstance {
            uuid: *uuid,
            dir: root.join(INSTANCES_DIR),
        });
    }
    let path = dir.join("remove");
    let t0 = Instant::now();
    write_attr(&path, "1").map_err(|e| io_err(format!("remove {uuid}"), &path, e))?;
    Ok(t0.elapsed())
}

/// How long opening and closing a device took.
#[derive(Clone, Debug, Serialize)]
pub struct OpenCloseTimings {
    /// Time to open the device (group/cdev, IOMMU context, device fd, device info). This is
    /// the vendor's first open when nobody else holds the device open.
    #[serde(serialize_with = "ser_secs")]
    pub first_open: Duration,
    /// Time to drop the last handle (device fd close: the vendor's last close).
    #[serde(serialize_with = "ser_secs")]
    pub last_close: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Opens the mdev through the kernel back end and closes it again, timing both (some vendors
/// commit resources at first open and free them at last close).
pub fn time_open_close(
    uuid: &Uuid,
    opts: &crate::device::OpenOptions,
) -> crate::device::Result<OpenCloseTimings> {
    let spec = crate::device::DeviceSpec::Mdev(*uuid);
    let t0 = Instant::now();
    let dev = crate::device::open(&spec, opts)?;
    let first_open = t0.elapsed();
    let t1 = Instant::now();
    drop(dev);
    let last_close = t1.elapsed();
    Ok(OpenCloseTimings {
        first_open,
        last_close,
    })
}

#[cfg(test)]
use super::fixture;

#[cfg(test)]
mod tests {
    use super::*;

    use super::fixture::{Fixture, MTTY_UUID};

    const GPU: &str = "devices/pci0000:00/0000:00:02.0";
    const MTTY: &str = "devices/virtual/mtty/mtty";

    fn root(f: &Fixture) -> SysfsRoot {
        SysfsRoot::new(f.root())
    }

    fn mtty_uuid() -> Uuid {
        Uuid::parse_str(MTTY_UUID).unwrap()
    }

    /// Every `create` file of the fixture is still empty.
    fn assert_no_create_written(f: &Fixture) {
        for t in list_types(&root(f)).unwrap() {
            let c = t.sysfs_path.join("create");
            assert_eq!(
                fs::read_to_string(&c).unwrap(),
                "",
                "{} was written",
                c.display()
            );
        }
    }

    #[test]
    fn parents_need_not_be_pci() {
        let f = Fixture::samples();
        let parents = list_parents(&root(&f)).unwrap();
        let names: Vec<&str> = parents.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["0000:00:02.0", "mdpy", "mtty"]);
        let mtty = &parents[2];
        assert_eq!(mtty.subsystem.as_deref(), Some("mtty"));
        assert_eq!(mtty.types, ["mtty-1", "mtty-2"]);
        assert_eq!(mtty.sysfs_path, fs::canonicalize(f.path(MTTY)).unwrap());
        assert_eq!(parents[0].subsystem.as_deref(), Some("pci"));
        assert_eq!(
            parents[0].sysfs_path,
            fs::canonicalize(f.path(GPU)).unwrap()
        );
    }

    #[test]
    fn types_are_parsed_with_optional_fields() {
        let f = Fixture::samples();
        let types = list_types(&root(&f)).unwrap();
        let ids: Vec<String> = types.iter().map(MdevType::id).collect();
        assert_eq!(
            ids,
            [
                "0000:00:02.0/i915-GVTg_V5_4",
                "0000:00:02.0/i915-GVTg_V5_8",
                "mdpy/mdpy-vga",
                "mtty/mtty-1",
                "mtty/mtty-2"
            ]
        );
        let m2 = &types[4];
        assert_eq!(m2.name.as_deref(), Some("Dual port serial"));
        assert_eq!(m2.description, None);
        assert_eq!(m2.device_api.as_deref(), Some("vfio-pci"));
        assert_eq!(m2.available_instances, Some(12));
        assert_eq!(m2.devices, [mtty_uuid()]);
        assert!(m2.attributes.is_empty(), "{:?}", m2.attributes);
        assert!(types[3].devices.is_empty());

        let v58 = &types[1];
        assert_eq!(v58.name, None);
        assert_eq!(v58.available_instances, Some(0));

        let mdpy = &types[2];
        assert_eq!(
            mdpy.description.as_deref(),
            Some("virtual display, 1024x768")
        );
    }

    #[test]
    fn extra_type_attributes_are_kept_as_strings() {
        let f = Fixture::samples();
        let t = find_type(&root(&f), "0000:00:02.0", "i915-GVTg_V5_4").unwrap();
        let keys: Vec<&str> = t.attributes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "compatible_aggregator",
                "compatible_type",
                "dynamic_resources",
                "frl/enable",
                "migration_version",
                "software_version"
            ]
        );
        assert_eq!(t.attribute("software_version"), Some("1.2.0"));
        assert_eq!(
            t.attribute("compatible_type"),
            Some("i915-GVTg_V5_4,i915-GVTg_V5_2")
        );
        assert_eq!(t.attribute("frl/enable"), Some("0"));
        assert_eq!(t.attribute("not_there"), None);
        // A multi-line description keeps its inner newline, loses only the trailing one.
        assert_eq!(
            t.description.as_deref(),
            Some("low_gm_size: 128MB\nhigh_gm_size: 512MB")
        );
    }

    #[test]
    fn garbage_available_instances_is_unknown_not_zero() {
        let f = Fixture::samples();
        f.write(
            &format!("{MTTY}/mdev_supported_types/mtty-1/available_instances"),
            "lots\n",
        );
        let t = find_type(&root(&f), "mtty", "mtty-1").unwrap();
        assert_eq!(t.available_instances, None);
    }

    #[test]
    fn instances_are_resolved_through_links() {
        let f = Fixture::samples();
        let all = list_instances(&root(&f)).unwrap();
        assert_eq!(all.len(), 1);
        let i = &all[0];
        assert_eq!(i.uuid, mtty_uuid());
        assert_eq!(i.parent, "mtty");
        assert_eq!(i.mdev_type.as_deref(), Some("mtty-2"));
        assert_eq!(i.iommu_group, Some(3));
        assert_eq!(i.driver.as_deref(), Some("mtty"));
        assert_eq!(i.vfio_cdev.as_deref(), Some("vfio3"));
        assert_eq!(
            i.sysfs_path,
            fs::canonicalize(f.path(&format!("{MTTY}/{MTTY_UUID}"))).unwrap()
        );
        // Standard files (uevent, remove, power/, links) are not vendor attributes.
        let keys: Vec<&str> = i.attributes.keys().map(String::as_str).collect();
        assert_eq!(keys, ["vendor/sample_mdev_dev"]);
        assert_eq!(
            i.attributes["vendor/sample_mdev_dev"].as_deref(),
            Some(format!("This is MDEV {MTTY_UUID}").as_str())
        );
        assert_eq!(&instance(&root(&f), &mtty_uuid()).unwrap(), i);
    }

    #[test]
    fn per_instance_top_level_attributes_are_read() {
        let f = Fixture::samples();
        f.write(&format!("{MTTY}/{MTTY_UUID}/frame_rate_limiter"), "1\n");
        let i = instance(&root(&f), &mtty_uuid()).unwrap();
        assert_eq!(i.attributes["frame_rate_limiter"].as_deref(), Some("1"));
    }

    #[test]
    fn half_made_instance_has_parent_but_no_type() {
        let f = Fixture::samples();
        fs::remove_file(f.path(&format!("{MTTY}/{MTTY_UUID}/mdev_type"))).unwrap();
        let i = instance(&root(&f), &mtty_uuid()).unwrap();
        assert_eq!(i.parent, "mtty");
        assert_eq!(i.mdev_type, None);
    }

    #[test]
    fn missing_instance_is_reported() {
        let f = Fixture::samples();
        let u = Uuid::new_v4();
        match instance(&root(&f), &u) {
            Err(SysfsError::NoSuchInstance { uuid, .. }) => assert_eq!(uuid, u),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            remove(&root(&f), &u),
            Err(SysfsError::NoSuchInstance { .. })
        ));
    }

    #[test]
    fn empty_tree_has_nothing_and_says_why_on_create() {
        let dir = tempfile::tempdir().unwrap();
        let r = SysfsRoot::new(dir.path());
        assert!(list_types(&r).unwrap().is_empty());
        assert!(list_instances(&r).unwrap().is_empty());
        let e = create(&r, "mtty", "mtty-1", None).unwrap_err();
        assert!(matches!(e, SysfsError::UnknownParent { .. }));
        assert!(
            e.to_string().contains("no mdev parents are registered"),
            "{e}"
        );
    }

    #[test]
    fn uuid_forms() {
        assert_eq!(parse_uuid(MTTY_UUID).unwrap(), mtty_uuid());
        assert_eq!(
            parse_uuid("11111111-2222-3333-4444-55555555555A").unwrap(),
            Uuid::parse_str("11111111-2222-3333-4444-55555555555a").unwrap()
        );
        for bad in [
            "",
            "not-a-uuid",
            "1111111122223333444455555555555555", // simple form: the kernel wants hyphens
            "11111111222233334444555555555555",
            "11111111-2222-3333-4444-55555555555g",
            "111111112-222-3333-4444-555555555555",
            "{11111111-2222-3333-4444-555555555555}",
            "11111111-2222-3333-4444-555555555555\n",
        ] {
            match parse_uuid(bad) {
                Err(SysfsError::InvalidUuid { input, .. }) => assert_eq!(input, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn create_writes_exactly_the_uuid() {
        let f = Fixture::samples();
        let u = Uuid::parse_str("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee").unwrap();
        let got = create(&root(&f), "mtty", "mtty-1", Some(u)).unwrap();
        assert_eq!(got, u);
        assert_eq!(
            f.read(&format!("{MTTY}/mdev_supported_types/mtty-1/create")),
            "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
        );
        // The other types were not touched.
        assert_eq!(
            f.read(&format!("{MTTY}/mdev_supported_types/mtty-2/create")),
            ""
        );
    }

    #[test]
    fn create_without_uuid_generates_a_v4() {
        let f = Fixture::samples();
        let c = create_timed(&root(&f), "mdpy", "mdpy-vga", None).unwrap();
        assert_eq!(c.uuid.get_version_num(), 4);
        assert_eq!(c.type_before.available_instances, Some(4));
        let written = f.read("devices/virtual/mdpy/mdpy/mdev_supported_types/mdpy-vga/create");
        assert_eq!(parse_uuid(&written).unwrap(), c.uuid);
    }

    #[test]
    fn unknown_type_lists_types_and_writes_nothing() {
        let f = Fixture::samples();
        let e = create(&root(&f), "mtty", "mtty-3", None).unwrap_err();
        match &e {
            SysfsError::UnknownType {
                parent,
                mdev_type,
                known,
            } => {
                assert_eq!(parent, "mtty");
                assert_eq!(mdev_type, "mtty-3");
                assert_eq!(known, &["mtty-1", "mtty-2"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("known types: mtty-1, mtty-2"), "{e}");
        assert_no_create_written(&f);
    }

    #[test]
    fn unknown_parent_lists_parents_and_writes_nothing() {
        let f = Fixture::samples();
        for p in ["nvidia", "../..", "mtty/mdev_supported_types", ""] {
            match create(&root(&f), p, "mtty-1", None) {
                Err(SysfsError::UnknownParent { parent, known }) => {
                    assert_eq!(parent, p);
                    assert_eq!(known, ["0000:00:02.0", "mdpy", "mtty"]);
                }
                other => panic!("{p:?}: {other:?}"),
            }
        }
        // A type name cannot climb out of the parent either.
        assert!(matches!(
            create(&root(&f), "mtty", "../mdev_supported_types/mtty-1", None),
            Err(SysfsError::UnknownType { .. })
        ));
        assert_no_create_written(&f);
    }

    #[test]
    fn duplicate_uuid_is_refused_before_writing() {
        let f = Fixture::samples();
        let e = create(&root(&f), "mtty", "mtty-1", Some(mtty_uuid())).unwrap_err();
        match &e {
            SysfsError::DuplicateUuid { uuid, existing } => {
                assert_eq!(uuid, &mtty_uuid());
                assert_eq!(existing.as_deref(), Some("mtty/mtty-2"));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().starts_with("duplicate UUID"), "{e}");
        assert_no_create_written(&f);
    }

    #[test]
    fn no_capacity_is_refused_before_writing() {
        let f = Fixture::samples();
        let e = create(&root(&f), "0000:00:02.0", "i915-GVTg_V5_8", None).unwrap_err();
        assert!(matches!(
            e,
            SysfsError::NoCapacity {
                available: Some(0),
                source: None,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "no capacity left on 0000:00:02.0/i915-GVTg_V5_8 (available_instances = 0)"
        );
        assert_no_create_written(&f);
    }

    #[test]
    fn kernel_enospc_maps_to_no_capacity() {
        // /dev/full fails every write with ENOSPC, as a parent out of resources does.
        let f = Fixture::samples();
        let c = format!("{MTTY}/mdev_supported_types/mtty-1/create");
        fs::remove_file(f.path(&c)).unwrap();
        f.link(&c, "/dev/full");
        let e = create(&root(&f), "mtty", "mtty-1", None).unwrap_err();
        match &e {
            SysfsError::NoCapacity {
                parent,
                mdev_type,
                available,
                source: Some(s),
            } => {
                assert_eq!((parent.as_str(), mdev_type.as_str()), ("mtty", "mtty-1"));
                assert_eq!(*available, Some(24));
                assert_eq!(s.raw_os_error(), Some(libc::ENOSPC));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string().starts_with("no capacity left on mtty/mtty-1"),
            "{e}"
        );
        assert_eq!(e.errno(), Some(libc::ENOSPC));
    }

    #[test]
    fn type_without_create_is_malformed() {
        let f = Fixture::samples();
        fs::remove_file(f.path(&format!("{MTTY}/mdev_supported_types/mtty-1/create"))).unwrap();
        assert!(matches!(
            create(&root(&f), "mtty", "mtty-1", None),
            Err(SysfsError::Malformed { .. })
        ));
        // And nothing was created in its place.
        assert!(!f
            .path(&format!("{MTTY}/mdev_supported_types/mtty-1/create"))
            .exists());
    }

    #[test]
    fn remove_writes_one() {
        let f = Fixture::samples();
        remove(&root(&f), &mtty_uuid()).unwrap();
        assert_eq!(f.read(&format!("{MTTY}/{MTTY_UUID}/remove")), "1");
    }

    #[test]
    fn errnos_become_words() {
        let p = Path::new("/sys/x");
        let busy = SysfsError::from_io("remove u", p, io::Error::from_raw_os_error(libc::EBUSY));
        assert!(matches!(busy, SysfsError::Busy { .. }));
        assert!(busy.to_string().contains("busy (in use or open)"), "{busy}");
        let perm = SysfsError::from_io("create u", p, io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(perm, SysfsError::Permission { .. }));
        assert!(perm.to_string().contains("permission denied"), "{perm}");
        assert!(perm.to_string().contains("run as root"), "{perm}");
        let other = SysfsError::from_io("create u", p, io::Error::from_raw_os_error(libc::ENODEV));
        assert!(
            other.to_string().contains("hint: the parent driver"),
            "{other}"
        );
        assert_eq!(other.errno(), Some(libc::ENODEV));
    }

    #[test]
    fn json_shape() {
        let f = Fixture::samples();
        let t = find_type(&root(&f), "mtty", "mtty-2").unwrap();
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["parent"], "mtty");
        assert_eq!(v["type"], "mtty-2");
        assert_eq!(v["available_instances"], 12);
        assert_eq!(v["description"], serde_json::Value::Null);
        assert_eq!(v["devices"], serde_json::json!([MTTY_UUID]));
        let i = instance(&root(&f), &mtty_uuid()).unwrap();
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["uuid"], MTTY_UUID);
        assert_eq!(v["type"], "mtty-2");
        assert_eq!(v["iommu_group"], 3);
    }
}
