//! Cancellation that also interrupts blocking I/O: [`CancelToken`] and the I/O wrapper
//! [`Cancellable`].
//!
//! How a blocked operation is woken: the token owns a pipe (both ends non-blocking,
//! close-on-exec). [`CancelToken::cancel`] sets the flag the engine polls between chunks
//! ([`CancelToken::flag`], what [`Options::cancel`](super::Options::cancel) holds) and writes
//! one byte into the pipe, which is never drained, so its read end stays readable for good.
//! Every blocking wait on a stream fd ([`Cancellable`]'s reads and writes on pipes, FIFOs,
//! sockets and character devices; [`CancelToken::open_blocking`] for a FIFO's open) polls
//! the data fd *and* that read end, so a cancel wakes it at once, whichever thread is
//! blocked and whether or not a signal reached that thread. A signal handler may call
//! [`CancelToken::cancel`]: it only stores an atomic and calls `write(2)`, both
//! async-signal-safe.
//!
//! Regular files never block in the sense `poll(2)` knows (they always poll ready), so
//! they are read and written without polling, and the flag is checked between calls.
//! Device data fds (`read`/`write` of a migration driver) are not wrapped: the engine checks
//! the flag between device calls, which return in bounded time on every device we drive.

use super::low_water::LowWater;
use super::poll::Polled;
use super::ring::Waiter;
use super::Cancel;
use crate::migration::stream::Needed;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// A cancellation request that wakes blocked I/O (see the module docs).
#[derive(Debug)]
pub struct CancelToken {
    flag: Cancel,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
}

/// The error [`Cancellable`] returns when the token was cancelled while it waited. Its
/// kind is [`io::ErrorKind::Other`] (not `Interrupted`, which `std` retries).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Cancelled;

/// Whether `e` is (or wraps) a [`Cancelled`] from [`Cancellable`].
pub fn is_cancelled(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<Cancelled>())
}

fn cancelled() -> io::Error {
    io::Error::other(Cancelled)
}

impl CancelToken {
    /// A token, not cancelled, with its wake-up pipe.
    pub fn new() -> io::Result<Arc<CancelToken>> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
        let (wake_r, wake_w) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Arc::new(CancelToken {
            flag: Arc::new(AtomicBool::new(false)),
            wake_r,
            wake_w,
        }))
    }

    /// The flag set by [`cancel`](Self::cancel), for [`Options::cancel`](super::Options::cancel).
    pub fn flag(&self) -> Cancel {
        self.flag.clone()
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Cancels: sets the flag and wakes every waiter. Async-signal-safe.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        wake(self.wake_w.as_raw_fd());
    }

    /// The pipe's write end, for a signal handler that cannot reach the token itself: writing
    /// one byte to it and storing `true` into [`flag`](Self::flag) is [`cancel`](Self::cancel).
    /// Valid as long as the token lives.
    pub fn wake_fd(&self) -> RawFd {
        self.wake_w.as_raw_fd()
    }

    /// Waits until `fd` is ready for `events` (`libc::POLLIN` / `libc::POLLOUT`; hang-ups and
    /// errors count as ready, the following read or write reports them) or the token is
    /// cancelled ([`Cancelled`]).
    pub fn wait(&self, fd: RawFd, events: libc::c_short) -> io::Result<()> {
        loop {
            if self.is_cancelled() {
                return Err(cancelled());
            }
            let mut p = [
                libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wake_r.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `p` is a valid array of two pollfds for the duration of the call.
            let r = unsafe { libc::poll(p.as_mut_ptr(), 2, -1) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if p[1].revents != 0 || self.is_cancelled() {
                return Err(cancelled());
            }
            if p[0].revents != 0 {
                return Ok(());
            }
        }
    }

    /// Opens `path` with `opts` on a helper thread and waits for it or for a cancel
    /// ([`Cancelled`]): opening a FIFO blocks until its other end is opened, and `open(2)` is
    /// restarted by `std` after a signal. On cancel the helper is left to finish on its own
    /// (it drops whatever it opens).
    pub fn open_blocking(&self, path: &Path, opts: std::fs::OpenOptions) -> io::Result<File> {
        let (tx, rx) = mpsc::sync_channel(1);
        let (done_r, done_w) = {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
        };
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("open".into())
            .spawn(move || {
                let r = opts.open(&path);
                // The waiter may be gone (cancelled); then the file is simply dropped.
                let _ = tx.send(r);
                wake(done_w.as_raw_fd());
            })?;
        self.wait(done_r.as_raw_fd(), libc::POLLIN)?;
        rx.recv()
            .map_err(|_| io::Error::other("the opening thread ended without an answer"))?
    }
}

/// Writes one byte into a non-blocking pipe; a full pipe is already readable.
fn wake(fd: RawFd) {
    let b = 1u8;
    // SAFETY: writes one byte from a valid local into an fd we own; async-signal-safe.
    let _ = unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
}

/// A file, pipe, FIFO, socket or character device whose reads and writes wait through a
/// [`CancelToken`]: a cancel ends a blocked read or write with [`Cancelled`]. Regular files
/// are not polled (see the module docs). A pipe, FIFO or socket is switched to
/// `O_NONBLOCK` while wrapped (and switched back on drop): its open file description may be
/// shared with other processes (an inherited stdout), which see the flag meanwhile.
#[derive(Debug)]
pub struct Cancellable<F: AsFd> {
    inner: F,
    token: Arc<CancelToken>,
    poll: bool,
    /// The file status flags to put back on drop, when `new` made the fd non-blocking.
    restore_flags: Option<libc::c_int>,
    /// The fd is non-blocking (made so by `new`, or already): each read or write is tried
    /// before waiting (one that cannot go on returns `EAGAIN` instead of blocking), unless
    /// a low-water mark is set, whose bytes the wait gathers.
    nonblocking: bool,
    /// A TCP socket's receive low-water mark, set from a stream reader's count
    /// ([`Cancellable::low_water`]).
    low_water: Option<LowWater>,
    /// How long a try that would block is retried before the wait, and whether recent
    /// polls went unanswered ([`Cancellable::poll_first`]).
    polling: Option<(Duration, Waiter)>,
}

impl<F: AsFd> Cancellable<F> {
    /// Wraps `inner`.
    pub fn new(inner: F, token: Arc<CancelToken>) -> Self {
        let fd = inner.as_fd().as_raw_fd();
        let poll = !is_regular(fd);
        // A pipe or socket is made non-blocking while wrapped: `poll(2)` reporting room
        // does not stop a large write(2) from blocking until all of it fits, nor a read on a
        // socket from blocking. Character devices (a terminal) are left alone.
        let mut restore_flags = None;
        let mut nonblocking = false;
        if poll && is_pipe_or_socket(fd) {
            // SAFETY: F_GETFL/F_SETFL on a descriptor `inner` keeps open.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
                nonblocking = true;
            } else if flags >= 0
                // SAFETY: as above.
                && unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } == 0
            {
                restore_flags = Some(flags);
                nonblocking = true;
            }
        }
        Cancellable {
            inner,
            token,
            poll,
            restore_flags,
            nonblocking,
            low_water: None,
            polling: None,
        }
    }

    /// On a pipe or socket (made non-blocking by [`new`](Self::new)), a read or write that
    /// would block is tried again for up to `limit` before the thread waits in `poll(2)`
    /// (spinning between tries for the first 200 us, yielding the CPU after that; a cancel
    /// ends the polling as it ends a wait). A poll that goes unanswered makes the next waits
    /// go to `poll(2)` at once, for longer after each such poll in a row, so a peer much
    /// slower than this side is not polled for in vain on every read. A sleeping reader is
    /// woken by the kernel when data comes (in a VM, an interrupt to its vCPU); a polling
    /// one finds it itself. [`restore_from`](super::restore_from) on one thread asks for
    /// this with [`Options::max_poll`](super::Options::max_poll): on a 2-vCPU Xeon, its
    /// restore from a loopback socket took about 6 % less time for it (hw-notes/bench.md,
    /// "Session 23"). The polls take a CPU while they last: with other busy threads
    /// (overlapped, that restore's writer and the input's feeder) they compete with them.
    /// `Duration::ZERO`, a regular file, and a socket with a [`low_water`](Self::low_water)
    /// mark (whose wait gathers the mark's bytes) are not polled.
    ///
    /// # Examples
    ///
    /// Read from a socket whose peer is another thread, polling up to 1 ms before waiting:
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// use std::time::Duration;
    /// use vfio_harness::migration::engine::{CancelToken, Cancellable};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (r, mut w) = UnixStream::pair()?;
    /// let writer = std::thread::spawn(move || w.write_all(b"state"));
    /// let mut input =
    ///     Cancellable::new(r, CancelToken::new()?).poll_first(Duration::from_millis(1));
    /// let mut got = Vec::new();
    /// input.read_to_end(&mut got)?;
    /// assert_eq!(got, b"state");
    /// writer.join().expect("the writing thread")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_first(mut self, limit: Duration) -> Self {
        self.polling = (!limit.is_zero()).then(|| (limit, Waiter::default()));
        self
    }

    /// On a TCP socket, waits for as many bytes as the stream reader still needs before it
    /// reads (up to [`LOW_WATER_MAX`](super::LOW_WATER_MAX)): before each wait the socket's
    /// receive low-water mark (`SO_RCVLOWAT`) is set from `needed` (see
    /// [`StreamReader::report_needed`](crate::migration::stream::StreamReader::report_needed)),
    /// so the reading thread is woken once per that many bytes instead of per few segments; a
    /// count of 0 puts the socket's own mark back. The mark never exceeds what the reader must
    /// receive to go on, so a peer that sends the stream and keeps the connection open is
    /// never waited for past it; the kernel also wakes the reader when its receive buffer or
    /// window fill first. The socket's mark is put back on drop (the larger receive buffer
    /// the kernel may have given it for the mark stays). Anything but a TCP socket is read as
    /// before.
    ///
    /// Measure before using it: [`restore_from`](super::restore_from) used it until session
    /// 19 of hw-notes/bench.md, where on a loopback connection fed by another thread the
    /// one-thread restore ran at half the rate of the same restore without the mark, and a
    /// `restore -i -` fed by another process ran no faster with it. The transport's TCP link,
    /// whose blocking reads wait on the mark, measured faster with it.
    ///
    /// # Errors
    ///
    /// The error of `getsockopt(2)` reading the socket's mark.
    ///
    /// # Examples
    ///
    /// Read a saved stream from a loopback TCP connection:
    ///
    /// ```
    /// use std::io::{BufReader, Write};
    /// use std::net::{TcpListener, TcpStream};
    /// use vfio_harness::migration::engine::{self, CancelToken, Cancellable};
    /// use vfio_harness::migration::stream::{Needed, StreamReader};
    /// use vfio_harness::migration::driver_for;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dev = vfio_harness::open(&"sim:state=1M".parse()?, &Default::default())?;
    /// let mut drv = driver_for(dev)?;
    /// let (saved, saving) = engine::save(drv.as_mut(), Vec::new(), "memory", &Default::default())?;
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let mut tx = TcpStream::connect(listener.local_addr()?)?;
    /// let (rx, _) = listener.accept()?;
    /// // The sender keeps its end open: the reader stops at the trailer, never waiting past it.
    /// let feeder = std::thread::spawn(move || tx.write_all(&saved).map(|()| tx));
    ///
    /// let needed = Needed::new();
    /// let socket = Cancellable::new(&rx, CancelToken::new()?).low_water(needed.clone())?;
    /// let mut reader = StreamReader::new(BufReader::new(socket))?
    ///     .stop_at_trailer()
    ///     .report_needed(needed);
    /// let mut buf = vec![0u8; reader.header().max_chunk as usize];
    /// while reader.next_chunk(&mut buf)?.is_some() {}
    /// assert_eq!(reader.totals().payload_bytes, saving.bytes);
    /// let _still_open = feeder.join().expect("the feeding thread")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn low_water(mut self, needed: Arc<Needed>) -> io::Result<Self> {
        if self.poll {
            self.low_water = LowWater::new(self.inner.as_fd(), needed)?;
        }
        Ok(self)
    }

    /// How long a try that would block is polled for ([`poll_first`](Self::poll_first)),
    /// if it is.
    #[cfg(test)]
    pub(super) fn poll_limit(&self) -> Option<Duration> {
        self.polling.as_ref().map(|(limit, _)| *limit)
    }

    /// The wrapped file.
    pub fn get_ref(&self) -> &F {
        &self.inner
    }
}

/// The wrapped descriptor (its flags are those [`Cancellable::new`] set while it lives).
impl<F: AsFd> AsFd for Cancellable<F> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<F: AsFd> Drop for Cancellable<F> {
    fn drop(&mut self) {
        if let Some(lw) = &self.low_water {
            lw.put_back(self.inner.as_fd());
        }
        if let Some(flags) = self.restore_flags {
            // SAFETY: F_SETFL on a descriptor `inner` still keeps open. Nothing to report
            // to if the descriptor was closed meanwhile.
            unsafe { libc::fcntl(self.inner.as_fd().as_raw_fd(), libc::F_SETFL, flags) };
        }
    }
}

fn is_pipe_or_socket(fd: RawFd) -> bool {
    // SAFETY: a zeroed stat is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat.
    let r = unsafe { libc::fstat(fd, &mut st) };
    let t = st.st_mode & libc::S_IFMT;
    r == 0 && (t == libc::S_IFIFO || t == libc::S_IFSOCK)
}

/// Runs `op` until it does not report `WouldBlock`, waiting for `events` between tries;
/// with `try_first` (a non-blocking fd) the first try comes before any wait, which saves a
/// `poll(2)` whenever the fd is ready, and with `polling` a try that would block is tried
/// again for up to its limit first (unless its waiter says recent polls went unanswered).
fn retry<T>(
    token: &CancelToken,
    fd: RawFd,
    events: libc::c_short,
    try_first: bool,
    polling: Option<&(Duration, Waiter)>,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    if try_first {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        if let Some((limit, w)) = polling {
            let polled = w.poll_first(
                *limit,
                || token.is_cancelled(),
                || match op() {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                    other => Some(other),
                },
            );
            match polled {
                Polled::Answered(r) => return r,
                Polled::Stopped => return Err(cancelled()),
                Polled::Unanswered => {}
            }
        }
    }
    loop {
        if token.is_cancelled() {
            return Err(cancelled());
        }
        token.wait(fd, events)?;
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Whether `fd` is open on a file of type `kind` (`S_IFREG`, `S_IFIFO`...); `false` when it
/// cannot be asked.
pub(crate) fn is_type(fd: RawFd, kind: libc::mode_t) -> bool {
    // SAFETY: a zeroed stat is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat; an invalid fd only makes fstat fail.
    let r = unsafe { libc::fstat(fd, &mut st) };
    r == 0 && (st.st_mode & libc::S_IFMT) == kind
}

/// Whether `fd` is a regular file (which `poll(2)` always reports ready).
pub(crate) fn is_regular(fd: RawFd) -> bool {
    is_type(fd, libc::S_IFREG)
}

impl<F: AsFd> Cancellable<F> {
    /// Runs `op` on the wrapped file unless the token is cancelled. A pipe or socket (made
    /// non-blocking) is tried at once and waits for `events` (or the cancellation) only when
    /// a try would block; a socket with a low-water mark, and another polled file (a
    /// terminal), wait before every try.
    fn call<T>(
        &mut self,
        events: libc::c_short,
        mut op: impl FnMut(&mut F) -> io::Result<T>,
    ) -> io::Result<T> {
        if self.token.is_cancelled() {
            return Err(cancelled());
        }
        if !self.poll {
            return op(&mut self.inner);
        }
        let fd = self.inner.as_fd().as_raw_fd();
        let inner = &mut self.inner;
        // With a low-water mark, the wait is what gathers the mark's bytes (a non-blocking
        // read returns what is queued at once).
        let try_first = self.nonblocking && self.low_water.is_none();
        retry(
            &self.token,
            fd,
            events,
            try_first,
            self.polling.as_ref(),
            || op(inner),
        )
    }
}

impl<F: AsFd> Cancellable<F> {
    /// Sets the receive low-water mark from the stream reader's count, if asked to
    /// ([`Cancellable::low_water`]) and it changed.
    fn mark(&mut self) -> io::Result<()> {
        match &mut self.low_water {
            Some(lw) => lw.apply(self.inner.as_fd()),
            None => Ok(()),
        }
    }
}

impl<F: Read + AsFd> Read for Cancellable<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.mark()?;
        self.call(libc::POLLIN, |f| f.read(buf))
    }

    /// One `readv(2)` underneath (a stream reader takes a payload and the next chunk's header
    /// in one call), cancelled like [`Read::read`].
    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        self.mark()?;
        self.call(libc::POLLIN, |f| f.read_vectored(bufs))
    }
}

impl<F: Write + AsFd> Write for Cancellable<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.call(libc::POLLOUT, |f| f.write(buf))
    }

    /// One `writev(2)` underneath (a stream writer gives a chunk header and its payload in
    /// one call), cancelled like [`Write::write`].
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.call(libc::POLLOUT, |f| f.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[path = "low_water_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "cancel_poll_tests.rs"]
mod poll_tests;
