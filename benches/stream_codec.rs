//! Stream codec throughput: framing + XXH3-64 of 1 MiB chunks, encode and decode, raw and
//! with the version 2 chunk encodings (zero runs, auto LZ4).
//! `cargo bench --bench stream_codec` (CI: `cargo bench -- --test`).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vfio_harness::migration::stream::{
    ChunkKind, Compression, StreamHeader, StreamReader, StreamWriter,
};
use vfio_harness::migration::Protocol;

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 16;

fn header() -> StreamHeader {
    StreamHeader {
        device: "bench".into(),
        device_api: "vfio-pci".into(),
        mdev_type: None,
        pci_id: None,
        pci_subsystem: None,
        driver: None,
        protocol: Protocol::V2,
        mig_flags: 1,
        kernel_release: "bench".into(),
        harness_version: "bench".into(),
        state_size_estimate: None,
        max_chunk: CHUNK as u32,
        created_unix: 0,
    }
}

fn payload() -> Vec<u8> {
    (0..CHUNK)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn encode(c: &mut Criterion) {
    let data = payload();
    let h = header();
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Bytes((CHUNK * CHUNKS) as u64));
    g.bench_function("encode 16 x 1 MiB", |b| {
        b.iter(|| {
            let mut w = StreamWriter::new(std::io::sink(), "sink", &h).expect("header");
            for _ in 0..CHUNKS {
                w.write_chunk(ChunkKind::Stopcopy, black_box(&data))
                    .expect("chunk");
            }
            black_box(w.finish().expect("trailer").1)
        })
    });
    // A complete stream in memory to decode.
    let mut w = StreamWriter::new(Vec::new(), "vec", &h).expect("header");
    for _ in 0..CHUNKS {
        w.write_chunk(ChunkKind::Stopcopy, &data).expect("chunk");
    }
    let (stream, _) = w.finish().expect("trailer");
    let mut buf = vec![0u8; CHUNK];
    g.bench_function("decode 16 x 1 MiB", |b| {
        b.iter(|| {
            let mut r = StreamReader::new(black_box(&stream[..])).expect("header");
            let mut n = 0;
            while let Some((_, len)) = r.next_chunk(&mut buf).expect("chunk") {
                n += len;
            }
            assert_eq!(n, CHUNK * CHUNKS);
        })
    });
    // Chunk encodings (format version 2): random content, and half of the 4 KiB pages empty,
    // 56 bytes off a page boundary as in the simulator's stream.
    let mut sparse = data.clone();
    for (i, page) in sparse[56..].chunks_mut(4096).enumerate() {
        if i % 2 == 0 {
            page.fill(0);
        }
    }
    for (content, input) in [("random", &data), ("half zero", &sparse)] {
        for mode in [Compression::Zero, Compression::Auto] {
            if !mode.available() {
                continue;
            }
            g.bench_function(format!("encode {mode}, {content}, 16 x 1 MiB"), |b| {
                b.iter(|| {
                    let mut w = StreamWriter::with_compression(std::io::sink(), "sink", &h, mode)
                        .expect("header");
                    for _ in 0..CHUNKS {
                        w.write_chunk(ChunkKind::Stopcopy, black_box(input))
                            .expect("chunk");
                    }
                    black_box(w.finish().expect("trailer").1)
                })
            });
            let mut w =
                StreamWriter::with_compression(Vec::new(), "vec", &h, mode).expect("header");
            for _ in 0..CHUNKS {
                w.write_chunk(ChunkKind::Stopcopy, input).expect("chunk");
            }
            let (stream, _) = w.finish().expect("trailer");
            g.bench_function(format!("decode {mode}, {content}, 16 x 1 MiB"), |b| {
                b.iter(|| {
                    let mut r = StreamReader::new(black_box(&stream[..])).expect("header");
                    while r.next_chunk(&mut buf).expect("chunk").is_some() {}
                })
            });
        }
    }
    g.throughput(Throughput::Bytes(CHUNK as u64));
    // The format's checksum, and CRC-32 (the format's earlier choice) for comparison.
    g.bench_function("xxh3-64 1 MiB", |b| {
        b.iter(|| black_box(vfio_harness::migration::stream::checksum(black_box(&data))))
    });
    // How a restore on one thread verifies a payload: hashed piece by piece as its reads
    // return (`StreamReader::verify_as_read`), 64 KiB at a time.
    g.bench_function("xxh3-64 1 MiB streamed in 64 KiB pieces", |b| {
        b.iter(|| {
            let mut h = twox_hash::XxHash3_64::new();
            for piece in black_box(&data).chunks(64 << 10) {
                std::hash::Hasher::write(&mut h, piece);
            }
            black_box(std::hash::Hasher::finish(&h))
        })
    });
    g.bench_function("crc32 1 MiB", |b| {
        b.iter(|| black_box(crc32fast::hash(black_box(&data))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(2));
    targets = encode
}
criterion_main!(benches);
