//! The source side: HELLO, every device's state stream in parallel (one thread and one
//! stream per device, framed as DATA on the shared link), then READY / COMMIT / ACK.
//!
//! Each device is saved by [`engine::save`] into a sink that frames its bytes: the same
//! pre-copy policy, checksums and stream format as a save to a file. A device is RUNNING again
//! once its stream ends (the engine's rule); the migration succeeds only when the destination
//! acknowledges that it left RESUMING into RUNNING.

use super::cursor::StreamCursor;
use super::error::{Result, Stage, TransportError};
use super::frame::{
    Accept, Ack, FrameKind, Hello, Refusal, RefusalKind, MAX_FRAME, WIRE_MAGIC, WIRE_VERSION,
};
use super::link::Link;
use super::report::{DeviceLeg, RemoteReport};
use crate::migration::engine::{self, Options, Phase, SaveReport};
use crate::migration::stream::{StreamHeader, MAX_CHUNK_LEN};
use crate::migration::{MigrationDriver, MigrationError};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Small writes are gathered up to this size before they go out as one DATA frame.
const GATHER: usize = 256 * 1024;

/// A `Write` that sends what it is given as DATA frames of one device. Small writes are
/// gathered, but a completed pre-copy chunk goes out at once (the device is still running
/// then; holding it back would move it into the downtime).
pub(super) struct FrameSink {
    pub(super) link: Link,
    pub(super) device: u8,
    pub(super) buf: Vec<u8>,
    pub(super) cursor: StreamCursor,
}

impl FrameSink {
    fn io(e: TransportError) -> io::Error {
        io::Error::new(io::ErrorKind::BrokenPipe, e.to_string())
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.link
                .send(FrameKind::Data, self.device, &[&self.buf])
                .map_err(Self::io)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Write for FrameSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() <= GATHER {
            self.buf.extend_from_slice(data);
            if self.cursor.advance(data) {
                self.send_buf()?;
            }
            return Ok(data.len());
        }
        // A large write goes out directly, led by what was gathered before it (the gathered
        // bytes are fewer than GATHER, so at least one byte of `data` fits in the frame).
        let first = data.len().min(MAX_FRAME - self.buf.len());
        self.link
            .send(FrameKind::Data, self.device, &[&self.buf, &data[..first]])
            .map_err(Self::io)?;
        self.buf.clear();
        self.cursor.advance(&data[..first]);
        Ok(first)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

fn refuse(link: &Link, kind: RefusalKind, e: &dyn std::fmt::Display) {
    // Best effort: the peer learns why; if the link is gone it resets on its own.
    let _ = link.send_json(
        FrameKind::Refuse,
        &Refusal {
            kind,
            message: e.to_string(),
        },
    );
}

pub(crate) fn expect_json<T: serde::de::DeserializeOwned>(payload: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(payload)
        .map_err(|e| TransportError::Protocol(format!("bad {what} frame: {e}")))
}

/// Migrates the state of `sources` to the peer at the other end of `link`, which runs
/// [`receive`](super::receive()) with as many devices. Every source is RUNNING afterwards, on
/// success and on every error; on a link fault before the commit the destination resets its
/// devices to RUNNING.
///
/// `opts` is the engine's: buffer size, pre-copy policy, cancellation, progress (called from
/// the device threads).
///
/// # Errors
///
/// - [`TransportError::Refused`]: the destination refused (incompatible device, a stream it
///   could not restore, a commit its device refused), with its reason.
/// - [`TransportError::LinkBroken`], [`TransportError::Stalled`]: the link dropped or stalled
///   before the commit; the destination resets.
/// - [`TransportError::NotAcknowledged`]: the commit was sent and no acknowledgement came.
/// - [`TransportError::Migration`]: a source device failed (or `opts.cancel` was set).
/// - [`TransportError::Protocol`]: the peer broke the wire protocol.
pub fn migrate_to(
    sources: &mut [Box<dyn MigrationDriver + '_>],
    link: &Link,
    opts: &Options,
) -> Result<RemoteReport> {
    let t0 = Instant::now();
    let n = sources.len();
    if n == 0 || n > u8::MAX as usize {
        return Err(TransportError::Protocol(format!(
            "{n} devices: one migration moves 1 to 255"
        )));
    }
    let chunk = opts.buffer_size;
    if chunk == 0 || chunk > MAX_CHUNK_LEN as usize {
        return Err(MigrationError::InvalidBufferSize { size: chunk }.into());
    }
    link.set_stage(Stage::Handshake);
    let headers: Vec<StreamHeader> = sources
        .iter_mut()
        .map(|d| {
            let est = d.stop_copy_size().ok().flatten();
            StreamHeader::for_device(d.device(), d.protocol(), d.flags(), est, chunk as u32)
        })
        .collect();
    link.send_json(
        FrameKind::Hello,
        &Hello {
            magic: WIRE_MAGIC.into(),
            version: WIRE_VERSION,
            harness_version: env!("CARGO_PKG_VERSION").into(),
            devices: headers,
        },
    )?;
    let f = link.recv()?;
    let accept: Accept = match f.kind {
        FrameKind::Accept => expect_json(&f.payload, "ACCEPT")?,
        FrameKind::Refuse => {
            return Err(TransportError::Refused(expect_json(&f.payload, "REFUSE")?))
        }
        k => {
            return Err(TransportError::Protocol(format!(
                "expected ACCEPT, got {k:?}"
            )))
        }
    };
    if accept.devices.len() != n {
        refuse(link, RefusalKind::DeviceCount, &"device count");
        return Err(TransportError::Protocol(format!(
            "the destination accepted {} devices for {n}",
            accept.devices.len()
        )));
    }
    let _keepalive = link.keepalive();
    link.set_stage(Stage::Transfer);
    let cancel = opts
        .cancel
        .clone()
        .unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    let results: Vec<(
        std::result::Result<SaveReport, MigrationError>,
        Option<Instant>,
        Instant,
    )> = std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .iter_mut()
            .enumerate()
            .map(|(i, drv)| {
                let stopped = Arc::new(OnceLock::new());
                let st = stopped.clone();
                let user = opts.progress.clone();
                let o = Options {
                    cancel: Some(cancel.clone()),
                    progress: Some(Arc::new(move |p: &engine::Progress| {
                        if p.phase == Phase::StopCopy {
                            let _ = st.set(Instant::now());
                        }
                        if let Some(u) = &user {
                            u(p);
                        }
                    })),
                    ..opts.clone()
                };
                let link = link.clone();
                let cancel = cancel.clone();
                s.spawn(move || {
                    let sink = FrameSink {
                        link: link.clone(),
                        device: i as u8,
                        buf: Vec::with_capacity(GATHER),
                        cursor: StreamCursor::default(),
                    };
                    let name = format!("link to the destination (device {i})");
                    let r = engine::save(drv.as_mut(), sink, &name, &o).and_then(|(_, rep)| {
                        link.send(FrameKind::End, i as u8, &[]).map_err(|e| {
                            MigrationError::File {
                                path: name.clone(),
                                source: io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()),
                            }
                        })?;
                        Ok(rep)
                    });
                    if r.is_err() {
                        // The other devices stop too; each is returned to RUNNING.
                        cancel.store(true, Ordering::Relaxed);
                    }
                    (r, stopped.get().copied(), Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        Err(MigrationError::ThreadPanicked("save")),
                        None,
                        Instant::now(),
                    )
                })
            })
            .collect()
    });
    let user_cancelled = opts
        .cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::Relaxed));
    let mut saves = Vec::with_capacity(n);
    let mut first_err: Option<MigrationError> = None;
    for (r, stopped, ended) in results {
        match r {
            Ok(rep) => saves.push((rep, stopped, ended)),
            Err(e) => {
                let better = match &first_err {
                    None => true,
                    Some(MigrationError::Interrupted) => !matches!(e, MigrationError::Interrupted),
                    Some(_) => false,
                };
                if better {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        if let Some(fault) = link.fault() {
            if !matches!(e, MigrationError::Recovery { .. }) {
                return Err(fault);
            }
        }
        let e = if matches!(e, MigrationError::Interrupted) && !user_cancelled {
            MigrationError::PeerStopped
        } else {
            e
        };
        let kind = if matches!(e, MigrationError::Interrupted) {
            RefusalKind::Interrupted
        } else {
            RefusalKind::Save
        };
        refuse(link, kind, &e);
        link.close();
        return Err(e.into());
    }
    link.set_stage(Stage::Commit);
    let f = link.recv()?;
    match f.kind {
        FrameKind::Ready => {}
        FrameKind::Refuse => {
            return Err(TransportError::Refused(expect_json(&f.payload, "REFUSE")?))
        }
        k => {
            return Err(TransportError::Protocol(format!(
                "expected READY, got {k:?}"
            )))
        }
    }
    link.send(FrameKind::Commit, 0, &[])
        .map_err(|e| TransportError::NotAcknowledged(Box::new(e)))?;
    let ack = link
        .recv()
        .map_err(|e| TransportError::NotAcknowledged(Box::new(e)));
    let ack: Ack = match ack {
        Ok(f) if f.kind == FrameKind::Ack => expect_json(&f.payload, "ACK")?,
        Ok(f) if f.kind == FrameKind::Refuse => {
            return Err(TransportError::Refused(expect_json(&f.payload, "REFUSE")?))
        }
        Ok(f) => {
            return Err(TransportError::Protocol(format!(
                "expected ACK, got {:?}",
                f.kind
            )))
        }
        Err(e) => return Err(e),
    };
    let acked_at = Instant::now();
    link.close();
    if ack.devices.len() != n {
        return Err(TransportError::Protocol(format!(
            "the acknowledgement names {} devices for {n}",
            ack.devices.len()
        )));
    }
    let legs = saves
        .into_iter()
        .zip(ack.devices)
        .map(|((save, stopped, ended), ack)| {
            // The device stopped at the latest when its first STOP_COPY chunk was counted, and
            // at the latest `stop_copy_seconds` before its save returned.
            let by_report =
                ended.checked_sub(std::time::Duration::from_secs_f64(save.stop_copy_seconds));
            let stopped = match (stopped, by_report) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            DeviceLeg::new(save, ack, stopped, acked_at)
        })
        .collect();
    Ok(RemoteReport::new(legs, t0, acked_at))
}
