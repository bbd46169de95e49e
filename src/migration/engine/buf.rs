//! Page-aligned transfer buffers, pooled per process.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Mutex;

const PAGE: usize = 4096;

/// A page-aligned, zero-filled buffer of anonymous memory (`mmap`).
///
/// A fresh mapping is zero-filled by the kernel and faulted in on first touch: creating one
/// costs a system call, not a pass over its bytes, so a tiny state (mtty's ~100 bytes) does
/// not pay for the full ring, and a large one pays each page once. A mapping reused from the
/// process's pool held an earlier operation's bytes (another device's state): it is zeroed
/// before it is handed out again, so no buffer ever shows one operation's data to another.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf uniquely owns its mapping (like a Box<[u8]>); moving it to another
// thread moves that ownership.
unsafe impl Send for AlignedBuf {}

/// Mappings kept for the next operation of this process, as (address, capacity), bounded by
/// [`POOL_BYTES`]: a VMM or a benchmark running many transfers maps and faults its buffers
/// once, not per transfer.
static POOL: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
/// Most memory the buffer pool keeps.
const POOL_BYTES: usize = 32 << 20;

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bytes are device state: never printed.
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl AlignedBuf {
    /// A page-aligned buffer of `len` zero bytes (at least one page is mapped): a pooled
    /// mapping of the same capacity when there is one (zeroed again here), a fresh one
    /// otherwise.
    ///
    /// # Panics
    /// When the kernel cannot provide the mapping (out of memory), like a failed allocation.
    pub fn new(len: usize) -> AlignedBuf {
        let cap = Self::capacity(len);
        if let Ok(mut pool) = POOL.lock() {
            if let Some(i) = pool.iter().position(|&(_, c)| c == cap) {
                let (addr, _) = pool.swap_remove(i);
                if let Some(ptr) = NonNull::new(addr as *mut u8) {
                    // SAFETY: the pooled mapping is `cap` bytes, writable, and owned by
                    // nobody since it left the pool. Its old bytes are an earlier
                    // operation's (another device's state): they never reach a new owner.
                    unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, cap) };
                    return AlignedBuf { ptr, len };
                }
            }
        }
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let ptr = if p == libc::MAP_FAILED {
            None
        } else {
            NonNull::new(p as *mut u8)
        };
        let Some(ptr) = ptr else {
            match Layout::from_size_align(cap, PAGE) {
                Ok(l) => std::alloc::handle_alloc_error(l),
                Err(_) => std::alloc::handle_alloc_error(Layout::new::<u8>()),
            }
        };
        AlignedBuf { ptr, len }
    }

    fn capacity(len: usize) -> usize {
        len.max(1).div_ceil(PAGE) * PAGE
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes of the mapping owned by self (zeros until
        // written: fresh anonymous memory, or a pooled mapping zeroed in `new`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in Deref, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let cap = Self::capacity(self.len);
        if let Ok(mut pool) = POOL.lock() {
            let held: usize = pool.iter().map(|&(_, c)| c).sum();
            if held + cap <= POOL_BYTES {
                // The mapping changes hands: nothing refers to it once self is gone.
                pool.push((self.ptr.as_ptr() as usize, cap));
                return;
            }
        }
        // SAFETY: the mapping was created in `new` with this size and is not used after drop.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, cap) };
    }
}
