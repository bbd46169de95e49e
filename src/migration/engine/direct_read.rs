//! Reading a stream file with `O_DIRECT`: from the disk into the engine's memory, not
//! through the page cache.
//!
//! A saved state the page cache does not hold (written with `O_DIRECT` by a durable save,
//! or dropped from memory since) is read from the disk either way. Through the page cache,
//! every page is first allocated and filled by the kernel and then copied out; on the
//! 2-vCPU EPYC guest of `hw-notes/bench.md` ("Session 26") `dd bs=1M` read a cold 4 GiB file
//! at 0.63-0.85 GB/s that way and at 1.3-2.2 GB/s with `O_DIRECT`, and a restore of tens of
//! GiB read through the page cache pushes the host's cached files out of memory.
//! [`restore_from`](super::restore_from) reads such a file with a [`DirectReader`].
//!
//! `O_DIRECT` transfers must be whole blocks, at block offsets of the file, into aligned
//! memory. [`DirectReader`] takes any sequence of reads (a stream's headers, a payload that
//! starts 24 or 32 bytes into its frame) and keeps those rules:
//! - a read into page-aligned memory of at least a block, at a block offset, with nothing
//!   staged, is served straight from the file (whole blocks of it);
//! - anything else is served from a page-aligned staging buffer of
//!   [`DIRECT_STAGE`](super::DIRECT_STAGE) bytes, filled with one direct read of the
//!   file (one copy, which the page cache would have made as well); the stage is in
//!   transparent huge pages ([`crate::mem::AnonBuf::huge`]), so each of its reads is one
//!   disk request (1 MiB of scattered 4 KiB pages is 256 segments, more than virtio-blk's
//!   254 per request: two requests, which read at half the rate on the guest of
//!   `hw-notes/bench.md`, "Session 28");
//! - a read that comes back short (the end of the file, whose last block is partial) or
//!   that the file refuses (`EINVAL`: a device whose blocks are larger than
//!   [`DIRECT_ALIGN`](super::DIRECT_ALIGN)) turns `O_DIRECT` off, and the rest is read
//!   through the page cache from where the file's offset stands.

use super::buf::AlignedBuf;
use super::direct::{has_direct, offset, refused, set_direct, DIRECT_ALIGN, DIRECT_STAGE};
use std::io::{self, IoSliceMut, Read};
use std::os::fd::AsFd;

/// Largest single direct read straight into the caller's memory.
const MAX_IO: usize = 64 << 20;

/// Whether `buf` may be read into directly: page-aligned and at least a block long.
fn aligned(buf: &[u8]) -> bool {
    buf.as_ptr() as usize % DIRECT_ALIGN == 0 && buf.len() >= DIRECT_ALIGN
}

/// Reads any sequence of reads from a file opened (or switched,
/// [`enable_direct`](super::enable_direct)) for `O_DIRECT`, keeping its alignment rules
/// (see the module docs). Without `O_DIRECT` on the descriptor it reads through it as it is.
///
/// ```
/// use std::io::Read;
/// use vfio_harness::migration::engine::{enable_direct, DirectReader};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state");
/// std::fs::write(&path, vec![7; (3 << 20) + 100])?;
/// let file = std::fs::File::open(&path)?;
/// let direct = enable_direct(&file)?; // false where the file system has no direct I/O
/// let mut r = DirectReader::new(&file)?;
/// assert_eq!(r.is_direct(), direct);
/// let mut head = [0u8; 24];
/// r.read_exact(&mut head)?; // a header, through the stage
/// let mut rest = Vec::new();
/// r.read_to_end(&mut rest)?;
/// assert_eq!(head.len() + rest.len(), (3 << 20) + 100);
/// assert!(!r.is_direct()); // the partial last block ended the direct reads
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct DirectReader<R> {
    inner: R,
    stage: AlignedBuf,
    /// Next byte of the stage to hand out, and how many it holds.
    pos: usize,
    len: usize,
    /// Whether the file is (still) read with `O_DIRECT`. While it is, the file's offset is
    /// on the block grid: [`new`](Self::new) starts there, and every direct read either
    /// returns the whole blocks asked for or ends the direct reads.
    direct: bool,
}

impl<R> std::fmt::Debug for DirectReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectReader")
            .field("staged", &(self.len - self.pos))
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}

impl<R: Read + AsFd> DirectReader<R> {
    /// A reader over `inner`, reading its file from the current offset. Whether the reads
    /// are direct is read from the descriptor's flags; an offset off the block grid reads
    /// through the page cache (`O_DIRECT` turned off).
    ///
    /// # Errors
    ///
    /// `lseek(2)` or `fcntl(2)` failed (`ESPIPE`: not a file).
    pub fn new(inner: R) -> io::Result<Self> {
        let fd = inner.as_fd();
        let mut direct = has_direct(fd)?;
        if direct && offset(fd)? % DIRECT_ALIGN as u64 != 0 {
            set_direct(fd, false)?;
            direct = false;
        }
        Ok(DirectReader {
            inner,
            stage: AlignedBuf::huge(DIRECT_STAGE).map_err(super::buf::io_error)?,
            pos: 0,
            len: 0,
            direct,
        })
    }

    /// Whether the reads still come from the file with `O_DIRECT` (false from the start for
    /// a file without it, and after a short or refused read).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// The reader it wraps.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Returns the reader it wrapped (what is staged is lost).
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// One read into `buf` from `inner`. With `O_DIRECT` (`*direct`), a read the file refuses is
/// made again through the page cache, and one that comes back short (the end of the file:
/// its offset is off the block grid now) ends the direct reads; either turns `O_DIRECT` off.
fn read_once<R: Read + AsFd>(
    inner: &mut R,
    direct: &mut bool,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match inner.read(buf) {
            Err(e) if *direct && refused(&e) => {
                set_direct(inner.as_fd(), false)?;
                *direct = false;
            }
            Err(e) => return Err(e),
            Ok(r) => {
                if *direct && r < buf.len() {
                    set_direct(inner.as_fd(), false)?;
                    *direct = false;
                }
                return Ok(r);
            }
        }
    }
}

impl<R: Read + AsFd> Read for DirectReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_vectored(&mut [IoSliceMut::new(buf)])
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        if self.pos == self.len {
            if !self.direct {
                return self.inner.read_vectored(bufs);
            }
            let Some(first) = bufs.iter_mut().find(|b| !b.is_empty()) else {
                return Ok(0);
            };
            if aligned(first) {
                let n = (first.len() / DIRECT_ALIGN * DIRECT_ALIGN).min(MAX_IO);
                return read_once(&mut self.inner, &mut self.direct, &mut first[..n]);
            }
            self.pos = 0;
            self.len = 0;
            let r = read_once(
                &mut self.inner,
                &mut self.direct,
                &mut self.stage[..DIRECT_STAGE],
            )?;
            if r == 0 {
                return Ok(0);
            }
            self.len = r;
        }
        let mut done = 0;
        for b in bufs.iter_mut() {
            let n = b.len().min(self.len - self.pos);
            b[..n].copy_from_slice(&self.stage[self.pos..self.pos + n]);
            self.pos += n;
            done += n;
            if self.pos == self.len {
                break;
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
#[path = "direct_read_tests.rs"]
mod tests;
