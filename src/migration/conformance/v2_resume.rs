//! Resuming: valid data is really loaded (`resume-loads`, `v1-resume-loads`: the state saved
//! after a restore reproduces the restored state, over a device first perturbed to another
//! state), write() segmentation does not matter (`write-size`), and incomplete, corrupted or
//! foreign data is refused (`resume-refuses`).

use super::ctx::{file_err, Suite, MIB, MIXED, WHOLE_MAX};
use super::report::CheckVerdict::{self, Fail, Pass, Skip, Warn};
use crate::device::MigState;
use crate::migration::MigrationError;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

/// Restores the reference with `sizes` over the perturbed state, leaves RESUMING for STOP,
/// saves again and compares with the reference and with the perturbed state.
fn round_trip(
    s: &mut Suite<'_>,
    sizes: &[usize],
    what: &str,
) -> Result<(CheckVerdict, String), MigrationError> {
    let Some((mut f, len)) = s.reference_file() else {
        return Ok((
            Skip,
            "needs the reference stream kept (it failed or outgrew the hold limit)".into(),
        ));
    };
    let ref_sum = s.reference.as_ref().map(|r| r.sum).unwrap_or(0);
    let perturbed = s.perturb(1)?;
    let q = if perturbed {
        Some(s.save(MIB, false)?)
    } else {
        None
    };
    let differs = q.as_ref().is_some_and(|q| q.complete() && q.sum != ref_sum);
    s.drv.set_state(MigState::Resuming)?;
    if let Err(e) = s.restore(&mut f, len, sizes) {
        return Ok((
            Fail,
            format!("{what}: the valid reference stream ({len} bytes) was refused at write(): {e}"),
        ));
    }
    if let Err(e) = s.drv.set_state(MigState::Stop) {
        return Ok((Fail, format!("{what}: the valid reference stream ({len} bytes) was refused on RESUMING -> STOP: {e}")));
    }
    s.drv.set_state(MigState::StopCopy)?;
    let after = s.drain(MIB, false);
    s.back_to_running()?;
    if !after.complete() {
        return Ok((
            Fail,
            format!(
                "{what}: saving after the restore gave {}",
                after.describe_end()
            ),
        ));
    }
    let same = after.len == len && after.sum == ref_sum;
    let seen = format!(
        "{what}: {len} bytes restored, saved again {} bytes",
        after.len
    );
    Ok(if !s.reproducible {
        (Warn, format!("{seen}; saves are not byte-reproducible on this device, so the restored state cannot be compared"))
    } else if same && differs {
        (
            Pass,
            format!("{seen}: the restored state, not the perturbed one"),
        )
    } else if same {
        (Warn, format!("{seen}: same as the reference, but the device could not be perturbed to another state first ({}), so a restore that loads nothing would pass too; pass --perturb REGION:OFFSET:HEXBYTES",
            if perturbed { "the perturbation did not change the saved state" } else { "no perturbation for this device" }))
    } else if q
        .as_ref()
        .is_some_and(|q| q.sum == after.sum && q.len == after.len)
    {
        (
            Fail,
            format!("{seen}: still the perturbed state; the restored data was not loaded"),
        )
    } else {
        (
            Fail,
            format!("{seen}: neither the restored state nor the previous one (checksums differ)"),
        )
    })
}

/// `resume-loads` (v2) or `v1-resume-loads`: the whole stream in one write (1 MiB writes
/// above 64 MiB).
pub(super) fn loads(s: &mut Suite<'_>, id: &str) {
    s.check(id, |s| {
        let big = s.reference.as_ref().is_some_and(|r| r.len > WHOLE_MAX);
        let sizes: &[usize] = if big { MIB } else { &[usize::MAX] };
        round_trip(s, sizes, if big { "1 MiB writes" } else { "one write()" })
    });
}

/// `write-size`: 1-byte, odd, 4 KiB and 1 MiB writes in turn.
pub(super) fn write_size(s: &mut Suite<'_>) {
    s.check("write-size", |s| {
        round_trip(s, MIXED, &format!("writes of {MIXED:?} bytes in turn"))
    });
}

/// xorshift bytes (a foreign stream of the right length).
fn garbage(seed: &mut u64, out: &mut [u8]) {
    for b in out.iter_mut() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = *seed as u8;
    }
}

enum Damage {
    Truncated,
    Corrupted,
    Foreign,
}

/// Writes damaged data; Ok(None) when the device took it all, Ok(Some(e)) when a write was
/// refused.
fn write_damaged(
    s: &mut Suite<'_>,
    how: &Damage,
    f: &mut File,
    len: u64,
) -> Result<Option<MigrationError>, MigrationError> {
    let r = match how {
        Damage::Truncated => s.restore(f, len / 2, MIB),
        Damage::Corrupted => {
            let mut d = tempfile::tempfile().map_err(|e| file_err("temporary stream", e))?;
            f.seek(SeekFrom::Start(0))
                .map_err(|e| file_err("temporary stream", e))?;
            std::io::copy(f, &mut d).map_err(|e| file_err("temporary stream", e))?;
            let mut head = vec![0u8; len.min(64) as usize];
            d.seek(SeekFrom::Start(0))
                .map_err(|e| file_err("temporary stream", e))?;
            d.read_exact(&mut head)
                .map_err(|e| file_err("temporary stream", e))?;
            head.iter_mut().for_each(|x| *x ^= 0xff);
            d.seek(SeekFrom::Start(0))
                .map_err(|e| file_err("temporary stream", e))?;
            d.write_all(&head)
                .map_err(|e| file_err("temporary stream", e))?;
            s.restore(&mut d, len, MIB)
        }
        Damage::Foreign => {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut left = len;
            let mut chunk = vec![0u8; 1 << 20];
            let mut r = Ok(());
            while left > 0 && r.is_ok() {
                let n = left.min(chunk.len() as u64) as usize;
                garbage(&mut seed, &mut chunk[..n]);
                r = s.write_all(&chunk[..n]);
                left -= n as u64;
            }
            r
        }
    };
    match r {
        Ok(()) => Ok(None),
        Err(e @ MigrationError::Device(_)) | Err(e @ MigrationError::Protocol { .. }) => {
            Ok(Some(e))
        }
        Err(e) => Err(e),
    }
}

/// `resume-refuses`: a truncated stream (half), a corrupted one (first 64 bytes flipped)
/// and a foreign one (random bytes of the same length) are each refused.
pub(super) fn refuses(s: &mut Suite<'_>) {
    s.check("resume-refuses", |s| {
        let Some((mut f, len)) = s.reference_file() else {
            return Ok((Skip, "needs the reference stream kept (it failed or outgrew the hold limit)".into()));
        };
        if len < 2 {
            return Ok((Skip, "the reference stream is too short to damage".into()));
        }
        let mut seen = Vec::new();
        let mut bad = Vec::new();
        for (name, how) in [("truncated", Damage::Truncated), ("corrupted", Damage::Corrupted), ("foreign", Damage::Foreign)] {
            s.drv.set_state(MigState::Resuming)?;
            match write_damaged(s, &how, &mut f, len)? {
                Some(_) => seen.push(format!("{name}: refused at write()")),
                None => match s.drv.set_state(MigState::Running) {
                    Ok(()) => bad.push(format!("{name} data accepted (the device is RUNNING with it)")),
                    Err(_) => {
                        let at = s.drv.state().map(|x| x.to_string()).unwrap_or_else(|e| format!("unreadable ({e})"));
                        let on_path = ["RESUMING", "STOP", "ERROR"].contains(&at.as_str());
                        if on_path {
                            seen.push(format!("{name}: refused leaving RESUMING (then {at})"));
                        } else {
                            bad.push(format!("{name}: refused leaving RESUMING but the device is in {at}, off the RESUMING -> RUNNING path"));
                        }
                    }
                },
            }
            s.back_to_running()?;
        }
        Ok(if bad.is_empty() {
            (Pass, seen.join("; "))
        } else {
            (Fail, format!("{}; {}", bad.join("; "), seen.join("; ")))
        })
    });
}
