//! The device-fd contract on the simulator: region access (BAR0 registers, the BAR2 memory,
//! config space, the v1 migration region), mmap, reset and interrupts. The migration calls
//! are forwarded to `v2.rs`.

use super::{
    Inner, SimDevice, SimProtocol, V1Chunk, BAR0, BAR0_SIZE, BAR2, CONFIG, ID_VALUE, MIGRATION_V1,
    REG_DOORBELL, REG_ID, REG_IRQ_COUNT, REG_SEED_HI, REG_SEED_LO, REG_STATE_SIZE_HI,
    REG_STATE_SIZE_LO, REG_VERSION, V1_DATA_OFFSET,
};
use crate::device::{
    Device, DeviceError, DeviceInfo, MigFlags, MigState, PrecopyInfo, RegionInfo, RegionMap, Result,
};
use std::any::Any;
use std::io;
use std::os::fd::RawFd;

impl SimDevice {
    /// A region access error with an errno and a hint, naming the region.
    pub(super) fn region_err(
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
    pub(super) fn region_bounds(
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

    /// Refreshes the BAR0 registers that mirror device state (id, sizes, seed, counters).
    pub(super) fn bar0_sync(&self, g: &mut Inner) {
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
        // As the kernel's mmap: a mapping starts on a page.
        let page = crate::mem::page_size();
        if offset % page as u64 != 0 {
            return Err(DeviceError::Misaligned {
                offset,
                width: page,
            });
        }
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
        // violation reset: the migration state and its streams survive the reset
        if !self.v2_violates(super::Violation::Reset) {
            g.state = MigState::Running;
            g.save = None;
            self.abort_resume(&mut g);
            g.v1 = V1Chunk::default();
        }
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
        self.v2_set_state(target)
    }

    fn mig_state(&self) -> Result<MigState> {
        self.v2_state()
    }

    fn mig_read(&self, buf: &mut [u8]) -> Result<usize> {
        self.v2_read(buf)
    }

    fn mig_write(&self, buf: &[u8]) -> Result<usize> {
        self.v2_write(buf)
    }

    fn precopy_info(&self) -> Result<PrecopyInfo> {
        self.v2_precopy_info()
    }

    fn stop_copy_size(&self) -> Result<u64> {
        self.v2_stop_copy_size()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
