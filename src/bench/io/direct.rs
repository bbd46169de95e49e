//! Files opened with `O_DIRECT`: every read and write must be whole blocks, at block offsets,
//! from page-aligned memory. [`DirectWriter`] and [`DirectReader`] accept any `write` /
//! `read` and keep the file's rules:
//! - a call on page-aligned memory, of whole blocks, at a block offset, with whole blocks
//!   or nothing staged (those are written first), goes straight to the file (the raw
//!   loops' page-aligned buffers take this way, and so do the engine's raw frames after the
//!   first: each is one page-aligned buffer ending on a block boundary of the stream);
//! - anything else goes through a page-aligned staging buffer of [`STAGE`] bytes, one copy
//!   (the stream header and the engine's first frame, the last frame and the trailer, an
//!   encoded stream's chunks, and every read: a payload starts 24 bytes into its frame).
//!
//! The writer pads the last block with zeros and truncates the file to the bytes written.

use crate::bench::buf::page_buf;
use crate::mem::AnonBuf;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Block size every `O_DIRECT` transfer is a multiple of (a page: a multiple of the logical
/// block size of every common device).
pub(in crate::bench) const ALIGN: usize = 4096;
/// Size of the staging buffer.
pub(in crate::bench) const STAGE: usize = 1 << 20;
/// Largest single direct transfer.
const MAX_IO: usize = 64 << 20;

fn aligned(p: *const u8, len: usize) -> bool {
    p as usize % ALIGN == 0 && len >= ALIGN
}

/// Opens `path` for `O_DIRECT` writing (created, truncated). `Err` with `EINVAL` when the
/// file system does not support `O_DIRECT` (tmpfs, for one).
pub(in crate::bench) fn create(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// Opens `path` for `O_DIRECT` reading.
pub(in crate::bench) fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// Writes any sequence of writes to an `O_DIRECT` file (see the module notes). Call
/// [`DirectWriter::finish`] at the end: dropping it loses the staged tail.
pub(in crate::bench) struct DirectWriter {
    file: File,
    stage: AnonBuf,
    staged: usize,
    /// Bytes the file holds (written through, or staged and flushed).
    written: u64,
}

impl DirectWriter {
    /// A writer over `file` (opened with [`create`]).
    pub fn new(file: File) -> io::Result<DirectWriter> {
        Ok(DirectWriter {
            file,
            stage: page_buf(STAGE)?,
            staged: 0,
            written: 0,
        })
    }

    fn flush_stage(&mut self, pad: bool) -> io::Result<()> {
        let n = if pad {
            self.staged.next_multiple_of(ALIGN)
        } else {
            self.staged
        };
        self.stage[self.staged..n].fill(0);
        self.file.write_all(&self.stage[..n])?;
        self.written += self.staged as u64;
        self.staged = 0;
        Ok(())
    }

    fn stage_from(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(STAGE - self.staged);
        self.stage[self.staged..self.staged + n].copy_from_slice(&buf[..n]);
        self.staged += n;
        if self.staged == STAGE {
            self.flush_stage(false)?;
        }
        Ok(n)
    }

    /// Writes the staged tail (padded to a block) and truncates the file to the bytes
    /// written; returns the file.
    pub fn finish(mut self) -> io::Result<File> {
        if self.staged > 0 {
            self.flush_stage(true)?;
        }
        self.file.set_len(self.written)?;
        Ok(self.file)
    }
}

impl Write for DirectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.staged % ALIGN == 0
            && aligned(buf.as_ptr(), buf.len())
            && self.written % ALIGN as u64 == 0
        {
            if self.staged > 0 {
                // Whole blocks: they go first, and the buffer after them at a block offset.
                self.flush_stage(false)?;
            }
            let n = (buf.len() / ALIGN * ALIGN).min(MAX_IO);
            let w = self.file.write(&buf[..n])?;
            self.written += w as u64;
            return Ok(w);
        }
        self.stage_from(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Staged as a whole: the pieces of a vectored write (a chunk header and its payload)
        // are contiguous in the file, so they cannot go to the file one by one aligned.
        let mut total = 0;
        for b in bufs {
            let mut b: &[u8] = b;
            while !b.is_empty() {
                let n = self.stage_from(b)?;
                b = &b[n..];
                total += n;
            }
        }
        Ok(total)
    }

    /// Nothing: a partial block cannot be written before the end ([`DirectWriter::finish`]).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads an `O_DIRECT` file with any sequence of reads (see the module notes).
pub(in crate::bench) struct DirectReader {
    file: File,
    stage: AnonBuf,
    pos: usize,
    len: usize,
    /// File offset of the next read from the file (a block multiple until the end).
    off: u64,
    /// A read came back short: the end of the file (the offset may be off the block grid
    /// now, where `O_DIRECT` reads are refused).
    eof: bool,
}

impl DirectReader {
    /// A reader over `file` (opened with [`open`]).
    pub fn new(file: File) -> io::Result<DirectReader> {
        Ok(DirectReader {
            file,
            stage: page_buf(STAGE)?,
            pos: 0,
            len: 0,
            off: 0,
            eof: false,
        })
    }
}

impl Read for DirectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.len {
            if self.eof {
                return Ok(0);
            }
            if aligned(buf.as_ptr(), buf.len()) && self.off % ALIGN as u64 == 0 {
                let n = (buf.len() / ALIGN * ALIGN).min(MAX_IO);
                let r = self.file.read(&mut buf[..n])?;
                self.off += r as u64;
                self.eof = r < n;
                return Ok(r);
            }
            let r = self.file.read(&mut self.stage[..STAGE])?;
            self.off += r as u64;
            self.eof = r < STAGE;
            self.pos = 0;
            self.len = r;
            if r == 0 {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.stage[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new file opened with `O_DIRECT` in a temporary directory (kept alive by the
    /// returned guard), or `None` where the file system refuses `O_DIRECT` (tmpfs).
    fn direct_file() -> Option<(tempfile::TempDir, std::path::PathBuf, File)> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        match create(&p) {
            Ok(f) => Some((dir, p, f)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
            Err(e) => panic!("{e}"),
        }
    }

    /// `O_DIRECT` where the file system allows it (not on tmpfs): the same bytes come back
    /// through both the aligned and the staged ways, and the file has exactly their length.
    #[test]
    fn round_trip_through_both_ways() {
        let Some((_dir, p, f)) = direct_file() else {
            return;
        };
        let mut w = DirectWriter::new(f).unwrap();
        let mut aligned_buf = page_buf(3 * ALIGN).unwrap();
        for (i, b) in aligned_buf.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let mut want = Vec::new();
        // Aligned, then staged pieces (a vectored header + payload), then aligned again
        // (staged, since the stage is not empty), then a ragged tail.
        w.write_all(&aligned_buf).unwrap();
        want.extend_from_slice(&aligned_buf);
        let hdr = [1u8; 24];
        crate::bench::io::tests::write_all_v(&mut w, &hdr, &aligned_buf[..5000]);
        want.extend_from_slice(&hdr);
        want.extend_from_slice(&aligned_buf[..5000]);
        w.write_all(&aligned_buf).unwrap();
        want.extend_from_slice(&aligned_buf);
        w.write_all(&[9u8; 77]).unwrap();
        want.extend_from_slice(&[9u8; 77]);
        drop(w.finish().unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), want.len() as u64);
        assert_eq!(std::fs::read(&p).unwrap(), want);
        // Read back: an aligned read, then small reads through the stage.
        let mut r = DirectReader::new(open(&p).unwrap()).unwrap();
        let mut got = Vec::new();
        let mut big = page_buf(2 * ALIGN).unwrap();
        let n = r.read(&mut big).unwrap();
        assert_eq!(n, 2 * ALIGN);
        got.extend_from_slice(&big[..n]);
        let mut small = [0u8; 1000];
        loop {
            let n = r.read(&mut small).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, want);
    }

    /// Whole blocks staged (a stream header and a first frame that realigns) go out ahead of
    /// an aligned buffer, which then goes straight to the file.
    #[test]
    fn staged_whole_blocks_let_an_aligned_buffer_through() {
        let Some((_dir, p, f)) = direct_file() else {
            return;
        };
        let mut w = DirectWriter::new(f).unwrap();
        let mut frame = page_buf(2 * ALIGN).unwrap();
        frame.fill(5);
        w.write_all(&[1u8; 330]).unwrap();
        w.write_all(&frame[..2 * ALIGN - 330]).unwrap();
        assert_eq!(w.staged, 2 * ALIGN);
        w.write_all(&frame).unwrap();
        assert_eq!((w.staged, w.written), (0, 4 * ALIGN as u64), "no copy");
        drop(w.finish().unwrap());
        let mut want = vec![1u8; 330];
        want.extend_from_slice(&frame[..2 * ALIGN - 330]);
        want.extend_from_slice(&frame);
        assert_eq!(std::fs::read(&p).unwrap(), want);
    }
}
