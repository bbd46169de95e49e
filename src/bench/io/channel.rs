//! Pipes and loopback TCP connections, and the threads at their far ends: a drain (what a
//! receiving process does: read into its buffer, discard) and a feed (what a sending process
//! does: `sendfile` a stream file into the channel, which moves page-cache pages without a
//! copy through user memory, so the feed costs the measured side as little as possible).

use crate::bench::buf::page_buf;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread::JoinHandle;

/// Pipe capacity asked for (`F_SETPIPE_SZ`; the default `/proc/sys/fs/pipe-max-size` allows
/// 1 MiB to every user).
pub(in crate::bench) const PIPE_SIZE: usize = 1 << 20;

/// A pipe: `(read end, write end, capacity)`. The capacity is [`PIPE_SIZE`] when the kernel
/// allows it, its default (64 KiB) otherwise.
pub(in crate::bench) fn pipe() -> io::Result<(File, File, usize)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETPIPE_SZ on a pipe fd we own. It fails (EPERM) above
    // /proc/sys/fs/pipe-max-size for an unprivileged user: the pipe keeps its default size
    // then, which F_GETPIPE_SZ below reports, so its result is not needed.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int) };
    // SAFETY: F_GETPIPE_SZ on a pipe fd we own; it takes no argument.
    let size = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
    let size = usize::try_from(size).map_err(|_| {
        let e = io::Error::last_os_error();
        io::Error::new(e.kind(), format!("F_GETPIPE_SZ on a new pipe: {e}"))
    })?;
    Ok((File::from(r), File::from(w), size))
}

/// A connected pair over the loopback interface: `(connecting end, accepted end)`.
pub(in crate::bench) fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind(("127.0.0.1", 0))?;
    let c = TcpStream::connect(l.local_addr()?)?;
    let (a, _) = l.accept()?;
    Ok((c, a))
}

/// Starts a thread that reads `from` into a `buffer`-byte buffer until end of file and
/// discards the bytes; it returns how many it read.
pub(in crate::bench) fn drain<R: Read + Send + 'static>(
    mut from: R,
    buffer: usize,
) -> io::Result<JoinHandle<io::Result<u64>>> {
    let mut buf = page_buf(buffer.max(4096))?;
    Ok(std::thread::spawn(move || {
        let mut total = 0u64;
        loop {
            match from.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }))
}

/// Starts a thread that sends the first `len` bytes of `file` into `to` (`sendfile`, or
/// read + write where the kernel refuses that), then closes `to`; it returns the bytes sent.
pub(in crate::bench) fn feed<W: Write + AsRawFd + Send + 'static>(
    file: File,
    len: u64,
    to: W,
) -> JoinHandle<io::Result<u64>> {
    std::thread::spawn(move || {
        let mut to = to;
        let mut off: libc::off_t = 0;
        while (off as u64) < len {
            let want = (len - off as u64).min(1 << 30) as usize;
            // SAFETY: both fds are open for the whole call; `off` is a valid off_t the call
            // advances.
            let n = unsafe { libc::sendfile(to.as_raw_fd(), file.as_raw_fd(), &mut off, want) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                    Some(libc::EINVAL) | Some(libc::ENOSYS) if off == 0 => {
                        return copy_loop(&file, len, &mut to)
                    }
                    _ => return Err(e),
                }
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the stream file ended after {off} of {len} bytes"),
                ));
            }
        }
        to.flush()?;
        Ok(len)
    })
}

/// The fallback of [`feed`]: read and write through a 1 MiB buffer.
fn copy_loop(file: &File, len: u64, to: &mut dyn Write) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = page_buf(1 << 20)?;
    let mut done = 0u64;
    while done < len {
        let n = (buf.len() as u64).min(len - done) as usize;
        file.read_exact_at(&mut buf[..n], done)?;
        to.write_all(&buf[..n])?;
        done += n as u64;
    }
    to.flush()?;
    Ok(done)
}

/// Joins a drain or feed thread: its result, or an error when it panicked.
pub(in crate::bench) fn join(h: JoinHandle<io::Result<u64>>, what: &str) -> io::Result<u64> {
    h.join()
        .unwrap_or_else(|_| Err(io::Error::other(format!("the {what} thread panicked"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    #[test]
    fn pipe_and_tcp_carry_a_file_both_ways() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 13) as u8).collect();
        f.write_all(&data).unwrap();
        // Feed a pipe from the file, read it here.
        let (r, w, size) = pipe().unwrap();
        assert!(size >= 4096);
        f.seek(SeekFrom::Start(0)).unwrap();
        let h = feed(f.try_clone().unwrap(), data.len() as u64, w);
        let mut got = Vec::new();
        (&r).read_to_end(&mut got).unwrap();
        assert_eq!(join(h, "feed").unwrap(), data.len() as u64);
        assert_eq!(got, data);
        // Write into TCP here, drain it there.
        let (c, a) = tcp_pair().unwrap();
        let h = drain(a, 64 << 10).unwrap();
        let mut c = c;
        c.write_all(&data).unwrap();
        drop(c);
        assert_eq!(join(h, "drain").unwrap(), data.len() as u64);
        // A short file is an error, not a hang.
        let (r, w, _) = pipe().unwrap();
        let h = feed(f, data.len() as u64 + 10, w);
        let mut sink = Vec::new();
        (&r).read_to_end(&mut sink).unwrap();
        assert!(join(h, "feed").is_err());
    }
}
