//! DMA test driver for vhgpu (1234:7668), the bed's simulated GPU (`tests/vm/module`,
//! `hw-notes/vhgpu.md`): its DMA engine copies between an IOVA and VRAM (BAR2) and raises a
//! completion interrupt, taken here on an MSI eventfd.
//!
//! BAR0 registers (32-bit, little endian): `0x08/0x0c` VRAM size, `0x30` IRQ status (write 1
//! to clear), `0x34` IRQ enable, `0x38` raise, `0x40/0x44` DMA IOVA, `0x48/0x4c` VRAM offset,
//! `0x50` length (<= 16 MiB), `0x54` direction (0 IOVA -> VRAM, 1 VRAM -> IOVA), `0x58` go
//! (synchronous: the transfer is over when the write returns), `0x5c` status (bit 0 done,
//! bit 1 error), `0x60` errno of the last failure, `0x64` transfers completed. IRQ bits: 0
//! DMA done, 1 DMA error, 3 software. DMA needs bus mastering and a RUNNING or PRE_COPY
//! device.

use std::time::{Duration, Instant};

use super::edu::DmaTestDriver;
use super::irq::IrqEvent;
use super::pci::{PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY};
use super::region::PCI_CONFIG_INDEX;
use crate::device::{Device, DeviceError, RegionAccess, Result};

const VHGPU_ID: &str = "1234:7668";
const REG_ID: u64 = 0x00;
const REG_VRAM_LO: u64 = 0x08;
const REG_VRAM_HI: u64 = 0x0c;
const REG_IRQ_STATUS: u64 = 0x30;
const REG_IRQ_ENABLE: u64 = 0x34;
const REG_IRQ_RAISE: u64 = 0x38;
const REG_DMA_IOVA_LO: u64 = 0x40;
const REG_DMA_IOVA_HI: u64 = 0x44;
const REG_DMA_VRAM_LO: u64 = 0x48;
const REG_DMA_VRAM_HI: u64 = 0x4c;
const REG_DMA_LEN: u64 = 0x50;
const REG_DMA_DIR: u64 = 0x54;
const REG_DMA_CTRL: u64 = 0x58;
const REG_DMA_STATUS: u64 = 0x5c;
const REG_DMA_ERRNO: u64 = 0x60;
const ID_MAGIC: u64 = 0x5648_4731;
const DIR_TO_VRAM: u64 = 0;
const DIR_FROM_VRAM: u64 = 1;
const ST_DONE: u64 = 1;
const ST_ERROR: u64 = 2;
const IRQ_DMA_DONE: u64 = 1;
const IRQ_DMA_ERROR: u64 = 2;
const IRQ_SOFT: u64 = 8;
/// Largest single vhgpu DMA transfer.
pub const MAX_LEN: usize = 16 << 20;
const MSI_INDEX: u32 = 1;

/// The vhgpu test device's DMA engine.
pub struct Vhgpu<'a> {
    dev: &'a dyn Device,
    vram: u64,
    ev: Option<IrqEvent>,
    saved_command: Option<u16>,
    saved_enable: Option<u64>,
    timeout: Duration,
}

impl<'a> Vhgpu<'a> {
    /// Matches 1234:7668 whose BAR0 reads the "VHG1" ID.
    pub fn probe(dev: &'a dyn Device) -> Option<Vhgpu<'a>> {
        if dev.info().identity.pci_id.as_deref() != Some(VHGPU_ID) {
            return None;
        }
        if dev.read_width(0, REG_ID, 4).ok()? != ID_MAGIC {
            return None;
        }
        let lo = dev.read_width(0, REG_VRAM_LO, 4).ok()?;
        let hi = dev.read_width(0, REG_VRAM_HI, 4).ok()?;
        Some(Vhgpu {
            dev,
            vram: hi << 32 | lo,
            ev: None,
            saved_command: None,
            saved_enable: None,
            timeout: Duration::from_secs(10),
        })
    }

    fn io_err(&self, what: String, source: std::io::Error) -> DeviceError {
        DeviceError::Io {
            device: self.dev.name().into(),
            what,
            source,
        }
    }

    fn transfer(&self, iova: u64, vram: u64, len: usize, dir: u64) -> Result<Duration> {
        let ev = self.ev.as_ref().ok_or_else(|| {
            DeviceError::InvalidArgument("vhgpu: init() must run before DMA".into())
        })?;
        if len == 0 || len > MAX_LEN {
            return Err(DeviceError::InvalidArgument(format!(
                "vhgpu transfers are 1..={MAX_LEN} bytes, not {len}"
            )));
        }
        if !matches!(vram.checked_add(len as u64), Some(e) if e <= self.vram) {
            return Err(DeviceError::InvalidArgument(format!(
                "{len} byte(s) at VRAM offset {vram:#x} are outside the {:#x}-byte VRAM",
                self.vram
            )));
        }
        ev.drain().ok();
        let d = self.dev;
        d.write_width(0, REG_DMA_IOVA_LO, 4, iova & 0xffff_ffff)?;
        d.write_width(0, REG_DMA_IOVA_HI, 4, iova >> 32)?;
        d.write_width(0, REG_DMA_VRAM_LO, 4, vram & 0xffff_ffff)?;
        d.write_width(0, REG_DMA_VRAM_HI, 4, vram >> 32)?;
        d.write_width(0, REG_DMA_LEN, 4, len as u64)?;
        d.write_width(0, REG_DMA_DIR, 4, dir)?;
        let t = Instant::now();
        d.write_width(0, REG_DMA_CTRL, 4, 1)?;
        let got = ev
            .wait(self.timeout)
            .map_err(|e| self.io_err("wait for the DMA interrupt".into(), e))?;
        let took = t.elapsed();
        let status = d.read_width(0, REG_DMA_STATUS, 4)?;
        let irq = d.read_width(0, REG_IRQ_STATUS, 4)?;
        if irq != 0 {
            d.write_width(0, REG_IRQ_STATUS, 4, irq)?;
        }
        if status & ST_ERROR != 0 || irq & IRQ_DMA_ERROR != 0 {
            let errno = d.read_width(0, REG_DMA_ERRNO, 4)? as i32;
            return Err(self.io_err(
                format!(
                    "DMA of {len} byte(s) {} IOVA {iova:#x} {} VRAM {vram:#x} failed (status {status:#x}, irq {irq:#x})",
                    if dir == DIR_TO_VRAM { "from" } else { "to" },
                    if dir == DIR_TO_VRAM { "into" } else { "from" },
                ),
                std::io::Error::from_raw_os_error(errno),
            ));
        }
        if got.is_none() {
            return Err(self.io_err(
                format!(
                    "the DMA completion MSI did not arrive within {:?} (status {status:#x}, irq {irq:#x})",
                    self.timeout
                ),
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            ));
        }
        if status & ST_DONE == 0 || irq & IRQ_DMA_DONE == 0 {
            return Err(self.io_err(
                format!("DMA interrupt arrived but status {status:#x} / irq {irq:#x} lack done"),
                std::io::Error::from(std::io::ErrorKind::InvalidData),
            ));
        }
        Ok(took)
    }
}

impl DmaTestDriver for Vhgpu<'_> {
    fn name(&self) -> &'static str {
        "vhgpu"
    }

    fn dma_limit(&self) -> u64 {
        u64::MAX
    }

    fn max_chunk(&self) -> usize {
        MAX_LEN
    }

    fn device_memory(&self) -> u64 {
        self.vram
    }

    fn init(&mut self) -> Result<()> {
        let d = self.dev;
        let cmd = d.read_width(PCI_CONFIG_INDEX, PCI_COMMAND, 2)? as u16;
        self.saved_command = Some(cmd);
        d.write_width(
            PCI_CONFIG_INDEX,
            PCI_COMMAND,
            2,
            (cmd | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY) as u64,
        )?;
        let ev = IrqEvent::new().map_err(|e| self.io_err("create an eventfd".into(), e))?;
        d.set_irq_eventfds(MSI_INDEX, 0, &[ev.raw_fd()])?;
        self.ev = Some(ev);
        self.saved_enable = Some(d.read_width(0, REG_IRQ_ENABLE, 4)?);
        // Clear what a previous user left pending, then enable what we wait for.
        let st = d.read_width(0, REG_IRQ_STATUS, 4)?;
        if st != 0 {
            d.write_width(0, REG_IRQ_STATUS, 4, st)?;
        }
        d.write_width(
            0,
            REG_IRQ_ENABLE,
            4,
            IRQ_DMA_DONE | IRQ_DMA_ERROR | IRQ_SOFT,
        )?;
        if let Some(ev) = &self.ev {
            ev.drain().ok();
        }
        Ok(())
    }

    fn copy_to_device_at(&self, iova: u64, dev_offset: u64, len: usize) -> Result<Duration> {
        self.transfer(iova, dev_offset, len, DIR_TO_VRAM)
    }

    fn copy_from_device_at(&self, iova: u64, dev_offset: u64, len: usize) -> Result<Duration> {
        self.transfer(iova, dev_offset, len, DIR_FROM_VRAM)
    }

    fn raise_msi(&self) -> Result<Duration> {
        let ev = self.ev.as_ref().ok_or_else(|| {
            DeviceError::InvalidArgument("vhgpu: init() must run before raising an MSI".into())
        })?;
        ev.drain().ok();
        let t = Instant::now();
        self.dev.write_width(0, REG_IRQ_RAISE, 4, IRQ_SOFT)?;
        let got = ev
            .wait(self.timeout)
            .map_err(|e| self.io_err("wait for the software interrupt".into(), e))?;
        let took = t.elapsed();
        let irq = self.dev.read_width(0, REG_IRQ_STATUS, 4)?;
        if irq != 0 {
            self.dev.write_width(0, REG_IRQ_STATUS, 4, irq)?;
        }
        if got.is_none() || irq & IRQ_SOFT == 0 {
            return Err(self.io_err(
                format!("the software MSI did not arrive (irq status {irq:#x})"),
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            ));
        }
        Ok(took)
    }

    fn shutdown(&mut self) -> Result<()> {
        let d = self.dev;
        let r0 = match self.saved_enable.take() {
            Some(e) => d.write_width(0, REG_IRQ_ENABLE, 4, e),
            None => Ok(()),
        };
        let r1 = if self.ev.take().is_some() {
            d.set_irq_eventfds(MSI_INDEX, 0, &[])
        } else {
            Ok(())
        };
        let r2 = match self.saved_command.take() {
            Some(c) => d.write_width(PCI_CONFIG_INDEX, PCI_COMMAND, 2, c as u64),
            None => Ok(()),
        };
        r0.and(r1).and(r2)
    }
}

impl Drop for Vhgpu<'_> {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
