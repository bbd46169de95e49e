//! The device interface: one trait that every back end implements.
//!
//! Everything above this layer (migration, bench, the CLI) talks to a [`Device`] and never
//! knows whether it is a kernel VFIO device (the `vfio` back end) or the in-process simulator
//! (`sim`). The trait mirrors the VFIO device-fd contract: regions with positioned
//! I/O and mmap, interrupts with eventfds, reset, and the migration v2 feature calls.
//! The v1 migration protocol needs nothing extra: it runs over region access.
//!
//! This is the bottom floor: it imports no back end. The migration v2 state model ([`fsm`])
//! lives here too, so the back ends and the migration drivers walk the same states and arcs.
//! Turning a [`DeviceSpec`] into an open device is the composition root's job
//! (`open`, above the back ends).

mod error;
pub mod fsm;
mod info;
mod mig;
mod spec;
pub mod uapi;

pub use error::{errno_hint, DeviceError, Result};
pub use info::{
    find_region, DeviceIdentity, DeviceInfo, IrqInfo, RegionCap, RegionInfo, SparseArea,
};
pub use mig::{MigFlags, MigState, PrecopyInfo};
pub use spec::{DeviceSpec, IommuBackend, OpenOptions};
pub use uapi::{
    IRQ_FLAG_AUTOMASKED, IRQ_FLAG_EVENTFD, IRQ_FLAG_MASKABLE, IRQ_FLAG_NORESIZE, REGION_FLAG_CAPS,
    REGION_FLAG_MMAP, REGION_FLAG_READ, REGION_FLAG_WRITE,
};

use std::any::Any;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::Arc;

/// A device driven through the VFIO device contract.
///
/// Implementations must be usable from several threads (migration overlaps reader and writer,
/// benchmarks drive devices in parallel). Every method reports failures; nothing is logged and
/// dropped.
pub trait Device: Send + Sync {
    /// Describes the device: flags, regions, interrupts and identity, read once at open.
    fn info(&self) -> &DeviceInfo;

    /// The name used in messages (mdev UUID, PCI address, `sim`...).
    fn name(&self) -> &str {
        &self.info().name
    }

    /// Reads `buf.len()` bytes at `offset` inside region `index` (a positioned read on the
    /// device fd for kernel devices). A short read is an error.
    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Writes `buf` at `offset` inside region `index`. A short write is an error.
    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<()>;

    /// Maps `len` bytes at `offset` of region `index` into this process. The range must lie
    /// inside an mmap-able area (the whole region, or one sparse-mmap area).
    fn map_region(&self, index: u32, offset: u64, len: u64) -> Result<RegionMap>;

    /// Resets the device (`VFIO_DEVICE_RESET`). For migration this also returns the device
    /// to RUNNING.
    fn reset(&self) -> Result<()>;

    /// Connects eventfds to vectors `start..start+fds.len()` of IRQ `index`
    /// (`VFIO_IRQ_SET_DATA_EVENTFD | ACTION_TRIGGER`). An empty `fds` disables the index.
    fn set_irq_eventfds(&self, index: u32, start: u32, fds: &[RawFd]) -> Result<()>;

    /// Asks the kernel to signal vector `vector` of IRQ `index` (loopback test of the path).
    fn trigger_irq(&self, index: u32, vector: u32) -> Result<()>;

    /// Masks (`true`) or unmasks (`false`) vector `vector` of IRQ `index`.
    fn mask_irq(&self, index: u32, vector: u32, masked: bool) -> Result<()>;

    /// The migration v2 capability flags, or `None` when the device has no v2 migration.
    fn migration_flags(&self) -> Result<Option<MigFlags>>;

    /// Requests a migration state (`VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` SET). Entering a
    /// streaming state opens a data stream that [`Device::mig_read`] / [`Device::mig_write`]
    /// use; leaving streaming states closes it. On failure the device may be anywhere on the
    /// path the kernel walked, or in ERROR.
    fn set_mig_state(&self, state: MigState) -> Result<()>;

    /// Reads the current migration state.
    fn mig_state(&self) -> Result<MigState>;

    /// Reads from the migration data stream; `Ok(0)` is end of stream.
    fn mig_read(&self, buf: &mut [u8]) -> Result<usize>;

    /// Writes to the migration data stream (RESUMING); returns how much was accepted.
    fn mig_write(&self, buf: &[u8]) -> Result<usize>;

    /// `VFIO_MIG_GET_PRECOPY_INFO` on the data stream (PRE_COPY states only).
    fn precopy_info(&self) -> Result<PrecopyInfo>;

    /// `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`: the estimated STOP_COPY size.
    fn stop_copy_size(&self) -> Result<u64>;

    /// Downcasting hook for back-end specific features (DMA mapping on kernel devices,
    /// fault injection on the simulator).
    fn as_any(&self) -> &dyn Any;
}

/// A shared handle to an open device.
pub type DeviceHandle = Arc<dyn Device>;

/// A mapping of (part of) a region into this process. Unmapped when dropped.
///
/// The memory belongs to the device and may change under us (DMA, the device itself), so it is
/// only ever accessed through raw pointers and volatile or `copy_nonoverlapping` operations,
/// never through Rust references.
pub struct RegionMap {
    ptr: NonNull<u8>,
    len: usize,
    /// False for a mapping of a region without `VFIO_REGION_INFO_FLAG_WRITE` (mapped
    /// `PROT_READ`): a store there would fault, so every write method refuses.
    writable: bool,
    _owner: Box<dyn Any + Send + Sync>,
}

// SAFETY: the mapping is plain memory owned by `_owner` (itself Send + Sync); all access goes
// through raw pointers with explicit bounds checks, so sharing the handle across threads is as
// safe as sharing the device.
unsafe impl Send for RegionMap {}
// SAFETY: see the Send impl above.
unsafe impl Sync for RegionMap {}

impl RegionMap {
    /// Wraps a mapping. `owner` keeps the memory alive (and unmaps it on drop).
    ///
    /// # Safety
    /// `ptr..ptr+len` must stay valid for reads and writes for as long as `owner` lives.
    pub unsafe fn new(ptr: NonNull<u8>, len: usize, owner: Box<dyn Any + Send + Sync>) -> Self {
        RegionMap {
            ptr,
            len,
            writable: true,
            _owner: owner,
        }
    }

    /// Wraps a mapping that may only be read (`PROT_READ`): [`RegionMap::write`],
    /// [`RegionMap::write_u32`] and the register writes on it refuse.
    ///
    /// # Safety
    /// `ptr..ptr+len` must stay valid for reads for as long as `owner` lives.
    pub unsafe fn read_only(
        ptr: NonNull<u8>,
        len: usize,
        owner: Box<dyn Any + Send + Sync>,
    ) -> Self {
        RegionMap {
            ptr,
            len,
            writable: false,
            _owner: owner,
        }
    }

    /// Whether the mapping may be written (false for a region without
    /// `VFIO_REGION_INFO_FLAG_WRITE`).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Fails unless the mapping may be written.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(DeviceError::InvalidArgument(
                "the mapping is read-only: its region has no VFIO_REGION_INFO_FLAG_WRITE".into(),
            ))
        }
    }

    /// Fails unless `offset` of the mapping is aligned to `width` bytes (the address itself:
    /// a mapping may start anywhere inside a page).
    pub(crate) fn check_aligned(&self, offset: usize, width: usize) -> Result<()> {
        if (self.ptr.as_ptr() as usize).wrapping_add(offset) % width != 0 {
            return Err(DeviceError::Misaligned {
                offset: offset as u64,
                width,
            });
        }
        Ok(())
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start of the mapping, for zero-copy I/O (`write(2)` straight from device memory).
    /// Stores through it are only allowed when [`RegionMap::is_writable`].
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(DeviceError::OutOfBounds {
                what: "mapping".into(),
                offset: offset as u64,
                len: len as u64,
                size: self.len as u64,
            }),
        }
    }

    /// Copies `buf.len()` bytes at `offset` out of the mapping.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        // SAFETY: bounds checked above; the source is device memory we only touch through raw
        // pointers, the destination is an exclusive Rust slice that cannot overlap it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    /// Copies `buf` into the mapping at `offset`.
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        self.check_writable()?;
        // SAFETY: bounds checked above, and the mapping is writable; see `read`.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.ptr.as_ptr().add(offset), buf.len())
        };
        Ok(())
    }

    /// Volatile 32-bit read (register access through an mmap'd BAR). `offset` must be aligned.
    pub fn read_u32(&self, offset: usize) -> Result<u32> {
        self.check(offset, 4)?;
        self.check_aligned(offset, 4)?;
        // SAFETY: in bounds, and the address is 4-byte aligned (checked above).
        Ok(unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(offset) as *const u32) })
    }

    /// Volatile 32-bit write. `offset` must be aligned.
    pub fn write_u32(&self, offset: usize, v: u32) -> Result<()> {
        self.check(offset, 4)?;
        self.check_aligned(offset, 4)?;
        self.check_writable()?;
        // SAFETY: in bounds, 4-byte aligned and writable (checked above).
        unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(offset) as *mut u32, v) };
        Ok(())
    }
}

impl std::fmt::Debug for RegionMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionMap")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("writable", &self.writable)
            .finish()
    }
}

/// Width-correct register access on top of [`Device::read_region`] / [`Device::write_region`].
///
/// VFIO regions must be accessed with the width the device expects (a 4-byte register read
/// as four 1-byte reads may have side effects four times), so these helpers issue exactly
/// one access of the requested width.
pub trait RegionAccess {
    /// Reads an access of `width` bytes (1, 2, 4 or 8), little-endian.
    fn read_width(&self, index: u32, offset: u64, width: usize) -> Result<u64>;
    /// Writes an access of `width` bytes (1, 2, 4 or 8), little-endian.
    fn write_width(&self, index: u32, offset: u64, width: usize, value: u64) -> Result<()>;
}

impl<D: Device + ?Sized> RegionAccess for D {
    fn read_width(&self, index: u32, offset: u64, width: usize) -> Result<u64> {
        check_width(width)?;
        let mut b = [0u8; 8];
        self.read_region(index, offset, &mut b[..width])?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_width(&self, index: u32, offset: u64, width: usize, value: u64) -> Result<()> {
        check_width(width)?;
        if width < 8 && value >> (width * 8) != 0 {
            return Err(DeviceError::InvalidArgument(format!(
                "value {value:#x} does not fit in {width} byte(s)"
            )));
        }
        let b = value.to_le_bytes();
        self.write_region(index, offset, &b[..width])
    }
}

fn check_width(width: usize) -> Result<()> {
    match width {
        1 | 2 | 4 | 8 => Ok(()),
        _ => Err(DeviceError::InvalidArgument(format!(
            "access width must be 1, 2, 4 or 8 bytes, not {width}"
        ))),
    }
}
