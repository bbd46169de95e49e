//! A framed, shared link over any byte stream: frames are written whole under a lock (so
//! several threads — one per device, the keepalive — may send), a single reader collects
//! them, every wait is bounded by the link's timeout, and a keepalive thread sends a
//! KEEPALIVE frame whenever nothing else was sent for a while.
//!
//! The stream must have a short read and write timeout (the socket helpers set [`POLL`]):
//! the reader gives the lock back between attempts, and the total wait for the peer is
//! counted here, against [`Link::timeout`].

use super::bounded::{is_timeout, write_all_bounded, Bounded};
use super::error::{Result, Stage, TransportError};
use super::frame::{header, Frame, FrameKind, Refusal, RefusalKind, FRAME_HEADER_LEN, MAX_FRAME};
use crate::migration::engine::Cancel;
use crate::migration::stream::Needed;
use crate::migration::MigrationError;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Read/write timeout of the socket itself: how long one attempt holds the link's lock.
pub const POLL: Duration = Duration::from_millis(50);

/// A byte stream a link runs over: a TCP socket, a TLS session, an in-memory pipe.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

struct RxState {
    hdr: [u8; FRAME_HEADER_LEN],
    hdr_got: usize,
    payload: Vec<u8>,
    got: usize,
    /// What the DATA frame being read by [`Link::read_data`] still holds: read straight into
    /// the caller's buffers, never into `payload`.
    direct: usize,
}

/// What [`Link::read_data`] read.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// This many bytes of a DATA frame's payload, read straight into the caller's buffer.
    Data(usize),
    /// A whole frame that is not DATA (keepalives too: the caller may check for a
    /// cancellation on each).
    Frame(Frame),
}

/// A stream shared by a reading and a writing half (a TLS session cannot be split): each
/// call locks it, and a waiting writer goes first, so a frame is never held up for more than
/// one read attempt of the reader.
struct Shared {
    stream: Mutex<Box<dyn Stream>>,
    writers: AtomicUsize,
}

#[derive(Clone)]
struct Half(Arc<Shared>);

impl Read for Half {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t0 = Instant::now();
        while self.0.writers.load(Ordering::Acquire) > 0 && t0.elapsed() < POLL {
            std::thread::yield_now();
        }
        Link::lock(&self.0.stream).read(buf)
    }
}

impl Write for Half {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.writers.fetch_add(1, Ordering::AcqRel);
        let mut s = Link::lock(&self.0.stream);
        self.0.writers.fetch_sub(1, Ordering::AcqRel);
        s.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.writers.fetch_add(1, Ordering::AcqRel);
        let mut s = Link::lock(&self.0.stream);
        self.0.writers.fetch_sub(1, Ordering::AcqRel);
        s.flush()
    }
}

/// A link fault kept for the operations after it: an OS error keeps its errno (a later
/// copy is that same OS error), any other its kind and message.
enum Fault {
    Os(i32),
    Other(io::ErrorKind, String),
}

impl Fault {
    fn of(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Fault::Os(errno),
            None => Fault::Other(e.kind(), e.to_string()),
        }
    }

    fn to_io(&self) -> io::Error {
        match self {
            Fault::Os(errno) => io::Error::from_raw_os_error(*errno),
            Fault::Other(kind, msg) => io::Error::new(*kind, msg.clone()),
        }
    }
}

struct Inner {
    rd: Mutex<Box<dyn Read + Send>>,
    wr: Mutex<Box<dyn Write + Send>>,
    rx: Mutex<RxState>,
    timeout: Duration,
    last_tx: Mutex<Instant>,
    stage: AtomicU8,
    /// The first fault seen; later operations fail with a copy of it.
    fault: Mutex<Option<(Stage, Fault)>>,
    stop: AtomicBool,
    /// Set by [`Link::cancel_on`]: once the flag is set, a wait for the peer gives up with
    /// [`MigrationError::Interrupted`] at its next poll.
    cancel: OnceLock<Cancel>,
    /// Payload buffers given back by consumers, reused for the next frames (no allocation,
    /// no fresh pages per frame).
    free: Mutex<Vec<Vec<u8>>>,
    /// Before every read: the bytes the frame being read still lacks (the rest of its
    /// header or payload). A TCP link's reading half sets its low-water mark from it.
    needed: Arc<Needed>,
}

/// Payload buffers kept for reuse.
const FREE_BUFFERS: usize = 16;

/// A framed link shared by the threads of one migration (cheap to clone).
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

fn stage_from(b: u8) -> Stage {
    match b {
        0 => Stage::Handshake,
        1 => Stage::Transfer,
        _ => Stage::Commit,
    }
}

impl Link {
    /// A link over `stream`, whose own read/write timeouts must be short (see [`POLL`]);
    /// `timeout` bounds every wait for the peer. Reading and writing share the stream (see
    /// [`Link::from_halves`] for a stream that splits, like a TCP socket).
    pub fn new(stream: Box<dyn Stream>, timeout: Duration) -> Link {
        let h = Half(Arc::new(Shared {
            stream: Mutex::new(stream),
            writers: AtomicUsize::new(0),
        }));
        Link::from_halves(Box::new(h.clone()), Box::new(h), timeout)
    }

    /// A link over a stream already split into a reading and a writing half (a TCP socket
    /// and its `try_clone`), with short timeouts of their own (see [`POLL`]).
    pub fn from_halves(
        rd: Box<dyn Read + Send>,
        wr: Box<dyn Write + Send>,
        timeout: Duration,
    ) -> Link {
        Link::from_halves_needing(rd, wr, timeout, Needed::new())
    }

    /// [`Link::from_halves`], telling `needed` before every read how many bytes the frame
    /// being read still lacks (for a reading half that waits for them: a TCP socket's
    /// low-water mark).
    pub(super) fn from_halves_needing(
        rd: Box<dyn Read + Send>,
        wr: Box<dyn Write + Send>,
        timeout: Duration,
        needed: Arc<Needed>,
    ) -> Link {
        Link {
            inner: Arc::new(Inner {
                rd: Mutex::new(rd),
                wr: Mutex::new(wr),
                rx: Mutex::new(RxState {
                    hdr: [0; FRAME_HEADER_LEN],
                    hdr_got: 0,
                    payload: Vec::new(),
                    got: 0,
                    direct: 0,
                }),
                timeout,
                last_tx: Mutex::new(Instant::now()),
                stage: AtomicU8::new(0),
                fault: Mutex::new(None),
                stop: AtomicBool::new(false),
                cancel: OnceLock::new(),
                free: Mutex::new(Vec::new()),
                needed,
            }),
        }
    }

    /// The bound on every wait for the peer.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Makes every later wait on the link (for a frame from the peer, for room to send one)
    /// give up with [`MigrationError::Interrupted`] within [`POLL`] of `flag` being set: a
    /// signal handler's flag, so Ctrl-C ends a handshake or a commit waiting on a silent peer
    /// at once instead of after the link's timeout. A receive that gave up can be retried; a
    /// send that gave up part-way through a frame leaves the link broken. The migration calls
    /// ([`migrate_to`](super::migrate_to), [`receive_into`](super::receive_into)) set their
    /// `opts.cancel` here; the first flag set stays.
    pub fn cancel_on(&self, flag: Cancel) {
        let _already_set = self.inner.cancel.set(flag);
    }

    fn cancelled(&self) -> bool {
        self.inner
            .cancel
            .get()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Records which stage the migration is in (named by link errors).
    pub fn set_stage(&self, stage: Stage) {
        self.inner.stage.store(stage as u8, Ordering::Relaxed);
    }

    fn stage(&self) -> Stage {
        stage_from(self.inner.stage.load(Ordering::Relaxed))
    }

    fn lock<'a, T>(m: &'a Mutex<T>) -> MutexGuard<'a, T> {
        // A panicking holder cannot leave a frame half-accounted in a way that matters more
        // than the panic itself, which the caller reports.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first link fault seen, if any, as an error.
    pub fn fault(&self) -> Option<TransportError> {
        Self::lock(&self.inner.fault)
            .as_ref()
            .map(|(stage, fault)| self.error(*stage, fault.to_io()))
    }

    fn error(&self, stage: Stage, e: io::Error) -> TransportError {
        if e.kind() == io::ErrorKind::TimedOut {
            TransportError::Stalled {
                stage,
                timeout: self.inner.timeout,
            }
        } else {
            TransportError::LinkBroken { stage, source: e }
        }
    }

    fn failed(&self, e: io::Error) -> TransportError {
        let stage = self.stage();
        let mut f = Self::lock(&self.inner.fault);
        if f.is_none() {
            *f = Some((stage, Fault::of(&e)));
        }
        drop(f);
        self.error(stage, e)
    }

    fn stalled() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "the peer stalled")
    }

    /// Sends one frame made of `parts` (at most [`MAX_FRAME`] bytes together).
    pub(crate) fn send(&self, kind: FrameKind, device: u8, parts: &[&[u8]]) -> Result<()> {
        if let Some(f) = self.fault() {
            return Err(f);
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        debug_assert!(len <= MAX_FRAME);
        let h = header(kind, device, len);
        let mut slices: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        slices.push(&h);
        slices.extend(parts.iter().copied().filter(|p| !p.is_empty()));
        let mut io = Self::lock(&self.inner.wr);
        let r = write_all_bounded(&mut **io, &mut slices, self.inner.timeout, || {
            self.cancelled()
        });
        *Self::lock(&self.inner.last_tx) = Instant::now();
        drop(io);
        r.map_err(|e| match e {
            Bounded::Cancelled => {
                // Part of the frame may have gone: nothing more can be framed on this link.
                let _ = self.failed(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "a frame was left part-sent when the migration was interrupted",
                ));
                MigrationError::Interrupted.into()
            }
            Bounded::Io(e) => self.failed(e),
        })
    }

    /// Sends a frame whose payload is `value` as JSON.
    pub(crate) fn send_json<T: serde::Serialize>(&self, kind: FrameKind, value: &T) -> Result<()> {
        let json = serde_json::to_vec(value)
            .map_err(|e| TransportError::Protocol(format!("encoding a frame: {e}")))?;
        if json.len() > MAX_FRAME {
            return Err(TransportError::Protocol("control frame too large".into()));
        }
        self.send(kind, 0, &[&json])
    }

    /// Tells the peer why this side gives up (a REFUSE frame), best effort: a peer whose link
    /// is gone resets on its own.
    pub(crate) fn refuse(&self, kind: RefusalKind, why: &dyn std::fmt::Display) {
        let _ = self.send_json(
            FrameKind::Refuse,
            &Refusal {
                kind,
                message: why.to_string(),
            },
        );
    }

    /// Receives the next frame that is not a keepalive, waiting at most the link's timeout
    /// since the last byte received. Only one thread may receive.
    pub(crate) fn recv(&self) -> Result<Frame> {
        loop {
            let f = self.recv_any()?;
            if f.kind != FrameKind::Keepalive {
                return Ok(f);
            }
        }
    }

    /// Receives the next frame, keepalives included (a receiver that checks for an
    /// interruption on each), as [`Link::recv`] does.
    pub(crate) fn recv_any(&self) -> Result<Frame> {
        if let Some(f) = self.fault() {
            return Err(f);
        }
        self.read_frame(self.inner.timeout)
    }

    /// After a fault: the next frame of `kind` the peer sent before the link failed, still
    /// readable from the stream (a peer that refused and closed leaves its REFUSE behind),
    /// looking for at most `within`. Only one thread may receive.
    pub(crate) fn recv_after_fault(&self, kind: FrameKind, within: Duration) -> Option<Frame> {
        let t0 = Instant::now();
        loop {
            let left = within.checked_sub(t0.elapsed())?;
            match self.read_frame(left.min(self.inner.timeout)) {
                Ok(f) if f.kind == kind => return Some(f),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Reads one frame, failing when nothing arrives for `timeout`.
    fn read_frame(&self, timeout: Duration) -> Result<Frame> {
        match self.read_next(timeout, None)? {
            Incoming::Frame(f) => Ok(f),
            // Not returned without a buffer to read into.
            Incoming::Data(_) => Err(self.protocol("a DATA frame read without a buffer".into())),
        }
    }

    /// Reads the link's next bytes for a receiver of one device's stream, waiting at most the
    /// link's timeout since the last byte received: the payload of DATA frames goes straight
    /// into `out` (no copy through a frame buffer), at most one frame's worth per call; any
    /// other frame is returned whole. A DATA or END frame for another device than `device` is
    /// a protocol error. Only one thread may receive.
    pub(crate) fn read_data(&self, device: u8, out: &mut [u8]) -> Result<Incoming> {
        if out.is_empty() {
            return Ok(Incoming::Data(0));
        }
        if let Some(f) = self.fault() {
            return Err(f);
        }
        self.read_next(self.inner.timeout, Some((device, out)))
    }

    /// Reads until a whole frame, or (with `data`) some bytes of a DATA frame of its device
    /// into its buffer, arrived; fails when nothing arrives for `timeout`.
    fn read_next(&self, timeout: Duration, mut data: Option<(u8, &mut [u8])>) -> Result<Incoming> {
        let mut rx = Self::lock(&self.inner.rx);
        if data.is_none() && rx.direct > 0 {
            // A frame read by `read_data` so far, read here from now on: the rest of its
            // payload is returned as a DATA frame of its own.
            let rest = std::mem::take(&mut rx.direct);
            rx.payload = self.payload_buffer(rest);
            rx.got = 0;
        }
        let mut last = Instant::now();
        loop {
            let r = {
                let mut io = Self::lock(&self.inner.rd);
                let rx = &mut *rx;
                let buf = if rx.hdr_got < FRAME_HEADER_LEN {
                    &mut rx.hdr[rx.hdr_got..]
                } else if let (Some((_, out)), true) = (data.as_mut(), rx.direct > 0) {
                    let n = out.len().min(rx.direct);
                    &mut out[..n]
                } else {
                    &mut rx.payload[rx.got..]
                };
                self.inner.needed.set(buf.len());
                io.read(buf)
            };
            match r {
                Ok(0) => {
                    return Err(self.failed(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the link",
                    )))
                }
                Ok(n) => {
                    last = Instant::now();
                    if rx.hdr_got < FRAME_HEADER_LEN {
                        rx.hdr_got += n;
                        if rx.hdr_got == FRAME_HEADER_LEN {
                            let len =
                                u32::from_le_bytes([rx.hdr[4], rx.hdr[5], rx.hdr[6], rx.hdr[7]])
                                    as usize;
                            let kind = FrameKind::from_u8(rx.hdr[0]);
                            if len > MAX_FRAME || kind.is_none() {
                                return Err(
                                    self.protocol(format!("bad frame header {:02x?}", rx.hdr))
                                );
                            }
                            if let (
                                Some((device, _)),
                                Some(k @ (FrameKind::Data | FrameKind::End)),
                            ) = (&data, kind)
                            {
                                if rx.hdr[1] != *device {
                                    let name = if k == FrameKind::Data {
                                        "a DATA"
                                    } else {
                                        "an END"
                                    };
                                    return Err(self.protocol(format!(
                                        "{name} frame for device {} on a link carrying device {device} only",
                                        rx.hdr[1]
                                    )));
                                }
                            }
                            match &data {
                                Some(_) if kind == Some(FrameKind::Data) => {
                                    // An empty DATA frame ends here, and the next is read.
                                    rx.direct = len;
                                    if len == 0 {
                                        rx.hdr_got = 0;
                                    }
                                    continue;
                                }
                                _ => {
                                    rx.payload = self.payload_buffer(len);
                                    rx.got = 0;
                                }
                            }
                        }
                    } else if rx.direct > 0 {
                        rx.direct -= n;
                        if rx.direct == 0 {
                            rx.hdr_got = 0;
                        }
                        return Ok(Incoming::Data(n));
                    } else {
                        rx.got += n;
                    }
                }
                Err(e) if is_timeout(&e) => {
                    if self.cancelled() {
                        // What was read of a frame so far stays: a later receive goes on.
                        return Err(MigrationError::Interrupted.into());
                    }
                    if self.inner.stop.load(Ordering::Relaxed) && rx.hdr_got == 0 {
                        return Err(self.failed(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "the link was shut down",
                        )));
                    }
                    if last.elapsed() >= timeout {
                        return Err(self.failed(Self::stalled()));
                    }
                }
                Err(e) => return Err(self.failed(e)),
            }
            if rx.hdr_got == FRAME_HEADER_LEN && rx.direct == 0 && rx.got == rx.payload.len() {
                rx.hdr_got = 0;
                let kind = FrameKind::from_u8(rx.hdr[0]).unwrap_or(FrameKind::Keepalive);
                return Ok(Incoming::Frame(Frame {
                    kind,
                    device: rx.hdr[1],
                    payload: std::mem::take(&mut rx.payload),
                }));
            }
        }
    }

    /// A payload buffer of `len` bytes, reused when one was given back: the whole payload is
    /// read over what the buffer held, so only the part it never held is zeroed (not a
    /// memset per frame).
    fn payload_buffer(&self, len: usize) -> Vec<u8> {
        let mut p = Self::lock(&self.inner.free).pop().unwrap_or_default();
        if p.len() < len {
            p.resize(len, 0);
        } else {
            p.truncate(len);
        }
        p
    }

    fn protocol(&self, what: String) -> TransportError {
        let _ = self.failed(io::Error::new(io::ErrorKind::InvalidData, what.clone()));
        TransportError::Protocol(what)
    }

    /// Gives a received payload back for reuse by later frames.
    pub(crate) fn recycle(&self, buf: Vec<u8>) {
        let mut free = Self::lock(&self.inner.free);
        if free.len() < FREE_BUFFERS && buf.capacity() <= MAX_FRAME {
            free.push(buf);
        }
    }

    /// Starts the keepalive thread: a KEEPALIVE frame whenever nothing was sent for a quarter
    /// of the timeout (at most every 2 s). It stops when the returned guard is dropped.
    pub fn keepalive(&self) -> Keepalive {
        let link = self.clone();
        let every =
            (self.inner.timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(2));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("keepalive".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    // Woken early by the guard's drop, so that ending a migration does not
                    // wait out this period (it did, up to `POLL`, at every migrate and
                    // receive); a spurious wake-up only checks again.
                    std::thread::park_timeout(every.min(POLL));
                    if s.load(Ordering::Acquire) {
                        break;
                    }
                    let idle = Self::lock(&link.inner.last_tx).elapsed();
                    if idle >= every && link.send(FrameKind::Keepalive, 0, &[]).is_err() {
                        break;
                    }
                }
            })
            .ok();
        Keepalive { stop, handle }
    }

    /// Flushes and closes the sending direction (best effort: the peer sees end of stream).
    pub fn close(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        let mut io = Self::lock(&self.inner.wr);
        let _ = io.flush();
    }
}

/// Stops the keepalive thread when dropped.
pub struct Keepalive {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            // An unpark before the thread parks makes its next park return at once.
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Keepalive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keepalive")
            .field("running", &self.handle.is_some())
            .finish()
    }
}
