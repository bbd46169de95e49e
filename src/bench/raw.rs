//! The physical reference on a device: its migration data stream read and written in a tight
//! loop with one buffer, without framing, checksums or a second thread. This is what the
//! device and kernel can do; the harness rows are measured against it.

use crate::device::MigState;
use crate::migration::{MigrationDriver, MigrationError, Result};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// One raw transfer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RawRun {
    /// Device-state bytes moved.
    pub bytes: u64,
    /// From leaving RUNNING until RUNNING again, seconds.
    pub seconds: f64,
    /// Time the device was not running (STOP_COPY entry to end of stream for saving, the
    /// whole resume for restoring), seconds.
    pub downtime: f64,
}

/// Saves raw: RUNNING -> STOP_COPY, `read` with `buf` until end of stream (each piece handed
/// to `sink` when given), then RUNNING again. The device is recovered on error.
pub fn save(
    drv: &mut dyn MigrationDriver,
    buf: &mut [u8],
    mut sink: Option<&mut dyn Write>,
) -> Result<RawRun> {
    let r = (|| {
        let t0 = Instant::now();
        drv.set_state(MigState::StopCopy)?;
        let mut bytes = 0u64;
        loop {
            let n = drv.read(buf)?;
            if n == 0 {
                break;
            }
            if n > buf.len() {
                return Err(MigrationError::Protocol {
                    device: drv.device().name().to_string(),
                    what: format!("read returned {n} bytes for a {}-byte buffer", buf.len()),
                });
            }
            if let Some(s) = sink.as_mut() {
                s.write_all(&buf[..n]).map_err(|e| MigrationError::File {
                    path: "raw capture".into(),
                    source: e,
                })?;
            }
            bytes += n as u64;
        }
        let eof = t0.elapsed().as_secs_f64();
        drv.set_state(MigState::Running)?;
        Ok(RawRun {
            bytes,
            seconds: t0.elapsed().as_secs_f64(),
            downtime: eof,
        })
    })();
    r.map_err(|e| crate::migration::recovery::recover_after(drv, e))
}

/// Restores raw: RUNNING -> RESUMING, the first `len` bytes of `source` read into `buf` and
/// written to the device piece by piece, then RUNNING (the device validates and loads).
/// The device is recovered (reset out of RESUMING) on error.
pub fn restore(
    drv: &mut dyn MigrationDriver,
    source: &std::fs::File,
    len: u64,
    buf: &mut [u8],
) -> Result<RawRun> {
    let r = (|| {
        let t0 = Instant::now();
        drv.set_state(MigState::Resuming)?;
        let mut off = 0u64;
        while off < len {
            let n = buf.len().min((len - off) as usize);
            source
                .read_exact_at(&mut buf[..n], off)
                .map_err(|e| MigrationError::File {
                    path: "raw capture".into(),
                    source: e,
                })?;
            let mut piece = &buf[..n];
            while !piece.is_empty() {
                let w = drv.write(piece)?;
                if w == 0 || w > piece.len() {
                    return Err(MigrationError::Protocol {
                        device: drv.device().name().to_string(),
                        what: format!("write accepted {w} of {} bytes", piece.len()),
                    });
                }
                piece = &piece[w..];
            }
            off += n as u64;
        }
        drv.set_state(MigState::Running)?;
        let s = t0.elapsed().as_secs_f64();
        Ok(RawRun {
            bytes: len,
            seconds: s,
            downtime: s,
        })
    })();
    r.map_err(|e| crate::migration::recovery::recover_after(drv, e))
}
