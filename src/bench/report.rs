//! The report (`--json`, schema in `docs/bench-schema.md`) and how a row is computed from
//! its samples.

use super::arcs::ArcRow;
use super::machine::{Kernel, Machine};
use super::rss::RssScope;
use super::stats::{ratio, round4, throughput, Summary};
use super::Mode;
use serde::{Deserialize, Serialize};

/// Version of the JSON report layout (`docs/bench-schema.md`).
pub const SCHEMA_VERSION: u32 = 1;

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

/// What a row is computed from: the samples of one measured configuration and its context.
pub(super) struct RowInput<'a> {
    /// The row's `mode`.
    pub mode: &'a str,
    /// The row's `device`.
    pub device: &'a str,
    /// Migration protocol.
    pub protocol: String,
    /// Size of one read or write.
    pub buffer: u64,
    /// Buffer memory the data path allocates.
    pub buffers_bytes: u64,
    /// Device-state bytes moved in one transfer.
    pub bytes: u64,
    /// Stream bytes, framing included (save and restore).
    pub stream_bytes: Option<u64>,
    /// Wall time of each transfer, seconds.
    pub seconds: Vec<f64>,
    /// Downtime of each transfer, seconds.
    pub downtime: Option<Vec<f64>>,
    /// Peak RSS while the row ran.
    pub peak: Option<u64>,
    /// Whether `peak` is the row's own.
    pub scope: RssScope,
    /// CPU seconds per transfer.
    pub cpu: Option<f64>,
    /// Whether the receiving device checked every byte.
    pub verified: bool,
    /// The memcpy reference at the same buffer size, bytes per second.
    pub memcpy: Option<f64>,
    /// Where saved data went.
    pub sink: Option<String>,
}

/// The row of `r`: the median, fastest and slowest transfer, throughput, ratio to memcpy,
/// median downtime and the RSS margin over the buffers.
pub(super) fn make_row(r: RowInput<'_>) -> ResultRow {
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
