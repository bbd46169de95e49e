//! A TCP socket's receive low-water mark (`SO_RCVLOWAT`) set from what its reader still
//! needs ([`Needed`]): the socket wakes its reader once that much has arrived (at most
//! [`LOW_WATER_MAX`]) instead of at every segment.
//!
//! Used by the transport's TCP link under its frame reader, and by
//! [`Cancellable::low_water`](super::Cancellable::low_water) for a caller's stream reader
//! that asks for it (`restore_from` does not: see there). The mark never asks for more than
//! must arrive before the reader can go on, so a peer that waits for an answer after what it
//! sent is never waited for in turn.

use crate::migration::stream::Needed;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

/// The highest receive low-water mark a reader sets: 256 KiB. On the loopback connection of
/// hw-notes/bench.md (session 10) a mark of this size took the reading thread from about 133
/// thousand wake-ups per 4 GiB down to a few per payload (the kernel also caps the mark at
/// half the socket's largest receive buffer).
pub const LOW_WATER_MAX: usize = 256 << 10;

/// A socket's low-water mark following a reader's [`Needed`] count.
#[derive(Debug)]
pub(crate) struct LowWater {
    needed: Arc<Needed>,
    /// The socket's `SO_RCVLOWAT` when taken, put back by [`LowWater::put_back`].
    original: libc::c_int,
    /// What it is set to now.
    current: libc::c_int,
}

impl LowWater {
    /// The mark of `fd` following `needed`; `None` when `fd` is not a TCP socket (the only
    /// kind whose reads and `poll(2)` honour `SO_RCVLOWAT`).
    ///
    /// # Errors
    ///
    /// Reading the socket's mark failed.
    pub(crate) fn new(fd: BorrowedFd<'_>, needed: Arc<Needed>) -> io::Result<Option<LowWater>> {
        let fd = fd.as_raw_fd();
        if !is_tcp(fd) {
            return Ok(None);
        }
        let original = sockopt(fd, libc::SO_RCVLOWAT)?;
        Ok(Some(LowWater {
            needed,
            original,
            current: original,
        }))
    }

    /// Before a read of `fd`: sets its mark from the count (the original mark when the
    /// count is 0), when that changed.
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub(crate) fn apply(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let want = match self.needed.get() {
            0 => self.original,
            n => n.min(LOW_WATER_MAX) as libc::c_int,
        };
        if want != self.current {
            set_rcvlowat(fd.as_raw_fd(), want)?;
            self.current = want;
        }
        Ok(())
    }

    /// Puts the socket's own mark back (on drop of the reader that took it).
    pub(crate) fn put_back(&self, fd: BorrowedFd<'_>) {
        if self.current != self.original {
            // Nothing to report to on drop: a socket that took the mark takes it back, and
            // one that cannot is closed right after by its owner.
            let _ = set_rcvlowat(fd.as_raw_fd(), self.original);
        }
    }
}

/// Whether `fd` is a TCP socket.
fn is_tcp(fd: RawFd) -> bool {
    matches!(
        (sockopt(fd, libc::SO_TYPE), sockopt(fd, libc::SO_PROTOCOL)),
        (Ok(libc::SOCK_STREAM), Ok(libc::IPPROTO_TCP))
    )
}

/// Sets the receive low-water mark (`SO_RCVLOWAT`) of socket `fd` to `bytes`.
///
/// # Errors
///
/// `setsockopt(2)` failed (`fd` is not a socket, or the value is refused).
pub(crate) fn set_rcvlowat(fd: RawFd, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: `bytes` is a valid int of the length passed, read by setsockopt only.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The `SOL_SOCKET` option `name` of `fd`, an int.
pub(crate) fn sockopt(fd: RawFd, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid, writable, and `len` is `v`'s size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(v)
    } else {
        Err(io::Error::last_os_error())
    }
}
