//! The source side: HELLO, every device's state stream in parallel (one thread and one
//! stream per device, framed as DATA on the shared link), then READY / COMMIT / ACK.
//!
//! Each device is saved by [`engine::save`] into a sink that frames its bytes: the same
//! pre-copy policy, checksums and stream format as a save to a file. Several devices pass
//! the engine's P2P points together ([`P2pBarrier`]): none stops before all are in
//! RUNNING_P2P / PRE_COPY_P2P. A device is RUNNING again once its stream ends (the engine's
//! rule); the migration succeeds only when the destination acknowledges that it left
//! RESUMING into RUNNING. A write that fails because the destination refused and closed the
//! link is reported with the destination's refusal, read from what it sent before closing.

use super::cursor::StreamCursor;
use super::direct::tell_if_interrupted;
use super::error::{Result, Stage, TransportError};
use super::frame::{
    Accept, Ack, FrameKind, Hello, Refusal, RefusalKind, MAX_FRAME, MIN_WIRE_VERSION, WIRE_MAGIC,
    WIRE_VERSION,
};
use super::link::Link;
use super::report::{DeviceLeg, RemoteReport};
use crate::device::MigFlags;
use crate::migration::attrs::ResourceValue;
use crate::migration::engine::{
    self, Options, P2pBarrier, P2pHook, P2pPoint, P2pStep, Phase, SaveReport,
};
use crate::migration::stream::StreamHeader;
use crate::migration::{MigrationDriver, MigrationError};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Small writes are gathered up to this size before they go out as one DATA frame.
pub(super) const GATHER: usize = 256 * 1024;

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
    /// The link's failure as the writer's error; the [`TransportError`] stays inside it
    /// (`get_ref`), its own source (the OS error) the chain's next link.
    fn io(e: TransportError) -> io::Error {
        io::Error::new(io::ErrorKind::BrokenPipe, e)
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

pub(crate) fn expect_json<T: serde::de::DeserializeOwned>(payload: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(payload)
        .map_err(|e| TransportError::Protocol(format!("bad {what} frame: {e}")))
}

/// What a migration sends besides the devices' states ([`migrate_to_with`]).
#[derive(Clone, Debug, Default)]
pub struct SendOptions {
    /// Per source device, in order: its mdev's dynamic resources
    /// ([`attrs::source_values`](crate::migration::attrs::source_values)) for the destination
    /// to copy before it opens its device, `None` for a device that is not mediated. Empty:
    /// none sent (then HELLO is wire version 1, which older destinations accept).
    pub dynamic_resources: Vec<Option<Vec<ResourceValue>>>,
}

/// Migrates the state of `sources` to the peer at the other end of `link`, which runs
/// [`receive`](super::receive()) with as many devices. Every source is RUNNING afterwards, on
/// success and on every error; on a link fault before the commit the destination resets its
/// devices to RUNNING. [`migrate_to_with`] also sends the sources' dynamic resources.
///
/// Several devices move together through the P2P states: each is saved on its own thread
/// into its own stream, but none stops (STOP_COPY) before every one finished pre-copy and
/// reached RUNNING_P2P or PRE_COPY_P2P ([`Options::p2p`], [`P2pBarrier`]); the destination
/// loads every device into RUNNING_P2P before any runs. As QEMU does, several devices move
/// only when all have the P2P states ([`TransportError::NoP2p`] otherwise); one device moves
/// whatever its flags.
///
/// `opts` is the engine's: buffer size, pre-copy policy, cancellation, progress (called from
/// the device threads); its `p2p` hook is replaced by the group's (none for one device).
///
/// # Examples
///
/// One simulated device migrated over the loopback to a destination thread whose device
/// checks that it received seed 5's state:
///
/// ```
/// use std::time::Duration;
/// use vfio_harness::migration::{driver_for, engine};
/// use vfio_harness::transport::{self, Listener, Security};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     Ok(driver_for(vfio_harness::open(&spec.parse()?, &Default::default())?)?)
/// };
/// let mut destination = Some(open("sim:state=4M,verify-seed=5")?);
/// let listener = Listener::bind("127.0.0.1:0", Security::Insecure)?;
/// let addr = listener.local_addr()?;
/// let receiving = std::thread::spawn(move || {
///     let (link, _peer) = listener.accept(Duration::from_secs(10))?;
///     // Called once the source's HELLO was read: the destination's devices, in order.
///     let mut opener = |_: &transport::Hello| Ok(destination.take().into_iter().collect());
///     transport::receive(&link, &mut opener, &engine::Options::default())
/// });
///
/// let endpoint = format!("tcp://{addr}").parse()?;
/// let link = transport::connect(&endpoint, &Security::Insecure, Duration::from_secs(10))?;
/// let mut sources = vec![open("sim:state=4M,seed=5")?];
/// let sent = transport::migrate_to(&mut sources, &link, &engine::Options::default())?;
/// // The destination verified the stream, and its device the state, before the ACK.
/// let received = receiving.join().expect("the destination thread")?;
/// assert!(sent.summary.bytes >= 4 << 20);
/// assert_eq!(received.devices[0].bytes, sent.summary.bytes);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// - [`TransportError::Refused`]: the destination refused (incompatible device, a stream it
///   could not restore, even while the source was still sending, a commit its device
///   refused), with its reason.
/// - [`TransportError::LinkBroken`], [`TransportError::Stalled`]: the link dropped or stalled
///   before the commit; the destination resets.
/// - [`TransportError::NotAcknowledged`]: the commit was sent and no acknowledgement came.
/// - [`TransportError::NoP2p`]: several sources, some without P2P states (nothing touched).
/// - [`TransportError::Migration`]: a source device failed (or `opts.cancel` was set).
/// - [`TransportError::Protocol`]: the peer broke the wire protocol.
/// - [`TransportError::InvalidRequest`]: no sources, or more than 255 (nothing touched).
/// - [`TransportError::Migration`] holding [`MigrationError::InvalidBufferSize`]:
///   `opts.buffer_size` is below 4 KiB or above 64 MiB (nothing touched).
pub fn migrate_to(
    sources: &mut [Box<dyn MigrationDriver + '_>],
    link: &Link,
    opts: &Options,
) -> Result<RemoteReport> {
    migrate_to_with(sources, link, opts, &SendOptions::default())
}

/// [`migrate_to`], sending what `send` holds in the HELLO.
///
/// # Errors
///
/// Those of [`migrate_to`]; [`TransportError::InvalidRequest`] when `send` lists another
/// number of devices than `sources`.
pub fn migrate_to_with(
    sources: &mut [Box<dyn MigrationDriver + '_>],
    link: &Link,
    opts: &Options,
    send: &SendOptions,
) -> Result<RemoteReport> {
    let t0 = Instant::now();
    if let Some(c) = &opts.cancel {
        // Every wait on the peer, the handshake's and the commit's too, ends on an interrupt.
        link.cancel_on(c.clone());
    }
    let n = sources.len();
    if n == 0 || n > u8::MAX as usize {
        return Err(TransportError::InvalidRequest(format!(
            "{n} devices: one migration moves 1 to 255"
        )));
    }
    if !send.dynamic_resources.is_empty() && send.dynamic_resources.len() != n {
        return Err(TransportError::InvalidRequest(format!(
            "dynamic resources for {} devices, {n} sources",
            send.dynamic_resources.len()
        )));
    }
    let chunk = crate::migration::chunk_size::checked(opts.buffer_size)?;
    let group = n > 1;
    if group {
        let without: Vec<String> = sources
            .iter()
            .filter(|d| !d.flags().has(MigFlags::P2P))
            .map(|d| d.device().name().to_string())
            .collect();
        if !without.is_empty() {
            return Err(TransportError::NoP2p { devices: without });
        }
    }
    link.set_stage(Stage::Handshake);
    let headers: Vec<StreamHeader> = sources
        .iter_mut()
        .map(|d| {
            let est = d.stop_copy_size().ok().flatten();
            StreamHeader::for_device(d.device(), d.protocol(), d.flags(), est, chunk as u32)
        })
        .collect();
    let resources = send.dynamic_resources.iter().any(Option::is_some);
    link.send_json(
        FrameKind::Hello,
        &Hello {
            magic: WIRE_MAGIC.into(),
            version: if resources {
                WIRE_VERSION
            } else {
                MIN_WIRE_VERSION
            },
            harness_version: env!("CARGO_PKG_VERSION").into(),
            devices: headers,
            dynamic_resources: if resources {
                send.dynamic_resources.clone()
            } else {
                Vec::new()
            },
        },
    )?;
    let f = link
        .recv()
        .map_err(|e| tell_if_interrupted(link, "source", e))?;
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
        link.refuse(RefusalKind::DeviceCount, &"device count");
        return Err(TransportError::Protocol(format!(
            "the destination accepted {} devices for {n}",
            accept.devices.len()
        )));
    }
    let accepted_at = Instant::now();
    let _keepalive = link.keepalive();
    link.set_stage(Stage::Transfer);
    // The devices' own stop flag: set by a device that failed (the others stop too) or when
    // the caller's `opts.cancel` is set. The caller's flag is only read, never set here.
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = group.then(|| P2pBarrier::with_cancel(n, stop.clone()));
    let results = transfer(sources, link, opts, &stop, barrier.as_ref());
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
                let consequence = |e: &MigrationError| {
                    matches!(e, MigrationError::Interrupted | MigrationError::PeerStopped)
                };
                if first_err
                    .as_ref()
                    .is_none_or(|f| consequence(f) && !consequence(&e))
                {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        // A device that could not be returned to RUNNING is reported as such, whatever
        // the link did.
        if !matches!(e, MigrationError::Recovery { .. }) {
            // An interrupted send that left a frame part-sent broke the link on purpose:
            // the interruption is what to report.
            if let Some(fault) = link.fault().filter(|_| !user_cancelled) {
                // The destination may have refused before it closed the link: its reason
                // is the one to report.
                if let Some(r) = pending_refusal(link) {
                    return Err(TransportError::Refused(r));
                }
                return Err(fault);
            }
        }
        let e = if matches!(e, MigrationError::Interrupted | MigrationError::PeerStopped)
            && !user_cancelled
        {
            MigrationError::PeerStopped
        } else {
            e
        };
        let kind = if matches!(e, MigrationError::Interrupted) {
            RefusalKind::Interrupted
        } else {
            RefusalKind::Save
        };
        link.refuse(kind, &e);
        link.close();
        return Err(e.into());
    }
    link.set_stage(Stage::Commit);
    let f = link
        .recv()
        .map_err(|e| tell_if_interrupted(link, "source", e))?;
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
    Ok(RemoteReport::new(legs, t0, accepted_at, acked_at, group))
}

/// One save result per source: the report (or error), when the device left RUNNING (the
/// group's release from its [`P2pStep::Ready`] barrier, or its first STOP_COPY chunk), when
/// its save ended.
type Saved = (
    std::result::Result<SaveReport, MigrationError>,
    Option<Instant>,
    Instant,
);

/// Saves every source on its own thread into its DATA frames, through `barrier` when the
/// sources move as a group. A failing source cancels the others and aborts the barrier.
fn transfer(
    sources: &mut [Box<dyn MigrationDriver + '_>],
    link: &Link,
    opts: &Options,
    cancel: &Arc<AtomicBool>,
    barrier: Option<&Arc<P2pBarrier>>,
) -> Vec<Saved> {
    let finished = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The caller's flag reaches the devices through theirs, within a poll. The watcher
        // is woken (unparked) as soon as the devices are done, so it never holds up the
        // commit that follows (downtime).
        let watcher = opts.cancel.as_ref().map(|user| {
            let (finished, barrier) = (&finished, barrier.cloned());
            s.spawn(move || {
                while !finished.load(Ordering::Acquire) {
                    if user.load(Ordering::Relaxed) {
                        cancel.store(true, Ordering::Relaxed);
                        if let Some(b) = &barrier {
                            b.abort();
                        }
                        return;
                    }
                    std::thread::park_timeout(super::POLL);
                }
            })
        });
        let handles: Vec<_> = sources
            .iter_mut()
            .enumerate()
            .map(|(i, drv)| {
                let stopped = Arc::new(OnceLock::new());
                let st = stopped.clone();
                let user = opts.progress.clone();
                let p2p: Option<P2pHook> = barrier.map(|b| {
                    let b = b.clone();
                    let st = stopped.clone();
                    Arc::new(move |p: &P2pPoint<'_>| {
                        b.wait()?;
                        if p.step == P2pStep::Ready {
                            // Every device of the group leaves RUNNING from here.
                            let _ = st.set(Instant::now());
                        }
                        Ok(())
                    }) as P2pHook
                });
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
                    p2p,
                    ..opts.clone()
                };
                let link = link.clone();
                let cancel = cancel.clone();
                let barrier = barrier.cloned();
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
                                source: FrameSink::io(e),
                            }
                        })?;
                        Ok(rep)
                    });
                    if r.is_err() {
                        // The other devices stop too (none of them stopped before this
                        // one reached its P2P state); each is returned to RUNNING.
                        cancel.store(true, Ordering::Relaxed);
                        if let Some(b) = &barrier {
                            b.abort();
                        }
                    }
                    (r, stopped.get().copied(), Instant::now())
                })
            })
            .collect();
        let saved = handles
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
            .collect();
        finished.store(true, Ordering::Release);
        if let Some(w) = &watcher {
            w.thread().unpark();
        }
        saved
    })
}

/// A REFUSE the destination sent before the link failed, still readable (at most a second
/// spent looking).
fn pending_refusal(link: &Link) -> Option<Refusal> {
    let f = link.recv_after_fault(FrameKind::Refuse, std::time::Duration::from_secs(1))?;
    expect_json(&f.payload, "REFUSE").ok()
}
