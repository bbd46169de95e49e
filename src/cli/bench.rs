//! `vfio-harness bench [DEVICE...]`: save/restore/live throughput, downtime, arc latency and
//! parallel scaling against memcpy and the device's raw data stream. Runs on the built-in
//! simulator when no device is given. JSON schema: `docs/bench-schema.md`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vfio_harness::bench::{self, BenchConfig, Mode};
use vfio_harness::units::ByteSize;
use vfio_harness::DeviceSpec;

use super::transfer::{install_interrupt_handler, print_json};
use super::Global;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Devices to measure (default: the simulator). Live migration uses the first two
    /// (SRC DST); parallel uses up to --devices of them.
    pub devices: Vec<DeviceSpec>,
    /// Simulated state size (default 256M; 8M with --quick).
    #[arg(long)]
    pub state: Option<ByteSize>,
    /// Buffer (chunk) size of one device read or write (default 1M, the engine default).
    #[arg(long, conflicts_with = "sweep")]
    pub buffer: Option<ByteSize>,
    /// Measure at every power of two from 4K to 64M (4K..1M with --quick).
    #[arg(long)]
    pub sweep: bool,
    /// Devices in the parallel mode (default: the number of CPUs, 2..8).
    #[arg(long = "devices", value_name = "N")]
    pub parallel_devices: Option<usize>,
    /// Modes to run, comma-separated: save, restore, live, arcs, parallel.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "save,restore,live,arcs,parallel"
    )]
    pub mode: Vec<Mode>,
    /// Repetitions of each transfer (the median is reported; default 3, 1 with --quick).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Repetitions of each state-machine arc (default 50, 5 with --quick).
    #[arg(long)]
    pub arc_repeat: Option<usize>,
    /// Pre-copy rounds in the live mode.
    #[arg(long, default_value_t = 3)]
    pub precopy_rounds: u32,
    /// Save into this file instead of discarding the stream (measures the file system too).
    #[arg(long)]
    pub to_file: Option<PathBuf>,
    /// Write an SVG chart of throughput against buffer size (with --sweep).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// CI mode: tiny sizes, one repetition.
    #[arg(long)]
    pub quick: bool,
    /// Print the report as JSON (schema: docs/bench-schema.md).
    #[arg(long)]
    pub json: bool,
}

/// Runs `bench`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let mut cfg = BenchConfig::new(args.quick);
    cfg.devices = args.devices;
    if let Some(s) = args.state {
        if s.bytes() == 0 {
            anyhow::bail!("--state must be at least 1 byte");
        }
        cfg.state = s.bytes();
    }
    if args.sweep {
        cfg.buffers = bench::sweep_buffers(args.quick);
        if !cfg.buffers.contains(&cfg.buffer) {
            cfg.buffer = *cfg.buffers.last().unwrap_or(&cfg.buffer);
        }
    } else if let Some(b) = args.buffer {
        cfg.buffer = b.bytes();
        cfg.buffers = vec![b.bytes()];
    }
    if let Some(n) = args.parallel_devices {
        if n == 0 {
            anyhow::bail!("--devices must be at least 1");
        }
        cfg.parallel_devices = n;
    }
    let mut modes = args.mode;
    modes.dedup();
    cfg.modes = modes;
    if let Some(r) = args.repeat {
        cfg.repeat = r.max(1);
    }
    if let Some(r) = args.arc_repeat {
        cfg.arc_repeat = r.max(1);
    }
    cfg.precopy_rounds = args.precopy_rounds;
    cfg.to_file = args.to_file;
    cfg.open = global.open_options();
    cfg.cancel = Some(install_interrupt_handler()?.flag());

    let bar = if !args.json && std::io::stderr().is_terminal() {
        let b = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
        if let Ok(s) = ProgressStyle::with_template("bench [{bar:30}] {pos}/{len} {elapsed} {msg}")
        {
            b.set_style(s.progress_chars("=> "));
        }
        Some(b)
    } else {
        None
    };
    let progress = |s: &bench::Step<'_>| {
        if let Some(b) = &bar {
            b.set_length(s.total as u64);
            b.set_position(s.done as u64);
            b.set_message(s.label.to_string());
        }
    };
    let result = bench::run(&cfg, &progress);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = result?;
    if let Some(p) = &args.plot {
        std::fs::write(p, report.to_svg())
            .map_err(|e| anyhow::anyhow!("writing the plot {}: {e}", p.display()))?;
        if !args.sweep && !args.json {
            errln!("note: the plot has one point per mode without --sweep; lines need --sweep");
        }
    }
    if args.json {
        print_json(&report)?;
    } else {
        out!("{}", report.to_table());
        if let Some(p) = &args.plot {
            outln!("plot: {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
