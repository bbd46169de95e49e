//! The saved-state stream format: a versioned, checksummed container for a device's
//! migration data (specified in `docs/stream-format.md`).
//!
//! ```text
//! header   "VFIOSTRM" | u32 version | u32 json_len | json (StreamHeader) | u64 xxh3(header)
//! chunk*   tag ("PREC"|"STOP") | u32 len | u64 xxh3(payload) | u64 xxh3(first 16 bytes) | payload
//! trailer  "TRLR" | u64 chunk_count | u64 payload_bytes | u64 xxh3(every non-payload byte before)
//! ```
//!
//! All integers are little-endian; checksums are XXH3-64. The whole-stream checksum covers
//! the header, every chunk header (which carries its payload's checksum) and the trailer's
//! totals, so it protects the payloads transitively without a second pass over them, and a
//! payload can be verified on any thread ([`PayloadCheck`]).
//!
//! [`StreamReader`] validates everything and never panics: a stream that is foreign (magic,
//! version), corrupt (any checksum), truncated, oversized (chunk length above the limit the
//! header declares, itself capped at [`MAX_CHUNK_LEN`]) or followed by extra bytes is refused
//! with [`MigrationError::Stream`]. Memory use is bounded by the caller's buffer.

use super::{MigrationError, Protocol, Result};
use crate::device::{DeviceHandle, MigFlags};
use crate::le::{le32, le64};
use serde::{Deserialize, Serialize};
use std::hash::Hasher as _;
use std::io::{self, IoSlice, Read, Write};
use twox_hash::XxHash3_64 as Xxh3;

/// The first 8 bytes of every stream.
pub const MAGIC: [u8; 8] = *b"VFIOSTRM";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest JSON header accepted.
pub const MAX_HEADER_JSON: u32 = 64 * 1024;
/// Largest chunk payload accepted (and written).
pub const MAX_CHUNK_LEN: u32 = 64 * 1024 * 1024;
/// Size of a chunk header.
pub const CHUNK_HEADER_LEN: usize = 24;
/// Size of the trailer.
pub const TRAILER_LEN: usize = 28;

/// The checksum of the format: XXH3-64 (seed 0, default secret).
///
/// The implementation picks AVX2 or SSE2 at run time, so one portable binary hashes at
/// the speed of the machine it runs on (twice the SSE2-only speed where AVX2 exists).
pub fn checksum(data: &[u8]) -> u64 {
    Xxh3::oneshot(data)
}

const TAG_PRECOPY: [u8; 4] = *b"PREC";
const TAG_STOPCOPY: [u8; 4] = *b"STOP";
const TAG_TRAILER: [u8; 4] = *b"TRLR";

/// Which phase of saving produced a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkKind {
    /// Read while the device was running (PRE_COPY).
    Precopy,
    /// Read while the device was stopped (STOP_COPY).
    Stopcopy,
}

impl ChunkKind {
    fn tag(self) -> [u8; 4] {
        match self {
            ChunkKind::Precopy => TAG_PRECOPY,
            ChunkKind::Stopcopy => TAG_STOPCOPY,
        }
    }
}

/// Who produced the stream: written as JSON in the header, checked on restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeader {
    /// Name of the source device (informational).
    pub device: String,
    /// The source's `device_api` (`vfio-pci`, ...): must equal the target's.
    pub device_api: String,
    /// The source's mdev type, for mediated devices: must equal the target's.
    #[serde(default)]
    pub mdev_type: Option<String>,
    /// The source's PCI vendor:device: must equal the target's when both are PCI.
    #[serde(default)]
    pub pci_id: Option<String>,
    /// The source's PCI subsystem vendor:device (informational).
    #[serde(default)]
    pub pci_subsystem: Option<String>,
    /// The source's bound driver (informational).
    #[serde(default)]
    pub driver: Option<String>,
    /// Migration protocol the data was saved with: must equal the target's.
    pub protocol: Protocol,
    /// The source's migration capability flags (v2 `VFIO_MIGRATION_*`).
    pub mig_flags: u64,
    /// `uname -r` of the saving machine.
    pub kernel_release: String,
    /// Version of the harness that wrote the stream.
    pub harness_version: String,
    /// The device's STOP_COPY size estimate at save time, when it offered one.
    #[serde(default)]
    pub state_size_estimate: Option<u64>,
    /// Largest chunk payload in this stream (readers size their buffers from it).
    pub max_chunk: u32,
    /// Seconds since the Unix epoch when saving started.
    #[serde(default)]
    pub created_unix: u64,
}

impl StreamHeader {
    /// A header describing `device` saved with `protocol`/`flags`, chunks of at most
    /// `max_chunk` bytes.
    pub fn for_device(
        device: &DeviceHandle,
        protocol: Protocol,
        flags: MigFlags,
        state_size_estimate: Option<u64>,
        max_chunk: u32,
    ) -> Self {
        let id = &device.info().identity;
        StreamHeader {
            device: device.name().to_string(),
            device_api: id.device_api.clone(),
            mdev_type: id.mdev_type.clone(),
            pci_id: id.pci_id.clone(),
            pci_subsystem: id.pci_subsystem.clone(),
            driver: id.driver.clone(),
            protocol,
            mig_flags: flags.0,
            kernel_release: kernel_release(),
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            state_size_estimate,
            max_chunk,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// Checks that state saved from this header's device may be loaded into `device` with
    /// `protocol`: device_api, mdev type, PCI IDs and protocol must match. The error names
    /// every mismatch.
    pub fn check_target(&self, device: &DeviceHandle, protocol: Protocol) -> Result<()> {
        self.check_identity(&device.info().identity, device.name(), protocol)
    }

    /// [`StreamHeader::check_target`] against an identity (`name` labels the target).
    pub fn check_identity(
        &self,
        id: &crate::device::DeviceIdentity,
        name: &str,
        protocol: Protocol,
    ) -> Result<()> {
        let mut bad = Vec::new();
        if self.device_api != id.device_api {
            bad.push(format!(
                "device_api: stream {:?}, target {:?}",
                self.device_api, id.device_api
            ));
        }
        if self.mdev_type != id.mdev_type {
            bad.push(format!(
                "mdev type: stream {}, target {}",
                opt(&self.mdev_type),
                opt(&id.mdev_type)
            ));
        }
        if self.pci_id.is_some() && id.pci_id.is_some() && self.pci_id != id.pci_id {
            bad.push(format!(
                "PCI ID: stream {}, target {}",
                opt(&self.pci_id),
                opt(&id.pci_id)
            ));
        }
        if self.protocol != protocol {
            bad.push(format!(
                "migration protocol: stream {}, target {}",
                self.protocol, protocol
            ));
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(MigrationError::Incompatible(format!(
                "state saved from {} cannot be restored into {}: {}",
                self.device,
                name,
                bad.join("; ")
            )))
        }
    }
}

fn opt(s: &Option<String>) -> String {
    match s {
        Some(v) => format!("{v:?}"),
        None => "none".into(),
    }
}

/// `uname -r`, or `unknown`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain bytes; uname fills it and returns 0 on success.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Totals recorded in the trailer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTotals {
    /// Number of data chunks.
    pub chunks: u64,
    /// Payload bytes (device state) in all chunks.
    pub payload_bytes: u64,
    /// Stream bytes, framing included.
    pub stream_bytes: u64,
    /// The whole-stream checksum (XXH3-64).
    pub checksum: u64,
}

fn stream_err(msg: impl Into<String>) -> MigrationError {
    MigrationError::Stream(msg.into())
}

fn chunk_header(tag: [u8; 4], len: u32, payload_sum: u64) -> [u8; CHUNK_HEADER_LEN] {
    let mut h = [0u8; CHUNK_HEADER_LEN];
    h[0..4].copy_from_slice(&tag);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&payload_sum.to_le_bytes());
    let hs = checksum(&h[0..16]);
    h[16..24].copy_from_slice(&hs.to_le_bytes());
    h
}

/// Writes a stream: header at creation, one framed chunk per call, the trailer at
/// [`StreamWriter::finish`]. Errors of the underlying writer are returned as
/// [`MigrationError::File`] with the `name` given at creation.
pub struct StreamWriter<W: Write> {
    inner: W,
    name: String,
    max_chunk: u32,
    /// Over every byte but the payloads.
    hasher: Xxh3,
    totals: StreamTotals,
}

impl<W: Write> StreamWriter<W> {
    /// Writes the header. `name` labels I/O errors (the file path, `stdout`...).
    pub fn new(mut inner: W, name: &str, header: &StreamHeader) -> Result<Self> {
        if header.max_chunk == 0 || header.max_chunk > MAX_CHUNK_LEN {
            return Err(stream_err(format!(
                "chunk size {} is outside 1..={MAX_CHUNK_LEN}",
                header.max_chunk
            )));
        }
        let json = serde_json::to_vec(header).map_err(|e| stream_err(e.to_string()))?;
        if json.len() > MAX_HEADER_JSON as usize {
            return Err(stream_err("header too large"));
        }
        let mut head = Vec::with_capacity(16 + json.len() + 8);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        head.extend_from_slice(&(json.len() as u32).to_le_bytes());
        head.extend_from_slice(&json);
        let sum = checksum(&head);
        head.extend_from_slice(&sum.to_le_bytes());
        let io = |e| MigrationError::File {
            path: name.to_string(),
            source: e,
        };
        inner.write_all(&head).map_err(io)?;
        let mut hasher = Xxh3::new();
        hasher.write(&head);
        Ok(StreamWriter {
            inner,
            name: name.to_string(),
            max_chunk: header.max_chunk,
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
    /// `max_chunk` are refused).
    pub fn write_chunk(&mut self, kind: ChunkKind, payload: &[u8]) -> Result<()> {
        if payload.is_empty() {
            return Ok(());
        }
        if payload.len() > self.max_chunk as usize {
            return Err(stream_err(format!(
                "chunk of {} bytes exceeds the stream's chunk size {}",
                payload.len(),
                self.max_chunk
            )));
        }
        let h = chunk_header(kind.tag(), payload.len() as u32, checksum(payload));
        write_all_vectored(&mut self.inner, &h, payload).map_err(|e| self.io(e))?;
        self.hasher.write(&h);
        self.totals.chunks += 1;
        self.totals.payload_bytes += payload.len() as u64;
        self.totals.stream_bytes += (CHUNK_HEADER_LEN + payload.len()) as u64;
        Ok(())
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

/// Reads and validates a stream. See the module docs for what is refused.
pub struct StreamReader<R: Read> {
    inner: R,
    header: StreamHeader,
    /// Over every byte but the payloads, as read.
    hasher: Xxh3,
    totals: StreamTotals,
    done: bool,
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
            return Err(stream_err(format!(
                "corrupt data in chunk {} (bytes {}..{} of the state): checksum mismatch",
                self.index,
                self.offset,
                self.offset + payload.len() as u64
            )));
        }
        Ok(())
    }
}

/// Reads exactly `buf.len()` bytes; a short stream is reported as truncation of `what`.
fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(stream_err(format!(
                    "truncated: the stream ends inside {what} ({got} of {} bytes)",
                    buf.len()
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(stream_err(format!("read error inside {what}: {e}"))),
        }
    }
    Ok(())
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
                Err(e) => return Err(stream_err(format!("read error in the header: {e}"))),
            }
        }
        if got == 0 {
            return Err(stream_err("empty input: not a vfio-harness state stream"));
        }
        if fixed[..got] != MAGIC[..got] {
            return Err(stream_err(
                "bad magic: this is not a vfio-harness state stream",
            ));
        }
        if got < 8 {
            return Err(stream_err("truncated: the stream ends inside the magic"));
        }
        read_exact_or(&mut inner, &mut fixed[8..16], "the header")?;
        let version = le32(&fixed[8..12]);
        if version != FORMAT_VERSION {
            return Err(stream_err(format!(
                "unsupported stream format version {version} (this harness reads version {FORMAT_VERSION})"
            )));
        }
        let jlen = le32(&fixed[12..16]);
        if jlen == 0 || jlen > MAX_HEADER_JSON {
            return Err(stream_err(format!(
                "corrupt header: metadata length {jlen} outside 1..={MAX_HEADER_JSON}"
            )));
        }
        let mut json = vec![0u8; jlen as usize + 8];
        read_exact_or(&mut inner, &mut json, "the header")?;
        let (json, sum) = json.split_at(jlen as usize);
        let mut hasher = Xxh3::new();
        hasher.write(&fixed);
        hasher.write(json);
        if hasher.finish() != le64(sum) {
            return Err(stream_err("corrupt header: checksum mismatch"));
        }
        hasher.write(sum);
        let header: StreamHeader = serde_json::from_slice(json)
            .map_err(|e| stream_err(format!("corrupt header metadata: {e}")))?;
        if header.max_chunk == 0 || header.max_chunk > MAX_CHUNK_LEN {
            return Err(stream_err(format!(
                "header declares a chunk size of {} bytes, outside 1..={MAX_CHUNK_LEN}",
                header.max_chunk
            )));
        }
        Ok(StreamReader {
            inner,
            header,
            hasher,
            totals: StreamTotals {
                stream_bytes: 16 + jlen as u64 + 8,
                ..Default::default()
            },
            done: false,
        })
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
        read_exact_or(
            &mut self.inner,
            &mut h[..4],
            "a chunk header or the trailer",
        )?;
        if h[0..4] == TAG_TRAILER {
            return self.trailer().map(|()| None);
        }
        read_exact_or(&mut self.inner, &mut h[4..], "a chunk header")?;
        if checksum(&h[0..16]) != le64(&h[16..24]) {
            return Err(stream_err(format!(
                "corrupt chunk header (chunk {n}): checksum mismatch"
            )));
        }
        let kind = match [h[0], h[1], h[2], h[3]] {
            TAG_PRECOPY => ChunkKind::Precopy,
            TAG_STOPCOPY => ChunkKind::Stopcopy,
            t => {
                return Err(stream_err(format!(
                    "unknown chunk kind {:?} (chunk {n})",
                    String::from_utf8_lossy(&t)
                )))
            }
        };
        let len = le32(&h[4..8]);
        if len == 0 || len > self.header.max_chunk {
            return Err(stream_err(format!(
                "chunk {n} declares {len} bytes, outside 1..={} (the stream's chunk size)",
                self.header.max_chunk
            )));
        }
        let len = len as usize;
        if buf.len() < len {
            return Err(stream_err(format!(
                "chunk {n} of {len} bytes does not fit the {}-byte buffer",
                buf.len()
            )));
        }
        read_exact_or(&mut self.inner, &mut buf[..len], &format!("chunk {n}"))?;
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
        read_exact_or(&mut self.inner, &mut t[4..], "the trailer")?;
        self.hasher.write(&t[0..20]);
        let sum = self.hasher.finish();
        if sum != le64(&t[20..28]) {
            return Err(stream_err("corrupt stream: whole-stream checksum mismatch"));
        }
        let (chunks, bytes) = (le64(&t[4..12]), le64(&t[12..20]));
        if chunks != self.totals.chunks || bytes != self.totals.payload_bytes {
            return Err(stream_err(format!(
                "trailer records {chunks} chunks / {bytes} bytes but the stream holds {} / {}",
                self.totals.chunks, self.totals.payload_bytes
            )));
        }
        let mut extra = [0u8; 1];
        loop {
            match self.inner.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(stream_err("unexpected data after the trailer")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(stream_err(format!("read error after the trailer: {e}"))),
            }
        }
        self.totals.stream_bytes += TRAILER_LEN as u64;
        self.totals.checksum = sum;
        self.done = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The format is XXH3-64 with seed 0: pinned to the reference implementation's value so a
    /// change of hashing crate (or of its SIMD path) can never change what streams mean.
    #[test]
    fn checksum_is_reference_xxh3_64() {
        assert_eq!(checksum(b""), 0x2D06_8005_38D3_94C2);
        // Streaming over uneven pieces equals one shot, across the short, mid and long
        // input paths (<= 240 bytes, stripes, several 1 KiB blocks).
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0usize, 1, 3, 16, 17, 128, 129, 240, 241, 1024, 1025, 4999] {
            let mut h = Xxh3::new();
            for piece in data[..len].chunks(37) {
                h.write(piece);
            }
            assert_eq!(h.finish(), checksum(&data[..len]), "len {len}");
        }
    }

    fn header(max_chunk: u32) -> StreamHeader {
        StreamHeader {
            device: "sim".into(),
            device_api: "vfio-pci".into(),
            mdev_type: Some("mtty-2".into()),
            pci_id: None,
            pci_subsystem: None,
            driver: Some("mtty".into()),
            protocol: Protocol::V2,
            mig_flags: 7,
            kernel_release: "6.12.0".into(),
            harness_version: "0.1.0".into(),
            state_size_estimate: Some(100),
            max_chunk,
            created_unix: 1,
        }
    }

    fn write(chunks: &[(ChunkKind, Vec<u8>)], max_chunk: u32) -> Vec<u8> {
        let mut w = StreamWriter::new(Vec::new(), "mem", &header(max_chunk)).unwrap();
        for (k, p) in chunks {
            w.write_chunk(*k, p).unwrap();
        }
        w.finish().unwrap().0
    }

    type Chunks = Vec<(ChunkKind, Vec<u8>)>;

    fn read_all(data: &[u8]) -> Result<(StreamHeader, Chunks)> {
        let mut r = StreamReader::new(data)?;
        let mut buf = vec![0u8; r.header().max_chunk as usize];
        let mut out = Vec::new();
        while let Some((k, n)) = r.next_chunk(&mut buf)? {
            out.push((k, buf[..n].to_vec()));
        }
        Ok((r.header().clone(), out))
    }

    /// Reads like the restore pipeline: framing on the reading side, payload checks later.
    fn read_all_deferred(data: &[u8]) -> Result<(StreamHeader, Chunks)> {
        let mut r = StreamReader::new(data)?;
        let mut buf = vec![0u8; r.header().max_chunk as usize];
        let mut out = Vec::new();
        let mut checks = Vec::new();
        while let Some((k, n, check)) = r.next_chunk_unverified(&mut buf)? {
            out.push((k, buf[..n].to_vec()));
            checks.push(check);
        }
        for (c, (_, p)) in checks.iter().zip(&out) {
            c.verify(p)?;
        }
        Ok((r.header().clone(), out))
    }

    fn chunks_strategy() -> impl Strategy<Value = Vec<(ChunkKind, Vec<u8>)>> {
        prop::collection::vec(
            (
                prop_oneof![Just(ChunkKind::Precopy), Just(ChunkKind::Stopcopy)],
                prop::collection::vec(any::<u8>(), 1..64),
            ),
            0..6,
        )
    }

    proptest! {
        #[test]
        fn round_trip(chunks in chunks_strategy()) {
            let data = write(&chunks, 64);
            let (h, got) = read_all(&data).unwrap();
            prop_assert_eq!(h, header(64));
            prop_assert_eq!(&got, &chunks);
            let (h, got) = read_all_deferred(&data).unwrap();
            prop_assert_eq!(h, header(64));
            prop_assert_eq!(got, chunks);
        }

        #[test]
        fn any_byte_flip_is_detected(chunks in chunks_strategy(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
            let mut data = write(&chunks, 64);
            let i = pos.index(data.len());
            data[i] ^= x;
            prop_assert!(matches!(read_all(&data), Err(MigrationError::Stream(_))), "flip at {} accepted", i);
            prop_assert!(matches!(read_all_deferred(&data), Err(MigrationError::Stream(_))), "flip at {} accepted (deferred)", i);
        }

        #[test]
        fn any_truncation_is_detected(chunks in chunks_strategy(), pos in any::<prop::sample::Index>()) {
            let data = write(&chunks, 64);
            let cut = pos.index(data.len());
            prop_assert!(matches!(read_all(&data[..cut]), Err(MigrationError::Stream(_))), "cut at {} accepted", cut);
            prop_assert!(matches!(read_all_deferred(&data[..cut]), Err(MigrationError::Stream(_))), "cut at {} accepted (deferred)", cut);
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = read_all(&data);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&data);
            let _ = read_all(&with_magic);
        }
    }

    #[test]
    fn clear_errors() {
        let good = write(&[(ChunkKind::Stopcopy, vec![1, 2, 3])], 16);
        let msg = |d: &[u8]| read_all(d).unwrap_err().to_string();
        assert!(msg(b"").contains("empty"));
        assert!(msg(b"ELF\x7fxxxxxxxxxxxxxxx").contains("bad magic"));
        let mut v2 = good.clone();
        v2[8] = 2;
        assert!(msg(&v2).contains("version 2"));
        assert!(msg(&good[..good.len() - 1]).contains("truncated"));
        let mut extra = good.clone();
        extra.push(0);
        assert!(msg(&extra).contains("after the trailer"));
        // Payload flip: the message names the chunk.
        let payload_at = good.len() - TRAILER_LEN - 3;
        let mut flip = good.clone();
        flip[payload_at] ^= 1;
        assert!(msg(&flip).contains("corrupt data in chunk 0"));
    }

    #[test]
    fn oversized_chunks_refused_without_allocation() {
        // A forged chunk header claiming 4 GiB with a valid header checksum.
        let mut data = write(&[], 16);
        data.truncate(data.len() - TRAILER_LEN);
        data.extend_from_slice(&chunk_header(TAG_STOPCOPY, u32::MAX, 0));
        let e = read_all(&data).unwrap_err().to_string();
        assert!(e.contains("outside 1..=16"), "{e}");
        // The writer refuses too.
        let mut w = StreamWriter::new(Vec::new(), "mem", &header(4)).unwrap();
        assert!(w.write_chunk(ChunkKind::Stopcopy, &[0; 5]).is_err());
        assert!(StreamWriter::new(Vec::new(), "mem", &header(MAX_CHUNK_LEN + 1)).is_err());
    }

    #[test]
    fn header_checks_name_every_mismatch() {
        let h = header(16);
        let mut id = crate::device::DeviceIdentity {
            device_api: "vfio-ccw".into(),
            mdev_type: Some("mtty-1".into()),
            ..Default::default()
        };
        let check = |id: &crate::device::DeviceIdentity, p| h.check_identity(id, "dst", p);
        let e = check(&id, Protocol::V1).unwrap_err().to_string();
        assert!(e.contains("device_api") && e.contains("mdev type") && e.contains("protocol"));
        id.device_api = "vfio-pci".into();
        id.mdev_type = Some("mtty-2".into());
        check(&id, Protocol::V2).unwrap();
    }
}
