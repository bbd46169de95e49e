//! Page-aligned memory: the anonymous buffers of the data paths and the mappings of device
//! memory, each mapped with `mmap` and unmapped on drop in one place.
//!
//! Two ideas, two types:
//! - [`AnonBuf`]: an anonymous, page-aligned buffer the process owns outright, read and
//!   written through ordinary slices. Pages are faulted in on first touch (a fresh buffer
//!   costs a system call, not a pass over its bytes) unless [`AnonBuf::prefault`] touches them
//!   first. A fresh buffer reads as zeros. [`BufPool`] keeps buffers for reuse; a reused
//!   buffer ([`PooledBuf`]) keeps the bytes of its previous use until [`AnonBuf::zero`].
//! - [`Mapping`]: memory shared with something else — a region of a device fd
//!   ([`Mapping::fd`], `MAP_SHARED`), or anonymous memory that stands in for device memory
//!   ([`Mapping::anonymous`], the simulator's BARs). The device (or another mapping of the
//!   same fd) may change it at any time, so it is never seen as a Rust slice: only as a raw
//!   pointer and a length, for accessors such as the device layer's `RegionMap`.
//!
//! Both unmap on drop. Transparent huge pages are asked for only by [`AnonBuf::huge`], for
//! the buffers of direct I/O (one disk request per buffer rather than two; DMA buffers, which
//! may want them too, are `vm-memory` regions in the `vfio` back end).
//!
//! This module is the bottom floor: it depends on nothing else in the crate.

mod anon;
mod map;
mod pool;

pub use anon::AnonBuf;
pub use map::{Mapping, Prot};
pub use pool::{BufPool, PooledBuf};

/// Size and alignment of the transparent huge pages [`AnonBuf::huge`] asks for: a PMD
/// mapping with 4 KiB pages (x86-64, arm64).
pub const HUGE_PAGE: usize = 2 << 20;

/// The system page size (`sysconf(_SC_PAGESIZE)`; 4096 if it cannot be read).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// `len` rounded up to a whole number of pages (at least one page); `None` on overflow.
pub fn page_align(len: usize) -> Option<usize> {
    let page = page_size();
    len.max(1).checked_next_multiple_of(page)
}

#[cfg(test)]
mod tests;
