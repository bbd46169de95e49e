//! Moving several devices together through the P2P states when each has its own engine
//! operation (its own thread, its own stream): the hook an operation calls at its P2P points
//! ([`Options::p2p`](super::Options::p2p)), and [`P2pBarrier`], the hook that makes every
//! operation of a group wait for the others there.
//!
//! vfio.h: devices that may do peer-to-peer DMA to each other must all reach RUNNING_P2P (or
//! PRE_COPY_P2P) before any of them stops, and on the destination all reach RUNNING_P2P
//! before any of them runs. [`crate::migration::session::SourceGroup`] does this for devices
//! driven step by step on one thread; the hook does it for one-call operations in parallel.

use super::Cancel;
use crate::device::MigState;
use crate::migration::{MigrationError, Result};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Where an operation calls its [`P2pHook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum P2pStep {
    /// Source ([`save`](super::save()), [`migrate`](super::migrate())): pre-copy is over,
    /// the device still RUNNING or PRE_COPY, about to enter its P2P state.
    Ready,
    /// Source: the device is in RUNNING_P2P or PRE_COPY_P2P (RUNNING or PRE_COPY when it
    /// has no P2P states), about to stop (STOP_COPY).
    Quiesced,
    /// Destination ([`restore`](super::restore())): the stream verified to its trailer and
    /// the device loaded the state into RUNNING_P2P (STOP when it has no P2P states), about
    /// to run (RUNNING).
    Loaded,
}

/// What the hook is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct P2pPoint<'a> {
    /// Which point.
    pub step: P2pStep,
    /// The device's name.
    pub device: &'a str,
    /// The state the device is in.
    pub state: MigState,
}

/// The hook of [`Options::p2p`](super::Options::p2p): called at each [`P2pStep`] on a
/// thread of the device's operation (the calling thread, or the helper reading the source
/// with it: [`Options::overlap`](super::Options::overlap)), once per step; the operation goes on when it returns `Ok`. An error stops the operation:
/// a source is returned to RUNNING with its state (it never stopped), a destination that
/// loaded the state is reset (its state discarded) and left RUNNING.
pub type P2pHook = Arc<dyn Fn(&P2pPoint<'_>) -> Result<()> + Send + Sync>;

/// A barrier for the engine operations of one group (one per side): every member waits at
/// each step until all members reached it. A member that fails [`abort`](Self::abort)s it
/// (the others' waits then fail with [`MigrationError::PeerStopped`]); a set cancel flag
/// makes waits fail with [`MigrationError::Interrupted`].
///
/// # Examples
///
/// Two simulated devices saved on two threads, neither stopping before both are in
/// PRE_COPY_P2P:
///
/// ```
/// use vfio_harness::migration::engine::{self, Options, P2pBarrier, PrecopyPolicy};
/// use vfio_harness::migration::driver_for;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     Ok(driver_for(vfio_harness::open(&spec.parse()?, &Default::default())?)?)
/// };
/// let mut a = open("sim:state=256K,seed=1")?; // the simulator has the P2P states
/// let mut b = open("sim:state=256K,seed=2")?;
/// let barrier = P2pBarrier::new(2);
/// let opts = Options {
///     precopy: PrecopyPolicy { max_rounds: 1, dirty_threshold: 0, ..Default::default() },
///     p2p: Some(barrier.hook()),
///     ..Options::default()
/// };
/// let (ra, rb) = std::thread::scope(|s| {
///     let ta = s.spawn(|| engine::save(a.as_mut(), Vec::new(), "a", &opts));
///     let tb = s.spawn(|| engine::save(b.as_mut(), Vec::new(), "b", &opts));
///     (ta.join(), tb.join())
/// });
/// let (ra, rb) = (ra.expect("thread a")?, rb.expect("thread b")?);
/// assert!(ra.1.bytes >= 256 << 10 && rb.1.bytes >= 256 << 10);
/// # Ok(())
/// # }
/// ```
pub struct P2pBarrier {
    members: usize,
    state: Mutex<BarrierState>,
    cv: Condvar,
    cancel: Option<Cancel>,
}

#[derive(Default)]
struct BarrierState {
    /// Members arrived at the current step.
    arrived: usize,
    /// Steps completed (every member arrived).
    generation: u64,
    aborted: bool,
}

/// How often a waiting member looks at the cancel flag.
const POLL: Duration = Duration::from_millis(20);

impl P2pBarrier {
    /// A barrier for `members` operations.
    pub fn new(members: usize) -> Arc<P2pBarrier> {
        Self::build(members, None)
    }

    /// A barrier whose waits also end when `cancel` is set.
    pub fn with_cancel(members: usize, cancel: Cancel) -> Arc<P2pBarrier> {
        Self::build(members, Some(cancel))
    }

    fn build(members: usize, cancel: Option<Cancel>) -> Arc<P2pBarrier> {
        Arc::new(P2pBarrier {
            members,
            state: Mutex::new(BarrierState::default()),
            cv: Condvar::new(),
            cancel,
        })
    }

    fn lock(&self) -> MutexGuard<'_, BarrierState> {
        // The state is a few counters, consistent at every unlock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every member reached this step.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::PeerStopped`]: a member aborted the barrier.
    /// - [`MigrationError::Interrupted`]: the cancel flag was set.
    pub fn wait(&self) -> Result<()> {
        let mut g = self.lock();
        if g.aborted {
            return Err(MigrationError::PeerStopped);
        }
        let generation = g.generation;
        g.arrived += 1;
        if g.arrived >= self.members {
            g.arrived = 0;
            g.generation += 1;
            self.cv.notify_all();
            return Ok(());
        }
        loop {
            if g.generation != generation {
                return Ok(());
            }
            if g.aborted {
                return Err(MigrationError::PeerStopped);
            }
            if self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                g.aborted = true;
                self.cv.notify_all();
                return Err(MigrationError::Interrupted);
            }
            g = self
                .cv
                .wait_timeout(g, POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Fails every wait, now and later: a member gave up.
    pub fn abort(&self) {
        self.lock().aborted = true;
        self.cv.notify_all();
    }

    /// Whether the barrier was aborted.
    pub fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    /// The hook that waits at this barrier at every step.
    pub fn hook(self: &Arc<Self>) -> P2pHook {
        let b = Arc::clone(self);
        Arc::new(move |_: &P2pPoint<'_>| b.wait())
    }
}

impl std::fmt::Debug for P2pBarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("P2pBarrier")
            .field("members", &self.members)
            .field("arrived", &g.arrived)
            .field("generation", &g.generation)
            .field("aborted", &g.aborted)
            .finish()
    }
}
