//! Errors of the migration layer.

use super::compat::Incompatibility;
use super::stream::{StreamError, MAX_CHUNK_LEN};
use crate::device::{DeviceError, MigState};

/// Result of migration-layer calls.
pub type Result<T> = std::result::Result<T, MigrationError>;

/// Everything that can go wrong driving a migration.
///
/// Callers branch on the variant: [`MigrationError::Stream`] and
/// [`MigrationError::StreamFile`] carry a [`StreamError`] naming the rule a stream broke
/// ([`MigrationError::stream_error`] reaches it in both), [`MigrationError::Incompatible`]
/// lists every mismatch. [`MigrationError::hint`] gives advice for the common cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// A device call failed.
    #[error(transparent)]
    Device(#[from] DeviceError),

    /// The device offers neither v2 migration nor a v1 migration region.
    #[error("{device}: the device does not support migration (no v2 migration feature, no v1 migration region)")]
    NotMigratable {
        /// Device name.
        device: String,
    },

    /// The device is in a state the operation cannot start from.
    #[error("{device}: {op} needs the device in {expected}, but it is in {actual}")]
    WrongState {
        /// Device name.
        device: String,
        /// The operation.
        op: String,
        /// The state needed.
        expected: String,
        /// The state found.
        actual: MigState,
    },

    /// The state is not reachable with this device's flags.
    #[error("{device}: state {state} does not exist for a device with migration flags {flags}")]
    Unreachable {
        /// Device name.
        device: String,
        /// The state asked for.
        state: MigState,
        /// The device's flags.
        flags: String,
    },

    /// The device broke the protocol (a v1 vendor error bit, data_size beyond the data section,
    /// a read that never ends...).
    #[error("{device}: protocol violation: {what}")]
    Protocol {
        /// Device name.
        device: String,
        /// What the device did wrong.
        what: String,
    },

    /// Stream data is malformed, corrupt, truncated or foreign, or cannot be written.
    #[error("stream: {0}")]
    Stream(#[from] StreamError),

    /// A stream file is malformed, corrupt, truncated or foreign.
    #[error("stream: {path}: {source}")]
    StreamFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        #[source]
        source: StreamError,
    },

    /// The destination does not accept the source's state (the stream header's identity
    /// check, or a failed rule of the compatibility pre-check).
    #[error("incompatible: {0}")]
    Incompatible(Incompatibility),

    /// File I/O on a stream file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The buffer (chunk) size asked for is outside 4096..=[`MAX_CHUNK_LEN`].
    #[error("buffer size {size} is outside 4096..={MAX_CHUNK_LEN} bytes")]
    InvalidBufferSize {
        /// The size asked for.
        size: usize,
    },

    /// The transfer buffers could not be mapped (`mmap(2)` failed: out of memory, or the
    /// process's address-space limit).
    #[error("cannot map a transfer buffer of {bytes} bytes: {source}{}", hint_suffix(self.hint()))]
    Buffers {
        /// The size of the buffer asked for.
        bytes: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A thread of the operation panicked.
    #[error("the {0} thread panicked")]
    ThreadPanicked(&'static str),

    /// The other side of a transfer stopped early; the error that stopped it is the one
    /// reported.
    #[error("the other side of the transfer stopped")]
    PeerStopped,

    /// The operation was interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,

    /// The device was not stopped: once pre-copy ended, the predicted downtime exceeded the
    /// policy's limit (or, no pre-copy round having measured a drain rate, could not be
    /// predicted). The source is left RUNNING with its state.
    #[error("{device}: not stopping the device: {}{}", downtime_text(*predicted_seconds, *limit_seconds, *remaining_bytes, *rounds), hint_suffix(self.hint()))]
    DowntimeLimit {
        /// The source device.
        device: String,
        /// The predicted downtime, seconds (`None`: no drain rate was measured).
        predicted_seconds: Option<f64>,
        /// The limit, seconds.
        limit_seconds: f64,
        /// Bytes still to move once stopped (the device's estimate).
        remaining_bytes: u64,
        /// Pre-copy rounds run.
        rounds: u32,
    },

    /// An operation failed, and returning the device to RUNNING afterwards failed too.
    #[error("{error}; returning the device to RUNNING also failed: {recovery}{}", hint_suffix(self.hint()))]
    Recovery {
        /// The original failure.
        #[source]
        error: Box<MigrationError>,
        /// Why recovery failed.
        recovery: Box<MigrationError>,
    },
}

impl MigrationError {
    /// The stream problem behind this error, for [`MigrationError::Stream`] and
    /// [`MigrationError::StreamFile`].
    pub fn stream_error(&self) -> Option<&StreamError> {
        match self {
            MigrationError::Stream(e) | MigrationError::StreamFile { source: e, .. } => Some(e),
            _ => None,
        }
    }

    /// Labels a stream error with the file it came from ([`MigrationError::StreamFile`]);
    /// other errors are returned as they are.
    pub fn in_file(self, path: &std::path::Path) -> MigrationError {
        match self {
            MigrationError::Stream(source) => MigrationError::StreamFile {
                path: path.display().to_string(),
                source,
            },
            other => other,
        }
    }

    /// Advice for the common cause of this error, from its variant (and, for device errors,
    /// the errno: [`DeviceError::hint`]). Device errors show theirs in their message; the
    /// message of [`MigrationError::Recovery`] ends with its own.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            MigrationError::Device(e) => e.hint(),
            MigrationError::Recovery { .. } => {
                Some("reset the device, or unbind and rebind its driver")
            }
            MigrationError::Buffers { .. } => Some(
                "raise the process's memory limit (ulimit -v, the cgroup's memory.max), or save with a smaller --buffer",
            ),
            MigrationError::DowntimeLimit { .. } => Some(
                "allow more pre-copy rounds, raise the downtime limit, or force the switchover",
            ),
            _ => None,
        }
    }
}

fn downtime_text(predicted: Option<f64>, limit: f64, remaining: u64, rounds: u32) -> String {
    match predicted {
        Some(p) => format!(
            "predicted downtime {p:.3} s ({remaining} bytes left after {rounds} pre-copy round(s)) exceeds the limit of {limit:.3} s"
        ),
        None => format!(
            "no pre-copy round measured a drain rate, so the downtime of moving {remaining} bytes cannot be held to {limit:.3} s"
        ),
    }
}

fn hint_suffix(h: Option<&str>) -> String {
    match h {
        Some(h) => format!(" (hint: {h})"),
        None => String::new(),
    }
}
