//! Reading a device: the source side of save and migrate, driven through a
//! [`SourceSession`] (its pre-copy rounds and STOP_COPY read into the engine's buffers), with
//! the engine's pre-copy policy deciding when to stop.

use super::precopy::{PrecopyEnd, Switchover};
use super::report::secs;
use super::turns;
use super::{AlignedBuf, Options, P2pHook, P2pPoint, P2pStep};
use crate::device::MigFlags;
use crate::migration::session::SourceSession;
use crate::migration::stream::{checksum, ChunkKind};
use crate::migration::{MigrationError, Result};
use std::time::Instant;

/// What the engine's side of the reading did (the bytes, chunks, rounds and times are in
/// the session's report).
#[derive(Clone, Debug, Default)]
pub(super) struct SourceStats {
    pub(super) rounds: u32,
    pub(super) converged: bool,
    pub(super) precopy_seconds: f64,
    /// Why pre-copy ended.
    pub(super) precopy_end: PrecopyEnd,
    /// The downtime predicted just before the device stopped, seconds (when a pre-copy
    /// round measured a drain rate).
    pub(super) predicted_downtime: Option<f64>,
}

/// The session of an engine operation on `drv`'s device: reading in `chunk`-byte pieces,
/// checking `opts.cancel` before every read, recovering nothing itself (the operation
/// recovers its devices).
pub(super) fn source_session<'d>(
    drv: &'d mut dyn crate::migration::MigrationDriver,
    opts: &Options,
    chunk: usize,
) -> Result<SourceSession<'d>> {
    let s = SourceSession::unguarded(drv).with_chunk_size(chunk)?;
    Ok(match &opts.cancel {
        Some(c) => s.with_cancel(c.clone()),
        None => s,
    })
}

/// Where a transfer puts each chunk in its buffers, and how long it lets it be.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Framing {
    /// Bytes kept free before each payload for its header (0: nothing frames the chunk), so
    /// that header and payload leave in one contiguous write.
    pub(super) head: usize,
    /// The stream position of the first chunk's header, when every frame is to end on a
    /// [`BLOCK`] boundary of the stream: a chunk after a stream position off the grid is
    /// read that much shorter, and every later full frame (header and payload: one buffer)
    /// then starts and ends on the grid, where an `O_DIRECT` writer takes it straight from
    /// the buffer. `None` when frame lengths are not known in advance (encoded chunks) or
    /// there is no stream (in-process migrate).
    pub(super) align_from: Option<u64>,
}

/// The block size frames are aligned to ([`Framing::align_from`]): a page, a multiple of the
/// logical block size of every common storage device.
pub(super) const BLOCK: u64 = 4096;

impl Framing {
    /// The most payload bytes the next chunk may have at stream position `pos`, in a buffer
    /// of `chunk` bytes.
    fn room(&self, chunk: usize, pos: Option<u64>) -> usize {
        let full = chunk - self.head;
        match pos {
            Some(p) if chunk as u64 % BLOCK == 0 => {
                let off = (p % BLOCK) as usize;
                if off < full {
                    full - off
                } else {
                    full
                }
            }
            _ => full,
        }
    }
}

/// Save's and migrate's transfer: `source` read ([`Reader`]) into `chunk`-byte buffers as
/// `framing` lays them out, and for every chunk, in stream order: the cancel check, `put`
/// (into a stream, or a destination device) with the frame (`framing.head` bytes of room,
/// then the payload), where its payload starts, and the payload's checksum when computed,
/// and progress against the source's estimate.
///
/// With `opts.overlap` two threads share the source
/// ([`turns`](super::turns)): each reads a chunk and hashes it (with `hash`) on the core that
/// read it, puts it itself when the stream is waiting for it, and otherwise queues it for
/// the thread putting (a sink slower than the device) and reads ahead. Otherwise the calling
/// thread does it all with one buffer. hw-notes/bench.md has the figures.
pub(super) fn transfer<F>(
    source: &mut SourceSession<'_>,
    opts: &Options,
    chunk: usize,
    framing: Framing,
    hash: bool,
    mut put: F,
) -> Result<SourceStats>
where
    F: FnMut(ChunkKind, &mut [u8], usize, Option<u64>) -> Result<()> + Send,
{
    let expected = source.estimate();
    let mut done = 0u64;
    let mut reader = Reader::new(source, opts, chunk, framing);
    let head = framing.head;
    let put = move |kind: ChunkKind, frame: &mut [u8], sum: Option<u64>| {
        opts.check_cancel()?;
        let len = (frame.len() - head) as u64;
        put(kind, frame, head, sum)?;
        done += len;
        opts.report(kind.into(), done, expected);
        Ok(())
    };
    if opts.overlap {
        let r = &mut reader;
        let plan = turns::Plan {
            chunk,
            head,
            hash,
            huge: opts.huge_buffers,
            own_puts: opts.put_own_chunks,
            max_poll: opts.max_poll,
        };
        turns::share(plan, |buf: &mut [u8]| r.next(buf), put)?;
    } else {
        let mut buf = AlignedBuf::chunk(chunk, opts.huge_buffers)?;
        let mut put = put;
        while let Some((kind, n)) = reader.next(&mut buf)? {
            let sum = hash.then(|| checksum(&buf[head..head + n]));
            put(kind, &mut buf[..head + n], sum)?;
        }
    }
    Ok(reader.stats)
}

/// Where the source side of save and migrate is: before, in or after pre-copy, in
/// STOP_COPY, or drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing read yet.
    Start,
    /// In a pre-copy round, reading.
    Round,
    /// Pre-copy is over (or never began): the device is to stop.
    Stopping,
    /// STOP_COPY, reading to the end of the state.
    Stopped,
    /// The state is read.
    Done,
    /// A step failed: the reader is not driven again.
    Failed,
}

/// The source side of save and migrate, one chunk at a time ([`Reader::next`]): pre-copy
/// rounds (when the device has PRE_COPY and the policy asks) until the [switchover
/// decision](super::precopy) ends them, the downtime check, then STOP_COPY to end of stream.
/// The session is left drained.
pub(super) struct Reader<'a, 's> {
    s: &'a mut SourceSession<'s>,
    opts: &'a Options,
    chunk: usize,
    framing: Framing,
    phase: Phase,
    /// The stream position of the next frame (when frames are aligned).
    pos: Option<u64>,
    switch: Switchover,
    /// When pre-copy began.
    precopy_from: Option<Instant>,
    pub(super) stats: SourceStats,
}

impl<'a, 's> Reader<'a, 's> {
    pub(super) fn new(
        s: &'a mut SourceSession<'s>,
        opts: &'a Options,
        chunk: usize,
        framing: Framing,
    ) -> Self {
        Reader {
            s,
            opts,
            chunk,
            framing,
            phase: Phase::Start,
            pos: framing.align_from,
            switch: Switchover::new(opts.precopy, opts.max_rounds()),
            precopy_from: None,
            stats: SourceStats::default(),
        }
    }

    /// Reads the next chunk's payload into `buf` after the room kept for its header
    /// (`framing.head` bytes): its kind and length, or `None` once the state is read.
    /// Between chunks it moves the device on (pre-copy rounds, the stop).
    ///
    /// After an error the reader is spent: every later call fails with
    /// [`MigrationError::PeerStopped`] without touching the device (a second thread sharing
    /// the reader must not retry a step the device refused: a transition, a P2P point).
    pub(super) fn next(&mut self, buf: &mut [u8]) -> Result<Option<(ChunkKind, usize)>> {
        let r = self.step(buf);
        if r.is_err() {
            self.phase = Phase::Failed;
        }
        r
    }

    fn step(&mut self, buf: &mut [u8]) -> Result<Option<(ChunkKind, usize)>> {
        let head = self.framing.head;
        loop {
            match self.phase {
                Phase::Start => {
                    if self.opts.max_rounds() > 0 && self.s.driver().flags().has(MigFlags::PRE_COPY)
                    {
                        self.precopy_from = Some(Instant::now());
                        self.s.start_precopy()?;
                        self.s.begin_round()?;
                        self.phase = Phase::Round;
                    } else {
                        self.phase = Phase::Stopping;
                    }
                }
                Phase::Round => {
                    let room = self.framing.room(self.chunk, self.pos);
                    let n = self.s.read_round(&mut buf[head..head + room])?;
                    if n > 0 {
                        return Ok(Some((ChunkKind::Precopy, self.advance(n))));
                    }
                    self.end_round()?;
                }
                Phase::Stopping => {
                    self.stop()?;
                    self.phase = Phase::Stopped;
                }
                Phase::Stopped => {
                    let room = self.framing.room(self.chunk, self.pos);
                    let n = self.s.read_stopped(&mut buf[head..head + room])?;
                    if n > 0 {
                        return Ok(Some((ChunkKind::Stopcopy, self.advance(n))));
                    }
                    self.phase = Phase::Done;
                }
                Phase::Done => return Ok(None),
                Phase::Failed => return Err(MigrationError::PeerStopped),
            }
        }
    }

    /// Counts `n` payload bytes read at the stream position.
    fn advance(&mut self, n: usize) -> usize {
        self.pos = self.pos.map(|at| at + (self.framing.head + n) as u64);
        n
    }

    /// Ends a pre-copy round: another begins, or the switchover decision ends pre-copy.
    fn end_round(&mut self) -> Result<()> {
        let round = self.s.end_round()?;
        self.stats.rounds += 1;
        let left = remaining(self.s, round.pending_after.total());
        let capped = self.s.precopy_capped();
        match self
            .switch
            .after_round(&round, self.stats.rounds, left, capped)
        {
            Some(end) => {
                self.stats.precopy_end = end;
                self.stats.converged = end == PrecopyEnd::Converged;
                self.stats.precopy_seconds = self.precopy_from.map(secs).unwrap_or(0.0);
                self.phase = Phase::Stopping;
            }
            None => {
                self.s.begin_round()?;
            }
        }
        Ok(())
    }

    /// The downtime prediction and check, on what is left now (the device is not stopped
    /// when the check fails), the P2P points, then STOP_COPY.
    fn stop(&mut self) -> Result<()> {
        let st = &mut self.stats;
        if st.rounds > 0 || self.opts.precopy.max_downtime.is_some() {
            let left = match self.s.driver().pending() {
                Ok(p) if st.rounds > 0 => remaining(self.s, p.total()),
                _ => remaining(self.s, self.s.estimate().unwrap_or(0)),
            };
            let device = self.s.driver().device().name().to_string();
            st.predicted_downtime = self.switch.check(&device, st.rounds, left)?;
        }
        self.opts.check_cancel()?;
        if let Some(hook) = &self.opts.p2p {
            quiesce(self.s, hook)?;
        }
        self.s.stop_copy()
    }
}

/// A group's P2P points before the source stops ([`Options::p2p`]): ready, then (with P2P
/// states) RUNNING_P2P / PRE_COPY_P2P, then quiesced.
fn quiesce(s: &mut SourceSession<'_>, hook: &P2pHook) -> Result<()> {
    let device = s.driver().device().name().to_string();
    let point = |step, state| P2pPoint {
        step,
        device: &device,
        state,
    };
    hook(&point(P2pStep::Ready, s.stage()))?;
    if s.driver().flags().has(MigFlags::P2P) {
        s.quiesce()?;
    }
    hook(&point(P2pStep::Quiesced, s.stage()))
}

/// The bytes still to move once the device stops: its fresh STOP_COPY size estimate (what
/// QEMU uses), or `pending` when it gives none.
fn remaining(s: &mut SourceSession<'_>, pending: u64) -> u64 {
    match s.driver().stop_copy_size() {
        Ok(Some(n)) => n,
        _ => pending,
    }
}
