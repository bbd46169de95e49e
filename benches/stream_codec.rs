//! Stream codec throughput: framing + CRC-32 of 1 MiB chunks, encode and decode.
//! `cargo bench --bench stream_codec` (CI: `cargo bench -- --test`).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vfio_harness::migration::stream::{ChunkKind, StreamHeader, StreamReader, StreamWriter};
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
    g.throughput(Throughput::Bytes(CHUNK as u64));
    // The format's checksum, and CRC-32 (the format's earlier choice) for comparison.
    g.bench_function("xxh3-64 1 MiB", |b| {
        b.iter(|| black_box(vfio_harness::migration::stream::checksum(black_box(&data))))
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
