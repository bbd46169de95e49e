//! The report (`--json`, schema in `docs/bench-schema.md`) and how a row is computed from
//! its samples.

use super::arcs::ArcRow;
use super::config::{DataPath, Kind};
use super::machine::{Kernel, Machine};
use super::rss::RssScope;
use super::stats::{ratio, round4, throughput, Summary};
use super::Mode;
use serde::{Deserialize, Serialize};

/// Version of the JSON report layout (`docs/bench-schema.md`).
pub const SCHEMA_VERSION: u32 = 2;

/// One ratio of a row's throughput to another's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioTo {
    /// The reference: a `kind` of the same block (`raw`, `qemu-style`, `whole-state`,
    /// `reference`), or a named rate (`min(D, S)`, `serial`).
    pub to: String,
    /// This row's throughput over the reference's.
    pub ratio: f64,
}

/// One timed transfer of a row, in the order the row's transfers ran.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferSample {
    /// Its wall time, seconds.
    pub seconds: f64,
    /// Where it ran in its block, counting every loop's transfers from 0 (the loops of a
    /// block alternate, so two rows' samples with neighbouring positions ran back to back).
    /// The whole-state rows run in a pass of their own and count from 0 there.
    pub position: usize,
}

/// One measured transfer configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// What was done: `save`, `restore`, `live` (device to device), `parallel-save`,
    /// `overlap-save`.
    pub op: String,
    /// Where the data went, came from or travelled: `memory`, `file`, `file-fsync`,
    /// `file-direct`, `pipe`, `tcp`.
    pub path: DataPath,
    /// Which loop moved it: `reference`, `raw`, `qemu-style`, `whole-state`, `harness`.
    pub kind: Kind,
    /// Device(s) measured (`src -> dst` for live; the first of N for parallel).
    pub device: String,
    /// Migration protocol.
    pub protocol: String,
    /// What the row measured: the sink or source, or for a reference row the operation.
    pub what: String,
    /// Buffer (chunk) size of one read or write.
    pub buffer_bytes: u64,
    /// Memory the data path allocates for its data by design (the engine's ring, one buffer
    /// for the raw loops, the whole state for whole-state, times devices for parallel).
    pub buffers_bytes: u64,
    /// Device-state bytes moved (all devices for parallel).
    pub bytes: u64,
    /// Stream bytes (framing included), for the harness's save and restore.
    pub stream_bytes: Option<u64>,
    /// Median wall time of one transfer, seconds.
    pub seconds: f64,
    /// Fastest transfer, seconds.
    pub seconds_min: f64,
    /// Slowest transfer, seconds.
    pub seconds_max: f64,
    /// Transfers timed.
    pub repeats: usize,
    /// Every timed transfer, in the order they ran (empty where the row's transfers were not
    /// timed one by one).
    #[serde(default)]
    pub samples: Vec<TransferSample>,
    /// `bytes / seconds` (median time).
    pub throughput_bytes_per_s: f64,
    /// Throughput over the throughput of [`ResultRow::ratio_to`].
    pub ratio: Option<f64>,
    /// The main reference of this row (harness: the raw loop of the same path; the other
    /// loops: the path's physical reference).
    pub ratio_to: Option<String>,
    /// Every ratio computed for this row, each with its reference named.
    pub ratios: Vec<RatioTo>,
    /// Time the device (for live: the service) was not running, median, seconds.
    pub downtime_s: Option<f64>,
    /// Peak resident memory of the process while the row ran (`VmHWM`).
    pub peak_rss_bytes: Option<u64>,
    /// Whether `peak_rss_bytes` is the row's own peak or the process's.
    pub rss_scope: RssScope,
    /// Simulated device memory resident in the process meanwhile (`backing=memory`): a real
    /// device holds it in its own memory.
    pub device_memory_bytes: u64,
    /// `peak_rss_bytes - device_memory_bytes`: what the process held for everything else.
    pub data_path_rss_bytes: Option<i64>,
    /// `data_path_rss_bytes - buffers_bytes`: memory beyond the data path's buffers (binary,
    /// libraries, stacks, everything else it holds).
    pub rss_over_buffers_bytes: Option<i64>,
    /// CPU time (user + system, all threads) of one transfer, seconds: above `seconds`
    /// when the data path keeps more than one core busy.
    pub cpu_seconds: Option<f64>,
    /// Whether the receiving device was checked to hold exactly the state sent.
    pub verified: bool,
    /// Devices (parallel rows).
    pub devices: Option<usize>,
    /// Aggregate over one device alone (parallel rows).
    pub scaling: Option<f64>,
    /// Pre-copy rounds run (live).
    pub precopy_rounds: Option<u32>,
    /// How the stream's chunks were encoded (`compress-save` rows; the other harness rows
    /// use the engine's default, `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<crate::migration::stream::Compression>,
    /// What the device's state held (`compress-save` rows: `50 % zero pages`, `random`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Parallel scaling at one device count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParallelPoint {
    /// Devices run at once.
    pub devices: usize,
    /// Whether each device's save overlapped reading and writing on two threads.
    pub overlap: bool,
    /// Threads the harness used in all.
    pub threads: usize,
    /// All devices together: total bytes over wall time (the harness).
    pub aggregate_bytes_per_s: f64,
    /// `aggregate / ` the aggregate with one device.
    pub scaling: Option<f64>,
    /// Each device's own throughput.
    pub per_device_bytes_per_s: Vec<f64>,
    /// The raw loops of as many devices at once, aggregate.
    pub raw_aggregate_bytes_per_s: Option<f64>,
    /// Their scaling over one raw loop.
    pub raw_scaling: Option<f64>,
}

/// Parallel scaling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParallelReport {
    /// CPUs available to the process.
    pub cores: usize,
    /// State of each device.
    pub state_bytes: u64,
    /// How threads were given to devices, and why.
    pub thread_budget: String,
    /// One point per device count.
    pub points: Vec<ParallelPoint>,
}

/// The overlap proof: a device capped at `D` saving into a sink capped at `S`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverlapReport {
    /// Device rate `D`, bytes per second.
    pub device_bytes_per_s: f64,
    /// Sink rate `S`, bytes per second.
    pub sink_bytes_per_s: f64,
    /// `min(D, S)`: what a data path that overlaps reading and writing reaches.
    pub ideal_bytes_per_s: f64,
    /// `1 / (1/D + 1/S)`: what a serial loop reaches.
    pub serial_bytes_per_s: f64,
    /// The harness's rate.
    pub harness_bytes_per_s: Option<f64>,
    /// The raw (serial) loop's rate.
    pub raw_bytes_per_s: Option<f64>,
    /// `harness / ideal`.
    pub harness_over_ideal: Option<f64>,
    /// `raw / serial`.
    pub raw_over_serial: Option<f64>,
    /// State saved.
    pub state_bytes: u64,
}

/// One point of the downtime sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DowntimePoint {
    /// Link rate (the source device's cap), bytes per second.
    pub link_bytes_per_s: f64,
    /// The source's dirty rate, bytes per second.
    pub dirty_bytes_per_s: f64,
    /// `dirty / link`.
    pub dirty_over_link: f64,
    /// Pre-copy rounds run.
    pub rounds: u32,
    /// Whether pre-copy converged under the threshold.
    pub converged: bool,
    /// Bytes pending when the source was stopped (the last round's end).
    pub remaining_bytes: u64,
    /// Pre-copy bytes over pre-copy time: the drain rate measured before stopping.
    pub drain_bytes_per_s: Option<f64>,
    /// [`predicted_downtime`](crate::migration::engine::predicted_downtime) of the two
    /// above, seconds.
    pub predicted_s: Option<f64>,
    /// The prediction the engine's switchover decision made before stopping the source
    /// (the device's STOP_COPY size estimate over the same drain rate; the migrate report's
    /// `predicted_downtime_seconds`), seconds.
    #[serde(default)]
    pub engine_predicted_s: Option<f64>,
    /// Measured downtime (source stopped until destination running), seconds.
    pub measured_s: f64,
    /// What the closed-form model of [`super::downtime::remaining_after_rounds`] predicts
    /// from the rates alone, seconds.
    pub model_s: Option<f64>,
    /// Bytes moved while stopped.
    pub stopcopy_bytes: u64,
}

/// The downtime sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DowntimeReport {
    /// State of the source device.
    pub state_bytes: u64,
    /// Most pre-copy rounds per migration.
    pub max_rounds: u32,
    /// Pre-copy stops when no more than this is pending.
    pub threshold_bytes: u64,
    /// The points, by link then dirty rate.
    pub points: Vec<DowntimePoint>,
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
    /// The measured ratio at the two ends of the repetitions' spread, `[low, high]`: the
    /// row's slowest transfer against its reference's fastest, and its fastest against the
    /// reference's slowest (against a fixed rate, the row's own extremes). `None` where the
    /// check is not a ratio of timed rows or a row was timed only once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<[f64; 2]>,
    /// Whether the verdict holds at both ends of `spread` (`false`: the repetitions spread
    /// across `required`, and another run may well turn `met`). `None` without a spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<bool>,
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
    /// Paths measured.
    pub paths: Vec<DataPath>,
    /// Directory of the file paths.
    pub dir: String,
    /// Repetitions per transfer.
    pub repeat: usize,
    /// Repetitions a save, restore or live block grew to at most while a target of it was
    /// not settled (`--max-repeat`); older reports lack it (0).
    #[serde(default)]
    pub max_repeat: usize,
    /// Untimed rounds of every loop that opened each block (`--warmup`); older reports lack
    /// it (0: none).
    #[serde(default)]
    pub warmup: usize,
    /// Repetitions per arc.
    pub arc_repeat: usize,
    /// Pre-copy rounds of the live mode.
    pub precopy_rounds: u32,
    /// Quick (CI) mode.
    pub quick: bool,
    /// Buffers in flight in the engine.
    pub engine_ring: usize,
    /// Whether the harness overlapped the device side and the stream side on two threads
    /// (`--no-overlap` clears it); the parallel mode and the live-over-TCP harness row may
    /// still run a side on one thread by the thread budget, and say so.
    pub engine_overlap: bool,
    /// How long the harness's threads polled before they waited, microseconds
    /// (`--max-poll`; the engine's `Options::max_poll`).
    pub engine_max_poll_us: u64,
    /// Whether the harness's durable file save (`file-fsync`) asked for `O_DIRECT` (false
    /// with `--buffered`; the engine's `Options::direct_io`). The rows' `what` says whether
    /// the file system took it.
    #[serde(default)]
    pub engine_direct_io: bool,
    /// Fraction of the simulated state's pages that are zeros (null for kernel devices).
    pub zero_page_fraction: Option<f64>,
    /// Where the simulated state lives (`memory`, `generated`; null for kernel devices).
    pub backing: Option<String>,
}

/// The whole report (`--json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Layout version of this report.
    pub schema_version: u32,
    /// Version of the harness.
    pub harness_version: String,
    /// The machine, with the CPU features the hash and the copies use.
    pub machine: Machine,
    /// The kernel.
    pub kernel: Kernel,
    /// Settings.
    pub settings: Settings,
    /// Transfer rows, in blocks of one operation and path.
    pub results: Vec<ResultRow>,
    /// Arc latencies (device measured in `arcs_device`).
    pub arcs: Vec<ArcRow>,
    /// Device the arcs were measured on.
    pub arcs_device: Option<String>,
    /// Parallel scaling.
    pub parallel: Option<ParallelReport>,
    /// The overlap proof.
    pub overlap: Option<OverlapReport>,
    /// The downtime sweep.
    pub downtime: Option<DowntimeReport>,
    /// Project targets checked against this run.
    pub targets: Vec<Target>,
    /// Things that were skipped, and why.
    pub notes: Vec<String>,
    /// Wall time of the whole run, seconds.
    pub total_seconds: f64,
}

/// What a row is computed from: the samples of one measured configuration and its context.
pub(super) struct RowInput<'a> {
    /// The row's `op`.
    pub op: &'a str,
    /// The row's `path`.
    pub path: DataPath,
    /// The row's `kind`.
    pub kind: Kind,
    /// The row's `device`.
    pub device: &'a str,
    /// Migration protocol.
    pub protocol: &'a str,
    /// The row's `what`.
    pub what: String,
    /// Size of one read or write.
    pub buffer: u64,
    /// Buffer memory the data path allocates.
    pub buffers_bytes: u64,
    /// Device-state bytes moved in one transfer.
    pub bytes: u64,
    /// Stream bytes, framing included.
    pub stream_bytes: Option<u64>,
    /// Wall time of each transfer, seconds.
    pub seconds: Vec<f64>,
    /// Where each transfer ran in its block ([`TransferSample::position`]); empty when not
    /// known, and then no samples are listed.
    pub positions: Vec<usize>,
    /// Downtime of each transfer, seconds.
    pub downtime: Option<Vec<f64>>,
    /// Peak RSS while the row ran.
    pub peak: Option<u64>,
    /// Whether `peak` is the row's own.
    pub scope: RssScope,
    /// Simulated device memory resident meanwhile.
    pub device_memory: u64,
    /// CPU seconds per transfer.
    pub cpu: Option<f64>,
    /// Whether the receiving device was checked.
    pub verified: bool,
}

/// The row of `r`: the median, fastest and slowest transfer, throughput, median downtime and
/// the memory figures. Ratios are set by [`assign_ratios`] once the block is complete.
pub(super) fn make_row(r: RowInput<'_>) -> ResultRow {
    let s = Summary::of(&r.seconds).unwrap_or(Summary {
        min: 0.0,
        median: 0.0,
        max: 0.0,
        count: 0,
    });
    let tput = throughput(r.bytes, s.median).unwrap_or(0.0);
    let data_path = r.peak.map(|p| p as i64 - r.device_memory as i64);
    ResultRow {
        op: r.op.to_string(),
        path: r.path,
        kind: r.kind,
        device: r.device.to_string(),
        protocol: r.protocol.to_string(),
        what: r.what,
        buffer_bytes: r.buffer,
        buffers_bytes: r.buffers_bytes,
        bytes: r.bytes,
        stream_bytes: r.stream_bytes,
        seconds: s.median,
        seconds_min: s.min,
        seconds_max: s.max,
        repeats: s.count,
        samples: if r.positions.len() == r.seconds.len() {
            r.seconds
                .iter()
                .zip(&r.positions)
                .map(|(&seconds, &position)| TransferSample { seconds, position })
                .collect()
        } else {
            Vec::new()
        },
        throughput_bytes_per_s: tput.round(),
        ratio: None,
        ratio_to: None,
        ratios: Vec::new(),
        downtime_s: r.downtime.and_then(|d| Summary::of(&d)).map(|d| d.median),
        peak_rss_bytes: r.peak,
        rss_scope: r.scope,
        device_memory_bytes: r.device_memory,
        data_path_rss_bytes: data_path,
        rss_over_buffers_bytes: data_path.map(|d| d - r.buffers_bytes as i64),
        cpu_seconds: r.cpu.map(round4),
        verified: r.verified,
        devices: None,
        scaling: None,
        precopy_rounds: None,
        compression: None,
        content: None,
    }
}

/// What each kind is compared with, in order; the first one present is its `ratio_to`.
fn references_of(kind: Kind) -> &'static [Kind] {
    match kind {
        Kind::Harness => &[
            Kind::Raw,
            Kind::QemuStyle,
            Kind::WholeState,
            Kind::Reference,
        ],
        Kind::Raw | Kind::QemuStyle | Kind::WholeState => &[Kind::Reference],
        Kind::Reference => &[],
    }
}

/// Where the block of the row at `h` (a block's last row, its harness) starts in `results`:
/// a block is listed in the documented order of kinds, so it is the rows before `h` of the
/// same operation and path, each of a kind listed before the next one's.
pub(super) fn block_start(results: &[ResultRow], h: usize) -> usize {
    let Some(last) = results.get(h) else {
        return h;
    };
    let mut start = h;
    while start > 0
        && results[start - 1].op == last.op
        && results[start - 1].path == last.path
        && results[start - 1].kind.rank() < results[start].kind.rank()
    {
        start -= 1;
    }
    start
}

/// Sets the ratios of a block's rows (one operation, path and buffer): the harness against
/// every other loop and the physical reference, the other loops against the reference.
pub(super) fn assign_ratios(rows: &mut [ResultRow]) {
    let rate = |rows: &[ResultRow], k: Kind| {
        rows.iter()
            .find(|r| r.kind == k)
            .map(|r| r.throughput_bytes_per_s)
    };
    let rates: Vec<(Kind, Option<f64>)> = Kind::ALL.iter().map(|&k| (k, rate(rows, k))).collect();
    for r in rows.iter_mut() {
        r.ratios = references_of(r.kind)
            .iter()
            .filter_map(|k| {
                let reference = rates.iter().find(|(x, _)| x == k).and_then(|(_, v)| *v);
                ratio(r.throughput_bytes_per_s, reference).map(|x| RatioTo {
                    to: k.as_str().to_string(),
                    ratio: round4(x),
                })
            })
            .collect();
        if let Some(first) = r.ratios.first() {
            r.ratio = Some(first.ratio);
            r.ratio_to = Some(first.to.clone());
        }
    }
}
