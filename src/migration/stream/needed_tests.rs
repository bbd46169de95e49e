//! [`StreamReader::report_needed`]: before every read that reaches the input, the count is
//! what the reader still lacks, never more than the input still holds (so a receive
//! low-water mark set from it cannot wait past the stream's end), in every encoding, with
//! any split of the input into reads and with a `BufReader` in between; 0 between reads.

use super::codec_tests::write;
use super::*;
use proptest::prelude::*;
use std::cell::RefCell;
use std::io::{BufReader, IoSliceMut, Read};
use std::rc::Rc;
use std::sync::Arc;

/// An input that hands out at most `limits[i % len]` bytes on its i-th call and records,
/// for every call, the count it was told of and the bytes it still held.
struct Watch<'a> {
    data: &'a [u8],
    limits: Vec<usize>,
    calls: usize,
    needed: Arc<Needed>,
    seen: Rc<RefCell<Vec<(usize, usize)>>>,
}

impl Read for Watch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read_vectored(&mut [IoSliceMut::new(buf)])
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> std::io::Result<usize> {
        self.seen
            .borrow_mut()
            .push((self.needed.get(), self.data.len()));
        let limit = self.limits[self.calls % self.limits.len()];
        self.calls += 1;
        let mut total = 0;
        for b in bufs.iter_mut() {
            let n = b.len().min(self.data.len()).min(limit - total);
            b[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            total += n;
        }
        Ok(total)
    }
}

/// Every chunk of `r`, read to the end with the count attached.
fn drain<R: Read>(r: StreamReader<R>, stop_at_trailer: bool, needed: &Arc<Needed>) -> Vec<Vec<u8>> {
    let r = if stop_at_trailer {
        r.stop_at_trailer()
    } else {
        r
    };
    let mut r = r.report_needed(needed.clone());
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    while let Some((_, n)) = r.next_chunk(&mut buf).expect("a valid stream") {
        out.push(buf[..n].to_vec());
    }
    out
}

/// Reads `data` to its end through `Watch` (and a `BufReader` of `buffered` bytes when set);
/// returns the chunks, the count after the end, and what every call after the header's saw.
fn read_watched(
    data: &[u8],
    limits: Vec<usize>,
    buffered: Option<usize>,
    stop_at_trailer: bool,
) -> (Vec<Vec<u8>>, usize, Vec<(usize, usize)>) {
    let needed = Needed::new();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let watch = Watch {
        data,
        limits,
        calls: 0,
        needed: needed.clone(),
        seen: seen.clone(),
    };
    let header_reads = || seen.borrow().len();
    let (out, at) = match buffered {
        Some(cap) => {
            let r = StreamReader::new(BufReader::with_capacity(cap, watch)).expect("header");
            let at = header_reads();
            (drain(r, stop_at_trailer, &needed), at)
        }
        None => {
            let r = StreamReader::new(watch).expect("header");
            let at = header_reads();
            (drain(r, stop_at_trailer, &needed), at)
        }
    };
    let after_header = seen.borrow()[at..].to_vec();
    (out, needed.get(), after_header)
}

fn chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    // Mostly zero pages with a few bytes set, or bytes from a small alphabet: every encoding
    // (raw, zero runs, LZ4, both) occurs.
    let page = prop_oneof![
        Just(vec![0u8; 4096]),
        prop::collection::vec(0u8..4, 4096),
        (0usize..4096, any::<u8>()).prop_map(|(at, b)| {
            let mut p = vec![0u8; 4096];
            p[at] = b | 1;
            p
        }),
        prop::collection::vec(any::<u8>(), 1..4096),
    ];
    prop::collection::vec(page, 1..5)
}

proptest! {
    #[test]
    fn the_count_never_exceeds_what_the_input_still_holds(
        pages in chunks(),
        mode in prop::sample::select(Compression::ALL.to_vec()),
        limits in prop::collection::vec(1usize..5000, 1..8),
        buffered in prop::option::of(prop::sample::select(vec![16usize, 100, 8192])),
        stop_at_trailer in any::<bool>(),
    ) {
        let framed: Vec<(ChunkKind, Vec<u8>)> =
            pages.iter().map(|p| (ChunkKind::Stopcopy, p.clone())).collect();
        let data = write(&framed, 4096, mode);
        let (got, after, seen) = read_watched(&data, limits, buffered, stop_at_trailer);
        prop_assert_eq!(&got, &pages);
        prop_assert_eq!(after, 0, "nothing lacking once the stream is read");
        // Every call after the header's is told what is lacking: more than nothing, never
        // more than is left (the one exception, 0 at the end, is the read that proves a file
        // ends at its trailer).
        for &(n, left) in &seen {
            prop_assert!(n <= left, "told {} bytes are lacking with {} left", n, left);
            prop_assert!(n > 0 || left == 0, "a read with {} left was told nothing", left);
        }
    }
}
