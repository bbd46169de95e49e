//! Restoring: a stream into a device, every chunk verified before the device sees it.

use super::report::{rate, secs};
use super::ring::{guarded, pipeline, Caller, Filled};
use super::source::write_device;
use super::{AlignedBuf, Options, Phase, RestoreReport};
use crate::device::MigState;
use crate::migration::recovery::{can_reset, recover_after, recover_at_start};
use crate::migration::stream::{StreamHeader, StreamReader, StreamTotals};
use crate::migration::{MigrationDriver, MigrationError, Result};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Restores a stream into the device: the header is checked against the device (before it
/// is touched), the device enters RESUMING, each chunk is verified before it is written, and
/// RESUMING is left (committing the state) only after the trailer verified. On any error the
/// device is reset back to RUNNING and the error says what was wrong.
///
/// [`restore_from_file`] reads a file, and verifies it whole first on a device that cannot be
/// reset.
///
/// # Examples
///
/// Save one simulated device and restore into another that checks it received seed 3's
/// state; a corrupted copy is refused with the chunk it was found in, and the device left
/// RUNNING:
///
/// ```
/// use vfio_harness::device::MigState;
/// use vfio_harness::migration::stream::StreamError;
/// use vfio_harness::migration::{driver_for, engine, MigrationError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     let dev = vfio_harness::open(&spec.parse()?, &Default::default())?;
///     Ok(driver_for(dev)?)
/// };
/// let opts = engine::Options::default();
/// let mut src = open("sim:state=1M,seed=3")?;
/// let (mut saved, saving) = engine::save(src.as_mut(), Vec::new(), "memory", &opts)?;
///
/// let mut dst = open("sim:state=1M,verify-seed=3")?;
/// let report = engine::restore(dst.as_mut(), &saved[..], &opts)?;
/// assert_eq!(report.bytes, saving.bytes);
///
/// let middle = saved.len() / 2;
/// saved[middle] ^= 1;
/// match engine::restore(dst.as_mut(), &saved[..], &opts) {
///     Err(MigrationError::Stream(StreamError::PayloadChecksum { index, .. })) => assert_eq!(index, 0),
///     other => panic!("corruption not detected: {other:?}"),
/// }
/// assert_eq!(dst.state()?, MigState::Running);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The device is back in RUNNING when any of these is returned (reset out of RESUMING), or
/// the error is [`MigrationError::Recovery`], which also says why it could not be returned
/// there.
/// - [`MigrationError::Stream`]: the stream is foreign, corrupt or truncated (a
///   [`StreamError`](crate::migration::stream::StreamError) naming the rule, the chunk and
///   the byte range); nothing unverified reached the device and nothing was committed.
/// - [`MigrationError::Incompatible`]: the stream was saved from a device of another
///   identity or protocol (checked before the device is touched).
/// - [`MigrationError::WrongState`]: the device was left in RESUMING by an earlier session
///   and cannot be reset (it is left untouched).
/// - [`MigrationError::Device`], [`MigrationError::Protocol`]: the device refused a
///   transition or a write, or refused the state when leaving RESUMING.
/// - [`MigrationError::Interrupted`]: `opts.cancel` was set.
pub fn restore<R: Read + Send>(
    drv: &mut dyn MigrationDriver,
    source: R,
    opts: &Options,
) -> Result<RestoreReport> {
    let t0 = Instant::now();
    opts.check_cancel()?;
    // Nothing below touches the device until the header is validated and matches it.
    let reader = StreamReader::new(source)?;
    reader.header().check_target(drv.device(), drv.protocol())?;
    recover_at_start(drv)?;
    guarded(&mut [&mut *drv], |d| {
        let drv = &mut *d[0];
        match restore_inner(drv, reader, opts, t0) {
            Ok(r) => Ok(r),
            Err(e) => Err(recover_after(drv, e)),
        }
    })
}

fn restore_inner<R: Read + Send>(
    drv: &mut dyn MigrationDriver,
    mut reader: StreamReader<R>,
    opts: &Options,
    t0: Instant,
) -> Result<RestoreReport> {
    let header = reader.header().clone();
    let chunk = header.max_chunk as usize;
    let expected = header.state_size_estimate;
    drv.set_state(MigState::Resuming)?;
    let mut done = 0u64;
    // Every payload is verified before it reaches the device, on whichever thread has time:
    // when the writing side is waiting for data (nothing queued), the reader is the
    // bottleneck and leaves the checksum to the writer; otherwise the reader checks it while
    // the writer is busy. The whole-stream checksum is verified by the reader at the trailer,
    // before RESUMING is left.
    let queued = AtomicUsize::new(0);
    let totals: StreamTotals = pipeline(
        chunk,
        opts.overlap,
        Caller::Consumes,
        |p| {
            loop {
                opts.check_cancel()?;
                let mut buf = p.take()?;
                match reader.next_chunk_unverified(&mut buf)? {
                    Some((kind, len, check)) => {
                        let check = if queued.load(Ordering::Acquire) == 0 {
                            Some(check)
                        } else {
                            check.verify(&buf[..len])?;
                            None
                        };
                        queued.fetch_add(1, Ordering::AcqRel);
                        p.send(Filled {
                            kind,
                            buf,
                            len,
                            check,
                        })?
                    }
                    None => break,
                }
            }
            Ok(reader.totals())
        },
        |_, data, check| {
            queued.fetch_sub(1, Ordering::AcqRel);
            opts.check_cancel()?;
            if let Some(check) = check {
                check.verify(data)?;
            }
            write_device(drv, data)?;
            done += data.len() as u64;
            opts.report(Phase::Resume, done, expected);
            Ok(())
        },
    )?;
    opts.check_cancel()?;
    let tc = Instant::now();
    drv.set_state(MigState::Running)?;
    let commit_seconds = secs(tc);
    let seconds = secs(t0);
    Ok(RestoreReport {
        device: drv.device().name().to_string(),
        file: None,
        protocol: drv.protocol(),
        source: header,
        bytes: totals.payload_bytes,
        stream_bytes: totals.stream_bytes,
        chunks: totals.chunks,
        seconds,
        commit_seconds,
        throughput_bytes_per_s: rate(totals.payload_bytes, seconds),
    })
}

/// Reads a whole stream and verifies every checksum and the trailer, touching no device.
/// Returns the header and totals.
pub fn verify<R: Read>(source: R, opts: &Options) -> Result<(StreamHeader, StreamTotals)> {
    let mut reader = StreamReader::new(source)?;
    let mut buf = AlignedBuf::new(reader.header().max_chunk as usize);
    while reader.next_chunk(&mut buf)?.is_some() {
        opts.check_cancel()?;
    }
    Ok((reader.header().clone(), reader.totals()))
}

/// [`restore`] from a file. On a device that cannot be reset the whole file is verified
/// first (see [`crate::migration::recovery`]).
pub fn restore_from_file(
    drv: &mut dyn MigrationDriver,
    path: &Path,
    opts: &Options,
) -> Result<RestoreReport> {
    let open = || {
        File::open(path)
            .map(|f| std::io::BufReader::with_capacity(64 * 1024, f))
            .map_err(|e| MigrationError::File {
                path: path.display().to_string(),
                source: e,
            })
    };
    if !can_reset(drv) {
        // Without a reset, RESUMING cannot be aborted: verify the whole file before the
        // device sees any of it.
        verify(open()?, opts).map_err(|e| e.in_file(path))?;
    }
    let mut report = restore(drv, open()?, opts).map_err(|e| e.in_file(path))?;
    report.file = Some(path.to_path_buf());
    Ok(report)
}
