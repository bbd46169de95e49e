//! The source side of a session: a device whose state is read out, step by step.

use super::{ChunkSink, DestinationSession, EndState};
use crate::device::{MigFlags, MigState};
use crate::migration::engine::RoundStats;
use crate::migration::recovery::{self, Recovery};
use crate::migration::stream::{ChunkKind, StreamHeader, MAX_CHUNK_LEN};
use crate::migration::{MigrationDriver, MigrationError, Pending, Protocol, Result};
use std::time::Instant;

/// Default chunk size of a session: 1 MiB, as the engine's.
const DEFAULT_CHUNK: usize = 1 << 20;

/// The most data of one phase (PRE_COPY, STOP_COPY) a device may stream when it estimated
/// `estimate` bytes: four times the estimate and at least 64 MiB more (devices may exceed
/// their estimates; a stream that never ends must not run forever). The engine and the
/// stream reader hold streams to the same bound.
fn phase_limit(estimate: u64) -> u64 {
    estimate
        .saturating_mul(4)
        .max(estimate.saturating_add(64 << 20))
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
    buf: Vec<u8>,
    stage: Stage,
    estimate: Option<u64>,
    report: SourceReport,
    stopped_at: Option<Instant>,
    /// In a P2P state (RUNNING_P2P, PRE_COPY_P2P).
    quiesced: bool,
    armed: bool,
}

impl std::fmt::Debug for SourceSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSession")
            .field("device", &self.report.device)
            .field("stage", &self.stage)
            .field("chunk", &self.buf.len())
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
        Ok(SourceSession {
            drv,
            buf: vec![0; DEFAULT_CHUNK],
            stage: Stage::Running,
            estimate,
            report,
            stopped_at: None,
            quiesced: false,
            armed: true,
        })
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
        self.buf = vec![0; size];
        Ok(self)
    }

    /// The driver, for what the session does not cover (its device, flags, state).
    pub fn driver(&mut self) -> &mut dyn MigrationDriver {
        &mut *self.drv
    }

    /// The chunk size.
    pub fn chunk_size(&self) -> usize {
        self.buf.len()
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
            self.buf.len() as u32,
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
    /// `pending_after` is not): time to stop the device.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: not pre-copying.
    /// - [`MigrationError::Device`], [`MigrationError::Protocol`]: the device failed a read
    ///   or a query.
    /// - whatever `sink` returned.
    pub fn precopy_round(&mut self, sink: &mut dyn ChunkSink) -> Result<RoundStats> {
        self.expect(&[Stage::Precopy], "run a pre-copy round")?;
        let t0 = Instant::now();
        let before = self.drv.pending()?;
        let mut budget = before.total().max(1);
        let cap = self.estimate.map(phase_limit);
        let mut bytes = 0u64;
        while budget > 0 {
            let room = cap.map_or(u64::MAX, |c| c.saturating_sub(self.report.precopy_bytes));
            if room == 0 {
                break;
            }
            let want = self
                .buf
                .len()
                .min(budget.min(room).min(usize::MAX as u64) as usize);
            let n = self.fill(want)?;
            if n == 0 {
                break;
            }
            budget = budget.saturating_sub(n as u64);
            bytes += n as u64;
            self.report.precopy_bytes += n as u64;
            self.report.chunks += 1;
            sink.put_chunk(ChunkKind::Precopy, &self.buf[..n])?;
        }
        let after = self.drv.pending()?;
        let stats = RoundStats {
            round: self.report.rounds.len() as u32 + 1,
            pending_before: before,
            bytes,
            pending_after: after,
            seconds: t0.elapsed().as_secs_f64(),
        };
        self.report.rounds.push(stats);
        Ok(stats)
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
        Ok(())
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
        // Bounded by the estimate the device gives now it is stopped, and by the one in the
        // stream header when smaller (so a stream written from this session restores).
        let fresh = match self.drv.stop_copy_size() {
            Ok(Some(now)) => Some(self.estimate.map_or(now, |e| e.min(now))),
            _ => self.estimate,
        };
        let limit = fresh.map(phase_limit);
        let mut read = 0u64;
        loop {
            let n = self.fill(self.buf.len())?;
            if n == 0 {
                break;
            }
            read += n as u64;
            self.report.stopcopy_bytes += n as u64;
            self.report.chunks += 1;
            if let Some(l) = limit {
                if self.report.stopcopy_bytes > l {
                    return Err(MigrationError::Protocol {
                        device: self.report.device.clone(),
                        what: format!(
                            "STOP_COPY keeps streaming: {} bytes read, the device estimated {} (the end of stream never came)",
                            self.report.stopcopy_bytes,
                            fresh.unwrap_or(0)
                        ),
                    });
                }
            }
            sink.put_chunk(ChunkKind::Stopcopy, &self.buf[..n])?;
        }
        if let Some(t) = self.stopped_at {
            self.report.stop_copy_seconds = t.elapsed().as_secs_f64();
        }
        self.stage = Stage::Drained;
        Ok(read)
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
            self.armed = false;
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

    /// Reads from the device into the start of the buffer until `want` bytes or the device
    /// returns 0. Only the bytes returned were written by this read; the rest of the buffer
    /// is never handed out.
    fn fill(&mut self, want: usize) -> Result<usize> {
        let mut got = 0;
        while got < want {
            let n = self.drv.read(&mut self.buf[got..want])?;
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
