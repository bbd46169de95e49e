use super::*;
use crate::device::MigState;
use crate::migration::stream::{ChunkKind, StreamWriter};
use crate::migration::{driver_for, engine, MigrationDriver, MigrationError};

fn open(spec: &str) -> Box<dyn MigrationDriver> {
    let dev = crate::open(&spec.parse().expect("spec"), &Default::default()).expect("open");
    driver_for(dev).expect("driver")
}

#[test]
fn handoff_leaves_the_source_stopped_and_the_destination_running() {
    let mut src = open("sim:state=2M,seed=7,dirty-rate=64M");
    let mut dst = open("sim:state=2M,verify-seed=7");
    let mut s = SourceSession::new(src.as_mut()).unwrap();
    let mut t = DestinationSession::new(dst.as_mut()).unwrap();
    s.check_target(&t).unwrap();
    s.start_precopy().unwrap();
    assert_eq!(s.stage(), MigState::PreCopy);
    let r = s.precopy_round(&mut t).unwrap();
    assert_eq!(r.round, 1);
    assert!(r.bytes > 0);
    s.stop_copy().unwrap();
    s.drain(&mut t).unwrap();
    let sent = s.finish(EndState::Stop).unwrap();
    let got = t.finish(EndState::Running).unwrap();
    assert_eq!(sent.bytes(), got.bytes);
    assert_eq!(sent.end, MigState::Stop);
    assert_eq!(src.state().unwrap(), MigState::Stop);
    assert_eq!(dst.state().unwrap(), MigState::Running);
}

#[test]
fn a_session_into_a_stream_restores_with_the_engine() {
    let mut src = open("sim:state=1M,seed=3");
    let mut s = SourceSession::new(src.as_mut())
        .unwrap()
        .with_chunk_size(64 << 10)
        .unwrap();
    let mut w = StreamWriter::new(Vec::new(), "memory", &s.stream_header()).unwrap();
    s.stop_copy().unwrap();
    s.drain(&mut w).unwrap();
    s.finish(EndState::Running).unwrap();
    assert_eq!(src.state().unwrap(), MigState::Running);
    let (bytes, _) = w.finish().unwrap();
    let mut dst = open("sim:state=1M,verify-seed=3");
    engine::restore(dst.as_mut(), &bytes[..], &Default::default()).unwrap();
}

#[test]
fn steps_out_of_order_are_refused_without_touching_the_device() {
    let mut src = open("sim:state=64K,seed=1");
    let mut s = SourceSession::new(src.as_mut()).unwrap();
    let mut sink = |_: ChunkKind, _: &[u8]| Ok(());
    assert!(matches!(
        s.drain(&mut sink),
        Err(MigrationError::WrongState { .. })
    ));
    assert!(matches!(
        s.precopy_round(&mut sink),
        Err(MigrationError::WrongState { .. })
    ));
    assert_eq!(s.driver().state().unwrap(), MigState::Running);
    s.stop_copy().unwrap();
    assert!(matches!(
        s.start_precopy(),
        Err(MigrationError::WrongState { .. })
    ));
    // Not drained: finishing is refused and the dropped session recovers the device.
    assert!(s.finish(EndState::Stop).is_err());
    assert_eq!(src.state().unwrap(), MigState::Running);
}

#[test]
fn a_source_not_running_is_refused() {
    let mut src = open("sim:state=64K,seed=1");
    src.set_state(MigState::Stop).unwrap();
    assert!(matches!(
        SourceSession::new(src.as_mut()),
        Err(MigrationError::WrongState { .. })
    ));
    assert_eq!(src.state().unwrap(), MigState::Stop);
}

#[test]
fn a_panicking_sink_leaves_both_devices_running_and_the_panic_goes_on() {
    let mut src = open("sim:state=1M,seed=7");
    let mut dst = open("sim:state=1M,verify-seed=7");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut s = SourceSession::new(src.as_mut()).unwrap();
        let mut t = DestinationSession::new(dst.as_mut()).unwrap();
        s.stop_copy().unwrap();
        let mut n = 0;
        let mut sink = |k: ChunkKind, d: &[u8]| {
            n += 1;
            if n == 2 {
                panic!("sink panicked");
            }
            t.put_chunk(k, d)
        };
        let _ = s.drain(&mut sink);
    }));
    let payload = r.expect_err("the panic propagates");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"sink panicked"));
    assert_eq!(src.state().unwrap(), MigState::Running);
    assert_eq!(dst.state().unwrap(), MigState::Running);
}

#[test]
fn abort_reports_the_recovery() {
    let mut dst = open("sim:state=64K,verify-seed=1");
    let t = DestinationSession::new(dst.as_mut()).unwrap();
    let rec = t.abort().unwrap();
    assert!(rec.reset_used());
    assert_eq!(dst.state().unwrap(), MigState::Running);
}

#[test]
fn a_refused_state_resets_the_destination() {
    let mut src = open("sim:state=256K,seed=1");
    let mut dst = open("sim:state=256K,verify-seed=2");
    let mut s = SourceSession::new(src.as_mut()).unwrap();
    let mut t = DestinationSession::new(dst.as_mut()).unwrap();
    s.stop_copy().unwrap();
    s.drain(&mut t).unwrap();
    s.finish(EndState::Running).unwrap();
    assert!(t.finish(EndState::Running).is_err());
    assert_eq!(dst.state().unwrap(), MigState::Running);
}

#[test]
fn a_group_reaches_p2p_before_any_member_stops() {
    let flags = "flags=STOP_COPY|P2P|PRE_COPY";
    let mut a = open(&format!("sim:state=256K,seed=1,{flags}"));
    let mut b = open(&format!("sim:state=256K,seed=2,{flags}"));
    let mut a2 = open(&format!("sim:state=256K,verify-seed=1,{flags}"));
    let mut b2 = open(&format!("sim:state=256K,verify-seed=2,{flags}"));
    let mut g = SourceGroup::new(vec![
        SourceSession::new(a.as_mut()).unwrap(),
        SourceSession::new(b.as_mut()).unwrap(),
    ]);
    let mut d = DestinationGroup::new(vec![
        DestinationSession::new(a2.as_mut()).unwrap(),
        DestinationSession::new(b2.as_mut()).unwrap(),
    ]);
    g.start_precopy().unwrap();
    for m in g.members().iter_mut() {
        m.quiesce().unwrap();
        assert_eq!(m.stage(), MigState::PreCopyP2p);
    }
    g.stop_copy().unwrap();
    for (s, t) in g.members().iter_mut().zip(d.members().iter_mut()) {
        assert_eq!(s.driver().state().unwrap(), MigState::StopCopy);
        s.drain(t).unwrap();
    }
    g.finish(EndState::Stop).unwrap();
    let reports = d.finish(EndState::Running).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(a.state().unwrap(), MigState::Stop);
    assert_eq!(b.state().unwrap(), MigState::Stop);
    assert_eq!(a2.state().unwrap(), MigState::Running);
    assert_eq!(b2.state().unwrap(), MigState::Running);
}

#[test]
fn a_group_without_p2p_devices_still_stops_them_all() {
    let mut a = open("sim:state=64K,seed=1");
    let mut g = SourceGroup::new(vec![SourceSession::new(a.as_mut()).unwrap()]);
    g.stop_copy().unwrap();
    let mut sink = |_: ChunkKind, _: &[u8]| Ok(());
    g.members()[0].drain(&mut sink).unwrap();
    g.finish(EndState::Running).unwrap();
    assert_eq!(a.state().unwrap(), MigState::Running);
}

#[test]
fn a_v1_device_hands_off_too() {
    let mut src = open("sim:protocol=v1,state=1M,seed=4");
    let mut dst = open("sim:protocol=v1,state=1M,verify-seed=4");
    let mut s = SourceSession::new(src.as_mut()).unwrap();
    let mut t = DestinationSession::new(dst.as_mut()).unwrap();
    s.check_target(&t).unwrap();
    s.start_precopy().unwrap();
    s.precopy_round(&mut t).unwrap();
    s.stop_copy().unwrap();
    s.drain(&mut t).unwrap();
    s.finish(EndState::Stop).unwrap();
    t.finish(EndState::Running).unwrap();
    assert_eq!(src.state().unwrap(), MigState::Stop);
    assert_eq!(dst.state().unwrap(), MigState::Running);
}

#[test]
fn quiesce_needs_p2p() {
    let mut src = open("sim:state=64K,seed=1,flags=STOP_COPY|PRE_COPY");
    let mut s = SourceSession::new(src.as_mut()).unwrap();
    assert!(s.quiesce().is_err());
    drop(s);
    assert_eq!(src.state().unwrap(), MigState::Running);
}

#[test]
fn an_endless_stop_copy_is_cut_off() {
    let mut src = open("sim:state=64K,seed=1,violate=endless-read");
    let mut s = SourceSession::new(src.as_mut()).unwrap();
    s.stop_copy().unwrap();
    let mut sink = |_: ChunkKind, _: &[u8]| Ok(());
    let e = s.drain(&mut sink).unwrap_err();
    assert!(e.to_string().contains("keeps streaming"), "{e}");
    drop(s);
    assert_eq!(src.state().unwrap(), MigState::Running);
}

/// The session takes the engine's chunk sizes and no others: below 4 KiB the framing
/// outweighs the data, above 64 MiB no stream could carry the chunk.
#[test]
fn a_session_refuses_the_chunk_sizes_the_engine_refuses() {
    let mut src = open("sim:state=1M,seed=3");
    for bad in [0, 1024, engine::MIN_BUFFER - 1, (64 << 20) + 1] {
        let s = SourceSession::new(src.as_mut()).unwrap();
        match s.with_chunk_size(bad) {
            Err(MigrationError::InvalidBufferSize { size }) => assert_eq!(size, bad),
            Err(e) => panic!("{bad}: {e}"),
            Ok(_) => panic!("{bad} was accepted"),
        }
    }
    let s = SourceSession::new(src.as_mut()).unwrap();
    assert!(s.with_chunk_size(engine::MIN_BUFFER).is_ok());
    assert_eq!(src.state().unwrap(), MigState::Running);
}
