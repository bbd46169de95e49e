//! `vfio-harness restore DEVICE -i FILE`: load a stream file into a device.
//!
//! The file's header must match the device (device_api, mdev type, PCI IDs, protocol); each
//! chunk is verified before it reaches the device; on any error the device is reset to
//! RUNNING and the command exits non-zero.
//!
//! JSON output (`--json`): the engine's `RestoreReport` — `device`, `file`, `protocol`,
//! `source` (the stream header), `bytes`, `stream_bytes`, `chunks`, `seconds`,
//! `commit_seconds`, `throughput_bytes_per_s`, `pipe_capacity_bytes` (a pipe or FIFO
//! input's capacity after growing it to one buffer where the kernel allows; `null`
//! otherwise), `direct_io` (the regular file was read with `O_DIRECT`: the page cache held
//! less than half of it; see `--buffered`).

use std::path::PathBuf;
use std::process::ExitCode;

use vfio_harness::migration::engine::{self, Input, Options};
use vfio_harness::units::{format_bytes, format_rate, format_seconds};
use vfio_harness::DeviceSpec;

use super::output::escape;
use super::signals::install_interrupt_handler;
use super::transfer::{finish_error, open_driver, pipe_note, print_json, Bar, Polling, Threads};
use super::Global;

/// Arguments of `restore`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device to load the state into.
    pub device: DeviceSpec,
    /// Stream written by `save`: a file, `-` (stdin), a FIFO. Read once; a device that
    /// cannot be reset gets nothing before the whole stream verified.
    #[arg(short = 'i', long = "input")]
    pub input: PathBuf,
    /// Print one line per chunk on stderr (`progress PHASE BYTES`), for scripts.
    #[arg(long)]
    pub progress_lines: bool,
    #[command(flatten)]
    pub threads: Threads,
    #[command(flatten)]
    pub polling: Polling,
    /// Read a regular input file through the page cache even when the cache holds less
    /// than half of it (by default such a file is read from the disk with O_DIRECT:
    /// no copy through the cache, and the host's cached files are not pushed out).
    #[arg(long)]
    pub buffered: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `restore`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let token = install_interrupt_handler()?;
    let input = Input::open(&args.input, &token)?;
    let mut drv = open_driver(&args.device, global)?;
    let bar = Bar::new(args.json, args.progress_lines);
    let opts = args.polling.apply(args.threads.apply(Options {
        cancel: Some(token.flag()),
        progress: bar.callback(),
        direct_io: !args.buffered,
        ..Options::default()
    }));
    let result = engine::restore_from(drv.as_mut(), &input, &opts, &token);
    bar.finish();
    let r = match result {
        Ok(r) => r,
        Err(e) => return Err(finish_error(e, &mut [drv.as_mut()])),
    };
    if args.json {
        print_json(&r)?;
    } else {
        outln!(
            "restored {} into {} from {} in {} ({})",
            format_bytes(r.bytes),
            escape(&r.device),
            escape(&args.input.display().to_string()),
            format_seconds(r.seconds),
            format_rate(r.throughput_bytes_per_s)
        );
        outln!(
            "  saved from {} ({}{}, protocol {}) on kernel {} by vfio-harness {}; commit took {}",
            // Stream metadata is untrusted: no terminal escape sequence gets through.
            escape(&r.source.device),
            escape(&r.source.device_api),
            r.source
                .mdev_type
                .as_deref()
                .map(|t| format!(", type {}", escape(t)))
                .unwrap_or_default(),
            r.source.protocol,
            escape(&r.source.kernel_release),
            escape(&r.source.harness_version),
            format_seconds(r.commit_seconds)
        );
        outln!(
            "  {} of device state from {} of stream ({} chunk(s))",
            format_bytes(r.bytes),
            format_bytes(r.stream_bytes),
            r.chunks
        );
        if let Some(note) = pipe_note(r.pipe_capacity_bytes, opts.buffer_size as u64) {
            outln!("  {note}");
        }
        if r.direct_io {
            outln!("  read from the disk with O_DIRECT (the page cache held less than half of the file; --buffered reads through it)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
