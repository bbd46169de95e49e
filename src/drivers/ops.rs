//! The operations a test-device DMA driver provides, and the values passed to them.
//!
//! A driver knows only its device's registers. Everything common to DMA-capable PCI test
//! devices (bus mastering in PCI_COMMAND, the MSI eventfd, waiting, bounds and ordering
//! checks, restoring the device on the way out) is done once by [`super::DmaEngine`], which
//! calls these operations in between.

use serde::Serialize;

use super::error::Result;
use crate::device::Device;

/// `VFIO_PCI_MSI_IRQ_INDEX`: the interrupt index completions are taken on by default.
pub const MSI_INDEX: u32 = 1;

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Direction {
    /// Host memory (at an IOVA) into device memory.
    ToDevice,
    /// Device memory out into host memory (at an IOVA).
    FromDevice,
}

/// One DMA transfer between an IOVA and device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Transfer {
    /// Direction of the copy.
    pub dir: Direction,
    /// IO virtual address of the host side.
    pub iova: u64,
    /// Offset into the device memory the engine reaches (below
    /// [`DmaLimits::device_memory`]).
    pub dev_offset: u64,
    /// Bytes to copy (1 ..= [`DmaLimits::max_transfer`]).
    pub len: usize,
}

/// What a device's DMA engine can reach, checked by [`super::DmaEngine`] before every
/// transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DmaLimits {
    /// Highest IOVA (exclusive) the device can address (edu: its 28-bit DMA mask).
    pub dma_limit: u64,
    /// Largest single transfer in bytes.
    pub max_transfer: usize,
    /// Bytes of device memory the engine reaches (edu's buffer, a GPU's VRAM):
    /// `dev_offset + len` never exceeds this.
    pub device_memory: u64,
}

impl DmaLimits {
    /// Whether `len` bytes at device offset `dev_offset` lie inside device memory.
    pub fn fits_device(&self, dev_offset: u64, len: u64) -> bool {
        matches!(dev_offset.checked_add(len), Some(e) if e <= self.device_memory)
    }

    /// Whether `len` bytes at IOVA `iova` lie below the DMA limit.
    pub fn fits_dma_mask(&self, iova: u64, len: u64) -> bool {
        matches!(iova.checked_add(len), Some(e) if e <= self.dma_limit)
    }
}

/// How an operation ended as the device's status registers tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Completed.
    Done,
    /// The device reported an error, with the errno it gives (0 when it gives none).
    Failed {
        /// The device's errno.
        errno: i32,
    },
    /// The status does not show completion.
    NotDone,
}

/// A driver's reading of its status registers after the framework waited for an interrupt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// What the status says.
    pub outcome: Outcome,
    /// The raw registers, for messages (`status 0x1, irq 0x1`).
    pub status: String,
}

/// A DMA-capable test device, as a table of operations (modelled on the kernel's VFIO
/// selftests `vfio_pci_driver_ops`).
///
/// Drivers are stateless about the shared plumbing: [`super::DmaEngine`] enables bus
/// mastering, connects the eventfd to [`DmaDriver::interrupt`], checks limits and call
/// order, waits for the interrupt and restores the device; the operations only program the
/// device's own registers. Each operation gets the device it was probed on. Probing is the
/// registry entry's [`super::DriverEntry::probe`], since it runs before a driver exists.
pub trait DmaDriver: Send {
    /// Driver name (`edu`, `vhgpu`).
    fn name(&self) -> &'static str;

    /// What the engine can reach.
    fn limits(&self) -> DmaLimits;

    /// The IRQ index and vector completions and [`DmaDriver::send_msi`] arrive on.
    fn interrupt(&self) -> (u32, u32) {
        (MSI_INDEX, 0)
    }

    /// Device-specific set-up after bus mastering and the eventfd are on: clear stale
    /// interrupt status, enable the interrupts the framework waits for.
    fn init(&mut self, dev: &dyn Device) -> Result<()>;

    /// Undoes [`DmaDriver::init`] (before the framework disconnects the eventfd and restores
    /// PCI_COMMAND).
    fn remove(&mut self, dev: &dyn Device) -> Result<()>;

    /// Programs and starts one transfer, already checked against [`DmaDriver::limits`]. The
    /// device signals the interrupt when it is over.
    fn memcpy_start(&mut self, dev: &dyn Device, t: &Transfer) -> Result<()>;

    /// After the framework waited for the completion interrupt (whether or not it came):
    /// reads and acknowledges the status of the transfer `t`.
    fn memcpy_wait(&mut self, dev: &dyn Device, t: &Transfer) -> Result<Completion>;

    /// Makes the device raise its interrupt once.
    fn send_msi(&mut self, dev: &dyn Device) -> Result<()>;

    /// After the framework waited for the interrupt [`DmaDriver::send_msi`] asked for:
    /// reads and acknowledges the interrupt status.
    fn msi_wait(&mut self, dev: &dyn Device) -> Result<Completion>;

    /// Whether [`DmaDriver::raise_irq`] can make the device raise vector `vector` of IRQ
    /// `index` by itself (the `irq` exercise in device mode). None can by default.
    fn can_raise(&self, index: u32, vector: u32) -> bool {
        let _ = (index, vector);
        false
    }

    /// Makes the device raise vector `vector` of IRQ `index` once, through its own
    /// registers (only called when [`DmaDriver::can_raise`] says it can; nothing to wait for
    /// or acknowledge).
    fn raise_irq(&mut self, dev: &dyn Device, index: u32, vector: u32) -> Result<()> {
        let _ = dev;
        Err(super::DriverError::InvalidArgument {
            device: dev.name().to_string(),
            reason: format!(
                "the {} driver cannot make the device raise IRQ {index} vector {vector}",
                self.name()
            ),
        })
    }
}
