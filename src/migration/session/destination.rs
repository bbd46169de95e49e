//! The destination side of a session: a device taking a state in RESUMING.

use super::EndState;
use crate::device::{DeviceHandle, MigFlags, MigState};
use crate::migration::recovery::{recover_at_start, Recovery};
use crate::migration::{MigrationDriver, MigrationError, Protocol, Result};
use std::time::Instant;

/// What a finished [`DestinationSession`] did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DestinationReport {
    /// The device.
    pub device: String,
    /// Its migration protocol.
    pub protocol: Protocol,
    /// Bytes written into the device.
    pub bytes: u64,
    /// Writes (chunks) made.
    pub chunks: u64,
    /// Leaving RESUMING (the device validating and loading the state), seconds.
    pub commit_seconds: f64,
    /// The state the device was left in.
    pub end: MigState,
}

/// A device taking a state: RESUMING from [`new`](Self::new) until
/// [`finish`](Self::finish) loads it. See the [module docs](super) for an example.
///
/// Dropped before `finish` (an error, a panic), the device is reset out of RESUMING back to
/// RUNNING, discarding what it received (vfio.h: a resume can only be aborted by a reset);
/// [`abort`](Self::abort) does the same and reports how.
///
/// # Examples
///
/// Feeding a saved stream chunk by chunk (each chunk verified by the reader before the
/// device sees it), the device left stopped for its VMM to start:
///
/// ```
/// use vfio_harness::device::MigState;
/// use vfio_harness::migration::session::{DestinationSession, EndState};
/// use vfio_harness::migration::stream::StreamReader;
/// use vfio_harness::migration::{driver_for, engine};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     Ok(driver_for(vfio_harness::open(&spec.parse()?, &Default::default())?)?)
/// };
/// let mut src = open("sim:state=1M,seed=5")?;
/// let (saved, _) = engine::save(src.as_mut(), Vec::new(), "memory", &Default::default())?;
///
/// let mut dst = open("sim:state=1M,verify-seed=5")?;
/// let mut reader = StreamReader::new(&saved[..])?;
/// let mut buf = vec![0; reader.header().max_chunk as usize];
/// let mut target = DestinationSession::new(dst.as_mut())?;
/// while let Some((_kind, len)) = reader.next_chunk(&mut buf)? {
///     target.write(&buf[..len])?;
/// }
/// target.finish(EndState::Stop)?;
/// assert_eq!(dst.state()?, MigState::Stop);
/// dst.set_state(MigState::Running)?; // the VMM starts it
/// # Ok(())
/// # }
/// ```
pub struct DestinationSession<'d> {
    drv: &'d mut dyn MigrationDriver,
    report: DestinationReport,
    /// In RUNNING_P2P after loading (a group's first step).
    loaded: bool,
    armed: bool,
}

impl std::fmt::Debug for DestinationSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationSession")
            .field("device", &self.report.device)
            .field("bytes", &self.report.bytes)
            .field("loaded", &self.loaded)
            .finish_non_exhaustive()
    }
}

impl<'d> DestinationSession<'d> {
    /// Puts the device in RESUMING. A device left in RESUMING by an earlier session is reset
    /// first; any other state is returned to RUNNING first ([`crate::migration::recovery`]).
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: the device was left in RESUMING by an earlier
    ///   session and cannot be reset (it is left untouched).
    /// - [`MigrationError::Device`]: the device refused RESUMING, or its state cannot be
    ///   read.
    pub fn new(drv: &'d mut dyn MigrationDriver) -> Result<Self> {
        recover_at_start(drv)?;
        let mut s = DestinationSession::unguarded(drv)?;
        s.armed = true;
        Ok(s)
    }

    /// Puts the device in RESUMING from where it is, without [`recover_at_start`], in a
    /// session that leaves recovering the device to the caller (never on drop, nor when
    /// `finish` fails): for the one-call engine, which recovers its devices itself so that
    /// its error reports the recovery's outcome.
    pub(crate) fn unguarded(drv: &'d mut dyn MigrationDriver) -> Result<Self> {
        drv.set_state(MigState::Resuming)?;
        let report = DestinationReport {
            device: drv.device().name().to_string(),
            protocol: drv.protocol(),
            bytes: 0,
            chunks: 0,
            commit_seconds: 0.0,
            end: MigState::Resuming,
        };
        Ok(DestinationSession {
            drv,
            report,
            loaded: false,
            armed: false,
        })
    }

    /// The driver, for what the session does not cover.
    pub fn driver(&mut self) -> &mut dyn MigrationDriver {
        &mut *self.drv
    }

    pub(super) fn identity(&self) -> (&DeviceHandle, Protocol) {
        (self.drv.device(), self.drv.protocol())
    }

    /// Writes all of `data` into the device.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: the state was already loaded.
    /// - [`MigrationError::Device`]: the device refused a write.
    /// - [`MigrationError::Protocol`]: the device accepted 0 bytes, or more than offered.
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        if self.loaded {
            return Err(self.wrong("write state"));
        }
        while !data.is_empty() {
            let n = self.drv.write(data)?;
            if n == 0 || n > data.len() {
                return Err(MigrationError::Protocol {
                    device: self.report.device.clone(),
                    what: format!("write accepted {n} of {} bytes", data.len()),
                });
            }
            self.report.bytes += n as u64;
            data = &data[n..];
        }
        self.report.chunks += 1;
        Ok(())
    }

    /// Leaves RESUMING for RUNNING_P2P: the device loads the state and runs, but initiates
    /// no peer-to-peer DMA yet. [`DestinationGroup`](super::DestinationGroup) does this for
    /// every device before any of them runs fully.
    ///
    /// # Errors
    ///
    /// [`MigrationError::Device`]: the device refused the state or the transition (the
    /// session is still armed: dropping it resets the device).
    pub(super) fn load_p2p(&mut self) -> Result<()> {
        if self.loaded {
            return Ok(());
        }
        let t0 = Instant::now();
        self.drv.set_state(MigState::RunningP2p)?;
        self.report.commit_seconds = t0.elapsed().as_secs_f64();
        self.loaded = true;
        Ok(())
    }

    /// Leaves RESUMING for a state where the device holds the loaded state without running
    /// it fully: RUNNING_P2P, or STOP when the device has no P2P states (the engine's
    /// [`P2pStep::Loaded`](crate::migration::engine::P2pStep::Loaded)). Returns that state.
    ///
    /// # Errors
    ///
    /// [`MigrationError::Device`]: the device refused the state or the transition.
    pub(crate) fn load_held(&mut self) -> Result<MigState> {
        if self.has_p2p() {
            self.load_p2p()?;
            return Ok(MigState::RunningP2p);
        }
        if !self.loaded {
            let t0 = Instant::now();
            self.drv.set_state(MigState::Stop)?;
            self.report.commit_seconds = t0.elapsed().as_secs_f64();
            self.loaded = true;
        }
        Ok(MigState::Stop)
    }

    /// Whether the device has the P2P states.
    pub(super) fn has_p2p(&self) -> bool {
        self.drv.flags().has(MigFlags::P2P)
    }

    /// Leaves RESUMING: the device validates and loads the state, and is left in `end`
    /// (RUNNING; or STOP, for a VMM that starts it later with
    /// [`MigrationDriver::set_state`]).
    ///
    /// # Errors
    ///
    /// [`MigrationError::Device`] (or [`MigrationError::Protocol`]): the device refused the
    /// state. It is then reset back to RUNNING, and the error is
    /// [`MigrationError::Recovery`] when that failed too.
    pub fn finish(mut self, end: EndState) -> Result<DestinationReport> {
        let t0 = Instant::now();
        super::set_end_state(&mut *self.drv, end, &mut self.armed)?;
        if !self.loaded {
            self.report.commit_seconds = t0.elapsed().as_secs_f64();
        }
        self.report.end = end.state();
        Ok(self.report.clone())
    }

    /// Gives up: resets the device out of RESUMING back to RUNNING and reports how.
    ///
    /// # Errors
    ///
    /// Why the device could not be returned to RUNNING.
    pub fn abort(mut self) -> Result<Recovery> {
        super::recover_now(&mut *self.drv, &mut self.armed).into_result()
    }

    fn wrong(&self, op: &str) -> MigrationError {
        MigrationError::WrongState {
            device: self.report.device.clone(),
            op: format!("{op} (session)"),
            expected: "RESUMING".into(),
            actual: MigState::RunningP2p,
        }
    }
}

impl Drop for DestinationSession<'_> {
    fn drop(&mut self) {
        if self.armed {
            // `abort` is the way to see the outcome; the recovery has run either way.
            let _report = super::recover_now(&mut *self.drv, &mut self.armed);
        }
    }
}
