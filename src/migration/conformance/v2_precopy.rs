//! Pre-copy: `VFIO_MIG_GET_PRECOPY_INFO` only in the PRE_COPY states
//! (`precopy-info-state`), initial_bytes decreasing to 0 as data is read
//! (`precopy-initial`), info and read() agreeing on the temporary end of stream
//! (`precopy-info-agrees`), and a stream taken through pre-copy restoring the same state as
//! a direct one (`precopy-path`).

use super::ctx::{Step, Suite, MIB};
use super::report::CheckVerdict::{Fail, Pass, Skip, Warn};
use crate::device::{MigFlags, MigState};
use crate::migration::MigrationError;
use std::time::Instant;

const NO_PRECOPY: &str = "the device does not offer VFIO_MIGRATION_PRE_COPY";

/// PRECOPY_INFO in `st`, reached from RUNNING: must fail with EINVAL.
fn info_refused(s: &mut Suite<'_>, st: MigState) -> Result<Option<String>, MigrationError> {
    s.drv.set_state(st)?;
    let r = s.dev.precopy_info();
    s.back_to_running()?;
    Ok(match r {
        Ok(p) => Some(format!(
            "{st}: answered (initial {}, dirty {}) instead of EINVAL",
            p.initial_bytes, p.dirty_bytes
        )),
        Err(e) if e.errno() == Some(libc::EINVAL) => None,
        // The resuming fd is not a pre-copy fd: drivers give it no ioctl at all (mtty).
        Err(e) if st == MigState::Resuming && e.errno() == Some(libc::ENOTTY) => None,
        Err(e) => Some(format!("{st}: refused, but not with EINVAL ({e})")),
    })
}

/// `precopy-info-state`.
pub(super) fn info_state(s: &mut Suite<'_>) {
    s.check("precopy-info-state", |s| {
        if !s.flags.has(MigFlags::PRE_COPY) {
            return Ok((Skip, NO_PRECOPY.into()));
        }
        let mut bad = Vec::new();
        let mut other_errno = Vec::new();
        // In STOP_COPY through PRE_COPY (the same fd) and fresh from STOP, and in RESUMING.
        s.drv.set_state(MigState::PreCopy)?;
        let ok_in_precopy = s.dev.precopy_info();
        s.drv.set_state(MigState::StopCopy)?;
        match s.dev.precopy_info() {
            Ok(p) => bad.push(format!(
                "STOP_COPY (after PRE_COPY): answered (initial {}, dirty {})",
                p.initial_bytes, p.dirty_bytes
            )),
            Err(e) if e.errno() == Some(libc::EINVAL) => {}
            Err(e) => other_errno.push(format!("STOP_COPY: {e}")),
        }
        s.back_to_running()?;
        for st in [MigState::StopCopy, MigState::Resuming] {
            if let Some(why) = info_refused(s, st)? {
                if why.contains("not with EINVAL") {
                    other_errno.push(why)
                } else {
                    bad.push(why)
                }
            }
        }
        if let Err(e) = ok_in_precopy {
            bad.push(format!("PRE_COPY: refused ({e})"));
        }
        Ok(if !bad.is_empty() {
            (Fail, bad.join("; "))
        } else if !other_errno.is_empty() {
            (
                Warn,
                format!(
                    "refused outside PRE_COPY, but the uAPI says EINVAL: {}",
                    other_errno.join("; ")
                ),
            )
        } else {
            (
                Pass,
                "answered in PRE_COPY; EINVAL in STOP_COPY (both ways in); refused in RESUMING"
                    .into(),
            )
        })
    });
}

/// `precopy-initial` and `precopy-info-agrees`, from one PRE_COPY session.
pub(super) fn initial_and_agreement(s: &mut Suite<'_>) {
    let start = Instant::now();
    if !s.flags.has(MigFlags::PRE_COPY) {
        s.push("precopy-initial", Skip, NO_PRECOPY.into(), start);
        s.push("precopy-info-agrees", Skip, NO_PRECOPY.into(), start);
        return;
    }
    let r = session(s);
    let back = s.back_to_running();
    match r.and_then(|p| back.map(|()| p)) {
        Ok(((v1, d1), (v2, d2))) => {
            s.push("precopy-initial", v1, d1, start);
            s.push("precopy-info-agrees", v2, d2, start);
        }
        Err(e) => {
            s.push("precopy-initial", Fail, e.to_string(), start);
            s.push("precopy-info-agrees", Fail, e.to_string(), start);
        }
    }
}

type Pair = (
    (super::report::CheckVerdict, String),
    (super::report::CheckVerdict, String),
);

fn session(s: &mut Suite<'_>) -> Result<Pair, MigrationError> {
    s.perturb(0)?;
    s.drv.set_state(MigState::PreCopy)?;
    let first = s.dev.precopy_info()?;
    let step = ((first.initial_bytes / 16) as usize).clamp(4096, 1 << 20);
    let started = Instant::now();
    let mut last_initial = first.initial_bytes;
    let mut total = 0u64;
    let mut not_decreasing = None;
    let mut rounds = 0u32;
    let agree = loop {
        let info = s.dev.precopy_info()?;
        if info.initial_bytes > last_initial && not_decreasing.is_none() {
            not_decreasing = Some(format!(
                "initial_bytes grew from {last_initial} to {} after {total} bytes were read",
                info.initial_bytes
            ));
        }
        last_initial = info.initial_bytes;
        let pending = info.initial_bytes + info.dirty_bytes;
        let r = s.read_step(step)?;
        rounds += 1;
        match r {
            Step::Data(n) => {
                total += n as u64;
                if pending == 0 {
                    break (Fail, format!(
                        "precopy info said 0/0 (temporary end of stream) but read() returned {n} bytes (after {total} bytes)"
                    ));
                }
            }
            Step::NoMsg | Step::Eof => {
                let how = if matches!(r, Step::NoMsg) {
                    "ENOMSG"
                } else {
                    "0"
                };
                break if pending != 0 {
                    (Fail, format!(
                        "read() returned {how} while precopy info reported initial {} dirty {} (after {total} bytes)",
                        info.initial_bytes, info.dirty_bytes
                    ))
                } else if how == "0" {
                    (Warn, format!(
                        "at the temporary end of stream (info 0/0 after {total} bytes) read() returned 0; the uAPI says the driver \"should return ENOMSG\" (0 is the permanent end of stream in STOP_COPY)"
                    ))
                } else {
                    (Pass, format!("info 0/0 and read() ENOMSG at the temporary end of stream after {total} bytes"))
                };
            }
        }
        if total > s.limit || started.elapsed() > s.opts.time_limit || rounds > 100_000 {
            break (Warn, format!(
                "no temporary end of stream within the limits ({total} bytes read, info now initial {} dirty {})",
                info.initial_bytes, info.dirty_bytes
            ));
        }
    };
    let initial = if first.initial_bytes == 0 {
        (Warn, format!("initial_bytes was 0 on entering PRE_COPY (the uAPI says it \"should have a non-zero initial value\"); {total} bytes read"))
    } else if let Some(why) = not_decreasing {
        (Fail, why)
    } else if last_initial != 0 {
        (Fail, format!("initial_bytes is still {last_initial} after {total} bytes were read (started at {})", first.initial_bytes))
    } else {
        (
            Pass,
            format!(
                "initial_bytes {} decreased to 0 as {total} bytes were read in {step}-byte reads",
                first.initial_bytes
            ),
        )
    };
    Ok((initial, agree))
}

/// `precopy-path`: PRE_COPY (to the temporary end) then STOP_COPY (to EOF) gives a stream
/// that restores the state a direct STOP_COPY stream describes.
pub(super) fn path(s: &mut Suite<'_>) {
    s.check("precopy-path", |s| {
        if !s.flags.has(MigFlags::PRE_COPY) {
            return Ok((Skip, NO_PRECOPY.into()));
        }
        if !s.reproducible || s.reference.as_ref().is_none_or(|r| r.file.is_none()) {
            return Ok((Skip, "needs a kept, reproducible reference stream".into()));
        }
        s.perturb(0)?;
        let direct = s.save(MIB, false)?;
        s.drv.set_state(MigState::PreCopy)?;
        let pre = s.drain(MIB, true);
        if !matches!(pre.end, super::ctx::End::NoMsg | super::ctx::End::Eof) {
            return Ok((Fail, format!("pre-copy part: {}", pre.describe_end())));
        }
        // Continue into the same file: drain writes a new file, so chain them.
        s.drv.set_state(MigState::StopCopy)?;
        let stop = s.drain(MIB, true);
        s.back_to_running()?;
        if !stop.complete() {
            return Ok((Fail, format!("stop-copy part: {}", stop.describe_end())));
        }
        let (Some(mut a), Some(mut b)) = (pre.file, stop.file) else {
            return Ok((Skip, "the stream outgrew the hold limit".into()));
        };
        use std::io::{Seek, SeekFrom};
        let mut joined = tempfile::tempfile().map_err(|e| super::ctx::file_err("temporary stream", e))?;
        for f in [&mut a, &mut b] {
            f.seek(SeekFrom::Start(0)).map_err(|e| super::ctx::file_err("temporary stream", e))?;
            std::io::copy(f, &mut joined).map_err(|e| super::ctx::file_err("temporary stream", e))?;
        }
        let len = pre.len + stop.len;
        let differs = s.perturb(1)?;
        s.drv.set_state(MigState::Resuming)?;
        if let Err(e) = s.restore(&mut joined, len, MIB) {
            return Ok((Fail, format!("the pre-copy stream ({} + {} bytes) was refused at write(): {e}", pre.len, stop.len)));
        }
        if let Err(e) = s.drv.set_state(MigState::Stop) {
            return Ok((Fail, format!("the pre-copy stream ({} + {} bytes) was refused when leaving RESUMING: {e}", pre.len, stop.len)));
        }
        let after = s.save(MIB, false)?;
        let seen = format!(
            "pre-copy {} + stop-copy {} bytes restored{}",
            pre.len,
            stop.len,
            if differs { " over a perturbed device" } else { " (no perturbation: a no-op load would pass)" }
        );
        Ok(if after.complete() && after.sum == direct.sum && after.len == direct.len {
            (Pass, format!("{seen}; saved again: same bytes as a direct STOP_COPY save ({} bytes)", direct.len))
        } else {
            (Fail, format!("{seen}; saved again: {} bytes, a direct save has {} bytes (checksums differ)", after.len, direct.len))
        })
    });
}
