//! `vfio-harness save DEVICE -o FILE`: save a device's migration state to a stream file.
//!
//! JSON output (`--json`): the engine's `SaveReport` — `device`, `file`, `protocol`,
//! `bytes`, `precopy_bytes`, `stopcopy_bytes`, `stream_bytes`, `chunks`, `rounds`,
//! `converged`, `precopy_end`, `predicted_downtime_seconds` (next to the measured
//! `stop_copy_seconds`), `state_size_estimate`, `seconds`, `stop_copy_seconds`,
//! `throughput_bytes_per_s`, `stream_checksum` (XXH3-64 of the stream framing), and
//! `compression` (`none`, `zero`, `lz4`, `auto`), `pipe_capacity_bytes` (a pipe or FIFO
//! output's capacity after growing it to one chunk where the kernel allows; `null`
//! otherwise), `direct_io` (the regular file was written with `O_DIRECT`: see `--buffered`),
//! `file_commit_seconds` (its `fsync` and rename after the stream, not in `seconds`).
//! `bytes` is the device state, `stream_bytes` what was written (on the wire).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use vfio_harness::migration::engine::{self, Options, Output, MAX_PRECOPY_ROUNDS};
use vfio_harness::migration::stream::Compression;
use vfio_harness::units::{format_bytes, format_rate, format_seconds};
use vfio_harness::DeviceSpec;

use super::output::escape;
use super::signals::install_interrupt_handler;
use super::transfer::{
    finish_error, open_driver, pipe_note, precopy_summary, predicted_suffix, print_json, Bar,
    CopyArgs, FileIo, Polling, Threads,
};
use super::Global;

/// Arguments of `save`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device to save.
    pub device: DeviceSpec,
    /// Output: a regular file is written atomically (a failed save leaves no file; the file
    /// is 0600, new or replaced: a replaced file's wider mode is not kept); `-`, a FIFO or a
    /// device is written directly. Checked before the device is touched.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Pre-copy rounds before stopping the device (only when it supports PRE_COPY; at most
    /// 100).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_PRECOPY_ROUNDS)))]
    pub precopy_rounds: u32,
    /// Pre-copy end, switchover, buffer size, progress lines.
    #[command(flatten)]
    pub copy: CopyArgs,
    /// How chunks are encoded: `none` (format version 1, what older builds read), `zero`
    /// (zero runs elided), `lz4` (zero runs elided, the rest LZ4-compressed when it shrinks),
    /// `auto` (as lz4, but only where it pays: incompressible data is left alone). `restore`
    /// needs no option.
    #[arg(long, default_value = "none", value_name = "none|zero|lz4|auto")]
    pub compress: Compression,
    #[command(flatten)]
    pub threads: Threads,
    #[command(flatten)]
    pub polling: Polling,
    #[command(flatten)]
    pub file_io: FileIo,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `save`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let token = install_interrupt_handler()?;
    // The target is checked (and a temporary file made) before the device is opened.
    let out = Output::open(&args.output, &token)?;
    if out.is_same_file(std::io::stdout().as_fd()) {
        // The stream is on stdout: the report (or error object) goes to stderr.
        super::output::reports_to_stderr();
    }
    let mut drv = open_driver(&args.device, global)?;
    let bar = Bar::new(args.json, args.copy.progress_lines);
    let opts = args
        .file_io
        .apply(args.polling.apply(args.threads.apply(Options {
            buffer_size: args.copy.buffer_size(),
            precopy: args.copy.precopy(args.precopy_rounds),
            cancel: Some(token.flag()),
            progress: bar.callback(),
            compression: args.compress,
            ..Options::default()
        })));
    let result = engine::save_to(drv.as_mut(), out, &opts, &token);
    bar.finish();
    let r = match result {
        Ok(r) => r,
        Err(e) => return Err(finish_error(e, &mut [drv.as_mut()])),
    };
    if args.json {
        print_json(&Out {
            report: &r,
            compression: args.compress,
        })?;
    } else {
        outln!(
            "saved {} from {} to {} in {} ({})",
            format_bytes(r.bytes),
            r.device,
            escape(&args.output.display().to_string()),
            format_seconds(r.seconds),
            format_rate(r.throughput_bytes_per_s)
        );
        let precopy = precopy_summary(r.rounds, r.precopy_bytes, None, r.precopy_end);
        outln!(
            "  protocol {}, {}stop-copy {} in {}{}, {} chunk(s), stream {} (checksum {:016x})",
            r.protocol,
            precopy,
            format_bytes(r.stopcopy_bytes),
            format_seconds(r.stop_copy_seconds),
            predicted_suffix(r.predicted_downtime_seconds),
            r.chunks,
            format_bytes(r.stream_bytes),
            r.stream_checksum
        );
        if args.compress != Compression::None {
            outln!("  {}", wire_summary(args.compress, r.bytes, r.stream_bytes));
        }
        if let Some(note) = pipe_note(r.pipe_capacity_bytes, args.copy.buffer.bytes()) {
            outln!("  {note}");
        }
        if r.file_commit_seconds > 0.0 {
            outln!(
                "  file committed (fsync, rename) in {}{}",
                format_seconds(r.file_commit_seconds),
                if r.direct_io {
                    "; written with O_DIRECT, past the page cache (--buffered keeps it cached)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct Out<'a> {
    #[serde(flatten)]
    report: &'a engine::SaveReport,
    compression: Compression,
}

/// `compression auto: 1.0 GiB of device state, 512.1 MiB on the wire (0.50x)`.
pub fn wire_summary(c: Compression, device: u64, wire: u64) -> String {
    let ratio = if device > 0 {
        wire as f64 / device as f64
    } else {
        1.0
    };
    format!(
        "compression {c}: {} of device state, {} on the wire ({ratio:.2}x)",
        format_bytes(device),
        format_bytes(wire)
    )
}
