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

    /// Panics unless `off..off + len` lies inside the mapping. Every caller has checked the
    /// range against the region it serves, so a failure here is a bug in the simulator: the
    /// check keeps it from becoming an access outside the mapping.
    fn check(&self, off: usize, len: usize) {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len()),
            "simulated device memory: {len:#x} bytes at {off:#x} outside its {:#x} bytes",
            self.len()
        );
    }

    /// Copies out of the mapping. The caller has checked bounds (see [`AnonMem::check`]).
    pub(crate) fn read(&self, off: usize, buf: &mut [u8]) {
        self.check(off, buf.len());
        // SAFETY: in bounds (checked above); raw memory copy into an exclusive slice.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr().add(off), buf.as_mut_ptr(), buf.len()) }
    }

    /// Copies into the mapping. The caller has checked bounds (see [`AnonMem::check`]).
    pub(crate) fn write(&self, off: usize, buf: &[u8]) {
        self.check(off, buf.len());
        // SAFETY: in bounds (checked above); raw memory copy from a shared slice.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.ptr().add(off), buf.len()) }
    }

    /// A [`RegionMap`] of `len` bytes at `off`, keeping this memory alive. The caller has
    /// checked bounds (see [`AnonMem::check`]).
    pub(crate) fn map(self: &Arc<Self>, off: usize, len: usize) -> RegionMap {
        self.check(off, len);
        // SAFETY: off is inside the mapping (checked above), so the pointer is non-null.
        let p = unsafe { NonNull::new_unchecked(self.ptr().add(off)) };
        // SAFETY: `p..p+len` lies inside this mapping, which the owner Arc keeps alive.
        unsafe { RegionMap::new(p, len, Box::new(Arc::clone(self))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_inside_the_mapping() {
        let m = AnonMem::new("t", 8192).unwrap();
        m.write(8190, &[1, 2]);
        let mut b = [0u8; 2];
        m.read(8190, &mut b);
        assert_eq!(b, [1, 2]);
        assert_eq!(m.map(4096, 4096).len(), 4096);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn a_read_past_the_end_is_stopped() {
        let m = AnonMem::new("t", 4096).unwrap();
        m.read(4095, &mut [0u8; 2]);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn a_write_whose_end_overflows_is_stopped() {
        let m = AnonMem::new("t", 4096).unwrap();
        m.write(usize::MAX, &[0u8; 2]);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn a_map_past_the_end_is_stopped() {
        let m = AnonMem::new("t", 4096).unwrap();
        let _ = m.map(4096, 4096);
    }
}
