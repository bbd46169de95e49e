//! The `live` blocks: the primary device's state moved into the destination device, in the
//! process (`memory`: the engine's migrate, with pre-copy rounds) and across a loopback TCP
//! connection (`tcp`: a saving thread and a restoring thread, as two hosts would run them, no
//! pre-copy; the harness through the transport, as `migrate SRC tcp://` and `receive` run),
//! by the path's reference, the raw loop, the QEMU-style and whole-state loops (main buffer)
//! and the harness. After every transfer the destination is checked to hold the source's
//! state (untimed).

use super::references;
use super::{
    alloc, engine_buffers, io_of, opts, overlapped, run_block, verify_device, BlockId, Contender,
    Pass, Run, Sample,
};
use crate::bench::config::{DataPath, Kind};
use crate::bench::devices::driver;
use crate::bench::error::{mig, BenchError};
use crate::bench::io::{channel, SinkTarget};
use crate::bench::loops::{self, QEMU_READ, QEMU_STREAM_BUFFER};
use crate::bench::raw::{self, RawRun};
use crate::bench::reference::Copy;
use crate::migration::engine::{self, PrecopyPolicy};
use crate::migration::{MigrationDriver, MigrationError};
use crate::transport;
use std::cell::RefCell;
use std::net::TcpStream;
use std::time::Instant;

type Drv = Box<dyn MigrationDriver>;

/// The sides of a migration over TCP that the live harness runs in this process.
const LIVE_TCP_SIDES: usize = 2;

/// Runs a saving side on this thread and a restoring side on another, connected by a
/// loopback TCP connection; both sides' errors are reported (the first one that is not just
/// the other side going away). Returns the wall time and the bytes the saving side moved.
fn across_tcp(
    src: &mut Drv,
    dst: &mut Drv,
    send: impl FnOnce(&mut dyn MigrationDriver, &mut TcpStream) -> Result<u64, MigrationError>,
    recv: impl FnOnce(&mut dyn MigrationDriver, &mut TcpStream) -> Result<u64, MigrationError> + Send,
) -> Result<(f64, Sample), BenchError> {
    let (mut c, mut a) = channel::tcp_pair().map_err(io_of("connecting over the loopback"))?;
    let t0 = Instant::now();
    let (sent, received) = std::thread::scope(|s| {
        let h = s.spawn(move || recv(dst.as_mut(), &mut a));
        let sent = send(src.as_mut(), &mut c);
        drop(c);
        let received = h
            .join()
            .unwrap_or(Err(MigrationError::ThreadPanicked("live receive")));
        (sent, received)
    });
    let secs = t0.elapsed().as_secs_f64();
    let bytes = match (sent, received) {
        (Ok(b), Ok(_)) => b,
        (Err(e), _) => return Err(mig("live over TCP: saving side")(e)),
        (Ok(_), Err(e)) => return Err(mig("live over TCP: restoring side")(e)),
    };
    Ok((
        secs,
        Sample {
            // No pre-copy: the source stops at the start and the destination runs at the end.
            downtime: Some(secs),
            bytes,
            stream_bytes: None,
        },
    ))
}

/// Migrates `src` into `dst_dev` as `migrate SRC tcp://ADDR` and `receive DST --insecure`
/// do on two hosts: the transport's link (frames, keepalive) over a loopback TCP connection,
/// [`transport::migrate_to`] on this thread, [`transport::receive_into`] on another (its
/// device driver made afresh, as `receive` opens its devices after the HELLO). Returns the
/// wall time from connecting until the source has the destination's acknowledgement, and
/// the bytes moved; the downtime is the transport's (the source leaving RUNNING until the
/// acknowledgement).
fn across_link(
    src: &mut Drv,
    dst_dev: &crate::device::DeviceHandle,
    listener: &transport::Listener,
    o: &engine::Options,
) -> Result<(f64, Sample), BenchError> {
    let link_err = |what: &'static str| {
        move |e: transport::TransportError| BenchError::Transport {
            what: format!("live over TCP: {what}"),
            source: Box::new(e),
        }
    };
    let ep: transport::Endpoint = format!(
        "tcp://{}",
        listener
            .local_addr()
            .map_err(link_err("the listener's address"))?
    )
    .parse()
    .map_err(link_err("the listener's address"))?;
    let dst = driver(dst_dev)?;
    let t0 = Instant::now();
    let (sent, received) = std::thread::scope(|s| {
        let h = s.spawn(move || {
            let (link, _) = listener.accept(LINK_TIMEOUT)?;
            let mut dst = Some(dst);
            let mut open = |_: &transport::Hello| Ok(dst.take().into_iter().collect::<Vec<Drv>>());
            transport::receive_into(&link, &mut open, &mut Vec::new(), o)
        });
        let sent = transport::connect(&ep, &transport::Security::Insecure, LINK_TIMEOUT)
            .and_then(|link| transport::migrate_to(std::slice::from_mut(src), &link, o));
        // The migration ends with the destination's acknowledgement (its device runs the
        // state); its thread closing the link after that is not part of it.
        let secs = t0.elapsed().as_secs_f64();
        let received = h
            .join()
            .unwrap_or_else(|_| Err(MigrationError::ThreadPanicked("live receive").into()));
        (sent.map(|r| (r, secs)), received)
    });
    let (rep, secs) = match (sent, received) {
        (Ok(r), Ok(_)) => r,
        (Err(e), _) => return Err(link_err("migrate_to")(e)),
        (Ok(_), Err(e)) => return Err(link_err("receive")(e)),
    };
    Ok((
        secs,
        Sample {
            downtime: Some(rep.summary.downtime_seconds),
            bytes: rep.summary.bytes,
            stream_bytes: None,
        },
    ))
}

/// How long either side of the bench's link waits for the other.
const LINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What a raw run returns as a sample.
fn sample(r: RawRun) -> (f64, Sample) {
    (
        r.seconds,
        Sample {
            downtime: Some(r.downtime),
            bytes: r.bytes,
            stream_bytes: None,
        },
    )
}

/// The `live` block of `path` at buffer size `b`, when there is a destination device: the
/// loops of `pass`.
pub(in crate::bench) fn block(
    run: &mut Run<'_>,
    path: DataPath,
    b: u64,
    pass: Pass,
) -> Result<(), BenchError> {
    let cfg = run.cfg;
    let main = b == cfg.buffer;
    if !matches!(path, DataPath::Memory | DataPath::Tcp) || !pass.runs_at(main) {
        return Ok(());
    }
    let Some((dst_dev, dst_name)) = run.devs.live.clone() else {
        run.progress.step("live: skipped");
        return Ok(());
    };
    cfg.check_cancel()?;
    let name = format!("live over {}", path.as_str());
    run.step_block(&name, b, pass);
    let s = RefCell::new(driver(&run.devs.primary)?);
    let d = RefCell::new(driver(&dst_dev)?);
    let state = run.state_of(s.borrow_mut().as_mut(), &name);
    let tcp_target = if path == DataPath::Tcp {
        Some(SinkTarget::new(DataPath::Tcp, &run.dir, b as usize).map_err(io_of("preparing TCP"))?)
    } else {
        None
    };
    let mut contenders = Vec::new();

    // The physical reference.
    match &tcp_target {
        None => {
            if run.devs.primary_memory() > 0 {
                contenders.push(references::memory(Copy::Through, b, state, run.min_time()));
            } else {
                run.note(
                    "live over memory: no memory reference (the devices' copies are not this \
                     process's to see: a generated simulator state, or kernel devices); the raw \
                     loop is the reference"
                        .into(),
                );
            }
        }
        Some(t) => contenders.push(references::sink(t, state, b, 2 * b)),
    }

    let tcp = tcp_target.is_some();
    let via = if tcp {
        "over a loopback TCP connection to a restoring thread"
    } else {
        "in the process"
    };

    // The raw loop.
    let mut buf = alloc(b, "the raw live buffer")?;
    let mut buf2 = alloc(b, "the raw live receive buffer")?;
    let (sr, dr) = (&s, &d);
    contenders.push(Contender {
        kind: Kind::Raw,
        buffer: b,
        buffers_bytes: if tcp { 2 * b } else { b },
        what: format!("source reads into one buffer, each written {via}"),
        job: Box::new(move || {
            let (mut s, mut d) = (sr.borrow_mut(), dr.borrow_mut());
            if tcp {
                across_tcp(
                    &mut s,
                    &mut d,
                    |src, c| raw::save(src, &mut buf, Some(c)).map(|r| r.bytes),
                    |dst, a| raw::restore(dst, a, &mut buf2).map(|r| r.bytes),
                )
            } else {
                loops::raw_live(s.as_mut(), d.as_mut(), &mut buf)
                    .map(sample)
                    .map_err(mig("raw live"))
            }
        }),
    });

    if main {
        let mut rbuf = alloc(QEMU_READ as u64, "the QEMU-style read buffer")?;
        let mut stage = alloc(QEMU_STREAM_BUFFER as u64, "the QEMU-style stream buffer")?;
        let mut wbuf = alloc(QEMU_STREAM_BUFFER as u64, "the QEMU-style restore buffer")?;
        let (sr, dr) = (&s, &d);
        contenders.push(Contender {
            kind: Kind::QemuStyle,
            buffer: QEMU_READ as u64,
            buffers_bytes: (QEMU_READ + 2 * QEMU_STREAM_BUFFER) as u64,
            what: format!(
                "1 MiB source reads through a 32 KiB stream buffer, written 32 KiB at a time {via}"
            ),
            job: Box::new(move || {
                let (mut s, mut d) = (sr.borrow_mut(), dr.borrow_mut());
                if tcp {
                    across_tcp(
                        &mut s,
                        &mut d,
                        |src, c| loops::qemu_save(src, &mut rbuf, &mut stage, c).map(|r| r.bytes),
                        |dst, a| raw::restore(dst, a, &mut wbuf).map(|r| r.bytes),
                    )
                } else {
                    loops::qemu_live(s.as_mut(), d.as_mut(), &mut rbuf, &mut stage)
                        .map(sample)
                        .map_err(mig("QEMU-style live"))
                }
            }),
        });
        let whole = if tcp { 2 * state } else { state };
        if pass == Pass::WholeState
            && run.can_hold(whole, &format!("live over {} whole-state", path.as_str()))
        {
            let (sr, dr) = (&s, &d);
            contenders.push(Contender {
                kind: Kind::WholeState,
                buffer: state,
                buffers_bytes: whole,
                what: format!("the whole state read into memory, then written {via}"),
                job: Box::new(move || {
                    let (mut s, mut d) = (sr.borrow_mut(), dr.borrow_mut());
                    if tcp {
                        across_tcp(
                            &mut s,
                            &mut d,
                            |src, c| loops::whole_save(src, c).map(|r| r.bytes),
                            |dst, a| loops::whole_restore(dst, a, state).map(|r| r.bytes),
                        )
                    } else {
                        loops::whole_live(s.as_mut(), d.as_mut())
                            .map(sample)
                            .map_err(mig("whole-state live"))
                    }
                }),
            });
        }
    }

    // The harness.
    let listener = if tcp {
        Some(
            transport::Listener::bind("127.0.0.1:0", transport::Security::Insecure).map_err(
                |e| BenchError::Transport {
                    what: "live over TCP: listening on the loopback".into(),
                    source: Box::new(e),
                },
            )?,
        )
    } else {
        None
    };
    let dst_handle = &dst_dev;
    let mut o = opts(cfg, b);
    // Thread budget (as the parallel mode's): overlapped, each side of a migration over TCP
    // runs two threads, four in all here where both sides share this machine's CPUs (on two
    // hosts each side has its own). With fewer CPUs than threads they only compete, and each
    // side runs on one thread, as each side of the raw loop does.
    let cores = crate::bench::machine::cores();
    if tcp && cores < 2 * LIVE_TCP_SIDES {
        o.overlap = false;
    }
    if !tcp {
        o.precopy = PrecopyPolicy {
            max_rounds: cfg.precopy_rounds,
            dirty_threshold: b,
            ..Default::default()
        };
    }
    let (sr, dr) = (&s, &d);
    let mut rounds = 0;
    let rounds_ref = &mut rounds;
    contenders.push(Contender {
        kind: Kind::Harness,
        buffer: b,
        buffers_bytes: if tcp {
            2 * engine_buffers(&o, o.huge_buffers, b)
                + transport::LINK_BUFFER_BYTES_ONE_DEVICE as u64
        } else {
            engine_buffers(&o, o.huge_buffers, b)
        },
        what: if tcp {
            format!(
                "migrate_to over the transport's link (a loopback TCP connection, frames, \
                 keepalive) into receive_into on another thread, as `migrate SRC tcp://` and \
                 `receive --insecure` run ({})",
                if o.overlap {
                    "each side overlapped on two threads".to_string()
                } else if cfg.overlap {
                    format!(
                        "each side on one thread: {cores} CPUs for both sides, fewer than \
                         the {} threads of two overlapped sides",
                        2 * LIVE_TCP_SIDES
                    )
                } else {
                    "each side on one thread".to_string()
                }
            )
        } else {
            format!(
                "the engine's migrate ({}, up to {} pre-copy rounds)",
                overlapped(o.overlap),
                cfg.precopy_rounds
            )
        },
        job: Box::new(move || {
            let (mut s, mut d) = (sr.borrow_mut(), dr.borrow_mut());
            if let Some(l) = &listener {
                drop(d);
                across_link(&mut s, dst_handle, l, &o)
            } else {
                let t0 = Instant::now();
                let rep =
                    engine::migrate(s.as_mut(), d.as_mut(), &o).map_err(mig("live migration"))?;
                *rounds_ref = rep.rounds;
                Ok((
                    t0.elapsed().as_secs_f64(),
                    Sample {
                        downtime: Some(rep.downtime_seconds),
                        bytes: rep.bytes,
                        stream_bytes: None,
                    },
                ))
            }
        }),
    });

    let verified = run.devs.verified;
    let device = format!("{} -> {dst_name}", run.devs.primary_spec);
    let id = BlockId {
        op: "live",
        path,
        device: &device,
        protocol: &run.protocol,
        device_memory: run.devs.memory_bytes(),
    };
    pass.keep(&mut contenders);
    let mut rows = run_block(cfg, &id, contenders, verified, || {
        verify_device(&dst_dev, "live")
    })?;
    if !tcp {
        for r in rows.iter_mut().filter(|r| r.kind == Kind::Harness) {
            r.precopy_rounds = Some(rounds);
        }
    }
    run.add(pass, rows);
    Ok(())
}
