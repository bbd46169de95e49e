//! Guest-memory mapping logic against a stand-in IO address space: region iteration, IOVA
//! computation, overflow/overlap/alignment refusals, rollback, unmap order and leaks.

use std::sync::Mutex;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::*;

/// Records every call; fails the map or unmap at a chosen IOVA with a chosen errno.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<(&'static str, u64, u64)>>,
    fail_map_at: Option<(u64, i32)>,
    fail_unmap_at: Option<(u64, i32)>,
    constraints: Option<(u64, Vec<IovaRange>)>,
    /// The IOVA-range query fails with this errno.
    fail_constraints: Option<i32>,
}

impl Fake {
    fn calls(&self) -> Vec<(&'static str, u64, u64)> {
        self.calls.lock().unwrap().clone()
    }

    fn op(
        &self,
        op: &'static str,
        iova: u64,
        len: u64,
        fail: Option<(u64, i32)>,
    ) -> Result<(), DmaFailure> {
        self.calls.lock().unwrap().push((op, iova, len));
        match fail {
            Some((at, errno)) if at == iova => Err(DmaFailure {
                source: io::Error::from_raw_os_error(errno),
                hint: "fake".into(),
            }),
            _ => Ok(()),
        }
    }
}

impl DmaTarget for Fake {
    fn label(&self) -> String {
        "fake".into()
    }

    fn constraints(&self) -> Result<Option<(u64, Vec<IovaRange>)>, DmaFailure> {
        match self.fail_constraints {
            Some(errno) => Err(DmaFailure {
                source: io::Error::from_raw_os_error(errno),
                hint: "fake".into(),
            }),
            None => Ok(self.constraints.clone()),
        }
    }

    unsafe fn map(&self, iova: u64, len: u64, _host: *mut u8) -> Result<(), DmaFailure> {
        self.op("map", iova, len, self.fail_map_at)
    }

    fn unmap(&self, iova: u64, len: u64) -> Result<(), DmaFailure> {
        self.op("unmap", iova, len, self.fail_unmap_at)
    }
}

const PAGE: u64 = 0x1000;

/// Three regions, as vm-memory would describe them (host addresses page-aligned).
fn spans() -> Vec<RegionSpan> {
    vec![
        (0, 0x10_0000, 0x7f00_0000_0000),
        (0x10_0000, 0x2000, 0x7f00_1000_0000),
        (1 << 32, 0x4000, 0x7f00_2000_0000),
    ]
}

fn keeps(n: usize) -> Vec<Keep> {
    (0..n).map(|_| Box::new(()) as Keep).collect()
}

fn guest_mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), 0x10_0000),
        (GuestAddress(0x20_0000), 0x2000),
        (GuestAddress(1 << 32), 0x4000),
    ])
    .unwrap()
}

#[test]
fn every_region_of_a_guest_memory_is_planned_at_its_guest_address() {
    let mem = guest_mem();
    let p = plan_guest_dma(&mem, &IovaLayout::Identity).unwrap();
    assert_eq!(p.len(), 3);
    for (i, (r, want)) in p
        .iter()
        .zip([(0, 0x10_0000), (0x20_0000, 0x2000), (1 << 32, 0x4000)])
        .enumerate()
    {
        assert_eq!(r.region, i);
        assert_eq!((r.guest_addr, r.len), want);
        assert_eq!(r.iova, r.guest_addr);
        assert_ne!(r.host_addr, 0);
        assert_eq!(r.host_addr as u64 % PAGE, 0);
    }
    // Each region's host address is vm-memory's own.
    let host = mem.get_host_address(GuestAddress(0x20_0000)).unwrap();
    assert_eq!(p[1].host_addr, host as usize);
}

#[test]
fn offsets_and_functions_place_the_regions() {
    let p = plan(&spans(), &IovaLayout::Offset(1 << 40), PAGE).unwrap();
    assert_eq!(p[2].iova, (1 << 40) + (1 << 32));
    let p = plan(&spans()[2..], &IovaLayout::Offset(-(1 << 32)), PAGE).unwrap();
    assert_eq!(p[0].iova, 0);
    // Packed one after the other from 1 GiB.
    let lens: Vec<u64> = spans().iter().map(|s| s.1).collect();
    let packed =
        IovaLayout::function(move |i, _, _| Some((1 << 30) + lens[..i].iter().sum::<u64>()));
    let p = plan(&spans(), &packed, PAGE).unwrap();
    assert_eq!(
        p.iter().map(|r| r.iova).collect::<Vec<_>>(),
        [1 << 30, (1 << 30) + 0x10_0000, (1 << 30) + 0x10_2000]
    );
}

#[test]
fn overflow_and_refused_iovas_name_the_region() {
    let e = plan(&spans(), &IovaLayout::Offset(-0x1000), PAGE).unwrap_err();
    assert!(matches!(e, GuestDmaError::Iova { region: 0, .. }), "{e}");
    assert!(e.to_string().contains("leaves the 64-bit"), "{e}");

    let high = [(0, 0x1000, 0x1000), (0x9000_0000_0000_0000, 0x1000, 0x2000)];
    let e = plan(&high, &IovaLayout::Offset(0x7000_0000_0000_0000), PAGE).unwrap_err();
    assert!(matches!(e, GuestDmaError::Iova { region: 1, .. }), "{e}");
    assert!(e.to_string().contains("+ 0x7000000000000000"), "{e}");

    let top = [(0, 0x1000, 0x1000), (u64::MAX - 0xfff, 0x2000, 0x2000)];
    let e = plan(&top, &IovaLayout::Identity, PAGE).unwrap_err();
    assert!(matches!(e, GuestDmaError::Iova { region: 1, .. }), "{e}");
    assert!(e.to_string().contains("runs past the end"), "{e}");
    // The very last page is fine.
    let last = [(u64::MAX - 0xfff, 0x1000, 0x1000)];
    assert_eq!(
        plan(&last, &IovaLayout::Identity, PAGE).unwrap()[0].last_iova(),
        u64::MAX
    );

    let only_low = IovaLayout::function(|_, gpa, _| (gpa.0 < 1 << 32).then_some(gpa.0));
    let e = plan(&spans(), &only_low, PAGE).unwrap_err();
    assert!(matches!(e, GuestDmaError::Iova { region: 2, .. }), "{e}");
    assert!(e.to_string().contains("gave it no IOVA"), "{e}");
    assert_eq!(e.region(), 2);
    assert_eq!(e.errno(), None);
}

#[test]
fn overlapping_iovas_are_refused_naming_both_regions() {
    let e = plan(&spans(), &IovaLayout::function(|_, _, _| Some(0)), PAGE).unwrap_err();
    assert!(
        matches!(
            e,
            GuestDmaError::Overlap {
                first: 0,
                second: 1,
                iova: 0
            }
        ),
        "{e}"
    );
    // Region 2 placed inside region 0's range.
    let into_first = IovaLayout::function(|i, gpa, _| Some(if i == 2 { 0x8_0000 } else { gpa.0 }));
    let e = plan(&spans(), &into_first, PAGE).unwrap_err();
    assert!(
        matches!(
            e,
            GuestDmaError::Overlap {
                first: 0,
                second: 2,
                iova: 0x8_0000
            }
        ),
        "{e}"
    );
    assert_eq!(e.region(), 2);
    // Back to back is not an overlap.
    let adjacent = [(0, 0x1000, 0x1000), (0x1000, 0x1000, 0x2000)];
    assert!(plan(&adjacent, &IovaLayout::Identity, PAGE).is_ok());
}

#[test]
fn misaligned_regions_are_refused() {
    let odd_len = [(0, 0x1800, 0x1000)];
    let e = plan(&odd_len, &IovaLayout::Identity, PAGE).unwrap_err();
    assert!(
        matches!(
            e,
            GuestDmaError::Misaligned {
                region: 0,
                granule: PAGE,
                ..
            }
        ),
        "{e}"
    );
    let odd_host = [(0, 0x1000, 0x1010)];
    assert!(matches!(
        plan(&odd_host, &IovaLayout::Identity, PAGE),
        Err(GuestDmaError::Misaligned { .. })
    ));
    let e = plan(&spans(), &IovaLayout::Offset(0x800), PAGE).unwrap_err();
    assert!(
        matches!(e, GuestDmaError::Misaligned { region: 0, .. }),
        "{e}"
    );
    let e = plan(&[(0, 0, 0)], &IovaLayout::Identity, PAGE).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn maps_in_order_translates_and_unmaps_last_first() {
    let fake = Arc::new(Fake::default());
    let p = plan(&spans(), &IovaLayout::Offset(1 << 40), PAGE).unwrap();
    let dma = GuestMemoryDma::map(fake.clone(), p.clone(), keeps(3)).unwrap();
    assert_eq!(dma.regions(), &p[..]);
    assert_eq!(
        dma.iova(GuestAddress(0x10_0001)),
        Some((1 << 40) + 0x10_0001)
    );
    assert_eq!(dma.iova(GuestAddress(0x10_2000)), None); // between regions
    assert_eq!(
        dma.iova(GuestAddress((1 << 32) + 0x3fff)),
        Some((1 << 40) + (1 << 32) + 0x3fff)
    );
    assert!(format!("{dma:?}").contains("fake"));
    dma.unmap().unwrap();
    let want = |op| p.iter().map(move |r| (op, r.iova, r.len));
    let mut expect: Vec<_> = want("map").collect();
    expect.extend(want("unmap").rev());
    assert_eq!(fake.calls(), expect);
}

#[test]
fn drop_unmaps() {
    let fake = Arc::new(Fake::default());
    let p = plan(&spans(), &IovaLayout::Identity, PAGE).unwrap();
    drop(GuestMemoryDma::map(fake.clone(), p, keeps(3)).unwrap());
    let unmaps = fake.calls().iter().filter(|c| c.0 == "unmap").count();
    assert_eq!(unmaps, 3);
}

#[test]
fn a_refused_map_names_region_and_errno_and_rolls_back() {
    let fake = Arc::new(Fake {
        fail_map_at: Some((1 << 32, libc::ENOMEM)),
        ..Fake::default()
    });
    let p = plan(&spans(), &IovaLayout::Identity, PAGE).unwrap();
    let e = GuestMemoryDma::map(fake.clone(), p, keeps(3)).unwrap_err();
    assert!(
        matches!(
            e,
            GuestDmaError::Dma {
                region: 2,
                op: "map",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.errno(), Some(libc::ENOMEM));
    let msg = e.to_string();
    assert!(
        msg.contains("fake: DMA map of guest memory region 2"),
        "{msg}"
    );
    assert!(msg.contains("hint: fake"), "{msg}");
    assert_eq!(
        fake.calls(),
        [
            ("map", 0, 0x10_0000),
            ("map", 0x10_0000, 0x2000),
            ("map", 1 << 32, 0x4000),
            ("unmap", 0x10_0000, 0x2000),
            ("unmap", 0, 0x10_0000),
        ]
    );
    // Into the device layer's error, errno and region kept.
    let d: DeviceError = e.into();
    assert_eq!(d.errno(), Some(libc::ENOMEM));
    assert!(d.to_string().contains("guest memory region 2"), "{d}");
}

#[test]
fn a_failed_unmap_is_reported_the_others_done_and_the_region_leaked() {
    let mem = guest_mem();
    let (spans, keep) = spans_of(&mem).unwrap();
    let p = plan(&spans, &IovaLayout::Identity, PAGE).unwrap();
    let fake = Arc::new(Fake {
        fail_unmap_at: Some((0x20_0000, libc::EINVAL)),
        ..Fake::default()
    });
    let regions: Vec<_> = mem.iter().map(|r| r.get_mmap()).collect();
    let count = |i: usize| Arc::strong_count(&regions[i]);
    // The VMM's collection, the mapping's keep, and `regions`.
    assert_eq!((0..3).map(count).collect::<Vec<_>>(), [3, 3, 3]);
    let dma = GuestMemoryDma::map(fake.clone(), p, keep).unwrap();
    // The mapping keeps each region's memory alive, even without the VMM's GuestMemoryMmap.
    drop(mem);
    let e = dma.unmap().unwrap_err();
    assert!(
        matches!(
            e,
            GuestDmaError::Dma {
                region: 1,
                op: "unmap",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.errno(), Some(libc::EINVAL));
    assert_eq!(fake.calls().iter().filter(|c| c.0 == "unmap").count(), 3);
    // Regions 0 and 2 were released (only `regions` is left); region 1 leaked with its keep.
    assert_eq!((0..3).map(count).collect::<Vec<_>>(), [1, 2, 1]);
}

#[test]
fn a_failed_query_of_the_iova_ranges_refuses_the_map_with_its_errno() {
    let fake = Arc::new(Fake {
        fail_constraints: Some(libc::EFAULT),
        ..Fake::default()
    });
    let p = plan(&spans(), &IovaLayout::Identity, PAGE).unwrap();
    let e = GuestMemoryDma::map(fake.clone(), p, keeps(3)).unwrap_err();
    assert!(
        matches!(&e, GuestDmaError::Dma { region: 0, op, .. } if op.contains("IOVA ranges")),
        "{e}"
    );
    assert_eq!(e.errno(), Some(libc::EFAULT));
    assert!(
        fake.calls().is_empty(),
        "nothing is mapped: {:?}",
        fake.calls()
    );
}

#[test]
fn the_iommus_granule_and_ranges_are_checked_before_mapping() {
    let fake = Arc::new(Fake {
        constraints: Some((
            2 << 20,
            vec![IovaRange {
                start: 0,
                last: u64::MAX,
            }],
        )),
        ..Fake::default()
    });
    let p = plan(&spans(), &IovaLayout::Identity, PAGE).unwrap();
    let e = GuestMemoryDma::map(fake.clone(), p.clone(), keeps(3)).unwrap_err();
    assert!(
        matches!(
            e,
            GuestDmaError::Misaligned {
                region: 0,
                granule: 0x20_0000,
                ..
            }
        ),
        "{e}"
    );
    assert!(fake.calls().is_empty());
    let msi_hole = vec![
        IovaRange {
            start: 0,
            last: 0xfedf_ffff,
        },
        IovaRange {
            start: 0xfef0_0000,
            last: u64::MAX,
        },
    ];
    let fake = Arc::new(Fake {
        constraints: Some((PAGE, msi_hole)),
        ..Fake::default()
    });
    let into_hole =
        IovaLayout::function(|i, gpa, _| Some(if i == 1 { 0xfee0_0000 } else { gpa.0 }));
    let p = plan(&spans(), &into_hole, PAGE).unwrap();
    let e = GuestMemoryDma::map(fake.clone(), p, keeps(3)).unwrap_err();
    assert!(
        matches!(e, GuestDmaError::OutsideIovaRanges { region: 1, .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("0x0-0xfedfffff, 0xfef00000-0xffffffffffffffff"),
        "{e}"
    );
    assert!(
        fake.calls().is_empty(),
        "nothing is mapped when the plan is refused"
    );
}
