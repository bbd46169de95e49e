//! The migration drivers (v2, v1) and the dirty-page workload over the simulated device: the
//! layers above the back ends, tested from outside the crate so that neither `sim` nor
//! `migration` needs the other.

use std::time::Duration;

use vfio_harness::device::{DeviceHandle, MigState};
use vfio_harness::migration::v1::V1Driver;
use vfio_harness::migration::workload::{DirtyWriterSpec, DirtyingDriver};
use vfio_harness::migration::{driver_for, MigrationDriver, MigrationError, Protocol};
use vfio_harness::sim::{self, open_with_clock, ManualClock, SimDevice};

const PAGE: u64 = 4096;

fn dev(params: &str) -> DeviceHandle {
    sim::open(params).unwrap()
}

/// The size of a whole saved state (header, data, trailer) for these sim parameters, as a
/// fresh v2 device reports it before anything was read.
fn full_size(params: &str) -> u64 {
    dev(params).stop_copy_size().unwrap()
}

#[test]
fn v2_driver_over_the_sim() {
    let d = dev("state=64K,seed=2");
    let mut drv = driver_for(d).unwrap();
    assert_eq!(drv.protocol(), Protocol::V2);
    drv.set_state(MigState::PreCopy).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let n = drv.read(&mut buf).unwrap();
    assert!(n > 64 << 10);
    assert_eq!(
        drv.read(&mut buf).unwrap(),
        0,
        "ENOMSG is 'nothing pending'"
    );
    assert_eq!(drv.pending().unwrap().total(), 0);
    drv.set_state(MigState::StopCopy).unwrap();
    assert_eq!(drv.read(&mut buf).unwrap(), 32); // the trailer
    assert_eq!(drv.read(&mut buf).unwrap(), 0);
    drv.recover().unwrap();
    assert_eq!(drv.state().unwrap(), MigState::Running);
}

// ---- v1 ----

fn v1_save(drv: &mut dyn MigrationDriver, buf_len: usize) -> Vec<u8> {
    drv.set_state(MigState::StopCopy).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; buf_len];
    loop {
        let n = drv.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    drv.set_state(MigState::Stop).unwrap();
    out
}

fn v1_restore(
    drv: &mut dyn MigrationDriver,
    data: &[u8],
    piece: usize,
) -> vfio_harness::migration::Result<()> {
    drv.set_state(MigState::Resuming)?;
    for p in data.chunks(piece) {
        let mut off = 0;
        while off < p.len() {
            off += drv.write(&p[off..])?;
        }
    }
    drv.set_state(MigState::Running)
}

#[test]
fn v1_round_trip_with_and_without_mmap() {
    for mmap in ["1", "0"] {
        let src = dev(&format!(
            "protocol=v1,state=1M,seed=9,v1-data=64K,v1-mmap={mmap}"
        ));
        assert_eq!(src.migration_flags().unwrap(), None);
        let mut drv = driver_for(src).unwrap();
        assert_eq!(drv.protocol(), Protocol::V1);
        assert_eq!(drv.state().unwrap(), MigState::Running);
        let data = v1_save(drv.as_mut(), 1 << 20);
        assert_eq!(data.len() as u64, full_size("state=1M"));

        let dst = dev(&format!(
            "protocol=v1,state=1M,verify-seed=9,v1-data=64K,v1-mmap={mmap}"
        ));
        let mut d1 = V1Driver::new(dst.clone()).unwrap();
        v1_restore(&mut d1, &data, 100_000).unwrap();
        assert_eq!(d1.uses_mmap(), mmap == "1");
        assert_eq!(d1.state().unwrap(), MigState::Running);
        assert_eq!(
            dst.as_any()
                .downcast_ref::<SimDevice>()
                .unwrap()
                .state_seed(),
            9
        );

        // Wrong seed: refused when leaving RESUMING, the device reports the error state.
        let bad = dev(&format!(
            "protocol=v1,state=1M,verify-seed=10,v1-mmap={mmap}"
        ));
        let mut d2 = V1Driver::new(bad).unwrap();
        let e = v1_restore(&mut d2, &data, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("seed 9"), "{e}");
        assert_eq!(d2.state().unwrap(), MigState::Error);
        d2.recover().unwrap();
        assert_eq!(d2.state().unwrap(), MigState::Running);
    }
}

#[test]
fn v1_precopy_small_buffers_and_pending() {
    let clock = ManualClock::new();
    let src = open_with_clock(
        "protocol=v1,state=256K,seed=4,v1-data=16K,dirty-rate=64K/s",
        clock.clone(),
    )
    .unwrap();
    let mut drv = V1Driver::new(src).unwrap();
    drv.set_state(MigState::PreCopy).unwrap();
    let total0 = drv.pending().unwrap().total();
    assert_eq!(total0, 32 + 24 + (256 << 10));
    let mut data = Vec::new();
    // A buffer smaller than a chunk: chunks are split across reads, and a pending() call in
    // the middle of a chunk must not lose its rest.
    let mut buf = vec![0u8; 5000];
    let n = drv.read(&mut buf).unwrap();
    data.extend_from_slice(&buf[..n]);
    assert_eq!(drv.pending().unwrap().total(), total0 - n as u64);
    loop {
        let n = drv.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    assert_eq!(data.len() as u64, total0);
    assert_eq!(drv.pending().unwrap().total(), 0);
    clock.advance(Duration::from_millis(250));
    assert_eq!(drv.pending().unwrap().total(), (16 << 10) + 24);
    drv.set_state(MigState::StopCopy).unwrap();
    let mut big = vec![0u8; 1 << 20];
    loop {
        let n = drv.read(&mut big).unwrap();
        if n == 0 {
            break;
        }
        data.extend_from_slice(&big[..n]);
    }
    drv.set_state(MigState::Stop).unwrap();
    let dst = dev("protocol=v1,state=256K,verify-seed=4,v1-data=16K");
    v1_restore(&mut V1Driver::new(dst).unwrap(), &data, 7777).unwrap();
}

#[test]
fn v1_driver_spots_violations() {
    // A device that announces chunks bigger than its data section.
    let bad = dev("protocol=v1,state=64K,violate=oversized-chunk");
    let mut drv = V1Driver::new(bad).unwrap();
    drv.set_state(MigState::StopCopy).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    assert!(matches!(
        drv.read(&mut buf),
        Err(MigrationError::Protocol { .. })
    ));
    drv.recover().unwrap();

    // fail-at on v1: the device_state write fails with the device's reason.
    let f = dev("protocol=v1,state=64K,fail-at=stop-copy");
    let mut drv = V1Driver::new(f).unwrap();
    let e = drv.set_state(MigState::StopCopy).unwrap_err();
    assert!(e.to_string().contains("fail-at"), "{e}");
    assert_eq!(drv.state().unwrap(), MigState::Running);
    assert!(matches!(
        drv.set_state(MigState::RunningP2p),
        Err(MigrationError::Unreachable { .. })
    ));
    // Reading saved state while running is a state error, not an empty stream.
    assert!(matches!(
        drv.read(&mut buf),
        Err(MigrationError::WrongState { .. })
    ));
}

// ---- workload ----

#[test]
fn writer_runs_through_precopy_and_stops_before_stop_copy() {
    let dev = sim::open("bar2=1M").unwrap();
    let span = 64 * PAGE;
    let before = vec![0u8; span as usize];
    dev.write_region(sim::BAR2, 0, &before).unwrap();
    let mut drv = driver_for(dev.clone()).unwrap();
    let spec: DirtyWriterSpec = "BAR2:1G:0:256K".parse().unwrap();
    let mut d = DirtyingDriver::new(drv.as_mut(), &spec).unwrap();
    assert!(d.writer_running());
    d.set_state(MigState::PreCopy).unwrap();
    assert!(
        d.writer_running(),
        "the writer must keep running in PRE_COPY"
    );
    d.set_state(MigState::StopCopy).unwrap();
    assert!(!d.writer_running(), "the writer must stop before STOP_COPY");
    let st = d.stop_writer().unwrap();
    assert_eq!(
        (st.region, st.len, st.bytes_dirtied),
        (2, span, st.pages_written * PAGE)
    );
    // Memory holds exactly what the statistics say was written.
    let mut mem = vec![0u8; span as usize];
    dev.read_region(sim::BAR2, 0, &mut mem).unwrap();
    let pages = span / PAGE;
    for p in 0..pages {
        // Writes to page p in passes 0..k, where k = how often the writer reached it.
        let k = st.pages_written / pages + u64::from(p < st.pages_written % pages);
        let mut want = [0u8; PAGE as usize];
        for pass in 0..k {
            let w = ((pass % (PAGE / 8)) * 8) as usize;
            want[w..w + 8].copy_from_slice(&((pass + 1) << 32 | p).to_le_bytes());
        }
        let got = &mem[(p * PAGE) as usize..((p + 1) * PAGE) as usize];
        assert_eq!(
            got,
            &want[..],
            "page {p} after {} page writes",
            st.pages_written
        );
    }
    d.set_state(MigState::Running).unwrap();
    assert!(!d.writer_running(), "a stopped writer stays stopped");
}
