//! How much of a file the page cache holds (`mincore(2)` on a mapping of it).
//!
//! [`restore_from`](super::restore_from) asks before it reads a stream file: one the cache
//! mostly holds is read from memory, one it does not is read from the disk with `O_DIRECT`
//! ([`DirectReader`](super::DirectReader)).

use crate::mem::{page_size, Mapping, Prot};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;

/// Bytes of the file asked about in one mapping (so the flags take 64 KiB at most).
const WINDOW: u64 = 256 << 20;

/// Fills `flags` with one byte per page of `file`'s bytes `off..off + len` (`off` a
/// multiple of the page size), bit 0 set where the page is in the page cache. A read-only
/// shared mapping is made only to ask: nothing is read through it, so no page is faulted in
/// (or counted as mapped) by asking.
pub(crate) fn page_flags(file: &File, off: u64, len: usize, flags: &mut Vec<u8>) -> io::Result<()> {
    flags.clear();
    if len == 0 {
        return Ok(());
    }
    let map = Mapping::fd(file.as_fd(), off, len, Prot::READ)?;
    flags.resize(len.div_ceil(page_size()), 0);
    // SAFETY: `map` is a live mapping of `len` bytes at a page-aligned address, and `flags`
    // holds one byte for each of its pages, as mincore(2) writes.
    let rc = unsafe { libc::mincore(map.as_ptr().cast(), len, flags.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes of `file`'s first `len` bytes that are in the page cache (whole pages, the last
/// one cut at `len`), asked a window of 256 MiB at a time.
///
/// # Errors
///
/// `mmap(2)` or `mincore(2)` failed (a file that cannot be mapped).
pub(crate) fn resident_bytes(file: &File, len: u64) -> io::Result<u64> {
    let page = page_size() as u64;
    let mut flags = Vec::new();
    let mut resident = 0;
    let mut off = 0;
    while off < len {
        let n = (len - off).min(WINDOW);
        // A window is at most 256 MiB: it fits a usize.
        page_flags(file, off, n as usize, &mut flags)?;
        for (i, f) in flags.iter().enumerate() {
            if f & 1 != 0 {
                resident += (n - i as u64 * page).min(page);
            }
        }
        off += n;
    }
    Ok(resident)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    /// A file written and then dropped from the cache counts nothing; read back, all of it,
    /// its partial last page cut at the length.
    #[test]
    fn counts_what_the_cache_holds() {
        let mut f = tempfile::tempfile().unwrap();
        let len = 3 * page_size() as u64 + 100;
        f.write_all(&vec![5u8; len as usize]).unwrap();
        f.sync_all().unwrap();
        // SAFETY: fadvise on an open descriptor only advises the kernel.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        let cold = resident_bytes(&f, len).unwrap();
        use std::os::unix::fs::FileExt;
        let mut all = vec![0u8; len as usize];
        f.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(resident_bytes(&f, len).unwrap(), len);
        // Where the file system keeps files only in memory (tmpfs), nothing is dropped.
        assert!(cold == 0 || cold == len, "{cold}");
        assert_eq!(resident_bytes(&f, 0).unwrap(), 0);
    }
}
