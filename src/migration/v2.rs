//! Migration protocol v2 over [`crate::device::Device`]'s migration calls.

use super::{MigrationDriver, MigrationError, Pending, Protocol, Result};
use crate::device::{fsm, DeviceHandle, MigFlags, MigState};

/// Drives a device through the v2 migration feature.
pub struct V2Driver {
    device: DeviceHandle,
    flags: MigFlags,
    /// The state last reached through this driver (None: unknown, e.g. after an error).
    current: Option<MigState>,
}

impl std::fmt::Debug for V2Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2Driver")
            .field("device", &self.device.name())
            .field("flags", &self.flags)
            .field("current", &self.current)
            .finish()
    }
}

impl V2Driver {
    /// Wraps a device that reported v2 migration `flags`.
    pub fn new(device: DeviceHandle, flags: MigFlags) -> Self {
        V2Driver {
            device,
            flags,
            current: None,
        }
    }

    fn in_precopy(&mut self) -> bool {
        let s = match self.current {
            Some(s) => s,
            None => match self.device.mig_state() {
                Ok(s) => s,
                Err(_) => return false,
            },
        };
        matches!(s, MigState::PreCopy | MigState::PreCopyP2p)
    }
}

impl MigrationDriver for V2Driver {
    fn protocol(&self) -> Protocol {
        Protocol::V2
    }
    fn device(&self) -> &DeviceHandle {
        &self.device
    }
    fn flags(&self) -> MigFlags {
        self.flags
    }
    fn set_state(&mut self, state: MigState) -> Result<()> {
        if !fsm::state_exists(self.flags, state) {
            return Err(MigrationError::Unreachable {
                device: self.device.name().to_string(),
                state,
                flags: self.flags.to_string(),
            });
        }
        self.current = None;
        self.device.set_mig_state(state)?;
        self.current = Some(state);
        Ok(())
    }
    fn state(&mut self) -> Result<MigState> {
        let s = self.device.mig_state()?;
        self.current = Some(s);
        Ok(s)
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        match self.device.mig_read(buf) {
            Ok(n) => Ok(n),
            // Temporary end of stream in PRE_COPY (vfio.h: read() returns ENOMSG). ENOMSG is
            // not allowed in STOP_COPY, where it must not pass for the end of the stream.
            Err(e) if e.errno() == Some(libc::ENOMSG) => {
                if self.in_precopy() {
                    Ok(0)
                } else {
                    Err(MigrationError::Protocol {
                        device: self.device.name().to_string(),
                        what: format!(
                            "read returned ENOMSG outside the pre-copy states ({e}); vfio.h allows it only in PRE_COPY"
                        ),
                    })
                }
            }
            Err(e) => Err(e.into()),
        }
    }
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        let n = self.device.mig_write(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(MigrationError::Protocol {
                device: self.device.name().to_string(),
                what: "the data fd accepted 0 bytes in RESUMING".into(),
            });
        }
        Ok(n)
    }
    fn pending(&mut self) -> Result<Pending> {
        let p = self.device.precopy_info()?;
        Ok(Pending {
            initial_bytes: p.initial_bytes,
            dirty_bytes: p.dirty_bytes,
        })
    }
    fn stop_copy_size(&mut self) -> Result<Option<u64>> {
        match self.device.stop_copy_size() {
            Ok(n) => Ok(Some(n)),
            Err(e) if matches!(e.errno(), Some(libc::ENOTTY) | Some(libc::EINVAL)) => Ok(None),
            Err(crate::device::DeviceError::Unsupported { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    fn reset(&mut self) -> Result<()> {
        self.current = None;
        Ok(self.device.reset()?)
    }
}
