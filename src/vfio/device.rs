//! A kernel VFIO device behind the [`Device`] trait.

use std::any::Any;
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vfio_ioctls::{VfioDevice, VfioError};

use super::context::{IommuKind, VfioContext};
use super::ioctl::{DeviceFd, IrqSet};
use super::kvm::KvmVfioDevice;
use super::mig_calls::MigCalls;
use super::pci::{PCI_DEVICE_ID, PCI_SUBSYSTEM_ID, PCI_SUBSYSTEM_VENDOR_ID, PCI_VENDOR_ID};
use super::region::{decode_region_info, irq_name};
use super::{open_err, vfio_io_error};
use crate::device::uapi::{
    DEVICE_FLAGS_AMBA, DEVICE_FLAGS_AP, DEVICE_FLAGS_CCW, DEVICE_FLAGS_FSL_MC, DEVICE_FLAGS_PCI,
    DEVICE_FLAGS_PLATFORM, DEVICE_FLAGS_RESET, IRQ_SET_ACTION_MASK, IRQ_SET_ACTION_TRIGGER,
    IRQ_SET_ACTION_UNMASK, IRQ_SET_DATA_NONE, PCI_CONFIG_INDEX,
};
use crate::device::{
    Device, DeviceError, DeviceIdentity, DeviceInfo, IrqInfo, MigFlags, MigState, PrecopyInfo,
    RegionInfo, RegionMap, Result,
};
use crate::mem::{Mapping, Prot};
use crate::sysfs::{device as sysdev, SysfsRoot};

/// A device opened through the kernel (legacy group or iommufd cdev).
///
/// Besides opening one by its spec (the crate's `open`), a VMM hands in the objects it already owns:
/// its `vfio_ioctls::VfioDevice` ([`KernelDevice::from_vfio_device`]) or a bare device fd
/// ([`KernelDevice::from_device_fd`]), in a context made from its container or iommufd
/// ([`VfioContext::from_container`], [`VfioContext::from_iommufd`]).
///
/// When it drops, our duplicate of the device fd normally closes before vfio-ioctls'
/// `VfioDevice`, because releasing the group from the container fails while a device fd of
/// the group is still open. In a legacy container, when the kernel has begun removing the
/// device (its `vfio-dev/vfioN` entry is gone: an mdev `remove`, a driver unbind waiting for
/// the last close), the `VfioDevice` closes first: vfio-ioctls then reads the device's
/// `iommu_group` link again, which the kernel deletes as soon as the last fd closes, and
/// would panic on the failed read.
pub struct KernelDevice {
    fd: ManuallyDrop<File>,
    mig: ManuallyDrop<MigCalls>,
    ctx: Arc<VfioContext>,
    info: DeviceInfo,
    node: Option<PathBuf>,
    group: Option<u32>,
    /// The device's VFIO class entry (`vfio-dev/vfioN` under its node) when it was opened.
    vfio_dev: Option<String>,
}

/// Whether the drop must close the `VfioDevice` before our duplicate fd.
///
/// vfio-ioctls' `VfioDevice`, when it drops in a legacy container, closes its fd and then
/// reads `<node>/iommu_group` again to find the group to release, unwrapping the result. If
/// the kernel is removing the device (an mdev's `remove`, a driver unbind), it is waiting for
/// the device's last fd to close; when that close is the `VfioDevice`'s own, the kernel goes
/// on at once and, for an mdev, deletes the `iommu_group` link, racing the read: a panic in
/// vfio-ioctls (seen once in the bed, `mdev-kernel-refusals`). With our duplicate still open
/// the kernel keeps waiting and the link stays; the `VfioDevice` then cannot release the group
/// (EBUSY, logged by vfio-ioctls), and the kernel detaches it from the container itself once
/// the device is gone. A removal is known to have begun when the device's `vfio-dev` entry,
/// present at open, is gone: the kernel deletes it before it waits.
fn close_vfio_device_first(
    legacy: bool,
    has_vfio_device: bool,
    node: Option<&Path>,
    vfio_dev: Option<&str>,
) -> bool {
    legacy
        && has_vfio_device
        && matches!((node, vfio_dev), (Some(n), Some(v)) if sysdev::vfio_dev_gone(n, v))
}

impl Drop for KernelDevice {
    fn drop(&mut self) {
        let first = close_vfio_device_first(
            self.ctx.kind() == IommuKind::Legacy,
            self.mig.vfio_device().is_some(),
            self.node.as_deref(),
            self.vfio_dev.as_deref(),
        );
        // SAFETY: `fd` and `mig` are dropped exactly once, here, and nothing touches them
        // afterwards (this is the last use of `self`).
        unsafe {
            if first {
                ManuallyDrop::drop(&mut self.mig);
                ManuallyDrop::drop(&mut self.fd);
            } else {
                ManuallyDrop::drop(&mut self.fd);
                ManuallyDrop::drop(&mut self.mig);
            }
        }
    }
}

impl KernelDevice {
    /// Opens the device at sysfs node `node` into the shared context.
    pub(crate) fn open(node: &Path, ctx: Arc<VfioContext>, root: &SysfsRoot) -> Result<Self> {
        let name = sysdev::device_name(node);
        let group = sysdev::iommu_group(node);
        let blockers = || -> Vec<String> {
            group
                .map(|g| {
                    sysdev::group_members(root, g)
                        .into_iter()
                        .filter(|m| m.blocks_viability())
                        .map(|m| m.to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let not_viable = |blockers| DeviceError::GroupNotViable {
            device: name.clone(),
            group: group.unwrap_or(u32::MAX),
            blockers,
        };
        let dev = VfioDevice::new(node, ctx.ops(), true).map_err(|e| match e {
            VfioError::GroupViable => not_viable(blockers()),
            e => {
                let src = vfio_io_error(&e);
                // iommufd has no viability flag: binding the cdev fails (EPERM in 6.12:
                // iommu_device_claim_dma_owner) while a group member is bound to a host
                // driver, which owns the group's DMA.
                let b = if matches!(src.raw_os_error(), Some(libc::EPERM | libc::EBUSY)) {
                    blockers()
                } else {
                    Vec::new()
                };
                if b.is_empty() {
                    let detail = if src.raw_os_error() == Some(libc::EPERM) && running_as_root() {
                        // The generic EPERM advice (run as root) would mislead here.
                        "the kernel refused the device's DMA ownership although this process runs as root: \
                         the IOMMU group is in use elsewhere (another process holds it through /dev/vfio/N \
                         or iommufd), or a group member is bound to a host driver"
                    } else {
                        ""
                    };
                    open_err(&name, format!("open the device ({e})"), src, detail)
                } else {
                    not_viable(b)
                }
            }
        })?;
        let fd = dup_fd(&dev, &name)?;
        let mig = MigCalls::Vfio(Arc::new(dev));
        KernelDevice::assemble(fd, mig, ctx, name, Some(node.to_path_buf()), group)
    }

    /// Reads the device's description from `fd` (its own, or our duplicate of the
    /// `VfioDevice`'s) and puts the device together.
    pub(super) fn assemble(
        fd: File,
        mig: MigCalls,
        ctx: Arc<VfioContext>,
        name: String,
        node: Option<PathBuf>,
        group: Option<u32>,
    ) -> Result<Self> {
        let info = read_info(&fd, &name, node.as_deref(), ctx.kind().as_str())?;
        let vfio_dev = node.as_deref().and_then(sysdev::cdev_name);
        Ok(KernelDevice {
            fd: ManuallyDrop::new(fd),
            mig: ManuallyDrop::new(mig),
            ctx,
            info,
            node,
            group,
            vfio_dev,
        })
    }

    /// The shared IOMMU context (DMA mapping, IOVA ranges, KVM note).
    pub fn context(&self) -> &Arc<VfioContext> {
        &self.ctx
    }

    /// The device's sysfs node; `None` for a device adopted without one.
    pub fn sysfs_path(&self) -> Option<&Path> {
        self.node.as_deref()
    }

    /// The IOMMU group number.
    pub fn iommu_group(&self) -> Option<u32> {
        self.group
    }

    /// The device fd (for callers that need an ioctl this crate does not wrap).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The device fd, borrowed (our duplicate of the `VfioDevice`'s: the same open file).
    pub fn device_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The vfio-ioctls device behind this one (opened here, or the VMM's own), `None` for a
    /// device adopted from a bare fd.
    pub fn vfio_device(&self) -> Option<&Arc<VfioDevice>> {
        self.mig.vfio_device()
    }

    fn region(&self, index: u32) -> Result<&RegionInfo> {
        self.info.region(index).ok_or_else(|| DeviceError::NoSuch {
            device: self.info.name.clone(),
            what: format!("region {index}"),
        })
    }

    fn region_label(r: &RegionInfo) -> String {
        format!("{} ({})", r.index, r.name)
    }

    fn check_range(&self, r: &RegionInfo, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= r.size => Ok(()),
            _ => Err(DeviceError::OutOfBounds {
                what: format!("region {}", Self::region_label(r)),
                offset,
                len,
                size: r.size,
            }),
        }
    }

    fn irq_check(&self, index: u32, vector: Option<u32>) -> Result<&IrqInfo> {
        let irq = self.info.irq(index).ok_or_else(|| DeviceError::NoSuch {
            device: self.info.name.clone(),
            what: format!("IRQ index {index}"),
        })?;
        if let Some(v) = vector {
            if v >= irq.count {
                return Err(DeviceError::NoSuch {
                    device: self.info.name.clone(),
                    what: format!(
                        "IRQ index {index} ({}) has no vector {v} (count {})",
                        irq.name, irq.count
                    ),
                });
            }
        }
        Ok(irq)
    }

    fn ioctls(&self) -> DeviceFd<'_> {
        DeviceFd::new(self.fd.as_fd())
    }

    fn set_irqs(&self, op: &'static str, index: u32, set: io::Result<IrqSet>) -> Result<()> {
        set.and_then(|s| self.ioctls().set_irqs(&s))
            .map_err(|source| DeviceError::Irq {
                device: self.info.name.clone(),
                index,
                op,
                source,
            })
    }

    fn mig_err(&self, op: &'static str, state: Option<MigState>, source: io::Error) -> DeviceError {
        DeviceError::Migration {
            device: self.info.name.clone(),
            op,
            state,
            source,
            detail: None,
        }
    }
}

/// A close-on-exec duplicate of `dev`'s fd, ours to close.
pub(super) fn dup_fd(dev: &impl AsRawFd, name: &str) -> Result<File> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd owned by `dev` returns a new fd we own.
    let raw = unsafe { libc::fcntl(dev.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if raw < 0 {
        return Err(DeviceError::Io {
            device: name.to_string(),
            what: "duplicate the device fd".into(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    Ok(unsafe { File::from_raw_fd(raw) })
}

/// Reads device flags, every region and IRQ index, and the identity (the sysfs parts only
/// when the node is known).
pub(super) fn read_info(
    fd: &File,
    name: &str,
    node: Option<&Path>,
    backend: &str,
) -> Result<DeviceInfo> {
    let dev = DeviceFd::new(fd.as_fd());
    let ioerr = |what: String, source: io::Error| DeviceError::Io {
        device: name.to_string(),
        what,
        source,
    };
    let di = dev
        .info()
        .map_err(|e| ioerr("VFIO_DEVICE_GET_INFO".into(), e))?;
    let pci = di.flags & DEVICE_FLAGS_PCI != 0;
    let mut regions = Vec::new();
    for i in 0..di.num_regions {
        match dev.region_info(i) {
            Ok(b) => match decode_region_info(&b, pci) {
                Ok(r) => regions.push(r),
                Err(e) => {
                    return Err(ioerr(
                        format!("VFIO_DEVICE_GET_REGION_INFO {i}"),
                        io::Error::new(io::ErrorKind::InvalidData, e),
                    ))
                }
            },
            // Unimplemented indexes (VGA on non-VGA devices) answer EINVAL.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(ioerr(format!("VFIO_DEVICE_GET_REGION_INFO {i}"), e)),
        }
    }
    let mut irqs = Vec::new();
    for i in 0..di.num_irqs {
        match dev.irq_info(i) {
            Ok(info) => irqs.push(IrqInfo {
                index: i,
                name: irq_name(i, pci),
                count: info.count,
                flags: info.flags,
            }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(ioerr(format!("VFIO_DEVICE_GET_IRQ_INFO {i}"), e)),
        }
    }
    let mut identity = DeviceIdentity {
        device_api: node
            .and_then(sysdev::mdev_device_api)
            .unwrap_or_else(|| api_from_flags(di.flags)),
        mdev_type: node.and_then(sysdev::mdev_type),
        parent: node.and_then(sysdev::mdev_parent),
        pci_id: None,
        pci_subsystem: None,
        driver: node.and_then(sysdev::driver),
        sysfs_path: node.map(Path::to_path_buf),
    };
    if pci {
        if let Some(cfg) = regions.iter().find(|r| r.index == PCI_CONFIG_INDEX) {
            // Up to the subsystem ids, the last of the identity fields.
            let mut b = [0u8; PCI_SUBSYSTEM_ID as usize + 2];
            if cfg.size >= b.len() as u64 && fd.read_exact_at(&mut b, cfg.offset).is_ok() {
                let w = |o: u64| super::pci::read_u16(&b, o).unwrap_or(0);
                identity.pci_id =
                    Some(format!("{:04x}:{:04x}", w(PCI_VENDOR_ID), w(PCI_DEVICE_ID)));
                identity.pci_subsystem = Some(format!(
                    "{:04x}:{:04x}",
                    w(PCI_SUBSYSTEM_VENDOR_ID),
                    w(PCI_SUBSYSTEM_ID)
                ));
            }
        }
    }
    Ok(DeviceInfo {
        name: name.to_string(),
        backend: backend.to_string(),
        flags: di.flags,
        regions,
        irqs,
        identity,
    })
}

fn api_from_flags(flags: u32) -> String {
    const APIS: [(u32, &str); 6] = [
        (DEVICE_FLAGS_PCI, "vfio-pci"),
        (DEVICE_FLAGS_PLATFORM, "vfio-platform"),
        (DEVICE_FLAGS_AMBA, "vfio-amba"),
        (DEVICE_FLAGS_CCW, "vfio-ccw"),
        (DEVICE_FLAGS_AP, "vfio-ap"),
        (DEVICE_FLAGS_FSL_MC, "vfio-fsl-mc"),
    ];
    APIS.iter()
        .find(|(b, _)| flags & b != 0)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn page_size() -> u64 {
    crate::mem::page_size() as u64
}

impl Device for KernelDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        let r = self.region(index)?;
        self.check_range(r, offset, buf.len() as u64)?;
        self.fd
            .read_exact_at(buf, r.offset + offset)
            .map_err(|source| DeviceError::Region {
                device: self.info.name.clone(),
                region: Self::region_label(r),
                op: "read",
                offset,
                len: buf.len() as u64,
                source,
                detail: None,
            })
    }

    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<()> {
        let r = self.region(index)?;
        self.check_range(r, offset, buf.len() as u64)?;
        self.fd
            .write_all_at(buf, r.offset + offset)
            .map_err(|source| DeviceError::Region {
                device: self.info.name.clone(),
                region: Self::region_label(r),
                op: "write",
                offset,
                len: buf.len() as u64,
                source,
                detail: None,
            })
    }

    fn map_region(&self, index: u32, offset: u64, len: u64) -> Result<RegionMap> {
        let r = self.region(index)?;
        self.check_range(r, offset, len)?;
        let areas = r.mmap_areas();
        let end = offset + len;
        if len == 0
            || !areas
                .iter()
                .any(|a| offset >= a.offset && end <= a.offset + a.size)
        {
            let list: Vec<String> = areas
                .iter()
                .map(|a| format!("{:#x}+{:#x}", a.offset, a.size))
                .collect();
            return Err(DeviceError::NoSuch {
                device: self.info.name.clone(),
                what: if areas.is_empty() {
                    format!("region {} is not mmap-able", Self::region_label(r))
                } else {
                    format!(
                        "{len:#x} byte(s) at {offset:#x} of region {} are not inside one mmap-able area ({})",
                        Self::region_label(r),
                        list.join(", ")
                    )
                },
            });
        }
        if offset % page_size() != 0 {
            return Err(DeviceError::Misaligned {
                offset,
                width: page_size() as usize,
            });
        }
        let ulen = usize::try_from(len)
            .map_err(|_| DeviceError::InvalidArgument(format!("mapping of {len:#x} bytes")))?;
        let prot = Prot {
            read: r.readable(),
            write: r.writable(),
        };
        let map =
            Mapping::fd(self.fd.as_fd(), r.offset + offset, ulen, prot).map_err(|source| {
                DeviceError::Region {
                    device: self.info.name.clone(),
                    region: Self::region_label(r),
                    op: "mmap",
                    offset,
                    len,
                    source,
                    detail: None,
                }
            })?;
        let ptr = map.as_non_null();
        // SAFETY: ptr..ptr+ulen is the mapping owned (and unmapped on drop) by `map`, mapped
        // for writes only when the region is writable.
        Ok(unsafe {
            if prot.write {
                RegionMap::new(ptr, ulen, Box::new(map))
            } else {
                RegionMap::read_only(ptr, ulen, Box::new(map))
            }
        })
    }

    fn reset(&self) -> Result<()> {
        // Issued even without VFIO_DEVICE_FLAGS_RESET: some drivers (mtty) implement the
        // ioctl without advertising it; the kernel's answer decides.
        self.ioctls().reset().map_err(|source| {
            let advertised = self.info.flags & DEVICE_FLAGS_RESET != 0;
            match source.raw_os_error() {
                Some(libc::ENOTTY) | Some(libc::EINVAL) if !advertised => {
                    DeviceError::Unsupported {
                        device: self.info.name.clone(),
                        what: format!(
                            "VFIO_DEVICE_RESET (not advertised in the device flags; the kernel says: {source})"
                        ),
                    }
                }
                _ => DeviceError::Io {
                    device: self.info.name.clone(),
                    what: "VFIO_DEVICE_RESET".into(),
                    source,
                },
            }
        })
    }

    fn set_irq_eventfds(&self, index: u32, start: u32, fds: &[RawFd]) -> Result<()> {
        let irq = self.irq_check(index, None)?;
        if fds.is_empty() {
            let set = IrqSet::new(IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER, index, 0, 0, &[]);
            return self.set_irqs("disable", index, set);
        }
        let n = u32::try_from(fds.len()).unwrap_or(u32::MAX);
        if !matches!(start.checked_add(n), Some(end) if end <= irq.count) {
            return Err(DeviceError::NoSuch {
                device: self.info.name.clone(),
                what: format!(
                    "IRQ index {index} ({}) has {} vector(s), cannot set {n} from {start}",
                    irq.name, irq.count
                ),
            });
        }
        let set = IrqSet::eventfds(index, start, fds);
        self.set_irqs("enable eventfds", index, set)
    }

    fn trigger_irq(&self, index: u32, vector: u32) -> Result<()> {
        self.irq_check(index, Some(vector))?;
        let set = IrqSet::new(
            IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
            index,
            vector,
            1,
            &[],
        );
        self.set_irqs("trigger", index, set)
    }

    fn mask_irq(&self, index: u32, vector: u32, masked: bool) -> Result<()> {
        self.irq_check(index, Some(vector))?;
        let action = if masked {
            IRQ_SET_ACTION_MASK
        } else {
            IRQ_SET_ACTION_UNMASK
        };
        let set = IrqSet::new(IRQ_SET_DATA_NONE | action, index, vector, 1, &[]);
        self.set_irqs(if masked { "mask" } else { "unmask" }, index, set)
    }

    fn migration_flags(&self) -> Result<Option<MigFlags>> {
        self.mig
            .flags(&self.fd)
            .map(|o| o.map(MigFlags))
            .map_err(|e| self.mig_err("query migration support", None, e))
    }

    fn set_mig_state(&self, state: MigState) -> Result<()> {
        self.mig
            .set_state(&self.fd, state.raw())
            .map_err(|e| self.mig_err("set state", Some(state), e))
    }

    fn mig_state(&self) -> Result<MigState> {
        let raw = self
            .mig
            .state(&self.fd)
            .map_err(|e| self.mig_err("get state", None, e))?;
        MigState::from_raw(raw).ok_or_else(|| DeviceError::Migration {
            device: self.info.name.clone(),
            op: "get state",
            state: None,
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the kernel reported unknown state {raw}"),
            ),
            detail: None,
        })
    }

    fn mig_read(&self, buf: &mut [u8]) -> Result<usize> {
        self.mig
            .read(buf)
            .map_err(|e| self.mig_err("read data", None, e))
    }

    fn mig_write(&self, buf: &[u8]) -> Result<usize> {
        self.mig
            .write_all(buf)
            .map(|()| buf.len())
            .map_err(|e| self.mig_err("write data", None, e))
    }

    fn precopy_info(&self) -> Result<PrecopyInfo> {
        self.mig
            .precopy_info()
            .map_err(|e| self.mig_err("precopy info", None, e))
    }

    fn stop_copy_size(&self) -> Result<u64> {
        self.mig
            .data_size(&self.fd)
            .map_err(|e| self.mig_err("stop-copy size", None, e))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Whether the process runs with an effective user ID of 0.
fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Registering a [`KernelDevice`] with a VM's KVM-VFIO device (here rather than in
/// `kvm.rs`, which knows nothing of devices).
impl KvmVfioDevice {
    /// Registers a [`KernelDevice`]'s device fd ([`KvmVfioDevice::add_file`]): for a device
    /// whose container or iommufd was created without a KVM handle. A legacy device must be
    /// removed again ([`KvmVfioDevice::remove_device`]) before it is dropped.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dev: vfio_harness::vfio::KernelDevice = unimplemented!();
    /// let vm = kvm_ioctls::Kvm::new()?.create_vm()?;
    /// let kvm_vfio = vfio_harness::vfio::KvmVfioDevice::create(&vm)?;
    /// kvm_vfio.add_device(&dev)?;
    /// // ... run the guest ...
    /// kvm_vfio.remove_device(&dev)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn add_device(&self, dev: &KernelDevice) -> Result<()> {
        self.add_file(dev.device_fd())
    }

    /// Removes a device registered with [`KvmVfioDevice::add_device`].
    ///
    /// # Example
    ///
    /// See [`KvmVfioDevice::add_device`].
    pub fn remove_device(&self, dev: &KernelDevice) -> Result<()> {
        self.remove_file(dev.device_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::close_vfio_device_first;
    use std::fs;

    #[test]
    fn the_vfio_device_closes_first_only_for_a_legacy_device_being_removed() {
        let t = tempfile::tempdir().unwrap();
        let node = t.path().join("dev");
        fs::create_dir_all(node.join("vfio-dev/vfio0")).unwrap();
        let n = Some(node.as_path());
        // Still registered: the usual order (our duplicate first).
        assert!(!close_vfio_device_first(true, true, n, Some("vfio0")));
        fs::remove_dir(node.join("vfio-dev/vfio0")).unwrap();
        // Removal begun: the VfioDevice first, in a legacy container only.
        assert!(close_vfio_device_first(true, true, n, Some("vfio0")));
        assert!(!close_vfio_device_first(false, true, n, Some("vfio0")));
        // No VfioDevice (a bare adopted fd), or nothing seen at open: nothing to decide.
        assert!(!close_vfio_device_first(true, false, n, Some("vfio0")));
        assert!(!close_vfio_device_first(true, true, n, None));
        assert!(!close_vfio_device_first(true, true, None, Some("vfio0")));
    }
}
