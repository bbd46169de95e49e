//! A run's settings: [`BenchConfig`], the modes ([`Mode`]) and the default sizes.

use super::error::BenchError;
use crate::device::{DeviceSpec, OpenOptions};
use crate::migration::engine;
use crate::units::format_bytes;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Default buffer (chunk) size of the harness rows: the engine's default, so `bench`
/// measures what `save` / `restore` / `migrate` do by default (the sweep on the reference
/// machine peaks between 256 KiB and 2 MiB, where the engine's ring stays in cache).
pub const DEFAULT_BUFFER: u64 = engine::DEFAULT_BUFFER as u64;
/// Default simulated state size (the targets are defined for 4 GiB: `--state 4G`).
pub const DEFAULT_STATE: u64 = 1 << 30;
/// State size with `--quick`.
pub const QUICK_STATE: u64 = 8 << 20;
/// QEMU's read size for saving (`VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE`, 1 MiB).
pub const QEMU_SAVE_BUFFER: u64 = 1 << 20;
/// QEMU's write size for restoring (its migration stream buffer, 32 KiB).
pub const QEMU_RESTORE_BUFFER: u64 = 32 << 10;
/// State of the simulated device the arc latencies are measured on (arcs out of RESUMING
/// write a full state each time, so it is kept small).
pub const SIM_ARC_STATE: u64 = 64 << 10;
/// Largest state of each device in the parallel mode, of the capped device in the overlap mode
/// (1 GiB: enough for a steady rate, and four devices fit a small machine's memory).
pub const SIDE_STATE: u64 = 1 << 30;
/// Largest state of the downtime sweep's source (each point migrates it a few times).
pub const SWEEP_STATE: u64 = 256 << 20;
/// Default device rate `D` of the overlap mode (bytes per second).
pub const DEFAULT_DEVICE_RATE: u64 = 2 << 30;
/// Default sink rate `S` of the overlap mode (bytes per second).
pub const DEFAULT_SINK_RATE: u64 = 1 << 30;
/// Default link rate of the compress mode (bytes per second).
pub const DEFAULT_COMPRESS_LINK: u64 = 1 << 30;
/// Default of [`BenchConfig::max_repeat`]: a transfer block whose verdict the first three
/// repetitions leave open is timed five times (a median that two outlying transfers of a
/// row cannot move).
pub const DEFAULT_MAX_REPEAT: usize = 5;
/// Default of [`BenchConfig::warmup`]: one untimed round of every loop opens each block. In
/// two whole runs of session 33 without it, a row's first transfer was its slowest in 25 and
/// 29 rows of 60, where chance would give 15 and 18 (a restore's reference read the freshly
/// written stream file 9 times slower in its first transfer than in its others:
/// hw-notes/bench.md).
pub const DEFAULT_WARMUP: usize = 1;
/// Defaults of what `bench` adds to a `sim:` spec the user did not set: a realistic device
/// (state in memory, half of its pages zeros: device memory is often mostly empty).
pub const SIM_DEFAULTS: [(&str, &str); 2] = [("backing", "memory"), ("zero-pages", "0.5")];

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
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
    /// 1, 2, 4 devices saving at once: aggregate rate and scaling over one device.
    Parallel,
    /// The device capped at `D` and the sink at `S`: the harness against `min(D, S)`.
    Overlap,
    /// Dirty rate against link rate: measured downtime next to the predicted one.
    Downtime,
    /// A capped link, sparse and random state, with and without compression: the effective
    /// rate against the link rate.
    Compress,
}

impl Mode {
    /// Every mode, in run order.
    pub const ALL: [Mode; 8] = [
        Mode::Save,
        Mode::Restore,
        Mode::Live,
        Mode::Arcs,
        Mode::Parallel,
        Mode::Overlap,
        Mode::Downtime,
        Mode::Compress,
    ];

    /// Its command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Save => "save",
            Mode::Restore => "restore",
            Mode::Live => "live",
            Mode::Arcs => "arcs",
            Mode::Parallel => "parallel",
            Mode::Overlap => "overlap",
            Mode::Downtime => "downtime",
            Mode::Compress => "compress",
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

/// Where a transfer's data goes, comes from or travels (the `path` of a result row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DataPath {
    /// Nothing leaves the process: save into a discarding writer, device to device in-process.
    Memory,
    /// A file in the page cache (`--dir`, default `$TMPDIR`).
    File,
    /// A file, `fsync`'d before the transfer counts as done (save only).
    FileFsync,
    /// A file opened with `O_DIRECT` (page-aligned buffers, whole blocks; the page cache is
    /// bypassed, so this is the disk).
    FileDirect,
    /// A pipe to (or from) another thread of this process.
    Pipe,
    /// A TCP connection over the loopback interface.
    Tcp,
}

impl DataPath {
    /// Every path, in run order.
    pub const ALL: [DataPath; 6] = [
        DataPath::Memory,
        DataPath::File,
        DataPath::FileFsync,
        DataPath::FileDirect,
        DataPath::Pipe,
        DataPath::Tcp,
    ];

    /// Its name in the report and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DataPath::Memory => "memory",
            DataPath::File => "file",
            DataPath::FileFsync => "file-fsync",
            DataPath::FileDirect => "file-direct",
            DataPath::Pipe => "pipe",
            DataPath::Tcp => "tcp",
        }
    }
}

impl std::str::FromStr for DataPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataPath::ALL
            .into_iter()
            .find(|m| m.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!(
                    "unknown path {s:?} (one of: {})",
                    DataPath::ALL.map(|m| m.as_str()).join(", ")
                )
            })
    }
}

/// Which loop moved the data (the `kind` of a result row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Kind {
    /// The path's physical reference: the copies the path makes, without a device (memory
    /// bandwidth), or the sink's or source's own rate (a file, a pipe, a socket).
    Reference,
    /// The simplest loop doing the same work with one buffer: device read, sink write.
    Raw,
    /// QEMU's approach: 1 MiB device reads into 32 KiB stream writes; 32 KiB restore writes.
    QemuStyle,
    /// The whole state in memory first (rust-vmm `vfio-ioctls`' `read_migration_data_to_end`,
    /// cloud-hypervisor), then written out.
    WholeState,
    /// The harness's engine: framing and checksums, reading overlapped with writing.
    Harness,
}

impl Kind {
    /// Every kind, in the order a block of rows is listed.
    pub const ALL: [Kind; 5] = [
        Kind::Reference,
        Kind::Raw,
        Kind::QemuStyle,
        Kind::WholeState,
        Kind::Harness,
    ];

    /// Where it is listed in a block: its place in [`Kind::ALL`].
    pub fn rank(self) -> usize {
        Kind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(Kind::ALL.len())
    }

    /// Its name in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Reference => "reference",
            Kind::Raw => "raw",
            Kind::QemuStyle => "qemu-style",
            Kind::WholeState => "whole-state",
            Kind::Harness => "harness",
        }
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
    /// Where the data goes (save), comes from (restore) or travels (live).
    pub paths: Vec<DataPath>,
    /// Directory of the file paths' files (default: `$TMPDIR`).
    pub dir: Option<PathBuf>,
    /// Device counts of the parallel mode (simulated: opened; kernel: the first N given).
    pub parallel_devices: Vec<usize>,
    /// Device rate `D` and sink rate `S` of the overlap mode, bytes per second.
    pub overlap_rates: (u64, u64),
    /// Link rate of the compress mode, bytes per second.
    pub compress_link: u64,
    /// Link rates of the downtime sweep, bytes per second.
    pub sweep_links: Vec<u64>,
    /// Dirty rates of the downtime sweep, as fractions of the link rate.
    pub sweep_dirty: Vec<f64>,
    /// Repetitions of each transfer (the median is reported).
    pub repeat: usize,
    /// Repetitions a `save`, `restore` or `live` block grows to while one of its targets is
    /// not settled after `repeat` (the transfers' spread reaches across the required ratio,
    /// so one more slow or fast transfer could turn the verdict): the block goes on, in the
    /// same rotated order, until every verdict holds at both ends of the spread or it has this
    /// many. The median of them all is reported. At most `repeat` turns it off.
    pub max_repeat: usize,
    /// Untimed rounds of every loop before a block's timed repetitions (not in a block of
    /// whole-state loops alone, whose every transfer maps its buffer afresh): what the first
    /// transfers after a block's preparation meet (files just written, memory just freed)
    /// does not go into one row's figures.
    pub warmup: usize,
    /// Repetitions of each arc.
    pub arc_repeat: usize,
    /// Pre-copy rounds of the live mode (0: stop-and-copy only).
    pub precopy_rounds: u32,
    /// Whether the harness runs the device side and the stream side on two threads (the
    /// engine's default, `engine::Options::overlap`); off, the harness rows show what the
    /// engine costs on one thread.
    pub overlap: bool,
    /// How long the harness's threads poll before they wait (`engine::Options::max_poll`,
    /// the engine's default unless `--max-poll` says otherwise).
    pub max_poll: std::time::Duration,
    /// Whether the harness writes its durable file save (`file-fsync`) with `O_DIRECT`
    /// where the file system takes it (`engine::Options::direct_io`, the engine's default)
    /// or through the page cache (`--buffered`).
    pub direct_io: bool,
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
            paths: DataPath::ALL.to_vec(),
            dir: None,
            parallel_devices: vec![1, 2, 4],
            overlap_rates: (DEFAULT_DEVICE_RATE, DEFAULT_SINK_RATE),
            compress_link: DEFAULT_COMPRESS_LINK,
            sweep_links: if quick {
                vec![256 << 20]
            } else {
                vec![1 << 30, 4 << 30]
            },
            sweep_dirty: if quick {
                vec![0.0, 0.5, 1.0]
            } else {
                vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.5]
            },
            repeat: if quick { 1 } else { 3 },
            max_repeat: if quick { 1 } else { DEFAULT_MAX_REPEAT },
            warmup: if quick { 0 } else { DEFAULT_WARMUP },
            arc_repeat: if quick { 5 } else { 50 },
            precopy_rounds: 3,
            overlap: true,
            max_poll: engine::DEFAULT_MAX_POLL,
            direct_io: true,
            quick,
            open: OpenOptions::default(),
            cancel: None,
        }
    }

    /// Whether mode `m` is to run.
    pub(super) fn has(&self, m: Mode) -> bool {
        self.modes.contains(&m)
    }

    /// The directory of the file paths' files.
    pub(super) fn file_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Whether the run was cancelled (Ctrl-C).
    pub(super) fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// [`BenchError::Interrupted`] once the run was cancelled.
    pub(super) fn check_cancel(&self) -> Result<(), BenchError> {
        if self.cancelled() {
            Err(BenchError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Refuses settings that cannot run: no buffer, or a buffer outside what one stream
    /// chunk can hold.
    pub(super) fn validate(&self) -> Result<(), BenchError> {
        if self.buffers.is_empty() {
            return Err(BenchError::Config("no buffer size to measure".into()));
        }
        if self.parallel_devices.contains(&0) {
            return Err(BenchError::Config(
                "a parallel run needs at least 1 device".into(),
            ));
        }
        let (d, s) = self.overlap_rates;
        if d == 0 || s == 0 || self.compress_link == 0 || self.sweep_links.contains(&0) {
            return Err(BenchError::Config("rates must be above 0 bytes/s".into()));
        }
        if self
            .sweep_dirty
            .iter()
            .any(|x| !x.is_finite() || *x < 0.0 || *x > 100.0)
        {
            return Err(BenchError::Config(
                "dirty rates are fractions of the link rate, 0..=100".into(),
            ));
        }
        for &b in self.buffers.iter().chain(std::iter::once(&self.buffer)) {
            if b == 0 || b > crate::migration::stream::MAX_CHUNK_LEN as u64 {
                return Err(BenchError::Config(format!(
                    "buffer size {} is outside 1 B..={}",
                    format_bytes(b),
                    format_bytes(crate::migration::stream::MAX_CHUNK_LEN as u64)
                )));
            }
        }
        Ok(())
    }
}
