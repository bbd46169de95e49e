//! The VFIO and iommufd ioctls this crate issues itself: each request number declared once
//! (vmm-sys-util's `ioctl_io_nr!`, from the vfio-bindings / iommufd-bindings values), issued
//! with vmm-sys-util's `ioctl_with_*` helpers on the uAPI structs, one type per kernel object
//! and one method per ioctl (as rust-vmm's kvm-ioctls does): [`DeviceFd`] (a device fd),
//! [`ContainerFd`] (a legacy type1 container), [`IommufdFd`] (an iommufd).
//!
//! Everything else goes through rust-vmm's vfio-ioctls: opening groups, containers and cdevs,
//! DMA mapping, and the migration v2 feature calls (`VFIO_DEVICE_FEATURE` with
//! `struct vfio_device_feature_mig_state`, `vfio_device_feature_mig_data_size`,
//! `VFIO_MIG_GET_PRECOPY_INFO`...), whose errors keep the errno in their source chain
//! (recovered by `vfio_io_error` in [`crate::vfio`]). The calls here are not routed through
//! vfio-ioctls because:
//! - it does not expose the region/IRQ counts and drops regions whose info query fails (a
//!   non-VGA device's VGA index), so every later region index shifts by one in its table;
//! - its `reset()` and IRQ calls discard the errno;
//! - it has no IRQ masking other than INTx unmask, no `start` offset for eventfds, and no
//!   IOVA-range queries.
//!
//! So `VFIO_DEVICE_GET_INFO`, `VFIO_DEVICE_GET_REGION_INFO`, `VFIO_DEVICE_GET_IRQ_INFO`,
//! `VFIO_DEVICE_SET_IRQS`, `VFIO_DEVICE_RESET`, `VFIO_IOMMU_GET_INFO` and
//! `IOMMU_IOAS_IOVA_RANGES` are issued here, each returning the kernel's errno as an
//! [`io::Error`]. vfio-bindings' `IrqSet` FAM wrapper is not used for `struct vfio_irq_set`
//! either: it takes `count` (the number of vectors) for the length of the data array (bytes)
//! and caps it at 2048 bytes, below 2048 MSI-X eventfds.
//!
//! Capability chains in the answers are decoded, bounds-checked, by the private `caps` module.

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use iommufd_bindings::{iommu_ioas_iova_ranges, iommu_iova_range};
use iommufd_ioctls::IommuFd;
use vfio_bindings::bindings::vfio::{
    vfio_device_info, vfio_iommu_type1_info, vfio_iommu_type1_info_cap_iova_range, vfio_iova_range,
    vfio_irq_info, vfio_irq_set, vfio_region_info,
};
use vfio_ioctls::VfioContainer;
use vmm_sys_util::ioctl::{ioctl, ioctl_with_mut_ptr, ioctl_with_mut_ref, ioctl_with_ptr};

use super::caps::{self, ChainError, Pod};
use crate::device::uapi::{
    IOMMU_INFO_CAPS, IOMMU_INFO_PGSIZES, IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, IRQ_SET_ACTION_TRIGGER,
    IRQ_SET_DATA_EVENTFD,
};

/// The request numbers, `_IO(type, nr)`: VFIO and iommufd carry the argument size in the
/// struct (`argsz`, `size`), not in the number. Type `';'` is VFIO's (and iommufd's, from
/// nr 0x80) in the kernel's ioctl-number registry, so no other driver answers these. Every
/// ioctl the crate issues itself is declared here, once (`tests/layers.rs` checks it).
pub(crate) mod nr {
    use iommufd_bindings::{IOMMUFD_CMD_IOAS_IOVA_RANGES, IOMMUFD_TYPE};
    use vfio_bindings::bindings::vfio::{VFIO_BASE, VFIO_TYPE};

    vmm_sys_util::ioctl_io_nr!(VFIO_DEVICE_GET_INFO, VFIO_TYPE as u32, VFIO_BASE + 7);
    vmm_sys_util::ioctl_io_nr!(VFIO_DEVICE_GET_REGION_INFO, VFIO_TYPE as u32, VFIO_BASE + 8);
    vmm_sys_util::ioctl_io_nr!(VFIO_DEVICE_GET_IRQ_INFO, VFIO_TYPE as u32, VFIO_BASE + 9);
    vmm_sys_util::ioctl_io_nr!(VFIO_DEVICE_SET_IRQS, VFIO_TYPE as u32, VFIO_BASE + 10);
    vmm_sys_util::ioctl_io_nr!(VFIO_DEVICE_RESET, VFIO_TYPE as u32, VFIO_BASE + 11);
    vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_GET_INFO, VFIO_TYPE as u32, VFIO_BASE + 12);
    vmm_sys_util::ioctl_io_nr!(VFIO_DEVICE_FEATURE, VFIO_TYPE as u32, VFIO_BASE + 17);
    vmm_sys_util::ioctl_io_nr!(VFIO_MIG_GET_PRECOPY_INFO, VFIO_TYPE as u32, VFIO_BASE + 21);
    vmm_sys_util::ioctl_io_nr!(
        IOMMU_IOAS_IOVA_RANGES,
        IOMMUFD_TYPE as u32,
        IOMMUFD_CMD_IOAS_IOVA_RANGES
    );
}

/// The errno of a failed ioctl (read at once, before anything else can change it).
fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `len` as an `argsz`.
fn argsz(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ioctl argument of {len} bytes"),
        )
    })
}

/// A malformed answer as an `io::Error` (the [`ChainError`] kept as its source).
fn malformed(e: ChainError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A zeroed buffer of `len` bytes (at least one `T`), aligned for `T`: a uAPI struct whose
/// `argsz` covers a variable part after it (a capability chain, a data array).
#[derive(Debug)]
struct ArgszBuf<T> {
    buf: Vec<T>,
    len: usize,
}

impl<T: Pod + Default> ArgszBuf<T> {
    fn new(len: usize) -> ArgszBuf<T> {
        let len = len.max(size_of::<T>());
        ArgszBuf {
            buf: (0..len.div_ceil(size_of::<T>()))
                .map(|_| T::default())
                .collect(),
            len,
        }
    }

    /// The fixed struct.
    fn head(&self) -> &T {
        &self.buf[0] // `new` allocates at least one `T`
    }

    fn head_mut(&mut self) -> &mut T {
        &mut self.buf[0]
    }

    /// The `len` bytes.
    fn bytes(&self) -> &[u8] {
        // SAFETY: the Vec holds `buf.len() * size_of::<T>() >= len` initialised bytes (a
        // `Pod` has no padding); `u8` has no alignment requirement; the borrow of `self`
        // keeps the memory alive and unaliased by writers.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed exclusively; any bytes written form valid `T`s.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<u8>(), self.len) }
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

/// A `struct vfio_irq_set` with its data array, for [`DeviceFd::set_irqs`].
#[derive(Debug)]
pub struct IrqSet {
    buf: ArgszBuf<vfio_irq_set>,
}

impl IrqSet {
    /// `flags` (`IRQ_SET_DATA_* | IRQ_SET_ACTION_*` of [`crate::device::uapi`]) on vectors
    /// `start..start+count` of IRQ `index`, with `data` (eventfds or bools, per the data
    /// type) after the header; `argsz` covers both. `DATA_NONE | ACTION_TRIGGER` with
    /// `count` 0 disables the index. Fails only when the whole does not fit an `argsz`.
    pub fn new(flags: u32, index: u32, start: u32, count: u32, data: &[u8]) -> io::Result<IrqSet> {
        let head = size_of::<vfio_irq_set>();
        let len = head.saturating_add(data.len());
        let size = argsz(len)?; // before allocating: `len` fits a u32
        let mut buf = ArgszBuf::<vfio_irq_set>::new(len);
        let h = buf.head_mut();
        h.argsz = size;
        h.flags = flags;
        h.index = index;
        h.start = start;
        h.count = count;
        buf.bytes_mut()[head..].copy_from_slice(data); // `len - head == data.len()`
        Ok(IrqSet { buf })
    }

    /// `DATA_EVENTFD | ACTION_TRIGGER`: connects `fds` to vectors `start..` of IRQ `index`
    /// (an fd of -1 disconnects its vector).
    pub fn eventfds(index: u32, start: u32, fds: &[RawFd]) -> io::Result<IrqSet> {
        let count = u32::try_from(fds.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} eventfds", fds.len()),
            )
        })?;
        let data: Vec<u8> = fds.iter().flat_map(|f| f.to_ne_bytes()).collect();
        IrqSet::new(
            IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            index,
            start,
            count,
            &data,
        )
    }

    /// The header as sent.
    #[cfg(test)]
    pub fn header(&self) -> &vfio_irq_set {
        self.buf.head()
    }

    /// The `argsz` bytes sent to the kernel.
    #[cfg(test)]
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.bytes()
    }
}

/// A VFIO device fd (from a group or a cdev): the `VFIO_DEVICE_*` ioctls the crate issues
/// itself. Borrowed, so the fd stays open while this exists.
#[derive(Clone, Copy, Debug)]
pub struct DeviceFd<'a> {
    fd: BorrowedFd<'a>,
}

impl<'a> DeviceFd<'a> {
    /// Wraps the fd of an open VFIO device. On another kind of fd the ioctls fail with the
    /// kernel's errno (`ENOTTY`).
    pub fn new(fd: BorrowedFd<'a>) -> DeviceFd<'a> {
        DeviceFd { fd }
    }

    /// `VFIO_DEVICE_GET_INFO`: flags and the region and IRQ counts (`struct vfio_device_info`
    /// without its capability chain).
    pub fn info(&self) -> io::Result<vfio_device_info> {
        let mut info = vfio_device_info {
            argsz: argsz(size_of::<vfio_device_info>())?,
            ..Default::default()
        };
        // SAFETY: `self.fd` is open for 'a (BorrowedFd). The kernel reads `argsz`, which is
        // the struct's size, and writes at most that many bytes (a chain that does not fit
        // is only announced in `argsz`) into `info`, borrowed exclusively for the call.
        check(unsafe { ioctl_with_mut_ref(&self.fd, nr::VFIO_DEVICE_GET_INFO(), &mut info) })?;
        Ok(info)
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` for region `index`, with its capability chain: the
    /// `argsz` bytes of `struct vfio_region_info` and the chain after it, for
    /// [`super::region::decode_region_info`]. Asks again with a larger buffer while the
    /// kernel's `argsz` says the chain did not fit.
    pub fn region_info(&self, index: u32) -> io::Result<Vec<u8>> {
        let mut len = size_of::<vfio_region_info>();
        for _ in 0..4 {
            let mut b = ArgszBuf::<vfio_region_info>::new(len);
            b.head_mut().argsz = argsz(len)?;
            b.head_mut().index = index;
            // SAFETY: `self.fd` is open for 'a. The kernel reads `argsz` (`len`) and writes at
            // most `len` bytes from the pointer: the header, and the chain only when it fits in
            // `argsz`. `b` holds at least `len` bytes, aligned for the struct, borrowed
            // exclusively for the call.
            check(unsafe {
                ioctl_with_mut_ptr(
                    &self.fd,
                    nr::VFIO_DEVICE_GET_REGION_INFO(),
                    b.buf.as_mut_ptr(),
                )
            })?;
            let want = b.head().argsz as usize;
            if want <= len {
                return Ok(b.bytes().to_vec());
            }
            len = want;
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "region info kept growing between calls",
        ))
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO` for IRQ `index`: its flags and vector count.
    pub fn irq_info(&self, index: u32) -> io::Result<vfio_irq_info> {
        let mut info = vfio_irq_info {
            argsz: argsz(size_of::<vfio_irq_info>())?,
            index,
            ..Default::default()
        };
        // SAFETY: `self.fd` is open for 'a. The kernel reads and writes the struct's
        // `argsz` bytes, exactly `info`, borrowed exclusively for the call.
        check(unsafe { ioctl_with_mut_ref(&self.fd, nr::VFIO_DEVICE_GET_IRQ_INFO(), &mut info) })?;
        Ok(info)
    }

    /// `VFIO_DEVICE_SET_IRQS`.
    pub fn set_irqs(&self, set: &IrqSet) -> io::Result<()> {
        // SAFETY: `self.fd` is open for 'a. The kernel only reads, `argsz` bytes from the
        // pointer, and `set` holds exactly `argsz` bytes there (IrqSet::new), alive for the
        // call.
        check(unsafe { ioctl_with_ptr(&self.fd, nr::VFIO_DEVICE_SET_IRQS(), set.buf.buf.as_ptr()) })
    }

    /// `VFIO_DEVICE_RESET`.
    pub fn reset(&self) -> io::Result<()> {
        // SAFETY: `self.fd` is open for 'a; VFIO_DEVICE_RESET takes no argument.
        check(unsafe { ioctl(&self.fd, nr::VFIO_DEVICE_RESET()) })
    }
}

/// A legacy VFIO container with the type1 IOMMU driver set: `VFIO_IOMMU_GET_INFO`.
#[derive(Clone, Copy, Debug)]
pub struct ContainerFd<'a> {
    fd: BorrowedFd<'a>,
}

impl<'a> ContainerFd<'a> {
    /// Borrows the fd of vfio-ioctls' container.
    pub fn of(container: &'a VfioContainer) -> ContainerFd<'a> {
        // SAFETY: the container owns its fd and closes it only when dropped, which the
        // borrow for 'a excludes: the fd stays open for 'a.
        let fd = unsafe { BorrowedFd::borrow_raw(container.as_raw_fd()) };
        ContainerFd { fd }
    }

    /// `VFIO_IOMMU_GET_INFO` on a type1 container: `(iova_pgsizes, IOVA ranges)` (see
    /// [`decode_type1_info`]). Asks again with a larger buffer while the kernel's `argsz`
    /// says the chain did not fit.
    pub fn type1_info(&self) -> io::Result<(u64, Vec<IovaRange>)> {
        let mut len = size_of::<vfio_iommu_type1_info>();
        for _ in 0..4 {
            let mut b = ArgszBuf::<vfio_iommu_type1_info>::new(len);
            b.head_mut().argsz = argsz(len)?;
            // SAFETY: `self.fd` is open for 'a. The kernel reads `argsz` (`len`) and writes at
            // most `len` bytes from the pointer (the chain only when it fits); `b` holds at
            // least `len` bytes, aligned for the struct, borrowed exclusively for the call.
            check(unsafe {
                ioctl_with_mut_ptr(&self.fd, nr::VFIO_IOMMU_GET_INFO(), b.buf.as_mut_ptr())
            })?;
            let want = b.head().argsz as usize;
            if want <= len {
                return decode_type1_info(b.bytes()).map_err(malformed);
            }
            len = want;
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "IOMMU info kept growing between calls",
        ))
    }
}

/// Decodes a `VFIO_IOMMU_GET_INFO` answer: `(iova_pgsizes, ranges)`, the page sizes 0 when
/// the kernel does not report them, the ranges from every
/// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE` capability (none without `VFIO_IOMMU_INFO_CAPS`).
/// A malformed chain is an error.
pub fn decode_type1_info(b: &[u8]) -> Result<(u64, Vec<IovaRange>), ChainError> {
    let h: vfio_iommu_type1_info = caps::read_head(b, "struct vfio_iommu_type1_info")?;
    let pgsizes = if h.flags & IOMMU_INFO_PGSIZES != 0 {
        h.iova_pgsizes
    } else {
        0
    };
    let mut ranges = Vec::new();
    if h.flags & IOMMU_INFO_CAPS == 0 {
        return Ok((pgsizes, ranges));
    }
    let filled = b.get(..(h.argsz as usize).min(b.len())).unwrap_or(b);
    for c in caps::walk(filled, size_of::<vfio_iommu_type1_info>(), h.cap_offset)? {
        if c.id == IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            let cap: vfio_iommu_type1_info_cap_iova_range = c.get()?;
            let at = offset_of!(vfio_iommu_type1_info_cap_iova_range, iova_ranges);
            let list = c.array::<vfio_iova_range>(at, cap.nr_iovas as usize)?;
            ranges.extend(list.into_iter().map(|r| IovaRange {
                start: r.start,
                last: r.end,
            }));
        }
    }
    Ok((pgsizes, ranges))
}

/// An iommufd (`/dev/iommu`): `IOMMU_IOAS_IOVA_RANGES`.
#[derive(Clone, Copy, Debug)]
pub struct IommufdFd<'a> {
    fd: BorrowedFd<'a>,
}

impl<'a> IommufdFd<'a> {
    /// Borrows the fd of iommufd-ioctls' iommufd.
    pub fn of(iommufd: &'a IommuFd) -> IommufdFd<'a> {
        // SAFETY: the IommuFd owns its fd and closes it only when dropped, which the borrow
        // for 'a excludes: the fd stays open for 'a.
        let fd = unsafe { BorrowedFd::borrow_raw(iommufd.as_raw_fd()) };
        IommufdFd { fd }
    }

    /// `IOMMU_IOAS_IOVA_RANGES`: `(alignment, ranges)` of IOAS `ioas`. Asks again with room
    /// for more ranges while the kernel answers `EMSGSIZE`.
    pub fn ioas_iova_ranges(&self, ioas: u32) -> io::Result<(u64, Vec<IovaRange>)> {
        let mut n: u32 = 8;
        for _ in 0..4 {
            let mut ranges = vec![iommu_iova_range::default(); n as usize];
            let mut arg = iommu_ioas_iova_ranges {
                size: argsz(size_of::<iommu_ioas_iova_ranges>())?,
                ioas_id: ioas,
                num_iovas: n,
                __reserved: 0,
                allowed_iovas: ranges.as_mut_ptr() as u64,
                out_iova_alignment: 0,
            };
            // SAFETY: `self.fd` is open for 'a. The kernel reads and writes `size` bytes of
            // `arg` (exactly the struct, borrowed exclusively), and writes at most `num_iovas`
            // (`n`) ranges of 16 bytes to `allowed_iovas`, which points at `ranges`: exactly
            // `n` `iommu_iova_range`s, alive and untouched until the call returns.
            let r = unsafe { ioctl_with_mut_ref(&self.fd, nr::IOMMU_IOAS_IOVA_RANGES(), &mut arg) };
            let got = arg.num_iovas;
            if let Err(e) = check(r) {
                if e.raw_os_error() == Some(libc::EMSGSIZE) && got > n {
                    n = got;
                    continue;
                }
                return Err(e);
            }
            let out = ranges
                .iter()
                .take(got.min(n) as usize)
                .map(|r| IovaRange {
                    start: r.start,
                    last: r.last,
                })
                .collect();
            return Ok((arg.out_iova_alignment, out));
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "IOVA range count kept growing between calls",
        ))
    }
}

#[cfg(test)]
#[path = "ioctl_tests.rs"]
mod tests;
