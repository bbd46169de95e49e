//! The conformance suite: walks the migration contract of `include/uapi/linux/vfio.h` arc by
//! arc on a real (or simulated) device and reports one line per check.
//!
//! What it checks, in order:
//! - the device starts RUNNING;
//! - ERROR and the states the device's flags do not offer are refused, leaving it RUNNING;
//! - a reference save: STOP_COPY reads end with EOF within a bound (a read that never ends is
//!   a failure), and the stop-copy size estimate is compared with what was read;
//! - every single arc the flags allow: reach `from`, request `to`, read the state back; arcs
//!   into STOP_COPY drain the stream to EOF, arcs into the pre-copy states check the precopy
//!   info and drain the initial data to the temporary end of stream;
//! - resuming: the reference stream is accepted; a truncated one and a corrupted one must be
//!   refused when leaving RESUMING;
//! - ERROR (or a refused state) recovers by reset to RUNNING;
//! - the device is left RUNNING.
//!
//! Everything runs through [`MigrationDriver`], so v1 and v2 devices get the same suite (v1
//! states are mapped from the v2 vocabulary by the v1 driver). Saved data is kept in an
//! unnamed temporary file, so memory stays bounded whatever the state size.

use super::{MigrationDriver, MigrationError};
use crate::device::{fsm, MigState};
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CheckVerdict {
    /// The device honoured the contract.
    Pass,
    /// The device broke the contract (or the check could not run because of an error).
    Fail,
    /// Not applicable to this device.
    Skip,
}

impl std::fmt::Display for CheckVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckVerdict::Pass => "PASS",
            CheckVerdict::Fail => "FAIL",
            CheckVerdict::Skip => "SKIP",
        })
    }
}

/// One check's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Check name (`arc RUNNING->STOP`, `stop-copy-eof`, `resume-truncated`, ...).
    pub name: String,
    /// Verdict.
    pub verdict: CheckVerdict,
    /// What was seen.
    pub detail: String,
    /// Wall time of the check, seconds.
    pub seconds: f64,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct ConformanceReport {
    /// Device name.
    pub device: String,
    /// `v1` or `v2`.
    pub protocol: String,
    /// The migration flags driven.
    pub flags: Vec<String>,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Number of passed checks.
    pub passed: usize,
    /// Number of failed checks.
    pub failed: usize,
    /// Number of skipped checks.
    pub skipped: usize,
}

/// Tuning of the suite.
#[derive(Clone, Debug)]
pub struct Options {
    /// Read buffer size.
    pub buffer: usize,
    /// Largest stream accepted before a STOP_COPY read counts as never ending. `None`: twice
    /// the device's stop-copy estimate plus 64 MiB, or 16 GiB without an estimate.
    pub read_limit: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            buffer: 1 << 20,
            read_limit: None,
        }
    }
}

struct Suite<'a> {
    drv: &'a mut dyn MigrationDriver,
    buf: Vec<u8>,
    limit: u64,
    reference: Option<(std::fs::File, u64)>,
    checks: Vec<Check>,
    on_check: &'a mut dyn FnMut(&Check),
}

type Outcome = std::result::Result<(CheckVerdict, String), MigrationError>;

impl Suite<'_> {
    fn check(&mut self, name: impl Into<String>, f: impl FnOnce(&mut Self) -> Outcome) {
        let name = name.into();
        let start = Instant::now();
        let (verdict, detail) = match f(self) {
            Ok(v) => v,
            Err(e) => (CheckVerdict::Fail, e.to_string()),
        };
        let c = Check {
            name,
            verdict,
            detail,
            seconds: start.elapsed().as_secs_f64(),
        };
        (self.on_check)(&c);
        self.checks.push(c);
    }

    /// Reads the stream to EOF (or the limit) into `sink`; returns bytes and whether EOF came.
    fn drain(
        &mut self,
        mut sink: Option<&mut std::fs::File>,
    ) -> Result<(u64, bool), MigrationError> {
        let mut total = 0u64;
        loop {
            let n = self.drv.read(&mut self.buf)?;
            if n == 0 {
                return Ok((total, true));
            }
            total += n as u64;
            if let Some(f) = sink.as_deref_mut() {
                f.write_all(&self.buf[..n])
                    .map_err(|e| file_err("temporary stream", e))?;
            }
            if total > self.limit {
                return Ok((total, false));
            }
        }
    }

    /// Writes the reference stream into a device in RESUMING.
    fn write_reference(&mut self, len: Option<u64>) -> Result<u64, MigrationError> {
        let Some((file, size)) = self.reference.as_mut() else {
            return Err(no_reference());
        };
        let want = len.unwrap_or(*size).min(*size);
        file.seek(SeekFrom::Start(0))
            .map_err(|e| file_err("temporary stream", e))?;
        let mut left = want;
        while left > 0 {
            let n = (left as usize).min(self.buf.len());
            file.read_exact(&mut self.buf[..n])
                .map_err(|e| file_err("temporary stream", e))?;
            let mut off = 0;
            while off < n {
                off += self.drv.write(&self.buf[off..n])?;
            }
            left -= n as u64;
        }
        Ok(want)
    }

    /// Gets the device back to RUNNING between checks: a resume in progress is completed with
    /// the reference stream first, anything else goes through the driver's recovery.
    fn back_to_running(&mut self) -> Result<(), MigrationError> {
        if let Ok(MigState::Resuming) = self.drv.state() {
            if self.reference.is_some() {
                self.write_reference(None)?;
            }
        }
        if self.drv.set_state(MigState::Running).is_err() {
            self.drv.recover()?;
        }
        Ok(())
    }

    fn expect_state(&mut self, want: MigState) -> Outcome {
        let got = self.drv.state()?;
        Ok(if got == want {
            (CheckVerdict::Pass, format!("reads back {got}"))
        } else {
            (
                CheckVerdict::Fail,
                format!("requested {want}, device reports {got}"),
            )
        })
    }
}

/// The reference stream (a temporary file saved by an earlier check) is missing.
fn no_reference() -> MigrationError {
    file_err(
        "reference stream",
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no reference stream was saved",
        ),
    )
}

fn file_err(path: &str, source: std::io::Error) -> MigrationError {
    MigrationError::File {
        path: path.into(),
        source,
    }
}

/// Runs the suite. `on_check` sees each check as it completes (for live output). The device
/// is left RUNNING (by reset if needed).
///
/// # Examples
///
/// A well-behaved simulated device passes; one whose STOP_COPY stream never ends fails the
/// `stop-copy-eof` check:
///
/// ```
/// use vfio_harness::migration::conformance::{self, CheckVerdict, Options};
/// use vfio_harness::migration::driver_for;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dev = vfio_harness::open(&"sim:state=1M,seed=3".parse()?, &Default::default())?;
/// let report = conformance::run(driver_for(dev)?.as_mut(), &Options::default(), &mut |c| {
///     println!("{} {}: {}", c.verdict, c.name, c.detail)
/// });
/// assert_eq!(report.failed, 0);
///
/// let spec = "sim:state=64K,violate=endless-read".parse()?;
/// let dev = vfio_harness::open(&spec, &Default::default())?;
/// let opts = Options { read_limit: Some(1 << 20), ..Default::default() };
/// let report = conformance::run(driver_for(dev)?.as_mut(), &opts, &mut |_| {});
/// assert!(report
///     .checks
///     .iter()
///     .any(|c| c.name == "stop-copy-eof" && c.verdict == CheckVerdict::Fail));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// None are returned: the suite's findings are its report. A check whose device calls fail
/// is recorded as [`CheckVerdict::Fail`] with the error in its
/// [`detail`](Check::detail), and the suite goes on from RUNNING.
pub fn run(
    drv: &mut dyn MigrationDriver,
    opts: &Options,
    on_check: &mut dyn FnMut(&Check),
) -> ConformanceReport {
    let flags = drv.flags();
    let device = drv.device().name().to_string();
    let protocol = drv.protocol().to_string();
    let estimate = drv.stop_copy_size().ok().flatten();
    let limit = opts.read_limit.unwrap_or(match estimate {
        Some(e) => e.saturating_mul(2).saturating_add(64 << 20),
        None => 16 << 30,
    });
    let mut s = Suite {
        drv,
        buf: vec![0u8; opts.buffer.max(4096)],
        limit,
        reference: None,
        checks: Vec::new(),
        on_check,
    };

    s.check("start-running", |s| {
        let st = s.drv.state()?;
        if st == MigState::Running {
            return Ok((CheckVerdict::Pass, "device is RUNNING".into()));
        }
        s.drv.recover()?;
        Ok((
            CheckVerdict::Fail,
            format!("device was in {st} before the suite (recovered)"),
        ))
    });

    s.check("refuse ERROR", |s| match s.drv.set_state(MigState::Error) {
        Ok(()) => Ok((CheckVerdict::Fail, "SET_STATE(ERROR) was accepted".into())),
        Err(e) => {
            let (v, d) = s.expect_state(MigState::Running)?;
            Ok((v, format!("refused ({e}); {d}")))
        }
    });
    for st in MigState::ALL {
        if st == MigState::Error || fsm::state_exists(flags, st) {
            continue;
        }
        s.check(format!("refuse {st}"), |s| match s.drv.set_state(st) {
            Ok(()) => {
                let got = s.drv.state().ok();
                s.back_to_running()?;
                Ok((
                    CheckVerdict::Fail,
                    format!("{st} is not offered by flags {flags} but was accepted (now {got:?})"),
                ))
            }
            Err(_) => {
                let (v, d) = s.expect_state(MigState::Running)?;
                Ok((v, format!("refused (not offered by flags {flags}); {d}")))
            }
        });
    }

    // Reference save: STOP_COPY to EOF into a temporary file.
    s.check("stop-copy-eof", |s| {
        s.drv.set_state(MigState::StopCopy)?;
        let mut f = tempfile::tempfile().map_err(|e| file_err("temporary stream", e))?;
        let start = Instant::now();
        let (n, eof) = s.drain(Some(&mut f))?;
        let secs = start.elapsed().as_secs_f64();
        s.back_to_running()?;
        if !eof {
            return Ok((
                CheckVerdict::Fail,
                format!(
                    "read {n} bytes without reaching EOF (limit {}); the stream never ends",
                    s.limit
                ),
            ));
        }
        s.reference = Some((f, n));
        let est = match estimate {
            Some(e) => format!(", stop-copy estimate {e} bytes"),
            None => ", no stop-copy estimate".into(),
        };
        Ok((
            CheckVerdict::Pass,
            format!("{n} bytes then EOF in {secs:.3}s{est}"),
        ))
    });

    for (from, to) in fsm::arcs(flags) {
        s.check(format!("arc {from}->{to}"), |s| {
            if from != MigState::Running {
                s.drv.set_state(from)?;
            }
            let at = s.drv.state()?;
            if at != from {
                s.back_to_running()?;
                return Ok((CheckVerdict::Fail, format!("could not reach {from} (device reports {at})")));
            }
            if from == MigState::Resuming {
                if s.reference.is_none() {
                    s.back_to_running()?;
                    return Ok((CheckVerdict::Skip, "needs the reference stream, which failed".into()));
                }
                s.write_reference(None)?;
            }
            s.drv.set_state(to)?;
            let (mut v, mut d) = s.expect_state(to)?;
            if v == CheckVerdict::Pass && to == MigState::StopCopy {
                let (n, eof) = s.drain(None)?;
                if eof {
                    d.push_str(&format!("; stream ended with EOF after {n} bytes"));
                } else {
                    v = CheckVerdict::Fail;
                    d.push_str(&format!("; no EOF after {n} bytes"));
                }
            }
            if v == CheckVerdict::Pass && matches!(to, MigState::PreCopy | MigState::PreCopyP2p) && !fsm::is_saving(from) {
                let p = s.drv.pending()?;
                let (n, _) = s.drain(None)?;
                let after = s.drv.pending()?;
                d.push_str(&format!(
                    "; precopy info initial={} dirty={}, read {n} bytes to the temporary end, then initial={}",
                    p.initial_bytes, p.dirty_bytes, after.initial_bytes
                ));
                if after.initial_bytes != 0 {
                    v = CheckVerdict::Fail;
                    d.push_str(" (initial_bytes must reach 0 once the initial data is read)");
                }
            }
            s.back_to_running()?;
            Ok((v, d))
        });
    }

    s.check("resume-valid", |s| {
        if s.reference.is_none() {
            return Ok((
                CheckVerdict::Skip,
                "needs the reference stream, which failed".into(),
            ));
        }
        s.drv.set_state(MigState::Resuming)?;
        let n = s.write_reference(None)?;
        s.drv.set_state(MigState::Running)?;
        let (v, d) = s.expect_state(MigState::Running)?;
        Ok((v, format!("{n} bytes accepted; {d}")))
    });

    let reference_len = s.reference.as_ref().map(|r| r.1).unwrap_or(0);
    for (name, corrupt) in [("resume-truncated", false), ("resume-corrupted", true)] {
        s.check(name, |s| {
            if reference_len < 2 {
                return Ok((CheckVerdict::Skip, "the reference stream is too short to damage".into()));
            }
            s.drv.set_state(MigState::Resuming)?;
            let what = if corrupt { "corrupted" } else { "truncated" };
            let written = if corrupt {
                // Flip the first 64 bytes (headers, magics, versions live there) and write
                // the rest unchanged.
                let mut damaged = tempfile::tempfile().map_err(|e| file_err("temporary stream", e))?;
                let (src, len) = s.reference.as_mut().map(|r| (&mut r.0, r.1)).ok_or_else(no_reference)?;
                src.seek(SeekFrom::Start(0)).map_err(|e| file_err("temporary stream", e))?;
                std::io::copy(src, &mut damaged).map_err(|e| file_err("temporary stream", e))?;
                let head = len.min(64) as usize;
                let mut b = vec![0u8; head];
                damaged.seek(SeekFrom::Start(0)).map_err(|e| file_err("temporary stream", e))?;
                damaged.read_exact(&mut b).map_err(|e| file_err("temporary stream", e))?;
                b.iter_mut().for_each(|x| *x ^= 0xff);
                damaged.seek(SeekFrom::Start(0)).map_err(|e| file_err("temporary stream", e))?;
                damaged.write_all(&b).map_err(|e| file_err("temporary stream", e))?;
                let good = s.reference.replace((damaged, len));
                let r = s.write_reference(None);
                s.reference = good;
                r
            } else {
                s.write_reference(Some(reference_len / 2))
            };
            // Refusing at the first write (the stream header) is the early refusal vfio.h
            // asks vendors for; refusing when RESUMING ends is the latest acceptable point.
            let written = match written {
                Ok(n) => n,
                Err(MigrationError::Device(e)) => {
                    s.drv.recover()?;
                    let (v, d) = s.expect_state(MigState::Running)?;
                    return Ok((v, format!("refused {what} data while writing it ({e}); recovered: {d}")));
                }
                Err(e) => return Err(e),
            };
            match s.drv.set_state(MigState::Running) {
                Ok(()) => Ok((
                    CheckVerdict::Fail,
                    format!("the device accepted {what} data ({written} of {reference_len} bytes) and is RUNNING"),
                )),
                Err(e) => {
                    let at = s.drv.state().map(|x| x.to_string()).unwrap_or_else(|e| format!("unreadable ({e})"));
                    s.drv.recover()?;
                    let (v, d) = s.expect_state(MigState::Running)?;
                    Ok((v, format!("refused {what} data ({e}); device was in {at}; recovered: {d}")))
                }
            }
        });
    }

    s.check("reset-recovers", |s| {
        s.drv.device().reset()?;
        let (v, d) = s.expect_state(MigState::Running)?;
        Ok((v, format!("after VFIO_DEVICE_RESET the device {d}")))
    });

    s.check("end-running", |s| {
        if s.drv.state()? != MigState::Running {
            s.drv.recover()?;
        }
        s.expect_state(MigState::Running)
    });

    let count = |v| s.checks.iter().filter(|c| c.verdict == v).count();
    ConformanceReport {
        device,
        protocol,
        flags: flags.names(),
        passed: count(CheckVerdict::Pass),
        failed: count(CheckVerdict::Fail),
        skipped: count(CheckVerdict::Skip),
        checks: s.checks,
    }
}
