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

    /// Whether mode `m` is to run.
    pub(super) fn has(&self, m: Mode) -> bool {
        self.modes.contains(&m)
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
