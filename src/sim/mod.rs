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
//! By default the migration state is never stored: its bytes are a function of
//! `(seed, zero pages, offset)` (see `gen.rs`), generated into the reader's buffer and checked
//! on restore, so a 4 GiB state costs no memory and saves faster than memcpy. With
//! `backing=memory` the state is held in real memory and copied out and in, as a driver copies
//! between its device memory and the caller (`content.rs`); `rate=` and `latency=` pace the
//! data stream like a device with a bandwidth and a per-call cost (`pace.rs`), and
//! `zero-pages=` makes a fraction of the state's pages zeros. The stream carries the device's own framing
//! (`stream.rs`), so a foreign, truncated or corrupted stream is refused when RESUMING ends,
//! as a real driver refuses bad data. See [`SimParams`] for every parameter.
//!
//! The device is split by concern: its layout and construction (`layout.rs`), the device-fd
//! contract for regions, interrupts and reset (`device.rs`), the migration transitions shared
//! by both protocols (`transition.rs`), the v2 feature calls (`v2.rs`) and the v1 migration
//! region (`v1.rs`).

mod clock;
mod content;
mod device;
mod gen;
mod irq;
mod layout;
mod mem;
mod pace;
mod params;
mod pci;
mod stream;
#[cfg(test)]
mod tests;
mod transition;
mod v1;
mod v2;
#[cfg(test)]
mod violation_tests;

pub use clock::{Clock, ManualClock, SystemClock};
pub use irq::{ERR, INTX, MSI, MSIX, REQ};
pub(crate) use pace::Pacer;
pub use params::{
    zero_pages_fraction, zero_pages_of, Backing, FailMode, SimParams, SimProtocol, Violation,
    MAX_STATE,
};
pub use pci::{
    BAR0_SIZE, DEVICE_ID, ID_VALUE, REG_DOORBELL, REG_ID, REG_IRQ_COUNT, REG_SCRATCH, REG_SEED_HI,
    REG_SEED_LO, REG_STATE_SIZE_HI, REG_STATE_SIZE_LO, REG_VERSION, VENDOR_ID,
};

use crate::device::uapi;
use crate::device::{DeviceHandle, DeviceInfo, MigState, Result};
use mem::AnonMem;
use std::sync::{Arc, Mutex, MutexGuard};
use stream::{ResumeStream, SaveStream};
use v1::V1Chunk;

/// Region index of BAR0.
pub const BAR0: u32 = uapi::PCI_BAR0_INDEX;
/// Region index of BAR2.
pub const BAR2: u32 = uapi::PCI_BAR2_INDEX;
/// Region index of PCI config space (`VFIO_PCI_CONFIG_REGION_INDEX`).
pub const CONFIG: u32 = uapi::PCI_CONFIG_INDEX;
/// Region index of the v1 migration region (the first device-specific index).
pub const MIGRATION_V1: u32 = uapi::PCI_NUM_REGIONS;
/// Offset of the data section inside the v1 migration region.
pub const V1_DATA_OFFSET: u64 = 4096;

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

/// The device's mutable state, behind one lock.
struct Inner {
    state: MigState,
    seed: u64,
    /// Zero-page fraction of the current state (65536ths): the `zero-pages` parameter, or the
    /// restored stream's.
    zero: u32,
    save: Option<SaveStream>,
    resume: Option<ResumeStream>,
    fails_left: Option<u64>,
    last_refusal: Option<String>,
    bar0: [u8; BAR0_SIZE as usize],
    irq_count: u32,
    config: pci::Config,
    irqs: irq::Irqs,
    v1: V1Chunk,
    /// Where a v1 chunk is produced or consumed: the data section is also the user's
    /// mapping, so it is only ever copied into or out of (as device memory is), never
    /// borrowed as a slice that a user ignoring the protocol could race.
    v1_scratch: Vec<u8>,
    /// The state before the last successful v2 SET (violation `state-after-arc`).
    set_from: Option<MigState>,
    /// The last saving session's stream, kept by violation `new-data-fd`.
    stale_save: Option<SaveStream>,
}

/// The simulated device. Open it with [`open`] (or the crate's `open` with a `sim:` spec).
pub struct SimDevice {
    params: SimParams,
    info: DeviceInfo,
    clock: Arc<dyn Clock>,
    bar2: Arc<AnonMem>,
    v1_data: Option<Arc<AnonMem>>,
    /// The state memory (`backing=memory`).
    state_mem: Option<Arc<AnonMem>>,
    /// Bandwidth cap and per-call latency of the data stream.
    pacer: pace::Pacer,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SimDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDevice")
            .field("name", &self.name_str())
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl SimDevice {
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

    /// Whether violation `v` is on and applies (a v2 one on a v2 device).
    fn v2_violates(&self, v: Violation) -> bool {
        self.params.protocol == SimProtocol::V2 && self.params.violate == Some(v)
    }

    /// Whether violation `v` is on and applies (a v1 one on a v1 device).
    fn v1_violates(&self, v: Violation) -> bool {
        self.params.protocol == SimProtocol::V1 && self.params.violate == Some(v)
    }
}
