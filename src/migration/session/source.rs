//! The source side of a session: a device whose state is read out, step by step.

use super::{ChunkSink, DestinationSession, EndState};
use crate::device::{MigFlags, MigState};
use crate::migration::engine::RoundStats;
use crate::migration::recovery::{self, Recovery};
use crate::migration::stream::{stop_copy_limit, ChunkKind, StreamHeader, MAX_CHUNK_LEN};
use crate::migration::{MigrationDriver, MigrationError, Pending, Protocol, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Default chunk size of a session: 1 MiB, as the engine's.
const DEFAULT_CHUNK: usize = 1 << 20;

/// The pre-copy round under way (between [`SourceSession::begin_round`] and
/// [`SourceSession::end_round`]).
#[derive(Clone, Copy, Debug)]
struct Round {
    t0: Instant,
    before: Pending,
    /// Bytes the round may still read (what was pending when it began, at least 1).
    budget: u64,
    bytes: u64,
}

/// Where a source session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// RUNNING, nothing read yet.
    Running,
    /// PRE_COPY (or PRE_COPY_P2P when `quiesced`).
    Precopy,
    /// RUNNING_P2P (quiesced without pre-copy).
    RunningP2p,
    /// STOP_COPY, data left to read.
    StopCopy,
    /// STOP_COPY, end of stream reached.
    Drained,
}

/// What a finished [`SourceSession`] did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SourceReport {
    /// The device.
    pub device: String,
    /// Its migration protocol.
    pub protocol: Protocol,
    /// Bytes read while the device ran (PRE_COPY).
    pub precopy_bytes: u64,
    /// Bytes read after it stopped (STOP_COPY).
    pub stopcopy_bytes: u64,
    /// Chunks handed to sinks.
    pub chunks: u64,
    /// Every pre-copy round.
    pub rounds: Vec<RoundStats>,
    /// From [`SourceSession::stop_copy`] to the end of the state, seconds.
    pub stop_copy_seconds: f64,
    /// The state the device was left in.
    pub end: MigState,
}

impl SourceReport {
    /// All bytes read.
    pub fn bytes(&self) -> u64 {
        self.precopy_bytes + self.stopcopy_bytes
    }
}

/// A device whose state is being read out, one step per call. See the
/// [module docs](super) for the steps and an example.
///
/// Dropped before [`finish`](Self::finish) (an error the caller gives up on, a panic), it
/// returns the device to RUNNING ([`crate::migration::recovery`]); [`abort`](Self::abort)
/// does the same and reports how.
///
/// # Examples
///
/// A snapshot into a checksummed stream (the format [`crate::migration::engine::restore`]
/// reads), the device running on afterwards:
///
/// ```
/// use vfio_harness::device::MigState;
/// use vfio_harness::migration::session::{EndState, SourceSession};
/// use vfio_harness::migration::{driver_for, engine, stream::StreamWriter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut drv = driver_for(vfio_harness::open(&"sim:state=1M,seed=5".parse()?, &Default::default())?)?;
/// let mut s = SourceSession::new(drv.as_mut())?.with_chunk_size(256 << 10)?;
/// let mut stream = StreamWriter::new(Vec::new(), "snapshot", &s.stream_header())?;
/// s.stop_copy()?;
/// s.drain(&mut stream)?;
/// let report = s.finish(EndState::Running)?;
/// assert_eq!(report.end, MigState::Running);
/// let (bytes, totals) = stream.finish()?;
/// assert_eq!(totals.payload_bytes, report.bytes());
///
/// let mut dst = driver_for(vfio_harness::open(&"sim:state=1M,verify-seed=5".parse()?, &Default::default())?)?;
/// engine::restore(dst.as_mut(), &bytes[..], &Default::default())?;
/// # Ok(())
/// # }
/// ```
pub struct SourceSession<'d> {
    drv: &'d mut dyn MigrationDriver,
    /// The session's own buffer for [`SourceSession::precopy_round`] and
    /// [`SourceSession::drain`], made on first use (callers reading into their own buffers
    /// never pay for it).
    buf: Vec<u8>,
    chunk: usize,
    stage: Stage,
    estimate: Option<u64>,
    report: SourceReport,
    stopped_at: Option<Instant>,
    /// The round under way.
    round: Option<Round>,
    /// A pre-copy read found the phase's bound reached.
    capped: bool,
    /// STOP_COPY data allowed, and the estimate it was derived from (set by `stop_copy`).
    stop_limit: Option<(u64, u64)>,
    cancel: Option<Arc<AtomicBool>>,
    /// In a P2P state (RUNNING_P2P, PRE_COPY_P2P).
    quiesced: bool,
    /// Returns the device to RUNNING when dropped unfinished, or when `finish` fails.
    armed: bool,
}

impl std::fmt::Debug for SourceSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSession")
            .field("device", &self.report.device)
            .field("stage", &self.stage)
            .field("chunk", &self.chunk)
            .field("precopy_bytes", &self.report.precopy_bytes)
            .field("stopcopy_bytes", &self.report.stopcopy_bytes)
            .finish_non_exhaustive()
    }
}

impl<'d> SourceSession<'d> {
    /// Starts a session on a RUNNING device, reading in 1 MiB chunks. Nothing is asked of
    /// the device but its state and its STOP_COPY size estimate.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: the device is not RUNNING (nothing is changed).
    /// - [`MigrationError::Device`]: its state cannot be read.
    pub fn new(drv: &'d mut dyn MigrationDriver) -> Result<Self> {
        let state = drv.state()?;
        if state != MigState::Running {
            return Err(MigrationError::WrongState {
                device: drv.device().name().to_string(),
                op: "start a source session".into(),
                expected: "RUNNING".into(),
                actual: state,
            });
        }
        Ok(SourceSession::unchecked(drv))
    }

    /// A session on `drv` whatever its state, that leaves recovering the device to the
    /// caller (never on drop, nor when `finish` fails): for the one-call engine, which
    /// recovers its devices itself so that its error reports the recovery's outcome.
    pub(crate) fn unguarded(drv: &'d mut dyn MigrationDriver) -> Self {
        let mut s = SourceSession::unchecked(drv);
        s.armed = false;
        s
    }

    fn unchecked(drv: &'d mut dyn MigrationDriver) -> Self {
        // An estimate that cannot be had only removes the runaway-stream guard.
        let estimate = drv.stop_copy_size().ok().flatten();
        let report = SourceReport {
            device: drv.device().name().to_string(),
            protocol: drv.protocol(),
            precopy_bytes: 0,
            stopcopy_bytes: 0,
            chunks: 0,
            rounds: Vec::new(),
            stop_copy_seconds: 0.0,
            end: MigState::Running,
        };
        SourceSession {
            drv,
            buf: Vec::new(),
            chunk: DEFAULT_CHUNK,
            stage: Stage::Running,
            estimate,
            report,
            stopped_at: None,
            round: None,
            capped: false,
            stop_limit: None,
            cancel: None,
            quiesced: false,
            armed: true,
        }
    }

    /// Reads in chunks of `size` bytes (at most 64 MiB) instead of 1 MiB.
    ///
    /// # Errors
    ///
    /// [`MigrationError::InvalidBufferSize`] when `size` is 0 or above 64 MiB.
    pub fn with_chunk_size(mut self, size: usize) -> Result<Self> {
        if size == 0 || size > MAX_CHUNK_LEN as usize {
            return Err(MigrationError::InvalidBufferSize { size });
        }
        self.chunk = size;
        self.buf = Vec::new();
        Ok(self)
    }

    /// Makes every device read of the session check `cancel` first: once it is set, the
    /// step under way stops with [`MigrationError::Interrupted`] (the session is left as it
    /// was; dropping it returns the device to RUNNING). A signal handler or another thread
    /// sets the flag; a read already blocked in the device is not interrupted.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use vfio_harness::device::MigState;
    /// use vfio_harness::migration::session::SourceSession;
    /// use vfio_harness::migration::{driver_for, MigrationError};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut drv = driver_for(vfio_harness::open(&"sim:state=1M".parse()?, &Default::default())?)?;
    /// let cancel = Arc::new(AtomicBool::new(false));
    /// let mut s = SourceSession::new(drv.as_mut())?.with_cancel(Arc::clone(&cancel));
    /// s.stop_copy()?;
    /// cancel.store(true, Ordering::Relaxed); // e.g. from a SIGINT handler
    /// let mut sink = |_kind, _data: &[u8]| Ok(());
    /// assert!(matches!(s.drain(&mut sink), Err(MigrationError::Interrupted)));
    /// drop(s);
    /// assert_eq!(drv.state()?, MigState::Running);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_cancel(mut self, cancel: Arc<AtomicBool>) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// The driver, for what the session does not cover (its device, flags, state).
    pub fn driver(&mut self) -> &mut dyn MigrationDriver {
        &mut *self.drv
    }

    /// The chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// The device's STOP_COPY size estimate when the session started, if it gave one.
    pub fn estimate(&self) -> Option<u64> {
        self.estimate
    }

    /// The stream header describing this source, as [`crate::migration::engine::save`]
    /// writes it: for a [`StreamWriter`](crate::migration::stream::StreamWriter) sink.
    pub fn stream_header(&self) -> StreamHeader {
        StreamHeader::for_device(
            self.drv.device(),
            self.drv.protocol(),
            self.drv.flags(),
            self.estimate,
            self.chunk as u32,
        )
    }

    /// Checks that `target`'s device can take this device's state (device API, mdev type,
    /// PCI IDs, protocol), as [`crate::migration::engine::migrate`] does.
    ///
    /// # Errors
    ///
    /// [`MigrationError::Incompatible`] naming what differs.
    pub fn check_target(&self, target: &DestinationSession<'_>) -> Result<()> {
        let (device, protocol) = target.identity();
        StreamHeader::for_device(
            self.drv.device(),
            self.drv.protocol(),
            self.drv.flags(),
            None,
            1,
        )
        .check_target(device, protocol)
    }

    /// RUNNING -> PRE_COPY: the device starts offering its state while it runs.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: called after pre-copy, quiesce or stop-copy began.
    /// - [`MigrationError::Unreachable`]: the device has no PRE_COPY (see
    ///   [`MigrationDriver::flags`]).
    /// - [`MigrationError::Device`]: the device refused the transition.
    pub fn start_precopy(&mut self) -> Result<()> {
        self.expect(&[Stage::Running], "start pre-copy")?;
        self.drv.set_state(MigState::PreCopy)?;
        self.stage = Stage::Precopy;
        Ok(())
    }

    /// What the device has pending (pre-copy): initial bytes not yet read, and bytes dirtied
    /// since.
    ///
    /// # Errors
    ///
    /// [`MigrationError::Device`]: the device refused the query (not in a pre-copy state).
    pub fn precopy_info(&mut self) -> Result<Pending> {
        self.drv.pending()
    }

    /// One pre-copy round: reads what was pending when it started (at least one chunk, so a
    /// device that under-reports still progresses), until the device has nothing more for
    /// now, every chunk into `sink`.
    ///
    /// Pre-copy data is bounded as STOP_COPY data is (four times the device's estimate and
    /// at least 64 MiB more): a device dirtying faster than it is read cannot grow the
    /// stream without end. Past the bound a round reads nothing (its `bytes` is 0 while
    /// `pending_after` is not, and [`precopy_capped`](Self::precopy_capped) is true): time
    /// to stop the device.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: not pre-copying.
    /// - [`MigrationError::Interrupted`]: the [cancel flag](Self::with_cancel) is set.
    /// - [`MigrationError::Device`], [`MigrationError::Protocol`]: the device failed a read
    ///   or a query.
    /// - whatever `sink` returned.
    pub fn precopy_round(&mut self, sink: &mut dyn ChunkSink) -> Result<RoundStats> {
        self.begin_round()?;
        let mut buf = self.take_buf();
        let r = self.round_into(&mut buf, sink);
        self.buf = buf;
        r?;
        self.end_round()
    }

    fn round_into(&mut self, buf: &mut [u8], sink: &mut dyn ChunkSink) -> Result<()> {
        loop {
            let n = self.read_round(buf)?;
            if n == 0 {
                return Ok(());
            }
            sink.put_chunk(ChunkKind::Precopy, &buf[..n])?;
        }
    }

    /// Begins a pre-copy round read into the caller's own buffers: the pull form of
    /// [`precopy_round`](Self::precopy_round), for a caller that hands buffers to another
    /// thread (the one-call engine overlaps reading and writing this way). Takes what the
    /// device has pending now; [`read_round`](Self::read_round) then reads up to that much,
    /// and [`end_round`](Self::end_round) records the round. Returns what is pending.
    ///
    /// # Examples
    ///
    /// See [`read_round`](Self::read_round).
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: not pre-copying.
    /// - [`MigrationError::Interrupted`]: the [cancel flag](Self::with_cancel) is set.
    /// - [`MigrationError::Device`]: the device refused the query.
    pub fn begin_round(&mut self) -> Result<Pending> {
        self.expect(&[Stage::Precopy], "run a pre-copy round")?;
        self.check_cancel()?;
        let t0 = Instant::now();
        let before = self.drv.pending()?;
        self.round = Some(Round {
            t0,
            before,
            budget: before.total().max(1),
            bytes: 0,
        });
        Ok(before)
    }

    /// Reads the next chunk of the round begun by [`begin_round`](Self::begin_round) into
    /// `buf` (at most its length, at least one byte unless the round is over); 0 when the
    /// round has read what was pending, the device has nothing more for now, or pre-copy
    /// reached its bound ([`precopy_capped`](Self::precopy_capped)).
    ///
    /// # Examples
    ///
    /// A round into buffers of the caller's:
    ///
    /// ```
    /// use vfio_harness::migration::driver_for;
    /// use vfio_harness::migration::session::{EndState, SourceSession};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut drv = driver_for(vfio_harness::open(&"sim:state=1M".parse()?, &Default::default())?)?;
    /// let mut s = SourceSession::new(drv.as_mut())?;
    /// s.start_precopy()?;
    /// let pending = s.begin_round()?;
    /// let mut chunks: Vec<Vec<u8>> = Vec::new();
    /// loop {
    ///     let mut buf = vec![0; 256 << 10];
    ///     let n = s.read_round(&mut buf)?;
    ///     if n == 0 {
    ///         break;
    ///     }
    ///     buf.truncate(n);
    ///     chunks.push(buf); // e.g. handed to a writer thread
    /// }
    /// let round = s.end_round()?;
    /// assert_eq!(round.pending_before, pending);
    /// assert_eq!(round.bytes, chunks.iter().map(|c| c.len() as u64).sum::<u64>());
    /// s.stop_copy()?;
    /// let mut buf = vec![0; 256 << 10];
    /// while s.read_stopped(&mut buf)? > 0 {}
    /// s.finish(EndState::Running)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: no round begun.
    /// - [`MigrationError::Interrupted`]: the [cancel flag](Self::with_cancel) is set.
    /// - [`MigrationError::Device`], [`MigrationError::Protocol`]: a read failed, or
    ///   returned more than asked.
    pub fn read_round(&mut self, buf: &mut [u8]) -> Result<usize> {
        let Some(mut round) = self.round.filter(|_| self.stage == Stage::Precopy) else {
            return Err(self.wrong("read a pre-copy round", "a round begun (begin_round)"));
        };
        if round.budget == 0 || buf.is_empty() {
            return Ok(0);
        }
        // Pre-copy data is bounded like STOP_COPY data (a device dirtying faster than it is
        // read would otherwise grow the stream for as many rounds as asked).
        let cap = self.estimate.map(stop_copy_limit);
        let room = cap.map_or(u64::MAX, |c| c.saturating_sub(self.report.precopy_bytes));
        if room == 0 {
            self.capped = true;
            return Ok(0);
        }
        let want = round.budget.min(room).min(buf.len() as u64) as usize;
        let n = self.fill(&mut buf[..want])?;
        if n == 0 {
            round.budget = 0;
        } else {
            round.budget = round.budget.saturating_sub(n as u64);
            round.bytes += n as u64;
            self.report.precopy_bytes += n as u64;
            self.report.chunks += 1;
        }
        self.round = Some(round);
        Ok(n)
    }

    /// Ends the round begun by [`begin_round`](Self::begin_round): asks the device what is
    /// pending now and records the round in the report.
    ///
    /// # Examples
    ///
    /// See [`read_round`](Self::read_round).
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: no round begun.
    /// - [`MigrationError::Device`]: the device refused the query.
    pub fn end_round(&mut self) -> Result<RoundStats> {
        let Some(round) = self.round.filter(|_| self.stage == Stage::Precopy) else {
            return Err(self.wrong("end a pre-copy round", "a round begun (begin_round)"));
        };
        let after = self.drv.pending()?;
        self.round = None;
        let stats = RoundStats {
            round: self.report.rounds.len() as u32 + 1,
            pending_before: round.before,
            bytes: round.bytes,
            pending_after: after,
            seconds: round.t0.elapsed().as_secs_f64(),
        };
        self.report.rounds.push(stats);
        Ok(stats)
    }

    /// Whether pre-copy reached its bound (four times the device's STOP_COPY estimate and
    /// at least 64 MiB more): rounds read nothing more, time to stop the device.
    pub fn precopy_capped(&self) -> bool {
        self.capped
    }

    /// Stops peer-to-peer DMA while the device still runs: RUNNING -> RUNNING_P2P, or
    /// PRE_COPY -> PRE_COPY_P2P. [`SourceGroup`](super::SourceGroup) does this for every
    /// device before any of them stops.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: already quiesced or stopped.
    /// - [`MigrationError::Unreachable`]: the device has no P2P states.
    /// - [`MigrationError::Device`]: the device refused the transition.
    pub fn quiesce(&mut self) -> Result<()> {
        let (stage, to) = match self.stage {
            Stage::Running => (Stage::RunningP2p, MigState::RunningP2p),
            Stage::Precopy | Stage::RunningP2p if self.quiesced => return Ok(()),
            Stage::Precopy => (Stage::Precopy, MigState::PreCopyP2p),
            _ => return Err(self.wrong("quiesce", "RUNNING or PRE_COPY")),
        };
        self.drv.set_state(to)?;
        self.stage = stage;
        self.quiesced = true;
        Ok(())
    }

    /// Stops the device: -> STOP_COPY. The device's state is frozen from here; the caller
    /// stops whatever drives it first (a VMM pauses its vCPUs). Reading the rest is
    /// [`drain`](Self::drain).
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: already stopped.
    /// - [`MigrationError::Device`]: the device refused the transition.
    pub fn stop_copy(&mut self) -> Result<()> {
        self.expect(
            &[Stage::Running, Stage::Precopy, Stage::RunningP2p],
            "stop the device",
        )?;
        self.stopped_at = Some(Instant::now());
        self.drv.set_state(MigState::StopCopy)?;
        self.stage = Stage::StopCopy;
        self.round = None;
        // Bounded by the estimate the device gives now it is stopped, and by the one in the
        // stream header when smaller, so that every stream written from this session
        // restores (the reader holds STOP_COPY data to the header's bound).
        let fresh = match (self.stop_copy_estimate(), self.estimate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.stop_limit = fresh.map(|e| (stop_copy_limit(e), e));
        Ok(())
    }

    /// The device's estimate of what is left, taken just after entering STOP_COPY: v2's
    /// STOP_COPY size, or v1's pending bytes (v1 has no separate estimate). `None` when the
    /// device offers neither.
    fn stop_copy_estimate(&mut self) -> Option<u64> {
        if let Ok(Some(n)) = self.drv.stop_copy_size() {
            return Some(n);
        }
        if self.drv.protocol() == Protocol::V1 {
            // Nothing has been read in STOP_COPY yet, so no split chunk is held.
            return self.drv.pending().ok().map(|p| p.total());
        }
        None
    }

    /// Reads the stopped device's state to its end, every chunk into `sink`; returns the
    /// bytes read.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: [`stop_copy`](Self::stop_copy) was not called.
    /// - [`MigrationError::Device`]: a read failed.
    /// - [`MigrationError::Protocol`]: the device broke the protocol (a read longer than
    ///   asked, or a stream far beyond its own estimate that never ends).
    /// - whatever `sink` returned.
    pub fn drain(&mut self, sink: &mut dyn ChunkSink) -> Result<u64> {
        if self.stage == Stage::Drained {
            return Ok(0);
        }
        self.expect(&[Stage::StopCopy], "read the stopped state")?;
        let mut buf = self.take_buf();
        let r = self.drain_into(&mut buf, sink);
        self.buf = buf;
        r
    }

    fn drain_into(&mut self, buf: &mut [u8], sink: &mut dyn ChunkSink) -> Result<u64> {
        let mut read = 0u64;
        loop {
            let n = self.read_stopped(buf)?;
            if n == 0 {
                return Ok(read);
            }
            read += n as u64;
            sink.put_chunk(ChunkKind::Stopcopy, &buf[..n])?;
        }
    }

    /// Reads the next chunk of the stopped device's state into `buf` (the caller's own
    /// buffer: the pull form of [`drain`](Self::drain)); 0 at the end of the state, after
    /// which the session is drained and [`finish`](Self::finish) may be called.
    ///
    /// # Examples
    ///
    /// See [`read_round`](Self::read_round).
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: [`stop_copy`](Self::stop_copy) was not called.
    /// - [`MigrationError::Interrupted`]: the [cancel flag](Self::with_cancel) is set.
    /// - [`MigrationError::Device`]: a read failed.
    /// - [`MigrationError::Protocol`]: the device broke the protocol (a read longer than
    ///   asked, or a stream far beyond its own estimate that never ends).
    pub fn read_stopped(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.stage == Stage::Drained {
            return Ok(0);
        }
        self.expect(&[Stage::StopCopy], "read the stopped state")?;
        let n = self.fill(buf)?;
        if n == 0 {
            if let Some(t) = self.stopped_at {
                self.report.stop_copy_seconds = t.elapsed().as_secs_f64();
            }
            self.stage = Stage::Drained;
            return Ok(0);
        }
        self.report.stopcopy_bytes += n as u64;
        self.report.chunks += 1;
        if let Some((limit, estimate)) = self.stop_limit {
            if self.report.stopcopy_bytes > limit {
                return Err(MigrationError::Protocol {
                    device: self.report.device.clone(),
                    what: format!(
                        "STOP_COPY keeps streaming: {} bytes read, the device estimated {estimate} on entering STOP_COPY (the end of stream never came)",
                        self.report.stopcopy_bytes,
                    ),
                });
            }
        }
        Ok(n)
    }

    /// When the device was asked to leave for STOP_COPY ([`stop_copy`](Self::stop_copy)).
    pub(crate) fn stopped_at(&self) -> Option<Instant> {
        self.stopped_at
    }

    /// Ends the session once the state is drained, leaving the device in `end`: RUNNING (a
    /// snapshot) or STOP (a handoff).
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: the state was not drained (the session is dropped,
    ///   which returns the device to RUNNING).
    /// - [`MigrationError::Device`]: the device refused the transition; the device is then
    ///   returned to RUNNING and the error is [`MigrationError::Recovery`] when that failed
    ///   too.
    pub fn finish(mut self, end: EndState) -> Result<SourceReport> {
        self.expect(&[Stage::Drained], "finish")?;
        if let Err(e) = self.drv.set_state(end.state()) {
            if !std::mem::replace(&mut self.armed, false) {
                return Err(e);
            }
            return Err(recovery::recover_after(self.drv, e));
        }
        self.armed = false;
        self.report.end = end.state();
        Ok(self.report.clone())
    }

    /// Gives up: returns the device to RUNNING and reports how.
    ///
    /// # Errors
    ///
    /// Why the device could not be returned to RUNNING.
    pub fn abort(mut self) -> Result<Recovery> {
        self.armed = false;
        recovery::recover(&mut *self.drv).into_result()
    }

    /// Where the session is, in the device's terms.
    pub fn stage(&self) -> MigState {
        match self.stage {
            Stage::Running => MigState::Running,
            Stage::Precopy if self.quiesced => MigState::PreCopyP2p,
            Stage::Precopy => MigState::PreCopy,
            Stage::RunningP2p => MigState::RunningP2p,
            Stage::StopCopy | Stage::Drained => MigState::StopCopy,
        }
    }

    /// Whether the device has the P2P states.
    pub(super) fn has_p2p(&self) -> bool {
        self.drv.flags().has(MigFlags::P2P)
    }

    fn expect(&self, stages: &[Stage], op: &str) -> Result<()> {
        if stages.contains(&self.stage) {
            return Ok(());
        }
        let want: Vec<&str> = stages.iter().map(|s| stage_name(*s)).collect();
        Err(self.wrong(op, &want.join(" or ")))
    }

    fn wrong(&self, op: &str, expected: &str) -> MigrationError {
        MigrationError::WrongState {
            device: self.report.device.clone(),
            op: format!("{op} (session)"),
            expected: expected.into(),
            actual: self.stage(),
        }
    }

    /// The session's own buffer, made on first use.
    fn take_buf(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.len() != self.chunk {
            buf = vec![0; self.chunk];
        }
        buf
    }

    fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => Err(MigrationError::Interrupted),
            _ => Ok(()),
        }
    }

    /// Reads from the device into `buf` until it is full or the device returns 0. Only the
    /// bytes returned were written by this read; the rest of the buffer is never handed out.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let want = buf.len();
        let mut got = 0;
        while got < want {
            self.check_cancel()?;
            let n = self.drv.read(&mut buf[got..want])?;
            if n == 0 {
                break;
            }
            if n > want - got {
                return Err(MigrationError::Protocol {
                    device: self.report.device.clone(),
                    what: format!("read returned {n} bytes for a {}-byte buffer", want - got),
                });
            }
            got += n;
        }
        Ok(got)
    }
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Running => "RUNNING",
        Stage::Precopy => "PRE_COPY",
        Stage::RunningP2p => "RUNNING_P2P",
        Stage::StopCopy => "STOP_COPY",
        Stage::Drained => "STOP_COPY (drained)",
    }
}

impl Drop for SourceSession<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Nobody is left to report to: `abort` is the way to see the outcome. The
            // recovery itself has run either way.
            let _report = recovery::recover(&mut *self.drv);
        }
    }
}
