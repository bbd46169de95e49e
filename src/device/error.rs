//! Errors of the device layer, with the context a bring-up engineer needs.

use std::io;

/// Result of device-layer calls.
pub type Result<T> = std::result::Result<T, DeviceError>;

/// Everything that can go wrong opening or driving a device.
///
/// Errors that carry an OS error also carry advice for its common cause, computed from the
/// variant and the errno ([`DeviceError::hint`]) and shown at the end of the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    #[error("{device}: cannot {what}: {source}{}{}", detail_suffix(.detail), hint_suffix(self.hint()))]
    Open {
        /// Device name.
        device: String,
        /// The step that failed ("open /dev/vfio/12", "bind to iommufd", ...).
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
        /// What the pre-checks found (`no /dev/iommu: the kernel lacks CONFIG_IOMMUFD ...`).
        detail: Option<String>,
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
    #[error("{device}: {op} of {len} byte(s) at {offset:#x} in region {region} failed: {source}{}{}", detail_suffix(.detail), hint_suffix(self.hint()))]
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
        /// What the back end knows beyond the errno (the simulator's reason).
        detail: Option<String>,
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
    #[error("{device}: {op}{} failed: {source}{}{}", state_suffix(.state), detail_suffix(.detail), hint_suffix(self.hint()))]
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
        /// What the back end knows beyond the errno (the simulator's reason, the state a v1
        /// device reads after a refused write).
        detail: Option<String>,
    },

    /// A DMA map or unmap failed.
    #[error("{device}: DMA {op} of {len:#x} byte(s) at IOVA {iova:#x} failed: {source}{}", hint_suffix(self.hint()))]
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

    /// Advice for the common cause of this error, from its variant, operation and errno;
    /// `None` when there is none, or when the back end explained the failure itself
    /// (`detail`), which is more precise than advice for a bare errno.
    pub fn hint(&self) -> Option<&'static str> {
        let errno = self.errno();
        let h = match self {
            DeviceError::Open { detail: None, .. } | DeviceError::Region { detail: None, .. } => {
                errno_hint(errno)
            }
            DeviceError::Migration { detail: None, .. } => match errno {
                Some(libc::ENOTTY) => "the device has no migration v2 support",
                n => errno_hint(n),
            },
            DeviceError::Dma { op, .. } => match errno {
                Some(libc::ENOMEM) | Some(libc::EPERM) if *op == "map" => {
                    "cannot pin the pages: raise the memlock limit (ulimit -l) above the DMA size"
                }
                Some(libc::EINVAL) | Some(libc::ERANGE) if *op == "map" => {
                    "IOVA or size outside the allowed IOVA ranges, or not aligned to the IOMMU page size"
                }
                Some(libc::EEXIST) => "the IOVA range overlaps an existing mapping",
                n => errno_hint(n),
            },
            _ => "",
        };
        (!h.is_empty()).then_some(h)
    }
}

fn hint_suffix(h: Option<&str>) -> String {
    match h {
        Some(h) => format!(" (hint: {h})"),
        None => String::new(),
    }
}

fn detail_suffix(d: &Option<String>) -> String {
    match d {
        Some(d) => format!(": {d}"),
        None => String::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mig(errno: i32, detail: Option<&str>) -> DeviceError {
        DeviceError::Migration {
            device: "d".into(),
            op: "set state",
            state: None,
            source: io::Error::from_raw_os_error(errno),
            detail: detail.map(str::to_string),
        }
    }

    #[test]
    fn hints_come_from_the_variant_and_errno() {
        assert_eq!(
            mig(libc::ENOTTY, None).hint(),
            Some("the device has no migration v2 support")
        );
        assert_eq!(
            mig(libc::EPERM, None).hint(),
            Some(errno_hint(Some(libc::EPERM)))
        );
        assert!(mig(libc::EPERM, None)
            .to_string()
            .ends_with(&format!("(hint: {})", errno_hint(Some(libc::EPERM)))));
        // The back end's own explanation replaces the generic advice.
        let e = mig(libc::EINVAL, Some("fail-at=STOP"));
        assert_eq!(e.hint(), None);
        assert!(e.to_string().ends_with(": fail-at=STOP"), "{e}");
        let dma = |op, errno| DeviceError::Dma {
            device: "d".into(),
            op,
            iova: 0,
            len: 4096,
            source: io::Error::from_raw_os_error(errno),
        };
        assert!(dma("map", libc::ENOMEM).hint().unwrap().contains("memlock"));
        assert!(dma("map", libc::EINVAL).hint().unwrap().contains("IOVA"));
        assert_eq!(
            dma("unmap", libc::EINVAL).hint(),
            Some(errno_hint(Some(libc::EINVAL)))
        );
        assert_eq!(mig(libc::EOVERFLOW, None).hint(), None);
        assert_eq!(DeviceError::InvalidArgument("x".into()).hint(), None);
    }
}
