//! Tests of the simulator's own stream: round trips at any chunking, refusals, the dirty model.

use super::*;

fn gen(seed: u64) -> Content {
    Content::generated(Gen::new(seed))
}

fn drain(s: &mut SaveStream, chunk: usize, now: u128) -> (Vec<u8>, Produced) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        match s.produce(&mut buf, now) {
            Produced::Bytes(n) => out.extend_from_slice(&buf[..n]),
            other => return (out, other),
        }
    }
}

#[test]
fn stop_copy_stream_round_trips_at_any_chunking() {
    let len = RECORD_MAX * 2 + 1234;
    for chunk in [7usize, 4096, 1 << 20] {
        let mut s = SaveStream::new(9, gen(9), len, 0, false, 0);
        s.stop(0);
        assert_eq!(s.remaining_to_end(), SaveStream::full_size(len));
        let (data, end) = drain(&mut s, chunk, 0);
        assert_eq!(end, Produced::End);
        assert_eq!(data.len() as u64, SaveStream::full_size(len));
        let mut r = ResumeStream::new(len, Some(9), None);
        for piece in data.chunks(chunk * 3 + 1) {
            r.consume(piece);
        }
        assert_eq!(r.finish(), Ok((9, 0)));
    }
}

#[test]
fn refusals() {
    let len = 10_000;
    let mut s = SaveStream::new(3, gen(3), len, 0, false, 0);
    s.stop(0);
    let (data, _) = drain(&mut s, 1000, 0);
    // Wrong verify seed.
    let mut r = ResumeStream::new(len, Some(4), None);
    r.consume(&data);
    assert!(r.finish().unwrap_err().contains("seed 3"));
    // Truncated.
    let mut r = ResumeStream::new(len, None, None);
    r.consume(&data[..data.len() - 1]);
    assert!(r.finish().unwrap_err().contains("truncated"));
    // Corrupted data byte.
    let mut bad = data.clone();
    bad[500] ^= 1;
    let mut r = ResumeStream::new(len, None, None);
    r.consume(&bad);
    assert!(r.finish().unwrap_err().contains("corrupted"));
    // Foreign.
    let mut r = ResumeStream::new(len, None, None);
    r.consume(&[0u8; 100]);
    assert!(r.finish().unwrap_err().contains("foreign"));
    // Size mismatch.
    let mut r = ResumeStream::new(len + 8, None, None);
    r.consume(&data);
    assert!(r.finish().is_err());
    // Extra bytes.
    let mut r = ResumeStream::new(len, None, None);
    r.consume(&data);
    r.consume(&[0]);
    assert!(r.finish().unwrap_err().contains("after the end"));
    // Empty.
    assert!(ResumeStream::new(len, None, None).finish().is_err());
}

#[test]
fn precopy_accounting_with_dirty_rate() {
    let len = 1 << 20;
    // 1 MiB/s dirtying.
    let mut s = SaveStream::new(5, gen(5), len, 1 << 20, false, 0);
    let (i, d) = s.precopy_info();
    assert_eq!((i, d), (HEADER_LEN + RECORD_HDR_LEN + len, 0));
    let (pre, end) = drain(&mut s, 65536, 0);
    assert_eq!(end, Produced::NothingPending);
    assert_eq!(pre.len() as u64, i);
    assert_eq!(s.precopy_info(), (0, 0));
    // A quarter second later a quarter MiB is dirty.
    s.accrue(250_000_000);
    assert_eq!(s.precopy_info(), (0, len / 4 + RECORD_HDR_LEN));
    let mut buf = vec![0u8; 1000];
    assert_eq!(s.produce(&mut buf, 250_000_000), Produced::Bytes(1000));
    assert_eq!(s.precopy_info(), (0, len / 4 + RECORD_HDR_LEN - 1000));
    // Stop: the rest plus the trailer, then the end.
    s.stop(250_000_000);
    let left = s.remaining_to_end();
    let (post, end) = drain(&mut s, 4096, 999_000_000_000);
    assert_eq!(end, Produced::End);
    assert_eq!(post.len() as u64, left);
    let mut r = ResumeStream::new(len, Some(5), None);
    r.consume(&pre);
    r.consume(&buf);
    r.consume(&post);
    assert_eq!(r.finish(), Ok((5, 0)));
    // Dirtying is capped at the state size.
    let mut s = SaveStream::new(5, gen(5), len, 1 << 30, false, 0);
    drain(&mut s, 65536, 0);
    s.accrue(10_000_000_000);
    assert_eq!(s.precopy_info().1, len + RECORD_HDR_LEN);
}

#[test]
fn only_state_already_sent_can_be_dirty() {
    let len = 8 << 20;
    // 1 GiB/s: a second dirties far more than the state holds.
    let mut s = SaveStream::new(5, gen(5), len, 1 << 30, false, 0);
    let initial = s.precopy_info().0;
    s.accrue(1_000_000_000);
    assert_eq!(
        s.precopy_info(),
        (initial, 0),
        "nothing sent, nothing dirty"
    );
    // A quarter of the first record's data read: only that quarter can be dirty.
    let mut buf = vec![0u8; (HEADER_LEN + RECORD_HDR_LEN + (1 << 20)) as usize];
    assert_eq!(
        s.produce(&mut buf, 1_000_000_000),
        Produced::Bytes(buf.len())
    );
    s.accrue(2_000_000_000);
    let (i, d) = s.precopy_info();
    assert_eq!(d, (1 << 20) + RECORD_HDR_LEN);
    assert_eq!(i, initial - buf.len() as u64);
    // Pending never exceeds a whole fresh stream, however long the device runs.
    s.accrue(60_000_000_000);
    assert!(s.remaining_to_end() <= SaveStream::full_size(len) + RECORD_HDR_LEN);
}

#[test]
fn endless_stream_never_ends() {
    let mut s = SaveStream::new(1, gen(1), 4096, 0, true, 0);
    s.stop(0);
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..100 {
        assert!(matches!(s.produce(&mut buf, 0), Produced::Bytes(_)));
    }
}

#[test]
fn zero_pages_travel_in_the_header_and_memory_takes_the_bytes() {
    use crate::sim::content;
    use crate::sim::gen::ZERO_ALL;
    let len = RECORD_MAX + 3 * 4096 + 17;
    let g = Gen::with_zero_pages(8, ZERO_ALL / 2);
    // A memory-backed source holding g's content.
    let src = content::create("src", len, &g).unwrap();
    let mut s = SaveStream::new(
        8,
        Content {
            gen: g,
            mem: Some(src),
        },
        len,
        0,
        false,
        0,
    );
    s.stop(0);
    let (data, end) = drain(&mut s, 65536, 0);
    assert_eq!(end, Produced::End);
    assert_eq!(le32(&data[12..]), ZERO_ALL / 2);
    // The same stream as a generated source produces.
    let mut s2 = SaveStream::new(8, Content::generated(g), len, 0, false, 0);
    s2.stop(0);
    assert_eq!(drain(&mut s2, 4096, 0).0, data);
    // A generated target checks the bytes against (seed, zero pages) from the header.
    let mut r = ResumeStream::new(len, Some(8), None);
    r.consume(&data);
    assert_eq!(r.finish(), Ok((8, ZERO_ALL / 2)));
    assert!(!r.wrote_memory());
    // A memory-backed target copies them in unchecked, and ends up holding g's content.
    let dst = content::create("dst", len, &Gen::new(1)).unwrap();
    let mut r = ResumeStream::new(len, Some(8), Some(dst.clone()));
    r.consume(&data);
    assert_eq!(r.finish(), Ok((8, ZERO_ALL / 2)));
    assert!(r.wrote_memory());
    assert_eq!(content::check(&dst, len, &g), None);
    // Streams without zero pages are unchanged: the field is 0.
    let mut s3 = SaveStream::new(8, gen(8), len, 0, false, 0);
    s3.stop(0);
    assert_eq!(le32(&drain(&mut s3, 4096, 0).0[12..]), 0);
    // A fraction above 1 is refused.
    let mut bad = data.clone();
    bad[12..16].copy_from_slice(&(ZERO_ALL + 1).to_le_bytes());
    let mut r = ResumeStream::new(len, None, None);
    r.consume(&bad);
    assert!(r.finish().unwrap_err().contains("zero-page"));
}
