//! The cursor finds the end of every pre-copy chunk, in both format versions, however the
//! stream's bytes are cut.

use super::StreamCursor;
use crate::migration::stream::{ChunkKind, Compression, StreamHeader, StreamWriter};
use crate::migration::{driver_for, MigrationDriver};

fn driver() -> Box<dyn MigrationDriver> {
    let dev =
        crate::open(&"sim:state=64K".parse().expect("spec"), &Default::default()).expect("sim");
    driver_for(dev).expect("driver")
}

/// A stream of pre-copy and stop-copy chunks (some of zeros, so that version 2 elides them
/// and its wire lengths differ from the device lengths), and the stream offsets where each
/// pre-copy chunk ends.
fn stream(compression: Compression) -> (Vec<u8>, Vec<usize>) {
    let drv = driver();
    let header = StreamHeader::for_device(drv.device(), drv.protocol(), drv.flags(), None, 8192);
    let mut w =
        StreamWriter::with_compression(Vec::new(), "test", &header, compression).expect("writer");
    let mut ends = Vec::new();
    let chunks: [(ChunkKind, Vec<u8>); 5] = [
        (ChunkKind::Precopy, vec![0u8; 8192]),
        (
            ChunkKind::Precopy,
            (0..5000u32).map(|i| i as u8 | 1).collect(),
        ),
        (ChunkKind::Stopcopy, vec![0u8; 4096]),
        (
            ChunkKind::Precopy,
            (0..8192u32).map(|i| (i * 7) as u8).collect(),
        ),
        (ChunkKind::Stopcopy, vec![9u8; 300]),
    ];
    for (kind, payload) in &chunks {
        w.write_chunk(*kind, payload).expect("chunk");
        if *kind == ChunkKind::Precopy {
            ends.push(w.totals().stream_bytes as usize);
        }
    }
    let (bytes, _) = w.finish().expect("finish");
    (bytes, ends)
}

/// Feeds `bytes` in pieces of `piece` bytes; returns the stream offsets at which `advance`
/// said a pre-copy chunk completed.
fn completions(bytes: &[u8], piece: usize) -> Vec<usize> {
    let mut c = StreamCursor::default();
    let mut at = 0;
    let mut seen = Vec::new();
    for p in bytes.chunks(piece) {
        at += p.len();
        if c.advance(p) {
            seen.push(at);
        }
    }
    assert!(c.done, "the trailer was not found");
    seen
}

#[test]
fn every_precopy_chunk_end_is_found_in_version_1_and_2() {
    let mut versions = vec![Compression::None, Compression::Zero];
    if cfg!(feature = "lz4") {
        versions.push(Compression::Lz4);
    }
    for compression in versions {
        let (bytes, ends) = stream(compression);
        assert_eq!(ends.len(), 3);
        // One byte at a time: each chunk's end is seen exactly where it is.
        assert_eq!(completions(&bytes, 1), ends, "{compression:?}");
        // Larger pieces: a piece that ends a chunk reports it (its end rounded up to the
        // piece's end), one that ends none reports nothing.
        for piece in [7, 100, 4096, bytes.len()] {
            let want: Vec<usize> = ends
                .iter()
                .map(|e| e.div_ceil(piece) * piece)
                .map(|e| e.min(bytes.len()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            assert_eq!(completions(&bytes, piece), want, "{compression:?}, {piece}");
        }
    }
}
