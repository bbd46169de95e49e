//! Write-behind for a stream that will be made durable: the kernel is asked to start writing
//! each stretch of the file back to its disk as soon as the stretch is written, so the disk
//! works while the device is still being read, and the `fsync` that commits the file
//! ([`Output::commit`](super::Output::commit)) finds little left to write.
//!
//! Without it the page cache takes the whole stream first: writeback starts only when the
//! dirty pages pass the kernel's background threshold (or after 30 seconds), and the final
//! `fsync` then waits for the rest. Measured on a 4 GiB stream (hw-notes/bench.md,
//! "save -> file-fsync"), starting each 16 MiB stretch's writeback as it was written cut the
//! write-and-fsync time by a quarter or more. The ranges are only started
//! (`SYNC_FILE_RANGE_WRITE`), never waited for, so a slow disk slows the writes no more than
//! the final `fsync` would have; the kernel's dirty-page throttling still bounds what is
//! held in memory.

use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};

/// How much is written before its writeback is started.
pub const WRITE_BEHIND_STEP: u64 = 16 << 20;

/// Starts writeback of `len` bytes of `fd` from `from`.
type Start = fn(BorrowedFd<'_>, u64, u64) -> io::Result<()>;

/// `sync_file_range(fd, from, len, SYNC_FILE_RANGE_WRITE)`.
fn start_writeback(fd: BorrowedFd<'_>, from: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(n)) = (libc::off64_t::try_from(from), libc::off64_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EOVERFLOW));
    };
    // SAFETY: a descriptor the caller keeps open for the borrow; the call only reads its
    // arguments.
    let r = unsafe { libc::sync_file_range(fd.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A writer into a regular file that starts the writeback of every [`WRITE_BEHIND_STEP`]
/// bytes as they are written (see the module docs). Writes go to `inner`; `fd` is the file
/// they land in, written from its offset at [`WriteBehind::new`] on.
///
/// A failure to start writeback that says the disk failed or is full (`EIO`, `ENOSPC`, ...)
/// is the write's error: the `fsync` would report it later, after the rest of the stream.
/// One that says the file cannot do it (`EINVAL`, `ESPIPE`, `EOPNOTSUPP`, `ENOSYS`) turns
/// write-behind off for the rest of the stream, which the `fsync` then writes whole.
///
/// ```
/// use std::io::Write;
/// use std::os::fd::AsFd;
/// use vfio_harness::migration::engine::{WriteBehind, WRITE_BEHIND_STEP};
///
/// let file = tempfile::tempfile()?;
/// let mut w = WriteBehind::new(&file, file.as_fd())?;
/// // More than one step: the first step's writeback is started as the write returns.
/// w.write_all(&vec![0x5a; WRITE_BEHIND_STEP as usize + 4096])?;
/// assert!(w.is_active());
/// file.sync_all()?; // what is left
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct WriteBehind<'a, W> {
    inner: W,
    fd: BorrowedFd<'a>,
    /// The file offset up to which writeback was started.
    started: u64,
    /// The file offset the next write lands at.
    at: u64,
    step: u64,
    start: Option<Start>,
}

impl<'a, W: Write> WriteBehind<'a, W> {
    /// Wraps `inner`, whose writes land in `fd` from its current offset.
    ///
    /// # Errors
    ///
    /// The `lseek(2)` that finds the offset failed (`ESPIPE`: not a file).
    pub fn new(inner: W, fd: BorrowedFd<'a>) -> io::Result<Self> {
        let at = super::direct::offset(fd)?;
        Ok(Self::with(
            inner,
            fd,
            at,
            WRITE_BEHIND_STEP,
            start_writeback,
        ))
    }

    fn with(inner: W, fd: BorrowedFd<'a>, at: u64, step: u64, start: Start) -> Self {
        WriteBehind {
            inner,
            fd,
            started: at,
            at,
            step,
            start: Some(start),
        }
    }

    /// Whether writeback is still started as the stream is written (it stops for a file
    /// that cannot do it).
    pub fn is_active(&self) -> bool {
        self.start.is_some()
    }

    /// Counts `n` bytes written and starts the writeback of whole steps behind them.
    fn wrote(&mut self, n: usize) -> io::Result<()> {
        self.at += n as u64;
        let Some(start) = self.start else {
            return Ok(());
        };
        let len = self.at - self.started;
        if len < self.step {
            return Ok(());
        }
        match start(self.fd, self.started, len) {
            Ok(()) => {
                self.started = self.at;
                Ok(())
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::ESPIPE | libc::EOPNOTSUPP | libc::ENOSYS)
                ) =>
            {
                // The file cannot start writeback early; the fsync writes it all, as it
                // would without this wrapper.
                self.start = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for WriteBehind<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.wrote(n)?;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        self.wrote(n)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::io::{Read, Seek, SeekFrom};
    use std::os::fd::AsFd;

    thread_local! {
        static STARTED: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
        static FAIL: RefCell<Option<i32>> = const { RefCell::new(None) };
    }

    fn record(_: BorrowedFd<'_>, from: u64, len: u64) -> io::Result<()> {
        if let Some(e) = FAIL.with(|f| *f.borrow()) {
            return Err(io::Error::from_raw_os_error(e));
        }
        STARTED.with(|s| s.borrow_mut().push((from, len)));
        Ok(())
    }

    fn reset(fail: Option<i32>) {
        STARTED.with(|s| s.borrow_mut().clear());
        FAIL.with(|f| *f.borrow_mut() = fail);
    }

    fn started() -> Vec<(u64, u64)> {
        STARTED.with(|s| s.borrow().clone())
    }

    #[test]
    fn every_step_written_is_started_once_and_in_order_from_the_offset() {
        reset(None);
        let f = tempfile::tempfile().expect("tempfile");
        let mut w = WriteBehind::with(&f, f.as_fd(), 100, 10, record);
        for n in [4usize, 4, 4, 25, 1, 9] {
            w.write_all(&vec![7u8; n]).expect("write");
        }
        // 100..112 (12 >= 10), 112..137, then 1 + 9 = 10 more: 137..147.
        assert_eq!(started(), [(100, 12), (112, 25), (137, 10)]);
        w.write_all(&[1; 9]).expect("write");
        assert_eq!(started().len(), 3, "9 bytes are less than a step");
    }

    #[test]
    fn the_bytes_reach_the_file_unchanged_and_vectored_writes_count() {
        reset(None);
        let mut f = tempfile::tempfile().expect("tempfile");
        {
            let g = f.try_clone().expect("clone");
            let mut w = WriteBehind::new(&g, g.as_fd()).expect("wrap");
            w.step = 8;
            w.start = Some(record);
            let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
            w.write_all(&data[..3]).expect("write");
            let n = w
                .write_vectored(&[IoSlice::new(&data[3..10]), IoSlice::new(&data[10..])])
                .expect("writev");
            w.write_all(&data[3 + n..]).expect("rest");
            w.flush().expect("flush");
            assert_eq!(w.at, 1000);
        }
        let total: u64 = started().iter().map(|r| r.1).sum();
        assert!(total >= 1000 - 8, "started {:?}", started());
        f.seek(SeekFrom::Start(0)).expect("seek");
        let mut back = Vec::new();
        f.read_to_end(&mut back).expect("read");
        let want: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        assert_eq!(back, want);
    }

    #[test]
    fn a_disk_error_is_the_write_error_and_an_unsupported_file_only_stops_it() {
        let f = tempfile::tempfile().expect("tempfile");
        reset(Some(libc::EIO));
        let mut w = WriteBehind::with(&f, f.as_fd(), 0, 4, record);
        let e = w.write_all(&[0; 8]).expect_err("EIO is reported");
        assert_eq!(e.raw_os_error(), Some(libc::EIO));

        reset(Some(libc::EINVAL));
        let mut w = WriteBehind::with(&f, f.as_fd(), 0, 4, record);
        w.write_all(&[0; 8]).expect("EINVAL only turns it off");
        assert!(!w.is_active());
        reset(None);
        w.write_all(&[0; 8]).expect("write");
        assert!(started().is_empty(), "nothing is started once off");
    }

    #[test]
    fn the_real_call_takes_a_file_and_refuses_a_pipe() {
        let f = tempfile::tempfile().expect("tempfile");
        (&f).write_all(&[5; 8192]).expect("write");
        start_writeback(f.as_fd(), 0, 8192).expect("a file's range starts");
        let (r, _w) = super::super::pipe::new_pipe();
        let e = start_writeback(r.as_fd(), 0, 4096).expect_err("a pipe cannot");
        assert_eq!(e.raw_os_error(), Some(libc::ESPIPE));
    }
}
