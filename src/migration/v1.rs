//! Migration protocol v1: the region-based protocol (see the module docs of
//! [`crate::migration`]).
//!
//! The device exposes a migration region (type 3 / subtype 1) starting with
//! `struct vfio_device_migration_info { u32 device_state; u32 reserved; u64 pending_bytes;
//! u64 data_offset; u64 data_size; }`, followed by a data section (often mmap-able through a
//! sparse-mmap capability). Saving iterates `pending_bytes` / `data_offset` / `data_size` and
//! copies each chunk out of the data section; resuming reads `data_offset`, puts a chunk into
//! the data section and commits it by writing `data_size`.
//!
//! The driver copies chunks straight between the caller's buffer and the mapped data section
//! (positioned I/O when the section cannot be mapped), filling one large caller buffer from as
//! many chunks as fit, with no allocation per chunk.

use super::{MigrationDriver, MigrationError, Pending, Protocol, Result};
use crate::device::{
    uapi, DeviceError, DeviceHandle, MigFlags, MigState, RegionAccess, RegionInfo, RegionMap,
};

/// The v1 `device_state` bits for a state named in the v2 vocabulary.
pub fn state_bits(s: MigState) -> Option<u32> {
    match s {
        MigState::Stop => Some(0),
        MigState::Running => Some(uapi::DEVICE_STATE_V1_RUNNING),
        MigState::PreCopy => Some(uapi::DEVICE_STATE_V1_SAVING | uapi::DEVICE_STATE_V1_RUNNING),
        MigState::StopCopy => Some(uapi::DEVICE_STATE_V1_SAVING),
        MigState::Resuming => Some(uapi::DEVICE_STATE_V1_RESUMING),
        MigState::RunningP2p | MigState::PreCopyP2p | MigState::Error => None,
    }
}

/// Decodes `device_state` (defined bits only): `Some(Error)` for the vendor's error
/// indication `_SAVING | _RESUMING`, `None` for `_RESUMING` combined with `_RUNNING`.
pub fn decode_state(bits: u32) -> Option<MigState> {
    match bits & uapi::DEVICE_STATE_V1_MASK {
        0 => Some(MigState::Stop),
        uapi::DEVICE_STATE_V1_RUNNING => Some(MigState::Running),
        3 => Some(MigState::PreCopy),
        uapi::DEVICE_STATE_V1_SAVING => Some(MigState::StopCopy),
        uapi::DEVICE_STATE_V1_RESUMING => Some(MigState::Resuming),
        6 => Some(MigState::Error),
        _ => None,
    }
}

/// Piece size for copies whose alignment makes `rep movsb` slow (see [`slow_rep_movsb`]).
const SLOW_COPY_PIECE: usize = 2048;

/// glibc's memcpy uses `rep movsb` for large copies, which on some CPUs (measured: AMD EPYC,
/// glibc 2.36: 1.7 instead of 17 GB/s) is more than ten times slower when the destination
/// sits 1..63 bytes after the source modulo 4 KiB. Such copies are done in pieces below the
/// `rep movsb` threshold, which take glibc's vector loop instead.
fn slow_rep_movsb(dst: usize, src: usize, len: usize) -> bool {
    len > SLOW_COPY_PIECE && (1..64).contains(&(dst.wrapping_sub(src) % 4096))
}

/// A chunk the device prepared in the data section and we have not fully copied out yet.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    offset: u64,
    size: u64,
    done: u64,
}

/// One mmap'd area of the migration region.
struct Mapped {
    offset: u64,
    map: RegionMap,
}

/// Drives a device through the v1 migration region.
pub struct V1Driver {
    device: DeviceHandle,
    region: RegionInfo,
    maps: Vec<Mapped>,
    mapped: bool,
    chunk: Option<Chunk>,
    /// Bytes of an interrupted chunk moved out of the data section (see [`Self::pending`]).
    stash: Vec<u8>,
    stash_pos: usize,
    /// Largest chunk seen so far (bounded by the data section).
    max_chunk: u64,
}

impl std::fmt::Debug for V1Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V1Driver")
            .field("device", &self.device.name())
            .field("region", &self.region)
            .field("mapped", &self.mapped)
            .field("max_chunk", &self.max_chunk)
            .finish_non_exhaustive()
    }
}

impl V1Driver {
    /// The device's v1 migration region, if it has one.
    pub fn probe(device: &DeviceHandle) -> Option<RegionInfo> {
        device
            .info()
            .region_by_type(
                uapi::REGION_TYPE_MIGRATION_V1,
                uapi::REGION_SUBTYPE_MIGRATION_V1,
            )
            .cloned()
    }

    /// Opens the v1 driver on a device with a migration region.
    pub fn new(device: DeviceHandle) -> Result<Self> {
        let region = Self::probe(&device).ok_or_else(|| MigrationError::NotMigratable {
            device: device.name().to_string(),
        })?;
        if region.size <= uapi::MIG_INFO_SIZE || !region.readable() || !region.writable() {
            return Err(MigrationError::Protocol {
                device: device.name().to_string(),
                what: format!(
                    "migration region {} ({} bytes, flags {}) cannot hold vfio_device_migration_info and a data section",
                    region.index,
                    region.size,
                    region.flag_names().join("|")
                ),
            });
        }
        let max_chunk = region.size - uapi::MIG_INFO_SIZE;
        Ok(V1Driver {
            device,
            region,
            maps: Vec::new(),
            mapped: false,
            chunk: None,
            stash: Vec::new(),
            stash_pos: 0,
            max_chunk,
        })
    }

    /// Whether the data section is reached through mmap (after the first data transfer).
    pub fn uses_mmap(&self) -> bool {
        !self.maps.is_empty()
    }

    fn name(&self) -> String {
        self.device.name().to_string()
    }

    fn protocol_err(&self, what: String) -> MigrationError {
        MigrationError::Protocol {
            device: self.name(),
            what,
        }
    }

    fn read_u64(&self, off: u64) -> Result<u64> {
        Ok(self.device.read_width(self.region.index, off, 8)?)
    }

    fn read_bits(&self) -> Result<u32> {
        Ok(self
            .device
            .read_width(self.region.index, uapi::MIG_INFO_DEVICE_STATE, 4)? as u32)
    }

    fn decode(&self, bits: u32) -> Result<MigState> {
        decode_state(bits).ok_or_else(|| {
            self.protocol_err(format!(
                "device_state reads {bits:#x}: _RESUMING combined with other bits is not a valid v1 state"
            ))
        })
    }

    /// Maps the sparse-mmap areas once (falls back to positioned I/O if mapping fails).
    fn ensure_maps(&mut self) {
        if self.mapped {
            return;
        }
        self.mapped = true;
        for a in self.region.mmap_areas() {
            if a.offset < uapi::MIG_INFO_SIZE || a.size == 0 {
                continue; // never map the trapped info structure
            }
            match self.device.map_region(self.region.index, a.offset, a.size) {
                Ok(map) => self.maps.push(Mapped {
                    offset: a.offset,
                    map,
                }),
                Err(_) => {
                    // The kernel may refuse the mmap (e.g. a vendor that only advertises it);
                    // positioned I/O always works.
                    self.maps.clear();
                    return;
                }
            }
        }
    }

    /// The mapping covering `[off, off + len)` of the region, with the offset inside it.
    fn mapping_for(&self, off: u64, len: u64) -> Option<(&RegionMap, usize)> {
        self.maps.iter().find_map(|m| {
            let end = m.offset + m.map.len() as u64;
            (off >= m.offset && off + len <= end).then(|| (&m.map, (off - m.offset) as usize))
        })
    }

    fn copy_out(&self, off: u64, dst: &mut [u8]) -> Result<()> {
        match self.mapping_for(off, dst.len() as u64) {
            Some((m, at)) => {
                if slow_rep_movsb(dst.as_ptr() as usize, m.as_ptr() as usize + at, dst.len()) {
                    let mut done = 0;
                    for piece in dst.chunks_mut(SLOW_COPY_PIECE) {
                        m.read(at + done, piece)?;
                        done += piece.len();
                    }
                    Ok(())
                } else {
                    Ok(m.read(at, dst)?)
                }
            }
            None => Ok(self.device.read_region(self.region.index, off, dst)?),
        }
    }

    fn copy_in(&self, off: u64, src: &[u8]) -> Result<()> {
        match self.mapping_for(off, src.len() as u64) {
            Some((m, at)) => {
                if slow_rep_movsb(m.as_ptr() as usize + at, src.as_ptr() as usize, src.len()) {
                    let mut done = 0;
                    for piece in src.chunks(SLOW_COPY_PIECE) {
                        m.write(at + done, piece)?;
                        done += piece.len();
                    }
                    Ok(())
                } else {
                    Ok(m.write(at, src)?)
                }
            }
            None => Ok(self.device.write_region(self.region.index, off, src)?),
        }
    }

    /// Checks a `data_offset` / `data_size` pair the vendor returned.
    fn check_window(&self, off: u64, size: u64) -> Result<()> {
        let ok = off >= uapi::MIG_INFO_SIZE
            && off.checked_add(size).is_some_and(|e| e <= self.region.size);
        if ok {
            Ok(())
        } else {
            Err(self.protocol_err(format!(
                "data_offset {off:#x} + data_size {size:#x} lies outside the data section \
                 ({:#x}..{:#x} of migration region {})",
                uapi::MIG_INFO_SIZE,
                self.region.size,
                self.region.index
            )))
        }
    }

    fn expect_state(&self, op: &str, want: &[MigState], expected: &str) -> Result<MigState> {
        let bits = self.read_bits()?;
        let s = self.decode(bits)?;
        if s == MigState::Error {
            return Err(self.protocol_err(format!(
                "{op}: the device reports an error (device_state {bits:#x} = _SAVING|_RESUMING); it needs a reset"
            )));
        }
        if !want.contains(&s) {
            return Err(MigrationError::WrongState {
                device: self.name(),
                op: op.to_string(),
                expected: expected.to_string(),
                actual: s,
            });
        }
        Ok(s)
    }

    fn drop_chunk(&mut self) {
        self.chunk = None;
        self.stash.clear();
        self.stash_pos = 0;
    }
}

impl MigrationDriver for V1Driver {
    fn protocol(&self) -> Protocol {
        Protocol::V1
    }

    fn device(&self) -> &DeviceHandle {
        &self.device
    }

    fn flags(&self) -> MigFlags {
        MigFlags(MigFlags::STOP_COPY | MigFlags::PRE_COPY)
    }

    fn set_state(&mut self, state: MigState) -> Result<()> {
        let Some(bits) = state_bits(state) else {
            return Err(MigrationError::Unreachable {
                device: self.name(),
                state,
                flags: format!("{} (migration v1)", self.flags()),
            });
        };
        let cur = self.read_bits()?;
        // Reserved bits are preserved (read-modify-write), as the v1 uAPI asks.
        let new = (cur & !uapi::DEVICE_STATE_V1_MASK) | bits;
        if cur == new {
            return Ok(());
        }
        self.drop_chunk();
        if let Err(e) = self.device.write_width(
            self.region.index,
            uapi::MIG_INFO_DEVICE_STATE,
            4,
            new as u64,
        ) {
            let now = self
                .read_bits()
                .ok()
                .and_then(decode_state)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into());
            return Err(MigrationError::Device(DeviceError::Migration {
                device: self.name(),
                op: "set v1 device_state",
                state: Some(state),
                source: std::io::Error::from_raw_os_error(e.errno().unwrap_or(libc::EIO)),
                detail: Some(format!("{e}; device_state now reads {now}")),
            }));
        }
        let back = self.read_bits()?;
        if back & uapi::DEVICE_STATE_V1_MASK != bits {
            let s = decode_state(back)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "invalid".into());
            return Err(self.protocol_err(format!(
                "wrote device_state {new:#x} ({state}) but it reads back {back:#x} ({s})"
            )));
        }
        Ok(())
    }

    fn state(&mut self) -> Result<MigState> {
        let bits = self.read_bits()?;
        self.decode(bits)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let state = self.expect_state(
            "read saved state",
            &[MigState::PreCopy, MigState::StopCopy],
            "PRE_COPY (_SAVING|_RUNNING) or STOP_COPY (_SAVING)",
        )?;
        self.ensure_maps();
        let mut filled = 0usize;
        while filled < buf.len() {
            if self.stash_pos < self.stash.len() {
                let n = (self.stash.len() - self.stash_pos).min(buf.len() - filled);
                buf[filled..filled + n]
                    .copy_from_slice(&self.stash[self.stash_pos..self.stash_pos + n]);
                self.stash_pos += n;
                filled += n;
                continue;
            }
            if let Some(mut c) = self.chunk {
                let n = (c.size - c.done).min((buf.len() - filled) as u64) as usize;
                self.copy_out(c.offset + c.done, &mut buf[filled..filled + n])?;
                c.done += n as u64;
                filled += n;
                self.chunk = (c.done < c.size).then_some(c);
                continue;
            }
            // Start a new chunk only when it surely fits, so chunks are rarely split across
            // calls (a split chunk must survive a pending_bytes read, see `pending`).
            if filled > 0 && ((buf.len() - filled) as u64) < self.max_chunk {
                break;
            }
            // Reading pending_bytes also tells the vendor the previous chunk was consumed.
            let pending = self.read_u64(uapi::MIG_INFO_PENDING_BYTES)?;
            if pending == 0 {
                break;
            }
            let off = self.read_u64(uapi::MIG_INFO_DATA_OFFSET)?;
            let size = self.read_u64(uapi::MIG_INFO_DATA_SIZE)?;
            self.check_window(off, size)?;
            if size == 0 {
                if state == MigState::StopCopy {
                    return Err(self.protocol_err(format!(
                        "in stop-copy pending_bytes is {pending} but the device offers a chunk of 0 bytes"
                    )));
                }
                break;
            }
            self.max_chunk = self.region.size - off;
            self.chunk = Some(Chunk {
                offset: off,
                size,
                done: 0,
            });
        }
        Ok(filled)
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        self.expect_state("write state", &[MigState::Resuming], "RESUMING (_RESUMING)")?;
        self.ensure_maps();
        let mut done = 0usize;
        while done < buf.len() {
            let off = self.read_u64(uapi::MIG_INFO_DATA_OFFSET)?;
            if off < uapi::MIG_INFO_SIZE || off >= self.region.size {
                return Err(self.protocol_err(format!(
                    "data_offset {off:#x} is outside the data section ({:#x}..{:#x})",
                    uapi::MIG_INFO_SIZE,
                    self.region.size
                )));
            }
            // A mapped area bounds the chunk; otherwise the rest of the region does.
            let room = self
                .maps
                .iter()
                .find(|m| off >= m.offset && off < m.offset + m.map.len() as u64)
                .map(|m| m.offset + m.map.len() as u64 - off)
                .unwrap_or(self.region.size - off);
            let n = (buf.len() - done).min(usize::try_from(room).unwrap_or(usize::MAX));
            self.copy_in(off, &buf[done..done + n])?;
            self.device
                .write_width(self.region.index, uapi::MIG_INFO_DATA_SIZE, 8, n as u64)?;
            done += n;
        }
        Ok(done)
    }

    fn pending(&mut self) -> Result<Pending> {
        self.expect_state(
            "read pending bytes",
            &[MigState::PreCopy, MigState::StopCopy],
            "PRE_COPY (_SAVING|_RUNNING) or STOP_COPY (_SAVING)",
        )?;
        // Reading pending_bytes releases the data section to the vendor: move what is left of
        // a split chunk out first.
        if let Some(c) = self.chunk.take() {
            let left = (c.size - c.done) as usize;
            let mut rest = std::mem::take(&mut self.stash);
            rest.drain(..self.stash_pos);
            let at = rest.len();
            rest.resize(at + left, 0);
            self.copy_out(c.offset + c.done, &mut rest[at..])?;
            self.stash = rest;
            self.stash_pos = 0;
        }
        let held = (self.stash.len() - self.stash_pos) as u64;
        let p = self.read_u64(uapi::MIG_INFO_PENDING_BYTES)?;
        Ok(Pending {
            initial_bytes: p.saturating_add(held),
            dirty_bytes: 0,
        })
    }

    fn stop_copy_size(&mut self) -> Result<Option<u64>> {
        // v1 has no estimate of the stop-copy size.
        Ok(None)
    }

    fn reset(&mut self) -> Result<()> {
        self.drop_chunk();
        Ok(self.device.reset()?)
    }
}
