//! What an operation reports: the results of save, restore and migrate.

use super::PrecopyEnd;
use crate::migration::stream::StreamHeader;
use crate::migration::{Pending, Protocol};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// One pre-copy round: what was pending when it started, what it read, what was pending after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundStats {
    /// Round number, from 1.
    pub round: u32,
    /// Pending when the round started (initial + dirty).
    pub pending_before: Pending,
    /// Bytes read in the round.
    pub bytes: u64,
    /// Pending when the round ended: what the source dirtied (or had left) meanwhile.
    pub pending_after: Pending,
    /// Round duration, seconds.
    pub seconds: f64,
}

/// Result of [`save`](super::save()).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaveReport {
    /// Source device.
    pub device: String,
    /// Output file, when saving to a file. (in JSON: the path, non-UTF-8 bytes replaced).
    #[serde(serialize_with = "lossy_path")]
    pub file: Option<PathBuf>,
    /// Migration protocol.
    pub protocol: Protocol,
    /// Device-state bytes saved.
    pub bytes: u64,
    /// Of which read during pre-copy.
    pub precopy_bytes: u64,
    /// Of which read during STOP_COPY.
    pub stopcopy_bytes: u64,
    /// Stream bytes written (framing included).
    pub stream_bytes: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Pre-copy rounds run.
    pub rounds: u32,
    /// Per pre-copy round: pending before and after, bytes read, duration.
    #[serde(default)]
    pub precopy_rounds: Vec<RoundStats>,
    /// Whether pre-copy converged under the threshold (false when it ran out of rounds or
    /// did not run).
    pub converged: bool,
    /// Why pre-copy ended ([`PrecopyEnd`]).
    #[serde(default)]
    pub precopy_end: PrecopyEnd,
    /// The downtime predicted just before the device stopped (bytes left over the drain
    /// rate measured in pre-copy), seconds; `None` when no pre-copy round measured a rate.
    /// Compare with `stop_copy_seconds`, the measured one.
    #[serde(default)]
    pub predicted_downtime_seconds: Option<f64>,
    /// The device's STOP_COPY size estimate, when it gave one.
    pub state_size_estimate: Option<u64>,
    /// Whole operation, seconds.
    pub seconds: f64,
    /// Time the device spent stopped (from leaving RUNNING/PRE_COPY until STOP_COPY's end
    /// of stream), seconds.
    pub stop_copy_seconds: f64,
    /// `bytes / seconds`.
    pub throughput_bytes_per_s: f64,
    /// The whole-stream checksum (XXH3-64) written in the trailer.
    pub stream_checksum: u64,
    /// The capacity of the pipe or FIFO the stream was written into, after asking for one
    /// chunk ([`save_to`](super::save_to) grows it where the kernel allows); `None` for
    /// anything else. Below the buffer size, each chunk left in pieces.
    #[serde(default)]
    pub pipe_capacity_bytes: Option<u64>,
    /// Whether the stream's file was written with `O_DIRECT`
    /// ([`Options::direct_io`](super::Options::direct_io) and a file system that takes it):
    /// every whole block from the engine's buffers to the disk, a tail shorter than a block
    /// through the page cache.
    /// `false` for a file written through the page cache (asked for, refused by its file
    /// system, or falling back after the disk refused a direct write) and for anything that
    /// is not a file.
    #[serde(default)]
    pub direct_io: bool,
    /// Time to commit the file after the stream was written ([`save_to`](super::save_to) on
    /// an atomic output: `fsync`, link, rename, the directory's `fsync`), seconds, not in
    /// `seconds`; 0 for anything else. Through the page cache most of the disk's work
    /// waits here.
    #[serde(default)]
    pub file_commit_seconds: f64,
}

/// Result of [`restore`](super::restore()).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Target device.
    pub device: String,
    /// Input file, when restoring from a file. (in JSON: the path, non-UTF-8 bytes replaced).
    #[serde(serialize_with = "lossy_path")]
    pub file: Option<PathBuf>,
    /// Migration protocol.
    pub protocol: Protocol,
    /// The stream's header (who saved it).
    pub source: StreamHeader,
    /// Device-state bytes restored.
    pub bytes: u64,
    /// Stream bytes read.
    pub stream_bytes: u64,
    /// Chunks read.
    pub chunks: u64,
    /// Whole operation, seconds.
    pub seconds: f64,
    /// Time leaving RESUMING took (the device validating and loading the state), seconds.
    pub commit_seconds: f64,
    /// `bytes / seconds`.
    pub throughput_bytes_per_s: f64,
    /// The capacity of the pipe or FIFO the stream was read from, after asking for the
    /// options' buffer size ([`restore_from`](super::restore_from) grows it where the kernel
    /// allows); `None` for anything else.
    #[serde(default)]
    pub pipe_capacity_bytes: Option<u64>,
    /// Whether the stream's file was read with `O_DIRECT`
    /// ([`restore_from`](super::restore_from): a regular file less than half of which the
    /// page cache held, [`Options::direct_io`](super::Options::direct_io) and a file system
    /// that takes it): from the disk into the engine's memory, the page cache left as it
    /// was. `false` for a file read through the page cache and for anything that is not a
    /// file. A read the disk refuses (a block larger than
    /// [`DIRECT_ALIGN`](super::DIRECT_ALIGN)) reads the rest through the page cache.
    #[serde(default)]
    pub direct_io: bool,
}

/// Result of [`migrate`](super::migrate()).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrateReport {
    /// Source device.
    pub source: String,
    /// Destination device.
    pub destination: String,
    /// Migration protocol.
    pub protocol: Protocol,
    /// Device-state bytes moved.
    pub bytes: u64,
    /// Of which moved during pre-copy.
    pub precopy_bytes: u64,
    /// Of which moved during STOP_COPY.
    pub stopcopy_bytes: u64,
    /// Chunks moved.
    pub chunks: u64,
    /// Pre-copy rounds run.
    pub rounds: u32,
    /// Per pre-copy round: pending before and after, bytes read, duration.
    #[serde(default)]
    pub precopy_rounds: Vec<RoundStats>,
    /// Whether pre-copy converged under the threshold.
    pub converged: bool,
    /// Why pre-copy ended ([`PrecopyEnd`]; of the first device, for several).
    #[serde(default)]
    pub precopy_end: PrecopyEnd,
    /// The downtime predicted just before the source stopped, seconds (the largest, for
    /// several devices); `None` when no pre-copy round measured a rate. Compare with
    /// `downtime_seconds`, the measured one.
    #[serde(default)]
    pub predicted_downtime_seconds: Option<f64>,
    /// Whole operation, seconds.
    pub seconds: f64,
    /// Pre-copy phase, seconds.
    pub precopy_seconds: f64,
    /// From the source leaving RUNNING to the end of its STOP_COPY stream, seconds.
    pub stop_copy_seconds: f64,
    /// The destination leaving RESUMING (validating and loading), seconds.
    pub commit_seconds: f64,
    /// From the source leaving RUNNING until the destination is RUNNING, seconds.
    pub downtime_seconds: f64,
    /// `bytes / seconds`.
    pub throughput_bytes_per_s: f64,
}

/// Seconds since `since`.
pub(super) fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// `bytes / seconds`, 0 when no time passed.
pub(super) fn rate(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    }
}

/// Serializes a path that may not be UTF-8 (JSON strings must be): invalid bytes become
/// U+FFFD.
fn lossy_path<S: serde::Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}
