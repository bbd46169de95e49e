//! Opening the devices of a run: the simulator specs derived from the user's (`verify-seed`,
//! a separate arc device, parallel copies), or the kernel devices as given.

use super::config::{BenchConfig, Mode, SIM_ARC_STATE};
use super::error::{mig, BenchError};
use crate::device::{DeviceHandle, DeviceSpec};
use crate::migration::{driver_for, MigrationDriver};

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
fn size_param(b: u64) -> String {
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
    /// Parallel devices (first one measured alone too).
    pub parallel: Vec<DeviceHandle>,
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
        let base = sim_params(user, cfg.state, &[]);
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
        let mut parallel = Vec::new();
        if cfg.has(Mode::Parallel) {
            for i in 0..cfg.parallel_devices.max(1) as u64 {
                let p = sim_params(
                    &base,
                    cfg.state,
                    &[
                        ("seed", seed.wrapping_add(10 + i).to_string()),
                        ("name", format!("sim-parallel-{i}")),
                    ],
                );
                parallel.push(open1(&format!("sim:{p}"))?);
            }
        }
        return Ok(Devices {
            primary,
            primary_spec,
            verified: true,
            live,
            arcs,
            parallel,
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
    let parallel: Vec<DeviceHandle> = handles
        .iter()
        .take(cfg.parallel_devices.max(1))
        .cloned()
        .collect();
    if cfg.has(Mode::Parallel) && parallel.len() < 2 {
        notes.push("parallel: needs at least two devices; one was given".into());
    }
    Ok(Devices {
        primary: handles[0].clone(),
        primary_spec: names[0].clone(),
        verified: false,
        live,
        arcs: (handles[0].clone(), names[0].clone()),
        parallel,
    })
}

/// A migration driver for `dev`.
pub(super) fn driver(dev: &DeviceHandle) -> Result<Box<dyn MigrationDriver>, BenchError> {
    driver_for(dev.clone()).map_err(mig(format!("{}: migration driver", dev.name())))
}
