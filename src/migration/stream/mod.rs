//! The saved-state stream format: a versioned, checksummed container for a device's
//! migration data (specified in `docs/stream-format.md`).
//!
//! ```text
//! header   "VFIOSTRM" | u32 version | u32 json_len | json (StreamHeader) | u64 xxh3(header)
//! chunk*   v1: tag ("PREC"|"STOP") | u32 len | u64 xxh3(payload) | u64 xxh3(first 16 bytes) | payload
//!          v2: tag | u32 encoding | u32 wire len | u32 device len | u64 xxh3(wire bytes)
//!              | u64 xxh3(first 24 bytes) | wire bytes (raw, zero pages elided, LZ4)
//! trailer  "TRLR" | u64 chunk_count | u64 payload_bytes | u64 xxh3(every non-payload byte before)
//! ```
//!
//! All integers are little-endian; checksums are XXH3-64. The whole-stream checksum covers
//! the header, every chunk header (which carries its payload's checksum) and the trailer's
//! totals, so it protects the payloads transitively without a second pass over them, and a
//! payload can be verified on any thread ([`PayloadCheck`]).
//!
//! [`StreamReader`] validates everything and never panics: a stream that is foreign (magic,
//! version), corrupt (any checksum), truncated, oversized (chunk length above the limit the
//! header declares, itself capped at [`MAX_CHUNK_LEN`]) or followed by extra bytes is refused
//! with [`MigrationError::Stream`], whose [`StreamError`] says which rule failed. Memory use is
//! bounded by the caller's buffer.
//!
//! Version 1 (every chunk raw) is written by default, byte for byte as earlier builds wrote
//! it; version 2 when the writer is given a [`Compression`] ([`StreamWriter::with_compression`]):
//! zero pages elided, LZ4 (described at [`Compression`] and in the format document). Readers accept
//! both and need no setting. In version 2 a chunk's checksum covers its wire bytes, verified
//! before they are decoded.
//!
//! Parts: the format (constants, [`checksum`], [`StreamHeader`], [`StreamTotals`]), the writer
//! ([`StreamWriter`]), the reader ([`StreamReader`], [`PayloadCheck`]) and the errors
//! ([`StreamError`]).

mod ahead;
mod codec;
mod error;
mod format;
mod hasher;
mod needed;
mod reader;
mod writer;

pub use codec::{Compression, AUTO_MAX_SKIP, MIN_RUN, PROBE};
pub use error::{StreamError, Within};
pub use format::{
    checksum, kernel_release, stop_copy_limit, ChunkKind, StreamHeader, StreamTotals,
    CHUNK_HEADER_LEN, CHUNK_HEADER_LEN_V2, FORMAT_VERSION, MAGIC, MAX_CHUNK_LEN, MAX_HEADER_JSON,
    OLDEST_FORMAT_VERSION, TRAILER_LEN,
};
pub(crate) use format::{TAG_PRECOPY, TAG_TRAILER};
pub(crate) use hasher::Hasher;
pub use needed::Needed;
pub use reader::{PayloadCheck, StreamReader};
pub use writer::StreamWriter;

use super::{MigrationError, Protocol, Result};

#[cfg(test)]
mod ahead_tests;
#[cfg(test)]
mod codec_tests;
#[cfg(test)]
mod needed_tests;
#[cfg(test)]
pub(crate) mod tests;
