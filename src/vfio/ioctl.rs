//! The few VFIO / iommufd ioctls this crate issues itself.
//!
//! vfio-ioctls covers opening, DMA mapping and the migration feature calls, but:
//! - it does not expose the region/IRQ counts and drops regions whose info query fails (a
//!   non-VGA device's VGA index), so every later region index shifts by one in its table;
//! - its `reset()` and IRQ calls discard the errno;
//! - it has no IRQ masking other than INTx unmask, no `start` offset for eventfds, and no
//!   IOVA-range queries.
//!
//! So `GET_INFO`, `GET_REGION_INFO`, `GET_IRQ_INFO`, `SET_IRQS`, `RESET`,
//! `VFIO_IOMMU_GET_INFO` and `IOMMU_IOAS_IOVA_RANGES` are issued here, each returning the
//! kernel's errno.

use std::io;
use std::os::fd::RawFd;

/// `_IO(';', nr)`: VFIO and iommufd ioctls carry their size in `argsz`, not in the number.
const fn io_nr(nr: u64) -> u64 {
    (0x3b << 8) | nr
}

const VFIO_BASE: u64 = 100;
pub(crate) const VFIO_DEVICE_GET_INFO: u64 = io_nr(VFIO_BASE + 7);
pub(crate) const VFIO_DEVICE_GET_REGION_INFO: u64 = io_nr(VFIO_BASE + 8);
pub(crate) const VFIO_DEVICE_GET_IRQ_INFO: u64 = io_nr(VFIO_BASE + 9);
pub(crate) const VFIO_DEVICE_SET_IRQS: u64 = io_nr(VFIO_BASE + 10);
pub(crate) const VFIO_DEVICE_RESET: u64 = io_nr(VFIO_BASE + 11);
pub(crate) const VFIO_IOMMU_GET_INFO: u64 = io_nr(VFIO_BASE + 12);
pub(crate) const IOMMU_IOAS_IOVA_RANGES: u64 = io_nr(0x84);

/// `VFIO_IRQ_SET_DATA_NONE`.
pub const IRQ_SET_DATA_NONE: u32 = 1 << 0;
/// `VFIO_IRQ_SET_DATA_BOOL`.
pub const IRQ_SET_DATA_BOOL: u32 = 1 << 1;
/// `VFIO_IRQ_SET_DATA_EVENTFD`.
pub const IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
/// `VFIO_IRQ_SET_ACTION_MASK`.
pub const IRQ_SET_ACTION_MASK: u32 = 1 << 3;
/// `VFIO_IRQ_SET_ACTION_UNMASK`.
pub const IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
/// `VFIO_IRQ_SET_ACTION_TRIGGER`.
pub const IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;

/// Issues `ioctl(fd, req, buf)` on a byte buffer that starts with an `argsz`-style header.
fn ioctl_buf(fd: RawFd, req: u64, buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: every request used here reads and writes at most `argsz` bytes of the buffer,
    // and callers set `argsz` to at most `buf.len()`; `buf` is exclusively borrowed.
    let r = unsafe { libc::ioctl(fd, req as _, buf.as_mut_ptr()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

/// `struct vfio_device_info` as returned by the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawDeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}

/// `VFIO_DEVICE_GET_INFO`.
pub fn device_info(fd: RawFd) -> io::Result<RawDeviceInfo> {
    // struct vfio_device_info { argsz, flags, num_regions, num_irqs, cap_offset, pad }
    let mut b = [0u8; 24];
    b[0..4].copy_from_slice(&24u32.to_ne_bytes());
    ioctl_buf(fd, VFIO_DEVICE_GET_INFO, &mut b)?;
    Ok(RawDeviceInfo {
        flags: u32_at(&b, 4),
        num_regions: u32_at(&b, 8),
        num_irqs: u32_at(&b, 12),
    })
}

/// `VFIO_DEVICE_GET_REGION_INFO`, with the capability chain: returns the whole
/// `struct vfio_region_info` buffer (header plus caps) for [`super::region::decode_region_info`].
pub fn region_info(fd: RawFd, index: u32) -> io::Result<Vec<u8>> {
    const HDR: usize = 32; // argsz flags index cap_offset size offset
    let mut b = vec![0u8; HDR];
    for _ in 0..4 {
        let argsz = b.len() as u32;
        b.fill(0);
        b[0..4].copy_from_slice(&argsz.to_ne_bytes());
        b[8..12].copy_from_slice(&index.to_ne_bytes());
        ioctl_buf(fd, VFIO_DEVICE_GET_REGION_INFO, &mut b)?;
        let want = u32_at(&b, 0) as usize;
        if want <= b.len() {
            return Ok(b);
        }
        b = vec![0u8; want];
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "region info kept growing between calls",
    ))
}

/// `VFIO_DEVICE_GET_IRQ_INFO`: returns `(flags, count)`.
pub fn irq_info(fd: RawFd, index: u32) -> io::Result<(u32, u32)> {
    // struct vfio_irq_info { argsz, flags, index, count }
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&16u32.to_ne_bytes());
    b[8..12].copy_from_slice(&index.to_ne_bytes());
    ioctl_buf(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut b)?;
    Ok((u32_at(&b, 4), u32_at(&b, 12)))
}

/// Builds a `struct vfio_irq_set` with its data array.
pub fn irq_set_buf(flags: u32, index: u32, start: u32, count: u32, data: &[u8]) -> Vec<u8> {
    let argsz = 20 + data.len();
    let mut b = Vec::with_capacity(argsz);
    b.extend_from_slice(&(argsz as u32).to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&index.to_ne_bytes());
    b.extend_from_slice(&start.to_ne_bytes());
    b.extend_from_slice(&count.to_ne_bytes());
    b.extend_from_slice(data);
    b
}

/// `VFIO_DEVICE_SET_IRQS` with a prepared buffer from [`irq_set_buf`].
pub fn set_irqs(fd: RawFd, mut buf: Vec<u8>) -> io::Result<()> {
    ioctl_buf(fd, VFIO_DEVICE_SET_IRQS, &mut buf)
}

/// `VFIO_DEVICE_RESET`.
pub fn reset(fd: RawFd) -> io::Result<()> {
    // SAFETY: VFIO_DEVICE_RESET takes no argument.
    let r = unsafe { libc::ioctl(fd, VFIO_DEVICE_RESET as _) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An inclusive IOVA range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IovaRange {
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub last: u64,
}

/// Parses the `VFIO_IOMMU_GET_INFO` buffer: `(iova_pgsizes, ranges)`.
pub fn decode_type1_info(b: &[u8]) -> (u64, Vec<IovaRange>) {
    if b.len() < 24 {
        return (0, Vec::new());
    }
    let flags = u32_at(b, 4);
    let pgsizes = if flags & 1 != 0 { u64_at(b, 8) } else { 0 };
    let mut ranges = Vec::new();
    if flags & 2 == 0 {
        return (pgsizes, ranges);
    }
    let mut off = u32_at(b, 16) as usize;
    let mut hops = 0;
    while off >= 24 && off + 8 <= b.len() && hops < 64 {
        hops += 1;
        let id = u16::from_ne_bytes([b[off], b[off + 1]]);
        let next = u32_at(b, off + 4) as usize;
        if id == 1 && off + 16 <= b.len() {
            let n = u32_at(b, off + 8) as usize;
            for i in 0..n {
                let p = off + 16 + i * 16;
                if p + 16 > b.len() {
                    break;
                }
                ranges.push(IovaRange {
                    start: u64_at(b, p),
                    last: u64_at(b, p + 8),
                });
            }
        }
        if next == 0 || next == off {
            break;
        }
        off = next;
    }
    (pgsizes, ranges)
}

/// `VFIO_IOMMU_GET_INFO` on a type1 container: `(iova_pgsizes, IOVA ranges)`.
pub fn type1_info(container: RawFd) -> io::Result<(u64, Vec<IovaRange>)> {
    let mut b = vec![0u8; 24];
    for _ in 0..4 {
        let argsz = b.len() as u32;
        b.fill(0);
        b[0..4].copy_from_slice(&argsz.to_ne_bytes());
        ioctl_buf(container, VFIO_IOMMU_GET_INFO, &mut b)?;
        let want = u32_at(&b, 0) as usize;
        if want <= b.len() {
            return Ok(decode_type1_info(&b));
        }
        b = vec![0u8; want];
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "IOMMU info kept growing between calls",
    ))
}

/// `IOMMU_IOAS_IOVA_RANGES`: `(alignment, ranges)` of an IOAS.
pub fn ioas_iova_ranges(iommufd: RawFd, ioas: u32) -> io::Result<(u64, Vec<IovaRange>)> {
    let mut n: u32 = 8;
    for _ in 0..4 {
        let mut ranges = vec![0u64; 2 * n as usize];
        // struct iommu_ioas_iova_ranges { size, ioas_id, num_iovas, __reserved,
        //                                 allowed_iovas (ptr), out_iova_alignment }
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&32u32.to_ne_bytes());
        b[4..8].copy_from_slice(&ioas.to_ne_bytes());
        b[8..12].copy_from_slice(&n.to_ne_bytes());
        b[16..24].copy_from_slice(&(ranges.as_mut_ptr() as u64).to_ne_bytes());
        // SAFETY: the kernel writes at most `num_iovas` ranges (16 bytes each) to
        // `allowed_iovas`, which points at `ranges` of exactly that size, alive for the call.
        let r = unsafe { libc::ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES as _, b.as_mut_ptr()) };
        let got = u32_at(&b, 8);
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EMSGSIZE) && got > n {
                n = got;
                continue;
            }
            return Err(e);
        }
        let out = (0..got.min(n) as usize)
            .map(|i| IovaRange {
                start: ranges[2 * i],
                last: ranges[2 * i + 1],
            })
            .collect();
        return Ok((u64_at(&b, 24), out));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "IOVA range count kept growing between calls",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_uapi() {
        // From include/uapi/linux/vfio.h: _IO(';', 100 + n).
        assert_eq!(VFIO_DEVICE_GET_INFO, 0x3b6b);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(VFIO_DEVICE_RESET, 0x3b6f);
        assert_eq!(VFIO_IOMMU_GET_INFO, 0x3b70);
        assert_eq!(IOMMU_IOAS_IOVA_RANGES, 0x3b84);
    }

    #[test]
    fn irq_set_layout() {
        let b = irq_set_buf(
            IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            2,
            1,
            2,
            &[1; 8],
        );
        assert_eq!(b.len(), 28);
        assert_eq!(u32_at(&b, 0), 28);
        assert_eq!(u32_at(&b, 4), 0x24);
        assert_eq!(u32_at(&b, 8), 2);
        assert_eq!(u32_at(&b, 12), 1);
        assert_eq!(u32_at(&b, 16), 2);
    }

    #[test]
    fn type1_info_with_iova_ranges() {
        let mut b = vec![0u8; 24 + 16 + 32];
        let l = b.len() as u32;
        b[0..4].copy_from_slice(&l.to_ne_bytes());
        b[4..8].copy_from_slice(&3u32.to_ne_bytes()); // PGSIZES | CAPS
        b[8..16].copy_from_slice(&0x1000u64.to_ne_bytes());
        b[16..20].copy_from_slice(&24u32.to_ne_bytes());
        b[24..26].copy_from_slice(&1u16.to_ne_bytes()); // IOVA_RANGE
        b[26..28].copy_from_slice(&1u16.to_ne_bytes());
        b[32..36].copy_from_slice(&2u32.to_ne_bytes());
        b[40..48].copy_from_slice(&0u64.to_ne_bytes());
        b[48..56].copy_from_slice(&0xfedf_ffffu64.to_ne_bytes());
        b[56..64].copy_from_slice(&0xfef0_0000u64.to_ne_bytes());
        b[64..72].copy_from_slice(&u64::MAX.to_ne_bytes());
        let (pg, r) = decode_type1_info(&b);
        assert_eq!(pg, 0x1000);
        assert_eq!(
            r,
            [
                IovaRange {
                    start: 0,
                    last: 0xfedf_ffff
                },
                IovaRange {
                    start: 0xfef0_0000,
                    last: u64::MAX
                }
            ]
        );
        // No CAPS flag: no ranges, even with a cap_offset.
        b[4..8].copy_from_slice(&1u32.to_ne_bytes());
        assert!(decode_type1_info(&b).1.is_empty());
    }
}
