//! The reader's look-ahead: a raw chunk's payload and the next header come in one call, an
//! input read to its trailer only is never read past it, and bytes after the trailer are
//! still refused in a version 2 stream (whose chunk header is longer than the trailer).

use super::codec_tests::write;
use super::*;
use std::cell::Cell;
use std::io::{IoSliceMut, Read};
use std::rc::Rc;

/// Counts the calls that reach the input; fills vectors in order, as `readv(2)` does.
struct Calls<'a> {
    data: &'a [u8],
    calls: Rc<Cell<usize>>,
}

impl Read for Calls<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read_vectored(&mut [IoSliceMut::new(buf)])
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> std::io::Result<usize> {
        self.calls.set(self.calls.get() + 1);
        self.data.read_vectored(bufs)
    }
}

/// A stream of `n` chunks of 4 KiB that no encoding shrinks, written with `mode`.
fn stream(n: usize, mode: Compression) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let chunks: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8 | 1
                })
                .collect()
        })
        .collect();
    let framed: Vec<(ChunkKind, Vec<u8>)> = chunks
        .iter()
        .map(|c| (ChunkKind::Stopcopy, c.clone()))
        .collect();
    (write(&framed, 4096, mode), chunks)
}

#[test]
fn a_raw_chunk_after_the_first_takes_one_call() {
    let (data, chunks) = stream(8, Compression::None);
    let calls = Rc::new(Cell::new(0));
    let mut r = StreamReader::new(Calls {
        data: &data,
        calls: calls.clone(),
    })
    .unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(
        r.next_chunk(&mut buf).unwrap(),
        Some((ChunkKind::Stopcopy, 4096))
    );
    assert_eq!(buf, chunks[0]);
    let after_first = calls.get();
    for c in &chunks[1..] {
        assert_eq!(
            r.next_chunk(&mut buf).unwrap(),
            Some((ChunkKind::Stopcopy, 4096))
        );
        assert_eq!(&buf, c);
    }
    assert_eq!(
        calls.get() - after_first,
        chunks.len() - 1,
        "each header came with the payload before it"
    );
    assert_eq!(r.next_chunk(&mut buf).unwrap(), None);
}

#[test]
fn an_input_read_to_its_trailer_is_not_read_past_it() {
    for mode in [Compression::None, Compression::Zero] {
        let (mut data, chunks) = stream(3, mode);
        let end = data.len();
        data.extend_from_slice(b"the next message on the socket");
        let mut rest = &data[..];
        let mut r = StreamReader::new(&mut rest).unwrap().stop_at_trailer();
        let mut buf = vec![0u8; 4096];
        let mut n = 0;
        while let Some((_, len)) = r.next_chunk(&mut buf).unwrap() {
            assert_eq!(&buf[..len], &chunks[n][..]);
            n += 1;
        }
        assert_eq!(n, 3);
        drop(r);
        assert_eq!(rest, &data[end..], "{mode:?}: read past the trailer");
    }
}

#[test]
fn bytes_after_the_trailer_are_refused_in_either_version() {
    for mode in [Compression::None, Compression::Zero] {
        for extra in [1usize, 4, 5, 40] {
            let (mut data, _) = stream(2, mode);
            data.extend(std::iter::repeat_n(0u8, extra));
            let mut r = StreamReader::new(&data[..]).unwrap();
            let mut buf = vec![0u8; 4096];
            let got = loop {
                match r.next_chunk(&mut buf) {
                    Ok(Some(_)) => continue,
                    other => break other,
                }
            };
            assert!(
                matches!(
                    got,
                    Err(crate::migration::MigrationError::Stream(
                        StreamError::TrailingData
                    ))
                ),
                "{mode:?} with {extra} extra bytes: {got:?}"
            );
        }
    }
}
