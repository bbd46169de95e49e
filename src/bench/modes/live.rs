//! The `live` mode: the engine's migrate, device to device, with pre-copy rounds and
//! measured downtime, at each buffer size.

use super::{opts, Run};
use crate::bench::devices::driver;
use crate::bench::error::{mig, BenchError};
use crate::bench::report::{make_row, RowInput};
use crate::bench::timing::{timed, Timed};
use crate::migration::engine::{self, PrecopyPolicy, RING};
use crate::units::format_bytes;

/// The `live` row at buffer size `b`, when there is a destination device (else the step is
/// reported as skipped).
pub(in crate::bench) fn row(run: &mut Run<'_>, b: u64) -> Result<(), BenchError> {
    let cfg = run.cfg;
    let Some((dst, dst_name)) = &run.devs.live else {
        run.progress.step("live: skipped");
        return Ok(());
    };
    cfg.check_cancel()?;
    run.progress
        .step(&format!("live, {} buffer", format_bytes(b)));
    let mut s = driver(&run.devs.primary)?;
    let mut d = driver(dst)?;
    let mut o = opts(cfg, b);
    o.precopy = PrecopyPolicy {
        max_rounds: cfg.precopy_rounds,
        dirty_threshold: b,
    };
    let mut bytes = 0;
    let mut rounds = 0;
    let Timed {
        samples,
        peak,
        scope,
        cpu,
    } = timed(cfg.repeat, || {
        let rep = engine::migrate(s.as_mut(), d.as_mut(), &o).map_err(mig("live migration"))?;
        bytes = rep.bytes;
        rounds = rep.rounds;
        Ok((rep.seconds, rep.downtime_seconds))
    })?;
    let mut row = make_row(RowInput {
        mode: "live",
        device: &format!("{} -> {dst_name}", run.devs.primary_spec),
        protocol: run.protocol.clone(),
        buffer: b,
        buffers_bytes: RING as u64 * b,
        bytes,
        stream_bytes: None,
        seconds: samples.iter().map(|s| s.0).collect(),
        downtime: Some(samples.iter().map(|s| s.1).collect()),
        peak,
        scope,
        cpu: Some(cpu),
        verified: run.devs.verified,
        memcpy: run.memcpy_at(b),
        sink: None,
    });
    row.precopy_rounds = Some(rounds);
    run.results.push(row);
    Ok(())
}
