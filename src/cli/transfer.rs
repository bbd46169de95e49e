//! Shared plumbing of the transfer commands (`save`, `restore`, `migrate`): progress bars,
//! opening migration drivers, and report formatting (the signal handler is in
//! [`super::signals`]).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;
use vfio_harness::migration::engine::{
    Options, Phase, PrecopyEnd, PrecopyPolicy, Progress, ProgressFn, MIN_BUFFER,
};
use vfio_harness::migration::stream::MAX_CHUNK_LEN;
use vfio_harness::migration::{driver_for, MigrationDriver};
use vfio_harness::units::ByteSize;

use super::failure::{outcomes, Failed};
use vfio_harness::DeviceSpec;

use super::Global;

/// `--no-overlap`, shared by the transfer commands.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct Threads {
    /// Run the engine on one thread: no overlap of device reads or writes with framing,
    /// hashing and the stream's own I/O. For a machine with fewer CPUs than busy threads
    /// (both ends of a migration on one 2-CPU host, for one), where overlapped threads only
    /// compete.
    #[arg(long)]
    pub no_overlap: bool,
}

impl Threads {
    /// `o` with the engine's [`overlap`](vfio_harness::migration::engine::Options::overlap)
    /// from these options.
    pub fn apply(self, o: Options) -> Options {
        Options {
            overlap: !self.no_overlap,
            ..o
        }
    }
}

/// `--max-poll`, shared by `save`, `restore`, `migrate` and `bench` (the commands whose
/// engine threads poll before they wait).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct Polling {
    /// How long a thread about to wait polls first: a reading thread waiting for its turn at
    /// the device (save, migrate), a restore with --no-overlap waiting for its pipe or socket
    /// (e.g. 500us, 2ms; 0 waits at once). Polling spends CPU time to spare the wake-ups of a sleeping thread
    /// (in a VM, an interrupt each); a busy host may want less.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", default_value = "5ms")]
    pub max_poll: Duration,
}

impl Polling {
    /// `o` with the engine's
    /// [`max_poll`](vfio_harness::migration::engine::Options::max_poll) from these options.
    pub fn apply(self, o: Options) -> Options {
        Options {
            max_poll: self.max_poll,
            ..o
        }
    }
}

/// `--buffered`, shared by `save` and `bench` (the commands that write a durable file).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct FileIo {
    /// Write a regular output file through the page cache (its writeback started every
    /// 16 MiB, fsync'd at the end) rather than with O_DIRECT: slower and more CPU for a
    /// large state, but a restore on this host soon after reads it from memory.
    #[arg(long)]
    pub buffered: bool,
}

impl FileIo {
    /// `o` with the engine's
    /// [`direct_io`](vfio_harness::migration::engine::Options::direct_io) from these options.
    pub fn apply(self, o: Options) -> Options {
        Options {
            direct_io: !self.buffered,
            ..o
        }
    }
}

/// Transfers smaller than this get no progress bar.
const BAR_THRESHOLD: u64 = 32 << 20;

/// Opens the devices named by `specs` (sharing one IOMMU context) and their migration drivers.
pub fn open_drivers(
    specs: &[DeviceSpec],
    global: &Global,
) -> anyhow::Result<Vec<Box<dyn MigrationDriver>>> {
    let handles = vfio_harness::open_all(specs, &global.open_options())?;
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(driver_for(h)?);
    }
    Ok(out)
}

/// Opens one device and its migration driver.
pub fn open_driver(spec: &DeviceSpec, global: &Global) -> anyhow::Result<Box<dyn MigrationDriver>> {
    open_drivers(std::slice::from_ref(spec), global)?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("{spec}: no device opened"))
}

/// `pre-copy N round(s) SIZE [in TIME] (converged|round limit), ` for human summaries, or
/// nothing when no pre-copy round ran.
pub fn precopy_summary(rounds: u32, bytes: u64, seconds: Option<f64>, end: PrecopyEnd) -> String {
    if rounds == 0 {
        return String::new();
    }
    format!(
        "pre-copy {rounds} round(s) {}{} ({}), ",
        vfio_harness::units::format_bytes(bytes),
        seconds
            .map(|s| format!(" in {}", vfio_harness::units::format_seconds(s)))
            .unwrap_or_default(),
        precopy_end_text(end)
    )
}

/// A line for human summaries when the stream went through a pipe smaller than one chunk
/// (above the system's limit, or the kernel would not grow it), or nothing.
pub fn pipe_note(capacity: Option<u64>, chunk: u64) -> Option<String> {
    let c = capacity.filter(|&c| c < chunk)?;
    Some(format!(
        "the pipe holds {}, less than one {} chunk, so each chunk went through in pieces \
         (pipes are grown up to /proc/sys/fs/pipe-max-size; the user's pipe pages are \
         limited by /proc/sys/fs/pipe-user-pages-soft)",
        vfio_harness::units::format_bytes(c),
        vfio_harness::units::format_bytes(chunk)
    ))
}

/// Why pre-copy ended, in words.
pub fn precopy_end_text(end: PrecopyEnd) -> &'static str {
    match end {
        PrecopyEnd::Converged => "converged",
        PrecopyEnd::WithinDowntime => "predicted downtime within the limit",
        PrecopyEnd::NotConverging => "not converging: the device dirties as fast as it drains",
        PrecopyEnd::RoundLimit => "round limit",
        PrecopyEnd::Capped => "pre-copy size bound",
        _ => end.as_str(),
    }
}

/// ` (predicted 120 ms)`, or nothing without a prediction.
pub fn predicted_suffix(predicted: Option<f64>) -> String {
    predicted
        .map(|p| format!(" (predicted {})", vfio_harness::units::format_seconds(p)))
        .unwrap_or_default()
}

/// What `save` and `migrate` share: when pre-copy ends, the switchover, the chunk size and
/// the progress lines. (Each command keeps its own `--precopy-rounds`: their defaults differ.)
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct CopyArgs {
    /// Stop pre-copying once at most this much is still pending.
    #[arg(long, default_value = "0")]
    pub dirty_threshold: ByteSize,
    /// The downtime limit and switchover.
    #[command(flatten)]
    pub switchover: SwitchoverArgs,
    /// Chunk / buffer size (4K to 64M).
    #[arg(long, default_value = "1M", value_parser = parse_buffer)]
    pub buffer: ByteSize,
    /// Print one line per chunk on stderr (`progress PHASE BYTES`), for scripts.
    #[arg(long)]
    pub progress_lines: bool,
}

impl CopyArgs {
    /// The pre-copy policy of at most `max_rounds` rounds with these options.
    pub fn precopy(self, max_rounds: u32) -> PrecopyPolicy {
        self.switchover.apply(PrecopyPolicy {
            max_rounds,
            dirty_threshold: self.dirty_threshold.bytes(),
            ..Default::default()
        })
    }

    /// The engine's buffer size.
    pub fn buffer_size(self) -> usize {
        usize::try_from(self.buffer.bytes()).unwrap_or(usize::MAX)
    }
}

/// The switchover options of `save` and `migrate`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct SwitchoverArgs {
    /// The longest the source may stay stopped (`300ms`, `2s`; a bare number is seconds).
    /// Pre-copy ends once the predicted downtime (bytes left over the drain rate measured
    /// in pre-copy) fits; if it still does not fit when pre-copy ends (rounds exhausted, not
    /// converging), the device is not stopped: exit 1 with the source RUNNING. Needs
    /// pre-copy rounds to measure the drain rate.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub max_downtime: Option<Duration>,
    /// Stop the device even when the predicted downtime exceeds --max-downtime.
    #[arg(long, requires = "max_downtime")]
    pub force_switchover: bool,
}

impl SwitchoverArgs {
    /// `policy` with these options.
    pub fn apply(self, policy: PrecopyPolicy) -> PrecopyPolicy {
        PrecopyPolicy {
            max_downtime: self.max_downtime,
            force_switchover: self.force_switchover,
            ..policy
        }
    }
}

/// Parses a duration: a number with `us`, `ms` or `s` (a bare number is seconds), at most
/// one hour.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let x: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 300ms, 2s)"))?;
    let scale = match unit.trim() {
        "us" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        u => return Err(format!("unknown unit {u:?} in {s:?} (us, ms or s)")),
    };
    let secs = x * scale;
    if !(secs.is_finite() && (0.0..=3600.0).contains(&secs)) {
        return Err(format!("{s:?} is outside 0 s ..= 1 hour"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `--buffer`: a size within 4 KiB ..= 64 MiB.
pub fn parse_buffer(s: &str) -> Result<ByteSize, String> {
    let b: ByteSize = s.parse().map_err(|e| format!("{e}"))?;
    let (min, max) = (MIN_BUFFER as u64, u64::from(MAX_CHUNK_LEN));
    if b.bytes() < min || b.bytes() > max {
        return Err(format!("{s} is outside 4K..=64M"));
    }
    Ok(b)
}

/// A progress bar on stderr, shown only on a terminal and for transfers above 32 MiB (or of
/// unknown size once they pass it). `finish` clears it.
pub struct Bar {
    bar: Arc<Mutex<Option<ProgressBar>>>,
    enabled: bool,
    lines: bool,
}

impl Bar {
    /// A bar; `quiet` (e.g. `--json`) disables it. `lines` prints one line per chunk
    /// instead (`progress PHASE BYTES`, for scripts), whatever `quiet` says.
    pub fn new(quiet: bool, lines: bool) -> Bar {
        Bar {
            bar: Arc::new(Mutex::new(None)),
            enabled: !quiet && !lines && std::io::stderr().is_terminal(),
            lines,
        }
    }

    /// The engine's progress callback, or `None` when the bar is disabled.
    pub fn callback(&self) -> Option<ProgressFn> {
        if self.lines {
            return Some(Arc::new(|p: &Progress| {
                errln!("progress {} {}", phase_name(p.phase), p.bytes);
            }));
        }
        if !self.enabled {
            return None;
        }
        let slot = self.bar.clone();
        Some(Arc::new(move |p: &Progress| {
            let Ok(mut guard) = slot.lock() else { return };
            if guard.is_none() {
                if p.expected.unwrap_or(p.bytes).max(p.bytes) < BAR_THRESHOLD {
                    return;
                }
                let b = ProgressBar::with_draw_target(p.expected, ProgressDrawTarget::stderr());
                let style = match p.expected {
                    Some(_) => ProgressStyle::with_template(
                        "{msg:>9} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                    ),
                    None => ProgressStyle::with_template(
                        "{msg:>9} {bytes} {binary_bytes_per_sec} {elapsed}",
                    ),
                };
                if let Ok(s) = style {
                    b.set_style(s.progress_chars("=> "));
                }
                *guard = Some(b);
            }
            if let Some(b) = guard.as_ref() {
                if let Some(e) = p.expected {
                    // Devices may send more than they estimated.
                    b.set_length(e.max(p.bytes));
                }
                b.set_message(phase_name(p.phase));
                b.set_position(p.bytes);
            }
        }))
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Ok(mut g) = self.bar.lock() {
            if let Some(b) = g.take() {
                b.finish_and_clear();
            }
        }
    }
}

/// A failed transfer: the error with the state each driver's device was left in, for
/// [`super::failure::report`].
pub fn finish_error(
    e: impl Into<anyhow::Error>,
    drivers: &mut [&mut dyn MigrationDriver],
) -> anyhow::Error {
    anyhow::Error::new(Failed {
        error: e.into(),
        devices: outcomes(drivers),
    })
}

// `print_json` lives in `super::output`; re-exported for the commands that import it from here.
pub use super::output::print_json;

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Precopy => "pre-copy",
        Phase::StopCopy => "stop-copy",
        Phase::Resume => "resume",
    }
}
