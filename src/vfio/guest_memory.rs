//! Device DMA into a VMM's guest memory: every region of a `GuestMemoryMmap` mapped into a
//! [`VfioContext`] (its container or IOAS) in one call, at IOVA = guest address or where an
//! [`IovaLayout`] puts it; unmapped by [`GuestMemoryDma::unmap`] or on drop.
//!
//! The mapping keeps each region's memory alive (vm-memory's `Arc<MmapRegion>`) until it is
//! unmapped, so the host range the device reaches cannot be freed under it; when an unmap
//! fails, that region is leaked rather than freed. vm-memory gives access to guest memory
//! only through volatile copies and raw pointers, never through Rust references, which is
//! what memory written by a device at any time requires: so mapping is a safe call.
//!
//! Device writes are not recorded in a `GuestMemoryMmap`'s dirty bitmap: track them with
//! the device's DMA logging when migrating the VM.

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::Arc;

use vm_memory::bitmap::Bitmap;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress,
};

use super::context::{IommuKind, VfioContext};
use super::guest_dma_error::GuestDmaError;
use super::ioctl::IovaRange;
use crate::device::DeviceError;

/// Where each guest memory region goes in the IO address space.
///
/// # Example
///
/// ```
/// use vm_memory::GuestAddress;
/// use vfio_harness::vfio::IovaLayout;
///
/// // IOVA = guest address (the default).
/// assert_eq!(IovaLayout::Identity.iova(0, GuestAddress(0x1000), 0x1000), Some(0x1000));
/// // Shifted: guest RAM at 4 GiB seen by the device at 1 GiB.
/// let down = IovaLayout::Offset(-(3 << 30));
/// assert_eq!(down.iova(0, GuestAddress(4 << 30), 0x1000), Some(1 << 30));
/// // Any function of (region index, guest address, length); None refuses the region.
/// let packed = IovaLayout::function(|i, _gpa, _len| Some(0x1000_0000 * (i as u64 + 1)));
/// assert_eq!(packed.iova(1, GuestAddress(0), 0x1000), Some(0x2000_0000));
/// ```
#[derive(Default)]
#[non_exhaustive]
pub enum IovaLayout {
    /// IOVA = guest physical address (the default).
    #[default]
    Identity,
    /// IOVA = guest physical address + this (negative: below); overflow is an error.
    Offset(i64),
    /// IOVA chosen by a function of (region index, guest address, length in bytes); `None`
    /// refuses the region (an error naming it).
    #[allow(clippy::type_complexity)]
    Function(Box<dyn Fn(usize, GuestAddress, u64) -> Option<u64> + Send + Sync>),
}

impl IovaLayout {
    /// [`IovaLayout::Function`] from a closure.
    ///
    /// # Example
    ///
    /// ```
    /// use vm_memory::GuestAddress;
    /// let l = vfio_harness::vfio::IovaLayout::function(|_, gpa, _| gpa.0.checked_add(1 << 40));
    /// assert_eq!(l.iova(0, GuestAddress(0), 4096), Some(1 << 40));
    /// ```
    pub fn function(
        f: impl Fn(usize, GuestAddress, u64) -> Option<u64> + Send + Sync + 'static,
    ) -> IovaLayout {
        IovaLayout::Function(Box::new(f))
    }

    /// The IOVA of region `region` (guest address `guest_addr`, `len` bytes), `None` when the
    /// layout has none (overflow, or the function refused).
    ///
    /// # Example
    ///
    /// ```
    /// use vm_memory::GuestAddress;
    /// use vfio_harness::vfio::IovaLayout;
    /// assert_eq!(IovaLayout::Offset(-1).iova(0, GuestAddress(0), 4096), None);
    /// ```
    pub fn iova(&self, region: usize, guest_addr: GuestAddress, len: u64) -> Option<u64> {
        match self {
            IovaLayout::Identity => Some(guest_addr.0),
            IovaLayout::Offset(d) => guest_addr.0.checked_add_signed(*d),
            IovaLayout::Function(f) => f(region, guest_addr, len),
        }
    }
}

impl fmt::Debug for IovaLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IovaLayout::Identity => f.write_str("Identity"),
            IovaLayout::Offset(d) => f.debug_tuple("Offset").field(d).finish(),
            IovaLayout::Function(_) => f.write_str("Function(..)"),
        }
    }
}

/// One guest memory region as mapped (or planned) for DMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRegionDma {
    /// Index of the region in the `GuestMemoryMmap` (in its address order).
    pub region: usize,
    /// Guest physical address of its first byte.
    pub guest_addr: u64,
    /// IO virtual address of its first byte.
    pub iova: u64,
    /// Length in bytes.
    pub len: u64,
    /// Host virtual address of its first byte (this process).
    pub host_addr: usize,
}

impl GuestRegionDma {
    /// The last IOVA of the region (inclusive).
    ///
    /// # Example
    ///
    /// ```
    /// let r = vfio_harness::vfio::GuestRegionDma {
    ///     region: 0,
    ///     guest_addr: 0,
    ///     iova: 0x1000,
    ///     len: 0x2000,
    ///     host_addr: 0,
    /// };
    /// assert_eq!(r.last_iova(), 0x2fff);
    /// ```
    pub fn last_iova(&self) -> u64 {
        self.iova.saturating_add(self.len.saturating_sub(1))
    }
}

/// A failed map or unmap: the kernel's error and a hint.
pub(crate) struct DmaFailure {
    pub(crate) source: io::Error,
    pub(crate) hint: String,
}

/// An IO address space guest memory is mapped into: a [`VfioContext`], or a stand-in in
/// tests.
pub(crate) trait DmaTarget: Send + Sync {
    /// `legacy`, `iommufd`... for messages.
    fn label(&self) -> String;

    /// The mapping granule and the allowed IOVA ranges; `None` when the IOMMU does not
    /// report them yet (the kernel then judges each mapping).
    fn constraints(&self) -> Result<Option<(u64, Vec<IovaRange>)>, DmaFailure>;

    /// Maps `len` bytes at `host` to `iova`.
    ///
    /// # Safety
    /// `host..host+len` must stay mapped until unmapped here, and only be accessed through
    /// raw pointers meanwhile (the device writes it at any time).
    unsafe fn map(&self, iova: u64, len: u64, host: *mut u8) -> Result<(), DmaFailure>;

    /// Unmaps a range mapped with [`DmaTarget::map`].
    fn unmap(&self, iova: u64, len: u64) -> Result<(), DmaFailure>;
}

fn failure(e: DeviceError) -> DmaFailure {
    match e {
        DeviceError::Dma { source, .. } | DeviceError::Io { source, .. } => DmaFailure {
            hint: crate::device::errno_hint(source.raw_os_error()).to_string(),
            source,
        },
        other => DmaFailure {
            source: io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
            hint: String::new(),
        },
    }
}

impl DmaTarget for VfioContext {
    fn label(&self) -> String {
        self.kind().as_str().to_string()
    }

    fn constraints(&self) -> Result<Option<(u64, Vec<IovaRange>)>, DmaFailure> {
        match self.iova_ranges() {
            Ok(c) => Ok(Some(c)),
            // A legacy container has no IOMMU before a group is attached to it, and the
            // kernel answers VFIO_IOMMU_GET_INFO with EINVAL then: nothing is reported yet.
            Err(DeviceError::Io { source, .. })
                if self.kind() == IommuKind::Legacy
                    && source.raw_os_error() == Some(libc::EINVAL) =>
            {
                Ok(None)
            }
            Err(e) => Err(failure(e)),
        }
    }

    unsafe fn map(&self, iova: u64, len: u64, host: *mut u8) -> Result<(), DmaFailure> {
        // SAFETY: the caller upholds the same contract as VfioContext::dma_map's.
        unsafe { self.dma_map(iova, len, host) }.map_err(failure)
    }

    fn unmap(&self, iova: u64, len: u64) -> Result<(), DmaFailure> {
        self.dma_unmap(iova, len).map_err(failure)
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// A region as vm-memory describes it: `(guest address, length, host address)`.
pub(crate) type RegionSpan = (u64, u64, usize);

/// Where each region goes: IOVAs from `layout`, every range inside 64 bits, aligned to
/// `granule`, no two overlapping. In region order.
pub(crate) fn plan(
    spans: &[RegionSpan],
    layout: &IovaLayout,
    granule: u64,
) -> Result<Vec<GuestRegionDma>, GuestDmaError> {
    let mut out = Vec::with_capacity(spans.len());
    for (region, &(guest_addr, len, host_addr)) in spans.iter().enumerate() {
        let bad = |reason: &str| GuestDmaError::Iova {
            region,
            guest_addr,
            len,
            reason: reason.to_string(),
        };
        if len == 0 {
            return Err(bad("the region is empty"));
        }
        let iova = layout
            .iova(region, GuestAddress(guest_addr), len)
            .ok_or_else(|| match layout {
                IovaLayout::Offset(d) => bad(&format!(
                    "guest address {guest_addr:#x} {} {:#x} leaves the 64-bit IO address space",
                    if *d < 0 { "-" } else { "+" },
                    d.unsigned_abs()
                )),
                _ => bad("the IOVA layout gave it no IOVA"),
            })?;
        if iova.checked_add(len - 1).is_none() {
            return Err(bad(&format!(
                "its IOVA range from {iova:#x} runs past the end of the 64-bit IO address space"
            )));
        }
        let r = GuestRegionDma {
            region,
            guest_addr,
            iova,
            len,
            host_addr,
        };
        check_granule(&r, granule)?;
        out.push(r);
    }
    let mut by_iova: Vec<&GuestRegionDma> = out.iter().collect();
    by_iova.sort_by_key(|r| r.iova);
    for w in by_iova.windows(2) {
        if w[1].iova <= w[0].last_iova() {
            return Err(GuestDmaError::Overlap {
                first: w[0].region,
                second: w[1].region,
                iova: w[1].iova,
            });
        }
    }
    Ok(out)
}

fn check_granule(r: &GuestRegionDma, granule: u64) -> Result<(), GuestDmaError> {
    let g = granule.max(1);
    if r.iova % g != 0 || r.len % g != 0 || (r.host_addr as u64) % g != 0 {
        return Err(GuestDmaError::Misaligned {
            region: r.region,
            guest_addr: r.guest_addr,
            iova: r.iova,
            len: r.len,
            host_addr: r.host_addr,
            granule: g,
        });
    }
    Ok(())
}

/// Checks the plan against what the IOMMU reports (granule, allowed ranges), when it does.
fn check_constraints(
    plan: &[GuestRegionDma],
    constraints: Option<(u64, Vec<IovaRange>)>,
) -> Result<(), GuestDmaError> {
    let Some((granule, allowed)) = constraints else {
        return Ok(());
    };
    for r in plan {
        check_granule(r, granule)?;
        let last = r.last_iova();
        if !allowed.is_empty() && !allowed.iter().any(|a| r.iova >= a.start && last <= a.last) {
            return Err(GuestDmaError::OutsideIovaRanges {
                region: r.region,
                iova: r.iova,
                len: r.len,
                allowed,
            });
        }
    }
    Ok(())
}

/// What keeps a mapped region's memory alive (vm-memory's `Arc<MmapRegion>`).
type Keep = Box<dyn Any + Send + Sync>;

/// Guest memory regions from `GuestMemoryMmap` with what keeps each alive.
fn spans_of<B>(mem: &GuestMemoryMmap<B>) -> Result<(Vec<RegionSpan>, Vec<Keep>), GuestDmaError>
where
    B: Bitmap + Send + Sync + 'static,
{
    let mut spans = Vec::with_capacity(mem.num_regions());
    let mut keep: Vec<Keep> = Vec::with_capacity(mem.num_regions());
    for (region, r) in mem.iter().enumerate() {
        let guest_addr = r.start_addr().0;
        let host = r
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|_| GuestDmaError::NoHostAddress { region, guest_addr })?;
        spans.push((guest_addr, r.len(), host as usize));
        keep.push(Box::new(r.get_mmap()));
    }
    Ok((spans, keep))
}

/// Computes where every region of `mem` would be mapped, without mapping anything: the
/// checks [`VfioContext::map_guest_memory_with`] makes before asking the kernel (IOVAs
/// from the layout, 64-bit overflow, host page alignment, overlaps), in region order.
///
/// # Example
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use vm_memory::{GuestAddress, GuestMemoryMmap};
/// use vfio_harness::vfio::{plan_guest_dma, GuestDmaError, IovaLayout};
///
/// let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[
///     (GuestAddress(0), 1 << 20),
///     (GuestAddress(1 << 32), 1 << 20),
/// ])?;
/// let plan = plan_guest_dma(&mem, &IovaLayout::Identity)?;
/// assert_eq!(plan[1].iova, 1 << 32);
///
/// // Packing both regions at IOVA 0 is refused, naming them.
/// let e = plan_guest_dma(&mem, &IovaLayout::function(|_, _, _| Some(0))).unwrap_err();
/// assert!(matches!(e, GuestDmaError::Overlap { first: 0, second: 1, .. }));
/// # Ok(())
/// # }
/// ```
pub fn plan_guest_dma<B>(
    mem: &GuestMemoryMmap<B>,
    layout: &IovaLayout,
) -> Result<Vec<GuestRegionDma>, GuestDmaError>
where
    B: Bitmap + Send + Sync + 'static,
{
    let (spans, _) = spans_of(mem)?;
    plan(&spans, layout, page_size())
}

/// Guest memory mapped for device DMA: every region of a `GuestMemoryMmap`, each kept alive
/// until unmapped. Unmapped by [`GuestMemoryDma::unmap`] (which reports failures) or, best
/// effort, on drop; a region whose unmap fails is leaked, never freed under the device.
///
/// Made by [`VfioContext::map_guest_memory`] and [`VfioContext::map_guest_memory_with`].
pub struct GuestMemoryDma {
    space: Arc<dyn DmaTarget>,
    regions: Vec<GuestRegionDma>,
    keep: Vec<Keep>,
}

impl GuestMemoryDma {
    /// Maps the planned regions in order, after checking them against what the IOMMU
    /// reports. On a failure the regions mapped so far are unmapped again.
    pub(crate) fn map(
        space: Arc<dyn DmaTarget>,
        plan: Vec<GuestRegionDma>,
        keep: Vec<Keep>,
    ) -> Result<GuestMemoryDma, GuestDmaError> {
        let mut done = GuestMemoryDma {
            space,
            regions: Vec::with_capacity(plan.len()),
            keep: Vec::with_capacity(plan.len()),
        };
        match done.space.constraints() {
            Ok(c) => check_constraints(&plan, c)?,
            // Reported against the first region, the one that was about to be mapped (with
            // no region there is nothing to check).
            Err(f) => {
                if let Some(first) = plan.first() {
                    return Err(done.error("query of the IOVA ranges", first, f));
                }
            }
        }
        for (r, k) in plan.into_iter().zip(keep) {
            // SAFETY: `r.host_addr..+r.len` is the host mapping of a vm-memory region (plan
            // built from it, or a stand-in's in tests) that `k` keeps alive; `k` stays in
            // `done` until the range is unmapped (or is leaked when that fails), and
            // vm-memory accesses the memory only through volatile copies and raw pointers.
            let mapped = unsafe { done.space.map(r.iova, r.len, r.host_addr as *mut u8) };
            if let Err(f) = mapped {
                let e = done.error("map", &r, f);
                // Dropping `done` unmaps what was mapped before (leaking what fails to).
                drop(done);
                return Err(e);
            }
            done.regions.push(r);
            done.keep.push(k);
        }
        Ok(done)
    }

    fn error(&self, op: &'static str, r: &GuestRegionDma, f: DmaFailure) -> GuestDmaError {
        GuestDmaError::Dma {
            space: self.space.label(),
            op,
            region: r.region,
            guest_addr: r.guest_addr,
            iova: r.iova,
            len: r.len,
            source: f.source,
            hint: f.hint,
        }
    }

    /// The mapped regions, in the `GuestMemoryMmap`'s order.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ctx: std::sync::Arc<vfio_harness::vfio::VfioContext> = unimplemented!();
    /// # let mem: vm_memory::GuestMemoryMmap = unimplemented!();
    /// let dma = ctx.map_guest_memory(&mem)?;
    /// for r in dma.regions() {
    ///     println!("region {}: guest {:#x} -> IOVA {:#x}, {:#x} bytes", r.region, r.guest_addr, r.iova, r.len);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn regions(&self) -> &[GuestRegionDma] {
        &self.regions
    }

    /// The IOVA of guest address `addr`, `None` when no mapped region holds it.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ctx: std::sync::Arc<vfio_harness::vfio::VfioContext> = unimplemented!();
    /// # let mem: vm_memory::GuestMemoryMmap = unimplemented!();
    /// use vm_memory::GuestAddress;
    /// use vfio_harness::vfio::IovaLayout;
    ///
    /// let dma = ctx.map_guest_memory_with(&mem, &IovaLayout::Offset(1 << 40))?;
    /// assert_eq!(dma.iova(GuestAddress(0x1000)), Some((1 << 40) + 0x1000));
    /// # Ok(())
    /// # }
    /// ```
    pub fn iova(&self, addr: GuestAddress) -> Option<u64> {
        self.regions
            .iter()
            .find(|r| addr.0 >= r.guest_addr && addr.0 - r.guest_addr < r.len)
            .map(|r| r.iova + (addr.0 - r.guest_addr))
    }

    /// Unmaps every region (last first), going on past failures; the first failure is
    /// returned, naming its region, and every region that failed is leaked (its memory
    /// never freed: the device may still reach it).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ctx: std::sync::Arc<vfio_harness::vfio::VfioContext> = unimplemented!();
    /// # let mem: vm_memory::GuestMemoryMmap = unimplemented!();
    /// let dma = ctx.map_guest_memory(&mem)?;
    /// // ... the device works on guest memory ...
    /// if let Err(e) = dma.unmap() {
    ///     eprintln!("region {} stays mapped: {e} (errno {:?})", e.region(), e.errno());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn unmap(mut self) -> Result<(), GuestDmaError> {
        self.unmap_all()
    }

    fn unmap_all(&mut self) -> Result<(), GuestDmaError> {
        let mut first = None;
        while let (Some(r), Some(k)) = (self.regions.pop(), self.keep.pop()) {
            match self.space.unmap(r.iova, r.len) {
                Ok(()) => drop(k),
                Err(f) => {
                    // The device may still reach this memory: never free it.
                    std::mem::forget(k);
                    if first.is_none() {
                        first = Some(self.error("unmap", &r, f));
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for GuestMemoryDma {
    fn drop(&mut self) {
        // Best effort: a failure leaks the region (unmap_all); call `unmap` to see it.
        let _ = self.unmap_all();
    }
}

impl fmt::Debug for GuestMemoryDma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestMemoryDma")
            .field("space", &self.space.label())
            .field("regions", &self.regions)
            .finish()
    }
}

impl VfioContext {
    /// Maps every region of the VMM's guest memory for device DMA at IOVA = guest address
    /// ([`IovaLayout::Identity`]); see [`VfioContext::map_guest_memory_with`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use vm_memory::{GuestAddress, GuestMemoryMmap};
    /// use vfio_harness::vfio::VfioContext;
    ///
    /// // The VMM's container (its devices already in it) and guest memory.
    /// let container = Arc::new(vfio_ioctls::VfioContainer::new(None)?);
    /// # let node = std::path::Path::new("/sys/bus/pci/devices/0000:00:03.0");
    /// # let _dev = vfio_ioctls::VfioDevice::new(node, container.clone(), true)?;
    /// let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[
    ///     (GuestAddress(0), 512 << 20),
    ///     (GuestAddress(1 << 32), 512 << 20),
    /// ])?;
    ///
    /// let ctx = Arc::new(VfioContext::from_container(container));
    /// let dma = ctx.map_guest_memory(&mem)?;
    /// assert_eq!(dma.regions().len(), 2);
    /// dma.unmap()?; // or drop it
    /// # Ok(())
    /// # }
    /// ```
    pub fn map_guest_memory<B>(
        self: &Arc<Self>,
        mem: &GuestMemoryMmap<B>,
    ) -> Result<GuestMemoryDma, GuestDmaError>
    where
        B: Bitmap + Send + Sync + 'static,
    {
        self.map_guest_memory_with(mem, &IovaLayout::Identity)
    }

    /// Maps every region of `mem` for device DMA (read and write) where `layout` puts it.
    ///
    /// Before the kernel is asked, the IOVAs are checked ([`plan_guest_dma`]: 64-bit
    /// overflow, host page alignment, overlaps) and, when the IOMMU reports them (once a
    /// device is attached), against its granule and allowed IOVA ranges; each refusal is a
    /// [`GuestDmaError`] naming the region. A kernel refusal keeps the errno (`ENOMEM`/
    /// `EPERM`: memlock limit; `EEXIST`: overlaps an existing mapping; `EINVAL`: outside the
    /// IOMMU's ranges) and the regions mapped before it are unmapped again. The regions stay
    /// alive (and mapped) as long as the returned [`GuestMemoryDma`], even if the VMM drops
    /// its `GuestMemoryMmap`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ctx: std::sync::Arc<vfio_harness::vfio::VfioContext> = unimplemented!();
    /// use vm_memory::{GuestAddress, GuestMemoryMmap};
    /// use vfio_harness::vfio::{GuestDmaError, IovaLayout};
    ///
    /// let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(4 << 30), 1 << 30)])?;
    /// // The device sees guest RAM at 4 GiB as IOVA 0.
    /// match ctx.map_guest_memory_with(&mem, &IovaLayout::Offset(-(4 << 30))) {
    ///     Ok(dma) => println!("{dma:?}"),
    ///     Err(e @ GuestDmaError::Dma { .. }) => eprintln!("errno {:?}: {e}", e.errno()),
    ///     Err(e) => eprintln!("region {}: {e}", e.region()),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn map_guest_memory_with<B>(
        self: &Arc<Self>,
        mem: &GuestMemoryMmap<B>,
        layout: &IovaLayout,
    ) -> Result<GuestMemoryDma, GuestDmaError>
    where
        B: Bitmap + Send + Sync + 'static,
    {
        let (spans, keep) = spans_of(mem)?;
        let planned = plan(&spans, layout, page_size())?;
        GuestMemoryDma::map(Arc::clone(self) as Arc<dyn DmaTarget>, planned, keep)
    }
}

#[cfg(test)]
#[path = "guest_memory_tests.rs"]
mod tests;
