//! Save/restore throughput and downtime benchmarks (`vfio-harness bench`).
//!
//! One run measures, on the same machine and in the same process:
//! - the **physical reference**: single-thread `memcpy` between two page-aligned regions
//!   larger than the last-level cache, at each buffer size ([`buf::memcpy_bandwidth`]);
//! - the **raw data stream** of the device: STOP_COPY read to end of stream, and RESUMING
//!   written, in a tight loop with one buffer and no framing ([`raw`]), with the run's
//!   buffer (`raw-save`, `raw-restore`) and with QEMU's buffer sizes (`qemu-style-save`:
//!   1 MiB reads, `qemu-style-restore`: 32 KiB writes);
//! - the **harness** data path ([`crate::migration::engine`]): `save` (device -> stream
//!   encoder -> a discarding writer or a file), `restore` (a stream saved beforehand, read
//!   from a file -> device; the simulator checks every byte with `verify-seed`), `live`
//!   (device -> device, overlapped, with pre-copy rounds and measured downtime);
//! - the **latency of every single arc** of the v2 state machine ([`arcs`]);
//! - **N devices in parallel**, against one device alone with the same thread budget: two
//!   threads per device (reading overlapped with writing) when the machine has two cores per
//!   device, one otherwise ([`crate::migration::engine::Options::overlap`]).
//!
//! Every row carries its peak resident memory (reset per mode when the kernel allows it,
//! see [`rss`]). The report is serialisable (`--json`, schema in `docs/bench-schema.md`),
//! printable as a table ([`BenchReport::print_table`]) and plottable ([`svg`]).

pub mod arcs;
pub mod buf;
pub mod machine;
pub mod raw;
pub mod rss;
pub mod stats;
pub mod svg;

use crate::device::{self, DeviceError, DeviceHandle, DeviceSpec, MigState, OpenOptions};
use crate::migration::engine::{self, Options, PrecopyPolicy, RING};
use crate::migration::{driver_for, MigrationDriver, MigrationError};
use crate::units::{format_bytes, format_rate, format_seconds};
use arcs::ArcRow;
use machine::{Kernel, Machine};
use rss::RssScope;
use serde::{Deserialize, Serialize};
use stats::{ratio, round4, throughput, Summary};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Version of the JSON report layout (`docs/bench-schema.md`).
pub const SCHEMA_VERSION: u32 = 1;
/// Default buffer (chunk) size of the harness rows: the engine's default, so `bench`
/// measures what `save` / `restore` / `migrate` do by default (the sweep on the reference
/// machine peaks between 256 KiB and 2 MiB, where the engine's ring stays in cache).
pub const DEFAULT_BUFFER: u64 = engine::DEFAULT_BUFFER as u64;
/// Default simulated state size.
pub const DEFAULT_STATE: u64 = 256 << 20;
/// State size with `--quick`.
pub const QUICK_STATE: u64 = 8 << 20;
/// QEMU's read size for saving (`VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE`, 1 MiB).
pub const QEMU_SAVE_BUFFER: u64 = 1 << 20;
/// QEMU's write size for restoring (its migration stream buffer, 32 KiB).
pub const QEMU_RESTORE_BUFFER: u64 = 32 << 10;
/// State of the simulated device the arc latencies are measured on (arcs out of RESUMING
/// write a full state each time, so it is kept small).
pub const SIM_ARC_STATE: u64 = 64 << 10;

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Opening or driving a device failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A migration operation failed (the device was returned to RUNNING).
    #[error("{what}: {source}")]
    Migration {
        /// Which measurement.
        what: String,
        /// The failure.
        #[source]
        source: Box<MigrationError>,
    },
    /// A temporary or output file could not be used.
    #[error("{what}: {source}{}", io_hint(.source))]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The settings cannot be run.
    #[error("{0}")]
    Config(String),
    /// A buffer could not be allocated.
    #[error("cannot allocate {} for {what} (lower --buffer or --state)", format_bytes(*.bytes))]
    Alloc {
        /// Size requested.
        bytes: u64,
        /// What for.
        what: String,
    },
    /// The run was interrupted (devices were returned to RUNNING).
    #[error("interrupted")]
    Interrupted,
}

fn io_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => {
            " (the restore rows need room for one saved stream in $TMPDIR; point TMPDIR elsewhere or lower --state)"
        }
        _ => "",
    }
}

fn mig(what: impl Into<String>) -> impl FnOnce(MigrationError) -> BenchError {
    let what = what.into();
    move |source| match source {
        MigrationError::Interrupted => BenchError::Interrupted,
        source => BenchError::Migration {
            what,
            source: Box::new(source),
        },
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Device -> stream encoder -> discarding writer (or `--to-file`); with the raw and
    /// qemu-style save rows.
    Save,
    /// Saved stream (file) -> device; with the raw and qemu-style restore rows.
    Restore,
    /// Device -> device through the engine's migrate, with downtime.
    Live,
    /// Latency of every single arc of the state machine.
    Arcs,
    /// N devices saving in parallel, against one device alone with the same thread budget.
    Parallel,
}

impl Mode {
    /// Every mode, in run order.
    pub const ALL: [Mode; 5] = [
        Mode::Save,
        Mode::Restore,
        Mode::Live,
        Mode::Arcs,
        Mode::Parallel,
    ];

    /// Its command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Save => "save",
            Mode::Restore => "restore",
            Mode::Live => "live",
            Mode::Arcs => "arcs",
            Mode::Parallel => "parallel",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!(
                    "unknown mode {s:?} (one of: {})",
                    Mode::ALL.map(|m| m.as_str()).join(", ")
                )
            })
    }
}

/// Buffer sizes of a sweep: powers of two from 4 KiB to 64 MiB (4 KiB to 1 MiB, every
/// fourth power of two... i.e. 4K, 16K, 64K, 256K, 1M, with `quick`).
pub fn sweep_buffers(quick: bool) -> Vec<u64> {
    if quick {
        (12..=20).step_by(2).map(|e| 1u64 << e).collect()
    } else {
        (12..=26).map(|e| 1u64 << e).collect()
    }
}

/// A benchmark run's settings.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Devices; empty means the built-in simulator.
    pub devices: Vec<DeviceSpec>,
    /// Simulated state size (ignored for kernel devices, whose state is what it is; a `sim:`
    /// spec with its own `state=` wins).
    pub state: u64,
    /// Buffer sizes to measure at (one, or a sweep).
    pub buffers: Vec<u64>,
    /// Buffer for the arc and parallel measurements (the first of `buffers` if not in it).
    pub buffer: u64,
    /// Modes.
    pub modes: Vec<Mode>,
    /// Devices in the parallel mode (simulated: opened; kernel: the first N given).
    pub parallel_devices: usize,
    /// Repetitions of each transfer (the median is reported).
    pub repeat: usize,
    /// Repetitions of each arc.
    pub arc_repeat: usize,
    /// Pre-copy rounds of the live mode (0: stop-and-copy only).
    pub precopy_rounds: u32,
    /// Save into this file instead of a discarding writer.
    pub to_file: Option<PathBuf>,
    /// CI mode: tiny sizes, few repetitions.
    pub quick: bool,
    /// How kernel devices are opened.
    pub open: OpenOptions,
    /// Stops the run between (and inside) transfers when set; devices are left RUNNING.
    pub cancel: Option<engine::Cancel>,
}

impl BenchConfig {
    /// Defaults: the simulator with a [`DEFAULT_STATE`] state (or [`QUICK_STATE`]), every
    /// mode, one buffer of [`DEFAULT_BUFFER`].
    pub fn new(quick: bool) -> BenchConfig {
        BenchConfig {
            devices: Vec::new(),
            state: if quick { QUICK_STATE } else { DEFAULT_STATE },
            buffers: vec![DEFAULT_BUFFER],
            buffer: DEFAULT_BUFFER,
            modes: Mode::ALL.to_vec(),
            parallel_devices: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 8),
            repeat: if quick { 1 } else { 3 },
            arc_repeat: if quick { 5 } else { 50 },
            precopy_rounds: 3,
            to_file: None,
            quick,
            open: OpenOptions::default(),
            cancel: None,
        }
    }

    fn has(&self, m: Mode) -> bool {
        self.modes.contains(&m)
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// One measured transfer configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// `save`, `restore`, `live`, `raw-save`, `raw-restore`, `qemu-style-save`,
    /// `qemu-style-restore`, `parallel-save`.
    pub mode: String,
    /// Device(s) measured (`src -> dst` for live; the first of N for parallel).
    pub device: String,
    /// Migration protocol.
    pub protocol: String,
    /// Buffer (chunk) size of one read or write.
    pub buffer_bytes: u64,
    /// Memory the data path allocates for buffers (ring of the engine, one buffer for the
    /// raw loops, times devices for parallel).
    pub buffers_bytes: u64,
    /// Device-state bytes moved (all devices for parallel).
    pub bytes: u64,
    /// Stream bytes (framing included), for save and restore.
    pub stream_bytes: Option<u64>,
    /// Median wall time of one transfer, seconds.
    pub seconds: f64,
    /// Fastest transfer, seconds.
    pub seconds_min: f64,
    /// Slowest transfer, seconds.
    pub seconds_max: f64,
    /// Transfers timed.
    pub repeats: usize,
    /// `bytes / seconds` (median time).
    pub throughput_bytes_per_s: f64,
    /// Throughput over the memcpy reference at the same buffer size.
    pub ratio_to_memcpy: Option<f64>,
    /// Time the device (for live: the service) was not running, median, seconds.
    pub downtime_s: Option<f64>,
    /// Peak resident memory while the mode ran.
    pub peak_rss_bytes: Option<u64>,
    /// Whether `peak_rss_bytes` is the mode's own peak or the process's.
    pub rss_scope: RssScope,
    /// CPU time (user + system, all threads) of one transfer, seconds: above `seconds`
    /// when the data path keeps more than one core busy.
    pub cpu_seconds: Option<f64>,
    /// `peak_rss_bytes - buffers_bytes`: memory beyond the configured buffers.
    pub rss_over_buffers_bytes: Option<i64>,
    /// Whether the receiving device checked every byte (simulator `verify-seed`).
    pub verified: bool,
    /// Devices (parallel rows).
    pub devices: Option<usize>,
    /// Aggregate over one device alone (parallel rows).
    pub scaling: Option<f64>,
    /// Pre-copy rounds run (live).
    pub precopy_rounds: Option<u32>,
    /// Where saved data went: `discard` or a path.
    pub sink: Option<String>,
}

/// The memcpy reference at one buffer size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemcpyPoint {
    /// Copy size.
    pub buffer_bytes: u64,
    /// Bytes copied per second.
    pub bytes_per_s: f64,
}

/// Reference measurements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Single-thread memcpy at the run's main buffer size, bytes per second.
    pub memcpy_bytes_per_s: Option<f64>,
    /// The buffer size of `memcpy_bytes_per_s`.
    pub memcpy_buffer_bytes: u64,
    /// Size of each of the two regions copied between.
    pub memcpy_region_bytes: u64,
    /// The memcpy reference at every buffer size measured.
    pub memcpy: Vec<MemcpyPoint>,
}

/// Parallel scaling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParallelReport {
    /// Devices run at once.
    pub devices: usize,
    /// One device alone, bytes per second.
    pub one_device_bytes_per_s: f64,
    /// All devices together: total bytes over wall time.
    pub aggregate_bytes_per_s: f64,
    /// `aggregate / one device`.
    pub scaling: f64,
    /// Each device's own throughput in the parallel run.
    pub per_device_bytes_per_s: Vec<f64>,
    /// CPUs available to the process.
    pub cores: usize,
    /// Whether each device's save overlapped reading and writing on two threads. Only when the
    /// machine has two cores per device: otherwise each device runs on one thread (a second
    /// thread per device would only compete with the other devices for the same cores). The
    /// one-device run uses the same setting, so `scaling` measures the devices' independence.
    pub overlap: bool,
    /// `aggregate /` the `save` row at the same buffer (one device with the engine's default
    /// of two threads), when that row was measured: what running the devices at once gains
    /// over the fastest single-device save on this machine.
    pub over_save_row: Option<f64>,
}

/// A project target checked against this run's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// What is checked.
    pub name: String,
    /// Measured value.
    pub measured: f64,
    /// Threshold.
    pub required: f64,
    /// `at_least` or `at_most`.
    pub comparison: String,
    /// Whether it was met.
    pub met: bool,
}

/// The run's settings as recorded in the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Device specs as opened.
    pub devices: Vec<String>,
    /// Simulated state size requested.
    pub state_bytes: u64,
    /// Buffer sizes measured.
    pub buffers: Vec<u64>,
    /// Main buffer size.
    pub buffer_bytes: u64,
    /// Modes run.
    pub modes: Vec<Mode>,
    /// Repetitions per transfer.
    pub repeat: usize,
    /// Repetitions per arc.
    pub arc_repeat: usize,
    /// Pre-copy rounds of the live mode.
    pub precopy_rounds: u32,
    /// Quick (CI) mode.
    pub quick: bool,
    /// Buffers in flight in the engine.
    pub engine_ring: usize,
}

/// The whole report (`--json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Layout version of this report.
    pub schema_version: u32,
    /// Version of the harness.
    pub harness_version: String,
    /// The machine.
    pub machine: Machine,
    /// The kernel.
    pub kernel: Kernel,
    /// Settings.
    pub settings: Settings,
    /// Reference measurements.
    pub reference: Reference,
    /// Transfer rows.
    pub results: Vec<ResultRow>,
    /// Arc latencies (device measured in `arcs_device`).
    pub arcs: Vec<ArcRow>,
    /// Device the arcs were measured on.
    pub arcs_device: Option<String>,
    /// Parallel scaling.
    pub parallel: Option<ParallelReport>,
    /// Project targets checked against this run.
    pub targets: Vec<Target>,
    /// Things that were skipped, and why.
    pub notes: Vec<String>,
    /// Wall time of the whole run, seconds.
    pub total_seconds: f64,
}

/// A progress event: step `done` of `total` is starting, described by `label`.
#[derive(Clone, Debug)]
pub struct Step<'a> {
    /// Steps finished.
    pub done: usize,
    /// Steps planned.
    pub total: usize,
    /// What runs now.
    pub label: &'a str,
}

// ---------------------------------------------------------------------------------------------
// Simulator specs

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
fn sim_seed(params: &str) -> u64 {
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

// ---------------------------------------------------------------------------------------------
// The run

struct Devices {
    /// Saves and restores its own state (simulator: `verify-seed` = its seed).
    primary: DeviceHandle,
    primary_spec: String,
    verified: bool,
    /// Live destination.
    live: Option<(DeviceHandle, String)>,
    /// Arc latencies.
    arcs: (DeviceHandle, String),
    /// Parallel devices (first one measured alone too).
    parallel: Vec<DeviceHandle>,
}

fn open_devices(cfg: &BenchConfig, notes: &mut Vec<String>) -> Result<Devices, BenchError> {
    let open1 = |spec: &str| -> Result<DeviceHandle, BenchError> {
        let s: DeviceSpec = spec.parse()?;
        Ok(device::open(&s, &cfg.open)?)
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
    let handles = device::open_all(&cfg.devices, &cfg.open)?;
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

/// CPU time (user + system) this process has used so far, seconds.
pub fn cpu_time() -> f64 {
    // SAFETY: rusage is plain data; getrusage fills it and returns 0 on success.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// What [`timed`] measured around the samples.
struct Timed<T> {
    samples: Vec<(f64, T)>,
    peak: Option<u64>,
    scope: RssScope,
    /// CPU seconds per repetition (all threads).
    cpu: f64,
}

/// Collects the samples of one row one at a time, so the repetitions of two rows can
/// alternate ([`timed_pair`]). The peak RSS is reset before each sample and the row keeps
/// the highest.
struct Sampler<T> {
    samples: Vec<(f64, T)>,
    peak: Option<u64>,
    scoped: bool,
    cpu: f64,
}

impl<T> Sampler<T> {
    fn new() -> Self {
        Sampler {
            samples: Vec::new(),
            peak: None,
            scoped: true,
            cpu: 0.0,
        }
    }

    /// Runs and records one sample (`(seconds, value)`).
    fn sample(
        &mut self,
        f: impl FnOnce() -> Result<(f64, T), BenchError>,
    ) -> Result<(), BenchError> {
        self.scoped &= rss::reset_peak();
        let c0 = cpu_time();
        let v = f()?;
        self.cpu += cpu_time() - c0;
        self.peak = self.peak.max(rss::current().peak_rss);
        self.samples.push(v);
        Ok(())
    }

    fn finish(self) -> Timed<T> {
        let n = self.samples.len().max(1) as f64;
        Timed {
            peak: self.peak,
            scope: if self.scoped {
                RssScope::Mode
            } else {
                RssScope::Process
            },
            cpu: self.cpu / n,
            samples: self.samples,
        }
    }
}

/// Times `f` `n` times; returns the samples (each a `(seconds, value)`), the peak RSS, its
/// scope and the CPU time per repetition. Stops at the first error.
fn timed<T>(
    n: usize,
    mut f: impl FnMut() -> Result<(f64, T), BenchError>,
) -> Result<Timed<T>, BenchError> {
    let mut s = Sampler::new();
    for _ in 0..n.max(1) {
        s.sample(&mut f)?;
    }
    Ok(s.finish())
}

/// Times a reference loop and the harness `cfg.repeat` times each, alternating (ABBA: raw first on
/// even repetitions, the harness first on odd ones), so a change in machine load or a warm
/// cache left by the previous transfer affects both rows alike. Under TCG two runs of the same
/// loop a minute apart differ by up to 20 %; measured back to back they compare.
fn timed_pair<A, B>(
    cfg: &BenchConfig,
    mut reference: impl FnMut() -> Result<(f64, A), BenchError>,
    mut harness: impl FnMut() -> Result<(f64, B), BenchError>,
) -> Result<(Timed<A>, Timed<B>), BenchError> {
    let (mut a, mut b) = (Sampler::new(), Sampler::new());
    for i in 0..cfg.repeat.max(1) {
        if cfg.cancelled() {
            return Err(BenchError::Interrupted);
        }
        if i % 2 == 0 {
            a.sample(&mut reference)?;
            b.sample(&mut harness)?;
        } else {
            b.sample(&mut harness)?;
            a.sample(&mut reference)?;
        }
    }
    Ok((a.finish(), b.finish()))
}

struct RowInput<'a> {
    mode: &'a str,
    device: &'a str,
    protocol: String,
    buffer: u64,
    buffers_bytes: u64,
    bytes: u64,
    stream_bytes: Option<u64>,
    seconds: Vec<f64>,
    downtime: Option<Vec<f64>>,
    peak: Option<u64>,
    scope: RssScope,
    cpu: Option<f64>,
    verified: bool,
    memcpy: Option<f64>,
    sink: Option<String>,
}

fn make_row(r: RowInput<'_>) -> ResultRow {
    let s = Summary::of(&r.seconds).unwrap_or(Summary {
        min: 0.0,
        median: 0.0,
        max: 0.0,
        count: 0,
    });
    let tput = throughput(r.bytes, s.median).unwrap_or(0.0);
    ResultRow {
        mode: r.mode.to_string(),
        device: r.device.to_string(),
        protocol: r.protocol,
        buffer_bytes: r.buffer,
        buffers_bytes: r.buffers_bytes,
        bytes: r.bytes,
        stream_bytes: r.stream_bytes,
        seconds: s.median,
        seconds_min: s.min,
        seconds_max: s.max,
        repeats: s.count,
        throughput_bytes_per_s: tput.round(),
        ratio_to_memcpy: ratio(tput, r.memcpy).map(round4),
        downtime_s: r.downtime.and_then(|d| Summary::of(&d)).map(|d| d.median),
        peak_rss_bytes: r.peak,
        rss_scope: r.scope,
        cpu_seconds: r.cpu.map(round4),
        rss_over_buffers_bytes: r.peak.map(|p| p as i64 - r.buffers_bytes as i64),
        verified: r.verified,
        devices: None,
        scaling: None,
        precopy_rounds: None,
        sink: r.sink,
    }
}

fn alloc(bytes: u64, what: &str) -> Result<buf::PageBuf, BenchError> {
    buf::PageBuf::new(bytes as usize).ok_or_else(|| BenchError::Alloc {
        bytes,
        what: what.into(),
    })
}

fn driver(dev: &DeviceHandle) -> Result<Box<dyn MigrationDriver>, BenchError> {
    driver_for(dev.clone()).map_err(mig(format!("{}: migration driver", dev.name())))
}

fn opts(cfg: &BenchConfig, buffer: u64) -> Options {
    Options {
        buffer_size: buffer as usize,
        precopy: PrecopyPolicy::default(),
        cancel: cfg.cancel.clone(),
        progress: None,
        check_identity: true,
        overlap: true,
    }
}

fn tempfile() -> Result<std::fs::File, BenchError> {
    tempfile::tempfile().map_err(io("creating a temporary file in $TMPDIR"))
}

/// Runs the benchmark. `progress` is called before every step.
pub fn run(cfg: &BenchConfig, progress: &dyn Fn(&Step<'_>)) -> Result<BenchReport, BenchError> {
    let t_start = Instant::now();
    if cfg.buffers.is_empty() {
        return Err(BenchError::Config("no buffer size to measure".into()));
    }
    for &b in cfg.buffers.iter().chain(std::iter::once(&cfg.buffer)) {
        if b == 0 || b > crate::migration::stream::MAX_CHUNK_LEN as u64 {
            return Err(BenchError::Config(format!(
                "buffer size {} is outside 1 B..={}",
                format_bytes(b),
                format_bytes(crate::migration::stream::MAX_CHUNK_LEN as u64)
            )));
        }
    }
    let mut notes = Vec::new();
    let devs = open_devices(cfg, &mut notes)?;
    let protocol = driver(&devs.primary)?.protocol().to_string();

    let per_buffer = cfg.has(Mode::Save) as usize * 2
        + cfg.has(Mode::Restore) as usize * 2
        + cfg.has(Mode::Live) as usize;
    let total = 1
        + cfg.buffers.len() * (1 + per_buffer)
        + cfg.has(Mode::Save) as usize
        + cfg.has(Mode::Restore) as usize
        + if cfg.has(Mode::Arcs) {
            crate::migration::fsm::arcs(driver(&devs.arcs.0)?.flags()).len()
        } else {
            0
        }
        + cfg.has(Mode::Parallel) as usize;
    let mut done = 0usize;
    let mut step = |label: &str| {
        progress(&Step { done, total, label });
        done += 1;
    };
    let check_cancel = || {
        if cfg.cancelled() {
            Err(BenchError::Interrupted)
        } else {
            Ok(())
        }
    };

    // Physical reference: memcpy at every buffer size.
    let min_time = if cfg.quick {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(250)
    };
    let mut memcpy = Vec::new();
    let region = buf::memcpy_region(*cfg.buffers.iter().max().unwrap_or(&cfg.buffer), cfg.quick);
    let mut buffers_for_memcpy = cfg.buffers.clone();
    if !buffers_for_memcpy.contains(&cfg.buffer) {
        buffers_for_memcpy.push(cfg.buffer);
    }
    for &b in &buffers_for_memcpy {
        check_cancel()?;
        step(&format!("memcpy reference, {} copies", format_bytes(b)));
        if let Some(r) = buf::memcpy_bandwidth(b as usize, region, min_time) {
            memcpy.push(MemcpyPoint {
                buffer_bytes: b,
                bytes_per_s: r.round(),
            });
        }
    }
    let memcpy_at = |b: u64| {
        memcpy
            .iter()
            .find(|p| p.buffer_bytes == b)
            .map(|p| p.bytes_per_s)
    };

    let mut results = Vec::new();
    let verified = devs.verified;
    let pname = devs.primary_spec.as_str();

    // Raw capture of the device's own stream (source of the raw restore rows and of the arcs).
    let mut raw_capture: Option<(std::fs::File, u64)> = None;
    let need_raw_capture = cfg.has(Mode::Restore);
    step("capturing the device's raw state");
    if need_raw_capture {
        let mut f = tempfile()?;
        let mut b = alloc(cfg.buffer, "the raw capture buffer")?;
        let mut d = driver(&devs.primary)?;
        let r = raw::save(d.as_mut(), &mut b, Some(&mut f)).map_err(mig("raw capture"))?;
        raw_capture = Some((f, r.bytes));
    }

    for &b in &cfg.buffers {
        let bl = format_bytes(b);
        if cfg.has(Mode::Save) {
            check_cancel()?;
            step(&format!("raw-save and save, {bl} buffer, alternating"));
            let d = RefCell::new(driver(&devs.primary)?);
            let mut raw_buf = alloc(b, "the raw save buffer")?;
            let o = opts(cfg, b);
            let mut raw_bytes = 0;
            let mut stream_bytes = 0;
            let mut bytes = 0;
            let sink_name = cfg
                .to_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "discard".into());
            let raw_sample = || {
                let r = raw::save(d.borrow_mut().as_mut(), &mut raw_buf, None)
                    .map_err(mig("raw-save"))?;
                raw_bytes = r.bytes;
                Ok((r.seconds, r.downtime))
            };
            let (raw_t, t) = timed_pair(cfg, raw_sample, || {
                let mut d = d.borrow_mut();
                let rep = if let Some(p) = &cfg.to_file {
                    let f = std::fs::File::create(p)
                        .map_err(io(format!("creating {}", p.display())))?;
                    engine::save(d.as_mut(), f, &sink_name, &o)
                        .map_err(mig("save"))?
                        .1
                } else {
                    engine::save(d.as_mut(), std::io::sink(), "discard", &o)
                        .map_err(mig("save"))?
                        .1
                };
                stream_bytes = rep.stream_bytes;
                bytes = rep.bytes;
                Ok((rep.seconds, rep.stop_copy_seconds))
            })?;
            results.push(raw_row(RawRow {
                mode: "raw-save",
                devs: &devs,
                protocol: &protocol,
                buffer: b,
                bytes: raw_bytes,
                timed: raw_t,
                memcpy: memcpy_at(b),
                verified: false,
                sink: Some("discard"),
            }));
            let Timed {
                samples,
                peak,
                scope,
                cpu,
            } = t;
            results.push(make_row(RowInput {
                mode: "save",
                device: pname,
                protocol: protocol.clone(),
                buffer: b,
                buffers_bytes: RING as u64 * b,
                bytes,
                stream_bytes: Some(stream_bytes),
                seconds: samples.iter().map(|s| s.0).collect(),
                downtime: Some(samples.iter().map(|s| s.1).collect()),
                peak,
                scope,
                cpu: Some(cpu),
                verified: false,
                memcpy: memcpy_at(b),
                sink: Some(sink_name),
            }));
        }
        if cfg.has(Mode::Restore) {
            check_cancel()?;
            // The stream to restore: saved beforehand (untimed) into a temporary file.
            let d = RefCell::new(driver(&devs.primary)?);
            let o = opts(cfg, b);
            let f = tempfile()?;
            let (mut f, _) = engine::save(d.borrow_mut().as_mut(), f, "temporary stream", &o)
                .map_err(mig("saving the stream to restore"))?;
            let mut stream_bytes = 0;
            let mut bytes = 0;
            let restore_sample = || {
                f.seek(SeekFrom::Start(0))
                    .map_err(io("rewinding the saved stream"))?;
                let rep =
                    engine::restore(d.borrow_mut().as_mut(), &f, &o).map_err(mig("restore"))?;
                stream_bytes = rep.stream_bytes;
                bytes = rep.bytes;
                Ok((rep.seconds, ()))
            };
            let t = if let Some((raw_f, len)) = &raw_capture {
                step(&format!(
                    "raw-restore and restore, {bl} buffer, alternating"
                ));
                let mut raw_buf = alloc(b, "the raw restore buffer")?;
                let raw_sample = || {
                    let r = raw::restore(d.borrow_mut().as_mut(), raw_f, *len, &mut raw_buf)
                        .map_err(mig("raw-restore"))?;
                    Ok((r.seconds, r.downtime))
                };
                let (raw_t, t) = timed_pair(cfg, raw_sample, restore_sample)?;
                results.push(raw_row(RawRow {
                    mode: "raw-restore",
                    devs: &devs,
                    protocol: &protocol,
                    buffer: b,
                    bytes: *len,
                    timed: raw_t,
                    memcpy: memcpy_at(b),
                    verified,
                    sink: None,
                }));
                t
            } else {
                step(&format!("restore, {bl} buffer"));
                timed(cfg.repeat, restore_sample)?
            };
            let Timed {
                samples,
                peak,
                scope,
                cpu,
            } = t;
            let secs: Vec<f64> = samples.iter().map(|s| s.0).collect();
            results.push(make_row(RowInput {
                mode: "restore",
                device: pname,
                protocol: protocol.clone(),
                buffer: b,
                buffers_bytes: RING as u64 * b,
                bytes,
                stream_bytes: Some(stream_bytes),
                downtime: Some(secs.clone()),
                seconds: secs,
                peak,
                scope,
                cpu: Some(cpu),
                verified,
                memcpy: memcpy_at(b),
                sink: None,
            }));
        }
        if cfg.has(Mode::Live) {
            if let Some((dst, dst_name)) = &devs.live {
                check_cancel()?;
                step(&format!("live, {bl} buffer"));
                let mut s = driver(&devs.primary)?;
                let mut d = driver(dst)?;
                let mut o = opts(cfg, b);
                o.precopy = PrecopyPolicy {
                    max_rounds: cfg.precopy_rounds,
                    dirty_threshold: b,
                };
                let mut bytes = 0;
                let mut rounds = 0;
                let Timed {
                    samples,
                    peak,
                    scope,
                    cpu,
                } = timed(cfg.repeat, || {
                    let rep = engine::migrate(s.as_mut(), d.as_mut(), &o)
                        .map_err(mig("live migration"))?;
                    bytes = rep.bytes;
                    rounds = rep.rounds;
                    Ok((rep.seconds, rep.downtime_seconds))
                })?;
                let mut row = make_row(RowInput {
                    mode: "live",
                    device: &format!("{pname} -> {dst_name}"),
                    protocol: protocol.clone(),
                    buffer: b,
                    buffers_bytes: RING as u64 * b,
                    bytes,
                    stream_bytes: None,
                    seconds: samples.iter().map(|s| s.0).collect(),
                    downtime: Some(samples.iter().map(|s| s.1).collect()),
                    peak,
                    scope,
                    cpu: Some(cpu),
                    verified,
                    memcpy: memcpy_at(b),
                    sink: None,
                });
                row.precopy_rounds = Some(rounds);
                results.push(row);
            } else {
                step("live: skipped");
            }
        }
    }

    // QEMU's buffer sizes, for comparison.
    if cfg.has(Mode::Save) {
        check_cancel()?;
        step("qemu-style-save (1 MiB reads)");
        let m = memcpy_at(QEMU_SAVE_BUFFER).or(memcpy_at(cfg.buffer));
        results.push(raw_save_row(
            cfg,
            &devs,
            "qemu-style-save",
            QEMU_SAVE_BUFFER,
            m,
        )?);
    }
    if cfg.has(Mode::Restore) {
        if let Some((f, len)) = &raw_capture {
            check_cancel()?;
            step("qemu-style-restore (32 KiB writes)");
            let m = memcpy_at(QEMU_RESTORE_BUFFER).or(memcpy_at(cfg.buffer));
            results.push(raw_restore_row(
                &devs,
                cfg,
                "qemu-style-restore",
                QEMU_RESTORE_BUFFER,
                f,
                *len,
                m,
                &protocol,
            )?);
        }
    }

    // Arc latencies.
    let mut arc_rows = Vec::new();
    let mut arcs_device = None;
    if cfg.has(Mode::Arcs) {
        check_cancel()?;
        let (dev, name) = &devs.arcs;
        let mut d = driver(dev)?;
        let mut b = alloc(cfg.buffer, "the arc buffer")?;
        let mut f = tempfile()?;
        let cap =
            raw::save(d.as_mut(), &mut b, Some(&mut f)).map_err(mig("arcs: reference save"))?;
        // Arcs out of RESUMING write a whole state each time: bound that to ~256 MiB.
        let resume_reps =
            ((256u64 << 20) / cap.bytes.max(1)).clamp(3, cfg.arc_repeat as u64) as usize;
        let reference = arcs::Reference {
            file: &f,
            len: cap.bytes,
        };
        let flags = d.flags();
        let list = crate::migration::fsm::arcs(flags);
        let mut i = 0;
        if let Some((a, z)) = list.first() {
            step(&format!("arc {a} -> {z}"));
        }
        arc_rows = arcs::measure(
            d.as_mut(),
            cfg.arc_repeat,
            resume_reps,
            &reference,
            &mut b,
            || {
                i += 1;
                if let Some((a, z)) = list.get(i) {
                    step(&format!("arc {a} -> {z}"));
                }
            },
        );
        arcs_device = Some(name.clone());
    }

    // Parallel.
    let mut parallel = None;
    if cfg.has(Mode::Parallel) && devs.parallel.len() >= 2 {
        check_cancel()?;
        step(&format!("parallel, {} devices", devs.parallel.len()));
        let (row, mut rep) = parallel_row(cfg, &devs, &protocol, memcpy_at(cfg.buffer))?;
        rep.over_save_row = results
            .iter()
            .find(|r| r.mode == "save" && r.buffer_bytes == cfg.buffer)
            .and_then(|r| ratio(rep.aggregate_bytes_per_s, Some(r.throughput_bytes_per_s)))
            .map(round4);
        results.push(row);
        parallel = Some(rep);
    }

    let reference = Reference {
        memcpy_bytes_per_s: memcpy_at(cfg.buffer),
        memcpy_buffer_bytes: cfg.buffer,
        memcpy_region_bytes: region as u64,
        memcpy,
    };
    // The targets are defined for a GiB-scale state: fixed per-operation costs dominate the
    // tiny states of --quick, so they are not judged there.
    let targets = if cfg.quick {
        Vec::new()
    } else {
        targets(&results, parallel.as_ref(), cfg)
    };
    // The primary device must be RUNNING as found.
    if let Ok(mut d) = driver(&devs.primary) {
        if !matches!(d.state(), Ok(MigState::Running)) {
            let _ = crate::migration::recovery::recover(d.as_mut());
        }
    }
    Ok(BenchReport {
        schema_version: SCHEMA_VERSION,
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        machine: Machine::detect(),
        kernel: Kernel::detect(),
        settings: Settings {
            devices: if cfg.devices.is_empty() || devs.verified {
                vec![devs.primary_spec.clone()]
            } else {
                cfg.devices.iter().map(|d| d.to_string()).collect()
            },
            state_bytes: cfg.state,
            buffers: cfg.buffers.clone(),
            buffer_bytes: cfg.buffer,
            modes: cfg.modes.clone(),
            repeat: cfg.repeat,
            arc_repeat: cfg.arc_repeat,
            precopy_rounds: cfg.precopy_rounds,
            quick: cfg.quick,
            engine_ring: RING,
        },
        reference,
        results,
        arcs: arc_rows,
        arcs_device,
        parallel,
        targets,
        notes,
        total_seconds: t_start.elapsed().as_secs_f64(),
    })
}

fn raw_save_row(
    cfg: &BenchConfig,
    devs: &Devices,
    mode: &str,
    b: u64,
    memcpy: Option<f64>,
) -> Result<ResultRow, BenchError> {
    let mut d = driver(&devs.primary)?;
    let protocol = d.protocol().to_string();
    let mut buf = alloc(b, "the raw save buffer")?;
    let mut bytes = 0;
    let timed = timed(cfg.repeat, || {
        let r = raw::save(d.as_mut(), &mut buf, None).map_err(mig(mode.to_string()))?;
        bytes = r.bytes;
        Ok((r.seconds, r.downtime))
    })?;
    Ok(raw_row(RawRow {
        mode,
        devs,
        protocol: &protocol,
        buffer: b,
        bytes,
        timed,
        memcpy,
        verified: false,
        sink: Some("discard"),
    }))
}

/// A raw-loop row: what [`raw_row`] needs.
struct RawRow<'a> {
    mode: &'a str,
    devs: &'a Devices,
    protocol: &'a str,
    buffer: u64,
    bytes: u64,
    /// Samples of `(seconds, downtime)`.
    timed: Timed<f64>,
    memcpy: Option<f64>,
    verified: bool,
    sink: Option<&'a str>,
}

/// The row of a raw loop (one buffer, the device's own stream).
fn raw_row(r: RawRow<'_>) -> ResultRow {
    make_row(RowInput {
        mode: r.mode,
        device: &r.devs.primary_spec,
        protocol: r.protocol.to_string(),
        buffer: r.buffer,
        buffers_bytes: r.buffer,
        bytes: r.bytes,
        stream_bytes: None,
        seconds: r.timed.samples.iter().map(|s| s.0).collect(),
        downtime: Some(r.timed.samples.iter().map(|s| s.1).collect()),
        peak: r.timed.peak,
        scope: r.timed.scope,
        cpu: Some(r.timed.cpu),
        verified: r.verified,
        memcpy: r.memcpy,
        sink: r.sink.map(str::to_string),
    })
}

#[allow(clippy::too_many_arguments)]
fn raw_restore_row(
    devs: &Devices,
    cfg: &BenchConfig,
    mode: &str,
    b: u64,
    f: &std::fs::File,
    len: u64,
    memcpy: Option<f64>,
    protocol: &str,
) -> Result<ResultRow, BenchError> {
    let mut d = driver(&devs.primary)?;
    let mut buf = alloc(b, "the raw restore buffer")?;
    let timed = timed(cfg.repeat, || {
        let r = raw::restore(d.as_mut(), f, len, &mut buf).map_err(mig(mode.to_string()))?;
        Ok((r.seconds, r.downtime))
    })?;
    Ok(raw_row(RawRow {
        mode,
        devs,
        protocol,
        buffer: b,
        bytes: len,
        timed,
        memcpy,
        verified: devs.verified,
        sink: None,
    }))
}

fn parallel_row(
    cfg: &BenchConfig,
    devs: &Devices,
    protocol: &str,
    memcpy: Option<f64>,
) -> Result<(ResultRow, ParallelReport), BenchError> {
    let n = devs.parallel.len();
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    let mut o = opts(cfg, cfg.buffer);
    o.overlap = cores >= 2 * n;
    let mut drivers = Vec::with_capacity(n);
    for d in &devs.parallel {
        drivers.push(driver(d)?);
    }
    // One device alone (same code path) is measured between the parallel runs, so a change
    // in machine load affects both alike.
    let mut alone = Vec::new();
    let mut walls = Vec::new();
    let mut per_dev: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut total_bytes = 0;
    let scope = if rss::reset_peak() {
        RssScope::Mode
    } else {
        RssScope::Process
    };
    let mut cpu = 0.0;
    for _ in 0..cfg.repeat.max(1) {
        let r = engine::save(drivers[0].as_mut(), std::io::sink(), "discard", &o)
            .map_err(mig("parallel: one device"))?
            .1;
        alone.push(throughput(r.bytes, r.seconds).unwrap_or(0.0));
        let c0 = cpu_time();
        let barrier = Barrier::new(n + 1);
        let (wall, outs) = std::thread::scope(|s| {
            let handles: Vec<_> = drivers
                .iter_mut()
                .map(|d| {
                    let (barrier, o) = (&barrier, &o);
                    s.spawn(move || {
                        barrier.wait();
                        engine::save(d.as_mut(), std::io::sink(), "discard", o).map(|r| r.1)
                    })
                })
                .collect();
            barrier.wait();
            let t = Instant::now();
            let outs: Vec<_> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(MigrationError::ThreadPanicked("parallel save")))
                })
                .collect();
            (t.elapsed().as_secs_f64(), outs)
        });
        let mut bytes = 0;
        for (i, o) in outs.into_iter().enumerate() {
            let r = o.map_err(mig(format!("parallel: device {i}")))?;
            bytes += r.bytes;
            per_dev[i].push(throughput(r.bytes, r.seconds).unwrap_or(0.0));
        }
        total_bytes = bytes;
        walls.push(wall);
        cpu += cpu_time() - c0;
    }
    let one_rate = Summary::of(&alone).map(|s| s.median).unwrap_or(0.0);
    let peak = rss::current().peak_rss;
    let cpu = cpu / cfg.repeat.max(1) as f64;
    let s = Summary::of(&walls).unwrap_or(Summary {
        min: 0.0,
        median: 0.0,
        max: 0.0,
        count: 0,
    });
    let agg = throughput(total_bytes, s.median).unwrap_or(0.0);
    let scaling = ratio(agg, Some(one_rate)).map(round4).unwrap_or(0.0);
    let per_device_buffers = if o.overlap { RING } else { 1 };
    let buffers_bytes = (n * per_device_buffers) as u64 * cfg.buffer;
    let mut row = make_row(RowInput {
        mode: "parallel-save",
        device: &format!(
            "{} (+{} more)",
            devs.parallel[0].name(),
            n.saturating_sub(1)
        ),
        protocol: protocol.to_string(),
        buffer: cfg.buffer,
        buffers_bytes,
        bytes: total_bytes,
        stream_bytes: None,
        seconds: walls,
        downtime: None,
        peak,
        scope,
        cpu: Some(cpu),
        verified: false,
        memcpy,
        sink: Some("discard".into()),
    });
    row.devices = Some(n);
    row.scaling = Some(scaling);
    let rep = ParallelReport {
        devices: n,
        one_device_bytes_per_s: one_rate.round(),
        aggregate_bytes_per_s: agg.round(),
        scaling,
        per_device_bytes_per_s: per_dev
            .iter()
            .map(|v| Summary::of(v).map(|s| s.median.round()).unwrap_or(0.0))
            .collect(),
        cores,
        overlap: o.overlap,
        over_save_row: None,
    };
    Ok((row, rep))
}

/// The project's targets, checked where this run has the figures (main buffer rows).
fn targets(
    results: &[ResultRow],
    parallel: Option<&ParallelReport>,
    cfg: &BenchConfig,
) -> Vec<Target> {
    let mut t = Vec::new();
    let mut at_least = |name: &str, measured: Option<f64>, required: f64| {
        if let Some(m) = measured {
            t.push(Target {
                name: name.into(),
                measured: round4(m),
                required,
                comparison: "at_least".into(),
                met: m >= required,
            });
        }
    };
    let at = |mode: &str| {
        results
            .iter()
            .find(|r| r.mode == mode && r.buffer_bytes == cfg.buffer)
            .or_else(|| {
                results.iter().filter(|r| r.mode == mode).max_by(|a, b| {
                    a.throughput_bytes_per_s
                        .total_cmp(&b.throughput_bytes_per_s)
                })
            })
    };
    at_least(
        "save / memcpy",
        at("save").and_then(|r| r.ratio_to_memcpy),
        0.9,
    );
    at_least(
        "restore / memcpy",
        at("restore").and_then(|r| r.ratio_to_memcpy),
        0.9,
    );
    at_least(
        "live / memcpy",
        at("live").and_then(|r| r.ratio_to_memcpy),
        0.8,
    );
    if let Some(p) = parallel {
        if p.devices == 2 {
            at_least("2 devices in parallel / one device", Some(p.scaling), 1.7);
        }
    }
    let worst_rss = results
        .iter()
        .filter(|r| matches!(r.mode.as_str(), "save" | "restore" | "live"))
        .filter(|r| r.rss_scope == RssScope::Mode)
        .filter_map(|r| r.rss_over_buffers_bytes)
        .max();
    if let Some(w) = worst_rss {
        t.push(Target {
            name: "peak RSS above the configured buffers (MiB)".into(),
            measured: round4(w as f64 / (1 << 20) as f64),
            required: 64.0,
            comparison: "at_most".into(),
            met: w <= 64 << 20,
        });
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Output

impl BenchReport {
    /// The human-readable report.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "machine: {} ({} cores{}), kernel {} {}",
            m.cpu_model,
            m.cores,
            m.memory_bytes
                .map(|b| format!(", {}", format_bytes(b)))
                .unwrap_or_default(),
            self.kernel.release,
            self.kernel.machine
        );
        let _ = writeln!(s, "device:  {}", self.settings.devices.join(", "));
        if let Some(r) = self.reference.memcpy_bytes_per_s {
            let _ = writeln!(
                s,
                "memcpy:  {} ({} copies between two {} regions, one thread)",
                format_rate(r),
                format_bytes(self.reference.memcpy_buffer_bytes),
                format_bytes(self.reference.memcpy_region_bytes)
            );
        }
        if !self.results.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<20} {:>9} {:>10} {:>11} {:>8} {:>10} {:>10} {:>10} {:>10}",
                "mode",
                "buffer",
                "bytes",
                "throughput",
                "/memcpy",
                "time",
                "cpu",
                "downtime",
                "peak RSS"
            );
            for r in &self.results {
                let extra = match (r.devices, r.scaling, &self.parallel) {
                    (Some(n), Some(x), Some(p)) => {
                        let threads = if p.overlap {
                            "two threads each"
                        } else {
                            "one thread each"
                        };
                        let save = p
                            .over_save_row
                            .map(|v| format!(", {v:.2}x the save row"))
                            .unwrap_or_default();
                        format!(
                            "  {n} devices on {} cores, {threads}: {x:.2}x one device alone{save}",
                            p.cores
                        )
                    }
                    (Some(n), Some(x), None) => format!("  {n} devices, {x:.2}x one device"),
                    _ => String::new(),
                };
                let _ = writeln!(
                    s,
                    "{:<20} {:>9} {:>10} {:>11} {:>8} {:>10} {:>10} {:>10} {:>10}{}{}",
                    r.mode,
                    format_bytes(r.buffer_bytes),
                    format_bytes(r.bytes),
                    format_rate(r.throughput_bytes_per_s),
                    r.ratio_to_memcpy
                        .map(|x| format!("{x:.2}x"))
                        .unwrap_or_else(|| "-".into()),
                    format_seconds(r.seconds),
                    r.cpu_seconds
                        .map(format_seconds)
                        .unwrap_or_else(|| "-".into()),
                    r.downtime_s
                        .map(format_seconds)
                        .unwrap_or_else(|| "-".into()),
                    r.peak_rss_bytes
                        .map(format_bytes)
                        .unwrap_or_else(|| "-".into()),
                    if r.verified { "  verified" } else { "" },
                    extra
                );
            }
        }
        if !self.arcs.is_empty() {
            let _ = writeln!(
                s,
                "\narc latency on {} (min / median / max):",
                self.arcs_device.as_deref().unwrap_or("?")
            );
            for a in &self.arcs {
                let name = format!("{} -> {}", a.from, a.to);
                match (&a.error, a.min_s, a.median_s, a.max_s) {
                    (None, Some(lo), Some(me), Some(hi)) => {
                        let _ = writeln!(
                            s,
                            "  {name:<30} {:>10} {:>10} {:>10}  ({} runs)",
                            format_seconds(lo),
                            format_seconds(me),
                            format_seconds(hi),
                            a.repeats
                        );
                    }
                    (e, ..) => {
                        let _ = writeln!(
                            s,
                            "  {name:<30} failed: {}",
                            e.as_deref().unwrap_or("no sample")
                        );
                    }
                }
            }
        }
        if !self.targets.is_empty() {
            let _ = writeln!(
                s,
                "\nproject targets (defined for a 1 GiB simulated state, main buffer):"
            );
            for t in &self.targets {
                let _ = writeln!(
                    s,
                    "  {:<45} {:>8} ({} {})  {}",
                    t.name,
                    t.measured,
                    if t.comparison == "at_most" {
                        "<="
                    } else {
                        ">="
                    },
                    t.required,
                    if t.met { "met" } else { "MISSED" }
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(s, "\ntotal {}", format_seconds(self.total_seconds));
        s
    }

    /// The sweep chart: throughput against buffer size, one line per mode measured at more
    /// than one buffer size, plus the memcpy reference (dashed).
    pub fn to_svg(&self) -> String {
        let mut series: Vec<svg::Series> = Vec::new();
        for r in &self.results {
            match series.iter_mut().find(|s| s.name == r.mode) {
                Some(s) => s.points.push((r.buffer_bytes, r.throughput_bytes_per_s)),
                None => series.push(svg::Series {
                    name: r.mode.clone(),
                    points: vec![(r.buffer_bytes, r.throughput_bytes_per_s)],
                    dashed: false,
                }),
            }
        }
        series.retain(|s| s.points.len() > 1);
        if !self.reference.memcpy.is_empty() {
            series.push(svg::Series {
                name: "memcpy (1 thread)".into(),
                points: self
                    .reference
                    .memcpy
                    .iter()
                    .map(|p| (p.buffer_bytes, p.bytes_per_s))
                    .collect(),
                dashed: true,
            });
        }
        let title = format!(
            "vfio-harness bench: {}, {} state",
            self.settings
                .devices
                .first()
                .map(String::as_str)
                .unwrap_or("?"),
            self.results
                .iter()
                .find(|r| r.mode == "save" || r.mode == "raw-save")
                .map(|r| format_bytes(r.bytes))
                .unwrap_or_else(|| format_bytes(self.settings.state_bytes))
        );
        svg::line_chart(&title, &series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_params_defaults_and_overrides() {
        assert_eq!(sim_params("", 1024, &[]), "state=1K,seed=1");
        assert_eq!(sim_params("", 1000, &[]), "state=1000,seed=1");
        assert_eq!(
            sim_params("state=1G,chunk=64K", 1024, &[("verify-seed", "1".into())]),
            "state=1G,chunk=64K,seed=1,verify-seed=1"
        );
        assert_eq!(
            sim_params("seed=7,verify-seed=3", 5, &[("verify-seed", "7".into())]),
            "seed=7,verify-seed=7,state=5"
        );
        assert_eq!(sim_seed("state=5,seed=0x10"), 16);
        assert_eq!(sim_seed("state=5"), 1);
    }

    #[test]
    fn modes_parse() {
        assert_eq!("Live".parse::<Mode>().unwrap(), Mode::Live);
        assert!("fast".parse::<Mode>().is_err());
    }

    #[test]
    fn sweep_is_powers_of_two() {
        let s = sweep_buffers(false);
        assert_eq!(s.first(), Some(&4096));
        assert_eq!(s.last(), Some(&(64 << 20)));
        assert!(s.iter().all(|b| b.is_power_of_two()));
        assert_eq!(
            sweep_buffers(true),
            vec![4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20]
        );
    }

    #[test]
    fn rows_compute_ratio_and_rss_margin() {
        let r = make_row(RowInput {
            mode: "save",
            device: "sim",
            protocol: "v2".into(),
            buffer: 1 << 20,
            buffers_bytes: 4 << 20,
            bytes: 1 << 30,
            stream_bytes: None,
            seconds: vec![0.5, 0.25, 1.0],
            downtime: Some(vec![0.1, 0.3, 0.2]),
            peak: Some(10 << 20),
            scope: RssScope::Mode,
            cpu: Some(0.7),
            verified: true,
            memcpy: Some(2.0 * (1u64 << 30) as f64),
            sink: None,
        });
        assert_eq!(r.seconds, 0.5);
        assert_eq!((r.seconds_min, r.seconds_max, r.repeats), (0.25, 1.0, 3));
        assert_eq!(r.throughput_bytes_per_s, (2u64 << 30) as f64);
        assert_eq!(r.ratio_to_memcpy, Some(1.0));
        assert_eq!(r.downtime_s, Some(0.2));
        assert_eq!(r.rss_over_buffers_bytes, Some(6 << 20));
        assert_eq!(r.cpu_seconds, Some(0.7));
    }

    #[test]
    fn svg_of_a_sweep_has_modes_and_memcpy() {
        let row = |mode: &str, b: u64, t: f64| {
            let mut r = make_row(RowInput {
                mode,
                device: "sim",
                protocol: "v2".into(),
                buffer: b,
                buffers_bytes: b,
                bytes: 100,
                stream_bytes: None,
                seconds: vec![1.0],
                downtime: None,
                peak: None,
                scope: RssScope::Process,
                cpu: None,
                verified: false,
                memcpy: None,
                sink: None,
            });
            r.throughput_bytes_per_s = t;
            r
        };
        let rep = BenchReport {
            schema_version: SCHEMA_VERSION,
            harness_version: "0".into(),
            machine: Machine::default(),
            kernel: Kernel::default(),
            settings: Settings {
                devices: vec!["sim".into()],
                state_bytes: 100,
                buffers: vec![4096, 8192],
                buffer_bytes: 4096,
                modes: vec![Mode::Save],
                repeat: 1,
                arc_repeat: 1,
                precopy_rounds: 0,
                quick: true,
                engine_ring: RING,
            },
            reference: Reference {
                memcpy_bytes_per_s: Some(3e9),
                memcpy_buffer_bytes: 4096,
                memcpy_region_bytes: 1 << 20,
                memcpy: vec![
                    MemcpyPoint {
                        buffer_bytes: 4096,
                        bytes_per_s: 3e9,
                    },
                    MemcpyPoint {
                        buffer_bytes: 8192,
                        bytes_per_s: 3e9,
                    },
                ],
            },
            results: vec![
                row("save", 4096, 1e9),
                row("save", 8192, 2e9),
                row("qemu-style-save", 1 << 20, 1e9),
            ],
            arcs: vec![],
            arcs_device: None,
            parallel: None,
            targets: vec![],
            notes: vec![],
            total_seconds: 1.0,
        };
        let svg = rep.to_svg();
        assert!(svg.contains(r#"data-name="save""#));
        assert!(svg.contains(r#"data-name="memcpy (1 thread)""#));
        // Single-point modes are not lines on a sweep chart.
        assert!(!svg.contains("qemu-style-save"));
        let table = rep.to_table();
        assert!(table.contains("qemu-style-save"));
        // JSON round trip keeps the documented field names.
        let j = serde_json::to_value(&rep).unwrap();
        assert!(j["reference"]["memcpy_bytes_per_s"].is_number());
        assert_eq!(j["results"][0]["mode"], "save");
        assert!(j["results"][0]["throughput_bytes_per_s"].is_number());
    }
}
