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
//!
//! Parents and types are in `types.rs`, instances in `instance.rs`, creating and removing in
//! `lifecycle.rs`; the helpers they share are here.

mod instance;
mod lifecycle;
mod types;

pub(crate) use instance::instance_dir;
pub use instance::{exists, instance, list_instances, MdevInstance};
pub use lifecycle::{create, create_timed, remove, remove_timed, Created};
pub use types::{
    find_type, list_parents, list_types, parent_names, parent_types, types_named, MdevParent,
    MdevType,
};

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::{dir_names, read_attr_opt, Result, SysfsError};

/// `class/mdev_bus`: one entry per registered parent.
pub const PARENTS_DIR: &str = "class/mdev_bus";
/// `bus/mdev/devices`: one entry per instance.
pub const INSTANCES_DIR: &str = "bus/mdev/devices";

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

/// An I/O error on `path` while doing `what`.
fn io_err(what: impl Into<String>, path: &Path, e: io::Error) -> SysfsError {
    SysfsError::from_io(what, path, e)
}

/// `path` with its links resolved, or as given when that fails (half-made nodes).
fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Checks that a name is one path component (no `/`, `.`, `..`), so user input cannot escape
/// the directory it names an entry of.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
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

#[cfg(test)]
use super::fixture;

#[cfg(test)]
mod tests;
