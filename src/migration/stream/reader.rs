//! Reading a stream: every rule of the format checked, memory bounded by the caller's buffer.

use super::format::{
    checksum, ChunkKind, StreamHeader, StreamTotals, CHUNK_HEADER_LEN, FORMAT_VERSION, MAGIC,
    MAX_CHUNK_LEN, MAX_HEADER_JSON, TAG_PRECOPY, TAG_STOPCOPY, TAG_TRAILER, TRAILER_LEN,
};
use super::{Result, StreamError, Within};
use crate::le::{le32, le64};
use std::hash::Hasher as _;
use std::io::{self, Read};
use twox_hash::XxHash3_64 as Xxh3;

/// Reads and validates a stream. See the module docs for what is refused.
pub struct StreamReader<R: Read> {
    inner: R,
    header: StreamHeader,
    /// Over every byte but the payloads, as read.
    hasher: Xxh3,
    totals: StreamTotals,
    /// PRE_COPY and STOP_COPY payload bytes so far.
    phase_bytes: [u64; 2],
    done: bool,
    /// Whether to read on after the trailer to prove the input ends there.
    check_end: bool,
}

/// A chunk's expected payload checksum, returned by [`StreamReader::next_chunk_unverified`]:
/// the payload must pass [`PayloadCheck::verify`] before it is used. The check needs nothing
/// else from the reader, so it can run on another thread.
#[derive(Clone, Copy, Debug)]
pub struct PayloadCheck {
    index: u64,
    offset: u64,
    expected: u64,
}

impl PayloadCheck {
    /// Verifies the payload against the checksum its chunk header carries.
    pub fn verify(&self, payload: &[u8]) -> Result<()> {
        if checksum(payload) != self.expected {
            return Err(StreamError::PayloadChecksum {
                index: self.index,
                range: self.offset..self.offset + payload.len() as u64,
            }
            .into());
        }
        Ok(())
    }
}

/// Reads exactly `buf.len()` bytes; a short stream is reported as truncation of `within`.
fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], within: Within) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(StreamError::Truncated {
                    within,
                    got,
                    needed: buf.len(),
                }
                .into())
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(StreamError::Io { within, source }.into()),
        }
    }
    Ok(())
}

impl<R: Read> std::fmt::Debug for StreamReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("header", &self.header)
            .field("totals", &self.totals)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: Read> StreamReader<R> {
    /// Reads and validates the header.
    pub fn new(mut inner: R) -> Result<Self> {
        let mut fixed = [0u8; 16];
        // Magic first, so a foreign file is named as such even when it is short.
        let mut got = 0;
        while got < 8 {
            match inner.read(&mut fixed[got..8]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(StreamError::Io {
                        within: Within::Magic,
                        source,
                    }
                    .into())
                }
            }
        }
        if got == 0 {
            return Err(StreamError::Empty.into());
        }
        if fixed[..got] != MAGIC[..got] {
            return Err(StreamError::BadMagic.into());
        }
        if got < 8 {
            return Err(StreamError::Truncated {
                within: Within::Magic,
                got,
                needed: MAGIC.len(),
            }
            .into());
        }
        read_exact_or(&mut inner, &mut fixed[8..16], Within::Header)?;
        let version = le32(&fixed[8..12]);
        if version != FORMAT_VERSION {
            return Err(StreamError::UnsupportedVersion { found: version }.into());
        }
        let jlen = le32(&fixed[12..16]);
        if jlen == 0 || jlen > MAX_HEADER_JSON {
            return Err(StreamError::HeaderLength { len: jlen }.into());
        }
        let mut json = vec![0u8; jlen as usize + 8];
        read_exact_or(&mut inner, &mut json, Within::Header)?;
        let (json, sum) = json.split_at(jlen as usize);
        let mut hasher = Xxh3::new();
        hasher.write(&fixed);
        hasher.write(json);
        if hasher.finish() != le64(sum) {
            return Err(StreamError::HeaderChecksum.into());
        }
        hasher.write(sum);
        let header: StreamHeader = serde_json::from_slice(json).map_err(StreamError::Metadata)?;
        if header.max_chunk == 0 || header.max_chunk > MAX_CHUNK_LEN {
            return Err(StreamError::DeclaredChunkSize {
                size: header.max_chunk,
            }
            .into());
        }
        Ok(StreamReader {
            inner,
            header,
            hasher,
            totals: StreamTotals {
                stream_bytes: 16 + jlen as u64 + 8,
                ..Default::default()
            },
            phase_bytes: [0; 2],
            done: false,
            check_end: true,
        })
    }

    /// Stops at the verified trailer without reading on: for inputs that may stay open
    /// after the stream (a pipe, a socket), where reading on would wait for the writer.
    /// Bytes after the trailer are then left unread instead of refused.
    pub fn stop_at_trailer(mut self) -> Self {
        self.check_end = false;
        self
    }

    /// The validated header.
    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    /// Totals so far (final after [`StreamReader::next_chunk`] returned `None`).
    pub fn totals(&self) -> StreamTotals {
        self.totals
    }

    /// Reads the next chunk into `buf` (which must hold the header's `max_chunk` bytes) and
    /// verifies its checksum before returning it. `Ok(None)` after the trailer has been read
    /// and verified and the input has ended.
    pub fn next_chunk(&mut self, buf: &mut [u8]) -> Result<Option<(ChunkKind, usize)>> {
        match self.next_chunk_unverified(buf)? {
            None => Ok(None),
            Some((kind, len, check)) => {
                check.verify(&buf[..len])?;
                Ok(Some((kind, len)))
            }
        }
    }

    /// Reads the next chunk into `buf` and checks its framing (header checksum, kind,
    /// length) but not its payload: the returned [`PayloadCheck`] must pass before the
    /// payload is used. The whole-stream checksum is still verified here, at the trailer
    /// (it covers the payload checksums). `Ok(None)` after the trailer has been read and
    /// verified and the input has ended.
    pub fn next_chunk_unverified(
        &mut self,
        buf: &mut [u8],
    ) -> Result<Option<(ChunkKind, usize, PayloadCheck)>> {
        if self.done {
            return Ok(None);
        }
        let n = self.totals.chunks;
        let mut h = [0u8; CHUNK_HEADER_LEN];
        read_exact_or(&mut self.inner, &mut h[..4], Within::ChunkHeaderOrTrailer)?;
        if h[0..4] == TAG_TRAILER {
            return self.trailer().map(|()| None);
        }
        read_exact_or(
            &mut self.inner,
            &mut h[4..],
            Within::ChunkHeader { index: n },
        )?;
        if checksum(&h[0..16]) != le64(&h[16..24]) {
            return Err(StreamError::ChunkHeaderChecksum { index: n }.into());
        }
        let kind = match [h[0], h[1], h[2], h[3]] {
            TAG_PRECOPY => ChunkKind::Precopy,
            TAG_STOPCOPY => ChunkKind::Stopcopy,
            tag => return Err(StreamError::UnknownChunkKind { index: n, tag }.into()),
        };
        let len = le32(&h[4..8]);
        if len == 0 || len > self.header.max_chunk {
            return Err(StreamError::ChunkBeyondDeclaredSize {
                index: n,
                len,
                max: self.header.max_chunk,
            }
            .into());
        }
        let (slot, phase) = match kind {
            ChunkKind::Precopy => (0, "PRE_COPY"),
            ChunkKind::Stopcopy => (1, "STOP_COPY"),
        };
        self.phase_bytes[slot] += u64::from(len);
        if let Some(declared) = self.header.state_size_estimate {
            let limit = super::stop_copy_limit(declared);
            if self.phase_bytes[slot] > limit {
                return Err(StreamError::BeyondDeclaredState {
                    index: n,
                    phase,
                    bytes: self.phase_bytes[slot],
                    declared,
                    limit,
                }
                .into());
            }
        }
        let len = len as usize;
        if buf.len() < len {
            return Err(StreamError::BufferTooSmall {
                index: n,
                len,
                buffer: buf.len(),
            }
            .into());
        }
        read_exact_or(
            &mut self.inner,
            &mut buf[..len],
            Within::Payload { index: n },
        )?;
        self.hasher.write(&h);
        let check = PayloadCheck {
            index: n,
            offset: self.totals.payload_bytes,
            expected: le64(&h[8..16]),
        };
        self.totals.chunks += 1;
        self.totals.payload_bytes += len as u64;
        self.totals.stream_bytes += (CHUNK_HEADER_LEN + len) as u64;
        Ok(Some((kind, len, check)))
    }

    fn trailer(&mut self) -> Result<()> {
        let mut t = [0u8; TRAILER_LEN];
        t[0..4].copy_from_slice(&TAG_TRAILER);
        read_exact_or(&mut self.inner, &mut t[4..], Within::Trailer)?;
        self.hasher.write(&t[0..20]);
        let sum = self.hasher.finish();
        if sum != le64(&t[20..28]) {
            return Err(StreamError::StreamChecksum.into());
        }
        let (chunks, bytes) = (le64(&t[4..12]), le64(&t[12..20]));
        if chunks != self.totals.chunks || bytes != self.totals.payload_bytes {
            return Err(StreamError::TotalsMismatch {
                recorded_chunks: chunks,
                recorded_bytes: bytes,
                chunks: self.totals.chunks,
                bytes: self.totals.payload_bytes,
            }
            .into());
        }
        let mut extra = [0u8; 1];
        while self.check_end {
            match self.inner.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(StreamError::TrailingData.into()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(StreamError::Io {
                        within: Within::AfterTrailer,
                        source,
                    }
                    .into())
                }
            }
        }
        self.totals.stream_bytes += TRAILER_LEN as u64;
        self.totals.checksum = sum;
        self.done = true;
        Ok(())
    }
}
