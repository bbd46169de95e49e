//! The two-guest bed's fault injector and control channel (`tests/vm/scenarios/pair/`).
//! A static binary packed into the guest's initramfs by `tests/vm/run`; std only.
//!
//! ```text
//! fault_proxy proxy --listen ADDR --to ADDR [--fault cut|stall|flip --dir up|down --at N]
//!                   [--hold SECONDS] -- COMMAND...
//! fault_proxy notify --to ADDR --msg TEXT [--timeout SECONDS] -- COMMAND...
//! fault_proxy send --to ADDR --msg TEXT [--timeout SECONDS]
//! fault_proxy recv --listen ADDR [--timeout SECONDS]
//! ```
//!
//! `proxy` binds ADDR, then runs COMMAND (e.g. `vfio-harness migrate SRC tcp://ADDR`), serves
//! its one connection by forwarding to `--to` and exits with COMMAND's exit code. "up" is the
//! connecting side's bytes (the migration source), "down" the other way. With a fault, the
//! first N bytes of that direction are forwarded and then: `cut` shuts both connections down,
//! `stall` forwards nothing more either way (until both peers closed, or `--hold` seconds
//! after the stall, default 120),
//! `flip` inverts byte N and goes on. It parses the wire protocol's frames (and the state
//! stream inside DATA frames) as they pass and prints one line per frame and per stream chunk
//! (`frame DIR OFFSET KIND len=N`, `chunk DIR OFFSET devD TAG len=N`), the fault with the
//! frame it hit (`fault ...`), `total up N down M` and `exit CODE`.
//!
//! `notify` runs COMMAND with its stderr watched (and copied to ours): when a line says
//! `listening on`, it sends TEXT to `--to` (the peer guest, which waits in `recv`), then waits
//! for COMMAND and exits with its code. `send` connects (retrying until the timeout: the
//! peer may not listen yet) and writes one line; `recv` accepts one connection, prints its
//! line and exits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("proxy") => proxy(&args[1..]),
        Some("notify") => notify(&args[1..]),
        Some("send") => opts(&args[1..]).and_then(|(o, _)| {
            send(&o.get("to")?, &o.get("msg")?, o.secs("timeout", 60.0)?).map(|()| 0)
        }),
        Some("recv") => {
            opts(&args[1..]).and_then(|(o, _)| recv(&o.get("listen")?, o.secs("timeout", 60.0)?))
        }
        _ => Err(
            "usage: fault_proxy proxy|notify|send|recv ... (see examples/fault_proxy.rs)".into(),
        ),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fault_proxy: {e}");
            ExitCode::from(2)
        }
    }
}

struct Opts(Vec<(String, String)>);

impl Opts {
    fn find(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    fn get(&self, k: &str) -> Res<String> {
        self.find(k)
            .map(str::to_string)
            .ok_or_else(|| format!("--{k} is required"))
    }
    fn secs(&self, k: &str, default: f64) -> Res<Duration> {
        let v = match self.find(k) {
            Some(v) => v.parse::<f64>().map_err(|e| format!("--{k} {v}: {e}"))?,
            None => default,
        };
        Duration::try_from_secs_f64(v).map_err(|e| format!("--{k}: {e}"))
    }
}

/// `--key value` pairs up to `--`, and the command after it.
fn opts(args: &[String]) -> Res<(Opts, Vec<String>)> {
    let mut o = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--" {
            return Ok((Opts(o), args[i + 1..].to_vec()));
        }
        let k = args[i]
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected {}", args[i]))?;
        let v = args
            .get(i + 1)
            .ok_or_else(|| format!("--{k} needs a value"))?;
        o.push((k.to_string(), v.clone()));
        i += 2;
    }
    Ok((Opts(o), Vec::new()))
}

fn spawn(cmd: &[String], stderr: Stdio) -> Res<std::process::Child> {
    let (prog, rest) = cmd.split_first().ok_or("no command after --")?;
    Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))
}

fn exit_code(st: std::process::ExitStatus) -> u8 {
    // A signal (no code) is reported as 128 + 1, like a shell would for an unknown one.
    st.code().map_or(129, |c| u8::try_from(c).unwrap_or(255))
}

fn send(to: &str, msg: &str, timeout: Duration) -> Res<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(to) {
            Ok(mut s) => {
                return s
                    .write_all(format!("{msg}\n").as_bytes())
                    .map_err(|e| format!("send to {to}: {e}"));
            }
            // A bounded poll: the peer guest may not listen yet.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("connect {to}: {e} (gave up after {timeout:?})")),
        }
    }
}

fn accept_by(l: &TcpListener, timeout: Duration) -> Res<TcpStream> {
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(format!("nobody connected within {timeout:?}"))
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}

fn recv(listen: &str, timeout: Duration) -> Res<u8> {
    let l = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    let s = accept_by(&l, timeout)?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| format!("recv: {e}"))?;
    print!("{line}");
    Ok(0)
}

fn notify(args: &[String]) -> Res<u8> {
    let (o, cmd) = opts(args)?;
    let (to, msg, timeout) = (o.get("to")?, o.get("msg")?, o.secs("timeout", 60.0)?);
    let mut child = spawn(&cmd, Stdio::piped())?;
    let err = child.stderr.take().ok_or("no stderr pipe")?;
    let mut sent = false;
    for line in BufReader::new(err).lines() {
        let line = line.map_err(|e| format!("reading the command's stderr: {e}"))?;
        eprintln!("{line}");
        if !sent && line.contains("listening on") {
            send(&to, &msg, timeout)?;
            sent = true;
        }
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    Ok(exit_code(st))
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Cut,
    Stall,
    Flip,
}

/// Follows the wire protocol's frames (and, inside DATA, each device's state stream) on one
/// direction of the link, and names where a byte offset falls.
struct Parser {
    dir: &'static str,
    off: u64,
    hdr: Vec<u8>,
    frame: Option<(u64, u8, u8, u64)>, // start, kind, device, payload left
    streams: Vec<StreamPos>,
    /// How far the source's COMMIT got through the proxy: 0 not yet, 1 its first byte was
    /// forwarded, 2 the whole frame was (shared by both directions; set by "up").
    commit: Arc<AtomicU8>,
}

#[derive(Default, Clone)]
struct StreamPos {
    buf: Vec<u8>,
    need: usize,  // bytes wanted in buf before deciding
    skip: u64,    // payload bytes to skip
    state: u8,    // 0 header, 1 chunk header, 2 done
    what: String, // the element being read
}

fn kind_name(k: u8) -> &'static str {
    match k {
        1 => "HELLO",
        2 => "ACCEPT",
        3 => "REFUSE",
        4 => "DATA",
        5 => "END",
        6 => "READY",
        7 => "COMMIT",
        8 => "ACK",
        9 => "KEEPALIVE",
        _ => "?",
    }
}

impl Parser {
    fn new(dir: &'static str, commit: Arc<AtomicU8>) -> Parser {
        Parser {
            dir,
            off: 0,
            hdr: Vec::new(),
            frame: None,
            streams: Vec::new(),
            commit,
        }
    }

    /// Where the next byte (`next`, not forwarded) falls, and whether the source has sent its
    /// COMMIT (up to this byte) and the destination received all of it.
    fn describe(&self, next: u8) -> String {
        let hit_commit = self.dir == "up"
            && match (self.frame, self.hdr.first()) {
                (Some((_, k, _, _)), _) => k == 7,
                (None, Some(&k)) => k == 7,
                (None, None) => next == 7,
            };
        let c = self.commit.load(Ordering::SeqCst);
        let sent = if c > 0 || hit_commit {
            "sent"
        } else {
            "not sent"
        };
        let fwd = if c == 2 { "forwarded" } else { "not forwarded" };
        format!("{}; commit {sent}, {fwd}", self.position(next))
    }

    /// Where the next byte (`next`) falls.
    fn position(&self, next: u8) -> String {
        match self.frame {
            Some((start, k, d, _)) => {
                let mut s = format!("in {} frame @{start} (+{})", kind_name(k), self.off - start);
                if k == 4 {
                    if let Some(p) = self.streams.get(usize::from(d)) {
                        s += &format!(", dev{d} stream {}", p.what);
                    }
                }
                s
            }
            None => {
                let k = self.hdr.first().copied().unwrap_or(next);
                format!(
                    "in {} frame header @{} (+{})",
                    kind_name(k),
                    self.off - self.hdr.len() as u64,
                    self.hdr.len()
                )
            }
        }
    }

    fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            match self.frame {
                None => {
                    let take = (8 - self.hdr.len()).min(data.len() - i);
                    self.hdr.extend_from_slice(&data[i..i + take]);
                    if self.dir == "up" && self.hdr[0] == 7 {
                        let done = if self.hdr.len() == 8 { 2 } else { 1 };
                        self.commit.fetch_max(done, Ordering::SeqCst);
                    }
                    i += take;
                    self.off += take as u64;
                    if self.hdr.len() == 8 {
                        let len = u64::from(u32::from_le_bytes([
                            self.hdr[4],
                            self.hdr[5],
                            self.hdr[6],
                            self.hdr[7],
                        ]));
                        let start = self.off - 8;
                        let (k, d) = (self.hdr[0], self.hdr[1]);
                        if k != 9 {
                            eprintln!(
                                "frame {} {start} {} dev{d} len={len}",
                                self.dir,
                                kind_name(k)
                            );
                        }
                        self.hdr.clear();
                        self.frame = (len > 0).then_some((start, k, d, len));
                    }
                }
                Some((start, k, d, left)) => {
                    let take = (left as usize).min(data.len() - i);
                    if k == 4 {
                        self.stream(d, &data[i..i + take]);
                    }
                    i += take;
                    self.off += take as u64;
                    let left = left - take as u64;
                    self.frame = (left > 0).then_some((start, k, d, left));
                }
            }
        }
    }

    fn stream(&mut self, dev: u8, data: &[u8]) {
        let d = usize::from(dev);
        if self.streams.len() <= d {
            self.streams.resize(
                d + 1,
                StreamPos {
                    need: 16,
                    what: "header".into(),
                    ..Default::default()
                },
            );
        }
        let base = self.off;
        let p = &mut self.streams[d];
        let mut i = 0;
        while i < data.len() && p.state < 2 {
            if p.skip > 0 {
                let t = (p.skip as usize).min(data.len() - i);
                p.skip -= t as u64;
                i += t;
                if p.skip == 0 && p.state == 1 {
                    p.need = 24;
                    p.what = "chunk header".into();
                }
                continue;
            }
            let t = (p.need - p.buf.len()).min(data.len() - i);
            p.buf.extend_from_slice(&data[i..i + t]);
            i += t;
            if p.buf.len() < p.need {
                continue;
            }
            let at = base + i as u64 - p.buf.len() as u64;
            if p.state == 0 {
                // magic, version, metadata length; then metadata and its checksum.
                let l = u32::from_le_bytes([p.buf[12], p.buf[13], p.buf[14], p.buf[15]]);
                p.skip = u64::from(l) + 8;
                p.state = 1;
                p.what = "header metadata".into();
            } else {
                let tag = String::from_utf8_lossy(&p.buf[0..4]).to_string();
                let n = u32::from_le_bytes([p.buf[4], p.buf[5], p.buf[6], p.buf[7]]);
                if tag == "TRLR" {
                    if p.need < 28 {
                        p.need = 28;
                        continue;
                    }
                    eprintln!("chunk {} {at} dev{dev} TRLR len=28", self.dir);
                    p.state = 2;
                    p.what = "after its trailer".into();
                } else {
                    eprintln!("chunk {} {at} dev{dev} {tag} len={n}", self.dir);
                    p.skip = u64::from(n);
                    p.what = format!("{tag} payload");
                }
            }
            p.buf.clear();
        }
    }
}

struct Side {
    fault: Option<(Fault, u64)>,
    parser: Parser,
}

/// Forwards `from` to `to`, applying this direction's fault. Returns the bytes forwarded.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    mut side: Side,
    tripped: Arc<AtomicBool>,
    all: [TcpStream; 2],
    log: Arc<Mutex<()>>,
) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if tripped.load(Ordering::SeqCst) {
            continue; // stalled: read and drop, to notice the peers closing
        }
        let data = &mut buf[..n];
        if let Some((f, at)) = side.fault {
            if at < sent + n as u64 {
                let k = (at - sent) as usize;
                side.parser.feed(&data[..k]);
                let next = data[k];
                let name = match f {
                    Fault::Cut => "cut",
                    Fault::Stall => "stall",
                    Fault::Flip => "flip",
                };
                {
                    let _g = log.lock();
                    eprintln!(
                        "fault {name} {} at {at}: {}",
                        side.parser.dir,
                        side.parser.describe(next)
                    );
                }
                side.fault = None;
                if f == Fault::Flip {
                    data[k] ^= 0xff;
                    side.parser.feed(&data[k..]);
                    if to.write_all(data).is_err() {
                        break;
                    }
                    sent += n as u64;
                    continue;
                }
                if to.write_all(&data[..k]).is_err() {
                    break;
                }
                sent += k as u64;
                tripped.store(true, Ordering::SeqCst);
                if f == Fault::Cut {
                    for s in &all {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                    break;
                }
                continue;
            }
        }
        {
            let _g = log.lock();
            side.parser.feed(data);
        }
        if to.write_all(data).is_err() {
            break;
        }
        sent += n as u64;
    }
    if !tripped.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
    sent
}

fn proxy(args: &[String]) -> Res<u8> {
    let (o, cmd) = opts(args)?;
    let (listen, target) = (o.get("listen")?, o.get("to")?);
    let fault = match o.find("fault") {
        None => None,
        Some(f) => {
            let f = match f {
                "cut" => Fault::Cut,
                "stall" => Fault::Stall,
                "flip" => Fault::Flip,
                _ => return Err(format!("--fault {f}: cut, stall or flip")),
            };
            let at: u64 = o.get("at")?.parse().map_err(|e| format!("--at: {e}"))?;
            let up = match o.get("dir")?.as_str() {
                "up" => true,
                "down" => false,
                d => return Err(format!("--dir {d}: up or down")),
            };
            Some((f, at, up))
        }
    };
    let hold = o.secs("hold", 120.0)?;
    let l = TcpListener::bind(&listen).map_err(|e| format!("bind {listen}: {e}"))?;
    let mut child = spawn(&cmd, Stdio::inherit())?;
    let served = accept_by(&l, Duration::from_secs(60)).and_then(|a| {
        let b = TcpStream::connect(&target).map_err(|e| format!("connect {target}: {e}"))?;
        let _ = (a.set_nodelay(true), b.set_nodelay(true));
        Ok((a, b))
    });
    let (a, b) = match served {
        Ok(p) => p,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let tripped = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(()));
    let dup = |s: &TcpStream| s.try_clone().map_err(|e| e.to_string());
    let commit = Arc::new(AtomicU8::new(0));
    let side = |up: bool| Side {
        fault: fault.filter(|f| f.2 == up).map(|f| (f.0, f.1)),
        parser: Parser::new(if up { "up" } else { "down" }, commit.clone()),
    };
    let (ua, ub, all1) = (dup(&a)?, dup(&b)?, [dup(&a)?, dup(&b)?]);
    let (t1, l1) = (tripped.clone(), log.clone());
    let s_up = side(true);
    let upt = std::thread::spawn(move || pump(ua, ub, s_up, t1, all1, l1));
    let all2 = [dup(&a)?, dup(&b)?];
    let (t2, l2) = (tripped.clone(), log.clone());
    let s_down = side(false);
    let downt = std::thread::spawn(move || pump(b, a, s_down, t2, all2, l2));
    // A stalled link: the peers time out and close; --hold (from the stall) bounds a peer
    // that never does.
    let mut stalled_at: Option<Instant> = None;
    while !(upt.is_finished() && downt.is_finished()) {
        if stalled_at.is_none() && tripped.load(Ordering::SeqCst) {
            stalled_at = Some(Instant::now());
        }
        if stalled_at.is_some_and(|t| t.elapsed() > hold) {
            eprintln!("proxy: still open after {hold:?}, giving up");
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    if upt.is_finished() && downt.is_finished() {
        let up = upt.join().unwrap_or(0);
        let down = downt.join().unwrap_or(0);
        eprintln!("total up {up} down {down}");
    }
    let code = exit_code(st);
    eprintln!("exit {code}");
    Ok(code)
}
