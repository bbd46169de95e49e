//! Files opened with `O_DIRECT`: every read and write must be whole blocks, at block offsets,
//! from page-aligned memory. Writes go through the engine's
//! [`DirectWriter`](crate::migration::engine::DirectWriter) (the raw loops' page-aligned
//! buffers and the engine's raw frames after the first straight to the file; the rest
//! staged). [`DirectReader`] accepts any `read` and keeps the file's rules:
//! - a read into page-aligned memory, of whole blocks, at a block offset, with nothing
//!   staged, comes straight from the file (the raw loops' buffers);
//! - anything else goes through a page-aligned staging buffer of [`STAGE`] bytes, one copy
//!   (the stream reader's: a payload starts 24 bytes into its frame).

use crate::bench::buf::page_buf;
use crate::mem::AnonBuf;
pub(in crate::bench) use crate::migration::engine::DirectWriter;
use crate::migration::engine::{DIRECT_ALIGN as ALIGN, DIRECT_STAGE as STAGE};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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

    /// A file of a few blocks and a ragged tail, read with `O_DIRECT` where the file system
    /// allows it: an aligned read straight from the file, then small reads through the
    /// stage; the same bytes come back, and the end is the file's.
    #[test]
    fn reads_both_ways_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        let want: Vec<u8> = (0..5 * ALIGN + 77)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        std::fs::write(&p, &want).unwrap();
        let f = match open(&p) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return,
            Err(e) => panic!("{e}"),
        };
        let mut r = DirectReader::new(f).unwrap();
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
}
