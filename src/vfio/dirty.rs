//! DMA dirty logging on a kernel device: `VFIO_DEVICE_FEATURE_DMA_LOGGING_START`, `_REPORT`
//! and `_STOP` (`include/uapi/linux/vfio.h`), the device-side tracking of the IOVA pages its
//! DMA writes that a VMM reads during live migration.
//!
//! [`DirtyLog::start`] starts a session over IOVA ranges with a page-size hint (the device
//! answers with the page size it chose), [`DirtyLog::report`] reads and clears the log for a
//! range into a [`DirtyBitmap`] (one bit per page of the report's own page size, which may
//! differ from the session's), [`DirtyLog::stop`] ends it (dropping the session stops it too,
//! best effort). The raw calls ([`start`], [`report`], [`stop`], [`supported`]) take any
//! VFIO device fd and return the kernel's errno as an [`io::Error`], so refusals can be
//! observed one by one.
//!
//! vfio-ioctls 0.10 has wrappers for these calls (`VfioDevice::start_dma_logging` ...) and
//! they keep the errno, but they gate every call on a flag of their own: a REPORT or STOP
//! without a START, or a second START, never reaches the kernel, so what the device does
//! with them cannot be seen; they also need the `VfioDevice` object, which devices opened
//! from a bare fd do not have. The ioctl is issued here instead, on the device fd.

use std::io;
use std::mem::size_of;
use std::os::fd::BorrowedFd;

use serde::Serialize;
use vfio_bindings::bindings::vfio::{
    vfio_device_feature_dma_logging_control, vfio_device_feature_dma_logging_range,
    vfio_device_feature_dma_logging_report, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
    VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
    VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
};
use vmm_sys_util::ioctl::ioctl_with_mut_ref;

use super::device::KernelDevice;
use crate::device::{errno_hint, Device};

use super::ioctl::nr;

/// Largest bitmap [`report`] allocates (64 Mi pages, 8 MiB), so a mistyped length does not
/// exhaust memory.
pub const MAX_REPORT_WORDS: u64 = 1 << 20;

/// One IOVA range to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LogRange {
    /// First IOVA.
    pub iova: u64,
    /// Bytes.
    pub length: u64,
}

/// Which DMA logging call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogOp {
    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START`.
    Start,
    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`.
    Report,
    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`.
    Stop,
}

impl std::fmt::Display for LogOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogOp::Start => "START",
            LogOp::Report => "REPORT",
            LogOp::Stop => "STOP",
        })
    }
}

/// A DMA logging call that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirtyLogError {
    /// The kernel refused the call (its errno in `source`). `ENOTTY` on START: the device
    /// has no DMA logging.
    #[error("{device}: DMA logging {op} refused: {source}{}", hint_suffix(.hint))]
    Kernel {
        /// Device name.
        device: String,
        /// The call.
        op: LogOp,
        /// The kernel's errno.
        #[source]
        source: io::Error,
        /// The common cause, or empty.
        hint: String,
    },
    /// The request cannot be sent as asked (a zero page size or length, a bitmap larger than
    /// [`MAX_REPORT_WORDS`]); nothing reached the kernel.
    #[error("{device}: DMA logging {op}: {reason}")]
    InvalidArgument {
        /// Device name.
        device: String,
        /// The call.
        op: LogOp,
        /// What is wrong.
        reason: String,
    },
}

impl DirtyLogError {
    /// The kernel's errno, when the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DirtyLogError::Kernel { source, .. } => source.raw_os_error(),
            DirtyLogError::InvalidArgument { .. } => None,
        }
    }

    fn kernel(device: &str, op: LogOp, source: io::Error) -> DirtyLogError {
        let hint = match (op, source.raw_os_error()) {
            (_, Some(libc::ENOTTY)) => "the device has no DMA logging (no vfio_log_ops)",
            (LogOp::Start, Some(libc::EBUSY)) => "a session is running: STOP it first",
            (LogOp::Start, Some(libc::EINVAL)) => {
                "ranges must be page-size aligned, non-empty and must not overlap"
            }
            (LogOp::Report, Some(libc::EINVAL)) => {
                "no session, or the range is not inside the logged ranges"
            }
            (_, n) => errno_hint(n),
        };
        DirtyLogError::Kernel {
            device: device.to_string(),
            op,
            source,
            hint: hint.to_string(),
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

/// `struct vfio_device_feature` followed by its payload.
#[repr(C)]
struct Feature<T> {
    argsz: u32,
    flags: u32,
    data: T,
}

impl<T> Feature<T> {
    fn new(flags: u32, data: T) -> Feature<T> {
        Feature {
            argsz: size_of::<Feature<T>>() as u32,
            flags,
            data,
        }
    }
}

fn feature<T>(fd: BorrowedFd<'_>, f: &mut Feature<T>) -> io::Result<()> {
    // SAFETY: `fd` is open for the borrow. The kernel reads the 8-byte header, then at most
    // `argsz - 8` bytes of payload, which is exactly `f.data` (`argsz` is the size of the
    // whole repr(C) struct); it writes back only into the payload (START's page size).
    // Pointers inside the payload (ranges, bitmap) are the callers' and stay valid for the
    // call (see `start` and `report`).
    let r = unsafe { ioctl_with_mut_ref(&fd, nr::VFIO_DEVICE_FEATURE(), f) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `VFIO_DEVICE_FEATURE_PROBE` of DMA_LOGGING_START: whether the device offers DMA logging
/// (`Ok(false)` on `ENOTTY`).
pub fn supported(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut f = Feature::new(
        VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
        (),
    );
    match feature(fd, &mut f) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START` over `ranges` with page-size hint `page_size`:
/// the page size the device chose. Everything is passed to the kernel as given (no range at
/// all, misaligned or overlapping ranges too), so its refusals can be observed.
pub fn start(fd: BorrowedFd<'_>, page_size: u64, ranges: &[LogRange]) -> io::Result<u64> {
    let list: Vec<vfio_device_feature_dma_logging_range> = ranges
        .iter()
        .map(|r| vfio_device_feature_dma_logging_range {
            iova: r.iova,
            length: r.length,
        })
        .collect();
    let num_ranges = u32::try_from(list.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} ranges", list.len()),
        )
    })?;
    let mut f = Feature::new(
        VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
        vfio_device_feature_dma_logging_control {
            page_size,
            num_ranges,
            __reserved: 0,
            // `list` outlives the call; the kernel reads `num_ranges` entries from it.
            ranges: list.as_ptr() as u64,
        },
    );
    feature(fd, &mut f)?;
    Ok(f.data.page_size)
}

/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT` of `length` bytes at `iova` in pages of
/// `page_size`, into `bitmap` (bit `i` = the page at `iova + i * page_size`). The kernel only
/// sets bits, so `bitmap` should start zeroed; it must hold `ceil(length / page_size / 64)`
/// words (checked). A range of 0 bytes, or one past the end of the address space, is refused
/// before the call: the kernel sizes its bitmap from `length - 1`.
pub fn report(
    fd: BorrowedFd<'_>,
    iova: u64,
    length: u64,
    page_size: u64,
    bitmap: &mut [u64],
) -> io::Result<()> {
    if length == 0 || iova.checked_add(length - 1).is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no report of {length:#x} bytes at {iova:#x}: an empty or wrapping range"),
        ));
    }
    let need = bitmap_words(length, page_size)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "page size 0"))?;
    if (bitmap.len() as u64) < need {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "bitmap of {} word(s), the report needs {need}",
                bitmap.len()
            ),
        ));
    }
    let mut f = Feature::new(
        VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
        vfio_device_feature_dma_logging_report {
            iova,
            length,
            page_size,
            // The kernel writes at most `need` words here; `bitmap` holds at least that many
            // and is borrowed exclusively for the call.
            bitmap: bitmap.as_mut_ptr() as u64,
        },
    );
    feature(fd, &mut f)
}

/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`.
pub fn stop(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut f = Feature::new(
        VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
        (),
    );
    feature(fd, &mut f)
}

/// Words of a report bitmap: `ceil(ceil(length / page_size) / 64)`; `None` for page size 0.
pub fn bitmap_words(length: u64, page_size: u64) -> Option<u64> {
    (page_size != 0).then(|| length.div_ceil(page_size).div_ceil(64))
}

/// A REPORT's answer: one bit per page of `page_size` from `iova`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtyBitmap {
    iova: u64,
    length: u64,
    page_size: u64,
    words: Vec<u64>,
}

/// The headline numbers of a [`DirtyBitmap`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirtySummary {
    /// Pages the bitmap covers.
    pub pages: u64,
    /// Pages reported dirty.
    pub pages_dirty: u64,
    /// IOVA of the first dirty page.
    pub first_dirty_iova: Option<u64>,
    /// IOVA of the last dirty page.
    pub last_dirty_iova: Option<u64>,
}

impl DirtyBitmap {
    /// Wraps a bitmap as the kernel filled it.
    pub fn new(iova: u64, length: u64, page_size: u64, words: Vec<u64>) -> DirtyBitmap {
        DirtyBitmap {
            iova,
            length,
            page_size,
            words,
        }
    }

    /// First IOVA covered.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Bytes covered.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Bytes per bit.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The bitmap words as the kernel wrote them.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Pages covered.
    pub fn pages(&self) -> u64 {
        if self.page_size == 0 {
            0
        } else {
            self.length.div_ceil(self.page_size)
        }
    }

    /// Whether page `i` (from the start) is dirty.
    pub fn page_dirty(&self, i: u64) -> bool {
        i < self.pages()
            && self
                .words
                .get((i / 64) as usize)
                .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// Whether the page holding `iova` is dirty.
    pub fn is_dirty(&self, iova: u64) -> bool {
        iova >= self.iova
            && self.page_size != 0
            && self.page_dirty((iova - self.iova) / self.page_size)
    }

    /// IOVAs of the dirty pages, in order.
    pub fn dirty_iovas(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.pages())
            .filter(|&i| self.page_dirty(i))
            .map(|i| self.iova + i * self.page_size)
    }

    /// Counts and first/last dirty page.
    pub fn summary(&self) -> DirtySummary {
        let mut n = 0;
        let (mut first, mut last) = (None, None);
        for a in self.dirty_iovas() {
            n += 1;
            first.get_or_insert(a);
            last = Some(a);
        }
        DirtySummary {
            pages: self.pages(),
            pages_dirty: n,
            first_dirty_iova: first,
            last_dirty_iova: last,
        }
    }
}

/// A DMA logging session on a kernel device, stopped when dropped (best effort; call
/// [`DirtyLog::stop`] to see the kernel's answer).
pub struct DirtyLog<'a> {
    dev: &'a KernelDevice,
    page_size: u64,
    ranges: Vec<LogRange>,
    running: bool,
}

impl<'a> DirtyLog<'a> {
    /// Starts logging `ranges` with page-size hint `page_size`.
    pub fn start(
        dev: &'a KernelDevice,
        page_size: u64,
        ranges: &[LogRange],
    ) -> Result<DirtyLog<'a>, DirtyLogError> {
        let chosen = start(dev.device_fd(), page_size, ranges)
            .map_err(|e| DirtyLogError::kernel(dev.name(), LogOp::Start, e))?;
        Ok(DirtyLog {
            dev,
            page_size: chosen,
            ranges: ranges.to_vec(),
            running: true,
        })
    }

    /// The page size the device chose at START.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The ranges logged.
    pub fn ranges(&self) -> &[LogRange] {
        &self.ranges
    }

    /// Reads and clears the log of `length` bytes at `iova` in pages of `page_size` (any
    /// power of two; the device replicates or merges its own pages).
    pub fn report(
        &self,
        iova: u64,
        length: u64,
        page_size: u64,
    ) -> Result<DirtyBitmap, DirtyLogError> {
        let invalid = |reason: String| DirtyLogError::InvalidArgument {
            device: self.dev.name().to_string(),
            op: LogOp::Report,
            reason,
        };
        let words = match bitmap_words(length, page_size) {
            None => return Err(invalid("page size 0".into())),
            Some(0) => return Err(invalid("length 0".into())),
            Some(w) if w > MAX_REPORT_WORDS => {
                return Err(invalid(format!(
                    "{length} bytes in pages of {page_size} need a bitmap of {w} words (at most {MAX_REPORT_WORDS})"
                )))
            }
            Some(w) => w as usize,
        };
        let mut bits = vec![0u64; words];
        report(self.dev.device_fd(), iova, length, page_size, &mut bits)
            .map_err(|e| DirtyLogError::kernel(self.dev.name(), LogOp::Report, e))?;
        Ok(DirtyBitmap::new(iova, length, page_size, bits))
    }

    /// Stops the session.
    pub fn stop(mut self) -> Result<(), DirtyLogError> {
        self.running = false;
        stop(self.dev.device_fd())
            .map_err(|e| DirtyLogError::kernel(self.dev.name(), LogOp::Stop, e))
    }
}

impl Drop for DirtyLog<'_> {
    fn drop(&mut self) {
        if self.running {
            // Best effort on an error path: the caller's error is the one to report.
            let _ = stop(self.dev.device_fd());
        }
    }
}

#[cfg(test)]
#[path = "dirty_tests.rs"]
mod tests;

impl std::fmt::Debug for DirtyLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirtyLog")
            .field("device", &crate::device::Device::name(self.dev))
            .field("page_size", &self.page_size)
            .field("ranges", &self.ranges)
            .field("running", &self.running)
            .finish()
    }
}
