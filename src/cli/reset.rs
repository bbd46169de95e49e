//! `vfio-harness reset`: `VFIO_DEVICE_RESET`, with the errno when it fails.

use std::process::ExitCode;
use std::time::Instant;

use super::Global;

/// Arguments of `reset`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device.
    pub device: vfio_harness::DeviceSpec,
    /// Print JSON (`{"device", "reset": true, "seconds"}`).
    #[arg(long)]
    pub json: bool,
}

/// Runs `reset`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::open(&args.device, &global.open_options())?;
    let t = Instant::now();
    dev.reset()?;
    let s = t.elapsed().as_secs_f64();
    if args.json {
        outln!(
            "{}",
            serde_json::json!({"device": dev.name(), "reset": true, "seconds": s})
        );
    } else {
        outln!(
            "{}: reset in {}",
            dev.name(),
            vfio_harness::units::format_seconds(s)
        );
    }
    Ok(ExitCode::SUCCESS)
}
