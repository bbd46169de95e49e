//! What the simulated device looks like (regions, interrupts, identity) and how it is built
//! from its parameters.

use super::content;
use super::gen::Gen;
use super::mem::AnonMem;
use super::pace::Pacer;
use super::params::Backing;
use super::{
    irq, pci, Clock, Inner, SimDevice, SimParams, SimProtocol, SystemClock, V1Chunk, BAR0,
    BAR0_SIZE, BAR2, CONFIG, DEVICE_ID, MIGRATION_V1, V1_DATA_OFFSET, VENDOR_ID,
};
use crate::device::uapi;
use crate::device::{
    DeviceIdentity, DeviceInfo, MigState, RegionCap, RegionInfo, Result, SparseArea,
    REGION_FLAG_CAPS, REGION_FLAG_MMAP, REGION_FLAG_READ, REGION_FLAG_WRITE,
};
use std::sync::{Arc, Mutex};

const CONFIG_SIZE: u64 = 256;
const REGION_NAMES: [&str; 9] = [
    "BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "CONFIG", "VGA",
];

impl SimDevice {
    /// Opens a simulated device on the system clock.
    pub fn open(params: &str) -> Result<SimDevice> {
        SimDevice::with_clock(SimParams::parse(params)?, Arc::new(SystemClock::new()))
    }

    /// Opens a simulated device with explicit parameters and clock.
    pub fn with_clock(params: SimParams, clock: Arc<dyn Clock>) -> Result<SimDevice> {
        let name = params.name.clone();
        let bar2 = AnonMem::new(&name, params.bar2 as usize)?;
        let v1_data = match params.protocol {
            SimProtocol::V1 => Some(AnonMem::new(&name, params.v1_data as usize)?),
            SimProtocol::V2 => None,
        };
        let info = Self::describe(&params);
        let state_mem = match params.backing {
            Backing::Memory => Some(content::create(
                &name,
                params.state,
                &Gen::with_zero_pages(params.seed, params.zero_pages),
            )?),
            Backing::Generated => None,
        };
        let pacer = Pacer::new(params.rate, params.latency);
        let inner = Inner {
            state: MigState::Running,
            seed: params.seed,
            zero: params.zero_pages,
            save: None,
            resume: None,
            fails_left: params.fail_count,
            last_refusal: None,
            bar0: [0; BAR0_SIZE as usize],
            irq_count: 0,
            config: pci::Config::new(params.bar2),
            irqs: irq::Irqs::new(),
            v1: V1Chunk::default(),
            v1_scratch: Vec::new(),
            set_from: None,
            stale_save: None,
        };
        Ok(SimDevice {
            params,
            info,
            clock,
            bar2,
            v1_data,
            state_mem,
            pacer,
            inner: Mutex::new(inner),
        })
    }

    fn describe(p: &SimParams) -> DeviceInfo {
        let rw = REGION_FLAG_READ | REGION_FLAG_WRITE;
        let mut regions: Vec<RegionInfo> = REGION_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| RegionInfo {
                index: i as u32,
                name: n.to_string(),
                size: 0,
                offset: (i as u64) << 40,
                flags: 0,
                caps: Vec::new(),
            })
            .collect();
        regions[BAR0 as usize].size = BAR0_SIZE;
        regions[BAR0 as usize].flags = rw;
        regions[BAR2 as usize].size = p.bar2;
        regions[BAR2 as usize].flags = rw | REGION_FLAG_MMAP;
        regions[CONFIG as usize].size = CONFIG_SIZE;
        regions[CONFIG as usize].flags = rw;
        if p.protocol == SimProtocol::V1 {
            let mut caps = vec![RegionCap::Type {
                type_: uapi::REGION_TYPE_MIGRATION_V1,
                subtype: uapi::REGION_SUBTYPE_MIGRATION_V1,
            }];
            let mut flags = rw | REGION_FLAG_CAPS;
            if p.v1_mmap {
                flags |= REGION_FLAG_MMAP;
                caps.insert(
                    0,
                    RegionCap::SparseMmap {
                        areas: vec![SparseArea {
                            offset: V1_DATA_OFFSET,
                            size: p.v1_data,
                        }],
                    },
                );
            }
            regions.push(RegionInfo {
                index: MIGRATION_V1,
                name: "migration-v1".into(),
                size: V1_DATA_OFFSET + p.v1_data,
                offset: (MIGRATION_V1 as u64) << 40,
                flags,
                caps,
            });
        }
        let mut flags = uapi::DEVICE_FLAGS_PCI;
        if p.reset {
            flags |= uapi::DEVICE_FLAGS_RESET;
        }
        DeviceInfo {
            name: p.name.clone(),
            backend: "sim".into(),
            flags,
            regions,
            irqs: irq::infos(),
            identity: DeviceIdentity {
                device_api: "vfio-pci".into(),
                mdev_type: p.mdev_type.clone(),
                parent: p.mdev_type.as_ref().map(|_| "sim".to_string()),
                pci_id: Some(format!("{VENDOR_ID:04x}:{DEVICE_ID:04x}")),
                pci_subsystem: Some(format!(
                    "{:04x}:{:04x}",
                    pci::SUBSYS_VENDOR_ID,
                    pci::SUBSYS_ID
                )),
                driver: Some("sim".into()),
                sysfs_path: None,
            },
        }
    }

    /// The parameters the device was opened with.
    pub fn params(&self) -> &SimParams {
        &self.params
    }

    /// The seed the device's current state derives from (its `seed=`, or the seed of the
    /// last successfully restored state).
    pub fn state_seed(&self) -> u64 {
        self.lock().seed
    }

    /// Why the device last refused a restored state, if it did.
    pub fn last_refusal(&self) -> Option<String> {
        self.lock().last_refusal.clone()
    }

    /// Bytes of state memory this device holds in the process (`backing=memory`: the state
    /// size; 0 for a generated state). A real device holds them in its own memory, so a
    /// measurement of the harness's memory leaves them out.
    pub fn state_memory_bytes(&self) -> u64 {
        self.state_mem.as_ref().map_or(0, |_| self.params.state)
    }

    /// Checks that the device holds the state its seed (and zero-page fraction) produce:
    /// with `backing=memory`, every byte of the state memory is compared (restored bytes are
    /// only copied in while RESUMING, as a driver does); a generated state was checked byte by
    /// byte when it was restored, so there is nothing left to compare. When `verify-seed` is
    /// set, the seed must be that one too. `Err` says where the content first differs.
    pub fn verify_state(&self) -> std::result::Result<(), String> {
        let g = self.lock();
        if let Some(v) = self.params.verify_seed {
            if g.seed != v {
                return Err(format!(
                    "the device holds seed {}'s state, not seed {v}'s",
                    g.seed
                ));
            }
        }
        if let Some(m) = &self.state_mem {
            let gen = Gen::with_zero_pages(g.seed, g.zero);
            if let Some(bad) = content::check(m, self.params.state, &gen) {
                return Err(format!(
                    "state byte {bad:#x} differs from what seed {} produces",
                    g.seed
                ));
            }
        }
        Ok(())
    }
}
