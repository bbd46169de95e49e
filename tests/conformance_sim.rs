//! The conformance suite against simulated devices: a well-behaved device passes for every
//! flag combination and both protocols; devices that break the contract fail with a clear
//! message, and every run leaves the device RUNNING.

use vfio_harness::device::{MigState, OpenOptions};
use vfio_harness::migration::conformance::{self, CheckVerdict, ConformanceReport, Options};
use vfio_harness::migration::driver_for;
use vfio_harness::open;

fn run(spec: &str) -> ConformanceReport {
    let dev = open(&spec.parse().unwrap(), &OpenOptions::default()).unwrap();
    let mut drv = driver_for(dev.clone()).unwrap();
    let report = conformance::run(drv.as_mut(), &Options::default(), &mut |_| {});
    assert_eq!(
        dev.mig_state().ok().or_else(|| drv.state().ok()),
        Some(MigState::Running),
        "{spec}: the suite must leave the device RUNNING"
    );
    report
}

fn failures(r: &ConformanceReport) -> Vec<String> {
    r.checks
        .iter()
        .filter(|c| c.verdict == CheckVerdict::Fail)
        .map(|c| format!("{}: {}", c.name, c.detail))
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
        let arcs = r
            .checks
            .iter()
            .filter(|c| c.name.starts_with("arc "))
            .count();
        let flags = vfio_harness::device::MigFlags::parse(flags).unwrap();
        assert_eq!(arcs, vfio_harness::device::fsm::arcs(flags).len());
        // States the flags do not offer are probed and refused.
        let refused = r
            .checks
            .iter()
            .filter(|c| c.name.starts_with("refuse "))
            .count();
        assert_eq!(
            refused,
            1 + 7 - vfio_harness::device::fsm::states(flags).len()
        );
    }
}

#[test]
fn well_behaved_v1_device_passes() {
    for mmap in ["1", "0"] {
        let r = run(&format!("sim:protocol=v1,state=1M,seed=3,v1-mmap={mmap}"));
        assert_eq!(r.protocol, "v1");
        assert_eq!(failures(&r), Vec::<String>::new(), "v1-mmap={mmap}");
        assert!(r.checks.iter().any(|c| c.name == "arc PRE_COPY->STOP_COPY"));
    }
}

#[test]
fn a_read_that_never_ends_fails_with_a_clear_message() {
    let r = run("sim:protocol=v2,state=1M,violate=endless-read");
    let f = failures(&r);
    assert!(
        f.iter()
            .any(|m| m.starts_with("stop-copy-eof") && m.contains("never ends")),
        "{f:?}"
    );
}

#[test]
fn a_device_that_fails_a_transition_fails_the_arc_and_is_recovered() {
    let r = run("sim:protocol=v2,state=1M,fail-at=stop-copy");
    let f = failures(&r);
    assert!(f.iter().any(|m| m.contains("STOP_COPY")), "{f:?}");
    let end = r.checks.iter().find(|c| c.name == "end-running").unwrap();
    assert_eq!(end.verdict, CheckVerdict::Pass);
}
