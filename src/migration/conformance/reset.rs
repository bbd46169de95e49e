//! `reset`: `VFIO_DEVICE_RESET` returns the migration state to RUNNING from every state the
//! flags allow and ends the data session that was open.

use super::ctx::{Step, Suite};
use super::report::CheckVerdict::{Fail, Pass, Skip};
use crate::device::uapi::DEVICE_FLAGS_RESET;
use crate::device::{fsm, MigState};
use crate::migration::MigrationError;

fn from(s: &mut Suite<'_>, st: MigState) -> Result<Option<String>, MigrationError> {
    if st != MigState::Running {
        s.drv.set_state(st)?;
    }
    let mut read_before = false;
    if fsm::is_saving(st) {
        // Best effort: the session is open whether or not the device likes 1-byte reads.
        read_before = matches!(s.read_step(1), Ok(Step::Data(_)));
    }
    s.drv.reset()?;
    let got = s.drv.state()?;
    if got != MigState::Running {
        return Ok(Some(format!(
            "from {st}: the device reports {got} after the reset"
        )));
    }
    if fsm::is_saving(st) && s.v2 {
        if let Ok(Step::Data(n)) = s.read_step(4096) {
            return Ok(Some(format!(
                "from {st}: the session opened before the reset still returned {n} bytes{}",
                if read_before {
                    ""
                } else {
                    " (and none before it)"
                }
            )));
        }
    }
    Ok(None)
}

/// The check.
pub(super) fn reset(s: &mut Suite<'_>) {
    s.check("reset", |s| {
        let advertised = s.dev.info().flags & DEVICE_FLAGS_RESET != 0;
        let states = fsm::states(s.flags);
        let mut bad = Vec::new();
        for &st in &states {
            match from(s, st) {
                Ok(None) => {}
                Ok(Some(why)) => bad.push(why),
                Err(e) if !advertised && bad.is_empty() && st == MigState::Running => {
                    return Ok((Skip, format!("the device does not advertise VFIO_DEVICE_FLAGS_RESET and reset failed ({e})")));
                }
                Err(e) => bad.push(format!("from {st}: {e}")),
            }
            s.back_to_running()?;
        }
        let note = if advertised { "" } else { " (VFIO_DEVICE_FLAGS_RESET not advertised, reset works anyway)" };
        Ok(if bad.is_empty() {
            (Pass, format!("RUNNING after reset from each of {} states; open sessions ended{note}", states.len()))
        } else {
            (Fail, bad.join("; "))
        })
    });
}
