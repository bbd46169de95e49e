use std::fs::File;
use std::os::fd::AsFd;

use super::*;
use crate::device::uapi::{IRQ_SET_ACTION_MASK, IRQ_SET_DATA_NONE};

/// The former hand encoding, `_IO(';', nr)`, that the macros replaced.
const fn old_io_nr(nr: libc::c_ulong) -> libc::c_ulong {
    (0x3b << 8) | nr
}

#[test]
fn ioctl_numbers_match_the_former_hand_encoded_ones() {
    // From include/uapi/linux/vfio.h: _IO(';', 100 + n); iommufd.h: _IO(';', 0x84).
    let ours: [(libc::c_ulong, libc::c_ulong, libc::c_ulong); 7] = [
        (nr::VFIO_DEVICE_GET_INFO(), 0x3b6b, old_io_nr(100 + 7)),
        (
            nr::VFIO_DEVICE_GET_REGION_INFO(),
            0x3b6c,
            old_io_nr(100 + 8),
        ),
        (nr::VFIO_DEVICE_GET_IRQ_INFO(), 0x3b6d, old_io_nr(100 + 9)),
        (nr::VFIO_DEVICE_SET_IRQS(), 0x3b6e, old_io_nr(100 + 10)),
        (nr::VFIO_DEVICE_RESET(), 0x3b6f, old_io_nr(100 + 11)),
        (nr::VFIO_IOMMU_GET_INFO(), 0x3b70, old_io_nr(100 + 12)),
        (nr::IOMMU_IOAS_IOVA_RANGES(), 0x3b84, old_io_nr(0x84)),
    ];
    for (new, literal, old) in ours {
        assert_eq!(new, literal);
        assert_eq!(new, old);
    }
}

/// The former byte-by-byte `struct vfio_irq_set` encoder, as the reference.
fn old_irq_set_buf(flags: u32, index: u32, start: u32, count: u32, data: &[u8]) -> Vec<u8> {
    let argsz = 20 + data.len();
    let mut b = Vec::with_capacity(argsz);
    for v in [argsz as u32, flags, index, start, count] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b.extend_from_slice(data);
    b
}

#[test]
fn irq_set_bytes_match_the_former_encoding() {
    let cases: [(u32, u32, u32, u32, &[u8]); 4] = [
        (
            IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            2,
            1,
            2,
            &[1; 8],
        ),
        (IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER, 1, 0, 0, &[]),
        (IRQ_SET_DATA_NONE | IRQ_SET_ACTION_MASK, 0, 0, 1, &[]),
        (
            IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            2,
            0,
            3,
            &[7; 12],
        ),
    ];
    for (flags, index, start, count, data) in cases {
        let s = IrqSet::new(flags, index, start, count, data).unwrap();
        assert_eq!(
            s.as_bytes(),
            old_irq_set_buf(flags, index, start, count, data)
        );
        assert_eq!(s.header().argsz as usize, 20 + data.len());
    }
    let s = IrqSet::eventfds(2, 1, &[5, -1]).unwrap();
    assert_eq!(s.header().flags, 0x24);
    assert_eq!(s.header().count, 2);
    assert_eq!(s.header().start, 1);
    let mut data = 5i32.to_ne_bytes().to_vec();
    data.extend_from_slice(&(-1i32).to_ne_bytes());
    assert_eq!(s.as_bytes(), old_irq_set_buf(0x24, 2, 1, 2, &data));
}

/// Ioctls on an fd that is not a VFIO device return the kernel's errno (ENOTTY from
/// /dev/null), not a generic error.
#[test]
fn errno_is_propagated() {
    let f = File::open("/dev/null").unwrap();
    let d = DeviceFd::new(f.as_fd());
    let enotty = |r: io::Error| assert_eq!(r.raw_os_error(), Some(libc::ENOTTY), "{r}");
    enotty(d.info().unwrap_err());
    enotty(d.region_info(0).unwrap_err());
    enotty(d.irq_info(0).unwrap_err());
    enotty(d.reset().unwrap_err());
    let set = IrqSet::new(IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER, 0, 0, 1, &[]).unwrap();
    enotty(d.set_irqs(&set).unwrap_err());
}

/// A `VFIO_IOMMU_GET_INFO` answer: the 24-byte header, then the given caps in order.
fn type1_buf(flags: u32, pgsizes: u64, caps: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![0u8; 24];
    b[4..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..16].copy_from_slice(&pgsizes.to_ne_bytes());
    let mut prev: Option<usize> = None;
    for c in caps {
        let at = b.len() as u32;
        match prev {
            None => b[16..20].copy_from_slice(&at.to_ne_bytes()),
            Some(p) => b[p..p + 4].copy_from_slice(&at.to_ne_bytes()),
        }
        prev = Some(b.len() + 4);
        b.extend_from_slice(c);
    }
    let l = b.len() as u32;
    b[0..4].copy_from_slice(&l.to_ne_bytes());
    b
}

/// An IOVA-range capability with `nr` claimed and `ranges` present.
fn iova_cap(nr: u32, ranges: &[(u64, u64)]) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&1u16.to_ne_bytes()); // VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
    c.extend_from_slice(&1u16.to_ne_bytes());
    c.extend_from_slice(&0u32.to_ne_bytes());
    c.extend_from_slice(&nr.to_ne_bytes());
    c.extend_from_slice(&0u32.to_ne_bytes());
    for (s, e) in ranges {
        c.extend_from_slice(&s.to_ne_bytes());
        c.extend_from_slice(&e.to_ne_bytes());
    }
    c
}

#[test]
fn type1_info_with_iova_ranges() {
    let two = [(0, 0xfedf_ffff), (0xfef0_0000, u64::MAX)];
    let mut b = type1_buf(3, 0x1000, &[iova_cap(2, &two)]); // PGSIZES | CAPS
    let (pg, r) = decode_type1_info(&b).unwrap();
    assert_eq!(pg, 0x1000);
    assert_eq!(
        r,
        [
            IovaRange {
                start: 0,
                last: 0xfedf_ffff
            },
            IovaRange {
                start: 0xfef0_0000,
                last: u64::MAX
            }
        ]
    );
    // No CAPS flag: no ranges, even with a cap_offset.
    b[4..8].copy_from_slice(&1u32.to_ne_bytes());
    assert!(decode_type1_info(&b).unwrap().1.is_empty());
    // No PGSIZES flag: page sizes 0.
    b[4..8].copy_from_slice(&2u32.to_ne_bytes());
    assert_eq!(decode_type1_info(&b).unwrap().0, 0);
}

#[test]
fn malformed_type1_info_is_an_error() {
    // More ranges claimed than the buffer holds.
    let b = type1_buf(3, 0x1000, &[iova_cap(3, &[(0, 1), (2, 3)])]);
    assert!(matches!(
        decode_type1_info(&b),
        Err(ChainError::OutOfRange { offset: 24, .. })
    ));
    // A capability linking to itself.
    let mut b = type1_buf(3, 0x1000, &[iova_cap(1, &[(0, 1)])]);
    b[28..32].copy_from_slice(&24u32.to_ne_bytes());
    assert_eq!(
        decode_type1_info(&b).unwrap_err(),
        ChainError::Loop {
            offset: 24,
            next: 24
        }
    );
    // A cap_offset past the end, and an argsz that cuts the chain.
    let mut b = type1_buf(3, 0x1000, &[iova_cap(1, &[(0, 1)])]);
    b[16..20].copy_from_slice(&4096u32.to_ne_bytes());
    assert!(matches!(
        decode_type1_info(&b),
        Err(ChainError::OutOfRange { offset: 4096, .. })
    ));
    let mut b = type1_buf(3, 0x1000, &[iova_cap(1, &[(0, 1)])]);
    b[0..4].copy_from_slice(&40u32.to_ne_bytes());
    assert!(matches!(
        decode_type1_info(&b),
        Err(ChainError::OutOfRange {
            need: 32,
            len: 40,
            ..
        })
    ));
    // Shorter than the header.
    assert!(matches!(
        decode_type1_info(&b[..20]),
        Err(ChainError::Short { need: 24, .. })
    ));
}
