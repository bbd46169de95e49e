//! The `save` blocks: the device's state into a sink, on every path — a discarding writer
//! (`memory`), a file in the page cache, `fsync`'d, `O_DIRECT`, a pipe, a loopback socket —
//! by the path's reference, the raw loop, the QEMU-style and whole-state loops (main buffer)
//! and the harness; the whole-state loop in a later pass ([`Pass::WholeState`]).

use super::references;
use super::{
    alloc, alloc_io, direct_stage_bytes, engine_buffers, io_of, opts, overlapped, run_block,
    BlockId, Contender, Pass, Run, Sample,
};
use crate::bench::config::{DataPath, Kind};
use crate::bench::devices::driver;
use crate::bench::error::{mig, BenchError};
use crate::bench::io::{Sink, SinkTarget, SinkWriter};
use crate::bench::loops::{self, QEMU_READ, QEMU_STREAM_BUFFER};
use crate::bench::raw;
use crate::bench::reference::Copy;
use crate::migration::engine;
use crate::units::format_bytes;
use std::cell::RefCell;
use std::time::Instant;

/// Runs `f` with a freshly opened sink of `target` and finishes it (`fsync`, the far end's
/// reading); the seconds are from just after opening to the end of finishing.
fn through(
    target: &SinkTarget,
    f: impl FnOnce(&mut SinkWriter) -> Result<Sample, BenchError>,
) -> Result<(f64, Sample), BenchError> {
    let Sink { mut writer, end } = target.open().map_err(io_of("opening the sink"))?;
    let t0 = Instant::now();
    let s = f(&mut writer)?;
    end.finish(writer).map_err(io_of("finishing the sink"))?;
    Ok((t0.elapsed().as_secs_f64(), s))
}

/// The `save` block of `path` at buffer size `b`: the loops of `pass`.
pub(in crate::bench) fn block(
    run: &mut Run<'_>,
    path: DataPath,
    b: u64,
    pass: Pass,
) -> Result<(), BenchError> {
    let cfg = run.cfg;
    let main = b == cfg.buffer;
    if !pass.runs_at(main) {
        return Ok(());
    }
    cfg.check_cancel()?;
    let name = format!("save -> {}", path.as_str());
    run.step_block(&name, b, pass);
    let target = match SinkTarget::new(path, &run.dir, b as usize) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            run.note(format!("save -> {}: skipped: {e}", path.as_str()));
            return Ok(());
        }
        Err(e) => return Err(io_of("preparing the sink")(e)),
    };
    let sink_what = target.describe();
    let mut o = opts(cfg, b);
    // `file-direct`: the engine's frames go straight to the disk from its chunk buffers,
    // in huge pages as `save_to` puts those of a direct save (one request per frame).
    o.huge_buffers = path == DataPath::FileDirect;
    // A durable save goes to its file the way the harness's does: with O_DIRECT where the
    // file system takes it (the reference and the raw loop, the same work on one buffer);
    // QEMU's loop and the whole-state one write through the page cache, as they do.
    let direct = if o.direct_io {
        target
            .direct()
            .map_err(io_of("preparing the O_DIRECT sink"))?
    } else {
        None
    };
    // The harness's save is written direct: its chunk buffers are in huge pages.
    let direct_engine =
        path == DataPath::FileDirect || (path == DataPath::FileFsync && direct.is_some());
    let own = direct.as_ref().unwrap_or(&target);
    let own_what = own.describe();
    let d = RefCell::new(driver(&run.devs.primary)?);
    let state = run.state_of(d.borrow_mut().as_mut(), &name);
    // The page-cache file is overwritten in place; its pages are made before the first
    // transfer, untimed ([`SinkTarget`]).
    target
        .prefill(state)
        .map_err(io_of("filling the page-cache file"))?;
    let mut contenders = Vec::new();

    // The physical reference.
    let memory_backed = run.devs.primary_memory() > 0;
    if path == DataPath::Memory {
        if memory_backed {
            contenders.push(references::memory(Copy::Out, b, state, run.min_time()));
        } else {
            run.note(
                "save -> memory: no memory reference (the device's reads copy nothing this \
                 process can see: a generated simulator state, or a kernel device); the raw \
                 loop is the reference"
                    .into(),
            );
        }
    } else {
        contenders.push(references::sink(own, state, b, b));
    }

    // The raw loop.
    let mut raw_buf = alloc_io(b, "the raw save buffer", own.is_direct())?;
    let (dr, t) = (&d, own);
    contenders.push(Contender {
        kind: Kind::Raw,
        buffer: b,
        buffers_bytes: b,
        what: format!("device reads into one buffer, each written to {own_what}"),
        job: Box::new(move || {
            through(t, |w| {
                let r = raw::save(dr.borrow_mut().as_mut(), &mut raw_buf, Some(w))
                    .map_err(mig("raw save"))?;
                Ok(Sample {
                    downtime: Some(r.downtime),
                    bytes: r.bytes,
                    stream_bytes: None,
                })
            })
        }),
    });

    if main {
        // QEMU's loop.
        let mut read_buf = alloc(QEMU_READ as u64, "the QEMU-style read buffer")?;
        let mut stage = alloc(QEMU_STREAM_BUFFER as u64, "the QEMU-style stream buffer")?;
        let (dr, t) = (&d, &target);
        contenders.push(Contender {
            kind: Kind::QemuStyle,
            buffer: QEMU_READ as u64,
            buffers_bytes: (QEMU_READ + QEMU_STREAM_BUFFER) as u64,
            what: format!(
                "1 MiB device reads copied into a 32 KiB stream buffer, written to {sink_what}"
            ),
            job: Box::new(move || {
                through(t, |w| {
                    let r =
                        loops::qemu_save(dr.borrow_mut().as_mut(), &mut read_buf, &mut stage, w)
                            .map_err(mig("QEMU-style save"))?;
                    Ok(Sample {
                        downtime: Some(r.downtime),
                        bytes: r.bytes,
                        stream_bytes: None,
                    })
                })
            }),
        });
        // The whole state in memory (and the file it is written to, where files are held in
        // memory: the guest's tmpfs /tmp of the test bed).
        let hold = if target.file().is_some() && crate::bench::io::in_memory(&run.dir) {
            state.saturating_mul(2)
        } else {
            state
        };
        if pass == Pass::WholeState && run.can_hold(hold, "save whole-state") {
            let (dr, t) = (&d, &target);
            contenders.push(Contender {
                kind: Kind::WholeState,
                buffer: state,
                buffers_bytes: state,
                what: format!("the whole state read into memory, then written to {sink_what}"),
                job: Box::new(move || {
                    through(t, |w| {
                        let r = loops::whole_save(dr.borrow_mut().as_mut(), w)
                            .map_err(mig("whole-state save"))?;
                        Ok(Sample {
                            downtime: Some(r.downtime),
                            bytes: r.bytes,
                            stream_bytes: None,
                        })
                    })
                }),
            });
        }
    }

    // The harness: through `save_to` on the sink's descriptor, as `save -o` writes a pipe,
    // a socket or a descriptor alias (cancellable, non-blocking, waiting in `poll(2)`);
    // `engine::save` into the sink where it is not a plain descriptor.
    let token = engine::CancelToken::new().map_err(io_of("creating a cancel token"))?;
    let (dr, t, name) = (&d, &target, path.as_str());
    contenders.push(Contender {
        kind: Kind::Harness,
        buffer: b,
        // A durable save written direct (`save_to`) has its chunk buffers in huge pages and
        // a direct stage; so does the engine's save into the `file-direct` sink, whose
        // `DirectWriter` stages the stream's header, first frame and trailer.
        buffers_bytes: engine_buffers(&o, direct_engine, b)
            + if direct_engine {
                direct_stage_bytes()
            } else {
                0
            },
        what: format!(
            "{} (framing, XXH3-64, {}) into {sink_what}",
            match path {
                DataPath::Memory | DataPath::FileDirect => "the engine's save".to_string(),
                DataPath::FileFsync if o.direct_io => "save_to_file, as `save -o FILE` \
                     writes (a temporary file in the same directory, written with O_DIRECT \
                     where its file system takes it, fsync'd and renamed over the file)"
                    .to_string(),
                DataPath::FileFsync => format!(
                    "save_to_file, as `save --buffered -o FILE` writes (a temporary file in \
                     the same directory, its writeback started every {}, fsync'd and renamed \
                     over the file)",
                    format_bytes(engine::WRITE_BEHIND_STEP)
                ),
                _ => "save_to, as `save -o` writes a descriptor".to_string(),
            },
            overlapped(o.overlap)
        ),
        job: Box::new(move || {
            through(t, |w| {
                let mut d = dr.borrow_mut();
                let rep = match (path, t.file()) {
                    // What a user's durable save does: `save -o FILE`.
                    (DataPath::FileFsync, Some(file)) => engine::save_to_file(d.as_mut(), file, &o),
                    _ => match w
                        .output(std::path::Path::new(name))
                        .map_err(io_of("duplicating the sink"))?
                    {
                        Some(out) => engine::save_to(d.as_mut(), out, &o, &token),
                        None => engine::save(d.as_mut(), w, name, &o).map(|(_, r)| r),
                    },
                }
                .map_err(mig("save"))?;
                Ok(Sample::of_save(&rep))
            })
        }),
    });

    let id = BlockId {
        op: "save",
        path,
        device: &run.devs.primary_spec,
        protocol: &run.protocol,
        device_memory: run.devs.memory_bytes(),
    };
    pass.keep(&mut contenders);
    let rows = run_block(cfg, &id, contenders, false, || Ok(()))?;
    run.add(pass, rows);
    Ok(())
}
