//! Measurement buffers (page-rounded, pre-faulted [`AnonBuf`]s) and the size of the
//! last-level cache.

use crate::mem::{self, AnonBuf};
use std::io;

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

/// [`page_buf`] for a loop's direct I/O when `huge`: in transparent huge pages
/// ([`AnonBuf::huge`]), as the engine's direct stages and chunk buffers are, so each of its
/// reads or writes is one disk request for the raw loops as for the harness.
pub fn io_buf(len: usize, huge: bool) -> io::Result<AnonBuf> {
    if !huge {
        return page_buf(len);
    }
    let mut b = AnonBuf::huge(len.max(1))?;
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

    #[test]
    fn io_buf_is_huge_only_when_asked() {
        let b = io_buf(1 << 20, true).unwrap();
        assert!(b.is_huge());
        assert_eq!(b.len(), 1 << 20);
        assert_eq!(b.as_ptr() as usize % mem::HUGE_PAGE, 0);
        assert!(b.iter().all(|&x| x == 0));
        assert!(!io_buf(1 << 20, false).unwrap().is_huge());
    }
}
