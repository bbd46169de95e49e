//! Measurement buffers (page-rounded, pre-faulted [`AnonBuf`]s) and the memcpy reference
//! measurement.

use crate::mem::{self, AnonBuf};
use std::io;
use std::time::{Duration, Instant};

/// A buffer for a measurement: `len` bytes rounded up to whole pages (at least one page; the
/// raw loops read and write the whole buffer), page-aligned, every page faulted in so page
/// faults do not land inside a measurement. It reads as zeros. Fails when the memory cannot
/// be mapped.
pub fn page_buf(len: usize) -> io::Result<AnonBuf> {
    let cap = mem::page_align(len).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("{len} bytes do not fit the address space"),
        )
    })?;
    let mut b = AnonBuf::new(cap)?;
    b.prefault();
    Ok(b)
}

/// Size of the last-level cache from sysfs (`.../cpu0/cache/indexN/size`, largest level).
pub fn last_level_cache() -> Option<u64> {
    let mut best: Option<u64> = None;
    for i in 0..8 {
        let Ok(t) =
            std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size"))
        else {
            continue;
        };
        if let Ok(b) = t.trim().parse::<crate::units::ByteSize>() {
            best = Some(best.map_or(b.0, |x: u64| x.max(b.0)));
        }
    }
    best
}

/// The memcpy reference: bytes per second of single-thread `memcpy` between two page-aligned
/// regions of `region` bytes (well above the last-level cache), copied `buffer` bytes at a
/// time, for at least `min_time` after one warm-up pass. The median pass is reported.
pub fn memcpy_bandwidth(buffer: usize, region: usize, min_time: Duration) -> Option<f64> {
    let buffer = buffer.max(1);
    let region = region.max(buffer).div_ceil(buffer) * buffer;
    let src = page_buf(region).ok()?;
    let mut dst = page_buf(region).ok()?;
    let pass = |dst: &mut AnonBuf| {
        for off in (0..region).step_by(buffer) {
            dst[off..off + buffer].copy_from_slice(&src[off..off + buffer]);
        }
        std::hint::black_box(&mut dst[..]);
    };
    pass(&mut dst);
    let mut rates = Vec::new();
    let t0 = Instant::now();
    while rates.len() < 3 || t0.elapsed() < min_time {
        let t = Instant::now();
        pass(&mut dst);
        let s = t.elapsed().as_secs_f64();
        if s > 0.0 {
            rates.push(region as f64 / s);
        }
        if rates.len() >= 1000 {
            break;
        }
    }
    super::stats::Summary::of(&rates).map(|s| s.median)
}

/// Region size for the memcpy reference: four times the last-level cache, at least 64 MiB
/// (16 MiB in quick mode), at most 512 MiB, and never below the buffer.
pub fn memcpy_region(buffer: u64, quick: bool) -> usize {
    let floor: u64 = if quick { 16 << 20 } else { 64 << 20 };
    let llc4 = last_level_cache().unwrap_or(0).saturating_mul(4);
    llc4.max(floor).min(512 << 20).max(buffer) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_buf_is_aligned_sized_and_zero() {
        let page = mem::page_size();
        let b = page_buf(page + 904).unwrap();
        assert_eq!(b.len(), 2 * page);
        assert_eq!(b.as_ptr() as usize % page, 0);
        assert!(b.iter().all(|&x| x == 0));
        assert_eq!(page_buf(0).unwrap().len(), page);
    }
}
