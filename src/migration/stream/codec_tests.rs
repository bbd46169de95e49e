//! Format version 2: the chunk encodings round-trip in every mode, every flipped byte and
//! every cut is refused, forged chunks (valid checksums, malformed encodings) are refused
//! without a panic or an allocation beyond the declared chunk size, the auto mode backs off
//! on incompressible data, and version 1 is still what a writer without compression writes.

use super::codec::{expand_in_place, parse_runs, zero_runs, Encoder, ENC_LZ4, ENC_ZERO};
use super::format::{chunk_header_v2, TAG_STOPCOPY};
use super::*;
use crate::migration::{MigrationError, Protocol};
use proptest::prelude::*;

fn header(max_chunk: u32) -> StreamHeader {
    StreamHeader {
        device: "sim".into(),
        device_api: "vfio-pci".into(),
        mdev_type: None,
        pci_id: None,
        pci_subsystem: None,
        driver: Some("sim".into()),
        protocol: Protocol::V2,
        mig_flags: 7,
        kernel_release: "6.12.0".into(),
        harness_version: "0.1.0".into(),
        state_size_estimate: None,
        max_chunk,
        created_unix: 1,
    }
}

type Chunks = Vec<(ChunkKind, Vec<u8>)>;

/// A stream of `chunks` written with `mode` (also used by the look-ahead tests).
pub(super) fn write(chunks: &[(ChunkKind, Vec<u8>)], max_chunk: u32, mode: Compression) -> Vec<u8> {
    let mut w = StreamWriter::with_compression(Vec::new(), "mem", &header(max_chunk), mode)
        .expect("writer");
    for (k, p) in chunks {
        w.write_chunk(*k, p).expect("chunk");
    }
    w.finish().expect("finish").0
}

fn read_all(data: &[u8]) -> Result<Chunks> {
    let mut r = StreamReader::new(data)?;
    let mut buf = vec![0u8; r.header().max_chunk as usize];
    let mut out = Vec::new();
    while let Some((k, n)) = r.next_chunk(&mut buf)? {
        out.push((k, buf[..n].to_vec()));
    }
    Ok(out)
}

/// Reads like the restore pipeline: framing first, payload checks afterwards.
fn read_all_deferred(data: &[u8]) -> Result<Chunks> {
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
    Ok(out)
}

/// Content a device might hold: zero runs at any offset and length, compressible text,
/// random bytes.
fn content() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            (1usize..3000).prop_map(|n| vec![0u8; n]),
            (1usize..700).prop_map(|n| b"state ".iter().copied().cycle().take(n).collect()),
            prop::collection::vec(any::<u8>(), 1..700),
        ],
        1..8,
    )
    .prop_map(|parts| parts.concat())
}

fn chunks_strategy() -> impl Strategy<Value = Chunks> {
    prop::collection::vec(
        (
            prop_oneof![Just(ChunkKind::Precopy), Just(ChunkKind::Stopcopy)],
            content(),
        ),
        0..5,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(k, mut c)| {
                c.truncate(MAXC as usize);
                (k, c)
            })
            .collect()
    })
}

const MAXC: u32 = 8192;

fn modes() -> impl Strategy<Value = Compression> {
    prop::sample::select(
        Compression::ALL
            .into_iter()
            .filter(|m| m.available())
            .collect::<Vec<_>>(),
    )
}

fn stream_err(r: Result<Chunks>) -> bool {
    matches!(r, Err(MigrationError::Stream(_)))
}

proptest! {
    #[test]
    fn round_trip_in_every_mode(chunks in chunks_strategy(), mode in modes()) {
        let data = write(&chunks, MAXC, mode);
        let r = StreamReader::new(&data[..]).unwrap();
        prop_assert_eq!(r.version(), mode.format_version());
        prop_assert_eq!(&read_all(&data).unwrap(), &chunks);
        prop_assert_eq!(&read_all_deferred(&data).unwrap(), &chunks);
        // What goes on the wire is never more than raw framing would be, but for the
        // larger chunk headers.
        let raw = write(&chunks, MAXC, Compression::None);
        prop_assert!(data.len() <= raw.len() + 8 * chunks.len());
    }

    #[test]
    fn any_byte_flip_is_detected(chunks in chunks_strategy(), mode in modes(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let mut data = write(&chunks, MAXC, mode);
        let i = pos.index(data.len());
        data[i] ^= x;
        prop_assert!(stream_err(read_all(&data)), "flip at {} accepted", i);
        prop_assert!(stream_err(read_all_deferred(&data)), "flip at {} accepted (deferred)", i);
    }

    #[test]
    fn any_truncation_is_detected(chunks in chunks_strategy(), mode in modes(), pos in any::<prop::sample::Index>()) {
        let data = write(&chunks, MAXC, mode);
        let cut = pos.index(data.len());
        prop_assert!(stream_err(read_all(&data[..cut])), "cut at {} accepted", cut);
    }

    /// Forged chunks with valid checksums (what a malicious writer makes): any encoding word,
    /// lengths and wire bytes are refused or decoded, never a panic, never more than the
    /// declared chunk size written.
    #[test]
    fn forged_chunks_never_panic(
        encoding in 0u32..8,
        wire in prop::collection::vec(any::<u8>(), 1..300),
        device_len in 1u32..600,
        runs in prop::collection::vec((0u32..700, 0u32..300), 0..4),
    ) {
        let max = 512u32;
        let mut payload = Vec::new();
        if encoding & ENC_ZERO != 0 && !runs.is_empty() {
            payload.extend_from_slice(&(runs.len() as u32).to_le_bytes());
            for (a, l) in &runs {
                payload.extend_from_slice(&a.to_le_bytes());
                payload.extend_from_slice(&l.to_le_bytes());
            }
        }
        payload.extend_from_slice(&wire);
        let mut data = write(&[], max, Compression::Zero);
        data.truncate(data.len() - TRAILER_LEN);
        data.extend_from_slice(&chunk_header_v2(
            TAG_STOPCOPY,
            encoding,
            payload.len() as u32,
            device_len,
            checksum(&payload),
        ));
        data.extend_from_slice(&payload);
        let mut r = StreamReader::new(&data[..]).unwrap();
        let mut buf = vec![0u8; max as usize];
        match r.next_chunk(&mut buf) {
            Ok(Some((_, n))) => prop_assert!(n <= max as usize),
            Ok(None) => prop_assert!(false, "a chunk read as the trailer"),
            Err(MigrationError::Stream(_)) => {}
            Err(e) => prop_assert!(false, "not a stream error: {}", e),
        }
    }

    #[test]
    fn zero_runs_expand_back(data in content()) {
        let mut runs = Vec::new();
        let zeros = zero_runs(&data, &mut runs);
        let mut table = Vec::new();
        for (a, l) in &runs {
            prop_assert!(*l as usize >= MIN_RUN);
            prop_assert!(data[*a as usize..(*a + *l) as usize].iter().all(|&b| b == 0));
            table.extend_from_slice(&a.to_le_bytes());
            table.extend_from_slice(&l.to_le_bytes());
        }
        prop_assert_eq!(parse_runs(&table, data.len()).unwrap(), data.len() - zeros);
        let mut out = vec![0xAAu8; data.len()];
        let mut from = 0;
        let mut at = 0;
        for (a, l) in &runs {
            let piece = &data[from..*a as usize];
            out[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
            from = (*a + *l) as usize;
        }
        out[at..at + data.len() - from].copy_from_slice(&data[from..]);
        expand_in_place(&table, &mut out);
        prop_assert_eq!(out, data);
    }
}

/// Every zero run of `PROBE + 8` bytes or more is found, at any 8-byte offset: a device's
/// empty page behind its stream's own headers (56 bytes in the simulator) is elided whole.
#[test]
fn long_zero_runs_are_found_at_any_offset() {
    for shift in (0..PROBE).step_by(56) {
        let mut data = vec![0x5Au8; 3 * PROBE + 4096 + 64];
        let run = shift & !7..(shift & !7) + PROBE + 8;
        data[run.clone()].fill(0);
        let mut runs = Vec::new();
        let zeros = zero_runs(&data, &mut runs);
        assert_eq!(
            runs,
            vec![(run.start as u32, run.len() as u32)],
            "shift {shift}"
        );
        assert_eq!(zeros, run.len());
    }
    // A misaligned empty 4 KiB page in random-looking data.
    let mut data: Vec<u8> = (0..(64u32 << 10))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8 | 1)
        .collect();
    data[4096 + 56..8192 + 56].fill(0);
    let mut runs = Vec::new();
    assert_eq!(zero_runs(&data, &mut runs), 4096);
}

#[test]
fn rules_of_the_run_table() {
    let t = |runs: &[(u32, u32)]| -> Vec<u8> {
        runs.iter()
            .flat_map(|(a, l)| a.to_le_bytes().into_iter().chain(l.to_le_bytes()))
            .collect()
    };
    assert_eq!(parse_runs(&t(&[(0, 10), (10, 5)]), 20), Ok(5));
    assert!(parse_runs(&t(&[(0, 0)]), 20).is_err());
    assert!(parse_runs(&t(&[(5, 10), (4, 1)]), 20).is_err());
    assert!(parse_runs(&t(&[(15, 6)]), 20).is_err());
    assert!(parse_runs(&t(&[(u32::MAX, u32::MAX)]), 20).is_err());
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Auto on incompressible data: LZ4 is tried on the first chunk, then ever more rarely, at
/// least once every `AUTO_MAX_SKIP + 1` chunks; compressible data is compressed every time.
#[cfg(feature = "lz4")]
#[test]
fn auto_backs_off_on_incompressible_data() {
    let mut e = Encoder::new(Compression::Auto).unwrap().unwrap();
    let random = random_bytes(16 << 10, 7);
    let mut tried = 0;
    for _ in 0..400 {
        let before = e.attempts;
        let (enc, wire) = e.encode(&random);
        assert_eq!((enc, wire.len()), (0, random.len()));
        tried += e.attempts - before;
    }
    assert!((7..=14).contains(&tried), "{tried} attempts in 400 chunks");
    // Compressible again: the next attempt hits, and from then on every chunk is compressed.
    let text: Vec<u8> = b"device state "
        .iter()
        .copied()
        .cycle()
        .take(16 << 10)
        .collect();
    let mut compressed = 0;
    for _ in 0..(AUTO_MAX_SKIP + 10) {
        if e.encode(&text).0 == ENC_LZ4 {
            compressed += 1;
        }
    }
    assert!(compressed >= 10, "{compressed}");
    // Half zeros, half random: the zeros are elided and LZ4 is not kept.
    let mut half = random_bytes(32 << 10, 9);
    half[8192..24576].fill(0);
    let (enc, wire) = e.encode(&half);
    assert_eq!(enc & ENC_ZERO, ENC_ZERO);
    assert!(wire.len() < half.len() - 16000, "{}", wire.len());
}

/// `Lz4` compresses what shrinks and leaves raw what does not; `Zero` never compresses.
#[test]
fn each_mode_encodes_as_documented() {
    let text: Vec<u8> = b"device state "
        .iter()
        .copied()
        .cycle()
        .take(16 << 10)
        .collect();
    let random = random_bytes(16 << 10, 3);
    let zeros = vec![0u8; 16 << 10];
    let mut z = Encoder::new(Compression::Zero).unwrap().unwrap();
    assert_eq!(z.encode(&text).0, 0);
    assert_eq!(z.encode(&random).0, 0);
    let (enc, wire) = z.encode(&zeros);
    assert_eq!((enc, wire.len()), (ENC_ZERO, 12));
    assert!(Encoder::new(Compression::None).unwrap().is_none());
    if cfg!(feature = "lz4") {
        let mut l = Encoder::new(Compression::Lz4).unwrap().unwrap();
        assert_eq!(l.encode(&text).0, ENC_LZ4);
        assert_eq!(l.encode(&random).0, 0);
        let mut mixed = text.clone();
        mixed[4096..12288].fill(0);
        assert_eq!(l.encode(&mixed).0, ENC_ZERO | ENC_LZ4);
    } else {
        assert!(matches!(
            Encoder::new(Compression::Lz4),
            Err(StreamError::CompressionUnavailable { .. })
        ));
    }
}

/// A writer without compression writes version 1, byte for byte what `new` writes (and what
/// earlier builds wrote); one with compression writes version 2.
#[test]
fn version_1_without_compression() {
    let chunks = vec![(ChunkKind::Stopcopy, vec![0u8; 5000])];
    let mut w = StreamWriter::new(Vec::new(), "mem", &header(MAXC)).unwrap();
    w.write_chunk(ChunkKind::Stopcopy, &chunks[0].1).unwrap();
    let plain = w.finish().unwrap().0;
    assert_eq!(plain, write(&chunks, MAXC, Compression::None));
    assert_eq!(plain[8], 1);
    let zero = write(&chunks, MAXC, Compression::Zero);
    assert_eq!(zero[8], 2);
    assert!(zero.len() < plain.len() - 4900);
    assert_eq!(read_all(&zero).unwrap(), chunks);
}

/// Exhaustive over one small version 2 stream holding every encoding: a flip of every byte
/// and a cut at every length is refused.
#[test]
fn every_position_of_a_v2_stream_flipped_or_cut_is_refused() {
    let mut mixed: Vec<u8> = b"abc ".iter().copied().cycle().take(3000).collect();
    mixed[1000..2400].fill(0);
    let chunks = vec![
        (ChunkKind::Precopy, random_bytes(300, 5)),
        (ChunkKind::Stopcopy, vec![0u8; 2000]),
        (ChunkKind::Stopcopy, mixed),
    ];
    let mode = if cfg!(feature = "lz4") {
        Compression::Lz4
    } else {
        Compression::Zero
    };
    let good = write(&chunks, 4096, mode);
    assert_eq!(read_all(&good).unwrap(), chunks);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        assert!(stream_err(read_all(&bad)), "flip at {i} accepted");
        assert!(stream_err(read_all_deferred(&bad)), "flip at {i} accepted");
        assert!(stream_err(read_all(&good[..i])), "cut at {i} accepted");
    }
}

/// Forged version 2 chunks are refused with the rule they break.
#[test]
fn forged_encodings_are_refused_by_name() {
    let forge = |encoding: u32, payload: &[u8], device_len: u32| {
        let mut data = write(&[], 64, Compression::Zero);
        data.truncate(data.len() - TRAILER_LEN);
        data.extend_from_slice(&chunk_header_v2(
            TAG_STOPCOPY,
            encoding,
            payload.len() as u32,
            device_len,
            checksum(payload),
        ));
        data.extend_from_slice(payload);
        match read_all(&data) {
            Err(MigrationError::Stream(e)) => e,
            other => panic!("accepted: {other:?}"),
        }
    };
    assert!(matches!(
        forge(4, &[1; 8], 8),
        StreamError::UnknownEncoding {
            index: 0,
            encoding: 4
        }
    ));
    assert!(matches!(
        forge(0, &[1; 8], 9),
        StreamError::BadEncoding { index: 0, .. }
    ));
    assert!(matches!(
        forge(0, &[1; 8], 65),
        StreamError::ChunkBeyondDeclaredSize {
            len: 65,
            max: 64,
            ..
        }
    ));
    // A run past the end of the chunk.
    let mut t = 1u32.to_le_bytes().to_vec();
    t.extend_from_slice(&60u32.to_le_bytes());
    t.extend_from_slice(&8u32.to_le_bytes());
    let e = forge(ENC_ZERO, &t, 64);
    assert!(e.is_corrupt(), "{e}");
    assert!(e.to_string().contains("past the end"), "{e}");
    // An LZ4 block that does not decode to the declared length.
    if cfg!(feature = "lz4") {
        let e = forge(ENC_LZ4, &[0xF0, 1, 2, 3], 40);
        assert!(
            matches!(e, StreamError::BadEncoding { index: 0, .. }),
            "{e}"
        );
    }
}
