//! The measurements of a run, one file per mode, sharing a [`Run`]: the settings, the open
//! devices, the progress counter, the rows measured so far and the notes.
//!
//! The transfer modes (`save`, `restore`, `live`) measure **blocks**: one operation on one
//! path at one buffer size, every kind of loop of the block timed in the same run with the
//! order rotated between repetitions ([`super::timing::timed_group`]): the path's physical
//! reference, the raw loop, the QEMU-style loop and the whole-state loop (at the main buffer:
//! their buffer sizes are their own), and the harness. The whole-state loops run in a second
//! pass ([`Pass::WholeState`]) after every other measurement of the run (freeing their
//! state-sized buffers slowed the transfers run next), and their rows join their blocks.
//! [`run_block`] makes the rows and their ratios; [`Run::finish`] assembles the report.

pub(super) mod arcs;
pub(super) mod compress;
pub(super) mod downtime;
pub(super) mod live;
pub(super) mod overlap;
pub(super) mod parallel;
mod references;
pub(super) mod restore;
pub(super) mod save;

use super::arcs::ArcRow;
use super::buf;
use super::config::{BenchConfig, DataPath, Kind};
use super::devices::{driver, Devices};
use super::error::{io, mig, BenchError};
use super::io::Sink;
use super::machine::{self, Kernel, Machine};
use super::progress::Progress;
use super::report::{
    assign_ratios, block_start, make_row, BenchReport, DowntimeReport, OverlapReport,
    ParallelReport, ResultRow, RowInput, Settings, SCHEMA_VERSION,
};
use super::targets::{self, targets};
use super::timing::{timed_group, Job, Timed};
use crate::device::{DeviceHandle, MigState};
use crate::mem::AnonBuf;
use crate::migration::engine::{self, Options, PrecopyPolicy, SaveReport, RING};
use crate::migration::MigrationDriver;
use crate::units::format_bytes;
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A run in progress.
pub(super) struct Run<'a> {
    /// The settings.
    pub cfg: &'a BenchConfig,
    /// The devices, by role.
    pub devs: Devices,
    /// Migration protocol of the primary device.
    pub protocol: String,
    /// Directory of the file paths.
    pub dir: PathBuf,
    /// Rows measured so far, in report order.
    pub results: Vec<ResultRow>,
    /// What was skipped, and why.
    pub notes: Vec<String>,
    /// The progress counter.
    pub progress: Progress<'a>,
}

/// Which loops a transfer block runs (the rows of the second pass join their blocks:
/// [`insert_late`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::bench) enum Pass {
    /// Every loop but the whole-state one.
    Main,
    /// The whole-state loop alone (main buffer only), after every other measurement of the
    /// run: it maps, fills and frees a buffer the size of the state on every repetition, and a
    /// transfer run in the seconds after such a free was measured up to five times slower
    /// (hw-notes/bench.md, session 10), in its own block or in the next one.
    WholeState,
}

impl Pass {
    /// Whether the pass runs at all in a block at the main buffer (`main`) or another one.
    pub(in crate::bench) fn runs_at(self, main: bool) -> bool {
        self == Pass::Main || main
    }

    /// What the progress label adds for this pass.
    pub(in crate::bench) fn label(self) -> &'static str {
        match self {
            Pass::Main => "",
            Pass::WholeState => ", whole-state",
        }
    }

    /// Keeps the contenders of this pass.
    pub(in crate::bench) fn keep(self, contenders: &mut Vec<Contender<'_>>) {
        contenders.retain(|c| (c.kind == Kind::WholeState) == (self == Pass::WholeState));
    }
}

/// Adds `rows` of a [`Pass::WholeState`] block to `results`, into the block the other loops
/// made (the one of the same operation and path whose harness row has the main buffer
/// `main_buffer`), in the documented order of kinds, and computes that block's ratios again;
/// a row with no such block is added at the end.
pub(in crate::bench) fn insert_late(
    results: &mut Vec<ResultRow>,
    main_buffer: u64,
    rows: Vec<ResultRow>,
) {
    let order = |r: &ResultRow| r.kind.rank();
    for row in rows {
        let harness = results.iter().position(|r| {
            r.op == row.op
                && r.path == row.path
                && r.kind == Kind::Harness
                && r.buffer_bytes == main_buffer
                && r.devices.is_none()
                && r.compression.is_none()
        });
        let Some(h) = harness else {
            results.push(row);
            continue;
        };
        let start = block_start(results, h);
        let at = (start..h)
            .find(|&i| order(&results[i]) > order(&row))
            .unwrap_or(h);
        results.insert(at, row);
        assign_ratios(&mut results[start..=h + 1]);
    }
}

/// What the modes other than the transfer blocks report.
#[derive(Default)]
pub(super) struct Extras {
    /// Arc latencies and the device they were measured on.
    pub arcs: Option<(Vec<ArcRow>, String)>,
    /// Parallel scaling.
    pub parallel: Option<ParallelReport>,
    /// The overlap proof.
    pub overlap: Option<OverlapReport>,
    /// The downtime sweep.
    pub downtime: Option<DowntimeReport>,
}

impl<'a> Run<'a> {
    /// A run of `cfg` on `devs`, nothing measured yet.
    pub fn new(
        cfg: &'a BenchConfig,
        devs: Devices,
        protocol: String,
        progress: Progress<'a>,
        notes: Vec<String>,
    ) -> Run<'a> {
        let dir = cfg.file_dir();
        // Files a killed run left behind (SIGKILL skips every cleanup) go now.
        crate::migration::engine::target::remove_stale(&dir);
        Run {
            cfg,
            devs,
            protocol,
            dir,
            results: Vec::new(),
            notes,
            progress,
        }
    }

    /// Adds the rows a block's `pass` measured to the report ([`insert_late`] for the
    /// whole-state pass).
    pub fn add(&mut self, pass: Pass, rows: Vec<ResultRow>) {
        let repeat = self.cfg.repeat.max(1);
        if let Some(h) = rows
            .iter()
            .find(|r| r.kind == Kind::Harness && r.repeats > repeat)
        {
            self.note(format!(
                "{} ({} buffer): a target was not settled after {repeat} transfers of each \
                 loop; the block went on to {}",
                targets::block_name(&h.op, h.path.as_str()),
                format_bytes(h.buffer_bytes),
                h.repeats
            ));
        }
        match pass {
            Pass::Main => self.results.extend(rows),
            Pass::WholeState => insert_late(&mut self.results, self.cfg.buffer, rows),
        }
    }

    /// Notes `text` once.
    pub fn note(&mut self, text: String) {
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }

    /// Counts the next step: the block `name` (`save -> file`, ...) at buffer size `b`, in
    /// `pass`.
    pub fn step_block(&mut self, name: &str, b: u64, pass: Pass) {
        self.progress.step(&format!(
            "{name}, {} buffer{}",
            format_bytes(b),
            pass.label()
        ));
    }

    /// The bytes a save of `drv` moves, which the block's references are sized for: the
    /// device's STOP_COPY estimate, or the configured state size when it gives none (noted
    /// when asking for it failed).
    pub fn state_of(&mut self, drv: &mut dyn MigrationDriver, block: &str) -> u64 {
        match drv.stop_copy_size() {
            Ok(Some(n)) => n,
            Ok(None) => self.cfg.state,
            Err(e) => {
                self.note(format!(
                    "{block}: the device's STOP_COPY size could not be read ({e}); the \
                     references are sized for the configured state, {}",
                    format_bytes(self.cfg.state)
                ));
                self.cfg.state
            }
        }
    }

    /// Minimum time of a memory reference measurement.
    pub fn min_time(&self) -> Duration {
        if self.cfg.quick {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(250)
        }
    }

    /// Whether `bytes` more can be held in memory now (whole-state loops): `MemAvailable`
    /// must exceed them by 512 MiB. Notes why not, naming `what`.
    pub fn can_hold(&mut self, bytes: u64, what: &str) -> bool {
        match machine::mem_available() {
            Some(avail) if avail < bytes.saturating_add(512 << 20) => {
                self.note(format!(
                    "{what}: skipped, it holds {} in memory and only {} is available",
                    format_bytes(bytes),
                    format_bytes(avail)
                ));
                false
            }
            _ => true,
        }
    }

    /// The report: the rows measured and the other modes' results, with the targets. The
    /// primary device is left RUNNING as found.
    pub fn finish(self, extras: Extras, t_start: Instant) -> BenchReport {
        let Run {
            cfg,
            devs,
            dir,
            results,
            mut notes,
            ..
        } = self;
        // The targets are defined for a GiB-scale state: fixed per-operation costs dominate the
        // tiny states of --quick, so they are not judged there.
        let targets = if cfg.quick {
            Vec::new()
        } else {
            targets(&results, extras.overlap.as_ref())
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
        let (arc_rows, arcs_device) = match extras.arcs {
            Some((rows, device)) => (rows, Some(device)),
            None => (Vec::new(), None),
        };
        let machine = Machine::detect();
        if !machine.memory_reclaim.is_empty() {
            notes.push(format!(
                "this machine takes memory back while the benchmark runs ({}): the rows that \
                 allocate fresh memory (file sinks, whole-state) or read files vary more between \
                 runs; compare rows within one block",
                machine.memory_reclaim.join("; ")
            ));
        }
        let sim = devs.primary_sim();
        BenchReport {
            schema_version: SCHEMA_VERSION,
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            machine,
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
                paths: cfg.paths.clone(),
                dir: dir.display().to_string(),
                repeat: cfg.repeat,
                max_repeat: cfg.max_repeat.max(cfg.repeat),
                warmup: cfg.warmup,
                arc_repeat: cfg.arc_repeat,
                precopy_rounds: cfg.precopy_rounds,
                quick: cfg.quick,
                engine_ring: RING,
                engine_overlap: cfg.overlap,
                engine_max_poll_us: u64::try_from(cfg.max_poll.as_micros()).unwrap_or(u64::MAX),
                engine_direct_io: cfg.direct_io,
                zero_page_fraction: sim.map(|p| crate::sim::zero_pages_fraction(p.zero_pages)),
                backing: sim.map(|p| {
                    match p.backing {
                        crate::sim::Backing::Memory => "memory",
                        crate::sim::Backing::Generated => "generated",
                    }
                    .to_string()
                }),
            },
            results,
            arcs: arc_rows,
            arcs_device,
            parallel: extras.parallel,
            overlap: extras.overlap,
            downtime: extras.downtime,
            targets,
            notes,
            total_seconds: t_start.elapsed().as_secs_f64(),
        }
    }
}

/// A measurement buffer of `bytes` (see [`buf::page_buf`]).
fn alloc(bytes: u64, what: &str) -> Result<AnonBuf, BenchError> {
    alloc_io(bytes, what, false)
}

/// [`alloc`], in huge pages when `huge` (a loop's buffer of direct I/O: [`buf::io_buf`]).
fn alloc_io(bytes: u64, what: &str, huge: bool) -> Result<AnonBuf, BenchError> {
    usize::try_from(bytes)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))
        .and_then(|n| buf::io_buf(n, huge))
        .map_err(|source| BenchError::Alloc {
            bytes,
            what: what.into(),
            source,
        })
}

/// An anonymous temporary file in `$TMPDIR`.
fn tempfile() -> Result<std::fs::File, BenchError> {
    tempfile::tempfile().map_err(io("creating a temporary file in $TMPDIR"))
}

/// How a harness row's engine ran, for its description.
fn overlapped(overlap: bool) -> &'static str {
    if overlap {
        "overlapped"
    } else {
        "on one thread"
    }
}

/// Bytes of the engine's buffers for one side of a harness row with `o` and buffers of `b`
/// bytes: its ring when overlapped, one buffer otherwise; `huge` when they are in huge pages
/// (`o.huge_buffers`, or a save `save_to` writes direct).
fn engine_buffers(o: &Options, huge: bool, b: u64) -> u64 {
    // In huge pages a buffer is whole 2 MiB pages, all resident; its chunk holds the frame
    // header too, so a buffer of whole huge pages takes one more.
    let each = if huge {
        (b + 1).next_multiple_of(crate::mem::HUGE_PAGE as u64)
    } else {
        b
    };
    if o.overlap {
        crate::migration::engine::RING as u64 * each
    } else {
        each
    }
}

/// Memory of an engine direct stage ([`crate::migration::engine::DIRECT_STAGE`] bytes in
/// huge pages, all resident).
fn direct_stage_bytes() -> u64 {
    (crate::migration::engine::DIRECT_STAGE as u64).next_multiple_of(crate::mem::HUGE_PAGE as u64)
}

/// The engine's options for a row at buffer size `buffer` (no pre-copy).
fn opts(cfg: &BenchConfig, buffer: u64) -> Options {
    Options {
        buffer_size: buffer as usize,
        precopy: PrecopyPolicy::default(),
        cancel: cfg.cancel.clone(),
        progress: None,
        check_identity: true,
        overlap: cfg.overlap,
        max_poll: cfg.max_poll,
        compression: crate::migration::stream::Compression::None,
        direct_io: cfg.direct_io,
        ..Options::default()
    }
}

/// What one transfer of a block measured besides its time.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sample {
    /// Time the device was not running, seconds.
    pub downtime: Option<f64>,
    /// Device-state bytes moved (for a reference: bytes copied or written).
    pub bytes: u64,
    /// Stream bytes (the harness's framing included).
    pub stream_bytes: Option<u64>,
}

impl Sample {
    /// What a harness save moved.
    pub(super) fn of_save(rep: &SaveReport) -> Sample {
        Sample {
            downtime: Some(rep.stop_copy_seconds),
            bytes: rep.bytes,
            stream_bytes: Some(rep.stream_bytes),
        }
    }
}

/// The harness's job on a sink opened afresh for every transfer by `open`: the engine's save
/// of `dr` into it, timed from the open until the sink's far end is done. `mode` and `sink`
/// (`capped link`) name them in errors.
pub(super) fn save_into_fresh_sink<'a>(
    dr: &'a RefCell<Box<dyn MigrationDriver>>,
    o: Options,
    mode: &'static str,
    sink: &'static str,
    open: impl Fn() -> Sink + 'a,
) -> Job<'a, Sample> {
    Box::new(move || {
        let Sink { mut writer, end } = open();
        let t0 = Instant::now();
        let rep = engine::save(dr.borrow_mut().as_mut(), &mut writer, sink, &o)
            .map_err(mig(format!("{mode}: save")))?
            .1;
        end.finish(writer)
            .map_err(io(format!("{mode}: the {sink}")))?;
        Ok((t0.elapsed().as_secs_f64(), Sample::of_save(&rep)))
    })
}

/// One loop of a block.
pub(super) struct Contender<'a> {
    /// Which loop.
    pub kind: Kind,
    /// Size of one of its reads or writes.
    pub buffer: u64,
    /// Buffer memory it allocates by design.
    pub buffers_bytes: u64,
    /// What it measures (the row's `what`).
    pub what: String,
    /// One transfer: its seconds and what it moved.
    pub job: Job<'a, Sample>,
}

/// The identity of a block: one operation on one path.
pub(super) struct BlockId<'s> {
    /// `save`, `restore`, `live`, ...
    pub op: &'s str,
    /// The path.
    pub path: DataPath,
    /// The row's device.
    pub device: &'s str,
    /// Migration protocol.
    pub protocol: &'s str,
    /// Simulated device memory resident meanwhile.
    pub device_memory: u64,
}

/// Times every contender of a block `cfg.repeat` times (rotating the order), running `check`
/// after every sample of a device-moving loop (outside the measurement; `verified` says
/// whether it checks anything), and returns the rows with their ratios.
/// Untimed rounds that open a block of loops `kinds`: `cfg.warmup`, but none in a block of
/// whole-state loops alone, each of whose transfers maps and frees a buffer of the state's
/// size, so that its first is no different from the others (and each takes seconds).
fn warmup_of(cfg: &BenchConfig, kinds: &[Kind]) -> usize {
    if kinds.iter().all(|&k| k == Kind::WholeState) {
        0
    } else {
        cfg.warmup
    }
}

pub(super) fn run_block(
    cfg: &BenchConfig,
    id: &BlockId<'_>,
    mut contenders: Vec<Contender<'_>>,
    verified: bool,
    mut check: impl FnMut() -> Result<(), BenchError>,
) -> Result<Vec<ResultRow>, BenchError> {
    let kinds: Vec<Kind> = contenders.iter().map(|c| c.kind).collect();
    let mut jobs: Vec<Job<'_, Sample>> = Vec::with_capacity(contenders.len());
    let mut meta = Vec::with_capacity(contenders.len());
    for c in contenders.drain(..) {
        meta.push((c.kind, c.buffer, c.buffers_bytes, c.what));
        jobs.push(c.job);
    }
    let timed = timed_group(
        cfg,
        &mut jobs,
        warmup_of(cfg, &kinds),
        |j| {
            if kinds[j] == Kind::Reference {
                Ok(())
            } else {
                check()
            }
        },
        |so_far| {
            let moved: Vec<Vec<(f64, u64)>> = so_far
                .iter()
                .map(|s| s.iter().map(|(t, x)| (*t, x.bytes)).collect())
                .collect();
            let moved: Vec<&[(f64, u64)]> = moved.iter().map(Vec::as_slice).collect();
            targets::undecided(id.op, &kinds, &moved)
        },
    )?;
    drop(jobs);
    let mut rows: Vec<ResultRow> = meta
        .into_iter()
        .zip(timed)
        .map(|((kind, buffer, buffers_bytes, what), t)| {
            let Timed {
                samples,
                positions,
                peak,
                scope,
                cpu,
            } = t;
            let last = samples.last().map(|s| s.1).unwrap_or_default();
            let downtime: Vec<f64> = samples.iter().filter_map(|s| s.1.downtime).collect();
            make_row(RowInput {
                op: id.op,
                path: id.path,
                kind,
                device: id.device,
                protocol: id.protocol,
                what,
                buffer,
                buffers_bytes,
                bytes: last.bytes,
                stream_bytes: last.stream_bytes,
                seconds: samples.iter().map(|s| s.0).collect(),
                positions,
                downtime: (!downtime.is_empty()).then_some(downtime),
                peak,
                scope,
                device_memory: id.device_memory,
                cpu: Some(cpu),
                verified: verified && kind != Kind::Reference,
            })
        })
        .collect();
    // List in the documented order, whatever order they ran in.
    rows.sort_by_key(|r| r.kind.rank());
    assign_ratios(&mut rows);
    Ok(rows)
}

/// Checks that `dev` (a simulated device) holds exactly the state it should
/// ([`crate::sim::SimDevice::verify_state`]); nothing for kernel devices.
pub(super) fn verify_device(dev: &DeviceHandle, what: &str) -> Result<(), BenchError> {
    match dev.as_any().downcast_ref::<crate::sim::SimDevice>() {
        Some(s) => s.verify_state().map_err(|why| BenchError::Verify {
            what: what.into(),
            why,
        }),
        None => Ok(()),
    }
}

/// Wraps an I/O failure of a sink or source.
pub(super) fn io_of(what: &str) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    io(what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_opens_with_the_warmup_unless_it_is_whole_state_alone() {
        let mut cfg = BenchConfig::new(false);
        assert_eq!(cfg.warmup, crate::bench::config::DEFAULT_WARMUP);
        assert_eq!(BenchConfig::new(true).warmup, 0);
        cfg.warmup = 2;
        assert_eq!(
            warmup_of(&cfg, &[Kind::Reference, Kind::Raw, Kind::Harness]),
            2
        );
        assert_eq!(warmup_of(&cfg, &[Kind::WholeState]), 0);
    }
}
