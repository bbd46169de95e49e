//! [`DirectWriter`] and [`enable_direct`] against real files (skipped, with a message, where
//! the temporary directory's file system has no direct I/O).

use super::*;
use std::io::{Read, Seek};

/// A temporary file switched to `O_DIRECT`, or `None` where its file system refuses.
fn direct_file() -> Option<File> {
    let f = tempfile::tempfile().expect("tempfile");
    if enable_direct(&f).expect("fcntl") {
        Some(f)
    } else {
        eprintln!("skipped: the temporary directory has no O_DIRECT");
        None
    }
}

/// Whether `fd`'s open file has `O_DIRECT` set.
fn direct_on(fd: BorrowedFd<'_>) -> bool {
    has_direct(fd).expect("fcntl")
}

/// What `f` holds, read back through the page cache (`O_DIRECT` turned off first: the
/// reads are not aligned).
fn contents(mut f: &File) -> Vec<u8> {
    set_direct(f.as_fd(), false).expect("fcntl");
    f.rewind().expect("rewind");
    let mut v = Vec::new();
    f.read_to_end(&mut v).expect("read back");
    v
}

/// `n` page-aligned bytes of a pattern.
fn aligned(n: usize) -> AlignedBuf {
    let mut b = AlignedBuf::new(n).unwrap();
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i * 7 + i / 4096) as u8;
    }
    b
}

/// Aligned buffers, staged pieces (a vectored header and payload), an aligned buffer after
/// them (staged, the stage not being on a block boundary), a ragged tail: every byte lands
/// in order, the file stays direct until the tail, and the tail ends it exactly.
#[test]
fn every_way_in_lands_in_order_and_the_tail_ends_the_file_exactly() {
    let Some(f) = direct_file() else {
        return;
    };
    let buf = aligned(3 * DIRECT_ALIGN);
    let mut want = Vec::new();
    let mut w = DirectWriter::new(&f).expect("writer");
    w.write_all(&buf).expect("aligned");
    want.extend_from_slice(&buf);
    assert_eq!(
        (w.staged, w.at),
        (0, 3 * DIRECT_ALIGN as u64),
        "straight through"
    );
    let head = [1u8; 24];
    let mut parts = [IoSlice::new(&head), IoSlice::new(&buf[..5000])];
    let mut parts = &mut parts[..];
    while !parts.is_empty() {
        let n = w.write_vectored(parts).expect("vectored");
        IoSlice::advance_slices(&mut parts, n);
    }
    want.extend_from_slice(&head);
    want.extend_from_slice(&buf[..5000]);
    w.write_all(&buf).expect("staged behind a partial block");
    want.extend_from_slice(&buf);
    w.write_all(&[9u8; 77]).expect("tail");
    want.extend_from_slice(&[9u8; 77]);
    assert!(w.is_direct(), "nothing was refused");
    assert!(direct_on(f.as_fd()));
    let _ = w.finish().expect("finish");
    assert!(
        !direct_on(f.as_fd()),
        "the partial block went through the page cache"
    );
    assert_eq!(f.metadata().expect("stat").len(), want.len() as u64);
    assert_eq!(contents(&f), want);
}

/// Whole blocks staged (a stream header and a first frame ending on a block boundary) are
/// written ahead of an aligned buffer, which then goes to the file without a copy; a
/// stream ending on a block boundary leaves the file direct.
#[test]
fn staged_whole_blocks_let_an_aligned_buffer_through() {
    let Some(f) = direct_file() else {
        return;
    };
    let frame = aligned(2 * DIRECT_ALIGN);
    let mut w = DirectWriter::new(&f).expect("writer");
    w.write_all(&[1u8; 330]).expect("header");
    w.write_all(&frame[..2 * DIRECT_ALIGN - 330])
        .expect("first frame");
    assert_eq!((w.staged, w.at), (2 * DIRECT_ALIGN, 0));
    w.write_all(&frame).expect("frame");
    assert_eq!((w.staged, w.at), (0, 4 * DIRECT_ALIGN as u64), "no copy");
    let _ = w.finish().expect("finish");
    assert!(direct_on(f.as_fd()), "nothing was left for the page cache");
    let mut want = vec![1u8; 330];
    want.extend_from_slice(&frame[..2 * DIRECT_ALIGN - 330]);
    want.extend_from_slice(&frame);
    assert_eq!(contents(&f), want);
}

/// More than a stage of small writes: the full stage goes out as whole blocks, direct.
#[test]
fn a_full_stage_is_written_direct() {
    let Some(f) = direct_file() else {
        return;
    };
    let mut w = DirectWriter::new(&f).expect("writer");
    let piece: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut want = Vec::new();
    while want.len() < DIRECT_STAGE + 5000 {
        w.write_all(&piece).expect("piece");
        want.extend_from_slice(&piece);
    }
    assert_eq!(w.at, DIRECT_STAGE as u64);
    assert!(w.is_direct());
    let _ = w.finish().expect("finish");
    assert_eq!(contents(&f), want);
}

/// A file that refuses direct writes (`EINVAL`, as a disk with larger blocks does): the
/// writer turns `O_DIRECT` off on the descriptor and the stream arrives whole.
#[test]
fn a_refused_direct_write_goes_on_through_the_page_cache() {
    struct Refusing<'a>(&'a File);
    impl Write for Refusing<'_> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if direct_on(self.0.as_fd()) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            self.0.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl AsFd for Refusing<'_> {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
    }
    let Some(f) = direct_file() else {
        return;
    };
    let buf = aligned(4 * DIRECT_ALIGN);
    let mut w = DirectWriter::new(Refusing(&f)).expect("writer");
    w.write_all(&buf[..100]).expect("staged");
    w.write_all(&buf[100..]).expect("staged, then refused");
    w.write_all(&buf).expect("aligned, but no longer direct");
    assert!(!w.is_direct());
    assert!(!direct_on(f.as_fd()));
    let _ = w.finish().expect("finish");
    let mut want = buf.to_vec();
    want.extend_from_slice(&buf);
    assert_eq!(contents(&f), want);
}

/// A pipe is never switched (on a pipe `O_DIRECT` means packet mode); a writer over a file
/// without `O_DIRECT` writes straight through.
#[test]
fn a_pipe_is_left_alone_and_a_buffered_file_is_written_through() {
    let (r, _w) = super::super::pipe::new_pipe();
    assert!(!enable_direct(&r).expect("fstat"));
    assert!(!direct_on(r.as_fd()));

    let f = tempfile::tempfile().expect("tempfile");
    let mut w = DirectWriter::new(&f).expect("writer");
    assert!(!w.is_direct());
    w.write_all(&[3u8; 10]).expect("write");
    assert_eq!((w.staged, w.at), (0, 10), "not staged");
    let _ = w.finish().expect("finish");
    assert_eq!(contents(&f), [3u8; 10]);
}

/// A write of the stage that fails (`EIO`) takes no byte of the call that met it, and the
/// stage keeps what it held: the caller's retry writes every byte once, in order.
#[test]
fn a_failed_stage_write_loses_and_repeats_nothing() {
    struct FailOnce<'a>(&'a File, bool);
    impl Write for FailOnce<'_> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if std::mem::take(&mut self.1) {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.0.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl AsFd for FailOnce<'_> {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
    }
    let f = direct_file().unwrap_or_else(|| tempfile::tempfile().expect("tempfile"));
    let mut w = DirectWriter::new(FailOnce(&f, false)).expect("writer");
    let piece: Vec<u8> = (0..4000u32).map(|i| (i % 253) as u8).collect();
    let mut want = Vec::new();
    // Fill the stage with small writes (no write to the file yet).
    while want.len() + piece.len() <= DIRECT_STAGE {
        w.write_all(&piece).expect("staged");
        want.extend_from_slice(&piece);
    }
    let fill = DIRECT_STAGE - want.len();
    w.write_all(&piece[..fill]).expect("the stage is full");
    want.extend_from_slice(&piece[..fill]);
    // The next write must write the stage first; it fails once.
    w.inner.1 = true;
    let e = w.write(&piece).expect_err("the stage's write fails");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    w.write_all(&piece).expect("the retry");
    want.extend_from_slice(&piece);
    let _ = w.finish().expect("finish");
    assert_eq!(contents(&f), want);
}
