//! The v1 region protocol's own clauses, checked on the migration region's registers
//! directly: invalid `device_state` combinations refused and valid ones read back
//! (`v1-state-bits`), and the `data_offset`/`data_size` window (`v1-data-window`).
//! `v1-pending` is the reference save (see `v2_save.rs`), `v1-resume-loads` the round trip
//! of `v2_resume.rs`.

use super::ctx::Suite;
use super::report::CheckVerdict::{Fail, Pass, Skip};
use crate::device::uapi;
use crate::device::{MigState, RegionInfo};
use crate::migration::v1::state_bits;
use crate::migration::MigrationError;

/// The migration region (type 3 / subtype 1).
pub(super) fn region(s: &Suite<'_>) -> Option<RegionInfo> {
    crate::migration::v1::V1Driver::probe(&s.dev)
}

fn read_u(s: &Suite<'_>, r: &RegionInfo, off: u64, width: usize) -> Result<u64, MigrationError> {
    let mut b = [0u8; 8];
    s.dev.read_region(r.index, off, &mut b[..width])?;
    Ok(u64::from_le_bytes(b))
}

/// `v1-state-bits`.
pub(super) fn state_bits_check(s: &mut Suite<'_>) {
    s.check("v1-state-bits", |s| {
        let Some(r) = region(s) else {
            return Ok((Skip, "no migration region".into()));
        };
        let mut bad = Vec::new();
        for invalid in [6u32, 5, 7] {
            let w = s.dev.write_region(r.index, 0, &invalid.to_le_bytes());
            let back = read_u(s, &r, 0, 4)?;
            match w {
                Ok(()) => bad.push(format!("device_state {invalid:#x} accepted (reads back {back:#x})")),
                Err(_) if back == 1 || back == 6 => {}
                Err(_) => bad.push(format!("device_state {invalid:#x} refused but device_state reads {back:#x}")),
            }
            s.back_to_running()?;
        }
        for st in [MigState::Stop, MigState::PreCopy, MigState::StopCopy, MigState::Resuming, MigState::Running] {
            s.drv.set_state(st)?;
            let back = read_u(s, &r, 0, 4)? as u32;
            if Some(back & 7) != state_bits(st) {
                bad.push(format!("{st}: device_state reads {back:#x}, expected {:#x}", state_bits(st).unwrap_or(0)));
            }
            s.back_to_running()?;
        }
        Ok(if bad.is_empty() {
            (Pass, "SAVING|RESUMING, RESUMING|RUNNING and all bits refused; STOP, SAVING|RUNNING, SAVING, RESUMING, RUNNING read back".into())
        } else {
            (Fail, bad.join("; "))
        })
    });
}

/// `v1-data-window`: in stop-copy, the first chunks' windows lie after the header and
/// inside the region.
pub(super) fn data_window(s: &mut Suite<'_>) {
    s.check("v1-data-window", |s| {
        let Some(r) = region(s) else {
            return Ok((Skip, "no migration region".into()));
        };
        s.drv.set_state(MigState::StopCopy)?;
        let mut seen = Vec::new();
        let mut bad = None;
        for _ in 0..4 {
            let pending = read_u(s, &r, uapi::MIG_INFO_PENDING_BYTES, 8)?;
            if pending == 0 {
                break;
            }
            let off = read_u(s, &r, uapi::MIG_INFO_DATA_OFFSET, 8)?;
            let size = read_u(s, &r, uapi::MIG_INFO_DATA_SIZE, 8)?;
            seen.push(format!("[{off:#x}, +{size:#x}]"));
            let end = off.checked_add(size);
            if off < uapi::MIG_INFO_SIZE || end.is_none_or(|e| e > r.size) {
                bad = Some(format!(
                    "data_offset {off:#x} data_size {size:#x} (pending {pending}) leave the data section (header {} bytes, region {:#x} bytes)",
                    uapi::MIG_INFO_SIZE, r.size
                ));
                break;
            }
        }
        s.back_to_running()?;
        Ok(match bad {
            Some(b) => (Fail, b),
            None if seen.is_empty() => (Skip, "pending_bytes was 0 in stop-copy: no chunk to look at".into()),
            None => (Pass, format!("chunks {} inside region {} ({:#x} bytes)", seen.join(" "), r.index, r.size)),
        })
    });
}
