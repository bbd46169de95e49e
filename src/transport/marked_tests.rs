//! A plain TCP link's reading half ([`MarkedSocket`](super::super::marked::MarkedSocket)):
//! while a frame is read, the socket's low-water mark is what the frame still lacks (at most
//! [`LOW_WATER_MAX`]); frames of every size arrive whole through the reused payload buffers;
//! the socket's own mark comes back when the link is dropped.

use super::*;
use crate::migration::engine::{sockopt, LOW_WATER_MAX};
use crate::transport::frame::{header, FrameKind, MAX_FRAME};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Instant;

fn mark(s: &TcpStream) -> usize {
    sockopt(s.as_raw_fd(), libc::SO_RCVLOWAT).expect("SO_RCVLOWAT") as usize
}

/// A link over the accepted end of a loopback connection, set up as `Listener::accept`
/// sets it up; the connecting end to write frames by hand; a second descriptor of the
/// accepted socket to look at its mark.
fn link_pair() -> (Link, TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tx = TcpStream::connect(l.local_addr().expect("address")).expect("connect");
    let (rx, _) = l.accept().expect("accept");
    tune(&rx, "test").expect("tune");
    let probe = rx.try_clone().expect("clone");
    let link = tcp_link(rx, "test", Duration::from_secs(60)).expect("link");
    (link, tx, probe)
}

fn send(tx: &mut TcpStream, device: u8, payload: &[u8]) {
    tx.write_all(&header(FrameKind::Data, device, payload.len()))
        .expect("header");
    tx.write_all(payload).expect("payload");
}

#[test]
fn the_link_waits_for_what_the_frame_lacks_and_puts_the_mark_back() {
    let (link, mut tx, probe) = link_pair();
    let original = mark(&probe);
    assert!(
        original < 1000,
        "a fresh socket's mark is small: {original}"
    );
    let big: Vec<u8> = (0..MAX_FRAME).map(|i| (i % 251) as u8).collect();
    std::thread::scope(|s| {
        let reader = s.spawn(|| link.recv());
        // The header and a first KiB: the reader goes on waiting for the rest of the payload,
        // with the mark at the cap (the whole rest is more).
        tx.write_all(&header(FrameKind::Data, 3, big.len()))
            .expect("header");
        tx.write_all(&big[..1024]).expect("start");
        let t0 = Instant::now();
        while mark(&probe) != LOW_WATER_MAX {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the mark stayed at {} while a 1 MiB frame was read",
                mark(&probe)
            );
            std::thread::yield_now();
        }
        tx.write_all(&big[1024..]).expect("rest");
        let f = reader.join().expect("reader").expect("frame");
        assert_eq!((f.kind, f.device), (FrameKind::Data, 3));
        assert!(f.payload == big, "the 1 MiB frame arrived whole");
        link.recycle(f.payload);
    });
    // A smaller frame into the recycled 1 MiB buffer: its bytes only, nothing of the last.
    send(&mut tx, 1, &[9; 300]);
    let f = link.recv().expect("small frame");
    assert_eq!(f.payload, vec![9; 300]);
    link.recycle(f.payload);
    // Then an empty frame and a larger one again.
    send(&mut tx, 2, &[]);
    assert!(link.recv().expect("empty frame").payload.is_empty());
    send(&mut tx, 1, &[7; 5000]);
    let f = link.recv().expect("larger frame");
    assert_eq!(f.payload, vec![7; 5000]);
    drop(link);
    assert_eq!(mark(&probe), original, "put back when the link is dropped");
}
