//! The v1 migration region (`struct vfio_device_migration_info` and its data section):
//! `device_state`, `pending_bytes`, `data_offset`, `data_size`.

use super::stream::Produced;
use super::{SimDevice, Violation, MIGRATION_V1, V1_DATA_OFFSET};
use crate::device::uapi;
use crate::device::{MigState, Result};

/// Offset of the reserved 32-bit word after `device_state` in the v1 region header.
const RESERVED: u64 = uapi::MIG_INFO_DEVICE_STATE + 4;

/// v1 chunk bookkeeping: the chunk prepared in the data section by a `data_offset` read.
#[derive(Debug, Default)]
pub(super) struct V1Chunk {
    len: u64,
    /// Prepared and not yet acknowledged by a `pending_bytes` read.
    fresh: bool,
}

/// The v1 `device_state` bits of a state.
fn v1_bits(s: MigState) -> u32 {
    match s {
        MigState::Stop => 0,
        MigState::Running | MigState::RunningP2p => uapi::DEVICE_STATE_V1_RUNNING,
        MigState::PreCopy | MigState::PreCopyP2p => {
            uapi::DEVICE_STATE_V1_SAVING | uapi::DEVICE_STATE_V1_RUNNING
        }
        MigState::StopCopy => uapi::DEVICE_STATE_V1_SAVING,
        MigState::Resuming => uapi::DEVICE_STATE_V1_RESUMING,
        MigState::Error => uapi::DEVICE_STATE_V1_ERROR,
    }
}

/// The state v1 `device_state` bits stand for; `None` for the invalid combinations.
fn v1_state(bits: u32) -> Option<MigState> {
    match bits {
        0 => Some(MigState::Stop),
        uapi::DEVICE_STATE_V1_RUNNING => Some(MigState::Running),
        3 => Some(MigState::PreCopy),
        uapi::DEVICE_STATE_V1_SAVING => Some(MigState::StopCopy),
        uapi::DEVICE_STATE_V1_RESUMING => Some(MigState::Resuming),
        _ => None,
    }
}

impl SimDevice {
    /// What `data_offset` reads: the data section, or (violation `v1-data-window`) the end of
    /// the region.
    fn v1_data_offset(&self) -> u64 {
        if self.v1_violates(Violation::V1DataWindow) {
            V1_DATA_OFFSET + self.params.v1_data
        } else {
            V1_DATA_OFFSET
        }
    }

    /// A read of the migration region: a header field (whole, at its offset) or the data
    /// section.
    pub(super) fn v1_read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(data) = &self.v1_data else {
            return Err(self.region_err(MIGRATION_V1, "read", offset, buf.len(), libc::EINVAL, ""));
        };
        if offset >= V1_DATA_OFFSET {
            self.read_delay();
            data.read((offset - V1_DATA_OFFSET) as usize, buf);
            return Ok(());
        }
        let einval = |hint: &str| {
            self.region_err(MIGRATION_V1, "read", offset, buf.len(), libc::EINVAL, hint)
        };
        let mut g = self.lock();
        let saving = matches!(g.state, MigState::PreCopy | MigState::StopCopy);
        let value: u64 = match (offset, buf.len()) {
            (uapi::MIG_INFO_DEVICE_STATE, 4) => v1_bits(g.state) as u64,
            (RESERVED, 4) => 0,
            (uapi::MIG_INFO_PENDING_BYTES, 8) => {
                if !saving {
                    0
                } else {
                    let now = self.now_ns();
                    g.v1.fresh = false;
                    let stopped = g.state == MigState::StopCopy;
                    let s = g.save.as_mut().ok_or_else(|| einval("no save stream"))?;
                    s.accrue(now);
                    let left = if stopped {
                        s.remaining_to_end()
                    } else {
                        let (i, d) = s.precopy_info();
                        i + d
                    };
                    // violation v1-pending: never drops below 1 (the stream never ends)
                    if self.v1_violates(Violation::V1Pending) {
                        left.max(1)
                    } else {
                        left
                    }
                }
            }
            (uapi::MIG_INFO_DATA_OFFSET, 8) => {
                if g.state == MigState::Resuming {
                    self.v1_data_offset()
                } else if saving {
                    if !g.v1.fresh {
                        let n = self.limit(data.len().min(self.params.v1_data as usize));
                        let now = self.now_ns();
                        let inner = &mut *g;
                        let s = inner
                            .save
                            .as_mut()
                            .ok_or_else(|| einval("no save stream"))?;
                        let chunk = &mut inner.v1_scratch;
                        chunk.resize(n, 0);
                        let len = match s.produce(&mut chunk[..n], now) {
                            Produced::Bytes(k) => k,
                            Produced::NothingPending | Produced::End => 0,
                        };
                        data.write(0, &chunk[..len]);
                        g.v1 = V1Chunk {
                            len: len as u64,
                            fresh: true,
                        };
                    }
                    self.v1_data_offset()
                } else {
                    return Err(einval(
                        "data_offset is only valid while _SAVING or _RESUMING",
                    ));
                }
            }
            (uapi::MIG_INFO_DATA_SIZE, 8) => {
                if saving {
                    if self.params.violate == Some(Violation::OversizedChunk) && g.v1.len > 0 {
                        self.params.v1_data + 4096
                    } else {
                        g.v1.len
                    }
                } else if g.state == MigState::Resuming {
                    0
                } else {
                    return Err(einval("data_size is only valid while _SAVING or _RESUMING"));
                }
            }
            _ => {
                return Err(einval(
                    "access vfio_device_migration_info fields whole, at their offsets",
                ))
            }
        };
        buf.copy_from_slice(&value.to_le_bytes()[..buf.len()]);
        Ok(())
    }

    /// A write to the migration region: `device_state`, `data_size` or the data section.
    pub(super) fn v1_write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let Some(data) = &self.v1_data else {
            return Err(self.region_err(
                MIGRATION_V1,
                "write",
                offset,
                buf.len(),
                libc::EINVAL,
                "",
            ));
        };
        if offset >= V1_DATA_OFFSET {
            data.write((offset - V1_DATA_OFFSET) as usize, buf);
            return Ok(());
        }
        let fail = |errno: i32, hint: &str| {
            self.region_err(MIGRATION_V1, "write", offset, buf.len(), errno, hint)
        };
        let mut le = [0u8; 8];
        match (offset, buf.len()) {
            (uapi::MIG_INFO_DEVICE_STATE, 4) => {
                le[..4].copy_from_slice(buf);
                let bits = u64::from_le_bytes(le) as u32;
                let mut g = self.lock();
                if g.state == MigState::Error {
                    return Err(fail(
                        libc::EINVAL,
                        "the device is in error (_SAVING|_RESUMING): reset it",
                    ));
                }
                if bits == uapi::DEVICE_STATE_V1_ERROR && self.v1_violates(Violation::V1StateBits) {
                    return Ok(()); // violation v1-state-bits: accepted, ignored
                }
                let Some(to) = v1_state(bits) else {
                    return Err(fail(
                        libc::EINVAL,
                        &format!("device_state {bits:#x} is not a valid v1 state"),
                    ));
                };
                if g.state == MigState::StopCopy && to == MigState::PreCopy {
                    return Err(fail(
                        libc::EINVAL,
                        "_SAVING -> _SAVING|_RUNNING is not a valid transition",
                    ));
                }
                if to == g.state {
                    return Ok(());
                }
                self.arc(&mut g, to)
                    .map_err(|(errno, why)| fail(errno, &why))
            }
            (uapi::MIG_INFO_DATA_SIZE, 8) => {
                le.copy_from_slice(buf);
                let n = u64::from_le_bytes(le);
                let mut g = self.lock();
                if g.state != MigState::Resuming {
                    return Err(fail(
                        libc::EINVAL,
                        "data_size can only be written while _RESUMING",
                    ));
                }
                if n > self.params.v1_data {
                    return Err(fail(
                        libc::EINVAL,
                        "data_size is larger than the data section",
                    ));
                }
                let inner = &mut *g;
                let r = inner
                    .resume
                    .as_mut()
                    .ok_or_else(|| fail(libc::EINVAL, "no resume stream"))?;
                let chunk = &mut inner.v1_scratch;
                let n = n as usize;
                chunk.resize(n, 0);
                data.read(0, &mut chunk[..n]);
                r.consume(&chunk[..n]);
                Ok(())
            }
            (0..=31, _) => Err(fail(
                libc::EINVAL,
                "only device_state and data_size are writable, as whole fields",
            )),
            _ => Err(fail(
                libc::EINVAL,
                "the gap before the data section is not accessible",
            )),
        }
    }
}
