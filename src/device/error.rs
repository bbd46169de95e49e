//! Errors of the device layer, with the context a bring-up engineer needs.

use std::io;

/// Result of device-layer calls.
pub type Result<T> = std::result::Result<T, DeviceError>;

/// Everything that can go wrong opening or driving a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A device spec could not be parsed or does not name an existing device.
    #[error("invalid device {spec:?}: {reason}")]
    InvalidSpec {
        /// The spec as given.
        spec: String,
        /// Why it was refused.
        reason: String,
    },

    /// Opening the device (or its group, container, iommufd) failed.
    #[error("{device}: cannot {what}: {source}{}", hint_suffix(.hint))]
    Open {
        /// Device name.
        device: String,
        /// The step that failed ("open /dev/vfio/12", "bind to iommufd", ...).
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
        /// A hint for the common cause, or empty.
        hint: String,
    },

    /// The IOMMU group has members still bound to host drivers.
    #[error("{device}: IOMMU group {group} is not viable{}; bind every member to vfio-pci (or unbind it) first", blockers_suffix(.blockers))]
    GroupNotViable {
        /// Device name.
        device: String,
        /// Group number.
        group: u32,
        /// Group members bound to a driver other than vfio-pci (`0000:00:1f.3 (snd_hda_intel)`).
        blockers: Vec<String>,
    },

    /// A region access failed.
    #[error("{device}: {op} of {len} byte(s) at {offset:#x} in region {region} failed: {source}{}", hint_suffix(.hint))]
    Region {
        /// Device name.
        device: String,
        /// Region index and name (`0 (BAR0)`).
        region: String,
        /// "read", "write" or "mmap".
        op: &'static str,
        /// Offset inside the region.
        offset: u64,
        /// Access length.
        len: u64,
        /// The OS error.
        #[source]
        source: io::Error,
        /// A hint, or empty.
        hint: String,
    },

    /// No such region / IRQ index, or the region lacks the needed capability.
    #[error("{device}: {what}")]
    NoSuch {
        /// Device name.
        device: String,
        /// What is missing ("region 7", "IRQ index 3 has no vector 4", "region 2 is not mmap-able").
        what: String,
    },

    /// An access fell outside a region or mapping.
    #[error("access of {len} byte(s) at {offset:#x} is outside {what} of {size} byte(s)")]
    OutOfBounds {
        /// The region or mapping.
        what: String,
        /// Offset asked for.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// Its size.
        size: u64,
    },

    /// A register access was not aligned to its width.
    #[error("offset {offset:#x} is not aligned to the access width of {width} byte(s)")]
    Misaligned {
        /// Offset asked for.
        offset: u64,
        /// Access width.
        width: usize,
    },

    /// An interrupt operation failed.
    #[error("{device}: {op} on IRQ index {index} failed: {source}")]
    Irq {
        /// Device name.
        device: String,
        /// IRQ index.
        index: u32,
        /// What was attempted.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A migration call failed.
    #[error("{device}: {op}{} failed: {source}{}", state_suffix(.state), hint_suffix(.hint))]
    Migration {
        /// Device name.
        device: String,
        /// The call ("set state", "read data", "precopy info", ...).
        op: &'static str,
        /// The state involved (target of a transition, or the current one).
        state: Option<super::MigState>,
        /// The OS error.
        #[source]
        source: io::Error,
        /// A hint, or empty.
        hint: String,
    },

    /// A DMA map or unmap failed.
    #[error("{device}: DMA {op} of {len:#x} byte(s) at IOVA {iova:#x} failed: {source}{}", hint_suffix(.hint))]
    Dma {
        /// Device name (or the IOMMU context).
        device: String,
        /// "map" or "unmap".
        op: &'static str,
        /// IO virtual address.
        iova: u64,
        /// Length.
        len: u64,
        /// The OS error.
        #[source]
        source: io::Error,
        /// A hint (memlock limit, IOVA outside the allowed ranges...), or empty.
        hint: String,
    },

    /// The device or back end does not offer this.
    #[error("{device}: {what} is not supported")]
    Unsupported {
        /// Device name.
        device: String,
        /// The feature.
        what: String,
    },

    /// A caller passed something that cannot work.
    #[error("{0}")]
    InvalidArgument(String),

    /// Another OS-level failure, with context.
    #[error("{device}: {what}: {source}")]
    Io {
        /// Device name.
        device: String,
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl DeviceError {
    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DeviceError::Open { source, .. }
            | DeviceError::Region { source, .. }
            | DeviceError::Irq { source, .. }
            | DeviceError::Migration { source, .. }
            | DeviceError::Dma { source, .. }
            | DeviceError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn hint_suffix(h: &str) -> String {
    if h.is_empty() {
        String::new()
    } else {
        format!(" (hint: {h})")
    }
}

fn blockers_suffix(b: &[String]) -> String {
    if b.is_empty() {
        String::new()
    } else {
        format!(" (members still bound to host drivers: {})", b.join(", "))
    }
}

fn state_suffix(s: &Option<super::MigState>) -> String {
    match s {
        Some(s) => format!(" ({s})"),
        None => String::new(),
    }
}

/// A one-line hint for the common causes behind an errno seen on VFIO paths.
pub fn errno_hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "permission denied: run as root, or chown the /dev/vfio group file (and /dev/iommu, /dev/vfio/devices/*) to your user"
        }
        Some(libc::EBUSY) => {
            "device busy: another process (QEMU, another harness) has it open, or the group is already attached to a container"
        }
        Some(libc::ENOMEM) => {
            "cannot pin memory: raise the memlock limit (ulimit -l, or LimitMEMLOCK) above the DMA size"
        }
        Some(libc::ENOENT) | Some(libc::ENODEV) => {
            "no such device: is the vfio module loaded, the device bound to vfio-pci, the mdev created?"
        }
        Some(libc::ENOTTY) => "the kernel or driver does not implement this ioctl",
        Some(libc::EINVAL) => "the kernel refused the arguments (state not reachable, bad offset or size)",
        Some(libc::EPROTO) => {
            "the device refused the migration data: incompatible stream format or software version (see `vfio-harness compat`)"
        }
        _ => "",
    }
}
