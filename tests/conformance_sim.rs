//! The conformance suite against simulated devices: a well-behaved device passes (no FAIL)
//! for every flag combination and both protocols; devices that break the contract fail the
//! check of their clause, and every run leaves the device RUNNING.

use vfio_harness::device::{MigState, OpenOptions};
use vfio_harness::migration::conformance::{self, CheckVerdict, ConformanceReport, Options};
use vfio_harness::migration::driver_for;
use vfio_harness::open;

fn run(spec: &str) -> ConformanceReport {
    let dev = open(&spec.parse().unwrap(), &OpenOptions::default()).unwrap();
    let mut drv = driver_for(dev.clone()).unwrap();
    let report = conformance::run(drv.as_mut(), &Options::default(), &mut |_| {});
    assert_eq!(
        drv.state().ok(),
        Some(MigState::Running),
        "{spec}: the suite must leave the device RUNNING"
    );
    report
}

fn failures(r: &ConformanceReport) -> Vec<String> {
    r.checks
        .iter()
        .filter(|c| c.verdict == CheckVerdict::Fail)
        .map(|c| format!("{}: {}", c.id, c.detail))
        .collect()
}

#[test]
fn well_behaved_v2_devices_pass_for_every_flag_combination() {
    for flags in [
        "STOP_COPY",
        "STOP_COPY|P2P",
        "STOP_COPY|PRE_COPY",
        "STOP_COPY|P2P|PRE_COPY",
    ] {
        let r = run(&format!("sim:protocol=v2,state=1M,seed=3,flags={flags}"));
        assert_eq!(failures(&r), Vec::<String>::new(), "flags {flags}");
        let ids: Vec<&str> = r.checks.iter().map(|c| c.id.as_str()).collect();
        for id in [
            "state-after-arc",
            "stop-copy-eof",
            "read-size",
            "resume-loads",
            "write-size",
            "resume-refuses",
            "reset",
            "left-running",
        ] {
            assert!(ids.contains(&id), "flags {flags}: no {id} in {ids:?}");
        }
        let pre = r.check("precopy-initial").unwrap();
        assert_eq!(
            pre.verdict == CheckVerdict::Skip,
            !flags.contains("PRE_COPY"),
            "{pre:?}"
        );
        // Every check names its clause.
        assert!(
            r.checks.iter().all(|c| !c.clause.is_empty()),
            "{:?}",
            r.checks
        );
    }
}

#[test]
fn well_behaved_v1_device_passes() {
    for mmap in ["1", "0"] {
        let r = run(&format!("sim:protocol=v1,state=1M,seed=3,v1-mmap={mmap}"));
        assert_eq!(r.protocol, "v1");
        assert_eq!(failures(&r), Vec::<String>::new(), "v1-mmap={mmap}");
        for id in [
            "v1-pending",
            "v1-data-window",
            "v1-state-bits",
            "v1-resume-loads",
        ] {
            assert_eq!(
                r.check(id).map(|c| c.verdict),
                Some(CheckVerdict::Pass),
                "{id}: {:?}",
                r.check(id)
            );
        }
    }
}

#[test]
fn a_read_that_never_ends_fails_stop_copy_eof() {
    let r = run("sim:protocol=v2,state=1M,violate=endless-read");
    let c = r.check("stop-copy-eof").unwrap();
    assert_eq!(c.verdict, CheckVerdict::Fail, "{c:?}");
    assert!(c.detail.contains("never ends"), "{c:?}");
}

#[test]
fn an_oversized_v1_chunk_fails() {
    let r = run("sim:protocol=v1,state=1M,violate=oversized-chunk");
    let c = r.check("v1-data-window").unwrap();
    assert_eq!(c.verdict, CheckVerdict::Fail, "{c:?}");
}

#[test]
fn a_half_stop_copy_estimate_warns() {
    let r = run("sim:protocol=v2,state=1M,violate=wrong-stop-copy-size");
    let c = r.check("data-size").unwrap();
    assert_eq!(c.verdict, CheckVerdict::Warn, "{c:?}");
}

#[test]
fn a_device_that_fails_a_transition_fails_the_state_check_and_is_recovered() {
    let r = run("sim:protocol=v2,state=1M,fail-at=stop-copy");
    let f = failures(&r);
    assert!(f.iter().any(|m| m.contains("STOP_COPY")), "{f:?}");
    let end = r.check("left-running").unwrap();
    assert_eq!(end.verdict, CheckVerdict::Pass);
}
