//! Chunk encodings of format version 2: zero-page elision and LZ4, the policy that picks one
//! per chunk ([`Compression`]), and the decoder the reader runs on verified wire bytes.
//!
//! A version 2 chunk carries an encoding word (bit 0: zero runs elided, bit 1: LZ4) and the
//! chunk's device length `D` next to its wire length `N`:
//! - **raw** (0): the `D` device bytes, `N == D`;
//! - **zero runs** (bit 0): a run count `R` (u32, at least 1), `R` runs (u32 offset, u32
//!   length, both in bytes of the chunk: sorted, not overlapping, not empty, inside `D`) of
//!   zero bytes left out, then the other bytes in order (the *residue*, `D` minus the runs);
//! - **LZ4** (bit 1): an LZ4 block (the block format, no frame, no size prefix) that decodes
//!   to exactly the residue (all `D` bytes when bit 0 is clear);
//! - both: the run table, then the LZ4 block of the residue.
//!
//! Runs rather than aligned pages: a device's stream frames its memory with headers of its
//! own (the simulator's add 56 bytes before the first page), so an empty page of device
//! memory is seldom a 4 KiB-aligned page of the stream. The writer finds runs by probing one
//! 8-byte word every [`PROBE`] bytes and extending from a zero word both ways, word by word:
//! data costs one word per probe, and only the zeros themselves are read whole, once (they are
//! not hashed). Every zero run of `PROBE + 8` bytes or more is found; runs under [`MIN_RUN`]
//! are left in.
//!
//! The writer keeps an encoding only when it is shorter than the device bytes, so `N <= D`
//! always holds for what it writes; the reader bounds both by the stream's `max_chunk`.

use super::StreamError;
use crate::le::le32;
use serde::{Deserialize, Serialize};

/// The writer probes one word per this many bytes for zeros.
pub const PROBE: usize = 1024;
/// Shortest zero run the writer elides (a run costs 8 bytes in the run table).
pub const MIN_RUN: usize = 256;

/// Encoding bit: zero runs elided, a run table leads the payload.
pub(super) const ENC_ZERO: u32 = 1;
/// Encoding bit: the (residue) bytes are an LZ4 block.
pub(super) const ENC_LZ4: u32 = 2;
/// Every encoding bit this build knows.
pub(super) const ENC_KNOWN: u32 = ENC_ZERO | ENC_LZ4;

/// Most chunks [`Compression::Auto`] skips LZ4 for after a run of chunks it did not shrink.
pub const AUTO_MAX_SKIP: u32 = 64;

/// How a [`StreamWriter`](super::StreamWriter) encodes chunks. The reader needs no setting:
/// every chunk says how it is encoded.
///
/// [`Compression::None`] writes format version 1, byte for byte what earlier builds wrote;
/// the other modes write version 2 (docs/stream-format.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Compression {
    /// Every chunk raw (format version 1): no extra work per chunk, the default.
    #[default]
    None,
    /// Zero runs elided (found by a sparse word-wise probe), nothing compressed.
    Zero,
    /// Zero runs elided, the rest compressed with LZ4 whenever that makes it shorter
    /// (needs the `lz4` feature).
    Lz4,
    /// Zero runs elided, LZ4 tried and kept only when it saves at least 1/8; after a chunk
    /// it did not shrink, LZ4 is skipped for 2, 4, ... up to [`AUTO_MAX_SKIP`] chunks, so
    /// incompressible data costs about one LZ4 attempt in 65 chunks (needs the `lz4`
    /// feature).
    Auto,
}

impl Compression {
    /// Every mode, in the order the command line lists them.
    pub const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Zero,
        Compression::Lz4,
        Compression::Auto,
    ];

    /// Its name on the command line and in reports (`none`, `zero`, `lz4`, `auto`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zero => "zero",
            Compression::Lz4 => "lz4",
            Compression::Auto => "auto",
        }
    }

    /// Whether this build can write it (LZ4 needs the `lz4` feature).
    pub fn available(self) -> bool {
        match self {
            Compression::None | Compression::Zero => true,
            Compression::Lz4 | Compression::Auto => cfg!(feature = "lz4"),
        }
    }

    /// The stream format version a writer in this mode writes.
    pub fn format_version(self) -> u32 {
        match self {
            Compression::None => 1,
            _ => super::FORMAT_VERSION,
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown compression {s:?} (one of: none, zero, lz4, auto)"))
    }
}

fn word(data: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&data[at..at + 8]);
    u64::from_ne_bytes(a)
}

/// Whether 64 bytes are all zeros: eight words OR-ed (vector loads), no early exit inside.
fn line_is_zero(line: &[u8]) -> bool {
    line.chunks_exact(8).fold(0u64, |acc, w| {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        acc | u64::from_ne_bytes(a)
    }) == 0
}

/// Finds the zero runs of `data` worth eliding (at least [`MIN_RUN`] bytes, 8-byte aligned
/// within the chunk), appends them to `runs` as (offset, length); returns the bytes they
/// cover. One word per [`PROBE`] bytes is read where there is data.
pub(super) fn zero_runs(data: &[u8], runs: &mut Vec<(u32, u32)>) -> usize {
    let words_end = data.len() & !7;
    let mut covered = 0;
    // Nothing before `floor` belongs to a run still to be found.
    let mut floor = 0;
    let mut p = 0;
    while p < words_end {
        if word(data, p) != 0 {
            p += PROBE;
            continue;
        }
        let mut start = p;
        while start >= floor + 8 && word(data, start - 8) == 0 {
            start -= 8;
        }
        let mut end = p + 8;
        // Whole cache lines at a time where aligned, then words.
        while end + 64 <= words_end && line_is_zero(&data[end..end + 64]) {
            end += 64;
        }
        while end < words_end && word(data, end) == 0 {
            end += 8;
        }
        if end - start >= MIN_RUN {
            runs.push((start as u32, (end - start) as u32));
            covered += end - start;
        }
        floor = end;
        p = (end / PROBE + 1) * PROBE;
    }
    covered
}

/// The writer's side: the mode, its scratch buffers (made on first use, at most
/// `max_chunk` plus LZ4's bound each) and the auto mode's back-off.
pub(super) struct Encoder {
    mode: Compression,
    /// The zero runs of the chunk being encoded.
    runs: Vec<(u32, u32)>,
    /// Run table, then the residue gathered (the zero-run encoding's wire bytes).
    gather: Vec<u8>,
    /// Run table (when runs were elided), then the LZ4 block.
    packed: Vec<u8>,
    /// Auto: chunks left to skip LZ4 for, and consecutive chunks it did not pay on.
    skip: u32,
    misses: u32,
    /// Chunks LZ4 was tried on.
    pub(super) attempts: u64,
    #[cfg(feature = "lz4")]
    table: lz4_flex::block::CompressTable,
}

impl Encoder {
    /// An encoder for `mode`, `None` when chunks are written raw (version 1).
    pub(super) fn new(mode: Compression) -> Result<Option<Encoder>, StreamError> {
        if !mode.available() {
            return Err(StreamError::CompressionUnavailable { mode });
        }
        if mode == Compression::None {
            return Ok(None);
        }
        Ok(Some(Encoder {
            mode,
            runs: Vec::new(),
            gather: Vec::new(),
            packed: Vec::new(),
            skip: 0,
            misses: 0,
            attempts: 0,
            #[cfg(feature = "lz4")]
            table: lz4_flex::block::CompressTable::large(),
        }))
    }

    /// Encodes `data` (non-empty): the encoding word and the wire bytes (`data` itself when
    /// raw). The wire bytes are never longer than `data`.
    pub(super) fn encode<'a>(&'a mut self, data: &'a [u8]) -> (u32, &'a [u8]) {
        self.runs.clear();
        let zeros = zero_runs(data, &mut self.runs);
        let blen = 4 + 8 * self.runs.len();
        let residue = data.len() - zeros;
        let elide = !self.runs.is_empty() && blen + residue < data.len();
        self.gather.clear();
        if elide {
            self.gather.reserve(blen + residue);
            self.gather
                .extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
            for &(at, len) in &self.runs {
                self.gather.extend_from_slice(&at.to_le_bytes());
                self.gather.extend_from_slice(&len.to_le_bytes());
            }
            let mut from = 0;
            for &(at, len) in &self.runs {
                self.gather.extend_from_slice(&data[from..at as usize]);
                from = (at + len) as usize;
            }
            self.gather.extend_from_slice(&data[from..]);
        }
        let (head, body_len) = if elide {
            (blen, residue)
        } else {
            (0, data.len())
        };
        let want = body_len > 0 && self.try_lz4();
        let packed = if want {
            self.attempts += 1;
            let body = if elide { &self.gather[blen..] } else { data };
            #[cfg(feature = "lz4")]
            {
                lz4_into(&mut self.table, &mut self.packed, body, head)
            }
            #[cfg(not(feature = "lz4"))]
            {
                let _ = (body, head);
                None
            }
        } else {
            None
        };
        if let Some(n) = packed {
            let pays = match self.mode {
                Compression::Auto => n <= body_len - body_len / 8,
                _ => n < body_len,
            };
            self.record(pays);
            if pays {
                if elide {
                    self.packed[..blen].copy_from_slice(&self.gather[..blen]);
                    return (ENC_ZERO | ENC_LZ4, &self.packed[..head + n]);
                }
                return (ENC_LZ4, &self.packed[..n]);
            }
        }
        if elide {
            (ENC_ZERO, &self.gather[..])
        } else {
            (0, data)
        }
    }

    /// Whether LZ4 is to be tried on this chunk (auto: not while backing off).
    fn try_lz4(&mut self) -> bool {
        match self.mode {
            Compression::Lz4 => true,
            Compression::Auto => {
                if self.skip > 0 {
                    self.skip -= 1;
                    false
                } else {
                    true
                }
            }
            _ => false,
        }
    }

    /// Auto: a chunk LZ4 shrank resets the back-off; one it did not doubles it.
    fn record(&mut self, paid: bool) {
        if self.mode != Compression::Auto {
            return;
        }
        if paid {
            self.misses = 0;
        } else {
            self.misses = (self.misses + 1).min(16);
            self.skip = (1u32 << self.misses).min(AUTO_MAX_SKIP);
        }
    }
}

/// Compresses `body` into `packed[head..]` (grown to LZ4's bound); the block's length.
#[cfg(feature = "lz4")]
fn lz4_into(
    table: &mut lz4_flex::block::CompressTable,
    packed: &mut Vec<u8>,
    body: &[u8],
    head: usize,
) -> Option<usize> {
    let need = head + lz4_flex::block::get_maximum_output_size(body.len());
    if packed.len() < need {
        packed.resize(need, 0);
    }
    lz4_flex::block::compress_into_with_table(body, &mut packed[head..], table).ok()
}

/// Why a chunk's encoding does not decode: what is malformed (the reader wraps it with the
/// chunk's index).
pub(super) type DecodeError = &'static str;

/// Checks a run table (`table`: the `8 * R` bytes after the count) of a chunk of `len`
/// bytes against every rule; returns the residue's length.
pub(super) fn parse_runs(table: &[u8], len: usize) -> Result<usize, DecodeError> {
    let mut end = 0usize;
    let mut zeros = 0usize;
    for r in table.chunks_exact(8) {
        let (a, l) = (le32(&r[0..4]) as usize, le32(&r[4..8]) as usize);
        if l == 0 {
            return Err("an empty zero run");
        }
        if a < end {
            return Err("zero runs out of order or overlapping");
        }
        if a.checked_add(l).is_none_or(|e| e > len) {
            return Err("a zero run past the end of the chunk");
        }
        end = a + l;
        zeros += l;
    }
    Ok(len - zeros)
}

/// Decodes an LZ4 block into exactly `out` (verified wire bytes, `out` the residue's room).
pub(super) fn lz4_decode(block: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    #[cfg(feature = "lz4")]
    {
        match lz4_flex::block::decompress_into(block, out) {
            Ok(n) if n == out.len() => Ok(()),
            Ok(_) => Err("LZ4 block decodes to fewer bytes than the chunk declares"),
            Err(_) => {
                Err("LZ4 block is malformed or decodes to more bytes than the chunk declares")
            }
        }
    }
    #[cfg(not(feature = "lz4"))]
    {
        let _ = (block, out);
        Err("LZ4 block in a build without the lz4 feature")
    }
}

/// Spreads the residue held at the start of `out` over the whole of `out`, zeroing the runs
/// of `table` (checked by [`parse_runs`]). Works backwards, so no byte is overwritten before
/// it moved (a byte's place is never before its place in the residue).
pub(super) fn expand_in_place(table: &[u8], out: &mut [u8]) {
    let zeros: usize = table.chunks_exact(8).map(|r| le32(&r[4..8]) as usize).sum();
    let mut at = out.len() - zeros;
    let mut gap_end = out.len();
    for r in table.chunks_exact(8).rev() {
        let (start, len) = (le32(&r[0..4]) as usize, le32(&r[4..8]) as usize);
        let gap = start + len..gap_end;
        at -= gap.len();
        if at != gap.start {
            out.copy_within(at..at + gap.len(), gap.start);
        }
        out[start..start + len].fill(0);
        gap_end = start;
    }
}
