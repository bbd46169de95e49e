//! Decoding PCI configuration space as read through a device's CONFIG region.

use serde::Serialize;

/// PCI command register offset.
pub const PCI_COMMAND: u64 = 0x04;
/// Command register: memory space enable.
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus master enable (needed before a device may DMA).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// One BAR as programmed in config space (VFIO virtualises these; sizes come from the
/// region info).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Bar {
    /// BAR number (0..5).
    pub index: u32,
    /// `mem` or `io`.
    pub kind: &'static str,
    /// 64-bit memory BAR (occupies this slot and the next).
    pub is_64bit: bool,
    /// Prefetchable memory BAR.
    pub prefetchable: bool,
    /// The address bits as read (usually 0 under VFIO until a guest programs them).
    pub address: u64,
}

/// One capability in the standard or extended list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// Offset in config space.
    pub offset: u16,
    /// Capability id.
    pub id: u16,
    /// Name of the id.
    pub name: String,
    /// Extended (PCIe, offset >= 0x100) capability.
    pub extended: bool,
}

/// The decoded header of a PCI function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PciConfig {
    /// Vendor id.
    pub vendor_id: u16,
    /// Device id.
    pub device_id: u16,
    /// Command register.
    pub command: u16,
    /// Status register.
    pub status: u16,
    /// Revision id.
    pub revision: u8,
    /// Class code (base class, subclass, prog-if) as 0xBBSSPP.
    pub class_code: u32,
    /// Name of the base class / subclass.
    pub class_name: String,
    /// Header type (low 7 bits) .
    pub header_type: u8,
    /// Multi-function bit of the header type.
    pub multifunction: bool,
    /// Subsystem vendor id (type 0 headers).
    pub subsystem_vendor_id: u16,
    /// Subsystem id (type 0 headers).
    pub subsystem_id: u16,
    /// Interrupt pin (0 none, 1 INTA ... 4 INTD).
    pub interrupt_pin: u8,
    /// BARs (type 0 headers).
    pub bars: Vec<Bar>,
    /// Capabilities, standard then extended.
    pub capabilities: Vec<Capability>,
}

fn rd16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Standard capability names (`PCI_CAP_ID_*`).
pub fn cap_name(id: u8) -> &'static str {
    match id {
        0x01 => "power-management",
        0x02 => "agp",
        0x03 => "vpd",
        0x04 => "slot-id",
        0x05 => "msi",
        0x06 => "hot-swap",
        0x07 => "pci-x",
        0x08 => "hypertransport",
        0x09 => "vendor-specific",
        0x0a => "debug-port",
        0x0b => "compactpci-crc",
        0x0c => "hotplug",
        0x0d => "bridge-subsystem-vid",
        0x0e => "agp3",
        0x0f => "secure-device",
        0x10 => "pci-express",
        0x11 => "msi-x",
        0x12 => "sata",
        0x13 => "advanced-features",
        0x14 => "enhanced-allocation",
        0x15 => "flattening-portal-bridge",
        _ => "unknown",
    }
}

/// Extended capability names (`PCI_EXT_CAP_ID_*`).
pub fn ext_cap_name(id: u16) -> &'static str {
    match id {
        0x01 => "aer",
        0x02 | 0x09 => "virtual-channel",
        0x03 => "device-serial-number",
        0x04 => "power-budgeting",
        0x0b => "vendor-specific",
        0x0d => "acs",
        0x0e => "ari",
        0x0f => "ats",
        0x10 => "sr-iov",
        0x13 => "pri",
        0x15 => "resizable-bar",
        0x17 => "tph",
        0x18 => "ltr",
        0x19 => "secondary-pcie",
        0x1b => "pasid",
        0x1d => "dpc",
        0x1e => "l1-pm-substates",
        0x1f => "ptm",
        0x23 => "dvsec",
        0x25 => "data-link-feature",
        0x26 => "physical-layer-16gt",
        0x2e => "doe",
        _ => "unknown",
    }
}

/// Base class / subclass names for the common classes.
pub fn class_name(class_code: u32) -> String {
    let base = (class_code >> 16) as u8;
    let sub = (class_code >> 8) as u8;
    let s = match (base, sub) {
        (0x00, _) => "unclassified",
        (0x01, 0x08) => "storage/nvme",
        (0x01, _) => "storage",
        (0x02, 0x00) => "network/ethernet",
        (0x02, _) => "network",
        (0x03, 0x00) => "display/vga",
        (0x03, 0x02) => "display/3d",
        (0x03, _) => "display",
        (0x04, _) => "multimedia",
        (0x05, _) => "memory",
        (0x06, 0x04) => "bridge/pci",
        (0x06, _) => "bridge",
        (0x07, 0x00) => "communication/serial",
        (0x07, _) => "communication",
        (0x08, _) => "system-peripheral",
        (0x0b, _) => "processor",
        (0x0c, 0x03) => "serial-bus/usb",
        (0x0c, _) => "serial-bus",
        (0x12, _) => "processing-accelerator",
        (0xff, _) => "unassigned",
        _ => "other",
    };
    s.to_string()
}

/// Decodes config space. `b` must hold at least the 64-byte header; capabilities are
/// followed as far as `b` reaches (256 bytes for the standard list, 4 KiB for extended).
pub fn decode(b: &[u8]) -> Option<PciConfig> {
    if b.len() < 64 {
        return None;
    }
    let vendor_id = rd16(b, 0);
    if vendor_id == 0xffff || vendor_id == 0 {
        return None;
    }
    let status = rd16(b, 6);
    let class_code = rd32(b, 8) >> 8;
    let ht = b[0x0e];
    let header_type = ht & 0x7f;
    let mut bars = Vec::new();
    if header_type == 0 {
        let mut i = 0;
        while i < 6 {
            let raw = rd32(b, 0x10 + 4 * i);
            if raw & 1 == 1 {
                bars.push(Bar {
                    index: i as u32,
                    kind: "io",
                    is_64bit: false,
                    prefetchable: false,
                    address: (raw & !0x3) as u64,
                });
                i += 1;
                continue;
            }
            let is_64bit = (raw >> 1) & 0x3 == 0x2;
            let mut address = (raw & !0xf) as u64;
            if is_64bit && i < 5 {
                address |= (rd32(b, 0x10 + 4 * (i + 1)) as u64) << 32;
            }
            bars.push(Bar {
                index: i as u32,
                kind: "mem",
                is_64bit,
                prefetchable: raw & 0x8 != 0,
                address,
            });
            i += if is_64bit { 2 } else { 1 };
        }
    }
    let mut capabilities = Vec::new();
    // Standard list: status bit 4 (capabilities list), pointer at 0x34.
    if status & (1 << 4) != 0 {
        let mut ptr = (b[0x34] & 0xfc) as usize;
        let mut seen = [false; 256];
        while ptr >= 0x40 && ptr + 2 <= b.len().min(256) && !seen[ptr] {
            seen[ptr] = true;
            let id = b[ptr];
            capabilities.push(Capability {
                offset: ptr as u16,
                id: id as u16,
                name: cap_name(id).to_string(),
                extended: false,
            });
            ptr = (b[ptr + 1] & 0xfc) as usize;
        }
    }
    // Extended list at 0x100, only when config space is that large and the header is not
    // all zeros / all ones.
    if b.len() >= 0x104 {
        let mut ptr = 0x100usize;
        let mut hops = 0;
        while ptr >= 0x100 && ptr + 4 <= b.len() && hops < 128 {
            hops += 1;
            let h = rd32(b, ptr);
            if h == 0 || h == 0xffff_ffff {
                break;
            }
            let id = (h & 0xffff) as u16;
            capabilities.push(Capability {
                offset: ptr as u16,
                id,
                name: ext_cap_name(id).to_string(),
                extended: true,
            });
            ptr = ((h >> 20) & 0xffc) as usize;
        }
    }
    Some(PciConfig {
        vendor_id,
        device_id: rd16(b, 2),
        command: rd16(b, 4),
        status,
        revision: b[8],
        class_code,
        class_name: class_name(class_code),
        header_type,
        multifunction: ht & 0x80 != 0,
        subsystem_vendor_id: if header_type == 0 { rd16(b, 0x2c) } else { 0 },
        subsystem_id: if header_type == 0 { rd16(b, 0x2e) } else { 0 },
        interrupt_pin: b[0x3d],
        bars,
        capabilities,
    })
}

#[cfg(test)]
mod tests {
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
}
