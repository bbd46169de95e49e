//! What a device says about itself: regions, interrupts, identity.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::uapi::{
    DEVICE_FLAGS_AMBA, DEVICE_FLAGS_AP, DEVICE_FLAGS_CAPS, DEVICE_FLAGS_CCW, DEVICE_FLAGS_CDX,
    DEVICE_FLAGS_FSL_MC, DEVICE_FLAGS_PCI, DEVICE_FLAGS_PLATFORM, DEVICE_FLAGS_RESET,
    IRQ_FLAG_AUTOMASKED, IRQ_FLAG_EVENTFD, IRQ_FLAG_MASKABLE, IRQ_FLAG_NORESIZE, REGION_FLAG_CAPS,
    REGION_FLAG_MMAP, REGION_FLAG_READ, REGION_FLAG_WRITE,
};

/// Who the device is: what migration compatibility and stream headers compare.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    /// `vfio-pci`, `vfio-platform`, ... (the mdev type's `device_api`, or derived from flags).
    pub device_api: String,
    /// The mdev type id (`mtty-2`), for mediated devices.
    pub mdev_type: Option<String>,
    /// The mdev parent device name, for mediated devices.
    pub parent: Option<String>,
    /// PCI vendor:device (`1234:11e8`) from config space, when the device is PCI.
    pub pci_id: Option<String>,
    /// PCI subsystem vendor:device, when the device is PCI.
    pub pci_subsystem: Option<String>,
    /// The bound driver (`vfio-pci`, `vfio_mdev`, `mtty`, `sim`).
    pub driver: Option<String>,
    /// The sysfs node, for kernel devices.
    pub sysfs_path: Option<PathBuf>,
}

/// One sparse-mmap area inside a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparseArea {
    /// Offset inside the region.
    pub offset: u64,
    /// Size of the area.
    pub size: u64,
}

/// A region capability (`VFIO_REGION_INFO_CAP_*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RegionCap {
    /// Only these areas of the region may be mmap'd.
    SparseMmap {
        /// The areas.
        areas: Vec<SparseArea>,
    },
    /// A device-specific region's type and subtype (v1 migration region: 3 / 1).
    Type {
        /// `type`.
        #[serde(rename = "type")]
        type_: u32,
        /// `subtype`.
        subtype: u32,
    },
    /// The MSI-X table may be mmap'd along with the BAR.
    MsixMappable,
    /// A capability this harness does not decode.
    Other {
        /// Capability id.
        id: u16,
    },
}

/// One region of the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionInfo {
    /// Region index.
    pub index: u32,
    /// `BAR0`..`BAR5`, `ROM`, `CONFIG`, `VGA`, or the type/subtype name of a
    /// device-specific region (`migration-v1`, ...).
    pub name: String,
    /// Size in bytes (0: the region is not implemented).
    pub size: u64,
    /// Offset of the region within the device fd.
    pub offset: u64,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Capabilities.
    pub caps: Vec<RegionCap>,
}

impl RegionInfo {
    /// The region may be read.
    pub fn readable(&self) -> bool {
        self.flags & REGION_FLAG_READ != 0
    }
    /// The region may be written.
    pub fn writable(&self) -> bool {
        self.flags & REGION_FLAG_WRITE != 0
    }
    /// The region (or parts of it, see [`RegionInfo::mmap_areas`]) may be mmap'd.
    pub fn mmapable(&self) -> bool {
        self.flags & REGION_FLAG_MMAP != 0
    }
    /// The device-specific type/subtype, when the region has one.
    pub fn type_subtype(&self) -> Option<(u32, u32)> {
        self.caps.iter().find_map(|c| match c {
            RegionCap::Type { type_, subtype } => Some((*type_, *subtype)),
            _ => None,
        })
    }
    /// The mmap-able areas: the sparse-mmap list when present, otherwise the whole region
    /// when it has the MMAP flag, otherwise none.
    pub fn mmap_areas(&self) -> Vec<SparseArea> {
        if !self.mmapable() {
            return Vec::new();
        }
        for c in &self.caps {
            if let RegionCap::SparseMmap { areas } = c {
                return areas.clone();
            }
        }
        vec![SparseArea {
            offset: 0,
            size: self.size,
        }]
    }
    /// Flag names (`read`, `write`, `mmap`, `caps`).
    pub fn flag_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (bit, n) in [
            (REGION_FLAG_READ, "read"),
            (REGION_FLAG_WRITE, "write"),
            (REGION_FLAG_MMAP, "mmap"),
            (REGION_FLAG_CAPS, "caps"),
        ] {
            if self.flags & bit != 0 {
                v.push(n);
            }
        }
        v
    }
}

/// One interrupt index of the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IrqInfo {
    /// IRQ index.
    pub index: u32,
    /// `INTX`, `MSI`, `MSIX`, `ERR`, `REQ` for PCI devices, else `IRQ<n>`.
    pub name: String,
    /// Number of vectors.
    pub count: u32,
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
}

impl IrqInfo {
    /// Flag names (`eventfd`, `maskable`, `automasked`, `noresize`).
    pub fn flag_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (bit, n) in [
            (IRQ_FLAG_EVENTFD, "eventfd"),
            (IRQ_FLAG_MASKABLE, "maskable"),
            (IRQ_FLAG_AUTOMASKED, "automasked"),
            (IRQ_FLAG_NORESIZE, "noresize"),
        ] {
            if self.flags & bit != 0 {
                v.push(n);
            }
        }
        v
    }
}

/// Finds a region by index (`7`) or name (`BAR0`, `bar0`, `config`, `migration-v1`).
pub fn find_region<'a>(regions: &'a [RegionInfo], key: &str) -> Option<&'a RegionInfo> {
    if let Ok(i) = key.parse::<u32>() {
        return regions.iter().find(|r| r.index == i);
    }
    regions.iter().find(|r| r.name.eq_ignore_ascii_case(key))
}

/// Everything read from a device at open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Name used in messages.
    pub name: String,
    /// `legacy` (container/group), `iommufd` (cdev), or `sim`.
    pub backend: String,
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Regions, by index.
    pub regions: Vec<RegionInfo>,
    /// Interrupt indexes.
    pub irqs: Vec<IrqInfo>,
    /// Identity.
    pub identity: DeviceIdentity,
}

impl DeviceInfo {
    /// Region `index`, if it exists.
    pub fn region(&self, index: u32) -> Option<&RegionInfo> {
        self.regions.iter().find(|r| r.index == index)
    }
    /// The first region with this device-specific type/subtype.
    pub fn region_by_type(&self, type_: u32, subtype: u32) -> Option<&RegionInfo> {
        self.regions
            .iter()
            .find(|r| r.type_subtype() == Some((type_, subtype)))
    }
    /// IRQ index `index`, if it exists.
    pub fn irq(&self, index: u32) -> Option<&IrqInfo> {
        self.irqs.iter().find(|i| i.index == index)
    }
    /// `VFIO_DEVICE_FLAGS_*` names.
    pub fn flag_names(&self) -> Vec<&'static str> {
        const NAMES: [(u32, &str); 9] = [
            (DEVICE_FLAGS_RESET, "reset"),
            (DEVICE_FLAGS_PCI, "pci"),
            (DEVICE_FLAGS_PLATFORM, "platform"),
            (DEVICE_FLAGS_AMBA, "amba"),
            (DEVICE_FLAGS_CCW, "ccw"),
            (DEVICE_FLAGS_AP, "ap"),
            (DEVICE_FLAGS_FSL_MC, "fsl-mc"),
            (DEVICE_FLAGS_CAPS, "caps"),
            (DEVICE_FLAGS_CDX, "cdx"),
        ];
        NAMES
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}
