//! `receive` and `migrate SRC tcp://|tls://ADDR` end to end through the binary, on the
//! loopback (127.0.0.1), with simulated devices: TLS with certificates made at run time,
//! several devices, an unauthenticated peer, a refusal and a cut link with their exit codes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_vfio-harness");

struct Receiver {
    child: Child,
    addr: String,
    /// Told when `receive` says it accepted a peer (`receiving from ...` on stderr).
    accepted: std::sync::mpsc::Receiver<()>,
}

/// Starts `receive ARGS --listen 127.0.0.1:0` and reads the address it listens on.
fn receive(args: &[&str]) -> Receiver {
    let mut child = Command::new(BIN)
        .arg("receive")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn receive");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("read stderr");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    // Keep draining stderr so the child never blocks on it.
    let (tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            if line.starts_with("receiving from") {
                let _ = tx.send(());
            }
            eprintln!("{line}");
        }
    });
    Receiver {
        child,
        addr,
        accepted,
    }
}

fn finish(r: Receiver) -> (Option<i32>, String) {
    let o = r.child.wait_with_output().expect("receive ends");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn migrate(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("migrate")
        .args(args)
        .output()
        .expect("run migrate")
}

fn pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "test CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    std::fs::write(dir.join("ca.pem"), p.self_signed(&key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(p, key);
    for (name, san, eku) in [
        ("dest", "127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth),
        ("source", "source", ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![san.to_string()]).unwrap();
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    // A peer with a self-signed certificate: not signed by the CA.
    let key = KeyPair::generate().unwrap();
    let p = CertificateParams::new(vec!["rogue".to_string()]).unwrap();
    std::fs::write(dir.join("rogue.pem"), p.self_signed(&key).unwrap().pem()).unwrap();
    std::fs::write(dir.join("rogue.key"), key.serialize_pem()).unwrap();
}

fn tls_args(dir: &Path, who: &str) -> Vec<String> {
    let f = |n: String| dir.join(n).display().to_string();
    vec![
        "--ca".into(),
        f("ca.pem".into()),
        "--cert".into(),
        f(format!("{who}.pem")),
        "--key".into(),
        f(format!("{who}.key")),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn two_devices_over_tls_and_an_unauthenticated_peer_refused() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let dest_tls = tls_args(dir.path(), "dest");
    let mut args = vec!["sim:state=2M,verify-seed=3", "sim:state=1M,verify-seed=5"];
    args.extend(strs(&dest_tls));
    let r = receive(&args);
    let url = format!("tls://{}", r.addr);

    // A peer whose certificate the CA did not sign: refused at the handshake, exit 1.
    let rogue = tls_args(dir.path(), "rogue");
    let mut a = vec!["sim:state=2M,seed=3", &url, "--with", "sim:state=1M,seed=5"];
    a.extend(strs(&rogue));
    let o = migrate(&a);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("TLS handshake"));

    // The listener is still there for an authenticated source.
    let src_tls = tls_args(dir.path(), "source");
    let mut a = vec![
        "sim:state=2M,seed=3",
        &url,
        "--with",
        "sim:state=1M,seed=5",
        "--json",
    ];
    a.extend(strs(&src_tls));
    let o = migrate(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(j["transport"], "tls");
    assert_eq!(j["devices"].as_array().unwrap().len(), 2);
    assert!(j["bytes"].as_u64().unwrap() >= 3 << 20);
    assert!(j["downtime_seconds"].as_f64().unwrap() > 0.0);
    let (code, out) = finish(r);
    assert_eq!(code, Some(0));
    let j: serde_json::Value = serde_json::from_str(&out).expect("receive JSON");
    assert_eq!(j["devices"].as_array().unwrap().len(), 2);
}

#[test]
fn plain_tcp_needs_insecure_and_a_refusal_exits_77() {
    let o = migrate(&["sim:state=1M,seed=3", "tcp://127.0.0.1:9"]);
    // A usage error, like the parser's own.
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--insecure"));

    let r = receive(&["sim:state=1M,verify-seed=4", "--insecure"]);
    let url = format!("tcp://{}", r.addr);
    let o = migrate(&["sim:state=1M,seed=3", &url, "--insecure"]);
    assert_eq!(
        o.status.code(),
        Some(77),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (code, _) = finish(r);
    assert_eq!(code, Some(1));

    // With --json, the refusal is the failure object on stdout.
    let r = receive(&["sim:state=1M,verify-seed=4", "--insecure"]);
    let url = format!("tcp://{}", r.addr);
    let o = migrate(&["sim:state=1M,seed=3", &url, "--insecure", "--json"]);
    assert_eq!(o.status.code(), Some(77));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    assert_eq!(j["error"]["kind"], "refused");
    assert_eq!(j["error"]["hint"], "every device is RUNNING");
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expects seed 4"));
    assert_eq!(finish(r).0, Some(1));
}

/// What the peer says (its refusal, the device names its acknowledgement carries) reaches the
/// source's terminal with control characters escaped: a peer cannot send it escape sequences.
#[test]
fn the_peers_words_are_printed_escaped() {
    // Seed 3's state migrated to a receiver whose device (named with an escape sequence)
    // expects `seed`: the migration's output and the receiver's exit code.
    let to_named = |seed: u32| {
        let r = receive(&[
            &format!("sim:state=1M,verify-seed={seed},name=ev\x1b[31mil"),
            "--insecure",
        ]);
        let url = format!("tcp://{}", r.addr);
        let o = migrate(&["sim:state=1M,seed=3", &url, "--insecure"]);
        (o, finish(r).0)
    };
    let escaped = "ev\\u{1b}[31mil";
    // Refused: the refusal quotes the destination's error, which names its device.
    let (o, received) = to_named(4);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(77), "{err}");
    assert!(!err.contains('\x1b') && err.contains(escaped), "{err}");
    assert_eq!(received, Some(1));
    // Accepted: the acknowledgement names the device the state went into.
    let (o, received) = to_named(3);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.contains('\x1b') && out.contains(escaped), "{out}");
    assert_eq!(received, Some(0));
}

/// A TLS file that cannot be read is reported as such before anything goes on the network
/// (nothing listens on the port: connecting first would report a refused connection).
#[test]
fn an_unusable_tls_file_is_reported_before_connecting() {
    let o = migrate(&[
        "sim:state=1M",
        "tls://127.0.0.1:9",
        "--ca",
        "/nonexistent/ca.pem",
        "--cert",
        "/nonexistent/cert.pem",
        "--key",
        "/nonexistent/key.pem",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/nonexistent/ca.pem") && !err.contains("refused"),
        "{err}"
    );
}

/// Forwards one connection, closing both sides after `limit` bytes from the source.
fn cutting_proxy(target: String, limit: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut s = TcpStream::connect(target).unwrap();
        let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
        });
        let mut buf = vec![0u8; 4096];
        let mut n = 0;
        while n < limit {
            let k = match c.read(&mut buf[..(limit - n).min(4096)]) {
                Ok(0) | Err(_) => break,
                Ok(k) => k,
            };
            if s.write_all(&buf[..k]).is_err() {
                break;
            }
            n += k;
        }
        let _ = c.shutdown(Shutdown::Both);
        let _ = s.shutdown(Shutdown::Both);
    });
    addr
}

#[test]
fn a_cut_link_exits_75_on_both_sides() {
    let r = receive(&["sim:state=4M,verify-seed=3", "--insecure", "--timeout", "5"]);
    let proxy = cutting_proxy(r.addr.clone(), 1 << 20);
    let url = format!("tcp://{proxy}");
    let o = migrate(&["sim:state=4M,seed=3", &url, "--insecure", "--timeout", "5"]);
    assert_eq!(
        o.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (code, out) = finish(r);
    assert_eq!(code, Some(75));
    // `receive --json`: the broken link is the failure object on stdout.
    let j: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(j["error"]["kind"], "link");
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn a_group_with_a_device_without_p2p_states_is_refused_with_exit_1() {
    let mut r = receive(&[
        "sim:state=64K",
        "sim:state=64K",
        "--insecure",
        "--timeout",
        "5",
    ]);
    let url = format!("tcp://{}", r.addr);
    let o = migrate(&[
        "sim:state=64K,seed=3",
        &url,
        "--with",
        "sim:state=64K,seed=3,flags=STOP_COPY|PRE_COPY",
        "--insecure",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("only when all have the P2P states"), "{err}");
    let _ = r.child.kill();
    let _ = r.child.wait();
}

/// Waits for `child` at most `limit` after a signal: a side that ignored the signal would
/// wait out its `--timeout` (60 s here).
fn exit_within(child: &mut Child, limit: Duration) -> Option<i32> {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.code();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn terminate(child: &Child) {
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
}

/// SIGTERM while a side waits on a silent peer in the handshake ends it at once, as an
/// interruption (exit 143, `kind` `interrupted`), not as a stalled link after `--timeout`;
/// the peer is told (a REFUSE frame).
#[test]
fn a_signal_during_the_handshake_interrupts_either_side() {
    const AFTER_SIGNAL: Duration = Duration::from_secs(10);
    let frame = |s: &mut TcpStream| -> (u8, Vec<u8>) {
        let mut h = [0u8; 8];
        s.read_exact(&mut h).expect("a frame header");
        let mut p = vec![0u8; u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize];
        s.read_exact(&mut p).expect("its payload");
        (h[0], p)
    };
    const HELLO: u8 = 1;
    const REFUSE: u8 = 3;
    // Signalled, a side exits 143 at once, tells its peer (a REFUSE naming the interrupt)
    // and reports `interrupted`.
    let interrupted = |side: &mut Child, peer: &mut TcpStream| {
        terminate(side);
        assert_eq!(exit_within(side, AFTER_SIGNAL), Some(143));
        let (kind, payload) = frame(peer);
        let payload = String::from_utf8_lossy(&payload).into_owned();
        assert_eq!(kind, REFUSE, "{payload}");
        assert!(payload.contains("interrupted"), "{payload}");
        let mut out = String::new();
        side.stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read");
        let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
        assert_eq!(v["error"]["kind"], "interrupted", "{out}");
    };

    // The source, waiting for ACCEPT after its HELLO.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut src = Command::new(BIN)
        .args([
            "migrate",
            "sim:state=1M",
            "--insecure",
            "--json",
            "--timeout",
            "60",
        ])
        .arg(format!("tcp://{}", silent.local_addr().expect("addr")))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn migrate");
    let (mut peer, _) = silent.accept().expect("accept");
    assert_eq!(frame(&mut peer).0, HELLO);
    interrupted(&mut src, &mut peer);

    // The destination, waiting for HELLO from a peer that connected and says nothing.
    let r = receive(&["sim:state=1M", "--insecure", "--timeout", "60"]);
    let mut source = TcpStream::connect(&r.addr).expect("connect");
    r.accepted.recv().expect("receive accepted the peer");
    let mut dst = r.child;
    interrupted(&mut dst, &mut source);
}
