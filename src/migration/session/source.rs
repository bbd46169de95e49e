//! The source side of a session: a device whose state is read out, step by step.

use super::{DestinationSession, EndState};
use crate::device::{MigFlags, MigState};
use crate::migration::engine::RoundStats;
use crate::migration::recovery::Recovery;
use crate::migration::stream::{stop_copy_limit, StreamHeader};
use crate::migration::{MigrationDriver, MigrationError, Pending, Protocol, Result};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// Default chunk size of a session: 1 MiB, as the engine's.
const DEFAULT_CHUNK: usize = 1 << 20;

/// The pre-copy round under way (between [`SourceSession::begin_round`] and
/// [`SourceSession::end_round`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Round {
    pub(super) t0: Instant,
    pub(super) before: Pending,
    /// Bytes the round may still read (what was pending when it began, at least 1).
    pub(super) budget: u64,
    pub(super) bytes: u64,
}

/// Where a source session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
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
    pub(super) drv: &'d mut dyn MigrationDriver,
    /// The session's own buffer for [`SourceSession::precopy_round`] and
    /// [`SourceSession::drain`], made on first use (callers reading into their own buffers
    /// never pay for it).
    pub(super) buf: Vec<u8>,
    pub(super) chunk: usize,
    pub(super) stage: Stage,
    pub(super) estimate: Option<u64>,
    pub(super) report: SourceReport,
    pub(super) stopped_at: Option<Instant>,
    /// The round under way.
    pub(super) round: Option<Round>,
    /// A pre-copy read found the phase's bound reached.
    pub(super) capped: bool,
    /// STOP_COPY data allowed, and the estimate it was derived from (set by `stop_copy`).
    pub(super) stop_limit: Option<(u64, u64)>,
    pub(super) cancel: Option<Arc<AtomicBool>>,
    /// In a P2P state (RUNNING_P2P, PRE_COPY_P2P).
    pub(super) quiesced: bool,
    /// Returns the device to RUNNING when dropped unfinished, or when `finish` fails.
    pub(super) armed: bool,
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

    /// Reads in chunks of `size` bytes ([`MIN_BUFFER`](crate::migration::MIN_BUFFER) to
    /// 64 MiB) instead of 1 MiB.
    ///
    /// # Errors
    ///
    /// [`MigrationError::InvalidBufferSize`] when `size` is below 4 KiB or above 64 MiB.
    pub fn with_chunk_size(mut self, size: usize) -> Result<Self> {
        self.chunk = crate::migration::chunk_size::checked(size)?;
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

    /// Stops peer-to-peer DMA while the device still runs: RUNNING -> RUNNING_P2P, or
    /// PRE_COPY -> PRE_COPY_P2P. [`SourceGroup`](super::SourceGroup) does this for every
    /// device before any of them stops.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: the device is stopped (or the session is over);
    ///   quiescing a device that already is quiesced does nothing.
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
        super::set_end_state(&mut *self.drv, end, &mut self.armed)?;
        self.report.end = end.state();
        Ok(self.report.clone())
    }

    /// Gives up: returns the device to RUNNING and reports how.
    ///
    /// # Errors
    ///
    /// Why the device could not be returned to RUNNING.
    pub fn abort(mut self) -> Result<Recovery> {
        super::recover_now(&mut *self.drv, &mut self.armed).into_result()
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

    pub(super) fn expect(&self, stages: &[Stage], op: &str) -> Result<()> {
        if stages.contains(&self.stage) {
            return Ok(());
        }
        let want: Vec<&str> = stages.iter().map(|s| stage_name(*s)).collect();
        Err(self.wrong(op, &want.join(" or ")))
    }

    pub(super) fn wrong(&self, op: &str, expected: &str) -> MigrationError {
        MigrationError::WrongState {
            device: self.report.device.clone(),
            op: format!("{op} (session)"),
            expected: expected.into(),
            actual: self.stage(),
        }
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
            let _report = super::recover_now(&mut *self.drv, &mut self.armed);
        }
    }
}
