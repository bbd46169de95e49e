//! Decoding `struct vfio_region_info` and its capability chain, and naming regions and IRQs.

use std::mem::{offset_of, size_of};

use vfio_bindings::bindings::vfio::{
    vfio_region_info, vfio_region_info_cap_sparse_mmap, vfio_region_info_cap_type,
    vfio_region_sparse_mmap_area,
};

use super::caps::{self, ChainError};
use crate::device::uapi::{
    PCI_BAR0_INDEX, PCI_BAR5_INDEX, PCI_ERR_IRQ_INDEX, PCI_INTX_IRQ_INDEX, PCI_MSIX_IRQ_INDEX,
    PCI_MSI_IRQ_INDEX, PCI_REQ_IRQ_INDEX, PCI_ROM_INDEX, REGION_CAP_MSIX_MAPPABLE,
    REGION_CAP_SPARSE_MMAP, REGION_CAP_TYPE, REGION_FLAG_CAPS, REGION_SUBTYPE_CCW_ASYNC_CMD,
    REGION_SUBTYPE_CCW_CRW, REGION_SUBTYPE_CCW_SCHIB, REGION_SUBTYPE_GFX_EDID,
    REGION_SUBTYPE_MIGRATION_V1, REGION_TYPE_CCW, REGION_TYPE_GFX, REGION_TYPE_MIGRATION_V1,
    REGION_TYPE_PCI_VENDOR_MASK, REGION_TYPE_PCI_VENDOR_TYPE,
};
use crate::device::{DeviceError, RegionCap, RegionInfo, RegionMap, Result, SparseArea};

pub use crate::device::uapi::{PCI_CONFIG_INDEX, PCI_NUM_REGIONS};

/// The v1 migration region's `(type, subtype)`: `VFIO_REGION_TYPE_MIGRATION_DEPRECATED` /
/// `VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED`.
pub const MIGRATION_V1_TYPE: (u32, u32) = (REGION_TYPE_MIGRATION_V1, REGION_SUBTYPE_MIGRATION_V1);

/// Decodes a `struct vfio_region_info` buffer (header and capability chain) as returned by
/// `VFIO_DEVICE_GET_REGION_INFO`. The region is named with [`region_name`].
///
/// The chain is read within the buffer and the header's `argsz`, whichever is shorter; a
/// malformed one (an offset outside them, a loop, entries past the end) is an error.
pub fn decode_region_info(b: &[u8], pci: bool) -> std::result::Result<RegionInfo, ChainError> {
    let h: vfio_region_info = caps::read_head(b, "struct vfio_region_info")?;
    let mut caps = Vec::new();
    if h.flags & REGION_FLAG_CAPS != 0 {
        let filled = b.get(..(h.argsz as usize).min(b.len())).unwrap_or(b);
        for c in caps::walk(filled, size_of::<vfio_region_info>(), h.cap_offset)? {
            caps.push(match c.id {
                REGION_CAP_SPARSE_MMAP => {
                    let cap: vfio_region_info_cap_sparse_mmap = c.get()?;
                    let at = offset_of!(vfio_region_info_cap_sparse_mmap, areas);
                    let areas =
                        c.array::<vfio_region_sparse_mmap_area>(at, cap.nr_areas as usize)?;
                    RegionCap::SparseMmap {
                        areas: areas
                            .into_iter()
                            .map(|a| SparseArea {
                                offset: a.offset,
                                size: a.size,
                            })
                            .collect(),
                    }
                }
                REGION_CAP_TYPE => {
                    let cap: vfio_region_info_cap_type = c.get()?;
                    RegionCap::Type {
                        type_: cap.type_,
                        subtype: cap.subtype,
                    }
                }
                REGION_CAP_MSIX_MAPPABLE => RegionCap::MsixMappable,
                other => RegionCap::Other { id: other },
            });
        }
    }
    let type_sub = caps.iter().find_map(|c| match c {
        RegionCap::Type { type_, subtype } => Some((*type_, *subtype)),
        _ => None,
    });
    Ok(RegionInfo {
        index: h.index,
        name: region_name(h.index, pci, type_sub),
        size: h.size,
        offset: h.offset,
        flags: h.flags,
        caps,
    })
}

/// The name of region `index`: `BAR0`..`BAR5`, `ROM`, `CONFIG`, `VGA` for the fixed PCI
/// indexes, else a name for the type/subtype (`migration-v1`, `gfx-edid`, ...) or
/// `type<t>/<s>`, else `region<index>`.
pub fn region_name(index: u32, pci: bool, type_sub: Option<(u32, u32)>) -> String {
    if pci && index < PCI_NUM_REGIONS {
        return match index {
            PCI_BAR0_INDEX..=PCI_BAR5_INDEX => format!("BAR{index}"),
            PCI_ROM_INDEX => "ROM".into(),
            PCI_CONFIG_INDEX => "CONFIG".into(),
            _ => "VGA".into(),
        };
    }
    match type_sub {
        Some((REGION_TYPE_MIGRATION_V1, REGION_SUBTYPE_MIGRATION_V1)) => "migration-v1".into(),
        Some((REGION_TYPE_GFX, REGION_SUBTYPE_GFX_EDID)) => "gfx-edid".into(),
        Some((REGION_TYPE_CCW, REGION_SUBTYPE_CCW_ASYNC_CMD)) => "ccw-async-cmd".into(),
        Some((REGION_TYPE_CCW, REGION_SUBTYPE_CCW_SCHIB)) => "ccw-schib".into(),
        Some((REGION_TYPE_CCW, REGION_SUBTYPE_CCW_CRW)) => "ccw-crw".into(),
        Some((t, s)) if t & REGION_TYPE_PCI_VENDOR_TYPE != 0 => {
            format!("pci-vendor-{:04x}/{s}", t & REGION_TYPE_PCI_VENDOR_MASK)
        }
        Some((t, s)) => format!("type{t}/{s}"),
        None => format!("region{index}"),
    }
}

/// The name of IRQ index `index`: `INTX`, `MSI`, `MSIX`, `ERR`, `REQ` for PCI, else `IRQ<n>`.
pub fn irq_name(index: u32, pci: bool) -> String {
    if pci {
        match index {
            PCI_INTX_IRQ_INDEX => return "INTX".into(),
            PCI_MSI_IRQ_INDEX => return "MSI".into(),
            PCI_MSIX_IRQ_INDEX => return "MSIX".into(),
            PCI_ERR_IRQ_INDEX => return "ERR".into(),
            PCI_REQ_IRQ_INDEX => return "REQ".into(),
            _ => {}
        }
    }
    format!("IRQ{index}")
}

/// Region lookup by index or name lives with the region types in [`crate::device`]; this
/// path is kept for existing callers.
#[doc(no_inline)]
pub use crate::device::find_region;

/// One volatile access of `width` bytes (1, 2, 4, 8) at `offset` of a mapped region; the
/// offset must be aligned to the width (device registers do not take split accesses).
pub fn map_read(map: &RegionMap, offset: usize, width: usize) -> Result<u64> {
    map_check(map, offset, width)?;
    let p = map.as_ptr();
    // SAFETY: `map_check` proved offset..offset+width lies inside the mapping and its address
    // is aligned to `width`; device memory is only touched through volatile raw-pointer accesses.
    let v = unsafe {
        match width {
            1 => std::ptr::read_volatile(p.add(offset)) as u64,
            2 => std::ptr::read_volatile(p.add(offset) as *const u16) as u64,
            4 => std::ptr::read_volatile(p.add(offset) as *const u32) as u64,
            _ => std::ptr::read_volatile(p.add(offset) as *const u64),
        }
    };
    Ok(v)
}

/// One volatile write of `width` bytes at `offset` of a mapped region (see [`map_read`]).
pub fn map_write(map: &RegionMap, offset: usize, width: usize, value: u64) -> Result<()> {
    map_check(map, offset, width)?;
    map.check_writable()?;
    if width < 8 && value >> (width * 8) != 0 {
        return Err(DeviceError::InvalidArgument(format!(
            "value {value:#x} does not fit in {width} byte(s)"
        )));
    }
    let p = map.as_ptr();
    // SAFETY: as in `map_read`, and the mapping is writable (checked above).
    unsafe {
        match width {
            1 => std::ptr::write_volatile(p.add(offset), value as u8),
            2 => std::ptr::write_volatile(p.add(offset) as *mut u16, value as u16),
            4 => std::ptr::write_volatile(p.add(offset) as *mut u32, value as u32),
            _ => std::ptr::write_volatile(p.add(offset) as *mut u64, value),
        }
    }
    Ok(())
}

fn map_check(map: &RegionMap, offset: usize, width: usize) -> Result<()> {
    if !matches!(width, 1 | 2 | 4 | 8) {
        return Err(DeviceError::InvalidArgument(format!(
            "access width must be 1, 2, 4 or 8 bytes, not {width}"
        )));
    }
    if !matches!(offset.checked_add(width), Some(e) if e <= map.len()) {
        return Err(DeviceError::OutOfBounds {
            what: "mapping".into(),
            offset: offset as u64,
            len: width as u64,
            size: map.len() as u64,
        });
    }
    map.check_aligned(offset, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a region info buffer as the kernel lays it out.
    fn info_buf(index: u32, flags: u32, size: u64, offset: u64, caps: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![0u8; 32];
        b[4..8].copy_from_slice(&flags.to_ne_bytes());
        b[8..12].copy_from_slice(&index.to_ne_bytes());
        b[16..24].copy_from_slice(&size.to_ne_bytes());
        b[24..32].copy_from_slice(&offset.to_ne_bytes());
        let mut prev_next: Option<usize> = None;
        for c in caps {
            let at = b.len();
            match prev_next {
                None => b[12..16].copy_from_slice(&(at as u32).to_ne_bytes()),
                Some(p) => b[p..p + 4].copy_from_slice(&(at as u32).to_ne_bytes()),
            }
            prev_next = Some(at + 4);
            b.extend_from_slice(c);
        }
        let l = b.len() as u32;
        b[0..4].copy_from_slice(&l.to_ne_bytes());
        b
    }

    fn cap(id: u16, body: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend_from_slice(&id.to_ne_bytes());
        c.extend_from_slice(&1u16.to_ne_bytes());
        c.extend_from_slice(&0u32.to_ne_bytes());
        c.extend_from_slice(body);
        c
    }

    #[test]
    fn plain_bar() {
        let b = info_buf(0, 0x7, 0x10_0000, 0, &[]);
        let r = decode_region_info(&b, true).unwrap();
        assert_eq!(r.name, "BAR0");
        assert_eq!(r.size, 0x10_0000);
        assert_eq!(r.flag_names(), ["read", "write", "mmap"]);
        assert!(r.caps.is_empty());
        assert_eq!(
            r.mmap_areas(),
            [SparseArea {
                offset: 0,
                size: 0x10_0000
            }]
        );
    }

    #[test]
    fn sparse_mmap_and_msix_caps() {
        let mut sparse = Vec::new();
        sparse.extend_from_slice(&2u32.to_ne_bytes());
        sparse.extend_from_slice(&0u32.to_ne_bytes());
        for (o, s) in [(0u64, 0x1000u64), (0x3000, 0x1000)] {
            sparse.extend_from_slice(&o.to_ne_bytes());
            sparse.extend_from_slice(&s.to_ne_bytes());
        }
        let b = info_buf(
            2,
            0xf,
            0x4000,
            2 << 40,
            &[
                cap(REGION_CAP_SPARSE_MMAP, &sparse),
                cap(REGION_CAP_MSIX_MAPPABLE, &[]),
            ],
        );
        let r = decode_region_info(&b, true).unwrap();
        assert_eq!(r.name, "BAR2");
        assert_eq!(r.offset, 2 << 40);
        assert_eq!(r.caps.len(), 2);
        assert_eq!(r.caps[1], RegionCap::MsixMappable);
        assert_eq!(
            r.mmap_areas(),
            [
                SparseArea {
                    offset: 0,
                    size: 0x1000
                },
                SparseArea {
                    offset: 0x3000,
                    size: 0x1000
                }
            ]
        );
    }

    #[test]
    fn migration_v1_region_is_named_by_type() {
        let mut t = Vec::new();
        t.extend_from_slice(&3u32.to_ne_bytes());
        t.extend_from_slice(&1u32.to_ne_bytes());
        let b = info_buf(9, 0xb, 0x2000, 9 << 40, &[cap(REGION_CAP_TYPE, &t)]);
        let r = decode_region_info(&b, true).unwrap();
        assert_eq!(r.name, "migration-v1");
        assert_eq!(r.type_subtype(), Some(MIGRATION_V1_TYPE));
        assert_eq!(region_name(10, true, Some((7, 2))), "type7/2");
        assert_eq!(
            region_name(10, true, Some((0x8000_8086, 1))),
            "pci-vendor-8086/1"
        );
        assert_eq!(region_name(3, false, None), "region3");
    }

    #[test]
    fn caps_ignored_without_flag_and_malformed_chains_are_errors() {
        let mut t = Vec::new();
        t.extend_from_slice(&3u32.to_ne_bytes());
        t.extend_from_slice(&1u32.to_ne_bytes());
        let mut b = info_buf(9, 0x3, 0x2000, 0, &[cap(REGION_CAP_TYPE, &t)]);
        assert!(decode_region_info(&b, true).unwrap().caps.is_empty());
        // Set CAPS and make the cap point at itself: a loop.
        b[4..8].copy_from_slice(&0xbu32.to_ne_bytes());
        b[36..40].copy_from_slice(&32u32.to_ne_bytes());
        assert_eq!(
            decode_region_info(&b, true).unwrap_err(),
            ChainError::Loop {
                offset: 32,
                next: 32
            }
        );
        // Truncated buffers are errors rather than panics.
        assert!(matches!(
            decode_region_info(&b[..20], true),
            Err(ChainError::Short { need: 32, .. })
        ));
        assert!(matches!(
            decode_region_info(&b[..38], true),
            Err(ChainError::OutOfRange { offset: 32, .. })
        ));
        // An argsz shorter than the buffer bounds the chain too.
        b[36..40].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(decode_region_info(&b, true).unwrap().caps.len(), 1);
        b[0..4].copy_from_slice(&44u32.to_ne_bytes());
        assert!(matches!(
            decode_region_info(&b, true),
            Err(ChainError::OutOfRange {
                need: 16,
                len: 44,
                ..
            })
        ));
        // A cap_offset out of range, or inside the header.
        b[0..4].copy_from_slice(&48u32.to_ne_bytes());
        b[12..16].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(matches!(
            decode_region_info(&b, true),
            Err(ChainError::OutOfRange { offset: 4000, .. })
        ));
        b[12..16].copy_from_slice(&16u32.to_ne_bytes());
        assert!(matches!(
            decode_region_info(&b, true),
            Err(ChainError::IntoHeader { offset: 16, .. })
        ));
    }

    #[test]
    fn sparse_mmap_with_more_areas_than_bytes_is_an_error() {
        let mut sparse = Vec::new();
        sparse.extend_from_slice(&3u32.to_ne_bytes()); // claims 3, holds 1
        sparse.extend_from_slice(&0u32.to_ne_bytes());
        sparse.extend_from_slice(&0u64.to_ne_bytes());
        sparse.extend_from_slice(&0x1000u64.to_ne_bytes());
        let b = info_buf(2, 0xf, 0x4000, 0, &[cap(REGION_CAP_SPARSE_MMAP, &sparse)]);
        assert_eq!(
            decode_region_info(&b, true).unwrap_err(),
            ChainError::OutOfRange {
                offset: 32,
                need: 64,
                len: 64
            }
        );
    }

    #[test]
    fn mapped_width_access() {
        let mut mem = vec![0u64; 8];
        let ptr = std::ptr::NonNull::new(mem.as_mut_ptr() as *mut u8).unwrap();
        // SAFETY: `mem` outlives `m` and is only accessed through it below.
        let m = unsafe { RegionMap::new(ptr, 64, Box::new(())) };
        map_write(&m, 8, 4, 0xdead_beef).unwrap();
        map_write(&m, 13, 1, 0x5a).unwrap();
        assert_eq!(map_read(&m, 8, 8).unwrap(), 0x5a00_dead_beef);
        assert_eq!(map_read(&m, 10, 2).unwrap(), 0xdead);
        assert!(map_read(&m, 9, 4).is_err());
        assert!(map_read(&m, 60, 8).is_err());
        assert!(map_write(&m, 0, 1, 0x100).is_err());
        assert!(map_read(&m, 0, 3).is_err());
        drop(m);
        assert_eq!(mem[1], 0x5a00_dead_beef);
    }

    /// A mapping of a region without VFIO_REGION_INFO_FLAG_WRITE is mapped PROT_READ: every
    /// write through it is refused (a store would fault), reads work. And an access whose
    /// address is misaligned is refused even when the mapping does not start on a page.
    #[test]
    fn a_read_only_mapping_refuses_writes_and_alignment_is_of_the_address() {
        let mut mem = vec![0u64; 8];
        mem[0] = 0x1122_3344_5566_7788;
        let ptr = std::ptr::NonNull::new(mem.as_mut_ptr() as *mut u8).unwrap();
        // SAFETY: `mem` outlives `m` and is only read through it.
        let m = unsafe { RegionMap::read_only(ptr, 64, Box::new(())) };
        assert!(!m.is_writable());
        assert_eq!(map_read(&m, 0, 8).unwrap(), 0x1122_3344_5566_7788);
        assert_eq!(m.read_u32(4).unwrap(), 0x1122_3344);
        assert!(matches!(
            map_write(&m, 0, 4, 1),
            Err(DeviceError::InvalidArgument(_))
        ));
        assert!(m.write_u32(0, 1).is_err());
        assert!(m.write(0, &[1]).is_err());
        drop(m);
        assert_eq!(mem[0], 0x1122_3344_5566_7788);

        // A mapping one byte into the memory: offset 3 is the aligned address.
        let ptr = std::ptr::NonNull::new(mem.as_mut_ptr() as *mut u8).unwrap();
        // SAFETY: one byte in, 63 bytes stay inside `mem`, which outlives `m`.
        let m = unsafe { RegionMap::new(ptr.add(1), 63, Box::new(())) };
        assert!(matches!(
            map_read(&m, 0, 4),
            Err(DeviceError::Misaligned { .. })
        ));
        assert!(matches!(m.read_u32(0), Err(DeviceError::Misaligned { .. })));
        assert_eq!(map_read(&m, 3, 4).unwrap(), 0x1122_3344);
    }

    #[test]
    fn irq_names_and_lookup() {
        assert_eq!(irq_name(2, true), "MSIX");
        assert_eq!(irq_name(4, true), "REQ");
        assert_eq!(irq_name(5, true), "IRQ5");
        assert_eq!(irq_name(0, false), "IRQ0");
        let regions = vec![
            decode_region_info(&info_buf(0, 3, 8, 0, &[]), true).unwrap(),
            decode_region_info(&info_buf(7, 3, 256, 7 << 40, &[]), true).unwrap(),
        ];
        assert_eq!(find_region(&regions, "config").unwrap().index, 7);
        assert_eq!(find_region(&regions, "0").unwrap().name, "BAR0");
        assert!(find_region(&regions, "BAR1").is_none());
    }
}
