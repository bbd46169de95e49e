//! Where a transfer's data goes ([`SinkTarget`] -> [`Sink`]) or comes from ([`Source`]), one
//! per [`DataPath`], opened fresh for every transfer, and what finishing it means (`fsync`,
//! the last block of an `O_DIRECT` file, the far end of a pipe or socket having read
//! everything). Every kind of loop (reference, raw, QEMU-style, whole-state, the engine)
//! writes into the same sinks and reads from the same sources, so they differ only in how
//! they move the bytes.

pub(in crate::bench) mod channel;
pub(in crate::bench) mod direct;
pub(in crate::bench) mod link;
pub(in crate::bench) mod resident;

use super::config::DataPath;
use crate::migration::engine::enable_direct;
use crate::sim::Pacer;
use crate::units::format_bytes;
use direct::{DirectReader, DirectWriter};
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The writing end of a sink.
pub(in crate::bench) enum SinkWriter {
    /// Discards (the `memory` path: nothing leaves the process).
    Discard,
    /// A file (page cache; `fsync`'d at the end on `file-fsync`).
    File(File),
    /// A file opened with `O_DIRECT`.
    Direct(Box<DirectWriter<File>>),
    /// A pipe's write end.
    Pipe(File),
    /// A loopback TCP connection.
    Tcp(TcpStream),
    /// Discards at a fixed rate (the capped sink of the overlap mode).
    Paced(Pacer),
    /// A capped link behind a send buffer (the compress mode).
    Link(link::Link),
}

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SinkWriter::Discard => Ok(buf.len()),
            SinkWriter::File(f) | SinkWriter::Pipe(f) => f.write(buf),
            SinkWriter::Direct(d) => d.write(buf),
            SinkWriter::Tcp(t) => t.write(buf),
            SinkWriter::Paced(p) => {
                p.wait(Instant::now(), buf.len());
                Ok(buf.len())
            }
            SinkWriter::Link(l) => {
                l.write(buf.len());
                Ok(buf.len())
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            SinkWriter::Discard => Ok(bufs.iter().map(|b| b.len()).sum()),
            SinkWriter::File(f) | SinkWriter::Pipe(f) => f.write_vectored(bufs),
            SinkWriter::Direct(d) => d.write_vectored(bufs),
            SinkWriter::Tcp(t) => t.write_vectored(bufs),
            SinkWriter::Paced(p) => {
                let n = bufs.iter().map(|b| b.len()).sum();
                p.wait(Instant::now(), n);
                Ok(n)
            }
            SinkWriter::Link(l) => {
                let n = bufs.iter().map(|b| b.len()).sum();
                l.write(n);
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SinkWriter::File(f) | SinkWriter::Pipe(f) => f.flush(),
            SinkWriter::Tcp(t) => t.flush(),
            _ => Ok(()),
        }
    }
}

impl SinkWriter {
    /// The sink as the engine's [`Output`](crate::migration::engine::Output) named `name`
    /// (its descriptor duplicated: a file, a pipe or a socket, written as `save -o` writes
    /// one that is not replaced atomically), or `None` for a sink that is not a plain
    /// descriptor (discarding, `O_DIRECT`, paced, a simulated link).
    pub fn output(&self, name: &Path) -> io::Result<Option<crate::migration::engine::Output>> {
        use std::os::fd::AsFd;
        let fd = match self {
            SinkWriter::File(f) | SinkWriter::Pipe(f) => f.as_fd(),
            SinkWriter::Tcp(t) => t.as_fd(),
            SinkWriter::Discard
            | SinkWriter::Direct(_)
            | SinkWriter::Paced(_)
            | SinkWriter::Link(_) => return Ok(None),
        };
        let file = File::from(fd.try_clone_to_owned()?);
        Ok(Some(crate::migration::engine::Output::from_file(
            file, name,
        )))
    }
}

/// What finishing a sink takes.
pub(in crate::bench) enum SinkEnd {
    /// Nothing (discard).
    Nothing,
    /// Cut the file at its offset: a page-cache file overwritten in place holds what this
    /// transfer wrote and no more.
    Trim,
    /// `fsync` the file.
    Fsync,
    /// Write what the `O_DIRECT` file's writer staged (a last partial block through the
    /// page cache).
    Direct,
    /// As [`SinkEnd::Direct`], then `fsync` the file.
    DirectFsync,
    /// Close the writing end and wait until the draining thread has read everything.
    Drain(JoinHandle<io::Result<u64>>),
}

impl SinkEnd {
    /// Finishes the sink whose writer was `w`.
    pub fn finish(self, w: SinkWriter) -> io::Result<()> {
        match (self, w) {
            (SinkEnd::Fsync, SinkWriter::File(f)) => f.sync_all(),
            (SinkEnd::Trim, SinkWriter::File(mut f)) => {
                use std::io::Seek;
                let at = f.stream_position()?;
                f.set_len(at)
            }
            (SinkEnd::Direct, SinkWriter::Direct(d)) => d.finish().map(drop),
            (SinkEnd::DirectFsync, SinkWriter::Direct(d)) => d.finish()?.sync_all(),
            (_, SinkWriter::Link(l)) => {
                l.drain();
                Ok(())
            }
            (SinkEnd::Drain(h), w) => {
                drop(w);
                channel::join(h, "draining").map(drop)
            }
            (_, mut w) => w.flush(),
        }
    }
}

/// A sink ready for one transfer.
pub(in crate::bench) struct Sink {
    /// Where the bytes go.
    pub writer: SinkWriter,
    /// What finishing takes.
    pub end: SinkEnd,
}

/// A path's sink, opened afresh for each transfer: a file (in the directory given, removed
/// when this is dropped; `file` overwritten in place, the others created or truncated), a
/// pipe or a TCP connection with a thread draining it, or nothing.
///
/// The page-cache file (`file`) is overwritten, not truncated: every transfer writes into
/// the pages the one before it left in the cache ([`SinkTarget::prefill`] makes them before
/// the first), so each loop is timed copying into the cache, not allocating it afresh. On
/// a guest that hands freed memory back to its host (free page reporting), a freed page is
/// faulted back in from the host when it is used again: 4 GiB took 11 to 16 s that way
/// against 0.6 to 0.8 s overwritten in place (hw-notes/bench.md, session 33), a cost that
/// fell on one loop or another by the time between transfers.
pub(in crate::bench) struct SinkTarget {
    path: DataPath,
    file: Option<tempfile::TempPath>,
    drain_buffer: usize,
    pipe_size: usize,
    /// `file-fsync`: the file is written with `O_DIRECT` (then `fsync`'d), as the harness's
    /// durable save writes where the file system takes it ([`SinkTarget::direct`]).
    direct: bool,
}

impl SinkTarget {
    /// The sink of `path`, its files in `dir`, the far end reading `drain_buffer` bytes at a
    /// time. `Err` (`Unsupported`) for `file-direct` when the file system refuses `O_DIRECT`.
    pub fn new(path: DataPath, dir: &Path, drain_buffer: usize) -> io::Result<SinkTarget> {
        let file = match path {
            DataPath::File | DataPath::FileFsync | DataPath::FileDirect => Some(temp_path(dir)?),
            _ => None,
        };
        if let (DataPath::FileDirect, Some(p)) = (path, &file) {
            if let Err(e) = direct::create(p) {
                return Err(if e.raw_os_error() == Some(libc::EINVAL) {
                    io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("{} does not support O_DIRECT", dir.display()),
                    )
                } else {
                    e
                });
            }
        }
        let pipe_size = if path == DataPath::Pipe {
            channel::pipe()?.2
        } else {
            0
        };
        Ok(SinkTarget {
            path,
            file,
            drain_buffer,
            pipe_size,
            direct: false,
        })
    }

    /// This `file-fsync` target written with `O_DIRECT` before its `fsync`, as the engine's
    /// durable save writes ([`crate::migration::engine::Options::direct_io`]), or `None`
    /// for another path or where the directory's file system refuses `O_DIRECT` (the
    /// engine then writes through the page cache too).
    pub fn direct(&self) -> io::Result<Option<SinkTarget>> {
        let Some(p) = self
            .file
            .as_deref()
            .filter(|_| self.path == DataPath::FileFsync)
        else {
            return Ok(None);
        };
        if !enable_direct(&File::create(p)?)? {
            return Ok(None);
        }
        Ok(Some(SinkTarget {
            path: self.path,
            file: Some(temp_path(p.parent().unwrap_or(Path::new(".")))?),
            drain_buffer: self.drain_buffer,
            pipe_size: 0,
            direct: true,
        }))
    }

    /// Writes `len` bytes of zeros into the page-cache file (`file`; nothing for another
    /// path), untimed, so that the first transfer finds its pages in the cache as every later
    /// one does.
    pub fn prefill(&self, len: u64) -> io::Result<()> {
        let Some(p) = self.file.as_deref().filter(|_| self.path == DataPath::File) else {
            return Ok(());
        };
        let mut f = File::options().write(true).open(p)?;
        write_repeated(&mut f, &vec![0u8; 1 << 20], len)?;
        f.set_len(len)
    }

    /// Whether the sink is written with `O_DIRECT` (`file-direct`, and a `file-fsync`
    /// target made by [`SinkTarget::direct`]).
    pub fn is_direct(&self) -> bool {
        self.path == DataPath::FileDirect || self.direct
    }

    /// The file the file paths write, when there is one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Opens the sink for one transfer (outside the timed part: creating or truncating a
    /// file, connecting a socket).
    pub fn open(&self) -> io::Result<Sink> {
        let file = || {
            self.file
                .as_deref()
                .ok_or_else(|| io::Error::other("no file for a file path"))
        };
        Ok(match self.path {
            DataPath::Memory => Sink {
                writer: SinkWriter::Discard,
                end: SinkEnd::Nothing,
            },
            DataPath::FileFsync if self.direct => {
                let f = File::create(file()?)?;
                if !enable_direct(&f)? {
                    return Err(io::Error::other("the file system no longer takes O_DIRECT"));
                }
                Sink {
                    writer: SinkWriter::Direct(Box::new(DirectWriter::new(f)?)),
                    end: SinkEnd::DirectFsync,
                }
            }
            DataPath::File => Sink {
                writer: SinkWriter::File(File::options().write(true).open(file()?)?),
                end: SinkEnd::Trim,
            },
            DataPath::FileFsync => Sink {
                writer: SinkWriter::File(File::create(file()?)?),
                end: SinkEnd::Fsync,
            },
            DataPath::FileDirect => Sink {
                writer: SinkWriter::Direct(Box::new(DirectWriter::new(direct::create(file()?)?)?)),
                end: SinkEnd::Direct,
            },
            DataPath::Pipe => {
                let (r, w, _) = channel::pipe()?;
                Sink {
                    writer: SinkWriter::Pipe(w),
                    end: SinkEnd::Drain(channel::drain(r, self.drain_buffer)?),
                }
            }
            DataPath::Tcp => {
                let (c, a) = channel::tcp_pair()?;
                Sink {
                    writer: SinkWriter::Tcp(c),
                    end: SinkEnd::Drain(channel::drain(a, self.drain_buffer)?),
                }
            }
        })
    }

    /// What the sink is, for the report.
    pub fn describe(&self) -> String {
        let f = self
            .file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match self.path {
            DataPath::Memory => "a discarding writer".into(),
            DataPath::File => format!("a file {f} overwritten in place (page cache)"),
            DataPath::FileFsync if self.direct => {
                format!("a new file {f}, written with O_DIRECT and fsync'd")
            }
            DataPath::FileFsync => format!("a new file {f}, fsync'd"),
            DataPath::FileDirect => format!("a new file {f}, O_DIRECT"),
            DataPath::Pipe => format!(
                "a pipe ({}) read by another thread",
                format_bytes(self.pipe_size as u64)
            ),
            DataPath::Tcp => "a loopback TCP connection read by another thread".into(),
        }
    }
}

/// A sink that discards at `rate` bytes per second (the capped sink `S` of the overlap mode).
pub(in crate::bench) fn paced(rate: u64) -> Sink {
    Sink {
        writer: SinkWriter::Paced(Pacer::new(Some(rate), Duration::ZERO)),
        end: SinkEnd::Nothing,
    }
}

/// Whether `e` says this machine cannot open what a path needs at all: a kernel without
/// networking (`socket(2)` fails with ENOSYS), without IPv4 or TCP (EAFNOSUPPORT,
/// EPROTONOSUPPORT), or without a loopback interface up (EADDRNOTAVAIL, ENETUNREACH).
pub(in crate::bench) fn is_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENOSYS
                | libc::EAFNOSUPPORT
                | libc::EPROTONOSUPPORT
                | libc::EADDRNOTAVAIL
                | libc::ENETUNREACH
        )
    )
}

/// Tries what `path` needs besides files and pipes: a loopback TCP connection for `tcp`.
pub(in crate::bench) fn probe(path: DataPath) -> io::Result<()> {
    match path {
        DataPath::Tcp => channel::tcp_pair().map(drop),
        _ => Ok(()),
    }
}

/// The paths of `paths` this machine has: one whose `probe` fails as
/// [unavailable](is_unavailable) is left out, with a note saying why; any other failure is
/// left to the measurement (which reports it).
pub(in crate::bench) fn available_paths(
    paths: &[DataPath],
    probe: impl Fn(DataPath) -> io::Result<()>,
    notes: &mut Vec<String>,
) -> Vec<DataPath> {
    paths
        .iter()
        .copied()
        .filter(|&p| match probe(p) {
            Err(e) if is_unavailable(&e) => {
                notes.push(format!(
                    "{}: skipped, not available on this machine: {e}",
                    p.as_str()
                ));
                false
            }
            _ => true,
        })
        .collect()
}

/// A link carrying `rate` bytes per second behind a send buffer ([`link`]); finishing waits
/// until everything crossed.
pub(in crate::bench) fn capped_link(rate: u64) -> Sink {
    Sink {
        writer: SinkWriter::Link(link::Link::new(rate)),
        end: SinkEnd::Nothing,
    }
}

/// Whether files in `dir` are held in memory (tmpfs, ramfs): a file written there takes as
/// much memory as its size. `false` when it cannot be told.
pub(in crate::bench) fn in_memory(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is a valid buffer for statfs to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid, writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    let t = st.f_type as i64;
    t == TMPFS_MAGIC || t == RAMFS_MAGIC
}

/// A fresh temporary path in `dir` (the file is created empty, 0600; removed when dropped).
/// Its name is the engine's (`.vfh-BOOT-PID-HEX.tmp`), so one left by a killed run is
/// removed by the next run, or save, in that directory
/// ([`remove_stale`](crate::migration::engine::target::remove_stale)).
pub(in crate::bench) fn temp_path(dir: &Path) -> io::Result<tempfile::TempPath> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(crate::migration::engine::target::temp_name());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    tempfile::TempPath::try_from_path(path)
}

/// The reading end of a source.
pub(in crate::bench) enum SourceReader {
    /// A file through the page cache.
    File(File),
    /// A file read with `O_DIRECT`.
    Direct(Box<DirectReader<File>>),
    /// A pipe's read end.
    Pipe(File),
    /// A loopback TCP connection.
    Tcp(TcpStream),
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            SourceReader::File(f) | SourceReader::Pipe(f) => f.read(buf),
            SourceReader::Direct(d) => d.read(buf),
            SourceReader::Tcp(t) => t.read(buf),
        }
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            SourceReader::File(f) | SourceReader::Pipe(f) => f.read_vectored(bufs),
            SourceReader::Direct(d) => d.read_vectored(bufs),
            SourceReader::Tcp(t) => t.read_vectored(bufs),
        }
    }
}

impl SourceReader {
    /// The source as the engine's [`Input`](crate::migration::engine::Input) named `name`
    /// (its descriptor duplicated: a file, a pipe or a socket, read as `restore -i` reads
    /// one; for `file-direct`, the file whose pages [`Source::open`] dropped from the page
    /// cache, which `restore_from` then reads with `O_DIRECT`).
    pub fn input(&self, name: &Path) -> io::Result<crate::migration::engine::Input> {
        use std::os::fd::AsFd;
        let fd = match self {
            SourceReader::File(f) | SourceReader::Pipe(f) => f.as_fd(),
            SourceReader::Tcp(t) => t.as_fd(),
            // Opened again, without `O_DIRECT`: the engine decides how to read it.
            SourceReader::Direct(_) => {
                return Ok(crate::migration::engine::Input::from_file(
                    File::open(name)?,
                    name,
                ))
            }
        };
        let file = File::from(fd.try_clone_to_owned()?);
        Ok(crate::migration::engine::Input::from_file(file, name))
    }
}

/// A source ready for one transfer: the stream in `file`, read through `path`.
pub(in crate::bench) struct Source {
    /// Where the bytes come from.
    pub reader: SourceReader,
    /// The feeding thread of a pipe or socket.
    feed: Option<JoinHandle<io::Result<u64>>>,
    /// Bytes of the file that were not in the page cache when it was opened, after reading
    /// the missing ones in (0 for `O_DIRECT`, which does not read the page cache).
    cold: u64,
}

impl Source {
    /// Opens the first `len` bytes of `file` through `path` (`file`, `file-direct`, `pipe`,
    /// `tcp`; a pipe or socket is fed by a thread). A path that reads the page cache gets the
    /// file's missing pages read in first (untimed, [`resident::warm`]): its rows are "from
    /// the page cache".
    pub fn open(path: DataPath, file: &Path, len: u64) -> io::Result<Source> {
        if path == DataPath::FileDirect {
            // From the disk: what the page cache holds of the file is dropped (untimed), so
            // that the engine's `restore_from` reads it direct as the raw loops do (where the
            // kernel cannot drop it, the block's note says the harness read the cache).
            resident::drop_cached(&File::open(file)?)?;
            return Ok(Source {
                reader: SourceReader::Direct(Box::new(DirectReader::new(direct::open(file)?)?)),
                feed: None,
                cold: 0,
            });
        }
        let f = File::open(file)?;
        let cold = resident::warm(&f, len)?.missing();
        let (reader, feed) = match path {
            DataPath::Pipe => {
                let (r, w, _) = channel::pipe()?;
                (SourceReader::Pipe(r), Some(channel::feed(f, len, w)))
            }
            DataPath::Tcp => {
                let (c, a) = channel::tcp_pair()?;
                (SourceReader::Tcp(c), Some(channel::feed(f, len, a)))
            }
            _ => (SourceReader::File(f), None),
        };
        Ok(Source { reader, feed, cold })
    }

    /// Whether the source is read with `O_DIRECT` (`file-direct`).
    pub fn is_direct(&self) -> bool {
        matches!(self.reader, SourceReader::Direct(_))
    }

    /// Bytes of the file still not in the page cache when the transfer began.
    pub fn cold(&self) -> u64 {
        self.cold
    }

    /// Waits for the feeding thread (the source was read to its end).
    pub fn finish(feed: Option<JoinHandle<io::Result<u64>>>) -> io::Result<()> {
        match feed {
            Some(h) => channel::join(h, "feeding").map(drop),
            None => Ok(()),
        }
    }

    /// Splits into the reader and what [`Source::finish`] takes.
    pub fn into_parts(self) -> (SourceReader, Option<JoinHandle<io::Result<u64>>>) {
        (self.reader, self.feed)
    }
}

/// What a source is, for the report.
pub(in crate::bench) fn describe_source(path: DataPath, file: &Path) -> String {
    match path {
        DataPath::FileDirect => format!("{} read with O_DIRECT", file.display()),
        DataPath::Pipe => format!(
            "a pipe fed by another thread (sendfile from {}, page cache)",
            file.display()
        ),
        DataPath::Tcp => format!(
            "a loopback TCP connection fed by another thread (sendfile from {}, page cache)",
            file.display()
        ),
        _ => format!("{} (page cache)", file.display()),
    }
}

/// Writes `bytes` bytes to `w`: `buf` over and over, the last time only as much of it as
/// is still missing.
pub(in crate::bench) fn write_repeated(
    w: &mut impl Write,
    buf: &[u8],
    bytes: u64,
) -> io::Result<()> {
    if buf.is_empty() && bytes > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nothing to repeat: the buffer is empty",
        ));
    }
    let mut left = bytes;
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
