//! [`Cancellable::low_water`] on real sockets: a TCP read waits for what the stream needs
//! (capped), the socket's own mark comes back when nothing is needed and on drop, other
//! descriptors are left alone, and `restore_from` over a connection its peer keeps open
//! ends at the trailer in every encoding, overlapped and on one thread.

use super::*;
use crate::migration::engine::{sockopt, Input, LOW_WATER_MAX};
use crate::migration::stream::{Compression, Needed};
use crate::migration::{driver_for, engine};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

/// A connected loopback pair: (sending end, receiving end).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (rx, _) = l.accept().unwrap();
    tx.set_nodelay(true).unwrap();
    (tx, rx)
}

/// Runs `f`, cancelling `token` if it has not returned after a minute: a read that waits for
/// bytes that never come then fails ([`Cancelled`]) instead of hanging the test.
pub(super) fn watched<T>(token: &CancelToken, f: impl FnOnce() -> T) -> T {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                wait.recv_timeout(std::time::Duration::from_secs(60))
            {
                token.cancel();
            }
        });
        let r = f();
        let _ = done.send(());
        r
    })
}

fn mark(s: &impl AsRawFd) -> libc::c_int {
    sockopt(s.as_raw_fd(), libc::SO_RCVLOWAT).unwrap()
}

#[test]
fn a_tcp_read_waits_for_what_the_stream_needs_and_the_mark_comes_back() {
    let (mut tx, rx) = tcp_pair();
    let original = mark(&rx);
    let needed = Needed::new();
    let token = CancelToken::new().unwrap();
    let mut c = Cancellable::new(&rx, token.clone())
        .low_water(needed.clone())
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    watched(&token, || {
        // 1000 bytes are queued before the read; the other 2000 come from another thread. A
        // read that needs 3000 gets all of them at once, whenever that thread runs.
        tx.write_all(&[1; 1000]).unwrap();
        needed.set(3000);
        let rest = std::thread::scope(|s| {
            s.spawn(|| tx.write_all(&[2; 2000]).unwrap());
            c.read(&mut buf).unwrap()
        });
        assert_eq!(rest, 3000, "one wake-up for what the stream needed");
        assert_eq!(mark(&rx), 3000);

        // More than the cap: the mark stops at it. (The kernel may wake the read before, when
        // the receive window fills; the rest is then read with what is still needed, as a
        // stream reader does.)
        let big = LOW_WATER_MAX + 1000;
        needed.set(big);
        std::thread::scope(|s| {
            s.spawn(|| tx.write_all(&vec![3; big]).unwrap());
            let mut got = c.read(&mut buf).unwrap();
            assert_eq!(mark(&rx) as usize, LOW_WATER_MAX);
            while got < big {
                needed.set(big - got);
                got += c.read(&mut buf).unwrap();
            }
        });

        // Nothing needed (between a stream reader's reads): the socket's own mark.
        tx.write_all(&[4; 10]).unwrap();
        needed.set(0);
        assert_eq!(c.read(&mut buf).unwrap(), 10);
        assert_eq!(mark(&rx), original);

        tx.write_all(&[5; 500]).unwrap();
        needed.set(500);
        assert_eq!(c.read(&mut buf).unwrap(), 500);
        assert_eq!(mark(&rx), 500);
    });
    drop(c);
    assert_eq!(mark(&rx), original, "put back on drop");
}

#[test]
fn anything_but_a_tcp_socket_keeps_its_mark() {
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let before = mark(&a);
    let needed = Needed::new();
    let mut c = Cancellable::new(&a, CancelToken::new().unwrap())
        .low_water(needed.clone())
        .unwrap();
    b.write_all(&[7; 100]).unwrap();
    needed.set(4096);
    let mut buf = [0u8; 4096];
    assert_eq!(c.read(&mut buf).unwrap(), 100, "read as before");
    assert_eq!(mark(&a), before);
}

/// The sender writes the stream and keeps its end open until the restore is over: a count
/// or a mark beyond the trailer would wait for bytes that never come (and be cancelled by
/// [`watched`]).
#[test]
fn restore_from_a_socket_left_open_ends_at_the_trailer() {
    let open = |spec: &str| {
        driver_for(crate::open(&spec.parse().unwrap(), &Default::default()).unwrap()).unwrap()
    };
    for (compression, overlap) in [
        (Compression::None, true),
        (Compression::Zero, true),
        (Compression::Auto, true),
        // On one thread the socket is polled before each wait (`Options::max_poll`).
        (Compression::None, false),
        (Compression::Auto, false),
    ] {
        let opts = engine::Options {
            compression,
            overlap,
            buffer_size: 256 << 10,
            ..Default::default()
        };
        let (saved, saving) = engine::save(
            open("sim:state=4M,seed=9,zero-pages=0.5").as_mut(),
            Vec::new(),
            "memory",
            &opts,
        )
        .unwrap();
        let (mut tx, rx) = tcp_pair();
        let token = CancelToken::new().unwrap();
        let input = Input::from_file(
            std::fs::File::from(std::os::fd::OwnedFd::from(rx)),
            "tcp".as_ref(),
        );
        let mut dst = open("sim:state=4M,verify-seed=9,zero-pages=0.5");
        let feeder = std::thread::spawn(move || tx.write_all(&saved).map(|()| tx));
        let report = watched(&token, || {
            engine::restore_from(dst.as_mut(), &input, &opts, &token)
        });
        let _still_open = feeder.join().unwrap().unwrap();
        let report = report.unwrap_or_else(|e| panic!("{compression:?}, overlap {overlap}: {e}"));
        assert_eq!(
            report.bytes, saving.bytes,
            "{compression:?}, overlap {overlap}"
        );
    }
}
