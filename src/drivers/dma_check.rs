//! The DMA round trip check: a device copies a known pattern from one mapped host buffer
//! into its own memory and back out into another, chunk by chunk; the bytes must come back
//! unchanged, the guard after the copy must stay untouched, and the device's interrupt
//! must arrive on its eventfd.

use serde::Serialize;

use super::engine::DmaEngine;
use super::error::{DriverError, Result};
use super::space::DmaSpace;
use crate::device::Device;
use crate::vfio::dma::pick_iova;

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
}

impl CheckReport {
    /// Whether the check passed: bytes equal and guard intact.
    pub fn passed(&self) -> bool {
        self.matched && self.guard_intact
    }
}

/// Pushes `bytes` of [`check_byte`] pattern through the device's DMA engine at device
/// offset `dev_offset` and back, then has it raise its interrupt.
///
/// When the whole check fits in device memory every chunk goes to its own place there;
/// otherwise (edu's 4 KiB buffer) every chunk reuses the window at `dev_offset`. Buffers
/// are placed in `space` below the device's DMA limit; the device is restored and the
/// buffers unmapped before returning, also on errors.
pub fn dma_check(
    dev: &dyn Device,
    space: &dyn DmaSpace,
    bytes: u64,
    dev_offset: u64,
) -> Result<CheckReport> {
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
    let len = usize::try_from(bytes)
        .map_err(|_| invalid(format!("{bytes} bytes do not fit in this process")))?;
    let (granule, ranges) = space.iova_ranges()?;
    let buf_len = bytes.div_ceil(granule) * granule + granule; // + a guard page
    let no_iova = |what| DriverError::NoIova {
        device: dev.name().to_string(),
        what,
    };
    let limit = Some(lim.dma_limit);
    let src_iova = pick_iova(&ranges, buf_len, granule, IOVA_FLOOR, limit)
        .ok_or_else(|| no_iova("source buffer"))?;
    let dst_iova = pick_iova(&ranges, buf_len, granule, src_iova + buf_len, limit)
        .ok_or_else(|| no_iova("destination buffer"))?;
    let pattern: Vec<u8> = (0..bytes).map(check_byte).collect();
    let src = space.map_buffer(src_iova, buf_len, 0)?;
    src.write(0, &pattern)?;
    let dst = space.map_buffer(dst_iova, buf_len, 0xa5)?;
    eng.init()?;
    let run = round_trips(&mut eng, src_iova, dst_iova, bytes, dev_offset, spread);
    // The device stops reaching host memory before the buffers are unmapped.
    let removed = eng.remove();
    let (chunks, dma_seconds, msi) = run?;
    removed?;
    let mut got = vec![0u8; len];
    dst.read(0, &mut got)?;
    let first_mismatch = got
        .iter()
        .zip(&pattern)
        .position(|(a, b)| a != b)
        .map(|p| p as u64);
    let mut guard = vec![0u8; (buf_len - bytes) as usize];
    dst.read(bytes, &mut guard)?;
    let guard_intact = guard.iter().all(|&b| b == 0xa5);
    dst.unmap()?;
    src.unmap()?;
    Ok(CheckReport {
        driver: eng.name(),
        bytes,
        chunks,
        src_iova,
        dst_iova,
        matched: first_mismatch.is_none(),
        first_mismatch,
        guard_intact,
        msi_latency_us: msi * 1e6,
        dma_seconds,
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
