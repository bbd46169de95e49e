//! The interrupt exercise: connect an eventfd to an IRQ vector, fire it from userspace
//! (loopback through `VFIO_IRQ_SET_ACTION_TRIGGER`) or wait for the device to raise it,
//! measure delivery latency, check mask/unmask, and disable the index again.
//!
//! In device mode, a device whose test driver ([`super::DmaDriver::can_raise`]) can make it
//! raise the vector through its own registers (vhgpu's MSI-X raise register) is made to;
//! otherwise the exercise waits for the device to raise it on its own.
//!
//! It needs only the [`Device`] trait and an eventfd, so it runs on every back end (the
//! simulator included). It lives on this floor rather than in `device/` because the eventfd
//! waiter ([`IrqEvent`]) belongs to the kernel back end, which `device/` must not import.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::{DriverError, Result};
use crate::device::{Device, DeviceError, IRQ_FLAG_AUTOMASKED, IRQ_FLAG_MASKABLE};
use crate::vfio::irq::IrqEvent;

/// How long a delivery that should not happen (while masked) or that may happen (a pending
/// interrupt delivered on unmask) is watched for, at most.
pub const MASK_WINDOW: Duration = Duration::from_millis(50);

/// What [`exercise_irq`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqExercise {
    /// IRQ index (0 INTX, 1 MSI, 2 MSIX, 3 ERR, 4 REQ for PCI).
    pub index: u32,
    /// Vector within the index.
    pub vector: u32,
    /// Fire the interrupt from userspace (loopback) instead of having the device raise it.
    pub trigger: bool,
    /// Interrupts to deliver.
    pub count: u32,
    /// How long each interrupt is waited for.
    pub timeout: Duration,
    /// Check mask/unmask after the deliveries (on a maskable index, when this process fires
    /// the interrupts: loopback, or a device its driver makes raise them).
    pub mask_check: bool,
}

impl IrqExercise {
    /// One loopback interrupt on vector 0 of `index`, 1 s timeout, with the mask check.
    pub fn loopback(index: u32) -> IrqExercise {
        IrqExercise {
            index,
            vector: 0,
            trigger: true,
            count: 1,
            timeout: Duration::from_secs(1),
            mask_check: true,
        }
    }
}

/// Who fires the interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum IrqMode {
    /// This process, through the kernel (`ACTION_TRIGGER`).
    Loopback,
    /// The device itself.
    Device,
}

impl IrqMode {
    /// `loopback` or `device`.
    pub fn as_str(self) -> &'static str {
        match self {
            IrqMode::Loopback => "loopback",
            IrqMode::Device => "device",
        }
    }
}

impl std::fmt::Display for IrqMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Delivery latency over the delivered interrupts, in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IrqLatency {
    /// Fastest delivery.
    pub min_us: f64,
    /// Mean delivery.
    pub avg_us: f64,
    /// Slowest delivery.
    pub max_us: f64,
}

/// The mask/unmask check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MaskReport {
    /// `ok`, or the error of the mask call.
    pub mask: String,
    /// Whether a trigger while masked was delivered (it should not be); absent when the
    /// mask call failed.
    pub delivered_while_masked: Option<bool>,
    /// `ok`, or the error of the unmask call.
    pub unmask: String,
    /// Whether the interrupt fired while masked arrived after unmasking (INTx keeps it
    /// pending, so does vhgpu's MSI-X; others may drop it); absent when not checked.
    pub delivered_after_unmask: Option<bool>,
}

/// What [`exercise_irq`] saw (`irq --json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IrqReport {
    /// Device name.
    pub device: String,
    /// IRQ index.
    pub index: u32,
    /// Its name (`INTX`, `MSI`...).
    pub name: String,
    /// Vector within the index.
    pub vector: u32,
    /// Who fired the interrupts.
    pub mode: IrqMode,
    /// In device mode: the test driver that made the device raise them (absent: the device
    /// raised them on its own, or loopback).
    pub raised_by: Option<&'static str>,
    /// Interrupts asked for.
    pub requested: u32,
    /// Interrupts that arrived (the exercise stops at the first that does not).
    pub delivered: u32,
    /// Delivery latency; absent when none arrived.
    pub latency: Option<IrqLatency>,
    /// The mask/unmask check; absent when not run.
    pub mask: Option<MaskReport>,
    /// Whether the index was disabled again afterwards (always true in a returned report).
    pub disabled: bool,
}

impl IrqReport {
    /// Whether every requested interrupt arrived.
    pub fn all_delivered(&self) -> bool {
        self.delivered == self.requested
    }
}

/// Finds an IRQ index by number or name (case-insensitive: `INTX`, `msi`); the error lists
/// the device's indexes.
pub fn irq_index(dev: &dyn Device, key: &str) -> std::result::Result<u32, DeviceError> {
    let irqs = &dev.info().irqs;
    let found = match key.parse::<u32>() {
        Ok(i) => irqs.iter().find(|q| q.index == i),
        Err(_) => irqs.iter().find(|q| q.name.eq_ignore_ascii_case(key)),
    };
    found.map(|q| q.index).ok_or_else(|| {
        let names: Vec<String> = irqs
            .iter()
            .map(|q| format!("{} ({}, {} vector(s))", q.index, q.name, q.count))
            .collect();
        DeviceError::NoSuch {
            device: dev.name().to_string(),
            what: format!("no IRQ index {key:?} (indexes: {})", names.join(", ")),
        }
    })
}

/// Runs the exercise: eventfd on the vector, `count` deliveries (triggered from here, or
/// waited for from the device), the mask check, and the index disabled again whatever
/// happened. An interrupt that does not arrive ends the deliveries early; that is a
/// result ([`IrqReport::all_delivered`]), not an error.
///
/// ```
/// use vfio_harness::OpenOptions;
/// use vfio_harness::drivers::irq::{exercise_irq, IrqExercise};
///
/// // The simulator's interrupts go through the same eventfd path as a kernel device's:
/// // three INTx loopback interrupts arrive, and the mask check holds one back while masked.
/// let dev = vfio_harness::open(&"sim".parse()?, &OpenOptions::default())?;
/// let x = IrqExercise {
///     count: 3,
///     ..IrqExercise::loopback(vfio_harness::sim::INTX)
/// };
/// let report = exercise_irq(dev.as_ref(), &x)?;
/// assert!(report.all_delivered() && report.disabled);
/// assert_eq!(report.mask.and_then(|m| m.delivered_while_masked), Some(false));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn exercise_irq(dev: &dyn Device, x: &IrqExercise) -> Result<IrqReport> {
    let ev = IrqEvent::new().map_err(|source| DriverError::Event {
        device: dev.name().to_string(),
        what: "create an eventfd",
        source,
    })?;
    let res = deliver(dev, x, &ev);
    // Always disable the index again, also after a failure.
    let dis = dev.set_irq_eventfds(x.index, 0, &[]);
    let mut out = res?;
    dis?;
    out.disabled = true;
    Ok(out)
}

/// Who makes the interrupt happen.
enum Firing {
    /// `VFIO_IRQ_SET_ACTION_TRIGGER` from this process.
    Loopback,
    /// The device, told to by its test driver.
    Driver(Box<dyn super::DmaDriver>),
    /// The device on its own: nothing to do but wait.
    Passive,
}

impl Firing {
    fn choose(dev: &dyn Device, x: &IrqExercise) -> Firing {
        if x.trigger {
            return Firing::Loopback;
        }
        match super::driver_for(dev) {
            Some(d) if d.can_raise(x.index, x.vector) => Firing::Driver(d),
            _ => Firing::Passive,
        }
    }

    fn fire(&mut self, dev: &dyn Device, index: u32, vector: u32) -> Result<()> {
        match self {
            Firing::Loopback => Ok(dev.trigger_irq(index, vector)?),
            Firing::Driver(d) => d.raise_irq(dev, index, vector),
            Firing::Passive => Ok(()),
        }
    }
}

fn deliver(dev: &dyn Device, x: &IrqExercise, ev: &IrqEvent) -> Result<IrqReport> {
    let info = dev
        .info()
        .irq(x.index)
        .cloned()
        .ok_or_else(|| DeviceError::NoSuch {
            device: dev.name().to_string(),
            what: format!("IRQ index {}", x.index),
        })?;
    let ev_err = |source| DriverError::Event {
        device: dev.name().to_string(),
        what: "wait for the interrupt",
        source,
    };
    let wait = |t: Duration| ev.wait(t).map(|g| g.is_some()).map_err(ev_err);
    let mut firing = Firing::choose(dev, x);
    dev.set_irq_eventfds(x.index, x.vector, &[ev.raw_fd()])?;
    ev.drain().map_err(ev_err)?;
    let mut lat = Vec::new();
    for _ in 0..x.count {
        let t = Instant::now();
        firing.fire(dev, x.index, x.vector)?;
        if !wait(x.timeout)? {
            break;
        }
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        // Level-triggered (INTx) interrupts are masked on delivery; unmask as a VMM does at
        // EOI, or the next one never arrives.
        if info.flags & IRQ_FLAG_AUTOMASKED != 0 {
            dev.mask_irq(x.index, x.vector, false)?;
        }
    }
    let latency = (!lat.is_empty()).then(|| IrqLatency {
        min_us: lat.iter().cloned().fold(f64::INFINITY, f64::min),
        max_us: lat.iter().cloned().fold(0.0, f64::max),
        avg_us: lat.iter().sum::<f64>() / lat.len() as f64,
    });
    let fires = !matches!(firing, Firing::Passive);
    let mask = if fires && x.mask_check && info.flags & IRQ_FLAG_MASKABLE != 0 {
        let window = MASK_WINDOW.min(x.timeout);
        let m = dev.mask_irq(x.index, x.vector, true);
        let mut while_masked = None;
        let mut after = None;
        if m.is_ok() {
            firing.fire(dev, x.index, x.vector)?;
            // Observation window for a delivery that should not happen while masked.
            while_masked = Some(wait(window)?);
        }
        let u = dev.mask_irq(x.index, x.vector, false);
        if u.is_ok() && while_masked == Some(false) {
            // A masked trigger may be left pending and delivered on unmask (INTx), or dropped.
            after = Some(wait(window)?);
        }
        Some(MaskReport {
            mask: status(&m),
            delivered_while_masked: while_masked,
            unmask: status(&u),
            delivered_after_unmask: after,
        })
    } else {
        None
    };
    Ok(IrqReport {
        device: dev.name().to_string(),
        index: x.index,
        name: info.name,
        vector: x.vector,
        mode: if x.trigger {
            IrqMode::Loopback
        } else {
            IrqMode::Device
        },
        raised_by: match &firing {
            Firing::Driver(d) => Some(d.name()),
            _ => None,
        },
        requested: x.count,
        delivered: lat.len() as u32,
        latency,
        mask,
        disabled: false,
    })
}

fn status(r: &crate::device::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
    }
}
