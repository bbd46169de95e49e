//! Errors of the migration layer.

use crate::device::{DeviceError, MigState};

/// Result of migration-layer calls.
pub type Result<T> = std::result::Result<T, MigrationError>;

/// Everything that can go wrong driving a migration.
#[derive(Debug, thiserror::Error)]
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

    /// A stream file or stream data is malformed, corrupt, truncated or foreign.
    #[error("stream: {0}")]
    Stream(String),

    /// The destination does not accept the source's state (compatibility check).
    #[error("incompatible: {0}")]
    Incompatible(String),

    /// File I/O on a stream file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The operation was interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,

    /// An operation failed, and returning the device to RUNNING afterwards failed too.
    #[error("{error}; returning the device to RUNNING also failed: {recovery} (hint: reset the device, or unbind and rebind its driver)")]
    Recovery {
        /// The original failure.
        error: Box<MigrationError>,
        /// Why recovery failed.
        recovery: Box<MigrationError>,
    },
}
