//! Follows the structure of a state stream (`docs/stream-format.md`) as its bytes are framed,
//! so that the source's sink can send each pre-copy chunk as soon as it is complete instead of
//! gathering it with later ones: pre-copy data then crosses the link while the device still
//! runs, not after it stopped.

use crate::migration::stream::{CHUNK_HEADER_LEN, CHUNK_HEADER_LEN_V2, TAG_PRECOPY, TAG_TRAILER};

/// Bytes of the fixed part of the stream header before its metadata (magic, version, length).
const HEAD_FIXED: usize = 16;
/// Bytes after the metadata (the header checksum).
const HEAD_SUM: u64 = 8;

/// Where a stream's bytes stand.
#[derive(Debug, Default)]
pub(crate) struct StreamCursor {
    /// Bytes of the element being collected (fixed header part, or chunk header).
    buf: Vec<u8>,
    /// Bytes to pass over before the next element (metadata + checksum, or a payload).
    skip: u64,
    /// Whether the stream header was read past.
    in_chunks: bool,
    /// Whether the stream is of format version 2 (encoded chunks: a 32-byte chunk header
    /// with the wire length at offset 8) rather than 1 (a 24-byte header, the length at 4).
    v2: bool,
    /// The tag of the chunk whose payload is being passed over.
    tag: [u8; 4],
    /// Set once the trailer began: nothing is followed any more.
    done: bool,
}

impl StreamCursor {
    /// Takes the next `data` bytes of the stream; returns whether they completed a pre-copy
    /// (`PREC`) chunk.
    pub(crate) fn advance(&mut self, mut data: &[u8]) -> bool {
        let mut precopy_done = false;
        while !data.is_empty() && !self.done {
            if self.skip > 0 {
                let t = self.skip.min(data.len() as u64);
                self.skip -= t;
                data = &data[t as usize..];
                if self.skip == 0 && self.in_chunks && self.tag == TAG_PRECOPY {
                    precopy_done = true;
                }
                continue;
            }
            let need = match (self.in_chunks, self.v2) {
                (false, _) => HEAD_FIXED,
                (true, false) => CHUNK_HEADER_LEN,
                (true, true) => CHUNK_HEADER_LEN_V2,
            };
            let t = (need - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..t]);
            data = &data[t..];
            // The trailer starts with its tag where a chunk header would, and is shorter than a
            // version 2 chunk header: known by the tag.
            if self.in_chunks && self.buf.starts_with(&TAG_TRAILER) {
                self.done = true;
                continue;
            }
            if self.buf.len() < need {
                continue;
            }
            let word = |at: usize| {
                u32::from_le_bytes([
                    self.buf[at],
                    self.buf[at + 1],
                    self.buf[at + 2],
                    self.buf[at + 3],
                ])
            };
            if !self.in_chunks {
                self.v2 = word(8) >= 2;
                self.skip = u64::from(word(12)) + HEAD_SUM;
                self.in_chunks = true;
            } else {
                self.tag = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
                // The bytes on the wire: version 2's wire length, version 1's payload length.
                self.skip = u64::from(if self.v2 { word(8) } else { word(4) });
                // A chunk with nothing on the wire is complete with its header.
                if self.skip == 0 && self.tag == TAG_PRECOPY {
                    precopy_done = true;
                }
            }
            self.buf.clear();
        }
        precopy_done
    }
}

#[cfg(test)]
#[path = "cursor_tests.rs"]
mod tests;
