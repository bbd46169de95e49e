//! `dma-logging`: `VFIO_DEVICE_FEATURE_DMA_LOGGING_START/REPORT/STOP`.
//!
//! Not driven yet: the check needs the device to perform DMA into pages the suite mapped
//! (a per-device DMA driver, see [`crate::drivers`]) and the logging ioctls on the kernel
//! back end, which land separately. Until then it reports SKIP with that reason, so an
//! unchecked clause shows in every report.

use super::ctx::Suite;
use super::report::CheckVerdict::Skip;

/// The check.
pub(super) fn dma_logging(s: &mut Suite<'_>) {
    s.check("dma-logging", |_| {
        Ok((
            Skip,
            "not checked yet: needs device-initiated DMA and the DMA_LOGGING ioctls on the kernel back end".into(),
        ))
    });
}
