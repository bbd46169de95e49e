//! A TCP socket read by a one-thread restore: blocking reads that wait in the kernel for what
//! the stream reader still needs ([`MarkedRead`]).
//!
//! Before each read the socket's receive low-water mark is set from the stream reader's
//! [`Needed`] count ([`LowWater`]: at most [`LOW_WATER_MAX`](super::LOW_WATER_MAX)), and the
//! read blocks until that much arrived or a short receive timeout ([`CANCEL_CHECK`]) passed,
//! returning whatever is queued by then. A blocking read on TCP never waits for more than
//! the mark *or the length it asked for*, whichever is less, and the count never exceeds
//! what must arrive before the reader can go on; a read past the timeout returns what came,
//! so even a count too high would only slow a read down, never make it wait for bytes a
//! peer keeping its end open will not send.
//!
//! Why not [`Cancellable`](super::Cancellable)'s non-blocking reads: on the loopback
//! connection of the bench's restore <- TCP row (hw-notes/bench.md, session 35), the one
//! thread polling a non-blocking socket read 69 to 274 KiB per call and ran at 0.65 to 0.89
//! of the raw loop in six alternated blocks; reading this way, about 960 KiB per call and
//! 0.56 to 1.13 (median 1.01), five of the six pairs ahead. Waiting in `poll(2)` for the mark
//! and then reading is not the same: session 19 measured that at half the raw loop's rate on
//! a Xeon, and a one-thread toy here ran 0.91 to 1.45 s that way against 0.74 to 0.97 s with
//! blocking reads on the mark.
//!
//! Cancelling: the token is checked before every read and each time the timeout passes, so
//! a cancel ends a waiting read within [`CANCEL_CHECK`] (not at once, as `poll(2)` on the
//! token's pipe does for [`Cancellable`](super::Cancellable)).

use super::cancel::{cancelled, CancelToken};
use super::low_water::LowWater;
use crate::migration::stream::Needed;
use std::fs::File;
use std::io::{self, IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// How long a read waits before it looks at the cancel token again: 50 ms.
pub(crate) const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// A TCP socket read in blocking reads on a low-water mark that follows a stream reader's
/// [`Needed`] count (see the module docs). While it lives the socket is blocking, with a
/// receive timeout of [`CANCEL_CHECK`]; its file status flags, its receive timeout and its
/// mark are put back on drop (the descriptor may be shared, as `restore -i /dev/fd/N` is).
#[derive(Debug)]
pub(crate) struct MarkedRead<'a> {
    sock: &'a File,
    token: Arc<CancelToken>,
    mark: LowWater,
    /// The file status flags to put back, when `O_NONBLOCK` was cleared.
    flags: Option<libc::c_int>,
    /// The receive timeout to put back.
    timeout: libc::timeval,
}

impl<'a> MarkedRead<'a> {
    /// `sock` read this way, or `None` when it is not a TCP socket (left untouched).
    ///
    /// # Errors
    ///
    /// Reading or setting the socket's flags, receive timeout or mark failed; whatever was
    /// changed before is put back.
    pub(crate) fn new(
        sock: &'a File,
        token: Arc<CancelToken>,
        needed: Arc<Needed>,
    ) -> io::Result<Option<MarkedRead<'a>>> {
        let Some(mark) = LowWater::new(sock.as_fd(), needed)? else {
            return Ok(None);
        };
        let fd = sock.as_raw_fd();
        let timeout = rcvtimeo(fd)?;
        // SAFETY: F_GETFL on a descriptor `sock` keeps open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let cleared = flags & libc::O_NONBLOCK != 0;
        // SAFETY: F_SETFL on a descriptor `sock` keeps open.
        if cleared && unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // From here on, drop puts back what was changed.
        let marked = MarkedRead {
            sock,
            token,
            mark,
            flags: cleared.then_some(flags),
            timeout,
        };
        set_rcvtimeo(fd, timeval(CANCEL_CHECK))?;
        Ok(Some(marked))
    }

    /// Runs `read` with the mark set from the count, again each time the timeout passed
    /// with nothing read, until it returns something else or the token is cancelled.
    fn wait(&mut self, mut read: impl FnMut(&File) -> io::Result<usize>) -> io::Result<usize> {
        loop {
            if self.token.is_cancelled() {
                return Err(cancelled());
            }
            self.mark.apply(self.sock.as_fd())?;
            match read(self.sock) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                other => return other,
            }
        }
    }
}

impl Read for MarkedRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait(|mut s| s.read(buf))
    }

    /// One `readv(2)` underneath (a stream reader takes a payload and the next chunk's header
    /// in one call).
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.wait(|mut s| s.read_vectored(bufs))
    }
}

impl Drop for MarkedRead<'_> {
    fn drop(&mut self) {
        let fd = self.sock.as_raw_fd();
        // Nothing to report to on drop: the socket's owner gets it back as it was, or as
        // near as the kernel lets it be put.
        self.mark.put_back(self.sock.as_fd());
        let _ = set_rcvtimeo(fd, self.timeout);
        if let Some(flags) = self.flags {
            // SAFETY: F_SETFL on a descriptor `sock` keeps open.
            unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
        }
    }
}

fn timeval(d: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

/// The socket's `SO_RCVTIMEO`.
fn rcvtimeo(fd: RawFd) -> io::Result<libc::timeval> {
    let mut tv = timeval(Duration::ZERO);
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` and `len` are valid, writable, and `len` is `tv`'s size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(tv)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_rcvtimeo(fd: RawFd, tv: libc::timeval) -> io::Result<()> {
    // SAFETY: `tv` is a valid timeval of the length passed, read by setsockopt only.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
#[path = "marked_read_tests.rs"]
mod tests;
