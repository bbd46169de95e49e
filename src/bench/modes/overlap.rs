//! The `overlap` mode: proof that the harness overlaps reading the device with writing the
//! sink. A simulated device capped at `D` (`rate=`) saves into a sink that discards at `S`:
//! a serial loop (read, then write, then read...) reaches `1 / (1/D + 1/S)`, a data path that
//! overlaps the two reaches `min(D, S)`. The raw loop and the harness are timed in the same
//! run (rotating).

use super::{alloc, opts, run_block, save_into_fresh_sink, BlockId, Contender, Run, Sample};
use crate::bench::config::{DataPath, Kind, SIDE_STATE};
use crate::bench::devices::{driver, sim_memory, sim_params, size_param};
use crate::bench::error::{mig, BenchError};
use crate::bench::io::{paced, Sink};
use crate::bench::raw;
use crate::bench::report::{OverlapReport, RatioTo};
use crate::bench::stats::{ratio, round4};
use crate::migration::engine::RING;
use crate::units::{format_bytes, format_rate};
use std::cell::RefCell;
use std::time::Instant;

/// The overlap rows (`overlap-save`: `raw` and `harness`) and the summary; `None` (noted) on
/// kernel devices, whose rate cannot be set.
pub(in crate::bench) fn measure(run: &mut Run<'_>) -> Result<Option<OverlapReport>, BenchError> {
    let cfg = run.cfg;
    cfg.check_cancel()?;
    run.progress.step("overlap: capped device, capped sink");
    let Some(base) = run.devs.sim_base.clone() else {
        run.note("overlap: needs the simulator (a kernel device's rate cannot be capped)".into());
        return Ok(None);
    };
    let (d_rate, s_rate) = cfg.overlap_rates;
    let state = cfg.state.min(SIDE_STATE);
    let mem = sim_memory(&base, state);
    if mem > 0 && !run.can_hold(mem, "overlap") {
        return Ok(None);
    }
    let spec = sim_params(
        &base,
        state,
        &[
            ("state", size_param(state)),
            ("rate", format!("{d_rate}/s")),
            ("name", "sim-capped".into()),
        ],
    );
    let dev = crate::open::open(&format!("sim:{spec}").parse()?, &cfg.open)?;
    let d = RefCell::new(driver(&dev)?);
    let b = cfg.buffer;
    let ideal = d_rate.min(s_rate) as f64;
    let serial = 1.0 / (1.0 / d_rate as f64 + 1.0 / s_rate as f64);
    let sink_what = format!(
        "device capped at {}, sink discarding at {}",
        format_rate(d_rate as f64),
        format_rate(s_rate as f64)
    );
    let mut buf = alloc(b, "the raw save buffer")?;
    let dr = &d;
    let o = opts(cfg, b);
    let contenders = vec![
        Contender {
            kind: Kind::Raw,
            buffer: b,
            buffers_bytes: b,
            what: format!("serial: device read, then sink write ({sink_what})"),
            job: Box::new(move || {
                let Sink { mut writer, end } = paced(s_rate);
                let t0 = Instant::now();
                let r = raw::save(dr.borrow_mut().as_mut(), &mut buf, Some(&mut writer))
                    .map_err(mig("overlap: raw save"))?;
                end.finish(writer)
                    .map_err(crate::bench::error::io("overlap: the paced sink"))?;
                Ok((
                    t0.elapsed().as_secs_f64(),
                    Sample {
                        downtime: Some(r.downtime),
                        bytes: r.bytes,
                        stream_bytes: None,
                    },
                ))
            }),
        },
        Contender {
            kind: Kind::Harness,
            buffer: b,
            buffers_bytes: RING as u64 * b,
            what: format!("the engine's save, overlapped ({sink_what})"),
            job: save_into_fresh_sink(dr, o, "overlap", "paced sink", move || paced(s_rate)),
        },
    ];
    let device = format!("sim:{spec}");
    let id = BlockId {
        op: "overlap-save",
        path: DataPath::Memory,
        device: &device,
        protocol: &run.protocol,
        device_memory: run.devs.memory_bytes() + mem,
    };
    let mut rows = run_block(cfg, &id, contenders, false, || Ok(()))?;
    let mut harness = None;
    let mut raw_rate = None;
    for r in rows.iter_mut() {
        let (to, reference) = match r.kind {
            Kind::Harness => {
                harness = Some(r.throughput_bytes_per_s);
                ("min(D, S)", ideal)
            }
            _ => {
                raw_rate = Some(r.throughput_bytes_per_s);
                ("serial 1/(1/D + 1/S)", serial)
            }
        };
        if let Some(x) = ratio(r.throughput_bytes_per_s, Some(reference)).map(round4) {
            r.ratios.insert(
                0,
                RatioTo {
                    to: to.into(),
                    ratio: x,
                },
            );
            r.ratio = Some(x);
            r.ratio_to = Some(to.into());
        }
    }
    run.results.extend(rows);
    run.note(format!(
        "overlap: {} state, device D = {}, sink S = {}: min(D, S) = {}, serial = {}",
        format_bytes(state),
        format_rate(d_rate as f64),
        format_rate(s_rate as f64),
        format_rate(ideal),
        format_rate(serial)
    ));
    Ok(Some(OverlapReport {
        device_bytes_per_s: d_rate as f64,
        sink_bytes_per_s: s_rate as f64,
        ideal_bytes_per_s: ideal.round(),
        serial_bytes_per_s: serial.round(),
        harness_bytes_per_s: harness,
        raw_bytes_per_s: raw_rate,
        harness_over_ideal: harness.and_then(|h| ratio(h, Some(ideal))).map(round4),
        raw_over_serial: raw_rate.and_then(|r| ratio(r, Some(serial))).map(round4),
        state_bytes: state,
    }))
}
