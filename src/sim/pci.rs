//! PCI personality of the simulated device: config space and the BAR0 register file.

/// Vendor id (the id QEMU's test devices use).
pub const VENDOR_ID: u16 = 0x1234;
/// Device id of the simulator.
pub const DEVICE_ID: u16 = 0x5e11;
/// Subsystem vendor id.
pub const SUBSYS_VENDOR_ID: u16 = 0x1af4;
/// Subsystem id.
pub const SUBSYS_ID: u16 = 0x1100;

/// BAR0 register: identification (`"SIM1"`, read-only).
pub const REG_ID: u64 = 0x00;
/// BAR0 register: interface version (read-only).
pub const REG_VERSION: u64 = 0x04;
/// BAR0 register: scratch (read/write, cleared by reset).
pub const REG_SCRATCH: u64 = 0x08;
/// BAR0 register: low 32 bits of the migration state size (read-only).
pub const REG_STATE_SIZE_LO: u64 = 0x0c;
/// BAR0 register: high 32 bits of the migration state size (read-only).
pub const REG_STATE_SIZE_HI: u64 = 0x10;
/// BAR0 register: low 32 bits of the state seed (read-only; changes on a successful restore).
pub const REG_SEED_LO: u64 = 0x14;
/// BAR0 register: high 32 bits of the state seed (read-only).
pub const REG_SEED_HI: u64 = 0x18;
/// BAR0 register: writing vector `v` raises MSI-X vector `v` (or MSI / INTx when those are
/// the enabled index), like a device completing work (write-only; reads 0).
pub const REG_DOORBELL: u64 = 0x1c;
/// BAR0 register: counts doorbell interrupts the device raised (read-only).
pub const REG_IRQ_COUNT: u64 = 0x20;
/// Value of [`REG_ID`].
pub const ID_VALUE: u32 = u32::from_le_bytes(*b"SIM1");
/// Size of BAR0.
pub const BAR0_SIZE: u64 = 4096;
/// Offset of the MSI-X table in BAR0.
pub const MSIX_TABLE_OFFSET: u32 = 0x800;
/// Offset of the MSI-X PBA in BAR0.
pub const MSIX_PBA_OFFSET: u32 = 0xc00;
/// Number of MSI-X vectors.
pub const MSIX_VECTORS: u32 = 4;

/// 256 bytes of type-0 config space with an MSI and an MSI-X capability.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    bytes: [u8; 256],
    wmask: [u8; 256],
    bar2_size: u64,
}

impl Config {
    pub(crate) fn new(bar2_size: u64) -> Config {
        let mut c = [0u8; 256];
        let mut w = [0u8; 256];
        let put16 =
            |c: &mut [u8; 256], o: usize, v: u16| c[o..o + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |c: &mut [u8; 256], o: usize, v: u32| c[o..o + 4].copy_from_slice(&v.to_le_bytes());
        put16(&mut c, 0x00, VENDOR_ID);
        put16(&mut c, 0x02, DEVICE_ID);
        put16(&mut c, 0x06, 0x0010); // status: capability list
        c[0x08] = 0x01; // revision
        c[0x09] = 0x00; // prog-if
        c[0x0a] = 0x00; // subclass: processing accelerator
        c[0x0b] = 0x12; // class: processing accelerators
        c[0x0e] = 0x00; // header type 0
        put32(&mut c, 0x10, 0xfe00_0000); // BAR0: 32-bit memory, non-prefetchable
        put32(&mut c, 0x18, 0x0000_000c); // BAR2: 64-bit prefetchable memory (BAR2+BAR3)
        put32(&mut c, 0x1c, 0x0000_0080); //   placed at 0x80_0000_0000
        put16(&mut c, 0x2c, SUBSYS_VENDOR_ID);
        put16(&mut c, 0x2e, SUBSYS_ID);
        c[0x34] = 0x40; // capabilities pointer
        c[0x3d] = 0x01; // interrupt pin INTA
                        // MSI at 0x40: 64-bit, per-vector masking, 1 vector.
        c[0x40] = 0x05;
        c[0x41] = 0x60;
        put16(&mut c, 0x42, 0x0180);
        // MSI-X at 0x60: 4 vectors, table and PBA in BAR0.
        c[0x60] = 0x11;
        c[0x61] = 0x00;
        put16(&mut c, 0x62, (MSIX_VECTORS - 1) as u16);
        put32(&mut c, 0x64, MSIX_TABLE_OFFSET);
        put32(&mut c, 0x68, MSIX_PBA_OFFSET);
        // Writable: command, BARs (sized below), interrupt line, MSI control/address/data/mask,
        // MSI-X control (enable, function mask).
        w[0x04] = 0x46; // memory space, bus master, parity error response
        w[0x05] = 0x05; // SERR, INTx disable
        for b in w.iter_mut().take(0x20).skip(0x10) {
            *b = 0xff;
        }
        w[0x3c] = 0xff;
        w[0x42] = 0x71; // MSI enable + multiple message enable
        for b in w.iter_mut().take(0x54).skip(0x44) {
            *b = 0xff;
        }
        w[0x63] = 0xc0;
        Config {
            bytes: c,
            wmask: w,
            bar2_size,
        }
    }

    pub(crate) fn read(&self, off: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.bytes[off..off + buf.len()]);
    }

    pub(crate) fn write(&mut self, off: usize, buf: &[u8]) {
        for (i, b) in buf.iter().enumerate() {
            let o = off + i;
            let m = self.wmask[o];
            self.bytes[o] = (self.bytes[o] & !m) | (b & m);
        }
        // BAR sizing semantics: address bits below the BAR size are hardwired to 0 and the
        // type bits are read-only, so writing all-ones reads back the size mask.
        let mut b0 = [0u8; 4];
        b0.copy_from_slice(&self.bytes[0x10..0x14]);
        let v0 = u32::from_le_bytes(b0) & !((BAR0_SIZE as u32) - 1);
        self.bytes[0x10..0x14].copy_from_slice(&v0.to_le_bytes());
        let mut b2 = [0u8; 8];
        b2.copy_from_slice(&self.bytes[0x18..0x20]);
        let v2 = (u64::from_le_bytes(b2) & !(self.bar2_size - 1) & !0xf) | 0xc;
        self.bytes[0x18..0x20].copy_from_slice(&v2.to_le_bytes());
        for o in [0x14usize, 0x20, 0x24] {
            self.bytes[o..o + 4].fill(0); // BAR1, BAR4, BAR5 are not implemented
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_size_like_hardware() {
        let mut c = Config::new(16 << 20);
        c.write(0x10, &[0xff; 4]);
        let mut b = [0u8; 4];
        c.read(0x10, &mut b);
        assert_eq!(u32::from_le_bytes(b), !(4096u32 - 1));
        c.write(0x18, &[0xff; 8]);
        let mut b = [0u8; 8];
        c.read(0x18, &mut b);
        assert_eq!(u64::from_le_bytes(b), !((16u64 << 20) - 1) | 0xc);
        // Read-only ids stay.
        c.write(0, &[0; 4]);
        let mut id = [0u8; 4];
        c.read(0, &mut id);
        assert_eq!(u16::from_le_bytes([id[0], id[1]]), VENDOR_ID);
    }
}
