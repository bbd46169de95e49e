//! The `parallel` mode: N devices saving at once, one thread each (plus the engine's reader
//! thread per device when there are two cores per device), against one device alone with the
//! same setting, measured between the parallel runs.

use super::{opts, Run};
use crate::bench::config::BenchConfig;
use crate::bench::devices::{driver, Devices};
use crate::bench::error::{mig, BenchError};
use crate::bench::report::{make_row, ParallelReport, ResultRow, RowInput};
use crate::bench::rss::{self, RssScope};
use crate::bench::stats::{ratio, round4, throughput, Summary};
use crate::bench::timing::cpu_time;
use crate::migration::engine::{self, RING};
use crate::migration::MigrationError;
use std::sync::Barrier;
use std::time::Instant;

/// The `parallel-save` row, appended to `run.results`, and the scaling summary (with its
/// ratio to the `save` row at the main buffer, when that row was measured).
pub(in crate::bench) fn measure(run: &mut Run<'_>) -> Result<ParallelReport, BenchError> {
    let cfg = run.cfg;
    cfg.check_cancel()?;
    run.progress
        .step(&format!("parallel, {} devices", run.devs.parallel.len()));
    let (row, mut rep) = parallel_row(cfg, &run.devs, &run.protocol, run.memcpy_at(cfg.buffer))?;
    rep.over_save_row = run
        .results
        .iter()
        .find(|r| r.mode == "save" && r.buffer_bytes == cfg.buffer)
        .and_then(|r| ratio(rep.aggregate_bytes_per_s, Some(r.throughput_bytes_per_s)))
        .map(round4);
    run.results.push(row);
    Ok(rep)
}

/// Runs the devices in parallel `cfg.repeat` times, one device alone before each.
fn parallel_row(
    cfg: &BenchConfig,
    devs: &Devices,
    protocol: &str,
    memcpy: Option<f64>,
) -> Result<(ResultRow, ParallelReport), BenchError> {
    let n = devs.parallel.len();
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    let mut o = opts(cfg, cfg.buffer);
    o.overlap = cores >= 2 * n;
    let mut drivers = Vec::with_capacity(n);
    for d in &devs.parallel {
        drivers.push(driver(d)?);
    }
    // One device alone (same code path) is measured between the parallel runs, so a change
    // in machine load affects both alike.
    let mut alone = Vec::new();
    let mut walls = Vec::new();
    let mut per_dev: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut total_bytes = 0;
    let scope = if rss::reset_peak() {
        RssScope::Mode
    } else {
        RssScope::Process
    };
    let mut cpu = 0.0;
    for _ in 0..cfg.repeat.max(1) {
        let r = engine::save(drivers[0].as_mut(), std::io::sink(), "discard", &o)
            .map_err(mig("parallel: one device"))?
            .1;
        alone.push(throughput(r.bytes, r.seconds).unwrap_or(0.0));
        let c0 = cpu_time();
        let barrier = Barrier::new(n + 1);
        let (wall, outs) = std::thread::scope(|s| {
            let handles: Vec<_> = drivers
                .iter_mut()
                .map(|d| {
                    let (barrier, o) = (&barrier, &o);
                    s.spawn(move || {
                        barrier.wait();
                        engine::save(d.as_mut(), std::io::sink(), "discard", o).map(|r| r.1)
                    })
                })
                .collect();
            barrier.wait();
            let t = Instant::now();
            let outs: Vec<_> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(MigrationError::ThreadPanicked("parallel save")))
                })
                .collect();
            (t.elapsed().as_secs_f64(), outs)
        });
        let mut bytes = 0;
        for (i, o) in outs.into_iter().enumerate() {
            let r = o.map_err(mig(format!("parallel: device {i}")))?;
            bytes += r.bytes;
            per_dev[i].push(throughput(r.bytes, r.seconds).unwrap_or(0.0));
        }
        total_bytes = bytes;
        walls.push(wall);
        cpu += cpu_time() - c0;
    }
    let one_rate = Summary::of(&alone).map(|s| s.median).unwrap_or(0.0);
    let peak = rss::current().peak_rss;
    let cpu = cpu / cfg.repeat.max(1) as f64;
    let s = Summary::of(&walls).unwrap_or(Summary {
        min: 0.0,
        median: 0.0,
        max: 0.0,
        count: 0,
    });
    let agg = throughput(total_bytes, s.median).unwrap_or(0.0);
    let scaling = ratio(agg, Some(one_rate)).map(round4).unwrap_or(0.0);
    let per_device_buffers = if o.overlap { RING } else { 1 };
    let buffers_bytes = (n * per_device_buffers) as u64 * cfg.buffer;
    let mut row = make_row(RowInput {
        mode: "parallel-save",
        device: &format!(
            "{} (+{} more)",
            devs.parallel[0].name(),
            n.saturating_sub(1)
        ),
        protocol: protocol.to_string(),
        buffer: cfg.buffer,
        buffers_bytes,
        bytes: total_bytes,
        stream_bytes: None,
        seconds: walls,
        downtime: None,
        peak,
        scope,
        cpu: Some(cpu),
        verified: false,
        memcpy,
        sink: Some("discard".into()),
    });
    row.devices = Some(n);
    row.scaling = Some(scaling);
    let rep = ParallelReport {
        devices: n,
        one_device_bytes_per_s: one_rate.round(),
        aggregate_bytes_per_s: agg.round(),
        scaling,
        per_device_bytes_per_s: per_dev
            .iter()
            .map(|v| Summary::of(v).map(|s| s.median.round()).unwrap_or(0.0))
            .collect(),
        cores,
        overlap: o.overlap,
        over_save_row: None,
    };
    Ok((row, rep))
}
