//! Several devices moved together, through the P2P states (vfio.h: "all the devices must
//! reach RUNNING_P2P before any of them is stopped").

use super::{DestinationReport, DestinationSession, EndState, SourceReport, SourceSession};
use crate::device::MigFlags;
use crate::migration::Result;

/// The source sessions of devices that move together (one guest's devices).
///
/// [`stop_copy`](Self::stop_copy) first brings every device that has the P2P states to
/// RUNNING_P2P (or PRE_COPY_P2P), so none of them initiates peer-to-peer DMA into a device
/// that has already stopped, and only then stops them all. Reading each device's state is
/// per member ([`members`](Self::members)). Dropped, every unfinished member returns to
/// RUNNING.
///
/// # Examples
///
/// ```
/// use vfio_harness::device::MigState;
/// use vfio_harness::migration::driver_for;
/// use vfio_harness::migration::session::{
///     DestinationGroup, DestinationSession, EndState, SourceGroup, SourceSession,
/// };
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     Ok(driver_for(vfio_harness::open(&spec.parse()?, &Default::default())?)?)
/// };
/// let flags = "flags=STOP_COPY|P2P|PRE_COPY";
/// let mut a = open(&format!("sim:state=256K,seed=1,{flags}"))?;
/// let mut b = open(&format!("sim:state=256K,seed=2,{flags}"))?;
/// let mut a2 = open(&format!("sim:state=256K,verify-seed=1,{flags}"))?;
/// let mut b2 = open(&format!("sim:state=256K,verify-seed=2,{flags}"))?;
///
/// let mut sources = SourceGroup::new(vec![
///     SourceSession::new(a.as_mut())?,
///     SourceSession::new(b.as_mut())?,
/// ]);
/// let mut targets = DestinationGroup::new(vec![
///     DestinationSession::new(a2.as_mut())?,
///     DestinationSession::new(b2.as_mut())?,
/// ]);
/// sources.stop_copy()?; // both reach RUNNING_P2P, then both STOP_COPY
/// for (s, t) in sources.members().iter_mut().zip(targets.members().iter_mut()) {
///     s.drain(t)?;
/// }
/// sources.finish(EndState::Stop)?;
/// targets.finish(EndState::Running)?; // both RUNNING_P2P, then both RUNNING
/// assert_eq!(a.state()?, MigState::Stop);
/// assert_eq!(b2.state()?, MigState::Running);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SourceGroup<'d> {
    members: Vec<SourceSession<'d>>,
}

impl<'d> SourceGroup<'d> {
    /// Groups sessions, in the order their devices are handled.
    pub fn new(members: Vec<SourceSession<'d>>) -> Self {
        SourceGroup { members }
    }

    /// The sessions, for the per-device steps (pre-copy rounds, draining).
    pub fn members(&mut self) -> &mut [SourceSession<'d>] {
        &mut self.members
    }

    /// Starts pre-copy on every member whose device has PRE_COPY (the others keep running
    /// until [`stop_copy`](Self::stop_copy)).
    ///
    /// # Errors
    ///
    /// The first member's error ([`SourceSession::start_precopy`]); the members before it
    /// are pre-copying.
    pub fn start_precopy(&mut self) -> Result<()> {
        for m in &mut self.members {
            if m.driver().flags().has(MigFlags::PRE_COPY) {
                m.start_precopy()?;
            }
        }
        Ok(())
    }

    /// Brings every member with P2P states to RUNNING_P2P / PRE_COPY_P2P, then stops every
    /// member (STOP_COPY). No member is stopped unless all reached their P2P state.
    ///
    /// # Errors
    ///
    /// The first member's error ([`SourceSession::quiesce`], [`SourceSession::stop_copy`]).
    pub fn stop_copy(&mut self) -> Result<()> {
        for m in &mut self.members {
            if m.has_p2p() {
                m.quiesce()?;
            }
        }
        for m in &mut self.members {
            m.stop_copy()?;
        }
        Ok(())
    }

    /// Finishes every member ([`SourceSession::finish`]) in `end`.
    ///
    /// # Errors
    ///
    /// The first member's error; the members after it are returned to RUNNING.
    pub fn finish(self, end: EndState) -> Result<Vec<SourceReport>> {
        self.members.into_iter().map(|m| m.finish(end)).collect()
    }
}

/// The destination sessions of devices that move together.
///
/// [`finish`](Self::finish) in RUNNING first loads every device with P2P states into
/// RUNNING_P2P, and only then lets them all run, so none is the target of peer-to-peer DMA
/// before its state is loaded. Dropped, every unfinished member is reset back to RUNNING.
/// See [`SourceGroup`] for an example.
#[derive(Debug)]
pub struct DestinationGroup<'d> {
    members: Vec<DestinationSession<'d>>,
}

impl<'d> DestinationGroup<'d> {
    /// Groups sessions, in the order their devices are handled.
    pub fn new(members: Vec<DestinationSession<'d>>) -> Self {
        DestinationGroup { members }
    }

    /// The sessions, for writing each device's state.
    pub fn members(&mut self) -> &mut [DestinationSession<'d>] {
        &mut self.members
    }

    /// Loads every member's state and leaves them in `end`: for RUNNING, every member with
    /// P2P states reaches RUNNING_P2P before any member runs.
    ///
    /// # Errors
    ///
    /// The first member's error ([`DestinationSession::finish`]); the unfinished members
    /// are reset back to RUNNING.
    pub fn finish(mut self, end: EndState) -> Result<Vec<DestinationReport>> {
        if end == EndState::Running {
            for m in &mut self.members {
                if m.has_p2p() {
                    m.load_p2p()?;
                }
            }
        }
        self.members.into_iter().map(|m| m.finish(end)).collect()
    }
}
