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
//! printable as a table ([`BenchReport::to_table`]) and plottable ([`svg`]).

pub mod arcs;
pub mod buf;
pub mod machine;
pub mod raw;
pub mod rss;
pub mod stats;
pub mod svg;

mod config;
mod devices;
mod error;
mod modes;
mod progress;
mod report;
mod table;
mod targets;
mod timing;

pub use config::{
    sweep_buffers, BenchConfig, Mode, DEFAULT_BUFFER, DEFAULT_STATE, QEMU_RESTORE_BUFFER,
    QEMU_SAVE_BUFFER, QUICK_STATE, SIM_ARC_STATE,
};
pub use devices::sim_params;
pub use error::BenchError;
pub use progress::Step;
pub use report::{
    BenchReport, MemcpyPoint, ParallelReport, Reference, ResultRow, Settings, Target,
    SCHEMA_VERSION,
};
pub use timing::cpu_time;

use progress::Progress;
use std::time::Instant;

/// Runs the benchmark. `progress` is called before every step.
///
/// The order is fixed: the memcpy reference at every buffer size, the raw capture, then for
/// each buffer size the `save` rows (`raw-save` and `save`, alternating), the `restore` rows
/// (`raw-restore` and `restore`, alternating) and the `live` row; then `qemu-style-save`,
/// `qemu-style-restore`, the arcs and the parallel run.
pub fn run(cfg: &BenchConfig, progress: &dyn Fn(&Step<'_>)) -> Result<BenchReport, BenchError> {
    let t_start = Instant::now();
    cfg.validate()?;
    let mut notes = Vec::new();
    let devs = devices::open(cfg, &mut notes)?;
    let protocol = devices::driver(&devs.primary)?.protocol().to_string();
    let progress = Progress::new(cfg, &devs, progress)?;
    let mut run = modes::Run::new(cfg, devs, protocol, progress);

    let region = modes::memcpy::reference(&mut run)?;
    modes::restore::capture(&mut run)?;
    for &b in &cfg.buffers {
        if cfg.has(Mode::Save) {
            modes::save::rows(&mut run, b)?;
        }
        if cfg.has(Mode::Restore) {
            modes::restore::rows(&mut run, b)?;
        }
        if cfg.has(Mode::Live) {
            modes::live::row(&mut run, b)?;
        }
    }
    // QEMU's buffer sizes, for comparison.
    if cfg.has(Mode::Save) {
        modes::save::qemu_style(&mut run)?;
    }
    if cfg.has(Mode::Restore) {
        modes::restore::qemu_style(&mut run)?;
    }
    let arcs = if cfg.has(Mode::Arcs) {
        Some(modes::arcs::measure(&mut run)?)
    } else {
        None
    };
    let parallel = if cfg.has(Mode::Parallel) && run.devs.parallel.len() >= 2 {
        Some(modes::parallel::measure(&mut run)?)
    } else {
        None
    };
    Ok(run.finish(region, arcs, parallel, notes, t_start))
}

#[cfg(test)]
mod tests;
