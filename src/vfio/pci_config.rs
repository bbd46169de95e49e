//! Reading a device's PCI configuration space through its CONFIG region.

use super::pci::{decode, PciConfig};
use super::region::PCI_CONFIG_INDEX;
use crate::device::uapi::DEVICE_FLAGS_PCI;
use crate::device::{Device, Result};

/// Reads and decodes PCI config space through the CONFIG region (index 7). `None` when the
/// device is not PCI, has no CONFIG region, or serves less than the 64-byte header. Reads
/// up to 4 KiB (extended capabilities), falling back to the standard 256 bytes when the
/// device refuses the longer read.
pub fn read_pci_config(dev: &dyn Device) -> Result<Option<PciConfig>> {
    let info = dev.info();
    if info.flags & DEVICE_FLAGS_PCI == 0 {
        return Ok(None);
    }
    let Some(cfg) = info.region(PCI_CONFIG_INDEX) else {
        return Ok(None);
    };
    let len = cfg.size.min(4096) as usize;
    if len < 64 {
        return Ok(None);
    }
    let mut b = vec![0u8; len];
    if dev.read_region(cfg.index, 0, &mut b).is_err() {
        // Some devices only serve the standard 256 bytes; the error of the longer read is
        // superseded by the outcome of this one.
        b.truncate(256.min(len));
        dev.read_region(cfg.index, 0, &mut b)?;
    }
    Ok(decode(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_simulators_config_space() {
        let dev = crate::sim::open("").unwrap();
        let c = read_pci_config(dev.as_ref()).unwrap().unwrap();
        assert_eq!(c.vendor_id, crate::sim::VENDOR_ID);
        assert_eq!(c.device_id, crate::sim::DEVICE_ID);
        assert!(c.capabilities.iter().any(|c| c.name == "msi-x"));
    }
}
