//! Returning devices to RUNNING after a failed or interrupted operation.

use crate::device::MigState;
use crate::migration::{MigrationDriver, MigrationError, Result};

/// Returns a device to RUNNING after `err`: a reset when it sits in RESUMING (the only way
/// to abort a resume), otherwise the driver's recovery. Returns `err`, or
/// [`MigrationError::Recovery`] when recovery failed too.
pub fn recover_after(drv: &mut dyn MigrationDriver, err: MigrationError) -> MigrationError {
    match recover_device(drv) {
        Ok(()) => err,
        Err(re) => MigrationError::Recovery {
            error: Box::new(err),
            recovery: Box::new(re),
        },
    }
}

/// `VFIO_DEVICE_FLAGS_RESET`.
const DEVICE_FLAGS_RESET: u32 = 1 << 0;

/// Whether the device advertises `VFIO_DEVICE_RESET` support.
pub fn can_reset(drv: &dyn MigrationDriver) -> bool {
    drv.device().info().flags & DEVICE_FLAGS_RESET != 0
}

/// Returns a device to RUNNING whatever state it is in (see [`recover_after`]).
///
/// A device in RESUMING is reset, the only way vfio.h allows to abort a resume. When the reset
/// is refused and the device does not advertise `VFIO_DEVICE_FLAGS_RESET` (mtty, for one), the
/// only way out of RESUMING is the driver's validation (RESUMING -> STOP): the driver's
/// recovery attempts it, so the device ends up RUNNING with the state it validated, or in its
/// error handling. [`restore_from_file`](super::restore_from_file) verifies the whole file before entering RESUMING on
/// such devices, so this happens only on I/O errors or with non-file sources.
pub fn recover_device(drv: &mut dyn MigrationDriver) -> Result<()> {
    if matches!(drv.state(), Ok(MigState::Resuming)) {
        if let Err(e) = drv.device().reset() {
            if can_reset(drv) {
                return Err(e.into());
            }
        }
    }
    drv.recover()
}

/// Brings a device found outside RUNNING at the start of an operation back to RUNNING.
///
/// A device found in RESUMING was left there by an earlier session (its data fd is gone). It
/// is reset; when the reset is refused it is left untouched and refused, because the other
/// way out, RESUMING -> STOP, asks the driver to load data that no longer exists: on Linux
/// 6.12 mtty dereferences a NULL migration file there and oopses.
pub(super) fn start_from_running(drv: &mut dyn MigrationDriver) -> Result<()> {
    let s = drv.state()?;
    if s == MigState::Running {
        return Ok(());
    }
    if s == MigState::Resuming {
        if let Err(e) = drv.device().reset() {
            return Err(MigrationError::WrongState {
                device: drv.device().name().to_string(),
                op: format!("start (the device was left in RESUMING by an earlier session and the reset failed: {e}; leaving RESUMING without its data fd can crash the driver: remove and recreate the device)"),
                expected: "RUNNING".into(),
                actual: s,
            });
        }
    }
    drv.recover()
}
