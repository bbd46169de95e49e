//! The v2 migration feature calls (`VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`, the data fd,
//! `VFIO_MIG_GET_PRECOPY_INFO`, `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`) on the simulator, with
//! the exact kernel state machine ([`crate::device::fsm`]).

use super::stream::{Produced, SaveStream};
use super::transition::mig_err;
use super::{SimDevice, SimProtocol, Violation};
use crate::device::{fsm, DeviceError, MigFlags, MigState, PrecopyInfo, Result};

impl SimDevice {
    fn no_v2(&self, op: &'static str) -> DeviceError {
        mig_err(
            self.name_str(),
            op,
            None,
            libc::ENOTTY,
            "this device speaks migration v1 (a migration region), not the v2 feature".into(),
        )
    }

    /// `set_mig_state`: walks the kernel's path to `target`, arc by arc.
    pub(super) fn v2_set_state(&self, target: MigState) -> Result<()> {
        const OP: &str = "set state";
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2(OP));
        }
        let mut g = self.lock();
        let flags = self.params.flags;
        let from = g.state;
        g.set_from = None;
        while g.state != target {
            let Some(next) = fsm::next_step(flags, g.state, target).ok() else {
                let hint = if g.state == MigState::Error {
                    "the device is in ERROR: reset it".to_string()
                } else {
                    format!(
                        "no path from {} to {target} with migration flags {flags}",
                        g.state
                    )
                };
                return Err(mig_err(
                    self.name_str(),
                    OP,
                    Some(target),
                    libc::EINVAL,
                    hint,
                ));
            };
            if let Err((errno, why)) = self.arc(&mut g, next) {
                return Err(mig_err(self.name_str(), OP, Some(target), errno, why));
            }
        }
        g.set_from = Some(from);
        Ok(())
    }

    /// `mig_state`: the current state.
    pub(super) fn v2_state(&self) -> Result<MigState> {
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2("get state"));
        }
        let g = self.lock();
        // violation state-after-arc: RUNNING -> STOP is not reflected
        if g.state == MigState::Stop
            && g.set_from == Some(MigState::Running)
            && self.v2_violates(Violation::StateAfterArc)
        {
            return Ok(MigState::Running);
        }
        Ok(g.state)
    }

    /// `mig_read`: the save stream, `ENOMSG` when pre-copy has nothing pending.
    pub(super) fn v2_read(&self, buf: &mut [u8]) -> Result<usize> {
        const OP: &str = "read data";
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2(OP));
        }
        self.read_delay();
        let start = std::time::Instant::now();
        if buf.len() < 4096 && self.v2_violates(Violation::ReadSize) {
            return Err(mig_err(
                self.name_str(),
                OP,
                None,
                libc::EINVAL,
                "violate=read-size: reads shorter than 4096 bytes are refused".into(),
            ));
        }
        let now = self.now_ns();
        let mut g = self.lock();
        let state = g.state;
        let n = self.limit(buf.len()).min(self.pacer.call_limit());
        let Some(s) = g.save.as_mut() else {
            return Err(mig_err(
                self.name_str(),
                OP,
                Some(state),
                libc::EBADF,
                format!("no saving data stream is open in {state}"),
            ));
        };
        match s.produce(&mut buf[..n], now) {
            Produced::Bytes(k) => {
                s.read_any = true;
                drop(g);
                self.pacer.wait(start, k);
                Ok(k)
            }
            Produced::End if self.v2_violates(Violation::StopCopyEof) => Err(mig_err(
                self.name_str(),
                OP,
                Some(state),
                libc::ENOMSG,
                "violate=stop-copy-eof: the end of the stop-copy stream".into(),
            )),
            Produced::End => Ok(0),
            Produced::NothingPending => Err(mig_err(
                self.name_str(),
                OP,
                Some(state),
                libc::ENOMSG,
                "no pre-copy data pending right now".into(),
            )),
        }
    }

    /// `mig_write`: the resume stream.
    pub(super) fn v2_write(&self, buf: &[u8]) -> Result<usize> {
        const OP: &str = "write data";
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2(OP));
        }
        let start = std::time::Instant::now();
        let mut g = self.lock();
        let state = g.state;
        let n = self.limit(buf.len()).min(self.pacer.call_limit());
        let Some(r) = g.resume.as_mut() else {
            return Err(mig_err(
                self.name_str(),
                OP,
                Some(state),
                libc::EBADF,
                format!("no resuming data stream is open in {state}"),
            ));
        };
        r.consume(&buf[..n]);
        if !r.complete() && self.v2_violates(Violation::WriteSize) {
            let why = "violate=write-size: a write that does not complete the stream".to_string();
            r.refuse(why.clone());
            return Err(mig_err(self.name_str(), OP, Some(state), libc::EINVAL, why));
        }
        drop(g);
        self.pacer.wait(start, n);
        Ok(n)
    }

    /// `precopy_info`: initial and dirty bytes pending (PRE_COPY states only).
    pub(super) fn v2_precopy_info(&self) -> Result<PrecopyInfo> {
        const OP: &str = "precopy info";
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2(OP));
        }
        if !self.params.flags.has(MigFlags::PRE_COPY) {
            return Err(mig_err(
                self.name_str(),
                OP,
                None,
                libc::ENOTTY,
                "the device has no PRE_COPY".into(),
            ));
        }
        let now = self.now_ns();
        let mut g = self.lock();
        let state = g.state;
        let any_state = self.v2_violates(Violation::PrecopyInfoState);
        match (state, g.save.as_mut()) {
            (MigState::PreCopy | MigState::PreCopyP2p, Some(s)) | (MigState::StopCopy, Some(s))
                if any_state || state != MigState::StopCopy =>
            {
                s.accrue(now);
                let (mut initial_bytes, mut dirty_bytes) = s.precopy_info();
                if self.v2_violates(Violation::PrecopyInitial) {
                    initial_bytes = *s.initial0.get_or_insert(initial_bytes);
                }
                if s.read_any && self.v2_violates(Violation::PrecopyInfoAgrees) {
                    (initial_bytes, dirty_bytes) = (0, 0);
                }
                Ok(PrecopyInfo {
                    initial_bytes,
                    dirty_bytes,
                })
            }
            _ => Err(mig_err(
                self.name_str(),
                OP,
                Some(state),
                libc::EINVAL,
                format!(
                    "precopy info is only available in PRE_COPY states, the device is in {state}"
                ),
            )),
        }
    }

    /// `stop_copy_size`: what is left to the end of the stream.
    pub(super) fn v2_stop_copy_size(&self) -> Result<u64> {
        if self.params.protocol == SimProtocol::V1 {
            return Err(self.no_v2("stop-copy size"));
        }
        let now = self.now_ns();
        let mut g = self.lock();
        let size = match g.save.as_mut() {
            Some(s) => {
                s.accrue(now);
                s.remaining_to_end()
            }
            None => SaveStream::full_size(self.params.state),
        };
        Ok(
            if self.params.violate == Some(Violation::WrongStopCopySize) {
                size / 2
            } else if self.v2_violates(Violation::DataSize) {
                0
            } else {
                size
            },
        )
    }
}
