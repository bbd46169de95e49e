//! The wire protocol's frames: an 8-byte header (kind, device index, reserved, length) and a
//! payload of at most [`MAX_FRAME`] bytes.
//!
//! ```text
//! +0  1  kind (FrameKind)
//! +1  1  device index (DATA, END; 0 otherwise)
//! +2  2  reserved, 0
//! +4  4  payload length (u32, little-endian), 0 ..= MAX_FRAME
//! +8  N  payload
//! ```
//!
//! TCP and TLS already detect corruption of the bytes in flight; the device stream carried in
//! DATA frames keeps its own checksums (`docs/stream-format.md`), verified by the destination
//! before any byte reaches its device.

use serde::{Deserialize, Serialize};

/// Size of a frame header.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest payload of one frame (1 MiB): bounds what the receiving side buffers per frame.
pub const MAX_FRAME: usize = 1 << 20;
/// The newest wire protocol version, carried in HELLO and ACCEPT. Version 2 adds
/// [`Hello::dynamic_resources`]; a source sends version 1 when it has none to send, so it
/// still migrates to a version-1 destination, and a destination accepts
/// [`MIN_WIRE_VERSION`] ..= [`WIRE_VERSION`].
pub const WIRE_VERSION: u32 = 2;
/// The oldest wire protocol version a destination accepts.
pub const MIN_WIRE_VERSION: u32 = 1;
/// Identifies the protocol in HELLO.
pub const WIRE_MAGIC: &str = "vfio-harness-migration";

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// Source -> destination: JSON [`Hello`].
    Hello = 1,
    /// Destination -> source: JSON [`Accept`]; the destination devices are open and RESUMING
    /// may begin.
    Accept = 2,
    /// Either way: JSON [`Refusal`]; the sender gives up, its devices RUNNING.
    Refuse = 3,
    /// Source -> destination: bytes of one device's state stream.
    Data = 4,
    /// Source -> destination: the device's stream is complete (its trailer was sent).
    End = 5,
    /// Destination -> source: every stream was verified to its trailer; ready to commit.
    Ready = 6,
    /// Source -> destination: leave RESUMING, run the state.
    Commit = 7,
    /// Destination -> source: JSON [`Ack`]; every device left RESUMING into RUNNING.
    Ack = 8,
    /// Either way, empty: the peer is alive.
    Keepalive = 9,
}

impl FrameKind {
    pub(crate) fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Hello,
            2 => FrameKind::Accept,
            3 => FrameKind::Refuse,
            4 => FrameKind::Data,
            5 => FrameKind::End,
            6 => FrameKind::Ready,
            7 => FrameKind::Commit,
            8 => FrameKind::Ack,
            9 => FrameKind::Keepalive,
            _ => return None,
        })
    }
}

/// One received frame.
#[derive(Debug)]
pub(crate) struct Frame {
    pub kind: FrameKind,
    pub device: u8,
    pub payload: Vec<u8>,
}

pub(crate) fn header(kind: FrameKind, device: u8, len: usize) -> [u8; FRAME_HEADER_LEN] {
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0] = kind as u8;
    h[1] = device;
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// The source's opening message: who it is and which device states follow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// [`WIRE_MAGIC`].
    pub magic: String,
    /// [`WIRE_VERSION`] of the source.
    pub version: u32,
    /// The source's harness version.
    pub harness_version: String,
    /// One stream header per device, in device-index order: the identity the destination
    /// checks before it touches a device.
    pub devices: Vec<crate::migration::stream::StreamHeader>,
    /// Version 2: per device (in device-index order), the source mdev's dynamic resources
    /// (its type's `dynamic_resources` names and the instance's values) for the destination
    /// to copy before it opens its device; `None` for a device that is not a mediated
    /// device. Empty (and absent from the JSON) when the source sends none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dynamic_resources: Vec<Option<Vec<crate::migration::attrs::ResourceValue>>>,
}

/// The destination's answer to [`Hello`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Accept {
    /// [`WIRE_VERSION`] of the destination.
    pub version: u32,
    /// The destination devices' names, in device-index order.
    pub devices: Vec<String>,
}

/// Why a peer refused: typed so the other side can branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalKind {
    /// Wire protocol version or magic unknown.
    Version,
    /// The number of devices differs.
    DeviceCount,
    /// A destination device cannot take the source's state (identity, protocol).
    Incompatible,
    /// A destination device could not be opened.
    Open,
    /// Restoring a device failed (a stream refused, a device error, a refused commit).
    Restore,
    /// Saving a device failed on the source.
    Save,
    /// The peer broke the wire protocol.
    Protocol,
    /// Interrupted by the user.
    Interrupted,
}

/// A typed refusal, sent in a REFUSE frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// What kind of refusal.
    pub kind: RefusalKind,
    /// The sender's error message.
    pub message: String,
}

/// What one destination device reports after it runs the state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AckDevice {
    /// Destination device name.
    pub device: String,
    /// Device-state bytes restored.
    pub bytes: u64,
    /// Chunks restored.
    pub chunks: u64,
    /// Time spent leaving RESUMING into RUNNING, seconds.
    pub commit_seconds: f64,
}

/// The destination's acknowledgement: every device runs the state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Per device, in device-index order.
    pub devices: Vec<AckDevice>,
}
