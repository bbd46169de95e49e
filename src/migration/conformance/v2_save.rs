//! Saving sessions: the reference STOP_COPY stream and its permanent end (`stop-copy-eof`,
//! `v1-pending` for the region protocol), read sizes (`read-size`), a new session per save
//! (`new-data-fd`) and the end of a session when the saving group is left (`session-ends`).

use super::ctx::{End, Suite, MIB, MIXED};
use super::fds;
use super::report::CheckVerdict::{self, Fail, Pass, Skip};
use crate::device::MigState;
use crate::migration::MigrationError;

/// The reference save, then a second one to learn whether saves are reproducible.
pub(super) fn reference(s: &mut Suite<'_>, id: &str) {
    s.check(id, |s| {
        s.perturb(0)?;
        s.drv.set_state(MigState::StopCopy)?;
        let d = s.drain(MIB, true);
        let mut detail = d.describe_end();
        let mut v = Pass;
        match &d.end {
            End::Eof => {
                // "read() always returning 0": a second read at the end is 0 again.
                match s.read_step(4096) {
                    Ok(super::ctx::Step::Eof) => detail.push_str("; read() at the end returns 0 again"),
                    Ok(super::ctx::Step::Data(n)) => {
                        v = Fail;
                        detail.push_str(&format!("; after EOF read() returned {n} more bytes"));
                    }
                    Ok(super::ctx::Step::NoMsg) => {
                        v = Fail;
                        detail.push_str("; after EOF read() returned ENOMSG");
                    }
                    Err(e) => {
                        v = Fail;
                        detail.push_str(&format!("; after EOF read() failed: {e}"));
                    }
                }
            }
            End::NoMsg => {
                v = Fail;
                detail.push_str(" (ENOMSG may not be returned in STOP_COPY)");
            }
            End::Limit(_) => {
                v = Fail;
                detail.push_str("; the stream never ends");
            }
            End::Error(_) => v = Fail,
        }
        if s.v2 {
            // `v1-pending` checks the register too.
        } else if d.complete() {
            match v1_pending_register(s) {
                Ok(0) => detail.push_str("; pending_bytes reads 0 at the end"),
                Ok(p) => {
                    v = Fail;
                    detail.push_str(&format!("; pending_bytes still {p} after the end"));
                }
                Err(e) => detail.push_str(&format!("; pending_bytes unreadable ({e})")),
            }
        }
        s.back_to_running()?;
        if v == Pass {
            if d.file.is_none() {
                detail.push_str(&format!(
                    "; not kept (over the hold limit {} bytes): resume checks skip",
                    s.opts.hold_limit
                ));
            }
            let again = s.save(MIB, false)?;
            s.reproducible = again.complete() && again.sum == d.sum && again.len == d.len;
            if !s.reproducible {
                detail.push_str(&format!(
                    "; a second save of the unchanged device gave {} (not byte-identical: later checks compare lengths and restored states only)",
                    again.describe_end()
                ));
            }
            s.reference = Some(d);
        }
        Ok((v, detail))
    });
}

fn v1_pending_register(s: &mut Suite<'_>) -> Result<u64, MigrationError> {
    let r = super::v1::region(s).ok_or_else(|| MigrationError::Protocol {
        device: s.dev.name().into(),
        what: "no migration region".into(),
    })?;
    let mut b = [0u8; 8];
    s.dev
        .read_region(r.index, crate::device::uapi::MIG_INFO_PENDING_BYTES, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Compares a save with the reference: same bytes (or the same length when saves are not
/// reproducible).
fn same_as_reference(s: &Suite<'_>, len: u64, sum: u64) -> Option<(CheckVerdict, String)> {
    let r = s.reference.as_ref()?;
    Some(if len == r.len && (sum == r.sum || !s.reproducible) {
        (Pass, format!("{len} bytes, same as the reference"))
    } else {
        (
            Fail,
            format!(
                "{len} bytes (checksum {sum:016x}), the reference has {} bytes (checksum {:016x})",
                r.len, r.sum
            ),
        )
    })
}

/// `read-size`: the stream read with 1-byte, odd, 4 KiB and 1 MiB reads in turn equals the
/// reference read with 1 MiB reads.
pub(super) fn read_size(s: &mut Suite<'_>) {
    s.check("read-size", |s| {
        if s.reference.is_none() {
            return Ok((Skip, "needs the reference stream, which failed".into()));
        }
        s.perturb(0)?;
        let d = s.save(MIXED, false)?;
        if !d.complete() {
            return Ok((
                Fail,
                format!("reads of {MIXED:?} bytes in turn: {}", d.describe_end()),
            ));
        }
        let (v, what) = same_as_reference(s, d.len, d.sum).unwrap_or((Skip, String::new()));
        Ok((v, format!("reads of {MIXED:?} bytes in turn: {what}")))
    });
}

/// `new-data-fd`: a second save after an abandoned one gets a fresh session with a complete
/// stream; on kernel devices also a data_fd that is not the previous session's file.
pub(super) fn new_data_fd(s: &mut Suite<'_>) {
    s.check("new-data-fd", |s| {
        if s.reference.is_none() {
            return Ok((Skip, "needs the reference stream, which failed".into()));
        }
        s.perturb(0)?;
        // An abandoned session: part of the stream read, then STOP.
        s.drv.set_state(MigState::StopCopy)?;
        let half = (s.reference.as_ref().map(|r| r.len).unwrap_or(0) / 2).max(1);
        let mut got = 0u64;
        while got < half {
            // At least 4 KiB per read: refusing short reads is `read-size`'s business.
            match s.read_step(((half - got) as usize).max(4096))? {
                super::ctx::Step::Data(n) => got += n as u64,
                _ => break,
            }
        }
        s.drv.set_state(MigState::Stop)?;
        let d = s.save(MIB, false)?;
        if !d.complete() {
            return Ok((
                Fail,
                format!(
                    "after a save abandoned at byte {got}, the next save gave {}",
                    d.describe_end()
                ),
            ));
        }
        let (mut v, mut detail) =
            same_as_reference(s, d.len, d.sum).unwrap_or((Skip, String::new()));
        detail = format!("after a save abandoned at byte {got}, the next save: {detail}");
        if v == Pass {
            match fds::KernelFds::of(&s.dev) {
                Some(k) => match k.fresh_fd_check(
                    s.v2_flags_precopy(),
                    s.reference.as_ref().map(|r| r.len).unwrap_or(0),
                    s.limit,
                ) {
                    Ok((fv, fd)) => {
                        v = fv;
                        detail.push_str(&format!("; {fd}"));
                    }
                    Err(e) => {
                        v = Fail;
                        detail.push_str(&format!("; data_fd check: {e}"));
                    }
                },
                None => detail.push_str("; data_fd identity not checked (not a kernel device)"),
            }
        }
        Ok((v, detail))
    });
}

/// `session-ends`: after STOP_COPY -> STOP the old session yields no further data.
pub(super) fn session_ends(s: &mut Suite<'_>) {
    s.check("session-ends", |s| {
        if s.reference.as_ref().is_none_or(|r| r.len < 2) {
            return Ok((Skip, "needs a reference stream of 2 bytes or more".into()));
        }
        s.perturb(0)?;
        if let Some(k) = fds::KernelFds::of(&s.dev) {
            let r = k.session_end_check();
            s.back_to_running()?;
            return r;
        }
        s.drv.set_state(MigState::StopCopy)?;
        // One byte, so that the session has data left; a device refusing 1-byte reads
        // (`read-size`'s business) gets a 4 KiB read instead.
        let first = match s.read_step(1) {
            Ok(st) => st,
            Err(_) => s.read_step(4096)?,
        };
        s.drv.set_state(MigState::Stop)?;
        let after = s.read_step(4096);
        s.back_to_running()?;
        let read1 = matches!(first, super::ctx::Step::Data(_));
        Ok(match after {
            Ok(super::ctx::Step::Data(n)) => (
                Fail,
                format!("after STOP_COPY -> STOP the old session still returned {n} bytes"),
            ),
            Ok(_) => (
                Pass,
                format!("read 1 byte ({read1}), then STOP: the old session returns 0"),
            ),
            Err(e) => (
                Pass,
                format!("read 1 byte ({read1}), then STOP: the old session is closed ({e})"),
            ),
        })
    });
}

impl Suite<'_> {
    fn v2_flags_precopy(&self) -> bool {
        self.flags.has(crate::device::MigFlags::PRE_COPY)
    }
}
