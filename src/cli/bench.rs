//! `vfio-harness bench [DEVICE...]`: what a user's transfer costs. Save, restore and live
//! throughput on every path (memory, files, pipes, TCP) against each path's physical
//! reference, the raw loop, QEMU's loop and the whole-state approach; the overlap proof, the
//! downtime sweep, parallel scaling and arc latency. Runs on the built-in simulator (state
//! in memory) when no device is given. JSON schema: `docs/bench-schema.md`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vfio_harness::bench::{self, BenchConfig, DataPath, Mode};
use vfio_harness::units::ByteSize;
use vfio_harness::DeviceSpec;

use super::args::parse_rate;
use super::signals::install_interrupt_handler;
use super::transfer::print_json;
use super::Global;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Devices to measure (default: the simulator, with its state in memory and half of its
    /// pages zeros). Live migration uses the first two (SRC DST); parallel the first N.
    pub devices: Vec<DeviceSpec>,
    /// Simulated state size (default 1G; 8M with --quick). The targets are defined for 4G.
    #[arg(long)]
    pub state: Option<ByteSize>,
    /// Buffer (chunk) size of one device read or write (default 1M, the engine default).
    #[arg(long, conflicts_with = "sweep")]
    pub buffer: Option<ByteSize>,
    /// Measure at every power of two from 4K to 64M (4K..1M with --quick).
    #[arg(long)]
    pub sweep: bool,
    /// Device counts of the parallel mode, comma-separated.
    #[arg(
        long = "devices",
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "1,2,4"
    )]
    pub parallel_devices: Vec<usize>,
    /// Modes to run, comma-separated: save, restore, live, arcs, parallel, overlap, downtime,
    /// compress.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "save,restore,live,arcs,parallel,overlap,downtime,compress"
    )]
    pub mode: Vec<Mode>,
    /// Paths to measure, comma-separated: memory, file, file-fsync, file-direct, pipe, tcp.
    #[arg(
        long = "path",
        value_delimiter = ',',
        default_value = "memory,file,file-fsync,file-direct,pipe,tcp"
    )]
    pub paths: Vec<DataPath>,
    /// Directory of the file paths' files (default: $TMPDIR); they are removed afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Device rate D of the overlap mode (the device's cap).
    #[arg(long, value_parser = parse_rate, default_value = "2G/s")]
    pub device_rate: u64,
    /// Sink rate S of the overlap mode (the sink's cap).
    #[arg(long, value_parser = parse_rate, default_value = "1G/s")]
    pub sink_rate: u64,
    /// Link rate of the compress mode (the capped link the state is saved into).
    #[arg(long, value_parser = parse_rate, default_value = "1G/s")]
    pub compress_link: u64,
    /// Link rates of the downtime sweep, comma-separated (default 1G/s,4G/s; 256M/s with --quick).
    #[arg(long, value_parser = parse_rate, value_delimiter = ',')]
    pub sweep_links: Vec<u64>,
    /// Dirty rates of the downtime sweep as fractions of the link rate, comma-separated
    /// (default 0,0.25,0.5,0.75,1,1.5; 0,0.5,1 with --quick).
    #[arg(long, value_delimiter = ',')]
    pub sweep_dirty: Vec<f64>,
    /// Repetitions of each transfer (the median is reported; default 3, 1 with --quick).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Repetitions a save, restore or live block grows to while a target of it is not
    /// settled after --repeat (its transfers spread across the required ratio): the median of
    /// them all is reported (default 5, 1 with --quick; at most --repeat turns it off).
    #[arg(long)]
    pub max_repeat: Option<usize>,
    /// Untimed rounds of every loop that open each block (default 1, 0 with --quick).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Repetitions of each state-machine arc (default 50, 5 with --quick).
    #[arg(long)]
    pub arc_repeat: Option<usize>,
    /// Pre-copy rounds of the live mode's in-process migration and of the downtime sweep.
    #[arg(long, default_value_t = 3)]
    pub precopy_rounds: u32,
    /// Write an SVG chart of throughput against buffer size (with --sweep).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write an SVG chart of the downtime sweep (measured and predicted downtime).
    #[arg(long)]
    pub downtime_plot: Option<PathBuf>,
    /// Run the harness on one thread (no overlap of device reads with framing, hashing and
    /// writing): what the engine costs per byte, for comparison with the default.
    #[arg(long)]
    pub no_overlap: bool,
    #[command(flatten)]
    pub polling: super::transfer::Polling,
    /// The harness's durable file save (`file-fsync`) through the page cache, as
    /// `save --buffered` writes, rather than with O_DIRECT.
    #[arg(long)]
    pub buffered: bool,
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
            usage!("--state must be at least 1 byte");
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
    if args.parallel_devices.contains(&0) {
        usage!("--devices: every count must be at least 1");
    }
    cfg.parallel_devices = args.parallel_devices;
    let mut modes = args.mode;
    modes.dedup();
    cfg.modes = modes;
    let mut paths = args.paths;
    paths.dedup();
    cfg.paths = paths;
    cfg.dir = args.dir;
    cfg.overlap_rates = (args.device_rate, args.sink_rate);
    cfg.compress_link = args.compress_link;
    if !args.sweep_links.is_empty() {
        cfg.sweep_links = args.sweep_links;
    }
    if !args.sweep_dirty.is_empty() {
        cfg.sweep_dirty = args.sweep_dirty;
    }
    if let Some(r) = args.repeat {
        cfg.repeat = r.max(1);
    }
    if let Some(r) = args.max_repeat {
        cfg.max_repeat = r;
    }
    if let Some(w) = args.warmup {
        cfg.warmup = w;
    }
    if let Some(r) = args.arc_repeat {
        cfg.arc_repeat = r.max(1);
    }
    cfg.precopy_rounds = args.precopy_rounds;
    cfg.overlap = !args.no_overlap;
    cfg.max_poll = args.polling.max_poll;
    cfg.direct_io = !args.buffered;
    cfg.open = global.open_options();
    cfg.cancel = Some(install_interrupt_handler()?.flag());

    // A plot path that cannot be written is found now, not after the whole run.
    for p in [&args.plot, &args.downtime_plot].into_iter().flatten() {
        can_write(p).map_err(|e| {
            anyhow::Error::new(e).context(format!("cannot write the plot {}", p.display()))
        })?;
    }
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
            errln!("note: the plot has one point per row without --sweep; lines need --sweep");
        }
    }
    if let Some(p) = &args.downtime_plot {
        std::fs::write(p, report.to_downtime_svg())
            .map_err(|e| anyhow::anyhow!("writing the downtime plot {}: {e}", p.display()))?;
    }
    if args.json {
        print_json(&report)?;
    } else {
        out!("{}", report.to_table());
        if let Some(p) = &args.plot {
            outln!("plot: {}", p.display());
        }
        if let Some(p) = &args.downtime_plot {
            outln!("downtime plot: {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `path` can be written: an existing file opened for writing (not truncated), or a
/// file created (and removed at once) in the directory that would hold it.
fn can_write(path: &std::path::Path) -> std::io::Result<()> {
    if path.exists() {
        return std::fs::OpenOptions::new().write(true).open(path).map(drop);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no directory {}", dir.display()),
        ));
    }
    // The probe's own (random) name is left out of the error: its kind is what matters.
    tempfile::NamedTempFile::new_in(dir)
        .map(drop)
        .map_err(|e| std::io::Error::from(e.kind()))
}
