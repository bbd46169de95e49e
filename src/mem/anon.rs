//! [`AnonBuf`]: an anonymous, page-aligned buffer owned by this process, used as a slice.

use super::map::Mapping;
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};

/// A page-aligned buffer of anonymous private memory (`mmap(MAP_PRIVATE | MAP_ANONYMOUS)`),
/// unmapped on drop.
///
/// - **Zero state**: a fresh buffer ([`AnonBuf::new`]) reads as zeros (the kernel's zero
///   pages). A buffer reused through a [`super::BufPool`] keeps the bytes of its previous
///   use; [`AnonBuf::zero`] clears it.
/// - **Faulting**: pages are faulted in on first touch, so creating a buffer costs a system
///   call, not a pass over its bytes, and a large buffer of which only the start is used
///   costs only that start. [`AnonBuf::prefault`] faults every page in beforehand (for
///   measurements that must not count page faults).
/// - **Size**: the buffer is `len` bytes (what [`Deref`] shows) inside a mapping of whole
///   pages ([`AnonBuf::capacity`]).
///
/// It owns its memory outright, like a `Box<[u8]>`: it is `Send` and `Sync`, shared access
/// gives `&[u8]` and exclusive access `&mut [u8]`.
pub struct AnonBuf {
    /// Private anonymous memory nothing else maps: only this buffer reaches it, so the
    /// slices below follow Rust's borrowing rules through `&self` / `&mut self`.
    map: Mapping,
    len: usize,
    /// Made by [`AnonBuf::huge`].
    huge: bool,
}

impl AnonBuf {
    /// A buffer of `len` bytes (in a mapping of at least one page), reading as zeros.
    /// Fails when the kernel cannot provide the mapping (`ENOMEM`) or `len` does not fit the
    /// address space.
    pub fn new(len: usize) -> io::Result<AnonBuf> {
        // No MAP_NORESERVE: a buffer is meant to be written, so it is charged against the
        // kernel's overcommit limit when it is made, and a shortage fails here rather than
        // at a page fault.
        let map = Mapping::anonymous_with(len, 0)?;
        Ok(AnonBuf {
            map,
            len,
            huge: false,
        })
    }

    /// A buffer of `len` bytes reading as zeros, in a mapping of whole transparent huge
    /// pages ([`super::HUGE_PAGE`], aligned to one) that asks the kernel for them
    /// (`madvise(MADV_HUGEPAGE)`, which `enabled = madvise` in
    /// `/sys/kernel/mm/transparent_hugepage` needs).
    ///
    /// For buffers of direct I/O: the kernel builds one request segment per physically
    /// contiguous run of a buffer's pages, and a disk takes a bounded number per request
    /// (`max_segments`, 254 on virtio-blk). A 1 MiB buffer of scattered 4 KiB pages needs 256
    /// and is split into two requests; in a huge page it is one segment. Where the kernel has
    /// no transparent huge pages (`madvise` says `EINVAL`) or no `madvise` (`ENOSYS`) the
    /// buffer has ordinary pages.
    /// The mapping is faulted in a huge page at a time: touching one byte makes 2 MiB
    /// resident.
    ///
    /// # Errors
    /// As [`AnonBuf::new`], and `madvise(2)`'s other errors.
    pub fn huge(len: usize) -> io::Result<AnonBuf> {
        let map = Mapping::anonymous_aligned(len, super::HUGE_PAGE, 0)?;
        // SAFETY: the range is exactly the mapping just made, owned by `map`; MADV_HUGEPAGE
        // only changes how its pages are allocated, never its contents.
        let r = unsafe { libc::madvise(map.as_ptr().cast(), map.len(), libc::MADV_HUGEPAGE) };
        if r != 0 {
            let e = io::Error::last_os_error();
            // A kernel built without transparent huge pages refuses the advice (`EINVAL`),
            // one without `madvise` the call (`ENOSYS`, the bed's minimal kernel): the buffer
            // works with ordinary pages.
            if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
                return Err(e);
            }
        }
        Ok(AnonBuf {
            map,
            len,
            huge: true,
        })
    }

    /// Whether the buffer was made by [`AnonBuf::huge`].
    pub fn is_huge(&self) -> bool {
        self.huge
    }

    /// Length in bytes (what the slice shows).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of the mapping: `len` rounded up to whole pages (at least one).
    pub fn capacity(&self) -> usize {
        self.map.len()
    }

    /// Changes the length within the capacity (for [`super::BufPool`] reuse). The bytes keep
    /// their values.
    pub(super) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity());
        self.len = len.min(self.capacity());
    }

    /// The start of the buffer (page-aligned).
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// The start of the buffer, for writing (page-aligned).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// The buffer as a slice.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is readable for capacity() >= len bytes for as long as `self`
        // lives; every byte is initialised (anonymous memory reads as zeros until written);
        // no `&mut` to it can exist while `self` is borrowed shared, since only this buffer
        // reaches the memory (see the `map` field).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }

    /// The buffer as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only access to the memory.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr(), self.len) }
    }

    /// Faults every page of the mapping in (writing each page's first byte back unchanged),
    /// so later accesses take no page faults. The contents are unchanged.
    pub fn prefault(&mut self) {
        let base = self.map.as_ptr();
        for off in (0..self.capacity()).step_by(super::page_size()) {
            // SAFETY: `off < capacity()`, inside the mapping, which is readable and writable;
            // `&mut self` makes this the only access. Volatile, so the compiler keeps the
            // write that faults the page in although it stores the value just read.
            unsafe {
                let p = base.add(off);
                std::ptr::write_volatile(p, std::ptr::read_volatile(p));
            }
        }
    }

    /// Sets every byte of the buffer to zero (a reused buffer holds its previous bytes).
    pub fn zero(&mut self) {
        self.as_mut_slice().fill(0);
    }
}

impl Deref for AnonBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for AnonBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl AsRef<[u8]> for AnonBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsMut<[u8]> for AnonBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl fmt::Debug for AnonBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnonBuf")
            .field("ptr", &self.map.as_ptr())
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("huge", &self.huge)
            .finish()
    }
}
