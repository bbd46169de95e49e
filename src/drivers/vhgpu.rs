//! Driver for vhgpu (1234:7668), the bed's simulated GPU (`tests/vm/module`,
//! `hw-notes/vhgpu.md`): its DMA engine copies between an IOVA and VRAM (BAR2) and raises a
//! completion interrupt.
//!
//! BAR0 registers (32-bit, little endian): `0x00` ID (`"VHG1"`), `0x08/0x0c` VRAM size,
//! `0x30` IRQ status (write 1 to clear), `0x34` IRQ enable, `0x38` raise, `0x40/0x44` DMA
//! IOVA, `0x48/0x4c` VRAM offset, `0x50` length (<= 16 MiB), `0x54` direction (0 IOVA ->
//! VRAM, 1 VRAM -> IOVA), `0x58` go (synchronous: the transfer is over when the write
//! returns), `0x5c` status (bit 0 done, bit 1 error), `0x60` errno of the last failure,
//! `0x64` transfers completed, `0x70` MSI-X raise (write vector N: the device raises it, or
//! holds it pending while it is masked through VFIO), `0x74` MSI-X pending bits, `0x78` MSI-X
//! messages sent. IRQ bits: 0 DMA done, 1 DMA error, 3 software. DMA needs bus mastering and
//! a RUNNING or PRE_COPY device. 4 MSI-X vectors; vector 0 also carries the IRQ bits while
//! MSI-X is the active interrupt mode.

use super::error::Result;
use super::ops::{Completion, Direction, DmaDriver, DmaLimits, Outcome, Transfer};
use crate::device::{Device, RegionAccess};

/// PCI id of vhgpu.
pub const VHGPU_ID: &str = "1234:7668";
/// Largest single vhgpu DMA transfer.
pub const MAX_LEN: usize = 16 << 20;

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
const REG_MSIX_RAISE: u64 = 0x70;
/// MSI-X vectors vhgpu offers.
pub const MSIX_VECTORS: u32 = 4;
const MSIX_INDEX: u32 = 2;
const ID_MAGIC: u64 = 0x5648_4731;
const DIR_TO_VRAM: u64 = 0;
const DIR_FROM_VRAM: u64 = 1;
const ST_DONE: u64 = 1;
const ST_ERROR: u64 = 2;
const IRQ_DMA_DONE: u64 = 1;
const IRQ_DMA_ERROR: u64 = 2;
const IRQ_SOFT: u64 = 8;

/// The vhgpu test device's DMA engine.
#[derive(Debug)]
pub struct Vhgpu {
    vram: u64,
    saved_enable: Option<u64>,
}

impl Vhgpu {
    /// Matches PCI id 1234:7668 whose BAR0 reads the `"VHG1"` ID; learns the VRAM size.
    pub fn probe(dev: &dyn Device) -> Option<Box<dyn DmaDriver>> {
        if dev.info().identity.pci_id.as_deref() != Some(VHGPU_ID) {
            return None;
        }
        if dev.read_width(0, REG_ID, 4).ok()? != ID_MAGIC {
            return None;
        }
        let lo = dev.read_width(0, REG_VRAM_LO, 4).ok()?;
        let hi = dev.read_width(0, REG_VRAM_HI, 4).ok()?;
        Some(Box::new(Vhgpu {
            vram: hi << 32 | lo,
            saved_enable: None,
        }))
    }

    /// Reads and clears (W1C) the IRQ status.
    fn ack(&self, dev: &dyn Device) -> Result<u64> {
        let irq = dev.read_width(0, REG_IRQ_STATUS, 4)?;
        if irq != 0 {
            dev.write_width(0, REG_IRQ_STATUS, 4, irq)?;
        }
        Ok(irq)
    }
}

impl DmaDriver for Vhgpu {
    fn name(&self) -> &'static str {
        "vhgpu"
    }

    fn limits(&self) -> DmaLimits {
        DmaLimits {
            dma_limit: u64::MAX,
            max_transfer: MAX_LEN,
            device_memory: self.vram,
        }
    }

    fn init(&mut self, dev: &dyn Device) -> Result<()> {
        self.saved_enable = Some(dev.read_width(0, REG_IRQ_ENABLE, 4)?);
        // Clear what a previous user left pending, then enable what the framework waits for.
        self.ack(dev)?;
        dev.write_width(
            0,
            REG_IRQ_ENABLE,
            4,
            IRQ_DMA_DONE | IRQ_DMA_ERROR | IRQ_SOFT,
        )?;
        Ok(())
    }

    fn remove(&mut self, dev: &dyn Device) -> Result<()> {
        if let Some(e) = self.saved_enable.take() {
            dev.write_width(0, REG_IRQ_ENABLE, 4, e)?;
        }
        Ok(())
    }

    fn memcpy_start(&mut self, dev: &dyn Device, t: &Transfer) -> Result<()> {
        let dir = match t.dir {
            Direction::ToDevice => DIR_TO_VRAM,
            Direction::FromDevice => DIR_FROM_VRAM,
        };
        let (iova, vram) = (t.iova, t.dev_offset);
        dev.write_width(0, REG_DMA_IOVA_LO, 4, iova & 0xffff_ffff)?;
        dev.write_width(0, REG_DMA_IOVA_HI, 4, iova >> 32)?;
        dev.write_width(0, REG_DMA_VRAM_LO, 4, vram & 0xffff_ffff)?;
        dev.write_width(0, REG_DMA_VRAM_HI, 4, vram >> 32)?;
        dev.write_width(0, REG_DMA_LEN, 4, t.len as u64)?;
        dev.write_width(0, REG_DMA_DIR, 4, dir)?;
        dev.write_width(0, REG_DMA_CTRL, 4, 1)?;
        Ok(())
    }

    fn memcpy_wait(&mut self, dev: &dyn Device, _t: &Transfer) -> Result<Completion> {
        let status = dev.read_width(0, REG_DMA_STATUS, 4)?;
        let irq = self.ack(dev)?;
        let outcome = if status & ST_ERROR != 0 || irq & IRQ_DMA_ERROR != 0 {
            Outcome::Failed {
                errno: dev.read_width(0, REG_DMA_ERRNO, 4)? as i32,
            }
        } else if status & ST_DONE != 0 && irq & IRQ_DMA_DONE != 0 {
            Outcome::Done
        } else {
            Outcome::NotDone
        };
        Ok(Completion {
            outcome,
            status: format!("status {status:#x}, irq {irq:#x}"),
        })
    }

    fn send_msi(&mut self, dev: &dyn Device) -> Result<()> {
        dev.write_width(0, REG_IRQ_RAISE, 4, IRQ_SOFT)?;
        Ok(())
    }

    fn msi_wait(&mut self, dev: &dyn Device) -> Result<Completion> {
        let irq = self.ack(dev)?;
        Ok(Completion {
            outcome: if irq & IRQ_SOFT != 0 {
                Outcome::Done
            } else {
                Outcome::NotDone
            },
            status: format!("irq status {irq:#x}"),
        })
    }

    fn can_raise(&self, index: u32, vector: u32) -> bool {
        index == MSIX_INDEX && vector < MSIX_VECTORS
    }

    fn raise_irq(&mut self, dev: &dyn Device, index: u32, vector: u32) -> Result<()> {
        if !self.can_raise(index, vector) {
            return Err(super::DriverError::InvalidArgument {
                device: dev.name().to_string(),
                reason: format!("vhgpu raises MSI-X vectors 0..{MSIX_VECTORS} only, not IRQ {index} vector {vector}"),
            });
        }
        dev.write_width(0, REG_MSIX_RAISE, 4, vector as u64)?;
        Ok(())
    }
}
