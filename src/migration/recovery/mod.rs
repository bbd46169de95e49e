//! Returning a device to RUNNING: one set of rules for the engine, the benchmarks, the CLI
//! and the conformance suite, with a report of what was done ([`Recovery`]).
//!
//! The rules (vfio.h; what devices really do is in `hw-notes/mtty-migration.md`):
//! - **RUNNING**: nothing to do.
//! - **RESUMING**: `VFIO_DEVICE_RESET`, the only way vfio.h allows to abort a resume. The
//!   reset is tried even when the device does not advertise `VFIO_DEVICE_FLAGS_RESET`: mtty
//!   does not, yet implements it. If the reset fails on a device that advertises it, recovery
//!   fails. On one that does not, the protocol's own way out is tried: v1 clears `_RESUMING`
//!   (the device validates what it received, as for any other state below); v2 has none
//!   (leaving RESUMING loads the state, vfio.h says to reset), so the reset is tried again.
//! - **ERROR**, or a state that cannot be read: a reset.
//! - **Any other state**: a transition to RUNNING; a reset when it is refused.
//! - After a reset the device must read RUNNING, or recovery fails.
//!
//! At the start of an operation ([`recover_at_start`]) a device found in RESUMING was left
//! there by an earlier session whose data fd is gone. It is reset, and when the reset fails it
//! is left untouched and refused: the other way out, RESUMING -> STOP, asks the driver to load
//! data that no longer exists, and on Linux 6.12 mtty dereferences a NULL migration file there
//! and oopses.

use super::{MigrationDriver, MigrationError, Protocol, Result};
use crate::device::MigState;
use std::fmt;

use crate::device::uapi::DEVICE_FLAGS_RESET;

/// What a recovery step attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// `VFIO_DEVICE_RESET` ([`MigrationDriver::reset`]).
    Reset,
    /// A transition to RUNNING ([`MigrationDriver::set_state`]).
    SetRunning,
}

/// One step of a recovery and how it went.
#[derive(Debug)]
#[non_exhaustive]
pub struct Step {
    /// What was attempted.
    pub action: Action,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<MigrationError>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.action, &self.error) {
            (Action::Reset, None) => f.write_str("reset"),
            (Action::Reset, Some(e)) => write!(f, "reset failed ({e})"),
            (Action::SetRunning, None) => f.write_str("set RUNNING"),
            (Action::SetRunning, Some(e)) => write!(f, "RUNNING refused ({e})"),
        }
    }
}

/// What a recovery did: the state found, the steps tried, the state left.
#[derive(Debug)]
#[non_exhaustive]
pub struct Recovery {
    /// The device.
    pub device: String,
    /// The state found (`None`: it could not be read).
    pub before: Option<MigState>,
    /// The steps tried, in order.
    pub steps: Vec<Step>,
    /// The state left (`None`: it could not be read).
    pub after: Option<MigState>,
    /// Whether the device is RUNNING again.
    ok: bool,
    /// A failure that is not a step's own (the state after a reset).
    check: Option<MigrationError>,
}

impl Recovery {
    fn new(device: String, before: Option<MigState>) -> Self {
        Recovery {
            device,
            before,
            steps: Vec::new(),
            after: None,
            ok: false,
            check: None,
        }
    }

    /// Whether the device is RUNNING again.
    pub fn succeeded(&self) -> bool {
        self.ok
    }

    /// Whether a reset was issued and succeeded.
    pub fn reset_used(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.action == Action::Reset && s.error.is_none())
    }

    /// Why recovery failed; `None` when it succeeded.
    pub fn error(&self) -> Option<&MigrationError> {
        if self.ok {
            return None;
        }
        self.check
            .as_ref()
            .or_else(|| self.steps.iter().rev().find_map(|s| s.error.as_ref()))
    }

    /// The report when the device is RUNNING again, otherwise why it is not.
    pub fn into_result(mut self) -> Result<Recovery> {
        if self.ok {
            return Ok(self);
        }
        if let Some(e) = self.check.take() {
            return Err(e);
        }
        if let Some(e) = self.steps.iter_mut().rev().find_map(|s| s.error.take()) {
            return Err(e);
        }
        Err(MigrationError::WrongState {
            device: self.device,
            op: "recover".into(),
            expected: "RUNNING".into(),
            actual: self.after.unwrap_or(MigState::Error),
        })
    }

    fn done(mut self) -> Self {
        self.after = Some(MigState::Running);
        self.ok = true;
        self
    }

    fn failed(mut self, after: Option<MigState>) -> Self {
        self.after = after;
        self
    }

    /// Records `action`'s outcome; true when it succeeded.
    fn step(&mut self, action: Action, r: Result<()>) -> bool {
        let ok = r.is_ok();
        self.steps.push(Step {
            action,
            error: r.err(),
        });
        ok
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ok && self.steps.is_empty() {
            return f.write_str("the device was RUNNING");
        }
        match self.before {
            Some(s) => write!(f, "from {s}: ")?,
            None => f.write_str("from an unreadable state: ")?,
        }
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{s}")?;
        }
        if self.ok {
            return f.write_str("; the device is RUNNING");
        }
        match self.after {
            Some(s) => write!(f, "; the device is left in {s}")?,
            None => f.write_str("; the device's state is unknown")?,
        }
        if let Some(e) = &self.check {
            write!(f, " ({e})")?;
        }
        Ok(())
    }
}

/// Whether the device advertises `VFIO_DEVICE_RESET` support (`VFIO_DEVICE_FLAGS_RESET`).
pub fn can_reset<D: MigrationDriver + ?Sized>(drv: &D) -> bool {
    drv.device().info().flags & DEVICE_FLAGS_RESET != 0
}

/// Returns a device to RUNNING whatever state it is in, by the rules in the module docs, and
/// reports what was done. See [`Recovery::into_result`] for a `Result`.
pub fn recover<D: MigrationDriver + ?Sized>(drv: &mut D) -> Recovery {
    let before = drv.state();
    let r = Recovery::new(
        drv.device().name().to_string(),
        before.as_ref().ok().copied(),
    );
    run(drv, r, before, false)
}

/// [`recover`] as a `Result`: the report when the device is RUNNING again, the error that
/// stopped recovery otherwise.
pub fn recover_device(drv: &mut dyn MigrationDriver) -> Result<Recovery> {
    recover(drv).into_result()
}

/// Returns a device to RUNNING after `err` ([`recover`]). Returns `err`, or
/// [`MigrationError::Recovery`] when recovery failed too.
pub fn recover_after(drv: &mut dyn MigrationDriver, err: MigrationError) -> MigrationError {
    match recover(drv).into_result() {
        Ok(_) => err,
        Err(re) => MigrationError::Recovery {
            error: Box::new(err),
            recovery: Box::new(re),
        },
    }
}

/// Brings a device found outside RUNNING at the start of an operation back to RUNNING. A
/// device found in RESUMING that cannot be reset is refused and left untouched (see the module
/// docs); a state that cannot be read is an error.
pub fn recover_at_start(drv: &mut dyn MigrationDriver) -> Result<Recovery> {
    let before = drv.state()?;
    let r = Recovery::new(drv.device().name().to_string(), Some(before));
    run(drv, r, Ok(before), true).into_result()
}

/// The rules, from state `cur` (as read into `r.before`).
fn run<D: MigrationDriver + ?Sized>(
    drv: &mut D,
    mut r: Recovery,
    mut cur: Result<MigState>,
    at_start: bool,
) -> Recovery {
    if matches!(cur, Ok(MigState::Resuming)) {
        match drv.reset() {
            Ok(()) => {
                r.step(Action::Reset, Ok(()));
                cur = drv.state();
            }
            Err(e) if at_start => {
                r.check = Some(MigrationError::WrongState {
                    device: r.device.clone(),
                    op: format!("start (the device was left in RESUMING by an earlier session and the reset failed: {e}; leaving RESUMING without its data fd can crash the driver: remove and recreate the device)"),
                    expected: "RUNNING".into(),
                    actual: MigState::Resuming,
                });
                r.step(Action::Reset, Err(e));
                return r.failed(Some(MigState::Resuming));
            }
            Err(e) => {
                let advertised = can_reset(drv);
                r.step(Action::Reset, Err(e));
                if advertised {
                    return r.failed(Some(MigState::Resuming));
                }
                // Not advertised: the protocol's own way out, below.
            }
        }
    }
    let transition = match cur {
        Ok(MigState::Running) => return r.done(),
        Ok(MigState::Error) | Err(_) => false,
        Ok(MigState::Resuming) => drv.protocol() == Protocol::V1,
        Ok(_) => true,
    };
    if transition && r.step(Action::SetRunning, drv.set_state(MigState::Running)) {
        return r.done();
    }
    if !r.step(Action::Reset, drv.reset()) {
        let after = drv.state().ok();
        return r.failed(after);
    }
    match drv.state() {
        Ok(MigState::Running) => r.done(),
        Ok(s) => {
            r.check = Some(MigrationError::WrongState {
                device: r.device.clone(),
                op: "recover by reset".into(),
                expected: "RUNNING".into(),
                actual: s,
            });
            r.failed(Some(s))
        }
        Err(e) => {
            r.check = Some(e);
            r.failed(None)
        }
    }
}

#[cfg(test)]
mod tests;
