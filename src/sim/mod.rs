//! The simulated device: an in-process back end beneath the same [`crate::device::Device`]
//! interface as kernel devices.
//!
//! `sim` / `sim:key=value,...` opens a PCI-like device with
//! - BAR0: 4 KiB of registers (id, version, scratch, state size and seed, a doorbell that
//!   raises an interrupt), trapped (positioned I/O only);
//! - BAR2: an mmap-able memory BAR (16 MiB by default);
//! - CONFIG: a type-0 config space (1234:5e11, class 12, BAR0/BAR2, MSI and MSI-X caps);
//! - INTX, MSI, MSIX (4 vectors), ERR and REQ interrupts delivered to eventfds;
//! - migration v2 (`protocol=v2`, default) with the exact kernel state machine, or migration
//!   v1 (`protocol=v1`) through a migration region (type 3 / subtype 1) at index 9.
//!
//! The migration state is never stored: its bytes are a function of `(seed, offset)` (see
//! [`gen`]), generated into the reader's buffer and checked on restore, so a 4 GiB state costs
//! no memory and saves faster than memcpy. The stream carries the device's own framing
//! ([`stream`]), so a foreign, truncated or corrupted stream is refused when RESUMING ends,
//! as a real driver refuses bad data. See [`SimParams`] for every parameter.

mod clock;

mod gen;
mod irq;
mod mem;
mod params;
mod pci;
mod stream;
#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock, SystemClock};
pub use irq::{ERR, INTX, MSI, MSIX, REQ};
pub use params::{FailMode, SimParams, SimProtocol, Violation};
pub use pci::{
    BAR0_SIZE, DEVICE_ID, ID_VALUE, REG_DOORBELL, REG_ID, REG_IRQ_COUNT, REG_SCRATCH, REG_SEED_HI,
    REG_SEED_LO, REG_STATE_SIZE_HI, REG_STATE_SIZE_LO, REG_VERSION, VENDOR_ID,
};

use crate::device::{
    Device, DeviceError, DeviceHandle, DeviceIdentity, DeviceInfo, MigFlags, MigState, PrecopyInfo,
    RegionCap, RegionInfo, RegionMap, Result, SparseArea, REGION_FLAG_CAPS, REGION_FLAG_MMAP,
    REGION_FLAG_READ, REGION_FLAG_WRITE,
};
use crate::migration::fsm;
use mem::AnonMem;
use std::any::Any;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use stream::{Produced, ResumeStream, SaveStream};

/// Region index of BAR0.
pub const BAR0: u32 = 0;
/// Region index of BAR2.
pub const BAR2: u32 = 2;
/// Region index of PCI config space (`VFIO_PCI_CONFIG_REGION_INDEX`).
pub const CONFIG: u32 = 7;
/// Region index of the v1 migration region (the first device-specific index).
pub const MIGRATION_V1: u32 = 9;
/// Offset of the data section inside the v1 migration region.
pub const V1_DATA_OFFSET: u64 = 4096;

/// v1 `device_state` bit `_RUNNING`.
pub const V1_RUNNING: u32 = 1;
/// v1 `device_state` bit `_SAVING`.
pub const V1_SAVING: u32 = 2;
/// v1 `device_state` bit `_RESUMING`.
pub const V1_RESUMING: u32 = 4;
/// v1 error indication (`_SAVING | _RESUMING`).
pub const V1_ERROR: u32 = V1_SAVING | V1_RESUMING;

const CONFIG_SIZE: u64 = 256;
const REGION_NAMES: [&str; 9] = [
    "BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "CONFIG", "VGA",
];
/// `VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI`.
const DEVICE_FLAGS_BASE: u32 = 1 << 1;
const DEVICE_FLAG_RESET: u32 = 1 << 0;

/// Opens a simulated device from its `key=value,...` parameters.
pub fn open(params: &str) -> Result<DeviceHandle> {
    Ok(Arc::new(SimDevice::open(params)?))
}

/// Opens a simulated device whose dirty-page model runs on `clock` (tests advance a
/// [`ManualClock`] instead of sleeping).
pub fn open_with_clock(params: &str, clock: Arc<dyn Clock>) -> Result<DeviceHandle> {
    Ok(Arc::new(SimDevice::with_clock(
        SimParams::parse(params)?,
        clock,
    )?))
}

/// v1 chunk bookkeeping: the chunk prepared in the data section by a `data_offset` read.
#[derive(Debug, Default)]
struct V1Chunk {
    len: u64,
    /// Prepared and not yet acknowledged by a `pending_bytes` read.
    fresh: bool,
}

struct Inner {
    state: MigState,
    seed: u64,
    save: Option<SaveStream>,
    resume: Option<ResumeStream>,
    fails_left: Option<u64>,
    last_refusal: Option<String>,
    bar0: [u8; BAR0_SIZE as usize],
    irq_count: u32,
    config: pci::Config,
    irqs: irq::Irqs,
    v1: V1Chunk,
}

/// The simulated device. Open it with [`open`] (or `device::open` with a `sim:` spec).
pub struct SimDevice {
    params: SimParams,
    info: DeviceInfo,
    clock: Arc<dyn Clock>,
    bar2: Arc<AnonMem>,
    v1_data: Option<Arc<AnonMem>>,
    inner: Mutex<Inner>,
}

/// A migration call's failure; `detail` is the simulated device's reason.
fn mig_err(
    dev: &str,
    op: &'static str,
    state: Option<MigState>,
    errno: i32,
    detail: String,
) -> DeviceError {
    DeviceError::Migration {
        device: dev.to_string(),
        op,
        state,
        source: io::Error::from_raw_os_error(errno),
        detail: (!detail.is_empty()).then_some(detail),
    }
}

fn v1_bits(s: MigState) -> u32 {
    match s {
        MigState::Stop => 0,
        MigState::Running | MigState::RunningP2p => V1_RUNNING,
        MigState::PreCopy | MigState::PreCopyP2p => V1_SAVING | V1_RUNNING,
        MigState::StopCopy => V1_SAVING,
        MigState::Resuming => V1_RESUMING,
        MigState::Error => V1_ERROR,
    }
}

fn v1_state(bits: u32) -> Option<MigState> {
    match bits {
        0 => Some(MigState::Stop),
        V1_RUNNING => Some(MigState::Running),
        3 => Some(MigState::PreCopy),
        V1_SAVING => Some(MigState::StopCopy),
        V1_RESUMING => Some(MigState::Resuming),
        _ => None,
    }
}

impl SimDevice {
    /// Opens a simulated device on the system clock.
    pub fn open(params: &str) -> Result<SimDevice> {
        SimDevice::with_clock(SimParams::parse(params)?, Arc::new(SystemClock::new()))
    }

    /// Opens a simulated device with explicit parameters and clock.
    pub fn with_clock(params: SimParams, clock: Arc<dyn Clock>) -> Result<SimDevice> {
        let name = params.name.clone();
        let bar2 = AnonMem::new(&name, params.bar2 as usize)?;
        let v1_data = match params.protocol {
            SimProtocol::V1 => Some(AnonMem::new(&name, params.v1_data as usize)?),
            SimProtocol::V2 => None,
        };
        let info = Self::describe(&params);
        let inner = Inner {
            state: MigState::Running,
            seed: params.seed,
            save: None,
            resume: None,
            fails_left: params.fail_count,
            last_refusal: None,
            bar0: [0; BAR0_SIZE as usize],
            irq_count: 0,
            config: pci::Config::new(params.bar2),
            irqs: irq::Irqs::new(),
            v1: V1Chunk::default(),
        };
        Ok(SimDevice {
            params,
            info,
            clock,
            bar2,
            v1_data,
            inner: Mutex::new(inner),
        })
    }

    fn describe(p: &SimParams) -> DeviceInfo {
        let rw = REGION_FLAG_READ | REGION_FLAG_WRITE;
        let mut regions: Vec<RegionInfo> = REGION_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| RegionInfo {
                index: i as u32,
                name: n.to_string(),
                size: 0,
                offset: (i as u64) << 40,
                flags: 0,
                caps: Vec::new(),
            })
            .collect();
        regions[BAR0 as usize].size = BAR0_SIZE;
        regions[BAR0 as usize].flags = rw;
        regions[BAR2 as usize].size = p.bar2;
        regions[BAR2 as usize].flags = rw | REGION_FLAG_MMAP;
        regions[CONFIG as usize].size = CONFIG_SIZE;
        regions[CONFIG as usize].flags = rw;
        if p.protocol == SimProtocol::V1 {
            let mut caps = vec![RegionCap::Type {
                type_: 3,
                subtype: 1,
            }];
            let mut flags = rw | REGION_FLAG_CAPS;
            if p.v1_mmap {
                flags |= REGION_FLAG_MMAP;
                caps.insert(
                    0,
                    RegionCap::SparseMmap {
                        areas: vec![SparseArea {
                            offset: V1_DATA_OFFSET,
                            size: p.v1_data,
                        }],
                    },
                );
            }
            regions.push(RegionInfo {
                index: MIGRATION_V1,
                name: "migration-v1".into(),
                size: V1_DATA_OFFSET + p.v1_data,
                offset: (MIGRATION_V1 as u64) << 40,
                flags,
                caps,
            });
        }
        let mut flags = DEVICE_FLAGS_BASE;
        if p.reset {
            flags |= DEVICE_FLAG_RESET;
        }
        DeviceInfo {
            name: p.name.clone(),
            backend: "sim".into(),
            flags,
            regions,
            irqs: irq::infos(),
            identity: DeviceIdentity {
                device_api: "vfio-pci".into(),
                mdev_type: p.mdev_type.clone(),
                parent: p.mdev_type.as_ref().map(|_| "sim".to_string()),
                pci_id: Some(format!("{VENDOR_ID:04x}:{DEVICE_ID:04x}")),
                pci_subsystem: Some(format!(
                    "{:04x}:{:04x}",
                    pci::SUBSYS_VENDOR_ID,
                    pci::SUBSYS_ID
                )),
                driver: Some("sim".into()),
                sysfs_path: None,
            },
        }
    }

    /// The parameters the device was opened with.
    pub fn params(&self) -> &SimParams {
        &self.params
    }

    /// The seed the device's current state derives from (its `seed=`, or the seed of the
    /// last successfully restored state).
    pub fn state_seed(&self) -> u64 {
        self.lock().seed
    }

    /// Why the device last refused a restored state, if it did.
    pub fn last_refusal(&self) -> Option<String> {
        self.lock().last_refusal.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the plain-data state torn in a way that
        // matters more than refusing every later call, so recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ns(&self) -> u128 {
        self.clock.now().as_nanos()
    }

    fn name_str(&self) -> &str {
        &self.info.name
    }

    fn region_err(
        &self,
        index: u32,
        op: &'static str,
        offset: u64,
        len: usize,
        errno: i32,
        detail: &str,
    ) -> DeviceError {
        let rname = self
            .info
            .region(index)
            .map(|r| format!("{index} ({})", r.name))
            .unwrap_or_else(|| index.to_string());
        DeviceError::Region {
            device: self.name_str().to_string(),
            region: rname,
            op,
            offset,
            len: len as u64,
            source: io::Error::from_raw_os_error(errno),
            detail: (!detail.is_empty()).then(|| detail.to_string()),
        }
    }

    /// Bounds-checks an access against region `index`.
    fn region_bounds(
        &self,
        index: u32,
        op: &'static str,
        offset: u64,
        len: usize,
    ) -> Result<&RegionInfo> {
        let r = self
            .info
            .region(index)
            .filter(|r| r.size > 0)
            .ok_or_else(|| {
                self.region_err(
                    index,
                    op,
                    offset,
                    len,
                    libc::EINVAL,
                    "no such region on this device",
                )
            })?;
        match offset.checked_add(len as u64) {
            Some(end) if end <= r.size => Ok(r),
            _ => Err(self.region_err(
                index,
                op,
                offset,
                len,
                libc::EINVAL,
                "access beyond the end of the region",
            )),
        }
    }

    fn no_v2(&self, op: &'static str) -> DeviceError {
        mig_err(
            self.name_str(),
            op,
            None,
            libc::ENOTTY,
            "this device speaks migration v1 (a migration region), not the v2 feature".into(),
        )
    }

    // ---- migration core (shared by v1 and v2) ----

    /// One arc `from -> to`, with the side effects on the data streams.
    fn arc(&self, g: &mut Inner, to: MigState) -> std::result::Result<(), (i32, String)> {
        let from = g.state;
        if self.params.fail_at == Some(to) && g.fails_left != Some(0) {
            if let Some(n) = g.fails_left.as_mut() {
                *n -= 1;
            }
            if self.params.fail_mode == FailMode::Error {
                g.state = MigState::Error;
                g.save = None;
                g.resume = None;
            }
            return Err((
                libc::EIO,
                format!("fail-at={to}: the simulated device refuses {from} -> {to}"),
            ));
        }
        let now = self.now_ns();
        let saving = |s: MigState| {
            matches!(
                s,
                MigState::PreCopy | MigState::PreCopyP2p | MigState::StopCopy
            )
        };
        let endless = self.params.violate == Some(Violation::EndlessRead);
        if from == MigState::Resuming && to != MigState::Resuming {
            let r = g.resume.take();
            let verdict = match r {
                Some(r) => r.finish(),
                None => Err("no resume stream".into()),
            };
            match verdict {
                Ok(seed) => g.seed = seed,
                Err(why) => {
                    g.state = MigState::Error;
                    g.last_refusal = Some(why.clone());
                    return Err((
                        libc::EINVAL,
                        format!("the device refused the restored state: {why}"),
                    ));
                }
            }
        }
        if saving(from) && !saving(to) {
            g.save = None;
        }
        if to == MigState::StopCopy {
            match g.save.as_mut() {
                Some(s) if saving(from) => s.stop(now),
                _ => {
                    let mut s = SaveStream::new(g.seed, self.params.state, 0, endless, now);
                    s.stop(now);
                    g.save = Some(s);
                }
            }
            g.v1 = V1Chunk::default();
        } else if saving(to) && !saving(from) {
            g.save = Some(SaveStream::new(
                g.seed,
                self.params.state,
                self.params.dirty_rate,
                endless,
                now,
            ));
            g.v1 = V1Chunk::default();
        }
        if to == MigState::Resuming && from != MigState::Resuming {
            g.resume = Some(ResumeStream::new(
                self.params.state,
                self.params.verify_seed,
            ));
            g.v1 = V1Chunk::default();
        }
        g.state = to;
        Ok(())
    }

    fn limit(&self, n: usize) -> usize {
        match self.params.chunk {
            Some(c) => n.min(usize::try_from(c).unwrap_or(usize::MAX)),
            None => n,
        }
    }

    // ---- v1 region ----

    fn v1_read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(data) = &self.v1_data else {
            return Err(self.region_err(MIGRATION_V1, "read", offset, buf.len(), libc::EINVAL, ""));
        };
        if offset >= V1_DATA_OFFSET {
            data.read((offset - V1_DATA_OFFSET) as usize, buf);
            return Ok(());
        }
        let einval = |hint: &str| {
            self.region_err(MIGRATION_V1, "read", offset, buf.len(), libc::EINVAL, hint)
        };
        let mut g = self.lock();
        let saving = matches!(g.state, MigState::PreCopy | MigState::StopCopy);
        let value: u64 = match (offset, buf.len()) {
            (0, 4) => v1_bits(g.state) as u64,
            (4, 4) => 0,
            (8, 8) => {
                if !saving {
                    0
                } else {
                    let now = self.now_ns();
                    g.v1.fresh = false;
                    let stopped = g.state == MigState::StopCopy;
                    let s = g.save.as_mut().ok_or_else(|| einval("no save stream"))?;
                    s.accrue(now);
                    if stopped {
                        s.remaining_to_end()
                    } else {
                        let (i, d) = s.precopy_info();
                        i + d
                    }
                }
            }
            (16, 8) => {
                if g.state == MigState::Resuming {
                    V1_DATA_OFFSET
                } else if saving {
                    if !g.v1.fresh {
                        let n = self.limit(data.len().min(self.params.v1_data as usize));
                        let now = self.now_ns();
                        let s = g.save.as_mut().ok_or_else(|| einval("no save stream"))?;
                        // SAFETY: the data section belongs to the device; the v1 protocol gives
                        // it to the device between the data_offset read and the user's copy,
                        // and we hold the device lock while filling it.
                        let sect = unsafe { std::slice::from_raw_parts_mut(data.ptr(), n) };
                        let len = match s.produce(sect, now) {
                            Produced::Bytes(k) => k as u64,
                            Produced::NothingPending | Produced::End => 0,
                        };
                        g.v1 = V1Chunk { len, fresh: true };
                    }
                    V1_DATA_OFFSET
                } else {
                    return Err(einval(
                        "data_offset is only valid while _SAVING or _RESUMING",
                    ));
                }
            }
            (24, 8) => {
                if saving {
                    if self.params.violate == Some(Violation::OversizedChunk) && g.v1.len > 0 {
                        self.params.v1_data + 4096
                    } else {
                        g.v1.len
                    }
                } else if g.state == MigState::Resuming {
                    0
                } else {
                    return Err(einval("data_size is only valid while _SAVING or _RESUMING"));
                }
            }
            _ => {
                return Err(einval(
                    "access vfio_device_migration_info fields whole, at their offsets",
                ))
            }
        };
        buf.copy_from_slice(&value.to_le_bytes()[..buf.len()]);
        Ok(())
    }

    fn v1_write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let Some(data) = &self.v1_data else {
            return Err(self.region_err(
                MIGRATION_V1,
                "write",
                offset,
                buf.len(),
                libc::EINVAL,
                "",
            ));
        };
        if offset >= V1_DATA_OFFSET {
            data.write((offset - V1_DATA_OFFSET) as usize, buf);
            return Ok(());
        }
        let fail = |errno: i32, hint: &str| {
            self.region_err(MIGRATION_V1, "write", offset, buf.len(), errno, hint)
        };
        let mut le = [0u8; 8];
        match (offset, buf.len()) {
            (0, 4) => {
                le[..4].copy_from_slice(buf);
                let bits = u64::from_le_bytes(le) as u32;
                let mut g = self.lock();
                if g.state == MigState::Error {
                    return Err(fail(
                        libc::EINVAL,
                        "the device is in error (_SAVING|_RESUMING): reset it",
                    ));
                }
                let Some(to) = v1_state(bits) else {
                    return Err(fail(
                        libc::EINVAL,
                        &format!("device_state {bits:#x} is not a valid v1 state"),
                    ));
                };
                if g.state == MigState::StopCopy && to == MigState::PreCopy {
                    return Err(fail(
                        libc::EINVAL,
                        "_SAVING -> _SAVING|_RUNNING is not a valid transition",
                    ));
                }
                if to == g.state {
                    return Ok(());
                }
                self.arc(&mut g, to)
                    .map_err(|(errno, why)| fail(errno, &why))
            }
            (24, 8) => {
                le.copy_from_slice(buf);
                let n = u64::from_le_bytes(le);
                let mut g = self.lock();
                if g.state != MigState::Resuming {
                    return Err(fail(
                        libc::EINVAL,
                        "data_size can only be written while _RESUMING",
                    ));
                }
                if n > self.params.v1_data {
                    return Err(fail(
                        libc::EINVAL,
                        "data_size is larger than the data section",
                    ));
                }
                let r = g
                    .resume
                    .as_mut()
                    .ok_or_else(|| fail(libc::EINVAL, "no resume stream"))?;
                // SAFETY: the user hands the data section to the device by writing data_size
                // and must not touch it until this write returns; we hold the device lock.
                let sect = unsafe { std::slice::from_raw_parts(data.ptr(), n as usize) };
                r.consume(sect);
                Ok(())
            }
            (0..=31, _) => Err(fail(
                libc::EINVAL,
                "only device_state and data_size are writable, as whole fields",
            )),
            _ => Err(fail(
                libc::EINVAL,
                "the gap before the data section is not accessible",
            )),
        }
    }

    // ---- BAR0 ----

    fn bar0_sync(&self, g: &mut Inner) {
        let regs: [(u64, u32); 8] = [
            (REG_ID, ID_VALUE),
            (REG_VERSION, 1),
            (REG_STATE_SIZE_LO, self.params.state as u32),
            (REG_STATE_SIZE_HI, (self.params.state >> 32) as u32),
            (REG_SEED_LO, g.seed as u32),
            (REG_SEED_HI, (g.seed >> 32) as u32),
            (REG_DOORBELL, 0),
            (REG_IRQ_COUNT, g.irq_count),
        ];
        for (o, v) in regs {
            g.bar0[o as usize..o as usize + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
}

impl Device for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.region_bounds(index, "read", offset, buf.len())?;
        match index {
            BAR0 => {
                let mut g = self.lock();
                self.bar0_sync(&mut g);
                let o = offset as usize;
                buf.copy_from_slice(&g.bar0[o..o + buf.len()]);
            }
            BAR2 => self.bar2.read(offset as usize, buf),
            CONFIG => self.lock().config.read(offset as usize, buf),
            MIGRATION_V1 => self.v1_read(offset, buf)?,
            _ => return Err(self.region_err(index, "read", offset, buf.len(), libc::EINVAL, "")),
        }
        Ok(())
    }

    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<()> {
        self.region_bounds(index, "write", offset, buf.len())?;
        match index {
            BAR0 => {
                let mut g = self.lock();
                let o = offset as usize;
                g.bar0[o..o + buf.len()].copy_from_slice(buf);
                let db = REG_DOORBELL as usize;
                if o <= db && o + buf.len() >= db + 4 {
                    let mut v = [0u8; 4];
                    v.copy_from_slice(&g.bar0[db..db + 4]);
                    let vector = u32::from_le_bytes(v);
                    if let Some(ix) = g.irqs.active_index() {
                        let name = self.name_str().to_string();
                        g.irqs.trigger(&name, ix, vector)?;
                        g.irq_count = g.irq_count.wrapping_add(1);
                    }
                }
                self.bar0_sync(&mut g);
            }
            BAR2 => self.bar2.write(offset as usize, buf),
            CONFIG => self.lock().config.write(offset as usize, buf),
            MIGRATION_V1 => self.v1_write(offset, buf)?,
            _ => return Err(self.region_err(index, "write", offset, buf.len(), libc::EINVAL, "")),
        }
        Ok(())
    }

    fn map_region(&self, index: u32, offset: u64, len: u64) -> Result<RegionMap> {
        let ulen = usize::try_from(len).unwrap_or(usize::MAX);
        let r = self.region_bounds(index, "mmap", offset, ulen)?;
        let inside = r
            .mmap_areas()
            .iter()
            .any(|a| offset >= a.offset && offset + len <= a.offset + a.size);
        if !inside || len == 0 {
            return Err(self.region_err(
                index,
                "mmap",
                offset,
                ulen,
                libc::EINVAL,
                "the range is not inside an mmap-able area of the region",
            ));
        }
        match (index, &self.v1_data) {
            (BAR2, _) => Ok(self.bar2.map(offset as usize, ulen)),
            (MIGRATION_V1, Some(d)) => Ok(d.map((offset - V1_DATA_OFFSET) as usize, ulen)),
            _ => Err(self.region_err(index, "mmap", offset, ulen, libc::EINVAL, "")),
        }
    }

    fn reset(&self) -> Result<()> {
        if !self.params.reset {
            return Err(DeviceError::Unsupported {
                device: self.name_str().to_string(),
                what: "reset (the device was opened with reset=0)".into(),
            });
        }
        let mut g = self.lock();
        g.state = MigState::Running;
        g.save = None;
        g.resume = None;
        g.v1 = V1Chunk::default();
        g.bar0 = [0; BAR0_SIZE as usize];
        g.irq_count = 0;
        Ok(())
    }

    fn set_irq_eventfds(&self, index: u32, start: u32, fds: &[RawFd]) -> Result<()> {
        let name = self.name_str().to_string();
        self.lock().irqs.set_eventfds(&name, index, start, fds)
    }

    fn trigger_irq(&self, index: u32, vector: u32) -> Result<()> {
        let name = self.name_str().to_string();
        self.lock().irqs.trigger(&name, index, vector)
    }

    fn mask_irq(&self, index: u32, vector: u32, masked: bool) -> Result<()> {
        let name = self.name_str().to_string();
        self.lock().irqs.mask(&name, index, vector, masked)
    }

    fn migration_flags(&self) -> Result<Option<MigFlags>> {
        Ok(match self.params.protocol {
            SimProtocol::V2 => Some(self.params.flags),
            SimProtocol::V1 => None,
        })
    }

    fn set_mig_state(&self, target: MigState) -> Result<()> {
        const OP: &str = "set state";
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2(OP));
        }
        let mut g = self.lock();
        let flags = self.params.flags;
        while g.state != target {
            let Some(next) = fsm::next_step(flags, g.state, target).ok() else {
                let hint = if g.state == MigState::Error {
                    "the device is in ERROR: reset it".to_string()
                } else {
                    format!(
                        "no path from {} to {target} with migration flags {flags}",
                        g.state
                    )
                };
                return Err(mig_err(
                    self.name_str(),
                    OP,
                    Some(target),
                    libc::EINVAL,
                    hint,
                ));
            };
            if let Err((errno, why)) = self.arc(&mut g, next) {
                return Err(mig_err(self.name_str(), OP, Some(target), errno, why));
            }
        }
        Ok(())
    }

    fn mig_state(&self) -> Result<MigState> {
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2("get state"));
        }
        Ok(self.lock().state)
    }

    fn mig_read(&self, buf: &mut [u8]) -> Result<usize> {
        const OP: &str = "read data";
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2(OP));
        }
        let now = self.now_ns();
        let mut g = self.lock();
        let state = g.state;
        let n = self.limit(buf.len());
        let Some(s) = g.save.as_mut() else {
            return Err(mig_err(
                self.name_str(),
                OP,
                Some(state),
                libc::EBADF,
                format!("no saving data stream is open in {state}"),
            ));
        };
        match s.produce(&mut buf[..n], now) {
            Produced::Bytes(k) => Ok(k),
            Produced::End => Ok(0),
            Produced::NothingPending => Err(mig_err(
                self.name_str(),
                OP,
                Some(state),
                libc::ENOMSG,
                "no pre-copy data pending right now".into(),
            )),
        }
    }

    fn mig_write(&self, buf: &[u8]) -> Result<usize> {
        const OP: &str = "write data";
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2(OP));
        }
        let mut g = self.lock();
        let state = g.state;
        let n = self.limit(buf.len());
        let Some(r) = g.resume.as_mut() else {
            return Err(mig_err(
                self.name_str(),
                OP,
                Some(state),
                libc::EBADF,
                format!("no resuming data stream is open in {state}"),
            ));
        };
        r.consume(&buf[..n]);
        Ok(n)
    }

    fn precopy_info(&self) -> Result<PrecopyInfo> {
        const OP: &str = "precopy info";
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2(OP));
        }
        if !self.params.flags.has(MigFlags::PRE_COPY) {
            return Err(mig_err(
                self.name_str(),
                OP,
                None,
                libc::ENOTTY,
                "the device has no PRE_COPY".into(),
            ));
        }
        let now = self.now_ns();
        let mut g = self.lock();
        let state = g.state;
        match (state, g.save.as_mut()) {
            (MigState::PreCopy | MigState::PreCopyP2p, Some(s)) => {
                s.accrue(now);
                let (initial_bytes, dirty_bytes) = s.precopy_info();
                Ok(PrecopyInfo {
                    initial_bytes,
                    dirty_bytes,
                })
            }
            _ => Err(mig_err(
                self.name_str(),
                OP,
                Some(state),
                libc::EINVAL,
                format!(
                    "precopy info is only available in PRE_COPY states, the device is in {state}"
                ),
            )),
        }
    }

    fn stop_copy_size(&self) -> Result<u64> {
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2("stop-copy size"));
        }
        let now = self.now_ns();
        let mut g = self.lock();
        let size = match g.save.as_mut() {
            Some(s) => {
                s.accrue(now);
                s.remaining_to_end()
            }
            None => SaveStream::full_size(self.params.state),
        };
        Ok(
            if self.params.violate == Some(Violation::WrongStopCopySize) {
                size / 2
            } else {
                size
            },
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
