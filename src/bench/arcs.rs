//! Transition latency of every single arc of the migration state machine
//! ([`crate::device::fsm::arcs`]), repeated.

use super::stats::Summary;
use crate::device::{fsm, MigState};
use crate::migration::{MigrationDriver, MigrationError, Result};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// Latency of one arc.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArcRow {
    /// State before the arc.
    pub from: MigState,
    /// State requested.
    pub to: MigState,
    /// Successful repetitions timed.
    pub repeats: usize,
    /// Fastest, seconds.
    pub min_s: Option<f64>,
    /// Median, seconds.
    pub median_s: Option<f64>,
    /// Slowest, seconds.
    pub max_s: Option<f64>,
    /// Why the arc could not be measured, when it failed.
    pub error: Option<String>,
}

/// A saved state used to leave RESUMING cleanly (devices refuse to leave RESUMING on an
/// empty or truncated stream).
#[derive(Debug)]
pub struct Reference<'a> {
    /// The raw data, as read from the device's STOP_COPY.
    pub file: &'a std::fs::File,
    /// Its length.
    pub len: u64,
}

fn write_reference(drv: &mut dyn MigrationDriver, r: &Reference<'_>, buf: &mut [u8]) -> Result<()> {
    let mut off = 0;
    while off < r.len {
        let n = buf.len().min((r.len - off) as usize);
        r.file
            .read_exact_at(&mut buf[..n], off)
            .map_err(|e| MigrationError::File {
                path: "reference state".into(),
                source: e,
            })?;
        let mut p = &buf[..n];
        while !p.is_empty() {
            let w = drv.write(p)?;
            if w == 0 || w > p.len() {
                return Err(MigrationError::Protocol {
                    device: drv.device().name().to_string(),
                    what: format!("write accepted {w} of {} bytes", p.len()),
                });
            }
            p = &p[w..];
        }
        off += n as u64;
    }
    Ok(())
}

/// Brings the device to `target`. Leaving RESUMING first feeds it the reference state.
fn reach(
    drv: &mut dyn MigrationDriver,
    target: MigState,
    r: &Reference<'_>,
    buf: &mut [u8],
) -> Result<()> {
    let cur = drv.state()?;
    if cur == target {
        return Ok(());
    }
    if cur == MigState::Resuming {
        write_reference(drv, r, buf)?;
    }
    // Some targets cannot be reached from where the last arc left the device (nothing leads
    // from STOP_COPY back into the pre-copy states): go through STOP first.
    if fsm::path(drv.flags(), cur, target).is_err() {
        drv.set_state(MigState::Stop)?;
    }
    drv.set_state(target)
}

/// Times every arc `repeats` times (arcs out of RESUMING, which each need the reference
/// state written first, at most `resume_repeats` times). The device ends RUNNING.
pub fn measure(
    drv: &mut dyn MigrationDriver,
    repeats: usize,
    resume_repeats: usize,
    r: &Reference<'_>,
    buf: &mut [u8],
    mut tick: impl FnMut(),
) -> Vec<ArcRow> {
    let mut rows = Vec::new();
    for (from, to) in fsm::arcs(drv.flags()) {
        let reps = if from == MigState::Resuming {
            resume_repeats.max(1)
        } else {
            repeats.max(1)
        };
        let mut samples = Vec::with_capacity(reps);
        let mut error = None;
        for _ in 0..reps {
            let one = (|| {
                reach(drv, from, r, buf)?;
                if from == MigState::Resuming {
                    write_reference(drv, r, buf)?;
                }
                let t = Instant::now();
                drv.set_state(to)?;
                Ok::<f64, MigrationError>(t.elapsed().as_secs_f64())
            })();
            match one {
                Ok(s) => samples.push(s),
                Err(e) => {
                    error = Some(e.to_string());
                    // Best effort: the next arc starts from a known state.
                    let _ = crate::migration::recovery::recover(drv);
                    break;
                }
            }
        }
        let s = Summary::of(&samples);
        rows.push(ArcRow {
            from,
            to,
            repeats: samples.len(),
            min_s: s.map(|s| s.min),
            median_s: s.map(|s| s.median),
            max_s: s.map(|s| s.max),
            error,
        });
        tick();
    }
    let _ = reach(drv, MigState::Running, r, buf);
    if !matches!(drv.state(), Ok(MigState::Running)) {
        let _ = crate::migration::recovery::recover(drv);
    }
    rows
}
