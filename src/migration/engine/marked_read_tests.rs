//! [`MarkedRead`] on real sockets: a read blocks until what the stream needs came, a count
//! that is never met only delays a read by the timeout, a cancel ends a waiting read, the
//! socket is put back as found, and anything but a TCP socket is left alone; a one-thread
//! `restore_from` takes this path for a TCP socket only.

use super::*;
use crate::migration::engine::cancel::is_cancelled;
use crate::migration::engine::low_water::sockopt;
use crate::migration::engine::Options;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;

/// A connected loopback pair: (sending end, receiving end as a `File`).
fn tcp_pair() -> (TcpStream, File) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (rx, _) = l.accept().unwrap();
    tx.set_nodelay(true).unwrap();
    (tx, File::from(OwnedFd::from(rx)))
}

fn flags(f: &File) -> libc::c_int {
    // SAFETY: F_GETFL on an open descriptor.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) }
}

fn timeout(f: &File) -> Duration {
    let tv = rcvtimeo(f.as_raw_fd()).unwrap();
    Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
}

#[test]
fn a_read_waits_for_what_the_stream_needs_and_the_socket_is_put_back() {
    let (mut tx, rx) = tcp_pair();
    // As a caller may hand it over: non-blocking, with a receive timeout of its own.
    // SAFETY: F_SETFL on an open descriptor.
    unsafe { libc::fcntl(rx.as_raw_fd(), libc::F_SETFL, flags(&rx) | libc::O_NONBLOCK) };
    set_rcvtimeo(rx.as_raw_fd(), timeval(Duration::from_secs(7))).unwrap();
    let (flags_before, mark_before) = (
        flags(&rx),
        sockopt(rx.as_raw_fd(), libc::SO_RCVLOWAT).unwrap(),
    );
    let needed = Needed::new();
    let mut m = MarkedRead::new(&rx, CancelToken::new().unwrap(), needed.clone())
        .unwrap()
        .expect("a TCP socket");
    assert_eq!(flags(&rx) & libc::O_NONBLOCK, 0, "blocking while read");
    // The kernel keeps the timeout in clock ticks (rounded up).
    let t = timeout(&rx);
    assert!(t >= CANCEL_CHECK && t < CANCEL_CHECK * 2, "{t:?}");
    // 1000 bytes are queued before the read; the other 2000 come from another thread. A read
    // that needs 3000 gets all of them at once, whenever that thread runs.
    tx.write_all(&[1; 1000]).unwrap();
    needed.set(3000);
    let mut buf = vec![0u8; 1 << 20];
    let got = std::thread::scope(|s| {
        s.spawn(|| tx.write_all(&[2; 2000]).unwrap());
        m.read(&mut buf).unwrap()
    });
    assert_eq!(got, 3000);
    assert_eq!(&buf[..1000], &[1; 1000][..]);
    assert_eq!(&buf[1000..3000], &[2; 2000][..]);
    drop(m);
    assert_eq!(flags(&rx), flags_before);
    assert_eq!(timeout(&rx), Duration::from_secs(7));
    assert_eq!(
        sockopt(rx.as_raw_fd(), libc::SO_RCVLOWAT).unwrap(),
        mark_before
    );
}

/// A count the peer never meets (it sent less and keeps its end open) costs a read one
/// timeout, never a hang.
#[test]
fn a_count_never_met_returns_what_came_once_the_timeout_passed() {
    let (mut tx, rx) = tcp_pair();
    let needed = Needed::new();
    let mut m = MarkedRead::new(&rx, CancelToken::new().unwrap(), needed.clone())
        .unwrap()
        .expect("a TCP socket");
    tx.write_all(&[5; 100]).unwrap();
    needed.set(4096);
    let mut buf = [0u8; 4096];
    assert_eq!(m.read(&mut buf).unwrap(), 100);
    assert_eq!(&buf[..100], &[5; 100][..]);
}

#[test]
fn a_cancel_ends_a_read_waiting_for_bytes_that_do_not_come() {
    let (_tx, rx) = tcp_pair();
    let token = CancelToken::new().unwrap();
    let needed = Needed::new();
    let mut m = MarkedRead::new(&rx, token.clone(), needed.clone())
        .unwrap()
        .expect("a TCP socket");
    needed.set(10);
    let mut buf = [0u8; 10];
    let r = std::thread::scope(|s| {
        s.spawn(|| token.cancel());
        m.read(&mut buf)
    });
    let e = r.expect_err("nothing was sent");
    assert!(is_cancelled(&e), "{e}");
}

#[test]
fn anything_but_a_tcp_socket_is_left_alone() {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let a = File::from(OwnedFd::from(a));
    let before = flags(&a);
    let m = MarkedRead::new(&a, CancelToken::new().unwrap(), Needed::new()).unwrap();
    assert!(m.is_none());
    assert_eq!(flags(&a), before);
}

/// `restore_from` reads a TCP socket this way on one thread only, and nothing else.
#[test]
fn a_one_thread_restore_reads_a_tcp_socket_this_way() {
    let token = CancelToken::new().unwrap();
    let one = Options {
        overlap: false,
        ..Default::default()
    };
    let two = Options {
        overlap: true,
        ..Default::default()
    };
    let (_tx, rx) = tcp_pair();
    assert!(super::super::restore::marked(&rx, &token, &one)
        .unwrap()
        .is_some());
    assert!(super::super::restore::marked(&rx, &token, &two)
        .unwrap()
        .is_none());
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let a = File::from(OwnedFd::from(a));
    assert!(super::super::restore::marked(&a, &token, &one)
        .unwrap()
        .is_none());
}
