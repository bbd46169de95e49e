//! One IOMMU context shared by the devices of one open call: a legacy VFIO container (type1)
//! or an iommufd with one IOAS.

use std::io;
use std::sync::Arc;

use iommufd_ioctls::IommuFd;
use vfio_ioctls::{VfioContainer, VfioIommufd, VfioOps};

use super::ioctl::{ContainerFd, IommufdFd, IovaRange};
use super::kvm::{KvmVfio, KvmVfioDevice};

/// [`VfioContext::kvm_note`] of a context registered with the caller's KVM-VFIO device.
pub(super) const CALLERS_KVM_NOTE: &str = "registered with the caller's KVM-VFIO device";
use super::{open_err, vfio_io_error};
use crate::device::{DeviceError, Result};

/// Which IOMMU interface a context uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuKind {
    /// Container/group with the type1 IOMMU driver.
    Legacy,
    /// iommufd with device cdevs.
    Iommufd,
}

impl IommuKind {
    /// `legacy` or `iommufd`, as reported in [`crate::device::DeviceInfo::backend`].
    pub fn as_str(self) -> &'static str {
        match self {
            IommuKind::Legacy => "legacy",
            IommuKind::Iommufd => "iommufd",
        }
    }
}

pub(super) enum Iommu {
    Legacy(Arc<VfioContainer>),
    Iommufd(Arc<VfioIommufd>),
}

/// The shared IOMMU context (and the optional KVM-VFIO association) of kernel devices.
pub struct VfioContext {
    iommu: Iommu,
    kvm: Option<KvmVfio>,
    kvm_note: String,
    fallback: Option<String>,
}

impl VfioContext {
    /// Creates the context. `kvm` asks for a KVM-VFIO pseudo device; when KVM is not usable
    /// the context is created without it and [`VfioContext::kvm_note`] says why.
    pub(crate) fn new(kind: IommuKind, kvm: bool, device: &str) -> Result<VfioContext> {
        let (kvm, kvm_note) = if kvm {
            match KvmVfio::create() {
                Ok(k) => (Some(k), "registered with a KVM-VFIO device".to_string()),
                Err(why) => (None, why),
            }
        } else {
            (None, "KVM association disabled (--no-kvm)".to_string())
        };
        VfioContext::build(kind, kvm, kvm_note, device)
    }

    /// Creates the context registered with the caller's KVM-VFIO device (the VMM's VM,
    /// [`crate::device::OpenOptions::kvm_device`]).
    pub(crate) fn with_kvm_device(
        kind: IommuKind,
        kvm: &KvmVfioDevice,
        device: &str,
    ) -> Result<VfioContext> {
        let note = CALLERS_KVM_NOTE.to_string();
        VfioContext::build(kind, Some(KvmVfio::of(kvm)), note, device)
    }

    /// Creates a container (type1) or an iommufd with one IOAS, handing `kvm`'s pseudo
    /// device to vfio-ioctls so that it registers every group or cdev opened in it.
    pub(super) fn build(
        kind: IommuKind,
        kvm: Option<KvmVfio>,
        kvm_note: String,
        device: &str,
    ) -> Result<VfioContext> {
        let handle = kvm.as_ref().map(|k| Arc::clone(&k.device));
        let iommu = match kind {
            IommuKind::Legacy => {
                Iommu::Legacy(Arc::new(VfioContainer::new(handle).map_err(|e| {
                    let src = vfio_io_error(&e);
                    open_err(device, format!("set up the VFIO container ({e})"), src, "")
                })?))
            }
            IommuKind::Iommufd => {
                let fd = IommuFd::new().map_err(|e| {
                    let src = match &e {
                        iommufd_ioctls::IommufdError::OpenIommufd(io) => io
                            .raw_os_error()
                            .map(io::Error::from_raw_os_error)
                            .unwrap_or_else(|| io::Error::other(io.to_string())),
                        other => io::Error::other(other.to_string()),
                    };
                    open_err(device, "open /dev/iommu".into(), src, "")
                })?;
                let v = VfioIommufd::new(Arc::new(fd), None, handle).map_err(|e| {
                    let src = vfio_io_error(&e);
                    open_err(device, format!("allocate an IOAS ({e})"), src, "")
                })?;
                Iommu::Iommufd(Arc::new(v))
            }
        };
        Ok(VfioContext::from_parts(iommu, kvm, kvm_note))
    }

    /// A context over an existing container or iommufd.
    pub(super) fn from_parts(iommu: Iommu, kvm: Option<KvmVfio>, kvm_note: String) -> VfioContext {
        VfioContext {
            iommu,
            kvm,
            kvm_note,
            fallback: None,
        }
    }

    /// The container or iommufd.
    pub(super) fn iommu(&self) -> &Iommu {
        &self.iommu
    }

    /// Records why this context is not the interface first chosen (see
    /// [`VfioContext::iommu_fallback`]).
    pub(crate) fn with_fallback(mut self, why: Option<String>) -> VfioContext {
        self.fallback = why;
        self
    }

    /// When `--iommu auto` chose iommufd but it refused to open and the devices were opened
    /// through the legacy container instead: the iommufd error. `None` otherwise.
    pub fn iommu_fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The interface in use.
    pub fn kind(&self) -> IommuKind {
        match self.iommu {
            Iommu::Legacy(_) => IommuKind::Legacy,
            Iommu::Iommufd(_) => IommuKind::Iommufd,
        }
    }

    /// Whether the devices are registered with a KVM-VFIO pseudo device.
    pub fn kvm_registered(&self) -> bool {
        self.kvm.is_some()
    }

    /// What happened with KVM (registered, or why not).
    pub fn kvm_note(&self) -> &str {
        &self.kvm_note
    }

    /// The context as vfio-ioctls' device-opening interface.
    pub(crate) fn ops(&self) -> Arc<dyn VfioOps> {
        match &self.iommu {
            Iommu::Legacy(c) => Arc::clone(c) as Arc<dyn VfioOps>,
            Iommu::Iommufd(i) => Arc::clone(i) as Arc<dyn VfioOps>,
        }
    }

    /// The IOVA ranges DMA may use (`VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE` /
    /// `IOMMU_IOAS_IOVA_RANGES`) and the minimum mapping granule (smallest IOMMU page size,
    /// or the IOAS alignment). Query after the devices are attached: they narrow the ranges.
    /// A type1 container of mdevs only reports no range at all, which means no restriction:
    /// the whole 64-bit space is returned then.
    pub fn iova_ranges(&self) -> Result<(u64, Vec<IovaRange>)> {
        let r = match &self.iommu {
            Iommu::Legacy(c) => ContainerFd::of(c).type1_info().map(|(pg, r)| {
                let granule = if pg == 0 {
                    4096
                } else {
                    1 << pg.trailing_zeros()
                };
                (granule, unrestricted_if_none(r))
            }),
            Iommu::Iommufd(i) => IommufdFd::of(i.iommufd()).ioas_iova_ranges(i.ioas().id()),
        };
        r.map_err(|source| DeviceError::Io {
            device: self.kind().as_str().into(),
            what: "query the IOVA ranges".into(),
            source,
        })
    }

    /// Maps `len` bytes at `host` to `iova` for device DMA (read and write).
    ///
    /// # Safety
    /// `host..host+len` must stay mapped in this process until [`VfioContext::dma_unmap`]
    /// succeeds for the same range, and must only be accessed through raw pointers
    /// meanwhile (the device writes it at any time).
    pub unsafe fn dma_map(&self, iova: u64, len: u64, host: *mut u8) -> Result<()> {
        let size = usize::try_from(len)
            .map_err(|_| DeviceError::InvalidArgument(format!("DMA size {len:#x} too large")))?;
        // SAFETY: the caller upholds the contract stated above, which is vfio-ioctls'.
        let r = unsafe {
            match &self.iommu {
                Iommu::Legacy(c) => c.vfio_dma_map(iova, size, host),
                Iommu::Iommufd(i) => i.vfio_dma_map(iova, size, host),
            }
        };
        r.map_err(|e| self.dma_err("map", iova, len, &e))
    }

    /// Unmaps a range mapped with [`VfioContext::dma_map`].
    pub fn dma_unmap(&self, iova: u64, len: u64) -> Result<()> {
        let size = usize::try_from(len)
            .map_err(|_| DeviceError::InvalidArgument(format!("DMA size {len:#x} too large")))?;
        let r = match &self.iommu {
            Iommu::Legacy(c) => c.vfio_dma_unmap(iova, size),
            Iommu::Iommufd(i) => i.vfio_dma_unmap(iova, size),
        };
        r.map_err(|e| self.dma_err("unmap", iova, len, &e))
    }

    fn dma_err(
        &self,
        op: &'static str,
        iova: u64,
        len: u64,
        e: &vfio_ioctls::VfioError,
    ) -> DeviceError {
        DeviceError::Dma {
            device: self.kind().as_str().into(),
            op,
            iova,
            len,
            source: vfio_io_error(e),
        }
    }
}

/// type1 reports no IOVA range capability at all when the container holds only mdevs
/// (their emulated IOMMU has an empty range list, and the kernel then accepts any IOVA:
/// `vfio_iommu_iova_dma_valid`); no capability means no restriction, the whole 64-bit space
/// (as QEMU reads it too).
fn unrestricted_if_none(ranges: Vec<IovaRange>) -> Vec<IovaRange> {
    if ranges.is_empty() {
        vec![IovaRange {
            start: 0,
            last: u64::MAX,
        }]
    } else {
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_iova_range_capability_means_the_whole_space() {
        assert_eq!(
            unrestricted_if_none(Vec::new()),
            [IovaRange {
                start: 0,
                last: u64::MAX
            }]
        );
        let r = vec![IovaRange {
            start: 0,
            last: 0xfedf_ffff,
        }];
        assert_eq!(unrestricted_if_none(r.clone()), r);
    }
}
