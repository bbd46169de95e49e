//! The `restore` blocks: a saved state into the device, from every path that holds one — a
//! file in the page cache, the same file read with `O_DIRECT`, a pipe or a loopback socket
//! fed by another thread — by the source's own rate (the reference), the raw loop, the
//! QEMU-style and whole-state loops (main buffer) and the harness. After every transfer the
//! simulator is checked to hold exactly the state saved (untimed).
//!
//! The raw, QEMU-style and whole-state loops restore the device's own stream (a raw capture);
//! the harness restores the framed stream the engine saved at the same buffer size, through
//! `engine::restore_from` on the source's descriptor as `restore -i` reads it (`file-direct`,
//! whose reader is not a plain descriptor: `engine::restore` over the same buffered reads). Both
//! files are written once per buffer size, untimed, and `fsync`'d (so `O_DIRECT` reads do not
//! wait for their write-back). Before every timed read from the page cache (file, pipe, tcp),
//! whatever the kernel dropped of the file meanwhile is read back in, untimed
//! (`io::resident`): each loop reads its own file, and one dropped in part would time a disk
//! too. A file that still misses pages at the start of a transfer is named in a note.

use super::{
    alloc, alloc_io, direct_stage_bytes, engine_buffers, io_of, opts, overlapped, run_block,
    verify_device, BlockId, Contender, Pass, Run, Sample,
};
use crate::bench::config::{DataPath, Kind};
use crate::bench::devices::driver;
use crate::bench::error::{mig, BenchError};
use crate::bench::io::{describe_source, temp_path, Source};
use crate::bench::loops::{self, QEMU_STREAM_BUFFER};
use crate::bench::raw;
use crate::bench::reference;
use crate::migration::engine;
use crate::units::{format_bytes, format_seconds};
use std::cell::{Cell, RefCell};
use std::path::Path;
use std::time::Instant;

/// Threads of an overlapped restore: one reads the stream, one writes the device.
const ENGINE_THREADS: usize = 2;

/// The saved states the restore blocks read, at one buffer size.
pub(in crate::bench) struct Saved {
    raw: tempfile::TempPath,
    raw_len: u64,
    stream: tempfile::TempPath,
    stream_len: u64,
    buffer: u64,
}

/// Whether restore measures `path` (a saved state can come from it). Notes why not.
pub(in crate::bench) fn measures(run: &mut Run<'_>, path: DataPath) -> bool {
    match path {
        DataPath::Memory => {
            run.note(
                "restore <- memory: not a separate path (a saved state is read from the page \
                 cache: the restore <- file rows)"
                    .into(),
            );
            false
        }
        DataPath::FileFsync => {
            run.note(
                "restore <- file-fsync: the same as restore <- file (fsync is a write's)".into(),
            );
            false
        }
        _ => true,
    }
}

/// The order the blocks of `paths` run in: those that read the page cache (file, pipe, tcp)
/// first, one after the other, `file-direct` last. Its `O_DIRECT` reads leave the page cache
/// alone for as long as the block runs (over a minute at 4 GiB), and a kernel that reclaims
/// page cache nobody read for a while (as DAMON's `pageout` scheme on the machine of
/// hw-notes/bench.md does after one minute) would take part of the saved files meanwhile:
/// [`Source::open`] reads them back in, but the reclaim can go on dropping pages for seconds
/// after, into the timed reads.
pub(in crate::bench) fn order(paths: &[DataPath]) -> Vec<DataPath> {
    let (direct, cached): (Vec<DataPath>, Vec<DataPath>) =
        paths.iter().partition(|&&p| p == DataPath::FileDirect);
    cached.into_iter().chain(direct).collect()
}

/// Saves the primary device's raw stream and its framed stream at buffer size `b` into files
/// in the run's directory (untimed).
pub(in crate::bench) fn prepare(run: &mut Run<'_>, b: u64) -> Result<Saved, BenchError> {
    let cfg = run.cfg;
    cfg.check_cancel()?;
    run.progress.step(&format!(
        "saving the states to restore, {} buffer",
        format_bytes(b)
    ));
    let mut d = driver(&run.devs.primary)?;
    let raw = temp_path(&run.dir).map_err(io_of("creating the raw capture file"))?;
    let mut f = std::fs::File::create(&raw).map_err(io_of("creating the raw capture file"))?;
    let mut buf = alloc(b, "the raw capture buffer")?;
    let r = raw::save(d.as_mut(), &mut buf, Some(&mut f)).map_err(mig("raw capture"))?;
    f.sync_all().map_err(io_of("syncing the raw capture"))?;
    let stream = temp_path(&run.dir).map_err(io_of("creating the stream file"))?;
    let f = std::fs::File::create(&stream).map_err(io_of("creating the stream file"))?;
    let (f, rep) = engine::save(d.as_mut(), f, "stream to restore", &opts(cfg, b))
        .map_err(mig("saving the stream to restore"))?;
    f.sync_all().map_err(io_of("syncing the stream file"))?;
    Ok(Saved {
        raw,
        raw_len: r.bytes,
        stream,
        stream_len: rep.stream_bytes,
        buffer: b,
    })
}

/// Opens a source of `file` (`len` bytes) through `path` ([`Source::open`]: its missing
/// pages read in), keeping in `cold` the most bytes any source of the block still missed.
fn open(path: DataPath, file: &Path, len: u64, cold: &Cell<u64>) -> Result<Source, BenchError> {
    let src = Source::open(path, file, len).map_err(io_of("opening the source"))?;
    cold.set(cold.get().max(src.cold()));
    Ok(src)
}

/// Runs `f` with a freshly opened source of `file` (`len` bytes) through `path` and waits for
/// its feeding thread; the seconds are from just after opening to the end.
fn from(
    path: DataPath,
    file: &Path,
    len: u64,
    cold: &Cell<u64>,
    f: impl FnOnce(&mut crate::bench::io::SourceReader) -> Result<Sample, BenchError>,
) -> Result<(f64, Sample), BenchError> {
    let (mut reader, feed) = open(path, file, len, cold)?.into_parts();
    let t0 = Instant::now();
    let s = f(&mut reader);
    drop(reader);
    let s = s?;
    Source::finish(feed).map_err(io_of("the source's feeding thread"))?;
    Ok((t0.elapsed().as_secs_f64(), s))
}

/// The `restore` block of `path` from the states in `saved`: the loops of `pass`.
pub(in crate::bench) fn block(
    run: &mut Run<'_>,
    path: DataPath,
    saved: &Saved,
    pass: Pass,
) -> Result<(), BenchError> {
    let cfg = run.cfg;
    let b = saved.buffer;
    if !pass.runs_at(b == cfg.buffer) {
        return Ok(());
    }
    cfg.check_cancel()?;
    run.step_block(&format!("restore <- {}", path.as_str()), b, pass);
    if path == DataPath::FileDirect {
        if let Err(e) = crate::bench::io::direct::open(&saved.raw) {
            run.note(format!(
                "restore <- file-direct: skipped: {} does not support O_DIRECT ({e})",
                run.dir.display()
            ));
            return Ok(());
        }
    }
    let main = b == cfg.buffer;
    let src_what = describe_source(path, &saved.raw);
    let d = RefCell::new(driver(&run.devs.primary)?);
    let (raw_file, raw_len): (&Path, u64) = (&saved.raw, saved.raw_len);
    let cold = Cell::new(0u64);
    let cold = &cold;
    let mut contenders = Vec::new();

    contenders.push(Contender {
        kind: Kind::Reference,
        buffer: b,
        buffers_bytes: b,
        what: format!(
            "read(2) into one buffer from {src_what}{}",
            if path == DataPath::Tcp {
                format!(
                    ", on a receive low-water mark of {} (SO_RCVLOWAT: each read waits for \
                     that much)",
                    format_bytes(reference::socket_mark(b as usize) as u64)
                )
            } else {
                String::new()
            }
        ),
        job: Box::new(move || {
            let src = open(path, raw_file, raw_len, cold)?;
            let (bytes, s) =
                reference::source_rate(src, b as usize).map_err(io_of("the source reference"))?;
            Ok((
                s,
                Sample {
                    bytes,
                    ..Sample::default()
                },
            ))
        }),
    });

    let mut raw_buf = alloc_io(b, "the raw restore buffer", path == DataPath::FileDirect)?;
    let dr = &d;
    contenders.push(Contender {
        kind: Kind::Raw,
        buffer: b,
        buffers_bytes: b,
        what: format!("reads into one buffer from {src_what}, each written to the device"),
        job: Box::new(move || {
            from(path, raw_file, raw_len, cold, |r| {
                let x = raw::restore(dr.borrow_mut().as_mut(), r, &mut raw_buf)
                    .map_err(mig("raw restore"))?;
                Ok(Sample {
                    downtime: Some(x.downtime),
                    bytes: x.bytes,
                    stream_bytes: None,
                })
            })
        }),
    });

    if main {
        let mut qbuf = alloc(QEMU_STREAM_BUFFER as u64, "the QEMU-style restore buffer")?;
        let dr = &d;
        contenders.push(Contender {
            kind: Kind::QemuStyle,
            buffer: QEMU_STREAM_BUFFER as u64,
            buffers_bytes: QEMU_STREAM_BUFFER as u64,
            what: format!("32 KiB reads from {src_what}, each written to the device"),
            job: Box::new(move || {
                from(path, raw_file, raw_len, cold, |r| {
                    let x = raw::restore(dr.borrow_mut().as_mut(), r, &mut qbuf)
                        .map_err(mig("QEMU-style restore"))?;
                    Ok(Sample {
                        downtime: Some(x.downtime),
                        bytes: x.bytes,
                        stream_bytes: None,
                    })
                })
            }),
        });
        if pass == Pass::WholeState && run.can_hold(raw_len, "restore whole-state") {
            let dr = &d;
            contenders.push(Contender {
                kind: Kind::WholeState,
                buffer: raw_len,
                buffers_bytes: raw_len,
                what: format!(
                    "the whole state read into memory from {src_what}, then written to the device"
                ),
                job: Box::new(move || {
                    from(path, raw_file, raw_len, cold, |r| {
                        let x = loops::whole_restore(dr.borrow_mut().as_mut(), r, raw_len)
                            .map_err(mig("whole-state restore"))?;
                        Ok(Sample {
                            downtime: Some(x.downtime),
                            bytes: x.bytes,
                            stream_bytes: None,
                        })
                    })
                }),
            });
        }
    }

    let mut o = opts(cfg, b);
    // The thread budget: a socket's feeding thread is a busy one (it runs the sending side
    // of the TCP stack, and on the loopback the receiving side's softirq work too), where a
    // pipe's moves page references. With fewer CPUs than that thread and the engine's two,
    // they only compete (hw-notes/bench.md, session 15), and the engine runs on one thread,
    // as the raw loop does.
    let cores = crate::bench::machine::cores();
    let budget = path == DataPath::Tcp && o.overlap && cores < 1 + ENGINE_THREADS;
    if budget {
        o.overlap = false;
    }
    let (stream_file, stream_len): (&Path, u64) = (&saved.stream, saved.stream_len);
    // `restore_from` waits on pipes and sockets through a token; the run's own cancel flag
    // (in `o`) is checked between chunks, and the feeding thread never leaves a read waiting.
    let token = engine::CancelToken::new().map_err(io_of("creating a cancel token"))?;
    // `file-direct`: a harness transfer that read through the page cache after all.
    let buffered_direct = &Cell::new(false);
    let dr = &d;
    contenders.push(Contender {
        kind: Kind::Harness,
        buffer: b,
        // `file-direct`: and the direct reader's stage.
        buffers_bytes: engine_buffers(&o, o.huge_buffers, b)
            + if path == DataPath::FileDirect {
                direct_stage_bytes()
            } else {
                0
            },
        what: format!(
            "{} (every chunk verified, {}) from {}",
            match path {
                DataPath::FileDirect => "restore_from, as `restore -i` reads a file the page \
                     cache does not hold (its pages dropped before each transfer, untimed): \
                     O_DIRECT reads of 1 MiB through the engine's stage"
                    .to_string(),
                DataPath::Pipe | DataPath::Tcp if !o.overlap && !o.max_poll.is_zero() => format!(
                    "restore_from, as `restore -i` reads its input: 64 KiB buffered reads, \
                     the {} polled for up to {} before each wait",
                    if path == DataPath::Pipe {
                        "pipe"
                    } else {
                        "socket"
                    },
                    format_seconds(o.max_poll.as_secs_f64())
                ),
                _ => "restore_from, as `restore -i` reads its input: 64 KiB buffered reads"
                    .to_string(),
            },
            if budget {
                format!(
                    "on one thread: {cores} CPUs, fewer than the feeding thread and the engine's \
                     {ENGINE_THREADS}"
                )
            } else {
                overlapped(o.overlap).to_string()
            },
            describe_source(path, stream_file)
        ) + if path != DataPath::FileDirect && !engine::can_reset(d.borrow().as_ref()) {
            "; the device cannot be reset, so the whole stream is verified before any of it is \
             written (a pipe or socket spooled to a temporary file meanwhile)"
        } else {
            ""
        },
        job: Box::new(move || {
            from(path, stream_file, stream_len, cold, |r| {
                let mut d = dr.borrow_mut();
                let input = r
                    .input(stream_file)
                    .map_err(io_of("duplicating the source"))?;
                let rep =
                    engine::restore_from(d.as_mut(), &input, &o, &token).map_err(mig("restore"))?;
                if path == DataPath::FileDirect && !rep.direct_io {
                    buffered_direct.set(true);
                }
                Ok(Sample {
                    downtime: Some(rep.seconds),
                    bytes: rep.bytes,
                    stream_bytes: Some(rep.stream_bytes),
                })
            })
        }),
    });

    let verified = run.devs.verified;
    let primary = run.devs.primary.clone();
    let id = BlockId {
        op: "restore",
        path,
        device: &run.devs.primary_spec,
        protocol: &run.protocol,
        device_memory: run.devs.memory_bytes(),
    };
    pass.keep(&mut contenders);
    let rows = run_block(cfg, &id, contenders, verified, || {
        verify_device(&primary, "restore")
    })?;
    run.add(pass, rows);
    if buffered_direct.get() {
        run.note(format!(
            "restore <- file-direct, {} buffer: the harness read the file through the page \
             cache in some transfers (half of it or more was still cached: the kernel has no \
             fadvise or kept pages after the drop, or the file system refused O_DIRECT): its \
             row is not from the disk alone",
            format_bytes(b)
        ));
    }
    if cold.get() > 0 {
        run.note(format!(
            "restore <- {}, {} buffer: up to {} of a source file was not in the page cache \
             when a timed read began, even after reading it in (the kernel dropped pages again): \
             these rows include disk reads",
            path.as_str(),
            format_bytes(b),
            format_bytes(cold.get())
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_cache_blocks_run_together_and_o_direct_last() {
        use DataPath::*;
        assert_eq!(
            order(&[File, FileDirect, Pipe, Tcp]),
            [File, Pipe, Tcp, FileDirect]
        );
        assert_eq!(order(&[Tcp, File]), [Tcp, File]);
        assert_eq!(order(&[FileDirect]), [FileDirect]);
    }
}
