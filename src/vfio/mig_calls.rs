//! What answers a kernel device's migration v2 calls.
//!
//! A device opened by this crate, or adopted from a VMM's `vfio_ioctls::VfioDevice`, goes
//! through vfio-ioctls (shared with the VMM: one data stream, whoever asks). A device adopted
//! from a bare device fd has no `VfioDevice`, so the same calls are issued here on the fd:
//! `VFIO_DEVICE_FEATURE` with `MIGRATION`, `MIG_DEVICE_STATE` (SET returns the data fd of a
//! streaming state) and `MIG_DATA_SIZE`, and `VFIO_MIG_GET_PRECOPY_INFO` on the data fd.
//! Every error keeps the kernel's errno.

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use vfio_bindings::bindings::vfio::{
    vfio_device_feature, vfio_device_feature_mig_data_size, vfio_device_feature_mig_state,
    vfio_device_feature_migration, vfio_precopy_info, VFIO_DEVICE_FEATURE_GET,
    VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
    VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET,
};
use vfio_ioctls::VfioDevice;
use vmm_sys_util::ioctl::ioctl_with_mut_ref;

use super::vfio_io_error;
use crate::device::uapi::{
    MIG_STATE_PRE_COPY, MIG_STATE_PRE_COPY_P2P, MIG_STATE_RESUMING, MIG_STATE_STOP_COPY,
};
use crate::device::PrecopyInfo;

use super::ioctl::nr;

/// `struct vfio_device_feature` followed by its payload (`data[]`), as the kernel reads it.
#[repr(C)]
#[derive(Default)]
struct Feature<T> {
    argsz: u32,
    flags: u32,
    data: T,
}

// The payload starts where `vfio_device_feature::data` does, for every payload used here.
const _: () = assert!(offset_of!(Feature<vfio_device_feature_migration>, data) == 8);
const _: () = assert!(offset_of!(Feature<vfio_device_feature_mig_state>, data) == 8);
const _: () = assert!(offset_of!(Feature<vfio_device_feature_mig_data_size>, data) == 8);
const _: () = assert!(size_of::<vfio_device_feature>() == 8);

/// `VFIO_DEVICE_FEATURE` with `flags` and `data` as the payload; returns the payload as the
/// kernel left it.
fn feature<T>(fd: BorrowedFd<'_>, flags: u32, data: T) -> io::Result<T> {
    let mut f = Feature {
        argsz: u32::try_from(size_of::<Feature<T>>())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        flags,
        data,
    };
    // SAFETY: `fd` is open for the call (borrowed). The kernel reads the header and at most
    // `argsz` bytes, exactly `f`, and writes the payload back (GET, and SET's data_fd) within
    // them; `f` is borrowed exclusively for the call.
    let r = unsafe { ioctl_with_mut_ref(&fd, nr::VFIO_DEVICE_FEATURE(), &mut f) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f.data)
}

/// The calls issued on a bare device fd, and the data stream of its streaming state.
pub(super) struct OwnMig {
    data: Mutex<Option<File>>,
}

impl OwnMig {
    pub(super) fn new() -> OwnMig {
        OwnMig {
            data: Mutex::new(None),
        }
    }

    fn data(&self) -> io::Result<MutexGuard<'_, Option<File>>> {
        self.data
            .lock()
            .map_err(|_| io::Error::other("the migration data stream lock is poisoned"))
    }

    fn no_stream() -> io::Error {
        io::Error::other("no migration data stream is open (enter a streaming state first)")
    }

    /// `GET | MIGRATION`: the flags, `None` when the kernel (`ENOTTY`) or the device
    /// (`EINVAL`) has no migration v2, as vfio-ioctls answers.
    fn flags(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
        let flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION;
        match feature(fd, flags, vfio_device_feature_migration::default()) {
            Ok(m) => Ok(Some(m.flags)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY) | Some(libc::EINVAL)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `SET | MIG_DEVICE_STATE`; keeps the data fd of a streaming state, drops it on leaving
    /// the streaming states and on failure (the kernel may have closed its end).
    fn set_state(&self, fd: BorrowedFd<'_>, state: u32) -> io::Result<()> {
        let flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
        let arg = vfio_device_feature_mig_state {
            device_state: state,
            data_fd: -1,
        };
        let mut data = self.data()?;
        match feature(fd, flags, arg) {
            Err(e) => {
                *data = None;
                Err(e)
            }
            Ok(out) => {
                let streaming = matches!(
                    state,
                    MIG_STATE_PRE_COPY
                        | MIG_STATE_PRE_COPY_P2P
                        | MIG_STATE_STOP_COPY
                        | MIG_STATE_RESUMING
                );
                if out.data_fd >= 0 {
                    // SAFETY: the kernel just installed this fd for us and nobody else owns it.
                    *data = Some(unsafe { File::from_raw_fd(out.data_fd) });
                } else if !streaming {
                    *data = None;
                }
                Ok(())
            }
        }
    }

    fn state(fd: BorrowedFd<'_>) -> io::Result<u32> {
        let flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
        let arg = vfio_device_feature_mig_state {
            device_state: 0,
            data_fd: -1,
        };
        feature(fd, flags, arg).map(|s| s.device_state)
    }

    fn data_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
        let flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE;
        feature(fd, flags, vfio_device_feature_mig_data_size::default()).map(|s| s.stop_copy_length)
    }

    fn precopy_info(&self) -> io::Result<PrecopyInfo> {
        let data = self.data()?;
        let f = data.as_ref().ok_or_else(Self::no_stream)?;
        let mut info = vfio_precopy_info {
            argsz: size_of::<vfio_precopy_info>() as u32,
            ..Default::default()
        };
        // SAFETY: the data fd is open while the guard is held. The kernel reads and writes
        // `argsz` bytes, exactly `info`, borrowed exclusively for the call.
        let r = unsafe { ioctl_with_mut_ref(f, nr::VFIO_MIG_GET_PRECOPY_INFO(), &mut info) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PrecopyInfo {
            initial_bytes: info.initial_bytes,
            dirty_bytes: info.dirty_bytes,
        })
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut data = self.data()?;
        data.as_mut().ok_or_else(Self::no_stream)?.read(buf)
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut data = self.data()?;
        data.as_mut().ok_or_else(Self::no_stream)?.write_all(buf)
    }
}

/// The migration calls of one kernel device.
pub(super) enum MigCalls {
    /// Through vfio-ioctls' device (opened here, or the VMM's, shared).
    Vfio(Arc<VfioDevice>),
    /// Issued here on the bare device fd.
    Own(OwnMig),
}

impl MigCalls {
    /// The vfio-ioctls device, when there is one.
    pub(super) fn vfio_device(&self) -> Option<&Arc<VfioDevice>> {
        match self {
            MigCalls::Vfio(d) => Some(d),
            MigCalls::Own(_) => None,
        }
    }

    pub(super) fn flags(&self, fd: &File) -> io::Result<Option<u64>> {
        match self {
            MigCalls::Vfio(d) => d.query_migration_support().map_err(|e| vfio_io_error(&e)),
            MigCalls::Own(_) => OwnMig::flags(fd.as_fd()),
        }
    }

    pub(super) fn set_state(&self, fd: &File, state: u32) -> io::Result<()> {
        match self {
            MigCalls::Vfio(d) => d.set_migration_state(state).map_err(|e| vfio_io_error(&e)),
            MigCalls::Own(o) => o.set_state(fd.as_fd(), state),
        }
    }

    pub(super) fn state(&self, fd: &File) -> io::Result<u32> {
        match self {
            MigCalls::Vfio(d) => d.get_migration_state().map_err(|e| vfio_io_error(&e)),
            MigCalls::Own(_) => OwnMig::state(fd.as_fd()),
        }
    }

    pub(super) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MigCalls::Vfio(d) => d.read_migration_data(buf).map_err(|e| vfio_io_error(&e)),
            MigCalls::Own(o) => o.read(buf),
        }
    }

    pub(super) fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            MigCalls::Vfio(d) => d.write_migration_data(buf).map_err(|e| vfio_io_error(&e)),
            MigCalls::Own(o) => o.write_all(buf),
        }
    }

    pub(super) fn precopy_info(&self) -> io::Result<PrecopyInfo> {
        match self {
            MigCalls::Vfio(d) => d
                .mig_get_precopy_info()
                .map(|p| PrecopyInfo {
                    initial_bytes: p.initial_bytes,
                    dirty_bytes: p.dirty_bytes,
                })
                .map_err(|e| vfio_io_error(&e)),
            MigCalls::Own(o) => o.precopy_info(),
        }
    }

    pub(super) fn data_size(&self, fd: &File) -> io::Result<u64> {
        match self {
            MigCalls::Vfio(d) => d.get_mig_data_size().map_err(|e| vfio_io_error(&e)),
            MigCalls::Own(_) => OwnMig::data_size(fd.as_fd()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_are_the_kernels() {
        // _IO(';', 100 + 17) and _IO(';', 100 + 21), as in include/uapi/linux/vfio.h.
        assert_eq!(nr::VFIO_DEVICE_FEATURE() as u64, 0x3b75);
        assert_eq!(nr::VFIO_MIG_GET_PRECOPY_INFO() as u64, 0x3b79);
    }

    /// On a file that is not a VFIO device the kernel answers ENOTTY, which for the
    /// migration query means "no migration v2" (as vfio-ioctls reports it) and for the other
    /// calls is the error, errno kept.
    #[test]
    fn own_calls_reach_the_kernel_and_keep_its_errno() {
        let null = File::open("/dev/null").unwrap();
        let m = MigCalls::Own(OwnMig::new());
        assert_eq!(m.flags(&null).unwrap(), None);
        let e = m.state(&null).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        let e = m.set_state(&null, MIG_STATE_STOP_COPY).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        let e = m.data_size(&null).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        // No stream was opened: the data calls say so instead of touching any fd.
        for e in [
            m.read(&mut [0u8; 4]).unwrap_err(),
            m.write_all(b"x").unwrap_err(),
            m.precopy_info().unwrap_err(),
        ] {
            assert!(e.to_string().contains("no migration data stream"), "{e}");
        }
    }
}
