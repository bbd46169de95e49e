//! Save/restore throughput and downtime benchmarks (`vfio-harness bench`): what a user's
//! transfer costs, against what the machine can do.
//!
//! By default the device is the simulator made realistic (`backing=memory`: its state is
//! held in memory and copied out and in like a driver's `copy_to_user` / `copy_from_user`;
//! half of its pages zeros). One run measures, on the same machine and in the same process:
//! - **transfer blocks**: each operation (`save`, `restore`, `live`: device to device) on each
//!   path (`memory`, `file`, `file-fsync`, `file-direct`, `pipe`, `tcp`), every kind of loop
//!   timed in the same run with the order rotated between repetitions: the path's
//!   **physical reference** ([`mod@reference`]: memory bandwidth for the copies the path makes,
//!   or the sink's or source's own rate), the **raw** loop (one buffer, [`raw`]), the
//!   **QEMU-style** loop and the **whole-state** loop (the approach of rust-vmm
//!   `vfio-ioctls` and cloud-hypervisor, with its peak memory; [`loops`]), and the
//!   **harness** ([`crate::migration::engine`]). Each row carries its ratios, each with its
//!   reference named;
//! - the **overlap proof**: a device capped at `D` saving into a sink capped at `S`, the
//!   harness against `min(D, S)` and the serial loop against `1/(1/D + 1/S)`;
//! - the **downtime sweep**: dirty rate against link rate, measured downtime next to the
//!   predictions of [`engine::predicted_downtime`](crate::migration::engine::predicted_downtime);
//! - **several devices at once** (1, 2, 4): aggregate rate and scaling, with the thread budget;
//! - **compression over a capped link**: sparse and random state saved with and without
//!   `auto` compression, the effective rate against the link rate;
//! - the **latency of every single arc** of the v2 state machine ([`arcs`]).
//!
//! Every row carries its peak resident memory (reset per row when the kernel allows it, see
//! [`rss`]) with the simulated device memory taken out. The report says which machine and
//! which CPU features the hash and the copies use ([`machine`]); it is serialisable
//! (`--json`, schema in `docs/bench-schema.md`), printable as a table
//! ([`BenchReport::to_table`]) and plottable ([`svg`]: throughput against buffer size, and
//! the downtime sweep).

pub mod arcs;
pub mod buf;
pub mod downtime;
pub mod loops;
pub mod machine;
pub mod raw;
pub mod reference;
pub mod rss;
pub mod stats;
pub mod svg;

mod config;
mod devices;
mod error;
mod io;
mod modes;
mod progress;
mod report;
mod svg_xy;
mod table;
mod targets;
mod timing;

pub use config::{
    sweep_buffers, BenchConfig, DataPath, Kind, Mode, DEFAULT_BUFFER, DEFAULT_COMPRESS_LINK,
    DEFAULT_DEVICE_RATE, DEFAULT_SINK_RATE, DEFAULT_STATE, QEMU_RESTORE_BUFFER, QEMU_SAVE_BUFFER,
    QUICK_STATE, SIDE_STATE, SIM_ARC_STATE, SIM_DEFAULTS, SWEEP_STATE,
};
pub use devices::sim_params;
pub use error::BenchError;
pub use progress::Step;
pub use report::{
    BenchReport, DowntimePoint, DowntimeReport, OverlapReport, ParallelPoint, ParallelReport,
    RatioTo, ResultRow, Settings, Target, TransferSample, SCHEMA_VERSION,
};
pub use timing::cpu_time;

use progress::Progress;
use std::time::Instant;

/// Runs the benchmark. `progress` is called before every step.
///
/// The order is fixed: the `save` blocks (every buffer size, every path), the `restore`
/// blocks (per buffer size: the states to restore saved once, then every path), the `live`
/// blocks, then the arcs, the parallel run, the overlap proof, the downtime sweep and the
/// compression rows; last the whole-state loops of the save, restore and live blocks at the
/// main buffer, whose rows join their blocks (each of them maps, fills and frees a buffer the
/// size of the state, which slowed the transfers run after it).
pub fn run(cfg: &BenchConfig, progress: &dyn Fn(&Step<'_>)) -> Result<BenchReport, BenchError> {
    let t_start = Instant::now();
    cfg.validate()?;
    let mut notes = Vec::new();
    // A path this machine lacks (TCP on a kernel without networking) is left out with a note.
    let mut cfg = cfg.clone();
    cfg.paths = io::available_paths(&cfg.paths, io::probe, &mut notes);
    let cfg = &cfg;
    let devs = devices::open(cfg, &mut notes)?;
    let protocol = devices::driver(&devs.primary)?.protocol().to_string();
    let progress = Progress::new(cfg, &devs, progress)?;
    let mut run = modes::Run::new(cfg, devs, protocol, progress, notes);
    if let Err(e) = std::fs::create_dir_all(&run.dir) {
        return Err(error::io(format!("creating {}", run.dir.display()))(e));
    }

    use modes::Pass;
    if cfg.has(Mode::Save) {
        for &b in &cfg.buffers {
            for &p in &cfg.paths {
                modes::save::block(&mut run, p, b, Pass::Main)?;
            }
        }
    }
    // The states the restore blocks read at the main buffer, kept for the whole-state pass.
    let mut restore_main = None;
    let mut restore_paths = Vec::new();
    if cfg.has(Mode::Restore) {
        let measured: Vec<DataPath> = cfg
            .paths
            .iter()
            .copied()
            .filter(|&p| modes::restore::measures(&mut run, p))
            .collect();
        restore_paths = modes::restore::order(&measured);
        if !restore_paths.is_empty() {
            for &b in &cfg.buffers {
                let saved = modes::restore::prepare(&mut run, b)?;
                for &p in &restore_paths {
                    modes::restore::block(&mut run, p, &saved, Pass::Main)?;
                }
                if b == cfg.buffer {
                    restore_main = Some(saved);
                }
            }
        }
    }
    if cfg.has(Mode::Live) {
        for &b in &cfg.buffers {
            for &p in &cfg.paths {
                modes::live::block(&mut run, p, b, Pass::Main)?;
            }
        }
    }
    let mut extras = modes::Extras::default();
    if cfg.has(Mode::Arcs) {
        extras.arcs = Some(modes::arcs::measure(&mut run)?);
    }
    if cfg.has(Mode::Parallel) {
        extras.parallel = Some(modes::parallel::measure(&mut run)?);
    }
    if cfg.has(Mode::Overlap) {
        extras.overlap = modes::overlap::measure(&mut run)?;
    }
    if cfg.has(Mode::Downtime) {
        extras.downtime = modes::downtime::measure(&mut run)?;
    }
    if cfg.has(Mode::Compress) {
        modes::compress::measure(&mut run)?;
    }
    if cfg.buffers.contains(&cfg.buffer) {
        // Restore first: its two files (twice the state, in memory on a tmpfs `--dir`) are
        // removed before the save loops hold a whole state and write another file.
        if let Some(saved) = restore_main.take() {
            for &p in &restore_paths {
                modes::restore::block(&mut run, p, &saved, Pass::WholeState)?;
            }
        }
        if cfg.has(Mode::Save) {
            for &p in &cfg.paths {
                modes::save::block(&mut run, p, cfg.buffer, Pass::WholeState)?;
            }
        }
        if cfg.has(Mode::Live) {
            for &p in &cfg.paths {
                modes::live::block(&mut run, p, cfg.buffer, Pass::WholeState)?;
            }
        }
    }
    Ok(run.finish(extras, t_start))
}

#[cfg(test)]
mod tests;
