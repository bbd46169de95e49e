//! The framework around a [`DmaDriver`]: the set-up and tear-down every DMA test device
//! needs, done once, and the checks that keep the driver's operations in order and in
//! bounds.

use std::time::{Duration, Instant};

use super::error::{DriverError, Result};
use super::ops::{Completion, Direction, DmaDriver, DmaLimits, Outcome, Transfer};
use crate::device::{Device, RegionAccess};
use crate::vfio::irq::IrqEvent;
use crate::vfio::pci::{PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY};
use crate::vfio::region::PCI_CONFIG_INDEX;

/// How long an interrupt is waited for unless [`DmaEngine::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A probed device and its driver, with the shared state the framework owns.
///
/// Life cycle: [`DmaEngine::init`] (bus master + memory enable in PCI_COMMAND, an eventfd on
/// the driver's interrupt, the driver's own init, stale signals drained), then any number of
/// transfers ([`DmaEngine::memcpy`], or [`DmaEngine::memcpy_start`] +
/// [`DmaEngine::memcpy_wait`]) and [`DmaEngine::send_msi`], then [`DmaEngine::remove`],
/// which restores what `init` changed (also run, best effort, on drop).
pub struct DmaEngine<'a> {
    dev: &'a dyn Device,
    ops: Box<dyn DmaDriver>,
    timeout: Duration,
    ev: Option<IrqEvent>,
    saved_command: Option<u16>,
    in_flight: Option<(Transfer, Instant)>,
}

impl std::fmt::Debug for DmaEngine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaEngine")
            .field("driver", &self.name())
            .field("device", &self.dev.name())
            .field("limits", &self.limits())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<'a> DmaEngine<'a> {
    /// Wraps a driver for `dev` (usually from [`super::driver_for`]).
    pub fn new(dev: &'a dyn Device, ops: Box<dyn DmaDriver>) -> DmaEngine<'a> {
        DmaEngine {
            dev,
            ops,
            timeout: DEFAULT_TIMEOUT,
            ev: None,
            saved_command: None,
            in_flight: None,
        }
    }

    /// Finds the driver for `dev` in the registry; [`DriverError::NoDriver`] when none
    /// matches.
    pub fn probe(dev: &'a dyn Device) -> Result<DmaEngine<'a>> {
        match super::driver_for(dev) {
            Some(ops) => Ok(DmaEngine::new(dev, ops)),
            None => Err(DriverError::NoDriver {
                device: dev.name().to_string(),
                pci_id: dev.info().identity.pci_id.clone(),
                known: super::known_devices(),
            }),
        }
    }

    /// The driver's name.
    pub fn name(&self) -> &'static str {
        self.ops.name()
    }

    /// What the device's engine can reach.
    pub fn limits(&self) -> DmaLimits {
        self.ops.limits()
    }

    /// The device.
    pub fn device(&self) -> &'a dyn Device {
        self.dev
    }

    /// Sets how long each interrupt is waited for.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Whether [`DmaEngine::init`] ran (and [`DmaEngine::remove`] did not since).
    pub fn is_initialized(&self) -> bool {
        self.ev.is_some()
    }

    fn sequence(&self, what: &'static str) -> DriverError {
        DriverError::Sequence {
            device: self.dev.name().to_string(),
            driver: self.ops.name(),
            what,
        }
    }

    fn invalid(&self, reason: String) -> DriverError {
        DriverError::InvalidArgument {
            device: self.dev.name().to_string(),
            reason,
        }
    }

    /// Enables bus mastering and memory decoding, connects an eventfd to the driver's
    /// interrupt and runs the driver's init. On failure, what was done is undone.
    pub fn init(&mut self) -> Result<()> {
        if self.is_initialized() {
            return Err(self.sequence("init() ran already"));
        }
        let r = self.try_init();
        if r.is_err() {
            // The set-up error is the one to report; undoing the part that was done is best
            // effort (its own failure would hide the cause).
            let _ = self.teardown();
        }
        r
    }

    fn try_init(&mut self) -> Result<()> {
        let d = self.dev;
        let cmd = d.read_width(PCI_CONFIG_INDEX, PCI_COMMAND, 2)? as u16;
        self.saved_command = Some(cmd);
        d.write_width(
            PCI_CONFIG_INDEX,
            PCI_COMMAND,
            2,
            (cmd | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY) as u64,
        )?;
        let ev = IrqEvent::new().map_err(|source| DriverError::Event {
            device: d.name().to_string(),
            what: "create an eventfd",
            source,
        })?;
        let (index, vector) = self.ops.interrupt();
        d.set_irq_eventfds(index, vector, &[ev.raw_fd()])?;
        self.ev = Some(ev);
        self.ops.init(d)?;
        self.drain()?;
        Ok(())
    }

    /// Runs the driver's remove, disconnects the eventfd and restores PCI_COMMAND. Every
    /// step runs even when an earlier one fails; the first error is returned.
    pub fn remove(&mut self) -> Result<()> {
        self.teardown()
    }

    /// Driver remove (when its init was reached: drivers tolerate a partial init), eventfd
    /// off, PCI_COMMAND restored.
    fn teardown(&mut self) -> Result<()> {
        self.in_flight = None;
        let d = self.dev;
        let r0 = if self.ev.is_some() {
            self.ops.remove(d)
        } else {
            Ok(())
        };
        let r1 = match self.ev.take() {
            Some(_) => {
                let (index, _) = self.ops.interrupt();
                d.set_irq_eventfds(index, 0, &[]).map_err(DriverError::from)
            }
            None => Ok(()),
        };
        let r2 = match self.saved_command.take() {
            Some(c) => d
                .write_width(PCI_CONFIG_INDEX, PCI_COMMAND, 2, c as u64)
                .map_err(DriverError::from),
            None => Ok(()),
        };
        r0.and(r1).and(r2)
    }

    fn event(&self) -> Result<&IrqEvent> {
        self.ev
            .as_ref()
            .ok_or_else(|| self.sequence("init() must run before DMA"))
    }

    fn drain(&self) -> Result<()> {
        self.event()?
            .drain()
            .map(|_| ())
            .map_err(|source| DriverError::Event {
                device: self.dev.name().to_string(),
                what: "drain the eventfd",
                source,
            })
    }

    /// Waits for the interrupt; `true` when it arrived within the timeout.
    fn wait(&self, what: &'static str) -> Result<bool> {
        let got = self
            .event()?
            .wait(self.timeout)
            .map_err(|source| DriverError::Event {
                device: self.dev.name().to_string(),
                what,
                source,
            })?;
        Ok(got.is_some())
    }

    /// Checks `t` against the driver's limits and starts it; the device signals when done.
    pub fn memcpy_start(&mut self, t: Transfer) -> Result<()> {
        self.event()?;
        if self.in_flight.is_some() {
            return Err(self.sequence("a transfer is already in flight"));
        }
        let lim = self.ops.limits();
        let name = self.ops.name();
        if t.len == 0 || t.len > lim.max_transfer {
            return Err(self.invalid(format!(
                "{name} transfers are 1..={} bytes, not {}",
                lim.max_transfer, t.len
            )));
        }
        if !lim.fits_device(t.dev_offset, t.len as u64) {
            return Err(self.invalid(format!(
                "{name}: {} byte(s) at device offset {:#x} are outside its {} byte(s) of device memory",
                t.len, t.dev_offset, lim.device_memory
            )));
        }
        if !lim.fits_dma_mask(t.iova, t.len as u64) {
            return Err(self.invalid(format!(
                "{name}: IOVA {:#x}+{:#x} is beyond the device's DMA limit {:#x}",
                t.iova, t.len, lim.dma_limit
            )));
        }
        self.drain()?;
        let started = Instant::now();
        self.ops.memcpy_start(self.dev, &t)?;
        self.in_flight = Some((t, started));
        Ok(())
    }

    /// Waits for the transfer started by [`DmaEngine::memcpy_start`] and checks how it ended;
    /// returns the time from its start to the completion interrupt.
    pub fn memcpy_wait(&mut self) -> Result<Duration> {
        let Some((t, started)) = self.in_flight.take() else {
            return Err(self.sequence("memcpy_wait() without a transfer in flight"));
        };
        let arrived = self.wait("wait for the DMA interrupt")?;
        let took = started.elapsed();
        let c = self.ops.memcpy_wait(self.dev, &t)?;
        let what = || {
            let (from, into) = match t.dir {
                Direction::ToDevice => (
                    format!("IOVA {:#x}", t.iova),
                    format!("device memory at {:#x}", t.dev_offset),
                ),
                Direction::FromDevice => (
                    format!("device memory at {:#x}", t.dev_offset),
                    format!("IOVA {:#x}", t.iova),
                ),
            };
            format!("DMA of {} byte(s) from {from} into {into}", t.len)
        };
        self.check(c, arrived, "DMA completion", what)?;
        Ok(took)
    }

    fn check(
        &self,
        c: Completion,
        arrived: bool,
        irq: &'static str,
        what: impl Fn() -> String,
    ) -> Result<()> {
        let device = self.dev.name().to_string();
        match c.outcome {
            Outcome::Failed { errno } => Err(DriverError::Device {
                device,
                what: format!("{} failed", what()),
                status: c.status,
                source: if errno != 0 {
                    std::io::Error::from_raw_os_error(errno)
                } else {
                    std::io::Error::other("the device reported an error")
                },
            }),
            _ if !arrived => Err(DriverError::Timeout {
                device,
                what: irq,
                timeout: self.timeout,
                status: c.status,
            }),
            Outcome::Done => Ok(()),
            Outcome::NotDone => Err(DriverError::Device {
                device,
                what: format!(
                    "{}: the {irq} interrupt arrived but the status does not show it done",
                    what()
                ),
                status: c.status,
                source: std::io::Error::from(std::io::ErrorKind::InvalidData),
            }),
        }
    }

    /// Copies by DMA and waits for it: [`DmaEngine::memcpy_start`] +
    /// [`DmaEngine::memcpy_wait`].
    pub fn memcpy(&mut self, t: Transfer) -> Result<Duration> {
        self.memcpy_start(t)?;
        self.memcpy_wait()
    }

    /// DMA `len` bytes from IOVA `iova` into device memory at `dev_offset`.
    pub fn to_device(&mut self, iova: u64, dev_offset: u64, len: usize) -> Result<Duration> {
        self.memcpy(Transfer {
            dir: Direction::ToDevice,
            iova,
            dev_offset,
            len,
        })
    }

    /// DMA `len` bytes of device memory at `dev_offset` to IOVA `iova`.
    pub fn from_device(&mut self, iova: u64, dev_offset: u64, len: usize) -> Result<Duration> {
        self.memcpy(Transfer {
            dir: Direction::FromDevice,
            iova,
            dev_offset,
            len,
        })
    }

    /// Makes the device raise its interrupt and waits for it on the eventfd; returns the
    /// latency from the request to the delivery.
    pub fn send_msi(&mut self) -> Result<Duration> {
        if self.in_flight.is_some() {
            return Err(self.sequence("a transfer is still in flight"));
        }
        self.drain()?;
        let t = Instant::now();
        self.ops.send_msi(self.dev)?;
        let arrived = self.wait("wait for the raised interrupt")?;
        let took = t.elapsed();
        let c = self.ops.msi_wait(self.dev)?;
        self.check(c, arrived, "raised", || "raising an interrupt".to_string())?;
        Ok(took)
    }
}

impl Drop for DmaEngine<'_> {
    fn drop(&mut self) {
        // Best effort: an explicit remove() reports its errors; on drop there is no caller
        // left to tell.
        let _ = self.teardown();
    }
}
