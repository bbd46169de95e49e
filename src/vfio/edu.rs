//! Device-side DMA test drivers: a small trait (probe, init, memcpy to/from the device,
//! raise an MSI) and its implementation for QEMU's `edu` device (1234:11e8).
//!
//! edu (QEMU `hw/misc/edu.c`): BAR0 registers `0x80` DMA source, `0x88` destination,
//! `0x90` count, `0x98` command (bit 0 start, bit 1 direction: 0 RAM->edu, 1 edu->RAM,
//! bit 2 raise interrupt 0x100 when done); a 4 KiB buffer at device address `0x40000`;
//! a 28-bit DMA mask (IOVAs must be below 256 MiB); `0x60` raise interrupt, `0x64` ack,
//! `0x20` status, `0x24` interrupt status. QEMU 7.2's edu aborts the whole VM if a transfer
//! touches the last byte of its buffer, so transfers stay inside `0x40000..0x40ffe`.

use std::time::{Duration, Instant};

use super::irq::IrqEvent;
use super::pci::{PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY};
use super::region::PCI_CONFIG_INDEX;
use crate::device::{Device, DeviceError, RegionAccess, Result};

/// A device that can copy memory by DMA and raise an MSI, for end-to-end DMA checks.
pub trait DmaTestDriver {
    /// Driver name.
    fn name(&self) -> &'static str;
    /// Highest IOVA (exclusive) the device can address.
    fn dma_limit(&self) -> u64;
    /// Largest single transfer.
    fn max_chunk(&self) -> usize;
    /// Bytes of device memory the DMA engine reaches (edu's buffer, a GPU's VRAM):
    /// `dev_offset` arguments are below this.
    fn device_memory(&self) -> u64;
    /// Enables bus mastering and the completion interrupt.
    fn init(&mut self) -> Result<()>;
    /// DMA `len` bytes from IOVA `iova` into device memory at `dev_offset`; waits for the
    /// completion interrupt.
    fn copy_to_device_at(&self, iova: u64, dev_offset: u64, len: usize) -> Result<Duration>;
    /// DMA `len` bytes of device memory at `dev_offset` to IOVA `iova`; waits for the
    /// completion interrupt.
    fn copy_from_device_at(&self, iova: u64, dev_offset: u64, len: usize) -> Result<Duration>;
    /// DMA `len` bytes from IOVA `iova` into the start of device memory.
    fn copy_to_device(&self, iova: u64, len: usize) -> Result<Duration> {
        self.copy_to_device_at(iova, 0, len)
    }
    /// DMA `len` bytes from the start of device memory to IOVA `iova`.
    fn copy_from_device(&self, iova: u64, len: usize) -> Result<Duration> {
        self.copy_from_device_at(iova, 0, len)
    }
    /// Makes the device raise its MSI and waits for it on the eventfd; returns the latency.
    fn raise_msi(&self) -> Result<Duration>;
    /// Disables the interrupt and bus mastering again.
    fn shutdown(&mut self) -> Result<()>;
}

/// Returns a driver for `dev` when one of the known devices matches (by PCI ID): QEMU edu
/// (1234:11e8) or the bed's vhgpu (1234:7668, [`super::vhgpu`]).
pub fn probe<'a>(dev: &'a dyn Device) -> Option<Box<dyn DmaTestDriver + 'a>> {
    if let Some(e) = Edu::probe(dev) {
        return Some(Box::new(e));
    }
    super::vhgpu::Vhgpu::probe(dev).map(|v| Box::new(v) as Box<dyn DmaTestDriver + 'a>)
}

/// The PCI IDs [`probe`] knows, for error messages.
pub const KNOWN_DEVICES: &str = "QEMU edu 1234:11e8, vhgpu 1234:7668";

const EDU_ID: &str = "1234:11e8";
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
/// Device address of edu's DMA buffer.
pub const EDU_BUFFER: u64 = 0x40000;
const MSI_INDEX: u32 = 1;

/// QEMU's edu device.
pub struct Edu<'a> {
    dev: &'a dyn Device,
    ev: Option<IrqEvent>,
    saved_command: Option<u16>,
    timeout: Duration,
}

impl<'a> Edu<'a> {
    /// Matches 1234:11e8.
    pub fn probe(dev: &'a dyn Device) -> Option<Edu<'a>> {
        (dev.info().identity.pci_id.as_deref() == Some(EDU_ID)).then_some(Edu {
            dev,
            ev: None,
            saved_command: None,
            timeout: Duration::from_secs(10),
        })
    }

    fn ev(&self) -> Result<&IrqEvent> {
        self.ev
            .as_ref()
            .ok_or_else(|| DeviceError::InvalidArgument("edu: init() must run before DMA".into()))
    }

    fn wait_irq(&self, what: &str, want: u64) -> Result<Duration> {
        let t = Instant::now();
        let ev = self.ev()?;
        let got = ev.wait(self.timeout).map_err(|source| DeviceError::Io {
            device: self.dev.name().into(),
            what: format!("wait for the {what} interrupt"),
            source,
        })?;
        if got.is_none() {
            return Err(DeviceError::Io {
                device: self.dev.name().into(),
                what: format!(
                    "the {what} MSI did not arrive within {:?} (status {:#x}, irq status {:#x})",
                    self.timeout,
                    self.dev.read_width(0, REG_STATUS, 4).unwrap_or(u64::MAX),
                    self.dev
                        .read_width(0, REG_IRQ_STATUS, 4)
                        .unwrap_or(u64::MAX)
                ),
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            });
        }
        let status = self.dev.read_width(0, REG_IRQ_STATUS, 4)?;
        self.dev.write_width(0, REG_IRQ_ACK, 4, status)?;
        if status & want == 0 {
            return Err(DeviceError::Io {
                device: self.dev.name().into(),
                what: format!("{what}: interrupt status {status:#x} lacks {want:#x}"),
                source: std::io::Error::from(std::io::ErrorKind::InvalidData),
            });
        }
        Ok(t.elapsed())
    }

    fn check_window(&self, dev_offset: u64, len: usize) -> Result<()> {
        if !matches!(dev_offset.checked_add(len as u64), Some(e) if e <= self.device_memory()) {
            return Err(DeviceError::InvalidArgument(format!(
                "edu's buffer holds {} bytes: {len} at {dev_offset:#x} do not fit",
                self.device_memory()
            )));
        }
        Ok(())
    }

    fn transfer(&self, src: u64, dst: u64, len: usize, to_ram: bool) -> Result<Duration> {
        if len == 0 || len > self.max_chunk() {
            return Err(DeviceError::InvalidArgument(format!(
                "edu transfers are 1..={} bytes, not {len}",
                self.max_chunk()
            )));
        }
        let iova = if to_ram { dst } else { src };
        if !matches!(iova.checked_add(len as u64), Some(e) if e <= self.dma_limit()) {
            return Err(DeviceError::InvalidArgument(format!(
                "IOVA {iova:#x}+{len:#x} is beyond edu's 28-bit DMA mask"
            )));
        }
        if self.dev.read_width(0, REG_DMA_CMD, 8)? & CMD_START != 0 {
            return Err(DeviceError::Io {
                device: self.dev.name().into(),
                what: "a DMA transfer is already running".into(),
                source: std::io::Error::from_raw_os_error(libc::EBUSY),
            });
        }
        self.dev.write_width(0, REG_DMA_SRC, 8, src)?;
        self.dev.write_width(0, REG_DMA_DST, 8, dst)?;
        self.dev.write_width(0, REG_DMA_COUNT, 8, len as u64)?;
        let cmd = CMD_START | CMD_IRQ | if to_ram { CMD_TO_RAM } else { 0 };
        self.dev.write_width(0, REG_DMA_CMD, 8, cmd)?;
        let took = self.wait_irq("DMA completion", IRQ_DMA)?;
        if self.dev.read_width(0, REG_DMA_CMD, 8)? & CMD_START != 0 {
            return Err(DeviceError::Io {
                device: self.dev.name().into(),
                what: "DMA completion interrupt arrived but the command is still running".into(),
                source: std::io::Error::from(std::io::ErrorKind::InvalidData),
            });
        }
        Ok(took)
    }
}

impl DmaTestDriver for Edu<'_> {
    fn name(&self) -> &'static str {
        "edu"
    }

    fn dma_limit(&self) -> u64 {
        1 << 28
    }

    fn max_chunk(&self) -> usize {
        2048
    }

    fn init(&mut self) -> Result<()> {
        let cmd = self.dev.read_width(PCI_CONFIG_INDEX, PCI_COMMAND, 2)? as u16;
        self.saved_command = Some(cmd);
        self.dev.write_width(
            PCI_CONFIG_INDEX,
            PCI_COMMAND,
            2,
            (cmd | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY) as u64,
        )?;
        let ev = IrqEvent::new().map_err(|source| DeviceError::Io {
            device: self.dev.name().into(),
            what: "create an eventfd".into(),
            source,
        })?;
        self.dev.set_irq_eventfds(MSI_INDEX, 0, &[ev.raw_fd()])?;
        // Clear anything left pending by a previous user.
        let st = self.dev.read_width(0, REG_IRQ_STATUS, 4)?;
        if st != 0 {
            self.dev.write_width(0, REG_IRQ_ACK, 4, st)?;
        }
        ev.drain().ok();
        self.ev = Some(ev);
        Ok(())
    }

    fn device_memory(&self) -> u64 {
        // The last byte is off limits (see the module docs).
        4095
    }

    fn copy_to_device_at(&self, iova: u64, dev_offset: u64, len: usize) -> Result<Duration> {
        self.check_window(dev_offset, len)?;
        self.transfer(iova, EDU_BUFFER + dev_offset, len, false)
    }

    fn copy_from_device_at(&self, iova: u64, dev_offset: u64, len: usize) -> Result<Duration> {
        self.check_window(dev_offset, len)?;
        self.transfer(EDU_BUFFER + dev_offset, iova, len, true)
    }

    fn raise_msi(&self) -> Result<Duration> {
        self.ev()?.drain().ok();
        self.dev.write_width(0, REG_IRQ_RAISE, 4, 1)?;
        self.wait_irq("raised", 1)
    }

    fn shutdown(&mut self) -> Result<()> {
        let r1 = if self.ev.take().is_some() {
            self.dev.set_irq_eventfds(MSI_INDEX, 0, &[])
        } else {
            Ok(())
        };
        let r2 = match self.saved_command.take() {
            Some(c) => self
                .dev
                .write_width(PCI_CONFIG_INDEX, PCI_COMMAND, 2, c as u64),
            None => Ok(()),
        };
        r1.and(r2)
    }
}

impl Drop for Edu<'_> {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
