//! `state-after-arc`: after every single arc and every combination transition the flags
//! allow, GET returns the state reached; refused requests (ERROR, states the flags do not
//! offer, the forbidden STOP_COPY -> PRE_COPY arcs) leave the device where it was (or in
//! ERROR), as the uAPI documents for a failed SET.

use super::ctx::{Suite, MIB, WHOLE_MAX};
use super::report::CheckVerdict::{Fail, Pass};
use crate::device::{fsm, MigState};
use crate::migration::MigrationError;

/// Reaches `from` (from RUNNING); a RESUMING source gets the reference stream written.
fn reach(s: &mut Suite<'_>, from: MigState) -> Result<(), MigrationError> {
    if from != MigState::Running {
        s.drv.set_state(from)?;
    }
    if from == MigState::Resuming {
        if let Some((mut f, len)) = s.reference_file() {
            s.restore(&mut f, len, MIB)?;
        }
    }
    Ok(())
}

/// One transition; `None` when it behaved, else what went wrong.
fn one(s: &mut Suite<'_>, from: MigState, to: MigState) -> Result<Option<String>, MigrationError> {
    reach(s, from)?;
    let at = s.drv.state()?;
    if at != from {
        return Ok(Some(format!("SET {from} succeeded but GET reports {at}")));
    }
    let blocked = fsm::path(s.flags, from, to).is_err();
    let r = s.drv.set_state(to);
    let got = s.drv.state()?;
    Ok(match (blocked, r) {
        (false, Ok(())) if got == to => None,
        (false, Ok(())) => Some(format!(
            "{from} -> {to}: SET succeeded but GET reports {got}"
        )),
        (false, Err(e)) => Some(format!(
            "{from} -> {to}: SET failed ({e}); GET reports {got}"
        )),
        (true, Ok(())) => Some(format!(
            "{from} -> {to} is not permitted but SET succeeded (GET {got})"
        )),
        (true, Err(_)) if got == from || got == MigState::Error => None,
        (true, Err(_)) => Some(format!(
            "{from} -> {to} was refused but the device moved to {got}"
        )),
    })
}

/// The check.
pub(super) fn state_after_arc(s: &mut Suite<'_>) {
    s.check("state-after-arc", |s| {
        let states = fsm::states(s.flags);
        let resumable = s.reference.as_ref().is_some_and(|r| r.file.is_some());
        let small = s.reference.as_ref().is_some_and(|r| r.len <= WHOLE_MAX);
        let (mut arcs, mut combos, mut refused) = (0, 0, 0);
        let mut bad = Vec::new();
        for &from in &states {
            for &to in &states {
                if from == to {
                    continue;
                }
                if from == MigState::Resuming && (!resumable || (!small && to != MigState::Stop)) {
                    continue;
                }
                let arc = fsm::is_arc(s.flags, from, to);
                let blocked = fsm::path(s.flags, from, to).is_err();
                match one(s, from, to) {
                    Ok(None) => {}
                    Ok(Some(why)) => bad.push(why),
                    Err(e) => bad.push(format!("{from} -> {to}: {e}")),
                }
                if blocked {
                    refused += 1;
                } else if arc {
                    arcs += 1;
                } else {
                    combos += 1;
                }
                s.back_to_running()?;
            }
        }
        if s.v2 {
            // Requests the harness would refuse itself go straight to the device.
            for st in MigState::ALL {
                if fsm::state_exists(s.flags, st) {
                    continue;
                }
                refused += 1;
                let r = s.dev.set_mig_state(st);
                let got = s.drv.state()?;
                match r {
                    Ok(()) => bad.push(format!(
                        "SET {st} (not offered by flags {}) succeeded; GET {got}",
                        s.flags
                    )),
                    Err(_) if got == MigState::Running || got == MigState::Error => {}
                    Err(_) => bad.push(format!(
                        "SET {st} was refused but the device moved to {got}"
                    )),
                }
                s.back_to_running()?;
            }
        }
        let seen =
            format!("{arcs} arcs, {combos} combination transitions, {refused} refused requests");
        Ok(if bad.is_empty() {
            (
                Pass,
                format!("{seen}: GET always reported the state reached"),
            )
        } else {
            let n = bad.len();
            bad.truncate(6);
            (Fail, format!("{seen}; {n} wrong: {}", bad.join("; ")))
        })
    });
}
