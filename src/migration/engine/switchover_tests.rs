//! The switchover decision in one-call operations on the simulator: a busy device ends
//! pre-copy and migrates, a downtime limit ends pre-copy early or refuses to stop the
//! device (which stays RUNNING), and forcing the switchover stops it anyway.

use super::*;
use crate::device::MigState;
use crate::migration::{driver_for, MigrationDriver, MigrationError};
use std::time::Duration;

fn open(spec: &str) -> Box<dyn MigrationDriver> {
    let dev = crate::open(&spec.parse().expect("spec"), &Default::default()).expect("open");
    driver_for(dev).expect("driver")
}

/// Dirties far faster than any read drains: every round leaves the whole state pending.
const BUSY: &str = "sim:state=4M,seed=5,dirty-rate=64G/s";

fn opts(rounds: u32, limit: Option<Duration>, force: bool) -> Options {
    Options {
        precopy: PrecopyPolicy {
            max_rounds: rounds,
            max_downtime: limit,
            force_switchover: force,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn a_busy_device_stops_pre_copying_and_migrates() {
    let mut src = open(BUSY);
    let mut dst = open("sim:state=4M,verify-seed=5");
    let r = migrate(src.as_mut(), dst.as_mut(), &opts(8, None, false)).expect("migrate");
    assert_eq!(r.precopy_end, PrecopyEnd::NotConverging);
    assert_eq!(r.rounds, 1);
    assert!(!r.converged);
    assert!(r.predicted_downtime_seconds.is_some_and(|p| p > 0.0));
    assert!(r.stopcopy_bytes >= 4 << 20, "{}", r.stopcopy_bytes);
    assert_eq!(src.state().expect("state"), MigState::Running);
    assert_eq!(dst.state().expect("state"), MigState::Running);
}

#[test]
fn a_prediction_over_the_limit_leaves_the_source_running() {
    let mut src = open(BUSY);
    let o = opts(3, Some(Duration::from_nanos(1)), false);
    match save(src.as_mut(), Vec::new(), "memory", &o) {
        Err(MigrationError::DowntimeLimit {
            predicted_seconds: Some(p),
            rounds: 1,
            remaining_bytes,
            ..
        }) => {
            assert!(p > 1e-9, "{p}");
            assert!(remaining_bytes >= 4 << 20, "{remaining_bytes}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(src.state().expect("state"), MigState::Running);

    // Forced: the device stops anyway, and the report shows the prediction.
    let o = opts(3, Some(Duration::from_nanos(1)), true);
    let (_, r) = save(src.as_mut(), Vec::new(), "memory", &o).expect("forced save");
    assert_eq!(r.precopy_end, PrecopyEnd::NotConverging);
    assert!(r.predicted_downtime_seconds.is_some_and(|p| p > 1e-9));
    assert_eq!(src.state().expect("state"), MigState::Running);
}

#[test]
fn a_limit_that_fits_ends_pre_copy_at_once() {
    let mut src = open("sim:state=4M,seed=5,dirty-rate=1G/s");
    let o = opts(8, Some(Duration::from_secs(3600)), false);
    let (_, r) = save(src.as_mut(), Vec::new(), "memory", &o).expect("save");
    assert_eq!(r.precopy_end, PrecopyEnd::WithinDowntime);
    assert_eq!(r.rounds, 1);
    assert!(r.predicted_downtime_seconds.is_some_and(|p| p <= 3600.0));
}

#[test]
fn without_pre_copy_a_limit_cannot_be_checked() {
    let mut src = open("sim:state=1M,seed=5");
    match save(
        src.as_mut(),
        Vec::new(),
        "memory",
        &opts(0, Some(Duration::from_secs(1)), false),
    ) {
        Err(MigrationError::DowntimeLimit {
            predicted_seconds: None,
            rounds: 0,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(src.state().expect("state"), MigState::Running);
    // No limit: no prediction, and pre-copy did not run.
    let (_, r) = save(src.as_mut(), Vec::new(), "memory", &opts(0, None, false)).expect("save");
    assert_eq!(
        (r.precopy_end, r.predicted_downtime_seconds),
        (PrecopyEnd::NotRun, None)
    );
}
