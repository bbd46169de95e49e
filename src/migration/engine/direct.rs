//! Writing a stream with `O_DIRECT`: the bytes go from the engine's buffers to the disk, not
//! through the page cache.
//!
//! A durable save (`save -o FILE`, fsync'd before it counts as done) gains nothing from the
//! page cache: each byte would be copied into it, written back by the kernel's flusher and
//! then waited for by the `fsync`. Written with `O_DIRECT` there is no copy and no
//! writeback, the `fsync` has only metadata left, and a state of tens of GiB does not push
//! the host's cached files out of memory. On a 2-vCPU Xeon guest the 4 GiB durable save
//! took 1.6 to 1.9 s at about 1 CPU-s written this way, against 4 to 10 s at about 8 CPU-s
//! through the page cache (hw-notes/bench.md, "Session 25").
//!
//! `O_DIRECT` transfers must be whole blocks, at block offsets of the file, from aligned
//! memory. [`DirectWriter`] takes any sequence of writes and keeps those rules:
//! - a write of page-aligned memory, whole blocks long, landing at a block offset, with
//!   nothing staged (or whole blocks, which are written first) goes straight to the file:
//!   the engine's raw frames after the first do (each is one page-aligned buffer and ends
//!   on a block boundary of the stream);
//! - anything else is copied into a page-aligned staging buffer of [`DIRECT_STAGE`] bytes,
//!   written when full: the stream header and first frame, an encoded stream's chunks, the
//!   trailer. The stage, and the chunk buffers of [`save_to`](super::save_to)'s direct
//!   saves ([`Options::huge_buffers`](super::Options::huge_buffers)), are in transparent
//!   huge pages, so each write is one disk request rather than two (`hw-notes/bench.md`,
//!   "Session 28");
//! - at the end, a tail shorter than a block is written after turning `O_DIRECT` off
//!   (into the page cache, made durable by the same `fsync`);
//! - a write the file refuses (`EINVAL`: a device whose blocks are larger than
//!   [`DIRECT_ALIGN`]) turns `O_DIRECT` off and the rest of the stream is written
//!   through the page cache, as without this writer.

use super::buf::AlignedBuf;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Block size every direct write is a multiple of, and the alignment of its memory and
/// file offset: a page, a multiple of the logical block size of common disks (512 and
/// 4096 bytes).
pub const DIRECT_ALIGN: usize = 4096;

/// Size of [`DirectWriter`]'s staging buffer.
pub const DIRECT_STAGE: usize = 1 << 20;

/// Largest single direct write.
const MAX_IO: usize = 64 << 20;

/// Turns `O_DIRECT` on for `file`, a regular file. `Ok(false)` (and nothing changed) where
/// the file cannot take it: not a regular file (on a pipe the flag means packet mode), or
/// a file system without direct I/O (`EINVAL`).
///
/// # Errors
///
/// `fstat(2)` or `fcntl(2)` failed otherwise.
pub fn enable_direct(file: &File) -> io::Result<bool> {
    if !file.metadata()?.file_type().is_file() {
        return Ok(false);
    }
    match set_direct(file.as_fd(), true) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The status flags of `fd`'s open file description (`fcntl(F_GETFL)`).
pub(super) fn status_flags(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL on a descriptor the borrow keeps open; it only reads the flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags)
}

/// Whether `fd`'s open file description has `O_DIRECT` set.
pub(super) fn has_direct(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(status_flags(fd)? & libc::O_DIRECT != 0)
}

/// Sets or clears `O_DIRECT` on `fd`'s open file description.
pub(super) fn set_direct(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = status_flags(fd)?;
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: F_SETFL on the same descriptor, with its own flags and O_DIRECT changed.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The file offset of `fd` (`lseek(fd, 0, SEEK_CUR)`).
pub(super) fn offset(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: lseek on a descriptor the borrow keeps open; SEEK_CUR with 0 only reads the
    // offset.
    let at = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_CUR) };
    u64::try_from(at).map_err(|_| io::Error::last_os_error())
}

/// Whether `e` is the file refusing a direct transfer (rather than failing it).
pub(super) fn refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Writes any sequence of writes to a file opened (or switched, [`enable_direct`]) for
/// `O_DIRECT`, keeping its alignment rules (see the module docs). Call
/// [`DirectWriter::finish`] at the end: dropping the writer loses what is staged.
///
/// ```
/// use std::io::{Read, Seek, Write};
/// use vfio_harness::migration::engine::{enable_direct, DirectWriter};
///
/// let mut file = tempfile::tempfile()?;
/// let direct = enable_direct(&file)?; // false where the file system has no direct I/O
/// let mut w = DirectWriter::new(&file)?;
/// w.write_all(b"a header of any length")?;
/// w.write_all(&vec![7; 3 << 20])?;
/// assert_eq!(w.is_direct(), direct);
/// w.finish()?; // the staged tail
/// let mut back = Vec::new();
/// file.rewind()?;
/// file.read_to_end(&mut back)?;
/// assert_eq!(back.len(), 22 + (3 << 20));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct DirectWriter<W> {
    inner: W,
    stage: AlignedBuf,
    staged: usize,
    /// The file offset the staged bytes (or the next write) land at.
    at: u64,
    /// Whether the file is (still) written with `O_DIRECT`.
    direct: bool,
}

impl<W> std::fmt::Debug for DirectWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter")
            .field("staged", &self.staged)
            .field("at", &self.at)
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}

impl<W: Write + AsFd> DirectWriter<W> {
    /// A writer over `inner`, whose writes land in its file from the current offset.
    /// Whether they are direct is read from the descriptor's flags.
    ///
    /// # Errors
    ///
    /// `lseek(2)` or `fcntl(2)` failed (`ESPIPE`: not a file).
    pub fn new(inner: W) -> io::Result<Self> {
        let fd = inner.as_fd();
        let at = offset(fd)?;
        let direct = has_direct(fd)?;
        Ok(DirectWriter {
            inner,
            stage: AlignedBuf::huge(DIRECT_STAGE).map_err(super::buf::io_error)?,
            staged: 0,
            at,
            direct,
        })
    }

    /// Whether the writes still go to the file with `O_DIRECT` (false from the start for a
    /// file without it, and after the file refused a direct write or [`finish`] wrote a
    /// partial block).
    ///
    /// [`finish`]: DirectWriter::finish
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Writes what is staged (a tail shorter than a block with `O_DIRECT` turned off) and
    /// returns the writer it wrapped.
    ///
    /// # Errors
    ///
    /// The write, or turning `O_DIRECT` off, failed.
    pub fn finish(mut self) -> io::Result<W> {
        if self.staged % DIRECT_ALIGN != 0 {
            self.buffered()?;
        }
        self.flush_stage()?;
        Ok(self.inner)
    }

    /// Turns `O_DIRECT` off: the rest goes through the page cache.
    fn buffered(&mut self) -> io::Result<()> {
        if self.direct {
            set_direct(self.inner.as_fd(), false)?;
            self.direct = false;
        }
        Ok(())
    }

    /// Writes the staged bytes: directly while whole blocks remain at a block offset,
    /// through the page cache otherwise. On an error the stage keeps what was not written.
    fn flush_stage(&mut self) -> io::Result<()> {
        let mut done = 0;
        let r = self.write_stage(&mut done);
        self.stage.copy_within(done..self.staged, 0);
        self.staged -= done;
        r
    }

    /// [`flush_stage`](Self::flush_stage)'s loop, counting what it wrote in `done`.
    fn write_stage(&mut self, done: &mut usize) -> io::Result<()> {
        while *done < self.staged {
            let rest = &self.stage[*done..self.staged];
            let direct_ok = self.at % DIRECT_ALIGN as u64 == 0 && rest.len() % DIRECT_ALIGN == 0;
            if self.direct && !direct_ok {
                self.buffered()?;
                continue;
            }
            match self.inner.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *done += n;
                    self.at += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && refused(&e) => self.buffered()?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Copies what fits of `buf` into the stage, writing a full stage first: a failed write
    /// returns before any byte of `buf` is taken, so a caller retrying `buf` neither
    /// repeats nor loses bytes.
    fn stage_from(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.staged == DIRECT_STAGE {
            self.flush_stage()?;
        }
        let n = buf.len().min(DIRECT_STAGE - self.staged);
        self.stage[self.staged..self.staged + n].copy_from_slice(&buf[..n]);
        self.staged += n;
        Ok(n)
    }
}

impl<W: Write + AsFd> Write for DirectWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.direct {
            // What was staged before O_DIRECT went off goes first.
            self.flush_stage()?;
            let n = self.inner.write(buf)?;
            self.at += n as u64;
            return Ok(n);
        }
        let whole = buf.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        if whole > 0
            && buf.as_ptr() as usize % DIRECT_ALIGN == 0
            && self.staged % DIRECT_ALIGN == 0
            && self.at % DIRECT_ALIGN as u64 == 0
        {
            // Whole blocks staged go first; the buffer lands after them at a block offset.
            self.flush_stage()?;
            if self.direct {
                match self.inner.write(&buf[..whole.min(MAX_IO)]) {
                    Ok(n) => {
                        self.at += n as u64;
                        return Ok(n);
                    }
                    Err(e) if refused(&e) => self.buffered()?,
                    Err(e) => return Err(e),
                }
            }
            return self.write(buf);
        }
        self.stage_from(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.direct {
            self.flush_stage()?;
            let n = self.inner.write_vectored(bufs)?;
            self.at += n as u64;
            return Ok(n);
        }
        // Staged as a whole: the pieces (a chunk header and its payload) are contiguous in
        // the file, so they cannot go to it one by one at block offsets.
        let mut total = 0;
        for b in bufs {
            let mut b: &[u8] = b;
            while !b.is_empty() {
                let n = match self.stage_from(b) {
                    Ok(n) => n,
                    Err(e) if total == 0 => return Err(e),
                    // What was taken counts; the stage keeps it, and the next call that
                    // writes it meets the error again.
                    Err(_) => return Ok(total),
                };
                b = &b[n..];
                total += n;
            }
        }
        Ok(total)
    }

    /// Flushes `inner` once `O_DIRECT` is off; with it on, a partial block cannot be
    /// written before the end ([`DirectWriter::finish`]) and nothing is done.
    fn flush(&mut self) -> io::Result<()> {
        if self.direct {
            return Ok(());
        }
        self.flush_stage()?;
        self.inner.flush()
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
