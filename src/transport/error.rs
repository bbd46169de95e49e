//! Errors of the migration transport.

use super::frame::Refusal;
use crate::migration::MigrationError;
use std::time::Duration;

/// Result of transport calls.
pub type Result<T> = std::result::Result<T, TransportError>;

/// Where in a migration a link fault hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// Connecting, the TLS handshake, HELLO / ACCEPT.
    Handshake,
    /// Moving device state (pre-copy and stop-copy).
    Transfer,
    /// Between the end of the streams and the destination's acknowledgement.
    Commit,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Handshake => "handshake",
            Stage::Transfer => "transfer",
            Stage::Commit => "commit",
        })
    }
}

/// Everything that can go wrong migrating across a link.
///
/// [`TransportError::is_link_fault`] separates a broken, stalled or unacknowledged link from
/// refusals and device errors. The source's devices are RUNNING after any of them; after a
/// broken or stalled link so are the destination's, and the migration can be retried, but
/// after [`TransportError::NotAcknowledged`] the destination may already run the state
/// (check it before retrying).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// An address could not be parsed.
    #[error("bad address {addr:?}: {why}")]
    Address {
        /// What was given.
        addr: String,
        /// What is wrong with it.
        why: String,
    },
    /// Connecting, listening or accepting failed.
    #[error("{what}: {source}")]
    Connect {
        /// What was attempted (`connect 127.0.0.1:4444`).
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Loading certificates or keys, or building the TLS configuration, failed.
    #[error("TLS configuration: {what}: {source}")]
    TlsConfig {
        /// What was being loaded or built: a file's path, `client verifier`, `server name`.
        what: String,
        /// What failed (for a file that cannot be read, an I/O error inside the PEM error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The TLS handshake failed: the peer is not authenticated (no client certificate, one
    /// not signed by the CA, a server certificate that does not verify), or the link broke.
    #[error("TLS handshake with {peer} failed: {source}")]
    Handshake {
        /// The peer's address.
        peer: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The link dropped (reset, closed, broken) during `stage`.
    #[error("link to the peer broke during {stage}: {source}")]
    LinkBroken {
        /// When.
        stage: Stage,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The peer sent nothing (not even a keepalive) or accepted nothing for `timeout`.
    #[error("link to the peer stalled during {stage}: nothing moved for {timeout:?}")]
    Stalled {
        /// When.
        stage: Stage,
        /// The bound that elapsed (`--timeout`).
        timeout: Duration,
    },
    /// The peer broke the wire protocol (an unknown frame, one out of order, bad JSON).
    #[error("wire protocol violation by the peer: {0}")]
    Protocol(String),
    /// The caller asked for something a migration cannot do: no sources or more than 255,
    /// or dynamic resources listed for another number of devices than there are sources.
    /// Nothing was sent and no device was touched.
    #[error("invalid migration request: {0}")]
    InvalidRequest(String),
    /// The peer refused (typed; the peer's devices are RUNNING).
    #[error("the peer refused ({:?}): {}", .0.kind, .0.message)]
    Refused(Refusal),
    /// A local device operation failed (the device is RUNNING unless the error says otherwise).
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// The commit was sent but no acknowledgement came back: the destination may or may not
    /// run the state; the source runs its own.
    #[error("no acknowledgement of the commit: {0}")]
    NotAcknowledged(#[source] Box<TransportError>),
    /// Several devices were to move together but some lack the P2P states: like QEMU,
    /// which migrates several VFIO devices only when all of them have P2P, the migration is
    /// refused before any device is touched.
    #[error("several devices move together only when all have the P2P states (VFIO_MIGRATION_P2P); without them: {}", .devices.join(", "))]
    NoP2p {
        /// The devices without P2P states.
        devices: Vec<String>,
    },
    /// Copying the source's dynamic resources to a destination mdev failed or was refused
    /// (`receive`, before the device is opened).
    #[error(transparent)]
    Resources(#[from] crate::migration::attrs::CopyError),
    /// TLS was asked for but this build has no `tls` feature.
    #[error("this build has no TLS support (feature `tls`); use --insecure for plain TCP")]
    NoTls,
}

impl TransportError {
    /// A broken, stalled or unacknowledged link (as opposed to a refusal or a device error).
    pub fn is_link_fault(&self) -> bool {
        matches!(
            self,
            TransportError::LinkBroken { .. }
                | TransportError::Stalled { .. }
                | TransportError::NotAcknowledged(_)
        )
    }
}
