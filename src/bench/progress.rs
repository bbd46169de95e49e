//! Progress reporting: the [`Step`] events a run emits before each measurement, and the
//! count of steps a configuration plans.

use super::config::{BenchConfig, Mode};
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
        let per_buffer = cfg.has(Mode::Save) as usize * 2
            + cfg.has(Mode::Restore) as usize * 2
            + cfg.has(Mode::Live) as usize;
        let total = 1
            + cfg.buffers.len() * (1 + per_buffer)
            + cfg.has(Mode::Save) as usize
            + cfg.has(Mode::Restore) as usize
            + if cfg.has(Mode::Arcs) {
                crate::device::fsm::arcs(driver(&devs.arcs.0)?.flags()).len()
            } else {
                0
            }
            + cfg.has(Mode::Parallel) as usize;
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
