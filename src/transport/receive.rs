//! The destination side: HELLO checked (wire version, device count, every device's identity)
//! before a device is opened for RESUMING, each stream restored by [`engine::restore`] (one
//! device: read straight from the link by the restoring thread, [`super::direct`]; several:
//! each on its own thread from a channel the link's pump feeds), READY once every stream
//! was verified to its trailer and written into its device (the engine is about to leave
//! RESUMING), the commit only when the source asks for it (several devices: every one loads
//! its state into RUNNING_P2P before any runs, through a [`P2pBarrier`]), then ACK (or a
//! typed refusal).
//!
//! Until COMMIT arrives no device has left RESUMING: a link that drops or stalls makes every
//! stream fail, and the engine resets its device back to RUNNING.

use super::direct::{
    aborted, commit_too_early, data_after_end, interrupted, tell_if_interrupted, Direct,
};
use super::error::{Result, Stage, TransportError};
use super::frame::{
    Accept, Ack, AckDevice, FrameKind, Hello, RefusalKind, MIN_WIRE_VERSION, WIRE_MAGIC,
    WIRE_VERSION,
};
use super::link::Link;
use super::report::ReceiveReport;
use super::send::expect_json;
use crate::device::{DeviceHandle, MigFlags, MigState};
use crate::migration::attrs::CopyError;
use crate::migration::engine::{self, Options, P2pBarrier, RestoreReport};
use crate::migration::{MigrationDriver, MigrationError};
use crate::migration::{Pending, Protocol};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Frames queued per device between the link and its restore thread when a destination
/// receives several devices (each at most [`MAX_FRAME`](super::MAX_FRAME)): with the engine's
/// ring, what bounds the destination's memory. (One device reads its frames itself: none.)
pub const QUEUE: usize = 4;

enum Msg {
    Data(Vec<u8>),
    End,
    Commit,
}

/// The `Read` a restore thread pulls its stream from: the device's DATA frames, and EOF at
/// its END.
struct ChanReader {
    rx: Arc<Mutex<Receiver<Msg>>>,
    cur: Vec<u8>,
    pos: usize,
    ended: bool,
    link: Link,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.cur.len() {
                let n = out.len().min(self.cur.len() - self.pos);
                out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            let msg = self.rx.lock().map_err(|_| aborted())?.recv();
            match msg {
                Ok(Msg::Data(d)) => {
                    let used = std::mem::replace(&mut self.cur, d);
                    self.link.recycle(used);
                    self.pos = 0;
                }
                Ok(Msg::End) => self.ended = true,
                Ok(Msg::Commit) => return Err(commit_too_early()),
                Err(_) => return Err(aborted()),
            }
        }
    }
}

/// The destination driver as the engine sees it: when the engine leaves RESUMING (every
/// chunk of the stream verified and written to the device), the gate counts the device as
/// ready, sends READY once every device is, and lets the transition through only when the
/// source's COMMIT arrived. A link that fails first fails the transition, and the engine
/// resets the device. Recovery (which always tries a reset first from RESUMING) disarms it:
/// a failed stream is never announced as READY.
struct Gate<'a> {
    inner: &'a mut (dyn MigrationDriver + 'a),
    armed: bool,
    feed: Feed<'a>,
    ready: &'a AtomicUsize,
    devices: usize,
    link: &'a Link,
}

/// Where a restore thread's frames come from.
enum Feed<'a> {
    /// A channel the link's pump fills (several devices).
    Chan(Arc<Mutex<Receiver<Msg>>>),
    /// The link itself (one device).
    Link(&'a Direct),
}

impl Gate<'_> {
    fn wait_commit(&mut self) -> std::result::Result<(), MigrationError> {
        if self.ready.fetch_add(1, Ordering::AcqRel) + 1 == self.devices {
            // A failure here shows up on the link's reading side.
            let _ = self.link.send(FrameKind::Ready, 0, &[]);
        }
        let link_gone = |source: io::Error| MigrationError::File {
            path: "link to the source".into(),
            source,
        };
        let rx = match &self.feed {
            Feed::Link(d) => return d.wait_commit().map_err(link_gone),
            Feed::Chan(rx) => rx,
        };
        let msg = rx.lock().map_err(|_| link_gone(aborted()))?.recv();
        match msg {
            Ok(Msg::Commit) => Ok(()),
            Ok(_) => Err(link_gone(data_after_end())),
            Err(_) => Err(link_gone(aborted())),
        }
    }
}

impl MigrationDriver for Gate<'_> {
    fn protocol(&self) -> Protocol {
        self.inner.protocol()
    }
    fn device(&self) -> &DeviceHandle {
        self.inner.device()
    }
    fn flags(&self) -> MigFlags {
        self.inner.flags()
    }
    fn set_state(&mut self, state: MigState) -> crate::migration::Result<()> {
        // The device leaves RESUMING (into RUNNING, or into RUNNING_P2P / STOP when it loads
        // its state as one of a group) only once the source sent COMMIT.
        if self.armed
            && matches!(
                state,
                MigState::Running | MigState::RunningP2p | MigState::Stop
            )
            && self.inner.state()? == MigState::Resuming
        {
            self.armed = false;
            self.wait_commit()?;
        }
        self.inner.set_state(state)
    }
    fn state(&mut self) -> crate::migration::Result<MigState> {
        self.inner.state()
    }
    fn read(&mut self, buf: &mut [u8]) -> crate::migration::Result<usize> {
        self.inner.read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> crate::migration::Result<usize> {
        self.inner.write(buf)
    }
    fn pending(&mut self) -> crate::migration::Result<Pending> {
        self.inner.pending()
    }
    fn stop_copy_size(&mut self) -> crate::migration::Result<Option<u64>> {
        self.inner.stop_copy_size()
    }
    fn reset(&mut self) -> crate::migration::Result<()> {
        self.armed = false;
        self.inner.reset()
    }
    fn recover(&mut self) -> crate::migration::Result<()> {
        self.armed = false;
        self.inner.recover()
    }
}

/// The opener `receive` calls once the peer is authenticated and its HELLO read: prepares
/// the destination devices (e.g. copies the source's
/// [`dynamic_resources`](Hello::dynamic_resources) to a destination mdev) and returns them
/// opened, in device-index order. Nothing opens a destination device before it. Its error
/// is sent to the source as a refusal: `incompatible` for a dynamic resource that differs
/// and may not be copied ([`CopyError::Differs`]) or an incompatible device, `open`
/// otherwise.
pub type Opener<'a> =
    dyn FnMut(&Hello) -> std::result::Result<Vec<Box<dyn MigrationDriver>>, TransportError> + 'a;

/// Receives a migration from the source at the other end of `link` (which runs
/// [`migrate_to`](super::migrate_to)): the devices are opened by `open` only after the
/// HELLO, each one's identity is checked against the source's before it is touched, each
/// stream is restored with `opts` (cancellation, progress from the device threads), and the
/// state is committed when the source asks for it: with several devices, every one loads
/// its state into RUNNING_P2P (STOP without P2P states) before any runs (`opts.p2p` is
/// replaced by that group's hook), and when one refuses its state the others are reset.
/// Every device is RUNNING afterwards: with the source's state after the acknowledgement,
/// reset otherwise (a device that already ran the state when another failed keeps it).
///
/// # Examples
///
/// A destination that refuses a source whose state it was not built for: its device checks
/// for seed 5's state, the source sends seed 6's; the destination verifies the stream before
/// it commits, refuses it, and its device is back in RUNNING, the source's too:
///
/// ```
/// use std::time::Duration;
/// use vfio_harness::device::MigState;
/// use vfio_harness::migration::{driver_for, engine};
/// use vfio_harness::transport::{self, Listener, RefusalKind, Security, TransportError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     Ok(driver_for(vfio_harness::open(&spec.parse()?, &Default::default())?)?)
/// };
/// let mut destination = Some(open("sim:state=1M,verify-seed=5")?);
/// let listener = Listener::bind("127.0.0.1:0", Security::Insecure)?;
/// let addr = listener.local_addr()?;
/// let receiving = std::thread::spawn(move || {
///     let (link, _peer) = listener.accept(Duration::from_secs(10))?;
///     let mut opened = Vec::new();
///     let mut opener = |_: &transport::Hello| Ok(destination.take().into_iter().collect());
///     let r = transport::receive_into(&link, &mut opener, &mut opened, &engine::Options::default());
///     Ok::<_, TransportError>((r.is_err(), opened[0].state()?))
/// });
///
/// let endpoint = format!("tcp://{addr}").parse()?;
/// let link = transport::connect(&endpoint, &Security::Insecure, Duration::from_secs(10))?;
/// let mut sources = vec![open("sim:state=1M,seed=6")?];
/// match transport::migrate_to(&mut sources, &link, &engine::Options::default()) {
///     Err(TransportError::Refused(r)) => assert_eq!(r.kind, RefusalKind::Restore),
///     other => panic!("not refused: {other:?}"),
/// }
/// let (failed, state) = receiving.join().expect("the destination thread")?;
/// assert!(failed);
/// assert_eq!(state, MigState::Running);
/// assert_eq!(sources[0].state()?, MigState::Running);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// - [`TransportError::Refused`]: the source gave up (its device failed, it was interrupted).
/// - [`TransportError::LinkBroken`], [`TransportError::Stalled`]: the link dropped or stalled;
///   before the commit every device was reset to RUNNING.
/// - [`TransportError::Migration`]: opening, checking or restoring a device failed (the
///   source was told with a typed refusal).
/// - [`TransportError::Protocol`]: the source broke the wire protocol or speaks another
///   version.
pub fn receive(link: &Link, open: &mut Opener<'_>, opts: &Options) -> Result<ReceiveReport> {
    receive_into(link, open, &mut Vec::new(), opts)
}

/// [`receive`], leaving the devices `open` returned in `devices` afterwards (to inspect or
/// reuse them; empty when `open` was not called).
pub fn receive_into(
    link: &Link,
    open: &mut Opener<'_>,
    devices: &mut Vec<Box<dyn MigrationDriver>>,
    opts: &Options,
) -> Result<ReceiveReport> {
    let t0 = Instant::now();
    if let Some(c) = &opts.cancel {
        // Every wait on the peer, the handshake's and the commit's too, ends on an interrupt.
        link.cancel_on(c.clone());
    }
    link.set_stage(Stage::Handshake);
    let f = link
        .recv()
        .map_err(|e| tell_if_interrupted(link, "destination", e))?;
    if f.kind != FrameKind::Hello {
        return Err(TransportError::Protocol(format!(
            "expected HELLO, got {:?}",
            f.kind
        )));
    }
    let hello: Hello = expect_json(&f.payload, "HELLO")?;
    if hello.magic != WIRE_MAGIC || !(MIN_WIRE_VERSION..=WIRE_VERSION).contains(&hello.version) {
        let e = TransportError::Protocol(format!(
            "the peer speaks {:?} version {}, this side {WIRE_MAGIC:?} versions {MIN_WIRE_VERSION} to {WIRE_VERSION}",
            hello.magic, hello.version
        ));
        link.refuse(RefusalKind::Version, &e);
        return Err(e);
    }
    *devices = match open(&hello) {
        Ok(d) => d,
        Err(e) => {
            let kind = match &e {
                TransportError::Resources(CopyError::Differs { .. })
                | TransportError::Migration(MigrationError::Incompatible(_)) => {
                    RefusalKind::Incompatible
                }
                _ => RefusalKind::Open,
            };
            link.refuse(kind, &e);
            return Err(e);
        }
    };
    let n = devices.len();
    if n != hello.devices.len() {
        let e = TransportError::Protocol(format!(
            "the source sends {} device states, this side has {n} devices",
            hello.devices.len()
        ));
        link.refuse(RefusalKind::DeviceCount, &e);
        return Err(e);
    }
    for (h, d) in hello.devices.iter().zip(devices.iter()) {
        if let Err(e) = h.check_target(d.device(), d.protocol()) {
            link.refuse(RefusalKind::Incompatible, &e);
            return Err(e.into());
        }
    }
    link.send_json(
        FrameKind::Accept,
        &Accept {
            version: WIRE_VERSION,
            devices: devices
                .iter()
                .map(|d| d.device().name().to_string())
                .collect(),
        },
    )?;
    let handshake_seconds = t0.elapsed().as_secs_f64();
    let _keepalive = link.keepalive();
    link.set_stage(Stage::Transfer);
    let ready = AtomicUsize::new(0);
    // Set once a restore thread told the source why it failed (one REFUSE per migration).
    let told = AtomicBool::new(false);
    // Several devices commit as a group: every one loads its state (RUNNING_P2P) before any
    // runs.
    let barrier = (n > 1).then(|| match &opts.cancel {
        Some(c) => P2pBarrier::with_cancel(n, c.clone()),
        None => P2pBarrier::new(n),
    });
    let opts = &Options {
        p2p: barrier.as_ref().map(|b| b.hook()),
        ..opts.clone()
    };
    let each = Each {
        link,
        ready: &ready,
        told: &told,
        barrier: barrier.as_deref(),
        devices: n,
        opts,
    };
    let (link_result, results) = if let [drv] = devices.as_mut_slice() {
        // One device: its stream is read from the link by the restoring thread itself.
        let direct = Direct::new(link.clone(), opts.cancel.clone());
        let r = each.restore(drv.as_mut(), direct.reader(), Feed::Link(&direct));
        (direct.take_failure().map_or(Ok(()), Err), vec![r])
    } else {
        std::thread::scope(|s| {
            let mut senders: Vec<SyncSender<Msg>> = Vec::with_capacity(n);
            let mut handles = Vec::with_capacity(n);
            for drv in devices.iter_mut() {
                let (tx, rx) = sync_channel(QUEUE);
                senders.push(tx);
                let rx = Arc::new(Mutex::new(rx));
                let reader = ChanReader {
                    rx: rx.clone(),
                    cur: Vec::new(),
                    pos: 0,
                    ended: false,
                    link: link.clone(),
                };
                let each = &each;
                handles.push(s.spawn(move || each.restore(drv.as_mut(), reader, Feed::Chan(rx))));
            }
            let link_result = pump(link, &senders, opts);
            drop(senders);
            let results: Vec<std::result::Result<RestoreReport, MigrationError>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(MigrationError::ThreadPanicked("restore")))
                })
                .collect();
            (link_result, results)
        })
    };
    let mut reports = Vec::with_capacity(n);
    let mut first_err = None;
    for r in results {
        match r {
            Ok(rep) => reports.push(rep),
            Err(e) => {
                if first_err.is_none() || first_err.as_ref().is_some_and(is_abort) {
                    first_err = Some(e);
                }
            }
        }
    }
    // A restore that failed and told the source is the cause: the link failing afterwards
    // (the source gives up on the REFUSE and closes it) is its consequence.
    let told_source = told.load(Ordering::Acquire);
    if !told_source {
        link_result?;
    }
    if let Some(e) = first_err {
        if !told_source {
            link.refuse(RefusalKind::Restore, &e);
        }
        link.close();
        return Err(e.into());
    }
    let ack = Ack {
        devices: reports
            .iter()
            .map(|r| AckDevice {
                device: r.device.clone(),
                bytes: r.bytes,
                chunks: r.chunks,
                commit_seconds: r.commit_seconds,
            })
            .collect(),
    };
    link.send_json(FrameKind::Ack, &ack)?;
    link.close();
    Ok(ReceiveReport {
        peer: None,
        peer_harness_version: hello.harness_version,
        devices: reports,
        seconds: t0.elapsed().as_secs_f64(),
        handshake_seconds,
    })
}

/// What every device's restore shares.
struct Each<'a> {
    link: &'a Link,
    ready: &'a AtomicUsize,
    told: &'a AtomicBool,
    barrier: Option<&'a P2pBarrier>,
    devices: usize,
    opts: &'a Options,
}

impl Each<'_> {
    /// Restores one device from `reader` behind its commit gate; a failure aborts the group
    /// and is told to the source (once per migration) unless the link or the source caused it.
    fn restore(
        &self,
        drv: &mut dyn MigrationDriver,
        reader: impl Read + Send,
        feed: Feed<'_>,
    ) -> std::result::Result<RestoreReport, MigrationError> {
        let mut gate = Gate {
            inner: drv,
            armed: true,
            feed,
            ready: self.ready,
            devices: self.devices,
            link: self.link,
        };
        let r = engine::restore(&mut gate, reader, self.opts);
        if let Err(e) = &r {
            if let Some(b) = self.barrier {
                b.abort();
            }
            if self.link.fault().is_none()
                && !is_abort(e)
                && !self.told.swap(true, Ordering::AcqRel)
            {
                // Tell the source now: it may be waiting for READY.
                let kind = match e {
                    MigrationError::Interrupted => RefusalKind::Interrupted,
                    _ => RefusalKind::Restore,
                };
                self.link.refuse(kind, e);
            }
        }
        r
    }
}

/// An error of a stream cut short by [`aborted`] (the cause is elsewhere).
fn is_abort(e: &MigrationError) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::ConnectionAborted {
                return true;
            }
        }
        src = s.source();
    }
    matches!(e, MigrationError::PeerStopped)
}

/// Moves frames from the link to the devices' channels until COMMIT (Ok) or a failure.
fn pump(link: &Link, senders: &[SyncSender<Msg>], opts: &Options) -> Result<()> {
    loop {
        if interrupted(link, opts.cancel.as_ref()) {
            return Err(MigrationError::Interrupted.into());
        }
        let f = link
            .recv()
            .map_err(|e| tell_if_interrupted(link, "destination", e))?;
        let dev = |f: &super::frame::Frame| {
            senders.get(f.device as usize).ok_or_else(|| {
                TransportError::Protocol(format!(
                    "frame for device {} of {}",
                    f.device,
                    senders.len()
                ))
            })
        };
        match f.kind {
            FrameKind::Data => {
                if dev(&f)?.send(Msg::Data(f.payload)).is_err() {
                    // That device's restore failed; it told the source why.
                    return Ok(());
                }
            }
            FrameKind::End => {
                let _ = dev(&f)?.send(Msg::End);
            }
            FrameKind::Commit => {
                link.set_stage(Stage::Commit);
                for s in senders {
                    let _ = s.send(Msg::Commit);
                }
                return Ok(());
            }
            FrameKind::Refuse => {
                return Err(TransportError::Refused(expect_json(&f.payload, "REFUSE")?));
            }
            k => {
                return Err(TransportError::Protocol(format!(
                    "unexpected {k:?} during the transfer"
                )))
            }
        }
    }
}
