//! `dma-logging`: `VFIO_DEVICE_FEATURE_DMA_LOGGING_START/REPORT/STOP` against the pages the
//! device really wrote by DMA.
//!
//! On a kernel device that offers DMA logging (PROBE) and has a DMA driver here
//! ([`crate::drivers`]: vhgpu), the suite runs the dirty-logging exercise
//! ([`crate::drivers::dirty_log`]): a 1 MiB buffer mapped at an IOVA the IOMMU allows,
//! logging STARTed over it, the device's DMA engine writes two pieces and reads a third,
//! REPORT must include every page written (more is allowed), a second REPORT must be empty
//! (REPORT clears), STOP, and bad requests (misaligned, empty, overlapping ranges; a
//! second START) must be refused. Devices without logging, or without a DMA driver to make
//! them write, SKIP with that reason.

use super::ctx::Suite;
use super::report::CheckVerdict::{Fail, Pass, Skip};
use crate::drivers::dirty_log::{dirty_log, DirtyLogJob};
use crate::drivers::space::kernel_context;
use crate::drivers::DriverError;
use crate::vfio::{dirty, KernelDevice};

/// The check.
pub(super) fn dma_logging(s: &mut Suite<'_>) {
    s.check("dma-logging", |s| {
        let dev = s.dev.clone();
        let Some(k) = dev.as_any().downcast_ref::<KernelDevice>() else {
            return Ok((Skip, "not a kernel device (DMA logging is a VFIO_DEVICE_FEATURE)".into()));
        };
        let fd = k.device_fd();
        match dirty::supported(fd) {
            Ok(true) => {}
            Ok(false) => return Ok((Skip, "the device does not offer DMA logging (PROBE: ENOTTY)".into())),
            Err(e) => return Ok((Fail, format!("PROBE of DMA_LOGGING_START failed: {e}"))),
        }
        let Some(ctx) = kernel_context(dev.as_ref()) else {
            return Ok((Skip, "no IOMMU context to map the logged buffer".into()));
        };
        let job = DirtyLogJob {
            iova: None,
            len: 1 << 20,
            page_size: 4096,
            report_page_size: None,
            writes: vec![(0, 4096), (0x10000, 0x2100)],
            reads: vec![(0x40000, 4096)],
            dev_offset: 0,
            refusals: true,
        };
        let r = match dirty_log(dev.as_ref(), ctx, &job) {
            Ok(r) => r,
            Err(e @ DriverError::NoDriver { .. }) => {
                return Ok((Skip, format!("the device offers DMA logging, but nothing here makes it write by DMA ({e})")))
            }
            // The VFIO core answers REPORT with EOPNOTSUPP when the kernel was built without
            // CONFIG_IOMMUFD_DRIVER (its iova_bitmap is a stub, as in Debian's stock 6.12):
            // the kernel, not the device, cannot report.
            Err(DriverError::DirtyLog(e)) if e.errno() == Some(libc::EOPNOTSUPP) => {
                return Ok((
                    Skip,
                    format!(
                        "this kernel cannot report logged pages ({e}): its iova_bitmap is a stub \
                         (built without CONFIG_IOMMUFD_DRIVER)"
                    ),
                ))
            }
            Err(e) => return Ok((Fail, e.to_string())),
        };
        let refused = r.refusals.iter().filter(|x| x.refused).count();
        let accepted: Vec<&str> = r.refusals.iter().filter(|x| !x.refused).map(|x| x.what.as_str()).collect();
        let seen = format!(
            "page size {} (asked {}); the device wrote {} page(s), REPORT gave {} dirty, {} missing, {} extra; second REPORT {} page(s); {refused} of {} bad requests refused",
            r.page_size,
            r.page_size_requested,
            r.written_pages,
            r.reported.pages_dirty,
            r.missing.len(),
            r.extra.len(),
            r.second_report_pages,
            r.refusals.len()
        );
        Ok(if r.passed() {
            (Pass, seen)
        } else if !accepted.is_empty() {
            (Fail, format!("{seen}; accepted: {}", accepted.join(", ")))
        } else {
            (Fail, seen)
        })
    });
}
