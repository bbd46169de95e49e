//! Opening the devices of a run: the simulator specs derived from the user's (`verify-seed`,
//! a separate arc device, parallel copies), or the kernel devices as given.

use super::config::{BenchConfig, Mode, SIM_ARC_STATE, SIM_DEFAULTS};
use super::error::{mig, BenchError};
use crate::device::{DeviceHandle, DeviceSpec};
use crate::migration::{driver_for, MigrationDriver};
use crate::sim::{SimDevice, SimParams};

/// Builds a simulator spec from the user's `sim:` parameters: `state` defaults to `state`,
/// `seed` to 1, and the given overrides replace whatever the user set.
pub fn sim_params(user: &str, state: u64, overrides: &[(&str, String)]) -> String {
    let mut kv: Vec<(String, String)> = user
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (s.to_string(), String::new()),
        })
        .collect();
    let mut set = |k: &str, v: String, force: bool| match kv.iter_mut().find(|(x, _)| x == k) {
        Some(e) if force => e.1 = v,
        Some(_) => {}
        None => kv.push((k.to_string(), v)),
    };
    set("state", size_param(state), false);
    set("seed", "1".into(), false);
    for (k, v) in overrides {
        set(k, v.clone(), true);
    }
    kv.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A size as the simulator parses it, short when it is a whole number of KiB/MiB/GiB.
pub(super) fn size_param(b: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if b >= 1 << shift && b % (1 << shift) == 0 {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

/// The `seed` of simulator parameters (1 when absent, as [`sim_params`] sets it).
pub(super) fn sim_seed(params: &str) -> u64 {
    params
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == "seed")
        .and_then(|(_, v)| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => v.parse().ok(),
            }
        })
        .unwrap_or(1)
}

/// Whether simulator parameters keep the state in memory (`backing=memory`), and so how many
/// bytes a device of `state` bytes holds.
pub(super) fn sim_memory(params: &str, state: u64) -> u64 {
    let memory = params
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, v)| k.trim() == "backing" && v.trim() == "memory");
    if memory {
        state
    } else {
        0
    }
}

/// Bytes of simulated state memory `dev` holds in this process (0 for kernel devices).
pub(super) fn memory_of(dev: &DeviceHandle) -> u64 {
    dev.as_any()
        .downcast_ref::<SimDevice>()
        .map_or(0, SimDevice::state_memory_bytes)
}

/// The devices of a run, by role.
pub(super) struct Devices {
    /// Saves and restores its own state (simulator: `verify-seed` = its seed).
    pub primary: DeviceHandle,
    /// Its spec as opened.
    pub primary_spec: String,
    /// Whether the primary checks every restored byte (the simulator with `verify-seed`).
    pub verified: bool,
    /// Live destination.
    pub live: Option<(DeviceHandle, String)>,
    /// Arc latencies.
    pub arcs: (DeviceHandle, String),
    /// Kernel devices for the parallel mode (the simulated ones are opened by the mode).
    pub parallel: Vec<DeviceHandle>,
    /// The simulator parameters more devices are made from (none for kernel devices).
    pub sim_base: Option<String>,
}

impl Devices {
    /// Simulated state memory the run's devices hold in this process.
    pub fn memory_bytes(&self) -> u64 {
        let mut m = memory_of(&self.primary);
        if let Some((d, _)) = &self.live {
            m += memory_of(d);
        }
        if !std::sync::Arc::ptr_eq(&self.arcs.0, &self.primary) {
            m += memory_of(&self.arcs.0);
        }
        m
    }

    /// Simulated state memory of the primary device (0: it copies nothing this process sees).
    pub fn primary_memory(&self) -> u64 {
        memory_of(&self.primary)
    }

    /// The primary device's simulator parameters, when it is simulated.
    pub fn primary_sim(&self) -> Option<&SimParams> {
        self.primary
            .as_any()
            .downcast_ref::<SimDevice>()
            .map(SimDevice::params)
    }
}

/// Opens the devices `cfg` needs; what cannot be measured with the devices given is noted
/// in `notes`.
pub(super) fn open(cfg: &BenchConfig, notes: &mut Vec<String>) -> Result<Devices, BenchError> {
    let open1 = |spec: &str| -> Result<DeviceHandle, BenchError> {
        let s: DeviceSpec = spec.parse()?;
        Ok(crate::open::open(&s, &cfg.open)?)
    };
    let first = cfg
        .devices
        .first()
        .cloned()
        .unwrap_or(DeviceSpec::Sim(String::new()));
    if let DeviceSpec::Sim(user) = &first {
        let mut base = sim_params(user, cfg.state, &[]);
        // A realistic device unless the user said otherwise.
        for (k, v) in SIM_DEFAULTS {
            if !base
                .split(',')
                .any(|kv| kv.split('=').next().map(str::trim) == Some(k))
            {
                base = format!("{base},{k}={v}");
            }
        }
        let seed = sim_seed(&base);
        let primary_spec = format!(
            "sim:{}",
            sim_params(&base, cfg.state, &[("verify-seed", seed.to_string())])
        );
        let live_spec = format!(
            "sim:{}",
            sim_params(
                &base,
                cfg.state,
                &[
                    ("seed", seed.wrapping_add(1).to_string()),
                    ("verify-seed", seed.to_string())
                ]
            )
        );
        let arcs_spec = format!(
            "sim:{}",
            sim_params(
                &base,
                cfg.state,
                &[
                    ("state", size_param(SIM_ARC_STATE)),
                    ("verify-seed", seed.to_string())
                ]
            )
        );
        let primary = open1(&primary_spec)?;
        let live = if cfg.has(Mode::Live) {
            Some((open1(&live_spec)?, live_spec))
        } else {
            None
        };
        let arcs = if cfg.has(Mode::Arcs) {
            (open1(&arcs_spec)?, arcs_spec)
        } else {
            (primary.clone(), primary_spec.clone())
        };
        return Ok(Devices {
            primary,
            primary_spec,
            verified: true,
            live,
            arcs,
            parallel: Vec::new(),
            sim_base: Some(base),
        });
    }
    // Kernel devices: used as they are, opened together (one IOMMU context).
    let handles = crate::open::open_all(&cfg.devices, &cfg.open)?;
    let names: Vec<String> = cfg.devices.iter().map(|d| d.to_string()).collect();
    let live = if handles.len() >= 2 {
        Some((handles[1].clone(), names[1].clone()))
    } else {
        if cfg.has(Mode::Live) {
            notes.push("live: needs two devices of the same type (SRC DST); one was given".into());
        }
        None
    };
    Ok(Devices {
        primary: handles[0].clone(),
        primary_spec: names[0].clone(),
        verified: false,
        live,
        arcs: (handles[0].clone(), names[0].clone()),
        parallel: handles,
        sim_base: None,
    })
}

/// A migration driver for `dev`.
pub(super) fn driver(dev: &DeviceHandle) -> Result<Box<dyn MigrationDriver>, BenchError> {
    driver_for(dev.clone()).map_err(mig(format!("{}: migration driver", dev.name())))
}
