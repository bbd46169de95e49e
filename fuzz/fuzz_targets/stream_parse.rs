//! Fuzzes the stream reader: any input must give chunks or a clean error, never a panic,
//! never an allocation beyond the declared (and capped) chunk size.
//!
//! Two shapes of input, chosen by the first byte:
//! - even: the bytes as a whole stream (foreign, corrupt, truncated, versions 1 and 2);
//! - odd: forged version 2 chunks behind a valid header, each with valid checksums, so the
//!   chunk decoder (run tables, LZ4 blocks, lengths) sees arbitrary encodings: per chunk,
//!   encoding (1 byte), device length (2 bytes), wire length (2 bytes), then the wire bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_harness::migration::stream::{
    checksum, Compression, StreamHeader, StreamReader, StreamWriter, TRAILER_LEN,
};
use vfio_harness::migration::Protocol;

/// The `max_chunk` of forged streams.
const MAX: u32 = 4096;

fn forged(mut data: &[u8]) -> Vec<u8> {
    let header = StreamHeader {
        device: "fuzz".into(),
        device_api: "vfio-pci".into(),
        mdev_type: None,
        pci_id: None,
        pci_subsystem: None,
        driver: None,
        protocol: Protocol::V2,
        mig_flags: 1,
        kernel_release: String::new(),
        harness_version: String::new(),
        state_size_estimate: None,
        max_chunk: MAX,
        created_unix: 0,
    };
    let Ok(w) = StreamWriter::with_compression(Vec::new(), "fuzz", &header, Compression::Zero)
    else {
        return Vec::new();
    };
    let Ok((mut out, _)) = w.finish() else {
        return Vec::new();
    };
    out.truncate(out.len() - TRAILER_LEN);
    while data.len() >= 5 {
        let encoding = u32::from(data[0] & 7);
        let device = u32::from(u16::from_le_bytes([data[1], data[2]]));
        let wire = usize::from(u16::from_le_bytes([data[3], data[4]])).min(data.len() - 5);
        let bytes = &data[5..5 + wire];
        data = &data[5 + wire..];
        let mut h = [0u8; 32];
        h[0..4].copy_from_slice(b"STOP");
        h[4..8].copy_from_slice(&encoding.to_le_bytes());
        h[8..12].copy_from_slice(&(wire as u32).to_le_bytes());
        h[12..16].copy_from_slice(&device.to_le_bytes());
        h[16..24].copy_from_slice(&checksum(bytes).to_le_bytes());
        let hs = checksum(&h[0..24]);
        h[24..32].copy_from_slice(&hs.to_le_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(bytes);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let owned;
    let input = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => {
            owned = forged(rest);
            &owned[..]
        }
        _ => data,
    };
    let Ok(mut r) = StreamReader::new(input) else {
        return;
    };
    // Cap the buffer like the engine does: the header's chunk size (itself capped).
    let mut buf = vec![0u8; r.header().max_chunk as usize];
    while let Ok(Some((_, n))) = r.next_chunk(&mut buf) {
        assert!(n <= buf.len());
    }
});
