//! Interrupts of the simulated device: eventfds per vector, masking, loopback triggers.

use crate::device::{
    uapi, DeviceError, IrqInfo, Result, IRQ_FLAG_AUTOMASKED, IRQ_FLAG_EVENTFD, IRQ_FLAG_MASKABLE,
    IRQ_FLAG_NORESIZE,
};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `VFIO_PCI_INTX_IRQ_INDEX`.
pub const INTX: u32 = uapi::PCI_INTX_IRQ_INDEX;
/// `VFIO_PCI_MSI_IRQ_INDEX`.
pub const MSI: u32 = uapi::PCI_MSI_IRQ_INDEX;
/// `VFIO_PCI_MSIX_IRQ_INDEX`.
pub const MSIX: u32 = uapi::PCI_MSIX_IRQ_INDEX;
/// `VFIO_PCI_ERR_IRQ_INDEX`.
pub const ERR: u32 = uapi::PCI_ERR_IRQ_INDEX;
/// `VFIO_PCI_REQ_IRQ_INDEX`.
pub const REQ: u32 = uapi::PCI_REQ_IRQ_INDEX;

/// The IRQ indexes the simulator reports.
pub(crate) fn infos() -> Vec<IrqInfo> {
    let ev = IRQ_FLAG_EVENTFD;
    vec![
        IrqInfo {
            index: INTX,
            name: "INTX".into(),
            count: 1,
            flags: ev | IRQ_FLAG_MASKABLE | IRQ_FLAG_AUTOMASKED,
        },
        IrqInfo {
            index: MSI,
            name: "MSI".into(),
            count: 1,
            flags: ev | IRQ_FLAG_MASKABLE | IRQ_FLAG_NORESIZE,
        },
        IrqInfo {
            index: MSIX,
            name: "MSIX".into(),
            count: super::pci::MSIX_VECTORS,
            flags: ev | IRQ_FLAG_MASKABLE | IRQ_FLAG_NORESIZE,
        },
        IrqInfo {
            index: ERR,
            name: "ERR".into(),
            count: 1,
            flags: ev,
        },
        IrqInfo {
            index: REQ,
            name: "REQ".into(),
            count: 1,
            flags: ev,
        },
    ]
}

#[derive(Debug, Default)]
struct Vector {
    /// The device's own reference to the caller's eventfd (a duplicate, as the kernel takes
    /// a reference): closing the caller's fd, or reusing its number, never redirects a
    /// trigger into another file.
    fd: Option<OwnedFd>,
    masked: bool,
    pending: bool,
}

/// Per-index vector tables.
#[derive(Debug)]
pub(crate) struct Irqs {
    tables: Vec<(IrqInfo, Vec<Vector>)>,
}

fn err(device: &str, index: u32, op: &'static str, errno: i32) -> DeviceError {
    DeviceError::Irq {
        device: device.to_string(),
        index,
        op,
        source: io::Error::from_raw_os_error(errno),
    }
}

impl Irqs {
    pub(crate) fn new() -> Irqs {
        Irqs {
            tables: infos()
                .into_iter()
                .map(|i| {
                    let n = i.count as usize;
                    (i, (0..n).map(|_| Vector::default()).collect())
                })
                .collect(),
        }
    }

    fn table(
        &mut self,
        dev: &str,
        index: u32,
        op: &'static str,
    ) -> Result<&mut (IrqInfo, Vec<Vector>)> {
        self.tables
            .iter_mut()
            .find(|(i, _)| i.index == index)
            .ok_or_else(|| err(dev, index, op, libc::EINVAL))
    }

    fn enabled(&self, index: u32) -> bool {
        self.tables
            .iter()
            .any(|(i, v)| i.index == index && v.iter().any(|x| x.fd.is_some()))
    }

    /// `VFIO_IRQ_SET_DATA_EVENTFD | ACTION_TRIGGER`.
    pub(crate) fn set_eventfds(
        &mut self,
        dev: &str,
        index: u32,
        start: u32,
        fds: &[RawFd],
    ) -> Result<()> {
        const OP: &str = "set eventfds";
        // vfio-pci allows one of INTx / MSI / MSI-X at a time.
        if matches!(index, INTX | MSI | MSIX) && !fds.is_empty() {
            for other in [INTX, MSI, MSIX] {
                if other != index && self.enabled(other) {
                    return Err(err(dev, index, OP, libc::EINVAL));
                }
            }
        }
        let (_, vecs) = self.table(dev, index, OP)?;
        if fds.is_empty() {
            for v in vecs.iter_mut() {
                *v = Vector::default();
            }
            return Ok(());
        }
        let end = (start as usize).checked_add(fds.len());
        if !matches!(end, Some(e) if e <= vecs.len()) {
            return Err(err(dev, index, OP, libc::EINVAL));
        }
        // Every fd is taken before any vector changes: a bad one leaves the table as it was.
        let mut held = Vec::with_capacity(fds.len());
        for &fd in fds {
            held.push(if fd >= 0 {
                Some(duplicate(fd).map_err(|e| err(dev, index, OP, e))?)
            } else {
                None
            });
        }
        for (v, fd) in vecs[start as usize..].iter_mut().zip(held) {
            v.fd = fd;
            v.pending = false;
        }
        Ok(())
    }

    /// Fires a vector: signals its eventfd unless masked (then it stays pending).
    pub(crate) fn trigger(&mut self, dev: &str, index: u32, vector: u32) -> Result<()> {
        const OP: &str = "trigger";
        let (info, vecs) = self.table(dev, index, OP)?;
        let automask = info.flags & IRQ_FLAG_AUTOMASKED != 0;
        let v = vecs
            .get_mut(vector as usize)
            .ok_or_else(|| err(dev, index, OP, libc::EINVAL))?;
        let Some(fd) = &v.fd else {
            return Err(err(dev, index, OP, libc::EINVAL));
        };
        if v.masked {
            v.pending = true;
            return Ok(());
        }
        signal(dev, index, fd)?;
        if automask {
            v.masked = true;
        }
        Ok(())
    }

    /// `VFIO_IRQ_SET_ACTION_MASK` / `UNMASK`; unmasking delivers a pending interrupt.
    pub(crate) fn mask(&mut self, dev: &str, index: u32, vector: u32, masked: bool) -> Result<()> {
        let op = if masked { "mask" } else { "unmask" };
        let (info, vecs) = self.table(dev, index, op)?;
        if info.flags & IRQ_FLAG_MASKABLE == 0 {
            return Err(err(dev, index, op, libc::EINVAL));
        }
        let automask = info.flags & IRQ_FLAG_AUTOMASKED != 0;
        let v = vecs
            .get_mut(vector as usize)
            .ok_or_else(|| err(dev, index, op, libc::EINVAL))?;
        v.masked = masked;
        if !masked && v.pending {
            if let Some(fd) = &v.fd {
                v.pending = false;
                signal(dev, index, fd)?;
                if automask {
                    v.masked = true;
                }
            }
        }
        Ok(())
    }

    /// The index a device-originated interrupt goes to (MSI-X, MSI, INTx: whichever is on).
    pub(crate) fn active_index(&self) -> Option<u32> {
        [MSIX, MSI, INTX].into_iter().find(|i| self.enabled(*i))
    }
}

/// The device's own reference to the caller's `fd` (`F_DUPFD_CLOEXEC`), or the errno
/// (`EBADF` for an fd that is not open, as the kernel answers).
fn duplicate(fd: RawFd) -> std::result::Result<OwnedFd, i32> {
    // SAFETY: F_DUPFD_CLOEXEC takes an int and touches no memory; a closed fd is EBADF.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EBADF));
    }
    // SAFETY: fcntl just returned `d`, a new fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

fn signal(dev: &str, index: u32, fd: &OwnedFd) -> Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local to the vector's own fd, open while borrowed.
    let r = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    if r != 8 {
        return Err(err(
            dev,
            index,
            "signal eventfd",
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    Ok(())
}
