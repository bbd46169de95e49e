//! Saving: a device's state into a stream (a writer, or a file written atomically).

use super::cancel::{is_type, CancelToken, Cancellable};
use super::direct::{enable_direct, DirectWriter};
use super::pipe;
use super::report::{rate, secs};
use super::ring::guarded;
use super::source::{source_session, transfer, Framing};
use super::target::Output;
use super::write_behind::WriteBehind;
use super::{Options, SaveReport};
use crate::migration::recovery::recover_after;
use crate::migration::session::EndState;
use crate::migration::stream::{Compression, StreamWriter};
use crate::migration::{MigrationDriver, MigrationError, Result};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::Arc;
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
/// - [`MigrationError::InvalidBufferSize`]: `opts.buffer_size` is below 4 KiB or above 64 MiB.
/// - [`MigrationError::Device`], [`MigrationError::Protocol`]: the device refused a
///   transition or a read, or broke the protocol (a STOP_COPY stream that never ends).
/// - [`MigrationError::File`]: writing `sink` failed (labelled with `name`).
/// - [`MigrationError::Buffers`]: the transfer buffers could not be mapped (out of memory,
///   or the process's address-space limit).
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
            Err(e) => Err(recover_after(drv, opts.cause(e))),
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
    let mut source = source_session(drv, opts, chunk)?;
    let estimate = source.estimate();
    let mut writer =
        StreamWriter::with_compression(sink, name, &source.stream_header(), opts.compression)?;
    // The checksum is computed where the bytes were read when the chunks go out raw.
    let hash = opts.compression == Compression::None;
    // A chunk and its header fill one buffer: a raw chunk goes out as exactly `chunk` bytes,
    // which a pipe (or socket buffer) of that size takes in one go, where one byte more
    // would make every write wait for the reader (hw-notes/bench.md, "save -> pipe"). The
    // header is written into the room kept before the payload, so the frame leaves in one
    // contiguous write, and raw frames end on 4 KiB boundaries of the stream (the first
    // chunk, and one after a short read, is shortened to get there): from page-aligned
    // buffers, an `O_DIRECT` sink can take every full frame without a copy.
    let framing = Framing {
        head: writer.chunk_header_len(),
        align_from: hash.then(|| writer.totals().stream_bytes),
    };
    let stats = transfer(
        &mut source,
        opts,
        chunk,
        framing,
        hash,
        |kind, frame, at, sum| writer.write_frame(kind, frame, at, sum),
    )?;
    let (sink, totals) = writer.finish()?;
    let read = source.finish(EndState::Running)?;
    let seconds = secs(t0);
    let bytes = totals.payload_bytes;
    Ok((
        sink,
        SaveReport {
            device: read.device,
            file: None,
            protocol: read.protocol,
            bytes,
            precopy_bytes: read.precopy_bytes,
            stopcopy_bytes: read.stopcopy_bytes,
            stream_bytes: totals.stream_bytes,
            chunks: totals.chunks,
            rounds: stats.rounds,
            precopy_rounds: read.rounds,
            converged: stats.converged,
            precopy_end: stats.precopy_end,
            predicted_downtime_seconds: stats.predicted_downtime,
            state_size_estimate: estimate,
            seconds,
            stop_copy_seconds: read.stop_copy_seconds,
            throughput_bytes_per_s: rate(bytes, seconds),
            stream_checksum: totals.checksum,
            pipe_capacity_bytes: None,
            direct_io: false,
            file_commit_seconds: 0.0,
        },
    ))
}

/// [`save`] into `path`, atomically when it is a regular file (see [`Output`]): a failed
/// or interrupted save leaves no temporary file and does not touch an existing `path`.
/// The path is checked before the device is touched.
///
/// # Examples
///
/// Save a simulated device into a file, private to its owner, with nothing else left in
/// the directory:
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// use vfio_harness::migration::{driver_for, engine};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     let dev = vfio_harness::open(&spec.parse()?, &Default::default())?;
///     Ok(driver_for(dev)?)
/// };
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.vfs");
/// let mut drv = open("sim:state=1M,seed=3")?;
/// let report = engine::save_to_file(drv.as_mut(), &path, &engine::Options::default())?;
/// assert_eq!(std::fs::metadata(&path)?.len(), report.stream_bytes);
/// assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// Those of [`Output::open`], [`save`] and [`Output::commit`].
pub fn save_to_file(
    drv: &mut dyn MigrationDriver,
    path: &Path,
    opts: &Options,
) -> Result<SaveReport> {
    let token = CancelToken::new().map_err(|e| MigrationError::File {
        path: path.display().to_string(),
        source: e,
    })?;
    let out = Output::open(path, &token)?;
    save_to(drv, out, opts, &token)
}

/// [`save`] into an opened [`Output`], committed when the stream is complete. Blocking
/// writes (a pipe whose reader stalls) end as soon as `token` is cancelled; pass the token
/// whose [`flag`](CancelToken::flag) is `opts.cancel` so the engine sees it too. A pipe or
/// FIFO smaller than `opts.buffer_size` is grown to it (at most
/// `/proc/sys/fs/pipe-max-size`), so each raw frame goes in one write rather than in
/// 64 KiB pieces; [`SaveReport::pipe_capacity_bytes`] says what it held. An atomic output
/// (a regular file, fsync'd on commit) is written with `O_DIRECT` where its file system
/// takes it and [`Options::direct_io`] asks for it ([`DirectWriter`]), through the page
/// cache otherwise, with [`WriteBehind`] (each 16 MiB written is sent on to the disk at
/// once, so the commit's `fsync` has little left to do); [`SaveReport::direct_io`] says
/// which.
///
/// # Errors
///
/// Those of [`save`] and [`Output::commit`].
///
/// # Examples
///
/// The output opened (and checked) first, then the device saved into it:
///
/// ```
/// use vfio_harness::migration::{driver_for, engine};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     let dev = vfio_harness::open(&spec.parse()?, &Default::default())?;
///     Ok(driver_for(dev)?)
/// };
/// let dir = tempfile::tempdir()?;
/// let token = engine::CancelToken::new()?;
/// let path = dir.path().join("state.vfs");
/// let out = engine::Output::open(&path, &token)?;
/// assert!(out.is_atomic());
/// let mut drv = open("sim:state=1M,seed=3")?;
/// let report = engine::save_to(drv.as_mut(), out, &engine::Options::default(), &token)?;
/// assert_eq!(std::fs::metadata(&path)?.len(), report.stream_bytes);
/// # Ok(())
/// # }
/// ```
pub fn save_to(
    drv: &mut dyn MigrationDriver,
    out: Output,
    opts: &Options,
    token: &Arc<CancelToken>,
) -> Result<SaveReport> {
    let name = out.path().display().to_string();
    let file_err = |e| MigrationError::File {
        path: name.clone(),
        source: e,
    };
    // A raw frame is one buffer: a pipe of that size takes each in one write.
    let pipe = pipe::grow(out.file().as_fd(), opts.buffer_size);
    let direct =
        out.is_atomic() && opts.direct_io && enable_direct(out.file()).map_err(file_err)?;
    let mut report = if direct {
        // Nothing can block on a regular file: written as is, no poll.
        let sink = DirectWriter::new(out.file()).map_err(file_err)?;
        // Its raw frames go to the disk straight from the chunk buffers: one request each.
        let huge = Options {
            huge_buffers: true,
            ..opts.clone()
        };
        let (sink, mut report) = save(drv, sink, &name, &huge)?;
        report.direct_io = sink.is_direct();
        sink.finish().map_err(file_err)?;
        report
    } else if out.is_atomic() {
        // Committing fsyncs the file: its writeback starts as it is written.
        let sink = Cancellable::new(out.file(), token.clone());
        let sink = WriteBehind::new(sink, out.file().as_fd()).map_err(file_err)?;
        save(drv, sink, &name, opts)?.1
    } else {
        // Into a socket each thread puts the chunk it read; a pipe is written from the
        // queue unless `opts` asks for own puts (see `Options::put_own_chunks` for what
        // each cost).
        let socket = is_type(out.file().as_raw_fd(), libc::S_IFSOCK);
        let sink = Cancellable::new(out.file(), token.clone());
        let opts = &Options {
            put_own_chunks: opts.put_own_chunks || socket,
            ..opts.clone()
        };
        save(drv, sink, &name, opts)?.1
    };
    report.pipe_capacity_bytes = pipe.capacity();
    // The device is RUNNING again; what is left cannot affect it.
    if opts.cancelled() || token.is_cancelled() {
        return Err(MigrationError::Interrupted);
    }
    let path = out.path().to_path_buf();
    let t = Instant::now();
    let atomic = out.is_atomic();
    out.commit()?;
    if atomic {
        report.file_commit_seconds = secs(t);
    }
    report.file = Some(path);
    Ok(report)
}
