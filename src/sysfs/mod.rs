//! sysfs discovery: mediated-device parents, types and instances; PCI devices and groups.
//!
//! Every lookup goes through a [`SysfsRoot`], so unit tests run on fixture trees.

pub mod device;

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
