//! One device's stream read straight from the link: DATA payloads land in the reader's
//! buffer whatever the split, control frames arrive whole between them, a DATA frame of
//! another device is refused; the source giving up and the destination interrupted, mid
//! stream, end both sides as they do through the pump.

use super::*;
use crate::device::MigState;
use crate::migration::engine::{Options, Progress};
use crate::transport::frame::header;
use crate::transport::tests::{
    assert_source_intact, destination, insecure_listener, opts, sim, tcp,
};
use crate::transport::{connect, migrate_to, receive_into, RefusalKind, Security, POLL};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// A link over one end of a socket pair, and the other end to write frames by hand.
fn link_pair() -> (Link, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socket pair");
    a.set_read_timeout(Some(POLL)).expect("read timeout");
    a.set_write_timeout(Some(POLL)).expect("write timeout");
    (Link::new(Box::new(a), Duration::from_secs(10)), b)
}

fn frame(kind: FrameKind, device: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(kind, device, payload.len()).to_vec();
    f.extend_from_slice(payload);
    f
}

#[test]
fn data_payloads_land_in_the_readers_buffer_and_control_frames_arrive_whole() {
    let (link, mut peer) = link_pair();
    let a: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..3000u32).map(|i| (i % 13) as u8).collect();
    let mut wire = frame(FrameKind::Data, 0, &a);
    wire.extend(frame(FrameKind::Keepalive, 0, &[]));
    wire.extend(frame(FrameKind::Data, 0, &[]));
    wire.extend(frame(FrameKind::Data, 0, &b));
    wire.extend(frame(FrameKind::End, 0, &[]));
    peer.write_all(&wire).expect("write");
    let direct = Direct::new(link, None);
    let mut got = Vec::new();
    // Reads smaller than a frame and reads larger than one.
    let mut buf = vec![0u8; 1000];
    let mut r = direct.reader();
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        buf.resize(if buf.len() == 1000 { 8192 } else { 1000 }, 0);
    }
    let mut want = a.clone();
    want.extend_from_slice(&b);
    assert_eq!(got, want);
    assert!(direct.take_failure().is_none());
}

#[test]
fn a_frame_read_whole_after_part_of_it_was_read_directly_holds_the_rest() {
    let (link, mut peer) = link_pair();
    let a: Vec<u8> = (0..4096u32).map(|i| (i % 199) as u8).collect();
    peer.write_all(&frame(FrameKind::Data, 0, &a))
        .expect("write");
    let mut head = [0u8; 100];
    match link.read_data(0, &mut head).expect("read") {
        Incoming::Data(n) => {
            assert!(n > 0 && n <= 100);
            assert_eq!(head[..n], a[..n]);
            let rest = link.recv().expect("the rest");
            assert_eq!(rest.kind, FrameKind::Data);
            assert_eq!(rest.payload, a[n..]);
        }
        other => panic!("not data: {other:?}"),
    }
}

#[test]
fn a_data_or_end_frame_of_another_device_is_a_protocol_error() {
    for (kind, payload, name) in [
        (FrameKind::Data, &b"not mine"[..], "a DATA"),
        (FrameKind::End, &b""[..], "an END"),
    ] {
        let (link, mut peer) = link_pair();
        peer.write_all(&frame(kind, 1, payload)).expect("write");
        let direct = Direct::new(link, None);
        let e = direct.reader().read(&mut [0u8; 64]).expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        match direct.take_failure() {
            Some(TransportError::Protocol(m)) => {
                assert!(m.contains(&format!("{name} frame for device 1")), "{m}")
            }
            other => panic!("{name}: not a protocol error: {other:?}"),
        }
    }
}

#[test]
fn a_source_that_fails_mid_stream_is_its_refusal_on_the_destination() {
    let (l, addr) = insecure_listener();
    let dest = destination(
        l,
        vec!["sim:state=1M,verify-seed=3".into()],
        Duration::from_secs(10),
    );
    let link = connect(&tcp(addr), &Security::Insecure, Duration::from_secs(10)).expect("connect");
    // Pre-copy goes out, then the device refuses STOP_COPY.
    let mut src = vec![sim("sim:state=1M,seed=3,fail-at=stop-copy,fail-mode=error")];
    assert!(migrate_to(&mut src, &link, &opts()).is_err());
    let (r, states) = dest.handle.join().expect("dest thread");
    match r {
        Err(TransportError::Refused(r)) => assert_eq!(r.kind, RefusalKind::Save, "{r:?}"),
        other => panic!("not the source's refusal: {other:?}"),
    }
    assert_eq!(states, vec![MigState::Running]);
}

#[test]
fn a_destination_interrupted_mid_stream_tells_the_source_and_resets() {
    let (l, addr) = insecure_listener();
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    let dest = std::thread::spawn(move || {
        let (link, _) = l.accept(Duration::from_secs(10)).expect("accept");
        let mut open = |_: &super::super::Hello| Ok(vec![sim("sim:state=4M,verify-seed=3")]);
        let mut devices = Vec::new();
        // Interrupted once the first chunk reached the device.
        let o = Options {
            cancel: Some(cancel),
            progress: Some(Arc::new(move |_: &Progress| {
                c.store(true, Ordering::Relaxed)
            })),
            ..opts()
        };
        let r = receive_into(&link, &mut open, &mut devices, &o);
        let state = devices[0].state().expect("state");
        (r, state)
    });
    let link = connect(&tcp(addr), &Security::Insecure, Duration::from_secs(10)).expect("connect");
    let mut src = vec![sim("sim:state=4M,seed=3")];
    match migrate_to(&mut src, &link, &opts()) {
        Err(TransportError::Refused(r)) => assert_eq!(r.kind, RefusalKind::Interrupted, "{r:?}"),
        other => panic!("not the destination's refusal: {other:?}"),
    }
    let (r, state) = dest.join().expect("dest thread");
    assert!(
        matches!(
            r,
            Err(TransportError::Migration(MigrationError::Interrupted))
        ),
        "{r:?}"
    );
    assert_eq!(state, MigState::Running);
    assert_source_intact(&mut src[0], "4M");
}
