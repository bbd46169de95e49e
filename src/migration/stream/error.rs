//! Why a stream is refused: one variant per rule of `docs/stream-format.md`.

use super::codec::Compression;
use super::format::{FORMAT_VERSION, MAX_CHUNK_LEN, MAX_HEADER_JSON, OLDEST_FORMAT_VERSION};
use std::fmt;
use std::io;
use std::ops::Range;

/// Where in a stream a read stopped (truncation) or failed (I/O).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Within {
    /// The 8-byte magic.
    Magic,
    /// The header (version, metadata length, metadata, header checksum).
    Header,
    /// The tag after the header or a chunk: a chunk header or the trailer.
    ChunkHeaderOrTrailer,
    /// A chunk header (chunk `index`, from 0).
    ChunkHeader {
        /// The chunk.
        index: u64,
    },
    /// A chunk's payload (chunk `index`, from 0).
    Payload {
        /// The chunk.
        index: u64,
    },
    /// The trailer.
    Trailer,
    /// After the trailer (where the input must end).
    AfterTrailer,
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Within::Magic => f.write_str("the magic"),
            Within::Header => f.write_str("the header"),
            Within::ChunkHeaderOrTrailer => f.write_str("a chunk header or the trailer"),
            Within::ChunkHeader { .. } => f.write_str("a chunk header"),
            Within::Payload { index } => write!(f, "chunk {index}"),
            Within::Trailer => f.write_str("the trailer"),
            Within::AfterTrailer => f.write_str("what follows the trailer"),
        }
    }
}

/// Why a stream was refused (reading) or could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The input is empty.
    #[error("empty input: not a vfio-harness state stream")]
    Empty,

    /// The PRE_COPY or the STOP_COPY chunks carry more than the header's
    /// `state_size_estimate` allows ([`stop_copy_limit`](super::stop_copy_limit) of it, for
    /// each phase).
    #[error("chunk {index}: the stream carries {bytes} bytes of {phase} data, more than {limit} allowed by the {declared}-byte state its header declares")]
    BeyondDeclaredState {
        /// The chunk that went over.
        index: u64,
        /// `PRE_COPY` or `STOP_COPY`.
        phase: &'static str,
        /// The payload bytes of `phase` up to and including it.
        bytes: u64,
        /// The header's estimate.
        declared: u64,
        /// The bound derived from it.
        limit: u64,
    },

    /// The input does not start with `VFIOSTRM`.
    #[error("bad magic: this is not a vfio-harness state stream")]
    BadMagic,

    /// The format version is not one this harness reads.
    #[error(
        "unsupported stream format version {found} (this harness reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version in the stream.
        found: u32,
    },

    /// The metadata length is outside 1..=[`MAX_HEADER_JSON`].
    #[error("corrupt header: metadata length {len} outside 1..={MAX_HEADER_JSON}")]
    HeaderLength {
        /// The length in the stream.
        len: u32,
    },

    /// The header checksum does not match.
    #[error("corrupt header: checksum mismatch")]
    HeaderChecksum,

    /// The metadata is not the JSON object the format defines.
    #[error("corrupt header metadata: {0}")]
    Metadata(#[source] serde_json::Error),

    /// The header declares a chunk size outside 1..=[`MAX_CHUNK_LEN`].
    #[error("header declares a chunk size of {size} bytes, outside 1..={MAX_CHUNK_LEN}")]
    DeclaredChunkSize {
        /// The declared size.
        size: u32,
    },

    /// A chunk header's checksum does not match.
    #[error("corrupt chunk header (chunk {index}): checksum mismatch")]
    ChunkHeaderChecksum {
        /// The chunk, from 0.
        index: u64,
    },

    /// A chunk's tag is neither `PREC` nor `STOP`.
    #[error("unknown chunk kind {:?} (chunk {index})", String::from_utf8_lossy(.tag))]
    UnknownChunkKind {
        /// The chunk, from 0.
        index: u64,
        /// The tag found.
        tag: [u8; 4],
    },

    /// A chunk declares a length of 0 or beyond the stream's declared chunk size.
    #[error("chunk {index} declares {len} bytes, outside 1..={max} (the stream's chunk size)")]
    ChunkBeyondDeclaredSize {
        /// The chunk, from 0.
        index: u64,
        /// The length it declares.
        len: u32,
        /// The stream's chunk size (`max_chunk`).
        max: u32,
    },

    /// A version 2 chunk's encoding word has bits this harness does not know.
    #[error("chunk {index}: unknown encoding {encoding:#x}")]
    UnknownEncoding {
        /// The chunk, from 0.
        index: u64,
        /// The encoding word found.
        encoding: u32,
    },

    /// A version 2 chunk's lengths or encoded bytes are inconsistent (found after its
    /// checksum verified: the stream was written wrong, or forged).
    #[error("corrupt chunk {index}: {what}")]
    BadEncoding {
        /// The chunk, from 0.
        index: u64,
        /// What is wrong.
        what: &'static str,
    },

    /// An LZ4-compressed chunk, and this harness was built without the `lz4` feature.
    #[error("chunk {index} is LZ4-compressed and this build has no LZ4 (feature `lz4`)")]
    Lz4Unavailable {
        /// The chunk, from 0.
        index: u64,
    },

    /// A writer was asked for a compression this build lacks.
    #[error("compression {mode} is not available in this build (feature `lz4`)")]
    CompressionUnavailable {
        /// The mode asked for.
        mode: Compression,
    },

    /// The caller's buffer is smaller than a chunk.
    #[error("chunk {index} of {len} bytes does not fit the {buffer}-byte buffer")]
    BufferTooSmall {
        /// The chunk, from 0.
        index: u64,
        /// Its length.
        len: usize,
        /// The buffer's length.
        buffer: usize,
    },

    /// A chunk's payload does not match the checksum in its header.
    #[error("corrupt data in chunk {index} (bytes {}..{} of the state): checksum mismatch", .range.start, .range.end)]
    PayloadChecksum {
        /// The chunk, from 0.
        index: u64,
        /// Where its payload lies in the device state.
        range: Range<u64>,
    },

    /// The trailer's whole-stream checksum does not match.
    #[error("corrupt stream: whole-stream checksum mismatch")]
    StreamChecksum,

    /// The trailer's totals disagree with the chunks read.
    #[error("trailer records {recorded_chunks} chunks / {recorded_bytes} bytes but the stream holds {chunks} / {bytes}")]
    TotalsMismatch {
        /// Chunks the trailer records.
        recorded_chunks: u64,
        /// Payload bytes the trailer records.
        recorded_bytes: u64,
        /// Chunks read.
        chunks: u64,
        /// Payload bytes read.
        bytes: u64,
    },

    /// The input ends before the end of the trailer.
    #[error("truncated: the stream ends inside {within} ({got} of {needed} bytes)")]
    Truncated {
        /// Inside what.
        within: Within,
        /// Bytes of it that were there.
        got: usize,
        /// Bytes it needs.
        needed: usize,
    },

    /// Bytes follow the trailer.
    #[error("unexpected data after the trailer")]
    TrailingData,

    /// Reading the input failed.
    #[error("read error in {within}: {source}")]
    Io {
        /// Where.
        within: Within,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A writer was asked for a chunk size outside 1..=[`MAX_CHUNK_LEN`].
    #[error("chunk size {size} is outside 1..={MAX_CHUNK_LEN}")]
    ChunkSize {
        /// The size asked for.
        size: u64,
    },

    /// A writer was given a payload above the stream's chunk size.
    #[error("chunk of {len} bytes exceeds the stream's chunk size {max}")]
    ChunkTooLarge {
        /// The payload's length.
        len: usize,
        /// The stream's chunk size.
        max: u32,
    },

    /// The header's metadata does not fit [`MAX_HEADER_JSON`] bytes.
    #[error("header too large: {len} bytes of metadata (at most {MAX_HEADER_JSON})")]
    HeaderTooLarge {
        /// The metadata's length.
        len: usize,
    },

    /// The header's metadata could not be encoded.
    #[error("cannot encode the header: {0}")]
    HeaderEncode(#[source] serde_json::Error),
}

impl StreamError {
    /// Whether the stream is corrupt: a checksum, a length or a tag is wrong (as opposed to
    /// foreign, truncated, or unreadable).
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            StreamError::HeaderLength { .. }
                | StreamError::HeaderChecksum
                | StreamError::Metadata(_)
                | StreamError::DeclaredChunkSize { .. }
                | StreamError::ChunkHeaderChecksum { .. }
                | StreamError::UnknownChunkKind { .. }
                | StreamError::ChunkBeyondDeclaredSize { .. }
                | StreamError::PayloadChecksum { .. }
                | StreamError::UnknownEncoding { .. }
                | StreamError::BadEncoding { .. }
                | StreamError::StreamChecksum
                | StreamError::TotalsMismatch { .. }
        )
    }
}
