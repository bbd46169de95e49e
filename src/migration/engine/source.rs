//! Reading a device: the source side of save and migrate, driven through a
//! [`SourceSession`] (its pre-copy rounds and STOP_COPY read into the ring's buffers), with
//! the engine's pre-copy policy deciding when to stop.

use super::precopy::{PrecopyEnd, Switchover};
use super::report::secs;
use super::ring::{pipeline, Caller, Filled, Producer};
use super::{AlignedBuf, Options, P2pHook, P2pPoint, P2pStep};
use crate::device::MigFlags;
use crate::migration::session::SourceSession;
use crate::migration::stream::{checksum, ChunkKind};
use crate::migration::Result;
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

/// Where a transfer puts each chunk in the ring's buffers, and how long it lets it be.
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

/// Save's and migrate's transfer: `source` read on the calling thread ([`read_source`]) into
/// the ring's `chunk`-byte buffers as `framing` lays them out, and on the ring's other side,
/// for every chunk: the cancel check, `put` (into a stream, or a destination device) with
/// the frame (`framing.head` bytes of room, then the payload), where its payload starts, and
/// the payload's checksum when computed, and progress against the source's estimate.
///
/// With `hash`, while the writing side is behind ([`Producer::consumer_busy`]: a blocking
/// sink, a socket, a pipe), the reading thread computes each chunk's [`checksum`] right after
/// the device read, while the bytes are in its core's cache, and `put` gets it: the writing
/// thread, the bottleneck, then only writes. When the writing side keeps up, the reading
/// thread is the bottleneck and `put` gets `None` (the writer hashes). hw-notes/bench.md
/// has the figures.
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
    pipeline(
        chunk,
        opts.overlap,
        Caller::Produces,
        |p| read_source(source, opts, p, chunk, framing, hash),
        move |c| {
            opts.check_cancel()?;
            let len = c.data().len() as u64;
            put(c.kind, c.frame, c.at, c.sum)?;
            done += len;
            opts.report(c.kind.into(), done, expected);
            Ok(())
        },
    )
}

/// The source side of save and migrate: pre-copy rounds (when the device has PRE_COPY and
/// the policy asks) until the [switchover decision](super::precopy) ends them, the
/// downtime check, then STOP_COPY to end of stream, every chunk sent through `p`. The
/// session is left drained.
fn read_source(
    s: &mut SourceSession<'_>,
    opts: &Options,
    p: &Producer,
    chunk: usize,
    framing: Framing,
    hash: bool,
) -> Result<SourceStats> {
    let head = framing.head;
    let filled = |kind, buf: AlignedBuf, len: usize| Filled {
        kind,
        sum: (hash && p.consumer_busy()).then(|| checksum(&buf[head..head + len])),
        buf,
        at: head,
        len,
        check: None,
    };
    // The stream position of the next frame (when frames are aligned).
    let mut pos = framing.align_from;
    let mut st = SourceStats::default();
    let max_rounds = opts.max_rounds();
    let mut switch = Switchover::new(opts.precopy, max_rounds);
    // A buffer the session did not fill goes to the next read, not back to the ring.
    let mut spare: Option<AlignedBuf> = None;
    if max_rounds > 0 && s.driver().flags().has(MigFlags::PRE_COPY) {
        let t0 = Instant::now();
        s.start_precopy()?;
        loop {
            s.begin_round()?;
            loop {
                let mut buf = take(&mut spare, p)?;
                let room = framing.room(chunk, pos);
                let n = s.read_round(&mut buf[head..head + room])?;
                if n == 0 {
                    spare = Some(buf);
                    break;
                }
                pos = pos.map(|at| at + (head + n) as u64);
                p.send(filled(ChunkKind::Precopy, buf, n))?;
            }
            let round = s.end_round()?;
            st.rounds += 1;
            let left = remaining(s, round.pending_after.total());
            if let Some(end) = switch.after_round(&round, st.rounds, left, s.precopy_capped()) {
                st.precopy_end = end;
                st.converged = end == PrecopyEnd::Converged;
                break;
            }
        }
        st.precopy_seconds = secs(t0);
    }
    // The downtime prediction and check, on what is left now: the device is not stopped
    // when the check fails.
    if st.rounds > 0 || opts.precopy.max_downtime.is_some() {
        let left = match s.driver().pending() {
            Ok(p) if st.rounds > 0 => remaining(s, p.total()),
            _ => remaining(s, s.estimate().unwrap_or(0)),
        };
        let device = s.driver().device().name().to_string();
        st.predicted_downtime = switch.check(&device, st.rounds, left)?;
    }
    opts.check_cancel()?;
    if let Some(hook) = &opts.p2p {
        quiesce(s, hook)?;
    }
    s.stop_copy()?;
    loop {
        let mut buf = take(&mut spare, p)?;
        let room = framing.room(chunk, pos);
        let n = s.read_stopped(&mut buf[head..head + room])?;
        if n == 0 {
            break;
        }
        pos = pos.map(|at| at + (head + n) as u64);
        p.send(filled(ChunkKind::Stopcopy, buf, n))?;
    }
    Ok(st)
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

fn take(spare: &mut Option<AlignedBuf>, p: &Producer) -> Result<AlignedBuf> {
    match spare.take() {
        Some(b) => Ok(b),
        None => p.take(),
    }
}
