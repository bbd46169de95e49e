//! Page-aligned, pre-faulted buffers and the memcpy reference measurement.

use std::alloc::Layout;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

/// A heap buffer aligned to a page, zero-filled (so every page is resident).
pub struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is uniquely owned heap memory.
unsafe impl Send for PageBuf {}
// SAFETY: shared access is read-only through `Deref`.
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// Allocates `len` bytes (at least one page) and touches every page. `None` when the
    /// allocation fails.
    pub fn new(len: usize) -> Option<PageBuf> {
        let len = len.max(1).div_ceil(PAGE) * PAGE;
        let layout = Layout::from_size_align(len, PAGE).ok()?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p)?;
        let mut b = PageBuf { ptr, len };
        // alloc_zeroed may hand out untouched zero pages (mmap): write one byte per page so
        // page faults do not land inside a measurement.
        for i in (0..len).step_by(PAGE) {
            b[i] = 1;
        }
        Some(b)
    }
}

impl Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised (zeroed) bytes for our lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout (len is a non-zero multiple of
        // the page size, so the layout is valid).
        unsafe {
            std::alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.len, PAGE),
            )
        }
    }
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
    let src = PageBuf::new(region)?;
    let mut dst = PageBuf::new(region)?;
    let pass = |dst: &mut PageBuf| {
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
    fn page_buf_is_aligned_and_sized() {
        let b = PageBuf::new(5000).unwrap();
        assert_eq!(b.len(), 8192);
        assert_eq!(b.as_ptr() as usize % PAGE, 0);
    }
}
