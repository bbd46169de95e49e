//! Saving with each `Compression` and restoring: the state arrives whole (the destination
//! checks it against the seed), with the engine's two threads and without, and the bytes on
//! the wire shrink where the state is sparse. Small states keep `cargo test` lean.

use vfio_harness::device::MigState;
use vfio_harness::migration::stream::{Compression, StreamReader};
use vfio_harness::migration::{driver_for, engine, MigrationDriver};

fn driver(spec: &str) -> Box<dyn MigrationDriver> {
    let dev = vfio_harness::open(&spec.parse().expect("spec"), &Default::default()).expect("open");
    driver_for(dev).expect("driver")
}

fn round_trip(src: &str, dst: &str, mode: Compression, overlap: bool) -> (u64, u64) {
    let opts = engine::Options {
        compression: mode,
        overlap,
        buffer_size: 64 << 10,
        ..Default::default()
    };
    let mut s = driver(src);
    let (bytes, saved) = engine::save(s.as_mut(), Vec::new(), "memory", &opts).expect("save");
    assert_eq!(saved.stream_bytes, bytes.len() as u64);
    let version = StreamReader::new(&bytes[..]).expect("header").version();
    assert_eq!(version, mode.format_version(), "{mode}");
    // Restoring needs no setting: the stream says how it is encoded.
    let mut d = driver(dst);
    let restored = engine::restore(
        d.as_mut(),
        &bytes[..],
        &engine::Options {
            overlap,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{mode}, overlap {overlap}: {e}"));
    assert_eq!(restored.bytes, saved.bytes);
    assert_eq!(restored.stream_bytes, saved.stream_bytes);
    assert_eq!(d.state().expect("state"), MigState::Running);
    assert_eq!(s.state().expect("state"), MigState::Running);
    // A device expecting another seed refuses it: the bytes were really decoded and checked.
    let mut other = driver(&dst.replace("verify-seed=3", "verify-seed=4"));
    assert!(engine::restore(other.as_mut(), &bytes[..], &Default::default()).is_err());
    (saved.bytes, saved.stream_bytes)
}

#[test]
fn every_mode_round_trips_with_and_without_overlap() {
    for mode in Compression::ALL.into_iter().filter(|m| m.available()) {
        for overlap in [true, false] {
            round_trip(
                "sim:state=1M,seed=3,zero-pages=0.5,backing=memory",
                "sim:state=1M,verify-seed=3,zero-pages=0.5",
                mode,
                overlap,
            );
        }
    }
}

/// Half the pages empty: the zero modes put little more than half the state on the wire;
/// without compression the stream is the state plus framing.
#[test]
fn sparse_state_shrinks_on_the_wire() {
    let src = "sim:state=2M,seed=3,zero-pages=0.5";
    let dst = "sim:state=2M,verify-seed=3,zero-pages=0.5";
    let (device, raw) = round_trip(src, dst, Compression::None, true);
    assert!(raw > device);
    for mode in [Compression::Zero, Compression::Lz4, Compression::Auto] {
        if !mode.available() {
            continue;
        }
        let (d, wire) = round_trip(src, dst, mode, true);
        assert_eq!(d, device);
        assert!(
            (wire as f64) < 0.56 * device as f64,
            "{mode}: {wire} of {device} bytes on the wire"
        );
    }
}

/// Random content does not shrink, and costs no more than the larger chunk headers.
#[test]
fn random_state_is_left_alone() {
    let src = "sim:state=1M,seed=3";
    let dst = "sim:state=1M,verify-seed=3";
    let (_, raw) = round_trip(src, dst, Compression::None, true);
    for mode in [Compression::Zero, Compression::Auto] {
        if !mode.available() {
            continue;
        }
        let (_, wire) = round_trip(src, dst, mode, true);
        assert!(wire <= raw + 8 * 17, "{mode}: {wire} against {raw}");
    }
}

fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/streams")
        .join(name)
}

/// A format 2 file saved by the build that introduced it (`save
/// "sim:state=64K,seed=5,zero-pages=0.5" --compress auto --buffer 16K`): zero runs elided,
/// restored by every later build.
#[test]
fn a_format_2_stream_saved_with_auto_restores() {
    let bytes =
        std::fs::read(fixture_path("sim-v2-64k-seed5-zero50-format2-auto.vfhs")).expect("fixture");
    assert_eq!(bytes[8], 2, "format version");
    let mut dst = driver("sim:state=64K,verify-seed=5,zero-pages=0.5");
    let r = engine::restore(dst.as_mut(), &bytes[..], &Default::default()).expect("restores");
    assert!(r.stream_bytes < r.bytes);
    let mut other = driver("sim:state=64K,verify-seed=4,zero-pages=0.5");
    assert!(engine::restore(other.as_mut(), &bytes[..], &Default::default()).is_err());
}

/// The content of the LZ4 fixture: text (compressible), zeros, random bytes.
#[cfg(feature = "lz4")]
fn lz4_fixture_chunks() -> Vec<Vec<u8>> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let random: Vec<u8> = (0..12_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let text = |i: usize, n: usize| -> Vec<u8> {
        format!("vfio-harness chunk {i} ")
            .into_bytes()
            .into_iter()
            .cycle()
            .take(n)
            .collect()
    };
    let mut mixed = text(2, 16 << 10);
    mixed[3000..11_000].fill(0);
    vec![text(0, 16 << 10), random, mixed, vec![0; 5000]]
}

const LZ4_FIXTURE: &str = "format2-lz4-text-zeros-random.vfhs";

/// A format 2 file with every encoding (raw, zero runs, LZ4, both) written by the build that
/// introduced them; its chunks read back as the content it was made from.
#[cfg(feature = "lz4")]
#[test]
fn a_format_2_stream_with_lz4_chunks_reads_back() {
    let bytes = std::fs::read(fixture_path(LZ4_FIXTURE)).expect("fixture");
    let mut r = StreamReader::new(&bytes[..]).expect("header");
    assert_eq!(r.version(), 2);
    let mut buf = vec![0u8; r.header().max_chunk as usize];
    let mut got = Vec::new();
    while let Some((_, n)) = r.next_chunk(&mut buf).expect("chunk") {
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got, lz4_fixture_chunks());
    assert!(r.totals().stream_bytes < r.totals().payload_bytes);
}

/// A build without the `lz4` feature refuses the LZ4 chunks by name (and reads up to them).
#[cfg(not(feature = "lz4"))]
#[test]
fn without_lz4_a_compressed_chunk_is_refused_by_name() {
    use vfio_harness::migration::stream::StreamError;
    use vfio_harness::migration::MigrationError;
    let bytes = std::fs::read(fixture_path(LZ4_FIXTURE)).expect("fixture");
    let mut r = StreamReader::new(&bytes[..]).expect("header");
    let mut buf = vec![0u8; r.header().max_chunk as usize];
    match r.next_chunk(&mut buf) {
        Err(MigrationError::Stream(StreamError::Lz4Unavailable { index: 0 })) => {}
        other => panic!("{other:?}"),
    }
}

/// Writes the LZ4 fixture (run once by hand: `cargo test --test compression -- --ignored`).
#[cfg(feature = "lz4")]
#[test]
#[ignore = "writes a fixture"]
fn write_lz4_fixture() {
    use vfio_harness::migration::stream::{ChunkKind, StreamHeader, StreamWriter};
    use vfio_harness::migration::Protocol;
    let header = StreamHeader {
        device: "fixture".into(),
        device_api: "vfio-pci".into(),
        mdev_type: None,
        pci_id: None,
        pci_subsystem: None,
        driver: None,
        protocol: Protocol::V2,
        mig_flags: 1,
        kernel_release: "fixture".into(),
        harness_version: env!("CARGO_PKG_VERSION").into(),
        state_size_estimate: None,
        max_chunk: 16 << 10,
        created_unix: 0,
    };
    let file = std::fs::File::create(fixture_path(LZ4_FIXTURE)).expect("create");
    let mut w =
        StreamWriter::with_compression(file, "fixture", &header, Compression::Lz4).expect("writer");
    for c in lz4_fixture_chunks() {
        w.write_chunk(ChunkKind::Stopcopy, &c).expect("chunk");
    }
    w.finish().expect("finish");
}

/// Across a (loopback) link the same stream travels: with `auto`, the destination restores
/// the sparse state it needs no setting for, and fewer bytes cross than the state holds.
#[test]
fn a_compressed_stream_crosses_the_transport() {
    use std::time::Duration;
    use vfio_harness::transport::{self, Hello, Listener, Security};
    let Ok(listener) = Listener::bind("127.0.0.1:0", Security::Insecure) else {
        eprintln!("no loopback networking here: skipped");
        return;
    };
    let addr = listener.local_addr().expect("addr");
    let dest = std::thread::spawn(move || {
        let (link, _) = listener.accept(Duration::from_secs(20)).expect("accept");
        let mut open = |_: &Hello| Ok(vec![driver("sim:state=2M,verify-seed=3,zero-pages=0.5")]);
        let mut devices = Vec::new();
        let r = transport::receive_into(&link, &mut open, &mut devices, &Default::default());
        (r, devices[0].state().expect("state"))
    });
    let ep = format!("tcp://{addr}").parse().expect("endpoint");
    let link =
        transport::connect(&ep, &Security::Insecure, Duration::from_secs(20)).expect("connect");
    let mode = if Compression::Auto.available() {
        Compression::Auto
    } else {
        Compression::Zero
    };
    let opts = engine::Options {
        compression: mode,
        buffer_size: 64 << 10,
        ..Default::default()
    };
    let mut src = vec![driver("sim:state=2M,seed=3,zero-pages=0.5")];
    let report = transport::migrate_to(&mut src, &link, &opts).expect("migrate");
    let (received, state) = dest.join().expect("destination thread");
    received.expect("receive");
    assert_eq!(state, MigState::Running);
    let save = &report.devices[0].save;
    assert!(
        save.stream_bytes < save.bytes * 6 / 10,
        "{} on the wire for {}",
        save.stream_bytes,
        save.bytes
    );
}
