//! The physical reference on a device: its migration data stream read and written in a tight
//! loop with one buffer, without framing, checksums or a second thread. This is what the
//! device and kernel can do; the harness rows are measured against it.

use crate::device::MigState;
use crate::migration::{MigrationDriver, MigrationError, Result};
use std::io::{Read, Write};
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
                s.write_all(&buf[..n])
                    .map_err(|e| file_err("raw sink", e))?;
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

/// Restores raw: RUNNING -> RESUMING, `source` read into `buf` until its end and written to
/// the device piece by piece, then RUNNING (the device validates and loads). The device is
/// recovered (reset out of RESUMING) on error.
pub fn restore(
    drv: &mut dyn MigrationDriver,
    source: &mut dyn Read,
    buf: &mut [u8],
) -> Result<RawRun> {
    let r = (|| {
        let t0 = Instant::now();
        drv.set_state(MigState::Resuming)?;
        let mut bytes = 0u64;
        loop {
            let n = match source.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(file_err("raw source", e)),
            };
            write_all(drv, &buf[..n])?;
            bytes += n as u64;
        }
        drv.set_state(MigState::Running)?;
        let s = t0.elapsed().as_secs_f64();
        Ok(RawRun {
            bytes,
            seconds: s,
            downtime: s,
        })
    })();
    r.map_err(|e| crate::migration::recovery::recover_after(drv, e))
}

/// Writes all of `data` to a device in RESUMING, piece by piece as it accepts them.
pub fn write_all(drv: &mut dyn MigrationDriver, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        let w = drv.write(data)?;
        if w == 0 || w > data.len() {
            return Err(MigrationError::Protocol {
                device: drv.device().name().to_string(),
                what: format!("write accepted {w} of {} bytes", data.len()),
            });
        }
        data = &data[w..];
    }
    Ok(())
}

/// An I/O failure of `what`, as the migration layer reports file errors.
pub(crate) fn file_err(what: &str, source: std::io::Error) -> MigrationError {
    MigrationError::File {
        path: what.into(),
        source,
    }
}
