//! The `save` mode: `raw-save` and the engine's `save`, alternating (ABBA) at each buffer
//! size; `qemu-style-save` (raw, 1 MiB reads) once.

use super::{alloc, opts, raw_row, RawRow, Run};
use crate::bench::config::QEMU_SAVE_BUFFER;
use crate::bench::devices::driver;
use crate::bench::error::{io, mig, BenchError};
use crate::bench::raw;
use crate::bench::report::{make_row, RowInput};
use crate::bench::timing::{timed, timed_pair, Timed};
use crate::migration::engine::{self, RING};
use crate::units::format_bytes;
use std::cell::RefCell;

/// The `raw-save` and `save` rows at buffer size `b`.
pub(in crate::bench) fn rows(run: &mut Run<'_>, b: u64) -> Result<(), BenchError> {
    let cfg = run.cfg;
    let bl = format_bytes(b);
    cfg.check_cancel()?;
    run.progress
        .step(&format!("raw-save and save, {bl} buffer, alternating"));
    let d = RefCell::new(driver(&run.devs.primary)?);
    let mut raw_buf = alloc(b, "the raw save buffer")?;
    let o = opts(cfg, b);
    let mut raw_bytes = 0;
    let mut stream_bytes = 0;
    let mut bytes = 0;
    let sink_name = cfg
        .to_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "discard".into());
    let raw_sample = || {
        let r = raw::save(d.borrow_mut().as_mut(), &mut raw_buf, None).map_err(mig("raw-save"))?;
        raw_bytes = r.bytes;
        Ok((r.seconds, r.downtime))
    };
    let (raw_t, t) = timed_pair(cfg, raw_sample, || {
        let mut d = d.borrow_mut();
        let rep = if let Some(p) = &cfg.to_file {
            let f = std::fs::File::create(p).map_err(io(format!("creating {}", p.display())))?;
            engine::save(d.as_mut(), f, &sink_name, &o)
                .map_err(mig("save"))?
                .1
        } else {
            engine::save(d.as_mut(), std::io::sink(), "discard", &o)
                .map_err(mig("save"))?
                .1
        };
        stream_bytes = rep.stream_bytes;
        bytes = rep.bytes;
        Ok((rep.seconds, rep.stop_copy_seconds))
    })?;
    let memcpy = run.memcpy_at(b);
    run.results.push(raw_row(RawRow {
        mode: "raw-save",
        devs: &run.devs,
        protocol: &run.protocol,
        buffer: b,
        bytes: raw_bytes,
        timed: raw_t,
        memcpy,
        verified: false,
        sink: Some("discard"),
    }));
    let Timed {
        samples,
        peak,
        scope,
        cpu,
    } = t;
    run.results.push(make_row(RowInput {
        mode: "save",
        device: &run.devs.primary_spec,
        protocol: run.protocol.clone(),
        buffer: b,
        buffers_bytes: RING as u64 * b,
        bytes,
        stream_bytes: Some(stream_bytes),
        seconds: samples.iter().map(|s| s.0).collect(),
        downtime: Some(samples.iter().map(|s| s.1).collect()),
        peak,
        scope,
        cpu: Some(cpu),
        verified: false,
        memcpy,
        sink: Some(sink_name),
    }));
    Ok(())
}

/// The `qemu-style-save` row: the raw loop with QEMU's 1 MiB reads.
pub(in crate::bench) fn qemu_style(run: &mut Run<'_>) -> Result<(), BenchError> {
    let cfg = run.cfg;
    cfg.check_cancel()?;
    run.progress.step("qemu-style-save (1 MiB reads)");
    let memcpy = run
        .memcpy_at(QEMU_SAVE_BUFFER)
        .or(run.memcpy_at(cfg.buffer));
    let (mode, b) = ("qemu-style-save", QEMU_SAVE_BUFFER);
    let mut d = driver(&run.devs.primary)?;
    let protocol = d.protocol().to_string();
    let mut buf = alloc(b, "the raw save buffer")?;
    let mut bytes = 0;
    let timed = timed(cfg.repeat, || {
        let r = raw::save(d.as_mut(), &mut buf, None).map_err(mig(mode.to_string()))?;
        bytes = r.bytes;
        Ok((r.seconds, r.downtime))
    })?;
    run.results.push(raw_row(RawRow {
        mode,
        devs: &run.devs,
        protocol: &protocol,
        buffer: b,
        bytes,
        timed,
        memcpy,
        verified: false,
        sink: Some("discard"),
    }));
    Ok(())
}
