//! Unit tests of the page buffers and mappings.

use super::*;
use std::fs::File;
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::fs::FileExt;

fn send_sync<T: Send + Sync>() {}

#[test]
fn types_are_send_and_sync() {
    send_sync::<AnonBuf>();
    send_sync::<Mapping>();
    send_sync::<BufPool>();
    send_sync::<PooledBuf<'static>>();
}

#[test]
fn page_align_rounds_up_to_whole_pages() {
    let p = page_size();
    assert!(p.is_power_of_two() && p >= 4096);
    assert_eq!(page_align(0), Some(p));
    assert_eq!(page_align(1), Some(p));
    assert_eq!(page_align(p), Some(p));
    assert_eq!(page_align(p + 1), Some(2 * p));
    assert_eq!(page_align(usize::MAX), None);
}

#[test]
fn fresh_buffer_is_aligned_sized_and_zero() {
    let p = page_size();
    let b = AnonBuf::new(10_000).unwrap();
    assert_eq!(b.len(), 10_000);
    assert_eq!(b.capacity(), page_align(10_000).unwrap());
    assert_eq!(b.as_ptr() as usize % p, 0);
    assert!(b.iter().all(|&x| x == 0));
    assert_eq!(b.as_slice().len(), b.as_ref().len());

    let e = AnonBuf::new(0).unwrap();
    assert!(e.is_empty());
    assert_eq!(e.capacity(), p);
}

#[test]
fn buffer_is_writable_prefault_keeps_and_zero_clears() {
    let p = page_size();
    let mut b = AnonBuf::new(3 * p).unwrap();
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i % 251) as u8 + 1;
    }
    b.prefault();
    assert!(b.iter().enumerate().all(|(i, &x)| x == (i % 251) as u8 + 1));
    b.as_mut_slice()[p..2 * p].fill(0xAA);
    assert_eq!(b[p], 0xAA);
    b.zero();
    assert!(b.iter().all(|&x| x == 0));
    // prefault on a fresh buffer leaves it zero.
    let mut f = AnonBuf::new(5 * p).unwrap();
    f.prefault();
    assert!(f.iter().all(|&x| x == 0));
}

#[test]
fn impossible_sizes_are_errors() {
    assert!(AnonBuf::new(usize::MAX).is_err());
    assert!(AnonBuf::new(usize::MAX - page_size()).is_err());
    assert!(Mapping::anonymous(usize::MAX).is_err());
}

/// Makes `start..start + len` read-only, so its VMA stands apart from the read-write
/// anonymous memory around it (the kernel merges neighbours with the same flags), and
/// whatever maps the range after it is unmapped does not look like it.
///
/// # Safety
/// The range must be mapped and nothing may write to it afterwards.
unsafe fn make_read_only(start: *const u8, len: usize) {
    // SAFETY: the caller's contract; mprotect changes no memory contents.
    let r = unsafe { libc::mprotect(start as *mut libc::c_void, len, libc::PROT_READ) };
    assert_eq!(r, 0, "mprotect: {}", std::io::Error::last_os_error());
}

/// Whether `/proc/self/maps` lists exactly `start..start + len`, read-only and private.
fn mapped_read_only(start: usize, len: usize) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let want = format!("{:x}-{:x} r--p ", start, start + len);
    maps.lines().any(|l| l.starts_with(&want))
}

#[test]
fn drop_unmaps() {
    let b = AnonBuf::new(37 * page_size()).unwrap();
    let (start, len) = (b.as_ptr(), b.capacity());
    // SAFETY: b's whole mapping; b is not written again.
    unsafe { make_read_only(start, len) };
    assert!(mapped_read_only(start as usize, len));
    drop(b);
    assert!(!mapped_read_only(start as usize, len));

    let m = Mapping::anonymous(41 * page_size()).unwrap();
    let (start, len) = (m.as_ptr(), m.len());
    // SAFETY: m's whole mapping; m is not written again.
    unsafe { make_read_only(start, len) };
    assert!(mapped_read_only(start as usize, len));
    drop(m);
    assert!(!mapped_read_only(start as usize, len));
}

#[test]
fn anonymous_mapping_is_rounded_and_zero() {
    let p = page_size();
    let m = Mapping::anonymous(p + 1).unwrap();
    assert_eq!(m.len(), 2 * p);
    assert!(!m.is_empty());
    assert_eq!(m.as_ptr() as usize % p, 0);
    assert_eq!(m.as_non_null().as_ptr(), m.as_ptr());
    let mut out = vec![1u8; m.len()];
    // SAFETY: m is readable and writable for m.len() bytes and only this thread uses it.
    unsafe {
        std::ptr::copy_nonoverlapping(m.as_ptr(), out.as_mut_ptr(), out.len());
        std::ptr::write_volatile(m.as_ptr().add(p), 7);
        assert_eq!(std::ptr::read_volatile(m.as_ptr().add(p)), 7);
    }
    assert!(out.iter().all(|&x| x == 0));
}

/// A memfd of `len` bytes named `name` (its mappings show as `/memfd:name` in the maps).
fn memfd(name: &std::ffi::CStr, len: u64) -> File {
    // SAFETY: `name` is a valid C string; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(len).unwrap();
    f
}

#[test]
fn fd_mapping_shares_writes_with_the_fd_and_other_mappings() {
    let p = page_size();
    let f = memfd(c"vfio-harness-mem-test-shared", 2 * p as u64);
    let a = Mapping::fd(f.as_fd(), 0, 2 * p, Prot::READ_WRITE).unwrap();
    let b = Mapping::fd(f.as_fd(), p as u64, p, Prot::READ).unwrap();
    assert_eq!((a.len(), b.len()), (2 * p, p));
    assert_eq!(a.as_ptr() as usize % p, 0);

    // Through the mapping -> seen by the fd and by the second mapping.
    // SAFETY: a is writable for 2 pages; offsets are in bounds; only this thread uses it.
    unsafe {
        std::ptr::copy_nonoverlapping(b"mapped".as_ptr(), a.as_ptr().add(p + 10), 6);
    }
    let mut got = [0u8; 6];
    f.read_exact_at(&mut got, p as u64 + 10).unwrap();
    assert_eq!(&got, b"mapped");
    // SAFETY: b is readable for one page; offset 10 + 6 is in bounds.
    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr().add(10), got.as_mut_ptr(), 6) };
    assert_eq!(&got, b"mapped");

    // Through the fd -> seen by both mappings.
    f.write_all_at(b"fd-wrote", p as u64 + 100).unwrap();
    let mut via_a = [0u8; 8];
    let mut via_b = [0u8; 8];
    // SAFETY: in bounds of both mappings (a: 2 pages, b: 1 page from file offset p).
    unsafe {
        std::ptr::copy_nonoverlapping(a.as_ptr().add(p + 100), via_a.as_mut_ptr(), 8);
        std::ptr::copy_nonoverlapping(b.as_ptr().add(100), via_b.as_mut_ptr(), 8);
    }
    assert_eq!(&via_a, b"fd-wrote");
    assert_eq!(&via_b, b"fd-wrote");
}

#[test]
fn fd_mapping_errors_and_unmap() {
    let p = page_size();
    let f = memfd(c"vfio-harness-mem-test-unmap", p as u64);
    // The kernel refuses a misaligned offset and an empty mapping.
    let e = Mapping::fd(f.as_fd(), 1, p, Prot::READ).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    assert!(Mapping::fd(f.as_fd(), 0, 0, Prot::READ).is_err());
    assert!(Mapping::fd(f.as_fd(), 1 << 63, p, Prot::READ).is_err());

    let m = Mapping::fd(f.as_fd(), 0, p, Prot::READ_WRITE).unwrap();
    let in_maps = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .contains("/memfd:vfio-harness-mem-test-unmap")
    };
    assert!(in_maps());
    drop(f); // the mapping outlives the fd
             // SAFETY: m is writable for one page.
    unsafe { std::ptr::write_volatile(m.as_ptr(), 5) };
    drop(m);
    assert!(!in_maps());
}

#[test]
fn pool_reuses_same_capacity_and_keeps_bytes() {
    let p = page_size();
    let pool = BufPool::new(4 * p);
    let mut a = pool.take(p + 5).unwrap();
    assert!(!a.reused());
    assert_eq!((a.len(), a.capacity()), (p + 5, 2 * p));
    assert!(a.iter().all(|&x| x == 0));
    a[0] = 9;
    let addr = a.as_ptr();
    drop(a);
    assert_eq!(pool.held_bytes(), 2 * p);

    // Same capacity, other length: the same memory, its bytes as left.
    let mut b = pool.take(2 * p).unwrap();
    assert!(b.reused());
    assert_eq!(b.as_ptr(), addr);
    assert_eq!(b.len(), 2 * p);
    assert_eq!(b[0], 9);
    assert_eq!(pool.held_bytes(), 0);
    b.zero();
    assert!(b.iter().all(|&x| x == 0));

    // Another capacity: a fresh buffer.
    let c = pool.take(p).unwrap();
    assert!(!c.reused());
    drop(b);
    drop(c);
    assert_eq!(pool.held_bytes(), 3 * p);
}

#[test]
fn pool_keeps_at_most_its_limit_and_into_inner_detaches() {
    let p = page_size();
    let pool = BufPool::new(2 * p);
    let bufs: Vec<_> = (0..3).map(|_| pool.take(p).unwrap()).collect();
    drop(bufs);
    assert_eq!(pool.held_bytes(), 2 * p);

    let kept = pool.take(p).unwrap().into_inner();
    assert_eq!(pool.held_bytes(), p);
    drop(kept);
    assert_eq!(pool.held_bytes(), p);
}

#[test]
fn pooled_buffer_moves_across_threads() {
    static POOL: BufPool = BufPool::new(1 << 20);
    let mut b = POOL.take(100).unwrap();
    b[99] = 1;
    let b = std::thread::spawn(move || {
        let s: &[u8] = &b;
        assert_eq!(s[99], 1);
        b
    })
    .join()
    .unwrap();
    drop(b);
    assert!(POOL.held_bytes() >= page_size());
}

#[test]
fn huge_buffer_is_whole_huge_pages_aligned_zero_and_unmapped_on_drop() {
    let mut b = AnonBuf::huge(HUGE_PAGE + 100).unwrap();
    assert!(b.is_huge());
    assert_eq!(b.len(), HUGE_PAGE + 100);
    assert_eq!(b.capacity(), 2 * HUGE_PAGE);
    assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0);
    assert!(b.iter().all(|&x| x == 0));
    b[HUGE_PAGE + 99] = 7;
    b.prefault();
    assert_eq!(b[HUGE_PAGE + 99], 7);
    assert!(!AnonBuf::new(100).unwrap().is_huge());
    assert!(AnonBuf::huge(usize::MAX - HUGE_PAGE).is_err());

    let (start, len) = (b.as_ptr(), b.capacity());
    // SAFETY: b's whole mapping; b is not written again.
    unsafe { make_read_only(start, len) };
    // Exactly the aligned range is mapped: the slack mapped to align it was given back.
    assert!(mapped_read_only(start as usize, len));
    drop(b);
    assert!(!mapped_read_only(start as usize, len));
}

#[test]
fn pool_hands_out_huge_buffers_but_never_keeps_them() {
    let pool = BufPool::new(64 << 20);
    let h = pool.take_huge(1 << 20).unwrap();
    assert!(h.is_huge() && !h.reused());
    assert_eq!(h.capacity(), HUGE_PAGE);
    drop(h);
    assert_eq!(pool.held_bytes(), 0);
    // An ordinary buffer of the same capacity is kept, and a huge one is still fresh.
    drop(pool.take(HUGE_PAGE).unwrap());
    assert_eq!(pool.held_bytes(), HUGE_PAGE);
    let h = pool.take_huge(HUGE_PAGE).unwrap();
    assert!(h.is_huge() && !h.reused());
    assert_eq!(pool.held_bytes(), HUGE_PAGE);
}
