//! Migration sessions: the steps of a migration, one call each, for a program (a VMM) that
//! decides between them.
//!
//! The one-call engine ([`super::engine`]) runs a whole save, restore or migration and leaves
//! every device RUNNING. A VMM handing a guest over needs more: pre-copy while the guest
//! runs, look at what is pending and decide when to stop, pause its vCPUs, stop the device,
//! stream the rest, and leave the source **stopped** (the guest now runs elsewhere). The
//! session types split the work into those steps:
//!
//! - [`SourceSession`]: a device being saved. [`start_precopy`](SourceSession::start_precopy)
//!   (RUNNING -> PRE_COPY), [`precopy_info`](SourceSession::precopy_info),
//!   [`precopy_round`](SourceSession::precopy_round), [`quiesce`](SourceSession::quiesce)
//!   (-> RUNNING_P2P / PRE_COPY_P2P), [`stop_copy`](SourceSession::stop_copy) (-> STOP_COPY),
//!   [`drain`](SourceSession::drain) (read to the end of the state), and
//!   [`finish`](SourceSession::finish) in the [`EndState`] the caller chooses: RUNNING for a
//!   snapshot, STOP for a handoff.
//! - [`DestinationSession`]: a device being restored: RESUMING, [`write`](DestinationSession::write)
//!   what the source produced, [`finish`](DestinationSession::finish) (the device loads the
//!   state) in RUNNING or STOP.
//! - [`SourceGroup`] and [`DestinationGroup`]: several devices moved together, the way vfio.h
//!   asks for devices that may do peer-to-peer DMA: every device reaches RUNNING_P2P (or
//!   PRE_COPY_P2P) before any of them stops, and on the destination every device reaches
//!   RUNNING_P2P before any of them runs. (One-call engine operations on parallel threads
//!   do the same with [`engine::P2pBarrier`](super::engine::P2pBarrier).)
//!
//! Chunks go to a [`ChunkSink`]: a [`DestinationSession`] (device to device), a
//! [`StreamWriter`] (the checksummed stream format, into a file or a connection), or a
//! closure.
//!
//! **Devices are never left half-way.** A session that is dropped before
//! [`finish`](SourceSession::finish) returns its device to RUNNING by the rules of
//! [`super::recovery`] (a destination caught in RESUMING is reset), including when it is
//! dropped because a sink or a caller's code panicked: the panic goes on, the device is
//! RUNNING. A step that fails leaves the session as it was, so the caller may look at the
//! device, retry, or [`abort`](SourceSession::abort) to get the recovery report.
//! Sessions run on the calling thread and never spawn one; sinks are called on it too.
//!
//! A caller that moves the data on another thread reads into buffers of its own instead of
//! a sink: [`begin_round`](SourceSession::begin_round) /
//! [`read_round`](SourceSession::read_round) / [`end_round`](SourceSession::end_round) for a
//! pre-copy round and [`read_stopped`](SourceSession::read_stopped) for the stopped state
//! (the one-call engine does this, overlapping the device's reads with the stream's
//! writes); [`with_cancel`](SourceSession::with_cancel) makes every read check a flag.
//!
//! # Examples
//!
//! A handoff between simulated devices: pre-copy until little is pending, pause the guest,
//! stop the source and send the rest, run the destination, leave the source stopped.
//!
//! ```
//! use vfio_harness::device::MigState;
//! use vfio_harness::migration::driver_for;
//! use vfio_harness::migration::session::{DestinationSession, EndState, SourceSession};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
//!     Ok(driver_for(vfio_harness::open(&spec.parse()?, &Default::default())?)?)
//! };
//! let mut src = open("sim:state=1M,seed=7")?;
//! let mut dst = open("sim:state=1M,verify-seed=7")?;
//!
//! let mut source = SourceSession::new(src.as_mut())?;
//! let mut target = DestinationSession::new(dst.as_mut())?;
//! source.check_target(&target)?;
//! source.start_precopy()?;
//! for _ in 0..8 {
//!     source.precopy_round(&mut target)?;
//!     if source.precopy_info()?.total() < 64 << 10 {
//!         break;
//!     }
//! }
//! // (the VMM pauses its vCPUs here)
//! source.stop_copy()?;
//! source.drain(&mut target)?;
//! let sent = source.finish(EndState::Stop)?;
//! let received = target.finish(EndState::Running)?;
//! assert_eq!(sent.bytes(), received.bytes);
//! assert_eq!(src.state()?, MigState::Stop);
//! assert_eq!(dst.state()?, MigState::Running);
//! # Ok(())
//! # }
//! ```

mod destination;
mod group;
mod reading;
mod source;

pub use destination::{DestinationReport, DestinationSession};
pub use group::{DestinationGroup, SourceGroup};
pub use source::{SourceReport, SourceSession};

use crate::device::MigState;
use crate::migration::recovery::{self, Recovery};
use crate::migration::stream::{ChunkKind, StreamWriter};
use crate::migration::{MigrationDriver, Result};
use std::io::Write;

/// The state a session leaves its device in when it finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndState {
    /// RUNNING: the source carries on (a snapshot, a checkpoint), the destination runs.
    Running,
    /// STOP: the device is left stopped (a handoff: the guest now runs on the destination;
    /// or a destination whose VMM starts it later with
    /// [`MigrationDriver::set_state`]).
    Stop,
}

impl EndState {
    /// The migration state this is.
    pub fn state(self) -> MigState {
        match self {
            EndState::Running => MigState::Running,
            EndState::Stop => MigState::Stop,
        }
    }
}

/// Sets a finishing session's end state. The session is disarmed either way; when the
/// device refuses and the session was armed, the device is returned to RUNNING (the error is
/// [`MigrationError::Recovery`](crate::migration::MigrationError::Recovery) when that fails
/// too); an unguarded session (the engine's) leaves that to its caller.
fn set_end_state(drv: &mut dyn MigrationDriver, end: EndState, armed: &mut bool) -> Result<()> {
    let guard = std::mem::replace(armed, false);
    match drv.set_state(end.state()) {
        Ok(()) => Ok(()),
        Err(e) if guard => Err(recovery::recover_after(drv, e)),
        Err(e) => Err(e),
    }
}

/// Gives a session's device up: disarms the session and returns the device to RUNNING.
fn recover_now(drv: &mut dyn MigrationDriver, armed: &mut bool) -> Recovery {
    *armed = false;
    recovery::recover(drv)
}

/// Where a source session's state goes, chunk by chunk.
///
/// Implemented by [`DestinationSession`] (the chunk is written into the device),
/// [`StreamWriter`] (the chunk is framed and checksummed into a stream), and closures taking
/// the chunk's kind and bytes.
///
/// # Examples
///
/// ```
/// use vfio_harness::migration::session::{ChunkSink, SourceSession, EndState};
/// use vfio_harness::migration::driver_for;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut drv = driver_for(vfio_harness::open(&"sim:state=64K".parse()?, &Default::default())?)?;
/// let mut total = 0;
/// let mut count = |_kind, data: &[u8]| {
///     total += data.len();
///     Ok(())
/// };
/// let mut s = SourceSession::new(drv.as_mut())?;
/// s.stop_copy()?;
/// s.drain(&mut count)?;
/// s.finish(EndState::Running)?;
/// assert!(total >= 64 << 10);
/// # Ok(())
/// # }
/// ```
pub trait ChunkSink {
    /// Takes one chunk of `kind` (read while the source ran, or after it stopped).
    ///
    /// # Errors
    ///
    /// Whatever the sink could not do; the session stops reading and returns it.
    fn put_chunk(&mut self, kind: ChunkKind, data: &[u8]) -> Result<()>;
}

impl<F> ChunkSink for F
where
    F: FnMut(ChunkKind, &[u8]) -> Result<()>,
{
    fn put_chunk(&mut self, kind: ChunkKind, data: &[u8]) -> Result<()> {
        self(kind, data)
    }
}

impl<W: Write> ChunkSink for StreamWriter<W> {
    fn put_chunk(&mut self, kind: ChunkKind, data: &[u8]) -> Result<()> {
        self.write_chunk(kind, data)
    }
}

impl ChunkSink for DestinationSession<'_> {
    fn put_chunk(&mut self, _kind: ChunkKind, data: &[u8]) -> Result<()> {
        self.write(data)
    }
}

#[cfg(test)]
mod tests;
