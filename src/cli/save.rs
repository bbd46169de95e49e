//! `vfio-harness save DEVICE -o FILE`: save a device's migration state to a stream file.
//!
//! JSON output (`--json`): the engine's `SaveReport` — `device`, `file`, `protocol`,
//! `bytes`, `precopy_bytes`, `stopcopy_bytes`, `stream_bytes`, `chunks`, `rounds`,
//! `converged`, `state_size_estimate`, `seconds`, `stop_copy_seconds`,
//! `throughput_bytes_per_s`, `stream_checksum` (XXH3-64 of the stream framing).

use std::path::PathBuf;
use std::process::ExitCode;

use vfio_harness::migration::engine::{self, Options, PrecopyPolicy};
use vfio_harness::units::{format_bytes, format_rate, format_seconds, ByteSize};
use vfio_harness::DeviceSpec;

use super::transfer::{
    finish_error, install_interrupt_handler, open_driver, precopy_summary, print_json, Bar,
};
use super::Global;

/// Arguments of `save`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device to save.
    pub device: DeviceSpec,
    /// Output file (written atomically: a failed save leaves no file).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Pre-copy rounds before stopping the device (only when it supports PRE_COPY).
    #[arg(long, default_value_t = 0)]
    pub precopy_rounds: u32,
    /// Stop pre-copying once at most this much is still pending.
    #[arg(long, default_value = "0")]
    pub dirty_threshold: ByteSize,
    /// Chunk / buffer size (up to 64M).
    #[arg(long, default_value = "1M")]
    pub buffer: ByteSize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `save`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let cancel = install_interrupt_handler();
    let mut drv = open_driver(&args.device, global)?;
    let bar = Bar::new(args.json);
    let opts = Options {
        buffer_size: usize::try_from(args.buffer.bytes()).unwrap_or(usize::MAX),
        precopy: PrecopyPolicy {
            max_rounds: args.precopy_rounds,
            dirty_threshold: args.dirty_threshold.bytes(),
        },
        cancel: Some(cancel),
        progress: bar.callback(),
        ..Options::default()
    };
    let result = engine::save_to_file(drv.as_mut(), &args.output, &opts);
    bar.finish();
    let r = match result {
        Ok(r) => r,
        Err(e) => return finish_error(e),
    };
    if args.json {
        print_json(&r)?;
    } else {
        println!(
            "saved {} from {} to {} in {} ({})",
            format_bytes(r.bytes),
            r.device,
            args.output.display(),
            format_seconds(r.seconds),
            format_rate(r.throughput_bytes_per_s)
        );
        let precopy = precopy_summary(r.rounds, r.precopy_bytes, None, r.converged);
        println!(
            "  protocol {}, {}stop-copy {} in {}, {} chunk(s), stream {} (checksum {:016x})",
            r.protocol,
            precopy,
            format_bytes(r.stopcopy_bytes),
            format_seconds(r.stop_copy_seconds),
            r.chunks,
            format_bytes(r.stream_bytes),
            r.stream_checksum
        );
    }
    Ok(ExitCode::SUCCESS)
}
