//! `vfio-harness restore DEVICE -i FILE`: load a stream file into a device.
//!
//! The file's header must match the device (device_api, mdev type, PCI IDs, protocol); each
//! chunk is verified before it reaches the device; on any error the device is reset to
//! RUNNING and the command exits non-zero.
//!
//! JSON output (`--json`): the engine's `RestoreReport` — `device`, `file`, `protocol`,
//! `source` (the stream header), `bytes`, `stream_bytes`, `chunks`, `seconds`,
//! `commit_seconds`, `throughput_bytes_per_s`.

use std::path::PathBuf;
use std::process::ExitCode;

use vfio_harness::migration::engine::{self, Options};
use vfio_harness::units::{format_bytes, format_rate, format_seconds};
use vfio_harness::DeviceSpec;

use super::transfer::{finish_error, install_interrupt_handler, open_driver, print_json, Bar};
use super::Global;

/// Arguments of `restore`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device to load the state into.
    pub device: DeviceSpec,
    /// Stream file written by `save`.
    #[arg(short = 'i', long = "input")]
    pub input: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `restore`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let cancel = install_interrupt_handler();
    let mut drv = open_driver(&args.device, global)?;
    let bar = Bar::new(args.json);
    let opts = Options {
        cancel: Some(cancel),
        progress: bar.callback(),
        ..Options::default()
    };
    let result = engine::restore_from_file(drv.as_mut(), &args.input, &opts);
    bar.finish();
    let r = match result {
        Ok(r) => r,
        Err(e) => return finish_error(e),
    };
    if args.json {
        print_json(&r)?;
    } else {
        println!(
            "restored {} into {} from {} in {} ({})",
            format_bytes(r.bytes),
            r.device,
            args.input.display(),
            format_seconds(r.seconds),
            format_rate(r.throughput_bytes_per_s)
        );
        println!(
            "  saved from {} ({}{}, protocol {}) on kernel {} by vfio-harness {}; commit took {}",
            r.source.device,
            r.source.device_api,
            r.source
                .mdev_type
                .as_deref()
                .map(|t| format!(", type {t}"))
                .unwrap_or_default(),
            r.source.protocol,
            r.source.kernel_release,
            r.source.harness_version,
            format_seconds(r.commit_seconds)
        );
    }
    Ok(ExitCode::SUCCESS)
}
