//! Progress reporting: the [`Step`] events a run emits before each measurement, and the
//! count of steps a configuration plans.

use super::config::{BenchConfig, DataPath, Mode};
use super::devices::{driver, Devices};
use super::error::BenchError;

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

/// Counts the steps of a run and reports each to the caller's callback.
pub(super) struct Progress<'a> {
    report: &'a dyn Fn(&Step<'_>),
    done: usize,
    total: usize,
}

impl<'a> Progress<'a> {
    /// The steps of `cfg` on `devs`, reported to `report`.
    pub fn new(
        cfg: &BenchConfig,
        devs: &Devices,
        report: &'a dyn Fn(&Step<'_>),
    ) -> Result<Progress<'a>, BenchError> {
        let n_paths = |f: &dyn Fn(DataPath) -> bool| cfg.paths.iter().filter(|p| f(**p)).count();
        let buffers = cfg.buffers.len();
        let restore_paths = n_paths(&|p| !matches!(p, DataPath::Memory | DataPath::FileFsync));
        let live_paths = n_paths(&|p| matches!(p, DataPath::Memory | DataPath::Tcp));
        // The whole-state pass runs every block again at the main buffer.
        let main = usize::from(cfg.buffers.contains(&cfg.buffer));
        let mut total = 0;
        if cfg.has(Mode::Save) {
            total += (buffers + main) * cfg.paths.len();
        }
        if cfg.has(Mode::Restore) && restore_paths > 0 {
            total += buffers * (1 + restore_paths) + main * restore_paths;
        }
        if cfg.has(Mode::Live) {
            total += (buffers + main) * live_paths;
        }
        if cfg.has(Mode::Arcs) {
            total += crate::device::fsm::arcs(driver(&devs.arcs.0)?.flags()).len();
        }
        if cfg.has(Mode::Parallel) {
            let mut c = cfg.parallel_devices.clone();
            c.push(1);
            c.sort_unstable();
            c.dedup();
            total += c.len();
        }
        if cfg.has(Mode::Overlap) {
            total += 1;
        }
        if cfg.has(Mode::Compress) {
            total += 1;
        }
        if cfg.has(Mode::Downtime) && devs.sim_base.is_some() {
            total += cfg.sweep_links.len() * cfg.sweep_dirty.len();
        }
        Ok(Progress {
            report,
            done: 0,
            total,
        })
    }

    /// Step `label` is starting.
    pub fn step(&mut self, label: &str) {
        (self.report)(&Step {
            done: self.done,
            total: self.total,
            label,
        });
        self.done += 1;
    }
}
