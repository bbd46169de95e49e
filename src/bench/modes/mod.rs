//! The measurements of a run, one file per mode, sharing a [`Run`]: the settings, the open
//! devices, the memcpy reference, the progress counter and the rows measured so far.
//!
//! [`super::run`] calls them in this order: the memcpy reference ([`memcpy`]), the raw
//! capture ([`restore::capture`]), then for each buffer size `save`, `restore` and `live`,
//! then the QEMU-style rows, the arcs and the parallel run; [`Run::finish`] assembles the
//! report.

pub(super) mod arcs;
pub(super) mod live;
pub(super) mod memcpy;
pub(super) mod parallel;
pub(super) mod restore;
pub(super) mod save;

use super::arcs::ArcRow;
use super::buf;
use super::config::BenchConfig;
use super::devices::{driver, Devices};
use super::error::{io, BenchError};
use super::machine::{Kernel, Machine};
use super::progress::Progress;
use super::report::{
    make_row, BenchReport, MemcpyPoint, ParallelReport, Reference, ResultRow, RowInput, Settings,
    SCHEMA_VERSION,
};
use super::targets::targets;
use super::timing::Timed;
use crate::device::MigState;
use crate::mem::AnonBuf;
use crate::migration::engine::{Options, PrecopyPolicy, RING};
use std::time::Instant;

/// A run in progress.
pub(super) struct Run<'a> {
    /// The settings.
    pub cfg: &'a BenchConfig,
    /// The devices, by role.
    pub devs: Devices,
    /// Migration protocol of the primary device.
    pub protocol: String,
    /// The memcpy reference at every buffer size measured so far.
    pub memcpy: Vec<MemcpyPoint>,
    /// The raw capture of the primary device's own stream and its length (with `restore`).
    pub raw_capture: Option<(std::fs::File, u64)>,
    /// Rows measured so far, in report order.
    pub results: Vec<ResultRow>,
    /// The progress counter.
    pub progress: Progress<'a>,
}

impl<'a> Run<'a> {
    /// A run of `cfg` on `devs`, nothing measured yet.
    pub fn new(
        cfg: &'a BenchConfig,
        devs: Devices,
        protocol: String,
        progress: Progress<'a>,
    ) -> Run<'a> {
        Run {
            cfg,
            devs,
            protocol,
            memcpy: Vec::new(),
            raw_capture: None,
            results: Vec::new(),
            progress,
        }
    }

    /// The memcpy reference at buffer size `b`, when measured.
    pub fn memcpy_at(&self, b: u64) -> Option<f64> {
        self.memcpy
            .iter()
            .find(|p| p.buffer_bytes == b)
            .map(|p| p.bytes_per_s)
    }

    /// The report: the rows measured, `arcs` and `parallel` when they ran, the reference
    /// (memcpy over `region`-byte regions) and the targets. The primary device is left
    /// RUNNING as found.
    pub fn finish(
        self,
        region: usize,
        arcs: Option<(Vec<ArcRow>, String)>,
        parallel: Option<ParallelReport>,
        mut notes: Vec<String>,
        t_start: Instant,
    ) -> BenchReport {
        let Run {
            cfg,
            devs,
            memcpy,
            results,
            ..
        } = self;
        let memcpy_at_main = memcpy
            .iter()
            .find(|p| p.buffer_bytes == cfg.buffer)
            .map(|p| p.bytes_per_s);
        let reference = Reference {
            memcpy_bytes_per_s: memcpy_at_main,
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
                if let Err(e) = crate::migration::recovery::recover_device(d.as_mut()) {
                    notes.push(format!(
                        "{}: not RUNNING after the benchmark: {e}",
                        d.device().name()
                    ));
                }
            }
        }
        let (arc_rows, arcs_device) = match arcs {
            Some((rows, device)) => (rows, Some(device)),
            None => (Vec::new(), None),
        };
        BenchReport {
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
        }
    }
}

/// A measurement buffer of `bytes` (see [`buf::page_buf`]).
fn alloc(bytes: u64, what: &str) -> Result<AnonBuf, BenchError> {
    usize::try_from(bytes)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))
        .and_then(buf::page_buf)
        .map_err(|source| BenchError::Alloc {
            bytes,
            what: what.into(),
            source,
        })
}

/// The engine's options for a row at buffer size `buffer`.
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

/// An anonymous temporary file in `$TMPDIR`.
fn tempfile() -> Result<std::fs::File, BenchError> {
    tempfile::tempfile().map_err(io("creating a temporary file in $TMPDIR"))
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
