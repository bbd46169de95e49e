//! Recovery rules on the simulator, v1 and v2.

use super::*;
use crate::migration::driver_for;

fn driver(spec: &str) -> Box<dyn MigrationDriver> {
    let dev = crate::open::open(&spec.parse().unwrap(), &Default::default()).unwrap();
    driver_for(dev).unwrap()
}

#[test]
fn running_needs_nothing() {
    for p in ["v1", "v2"] {
        let mut d = driver(&format!("sim:protocol={p},state=64K"));
        let r = recover(d.as_mut());
        assert!(
            r.succeeded() && r.steps.is_empty() && !r.reset_used(),
            "{p}: {r}"
        );
        assert_eq!(
            (r.before, r.after),
            (Some(MigState::Running), Some(MigState::Running))
        );
        assert_eq!(r.to_string(), "the device was RUNNING");
    }
}

#[test]
fn a_stopped_device_is_set_running() {
    for p in ["v1", "v2"] {
        let mut d = driver(&format!("sim:protocol={p},state=64K"));
        d.set_state(MigState::StopCopy).unwrap();
        let r = recover(d.as_mut());
        assert!(r.succeeded(), "{p}: {r}");
        assert_eq!(r.before, Some(MigState::StopCopy));
        assert_eq!(r.steps.len(), 1);
        assert_eq!(r.steps[0].action, Action::SetRunning);
        assert!(!r.reset_used());
        assert_eq!(d.state().unwrap(), MigState::Running);
    }
}

#[test]
fn resuming_is_reset_never_committed() {
    for p in ["v1", "v2"] {
        let mut d = driver(&format!("sim:protocol={p},state=64K"));
        d.set_state(MigState::Resuming).unwrap();
        let r = recover(d.as_mut());
        assert!(r.succeeded() && r.reset_used(), "{p}: {r}");
        assert_eq!(r.before, Some(MigState::Resuming));
        assert_eq!(r.steps[0].action, Action::Reset);
        assert_eq!(r.steps.len(), 1, "{p}: {r}");
        assert!(r.to_string().contains("from RESUMING: reset"), "{r}");
    }
}

#[test]
fn error_is_reset() {
    let mut d = driver("sim:protocol=v2,state=64K,fail-at=stop-copy,fail-mode=error");
    assert!(d.set_state(MigState::StopCopy).is_err());
    let r = recover(d.as_mut());
    assert_eq!(r.before, Some(MigState::Error));
    assert!(r.succeeded() && r.reset_used(), "{r}");
    assert_eq!(r.steps.len(), 1);
}

#[test]
fn a_refused_transition_falls_back_to_reset() {
    // fail-at=running refuses the way back; only the reset gets the device out.
    let mut d = driver("sim:protocol=v2,state=64K,fail-at=running,fail-count=1");
    d.set_state(MigState::Stop).unwrap();
    let r = recover(d.as_mut());
    assert!(r.succeeded(), "{r}");
    let actions: Vec<Action> = r.steps.iter().map(|s| s.action).collect();
    assert_eq!(actions, [Action::SetRunning, Action::Reset]);
    assert!(r.steps[0].error.is_some() && r.reset_used());
    assert!(r.to_string().contains("RUNNING refused"), "{r}");
}

#[test]
fn a_failed_reset_is_reported_with_its_error() {
    // reset=0: the device neither advertises nor implements the reset.
    let mut d = driver("sim:protocol=v2,state=64K,reset=0");
    d.set_state(MigState::Resuming).unwrap();
    let r = recover(d.as_mut());
    assert!(!r.succeeded() && !r.reset_used(), "{r}");
    assert_eq!(r.after, Some(MigState::Resuming));
    // v2 has no way out of RESUMING but a reset: no transition is tried.
    assert!(r.steps.iter().all(|s| s.action == Action::Reset));
    assert!(r.error().is_some());
    let e = r.into_result().unwrap_err();
    assert!(e.to_string().contains("reset"), "{e}");
}

#[test]
fn v1_without_reset_leaves_resuming_by_validation() {
    let mut d = driver("sim:protocol=v1,state=64K,reset=0");
    d.set_state(MigState::Resuming).unwrap();
    let r = recover(d.as_mut());
    let actions: Vec<Action> = r.steps.iter().map(|s| s.action).collect();
    assert_eq!(actions[..2], [Action::Reset, Action::SetRunning], "{r}");
}

#[test]
fn at_start_a_resuming_device_that_cannot_be_reset_is_refused_untouched() {
    for p in ["v1", "v2"] {
        let mut d = driver(&format!("sim:protocol={p},state=64K,reset=0"));
        d.set_state(MigState::Resuming).unwrap();
        let e = recover_at_start(d.as_mut()).unwrap_err();
        assert!(
            matches!(
                e,
                MigrationError::WrongState {
                    actual: MigState::Resuming,
                    ..
                }
            ),
            "{p}: {e}"
        );
        assert!(e.to_string().contains("remove and recreate"), "{e}");
        assert_eq!(d.state().unwrap(), MigState::Resuming, "{p}");
    }
}

#[test]
fn recover_after_keeps_the_original_error() {
    let mut d = driver("sim:protocol=v2,state=64K");
    d.set_state(MigState::Resuming).unwrap();
    let e = recover_after(d.as_mut(), MigrationError::Interrupted);
    assert!(matches!(e, MigrationError::Interrupted), "{e}");
    let mut d = driver("sim:protocol=v2,state=64K,reset=0");
    d.set_state(MigState::Resuming).unwrap();
    let e = recover_after(d.as_mut(), MigrationError::Interrupted);
    assert!(matches!(e, MigrationError::Recovery { .. }), "{e}");
}
