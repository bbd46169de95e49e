//! Fuzzes the stream reader: any input must give chunks or a clean error, never a panic,
//! never an allocation beyond the declared (and capped) chunk size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_harness::migration::stream::StreamReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = StreamReader::new(data) else {
        return;
    };
    // Cap the buffer like the engine does: the header's chunk size (itself capped).
    let mut buf = vec![0u8; r.header().max_chunk as usize];
    while let Ok(Some((_, n))) = r.next_chunk(&mut buf) {
        assert!(n <= buf.len());
    }
});
