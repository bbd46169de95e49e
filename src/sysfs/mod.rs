//! sysfs discovery: mediated-device parents, types and instances; PCI devices and groups.
//!
//! Every lookup goes through a [`SysfsRoot`], so unit tests run on fixture trees.

pub mod attrs;
pub mod device;

pub mod mdev;
pub mod mdevctl;

/// Fixture sysfs trees for the crate's unit tests (also included by the CLI tests).
#[cfg(test)]
#[path = "../../tests/fixtures/sysfs/fixture.rs"]
pub(crate) mod fixture;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The root of a sysfs tree: `/sys` on a real system, a fixture directory in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysfsRoot(PathBuf);

impl Default for SysfsRoot {
    fn default() -> Self {
        SysfsRoot(PathBuf::from("/sys"))
    }
}

impl SysfsRoot {
    /// A root at `path` (`/sys`, or a fixture).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SysfsRoot(path.into())
    }

    /// The root from open options (`/sys` when none is set).
    pub fn from_option(p: Option<&Path>) -> Self {
        p.map(SysfsRoot::new).unwrap_or_default()
    }

    /// The root path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `root/rel` (`rel` given without a leading slash, e.g. `bus/mdev/devices`).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.join(rel)
    }
}

/// Result of sysfs-layer calls.
pub type Result<T> = std::result::Result<T, SysfsError>;

/// Everything that can go wrong discovering, creating or removing devices through sysfs.
///
/// Kernel errnos from attribute writes are mapped to words: no capacity (`ENOSPC`, `EDQUOT`,
/// `EUSERS`), duplicate UUID (`EEXIST`), busy (`EBUSY`), permissions (`EACCES`, `EPERM`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SysfsError {
    /// A string given as a UUID is not one. Nothing was written.
    #[error("{input:?} is not a UUID ({reason}); expected the form 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001")]
    InvalidUuid {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No mdev parent by that name.
    #[error("no mdev parent {parent:?}; {}", known_list("parents", .known, NO_PARENTS_HINT))]
    UnknownParent {
        /// The parent asked for.
        parent: String,
        /// The parents that exist.
        known: Vec<String>,
    },

    /// The parent has no type by that name.
    #[error("mdev parent {parent:?} has no type {mdev_type:?}; {}", known_list("types", .known, "it registers no types"))]
    UnknownType {
        /// The parent.
        parent: String,
        /// The type asked for.
        mdev_type: String,
        /// The parent's types.
        known: Vec<String>,
    },

    /// No mediated device with that UUID exists.
    #[error("no mediated device {uuid} (not in {})", .dir.display())]
    NoSuchInstance {
        /// The UUID asked for.
        uuid: uuid::Uuid,
        /// Where it was looked for.
        dir: PathBuf,
    },

    /// A mediated device with that UUID already exists (`EEXIST` from `create`, or found before
    /// writing).
    #[error("duplicate UUID: mediated device {uuid} already exists{}", existing_suffix(.existing))]
    DuplicateUuid {
        /// The UUID.
        uuid: uuid::Uuid,
        /// `parent/type` of the existing instance, when known.
        existing: Option<String>,
    },

    /// The type has no capacity left (`available_instances` is 0, or the kernel refused with
    /// `ENOSPC`/`EDQUOT`/`EUSERS`).
    #[error("no capacity left on {parent}/{mdev_type}{}{}", available_suffix(.available), errno_suffix(.source))]
    NoCapacity {
        /// The parent.
        parent: String,
        /// The type.
        mdev_type: String,
        /// `available_instances` as read, when known.
        available: Option<u64>,
        /// The kernel's error, when the refusal came from the write.
        #[source]
        source: Option<io::Error>,
    },

    /// The device is in use (`EBUSY`): open by a VFIO user, or being changed concurrently.
    #[error(
        "{what}: device is busy (in use or open): {source}; close every user (VMM, harness) first"
    )]
    Busy {
        /// What was attempted (`remove 83b8...`).
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Permission denied (`EACCES`, `EPERM`).
    #[error("{what}: permission denied on {}: {source}; run as root (sysfs attributes are root-writable only)", .path.display())]
    Permission {
        /// What was attempted.
        what: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Reading or writing a sysfs file failed for another reason.
    #[error("{what}: {}: {source}{}", .path.display(), hint_suffix(.hint))]
    Io {
        /// What was attempted (`create mtty/mtty-2`, `read available_instances`).
        what: String,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
        /// A hint for the errno, or empty.
        hint: String,
    },

    /// A sysfs file or link does not look as the kernel ABI says it should.
    #[error("{}: {reason}", .path.display())]
    Malformed {
        /// The file or link.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

const NO_PARENTS_HINT: &str = "no mdev parents are registered (is the vendor driver loaded? \
     /sys/class/mdev_bus is empty or missing)";

fn known_list(what: &str, known: &[String], empty: &str) -> String {
    if known.is_empty() {
        empty.to_string()
    } else {
        format!("known {what}: {}", known.join(", "))
    }
}

fn existing_suffix(e: &Option<String>) -> String {
    match e {
        Some(t) => format!(" (an instance of {t})"),
        None => String::new(),
    }
}

fn available_suffix(a: &Option<u64>) -> String {
    match a {
        Some(n) => format!(" (available_instances = {n})"),
        None => String::new(),
    }
}

fn errno_suffix(e: &Option<io::Error>) -> String {
    match e {
        Some(e) => format!(": the kernel refused: {e}"),
        None => String::new(),
    }
}

fn hint_suffix(h: &str) -> String {
    if h.is_empty() {
        String::new()
    } else {
        format!(" (hint: {h})")
    }
}

impl SysfsError {
    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            SysfsError::Busy { source, .. }
            | SysfsError::Permission { source, .. }
            | SysfsError::Io { source, .. } => source.raw_os_error(),
            SysfsError::NoCapacity {
                source: Some(s), ..
            } => s.raw_os_error(),
            _ => None,
        }
    }

    /// Maps an OS error from an attribute access to the matching variant (busy, permissions)
    /// or to [`SysfsError::Io`] with a hint.
    pub fn from_io(what: impl Into<String>, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let what = what.into();
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::EBUSY) => SysfsError::Busy { what, source },
            Some(libc::EACCES) | Some(libc::EPERM) => SysfsError::Permission { what, path, source },
            e => {
                let hint = match e {
                    Some(libc::ENOENT) => {
                        "the node vanished: was the device or its parent driver removed meanwhile?"
                    }
                    Some(libc::ENODEV) => "the parent driver is being unregistered",
                    Some(libc::EINVAL) => "the kernel refused the value written",
                    Some(libc::ENOMEM) => "the kernel is out of memory",
                    Some(libc::EAGAIN) => {
                        "the device is being created or removed concurrently; retry"
                    }
                    _ => "",
                };
                SysfsError::Io {
                    what,
                    path,
                    source,
                    hint: hint.to_string(),
                }
            }
        }
    }
}

/// Largest attribute read (sysfs attributes are at most one page; fixtures could be anything).
const MAX_ATTR: u64 = 64 * 1024;

/// Reads a sysfs attribute as text, without its trailing newline.
pub fn read_attr(path: &Path) -> io::Result<String> {
    let mut s = String::new();
    fs::File::open(path)?
        .take(MAX_ATTR)
        .read_to_string(&mut s)?;
    let t = s.strip_suffix('\n').unwrap_or(&s);
    Ok(t.to_string())
}

/// Reads an optional attribute: `None` when it is absent, write-only or unreadable
/// (vendor attributes are never depended on).
pub fn read_attr_opt(path: &Path) -> Option<String> {
    read_attr(path).ok()
}

/// The last component of the target of a symlink (`iommu_group` -> `12`), `None` when the
/// link is absent.
pub fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Writes `value` to an existing sysfs attribute in one `write(2)` (sysfs stores take the
/// whole buffer at once). Never creates the file.
pub fn write_attr(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// Directory entry names, sorted; an absent directory is empty.
pub fn dir_names(dir: &Path) -> io::Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for ent in rd {
        names.push(ent?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}
