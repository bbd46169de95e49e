//! The `restore` mode: the raw capture of the device's own stream (once), `raw-restore` and
//! the engine's `restore` alternating (ABBA) at each buffer size, and `qemu-style-restore`
//! (raw, 32 KiB writes) once.

use super::{alloc, opts, raw_row, tempfile, RawRow, Run};
use crate::bench::config::{Mode, QEMU_RESTORE_BUFFER};
use crate::bench::devices::driver;
use crate::bench::error::{io, mig, BenchError};
use crate::bench::raw;
use crate::bench::report::{make_row, RowInput};
use crate::bench::timing::{timed, timed_pair, Timed};
use crate::migration::engine::{self, RING};
use crate::units::format_bytes;
use std::cell::RefCell;
use std::io::{Seek, SeekFrom};

/// The raw capture of the primary device's own stream into a temporary file
/// (`run.raw_capture`), the source of the raw restore rows; taken only with `restore`, but
/// its progress step always counts.
pub(in crate::bench) fn capture(run: &mut Run<'_>) -> Result<(), BenchError> {
    let cfg = run.cfg;
    run.progress.step("capturing the device's raw state");
    if cfg.has(Mode::Restore) {
        let mut f = tempfile()?;
        let mut b = alloc(cfg.buffer, "the raw capture buffer")?;
        let mut d = driver(&run.devs.primary)?;
        let r = raw::save(d.as_mut(), &mut b, Some(&mut f)).map_err(mig("raw capture"))?;
        run.raw_capture = Some((f, r.bytes));
    }
    Ok(())
}

/// The `raw-restore` (when there is a raw capture) and `restore` rows at buffer size `b`.
pub(in crate::bench) fn rows(run: &mut Run<'_>, b: u64) -> Result<(), BenchError> {
    let cfg = run.cfg;
    let bl = format_bytes(b);
    let verified = run.devs.verified;
    let memcpy = run.memcpy_at(b);
    cfg.check_cancel()?;
    // The stream to restore: saved beforehand (untimed) into a temporary file.
    let d = RefCell::new(driver(&run.devs.primary)?);
    let o = opts(cfg, b);
    let f = tempfile()?;
    let (mut f, _) = engine::save(d.borrow_mut().as_mut(), f, "temporary stream", &o)
        .map_err(mig("saving the stream to restore"))?;
    let mut stream_bytes = 0;
    let mut bytes = 0;
    let restore_sample = || {
        f.seek(SeekFrom::Start(0))
            .map_err(io("rewinding the saved stream"))?;
        let rep = engine::restore(d.borrow_mut().as_mut(), &f, &o).map_err(mig("restore"))?;
        stream_bytes = rep.stream_bytes;
        bytes = rep.bytes;
        Ok((rep.seconds, ()))
    };
    let t = if let Some((raw_f, len)) = &run.raw_capture {
        run.progress.step(&format!(
            "raw-restore and restore, {bl} buffer, alternating"
        ));
        let mut raw_buf = alloc(b, "the raw restore buffer")?;
        let raw_sample = || {
            let r = raw::restore(d.borrow_mut().as_mut(), raw_f, *len, &mut raw_buf)
                .map_err(mig("raw-restore"))?;
            Ok((r.seconds, r.downtime))
        };
        let (raw_t, t) = timed_pair(cfg, raw_sample, restore_sample)?;
        run.results.push(raw_row(RawRow {
            mode: "raw-restore",
            devs: &run.devs,
            protocol: &run.protocol,
            buffer: b,
            bytes: *len,
            timed: raw_t,
            memcpy,
            verified,
            sink: None,
        }));
        t
    } else {
        run.progress.step(&format!("restore, {bl} buffer"));
        timed(cfg.repeat, restore_sample)?
    };
    let Timed {
        samples,
        peak,
        scope,
        cpu,
    } = t;
    let secs: Vec<f64> = samples.iter().map(|s| s.0).collect();
    run.results.push(make_row(RowInput {
        mode: "restore",
        device: &run.devs.primary_spec,
        protocol: run.protocol.clone(),
        buffer: b,
        buffers_bytes: RING as u64 * b,
        bytes,
        stream_bytes: Some(stream_bytes),
        downtime: Some(secs.clone()),
        seconds: secs,
        peak,
        scope,
        cpu: Some(cpu),
        verified,
        memcpy,
        sink: None,
    }));
    Ok(())
}

/// The `qemu-style-restore` row (the raw loop with QEMU's 32 KiB writes), when there is a
/// raw capture.
pub(in crate::bench) fn qemu_style(run: &mut Run<'_>) -> Result<(), BenchError> {
    let cfg = run.cfg;
    let Some((f, len)) = &run.raw_capture else {
        return Ok(());
    };
    let len = *len;
    cfg.check_cancel()?;
    run.progress.step("qemu-style-restore (32 KiB writes)");
    let memcpy = run
        .memcpy_at(QEMU_RESTORE_BUFFER)
        .or(run.memcpy_at(cfg.buffer));
    let (mode, b) = ("qemu-style-restore", QEMU_RESTORE_BUFFER);
    let mut d = driver(&run.devs.primary)?;
    let mut buf = alloc(b, "the raw restore buffer")?;
    let timed = timed(cfg.repeat, || {
        let r = raw::restore(d.as_mut(), f, len, &mut buf).map_err(mig(mode.to_string()))?;
        Ok((r.seconds, r.downtime))
    })?;
    run.results.push(raw_row(RawRow {
        mode,
        devs: &run.devs,
        protocol: &run.protocol,
        buffer: b,
        bytes: len,
        timed,
        memcpy,
        verified: run.devs.verified,
        sink: None,
    }));
    Ok(())
}
