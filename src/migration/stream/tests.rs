//! Stream format tests: round trips, every byte flip and truncation detected (property
//! tests), the checksum pinned to the reference XXH3-64.

use super::format::{chunk_header, TAG_STOPCOPY};
use super::*;
use crate::migration::{MigrationError, Protocol};
use proptest::prelude::*;
use std::hash::Hasher as _;
use twox_hash::XxHash3_64 as Xxh3;

/// The format is XXH3-64 with seed 0: pinned to the reference implementation's value so a
/// change of hashing crate (or of its SIMD path) can never change what streams mean.
#[test]
fn checksum_is_reference_xxh3_64() {
    assert_eq!(checksum(b""), 0x2D06_8005_38D3_94C2);
    // Streaming over uneven pieces equals one shot, across the short, mid and long
    // input paths (<= 240 bytes, stripes, several 1 KiB blocks).
    let data: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for len in [0usize, 1, 3, 16, 17, 128, 129, 240, 241, 1024, 1025, 4999] {
        let mut h = Xxh3::new();
        for piece in data[..len].chunks(37) {
            h.write(piece);
        }
        assert_eq!(h.finish(), checksum(&data[..len]), "len {len}");
    }
}

fn header(max_chunk: u32) -> StreamHeader {
    StreamHeader {
        device: "sim".into(),
        device_api: "vfio-pci".into(),
        mdev_type: Some("mtty-2".into()),
        pci_id: None,
        pci_subsystem: None,
        driver: Some("mtty".into()),
        protocol: Protocol::V2,
        mig_flags: 7,
        kernel_release: "6.12.0".into(),
        harness_version: "0.1.0".into(),
        state_size_estimate: Some(100),
        max_chunk,
        created_unix: 1,
    }
}

fn write(chunks: &[(ChunkKind, Vec<u8>)], max_chunk: u32) -> Vec<u8> {
    let mut w = StreamWriter::new(Vec::new(), "mem", &header(max_chunk)).unwrap();
    for (k, p) in chunks {
        w.write_chunk(*k, p).unwrap();
    }
    w.finish().unwrap().0
}

/// A stream's chunks: kind and payload.
pub(crate) type Chunks = Vec<(ChunkKind, Vec<u8>)>;

/// A stream's header and its chunks, each verified.
pub(crate) fn read_all(data: &[u8]) -> Result<(StreamHeader, Chunks)> {
    let mut r = StreamReader::new(data)?;
    let mut buf = vec![0u8; r.header().max_chunk as usize];
    let mut out = Vec::new();
    while let Some((k, n)) = r.next_chunk(&mut buf)? {
        out.push((k, buf[..n].to_vec()));
    }
    Ok((r.header().clone(), out))
}

/// [`read_all`] of a stream that must be valid, its header's creation time zeroed: two saves
/// of the same state compare equal even when they straddle a second.
pub(crate) fn chunks_untimed(data: &[u8]) -> (StreamHeader, Chunks) {
    let (mut header, chunks) = read_all(data).expect("a valid stream");
    header.created_unix = 0;
    (header, chunks)
}

/// Reads like the restore pipeline: framing on the reading side, payload checks later.
fn read_all_deferred(data: &[u8]) -> Result<(StreamHeader, Chunks)> {
    let mut r = StreamReader::new(data)?;
    let mut buf = vec![0u8; r.header().max_chunk as usize];
    let mut out = Vec::new();
    let mut checks = Vec::new();
    while let Some((k, n, check)) = r.next_chunk_unverified(&mut buf)? {
        out.push((k, buf[..n].to_vec()));
        checks.push(check);
    }
    for (c, (_, p)) in checks.iter().zip(&out) {
        c.verify(p)?;
    }
    Ok((r.header().clone(), out))
}

/// A reader that returns at most `.1` bytes per call: a socket's pieces.
struct Trickle<'a>(&'a [u8], usize);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.1).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Reads as the one-thread restore does ([`StreamReader::verify_as_read`]): every payload
/// hashed as pieces of at most `piece` bytes arrive. The checks returned are never run, so a
/// corrupt payload the reader let through is accepted here.
fn read_all_as_read(data: &[u8], piece: usize) -> Result<(StreamHeader, Chunks)> {
    let mut r = StreamReader::new(Trickle(data, piece))?.verify_as_read();
    let mut buf = vec![0u8; r.header().max_chunk as usize];
    let mut out = Vec::new();
    while let Some((k, n, _unused)) = r.next_chunk_unverified(&mut buf)? {
        out.push((k, buf[..n].to_vec()));
    }
    Ok((r.header().clone(), out))
}

fn chunks_strategy() -> impl Strategy<Value = Vec<(ChunkKind, Vec<u8>)>> {
    prop::collection::vec(
        (
            prop_oneof![Just(ChunkKind::Precopy), Just(ChunkKind::Stopcopy)],
            prop::collection::vec(any::<u8>(), 1..64),
        ),
        0..6,
    )
}

proptest! {
    #[test]
    fn round_trip(chunks in chunks_strategy()) {
        let data = write(&chunks, 64);
        let (h, got) = read_all(&data).unwrap();
        prop_assert_eq!(h, header(64));
        prop_assert_eq!(&got, &chunks);
        let (h, got) = read_all_deferred(&data).unwrap();
        prop_assert_eq!(h, header(64));
        prop_assert_eq!(&got, &chunks);
        for piece in [1, 7, 64] {
            let (h, got) = read_all_as_read(&data, piece).unwrap();
            prop_assert_eq!(h, header(64));
            prop_assert_eq!(&got, &chunks);
        }
    }

    #[test]
    fn any_byte_flip_is_detected(chunks in chunks_strategy(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let mut data = write(&chunks, 64);
        let i = pos.index(data.len());
        data[i] ^= x;
        prop_assert!(matches!(read_all(&data), Err(MigrationError::Stream(_))), "flip at {} accepted", i);
        prop_assert!(matches!(read_all_deferred(&data), Err(MigrationError::Stream(_))), "flip at {} accepted (deferred)", i);
        prop_assert!(matches!(read_all_as_read(&data, 5), Err(MigrationError::Stream(_))), "flip at {} accepted (as read)", i);
    }

    #[test]
    fn any_truncation_is_detected(chunks in chunks_strategy(), pos in any::<prop::sample::Index>()) {
        let data = write(&chunks, 64);
        let cut = pos.index(data.len());
        prop_assert!(matches!(read_all(&data[..cut]), Err(MigrationError::Stream(_))), "cut at {} accepted", cut);
        prop_assert!(matches!(read_all_deferred(&data[..cut]), Err(MigrationError::Stream(_))), "cut at {} accepted (deferred)", cut);
        prop_assert!(matches!(read_all_as_read(&data[..cut], 5), Err(MigrationError::Stream(_))), "cut at {} accepted (as read)", cut);
    }

    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = read_all(&data);
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&data);
        let _ = read_all(&with_magic);
    }
}

#[test]
fn clear_errors() {
    let good = write(&[(ChunkKind::Stopcopy, vec![1, 2, 3])], 16);
    let msg = |d: &[u8]| read_all(d).unwrap_err().to_string();
    assert!(msg(b"").contains("empty"));
    assert!(msg(b"ELF\x7fxxxxxxxxxxxxxxx").contains("bad magic"));
    let mut v3 = good.clone();
    v3[8] = 3;
    assert!(msg(&v3).contains("version 3"));
    assert!(msg(&good[..good.len() - 1]).contains("truncated"));
    let mut extra = good.clone();
    extra.push(0);
    assert!(msg(&extra).contains("after the trailer"));
    // Payload flip: the message names the chunk.
    let payload_at = good.len() - TRAILER_LEN - 3;
    let mut flip = good.clone();
    flip[payload_at] ^= 1;
    assert!(msg(&flip).contains("corrupt data in chunk 0"));
}

#[test]
fn oversized_chunks_refused_without_allocation() {
    // A forged chunk header claiming 4 GiB with a valid header checksum.
    let mut data = write(&[], 16);
    data.truncate(data.len() - TRAILER_LEN);
    data.extend_from_slice(&chunk_header(TAG_STOPCOPY, u32::MAX, 0));
    let e = read_all(&data).unwrap_err().to_string();
    assert!(e.contains("outside 1..=16"), "{e}");
    // The writer refuses too.
    let mut w = StreamWriter::new(Vec::new(), "mem", &header(4)).unwrap();
    assert!(w.write_chunk(ChunkKind::Stopcopy, &[0; 5]).is_err());
    assert!(StreamWriter::new(Vec::new(), "mem", &header(MAX_CHUNK_LEN + 1)).is_err());
}

#[test]
fn header_checks_name_every_mismatch() {
    let h = header(16);
    let mut id = crate::device::DeviceIdentity {
        device_api: "vfio-ccw".into(),
        mdev_type: Some("mtty-1".into()),
        ..Default::default()
    };
    let check = |id: &crate::device::DeviceIdentity, p| h.check_identity(id, "dst", p);
    let e = check(&id, Protocol::V1).unwrap_err().to_string();
    assert!(e.contains("device_api") && e.contains("mdev type") && e.contains("protocol"));
    id.device_api = "vfio-pci".into();
    id.mdev_type = Some("mtty-2".into());
    check(&id, Protocol::V2).unwrap();
}

/// Each refusal is its own variant, carrying where it happened.
#[test]
fn refusals_are_typed() {
    let good = write(&[(ChunkKind::Stopcopy, vec![1, 2, 3])], 16);
    let err = |d: &[u8]| match read_all(d).unwrap_err() {
        MigrationError::Stream(e) => e,
        other => panic!("not a stream error: {other}"),
    };
    assert!(matches!(err(b""), StreamError::Empty));
    assert!(matches!(
        err(b"ELF\x7fxxxxxxxxxxxxxxx"),
        StreamError::BadMagic
    ));
    assert!(matches!(
        err(b"VFIO"),
        StreamError::Truncated {
            within: Within::Magic,
            got: 4,
            needed: 8
        }
    ));
    let mut v3 = good.clone();
    v3[8] = 3;
    assert!(matches!(
        err(&v3),
        StreamError::UnsupportedVersion { found: 3 }
    ));
    let mut h = good.clone();
    h[20] ^= 1;
    assert!(matches!(err(&h), StreamError::HeaderChecksum));
    assert!(matches!(
        err(&good[..good.len() - 1]),
        StreamError::Truncated {
            within: Within::Trailer,
            ..
        }
    ));
    let mut extra = good.clone();
    extra.push(0);
    assert!(matches!(err(&extra), StreamError::TrailingData));
    // The payload is the 3 bytes before the trailer: chunk 0, bytes 0..3 of the state.
    let payload_at = good.len() - TRAILER_LEN - 3;
    let mut flip = good.clone();
    flip[payload_at] ^= 1;
    let e = err(&flip);
    assert!(e.is_corrupt());
    assert!(
        matches!(e, StreamError::PayloadChecksum { index: 0, ref range } if *range == (0..3)),
        "{e}"
    );
    // Verified as read, the same refusal, naming the same bytes.
    match read_all_as_read(&flip, 2) {
        Err(MigrationError::Stream(StreamError::PayloadChecksum { index: 0, range })) => {
            assert_eq!(range, 0..3)
        }
        other => panic!("as read: {other:?}"),
    }
    // The chunk header sits right before the payload.
    let mut ch = good.clone();
    ch[payload_at - CHUNK_HEADER_LEN] ^= 1;
    assert!(matches!(
        err(&ch),
        StreamError::ChunkHeaderChecksum { index: 0 }
    ));
    // Truncated inside the payload names the chunk.
    assert!(matches!(
        err(&good[..payload_at + 1]),
        StreamError::Truncated {
            within: Within::Payload { index: 0 },
            got: 1,
            needed: 3
        }
    ));
    // A forged chunk beyond the declared size.
    let mut data = write(&[], 16);
    data.truncate(data.len() - TRAILER_LEN);
    data.extend_from_slice(&chunk_header(TAG_STOPCOPY, 17, 0));
    assert!(matches!(
        err(&data),
        StreamError::ChunkBeyondDeclaredSize {
            index: 0,
            len: 17,
            max: 16
        }
    ));
}

/// I/O errors keep the `io::Error` as their source.
#[test]
fn io_errors_keep_their_source() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        }
    }
    let Err(MigrationError::Stream(e)) = StreamReader::new(Failing) else {
        panic!("read error accepted");
    };
    let StreamError::Io { within, ref source } = e else {
        panic!("not an I/O error: {e}");
    };
    assert_eq!(within, Within::Magic);
    assert_eq!(source.raw_os_error(), Some(libc::EIO));
    assert!(std::error::Error::source(&e).is_some());
}

/// Exhaustive over one small stream (a pre-copy and a stop-copy chunk): a flip of every
/// byte position, and a cut at every length, is refused, in both verification modes. The
/// property tests above cover random streams at random places.
#[test]
fn every_position_flipped_or_cut_is_refused() {
    let chunks = vec![
        (ChunkKind::Precopy, (0u8..40).collect::<Vec<u8>>()),
        (ChunkKind::Stopcopy, (0u8..60).rev().collect::<Vec<u8>>()),
    ];
    let good = write(&chunks, 64);
    assert!(read_all(&good).is_ok());
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        assert!(
            matches!(read_all(&bad), Err(MigrationError::Stream(_))),
            "flip at {i} accepted"
        );
        assert!(
            matches!(read_all_deferred(&bad), Err(MigrationError::Stream(_))),
            "flip at {i} accepted (deferred)"
        );
        assert!(
            matches!(read_all_as_read(&bad, 3), Err(MigrationError::Stream(_))),
            "flip at {i} accepted (as read)"
        );
        assert!(
            matches!(read_all(&good[..i]), Err(MigrationError::Stream(_))),
            "cut at {i} accepted"
        );
        assert!(
            matches!(
                read_all_deferred(&good[..i]),
                Err(MigrationError::Stream(_))
            ),
            "cut at {i} accepted (deferred)"
        );
    }
}

/// A stream whose header declares a state size cannot carry unlimited STOP_COPY data:
/// past `stop_copy_limit(declared)` the reader refuses, before the excess is handed on.
#[test]
fn stop_copy_data_beyond_the_declared_state_is_refused() {
    let chunk = 1u32 << 20;
    let mut h = header(chunk);
    h.state_size_estimate = Some(1);
    let payload = vec![7u8; chunk as usize];
    let mut w = StreamWriter::new(Vec::new(), "mem", &h).unwrap();
    let n = stop_copy_limit(1) / u64::from(chunk) + 2;
    for _ in 0..n {
        w.write_chunk(ChunkKind::Stopcopy, &payload).unwrap();
    }
    let (bytes, _) = w.finish().unwrap();
    let mut r = StreamReader::new(&bytes[..]).unwrap();
    let mut buf = vec![0u8; chunk as usize];
    let e = loop {
        match r.next_chunk(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the whole stream was accepted"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            e,
            MigrationError::Stream(StreamError::BeyondDeclaredState {
                phase: "STOP_COPY",
                ..
            })
        ),
        "{e}"
    );
}
