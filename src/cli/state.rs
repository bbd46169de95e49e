//! `vfio-harness state`: read the migration v2 state, or walk it through a list of target
//! states arc by arc (one `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` SET each), for bring-up.
//!
//! The device fd (and with it the migration session) closes when the command exits; the
//! kernel drivers return the device to RUNNING on close. If an arc fails, the command puts
//! the device back to RUNNING by the library's recovery rules
//! (`vfio_harness::migration::recovery`: a reset out of RESUMING or ERROR, a transition
//! otherwise) before reporting.

use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;

use vfio_harness::device::MigState;
use vfio_harness::migration::recovery;
use vfio_harness::migration::v2::V2Driver;
use vfio_harness::units::format_seconds;

use super::Global;

/// Arguments of `state`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device.
    pub device: vfio_harness::DeviceSpec,
    /// States to enter, in order (STOP, STOP_COPY, RUNNING_P2P, PRE_COPY, RESUMING, ...).
    pub targets: Vec<MigState>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Step {
    from: MigState,
    to: MigState,
    ok: bool,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Option<i32>,
    /// State read back after the arc.
    now: Option<MigState>,
}

#[derive(Serialize)]
struct Out {
    device: String,
    flags: Vec<String>,
    initial: MigState,
    steps: Vec<Step>,
    #[serde(rename = "final")]
    final_state: Option<MigState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery: Option<String>,
}

/// Runs `state`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::open(&args.device, &global.open_options())?;
    let d = dev.as_ref();
    let flags = d.migration_flags()?.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: the device has no migration v2 support (VFIO_DEVICE_FEATURE_MIGRATION)",
            d.name()
        )
    })?;
    let initial = d.mig_state()?;
    let mut steps = Vec::new();
    let mut cur = initial;
    let mut failed = false;
    for &to in &args.targets {
        let t = Instant::now();
        let r = d.set_mig_state(to);
        let seconds = t.elapsed().as_secs_f64();
        let now = d.mig_state().ok();
        match r {
            Ok(()) => {
                steps.push(Step {
                    from: cur,
                    to,
                    ok: true,
                    seconds,
                    error: None,
                    errno: None,
                    now,
                });
                cur = now.unwrap_or(to);
            }
            Err(e) => {
                steps.push(Step {
                    from: cur,
                    to,
                    ok: false,
                    seconds,
                    errno: e.errno(),
                    error: Some(e.to_string()),
                    now,
                });
                failed = true;
                break;
            }
        }
    }
    let recovery = failed.then(|| {
        let mut drv = V2Driver::new(dev.clone(), flags);
        recovery::recover(&mut drv).to_string()
    });
    let out = Out {
        device: d.name().to_string(),
        flags: flags.names(),
        initial,
        steps,
        final_state: d.mig_state().ok(),
        recovery,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("{}: migration v2 flags {flags}", out.device);
        outln!("state {}", out.initial);
        for s in &out.steps {
            match &s.error {
                None => outln!(
                    "  {} -> {}: ok in {} (now {})",
                    s.from,
                    s.to,
                    format_seconds(s.seconds),
                    s.now.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
                ),
                Some(e) => outln!("  {} -> {}: FAILED: {e}", s.from, s.to),
            }
        }
        if let Some(r) = &out.recovery {
            outln!("recovery: {r}");
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
