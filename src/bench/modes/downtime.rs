//! The `downtime` sweep: dirty rate against link rate. For each link rate `L` (the source
//! device's `rate=` cap: everything it sends crosses at `L`) and each dirty rate `X` (a
//! fraction of `L`, the source's `dirty-rate=`), a live migration with pre-copy rounds; the
//! downtime measured next to the one predicted from what was pending when the source stopped
//! and the drain rate measured while pre-copying ([`crate::bench::downtime`]), and next to the
//! closed-form model from the rates alone.

use super::{opts, Run};
use crate::bench::config::SWEEP_STATE;
use crate::bench::devices::{driver, sim_memory, sim_params, sim_seed, size_param};
use crate::bench::downtime::{remaining_after_rounds, remaining_at_stop};
use crate::bench::error::{mig, BenchError};
use crate::bench::report::{DowntimePoint, DowntimeReport};
use crate::bench::stats::round4;
use crate::migration::engine::{self, drain_rate, predicted_downtime, PrecopyPolicy};
use crate::units::format_rate;

/// Pre-copy rounds of the sweep when the run asks for none (the sweep is about pre-copy).
const SWEEP_ROUNDS: u32 = 3;

/// The sweep; `None` (noted) on kernel devices.
pub(in crate::bench) fn measure(run: &mut Run<'_>) -> Result<Option<DowntimeReport>, BenchError> {
    let cfg = run.cfg;
    let Some(base) = run.devs.sim_base.clone() else {
        run.note(
            "downtime: needs the simulator (its dirty rate and link are set by the sweep)".into(),
        );
        return Ok(None);
    };
    let state = cfg.state.min(SWEEP_STATE);
    let mem = 2 * sim_memory(&base, state);
    if mem > 0 && !run.can_hold(mem, "downtime") {
        return Ok(None);
    }
    let rounds = if cfg.precopy_rounds == 0 {
        SWEEP_ROUNDS
    } else {
        cfg.precopy_rounds
    };
    let threshold = cfg.buffer;
    let seed = sim_seed(&base);
    let mut points = Vec::new();
    for &link in &cfg.sweep_links {
        for &f in &cfg.sweep_dirty {
            cfg.check_cancel()?;
            let dirty = (link as f64 * f).round() as u64;
            run.progress.step(&format!(
                "downtime: link {}, dirtying {}",
                format_rate(link as f64),
                format_rate(dirty as f64)
            ));
            let src_spec = sim_params(
                &base,
                state,
                &[
                    ("state", size_param(state)),
                    ("rate", format!("{link}/s")),
                    ("dirty-rate", format!("{dirty}/s")),
                    ("name", "sim-sweep-src".into()),
                ],
            );
            let dst_spec = sim_params(
                &base,
                state,
                &[
                    ("state", size_param(state)),
                    ("seed", seed.wrapping_add(1).to_string()),
                    ("verify-seed", seed.to_string()),
                    ("name", "sim-sweep-dst".into()),
                ],
            );
            let src = crate::open::open(&format!("sim:{src_spec}").parse()?, &cfg.open)?;
            let dst = crate::open::open(&format!("sim:{dst_spec}").parse()?, &cfg.open)?;
            let (mut s, mut d) = (driver(&src)?, driver(&dst)?);
            let mut o = opts(cfg, cfg.buffer);
            o.precopy = PrecopyPolicy {
                max_rounds: rounds,
                dirty_threshold: threshold,
                ..Default::default()
            };
            let rep = engine::migrate(s.as_mut(), d.as_mut(), &o).map_err(mig("downtime sweep"))?;
            super::verify_device(&dst, "downtime sweep")?;
            let remaining = remaining_at_stop(&rep.precopy_rounds, rep.stopcopy_bytes);
            let drain = drain_rate(&rep.precopy_rounds);
            let model = remaining_after_rounds(state, link as f64, dirty as f64, rep.rounds);
            points.push(DowntimePoint {
                link_bytes_per_s: link as f64,
                dirty_bytes_per_s: dirty as f64,
                dirty_over_link: round4(f),
                rounds: rep.rounds,
                converged: rep.converged,
                remaining_bytes: remaining,
                drain_bytes_per_s: drain.map(f64::round),
                predicted_s: drain.and_then(|r| predicted_downtime(remaining, r)),
                engine_predicted_s: rep.predicted_downtime_seconds,
                measured_s: rep.downtime_seconds,
                model_s: predicted_downtime(model, link as f64),
                stopcopy_bytes: rep.stopcopy_bytes,
            });
        }
    }
    Ok(Some(DowntimeReport {
        state_bytes: state,
        max_rounds: rounds,
        threshold_bytes: threshold,
        points,
    }))
}
