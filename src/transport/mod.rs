//! Cross-host live migration: a small wire protocol over any byte stream (TCP, or TLS with
//! mutual certificate authentication), carrying each device's state stream
//! ([`crate::migration::stream`], unchanged) from [`migrate_to`] on the source to
//! [`receive`](receive()) on the destination.
//!
//! ```text
//! source                                   destination
//!   -- TLS handshake (both certificates verified against the CA) --
//!   HELLO {version, devices: [stream header], dynamic_resources} ->
//!                                           (mdev resources copied, devices opened,
//!                                            identity checked)
//!                                  <- ACCEPT {devices} | REFUSE {kind, message}
//!   DATA(dev, stream bytes)* END(dev)  ->   (one restore thread per device, RESUMING)
//!   (in parallel for every device; several
//!    devices: none stops before all are in
//!    RUNNING_P2P / PRE_COPY_P2P)
//!                                  <- READY (every stream verified and written)
//!   COMMIT ->                               (every device leaves RESUMING into RUNNING;
//!                                            several: all into RUNNING_P2P first)
//!                                  <- ACK {per device} | REFUSE {kind, message}
//!   KEEPALIVE frames either way whenever a side has sent nothing for a while
//! ```
//!
//! Frames are an 8-byte header ([`FRAME_HEADER_LEN`]) and a payload of at most [`MAX_FRAME`]
//! bytes; every wait for the peer is bounded by
//! the link's timeout. A link that drops or stalls before COMMIT leaves every source RUNNING
//! with its state and every destination reset to RUNNING; after COMMIT the destination runs
//! the state and the source, without an ACK, reports [`TransportError::NotAcknowledged`].
//!
//! The guide (addresses, certificates with openssl, exit codes) is `docs/transport.md`.

mod bounded;
mod cursor;
mod direct;
mod error;
mod frame;
mod link;
mod marked;
mod net;
mod receive;
mod report;
mod resources;
mod send;
#[cfg(feature = "tls")]
mod tls;

/// The most the link holds per device besides the engine's ring on each side, bytes: the
/// source's gathered frame, and on a destination with several devices the frame being read,
/// [`QUEUE`] frames queued for the device's restore thread and the one it is reading from
/// (each at most [`MAX_FRAME`]; a destination with one device reads DATA payloads straight
/// into the engine's buffers and holds only control frames). Buffers given back are reused,
/// not added.
pub const LINK_BUFFER_BYTES: usize = send::GATHER + (QUEUE + 2) * MAX_FRAME;

/// [`LINK_BUFFER_BYTES`] of a migration of one device: the source's gathered frame and at
/// most one whole frame on the destination (its DATA is read into the engine's buffers, only
/// control frames into the link's).
pub const LINK_BUFFER_BYTES_ONE_DEVICE: usize = send::GATHER + MAX_FRAME;

pub use error::{Result, Stage, TransportError};
pub use frame::{
    Accept, Ack, AckDevice, Hello, Refusal, RefusalKind, FRAME_HEADER_LEN, MAX_FRAME,
    MIN_WIRE_VERSION, WIRE_MAGIC, WIRE_VERSION,
};
pub use link::{Keepalive, Link, Stream, POLL};
pub use net::{connect, Endpoint, Listener, Scheme, Security, TlsFiles};
pub use receive::{receive, receive_into, Opener, QUEUE};
pub use report::{DeviceLeg, ReceiveReport, RemoteReport};
pub use resources::copy_resources;
pub use send::{migrate_to, migrate_to_with, SendOptions};

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
