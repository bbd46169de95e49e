//! In-process stand-ins for the tests: an IOMMU address space ([`FakeSpace`]) and a PCI
//! device ([`FakeDevice`]) that behaves like QEMU's edu or like vhgpu at the register level
//! and DMAs into the fake space.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::device::{
    Device, DeviceError, DeviceIdentity, DeviceInfo, IrqInfo, MigFlags, MigState, PrecopyInfo,
    RegionInfo, RegionMap, Result, IRQ_FLAG_EVENTFD, IRQ_FLAG_MASKABLE, IRQ_FLAG_NORESIZE,
    REGION_FLAG_READ, REGION_FLAG_WRITE,
};
use crate::drivers::space::{DmaRegion, DmaSpace};
use crate::vfio::IovaRange;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Mapped buffers by IOVA.
#[derive(Default)]
pub struct FakeSpace {
    bufs: Arc<Mutex<BTreeMap<u64, Vec<u8>>>>,
    /// A broken IOMMU: `unmap_keep` leaves the mapping in place.
    pub leaky: bool,
}

impl FakeSpace {
    /// How many buffers are still mapped.
    pub fn mapped(&self) -> usize {
        lock(&self.bufs).len()
    }

    fn shared(&self) -> Arc<Mutex<BTreeMap<u64, Vec<u8>>>> {
        Arc::clone(&self.bufs)
    }
}

/// Copies between IOVAs and `dev_mem` the way an IOMMU would allow: only inside one mapped
/// buffer; `Err(EFAULT)` otherwise.
fn dma(
    bufs: &Mutex<BTreeMap<u64, Vec<u8>>>,
    iova: u64,
    dev_mem: &mut [u8],
    to_device: bool,
) -> std::result::Result<(), i32> {
    let mut g = lock(bufs);
    let (base, buf) = g.range_mut(..=iova).next_back().ok_or(libc::EFAULT)?;
    let off = (iova - *base) as usize;
    let end = off + dev_mem.len();
    if end > buf.len() {
        return Err(libc::EFAULT);
    }
    if to_device {
        dev_mem.copy_from_slice(&buf[off..end]);
    } else {
        buf[off..end].copy_from_slice(dev_mem);
    }
    Ok(())
}

impl DmaSpace for FakeSpace {
    fn iova_ranges(&self) -> Result<(u64, Vec<IovaRange>)> {
        Ok((
            4096,
            vec![
                IovaRange {
                    start: 0,
                    last: 0xfedf_ffff,
                },
                IovaRange {
                    start: 0xfef0_0000,
                    last: 0x7f_ffff_ffff,
                },
            ],
        ))
    }

    fn map_buffer(&self, iova: u64, len: u64, fill: u8) -> Result<Box<dyn DmaRegion + '_>> {
        let len = len.div_ceil(4096) * 4096;
        lock(&self.bufs).insert(iova, vec![fill; len as usize]);
        Ok(Box::new(FakeRegion {
            space: self,
            iova,
            len,
            kept: Mutex::new(None),
        }))
    }
}

struct FakeRegion<'a> {
    space: &'a FakeSpace,
    iova: u64,
    len: u64,
    /// The memory after `unmap_keep` (out of the device's reach).
    kept: Mutex<Option<Vec<u8>>>,
}

impl FakeRegion<'_> {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let mut k = lock(&self.kept);
        match k.as_mut() {
            Some(b) => f(b),
            None => f(lock(&self.space.bufs).get_mut(&self.iova).expect("mapped")),
        }
    }
}

impl DmaRegion for FakeRegion<'_> {
    fn iova(&self) -> u64 {
        self.iova
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.with(|b| buf.copy_from_slice(&b[offset as usize..offset as usize + buf.len()]));
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.with(|b| b[offset as usize..offset as usize + data.len()].copy_from_slice(data));
        Ok(())
    }

    fn unmap(self: Box<Self>) -> Result<()> {
        lock(&self.space.bufs).remove(&self.iova);
        Ok(())
    }

    fn unmap_keep(&mut self) -> Result<()> {
        // A leaky IOMMU keeps the mapping: the device still reaches the memory.
        let mut k = lock(&self.kept);
        if k.is_none() && !self.space.leaky {
            *k = lock(&self.space.bufs).remove(&self.iova);
        }
        Ok(())
    }
}

impl Drop for FakeRegion<'_> {
    fn drop(&mut self) {
        lock(&self.space.bufs).remove(&self.iova);
    }
}

/// Which device the fake plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// QEMU edu (1234:11e8).
    Edu,
    /// vhgpu (1234:7668) with this much VRAM.
    Vhgpu(u64),
}

/// The fake's mutable state, open to the tests.
pub struct State {
    /// Config space.
    pub config: [u8; 256],
    /// BAR0 registers by offset.
    pub regs: HashMap<u64, u64>,
    /// edu's 4 KiB buffer or vhgpu's VRAM.
    pub mem: Vec<u8>,
    /// The MSI eventfd.
    pub msi: Option<RawFd>,
    /// vhgpu's MSI-X eventfds, masked and pending vectors.
    pub msix: [Option<RawFd>; 4],
    /// Masked MSI-X vectors (bit per vector).
    pub msix_masked: u32,
    /// MSI-X vectors raised while masked.
    pub msix_pending: u32,
    /// Drop the next interrupts instead of signalling them.
    pub lose_irqs: bool,
    /// Set when an edu transfer touched the last byte of its buffer (QEMU 7.2 aborts).
    pub edu_abort: bool,
    /// Largest transfer the device carried out so far, in bytes (edu).
    pub transfers: u64,
}

/// A PCI device at the register level.
pub struct FakeDevice {
    info: DeviceInfo,
    kind: Kind,
    bufs: Arc<Mutex<BTreeMap<u64, Vec<u8>>>>,
    /// State.
    pub state: Mutex<State>,
}

const EDU_CMD: u64 = 0x98;

impl FakeDevice {
    /// A fake of `kind` DMA-ing into `space`; PCI_COMMAND starts at `command`.
    pub fn new(kind: Kind, space: &FakeSpace, command: u16) -> FakeDevice {
        let (id, mem) = match kind {
            Kind::Edu => ("1234:11e8", 4096),
            Kind::Vhgpu(vram) => ("1234:7668", vram as usize),
        };
        let mut config = [0u8; 256];
        config[4..6].copy_from_slice(&command.to_le_bytes());
        let mut regs = HashMap::new();
        if let Kind::Vhgpu(vram) = kind {
            regs.insert(0x00, 0x5648_4731);
            regs.insert(0x08, vram & 0xffff_ffff);
            regs.insert(0x0c, vram >> 32);
            regs.insert(0x34, 0x4); // the doorbell bit a previous user left enabled
        }
        let rw = REGION_FLAG_READ | REGION_FLAG_WRITE;
        FakeDevice {
            info: DeviceInfo {
                name: "fake".into(),
                backend: "fake".into(),
                flags: 1 << 1,
                regions: vec![
                    RegionInfo {
                        index: 0,
                        name: "BAR0".into(),
                        size: 4096,
                        offset: 0,
                        flags: rw,
                        caps: Vec::new(),
                    },
                    RegionInfo {
                        index: 7,
                        name: "CONFIG".into(),
                        size: 256,
                        offset: 7 << 40,
                        flags: rw,
                        caps: Vec::new(),
                    },
                ],
                irqs: std::iter::once(IrqInfo {
                    index: 1,
                    name: "MSI".into(),
                    count: 1,
                    flags: IRQ_FLAG_EVENTFD | IRQ_FLAG_NORESIZE,
                })
                .chain(matches!(kind, Kind::Vhgpu(_)).then(|| IrqInfo {
                    index: 2,
                    name: "MSIX".into(),
                    count: 4,
                    flags: IRQ_FLAG_EVENTFD | IRQ_FLAG_MASKABLE | IRQ_FLAG_NORESIZE,
                }))
                .collect(),
                identity: DeviceIdentity {
                    device_api: "vfio-pci".into(),
                    pci_id: Some(id.into()),
                    ..DeviceIdentity::default()
                },
            },
            kind,
            bufs: space.shared(),
            state: Mutex::new(State {
                config,
                regs,
                mem: vec![0; mem],
                msi: None,
                msix: [None; 4],
                msix_masked: 0,
                msix_pending: 0,
                lose_irqs: false,
                edu_abort: false,
                transfers: 0,
            }),
        }
    }

    /// The state.
    pub fn st(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// PCI_COMMAND as the device holds it.
    pub fn command(&self) -> u16 {
        let s = self.st();
        u16::from_le_bytes([s.config[4], s.config[5]])
    }

    fn unsupported(&self, what: &str) -> DeviceError {
        DeviceError::Unsupported {
            device: "fake".into(),
            what: what.into(),
        }
    }

    fn write_reg(&self, s: &mut State, off: u64, v: u64) {
        let master = u16::from_le_bytes([s.config[4], s.config[5]]) & 4 != 0;
        match self.kind {
            Kind::Edu => match off {
                0x60 => {
                    *s.regs.entry(0x24).or_default() |= v;
                    signal(s);
                }
                0x64 => *s.regs.entry(0x24).or_default() &= !v,
                EDU_CMD if v & 1 != 0 => {
                    let r = |o| s.regs.get(&o).copied().unwrap_or(0);
                    let (src, dst, n) = (r(0x80), r(0x88), r(0x90) as usize);
                    let to_ram = v & 2 != 0;
                    let at = if to_ram { src } else { dst };
                    let iova = if to_ram { dst } else { src };
                    let off = (at - 0x40000) as usize;
                    // QEMU 7.2 wants the end strictly inside the buffer.
                    if at < 0x40000 || off + n >= 4096 {
                        s.edu_abort = true;
                        return;
                    }
                    if master && dma(&self.bufs, iova, &mut s.mem[off..off + n], !to_ram).is_ok() {
                        s.transfers = s.transfers.max(n as u64);
                    }
                    s.regs.insert(EDU_CMD, v & !1);
                    if v & 4 != 0 {
                        *s.regs.entry(0x24).or_default() |= 0x100;
                        signal(s);
                    }
                }
                _ => {
                    s.regs.insert(off, v);
                }
            },
            Kind::Vhgpu(_) => match off {
                0x70 if v < 4 => {
                    if s.msix_masked & 1 << v != 0 {
                        s.msix_pending |= 1 << v;
                    } else {
                        signal_fd(s.msix[v as usize]);
                    }
                }
                0x30 => *s.regs.entry(0x30).or_default() &= !v,
                0x38 => raise(s, v),
                0x58 => {
                    let r = |o| s.regs.get(&o).copied().unwrap_or(0);
                    let iova = r(0x44) << 32 | r(0x40);
                    let vram = (r(0x4c) << 32 | r(0x48)) as usize;
                    let (n, to_vram) = (r(0x50) as usize, r(0x54) == 0);
                    let res = if !master {
                        Err(libc::EACCES)
                    } else {
                        dma(&self.bufs, iova, &mut s.mem[vram..vram + n], to_vram)
                    };
                    match res {
                        Ok(()) => {
                            s.regs.insert(0x5c, 1);
                            raise(s, 1);
                        }
                        Err(e) => {
                            s.regs.insert(0x5c, 2);
                            s.regs.insert(0x60, e as u64);
                            raise(s, 2);
                        }
                    }
                }
                _ => {
                    s.regs.insert(off, v);
                }
            },
        }
    }
}

fn raise(s: &mut State, bits: u64) {
    *s.regs.entry(0x30).or_default() |= bits;
    if bits & s.regs.get(&0x34).copied().unwrap_or(0) != 0 {
        signal(s);
    }
}

fn signal(s: &State) {
    if s.lose_irqs {
        return;
    }
    signal_fd(s.msi);
}

fn signal_fd(fd: Option<RawFd>) {
    if let Some(fd) = fd {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to the eventfd the test's engine owns.
        let r = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        assert_eq!(r, 8, "signal the eventfd");
    }
}

impl Device for FakeDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        let s = self.st();
        match index {
            0 => {
                let v = s.regs.get(&offset).copied().unwrap_or(0).to_le_bytes();
                buf.copy_from_slice(&v[..buf.len()]);
            }
            7 => buf.copy_from_slice(&s.config[offset as usize..offset as usize + buf.len()]),
            _ => return Err(self.unsupported("region")),
        }
        Ok(())
    }

    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<()> {
        let mut s = self.st();
        match index {
            0 => {
                let mut b = [0u8; 8];
                b[..buf.len()].copy_from_slice(buf);
                self.write_reg(&mut s, offset, u64::from_le_bytes(b));
            }
            7 => s.config[offset as usize..offset as usize + buf.len()].copy_from_slice(buf),
            _ => return Err(self.unsupported("region")),
        }
        Ok(())
    }

    fn map_region(&self, _: u32, _: u64, _: u64) -> Result<RegionMap> {
        Err(self.unsupported("mmap"))
    }

    fn reset(&self) -> Result<()> {
        Ok(())
    }

    fn set_irq_eventfds(&self, index: u32, start: u32, fds: &[RawFd]) -> Result<()> {
        if index == 2 && matches!(self.kind, Kind::Vhgpu(_)) && start as usize + fds.len() <= 4 {
            let mut s = self.st();
            if fds.is_empty() {
                s.msix = [None; 4];
            }
            for (i, fd) in fds.iter().enumerate() {
                s.msix[start as usize + i] = Some(*fd);
            }
            return Ok(());
        }
        if index != 1 || start != 0 || fds.len() > 1 {
            return Err(DeviceError::Irq {
                device: "fake".into(),
                index,
                op: "set eventfds",
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        self.st().msi = fds.first().copied();
        Ok(())
    }

    fn trigger_irq(&self, _: u32, _: u32) -> Result<()> {
        signal(&self.st());
        Ok(())
    }

    fn mask_irq(&self, index: u32, vector: u32, masked: bool) -> Result<()> {
        if index != 2 || vector >= 4 {
            return Err(self.unsupported("mask"));
        }
        let mut s = self.st();
        let bit = 1 << vector;
        if masked {
            s.msix_masked |= bit;
        } else {
            s.msix_masked &= !bit;
            if s.msix_pending & bit != 0 {
                s.msix_pending &= !bit;
                signal_fd(s.msix[vector as usize]);
            }
        }
        Ok(())
    }

    fn migration_flags(&self) -> Result<Option<MigFlags>> {
        Ok(None)
    }

    fn set_mig_state(&self, _: MigState) -> Result<()> {
        Err(self.unsupported("migration"))
    }

    fn mig_state(&self) -> Result<MigState> {
        Err(self.unsupported("migration"))
    }

    fn mig_read(&self, _: &mut [u8]) -> Result<usize> {
        Err(self.unsupported("migration"))
    }

    fn mig_write(&self, _: &[u8]) -> Result<usize> {
        Err(self.unsupported("migration"))
    }

    fn precopy_info(&self) -> Result<PrecopyInfo> {
        Err(self.unsupported("migration"))
    }

    fn stop_copy_size(&self) -> Result<u64> {
        Err(self.unsupported("migration"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
