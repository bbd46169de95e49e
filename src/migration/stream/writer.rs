//! Writing a stream: header, framed chunks, trailer.

use super::codec::{Compression, Encoder};
use super::format::{
    checksum, chunk_header, chunk_header_v2, ChunkKind, StreamHeader, StreamTotals,
    CHUNK_HEADER_LEN, CHUNK_HEADER_LEN_V2, MAGIC, MAX_CHUNK_LEN, MAX_HEADER_JSON, TAG_TRAILER,
    TRAILER_LEN,
};
use super::hasher::Hasher;
use super::{MigrationError, Result, StreamError};
use std::io::{self, IoSlice, Write};

/// Writes a stream: header at creation, one framed chunk per call, the trailer at
/// [`StreamWriter::finish`]. Errors of the underlying writer are returned as
/// [`MigrationError::File`] with the `name` given at creation.
///
/// [`StreamWriter::new`] writes format version 1 (every chunk raw);
/// [`StreamWriter::with_compression`] writes version 2 with the chunk encodings of a
/// [`Compression`] (zero pages elided, LZ4), or version 1 for [`Compression::None`].
pub struct StreamWriter<W: Write> {
    inner: W,
    name: String,
    max_chunk: u32,
    /// The chunk encoder (version 2), or `None` (version 1, raw chunks).
    encoder: Option<Encoder>,
    /// Over every byte but the payloads.
    hasher: Hasher,
    totals: StreamTotals,
}

impl<W: Write> std::fmt::Debug for StreamWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("name", &self.name)
            .field("max_chunk", &self.max_chunk)
            .field("encoded", &self.encoder.is_some())
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

impl<W: Write> StreamWriter<W> {
    /// Writes the header of a version 1 stream (raw chunks). `name` labels I/O errors (the
    /// file path, `stdout`...).
    pub fn new(inner: W, name: &str, header: &StreamHeader) -> Result<Self> {
        Self::with_compression(inner, name, header, Compression::None)
    }

    /// Writes the header of a stream whose chunks are encoded by `compression`: version 2,
    /// or version 1 for [`Compression::None`]. The encoder's scratch buffers (at most two of
    /// the header's `max_chunk`, plus LZ4's bound) are made on the first chunk.
    ///
    /// # Errors
    ///
    /// As [`StreamWriter::new`], and [`StreamError::CompressionUnavailable`] for LZ4 in a
    /// build without the `lz4` feature.
    pub fn with_compression(
        mut inner: W,
        name: &str,
        header: &StreamHeader,
        compression: Compression,
    ) -> Result<Self> {
        let encoder = Encoder::new(compression)?;
        if header.max_chunk == 0 || header.max_chunk > MAX_CHUNK_LEN {
            return Err(StreamError::ChunkSize {
                size: header.max_chunk.into(),
            }
            .into());
        }
        let json = serde_json::to_vec(header).map_err(StreamError::HeaderEncode)?;
        if json.len() > MAX_HEADER_JSON as usize {
            return Err(StreamError::HeaderTooLarge { len: json.len() }.into());
        }
        let mut head = Vec::with_capacity(16 + json.len() + 8);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&compression.format_version().to_le_bytes());
        head.extend_from_slice(&(json.len() as u32).to_le_bytes());
        head.extend_from_slice(&json);
        let sum = checksum(&head);
        head.extend_from_slice(&sum.to_le_bytes());
        let io = |e| MigrationError::File {
            path: name.to_string(),
            source: e,
        };
        inner.write_all(&head).map_err(io)?;
        let mut hasher = Hasher::new();
        hasher.write(&head);
        Ok(StreamWriter {
            inner,
            name: name.to_string(),
            max_chunk: header.max_chunk,
            encoder,
            hasher,
            totals: StreamTotals {
                stream_bytes: head.len() as u64,
                ..Default::default()
            },
        })
    }

    fn io(&self, e: io::Error) -> MigrationError {
        MigrationError::File {
            path: self.name.clone(),
            source: e,
        }
    }

    /// Appends one chunk (empty payloads are skipped; payloads above the header's
    /// `max_chunk` are refused), encoded as the writer's [`Compression`] says.
    pub fn write_chunk(&mut self, kind: ChunkKind, payload: &[u8]) -> Result<()> {
        self.write(kind, payload, None)
    }

    /// [`write_chunk`](Self::write_chunk) of the payload `frame[at..]`, where `frame[..at]`
    /// is room the caller kept for the chunk's header: when `at` is this writer's
    /// [`chunk_header_len`](Self::chunk_header_len) and the chunk goes out raw (version 1),
    /// the header is written into that room and the frame leaves in one contiguous write
    /// (from a page-aligned buffer, an `O_DIRECT` file can take it as it is); otherwise the
    /// payload is written as [`write_chunk`](Self::write_chunk) does. `sum`, when given, is
    /// the payload's [`checksum`], computed by the caller (on the thread that read it, while
    /// it was in that core's cache), used instead of hashing it again; the engine is the only
    /// caller.
    pub(crate) fn write_frame(
        &mut self,
        kind: ChunkKind,
        frame: &mut [u8],
        at: usize,
        sum: Option<u64>,
    ) -> Result<()> {
        debug_assert!(
            sum.is_none_or(|s| s == checksum(&frame[at..])),
            "a wrong precomputed checksum"
        );
        if self.encoder.is_some() || at != CHUNK_HEADER_LEN {
            return self.write(kind, &frame[at..], sum);
        }
        let (room, payload) = frame.split_at_mut(at);
        self.check_len(payload.len())?;
        if payload.is_empty() {
            return Ok(());
        }
        let sum = sum.unwrap_or_else(|| checksum(payload));
        let h = chunk_header(kind.tag(), payload.len() as u32, sum);
        room.copy_from_slice(&h);
        let len = payload.len();
        self.inner.write_all(frame).map_err(|e| self.io(e))?;
        self.wrote_raw(&h, len);
        Ok(())
    }

    /// Refuses a payload above the header's `max_chunk`.
    fn check_len(&self, len: usize) -> Result<()> {
        if len > self.max_chunk as usize {
            return Err(StreamError::ChunkTooLarge {
                len,
                max: self.max_chunk,
            }
            .into());
        }
        Ok(())
    }

    /// Counts a raw chunk written: its header `h` into the whole-stream checksum, `len`
    /// payload bytes into the totals.
    fn wrote_raw(&mut self, h: &[u8], len: usize) {
        self.hasher.write(h);
        self.totals.chunks += 1;
        self.totals.payload_bytes += len as u64;
        self.totals.stream_bytes += (CHUNK_HEADER_LEN + len) as u64;
    }

    fn write(&mut self, kind: ChunkKind, payload: &[u8], sum: Option<u64>) -> Result<()> {
        if payload.is_empty() {
            return Ok(());
        }
        self.check_len(payload.len())?;
        let Some(encoder) = self.encoder.as_mut() else {
            let sum = sum.unwrap_or_else(|| checksum(payload));
            let h = chunk_header(kind.tag(), payload.len() as u32, sum);
            write_all_vectored(&mut self.inner, &h, payload).map_err(|e| self.io(e))?;
            self.wrote_raw(&h, payload.len());
            return Ok(());
        };
        let (encoding, wire) = encoder.encode(payload);
        let h = chunk_header_v2(
            kind.tag(),
            encoding,
            wire.len() as u32,
            payload.len() as u32,
            checksum(wire),
        );
        let wire_len = wire.len();
        if let Err(e) = write_all_vectored(&mut self.inner, &h, wire) {
            return Err(self.io(e));
        }
        self.hasher.write(&h);
        self.totals.chunks += 1;
        self.totals.payload_bytes += payload.len() as u64;
        self.totals.stream_bytes += (CHUNK_HEADER_LEN_V2 + wire_len) as u64;
        Ok(())
    }

    /// The length of a chunk's header in this writer's format version (24 bytes for
    /// version 1, 32 for version 2): what a chunk adds to its payload on the wire.
    pub fn chunk_header_len(&self) -> usize {
        if self.encoder.is_some() {
            CHUNK_HEADER_LEN_V2
        } else {
            CHUNK_HEADER_LEN
        }
    }

    /// What has been written so far.
    pub fn totals(&self) -> StreamTotals {
        self.totals
    }

    /// Writes the trailer and flushes; returns the writer and the totals.
    pub fn finish(mut self) -> Result<(W, StreamTotals)> {
        let mut t = [0u8; TRAILER_LEN];
        t[0..4].copy_from_slice(&TAG_TRAILER);
        t[4..12].copy_from_slice(&self.totals.chunks.to_le_bytes());
        t[12..20].copy_from_slice(&self.totals.payload_bytes.to_le_bytes());
        self.hasher.write(&t[0..20]);
        let sum = self.hasher.finish();
        t[20..28].copy_from_slice(&sum.to_le_bytes());
        self.inner.write_all(&t).map_err(|e| self.io(e))?;
        self.inner.flush().map_err(|e| self.io(e))?;
        self.totals.stream_bytes += TRAILER_LEN as u64;
        self.totals.checksum = sum;
        Ok((self.inner, self.totals))
    }
}

/// `write_all` of two slices with `writev`, falling back to sequential writes.
fn write_all_vectored<W: Write>(w: &mut W, a: &[u8], b: &[u8]) -> io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() {
        match w.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n <= a.len() => a = &a[n..],
            Ok(n) => {
                b = &b[n - a.len()..];
                a = &[];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    w.write_all(b)
}
