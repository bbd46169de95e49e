//! Several devices across a link on the loopback: P2P-quiesced together on both sides (the
//! state sequence of every device recorded and its order asserted), a fault at the barrier,
//! a group with a device without P2P states, a destination refusing while the source still
//! sends, and mdev dynamic resources carried in HELLO (on a fixture sysfs tree).

use super::tests::{assert_source_intact, insecure_listener, opts, sim, tcp};
use super::*;
use crate::device::{DeviceHandle, MigFlags, MigState};
use crate::migration::attrs::{self, Action, Policy};
use crate::migration::engine::{Options, PrecopyPolicy};
use crate::migration::{MigrationDriver, MigrationError, Pending, Protocol};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a recorded device did, in the order the whole test saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    /// Entered a state (a successful `set_state`).
    State(MigState),
    /// Was reset.
    Reset,
}

type Log = Arc<Mutex<Vec<(usize, Ev)>>>;

/// A driver that records every state it enters (and every reset) into a log shared by all
/// the devices of a test, and can refuse writes after `refuse_after` bytes.
struct Recorded {
    inner: Box<dyn MigrationDriver>,
    id: usize,
    log: Log,
    refuse_after: Option<u64>,
    written: u64,
    /// A state this device refuses to be asked for.
    refuse_state: Option<MigState>,
}

fn recorded(spec: &str, id: usize, log: &Log) -> Box<dyn MigrationDriver> {
    Box::new(Recorded {
        inner: sim(spec),
        id,
        log: log.clone(),
        refuse_after: None,
        written: 0,
        refuse_state: None,
    })
}

impl Recorded {
    fn push(&self, ev: Ev) {
        self.log.lock().expect("log").push((self.id, ev));
    }
}

impl MigrationDriver for Recorded {
    fn protocol(&self) -> Protocol {
        self.inner.protocol()
    }
    fn device(&self) -> &DeviceHandle {
        self.inner.device()
    }
    fn flags(&self) -> MigFlags {
        self.inner.flags()
    }
    fn set_state(&mut self, state: MigState) -> crate::migration::Result<()> {
        if self.refuse_state == Some(state) {
            return Err(MigrationError::Protocol {
                device: self.device().name().to_string(),
                what: format!("the test device refuses {state}"),
            });
        }
        self.inner.set_state(state)?;
        self.push(Ev::State(state));
        Ok(())
    }
    fn state(&mut self) -> crate::migration::Result<MigState> {
        self.inner.state()
    }
    fn read(&mut self, buf: &mut [u8]) -> crate::migration::Result<usize> {
        self.inner.read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> crate::migration::Result<usize> {
        if self.refuse_after.is_some_and(|n| self.written >= n) {
            return Err(MigrationError::Protocol {
                device: self.device().name().to_string(),
                what: "the test device refuses this write".into(),
            });
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn pending(&mut self) -> crate::migration::Result<Pending> {
        self.inner.pending()
    }
    fn stop_copy_size(&mut self) -> crate::migration::Result<Option<u64>> {
        self.inner.stop_copy_size()
    }
    fn reset(&mut self) -> crate::migration::Result<()> {
        self.inner.reset()?;
        self.push(Ev::Reset);
        Ok(())
    }
}

type Opened = Vec<Box<dyn MigrationDriver>>;

/// A destination thread receiving into what `open` returns; reports the receive result and
/// every device's state afterwards.
fn receiver<F>(
    listener: Listener,
    mut open: F,
) -> JoinHandle<(Result<ReceiveReport>, Vec<MigState>)>
where
    F: FnMut(&Hello) -> Result<Opened> + Send + 'static,
{
    std::thread::spawn(move || {
        let link = match listener.accept(Duration::from_secs(10)) {
            Ok((l, _)) => l,
            Err(e) => return (Err(e), Vec::new()),
        };
        let mut devices = Vec::new();
        let r = receive_into(&link, &mut open, &mut devices, &opts());
        let states = devices
            .iter_mut()
            .map(|d| d.state().expect("dest state"))
            .collect();
        (r, states)
    })
}

fn link_to(listener_addr: std::net::SocketAddr) -> Link {
    connect(
        &tcp(listener_addr),
        &Security::Insecure,
        Duration::from_secs(10),
    )
    .expect("connect")
}

/// Index in `log` of the first / last event `ev` of device `id` (or of any device).
fn positions(log: &[(usize, Ev)], ev: Ev) -> Vec<(usize, usize)> {
    log.iter()
        .enumerate()
        .filter(|(_, (_, e))| *e == ev)
        .map(|(i, (d, _))| (i, *d))
        .collect()
}

/// Asserts that every one of `n` devices entered `held` before any entered `next`.
fn assert_all_before(log: &[(usize, Ev)], n: usize, held: &[MigState], next: MigState) {
    let mut last_held = 0;
    for d in 0..n {
        let i = log
            .iter()
            .position(|(x, e)| *x == d && held.iter().any(|h| *e == Ev::State(*h)))
            .unwrap_or_else(|| panic!("device {d} never entered {held:?}: {log:?}"));
        last_held = last_held.max(i);
    }
    let first_next = positions(log, Ev::State(next))
        .first()
        .map(|p| p.0)
        .unwrap_or_else(|| panic!("no device entered {next}: {log:?}"));
    assert!(
        last_held < first_next,
        "a device entered {next} (event {first_next}) before every device was in {held:?} (event {last_held}): {log:?}"
    );
}

#[test]
fn a_group_is_p2p_quiesced_before_any_device_stops_on_both_sides() {
    for precopy in [true, false] {
        let src_log: Log = Arc::default();
        let dst_log: Log = Arc::default();
        // Different sizes and dirty rates: the devices reach the end of pre-copy at
        // different times.
        let mut src: Vec<_> = ["64K", "1M", "256K"]
            .iter()
            .enumerate()
            .map(|(i, size)| {
                recorded(
                    &format!("sim:state={size},seed=3,dirty-rate=16M"),
                    i,
                    &src_log,
                )
            })
            .collect();
        let o = if precopy {
            opts()
        } else {
            Options {
                precopy: PrecopyPolicy::default(),
                ..opts()
            }
        };
        let (l, addr) = insecure_listener();
        let dl = dst_log.clone();
        let dest = receiver(l, move |_| {
            Ok(["64K", "1M", "256K"]
                .iter()
                .enumerate()
                .map(|(i, size)| recorded(&format!("sim:state={size},verify-seed=3"), i, &dl))
                .collect())
        });
        let report = migrate_to(&mut src, &link_to(addr), &o).expect("migrate");
        let (r, states) = dest.join().expect("dest thread");
        r.expect("receive");
        assert!(report.p2p);
        // Downtime runs from the group's leaving RUNNING, before any device stopped.
        for leg in &report.devices {
            assert!(
                leg.downtime_seconds >= leg.save.stop_copy_seconds && leg.downtime_seconds > 0.0,
                "{leg:?}"
            );
        }
        assert!(
            report.summary.downtime_seconds
                >= report
                    .devices
                    .iter()
                    .map(|l| l.downtime_seconds)
                    .fold(0.0, f64::max)
        );
        assert_eq!(states, vec![MigState::Running; 3]);
        let log = src_log.lock().unwrap().clone();
        let held = if precopy {
            [MigState::PreCopyP2p]
        } else {
            [MigState::RunningP2p]
        };
        assert_all_before(&log, 3, &held, MigState::StopCopy);
        // Each device: (PRE_COPY ->) P2P -> STOP_COPY -> RUNNING, nothing else.
        for d in 0..3 {
            let mine: Vec<Ev> = log.iter().filter(|(x, _)| *x == d).map(|e| e.1).collect();
            let mut want = Vec::new();
            if precopy {
                want.push(Ev::State(MigState::PreCopy));
            }
            want.extend([
                Ev::State(held[0]),
                Ev::State(MigState::StopCopy),
                Ev::State(MigState::Running),
            ]);
            assert_eq!(mine, want, "device {d}");
        }
        // The destination: every device RESUMING -> RUNNING_P2P before any RUNNING.
        let dlog = dst_log.lock().unwrap().clone();
        assert_all_before(&dlog, 3, &[MigState::RunningP2p], MigState::Running);
        for d in 0..3 {
            let mine: Vec<Ev> = dlog.iter().filter(|(x, _)| *x == d).map(|e| e.1).collect();
            assert_eq!(
                mine,
                [
                    Ev::State(MigState::Resuming),
                    Ev::State(MigState::RunningP2p),
                    Ev::State(MigState::Running)
                ],
                "destination {d}"
            );
        }
        for s in src.iter_mut() {
            assert_eq!(s.state().unwrap(), MigState::Running);
        }
    }
}

#[test]
fn a_fault_at_the_source_barrier_leaves_every_source_running_with_its_state() {
    let log: Log = Arc::default();
    let (l, addr) = insecure_listener();
    let dest = receiver(l, |_| {
        Ok(vec![
            sim("sim:state=1M,verify-seed=3"),
            sim("sim:state=1M,verify-seed=3"),
        ])
    });
    // The second device refuses PRE_COPY -> PRE_COPY_P2P once.
    let mut src = vec![
        recorded("sim:state=1M,seed=3", 0, &log),
        recorded(
            "sim:state=1M,seed=3,fail-at=pre-copy-p2p,fail-count=1",
            1,
            &log,
        ),
    ];
    let e = migrate_to(&mut src, &link_to(addr), &opts()).expect_err("refused quiesce");
    assert!(
        e.to_string().contains("fail-at=PRE_COPY_P2P"),
        "the device's refusal is reported: {e}"
    );
    let (r, states) = dest.join().expect("dest thread");
    assert!(matches!(r, Err(TransportError::Refused(_))), "{r:?}");
    assert_eq!(states, vec![MigState::Running; 2]);
    let log = log.lock().unwrap().clone();
    assert!(
        !log.contains(&(0, Ev::State(MigState::StopCopy)))
            && !log.contains(&(1, Ev::State(MigState::StopCopy))),
        "no device stopped: {log:?}"
    );
    for s in src.iter_mut() {
        assert_source_intact(s, "1M");
    }
}

#[test]
fn a_fault_at_the_destination_barrier_resets_every_destination() {
    let log: Log = Arc::default();
    let (l, addr) = insecure_listener();
    let dl = log.clone();
    let dest = receiver(l, move |_| {
        Ok(vec![
            recorded("sim:state=1M,verify-seed=3", 0, &dl),
            // Refuses to load the state (RESUMING -> RUNNING_P2P).
            Box::new(Recorded {
                inner: sim("sim:state=1M,verify-seed=3"),
                id: 1,
                log: dl.clone(),
                refuse_after: None,
                written: 0,
                refuse_state: Some(MigState::RunningP2p),
            }),
        ])
    });
    let mut src = vec![sim("sim:state=1M,seed=3"), sim("sim:state=1M,seed=3")];
    match migrate_to(&mut src, &link_to(addr), &opts()) {
        Err(TransportError::Refused(r)) => {
            assert_eq!(r.kind, RefusalKind::Restore);
            assert!(r.message.contains("refuses RUNNING_P2P"), "{}", r.message);
        }
        other => panic!("not refused: {other:?}"),
    }
    let (r, states) = dest.join().expect("dest thread");
    assert!(r.is_err());
    assert_eq!(states, vec![MigState::Running; 2]);
    let log = log.lock().unwrap().clone();
    // The first device loaded the state, then was reset: it never ran it.
    assert!(
        log.contains(&(0, Ev::State(MigState::RunningP2p))),
        "{log:?}"
    );
    assert!(log.contains(&(0, Ev::Reset)), "{log:?}");
    assert!(!log.contains(&(0, Ev::State(MigState::Running))), "{log:?}");
    for s in src.iter_mut() {
        assert_source_intact(s, "1M");
    }
}

#[test]
fn a_group_with_a_device_without_p2p_is_refused_before_anything_is_touched() {
    let log: Log = Arc::default();
    let (l, addr) = insecure_listener();
    let dest = receiver(l, |_| Ok(vec![sim("sim:state=64K"), sim("sim:state=64K")]));
    let mut src = vec![
        recorded("sim:state=64K,seed=3", 0, &log),
        recorded("sim:state=64K,seed=3,flags=STOP_COPY|PRE_COPY", 1, &log),
    ];
    let name = src[1].device().name().to_string();
    let link = link_to(addr);
    match migrate_to(&mut src, &link, &opts()) {
        Err(TransportError::NoP2p { devices }) => assert_eq!(devices, vec![name]),
        other => panic!("not refused: {other:?}"),
    }
    drop(link);
    let (r, _) = dest.join().expect("dest thread");
    assert!(r.is_err());
    assert!(log.lock().unwrap().is_empty(), "a device was touched");
    // One device without P2P moves on its own, as before.
    let (l, addr) = insecure_listener();
    let dest = receiver(l, |_| Ok(vec![sim("sim:state=64K,verify-seed=3")]));
    let mut one = vec![sim("sim:state=64K,seed=3,flags=STOP_COPY|PRE_COPY")];
    let report = migrate_to(&mut one, &link_to(addr), &opts()).expect("one device");
    assert!(!report.p2p);
    assert!(dest.join().expect("dest thread").0.is_ok());
}

#[test]
fn a_destination_refusing_mid_stream_is_a_refusal_not_a_broken_link() {
    let (l, addr) = insecure_listener();
    refusing_mid_stream(l, |_| link_to(addr));
}

#[cfg(feature = "tls")]
#[test]
fn over_tls_a_destination_refusing_mid_stream_is_a_refusal_too() {
    let pki = super::tests::Pki::new();
    let (l, addr) = super::tests::tls_listener(&pki);
    let ep: Endpoint = format!("tls://{addr}").parse().unwrap();
    refusing_mid_stream(l, |_| {
        connect(&ep, &pki.files("ca", "client"), Duration::from_secs(10)).expect("connect")
    });
}

/// A destination refusing writes after 512 KiB of an 8 MiB stream the source sends in
/// stop-copy: the source reports the refusal, every device ends RUNNING.
fn refusing_mid_stream(l: Listener, link: impl FnOnce(()) -> Link) {
    let dest = receiver(l, |_| {
        let d = Recorded {
            inner: sim("sim:state=8M,verify-seed=3"),
            id: 0,
            log: Arc::default(),
            refuse_after: Some(512 << 10),
            written: 0,
            refuse_state: None,
        };
        Ok(vec![Box::new(d) as Box<dyn MigrationDriver>])
    });
    // Stop-copy only: the source is still sending when the destination refuses.
    let o = Options {
        precopy: PrecopyPolicy::default(),
        ..opts()
    };
    let mut src = vec![sim("sim:state=8M,seed=3")];
    match migrate_to(&mut src, &link(()), &o) {
        Err(TransportError::Refused(r)) => {
            assert_eq!(r.kind, RefusalKind::Restore);
            assert!(r.message.contains("refuses this write"), "{}", r.message);
        }
        other => panic!("not a refusal: {other:?}"),
    }
    let (r, states) = dest.join().expect("dest thread");
    assert!(r.is_err());
    assert_eq!(states, vec![MigState::Running]);
    assert_source_intact(&mut src[0], "8M");
}

// ---- dynamic resources (on a fixture sysfs tree) ----

const GPU: &str = "devices/pci0000:00/0000:00:02.0";
const SRC: &str = "aaaaaaaa-0000-0000-0000-00000000000a";
const DST: &str = "aaaaaaaa-0000-0000-0000-00000000000b";

/// Two `i915-GVTg_V5_4` instances (the type lists `aggregator`) with `vendor/aggregator`
/// set to `src` and `dst`.
fn pair(src: &str, dst: &str) -> crate::sysfs::fixture::Fixture {
    let f = crate::sysfs::fixture::Fixture::samples();
    for (u, g) in [(SRC, 7), (DST, 8)] {
        f.add_instance(GPU, "i915-GVTg_V5_4", u, g, "i915");
    }
    f.write(
        &format!("{GPU}/{SRC}/vendor/aggregator"),
        &format!("{src}\n"),
    );
    f.write(
        &format!("{GPU}/{DST}/vendor/aggregator"),
        &format!("{dst}\n"),
    );
    f
}

/// Migrates a simulated device whose source is the fixture's SRC instance to a destination
/// standing for its DST instance, the destination copying by `policy` before it opens.
fn migrate_with_resources(
    f: &crate::sysfs::fixture::Fixture,
    policy: Policy,
) -> (
    Result<RemoteReport>,
    Result<ReceiveReport>,
    Vec<Vec<attrs::ResourceCopy>>,
) {
    let root = crate::sysfs::SysfsRoot::new(f.root());
    let values = attrs::source_values(&root, &uuid::Uuid::parse_str(SRC).unwrap()).unwrap();
    let send = SendOptions {
        dynamic_resources: vec![Some(values)],
    };
    let (l, addr) = insecure_listener();
    let copied = Arc::new(Mutex::new(Vec::new()));
    let c = copied.clone();
    let dest_root = crate::sysfs::SysfsRoot::new(f.root());
    let dest = receiver(l, move |hello: &Hello| {
        assert_eq!(hello.version, WIRE_VERSION);
        let specs = [crate::device::DeviceSpec::Mdev(
            uuid::Uuid::parse_str(DST).unwrap(),
        )];
        *c.lock().unwrap() = copy_resources(&dest_root, &specs, hello, policy)?;
        // The fixture's mdev cannot be opened: a simulated device stands for it.
        Ok(vec![sim("sim:state=256K,verify-seed=3")])
    });
    let mut src = vec![sim("sim:state=256K,seed=3")];
    let r = migrate_to_with(&mut src, &link_to(addr), &opts(), &send);
    let (d, _) = dest.join().expect("dest thread");
    let copied = copied.lock().unwrap().clone();
    (r, d, copied)
}

#[test]
fn dynamic_resources_travel_in_hello_and_are_copied_before_opening() {
    let f = pair("8", "1");
    let (r, d, copied) = migrate_with_resources(&f, Policy::Copy);
    r.expect("migrate");
    d.expect("receive");
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0][0].resource, "aggregator");
    assert_eq!(copied[0][0].action, Action::Copied);
    assert_eq!(copied[0][0].source.as_deref(), Some("8"));
    assert_eq!(copied[0][0].destination_before.as_deref(), Some("1"));
    assert_eq!(f.read(&format!("{GPU}/{DST}/vendor/aggregator")), "8\n");
}

#[test]
fn differing_dynamic_resources_are_refused_as_incompatible_when_copying_is_off() {
    let f = pair("8", "1");
    let (r, d, _) = migrate_with_resources(&f, Policy::Refuse);
    match r {
        Err(TransportError::Refused(r)) => {
            assert_eq!(r.kind, RefusalKind::Incompatible);
            assert!(
                r.message.contains("dynamic resource aggregator differs"),
                "{}",
                r.message
            );
        }
        other => panic!("not refused: {other:?}"),
    }
    assert!(matches!(d, Err(TransportError::Resources(_))), "{d:?}");
    assert_eq!(f.read(&format!("{GPU}/{DST}/vendor/aggregator")), "1\n");
    // Ignoring leaves them to the device.
    let (r, _, copied) = migrate_with_resources(&f, Policy::Ignore);
    r.expect("migrate");
    assert_eq!(copied[0][0].action, Action::Differs);
    assert_eq!(f.read(&format!("{GPU}/{DST}/vendor/aggregator")), "1\n");
}

#[test]
fn a_hello_without_resources_is_version_1() {
    let (l, addr) = insecure_listener();
    let dest = receiver(l, |hello: &Hello| {
        assert_eq!(hello.version, MIN_WIRE_VERSION);
        assert!(hello.dynamic_resources.is_empty());
        Ok(vec![sim("sim:state=64K,verify-seed=3")])
    });
    let mut src = vec![sim("sim:state=64K,seed=3")];
    migrate_to(&mut src, &link_to(addr), &opts()).expect("migrate");
    dest.join().expect("dest thread").0.expect("receive");
}
