//! The DMA dirty-logging exercise: start DMA logging over an IOVA range, make the device's
//! DMA engine write known pieces of it (and read others, which must not count), read the log
//! back and compare it with the pages the device was told to write; optionally check that
//! bad requests are refused.
//!
//! The uAPI requires the reported pages to include every page the device wrote; a device may
//! report more (the comparison lists those as `extra`). A REPORT clears what it read, so a
//! second REPORT with no DMA in between must be empty.

use serde::Serialize;

use super::dma_check::IOVA_FLOOR;
use super::engine::DmaEngine;
use super::error::{DriverError, Result};
use super::space::DmaSpace;
use crate::device::Device;
use crate::vfio::dirty::{self, DirtyBitmap, DirtyLog, DirtySummary, LogRange};
use crate::vfio::dma::pick_iova;
use crate::vfio::{IovaRange, KernelDevice};

/// What [`dirty_log`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtyLogJob {
    /// IOVA of the logged range (page-size aligned); `None` picks one the IOMMU allows.
    pub iova: Option<u64>,
    /// Bytes logged (a buffer this large is mapped there).
    pub len: u64,
    /// Page-size hint for START.
    pub page_size: u64,
    /// Page size of the REPORT; `None` uses the one the device chose at START.
    pub report_page_size: Option<u64>,
    /// Pieces the device writes, as `(offset into the range, bytes)`, by DMA from device
    /// memory at `dev_offset`.
    pub writes: Vec<(u64, u64)>,
    /// Pieces the device only reads (DMA into device memory at `dev_offset`): not writes, so
    /// never to be reported dirty unless also written.
    pub reads: Vec<(u64, u64)>,
    /// Device-memory offset the writes are copied from.
    pub dev_offset: u64,
    /// Also check that bad requests are refused (see [`Refusal`]).
    pub refusals: bool,
}

/// One piece the device wrote (or read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceWrite {
    /// IOVA written (read).
    pub iova: u64,
    /// Bytes.
    pub len: u64,
    /// DMA transfers it took.
    pub transfers: u64,
}

/// A bad request and what the device answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The request (`START with a misaligned range`, ...).
    pub what: String,
    /// Whether it was refused (it must be).
    pub refused: bool,
    /// The kernel's errno when refused.
    pub errno: Option<i32>,
    /// The error, or `accepted`.
    pub detail: String,
}

/// What [`dirty_log`] saw (`dirty-log --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirtyLogReport {
    /// Device name.
    pub device: String,
    /// Driver whose DMA engine wrote.
    pub driver: &'static str,
    /// First IOVA logged.
    pub iova: u64,
    /// Bytes logged.
    pub len: u64,
    /// Page size asked for at START.
    pub page_size_requested: u64,
    /// Page size the device chose.
    pub page_size: u64,
    /// Page size of the REPORT.
    pub report_page_size: u64,
    /// What the device wrote.
    pub writes: Vec<DeviceWrite>,
    /// What the device only read.
    pub reads: Vec<DeviceWrite>,
    /// Pages (of the report page size) the writes touched.
    pub written_pages: u64,
    /// Those pages, as ranges.
    pub written: Vec<IovaRange>,
    /// The REPORT's counts and first/last dirty page.
    pub reported: DirtySummary,
    /// The dirty pages, as ranges.
    pub dirty: Vec<IovaRange>,
    /// The REPORT's bitmap words, hex.
    pub bitmap: Vec<String>,
    /// Written but not reported (must be empty).
    pub missing: Vec<IovaRange>,
    /// Reported but not written (allowed by the uAPI; a device that tracks exactly has none).
    pub extra: Vec<IovaRange>,
    /// Dirty pages in a second REPORT right after the first (must be 0: REPORT clears).
    pub second_report_pages: u64,
    /// The refusal checks, when asked for.
    pub refusals: Vec<Refusal>,
}

impl DirtyLogReport {
    /// Every written page reported, the log cleared by REPORT, every bad request refused.
    pub fn passed(&self) -> bool {
        self.missing.is_empty()
            && self.second_report_pages == 0
            && self.refusals.iter().all(|r| r.refused)
    }
}

/// The pages of `page_size` (as IOVAs, sorted, distinct) that `writes` (offsets from `iova`)
/// touch.
pub fn pages_written(iova: u64, writes: &[(u64, u64)], page_size: u64) -> Vec<u64> {
    let mut pages: Vec<u64> = Vec::new();
    if page_size == 0 {
        return pages;
    }
    for &(off, len) in writes.iter().filter(|w| w.1 > 0) {
        let first = (iova + off) / page_size;
        let last = (iova + off + len - 1) / page_size;
        pages.extend((first..=last).map(|p| p * page_size));
    }
    pages.sort_unstable();
    pages.dedup();
    pages
}

/// Sorted page IOVAs as inclusive ranges.
pub fn page_ranges(pages: &[u64], page_size: u64) -> Vec<IovaRange> {
    let mut out: Vec<IovaRange> = Vec::new();
    for &p in pages {
        let last = p + (page_size - 1);
        match out.last_mut() {
            Some(r) if r.last.checked_add(1) == Some(p) => r.last = last,
            _ => out.push(IovaRange { start: p, last }),
        }
    }
    out
}

/// `(missing, extra)`: written pages not in `dirty`, dirty pages not written.
pub fn compare(written: &[u64], dirty: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let missing = written
        .iter()
        .filter(|p| dirty.binary_search(p).is_err())
        .copied()
        .collect();
    let extra = dirty
        .iter()
        .filter(|p| written.binary_search(p).is_err())
        .copied()
        .collect();
    (missing, extra)
}

/// Runs the exercise on a kernel device whose DMA driver is registered, with the buffer
/// mapped in `space`. Logging is stopped, the device restored and the buffer unmapped before
/// returning, also on errors.
pub fn dirty_log(
    dev: &dyn Device,
    space: &dyn DmaSpace,
    job: &DirtyLogJob,
) -> Result<DirtyLogReport> {
    let invalid = |reason: String| DriverError::InvalidArgument {
        device: dev.name().to_string(),
        reason,
    };
    let kdev = dev
        .as_any()
        .downcast_ref::<KernelDevice>()
        .ok_or_else(|| invalid("DMA dirty logging needs a kernel device".into()))?;
    if job.len == 0 || job.page_size == 0 {
        return Err(invalid(
            "the logged range and the page size must not be 0".into(),
        ));
    }
    for &(off, len) in job.writes.iter().chain(&job.reads) {
        if len == 0 || off.checked_add(len).is_none_or(|e| e > job.len) {
            return Err(invalid(format!(
                "DMA of {len} byte(s) at offset {off:#x} is not inside the {} logged byte(s)",
                job.len
            )));
        }
    }
    let mut eng = DmaEngine::probe(dev)?;
    let lim = eng.limits();
    let (granule, mut ranges) = space.iova_ranges()?;
    if ranges.is_empty() {
        // A type1 container holding only mdevs reports no IOVA range capability: its IOVA
        // list is empty, which type1 treats as no restriction.
        ranges.push(IovaRange {
            start: 0,
            last: u64::MAX,
        });
    }
    let align = granule.max(job.page_size);
    let iova = match job.iova {
        Some(a) => a,
        None => pick_iova(&ranges, job.len, align, IOVA_FLOOR, Some(lim.dma_limit)).ok_or_else(
            || DriverError::NoIova {
                device: dev.name().to_string(),
                what: "logged buffer",
            },
        )?,
    };
    let chunk = (lim.max_transfer as u64)
        .min(lim.device_memory.saturating_sub(job.dev_offset))
        .max(1);
    if !lim.fits_device(job.dev_offset, 1) {
        return Err(invalid(format!(
            "device offset {:#x} is outside its {} byte(s) of device memory",
            job.dev_offset, lim.device_memory
        )));
    }
    let buf = space.map_buffer(iova, job.len, 0)?;
    eng.init()?;
    let log = DirtyLog::start(
        kdev,
        job.page_size,
        &[LogRange {
            iova,
            length: job.len,
        }],
    )?;
    let mut writes = Vec::new();
    for &(off, len) in &job.writes {
        writes.push(device_dma(
            &mut eng,
            iova + off,
            len,
            job.dev_offset,
            chunk,
            true,
        )?);
    }
    let mut reads = Vec::new();
    for &(off, len) in &job.reads {
        reads.push(device_dma(
            &mut eng,
            iova + off,
            len,
            job.dev_offset,
            chunk,
            false,
        )?);
    }
    let log_page_size = log.page_size();
    let rps = job.report_page_size.unwrap_or(log_page_size);
    let bitmap = log.report(iova, job.len, rps)?;
    let second = log.report(iova, job.len, rps)?;
    let mut refusals = Vec::new();
    if job.refusals {
        refusals.extend(refusals_in_session(kdev, &log, iova, job.len, rps));
    }
    let stopped = log.stop();
    if job.refusals && stopped.is_ok() {
        refusals.extend(refusals_without_session(
            kdev,
            iova,
            job.len,
            log_page(job.page_size),
        ));
    }
    let removed = eng.remove();
    let unmapped = buf.unmap();
    stopped?;
    removed?;
    unmapped?;
    let sizes = (log_page_size, rps);
    let dma = (writes, reads);
    Ok(report_from(
        dev,
        eng.name(),
        iova,
        job,
        sizes,
        &bitmap,
        &second,
        dma,
        refusals,
    ))
}

/// `len` bytes at `iova` written by the device (from device memory at `dev_offset`), or read
/// by it (into device memory), in transfers of at most `chunk`.
fn device_dma(
    eng: &mut DmaEngine<'_>,
    iova: u64,
    len: u64,
    dev_offset: u64,
    chunk: u64,
    write: bool,
) -> Result<DeviceWrite> {
    let mut done = 0;
    let mut transfers = 0;
    while done < len {
        let n = (len - done).min(chunk);
        if write {
            eng.from_device(iova + done, dev_offset, n as usize)?;
        } else {
            eng.to_device(iova + done, dev_offset, n as usize)?;
        }
        done += n;
        transfers += 1;
    }
    Ok(DeviceWrite {
        iova,
        len,
        transfers,
    })
}

fn log_page(hint: u64) -> u64 {
    hint.max(4096).next_power_of_two()
}

#[allow(clippy::too_many_arguments)]
fn report_from(
    dev: &dyn Device,
    driver: &'static str,
    iova: u64,
    job: &DirtyLogJob,
    (page_size, rps): (u64, u64),
    bitmap: &DirtyBitmap,
    second: &DirtyBitmap,
    (writes, reads): (Vec<DeviceWrite>, Vec<DeviceWrite>),
    refusals: Vec<Refusal>,
) -> DirtyLogReport {
    let written = pages_written(iova, &job.writes, rps);
    let dirty: Vec<u64> = bitmap.dirty_iovas().collect();
    let (missing, extra) = compare(&written, &dirty);
    DirtyLogReport {
        device: dev.name().to_string(),
        driver,
        iova,
        len: job.len,
        page_size_requested: job.page_size,
        page_size,
        report_page_size: rps,
        writes,
        reads,
        written_pages: written.len() as u64,
        written: page_ranges(&written, rps),
        reported: bitmap.summary(),
        dirty: page_ranges(&dirty, rps),
        bitmap: bitmap.words().iter().map(|w| format!("{w:016x}")).collect(),
        missing: page_ranges(&missing, rps),
        extra: page_ranges(&extra, rps),
        second_report_pages: second.summary().pages_dirty,
        refusals,
    }
}

fn refusal(what: &str, r: std::io::Result<()>) -> Refusal {
    match r {
        Ok(()) => Refusal {
            what: what.to_string(),
            refused: false,
            errno: None,
            detail: "accepted".into(),
        },
        Err(e) => Refusal {
            what: what.to_string(),
            refused: true,
            errno: e.raw_os_error(),
            detail: e.to_string(),
        },
    }
}

/// A START that must fail; if the device accepts it, the session it started is stopped.
fn bad_start(dev: &KernelDevice, what: &str, page: u64, ranges: &[LogRange]) -> Refusal {
    let fd = dev.device_fd();
    let r = dirty::start(fd, page, ranges).map(|_| ());
    if r.is_ok() {
        // Accepted: end the session it opened (the refusal result says what went wrong).
        let _ = dirty::stop(fd);
    }
    refusal(what, r)
}

fn bad_report(dev: &KernelDevice, what: &str, iova: u64, len: u64, page: u64) -> Refusal {
    let words = dirty::bitmap_words(len, page).unwrap_or(1).max(1) as usize;
    let mut bits = vec![0u64; words];
    refusal(
        what,
        dirty::report(dev.device_fd(), iova, len, page, &mut bits),
    )
}

fn refusals_in_session(
    dev: &KernelDevice,
    log: &DirtyLog<'_>,
    iova: u64,
    len: u64,
    page: u64,
) -> Vec<Refusal> {
    let fd = dev.device_fd();
    let again = dirty::start(fd, log.page_size(), log.ranges()).map(|_| ());
    vec![
        bad_report(
            dev,
            "REPORT past the end of the logged range",
            iova + len,
            page,
            page,
        ),
        bad_report(
            dev,
            "REPORT straddling the end of the logged range",
            iova + len - page,
            2 * page,
            page,
        ),
        refusal("a second START while a session runs", again),
    ]
}

fn refusals_without_session(dev: &KernelDevice, iova: u64, len: u64, page: u64) -> Vec<Refusal> {
    let r = |iova, length| LogRange { iova, length };
    vec![
        bad_report(dev, "REPORT without a session", iova, len, page),
        bad_start(dev, "START with no range", page, &[]),
        bad_start(
            dev,
            "START with a range not aligned to the page size",
            page,
            &[r(iova + page / 2, page)],
        ),
        bad_start(
            dev,
            "START with overlapping ranges",
            page,
            &[r(iova, 2 * page), r(iova + page, 2 * page)],
        ),
        bad_start(dev, "START with an empty range", page, &[r(iova, 0)]),
    ]
}
