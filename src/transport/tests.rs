//! Migration across a link on the loopback (127.0.0.1 only), simulated devices on both ends:
//! TCP and TLS, several devices, refusals, and links cut or stalled at many byte offsets.

use super::*;
use crate::device::MigState;
use crate::migration::engine::{self, Options, PrecopyPolicy};
use crate::migration::{driver_for, MigrationDriver, MigrationError};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub(super) fn sim(spec: &str) -> Box<dyn MigrationDriver> {
    let dev = crate::open(&spec.parse().expect("spec"), &Default::default()).expect("open sim");
    driver_for(dev).expect("driver")
}

pub(super) fn opts() -> Options {
    Options {
        buffer_size: 64 * 1024,
        precopy: PrecopyPolicy {
            max_rounds: 2,
            dirty_threshold: 0,
            ..Default::default()
        },
        ..Options::default()
    }
}

/// The source's state is intact: it migrates in process into a device that checks seed 3.
pub(super) fn assert_source_intact(src: &mut Box<dyn MigrationDriver>, size: &str) {
    assert_eq!(src.state().expect("state"), MigState::Running);
    let mut check = sim(&format!("sim:state={size},verify-seed=3"));
    engine::migrate(src.as_mut(), check.as_mut(), &Options::default())
        .expect("the source's state is intact");
}

pub(super) struct Dest {
    pub(super) handle: JoinHandle<(Result<ReceiveReport>, Vec<MigState>)>,
    pub(super) opened: Arc<AtomicUsize>,
}

/// A destination thread: accepts one peer on `listener`, receives into `specs`.
pub(super) fn destination(listener: Listener, specs: Vec<String>, timeout: Duration) -> Dest {
    let opened = Arc::new(AtomicUsize::new(0));
    let o = opened.clone();
    let handle = std::thread::spawn(move || {
        let link = match listener.accept(timeout) {
            Ok((l, _)) => l,
            Err(e) => return (Err(e), Vec::new()),
        };
        let mut open = |_: &Hello| {
            o.fetch_add(1, Ordering::SeqCst);
            Ok(specs.iter().map(|s| sim(s)).collect())
        };
        let mut devices = Vec::new();
        let r = receive_into(&link, &mut open, &mut devices, &opts());
        let states = devices
            .iter_mut()
            .map(|d| d.state().expect("dest state"))
            .collect();
        (r, states)
    });
    Dest { handle, opened }
}

pub(super) fn insecure_listener() -> (Listener, SocketAddr) {
    let l = Listener::bind("127.0.0.1:0", Security::Insecure).expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

pub(super) fn tcp(addr: SocketAddr) -> Endpoint {
    format!("tcp://{addr}").parse().expect("endpoint")
}

#[test]
fn endpoints_parse() {
    let e: Endpoint = "tls://127.0.0.1:4444".parse().unwrap();
    assert_eq!(
        (e.scheme, e.host.as_str(), e.port),
        (Scheme::Tls, "127.0.0.1", 4444)
    );
    let e: Endpoint = "tcp://[::1]:5".parse().unwrap();
    assert_eq!((e.scheme, e.host.as_str()), (Scheme::Tcp, "::1"));
    assert_eq!(e.to_string(), "tcp://[::1]:5");
    assert_eq!("h:1".parse::<Endpoint>().unwrap().scheme, Scheme::Tls);
    for bad in ["udp://h:1", "tcp://h", "tcp://:1", "tcp://h:99999"] {
        assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
    }
}

#[test]
fn tcp_migrates_sim_to_sim_with_precopy() {
    let (l, addr) = insecure_listener();
    let dest = destination(
        l,
        vec!["sim:state=2M,verify-seed=3".into()],
        Duration::from_secs(10),
    );
    let link = connect(&tcp(addr), &Security::Insecure, Duration::from_secs(10)).expect("connect");
    let mut src = vec![sim("sim:state=2M,seed=3,dirty-rate=64M")];
    let report = migrate_to(&mut src, &link, &opts()).expect("migrate");
    let (r, states) = dest.handle.join().expect("dest thread");
    let r = r.expect("receive");
    assert_eq!(states, vec![MigState::Running]);
    assert_eq!(r.devices[0].bytes, report.summary.bytes);
    assert!(report.summary.bytes >= 2 << 20);
    assert!(report.summary.rounds >= 1);
    assert!(report.summary.downtime_seconds > 0.0);
    assert_eq!(report.devices.len(), 1);
    assert_source_intact(&mut src[0], "2M");
}

/// A destination slow to open its devices (a large simulated device allocates its memory
/// there): the time goes to `handshake_seconds`, not into the transfer's `seconds` and rate.
#[test]
fn the_destination_opening_its_devices_is_the_handshake_not_the_transfer() {
    const OPEN: Duration = Duration::from_millis(300);
    let (l, addr) = insecure_listener();
    let dest = std::thread::spawn(move || {
        let (link, _) = l.accept(Duration::from_secs(10))?;
        let mut open = |_: &Hello| {
            // The cost of opening, not a synchronisation: nothing waits for it to end.
            std::thread::sleep(OPEN);
            Ok(vec![sim("sim:state=2M,verify-seed=4")])
        };
        receive_into(&link, &mut open, &mut Vec::new(), &opts())
    });
    let link = connect(&tcp(addr), &Security::Insecure, Duration::from_secs(10)).expect("connect");
    let mut src = vec![sim("sim:state=2M,seed=4")];
    let t0 = std::time::Instant::now();
    let report = migrate_to(&mut src, &link, &opts()).expect("migrate");
    let wall = t0.elapsed().as_secs_f64();
    let r = dest.join().expect("dest thread").expect("receive");
    let open = OPEN.as_secs_f64();
    assert!(report.handshake_seconds >= open, "{report:?}");
    // The two are disjoint parts of the call: the transfer's time leaves the handshake out.
    assert!(
        report.handshake_seconds + report.summary.seconds <= wall,
        "handshake {} + transfer {} > {wall} s",
        report.handshake_seconds,
        report.summary.seconds
    );
    let rate = report.summary.bytes as f64 / report.summary.seconds;
    assert!((report.summary.throughput_bytes_per_s - rate).abs() <= rate * 1e-9);
    assert!(
        r.handshake_seconds >= open && r.handshake_seconds <= r.seconds,
        "{r:?}"
    );
}

#[test]
fn several_devices_move_in_parallel() {
    let (l, addr) = insecure_listener();
    let dest = destination(
        l,
        vec![
            "sim:state=1M,verify-seed=3".into(),
            "sim:state=3M,verify-seed=3".into(),
            "sim:state=64K,verify-seed=3".into(),
        ],
        Duration::from_secs(10),
    );
    let link = connect(&tcp(addr), &Security::Insecure, Duration::from_secs(10)).expect("connect");
    let mut src = vec![
        sim("sim:state=1M,seed=3"),
        sim("sim:state=3M,seed=3"),
        sim("sim:state=64K,seed=3"),
    ];
    let report = migrate_to(&mut src, &link, &opts()).expect("migrate");
    let (r, states) = dest.handle.join().expect("dest thread");
    assert_eq!(r.expect("receive").devices.len(), 3);
    assert_eq!(states, vec![MigState::Running; 3]);
    assert_eq!(report.devices.len(), 3);
    assert!(report.summary.bytes >= (4 << 20) + (64 << 10));
}

#[test]
fn incompatible_destination_refuses_before_resuming() {
    let (l, addr) = insecure_listener();
    let dest = destination(
        l,
        vec!["sim:protocol=v1,state=1M".into()],
        Duration::from_secs(10),
    );
    let link = connect(&tcp(addr), &Security::Insecure, Duration::from_secs(10)).expect("connect");
    let mut src = vec![sim("sim:state=1M,seed=3")];
    match migrate_to(&mut src, &link, &opts()) {
        Err(TransportError::Refused(r)) => assert_eq!(r.kind, RefusalKind::Incompatible),
        other => panic!("not refused: {other:?}"),
    }
    let (r, states) = dest.handle.join().expect("dest thread");
    assert!(matches!(r, Err(TransportError::Migration(_))), "{r:?}");
    assert_eq!(states, vec![MigState::Running]);
    assert_eq!(dest.opened.load(Ordering::SeqCst), 1);
    assert_source_intact(&mut src[0], "1M");
}

#[test]
fn a_destination_that_refuses_the_stream_is_reported() {
    let (l, addr) = insecure_listener();
    // Checks seed 4's state, gets seed 3's: refused at the commit.
    let dest = destination(
        l,
        vec!["sim:state=1M,verify-seed=4".into()],
        Duration::from_secs(10),
    );
    let link = connect(&tcp(addr), &Security::Insecure, Duration::from_secs(10)).expect("connect");
    let mut src = vec![sim("sim:state=1M,seed=3")];
    match migrate_to(&mut src, &link, &opts()) {
        Err(TransportError::Refused(r)) => assert_eq!(r.kind, RefusalKind::Restore),
        other => panic!("not refused: {other:?}"),
    }
    let (r, states) = dest.handle.join().expect("dest thread");
    assert!(r.is_err());
    assert_eq!(states, vec![MigState::Running]);
    assert_source_intact(&mut src[0], "1M");
}

// ---- TLS ----

#[cfg(feature = "tls")]
pub(super) struct Pki {
    pub(super) dir: tempfile::TempDir,
}

#[cfg(feature = "tls")]
impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, made now.
    pub(super) fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let make_ca = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = p.self_signed(&key).unwrap();
            (cert, Issuer::new(p, key))
        };
        let leaf = |issuer: &Issuer<'_, KeyPair>, san: &str, eku| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(vec![san.to_string()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, san);
            p.extended_key_usages = vec![eku];
            let cert = p.signed_by(&key, issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (ca, issuer) = make_ca("test CA");
        write("ca.pem", ca.pem());
        let (c, k) = leaf(&issuer, "127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth);
        write("server.pem", c);
        write("server.key", k);
        let (c, k) = leaf(&issuer, "source", ExtendedKeyUsagePurpose::ClientAuth);
        write("client.pem", c);
        write("client.key", k);
        let (other, other_issuer) = make_ca("another CA");
        write("other-ca.pem", other.pem());
        let (c, k) = leaf(
            &other_issuer,
            "intruder",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        write("intruder.pem", c);
        write("intruder.key", k);
        Pki { dir }
    }

    pub(super) fn files(&self, ca: &str, who: &str) -> Security {
        let p = |n: String| self.dir.path().join(n);
        Security::Tls(TlsFiles {
            ca: p(format!("{ca}.pem")),
            cert: p(format!("{who}.pem")),
            key: p(format!("{who}.key")),
        })
    }
}

#[cfg(feature = "tls")]
pub(super) fn tls_listener(pki: &Pki) -> (Listener, SocketAddr) {
    let l = Listener::bind("127.0.0.1:0", pki.files("ca", "server")).expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

#[cfg(feature = "tls")]
#[test]
fn tls_with_mutual_authentication_migrates() {
    let pki = Pki::new();
    let (l, addr) = tls_listener(&pki);
    let dest = destination(
        l,
        vec!["sim:state=2M,verify-seed=3".into()],
        Duration::from_secs(10),
    );
    let ep: Endpoint = format!("tls://{addr}").parse().unwrap();
    let link = connect(&ep, &pki.files("ca", "client"), Duration::from_secs(10)).expect("connect");
    let mut src = vec![sim("sim:state=2M,seed=3")];
    let report = migrate_to(&mut src, &link, &opts()).expect("migrate");
    let (r, states) = dest.handle.join().expect("dest thread");
    assert_eq!(r.expect("receive").devices[0].bytes, report.summary.bytes);
    assert_eq!(states, vec![MigState::Running]);
}

#[cfg(feature = "tls")]
#[test]
fn peer_without_client_certificate_is_refused_before_any_device_is_opened() {
    let pki = Pki::new();
    let (l, addr) = tls_listener(&pki);
    let dest = destination(l, vec!["sim:state=1M".into()], Duration::from_secs(5));
    // A client that verifies the server but presents no certificate.
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(pki.dir.path().join("ca.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), "127.0.0.1".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let _ = tls.write_all(b"HELLO?");
    let _ = tls.flush();
    let mut buf = [0u8; 16];
    assert!(tls.read(&mut buf).is_err() || tls.read(&mut buf).is_err());
    let (r, states) = dest.handle.join().expect("dest thread");
    assert!(matches!(r, Err(TransportError::Handshake { .. })), "{r:?}");
    assert!(states.is_empty());
    assert_eq!(dest.opened.load(Ordering::SeqCst), 0, "a device was opened");
}

#[cfg(feature = "tls")]
#[test]
fn peer_with_a_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let (l, addr) = tls_listener(&pki);
    let dest = destination(l, vec!["sim:state=1M".into()], Duration::from_secs(5));
    let ep: Endpoint = format!("tls://{addr}").parse().unwrap();
    // It trusts our CA (so it would talk to the server) but its own certificate is foreign.
    let sec = pki.files("ca", "intruder");
    let r = connect(&ep, &sec, Duration::from_secs(5))
        .and_then(|link| migrate_to(&mut [sim("sim:state=1M,seed=3")], &link, &opts()));
    assert!(r.is_err());
    let (r, _) = dest.handle.join().expect("dest thread");
    assert!(matches!(r, Err(TransportError::Handshake { .. })), "{r:?}");
    assert_eq!(dest.opened.load(Ordering::SeqCst), 0);
    // And a client that does not trust the server's CA refuses the server.
    let (l, addr) = tls_listener(&pki);
    let dest = destination(l, vec!["sim:state=1M".into()], Duration::from_secs(5));
    let ep: Endpoint = format!("tls://{addr}").parse().unwrap();
    let r = connect(
        &ep,
        &pki.files("other-ca", "client"),
        Duration::from_secs(5),
    );
    assert!(
        matches!(r, Err(TransportError::Handshake { .. })),
        "{:?}",
        r.err()
    );
    let _ = dest.handle.join();
    assert_eq!(dest.opened.load(Ordering::SeqCst), 0);
}

/// An unreadable TLS file is reported with its path and keeps the OS error as its source,
/// for a caller that branches on it; a file that is not PEM names the file too.
#[cfg(feature = "tls")]
#[test]
fn a_tls_file_that_cannot_be_read_keeps_its_os_error() {
    use std::error::Error as _;
    let pki = Pki::new();
    let Security::Tls(mut files) = pki.files("ca", "server") else {
        unreachable!("files() makes TLS security")
    };
    files.key = pki.dir.path().join("missing.key");
    let e = Listener::bind("127.0.0.1:0", Security::Tls(files.clone())).expect_err("no key");
    let TransportError::TlsConfig { what, source } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(what, &files.key.display().to_string());
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("the OS error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(e.source().is_some());

    files.key = files.ca.clone();
    let e = Listener::bind("127.0.0.1:0", Security::Tls(files.clone())).expect_err("a CA");
    assert!(
        matches!(&e, TransportError::TlsConfig { what, .. } if what == &files.ca.display().to_string()),
        "{e:?}"
    );
}

#[test]
fn tcp_to_a_tls_address_needs_insecure() {
    let e: Endpoint = "tls://127.0.0.1:1".parse().unwrap();
    assert!(matches!(
        connect(&e, &Security::Insecure, Duration::from_millis(200)),
        Err(TransportError::Address { .. }) | Err(TransportError::Connect { .. })
    ));
}

// ---- faults ----

/// A proxy on 127.0.0.1 between the two ends: forwards one connection, cutting (closing both
/// sockets) or stalling (holding them, forwarding nothing) once `c2s` bytes went from the
/// source to the destination or `s2c` bytes the other way.
struct Proxy {
    addr: SocketAddr,
    done: Arc<AtomicBool>,
    handle: JoinHandle<(u64, u64)>,
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    limit: Option<u64>,
    stall: bool,
    done: Arc<AtomicBool>,
) -> u64 {
    let mut n = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    loop {
        if done.load(Ordering::Relaxed) {
            break;
        }
        let room = limit.map_or(buf.len() as u64, |l| (l - n).min(buf.len() as u64)) as usize;
        if room == 0 {
            if stall {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            break;
        }
        match from.read(&mut buf[..room]) {
            Ok(0) => break,
            Ok(k) => {
                if to.write_all(&buf[..k]).is_err() {
                    break;
                }
                n += k as u64;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    n
}

fn proxy(target: SocketAddr, c2s: Option<u64>, s2c: Option<u64>, stall: bool) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let handle = std::thread::spawn(move || {
        let (client, _) = l.accept().unwrap();
        let server = TcpStream::connect(target).unwrap();
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let d2 = d.clone();
        let up = std::thread::spawn(move || pump(client, server, c2s, stall, d2));
        let down = pump(s2, c2, s2c, stall, d);
        (up.join().unwrap_or(0), down)
    });
    Proxy { addr, done, handle }
}

/// The timeout of the uncut run whose byte count places the cuts: keepalives go out after a
/// quarter of the timeout without traffic (at most every 2 s), so with this one the count
/// holds no keepalive in practice, and a cut run's stream (which may carry some) is never
/// shorter than it: an offset taken from it always falls inside the cut run's stream.
const CLEAN_TIMEOUT: Duration = Duration::from_secs(60);

struct Outcome {
    source: Result<RemoteReport>,
    dest: Result<ReceiveReport>,
    dest_states: Vec<MigState>,
    bytes: (u64, u64),
}

fn run_through_proxy(
    c2s: Option<u64>,
    s2c: Option<u64>,
    stall: bool,
    timeout: Duration,
    src: &mut Vec<Box<dyn MigrationDriver>>,
    o: &Options,
) -> Outcome {
    let (l, addr) = insecure_listener();
    let dest = destination(l, vec!["sim:state=1M,verify-seed=3".into()], timeout);
    let p = proxy(addr, c2s, s2c, stall);
    let source = connect(&tcp(p.addr), &Security::Insecure, timeout)
        .and_then(|link| migrate_to(src, &link, o));
    let (dest, dest_states) = dest.handle.join().expect("dest thread");
    p.done.store(true, Ordering::Relaxed);
    let bytes = p.handle.join().expect("proxy");
    Outcome {
        source,
        dest,
        dest_states,
        bytes,
    }
}

/// A link cut at many points over every phase (HELLO, ACCEPT, pre-copy, stop-copy, the
/// trailer, READY, COMMIT, ACK), with pre-copy and without (everything in stop-copy): every
/// source RUNNING with its state, every destination RUNNING.
#[test]
fn links_cut_at_any_offset_leave_both_sides_running() {
    let timeout = Duration::from_secs(5);
    // The caller's cancel flag (the CLI always passes one): read, never set by a failure.
    let callers = Arc::new(AtomicBool::new(false));
    let with_flag = Options {
        cancel: Some(callers.clone()),
        ..opts()
    };
    let stop_copy_only = Options {
        precopy: PrecopyPolicy::default(),
        ..with_flag.clone()
    };
    let (mut cuts_run, mut sources_ok, mut dests_ok, mut acked_lost) = (0, 0, 0, 0);
    for o in [with_flag, stop_copy_only] {
        let mut src = vec![sim("sim:state=1M,seed=3")];
        let clean = run_through_proxy(None, None, false, CLEAN_TIMEOUT, &mut src, &o);
        clean.source.expect("uncut migration");
        clean.dest.expect("uncut receive");
        let up = clean.bytes.0;
        assert!(up > 1 << 20, "{up}");
        // What the destination sends before its ACK (whose JSON length varies with the
        // timings it reports): ACCEPT, then READY.
        let accept = FRAME_HEADER_LEN as u64
            + serde_json::to_vec(&Accept {
                version: WIRE_VERSION,
                devices: vec!["sim:state=1M,verify-seed=3".into()],
            })
            .unwrap()
            .len() as u64;
        let before_ack = accept + FRAME_HEADER_LEN as u64;
        let mut cuts: Vec<(Option<u64>, Option<u64>)> = [0, 4, 9, 200, 1000]
            .iter()
            .chain(&[
                up / 10,
                up / 4,
                up / 2,
                3 * up / 4,
                9 * up / 10,
                up - 100,
                up - 40,
                up - 9,
                up - 1,
            ])
            .map(|&c| (Some(c), None))
            .collect();
        cuts.extend(
            [0, 5, 20, accept + 3, before_ack + 3, before_ack + 20]
                .iter()
                .map(|&c| (None, Some(c))),
        );
        for (c2s, s2c) in cuts {
            let mut src = vec![sim("sim:state=1M,seed=3")];
            let out = run_through_proxy(c2s, s2c, false, timeout, &mut src, &o);
            let what = format!(
                "cut c2s={c2s:?} s2c={s2c:?} pre-copy={}",
                o.precopy.max_rounds
            );
            cuts_run += 1;
            let e = out.source.expect_err(&what);
            assert!(
                e.is_link_fault() || matches!(e, TransportError::Protocol(_)),
                "{what}: {e}"
            );
            assert!(
                !callers.load(Ordering::Relaxed),
                "{what}: the caller's flag was set"
            );
            if matches!(e, TransportError::NotAcknowledged(_)) && out.dest.is_ok() {
                acked_lost += 1;
            }
            assert_source_intact(&mut src[0], "1M");
            sources_ok += 1;
            assert!(
                out.dest_states.iter().all(|s| *s == MigState::Running),
                "{what}: {:?}",
                out.dest_states
            );
            dests_ok += 1;
        }
    }
    eprintln!(
        "{cuts_run} cuts, {sources_ok} sources RUNNING with their state, {dests_ok} destinations RUNNING"
    );
    assert!(cuts_run >= 20 && sources_ok == cuts_run && dests_ok == cuts_run);
    // Cutting the ACK itself: the destination committed, the source was not told.
    assert!(acked_lost >= 1);
}

#[test]
fn stalled_links_are_bounded_by_the_timeout() {
    let timeout = Duration::from_millis(800);
    let mut src = vec![sim("sim:state=1M,seed=3")];
    let clean = run_through_proxy(None, None, false, CLEAN_TIMEOUT, &mut src, &opts());
    let up = clean.bytes.0;
    // Stalls in the HELLO, mid-stream, in the last frames (END, COMMIT), and in the ACCEPT.
    for (c2s, s2c) in [
        (Some(300), None),
        (Some(up / 2), None),
        (Some(up - 9), None),
        (None, Some(30)),
    ] {
        let mut src = vec![sim("sim:state=1M,seed=3")];
        let t = std::time::Instant::now();
        let o = run_through_proxy(c2s, s2c, true, timeout, &mut src, &opts());
        let what = format!("stall c2s={c2s:?} s2c={s2c:?}");
        let e = o.source.expect_err(&what);
        assert!(e.is_link_fault(), "{what}: {e}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what}: took {:?}",
            t.elapsed()
        );
        assert_source_intact(&mut src[0], "1M");
        assert!(o.dest.is_err() || s2c.is_some(), "{what}");
        assert!(
            o.dest_states.iter().all(|s| *s == MigState::Running),
            "{what}"
        );
    }
}

#[cfg(feature = "tls")]
#[test]
fn tls_link_cut_mid_transfer_leaves_both_running() {
    let pki = Pki::new();
    let (l, addr) = tls_listener(&pki);
    let dest = destination(
        l,
        vec!["sim:state=2M,verify-seed=3".into()],
        Duration::from_secs(5),
    );
    let p = proxy(addr, Some(1 << 20), None, false);
    let ep: Endpoint = format!("tls://127.0.0.1:{}", p.addr.port())
        .parse()
        .unwrap();
    let mut src = vec![sim("sim:state=2M,seed=3")];
    let r = connect(&ep, &pki.files("ca", "client"), Duration::from_secs(5))
        .and_then(|link| migrate_to(&mut src, &link, &opts()));
    assert!(r.expect_err("cut").is_link_fault());
    let (d, states) = dest.handle.join().unwrap();
    assert!(d.is_err());
    assert_eq!(states, vec![MigState::Running]);
    p.done.store(true, Ordering::Relaxed);
    let _ = p.handle.join();
    assert_source_intact(&mut src[0], "2M");
}

/// A completed pre-copy chunk leaves the source's sink at once, while the device still runs,
/// instead of waiting in the gather buffer for later chunks (the trailer, at the end of
/// stop-copy): the peer sees it before anything else is written.
#[test]
fn precopy_chunk_is_sent_when_complete() {
    use crate::migration::stream::{ChunkKind, StreamHeader, StreamWriter};
    let (listener, addr) = insecure_listener();
    let src = connect(&tcp(addr), &Security::Insecure, Duration::from_secs(5)).expect("connect");
    let (dst, _) = listener.accept(Duration::from_secs(5)).expect("accept");
    let drv = sim("sim:state=4K,seed=3");
    let header = StreamHeader::for_device(drv.device(), drv.protocol(), drv.flags(), None, 4096);
    let sink = super::send::FrameSink {
        link: src.clone(),
        device: 0,
        buf: Vec::new(),
        cursor: Default::default(),
    };
    let mut w = StreamWriter::new(sink, "test", &header).expect("writer");
    w.write_chunk(ChunkKind::Precopy, &[7u8; 100])
        .expect("chunk");
    // Nothing else is written: the chunk must already be on the link.
    let f = dst
        .recv()
        .expect("the pre-copy chunk was sent as soon as it was complete");
    assert_eq!(f.kind, super::frame::FrameKind::Data);
    assert!(
        f.payload.len() > 124,
        "stream header + chunk header + payload"
    );
    assert_eq!(
        &f.payload[f.payload.len() - 124..f.payload.len() - 120],
        b"PREC"
    );
    assert!(f.payload.ends_with(&[7u8; 100]));
}

/// A stream with a corrupt payload is refused once: the restore thread tells the source at
/// once, and the destination does not send a second REFUSE when it gives up.
#[test]
fn a_corrupt_stream_is_refused_once() {
    use super::frame::FrameKind;
    use crate::migration::stream::{ChunkKind, StreamHeader, StreamWriter};
    let timeout = Duration::from_secs(5);
    let (l, addr) = insecure_listener();
    let dest = destination(l, vec!["sim:state=4K,verify-seed=3".into()], timeout);
    let link = connect(&tcp(addr), &Security::Insecure, timeout).expect("connect");
    let drv = sim("sim:state=4K,seed=3");
    let header = StreamHeader::for_device(drv.device(), drv.protocol(), drv.flags(), None, 4096);
    let mut w = StreamWriter::new(Vec::new(), "test", &header).expect("writer");
    w.write_chunk(ChunkKind::Stopcopy, &[5u8; 4096])
        .expect("chunk");
    let (mut stream, _) = w.finish().expect("finish");
    let at = stream.len() - 28 - 100; // in the payload, before the trailer
    stream[at] ^= 0xff;
    link.send_json(
        FrameKind::Hello,
        &Hello {
            magic: WIRE_MAGIC.into(),
            version: WIRE_VERSION,
            harness_version: "test".into(),
            devices: vec![header],
            dynamic_resources: Vec::new(),
        },
    )
    .expect("hello");
    assert_eq!(link.recv().expect("accept").kind, FrameKind::Accept);
    link.send(FrameKind::Data, 0, &[&stream]).expect("data");
    link.send(FrameKind::End, 0, &[]).expect("end");
    let mut refusals = 0;
    loop {
        match link.recv() {
            Ok(f) if f.kind == FrameKind::Refuse => refusals += 1,
            Ok(f) if f.kind == FrameKind::Keepalive => {}
            Ok(f) => panic!("unexpected {:?}", f.kind),
            Err(_) => break, // the destination closed the link
        }
        if refusals == 1 {
            link.close(); // as a source does once refused
        }
    }
    let (r, states) = dest.handle.join().expect("dest");
    // The destination reports the corrupt stream, not the link the source closed after it.
    let e = r.expect_err("a corrupt stream is refused");
    assert!(matches!(e, TransportError::Migration(_)), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
    assert_eq!(states, vec![MigState::Running]);
    assert_eq!(refusals, 1, "one REFUSE for one failure");
}

/// A link to a plain socket this test holds (the peer speaks no protocol unless the test
/// writes it), with `timeout`.
fn raw_peer(timeout: Duration) -> (Link, TcpStream) {
    let raw = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = raw.local_addr().expect("addr");
    let link = connect(&tcp(addr), &Security::Insecure, timeout).expect("connect");
    let (peer, _) = raw.accept().expect("accept");
    (link, peer)
}

/// A caller's mistakes are refused as such (not as the peer's protocol violation) before
/// anything is sent: no sources, dynamic resources for another number of devices, and a
/// buffer size outside 4 KiB..=64 MiB.
#[test]
fn a_callers_mistakes_are_refused_before_anything_is_sent() {
    let (link, mut peer) = raw_peer(Duration::from_secs(10));

    let e = migrate_to(&mut Vec::new(), &link, &opts()).expect_err("no sources");
    assert!(matches!(e, TransportError::InvalidRequest(_)), "{e:?}");

    let mut src = vec![sim("sim:state=1M,seed=3")];
    let two = SendOptions {
        dynamic_resources: vec![None, None],
    };
    let e = migrate_to_with(&mut src, &link, &opts(), &two).expect_err("resources for 2");
    assert!(matches!(e, TransportError::InvalidRequest(_)), "{e:?}");

    for size in [1024, (64 << 20) + 1] {
        let o = Options {
            buffer_size: size,
            ..opts()
        };
        let e = migrate_to(&mut src, &link, &o).expect_err("bad buffer size");
        assert!(
            matches!(e, TransportError::Migration(MigrationError::InvalidBufferSize { size: s }) if s == size),
            "{size}: {e:?}"
        );
    }
    assert_eq!(src[0].state().expect("state"), MigState::Running);
    drop(link);
    let mut sent = Vec::new();
    peer.read_to_end(&mut sent).expect("read");
    assert!(sent.is_empty(), "{} bytes were sent", sent.len());
}

/// After the peer is gone, every later operation on the link fails with the first fault, and
/// an OS error stays that OS error (its errno), not only its kind.
#[test]
fn a_link_fault_keeps_its_errno_for_later_operations() {
    let (link, peer) = raw_peer(Duration::from_secs(10));
    drop(peer);
    // The first sends may still be buffered; the closed peer answers them with a reset.
    let first = (0..100_000)
        .find_map(|_| link.send(super::frame::FrameKind::Keepalive, 0, &[]).err())
        .expect("a send to a closed peer fails");
    let errno = |e: &TransportError| match e {
        TransportError::LinkBroken { source, .. } => source.raw_os_error(),
        e => panic!("not a broken link: {e:?}"),
    };
    let want = errno(&first);
    assert!(
        matches!(want, Some(libc::EPIPE) | Some(libc::ECONNRESET)),
        "{first:?}"
    );
    assert_eq!(errno(&link.fault().expect("the fault is kept")), want);
    let later = link
        .send(super::frame::FrameKind::Keepalive, 0, &[])
        .expect_err("still broken");
    assert_eq!(errno(&later), want);
}

/// Once the link's cancel flag is set, a wait on a silent peer gives up with `Interrupted`
/// instead of waiting out the link's timeout (20 s here: a link that ignored the flag would
/// end in `Stalled` instead): a receive leaves the link usable, a send that cannot finish
/// its frame leaves it broken.
#[test]
fn an_interrupt_ends_the_links_waits_on_a_silent_peer() {
    let (link, _silent) = raw_peer(Duration::from_secs(20));
    link.cancel_on(Arc::new(AtomicBool::new(true)));
    let interrupted = |r: Result<()>| {
        matches!(
            r,
            Err(TransportError::Migration(MigrationError::Interrupted))
        )
    };

    assert!(interrupted(link.recv().map(|_| ())));
    assert!(
        link.fault().is_none(),
        "a receive that gave up broke the link"
    );

    // The peer reads nothing: once the socket's buffers are full a send waits, and gives up.
    let payload = vec![0u8; MAX_FRAME];
    let r = (0..4096)
        .map(|_| link.send(super::frame::FrameKind::Data, 0, &[&payload]))
        .find(Result::is_err)
        .expect("the buffers filled");
    assert!(interrupted(r));
    assert!(
        link.fault().is_some(),
        "a part-sent frame left the link usable"
    );
}

/// A destination interrupted while it waits for the source's HELLO returns `Interrupted`
/// and tells the source so (a REFUSE of kind `interrupted`), having opened nothing.
#[test]
fn an_interrupted_destination_tells_the_source() {
    let (l, addr) = insecure_listener();
    let mut source = TcpStream::connect(addr).expect("connect");
    let (link, _) = l.accept(Duration::from_secs(20)).expect("accept");
    let o = Options {
        cancel: Some(Arc::new(AtomicBool::new(true))),
        ..opts()
    };
    let mut opened = 0;
    let mut open = |_: &Hello| {
        opened += 1;
        Ok(Vec::new())
    };
    let e = receive_into(&link, &mut open, &mut Vec::new(), &o).expect_err("interrupted");
    assert!(
        matches!(e, TransportError::Migration(MigrationError::Interrupted)),
        "{e:?}"
    );
    assert_eq!(opened, 0);
    drop(link);
    let mut h = [0u8; FRAME_HEADER_LEN];
    source.read_exact(&mut h).expect("a frame");
    assert_eq!(h[0], super::frame::FrameKind::Refuse as u8);
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let mut p = vec![0u8; len];
    source.read_exact(&mut p).expect("its payload");
    let r: Refusal = serde_json::from_slice(&p).expect("a refusal");
    assert_eq!(r.kind, RefusalKind::Interrupted);
}
