//! The DMA round trip check: a device copies a known pattern from one mapped host buffer
//! into its own memory and back out into another, chunk by chunk; the bytes must come back
//! unchanged, the guard after the copy must stay untouched, and the device's interrupt
//! must arrive on its eventfd. Optionally ([`CheckOptions::unmapped`]) the IOMMU is then
//! shown to refuse the device: with both mappings removed, a DMA to and from their IOVAs
//! must reach neither the host memory nor the device.

use serde::Serialize;

use super::engine::DmaEngine;
use super::error::{DriverError, Result};
use super::space::{DmaRegion, DmaSpace};
use crate::device::Device;
use crate::vfio::dma::{pick_iova, HUGE_2M};

/// Lowest IOVA the exercises place buffers at (keeps clear of address 0).
pub const IOVA_FLOOR: u64 = 1 << 20;

/// Byte `i` of the check pattern (different in every byte of a 64 KiB run, never constant
/// across a page, unlike the 0xa5 guard).
pub fn check_byte(i: u64) -> u8 {
    (i as u8) ^ ((i >> 8) as u8).wrapping_mul(31) ^ 0x5a
}

/// What [`dma_check`] found (`dma --check --json`: `check`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckReport {
    /// Driver that moved the bytes (`edu`, `vhgpu`).
    pub driver: &'static str,
    /// Bytes pushed through the device.
    pub bytes: u64,
    /// Transfers each way (the driver's largest transfer bounds a chunk).
    pub chunks: u64,
    /// IOVA of the source buffer (pattern, host -> device).
    pub src_iova: u64,
    /// IOVA of the destination buffer (device -> host).
    pub dst_iova: u64,
    /// Whether 2 MiB hugetlb pages backed both buffers (asked for and available).
    pub hugepages: bool,
    /// Whether the destination equals the pattern.
    pub matched: bool,
    /// Offset of the first differing byte, when one differs.
    pub first_mismatch: Option<u64>,
    /// Whether the destination's bytes after the copy (up to the end of its last page, at
    /// least one page) still hold the 0xa5 fill: the device wrote nothing past the copy.
    pub guard_intact: bool,
    /// Time from asking the device to raise its interrupt to its arrival, in microseconds.
    pub msi_latency_us: f64,
    /// Wall time of all transfers, in seconds.
    pub dma_seconds: f64,
    /// The DMA after unmapping ([`CheckOptions::unmapped`]); absent when not asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmapped: Option<UnmappedReport>,
}

impl CheckReport {
    /// Whether the check passed: bytes equal and guard intact (and, when probed, the device
    /// reached neither unmapped buffer).
    pub fn passed(&self) -> bool {
        self.matched && self.guard_intact && self.unmapped.as_ref().is_none_or(|u| u.blocked())
    }
}

/// What the device's DMA did at IOVAs whose mappings had been removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnmappedReport {
    /// Bytes of each probing transfer.
    pub bytes: u64,
    /// The (unmapped) destination IOVA the device was told to write to.
    pub write_iova: u64,
    /// Whether the host memory that was mapped there kept its 0xa5 fill.
    pub write_blocked: bool,
    /// The error the device reported for that write, if it reported one (edu reports
    /// nothing: the IOMMU drops the write and logs a fault).
    pub write_error: Option<String>,
    /// The (unmapped) source IOVA the device was told to read from.
    pub read_iova: u64,
    /// Whether the device did not receive the pattern from there (its memory, cleared
    /// beforehand, was DMA-ed out into a mapped buffer and compared).
    pub read_blocked: bool,
    /// The error the device reported for that read, if it reported one.
    pub read_error: Option<String>,
}

impl UnmappedReport {
    /// Whether the device reached neither unmapped buffer.
    pub fn blocked(&self) -> bool {
        self.write_blocked && self.read_blocked
    }
}

/// How [`dma_check_with`] runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Bytes pushed through the device.
    pub bytes: u64,
    /// Device-memory offset the check uses.
    pub dev_offset: u64,
    /// IOVA of the source buffer (the destination follows it); `None`: the lowest fitting
    /// IOVA at or above [`IOVA_FLOOR`]. Not checked against the IOVA ranges: the kernel
    /// decides, and a map it refuses is an error. It must stay below the device's DMA limit.
    pub iova: Option<u64>,
    /// Back the buffers with 2 MiB hugetlb pages when available (buffers are then placed
    /// and sized in 2 MiB steps).
    pub hugepages: bool,
    /// After the round trip, remove both mappings (keeping the memory) and have the device
    /// DMA to the destination's IOVA and from the source's: [`UnmappedReport`].
    pub unmapped: bool,
}

impl CheckOptions {
    /// `bytes` at device offset `dev_offset`; lowest IOVAs, normal pages, no unmapped probe.
    pub fn new(bytes: u64, dev_offset: u64) -> CheckOptions {
        CheckOptions {
            bytes,
            dev_offset,
            iova: None,
            hugepages: false,
            unmapped: false,
        }
    }
}

/// Pushes `bytes` of [`check_byte`] pattern through the device's DMA engine at device
/// offset `dev_offset` and back, then has it raise its interrupt: [`dma_check_with`] with
/// [`CheckOptions::new`].
pub fn dma_check(
    dev: &dyn Device,
    space: &dyn DmaSpace,
    bytes: u64,
    dev_offset: u64,
) -> Result<CheckReport> {
    dma_check_with(dev, space, &CheckOptions::new(bytes, dev_offset))
}

/// The DMA round trip check.
///
/// When the whole check fits in device memory every chunk goes to its own place there;
/// otherwise (edu's 4 KiB buffer) every chunk reuses the window at `dev_offset`. Buffers
/// are placed in `space` below the device's DMA limit; the device is restored and the
/// buffers unmapped before returning, also on errors.
pub fn dma_check_with(
    dev: &dyn Device,
    space: &dyn DmaSpace,
    o: &CheckOptions,
) -> Result<CheckReport> {
    let (bytes, dev_offset) = (o.bytes, o.dev_offset);
    let mut eng = DmaEngine::probe(dev)?;
    let invalid = |reason: String| DriverError::InvalidArgument {
        device: dev.name().to_string(),
        reason,
    };
    if bytes == 0 {
        return Err(invalid("a DMA check needs at least 1 byte".into()));
    }
    let lim = eng.limits();
    let chunk = lim.max_transfer as u64;
    let spread = lim.fits_device(dev_offset, bytes);
    if !spread && !lim.fits_device(dev_offset, bytes.min(chunk)) {
        return Err(invalid(format!(
            "a {}-byte chunk at device offset {dev_offset:#x} does not fit in its {} byte(s) of device memory",
            bytes.min(chunk),
            lim.device_memory
        )));
    }
    usize::try_from(bytes)
        .map_err(|_| invalid(format!("{bytes} bytes do not fit in this process")))?;
    let (granule, ranges) = space.iova_ranges()?;
    let page = if o.hugepages {
        granule.max(HUGE_2M)
    } else {
        granule
    };
    let buf_len = bytes.div_ceil(page) * page + page; // + a guard page
    let no_iova = |what| DriverError::NoIova {
        device: dev.name().to_string(),
        what,
    };
    let limit = Some(lim.dma_limit);
    let src_iova = match o.iova {
        Some(i) => {
            if !matches!(i.checked_add(buf_len), Some(e) if e <= lim.dma_limit) {
                return Err(invalid(format!(
                    "the check's buffers ({buf_len:#x} bytes each) from IOVA {i:#x} go beyond the device's DMA limit {:#x}",
                    lim.dma_limit
                )));
            }
            i
        }
        None => pick_iova(&ranges, buf_len, page, IOVA_FLOOR, limit)
            .ok_or_else(|| no_iova("source buffer"))?,
    };
    let dst_iova = pick_iova(&ranges, buf_len, page, src_iova + buf_len, limit)
        .ok_or_else(|| no_iova("destination buffer"))?;
    let pattern: Vec<u8> = (0..bytes).map(check_byte).collect();
    let mut src = space.map_buffer_pages(src_iova, buf_len, 0, o.hugepages)?;
    src.write(0, &pattern)?;
    let mut dst = space.map_buffer_pages(dst_iova, buf_len, 0xa5, o.hugepages)?;
    let hugepages = src.hugepages() && dst.hugepages();
    eng.init()?;
    let run = round_trips(&mut eng, src_iova, dst_iova, bytes, dev_offset, spread)
        .and_then(|r| Ok((r, inspect(dst.as_ref(), &pattern, buf_len)?)));
    let probe = match (&run, o.unmapped) {
        (Ok(_), true) => {
            let after = Placement {
                ranges: &ranges,
                page,
                floor: dst_iova + buf_len,
                limit,
            };
            Some(unmapped_probe(
                &mut eng, space, &mut src, &mut dst, &pattern, dev_offset, &after,
            ))
        }
        _ => None,
    };
    // The device stops reaching host memory before the buffers are unmapped.
    let removed = eng.remove();
    let ((chunks, dma_seconds, msi), (first_mismatch, guard_intact)) = run?;
    let unmapped = probe.transpose()?;
    removed?;
    dst.unmap()?;
    src.unmap()?;
    Ok(CheckReport {
        driver: eng.name(),
        bytes,
        chunks,
        src_iova,
        dst_iova,
        hugepages,
        matched: first_mismatch.is_none(),
        first_mismatch,
        guard_intact,
        msi_latency_us: msi * 1e6,
        dma_seconds,
        unmapped,
    })
}

/// The destination after the round trip: the first byte that differs from the pattern,
/// and whether the guard after the copy still holds its 0xa5 fill.
fn inspect(dst: &dyn DmaRegion, pattern: &[u8], buf_len: u64) -> Result<(Option<u64>, bool)> {
    let mut got = vec![0u8; pattern.len()];
    dst.read(0, &mut got)?;
    let first_mismatch = got
        .iter()
        .zip(pattern)
        .position(|(a, b)| a != b)
        .map(|p| p as u64);
    let mut guard = vec![0u8; (buf_len - pattern.len() as u64) as usize];
    dst.read(pattern.len() as u64, &mut guard)?;
    Ok((first_mismatch, guard.iter().all(|&b| b == 0xa5)))
}

/// Where further buffers go: above `floor`, in `page` steps, inside `ranges`, below `limit`.
struct Placement<'r> {
    ranges: &'r [crate::vfio::IovaRange],
    page: u64,
    floor: u64,
    limit: Option<u64>,
}

/// The IOMMU refuses the device once the mappings are gone: the pattern's first chunk is
/// put into the device from the still-mapped source, the destination's host memory is set
/// back to 0xa5, both mappings are removed (the memory stays), and then
/// - device -> the destination's IOVA: the host memory must keep its 0xa5;
/// - the device's window is cleared from a fresh mapped buffer of zeros, then the source's
///   IOVA -> device, then device -> the fresh buffer: it must not hold the pattern.
///
/// A transfer the device reports as failed counts as refused (its error is kept); other
/// errors (timeouts, set-up) are returned.
fn unmapped_probe(
    eng: &mut DmaEngine<'_>,
    space: &dyn DmaSpace,
    src: &mut Box<dyn DmaRegion + '_>,
    dst: &mut Box<dyn DmaRegion + '_>,
    pattern: &[u8],
    dev_offset: u64,
    after: &Placement<'_>,
) -> Result<UnmappedReport> {
    let n = pattern.len().min(eng.limits().max_transfer);
    let (src_iova, dst_iova) = (src.iova(), dst.iova());
    eng.to_device(src_iova, dev_offset, n)?;
    dst.write(0, &vec![0xa5; n])?;
    dst.unmap_keep()?;
    src.unmap_keep()?;
    let refused = |r: Result<std::time::Duration>| match r {
        Ok(_) => Ok(None),
        Err(e @ DriverError::Device { .. }) => Ok(Some(e.to_string())),
        Err(e) => Err(e),
    };
    let write_error = refused(eng.from_device(dst_iova, dev_offset, n))?;
    let mut got = vec![0u8; n];
    dst.read(0, &mut got)?;
    let write_blocked = got.iter().all(|&b| b == 0xa5);

    let len = (n as u64).div_ceil(after.page) * after.page;
    let c_iova =
        pick_iova(after.ranges, len, after.page, after.floor, after.limit).ok_or_else(|| {
            DriverError::NoIova {
                device: eng.device().name().to_string(),
                what: "read-back buffer",
            }
        })?;
    let c = space.map_buffer(c_iova, len, 0)?;
    let probe: Result<Option<String>> = (|| {
        eng.to_device(c_iova, dev_offset, n)?;
        let read_error = refused(eng.to_device(src_iova, dev_offset, n))?;
        eng.from_device(c_iova, dev_offset, n)?;
        c.read(0, &mut got)?;
        Ok(read_error)
    })();
    let unmapped = c.unmap();
    let read_error = probe?;
    unmapped?;
    Ok(UnmappedReport {
        bytes: n as u64,
        write_iova: dst_iova,
        write_blocked,
        write_error,
        read_iova: src_iova,
        read_blocked: got != pattern[..n],
        read_error,
    })
}

/// The transfers and the interrupt: `(chunks, dma seconds, interrupt latency seconds)`.
fn round_trips(
    eng: &mut DmaEngine<'_>,
    src_iova: u64,
    dst_iova: u64,
    bytes: u64,
    dev_offset: u64,
    spread: bool,
) -> Result<(u64, f64, f64)> {
    let chunk = eng.limits().max_transfer as u64;
    let mut off = 0;
    let mut chunks = 0;
    let t = std::time::Instant::now();
    while off < bytes {
        let n = (bytes - off).min(chunk) as usize;
        let at = dev_offset + if spread { off } else { 0 };
        eng.to_device(src_iova + off, at, n)?;
        eng.from_device(dst_iova + off, at, n)?;
        off += n as u64;
        chunks += 1;
    }
    let dma_seconds = t.elapsed().as_secs_f64();
    let msi = eng.send_msi()?;
    Ok((chunks, dma_seconds, msi.as_secs_f64()))
}
