//! `data-size`: `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE` against the bytes STOP_COPY delivered.

use super::ctx::Suite;
use super::report::CheckVerdict::{Fail, Pass, Skip, Warn};

/// The check (after the reference save, which measured the real size).
pub(super) fn data_size(s: &mut Suite<'_>) {
    s.check("data-size", |s| {
        let Some(est) = s.estimate else {
            return Ok((Skip, "the device offers no VFIO_DEVICE_FEATURE_MIG_DATA_SIZE".into()));
        };
        let Some(real) = s.reference.as_ref().map(|r| r.len) else {
            return Ok((Skip, "needs the reference stream, which failed".into()));
        };
        let seen = format!("estimate {est} bytes (queried in RUNNING), STOP_COPY delivered {real} bytes");
        Ok(if est == 0 && real > 0 {
            (Fail, format!("{seen}: an estimate of 0 for a non-empty state"))
        } else if (est as u128) * 10 < (real as u128) * 7 {
            (Warn, format!("{seen}: under-estimated by more than 30 % (QEMU sizes its buffers and downtime from it)"))
        } else if (est as u128) > (real as u128) * 4 + (1 << 20) {
            (Warn, format!("{seen}: over-estimated more than 4 times"))
        } else {
            (Pass, seen)
        })
    });
}
