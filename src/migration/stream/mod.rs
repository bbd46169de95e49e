//! The saved-state stream format: a versioned, checksummed container for a device's
//! migration data (specified in `docs/stream-format.md`).
//!
//! ```text
//! header   "VFIOSTRM" | u32 version | u32 json_len | json (StreamHeader) | u64 xxh3(header)
//! chunk*   tag ("PREC"|"STOP") | u32 len | u64 xxh3(payload) | u64 xxh3(first 16 bytes) | payload
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
//! Parts: the format (constants, [`checksum`], [`StreamHeader`], [`StreamTotals`]), the writer
//! ([`StreamWriter`]), the reader ([`StreamReader`], [`PayloadCheck`]) and the errors
//! ([`StreamError`]).

mod error;
mod format;
mod reader;
mod writer;

pub use error::{StreamError, Within};
pub use format::{
    checksum, kernel_release, stop_copy_limit, ChunkKind, StreamHeader, StreamTotals,
    CHUNK_HEADER_LEN, FORMAT_VERSION, MAGIC, MAX_CHUNK_LEN, MAX_HEADER_JSON, TRAILER_LEN,
};
pub use reader::{PayloadCheck, StreamReader};
pub use writer::StreamWriter;

use super::{MigrationError, Protocol, Result};

#[cfg(test)]
mod tests;
