//! Reading a stream: every rule of the format checked, memory bounded by the caller's buffer.

use super::ahead::Ahead;
use super::codec::{self, DecodeError, ENC_KNOWN, ENC_LZ4, ENC_ZERO};
use super::format::{
    checksum, ChunkKind, StreamHeader, StreamTotals, CHUNK_HEADER_LEN, CHUNK_HEADER_LEN_V2,
    FORMAT_VERSION, MAGIC, MAX_CHUNK_LEN, MAX_HEADER_JSON, OLDEST_FORMAT_VERSION, TAG_PRECOPY,
    TAG_STOPCOPY, TAG_TRAILER, TRAILER_LEN,
};
use super::hasher::Hasher;
use super::needed::Needed;
use super::{Result, StreamError, Within};
use crate::le::{le32, le64};
use std::io::{self, Read};
use std::sync::Arc;

/// Reads and validates a stream. See the module docs for what is refused.
pub struct StreamReader<R: Read> {
    /// The input, with the look-ahead a payload read fills ([`Ahead`]).
    inner: Ahead<R>,
    header: StreamHeader,
    /// The stream's format version (1 or 2).
    version: u32,
    /// Version 2: the wire bytes of an LZ4 chunk, verified before they are decoded (made on
    /// the first such chunk, at most `max_chunk` bytes).
    scratch: Vec<u8>,
    /// Over every byte but the payloads, as read.
    hasher: Hasher,
    totals: StreamTotals,
    /// PRE_COPY and STOP_COPY payload bytes so far.
    phase_bytes: [u64; 2],
    done: bool,
    /// Whether to read on after the trailer to prove the input ends there.
    check_end: bool,
    /// Told before every read how many bytes the read still lacks
    /// ([`StreamReader::report_needed`]).
    needed: Option<Arc<Needed>>,
    /// Whether a raw payload is hashed piece by piece as its reads return
    /// ([`StreamReader::verify_as_read`]).
    verify_as_read: bool,
}

/// A chunk's expected payload checksum, returned by [`StreamReader::next_chunk_unverified`]:
/// the payload must pass [`PayloadCheck::verify`] before it is used. The check needs nothing
/// else from the reader, so it can run on another thread.
#[derive(Clone, Copy, Debug)]
pub struct PayloadCheck {
    index: u64,
    offset: u64,
    /// `None` when the reader already verified the chunk (an encoded chunk's wire bytes are
    /// verified before they are decoded).
    expected: Option<u64>,
}

impl PayloadCheck {
    /// Verifies the payload against the checksum its chunk header carries (nothing to do
    /// for an encoded chunk: the reader verified its wire bytes before decoding them).
    pub fn verify(&self, payload: &[u8]) -> Result<()> {
        let Some(expected) = self.expected else {
            return Ok(());
        };
        if checksum(payload) != expected {
            return Err(StreamError::PayloadChecksum {
                index: self.index,
                range: self.offset..self.offset + payload.len() as u64,
            }
            .into());
        }
        Ok(())
    }
}

/// Fills `buf` from `r`, or says where the input ended or failed.
fn read_exact_or<R: Read>(
    r: &mut R,
    needed: Option<&Needed>,
    buf: &mut [u8],
    within: Within,
) -> Result<()> {
    fill(buf, within, needed, |b| r.read(b), |_| {})
}

/// [`read_exact_or`] of a payload, reading up to `more` bytes past it in the same calls
/// ([`Ahead::read_then`]).
fn read_payload<R: Read>(
    r: &mut Ahead<R>,
    needed: Option<&Needed>,
    buf: &mut [u8],
    more: usize,
    within: Within,
    hasher: Option<&mut Hasher>,
) -> Result<()> {
    let mut hasher = hasher;
    fill(
        buf,
        within,
        needed,
        |b| r.read_then(b, more),
        |p| {
            if let Some(h) = hasher.as_deref_mut() {
                h.write(p)
            }
        },
    )
}

/// Fills `buf` by calling `read` on what is still empty of it, telling `needed` before each
/// call how many bytes are still missing (and 0 once the fill ends); `piece` is given each
/// read's bytes as they arrive.
fn fill(
    buf: &mut [u8],
    within: Within,
    needed: Option<&Needed>,
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    mut piece: impl FnMut(&[u8]),
) -> Result<()> {
    let mut got = 0;
    let r = loop {
        if got == buf.len() {
            break Ok(());
        }
        if let Some(n) = needed {
            n.set(buf.len() - got);
        }
        match read(&mut buf[got..]) {
            Ok(0) => {
                break Err(StreamError::Truncated {
                    within,
                    got,
                    needed: buf.len(),
                }
                .into())
            }
            Ok(n) => {
                // A reader claiming more than it was given breaks `Read`'s contract; what it
                // claimed past `buf` is not ours to hash.
                let n = n.min(buf.len() - got);
                piece(&buf[got..got + n]);
                got += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => break Err(StreamError::Io { within, source }.into()),
        }
    };
    if let Some(n) = needed {
        n.set(0);
    }
    r
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
        read_exact_or(&mut inner, None, &mut fixed[8..16], Within::Header)?;
        let version = le32(&fixed[8..12]);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(StreamError::UnsupportedVersion { found: version }.into());
        }
        let jlen = le32(&fixed[12..16]);
        if jlen == 0 || jlen > MAX_HEADER_JSON {
            return Err(StreamError::HeaderLength { len: jlen }.into());
        }
        let mut json = vec![0u8; jlen as usize + 8];
        read_exact_or(&mut inner, None, &mut json, Within::Header)?;
        let (json, sum) = json.split_at(jlen as usize);
        let mut hasher = Hasher::new();
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
            inner: Ahead::new(inner),
            header,
            version,
            scratch: Vec::new(),
            hasher,
            totals: StreamTotals {
                stream_bytes: 16 + jlen as u64 + 8,
                ..Default::default()
            },
            phase_bytes: [0; 2],
            done: false,
            check_end: true,
            needed: None,
            verify_as_read: false,
        })
    }

    /// Stops at the verified trailer without reading on: for inputs that may stay open
    /// after the stream (a pipe, a socket), where reading on would wait for the writer.
    /// Bytes after the trailer are then left unread instead of refused.
    pub fn stop_at_trailer(mut self) -> Self {
        self.check_end = false;
        self
    }

    /// Tells `needed`, before every read of the input from here on, how many bytes that read
    /// still lacks (the rest of a chunk header, a payload or the trailer), and 0 between
    /// reads: for an input that can wait for that many at once
    /// ([`Cancellable::low_water`](crate::migration::engine::Cancellable::low_water)). Every
    /// reader between this one and the one that reads `needed` must read its own input only
    /// when it holds no bytes (see [`Needed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::sync::Arc;
    /// use vfio_harness::migration::stream::{Needed, StreamReader};
    /// use vfio_harness::migration::{driver_for, engine};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dev = vfio_harness::open(&"sim:state=64K".parse()?, &Default::default())?;
    /// let mut drv = driver_for(dev)?;
    /// let (saved, saving) = engine::save(drv.as_mut(), Vec::new(), "memory", &Default::default())?;
    ///
    /// /// Records the largest count it was told of.
    /// struct Watch<'a>(&'a [u8], Arc<Needed>, usize);
    /// impl Read for Watch<'_> {
    ///     fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
    ///         self.2 = self.2.max(self.1.get());
    ///         self.0.read(b)
    ///     }
    /// }
    /// let needed = Needed::new();
    /// let mut r = StreamReader::new(Watch(&saved[..], needed.clone(), 0))?
    ///     .report_needed(needed.clone());
    /// let mut buf = vec![0u8; r.header().max_chunk as usize];
    /// while r.next_chunk(&mut buf)?.is_some() {}
    /// assert_eq!(r.totals().payload_bytes, saving.bytes);
    /// assert_eq!(needed.get(), 0, "nothing is lacking between reads");
    /// # Ok(())
    /// # }
    /// ```
    pub fn report_needed(mut self, needed: Arc<Needed>) -> Self {
        self.needed = Some(needed);
        self
    }

    /// Verifies each raw payload as it is read, hashing what every read returns while it is
    /// still in the cache, instead of leaving the whole payload to [`PayloadCheck::verify`]
    /// (which then has nothing to do): for a reader that verifies on its own thread anyway,
    /// and waits on its input between reads (a socket, a pipe), the hashing fills those waits.
    /// The payload is refused as a whole, exactly as after the read: a corrupt one is returned
    /// as an error, never as a chunk. Encoded chunks are verified before they are decoded
    /// either way.
    ///
    /// # Examples
    ///
    /// ```
    /// use vfio_harness::migration::stream::StreamReader;
    /// use vfio_harness::migration::{driver_for, engine};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dev = vfio_harness::open(&"sim:state=64K".parse()?, &Default::default())?;
    /// let mut drv = driver_for(dev)?;
    /// let (mut saved, _) = engine::save(drv.as_mut(), Vec::new(), "memory", &Default::default())?;
    /// let last = saved.len() - 100; // inside the last payload
    /// saved[last] ^= 1;
    /// let mut r = StreamReader::new(&saved[..])?.verify_as_read();
    /// let mut buf = vec![0u8; r.header().max_chunk as usize];
    /// let err = loop {
    ///     match r.next_chunk_unverified(&mut buf) {
    ///         Ok(Some(_)) => continue,
    ///         Ok(None) => panic!("a corrupt payload was accepted"),
    ///         Err(e) => break e,
    ///     }
    /// };
    /// assert!(err.to_string().contains("checksum"), "{err}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn verify_as_read(mut self) -> Self {
        self.verify_as_read = true;
        self
    }

    /// The stream's format version: 1 (raw chunks) or 2 (encoded chunks).
    pub fn version(&self) -> u32 {
        self.version
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
        let mut h = [0u8; CHUNK_HEADER_LEN_V2];
        read_exact_or(
            &mut self.inner,
            self.needed.as_deref(),
            &mut h[..4],
            Within::ChunkHeaderOrTrailer,
        )?;
        if h[0..4] == TAG_TRAILER {
            return self.trailer().map(|()| None);
        }
        let hlen = if self.version == 1 {
            CHUNK_HEADER_LEN
        } else {
            CHUNK_HEADER_LEN_V2
        };
        let h = &mut h[..hlen];
        read_exact_or(
            &mut self.inner,
            self.needed.as_deref(),
            &mut h[4..],
            Within::ChunkHeader { index: n },
        )?;
        if checksum(&h[..hlen - 8]) != le64(&h[hlen - 8..]) {
            return Err(StreamError::ChunkHeaderChecksum { index: n }.into());
        }
        let kind = match [h[0], h[1], h[2], h[3]] {
            TAG_PRECOPY => ChunkKind::Precopy,
            TAG_STOPCOPY => ChunkKind::Stopcopy,
            tag => return Err(StreamError::UnknownChunkKind { index: n, tag }.into()),
        };
        // (encoding, wire length, device length, the wire bytes' checksum)
        let (encoding, wire, len, sum) = if self.version == 1 {
            (0, le32(&h[4..8]), le32(&h[4..8]), le64(&h[8..16]))
        } else {
            (
                le32(&h[4..8]),
                le32(&h[8..12]),
                le32(&h[12..16]),
                le64(&h[16..24]),
            )
        };
        let max = self.header.max_chunk;
        for l in [wire, len] {
            if l == 0 || l > max {
                return Err(StreamError::ChunkBeyondDeclaredSize {
                    index: n,
                    len: l,
                    max,
                }
                .into());
            }
        }
        if encoding & !ENC_KNOWN != 0 {
            return Err(StreamError::UnknownEncoding { index: n, encoding }.into());
        }
        if encoding == 0 && wire != len {
            return Err(bad(n, "a raw chunk whose wire and device lengths differ"));
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
        let (wire, len) = (wire as usize, len as usize);
        if buf.len() < len {
            return Err(StreamError::BufferTooSmall {
                index: n,
                len,
                buffer: buf.len(),
            }
            .into());
        }
        let offset = self.totals.payload_bytes;
        let expected = if encoding == 0 {
            // The next chunk's header (or the trailer's first bytes) comes in the same call;
            // an input read up to its trailer only (a pipe, a socket) is never read past the
            // shortest thing that can follow, the trailer.
            let more = if self.check_end {
                hlen
            } else {
                hlen.min(TRAILER_LEN)
            };
            let mut hasher = self.verify_as_read.then(Hasher::new);
            read_payload(
                &mut self.inner,
                self.needed.as_deref(),
                &mut buf[..len],
                more,
                Within::Payload { index: n },
                hasher.as_mut(),
            )?;
            match hasher {
                None => Some(sum),
                Some(h) if h.finish() == sum => None,
                Some(_) => {
                    return Err(StreamError::PayloadChecksum {
                        index: n,
                        range: offset..offset + len as u64,
                    }
                    .into())
                }
            }
        } else {
            self.read_encoded(n, offset, encoding, wire, sum, &mut buf[..len])?;
            None
        };
        self.hasher.write(h);
        let check = PayloadCheck {
            index: n,
            offset,
            expected,
        };
        self.totals.chunks += 1;
        self.totals.payload_bytes += len as u64;
        self.totals.stream_bytes += (hlen + wire) as u64;
        Ok(Some((kind, len, check)))
    }

    /// Reads an encoded chunk's `wire` bytes, verifies them against `sum`, and decodes them
    /// into `out` (the chunk's device length). The run table and an LZ4 block go to the
    /// scratch buffer (at most `wire` bytes); a residue that is not compressed is read straight
    /// to its places in `out` (the runs between zeroed; with a wrong checksum `out` holds
    /// what was read, and the caller gets the error, as for a raw chunk).
    fn read_encoded(
        &mut self,
        n: u64,
        offset: u64,
        encoding: u32,
        wire: usize,
        sum: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let within = Within::Payload { index: n };
        let mut table = 0..0;
        let mut residue = out.len();
        if encoding & ENC_ZERO != 0 {
            let mut count = [0u8; 4];
            if wire < count.len() {
                return Err(bad(n, "wire bytes shorter than the run count"));
            }
            read_exact_or(&mut self.inner, self.needed.as_deref(), &mut count, within)?;
            let runs = u64::from(le32(&count));
            let tlen = 4 + 8 * runs;
            if runs == 0 || tlen > wire as u64 {
                return Err(bad(n, "a run table that is empty or longer than the chunk"));
            }
            let tlen = tlen as usize;
            grow(&mut self.scratch, tlen);
            self.scratch[..4].copy_from_slice(&count);
            read_exact_or(
                &mut self.inner,
                self.needed.as_deref(),
                &mut self.scratch[4..tlen],
                within,
            )?;
            table = 4..tlen;
            residue = codec::parse_runs(&self.scratch[table.clone()], out.len())
                .map_err(|e| bad(n, e))?;
        }
        let head = if table.is_empty() { 0 } else { table.end };
        let body = wire - head;
        let mut hasher = Hasher::new();
        hasher.write(&self.scratch[..head]);
        if encoding & ENC_LZ4 == 0 {
            if body != residue {
                return Err(bad(n, "wire length disagrees with the run table"));
            }
            // Each stretch of data straight to its place: nothing moves afterwards, only
            // the runs are zeroed.
            let mut from = 0;
            let runs = self.scratch[table.clone()]
                .chunks_exact(8)
                .map(|r| (le32(&r[0..4]) as usize, le32(&r[4..8]) as usize))
                .chain(std::iter::once((out.len(), 0)));
            for (at, len) in runs {
                read_exact_or(
                    &mut self.inner,
                    self.needed.as_deref(),
                    &mut out[from..at],
                    within,
                )?;
                hasher.write(&out[from..at]);
                out[at..at + len].fill(0);
                from = at + len;
            }
            verify_sum(hasher.finish(), sum, n, offset, out.len())?;
            return Ok(());
        } else {
            if body == 0 || residue == 0 {
                return Err(bad(n, "an LZ4 chunk with nothing to decode"));
            }
            if !cfg!(feature = "lz4") {
                return Err(StreamError::Lz4Unavailable { index: n }.into());
            }
            grow(&mut self.scratch, wire);
            read_exact_or(
                &mut self.inner,
                self.needed.as_deref(),
                &mut self.scratch[head..wire],
                within,
            )?;
            hasher.write(&self.scratch[head..wire]);
            verify_sum(hasher.finish(), sum, n, offset, out.len())?;
            codec::lz4_decode(&self.scratch[head..wire], &mut out[..residue])
                .map_err(|e| bad(n, e))?;
        }
        if !table.is_empty() {
            codec::expand_in_place(&self.scratch[table], out);
        }
        Ok(())
    }

    fn trailer(&mut self) -> Result<()> {
        let mut t = [0u8; TRAILER_LEN];
        t[0..4].copy_from_slice(&TAG_TRAILER);
        read_exact_or(
            &mut self.inner,
            self.needed.as_deref(),
            &mut t[4..],
            Within::Trailer,
        )?;
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

/// A malformed encoded chunk.
fn bad(index: u64, what: DecodeError) -> crate::migration::MigrationError {
    StreamError::BadEncoding { index, what }.into()
}

/// Grows `v` to at least `len` bytes (never beyond what one chunk's wire bytes need).
fn grow(v: &mut Vec<u8>, len: usize) {
    if v.len() < len {
        v.resize(len, 0);
    }
}

/// An encoded chunk's wire checksum against its header's.
fn verify_sum(got: u64, expected: u64, index: u64, offset: u64, len: usize) -> Result<()> {
    if got != expected {
        return Err(StreamError::PayloadChecksum {
            index,
            range: offset..offset + len as u64,
        }
        .into());
    }
    Ok(())
}
