//! The VFIO uAPI constants this crate speaks, each named once, from `vfio-bindings`.
//!
//! Every flag, index, capability id and state value of `include/uapi/linux/vfio.h` that the
//! crate uses (and the field offsets of the v1 migration region's header, which is accessed
//! register by register) is defined here, by its kernel name in vfio-bindings, and nowhere else: the
//! kernel back end (`vfio`), the simulator (`sim`), the device model
//! ([`crate::device`]) and the migration drivers all refer to these. The names drop the
//! `VFIO_` prefix (and the redundant `INFO_` of region/IRQ flags); each item's doc gives the
//! kernel name it stands for. Values are converted to the width the crate stores them in
//! (`u16` capability ids, `u64` migration flags), which the kernel's values fit.
//!
//! This sits in the bottom floor ([`crate::device`]) so that every back end may use it; the
//! ioctl numbers and kernel structs themselves stay in the kernel back end (`vfio::ioctl`, internal).

use std::mem::{offset_of, size_of};

use vfio_bindings::bindings::vfio as sys;

// Device flags (`struct vfio_device_info.flags`).

/// `VFIO_DEVICE_FLAGS_RESET`: the device supports `VFIO_DEVICE_RESET`.
pub const DEVICE_FLAGS_RESET: u32 = sys::VFIO_DEVICE_FLAGS_RESET;
/// `VFIO_DEVICE_FLAGS_PCI`: a vfio-pci device.
pub const DEVICE_FLAGS_PCI: u32 = sys::VFIO_DEVICE_FLAGS_PCI;
/// `VFIO_DEVICE_FLAGS_PLATFORM`: a vfio-platform device.
pub const DEVICE_FLAGS_PLATFORM: u32 = sys::VFIO_DEVICE_FLAGS_PLATFORM;
/// `VFIO_DEVICE_FLAGS_AMBA`: a vfio-amba device.
pub const DEVICE_FLAGS_AMBA: u32 = sys::VFIO_DEVICE_FLAGS_AMBA;
/// `VFIO_DEVICE_FLAGS_CCW`: a vfio-ccw device.
pub const DEVICE_FLAGS_CCW: u32 = sys::VFIO_DEVICE_FLAGS_CCW;
/// `VFIO_DEVICE_FLAGS_AP`: a vfio-ap device.
pub const DEVICE_FLAGS_AP: u32 = sys::VFIO_DEVICE_FLAGS_AP;
/// `VFIO_DEVICE_FLAGS_FSL_MC`: a vfio-fsl-mc device.
pub const DEVICE_FLAGS_FSL_MC: u32 = sys::VFIO_DEVICE_FLAGS_FSL_MC;
/// `VFIO_DEVICE_FLAGS_CAPS`: the device info has a capability chain.
pub const DEVICE_FLAGS_CAPS: u32 = sys::VFIO_DEVICE_FLAGS_CAPS;
/// `VFIO_DEVICE_FLAGS_CDX`: a vfio-cdx device.
pub const DEVICE_FLAGS_CDX: u32 = sys::VFIO_DEVICE_FLAGS_CDX;

// Region flags and capabilities (`struct vfio_region_info`).

/// `VFIO_REGION_INFO_FLAG_READ`.
pub const REGION_FLAG_READ: u32 = sys::VFIO_REGION_INFO_FLAG_READ;
/// `VFIO_REGION_INFO_FLAG_WRITE`.
pub const REGION_FLAG_WRITE: u32 = sys::VFIO_REGION_INFO_FLAG_WRITE;
/// `VFIO_REGION_INFO_FLAG_MMAP`.
pub const REGION_FLAG_MMAP: u32 = sys::VFIO_REGION_INFO_FLAG_MMAP;
/// `VFIO_REGION_INFO_FLAG_CAPS`: `cap_offset` starts a capability chain.
pub const REGION_FLAG_CAPS: u32 = sys::VFIO_REGION_INFO_FLAG_CAPS;

/// `VFIO_REGION_INFO_CAP_SPARSE_MMAP` (`struct vfio_region_info_cap_sparse_mmap`).
pub const REGION_CAP_SPARSE_MMAP: u16 = sys::VFIO_REGION_INFO_CAP_SPARSE_MMAP as u16;
/// `VFIO_REGION_INFO_CAP_TYPE` (`struct vfio_region_info_cap_type`).
pub const REGION_CAP_TYPE: u16 = sys::VFIO_REGION_INFO_CAP_TYPE as u16;
/// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE` (header only).
pub const REGION_CAP_MSIX_MAPPABLE: u16 = sys::VFIO_REGION_INFO_CAP_MSIX_MAPPABLE as u16;

/// `VFIO_REGION_TYPE_PCI_VENDOR_TYPE`: the type's low 16 bits are a PCI vendor id.
pub const REGION_TYPE_PCI_VENDOR_TYPE: u32 = sys::VFIO_REGION_TYPE_PCI_VENDOR_TYPE;
/// `VFIO_REGION_TYPE_PCI_VENDOR_MASK`.
pub const REGION_TYPE_PCI_VENDOR_MASK: u32 = sys::VFIO_REGION_TYPE_PCI_VENDOR_MASK;
/// `VFIO_REGION_TYPE_GFX`.
pub const REGION_TYPE_GFX: u32 = sys::VFIO_REGION_TYPE_GFX;
/// `VFIO_REGION_SUBTYPE_GFX_EDID`.
pub const REGION_SUBTYPE_GFX_EDID: u32 = sys::VFIO_REGION_SUBTYPE_GFX_EDID;
/// `VFIO_REGION_TYPE_CCW`.
pub const REGION_TYPE_CCW: u32 = sys::VFIO_REGION_TYPE_CCW;
/// `VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD`.
pub const REGION_SUBTYPE_CCW_ASYNC_CMD: u32 = sys::VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD;
/// `VFIO_REGION_SUBTYPE_CCW_SCHIB`.
pub const REGION_SUBTYPE_CCW_SCHIB: u32 = sys::VFIO_REGION_SUBTYPE_CCW_SCHIB;
/// `VFIO_REGION_SUBTYPE_CCW_CRW`.
pub const REGION_SUBTYPE_CCW_CRW: u32 = sys::VFIO_REGION_SUBTYPE_CCW_CRW;
/// `VFIO_REGION_TYPE_MIGRATION_DEPRECATED`: the v1 migration region's type.
pub const REGION_TYPE_MIGRATION_V1: u32 = sys::VFIO_REGION_TYPE_MIGRATION_DEPRECATED;
/// `VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED`: the v1 migration region's subtype.
pub const REGION_SUBTYPE_MIGRATION_V1: u32 = sys::VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED;

// Fixed vfio-pci region and IRQ indexes.

/// `VFIO_PCI_BAR0_REGION_INDEX` (BAR1..BAR5 follow it).
pub const PCI_BAR0_INDEX: u32 = sys::VFIO_PCI_BAR0_REGION_INDEX;
/// `VFIO_PCI_BAR2_REGION_INDEX`.
pub const PCI_BAR2_INDEX: u32 = sys::VFIO_PCI_BAR2_REGION_INDEX;
/// `VFIO_PCI_BAR5_REGION_INDEX`: the last BAR.
pub const PCI_BAR5_INDEX: u32 = sys::VFIO_PCI_BAR5_REGION_INDEX;
/// `VFIO_PCI_ROM_REGION_INDEX`.
pub const PCI_ROM_INDEX: u32 = sys::VFIO_PCI_ROM_REGION_INDEX;
/// `VFIO_PCI_CONFIG_REGION_INDEX`.
pub const PCI_CONFIG_INDEX: u32 = sys::VFIO_PCI_CONFIG_REGION_INDEX;
/// `VFIO_PCI_VGA_REGION_INDEX`.
pub const PCI_VGA_INDEX: u32 = sys::VFIO_PCI_VGA_REGION_INDEX;
/// `VFIO_PCI_NUM_REGIONS`: indexes from here on are device-specific.
pub const PCI_NUM_REGIONS: u32 = sys::VFIO_PCI_NUM_REGIONS;

/// `VFIO_PCI_INTX_IRQ_INDEX`.
pub const PCI_INTX_IRQ_INDEX: u32 = sys::VFIO_PCI_INTX_IRQ_INDEX;
/// `VFIO_PCI_MSI_IRQ_INDEX`.
pub const PCI_MSI_IRQ_INDEX: u32 = sys::VFIO_PCI_MSI_IRQ_INDEX;
/// `VFIO_PCI_MSIX_IRQ_INDEX`.
pub const PCI_MSIX_IRQ_INDEX: u32 = sys::VFIO_PCI_MSIX_IRQ_INDEX;
/// `VFIO_PCI_ERR_IRQ_INDEX`.
pub const PCI_ERR_IRQ_INDEX: u32 = sys::VFIO_PCI_ERR_IRQ_INDEX;
/// `VFIO_PCI_REQ_IRQ_INDEX`.
pub const PCI_REQ_IRQ_INDEX: u32 = sys::VFIO_PCI_REQ_IRQ_INDEX;

// Interrupts (`struct vfio_irq_info`, `struct vfio_irq_set`).

/// `VFIO_IRQ_INFO_EVENTFD`.
pub const IRQ_FLAG_EVENTFD: u32 = sys::VFIO_IRQ_INFO_EVENTFD;
/// `VFIO_IRQ_INFO_MASKABLE`.
pub const IRQ_FLAG_MASKABLE: u32 = sys::VFIO_IRQ_INFO_MASKABLE;
/// `VFIO_IRQ_INFO_AUTOMASKED`.
pub const IRQ_FLAG_AUTOMASKED: u32 = sys::VFIO_IRQ_INFO_AUTOMASKED;
/// `VFIO_IRQ_INFO_NORESIZE`.
pub const IRQ_FLAG_NORESIZE: u32 = sys::VFIO_IRQ_INFO_NORESIZE;

/// `VFIO_IRQ_SET_DATA_NONE`.
pub const IRQ_SET_DATA_NONE: u32 = sys::VFIO_IRQ_SET_DATA_NONE;
/// `VFIO_IRQ_SET_DATA_BOOL`.
pub const IRQ_SET_DATA_BOOL: u32 = sys::VFIO_IRQ_SET_DATA_BOOL;
/// `VFIO_IRQ_SET_DATA_EVENTFD`.
pub const IRQ_SET_DATA_EVENTFD: u32 = sys::VFIO_IRQ_SET_DATA_EVENTFD;
/// `VFIO_IRQ_SET_ACTION_MASK`.
pub const IRQ_SET_ACTION_MASK: u32 = sys::VFIO_IRQ_SET_ACTION_MASK;
/// `VFIO_IRQ_SET_ACTION_UNMASK`.
pub const IRQ_SET_ACTION_UNMASK: u32 = sys::VFIO_IRQ_SET_ACTION_UNMASK;
/// `VFIO_IRQ_SET_ACTION_TRIGGER`.
pub const IRQ_SET_ACTION_TRIGGER: u32 = sys::VFIO_IRQ_SET_ACTION_TRIGGER;

// Type1 IOMMU info (`struct vfio_iommu_type1_info`).

/// `VFIO_IOMMU_INFO_PGSIZES`: `iova_pgsizes` is valid.
pub const IOMMU_INFO_PGSIZES: u32 = sys::VFIO_IOMMU_INFO_PGSIZES;
/// `VFIO_IOMMU_INFO_CAPS`: `cap_offset` starts a capability chain.
pub const IOMMU_INFO_CAPS: u32 = sys::VFIO_IOMMU_INFO_CAPS;
/// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE` (`struct vfio_iommu_type1_info_cap_iova_range`).
pub const IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = sys::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16;

// Migration v2 (`VFIO_DEVICE_FEATURE_MIGRATION`, `enum vfio_device_mig_state`).

/// `VFIO_MIGRATION_STOP_COPY`: STOP, STOP_COPY and RESUMING exist (mandatory).
pub const MIGRATION_STOP_COPY: u64 = sys::VFIO_MIGRATION_STOP_COPY as u64;
/// `VFIO_MIGRATION_P2P`: RUNNING_P2P exists.
pub const MIGRATION_P2P: u64 = sys::VFIO_MIGRATION_P2P as u64;
/// `VFIO_MIGRATION_PRE_COPY`: PRE_COPY (and PRE_COPY_P2P with P2P) exist.
pub const MIGRATION_PRE_COPY: u64 = sys::VFIO_MIGRATION_PRE_COPY as u64;

/// `VFIO_DEVICE_STATE_ERROR`.
pub const MIG_STATE_ERROR: u32 = sys::vfio_device_mig_state_VFIO_DEVICE_STATE_ERROR;
/// `VFIO_DEVICE_STATE_STOP`.
pub const MIG_STATE_STOP: u32 = sys::vfio_device_mig_state_VFIO_DEVICE_STATE_STOP;
/// `VFIO_DEVICE_STATE_RUNNING`.
pub const MIG_STATE_RUNNING: u32 = sys::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING;
/// `VFIO_DEVICE_STATE_STOP_COPY`.
pub const MIG_STATE_STOP_COPY: u32 = sys::vfio_device_mig_state_VFIO_DEVICE_STATE_STOP_COPY;
/// `VFIO_DEVICE_STATE_RESUMING`.
pub const MIG_STATE_RESUMING: u32 = sys::vfio_device_mig_state_VFIO_DEVICE_STATE_RESUMING;
/// `VFIO_DEVICE_STATE_RUNNING_P2P`.
pub const MIG_STATE_RUNNING_P2P: u32 = sys::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING_P2P;
/// `VFIO_DEVICE_STATE_PRE_COPY`.
pub const MIG_STATE_PRE_COPY: u32 = sys::vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY;
/// `VFIO_DEVICE_STATE_PRE_COPY_P2P`.
pub const MIG_STATE_PRE_COPY_P2P: u32 = sys::vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY_P2P;

// Migration v1 (`struct vfio_device_migration_info`, the v1 migration region's header).

/// `VFIO_DEVICE_STATE_V1_RUNNING`.
pub const DEVICE_STATE_V1_RUNNING: u32 = sys::VFIO_DEVICE_STATE_V1_RUNNING;
/// `VFIO_DEVICE_STATE_V1_SAVING`.
pub const DEVICE_STATE_V1_SAVING: u32 = sys::VFIO_DEVICE_STATE_V1_SAVING;
/// `VFIO_DEVICE_STATE_V1_RESUMING`.
pub const DEVICE_STATE_V1_RESUMING: u32 = sys::VFIO_DEVICE_STATE_V1_RESUMING;
/// `VFIO_DEVICE_STATE_MASK` of the v1 header: the defined bits; the others are reserved and
/// must be preserved by userspace.
pub const DEVICE_STATE_V1_MASK: u32 =
    DEVICE_STATE_V1_RUNNING | DEVICE_STATE_V1_SAVING | DEVICE_STATE_V1_RESUMING;
/// The v1 error indication: `_SAVING | _RESUMING`, an invalid combination a vendor driver
/// reports when it failed.
pub const DEVICE_STATE_V1_ERROR: u32 = DEVICE_STATE_V1_SAVING | DEVICE_STATE_V1_RESUMING;

/// Offset of `device_state` (32 bits) in `struct vfio_device_migration_info`, the header of
/// the v1 migration region.
pub const MIG_INFO_DEVICE_STATE: u64 =
    offset_of!(sys::vfio_device_migration_info, device_state) as u64;
/// Offset of `pending_bytes` (64 bits) in `struct vfio_device_migration_info`.
pub const MIG_INFO_PENDING_BYTES: u64 =
    offset_of!(sys::vfio_device_migration_info, pending_bytes) as u64;
/// Offset of `data_offset` (64 bits) in `struct vfio_device_migration_info`.
pub const MIG_INFO_DATA_OFFSET: u64 =
    offset_of!(sys::vfio_device_migration_info, data_offset) as u64;
/// Offset of `data_size` (64 bits) in `struct vfio_device_migration_info`.
pub const MIG_INFO_DATA_SIZE: u64 = offset_of!(sys::vfio_device_migration_info, data_size) as u64;
/// Size of `struct vfio_device_migration_info`: data sections start at or after this.
pub const MIG_INFO_SIZE: u64 = size_of::<sys::vfio_device_migration_info>() as u64;

// The conversions above must not lose bits.
const _: () = {
    assert!(sys::VFIO_REGION_INFO_CAP_SPARSE_MMAP <= u16::MAX as u32);
    assert!(sys::VFIO_REGION_INFO_CAP_TYPE <= u16::MAX as u32);
    assert!(sys::VFIO_REGION_INFO_CAP_MSIX_MAPPABLE <= u16::MAX as u32);
    assert!(sys::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE <= u16::MAX as u32);
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The values the crate used as literals before they were taken from vfio-bindings.
    #[test]
    fn values_match_the_former_literals() {
        assert_eq!((DEVICE_FLAGS_RESET, DEVICE_FLAGS_PCI), (1, 2));
        assert_eq!(
            [
                DEVICE_FLAGS_PLATFORM,
                DEVICE_FLAGS_AMBA,
                DEVICE_FLAGS_CCW,
                DEVICE_FLAGS_AP,
                DEVICE_FLAGS_FSL_MC,
                DEVICE_FLAGS_CAPS,
                DEVICE_FLAGS_CDX
            ],
            [4, 8, 16, 32, 64, 128, 256]
        );
        assert_eq!(
            [
                REGION_FLAG_READ,
                REGION_FLAG_WRITE,
                REGION_FLAG_MMAP,
                REGION_FLAG_CAPS
            ],
            [1, 2, 4, 8]
        );
        assert_eq!(
            [
                REGION_CAP_SPARSE_MMAP,
                REGION_CAP_TYPE,
                REGION_CAP_MSIX_MAPPABLE
            ],
            [1, 2, 3]
        );
        assert_eq!(
            (REGION_TYPE_MIGRATION_V1, REGION_SUBTYPE_MIGRATION_V1),
            (3, 1)
        );
        assert_eq!((REGION_TYPE_GFX, REGION_SUBTYPE_GFX_EDID), (1, 1));
        assert_eq!(
            [
                REGION_TYPE_CCW,
                REGION_SUBTYPE_CCW_ASYNC_CMD,
                REGION_SUBTYPE_CCW_SCHIB,
                REGION_SUBTYPE_CCW_CRW
            ],
            [2, 1, 2, 3]
        );
        assert_eq!(REGION_TYPE_PCI_VENDOR_TYPE, 1 << 31);
        assert_eq!(REGION_TYPE_PCI_VENDOR_MASK, 0xffff);
        assert_eq!(
            [
                PCI_BAR0_INDEX,
                PCI_BAR2_INDEX,
                PCI_BAR5_INDEX,
                PCI_ROM_INDEX,
                PCI_CONFIG_INDEX,
                PCI_VGA_INDEX,
                PCI_NUM_REGIONS
            ],
            [0, 2, 5, 6, 7, 8, 9]
        );
        assert_eq!(
            [
                PCI_INTX_IRQ_INDEX,
                PCI_MSI_IRQ_INDEX,
                PCI_MSIX_IRQ_INDEX,
                PCI_ERR_IRQ_INDEX,
                PCI_REQ_IRQ_INDEX
            ],
            [0, 1, 2, 3, 4]
        );
        assert_eq!(
            [
                IRQ_FLAG_EVENTFD,
                IRQ_FLAG_MASKABLE,
                IRQ_FLAG_AUTOMASKED,
                IRQ_FLAG_NORESIZE
            ],
            [1, 2, 4, 8]
        );
        assert_eq!(
            [
                IRQ_SET_DATA_NONE,
                IRQ_SET_DATA_BOOL,
                IRQ_SET_DATA_EVENTFD,
                IRQ_SET_ACTION_MASK,
                IRQ_SET_ACTION_UNMASK,
                IRQ_SET_ACTION_TRIGGER
            ],
            [1, 2, 4, 8, 16, 32]
        );
        assert_eq!(
            (
                IOMMU_INFO_PGSIZES,
                IOMMU_INFO_CAPS,
                IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
            ),
            (1, 2, 1)
        );
        assert_eq!(
            [MIGRATION_STOP_COPY, MIGRATION_P2P, MIGRATION_PRE_COPY],
            [1, 2, 4]
        );
        assert_eq!(
            [
                MIG_STATE_ERROR,
                MIG_STATE_STOP,
                MIG_STATE_RUNNING,
                MIG_STATE_STOP_COPY,
                MIG_STATE_RESUMING,
                MIG_STATE_RUNNING_P2P,
                MIG_STATE_PRE_COPY,
                MIG_STATE_PRE_COPY_P2P
            ],
            [0, 1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(
            [
                MIG_INFO_DEVICE_STATE,
                MIG_INFO_PENDING_BYTES,
                MIG_INFO_DATA_OFFSET,
                MIG_INFO_DATA_SIZE,
                MIG_INFO_SIZE
            ],
            [0, 8, 16, 24, 32]
        );
        assert_eq!(
            [
                DEVICE_STATE_V1_RUNNING,
                DEVICE_STATE_V1_SAVING,
                DEVICE_STATE_V1_RESUMING
            ],
            [1, 2, 4]
        );
    }
}
