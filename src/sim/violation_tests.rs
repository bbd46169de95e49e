//! The contract violations the simulator commits on request (`violate=NAME`, the names of
//! the conformance checks): each shows its symptom through the `Device` interface, and the
//! stock device does not.

use super::*;
use crate::device::{DeviceError, MigState, RegionAccess};

const SMALL: &str = "state=64K,seed=5";

fn dev(extra: &str) -> DeviceHandle {
    open(&format!("{SMALL},{extra}")).unwrap()
}

fn stock() -> DeviceHandle {
    open(SMALL).unwrap()
}

fn errno(r: Result<impl std::fmt::Debug>) -> Option<i32> {
    match r {
        Err(e) => DeviceError::errno(&e),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// Reads the data stream until end (0), `ENOMSG` or `limit` bytes.
fn drain(d: &DeviceHandle, buf_len: usize, limit: usize) -> (Vec<u8>, Option<i32>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; buf_len];
    while out.len() < limit {
        match d.mig_read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, e.errno()),
        }
    }
    (out, None)
}

fn save(d: &DeviceHandle) -> Vec<u8> {
    d.set_mig_state(MigState::StopCopy).unwrap();
    let (s, e) = drain(d, 1 << 16, usize::MAX);
    assert_eq!(e, None);
    d.set_mig_state(MigState::Stop).unwrap();
    s
}

fn restore(d: &DeviceHandle, data: &[u8], piece: usize) -> Result<()> {
    d.set_mig_state(MigState::Resuming)?;
    for c in data.chunks(piece) {
        d.mig_write(c)?;
    }
    d.set_mig_state(MigState::Running)
}

fn seed_of(d: &DeviceHandle) -> u64 {
    d.read_width(BAR0, REG_SEED_LO, 4).unwrap() | d.read_width(BAR0, REG_SEED_HI, 4).unwrap() << 32
}

#[test]
fn state_after_arc() {
    let d = dev("violate=state-after-arc");
    d.set_mig_state(MigState::Stop).unwrap();
    assert_eq!(d.mig_state().unwrap(), MigState::Running, "the lie");
    d.set_mig_state(MigState::StopCopy).unwrap();
    assert_eq!(d.mig_state().unwrap(), MigState::StopCopy);
    let s = stock();
    s.set_mig_state(MigState::Stop).unwrap();
    assert_eq!(s.mig_state().unwrap(), MigState::Stop);
}

#[test]
fn new_data_fd() {
    let d = dev("violate=new-data-fd");
    let first = save(&d);
    assert!(!first.is_empty());
    // The second session is the first one again, already at its end.
    assert!(save(&d).is_empty());
    let s = stock();
    assert_eq!(save(&s), save(&s));
}

#[test]
fn stop_copy_eof() {
    let d = dev("violate=stop-copy-eof");
    d.set_mig_state(MigState::StopCopy).unwrap();
    let (data, end) = drain(&d, 1 << 16, usize::MAX);
    assert_eq!(end, Some(libc::ENOMSG));
    assert_eq!(data, save(&stock()));
}

#[test]
fn read_size() {
    let d = dev("violate=read-size");
    d.set_mig_state(MigState::StopCopy).unwrap();
    assert_eq!(errno(d.mig_read(&mut [0u8; 100])), Some(libc::EINVAL));
    assert!(d.mig_read(&mut [0u8; 4096]).unwrap() > 0);
    let s = stock();
    s.set_mig_state(MigState::StopCopy).unwrap();
    assert_eq!(s.mig_read(&mut [0u8; 100]).unwrap(), 100);
}

#[test]
fn session_ends() {
    for (spec, keeps) in [("violate=session-ends", true), ("", false)] {
        let d = dev(spec);
        d.set_mig_state(MigState::StopCopy).unwrap();
        assert_eq!(d.mig_read(&mut [0u8; 4096]).unwrap(), 4096);
        d.set_mig_state(MigState::Stop).unwrap();
        let r = d.mig_read(&mut [0u8; 4096]);
        assert_eq!(r.is_ok_and(|n| n > 0), keeps, "{spec}");
    }
}

#[test]
fn precopy_info_state() {
    let d = dev("violate=precopy-info-state");
    d.set_mig_state(MigState::StopCopy).unwrap();
    assert!(d.precopy_info().is_ok());
    let s = stock();
    s.set_mig_state(MigState::StopCopy).unwrap();
    assert_eq!(errno(s.precopy_info()), Some(libc::EINVAL));
}

#[test]
fn precopy_initial_and_info_agrees() {
    let d = dev("violate=precopy-initial");
    d.set_mig_state(MigState::PreCopy).unwrap();
    let first = d.precopy_info().unwrap().initial_bytes;
    assert_eq!(d.mig_read(&mut [0u8; 8192]).unwrap(), 8192);
    assert_eq!(
        d.precopy_info().unwrap().initial_bytes,
        first,
        "never decreases"
    );
    let s = stock();
    s.set_mig_state(MigState::PreCopy).unwrap();
    s.mig_read(&mut [0u8; 8192]).unwrap();
    assert_eq!(s.precopy_info().unwrap().initial_bytes, first - 8192);

    let d = dev("violate=precopy-info-agrees");
    d.set_mig_state(MigState::PreCopy).unwrap();
    assert_eq!(d.precopy_info().unwrap().initial_bytes, first);
    d.mig_read(&mut [0u8; 4096]).unwrap();
    let p = d.precopy_info().unwrap();
    assert_eq!((p.initial_bytes, p.dirty_bytes), (0, 0));
    assert!(
        d.mig_read(&mut [0u8; 4096]).unwrap() > 0,
        "while data remains"
    );
}

#[test]
fn precopy_path() {
    let d = dev("violate=precopy-path");
    d.set_mig_state(MigState::PreCopy).unwrap();
    let (mut pre, end) = drain(&d, 1 << 16, usize::MAX);
    assert_eq!(end, Some(libc::ENOMSG));
    d.set_mig_state(MigState::StopCopy).unwrap();
    let (post, end) = drain(&d, 1 << 16, usize::MAX);
    assert_eq!((post.len(), end), (0, None), "the stop-copy part is empty");
    pre.extend(post);
    d.set_mig_state(MigState::Stop).unwrap();
    let e = restore(&stock(), &pre, 1 << 16).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    // A direct STOP_COPY stream of the same device is complete.
    let direct = save(&d);
    assert!(restore(&stock(), &direct, 1 << 16).is_ok());
}

#[test]
fn write_size() {
    let data = save(&stock());
    let d = dev("violate=write-size");
    assert_eq!(
        restore(&d, &data, 4096).map_err(|e| e.errno()).unwrap_err(),
        Some(libc::EINVAL)
    );
    d.reset().unwrap();
    assert!(restore(&d, &data, data.len()).is_ok(), "one write works");
    assert!(restore(&stock(), &data, 4096).is_ok());
}

#[test]
fn resume_refuses_and_resume_loads() {
    let src = open("state=64K,seed=77").unwrap();
    let data = save(&src);
    let cut = &data[..data.len() - 10];
    assert!(restore(&stock(), cut, 4096).is_err());
    let d = dev("violate=resume-refuses");
    assert!(restore(&d, cut, 4096).is_ok(), "truncated accepted");
    // Corruption is still refused.
    let mut bad = data.clone();
    bad[100] ^= 1;
    let d = dev("violate=resume-refuses");
    assert!(restore(&d, &bad, 4096).is_err());

    let d = dev("violate=resume-loads");
    assert!(restore(&d, &data, 4096).is_ok());
    assert_eq!(seed_of(&d), 5, "the state was not loaded");
    let s = stock();
    restore(&s, &data, 4096).unwrap();
    assert_eq!(seed_of(&s), 77);
}

#[test]
fn reset() {
    let d = dev("violate=reset");
    d.set_mig_state(MigState::StopCopy).unwrap();
    d.reset().unwrap();
    assert_eq!(d.mig_state().unwrap(), MigState::StopCopy);
    assert!(
        d.mig_read(&mut [0u8; 4096]).unwrap() > 0,
        "the session survived"
    );
    let s = stock();
    s.set_mig_state(MigState::StopCopy).unwrap();
    s.reset().unwrap();
    assert_eq!(s.mig_state().unwrap(), MigState::Running);
}

#[test]
fn data_size() {
    assert_eq!(dev("violate=data-size").stop_copy_size().unwrap(), 0);
    assert!(stock().stop_copy_size().unwrap() > 65536);
}

/// v1 helpers: the region's header fields.
fn v1_state(d: &DeviceHandle) -> u64 {
    d.read_width(MIGRATION_V1, 0, 4).unwrap()
}

fn v1_set(d: &DeviceHandle, bits: u32) -> Result<()> {
    d.write_width(MIGRATION_V1, 0, 4, bits as u64)
}

const PENDING: u64 = 8;
const DATA_OFFSET: u64 = 16;
const DATA_SIZE: u64 = 24;

/// Saves through the v1 region, at most `rounds` chunks.
fn v1_save(d: &DeviceHandle, rounds: usize) -> (Vec<u8>, bool) {
    v1_set(d, uapi::DEVICE_STATE_V1_SAVING).unwrap();
    let mut out = Vec::new();
    for _ in 0..rounds {
        let pending = d.read_width(MIGRATION_V1, PENDING, 8).unwrap();
        if pending == 0 {
            v1_set(d, 0).unwrap();
            return (out, true);
        }
        let off = d.read_width(MIGRATION_V1, DATA_OFFSET, 8).unwrap();
        let n = d.read_width(MIGRATION_V1, DATA_SIZE, 8).unwrap() as usize;
        let mut buf = vec![0u8; n];
        d.read_region(MIGRATION_V1, off, &mut buf).unwrap();
        out.extend(buf);
    }
    (out, false)
}

fn v1_restore(d: &DeviceHandle, data: &[u8]) -> Result<()> {
    v1_set(d, uapi::DEVICE_STATE_V1_RESUMING)?;
    for c in data.chunks(4096) {
        let off = d.read_width(MIGRATION_V1, DATA_OFFSET, 8)?;
        d.write_region(MIGRATION_V1, off, c)?;
        d.write_width(MIGRATION_V1, DATA_SIZE, 8, c.len() as u64)?;
    }
    v1_set(d, uapi::DEVICE_STATE_V1_RUNNING)
}

#[test]
fn v1_violations() {
    let v1 = |extra: &str| open(&format!("protocol=v1,{SMALL},{extra}")).unwrap();
    let d = v1("violate=v1-state-bits");
    assert!(v1_set(&d, uapi::DEVICE_STATE_V1_ERROR).is_ok());
    assert_eq!(
        v1_state(&d),
        uapi::DEVICE_STATE_V1_RUNNING as u64,
        "accepted and ignored"
    );
    assert!(v1_set(&v1(""), uapi::DEVICE_STATE_V1_ERROR).is_err());

    let (data, ended) = v1_save(&v1(""), 1000);
    assert!(ended);
    let (_, ended) = v1_save(&v1("violate=v1-pending"), 1000);
    assert!(!ended, "pending_bytes never reaches 0");

    let d = v1("violate=v1-data-window");
    v1_set(&d, uapi::DEVICE_STATE_V1_SAVING).unwrap();
    let region = d.info().region(MIGRATION_V1).unwrap().size;
    assert_eq!(d.read_width(MIGRATION_V1, DATA_OFFSET, 8).unwrap(), region);

    let src = open("protocol=v1,state=64K,seed=77").unwrap();
    let (data77, _) = v1_save(&src, 1000);
    let d = v1("violate=v1-resume-loads");
    assert!(v1_restore(&d, &data77).is_ok());
    assert_eq!(seed_of(&d), 5, "the v1 resume loaded nothing");
    let s = v1("");
    v1_restore(&s, &data77).unwrap();
    assert_eq!(seed_of(&s), 77);
    assert!(!data.is_empty());
    // v2 names do nothing on a v1 device and v1 names nothing on a v2 device.
    let d = v1("violate=data-size");
    assert!(d.stop_copy_size().is_err(), "no v2 on a v1 device");
    let d = dev("violate=v1-state-bits");
    d.set_mig_state(MigState::Stop).unwrap();
    assert_eq!(d.mig_state().unwrap(), MigState::Stop);
}
