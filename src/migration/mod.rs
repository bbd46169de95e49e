//! Device-state migration: the v2 and v1 protocol drivers, the stream format,
//! save/restore/migrate, compatibility and conformance. The state model they walk (states,
//! arcs, the kernel's paths) is [`crate::device::fsm`], beneath every back end.
//!
//! Both protocols are driven through one interface, [`MigrationDriver`], so the engine,
//! conformance suite and benchmarks work on v1 and v2 devices alike:
//! - v2 (Linux >= 5.18): `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` and a data fd
//!   ([`v2::V2Driver`]).
//! - v1 (Linux 5.8..5.19 and vendor backports): a migration region (type 3 / subtype 1) with
//!   `device_state`, `pending_bytes`, `data_offset`, `data_size` and a data section
//!   ([`v1::V1Driver`]).

pub mod attrs;
pub(crate) mod chunk_size;
pub mod compat;
pub mod conformance;
pub mod engine;
mod error;
pub mod recovery;
pub mod session;
pub mod stream;
pub mod v1;
pub mod v2;
pub mod workload;

pub use chunk_size::MIN_BUFFER;
pub use error::{MigrationError, Result};

/// The migration v2 state model, which lives in [`crate::device::fsm`] (the floor beneath the
/// back ends); this path is kept so that code written against `migration::fsm` still builds.
#[doc(no_inline)]
pub use crate::device::fsm;

use crate::device::{DeviceHandle, MigFlags, MigState};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which migration protocol a device speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The region-based v1 protocol.
    V1,
    /// The device-feature v2 protocol.
    V2,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        })
    }
}

/// What is left to send while pre-copying.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Initial state bytes not yet read (v2 `initial_bytes`; v1 reports everything here).
    pub initial_bytes: u64,
    /// Dirty bytes not yet read (v2 `dirty_bytes`; 0 for v1, which does not split).
    pub dirty_bytes: u64,
}

impl Pending {
    /// Total bytes pending.
    pub fn total(&self) -> u64 {
        self.initial_bytes.saturating_add(self.dirty_bytes)
    }
}

/// A protocol-independent handle on one device's migration.
///
/// States are named with the v2 vocabulary. A v1 driver maps them onto `device_state` bits:
/// RUNNING = `_RUNNING`, STOP = 0, PRE_COPY = `_SAVING | _RUNNING`, STOP_COPY = `_SAVING`,
/// RESUMING = `_RESUMING`; the P2P states do not exist in v1.
pub trait MigrationDriver: Send {
    /// The protocol.
    fn protocol(&self) -> Protocol;

    /// The device being driven.
    fn device(&self) -> &DeviceHandle;

    /// Capabilities in v2 terms (a v1 device reports `STOP_COPY | PRE_COPY`).
    fn flags(&self) -> MigFlags;

    /// Requests a state; the protocol walks whatever path it needs.
    fn set_state(&mut self, state: MigState) -> Result<()>;

    /// Reads the current state.
    fn state(&mut self) -> Result<MigState>;

    /// Reads saved state into `buf`. In STOP_COPY, `Ok(0)` is the end of the stream. In the
    /// pre-copy states, `Ok(0)` means nothing is pending right now (v2 `ENOMSG`, v1
    /// `pending_bytes == 0`); more may come later.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;

    /// Writes state into the device in RESUMING; returns how much was accepted (> 0).
    fn write(&mut self, buf: &[u8]) -> Result<usize>;

    /// What is left to send (pre-copy states).
    fn pending(&mut self) -> Result<Pending>;

    /// The device's estimate of the STOP_COPY size, when it offers one.
    fn stop_copy_size(&mut self) -> Result<Option<u64>>;

    /// Resets the device (`VFIO_DEVICE_RESET`), which returns it to RUNNING, and forgets
    /// whatever the driver knew about its migration state and data. Wrappers that run
    /// something against the device stop it first.
    fn reset(&mut self) -> Result<()> {
        Ok(self.device().reset()?)
    }

    /// Returns the device to RUNNING whatever state it is in, by the rules of
    /// [`recovery`] (a transition when the device allows it, a reset otherwise).
    /// [`recovery::recover`] reports what it did.
    fn recover(&mut self) -> Result<()> {
        recovery::recover(self).into_result().map(drop)
    }
}

/// Picks the driver for a device: v2 when the device reports migration flags, v1 when it
/// has a migration region (type 3 / subtype 1), otherwise an error saying it cannot migrate.
///
/// # Examples
///
/// On the simulator (a v1 device is `sim:protocol=v1`):
///
/// ```
/// use vfio_harness::device::MigState;
/// use vfio_harness::migration::{driver_for, Protocol};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dev = vfio_harness::open(&"sim:state=1M,seed=3".parse()?, &Default::default())?;
/// let mut drv = driver_for(dev)?;
/// assert_eq!(drv.protocol(), Protocol::V2);
/// assert_eq!(drv.state()?, MigState::Running);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// - [`MigrationError::NotMigratable`] when the device offers neither protocol.
/// - [`MigrationError::Device`] when querying the device's migration support fails (for
///   example `VFIO_DEVICE_FEATURE` returning an errno other than "not supported").
/// - [`MigrationError::Protocol`] when a v1 migration region cannot hold the migration
///   header and a data section, or is not readable and writable.
pub fn driver_for(device: DeviceHandle) -> Result<Box<dyn MigrationDriver>> {
    if let Some(flags) = device.migration_flags()? {
        return Ok(Box::new(v2::V2Driver::new(device, flags)));
    }
    if v1::V1Driver::probe(&device).is_some() {
        return Ok(Box::new(v1::V1Driver::new(device)?));
    }
    Err(MigrationError::NotMigratable {
        device: device.name().to_string(),
    })
}
