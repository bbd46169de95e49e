//! Restoring: a stream into a device, every chunk verified before the device sees it.

use super::cancel::{CancelToken, Cancellable};
use super::direct::{enable_direct, has_direct, set_direct};
use super::direct_read::DirectReader;
use super::pipe;
use super::report::{rate, secs};
use super::resident::resident_bytes;
use super::ring::{guarded, pipeline, Filled};
use super::target::Input;
use super::{AlignedBuf, Options, P2pPoint, P2pStep, Phase, RestoreReport};
use crate::migration::recovery::{can_reset, recover_after, recover_at_start};
use crate::migration::session::{DestinationSession, EndState};
use crate::migration::stream::{StreamHeader, StreamReader, StreamTotals};
use crate::migration::{MigrationDriver, MigrationError, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// - [`MigrationError::Buffers`]: the transfer buffers (the stream's chunk size) could not
///   be mapped (out of memory, or the process's address-space limit).
/// - [`MigrationError::Interrupted`]: `opts.cancel` was set.
pub fn restore<R: Read + Send>(
    drv: &mut dyn MigrationDriver,
    source: R,
    opts: &Options,
) -> Result<RestoreReport> {
    let t0 = Instant::now();
    opts.check_cancel()?;
    let reader = StreamReader::new(source).map_err(|e| opts.cause(e))?;
    restore_stream(drv, reader, opts, t0)
}

/// [`restore`] from a reader whose header was already read (e.g. one set to
/// [`StreamReader::stop_at_trailer`]).
fn restore_stream<R: Read + Send>(
    drv: &mut dyn MigrationDriver,
    reader: StreamReader<R>,
    opts: &Options,
    t0: Instant,
) -> Result<RestoreReport> {
    // Nothing below touches the device until the header is validated and matches it.
    reader.header().check_target(drv.device(), drv.protocol())?;
    recover_at_start(drv)?;
    guarded(&mut [&mut *drv], |d| {
        let drv = &mut *d[0];
        match restore_inner(drv, reader, opts, t0) {
            Ok(r) => Ok(r),
            Err(e) => Err(recover_after(drv, opts.cause(e))),
        }
    })
}

fn restore_inner<R: Read + Send>(
    drv: &mut dyn MigrationDriver,
    reader: StreamReader<R>,
    opts: &Options,
    t0: Instant,
) -> Result<RestoreReport> {
    // On one thread the payload is verified as its reads return, each piece while it is
    // still in the cache, and on a socket or pipe in the time the reader would wait for the
    // next piece (hw-notes/bench.md, session 15). Overlapped, the writer verifies it.
    let mut reader = if opts.overlap {
        reader
    } else {
        reader.verify_as_read()
    };
    let header = reader.header().clone();
    let chunk = header.max_chunk as usize;
    let expected = header.state_size_estimate;
    let mut target = DestinationSession::unguarded(drv)?;
    let mut done = 0u64;
    // Every payload is verified before it reaches the device. The writing side (this thread)
    // verifies it, unless the reader is so far ahead that it would wait for a free buffer
    // anyway (`Producer::consumer_far_behind`): then the reader verifies it, at no cost to
    // the pipeline. (Verifying on the reader whenever the writer held a chunk, the save side's
    // rule, made the reader the slower side on a fast source: hw-notes/bench.md, session 9.)
    // The whole-stream checksum is verified by the reader at the trailer, before RESUMING is
    // left.
    let totals: StreamTotals = pipeline(
        chunk,
        opts.overlap,
        |p| {
            loop {
                opts.check_cancel()?;
                let mut buf = p.take()?;
                match reader.next_chunk_unverified(&mut buf)? {
                    Some((_, len, check)) => {
                        let check = if p.consumer_far_behind() {
                            check.verify(&buf[..len])?;
                            None
                        } else {
                            Some(check)
                        };
                        p.send(Filled { buf, len, check })?
                    }
                    None => break,
                }
            }
            Ok(reader.totals())
        },
        |c| {
            opts.check_cancel()?;
            if let Some(check) = c.check {
                check.verify(c.data())?;
            }
            target.write(c.data())?;
            done += c.data().len() as u64;
            opts.report(Phase::Resume, done, expected);
            Ok(())
        },
    )?;
    opts.check_cancel()?;
    let tc = Instant::now();
    if let Some(hook) = &opts.p2p {
        let state = target.load_held()?;
        let device = target.driver().device().name().to_string();
        let point = P2pPoint {
            step: P2pStep::Loaded,
            device: &device,
            state,
        };
        if let Err(e) = hook(&point) {
            // The group does not run: the loaded state is discarded.
            return Err(match target.driver().reset() {
                Ok(()) => e,
                Err(re) => MigrationError::Recovery {
                    error: Box::new(e),
                    recovery: Box::new(re),
                },
            });
        }
    }
    let written = target.finish(EndState::Running)?;
    let commit_seconds = secs(tc);
    let seconds = secs(t0);
    Ok(RestoreReport {
        device: written.device,
        file: None,
        protocol: written.protocol,
        source: header,
        bytes: totals.payload_bytes,
        stream_bytes: totals.stream_bytes,
        chunks: totals.chunks,
        seconds,
        commit_seconds,
        throughput_bytes_per_s: rate(totals.payload_bytes, seconds),
        pipe_capacity_bytes: None,
        direct_io: false,
    })
}

/// Reads a whole stream and verifies every checksum and the trailer, touching no device.
/// Returns the header and totals.
///
/// # Examples
///
/// ```
/// use vfio_harness::migration::{driver_for, engine};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     let dev = vfio_harness::open(&spec.parse()?, &Default::default())?;
///     Ok(driver_for(dev)?)
/// };
/// let mut drv = open("sim:state=1M,seed=3")?;
/// let (saved, saving) = engine::save(drv.as_mut(), Vec::new(), "memory", &Default::default())?;
/// let (header, totals) = engine::verify(&saved[..], &Default::default())?;
/// assert_eq!(totals.payload_bytes, saving.bytes);
/// assert_eq!(totals.chunks, saving.chunks);
/// assert_eq!(header.max_chunk as usize, engine::Options::default().buffer_size);
/// assert!(engine::verify(&saved[..saved.len() - 1], &Default::default()).is_err());
/// # Ok(())
/// # }
/// ```
pub fn verify<R: Read>(source: R, opts: &Options) -> Result<(StreamHeader, StreamTotals)> {
    let mut reader = StreamReader::new(source)?;
    let mut buf = AlignedBuf::new(reader.header().max_chunk as usize)?;
    while reader.next_chunk(&mut buf)?.is_some() {
        opts.check_cancel()?;
    }
    Ok((reader.header().clone(), reader.totals()))
}

/// [`restore`] from a file (`-` is stdin; see [`Input`]).
///
/// # Examples
///
/// A saved file restored into a device that checks it received seed 3's state:
///
/// ```
/// use vfio_harness::device::MigState;
/// use vfio_harness::migration::{driver_for, engine};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     let dev = vfio_harness::open(&spec.parse()?, &Default::default())?;
///     Ok(driver_for(dev)?)
/// };
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.vfs");
/// let opts = engine::Options::default();
/// let saving = engine::save_to_file(open("sim:state=1M,seed=3")?.as_mut(), &path, &opts)?;
/// let mut dst = open("sim:state=1M,verify-seed=3")?;
/// let report = engine::restore_from_file(dst.as_mut(), &path, &opts)?;
/// assert_eq!(report.bytes, saving.bytes);
/// assert_eq!(dst.state()?, MigState::Running);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// Those of [`Input::open`] and [`restore_from`].
pub fn restore_from_file(
    drv: &mut dyn MigrationDriver,
    path: &Path,
    opts: &Options,
) -> Result<RestoreReport> {
    let token = CancelToken::new().map_err(|e| MigrationError::File {
        path: path.display().to_string(),
        source: e,
    })?;
    let input = Input::open(path, &token)?;
    restore_from(drv, &input, opts, &token)
}

/// [`restore`] from an opened [`Input`], reading it once: every pass over the stream uses
/// the one open file, so a file swapped in at the path meanwhile is never seen.
///
/// - A device that can be reset is fed as the stream is verified (each chunk before it is
///   written, the trailer before RESUMING is left), and reset on a refusal.
/// - A device that cannot be reset (RESUMING cannot be aborted) gets nothing before the
///   whole stream verified: a seekable input is verified, rewound and restored; a pipe is
///   copied into an anonymous temporary file while it is verified, and restored from there.
///
/// A pipe or socket is read up to the verified trailer and no further. A socket's receive
/// low-water mark is left as it is: with the mark set from what the stream needs next
/// ([`Cancellable::low_water`], up to 256 KiB), the bench's one-thread restore from a
/// loopback socket ran at half the rate it reached without the mark (hw-notes/bench.md,
/// session 19). On one thread ([`opts.overlap`](Options::overlap) off), a pipe or socket
/// with nothing to read yet is polled for up to [`opts.max_poll`](Options::max_poll) before
/// the thread waits ([`Cancellable::poll_first`]). Blocking reads end as soon as `token` is
/// cancelled; pass the token whose [`flag`](CancelToken::flag) is `opts.cancel`.
/// A regular file less than half of which the page cache holds is read from the disk with
/// `O_DIRECT` ([`DirectReader`]; [`Options::direct_io`], on by default, allows it), one it
/// holds through the cache; a descriptor given with `O_DIRECT` set is read direct;
/// [`RestoreReport::direct_io`] says which, and the descriptor's flags are left as found.
/// A pipe or FIFO smaller than `opts.buffer_size` is grown to it (at most
/// `/proc/sys/fs/pipe-max-size`), so the writer at its other end can run a chunk ahead;
/// [`RestoreReport::pipe_capacity_bytes`] says what it held.
///
/// # Examples
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
/// let path = dir.path().join("state.vfs");
/// let opts = engine::Options::default();
/// engine::save_to_file(open("sim:state=1M,seed=3")?.as_mut(), &path, &opts)?;
/// let token = engine::CancelToken::new()?;
/// let input = engine::Input::open(&path, &token)?;
/// let mut dst = open("sim:state=1M,verify-seed=3")?;
/// let report = engine::restore_from(dst.as_mut(), &input, &opts, &token)?;
/// assert_eq!(report.file.as_deref(), Some(path.as_path()));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// Those of [`restore`], labelled with the input's path, and [`MigrationError::File`] when
/// the input cannot be rewound or spooled.
pub fn restore_from(
    drv: &mut dyn MigrationDriver,
    input: &Input,
    opts: &Options,
    token: &Arc<CancelToken>,
) -> Result<RestoreReport> {
    let path = input.path();
    let t0 = Instant::now();
    let file_err = |e| MigrationError::File {
        path: path.display().to_string(),
        source: e,
    };
    // A pipe that holds a whole chunk lets the writer at its other end run a chunk ahead.
    let pipe = pipe::grow(input.file().as_fd(), opts.buffer_size);
    let spool;
    let mut source = input.file();
    let mut seekable = input.is_seekable();
    if !can_reset(drv) {
        // Without a reset, RESUMING cannot be aborted: verify the whole stream before the
        // device sees any of it.
        if seekable {
            verify(buffered(source, token, opts), opts).map_err(|e| opts.cause(e).in_file(path))?;
        } else {
            spool = anonymous_file().map_err(|source| MigrationError::File {
                path: format!(
                    "a temporary spool for the stream in {}",
                    std::env::temp_dir().display()
                ),
                source,
            })?;
            let tee = Tee {
                from: buffered(source, token, opts),
                to: &spool,
            };
            verify_stream(
                StreamReader::new(tee).map(StreamReader::stop_at_trailer),
                opts,
            )
            .map_err(|e| opts.cause(e).in_file(path))?;
            source = &spool;
            seekable = true;
        }
        source.seek(SeekFrom::Start(0)).map_err(file_err)?;
    }
    opts.check_cancel()?;
    // Read once from a file the page cache mostly does not hold: from the disk, direct. A
    // descriptor the caller opened with `O_DIRECT` is read keeping its rules.
    let given_direct = seekable && has_direct(source.as_fd()).map_err(file_err)?;
    let direct = given_direct
        || (seekable
            && opts.direct_io
            && mostly_uncached(source)
            && enable_direct(source).map_err(file_err)?);
    let restored = if direct {
        let reader = DirectReader::new(Cancellable::new(source, token.clone()));
        match reader {
            Ok(r) => read_stream(drv, r, seekable, opts, t0),
            Err(e) => Err(file_err(e)),
        }
    } else {
        read_stream(drv, buffered(source, token, opts), seekable, opts, t0)
    };
    // The descriptor may be shared (`-i -`, `/dev/fd/N`): leave its flags as they were.
    let reset = if direct {
        set_direct(source.as_fd(), given_direct)
    } else {
        Ok(())
    };
    let mut report = restored.map_err(|e| e.in_file(path))?;
    reset.map_err(file_err)?;
    report.file = Some(path.to_path_buf());
    report.pipe_capacity_bytes = pipe.capacity();
    report.direct_io = direct;
    Ok(report)
}

/// Restores from the stream `r` yields, read up to its trailer only where the input is not
/// seekable (a pipe or socket may carry more after it).
fn read_stream<R: Read + Send>(
    drv: &mut dyn MigrationDriver,
    r: R,
    seekable: bool,
    opts: &Options,
    t0: Instant,
) -> Result<RestoreReport> {
    let reader = StreamReader::new(r).map_err(|e| opts.cause(e))?;
    let reader = if seekable {
        reader
    } else {
        reader.stop_at_trailer()
    };
    restore_stream(drv, reader, opts, t0)
}

/// Whether less than half of `file` is in the page cache. A file that cannot be asked about
/// (it cannot be mapped) counts as cached: it is read as before, through the page cache.
fn mostly_uncached(file: &File) -> bool {
    let Ok(m) = file.metadata() else {
        return false;
    };
    match resident_bytes(file, m.len()) {
        Ok(resident) => resident < m.len() / 2,
        Err(_) => false,
    }
}

/// `f` read through a 64 KiB buffer, its blocking reads cancelled by `token`. On one thread
/// (`opts.overlap` off) a pipe or socket with nothing to read yet is polled for up to
/// `opts.max_poll` before the wait; overlapped, the reading thread's polls would take CPU
/// time from the writing thread and from whatever feeds the input (hw-notes/bench.md,
/// "Session 23").
pub(super) fn buffered<'a>(
    f: &'a File,
    token: &Arc<CancelToken>,
    opts: &Options,
) -> std::io::BufReader<Cancellable<&'a File>> {
    let polling = if opts.overlap {
        Duration::ZERO
    } else {
        opts.max_poll
    };
    std::io::BufReader::with_capacity(
        64 * 1024,
        Cancellable::new(f, token.clone()).poll_first(polling),
    )
}

fn verify_stream<R: Read>(reader: Result<StreamReader<R>>, opts: &Options) -> Result<()> {
    let mut reader = reader?;
    let mut buf = AlignedBuf::new(reader.header().max_chunk as usize)?;
    while reader.next_chunk(&mut buf)?.is_some() {
        opts.check_cancel()?;
    }
    Ok(())
}

/// An unnamed temporary file in the temporary directory (`$TMPDIR`), mode 0600, gone when
/// closed: `O_TMPFILE`, or where the file system has none a file unlinked as soon as it is
/// made (`tempfile::tempfile`).
fn anonymous_file() -> std::io::Result<File> {
    tempfile::tempfile()
}

/// Copies what is read into a file.
struct Tee<'a, R> {
    from: R,
    to: &'a File,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.from.read(buf)?;
        self.to.write_all(&buf[..n])?;
        Ok(n)
    }
}
