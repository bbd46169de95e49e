//! The suite's working context: the driver and device, the reference stream, streaming reads
//! with a checksum (never holding a whole state in memory), writes with a chosen
//! segmentation, and the recording of checks.

use super::perturb::Perturb;
use super::report::{clause, Check, CheckVerdict};
use super::Options;
use crate::device::{DeviceHandle, MigFlags, MigState};
use crate::migration::{MigrationDriver, MigrationError, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

/// Read (or write) sizes used in turn: 1-byte, odd, 4 KiB and 1 MiB accesses.
pub(super) const MIXED: &[usize] = &[1, 1, 1, 3, 7, 4096, 4099, 65537, 1 << 20];
/// 1 MiB accesses (QEMU's read size).
pub(super) const MIB: &[usize] = &[1 << 20];
/// Streams up to this size are also written in one write().
pub(super) const WHOLE_MAX: u64 = 64 << 20;

/// A check's result: verdict and what was seen, or an error (recorded as a failure).
pub(super) type Outcome = std::result::Result<(CheckVerdict, String), MigrationError>;

/// How a drain ended.
#[derive(Debug)]
pub(super) enum End {
    /// read() returned 0.
    Eof,
    /// read() failed with ENOMSG (v2's temporary end of stream).
    NoMsg,
    /// The byte or time limit was reached first.
    Limit(String),
    /// read() failed.
    Error(MigrationError),
}

/// A drained stream: its length, checksum, how it ended and (when kept) the bytes.
#[derive(Debug)]
pub(super) struct Drained {
    pub len: u64,
    pub sum: u64,
    pub end: End,
    pub file: Option<File>,
}

impl Drained {
    pub(super) fn complete(&self) -> bool {
        matches!(self.end, End::Eof)
    }
    pub(super) fn describe_end(&self) -> String {
        match &self.end {
            End::Eof => format!("{} bytes then EOF", self.len),
            End::NoMsg => format!("{} bytes then ENOMSG", self.len),
            End::Limit(why) => format!("{} bytes without EOF ({why})", self.len),
            End::Error(e) => format!("{} bytes then an error: {e}", self.len),
        }
    }
}

/// One step of reading.
pub(super) enum Step {
    Data(usize),
    Eof,
    NoMsg,
}

pub(super) struct Suite<'a> {
    pub drv: &'a mut dyn MigrationDriver,
    pub dev: DeviceHandle,
    pub v2: bool,
    pub flags: MigFlags,
    pub opts: &'a Options,
    pub limit: u64,
    pub buf: Vec<u8>,
    pub perturb: Option<Box<dyn Perturb>>,
    /// The reference STOP_COPY stream (kept in a temporary file when small enough).
    pub reference: Option<Drained>,
    /// Whether two saves of an unchanged device give the same bytes.
    pub reproducible: bool,
    pub estimate: Option<u64>,
    pub checks: Vec<Check>,
    pub on_check: &'a mut dyn FnMut(&Check),
}

pub(super) fn file_err(what: &str, source: std::io::Error) -> MigrationError {
    MigrationError::File {
        path: what.into(),
        source,
    }
}

impl Suite<'_> {
    /// Runs and records check `id`; an error becomes a failure, and the device is brought
    /// back to RUNNING after a failed check.
    pub(super) fn check(&mut self, id: &str, f: impl FnOnce(&mut Self) -> Outcome) {
        let start = Instant::now();
        let (verdict, detail) = match f(self) {
            Ok(v) => v,
            Err(e) => (CheckVerdict::Fail, e.to_string()),
        };
        if verdict == CheckVerdict::Fail || !matches!(self.drv.state(), Ok(MigState::Running)) {
            // Best effort: the next check starts from RUNNING; a failure here shows there.
            let _ = self.back_to_running();
        }
        self.push(id, verdict, detail, start);
    }

    pub(super) fn push(&mut self, id: &str, verdict: CheckVerdict, detail: String, start: Instant) {
        let c = Check {
            id: id.into(),
            clause: clause(id).into(),
            verdict,
            detail,
            seconds: start.elapsed().as_secs_f64(),
        };
        (self.on_check)(&c);
        self.checks.push(c);
    }

    /// One read of at most `n` bytes into the suite's buffer. v2 reads go straight to the
    /// data stream so that ENOMSG and 0 can be told apart; v1 reads go through the driver.
    pub(super) fn read_step(&mut self, n: usize) -> Result<Step> {
        let n = n.min(self.buf.len()).max(1);
        if !self.v2 {
            return Ok(match self.drv.read(&mut self.buf[..n])? {
                0 => Step::Eof,
                k => Step::Data(k),
            });
        }
        match self.dev.mig_read(&mut self.buf[..n]) {
            Ok(0) => Ok(Step::Eof),
            Ok(k) => Ok(Step::Data(k)),
            Err(e) if e.errno() == Some(libc::ENOMSG) => Ok(Step::NoMsg),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the open saving stream until EOF, ENOMSG, an error or the limits, with read
    /// sizes taken in turn from `sizes`; checksums everything and keeps it in a temporary
    /// file when `keep` (dropping the file if the stream outgrows the hold limit).
    pub(super) fn drain(&mut self, sizes: &[usize], keep: bool) -> Drained {
        let start = Instant::now();
        let mut h = crate::migration::stream::Hasher::new();
        let mut file = if keep {
            tempfile::tempfile().ok()
        } else {
            None
        };
        let mut len = 0u64;
        let mut i = 0usize;
        let end = loop {
            let want = sizes[i % sizes.len()];
            i += 1;
            match self.read_step(want) {
                Ok(Step::Eof) => break End::Eof,
                Ok(Step::NoMsg) => break End::NoMsg,
                Err(e) => break End::Error(e),
                Ok(Step::Data(k)) => {
                    h.write(&self.buf[..k]);
                    len += k as u64;
                    if let Some(f) = file.as_mut() {
                        if len > self.opts.hold_limit || f.write_all(&self.buf[..k]).is_err() {
                            file = None;
                        }
                    }
                }
            }
            if len > self.limit {
                break End::Limit(format!("read limit {} bytes", self.limit));
            }
            if start.elapsed() > self.opts.time_limit {
                break End::Limit(format!("time limit {:?}", self.opts.time_limit));
            }
        };
        Drained {
            len,
            sum: h.finish(),
            end,
            file,
        }
    }

    /// Saves the current state: RUNNING or STOP -> STOP_COPY, drains with `sizes`, then
    /// returns to RUNNING.
    pub(super) fn save(&mut self, sizes: &[usize], keep: bool) -> Result<Drained> {
        self.drv.set_state(MigState::StopCopy)?;
        let d = self.drain(sizes, keep);
        self.back_to_running()?;
        Ok(d)
    }

    /// Writes `len` bytes of `file` into the device (in RESUMING) with write sizes taken in
    /// turn from `sizes` (`usize::MAX`: the whole stream in one write()).
    pub(super) fn restore(&mut self, file: &mut File, len: u64, sizes: &[usize]) -> Result<()> {
        file.seek(SeekFrom::Start(0))
            .map_err(|e| file_err("temporary stream", e))?;
        if sizes == [usize::MAX] {
            let mut all = vec![0u8; len as usize];
            file.read_exact(&mut all)
                .map_err(|e| file_err("temporary stream", e))?;
            return self.write_all(&all);
        }
        let mut left = len;
        let mut i = 0usize;
        let mut chunk = vec![0u8; 1 << 20];
        while left > 0 {
            let n = (sizes[i % sizes.len()] as u64).min(left).min(1 << 20) as usize;
            i += 1;
            file.read_exact(&mut chunk[..n])
                .map_err(|e| file_err("temporary stream", e))?;
            self.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// One write() of `b` as far as the device allows (a short count is followed by the
    /// rest, as write(2) callers must).
    pub(super) fn write_all(&mut self, b: &[u8]) -> Result<()> {
        let mut off = 0;
        while off < b.len() {
            off += self.drv.write(&b[off..])?;
        }
        Ok(())
    }

    /// The reference stream's file and length, when it was kept.
    pub(super) fn reference_file(&mut self) -> Option<(File, u64)> {
        let r = self.reference.as_ref()?;
        let f = r.file.as_ref()?.try_clone().ok()?;
        Some((f, r.len))
    }

    /// Gets the device back to RUNNING: a plain SET when it works, the driver's recovery
    /// (a reset) otherwise. A device in RESUMING is reset (leaving it with partial data
    /// crashes some drivers, see hw-notes/mtty-migration.md).
    pub(super) fn back_to_running(&mut self) -> Result<()> {
        match self.drv.state() {
            Ok(MigState::Running) => return Ok(()),
            Ok(MigState::Resuming) | Ok(MigState::Error) | Err(_) => {
                if self.drv.reset().is_ok() && matches!(self.drv.state(), Ok(MigState::Running)) {
                    return Ok(());
                }
                // A reset that did not work (a device breaking `reset`): a RESUMING device
                // can still be left with the valid reference stream.
                if matches!(self.drv.state(), Ok(MigState::Resuming)) {
                    if let Some((mut f, len)) = self.reference_file() {
                        if self.restore(&mut f, len, MIB).is_ok()
                            && self.drv.set_state(MigState::Running).is_ok()
                        {
                            return Ok(());
                        }
                    }
                }
            }
            Ok(_) => {}
        }
        if self.drv.set_state(MigState::Running).is_err() {
            self.drv.recover()?;
        }
        Ok(())
    }

    /// Applies perturbation variant `v` (RUNNING); false when there is none.
    pub(super) fn perturb(&mut self, v: u8) -> Result<bool> {
        match self.perturb.as_mut() {
            Some(p) => {
                p.apply(self.dev.as_ref(), v)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
