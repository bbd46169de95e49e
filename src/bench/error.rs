//! Errors of a benchmark run, and the helpers that wrap lower-level failures into them.

use crate::device::DeviceError;
use crate::migration::MigrationError;
use crate::units::format_bytes;

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// Opening or driving a device failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A migration operation failed (the device was returned to RUNNING).
    #[error("{what}: {source}")]
    Migration {
        /// Which measurement.
        what: String,
        /// The failure.
        #[source]
        source: Box<MigrationError>,
    },
    /// A migration across the transport's link failed (the devices were returned to
    /// RUNNING).
    #[error("{what}: {source}")]
    Transport {
        /// Which measurement.
        what: String,
        /// The failure.
        #[source]
        source: Box<crate::transport::TransportError>,
    },
    /// A temporary or output file could not be used.
    #[error("{what}: {source}{}", io_hint(.source))]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The settings cannot be run.
    #[error("{0}")]
    Config(String),
    /// A buffer could not be allocated.
    #[error("cannot allocate {} for {what} (lower --buffer or --state)", format_bytes(*.bytes))]
    Alloc {
        /// Size requested.
        bytes: u64,
        /// What for.
        what: String,
        /// The failure (`mmap`'s).
        #[source]
        source: std::io::Error,
    },
    /// The run was interrupted (devices were returned to RUNNING).
    #[error("interrupted")]
    Interrupted,
    /// A transfer completed but the receiving device does not hold the state that was sent.
    #[error("{what}: the device does not hold the state that was sent: {why}")]
    Verify {
        /// Which measurement.
        what: String,
        /// Where the content differs.
        why: String,
    },
}

fn io_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => {
            " (the restore rows need room for one saved stream in $TMPDIR; point TMPDIR elsewhere or lower --state)"
        }
        _ => "",
    }
}

/// Wraps a migration failure of `what` (an interruption stays [`BenchError::Interrupted`]).
pub(super) fn mig(what: impl Into<String>) -> impl FnOnce(MigrationError) -> BenchError {
    let what = what.into();
    move |source| match source {
        MigrationError::Interrupted => BenchError::Interrupted,
        source => BenchError::Migration {
            what,
            source: Box::new(source),
        },
    }
}

/// Wraps an I/O failure of `what`.
pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}
