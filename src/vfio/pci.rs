//! Decoding PCI configuration space as read through a device's CONFIG region.

use serde::Serialize;

// Type-0 header (`include/uapi/linux/pci_regs.h`): register offsets in config space.

/// `PCI_VENDOR_ID` (16 bits).
pub const PCI_VENDOR_ID: u64 = 0x00;
/// `PCI_DEVICE_ID` (16 bits).
pub const PCI_DEVICE_ID: u64 = 0x02;
/// `PCI_COMMAND` (16 bits).
pub const PCI_COMMAND: u64 = 0x04;
/// `PCI_STATUS` (16 bits).
pub const PCI_STATUS: u64 = 0x06;
/// `PCI_REVISION_ID` (8 bits); the class code is the 24 bits above it (`PCI_CLASS_REVISION`).
pub const PCI_REVISION_ID: u64 = 0x08;
/// `PCI_HEADER_TYPE` (8 bits).
pub const PCI_HEADER_TYPE: u64 = 0x0e;
/// `PCI_BASE_ADDRESS_0`: six 32-bit BARs from here (type-0 headers).
pub const PCI_BASE_ADDRESS_0: u64 = 0x10;
/// `PCI_SUBSYSTEM_VENDOR_ID` (16 bits, type-0 headers).
pub const PCI_SUBSYSTEM_VENDOR_ID: u64 = 0x2c;
/// `PCI_SUBSYSTEM_ID` (16 bits, type-0 headers).
pub const PCI_SUBSYSTEM_ID: u64 = 0x2e;
/// `PCI_CAPABILITY_LIST`: offset of the first standard capability (8 bits).
pub const PCI_CAPABILITY_LIST: u64 = 0x34;
/// `PCI_INTERRUPT_PIN` (8 bits).
pub const PCI_INTERRUPT_PIN: u64 = 0x3d;
/// `PCI_STD_HEADER_SIZEOF`: standard capabilities live at or above this offset.
pub const PCI_STD_HEADER_SIZEOF: u64 = 0x40;
/// `PCI_CFG_SPACE_SIZE`: the standard capability list stays below this offset; the
/// extended (PCIe) list starts here.
pub const PCI_CFG_SPACE_SIZE: u64 = 0x100;

/// Command register: memory space enable (`PCI_COMMAND_MEMORY`).
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus master enable (`PCI_COMMAND_MASTER`; needed before a device may
/// DMA).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// Status register: the function has a capability list (`PCI_STATUS_CAP_LIST`).
pub const PCI_STATUS_CAP_LIST: u16 = 1 << 4;
/// Header type: the layout bits (`PCI_HEADER_TYPE_MASK`; 0 is a type-0 endpoint).
pub const PCI_HEADER_TYPE_MASK: u8 = 0x7f;
/// Header type: multi-function device (`PCI_HEADER_TYPE_MFD`).
pub const PCI_HEADER_TYPE_MFD: u8 = 0x80;

/// BAR: I/O space (`PCI_BASE_ADDRESS_SPACE_IO`), else memory.
pub const PCI_BASE_ADDRESS_SPACE_IO: u32 = 0x01;
/// Memory BAR: the type bits (`PCI_BASE_ADDRESS_MEM_TYPE_MASK`).
pub const PCI_BASE_ADDRESS_MEM_TYPE_MASK: u32 = 0x06;
/// Memory BAR type: 64-bit, taking the next BAR slot too (`PCI_BASE_ADDRESS_MEM_TYPE_64`).
pub const PCI_BASE_ADDRESS_MEM_TYPE_64: u32 = 0x04;
/// Memory BAR: prefetchable (`PCI_BASE_ADDRESS_MEM_PREFETCH`).
pub const PCI_BASE_ADDRESS_MEM_PREFETCH: u32 = 0x08;
/// Memory BAR: the address bits (`PCI_BASE_ADDRESS_MEM_MASK`).
pub const PCI_BASE_ADDRESS_MEM_MASK: u32 = !0x0f;
/// I/O BAR: the address bits (`PCI_BASE_ADDRESS_IO_MASK`).
pub const PCI_BASE_ADDRESS_IO_MASK: u32 = !0x03;

// Standard capability list: each capability starts with an id byte and a next-pointer byte.

/// `PCI_CAP_LIST_ID`: offset of the id in a capability.
pub const PCI_CAP_LIST_ID: u64 = 0;
/// `PCI_CAP_LIST_NEXT`: offset of the next pointer in a capability.
pub const PCI_CAP_LIST_NEXT: u64 = 1;
/// Pointers in the standard list are dword aligned: their low 2 bits are ignored.
const PCI_CAP_PTR_MASK: u8 = 0xfc;
/// `PCI_CAP_ID_MSI`.
pub const PCI_CAP_ID_MSI: u8 = 0x05;
/// `PCI_CAP_ID_EXP`: PCI Express.
pub const PCI_CAP_ID_EXP: u8 = 0x10;
/// `PCI_CAP_ID_MSIX`.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;

// MSI and MSI-X capability registers, as offsets from the capability.

/// `PCI_MSI_FLAGS`: MSI message control (16 bits).
pub const PCI_MSI_FLAGS: u64 = 2;
/// `PCI_MSI_FLAGS_ENABLE`.
pub const PCI_MSI_FLAGS_ENABLE: u16 = 0x0001;
/// `PCI_MSI_FLAGS_QMASK`: log2 of the vectors the function can request (bits 1..3).
pub const PCI_MSI_FLAGS_QMASK: u16 = 0x000e;
/// `PCI_MSI_FLAGS_QSIZE`: log2 of the vectors enabled (bits 4..6).
pub const PCI_MSI_FLAGS_QSIZE: u16 = 0x0070;
/// `PCI_MSI_FLAGS_64BIT`: 64-bit message addresses.
pub const PCI_MSI_FLAGS_64BIT: u16 = 0x0080;
/// `PCI_MSI_FLAGS_MASKBIT`: per-vector masking.
pub const PCI_MSI_FLAGS_MASKBIT: u16 = 0x0100;
/// `PCI_MSIX_FLAGS`: MSI-X message control (16 bits).
pub const PCI_MSIX_FLAGS: u64 = 2;
/// `PCI_MSIX_FLAGS_QSIZE`: table size minus one.
pub const PCI_MSIX_FLAGS_QSIZE: u16 = 0x07ff;
/// `PCI_MSIX_FLAGS_MASKALL`.
pub const PCI_MSIX_FLAGS_MASKALL: u16 = 0x4000;
/// `PCI_MSIX_FLAGS_ENABLE`.
pub const PCI_MSIX_FLAGS_ENABLE: u16 = 0x8000;
/// `PCI_MSIX_TABLE`: table offset and BAR indicator (32 bits).
pub const PCI_MSIX_TABLE: u64 = 4;
/// `PCI_MSIX_PBA`: pending-bit array offset and BAR indicator (32 bits).
pub const PCI_MSIX_PBA: u64 = 8;
/// `PCI_MSIX_TABLE_BIR` / `PCI_MSIX_PBA_BIR`: the BAR bits of the two registers above; the
/// rest is the offset in that BAR.
pub const PCI_MSIX_BIR_MASK: u32 = 0x7;

// Extended capability list: each capability starts with a 32-bit header.

/// `PCI_EXT_CAP_ID(header)`: the id bits.
const PCI_EXT_CAP_ID_MASK: u32 = 0xffff;
/// `PCI_EXT_CAP_NEXT(header)`: the next pointer is bits 20..31, dword aligned.
const PCI_EXT_CAP_NEXT_SHIFT: u32 = 20;
const PCI_EXT_CAP_NEXT_MASK: u32 = 0xffc;

/// The byte at `off` of config space `b`, if inside.
pub(crate) fn read_u8(b: &[u8], off: u64) -> Option<u8> {
    b.get(usize::try_from(off).ok()?).copied()
}

/// The little-endian `u16` at `off` of config space `b`, if inside.
pub(crate) fn read_u16(b: &[u8], off: u64) -> Option<u16> {
    let o = usize::try_from(off).ok()?;
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The little-endian `u32` at `off` of config space `b`, if inside.
pub(crate) fn read_u32(b: &[u8], off: u64) -> Option<u32> {
    let o = usize::try_from(off).ok()?;
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}

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
/// Every read is bounds-checked: a short buffer or a list pointing outside it ends
/// decoding, never panics.
pub fn decode(b: &[u8]) -> Option<PciConfig> {
    if (b.len() as u64) < PCI_STD_HEADER_SIZEOF {
        return None;
    }
    let vendor_id = read_u16(b, PCI_VENDOR_ID)?;
    if vendor_id == 0xffff || vendor_id == 0 {
        return None;
    }
    let status = read_u16(b, PCI_STATUS)?;
    let class_code = read_u32(b, PCI_REVISION_ID)? >> 8;
    let ht = read_u8(b, PCI_HEADER_TYPE)?;
    let header_type = ht & PCI_HEADER_TYPE_MASK;
    let type0 = header_type == 0;
    let mut capabilities = standard_caps(b, status);
    capabilities.extend(extended_caps(b));
    Some(PciConfig {
        vendor_id,
        device_id: read_u16(b, PCI_DEVICE_ID)?,
        command: read_u16(b, PCI_COMMAND)?,
        status,
        revision: read_u8(b, PCI_REVISION_ID)?,
        class_code,
        class_name: class_name(class_code),
        header_type,
        multifunction: ht & PCI_HEADER_TYPE_MFD != 0,
        subsystem_vendor_id: if type0 {
            read_u16(b, PCI_SUBSYSTEM_VENDOR_ID)?
        } else {
            0
        },
        subsystem_id: if type0 {
            read_u16(b, PCI_SUBSYSTEM_ID)?
        } else {
            0
        },
        interrupt_pin: read_u8(b, PCI_INTERRUPT_PIN)?,
        bars: if type0 { bars(b)? } else { Vec::new() },
        capabilities,
    })
}

/// The six BARs of a type-0 header (a 64-bit BAR takes two slots).
fn bars(b: &[u8]) -> Option<Vec<Bar>> {
    let mut bars = Vec::new();
    let mut i = 0u32;
    while i < 6 {
        let at = PCI_BASE_ADDRESS_0 + 4 * u64::from(i);
        let raw = read_u32(b, at)?;
        if raw & PCI_BASE_ADDRESS_SPACE_IO != 0 {
            bars.push(Bar {
                index: i,
                kind: "io",
                is_64bit: false,
                prefetchable: false,
                address: u64::from(raw & PCI_BASE_ADDRESS_IO_MASK),
            });
            i += 1;
            continue;
        }
        let is_64bit = raw & PCI_BASE_ADDRESS_MEM_TYPE_MASK == PCI_BASE_ADDRESS_MEM_TYPE_64;
        let mut address = u64::from(raw & PCI_BASE_ADDRESS_MEM_MASK);
        if is_64bit && i < 5 {
            address |= u64::from(read_u32(b, at + 4)?) << 32;
        }
        bars.push(Bar {
            index: i,
            kind: "mem",
            is_64bit,
            prefetchable: raw & PCI_BASE_ADDRESS_MEM_PREFETCH != 0,
            address,
        });
        i += if is_64bit { 2 } else { 1 };
    }
    Some(bars)
}

/// The standard list (when the status register announces one): from
/// `PCI_CAPABILITY_LIST`, within the first 256 bytes, each capability visited once.
fn standard_caps(b: &[u8], status: u16) -> Vec<Capability> {
    let mut caps = Vec::new();
    if status & PCI_STATUS_CAP_LIST == 0 {
        return caps;
    }
    let end = (b.len() as u64).min(PCI_CFG_SPACE_SIZE);
    let mut ptr = u64::from(read_u8(b, PCI_CAPABILITY_LIST).unwrap_or(0) & PCI_CAP_PTR_MASK);
    let mut seen = [false; PCI_CFG_SPACE_SIZE as usize];
    while ptr >= PCI_STD_HEADER_SIZEOF && ptr + 2 <= end {
        match seen.get_mut(ptr as usize) {
            Some(s) if !*s => *s = true,
            _ => break,
        }
        let (Some(id), Some(next)) = (
            read_u8(b, ptr + PCI_CAP_LIST_ID),
            read_u8(b, ptr + PCI_CAP_LIST_NEXT),
        ) else {
            break;
        };
        caps.push(Capability {
            offset: ptr as u16,
            id: u16::from(id),
            name: cap_name(id).to_string(),
            extended: false,
        });
        ptr = u64::from(next & PCI_CAP_PTR_MASK);
    }
    caps
}

/// The extended (PCIe) list at 0x100, when config space reaches that far and its first
/// header is neither all zeros nor all ones; at most 128 capabilities.
fn extended_caps(b: &[u8]) -> Vec<Capability> {
    let mut caps = Vec::new();
    let mut ptr = PCI_CFG_SPACE_SIZE;
    let mut hops = 0;
    while ptr >= PCI_CFG_SPACE_SIZE && hops < 128 {
        let Some(h) = read_u32(b, ptr) else {
            break;
        };
        hops += 1;
        if h == 0 || h == 0xffff_ffff {
            break;
        }
        let id = (h & PCI_EXT_CAP_ID_MASK) as u16;
        caps.push(Capability {
            offset: ptr as u16,
            id,
            name: ext_cap_name(id).to_string(),
            extended: true,
        });
        ptr = u64::from((h >> PCI_EXT_CAP_NEXT_SHIFT) & PCI_EXT_CAP_NEXT_MASK);
    }
    caps
}

impl PciConfig {
    /// The first standard capability with id `id` (`PCI_CAP_ID_MSI`, ...).
    pub fn capability(&self, id: u8) -> Option<&Capability> {
        self.capabilities
            .iter()
            .find(|c| !c.extended && c.id == u16::from(id))
    }
}

/// An MSI capability (`PCI_CAP_ID_MSI`), decoded from its message control.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MsiCap {
    /// MSI enabled.
    pub enabled: bool,
    /// Vectors the function can request (1, 2, 4 ... 32).
    pub vectors: u32,
    /// Vectors enabled.
    pub vectors_enabled: u32,
    /// 64-bit message addresses.
    pub is_64bit: bool,
    /// Per-vector masking.
    pub per_vector_mask: bool,
}

impl MsiCap {
    /// Reads the MSI capability at offset `cap` of config space `b`.
    pub fn read(b: &[u8], cap: u64) -> Option<MsiCap> {
        if read_u8(b, cap + PCI_CAP_LIST_ID)? != PCI_CAP_ID_MSI {
            return None;
        }
        let ctl = read_u16(b, cap + PCI_MSI_FLAGS)?;
        let pow2 = |bits: u16| 1u32 << bits.min(5);
        Some(MsiCap {
            enabled: ctl & PCI_MSI_FLAGS_ENABLE != 0,
            vectors: pow2((ctl & PCI_MSI_FLAGS_QMASK) >> 1),
            vectors_enabled: pow2((ctl & PCI_MSI_FLAGS_QSIZE) >> 4),
            is_64bit: ctl & PCI_MSI_FLAGS_64BIT != 0,
            per_vector_mask: ctl & PCI_MSI_FLAGS_MASKBIT != 0,
        })
    }
}

/// An MSI-X capability (`PCI_CAP_ID_MSIX`): the table and pending-bit array locations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MsixCap {
    /// MSI-X enabled.
    pub enabled: bool,
    /// All vectors masked (function mask).
    pub masked: bool,
    /// Number of table entries (vectors).
    pub table_size: u32,
    /// BAR holding the table.
    pub table_bar: u8,
    /// Offset of the table in that BAR.
    pub table_offset: u32,
    /// BAR holding the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the pending-bit array in that BAR.
    pub pba_offset: u32,
}

impl MsixCap {
    /// Reads the MSI-X capability at offset `cap` of config space `b`.
    pub fn read(b: &[u8], cap: u64) -> Option<MsixCap> {
        if read_u8(b, cap + PCI_CAP_LIST_ID)? != PCI_CAP_ID_MSIX {
            return None;
        }
        let ctl = read_u16(b, cap + PCI_MSIX_FLAGS)?;
        let table = read_u32(b, cap + PCI_MSIX_TABLE)?;
        let pba = read_u32(b, cap + PCI_MSIX_PBA)?;
        Some(MsixCap {
            enabled: ctl & PCI_MSIX_FLAGS_ENABLE != 0,
            masked: ctl & PCI_MSIX_FLAGS_MASKALL != 0,
            table_size: u32::from(ctl & PCI_MSIX_FLAGS_QSIZE) + 1,
            table_bar: (table & PCI_MSIX_BIR_MASK) as u8,
            table_offset: table & !PCI_MSIX_BIR_MASK,
            pba_bar: (pba & PCI_MSIX_BIR_MASK) as u8,
            pba_offset: pba & !PCI_MSIX_BIR_MASK,
        })
    }
}

#[cfg(test)]
#[path = "pci_tests.rs"]
mod tests;
