//! Device memory written and read by the device's own DMA engine: `fill` DMAs a
//! [`crate::pattern`] into device memory and leaves it there, `crc` DMAs device memory out
//! and checksums it (CRC-32, zlib's), optionally comparing it with a pattern. The pattern
//! depends only on seed and absolute offset, so these agree with `bar fill` / `bar crc`
//! whatever the chunking.

use serde::{Serialize, Serializer};

use super::dma_check::IOVA_FLOOR;
use super::engine::DmaEngine;
use super::error::{DriverError, Result};
use super::space::{DmaRegion, DmaSpace};
use crate::device::Device;
use crate::units::bytes_per_second;
use crate::vfio::dma::pick_iova;

/// What [`dma_pattern`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternJob {
    /// DMA the pattern for `seed` into device memory; with `readback`, DMA every chunk back
    /// out and compare it.
    Fill {
        /// Pattern seed.
        seed: u64,
        /// DMA each chunk back and compare.
        readback: bool,
    },
    /// DMA device memory out and CRC it; with a seed, also compare it with that pattern.
    Crc {
        /// Pattern to compare with, if any.
        seed: Option<u64>,
    },
}

/// Which job a [`PatternReport`] describes (`fill` or `crc` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PatternOp {
    /// [`PatternJob::Fill`].
    Fill,
    /// [`PatternJob::Crc`].
    Crc,
}

impl PatternOp {
    /// `fill` or `crc`.
    pub fn as_str(self) -> &'static str {
        match self {
            PatternOp::Fill => "fill",
            PatternOp::Crc => "crc",
        }
    }
}

impl std::fmt::Display for PatternOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`dma_pattern`] did (`dma --fill/--crc --json`: `transfer`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatternReport {
    /// `fill` or `crc`.
    pub op: PatternOp,
    /// Driver that moved the bytes.
    pub driver: &'static str,
    /// Device-memory offset of the range.
    pub offset: u64,
    /// Bytes in the range.
    pub len: u64,
    /// Pattern seed, when one was given.
    pub seed: Option<u64>,
    /// Bytes per transfer (the driver's largest transfer, or less for a short range).
    pub chunk: u64,
    /// Chunks moved.
    pub chunks: u64,
    /// Wall time of the transfers (and the host-side copies and checks), in seconds.
    pub seconds: f64,
    /// `len / seconds`.
    pub bytes_per_second: f64,
    /// CRC-32 of the range as read back, as 8 hex digits; absent when nothing was read
    /// (a fill without read-back).
    #[serde(serialize_with = "crc_hex")]
    pub crc32: Option<u32>,
    /// Whether what was read back equals the pattern; absent without a seed or read-back.
    pub matched: Option<bool>,
    /// Range offset of the first byte that differs from the pattern.
    pub first_mismatch: Option<u64>,
}

fn crc_hex<S: Serializer>(v: &Option<u32>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(c) => s.serialize_some(&format!("{c:08x}")),
        None => s.serialize_none(),
    }
}

/// Runs `job` over `len` bytes of device memory at `offset` (`len` 0 = to the end of device
/// memory), in chunks of the driver's largest transfer through two buffers mapped in
/// `space`. The device is restored and the buffers unmapped before returning, also on
/// errors.
pub fn dma_pattern(
    dev: &dyn Device,
    space: &dyn DmaSpace,
    job: PatternJob,
    offset: u64,
    len: u64,
) -> Result<PatternReport> {
    let mut eng = DmaEngine::probe(dev)?;
    let lim = eng.limits();
    let len = if len == 0 {
        lim.device_memory.saturating_sub(offset)
    } else {
        len
    };
    if len == 0 || !lim.fits_device(offset, len) {
        return Err(DriverError::InvalidArgument {
            device: dev.name().to_string(),
            reason: format!(
                "{len} byte(s) at device offset {offset:#x} are outside its {} byte(s) of device memory",
                lim.device_memory
            ),
        });
    }
    let (granule, ranges) = space.iova_ranges()?;
    let chunk = (lim.max_transfer as u64).min(len);
    let buf_len = chunk.div_ceil(granule) * granule;
    let no_iova = |what| DriverError::NoIova {
        device: dev.name().to_string(),
        what,
    };
    let limit = Some(lim.dma_limit);
    let out_iova =
        pick_iova(&ranges, buf_len, granule, IOVA_FLOOR, limit).ok_or_else(|| no_iova("buffer"))?;
    let in_iova = pick_iova(&ranges, buf_len, granule, out_iova + buf_len, limit)
        .ok_or_else(|| no_iova("second buffer"))?;
    let out_buf = space.map_buffer(out_iova, buf_len, 0)?;
    let in_buf = space.map_buffer(in_iova, buf_len, 0)?;
    eng.init()?;
    let bufs = Bufs {
        out_buf: out_buf.as_ref(),
        in_buf: in_buf.as_ref(),
    };
    let t = std::time::Instant::now();
    let run = chunks(&mut eng, &bufs, job, offset, len, chunk);
    let seconds = t.elapsed().as_secs_f64();
    // The device stops reaching host memory before the buffers are unmapped.
    let removed = eng.remove();
    let (chunks, crc, mismatch) = run?;
    removed?;
    in_buf.unmap()?;
    out_buf.unmap()?;
    let (seed, read) = match job {
        PatternJob::Fill { seed, readback } => (Some(seed), readback),
        PatternJob::Crc { seed } => (seed, true),
    };
    Ok(PatternReport {
        op: match job {
            PatternJob::Fill { .. } => PatternOp::Fill,
            PatternJob::Crc { .. } => PatternOp::Crc,
        },
        driver: eng.name(),
        offset,
        len,
        seed,
        chunk,
        chunks,
        seconds,
        bytes_per_second: bytes_per_second(len, seconds),
        crc32: read.then_some(crc),
        matched: (read && seed.is_some()).then_some(mismatch.is_none()),
        first_mismatch: mismatch,
    })
}

/// The two mapped buffers: `out_buf` carries data host -> device, `in_buf` device -> host.
struct Bufs<'a> {
    out_buf: &'a dyn DmaRegion,
    in_buf: &'a dyn DmaRegion,
}

/// The chunk loop: `(chunks, crc32 of what was read, first mismatch)`.
fn chunks(
    eng: &mut DmaEngine<'_>,
    b: &Bufs<'_>,
    job: PatternJob,
    offset: u64,
    len: u64,
    chunk: u64,
) -> Result<(u64, u32, Option<u64>)> {
    let (fill, seed, readback) = match job {
        PatternJob::Fill { seed, readback } => (true, Some(seed), readback),
        PatternJob::Crc { seed } => (false, seed, true),
    };
    let mut data = vec![0u8; chunk as usize];
    let mut h = crc32fast::Hasher::new();
    let mut mismatch = None;
    let mut done = 0u64;
    let mut chunks = 0u64;
    while done < len {
        let n = (len - done).min(chunk) as usize;
        let at = offset + done;
        if fill {
            if let Some(s) = seed {
                crate::pattern::fill(s, at, &mut data[..n]);
            }
            b.out_buf.write(0, &data[..n])?;
            eng.to_device(b.out_buf.iova(), at, n)?;
        }
        if readback {
            eng.from_device(b.in_buf.iova(), at, n)?;
            b.in_buf.read(0, &mut data[..n])?;
            h.update(&data[..n]);
            if let (Some(s), None) = (seed, mismatch) {
                mismatch =
                    crate::pattern::first_mismatch(s, at, &data[..n]).map(|p| done + p as u64);
            }
        }
        done += n as u64;
        chunks += 1;
    }
    Ok((chunks, h.finalize(), mismatch))
}
