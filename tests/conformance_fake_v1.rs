//! The v1 checks catch their violations: a small in-test device speaking the v1 region
//! protocol (`struct vfio_device_migration_info` at offset 0 of region 9, a 4 KiB data
//! section after it, no mmap; the device state is the first 64 bytes of BAR0), run through
//! the real v1 driver. The well-behaved fake passes with no FAIL and no WARN; each v1
//! violation makes exactly the check of its name fail.

use std::any::Any;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use vfio_harness::device::{
    Device, DeviceError, DeviceIdentity, DeviceInfo, MigFlags, MigState, PrecopyInfo, RegionCap,
    RegionInfo, RegionMap, Result, REGION_FLAG_READ, REGION_FLAG_WRITE,
};
use vfio_harness::migration::conformance::{
    self, CheckVerdict, ConformanceReport, Options, RegionWrite,
};
use vfio_harness::migration::driver_for;

const STATE: usize = 64;
const MIG: u32 = 9;
const DATA: usize = 4096;
const REGION: usize = 2 * DATA;

#[derive(Default)]
struct Inner {
    bits: u32,
    bar0: Vec<u8>,
    /// Saving: the stream, how much was handed out, the chunk in the data section.
    save: Option<(Vec<u8>, usize, usize)>,
    resume: Option<Vec<u8>>,
    section: Vec<u8>,
}

struct Fake {
    info: DeviceInfo,
    violate: &'static str,
    inner: Mutex<Inner>,
}

fn err(op: &'static str) -> DeviceError {
    DeviceError::Migration {
        device: "fake-v1".into(),
        op,
        state: None,
        source: io::Error::from_raw_os_error(libc::EINVAL),
        detail: None,
    }
}

fn stream_of(state: &[u8]) -> Vec<u8> {
    // Longer than one data section, so chunks are exercised.
    let mut v = b"FAKEV1\0\0".to_vec();
    for _ in 0..100 {
        v.extend_from_slice(state);
    }
    v.extend_from_slice(&crc32fast::hash(&v).to_le_bytes());
    v
}

fn parse(s: &[u8]) -> Option<Vec<u8>> {
    let n = 8 + 100 * STATE;
    if s.len() != n + 4 || &s[..8] != b"FAKEV1\0\0" {
        return None;
    }
    (crc32fast::hash(&s[..n]).to_le_bytes() == s[n..]).then(|| s[8..8 + STATE].to_vec())
}

impl Fake {
    fn new(violate: &'static str) -> Arc<Fake> {
        let rw = REGION_FLAG_READ | REGION_FLAG_WRITE;
        let info = DeviceInfo {
            name: "fake-v1".into(),
            backend: "sim".into(),
            flags: vfio_harness::device::uapi::DEVICE_FLAGS_RESET,
            regions: vec![
                RegionInfo {
                    index: 0,
                    name: "BAR0".into(),
                    size: 4096,
                    offset: 0,
                    flags: rw,
                    caps: vec![],
                },
                RegionInfo {
                    index: MIG,
                    name: "migration-v1".into(),
                    size: REGION as u64,
                    offset: 0,
                    flags: rw | vfio_harness::device::uapi::REGION_FLAG_CAPS,
                    caps: vec![RegionCap::Type {
                        type_: 3,
                        subtype: 1,
                    }],
                },
            ],
            irqs: vec![],
            identity: DeviceIdentity::default(),
        };
        Arc::new(Fake {
            info,
            violate,
            inner: Mutex::new(Inner {
                bits: 1,
                bar0: vec![0u8; 4096],
                section: vec![0u8; DATA],
                ..Default::default()
            }),
        })
    }
    fn v(&self, id: &str) -> bool {
        self.violate == id
    }

    fn set_bits(&self, g: &mut Inner, new: u32) -> Result<()> {
        if new > 4 {
            return if self.v("v1-state-bits") {
                Ok(())
            } else {
                Err(err("write device_state"))
            };
        }
        let old = g.bits;
        // _SAVING -> _SAVING|_RUNNING (stop-copy back to pre-copy) is refused, like v2.
        if old == 2 && new == 3 {
            return Err(err("write device_state"));
        }
        if new & 2 != 0 && old & 2 == 0 {
            g.save = Some((stream_of(&g.bar0[..STATE]), 0, 0));
        }
        if new & 2 == 0 {
            g.save = None;
        }
        if new == 4 && old != 4 {
            g.resume = Some(Vec::new());
        }
        if old == 4 && new != 4 {
            match parse(&g.resume.take().unwrap_or_default()) {
                Some(st) => {
                    if !self.v("v1-resume-loads") {
                        g.bar0[..STATE].copy_from_slice(&st);
                    }
                }
                None => {
                    g.bits = 6;
                    return Err(err("write device_state"));
                }
            }
        }
        g.bits = new;
        Ok(())
    }
}

fn le(v: u64, buf: &mut [u8]) {
    buf.copy_from_slice(&v.to_le_bytes()[..buf.len()]);
}

impl Device for Fake {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut g = self.inner.lock().unwrap();
        let o = offset as usize;
        match (index, o) {
            (0, _) if o + buf.len() <= 4096 => buf.copy_from_slice(&g.bar0[o..o + buf.len()]),
            (MIG, 0) if buf.len() == 4 => le(g.bits as u64, buf),
            (MIG, 8) if buf.len() == 8 => {
                let pv = self.v("v1-pending");
                let p = match g.save.as_mut() {
                    Some((s, pos, chunk)) => {
                        *pos += *chunk;
                        *chunk = 0;
                        let left = (s.len() - *pos) as u64;
                        if pv {
                            left.max(1)
                        } else {
                            left
                        }
                    }
                    None => 0,
                };
                le(p, buf)
            }
            (MIG, 16) if buf.len() == 8 => {
                let Inner { save, section, .. } = &mut *g;
                if let Some((s, pos, chunk)) = save.as_mut() {
                    if *chunk == 0 {
                        *chunk = (s.len() - *pos).min(DATA);
                        section[..*chunk].copy_from_slice(&s[*pos..*pos + *chunk]);
                    }
                }
                let off = if self.v("v1-data-window") {
                    REGION
                } else {
                    DATA
                };
                le(off as u64, buf)
            }
            (MIG, 24) if buf.len() == 8 => {
                le(g.save.as_ref().map(|s| s.2).unwrap_or(0) as u64, buf)
            }
            (MIG, _) if o >= DATA && o + buf.len() <= REGION => {
                buf.copy_from_slice(&g.section[o - DATA..o - DATA + buf.len()])
            }
            _ => return Err(err("read region")),
        }
        Ok(())
    }
    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<()> {
        let mut g = self.inner.lock().unwrap();
        let o = offset as usize;
        match (index, o) {
            (0, _) if o + buf.len() <= 4096 => g.bar0[o..o + buf.len()].copy_from_slice(buf),
            (MIG, 0) if buf.len() == 4 => {
                let v = u32::from_le_bytes(buf.try_into().unwrap());
                self.set_bits(&mut g, v)?
            }
            (MIG, 24) if buf.len() == 8 => {
                let n = u64::from_le_bytes(buf.try_into().unwrap()) as usize;
                let Inner {
                    resume, section, ..
                } = &mut *g;
                match resume.as_mut() {
                    Some(r) if n <= DATA => r.extend_from_slice(&section[..n]),
                    _ => return Err(err("write data_size")),
                }
            }
            (MIG, _) if o >= DATA && o + buf.len() <= REGION => {
                g.section[o - DATA..o - DATA + buf.len()].copy_from_slice(buf)
            }
            _ => return Err(err("write region")),
        }
        Ok(())
    }
    fn map_region(&self, _: u32, _: u64, _: u64) -> Result<RegionMap> {
        Err(err("map"))
    }
    fn reset(&self) -> Result<()> {
        let mut g = self.inner.lock().unwrap();
        g.bits = 1;
        g.save = None;
        g.resume = None;
        Ok(())
    }
    fn set_irq_eventfds(&self, _: u32, _: u32, _: &[RawFd]) -> Result<()> {
        Err(err("irq"))
    }
    fn trigger_irq(&self, _: u32, _: u32) -> Result<()> {
        Err(err("irq"))
    }
    fn mask_irq(&self, _: u32, _: u32, _: bool) -> Result<()> {
        Err(err("irq"))
    }
    fn migration_flags(&self) -> Result<Option<MigFlags>> {
        Ok(None)
    }
    fn set_mig_state(&self, _: MigState) -> Result<()> {
        Err(err("v2"))
    }
    fn mig_state(&self) -> Result<MigState> {
        Err(err("v2"))
    }
    fn mig_read(&self, _: &mut [u8]) -> Result<usize> {
        Err(err("v2"))
    }
    fn mig_write(&self, _: &[u8]) -> Result<usize> {
        Err(err("v2"))
    }
    fn precopy_info(&self) -> Result<PrecopyInfo> {
        Err(err("v2"))
    }
    fn stop_copy_size(&self) -> Result<u64> {
        Err(err("v2"))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn run(violate: &'static str) -> ConformanceReport {
    let dev = Fake::new(violate);
    let mut drv = driver_for(dev.clone()).unwrap();
    let p = RegionWrite {
        index: 0,
        offset: 0,
        bytes: (1..=STATE as u8).collect(),
    };
    let r = conformance::run_with(
        drv.as_mut(),
        &Options::default(),
        Some(Box::new(p)),
        &mut |_| {},
    );
    assert_eq!(r.protocol, "v1");
    assert_eq!(
        drv.state().ok(),
        Some(MigState::Running),
        "{violate}: {:#?}",
        r.checks
    );
    r
}

fn failed(r: &ConformanceReport) -> Vec<&str> {
    r.checks
        .iter()
        .filter(|c| c.verdict == CheckVerdict::Fail)
        .map(|c| c.id.as_str())
        .collect()
}

#[test]
fn the_well_behaved_v1_fake_passes() {
    let r = run("");
    assert!(
        r.checks.iter().all(|c| c.verdict == CheckVerdict::Pass),
        "{:#?}",
        r.checks
    );
}

#[test]
fn every_v1_violation_fails_its_own_check() {
    for id in [
        "v1-state-bits",
        "v1-pending",
        "v1-data-window",
        "v1-resume-loads",
    ] {
        let r = run(id);
        let c = r.check(id).unwrap_or_else(|| panic!("{id}: not run"));
        assert_eq!(c.verdict, CheckVerdict::Fail, "{id}: {:#?}", r.checks);
        eprintln!("{id}: fails {:?}", failed(&r));
    }
}
