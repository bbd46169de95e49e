//! Anonymous memory for mmap-able simulated regions (BAR2, the v1 data section).

use crate::device::{DeviceError, RegionMap, Result};
use std::ptr::NonNull;
use std::sync::Arc;

/// An anonymous private mapping, unmapped on drop. Pages cost memory only once touched.
#[derive(Debug)]
pub(crate) struct AnonMem {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain process memory; every access goes through raw pointers with
// bounds checks, and concurrent device-memory semantics are what region users expect.
unsafe impl Send for AnonMem {}
// SAFETY: see Send.
unsafe impl Sync for AnonMem {}

impl AnonMem {
    /// Maps `len` bytes (rounded up to a page) of zeroed memory.
    pub(crate) fn new(device: &str, len: usize) -> Result<Arc<AnonMem>> {
        let len = len.max(1).div_ceil(4096) * 4096;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(DeviceError::Io {
                device: device.to_string(),
                what: format!("map {len} bytes of simulated device memory"),
                source: std::io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(p as *mut u8).ok_or_else(|| DeviceError::Io {
            device: device.to_string(),
            what: "mmap returned a null mapping".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        })?;
        Ok(Arc::new(AnonMem { ptr, len }))
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Start of the mapping.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Copies out of the mapping. The caller has checked bounds.
    pub(crate) fn read(&self, off: usize, buf: &mut [u8]) {
        debug_assert!(off + buf.len() <= self.len);
        // SAFETY: in bounds (checked by the caller); raw memory copy into an exclusive slice.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr().add(off), buf.as_mut_ptr(), buf.len()) }
    }

    /// Copies into the mapping. The caller has checked bounds.
    pub(crate) fn write(&self, off: usize, buf: &[u8]) {
        debug_assert!(off + buf.len() <= self.len);
        // SAFETY: in bounds (checked by the caller); raw memory copy from a shared slice.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.ptr().add(off), buf.len()) }
    }

    /// A [`RegionMap`] of `len` bytes at `off`, keeping this memory alive.
    pub(crate) fn map(self: &Arc<Self>, off: usize, len: usize) -> RegionMap {
        debug_assert!(off + len <= self.len);
        // SAFETY: off is inside the mapping, so the pointer is non-null.
        let p = unsafe { NonNull::new_unchecked(self.ptr().add(off)) };
        // SAFETY: `p..p+len` lies inside this mapping, which the owner Arc keeps alive.
        unsafe { RegionMap::new(p, len, Box::new(Arc::clone(self))) }
    }
}

impl Drop for AnonMem {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and nothing references it once the last Arc is gone.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}
