//! The framework, both drivers and the exercises against in-process fakes of edu and vhgpu
//! (`fake.rs`), and the interrupt exercise on the simulator.

mod fake;

use std::time::Duration;

use fake::{FakeDevice, FakeSpace, Kind};

use super::dma_check::{check_byte, dma_check, dma_check_with, CheckOptions};
use super::dma_pattern::{dma_pattern, PatternJob, PatternOp};
use super::irq::{exercise_irq, irq_index, IrqExercise, IrqMode};
use super::{driver_for, known_devices, DmaEngine, DriverError};
use crate::device::DeviceError;

const CMD_IO: u16 = 0x1;

#[test]
fn the_registry_matches_by_pci_id_and_id_register() {
    let space = FakeSpace::default();
    let edu = FakeDevice::new(Kind::Edu, &space, 0);
    assert_eq!(driver_for(&edu).map(|d| d.name()), Some("edu"));
    let gpu = FakeDevice::new(Kind::Vhgpu(1 << 20), &space, 0);
    let d = driver_for(&gpu).expect("vhgpu");
    assert_eq!(d.name(), "vhgpu");
    assert_eq!(d.limits().device_memory, 1 << 20);
    // The right PCI id but not the ID register: not a vhgpu.
    gpu.st().regs.insert(0, 0);
    assert!(driver_for(&gpu).is_none());
    let sim = crate::sim::open("").unwrap();
    assert!(driver_for(sim.as_ref()).is_none());
    match DmaEngine::probe(sim.as_ref()) {
        Err(DriverError::NoDriver { pci_id, known, .. }) => {
            assert_eq!(pci_id.as_deref(), Some("1234:5e11"));
            assert_eq!(known, "QEMU edu 1234:11e8, vhgpu 1234:7668");
        }
        _ => panic!("the simulator has no DMA driver"),
    }
    assert_eq!(known_devices(), "QEMU edu 1234:11e8, vhgpu 1234:7668");
}

#[test]
fn edu_check_is_byte_exact_inside_the_window_and_restores_the_device() {
    let space = FakeSpace::default();
    let dev = FakeDevice::new(Kind::Edu, &space, CMD_IO);
    let r = dma_check(&dev, &space, 6 << 10, 0).unwrap();
    assert!(r.passed(), "{r:?}");
    assert_eq!((r.driver, r.bytes, r.chunks), ("edu", 6 << 10, 3));
    assert!(r.src_iova >= 1 << 20 && r.dst_iova + (8 << 10) <= 1 << 28);
    let st = dev.st();
    assert!(!st.edu_abort);
    assert_eq!(st.transfers, 2048);
    assert_eq!(st.msi, None, "the eventfd is disconnected");
    // The buffer holds the last chunk (every chunk reused offset 0).
    assert_eq!(st.mem[0], check_byte(4096));
    drop(st);
    assert_eq!(dev.command(), CMD_IO, "PCI_COMMAND restored");
    assert_eq!(space.mapped(), 0, "buffers unmapped");
}

#[test]
fn edu_never_reaches_the_last_byte_of_its_buffer() {
    let space = FakeSpace::default();
    let dev = FakeDevice::new(Kind::Edu, &space, 0);
    // 4095 bytes at 0 are the whole window: fine in two chunks.
    let r = dma_check(&dev, &space, 4095, 0).unwrap();
    assert!(r.passed());
    // One byte further is refused before the device is touched.
    match dma_check(&dev, &space, 2048, 2048) {
        Err(DriverError::InvalidArgument { reason, .. }) => {
            assert!(reason.contains("4095 byte(s) of device memory"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Straight through the engine as well.
    let mut eng = DmaEngine::probe(&dev).unwrap();
    eng.init().unwrap();
    assert!(eng.to_device(1 << 20, 4094, 2).is_err());
    assert!(eng.to_device(1 << 20, u64::MAX, 1).is_err());
    eng.remove().unwrap();
    assert!(!dev.st().edu_abort);
    assert_eq!(dev.command(), 0);
}

#[test]
fn the_engine_keeps_its_calls_in_order() {
    let space = FakeSpace::default();
    let dev = FakeDevice::new(Kind::Vhgpu(1 << 20), &space, 0);
    let mut eng = DmaEngine::probe(&dev).unwrap();
    let seq = |r: super::Result<Duration>| matches!(r, Err(DriverError::Sequence { .. }));
    assert!(seq(eng.to_device(1 << 20, 0, 16)), "DMA before init");
    assert!(seq(eng.send_msi()), "MSI before init");
    assert!(seq(eng.memcpy_wait()), "wait without start");
    eng.init().unwrap();
    assert!(matches!(eng.init(), Err(DriverError::Sequence { .. })));
    assert_eq!(dev.command(), 0x6, "bus master + memory enabled");
    assert_eq!(
        dev.st().regs[&0x34],
        0b1011,
        "done, error, software enabled"
    );
    assert!(eng.send_msi().is_ok());
    eng.remove().unwrap();
    assert!(!eng.is_initialized());
    assert_eq!(dev.command(), 0);
    assert_eq!(dev.st().regs[&0x34], 0x4, "the enable mask is restored");
    assert_eq!(dev.st().msi, None);
    // Dropping an initialised engine restores the device too.
    let mut eng = DmaEngine::probe(&dev).unwrap();
    eng.init().unwrap();
    drop(eng);
    assert_eq!(dev.command(), 0);
    assert_eq!(dev.st().msi, None);
}

#[test]
fn vhgpu_check_spreads_over_vram_and_reports_device_errors() {
    let space = FakeSpace::default();
    let dev = FakeDevice::new(Kind::Vhgpu(4 << 20), &space, 0);
    let r = dma_check(&dev, &space, 3 << 20, 0x1000).unwrap();
    assert!(r.passed());
    assert_eq!(r.chunks, 1);
    assert_eq!(dev.st().mem[0x1000 + 0x12345], check_byte(0x12345));
    // A transfer from an unmapped IOVA: the device's errno comes back.
    let mut eng = DmaEngine::probe(&dev).unwrap();
    eng.init().unwrap();
    match eng.to_device(0x4000_0000, 0, 4096) {
        Err(DriverError::Device { source, status, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EFAULT));
            assert!(status.contains("status 0x2"), "{status}");
        }
        other => panic!("{other:?}"),
    }
    // A lost completion interrupt is a timeout naming the status.
    dev.st().lose_irqs = true;
    eng.set_timeout(Duration::from_millis(20));
    let buf = space.map_buffer(1 << 20, 4096, 0).unwrap();
    match eng.to_device(1 << 20, 0, 4096) {
        Err(DriverError::Timeout { what, status, .. }) => {
            assert_eq!(what, "DMA completion");
            assert!(status.contains("status 0x1"), "{status}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(eng.send_msi(), Err(DriverError::Timeout { .. })));
    drop(buf);
    eng.remove().unwrap();
}

use super::space::DmaSpace;

#[test]
fn fill_then_crc_round_trips_the_pattern() {
    let space = FakeSpace::default();
    let dev = FakeDevice::new(Kind::Vhgpu(1 << 20), &space, 0);
    let fill = PatternJob::Fill {
        seed: 7,
        readback: true,
    };
    let r = dma_pattern(&dev, &space, fill, 0x800, 0).unwrap();
    assert_eq!(
        (r.op, r.offset, r.len),
        (PatternOp::Fill, 0x800, (1 << 20) - 0x800)
    );
    assert_eq!((r.matched, r.first_mismatch), (Some(true), None));
    let mut want = vec![0u8; r.len as usize];
    crate::pattern::fill(7, 0x800, &mut want);
    assert_eq!(r.crc32, Some(crc32fast::hash(&want)));
    assert_eq!(&dev.st().mem[0x800..], &want[..]);

    let crc = dma_pattern(&dev, &space, PatternJob::Crc { seed: Some(7) }, 0x800, 0).unwrap();
    assert_eq!((crc.crc32, crc.matched), (r.crc32, Some(true)));
    let other = dma_pattern(&dev, &space, PatternJob::Crc { seed: Some(8) }, 0x800, 4096).unwrap();
    assert_eq!(
        (other.matched, other.first_mismatch),
        (Some(false), Some(0))
    );
    let plain = dma_pattern(&dev, &space, PatternJob::Crc { seed: None }, 0x800, 4096).unwrap();
    assert_eq!((plain.matched, plain.seed), (None, None));
    assert_eq!(plain.crc32, Some(crc32fast::hash(&want[..4096])));
    // Without read-back nothing is read: no CRC, no verdict.
    let blind = PatternJob::Fill {
        seed: 9,
        readback: false,
    };
    let r = dma_pattern(&dev, &space, blind, 0, 8192).unwrap();
    assert_eq!((r.crc32, r.matched, r.chunks), (None, None, 1));
    assert!(
        dma_pattern(&dev, &space, blind, 1 << 20, 0).is_err(),
        "empty range"
    );
    assert!(
        dma_pattern(&dev, &space, blind, 4096, 1 << 20).is_err(),
        "past the end"
    );
    assert_eq!(space.mapped(), 0);
    assert_eq!(dev.command(), 0);
}

#[test]
fn reports_keep_their_json_shape() {
    let space = FakeSpace::default();
    let dev = FakeDevice::new(Kind::Edu, &space, 0);
    let c = serde_json::to_value(dma_check(&dev, &space, 100, 0).unwrap()).unwrap();
    let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "bytes",
        "chunks",
        "dma_seconds",
        "driver",
        "dst_iova",
        "first_mismatch",
        "guard_intact",
        "hugepages",
        "matched",
        "msi_latency_us",
        "src_iova",
    ];
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    let job = PatternJob::Crc { seed: Some(1) };
    let t = serde_json::to_value(dma_pattern(&dev, &space, job, 0, 16).unwrap()).unwrap();
    assert_eq!(t["op"], "crc");
    assert!(t["crc32"].as_str().is_some_and(|s| s.len() == 8));
    assert_eq!(t["matched"], false);
}

#[test]
fn interrupts_loop_back_on_the_simulator() {
    let sim = crate::sim::open("").unwrap();
    let d = sim.as_ref();
    assert_eq!(irq_index(d, "intx").unwrap(), 0);
    assert_eq!(irq_index(d, "2").unwrap(), 2);
    match irq_index(d, "9") {
        Err(DeviceError::NoSuch { what, .. }) => assert!(what.contains("1 (MSI, 1 vector(s))")),
        other => panic!("{other:?}"),
    }
    let mut x = IrqExercise::loopback(crate::sim::INTX);
    x.count = 20;
    let r = exercise_irq(d, &x).unwrap();
    assert!(r.all_delivered() && r.disabled);
    assert_eq!((r.mode, r.name.as_str()), (IrqMode::Loopback, "INTX"));
    let m = r.mask.unwrap();
    assert_eq!((m.mask.as_str(), m.unmask.as_str()), ("ok", "ok"));
    assert_eq!(m.delivered_while_masked, Some(false));
    assert_eq!(
        m.delivered_after_unmask,
        Some(true),
        "INTx keeps it pending"
    );
    // The index is off again: MSI can be enabled now (one of INTx/MSI/MSI-X at a time).
    let msi = IrqExercise {
        mask_check: false,
        ..IrqExercise::loopback(crate::sim::MSI)
    };
    let r = exercise_irq(d, &msi).unwrap();
    assert_eq!((r.delivered, r.mask.is_none()), (1, true));
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["mode"], "loopback");
    // Waiting for the device: nothing comes, which is a result, not an error.
    let wait = IrqExercise {
        trigger: false,
        timeout: Duration::from_millis(5),
        ..IrqExercise::loopback(crate::sim::MSI)
    };
    let r = exercise_irq(d, &wait).unwrap();
    assert!(!r.all_delivered() && r.latency.is_none() && r.mask.is_none());
    assert_eq!(r.mode, IrqMode::Device);
    // A vector the index does not have fails, and leaves the index disabled.
    let bad = IrqExercise {
        vector: 3,
        ..IrqExercise::loopback(crate::sim::INTX)
    };
    assert!(exercise_irq(d, &bad).is_err());
    assert!(exercise_irq(d, &msi).is_ok());
}

#[test]
fn after_unmapping_the_iommu_stops_the_device_both_ways() {
    let space = FakeSpace::default();
    let dev = FakeDevice::new(Kind::Edu, &space, CMD_IO);
    let mut o = CheckOptions::new(6 << 10, 0);
    o.unmapped = true;
    o.iova = Some(0x20_0000);
    let r = dma_check_with(&dev, &space, &o).unwrap();
    assert!(r.passed(), "{r:?}");
    assert_eq!((r.src_iova, r.dst_iova), (0x20_0000, 0x20_3000));
    let u = r.unmapped.clone().expect("probed");
    assert_eq!(
        (u.bytes, u.write_iova, u.read_iova),
        (2048, 0x20_3000, 0x20_0000)
    );
    assert!(u.write_blocked && u.read_blocked && u.blocked());
    // edu says nothing: the IOMMU drops its accesses.
    assert_eq!((u.write_error, u.read_error), (None, None));
    assert!(!r.hugepages, "the fake space has no hugetlb pages");
    assert_eq!(space.mapped(), 0, "buffers unmapped");
    assert_eq!(dev.command(), CMD_IO, "PCI_COMMAND restored");
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["unmapped"]["write_blocked"], true);
    assert!(
        serde_json::to_value(dma_check(&dev, &space, 100, 0).unwrap())
            .unwrap()
            .get("unmapped")
            .is_none()
    );

    // vhgpu reports the refused DMA itself: counted as blocked, with its error kept.
    let gpu = FakeDevice::new(Kind::Vhgpu(1 << 20), &space, 0);
    let r = dma_check_with(&gpu, &space, &o).unwrap();
    let u = r.unmapped.expect("probed");
    assert!(u.blocked(), "{u:?}");
    assert!(u.write_error.is_some() && u.read_error.is_some(), "{u:?}");

    // An IOMMU that keeps the mappings: the device reaches both buffers and the check fails.
    let mut leaky = FakeSpace::default();
    leaky.leaky = true;
    let dev = FakeDevice::new(Kind::Edu, &leaky, CMD_IO);
    let r = dma_check_with(&dev, &leaky, &o).unwrap();
    let u = r.unmapped.clone().expect("probed");
    assert!(!u.write_blocked && !u.read_blocked, "{u:?}");
    assert!(r.matched && !r.passed());
    assert_eq!(leaky.mapped(), 0);
}

#[test]
fn an_explicit_iova_must_leave_room_below_the_dma_limit() {
    let space = FakeSpace::default();
    let dev = FakeDevice::new(Kind::Edu, &space, CMD_IO);
    let mut o = CheckOptions::new(100, 0);
    o.iova = Some((1 << 28) - 0x1000);
    match dma_check_with(&dev, &space, &o) {
        Err(DriverError::InvalidArgument { reason, .. }) => {
            assert!(reason.contains("DMA limit 0x10000000"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(space.mapped(), 0);
}

#[test]
fn device_mode_makes_vhgpu_raise_msix_vectors_and_masks_them() {
    let space = FakeSpace::default();
    let dev = FakeDevice::new(Kind::Vhgpu(1 << 20), &space, 0);
    for vector in 0..4 {
        let x = IrqExercise {
            index: 2,
            vector,
            trigger: false,
            count: 5,
            timeout: Duration::from_secs(5),
            mask_check: true,
        };
        let r = exercise_irq(&dev, &x).unwrap();
        assert!(r.all_delivered() && r.disabled, "vector {vector}: {r:?}");
        assert_eq!((r.mode, r.raised_by), (IrqMode::Device, Some("vhgpu")));
        let m = r.mask.unwrap();
        assert_eq!(
            m.delivered_while_masked,
            Some(false),
            "held back while masked"
        );
        assert_eq!(m.delivered_after_unmask, Some(true), "delivered on unmask");
    }
    assert_eq!(dev.st().msix, [None; 4], "the index is disabled again");
    // MSI is not raised by the driver: device mode waits, and nothing comes.
    let wait = IrqExercise {
        trigger: false,
        timeout: Duration::from_millis(5),
        ..IrqExercise::loopback(1)
    };
    let r = exercise_irq(&dev, &wait).unwrap();
    assert_eq!((r.delivered, r.raised_by), (0, None));
}

#[test]
fn dirty_log_pages_and_comparison() {
    use crate::drivers::dirty_log::{compare, page_ranges, pages_written};
    use crate::vfio::IovaRange;
    let base = 0x10_0000;
    // A piece inside one page, one across two, one ending on a page edge, an overlap.
    let writes = [
        (0x10, 0x20),
        (0x1ff0, 0x20),
        (0x5000, 0x1000),
        (0x5800, 0x10),
    ];
    let w = pages_written(base, &writes, 4096);
    assert_eq!(w, vec![base, base + 0x1000, base + 0x2000, base + 0x5000]);
    assert_eq!(
        page_ranges(&w, 4096),
        vec![
            IovaRange {
                start: base,
                last: base + 0x2fff
            },
            IovaRange {
                start: base + 0x5000,
                last: base + 0x5fff
            },
        ]
    );
    // In 2 MiB report pages everything is one page.
    assert_eq!(pages_written(base, &writes, 2 << 20), vec![0]);
    let dirty = vec![base, base + 0x2000, base + 0x9000];
    let (missing, extra) = compare(&w, &dirty);
    assert_eq!(missing, vec![base + 0x1000, base + 0x5000]);
    assert_eq!(extra, vec![base + 0x9000]);
    assert!(pages_written(base, &[(0, 0)], 4096).is_empty());
}
