//! Reading a payload and the next chunk's header in one system call.
//!
//! A saved stream is a sequence of frames (header, payload). Reading each frame as the
//! format describes it costs two reads per chunk (the small header, then the payload), and a
//! `BufReader` in front turns the header read into a buffer fill that takes the first 64 KiB
//! of the payload with it, to be copied a second time. [`Ahead`] reads the payload straight
//! into the caller's buffer and, in the same `readv(2)`, the few bytes that follow it (the
//! next header, or part of the trailer) into a small look-ahead that the next read drains
//! first. With a file underneath, a stream of raw chunks then takes one system call per
//! chunk and no copy besides the kernel's (a pipe or socket may hand a chunk over in several
//! pieces; the header still comes with the last one).
//!
//! The look-ahead only fills when the reader underneath implements
//! [`Read::read_vectored`] (files, pipes, sockets, a `BufReader` whose buffer is empty); over
//! any other reader the default `read_vectored` fills the payload alone and nothing changes.

use std::io::{self, IoSliceMut, Read};

/// Most bytes read ahead: a version 2 chunk header, the longest thing that follows a payload.
pub(super) const MAX_AHEAD: usize = super::CHUNK_HEADER_LEN_V2;

/// A reader with a look-ahead of up to [`MAX_AHEAD`] bytes, filled by
/// [`Ahead::read_then`] and drained by every read before the reader underneath is asked.
pub(super) struct Ahead<R> {
    inner: R,
    ahead: [u8; MAX_AHEAD],
    /// `ahead[pos..end]` is read and not yet consumed.
    pos: usize,
    end: usize,
}

impl<R: Read> Ahead<R> {
    /// `inner` with nothing read ahead.
    pub(super) fn new(inner: R) -> Ahead<R> {
        Ahead {
            inner,
            ahead: [0; MAX_AHEAD],
            pos: 0,
            end: 0,
        }
    }

    /// Reads into `dst` like [`Read::read`]; when `dst` is read from the reader underneath,
    /// up to `more` bytes that follow it (at most [`MAX_AHEAD`]) are read in the same call and
    /// kept for the next read. Never reads more than `dst.len() + more` bytes past what was
    /// consumed, so a caller bounds how far past the stream's end it may read.
    pub(super) fn read_then(&mut self, dst: &mut [u8], more: usize) -> io::Result<usize> {
        if self.pos < self.end {
            let n = dst.len().min(self.end - self.pos);
            dst[..n].copy_from_slice(&self.ahead[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        let more = more.min(MAX_AHEAD);
        if dst.is_empty() || more == 0 {
            return self.inner.read(dst);
        }
        let want = dst.len();
        let mut bufs = [
            IoSliceMut::new(dst),
            IoSliceMut::new(&mut self.ahead[..more]),
        ];
        let n = self.inner.read_vectored(&mut bufs)?;
        // A reader may claim more than it was given only by breaking `Read`'s contract; the
        // look-ahead never exceeds what it holds.
        let extra = n.saturating_sub(want).min(more);
        self.pos = 0;
        self.end = extra;
        Ok(n.min(want))
    }

    /// Bytes read ahead and not consumed yet.
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.end - self.pos
    }
}

impl<R: Read> Read for Ahead<R> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        self.read_then(dst, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that records how many `read`/`read_vectored` calls reached it and fills
    /// vectors in order, as `readv(2)` does, up to `limit` bytes per call.
    struct Counting<'a> {
        data: &'a [u8],
        calls: usize,
        limit: usize,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.read_vectored(&mut [IoSliceMut::new(buf)])
        }
        fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut total = 0;
            for b in bufs.iter_mut() {
                let n = b.len().min(self.data.len()).min(self.limit - total);
                b[..n].copy_from_slice(&self.data[..n]);
                self.data = &self.data[n..];
                total += n;
            }
            Ok(total)
        }
    }

    #[test]
    fn the_bytes_after_a_read_come_in_the_same_call_and_are_served_next() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut r = Ahead::new(Counting {
            data: &data,
            calls: 0,
            limit: usize::MAX,
        });
        let mut payload = [0u8; 100];
        assert_eq!(r.read_then(&mut payload, 24).unwrap(), 100);
        assert_eq!(r.pending(), 24);
        assert_eq!(r.inner.calls, 1);
        let mut header = [0u8; 24];
        assert_eq!(r.read(&mut header).unwrap(), 24);
        assert_eq!(r.inner.calls, 1, "the header came from the look-ahead");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        let got: Vec<u8> = [&payload[..], &header[..], &rest[..]].concat();
        assert_eq!(got, data, "every byte once, in order");
    }

    #[test]
    fn a_short_read_fills_the_destination_first_and_reads_no_further_than_asked() {
        let data = [7u8; 50];
        let mut r = Ahead::new(Counting {
            data: &data,
            calls: 0,
            limit: 30,
        });
        let mut dst = [0u8; 40];
        assert_eq!(r.read_then(&mut dst, 8).unwrap(), 30);
        assert_eq!(r.pending(), 0);
        assert_eq!(r.read_then(&mut dst[30..], 8).unwrap(), 10);
        assert_eq!(r.pending(), 8, "exactly the look-ahead asked for");
        assert_eq!(r.inner.data.len(), 2, "nothing read past it");
    }

    #[test]
    fn a_read_smaller_than_the_look_ahead_takes_only_its_part() {
        let data: Vec<u8> = (0..64u8).collect();
        let mut r = Ahead::new(&data[..]);
        let mut first = [0u8; 8];
        // A slice's `read_vectored` fills the vectors in order, as a file's does.
        assert_eq!(r.read_then(&mut first, 32).unwrap(), 8);
        let mut small = [0u8; 5];
        assert_eq!(r.read(&mut small).unwrap(), 5);
        assert_eq!(small, [8, 9, 10, 11, 12]);
        assert_eq!(r.pending(), 27);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, (13..64u8).collect::<Vec<_>>());
    }
}
