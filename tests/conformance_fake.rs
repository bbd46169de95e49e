//! Every conformance check catches its violation: a small in-test v2 device (the state is
//! the first 64 bytes of BAR0) that misbehaves on request, one violation per check id, run
//! through the real v2 driver. The well-behaved fake passes with no FAIL; each violation
//! makes exactly its check fail.

use std::any::Any;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use vfio_harness::device::{
    fsm, Device, DeviceError, DeviceIdentity, DeviceInfo, MigFlags, MigState, PrecopyInfo,
    RegionInfo, RegionMap, Result,
};
use vfio_harness::migration::conformance::{
    self, CheckVerdict, ConformanceReport, Options, RegionWrite,
};
use vfio_harness::migration::driver_for;

const STATE: usize = 64;
const STREAM: usize = 8 + STATE + 4;
const INITIAL: usize = 40;

struct Session {
    data: Vec<u8>,
    pos: usize,
    /// Where the pre-copy part ends (the session started in PRE_COPY).
    precopy_end: Option<usize>,
}

#[derive(Default)]
struct Inner {
    state: Option<MigState>,
    bar0: Vec<u8>,
    save: Option<Session>,
    old: Option<Session>,
    resume: Option<Vec<u8>>,
    lie: bool,
}

struct Fake {
    info: DeviceInfo,
    flags: MigFlags,
    violate: &'static str,
    inner: Mutex<Inner>,
}

fn err(op: &'static str, errno: i32) -> DeviceError {
    DeviceError::Migration {
        device: "fake".into(),
        op,
        state: None,
        source: io::Error::from_raw_os_error(errno),
        detail: None,
    }
}

fn stream_of(state: &[u8]) -> Vec<u8> {
    let mut v = b"FAKE\x01\0\0\0".to_vec();
    v.extend_from_slice(state);
    v.extend_from_slice(&crc32fast::hash(state).to_le_bytes());
    v
}

fn parse(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() != STREAM || &s[..8] != b"FAKE\x01\0\0\0" {
        return None;
    }
    let st = &s[8..8 + STATE];
    (crc32fast::hash(st).to_le_bytes() == s[8 + STATE..]).then(|| st.to_vec())
}

impl Fake {
    fn new(violate: &'static str) -> Arc<Fake> {
        let info = DeviceInfo {
            name: "fake".into(),
            backend: "sim".into(),
            flags: vfio_harness::device::uapi::DEVICE_FLAGS_RESET,
            regions: vec![RegionInfo {
                index: 0,
                name: "BAR0".into(),
                size: 4096,
                offset: 0,
                flags: vfio_harness::device::REGION_FLAG_READ
                    | vfio_harness::device::REGION_FLAG_WRITE,
                caps: vec![],
            }],
            irqs: vec![],
            identity: DeviceIdentity::default(),
        };
        Arc::new(Fake {
            info,
            flags: MigFlags(MigFlags::STOP_COPY | MigFlags::P2P | MigFlags::PRE_COPY),
            violate,
            inner: Mutex::new(Inner {
                state: Some(MigState::Running),
                bar0: vec![0u8; 4096],
                ..Default::default()
            }),
        })
    }
    fn v(&self, id: &str) -> bool {
        self.violate == id
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }
    /// One arc.
    fn arc(&self, g: &mut Inner, from: MigState, to: MigState) -> Result<()> {
        let saving = |s: MigState| fsm::is_saving(s);
        if !saving(from) && saving(to) {
            let mut data = stream_of(&g.bar0[..STATE]);
            let mut precopy_end = None;
            if to != MigState::StopCopy {
                precopy_end = Some(INITIAL);
                if self.v("precopy-path") {
                    data.truncate(INITIAL);
                }
            }
            let s = Session {
                data,
                pos: 0,
                precopy_end,
            };
            g.save = Some(match (self.v("new-data-fd"), g.old.take()) {
                (true, Some(old)) => old,
                _ => s,
            });
        }
        if saving(from) && !saving(to) {
            let s = g.save.take();
            if self.v("new-data-fd") || self.v("session-ends") {
                g.old = s;
            }
        }
        if to == MigState::Resuming {
            g.resume = Some(Vec::new());
        }
        if from == MigState::Resuming {
            let data = g.resume.take().unwrap_or_default();
            let loaded = match parse(&data) {
                Some(st) => Some(st),
                None if self.v("resume-refuses") && data.len() < STREAM => None,
                None => return Err(err("set state", libc::EINVAL)),
            };
            if let Some(st) = loaded {
                if !self.v("resume-loads") {
                    g.bar0[..STATE].copy_from_slice(&st);
                }
            }
        }
        Ok(())
    }
}

impl Device for Fake {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        let g = self.lock();
        let o = offset as usize;
        if index != 0 || o + buf.len() > g.bar0.len() {
            return Err(err("read region", libc::EINVAL));
        }
        buf.copy_from_slice(&g.bar0[o..o + buf.len()]);
        Ok(())
    }
    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<()> {
        let mut g = self.lock();
        let o = offset as usize;
        if index != 0 || o + buf.len() > g.bar0.len() {
            return Err(err("write region", libc::EINVAL));
        }
        g.bar0[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn map_region(&self, _: u32, _: u64, _: u64) -> Result<RegionMap> {
        Err(err("map", libc::EINVAL))
    }
    fn reset(&self) -> Result<()> {
        let mut g = self.lock();
        // The violation: reset leaves the migration state alone (except ERROR, so that the
        // suite can still recover the fake between checks).
        if !self.v("reset") || g.state == Some(MigState::Error) {
            g.state = Some(MigState::Running);
            g.save = None;
            g.resume = None;
        }
        g.lie = false;
        Ok(())
    }
    fn set_irq_eventfds(&self, _: u32, _: u32, _: &[RawFd]) -> Result<()> {
        Err(err("irq", libc::EINVAL))
    }
    fn trigger_irq(&self, _: u32, _: u32) -> Result<()> {
        Err(err("irq", libc::EINVAL))
    }
    fn mask_irq(&self, _: u32, _: u32, _: bool) -> Result<()> {
        Err(err("irq", libc::EINVAL))
    }
    fn migration_flags(&self) -> Result<Option<MigFlags>> {
        Ok(Some(self.flags))
    }
    fn set_mig_state(&self, target: MigState) -> Result<()> {
        let mut g = self.lock();
        g.lie = false;
        let start = g.state.unwrap_or(MigState::Error);
        let mut cur = start;
        while cur != target {
            let next = fsm::next_step(self.flags, cur, target)
                .map_err(|_| err("set state", libc::EINVAL))?;
            if let Err(e) = self.arc(&mut g, cur, next) {
                g.state = Some(MigState::Error);
                return Err(e);
            }
            cur = next;
            g.state = Some(cur);
        }
        g.lie = self.v("state-after-arc") && start == MigState::Running && target == MigState::Stop;
        Ok(())
    }
    fn mig_state(&self) -> Result<MigState> {
        let g = self.lock();
        Ok(if g.lie {
            MigState::Running
        } else {
            g.state.unwrap_or(MigState::Error)
        })
    }
    fn mig_read(&self, buf: &mut [u8]) -> Result<usize> {
        let mut g = self.lock();
        let st = g.state.unwrap_or(MigState::Error);
        if self.v("read-size") && buf.len() < 4096 {
            return Err(err("read data", libc::EINVAL));
        }
        let session_ends = self.v("session-ends");
        let s = match (g.save.is_some(), session_ends) {
            (true, _) => g.save.as_mut(),
            (false, true) => g.old.as_mut(),
            (false, false) => None,
        };
        let Some(s) = s else {
            return Err(err("read data", libc::EBADF));
        };
        let end = match (st, s.precopy_end) {
            (MigState::PreCopy | MigState::PreCopyP2p, Some(e)) => e.min(s.data.len()),
            _ => s.data.len(),
        };
        if s.pos >= end {
            return if st == MigState::StopCopy && !self.v("stop-copy-eof") || !fsm::is_saving(st) {
                Ok(0)
            } else {
                Err(err("read data", libc::ENOMSG))
            };
        }
        let n = buf.len().min(end - s.pos);
        buf[..n].copy_from_slice(&s.data[s.pos..s.pos + n]);
        s.pos += n;
        Ok(n)
    }
    fn mig_write(&self, buf: &[u8]) -> Result<usize> {
        let mut g = self.lock();
        let Some(r) = g.resume.as_mut() else {
            return Err(err("write data", libc::EBADF));
        };
        if self.v("write-size") && r.is_empty() && buf.len() < STREAM {
            return Err(err("write data", libc::EINVAL));
        }
        r.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn precopy_info(&self) -> Result<PrecopyInfo> {
        let g = self.lock();
        let st = g.state.unwrap_or(MigState::Error);
        let answer = matches!(st, MigState::PreCopy | MigState::PreCopyP2p)
            || (self.v("precopy-info-state") && st == MigState::StopCopy);
        let Some(s) = g.save.as_ref().filter(|_| answer) else {
            return Err(err("precopy info", libc::EINVAL));
        };
        let left = s.precopy_end.unwrap_or(s.data.len()).saturating_sub(s.pos) as u64;
        Ok(if self.v("precopy-info-agrees") {
            PrecopyInfo {
                initial_bytes: 0,
                dirty_bytes: 0,
            }
        } else if self.v("precopy-initial") {
            PrecopyInfo {
                initial_bytes: INITIAL as u64,
                dirty_bytes: 0,
            }
        } else {
            PrecopyInfo {
                initial_bytes: left,
                dirty_bytes: 0,
            }
        })
    }
    fn stop_copy_size(&self) -> Result<u64> {
        Ok(if self.v("data-size") {
            0
        } else {
            STREAM as u64
        })
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
    let opts = Options::default();
    let r = conformance::run_with(drv.as_mut(), &opts, Some(Box::new(p)), &mut |_| {});
    assert_eq!(
        dev.mig_state().unwrap(),
        MigState::Running,
        "{violate}: left {:?}",
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
fn the_well_behaved_fake_passes() {
    let r = run("");
    assert_eq!(failed(&r), Vec::<&str>::new(), "{:#?}", r.checks);
    assert_eq!(r.warned, 0, "{:#?}", r.checks);
    for c in &r.checks {
        assert!(
            matches!(c.verdict, CheckVerdict::Pass) || c.id == "dma-logging",
            "{c:?}"
        );
    }
}

#[test]
fn every_violation_fails_its_own_check() {
    for id in [
        "state-after-arc",
        "new-data-fd",
        "stop-copy-eof",
        "read-size",
        "session-ends",
        "precopy-info-state",
        "precopy-initial",
        "precopy-info-agrees",
        "precopy-path",
        "write-size",
        "resume-refuses",
        "resume-loads",
        "reset",
        "data-size",
    ] {
        let r = run(id);
        let c = r.check(id).unwrap_or_else(|| panic!("{id}: not run"));
        assert_eq!(
            c.verdict,
            CheckVerdict::Fail,
            "{id}: {c:?}\nall: {:#?}",
            r.checks
        );
        eprintln!("{id}: fails {:?}", failed(&r));
        // The suite recovers: the harness's own checks still pass.
        assert_eq!(
            r.check("left-running").map(|c| c.verdict),
            Some(CheckVerdict::Pass),
            "{id}"
        );
    }
}

#[test]
fn the_checks_cover_the_contract_ids() {
    let r = run("");
    for (id, _) in conformance::CLAUSES
        .iter()
        .filter(|(id, _)| !id.starts_with("v1-"))
    {
        assert!(r.check(id).is_some(), "{id} not reported");
    }
}
