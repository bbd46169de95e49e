//! Saving: a device's state into a stream (a writer, or a file written atomically).

use super::report::{rate, secs};
use super::ring::{guarded, pipeline, Caller};
use super::source::read_source;
use super::{Options, SaveReport};
use crate::device::MigState;
use crate::migration::recovery::recover_after;
use crate::migration::stream::{StreamHeader, StreamWriter};
use crate::migration::{MigrationDriver, MigrationError, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Saves the device's state into `sink` as a stream (see [`crate::migration::stream`]): optional
/// pre-copy rounds (when the device has PRE_COPY), then STOP_COPY to end of stream. The
/// device is RUNNING again afterwards, on success and on error. `name` labels I/O errors.
///
/// Returns the sink (holding the whole stream, trailer included) and a report.
/// [`save_to_file`] writes a file atomically.
///
/// # Examples
///
/// ```
/// use vfio_harness::migration::{driver_for, engine, stream};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dev = vfio_harness::open(&"sim:state=1M,seed=3".parse()?, &Default::default())?;
/// let mut drv = driver_for(dev)?;
/// let (bytes, report) = engine::save(drv.as_mut(), Vec::new(), "memory", &Default::default())?;
/// assert!(report.bytes >= 1 << 20); // the 1 MiB state and the simulator's framing
/// assert_eq!(report.stream_bytes, bytes.len() as u64);
/// assert_eq!(&bytes[..8], &stream::MAGIC);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The device is back in RUNNING when any of these is returned, or the error is
/// [`MigrationError::Recovery`], which also says why it could not be returned there.
/// - [`MigrationError::InvalidBufferSize`]: `opts.buffer_size` is 0 or above 64 MiB.
/// - [`MigrationError::Device`], [`MigrationError::Protocol`]: the device refused a
///   transition or a read, or broke the protocol (a STOP_COPY stream that never ends).
/// - [`MigrationError::File`]: writing `sink` failed (labelled with `name`).
/// - [`MigrationError::Interrupted`]: `opts.cancel` was set.
pub fn save<W: Write + Send>(
    drv: &mut dyn MigrationDriver,
    sink: W,
    name: &str,
    opts: &Options,
) -> Result<(W, SaveReport)> {
    let chunk = opts.chunk_len()?;
    guarded(&mut [&mut *drv], |d| {
        let drv = &mut *d[0];
        match save_inner(drv, sink, name, opts, chunk) {
            Ok(v) => Ok(v),
            Err(e) => Err(recover_after(drv, e)),
        }
    })
}

fn save_inner<W: Write + Send>(
    drv: &mut dyn MigrationDriver,
    sink: W,
    name: &str,
    opts: &Options,
    chunk: usize,
) -> Result<(W, SaveReport)> {
    let t0 = Instant::now();
    opts.check_cancel()?;
    let estimate = drv.stop_copy_size().ok().flatten();
    let header = StreamHeader::for_device(
        drv.device(),
        drv.protocol(),
        drv.flags(),
        estimate,
        chunk as u32,
    );
    let device = drv.device().name().to_string();
    let protocol = drv.protocol();
    let mut writer = StreamWriter::new(sink, name, &header)?;
    let mut done = 0u64;
    let stats = pipeline(
        chunk,
        opts.overlap,
        Caller::Produces,
        |p| read_source(drv, opts, estimate, p),
        |kind, data, _| {
            opts.check_cancel()?;
            writer.write_chunk(kind, data)?;
            done += data.len() as u64;
            opts.report(kind.into(), done, estimate);
            Ok(())
        },
    )?;
    let (sink, totals) = writer.finish()?;
    drv.set_state(MigState::Running)?;
    let seconds = secs(t0);
    let stop_copy_seconds = match (stats.stopped_at, stats.eof_at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let bytes = totals.payload_bytes;
    Ok((
        sink,
        SaveReport {
            device,
            file: None,
            protocol,
            bytes,
            precopy_bytes: stats.precopy_bytes,
            stopcopy_bytes: stats.stopcopy_bytes,
            stream_bytes: totals.stream_bytes,
            chunks: totals.chunks,
            rounds: stats.rounds,
            precopy_rounds: stats.round_stats.clone(),
            converged: stats.converged,
            state_size_estimate: estimate,
            seconds,
            stop_copy_seconds,
            throughput_bytes_per_s: rate(bytes, seconds),
            stream_checksum: totals.checksum,
        },
    ))
}

/// Removes a temporary file when dropped, unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// [`save`] into `path`, atomically: the stream goes to a temporary file in the same
/// directory, which is fsync'd and renamed over `path` only when complete. A failed or
/// interrupted save leaves no temporary file and does not touch an existing `path`.
pub fn save_to_file(
    drv: &mut dyn MigrationDriver,
    path: &Path,
    opts: &Options,
) -> Result<SaveReport> {
    let file_err = |p: &Path, source| MigrationError::File {
        path: p.display().to_string(),
        source,
    };
    let fname = path.file_name().ok_or_else(|| {
        file_err(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        fname.to_string_lossy(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    // Named after the output, not the temporary file: that is what the user asked for.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| MigrationError::File {
            path: format!(
                "{} (cannot create a temporary file in {})",
                path.display(),
                dir.display()
            ),
            source: e,
        })?;
    let mut guard = TempGuard(Some(tmp.clone()));
    let (file, mut report) = save(drv, file, &path.display().to_string(), opts)?;
    // The device is RUNNING again; what is left cannot affect it.
    file.sync_all().map_err(|e| file_err(&tmp, e))?;
    drop(file);
    if opts.cancelled() {
        return Err(MigrationError::Interrupted);
    }
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))?;
    guard.0 = None;
    if let Ok(d) = File::open(&dir) {
        // Make the rename durable; a failure here does not invalidate the file.
        let _ = d.sync_all();
    }
    report.file = Some(path.to_path_buf());
    Ok(report)
}
