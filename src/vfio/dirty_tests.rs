use std::fs::File;
use std::os::fd::AsFd;

use super::*;

#[test]
fn feature_buffers_have_the_kernel_layout() {
    // struct vfio_device_feature (8 bytes) + payload at offset 8.
    assert_eq!(size_of::<Feature<()>>(), 8);
    assert_eq!(
        size_of::<Feature<vfio_device_feature_dma_logging_control>>(),
        8 + 24
    );
    assert_eq!(
        size_of::<Feature<vfio_device_feature_dma_logging_report>>(),
        8 + 32
    );
    let f = Feature::new(7, 0u64);
    assert_eq!((f.argsz, f.flags), (16, 7));
}

#[test]
fn bitmap_words_round_up() {
    assert_eq!(bitmap_words(4096, 4096), Some(1));
    assert_eq!(bitmap_words(64 * 4096, 4096), Some(1));
    assert_eq!(bitmap_words(64 * 4096 + 1, 4096), Some(2));
    assert_eq!(bitmap_words(1 << 30, 2 << 20), Some(8));
    assert_eq!(bitmap_words(0, 4096), Some(0));
    assert_eq!(bitmap_words(4096, 0), None);
}

#[test]
fn bitmap_reads_bits_as_the_uapi_maps_them() {
    // Pages 0, 2, 63, 64 and 69 of a 70-page range at 0x10_0000.
    let words = vec![1 | 1 << 2 | 1 << 63, 1 | 1 << 5];
    let b = DirtyBitmap::new(0x10_0000, 70 * 4096, 4096, words);
    assert_eq!(b.pages(), 70);
    let dirty: Vec<u64> = b.dirty_iovas().collect();
    let want: Vec<u64> = [0u64, 2, 63, 64, 69]
        .iter()
        .map(|p| 0x10_0000 + p * 4096)
        .collect();
    assert_eq!(dirty, want);
    assert!(b.is_dirty(0x10_0000 + 2 * 4096 + 17));
    assert!(!b.is_dirty(0x10_0000 + 4096));
    assert!(!b.is_dirty(0x0f_f000));
    assert!(!b.page_dirty(70), "bits past the range are ignored");
    let s = b.summary();
    assert_eq!(
        s,
        DirtySummary {
            pages: 70,
            pages_dirty: 5,
            first_dirty_iova: Some(0x10_0000),
            last_dirty_iova: Some(0x10_0000 + 69 * 4096),
        }
    );
    let empty = DirtyBitmap::new(0, 4096, 4096, vec![0]).summary();
    assert_eq!((empty.pages_dirty, empty.first_dirty_iova), (0, None));
}

#[test]
fn calls_on_a_non_vfio_fd_return_the_kernels_errno() {
    let f = File::open("/dev/null").unwrap();
    let fd = f.as_fd();
    assert!(!supported(fd).unwrap(), "ENOTTY means no DMA logging");
    let r = [LogRange {
        iova: 0x10_0000,
        length: 4096,
    }];
    assert_eq!(
        start(fd, 4096, &r).unwrap_err().raw_os_error(),
        Some(libc::ENOTTY)
    );
    let mut bits = [0u64; 1];
    let e = report(fd, 0x10_0000, 4096, 4096, &mut bits).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    assert_eq!(stop(fd).unwrap_err().raw_os_error(), Some(libc::ENOTTY));
    // A bitmap too small for the range never reaches the kernel.
    let e = report(fd, 0, 65 * 4096, 4096, &mut bits).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    // Nor does an empty range (the kernel would size its bitmap from `length - 1`), or
    // one that wraps.
    for (iova, length) in [(0x10_0000, 0), (u64::MAX - 4095, 8192)] {
        let e = report(fd, iova, length, 4096, &mut bits).unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::InvalidInput,
            "{iova:#x}+{length:#x}"
        );
    }
}

#[test]
fn errors_carry_errno_and_hint() {
    let e = DirtyLogError::kernel(
        "dev",
        LogOp::Start,
        io::Error::from_raw_os_error(libc::EBUSY),
    );
    assert_eq!(e.errno(), Some(libc::EBUSY));
    assert!(e.to_string().contains("START refused"), "{e}");
    assert!(e.to_string().contains("STOP it first"), "{e}");
    let e = DirtyLogError::kernel(
        "dev",
        LogOp::Start,
        io::Error::from_raw_os_error(libc::ENOTTY),
    );
    assert!(e.to_string().contains("no DMA logging"), "{e}");
}
