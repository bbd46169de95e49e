//! [`DirectReader`] against real files (skipped, with a message, where the temporary
//! directory's file system has no direct I/O).

use super::*;
use crate::migration::engine::enable_direct;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

/// A file of `len` pattern bytes, opened for reading with `O_DIRECT` switched on, with its
/// contents; `None` where its file system refuses.
fn direct_file(len: usize) -> Option<(tempfile::TempDir, File, Vec<u8>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let want: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
    let p = dir.path().join("f");
    File::create(&p)
        .and_then(|mut f| f.write_all(&want))
        .expect("write");
    let f = File::open(&p).expect("open");
    if enable_direct(&f).expect("fcntl") {
        Some((dir, f, want))
    } else {
        eprintln!("skipped: the temporary directory has no O_DIRECT");
        None
    }
}

/// Whether `f`'s open file has `O_DIRECT` set.
fn direct_on(f: &File) -> bool {
    has_direct(f.as_fd()).expect("fcntl")
}

/// An aligned read straight from the file (no stage), then small reads through the stage:
/// the same bytes come back, and the partial last block ends the direct reads (the
/// descriptor's flag goes with it).
#[test]
fn reads_straight_then_staged_to_the_end() {
    let Some((_d, f, want)) = direct_file(5 * DIRECT_ALIGN + 77) else {
        return;
    };
    let mut r = DirectReader::new(&f).expect("reader");
    assert!(r.is_direct());
    let mut big = AlignedBuf::new(2 * DIRECT_ALIGN).unwrap();
    let n = r.read(&mut big).expect("aligned read");
    assert_eq!(n, 2 * DIRECT_ALIGN);
    assert_eq!(r.len, 0, "straight into the caller's memory");
    let mut got = big[..n].to_vec();
    let mut small = [0u8; 1000];
    loop {
        let n = r.read(&mut small).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&small[..n]);
    }
    assert_eq!(got, want);
    assert!(!r.is_direct());
    assert!(!direct_on(&f));
}

/// A stream reader's pattern: a 24-byte header, then a payload and the next header in one
/// `readv`, over several stages' worth: every byte in order.
#[test]
fn vectored_reads_fill_every_buffer_in_order() {
    let len = 3 * DIRECT_STAGE + 5000;
    let Some((_d, f, want)) = direct_file(len) else {
        return;
    };
    let mut r = DirectReader::new(&f).expect("reader");
    let mut got = Vec::new();
    let mut head = [0u8; 24];
    r.read_exact(&mut head).expect("header");
    got.extend_from_slice(&head);
    let mut payload = AlignedBuf::new(300_000).unwrap();
    while got.len() < len {
        let mut look = [0u8; 24];
        let mut bufs = [IoSliceMut::new(&mut payload), IoSliceMut::new(&mut look)];
        let n = r.read_vectored(&mut bufs).expect("readv");
        assert!(n > 0, "ended at {} of {len}", got.len());
        let p = n.min(payload.len());
        got.extend_from_slice(&payload[..p]);
        got.extend_from_slice(&look[..n - p]);
    }
    assert_eq!(got, want);
    assert_eq!(r.read(&mut head).expect("end"), 0);
}

/// A file whose offset is off the block grid is read through the page cache from there.
#[test]
fn an_offset_off_the_grid_reads_buffered_from_it() {
    let Some((_d, mut f, want)) = direct_file(3 * DIRECT_ALIGN) else {
        return;
    };
    f.seek(SeekFrom::Start(100)).expect("seek");
    let mut r = DirectReader::new(&f).expect("reader");
    assert!(!r.is_direct());
    assert!(!direct_on(&f));
    let mut got = Vec::new();
    r.read_to_end(&mut got).expect("read");
    assert_eq!(got, want[100..]);
}
