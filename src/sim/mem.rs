//! Anonymous memory for mmap-able simulated regions (BAR2, the v1 data section).

use crate::device::{DeviceError, RegionMap, Result};
use crate::mem::Mapping;
use std::ptr::NonNull;
use std::sync::Arc;

/// An anonymous private mapping ([`Mapping::anonymous`]), unmapped on drop. Pages cost memory
/// only once touched. Like device memory, it is reached through raw pointers only: by
/// [`AnonMem::read`] / [`AnonMem::write`] and by the [`RegionMap`]s handed out, possibly from
/// several threads at once, which is what users of a region expect of device memory.
#[derive(Debug)]
pub(crate) struct AnonMem {
    map: Mapping,
}

impl AnonMem {
    /// Maps `len` bytes (rounded up to a page) of zeroed memory.
    pub(crate) fn new(device: &str, len: usize) -> Result<Arc<AnonMem>> {
        let map = Mapping::anonymous(len).map_err(|source| DeviceError::Io {
            device: device.to_string(),
            what: format!("map {len} bytes of simulated device memory"),
            source,
        })?;
        Ok(Arc::new(AnonMem { map }))
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Start of the mapping.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Copies out of the mapping. The caller has checked bounds.
    pub(crate) fn read(&self, off: usize, buf: &mut [u8]) {
        debug_assert!(off + buf.len() <= self.len());
        // SAFETY: in bounds (checked by the caller); raw memory copy into an exclusive slice.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr().add(off), buf.as_mut_ptr(), buf.len()) }
    }

    /// Copies into the mapping. The caller has checked bounds.
    pub(crate) fn write(&self, off: usize, buf: &[u8]) {
        debug_assert!(off + buf.len() <= self.len());
        // SAFETY: in bounds (checked by the caller); raw memory copy from a shared slice.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.ptr().add(off), buf.len()) }
    }

    /// A [`RegionMap`] of `len` bytes at `off`, keeping this memory alive.
    pub(crate) fn map(self: &Arc<Self>, off: usize, len: usize) -> RegionMap {
        debug_assert!(off + len <= self.len());
        // SAFETY: off is inside the mapping, so the pointer is non-null.
        let p = unsafe { NonNull::new_unchecked(self.ptr().add(off)) };
        // SAFETY: `p..p+len` lies inside this mapping, which the owner Arc keeps alive.
        unsafe { RegionMap::new(p, len, Box::new(Arc::clone(self))) }
    }
}
