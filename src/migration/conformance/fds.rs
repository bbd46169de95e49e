//! The data fds themselves, for kernel devices: the suite sets states with its own
//! `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` call so that it holds each session's data_fd and
//! can see whether a save returns a new one and whether an old one still yields data.
//! (The back end keeps its data fd private and closes it when a session ends, which would
//! make these checks answer themselves.)

use super::ctx::Outcome;
use super::report::CheckVerdict::{Fail, Pass};
use crate::device::{Device, DeviceHandle, MigState};
use crate::migration::MigrationError;
use crate::vfio::KernelDevice;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};

use crate::vfio::ioctl::nr;

/// `struct vfio_device_feature` followed by `struct vfio_device_feature_mig_state`.
#[repr(C)]
struct MigStateFeature {
    argsz: u32,
    flags: u32,
    device_state: u32,
    data_fd: i32,
}

/// A kernel device's fd, borrowed from the device, for raw state changes.
pub(super) struct KernelFds<'a> {
    fd: BorrowedFd<'a>,
    name: String,
}

impl<'a> KernelFds<'a> {
    /// The raw view of `dev` when it is a kernel device.
    pub(super) fn of(dev: &'a DeviceHandle) -> Option<KernelFds<'a>> {
        let k = dev.as_any().downcast_ref::<KernelDevice>()?;
        Some(KernelFds {
            fd: k.device_fd(),
            name: k.info().name.clone(),
        })
    }

    fn err(&self, what: String, source: io::Error) -> MigrationError {
        MigrationError::Protocol {
            device: self.name.clone(),
            what: format!("{what}: {source}"),
        }
    }

    /// SET `state`; the data_fd the kernel returned, if any.
    fn set(&self, state: MigState) -> Result<Option<File>, MigrationError> {
        let mut f = MigStateFeature {
            argsz: std::mem::size_of::<MigStateFeature>() as u32,
            flags: vfio_bindings::bindings::vfio::VFIO_DEVICE_FEATURE_SET
                | vfio_bindings::bindings::vfio::VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
            device_state: state.raw(),
            data_fd: -1,
        };
        // SAFETY: `self.fd` is the open device fd, borrowed from the device for as long as
        // `self` lives; `f` is a properly sized, initialised argument the kernel reads and
        // writes within `argsz`.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), nr::VFIO_DEVICE_FEATURE() as _, &mut f) };
        if r < 0 {
            return Err(self.err(format!("SET {state}"), io::Error::last_os_error()));
        }
        Ok(if f.data_fd >= 0 {
            // SAFETY: the kernel returned a new fd that nobody else owns.
            Some(unsafe { File::from_raw_fd(f.data_fd) })
        } else {
            None
        })
    }

    fn status_flags(fd: &File) -> io::Result<libc::c_int> {
        // SAFETY: F_GETFL on an open fd we own.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r)
    }

    fn set_status_flags(fd: &File, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: F_SETFL on an open fd we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether `a` and `b` are the same open file: file status flags belong to the open
    /// file, so O_NONBLOCK set through `a` shows through `b` only when they share it.
    fn same_file(a: &File, b: &File) -> io::Result<bool> {
        let fa = Self::status_flags(a)?;
        let fb = Self::status_flags(b)?;
        if (fa ^ fb) & libc::O_NONBLOCK != 0 {
            return Ok(false);
        }
        Self::set_status_flags(a, fa ^ libc::O_NONBLOCK)?;
        let seen = Self::status_flags(b);
        Self::set_status_flags(a, fa)?;
        Ok((seen? ^ fb) & libc::O_NONBLOCK != 0)
    }

    /// Reads `f` to its end (at most `limit` bytes); bytes read and whether it ended.
    fn drain(f: &mut File, limit: u64) -> (u64, io::Result<bool>) {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match f.read(&mut buf) {
                Ok(0) => return (n, Ok(true)),
                Ok(k) => n += k as u64,
                Err(e) => return (n, Err(e)),
            }
            if n > limit {
                return (n, Ok(false));
            }
        }
    }

    /// Two saves from STOP (and one from RUNNING into PRE_COPY when offered): each returns
    /// a data_fd, the second is not the first one's file, and it delivers the stream.
    pub(super) fn fresh_fd_check(&self, precopy: bool, expect: u64, limit: u64) -> Outcome {
        self.set(MigState::Stop)?;
        let Some(mut a) = self.set(MigState::StopCopy)? else {
            self.set(MigState::Running)?;
            return Ok((Fail, "STOP -> STOP_COPY returned no data_fd".into()));
        };
        let (na, _) = Self::drain(&mut a, limit);
        self.set(MigState::Stop)?;
        let b = self.set(MigState::StopCopy)?;
        let Some(mut b) = b else {
            self.set(MigState::Running)?;
            return Ok((
                Fail,
                "the second STOP -> STOP_COPY returned no data_fd".into(),
            ));
        };
        let same = Self::same_file(&a, &b).map_err(|e| self.err("compare data fds".into(), e))?;
        let (nb, end) = Self::drain(&mut b, limit);
        self.set(MigState::Running)?;
        if same {
            return Ok((
                Fail,
                "the second STOP -> STOP_COPY returned the first session's file again".into(),
            ));
        }
        if nb != expect || !matches!(end, Ok(true)) {
            return Ok((
                Fail,
                format!("the second session's fd delivered {nb} bytes ({end:?}); the first {na}, expected {expect}"),
            ));
        }
        let mut detail =
            format!("two STOP_COPY sessions, two distinct data fds, {na} and {nb} bytes");
        if precopy {
            let p = self.set(MigState::PreCopy)?;
            self.set(MigState::Running)?;
            match p {
                Some(_) => detail.push_str("; RUNNING -> PRE_COPY returned a data_fd too"),
                None => {
                    return Ok((
                        Fail,
                        format!("{detail}; RUNNING -> PRE_COPY returned no data_fd"),
                    ))
                }
            }
        }
        Ok((Pass, detail))
    }

    /// Opens a STOP_COPY session, reads 1 byte, goes to STOP, and reads the old fd again.
    pub(super) fn session_end_check(&self) -> Outcome {
        let Some(mut a) = self.set(MigState::StopCopy)? else {
            self.set(MigState::Running)?;
            return Ok((Fail, "RUNNING -> STOP_COPY returned no data_fd".into()));
        };
        let mut one = [0u8; 4096];
        let first = match a.read(&mut one[..1]) {
            Err(_) => a.read(&mut one),
            r => r,
        };
        self.set(MigState::Stop)?;
        let mut buf = vec![0u8; 1 << 16];
        let after = a.read(&mut buf);
        self.set(MigState::Running)?;
        Ok(match after {
            Ok(0) => (
                Pass,
                format!("first read {first:?}; after STOP_COPY -> STOP the old fd reads 0"),
            ),
            Ok(n) => (
                Fail,
                format!("after STOP_COPY -> STOP the old fd still returned {n} bytes"),
            ),
            Err(e) => (
                Pass,
                format!("first read {first:?}; after STOP_COPY -> STOP the old fd fails ({e})"),
            ),
        })
    }
}
