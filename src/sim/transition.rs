//! Migration state transitions shared by both protocols: one arc at a time, with its effect
//! on the save and resume streams, fault injection (`fail-at`) and the `chunk` limit.

use super::content::{self, Content};
use super::gen::Gen;
use super::stream::{ResumeStream, SaveStream};
use super::{FailMode, Inner, SimDevice, V1Chunk, Violation};
use crate::device::{DeviceError, MigState};
use std::io;

/// A migration error as the kernel reports it: the operation, the state asked for, an errno
/// and the simulated device's reason (`detail`).
pub(super) fn mig_err(
    dev: &str,
    op: &'static str,
    state: Option<MigState>,
    errno: i32,
    detail: String,
) -> DeviceError {
    DeviceError::Migration {
        device: dev.to_string(),
        op,
        state,
        source: io::Error::from_raw_os_error(errno),
        detail: (!detail.is_empty()).then_some(detail),
    }
}

/// Whether a data stream is open in `s`.
fn streaming(s: MigState) -> bool {
    matches!(
        s,
        MigState::PreCopy | MigState::PreCopyP2p | MigState::StopCopy | MigState::Resuming
    )
}

impl SimDevice {
    /// One arc `from -> to`, with the side effects on the data streams.
    pub(super) fn arc(
        &self,
        g: &mut Inner,
        to: MigState,
    ) -> std::result::Result<(), (i32, String)> {
        let from = g.state;
        if self.params.fail_at == Some(to) && g.fails_left != Some(0) {
            if let Some(n) = g.fails_left.as_mut() {
                *n -= 1;
            }
            if self.params.fail_mode == FailMode::Error {
                g.state = MigState::Error;
                g.save = None;
                self.abort_resume(g);
            }
            return Err((
                libc::EIO,
                format!("fail-at={to}: the simulated device refuses {from} -> {to}"),
            ));
        }
        let now = self.now_ns();
        let saving = |s: MigState| {
            matches!(
                s,
                MigState::PreCopy | MigState::PreCopyP2p | MigState::StopCopy
            )
        };
        let endless = self.params.violate == Some(Violation::EndlessRead);
        if from == MigState::Resuming && to != MigState::Resuming {
            let r = g.resume.take();
            let wrote = r.as_ref().is_some_and(|r| r.wrote_memory());
            let verdict = match r {
                // violation resume-refuses: a stream cut short is taken as it is
                Some(r) if r.truncated() && self.v2_violates(Violation::ResumeRefuses) => {
                    Ok((r.seed().unwrap_or(g.seed), g.zero))
                }
                Some(r) => r.finish(),
                None => Err("no resume stream".into()),
            };
            // violations resume-loads / v1-resume-loads: checked, not loaded
            let load = !(self.v2_violates(Violation::ResumeLoads)
                || self.v1_violates(Violation::V1ResumeLoads));
            match verdict {
                Ok((seed, zero)) if load => {
                    g.seed = seed;
                    g.zero = zero;
                }
                Ok(_) => {}
                Err(why) => {
                    if wrote {
                        self.reload_state(g);
                    }
                    g.state = MigState::Error;
                    g.last_refusal = Some(why.clone());
                    return Err((
                        libc::EINVAL,
                        format!("the device refused the restored state: {why}"),
                    ));
                }
            }
        }
        if saving(from) && !saving(to) {
            if self.v2_violates(Violation::NewDataFd) {
                g.stale_save = g.save.take();
            } else if !self.v2_violates(Violation::SessionEnds) {
                g.save = None;
            }
        }
        if saving(to) && !saving(from) && self.v2_violates(Violation::NewDataFd) {
            // violation new-data-fd: the previous session's stream again, not restarted
            if let Some(mut s) = g.stale_save.take() {
                if to == MigState::StopCopy {
                    s.stop(now);
                }
                g.save = Some(s);
                g.state = to;
                return Ok(());
            }
        }
        if to == MigState::StopCopy {
            match g.save.as_mut() {
                Some(s) if saving(from) => {
                    s.stop(now);
                    if self.v2_violates(Violation::PrecopyPath) {
                        s.drop_final();
                    }
                }
                _ => {
                    let mut s = SaveStream::new(
                        g.seed,
                        self.content(g),
                        self.params.state,
                        0,
                        endless,
                        now,
                    );
                    s.stop(now);
                    g.save = Some(s);
                }
            }
            g.v1 = V1Chunk::default();
        } else if saving(to) && !saving(from) {
            g.save = Some(SaveStream::new(
                g.seed,
                self.content(g),
                self.params.state,
                self.params.dirty_rate,
                endless,
                now,
            ));
            g.v1 = V1Chunk::default();
        }
        if to == MigState::Resuming && from != MigState::Resuming {
            g.resume = Some(ResumeStream::new(
                self.params.state,
                self.params.verify_seed,
                self.state_mem.clone(),
            ));
            g.v1 = V1Chunk::default();
        }
        if streaming(from) != streaming(to) {
            // A new transfer: the data stream's pacing starts afresh.
            self.pacer.reset();
        }
        g.state = to;
        Ok(())
    }

    /// The current state's content: what `(seed, zero pages)` produce, in the state memory
    /// when the device has one.
    pub(super) fn content(&self, g: &Inner) -> Content {
        Content {
            gen: Gen::with_zero_pages(g.seed, g.zero),
            mem: self.state_mem.clone(),
        }
    }

    /// Puts the current state's content back into the state memory, after a resume that
    /// copied bytes into it was refused or aborted (the device keeps the state it had, as
    /// when the resume never happened).
    pub(super) fn reload_state(&self, g: &Inner) {
        if let Some(m) = &self.state_mem {
            content::fill(m, self.params.state, &Gen::with_zero_pages(g.seed, g.zero));
        }
    }

    /// Drops the resume stream, if any, without committing it: the state memory gets the
    /// current state back if the stream had copied bytes into it.
    pub(super) fn abort_resume(&self, g: &mut Inner) {
        if let Some(r) = g.resume.take() {
            if r.wrote_memory() {
                self.reload_state(g);
            }
        }
    }

    /// Waits `read-delay` before a migration data read.
    pub(super) fn read_delay(&self) {
        if self.params.read_delay_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(self.params.read_delay_ms));
        }
    }

    pub(super) fn limit(&self, n: usize) -> usize {
        match self.params.chunk {
            Some(c) => n.min(usize::try_from(c).unwrap_or(usize::MAX)),
            None => n,
        }
    }
}
