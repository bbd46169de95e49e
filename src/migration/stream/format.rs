//! The format itself: constants, the checksum, chunk kinds, the JSON header and the totals
//! recorded in the trailer.

use super::{MigrationError, Protocol, Result};
use crate::device::{DeviceHandle, MigFlags};
use crate::migration::compat::{Incompatibility, Mismatch};
use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64 as Xxh3;

/// The first 8 bytes of every stream.
pub const MAGIC: [u8; 8] = *b"VFIOSTRM";
/// The newest format version this code writes and reads: 2, chunks with an encoding (zero
/// pages elided, LZ4), written when a [`Compression`](super::Compression) other than `None`
/// is asked for. Without one, version 1 is written, exactly as earlier builds wrote it.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this code reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Largest JSON header accepted.
pub const MAX_HEADER_JSON: u32 = 64 * 1024;
/// Largest chunk payload accepted (and written).
pub const MAX_CHUNK_LEN: u32 = 64 * 1024 * 1024;
/// Size of a chunk header in format version 1.
pub const CHUNK_HEADER_LEN: usize = 24;
/// Size of a chunk header in format version 2 (encoding word and device length added).
pub const CHUNK_HEADER_LEN_V2: usize = 32;
/// Size of the trailer.
pub const TRAILER_LEN: usize = 28;

/// The checksum of the format: XXH3-64 (seed 0, default secret).
///
/// The implementation picks AVX2 or SSE2 at run time, so one portable binary hashes at
/// the speed of the machine it runs on (twice the SSE2-only speed where AVX2 exists).
pub fn checksum(data: &[u8]) -> u64 {
    Xxh3::oneshot(data)
}

pub(crate) const TAG_PRECOPY: [u8; 4] = *b"PREC";
pub(super) const TAG_STOPCOPY: [u8; 4] = *b"STOP";
pub(crate) const TAG_TRAILER: [u8; 4] = *b"TRLR";

/// Which phase of saving produced a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkKind {
    /// Read while the device was running (PRE_COPY).
    Precopy,
    /// Read while the device was stopped (STOP_COPY).
    Stopcopy,
}

impl ChunkKind {
    pub(super) fn tag(self) -> [u8; 4] {
        match self {
            ChunkKind::Precopy => TAG_PRECOPY,
            ChunkKind::Stopcopy => TAG_STOPCOPY,
        }
    }
}

/// Who produced the stream: written as JSON in the header, checked on restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeader {
    /// Name of the source device (informational).
    pub device: String,
    /// The source's `device_api` (`vfio-pci`, ...): must equal the target's.
    pub device_api: String,
    /// The source's mdev type, for mediated devices: must equal the target's.
    #[serde(default)]
    pub mdev_type: Option<String>,
    /// The source's PCI vendor:device: must equal the target's when both are PCI.
    #[serde(default)]
    pub pci_id: Option<String>,
    /// The source's PCI subsystem vendor:device (informational).
    #[serde(default)]
    pub pci_subsystem: Option<String>,
    /// The source's bound driver (informational).
    #[serde(default)]
    pub driver: Option<String>,
    /// Migration protocol the data was saved with: must equal the target's.
    pub protocol: Protocol,
    /// The source's migration capability flags (v2 `VFIO_MIGRATION_*`).
    pub mig_flags: u64,
    /// `uname -r` of the saving machine.
    pub kernel_release: String,
    /// Version of the harness that wrote the stream.
    pub harness_version: String,
    /// The device's STOP_COPY size estimate at save time, when it offered one.
    #[serde(default)]
    pub state_size_estimate: Option<u64>,
    /// Largest chunk payload in this stream (readers size their buffers from it).
    pub max_chunk: u32,
    /// Seconds since the Unix epoch when saving started.
    #[serde(default)]
    pub created_unix: u64,
}

impl StreamHeader {
    /// A header describing `device` saved with `protocol`/`flags`, chunks of at most
    /// `max_chunk` bytes.
    pub fn for_device(
        device: &DeviceHandle,
        protocol: Protocol,
        flags: MigFlags,
        state_size_estimate: Option<u64>,
        max_chunk: u32,
    ) -> Self {
        let id = &device.info().identity;
        StreamHeader {
            device: device.name().to_string(),
            device_api: id.device_api.clone(),
            mdev_type: id.mdev_type.clone(),
            pci_id: id.pci_id.clone(),
            pci_subsystem: id.pci_subsystem.clone(),
            driver: id.driver.clone(),
            protocol,
            mig_flags: flags.0,
            kernel_release: kernel_release(),
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            state_size_estimate,
            max_chunk,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// Checks that state saved from this header's device may be loaded into `device` with
    /// `protocol`: device_api, mdev type, PCI IDs and protocol must match. The error
    /// ([`MigrationError::Incompatible`]) lists every mismatch.
    pub fn check_target(&self, device: &DeviceHandle, protocol: Protocol) -> Result<()> {
        self.check_identity(&device.info().identity, device.name(), protocol)
    }

    /// [`StreamHeader::check_target`] against an identity (`name` labels the target).
    pub fn check_identity(
        &self,
        id: &crate::device::DeviceIdentity,
        name: &str,
        protocol: Protocol,
    ) -> Result<()> {
        let mut bad = Vec::new();
        if self.device_api != id.device_api {
            bad.push(Mismatch::DeviceApi {
                source: self.device_api.clone(),
                target: id.device_api.clone(),
            });
        }
        if self.mdev_type != id.mdev_type {
            bad.push(Mismatch::MdevType {
                source: self.mdev_type.clone(),
                target: id.mdev_type.clone(),
            });
        }
        if let (Some(a), Some(b)) = (&self.pci_id, &id.pci_id) {
            if a != b {
                bad.push(Mismatch::PciId {
                    source: a.clone(),
                    target: b.clone(),
                });
            }
        }
        if self.protocol != protocol {
            bad.push(Mismatch::Protocol {
                source: self.protocol,
                target: protocol,
            });
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(MigrationError::Incompatible(Incompatibility {
                source: self.device.clone(),
                target: name.to_string(),
                mismatches: bad,
            }))
        }
    }
}

/// `uname -r`, or `unknown`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain bytes; uname fills it and returns 0 on success.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Totals recorded in the trailer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTotals {
    /// Number of data chunks.
    pub chunks: u64,
    /// Payload bytes (device state, as decoded) in all chunks.
    pub payload_bytes: u64,
    /// Stream bytes, framing included: the bytes on the wire.
    pub stream_bytes: u64,
    /// The whole-stream checksum (XXH3-64).
    pub checksum: u64,
}

/// A chunk header: tag, length, payload checksum, and the checksum of those 16 bytes.
pub(super) fn chunk_header(tag: [u8; 4], len: u32, payload_sum: u64) -> [u8; CHUNK_HEADER_LEN] {
    let mut h = [0u8; CHUNK_HEADER_LEN];
    h[0..4].copy_from_slice(&tag);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&payload_sum.to_le_bytes());
    let hs = checksum(&h[0..16]);
    h[16..24].copy_from_slice(&hs.to_le_bytes());
    h
}

/// A version 2 chunk header: tag, encoding word, wire length, device length, the wire
/// bytes' checksum, and the checksum of those 24 bytes.
pub(super) fn chunk_header_v2(
    tag: [u8; 4],
    encoding: u32,
    wire_len: u32,
    device_len: u32,
    payload_sum: u64,
) -> [u8; CHUNK_HEADER_LEN_V2] {
    let mut h = [0u8; CHUNK_HEADER_LEN_V2];
    h[0..4].copy_from_slice(&tag);
    h[4..8].copy_from_slice(&encoding.to_le_bytes());
    h[8..12].copy_from_slice(&wire_len.to_le_bytes());
    h[12..16].copy_from_slice(&device_len.to_le_bytes());
    h[16..24].copy_from_slice(&payload_sum.to_le_bytes());
    let hs = checksum(&h[0..24]);
    h[24..32].copy_from_slice(&hs.to_le_bytes());
    h
}

/// The most data of one phase (PRE_COPY, and STOP_COPY) a stream may carry when its device
/// estimated `estimate` bytes: four times the estimate and at least 64 MiB more than it
/// (devices may exceed their estimates, a stream that never ends must not run forever). The
/// saver bounds each phase to it; the reader refuses a stream that carries more of either.
pub fn stop_copy_limit(estimate: u64) -> u64 {
    estimate
        .saturating_mul(4)
        .max(estimate.saturating_add(64 << 20))
}
