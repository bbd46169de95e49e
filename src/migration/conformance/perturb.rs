//! Perturbations: ways to put a device into a known state of our choosing, so that the suite
//! can tell a restore that really loads a state from one that does nothing (two devices, or
//! one device at two moments, must first be made to differ).
//!
//! A [`Perturb`] writes variant 0 or variant 1 of a device-specific change; the two variants
//! must leave the device's saved state different. Built in: mtty (UART FIFO and scratch
//! bytes through BAR0), vhgpu (a VRAM pattern through BAR2 and the scratch registers), and a
//! user-given region write ([`RegionWrite`], `--perturb REGION:OFFSET:HEXBYTES`; variant 1
//! writes the complement of the bytes). [`detect`] picks one for a device.

use crate::device::{Device, DeviceHandle, MigState, RegionAccess};
use crate::migration::{driver_for, MigrationError, Result};
use crate::sim::{SimDevice, SimParams, SystemClock};
use std::sync::Arc;

/// A way to change a device's state (while it is RUNNING).
pub trait Perturb: Send {
    /// A short description (`mtty UART FIFO and scratch`).
    fn describe(&self) -> String;
    /// Applies variant `variant` (0 or 1); the two variants must give different states.
    fn apply(&mut self, dev: &dyn Device, variant: u8) -> Result<()>;
}

fn dev_err(e: crate::device::DeviceError) -> MigrationError {
    MigrationError::Device(e)
}

/// mtty: the 16550 UART behind BAR0 (an I/O BAR of 8 registers). LCR=0x03 (DLAB clear),
/// FCR=0x07 (enable and clear the FIFO), four THR bytes into the loopback FIFO and the
/// scratch register; the FIFO and the scratch register are part of mtty's saved state
/// (`hw-notes/mtty-migration.md`).
#[derive(Debug, Default)]
pub struct Mtty;

impl Perturb for Mtty {
    fn describe(&self) -> String {
        "mtty UART FIFO and scratch register (BAR0)".into()
    }
    fn apply(&mut self, dev: &dyn Device, variant: u8) -> Result<()> {
        let base = 0x30u8.wrapping_add(variant.wrapping_mul(0x41));
        dev.write_width(0, 3, 1, 0x03).map_err(dev_err)?;
        dev.write_width(0, 2, 1, 0x07).map_err(dev_err)?;
        for i in 0..4u8 {
            dev.write_width(0, 0, 1, u64::from(base.wrapping_add(i)))
                .map_err(dev_err)?;
        }
        dev.write_width(0, 7, 1, u64::from(0x5a ^ variant.wrapping_mul(0xff)))
            .map_err(dev_err)?;
        Ok(())
    }
}

/// vhgpu: a 64 KiB pattern at the start of VRAM (BAR2, region 2) and the scratch registers
/// at BAR0 0x10..0x1c; touched VRAM pages and the registers are in vhgpu's stream
/// (`hw-notes/vhgpu.md`).
#[derive(Debug, Default)]
pub struct Vhgpu;

impl Perturb for Vhgpu {
    fn describe(&self) -> String {
        "vhgpu VRAM pattern (BAR2, 64 KiB) and scratch registers (BAR0)".into()
    }
    fn apply(&mut self, dev: &dyn Device, variant: u8) -> Result<()> {
        let mut page = vec![0u8; 64 << 10];
        for (i, b) in page.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(7) ^ variant.wrapping_mul(0xa5);
        }
        dev.write_region(2, 0, &page).map_err(dev_err)?;
        for (i, off) in [0x10u64, 0x14, 0x18, 0x1c].into_iter().enumerate() {
            let v = 0x1234_5678u64 ^ ((i as u64) << 28) ^ (u64::from(variant) * 0xffff);
            dev.write_width(0, off, 4, v & 0xffff_ffff)
                .map_err(dev_err)?;
        }
        Ok(())
    }
}

/// A user-given region write: `bytes` at `offset` of region `index` (variant 1 writes the
/// complement of each byte).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionWrite {
    /// Region index.
    pub index: u32,
    /// Offset inside the region.
    pub offset: u64,
    /// The bytes (variant 0).
    pub bytes: Vec<u8>,
}

impl std::str::FromStr for RegionWrite {
    type Err = String;
    /// Parses `REGION:OFFSET:HEXBYTES`: REGION is an index or `BARn`, OFFSET decimal or
    /// `0x` hex, HEXBYTES an even number of hex digits (`0xdeadbeef` or `deadbeef`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [region, offset, hex] = parts[..] else {
            return Err(format!("{s:?}: expected REGION:OFFSET:HEXBYTES"));
        };
        let r = region.trim().to_ascii_uppercase();
        let index = match r.strip_prefix("BAR") {
            Some(n) => n.parse::<u32>().ok().filter(|n| *n <= 5),
            None => r.parse::<u32>().ok(),
        }
        .ok_or_else(|| format!("{region:?}: not a region index or BAR0..BAR5"))?;
        let offset = parse_u64(offset).ok_or_else(|| format!("{offset:?}: not an offset"))?;
        let hex = hex.trim_start_matches("0x");
        if hex.is_empty() || hex.len() % 2 != 0 {
            return Err(format!(
                "{hex:?}: expected an even, non-zero number of hex digits"
            ));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<std::result::Result<Vec<u8>, _>>()
            .map_err(|e| format!("{hex:?}: {e}"))?;
        Ok(RegionWrite {
            index,
            offset,
            bytes,
        })
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Perturb for RegionWrite {
    fn describe(&self) -> String {
        format!(
            "region {} offset {:#x}: {} byte(s) given by the user",
            self.index,
            self.offset,
            self.bytes.len()
        )
    }
    fn apply(&mut self, dev: &dyn Device, variant: u8) -> Result<()> {
        let b: Vec<u8> = if variant == 0 {
            self.bytes.clone()
        } else {
            self.bytes.iter().map(|x| !x).collect()
        };
        dev.write_region(self.index, self.offset, &b)
            .map_err(dev_err)
    }
}

/// Several perturbations applied in turn (a user's region write on top of a built-in one).
pub struct Chain(pub Vec<Box<dyn Perturb>>);

impl Perturb for Chain {
    fn describe(&self) -> String {
        self.0
            .iter()
            .map(|p| p.describe())
            .collect::<Vec<_>>()
            .join(" + ")
    }
    fn apply(&mut self, dev: &dyn Device, variant: u8) -> Result<()> {
        self.0.iter_mut().try_for_each(|p| p.apply(dev, variant))
    }
}

/// The simulator: its state is its seed, which only a restore changes, so variant `v` loads
/// the stream of a sibling simulated device (same parameters, seed `seed + 0x1000 + v`)
/// through the device's own protocol. It relies on RESUMING working; a device that does not
/// load restored states is then not perturbed, and the resume checks warn instead of fail.
pub struct SimSeed {
    dev: DeviceHandle,
    params: SimParams,
}

impl Perturb for SimSeed {
    fn describe(&self) -> String {
        "simulator: load the state of a sibling with another seed".into()
    }
    fn apply(&mut self, _dev: &dyn Device, variant: u8) -> Result<()> {
        let mut p = self.params.clone();
        p.seed = p.seed.wrapping_add(0x1000 + u64::from(variant));
        p.verify_seed = None;
        p.violate = None;
        p.fail_at = None;
        p.name = format!("{}-perturb", p.name);
        let sib: DeviceHandle =
            Arc::new(SimDevice::with_clock(p, Arc::new(SystemClock::new())).map_err(dev_err)?);
        let mut src = driver_for(sib)?;
        let mut dst = driver_for(self.dev.clone())?;
        src.set_state(MigState::StopCopy)?;
        dst.set_state(MigState::Resuming)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let mut off = 0;
            while off < n {
                off += dst.write(&buf[off..n])?;
            }
        }
        dst.set_state(MigState::Running)?;
        src.set_state(MigState::Running)?;
        Ok(())
    }
}

/// The built-in perturbation for `dev`: mtty by its mdev type, vhgpu by its PCI id and BAR0
/// ID register, the simulator by loading a sibling's seed ([`SimSeed`]). `None` for other
/// devices (pass a [`RegionWrite`]).
pub fn detect(handle: &DeviceHandle) -> Option<Box<dyn Perturb>> {
    let dev = handle.as_ref();
    if let Some(sim) = dev.as_any().downcast_ref::<SimDevice>() {
        return Some(Box::new(SimSeed {
            dev: handle.clone(),
            params: sim.params().clone(),
        }));
    }
    let id = &dev.info().identity;
    if id
        .mdev_type
        .as_deref()
        .is_some_and(|t| t.starts_with("mtty"))
    {
        return Some(Box::new(Mtty));
    }
    if id.pci_id.as_deref() == Some("1234:7668")
        && dev.read_width(0, 0, 4).ok() == Some(0x5648_4731)
        && dev
            .info()
            .regions
            .iter()
            .any(|r| r.index == 2 && r.size >= 64 << 10)
    {
        return Some(Box::new(Vhgpu));
    }
    None
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|p| p.describe()))
            .finish()
    }
}

impl std::fmt::Debug for SimSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSeed")
            .field("device", &self.dev.name())
            .field("params", &self.params)
            .finish()
    }
}
