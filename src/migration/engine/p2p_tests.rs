//! The P2P hook and barrier of one-call operations: waits, aborts, cancels, and the device
//! states a failing hook leaves.

use super::*;
use crate::device::MigState;
use crate::migration::{driver_for, MigrationDriver, MigrationError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn open(spec: &str) -> Box<dyn MigrationDriver> {
    let dev = crate::open(&spec.parse().expect("spec"), &Default::default()).expect("open");
    driver_for(dev).expect("driver")
}

#[test]
fn a_barrier_releases_every_member_at_each_step() {
    let b = P2pBarrier::new(3);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| (b.wait(), b.wait()))).collect();
        for h in hs {
            let (x, y) = h.join().unwrap();
            x.unwrap();
            y.unwrap();
        }
    });
    assert!(!b.is_aborted());
}

#[test]
fn an_abort_or_a_cancel_ends_the_waits() {
    let b = P2pBarrier::new(2);
    std::thread::scope(|s| {
        let h = s.spawn(|| b.wait());
        std::thread::sleep(Duration::from_millis(30));
        b.abort();
        assert!(matches!(
            h.join().unwrap(),
            Err(MigrationError::PeerStopped)
        ));
    });
    assert!(matches!(b.wait(), Err(MigrationError::PeerStopped)));

    let cancel = Arc::new(AtomicBool::new(false));
    let b = P2pBarrier::with_cancel(2, cancel.clone());
    std::thread::scope(|s| {
        let h = s.spawn(|| b.wait());
        std::thread::sleep(Duration::from_millis(30));
        cancel.store(true, Ordering::Relaxed);
        assert!(matches!(
            h.join().unwrap(),
            Err(MigrationError::Interrupted)
        ));
    });
}

#[test]
fn a_save_calls_the_hook_ready_then_quiesced_and_a_failing_hook_leaves_it_running() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let opts = Options {
        precopy: PrecopyPolicy {
            max_rounds: 1,
            dirty_threshold: 0,
            ..Default::default()
        },
        p2p: Some(Arc::new(move |p: &P2pPoint<'_>| {
            s2.lock().unwrap().push((p.step, p.state));
            Ok(())
        })),
        ..Options::default()
    };
    let mut d = open("sim:state=64K,seed=1");
    save(d.as_mut(), Vec::new(), "memory", &opts).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (P2pStep::Ready, MigState::PreCopy),
            (P2pStep::Quiesced, MigState::PreCopyP2p)
        ]
    );
    // A hook that gives up at the quiesced point: the device never stopped, it runs on.
    let opts = Options {
        p2p: Some(Arc::new(|p: &P2pPoint<'_>| match p.step {
            P2pStep::Quiesced => Err(MigrationError::PeerStopped),
            _ => Ok(()),
        })),
        ..Options::default()
    };
    let e = save(d.as_mut(), Vec::new(), "memory", &opts).unwrap_err();
    assert!(matches!(e, MigrationError::PeerStopped), "{e}");
    assert_eq!(d.state().unwrap(), MigState::Running);
}

#[test]
fn a_restore_whose_hook_fails_after_loading_resets_the_device() {
    let mut src = open("sim:state=64K,seed=1");
    let (bytes, _) = save(src.as_mut(), Vec::new(), "memory", &Options::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let opts = Options {
        p2p: Some(Arc::new(move |p: &P2pPoint<'_>| {
            s2.lock().unwrap().push((p.step, p.state));
            Err(MigrationError::PeerStopped)
        })),
        ..Options::default()
    };
    let mut dst = open("sim:state=64K,verify-seed=1");
    let e = restore(dst.as_mut(), &bytes[..], &opts).unwrap_err();
    assert!(matches!(e, MigrationError::PeerStopped), "{e}");
    assert_eq!(
        *seen.lock().unwrap(),
        [(P2pStep::Loaded, MigState::RunningP2p)]
    );
    assert_eq!(dst.state().unwrap(), MigState::Running);
    // Without P2P states the state is held in STOP.
    seen.lock().unwrap().clear();
    let mut dst = open("sim:state=64K,verify-seed=1,flags=STOP_COPY|PRE_COPY");
    let mut src = open("sim:state=64K,seed=1,flags=STOP_COPY|PRE_COPY");
    let (bytes, _) = save(src.as_mut(), Vec::new(), "memory", &Options::default()).unwrap();
    assert!(restore(dst.as_mut(), &bytes[..], &opts).is_err());
    assert_eq!(*seen.lock().unwrap(), [(P2pStep::Loaded, MigState::Stop)]);
    assert_eq!(dst.state().unwrap(), MigState::Running);
}
