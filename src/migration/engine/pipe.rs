//! Growing a pipe to the size of one chunk.
//!
//! A pipe holds 64 KiB unless someone asks for more (`F_SETPIPE_SZ`). A raw frame is one
//! chunk (1 MiB by default), so a frame written into a default pipe leaves in sixteen pieces,
//! each a wake-up of the process at the other end and a wait for it: on the 2-vCPU machine of
//! `hw-notes/bench.md`, `save -o - | dd bs=1M of=/dev/null` of a 4 GiB state ran at 0.66-0.81
//! GiB/s through the default pipe and 1.9-3.3 GiB/s through a pipe of 1 MiB (`dd` piped into
//! `dd` runs at 0.8 GiB/s through the default pipe). [`grow`] asks for a capacity of one chunk
//! (at most the system's limit for pipes) on a pipe or FIFO the engine writes or reads. The
//! capacity belongs to the pipe, which the process at the other end shares: a larger one only
//! lets more bytes wait in it.

use super::cancel::is_type;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Where the system's limit for pipe sizes is read from.
const PIPE_MAX_SIZE: &str = "/proc/sys/fs/pipe-max-size";

/// What [`grow`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grown {
    /// Not a pipe or FIFO: nothing to do.
    NotAPipe,
    /// A pipe or FIFO of this capacity in bytes, after growing it as far as allowed.
    Pipe(usize),
}

impl Grown {
    /// The pipe's capacity, for a report.
    pub(crate) fn capacity(self) -> Option<u64> {
        match self {
            Grown::NotAPipe => None,
            Grown::Pipe(n) => Some(n as u64),
        }
    }
}

/// The pipe's capacity, bytes.
pub(super) fn get_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: F_GETPIPE_SZ on an open descriptor only reads the pipe's capacity.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn set_size(fd: BorrowedFd<'_>, want: usize) -> io::Result<usize> {
    let want = libc::c_int::try_from(want).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ on an open descriptor only changes the pipe's capacity (never
    // below the bytes it holds: the kernel refuses that with EBUSY).
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// The system's limit for pipe sizes (unprivileged processes cannot go past it).
fn max_size() -> io::Result<usize> {
    std::fs::read_to_string(PIPE_MAX_SIZE)?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The size to ask for: `want`, at most the system's limit `max` (without procfs, `want`:
/// the kernel judges).
fn capped(want: usize, max: Option<usize>) -> usize {
    max.map_or(want, |m| want.min(m))
}

/// Grows the pipe or FIFO `fd` to `want` bytes, or to the system's limit for pipes
/// (`/proc/sys/fs/pipe-max-size`, 1 MiB by default) if that is lower: a privileged process
/// could go past the limit, but it is the administrator's word on how much a pipe should
/// hold. The kernel rounds up to a power of two of pages. A pipe already that large, and
/// anything that is not a pipe, is left as it is. A pipe the kernel will not grow (`EPERM`:
/// the user's pipe pages used up) keeps its size: the transfer works as before, with more
/// wake-ups per chunk, and the capacity returned (and reported) says so.
pub(crate) fn grow(fd: BorrowedFd<'_>, want: usize) -> Grown {
    if !is_type(fd.as_raw_fd(), libc::S_IFIFO) {
        return Grown::NotAPipe;
    }
    let Ok(have) = get_size(fd) else {
        return Grown::NotAPipe;
    };
    // Large enough already (the cap can only lower `want`): no need to read the limit.
    if have >= want {
        return Grown::Pipe(have);
    }
    let want = capped(want, max_size().ok());
    if have >= want {
        return Grown::Pipe(have);
    }
    Grown::Pipe(set_size(fd, want).unwrap_or(have))
}

/// A new pipe of the kernel's default capacity: `(read end, write end)`.
#[cfg(test)]
pub(super) fn new_pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (r.into(), w.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_default_pipe_grows_to_the_chunk_and_a_file_is_left_alone() {
        let (r, w) = new_pipe();
        let before = get_size(w.as_fd()).unwrap();
        assert!(before < 1 << 20, "a new pipe holds {before} bytes");
        let max = max_size().unwrap();
        assert!(max >= 1 << 20, "pipe-max-size is {max}");
        assert_eq!(grow(w.as_fd(), 1 << 20), Grown::Pipe(1 << 20));
        // The read end sees the same pipe.
        assert_eq!(get_size(r.as_fd()).unwrap(), 1 << 20);
        // Never shrunk.
        assert_eq!(grow(r.as_fd(), 4096), Grown::Pipe(1 << 20));
        let f = tempfile::tempfile().unwrap();
        assert_eq!(grow(f.as_fd(), 1 << 20), Grown::NotAPipe);
    }

    /// Never past the system's limit, even for a process that may go past it.
    #[test]
    fn the_size_asked_for_stays_within_the_limit() {
        assert_eq!(capped(4 << 20, Some(1 << 20)), 1 << 20);
        assert_eq!(capped(64 << 10, Some(1 << 20)), 64 << 10);
        assert_eq!(capped(4 << 20, None), 4 << 20);
    }
}
