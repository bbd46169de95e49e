//! The command-line and state-file contract under bad input, signals and odd targets: the
//! binary run against `sim:` devices. One test (or a few) per item of the contract issue;
//! signal tests wait for a marker (`--progress-lines` on stderr, or the stream's first bytes
//! on a pipe), never for a fixed time.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn vh() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vfio-harness"))
}

/// A test's scratch directory under the temporary directory, removed when the test ends
/// (passing or failing), so test runs leave nothing behind.
struct Dir(PathBuf);

impl std::ops::Deref for Dir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Dir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // A test that already removed it, or a leftover, is fine; only cleaning up.
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("vfh-contract-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn run(args: &[&str]) -> Output {
    vh().args(args).output().unwrap()
}

fn no_panic(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_ne!(o.status.code(), Some(101), "exit 101: {err}");
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

fn save(spec: &str, out: &Path) {
    let o = run(&["save", spec, "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Hidden files in `d` (temporary files).
fn hidden(d: &Path) -> Vec<String> {
    fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// What the harness's temporary names carry: the first 8 hex digits of this boot's id.
fn boot_tag() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect()
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// How long a command blocked on a pipe, a file or a peer may take to exit after a signal:
/// without the cancellation these commands would wait forever (a stalled pipe, stdin), so
/// any bound shows it. It is generous because a loaded CI machine delays the child's exit
/// (its recovery and its JSON report); the earlier bound, one second, held on a quiet one.
const AFTER_SIGNAL: Duration = Duration::from_secs(10);

/// Waits for `child`, at most `limit`.
fn wait_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads `r` line by line until one contains `marker`; the rest is collected on a thread.
fn wait_marker(r: impl Read + Send + 'static, marker: &str) -> std::thread::JoinHandle<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    let h = std::thread::spawn(move || {
        let mut all = String::new();
        let mut sent = false;
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains(&marker) {
                let _ = tx.send(());
                sent = true;
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("marker never came");
    h
}

// 1. Odd output targets.
#[test]
fn save_writes_devices_fifos_and_stdout_directly_and_follows_symlinks() {
    let d = dir("targets");
    let o = run(&["save", "sim:state=1M", "-o", "/dev/full"]);
    no_panic(&o);
    assert!(!o.status.success());
    assert!(fs::metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_char_device());

    let fifo = d.join("fifo");
    mkfifo(&fifo);
    let f2 = fifo.clone();
    let reader = std::thread::spawn(move || fs::read(&f2).unwrap().len());
    save("sim:state=1M", &fifo);
    assert!(reader.join().unwrap() > 1 << 20);
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    let o = run(&["save", "sim:state=1M", "-o", "-", "--json"]);
    assert!(o.status.success());
    assert_eq!(&o.stdout[..8], b"VFIOSTRM");
    assert_eq!(json(&o.stderr)["file"], "-");

    let real = d.join("real");
    fs::write(&real, b"old").unwrap();
    std::os::unix::fs::symlink("real", d.join("link")).unwrap();
    save("sim:state=1M", &d.join("link"));
    assert!(fs::symlink_metadata(d.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::metadata(&real).unwrap().len() > 1 << 20);
}

// 2. Restore reads its input once: stdin, a FIFO, a pipe held open after the stream.
#[test]
fn restore_reads_stdin_fifos_and_stops_at_the_trailer() {
    let d = dir("restore-once");
    let file = d.join("s.bin");
    save("sim:state=2M,seed=5", &file);
    let bytes = fs::read(&file).unwrap();
    for reset in ["1", "0"] {
        let spec = format!("sim:state=2M,verify-seed=5,reset={reset}");
        let mut c = vh()
            .args(["restore", &spec, "-i", "-", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The writer keeps the pipe open after the stream: restore must not wait for EOF.
        let mut stdin = c.stdin.take().unwrap();
        stdin.write_all(&bytes).unwrap();
        let status = wait_within(&mut c, Duration::from_secs(30));
        drop(stdin);
        assert!(status.success(), "reset={reset}");
    }
    let fifo = d.join("fifo");
    mkfifo(&fifo);
    let f2 = fifo.clone();
    let b2 = bytes.clone();
    let w = std::thread::spawn(move || fs::write(&f2, &b2).unwrap());
    let o = run(&[
        "restore",
        "sim:state=2M,verify-seed=5,reset=0",
        "-i",
        fifo.to_str().unwrap(),
    ]);
    w.join().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A restore from a pipe into a device without reset spools the stream to verify it first:
/// when `$TMPDIR` cannot hold the spool, the error names it (not the input, `-`), and the
/// device is RUNNING.
#[test]
fn a_spool_that_cannot_be_made_is_named() {
    let d = dir("spool");
    let file = d.join("s.bin");
    save("sim:state=1M,seed=5", &file);
    let bytes = fs::read(&file).unwrap();
    let missing = d.join("missing");
    let mut c = vh()
        .args([
            "restore",
            "sim:state=1M,verify-seed=5,reset=0",
            "-i",
            "-",
            "--json",
        ])
        .env("TMPDIR", &missing)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    // The restore may fail before it reads everything: a write into a closed pipe is fine.
    let feeding = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let o = c.wait_with_output().unwrap();
    feeding.join().unwrap();
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o.stdout);
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("temporary spool") && message.contains(missing.to_str().unwrap()),
        "{message}"
    );
    assert_eq!(v["devices"][0]["state"], "RUNNING");
}

/// A plot path that cannot be written is refused before the run (it used to be found only
/// when the run was over, and the report was lost): the failure reported is the plot's,
/// not that of the device the run would have opened.
#[test]
fn an_unwritable_plot_is_refused_before_the_bench_runs() {
    let d = dir("plot");
    for flag in ["--plot", "--downtime-plot"] {
        let plot = d.join("missing").join("p.svg");
        let o = run(&[
            "bench",
            "sim:state=1M,bogus=1",
            flag,
            plot.to_str().unwrap(),
            "--json",
        ]);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{flag}");
        let v = json(&o.stdout);
        assert_eq!(v["error"]["kind"], "io", "{flag}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("cannot write the plot"),
            "{flag}: {message}"
        );
    }
    assert!(
        fs::read_dir(&d).unwrap().next().is_none(),
        "the probe left a file"
    );
}

// 3. Output errors never panic.
#[test]
fn output_errors_do_not_panic() {
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = vh()
        .args(["info", "sim", "--json"])
        .stdout(full)
        .output()
        .unwrap();
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));

    let d = dir("outerr");
    let file = d.join("s.bin");
    save("sim:state=1M,seed=1", &file);
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = vh()
        .args([
            "restore",
            "sim:state=1M",
            "-i",
            file.to_str().unwrap(),
            "--json",
        ])
        .stdout(full)
        .output()
        .unwrap();
    no_panic(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("succeeded"));

    // A reader that went away: the command ends quietly.
    let mut c = vh()
        .args(["info", "sim"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    let o = c.wait_with_output().unwrap();
    no_panic(&o);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

// 4. Signals while I/O blocks: a save into a pipe nobody reads.
#[test]
fn sigterm_stops_a_save_blocked_on_a_pipe() {
    let mut c = vh()
        .args(["save", "sim:state=64M", "-o", "-", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = c.stdout.take().unwrap();
    let mut magic = [0u8; 8];
    out.read_exact(&mut magic).unwrap();
    assert_eq!(&magic, b"VFIOSTRM");
    // The pipe (64 KiB) fills long before 64 MiB: wait until a thread of the save is
    // blocked on it (its wait channel in /proc: in write(2), or in poll(2) waiting for
    // room), then signal.
    let tasks = format!("/proc/{}/task", c.id());
    let t0 = Instant::now();
    while !fs::read_dir(&tasks).unwrap().any(|t| {
        fs::read_to_string(t.unwrap().path().join("wchan"))
            .is_ok_and(|w| w.contains("pipe_write") || w.contains("poll"))
    }) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "never blocked on the pipe"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&c, libc::SIGTERM);
    let status = wait_within(&mut c, AFTER_SIGNAL);
    assert_eq!(status.code(), Some(143));
    let mut err = Vec::new();
    c.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    let v = json(&err);
    assert_eq!(v["error"]["kind"], "interrupted");
    assert_eq!(v["devices"][0]["state"], "RUNNING");
}

// 4. A restore waiting on stdin that stalls mid-stream; the device is in RESUMING.
#[test]
fn sigint_stops_a_restore_blocked_on_stdin() {
    let d = dir("sigint-restore");
    let file = d.join("s.bin");
    save("sim:state=8M,seed=2", &file);
    let bytes = fs::read(&file).unwrap();
    let mut c = vh()
        .args([
            "restore",
            "sim:state=8M,verify-seed=2",
            "-i",
            "-",
            "--json",
            "--progress-lines",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(&bytes[..3 << 20]).unwrap();
    let _err = wait_marker(c.stderr.take().unwrap(), "progress resume");
    signal(&c, libc::SIGINT);
    let status = wait_within(&mut c, AFTER_SIGNAL);
    drop(stdin);
    assert_eq!(status.code(), Some(130));
    let mut out = Vec::new();
    c.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "interrupted");
    assert_eq!(v["devices"][0]["state"], "RUNNING");
}

// 4 and 7. SIGHUP on a slow device mid-save: exit 129, no file, no temporary file.
#[test]
fn sighup_stops_a_slow_save_and_leaves_no_file() {
    let d = dir("sighup");
    let target = d.join("out.bin");
    let mut c = vh()
        .args(["save", "sim:state=64M,chunk=64K,read-delay=20", "-o"])
        .arg(&target)
        .args(["--json", "--progress-lines"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _err = wait_marker(c.stderr.take().unwrap(), "progress stop-copy");
    signal(&c, libc::SIGHUP);
    let status = wait_within(&mut c, AFTER_SIGNAL);
    assert_eq!(status.code(), Some(129));
    let mut out = Vec::new();
    c.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(json(&out)["devices"][0]["state"], "RUNNING");
    assert!(!target.exists());
    assert!(hidden(&d).is_empty(), "{:?}", hidden(&d));
}

// 4. A FIFO nobody opens: the open itself is interrupted.
#[test]
fn signals_interrupt_a_fifo_open() {
    let d = dir("fifo-open");
    let fifo = d.join("fifo");
    mkfifo(&fifo);
    for (cmd, flag, sig, code) in [
        ("restore", "-i", libc::SIGTERM, 143),
        ("save", "-o", libc::SIGINT, 130),
    ] {
        let mut c = vh()
            .args([cmd, "sim:state=1M", flag])
            .arg(&fifo)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The open blocks until the FIFO's other end opens. It runs on a helper thread
        // (started after the handler is installed), so a second task in /proc is the marker
        // that the process is waiting in it.
        let wchan = format!("/proc/{}/task", c.id());
        let t0 = Instant::now();
        while !fs::read_dir(&wchan)
            .map(|r| r.count() >= 2)
            .unwrap_or(false)
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "never reached the open"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        signal(&c, sig);
        let status = wait_within(&mut c, AFTER_SIGNAL);
        assert_eq!(status.code(), Some(code), "{cmd}");
    }
}

// 5. A v1 stream that never ends is bounded.
#[test]
fn an_endless_v1_stream_is_refused() {
    let d = dir("endless");
    let target = d.join("e.bin");
    let o = vh()
        .args([
            "save",
            "sim:protocol=v1,state=1M,violate=endless-read",
            "--json",
            "-o",
        ])
        .arg(&target)
        .output()
        .unwrap();
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o.stdout);
    assert_eq!(v["error"]["kind"], "device");
    assert_eq!(v["devices"][0]["state"], "RUNNING");
    assert!(!target.exists());
    assert!(hidden(&d).is_empty());
}

// 6. Modes: 0600, new or replacing a file of any mode.
#[test]
fn state_files_are_private_new_or_replaced() {
    let d = dir("modes");
    let new = d.join("new.bin");
    save("sim:state=1M", &new);
    assert_eq!(
        fs::metadata(&new).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for mode in [0o600, 0o640, 0o644, 0o666] {
        let p = d.join(format!("m{mode:o}"));
        fs::write(&p, b"x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        save("sim:state=1M", &p);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

// 7. Temporary files of killed runs: none with O_TMPFILE, stale named ones cleaned.
#[test]
fn sigkill_leaves_nothing_and_stale_temporaries_are_removed() {
    let d = dir("sigkill");
    let target = d.join("out.bin");
    let mut c = vh()
        .args([
            "save",
            "sim:state=64M,chunk=64K,read-delay=20",
            "--progress-lines",
            "-o",
        ])
        .arg(&target)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _err = wait_marker(c.stderr.take().unwrap(), "progress stop-copy");
    c.kill().unwrap();
    let _ = c.wait();
    assert!(hidden(&d).is_empty(), "{:?}", hidden(&d));

    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let boot = boot_tag();
    let other = if boot == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    // Left by a dead process of this boot: removed. Another host's (or boot's) file in a
    // shared directory, and a name of another tool: kept.
    let stale = format!(".vfh-{boot}-{pid}-0123456789abcdef.tmp");
    let foreign = format!(".vfh-{other}-{pid}-0123456789abcdef.tmp");
    let not_ours = format!(".out.bin.tmp-{pid}-0123456789abcdef0123456789abcdef");
    for s in [&stale, &foreign, &not_ours] {
        fs::write(d.join(s), b"junk").unwrap();
    }
    save("sim:state=1M", &target);
    let mut left = hidden(&d);
    left.sort();
    let mut want = vec![foreign, not_ours];
    want.sort();
    assert_eq!(left, want);
}

/// The bench's own files (stream files to time, restore captures) are named as a save's
/// temporaries: one a killed run left behind (SIGKILL skips every cleanup) is removed by the
/// next run in that directory, and a run leaves none of its own.
#[test]
fn the_bench_removes_files_a_killed_run_left() {
    let d = dir("bench-stale");
    let boot = boot_tag();
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    fs::write(
        d.join(format!(".vfh-{boot}-{pid}-0123456789abcdef.tmp")),
        b"x",
    )
    .unwrap();
    let o = run(&[
        "bench",
        "--quick",
        "--mode",
        "save,restore",
        "--path",
        "file",
        "--dir",
        d.to_str().unwrap(),
        "--json",
    ]);
    no_panic(&o);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(hidden(&d).is_empty(), "{:?}", hidden(&d));
}

// 8. Untrusted metadata is escaped on the way to the terminal.
#[test]
fn metadata_escape_sequences_are_escaped() {
    let d = dir("escape");
    let file = d.join("s.bin");
    save("sim:state=1M,seed=1,name=evil\x1b[2J\x07", &file);
    let o = run(&["restore", "sim:state=1M", "-i", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!o.stdout.contains(&0x1b) && !o.stdout.contains(&0x07));
    assert!(String::from_utf8_lossy(&o.stdout).contains("evil\\u{1b}[2J"));
}

// 9. --json failures are one object with a kind and the devices' states.
#[test]
fn json_failures_say_what_kind() {
    let d = dir("kinds");
    let file = d.join("s.bin");
    save("sim:state=1M,seed=1", &file);
    let bytes = fs::read(&file).unwrap();
    fs::write(d.join("cut.bin"), &bytes[..bytes.len() / 2]).unwrap();
    let cases = [
        ("sim:state=1M", "cut.bin", "stream-corrupt"),
        ("sim:state=1M,protocol=v1", "s.bin", "incompatible"),
        ("sim:state=1M,fail-at=RESUMING", "s.bin", "device"),
        ("sim:state=1M", "missing.bin", "io"),
        // Opened, but its first read fails (EIO: nothing is mapped at address 0).
        ("sim:state=1M", "/proc/self/mem", "io"),
    ];
    for (spec, f, kind) in cases {
        let o = run(&["restore", spec, "-i", d.join(f).to_str().unwrap(), "--json"]);
        no_panic(&o);
        assert!(!o.status.success());
        let v = json(&o.stdout);
        assert_eq!(v["error"]["kind"], kind, "{spec} {f}");
        assert!(v["error"]["message"].is_string());
        if kind != "io" {
            assert_eq!(v["devices"][0]["state"], "RUNNING", "{spec}");
        }
    }
    let o = run(&["save", "sim", "--json", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json(&o.stdout)["error"]["kind"], "usage");
    // Bad values found after parsing are usage errors too, with and without --json.
    let bad_values: [&[&str]; 6] = [
        &["bench", "--state", "0"],
        &["mdev", "show", "not-a-uuid"],
        &["bar", "sim:", "read", "BAR0", "0", "-w", "3"],
        &["bench", "--devices", "0", "--mode", "parallel"],
        &["migrate", "sim:state=1M", "tcp://127.0.0.1:9"],
        &[
            "migrate",
            "sim:state=1M",
            "sim:state=1M",
            "--compress",
            "lz4",
        ],
    ];
    for args in bad_values {
        let o = run(&[args, &["--json"]].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let v = json(&o.stdout);
        assert_eq!(v["error"]["kind"], "usage", "{args:?}");
        assert!(v["devices"].as_array().unwrap().is_empty(), "{args:?}");
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: "));
    }
}

// 10. Odd names: non-UTF-8 with --json, long names, a directory (refused before the save).
#[test]
fn odd_output_names() {
    use std::os::unix::ffi::OsStrExt;
    let d = dir("names");
    let odd = d.join(std::ffi::OsStr::from_bytes(b"state-\xff.bin"));
    let o = vh()
        .args(["save", "sim:state=1M", "--json", "-o"])
        .arg(&odd)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(json(&o.stdout)["file"]
        .as_str()
        .unwrap()
        .contains('\u{fffd}'));

    let long = d.join("a".repeat(250));
    save("sim:state=1M", &long);
    assert!(long.exists());

    for bad in [d.join("b".repeat(256)), d.to_path_buf()] {
        let o = vh()
            .args(["save", "sim:state=1M,fail-at=STOP_COPY", "--json", "-o"])
            .arg(&bad)
            .output()
            .unwrap();
        let v = json(&o.stdout);
        assert_eq!(v["error"]["kind"], "io");
        // Refused before the device was opened: no device listed, and fail-at never fired.
        assert_eq!(v["devices"].as_array().unwrap().len(), 0);
    }
}

// 11. Bounds: pre-copy rounds, buffer size, pre-copy bytes.
#[test]
fn runaway_settings_are_bounded() {
    let d = dir("bounds");
    let o = run(&[
        "save",
        "sim:state=1M",
        "--precopy-rounds",
        "4294967295",
        "-o",
        "/dev/null",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["save", "sim:state=1M", "--buffer", "1", "-o", "/dev/null"]);
    assert_eq!(o.status.code(), Some(2));
    // conformance allocated its buffer as given: 64G aborted the process.
    let o = run(&["conformance", "sim:state=1M", "--buffer", "64G", "--json"]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json(&o.stdout)["error"]["kind"], "usage");
    let f = d.join("dirty.bin");
    let o = vh()
        .args([
            "save",
            "sim:state=1M,dirty-rate=4G",
            "--precopy-rounds",
            "100",
            "-o",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Pre-copy and stop-copy each bounded by the declared state's limit (64 MiB + 1 MiB).
    assert!(fs::metadata(&f).unwrap().len() < 2 * (66 << 20));
}

/// `vh()` with the child's address space limited to `bytes` (`RLIMIT_AS`, `ulimit -v`).
fn limited(bytes: u64) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = vh();
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // setrlimit(2), which is async-signal-safe, on a local struct.
    unsafe {
        c.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

// 12. Memory: transfer buffers the kernel will not map are an error, not an abort.
#[test]
fn buffers_that_cannot_be_mapped_are_an_error() {
    // The binary runs its small saves and restores in 30 to 44 MiB of address space here; one
    // 64 MiB buffer more does not fit.
    const LIMIT: u64 = 72 << 20;
    let d = dir("no-memory");
    let f = d.join("s.vfh");
    // Under the limit a save with small buffers works: the limit leaves room to run.
    let o = limited(LIMIT)
        .args(["save", "sim:state=8M", "--buffer", "64K", "-o"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs::remove_file(&f).unwrap();
    // Fails under the limit, as an error, with the device RUNNING; returns the message.
    let refused = |cmd: &[&str], io: &str, path: &Path, extra: &[&str]| -> String {
        let o = limited(LIMIT)
            .args(cmd)
            .arg("--json")
            .args(extra)
            .arg(io)
            .arg(path)
            .output()
            .unwrap();
        no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd:?} {extra:?}");
        let v = json(&o.stdout);
        assert!(v["error"]["hint"].as_str().unwrap().contains("ulimit -v"));
        assert_eq!(v["devices"][0]["state"], "RUNNING");
        v["error"]["message"].as_str().unwrap().to_string()
    };
    // Its ring of 64 MiB buffers does not fit: with and without overlap.
    for extra in [&[][..], &["--no-overlap"][..]] {
        let msg = refused(
            &["save", "sim:state=8M", "--buffer", "64M"],
            "-o",
            &f,
            extra,
        );
        assert!(
            msg.contains("cannot map a transfer buffer of 67108864 bytes"),
            "{msg}"
        );
        assert!(!f.exists(), "a failed save left its output");
        assert!(hidden(&d).is_empty(), "a failed save left a temporary file");
    }
    // A stream saved with 64 MiB chunks cannot be restored under the limit either.
    let big = d.join("big.vfh");
    let o = run(&[
        "save",
        "sim:state=8M",
        "--buffer",
        "64M",
        "-o",
        big.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for extra in [&[][..], &["--no-overlap"][..]] {
        let msg = refused(&["restore", "sim:state=8M"], "-i", &big, extra);
        assert!(msg.contains("cannot map a transfer buffer"), "{msg}");
    }
}
