//! The simulated device's own migration data stream: framing, producer and consumer.
//!
//! Like a vendor driver's stream it is opaque to userspace but self-describing, so the
//! device can refuse foreign, truncated or corrupted data when RESUMING ends:
//!
//! ```text
//! header  : magic "VFHSIM01" | version u32 | zero u32 | seed u64 | state length u64 (32 B)
//! record* : kind u32 (1 initial, 2 dirty) | 0 u32 | offset u64 | length u64       (24 B)
//!           followed by `length` state bytes at `offset`
//! trailer : kind u32 (3) | 0 u32 | records u64 | data bytes u64 | check u64         (32 B)
//! ```
//!
//! Initial records cover the state in order; dirty records re-send ranges dirtied while the
//! device kept running in PRE_COPY. The trailer is only written at the end of STOP_COPY.
//! Integers are little-endian. `zero` is the state's zero-page fraction in 65536ths (0 when
//! it has none, so such streams are unchanged): with the seed it defines the content, and a
//! restored state takes both.
//!
//! The record data is read from, and restored into, the device's [`Content`]: generated (and,
//! when restored, checked against the generator) or held in memory (copied out and in).

use super::content::Content;
use super::gen::{mix64, Gen, ZERO_ALL};
use super::mem::AnonMem;
use crate::le::{le32, le64};
use std::sync::Arc;

/// Stream magic.
pub(crate) const MAGIC: [u8; 8] = *b"VFHSIM01";
/// Stream format version.
pub(crate) const VERSION: u32 = 1;
/// Header size.
pub(crate) const HEADER_LEN: u64 = 32;
/// Record header size.
pub(crate) const RECORD_HDR_LEN: u64 = 24;
/// Trailer size.
pub(crate) const TRAILER_LEN: u64 = 32;
/// Largest data length of one record.
pub(crate) const RECORD_MAX: u64 = 4 << 20;

const KIND_INITIAL: u32 = 1;
const KIND_DIRTY: u32 = 2;
const KIND_TRAILER: u32 = 3;

fn header_bytes(seed: u64, len: u64, zero: u32) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&zero.to_le_bytes());
    h[16..24].copy_from_slice(&seed.to_le_bytes());
    h[24..32].copy_from_slice(&len.to_le_bytes());
    h
}

fn record_bytes(kind: u32, offset: u64, len: u64) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&offset.to_le_bytes());
    h[16..24].copy_from_slice(&len.to_le_bytes());
    h
}

fn trailer_check(seed: u64, len: u64, records: u64, data: u64) -> u64 {
    mix64(seed ^ mix64(len ^ mix64(records ^ mix64(data))))
}

fn trailer_bytes(seed: u64, len: u64, records: u64, data: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..4].copy_from_slice(&KIND_TRAILER.to_le_bytes());
    h[8..16].copy_from_slice(&records.to_le_bytes());
    h[16..24].copy_from_slice(&data.to_le_bytes());
    h[24..32].copy_from_slice(&trailer_check(seed, len, records, data).to_le_bytes());
    h
}

/// Stream bytes (record headers included) needed to send `len` bytes starting at `cursor`
/// of a state of `state_len` bytes, wrapping at the end, in records of at most RECORD_MAX.
fn dirty_stream_bytes(state_len: u64, cursor: u64, len: u64) -> u64 {
    if len == 0 || state_len == 0 {
        return 0;
    }
    let first = len.min(state_len - cursor);
    let second = len - first;
    let recs = first.div_ceil(RECORD_MAX) + second.div_ceil(RECORD_MAX);
    len + recs * RECORD_HDR_LEN
}

/// Stream bytes of the initial records still to create, from `cursor` to `state_len`.
fn initial_stream_bytes(state_len: u64, cursor: u64) -> u64 {
    let left = state_len - cursor;
    left + left.div_ceil(RECORD_MAX) * RECORD_HDR_LEN
}

#[derive(Clone, Copy, Debug)]
struct Record {
    kind: u32,
    offset: u64,
    len: u64,
    /// Bytes of this record (header + data) already emitted.
    emitted: u64,
}

impl Record {
    fn remaining(&self) -> u64 {
        RECORD_HDR_LEN + self.len - self.emitted
    }
}

/// What a save-stream read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Produced {
    /// This many bytes (> 0).
    Bytes(usize),
    /// Nothing pending right now (PRE_COPY: the data fd returns ENOMSG).
    NothingPending,
    /// End of stream (STOP_COPY complete).
    End,
}

/// The producer side: the stream a device in PRE_COPY / STOP_COPY emits.
#[derive(Debug)]
pub(crate) struct SaveStream {
    content: Content,
    seed: u64,
    len: u64,
    header_emitted: u64,
    initial_cursor: u64,
    dirty_pending: u64,
    dirty_cursor: u64,
    cur: Option<Record>,
    stopped: bool,
    endless: bool,
    trailer_emitted: Option<u64>,
    records: u64,
    data_bytes: u64,
    /// Dirty-page model: bytes per second dirtied while running, and the time the stream
    /// last accounted for.
    dirty_rate: u64,
    accrued_at_ns: u128,
    /// Violation `precopy-path`: the stream ends as soon as it is stopped.
    cut_at_stop: bool,
    /// Whether a read returned data (violation `precopy-info-agrees`).
    pub(crate) read_any: bool,
    /// The first `initial_bytes` reported (violation `precopy-initial`).
    pub(crate) initial0: Option<u64>,
}

impl SaveStream {
    /// A new stream of a `len`-byte state with `seed`, whose bytes come from `content`.
    /// `now_ns` starts the dirty clock.
    pub(crate) fn new(
        seed: u64,
        content: Content,
        len: u64,
        dirty_rate: u64,
        endless: bool,
        now_ns: u128,
    ) -> Self {
        SaveStream {
            content,
            seed,
            len,
            header_emitted: 0,
            initial_cursor: 0,
            dirty_pending: 0,
            dirty_cursor: 0,
            cur: None,
            stopped: false,
            endless,
            trailer_emitted: None,
            records: 0,
            data_bytes: 0,
            dirty_rate,
            accrued_at_ns: now_ns,
            cut_at_stop: false,
            read_any: false,
            initial0: None,
        }
    }

    /// Violation `precopy-path`: nothing more is produced once stopped (the stop-copy part
    /// of the stream, and whatever pre-copy data was still unread, is dropped).
    pub(crate) fn drop_final(&mut self) {
        self.cut_at_stop = true;
    }

    /// Accounts dirtying up to `now_ns` (only while the device runs, i.e. not stopped).
    ///
    /// Dirty bytes are changes to state already sent, as `VFIO_MIG_GET_PRECOPY_INFO`
    /// defines them: they never exceed what the initial records have sent so far. A page
    /// written before its initial record is read goes out once, in that record, so what a
    /// device reports pending never exceeds its state (and headers) however long it runs
    /// before the first read.
    pub(crate) fn accrue(&mut self, now_ns: u128) {
        if self.stopped || now_ns <= self.accrued_at_ns {
            return;
        }
        let before = self.dirty_rate as u128 * self.accrued_at_ns / 1_000_000_000;
        let after = self.dirty_rate as u128 * now_ns / 1_000_000_000;
        let add = u64::try_from(after - before).unwrap_or(u64::MAX);
        self.dirty_pending = self.dirty_pending.saturating_add(add).min(self.sent());
        self.accrued_at_ns = now_ns;
    }

    /// State bytes the initial records have sent: up to the initial cursor, less what the
    /// initial record being read still holds.
    fn sent(&self) -> u64 {
        let unread = match &self.cur {
            Some(r) if r.kind == KIND_INITIAL => r.len - r.emitted.saturating_sub(RECORD_HDR_LEN),
            _ => 0,
        };
        self.initial_cursor - unread
    }

    /// Switches to stop-copy (the device stopped): no more dirtying, a trailer at the end.
    pub(crate) fn stop(&mut self, now_ns: u128) {
        self.accrue(now_ns);
        self.stopped = true;
    }

    /// `(initial_bytes, dirty_bytes)` left, in stream bytes, as `VFIO_MIG_GET_PRECOPY_INFO`
    /// reports them.
    pub(crate) fn precopy_info(&self) -> (u64, u64) {
        let mut initial =
            HEADER_LEN - self.header_emitted + initial_stream_bytes(self.len, self.initial_cursor);
        let mut dirty = dirty_stream_bytes(self.len, self.dirty_cursor, self.dirty_pending);
        if let Some(r) = &self.cur {
            if r.kind == KIND_INITIAL {
                initial += r.remaining();
            } else {
                dirty += r.remaining();
            }
        }
        (initial, dirty)
    }

    /// Stream bytes left until the end of stream if the device stopped now.
    pub(crate) fn remaining_to_end(&self) -> u64 {
        let (i, d) = self.precopy_info();
        let t = TRAILER_LEN - self.trailer_emitted.unwrap_or(0);
        i + d + t
    }

    /// The size of a complete fresh stop-copy stream of a `len`-byte state.
    pub(crate) fn full_size(len: u64) -> u64 {
        HEADER_LEN + initial_stream_bytes(len, 0) + TRAILER_LEN
    }

    fn next_record(&mut self) -> Option<Record> {
        if self.initial_cursor < self.len {
            let n = (self.len - self.initial_cursor).min(RECORD_MAX);
            let r = Record {
                kind: KIND_INITIAL,
                offset: self.initial_cursor,
                len: n,
                emitted: 0,
            };
            self.initial_cursor += n;
            return Some(r);
        }
        if self.dirty_pending == 0 && self.stopped && self.endless {
            // Protocol violation on request: STOP_COPY keeps finding "dirty" data forever.
            self.dirty_pending = self.len.clamp(1, RECORD_MAX);
        }
        if self.dirty_pending > 0 && self.len > 0 {
            let n = self
                .dirty_pending
                .min(RECORD_MAX)
                .min(self.len - self.dirty_cursor);
            let r = Record {
                kind: KIND_DIRTY,
                offset: self.dirty_cursor,
                len: n,
                emitted: 0,
            };
            self.dirty_pending -= n;
            self.dirty_cursor = (self.dirty_cursor + n) % self.len;
            return Some(r);
        }
        None
    }

    /// Produces up to `buf.len()` stream bytes into `buf`.
    pub(crate) fn produce(&mut self, buf: &mut [u8], now_ns: u128) -> Produced {
        if self.stopped && self.cut_at_stop {
            return Produced::End;
        }
        self.accrue(now_ns);
        let mut pos = 0usize;
        while pos < buf.len() {
            if self.header_emitted < HEADER_LEN {
                let h = header_bytes(self.seed, self.len, self.content.gen.zero_pages());
                let from = self.header_emitted as usize;
                let n = (h.len() - from).min(buf.len() - pos);
                buf[pos..pos + n].copy_from_slice(&h[from..from + n]);
                self.header_emitted += n as u64;
                pos += n;
                continue;
            }
            if let Some(t) = self.trailer_emitted {
                if t == TRAILER_LEN {
                    break;
                }
                let h = trailer_bytes(self.seed, self.len, self.records, self.data_bytes);
                let n = (TRAILER_LEN - t).min((buf.len() - pos) as u64) as usize;
                buf[pos..pos + n].copy_from_slice(&h[t as usize..t as usize + n]);
                self.trailer_emitted = Some(t + n as u64);
                pos += n;
                continue;
            }
            let mut r = match self.cur.take() {
                Some(r) => r,
                None => match self.next_record() {
                    Some(r) => {
                        self.records += 1;
                        self.data_bytes += r.len;
                        r
                    }
                    None if self.stopped => {
                        self.trailer_emitted = Some(0);
                        continue;
                    }
                    None => break,
                },
            };
            if r.emitted < RECORD_HDR_LEN {
                let h = record_bytes(r.kind, r.offset, r.len);
                let from = r.emitted as usize;
                let n = (h.len() - from).min(buf.len() - pos);
                buf[pos..pos + n].copy_from_slice(&h[from..from + n]);
                r.emitted += n as u64;
                pos += n;
            }
            let done = r.emitted - RECORD_HDR_LEN.min(r.emitted);
            if r.emitted >= RECORD_HDR_LEN && done < r.len {
                let n = (r.len - done).min((buf.len() - pos) as u64) as usize;
                self.content.read(r.offset + done, &mut buf[pos..pos + n]);
                r.emitted += n as u64;
                pos += n;
            }
            if r.remaining() > 0 {
                self.cur = Some(r);
            }
        }
        if pos > 0 {
            Produced::Bytes(pos)
        } else if self.stopped {
            Produced::End
        } else {
            Produced::NothingPending
        }
    }
}

#[derive(Debug)]
enum Phase {
    Header,
    RecordHdr,
    Data { kind: u32, offset: u64, left: u64 },
    Trailer,
    Done,
}

/// The consumer side: a device in RESUMING parsing and checking what userspace writes.
#[derive(Debug)]
pub(crate) struct ResumeStream {
    expect_len: u64,
    verify_seed: Option<u64>,
    phase: Phase,
    small: [u8; 32],
    have: usize,
    seed: Option<u64>,
    content: Content,
    covered: u64,
    records: u64,
    data_bytes: u64,
    total: u64,
    error: Option<String>,
}

impl ResumeStream {
    /// A parser expecting a state of `expect_len` bytes (the device's configured size); the
    /// restored bytes go into `mem` (a memory-backed device) or are checked against the
    /// stream seed's generator.
    pub(crate) fn new(
        expect_len: u64,
        verify_seed: Option<u64>,
        mem: Option<Arc<AnonMem>>,
    ) -> Self {
        ResumeStream {
            expect_len,
            verify_seed,
            phase: Phase::Header,
            small: [0; 32],
            have: 0,
            seed: None,
            content: Content {
                gen: Gen::new(0),
                mem,
            },
            covered: 0,
            records: 0,
            data_bytes: 0,
            total: 0,
            error: None,
        }
    }

    fn fail(&mut self, why: String) {
        if self.error.is_none() {
            self.error = Some(format!("at stream byte {}: {why}", self.total));
        }
    }

    /// Takes bytes into the small header buffer; returns how many were used and whether
    /// the buffer now holds `want` bytes.
    fn gather(&mut self, data: &[u8], want: usize) -> (usize, bool) {
        let n = (want - self.have).min(data.len());
        self.small[self.have..self.have + n].copy_from_slice(&data[..n]);
        self.have += n;
        (n, self.have == want)
    }

    /// Consumes written bytes. Problems are remembered and reported by [`Self::finish`]
    /// (the device accepts the writes and refuses the state when RESUMING ends).
    pub(crate) fn consume(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.error.is_none() {
            let used = match self.phase {
                Phase::Header => {
                    let (n, full) = self.gather(data, HEADER_LEN as usize);
                    if full {
                        self.have = 0;
                        self.header();
                    }
                    n
                }
                Phase::RecordHdr => {
                    let (n, full) = self.gather(data, RECORD_HDR_LEN as usize);
                    if full {
                        self.have = 0;
                        self.record_header();
                    }
                    n
                }
                Phase::Data { kind, offset, left } => {
                    let n = left.min(data.len() as u64) as usize;
                    if let Some(bad) = self.content.write(offset, &data[..n]) {
                        self.fail(format!(
                            "state byte {bad:#x} differs from what seed {} produces (corrupted data)",
                            self.seed.unwrap_or(0)
                        ));
                    }
                    let left = left - n as u64;
                    self.phase = if left == 0 {
                        Phase::RecordHdr
                    } else {
                        Phase::Data {
                            kind,
                            offset: offset + n as u64,
                            left,
                        }
                    };
                    n
                }
                Phase::Trailer => {
                    let (n, full) = self.gather(data, TRAILER_LEN as usize);
                    if full {
                        self.have = 0;
                        self.trailer();
                    }
                    n
                }
                Phase::Done => {
                    self.fail(format!(
                        "{} byte(s) after the end of the stream",
                        data.len()
                    ));
                    data.len()
                }
            };
            self.total += used as u64;
            data = &data[used..];
        }
    }

    fn header(&mut self) {
        let h = self.small;
        if h[..8] != MAGIC {
            return self.fail(format!(
                "not a simulator stream (magic {:02x?}, expected {:02x?}: foreign data)",
                &h[..8],
                MAGIC
            ));
        }
        let version = le32(&h[8..]);
        if version != VERSION {
            return self.fail(format!(
                "stream version {version} is not supported (this device speaks {VERSION})"
            ));
        }
        let zero = le32(&h[12..]);
        if zero > ZERO_ALL {
            return self.fail(format!(
                "zero-page fraction {zero}/65536 is above 1 (corrupted header)"
            ));
        }
        let seed = le64(&h[16..]);
        let len = le64(&h[24..]);
        if len != self.expect_len {
            return self.fail(format!(
                "the stream holds a state of {len} bytes but this device's state is {} bytes",
                self.expect_len
            ));
        }
        if let Some(v) = self.verify_seed {
            if v != seed {
                return self.fail(format!(
                    "the stream holds the state of seed {seed}, this device expects seed {v}"
                ));
            }
        }
        self.seed = Some(seed);
        self.content.gen = Gen::with_zero_pages(seed, zero);
        self.phase = Phase::RecordHdr;
    }

    fn record_header(&mut self) {
        let h = self.small;
        let kind = le32(&h[..4]);
        if kind == KIND_TRAILER {
            // Re-parse as the start of the trailer.
            self.have = RECORD_HDR_LEN as usize;
            self.phase = Phase::Trailer;
            return;
        }
        let offset = le64(&h[8..]);
        let len = le64(&h[16..]);
        let in_bounds = offset
            .checked_add(len)
            .is_some_and(|end| end <= self.expect_len);
        if !in_bounds || len == 0 || len > RECORD_MAX {
            return self.fail(format!(
                "record of {len} byte(s) at {offset:#x} does not fit the {}-byte state",
                self.expect_len
            ));
        }
        match kind {
            KIND_INITIAL => {
                if offset != self.covered {
                    return self.fail(format!(
                        "initial record at {offset:#x}, expected {:#x} (records out of order or missing)",
                        self.covered
                    ));
                }
                self.covered += len;
            }
            KIND_DIRTY => {}
            k => return self.fail(format!("unknown record kind {k}")),
        }
        self.records += 1;
        self.data_bytes += len;
        self.phase = Phase::Data {
            kind,
            offset,
            left: len,
        };
    }

    fn trailer(&mut self) {
        let h = self.small;
        let records = le64(&h[8..]);
        let data = le64(&h[16..]);
        let check = le64(&h[24..]);
        let seed = self.seed.unwrap_or(0);
        if check != trailer_check(seed, self.expect_len, records, data)
            || records != self.records
            || data != self.data_bytes
        {
            return self.fail(format!(
                "trailer does not match the stream (it counts {records} records / {data} bytes, \
                 received {} / {})",
                self.records, self.data_bytes
            ));
        }
        if self.covered != self.expect_len {
            return self.fail(format!(
                "the stream ended after {} of {} state bytes",
                self.covered, self.expect_len
            ));
        }
        self.phase = Phase::Done;
    }

    /// Whether the stream so far is valid but incomplete (cut short before its trailer).
    pub(crate) fn truncated(&self) -> bool {
        self.error.is_none() && !matches!(self.phase, Phase::Done)
    }

    /// Whether the stream is complete and valid.
    pub(crate) fn complete(&self) -> bool {
        self.error.is_none() && matches!(self.phase, Phase::Done)
    }

    /// The seed of the stream's header, once parsed.
    pub(crate) fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// Refuses the stream (latched: [`Self::finish`] reports `why`).
    pub(crate) fn refuse(&mut self, why: String) {
        self.fail(why);
    }

    /// Whether any restored bytes were copied into the state memory.
    pub(crate) fn wrote_memory(&self) -> bool {
        self.content.mem.is_some() && self.data_bytes > 0
    }

    /// Called when RESUMING ends: the restored content's seed and zero-page fraction, or why
    /// the state is refused.
    pub(crate) fn finish(&self) -> Result<(u64, u32), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.phase {
            Phase::Done => Ok((self.seed.unwrap_or(0), self.content.gen.zero_pages())),
            Phase::Header if self.total == 0 => Err("no state was written".into()),
            _ => Err(format!(
                "the stream is truncated: it stopped after {} byte(s), before its trailer",
                self.total
            )),
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
