//! Per-instance attributes of mediated devices: the vendor knobs written between create and
//! first open (an aggregation count, a frame-rate or DMA rate limiter, a priority).
//!
//! Attributes are named by their path relative to the instance directory, as mdevctl names
//! them (`vendor/aggregate`, or `frame_rate_limiter` at the top level); a bare name
//! (`aggregate`) resolves to the one attribute of that name in any group. Only attributes the
//! instance really has (files found in its directory, see [`MdevInstance::attributes`]) can be
//! written, so standard files (`remove`, `uevent`, links) never are, and a name cannot climb
//! out of the instance directory.
//!
//! [`create_configured`] creates an instance and writes its attributes in the order given,
//! before anything can open it. When one is refused (by the kernel, or because the instance
//! lacks it), the half-made instance is removed again and the error names the attribute, the
//! value and the errno.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use uuid::Uuid;

use super::mdev::{self, Created, MdevInstance};
use super::{read_attr_opt, write_attr, SysfsError, SysfsRoot};

/// One `NAME=VALUE` assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// The attribute: a path relative to the instance directory (`vendor/aggregate`) or a
    /// bare name (`aggregate`).
    pub name: String,
    /// The text written, verbatim (sysfs stores accept it with or without a newline).
    pub value: String,
}

impl Assignment {
    /// An assignment of `value` to `name`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Assignment {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl FromStr for Assignment {
    type Err = AttrError;

    /// Parses `NAME=VALUE` (split at the first `=`; the value may be empty or hold `=`).
    fn from_str(s: &str) -> Result<Self, AttrError> {
        match s.split_once('=') {
            Some((n, v)) if !n.trim().is_empty() => Ok(Assignment::new(n.trim(), v)),
            _ => Err(AttrError::Syntax {
                input: s.to_string(),
            }),
        }
    }
}

impl std::fmt::Display for Assignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// One attribute written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Written {
    /// The attribute, as a path relative to the instance directory.
    pub attribute: String,
    /// The value written.
    pub value: String,
    /// The value read back right after the write (the driver's rendering), `None` when
    /// unreadable.
    pub readback: Option<String>,
}

/// An instance created and configured by [`create_configured`].
#[derive(Clone, Debug)]
pub struct Configured {
    /// The creation (UUID, the type as it was before, the `create` write's duration).
    pub created: Created,
    /// The attributes written, in order.
    pub attributes: Vec<Written>,
}

/// Errors of attribute reads and writes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttrError {
    /// Finding or creating the instance failed (no such instance, unknown parent or type, no
    /// capacity, ...).
    #[error(transparent)]
    Sysfs(#[from] SysfsError),

    /// An argument is not `NAME=VALUE`. Nothing was written.
    #[error("{input:?} is not an attribute assignment NAME=VALUE (e.g. vendor/aggregate=2)")]
    Syntax {
        /// What was given.
        input: String,
    },

    /// The instance has no attribute by that name. Nothing was written.
    #[error("mediated device {uuid} has no attribute {name:?}; {}", writable_list(.writable))]
    Unknown {
        /// The instance.
        uuid: Uuid,
        /// The name asked for.
        name: String,
        /// The instance's writable attributes.
        writable: Vec<String>,
    },

    /// A bare name matches attributes in several groups. Nothing was written.
    #[error("attribute name {name:?} is ambiguous on {uuid} ({}); give its group", .candidates.join(", "))]
    Ambiguous {
        /// The instance.
        uuid: Uuid,
        /// The name asked for.
        name: String,
        /// The attributes it matches.
        candidates: Vec<String>,
    },

    /// The attribute exists but is read-only (its mode has no write bit). Nothing was written.
    #[error("attribute {attribute} of {uuid} is read-only")]
    ReadOnly {
        /// The instance.
        uuid: Uuid,
        /// The attribute.
        attribute: String,
    },

    /// The kernel refused a write. Attributes before it in the list were written.
    #[error("the kernel refused {attribute}={value:?} on {uuid}: {source} [{}]{}{}",
        errno_label(.source), refusal_hint(.source), written_suffix(.written))]
    Refused {
        /// The instance.
        uuid: Uuid,
        /// The attribute refused.
        attribute: String,
        /// The value refused.
        value: String,
        /// The kernel's error (its errno).
        #[source]
        source: io::Error,
        /// `attribute=value` of the writes that succeeded before this one.
        written: Vec<String>,
    },

    /// Configuring a freshly created instance failed: the instance was removed again (or
    /// removing it failed too, said in `removal_error`).
    #[error("{cause}; {}", removal_text(.uuid, .removal_error))]
    CreateAborted {
        /// The instance that was created.
        uuid: Uuid,
        /// Why configuring it failed.
        #[source]
        cause: Box<AttrError>,
        /// `None` when the instance is gone; otherwise why removing it failed (the kernel's
        /// refusal, or [`SysfsError::Malformed`] for a node still there after its
        /// `remove` was written).
        removal_error: Option<SysfsError>,
    },
}

impl AttrError {
    /// The errno of a kernel refusal (also inside [`AttrError::CreateAborted`]).
    pub fn errno(&self) -> Option<i32> {
        match self {
            AttrError::Refused { source, .. } => source.raw_os_error(),
            AttrError::CreateAborted { cause, .. } => cause.errno(),
            AttrError::Sysfs(e) => e.errno(),
            _ => None,
        }
    }

    /// The attribute this error is about, when it is about one.
    pub fn attribute(&self) -> Option<&str> {
        match self {
            AttrError::Refused { attribute, .. } | AttrError::ReadOnly { attribute, .. } => {
                Some(attribute)
            }
            AttrError::Unknown { name, .. } | AttrError::Ambiguous { name, .. } => Some(name),
            AttrError::CreateAborted { cause, .. } => cause.attribute(),
            _ => None,
        }
    }
}

fn writable_list(w: &[String]) -> String {
    if w.is_empty() {
        "it has no writable attributes".to_string()
    } else {
        format!("writable attributes: {}", w.join(", "))
    }
}

fn written_suffix(w: &[String]) -> String {
    if w.is_empty() {
        String::new()
    } else {
        format!(" (written before it: {})", w.join(", "))
    }
}

fn removal_text(uuid: &Uuid, e: &Option<SysfsError>) -> String {
    match e {
        None => format!("removed the half-made instance {uuid}; nothing is left behind"),
        Some(e) => format!(
            "removing the half-made instance {uuid} failed too: {e}; remove it by hand \
             (echo 1 > /sys/bus/mdev/devices/{uuid}/remove)"
        ),
    }
}

fn errno_label(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_name(n)
            .map(str::to_string)
            .unwrap_or_else(|| format!("errno {n}")),
        None => "no errno".to_string(),
    }
}

fn refusal_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EBUSY) => {
            "; the device is open, or the vendor fixes this attribute at first open \
             (set it between create and the first open)"
        }
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EUSERS) => {
            "; the parent lacks the resources for this value"
        }
        Some(libc::EINVAL) | Some(libc::ERANGE) => "; the vendor driver does not accept this value",
        Some(libc::EACCES) | Some(libc::EPERM) => "; run as root",
        _ => "",
    }
}

/// The symbolic name of an errno (`ENOSPC`), for the ones attribute writes return.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EDQUOT => "EDQUOT",
        libc::EUSERS => "EUSERS",
        libc::EPROTO => "EPROTO",
        libc::ENXIO => "ENXIO",
        libc::EISDIR => "EISDIR",
        // The kernel-internal ENOTSUPP leaks out of some drivers.
        524 => "ENOTSUPP",
        _ => return None,
    })
}

fn is_writable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| !m.is_dir() && m.permissions().mode() & 0o222 != 0)
        .unwrap_or(false)
}

/// The instance's attributes whose mode allows writing, sorted (sysfs gives read-only
/// attributes mode 0444, writable ones 0644 or 0200).
pub fn writable(inst: &MdevInstance) -> Vec<String> {
    inst.attributes
        .keys()
        .filter(|k| is_writable(&inst.sysfs_path.join(k)))
        .cloned()
        .collect()
}

/// Resolves a name to one of the instance's attributes: an exact relative path, else the one
/// attribute whose last component is `name`.
pub fn resolve(inst: &MdevInstance, name: &str) -> Result<String, AttrError> {
    if inst.attributes.contains_key(name) {
        return Ok(name.to_string());
    }
    let candidates: Vec<String> = inst
        .attributes
        .keys()
        .filter(|k| k.rsplit('/').next() == Some(name))
        .cloned()
        .collect();
    match candidates.len() {
        1 => Ok(candidates.into_iter().next().unwrap_or_default()),
        0 => Err(AttrError::Unknown {
            uuid: inst.uuid,
            name: name.to_string(),
            writable: writable(inst),
        }),
        _ => Err(AttrError::Ambiguous {
            uuid: inst.uuid,
            name: name.to_string(),
            candidates,
        }),
    }
}

/// Writes attributes of an existing instance, in order.
///
/// Every name is resolved and checked writable before the first write, so an unknown or
/// read-only name writes nothing. A kernel refusal stops at that attribute
/// ([`AttrError::Refused`] lists the ones written before it); vendors typically refuse
/// changes to an open device with `EBUSY`.
pub fn set(
    root: &SysfsRoot,
    uuid: &Uuid,
    assignments: &[Assignment],
) -> Result<Vec<Written>, AttrError> {
    set_on(&mdev::instance(root, uuid)?, assignments)
}

/// [`set`] on an instance already read.
pub fn set_on(inst: &MdevInstance, assignments: &[Assignment]) -> Result<Vec<Written>, AttrError> {
    let uuid = &inst.uuid;
    let mut resolved = Vec::with_capacity(assignments.len());
    for a in assignments {
        let attr = resolve(inst, &a.name)?;
        if !is_writable(&inst.sysfs_path.join(&attr)) {
            return Err(AttrError::ReadOnly {
                uuid: *uuid,
                attribute: attr,
            });
        }
        resolved.push(attr);
    }
    let mut done: Vec<Written> = Vec::with_capacity(assignments.len());
    for (a, attribute) in assignments.iter().zip(resolved) {
        let path = inst.sysfs_path.join(&attribute);
        if let Err(source) = write_attr(&path, &a.value) {
            return Err(AttrError::Refused {
                uuid: *uuid,
                attribute,
                value: a.value.clone(),
                source,
                written: done
                    .iter()
                    .map(|w| format!("{}={}", w.attribute, w.value))
                    .collect(),
            });
        }
        done.push(Written {
            attribute,
            value: a.value.clone(),
            readback: read_attr_opt(&path),
        });
    }
    Ok(done)
}

/// Creates an instance (see [`mdev::create_timed`]) and writes `attrs` to it in order,
/// before anything can open it.
///
/// When an attribute cannot be written (unknown, read-only, refused by the kernel), the new
/// instance is removed again and [`AttrError::CreateAborted`] says which attribute failed and
/// why, and whether the removal worked. A failed create writes no attribute.
pub fn create_configured(
    root: &SysfsRoot,
    parent: &str,
    mdev_type: &str,
    uuid: Option<Uuid>,
    attrs: &[Assignment],
) -> Result<Configured, AttrError> {
    let created = mdev::create_timed(root, parent, mdev_type, uuid)?;
    if attrs.is_empty() {
        return Ok(Configured {
            created,
            attributes: Vec::new(),
        });
    }
    match set(root, &created.uuid, attrs) {
        Ok(attributes) => Ok(Configured {
            created,
            attributes,
        }),
        Err(cause) => Err(abort(root, created.uuid, cause)),
    }
}

/// Removes an instance this process created and wraps the reason.
fn abort(root: &SysfsRoot, uuid: Uuid, cause: AttrError) -> AttrError {
    let removal_error = match mdev::remove(root, &uuid) {
        Ok(()) if !mdev::exists(root, &uuid) => None,
        Ok(()) => Some(SysfsError::Malformed {
            path: mdev::instance_dir(root, &uuid),
            reason: "the node is still there after writing its remove attribute".into(),
        }),
        // It never appeared (the kernel accepted the create but made no node).
        Err(SysfsError::NoSuchInstance { .. }) => None,
        Err(e) => Some(e),
    };
    AttrError::CreateAborted {
        uuid,
        cause: Box::new(cause),
        removal_error,
    }
}

#[cfg(test)]
#[path = "attrs_tests.rs"]
mod tests;
