use super::*;
use crate::migration::{driver_for, engine};

fn token() -> Arc<CancelToken> {
    CancelToken::new().unwrap()
}

#[test]
fn temporary_names_are_recognised_with_their_boot_and_pid() {
    assert_eq!(
        temp_owner(OsStr::new(".vfh-0a1b2c3d-42-0123456789abcdef.tmp")),
        Some(("0a1b2c3d", 42))
    );
    // No boot tag (an older name), a short tag, a bad suffix, another tool's name: none.
    for other in [
        ".vfh-42-0123456789abcdef.tmp",
        ".vfh-0a1b2c-42-0123456789abcdef.tmp",
        ".vfh-0a1b2c3d-42-xyz.tmp",
        ".a.bin.tmp-7-0123456789abcdef0123456789abcdef",
        "state.bin",
    ] {
        assert_eq!(temp_owner(OsStr::new(other)), None, "{other}");
    }
    let name = temp_name();
    assert!(name.len() < 45, "short enough for any target name");
    let (boot, pid) = temp_owner(OsStr::new(&name)).expect("our own name");
    assert_eq!((Some(boot), pid), (boot_tag(), std::process::id()));
}

#[test]
fn outputs_refuse_directories_and_long_names_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let t = token();
    assert!(Output::open(d.path(), &t).is_err());
    assert!(Output::open(&d.path().join("x".repeat(256)), &t).is_err());
    let out = Output::open(&d.path().join("x".repeat(255)), &t).unwrap();
    assert!(out.is_atomic());
    drop(out);
    assert_eq!(
        fs::read_dir(d.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn an_uncommitted_output_leaves_the_target_untouched() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.bin");
    fs::write(&p, b"old").unwrap();
    let out = Output::open(&p, &token()).unwrap();
    out.file().write_all(b"new").unwrap();
    drop(out);
    assert_eq!(fs::read(&p).unwrap(), b"old");
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
}

use std::io::Write as _;

/// The file restored is the one opened, even when another is renamed over its path
/// before the restore reads it (a device without reset: verified, rewound, restored).
#[test]
fn restore_reads_the_file_it_opened_not_the_path_again() {
    let d = tempfile::tempdir().unwrap();
    let open = |spec: &str| {
        driver_for(crate::open(&spec.parse().unwrap(), &Default::default()).unwrap()).unwrap()
    };
    let opts = engine::Options::default();
    let good = d.path().join("s.bin");
    let other = d.path().join("other.bin");
    engine::save_to_file(open("sim:state=1M,seed=1").as_mut(), &good, &opts).unwrap();
    engine::save_to_file(open("sim:state=1M,seed=2").as_mut(), &other, &opts).unwrap();
    let t = token();
    let input = Input::open(&good, &t).unwrap();
    fs::rename(&other, &good).unwrap();
    let mut dst = open("sim:state=1M,verify-seed=1,reset=0");
    engine::restore_from(dst.as_mut(), &input, &opts, &t).unwrap();
}

/// A new pipe (read end, write end), created with `flags` (`pipe2(2)`).
fn pipe(flags: libc::c_int) -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: a valid array for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) }, 0);
    // SAFETY: both fds were just created and are owned here.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

#[test]
fn a_cancelled_token_ends_a_blocked_pipe_read() {
    let (r, _w) = pipe(0);
    let t = token();
    let t2 = t.clone();
    let h = std::thread::spawn(move || {
        let mut c = super::super::cancel::Cancellable::new(&r, t2);
        let mut b = [0u8; 1];
        std::io::Read::read(&mut c, &mut b)
    });
    t.cancel();
    let e = h.join().unwrap().unwrap_err();
    assert!(super::super::cancel::is_cancelled(&e));
}

/// A pipe that was non-blocking before it was wrapped: an empty read ends as cancelled
/// (whether the cancel comes before it or while it waits), never with `WouldBlock`, and the
/// flag is still the pipe's own after the wrapper is dropped.
#[test]
fn an_already_non_blocking_pipe_read_ends_as_cancelled_and_keeps_its_flag() {
    let (r, _w) = pipe(libc::O_NONBLOCK);
    let t = token();
    let t2 = t.clone();
    let h = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let mut c = super::super::cancel::Cancellable::new(&r, t2);
        let mut b = [0u8; 1];
        let first = std::io::Read::read(&mut c, &mut b);
        drop(c);
        // SAFETY: F_GETFL on the pipe this thread owns.
        let flags = unsafe { libc::fcntl(r.as_raw_fd(), libc::F_GETFL) };
        (first, flags)
    });
    t.cancel();
    let (first, flags) = h.join().unwrap();
    let e = first.unwrap_err();
    assert!(super::super::cancel::is_cancelled(&e), "{e}");
    assert_ne!(flags & libc::O_NONBLOCK, 0, "the pipe's own flag stays");
}

#[test]
fn vectored_reads_and_writes_go_through_in_one_call() {
    use std::io::{IoSlice, IoSliceMut, Read, Seek, Write};
    let head = [7u8; 24];
    let body = [9u8; 1000];
    let t = token();
    // A regular file: one writev(2), one readv(2).
    let mut f = tempfile::tempfile().unwrap();
    let mut c = super::super::cancel::Cancellable::new(&f, t.clone());
    let n = c
        .write_vectored(&[IoSlice::new(&head), IoSlice::new(&body)])
        .unwrap();
    assert_eq!(
        n,
        head.len() + body.len(),
        "the header and payload in one call"
    );
    drop(c);
    f.rewind().unwrap();
    let (mut a, mut b) = ([0u8; 24], [0u8; 1000]);
    let mut c = super::super::cancel::Cancellable::new(&f, t.clone());
    let n = c
        .read_vectored(&mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)])
        .unwrap();
    assert_eq!((n, a, b), (1024, head, body));
    // A pipe (polled, non-blocking while wrapped): the same.
    let (r, w) = pipe(0);
    let mut cw = super::super::cancel::Cancellable::new(&w, t.clone());
    let n = cw
        .write_vectored(&[IoSlice::new(&head), IoSlice::new(&body)])
        .unwrap();
    assert_eq!(n, 1024);
    let (mut a, mut b) = ([0u8; 24], [0u8; 1000]);
    let mut cr = super::super::cancel::Cancellable::new(&r, t);
    let n = cr
        .read_vectored(&mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)])
        .unwrap();
    assert_eq!((n, a, b), (1024, head, body));
}

/// A commit that fails before its rename (here the fsync, which a pipe refuses) leaves no
/// named temporary file behind (the fallback where a directory has no `O_TMPFILE`), and no
/// target.
#[test]
fn a_commit_that_fails_removes_its_named_temporary_file() {
    let d = tempfile::tempdir().unwrap();
    let tmp = d.path().join(temp_name());
    fs::write(&tmp, b"a partial stream").unwrap();
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 succeeded: both descriptors are open and owned by nobody else.
    let (_r, w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let out = Output {
        name: d.path().join("out.bin"),
        file: w,
        atomic: Some(Atomic {
            dir: d.path().to_path_buf(),
            target: "out.bin".into(),
            named: Some(tmp.clone()),
        }),
    };
    assert!(out.commit().is_err(), "fsync of a pipe succeeded");
    assert!(
        !tmp.exists(),
        "the temporary file outlived the failed commit"
    );
    assert!(!d.path().join("out.bin").exists());
}
