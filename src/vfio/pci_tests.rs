use super::*;

/// Config space of QEMU's edu device (1234:11e8) as read through vfio-pci: MSI cap at
/// 0x40, 1 MiB memory BAR0.
fn edu_fixture() -> Vec<u8> {
    let mut b = vec![0u8; 256];
    b[0..2].copy_from_slice(&0x1234u16.to_le_bytes());
    b[2..4].copy_from_slice(&0x11e8u16.to_le_bytes());
    b[4..6].copy_from_slice(&0x0000u16.to_le_bytes());
    b[6..8].copy_from_slice(&0x0010u16.to_le_bytes());
    b[8] = 0x10; // revision
    b[9..12].copy_from_slice(&[0x00, 0x00, 0xff]); // class ff0000
    b[0x10..0x14].copy_from_slice(&0x0000_0000u32.to_le_bytes());
    b[0x2c..0x2e].copy_from_slice(&0x1af4u16.to_le_bytes());
    b[0x2e..0x30].copy_from_slice(&0x1100u16.to_le_bytes());
    b[0x34] = 0x40;
    b[0x3d] = 1;
    b[0x40] = 0x05; // MSI
    b[0x41] = 0x00;
    b
}

#[test]
fn decodes_edu() {
    let c = decode(&edu_fixture()).unwrap();
    assert_eq!((c.vendor_id, c.device_id), (0x1234, 0x11e8));
    assert_eq!(c.class_code, 0xff0000);
    assert_eq!(c.class_name, "unassigned");
    assert_eq!((c.subsystem_vendor_id, c.subsystem_id), (0x1af4, 0x1100));
    assert_eq!(c.revision, 0x10);
    assert_eq!(c.interrupt_pin, 1);
    assert_eq!(c.bars.len(), 6);
    assert_eq!(c.bars[0].kind, "mem");
    assert_eq!(c.capabilities.len(), 1);
    assert_eq!(c.capabilities[0].name, "msi");
    assert_eq!(c.capabilities[0].offset, 0x40);
}

#[test]
fn bars_64bit_io_and_prefetch() {
    let mut b = edu_fixture();
    b[0x10..0x14].copy_from_slice(&0xfe00_000cu32.to_le_bytes()); // 64-bit prefetch
    b[0x14..0x18].copy_from_slice(&0x0000_0001u32.to_le_bytes());
    b[0x18..0x1c].copy_from_slice(&0x0000_c001u32.to_le_bytes()); // io
    let c = decode(&b).unwrap();
    assert_eq!(c.bars.len(), 5);
    assert!(c.bars[0].is_64bit && c.bars[0].prefetchable);
    assert_eq!(c.bars[0].address, 0x1_fe00_0000);
    assert_eq!(c.bars[1].index, 2);
    assert_eq!(c.bars[1].kind, "io");
    assert_eq!(c.bars[1].address, 0xc000);
}

#[test]
fn capability_chain_and_extended_list() {
    let mut b = edu_fixture();
    b[0x41] = 0x50;
    b[0x50] = 0x10; // PCIe
    b[0x51] = 0x70;
    b[0x70] = 0x11; // MSI-X
    b[0x71] = 0x70; // loops to itself: must stop
    b.resize(0x200, 0);
    // AER at 0x100 -> DSN at 0x148 -> end
    b[0x100..0x104].copy_from_slice(&(0x0001u32 | (1 << 16) | (0x148 << 20)).to_le_bytes());
    b[0x148..0x14c].copy_from_slice(&(0x0003u32 | (1 << 16)).to_le_bytes());
    let c = decode(&b).unwrap();
    let names: Vec<&str> = c.capabilities.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["msi", "pci-express", "msi-x", "aer", "device-serial-number"]
    );
    let ext: Vec<&str> = c
        .capabilities
        .iter()
        .filter(|c| c.extended)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(ext, ["aer", "device-serial-number"]);
}

#[test]
fn refuses_empty_or_short() {
    assert!(decode(&[0xff; 64]).is_none());
    assert!(decode(&[0u8; 32]).is_none());
}

/// The simulator's config space, read through the device interface like a kernel device's.
fn sim_config() -> Vec<u8> {
    let dev = crate::sim::open("").unwrap();
    let cfg = dev
        .info()
        .region(crate::device::uapi::PCI_CONFIG_INDEX)
        .unwrap()
        .clone();
    let mut b = vec![0u8; cfg.size as usize];
    dev.read_region(cfg.index, 0, &mut b).unwrap();
    b
}

#[test]
fn msi_and_msix_caps_of_the_simulator() {
    let b = sim_config();
    let c = decode(&b).unwrap();
    assert_eq!(c.bars[0].kind, "mem");
    let bar2 = c.bars.iter().find(|b| b.index == 2).unwrap();
    assert!(bar2.is_64bit && bar2.prefetchable);
    let msi = c.capability(PCI_CAP_ID_MSI).unwrap();
    assert_eq!(
        MsiCap::read(&b, u64::from(msi.offset)).unwrap(),
        MsiCap {
            enabled: false,
            vectors: 1,
            vectors_enabled: 1,
            is_64bit: true,
            per_vector_mask: true
        }
    );
    let msix = c.capability(PCI_CAP_ID_MSIX).unwrap();
    assert_eq!(
        MsixCap::read(&b, u64::from(msix.offset)).unwrap(),
        MsixCap {
            enabled: false,
            masked: false,
            table_size: 4,
            table_bar: 0,
            table_offset: 0x800,
            pba_bar: 0,
            pba_offset: 0xc00
        }
    );
    // The wrong capability, or one cut off by the end of the buffer, is not decoded.
    assert!(MsixCap::read(&b, u64::from(msi.offset)).is_none());
    assert!(MsixCap::read(&b[..usize::from(msix.offset) + 8], u64::from(msix.offset)).is_none());
    assert!(MsiCap::read(&b, 4096).is_none());
}

#[test]
fn lists_pointing_outside_the_buffer_end_quietly() {
    let mut b = edu_fixture();
    b[0x41] = 0xfc; // next capability at 0xfc, cut by a 0xfd-byte buffer
    assert_eq!(decode(&b[..0xfd]).unwrap().capabilities.len(), 1);
    assert_eq!(decode(&b[..0xfe]).unwrap().capabilities.len(), 2);
    // Extended header pointing past the end.
    b.resize(0x104, 0);
    b[0x100..0x104].copy_from_slice(&(0x0001u32 | (0xffc << 20)).to_le_bytes());
    let c = decode(&b).unwrap();
    assert_eq!(c.capabilities.last().unwrap().name, "aer");
}
