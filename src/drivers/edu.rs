//! Driver for QEMU's `edu` device (1234:11e8, QEMU `hw/misc/edu.c`).
//!
//! BAR0 registers: `0x80` DMA source, `0x88` destination, `0x90` count, `0x98` command
//! (bit 0 start, bit 1 direction: 0 RAM->edu, 1 edu->RAM, bit 2 raise interrupt 0x100 when
//! done); `0x60` raise interrupt, `0x64` acknowledge, `0x20` status, `0x24` interrupt
//! status. A 4 KiB buffer at device address `0x40000`; a 28-bit DMA mask (IOVAs below
//! 256 MiB).
//!
//! QEMU 7.2's edu aborts the whole VM when a transfer touches the last byte of its buffer
//! (its range check wants the end strictly inside), so every transfer stays inside
//! [`EDU_WINDOW`] (`0x40000..0x40fff`, last byte `0x40ffe`): the driver's device memory is
//! 4095 bytes, which the framework enforces, and [`DmaDriver::memcpy_start`] checks the
//! device address again before programming it.

use std::ops::Range;

use super::error::{DriverError, Result};
use super::ops::{Completion, Direction, DmaDriver, DmaLimits, Outcome, Transfer};
use crate::device::{Device, RegionAccess};

/// PCI id of edu.
pub const EDU_ID: &str = "1234:11e8";
/// Device address of edu's DMA buffer.
pub const EDU_BUFFER: u64 = 0x40000;
/// Device addresses a transfer may touch: the 4 KiB buffer less its last byte.
pub const EDU_WINDOW: Range<u64> = EDU_BUFFER..EDU_BUFFER + 4095;

const REG_STATUS: u64 = 0x20;
const REG_IRQ_STATUS: u64 = 0x24;
const REG_IRQ_RAISE: u64 = 0x60;
const REG_IRQ_ACK: u64 = 0x64;
const REG_DMA_SRC: u64 = 0x80;
const REG_DMA_DST: u64 = 0x88;
const REG_DMA_COUNT: u64 = 0x90;
const REG_DMA_CMD: u64 = 0x98;
const CMD_START: u64 = 1;
const CMD_TO_RAM: u64 = 2;
const CMD_IRQ: u64 = 4;
const IRQ_DMA: u64 = 0x100;
const IRQ_RAISED: u64 = 1;

/// QEMU's edu device.
#[derive(Debug, Default)]
pub struct Edu;

impl Edu {
    /// Matches PCI id 1234:11e8.
    pub fn probe(dev: &dyn Device) -> Option<Box<dyn DmaDriver>> {
        (dev.info().identity.pci_id.as_deref() == Some(EDU_ID))
            .then(|| Box::new(Edu) as Box<dyn DmaDriver>)
    }

    /// Reads and acknowledges the interrupt status; returns it with the status line.
    fn ack(&self, dev: &dyn Device) -> Result<(u64, String)> {
        let status = dev.read_width(0, REG_STATUS, 4)?;
        let irq = dev.read_width(0, REG_IRQ_STATUS, 4)?;
        if irq != 0 {
            dev.write_width(0, REG_IRQ_ACK, 4, irq)?;
        }
        Ok((irq, format!("status {status:#x}, irq status {irq:#x}")))
    }
}

impl DmaDriver for Edu {
    fn name(&self) -> &'static str {
        "edu"
    }

    fn limits(&self) -> DmaLimits {
        DmaLimits {
            dma_limit: 1 << 28,
            max_transfer: 2048,
            device_memory: EDU_WINDOW.end - EDU_WINDOW.start,
        }
    }

    fn init(&mut self, dev: &dyn Device) -> Result<()> {
        // Clear anything left pending by a previous user.
        self.ack(dev).map(|_| ())
    }

    fn remove(&mut self, _dev: &dyn Device) -> Result<()> {
        Ok(())
    }

    fn memcpy_start(&mut self, dev: &dyn Device, t: &Transfer) -> Result<()> {
        let window = EDU_WINDOW.end - EDU_WINDOW.start;
        if !matches!(t.dev_offset.checked_add(t.len as u64), Some(e) if e <= window) {
            return Err(DriverError::InvalidArgument {
                device: dev.name().to_string(),
                reason: format!(
                    "edu: {} byte(s) at buffer offset {:#x} leave the DMA window {:#x}..{:#x}",
                    t.len, t.dev_offset, EDU_WINDOW.start, EDU_WINDOW.end
                ),
            });
        }
        let at = EDU_BUFFER + t.dev_offset;
        let cmd = dev.read_width(0, REG_DMA_CMD, 8)?;
        if cmd & CMD_START != 0 {
            return Err(DriverError::Device {
                device: dev.name().to_string(),
                what: "a DMA transfer is already running".into(),
                status: format!("command {cmd:#x}"),
                source: std::io::Error::from_raw_os_error(libc::EBUSY),
            });
        }
        let (src, dst, dir) = match t.dir {
            Direction::ToDevice => (t.iova, at, 0),
            Direction::FromDevice => (at, t.iova, CMD_TO_RAM),
        };
        dev.write_width(0, REG_DMA_SRC, 8, src)?;
        dev.write_width(0, REG_DMA_DST, 8, dst)?;
        dev.write_width(0, REG_DMA_COUNT, 8, t.len as u64)?;
        dev.write_width(0, REG_DMA_CMD, 8, CMD_START | CMD_IRQ | dir)?;
        Ok(())
    }

    fn memcpy_wait(&mut self, dev: &dyn Device, _t: &Transfer) -> Result<Completion> {
        let (irq, status) = self.ack(dev)?;
        let cmd = dev.read_width(0, REG_DMA_CMD, 8)?;
        let outcome = if irq & IRQ_DMA != 0 && cmd & CMD_START == 0 {
            Outcome::Done
        } else {
            Outcome::NotDone
        };
        Ok(Completion {
            outcome,
            status: format!("{status}, command {cmd:#x}"),
        })
    }

    fn send_msi(&mut self, dev: &dyn Device) -> Result<()> {
        dev.write_width(0, REG_IRQ_RAISE, 4, IRQ_RAISED)?;
        Ok(())
    }

    fn msi_wait(&mut self, dev: &dyn Device) -> Result<Completion> {
        let (irq, status) = self.ack(dev)?;
        Ok(Completion {
            outcome: if irq & IRQ_RAISED != 0 {
                Outcome::Done
            } else {
                Outcome::NotDone
            },
            status,
        })
    }
}
