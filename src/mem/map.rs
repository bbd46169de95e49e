//! [`Mapping`]: a mapping of memory shared with something else (a device fd region, or
//! anonymous memory standing in for device memory), seen only as a raw pointer.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// The access a mapping allows (`PROT_READ`, `PROT_WRITE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prot {
    /// `PROT_READ`.
    pub read: bool,
    /// `PROT_WRITE`.
    pub write: bool,
}

impl Prot {
    /// Read only.
    pub const READ: Prot = Prot {
        read: true,
        write: false,
    };
    /// Read and write.
    pub const READ_WRITE: Prot = Prot {
        read: true,
        write: true,
    };

    fn bits(self) -> libc::c_int {
        let mut p = libc::PROT_NONE;
        if self.read {
            p |= libc::PROT_READ;
        }
        if self.write {
            p |= libc::PROT_WRITE;
        }
        p
    }
}

/// A memory mapping owned by this value and unmapped when it drops.
///
/// The memory may change under us (a device, DMA, another mapping of the same fd), so this
/// type never hands out Rust references to it: only [`Mapping::as_ptr`] and
/// [`Mapping::len`]. Whoever reads or writes through the pointer does so in `unsafe` code,
/// with raw copies or volatile accesses, inside `0..len`, and must keep the mapping alive
/// meanwhile (for instance by owning it, as the device layer's `RegionMap` does).
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is an address range of this process's address space and the duty to unmap
// it. Neither is tied to a thread: the range is valid in every thread, and munmap may run on
// any. The Mapping itself never reads or writes the memory; every access is made by callers
// through the raw pointer, in unsafe code that carries its own justification (device memory
// has no Rust aliasing guarantees to break, and the accessors copy through raw pointers).
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only yields the address and the length; see `Send`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset`, shared (`MAP_SHARED`: writes reach the device
    /// or file, and its changes show through), with access `prot`.
    ///
    /// The kernel checks the rest: `offset` must be page-aligned, `len` non-zero and the range
    /// mappable (errors are `mmap(2)`'s). The mapping stays valid after `fd` is closed.
    pub fn fd(fd: BorrowedFd<'_>, offset: u64, len: usize, prot: Prot) -> io::Result<Mapping> {
        let off = libc::off_t::try_from(offset).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mapping offset {offset:#x} is beyond off_t"),
            )
        })?;
        Self::map(len, prot, libc::MAP_SHARED, fd.as_raw_fd(), off)
    }

    /// Maps `len` bytes (rounded up to whole pages, at least one) of anonymous private memory,
    /// readable and writable, without reserving swap for it (`MAP_NORESERVE`): it reads as
    /// zeros and costs memory only once touched, so a large simulated BAR is cheap until used.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        Self::anonymous_with(len, libc::MAP_NORESERVE)
    }

    /// Anonymous private read-write memory of `len` bytes rounded up to whole pages, with
    /// `extra` mmap flags.
    pub(super) fn anonymous_with(len: usize, extra: libc::c_int) -> io::Result<Mapping> {
        let len = super::page_align(len).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("{len} bytes do not fit the address space"),
            )
        })?;
        Self::map(
            len,
            Prot::READ_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    }

    /// Anonymous private read-write memory of `len` bytes rounded up to whole multiples of
    /// `align` (a power of two, at least a page), starting at an address aligned to `align`,
    /// with `extra` mmap flags. A range `align` bytes larger is mapped and its unaligned head
    /// and tail are unmapped again.
    pub(super) fn anonymous_aligned(
        len: usize,
        align: usize,
        extra: libc::c_int,
    ) -> io::Result<Mapping> {
        let too_big = || {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("{len} bytes do not fit the address space"),
            )
        };
        debug_assert!(align.is_power_of_two() && align >= super::page_size());
        let len = len
            .max(1)
            .checked_next_multiple_of(align)
            .ok_or_else(too_big)?;
        let total = len.checked_add(align).ok_or_else(too_big)?;
        let whole = Self::map(
            total,
            Prot::READ_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )?;
        let base = whole.ptr.as_ptr() as usize;
        let head = base.next_multiple_of(align) - base;
        let tail = total - head - len;
        // The aligned middle is ours now; `whole` must not unmap it.
        let whole = std::mem::ManuallyDrop::new(whole);
        let start = whole.ptr.as_ptr();
        for (off, n) in [(0, head), (head + len, tail)] {
            if n == 0 {
                continue;
            }
            // SAFETY: `[base + off, base + off + n)` is the unaligned head or tail of the
            // mapping just made, which nothing else refers to; unmapping it leaves the middle
            // `[base + head, base + head + len)` mapped. Both ends are page-aligned (`base`,
            // `align`, `len` and `total` are page multiples).
            if unsafe { libc::munmap(start.add(off).cast(), n) } != 0 {
                // Splitting the mapping failed (`ENOMEM`: `vm.max_map_count` reached).
                let e = io::Error::last_os_error();
                // SAFETY: the whole original range, of which nothing is used yet; munmap
                // of a range some of which is already unmapped is allowed. It removes whole
                // mappings, so it needs no split and cannot fail that way; the first error
                // is the one reported.
                unsafe { libc::munmap(start.cast(), total) };
                return Err(e);
            }
        }
        // SAFETY: `head < align <= total`, so the pointer stays inside the original mapping,
        // which was not at address 0.
        let ptr = unsafe { NonNull::new_unchecked(whole.ptr.as_ptr().add(head)) };
        Ok(Mapping { ptr, len })
    }

    fn map(
        len: usize,
        prot: Prot,
        flags: libc::c_int,
        fd: libc::c_int,
        offset: libc::off_t,
    ) -> io::Result<Mapping> {
        // SAFETY: a new mapping with no address hint and no MAP_FIXED: the kernel picks a free
        // range, so no existing memory of this process is affected. The fd (or -1 for
        // anonymous memory) and the offset are checked by the kernel; the result is checked
        // below.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot.bits(), flags, fd, offset) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        match NonNull::new(p.cast::<u8>()) {
            Some(ptr) => Ok(Mapping { ptr, len }),
            None => {
                // SAFETY: the kernel mapped `len` bytes at address 0 for us (possible only
                // when vm.mmap_min_addr is 0); nothing else refers to them.
                unsafe { libc::munmap(p, len) };
                Err(io::Error::other("mmap returned a mapping at address 0"))
            }
        }
    }

    /// Length of the mapping in bytes (for anonymous memory: rounded up to whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: the kernel refuses empty mappings).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start of the mapping (page-aligned). Valid for `len()` bytes, with the access
    /// given when mapping, for as long as `self` lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// [`Mapping::as_ptr`], non-null.
    pub fn as_non_null(&self) -> NonNull<u8> {
        self.ptr
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // munmap fails only for a range that is not page-aligned or not mapped (EINVAL),
        // which ours cannot be; a drop has nobody to report to anyway.
        // SAFETY: ptr and len are exactly what mmap returned; this value is the only owner of
        // the mapping, and nothing can use it once the owner is gone (users hold the Mapping
        // or something owning it while they access the memory).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}
